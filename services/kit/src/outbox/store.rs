//! The outbox's tables in redb, and the migration of earlier outboxes.
//!
//! Format 2 (this version): table [`RECORDS`], first sequence → group
//! record ([`entry::RecordBuilder`]): a group commit writes one value per
//! run of consecutive sequences instead of one per event, and
//! [`PUBLISHED`] holds the highest sequence the relay has deleted, so that
//! a record whose first events were published need not be rewritten. A
//! commit so writes a few pages instead of one leaf per handful of events
//! (`commit_cost_tests`).
//!
//! Deletions have no transaction of their own. The relay
//! [acknowledges](Store::acknowledge) entries in memory (they are hidden
//! from every read at once), and the next durable commit — a group commit's
//! [`Store::append`], or [`Store::sync`] — writes the new [`PUBLISHED`]
//! mark and removes the records wholly at or below it (at most
//! [`DELETE_RECORDS_PER_COMMIT_MAX`] each time). A separate deletion
//! commit would copy the tree's pages once more and take redb's write
//! lock between two group commits, for nothing: it was not synced, so it
//! was durable only with the next group commit anyway.
//!
//! Format 1 (the first redb outbox): table [`ENTRIES_V1`], one row per
//! event. [`Store::new`] moves its rows into records, oldest first, in
//! durable transactions of at most [`MIGRATE_ENTRIES_PER_COMMIT`] rows, each
//! moving rows out of the old table and into the new one atomically, then
//! deletes the old table: after a crash at any point every entry is in
//! exactly one of the two, and the next open goes on.

use std::sync::atomic::{AtomicU64, Ordering};

use redb::{ReadableTable, TableDefinition};

use super::entry::{self, RecordBuilder};
use crate::durable::{self, DurableError};

/// The outbox's redb file, inside the outbox directory.
pub const OUTBOX_FILE: &str = "outbox.redb";

/// Format 1: outbox sequence → encoded entry. Only read, to migrate it.
pub(super) const ENTRIES_V1: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("outbox");

/// Format 2: first sequence of a record → the record.
const RECORDS: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("outbox.records");

/// Format 2: the highest sequence deleted after its PubAck (entries at or
/// below it are gone, even when their record is still stored).
const PUBLISHED: TableDefinition<'static, (), u64> = TableDefinition::new("outbox.published");

/// Most format-1 rows moved into records in one transaction.
pub(super) const MIGRATE_ENTRIES_PER_COMMIT: usize = 4096;

/// Most records removed by one commit (the rest by the next ones): bounds
/// the work a deletion adds to a group commit after the relay caught up
/// with a large outbox. A group commit adds one record, so the backlog
/// shrinks with every commit.
pub(super) const DELETE_RECORDS_PER_COMMIT_MAX: usize = 64;

/// Name of the sled tree that held the entries before redb.
pub const SLED_OUTBOX_TREE: &str = "outbox";

/// The redb database. Held by the [`super::Outbox`], its writer thread and
/// its relay task only, so that the file is released when they end.
#[derive(Debug)]
pub(super) struct Store {
    db: redb::Database,
    /// The highest sequence the relay acknowledged (in memory; every read
    /// hides what is at or below it). Never below the stored [`PUBLISHED`].
    acknowledged: AtomicU64,
    /// The highest [`PUBLISHED`] mark committed durably.
    durable_published: AtomicU64,
}

/// A stored entry: its sequence and encoded value.
pub(super) type Row = (u64, Vec<u8>);

