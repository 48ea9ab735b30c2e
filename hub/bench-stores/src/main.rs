//! `mpp-bench-stores`: the agency outbox's group-commit workload on the
//! candidate stores, printing events/s (issue 17, docs/DESIGN.md
//! "Where durability comes from").
//!
//! The workload is the outbox writer's: a group of events (values of
//! [`VALUE_BYTES`] bytes under 8-byte big-endian sequences; as many as
//! calls were waiting, up to the outbox's 1,024) written in one
//! transaction and committed durably, then the previous group deleted (as
//! the relay does after the PubAck) in a commit that need not be durable
//! on its own. The callers are left out: they cost the same on every
//! store, and on this machine's two cores they would measure the threads,
//! not the store. Each store and group size runs in a fresh directory:
//!
//! - **sled 0.34.7** as the outbox used it: `apply_batch` + `flush` (which
//!   is `sync_file_range`, not power-loss safe), deletes unflushed.
//! - **redb** with `Durability::Immediate` (fdatasync) for appends and
//!   `Durability::None` for deletes (made durable by the next append).
//! - **SQLite** (bundled) in WAL mode, `synchronous=FULL` for appends (an
//!   fsync of the WAL per commit) and `synchronous=NORMAL` for deletes.
//!
//! Run: `cargo run --release -p mpp-bench-stores -- --events 20000`;
//! `--probe` instead measures where one group commit's time goes
//! (`probe.rs`). (The outbox itself now carries the relay's deletions in
//! its next group commit; the workload below keeps the separate deletion
//! commit it was measured with.)

mod probe;

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;

/// Bytes of one event's value: the outbox entry of a mean realistic event
/// (header, subject, event id and a ~190-byte envelope).
const VALUE_BYTES: usize = 300;

#[derive(Debug, Parser)]
#[command(name = "mpp-bench-stores", about = "The outbox's group-commit workload on redb, SQLite and sled")]
struct Args {
    /// Events appended per store and run.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Events per commit: the calls a group commit gathers (as many as
    /// callers wait; mpp-bench section 3 runs 64 callers), comma-separated.
    #[arg(long, default_value = "1,16,64,256", value_delimiter = ',')]
    groups: Vec<usize>,
    /// Where the stores' directories are made (a real disk, not tmpfs).
    #[arg(long, default_value = ".")]
    dir: std::path::PathBuf,
    /// Only measure where one group commit's time goes: raw fdatasync, a
    /// redb commit of one group record, the relay's deletions (probe.rs).
    #[arg(long)]
    probe: bool,
}

/// One candidate store, driven by the writer thread only.
trait OutboxStore {
    fn name(&self) -> &'static str;
    /// Writes `entries` and commits durably.
    fn append(&mut self, entries: &[(u64, Vec<u8>)]) -> Result<()>;
    /// Deletes `seqs`; durable with the next append at the latest.
    fn delete(&mut self, seqs: &[u64]) -> Result<()>;
}

struct Sled {
    db: sled::Db,
}

impl OutboxStore for Sled {
    fn name(&self) -> &'static str {
        "sled 0.34.7 (flush = sync_file_range)"
    }
    fn append(&mut self, entries: &[(u64, Vec<u8>)]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for (seq, v) in entries {
            batch.insert(&seq.to_be_bytes()[..], v.as_slice());
        }
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }
    fn delete(&mut self, seqs: &[u64]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for seq in seqs {
            batch.remove(&seq.to_be_bytes()[..]);
        }
        Ok(self.db.apply_batch(batch)?)
    }
}

const TABLE: redb::TableDefinition<'static, u64, &[u8]> = redb::TableDefinition::new("outbox");

struct Redb {
    db: redb::Database,
    name: &'static str,
}

impl Redb {
    fn commit(
        &self,
        durability: redb::Durability,
        f: impl FnOnce(&mut redb::Table<u64, &[u8]>) -> Result<()>,
    ) -> Result<()> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(durability);
        {
            let mut table = tx.open_table(TABLE)?;
            f(&mut table)?;
        }
        tx.commit()?;
        Ok(())
    }
}

