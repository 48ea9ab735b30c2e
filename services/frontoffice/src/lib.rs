//! The MPP front office (loket penerimaan): the reception desk of one Mal
//! Pelayanan Publik, where a citizen's case (berkas) is opened before any
//! agency files an application into it.
//!
//! `BukaBerkas` opens a case: the officer enters the citizen's NIK, name and
//! (optionally) phone number and e-mail address; the service
//!
//! 1. checks every field (a malformed NIK is `INVALID_ARGUMENT` /
//!    `MALFORMED_NIK` with what is wrong and what a NIK looks like);
//! 2. takes the citizen's data key from its [`vault`] (created and flushed on
//!    their first case);
//! 3. allocates the next serial from its durable [`counter`] (flushed to disk
//!    before anything is published), so tracking numbers are unique without
//!    relying on chance;
//! 4. seals the name and contact details for that case (AES-256-GCM) and
//!    records the sealing in the vault (flushed);
//! 5. generates the citizen's PIN (nine characters, 44.6 bits) and publishes, in one outbox
//!    batch, `case_opened` (the PIN verifier and the NIK's keyed hash,
//!    [`nik_key`]) and `personal_data_sealed` (key id, nonce, ciphertext) as
//!    agency `mpp-<region>` (e.g. `mpp-1771`), service `loket`;
//! 6. answers with the tracking number, the PIN (once), the event id and the
//!    [`receipt`] lines to print.
//!
//! `BukaBerkasInstansi` opens a case for an agency service's walk-in
//! citizen (the agency files its application into it and hands the citizen
//! the PIN): the same counter and PIN, `case_opened` with an empty NIK hash
//! and no personal data, since the agencies' filings carry none. The caller
//! is the agency service its token names (scope `cases:open-walk-in`),
//! logged with every opening and rate-limited per token. The PIN pepper
//! lives here and at the hub only (`--pin-pepper-file`): no agency service
//! computes a PIN verifier.
//!
//! `LihatDataPribadi` decrypts a case's personal data for an officer;
//! `HapusDataPribadi` destroys the citizen's key (crypto-shredding, UU
//! 27/2022) and publishes `personal_data_erased` for each of their cases
//! (docs/PRIVACY.md).
//!
//! Each RPC needs its own scope in the caller's token ([`RPC_SCOPES`]:
//! `cases:open`, `personal-data:read`, `personal-data:erase`,
//! `pins:reissue`, `cases:open-walk-in`), so a desk
//! that opens cases cannot read or erase personal data. Reads and erasures
//! are logged with the authenticated client id as the accountable officer
//! (the request's `petugas` is logged as what the caller claims, and stays
//! the pseudonymous officer of published events) and rate-limited per
//! client id ([`limit`]).
//!
//! Everything else — authentication, the durable outbox and its relay to
//! JetStream, metrics, health, graceful shutdown — is the agency kit's
//! [`mpp_agency_kit::run_with`]. The hub accepts `case_opened` of a service
//! without a published standard, so the front office publishes none.
//!
//! Privacy (docs/DESIGN.md, invariant 7): the NIK leaves the service only as
//! HMAC-SHA-256 under the NIK key; the name, phone number and e-mail
//! address leave it only sealed under the citizen's data key (and printed on
//! the receipt): they are in no log line, and no error message repeats them.
//!
//! Architecture invariant: this crate knows the reception desk's vocabulary
//! and nothing about NATS; everything below the RPC goes through
//! [`mpp_agency_kit`].

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

pub mod citizen;
pub mod counter;
pub mod limit;
pub mod nik_key;
pub mod notify;
pub mod receipt;
pub mod serial_key;
pub mod vault;
pub mod vault_key;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use mpp_agency_kit::ids::PepperError;
use mpp_agency_kit::{
    input, pin_verifier, to_status, Agency, AgencyConfig, ClientId, Clock, CommonArgs, KitError, Listeners,
    OutgoingEvent, Pin, PinPepper, RpcScopes, SystemClock,
};
use mpp_core::event::Target;
use mpp_core::ids::{AgencyId, OfficerId, RegionCode, ServiceId, TrackingNumber};
use mpp_core::{EventBody, ReasonCode, Rejection};
use mpp_proto::frontoffice::v1 as pb;
use pb::front_office_service_server::{FrontOfficeService, FrontOfficeServiceServer};
use tokio::net::TcpListener;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Response, Status};

use crate::counter::{
    CounterError, RangeError, SerialCounter, SerialOrder, SerialRange, COUNTER_DIR, SERIAL_RANGE_END_MAX,
    SERIAL_RANGE_START_DEFAULT,
};
use crate::limit::{Action, Limit, PersonalDataLimiter, PersonalDataLimits, RetryAfter};
use crate::nik_key::{nik_keyed_hash, NikKey, NikKeyError};
use crate::receipt::{parse_mpp_name, LookupUrl, Receipt, ReceiptConfig, LOOKUP_BASE_URL_DEFAULT};
use crate::serial_key::{SerialKey, SerialKeyError};
use crate::vault::{CaseRecord, PersonalData, Vault, VaultError, VAULT_DIR};
use crate::vault_key::{VaultKey, VaultKeyError, VAULT_ROTATION_CHECK_MS};

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

/// The scope of `BukaBerkas`.
pub const SCOPE_CASES_OPEN: &str = "cases:open";

/// The scope of `LihatDataPribadi`.
pub const SCOPE_PERSONAL_DATA_READ: &str = "personal-data:read";

/// The scope of `HapusDataPribadi`.
pub const SCOPE_PERSONAL_DATA_ERASE: &str = "personal-data:erase";

