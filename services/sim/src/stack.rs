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

use mpp_agencies::{Answer, Target as AgencyTarget};
use mpp_core::EventBody;
use mpp_proto::agency::{bank, bpn, dpmptsp, dukcapil, imigrasi, pdam, pln};
use mpp_proto::frontoffice::v1 as fo;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::citizen::Citizen;
use crate::error::SimError;
use crate::plan::{Action, Agency, Service};

/// Longest one RPC may take, connecting included, in milliseconds.
pub const CALL_TIMEOUT_MS: u64 = 10_000;

/// Pause between two attempts to reach a service that is still starting, in
/// milliseconds ([`Stack::wait_reachable`]).
pub const CONNECT_RETRY_MS: u64 = 200;

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
/// has no review RPC, Dukcapil charges no fee). The agency's inverse
/// mapping in `mpp-agencies` decides.
pub fn rpc_name(service: Service, action: &Action) -> Option<&'static str> {
    // The time does not choose the RPC.
    let body = action.event(0)?;
    let t = AgencyTarget { service_id: service.service_id(), case: "", application: "", officer: "" };
    AgencyCall::new(service.agency(), &t, &body).map(|c| c.rpc())
}

/// One agency's request, as the agency's module in `mpp-agencies` builds
/// it from the event a step describes.
#[derive(Debug)]
enum AgencyCall {
    Dukcapil(mpp_agencies::dukcapil::Call),
    Imigrasi(mpp_agencies::imigrasi::Call),
    Bpn(mpp_agencies::bpn::Call),
    Pln(mpp_agencies::pln::Call),
    Pdam(mpp_agencies::pdam::Call),
    Bank(mpp_agencies::bank::Call),
    Dpmptsp(mpp_agencies::dpmptsp::Call),
}

impl AgencyCall {
    /// The request that makes `agency` publish `body` about `t`, or `None`
    /// when the agency has no RPC for it.
    fn new(agency: Agency, t: &AgencyTarget<'_>, body: &EventBody) -> Option<Self> {
        use mpp_agencies as a;
        let call = match agency {
            Agency::FrontOffice => return None,
            Agency::Dukcapil => AgencyCall::Dukcapil(a::dukcapil::request(t, body).ok()?),
            Agency::Imigrasi => AgencyCall::Imigrasi(a::imigrasi::request(t, body).ok()?),
            Agency::Bpn => AgencyCall::Bpn(a::bpn::request(t, body).ok()?),
            Agency::Pln => AgencyCall::Pln(a::pln::request(t, body).ok()?),
            Agency::Pdam => AgencyCall::Pdam(a::pdam::request(t, body).ok()?),
            Agency::Bank => AgencyCall::Bank(a::bank::request(t, body).ok()?),
            Agency::Dpmptsp => AgencyCall::Dpmptsp(a::dpmptsp::request(t, body).ok()?),
        };
        Some(call)
    }

    /// The RPC's name.
    fn rpc(&self) -> &'static str {
        match self {
            AgencyCall::Dukcapil(c) => c.rpc(),
            AgencyCall::Imigrasi(c) => c.rpc(),
            AgencyCall::Bpn(c) => c.rpc(),
            AgencyCall::Pln(c) => c.rpc(),
            AgencyCall::Pdam(c) => c.rpc(),
            AgencyCall::Bank(c) => c.rpc(),
            AgencyCall::Dpmptsp(c) => c.rpc(),
        }
    }

    /// Sends the request to the agency's client in `stack`.
    async fn send(self, stack: &mut Stack) -> Result<Answer, tonic::Status> {
        match self {
            AgencyCall::Dukcapil(c) => c.call(&mut stack.dukcapil).await,
            AgencyCall::Imigrasi(c) => c.call(&mut stack.imigrasi).await,
            AgencyCall::Bpn(c) => c.call(&mut stack.bpn).await,
            AgencyCall::Pln(c) => c.call(&mut stack.pln).await,
            AgencyCall::Pdam(c) => c.call(&mut stack.pdam).await,
            AgencyCall::Bank(c) => c.call(&mut stack.bank).await,
            AgencyCall::Dpmptsp(c) => c.call(&mut stack.dpmptsp).await,
        }
    }
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

/// The time now, Unix milliseconds (the one input not taken from the
/// seed: appointments are booked days from it).
fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Maps an RPC's outcome, keeping the status code and the service's
/// `mpp-reason-code`.
fn answer<T>(agency: Agency, rpc: &'static str, r: Result<T, tonic::Status>) -> Result<T, SimError> {
    r.map_err(|s| SimError::Rpc {
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
        // What each client's `with_interceptor` would build: the channel
        // behind the agency's bearer token.
        let ch = |agency: Agency| -> Result<Authed, SimError> {
            let t = endpoints.get(agency);
            Ok(InterceptedService::new(
                endpoint(agency, &t.addr, endpoints.tls_ca_pem.as_deref())?.connect_lazy(),
                Bearer::new(agency, t.token.as_deref())?,
            ))
        };
        let frontoffice =
            fo::front_office_service_client::FrontOfficeServiceClient::new(ch(Agency::FrontOffice)?);
        let dukcapil =
            dukcapil::v1::dukcapil_service_client::DukcapilServiceClient::new(ch(Agency::Dukcapil)?);
        let imigrasi =
            imigrasi::v1::imigrasi_service_client::ImigrasiServiceClient::new(ch(Agency::Imigrasi)?);
        let bpn = bpn::v1::bpn_service_client::BpnServiceClient::new(ch(Agency::Bpn)?);
        let pln = pln::v1::pln_service_client::PlnServiceClient::new(ch(Agency::Pln)?);
        let pdam = pdam::v1::pdam_service_client::PdamServiceClient::new(ch(Agency::Pdam)?);
        let bank = bank::v1::bank_service_client::BankServiceClient::new(ch(Agency::Bank)?);
        let dpmptsp = dpmptsp::v1::dpmptsp_service_client::DpmptspServiceClient::new(ch(Agency::Dpmptsp)?);
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
                    bahasa: String::new(),
                    tanpa_notifikasi: false,
                })
                .await
                .map(tonic::Response::into_inner),
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
        let body = EventBody::ApplicationFiled { documents: documents.to_vec() };
        let t = AgencyTarget {
            service_id: service.service_id(),
            case: tracking_number,
            application: "",
            officer,
        };
        let call =
            AgencyCall::new(agency, &t, &body).ok_or(SimError::Unsupported { service, action: "file" })?;
        let rpc = call.rpc();
        let Answer { case, application: application_id, event_ids } =
            answer(agency, rpc, call.send(self).await)?;
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
        let agency = service.agency();
        let unsupported = || SimError::Unsupported { service, action: action.name() };
        // Opening a case and filing are not steps of an application.
        let body = match action.event(now_ms()) {
            None | Some(EventBody::ApplicationFiled { .. }) => return Err(unsupported()),
            Some(body) => body,
        };
        let t = AgencyTarget {
            service_id: service.service_id(),
            case: at.tracking_number,
            application: at.application_id,
            officer: at.officer,
        };
        let call = AgencyCall::new(agency, &t, &body).ok_or_else(unsupported)?;
        let rpc = call.rpc();
        let a = answer(agency, rpc, call.send(self).await)?;
        event_id(agency, rpc, a.event_ids.into_iter().next().unwrap_or_default())
    }
}
