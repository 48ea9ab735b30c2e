//! Field validation: [`UncheckedEnvelope`] + subject → [`Envelope`], or a
//! [`Rejection`] with a stable code. Independent of how the bytes were
//! decoded, and of any state: the same input always gives the same answer.
//!
//! Checks run in a fixed order, so an envelope with several faults always
//! gets the same (first) reason code: schema version, subject shape, event
//! id, body, agency (and its match with the subject), service (and its match),
//! officer, region, case and application ids, timestamp, body fields.

use crate::event::{Envelope, EventBody, EventKind, Target, UncheckedEnvelope};
use crate::ids::{AgencyId, ApplicationId, EventId, OfficerId, RegionCode, ServiceId, TrackingNumber};
use crate::limits;
use crate::reason::{ReasonCode, Rejection};

/// The schema version this core understands.
pub const SCHEMA_VERSION: u32 = 1;

/// Subject prefix of every event: `mpp.events.<agency_id>.<service_id>`.
pub const SUBJECT_PREFIX: &str = "mpp.events.";

/// Appointment kinds the hub knows.
pub const APPOINTMENT_KINDS: &[&str] =
    &["interview", "inspection", "survey", "installation", "collection", "other"];

/// The subject an agency's event for a service is published on.
pub fn subject_for(agency: &AgencyId, service: &ServiceId) -> String {
    format!("{SUBJECT_PREFIX}{agency}.{service}")
}

/// Splits a subject into its agency and service tokens. A subject longer
/// than [`limits::SUBJECT_BYTES_MAX`] is refused whatever its shape.
pub fn parse_subject(subject: &str) -> Result<(&str, &str), Rejection> {
    let bad =
        || Rejection::new(ReasonCode::BadSubject, "subject must be mpp.events.<agency_id>.<service_id>");
    if subject.len() > limits::SUBJECT_BYTES_MAX {
        return Err(bad());
    }
    let rest = subject.strip_prefix(SUBJECT_PREFIX).ok_or_else(bad)?;
    let mut parts = rest.split('.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(s), None) if !a.is_empty() && !s.is_empty() => Ok((a, s)),
        _ => Err(bad()),
    }
}

/// Validates an envelope received on `subject` at time of record `record_ms`.
pub fn validate(subject: &str, u: &UncheckedEnvelope, record_ms: i64) -> Result<Envelope, Rejection> {
    if u.schema_version != SCHEMA_VERSION {
        return Err(Rejection::new(
            ReasonCode::UnsupportedSchemaVersion,
            format!("schema_version {} is not supported; this hub knows {SCHEMA_VERSION}", u.schema_version),
        ));
    }
    let (subject_agency, subject_service) = parse_subject(subject)?;
    let event_id = EventId::parse(&u.event_id)?;
    // Before `pin_reissued` and `personal_data_read` existed, their fields
    // were unknown: no body.
    let known = |b: &EventBody| match b {
        EventBody::PinReissued { .. } => record_ms >= limits::PIN_REISSUE_FROM_MS,
        EventBody::PersonalDataRead { .. } => record_ms >= limits::PERSONAL_DATA_READ_FROM_MS,
        _ => true,
    };
    let body = u
        .body
        .clone()
        .filter(known)
        .ok_or_else(|| Rejection::new(ReasonCode::MissingBody, "the envelope carries no event body"))?;
    let agency = AgencyId::parse(&u.agency_id)?;
    if agency.as_str() != subject_agency {
        return Err(Rejection::new(
            ReasonCode::AgencySubjectMismatch,
            format!("envelope agency_id {agency} was published on another agency's subject"),
        ));
    }
    let service = ServiceId::parse(&u.service_id)?;
    if service.as_str() != subject_service {
        return Err(Rejection::new(
            ReasonCode::ServiceSubjectMismatch,
            format!("envelope service_id {service} differs from the subject's service"),
        ));
    }
    let officer = OfficerId::parse(&u.officer)?;
    let region = RegionCode::parse(&u.region_code)?;
    let kind = body.kind();
    let target = match kind {
        EventKind::ServiceStandardPublished => {
            if !u.case_id.is_empty() || !u.application_id.is_empty() {
                return Err(Rejection::new(
                    ReasonCode::InvalidFieldValue,
                    "service_standard_published carries no case_id or application_id",
                ));
            }
            Target::Catalogue
        }
        k if k.is_case_event() => {
            if !u.application_id.is_empty() {
                return Err(Rejection::new(
                    ReasonCode::InvalidFieldValue,
                    format!("{} carries no application_id", k.as_str()),
                ));
            }
            Target::Case(case_in_region(&u.case_id, region)?)
        }
        _ => {
            let case = case_in_region(&u.case_id, region)?;
            Target::Application(case, ApplicationId::parse(&u.application_id)?)
        }
    };
    if u.occurred_at_ms < limits::OCCURRED_AT_MS_MIN
        || u.occurred_at_ms > record_ms.saturating_add(limits::OCCURRED_AT_FUTURE_SKEW_MS_MAX)
    {
        return Err(Rejection::new(
            ReasonCode::TimestampOutOfRange,
            "occurred_at_ms must be after 2000-01-01 and at most 24 h after the time of record",
        ));
    }
    validate_body(&body, record_ms)?;
    Ok(Envelope {
        event_id,
        target,
        region,
        agency,
        service,
        occurred_at_ms: u.occurred_at_ms,
        officer,
        body,
    })
}

