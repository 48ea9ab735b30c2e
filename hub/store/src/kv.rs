//! The store's logic over a minimal ordered key-value interface: one
//! [`KvStore`] implements [`Store`] and [`NodeSource`] for both backends,
//! [`crate::SledKv`] (sled on disk) and [`crate::MemKv`] (a `BTreeMap`), so
//! the in-memory twin differs from the real store only in where the bytes
//! live.

use mpp_core::checkpoint::{ProjectionCommitment, SignedCheckpoint};
use mpp_core::ids::{AgencyId, EventId, ServiceId, TrackingNumber};
use mpp_core::log::{Hash32, GENESIS_HASH};
use mpp_core::merkle::{self, entry_leaf_hash, MerkleFrontier, NodeSource};
use std::sync::{Arc, Mutex, MutexGuard};

use mpp_core::registry::{Participant, Registry};
use mpp_core::{Application, Case, LogEntry, ServiceStandard};

use crate::commitment::{self, LtHash};
use crate::layout::{self, corrupt, Block, Pair};
use crate::{
    push_entry, Cases, Checkpoints, CommitBatch, Entries, Head, Store, StoreError, STORED_SUBTREE_LEVEL_MIN,
};

/// The ordered key-value operations the store needs: where the bytes live,
/// and nothing else (the layout, the checks, the writer lock and the
/// held-back cases are [`KvStore`]'s).
///
/// Sealed: its implementations are this crate's backends, [`crate::SledKv`]
/// and [`crate::MemKv`], which only [`crate::SledStore`] and
/// [`crate::MemStore`] construct, so every write goes through [`Store`]'s
/// checks. A clone is a handle on the same data, as [`Store`] needs.
pub trait Kv: Clone + std::fmt::Debug + Send + Sync + 'static + sealed::Sealed {
    /// The value under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// The last pair with `lo <= key <= hi`.
    fn last_in(&self, lo: &[u8], hi: &[u8]) -> Result<Option<Pair>, StoreError>;
    /// The first pair with `key > after` that starts with `prefix`.
    fn next_with_prefix(&self, prefix: u8, after: &[u8]) -> Result<Option<Pair>, StoreError>;
    /// Every pair whose key starts with `prefix`, in key order. Callers
    /// bound the result by what they store under the prefix.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Pair>, StoreError>;
    /// Writes all `(key, value)` pairs as one atomic batch and makes them
    /// durable before returning.
    fn write_atomic(&self, pairs: Vec<Pair>) -> Result<(), StoreError>;
    /// Calls `f` with every pair whose key starts with `prefix`, in key
    /// order, without holding them all in memory; stops at `f`'s first
    /// error.
    fn for_each_with_prefix(&self, prefix: &[u8], f: &mut PairVisitor<'_>) -> Result<(), StoreError>;
}

/// What [`Kv::for_each_with_prefix`] calls with each pair (key, value).
pub type PairVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), StoreError> + 'a;

/// Keeps [`Kv`] implemented by this crate's backends only.
pub(crate) mod sealed {
    /// Implemented by [`super::Kv`]'s backends, in this crate only.
    pub trait Sealed {}
}

/// The store over the key-value backend `K`: the one implementation of
/// [`Store`] and [`NodeSource`], used as [`crate::SledStore`] and
/// [`crate::MemStore`]. Cloning shares the backend's data, the writer lock
/// and the held-back case values, so lookups run on clones on other threads
/// while one writer commits.
#[derive(Clone)]
pub struct KvStore<K> {
    kv: K,
    /// Serialises every write (commits, checkpoints, the held-back cases'
    /// writes), so the head a write checks against is the head it writes on.
    writer: Arc<Mutex<()>>,
    /// Case values held back from writing (write-behind), shared by clones.
    pending: Arc<Pending>,
    /// The projection commitment of the written pairs
    /// ([`crate::commitment`]), as stored under [`layout::COMMITMENT_KEY`];
    /// changed only with the writer lock held, after the write that stores
    /// it. Loaded when first needed (a commit, a checkpoint), so tools that
    /// only read a store neither pay for it nor write it.
    commitment: Arc<Kept>,
}

/// Formats as its backend does (`SledStore { was_recovered: .. }`,
/// `MemStore { keys: .. }`).
impl<K: std::fmt::Debug> std::fmt::Debug for KvStore<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.kv.fmt(f)
    }
}

impl<K: Kv> KvStore<K> {
    /// A store over `kv` (whose format the caller has checked), with a
    /// writer lock of its own and nothing held back. The projection
    /// commitment is loaded when first needed ([`loaded`]).
    pub(crate) fn over(kv: K) -> Result<Self, StoreError> {
        Ok(KvStore {
            kv,
            writer: Arc::new(Mutex::new(())),
            pending: Arc::new(Pending::default()),
            commitment: Arc::new(Mutex::new(None)),
        })
    }

    /// The projection commitment recomputed from scratch from the pairs
    /// stored now, in one pass over them, hashed on every core (what a new
    /// replica's bootstrap compares with the one the source's latest
    /// checkpoint signs), with the sequence the stored projection describes.
    /// Ignores the stored state (a copy's could be anything) and replaces
    /// it, and the writer's, with the recomputed one, so this store's later
    /// commits continue from what its pairs hash to.
    pub fn recompute_projection_commitment(&self) -> Result<ProjectionCommitment, StoreError> {
        let _writer = self.writer();
        let (head, projected, _) = head_value(&self.kv)?;
        let state = recompute(&self.kv)?;
        let mut kept = self.commitment.lock().unwrap_or_else(|p| p.into_inner());
        let stored = self.kv.get(layout::COMMITMENT_KEY)?.and_then(|v| layout::decode_commitment(&v));
        if stored != Some((head.last_seq, projected, state.clone())) {
            self.kv.write_atomic(vec![(
                layout::COMMITMENT_KEY.to_vec(),
                layout::encode_commitment(head.last_seq, projected, &state),
            )])?;
        }
        let digest = state.digest();
        *kept = Some(state);
        Ok(ProjectionCommitment { projected_through: projected, digest })
    }

    /// The projection commitment as the writer keeps it (with the sequence
    /// the stored projection describes).
    fn commitment_now(&self) -> Result<ProjectionCommitment, StoreError> {
        let _writer = self.writer();
        let (_, projected, _) = head_value(&self.kv)?;
        let mut kept = self.commitment.lock().unwrap_or_else(|p| p.into_inner());
        let digest = loaded(&self.kv, &mut kept)?.digest();
        Ok(ProjectionCommitment { projected_through: projected, digest })
    }

    /// The backend.
    pub(crate) fn kv(&self) -> &K {
        &self.kv
    }

    /// This handle on the same data and writer lock, without the case
    /// values held back from writing: what a crash leaves.
    pub(crate) fn dropping_held_back(self) -> Self {
        KvStore {
            kv: self.kv,
            writer: self.writer,
            pending: Arc::new(Pending::default()),
            commitment: self.commitment,
        }
    }