/// Why the store could not be read: redb, or a record that does not parse.
#[derive(Debug, thiserror::Error)]
pub(super) enum StoreError {
    #[error(transparent)]
    Redb(Box<redb::Error>),
    #[error(transparent)]
    Corrupt(#[from] entry::EntryError),
}

crate::from_redb_errors!(StoreError, StoreError::Redb);

/// The last sequence of the record stored under `first` (its header only).
fn record_last(first: u64, record: &[u8]) -> Result<u64, StoreError> {
    let n = entry::record_entries(first, record)?.len() as u64;
    Ok(first + n - 1)
}

impl Store {
    /// Opens the tables (creating them), migrating a format-1 table.
    pub(super) fn new(db: redb::Database) -> Result<Self, StoreError> {
        let tx = db.begin_write()?;
        tx.open_table(RECORDS)?;
        tx.open_table(PUBLISHED)?;
        tx.commit()?;
        let published = Self::published(&db.begin_read()?)?;
        let store = Self {
            db,
            acknowledged: AtomicU64::new(published),
            durable_published: AtomicU64::new(published),
        };
        store.migrate_v1()?;
        Ok(store)
    }

    /// Moves format-1 rows into records (module docs); returns how many.
    fn migrate_v1(&self) -> Result<u64, StoreError> {
        let mut moved = 0u64;
        loop {
            let tx = self.db.begin_write()?;
            let mut done = false;
            {
                let mut old = match tx.open_table(ENTRIES_V1) {
                    Ok(t) => t,
                    Err(redb::TableError::TableDoesNotExist(_)) => return Ok(moved),
                    Err(e) => return Err(e.into()),
                };
                let mut records = tx.open_table(RECORDS)?;
                let mut builder = RecordBuilder::default();
                let mut n = 0;
                while n < MIGRATE_ENTRIES_PER_COMMIT {
                    let Some((k, v)) = old.pop_first()? else {
                        done = true;
                        break;
                    };
                    let seq = k.value();
                    entry::decode(seq, v.value())?;
                    builder.push(seq, v.value());
                    n += 1;
                }
                for (first, record) in builder.finish() {
                    let old = records.insert(first, record.as_slice())?;
                    assert!(old.is_none(), "outbox record {first} written twice");
                }
                moved += n as u64;
            }
            if done {
                tx.delete_table(ENTRIES_V1)?;
            }
            tx.commit()?;
            if done {
                if moved > 0 {
                    tracing::info!(entries = moved, "Outbox moved to format 2 (one record per group commit)");
                }
                return Ok(moved);
            }
        }
    }

    fn published(tx: &redb::ReadTransaction) -> Result<u64, StoreError> {
        Ok(tx.open_table(PUBLISHED)?.get(())?.map_or(0, |v| v.value()))
    }

