//! Every bound the core enforces, in one place. Each is part of the public
//! contract: an input beyond a limit is rejected with the reason code named
//! next to it, never truncated silently.

/// Largest message payload the hub accepts as an event (`MESSAGE_TOO_LARGE`).
/// The stream itself admits up to NATS `max_payload` (1 MiB) so that an
/// oversized message still reaches the hub and is recorded with its verdict.
pub const MESSAGE_BYTES_MAX: usize = 64 * 1024;

/// Longest operator id a log entry records, in bytes (an operator token's
/// client id is at most this long; see `crate::redrive`).
pub const OPERATOR_ID_BYTES_MAX: usize = 64;

/// Longest agency or service id (`MALFORMED_AGENCY_ID`, `MALFORMED_SERVICE_ID`).
pub const SLUG_BYTES_MAX: usize = 32;

/// Longest application id or officer id (`MALFORMED_APPLICATION_ID`, `MALFORMED_OFFICER`).
pub const LOCAL_ID_BYTES_MAX: usize = 64;

/// Longest free-text field: notes, reasons, places, document names (`FIELD_TOO_LONG`).
pub const TEXT_BYTES_MAX: usize = 500;

/// Most entries in one list field, e.g. documents requested (`FIELD_TOO_LONG`).
pub const LIST_ITEMS_MAX: usize = 32;

/// Longest opaque hash field (PIN verifier, NIK keyed hash) (`FIELD_TOO_LONG`).
pub const HASH_BYTES_MAX: usize = 64;

/// Most applications in one case (`CASE_LIMIT_EXCEEDED`).
pub const APPLICATIONS_PER_CASE_MAX: usize = 32;

/// Most applications one agency may file in one case
/// (`AGENCY_APPLICATIONS_EXCEEDED`): a quarter of
/// [`APPLICATIONS_PER_CASE_MAX`], so no single agency can take a case's
/// application slots from the others. Enforced from
/// [`CASE_SIZE_RULES_FROM_MS`].
pub const APPLICATIONS_PER_AGENCY_PER_CASE_MAX: usize = 8;

/// Largest size of one case, in bytes as [`crate::case::Case::size_bytes`]
/// counts them (`CASE_TOO_LARGE`): 1 MiB. It bounds what every lookup and
/// watch of the case reads and decodes; a real case of 32 applications with
/// a few dozen events each takes well under a tenth of it. Enforced from
/// [`CASE_SIZE_RULES_FROM_MS`]; see also [`CASE_BYTES_RESERVED_FOR_FINISH`].
pub const CASE_BYTES_MAX: usize = 1024 * 1024;

/// How many of a case's last bytes are kept for events that finish an
/// application (issued, collected, rejected, withdrawn): other events are
/// refused once the case would exceed `CASE_BYTES_MAX -
/// CASE_BYTES_RESERVED_FOR_FINISH` (`CASE_TOO_LARGE`), so every application
/// of a full case can still be closed. Finishing takes one item whose
/// detail is at most two texts of [`TEXT_BYTES_MAX`] (a rejection's code
/// and reason), plus `collected` with none: about 1,100 bytes counted per
/// application, so 48 KiB covers all 32 applications.
pub const CASE_BYTES_RESERVED_FOR_FINISH: usize = 48 * 1024;

/// Most bytes of a case (as [`crate::case::Case::size_bytes`] counts its
/// applications) that one agency's applications may take
/// (`AGENCY_CASE_SHARE_EXCEEDED`): a quarter of [`CASE_BYTES_MAX`], so no
/// single agency can fill a case for the others. Events that finish an
/// application are not held to it (only to [`CASE_BYTES_MAX`]). Enforced
/// from [`CASE_SIZE_RULES_FROM_MS`].
pub const CASE_BYTES_PER_AGENCY_MAX: usize = CASE_BYTES_MAX / 4;

/// The time of record (Unix ms) from which the case size and per-agency
/// limits above apply: 2026-12-01T00:00:00Z. The verdicts of entries
/// recorded earlier are judged as they were when they were logged, so a log
/// written before these limits replays, rebuilds and restores to the same
/// bytes (time of record is data, part of each entry).
pub const CASE_SIZE_RULES_FROM_MS: i64 = 1_796_083_200_000;

/// The time of record (Unix ms) from which `pin_reissued` (protobuf field
/// 35) is an event: 2026-12-07T00:00:00Z. A hub before it did not know the
/// field and judged such a message `MISSING_BODY`; entries recorded earlier
/// are judged so still, so an old log replays to the same bytes.
pub const PIN_REISSUE_FROM_MS: i64 = 1_796_601_600_000;

/// The time of record (Unix ms) from which `personal_data_read` (protobuf
/// field 36) is an event: 2026-12-07T09:00:00Z, before any hub knew the
/// field. Entries recorded earlier that carry it are judged `MISSING_BODY`,
/// as the hubs of that time judged them.
pub const PERSONAL_DATA_READ_FROM_MS: i64 = 1_796_634_000_000;

/// Personal-data reads a case's projection keeps, newest first (the log
/// keeps every one): what the citizen sees in the access history, and a
/// bound on what reads add to a case's size however often they come.
pub const PERSONAL_DATA_READS_KEPT: usize = 32;