/// The scope of `TerbitkanUlangPin`.
pub const SCOPE_PINS_REISSUE: &str = "pins:reissue";

/// The scope of `BukaBerkasInstansi`: an agency service's token, to open
/// its walk-in citizens' cases (give it no other scope).
pub const SCOPE_CASES_OPEN_WALK_IN: &str = "cases:open-walk-in";

/// The scope each RPC of the front office needs (see
/// [`mpp_agency_kit::auth`]); a tokens-file line without scopes has them all.
pub const RPC_SCOPES: RpcScopes = RpcScopes(&[
    ("/mpp.frontoffice.v1.FrontOfficeService/BukaBerkas", SCOPE_CASES_OPEN),
    ("/mpp.frontoffice.v1.FrontOfficeService/LihatDataPribadi", SCOPE_PERSONAL_DATA_READ),
    ("/mpp.frontoffice.v1.FrontOfficeService/HapusDataPribadi", SCOPE_PERSONAL_DATA_ERASE),
    ("/mpp.frontoffice.v1.FrontOfficeService/TerbitkanUlangPin", SCOPE_PINS_REISSUE),
    ("/mpp.frontoffice.v1.FrontOfficeService/BukaBerkasInstansi", SCOPE_CASES_OPEN_WALK_IN),
    ("/mpp.frontoffice.v1.FrontOfficeService/AturNotifikasi", SCOPE_CASES_OPEN),
]);

/// The gRPC metadata entry of a `RATE_LIMITED` answer: whole seconds to
/// wait before retrying.
pub const RETRY_AFTER_METADATA_KEY: &str = "retry-after-s";

/// The agency id of the front office of `region`, e.g. `mpp-1771`.
pub fn agency_id(region: RegionCode) -> Result<AgencyId, Rejection> {
    AgencyId::parse(&format!("{AGENCY_ID_PREFIX}-{region}"))
}

/// The front office's own flags (flatten them next to [`CommonArgs`]). Each
/// has an `MPP_*` environment fallback.
#[derive(Debug, Clone, clap::Args)]
pub struct FrontOfficeArgs {
    /// File holding the secret pepper of citizen PIN verifiers (16..=4096
    /// bytes; surrounding whitespace ignored). Must be the same for every
    /// front office and the hub of the province; agency services hold none
    /// (their walk-in citizens' cases are opened here). Required unless
    /// --insecure-dev-keys is given.
    #[arg(long, env = "MPP_PIN_PEPPER_FILE")]
    pub pin_pepper_file: Option<PathBuf>,

    /// Allow the PUBLIC development keys when a key file is missing: the PIN
    /// pepper without --pin-pepper-file, the NIK key without --nik-key-file
    /// and the vault key without --vault-key-file, logged loudly at start.
    /// Development only: with them every published PIN verifier and NIK
    /// hash can be reversed. Without this flag the service refuses to start
    /// when a key file is missing, as the hub does.
    #[arg(long, env = "MPP_INSECURE_DEV_KEYS")]
    pub insecure_dev_keys: bool,

    /// File holding the secret key of NIK keyed hashes (HMAC-SHA-256; 32..=4096
    /// bytes, surrounding whitespace ignored), e.g. from `head -c 32
    /// /dev/urandom | base64`. Every service of the province that publishes
    /// NIK hashes must use the same key, and use it for nothing else.
    /// Required unless --insecure-dev-keys is given.
    #[arg(long, env = "MPP_NIK_KEY_FILE")]
    pub nik_key_file: Option<PathBuf>,

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

    /// End of this front office's serials (exclusive), at most 5000000000
    /// (serials from 5000000000 on are left unused: they were the random
    /// serials of agency services' walk-in cases, which are now opened
    /// here).
    #[arg(long, env = "MPP_SERIAL_RANGE_END", default_value_t = SERIAL_RANGE_END_MAX)]
    pub serial_range_end: u64,

    /// File holding the secret key that makes tracking numbers impossible to
    /// enumerate: 32..=1024 bytes as hex digits (surrounding whitespace
    /// ignored), e.g. from `head -c 32 /dev/urandom | od -An -tx1 | tr -d '
    /// \n'`. The printed serial is then a keyed permutation of the counter.
    /// Without it serials count up by one (logged as a warning at start).
    /// Once used, keep the key and --serial-range-end, or move to a range
    /// past the permuted one (see the README).
    #[arg(long, env = "MPP_SERIAL_KEY_FILE")]
    pub serial_key_file: Option<PathBuf>,

    /// File holding the key that encrypts the key vault at rest (the
    /// key-encryption key): exactly 32 random bytes as 64 hex digits
    /// (surrounding whitespace ignored), e.g. from `head -c 32 /dev/urandom |
    /// od -An -tx1 | tr -d ' \n'`. It wraps the vault's daily wrapping keys,
    /// which wrap the citizens' data keys; without it the vault's files
    /// cannot be read. Keep it apart from the data directory and its
    /// backups. Required unless --insecure-dev-keys is given.
    #[arg(long, env = "MPP_VAULT_KEY_FILE")]
    pub vault_key_file: Option<PathBuf>,

    /// Personal-data reads (LihatDataPribadi) one client system may make per
    /// minute; beyond them RESOURCE_EXHAUSTED / RATE_LIMITED.
    #[arg(long, env = "MPP_PERSONAL_DATA_READS_PER_MINUTE", default_value_t = limit::READS_PER_MINUTE_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..=limit::RATE_FLAG_MAX as i64))]
    pub personal_data_reads_per_minute: u32,

