//! The fault scenarios' checker: every event id an agency service (or
//! JetStream, for raw publishers) answered "accepted" must be in the hub's
//! log exactly once, after the run, on the stopped hub's data directory.
//!
//! It proves, in order:
//! 1. the store audits clean ([`audit_stopped_hub`]): log entries dense
//!    from 1 with stream sequence = hub sequence (no stream gap, no message
//!    applied twice), each linked to the previous hash, `verify_chain`
//!    agreeing, the projection rebuilt from the log equal to the live one;
//! 2. one log entry per stream message (the stream's last sequence);
//! 3. the auditor's own tools agree: `mpp-hub audit verify` and
//!    `mpp-hub audit rebuild` (rebuild = live projection) exit 0;
//! 4. each accepted event id is an ACCEPTED entry exactly once: none lost,
//!    none applied twice; and no entry was rejected.
//!
//! It prints `run, accepted, found once, lost, duplicated` for the scenario.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use mpp_core::Verdict;
use mpp_tests::store::audit_stopped_hub;
use mpp_tests::{bins, check};

/// What a scenario hands the checker.
#[derive(Debug)]
pub(crate) struct Run<'a> {
    /// The scenario's name, printed with its counts.
    pub(crate) scenario: &'a str,
    /// The seed that replays it (`MPP_FAULT_SEED`).
    pub(crate) seed: u64,
    /// Fault cycles run (or events, for the slow consumer).
    pub(crate) run: u64,
    /// Every event id answered "accepted".
    pub(crate) accepted: &'a [String],
    /// The stream's last sequence once the hub caught up.
    pub(crate) stream_last_seq: u64,
    /// Accepted log entries nobody got an answer for that are tolerated
    /// (calls in flight when an agency service was killed).
    pub(crate) unanswered_max: usize,
}

/// The counts of one scenario.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Fault cycles (or events) run.
    pub(crate) run: u64,
    /// Event ids answered "accepted".
    pub(crate) accepted: usize,
    /// Of those, found in the log as an ACCEPTED entry exactly once.
    pub(crate) found_once: usize,
    /// Of those, not in the log.
    pub(crate) lost: usize,
    /// Of those, ACCEPTED more than once.
    pub(crate) duplicated: usize,
    /// DUPLICATE verdict entries (a resend the hub recognised; legitimate).
    pub(crate) duplicate_entries: usize,
    /// ACCEPTED entries whose event id nobody was answered for.
    pub(crate) unanswered_accepted: usize,
    /// Log entries in total.
    pub(crate) log_entries: usize,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "run {}, accepted {}, found once {}, lost {}, duplicated {} (DUPLICATE entries {}, accepted but \
             unanswered {}, log entries {})",
            self.run,
            self.accepted,
            self.found_once,
            self.lost,
            self.duplicated,
            self.duplicate_entries,
            self.unanswered_accepted,
            self.log_entries
        )
    }
}

/// Counts `accepted` against the accepted entries of a log (pure, so the
/// checker's own test can show it catches a loss and a double apply).
pub(crate) fn count(entries: &[mpp_core::LogEntry], accepted: &[String], run: u64) -> Counts {
    let by_id = check::accepted_by_event_id(entries);
    let answered: BTreeSet<&String> = accepted.iter().collect();
    let mut c = Counts { run, accepted: accepted.len(), log_entries: entries.len(), ..Counts::default() };
    for id in accepted {
        match by_id.get(id).map(Vec::len) {
            None => c.lost += 1,
            Some(1) => c.found_once += 1,
            Some(_) => c.duplicated += 1,
        }
    }
    c.duplicate_entries = entries.iter().filter(|e| e.verdict == Verdict::Duplicate).count();
    c.unanswered_accepted =
        by_id.keys().filter(|id| !answered.contains(id)).count().saturating_sub(service_standards(entries));
    c
}