    /// Calls `each` with every entry from sequence `from` on, in order,
    /// until it returns false.
    fn each_from(&self, from: u64, mut each: impl FnMut(u64, &[u8]) -> bool) -> Result<(), StoreError> {
        let tx = self.db.begin_read()?;
        let published = Self::published(&tx)?.max(self.acknowledged.load(Ordering::Acquire));
        let from = from.max(published.saturating_add(1));
        let table = tx.open_table(RECORDS)?;
        // The record holding `from`, if any, starts at or before it.
        let start = table.range(..=from)?.next_back().transpose()?.map_or(from, |(k, _)| k.value());
        for kv in table.range(start..)? {
            let (k, v) = kv?;
            for (seq, value) in entry::record_entries(k.value(), v.value())? {
                if seq >= from && !each(seq, value) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// How many entries are stored, and the sum of their values' lengths.
    pub(super) fn totals(&self) -> Result<(u64, u64), StoreError> {
        let (mut entries, mut bytes) = (0u64, 0u64);
        self.each_from(0, |_, v| {
            entries += 1;
            bytes += v.len() as u64;
            true
        })?;
        Ok((entries, bytes))
    }

    /// The sequence the next entry takes: above every stored record and
    /// every published sequence (an emptied outbox keeps counting, so that
    /// no new entry falls at or below [`PUBLISHED`]).
    pub(super) fn next_seq(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read()?;
        let published = Self::published(&tx)?.max(self.acknowledged.load(Ordering::Acquire));
        let table = tx.open_table(RECORDS)?;
        let stored = match table.last()? {
            Some((k, v)) => record_last(k.value(), v.value())?,
            None => 0,
        };
        Ok(stored.max(published).saturating_add(1))
    }

    /// The oldest entry.
    pub(super) fn first(&self) -> Result<Option<Row>, StoreError> {
        Ok(self.range(0, 1)?.pop())
    }

    /// Up to `limit` entries from sequence `from` on, in order.
    pub(super) fn range(&self, from: u64, limit: usize) -> Result<Vec<Row>, StoreError> {
        let mut out = Vec::new();
        if limit > 0 {
            self.each_from(from, |seq, v| {
                out.push((seq, v.to_vec()));
                out.len() < limit
            })?;
        }
        Ok(out)
    }

    /// Writes `rows` (ascending sequences) as records in one durable commit
    /// (fdatasync before it returns), together with the deletions the relay
    /// acknowledged since the last commit (module docs).
    pub(super) fn append(&self, rows: &[Row]) -> Result<(), StoreError> {
        assert!(rows.windows(2).all(|w| w[0].0 < w[1].0), "outbox rows out of order");
        let mut builder = RecordBuilder::default();
        for (seq, value) in rows {
            builder.push(*seq, value);
        }
        let tx = self.db.begin_write()?;
        let published = self.write_deletions(&tx)?;
        {
            let mut table = tx.open_table(RECORDS)?;
            for (first, record) in builder.finish() {
                assert!(first > published, "outbox sequence {first} at or below the published {published}");
                let old = table.insert(first, record.as_slice())?;
                assert!(old.is_none(), "outbox sequence {first} written twice");
            }
        }
        tx.commit()?;
        self.durable_published.fetch_max(published, Ordering::AcqRel);
        Ok(())
    }

    /// Marks every entry up to sequence `last` as published: hidden from
    /// every read now, deleted on disk by the next durable commit (module
    /// docs). The relay publishes in order, so what it acknowledges is
    /// always the oldest entries; acknowledging less than before changes
    /// nothing.
    pub(super) fn acknowledge(&self, last: u64) {
        self.acknowledged.fetch_max(last, Ordering::AcqRel);
    }

    /// Whether entries were acknowledged that no durable commit deleted yet.
    pub(super) fn deletions_pending(&self) -> bool {
        self.acknowledged.load(Ordering::Acquire) > self.durable_published.load(Ordering::Acquire)
    }

    /// In `tx`: raises [`PUBLISHED`] to the acknowledged mark and removes
    /// up to [`DELETE_RECORDS_PER_COMMIT_MAX`] records wholly at or below
    /// it (a record holding it stays, its published part hidden by the
    /// mark). Returns the mark written; whether records at or below it
    /// remain is told by [`Store::covered_records`].
    fn write_deletions(&self, tx: &redb::WriteTransaction) -> Result<u64, StoreError> {
        let mut table = tx.open_table(RECORDS)?;
        let mut published = tx.open_table(PUBLISHED)?;
        let before = published.get(())?.map_or(0, |v| v.value());
        let mark = self.acknowledged.load(Ordering::Acquire).max(before);
        if mark > before {
            published.insert((), mark)?;
        }
        for _ in 0..DELETE_RECORDS_PER_COMMIT_MAX {
            let first = match table.first()? {
                Some((k, v)) if record_last(k.value(), v.value())? <= mark => k.value(),
                Some(_) | None => break,
            };
            table.remove(first)?;
        }
        Ok(mark)
    }

    /// Whether a stored record lies wholly at or below the stored
    /// [`PUBLISHED`] mark (left for a later commit to remove).
    fn covered_records(&self) -> Result<bool, StoreError> {
        let tx = self.db.begin_read()?;
        let published = Self::published(&tx)?;
        let table = tx.open_table(RECORDS)?;
        let covered = match table.first()? {
            Some((k, v)) => record_last(k.value(), v.value())? <= published,
            None => false,
        };
        Ok(covered)
    }

    /// Makes every acknowledged deletion durable: durable commits (of at
    /// most [`DELETE_RECORDS_PER_COMMIT_MAX`] record removals each) until no
    /// published record is left. Always commits at least once.
    pub(super) fn sync(&self) -> Result<(), StoreError> {
        loop {
            let tx = self.db.begin_write()?;
            let published = self.write_deletions(&tx)?;
            tx.commit()?;
            self.durable_published.fetch_max(published, Ordering::AcqRel);
            if !self.covered_records()? {
                return Ok(());
            }
        }
    }
}

/// Copies the entries of a sled outbox (tree [`SLED_OUTBOX_TREE`], 8-byte
/// big-endian sequences) into `tx` as records, keeping sequences and values. Every
/// value must parse as an entry: a migration never carries over what the
/// relay could not publish.
pub(super) fn copy_from_sled(
    dir: &std::path::Path,
    sled_db: &sled::Db,
    tx: &redb::WriteTransaction,
) -> Result<u64, DurableError> {
    let dir = dir.to_owned();
    let sled_err = |source| DurableError::Sled { dir: dir.clone(), source };
    let redb_err = durable::redb_error(OUTBOX_FILE);
    let tree = sled_db.open_tree(SLED_OUTBOX_TREE).map_err(sled_err)?;
    let mut table = tx.open_table(RECORDS).map_err(|e| redb_err(e.into()))?;
    let mut builder = RecordBuilder::default();
    let mut n = 0;
    for kv in tree.iter() {
        let (k, v) = kv.map_err(sled_err)?;
        let bad = |what: String| DurableError::Migrate { dir: dir.clone(), what };
        let seq = entry::seq_of(&k).ok_or_else(|| bad(format!("an outbox key of {} bytes", k.len())))?;
        entry::decode(seq, &v).map_err(|e| bad(e.to_string()))?;
        builder.push(seq, &v);
        n += 1;
    }
    for (first, record) in builder.finish() {
        table.insert(first, record.as_slice()).map_err(|e| redb_err(e.into()))?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::durable::{has_sled, SLED_ASIDE_DIR};
    use crate::event::SystemClock;
    use crate::outbox::{Outbox, OutboxConfig};

    use super::*;

    #[tokio::test]
    async fn a_sled_outbox_is_carried_over_with_its_order_and_event_ids() {
        let dir = tempfile::tempdir().unwrap();
        // An outbox of the sled version: sequences 41..=45 left unpublished
        // (1..=40 were published and deleted).
        let ids: Vec<String> =
            (41..=45u64).map(|s| format!("0190a000-0000-7000-8000-0000000000{s}")).collect();
        {
            let db = sled::open(dir.path()).unwrap();
            let tree = db.open_tree(SLED_OUTBOX_TREE).unwrap();
            for (seq, id) in (41..=45u64).zip(&ids) {
                let v = entry::encode(
                    1_767_225_600_000 + seq as i64,
                    "mpp.events.dukcapil.kk",
                    id,
                    None,
                    b"\x08\x01p",
                )
                .unwrap();
                tree.insert(seq.to_be_bytes(), v).unwrap();
            }
            db.flush().unwrap();
        }
        let config = OutboxConfig::new(dir.path());
        let outbox = Outbox::open(config.clone(), Arc::new(SystemClock)).unwrap();
        let got = outbox.entries(0, 100).unwrap();
        assert_eq!(
            got.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (41..=45).collect::<Vec<_>>(),
            "order kept"
        );
        assert_eq!(got.iter().map(|e| e.event_id.clone()).collect::<Vec<_>>(), ids, "event ids kept");
        assert_eq!(got[0].enqueued_at_ms, 1_767_225_600_041, "enqueue time kept");
        let s = outbox.status().snapshot();
        assert_eq!((s.depth, s.durable_next_seq), (5, 46), "new entries follow the migrated ones");
        assert!(!has_sled(dir.path()), "the sled files were moved");
        assert!(has_sled(&dir.path().join(SLED_ASIDE_DIR)), "and kept, not deleted");
        outbox.shutdown(std::time::Duration::ZERO).await;
        // A second open reads the redb outbox and migrates nothing again.
        let outbox = Outbox::open(config, Arc::new(SystemClock)).unwrap();
        assert_eq!(outbox.entries(0, 100).unwrap(), got);
    }

    #[test]
    fn a_sled_outbox_with_an_unreadable_entry_is_not_migrated() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree(SLED_OUTBOX_TREE)
                .unwrap()
                .insert(7u64.to_be_bytes(), b"garbage".as_slice())
                .unwrap();
            db.flush().unwrap();
        }
        let err = Outbox::open(OutboxConfig::new(dir.path()), Arc::new(SystemClock)).unwrap_err();
        assert!(err.to_string().contains("outbox entry 7 is corrupt"), "{err}");
        assert!(has_sled(dir.path()), "the sled outbox stays where it was");
        assert!(!dir.path().join(OUTBOX_FILE).exists(), "no half-migrated store");
    }

    /// A format-1 outbox (one row per event, the first redb version) with
    /// entries `seqs`, as that version wrote it.
    fn v1_outbox(file: &std::path::Path, seqs: impl Iterator<Item = u64>) -> Vec<String> {
        let db = durable::open(durable::Storage::File(file.to_owned())).unwrap();
        let tx = db.begin_write().unwrap();
        let mut ids = Vec::new();
        {
            let mut t = tx.open_table(ENTRIES_V1).unwrap();
            for seq in seqs {
                let id = format!("0190a000-0000-7000-8000-{seq:012}");
                let v = entry::encode(
                    1_767_225_600_000 + seq as i64,
                    "mpp.events.dukcapil.kk",
                    &id,
                    None,
                    b"\x08\x01p",
                )
                .unwrap();
                t.insert(seq, v.as_slice()).unwrap();
                ids.push(id);
            }
        }
        tx.commit().unwrap();
        ids
    }

    #[tokio::test]
    async fn a_format_1_outbox_is_moved_into_records_keeping_order_and_event_ids() {
        let dir = tempfile::tempdir().unwrap();
        // 3..=9000 (more than one migration commit), then a hole (a failed
        // commit's sequences), then 9005..=9010.
        let seqs: Vec<u64> = (3..=9000).chain(9005..=9010).collect();
        let ids = v1_outbox(&dir.path().join(OUTBOX_FILE), seqs.iter().copied());
        let config = OutboxConfig::new(dir.path());
        let outbox = Outbox::open(config.clone(), Arc::new(SystemClock)).unwrap();
        let got = outbox.entries(0, usize::MAX).unwrap();
        assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs, "order and sequences kept");
        assert_eq!(got.iter().map(|e| e.event_id.clone()).collect::<Vec<_>>(), ids, "event ids kept");
        assert_eq!(got[0].enqueued_at_ms, 1_767_225_600_003, "enqueue time kept");
        let s = outbox.status().snapshot();
        assert_eq!((s.depth, s.durable_next_seq), (seqs.len() as u64, 9011));
        {
            let tx = outbox.store.db.begin_read().unwrap();
            assert!(
                matches!(tx.open_table(ENTRIES_V1), Err(redb::TableError::TableDoesNotExist(_))),
                "the format-1 table is gone"
            );
        }
        outbox.shutdown(std::time::Duration::ZERO).await;
        let outbox = Outbox::open(config, Arc::new(SystemClock)).unwrap();
        assert_eq!(outbox.entries(0, usize::MAX).unwrap(), got, "a second open changes nothing");
    }

    #[test]
    fn a_migration_cut_short_leaves_every_entry_in_exactly_one_format() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(OUTBOX_FILE);
        let seqs: Vec<u64> = (1..=2 * MIGRATE_ENTRIES_PER_COMMIT as u64 + 5).collect();
        let ids = v1_outbox(&file, seqs.iter().copied());
        // One migration commit made, as if the process died after it.
        {
            let db = durable::open(durable::Storage::File(file.clone())).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut old = tx.open_table(ENTRIES_V1).unwrap();
                let mut records = tx.open_table(RECORDS).unwrap();
                let mut b = RecordBuilder::default();
                for _ in 0..MIGRATE_ENTRIES_PER_COMMIT {
                    let (k, v) = old.pop_first().unwrap().unwrap();
                    b.push(k.value(), v.value());
                }
                for (first, r) in b.finish() {
                    records.insert(first, r.as_slice()).unwrap();
                }
            }
            tx.commit().unwrap();
        }
        let store = Store::new(durable::open(durable::Storage::File(file)).unwrap()).unwrap();
        let got = store.range(0, usize::MAX).unwrap();
        assert_eq!(got.iter().map(|(s, _)| *s).collect::<Vec<_>>(), seqs);
        let got_ids: Vec<String> = got.iter().map(|(s, v)| entry::decode(*s, v).unwrap().event_id).collect();
        assert_eq!(got_ids, ids);
    }

