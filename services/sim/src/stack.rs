//! The services the simulator talks to, over their own gRPC APIs with a
//! bearer token each: the front office (`mpp-frontoffice`) and every agency
//! service. [`Stack`] turns a plan's [`Action`] into the agency's own RPC
//! ([`rpc_name`] names it) and returns what the service answered.
//!
//! Channels connect lazily: a service no journey of the run needs is never
//! contacted, so a partial stack (e.g. a test running three agencies) works.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mpp_proto::agency::{bank, bpn, dpmptsp, dukcapil, imigrasi, pdam, pln};
use mpp_proto::frontoffice::v1 as fo;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::citizen::Citizen;
use crate::error::SimError;
use crate::plan::{Action, Agency, Service, Visit};

/// Longest one RPC may take, connecting included, in milliseconds.
pub const CALL_TIMEOUT_MS: u64 = 10_000;

/// Pause between two attempts to reach a service that is still starting, in
/// milliseconds ([`Stack::wait_reachable`]).
pub const CONNECT_RETRY_MS: u64 = 200;

/// One day, in milliseconds (appointments are booked days ahead).
const DAY_MS: i64 = 86_400_000;

/// Where one service listens and the token the simulator presents to it.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// gRPC address: `http://host:port` or `host:port`.
    pub addr: String,
    /// Bearer token (its SHA-256 is in the service's `--tokens-file`);
    /// `None` for a service run with `--insecure-no-auth`.
    pub token: Option<String>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = if self.token.is_some() { "<set>" } else { "<none>" };
        f.debug_struct("Target").field("addr", &self.addr).field("token", &token).finish()
    }
}

/// The address and token of every service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    targets: BTreeMap<Agency, Target>,
    /// PEM certificates of the CA(s) the services' TLS certificates chain
    /// to; with them every `https://` target is reached over TLS.
    tls_ca_pem: Option<Vec<u8>>,
}

impl Default for Endpoints {
    /// Every service on its binary's default address, without tokens.
    fn default() -> Self {
        let targets = Agency::ALL
            .into_iter()
            .map(|a| (a, Target { addr: a.default_addr().to_owned(), token: None }))
            .collect();
        Self { targets, tls_ca_pem: None }
    }
}

impl Endpoints {
    /// The target of `agency`.
    pub fn get(&self, agency: Agency) -> &Target {
        // Every agency has an entry from `default()` on, and `set` only replaces.
        &self.targets[&agency]
    }

    /// Sets the target of `agency`.
    pub fn set(&mut self, agency: Agency, target: Target) {
        self.targets.insert(agency, target);
    }

    /// Trusts the CA(s) in `pem` (PEM certificates, e.g. the content of
    /// `--tls-ca-file`) for every `https://` target.
    pub fn set_tls_ca_pem(&mut self, pem: Vec<u8>) {
        self.tls_ca_pem = Some(pem);
    }
}

/// Sends `authorization: Bearer <token>` with every call, if a token is set.
#[derive(Debug, Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// An interceptor sending `token` (nothing when `None`).
    pub fn new(agency: Agency, token: Option<&str>) -> Result<Self, SimError> {
        match token {
            None => Ok(Self(None)),
            Some(t) => {
                let v = format!("Bearer {t}").parse().map_err(|_| SimError::BadToken { agency })?;
                Ok(Self(Some(v)))
            }
        }
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

type Authed = InterceptedService<Channel, Bearer>;

/// The front office's answer to `BukaBerkas`.
#[derive(Clone, PartialEq, Eq)]
pub struct Opened {
    /// The case's tracking number.
    pub tracking_number: String,
    /// The citizen's lookup PIN (returned once).
    pub pin: String,
    /// The `case_opened` event.
    pub event_id: String,
    /// The `personal_data_sealed` event published with it (the citizen's
    /// name and contacts, sealed), when the front office reports one.
    pub sealed_event_id: Option<String>,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field("tracking_number", &self.tracking_number)
            .field("pin", &"<redacted>")
            .field("event_id", &self.event_id)
            .field("sealed_event_id", &self.sealed_event_id)
            .finish()
    }
}

/// An agency's answer to a filing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filed {
    /// The application id within the case.
    pub application_id: String,
    /// The events published (one: `application_filed`, the case exists).
    pub event_ids: Vec<String>,
}

/// Which application a step is about, and whose step it is.
#[derive(Debug, Clone, Copy)]
pub struct StepRef<'a> {
    /// The case.
    pub tracking_number: &'a str,
    /// The application id the agency returned when filing.
    pub application_id: &'a str,
    /// The pseudonymous officer.
    pub officer: &'a str,
}