/// Accepted service-standard entries (the services publish them at start).
fn service_standards(entries: &[mpp_core::LogEntry]) -> usize {
    use prost::Message;
    entries
        .iter()
        .filter(|e| e.verdict == Verdict::Accepted)
        .filter(|e| {
            mpp_proto::v1::Envelope::decode(e.payload.as_slice()).is_ok_and(|env| {
                matches!(env.body, Some(mpp_proto::v1::envelope::Body::ServiceStandardPublished(_)))
            })
        })
        .count()
}

/// Runs `mpp-hub audit <args…> --data-dir <dir>`; a non-zero exit is an error.
fn audit_cli(sub: &str, data_dir: &Path) -> Result<String> {
    let exe = bins::workspace_bin("mpp-hub")?;
    let out = std::process::Command::new(&exe)
        .args(["audit", sub, "--data-dir"])
        .arg(data_dir)
        .output()
        .with_context(|| format!("cannot run mpp-hub audit {sub}"))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    ensure!(out.status.success(), "`mpp-hub audit {sub}` failed ({}):\n{text}", out.status);
    Ok(text)
}

/// Checks a stopped hub's data directory against what was accepted, prints
/// the counts and fails on any loss, double apply, rejection, gap, chain
/// break or projection difference.
pub(crate) fn check_stopped_hub(data_dir: &Path, run: &Run<'_>) -> Result<Counts> {
    let seed = run.seed;
    let audit = audit_stopped_hub(data_dir).with_context(|| format!("seed {seed}: store audit"))?;
    let counts = count(&audit.entries, run.accepted, run.run);
    println!("[{}] seed {seed}: {counts}; log {:?}", run.scenario, audit.summary);
    ensure!(
        audit.entries.len() as u64 == run.stream_last_seq,
        "seed {seed}: {} log entries for {} stream messages",
        audit.entries.len(),
        run.stream_last_seq
    );
    let summary = audit.summary.clone();
    drop(audit);
    audit_cli("verify", data_dir).with_context(|| format!("seed {seed}"))?;
    audit_cli("rebuild", data_dir).with_context(|| format!("seed {seed}"))?;
    if counts.lost > 0 || counts.duplicated > 0 {
        bail!("[{}] seed {seed}: {counts}", run.scenario);
    }
    ensure!(summary.rejected_total() == 0, "seed {seed}: rejected entries {:?}", summary.rejected);
    ensure!(
        counts.unanswered_accepted <= run.unanswered_max,
        "seed {seed}: {} accepted events nobody was answered for (at most {} calls were cut off)",
        counts.unanswered_accepted,
        run.unanswered_max
    );
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mpp_core::log::GENESIS_HASH;
    use mpp_core::LogEntry;
    use prost::Message;

    fn entry(seq: u64, id: &str, verdict: Verdict, prev: [u8; 32]) -> LogEntry {
        let env = mpp_proto::v1::Envelope { event_id: id.to_owned(), ..Default::default() };
        let reason = (verdict != Verdict::Accepted).then_some(mpp_core::ReasonCode::DuplicateEventId);
        LogEntry::new(seq, seq, 0, verdict, reason, "", "mpp.events.a.b", env.encode_to_vec(), prev)
    }

    #[test]
    fn the_checker_counts_lost_duplicated_and_unanswered_events() {
        let a = entry(1, "a", Verdict::Accepted, GENESIS_HASH);
        let b = entry(2, "b", Verdict::Accepted, a.hash);
        let b2 = entry(3, "b", Verdict::Accepted, b.hash);
        let d = entry(4, "a", Verdict::Duplicate, b2.hash);
        let x = entry(5, "x", Verdict::Accepted, d.hash);
        let log = [a, b, b2, d, x];
        let accepted = ["a".to_owned(), "b".to_owned(), "lost".to_owned()];
        let c = count(&log, &accepted, 7);
        assert_eq!(
            c,
            Counts {
                run: 7,
                accepted: 3,
                found_once: 1,
                lost: 1,
                duplicated: 1,
                duplicate_entries: 1,
                unanswered_accepted: 1,
                log_entries: 5
            }
        );
    }
}