    /// Personal-data reads one client system may make in a burst.
    #[arg(long, env = "MPP_PERSONAL_DATA_READS_BURST", default_value_t = limit::READS_BURST_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..=limit::RATE_FLAG_MAX as i64))]
    pub personal_data_reads_burst: u32,

    /// Erasures (HapusDataPribadi) one client system may make per minute.
    #[arg(long, env = "MPP_PERSONAL_DATA_ERASURES_PER_MINUTE", default_value_t = limit::ERASURES_PER_MINUTE_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..=limit::RATE_FLAG_MAX as i64))]
    pub personal_data_erasures_per_minute: u32,

    /// Erasures one client system may make in a burst.
    #[arg(long, env = "MPP_PERSONAL_DATA_ERASURES_BURST", default_value_t = limit::ERASURES_BURST_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..=limit::RATE_FLAG_MAX as i64))]
    pub personal_data_erasures_burst: u32,

    /// Walk-in cases (BukaBerkasInstansi) one agency service's token may
    /// have opened per minute; beyond them RESOURCE_EXHAUSTED / RATE_LIMITED.
    #[arg(long, env = "MPP_WALK_INS_PER_MINUTE", default_value_t = limit::WALK_INS_PER_MINUTE_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..=limit::RATE_FLAG_MAX as i64))]
    pub walk_ins_per_minute: u32,

    /// Walk-in cases one agency service's token may have opened in a burst.
    #[arg(long, env = "MPP_WALK_INS_BURST", default_value_t = limit::WALK_INS_BURST_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..=limit::RATE_FLAG_MAX as i64))]
    pub walk_ins_burst: u32,

    /// Notifications to citizens ([`notify`]).
    #[command(flatten)]
    pub notify: notify::NotifyArgs,
}

impl FrontOfficeArgs {
    /// The per-client limits of reading and erasing personal data.
    pub fn personal_data_limits(&self) -> PersonalDataLimits {
        PersonalDataLimits {
            reads: Limit {
                per_minute: self.personal_data_reads_per_minute,
                burst: self.personal_data_reads_burst,
            },
            erasures: Limit {
                per_minute: self.personal_data_erasures_per_minute,
                burst: self.personal_data_erasures_burst,
            },
            walk_ins: Limit { per_minute: self.walk_ins_per_minute, burst: self.walk_ins_burst },
        }
    }
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
    /// The key vault failed or refused (e.g. the citizen's key seals too
    /// many cases).
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The calling agency service used up its walk-in openings for now.
    #[error("client {client} opened too many walk-in cases; retry in {} s", retry.seconds)]
    RateLimited {
        /// The authenticated client.
        client: ClientId,
        /// How long to wait.
        retry: RetryAfter,
    },
}

impl OpenError {
    /// The stable reason code.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            OpenError::Kit(e) => e.reason_code(),
            OpenError::Counter(_) => ReasonCode::Unavailable,
            OpenError::Vault(e) => vault_reason(e),
            OpenError::RateLimited { .. } => ReasonCode::RateLimited,
        }
    }
}

/// The reason code of a vault failure.
fn vault_reason(e: &VaultError) -> ReasonCode {
    match e {
        VaultError::TooManyCases => ReasonCode::CaseLimitExceeded,
        _ => ReasonCode::Unavailable,
    }
}

/// A status with its reason code in the `mpp-reason-code` metadata.
fn status_with(code: Code, reason: ReasonCode, message: String) -> Status {
    let mut status = Status::new(code, format!("{reason}: {message}"));
    status
        .metadata_mut()
        .insert(mpp_agency_kit::REASON_CODE_METADATA_KEY, MetadataValue::from_static(reason.as_str()));
    status
}

/// `RESOURCE_EXHAUSTED` / `RATE_LIMITED` with the seconds to wait in
/// [`RETRY_AFTER_METADATA_KEY`].
fn rate_limited(message: String, retry: RetryAfter) -> Status {
    let mut status = status_with(Code::ResourceExhausted, ReasonCode::RateLimited, message);
    status.metadata_mut().insert(RETRY_AFTER_METADATA_KEY, MetadataValue::from(retry.seconds));
    status
}

/// The status of a vault failure: a refusal the caller can act on
/// (`FAILED_PRECONDITION`), a ciphertext that does not open (`DATA_LOSS`:
/// the vault needs an operator) or the disk (`UNAVAILABLE`).
fn vault_status(e: &VaultError) -> Status {
    let code = match e {
        VaultError::TooManyCases | VaultError::AlreadySealed(_) => Code::FailedPrecondition,
        VaultError::Crypto | VaultError::Corrupt { .. } => Code::DataLoss,
        _ => Code::Unavailable,
    };
    status_with(code, vault_reason(e), e.to_string())
}

/// Why reading or erasing a case's personal data failed. Nothing was
/// published for any of these except [`PrivacyError::Kit`] with
/// [`KitError::Publish`].
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    /// A request field was refused, or publishing failed.
    #[error(transparent)]
    Kit(#[from] KitError),
    /// The key vault failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// No personal data was sealed for this case at this front office.
    #[error("no personal data was sealed for case {0} at this front office")]
    NotFound(TrackingNumber),
    /// The citizen's key was destroyed on an erasure request.
    #[error("the personal data of case {0} was erased on request; it can no longer be read")]
    Erased(TrackingNumber),
    /// The calling client system used up its reads or erasures for now.
    #[error("client {client} made too many personal-data {what}; retry in {} s", retry.seconds)]
    RateLimited {
        /// The authenticated client.
        client: ClientId,
        /// "reads" or "erasures".
        what: &'static str,
        /// How long to wait.
        retry: RetryAfter,
    },
}

