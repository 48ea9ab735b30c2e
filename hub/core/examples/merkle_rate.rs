//! Rough throughput of the Merkle code on this machine, no assertions:
//!
//! ```text
//! cargo run -p mpp-core --release --example merkle_rate
//! ```
//!
//! Prints frontier pushes/s over 1M leaves, proof generation and
//! verification rates, and a replay rate (decode + chain check + leaf hash +
//! frontier push) over stored log records.

use std::hint::black_box;
use std::time::Instant;

use mpp_core::log::{Hash32, GENESIS_HASH};
use mpp_core::merkle::{
    consistency_proof, entry_leaf_hash, inclusion_proof, root_of, verify_consistency, verify_inclusion,
    MemTree, MerkleFrontier,
};
use mpp_core::{LogEntry, Verdict};

const LEAVES: u64 = 1 << 20;
const PROOFS: usize = 100_000;
const REPLAY_ENTRIES: u64 = 200_000;
const REPLAY_PAYLOAD_BYTES: usize = 300;

fn rate(count: u64, secs: f64) -> String {
    format!("{:>12.0}/s  ({count} in {secs:.3} s)", count as f64 / secs)
}

fn main() {
    // The core's seeded generator, for the hashes and the picked indices.
    let mut rng = mpp_core::rng::Rng::new(0x9e37_79b9_7f4a_7c15);
    let entry_hashes: Vec<Hash32> = (0..LEAVES)
        .map(|_| {
            let mut h = [0u8; 32];
            for c in h.chunks_mut(8) {
                c.copy_from_slice(&rng.next_u64().to_be_bytes());
            }
            h
        })
        .collect();

    // Ingest: leaf hash + frontier push per entry.
    let t = Instant::now();
    let mut frontier = MerkleFrontier::new();
    let mut leaves = Vec::with_capacity(LEAVES as usize);
    for e in &entry_hashes {
        let leaf = entry_leaf_hash(e);
        leaves.push(leaf);
        if frontier.push(leaf).is_err() {
            unreachable!("a million leaves do not fill the tree");
        }
    }
    let root = frontier.root();
    println!("leaf hash + frontier push  {}", rate(LEAVES, t.elapsed().as_secs_f64()));

    let t = Instant::now();
    let mut f2 = MerkleFrontier::new();
    for leaf in &leaves {
        let _ = f2.push(*leaf);
    }
    black_box(f2.root());
    println!("frontier push only         {}", rate(LEAVES, t.elapsed().as_secs_f64()));

    let t = Instant::now();
    let mut tree = MemTree::new();
    for leaf in &leaves {
        let _ = tree.push(*leaf);
    }
    println!("MemTree push               {}", rate(LEAVES, t.elapsed().as_secs_f64()));

    let t = Instant::now();
    let reference = root_of(&leaves);
    println!("root_of (reference), 1M    {:.3} s, agrees: {}", t.elapsed().as_secs_f64(), reference == root);

    // Inclusion proofs over the full 1M-leaf tree, from the MemTree (stored
    // subtrees of 1024 leaves and up).
    let picks: Vec<u64> = (0..PROOFS).map(|_| rng.next_u64() % LEAVES).collect();
    let t = Instant::now();
    let proofs: Vec<Vec<Hash32>> =
        picks.iter().map(|&i| inclusion_proof(&tree, i, LEAVES).unwrap_or_default()).collect();
    println!("inclusion proof generation {}", rate(PROOFS as u64, t.elapsed().as_secs_f64()));
    let t = Instant::now();
    let mut ok = 0u64;
    for (&i, p) in picks.iter().zip(&proofs) {
        ok += u64::from(verify_inclusion(&leaves[i as usize], i, LEAVES, p, &root).is_ok());
    }
    println!(
        "verify inclusion           {}  all ok: {}",
        rate(PROOFS as u64, t.elapsed().as_secs_f64()),
        ok == PROOFS as u64
    );

    // Consistency proofs from random older sizes to 1M.
    let olds: Vec<u64> = (0..PROOFS / 10).map(|_| 1 + rng.next_u64() % (LEAVES - 1)).collect();
    let t = Instant::now();
    let mut old_roots = Vec::with_capacity(olds.len());
    let mut cproofs = Vec::with_capacity(olds.len());
    for &m in &olds {
        old_roots.push(mpp_core::merkle::root_at(&tree, m).unwrap_or_default());
        cproofs.push(consistency_proof(&tree, m, LEAVES).unwrap_or_default());
    }
    println!("old root + consistency gen {}", rate(olds.len() as u64, t.elapsed().as_secs_f64()));
    let t = Instant::now();
    let mut ok = 0u64;
    for ((&m, r1), p) in olds.iter().zip(&old_roots).zip(&cproofs) {
        ok += u64::from(verify_consistency(m, LEAVES, r1, &root, p).is_ok());
    }
    println!(
        "verify consistency         {}  all ok: {}",
        rate(olds.len() as u64, t.elapsed().as_secs_f64()),
        ok == olds.len() as u64
    );

    // Replay: stored records -> decode (recomputes the chain hash) -> chain
    // check -> leaf hash -> frontier push.
    let mut records = Vec::new();
    let mut prev = GENESIS_HASH;
    for seq in 1..=REPLAY_ENTRIES {
        let payload = vec![(seq % 251) as u8; REPLAY_PAYLOAD_BYTES];
        let e = LogEntry::new(
            seq,
            seq,
            1_750_000_000_000_000_000 + seq as i64,
            Verdict::Accepted,
            None,
            "",
            "mpp.events.dukcapil.kk",
            payload,
            prev,
        );
        prev = e.hash;
        e.encode_into(&mut records);
    }
    let t = Instant::now();
    let mut pos = 0;
    let mut prev = GENESIS_HASH;
    let mut f3 = MerkleFrontier::new();
    let mut chain_ok = true;
    while pos < records.len() {
        let Ok((e, used)) = LogEntry::decode_prefix(&records[pos..]) else {
            chain_ok = false;
            break;
        };
        chain_ok &= e.prev_hash == prev && e.seq == f3.size() + 1;
        prev = e.hash;
        let _ = f3.push(entry_leaf_hash(&e.hash));
        pos += used;
    }
    black_box(f3.root());
    println!(
        "replay {REPLAY_PAYLOAD_BYTES} B payloads       {}  chain ok: {chain_ok}",
        rate(f3.size(), t.elapsed().as_secs_f64())
    );
}
