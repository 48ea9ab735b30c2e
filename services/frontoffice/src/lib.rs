//! The MPP front office (loket penerimaan): the reception desk of one Mal
//! Pelayanan Publik, where a citizen's case (berkas) is opened before any
//! agency files an application into it.
//!
//! One RPC, `BukaBerkas`: the officer enters the citizen's NIK, name and
//! (optionally) phone number; the service
//!
//! 1. checks every field (a malformed NIK is `INVALID_ARGUMENT` /
//!    `MALFORMED_NIK` with what is wrong and what a NIK looks like);
//! 2. allocates the next serial from its durable [`counter`] (flushed to disk
//!    before anything is published), so tracking numbers are unique without
//!    relying on chance;
//! 3. generates the citizen's 6-digit PIN and publishes one `case_opened`
//!    event as agency `mpp-<region>` (e.g. `mpp-1771`), service `loket`,
//!    carrying the PIN verifier and the NIK's keyed hash ([`nik_key`]);
//! 4. answers with the tracking number, the PIN (once), the event id and the
//!    [`receipt`] lines to print.
//!
//! Everything else — authentication, the durable outbox and its relay to
//! JetStream, metrics, health, graceful shutdown — is the agency kit's
//! [`mpp_agency_kit::run_with`]. The hub accepts `case_opened` of a service
//! without a published standard, so the front office publishes none.
//!
//! Privacy (DESIGN.md, invariant 7): the NIK leaves the service only as
//! HMAC-SHA-256 under the NIK key; the name and phone number are accepted
//! only to be printed on the receipt: they are in no event and no log line,
//! and no error message repeats them.
//!
//! Architecture invariant: this crate knows the reception desk's vocabulary
//! and nothing about NATS; everything below the RPC goes through
//! [`mpp_agency_kit`].

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

pub mod citizen;
pub mod counter;
pub mod nik_key;
pub mod receipt;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use mpp_agency_kit::{input, to_status, Agency, AgencyConfig, CommonArgs, KitError, Listeners};
use mpp_core::ids::{AgencyId, RegionCode, ServiceId, TrackingNumber};
use mpp_core::{ReasonCode, Rejection};
use mpp_proto::frontoffice::v1 as pb;
use pb::front_office_service_server::{FrontOfficeService, FrontOfficeServiceServer};
use tokio::net::TcpListener;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Response, Status};

use crate::counter::{
    CounterError, RangeError, SerialCounter, SerialRange, COUNTER_DIR, SERIAL_RANGE_END_MAX,
    SERIAL_RANGE_START_DEFAULT,
};
use crate::nik_key::{nik_keyed_hash, NikKey, NikKeyError};
use crate::receipt::{parse_mpp_name, LookupUrl, Receipt, ReceiptConfig, LOOKUP_BASE_URL_DEFAULT};

/// First part of the agency id: the front office of region `1771` publishes
/// as agency `mpp-1771`.
pub const AGENCY_ID_PREFIX: &str = "mpp";

/// The service id of every event: the reception desk.
pub const SERVICE_ID: &str = "loket";

/// The service id [`SERVICE_ID`] as the core's type.
pub fn service_id() -> ServiceId {
    // A constant slug (checked by a test); the fallback is unreachable.
    ServiceId::parse(SERVICE_ID).unwrap_or_else(|_| unreachable!("{SERVICE_ID} is a valid service id"))
}

/// Default gRPC listen address of `mpp-frontoffice`.
pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:50060";

/// The agency id of the front office of `region`, e.g. `mpp-1771`.
pub fn agency_id(region: RegionCode) -> Result<AgencyId, Rejection> {
    AgencyId::parse(&format!("{AGENCY_ID_PREFIX}-{region}"))
}

/// The front office's own flags (flatten them next to [`CommonArgs`]). Each
/// has an `MPP_*` environment fallback.
#[derive(Debug, Clone, clap::Args)]
pub struct FrontOfficeArgs {
    /// File holding the secret key of NIK keyed hashes (HMAC-SHA-256; 32..=4096
    /// bytes, surrounding whitespace ignored), e.g. from `head -c 32
    /// /dev/urandom | base64`. Every service of the province that publishes
    /// NIK hashes must use the same key, and use it for nothing else.
    /// Required unless --insecure-dev-keys is given.
    #[arg(long, env = "MPP_NIK_KEY_FILE")]
    pub nik_key_file: Option<PathBuf>,

    /// Allow the PUBLIC development NIK key and PIN pepper when
    /// --nik-key-file or --pin-pepper-file is missing (logged loudly at
    /// start). Development only: with them, every published NIK hash and PIN
    /// verifier can be reversed. Without this flag the service refuses to
    /// start when either file is missing.
    #[arg(long, env = "MPP_INSECURE_DEV_KEYS")]
    pub insecure_dev_keys: bool,