/// The name of the RPC that performs `action` for `service` in the agency's
/// own vocabulary, or `None` when the agency has no such step (e.g. PDAM
/// has no review RPC, Dukcapil charges no fee).
pub fn rpc_name(service: Service, action: &Action) -> Option<&'static str> {
    use Action as A;
    let name = match (service.agency(), action) {
        (Agency::FrontOffice, _) | (_, A::OpenCase { .. }) => return None,
        (Agency::Dpmptsp, a) => match a {
            A::File { .. } => "AjukanPermohonan",
            A::RequestDocuments { .. } => "MintaPerbaikan",
            A::ReceiveDocuments { .. } => "TerimaPerbaikan",
            A::StartReview => "MulaiPemeriksaan",
            A::Schedule { visit: Visit::Inspection, .. } => "JadwalkanPeninjauan",
            A::AssessFee { .. } => "TetapkanRetribusi",
            A::ConfirmPayment { .. } => "KonfirmasiPembayaran",
            A::Issue { .. } => "TerbitkanIzin",
            A::Reject { .. } => "TolakPermohonan",
            A::Withdraw { .. } => "BatalkanPermohonan",
            _ => return None,
        },
        (Agency::Pdam, a) => match a {
            A::File { .. } => "AjukanPendaftaran",
            A::RequestDocuments { .. } => "MintaKelengkapan",
            A::ReceiveDocuments { .. } => "TerimaKelengkapan",
            A::Schedule { visit: Visit::Survey, .. } => "JadwalkanSurvei",
            A::Schedule { visit: Visit::Installation, .. } => "JadwalkanPemasangan",
            A::AssessFee { .. } => "TerbitkanRab",
            A::ConfirmPayment { .. } => "KonfirmasiPembayaran",
            A::Issue { .. } => "AktifkanSambungan",
            A::Reject { .. } => "TolakPendaftaran",
            A::Withdraw { .. } => "BatalkanPendaftaran",
            _ => return None,
        },
        (Agency::Pln, a) => match a {
            A::File { .. } => "DaftarPermohonan",
            A::RequestDocuments { .. } => "MintaKelengkapan",
            A::ReceiveDocuments { .. } => "TerimaKelengkapan",
            A::Schedule { visit: Visit::Survey, .. } => "JadwalkanSurvei",
            A::Schedule { visit: Visit::Installation, .. } => "JadwalkanPemasangan",
            A::AssessFee { .. } => "TerbitkanTagihan",
            A::ConfirmPayment { .. } => "KonfirmasiPembayaran",
            A::Issue { .. } => "NyalakanSambungan",
            A::Reject { .. } => "TolakPermohonan",
            A::Withdraw { .. } => "BatalkanPermohonan",
            _ => return None,
        },
        (Agency::Dukcapil, a) => match a {
            A::File { .. } => "AjukanPermohonan",
            A::RequestDocuments { .. } => "MintaKelengkapan",
            A::ReceiveDocuments { .. } => "TerimaKelengkapan",
            A::StartReview => "MulaiVerifikasi",
            A::Issue { .. } => "CetakDokumen",
            A::Collect => "SerahkanDokumen",
            A::Reject { .. } => "TolakPermohonan",
            A::Withdraw { .. } => "BatalkanPermohonan",
            _ => return None,
        },
        (Agency::Bank, a) => match a {
            A::File { .. } => "AjukanPermohonan",
            A::StartReview => "VerifikasiDataNasabah",
            A::RequestDocuments { .. } => "MintaDokumen",
            A::ReceiveDocuments { .. } => "TerimaDokumen",
            A::Schedule { visit: Visit::Survey, .. } => "JadwalkanSurveiUsaha",
            A::AssessFee { .. } => "TagihSetoranAwal",
            A::ConfirmPayment { .. } => "TerimaSetoranAwal",
            A::Issue { .. } => "AktifkanRekening",
            A::Collect => "SerahkanKartu",
            A::Reject { .. } => "TolakPermohonan",
            A::Withdraw { .. } => "BatalkanPermohonan",
            _ => return None,
        },
        (Agency::Imigrasi, a) => match a {
            A::File { .. } => "AjukanPermohonan",
            A::RequestDocuments { .. } => "MintaKelengkapan",
            A::ReceiveDocuments { .. } => "TerimaKelengkapan",
            A::Schedule { visit: Visit::Interview, .. } => "JadwalkanWawancara",
            A::StartReview => "MulaiWawancara",
            A::AssessFee { .. } => "TerbitkanKodeBilling",
            A::ConfirmPayment { .. } => "KonfirmasiPembayaran",
            A::Issue { .. } => "CetakPaspor",
            A::Collect => "SerahkanPaspor",
            A::Reject { .. } => "TolakPermohonan",
            A::Withdraw { .. } => "BatalkanPermohonan",
            _ => return None,
        },
        (Agency::Bpn, a) => match a {
            A::File { .. } => "DaftarkanBerkas",
            A::RequestDocuments { .. } => "MintaKelengkapan",
            A::ReceiveDocuments { .. } => "TerimaKelengkapan",
            A::StartReview => "MulaiPemeriksaan",
            A::AssessFee { .. } => "TerbitkanSps",
            A::ConfirmPayment { .. } => "KonfirmasiPembayaran",
            A::Schedule { visit: Visit::Survey, .. } => "JadwalkanPengukuran",
            A::Issue { .. } => "TerbitkanProduk",
            A::Collect => "SerahkanProduk",
            A::Reject { .. } => "TolakBerkas",
            A::Withdraw { .. } => "BatalkanBerkas",
            _ => return None,
        },
    };
    Some(name)
}