    /// Every record of the permanent event-id index, `(id, sequence of the
    /// entry that accepted it)`, in key order (bucket, part, id), each part
    /// checked as it is read (sorted, every id in its key's bucket). What a
    /// new replica's bootstrap compares with the ids a replay of the log
    /// accepts (`mpp-hub admin bootstrap`), so an index altered in a copied
    /// store is found.
    pub fn event_index(&self) -> impl Iterator<Item = Result<(EventId, u64), StoreError>> + Send + '_ {
        scan(&self.kv, layout::PREFIX_EVENT, layout::decode_event_part).flat_map(|part| match part {
            Ok(records) => records.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => vec![Err(e)],
        })
    }

    /// Takes the writer lock. A poisoned lock only means another write
    /// panicked; the store itself is consistent (every write is one atomic
    /// batch, built before it is applied), so carry on.
    fn writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<K: Kv> Store for KvStore<K> {
    fn head(&self) -> Result<Head, StoreError> {
        head(&self.kv)
    }

    fn head_and_frontier(&self) -> Result<(Head, MerkleFrontier), StoreError> {
        head_and_frontier(&self.kv)
    }

    fn subtree(&self, level: u32, index: u64) -> Result<Option<Hash32>, StoreError> {
        subtree(&self.kv, level, index)
    }

    fn checkpoint(&self, tree_size: u64) -> Result<Option<SignedCheckpoint>, StoreError> {
        checkpoint(&self.kv, tree_size)
    }

    fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, StoreError> {
        latest_checkpoint(&self.kv)
    }

    fn checkpoints(&self, from_size: u64, to_size: u64) -> Checkpoints<'_> {
        checkpoints(&self.kv, from_size, to_size)
    }

    fn put_checkpoint(&self, checkpoint: &SignedCheckpoint) -> Result<(), StoreError> {
        let _writer = self.writer();
        put_checkpoint(&self.kv, checkpoint)
    }

    fn case(&self, id: &TrackingNumber) -> Result<Option<Case>, StoreError> {
        case(&self.kv, &self.pending, id)
    }

    fn cases(&self) -> Cases<'_> {
        cases(&self.kv, &self.pending)
    }

    fn standard(
        &self,
        agency: &AgencyId,
        service: &ServiceId,
    ) -> Result<Option<ServiceStandard>, StoreError> {
        standard(&self.kv, agency, service)
    }

    fn standards(&self) -> Result<Vec<ServiceStandard>, StoreError> {
        standards(&self.kv)
    }

    fn standard_terms(&self) -> Result<Vec<crate::ServiceTerms>, StoreError> {
        scan(&self.kv, layout::PREFIX_STANDARD, layout::decode_standard)
            .map(|s| s.map(|s| ((s.agency.clone(), s.service.clone()), s.terms())))
            .collect()
    }

    fn registry(&self) -> Result<Registry, StoreError> {
        match self.kv.get(layout::REGISTRY_KEY)? {
            Some(v) => layout::decode_value(&v, layout::REGISTRY_KEY, "participant registry").or_else(|e| {
                type Participants = std::collections::BTreeMap<AgencyId, Participant>;
                // A registry stored before follow grants existed: its three
                // fields, no grants (there were none).
                let with_holds: Result<(Option<u64>, Participants, mpp_core::hold::Holds), _> =
                    layout::decode_value(&v, layout::REGISTRY_KEY, "participant registry");
                if let Ok((since_seq, participants, holds)) = with_holds {
                    return Ok(Registry { since_seq, participants, holds, follows: Default::default() });
                }
                // A registry stored before held applications existed: its
                // two fields, no holds (there were none).
                type Before = (Option<u64>, Participants);
                let (since_seq, participants): Before =
                    layout::decode_value(&v, layout::REGISTRY_KEY, "participant registry").map_err(|_| e)?;
                Ok(Registry { since_seq, participants, ..Registry::default() })
            }),
            None => Ok(Registry::default()),
        }
    }

    fn event_seq(&self, id: &EventId) -> Result<Option<u64>, StoreError> {
        event_seq(&self.kv, id)
    }

    fn event_seqs(&self, ids: &[EventId]) -> Result<Vec<Option<u64>>, StoreError> {
        event_seqs(&self.kv, ids)
    }

    fn projected_through(&self) -> Result<u64, StoreError> {
        projected_through(&self.kv)
    }

    fn stage_replayed(&self, cases: Vec<Case>) -> Result<(), StoreError> {
        let _writer = self.writer();
        stage_replayed(&self.kv, &self.pending, cases)
    }

    fn flush_projection(&self) -> Result<(), StoreError> {
        let _writer = self.writer();
        flush_projection(&self.kv, &self.pending, &self.commitment)
    }

    fn projection_commitment(&self) -> Result<Option<ProjectionCommitment>, StoreError> {
        self.commitment_now().map(Some)
    }

    fn entry(&self, seq: u64) -> Result<Option<LogEntry>, StoreError> {
        entry(&self.kv, seq)
    }

    fn entries(&self, from_seq: u64) -> Entries<'_> {
        entries(&self.kv, from_seq)
    }

    fn parallel_entries(&self) -> bool {
        true
    }

    fn commit_returning_cases(&self, batch: CommitBatch) -> Result<Vec<Arc<Case>>, StoreError> {
        let _writer = self.writer();
        commit(&self.kv, &self.pending, &self.commitment, batch)
    }
}

impl<K: Kv> NodeSource for KvStore<K> {
    type Error = StoreError;

    fn leaf_hash(&self, index: u64) -> Result<Hash32, StoreError> {
        Tree(&self.kv).leaf_hash(index)
    }

    fn leaf_hashes(&self, start: u64, out: &mut [Hash32]) -> Result<(), StoreError> {
        Tree(&self.kv).leaf_hashes(start, out)
    }

    fn stored_subtree_hash(&self, level: u32, index: u64) -> Result<Option<Hash32>, StoreError> {
        Tree(&self.kv).stored_subtree_hash(level, index)
    }
}

/// Most cases whose new values a store holds back in memory instead of
/// writing them with every commit (a few KiB each, decoded; mostly the
/// same values the ledger's case cache holds, shared, not copied).
pub const PENDING_CASES_MAX: usize = 8192;

/// Most commits between two writes of the held-back case values.
pub const PROJECTION_EVERY_COMMITS: u32 = 16;

/// Case values committed to the log but not yet written (write-behind).
///
/// A case busy enough to change in every ingest batch would otherwise be
/// rewritten in every batch; held back, it is written once per
/// [`PROJECTION_EVERY_COMMITS`] commits (or sooner, when
/// [`PENDING_CASES_MAX`] cases are held, or a batch changes a service
/// standard). The stored case values (and standards) are then always the
/// projection as of one sequence, `projected_through` in the head, written
/// in the same atomic batch as them; readers of this handle see the held
/// back values first, so they see every committed case. After a crash the
/// held-back values are gone and the ledger re-derives them from the log
/// entries after `projected_through` (see `mpp_ledger::ledger::Ledger::open`),
/// then hands them back with [`crate::Store::stage_replayed`].
#[derive(Debug, Default)]
struct Pending {
    inner: std::sync::RwLock<PendingInner>,
}