impl OutboxStore for Redb {
    fn name(&self) -> &'static str {
        self.name
    }
    fn append(&mut self, entries: &[(u64, Vec<u8>)]) -> Result<()> {
        self.commit(redb::Durability::Immediate, |t| {
            for (seq, v) in entries {
                t.insert(*seq, v.as_slice())?;
            }
            Ok(())
        })
    }
    fn delete(&mut self, seqs: &[u64]) -> Result<()> {
        self.commit(redb::Durability::None, |t| {
            for seq in seqs {
                t.remove(*seq)?;
            }
            Ok(())
        })
    }
}

struct Sqlite {
    conn: rusqlite::Connection,
}

impl OutboxStore for Sqlite {
    fn name(&self) -> &'static str {
        "SQLite 3 bundled (WAL, synchronous=FULL)"
    }
    fn append(&mut self, entries: &[(u64, Vec<u8>)]) -> Result<()> {
        self.conn.execute_batch("PRAGMA synchronous=FULL")?;
        let tx = self.conn.transaction()?;
        {
            let mut st = tx.prepare_cached("INSERT INTO outbox (seq, value) VALUES (?1, ?2)")?;
            for (seq, v) in entries {
                st.execute(rusqlite::params![*seq as i64, v])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
    fn delete(&mut self, seqs: &[u64]) -> Result<()> {
        self.conn.execute_batch("PRAGMA synchronous=NORMAL")?;
        let tx = self.conn.transaction()?;
        {
            let mut st = tx.prepare_cached("DELETE FROM outbox WHERE seq = ?1")?;
            for seq in seqs {
                st.execute([*seq as i64])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

fn open(kind: usize, dir: &Path) -> Result<Box<dyn OutboxStore>> {
    Ok(match kind {
        0 => {
            Box::new(Sled { db: sled::Config::new().path(dir.join("sled")).cache_capacity(64 << 20).open()? })
        }
        1 => Box::new(Redb {
            db: redb::Database::create(dir.join("outbox.redb"))?,
            name: "redb 2.6, its file backend (Durability::Immediate = fdatasync)",
        }),
        2 => Box::new(Redb {
            db: mpp_agency_kit::durable::open(mpp_agency_kit::durable::Storage::File(
                dir.join("outbox.redb"),
            ))?,
            name: "redb 2.6, durable::ZeroFilledFile (the kit's: grows by writing zeros)",
        }),
        _ => {
            let conn = rusqlite::Connection::open(dir.join("outbox.sqlite"))?;
            conn.execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
                 CREATE TABLE outbox (seq INTEGER PRIMARY KEY, value BLOB NOT NULL);",
            )?;
            Box::new(Sqlite { conn })
        }
    })
}

/// Appends `events` in commits of `group` events, deleting each group
/// after the next one committed; events/s.
fn run(store: &mut dyn OutboxStore, events: usize, group: usize) -> Result<f64> {
    let value = vec![0x5a_u8; VALUE_BYTES];
    let (mut next_seq, mut previous) = (1u64, Vec::new());
    let started = Instant::now();
    for _ in 0..events.div_ceil(group) {
        let entries: Vec<(u64, Vec<u8>)> =
            (next_seq..next_seq + group as u64).map(|s| (s, value.clone())).collect();
        next_seq += group as u64;
        store.append(&entries)?;
        store.delete(&previous)?;
        previous = entries.into_iter().map(|(s, _)| s).collect();
    }
    Ok((next_seq - 1) as f64 / started.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.probe {
        return probe::run(&args.dir);
    }
    println!(
        "Outbox group-commit workload: {} events of {VALUE_BYTES} B per store and group size, each \
         group one durable commit, deleted after the next group (as the relay does).",
        args.events
    );
    let header: Vec<String> = args.groups.iter().map(|g| format!("{g} per commit")).collect();
    println!("| store, events/s | {} |", header.join(" | "));
    println!("|---|{}", "---:|".repeat(args.groups.len()));
    for kind in 0..4 {
        let mut cells = Vec::new();
        let mut name = "";
        for &group in &args.groups {
            let dir = tempfile::tempdir_in(&args.dir)?;
            let mut store = open(kind, dir.path())?;
            name = store.name();
            // Fewer events one at a time: each costs a whole sync.
            let events = if group == 1 { args.events / 20 } else { args.events };
            cells.push(format!("{:.0}", run(store.as_mut(), events, group.max(1))?));
        }
        println!("| {name} | {} |", cells.join(" | "));
    }
    Ok(())
}