fn case_in_region(case_id: &str, region: RegionCode) -> Result<TrackingNumber, Rejection> {
    let case = TrackingNumber::parse(case_id)?;
    if case.region() != region {
        return Err(Rejection::new(
            ReasonCode::RegionMismatch,
            format!("tracking number belongs to region {}, envelope says {region}", case.region()),
        ));
    }
    Ok(case)
}

fn text(field: &str, value: &str, required: bool) -> Result<(), Rejection> {
    if value.len() > limits::TEXT_BYTES_MAX {
        return Err(Rejection::new(
            ReasonCode::FieldTooLong,
            format!("{field} is longer than {} bytes", limits::TEXT_BYTES_MAX),
        ));
    }
    if required && value.trim().is_empty() {
        return Err(Rejection::new(ReasonCode::InvalidFieldValue, format!("{field} is required")));
    }
    if value.chars().any(is_forbidden_char) {
        return Err(Rejection::new(
            ReasonCode::InvalidFieldValue,
            format!("{field} contains control, line separator or bidirectional override characters"),
        ));
    }
    Ok(())
}

/// Characters no text field may hold: control characters (C0, DEL, C1),
/// the Unicode line and paragraph separators (they break lines like `\n`),
/// and the bidirectional embeddings, overrides and isolates, which reorder
/// what a citizen or auditor sees (the "Trojan Source" trick). Other format
/// characters stay allowed: emoji need the zero-width joiner and variation
/// selectors.
fn is_forbidden_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn list(field: &str, values: &[String], required: bool) -> Result<(), Rejection> {
    if values.len() > limits::LIST_ITEMS_MAX {
        return Err(Rejection::new(
            ReasonCode::FieldTooLong,
            format!("{field} has more than {} items", limits::LIST_ITEMS_MAX),
        ));
    }
    if required && values.is_empty() {
        return Err(Rejection::new(
            ReasonCode::InvalidFieldValue,
            format!("{field} needs at least one item"),
        ));
    }
    values.iter().try_for_each(|v| text(field, v, true))
}

fn amount(field: &str, v: i64, zero_ok: bool) -> Result<(), Rejection> {
    let min = if zero_ok { 0 } else { 1 };
    if v < min || v > limits::AMOUNT_IDR_MAX {
        return Err(Rejection::new(
            ReasonCode::InvalidFieldValue,
            format!("{field} must be between {min} and {} rupiah", limits::AMOUNT_IDR_MAX),
        ));
    }
    Ok(())
}

fn hash(field: &str, v: &[u8], required: bool) -> Result<(), Rejection> {
    if v.len() > limits::HASH_BYTES_MAX {
        return Err(Rejection::new(
            ReasonCode::FieldTooLong,
            format!("{field} is longer than {} bytes", limits::HASH_BYTES_MAX),
        ));
    }
    if required && v.is_empty() {
        return Err(Rejection::new(ReasonCode::InvalidFieldValue, format!("{field} is required")));
    }
    Ok(())
}

/// A field of exactly `len` bytes (`INVALID_FIELD_VALUE` otherwise).
/// A client id as the tokens files write them: 1..=[`limits::CLIENT_ID_BYTES_MAX`]
/// bytes of `[A-Za-z0-9._-]`.
fn client(field: &str, v: &str) -> Result<(), Rejection> {
    let ok = !v.is_empty()
        && v.len() <= limits::CLIENT_ID_BYTES_MAX
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        return Ok(());
    }
    Err(Rejection::new(
        ReasonCode::InvalidFieldValue,
        format!("{field} must be 1..={} characters of A-Z a-z 0-9 . _ -", limits::CLIENT_ID_BYTES_MAX),
    ))
}

fn exact_bytes(field: &str, v: &[u8], len: usize) -> Result<(), Rejection> {
    if v.len() != len {
        return Err(Rejection::new(ReasonCode::InvalidFieldValue, format!("{field} must be {len} bytes")));
    }
    Ok(())
}

