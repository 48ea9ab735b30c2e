//! The store on disk, in sled 0.34.7.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mpp_core::checkpoint::SignedCheckpoint;
use mpp_core::ids::{AgencyId, EventId, ServiceId, TrackingNumber};
use mpp_core::log::Hash32;
use mpp_core::merkle::{MerkleFrontier, NodeSource};
use mpp_core::{Case, LogEntry, ServiceStandard};

use crate::kv::{self, Kv, Pair, Pending};
use crate::{Cases, Checkpoints, CommitBatch, Entries, Head, Store, StoreError};

/// sled's page cache bound, in bytes (96 MiB). sled's default is 1 GiB; the
/// hub's working set is the recent log blocks, the cases being worked on
/// (which the ledger also keeps decoded, `mpp_hub::ledger::CASE_CACHE_CASES_MAX`,
/// and the store holds back from writing, `PENDING_CASES_MAX`) and the
/// event-id index parts of recent ids. sled counts its cache below what the
/// process holds for it: with 160 MiB the hub's RSS reached 540 MiB at 10M
/// events (peak 601), with 96 MiB 378 MiB (peak 437) at the same ingest
/// rate and lookup rates (`mpp-bench --sections 5,7 --footprint-10m`).
pub const CACHE_CAPACITY_BYTES: u64 = 96 * 1024 * 1024;

/// How long [`SledStore::open`] keeps retrying while the directory's lock is
/// held, in milliseconds. sled's IO thread pool can hold the lock for a moment
/// after the last handle of a database is dropped (sled's own test suite
/// blocks on the lock for the same reason), so a reopen in the same process,
/// or a restart racing the old process's exit, waits instead of failing.
pub const OPEN_LOCK_WAIT_MS_MAX: u64 = 5_000;

/// Interval between attempts while waiting for the lock, in milliseconds.
const OPEN_LOCK_POLL_MS: u64 = 10;

/// Opens the sled database of `config`, polling for up to
/// [`OPEN_LOCK_WAIT_MS_MAX`] while another handle still holds its lock. Every
/// sled database of the project (the hub's store, its access log, the agency
/// outboxes, the front office's counter) is opened through it.
pub fn open_waiting_for_lock(config: &sled::Config) -> Result<sled::Db, sled::Error> {
    let deadline = Instant::now() + Duration::from_millis(OPEN_LOCK_WAIT_MS_MAX);
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            // sled 0.34.7 reports a held lock only in the error text.
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && Instant::now() < deadline =>
            {
                tracing::debug!(error = %e, "Store lock held, retrying");
                std::thread::sleep(Duration::from_millis(OPEN_LOCK_POLL_MS));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The store in a sled database directory. Cloning shares the database.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    /// Serialises commits, so the head a commit checks against is the head
    /// it writes on.
    writer: Arc<Mutex<()>>,
    /// Case values held back from writing (write-behind), shared by clones.
    pending: Arc<Pending>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").field("was_recovered", &self.db.was_recovered()).finish_non_exhaustive()
    }
}

impl SledStore {
    /// Opens (creating if needed) the store in `dir`, with a page cache of
    /// [`CACHE_CAPACITY_BYTES`]. Refuses a store of another format version.
    /// sled locks the directory: a second open, in this or another process,
    /// waits up to [`OPEN_LOCK_WAIT_MS_MAX`] for every handle of the first to
    /// be dropped, then fails.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with_cache(dir, CACHE_CAPACITY_BYTES)
    }

    /// [`SledStore::open`] with another page cache size, in bytes.
    pub fn open_with_cache(dir: impl AsRef<Path>, cache_capacity_bytes: u64) -> Result<Self, StoreError> {
        let config = sled::Config::new()
            .path(dir.as_ref())
            .cache_capacity(cache_capacity_bytes)
            // Every commit flushes synchronously, so sled's periodic
            // background flusher adds nothing.
            .flush_every_ms(None);
        let db = open_waiting_for_lock(&config)?;
        let store = SledStore { db, writer: Arc::new(Mutex::new(())), pending: Arc::new(Pending::default()) };
        let is_empty = store.db.is_empty();
        kv::check_format(&store, is_empty)?;
        tracing::debug!(dir = %dir.as_ref().display(), recovered = store.db.was_recovered(), "Store opened");
        Ok(store)
    }

    /// The size of the database files, in bytes (for metrics).
    pub fn size_on_disk_bytes(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }
}

