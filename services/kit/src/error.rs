//! Errors of the request path and their one mapping to `tonic::Status`.
//!
//! Every status an agency service returns carries a stable reason code (see
//! `mpp_core::reason::ReasonCode`) in the metadata entry
//! [`REASON_CODE_METADATA_KEY`], the same codes the hub writes into its log, and
//! a message a back-office developer can act on.

use std::fmt;

use mpp_core::{ReasonCode, Rejection};
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

pub use mpp_edge::meta::REASON_CODE_METADATA_KEY;

use crate::walk_in::WalkInError;

/// Whether a failed event may nevertheless be in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishOutcome {
    /// Definitely not stored (e.g. no stream listens on the subject).
    NotStored,
    /// Possibly stored: a message was sent but its PubAck never arrived.
    Unknown,
}

/// Why an event could not be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishError {
    /// The stable reason code the caller sees: `PUBLISH_FAILED` (JetStream),
    /// `OUTBOX_FULL` or `UNAVAILABLE` (the outbox cannot take the call).
    pub reason: ReasonCode,
    /// The event that failed.
    pub event_id: String,
    /// Whether it may be stored anyway.
    pub outcome: PublishOutcome,
    /// Attempts made.
    pub attempts: u32,
    /// The last error, as text.
    pub last_error: String,
    /// Events of the same call that were published before this one, in order.
    pub accepted_before: Vec<String>,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outcome = match self.outcome {
            PublishOutcome::NotStored => "was not stored",
            PublishOutcome::Unknown => "may or may not have been stored (no PubAck arrived)",
        };
        write!(
            f,
            "event {} {outcome} after {} attempt(s): {}",
            self.event_id, self.attempts, self.last_error
        )?;
        if self.accepted_before.is_empty() {
            f.write_str("; no earlier event of this call was published")
        } else {
            write!(f, "; earlier events of this call were published: {}", self.accepted_before.join(", "))
        }
    }
}

impl std::error::Error for PublishError {}

/// Why a request was refused. Nothing was published for any of these, except
/// for [`KitError::Publish`] (see [`PublishError`]).
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    /// A field of the RPC request is missing or malformed.
    #[error("{field}: {}", rejection.detail)]
    Input {
        /// The RPC field, as named in the agency's proto (e.g. `nomor_berkas`).
        field: &'static str,
        /// The stable code and detail.
        rejection: Rejection,
    },
    /// The event built from the request would be rejected by the hub's
    /// validation, so it was not published.
    #[error("the event built from this request is invalid: {}", .0.detail)]
    Event(Rejection),
    /// Publishing failed; see the error for what may have been stored.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// A walk-in citizen's case could not be opened at the front office;
    /// nothing was published.
    #[error(transparent)]
    WalkIn(#[from] crate::walk_in::WalkInError),
}

impl KitError {
    /// An input error for `field`.
    pub fn input(field: &'static str, code: ReasonCode, detail: impl Into<String>) -> Self {
        Self::Input { field, rejection: Rejection::new(code, detail) }
    }

    /// The stable reason code.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            KitError::Input { rejection, .. } | KitError::Event(rejection) => rejection.code,
            KitError::Publish(e) => e.reason,
            KitError::WalkIn(e) => match e {
                WalkInError::NotConfigured => ReasonCode::FrontOfficeNotConfigured,
                WalkInError::Unavailable(_) | WalkInError::BadAnswer(_) => ReasonCode::FrontOfficeUnavailable,
                WalkInError::Refused { .. } => ReasonCode::FrontOfficeRefused,
            },
        }
    }
}

/// The one mapping from a kit error to a gRPC status.
///
/// - Field errors are `INVALID_ARGUMENT`, except `REGION_MISMATCH` (the case
///   belongs to another MPP than the one this service runs for), which is
///   `FAILED_PRECONDITION`: the request is well-formed, but this deployment
///   cannot act on it.
/// - Publish failures are `UNAVAILABLE`, with the publisher's reason:
///   `PUBLISH_FAILED` (JetStream did not acknowledge), `OUTBOX_FULL` (the
///   durable outbox is at its limit) or `UNAVAILABLE` (the outbox cannot write
///   or is shutting down). The message names the event ids involved and says
///   whether any of them may be stored.
/// - A walk-in filing the front office could not open a case for:
///   `FAILED_PRECONDITION` / `FRONT_OFFICE_NOT_CONFIGURED` (no front office
///   configured), `UNAVAILABLE` / `FRONT_OFFICE_UNAVAILABLE` (unreachable,
///   or an unusable answer), `FRONT_OFFICE_REFUSED` with
///   `RESOURCE_EXHAUSTED` when the front office rate-limited this service,
///   else `FAILED_PRECONDITION` (the message carries the front office's
///   own code).
pub fn to_status(err: &KitError) -> Status {
    let reason = err.reason_code();
    let code = match err {
        KitError::Input { .. } | KitError::Event(_) if reason == ReasonCode::RegionMismatch => {
            Code::FailedPrecondition
        }
        KitError::Input { .. } | KitError::Event(_) => Code::InvalidArgument,
        KitError::Publish(_) => Code::Unavailable,
        KitError::WalkIn(e) => match e {
            WalkInError::NotConfigured => Code::FailedPrecondition,
            WalkInError::Unavailable(_) | WalkInError::BadAnswer(_) => Code::Unavailable,
            WalkInError::Refused { code: Code::ResourceExhausted, .. } => Code::ResourceExhausted,
            WalkInError::Refused { .. } => Code::FailedPrecondition,
        },
    };
    reason_status(code, reason, format!("{reason}: {err}"))
}

