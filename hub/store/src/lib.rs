//! MPP Hub's store: the hash-chained log and the Merkle tree over it, the
//! event-id dedupe index, the case and service-standard projections, the
//! ingest checkpoint and the hub's signed checkpoints, behind one
//! [`Store`] trait with one implementation, [`KvStore`], over two ordered
//! key-value backends ([`Kv`]): [`SledStore`] (sled 0.34.7 on disk) and
//! [`MemStore`] (an in-memory twin for tests, with the same keys and
//! values).
//!
//! Architecture invariant: this crate knows nothing about NATS, tonic or
//! prost, and decides nothing. It stores what the ledger hands it and checks
//! only the shape of that data (dense sequences, an unbroken chain, a head
//! that matches the last entry), right before writing and right after reading.
//!
//! # Guarantees
//!
//! * A [`CommitBatch`] is 100% visible or 0% visible, also after crash
//!   recovery: every key of a commit (log entries, Merkle subtree hashes,
//!   dedupe index, cases, standards and the head with the checkpoint and the
//!   Merkle frontier) is written by one sled
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
//! * The Merkle frontier in the head always describes exactly the entries
//!   `1..=last_seq` (the store recomputes it from the batch's entries and
//!   refuses a batch whose frontier or subtree hashes differ), and every
//!   complete aligned subtree of level [`STORED_SUBTREE_LEVEL_MIN`] and above
//!   within the head has its hash stored. Stores implement
//!   [`mpp_core::merkle::NodeSource`], so inclusion and consistency proofs
//!   cost O(log n + 2^STORED_SUBTREE_LEVEL_MIN) reads whatever the log's length.
//! * A signed checkpoint is written by its own small commit
//!   ([`Store::put_checkpoint`]), after the entries it describes; the store
//!   checks its tree size, root, head hash, stream sequence and entry time
//!   against the log before writing it (not its signature: the store knows
//!   no keys).
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
//! "V"                                  format tag, FORMAT_TAG ("mpp-store/v4")
//! "H"                                  head: last_seq u64 | last_stream_seq u64 | head_hash [32]
//!                                        | Merkle frontier (MerkleFrontier::to_bytes, size = last_seq)
//! "L" first_seq:u64                    block: every entry of one commit (see below)
//! "M" level:u8 index:u64               [32] hash of the complete aligned subtree of 2^level leaves
//!                                        from leaf index << level (level >= STORED_SUBTREE_LEVEL_MIN)
//! "K" tree_size:u64                    SignedCheckpoint::encode (signed bytes | 64-byte signature)
//! "E" bucket:u64 part:u32              event-id index part: records (event_id [16] | seq u64 of the
//!                                        entry that accepted it), sorted by id, at most
//!                                        EVENT_PART_IDS_MAX; bucket = the id's first 48 bits (its
//!                                        UUIDv7 ms timestamp) >> EVENT_BUCKET_MS_SHIFT
//! "C" tracking_number:15 ASCII digits  case value: bincode 1.3 (varint) of the timeline shape
//!                                        Vec<(u32 items, u64 seq of the last item)>, one per
//!                                        application, then of mpp_core::Case with every
//!                                        application's timeline left empty, then timeline
//!                                        chunk 0 (as a "T" chunk, possibly empty), then, only
//!                                        when the case has any, bincode of its PIN re-issues
//!                                        Vec<PinReissue> (absent otherwise: values written before
//!                                        re-issues existed read unchanged, format still v4)
//! "T" tracking_number:15 chunk:u32      timeline chunk >= 1: bincode of Vec<(u32 application index,
//!                                        TimelineItem)>, items chunk*32 .. chunk*32+31 of the
//!                                        case's items in log order (TIMELINE_CHUNK_ITEMS = 32;
//!                                        every chunk but the last is full)
//! "S" agency 0x00 service              bincode 1.3 (varint) of mpp_core::ServiceStandard
//! "D"                                  projection commitment: last_seq u64 | projected_through u64
//!                                        | LtHash16 state [2048] over every "C", "T", "S", "R", "E"
//!                                        pair (see `commitment`), written with every commit and
//!                                        projection write; absent in stores written before it
//!                                        existed (computed when first needed, a commit or a
//!                                        checkpoint, and stored by the next write; format still v4)
//! "R"                                  bincode 1.3 (varint) of mpp_core::registry::Registry; absent
//!                                        until the first registry statement is accepted (an absent
//!                                        key reads as the empty registry, so stores written before
//!                                        the registry existed open unchanged, format still v4; a
//!                                        registry stored before its `holds` field reads with none)
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
//! The Merkle tree is RFC 9162's over the entries' chain hashes (leaf `i` is
//! `entry_leaf_hash` of entry `seq = i + 1`; see [`mpp_core::merkle`]). Its
//! frontier (at most 64 hashes) rides in the head, so the head and the tree
//! can never disagree; subtree hashes cost about `2 / 2^STORED_SUBTREE_LEVEL_MIN`
//! keys of 32 bytes per entry (1 + 1/2 + 1/4 + ... per 64 entries).
//!
//! The case → entries index is the case itself: every [`mpp_core::Case`]
//! holds the sequence of each accepted event in its timeline. A case's
//! timelines grow by one item per accepted event for its life, so they are
//! not in the case value (which a commit rewrites whenever the case changes):
//! the items of all its applications, in log order, fill fixed chunks of
//! [`TIMELINE_CHUNK_ITEMS`]; a commit rewrites the last, partly filled chunk
//! and adds new ones. The case value keeps the small, current part of the
//! case, the timeline shape (each timeline's length and last sequence) and
//! chunk 0, so a case of up to 32 events is one key. [`Store::case`] reads
//! the value, then each further chunk by one `get`,
//! and reassembles the full [`mpp_core::Case`]; it checks that the chunks
//! rebuild exactly the recorded shape. A commit checks that every timeline
//! extends the stored one with items of this batch only.
//!
//! No key is written per event. In sled 0.34 a new key costs several times
//! what rewriting an existing one does (node splits and page-table growth;
//! `hub/store/examples/sled_keys.rs` measures it), so the indexes are laid
//! out to grow existing keys: the event-id index is bucketed by the ids'
//! UUIDv7 timestamps (an ingest batch's ids fall in a few 16 ms buckets,
//! whose last part the commit rewrites), timelines by chunk. A commit of `n`
//! events touching `c` cases writes about `c + n / 1000 + 3` keys, of which
//! new ones only for new cases, new buckets and full chunks.
//!
//! sled 0.34 cannot open a directory read-only, and holds a lock on it: an
//! auditor who wants to inspect a live hub's store copies the directory (or
//! uses the hub's audit API) and opens the copy.

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