    #[test]
    fn deleting_part_of_a_record_hides_it_and_sequences_never_go_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(OUTBOX_FILE);
        let value = |seq: u64| entry::encode(1, "s", &format!("id{seq}"), None, b"p").unwrap();
        let rows: Vec<Row> = (1..=10).map(|s| (s, value(s))).collect();
        {
            let store = Store::new(durable::open(durable::Storage::File(file.clone())).unwrap()).unwrap();
            store.append(&rows).unwrap();
            store.acknowledge(4);
            assert!(store.deletions_pending());
            assert_eq!(store.first().unwrap().map(|(s, _)| s), Some(5), "1..=4 hidden at once");
            assert_eq!(store.range(2, 3).unwrap().iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![5, 6, 7]);
            assert_eq!(store.totals().unwrap().0, 6);
            store.acknowledge(3);
            assert_eq!(store.totals().unwrap().0, 6, "deleting less than before deletes nothing");
            store.sync().unwrap();
            assert!(!store.deletions_pending());
        }
        let store = Store::new(durable::open(durable::Storage::File(file.clone())).unwrap()).unwrap();
        assert_eq!(store.range(0, 100).unwrap(), rows[4..].to_vec(), "the deletion survives a reopen");
        store.acknowledge(10);
        assert_eq!(store.totals().unwrap(), (0, 0));
        assert_eq!(store.next_seq().unwrap(), 11, "an emptied outbox goes on counting");
        store.sync().unwrap();
        assert!(!store.covered_records().unwrap(), "the published record is removed");
        drop(store);
        let store = Store::new(durable::open(durable::Storage::File(file)).unwrap()).unwrap();
        assert_eq!(store.next_seq().unwrap(), 11, "also after a reopen");
        store.append(&[(11, value(11))]).unwrap();
        assert_eq!(store.range(0, 100).unwrap(), vec![(11, value(11))]);
    }

    #[test]
    fn the_next_group_commit_carries_the_deletions_a_bounded_number_of_records_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(OUTBOX_FILE);
        let value = |seq: u64| entry::encode(1, "s", &format!("id{seq}"), None, b"p").unwrap();
        let records = DELETE_RECORDS_PER_COMMIT_MAX as u64 + 10;
        {
            let store = Store::new(durable::open(durable::Storage::File(file.clone())).unwrap()).unwrap();
            // One record of two entries per group commit.
            for first in (1..=2 * records).step_by(2) {
                store.append(&[(first, value(first)), (first + 1, value(first + 1))]).unwrap();
            }
            store.acknowledge(2 * records - 1);
            store.append(&[(2 * records + 1, value(2 * records + 1))]).unwrap();
            assert!(!store.deletions_pending(), "the group commit wrote the mark");
            assert!(store.covered_records().unwrap(), "and removed only the first records");
            // No sync: the group commit alone made the deletion durable.
        }
        let store = Store::new(durable::open(durable::Storage::File(file)).unwrap()).unwrap();
        let seqs: Vec<u64> = store.range(0, 100).unwrap().iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, vec![2 * records, 2 * records + 1], "the deletion survives a reopen");
        store.sync().unwrap();
        assert!(!store.covered_records().unwrap(), "sync removes the rest");
        assert_eq!(store.range(0, 100).unwrap().len(), 2);
    }
}
