//! Driving the Dukcapil agency service the way counter officers do: seeded
//! random journeys (`AjukanPermohonan`, then the steps of one of five
//! realistic paths), recording every event id the service answered
//! "accepted" the moment the answer arrives.
//!
//! A [`Driver`] runs several such officers concurrently until it is stopped,
//! so a test can do something to NATS or to the service mid-traffic and then
//! compare what the service answered with what the hub recorded.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use mpp_proto::agency::dukcapil::v1 as dk;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::rng::Rng;
use crate::services::{AgencyProcess, Bearer};
use crate::wait::{wait_for, Fatal};

pub use dk::dukcapil_service_client::DukcapilServiceClient;

/// A Dukcapil client authenticated as the harness's `e2e-tests` system.
pub type DukcapilClient = DukcapilServiceClient<InterceptedService<Channel, Bearer>>;

/// The pseudonymous officer on every call.
pub const OFFICER: &str = "petugas-loket-1";

/// Kinds of journey [`journey`] knows (`0..JOURNEY_KINDS`).
pub const JOURNEY_KINDS: u64 = 5;

/// Longest one RPC may take (connecting included), in milliseconds.
pub const CALL_TIMEOUT_MS: u64 = 10_000;

/// Journeys one driver worker makes at most (bounds a run whose stop is forgotten).
pub const JOURNEYS_PER_WORKER_MAX: u64 = 100_000;

/// A client of `agency`'s gRPC port. The channel connects lazily and again
/// after the service restarts on the same port.
pub fn client(agency: &AgencyProcess) -> Result<DukcapilClient> {
    let channel = Channel::from_shared(agency.grpc_endpoint())?
        .timeout(Duration::from_millis(CALL_TIMEOUT_MS))
        .connect_timeout(Duration::from_millis(CALL_TIMEOUT_MS))
        .connect_lazy();
    Ok(DukcapilServiceClient::with_interceptor(channel, agency.bearer()?))
}

/// Every event id the service answered "accepted", in answer order, shared
/// between driver workers and the test. A walk-in filing's answer starts
/// with the front office's `case_opened` (the front office opened the case,
/// in its own outbox): those ids are also kept apart ([`Answered::openings`]),
/// since only the agency's own events have verdicts at the agency.
#[derive(Debug, Default)]
pub struct Answered {
    ids: Mutex<Vec<String>>,
    openings: Mutex<Vec<String>>,
    count: AtomicU64,
}

impl Answered {
    /// Records the event ids of one answer.
    pub fn record(&self, ids: &[String]) -> Result<()> {
        ensure!(ids.iter().all(|id| !id.is_empty()), "an answer carries an empty event id: {ids:?}");
        let mut all = self.ids.lock().map_err(|_| anyhow!("answered ids: lock poisoned"))?;
        all.extend(ids.iter().cloned());
        self.count.store(all.len() as u64, Ordering::SeqCst);
        Ok(())
    }

    /// Records the event ids of a walk-in filing's answer: the front
    /// office's opening, then the agency's filing.
    pub fn record_walk_in(&self, ids: &[String]) -> Result<()> {
        self.record(ids)?;
        let opening = ids.first().ok_or_else(|| anyhow!("a walk-in answered no event id"))?;
        self.openings.lock().map_err(|_| anyhow!("openings: lock poisoned"))?.push(opening.clone());
        Ok(())
    }

    /// The front office's openings answered for walk-ins so far.
    pub fn openings(&self) -> Result<Vec<String>> {
        Ok(self.openings.lock().map_err(|_| anyhow!("openings: lock poisoned"))?.clone())
    }

    /// The event ids the agency itself published (answered, less the front
    /// office's openings), in answer order.
    pub fn published_by_agency(&self) -> Result<Vec<String>> {
        let openings = self.openings()?;
        Ok(self.snapshot()?.into_iter().filter(|id| !openings.contains(id)).collect())
    }

    /// How many event ids were answered so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// The event ids answered so far, in answer order.
    pub fn snapshot(&self) -> Result<Vec<String>> {
        Ok(self.ids.lock().map_err(|_| anyhow!("answered ids: lock poisoned"))?.clone())
    }

    /// The event ids answered after the first `from` ones.
    pub fn since(&self, from: u64) -> Result<Vec<String>> {
        let all = self.ids.lock().map_err(|_| anyhow!("answered ids: lock poisoned"))?;
        Ok(all.iter().skip(usize::try_from(from).unwrap_or(usize::MAX)).cloned().collect())
    }
}

