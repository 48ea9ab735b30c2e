//! Measures the store's commit throughput with the hub's write pattern: per
//! batch, one entry per event (400-byte payloads), one dedupe key per event,
//! a case value per touched case, the head with the Merkle frontier (and the
//! subtree hashes the batch completes), then a synchronous flush.
//!
//! `cargo run --release -p mpp-store --example commit_throughput -- [events] [batch]`

use std::time::Instant;

use mpp_core::ids::{AgencyId, EventId, RegionCode, TrackingNumber};
use mpp_core::log::Verdict;
use mpp_core::merkle::MerkleFrontier;
use mpp_core::{Case, LogEntry};
use mpp_store::{push_entry, CommitBatch, Head, SledStore, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let events: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200_000);
    let batch: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1_000);
    let dir = tempfile::tempdir()?;
    let store = SledStore::open(dir.path())?;
    let region = RegionCode::parse("1771")?;
    let agency = AgencyId::parse("dukcapil")?;
    let mut head = Head::GENESIS;
    let mut frontier = MerkleFrontier::new();
    let started = Instant::now();
    let mut n = 0u64;
    while n < events {
        let mut b = CommitBatch::default();
        for _ in 0..batch.min(events - n) {
            n += 1;
            let e = LogEntry::new(
                n,
                n,
                1_750_000_000_000_000_000 + n as i64,
                Verdict::Accepted,
                None,
                "",
                "mpp.events.dukcapil.kk",
                vec![(n % 251) as u8; 400],
                head.head_hash,
            );
            head = Head { last_seq: n, last_stream_seq: n, head_hash: e.hash };
            push_entry(&mut frontier, &e.hash, &mut b.subtrees)?;
            let mut id = [0u8; 16];
            id[8..].copy_from_slice(&n.to_be_bytes());
            b.event_ids.push((EventId(id), n));
            b.entries.push(e);
            // About one case per four events.
            if n % 4 == 0 {
                b.cases.push(Case {
                    tracking_number: TrackingNumber::new(region, n / 4).ok_or("serial")?,
                    opened_by: agency.clone(),
                    opened_at_ms: 1,
                    opened_seq: n,
                    pin_verifier: vec![1; 32],
                    nik_keyed_hash: vec![2; 32],
                    updated_at_ms: 1,
                    last_seq: n,
                    applications: Vec::new(),
                    personal_data: Default::default(),
                    pin_reissues: Vec::new(),
                    personal_data_reads: Vec::new(),
                });
            }
        }
        b.head = head;
        b.frontier = frontier.clone();
        store.commit(b)?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!("{events} events in batches of {batch}: {secs:.2} s, {:.0} events/s", events as f64 / secs);
    Ok(())
}
