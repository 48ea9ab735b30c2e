//! What a key costs sled 0.34.7 inside one `apply_batch` + `flush`: the
//! measurement behind the store's layout (no key written per event).
//!
//! ```sh
//! cargo run --release -p mpp-store --example sled_keys
//! ```
//!
//! Each scenario commits `BATCHES` batches standing for 1,000 events each:
//! one 320 KB log block alone; plus 1,000 new keys in ascending order (ids
//! minted in time order); plus 1,000 new keys in random order; plus 800
//! rewrites of 450-byte values of existing keys (cases being worked on).

use std::time::Instant;

/// Batches per scenario.
const BATCHES: u64 = 200;
/// Events one batch stands for.
const EVENTS_PER_BATCH: u64 = 1000;
/// Open cases the rewrite scenario cycles through.
const OPEN_CASES: u64 = 2048;

fn run(name: &str, fill: impl Fn(u64, &mut sled::Batch)) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let db = sled::Config::new().path(dir.path()).cache_capacity(160 << 20).open()?;
    let started = Instant::now();
    for b in 0..BATCHES {
        let mut batch = sled::Batch::default();
        batch.insert(&[b"L".as_slice(), &b.to_be_bytes()].concat()[..], vec![7u8; 320_000]);
        fill(b, &mut batch);
        db.apply_batch(batch)?;
        db.flush()?;
    }
    let s = started.elapsed().as_secs_f64();
    println!("{name:<48} {:>9.0} events/s", (BATCHES * EVENTS_PER_BATCH) as f64 / s);
    Ok(())
}

fn key(prefix: u8, n: u64) -> Vec<u8> {
    [&[prefix][..], &n.to_be_bytes()].concat()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    run("log block only", |_, _| {})?;
    run("+ 1,000 new keys, ascending", |b, batch| {
        for i in 0..EVENTS_PER_BATCH {
            batch.insert(key(b'E', b * EVENTS_PER_BATCH + i), &i.to_be_bytes()[..]);
        }
    })?;
    run("+ 1,000 new keys, random order", |b, batch| {
        for i in 0..EVENTS_PER_BATCH {
            let n = (b * EVENTS_PER_BATCH + i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            batch.insert(key(b'E', n), &i.to_be_bytes()[..]);
        }
    })?;
    run("+ 800 rewrites of existing 450 B values", |b, batch| {
        for i in 0..800 {
            batch.insert(key(b'C', (b * 800 + i) % OPEN_CASES), vec![3u8; 450]);
        }
    })?;
    Ok(())
}
