//! The Merkle tree over the log: RFC 9162 (Certificate Transparency v2)
//! hashing, an incremental frontier, proof generation and proof verification.
//!
//! Guarantee: a root hash of tree size `n` commits to the first `n` log
//! entries, in order; an inclusion proof shows that one entry is among them at
//! its position, and a consistency proof shows that the tree of size `m` is a
//! prefix of the tree of size `n`. Verification needs nothing but the proof,
//! the sizes and the roots, so an auditor runs it offline.
//!
//! # Hashing (RFC 9162 §2.1.1, SHA-256)
//!
//! ```text
//! empty tree  MTH({})      = SHA-256()                       (EMPTY_ROOT)
//! leaf        MTH({d})     = SHA-256(0x00 || d)              (leaf_hash)
//! node        MTH(D[n])    = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))
//!                            k = the largest power of two below n
//! ```
//!
//! The leaf data `d` of the log entry with sequence `seq` is its 32-byte chain
//! hash ([`crate::log::LogEntry::hash`]), at leaf index `seq - 1`; the tree
//! size is the log's `last_seq` ([`entry_leaf_hash`]). This is sound: the chain
//! hash is SHA-256 over a domain tag and the entry's canonical encoding, which
//! holds every field of the entry (its `seq` among them) and the previous
//! entry's hash, so under SHA-256's collision resistance the leaf commits to
//! the whole entry and to everything before it, and hashing the payload a
//! second time would add nothing. The 0x00/0x01 prefixes keep a leaf from
//! being passed off as an interior node (and back). An auditor holding an
//! entry's stored record decodes it (which recomputes and checks the chain
//! hash), checks `seq == index + 1`, and verifies the proof with
//! `entry_leaf_hash(&entry.hash)`.
//!
//! # Costs and storage
//!
//! [`MerkleFrontier`] keeps the root of the growing tree current in O(log n)
//! memory and amortised two SHA-256 calls per entry (a leaf hash and, on
//! average, one node hash), so the hub updates it at ingest for nothing and an
//! auditor replays any number of entries with bounded memory. Its bytes
//! ([`MerkleFrontier::to_bytes`], at most [`FRONTIER_BYTES_MAX`]) belong in the
//! same batch as the head they describe.
//!
//! Proofs read hashes from a [`NodeSource`]. Every node that a proof needs is
//! either a complete, aligned subtree (`2^level` leaves starting at leaf
//! `index << level`), whose hash never changes once it is complete, or is
//! combined from at most 64 of them. Recommended storage scheme (for the
//! store's owner): persist the hash of every complete aligned subtree of level
//! [`STORED_SUBTREE_LEVEL_MIN`] (1024 leaves) and above, for example under key
//! `"M" level:u8 index:u64` (big-endian) in the same commit batch as the
//! entries that complete it. [`MerkleFrontier::push_with`] reports exactly
//! those subtrees as they complete. That costs about two keys of 32 bytes per
//! 1024 entries (1 + 1/2 + 1/4 + ...); [`NodeSource::stored_subtree_hash`]
//! serves them, and everything below level 10 is recomputed from at most 1024
//! leaf hashes ([`NodeSource::leaf_hashes`]). One proof then costs at most a
//! few hundred stored hashes and a few thousand leaf hashes, whatever the
//! log's length: O(log n + 2^10). [`MemTree`] is this scheme in memory.
//! Without stored subtrees (a bare list of leaf hashes) a proof costs O(n).

use sha2::{Digest, Sha256};

use crate::log::Hash32;

/// Prefix of a leaf hash's input (RFC 9162 §2.1.1).
pub const LEAF_PREFIX: u8 = 0x00;

/// Prefix of an interior node hash's input (RFC 9162 §2.1.1).
pub const NODE_PREFIX: u8 = 0x01;

/// The root of the empty tree: SHA-256 of the empty string.
pub const EMPTY_ROOT: Hash32 = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27,
    0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Most levels above the leaves: a tree of up to `u64::MAX` leaves is at most