/// Normalises an address to a URI (`http://` unless a scheme is given).
fn uri(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

fn endpoint(agency: Agency, addr: &str, tls_ca_pem: Option<&[u8]>) -> Result<Endpoint, SimError> {
    let bad = |detail: String| SimError::BadAddress { agency, addr: addr.to_owned(), detail };
    let mut e = Channel::from_shared(uri(addr)).map_err(|e| bad(e.to_string()))?;
    if e.uri().scheme_str() == Some("https") {
        let Some(pem) = tls_ca_pem else {
            return Err(bad(
                "an https:// address needs --tls-ca-file (the CA of the service's certificate)".into()
            ));
        };
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
        e = e.tls_config(tls).map_err(|e| bad(format!("TLS: {e}")))?;
    }
    Ok(e.timeout(Duration::from_millis(CALL_TIMEOUT_MS))
        .connect_timeout(Duration::from_millis(CALL_TIMEOUT_MS)))
}

/// The time `days` days from now, Unix milliseconds (the one input not
/// taken from the seed).
fn days_from_now_ms(days: u32) -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    now + i64::from(days) * DAY_MS
}

/// Maps an RPC's outcome, keeping the status code and the service's
/// `mpp-reason-code`.
fn answer<T>(
    agency: Agency,
    rpc: &'static str,
    r: Result<tonic::Response<T>, tonic::Status>,
) -> Result<T, SimError> {
    r.map(tonic::Response::into_inner).map_err(|s| SimError::Rpc {
        agency,
        rpc,
        code: s.code(),
        message: s.message().to_owned(),
        reason: s.metadata().get("mpp-reason-code").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned(),
    })
}

/// A non-empty event id from an answer.
fn event_id(agency: Agency, rpc: &'static str, id: String) -> Result<String, SimError> {
    if id.is_empty() {
        return Err(SimError::BadAnswer { agency, rpc, what: "an event id" });
    }
    Ok(id)
}

/// Clients of every service.
#[derive(Debug, Clone)]
pub struct Stack {
    endpoints: Endpoints,
    frontoffice: fo::front_office_service_client::FrontOfficeServiceClient<Authed>,
    dukcapil: dukcapil::v1::dukcapil_service_client::DukcapilServiceClient<Authed>,
    imigrasi: imigrasi::v1::imigrasi_service_client::ImigrasiServiceClient<Authed>,
    bpn: bpn::v1::bpn_service_client::BpnServiceClient<Authed>,
    pln: pln::v1::pln_service_client::PlnServiceClient<Authed>,
    pdam: pdam::v1::pdam_service_client::PdamServiceClient<Authed>,
    bank: bank::v1::bank_service_client::BankServiceClient<Authed>,
    dpmptsp: dpmptsp::v1::dpmptsp_service_client::DpmptspServiceClient<Authed>,
}

impl Stack {
    /// Clients of every service in `endpoints`. Nothing is contacted yet:
    /// each channel connects on its first call.
    pub fn connect_lazy(endpoints: Endpoints) -> Result<Self, SimError> {
        let ch = |agency: Agency| -> Result<(Channel, Bearer), SimError> {
            let t = endpoints.get(agency);
            Ok((
                endpoint(agency, &t.addr, endpoints.tls_ca_pem.as_deref())?.connect_lazy(),
                Bearer::new(agency, t.token.as_deref())?,
            ))
        };
        let (c, b) = ch(Agency::FrontOffice)?;
        let frontoffice = fo::front_office_service_client::FrontOfficeServiceClient::with_interceptor(c, b);
        let (c, b) = ch(Agency::Dukcapil)?;
        let dukcapil = dukcapil::v1::dukcapil_service_client::DukcapilServiceClient::with_interceptor(c, b);
        let (c, b) = ch(Agency::Imigrasi)?;
        let imigrasi = imigrasi::v1::imigrasi_service_client::ImigrasiServiceClient::with_interceptor(c, b);
        let (c, b) = ch(Agency::Bpn)?;
        let bpn = bpn::v1::bpn_service_client::BpnServiceClient::with_interceptor(c, b);
        let (c, b) = ch(Agency::Pln)?;
        let pln = pln::v1::pln_service_client::PlnServiceClient::with_interceptor(c, b);
        let (c, b) = ch(Agency::Pdam)?;
        let pdam = pdam::v1::pdam_service_client::PdamServiceClient::with_interceptor(c, b);
        let (c, b) = ch(Agency::Bank)?;
        let bank = bank::v1::bank_service_client::BankServiceClient::with_interceptor(c, b);
        let (c, b) = ch(Agency::Dpmptsp)?;
        let dpmptsp = dpmptsp::v1::dpmptsp_service_client::DpmptspServiceClient::with_interceptor(c, b);
        Ok(Self { endpoints, frontoffice, dukcapil, imigrasi, bpn, pln, pdam, bank, dpmptsp })
    }

