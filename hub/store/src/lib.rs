//! MPP Hub's store: the hash-chained log, the event-id dedupe index, the case
//! and service-standard projections and the ingest checkpoint, behind one
//! [`Store`] trait with two implementations: [`SledStore`] (sled 0.34.7 on
//! disk) and [`MemStore`] (an in-memory twin for tests).
//!
//! Architecture invariant: this crate knows nothing about NATS, tonic or
//! prost, and decides nothing. It stores what the ledger hands it and checks
//! only the shape of that data (dense sequences, an unbroken chain, a head
//! that matches the last entry), right before writing and right after reading.
//!
//! # Guarantees
//!
//! * A [`CommitBatch`] is 100% visible or 0% visible, also after crash
//!   recovery: every key of a commit (log entries, dedupe index, cases,
//!   standards and the head with the checkpoint) is written by one sled
//!   `apply_batch` on one tree, then `flush()` (sled's synchronous flush) runs
//!   before [`Store::commit`] returns. The checkpoint therefore never runs
//!   ahead of, or behind, the entries and projections it describes.
//! * A lost tail (sled 0.34's flush uses `sync_file_range`, not a full fsync)
//!   rolls back the log, the projections and the checkpoint together; ingest
//!   then re-reads the lost messages from the stream.
//! * Readers on other threads (clones of the handle) never see a half
//!   commit of one key, and see every key of a commit once [`Store::commit`]
//!   has returned. A reader that reads several keys (say the head, then a
//!   case) may see them from different commits; every single value is
//!   consistent.
//! * Corrupt bytes give [`StoreError::Corrupt`], never a panic.
//!
//! # Layout
//!
//! Everything lives in sled's default tree, one byte of prefix per kind of
//! key, because `apply_batch` is atomic only within one tree (sled's
//! multi-tree transactions are much slower). All integers are big-endian, so
//! keys sort by sequence.
//!
//! ```text
//! key                                  value
//! "V"                                  format tag, FORMAT_TAG ("mpp-store/v1")
//! "H"                                  head: last_seq u64 | last_stream_seq u64 | head_hash [32]
//! "L" first_seq:u64                    block: every entry of one commit (see below)
//! "E" event_id:[16]                    seq:u64 of the entry that accepted the event
//! "C" tracking_number:15 ASCII digits  bincode 1.3 (varint) of mpp_core::Case
//! "S" agency 0x00 service              bincode 1.3 (varint) of mpp_core::ServiceStandard
//! ```
//!
//! The log costs one key per block, not per entry: a commit's entries are
//! packed into blocks of at most [`BLOCK_BYTES_MAX`] bytes (a single larger
//! entry gets a block of its own) and [`BLOCK_ENTRIES_MAX`] entries. A block is
//!
//! ```text
//! u8        block format = 1
//! u32       count, >= 1
//! u32*count end offset of each record, relative to the first record
//! ...       records: LogEntry::encode of each entry, in seq order
//! ```
//!
//! [`Store::entry`] finds the block with the greatest `first_seq <= seq`
//! (one reverse range lookup) and decodes only the record it needs. Blocks are
//! contiguous: the block after `L first` is `L first+count`.
//!
//! The case → entries index is the case itself: every [`mpp_core::Case`]
//! holds the sequence of each accepted event in its timeline. The only key
//! written per event is the dedupe index entry, so a commit of `n` events
//! writes about `n + cases touched + 2` keys.
//!
//! sled 0.34 cannot open a directory read-only, and holds a lock on it: an
//! auditor who wants to inspect a live hub's store copies the directory (or
//! uses the hub's audit API) and opens the copy.

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

mod kv;
mod layout;
mod mem;
mod sled_store;

use mpp_core::ids::{AgencyId, EventId, ServiceId, TrackingNumber};
use mpp_core::log::{Hash32, GENESIS_HASH};
use mpp_core::{Case, LogEntry, ServiceStandard};

pub use layout::{BLOCK_BYTES_MAX, BLOCK_ENTRIES_MAX, FORMAT_TAG};
pub use mem::MemStore;
pub use sled_store::{SledStore, CACHE_CAPACITY_BYTES, OPEN_LOCK_WAIT_MS_MAX};

/// The head of the log and the ingest checkpoint, written in the same batch as
/// the entries it describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Head {
    /// Sequence of the last entry (0 when the log is empty).
    pub last_seq: u64,
    /// The checkpoint: the JetStream stream sequence of the last message
    /// recorded (0 when nothing was consumed).
    pub last_stream_seq: u64,
    /// Hash of the last entry ([`GENESIS_HASH`] when the log is empty).
    pub head_hash: Hash32,
}