/// 64 levels high, and its frontier holds at most 64 hashes.
pub const TREE_LEVELS_MAX: u32 = 64;

/// Longest inclusion proof: one hash per level.
pub const INCLUSION_PROOF_HASHES_MAX: usize = 64;

/// Longest consistency proof: one hash per level, plus the old tree's node
/// when the old size is not a power of two.
pub const CONSISTENCY_PROOF_HASHES_MAX: usize = 65;

/// Format version byte of [`MerkleFrontier::to_bytes`].
pub const FRONTIER_FORMAT_V1: u8 = 1;

/// Largest frontier encoding: version, size, and 64 hashes.
pub const FRONTIER_BYTES_MAX: usize = 1 + 8 + 32 * TREE_LEVELS_MAX as usize;

/// Lowest level of subtree whose hash the store is recommended to persist
/// (subtrees of 1024 leaves and larger); see the module docs.
pub const STORED_SUBTREE_LEVEL_MIN: u32 = 10;

/// Subtrees of up to `2^LEAF_BATCH_LEVEL_MAX` leaves that the source does not
/// store are computed from one batch of leaf hashes (32 KiB at most) rather
/// than by asking the source for each of their inner nodes.
pub const LEAF_BATCH_LEVEL_MAX: u32 = 10;

/// The leaf hash of leaf data `data`: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash32 {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(data);
    h.finalize().into()
}

/// The leaf hash of a log entry, given its chain hash
/// ([`crate::log::LogEntry::hash`]): `SHA-256(0x00 || entry_hash)`.
pub fn entry_leaf_hash(entry_hash: &Hash32) -> Hash32 {
    let mut buf = [0u8; 33];
    buf[0] = LEAF_PREFIX;
    buf[1..].copy_from_slice(entry_hash);
    Sha256::digest(buf).into()
}

/// An interior node's hash: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash32, right: &Hash32) -> Hash32 {
    let mut buf = [0u8; 65];
    buf[0] = NODE_PREFIX;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    Sha256::digest(buf).into()
}

