//! `mpp-sim`: sample traffic for a local MPP Hub. It plays citizens and
//! counter officers at Disdukcapil, driving realistic journeys through the
//! agency service's own gRPC API (never NATS directly), and prints each
//! tracking number with its journey so a person can look the cases up.
//!
//! The journeys are chosen deterministically from `--seed` (the ids the
//! service allocates are not). The first four cases always cover, in order:
//! a family card (KK) with missing documents that are then brought, a KTP-el
//! issued and collected, a birth certificate (akta lahir) rejected, and a
//! withdrawn application.

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use mpp_proto::agency::dukcapil::v1 as dk;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;

use dk::dukcapil_service_client::DukcapilServiceClient;

type Client = DukcapilServiceClient<InterceptedService<Channel, Bearer>>;

/// Most cases one run may create.
const CASES_MAX: u32 = 10_000;

/// Flags of `mpp-sim`.
#[derive(Debug, Parser)]
#[command(name = "mpp-sim", version, about = "Drive sample citizen journeys through the MPP agency services")]
struct Cli {
    /// gRPC address of the mpp-dukcapil service.
    #[arg(long, env = "MPP_DUKCAPIL_ADDR", default_value = "http://127.0.0.1:50061")]
    dukcapil_addr: String,
    /// How many cases to create (1..=10000).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=CASES_MAX as i64))]
    cases: u32,
    /// Seed of the journey choices: the same seed gives the same journeys.
    #[arg(long, default_value_t = 1771)]
    seed: u64,
    /// How long to keep trying to reach the service before giving up, in seconds.
    #[arg(long, default_value_t = 30)]
    connect_timeout_secs: u64,
    /// If set, print this prefix followed by each tracking number (e.g.
    /// `http://127.0.0.1:8080/api/v1/cases/`), a ready-made lookup URL.
    #[arg(long)]
    lookup_base: Option<String>,
    /// Bearer token of this client system at the agency service (its SHA-256
    /// must be in the service's --tokens-file). Not needed when the service
    /// runs with --insecure-no-auth.
    #[arg(long, env = "MPP_DUKCAPIL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Pseudonymous id of the counter officer recorded on each step.
    #[arg(long, default_value = "petugas-sim-01")]
    officer: String,
}

/// Sends `authorization: Bearer <token>` with every call, if a token is set.
#[derive(Debug, Clone)]
struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// SplitMix64: a tiny deterministic generator for the journey choices.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The journeys the simulator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Journey {
    /// KK: documents missing, then brought; verified, printed (waiting for collection).
    KkMissingDocuments,
    /// KTP-el: verified, printed, collected.
    KtpIssuedCollected,
    /// Akta kelahiran: verified, rejected.
    AktaRejected,
    /// KK: documents missing, then withdrawn by the citizen.
    KkWithdrawn,
    /// KK: documents missing and not yet brought (the citizen must act).
    KkWaitingOnCitizen,
    /// KK and KTP-el in one case: KTP-el in review, KK just filed.
    TwoApplications,
}

impl Journey {
    const ALL: [Journey; 6] = [
        Journey::KkMissingDocuments,
        Journey::KtpIssuedCollected,
        Journey::AktaRejected,
        Journey::KkWithdrawn,
        Journey::KkWaitingOnCitizen,
        Journey::TwoApplications,
    ];

    fn describe(self) -> &'static str {
        match self {
            Journey::KkMissingDocuments => {
                "KK: dokumen kurang, lalu dilengkapi; diverifikasi, dicetak (siap diambil)"
            }
            Journey::KtpIssuedCollected => "KTP-el: diverifikasi, dicetak, diambil",
            Journey::AktaRejected => "Akta kelahiran: diverifikasi, ditolak",
            Journey::KkWithdrawn => "KK: dokumen kurang, lalu dibatalkan pemohon",
            Journey::KkWaitingOnCitizen => "KK: menunggu kelengkapan dokumen dari pemohon",
            Journey::TwoApplications => "KK + KTP-el dalam satu berkas: KTP-el diproses, KK diterima",
        }
    }
}

/// The journey of case `i`: the first four are fixed, the rest seeded.
fn journey_for(i: u32, rng: &mut Rng) -> Journey {
    match i {
        0..=3 => Journey::ALL[i as usize],
        _ => Journey::ALL[rng.below(Journey::ALL.len() as u64) as usize],
    }
}