fn validate_body(body: &EventBody, record_ms: i64) -> Result<(), Rejection> {
    match body {
        EventBody::PersonalDataSealed { key_id, nonce, ciphertext } => {
            exact_bytes("key_id", key_id, limits::KEY_ID_BYTES)?;
            exact_bytes("nonce", nonce, limits::SEAL_NONCE_BYTES)?;
            if ciphertext.len() > limits::SEALED_CIPHERTEXT_BYTES_MAX {
                return Err(Rejection::new(
                    ReasonCode::FieldTooLong,
                    format!("ciphertext is longer than {} bytes", limits::SEALED_CIPHERTEXT_BYTES_MAX),
                ));
            }
            if ciphertext.len() < limits::SEALED_CIPHERTEXT_BYTES_MIN {
                return Err(Rejection::new(
                    ReasonCode::InvalidFieldValue,
                    format!(
                        "ciphertext is shorter than its {}-byte tag",
                        limits::SEALED_CIPHERTEXT_BYTES_MIN
                    ),
                ));
            }
            Ok(())
        }
        EventBody::PersonalDataErased { key_id } => exact_bytes("key_id", key_id, limits::KEY_ID_BYTES),
        EventBody::PinReissued { pin_verifier } => hash("pin_verifier", pin_verifier, true),
        EventBody::PersonalDataRead { client_id } => client("client_id", client_id),
        EventBody::CaseOpened { pin_verifier, nik_keyed_hash } => {
            hash("pin_verifier", pin_verifier, true)?;
            hash("nik_keyed_hash", nik_keyed_hash, false)
        }
        EventBody::ApplicationFiled { documents } => list("documents", documents, false),
        EventBody::DocumentsRequested { documents, counter, note } => {
            list("documents", documents, true)?;
            text("counter", counter, true)?;
            text("note", note, false)
        }
        EventBody::DocumentsReceived { documents } => list("documents", documents, false),
        EventBody::FeeAssessed { amount_idr, payment_channel, billing_code, due_at_ms } => {
            amount("amount_idr", *amount_idr, false)?;
            text("payment_channel", payment_channel, true)?;
            text("billing_code", billing_code, false)?;
            // 0: no due date (every fee_assessed before the field existed).
            if *due_at_ms != 0
                && (*due_at_ms < limits::OCCURRED_AT_MS_MIN
                    || *due_at_ms > record_ms.saturating_add(limits::FEE_DUE_AHEAD_MS_MAX))
            {
                return Err(Rejection::new(
                    ReasonCode::InvalidFieldValue,
                    "fee due_at_ms must be 0 (none), or after 2000-01-01 and at most a year after the time of \
                     record",
                ));
            }
            Ok(())
        }
        EventBody::PaymentReceived { amount_idr, payment_reference } => {
            amount("amount_idr", *amount_idr, false)?;
            text("payment_reference", payment_reference, false)
        }
        EventBody::AppointmentScheduled { kind, at_ms, place } => {
            if !APPOINTMENT_KINDS.contains(&kind.as_str()) {
                return Err(Rejection::new(
                    ReasonCode::InvalidFieldValue,
                    format!("appointment kind must be one of {}", APPOINTMENT_KINDS.join(", ")),
                ));
            }
            if *at_ms < limits::OCCURRED_AT_MS_MIN
                || *at_ms > record_ms.saturating_add(limits::APPOINTMENT_AHEAD_MS_MAX)
            {
                return Err(Rejection::new(
                    ReasonCode::InvalidFieldValue,
                    "appointment at_ms must be after 2000-01-01 and at most two years after the time of record",
                ));
            }
            text("place", place, true)
        }
        EventBody::ReviewStarted | EventBody::Collected => Ok(()),
        EventBody::Issued { document_number } => text("document_number", document_number, false),
        EventBody::Rejected { reason_code, reason } => {
            text("reason_code", reason_code, false)?;
            text("reason", reason, true)
        }
        EventBody::Withdrawn { reason } => text("reason", reason, false),
        EventBody::ServiceStandardPublished {
            name_id,
            name_en,
            completion_working_days,
            fee_idr,
            requirements,
            fiktif_positif: _,
            version,
            collection,
        } => {
            text("name_id", name_id, true)?;
            text("name_en", name_en, false)?;
            if *completion_working_days == 0 || *completion_working_days > limits::COMPLETION_WORKING_DAYS_MAX
            {
                return Err(Rejection::new(
                    ReasonCode::InvalidFieldValue,
                    format!(
                        "completion_working_days must be between 1 and {}",
                        limits::COMPLETION_WORKING_DAYS_MAX
                    ),
                ));
            }
            amount("fee_idr", *fee_idr, true)?;
            list("requirements", requirements, false)?;
            if *version == 0 {
                return Err(Rejection::new(ReasonCode::InvalidFieldValue, "version must be at least 1"));
            }
            if let Some(c) = collection {
                text("collection.place", &c.place, true)?;
                if c.within_working_days == 0
                    || c.within_working_days > limits::COLLECT_WITHIN_WORKING_DAYS_MAX
                {
                    return Err(Rejection::new(
                        ReasonCode::InvalidFieldValue,
                        format!(
                            "collection.within_working_days must be between 1 and {}",
                            limits::COLLECT_WITHIN_WORKING_DAYS_MAX
                        ),
                    ));
                }
            }
            Ok(())
        }
    }
}