/// The largest power of two strictly below `n`; `n` must be at least 2.
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The root of the tree over `leaves` (leaf hashes), straight from the
/// recursive definition MTH of RFC 9162 §2.1.1. A reference for tests: it
/// holds the leaves in memory and recurses, where [`MerkleFrontier`] streams.
pub fn root_of(leaves: &[Hash32]) -> Hash32 {
    match leaves.len() {
        0 => EMPTY_ROOT,
        1 => leaves[0],
        n => {
            // usize fits in u64 on every supported target.
            let k = split(n as u64) as usize;
            node_hash(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

/// A complete, aligned subtree: the `2^level` leaves from index
/// `index << level`, and their root hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subtree {
    /// Height above the leaves (0 for a single leaf).
    pub level: u32,
    /// Position among the subtrees of this level (the first leaf is `index << level`).
    pub index: u64,
    /// The subtree's root hash.
    pub hash: Hash32,
}

/// The tree is full: it already holds `u64::MAX` leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the Merkle tree already holds u64::MAX leaves")]
pub struct TreeFull;

/// Why bytes do not decode to a frontier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrontierDecodeError {
    /// Fewer bytes than the version and size.
    #[error("frontier is truncated")]
    Truncated,
    /// Unknown format version.
    #[error("unknown frontier format version {0}")]
    UnknownFormat(u8),
    /// The number of hashes is not the number of one bits of the size.
    #[error("frontier of size {size} needs {want} hashes, found {found_bytes} bytes of hashes")]
    WrongLength {
        /// The decoded tree size.
        size: u64,
        /// How many hashes that size needs.
        want: u32,
        /// How many bytes followed the size.
        found_bytes: usize,
    },
}

/// The right edge of a growing tree (a compact range over `[0, size)`): the
/// root of each complete aligned subtree whose sizes add up to `size`, one per
/// one bit of `size`, largest (leftmost) first. Appending a leaf and computing
/// the root take O(log n) time and the whole state is at most 64 hashes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MerkleFrontier {
    size: u64,
    /// `hashes[i]` roots the subtree for the i-th highest one bit of `size`.
    hashes: Vec<Hash32>,
}

impl MerkleFrontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        MerkleFrontier { size: 0, hashes: Vec::with_capacity(TREE_LEVELS_MAX as usize) }
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The complete aligned subtrees that make up the tree, largest first.
    pub fn subtrees(&self) -> impl Iterator<Item = Subtree> + '_ {
        let mut offset = 0u64;
        let mut bits = self.size;
        self.hashes.iter().map(move |hash| {
            let level = 63 - bits.leading_zeros();
            bits &= !(1u64 << level);
            let s = Subtree { level, index: offset >> level, hash: *hash };
            offset += 1u64 << level;
            s
        })
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash32) -> Result<(), TreeFull> {
        self.push_with(leaf, |_| {})
    }

    /// Appends a leaf hash and reports each complete aligned subtree it
    /// completes, lowest first: the leaf itself at level 0, then each merged
    /// subtree. The store persists those at [`STORED_SUBTREE_LEVEL_MIN`] and
    /// above.
    pub fn push_with(&mut self, leaf: Hash32, mut on_complete: impl FnMut(Subtree)) -> Result<(), TreeFull> {
        let index = self.size;
        let new_size = index.checked_add(1).ok_or(TreeFull)?;
        let mut hash = leaf;
        on_complete(Subtree { level: 0, index, hash });
        // The frontier holds one hash per one bit of the size, so each
        // trailing one bit of the old size is a subtree to merge with.
        let merges = index.trailing_ones() as usize;
        let keep = self.hashes.len().saturating_sub(merges);
        for (level, left) in (1u32..).zip(self.hashes.drain(keep..).rev()) {
            hash = node_hash(&left, &hash);
            on_complete(Subtree { level, index: index >> level, hash });
        }
        self.hashes.push(hash);
        self.size = new_size;
        Ok(())
    }

    /// The root hash of the tree ([`EMPTY_ROOT`] when empty).
    pub fn root(&self) -> Hash32 {
        let mut it = self.hashes.iter().rev();
        let Some(last) = it.next() else {
            return EMPTY_ROOT;
        };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }

    /// The encoding: `u8 version = 1 | u64 size (big-endian) | 32 bytes per
    /// one bit of size`, largest subtree first.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + 32 * self.hashes.len());
        out.push(FRONTIER_FORMAT_V1);
        out.extend_from_slice(&self.size.to_be_bytes());
        for h in &self.hashes {
            out.extend_from_slice(h);
        }
        out
    }

    /// Decodes [`MerkleFrontier::to_bytes`]. The hashes cannot be checked
    /// here; compare the root with a signed checkpoint to trust them.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, FrontierDecodeError> {
        let (&format, rest) = bytes.split_first().ok_or(FrontierDecodeError::Truncated)?;
        if format != FRONTIER_FORMAT_V1 {
            return Err(FrontierDecodeError::UnknownFormat(format));
        }
        let size_bytes: [u8; 8] =
            rest.get(..8).and_then(|s| s.try_into().ok()).ok_or(FrontierDecodeError::Truncated)?;
        let size = u64::from_be_bytes(size_bytes);
        let body = &rest[8..];
        let want = size.count_ones();
        if body.len() != 32 * want as usize {
            return Err(FrontierDecodeError::WrongLength { size, want, found_bytes: body.len() });
        }
        let hashes = body
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Ok(MerkleFrontier { size, hashes })
    }

    /// The frontier of the first `size` leaves of `source`: one complete
    /// subtree per one bit of `size`. With the recommended storage scheme that
    /// is at most 64 stored hashes and 1023 leaf hashes.
    pub fn from_source<S: NodeSource + ?Sized>(source: &S, size: u64) -> Result<Self, S::Error> {
        let mut hashes = Vec::with_capacity(size.count_ones() as usize);
        let mut offset = 0u64;
        for level in (0..TREE_LEVELS_MAX).rev() {
            if size & (1u64 << level) != 0 {
                hashes.push(complete_subtree(source, level, offset >> level)?);
                offset += 1u64 << level;
            }
        }
        Ok(MerkleFrontier { size, hashes })
    }
}

