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
//!   bounded queue ([`ACCESS_QUEUE_EVENTS_MAX`]) with `try_send`. A citizen
//!   lookup ([`AccessLog::try_record`]) whose event finds the queue full is
//!   *refused* (`UNAVAILABLE`, retry later) instead of answered: a case is
//!   never shown without its access event being on its way to the store.
//!   Only [`AccessLog::record`] (for surfaces that cannot refuse) drops and
//!   counts an event when the queue is full ([`AccessLog::dropped`], logged
//!   as a warning and exported as a metric).
//! - One thread owns the writes (as the ledger writer owns the main store).
//!   After the first queued event it gathers for at most
//!   [`ACCESS_BATCH_GATHER_MS`] ms, then writes up to
//!   [`ACCESS_WRITE_BATCH_MAX`] events as **one block** (one sled insert,
//!   whatever the cases), numbered by a hub-wide access sequence. The
//!   block's events are also kept in memory per case ("pending"), which
//!   reads merge with the case's stored history. Each case's stored history
//!   is a ring of [`ACCESS_EVENTS_PER_CASE_MAX`] slots (a new event
//!   overwrites the oldest), so storage per case is bounded. Once
//!   [`ACCESS_PENDING_EVENTS_MAX`] events are pending, the writer *folds*
//!   them into the rings, [`ACCESS_FOLD_CASES_PER_BATCH_MAX`] cases per sled
//!   batch between its regular blocks (so lookups are never held up by a
//!   fold), then removes the folded blocks. Before blocks, every event cost
//!   a read and a write of its case's ring; at 20k lookups a second of
//!   cases spread over tens of thousands that was a fifth of the hub's CPU
//!   and 20 MB/s of disk writes. A ring records the sequence it was folded
//!   through, so an event is never folded, or shown, twice: not after a
//!   crash in the middle of a fold (the blocks are read back on open), not
//!   to a reader racing a fold.
//! - Durability: sled flushes every [`ACCESS_FLUSH_EVERY_MS`] ms, and the
//!   writer flushes on an orderly stop. A crash (or `kill -9`) can therefore
//!   lose the events still queued (at most [`ACCESS_QUEUE_EVENTS_MAX`]), the
//!   batch being gathered (at most [`ACCESS_BATCH_GATHER_MS`] ms) and what
//!   was written but not yet flushed (at most about
//!   [`ACCESS_FLUSH_EVERY_MS`] ms of history): a bounded, documented window
//!   of the last moments, never more. Pending events are in their blocks on
//!   disk and are read back into memory when the store is opened. No event holds personal data: the
//!   time, the kind of accessor (citizen, an officer of agency X, an
//!   auditor) and the channel; never an address, a name or the PIN.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use mpp_core::{AgencyId, TrackingNumber};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

/// Events queued for the writer thread; beyond this, citizen lookups are
/// refused (see the module docs). About 16 k events of ~40 bytes: under
/// 1 MiB, and close to a second of lookups at the hub's target rate.
pub const ACCESS_QUEUE_EVENTS_MAX: usize = 16 * 1024;

/// How long the writer gathers queued events after the first one before it
/// writes them as one batch, in milliseconds.
pub const ACCESS_BATCH_GATHER_MS: u64 = 5;

/// Events kept per case (the newest).
pub const ACCESS_EVENTS_PER_CASE_MAX: usize = 50;

/// Events shown with a case (the newest).
pub const ACCESS_EVENTS_SHOWN_MAX: usize = 20;

/// How often the access store is flushed to disk, in milliseconds.
pub const ACCESS_FLUSH_EVERY_MS: u64 = 1000;

/// Events kept pending (in their blocks on disk and in memory per case)
/// before the writer folds them into the cases' rings. About 48 bytes of
/// memory each: at most about 12 MiB, plus what arrives during a fold.
pub const ACCESS_PENDING_EVENTS_MAX: usize = 256 * 1024;

/// Cases whose rings one sled batch of a fold rewrites; the writer writes
/// its regular blocks between these batches.
pub const ACCESS_FOLD_CASES_PER_BATCH_MAX: usize = 4096;

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
    /// Another agency's system (no person), which received events of the
    /// case over the hub's cross-agency feed (`mpp_audit::case_events`).
    Agency {
        /// The following agency.
        agency: AgencyId,
    },
    /// A back-office system of the agency that opened the case, which
    /// read the citizen's sealed personal data there (`personal_data_read`,
    /// in the log, never in this store): named by its authenticated client
    /// id, never by one it chose.
    DataReader {
        /// The agency (the front office that opened the case).
        agency: AgencyId,
        /// The reading client's id.
        client_id: String,
    },
}

impl Accessor {
    /// Stable name: `citizen`, `officer` (a reader of personal data too),
    /// `auditor` or `agency`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Accessor::Citizen => "citizen",
            Accessor::Officer { .. } | Accessor::DataReader { .. } => "officer",
            Accessor::Auditor => "auditor",
            Accessor::Agency { .. } => "agency",
        }
    }

    /// The officer's or the following system's agency, if any.
    pub fn agency(&self) -> Option<&AgencyId> {
        match self {
            Accessor::Officer { agency }
            | Accessor::Agency { agency }
            | Accessor::DataReader { agency, .. } => Some(agency),
            _ => None,
        }
    }

    /// The client id of a reader of personal data.
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Accessor::DataReader { client_id, .. } => Some(client_id),
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
    /// The counter of the agency that opened the case: a PIN re-issued
    /// there (`pin_reissued`, in the log, never in this store).
    Counter,
    /// The hub's cross-agency feed (`CaseEventService.FollowCaseEvents`):
    /// another agency's system received events of the case.
    Feed,
    /// The citizen's personal data read at the agency that opened the case
    /// (`personal_data_read`, in the log, never in this store).
    PersonalData,
}