    /// The endpoints the stack was made from.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// Waits until every one of `agencies` accepts a connection (they may
    /// still be starting), trying every [`CONNECT_RETRY_MS`] until `deadline`.
    pub async fn wait_reachable(&self, agencies: &[Agency], deadline: Duration) -> Result<(), SimError> {
        let start = tokio::time::Instant::now();
        for &agency in agencies {
            let addr = &self.endpoints.get(agency).addr;
            let e = endpoint(agency, addr, self.endpoints.tls_ca_pem.as_deref())?;
            let mut retry = tokio::time::interval(Duration::from_millis(CONNECT_RETRY_MS));
            loop {
                retry.tick().await;
                match e.connect().await {
                    Ok(_) => break,
                    Err(err) if start.elapsed() >= deadline => {
                        return Err(SimError::Unreachable {
                            agency,
                            addr: addr.clone(),
                            waited_ms: start.elapsed().as_millis() as u64,
                            detail: err.to_string(),
                        });
                    }
                    Err(_) => {}
                }
            }
        }
        Ok(())
    }

    /// `BukaBerkas` at the front office.
    pub async fn open_case(&mut self, citizen: &Citizen, officer: &str) -> Result<Opened, SimError> {
        const RPC: &str = "BukaBerkas";
        let a = Agency::FrontOffice;
        let r = answer(
            a,
            RPC,
            self.frontoffice
                .buka_berkas(fo::PembukaanBerkas {
                    nik: citizen.nik.clone(),
                    nama: citizen.nama.clone(),
                    telepon: citizen.telepon.clone(),
                    petugas: officer.to_owned(),
                    // A fake address on a placeholder domain, from the fake name.
                    surel: format!("{}@contoh.id", citizen.nama.to_lowercase().replace(' ', ".")),
                })
                .await,
        )?;
        if r.nomor_berkas.is_empty() {
            return Err(SimError::BadAnswer { agency: a, rpc: RPC, what: "a tracking number" });
        }
        if r.pin.is_empty() {
            return Err(SimError::BadAnswer { agency: a, rpc: RPC, what: "a PIN" });
        }
        // Empty from a front office that seals nothing (before personal data).
        let sealed_event_id = if r.event_id_data_pribadi.is_empty() {
            None
        } else {
            Some(event_id(a, RPC, r.event_id_data_pribadi)?)
        };
        Ok(Opened {
            tracking_number: r.nomor_berkas,
            pin: r.pin,
            event_id: event_id(a, RPC, r.event_id)?,
            sealed_event_id,
        })
    }

    /// Files an application of `service` into case `tracking_number`.
    pub async fn file(
        &mut self,
        service: Service,
        tracking_number: &str,
        documents: &[String],
        officer: &str,
    ) -> Result<Filed, SimError> {
        let agency = service.agency();
        let rpc = rpc_name(service, &Action::File { documents: Vec::new() })
            .ok_or(SimError::Unsupported { service, action: "file" })?;
        let (nomor_berkas, dokumen, petugas) =
            (tracking_number.to_owned(), documents.to_vec(), officer.to_owned());
        let (case, application_id, event_ids) = match service {
            Service::DpmptspNib | Service::DpmptspPbg => {
                use dpmptsp::v1 as pb;
                let jenis =
                    if service == Service::DpmptspNib { pb::JenisIzin::Nib } else { pb::JenisIzin::Pbg };
                let r = answer(
                    agency,
                    rpc,
                    self.dpmptsp
                        .ajukan_permohonan(pb::Permohonan {
                            nomor_berkas,
                            jenis_izin: jenis as i32,
                            dokumen,
                            petugas,
                        })
                        .await,
                )?;
                (r.nomor_berkas, r.nomor_registrasi, r.event_ids)
            }
            Service::PdamSambungan => {
                use pdam::v1 as pb;
                let req = pb::Pendaftaran {
                    nomor_berkas,
                    layanan: pb::Layanan::SambunganBaru as i32,
                    dokumen,
                    petugas,
                };
                let r = answer(agency, rpc, self.pdam.ajukan_pendaftaran(req).await)?;
                (r.nomor_berkas, r.nomor_pendaftaran, r.event_ids)
            }
            Service::PlnPasangBaru => {
                use pln::v1 as pb;
                let req = pb::Permohonan {
                    nomor_berkas,
                    jenis_layanan: pb::JenisLayanan::PasangBaru as i32,
                    dokumen,
                    petugas,
                };
                let r = answer(agency, rpc, self.pln.daftar_permohonan(req).await)?;
                (r.nomor_berkas, r.nomor_agenda, r.event_ids)
            }
            Service::DukcapilAktaLahir | Service::DukcapilKk => {
                use dukcapil::v1 as pb;
                let layanan =
                    if service == Service::DukcapilKk { pb::Layanan::Kk } else { pb::Layanan::AktaLahir };
                let req = pb::Permohonan { nomor_berkas, layanan: layanan as i32, dokumen, petugas };
                let r = answer(agency, rpc, self.dukcapil.ajukan_permohonan(req).await)?;
                (r.nomor_berkas, r.nomor_permohonan, r.event_ids)
            }
            Service::BankTabungan => {
                use bank::v1 as pb;
                let req = pb::PermohonanNasabah {
                    nomor_berkas,
                    produk: pb::Produk::Tabungan as i32,
                    dokumen,
                    petugas,
                };
                let r = answer(agency, rpc, self.bank.ajukan_permohonan(req).await)?;
                (r.nomor_berkas, r.nomor_referensi, r.event_ids)
            }
            Service::ImigrasiPaspor => {
                use imigrasi::v1 as pb;
                let req = pb::Permohonan {
                    nomor_berkas,
                    jenis_paspor: pb::JenisPaspor::Biasa as i32,
                    dokumen,
                    petugas,
                };
                let r = answer(agency, rpc, self.imigrasi.ajukan_permohonan(req).await)?;
                (r.nomor_berkas, r.nomor_permohonan, r.event_ids)
            }
            Service::BpnPengecekan => {
                use bpn::v1 as pb;
                let req = pb::PendaftaranBerkas {
                    nomor_berkas_mpp: nomor_berkas,
                    layanan: pb::LayananPertanahan::Pengecekan as i32,
                    dokumen,
                    petugas,
                };
                let r = answer(agency, rpc, self.bpn.daftarkan_berkas(req).await)?;
                (r.nomor_berkas_mpp, r.nomor_permohonan, r.event_ids)
            }
        };
        if case != tracking_number {
            return Err(SimError::BadAnswer { agency, rpc, what: "the case it was asked to file into" });
        }
        if application_id.is_empty() {
            return Err(SimError::BadAnswer { agency, rpc, what: "an application id" });
        }
        if event_ids.len() != 1 || event_ids.iter().any(String::is_empty) {
            return Err(SimError::BadAnswer { agency, rpc, what: "exactly one event id" });
        }
        Ok(Filed { application_id, event_ids })
    }