/// Where proof generation reads hashes: the leaf hashes of the log and,
/// optionally, stored hashes of complete aligned subtrees.
pub trait NodeSource {
    /// Why a hash could not be read (a missing leaf, an IO error).
    type Error;

    /// The leaf hash at `index` (for the log: [`entry_leaf_hash`] of the
    /// chain hash of the entry with `seq = index + 1`).
    fn leaf_hash(&self, index: u64) -> Result<Hash32, Self::Error>;

    /// The leaf hashes from `start` on, one per slot of `out`. The default
    /// asks [`NodeSource::leaf_hash`] for each; a store that packs entries
    /// into blocks can read each block once.
    fn leaf_hashes(&self, start: u64, out: &mut [Hash32]) -> Result<(), Self::Error> {
        for (i, slot) in (start..).zip(out.iter_mut()) {
            *slot = self.leaf_hash(i)?;
        }
        Ok(())
    }

    /// The stored hash of the complete aligned subtree of `2^level` leaves
    /// from leaf `index << level`, or `None` when it is not stored (the
    /// default), in which case it is computed from lower levels and leaves.
    /// Only ever asked for `level >= 1` and for subtrees inside the tree size
    /// the proof is for, so a subtree's hash never depends on that size.
    fn stored_subtree_hash(&self, level: u32, index: u64) -> Result<Option<Hash32>, Self::Error> {
        let _ = (level, index);
        Ok(None)
    }
}

/// A leaf index past the end of an in-memory list of leaf hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("leaf {index} is beyond the {len} leaves held")]
pub struct LeafOutOfRange {
    /// The leaf asked for.
    pub index: u64,
    /// How many leaves there are.
    pub len: u64,
}

/// Leaf hashes held in memory, for tests and small trees.
impl NodeSource for [Hash32] {
    type Error = LeafOutOfRange;

    fn leaf_hash(&self, index: u64) -> Result<Hash32, LeafOutOfRange> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.get(i))
            .copied()
            .ok_or(LeafOutOfRange { index, len: self.len() as u64 })
    }

    fn leaf_hashes(&self, start: u64, out: &mut [Hash32]) -> Result<(), LeafOutOfRange> {
        let len = self.len() as u64;
        let end = start.checked_add(out.len() as u64).filter(|&e| e <= len);
        match end {
            Some(end) => {
                // Both bounds are at most `self.len()`, so they fit in usize.
                out.copy_from_slice(&self[start as usize..end as usize]);
                Ok(())
            }
            // The first leaf missing is the later of `start` and the end.
            None => Err(LeafOutOfRange { index: start.max(len), len }),
        }
    }
}

/// Leaf hashes held in memory, for tests and small trees.
impl NodeSource for Vec<Hash32> {
    type Error = LeafOutOfRange;

    fn leaf_hash(&self, index: u64) -> Result<Hash32, LeafOutOfRange> {
        self.as_slice().leaf_hash(index)
    }

    fn leaf_hashes(&self, start: u64, out: &mut [Hash32]) -> Result<(), LeafOutOfRange> {
        self.as_slice().leaf_hashes(start, out)
    }
}

/// A tree held in memory the way the recommended storage scheme holds it on
/// disk: every leaf hash, plus the hash of every complete aligned subtree of
/// level [`STORED_SUBTREE_LEVEL_MIN`] and above, plus the frontier. About
/// 32 bytes per leaf; every proof costs O(log n + 2^10) hashes. For tests,
/// an in-memory store, and auditors who replay a log and then answer proofs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemTree {
    frontier: MerkleFrontier,
    leaves: Vec<Hash32>,
    /// `stored[level - STORED_SUBTREE_LEVEL_MIN][index]`.
    stored: Vec<Vec<Hash32>>,
}