impl PrivacyError {
    /// The stable reason code.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            PrivacyError::Kit(e) => e.reason_code(),
            PrivacyError::Vault(e) => vault_reason(e),
            PrivacyError::NotFound(_) => ReasonCode::UnknownCase,
            PrivacyError::Erased(_) => ReasonCode::PersonalDataErased,
            PrivacyError::RateLimited { .. } => ReasonCode::RateLimited,
        }
    }
}

impl From<PrivacyError> for Status {
    fn from(err: PrivacyError) -> Self {
        match &err {
            PrivacyError::Kit(e) => to_status(e),
            PrivacyError::Vault(e) => vault_status(e),
            PrivacyError::NotFound(_) => status_with(Code::NotFound, err.reason_code(), err.to_string()),
            PrivacyError::Erased(_) => {
                status_with(Code::FailedPrecondition, err.reason_code(), err.to_string())
            }
            PrivacyError::RateLimited { retry, .. } => rate_limited(err.to_string(), *retry),
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
                status_with(code, ReasonCode::Unavailable, e.to_string())
            }
            OpenError::Vault(e) => vault_status(&e),
            e @ OpenError::RateLimited { retry, .. } => rate_limited(e.to_string(), retry),
        }
    }
}

/// The RPC implementation.
#[derive(Debug, Clone)]
pub struct FrontOffice {
    agency: Agency,
    pepper: PinPepper,
    service: ServiceId,
    counter: SerialCounter,
    vault: Vault,
    nik_key: NikKey,
    receipt: ReceiptConfig,
    limiter: PersonalDataLimiter,
}

impl FrontOffice {
    /// The front office over `agency`, computing PIN verifiers with
    /// `pepper`, allocating from `counter`, keeping citizens' data keys in
    /// `vault`, with the default per-client limits.
    pub fn new(
        agency: Agency,
        pepper: PinPepper,
        counter: SerialCounter,
        vault: Vault,
        nik_key: NikKey,
        receipt: ReceiptConfig,
    ) -> Self {
        let limiter = PersonalDataLimiter::new(PersonalDataLimits::DEFAULT, Arc::new(SystemClock));
        Self { agency, pepper, service: service_id(), counter, vault, nik_key, receipt, limiter }
    }

    /// A fresh PIN and the case-level event `body` makes of its verifier
    /// (`case_opened`, `pin_reissued`): the only place PIN verifiers are
    /// computed outside the hub.
    fn pin_event(
        &self,
        tracking: TrackingNumber,
        officer: &OfficerId,
        body: impl FnOnce(Vec<u8>) -> EventBody,
    ) -> Result<(Pin, OutgoingEvent), KitError> {
        let pin = Pin::generate();
        let verifier = pin_verifier(&self.pepper, &tracking, &pin).to_vec();
        let ev =
            self.agency.builder().build(&self.service, Target::Case(tracking), officer, body(verifier))?;
        Ok((pin, ev))
    }

    /// The next tracking number of the counter.
    async fn next_tracking_number(&self) -> Result<TrackingNumber, OpenError> {
        let serial = self.counter.allocate().await.inspect_err(|e| {
            tracing::error!(error = %e, "Cannot allocate a tracking number; no case opened");
        })?;
        Ok(TrackingNumber::new(self.agency.region(), serial).ok_or_else(|| {
            // The range is validated below SERIAL_RANGE_END_MAX < SERIAL_MAX.
            KitError::Event(Rejection::new(ReasonCode::MalformedTrackingNumber, "serial out of range"))
        })?)
    }

    /// This front office with `limits` on reading and erasing personal
    /// data, timed by `clock`.
    pub fn with_limits(mut self, limits: PersonalDataLimits, clock: Arc<dyn Clock>) -> Self {
        self.limiter = PersonalDataLimiter::new(limits, clock);
        self
    }

    /// The tonic server wrapper.
    pub fn into_server(self) -> FrontOfficeServiceServer<Self> {
        FrontOfficeServiceServer::new(self)
            .max_decoding_message_size(mpp_agency_kit::server::GRPC_REQUEST_BYTES_MAX)
    }

