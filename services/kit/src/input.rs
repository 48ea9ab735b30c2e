//! Parsing of RPC request fields, with the core's types and limits.
//!
//! Each helper takes the field's name as the agency's proto spells it, so an
//! error says which field of which request was wrong (`nomor_berkas: tracking
//! number check digit does not match`). The codes are the core's stable
//! reason codes; an empty required field is `MISSING_FIELD`.
//!
//! These checks run before an event is built. The built envelope then passes
//! the hub's own validation ([`mpp_core::validate::validate`]) as a last gate
//! (see [`crate::event::EventBuilder`]), so the hub never rejects an event of
//! the kit for a field reason.

use mpp_core::ids::{ApplicationId, OfficerId, RegionCode, TrackingNumber};
use mpp_core::limits;
use mpp_core::ReasonCode;

use crate::error::KitError;

/// A required sub-message: `MISSING_FIELD` when absent.
pub fn message<'a, T>(field: &'static str, value: Option<&'a T>) -> Result<&'a T, KitError> {
    value.ok_or_else(|| KitError::input(field, ReasonCode::MissingField, "this field is required"))
}

fn required<'a>(field: &'static str, value: &'a str) -> Result<&'a str, KitError> {
    if value.trim().is_empty() {
        return Err(KitError::input(field, ReasonCode::MissingField, "this field is required"));
    }
    Ok(value)
}

/// A tracking number of an existing case at this MPP.
///
/// Codes: `MISSING_FIELD` (empty), `MALFORMED_TRACKING_NUMBER`,
/// `BAD_CHECK_DIGIT` (mistyped), `REGION_MISMATCH` (the case belongs to another
/// MPP than `region`).
pub fn tracking_number(
    field: &'static str,
    value: &str,
    region: RegionCode,
) -> Result<TrackingNumber, KitError> {
    let value = required(field, value)?;
    let tracking = TrackingNumber::parse(value).map_err(|rejection| KitError::Input { field, rejection })?;
    if tracking.region() != region {
        return Err(KitError::input(
            field,
            ReasonCode::RegionMismatch,
            format!(
                "case {tracking} belongs to the MPP of region {}, this service runs for region {region}",
                tracking.region()
            ),
        ));
    }
    Ok(tracking)
}

/// An optional tracking number: `None` when the field is empty.
pub fn optional_tracking_number(
    field: &'static str,
    value: &str,
    region: RegionCode,
) -> Result<Option<TrackingNumber>, KitError> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    tracking_number(field, value, region).map(Some)
}

/// An application id (`MISSING_FIELD`, `MALFORMED_APPLICATION_ID`).
pub fn application_id(field: &'static str, value: &str) -> Result<ApplicationId, KitError> {
    let value = required(field, value)?;
    ApplicationId::parse(value).map_err(|rejection| KitError::Input { field, rejection })
}

/// A pseudonymous officer id (`MISSING_FIELD`, `MALFORMED_OFFICER`).
pub fn officer(field: &'static str, value: &str) -> Result<OfficerId, KitError> {
    let value = required(field, value)?;
    OfficerId::parse(value).map_err(|rejection| KitError::Input { field, rejection })
}

/// A free-text field: at most `limits::TEXT_BYTES_MAX` bytes (`FIELD_TOO_LONG`),
/// no control characters (`INVALID_FIELD_VALUE`), and not blank when
/// `required` (`MISSING_FIELD`). Returned unchanged.
pub fn text(field: &'static str, value: &str, required: bool) -> Result<String, KitError> {
    if value.len() > limits::TEXT_BYTES_MAX {
        return Err(KitError::input(
            field,
            ReasonCode::FieldTooLong,
            format!("{} bytes is longer than the limit of {} bytes", value.len(), limits::TEXT_BYTES_MAX),
        ));
    }
    if required && value.trim().is_empty() {
        return Err(KitError::input(field, ReasonCode::MissingField, "this field is required"));
    }
    if value.chars().any(char::is_control) {
        return Err(KitError::input(
            field,
            ReasonCode::InvalidFieldValue,
            "contains control characters (newlines, tabs, ...); send one line of text",
        ));
    }
    Ok(value.to_owned())
}

/// A list of document names or similar: at most `limits::LIST_ITEMS_MAX`
/// items (`FIELD_TOO_LONG`), each a required [`text`]; at least one item when
/// `required` (`MISSING_FIELD`).
pub fn list(field: &'static str, values: &[String], required: bool) -> Result<Vec<String>, KitError> {
    if values.len() > limits::LIST_ITEMS_MAX {
        return Err(KitError::input(
            field,
            ReasonCode::FieldTooLong,
            format!("{} items is more than the limit of {} items", values.len(), limits::LIST_ITEMS_MAX),
        ));
    }
    if required && values.is_empty() {
        return Err(KitError::input(field, ReasonCode::MissingField, "at least one item is required"));
    }
    values.iter().map(|v| text(field, v, true)).collect()
}

