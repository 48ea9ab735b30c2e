//! The in-memory backend, [`MemKv`]: the same keys and encodings as
//! [`crate::SledStore`]'s in a `BTreeMap`, so tests exercise the real layout
//! without a disk.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, RwLock};

use crate::kv::{self, Kv, KvStore, PairVisitor};
use crate::layout::Pair;
use crate::StoreError;

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// An in-memory store. Cloning shares the data; it lives until the last
/// clone is dropped, so "reopening" is cloning a kept handle.
pub type MemStore = KvStore<MemKv>;

/// The backend of [`MemStore`]: an ordered map behind a lock. Cloning shares
/// the map.
#[derive(Clone)]
pub struct MemKv {
    map: Arc<RwLock<Map>>,
}

impl std::fmt::Debug for MemKv {
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
        let kv = MemKv { map: Arc::new(RwLock::new(Map::new())) };
        kv.write().insert(crate::layout::format_key().to_vec(), crate::FORMAT_TAG.as_bytes().to_vec());
        // An empty store: nothing to read, nothing to fail.
        KvStore::over(kv).unwrap_or_else(|e| unreachable!("opening an empty in-memory store: {e}"))
    }

    /// A new handle on the same data without the case values held back
    /// from writing (see [`crate::Store::projected_through`]): what a crash
    /// leaves, for tests of recovery.
    pub fn without_held_back(self) -> Self {
        self.dropping_held_back()
    }
}

impl MemKv {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Map> {
        // Writers never panic half-way through an update (they build the
        // pairs first), so a poisoned lock still guards consistent data.
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Map> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl kv::sealed::Sealed for MemKv {}

impl Kv for MemKv {
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

    fn for_each_with_prefix(&self, prefix: &[u8], f: &mut PairVisitor<'_>) -> Result<(), StoreError> {
        let map = self.read();
        for (k, v) in map.range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded)) {
            if !k.starts_with(prefix) {
                break;
            }
            f(k, v)?;
        }
        Ok(())
    }

    fn write_atomic(&self, pairs: Vec<Pair>) -> Result<(), StoreError> {
        let mut map = self.write();
        for (k, v) in pairs {
            map.insert(k, v);
        }
        Ok(())
    }
}