    /// The hub's public tracking page, printed on every receipt; the receipt
    /// also gives the JSON lookup <scheme://host[:port]>/api/v1/cases/<tracking
    /// number> on the same origin.
    #[arg(long, env = "MPP_LOOKUP_BASE_URL", default_value = LOOKUP_BASE_URL_DEFAULT,
          value_parser = LookupUrl::parse)]
    pub lookup_base_url: LookupUrl,

    /// The MPP's name as printed on receipts (one line, at most 100 bytes).
    /// Default: "Mal Pelayanan Publik <region code>".
    #[arg(long, env = "MPP_NAME", value_parser = parse_mpp_name)]
    pub mpp_name: Option<String>,

    /// First serial this front office allocates (tracking numbers are
    /// RRRR-SSSSSSSSSS-C; S is the serial). One front office per region
    /// allocates serials; should several ever run in one region, give each
    /// a disjoint range.
    #[arg(long, env = "MPP_SERIAL_RANGE_START", default_value_t = SERIAL_RANGE_START_DEFAULT)]
    pub serial_range_start: u64,

    /// End of this front office's serials (exclusive), at most 5000000000:
    /// serials from 5000000000 on are drawn at random by agency services
    /// that open cases for walk-in citizens themselves.
    #[arg(long, env = "MPP_SERIAL_RANGE_END", default_value_t = SERIAL_RANGE_END_MAX)]
    pub serial_range_end: u64,
}

/// Why opening a case failed. Nothing was published for any of these except
/// [`OpenError::Kit`] with [`KitError::Publish`] (see its docs).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A request field was refused, or publishing failed.
    #[error(transparent)]
    Kit(#[from] KitError),
    /// No serial could be allocated.
    #[error(transparent)]
    Counter(#[from] CounterError),
}

impl OpenError {
    /// The stable reason code.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            OpenError::Kit(e) => e.reason_code(),
            OpenError::Counter(_) => ReasonCode::Unavailable,
        }
    }
}

impl From<OpenError> for Status {
    fn from(err: OpenError) -> Self {
        match err {
            OpenError::Kit(e) => to_status(&e),
            OpenError::Counter(e) => {
                // Used up: retrying does not help, the operator must configure
                // a new range. Anything else is the disk: retry later.
                let code = match e {
                    CounterError::Exhausted { .. } => Code::FailedPrecondition,
                    _ => Code::Unavailable,
                };
                let reason = ReasonCode::Unavailable;
                let mut status = Status::new(code, format!("{reason}: {e}"));
                status.metadata_mut().insert(
                    mpp_agency_kit::REASON_CODE_METADATA_KEY,
                    MetadataValue::from_static(reason.as_str()),
                );
                status
            }
        }
    }
}

/// The RPC implementation.
#[derive(Debug, Clone)]
pub struct FrontOffice {
    agency: Agency,
    service: ServiceId,
    counter: SerialCounter,
    nik_key: NikKey,
    receipt: ReceiptConfig,
}

impl FrontOffice {
    /// The front office over `agency`, allocating from `counter`.
    pub fn new(agency: Agency, counter: SerialCounter, nik_key: NikKey, receipt: ReceiptConfig) -> Self {
        Self { agency, service: service_id(), counter, nik_key, receipt }
    }

    /// The tonic server wrapper.
    pub fn into_server(self) -> FrontOfficeServiceServer<Self> {
        FrontOfficeServiceServer::new(self)
    }

    /// Opens a case (see the crate docs for the steps).
    pub async fn buka_berkas(&self, r: &pb::PembukaanBerkas) -> Result<pb::BerkasDibuka, OpenError> {
        // Every check before the counter, so a bad request uses no serial.
        let officer = input::officer("petugas", &r.petugas)?;
        let nik = citizen::nik("nik", &r.nik)?;
        let nama = citizen::nama("nama", &r.nama)?;
        let telepon = citizen::telepon("telepon", &r.telepon)?;
        let nik_hash = nik_keyed_hash(&self.nik_key, &nik).to_vec();

        let serial = self.counter.allocate().await.inspect_err(|e| {
            tracing::error!(error = %e, "Cannot allocate a tracking number; no case opened");
        })?;
        let tracking = TrackingNumber::new(self.agency.region(), serial).ok_or_else(|| {
            // The range is validated below SERIAL_RANGE_END_MAX < SERIAL_MAX.
            KitError::Event(Rejection::new(ReasonCode::MalformedTrackingNumber, "serial out of range"))
        })?;
        let (pin, accepted) = self.agency.open_case(&self.service, tracking, &officer, nik_hash).await?;
        tracing::info!(
            case = %tracking,
            event_id = %accepted.event_id,
            outbox_seq = ?accepted.outbox_seq,
            officer = %officer,
            "Case opened"
        );
        let tanda_terima = self.receipt.lines(&Receipt {
            tracking: &tracking,
            pin: &pin,
            nama: &nama,
            telepon: telepon.as_deref(),
            officer: &officer,
        });
        Ok(pb::BerkasDibuka {
            nomor_berkas: tracking.to_string(),
            pin: pin.expose().to_owned(),
            event_id: accepted.event_id,
            tanda_terima,
        })
    }
}

