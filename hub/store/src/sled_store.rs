//! The store on disk, in sled 0.34.7: the backend [`SledKv`].

use std::path::Path;

use crate::kv::{self, Kv, KvStore, PairVisitor};
use crate::layout::Pair;
use crate::StoreError;

/// sled's page cache bound, in bytes (96 MiB). sled's default is 1 GiB; the
/// hub's working set is the recent log blocks, the cases being worked on
/// (which the ledger also keeps decoded, `mpp_ledger::ledger::CASE_CACHE_CASES_MAX`,
/// and the store holds back from writing, `PENDING_CASES_MAX`) and the
/// event-id index parts of recent ids. sled counts its cache below what the
/// process holds for it: with 160 MiB the hub's RSS reached 540 MiB at 10M
/// events (peak 601), with 96 MiB 378 MiB (peak 437) at the same ingest
/// rate and lookup rates (`mpp-bench --sections 5,7 --footprint-10m`).
pub const CACHE_CAPACITY_BYTES: u64 = 96 * 1024 * 1024;

/// The store in a sled database directory. Cloning shares the database.
pub type SledStore = KvStore<SledKv>;

/// The backend of [`SledStore`]: sled's default tree, every write one
/// `apply_batch` and a synchronous flush. Cloning shares the database.
#[derive(Clone)]
pub struct SledKv {
    db: sled::Db,
}

impl std::fmt::Debug for SledKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").field("was_recovered", &self.db.was_recovered()).finish_non_exhaustive()
    }
}

impl SledStore {
    /// Opens (creating if needed) the store in `dir`, with a page cache of
    /// [`CACHE_CAPACITY_BYTES`]. Refuses a store of another format version.
    /// sled locks the directory: a second open, in this or another process,
    /// waits up to [`mpp_edge::sled_open::OPEN_LOCK_WAIT_MS_MAX`] for every handle of the first to
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
        let kv = SledKv { db: mpp_edge::sled_open::open_waiting_for_lock(&config)? };
        let is_empty = kv.db.is_empty();
        kv::check_format(&kv, is_empty)?;
        tracing::debug!(dir = %dir.as_ref().display(), recovered = kv.db.was_recovered(), "Store opened");
        KvStore::over(kv)
    }

    /// The size of the database files, in bytes (for metrics).
    pub fn size_on_disk_bytes(&self) -> Result<u64, StoreError> {
        Ok(self.kv().db.size_on_disk()?)
    }
}

impl kv::sealed::Sealed for SledKv {}

impl Kv for SledKv {
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

    fn for_each_with_prefix(&self, prefix: &[u8], f: &mut PairVisitor<'_>) -> Result<(), StoreError> {
        for r in self.db.scan_prefix(prefix) {
            let (k, v) = r?;
            f(&k, &v)?;
        }
        Ok(())
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