pub mod commitment;
mod kv;
mod layout;
mod mem;
mod sled_store;

use mpp_core::checkpoint::SignedCheckpoint;
use mpp_core::ids::{AgencyId, EventId, ServiceId, TrackingNumber};
use mpp_core::log::{Hash32, GENESIS_HASH};
use mpp_core::merkle::{entry_leaf_hash, MerkleFrontier, NodeSource, Subtree, TreeFull};
use mpp_core::registry::Registry;
use mpp_core::{Case, LogEntry, ServiceStandard, StandardTerms};

pub use kv::{Kv, KvStore, PairVisitor, PENDING_CASES_MAX, PROJECTION_EVERY_COMMITS};
pub use layout::{
    BLOCK_BYTES_MAX, BLOCK_ENTRIES_MAX, EVENT_BUCKET_MS_SHIFT, EVENT_PART_IDS_MAX, FORMAT_TAG,
    TIMELINE_CHUNK_ITEMS,
};
pub use mem::{MemKv, MemStore};
pub use sled_store::{SledKv, SledStore, CACHE_CAPACITY_BYTES};

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

/// Lowest level of complete aligned subtree whose hash the store persists
/// (subtrees of 64 leaves and up). The core's recommendation
/// (`mpp_core::merkle::STORED_SUBTREE_LEVEL_MIN`, 1024 leaves) minimises
/// keys; this store spends a few more (about 1/32 of a key per entry) so that
/// a proof decodes at most about 2 × 64 entries from the log blocks instead
/// of 2 × 1024, which matters because every leaf read decodes and re-hashes
/// a whole entry.
pub const STORED_SUBTREE_LEVEL_MIN: u32 = 6;

/// Appends the leaf of the entry with chain hash `entry_hash` to `frontier`
/// and pushes onto `subtrees` every complete aligned subtree it completes at
/// level [`STORED_SUBTREE_LEVEL_MIN`] or above: exactly what a
/// [`CommitBatch`] must carry for that entry.
pub fn push_entry(
    frontier: &mut MerkleFrontier,
    entry_hash: &Hash32,
    subtrees: &mut Vec<Subtree>,
) -> Result<(), TreeFull> {
    frontier.push_with(entry_leaf_hash(entry_hash), |s| {
        if s.level >= STORED_SUBTREE_LEVEL_MIN {
            subtrees.push(s);
        }
    })
}

