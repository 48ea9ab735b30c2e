//! An operator's redrive of a rejected entry, and the rules the ledger
//! judges it by (docs/DESIGN.md "Redrive").
//!
//! A redrive is the operator's act, never a new statement of the
//! participant: the hub's dashboard publishes the rejected entry's payload,
//! byte for byte (the participant's signature included), on
//! [`redrive_subject`] of the entry's subject, with the operator's id and the
//! entry's seq in headers. Only the hub's own NATS user may publish under
//! [`REDRIVE_SUBJECT_PREFIX`] (a permission in every NATS config), and no
//! participant may be registered under the id `redrive`, so no agency can
//! make its message look like an operator's. The ledger honours the headers
//! on that subject only, records them in the entry (log format version 2,
//! [`crate::log`]), and judges the payload as if published on the original
//! subject, after two checks of its own:
//!
//! - [`check_original`]: the entry redriven is an earlier rejection of the
//!   same subject and payload (`REDRIVE_INVALID` otherwise);
//! - [`superseded`]: nothing accepted since that entry changed what the
//!   message is about (`REDRIVE_SUPERSEDED` otherwise).
//!
//! Every step reads only the log before the entry, so a replay reaches the
//! same verdict.

use crate::case::PersonalData;
use crate::decide::State;
use crate::event::{Envelope, Target};
use crate::log::{LogEntry, Redrive, Verdict};
use crate::reason::{ReasonCode, Rejection};
use crate::registry::REGISTRY_SUBJECT;
use crate::validate::SUBJECT_PREFIX;

/// Where redrives are published: this followed by the original subject's
/// `<agency_id>.<service_id>`. Inside the stream's `mpp.events.>`, never a
/// valid event subject (five tokens), and reserved: no participant may be
/// called [`RESERVED_PARTICIPANT_ID`].
pub const REDRIVE_SUBJECT_PREFIX: &str = "mpp.events.redrive.";

pub use crate::registry::RESERVED_PARTICIPANT_ID;

/// The header naming the seq of the rejected entry a redrive republishes.
pub const REDRIVE_OF_HEADER: &str = "Mpp-Redrive-Of";

/// The header naming the operator who asked for a redrive.
pub const OPERATOR_HEADER: &str = "Mpp-Operator";

pub use crate::limits::OPERATOR_ID_BYTES_MAX;

/// The subject a redrive of a message published on `subject` goes to.
pub fn redrive_subject(subject: &str) -> Option<String> {
    let rest = subject.strip_prefix(SUBJECT_PREFIX)?;
    Some(format!("{REDRIVE_SUBJECT_PREFIX}{rest}"))
}

/// The subject a redrive published on `subject` redrives, if `subject` is a
/// redrive subject.
pub fn original_subject(subject: &str) -> Option<String> {
    let rest = subject.strip_prefix(REDRIVE_SUBJECT_PREFIX)?;
    Some(format!("{SUBJECT_PREFIX}{rest}"))
}

/// Whether `id` is an operator id a redrive may carry: 1 to
/// [`OPERATOR_ID_BYTES_MAX`] bytes of `[A-Za-z0-9._-]`, the tokens files'
/// client ids.
pub fn valid_operator_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= OPERATOR_ID_BYTES_MAX
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The redrive a message's headers claim, if it was published on a redrive
/// subject with both headers well formed; otherwise the message is judged
/// like any other (a redrive subject is then a `BAD_SUBJECT`).
pub fn claim(subject: &str, redrive_of: Option<&str>, operator: Option<&str>) -> Option<Redrive> {
    original_subject(subject)?;
    let of_seq = redrive_of?.parse::<u64>().ok().filter(|s| *s > 0)?;
    let operator = operator.filter(|o| valid_operator_id(o))?;
    Some(Redrive { of_seq, operator: operator.to_owned() })
}

fn invalid(detail: String) -> Rejection {
    Rejection::new(ReasonCode::RedriveInvalid, detail)
}

/// Checks that the redrive `r`, recorded at `seq` with `subject` and
/// `payload`, redrives an earlier rejected entry (`original`, the log's
/// entry `r.of_seq`, if it has one) of the same original subject and
/// payload.
pub fn check_original(
    seq: u64,
    subject: &str,
    payload: &[u8],
    r: &Redrive,
    original: Option<&LogEntry>,
) -> Result<(), Rejection> {
    if r.of_seq >= seq {
        return Err(invalid(format!("redrive of entry {} which is not before this one", r.of_seq)));
    }
    let Some(o) = original.filter(|o| o.seq == r.of_seq) else {
        return Err(invalid(format!("the log has no entry {}", r.of_seq)));
    };
    if o.verdict != Verdict::Rejected {
        return Err(invalid(format!("entry {} was not rejected", r.of_seq)));
    }
    let want = original_subject(subject).unwrap_or_default();
    if o.subject != want || o.subject == REGISTRY_SUBJECT {
        return Err(invalid(format!("entry {} was not published on {want}", r.of_seq)));
    }
    if o.payload != payload {
        return Err(invalid(format!("the payload differs from entry {}'s", r.of_seq)));
    }
    Ok(())
}