impl MemTree {
    /// The empty tree.
    pub fn new() -> Self {
        MemTree::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The root hash of the tree.
    pub fn root(&self) -> Hash32 {
        self.frontier.root()
    }

    /// The frontier of the whole tree.
    pub fn frontier(&self) -> &MerkleFrontier {
        &self.frontier
    }

    /// Every leaf hash, in order.
    pub fn leaves(&self) -> &[Hash32] {
        &self.leaves
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash32) -> Result<(), TreeFull> {
        let stored = &mut self.stored;
        self.frontier.push_with(leaf, |s| {
            if let Some(slot) = s.level.checked_sub(STORED_SUBTREE_LEVEL_MIN) {
                let slot = slot as usize;
                if stored.len() <= slot {
                    stored.resize_with(slot + 1, Vec::new);
                }
                // Subtrees of one level complete in index order.
                debug_assert_eq!(stored[slot].len() as u64, s.index);
                stored[slot].push(s.hash);
            }
        })?;
        self.leaves.push(leaf);
        Ok(())
    }
}

impl NodeSource for MemTree {
    type Error = LeafOutOfRange;

    fn leaf_hash(&self, index: u64) -> Result<Hash32, LeafOutOfRange> {
        self.leaves.as_slice().leaf_hash(index)
    }

    fn leaf_hashes(&self, start: u64, out: &mut [Hash32]) -> Result<(), LeafOutOfRange> {
        self.leaves.as_slice().leaf_hashes(start, out)
    }

    fn stored_subtree_hash(&self, level: u32, index: u64) -> Result<Option<Hash32>, LeafOutOfRange> {
        let Some(slot) = level.checked_sub(STORED_SUBTREE_LEVEL_MIN) else {
            return Ok(None);
        };
        let hash = self
            .stored
            .get(slot as usize)
            .and_then(|level| usize::try_from(index).ok().and_then(|i| level.get(i)))
            .copied();
        Ok(hash)
    }
}

/// The hash of the complete aligned subtree `(level, index)`: stored, or
/// computed from leaves (in one batch up to [`LEAF_BATCH_LEVEL_MAX`]) or from
/// its two halves. Callers pass only subtrees that fit in a u64 tree.
fn complete_subtree<S: NodeSource + ?Sized>(source: &S, level: u32, index: u64) -> Result<Hash32, S::Error> {
    debug_assert!(level < TREE_LEVELS_MAX);
    if level == 0 {
        return source.leaf_hash(index);
    }
    if let Some(h) = source.stored_subtree_hash(level, index)? {
        return Ok(h);
    }
    if level <= LEAF_BATCH_LEVEL_MAX {
        let mut buf = vec![[0u8; 32]; 1usize << level];
        source.leaf_hashes(index << level, &mut buf)?;
        let mut width = buf.len();
        while width > 1 {
            width /= 2;
            for i in 0..width {
                buf[i] = node_hash(&buf[2 * i], &buf[2 * i + 1]);
            }
        }
        return Ok(buf[0]);
    }
    let left = complete_subtree(source, level - 1, index * 2)?;
    let right = complete_subtree(source, level - 1, index * 2 + 1)?;
    Ok(node_hash(&left, &right))
}

/// MTH of the `n >= 1` leaves from `start`, where `start` is a node of the
/// RFC 9162 tree (a multiple of the smallest power of two at least `n`): the
/// fold, right to left, of the complete aligned subtrees for the one bits of `n`.
fn range_hash<S: NodeSource + ?Sized>(source: &S, start: u64, n: u64) -> Result<Hash32, S::Error> {
    debug_assert!(n >= 1);
    let mut parts = [[0u8; 32]; TREE_LEVELS_MAX as usize];
    let mut count = 0usize;
    let mut offset = start;
    for level in (0..TREE_LEVELS_MAX).rev() {
        if n & (1u64 << level) != 0 {
            debug_assert_eq!(offset % (1u64 << level), 0, "subtree is not aligned");
            parts[count] = complete_subtree(source, level, offset >> level)?;
            count += 1;
            offset += 1u64 << level;
        }
    }
    let mut acc = parts[count - 1];
    for left in parts[..count - 1].iter().rev() {
        acc = node_hash(left, &acc);
    }
    Ok(acc)
}

/// Why a proof could not be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProveError<E> {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not below tree size {tree_size}")]
    IndexOutOfRange {
        /// The leaf index asked for.
        index: u64,
        /// The tree size asked for.
        tree_size: u64,
    },
    /// The old tree size exceeds the new one.
    #[error("old tree size {old_size} exceeds new tree size {new_size}")]
    SizesOutOfOrder {
        /// The old tree size.
        old_size: u64,
        /// The new tree size.
        new_size: u64,
    },
    /// The source could not supply a hash.
    #[error("reading a tree hash: {0}")]
    Source(E),
}