fn ret<T>(r: std::result::Result<tonic::Response<T>, tonic::Status>, what: &str) -> Result<T> {
    r.map(tonic::Response::into_inner).map_err(|s| {
        let code = s.metadata().get("mpp-reason-code").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        anyhow!("{what} failed: {:?} {} (mpp-reason-code {code:?})", s.code(), s.message())
    })
}

fn langkah(tn: &str, app: &str) -> dk::Langkah {
    dk::Langkah { nomor_berkas: tn.to_owned(), nomor_permohonan: app.to_owned(), petugas: OFFICER.to_owned() }
}

/// The `AjukanPermohonan` request the tests file: service `layanan` in case
/// `nomor_berkas` (empty: a new case), handing in a neighbourhood letter, by
/// [`OFFICER`].
pub fn permohonan(nomor_berkas: &str, layanan: dk::Layanan) -> dk::Permohonan {
    dk::Permohonan {
        nomor_berkas: nomor_berkas.to_owned(),
        layanan: layanan as i32,
        dokumen: vec!["surat pengantar RT/RW".to_owned()],
        petugas: OFFICER.to_owned(),
    }
}

/// `AjukanPermohonan`; an empty `nomor_berkas` opens a new case. Returns the
/// case's tracking number and the new application id.
pub async fn ajukan(
    c: &mut DukcapilClient,
    answered: &Answered,
    nomor_berkas: &str,
    layanan: dk::Layanan,
) -> Result<(String, String)> {
    let r = ret(c.ajukan_permohonan(permohonan(nomor_berkas, layanan)).await, "AjukanPermohonan")?;
    let want = if nomor_berkas.is_empty() { 2 } else { 1 };
    ensure!(
        r.event_ids.len() == want,
        "AjukanPermohonan answered {} event ids, expected {want}",
        r.event_ids.len()
    );
    if nomor_berkas.is_empty() {
        answered.record_walk_in(&r.event_ids)?;
    } else {
        answered.record(&r.event_ids)?;
    }
    Ok((r.nomor_berkas, r.nomor_permohonan))
}

/// One step RPC of an application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `MintaKelengkapan` (documents requested).
    Minta,
    /// `TerimaKelengkapan` (documents received).
    Terima,
    /// `MulaiVerifikasi` (review started).
    Verifikasi,
    /// `CetakDokumen` (issued).
    Cetak,
    /// `SerahkanDokumen` (collected).
    Serahkan,
    /// `TolakPermohonan` (rejected).
    Tolak,
    /// `BatalkanPermohonan` (withdrawn).
    Batalkan,
}

/// Calls step `step` of application `app` in case `tn` and records its event id.
pub async fn step(
    c: &mut DukcapilClient,
    answered: &Answered,
    tn: &str,
    app: &str,
    step: Step,
) -> Result<()> {
    let l = langkah(tn, app);
    let d = match step {
        Step::Minta => ret(
            c.minta_kelengkapan(dk::KekuranganBerkas {
                langkah: Some(l),
                dokumen: vec!["akta nikah".to_owned()],
                loket: "Loket 3 Disdukcapil".to_owned(),
                catatan: "bawa asli dan fotokopi".to_owned(),
            })
            .await,
            "MintaKelengkapan",
        )?,
        Step::Terima => ret(
            c.terima_kelengkapan(dk::BerkasDilengkapi {
                langkah: Some(l),
                dokumen: vec!["akta nikah".to_owned()],
            })
            .await,
            "TerimaKelengkapan",
        )?,
        Step::Verifikasi => ret(c.mulai_verifikasi(l).await, "MulaiVerifikasi")?,
        Step::Cetak => ret(
            c.cetak_dokumen(dk::DokumenDicetak { langkah: Some(l), nomor_register: format!("REG-{tn}") })
                .await,
            "CetakDokumen",
        )?,
        Step::Serahkan => ret(c.serahkan_dokumen(l).await, "SerahkanDokumen")?,
        Step::Tolak => ret(
            c.tolak_permohonan(dk::Penolakan {
                langkah: Some(l),
                kode_alasan: "DATA_TIDAK_SESUAI".to_owned(),
                alasan: "Data tidak sesuai dokumen pendukung".to_owned(),
            })
            .await,
            "TolakPermohonan",
        )?,
        Step::Batalkan => ret(c.batalkan_permohonan(l).await, "BatalkanPermohonan")?,
    };
    answered.record(&[d.event_id])
}

