//! What one group commit writes (temporary profile).

use super::store::Store;
use crate::durable;
use crate::testing::power_cut::{DiskStats, SimDisk};

fn delta(a: DiskStats, b: DiskStats) -> (u64, u64, u64, u64) {
    (b.writes - a.writes, b.written_bytes - a.written_bytes, b.syncs - a.syncs, b.resizes - a.resizes)
}

#[test]
fn profile_group_commit() {
    let disk = SimDisk::new(1);
    let store = Store::new(durable::open(disk.storage("outbox")).unwrap()).unwrap();
    let value = super::entry::encode(1, "mpp.events.dukcapil.kk", "0190a000-0000-7000-8000-000000000041", &[7u8; 420]).unwrap();
    let group = 64u64;
    let mut seq = 1u64;
    let (mut app, mut del) = ((0, 0, 0, 0), (0, 0, 0, 0));
    let rounds = 300;
    for round in 0..rounds {
        let rows: Vec<_> = (seq..seq + group).map(|s| (s, value.clone())).collect();
        let a = disk.stats();
        store.append(&rows).unwrap();
        let b = disk.stats();
        if round > 0 {
            // The relay deletes the previous group.
            store.remove_through(seq - 1).unwrap();
        }
        let c = disk.stats();
        seq += group;
        if round >= 100 {
            let (x, y) = (delta(a, b), delta(b, c));
            app = (app.0 + x.0, app.1 + x.1, app.2 + x.2, app.3 + x.3);
            del = (del.0 + y.0, del.1 + y.1, del.2 + y.2, del.3 + y.3);
        }
    }
    let n = (rounds - 100) as f64;
    println!("value {} bytes, group {group}", value.len());
    println!("append: writes {:.1} bytes {:.0} syncs {:.2} resizes {}", app.0 as f64 / n, app.1 as f64 / n, app.2 as f64 / n, app.3);
    println!("delete: writes {:.1} bytes {:.0} syncs {:.2} resizes {}", del.0 as f64 / n, del.1 as f64 / n, del.2 as f64 / n, del.3);
}