    /// Opens a case (see the crate docs for the steps).
    pub async fn buka_berkas(&self, r: &pb::PembukaanBerkas) -> Result<pb::BerkasDibuka, OpenError> {
        // Every check before the counter, so a bad request uses no serial.
        let officer = input::officer("petugas", &r.petugas)?;
        let nik = citizen::nik("nik", &r.nik)?;
        let nama = citizen::nama("nama", &r.nama)?;
        let telepon = citizen::telepon("telepon", &r.telepon)?;
        let surel = citizen::surel("surel", &r.surel)?;
        let bahasa = citizen::bahasa("bahasa", &r.bahasa)?;
        let nik_hash = nik_keyed_hash(&self.nik_key, &nik).to_vec();
        let plaintext = PersonalData {
            nama: nama.clone(),
            telepon: telepon.clone().unwrap_or_default(),
            surel: surel.unwrap_or_default(),
            bahasa,
            tanpa_notifikasi: r.tanpa_notifikasi,
        }
        .encode()?;

        // The key before the serial, so a citizen at their case limit uses none.
        let key = {
            let nik_hash = nik_hash.clone();
            self.vault.blocking(move |v| v.key_for(&nik_hash)).await.inspect_err(|e| {
                tracing::error!(error = %e, "Cannot take the citizen's data key; no case opened");
            })?
        };
        let tracking = self.next_tracking_number().await?;
        // The sealing's event id is chosen first: it is in the AAD.
        let sealed_id = uuid::Uuid::now_v7();
        let sealed = key.seal(&tracking, sealed_id.as_bytes(), &plaintext)?;
        {
            let sealed = sealed.clone();
            self.vault.blocking(move |v| v.record(&tracking, &sealed)).await?;
        }
        let sealed_event = self.agency.builder().build_with_id(
            sealed_id,
            &self.service,
            Target::Case(tracking),
            &officer,
            EventBody::PersonalDataSealed {
                key_id: sealed.key_id.to_vec(),
                nonce: sealed.nonce.to_vec(),
                ciphertext: sealed.ciphertext,
            },
        )?;
        let (pin, opened) = self.pin_event(tracking, &officer, |pin_verifier| EventBody::CaseOpened {
            pin_verifier,
            nik_keyed_hash: nik_hash,
        })?;
        // Both in one outbox batch: accepted together or not at all.
        let accepted = self.agency.publish_events(&[opened, sealed_event]).await?;
        let Some(accepted) = accepted.into_iter().next() else {
            return Err(OpenError::Kit(KitError::Event(Rejection::new(
                ReasonCode::Unavailable,
                "the publisher returned no receipt",
            ))));
        };
        tracing::info!(
            case = %tracking,
            event_id = %accepted.event_id,
            sealed_event_id = %sealed_id,
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
            event_id_data_pribadi: sealed_id.hyphenated().to_string(),
        })
    }
}

impl FrontOffice {
    /// Opens a case for a walk-in citizen of the agency service `client`
    /// (the token's client id, never a field of the request): the next
    /// serial of the counter, a fresh PIN, `case_opened` with an empty NIK
    /// hash (the agency's filing carries no NIK) and no personal data.
    /// Rate-limited per client ([`Action::WalkIn`]) and logged with the
    /// client as the accountable system and the officer the request
    /// claims.
    pub async fn buka_berkas_instansi(
        &self,
        r: &pb::PembukaanBerkasInstansi,
        client: &ClientId,
    ) -> Result<pb::BerkasInstansiDibuka, OpenError> {
        self.limiter.admit(client, Action::WalkIn).map_err(|retry| {
            tracing::warn!(client = %client, retry_after_s = retry.seconds, "Walk-in opening rate-limited");
            OpenError::RateLimited { client: client.clone(), retry }
        })?;
        let officer = input::officer("petugas", &r.petugas)?;
        let tracking = self.next_tracking_number().await?;
        let (pin, opened) = self.pin_event(tracking, &officer, |pin_verifier| EventBody::CaseOpened {
            pin_verifier,
            nik_keyed_hash: Vec::new(),
        })?;
        let event_id = opened.event_id().to_owned();
        let accepted = self.agency.publish_events(std::slice::from_ref(&opened)).await?;
        tracing::info!(
            case = %tracking,
            event_id = %event_id,
            outbox_seq = ?accepted.first().and_then(|a| a.outbox_seq),
            client = %client,
            petugas = %officer,
            "Case opened for an agency's walk-in citizen"
        );
        let tanda_terima = self.receipt.lines(&Receipt {
            tracking: &tracking,
            pin: &pin,
            nama: "",
            telepon: None,
            officer: &officer,
        });
        Ok(pb::BerkasInstansiDibuka {
            nomor_berkas: tracking.to_string(),
            pin: pin.expose().to_owned(),
            event_id,
            tanda_terima,
        })
    }
}

impl FrontOffice {
    /// Takes a token of `client`'s bucket for `action`.
    fn admit(&self, client: &ClientId, action: Action) -> Result<(), PrivacyError> {
        self.limiter.admit(client, action).map_err(|retry| {
            let what = match action {
                Action::Read => "reads",
                Action::Erase => "erasures",
                Action::WalkIn => "walk-in openings",
            };
            tracing::warn!(officer = %client, what, retry_after_s = retry.seconds, "Personal-data call rate-limited");
            PrivacyError::RateLimited { client: client.clone(), what, retry }
        })
    }

    /// The name and contact details of a case, decrypted, for the
    /// authenticated `client`. Every call is rate-limited per client and
    /// logged with the case, the client as the accountable officer and the
    /// officer id the request claims (never the data).
    pub async fn lihat_data_pribadi(
        &self,
        r: &pb::PermintaanDataPribadi,
        client: &ClientId,
    ) -> Result<pb::DataPribadi, PrivacyError> {
        self.admit(client, Action::Read)?;
        let officer = input::officer("petugas", &r.petugas)?;
        let tracking = input::tracking_number("nomor_berkas", &r.nomor_berkas, self.agency.region())?;
        let record = self.vault.blocking(move |v| v.case(&tracking)).await?;
        let outcome = match record {
            None => Err(PrivacyError::NotFound(tracking)),
            Some(CaseRecord::Erased(_)) => Err(PrivacyError::Erased(tracking)),
            Some(CaseRecord::Sealed(key, sealed)) => sealed
                .open(&key, &tracking)
                .and_then(|plain| PersonalData::decode(&plain))
                .map_err(PrivacyError::from),
        };
        // No read goes unrecorded: the access is in the outbox (and so on
        // its way to the hub's log and the citizen's access history) before
        // the data is handed out; if it cannot be recorded, nothing is.
        let recorded = async {
            let data = outcome?;
            let event = self.agency.builder().build(
                &self.service,
                Target::Case(tracking),
                &officer,
                EventBody::PersonalDataRead { client_id: client.as_str().to_owned() },
            )?;
            self.agency.publish_events(std::slice::from_ref(&event)).await?;
            Ok::<_, PrivacyError>((data, event))
        }
        .await;
        tracing::info!(
            case = %tracking,
            officer = %client,
            petugas = %officer,
            reason = recorded.as_ref().err().map_or("", |e| e.reason_code().as_str()),
            event_id = recorded.as_ref().map_or("", |(_, event)| event.event_id()),
            "Personal data read"
        );
        let (d, _) = recorded?;
        Ok(pb::DataPribadi { nama: d.nama, telepon: d.telepon, surel: d.surel })
    }

