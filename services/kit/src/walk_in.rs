//! Walk-in citizens: a filing without a tracking number needs a new case,
//! and only the MPP front office opens cases (docs/DESIGN.md, "Who may do
//! what to a case": the hub refuses an agency's `case_opened` with
//! `NOT_A_FRONT_OFFICE` while the participant registry is in force). An
//! agency service therefore asks the front office to open the case
//! (`mpp.frontoffice.v1.FrontOfficeService/BukaBerkasInstansi`, scope
//! `cases:open-walk-in`), files its application into the number it gets
//! back and hands the citizen the PIN. The agency never sees the PIN
//! pepper and never computes a PIN verifier: the front office does, from
//! its own counter, and publishes `case_opened` as itself.
//!
//! [`WalkInOpener`] is the seam ([`crate::Agency::with_walk_in`]);
//! [`FrontOfficeClient`] the production one, configured by
//! [`FrontOfficeLinkArgs`] (`--front-office-url`, `--front-office-token-file`,
//! `--front-office-tls-ca-file`). Without it a walk-in filing is refused
//! with `FAILED_PRECONDITION` / `FRONT_OFFICE_NOT_CONFIGURED` and nothing is
//! published.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin as BoxPin;
use std::time::Duration;

use mpp_core::ids::{OfficerId, RegionCode, TrackingNumber};
use mpp_edge::auth::BearerToken;
use mpp_proto::frontoffice::v1 as fo;
use tonic::transport::Channel;

use crate::ids::Pin;
use crate::link::{self, LinkError};

/// Longest a walk-in opening at the front office may take (connecting
/// included), in milliseconds; past it the filing fails with
/// `FRONT_OFFICE_UNAVAILABLE` and nothing is published by the agency.
pub const FRONT_OFFICE_CALL_TIMEOUT_MS: u64 = 10_000;

/// Longest connecting to the front office may take, in milliseconds.
pub const FRONT_OFFICE_CONNECT_TIMEOUT_MS: u64 = 5_000;

/// Longest message of the front office's refusal kept in the agency's
/// answer and log, in bytes.
pub const FRONT_OFFICE_MESSAGE_BYTES_MAX: usize = 512;

/// Longest reason code of the front office's refusal kept, in bytes (every
/// `mpp_core::ReasonCode` is far shorter; a longer value is cut, not
/// trusted).
pub const FRONT_OFFICE_REASON_BYTES_MAX: usize = 64;

/// A case the front office opened for a walk-in citizen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkInCase {
    /// The new case.
    pub tracking_number: TrackingNumber,
    /// The citizen's PIN (hand it to the caller once).
    pub pin: Pin,
    /// The id of the front office's `case_opened`.
    pub event_id: String,
}

/// Why a walk-in citizen's case could not be opened. Nothing was published
/// by the agency for any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalkInError {
    /// The service runs without a front office.
    #[error(
        "this agency service has no front office configured (--front-office-url, \
         --front-office-token-file): a filing without a tracking number cannot open a case; \
         open it at the front office and file into it"
    )]
    NotConfigured,
    /// The front office could not be reached or did not answer in time.
    #[error("the front office could not be reached: {0}")]
    Unavailable(String),
    /// The front office answered with an error.
    #[error("the front office refused to open the case ({code:?}): {message}")]
    Refused {
        /// Its gRPC code.
        code: tonic::Code,
        /// Its reason code (`mpp-reason-code`), or empty; cut to
        /// [`FRONT_OFFICE_REASON_BYTES_MAX`].
        reason: String,
        /// Its message (which starts with its reason code), cut to
        /// [`FRONT_OFFICE_MESSAGE_BYTES_MAX`].
        message: String,
    },
    /// The front office answered something that is not a case of this MPP.
    #[error("the front office answered an unusable case: {0}")]
    BadAnswer(String),
}

/// The future [`WalkInOpener::open`] returns.
pub type WalkInFuture<'a> = BoxPin<Box<dyn Future<Output = Result<WalkInCase, WalkInError>> + Send + 'a>>;