    /// Performs `action` on an application of `service`; returns the event id.
    pub async fn step(
        &mut self,
        service: Service,
        at: StepRef<'_>,
        action: &Action,
    ) -> Result<String, SimError> {
        let rpc =
            rpc_name(service, action).ok_or(SimError::Unsupported { service, action: action.name() })?;
        match service.agency() {
            Agency::Dpmptsp => self.step_dpmptsp(service, rpc, at, action).await,
            Agency::Pdam => self.step_pdam(service, rpc, at, action).await,
            Agency::Pln => self.step_pln(service, rpc, at, action).await,
            Agency::Dukcapil => self.step_dukcapil(service, rpc, at, action).await,
            Agency::Bank => self.step_bank(service, rpc, at, action).await,
            Agency::Imigrasi => self.step_imigrasi(service, rpc, at, action).await,
            Agency::Bpn => self.step_bpn(service, rpc, at, action).await,
            Agency::FrontOffice => Err(SimError::Unsupported { service, action: action.name() }),
        }
        .and_then(|id| event_id(service.agency(), rpc, id))
    }

    async fn step_dpmptsp(
        &mut self,
        service: Service,
        rpc: &'static str,
        at: StepRef<'_>,
        action: &Action,
    ) -> Result<String, SimError> {
        use dpmptsp::v1 as pb;
        let ag = Agency::Dpmptsp;
        let l = pb::Langkah {
            nomor_berkas: at.tracking_number.to_owned(),
            nomor_registrasi: at.application_id.to_owned(),
            petugas: at.officer.to_owned(),
        };
        let langkah = Some(l.clone());
        let c = &mut self.dpmptsp;
        let r = match action.clone() {
            Action::RequestDocuments { documents, counter, note } => {
                c.minta_perbaikan(pb::PerbaikanDokumen {
                    langkah,
                    dokumen: documents,
                    loket: counter,
                    catatan: note,
                })
                .await
            }
            Action::ReceiveDocuments { documents } => {
                c.terima_perbaikan(pb::DokumenDiperbaiki { langkah, dokumen: documents }).await
            }
            Action::StartReview => c.mulai_pemeriksaan(l).await,
            Action::Schedule { days_ahead, place, .. } => {
                c.jadwalkan_peninjauan(pb::PeninjauanLapangan {
                    langkah,
                    waktu_ms: days_from_now_ms(days_ahead),
                    lokasi: place,
                })
                .await
            }
            Action::AssessFee { amount_idr, billing_code, channel } => {
                c.tetapkan_retribusi(pb::Skrd {
                    langkah,
                    jumlah_retribusi: amount_idr,
                    nomor_skrd: billing_code,
                    saluran_pembayaran: channel,
                })
                .await
            }
            Action::ConfirmPayment { amount_idr, reference } => {
                c.konfirmasi_pembayaran(pb::PembayaranRetribusi {
                    langkah,
                    jumlah_bayar: amount_idr,
                    nomor_sts: reference,
                })
                .await
            }
            Action::Issue { document_number } => {
                c.terbitkan_izin(pb::IzinTerbit { langkah, nomor_izin: document_number }).await
            }
            Action::Reject { code, reason } => {
                c.tolak_permohonan(pb::Penolakan { langkah, kode_alasan: code, alasan: reason }).await
            }
            Action::Withdraw { reason } => {
                c.batalkan_permohonan(pb::Pembatalan { langkah, alasan: reason }).await
            }
            Action::OpenCase { .. } | Action::File { .. } | Action::Collect => {
                return Err(SimError::Unsupported { service, action: action.name() })
            }
        };
        Ok(answer(ag, rpc, r)?.event_id)
    }