/// An amount of money in whole rupiah that a citizen pays or is billed:
/// `MISSING_FIELD` when 0 (proto3's unset value), `INVALID_FIELD_VALUE` when
/// negative or above `max_idr` (the agency's documented ceiling for that
/// field, itself capped at `limits::AMOUNT_IDR_MAX`). Returned unchanged.
pub fn amount_idr(field: &'static str, value: i64, max_idr: i64) -> Result<i64, KitError> {
    let max_idr = max_idr.min(limits::AMOUNT_IDR_MAX);
    if value == 0 {
        return Err(KitError::input(field, ReasonCode::MissingField, "an amount in rupiah is required"));
    }
    if value < 0 || value > max_idr {
        return Err(KitError::input(
            field,
            ReasonCode::InvalidFieldValue,
            format!("{value} rupiah is not an amount this service bills; expected 1..={max_idr} rupiah"),
        ));
    }
    Ok(value)
}

/// The time of an appointment, survey, inspection or installation in Unix
/// milliseconds, given the edge's clock `now_ms`: `MISSING_FIELD` when 0
/// (unset), `INVALID_FIELD_VALUE` before 2000-01-01 or more than
/// `limits::APPOINTMENT_AHEAD_MS_MAX` after `now_ms` (the hub's own bounds).
/// Returned unchanged.
pub fn appointment_at_ms(field: &'static str, value: i64, now_ms: i64) -> Result<i64, KitError> {
    if value == 0 {
        return Err(KitError::input(
            field,
            ReasonCode::MissingField,
            "a time in Unix milliseconds is required",
        ));
    }
    let latest = now_ms.saturating_add(limits::APPOINTMENT_AHEAD_MS_MAX);
    if value < limits::OCCURRED_AT_MS_MIN || value > latest {
        return Err(KitError::input(
            field,
            ReasonCode::InvalidFieldValue,
            format!(
                "{value} is not a time this service can schedule; expected Unix milliseconds between \
                 2000-01-01 and {} ms from now",
                limits::APPOINTMENT_AHEAD_MS_MAX
            ),
        ));
    }
    Ok(value)
}