/// Opens a case for a walk-in citizen at the front office.
pub trait WalkInOpener: Send + Sync + fmt::Debug {
    /// Opens a new case of `region` for the citizen at `officer`'s counter.
    fn open<'a>(&'a self, region: RegionCode, officer: &'a OfficerId) -> WalkInFuture<'a>;
}

/// The front office an agency service opens walk-in citizens' cases at.
/// Each has an `MPP_*` environment fallback.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FrontOfficeLinkArgs {
    /// The MPP front office's gRPC URL (`https://frontoffice.example:50060`),
    /// where a filing without a tracking number (a walk-in citizen) has its
    /// case opened (BukaBerkasInstansi); requires --front-office-token-file.
    /// Without it such a filing is refused with FAILED_PRECONDITION /
    /// FRONT_OFFICE_NOT_CONFIGURED.
    #[arg(long, env = "MPP_FRONT_OFFICE_URL", requires = "front_office_token_file")]
    pub front_office_url: Option<String>,

    /// This service's token at the front office (first line of the file),
    /// whose SHA-256 the front office lists in its --tokens-file with the
    /// scope `cases:open-walk-in` only.
    #[arg(long, env = "MPP_FRONT_OFFICE_TOKEN_FILE", requires = "front_office_url")]
    pub front_office_token_file: Option<PathBuf>,

    /// CA certificate (PEM) of the front office's gRPC TLS certificate, for
    /// an `https://` --front-office-url signed by a private CA.
    #[arg(long, env = "MPP_FRONT_OFFICE_TLS_CA_FILE", requires = "front_office_url")]
    pub front_office_tls_ca_file: Option<PathBuf>,
}

impl FrontOfficeLinkArgs {
    /// Whether a front office is configured.
    pub fn is_set(&self) -> bool {
        self.front_office_url.is_some()
    }
}

/// [`WalkInOpener`] over the front office's gRPC API.
#[derive(Clone)]
pub struct FrontOfficeClient {
    url: String,
    channel: Channel,
    token: BearerToken,
}

impl fmt::Debug for FrontOfficeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrontOfficeClient").field("url", &self.url).field("token", &"<redacted>").finish()
    }
}

