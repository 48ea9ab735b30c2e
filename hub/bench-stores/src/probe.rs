//! `--probe`: where one group commit of the outbox spends its time (issue
//! 17). Three measurements on the same disk, each printed as a median and
//! a 90th percentile over [`PROBE_COMMITS`] operations:
//!
//! - a raw `fdatasync` after overwriting one 4 KiB block of a preallocated
//!   file, and after appending 4 KiB (the floor any durable commit pays);
//! - a redb `Durability::Immediate` commit of one group record of
//!   [`PROBE_GROUP_EVENTS`] outbox entries (the kit's format 2: one value
//!   per group under its first sequence), on the kit's file backend, with
//!   the time inside `sync_data` and the writes, bytes and `set_len` calls
//!   per commit counted by a wrapping backend;
//! - the relay's deletion between two groups (remove the oldest record,
//!   update the published mark) as its own `Durability::None` commit, as
//!   the outbox makes it, and, for comparison, carried inside the next
//!   durable commit instead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use redb::{Durability, ReadableTable, StorageBackend, TableDefinition};

/// Operations timed per measurement (after [`PROBE_WARM_UP`]).
const PROBE_COMMITS: usize = 400;

/// Operations made before timing (the trees reach their steady depth).
const PROBE_WARM_UP: usize = 100;

/// Events per group record: mpp-bench section 3's 64 concurrent callers.
const PROBE_GROUP_EVENTS: usize = 64;

/// Bytes of one outbox entry in the record: section 3's realistic events
/// (header, subject, event id, traceparent, a signed-size envelope).
const PROBE_ENTRY_BYTES: usize = 490;

const RECORDS: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("outbox.records");
const PUBLISHED: TableDefinition<'static, (), u64> = TableDefinition::new("outbox.published");

/// What the backend saw, summed over the run.
#[derive(Debug, Default)]
struct Counts {
    writes: AtomicU64,
    bytes: AtomicU64,
    set_lens: AtomicU64,
    syncs: AtomicU64,
    sync_ns: AtomicU64,
}

/// The kit's file backend, counting and timing what redb asks of it.
#[derive(Debug)]
struct Counting {
    inner: mpp_agency_kit::durable::ZeroFilledFile,
    counts: Arc<Counts>,
}

impl StorageBackend for Counting {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        self.inner.read(offset, len)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.counts.set_lens.fetch_add(1, Ordering::Relaxed);
        self.inner.set_len(len)
    }
    fn sync_data(&self, eventual: bool) -> std::io::Result<()> {
        let started = Instant::now();
        let r = self.inner.sync_data(eventual);
        self.counts.sync_ns.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.counts.syncs.fetch_add(1, Ordering::Relaxed);
        r
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.counts.writes.fetch_add(1, Ordering::Relaxed);
        self.counts.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        self.inner.write(offset, data)
    }
}

/// Median and 90th percentile of `times`, in milliseconds.
fn spread(times: &mut [Duration]) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!("median {:.3} ms, p90 {:.3} ms", ms(times[times.len() / 2]), ms(times[times.len() * 9 / 10]))
}

/// Times `op` [`PROBE_WARM_UP`] + [`PROBE_COMMITS`] times, keeping the last.
fn time(mut op: impl FnMut(usize) -> Result<()>) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(PROBE_COMMITS);
    for i in 0..PROBE_WARM_UP + PROBE_COMMITS {
        let started = Instant::now();
        op(i)?;
        if i >= PROBE_WARM_UP {
            times.push(started.elapsed());
        }
    }
    Ok(times)
}

fn raw_fdatasync(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let block = [0x5a_u8; 4096];
    let file = std::fs::File::create(dir.join("raw"))?;
    file.write_all_at(&vec![0; 4096 * (PROBE_WARM_UP + PROBE_COMMITS)], 0)?;
    file.sync_all()?;
    let mut t = time(|i| {
        file.write_all_at(&block, 4096 * i as u64)?;
        Ok(file.sync_data()?)
    })?;
    println!("| raw: overwrite 4 KiB of a preallocated file + fdatasync | {} |", spread(&mut t));
    let file = std::fs::File::create(dir.join("append"))?;
    let mut t = time(|i| {
        file.write_all_at(&block, 4096 * i as u64)?;
        Ok(file.sync_data()?)
    })?;
    println!("| raw: append 4 KiB + fdatasync | {} |", spread(&mut t));
    Ok(())
}