/// The due date of a fee in Unix milliseconds, given the edge's clock
/// `now_ms`: 0 (none given) passes as 0; otherwise `INVALID_FIELD_VALUE`
/// when it is already past at `now_ms` or more than
/// `limits::FEE_DUE_AHEAD_MS_MAX` after it (the hub's own bound). A due date
/// in the past would tell the citizen nothing but that they are late before
/// they were asked. Returned unchanged.
pub fn fee_due_at_ms(field: &'static str, value: i64, now_ms: i64) -> Result<i64, KitError> {
    if value == 0 {
        return Ok(0);
    }
    let latest = now_ms.saturating_add(limits::FEE_DUE_AHEAD_MS_MAX);
    if value < now_ms || value > latest {
        return Err(KitError::input(
            field,
            ReasonCode::InvalidFieldValue,
            format!(
                "{value} is not a due date this service can set; expected 0 (none) or Unix milliseconds \
                 from now to {} ms from now",
                limits::FEE_DUE_AHEAD_MS_MAX
            ),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region() -> RegionCode {
        RegionCode::parse("1771").unwrap()
    }

    fn code(r: Result<impl std::fmt::Debug, KitError>) -> ReasonCode {
        r.unwrap_err().reason_code()
    }

    #[test]
    fn tracking_number_errors_have_stable_codes() {
        let good = TrackingNumber::new(region(), 12345).unwrap().to_string();
        assert_eq!(tracking_number("nomor_berkas", &good, region()).unwrap().to_string(), good);
        assert_eq!(code(tracking_number("nomor_berkas", "", region())), ReasonCode::MissingField);
        assert_eq!(
            code(tracking_number("nomor_berkas", "abc", region())),
            ReasonCode::MalformedTrackingNumber
        );
        // Change the check digit.
        let mut bad = good.clone().into_bytes();
        let last = bad.len() - 1;
        bad[last] = if bad[last] == b'0' { b'1' } else { b'0' };
        let bad = String::from_utf8(bad).unwrap();
        assert_eq!(code(tracking_number("nomor_berkas", &bad, region())), ReasonCode::BadCheckDigit);
        let other = TrackingNumber::new(RegionCode::parse("1707").unwrap(), 1).unwrap().to_string();
        assert_eq!(code(tracking_number("nomor_berkas", &other, region())), ReasonCode::RegionMismatch);
        assert_eq!(optional_tracking_number("nomor_berkas", " ", region()).unwrap(), None);
    }

    #[test]
    fn error_message_names_the_field() {
        let err = officer("petugas", "").unwrap_err();
        assert!(err.to_string().starts_with("petugas: "), "{err}");
        let err = application_id("nomor_permohonan", "has space").unwrap_err();
        assert_eq!(err.reason_code(), ReasonCode::MalformedApplicationId);
        assert!(err.to_string().starts_with("nomor_permohonan: "), "{err}");
    }

    #[test]
    fn text_and_list_limits() {
        assert_eq!(text("catatan", "", false).unwrap(), "");
        assert_eq!(code(text("alasan", "  ", true)), ReasonCode::MissingField);
        assert_eq!(
            code(text("alasan", &"x".repeat(limits::TEXT_BYTES_MAX + 1), true)),
            ReasonCode::FieldTooLong
        );
        assert!(text("alasan", &"x".repeat(limits::TEXT_BYTES_MAX), true).is_ok());
        assert_eq!(code(text("alasan", "a\nb", true)), ReasonCode::InvalidFieldValue);
        let many = vec!["KK".to_owned(); limits::LIST_ITEMS_MAX + 1];
        assert_eq!(code(list("dokumen", &many, false)), ReasonCode::FieldTooLong);
        assert_eq!(code(list("dokumen", &[], true)), ReasonCode::MissingField);
        assert_eq!(code(list("dokumen", &["".to_owned()], false)), ReasonCode::MissingField);
        assert_eq!(list("dokumen", &["KK lama".to_owned()], true).unwrap(), vec!["KK lama".to_owned()]);
        assert_eq!(code(message::<u8>("langkah", None)), ReasonCode::MissingField);
    }

    #[test]
    fn amounts_and_appointment_times() {
        assert_eq!(amount_idr("jumlah", 350_000, 1_000_000).unwrap(), 350_000);
        assert_eq!(amount_idr("jumlah", 1_000_000, 1_000_000).unwrap(), 1_000_000);
        assert_eq!(code(amount_idr("jumlah", 0, 1_000_000)), ReasonCode::MissingField);
        assert_eq!(code(amount_idr("jumlah", -1, 1_000_000)), ReasonCode::InvalidFieldValue);
        assert_eq!(code(amount_idr("jumlah", 1_000_001, 1_000_000)), ReasonCode::InvalidFieldValue);
        assert_eq!(code(amount_idr("jumlah", i64::MAX, i64::MAX)), ReasonCode::InvalidFieldValue);
        let err = amount_idr("jumlah_pnbp", -5, 10).unwrap_err();
        assert!(err.to_string().starts_with("jumlah_pnbp: "), "{err}");

        let now = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        assert_eq!(appointment_at_ms("waktu_ms", now + 86_400_000, now).unwrap(), now + 86_400_000);
        assert_eq!(code(appointment_at_ms("waktu_ms", 0, now)), ReasonCode::MissingField);
        assert_eq!(code(appointment_at_ms("waktu_ms", -1, now)), ReasonCode::InvalidFieldValue);
        assert_eq!(
            code(appointment_at_ms("waktu_ms", limits::OCCURRED_AT_MS_MIN - 1, now)),
            ReasonCode::InvalidFieldValue
        );
        let latest = now + limits::APPOINTMENT_AHEAD_MS_MAX;
        assert!(appointment_at_ms("waktu_ms", latest, now).is_ok());
        assert_eq!(code(appointment_at_ms("waktu_ms", latest + 1, now)), ReasonCode::InvalidFieldValue);

        // A fee's due date is optional, never past, at most a year ahead.
        assert_eq!(fee_due_at_ms("jatuh_tempo_ms", 0, now).unwrap(), 0);
        assert_eq!(fee_due_at_ms("jatuh_tempo_ms", now, now).unwrap(), now);
        assert_eq!(code(fee_due_at_ms("jatuh_tempo_ms", now - 1, now)), ReasonCode::InvalidFieldValue);
        assert_eq!(code(fee_due_at_ms("jatuh_tempo_ms", -1, now)), ReasonCode::InvalidFieldValue);
        let latest = now + limits::FEE_DUE_AHEAD_MS_MAX;
        assert_eq!(fee_due_at_ms("jatuh_tempo_ms", latest, now).unwrap(), latest);
        assert_eq!(code(fee_due_at_ms("jatuh_tempo_ms", latest + 1, now)), ReasonCode::InvalidFieldValue);
    }
}
