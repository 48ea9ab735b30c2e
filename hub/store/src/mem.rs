//! The in-memory twin of [`crate::SledStore`]: the same keys and encodings in
//! a `BTreeMap`, so tests exercise the real layout without a disk.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, RwLock};

use mpp_core::checkpoint::SignedCheckpoint;
use mpp_core::ids::{AgencyId, EventId, ServiceId, TrackingNumber};
use mpp_core::log::Hash32;
use mpp_core::merkle::{MerkleFrontier, NodeSource};
use mpp_core::{Case, LogEntry, ServiceStandard};

use crate::kv::{self, Kv, Pair, Pending};
use crate::{Cases, Checkpoints, CommitBatch, Entries, Head, Store, StoreError};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// An in-memory store. Cloning shares the data; it lives until the last
/// clone is dropped, so "reopening" is cloning a kept handle.
#[derive(Clone)]
pub struct MemStore {
    map: Arc<RwLock<Map>>,
    writer: Arc<Mutex<()>>,
    pending: Arc<Pending>,
}

impl std::fmt::Debug for MemStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemStore").field("keys", &self.read().len()).finish()
    }
}

impl Default for MemStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemStore {
    /// An empty store (with its format tag, like a fresh [`crate::SledStore`]).
    pub fn new() -> Self {
        let s = MemStore {
            map: Arc::new(RwLock::new(Map::new())),
            writer: Arc::new(Mutex::new(())),
            pending: Arc::new(Pending::default()),
        };
        s.write().insert(crate::layout::format_key().to_vec(), crate::FORMAT_TAG.as_bytes().to_vec());
        s
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Map> {
        // Writers never panic half-way through an update (they build the
        // pairs first), so a poisoned lock still guards consistent data.
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Map> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl MemStore {
    /// A new handle on the same data without the case values held back
    /// from writing (see [`crate::Store::projected_through`]): what a crash
    /// leaves, for tests of recovery.
    pub fn without_held_back(self) -> Self {
        MemStore { map: self.map, writer: self.writer, pending: Arc::new(Pending::default()) }
    }
}

impl Kv for MemStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.read().get(key).cloned())
    }

    fn last_in(&self, lo: &[u8], hi: &[u8]) -> Result<Option<Pair>, StoreError> {
        if lo > hi {
            return Ok(None);
        }
        let map = self.read();
        Ok(map
            .range::<[u8], _>((Bound::Included(lo), Bound::Included(hi)))
            .next_back()
            .map(|(k, v)| (k.clone(), v.clone())))
    }

    fn next_with_prefix(&self, prefix: u8, after: &[u8]) -> Result<Option<Pair>, StoreError> {
        let map = self.read();
        let next = map.range::<[u8], _>((Bound::Excluded(after), Bound::Unbounded)).next();
        Ok(next.filter(|(k, _)| k.first() == Some(&prefix)).map(|(k, v)| (k.clone(), v.clone())))
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Pair>, StoreError> {
        let map = self.read();
        Ok(map
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn pending(&self) -> &Pending {
        &self.pending
    }

    fn write_atomic(&self, pairs: Vec<Pair>) -> Result<(), StoreError> {
        let mut map = self.write();
        for (k, v) in pairs {
            map.insert(k, v);
        }
        Ok(())
    }
}

impl Store for MemStore {
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
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        kv::commit(self, batch)
    }
}

impl NodeSource for MemStore {
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