impl Kv for SledStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(key)?.map(|v| v.to_vec()))
    }

    fn last_in(&self, lo: &[u8], hi: &[u8]) -> Result<Option<Pair>, StoreError> {
        match self.db.range(lo..=hi).next_back() {
            Some(r) => {
                let (k, v) = r?;
                Ok(Some((k.to_vec(), v.to_vec())))
            }
            None => Ok(None),
        }
    }

    fn next_with_prefix(&self, prefix: u8, after: &[u8]) -> Result<Option<Pair>, StoreError> {
        use std::ops::Bound;
        let mut it = self.db.range::<&[u8], _>((Bound::Excluded(after), Bound::Unbounded));
        match it.next() {
            Some(r) => {
                let (k, v) = r?;
                Ok((k.first() == Some(&prefix)).then(|| (k.to_vec(), v.to_vec())))
            }
            None => Ok(None),
        }
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Pair>, StoreError> {
        self.db
            .scan_prefix(prefix)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(StoreError::from))
            .collect()
    }

    fn pending(&self) -> &Pending {
        &self.pending
    }

    fn write_atomic(&self, pairs: Vec<Pair>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (k, v) in pairs {
            batch.insert(k, v);
        }
        self.db.apply_batch(batch)?;
        // Synchronous flush: the batch is durable (as far as sled 0.34 makes
        // anything durable) before the caller acks the messages. Never
        // flush_async, which is known to deadlock.
        self.db.flush()?;
        Ok(())
    }
}

impl Store for SledStore {
    fn head(&self) -> Result<Head, StoreError> {
        kv::head(self)
    }

    fn head_and_frontier(&self) -> Result<(Head, MerkleFrontier), StoreError> {
        kv::head_and_frontier(self)
    }

    fn subtree(&self, level: u32, index: u64) -> Result<Option<Hash32>, StoreError> {
        kv::subtree(self, level, index)
    }

    fn checkpoint(&self, tree_size: u64) -> Result<Option<SignedCheckpoint>, StoreError> {
        kv::checkpoint(self, tree_size)
    }

    fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, StoreError> {
        kv::latest_checkpoint(self)
    }

    fn checkpoints(&self, from_size: u64, to_size: u64) -> Checkpoints<'_> {
        kv::checkpoints(self, from_size, to_size)
    }

    fn put_checkpoint(&self, checkpoint: &SignedCheckpoint) -> Result<(), StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        kv::put_checkpoint(self, checkpoint)
    }

    fn case(&self, id: &TrackingNumber) -> Result<Option<Case>, StoreError> {
        kv::case(self, id)
    }

    fn cases(&self) -> Cases<'_> {
        kv::cases(self)
    }

    fn standard(
        &self,
        agency: &AgencyId,
        service: &ServiceId,
    ) -> Result<Option<ServiceStandard>, StoreError> {
        kv::standard(self, agency, service)
    }

    fn standards(&self) -> Result<Vec<ServiceStandard>, StoreError> {
        kv::standards(self)
    }

    fn event_seq(&self, id: &EventId) -> Result<Option<u64>, StoreError> {
        kv::event_seq(self, id)
    }

    fn event_seqs(&self, ids: &[EventId]) -> Result<Vec<Option<u64>>, StoreError> {
        kv::event_seqs(self, ids)
    }

    fn projected_through(&self) -> Result<u64, StoreError> {
        kv::projected_through(self)
    }

    fn stage_replayed(&self, cases: Vec<Case>) -> Result<(), StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        kv::stage_replayed(self, cases)
    }

    fn flush_projection(&self) -> Result<(), StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        kv::flush_projection(self)
    }

    fn entry(&self, seq: u64) -> Result<Option<LogEntry>, StoreError> {
        kv::entry(self, seq)
    }

    fn entries(&self, from_seq: u64) -> Entries<'_> {
        kv::entries(self, from_seq)
    }

    fn commit_returning_cases(&self, batch: CommitBatch) -> Result<Vec<std::sync::Arc<Case>>, StoreError> {
        // A poisoned lock only means another commit panicked; the store
        // itself is consistent (sled batches are atomic), so carry on.
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        kv::commit(self, batch)
    }
}

impl NodeSource for SledStore {
    type Error = StoreError;

    fn leaf_hash(&self, index: u64) -> Result<Hash32, StoreError> {
        kv::Tree(self).leaf_hash(index)
    }

    fn leaf_hashes(&self, start: u64, out: &mut [Hash32]) -> Result<(), StoreError> {
        kv::Tree(self).leaf_hashes(start, out)
    }

    fn stored_subtree_hash(&self, level: u32, index: u64) -> Result<Option<Hash32>, StoreError> {
        kv::Tree(self).stored_subtree_hash(level, index)
    }
}