impl FrontOfficeClient {
    /// The client of `args`, or `None` when no front office is configured.
    /// Reads the token and CA files; connects lazily (a front office that
    /// is down does not stop the agency from starting). Call inside a
    /// tokio runtime.
    pub fn from_args(args: &FrontOfficeLinkArgs) -> Result<Option<Self>, LinkError> {
        match (&args.front_office_url, &args.front_office_token_file) {
            (Some(url), Some(token)) => {
                Self::load(url, token, args.front_office_tls_ca_file.as_deref()).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// A client of the front office at `url`, authenticated by the token in
    /// `token_file`.
    pub fn load(url: &str, token_file: &Path, tls_ca_file: Option<&Path>) -> Result<Self, LinkError> {
        let mut endpoint = link::endpoint("--front-office-url", url)?
            .connect_timeout(Duration::from_millis(FRONT_OFFICE_CONNECT_TIMEOUT_MS))
            .timeout(Duration::from_millis(FRONT_OFFICE_CALL_TIMEOUT_MS));
        let token = BearerToken::new(&link::read_token(token_file)?)
            .ok_or_else(|| LinkError::NoToken(token_file.to_owned()))?;
        if let Some(ca) = tls_ca_file {
            endpoint = link::with_ca(endpoint, "--front-office-tls-ca-file", link::read(ca)?)?;
        }
        Ok(Self { url: url.to_owned(), channel: endpoint.connect_lazy(), token })
    }

    /// The front office's URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// The error of a failed call: transport failures and the front office's
/// own unavailability are [`WalkInError::Unavailable`], anything else it
/// answered a refusal.
fn call_error(status: &tonic::Status) -> WalkInError {
    let reason = status
        .metadata()
        .get(crate::REASON_CODE_METADATA_KEY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let message = cut(status.message(), FRONT_OFFICE_MESSAGE_BYTES_MAX);
    match status.code() {
        tonic::Code::Unavailable
        | tonic::Code::DeadlineExceeded
        | tonic::Code::Cancelled
        | tonic::Code::Unknown => WalkInError::Unavailable(format!("{:?}: {message}", status.code())),
        code => WalkInError::Refused { code, reason: cut(&reason, FRONT_OFFICE_REASON_BYTES_MAX), message },
    }
}

impl WalkInOpener for FrontOfficeClient {
    fn open<'a>(&'a self, region: RegionCode, officer: &'a OfficerId) -> WalkInFuture<'a> {
        Box::pin(async move {
            let mut client = fo::front_office_service_client::FrontOfficeServiceClient::with_interceptor(
                self.channel.clone(),
                self.token.clone(),
            );
            let mut request =
                tonic::Request::new(fo::PembukaanBerkasInstansi { petugas: officer.to_string() });
            // The opening belongs to the agency's call: its trace goes on
            // at the front office, and with the opening's event to the hub.
            if let Some(t) = crate::trace::current() {
                if let Ok(v) = t.to_string().parse() {
                    request.metadata_mut().insert(mpp_edge::trace::TRACEPARENT_HEADER, v);
                }
            }
            let answer = client.buka_berkas_instansi(request).await.map_err(|s| call_error(&s))?.into_inner();
            let tracking_number = TrackingNumber::parse(&answer.nomor_berkas)
                .map_err(|r| WalkInError::BadAnswer(format!("nomor_berkas: {}", r.detail)))?;
            if tracking_number.region() != region {
                return Err(WalkInError::BadAnswer(format!(
                    "case {tracking_number} is not of this MPP's region {region}"
                )));
            }
            let pin = Pin::parse(&answer.pin).ok_or_else(|| WalkInError::BadAnswer("no valid PIN".into()))?;
            if answer.event_id.is_empty() {
                return Err(WalkInError::BadAnswer("no event id".into()));
            }
            Ok(WalkInCase { tracking_number, pin, event_id: answer.event_id })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_and_outages_are_told_apart() {
        let s = crate::error::reason_status(
            tonic::Code::PermissionDenied,
            mpp_core::ReasonCode::ScopeMissing,
            "SCOPE_MISSING: needs cases:open-walk-in",
        );
        match call_error(&s) {
            WalkInError::Refused { code, reason, message } => {
                assert_eq!(code, tonic::Code::PermissionDenied);
                assert_eq!(reason, "SCOPE_MISSING");
                assert!(message.contains("cases:open-walk-in"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(call_error(&tonic::Status::unavailable("down")), WalkInError::Unavailable(_)));
        let long = tonic::Status::invalid_argument("é".repeat(FRONT_OFFICE_MESSAGE_BYTES_MAX));
        match call_error(&long) {
            WalkInError::Refused { message, .. } => assert!(message.len() <= FRONT_OFFICE_MESSAGE_BYTES_MAX),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn settings_are_checked_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret-token\n").unwrap();
        let c = FrontOfficeClient::load("http://127.0.0.1:50060", &token, None).unwrap();
        assert!(!format!("{c:?}").contains("s3cret"), "the token is never shown");
        assert!(matches!(
            FrontOfficeClient::load("127.0.0.1:50060", &token, None),
            Err(LinkError::Url { .. })
        ));
        std::fs::write(&token, " \n").unwrap();
        assert!(matches!(
            FrontOfficeClient::load("http://127.0.0.1:50060", &token, None),
            Err(LinkError::NoToken(_))
        ));
        assert!(matches!(
            FrontOfficeClient::load("http://127.0.0.1:50060", &dir.path().join("missing"), None),
            Err(LinkError::Read { .. })
        ));
        assert!(FrontOfficeClient::from_args(&FrontOfficeLinkArgs::default()).unwrap().is_none());
    }
}
