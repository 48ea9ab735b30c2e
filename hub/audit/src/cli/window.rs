//! A store read in windows: [`Windowed`] closes and reopens the database
//! between windows of entries, so a fold over a long log holds about one
//! window of sled's blocks (used by `rebuild`, `export` and `case-at`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use mpp_core::checkpoint::SignedCheckpoint;
use mpp_core::ids::{AgencyId, EventId, ServiceId, TrackingNumber};
use mpp_core::log::Hash32;
use mpp_core::merkle::{MerkleFrontier, NodeSource};
use mpp_core::{Case, LogEntry, ServiceStandard};
use mpp_store::{Cases, Checkpoints, CommitBatch, Entries, Head, SledStore, Store, StoreError};

use super::AUDIT_CACHE_BYTES;

/// Entries a [`Windowed`] store reads per opening of the database (and
/// `audit verify` between two openings, [`super::verify::REOPEN_EVERY_ENTRIES`]).
/// Opening costs more the larger the store (sled rebuilds its page table):
/// about 0.59 s at 100M entries, where `audit verify` read 76,749 entries/s
/// re-opening every 50,000 entries and about 490,000/s with this window,
/// holding at most 860 MB (BENCHMARKS.md, "A decade of a province"): the
/// compressed log blocks of one window, a few hundred bytes per entry.
pub const WINDOW_ENTRIES: u64 = 1_000_000;

/// The store in a directory, closed and opened again before every window of
/// [`WINDOW_ENTRIES`] entries that [`Store::entries`] reads. sled 0.34 keeps
/// every log block it has read in memory until the database is closed (the
/// blocks are blobs, which its cache bound does not count), so a fold over a
/// long log through one handle holds the whole log; through this one it
/// holds about one window. Clones share the handle; nothing else may have
/// the directory open (call [`Windowed::close`] first). [`Store::cases`] and
/// [`Store::checkpoints`] collect their answer.
#[derive(Debug, Clone)]
pub struct Windowed {
    dir: PathBuf,
    window: u64,
    handle: Arc<Mutex<Option<SledStore>>>,
    /// Entries committed since the handle was last closed.
    written: Arc<std::sync::atomic::AtomicU64>,
}

impl Windowed {
    /// The store in `dir`, read [`WINDOW_ENTRIES`] entries at a time.
    pub fn new(dir: &Path) -> Self {
        Windowed {
            dir: dir.to_path_buf(),
            window: WINDOW_ENTRIES,
            handle: Arc::new(Mutex::new(None)),
            written: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }

    /// The store in `dir`, read `window` entries (at least 1) at a time.
    pub fn with_window(dir: &Path, window: u64) -> Self {
        Windowed { window: window.max(1), ..Windowed::new(dir) }
    }

    /// Writes the case values the store holds back, then closes the
    /// database (the next call opens it again).
    pub fn close(&self) -> Result<(), StoreError> {
        match self.handle.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(store) => store.flush_projection(),
            None => Ok(()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&SledStore) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut handle = self.handle.lock().unwrap_or_else(|p| p.into_inner());
        let store = match handle.take() {
            Some(s) => s,
            None => SledStore::open_with_cache(&self.dir, AUDIT_CACHE_BYTES)?,
        };
        let r = f(&store);
        *handle = Some(store);
        r
    }
}

impl NodeSource for Windowed {
    type Error = StoreError;

    fn leaf_hash(&self, index: u64) -> Result<Hash32, StoreError> {
        self.with(|s| s.leaf_hash(index))
    }

    fn leaf_hashes(&self, start: u64, out: &mut [Hash32]) -> Result<(), StoreError> {
        self.with(|s| s.leaf_hashes(start, out))
    }

    fn stored_subtree_hash(&self, level: u32, index: u64) -> Result<Option<Hash32>, StoreError> {
        self.with(|s| s.stored_subtree_hash(level, index))
    }
}

impl Store for Windowed {
    fn head(&self) -> Result<Head, StoreError> {
        self.with(|s| s.head())
    }

    fn head_and_frontier(&self) -> Result<(Head, MerkleFrontier), StoreError> {
        self.with(|s| s.head_and_frontier())
    }

    fn subtree(&self, level: u32, index: u64) -> Result<Option<Hash32>, StoreError> {
        self.with(|s| s.subtree(level, index))
    }

