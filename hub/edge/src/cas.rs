//! A key-value store with compare-and-set writes, as a trait ([`CasKv`]) so
//! that a crate may use one without reaching NATS: the NATS JetStream
//! key-value bucket ([`crate::nats_kv::NatsKv`], feature `nats`) in
//! production, [`MemKv`] in tests and single-process set-ups.
//!
//! The contract, which both implementations keep:
//!
//! - every write names the revision it expects the key to have
//!   ([`CasKv::put_if`]; 0 for a key never written, expired or deleted
//!   without a marker), and fails with [`KvError::Conflict`] when the key
//!   moved on, so a read-modify-write loop is atomic;
//! - revisions grow across the whole store, so a later write of a key always
//!   carries a larger revision than an earlier one;
//! - [`CasKv::watch`] yields every key's current value, then
//!   [`KvChange::Current`], then every later write, in revision order;
//! - a store holds at most a fixed number of keys: a write that would create
//!   one more fails with [`KvError::Full`];
//! - a store that [`CasKv::batches`] writes a batch of keys all or none
//!   ([`CasKv::put_all_if`]): one expectation that fails fails the batch,
//!   and nothing of it is written.
//!
//! [`BatchingKv`] gathers the compare-and-set writes of concurrent callers
//! into such batches (one commit, so one disk sync, for many), and writes
//! one at a time what a failed batch held, so each caller still gets the
//! answer of its own compare-and-set.
//!
//! Values are opaque bytes; nothing here knows what they mean.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::stream::BoxStream;
use futures::StreamExt;

/// A boxed future of a [`CasKv`] operation.
pub type KvFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, KvError>> + Send + 'a>>;

/// Longest key, in bytes (NATS accepts more; the callers need less).
pub const KV_KEY_BYTES_MAX: usize = 128;

/// A key's value as read: `value` is `None` when the key has none (never
/// written, expired, or deleted); `revision` is what a write must expect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvValue {
    /// The value, if any.
    pub value: Option<Vec<u8>>,
    /// The key's last revision; 0 when the store holds nothing of it.
    pub revision: u64,
}

/// What a watch yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvChange {
    /// A key has this value since `revision`.
    Put {
        /// The key.
        key: String,
        /// Its value.
        value: Vec<u8>,
        /// The write's revision.
        revision: u64,
    },
    /// A key was deleted at `revision`.
    Deleted {
        /// The key.
        key: String,
        /// The deletion's revision.
        revision: u64,
    },
    /// Every value the store held when the watch began has been yielded.
    Current,
}

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The key's revision is not the one expected: read it again.
    #[error("the key was changed by another writer")]
    Conflict,
    /// The store holds as many keys (or bytes) as it may.
    #[error("the key-value store is full")]
    Full,
    /// A key the store cannot hold (empty, too long, or with characters
    /// other than ASCII letters, digits, `-`, `_`, `=` and `.`).
    #[error("invalid key")]
    InvalidKey,
    /// The store cannot be reached or answered with an error.
    #[error("the key-value store is unavailable: {0}")]
    Unavailable(String),
    /// The store refused a batch as a batch (batches disabled, too many in
    /// flight): nothing of it was written; write its keys one at a time.
    #[error("the key-value store refused the batch: {0}")]
    BatchRefused(String),
}

/// One write of a batch ([`CasKv::put_all_if`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvWrite {
    /// The key (each key at most once in a batch).
    pub key: String,
    /// Its new value.
    pub value: Vec<u8>,
    /// The revision the key must have.
    pub expected: u64,
}