/// One simulated counter: the gRPC client and the officer id.
#[derive(Debug)]
struct Counter {
    client: Client,
    officer: String,
    events: usize,
}

impl Counter {
    fn langkah(&self, tn: &str, app: &str) -> dk::Langkah {
        dk::Langkah {
            nomor_berkas: tn.to_owned(),
            nomor_permohonan: app.to_owned(),
            petugas: self.officer.clone(),
        }
    }

    async fn ajukan(
        &mut self,
        nomor_berkas: &str,
        layanan: dk::Layanan,
        dokumen: &[&str],
    ) -> Result<(String, String)> {
        let r = self
            .client
            .ajukan_permohonan(dk::Permohonan {
                nomor_berkas: nomor_berkas.to_owned(),
                layanan: layanan as i32,
                dokumen: dokumen.iter().map(|d| (*d).to_owned()).collect(),
                petugas: self.officer.clone(),
            })
            .await
            .map_err(|s| status_error("AjukanPermohonan", &s))?
            .into_inner();
        ensure!(
            !r.nomor_berkas.is_empty() && !r.nomor_permohonan.is_empty(),
            "AjukanPermohonan answered {r:?}"
        );
        self.events += r.event_ids.len();
        Ok((r.nomor_berkas, r.nomor_permohonan))
    }

    async fn minta(&mut self, tn: &str, app: &str) -> Result<()> {
        let req = dk::KekuranganBerkas {
            langkah: Some(self.langkah(tn, app)),
            dokumen: vec!["akta nikah".to_owned(), "surat keterangan pindah".to_owned()],
            loket: "Loket 3 Disdukcapil, MPP Kota Bengkulu".to_owned(),
            catatan: "Bawa dokumen asli dan satu fotokopi".to_owned(),
        };
        self.client.minta_kelengkapan(req).await.map_err(|s| status_error("MintaKelengkapan", &s))?;
        self.events += 1;
        Ok(())
    }

    async fn terima(&mut self, tn: &str, app: &str) -> Result<()> {
        let req = dk::BerkasDilengkapi {
            langkah: Some(self.langkah(tn, app)),
            dokumen: vec!["akta nikah".to_owned(), "surat keterangan pindah".to_owned()],
        };
        self.client.terima_kelengkapan(req).await.map_err(|s| status_error("TerimaKelengkapan", &s))?;
        self.events += 1;
        Ok(())
    }

    async fn verifikasi(&mut self, tn: &str, app: &str) -> Result<()> {
        let req = self.langkah(tn, app);
        self.client.mulai_verifikasi(req).await.map_err(|s| status_error("MulaiVerifikasi", &s))?;
        self.events += 1;
        Ok(())
    }

    async fn cetak(&mut self, tn: &str, app: &str, register: &str) -> Result<()> {
        let req =
            dk::DokumenDicetak { langkah: Some(self.langkah(tn, app)), nomor_register: register.to_owned() };
        self.client.cetak_dokumen(req).await.map_err(|s| status_error("CetakDokumen", &s))?;
        self.events += 1;
        Ok(())
    }

    async fn serahkan(&mut self, tn: &str, app: &str) -> Result<()> {
        let req = self.langkah(tn, app);
        self.client.serahkan_dokumen(req).await.map_err(|s| status_error("SerahkanDokumen", &s))?;
        self.events += 1;
        Ok(())
    }

    async fn tolak(&mut self, tn: &str, app: &str) -> Result<()> {
        let req = dk::Penolakan {
            langkah: Some(self.langkah(tn, app)),
            kode_alasan: "DATA_TIDAK_SESUAI".to_owned(),
            alasan: "Nama ayah pada surat keterangan lahir tidak sesuai dengan KK".to_owned(),
        };
        self.client.tolak_permohonan(req).await.map_err(|s| status_error("TolakPermohonan", &s))?;
        self.events += 1;
        Ok(())
    }

    async fn batalkan(&mut self, tn: &str, app: &str) -> Result<()> {
        let req = self.langkah(tn, app);
        self.client.batalkan_permohonan(req).await.map_err(|s| status_error("BatalkanPermohonan", &s))?;
        self.events += 1;
        Ok(())
    }