/// Whether a later accepted statement superseded the event of entry
/// `of_seq`, and so a redrive of it would replay a stale statement:
///
/// - an application's event: a change of that application accepted after
///   the entry (its filing excepted: an update rejected because its filing
///   had not arrived yet is what redrives are for);
/// - a case's event: a sealing or erasure of the case's personal data
///   accepted after the entry;
/// - a service standard: a standard of the service accepted after the entry.
pub fn superseded(state: &impl State, env: &Envelope, of_seq: u64) -> Option<Rejection> {
    let since = |what: String, seq: u64| {
        Rejection::new(
            ReasonCode::RedriveSuperseded,
            format!("{what} changed at entry {seq}, after the redriven entry {of_seq}"),
        )
    };
    match &env.target {
        Target::Application(t, a) => {
            let app = state.case(t)?.application(a)?;
            let last = app.timeline.iter().skip(1).map(|i| i.seq).max()?;
            (last > of_seq).then(|| since(format!("application {a} of case {t}"), last))
        }
        Target::Case(t) => {
            let last = match &state.case(t)?.personal_data {
                PersonalData::None => return None,
                PersonalData::Sealed { sealed_seq, .. } => *sealed_seq,
                PersonalData::Erased { erased_seq, .. } => *erased_seq,
            };
            (last > of_seq).then(|| since(format!("the personal data of case {t}"), last))
        }
        Target::Catalogue => {
            let from = state.standard(&env.agency, &env.service)?.effective_from_seq;
            (from > of_seq).then(|| since(format!("the standard of {}/{}", env.agency, env.service), from))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redrive_subject_maps_back_to_its_original() {
        let s = redrive_subject("mpp.events.dukcapil.ktp").unwrap();
        assert_eq!(s, "mpp.events.redrive.dukcapil.ktp");
        assert_eq!(original_subject(&s).as_deref(), Some("mpp.events.dukcapil.ktp"));
        assert_eq!(original_subject("mpp.events.dukcapil.ktp"), None);
    }

    #[test]
    fn only_well_formed_headers_on_a_redrive_subject_make_a_claim() {
        let s = "mpp.events.redrive.dukcapil.ktp";
        assert_eq!(claim(s, Some("7"), Some("ops-1")), Some(Redrive { of_seq: 7, operator: "ops-1".into() }));
        // An agency's own subject never carries a redrive, whatever its headers.
        assert_eq!(claim("mpp.events.dukcapil.ktp", Some("7"), Some("ops-1")), None);
        for (of, op) in [
            (None, Some("ops")),
            (Some("7"), None),
            (Some("0"), Some("ops")),
            (Some("-1"), Some("ops")),
            (Some("7"), Some("")),
            (Some("7"), Some("a b")),
        ] {
            assert_eq!(claim(s, of, op), None, "{of:?} {op:?}");
        }
        assert_eq!(claim(s, Some("7"), Some(&"o".repeat(OPERATOR_ID_BYTES_MAX + 1))), None);
    }

    fn rejected(seq: u64, subject: &str, payload: &[u8]) -> LogEntry {
        LogEntry::new(
            seq,
            seq,
            0,
            Verdict::Rejected,
            Some(ReasonCode::UnknownApplication),
            "",
            subject,
            payload.to_vec(),
            [0; 32],
        )
    }

    #[test]
    fn the_original_must_be_an_earlier_rejection_of_the_same_message() {
        let s = "mpp.events.redrive.dukcapil.ktp";
        let r = Redrive { of_seq: 3, operator: "ops".into() };
        let o = rejected(3, "mpp.events.dukcapil.ktp", b"p");
        assert_eq!(check_original(9, s, b"p", &r, Some(&o)), Ok(()));
        let code = |res: Result<(), Rejection>| res.unwrap_err().code;
        assert_eq!(code(check_original(3, s, b"p", &r, Some(&o))), ReasonCode::RedriveInvalid);
        assert_eq!(code(check_original(9, s, b"p", &r, None)), ReasonCode::RedriveInvalid);
        assert_eq!(code(check_original(9, s, b"q", &r, Some(&o))), ReasonCode::RedriveInvalid);
        let other = rejected(3, "mpp.events.bpn.ktp", b"p");
        assert_eq!(code(check_original(9, s, b"p", &r, Some(&other))), ReasonCode::RedriveInvalid);
        let mut accepted = o.clone();
        accepted.verdict = Verdict::Accepted;
        assert_eq!(code(check_original(9, s, b"p", &r, Some(&accepted))), ReasonCode::RedriveInvalid);
    }
}
