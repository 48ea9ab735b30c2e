//! "Who looked at my case": every successful lookup of a case is recorded as
//! an access event the citizen can see (the case page's "Riwayat akses", the
//! JSON `access_events`, gRPC `CaseView.access_events`).
//!
//! # Why not in the event log
//!
//! The hash-chained log records what agencies *did*; a read is not an act of
//! an agency, and recording every lookup there would make the audited log
//! grow with traffic rather than with work. Access events also differ per
//! hub replica (each records the lookups it served), while the log must be
//! byte-identical on every replica. So they live in a small store of their
//! own, `<data-dir>/access/` (a separate sled database), never in the
//! deterministic store.
//!
//! # Bounds and guarantees
//!
//! - The read path never waits for the access log: it hands the event to a
//!   bounded queue ([`ACCESS_QUEUE_EVENTS_MAX`]) with `try_send`. When the
//!   queue is full the event is dropped and counted
//!   ([`AccessLog::dropped`], logged as a warning): a burst of lookups can
//!   cost some history, never lookup latency.
//! - One thread owns the writes (as the ledger writer owns the main store),
//!   taking up to [`ACCESS_WRITE_BATCH_MAX`] queued events per sled batch.
//!   Each case is a ring of [`ACCESS_EVENTS_PER_CASE_MAX`] slots: a new
//!   event overwrites the oldest, so storage per case is bounded and a write
//!   costs one read and two inserts.
//! - Durability is best effort: sled flushes every
//!   [`ACCESS_FLUSH_EVERY_MS`] ms, so a crash can lose the last moments of
//!   history. No event holds personal data: the time, the kind of accessor
//!   (citizen, an officer of agency X, an auditor) and the channel; never an
//!   address, a name or the PIN.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use mpp_core::{AgencyId, TrackingNumber};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{debug, error, warn};

/// Events queued for the writer thread; beyond this, events are dropped.
pub const ACCESS_QUEUE_EVENTS_MAX: usize = 1024;

/// Events kept per case (the newest).
pub const ACCESS_EVENTS_PER_CASE_MAX: usize = 50;

/// Events shown with a case (the newest).
pub const ACCESS_EVENTS_SHOWN_MAX: usize = 20;

/// How often the access store is flushed to disk, in milliseconds.
pub const ACCESS_FLUSH_EVERY_MS: u64 = 1000;

/// Cache of the access store's sled database, in bytes.
pub const ACCESS_CACHE_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// Who looked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Accessor {
    /// The citizen (a lookup with the case's PIN).
    Citizen,
    /// An officer of an agency.
    Officer {
        /// The officer's agency.
        agency: AgencyId,
    },
    /// An auditor (Inspektorat, Ombudsman, BPK) through the audit API.
    Auditor,
}

impl Accessor {
    /// Stable name: `citizen`, `officer` or `auditor`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Accessor::Citizen => "citizen",
            Accessor::Officer { .. } => "officer",
            Accessor::Auditor => "auditor",
        }
    }

    /// The officer's agency, if any.
    pub fn agency(&self) -> Option<&AgencyId> {
        match self {
            Accessor::Officer { agency } => Some(agency),
            _ => None,
        }
    }
}

/// Through what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessChannel {
    /// The tracking page.
    Web,
    /// The JSON API.
    Api,
    /// gRPC (GetCase, WatchCase).
    Grpc,
    /// The audit API.
    Audit,
}

impl AccessChannel {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessChannel::Web => "web",
            AccessChannel::Api => "api",
            AccessChannel::Grpc => "grpc",
            AccessChannel::Audit => "audit",
        }
    }
}

/// One successful lookup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEvent {
    /// Hub clock, Unix ms.
    pub at_ms: i64,
    /// Who.
    pub accessor: Accessor,
    /// Through what.
    pub channel: AccessChannel,
}

