//! Checks over a hub's log as a list of [`mpp_core::LogEntry`]: density,
//! chain links, verdict counts, event ids. Pure functions, so the tests can
//! state exactly what they expect; reading the entries from a stopped hub's
//! store is in [`crate::store`].

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use mpp_core::log::GENESIS_HASH;
use mpp_core::{LogEntry, ReasonCode, Verdict};
use prost::Message;

/// Verdict counts of a log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSummary {
    /// Entries in total.
    pub entries: usize,
    /// Accepted entries.
    pub accepted: usize,
    /// Rejected entries by reason code.
    pub rejected: BTreeMap<String, usize>,
    /// Duplicate entries.
    pub duplicates: usize,
}

impl LogSummary {
    /// Rejected entries in total.
    pub fn rejected_total(&self) -> usize {
        self.rejected.values().sum()
    }
}

/// Counts verdicts.
pub fn summarize(entries: &[LogEntry]) -> LogSummary {
    let mut s = LogSummary { entries: entries.len(), ..LogSummary::default() };
    for e in entries {
        match e.verdict {
            Verdict::Accepted => s.accepted += 1,
            Verdict::Duplicate => s.duplicates += 1,
            Verdict::Rejected => {
                *s.rejected.entry(e.reason.map_or("<none>", ReasonCode::as_str).to_owned()).or_default() += 1
            }
        }
    }
    s
}

/// Hub sequences are dense from 1 and, because every stream message becomes
/// exactly one entry, each entry's stream sequence equals its hub sequence.
pub fn check_dense(entries: &[LogEntry]) -> Result<()> {
    for (i, e) in entries.iter().enumerate() {
        let want = i as u64 + 1;
        if e.seq != want {
            bail!("log entry #{i} has seq {}, expected {want} (gap or reorder)", e.seq);
        }
        if e.stream_seq != want {
            bail!(
                "log entry seq {} has stream_seq {}: a stream message was skipped or applied twice",
                e.seq,
                e.stream_seq
            );
        }
    }
    Ok(())
}

/// Each entry's `prev_hash` is the previous entry's `hash` (zeros first).
/// Entry hashes themselves are checked when the store decodes them.
pub fn check_links(entries: &[LogEntry]) -> Result<()> {
    let mut prev = GENESIS_HASH;
    for e in entries {
        if e.prev_hash != prev {
            bail!("log entry seq {} does not link to the previous entry's hash", e.seq);
        }
        prev = e.hash;
    }
    Ok(())
}

/// The event id inside an entry's payload, if the payload is an envelope.
pub fn event_id_of(entry: &LogEntry) -> Option<String> {
    mpp_proto::v1::Envelope::decode(entry.payload.as_slice())
        .ok()
        .map(|env| env.event_id)
        .filter(|id| !id.is_empty())
}

/// Hub sequences of the accepted entries, by event id.
pub fn accepted_by_event_id(entries: &[LogEntry]) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.verdict == Verdict::Accepted) {
        if let Some(id) = event_id_of(e) {
            out.entry(id).or_default().push(e.seq);
        }
    }
    out
}

/// The entry whose payload carries `event_id`, if exactly one does.
pub fn entries_with_event_id<'a>(entries: &'a [LogEntry], event_id: &str) -> Vec<&'a LogEntry> {
    entries.iter().filter(|e| event_id_of(e).as_deref() == Some(event_id)).collect()
}