impl Head {
    /// The head of an empty store.
    pub const GENESIS: Head = Head { last_seq: 0, last_stream_seq: 0, head_hash: GENESIS_HASH };
}

impl Default for Head {
    fn default() -> Self {
        Head::GENESIS
    }
}

/// Everything one ingest batch changes, written atomically by
/// [`Store::commit`].
///
/// Preconditions, checked by `commit` (a violation is
/// [`StoreError::InvalidBatch`] and writes nothing): `entries` are dense from
/// the current `last_seq + 1` and chained to the current head hash; their
/// stream sequences strictly increase above the current checkpoint; `head`
/// describes the last entry; every event id points at an entry of this batch.
/// A batch without entries must leave the head unchanged and carry nothing
/// else; committing it is a no-op.
///
/// Uniqueness of event ids is the caller's responsibility (the ledger looks
/// every id up before accepting it); the store does not read the index again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitBatch {
    /// New log entries, in sequence order.
    pub entries: Vec<LogEntry>,
    /// New full values of every case the batch created or changed.
    pub cases: Vec<Case>,
    /// Service standards published in the batch (each replaces the one in force).
    pub standards: Vec<ServiceStandard>,
    /// Event ids accepted in the batch, with the sequence of the accepting entry.
    pub event_ids: Vec<(EventId, u64)>,
    /// The head after the batch.
    pub head: Head,
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled reported an IO error, corruption of its own files, or a bug.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// Stored bytes do not decode, or contradict each other.
    #[error("corrupt store: {what} (key {key})")]
    Corrupt {
        /// What is wrong.
        what: String,
        /// The key, printable (prefix letter and hex).
        key: String,
    },
    /// The directory holds a store of another format version.
    #[error("store format {found:?} is not {expected:?}; this build cannot open it")]
    UnsupportedFormat {
        /// The format tag found (lossy UTF-8), or a description of why none.
        found: String,
        /// [`FORMAT_TAG`].
        expected: &'static str,
    },
    /// The caller handed [`Store::commit`] a batch that violates its
    /// preconditions; nothing was written.
    #[error("invalid commit batch: {0}")]
    InvalidBatch(String),
}

/// Log entries in sequence order, or the first error.
pub type Entries<'a> = Box<dyn Iterator<Item = Result<LogEntry, StoreError>> + Send + 'a>;

/// Every stored case, in tracking-number order, or the first error.
pub type Cases<'a> = Box<dyn Iterator<Item = Result<Case, StoreError>> + Send + 'a>;

/// The hub's store. Handles are cheap to clone and share one underlying
/// store, so lookups run on other threads while one writer commits. There
/// must be one writer ([`Store::commit`] serialises callers, but the ledger's
/// read-decide-commit cycle assumes nobody else commits in between).
pub trait Store: Clone + Send + Sync + std::fmt::Debug + 'static {
    /// The head and checkpoint ([`Head::GENESIS`] when empty).
    fn head(&self) -> Result<Head, StoreError>;

    /// The case, if opened.
    fn case(&self, id: &TrackingNumber) -> Result<Option<Case>, StoreError>;

    /// Every case, in tracking-number order. Cases committed while the
    /// iterator runs may or may not appear.
    fn cases(&self) -> Cases<'_>;

    /// The standard in force for a service, if any was published.
    fn standard(&self, agency: &AgencyId, service: &ServiceId)
        -> Result<Option<ServiceStandard>, StoreError>;

    /// Every standard in force, ordered by agency then service.
    fn standards(&self) -> Result<Vec<ServiceStandard>, StoreError>;

    /// The sequence of the entry that accepted this event id (the permanent
    /// dedupe index).
    fn event_seq(&self, id: &EventId) -> Result<Option<u64>, StoreError>;

    /// The entry with this sequence, `None` past the head.
    fn entry(&self, seq: u64) -> Result<Option<LogEntry>, StoreError>;

    /// Entries from `from_seq` (at least 1) up to the head as it was when the
    /// iterator was created, in sequence order. Each entry's hash is checked
    /// against its bytes; the chain between entries is not (that is the
    /// auditor's and the ledger's job).
    fn entries(&self, from_seq: u64) -> Entries<'_>;

    /// Writes the batch as one atomic write, then flushes it durably. See
    /// [`CommitBatch`] for the preconditions.
    fn commit(&self, batch: CommitBatch) -> Result<(), StoreError>;
}