#[derive(Debug, Default)]
struct PendingInner {
    cases: std::collections::HashMap<[u8; 16], PendingCase>,
    commits: u32,
}

/// One held-back case: its value as committed, shared with the ledger's
/// cache (so holding it back costs no copy), encoded only when written.
#[derive(Debug, Clone)]
struct PendingCase {
    /// How many timeline items the written value holds (at most: the write
    /// rewrites every chunk from the one holding item `stored_items`, so a
    /// lower count only rewrites more).
    stored_items: usize,
    /// The case as of the last commit that changed it.
    case: Arc<Case>,
}

impl Pending {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, PendingInner> {
        // A poisoned lock means a panic elsewhere mid-update of plain data;
        // every update leaves the map consistent, so carry on.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, PendingInner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, key: &[u8]) -> Option<Arc<Case>> {
        let key: [u8; 16] = key.try_into().ok()?;
        self.read().cases.get(&key).map(|pc| pc.case.clone())
    }

    /// What a commit needs of a held-back case: how many items its written
    /// value holds, and the case now.
    fn held(&self, key: &[u8; 16]) -> Option<(usize, Arc<Case>)> {
        self.read().cases.get(key).map(|pc| (pc.stored_items, pc.case.clone()))
    }
}

/// Checks the format tag, writing it into an empty store.
pub(crate) fn check_format(kv: &impl Kv, is_empty: bool) -> Result<(), StoreError> {
    match kv.get(&layout::format_key())? {
        Some(tag) if tag == layout::FORMAT_TAG.as_bytes() => Ok(()),
        Some(tag) => Err(StoreError::UnsupportedFormat {
            found: String::from_utf8_lossy(&tag).into_owned(),
            expected: layout::FORMAT_TAG,
        }),
        None if is_empty => {
            kv.write_atomic(vec![(layout::format_key().to_vec(), layout::FORMAT_TAG.as_bytes().to_vec())])
        }
        None => Err(StoreError::UnsupportedFormat {
            found: "no format tag in a non-empty store".to_owned(),
            expected: layout::FORMAT_TAG,
        }),
    }
}

fn head(kv: &impl Kv) -> Result<Head, StoreError> {
    Ok(head_and_frontier(kv)?.0)
}

fn head_and_frontier(kv: &impl Kv) -> Result<(Head, MerkleFrontier), StoreError> {
    match kv.get(&layout::head_key())? {
        Some(v) => layout::decode_head(&v),
        None => Ok((Head::GENESIS, MerkleFrontier::new())),
    }
}

fn subtree(kv: &impl Kv, level: u32, index: u64) -> Result<Option<Hash32>, StoreError> {
    if !(STORED_SUBTREE_LEVEL_MIN..merkle::TREE_LEVELS_MAX).contains(&level) {
        return Ok(None);
    }
    let key = layout::subtree_key(level, index);
    kv.get(&key)?.map(|v| layout::decode_subtree(&v, &key)).transpose()
}

fn checkpoint(kv: &impl Kv, tree_size: u64) -> Result<Option<SignedCheckpoint>, StoreError> {
    let key = layout::checkpoint_key(tree_size);
    kv.get(&key)?.map(|v| layout::decode_checkpoint(&key, &v)).transpose()
}

fn latest_checkpoint(kv: &impl Kv) -> Result<Option<SignedCheckpoint>, StoreError> {
    let found = kv.last_in(&layout::checkpoint_key(0), &layout::checkpoint_key(u64::MAX))?;
    found.map(|(k, v)| layout::decode_checkpoint(&k, &v)).transpose()
}

fn checkpoints<K: Kv>(kv: &K, from_size: u64, to_size: u64) -> Checkpoints<'_> {
    let after = match from_size.checked_sub(1) {
        Some(before) => layout::checkpoint_key(before).to_vec(),
        None => vec![layout::PREFIX_CHECKPOINT],
    };
    if from_size > to_size {
        return Box::new(std::iter::empty());
    }
    let it = scan_after(kv, layout::PREFIX_CHECKPOINT, after, layout::decode_checkpoint);
    // An error ends the scan by itself; keep it.
    Box::new(it.take_while(move |r| r.as_ref().map_or(true, |cp| cp.checkpoint.tree_size <= to_size)))
}

fn case(kv: &impl Kv, pending: &Pending, id: &TrackingNumber) -> Result<Option<Case>, StoreError> {
    case_by_key(kv, pending, &layout::case_key(id))
}

/// The case under a case key: held back, or as written.
fn case_by_key(kv: &impl Kv, pending: &Pending, key: &[u8]) -> Result<Option<Case>, StoreError> {
    if let Some(held) = pending.get(key) {
        return Ok(Some(Case::clone(&held)));
    }
    match kv.get(key)? {
        Some(v) => case_with_timeline(kv, key, &v).map(Some),
        None => Ok(None),
    }
}

/// The case of the value `v` under `key`, with its timeline chunks read
/// back in: the shape in the value gives the number of items, so the number
/// of chunks, each read by one `get` (a timeline is bounded by
/// `limits::TIMELINE_ITEMS_PER_APPLICATION_MAX` items per application, so
/// the reads are too).
fn case_with_timeline(kv: &impl Kv, key: &[u8], v: &[u8]) -> Result<Case, StoreError> {
    let digits =
        key.get(1..).filter(|d| d.len() == 15).ok_or_else(|| corrupt("case key has a bad length", key))?;
    let (shape, _) = layout::decode_case_shape(key, v)?;
    let total = layout::shape_items(&shape);
    // Chunk 0 is in the value itself.
    let count = total.div_ceil(layout::TIMELINE_CHUNK_ITEMS).max(1);
    let mut chunks = Vec::with_capacity(count - 1);
    for n in 1..count {
        let tkey = layout::timeline_key_of(digits, n as u32);
        let chunk = kv.get(&tkey)?.ok_or_else(|| corrupt("timeline chunk is missing", &tkey))?;
        chunks.push((tkey, chunk));
    }
    layout::decode_case(key, v, &chunks)
}

fn standard(
    kv: &impl Kv,
    agency: &AgencyId,
    service: &ServiceId,
) -> Result<Option<ServiceStandard>, StoreError> {
    let key = layout::standard_key(agency, service);
    kv.get(&key)?.map(|v| layout::decode_standard(&key, &v)).transpose()
}

/// Every value under `prefix`, in key order, decoded.
fn scan<'a, K: Kv, T: 'a>(
    kv: &'a K,
    prefix: u8,
    decode: fn(&[u8], &[u8]) -> Result<T, StoreError>,
) -> impl Iterator<Item = Result<T, StoreError>> + Send + 'a {
    scan_after(kv, prefix, vec![prefix], decode)
}