impl AccessChannel {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessChannel::Web => "web",
            AccessChannel::Api => "api",
            AccessChannel::Grpc => "grpc",
            AccessChannel::Audit => "audit",
            AccessChannel::Counter => "counter",
            AccessChannel::Feed => "feed",
            AccessChannel::PersonalData => "personal_data",
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
    /// A corrupt store could not be moved aside.
    #[error("moving the corrupt access store {from} aside to {to}: {source}")]
    SetAside {
        /// The store's directory.
        from: PathBuf,
        /// Where it was to go.
        to: PathBuf,
        /// Why it could not.
        source: std::io::Error,
    },
    /// The writer thread could not start.
    #[error("starting the access writer: {0}")]
    Thread(#[from] std::io::Error),
}

/// The access log's queue is full: the event was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the access log's queue is full")]
pub struct AccessQueueFull;

/// Holds the queue of a log made by `AccessLog::open_stalled` without
/// writing it.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct StalledWriter(#[allow(dead_code)] mpsc::Receiver<Job>);

#[derive(Debug)]
enum Job {
    Record(TrackingNumber, AccessEvent),
    /// Answered once every job queued before it is written.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// The access log: reads from any task, writes through one thread.
#[derive(Clone)]
pub struct AccessLog {
    db: sled::Db,
    pending: Arc<RwLock<Pending>>,
    tx: mpsc::Sender<Job>,
    dropped: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("dropped", &self.dropped())
            .field("refused", &self.refused())
            .finish_non_exhaustive()
    }
}

impl AccessLog {
    /// Opens (creating) the access store in `dir` and starts its writer
    /// thread, which stops when the last handle is dropped.
    pub fn open(dir: &Path) -> Result<Self, AccessError> {
        let db = mpp_edge::sled_open::open_waiting_for_lock(
            &sled::Config::new()
                .path(dir)
                .cache_capacity(ACCESS_CACHE_BYTES_MAX)
                .flush_every_ms(Some(ACCESS_FLUSH_EVERY_MS)),
        )?;
        migrate_legacy(&db)?;
        let writer = Writer::open(db.clone())?;
        let pending = writer.pending.clone();
        let (tx, rx) = mpsc::channel(ACCESS_QUEUE_EVENTS_MAX);
        std::thread::Builder::new().name("mpp-access-writer".into()).spawn(move || writer.run(rx))?;
        Ok(Self { db, pending, tx, dropped: Arc::default(), refused: Arc::default() })
    }

    /// [`AccessLog::open`], except that a store sled reports corrupt (sled
    /// 0.34 fails so, now and then, to reopen its files after a `kill -9`)
    /// is moved to `aside` and a new, empty access log is opened in `dir`.
    /// Returns where the old one went, if it was moved.
    ///
    /// Why not refuse to start, as the main store does with
    /// `--on-corrupt-store fail`: the access log is not derived from the
    /// stream and cannot be rebuilt, and a hub that will not start serves
    /// no citizen at all. Its history is a bounded window anyway (see the
    /// module docs); the old files are kept for the operator, who is told
    /// by an ERROR line and by the caller's gauge of what is kept aside.
    pub fn open_or_set_aside(dir: &Path, aside: &Path) -> Result<(Self, Option<PathBuf>), AccessError> {
        match Self::open(dir) {
            Err(AccessError::Sled(e @ sled::Error::Corruption { .. })) => {
                std::fs::rename(dir, aside).map_err(|source| AccessError::SetAside {
                    from: dir.to_owned(),
                    to: aside.to_owned(),
                    source,
                })?;
                error!(
                    error = %e,
                    kept_in = %aside.display(),
                    "ACCESS LOG RESET: the access store was corrupt; its files are kept aside and a new, empty \
                     access log is started. Citizens' access histories recorded before now are not shown"
                );
                Ok((Self::open(dir)?, Some(aside.to_owned())))
            }
            other => other.map(|log| (log, None)),
        }
    }

    /// An access log whose queue holds `queue_max` events and whose writer
    /// does not run while the returned guard lives (tests of a full queue).
    #[cfg(test)]
    pub(crate) fn open_stalled(dir: &Path, queue_max: usize) -> Result<(Self, StalledWriter), AccessError> {
        let db = sled::Config::new().path(dir).open()?;
        let (tx, rx) = mpsc::channel(queue_max);
        let pending = Arc::default();
        Ok((Self { db, pending, tx, dropped: Arc::default(), refused: Arc::default() }, StalledWriter(rx)))
    }

    /// Queues `event` for `case` without waiting, or says the queue is full
    /// (the caller must then not show the case; see the module docs).
    /// Refusals are counted ([`AccessLog::refused`]) and logged as a warning
    /// (once per 1000).
    pub fn try_record(&self, case: TrackingNumber, event: AccessEvent) -> Result<(), AccessQueueFull> {
        self.enqueue(case, event).inspect_err(|_| {
            let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
            if n % 1000 == 1 {
                warn!(refused_total = n, "Access log queue full, lookups refused");
            }
        })
    }

    fn enqueue(&self, case: TrackingNumber, event: AccessEvent) -> Result<(), AccessQueueFull> {
        self.tx.try_send(Job::Record(case, event)).map_err(|_| AccessQueueFull)
    }