/// Drives journey `kind` (`0..JOURNEY_KINDS`) for one new case, every step
/// legal in the hub's state machine, each answer recorded as it arrives. Ends
/// at the first failed call (what was answered before stays recorded).
pub async fn journey(c: &mut DukcapilClient, answered: &Answered, kind: u64) -> Result<()> {
    use Step::*;
    let (layanan, steps): (dk::Layanan, &[Step]) = match kind % JOURNEY_KINDS {
        0 => (dk::Layanan::Kk, &[Minta, Terima, Verifikasi, Cetak, Serahkan]),
        1 => (dk::Layanan::KtpEl, &[Verifikasi, Cetak, Serahkan]),
        2 => (dk::Layanan::AktaLahir, &[Verifikasi, Tolak]),
        3 => (dk::Layanan::Kk, &[Minta, Batalkan]),
        _ => {
            // Two applications in one case.
            let (tn, kk) = ajukan(c, answered, "", dk::Layanan::Kk).await?;
            let (_, ktp) = ajukan(c, answered, &tn, dk::Layanan::KtpEl).await?;
            step(c, answered, &tn, &kk, Verifikasi).await?;
            step(c, answered, &tn, &kk, Cetak).await?;
            return step(c, answered, &tn, &ktp, Minta).await;
        }
    };
    let (tn, app) = ajukan(c, answered, "", layanan).await?;
    for s in steps {
        step(c, answered, &tn, &app, *s).await?;
    }
    Ok(())
}

/// What one driver worker did.
#[derive(Debug, Clone, Default)]
pub struct WorkerReport {
    /// Journeys completed.
    pub journeys: u64,
    /// The failed call that ended the worker, if one did.
    pub error: Option<String>,
}

/// Concurrent officers making seeded random journeys until stopped. A worker
/// ends at its first failed call (reported in its [`WorkerReport`]).
#[derive(Debug)]
pub struct Driver {
    stop: Arc<AtomicBool>,
    answered: Arc<Answered>,
    workers: Vec<JoinHandle<WorkerReport>>,
}

/// How a [`Driver`] drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverConfig {
    /// Concurrent officers.
    pub workers: u64,
    /// Each officer starts at most one journey per this many milliseconds
    /// (0: back to back). This shapes the load so that a debug-build hub can
    /// keep up with it; it synchronises nothing.
    pub journey_interval_ms: u64,
}

impl Driver {
    /// Starts `config.workers` officers on clones of `client`, each with its
    /// own generator derived from `seed`, recording into `answered`.
    pub fn spawn(client: &DukcapilClient, answered: Arc<Answered>, seed: u64, config: DriverConfig) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..config.workers)
            .map(|w| {
                let mut c = client.clone();
                let (stop, answered) = (stop.clone(), answered.clone());
                let mut rng = Rng::new(seed ^ (w + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let interval = Duration::from_millis(config.journey_interval_ms.max(1));
                tokio::spawn(async move {
                    let mut report = WorkerReport::default();
                    let mut pace = tokio::time::interval(interval);
                    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    for _ in 0..JOURNEYS_PER_WORKER_MAX {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        if config.journey_interval_ms > 0 {
                            pace.tick().await;
                        }
                        match journey(&mut c, &answered, rng.below(JOURNEY_KINDS)).await {
                            Ok(()) => report.journeys += 1,
                            Err(e) => {
                                report.error = Some(format!("{e:#}"));
                                break;
                            }
                        }
                    }
                    report
                })
            })
            .collect();
        Self { stop, answered, workers }
    }

    /// The shared record of answers.
    pub fn answered(&self) -> &Arc<Answered> {
        &self.answered
    }

    /// Whether any worker has ended (a failed call, or the journey bound).
    pub fn any_ended(&self) -> bool {
        self.workers.iter().any(JoinHandle::is_finished)
    }

    /// Waits until at least `at_least` event ids were answered. Fails at once
    /// if a worker ended (its failure is then reported by [`Driver::stop`]).
    pub async fn wait_answered(&self, what: &str, at_least: u64, deadline: Duration) -> Result<u64> {
        wait_for(&format!("{what} ({at_least} event ids answered)"), deadline, || {
            let (n, ended) = (self.answered.count(), self.any_ended());
            async move {
                if n >= at_least {
                    Ok(Some(n))
                } else if ended {
                    Err(Fatal(format!("a driver worker ended early, at {n} answered event ids")).into())
                } else {
                    Ok(None)
                }
            }
        })
        .await
    }

    /// Stops the workers after their current journey and returns their reports.
    pub async fn stop(self) -> Result<Vec<WorkerReport>> {
        self.stop.store(true, Ordering::SeqCst);
        let mut reports = Vec::with_capacity(self.workers.len());
        for w in self.workers {
            reports.push(w.await.map_err(|e| anyhow!("driver worker panicked: {e}"))?);
        }
        Ok(reports)
    }
}