/// The snake_case name of an envelope body, e.g. `application_filed`.
pub fn body_name(env: &mpp_proto::v1::Envelope) -> &'static str {
    use mpp_proto::v1::envelope::Body;
    match &env.body {
        None => "<none>",
        Some(Body::CaseOpened(_)) => "case_opened",
        Some(Body::ApplicationFiled(_)) => "application_filed",
        Some(Body::DocumentsRequested(_)) => "documents_requested",
        Some(Body::DocumentsReceived(_)) => "documents_received",
        Some(Body::FeeAssessed(_)) => "fee_assessed",
        Some(Body::PaymentReceived(_)) => "payment_received",
        Some(Body::AppointmentScheduled(_)) => "appointment_scheduled",
        Some(Body::ReviewStarted(_)) => "review_started",
        Some(Body::Issued(_)) => "issued",
        Some(Body::Rejected(_)) => "rejected",
        Some(Body::Withdrawn(_)) => "withdrawn",
        Some(Body::Collected(_)) => "collected",
        Some(Body::ServiceStandardPublished(_)) => "service_standard_published",
        Some(Body::PersonalDataSealed(_)) => "personal_data_sealed",
        Some(Body::PersonalDataErased(_)) => "personal_data_erased",
        Some(Body::PinReissued(_)) => "pin_reissued",
        Some(Body::PersonalDataRead(_)) => "personal_data_read",
    }
}

/// One line per log entry whose envelope names case `tracking_number`:
/// sequence, verdict, reason and event, for failure messages.
pub fn describe_case_entries(entries: &[LogEntry], tracking_number: &str) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| {
            let env = mpp_proto::v1::Envelope::decode(e.payload.as_slice()).ok()?;
            (env.case_id == tracking_number).then(|| {
                format!(
                    "seq {} stream_seq {} {} {} {:?} | {} app {:?} event {}",
                    e.seq,
                    e.stream_seq,
                    e.verdict.as_str(),
                    e.reason.map_or("-", ReasonCode::as_str),
                    e.detail,
                    body_name(&env),
                    env.application_id,
                    env.event_id
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(specs: &[(u64, Verdict)]) -> Vec<LogEntry> {
        let mut prev = GENESIS_HASH;
        let mut out = Vec::new();
        for (i, (stream_seq, verdict)) in specs.iter().enumerate() {
            let reason = (*verdict != Verdict::Accepted).then_some(ReasonCode::IllegalTransition);
            let e = LogEntry::new(
                i as u64 + 1,
                *stream_seq,
                0,
                *verdict,
                reason,
                "",
                "mpp.events.a.b",
                vec![],
                prev,
            );
            prev = e.hash;
            out.push(e);
        }
        out
    }

    #[test]
    fn a_dense_chained_log_passes_and_counts_verdicts() {
        let log = chain(&[(1, Verdict::Accepted), (2, Verdict::Rejected), (3, Verdict::Duplicate)]);
        check_dense(&log).unwrap();
        check_links(&log).unwrap();
        let s = summarize(&log);
        assert_eq!((s.entries, s.accepted, s.rejected_total(), s.duplicates), (3, 1, 1, 1));
        assert_eq!(s.rejected.get("ILLEGAL_TRANSITION"), Some(&1));
    }

    #[test]
    fn gaps_skipped_stream_messages_and_broken_links_fail() {
        let mut log = chain(&[(1, Verdict::Accepted), (2, Verdict::Accepted), (3, Verdict::Accepted)]);
        assert!(check_dense(&chain(&[(1, Verdict::Accepted), (3, Verdict::Accepted)])).is_err());
        let gap = [log[0].clone(), log[2].clone()];
        assert!(check_dense(&gap).is_err());
        assert!(check_links(&gap).is_err());
        log[1].prev_hash[0] ^= 1;
        assert!(check_links(&log).is_err());
    }

    #[test]
    fn event_ids_are_read_from_envelope_payloads() {
        let env = mpp_proto::v1::Envelope { event_id: "e-1".to_owned(), ..Default::default() };
        let e = LogEntry::new(1, 1, 0, Verdict::Accepted, None, "", "s", env.encode_to_vec(), GENESIS_HASH);
        let junk = LogEntry::new(2, 2, 0, Verdict::Accepted, None, "", "s", vec![0x0F, 1], e.hash);
        assert_eq!(event_id_of(&e).as_deref(), Some("e-1"));
        assert_eq!(event_id_of(&junk), None);
        assert_eq!(accepted_by_event_id(&[e, junk]).get("e-1"), Some(&vec![1]));
    }
}