    /// Destroys the data key of the citizen of a case and publishes
    /// `personal_data_erased` for each case sealed under it, in one outbox
    /// batch. The key is destroyed (flushed) before anything is published;
    /// repeating the call after a failed publish publishes the events again.
    /// Rate-limited and logged per authenticated `client`, as reads are; the
    /// events carry the request's pseudonymous `petugas`, as before.
    pub async fn hapus_data_pribadi(
        &self,
        r: &pb::PenghapusanDataPribadi,
        client: &ClientId,
    ) -> Result<pb::DataPribadiDihapus, PrivacyError> {
        self.admit(client, Action::Erase)?;
        let officer = input::officer("petugas", &r.petugas)?;
        let tracking = input::tracking_number("nomor_berkas", &r.nomor_berkas, self.agency.region())?;
        let erasure = self
            .vault
            .blocking(move |v| v.erase(&tracking))
            .await?
            .ok_or(PrivacyError::NotFound(tracking))?;
        let events = erasure
            .cases
            .iter()
            .map(|case| self.erased_event(*case, &officer, &erasure.key_id))
            .collect::<Result<Vec<_>, KitError>>()?;
        let accepted = self.agency.publish_events(&events).await?;
        tracing::info!(
            case = %tracking,
            officer = %client,
            petugas = %officer,
            cases = erasure.cases.len(),
            destroyed_now = erasure.destroyed_now,
            "Personal data erased"
        );
        Ok(pb::DataPribadiDihapus {
            nomor_berkas: erasure.cases.iter().map(ToString::to_string).collect(),
            event_ids: accepted.into_iter().map(|a| a.event_id).collect(),
        })
    }

    /// A new PIN for a case this front office opened (its vault knows the
    /// case, sealed or erased): `pin_reissued` is published and the PIN
    /// handed back once, with a receipt that prints no personal data.
    /// Logged with the case and the authenticated `client`.
    pub async fn terbitkan_ulang_pin(
        &self,
        r: &pb::PenerbitanUlangPin,
        client: &ClientId,
    ) -> Result<pb::PinBaru, PrivacyError> {
        let officer = input::officer("petugas", &r.petugas)?;
        let tracking = input::tracking_number("nomor_berkas", &r.nomor_berkas, self.agency.region())?;
        if self.vault.blocking(move |v| v.case(&tracking)).await?.is_none() {
            return Err(PrivacyError::NotFound(tracking));
        }
        let (pin, ev) =
            self.pin_event(tracking, &officer, |pin_verifier| EventBody::PinReissued { pin_verifier })?;
        let event_id = ev.event_id().to_owned();
        let accepted = self.agency.publish_events(std::slice::from_ref(&ev)).await?;
        let accepted = accepted.into_iter().next().unwrap_or(mpp_agency_kit::Accepted {
            event_id,
            ack: None,
            outbox_seq: None,
        });
        tracing::info!(
            case = %tracking,
            officer = %client,
            petugas = %officer,
            event_id = %accepted.event_id,
            "PIN re-issued"
        );
        let tanda_terima = self.receipt.lines(&Receipt {
            tracking: &tracking,
            pin: &pin,
            nama: "",
            telepon: None,
            officer: &officer,
        });
        Ok(pb::PinBaru {
            nomor_berkas: tracking.to_string(),
            pin: pin.expose().to_owned(),
            event_id: accepted.event_id,
            tanda_terima,
        })
    }

    /// Declines or takes back the notifications of a case: its contact
    /// record sealed again under the citizen's key with the choice changed
    /// (nothing published). Logged with the case and the authenticated
    /// `client`.
    pub async fn atur_notifikasi(
        &self,
        r: &pb::PengaturanNotifikasi,
        client: &ClientId,
    ) -> Result<pb::NotifikasiDiatur, PrivacyError> {
        let officer = input::officer("petugas", &r.petugas)?;
        let tracking = input::tracking_number("nomor_berkas", &r.nomor_berkas, self.agency.region())?;
        let (key, sealed) = match self.vault.blocking(move |v| v.case(&tracking)).await? {
            None => return Err(PrivacyError::NotFound(tracking)),
            Some(CaseRecord::Erased(_)) => return Err(PrivacyError::Erased(tracking)),
            Some(CaseRecord::Sealed(key, sealed)) => (key, sealed),
        };
        let mut data = PersonalData::decode(&sealed.open(&key, &tracking)?)?;
        let changed = data.tanpa_notifikasi != r.tanpa_notifikasi;
        if changed {
            data.tanpa_notifikasi = r.tanpa_notifikasi;
            // A fresh id in the AAD: the new sealing is no copy of the
            // published one.
            let resealed = key.seal(&tracking, uuid::Uuid::now_v7().as_bytes(), &data.encode()?)?;
            match self.vault.blocking(move |v| v.reseal(&tracking, &resealed)).await? {
                vault::Reseal::Done => {}
                vault::Reseal::Unknown => return Err(PrivacyError::NotFound(tracking)),
                vault::Reseal::Erased => return Err(PrivacyError::Erased(tracking)),
            }
        }
        tracing::info!(
            case = %tracking,
            officer = %client,
            petugas = %officer,
            tanpa_notifikasi = r.tanpa_notifikasi,
            changed,
            "Notifications set"
        );
        Ok(pb::NotifikasiDiatur {
            nomor_berkas: tracking.to_string(),
            tanpa_notifikasi: r.tanpa_notifikasi,
            berubah: changed,
        })
    }

