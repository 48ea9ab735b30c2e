//! What a group commit writes, counted on a simulated disk
//! ([`crate::testing::power_cut::SimDisk`], never cut here): the cost of a
//! sync grows with the pages it covers, so the outbox keeps them few. The
//! workload is mpp-bench section 3's: groups of 64 events of about 490
//! bytes, each group one durable commit, the previous group acknowledged
//! in between, as the relay does after its PubAcks (format 2: the next
//! group commit carries the deletion; format 1, as it was: a deletion
//! commit of its own, not synced). Format 1
//! (one row per event, the first redb outbox) is counted beside format 2
//! (one record per group) so the figures can be compared; both are printed.

use redb::Durability;

use super::entry;
use super::store::{Store, ENTRIES_V1};
use crate::durable;
use crate::testing::power_cut::{DiskStats, SimDisk};

/// Events per group commit.
const GROUP_EVENTS: u64 = 64;

/// Group commits made before counting (the trees reach their steady depth).
const WARM_UP_COMMITS: u64 = 100;

/// Group commits counted.
const COUNTED_COMMITS: u64 = 200;

/// What the counted commits wrote, per durable commit.
#[derive(Debug, Default)]
struct PerCommit {
    writes: u64,
    bytes: u64,
    syncs: u64,
}

impl PerCommit {
    fn add(&mut self, before: DiskStats, after: DiskStats) {
        self.writes += after.writes - before.writes;
        self.bytes += after.written_bytes - before.written_bytes;
        self.syncs += after.syncs - before.syncs;
    }

    fn show(&self, what: &str) -> f64 {
        let n = COUNTED_COMMITS as f64;
        let writes = self.writes as f64 / n;
        println!(
            "{what}: {writes:.1} page writes, {:.0} bytes, {:.2} syncs per group commit of {GROUP_EVENTS} \
             events (deletions included)",
            self.bytes as f64 / n,
            self.syncs as f64 / n
        );
        writes
    }
}

fn value(seq: u64) -> Vec<u8> {
    let id = format!("0190a000-0000-7000-8000-{seq:012}");
    entry::encode(1_767_225_600_000, "mpp.events.dukcapil.kk", &id, None, &[7; 420]).unwrap()
}

/// Runs the workload: `append` writes a group durably, `delete` deletes
/// the group before it (without a sync of its own).
fn run(disk: &SimDisk, mut append: impl FnMut(u64), mut delete: impl FnMut(u64)) -> PerCommit {
    let mut counted = PerCommit::default();
    for commit in 0..WARM_UP_COMMITS + COUNTED_COMMITS {
        let first = 1 + commit * GROUP_EVENTS;
        let before = disk.stats();
        append(first);
        if commit > 0 {
            delete(first - GROUP_EVENTS);
        }
        if commit >= WARM_UP_COMMITS {
            counted.add(before, disk.stats());
        }
    }
    counted
}

#[test]
fn a_group_commit_writes_a_few_pages() {
    let disk = SimDisk::new(0);
    let store = Store::new(durable::open(disk.storage("format-2")).unwrap()).unwrap();
    let v2 = run(
        &disk,
        |first| {
            let rows: Vec<_> = (first..first + GROUP_EVENTS).map(|s| (s, value(s))).collect();
            store.append(&rows).unwrap();
        },
        |first| store.acknowledge(first + GROUP_EVENTS - 1),
    );

    let disk = SimDisk::new(0);
    let db = durable::open(disk.storage("format-1")).unwrap();
    let v1 = run(
        &disk,
        |first| {
            let tx = db.begin_write().unwrap();
            {
                let mut t = tx.open_table(ENTRIES_V1).unwrap();
                for seq in first..first + GROUP_EVENTS {
                    t.insert(seq, value(seq).as_slice()).unwrap();
                }
            }
            tx.commit().unwrap();
        },
        |first| {
            let mut tx = db.begin_write().unwrap();
            tx.set_durability(Durability::None);
            {
                let mut t = tx.open_table(ENTRIES_V1).unwrap();
                for seq in first..first + GROUP_EVENTS {
                    t.remove(seq).unwrap();
                }
            }
            tx.commit().unwrap();
        },
    );
    let (w1, w2) = (v1.show("format 1, one row per event"), v2.show("format 2, one record per group"));
    assert_eq!(v2.syncs, COUNTED_COMMITS, "one sync per group commit");
    assert!(w2 <= 8.0, "a group commit writes {w2:.1} pages, its deletion included");
    assert!(w2 * 2.0 <= w1, "records write at most half the pages of rows ({w2:.1} against {w1:.1})");
}