/// Errors opening the access store.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// sled failed.
    #[error("access store: {0}")]
    Sled(#[from] sled::Error),
    /// The writer thread could not start.
    #[error("starting the access writer: {0}")]
    Thread(#[from] std::io::Error),
}

enum Job {
    Record(TrackingNumber, AccessEvent),
    /// Answered once every job queued before it is written.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// The access log: reads from any task, writes through one thread.
#[derive(Clone)]
pub struct AccessLog {
    db: sled::Db,
    tx: mpsc::Sender<Job>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog").field("dropped", &self.dropped()).finish_non_exhaustive()
    }
}

impl AccessLog {
    /// Opens (creating) the access store in `dir` and starts its writer
    /// thread, which stops when the last handle is dropped.
    pub fn open(dir: &Path) -> Result<Self, AccessError> {
        let db = mpp_store::open_waiting_for_lock(
            &sled::Config::new()
                .path(dir)
                .cache_capacity(ACCESS_CACHE_BYTES_MAX)
                .flush_every_ms(Some(ACCESS_FLUSH_EVERY_MS)),
        )?;
        let (tx, rx) = mpsc::channel(ACCESS_QUEUE_EVENTS_MAX);
        let writer_db = db.clone();
        std::thread::Builder::new()
            .name("mpp-access-writer".into())
            .spawn(move || write_loop(writer_db, rx))?;
        Ok(Self { db, tx, dropped: Arc::default() })
    }

    /// Queues `event` for `case` without waiting; drops and counts it when
    /// the queue is full.
    pub fn record(&self, case: TrackingNumber, event: AccessEvent) {
        if self.tx.try_send(Job::Record(case, event)).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // One warning per 1000 drops is enough to see the problem.
            if n % 1000 == 1 {
                warn!(dropped_total = n, "Access log queue full, access events dropped");
            }
        }
    }

    /// Access events dropped because the queue was full, since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The newest events of `case`, newest first, at most `limit`. A read
    /// error gives what was read (the history is informative, not critical).
    pub fn recent(&self, case: &TrackingNumber, limit: usize) -> Vec<AccessEvent> {
        let mut stored: Vec<Stored> = Vec::with_capacity(ACCESS_EVENTS_PER_CASE_MAX);
        // At most ACCESS_EVENTS_PER_CASE_MAX slots exist per case.
        for item in self.db.scan_prefix(slot_prefix(case)).take(ACCESS_EVENTS_PER_CASE_MAX) {
            match item {
                Ok((_, v)) => match serde_json::from_slice::<Stored>(&v) {
                    Ok(e) => stored.push(e),
                    Err(e) => debug!(error = %e, "Skipping an unreadable access event"),
                },
                Err(e) => {
                    error!(error = %e, "Reading the access log failed");
                    break;
                }
            }
        }
        stored.sort_by_key(|s| std::cmp::Reverse(s.seq));
        stored.into_iter().take(limit).map(|s| s.event).collect()
    }

    /// Waits until every event queued before this call is written (for
    /// tests and orderly shutdown; lookups never wait on it).
    pub async fn settle(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Job::Barrier(tx)).await.is_ok() {
            // The writer answers in order; a gone writer has nothing pending.
            let _ = rx.await;
        }
    }
}

/// Most jobs the writer takes from the queue for one sled batch.
pub const ACCESS_WRITE_BATCH_MAX: usize = 256;

/// An event as stored: with its sequence number within the case, which
/// orders the events and picks the slot it overwrites.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    seq: u64,
    #[serde(flatten)]
    event: AccessEvent,
}

/// Each case is a ring of ACCESS_EVENTS_PER_CASE_MAX slots,
/// `<15 digits> 's' <slot>`, plus its next sequence number under
/// `<15 digits> 'n'`: a new event overwrites the oldest, so a case never
/// holds more than the bound and a write costs one read and two inserts.
fn slot_prefix(case: &TrackingNumber) -> [u8; 16] {
    let mut k = [b's'; 16];
    k[..15].copy_from_slice(&case.digits());
    k
}

fn slot_key(case: &TrackingNumber, seq: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..16].copy_from_slice(&slot_prefix(case));
    // The modulo keeps the slot below ACCESS_EVENTS_PER_CASE_MAX (50).
    k[16] = (seq % ACCESS_EVENTS_PER_CASE_MAX as u64) as u8;
    k
}