/// A key-value store with compare-and-set writes. See the module docs.
pub trait CasKv: Send + Sync + std::fmt::Debug {
    /// The key's value and revision.
    fn get<'a>(&'a self, key: &'a str) -> KvFuture<'a, KvValue>;
    /// Writes `value` if the key's revision is `expected`; the new revision.
    fn put_if<'a>(&'a self, key: &'a str, value: Vec<u8>, expected: u64) -> KvFuture<'a, u64>;
    /// Every key's value, then [`KvChange::Current`], then every change.
    fn watch(&self) -> KvFuture<'_, BoxStream<'static, Result<KvChange, KvError>>>;
    /// Whether [`CasKv::put_all_if`] writes batches.
    fn batches(&self) -> bool {
        false
    }
    /// Writes every one of `writes` (distinct keys) if every key has the
    /// revision its write expects, else none ([`KvError::Conflict`]); the
    /// new revisions, in order. A store that does not batch refuses
    /// ([`KvError::BatchRefused`]).
    fn put_all_if<'a>(&'a self, writes: &'a [KvWrite]) -> KvFuture<'a, Vec<u64>> {
        let _ = writes;
        Box::pin(async { Err(KvError::BatchRefused("this store writes one key at a time".to_owned())) })
    }
}

/// Whether `key` is one a [`CasKv`] accepts: 1..=[`KV_KEY_BYTES_MAX`] bytes
/// of ASCII letters, digits, `-`, `_`, `=` and `.`, not starting or ending
/// with `.`.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= KV_KEY_BYTES_MAX
        && !key.starts_with('.')
        && !key.ends_with('.')
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=' | b'.'))
}

/// Changes a [`MemKv`] watcher may fall behind by before it is cut off
/// (it then sees its stream end and watches again).
pub const MEM_KV_WATCH_BUFFER_MAX: usize = 4096;

#[derive(Debug, Default)]
struct MemState {
    values: HashMap<String, (Vec<u8>, u64)>,
    /// Revisions of deleted keys, so a write after a deletion expects it.
    last_revision: u64,
}

/// An in-memory [`CasKv`] holding at most `keys_max` keys. Clones share
/// the store. Nothing expires.
#[derive(Debug, Clone)]
pub struct MemKv {
    state: Arc<Mutex<MemState>>,
    keys_max: usize,
    changes: tokio::sync::broadcast::Sender<KvChange>,
}

impl MemKv {
    /// An empty store of at most `keys_max` keys.
    pub fn new(keys_max: usize) -> Self {
        let (changes, _) = tokio::sync::broadcast::channel(MEM_KV_WATCH_BUFFER_MAX);
        Self { state: Arc::default(), keys_max, changes }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemState> {
        // Entries are replaced whole, so a panic elsewhere leaves them usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.lock().values.len()
    }

    /// Whether the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every key (a test's "the bucket expired").
    pub fn clear(&self) {
        self.lock().values.clear();
    }
}

impl CasKv for MemKv {
    fn get<'a>(&'a self, key: &'a str) -> KvFuture<'a, KvValue> {
        Box::pin(async move {
            if !valid_key(key) {
                return Err(KvError::InvalidKey);
            }
            let s = self.lock();
            Ok(match s.values.get(key) {
                Some((v, rev)) => KvValue { value: Some(v.clone()), revision: *rev },
                None => KvValue { value: None, revision: 0 },
            })
        })
    }

    fn put_if<'a>(&'a self, key: &'a str, value: Vec<u8>, expected: u64) -> KvFuture<'a, u64> {
        Box::pin(async move {
            if !valid_key(key) {
                return Err(KvError::InvalidKey);
            }
            let mut s = self.lock();
            let current = s.values.get(key).map_or(0, |(_, rev)| *rev);
            if current != expected {
                return Err(KvError::Conflict);
            }
            if current == 0 && s.values.len() >= self.keys_max {
                return Err(KvError::Full);
            }
            s.last_revision += 1;
            let revision = s.last_revision;
            s.values.insert(key.to_owned(), (value.clone(), revision));
            // Sent under the lock, so watchers see revisions in order.
            let _ = self.changes.send(KvChange::Put { key: key.to_owned(), value, revision });
            Ok(revision)
        })
    }

    fn batches(&self) -> bool {
        true
    }