    async fn step_pdam(
        &mut self,
        service: Service,
        rpc: &'static str,
        at: StepRef<'_>,
        action: &Action,
    ) -> Result<String, SimError> {
        use pdam::v1 as pb;
        let ag = Agency::Pdam;
        let langkah = Some(pb::Langkah {
            nomor_berkas: at.tracking_number.to_owned(),
            nomor_pendaftaran: at.application_id.to_owned(),
            petugas: at.officer.to_owned(),
        });
        let c = &mut self.pdam;
        let r = match action.clone() {
            Action::RequestDocuments { documents, counter, note } => {
                c.minta_kelengkapan(pb::KekuranganBerkas {
                    langkah,
                    dokumen: documents,
                    loket: counter,
                    catatan: note,
                })
                .await
            }
            Action::ReceiveDocuments { documents } => {
                c.terima_kelengkapan(pb::BerkasDilengkapi { langkah, dokumen: documents }).await
            }
            Action::Schedule { visit, days_ahead, place } => {
                let k = pb::Kunjungan { langkah, waktu_ms: days_from_now_ms(days_ahead), alamat: place };
                if visit == Visit::Installation {
                    c.jadwalkan_pemasangan(k).await
                } else {
                    c.jadwalkan_survei(k).await
                }
            }
            Action::AssessFee { amount_idr, billing_code, channel } => {
                c.terbitkan_rab(pb::Rab {
                    langkah,
                    jumlah_biaya: amount_idr,
                    nomor_rab: billing_code,
                    saluran_pembayaran: channel,
                })
                .await
            }
            Action::ConfirmPayment { amount_idr, reference } => {
                c.konfirmasi_pembayaran(pb::Pembayaran {
                    langkah,
                    jumlah_bayar: amount_idr,
                    nomor_kuitansi: reference,
                })
                .await
            }
            Action::Issue { document_number } => {
                c.aktifkan_sambungan(pb::SambunganAktif { langkah, nomor_sambungan: document_number }).await
            }
            Action::Reject { code, reason } => {
                c.tolak_pendaftaran(pb::Penolakan { langkah, kode_alasan: code, alasan: reason }).await
            }
            Action::Withdraw { reason } => {
                c.batalkan_pendaftaran(pb::Pembatalan { langkah, alasan: reason }).await
            }
            Action::OpenCase { .. } | Action::File { .. } | Action::StartReview | Action::Collect => {
                return Err(SimError::Unsupported { service, action: action.name() })
            }
        };
        Ok(answer(ag, rpc, r)?.event_id)
    }

    async fn step_pln(
        &mut self,
        service: Service,
        rpc: &'static str,
        at: StepRef<'_>,
        action: &Action,
    ) -> Result<String, SimError> {
        use pln::v1 as pb;
        let ag = Agency::Pln;
        let langkah = Some(pb::Langkah {
            nomor_berkas: at.tracking_number.to_owned(),
            nomor_agenda: at.application_id.to_owned(),
            petugas: at.officer.to_owned(),
        });
        let c = &mut self.pln;
        let r = match action.clone() {
            Action::RequestDocuments { documents, counter, note } => {
                c.minta_kelengkapan(pb::KekuranganData {
                    langkah,
                    dokumen: documents,
                    loket: counter,
                    catatan: note,
                })
                .await
            }
            Action::ReceiveDocuments { documents } => {
                c.terima_kelengkapan(pb::DataDilengkapi { langkah, dokumen: documents }).await
            }
            Action::Schedule { visit, days_ahead, place } => {
                let k = pb::Kunjungan { langkah, waktu_ms: days_from_now_ms(days_ahead), alamat: place };
                if visit == Visit::Installation {
                    c.jadwalkan_pemasangan(k).await
                } else {
                    c.jadwalkan_survei(k).await
                }
            }
            Action::AssessFee { amount_idr, billing_code, channel } => {
                c.terbitkan_tagihan(pb::Tagihan {
                    langkah,
                    jumlah_tagihan: amount_idr,
                    kode_bayar: billing_code,
                    saluran_pembayaran: channel,
                })
                .await
            }
            Action::ConfirmPayment { amount_idr, reference } => {
                c.konfirmasi_pembayaran(pb::Pembayaran {
                    langkah,
                    jumlah_bayar: amount_idr,
                    nomor_referensi: reference,
                })
                .await
            }
            Action::Issue { document_number } => {
                c.nyalakan_sambungan(pb::Penyalaan { langkah, id_pelanggan: document_number }).await
            }
            Action::Reject { code, reason } => {
                c.tolak_permohonan(pb::Penolakan { langkah, kode_alasan: code, alasan: reason }).await
            }
            Action::Withdraw { reason } => {
                c.batalkan_permohonan(pb::Pembatalan { langkah, alasan: reason }).await
            }
            Action::OpenCase { .. } | Action::File { .. } | Action::StartReview | Action::Collect => {
                return Err(SimError::Unsupported { service, action: action.name() })
            }
        };
        Ok(answer(ag, rpc, r)?.event_id)
    }