/// Every value under `prefix` with a key above `after`, in key order, decoded.
fn scan_after<'a, K: Kv, T: 'a>(
    kv: &'a K,
    prefix: u8,
    mut after: Vec<u8>,
    decode: fn(&[u8], &[u8]) -> Result<T, StoreError>,
) -> impl Iterator<Item = Result<T, StoreError>> + Send + 'a {
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match kv.next_with_prefix(prefix, &after) {
            Ok(Some((k, v))) => {
                let item = decode(&k, &v);
                done = item.is_err();
                after = k;
                Some(item)
            }
            Ok(None) => {
                done = true;
                None
            }
            Err(e) => {
                done = true;
                Some(Err(e))
            }
        }
    })
}

fn standards(kv: &impl Kv) -> Result<Vec<ServiceStandard>, StoreError> {
    scan(kv, layout::PREFIX_STANDARD, layout::decode_standard).collect()
}

fn event_seq(kv: &impl Kv, id: &EventId) -> Result<Option<u64>, StoreError> {
    Ok(event_seqs(kv, std::slice::from_ref(id))?.pop().flatten())
}

/// [`event_seq`] of each id, reading each bucket once.
fn event_seqs(kv: &impl Kv, ids: &[EventId]) -> Result<Vec<Option<u64>>, StoreError> {
    let mut parts: std::collections::HashMap<u64, Vec<Pair>> = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let bucket = layout::event_bucket(id);
        let ps = match parts.entry(bucket) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(kv.scan_prefix(&layout::event_bucket_prefix(bucket))?)
            }
        };
        let mut found = None;
        for (k, v) in ps.iter() {
            if let Some(seq) = layout::find_event(k, v, id)? {
                found = Some(seq);
                break;
            }
        }
        out.push(found);
    }
    Ok(out)
}

/// The index pairs that add `ids` (new, of one commit) to their buckets:
/// each bucket's last part is read, merged with its new ids and rewritten,
/// spilling into new parts of at most [`layout::EVENT_PART_IDS_MAX`] ids.
fn event_index_pairs(kv: &impl Kv, ids: &[(EventId, u64)]) -> Result<Vec<Pair>, StoreError> {
    let mut by_bucket: std::collections::BTreeMap<u64, Vec<(EventId, u64)>> =
        std::collections::BTreeMap::new();
    for &(id, seq) in ids {
        by_bucket.entry(layout::event_bucket(&id)).or_default().push((id, seq));
    }
    let mut pairs = Vec::new();
    for (bucket, new) in by_bucket {
        let last =
            kv.last_in(&layout::event_part_key(bucket, 0), &layout::event_part_key(bucket, u32::MAX))?;
        let (mut part, mut records) = match last {
            Some((k, v)) => (layout::event_part_of(&k)?.1, layout::decode_event_part(&k, &v)?),
            None => (0, Vec::new()),
        };
        for r in new {
            if records.len() == layout::EVENT_PART_IDS_MAX {
                records.sort_unstable_by_key(|(id, _)| id.0);
                pairs.push((
                    layout::event_part_key(bucket, part).to_vec(),
                    layout::encode_event_part(&records),
                ));
                records.clear();
                part = part.checked_add(1).ok_or_else(|| {
                    StoreError::InvalidBatch(format!("event index bucket {bucket} is full"))
                })?;
            }
            records.push(r);
        }
        records.sort_unstable_by_key(|(id, _)| id.0);
        pairs.push((layout::event_part_key(bucket, part).to_vec(), layout::encode_event_part(&records)));
    }
    Ok(pairs)
}

fn entry(kv: &impl Kv, seq: u64) -> Result<Option<LogEntry>, StoreError> {
    if seq == 0 {
        return Ok(None);
    }
    let found = kv.last_in(&layout::log_key(1), &layout::log_key(seq))?;
    if let Some((key, bytes)) = found {
        let first = layout::log_key_seq(&key).ok_or_else(|| corrupt("log key has a bad length", &key))?;
        let block = Block::parse(first, &bytes)?;
        if seq < block.end_seq() {
            return block.entry((seq - first) as usize).map(Some);
        }
    }
    // Not found: fine past the head, corruption below it.
    if seq <= head(kv)?.last_seq {
        return Err(corrupt(format!("no log block holds entry {seq}"), &layout::log_key(seq)));
    }
    Ok(None)
}

fn entries<K: Kv>(kv: &K, from_seq: u64) -> Entries<'_> {
    let from_seq = from_seq.max(1);
    let last_seq = match head(kv) {
        Ok(h) => h.last_seq,
        Err(e) => return Box::new(std::iter::once(Err(e))),
    };
    // Entries of the current block, in reverse so `pop` yields them in order.
    let mut pending: Vec<LogEntry> = Vec::new();
    let mut next = from_seq;
    let mut failed = false;
    Box::new(std::iter::from_fn(move || {
        if failed {
            return None;
        }
        if let Some(e) = pending.pop() {
            next = e.seq + 1;
            return Some(Ok(e));
        }
        if next > last_seq {
            return None;
        }
        let r = load_block_from(kv, next).map(|mut es| {
            es.reverse();
            es
        });
        match r {
            Ok(es) => {
                pending = es;
                let e = pending.pop()?;
                next = e.seq + 1;
                Some(Ok(e))
            }
            Err(e) => {
                failed = true;
                Some(Err(e))
            }
        }
    }))
}

/// The entries from `seq` to the end of the block holding `seq`.
fn load_block_from(kv: &impl Kv, seq: u64) -> Result<Vec<LogEntry>, StoreError> {
    with_block_holding(kv, seq, |block, from| (from..block.len()).map(|i| block.entry(i)).collect())
}