    /// Queues `event` for `case` without waiting; drops and counts it when
    /// the queue is full.
    pub fn record(&self, case: TrackingNumber, event: AccessEvent) {
        if self.enqueue(case, event).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // One warning per 1000 drops is enough to see the problem.
            if n % 1000 == 1 {
                warn!(dropped_total = n, "Access log queue full, access events dropped");
            }
        }
    }

    /// Lookups refused because the queue was full, since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Access events dropped because the queue was full, since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The newest events of `case`, newest first, at most `limit`. A read
    /// error gives what was read (the history is informative, not critical).
    pub fn recent(&self, case: &TrackingNumber, limit: usize) -> Vec<AccessEvent> {
        // Pending events first, then the ring: a fold writes a ring before
        // it drops the events from pending, and the ring says which it
        // holds, so no event is missed or shown twice.
        let pending: Vec<(u64, AccessEvent)> = read(&self.pending)
            .by_case
            .get(case)
            .map(|events| events.iter().rev().take(limit).cloned().collect())
            .unwrap_or_default();
        let ring = read_ring(&self.db, case);
        let mut newest: Vec<AccessEvent> =
            pending.into_iter().filter(|(seq, _)| *seq > ring.folded_through).map(|(_, e)| e).collect();
        newest.extend(ring.events.into_iter().rev());
        // What a ring keeps, whether or not the events are folded yet.
        newest.truncate(limit.min(ACCESS_EVENTS_PER_CASE_MAX));
        newest
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
pub const ACCESS_WRITE_BATCH_MAX: usize = 4096;

/// Cases converted from the first layout per sled batch when an old access
/// store is opened.
pub const ACCESS_MIGRATION_CASES_PER_BATCH_MAX: usize = 4096;

/// The format tag of the access store (key `V`): rings, blocks of pending
/// events and the fold mark. A store without a tag may hold the first
/// layout, which [`migrate_legacy`] converts when it is opened; one tagged
/// [`FORMAT_TAG_V2`] (rings only) is this layout without pending events.
const FORMAT_TAG: &[u8] = b"mpp-access/v3";

/// The tag of the layout before blocks (rings only, version 1).
const FORMAT_TAG_V2: &[u8] = b"mpp-access/v2";

/// The key of the format tag.
const FORMAT_KEY: &[u8] = b"V";

/// Each case's history is one value under `'r' <15 digits>`: a ring of its
/// newest [`ACCESS_EVENTS_PER_CASE_MAX`] events, so reading the history is
/// one `get` and recording a batch of events for a case is one `get` and
/// one `insert`. (The first layout, one key per event under
/// `<15 digits> 's' <slot>` plus `<15 digits> 'n'`, cost a range scan per
/// read and is converted on open.)
fn ring_key(case: &TrackingNumber) -> [u8; 16] {
    let mut k = [b'r'; 16];
    k[1..].copy_from_slice(&case.digits());
    k
}

/// The version byte of an encoded [`Ring`] (version 1, without
/// `folded_through`, is still read).
const RING_VERSION: u8 = 2;

/// A case's newest events, oldest first, how many were ever recorded, and
/// the access sequence it holds every event of the case up to.
///
/// ```text
/// u8 RING_VERSION | u64 recorded | u64 folded_through | u8 count | count × event
/// event = i64 at_ms | u8 channel | u8 accessor [| u8 len | agency id]
/// ```
///
/// (integers big-endian; version 1 has no `folded_through`). channel: 0
/// web, 1 api, 2 grpc, 3 audit, 4 counter, 5 feed; accessor: 0 citizen, 1
/// officer (followed by its agency id), 2 auditor, 3 agency (followed by its
/// agency id). A ring holding a code this build does not know reads as
/// corrupt: a hub rolled back past the cross-agency feed shows no history
/// for a case a feed recorded.
#[derive(Debug, Default, PartialEq, Eq)]
struct Ring {
    recorded: u64,
    folded_through: u64,
    events: std::collections::VecDeque<AccessEvent>,
}

impl Ring {
    fn push(&mut self, e: AccessEvent) {
        if self.events.len() == ACCESS_EVENTS_PER_CASE_MAX {
            self.events.pop_front();
        }
        self.events.push_back(e);
        self.recorded = self.recorded.saturating_add(1);
    }

    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(18 + self.events.len() * 10);
        v.push(RING_VERSION);
        v.extend_from_slice(&self.recorded.to_be_bytes());
        v.extend_from_slice(&self.folded_through.to_be_bytes());
        // At most ACCESS_EVENTS_PER_CASE_MAX (50) events, so it fits a byte.
        v.push(self.events.len().min(ACCESS_EVENTS_PER_CASE_MAX) as u8);
        for e in self.events.iter().take(ACCESS_EVENTS_PER_CASE_MAX) {
            encode_event(e, &mut v);
        }
        v
    }

    /// `None` for bytes that are not an encoded ring (checked right after
    /// reading, so corruption never reaches a citizen as nonsense).
    fn decode(b: &[u8]) -> Option<Self> {
        let (&version, rest) = b.split_first()?;
        let (recorded, folded_through, rest) = match version {
            1 => (u64::from_be_bytes(rest.get(..8)?.try_into().ok()?), 0, rest.get(8..)?),
            2 => (
                u64::from_be_bytes(rest.get(..8)?.try_into().ok()?),
                u64::from_be_bytes(rest.get(8..16)?.try_into().ok()?),
                rest.get(16..)?,
            ),
            _ => return None,
        };
        let (&count, mut rest) = rest.split_first()?;
        let count = usize::from(count);
        if count > ACCESS_EVENTS_PER_CASE_MAX {
            return None;
        }
        let mut events = std::collections::VecDeque::with_capacity(count);
        for _ in 0..count {
            let (e, used) = decode_event(rest)?;
            events.push_back(e);
            rest = &rest[used..];
        }
        rest.is_empty().then_some(Self { recorded, folded_through, events })
    }
}

fn encode_event(e: &AccessEvent, v: &mut Vec<u8>) {
    v.extend_from_slice(&e.at_ms.to_be_bytes());
    v.push(match e.channel {
        AccessChannel::Web => 0,
        AccessChannel::Api => 1,
        AccessChannel::Grpc => 2,
        AccessChannel::Audit => 3,
        AccessChannel::Counter => 4,
        AccessChannel::Feed => 5,
        AccessChannel::PersonalData => 6,
    });
    match &e.accessor {
        Accessor::Citizen => v.push(0),
        Accessor::Officer { agency } | Accessor::Agency { agency } => {
            v.push(if matches!(e.accessor, Accessor::Agency { .. }) { 3 } else { 1 });
            // Agency ids are slugs of at most 32 bytes.
            let id = agency.as_str().as_bytes();
            v.push(id.len().min(usize::from(u8::MAX)) as u8);
            v.extend_from_slice(&id[..id.len().min(usize::from(u8::MAX))]);
        }
        Accessor::Auditor => v.push(2),
        Accessor::DataReader { agency, client_id } => {
            v.push(4);
            push_short(v, agency.as_str());
            push_short(v, client_id);
        }
    }
}

/// A length byte and the text (agency ids are slugs of at most 32 bytes,
/// client ids at most 64: never cut in practice, cut at 255 bytes here).
fn push_short(v: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    let n = b.len().min(usize::from(u8::MAX));
    v.push(n as u8);
    v.extend_from_slice(&b[..n]);
}

/// A text written by [`push_short`] at `at` of `b`, and where it ends.
fn short_at(b: &[u8], at: usize) -> Option<(&str, usize)> {
    let len = usize::from(*b.get(at)?);
    let s = std::str::from_utf8(b.get(at + 1..at + 1 + len)?).ok()?;
    Some((s, at + 1 + len))
}

/// An event at the start of `b` and the bytes it took.
fn decode_event(b: &[u8]) -> Option<(AccessEvent, usize)> {
    if b.len() < 10 {
        return None;
    }
    let at_ms = i64::from_be_bytes(b[..8].try_into().ok()?);
    let channel = match b[8] {
        0 => AccessChannel::Web,
        1 => AccessChannel::Api,
        2 => AccessChannel::Grpc,
        3 => AccessChannel::Audit,
        4 => AccessChannel::Counter,
        5 => AccessChannel::Feed,
        6 => AccessChannel::PersonalData,
        _ => return None,
    };
    let (accessor, used) = match b[9] {
        0 => (Accessor::Citizen, 10),
        2 => (Accessor::Auditor, 10),
        code @ (1 | 3) => {
            let len = usize::from(*b.get(10)?);
            let id = std::str::from_utf8(b.get(11..11 + len)?).ok()?;
            let agency = AgencyId::parse(id).ok()?;
            let accessor = if code == 3 { Accessor::Agency { agency } } else { Accessor::Officer { agency } };
            (accessor, 11 + len)
        }
        4 => {
            let (id, end) = short_at(b, 10)?;
            let (client_id, end) = short_at(b, end)?;
            (Accessor::DataReader { agency: AgencyId::parse(id).ok()?, client_id: client_id.to_owned() }, end)
        }
        _ => return None,
    };
    Some((AccessEvent { at_ms, accessor, channel }, used))
}

/// The key of a block: `'b'` and the access sequence of its first event.
fn block_key(first: u64) -> [u8; 9] {
    let mut k = [b'b'; 9];
    k[1..].copy_from_slice(&first.to_be_bytes());
    k
}

/// The version byte of an encoded block.
const BLOCK_VERSION: u8 = 1;

/// One write batch's events, in order; the i-th has access sequence
/// `first + i` (the key's).
///
/// ```text
/// u8 BLOCK_VERSION | u32 count | count × ( 15 tracking-number digits | event )
/// ```
fn encode_block(events: &[(TrackingNumber, AccessEvent)]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + events.len() * 25);
    v.push(BLOCK_VERSION);
    // At most ACCESS_WRITE_BATCH_MAX events.
    v.extend_from_slice(&(events.len() as u32).to_be_bytes());
    for (case, e) in events {
        v.extend_from_slice(&case.digits());
        encode_event(e, &mut v);
    }
    v
}

