//! The projection commitment: a homomorphic multiset hash over every stored
//! projection pair, kept by the writer as it commits, signed in every
//! checkpoint (format version 2, [`mpp_core::checkpoint`]).
//!
//! The hash is LtHash16 (Bellare–Micciancio's lattice-based incremental
//! hash, as Facebook's LtHash paper instantiates it): the state is 1024
//! lanes of `u16` (2 KiB); a pair `(key, value)` hashes to 2048 bytes of
//! BLAKE3 XOF output read as 1024 little-endian `u16`, keyed by a key derived
//! for this purpose only, over `u32 key length (big-endian) || key || value`;
//! the multiset's hash is the lane-wise sum (mod 2^16) of its pairs'. So
//!
//! * the order in which pairs were added does not matter,
//! * an update of one pair is "subtract the old pair's hash, add the new
//!   one's", O(size of the pair), whatever the number of pairs stored,
//! * the state of a store is the sum over its pairs, recomputed from
//!   scratch in one pass over them ([`crate::KvStore::recompute_projection_commitment`]).
//!
//! Plain sums of 256-bit hashes modulo 2^256 are not used: Wagner's
//! generalized birthday attack finds a multiset of pairs with a chosen sum
//! cheaply. Finding a multiset that collides in LtHash16 is as hard as the
//! short integer solution problem in 1024 dimensions modulo 2^16 (about 200
//! bits of security by the LtHash paper's estimate).
//!
//! The key of every pair starts with its kind (`C` case, `T` timeline
//! chunk, `S` standard, `R` registry, `E` event-id index part; see the crate
//! docs' layout), which is the tag of `h(tag || key || value)`.
//!
//! The digest signed in checkpoints is the BLAKE3 hash (derived-key mode,
//! its own context) of the 2 KiB state.

use mpp_core::log::Hash32;

/// Lanes of the state.
pub const LANES: usize = 1024;

/// Bytes of the state (and of one pair's hash).
pub const STATE_BYTES: usize = LANES * 2;

/// BLAKE3 key-derivation context of the per-pair key.
const PAIR_CONTEXT: &str = "mpp-hub 2026-12-07 mpp-store projection commitment: pair hash (LtHash16)";

/// BLAKE3 key-derivation context of the digest of the state.
const DIGEST_CONTEXT: &str = "mpp-hub 2026-12-07 mpp-store projection commitment: digest of the state";

/// Pairs below which a batch's hashes are computed on the calling thread
/// only: spawning threads costs tens of microseconds, one pair's hash about
/// one.
pub const PARALLEL_PAIRS_MIN: usize = 256;

/// Most threads hashing one batch's pairs (the hub runs on a few cores).
pub const HASH_THREADS_MAX: usize = 8;

/// A multiset hash state (see the module docs).
#[derive(Clone, PartialEq, Eq)]
pub struct LtHash {
    lanes: Box<[u16; LANES]>,
}

impl std::fmt::Debug for LtHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LtHash({})", hex_of(&self.digest()))
    }
}

fn hex_of(h: &Hash32) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

impl Default for LtHash {
    fn default() -> Self {
        Self::new()
    }
}

fn pair_key() -> &'static [u8; 32] {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    KEY.get_or_init(|| blake3::derive_key(PAIR_CONTEXT, b""))
}

/// The 2048-byte hash of one pair.
fn pair_hash(key: &[u8], value: &[u8]) -> [u8; STATE_BYTES] {
    let mut h = blake3::Hasher::new_keyed(pair_key());
    // A key is at most a few dozen bytes (the layout's keys).
    h.update(&(key.len() as u32).to_be_bytes());
    h.update(key);
    h.update(value);
    let mut out = [0u8; STATE_BYTES];
    h.finalize_xof().fill(&mut out);
    out
}

impl LtHash {
    /// The hash of the empty multiset (every lane 0).
    pub fn new() -> Self {
        LtHash { lanes: Box::new([0u16; LANES]) }
    }

    /// Adds the pair `(key, value)`.
    pub fn add_pair(&mut self, key: &[u8], value: &[u8]) {
        let h = pair_hash(key, value);
        for (lane, b) in self.lanes.iter_mut().zip(h.chunks_exact(2)) {
            *lane = lane.wrapping_add(u16::from_le_bytes([b[0], b[1]]));
        }
    }

    /// Removes the pair `(key, value)` (which must have been added).
    pub fn remove_pair(&mut self, key: &[u8], value: &[u8]) {
        let h = pair_hash(key, value);
        for (lane, b) in self.lanes.iter_mut().zip(h.chunks_exact(2)) {
            *lane = lane.wrapping_sub(u16::from_le_bytes([b[0], b[1]]));
        }
    }

    /// Adds every pair of the multiset `other` hashes.
    pub fn add(&mut self, other: &LtHash) {
        for (a, b) in self.lanes.iter_mut().zip(other.lanes.iter()) {
            *a = a.wrapping_add(*b);
        }
    }

    /// The 32-byte digest of the state (what checkpoints sign).
    pub fn digest(&self) -> Hash32 {
        let mut h = blake3::Hasher::new_derive_key(DIGEST_CONTEXT);
        h.update(&self.to_bytes());
        *h.finalize().as_bytes()
    }