/// A status with `code`, `message` and `reason` in the
/// [`REASON_CODE_METADATA_KEY`] metadata entry.
pub fn reason_status(code: Code, reason: ReasonCode, message: impl Into<String>) -> Status {
    let mut status = Status::new(code, message);
    status.metadata_mut().insert(REASON_CODE_METADATA_KEY, MetadataValue::from_static(reason.as_str()));
    status
}

impl From<KitError> for Status {
    fn from(err: KitError) -> Self {
        to_status(&err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason_of(s: &Status) -> &str {
        s.metadata().get(REASON_CODE_METADATA_KEY).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    #[test]
    fn input_errors_are_invalid_argument_with_reason_metadata() {
        let s = to_status(&KitError::input("nomor_berkas", ReasonCode::BadCheckDigit, "check the number"));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(reason_of(&s), "BAD_CHECK_DIGIT");
        assert_eq!(s.message(), "BAD_CHECK_DIGIT: nomor_berkas: check the number");
        let s =
            to_status(&KitError::Event(Rejection::new(ReasonCode::InvalidFieldValue, "counter is required")));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(reason_of(&s), "INVALID_FIELD_VALUE");
    }

    #[test]
    fn region_mismatch_is_failed_precondition() {
        let s: Status = KitError::input("nomor_berkas", ReasonCode::RegionMismatch, "other MPP").into();
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(reason_of(&s), "REGION_MISMATCH");
    }

    #[test]
    fn publish_failures_are_unavailable() {
        for (reason, event_id, outcome, attempts, last_error, expected) in [
            (ReasonCode::PublishFailed, "0190-x", PublishOutcome::Unknown, 3, "timed out", "PUBLISH_FAILED"),
            (ReasonCode::OutboxFull, "0190-y", PublishOutcome::NotStored, 1, "outbox full", "OUTBOX_FULL"),
        ] {
            let error = PublishError {
                reason,
                event_id: event_id.into(),
                outcome,
                attempts,
                last_error: last_error.into(),
                accepted_before: vec![],
            };
            let s = to_status(&KitError::Publish(error));
            assert_eq!(s.code(), Code::Unavailable, "{expected}");
            assert_eq!(reason_of(&s), expected);
            assert!(s.message().contains(event_id), "{expected}: {}", s.message());
        }
    }

    #[test]
    fn walk_in_failures_have_their_own_codes() {
        let s = to_status(&KitError::WalkIn(WalkInError::NotConfigured));
        assert_eq!((s.code(), reason_of(&s)), (Code::FailedPrecondition, "FRONT_OFFICE_NOT_CONFIGURED"));
        let s = to_status(&KitError::WalkIn(WalkInError::Unavailable("refused".into())));
        assert_eq!((s.code(), reason_of(&s)), (Code::Unavailable, "FRONT_OFFICE_UNAVAILABLE"));
        let refused = |code| WalkInError::Refused { code, reason: "X".into(), message: "m".into() };
        let s = to_status(&KitError::WalkIn(refused(Code::PermissionDenied)));
        assert_eq!((s.code(), reason_of(&s)), (Code::FailedPrecondition, "FRONT_OFFICE_REFUSED"));
        let s = to_status(&KitError::WalkIn(refused(Code::ResourceExhausted)));
        assert_eq!((s.code(), reason_of(&s)), (Code::ResourceExhausted, "FRONT_OFFICE_REFUSED"));
    }

    #[test]
    fn every_reason_code_is_a_valid_metadata_value() {
        // `MetadataValue::from_static` panics on invalid header text.
        for code in ReasonCode::ALL {
            let s = to_status(&KitError::input("f", *code, "x"));
            assert_eq!(reason_of(&s), code.as_str());
        }
    }
}