/// `None` for bytes that are not an encoded block.
fn decode_block(b: &[u8]) -> Option<Vec<(TrackingNumber, AccessEvent)>> {
    let (&version, rest) = b.split_first()?;
    if version != BLOCK_VERSION {
        return None;
    }
    let count = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    if count > ACCESS_WRITE_BATCH_MAX {
        return None;
    }
    let mut rest = &rest[4..];
    let mut events = Vec::with_capacity(count);
    for _ in 0..count {
        let digits = std::str::from_utf8(rest.get(..15)?).ok()?;
        let case = TrackingNumber::parse(digits).ok()?;
        let (e, used) = decode_event(&rest[15..])?;
        events.push((case, e));
        rest = &rest[15 + used..];
    }
    rest.is_empty().then_some(events)
}

/// The key of the access sequence the next fold starts after (u64).
const FOLDED_KEY: &[u8] = b"G";

/// Events written in blocks and not yet folded into their cases' rings,
/// with their access sequence, oldest first per case.
#[derive(Debug, Default)]
struct Pending {
    by_case: HashMap<TrackingNumber, Vec<(u64, AccessEvent)>>,
    events: usize,
}

fn read(pending: &RwLock<Pending>) -> std::sync::RwLockReadGuard<'_, Pending> {
    pending.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(pending: &RwLock<Pending>) -> std::sync::RwLockWriteGuard<'_, Pending> {
    pending.write().unwrap_or_else(PoisonError::into_inner)
}