    /// The state as stored: each lane little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(STATE_BYTES);
        for lane in self.lanes.iter() {
            out.extend_from_slice(&lane.to_le_bytes());
        }
        out
    }

    /// The state of [`LtHash::to_bytes`]; `None` if `bytes` is not 2 KiB.
    pub fn from_bytes(bytes: &[u8]) -> Option<LtHash> {
        if bytes.len() != STATE_BYTES {
            return None;
        }
        let mut s = LtHash::new();
        for (lane, b) in s.lanes.iter_mut().zip(bytes.chunks_exact(2)) {
            *lane = u16::from_le_bytes([b[0], b[1]]);
        }
        Some(s)
    }
}

/// One pair a write changes: its key, the value it replaces (if any) and
/// the new value.
pub(crate) type Change<'a> = (&'a [u8], Option<&'a [u8]>, &'a [u8]);

/// The state `changes` add to a store's (each old pair removed, each new
/// one added), hashed on up to [`HASH_THREADS_MAX`] threads when there are
/// at least [`PARALLEL_PAIRS_MIN`] of them.
pub(crate) fn delta(changes: &[Change<'_>]) -> LtHash {
    fn serial(changes: &[Change<'_>]) -> LtHash {
        let mut d = LtHash::new();
        for (key, old, new) in changes {
            if let Some(old) = old {
                d.remove_pair(key, old);
            }
            d.add_pair(key, new);
        }
        d
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(HASH_THREADS_MAX);
    if changes.len() < PARALLEL_PAIRS_MIN || threads < 2 {
        return serial(changes);
    }
    let per = changes.len().div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = changes.chunks(per).map(|c| s.spawn(move || serial(c))).collect();
        let mut d = LtHash::new();
        for p in parts {
            // A hashing thread does not panic (no allocation beyond its state).
            d.add(&p.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        d
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn of(pairs: &[(Vec<u8>, Vec<u8>)]) -> LtHash {
        let mut h = LtHash::new();
        for (k, v) in pairs {
            h.add_pair(k, v);
        }
        h
    }

    fn pairs() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
        proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 1..20), proptest::collection::vec(any::<u8>(), 0..300)),
            0..40,
        )
    }

    proptest! {
        #[test]
        fn the_order_of_the_pairs_does_not_matter(ps in pairs(), seed in any::<u64>()) {
            let mut shuffled = ps.clone();
            // A deterministic shuffle.
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            prop_assert_eq!(of(&ps).digest(), of(&shuffled).digest());
        }

        #[test]
        fn removing_a_pair_undoes_adding_it(ps in pairs(), k in proptest::collection::vec(any::<u8>(), 1..20), v in proptest::collection::vec(any::<u8>(), 0..300)) {
            let before = of(&ps);
            let mut h = before.clone();
            h.add_pair(&k, &v);
            prop_assert_ne!(h.digest(), before.digest());
            h.remove_pair(&k, &v);
            prop_assert_eq!(h, before);
        }

        #[test]
        fn a_changed_value_changes_the_digest(ps in pairs(), i in any::<prop::sample::Index>(), bit in 0usize..8, at in any::<prop::sample::Index>()) {
            prop_assume!(!ps.is_empty());
            let mut changed = ps.clone();
            let i = i.index(changed.len());
            if changed[i].1.is_empty() {
                changed[i].1.push(0);
            } else {
                let j = at.index(changed[i].1.len());
                changed[i].1[j] ^= 1 << bit;
            }
            prop_assert_ne!(of(&ps).digest(), of(&changed).digest());
        }

        #[test]
        fn incremental_updates_equal_a_recompute(
            ps in pairs(),
            updates in proptest::collection::vec((any::<prop::sample::Index>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..60),
        ) {
            // A key-value map updated pair by pair, its hash kept
            // incrementally (serially, and through `delta` in one go).
            let mut map: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = ps.into_iter().collect();
            let mut h = of(&map.clone().into_iter().collect::<Vec<_>>());
            let start = h.clone();
            let keys: Vec<Vec<u8>> = map.keys().cloned().collect();
            // (key, the value replaced, the new value)
            type Update = (Vec<u8>, Option<Vec<u8>>, Vec<u8>);
            let mut log: Vec<Update> = Vec::new();
            for (n, (i, v)) in updates.into_iter().enumerate() {
                // Half the updates replace a value, half add a new key.
                let k = if n % 2 == 0 && !keys.is_empty() { keys[i.index(keys.len())].clone() } else { format!("new{n}").into_bytes() };
                let old = map.insert(k.clone(), v.clone());
                if let Some(o) = &old {
                    h.remove_pair(&k, o);
                }
                h.add_pair(&k, &v);
                log.push((k, old, v));
            }
            let recomputed = of(&map.into_iter().collect::<Vec<_>>());
            prop_assert_eq!(&h, &recomputed);
            let changes: Vec<Change<'_>> = log.iter().map(|(k, o, v)| (k.as_slice(), o.as_deref(), v.as_slice())).collect();
            let mut again = start;
            again.add(&delta(&changes));
            prop_assert_eq!(again, recomputed);
        }
    }

    #[test]
    fn delta_on_threads_equals_the_serial_sum() {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..PARALLEL_PAIRS_MIN * 3)
            .map(|i| (format!("C{i}").into_bytes(), vec![i as u8; i % 50]))
            .collect();
        let changes: Vec<Change<'_>> =
            pairs.iter().map(|(k, v)| (k.as_slice(), None, v.as_slice())).collect();
        assert_eq!(delta(&changes), of(&pairs));
        let bytes = of(&pairs).to_bytes();
        assert_eq!(LtHash::from_bytes(&bytes).unwrap(), of(&pairs));
        assert!(LtHash::from_bytes(&bytes[1..]).is_none());
    }
}