/// Longest client id a `personal_data_read` names, in bytes.
pub const CLIENT_ID_BYTES_MAX: usize = 64;

/// Most timeline items (accepted events) in one application (`CASE_LIMIT_EXCEEDED`);
/// see also [`TIMELINE_ITEMS_RESERVED_FOR_FINISH`].
pub const TIMELINE_ITEMS_PER_APPLICATION_MAX: usize = 256;

/// Longest subject recorded in a log entry; NATS subjects are far shorter in
/// practice (`BAD_SUBJECT` beyond this, the subject is stored truncated).
pub const SUBJECT_BYTES_MAX: usize = 256;

/// Longest detail text of a rejection in a log entry.
pub const DETAIL_BYTES_MAX: usize = 512;

/// Largest fee or payment, in rupiah: 1 trillion (`INVALID_FIELD_VALUE`).
pub const AMOUNT_IDR_MAX: i64 = 1_000_000_000_000;

/// Longest service standard completion time, in working days (`INVALID_FIELD_VALUE`).
pub const COMPLETION_WORKING_DAYS_MAX: u32 = 365;

/// Longest time a standard may give the citizen to collect an issued
/// document, in working days (`INVALID_FIELD_VALUE`).
pub const COLLECT_WITHIN_WORKING_DAYS_MAX: u32 = 365;

/// How far after the time of record a fee may fall due, in milliseconds:
/// one year of 366 days (`INVALID_FIELD_VALUE`).
pub const FEE_DUE_AHEAD_MS_MAX: i64 = 366 * 24 * 60 * 60 * 1000;

/// Earliest acceptable `occurred_at_ms`: 2000-01-01T00:00:00Z (`TIMESTAMP_OUT_OF_RANGE`).
pub const OCCURRED_AT_MS_MIN: i64 = 946_684_800_000;

/// How far `occurred_at_ms` may lie after the time of record (clock skew at an
/// agency), in milliseconds: 24 hours (`TIMESTAMP_OUT_OF_RANGE`).
pub const OCCURRED_AT_FUTURE_SKEW_MS_MAX: i64 = 24 * 60 * 60 * 1000;

/// How many of an application's last timeline slots are kept for events that
/// finish it (issued, collected, rejected, withdrawn): once an application
/// holds `TIMELINE_ITEMS_PER_APPLICATION_MAX - TIMELINE_ITEMS_RESERVED_FOR_FINISH`
/// items, only those are accepted (`CASE_LIMIT_EXCEEDED` otherwise), so an
/// application at its limit can always still be closed. Two slots suffice for
/// issued then collected; rejected and withdrawn need one.
pub const TIMELINE_ITEMS_RESERVED_FOR_FINISH: usize = 2;

/// How far after the time of record an appointment may be scheduled, in
/// milliseconds: two years of 366 days (`INVALID_FIELD_VALUE`).
pub const APPOINTMENT_AHEAD_MS_MAX: i64 = 2 * 366 * 24 * 60 * 60 * 1000;

/// Length of a citizen's data-key id in `personal_data_sealed` and
/// `personal_data_erased`, in bytes: 128 random bits (`INVALID_FIELD_VALUE`
/// otherwise).
pub const KEY_ID_BYTES: usize = 16;

/// Length of the AES-256-GCM nonce of `personal_data_sealed`, in bytes
/// (`INVALID_FIELD_VALUE` otherwise).
pub const SEAL_NONCE_BYTES: usize = 12;

/// Shortest ciphertext of `personal_data_sealed`, in bytes: the 16-byte
/// AES-GCM tag (`INVALID_FIELD_VALUE` below it).
pub const SEALED_CIPHERTEXT_BYTES_MIN: usize = 16;

/// Longest ciphertext of `personal_data_sealed`, in bytes: room for a name,
/// a phone number and an e-mail address at their front-office limits with
/// the encoding's overhead and the tag (`FIELD_TOO_LONG` beyond it).
pub const SEALED_CIPHERTEXT_BYTES_MAX: usize = 1024;

/// How long an application filed into a case no front office has opened
/// yet is held, in milliseconds of time of record: 24 hours. Opened later,
/// the case does not show it (`HELD_APPLICATION_EXPIRED`); see
/// [`crate::hold`]. Applies while the participant registry is in force.
pub const HELD_APPLICATION_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// How much earlier than the front office's opening says it issued the
/// tracking number (its `occurred_at_ms`) a held application may have been
/// recorded and still surface in the case, in milliseconds: one minute, for
/// the front office's clock against the stream's. Earlier filings were made
/// blind into a guessed number (`HELD_APPLICATION_PREDATES_OPENING`); see
/// [`crate::hold`].
pub const HELD_APPLICATION_ISSUE_SKEW_MS_MAX: i64 = 60 * 1000;

/// Most applications one participant may hold in cases not opened yet
/// (`HELD_APPLICATIONS_FULL`); see [`crate::hold`].
pub const HELD_APPLICATIONS_PER_PARTICIPANT_MAX: usize = 64;

/// Most applications the hub holds in cases not opened yet, all
/// participants together (`HELD_APPLICATIONS_FULL`); see [`crate::hold`].
pub const HELD_APPLICATIONS_MAX: usize = 1024;