    async fn step_dukcapil(
        &mut self,
        service: Service,
        rpc: &'static str,
        at: StepRef<'_>,
        action: &Action,
    ) -> Result<String, SimError> {
        use dukcapil::v1 as pb;
        let ag = Agency::Dukcapil;
        let l = pb::Langkah {
            nomor_berkas: at.tracking_number.to_owned(),
            nomor_permohonan: at.application_id.to_owned(),
            petugas: at.officer.to_owned(),
        };
        let c = &mut self.dukcapil;
        let r = match action.clone() {
            Action::RequestDocuments { documents, counter, note } => {
                c.minta_kelengkapan(pb::KekuranganBerkas {
                    langkah: Some(l),
                    dokumen: documents,
                    loket: counter,
                    catatan: note,
                })
                .await
            }
            Action::ReceiveDocuments { documents } => {
                c.terima_kelengkapan(pb::BerkasDilengkapi { langkah: Some(l), dokumen: documents }).await
            }
            Action::StartReview => c.mulai_verifikasi(l).await,
            Action::Issue { document_number } => {
                c.cetak_dokumen(pb::DokumenDicetak { langkah: Some(l), nomor_register: document_number })
                    .await
            }
            Action::Collect => c.serahkan_dokumen(l).await,
            Action::Reject { code, reason } => {
                c.tolak_permohonan(pb::Penolakan { langkah: Some(l), kode_alasan: code, alasan: reason })
                    .await
            }
            // Dukcapil's withdrawal carries no reason (mapping v1).
            Action::Withdraw { .. } => c.batalkan_permohonan(l).await,
            Action::OpenCase { .. }
            | Action::File { .. }
            | Action::Schedule { .. }
            | Action::AssessFee { .. }
            | Action::ConfirmPayment { .. } => {
                return Err(SimError::Unsupported { service, action: action.name() })
            }
        };
        Ok(answer(ag, rpc, r)?.event_id)
    }

    async fn step_bank(
        &mut self,
        service: Service,
        rpc: &'static str,
        at: StepRef<'_>,
        action: &Action,
    ) -> Result<String, SimError> {
        use bank::v1 as pb;
        let ag = Agency::Bank;
        let l = pb::Langkah {
            nomor_berkas: at.tracking_number.to_owned(),
            nomor_referensi: at.application_id.to_owned(),
            petugas: at.officer.to_owned(),
        };
        let c = &mut self.bank;
        let r = match action.clone() {
            Action::StartReview => c.verifikasi_data_nasabah(l).await,
            Action::RequestDocuments { documents, counter, note } => {
                c.minta_dokumen(pb::DokumenKurang {
                    langkah: Some(l),
                    dokumen: documents,
                    meja_layanan: counter,
                    catatan: note,
                })
                .await
            }
            Action::ReceiveDocuments { documents } => {
                c.terima_dokumen(pb::DokumenDiterima { langkah: Some(l), dokumen: documents }).await
            }
            Action::Schedule { days_ahead, place, .. } => {
                c.jadwalkan_survei_usaha(pb::SurveiUsaha {
                    langkah: Some(l),
                    waktu_ms: days_from_now_ms(days_ahead),
                    lokasi_usaha: place,
                })
                .await
            }
            Action::AssessFee { amount_idr, channel, .. } => {
                c.tagih_setoran_awal(pb::TagihanSetoranAwal {
                    langkah: Some(l),
                    jumlah_setoran: amount_idr,
                    saluran_setoran: channel,
                })
                .await
            }
            Action::ConfirmPayment { amount_idr, reference } => {
                c.terima_setoran_awal(pb::SetoranAwal {
                    langkah: Some(l),
                    jumlah_setoran: amount_idr,
                    nomor_transaksi: reference,
                })
                .await
            }
            Action::Issue { document_number } => {
                c.aktifkan_rekening(pb::RekeningAktif { langkah: Some(l), nomor_rekening: document_number })
                    .await
            }
            Action::Collect => c.serahkan_kartu(l).await,
            Action::Reject { code, reason } => {
                c.tolak_permohonan(pb::Penolakan { langkah: Some(l), kode_alasan: code, alasan: reason })
                    .await
            }
            Action::Withdraw { reason } => {
                c.batalkan_permohonan(pb::Pembatalan { langkah: Some(l), alasan: reason }).await
            }
            Action::OpenCase { .. } | Action::File { .. } => {
                return Err(SimError::Unsupported { service, action: action.name() })
            }
        };
        Ok(answer(ag, rpc, r)?.event_id)
    }