/// Everything one ingest batch changes, written atomically by
/// [`Store::commit`].
///
/// Preconditions, checked by `commit` (a violation is
/// [`StoreError::InvalidBatch`] and writes nothing): `entries` are dense from
/// the current `last_seq + 1` and chained to the current head hash; their
/// stream sequences strictly increase above the current checkpoint; `head`
/// describes the last entry; every event id points at an entry of this batch;
/// `frontier` and `subtrees` are what [`push_entry`] gives for the entries,
/// in order, starting from the stored frontier. A batch without entries must
/// leave the head and frontier unchanged and carry nothing else; committing
/// it is a no-op.
///
/// A case's timelines only grow: every application of the stored case is
/// still there, in the same place, and its timeline starts with the stored
/// items (`commit` checks the count and the last item's sequence, and refuses
/// anything else with [`StoreError::InvalidBatch`]). The core only ever
/// appends applications and timeline items, so the ledger's cases do.
///
/// Uniqueness of event ids is the caller's responsibility (the ledger looks
/// every id up before accepting it); the store does not read the index again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitBatch {
    /// New log entries, in sequence order.
    pub entries: Vec<LogEntry>,
    /// New full values of every case the batch created or changed
    /// (timelines extend the stored ones, see above; a case listed twice
    /// counts with its last value).
    pub cases: Vec<Case>,
    /// Service standards published in the batch (each replaces the one in force).
    pub standards: Vec<ServiceStandard>,
    /// The participant registry after the batch, when the batch changed it
    /// (written with the projection, like standards).
    pub registry: Option<Registry>,
    /// Event ids accepted in the batch, with the sequence of the accepting entry.
    pub event_ids: Vec<(EventId, u64)>,
    /// The head after the batch.
    pub head: Head,
    /// The Merkle frontier after the batch (its size is `head.last_seq`).
    pub frontier: MerkleFrontier,
    /// The complete aligned subtrees of level [`STORED_SUBTREE_LEVEL_MIN`] and
    /// above that the batch's entries complete, in the order [`push_entry`]
    /// reports them.
    pub subtrees: Vec<Subtree>,
}

/// A service (agency, service id) and the terms of its standard in force.
pub type ServiceTerms = ((AgencyId, ServiceId), StandardTerms);

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
    /// The caller handed [`Store::commit`] a batch (or
    /// [`Store::put_checkpoint`] a checkpoint) that violates its
    /// preconditions; nothing was written.
    #[error("invalid commit batch: {0}")]
    InvalidBatch(String),
    /// A leaf of the Merkle tree past the head was asked for.
    #[error("entry {seq} is beyond the head of the log (seq {last_seq})")]
    BeyondHead {
        /// The sequence asked for.
        seq: u64,
        /// The head's sequence.
        last_seq: u64,
    },
}

/// Log entries in sequence order, or the first error.
pub type Entries<'a> = Box<dyn Iterator<Item = Result<LogEntry, StoreError>> + Send + 'a>;

/// Every stored case, in tracking-number order, or the first error.
pub type Cases<'a> = Box<dyn Iterator<Item = Result<Case, StoreError>> + Send + 'a>;

/// Signed checkpoints in tree-size order, or the first error.
pub type Checkpoints<'a> = Box<dyn Iterator<Item = Result<SignedCheckpoint, StoreError>> + Send + 'a>;