/// Calls `f` with the block holding entry `seq` (which must exist: the
/// caller has checked `seq` against the head) and the index of `seq` in it.
fn with_block_holding<T>(
    kv: &impl Kv,
    seq: u64,
    f: impl FnOnce(&Block<'_>, usize) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let missing = || corrupt(format!("no log block holds entry {seq}"), &layout::log_key(seq));
    let (key, bytes) = kv.last_in(&layout::log_key(1), &layout::log_key(seq))?.ok_or_else(missing)?;
    let first = layout::log_key_seq(&key).ok_or_else(|| corrupt("log key has a bad length", &key))?;
    let block = Block::parse(first, &bytes)?;
    if seq >= block.end_seq() {
        return Err(missing());
    }
    f(&block, (seq - first) as usize)
}

/// Checks a batch against the current head and frontier (see [`CommitBatch`]).
fn check_batch(cur: &Head, cur_frontier: &MerkleFrontier, b: &CommitBatch) -> Result<(), StoreError> {
    let bad = |s: String| Err(StoreError::InvalidBatch(s));
    let Some(last) = b.entries.last() else {
        if b.head != *cur
            || b.frontier != *cur_frontier
            || !b.subtrees.is_empty()
            || !b.cases.is_empty()
            || !b.standards.is_empty()
            || b.registry.is_some()
            || !b.event_ids.is_empty()
        {
            return bad("a batch without entries must change nothing".to_owned());
        }
        return Ok(());
    };
    let mut prev_hash = cur.head_hash;
    let mut prev_stream = cur.last_stream_seq;
    for (i, e) in b.entries.iter().enumerate() {
        let want = cur.last_seq + 1 + i as u64;
        if e.seq != want {
            return bad(format!("entry {i} has seq {}, expected {want}", e.seq));
        }
        if e.prev_hash != prev_hash {
            return bad(format!("entry {} does not chain to the previous hash", e.seq));
        }
        if e.stream_seq <= prev_stream {
            return bad(format!("entry {} has stream seq {}, not above {prev_stream}", e.seq, e.stream_seq));
        }
        prev_hash = e.hash;
        prev_stream = e.stream_seq;
    }
    let want_head = Head { last_seq: last.seq, last_stream_seq: last.stream_seq, head_hash: last.hash };
    if b.head != want_head {
        return bad(format!("head {:?} does not describe the last entry {}", b.head, last.seq));
    }
    let range = cur.last_seq + 1..=last.seq;
    if let Some((id, seq)) = b.event_ids.iter().find(|(_, s)| !range.contains(s)) {
        return bad(format!("event id {id} points at seq {seq}, outside this batch"));
    }
    // The tree, recomputed: two SHA-256 calls per entry on average.
    let mut frontier = cur_frontier.clone();
    let mut subtrees = Vec::new();
    for e in &b.entries {
        if push_entry(&mut frontier, &e.hash, &mut subtrees).is_err() {
            return bad("the Merkle tree is full".to_owned());
        }
    }
    if b.frontier != frontier {
        return bad(format!("the Merkle frontier does not describe entries 1..={}", last.seq));
    }
    if b.subtrees != subtrees {
        return bad(format!(
            "the batch carries {} subtree hashes, its entries complete {} others",
            b.subtrees.len(),
            subtrees.len()
        ));
    }
    Ok(())
}

/// Commits a batch and hands its cases back, unchanged and shared with the
/// held-back set (the ledger keeps them cached). The caller holds its
/// store's writer lock, so the head read here is the head the batch is
/// written on. The batch's cases are held back (see [`Pending`]) unless the
/// projection is due, in which case every held-back case is encoded and
/// written with them.
fn commit(
    kv: &impl Kv,
    held_back: &Pending,
    state: &Kept,
    b: CommitBatch,
) -> Result<Vec<Arc<Case>>, StoreError> {
    let (cur, projected, cur_frontier) = head_value(kv)?;
    check_batch(&cur, &cur_frontier, &b)?;
    let cases: Vec<Arc<Case>> = b.cases.into_iter().map(Arc::new).collect();
    if b.entries.is_empty() {
        return Ok(cases);
    }
    let blocks = layout::encode_blocks(&b.entries);
    let mut pairs: Vec<Pair> = Vec::with_capacity(blocks.len() + b.subtrees.len() + b.standards.len() + 8);
    for (first, block) in blocks {
        pairs.push((layout::log_key(first).to_vec(), block));
    }
    for t in &b.subtrees {
        pairs.push((layout::subtree_key(t.level, t.index).to_vec(), t.hash.to_vec()));
    }
    pairs.extend(event_index_pairs(kv, &b.event_ids)?);
    let batch_seqs = cur.last_seq + 1..=b.head.last_seq;
    // A case listed twice: its last value is the one that counts.
    let mut last_of: std::collections::HashMap<TrackingNumber, usize> =
        std::collections::HashMap::with_capacity(cases.len());
    for (i, c) in cases.iter().enumerate() {
        last_of.insert(c.tracking_number, i);
    }
    let mut staged: Vec<([u8; 16], PendingCase)> = Vec::with_capacity(last_of.len());
    for (i, c) in cases.iter().enumerate() {
        if last_of.get(&c.tracking_number) != Some(&i) {
            continue;
        }
        let key = layout::case_key(&c.tracking_number);
        let stored_items = match held_back.held(&key) {
            Some((stored_items, held)) => {
                check_timelines_extend(c, layout::timeline_shape_iter(&held), &batch_seqs)?;
                stored_items
            }
            None => {
                let shape = stored_shape(kv, &key)?;
                check_timelines_extend(c, shape.iter().copied(), &batch_seqs)?;
                layout::shape_items(&shape)
            }
        };
        staged.push((key, PendingCase { stored_items, case: c.clone() }));
    }
    // The held-back set stays write-locked across the write, so a reader
    // never sees a head whose cases are not yet readable (nor a held-back
    // value that is not durable); readers wait for the flush instead.
    let mut pending = held_back.write();
    let new_cases = staged.iter().filter(|(k, _)| !pending.cases.contains_key(k)).count();
    // Standards are written only with the projection, so the stored
    // standards are always those in force at `projected_through`.
    let due = !b.standards.is_empty()
        || b.registry.is_some()
        || pending.commits + 1 >= PROJECTION_EVERY_COMMITS
        || pending.cases.len() + new_cases > PENDING_CASES_MAX;
    if !due {
        // Nothing held back, before or now: the written projection is
        // current.
        let projected =
            if pending.cases.is_empty() && staged.is_empty() { b.head.last_seq } else { projected };
        pairs.push((layout::head_key().to_vec(), layout::encode_head(&b.head, projected, &b.frontier)));
        write_committed(kv, pairs, state, b.head.last_seq, projected)?;
        pending.cases.extend(staged);
        pending.commits += 1;
        return Ok(cases);
    }
    let restaged: std::collections::HashSet<[u8; 16]> = staged.iter().map(|(k, _)| *k).collect();
    for (key, pc) in pending
        .cases
        .iter()
        .filter(|(k, _)| !restaged.contains(*k))
        .chain(staged.iter().map(|(k, pc)| (k, pc)))
    {
        pairs.extend(encode_case(&pc.case, key, pc.stored_items)?);
    }
    for s in &b.standards {
        let key = layout::standard_key(&s.agency, &s.service);
        let v = layout::encode_standard(s, &key)?;
        pairs.push((key, v));
    }
    if let Some(r) = &b.registry {
        pairs.push((layout::REGISTRY_KEY.to_vec(), layout::encode_value(r, layout::REGISTRY_KEY)?));
    }
    pairs.push((layout::head_key().to_vec(), layout::encode_head(&b.head, b.head.last_seq, &b.frontier)));
    write_committed(kv, pairs, state, b.head.last_seq, b.head.last_seq)?;
    pending.cases.clear();
    pending.commits = 0;
    Ok(cases)
}

/// The timeline shape of the written value under a case key (empty for a
/// new case).
fn stored_shape(kv: &impl Kv, key: &[u8]) -> Result<layout::TimelineShape, StoreError> {
    match kv.get(key)? {
        Some(v) => Ok(layout::decode_case_shape(key, &v)?.0),
        None => Ok(Vec::new()),
    }
}

/// The pairs that write `c` over a stored value holding `stored_items`
/// timeline items: the case value (with chunk 0) and the chunks from the
/// first one the stored value lacks.
fn encode_case(c: &Case, key: &[u8], stored_items: usize) -> Result<Vec<Pair>, StoreError> {
    let shape = layout::timeline_shape(c);
    let items = layout::timeline_items(c);
    let first = (stored_items / layout::TIMELINE_CHUNK_ITEMS).max(1);
    let mut pairs = Vec::with_capacity(2);
    let chunk0 = layout::encode_timeline_chunk(&items[..items.len().min(layout::TIMELINE_CHUNK_ITEMS)], key)?;
    let value = layout::encode_case_value(
        &shape,
        &without_timelines(c),
        &chunk0,
        &c.pin_reissues,
        &c.personal_data_reads,
        key,
    )?;
    pairs.push((key.to_vec(), value));
    for (n, chunk) in items.chunks(layout::TIMELINE_CHUNK_ITEMS).enumerate().skip(first) {
        let tkey = layout::timeline_key(&c.tracking_number, n as u32);
        let v = layout::encode_timeline_chunk(chunk, &tkey)?;
        pairs.push((tkey, v));
    }
    Ok(pairs)
}

/// `c` with every application's timeline left empty: what the case value
/// encodes besides the shape and chunk 0. Spelled out field by field so
/// that a field added to either struct fails to compile here.
fn without_timelines(c: &Case) -> Case {
    let Case {
        tracking_number,
        opened_by,
        opened_at_ms,
        opened_seq,
        pin_verifier,
        nik_keyed_hash,
        updated_at_ms,
        last_seq,
        applications,
        personal_data,
        pin_reissues: _,
        personal_data_reads: _,
    } = c;
    let applications = applications
        .iter()
        .map(|a| {
            let Application {
                id,
                agency,
                service,
                state,
                filed_at_ms,
                state_since_ms,
                pending,
                timeline: _,
                sla_working_days,
                fiktif_positif,
                standard_version,
            } = a;
            Application {
                id: id.clone(),
                agency: agency.clone(),
                service: service.clone(),
                state: *state,
                filed_at_ms: *filed_at_ms,
                state_since_ms: *state_since_ms,
                pending: pending.clone(),
                timeline: Vec::new(),
                sla_working_days: *sla_working_days,
                fiktif_positif: *fiktif_positif,
                standard_version: *standard_version,
            }
        })
        .collect();
    Case {
        tracking_number: *tracking_number,
        opened_by: opened_by.clone(),
        opened_at_ms: *opened_at_ms,
        opened_seq: *opened_seq,
        pin_verifier: pin_verifier.clone(),
        nik_keyed_hash: nik_keyed_hash.clone(),
        updated_at_ms: *updated_at_ms,
        last_seq: *last_seq,
        applications,
        personal_data: personal_data.clone(),
        // Written after chunk 0 (layout::encode_case_value).
        pin_reissues: Vec::new(),
        personal_data_reads: Vec::new(),
    }
}

/// The head, the sequence the stored projection describes, and the frontier.
fn head_value(kv: &impl Kv) -> Result<(Head, u64, MerkleFrontier), StoreError> {
    match kv.get(&layout::head_key())? {
        Some(v) => layout::decode_head_value(&v),
        None => Ok((Head::GENESIS, 0, MerkleFrontier::new())),
    }
}

/// The last sequence the stored (written) case values describe.
fn projected_through(kv: &impl Kv) -> Result<u64, StoreError> {
    Ok(head_value(kv)?.1)
}

/// Writes every held-back case value, so the stored projection describes
/// the whole log; does nothing when none is held back. The caller holds its
/// store's writer lock.
fn flush_projection(kv: &impl Kv, held_back: &Pending, state: &Kept) -> Result<(), StoreError> {
    let (head, _, frontier) = head_value(kv)?;
    let mut pending = held_back.write();
    // Nothing held back: the written projection is as current as this
    // handle knows. (After a crash it may lag the log with nothing held
    // back; only the ledger's catch-up can bring it forward.)
    if pending.cases.is_empty() {
        return Ok(());
    }
    let mut pairs: Vec<Pair> = Vec::with_capacity(pending.cases.len() + 1);
    for (key, pc) in pending.cases.iter() {
        pairs.extend(encode_case(&pc.case, key, pc.stored_items)?);
    }
    pairs.push((layout::head_key().to_vec(), layout::encode_head(&head, head.last_seq, &frontier)));
    write_committed(kv, pairs, state, head.last_seq, head.last_seq)?;
    pending.cases.clear();
    pending.commits = 0;
    Ok(())
}

/// Writes `pairs` (which set the head to `last_seq` and the stored
/// projection to `projected`) with the projection commitment they leave,
/// as one atomic write; updates `state` once it is durable.
fn write_committed(
    kv: &impl Kv,
    mut pairs: Vec<Pair>,
    state: &Kept,
    last_seq: u64,
    projected: u64,
) -> Result<(), StoreError> {
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    let after = commitment_after(kv, loaded(kv, &mut state)?, &pairs)?;
    pairs.push((layout::COMMITMENT_KEY.to_vec(), layout::encode_commitment(last_seq, projected, &after)));
    kv.write_atomic(pairs)?;
    *state = Some(after);
    Ok(())
}

/// The projection commitment a handle keeps: `None` until first needed.
type Kept = Mutex<Option<LtHash>>;

/// The commitment in `slot`, loaded first if it is not yet: the stored one
/// if it describes the store's head and projection; else (a store written
/// before the commitment existed, or by a hub that did not keep it)
/// computed in one pass over the stored projection (and logged); the next
/// write stores it. The caller holds the store's writer lock.
fn loaded<'a>(kv: &impl Kv, slot: &'a mut Option<LtHash>) -> Result<&'a LtHash, StoreError> {
    if slot.is_none() {
        let (head, projected, _) = head_value(kv)?;
        let stored = kv.get(layout::COMMITMENT_KEY)?.and_then(|v| layout::decode_commitment(&v));
        let state = match stored {
            Some((seq, through, state)) if seq == head.last_seq && through == projected => state,
            other => {
                let started = std::time::Instant::now();
                let state = recompute(kv)?;
                if head.last_seq > 0 || other.is_some() {
                    tracing::info!(
                        head = head.last_seq,
                        projected,
                        had_one = other.is_some(),
                        seconds = started.elapsed().as_secs_f64(),
                        "Projection commitment computed from the stored projection (a store without one, or with a stale one)"
                    );
                }
                state
            }
        };
        *slot = Some(state);
    }
    // Filled just above.
    slot.as_ref().ok_or_else(|| corrupt("the projection commitment was not loaded", layout::COMMITMENT_KEY))
}