    fn erased_event(
        &self,
        case: TrackingNumber,
        officer: &OfficerId,
        key_id: &[u8],
    ) -> Result<OutgoingEvent, KitError> {
        self.agency.builder().build(
            &self.service,
            Target::Case(case),
            officer,
            EventBody::PersonalDataErased { key_id: key_id.to_vec() },
        )
    }
}

/// Writes the tonic service: every RPC hands its request to the method of
/// the same name on [`FrontOffice`], those under `authenticated` with the
/// client the interceptor authenticated (refused without one).
macro_rules! front_office_service {
    (
        open { $($open:ident($open_req:ident) -> $open_resp:ident;)* }
        authenticated { $($rpc:ident($req:ident) -> $resp:ident;)* }
    ) => {
        #[tonic::async_trait]
        impl FrontOfficeService for FrontOffice {
            $(async fn $open(&self, request: Request<pb::$open_req>) -> Result<Response<pb::$open_resp>, Status> {
                Ok(Response::new(FrontOffice::$open(self, request.get_ref()).await?))
            })*

            $(async fn $rpc(&self, request: Request<pb::$req>) -> Result<Response<pb::$resp>, Status> {
                let client = authenticated_client(&request)?;
                Ok(Response::new(FrontOffice::$rpc(self, request.get_ref(), client).await?))
            })*
        }
    };
}

front_office_service! {
    open {
        buka_berkas(PembukaanBerkas) -> BerkasDibuka;
    }
    authenticated {
        lihat_data_pribadi(PermintaanDataPribadi) -> DataPribadi;
        atur_notifikasi(PengaturanNotifikasi) -> NotifikasiDiatur;
        hapus_data_pribadi(PenghapusanDataPribadi) -> DataPribadiDihapus;
        terbitkan_ulang_pin(PenerbitanUlangPin) -> PinBaru;
        buka_berkas_instansi(PembukaanBerkasInstansi) -> BerkasInstansiDibuka;
    }
}

/// The client the interceptor authenticated. A call without one (the
/// service served without the kit's interceptor) is refused: reads and
/// erasures are never made anonymously.
fn authenticated_client<T>(request: &Request<T>) -> Result<&ClientId, Status> {
    request.extensions().get::<ClientId>().ok_or_else(|| {
        mpp_agency_kit::auth::unauthenticated("no authenticated client", "the token of your client system")
    })
}