    /// Drives one journey for a new case; returns its tracking number.
    async fn run(&mut self, journey: Journey, n: u32) -> Result<String> {
        let register = format!("SIM/{n:05}");
        match journey {
            Journey::KkMissingDocuments => {
                let (tn, app) =
                    self.ajukan("", dk::Layanan::Kk, &["surat pengantar RT/RW", "KK lama"]).await?;
                self.minta(&tn, &app).await?;
                self.terima(&tn, &app).await?;
                self.verifikasi(&tn, &app).await?;
                self.cetak(&tn, &app, &register).await?;
                Ok(tn)
            }
            Journey::KtpIssuedCollected => {
                let (tn, app) = self.ajukan("", dk::Layanan::KtpEl, &["kartu keluarga"]).await?;
                self.verifikasi(&tn, &app).await?;
                self.cetak(&tn, &app, &register).await?;
                self.serahkan(&tn, &app).await?;
                Ok(tn)
            }
            Journey::AktaRejected => {
                let (tn, app) = self
                    .ajukan("", dk::Layanan::AktaLahir, &["surat keterangan lahir", "kartu keluarga"])
                    .await?;
                self.verifikasi(&tn, &app).await?;
                self.tolak(&tn, &app).await?;
                Ok(tn)
            }
            Journey::KkWithdrawn => {
                let (tn, app) = self.ajukan("", dk::Layanan::Kk, &["surat pengantar RT/RW"]).await?;
                self.minta(&tn, &app).await?;
                self.batalkan(&tn, &app).await?;
                Ok(tn)
            }
            Journey::KkWaitingOnCitizen => {
                let (tn, app) = self.ajukan("", dk::Layanan::Kk, &["surat pengantar RT/RW"]).await?;
                self.minta(&tn, &app).await?;
                Ok(tn)
            }
            Journey::TwoApplications => {
                let (tn, _kk) = self.ajukan("", dk::Layanan::Kk, &["surat pengantar RT/RW"]).await?;
                let (_, ktp) = self.ajukan(&tn, dk::Layanan::KtpEl, &["kartu keluarga"]).await?;
                self.verifikasi(&tn, &ktp).await?;
                Ok(tn)
            }
        }
    }
}

fn status_error(rpc: &str, s: &tonic::Status) -> anyhow::Error {
    let reason = s.metadata().get("mpp-reason-code").and_then(|v| v.to_str().ok()).unwrap_or("-");
    anyhow::anyhow!("{rpc} failed: {:?}: {} (reason {reason})", s.code(), s.message())
}

/// Connects, retrying until `timeout` passes (the service may still be starting).
async fn connect(addr: &str, timeout: Duration, token: Option<&str>) -> Result<Client> {
    let endpoint = Channel::from_shared(addr.to_owned()).with_context(|| format!("bad address {addr}"))?;
    let bearer = Bearer(match token {
        Some(t) => Some(format!("Bearer {t}").parse().context("the token is not printable ASCII")?),
        None => None,
    });
    let start = Instant::now();
    loop {
        match endpoint.connect().await {
            Ok(channel) => return Ok(DukcapilServiceClient::with_interceptor(channel, bearer)),
            Err(e) if start.elapsed() >= timeout => {
                bail!("cannot reach mpp-dukcapil at {addr} after {timeout:?}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let client =
        connect(&cli.dukcapil_addr, Duration::from_secs(cli.connect_timeout_secs), cli.token.as_deref())
            .await?;
    let mut counter = Counter { client, officer: cli.officer.clone(), events: 0 };
    let mut rng = Rng(cli.seed);
    println!("# mpp-sim: {} cases, seed {}, via {}", cli.cases, cli.seed, cli.dukcapil_addr);
    for i in 0..cli.cases {
        let journey = journey_for(i, &mut rng);
        let tn = counter.run(journey, i).await.with_context(|| format!("case #{i} ({journey:?})"))?;
        match &cli.lookup_base {
            Some(base) => println!("{tn}\t{}\t{base}{tn}", journey.describe()),
            None => println!("{tn}\t{}", journey.describe()),
        }
    }
    println!("# {} events accepted by mpp-dukcapil", counter.events);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_four_journeys_are_fixed_and_the_rest_follow_the_seed() {
        let pick = |seed| {
            let mut rng = Rng(seed);
            (0..20).map(|i| journey_for(i, &mut rng)).collect::<Vec<_>>()
        };
        let a = pick(7);
        assert_eq!(a[..4], Journey::ALL[..4]);
        assert_eq!(a, pick(7));
        assert_ne!(a, pick(8));
    }
}