/// The commitment after `pairs` are written over the store whose
/// commitment is `cur`: for each projection pair, the value it replaces
/// (read) is removed and the new one added. A key written twice counts
/// with its last value, as the write does.
fn commitment_after(kv: &impl Kv, cur: &LtHash, pairs: &[Pair]) -> Result<LtHash, StoreError> {
    let mut last: std::collections::HashMap<&[u8], &[u8]> =
        std::collections::HashMap::with_capacity(pairs.len());
    for (k, v) in pairs.iter().filter(|(k, _)| layout::is_projection_key(k)) {
        last.insert(k.as_slice(), v.as_slice());
    }
    // (key, the value it replaces, the new value)
    type Replaced<'a> = (&'a [u8], Option<Vec<u8>>, &'a [u8]);
    let mut olds: Vec<Replaced<'_>> = Vec::with_capacity(last.len());
    for (k, v) in last {
        let old = kv.get(k)?;
        if old.as_deref() != Some(v) {
            olds.push((k, old, v));
        }
    }
    let changes: Vec<commitment::Change<'_>> = olds.iter().map(|(k, o, v)| (*k, o.as_deref(), *v)).collect();
    let mut after = cur.clone();
    after.add(&commitment::delta(&changes));
    Ok(after)
}

/// The commitment of every projection pair stored in `kv`, computed from
/// scratch: one thread reads the pairs in chunks, every core hashes them.
fn recompute(kv: &impl Kv) -> Result<LtHash, StoreError> {
    /// Pairs handed to a hashing thread at a time.
    const CHUNK_PAIRS: usize = 512;
    let threads =
        std::thread::available_parallelism().map_or(1, |n| n.get()).min(commitment::HASH_THREADS_MAX);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Pair>>(threads * 2);
    let rx = Mutex::new(rx);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut h = LtHash::new();
                    loop {
                        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok(chunk) = next else { return h };
                        for (k, v) in &chunk {
                            h.add_pair(k, v);
                        }
                    }
                })
            })
            .collect();
        let mut chunk: Vec<Pair> = Vec::with_capacity(CHUNK_PAIRS);
        let mut read = || -> Result<(), StoreError> {
            for prefix in layout::PROJECTION_PREFIXES {
                kv.for_each_with_prefix(&[*prefix], &mut |k, v| {
                    if layout::is_projection_key(k) {
                        chunk.push((k.to_vec(), v.to_vec()));
                    }
                    if chunk.len() == CHUNK_PAIRS {
                        // The workers live until the sender is dropped.
                        let _ = tx.send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_PAIRS)));
                    }
                    Ok(())
                })?;
            }
            Ok(())
        };
        let r = read();
        let _ = tx.send(chunk);
        drop(tx);
        let mut sum = LtHash::new();
        for w in workers {
            sum.add(&w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        r.map(|()| sum)
    })
}