/// The hub's store. Handles are cheap to clone and share one underlying
/// store, so lookups run on other threads while one writer commits. There
/// must be one writer ([`Store::commit`] serialises callers, but the ledger's
/// read-decide-commit cycle assumes nobody else commits in between).
///
/// As a [`NodeSource`], a store serves the Merkle tree over its entries:
/// leaf hashes decoded from the log blocks (each entry's hash checked), and
/// the stored subtree hashes; a stored subtree that should exist but does not
/// is [`StoreError::Corrupt`], a leaf past the head [`StoreError::BeyondHead`].
pub trait Store: NodeSource<Error = StoreError> + Clone + Send + Sync + std::fmt::Debug + 'static {
    /// The head and checkpoint ([`Head::GENESIS`] when empty).
    fn head(&self) -> Result<Head, StoreError>;

    /// The head and the Merkle frontier of entries `1..=last_seq`, read
    /// together from one key (so they always agree).
    fn head_and_frontier(&self) -> Result<(Head, MerkleFrontier), StoreError>;

    /// The stored hash of the complete aligned subtree `(level, index)`, if
    /// stored (levels below [`STORED_SUBTREE_LEVEL_MIN`] never are).
    fn subtree(&self, level: u32, index: u64) -> Result<Option<Hash32>, StoreError>;

    /// The signed checkpoint of exactly this tree size, if one was stored.
    fn checkpoint(&self, tree_size: u64) -> Result<Option<SignedCheckpoint>, StoreError>;

    /// The stored checkpoint of the largest tree size, if any.
    fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, StoreError>;

    /// The stored checkpoints with `from_size <= tree_size <= to_size`, in
    /// tree-size order. Checkpoints stored while the iterator runs may or may
    /// not appear.
    fn checkpoints(&self, from_size: u64, to_size: u64) -> Checkpoints<'_>;

    /// Stores a signed checkpoint, durably, by its own atomic write. Checks
    /// (without the signature) that it describes this log: its tree size is
    /// at most the head's, and its root, head hash, stream sequence and entry
    /// time are those of the first `tree_size` entries. Storing the same
    /// checkpoint again is a no-op; another one of the same size is refused
    /// ([`StoreError::InvalidBatch`]), unless it is the same log re-signed
    /// with a projection commitment written further (format version 2,
    /// `projected_through` greater, or the stored one has none): that one
    /// replaces it (a stopping hub signs its written projection so).
    fn put_checkpoint(&self, checkpoint: &SignedCheckpoint) -> Result<(), StoreError>;

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

    /// The terms of every standard in force, ordered by agency then
    /// service: what the ledger keeps in memory. The default decodes every
    /// standard at once; stores override it to hold one at a time.
    fn standard_terms(&self) -> Result<Vec<ServiceTerms>, StoreError> {
        Ok(self
            .standards()?
            .into_iter()
            .map(|s| ((s.agency.clone(), s.service.clone()), s.terms()))
            .collect())
    }

    /// The participant registry as of [`Store::projected_through`] (the
    /// empty registry when no statement was ever accepted).
    fn registry(&self) -> Result<Registry, StoreError>;

    /// The sequence of the entry that accepted this event id (the permanent
    /// dedupe index).
    fn event_seq(&self, id: &EventId) -> Result<Option<u64>, StoreError>;

    /// [`Store::event_seq`] of each id, in order; ids of one index bucket
    /// cost one read together.
    fn event_seqs(&self, ids: &[EventId]) -> Result<Vec<Option<u64>>, StoreError>;

    /// The entry with this sequence, `None` past the head.
    fn entry(&self, seq: u64) -> Result<Option<LogEntry>, StoreError>;

    /// Entries from `from_seq` (at least 1) up to the head as it was when the
    /// iterator was created, in sequence order. Each entry's hash is checked
    /// against its bytes; the chain between entries is not (that is the
    /// auditor's and the ledger's job).
    fn entries(&self, from_seq: u64) -> Entries<'_>;

    /// Whether several threads may each read [`Store::entries`] from their
    /// own start at once and gain by it (an auditor's fold decodes the log
    /// ahead of its sequential walk that way). `false`, the default, for a
    /// store whose reads cost more when split (a windowed store reads a
    /// whole window per call): it is then read through one iterator.
    fn parallel_entries(&self) -> bool {
        false
    }

    /// Writes the batch as one atomic write, then flushes it durably. See
    /// [`CommitBatch`] for the preconditions.
    fn commit(&self, batch: CommitBatch) -> Result<(), StoreError> {
        self.commit_returning_cases(batch).map(drop)
    }

    /// [`Store::commit`], handing the batch's cases back unchanged once
    /// committed, shared with the values the store holds back (so the
    /// single writer can keep them without a copy; it copies one only to
    /// change it while the store still holds it).
    fn commit_returning_cases(&self, batch: CommitBatch) -> Result<Vec<std::sync::Arc<Case>>, StoreError>;

    /// The last sequence the written case values and standards describe.
    /// Commits hold case values back in memory and write them every few
    /// commits (write-behind, see [`PROJECTION_EVERY_COMMITS`]); this handle
    /// and its clones read the held-back values first. Below the head after
    /// a crash: the ledger then re-derives the cases changed since from the
    /// log and hands them to [`Store::stage_replayed`].
    fn projected_through(&self) -> Result<u64, StoreError>;

    /// Holds back `cases` (re-derived from the entries after
    /// [`Store::projected_through`]) as if their commits had held them back.
    fn stage_replayed(&self, cases: Vec<Case>) -> Result<(), StoreError>;

    /// Writes every held-back case value, durably, so that
    /// [`Store::projected_through`] is the head's sequence. A hub calls it
    /// when it stops; without it a restart re-derives them from the log.
    fn flush_projection(&self) -> Result<(), StoreError>;

    /// The projection commitment the writer keeps over the written
    /// projection pairs ([`commitment`]) and the sequence that projection
    /// describes: what a checkpoint signs (format version 2). `None` for a
    /// store that keeps none (wrappers that do not forward it).
    fn projection_commitment(
        &self,
    ) -> Result<Option<mpp_core::checkpoint::ProjectionCommitment>, StoreError> {
        Ok(None)
    }
}
