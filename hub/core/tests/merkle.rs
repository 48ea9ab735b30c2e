//! The RFC 9162 Merkle tree: known answers, frontier against the recursive
//! definition, inclusion and consistency proofs that verify, and forged
//! proofs that do not.

mod common;

use common::accepted_chain;
use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};

use mpp_core::log::Hash32;
use mpp_core::merkle::{
    consistency_proof, entry_leaf_hash, inclusion_proof, leaf_hash, node_hash, root_at, root_from_inclusion,
    root_of, verify_consistency, verify_inclusion, FrontierDecodeError, LeafOutOfRange, MerkleFrontier,
    NodeSource, ProofError, ProveError, Subtree, TreeFull, CONSISTENCY_PROOF_HASHES_MAX, EMPTY_ROOT,
    FRONTIER_BYTES_MAX, INCLUSION_PROOF_HASHES_MAX,
};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

fn hex(s: &str) -> Vec<u8> {
    assert_eq!(s.len() % 2, 0, "odd hex length: {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test vector is hex"))
        .collect()
}

fn h(s: &str) -> Hash32 {
    hex(s).try_into().expect("test vector hash is 32 bytes")
}

/// `n` distinct leaf hashes, different for each `seed`.
fn leaves(n: u64, seed: u64) -> Vec<Hash32> {
    (0..n)
        .map(|i| {
            let mut d = seed.to_be_bytes().to_vec();
            d.extend_from_slice(&i.to_be_bytes());
            leaf_hash(&d)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Known answers: the RFC 6962 / RFC 9162 test vectors of the Certificate
// Transparency reference implementations (transparency-dev/merkle,
// proof/verify_test.go), whose leaf indices there count from 1.
// ---------------------------------------------------------------------------

const CT_LEAVES: [&str; 8] =
    ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];

/// Root of the first `i` CT leaves, for `i` in 0..=8.
const CT_ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (index from 0, tree size, proof).
const CT_INCLUSION: [(u64, u64, &[&str]); 4] = [
    (
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// (old size, new size, proof).
const CT_CONSISTENCY: [(u64, u64, &[&str]); 4] = [
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

fn ct_leaves() -> Vec<Hash32> {
    CT_LEAVES.iter().map(|l| leaf_hash(&hex(l))).collect()
}

#[test]
fn the_empty_root_is_sha256_of_nothing() {
    let empty: Hash32 = Sha256::digest(b"").into();
    assert_eq!(EMPTY_ROOT, empty);
    assert_eq!(root_of(&[]), EMPTY_ROOT);
    assert_eq!(MerkleFrontier::new().root(), EMPTY_ROOT);
}

#[test]
fn hashes_follow_rfc_9162_prefixes() {
    let mut leaf_input = vec![0x00];
    leaf_input.extend_from_slice(b"abc");
    assert_eq!(leaf_hash(b"abc"), <Hash32>::from(Sha256::digest(&leaf_input)));
    let (a, b) = ([1u8; 32], [2u8; 32]);
    let mut node_input = vec![0x01];
    node_input.extend_from_slice(&a);
    node_input.extend_from_slice(&b);
    assert_eq!(node_hash(&a, &b), <Hash32>::from(Sha256::digest(&node_input)));
    // A log leaf is the leaf hash of the 32-byte chain hash.
    assert_eq!(entry_leaf_hash(&a), leaf_hash(&a));
}

#[test]
fn roots_match_the_ct_reference_for_every_size() {
    let l = ct_leaves();
    let mut f = MerkleFrontier::new();
    for (n, want) in CT_ROOTS.iter().enumerate() {
        assert_eq!(root_of(&l[..n]), h(want), "root_of, size {n}");
        assert_eq!(f.root(), h(want), "frontier, size {n}");
        assert_eq!(root_at(&l, n as u64), Ok(h(want)), "root_at, size {n}");
        if let Some(leaf) = l.get(n) {
            f.push(*leaf).expect("tree is far from full");
        }
    }
}

#[test]
fn inclusion_proofs_match_the_ct_reference() {
    let l = ct_leaves();
    for (index, size, want) in CT_INCLUSION {
        let want: Vec<Hash32> = want.iter().map(|s| h(s)).collect();
        let got = inclusion_proof(&l, index, size).expect("proof of a leaf in the tree");
        assert_eq!(got, want, "index {index} size {size}");
        let root = h(CT_ROOTS[size as usize]);
        assert_eq!(verify_inclusion(&l[index as usize], index, size, &want, &root), Ok(()));
        assert_forged_inclusion_rejected(&l[..size as usize], index, &want, &root);
    }
}

#[test]
fn consistency_proofs_match_the_ct_reference() {
    let l = ct_leaves();
    for (old, new, want) in CT_CONSISTENCY {
        let want: Vec<Hash32> = want.iter().map(|s| h(s)).collect();
        let got = consistency_proof(&l, old, new).expect("sizes within the tree");
        assert_eq!(got, want, "{old} -> {new}");
        let (r1, r2) = (h(CT_ROOTS[old as usize]), h(CT_ROOTS[new as usize]));
        assert_eq!(verify_consistency(old, new, &r1, &r2, &want), Ok(()));
        assert_forged_consistency_rejected(old, new, &r1, &r2, &want);
    }
}

// ---------------------------------------------------------------------------
// The frontier.
// ---------------------------------------------------------------------------

#[test]
fn the_frontier_matches_the_recursive_definition_for_every_size_to_300() {
    let l = leaves(300, 1);
    let mut f = MerkleFrontier::new();
    for n in 0..=300usize {
        let want = root_of(&l[..n]);
        assert_eq!(f.root(), want, "size {n}");
        assert_eq!(f.size(), n as u64);
        assert_eq!(root_at(&l, n as u64), Ok(want), "root_at, size {n}");
        let rebuilt = MerkleFrontier::from_source(&l, n as u64).expect("leaves present");
        assert_eq!(rebuilt, f, "from_source, size {n}");
        let bytes = f.to_bytes();
        assert_eq!(bytes.len(), 9 + 32 * (n as u64).count_ones() as usize);
        assert_eq!(MerkleFrontier::from_bytes(&bytes), Ok(f.clone()), "size {n}");
        if n < 300 {
            f.push(l[n]).expect("tree is far from full");
        }
    }
}

#[test]
fn push_with_reports_exactly_the_complete_aligned_subtrees() {
    let n = 777u64;
    let l = leaves(n, 2);
    let mut f = MerkleFrontier::new();
    let mut seen = BTreeSet::new();
    for leaf in &l {
        let before = f.size();
        let mut levels = Vec::new();
        f.push_with(*leaf, |s: Subtree| {
            let start = (s.index << s.level) as usize;
            let end = ((s.index + 1) << s.level) as usize;
            assert_eq!(end as u64, before + 1, "a subtree completes at the new leaf");
            assert_eq!(s.hash, root_of(&l[start..end]), "subtree {} {}", s.level, s.index);
            assert!(seen.insert((s.level, s.index)), "reported twice: {s:?}");
            levels.push(s.level);
        })
        .expect("tree is far from full");
        assert_eq!(levels, (0..levels.len() as u32).collect::<Vec<_>>(), "lowest first, no gaps");
    }
    let want: BTreeSet<(u32, u64)> =
        (0..10u32).flat_map(|level| (0..(n >> level)).map(move |index| (level, index))).collect();
    assert_eq!(seen, want);
    // The frontier's own parts are the largest of those subtrees.
    let parts: Vec<(u32, u64)> = f.subtrees().map(|s| (s.level, s.index)).collect();
    assert_eq!(parts, vec![(9, 0), (8, 2), (3, 96), (0, 776)]);
}

#[test]
fn frontier_bytes_are_checked() {
    let mut f = MerkleFrontier::new();
    for leaf in leaves(5, 3) {
        f.push(leaf).expect("tree is far from full");
    }
    let bytes = f.to_bytes();
    assert_eq!(MerkleFrontier::from_bytes(&[]), Err(FrontierDecodeError::Truncated));
    assert_eq!(MerkleFrontier::from_bytes(&bytes[..5]), Err(FrontierDecodeError::Truncated));
    let mut v2 = bytes.clone();
    v2[0] = 2;
    assert_eq!(MerkleFrontier::from_bytes(&v2), Err(FrontierDecodeError::UnknownFormat(2)));
    let longer = [bytes.as_slice(), &[0u8; 32][..]].concat();
    for bad in [&bytes[..bytes.len() - 1], &longer[..]] {
        assert!(
            matches!(
                MerkleFrontier::from_bytes(bad),
                Err(FrontierDecodeError::WrongLength { size: 5, want: 2, .. })
            ),
            "{} bytes",
            bad.len()
        );
    }
}

#[test]
fn a_full_tree_refuses_another_leaf() {
    let mut bytes = vec![1u8];
    bytes.extend_from_slice(&u64::MAX.to_be_bytes());
    bytes.extend(std::iter::repeat_n(7u8, 64 * 32));
    assert_eq!(bytes.len(), FRONTIER_BYTES_MAX);
    let mut f = MerkleFrontier::from_bytes(&bytes).expect("a full frontier is well formed");
    assert_eq!(f.push([0u8; 32]), Err(TreeFull));
    assert_eq!(f.size(), u64::MAX);
}

#[test]
fn a_long_replay_keeps_the_frontier_small() {
    // 2^17 + 12_345 leaves streamed through the frontier; its state never
    // grows beyond one hash per level.
    let n = (1u64 << 17) + 12_345;
    let l = leaves(n, 4);
    let mut f = MerkleFrontier::new();
    let mut largest = 0;
    for leaf in &l {
        f.push(*leaf).expect("tree is far from full");
        largest = largest.max(f.to_bytes().len());
    }
    assert!(largest <= 9 + 32 * 18, "frontier grew to {largest} bytes");
    assert_eq!(f.root(), root_of(&l));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_frontier_matches_the_recursive_definition_at_random_sizes(n in 301u64..20_000, seed: u64) {
        let l = leaves(n, seed);
        let mut f = MerkleFrontier::new();
        for leaf in &l {
            f.push(*leaf).expect("tree is far from full");
        }
        prop_assert_eq!(f.root(), root_of(&l));
        let bytes = f.to_bytes();
        prop_assert_eq!(MerkleFrontier::from_bytes(&bytes), Ok(f));
    }
}

// ---------------------------------------------------------------------------
// Inclusion proofs.
// ---------------------------------------------------------------------------

/// The root of leaf `index` in a tree of `size` leaves, as a string over the
/// symbols `L` (the leaf) and `p0`, `p1`, ... (proof hashes, lowest first),
/// straight from PATH's definition, and the proof's length. Two claims
/// (index, size) make the verifier do the same hashing exactly when their
/// strings are equal.
fn inclusion_shape(index: u64, size: u64) -> (String, usize) {
    if size == 1 {
        return ("L".to_owned(), 0);
    }
    let k = size.next_power_of_two() / 2;
    if index < k {
        let (e, d) = inclusion_shape(index, k);
        (format!("({e},p{d})"), d + 1)
    } else {
        let (e, d) = inclusion_shape(index - k, size - k);
        (format!("(p{d},{e})"), d + 1)
    }
}

fn flipped(proof: &[Hash32], i: usize, bit: u8) -> Vec<Hash32> {
    let mut p = proof.to_vec();
    p[i][(bit / 8) as usize % 32] ^= 1 << (bit % 8);
    p
}

/// Every forgery of a valid inclusion proof of `leaves[index]` is rejected.
fn assert_forged_inclusion_rejected(leaves: &[Hash32], index: u64, proof: &[Hash32], root: &Hash32) {
    let size = leaves.len() as u64;
    let leaf = &leaves[index as usize];
    let reject = |leaf: &Hash32, index: u64, size: u64, proof: &[Hash32], root: &Hash32, what: &str| {
        assert!(
            verify_inclusion(leaf, index, size, proof, root).is_err(),
            "forgery accepted: {what} (index {index}, size {size})"
        );
    };
    for i in 0..proof.len() {
        for bit in [0u8, 77, 255] {
            reject(leaf, index, size, &flipped(proof, i, bit), root, "flipped bit");
        }
    }
    if !proof.is_empty() {
        reject(leaf, index, size, &proof[..proof.len() - 1], root, "truncated");
        reject(leaf, index, size, &proof[1..], root, "first hash removed");
        let mut swapped = proof.to_vec();
        swapped.swap(0, proof.len() - 1);
        if swapped != proof {
            reject(leaf, index, size, &swapped, root, "reordered");
        }
    }
    for extra in [[0u8; 32], *root, *leaf] {
        reject(leaf, index, size, &[proof, &[extra]].concat(), root, "extended");
        reject(leaf, index, size, &[&[extra], proof].concat(), root, "prefixed");
    }
    let mut other_root = *root;
    other_root[31] ^= 1;
    reject(leaf, index, size, proof, &other_root, "wrong root");
    reject(leaf, index, size, proof, &EMPTY_ROOT, "empty root");
    let mut other_leaf = *leaf;
    other_leaf[0] ^= 0x80;
    reject(&other_leaf, index, size, proof, root, "wrong leaf");
    // Every other index of the tree, and the first ones past it.
    for other in (0..size + 2).filter(|&o| o != index) {
        reject(leaf, other, size, proof, root, "wrong index");
    }
    reject(leaf, index ^ 2, size, proof, root, "index ^ 2");
    // Other sizes: a proof binds the size only through the root (the
    // checkpoint signs both), so a size whose tree puts the leaf on the same
    // path is accepted, and every other size is rejected.
    let shape = inclusion_shape(index, size);
    for other in [size / 2, size.saturating_sub(1), size + 1, size + 2, size * 2, size * 2 + 1] {
        if other == size {
            continue;
        }
        let ok = verify_inclusion(leaf, index, other, proof, root).is_ok();
        let same_path = index < other && inclusion_shape(index, other) == shape;
        assert_eq!(ok, same_path, "size {size} claimed as {other}, index {index}");
    }
}

#[test]
fn every_leaf_of_every_size_to_70_is_proven_and_forgeries_fail() {
    let all = leaves(70, 5);
    for size in 1..=70u64 {
        let l = &all[..size as usize];
        let root = root_of(l);
        for index in 0..size {
            let proof = inclusion_proof(l, index, size).expect("leaf in tree");
            let (_, depth) = inclusion_shape(index, size);
            assert_eq!(proof.len(), depth);
            assert!(proof.len() <= INCLUSION_PROOF_HASHES_MAX);
            assert_eq!(verify_inclusion(&l[index as usize], index, size, &proof, &root), Ok(()));
            assert_eq!(root_from_inclusion(&l[index as usize], index, size, &proof), Ok(root));
            // The larger source gives the same proof for the same size.
            assert_eq!(inclusion_proof(&all, index, size), Ok(proof.clone()));
            assert_forged_inclusion_rejected(l, index, &proof, &root);
        }
    }
}

#[test]
fn inclusion_edge_cases() {
    let l = leaves(4, 6);
    let root = root_of(&l);
    assert_eq!(
        verify_inclusion(&l[0], 4, 4, &[], &root),
        Err(ProofError::IndexOutOfRange { index: 4, tree_size: 4 })
    );
    assert_eq!(
        verify_inclusion(&l[0], 0, 0, &[], &EMPTY_ROOT),
        Err(ProofError::IndexOutOfRange { index: 0, tree_size: 0 })
    );
    // A one-leaf tree: the root is the leaf and the proof is empty.
    assert_eq!(verify_inclusion(&l[0], 0, 1, &[], &l[0]), Ok(()));
    assert_eq!(verify_inclusion(&l[0], 0, 1, &[l[1]], &l[0]), Err(ProofError::WrongLength { len: 1 }));
    // Over-long proofs stop before any hashing.
    let long = vec![[0u8; 32]; INCLUSION_PROOF_HASHES_MAX + 1];
    assert_eq!(verify_inclusion(&l[0], 0, u64::MAX, &long, &root), Err(ProofError::WrongLength { len: 65 }));
    assert_eq!(inclusion_proof(&l, 4, 4), Err(ProveError::IndexOutOfRange { index: 4, tree_size: 4 }));
    assert_eq!(inclusion_proof(&l, 0, 5), Err(ProveError::Source(LeafOutOfRange { index: 4, len: 4 })));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn inclusion_proofs_verify_at_random_sizes(size in 1u64..10_000, pick: u64, seed: u64) {
        let l = leaves(size, seed);
        let index = pick % size;
        let root = root_of(&l);
        let proof = inclusion_proof(&l, index, size).expect("leaf in tree");
        prop_assert_eq!(verify_inclusion(&l[index as usize], index, size, &proof, &root), Ok(()));
        for i in 0..proof.len() {
            let forged = flipped(&proof, i, (pick % 256) as u8);
            prop_assert!(verify_inclusion(&l[index as usize], index, size, &forged, &root).is_err());
        }
        let other = (index + 1 + pick % size.max(2)) % size;
        if other != index {
            prop_assert!(verify_inclusion(&l[index as usize], other, size, &proof, &root).is_err());
            prop_assert!(verify_inclusion(&l[other as usize], index, size, &proof, &root).is_err());
        }
    }
}

// ---------------------------------------------------------------------------
// Consistency proofs.
// ---------------------------------------------------------------------------

/// The old and new roots that the verifier rebuilds from a consistency proof
/// for sizes `old < new`, as strings over `R` (the claimed old root) and
/// `p0`, `p1`, ... (proof hashes, lowest first), straight from SUBPROOF's
/// definition, and the proof's length.
fn consistency_shape(old: u64, new: u64) -> (String, String, usize) {
    fn sub(m: u64, n: u64, whole: bool) -> (String, String, usize) {
        if m == n {
            return if whole { ("R".into(), "R".into(), 0) } else { ("p0".into(), "p0".into(), 1) };
        }
        let k = n.next_power_of_two() / 2;
        if m <= k {
            let (o, nw, d) = sub(m, k, whole);
            (o, format!("({nw},p{d})"), d + 1)
        } else {
            let (o, nw, d) = sub(m - k, n - k, false);
            (format!("(p{d},{o})"), format!("(p{d},{nw})"), d + 1)
        }
    }
    sub(old, new, true)
}

/// Whether the verifier, given the proof for `(old, new)` and its roots but
/// told the sizes `(o2, n2)`, must accept: exactly when it redoes the same
/// hashing, once the claimed old root `R` is read as what it is, the old
/// root the proof for `(old, new)` rebuilds.
fn consistency_accepts_other_sizes(old: u64, new: u64, o2: u64, n2: u64) -> bool {
    if o2 == 0 || o2 >= n2 {
        return false; // The proof is not empty, and those need an empty proof.
    }
    let (o, n, d) = consistency_shape(old, new);
    let (o2s, n2s, d2) = consistency_shape(o2, n2);
    d == d2 && o2s.replace('R', &o) == o && n2s.replace('R', &o) == n
}

fn assert_forged_consistency_rejected(old: u64, new: u64, r1: &Hash32, r2: &Hash32, proof: &[Hash32]) {
    let reject = |o: u64, n: u64, r1: &Hash32, r2: &Hash32, proof: &[Hash32], what: &str| {
        assert!(verify_consistency(o, n, r1, r2, proof).is_err(), "forgery accepted: {what} ({o} -> {n})");
    };
    if proof.is_empty() {
        // Only trivial pairs have empty proofs; their forgeries are roots.
        let mut other = *r2;
        other[0] ^= 1;
        if old != 0 {
            reject(old, new, r1, &other, proof, "wrong root");
            reject(old, new, &other, r2, proof, "wrong root");
        }
        return;
    }
    for i in 0..proof.len() {
        for bit in [4u8, 100, 255] {
            reject(old, new, r1, r2, &flipped(proof, i, bit), "flipped bit");
        }
    }
    reject(old, new, r1, r2, &proof[..proof.len() - 1], "truncated");
    reject(old, new, r1, r2, &proof[1..], "first hash removed");
    reject(old, new, r1, r2, &[], "empty proof");
    for extra in [[0u8; 32], *r1, *r2, proof[0]] {
        reject(old, new, r1, r2, &[proof, &[extra]].concat(), "extended");
        reject(old, new, r1, r2, &[&[extra], proof].concat(), "prefixed");
    }
    let (mut w1, mut w2) = (*r1, *r2);
    w1[5] ^= 0x10;
    w2[5] ^= 0x10;
    reject(old, new, &w1, r2, proof, "wrong old root");
    reject(old, new, r1, &w2, proof, "wrong new root");
    reject(old, new, r2, r1, proof, "swapped roots");
    reject(new, old, r1, r2, proof, "swapped sizes");
    // Other sizes: accepted only where the verifier redoes the same hashing
    // (the sizes are bound through the signed roots).
    let olds = [old.saturating_sub(1), old + 1, old ^ 2, old / 2, 0, new];
    let news = [new.saturating_sub(1), new + 1, new * 2, new / 2, new ^ 1];
    for (o2, n2) in olds.iter().map(|&o| (o, new)).chain(news.iter().map(|&n| (old, n))) {
        if (o2, n2) == (old, new) {
            continue;
        }
        let ok = verify_consistency(o2, n2, r1, r2, proof).is_ok();
        assert_eq!(
            ok,
            consistency_accepts_other_sizes(old, new, o2, n2),
            "proof {old} -> {new} claimed as {o2} -> {n2}"
        );
    }
}

#[test]
fn every_consistency_pair_to_64_is_proven_and_forgeries_fail() {
    let l = leaves(64, 7);
    let roots: Vec<Hash32> = (0..=64).map(|n| root_of(&l[..n])).collect();
    for new in 0..=64u64 {
        for old in 0..=new {
            let proof = consistency_proof(&l, old, new).expect("sizes within the tree");
            let (r1, r2) = (&roots[old as usize], &roots[new as usize]);
            if old == 0 || old == new {
                assert!(proof.is_empty(), "{old} -> {new}");
            } else {
                assert_eq!(proof.len(), consistency_shape(old, new).2, "{old} -> {new}");
            }
            assert!(proof.len() <= CONSISTENCY_PROOF_HASHES_MAX);
            assert_eq!(verify_consistency(old, new, r1, r2, &proof), Ok(()), "{old} -> {new}");
            assert_forged_consistency_rejected(old, new, r1, r2, &proof);
        }
    }
}

#[test]
fn consistency_edge_cases() {
    let l = leaves(8, 8);
    let (r3, r8) = (root_of(&l[..3]), root_of(&l));
    assert_eq!(verify_consistency(0, 0, &EMPTY_ROOT, &EMPTY_ROOT, &[]), Ok(()));
    assert_eq!(verify_consistency(0, 8, &EMPTY_ROOT, &r8, &[]), Ok(()));
    assert_eq!(verify_consistency(0, 8, &r3, &r8, &[]), Err(ProofError::OldRootMismatch));
    assert_eq!(verify_consistency(0, 0, &EMPTY_ROOT, &r8, &[]), Err(ProofError::NewRootMismatch));
    assert_eq!(verify_consistency(0, 8, &EMPTY_ROOT, &r8, &[r3]), Err(ProofError::WrongLength { len: 1 }));
    assert_eq!(verify_consistency(8, 8, &r8, &r8, &[]), Ok(()));
    assert_eq!(verify_consistency(8, 8, &r3, &r8, &[]), Err(ProofError::RootMismatch));
    assert_eq!(verify_consistency(8, 8, &r8, &r8, &[r8]), Err(ProofError::WrongLength { len: 1 }));
    assert_eq!(
        verify_consistency(8, 3, &r8, &r3, &[]),
        Err(ProofError::SizesOutOfOrder { old_size: 8, new_size: 3 })
    );
    let long = vec![[0u8; 32]; CONSISTENCY_PROOF_HASHES_MAX + 1];
    assert_eq!(verify_consistency(3, u64::MAX, &r3, &r8, &long), Err(ProofError::WrongLength { len: 66 }));
    assert_eq!(consistency_proof(&l, 8, 3), Err(ProveError::SizesOutOfOrder { old_size: 8, new_size: 3 }));
    assert_eq!(consistency_proof(&l, 3, 9), Err(ProveError::Source(LeafOutOfRange { index: 8, len: 8 })));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn consistency_proofs_verify_for_random_pairs(a in 0u64..=10_000, b in 0u64..=10_000, seed: u64) {
        let (old, new) = (a.min(b), a.max(b));
        let l = leaves(new, seed);
        let (r1, r2) = (root_of(&l[..old as usize]), root_of(&l));
        let proof = consistency_proof(&l, old, new).expect("sizes within the tree");
        prop_assert!(proof.len() <= CONSISTENCY_PROOF_HASHES_MAX);
        prop_assert_eq!(verify_consistency(old, new, &r1, &r2, &proof), Ok(()));
        for i in 0..proof.len() {
            let forged = flipped(&proof, i, (seed % 256) as u8);
            prop_assert!(verify_consistency(old, new, &r1, &r2, &forged).is_err());
        }
        if !proof.is_empty() {
            prop_assert!(verify_consistency(old, new, &r1, &r2, &proof[..proof.len() - 1]).is_err());
            prop_assert!(verify_consistency(old, new, &r2, &r1, &proof).is_err());
        }
    }
}

// ---------------------------------------------------------------------------
// Stored subtrees: the recommended storage scheme gives the same proofs for
// bounded work.
// ---------------------------------------------------------------------------

/// A source that stores every complete aligned subtree from `level_min` up,
/// as a store would, and counts what it is asked for.
struct StoredSource {
    leaves: Vec<Hash32>,
    stored: HashMap<(u32, u64), Hash32>,
    level_min: u32,
    leaf_reads: Cell<u64>,
    stored_reads: Cell<u64>,
}

impl StoredSource {
    fn new(leaves: Vec<Hash32>, level_min: u32) -> Self {
        let mut stored = HashMap::new();
        let mut f = MerkleFrontier::new();
        for leaf in &leaves {
            f.push_with(*leaf, |s| {
                if s.level >= level_min {
                    stored.insert((s.level, s.index), s.hash);
                }
            })
            .expect("tree is far from full");
        }
        StoredSource { leaves, stored, level_min, leaf_reads: Cell::new(0), stored_reads: Cell::new(0) }
    }

    fn reset(&self) -> (u64, u64) {
        (self.leaf_reads.replace(0), self.stored_reads.replace(0))
    }
}

impl NodeSource for StoredSource {
    type Error = LeafOutOfRange;

    fn leaf_hash(&self, index: u64) -> Result<Hash32, LeafOutOfRange> {
        self.leaf_reads.set(self.leaf_reads.get() + 1);
        self.leaves.leaf_hash(index)
    }

    fn stored_subtree_hash(&self, level: u32, index: u64) -> Result<Option<Hash32>, LeafOutOfRange> {
        assert!(level >= 1, "level 0 is a leaf, never asked of the store");
        if level < self.level_min {
            return Ok(None);
        }
        self.stored_reads.set(self.stored_reads.get() + 1);
        // A complete subtree inside the proof's tree is always stored.
        let h = self.stored.get(&(level, index)).copied();
        assert!(h.is_some(), "asked for a subtree that is not complete: {level} {index}");
        Ok(h)
    }
}

#[test]
fn stored_subtrees_give_the_same_proofs_with_bounded_reads() {
    const LEVEL_MIN: u32 = 4;
    let n = 5_000u64;
    let l = leaves(n, 9);
    let src = StoredSource::new(l.clone(), LEVEL_MIN);
    // Per proof: below LEVEL_MIN at most 2^LEVEL_MIN - 1 leaves for the
    // complete siblings and as many for each of at most two right-edge nodes;
    // above it one stored hash per level and part of a right-edge node.
    let leaf_reads_max = 3 * ((1u64 << LEVEL_MIN) - 1) + 1;
    let stored_reads_max = 3 * 64;
    for size in [1u64, 2, 15, 16, 17, 100, 1023, 1024, 1025, 4097, 5_000] {
        for index in [0, size / 3, size / 2, size - 1] {
            src.reset();
            let proof = inclusion_proof(&src, index, size).expect("leaf in tree");
            let (leaf_reads, stored_reads) = src.reset();
            assert_eq!(proof, inclusion_proof(&l, index, size).expect("leaf in tree"), "{index} of {size}");
            assert!(leaf_reads <= leaf_reads_max, "{leaf_reads} leaf reads for {index} of {size}");
            assert!(stored_reads <= stored_reads_max, "{stored_reads} stored reads");
        }
        for old in [1u64, size / 3, size / 2 + 1, size - 1].into_iter().filter(|&o| o >= 1 && o <= size) {
            src.reset();
            let proof = consistency_proof(&src, old, size).expect("sizes within the tree");
            let (leaf_reads, stored_reads) = src.reset();
            assert_eq!(proof, consistency_proof(&l, old, size).expect("sizes within the tree"));
            assert!(leaf_reads <= leaf_reads_max, "{leaf_reads} leaf reads for {old} -> {size}");
            assert!(stored_reads <= stored_reads_max, "{stored_reads} stored reads");
        }
        src.reset();
        let f = MerkleFrontier::from_source(&src, size).expect("leaves present");
        assert_eq!(f.root(), root_of(&l[..size as usize]));
        let (leaf_reads, _) = src.reset();
        assert!(leaf_reads < 1 << LEVEL_MIN, "{leaf_reads} leaf reads to rebuild the frontier");
    }
}

// ---------------------------------------------------------------------------
// The log's leaves.
// ---------------------------------------------------------------------------

#[test]
fn an_auditor_proves_one_log_entry_from_its_stored_record() {
    use mpp_core::LogEntry;

    // The hub: a chain of entries, the frontier kept current at ingest.
    let mut records = Vec::new();
    let mut frontier = MerkleFrontier::new();
    for e in accepted_chain(21, "mpp.events.a.b", |seq| vec![seq as u8; (seq % 5) as usize]) {
        frontier.push(entry_leaf_hash(&e.hash)).expect("tree is far from full");
        records.push(e.encode());
    }
    let leaves: Vec<Hash32> = records
        .iter()
        .map(|r| entry_leaf_hash(&LogEntry::decode(r).expect("own record decodes").hash))
        .collect();
    let (tree_size, root) = (frontier.size(), frontier.root());
    assert_eq!(root, root_of(&leaves));

    // The auditor: the record of entry 13, its proof, and the signed (size, root).
    let index = 12u64;
    let proof = inclusion_proof(&leaves, index, tree_size).expect("leaf in tree");
    let entry = LogEntry::decode(&records[index as usize]).expect("record decodes and its hash checks");
    assert_eq!(entry.seq, index + 1);
    assert_eq!(verify_inclusion(&entry_leaf_hash(&entry.hash), index, tree_size, &proof, &root), Ok(()));
    // Another entry's record does not pass for this position.
    let other = LogEntry::decode(&records[13]).expect("record decodes");
    assert!(verify_inclusion(&entry_leaf_hash(&other.hash), index, tree_size, &proof, &root).is_err());
}

#[test]
fn the_mem_tree_answers_like_the_bare_leaves() {
    use mpp_core::merkle::MemTree;
    let n = 4_500u64;
    let l = leaves(n, 10);
    let mut tree = MemTree::new();
    for leaf in &l {
        tree.push(*leaf).expect("tree is far from full");
    }
    assert_eq!((tree.size(), tree.root(), tree.leaves()), (n, root_of(&l), &l[..]));
    // Stored: level 10 at 0..4, level 11 at 0..2, level 12 at 0.
    assert_eq!(tree.stored_subtree_hash(10, 3), Ok(Some(root_of(&l[3072..4096]))));
    assert_eq!(tree.stored_subtree_hash(12, 0), Ok(Some(root_of(&l[..4096]))));
    assert_eq!(tree.stored_subtree_hash(10, 4), Ok(None));
    assert_eq!(tree.stored_subtree_hash(9, 0), Ok(None));
    for size in [1u64, 1023, 1024, 1025, 2048, 3000, 4096, 4097, n] {
        assert_eq!(root_at(&tree, size), Ok(root_of(&l[..size as usize])), "size {size}");
        for index in [0, size / 2, size - 1] {
            assert_eq!(
                inclusion_proof(&tree, index, size),
                inclusion_proof(&l, index, size),
                "{index} of {size}"
            );
        }
        for old in [1, size / 2, size - 1].into_iter().filter(|&o| o >= 1) {
            assert_eq!(
                consistency_proof(&tree, old, size),
                consistency_proof(&l, old, size),
                "{old} -> {size}"
            );
        }
    }
    assert_eq!(
        inclusion_proof(&tree, 0, n + 1),
        Err(ProveError::Source(LeafOutOfRange { index: n, len: n }))
    );
}