    fn checkpoint(&self, tree_size: u64) -> Result<Option<SignedCheckpoint>, StoreError> {
        self.with(|s| s.checkpoint(tree_size))
    }

    fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, StoreError> {
        self.with(|s| s.latest_checkpoint())
    }

    fn checkpoints(&self, from_size: u64, to_size: u64) -> Checkpoints<'_> {
        match self.with(|s| s.checkpoints(from_size, to_size).collect::<Result<Vec<_>, _>>()) {
            Ok(v) => Box::new(v.into_iter().map(Ok)),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    fn put_checkpoint(&self, checkpoint: &SignedCheckpoint) -> Result<(), StoreError> {
        self.with(|s| s.put_checkpoint(checkpoint))
    }

    fn case(&self, id: &TrackingNumber) -> Result<Option<Case>, StoreError> {
        self.with(|s| s.case(id))
    }

    fn cases(&self) -> Cases<'_> {
        match self.with(|s| s.cases().collect::<Result<Vec<_>, _>>()) {
            Ok(v) => Box::new(v.into_iter().map(Ok)),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    fn standard(
        &self,
        agency: &AgencyId,
        service: &ServiceId,
    ) -> Result<Option<ServiceStandard>, StoreError> {
        self.with(|s| s.standard(agency, service))
    }

    fn standards(&self) -> Result<Vec<ServiceStandard>, StoreError> {
        self.with(|s| s.standards())
    }

    fn registry(&self) -> Result<mpp_core::registry::Registry, StoreError> {
        self.with(|s| s.registry())
    }

    fn event_seq(&self, id: &EventId) -> Result<Option<u64>, StoreError> {
        self.with(|s| s.event_seq(id))
    }

    fn event_seqs(&self, ids: &[EventId]) -> Result<Vec<Option<u64>>, StoreError> {
        self.with(|s| s.event_seqs(ids))
    }

    fn entry(&self, seq: u64) -> Result<Option<LogEntry>, StoreError> {
        self.with(|s| s.entry(seq))
    }

    fn entries(&self, from_seq: u64) -> Entries<'_> {
        let end = match self.head() {
            Ok(h) => h.last_seq,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        let mut next = from_seq.max(1);
        let mut buf = std::collections::VecDeque::new();
        let mut failed = false;
        Box::new(std::iter::from_fn(move || {
            if failed {
                return None;
            }
            if buf.is_empty() {
                if next > end {
                    return None;
                }
                let n = usize::try_from(self.window.min(end - next + 1)).unwrap_or(usize::MAX);
                // Let go of the blocks the previous window read.
                if let Err(e) = self.close() {
                    failed = true;
                    return Some(Err(e));
                }
                match self.with(|s| s.entries(next).take(n).collect::<Result<Vec<_>, _>>()) {
                    Ok(v) if v.is_empty() => {
                        failed = true;
                        return Some(Err(StoreError::Corrupt {
                            what: format!("the log ends before entry {next}, below its head {end}"),
                            key: format!("L:{next:016x}"),
                        }));
                    }
                    Ok(v) => {
                        next += v.len() as u64;
                        buf.extend(v);
                    }
                    Err(e) => {
                        failed = true;
                        return Some(Err(e));
                    }
                }
            }
            buf.pop_front().map(Ok)
        }))
    }

    fn projected_through(&self) -> Result<u64, StoreError> {
        self.with(|s| s.projected_through())
    }

    fn stage_replayed(&self, cases: Vec<Case>) -> Result<(), StoreError> {
        self.with(|s| s.stage_replayed(cases))
    }

    fn flush_projection(&self) -> Result<(), StoreError> {
        self.with(|s| s.flush_projection())
    }

    fn projection_commitment(
        &self,
    ) -> Result<Option<mpp_core::checkpoint::ProjectionCommitment>, StoreError> {
        self.with(|s| s.projection_commitment())
    }

    fn commit_returning_cases(&self, batch: CommitBatch) -> Result<Vec<std::sync::Arc<Case>>, StoreError> {
        use std::sync::atomic::Ordering;
        let n = batch.entries.len() as u64;
        let cases = self.with(|s| s.commit_returning_cases(batch))?;
        // Let go of the blocks written (sled keeps them too) every window.
        if self.written.fetch_add(n, Ordering::Relaxed) + n >= self.window {
            self.written.store(0, Ordering::Relaxed);
            self.close()?;
        }
        Ok(cases)
    }
}