#[tonic::async_trait]
impl FrontOfficeService for FrontOffice {
    async fn buka_berkas(
        &self,
        request: Request<pb::PembukaanBerkas>,
    ) -> Result<Response<pb::BerkasDibuka>, Status> {
        Ok(Response::new(FrontOffice::buka_berkas(self, request.get_ref()).await?))
    }
}

/// Why the front office could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The kit refused to start or stopped with an error.
    #[error(transparent)]
    Kit(#[from] mpp_agency_kit::RunError),
    /// No PIN pepper file and no `--insecure-dev-keys`.
    #[error(
        "no --pin-pepper-file (MPP_PIN_PEPPER_FILE) given: refusing to publish PIN verifiers under the \
         public development pepper. Give the province's pepper file, or --insecure-dev-keys for development"
    )]
    NoPepper,
    /// The NIK key is missing or unusable.
    #[error(transparent)]
    NikKey(#[from] NikKeyError),
    /// The serial range is invalid.
    #[error(transparent)]
    Range(#[from] RangeError),
    /// The counter could not be opened.
    #[error(transparent)]
    Counter(#[from] CounterError),
    /// `--catalogue-file` was given: the front office files no applications,
    /// so it has no service standards to publish.
    #[error(
        "--catalogue-file (MPP_CATALOGUE_FILE) is not used by the front office: it only opens cases, \
         which need no service standard. Give the catalogue to the agency services instead"
    )]
    CatalogueNotUsed,
    /// The region makes no valid agency id (a bug: region codes are 4 digits).
    #[error("no agency id for this region: {0}")]
    AgencyId(Rejection),
}

/// Runs the front office until SIGTERM or ctrl-c: tracing, then
/// [`run_with`] on the bound `--grpc-addr` and `--metrics-addr`.
pub async fn run(common: CommonArgs, args: FrontOfficeArgs) -> Result<(), RunError> {
    mpp_agency_kit::init_tracing(common.log_format).map_err(mpp_agency_kit::RunError::from)?;
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr).await.map_err(|source| mpp_agency_kit::RunError::Bind { addr, source })
    };
    let grpc = bind(common.grpc_addr).await?;
    let metrics = match common.metrics_addr {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    run_with(common, args, Listeners { grpc, metrics }, mpp_agency_kit::shutdown_signal()).await
}

/// [`run`] without tracing set-up, on given listeners, until `shutdown`
/// resolves (for tests and embedding). Refuses to start, before opening
/// anything, without authentication, without keys (unless
/// `--insecure-dev-keys`) or with an invalid serial range; then opens the
/// counter in `<data-dir>/counter` and hands over to the kit.
pub async fn run_with(
    common: CommonArgs,
    args: FrontOfficeArgs,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    if common.tokens_file.is_none() && !common.insecure_no_auth {
        return Err(mpp_agency_kit::RunError::NoAuth.into());
    }
    if common.pin_pepper_file.is_none() && !args.insecure_dev_keys {
        return Err(RunError::NoPepper);
    }
    if common.catalogue_file.is_some() {
        return Err(RunError::CatalogueNotUsed);
    }
    let range = SerialRange::new(args.serial_range_start, args.serial_range_end)?;
    let nik_key = NikKey::load(args.nik_key_file.as_deref(), args.insecure_dev_keys)?;
    let region = common.region_code;
    let receipt = ReceiptConfig {
        mpp_name: args.mpp_name.clone().unwrap_or_else(|| format!("Mal Pelayanan Publik {region}")),
        lookup: args.lookup_base_url.clone(),
    };
    let config = AgencyConfig {
        agency_id: agency_id(region).map_err(RunError::AgencyId)?,
        args: common,
        standards: vec![],
    };
    let counter = SerialCounter::open(&config.data_dir().join(COUNTER_DIR), range)?;
    let make = {
        let counter = counter.clone();
        move |agency| FrontOffice::new(agency, counter, nik_key, receipt).into_server()
    };
    let result = mpp_agency_kit::run_with(config, make, listeners, shutdown).await;
    if let Err(e) = counter.close() {
        tracing::error!(error = %e, "Cannot flush the tracking-number counter at shutdown");
    }
    Ok(result?)
}

#[cfg(test)]
mod tests;