/// Holds back `cases`, re-derived from the log entries after
/// `projected_through`, as if their commits had held them back. The caller
/// holds its store's writer lock.
fn stage_replayed(kv: &impl Kv, pending: &Pending, cases: Vec<Case>) -> Result<(), StoreError> {
    let mut staged = Vec::with_capacity(cases.len());
    for c in cases {
        let key = layout::case_key(&c.tracking_number);
        let stored_items = layout::shape_items(&stored_shape(kv, &key)?);
        staged.push((key, PendingCase { stored_items, case: Arc::new(c) }));
    }
    pending.write().cases.extend(staged);
    Ok(())
}

/// Checks that `case` keeps every stored application in its place and that
/// each timeline extends the stored one (same count-th item) with items of
/// this batch only, so the stored items keep their places in the chunks.
fn check_timelines_extend(
    case: &Case,
    stored: impl ExactSizeIterator<Item = (u32, u64)>,
    batch_seqs: &std::ops::RangeInclusive<u64>,
) -> Result<(), StoreError> {
    let bad = |what: String| Err(StoreError::InvalidBatch(format!("case {}: {what}", case.tracking_number)));
    if case.applications.len() < stored.len() {
        return bad(format!(
            "it has {} applications, the stored case {}",
            case.applications.len(),
            stored.len()
        ));
    }
    let mut stored = stored.fuse();
    for app in &case.applications {
        let items = &app.timeline;
        let from = match stored.next() {
            None => 0,
            Some((len, last_seq)) => {
                let len = len as usize;
                let grows =
                    items.len() >= len && (len == 0 || items.get(len - 1).map(|t| t.seq) == Some(last_seq));
                if !grows {
                    return bad(format!(
                        "the timeline of application {} does not extend the stored one",
                        app.id
                    ));
                }
                len
            }
        };
        if items[from..].iter().any(|t| !batch_seqs.contains(&t.seq)) {
            return bad(format!("a new timeline item of application {} is not of this batch", app.id));
        }
    }
    Ok(())
}

/// Stores a checkpoint after checking it against the log (see
/// [`crate::Store::put_checkpoint`]). The caller holds its store's writer lock.
fn put_checkpoint(kv: &impl Kv, cp: &SignedCheckpoint) -> Result<(), StoreError> {
    let c = &cp.checkpoint;
    let (head, frontier) = head_and_frontier(kv)?;
    if c.tree_size > head.last_seq {
        return Err(StoreError::InvalidBatch(format!(
            "checkpoint of tree size {} is beyond the head (seq {})",
            c.tree_size, head.last_seq
        )));
    }
    let (root, head_hash, stream_seq, time_ns) = if c.tree_size == 0 {
        (merkle::EMPTY_ROOT, GENESIS_HASH, 0, 0)
    } else {
        let last = entry(kv, c.tree_size)?.ok_or_else(|| {
            corrupt(format!("no log block holds entry {}", c.tree_size), &layout::log_key(c.tree_size))
        })?;
        let root = if c.tree_size == head.last_seq {
            frontier.root()
        } else {
            merkle::root_at(&Tree(kv), c.tree_size)?
        };
        (root, last.hash, last.stream_seq, last.stream_time_ns)
    };
    let mismatch = [
        (c.root_hash != root, "root hash"),
        (c.head_hash != head_hash, "head hash"),
        (c.last_stream_seq != stream_seq, "stream sequence"),
        (c.last_entry_time_ns != time_ns, "entry time"),
    ];
    if let Some((_, what)) = mismatch.iter().find(|(differs, _)| *differs) {
        return Err(StoreError::InvalidBatch(format!(
            "checkpoint of tree size {}: its {what} is not the log's",
            c.tree_size
        )));
    }
    match checkpoint(kv, c.tree_size)? {
        Some(stored) if stored == *cp => Ok(()),
        // The same log re-signed once the projection was written further
        // (a stopping hub writes its held-back case values, then signs
        // them): the newer commitment replaces the older.
        Some(stored) if projection_advances(&stored.checkpoint, c) => {
            kv.write_atomic(vec![(layout::checkpoint_key(c.tree_size).to_vec(), cp.encode())])
        }
        Some(_) => Err(StoreError::InvalidBatch(format!(
            "another checkpoint of tree size {} is already stored",
            c.tree_size
        ))),
        None => kv.write_atomic(vec![(layout::checkpoint_key(c.tree_size).to_vec(), cp.encode())]),
    }
}