    fn put_all_if<'a>(&'a self, writes: &'a [KvWrite]) -> KvFuture<'a, Vec<u64>> {
        Box::pin(async move {
            if writes.iter().any(|w| !valid_key(&w.key)) {
                return Err(KvError::InvalidKey);
            }
            let mut s = self.lock();
            let mut new_keys = 0;
            for (i, w) in writes.iter().enumerate() {
                if writes[..i].iter().any(|o| o.key == w.key) {
                    return Err(KvError::BatchRefused(format!("{} twice in one batch", w.key)));
                }
                let current = s.values.get(&w.key).map_or(0, |(_, rev)| *rev);
                if current != w.expected {
                    return Err(KvError::Conflict);
                }
                new_keys += usize::from(current == 0);
            }
            if s.values.len() + new_keys > self.keys_max {
                return Err(KvError::Full);
            }
            let mut revisions = Vec::with_capacity(writes.len());
            for w in writes {
                s.last_revision += 1;
                let revision = s.last_revision;
                s.values.insert(w.key.clone(), (w.value.clone(), revision));
                let _ =
                    self.changes.send(KvChange::Put { key: w.key.clone(), value: w.value.clone(), revision });
                revisions.push(revision);
            }
            Ok(revisions)
        })
    }

    fn watch(&self) -> KvFuture<'_, BoxStream<'static, Result<KvChange, KvError>>> {
        Box::pin(async move {
            // Subscribe before the snapshot, so nothing falls between them;
            // a change seen twice carries the same revision.
            let rx = self.changes.subscribe();
            let snapshot: BTreeMap<u64, KvChange> = self
                .lock()
                .values
                .iter()
                .map(|(k, (v, rev))| {
                    (*rev, KvChange::Put { key: k.clone(), value: v.clone(), revision: *rev })
                })
                .collect();
            let head = futures::stream::iter(
                snapshot.into_values().chain(std::iter::once(KvChange::Current)).map(Ok),
            );
            let live = futures::stream::unfold(rx, |mut rx| async move {
                match rx.recv().await {
                    Ok(change) => Some((Ok(change), rx)),
                    // Fell behind or the store is gone: the stream ends.
                    Err(_) => None,
                }
            });
            Ok(head.chain(live).boxed())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_are_compare_and_set_and_bounded() {
        let kv = MemKv::new(2);
        assert_eq!(kv.get("a").await.unwrap(), KvValue { value: None, revision: 0 });
        let r1 = kv.put_if("a", b"1".to_vec(), 0).await.unwrap();
        assert_eq!(kv.put_if("a", b"x".to_vec(), 0).await, Err(KvError::Conflict));
        let r2 = kv.put_if("a", b"2".to_vec(), r1).await.unwrap();
        assert!(r2 > r1);
        assert_eq!(kv.get("a").await.unwrap(), KvValue { value: Some(b"2".to_vec()), revision: r2 });
        kv.put_if("b", b"1".to_vec(), 0).await.unwrap();
        assert_eq!(kv.put_if("c", b"1".to_vec(), 0).await, Err(KvError::Full));
        kv.put_if("b", b"2".to_vec(), r2 + 1).await.unwrap();
        for bad in ["", ".a", "a.", "a b", "a*", "a>"] {
            assert_eq!(kv.get(bad).await, Err(KvError::InvalidKey), "{bad:?}");
        }
        assert!(valid_key("n.0a1b"));
    }

    #[tokio::test]
    async fn a_watch_yields_the_snapshot_then_current_then_changes() {
        let kv = MemKv::new(10);
        let r1 = kv.put_if("a", b"1".to_vec(), 0).await.unwrap();
        let mut w = kv.watch().await.unwrap();
        assert_eq!(
            w.next().await.unwrap().unwrap(),
            KvChange::Put { key: "a".into(), value: b"1".to_vec(), revision: r1 }
        );
        assert_eq!(w.next().await.unwrap().unwrap(), KvChange::Current);
        let r2 = kv.put_if("b", b"2".to_vec(), 0).await.unwrap();
        assert_eq!(
            w.next().await.unwrap().unwrap(),
            KvChange::Put { key: "b".into(), value: b"2".to_vec(), revision: r2 }
        );
    }
}