/// How the relay's deletion is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deletes {
    /// Its own `Durability::None` commit between two durable ones (the
    /// outbox as it was).
    OwnCommit,
    /// Inside the next durable commit.
    InDurableCommit,
    /// Never (an outbox nobody drains): the floor of a durable commit.
    None,
}

fn redb_groups(dir: &std::path::Path, deletes: Deletes, two_phase: bool) -> Result<()> {
    let counts = Arc::new(Counts::default());
    let inner =
        mpp_agency_kit::durable::ZeroFilledFile::open(&dir.join(format!("{deletes:?}-{two_phase}.redb")))?;
    let db = redb::Builder::new().create_with_backend(Counting { inner, counts: counts.clone() })?;
    let record = vec![0x5a_u8; 8 + PROBE_GROUP_EVENTS * (4 + PROBE_ENTRY_BYTES)];
    let group = PROBE_GROUP_EVENTS as u64;
    let remove_oldest = |tx: &redb::WriteTransaction, published: u64| -> Result<()> {
        let mut records = tx.open_table(RECORDS)?;
        let first = records.first()?.map(|(k, _)| k.value());
        if let Some(first) = first {
            records.remove(first)?;
        }
        tx.open_table(PUBLISHED)?.insert((), published)?;
        Ok(())
    };
    let (mut delete_ns, mut deletes_made) = (0u128, 0u64);
    let before = |c: &Counts| {
        (
            c.writes.load(Ordering::Relaxed),
            c.bytes.load(Ordering::Relaxed),
            c.set_lens.load(Ordering::Relaxed),
            c.syncs.load(Ordering::Relaxed),
            c.sync_ns.load(Ordering::Relaxed),
        )
    };
    let mut start = before(&counts);
    let mut times = time(|i| {
        if i == PROBE_WARM_UP {
            start = before(&counts);
            delete_ns = 0;
            deletes_made = 0;
        }
        let first = 1 + i as u64 * group;
        let mut tx = db.begin_write()?;
        tx.set_two_phase_commit(two_phase);
        tx.open_table(RECORDS)?.insert(first, record.as_slice())?;
        if deletes == Deletes::InDurableCommit && i > 0 {
            remove_oldest(&tx, first - 1)?;
        }
        tx.commit()?;
        if deletes == Deletes::OwnCommit && i > 0 {
            let started = Instant::now();
            let mut tx = db.begin_write()?;
            tx.set_durability(Durability::None);
            remove_oldest(&tx, first - 1)?;
            tx.commit()?;
            delete_ns += started.elapsed().as_nanos();
            deletes_made += 1;
        }
        Ok(())
    })?;
    let end = before(&counts);
    let n = PROBE_COMMITS as f64;
    let delete = if deletes == Deletes::OwnCommit {
        format!(", deletion commit {:.3} ms mean", delete_ns as f64 / 1e6 / deletes_made.max(1) as f64)
    } else {
        String::new()
    };
    println!(
        "| redb Immediate commit of one {PROBE_GROUP_EVENTS}-event record ({} B), deletions {deletes:?}, \
         two-phase {two_phase} | {} (any deletion commit included); per commit: {:.1} writes, {:.0} B, \
         {:.2} set_len, {:.2} syncs taking {:.3} ms mean{delete} |",
        record.len(),
        spread(&mut times),
        (end.0 - start.0) as f64 / n,
        (end.1 - start.1) as f64 / n,
        (end.2 - start.2) as f64 / n,
        (end.3 - start.3) as f64 / n,
        (end.4 - start.4) as f64 / 1e6 / (end.3 - start.3).max(1) as f64,
    );
    Ok(())
}

/// Runs every measurement in fresh files under `dir`.
pub(crate) fn run(dir: &std::path::Path) -> Result<()> {
    println!(
        "Where an outbox group commit's time goes: {PROBE_COMMITS} operations each, after {PROBE_WARM_UP} \
         unmeasured."
    );
    println!("| operation | time |");
    println!("|---|---|");
    let dir = tempfile::tempdir_in(dir)?;
    raw_fdatasync(dir.path())?;
    for deletes in [Deletes::OwnCommit, Deletes::InDurableCommit, Deletes::None] {
        redb_groups(dir.path(), deletes, false)?;
    }
    redb_groups(dir.path(), Deletes::InDurableCommit, true)?;
    Ok(())
}