/// Whether `new` is `old` (the same log, origin and key) with a projection
/// commitment written further than `old`'s (or `old` has none).
fn projection_advances(
    old: &mpp_core::checkpoint::Checkpoint,
    new: &mpp_core::checkpoint::Checkpoint,
) -> bool {
    let same_log = old.origin == new.origin
        && old.key_id == new.key_id
        && old.tree_size == new.tree_size
        && old.root_hash == new.root_hash
        && old.head_hash == new.head_hash
        && old.last_stream_seq == new.last_stream_seq
        && old.last_entry_time_ns == new.last_entry_time_ns;
    let further = match (&old.projection, &new.projection) {
        (None, Some(_)) => true,
        (Some(o), Some(n)) => n.projected_through > o.projected_through,
        _ => false,
    };
    same_log && further
}

/// The leaf hashes of entries `start + 1 ..= start + out.len()`, decoding
/// each block once and each needed entry once (its hash checked).
fn leaf_hashes(kv: &impl Kv, start: u64, out: &mut [Hash32]) -> Result<(), StoreError> {
    if out.is_empty() {
        return Ok(());
    }
    let last_seq = head(kv)?.last_seq;
    let first_seq = start.saturating_add(1);
    let end_seq = start.saturating_add(out.len() as u64);
    if end_seq > last_seq {
        return Err(StoreError::BeyondHead { seq: first_seq.max(last_seq + 1), last_seq });
    }
    let mut seq = first_seq;
    let mut filled = 0usize;
    while filled < out.len() {
        let n = with_block_holding(kv, seq, |block, from| {
            let n = (block.len() - from).min(out.len() - filled);
            for (slot, i) in out[filled..filled + n].iter_mut().zip(from..) {
                *slot = entry_leaf_hash(&block.entry(i)?.hash);
            }
            Ok(n)
        })?;
        filled += n;
        seq += n as u64;
    }
    Ok(())
}

/// The Merkle tree over a store's entries, as a [`NodeSource`].
#[derive(Debug)]
struct Tree<'a, K>(&'a K);

impl<K: Kv> NodeSource for Tree<'_, K> {
    type Error = StoreError;

    fn leaf_hash(&self, index: u64) -> Result<Hash32, StoreError> {
        let seq = index.saturating_add(1);
        match entry(self.0, seq)? {
            Some(e) => Ok(entry_leaf_hash(&e.hash)),
            None => Err(StoreError::BeyondHead { seq, last_seq: head(self.0)?.last_seq }),
        }
    }

    fn leaf_hashes(&self, start: u64, out: &mut [Hash32]) -> Result<(), StoreError> {
        leaf_hashes(self.0, start, out)
    }

    fn stored_subtree_hash(&self, level: u32, index: u64) -> Result<Option<Hash32>, StoreError> {
        if !(STORED_SUBTREE_LEVEL_MIN..merkle::TREE_LEVELS_MAX).contains(&level) {
            return Ok(None);
        }
        if let Some(h) = subtree(self.0, level, index)? {
            return Ok(Some(h));
        }
        // Every complete subtree at this level within the head is stored.
        let last_seq = head(self.0)?.last_seq;
        let end = index.checked_add(1).and_then(|i| i.checked_mul(1u64 << level));
        match end {
            Some(end) if end <= last_seq => Err(corrupt(
                format!("the hash of the complete subtree at level {level}, index {index} is missing"),
                &layout::subtree_key(level, index),
            )),
            _ => Err(StoreError::BeyondHead { seq: end.unwrap_or(u64::MAX), last_seq }),
        }
    }
}

/// Every case, in tracking-number order, each with its timeline: the
/// written ones merged with those held back (as of the moment the iterator
/// was created; each case is read when the iterator reaches it).
fn cases<'a>(kv: &'a impl Kv, pending: &'a Pending) -> Cases<'a> {
    let mut held: Vec<[u8; 16]> = pending.read().cases.keys().copied().collect();
    held.sort_unstable();
    let mut held = held.into_iter().peekable();
    let mut after = vec![layout::PREFIX_CASE];
    let mut next_written: Option<Vec<u8>> = None;
    let mut written_done = false;
    let mut done = false;
    Box::new(std::iter::from_fn(move || {
        if done {
            return None;
        }
        if next_written.is_none() && !written_done {
            match kv.next_with_prefix(layout::PREFIX_CASE, &after) {
                Ok(Some((k, _))) => {
                    after = k.clone();
                    next_written = Some(k);
                }
                Ok(None) => written_done = true,
                Err(e) => {
                    done = true;
                    return Some(Err(e));
                }
            }
        }
        let key: Vec<u8> = match (next_written.as_deref(), held.peek()) {
            (Some(w), Some(h)) if h.as_slice() < w => held.next()?.to_vec(),
            (Some(w), Some(h)) if h.as_slice() == w => {
                held.next();
                next_written.take()?
            }
            (Some(_), _) => next_written.take()?,
            (None, Some(_)) => held.next()?.to_vec(),
            (None, None) => {
                done = true;
                return None;
            }
        };
        match case_by_key(kv, pending, &key) {
            Ok(Some(c)) => Some(Ok(c)),
            // Not reached: a written case is never deleted, and a held-back
            // case is written before it leaves the held-back set.
            Ok(None) => {
                done = true;
                Some(Err(corrupt("a listed case has no value", &key)))
            }
            Err(e) => {
                done = true;
                Some(Err(e))
            }
        }
    }))
}

#[cfg(test)]
mod registry_tests {
    use std::collections::BTreeMap;

    use mpp_core::registry::{FollowGrant, Registry};
    use mpp_core::{AgencyId, EventKind, ServiceId};

    use super::*;

    fn participant_free_registry() -> Registry {
        Registry { since_seq: Some(3), ..Registry::default() }
    }

    #[test]
    fn registries_stored_before_holds_or_follow_grants_still_read() {
        let store = crate::MemStore::new();
        let put = |v: Vec<u8>| store.kv().write_atomic(vec![(layout::REGISTRY_KEY.to_vec(), v)]).unwrap();
        let before = participant_free_registry();
        type Participants = BTreeMap<AgencyId, Participant>;
        // Two fields (before holds), three (before follow grants), and now.
        let two: (Option<u64>, Participants) = (before.since_seq, before.participants.clone());
        put(layout::encode_value(&two, layout::REGISTRY_KEY).unwrap());
        assert_eq!(store.registry().unwrap(), before);
        let three = (before.since_seq, before.participants.clone(), before.holds.clone());
        put(layout::encode_value(&three, layout::REGISTRY_KEY).unwrap());
        assert_eq!(store.registry().unwrap(), before);
        let mut now = before.clone();
        now.follows.insert(
            AgencyId::parse("pln").unwrap(),
            vec![FollowGrant {
                participant: AgencyId::parse("dpmptsp").unwrap(),
                service: ServiceId::parse("pbg").unwrap(),
                event_types: [EventKind::Issued].into_iter().collect(),
            }],
        );
        put(layout::encode_value(&now, layout::REGISTRY_KEY).unwrap());
        assert_eq!(store.registry().unwrap(), now);
    }
}
