//! What a store holds, per kind of key: keys, value bytes, mean value size,
//! against the allocated size of its directory. Opens the store directory
//! read-write (sled cannot open read-only): run it on a copy, or on a store
//! no hub is using.
//!
//! ```sh
//! cargo run --release -p mpp-store --example store_sizes -- /path/to/store
//! ```

use std::collections::BTreeMap;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: store_sizes <store directory>")?;
    let db = mpp_edge::sled_open::open_waiting_for_lock(&sled::Config::new().path(&dir))?;
    let mut kinds: BTreeMap<char, (u64, u64, u64)> = BTreeMap::new();
    for kv in db.iter() {
        let (k, v) = kv?;
        let kind = k.first().map_or('?', |b| *b as char);
        let e = kinds.entry(kind).or_default();
        e.0 += 1;
        e.1 += k.len() as u64;
        e.2 += v.len() as u64;
    }
    let mut total = 0;
    println!("{:<6} {:>12} {:>14} {:>14} {:>10}", "prefix", "keys", "key bytes", "value bytes", "mean value");
    for (kind, (n, kb, vb)) in &kinds {
        total += kb + vb;
        println!("{kind:<6} {n:>12} {kb:>14} {vb:>14} {:>10.0}", *vb as f64 / *n as f64);
    }
    println!("total key + value bytes: {total}; sled size_on_disk: {}", db.size_on_disk()?);
    Ok(())
}