/// The front office's command without the kit's flags that only agency
/// services use (`--front-office-url`, `--front-office-token-file`,
/// `--front-office-tls-ca-file`: the front office opens walk-in cases
/// itself, and refuses them, [`RunError::FrontOfficeLinkNotUsed`]) in its
/// help.
pub fn hide_agency_flags(cmd: clap::Command) -> clap::Command {
    ["front_office_url", "front_office_token_file", "front_office_tls_ca_file"]
        .into_iter()
        .fold(cmd, |cmd, id| cmd.mut_arg(id, |a| a.hide(true)))
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
    /// The PIN pepper file is unusable.
    #[error(transparent)]
    Pepper(#[from] PepperError),
    /// The NIK key is missing or unusable.
    #[error(transparent)]
    NikKey(#[from] NikKeyError),
    /// The serial range is invalid.
    #[error(transparent)]
    Range(#[from] RangeError),
    /// The serial key file is unusable.
    #[error(transparent)]
    SerialKey(#[from] SerialKeyError),
    /// The counter could not be opened.
    #[error(transparent)]
    Counter(#[from] CounterError),
    /// The key vault could not be opened.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The vault key file is unusable.
    #[error(transparent)]
    VaultKey(#[from] VaultKeyError),
    /// `--catalogue-file` was given: the front office files no applications,
    /// so it has no service standards to publish.
    #[error(
        "--catalogue-file (MPP_CATALOGUE_FILE) is not used by the front office: it only opens cases, \
         which need no service standard. Give the catalogue to the agency services instead"
    )]
    CatalogueNotUsed,
    /// `--front-office-url` was given: the front office opens walk-in cases
    /// itself.
    #[error(
        "--front-office-url (MPP_FRONT_OFFICE_URL) is for agency services, whose walk-in citizens' cases \
         the front office opens; the front office opens its own"
    )]
    FrontOfficeLinkNotUsed,
    /// The notification flags are inconsistent or a file is unusable.
    #[error("notifications: {0}")]
    Notify(String),
    /// The notification outbox could not be opened.
    #[error(transparent)]
    NotifyOutbox(#[from] notify::outbox::OutboxError),
    /// The region makes no valid agency id (a bug: region codes are 4 digits).
    #[error("no agency id for this region: {0}")]
    AgencyId(Rejection),
}

/// Runs the front office until SIGTERM or ctrl-c: tracing, then
/// [`run_with`] on the bound `--grpc-addr` and `--metrics-addr`.
pub async fn run(common: CommonArgs, args: FrontOfficeArgs) -> Result<(), RunError> {
    let telemetry =
        mpp_agency_kit::init_tracing(&common, "mpp-frontoffice").map_err(mpp_agency_kit::RunError::from)?;
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr).await.map_err(|source| mpp_agency_kit::RunError::Bind { addr, source })
    };
    let grpc = bind(common.grpc_addr).await?;
    let metrics = match common.metrics_addr {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let ran = run_with(common, args, Listeners { grpc, metrics }, mpp_agency_kit::shutdown_signal()).await;
    // The last spans, flushed (bounded) once the server has stopped.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    ran
}

/// [`run`] without tracing set-up, on given listeners, until `shutdown`
/// resolves (for tests and embedding). Refuses to start, before opening
/// anything, without authentication, without keys (unless
/// `--insecure-dev-keys`) or with an invalid serial range; then opens the
/// counter in `<data-dir>/counter` and the key vault in `<data-dir>/vault`
/// and hands over to the kit.
pub async fn run_with(
    common: CommonArgs,
    args: FrontOfficeArgs,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    if common.tokens_file.is_none() && !common.insecure_no_auth {
        return Err(mpp_agency_kit::RunError::NoAuth.into());
    }
    if args.pin_pepper_file.is_none() && !args.insecure_dev_keys {
        return Err(RunError::NoPepper);
    }
    if common.catalogue_file.is_some() {
        return Err(RunError::CatalogueNotUsed);
    }
    if common.front_office.is_set() {
        return Err(RunError::FrontOfficeLinkNotUsed);
    }
    let pepper = match &args.pin_pepper_file {
        Some(path) => PinPepper::from_file(path)?,
        None => PinPepper::dev_default(),
    };
    let range = SerialRange::new(args.serial_range_start, args.serial_range_end)?;
    let nik_key = NikKey::load(args.nik_key_file.as_deref(), args.insecure_dev_keys)?;
    let vault_key = VaultKey::load(args.vault_key_file.as_deref(), args.insecure_dev_keys)?;
    // --insecure-dev-keys has no say here: without a key file serials stay
    // sequential, as they always were, and the counter warns.
    let order = match &args.serial_key_file {
        Some(path) => SerialOrder::Permuted(SerialKey::from_file(path)?),
        None => SerialOrder::Sequential,
    };
    let region = common.region_code;
    let receipt = ReceiptConfig {
        mpp_name: args.mpp_name.clone().unwrap_or_else(|| format!("Mal Pelayanan Publik {region}")),
        lookup: args.lookup_base_url.clone(),
    };
    let limits = args.personal_data_limits();
    let notify_config = notify::NotifyConfig::from_args(
        &args.notify,
        mpp_core::calendar::Zone::of_region(region),
        receipt.mpp_name.clone(),
        receipt.lookup.page().to_owned(),
    )
    .map_err(RunError::Notify)?;
    let follows_hub = common.hub_url.is_some();
    let mut config = AgencyConfig {
        agency_id: agency_id(region).map_err(RunError::AgencyId)?,
        args: common,
        standards: vec![],
        rpc_scopes: Some(RPC_SCOPES),
        reaction: None,
        extra_metrics: None,
    };
    let counter = SerialCounter::open(&config.data_dir().join(COUNTER_DIR), range, order)?;
    let vault = Vault::open(&config.data_dir().join(VAULT_DIR), vault_key, SystemClock.now_ms())?;
    let rotation = tokio::spawn(rotate_vault_keys(vault.clone()));
    let sender = match (notify_config, follows_hub) {
        (Some(n), true) => {
            let channels: Vec<&str> = n.channels().iter().map(|c| c.as_str()).collect();
            tracing::info!(channels = %channels.join(","), "Citizens are notified of their cases' events");
            let outbox = notify::outbox::NotifyOutbox::open_in(&config.data_dir())?;
            let notifier = notify::Notifier::new(outbox, n, Arc::new(SystemClock));
            config.reaction = Some(notifier.reaction());
            config.extra_metrics = Some(notifier.metrics());
            Some(notify::spawn_sender(notifier, vault.clone()))
        }
        (Some(_), false) => {
            tracing::warn!(
                "Notifications are configured but there is no --hub-url to hear the cases' events from"
            );
            None
        }
        (None, _) => {
            tracing::info!("Notifications off: no --smtp-url and no --sms-gateway-url");
            None
        }
    };
    let make = {
        let (counter, vault) = (counter.clone(), vault.clone());
        move |agency| {
            FrontOffice::new(agency, pepper, counter, vault, nik_key, receipt)
                .with_limits(limits, Arc::new(SystemClock))
                .into_server()
        }
    };
    let result = mpp_agency_kit::run_with(config, make, listeners, shutdown).await;
    rotation.abort();
    if let Some(sender) = sender {
        sender.abort();
    }
    if let Err(e) = counter.close() {
        tracing::error!(error = %e, "Cannot flush the tracking-number counter at shutdown");
    }
    if let Err(e) = vault.close() {
        tracing::error!(error = %e, "Cannot flush the key vault at shutdown");
    }
    Ok(result?)
}

/// Rotates the vault's wrapping key when it is due, checking every
/// [`VAULT_ROTATION_CHECK_MS`]; runs until aborted.
async fn rotate_vault_keys(vault: Vault) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(VAULT_ROTATION_CHECK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now_ms = SystemClock.now_ms();
        match vault.blocking(move |v| v.rotate_if_due(now_ms)).await {
            Ok(_) | Err(VaultError::Closed) => {}
            Err(e) => tracing::error!(error = %e, "Key vault rotation failed; retrying at the next check"),
        }
    }
}

#[cfg(test)]
mod tests;
