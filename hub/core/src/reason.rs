//! Stable reason codes. An agency that sees a rejected event, a back-office
//! developer reading an RPC error and an auditor reading the log all see the
//! same code. Codes are never renamed or reused; new ones are only added.
//! `docs/REASON_CODES.md` is generated from [`ReasonCode::ALL`] by a test, so
//! the documentation cannot drift from the code.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! reason_codes {
    ($( $(#[$doc:meta])* $variant:ident => $code:literal, $desc:literal; )*) => {
        /// Why something was rejected. See the module docs.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum ReasonCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ReasonCode {
            /// Every code, in documentation order.
            pub const ALL: &'static [ReasonCode] = &[ $( ReasonCode::$variant, )* ];

            /// The stable text form, e.g. `ILLEGAL_TRANSITION`.
            pub fn as_str(self) -> &'static str {
                match self { $( ReasonCode::$variant => $code, )* }
            }

            /// One sentence on what the code means and what to do about it.
            pub fn description(self) -> &'static str {
                match self { $( ReasonCode::$variant => $desc, )* }
            }

            /// Parses the stable text form.
            pub fn from_code(s: &str) -> Option<Self> {
                match s { $( $code => Some(ReasonCode::$variant), )* _ => None }
            }
        }
    };
}

reason_codes! {
    /// The message had no payload.
    EmptyMessage => "EMPTY_MESSAGE", "The message payload was empty.";
    /// The payload exceeds `limits::MESSAGE_BYTES_MAX`.
    MessageTooLarge => "MESSAGE_TOO_LARGE", "The message payload exceeds 64 KiB (limits::MESSAGE_BYTES_MAX).";
    /// The payload is not a protobuf `mpp.v1.Envelope`.
    UndecodableEnvelope => "UNDECODABLE_ENVELOPE", "The payload is not a valid protobuf mpp.v1.Envelope.";
    /// `schema_version` is not one the hub knows.
    UnsupportedSchemaVersion => "UNSUPPORTED_SCHEMA_VERSION", "The envelope's schema_version is not supported (this hub knows version 1).";
    /// `event_id` is empty.
    MissingEventId => "MISSING_EVENT_ID", "The envelope has no event_id.";
    /// `event_id` is not a canonical UUIDv7.
    MalformedEventId => "MALFORMED_EVENT_ID", "The event_id is not a canonical version 7 UUID.";
    /// The case id is not a well-formed tracking number.
    MalformedTrackingNumber => "MALFORMED_TRACKING_NUMBER", "The tracking number is not 15 digits RRRR-SSSSSSSSSS-C.";
    /// The tracking number's check digit does not match.
    BadCheckDigit => "BAD_CHECK_DIGIT", "The tracking number's check digit does not match: it was probably mistyped.";
    /// The region code is not 4 digits.
    MalformedRegionCode => "MALFORMED_REGION_CODE", "The region code is not a 4-digit BPS code.";
    /// The envelope's region differs from the tracking number's.
    RegionMismatch => "REGION_MISMATCH", "The envelope's region_code differs from the region in the tracking number.";
    /// Bad agency id.
    MalformedAgencyId => "MALFORMED_AGENCY_ID", "The agency_id is not a lowercase slug of at most 32 bytes.";
    /// Bad service id.
    MalformedServiceId => "MALFORMED_SERVICE_ID", "The service_id is not a lowercase slug of at most 32 bytes.";
    /// Bad application id.
    MalformedApplicationId => "MALFORMED_APPLICATION_ID", "The application_id is missing or not 1..=64 bytes of [A-Za-z0-9._/-].";
    /// Bad officer id.
    MalformedOfficer => "MALFORMED_OFFICER", "The officer is missing or not a pseudonymous id of 1..=64 bytes.";
    /// Bad NIK.
    MalformedNik => "MALFORMED_NIK", "The NIK is not 16 digits with a valid region and birth date.";
    /// The envelope has no event body.
    MissingBody => "MISSING_BODY", "The envelope carries no event (the oneof body is empty or of an unknown kind).";
    /// A field or list is longer than its limit.
    FieldTooLong => "FIELD_TOO_LONG", "A text field, list or hash exceeds its documented limit (see limits.rs).";
    /// A field holds a value outside its domain.
    InvalidFieldValue => "INVALID_FIELD_VALUE", "A field holds a value outside its domain (negative or absurd amount, empty required text, control characters).";
    /// `occurred_at_ms` is before 2000 or more than 24 h after the time of record.
    TimestampOutOfRange => "TIMESTAMP_OUT_OF_RANGE", "occurred_at_ms is before 2000-01-01 or more than 24 hours after the time of record.";
    /// The subject is not `mpp.events.<agency>.<service>`.
    BadSubject => "BAD_SUBJECT", "The NATS subject is not mpp.events.<agency_id>.<service_id>.";
    /// The subject's agency differs from the envelope's.
    AgencySubjectMismatch => "AGENCY_SUBJECT_MISMATCH", "The agency in the subject differs from the envelope's agency_id.";
    /// The subject's service differs from the envelope's.
    ServiceSubjectMismatch => "SERVICE_SUBJECT_MISMATCH", "The service in the subject differs from the envelope's service_id.";
    /// No service standard was ever published for this agency and service.
    UnknownService => "UNKNOWN_SERVICE", "The agency has published no service standard for this service.";
    /// A service standard's version does not increase.
    StaleStandardVersion => "STALE_STANDARD_VERSION", "A service standard was published with a version not above the one in force.";
    /// The case was never opened.
    UnknownCase => "UNKNOWN_CASE", "The case was never opened.";
    /// The case is already open.
    CaseAlreadyOpen => "CASE_ALREADY_OPEN", "A case with this tracking number is already open.";
    /// The application was never filed.
    UnknownApplication => "UNKNOWN_APPLICATION", "The application was never filed in this case.";
    /// The application was already filed.
    ApplicationAlreadyFiled => "APPLICATION_ALREADY_FILED", "An application with this id is already filed in this case.";
    /// The application belongs to another agency or service.
    ApplicationOwnerMismatch => "APPLICATION_OWNER_MISMATCH", "The application belongs to another agency or service.";
    /// The event is not allowed in the application's current state.
    IllegalTransition => "ILLEGAL_TRANSITION", "The event is not allowed in the application's current state.";
    /// A case or application reached its size limit.
    CaseLimitExceeded => "CASE_LIMIT_EXCEEDED", "The case already holds the most applications or events allowed (see limits.rs).";
    /// The event id was seen before.
    DuplicateEventId => "DUPLICATE_EVENT_ID", "An event with this event_id is already in the log; this one has no effect.";
    /// The caller is not authenticated.
    Unauthenticated => "UNAUTHENTICATED", "The caller presented no valid token.";
    /// No case with this tracking number and PIN (lookups). An unknown case
    /// and a wrong PIN get this same answer, so lookups cannot tell which
    /// tracking numbers exist.
    CaseNotFound => "CASE_NOT_FOUND", "No case with this tracking number and PIN: an unknown case and a wrong PIN get this same answer, so check both.";
    /// A required request field is missing (RPCs).
    MissingField => "MISSING_FIELD", "A required field of the request is missing.";
    /// The event could not be published (RPCs).
    PublishFailed => "PUBLISH_FAILED", "The event could not be published to NATS JetStream; nothing was accepted, retry.";
    /// The server cannot answer right now (store or broker unavailable).
    Unavailable => "UNAVAILABLE", "The server cannot answer right now (its store or NATS is unavailable); retry later.";
    /// The agency service's durable outbox is full (RPCs).
    OutboxFull => "OUTBOX_FULL", "The agency service's durable outbox is full (NATS JetStream has been unreachable for long); nothing was accepted, retry later.";
    /// A case lookup came without a PIN.
    PinRequired => "PIN_REQUIRED", "A case lookup needs the case's PIN (printed on the receipt); none was given.";
    /// The PIN given has neither shape of a PIN.
    MalformedPin => "MALFORMED_PIN", "The PIN is neither 9 characters of 23456789ABCDEFGHJKMNPQRSTUVWXYZ (case, spaces and dashes ignored) nor 6 digits (a PIN issued before 9-character PINs).";
    /// Too many lookups from one client address.
    RateLimited => "RATE_LIMITED", "Too many requests: lookups from this client address, or personal-data reads or erasures or walk-in case openings by this client system; wait as long as Retry-After (or retry-after-s) says, then retry.";
    /// Too many wrong PINs for one tracking number.
    LookupLocked => "LOOKUP_LOCKED", "Too many wrong PINs were tried for this tracking number (whether or not it exists); its lookups are locked for a while (see Retry-After).";
    /// The case's personal data was erased (its data key destroyed).
    PersonalDataErased => "PERSONAL_DATA_ERASED", "The citizen's personal data of this case was erased on request (UU 27/2022): its data key was destroyed, so it can no longer be read, sealed again or erased again.";
    /// Only the agency that opened a case may seal or erase its personal data.
    NotCaseOpener => "NOT_CASE_OPENER", "Only the agency that opened the case (the front office holding the citizen's data key) may seal or erase the case's personal data.";
    /// The case's personal data is not sealed under the key being erased.
    UnknownDataKey => "UNKNOWN_DATA_KEY", "The case's personal data is not sealed under this key id (or was never sealed), so there is nothing of it to erase.";
    /// The case's personal data is already sealed.
    PersonalDataAlreadySealed => "PERSONAL_DATA_ALREADY_SEALED", "The case's personal data is already sealed; a case holds one sealing.";
    /// No such resource (HTTP): an unknown path or log entry.
    NotFound => "NOT_FOUND", "No such resource: an unknown path, or a log sequence the log does not hold.";
    /// The request is malformed (HTTP) in a way no field code names.
    BadRequest => "BAD_REQUEST", "The request is malformed: a path segment or form field does not have the shape the endpoint documents.";
    /// An operator asked to redrive an entry no redrive could change.
    NotRedrivable => "NOT_REDRIVABLE", "The log entry is not a rejection a redrive could change: it was accepted or a duplicate, its bytes are unreadable, or its event was accepted since.";
    /// An operator asked for a redrive on a hub that cannot publish.
    RedriveDisabled => "REDRIVE_DISABLED", "This hub has no NATS target for redrives, so operators cannot republish rejected entries on it.";
    // Appended, never inserted: the variant index is in stored encodings.
    /// The caller's token lacks the scope the RPC needs.
    ScopeMissing => "SCOPE_MISSING", "The caller's token is valid but lacks the scope this RPC needs (e.g. personal-data:read); ask the server's operator for a token with it.";
    /// The case would grow past `limits::CASE_BYTES_MAX`.
    CaseTooLarge => "CASE_TOO_LARGE", "The event would grow the case past 1 MiB (limits::CASE_BYTES_MAX; the last 48 KiB are kept for events that finish an application).";
    /// One agency already filed its share of a case's applications.
    AgencyApplicationsExceeded => "AGENCY_APPLICATIONS_EXCEEDED", "The agency already filed the most applications one agency may file in a case (limits::APPLICATIONS_PER_AGENCY_PER_CASE_MAX: 8); other agencies can still file.";
    /// One agency's applications would take more than its share of a case.
    AgencyCaseShareExceeded => "AGENCY_CASE_SHARE_EXCEEDED", "The event would grow the agency's applications past the share of a case one agency may take (limits::CASE_BYTES_PER_AGENCY_MAX: 256 KiB); events that finish an application are still accepted.";
    /// Too many watches from one client address or of one case.
    TooManyWatches => "TOO_MANY_WATCHES", "Too many live updates (gRPC WatchCase or the tracking page's) are open from this client address or of this case; close one or retry later.";
    /// Too many verdict feeds are open for this participant, or in all.
    TooManyFeeds => "TOO_MANY_FEEDS", "Too many feeds (VerdictService.FollowVerdicts or CaseEventService.FollowCaseEvents) are open for this participant or on this hub; close one or retry later.";
    /// An agency service was asked for verdicts it does not follow.
    VerdictFeedOff => "VERDICT_FEED_OFF", "This agency service does not follow the hub's verdict feed (it was started without --hub-url and --hub-token-file), so it knows no verdicts.";
    /// The path exists but does not take this HTTP method.
    MethodNotAllowed => "METHOD_NOT_ALLOWED", "The path exists but does not take this HTTP method; the Allow header lists the methods it takes.";
    /// The tracking number reached its daily cap of wrong PINs.
    PinReissueRequired => "PIN_REISSUE_REQUIRED", "So many wrong PINs were tried for this tracking number (whether or not it exists) that its lookups stay locked until the citizen has the PIN re-issued at the MPP counter.";
    /// Many lookups failed lately: a proof of work is needed.
    ProofOfWorkRequired => "PROOF_OF_WORK_REQUIRED", "Many lookups failed across the hub lately, so each lookup needs a proof of work: solve the challenge given with this answer (or wait out its delay token) and send the proof with the lookup (docs/API.md).";
    /// The shared store of lookup budgets cannot answer.
    LookupBudgetUnavailable => "LOOKUP_BUDGET_UNAVAILABLE", "The lookup needed the shared store of guessing budgets (a NATS key-value bucket), which is unreachable or full; nothing was checked, retry later.";
    /// The envelope's participant (its agency_id) is not in the registry.
    UnregisteredParticipant => "UNREGISTERED_PARTICIPANT", "The participant registry is in force and the envelope's agency_id (or the statement's participant) is not registered; ask the province's registrar to register it.";
    /// The envelope carries no signature although the registry is in force.
    UnsignedEnvelope => "UNSIGNED_ENVELOPE", "The participant registry is in force and the envelope carries no signature; run the service with --signing-key-file.";
    /// The envelope's signature field is not well formed.
    MalformedSignature => "MALFORMED_SIGNATURE", "The envelope's signature is malformed: not the payload's last field, a key id that is not 8 bytes, a signature that is not 64 bytes, a batch larger than 256, or a path of the wrong length.";
    /// The signing key is not registered for the participant.
    UnknownSigningKey => "UNKNOWN_SIGNING_KEY", "The signing key id is not registered for this participant (the registry has no such key for it).";
    /// The signing key's validity starts after the time of record.
    SigningKeyNotYetValid => "SIGNING_KEY_NOT_YET_VALID", "The signing key is registered but its validity period starts after the event's time of record.";
    /// The signing key's validity ended before the time of record.
    SigningKeyExpired => "SIGNING_KEY_EXPIRED", "The signing key's validity period ended before the event's time of record; sign with the participant's current key.";
    /// The signing key was revoked.
    SigningKeyRevoked => "SIGNING_KEY_REVOKED", "The signing key was revoked by the registrar; events signed with it after the revocation are refused.";
    /// The signature does not verify.
    BadSignature => "BAD_SIGNATURE", "The envelope's signature does not verify under the registered key: the envelope, its subject or its batch path was altered, or it was signed with another key.";
    /// The service is not in the participant's registration.
    ServiceNotRegistered => "SERVICE_NOT_REGISTERED", "The participant is not registered to publish this service.";
    /// The event type is not registered for the service.
    EventTypeNotRegistered => "EVENT_TYPE_NOT_REGISTERED", "The participant is not registered to publish this event type for this service.";
    /// The envelope's region is not one the participant serves.
    RegionNotServed => "REGION_NOT_SERVED", "The envelope's MPP region is not one the participant is registered to serve.";
    /// A registry statement does not decode or holds invalid fields.
    MalformedRegistryStatement => "MALFORMED_REGISTRY_STATEMENT", "The registry statement does not decode as a signed mpp.v1.RegistryStatement, or one of its fields is invalid.";
    /// The hub has no registrar key, so it cannot judge registry statements.
    RegistrarNotConfigured => "REGISTRAR_NOT_CONFIGURED", "This hub runs without a registrar key (--insecure-no-registrar or --insecure-dev-keys), so it refuses every registry statement.";
    /// The registry statement is not signed by a registrar key the hub trusts.
    RegistrarSignatureInvalid => "REGISTRAR_SIGNATURE_INVALID", "The registry statement is not signed by a registrar key in the hub's --registrar-key-file, or its signature does not verify.";
    /// The signing key is already registered.
    SigningKeyExists => "SIGNING_KEY_EXISTS", "A signing key with this id is already registered (keys are never re-added, even after revocation).";
    /// A registry limit was reached.
    RegistryLimitExceeded => "REGISTRY_LIMIT_EXCEEDED", "The registry or the participant already holds the most participants, keys, regions or services allowed (see mpp_core::registry).";
    /// A redrive names no earlier rejection of the same message.
    RedriveInvalid => "REDRIVE_INVALID", "The operator's redrive does not name an earlier rejected entry of the same subject and payload (or names a registry statement, which the registrar publishes again itself).";
    /// A later accepted statement superseded the redriven message.
    RedriveSuperseded => "REDRIVE_SUPERSEDED", "A later accepted event changed the application, case or service standard the rejected message was about, so redriving it now would replay a stale statement; the participant must publish a new one.";
    /// A participant that is not a registered front office opened a case.
    NotAFrontOffice => "NOT_A_FRONT_OFFICE", "The participant registry is in force and case_opened came from a participant registered as an agency: only a registered front office opens cases (an agency's walk-in citizen is opened through the front office).";
    /// A held application was not opened within the window.
    HeldApplicationExpired => "HELD_APPLICATION_EXPIRED", "An application filed before its case was opened was held, and no front office opened the case within 24 hours of the filing (limits::HELD_APPLICATION_WINDOW_MS): the case never shows it. Noted on the accepted entry that dropped it (the detail lists each filing's seq).";
    /// A held application was filed before the front office issued the number.
    HeldApplicationPredatesOpening => "HELD_APPLICATION_PREDATES_OPENING", "An application was filed into a tracking number before the front office issued it (earlier than the opening's occurred_at_ms, less limits::HELD_APPLICATION_ISSUE_SKEW_MS_MAX): it was filed blind, so the opened case never shows it. Noted on the accepted opening (the detail lists each filing's seq).";
    /// No room to hold another application filed into an unopened case.
    HeldApplicationsFull => "HELD_APPLICATIONS_FULL", "The participant (limits::HELD_APPLICATIONS_PER_PARTICIPANT_MAX: 64) or the hub (limits::HELD_APPLICATIONS_MAX: 1,024) already holds the most applications filed into cases not opened yet; file once the front office has opened the case.";
    /// The registry grants the caller no other participant's events to follow.
    NoFollowGrant => "NO_FOLLOW_GRANT", "The participant registry grants the caller no other participant's event types to follow (ParticipantRegistered.follows), so CaseEventService.FollowCaseEvents has nothing it may send; ask the province's registrar.";
    /// An agency service was asked to open a case for a walk-in citizen without a front office configured.
    FrontOfficeNotConfigured => "FRONT_OFFICE_NOT_CONFIGURED", "A filing without a tracking number needs a case opened by the MPP front office, and this agency service runs without one (--front-office-url, --front-office-token-file): open the case at the front office and file into it, or configure the service. Nothing was published.";
    /// The front office could not be reached to open a walk-in citizen's case.
    FrontOfficeUnavailable => "FRONT_OFFICE_UNAVAILABLE", "The agency service could not reach the MPP front office to open the walk-in citizen's case (connection refused, timed out or the front office is unavailable); nothing was filed, retry later.";
    /// The front office refused to open a walk-in citizen's case.
    FrontOfficeRefused => "FRONT_OFFICE_REFUSED", "The MPP front office refused to open the walk-in citizen's case for this agency service (e.g. its token lacks the cases:open-walk-in scope, or the front office's own reason code in the message); nothing was filed.";
    /// A citizen's phone number is not one a message can be sent to.
    InvalidPhoneNumber => "INVALID_PHONE_NUMBER", "A phone number is neither Indonesian (08..., 62... or +62..., then 8..=12 digits) nor international (+ and a country code, 8..=15 digits in all); spaces and hyphens are allowed. The front office keeps it in E.164 (+62...).";
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejection: a stable code plus a deterministic detail sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct Rejection {
    /// The stable code.
    pub code: ReasonCode,
    /// Detail for a developer; deterministic, without personal data.
    pub detail: String,
}

impl Rejection {
    /// A rejection with the given code and detail.
    pub fn new(code: ReasonCode, detail: impl Into<String>) -> Self {
        Self { code, detail: detail.into() }
    }
}
