//! Section 6: the auditor's offline passes over a hub's store, timed:
//! [`mpp_ledger::ledger::verify_chain`] (chain, Merkle tree, checkpoints) and
//! [`mpp_ledger::ledger::rebuild`] (replaying every entry from scratch).

use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use mpp_store::SledStore;

/// What the audit passes measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AuditRun {
    /// Entries in the log.
    pub(crate) entries: u64,
    /// Verified entries per second.
    pub(crate) verify_per_s: f64,
    /// Rebuilt entries per second.
    pub(crate) rebuild_per_s: f64,
}

/// Opens the store in `data_dir` (no hub may hold it) and runs both passes.
pub(crate) fn run(data_dir: &Path) -> Result<AuditRun> {
    let store = SledStore::open(data_dir).context("opening the hub's store")?;
    let t = Instant::now();
    let entries = mpp_ledger::ledger::verify_chain(&store).map_err(|e| anyhow!("verify: {e}"))?;
    let verify = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (_, head) = mpp_ledger::ledger::rebuild_with(&store, &crate::signing::trust())
        .map_err(|e| anyhow!("rebuild: {e}"))?;
    let rebuild = t.elapsed().as_secs_f64();
    if head.last_seq != entries {
        return Err(anyhow!("rebuild ended at {} but verify counted {entries}", head.last_seq));
    }
    Ok(AuditRun { entries, verify_per_s: entries as f64 / verify, rebuild_per_s: entries as f64 / rebuild })
}