    async fn step_imigrasi(
        &mut self,
        service: Service,
        rpc: &'static str,
        at: StepRef<'_>,
        action: &Action,
    ) -> Result<String, SimError> {
        use imigrasi::v1 as pb;
        let ag = Agency::Imigrasi;
        let l = pb::Langkah {
            nomor_berkas: at.tracking_number.to_owned(),
            nomor_permohonan: at.application_id.to_owned(),
            petugas: at.officer.to_owned(),
        };
        let c = &mut self.imigrasi;
        let r = match action.clone() {
            Action::RequestDocuments { documents, counter, note } => {
                c.minta_kelengkapan(pb::KekuranganBerkas {
                    langkah: Some(l),
                    dokumen: documents,
                    loket: counter,
                    catatan: note,
                })
                .await
            }
            Action::ReceiveDocuments { documents } => {
                c.terima_kelengkapan(pb::BerkasDilengkapi { langkah: Some(l), dokumen: documents }).await
            }
            Action::Schedule { days_ahead, place, .. } => {
                c.jadwalkan_wawancara(pb::JadwalWawancara {
                    langkah: Some(l),
                    waktu_ms: days_from_now_ms(days_ahead),
                    tempat: place,
                })
                .await
            }
            Action::StartReview => c.mulai_wawancara(l).await,
            Action::AssessFee { amount_idr, billing_code, channel } => {
                c.terbitkan_kode_billing(pb::KodeBilling {
                    langkah: Some(l),
                    jumlah_pnbp: amount_idr,
                    kode_billing: billing_code,
                    saluran_pembayaran: channel,
                })
                .await
            }
            Action::ConfirmPayment { amount_idr, reference } => {
                c.konfirmasi_pembayaran(pb::PembayaranPnbp {
                    langkah: Some(l),
                    jumlah_pnbp: amount_idr,
                    ntpn: reference,
                })
                .await
            }
            Action::Issue { document_number } => {
                c.cetak_paspor(pb::PasporDicetak { langkah: Some(l), nomor_paspor: document_number }).await
            }
            Action::Collect => c.serahkan_paspor(l).await,
            Action::Reject { code, reason } => {
                c.tolak_permohonan(pb::Penolakan { langkah: Some(l), kode_alasan: code, alasan: reason })
                    .await
            }
            Action::Withdraw { reason } => {
                c.batalkan_permohonan(pb::Pembatalan { langkah: Some(l), alasan: reason }).await
            }
            Action::OpenCase { .. } | Action::File { .. } => {
                return Err(SimError::Unsupported { service, action: action.name() })
            }
        };
        Ok(answer(ag, rpc, r)?.event_id)
    }

    async fn step_bpn(
        &mut self,
        service: Service,
        rpc: &'static str,
        at: StepRef<'_>,
        action: &Action,
    ) -> Result<String, SimError> {
        use bpn::v1 as pb;
        let ag = Agency::Bpn;
        let l = pb::Langkah {
            nomor_berkas_mpp: at.tracking_number.to_owned(),
            nomor_permohonan: at.application_id.to_owned(),
            petugas: at.officer.to_owned(),
        };
        let c = &mut self.bpn;
        let r = match action.clone() {
            Action::RequestDocuments { documents, counter, note } => {
                c.minta_kelengkapan(pb::KekuranganBerkas {
                    langkah: Some(l),
                    dokumen: documents,
                    loket: counter,
                    catatan: note,
                })
                .await
            }
            Action::ReceiveDocuments { documents } => {
                c.terima_kelengkapan(pb::BerkasDilengkapi { langkah: Some(l), dokumen: documents }).await
            }
            Action::StartReview => c.mulai_pemeriksaan(l).await,
            Action::AssessFee { amount_idr, billing_code, channel } => {
                c.terbitkan_sps(pb::SuratPerintahSetor {
                    langkah: Some(l),
                    jumlah_pnbp: amount_idr,
                    kode_billing: billing_code,
                    saluran_pembayaran: channel,
                })
                .await
            }
            Action::ConfirmPayment { amount_idr, reference } => {
                c.konfirmasi_pembayaran(pb::PembayaranPnbp {
                    langkah: Some(l),
                    jumlah_pnbp: amount_idr,
                    ntpn: reference,
                })
                .await
            }
            Action::Schedule { days_ahead, place, .. } => {
                c.jadwalkan_pengukuran(pb::JadwalPengukuran {
                    langkah: Some(l),
                    waktu_ms: days_from_now_ms(days_ahead),
                    lokasi: place,
                })
                .await
            }
            Action::Issue { document_number } => {
                c.terbitkan_produk(pb::ProdukTerbit { langkah: Some(l), nomor_produk: document_number }).await
            }
            Action::Collect => c.serahkan_produk(l).await,
            Action::Reject { code, reason } => {
                c.tolak_berkas(pb::Penolakan { langkah: Some(l), kode_alasan: code, alasan: reason }).await
            }
            Action::Withdraw { reason } => {
                c.batalkan_berkas(pb::Pembatalan { langkah: Some(l), alasan: reason }).await
            }
            Action::OpenCase { .. } | Action::File { .. } => {
                return Err(SimError::Unsupported { service, action: action.name() })
            }
        };
        Ok(answer(ag, rpc, r)?.event_id)
    }
}