fn next_key(case: &TrackingNumber) -> [u8; 16] {
    let mut k = [b'n'; 16];
    k[..15].copy_from_slice(&case.digits());
    k
}

fn read_next(db: &sled::Db, case: &TrackingNumber) -> u64 {
    match db.get(next_key(case)) {
        Ok(Some(v)) if v.len() == 8 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&v);
            u64::from_be_bytes(b)
        }
        Ok(_) => 0,
        Err(e) => {
            error!(error = %e, "Reading the access log failed");
            0
        }
    }
}

fn write_loop(db: sled::Db, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.blocking_recv() {
        // Take what is queued (bounded), write it as one sled batch.
        let mut jobs = vec![first];
        while jobs.len() < ACCESS_WRITE_BATCH_MAX {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut batch = sled::Batch::default();
        let mut next: HashMap<TrackingNumber, u64> = HashMap::new();
        let mut barriers = Vec::new();
        for job in jobs {
            match job {
                Job::Record(case, event) => {
                    let seq = *next.entry(case).or_insert_with(|| read_next(&db, &case));
                    match serde_json::to_vec(&Stored { seq, event }) {
                        Ok(v) => batch.insert(&slot_key(&case, seq)[..], v),
                        Err(e) => {
                            error!(error = %e, "Encoding an access event failed");
                            continue;
                        }
                    }
                    next.insert(case, seq + 1);
                }
                Job::Barrier(done) => barriers.push(done),
            }
        }
        for (case, seq) in &next {
            batch.insert(&next_key(case)[..], &seq.to_be_bytes()[..]);
        }
        if let Err(e) = db.apply_batch(batch) {
            error!(error = %e, "Writing the access log failed");
        }
        for done in barriers {
            let _ = done.send(());
        }
    }
    if let Err(e) = db.flush() {
        error!(error = %e, "Flushing the access log failed");
    }
    debug!("Access writer stopped");
}

#[cfg(test)]
mod tests {
    use mpp_core::RegionCode;

    use super::*;

    fn tn(serial: u64) -> TrackingNumber {
        TrackingNumber::new(RegionCode::parse("1771").unwrap(), serial).unwrap()
    }

    fn citizen(at_ms: i64) -> AccessEvent {
        AccessEvent { at_ms, accessor: Accessor::Citizen, channel: AccessChannel::Web }
    }

    #[tokio::test]
    async fn events_are_kept_per_case_newest_first_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let log = AccessLog::open(dir.path()).unwrap();
        let officer = AccessEvent {
            at_ms: 5,
            accessor: Accessor::Officer { agency: AgencyId::parse("dukcapil").unwrap() },
            channel: AccessChannel::Grpc,
        };
        log.record(tn(1), citizen(1));
        log.record(tn(2), citizen(2));
        log.record(tn(1), officer.clone());
        for i in 0..(ACCESS_EVENTS_PER_CASE_MAX as i64 + 10) {
            log.record(tn(3), citizen(100 + i));
        }
        log.settle().await;
        assert_eq!(log.recent(&tn(1), 10), vec![officer, citizen(1)]);
        assert_eq!(log.recent(&tn(2), 10), vec![citizen(2)]);
        assert!(log.recent(&tn(4), 10).is_empty());
        let third = log.recent(&tn(3), 1000);
        assert_eq!(third.len(), ACCESS_EVENTS_PER_CASE_MAX, "older events are trimmed");
        assert_eq!(third[0].at_ms, 100 + ACCESS_EVENTS_PER_CASE_MAX as i64 + 9);
        assert_eq!(log.recent(&tn(3), 3).len(), 3);
        assert_eq!(log.dropped(), 0);
    }

    #[tokio::test]
    async fn events_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = AccessLog::open(dir.path()).unwrap();
            log.record(tn(1), citizen(1));
            log.settle().await;
            log.db.flush().unwrap();
        }
        // The writer thread holds the database until its channel closes.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let log = loop {
            match AccessLog::open(dir.path()) {
                Ok(l) => break l,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::task::yield_now().await;
                }
                Err(e) => panic!("reopen: {e}"),
            }
        };
        assert_eq!(log.recent(&tn(1), 10), vec![citizen(1)]);
    }
}