fn read_ring(db: &sled::Db, case: &TrackingNumber) -> Ring {
    match db.get(ring_key(case)) {
        Ok(Some(v)) => Ring::decode(&v).unwrap_or_else(|| {
            // Read as empty (a fold then starts the case's history again
            // rather than stop recording).
            error!("An unreadable access history is read as empty");
            Ring::default()
        }),
        Ok(None) => Ring::default(),
        Err(e) => {
            error!(error = %e, "Reading the access log failed");
            Ring::default()
        }
    }
}

/// An event as the first layout stored it (JSON): with its sequence number
/// within the case, which ordered the events.
#[derive(Debug, Serialize, Deserialize)]
struct LegacyStored {
    seq: u64,
    #[serde(flatten)]
    event: AccessEvent,
}

/// Converts a store of the first layout (keys starting with a tracking
/// number's digits) into rings, a bounded number of cases per atomic batch:
/// each batch inserts the rings of whole cases and removes their old keys,
/// so a crash half-way leaves every case in exactly one layout and the next
/// open continues. Then writes the format tag.
fn migrate_legacy(db: &sled::Db) -> Result<(), sled::Error> {
    match db.get(FORMAT_KEY)?.as_deref() {
        Some(FORMAT_TAG) => return Ok(()),
        Some(FORMAT_TAG_V2) => {
            // Its rings (version 1) are read as they are.
            db.insert(FORMAT_KEY, FORMAT_TAG)?;
            db.flush()?;
            return Ok(());
        }
        _ => {}
    }
    let mut converted = 0usize;
    loop {
        let mut batch = sled::Batch::default();
        let mut cases: Vec<([u8; 15], Vec<LegacyStored>, u64)> = Vec::new();
        // Old keys start with an ASCII digit; new ones with a letter.
        let legacy: std::ops::Range<&[u8]> = b"0".as_slice()..b":".as_slice();
        for item in db.range(legacy) {
            let (k, v) = item?;
            if k.len() < 16 {
                batch.remove(k);
                continue;
            }
            let mut digits = [0u8; 15];
            digits.copy_from_slice(&k[..15]);
            if cases.last().map(|c| c.0) != Some(digits) {
                if cases.len() == ACCESS_MIGRATION_CASES_PER_BATCH_MAX {
                    break;
                }
                cases.push((digits, Vec::new(), 0));
            }
            if let Some(case) = cases.last_mut() {
                match k[15] {
                    b's' => match serde_json::from_slice::<LegacyStored>(&v) {
                        Ok(e) => case.1.push(e),
                        Err(e) => debug!(error = %e, "Skipping an unreadable old access event"),
                    },
                    b'n' if v.len() == 8 => {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&v);
                        case.2 = u64::from_be_bytes(b);
                    }
                    _ => {}
                }
            }
            batch.remove(k);
        }
        let done = cases.is_empty();
        for (digits, mut events, next) in cases {
            events.sort_by_key(|e| e.seq);
            let mut ring = Ring::default();
            for e in events {
                ring.push(e.event);
            }
            ring.recorded = ring.recorded.max(next);
            let mut key = [b'r'; 16];
            key[1..].copy_from_slice(&digits);
            batch.insert(&key[..], ring.encode());
            converted += 1;
        }
        db.apply_batch(batch)?;
        if done {
            break;
        }
    }
    db.insert(FORMAT_KEY, FORMAT_TAG)?;
    db.flush()?;
    if converted > 0 {
        info!(cases = converted, "Access log converted to one history per case");
    }
    Ok(())
}

/// The writer thread's state: the store, the pending events (shared with
/// readers), the blocks not yet folded, and a fold in progress.
struct Writer {
    db: sled::Db,
    pending: Arc<RwLock<Pending>>,
    /// The access sequence of the next event.
    next_seq: u64,
    /// Keys of the blocks written and not yet folded, with the sequence of
    /// their last event, oldest first.
    blocks: std::collections::VecDeque<([u8; 9], u64)>,
    fold: Option<Fold>,
    /// [`ACCESS_PENDING_EVENTS_MAX`] (smaller in tests).
    fold_at: usize,
    /// [`ACCESS_FOLD_CASES_PER_BATCH_MAX`] (smaller in tests).
    fold_cases_per_batch: usize,
}

/// A fold in progress: every pending event up to `through` goes into its
/// case's ring, a batch of cases at a time.
struct Fold {
    through: u64,
    cases: Vec<TrackingNumber>,
    done: usize,
}