/// The inclusion proof of leaf `index` in the tree of size `tree_size`
/// (PATH of RFC 9162 §2.1.3.1), lowest sibling first.
pub fn inclusion_proof<S: NodeSource + ?Sized>(
    source: &S,
    index: u64,
    tree_size: u64,
) -> Result<Vec<Hash32>, ProveError<S::Error>> {
    if index >= tree_size {
        return Err(ProveError::IndexOutOfRange { index, tree_size });
    }
    // Walk down from the root: PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])
    // or PATH(m - k, D[k:n]) : MTH(D[0:k]); collect top-down, then reverse.
    let mut proof = Vec::with_capacity(INCLUSION_PROOF_HASHES_MAX);
    let (mut m, mut start, mut n) = (index, 0u64, tree_size);
    while n > 1 {
        let k = split(n);
        if m < k {
            proof.push(range_hash(source, start + k, n - k).map_err(ProveError::Source)?);
            n = k;
        } else {
            proof.push(range_hash(source, start, k).map_err(ProveError::Source)?);
            m -= k;
            start += k;
            n -= k;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// The consistency proof from tree size `old_size` to `new_size` (PROOF and
/// SUBPROOF of RFC 9162 §2.1.4.1), lowest node first. Empty when the sizes
/// are equal or the old tree is empty: those need no proof.
pub fn consistency_proof<S: NodeSource + ?Sized>(
    source: &S,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash32>, ProveError<S::Error>> {
    if old_size > new_size {
        return Err(ProveError::SizesOutOfOrder { old_size, new_size });
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    // SUBPROOF(m, D[n], b): m == n gives {} when b, else {MTH(D[n])};
    // m <= k gives SUBPROOF(m, D[0:k], b) : MTH(D[k:n]);
    // m > k gives SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k]).
    let mut proof = Vec::with_capacity(CONSISTENCY_PROOF_HASHES_MAX);
    let (mut m, mut start, mut n, mut whole) = (old_size, 0u64, new_size, true);
    while m != n {
        let k = split(n);
        if m <= k {
            proof.push(range_hash(source, start + k, n - k).map_err(ProveError::Source)?);
            n = k;
        } else {
            proof.push(range_hash(source, start, k).map_err(ProveError::Source)?);
            m -= k;
            start += k;
            n -= k;
            whole = false;
        }
    }
    if !whole {
        proof.push(range_hash(source, start, n).map_err(ProveError::Source)?);
    }
    proof.reverse();
    Ok(proof)
}

/// The root of the first `tree_size` leaves of `source`.
pub fn root_at<S: NodeSource + ?Sized>(source: &S, tree_size: u64) -> Result<Hash32, S::Error> {
    if tree_size == 0 {
        return Ok(EMPTY_ROOT);
    }
    range_hash(source, 0, tree_size)
}

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not below tree size {tree_size}")]
    IndexOutOfRange {
        /// The claimed leaf index.
        index: u64,
        /// The claimed tree size.
        tree_size: u64,
    },
    /// The old tree size exceeds the new one.
    #[error("old tree size {old_size} exceeds new tree size {new_size}")]
    SizesOutOfOrder {
        /// The claimed old size.
        old_size: u64,
        /// The claimed new size.
        new_size: u64,
    },
    /// The proof has too few or too many hashes for the sizes.
    #[error("proof of {len} hashes has the wrong length for its tree sizes")]
    WrongLength {
        /// The number of hashes in the proof.
        len: usize,
    },
    /// The recomputed root differs from the claimed one (inclusion; or
    /// consistency between equal sizes).
    #[error("recomputed root does not match")]
    RootMismatch,
    /// The recomputed old root differs from the claimed old root.
    #[error("recomputed old root does not match")]
    OldRootMismatch,
    /// The recomputed new root differs from the claimed new root.
    #[error("recomputed new root does not match")]
    NewRootMismatch,
}

/// The root that an inclusion proof leads to from `leaf` at `index` in a tree
/// of `tree_size` leaves (RFC 9162 §2.1.3.2, steps 1-4 and the `sn == 0`
/// check of step 5).
///
/// A proof binds the leaf, its index and the root; it binds the tree size
/// only through the root, which is why a checkpoint signs size and root
/// together.
pub fn root_from_inclusion(
    leaf: &Hash32,
    index: u64,
    tree_size: u64,
    proof: &[Hash32],
) -> Result<Hash32, ProofError> {
    if index >= tree_size {
        return Err(ProofError::IndexOutOfRange { index, tree_size });
    }
    let wrong_length = ProofError::WrongLength { len: proof.len() };
    if proof.len() > INCLUSION_PROOF_HASHES_MAX {
        return Err(wrong_length);
    }
    let (mut fnode, mut snode) = (index, tree_size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(wrong_length);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(wrong_length);
    }
    Ok(r)
}

/// Verifies that `leaf` is the leaf at `index` of the tree of `tree_size`
/// leaves whose root is `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash32,
    index: u64,
    tree_size: u64,
    proof: &[Hash32],
    root: &Hash32,
) -> Result<(), ProofError> {
    if root_from_inclusion(leaf, index, tree_size, proof)? == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// Verifies that the tree of `old_size` leaves with root `old_root` is a
/// prefix of the tree of `new_size` leaves with root `new_root`
/// (RFC 9162 §2.1.4.2).
///
/// The cases RFC 9162's algorithm leaves out are decided as follows: an
/// empty old tree is consistent with any new tree when `old_root` is
/// [`EMPTY_ROOT`] and the proof is empty; equal sizes are consistent when the
/// roots are equal and the proof is empty; an empty tree's root must be
/// [`EMPTY_ROOT`].
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash32,
    new_root: &Hash32,
    proof: &[Hash32],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::SizesOutOfOrder { old_size, new_size });
    }
    if old_size == 0 && *old_root != EMPTY_ROOT {
        return Err(ProofError::OldRootMismatch);
    }
    if new_size == 0 && *new_root != EMPTY_ROOT {
        return Err(ProofError::NewRootMismatch);
    }
    let wrong_length = ProofError::WrongLength { len: proof.len() };
    if old_size == 0 {
        return if proof.is_empty() { Ok(()) } else { Err(wrong_length) };
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(wrong_length);
        }
        return if old_root == new_root { Ok(()) } else { Err(ProofError::RootMismatch) };
    }
    // Step 1: a non-trivial proof is never empty.
    if proof.is_empty() || proof.len() > CONSISTENCY_PROOF_HASHES_MAX {
        return Err(wrong_length);
    }
    // Step 2: when the old size is a power of two, the old root is the
    // first node of the path.
    let (first, rest) = if old_size.is_power_of_two() { (old_root, proof) } else { (&proof[0], &proof[1..]) };
    // Steps 3-4.
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    // Step 5.
    let (mut fr, mut sr) = (*first, *first);
    // Step 6.
    for c in rest {
        if snode == 0 {
            return Err(wrong_length);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    // Step 7.
    if snode != 0 {
        return Err(wrong_length);
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(ProofError::NewRootMismatch);
    }
    Ok(())
}