impl Writer {
    /// Reads back the blocks not yet folded (a crash or stop left them).
    fn open(db: sled::Db) -> Result<Self, sled::Error> {
        let mut next_seq = match db.get(FOLDED_KEY)? {
            Some(v) if v.len() == 8 => u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8])) + 1,
            _ => 1,
        };
        let mut pending = Pending::default();
        let mut blocks = std::collections::VecDeque::new();
        for item in db.scan_prefix(b"b") {
            let (k, v) = item?;
            let (Ok(key), Some(events)) = (<[u8; 9]>::try_from(k.as_ref()), decode_block(&v)) else {
                error!("Skipping an unreadable block of access events");
                continue;
            };
            let first = u64::from_be_bytes(key[1..].try_into().unwrap_or([0; 8]));
            let mut last = first;
            for (i, (case, e)) in events.into_iter().enumerate() {
                last = first + i as u64;
                pending.by_case.entry(case).or_default().push((last, e));
                pending.events += 1;
            }
            next_seq = next_seq.max(last + 1);
            blocks.push_back((key, last));
        }
        if pending.events > 0 {
            info!(events = pending.events, blocks = blocks.len(), "Access events pending a fold read back");
        }
        Ok(Self {
            db,
            pending: Arc::new(RwLock::new(pending)),
            next_seq,
            blocks,
            fold: None,
            fold_at: ACCESS_PENDING_EVENTS_MAX,
            fold_cases_per_batch: ACCESS_FOLD_CASES_PER_BATCH_MAX,
        })
    }

    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let gather = std::time::Duration::from_millis(ACCESS_BATCH_GATHER_MS);
        loop {
            // While a fold is in progress, do not wait for events: fold on.
            let first = if self.fold.is_some() {
                match rx.try_recv() {
                    Ok(j) => Some(j),
                    Err(mpsc::error::TryRecvError::Empty) => None,
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            } else {
                match rx.blocking_recv() {
                    Some(j) => Some(j),
                    None => break,
                }
            };
            if let Some(first) = first {
                // Take what is queued (bounded); if that is not a full
                // batch, give the queue one short gathering pause (a pacing
                // delay of this thread, not a synchronisation: nothing waits
                // on it but barriers), then write everything as one block.
                let mut jobs = vec![first];
                let mut drain = |jobs: &mut Vec<Job>| {
                    while jobs.len() < ACCESS_WRITE_BATCH_MAX {
                        match rx.try_recv() {
                            Ok(j) => jobs.push(j),
                            Err(_) => break,
                        }
                    }
                };
                drain(&mut jobs);
                if jobs.len() < ACCESS_WRITE_BATCH_MAX && self.fold.is_none() {
                    std::thread::sleep(gather);
                    drain(&mut jobs);
                }
                self.write(jobs);
            }
            self.fold_step();
        }
        if let Err(e) = self.db.flush() {
            error!(error = %e, "Flushing the access log failed");
        }
        debug!("Access writer stopped");
    }

    /// Writes the events of `jobs` as one block, then answers the barriers.
    fn write(&mut self, jobs: Vec<Job>) {
        let mut events = Vec::with_capacity(jobs.len());
        let mut barriers = Vec::new();
        for job in jobs {
            match job {
                Job::Record(case, event) => events.push((case, event)),
                Job::Barrier(done) => barriers.push(done),
            }
        }
        if !events.is_empty() {
            let first = self.next_seq;
            let key = block_key(first);
            match self.db.insert(key, encode_block(&events)) {
                Ok(_) => {
                    let n = events.len() as u64;
                    self.next_seq += n;
                    self.blocks.push_back((key, first + n - 1));
                    let mut pending = write(&self.pending);
                    pending.events += events.len();
                    for (i, (case, e)) in events.into_iter().enumerate() {
                        pending.by_case.entry(case).or_default().push((first + i as u64, e));
                    }
                }
                Err(e) => error!(error = %e, "Writing the access log failed"),
            }
        }
        for done in barriers {
            let _ = done.send(());
        }
    }

    /// Starts a fold when enough events are pending, or folds the next
    /// batch of cases of the one in progress; the last batch also removes
    /// the folded blocks and drops the folded events from memory.
    fn fold_step(&mut self) {
        if self.fold.is_none() {
            let pending = read(&self.pending);
            if pending.events < self.fold_at {
                return;
            }
            let cases = pending.by_case.keys().copied().collect();
            drop(pending);
            self.fold = Some(Fold { through: self.next_seq - 1, cases, done: 0 });
        }
        let Some(fold) = &self.fold else { return };
        let through = fold.through;
        let chunk = &fold.cases[fold.done..(fold.done + self.fold_cases_per_batch).min(fold.cases.len())];
        let chunk_len = chunk.len();
        let last = fold.done + chunk_len == fold.cases.len();
        let mut batch = sled::Batch::default();
        {
            let pending = read(&self.pending);
            for case in chunk {
                let mut ring = read_ring(&self.db, case);
                let events = pending.by_case.get(case).map(Vec::as_slice).unwrap_or_default();
                for (seq, e) in events {
                    // Not twice (a fold cut short by a crash), not beyond
                    // this fold (events that came in during it).
                    if *seq > ring.folded_through && *seq <= through {
                        ring.push(e.clone());
                    }
                }
                ring.folded_through = ring.folded_through.max(through);
                batch.insert(&ring_key(case)[..], ring.encode());
            }
        }
        if last {
            for (key, end) in &self.blocks {
                if *end > through {
                    break;
                }
                batch.remove(&key[..]);
            }
            batch.insert(FOLDED_KEY, &through.to_be_bytes()[..]);
        }
        if let Err(e) = self.db.apply_batch(batch) {
            // Tried again from this batch of cases on the next round.
            error!(error = %e, "Folding access events failed");
            return;
        }
        let Some(fold) = &mut self.fold else { return };
        fold.done += chunk_len;
        if last {
            while self.blocks.front().is_some_and(|(_, end)| *end <= through) {
                self.blocks.pop_front();
            }
            let mut pending = write(&self.pending);
            let Pending { by_case, events } = &mut *pending;
            by_case.retain(|_, list| {
                let before = list.len();
                list.retain(|(seq, _)| *seq > through);
                *events -= before - list.len();
                !list.is_empty()
            });
            self.fold = None;
        }
    }
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

    #[test]
    fn every_accessor_and_channel_round_trips_through_the_encoding() {
        let agency = AgencyId::parse("mpp-1771").unwrap();
        let accessors = [
            Accessor::Citizen,
            Accessor::Auditor,
            Accessor::Officer { agency: agency.clone() },
            Accessor::Agency { agency: AgencyId::parse("pln").unwrap() },
            Accessor::DataReader { agency, client_id: "loket-1771.backoffice_2".into() },
        ];
        let channels = [
            AccessChannel::Web,
            AccessChannel::Api,
            AccessChannel::Grpc,
            AccessChannel::Audit,
            AccessChannel::Counter,
            AccessChannel::Feed,
            AccessChannel::PersonalData,
        ];
        for accessor in &accessors {
            for channel in channels {
                let e = AccessEvent { at_ms: 1_796_634_000_123, accessor: accessor.clone(), channel };
                let mut v = Vec::new();
                encode_event(&e, &mut v);
                assert_eq!(decode_event(&v), Some((e.clone(), v.len())));
                // Cut short anywhere: no event, no panic.
                for cut in 0..v.len() {
                    assert_eq!(decode_event(&v[..cut]), None, "{e:?} cut at {cut}");
                }
            }
        }
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

    #[test]
    fn a_ring_round_trips_and_refuses_damaged_bytes() {
        let mut ring = Ring::default();
        ring.push(citizen(1));
        ring.push(AccessEvent {
            at_ms: -5,
            accessor: Accessor::Officer { agency: AgencyId::parse("bpn").unwrap() },
            channel: AccessChannel::Api,
        });
        ring.push(AccessEvent {
            at_ms: i64::MAX,
            accessor: Accessor::Auditor,
            channel: AccessChannel::Audit,
        });
        let bytes = ring.encode();
        assert_eq!(Ring::decode(&bytes), Some(ring));
        for cut in 0..bytes.len() {
            assert_eq!(Ring::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Ring::decode(&longer), None, "trailing bytes");
        let mut bad_channel = bytes;
        // Header (18 bytes), then the first event's at_ms (8), then its channel.
        bad_channel[18 + 8] = 9;
        assert_eq!(Ring::decode(&bad_channel), None);
    }

    #[tokio::test]
    async fn a_store_of_the_first_layout_is_converted_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let officer = AccessEvent {
            at_ms: 7,
            accessor: Accessor::Officer { agency: AgencyId::parse("dukcapil").unwrap() },
            channel: AccessChannel::Grpc,
        };
        {
            // The first layout: a ring of slots per case and its next sequence.
            let db = sled::open(dir.path()).unwrap();
            let put = |case: &TrackingNumber, seq: u64, e: &AccessEvent| {
                let mut k = case.digits().to_vec();
                k.push(b's');
                k.push((seq % ACCESS_EVENTS_PER_CASE_MAX as u64) as u8);
                let v = serde_json::to_vec(&LegacyStored { seq, event: e.clone() }).unwrap();
                db.insert(k, v).unwrap();
            };
            // Case 1 wrapped around its ring: seq 50 overwrote slot 0.
            put(&tn(1), 50, &officer);
            for seq in 1..ACCESS_EVENTS_PER_CASE_MAX as u64 {
                put(&tn(1), seq, &citizen(seq as i64));
            }
            let mut n = tn(1).digits().to_vec();
            n.push(b'n');
            db.insert(n, &51u64.to_be_bytes()[..]).unwrap();
            put(&tn(2), 0, &citizen(99));
            db.flush().unwrap();
        }
        let log = AccessLog::open(dir.path()).unwrap();
        let first = log.recent(&tn(1), 3);
        assert_eq!(first, vec![officer, citizen(49), citizen(48)]);
        assert_eq!(log.recent(&tn(1), 1000).len(), ACCESS_EVENTS_PER_CASE_MAX);
        assert_eq!(log.recent(&tn(2), 10), vec![citizen(99)]);
        let legacy_left = log.db.range(b"0".as_slice()..b":".as_slice()).count();
        assert_eq!(legacy_left, 0, "old keys are removed");
        // New events go on top of the converted history.
        log.record(tn(2), citizen(100));
        log.settle().await;
        assert_eq!(log.recent(&tn(2), 10), vec![citizen(100), citizen(99)]);
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

    #[tokio::test]
    async fn a_corrupt_store_is_set_aside_and_a_new_log_started() {
        let data = tempfile::tempdir().unwrap();
        let (dir, aside) = (data.path().join("access"), data.path().join("aside"));
        {
            let db = sled::open(&dir).unwrap();
            db.insert(b"x", b"y".as_slice()).unwrap();
            db.flush().unwrap();
        }
        // What sled 0.34 answers `Read corrupted data` to: a conf that no
        // longer parses.
        std::fs::write(dir.join("conf"), b"this line has no separator\n\0\0\0\0").unwrap();
        assert!(matches!(AccessLog::open(&dir), Err(AccessError::Sled(sled::Error::Corruption { .. }))));

        let (log, moved) = AccessLog::open_or_set_aside(&dir, &aside).unwrap();
        assert_eq!(moved.as_deref(), Some(aside.as_path()));
        assert!(aside.join("db").is_file() && aside.join("conf").is_file(), "the old files are kept");
        log.record(tn(1), citizen(1));
        log.settle().await;
        assert_eq!(log.recent(&tn(1), 10), vec![citizen(1)], "the new log records");
    }

    #[test]
    fn a_healthy_store_is_opened_where_it_is() {
        let data = tempfile::tempdir().unwrap();
        let (dir, aside) = (data.path().join("access"), data.path().join("aside"));
        let (_log, moved) = AccessLog::open_or_set_aside(&dir, &aside).unwrap();
        assert_eq!(moved, None);
        assert!(!aside.exists());
    }

    /// An access log whose writer the test drives by hand (no thread).
    fn log_over(writer: &Writer) -> AccessLog {
        let (tx, _rx) = mpsc::channel(1);
        AccessLog {
            db: writer.db.clone(),
            pending: writer.pending.clone(),
            tx,
            dropped: Arc::default(),
            refused: Arc::default(),
        }
    }

    fn record_all(writer: &mut Writer, events: &[(u64, i64)]) {
        let jobs = events.iter().map(|&(case, at)| Job::Record(tn(case), citizen(at))).collect();
        writer.write(jobs);
    }

    fn times(log: &AccessLog, case: u64) -> Vec<i64> {
        log.recent(&tn(case), 1000).iter().map(|e| e.at_ms).collect()
    }

    /// Each case of `expected` (its times, newest first) shows its newest
    /// [`ACCESS_EVENTS_PER_CASE_MAX`].
    fn assert_histories(log: &AccessLog, expected: &HashMap<u64, Vec<i64>>, when: &str) {
        for (case, want) in expected {
            let want = &want[..want.len().min(ACCESS_EVENTS_PER_CASE_MAX)];
            assert_eq!(times(log, *case), want, "case {case} {when}");
        }
    }

    #[test]
    fn a_ring_of_the_layout_before_blocks_is_read() {
        let mut v1 = vec![1u8];
        v1.extend_from_slice(&7u64.to_be_bytes());
        v1.push(1);
        encode_event(&citizen(42), &mut v1);
        let ring = Ring::decode(&v1).expect("a version-1 ring");
        assert_eq!((ring.recorded, ring.folded_through), (7, 0));
        assert_eq!(ring.events, vec![citizen(42)]);
    }

    #[test]
    fn a_block_round_trips_and_refuses_damaged_bytes() {
        let events = vec![
            (tn(1), citizen(1)),
            (
                tn(2),
                AccessEvent {
                    at_ms: 2,
                    accessor: Accessor::Officer { agency: AgencyId::parse("bpn").unwrap() },
                    channel: AccessChannel::Grpc,
                },
            ),
        ];
        let bytes = encode_block(&events);
        assert_eq!(decode_block(&bytes), Some(events));
        for cut in 0..bytes.len() {
            assert_eq!(decode_block(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut bad_digit = bytes;
        bad_digit[5 + 14] ^= 1;
        assert_eq!(decode_block(&bad_digit), None, "a tracking number with a wrong check digit");
    }

    #[test]
    fn pending_events_fold_into_rings_and_their_blocks_go() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let mut writer = Writer::open(db.clone()).unwrap();
        writer.fold_at = 8;
        writer.fold_cases_per_batch = 2;
        let log = log_over(&writer);
        // Case 3 gets more events than its ring holds.
        let mut expected: HashMap<u64, Vec<i64>> = HashMap::new();
        let mut at = 0;
        for round in 0..30 {
            let mut batch = Vec::new();
            for case in [1, 2, 3, 3, 3] {
                if case == 1 && round % 3 != 0 {
                    continue;
                }
                at += 1;
                batch.push((case, at));
                expected.entry(case).or_default().insert(0, at);
            }
            record_all(&mut writer, &batch);
            writer.fold_step();
            assert_histories(&log, &expected, &format!("after round {round}"));
        }
        let folded = Ring::decode(&db.get(ring_key(&tn(3))).unwrap().unwrap()).unwrap();
        assert!(folded.folded_through > 0, "rings were written");
        assert!(read(&writer.pending).events < 8 + 5, "pending is bounded by the fold");
        assert!(db.scan_prefix(b"b").count() <= 3, "folded blocks are removed");
        // Reopened (pending blocks read back): the same histories.
        while writer.fold.is_some() {
            writer.fold_step();
        }
        drop(writer);
        let reopened = Writer::open(db.clone()).unwrap();
        assert!(reopened.next_seq > at as u64, "sequences go on after the last one");
        assert_histories(&log_over(&reopened), &expected, "after a reopen");
    }

    #[test]
    fn a_fold_cut_short_shows_and_folds_each_event_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let mut writer = Writer::open(db.clone()).unwrap();
        writer.fold_at = 6;
        writer.fold_cases_per_batch = 1;
        record_all(&mut writer, &[(1, 1), (2, 2), (3, 3), (1, 4), (2, 5), (3, 6)]);
        // The first batch of the fold: case 1's ring is written while its
        // events are still pending (and their blocks still there).
        writer.fold_step();
        assert!(writer.fold.is_some());
        let log = log_over(&writer);
        assert_eq!(times(&log, 1), vec![4, 1], "a reader racing the fold");
        assert_eq!(times(&log, 2), vec![5, 2]);
        // A crash here: the process ends mid-fold.
        drop(writer);
        let mut writer = Writer::open(db.clone()).unwrap();
        writer.fold_at = 6;
        writer.fold_cases_per_batch = 1;
        let log = log_over(&writer);
        for (case, want) in [(1, vec![4, 1]), (2, vec![5, 2]), (3, vec![6, 3])] {
            assert_eq!(times(&log, case), want, "case {case} after the crash");
        }
        record_all(&mut writer, &[(1, 7)]);
        while {
            writer.fold_step();
            writer.fold.is_some()
        } {}
        assert_eq!(read(&writer.pending).events, 0, "everything folded");
        assert_eq!(times(&log, 1), vec![7, 4, 1], "folded once, not twice");
        assert_eq!(times(&log, 3), vec![6, 3]);
        assert_eq!(db.scan_prefix(b"b").count(), 0);
    }
}
