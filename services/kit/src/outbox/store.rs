//! The outbox's table in redb: entry sequence → entry value
//! ([`super::entry`]), and the migration of a sled outbox.

use redb::{Durability, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::entry;
use crate::durable::{self, DurableError};

/// The outbox's redb file, inside the outbox directory.
pub const OUTBOX_FILE: &str = "outbox.redb";

/// The entries: outbox sequence → encoded entry.
const ENTRIES: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("outbox");

/// Name of the sled tree that held the entries before redb.
pub const SLED_OUTBOX_TREE: &str = "outbox";

/// The redb database. Held by the [`super::Outbox`], its writer thread and
/// its relay task only, so that the file is released when they end.
#[derive(Debug)]
pub(super) struct Store {
    db: redb::Database,
}

/// A stored entry: its sequence and encoded value.
pub(super) type Row = (u64, Vec<u8>);

impl Store {
    pub(super) fn new(db: redb::Database) -> Result<Self, redb::Error> {
        // Create the table, so that readers find it.
        let tx = db.begin_write()?;
        tx.open_table(ENTRIES)?;
        tx.commit()?;
        Ok(Self { db })
    }

    /// Every entry's sequence and value length, in order.
    pub(super) fn scan(&self) -> Result<Vec<(u64, usize)>, redb::Error> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(ENTRIES)?;
        let mut out = Vec::with_capacity(usize::try_from(table.len()?).unwrap_or(0));
        for kv in table.iter()? {
            let (k, v) = kv?;
            out.push((k.value(), v.value().len()));
        }
        Ok(out)
    }

    /// The oldest entry.
    pub(super) fn first(&self) -> Result<Option<Row>, redb::Error> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(ENTRIES)?;
        let first = table.first()?.map(|(k, v)| (k.value(), v.value().to_vec()));
        Ok(first)
    }

    /// Up to `limit` entries from sequence `from` on, in order.
    pub(super) fn range(&self, from: u64, limit: usize) -> Result<Vec<Row>, redb::Error> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(ENTRIES)?;
        let mut out = Vec::new();
        for kv in table.range(from..)?.take(limit) {
            let (k, v) = kv?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Writes `rows` in one durable commit (fdatasync before it returns).
    pub(super) fn append(&self, rows: &[Row]) -> Result<(), redb::Error> {
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(ENTRIES)?;
            for (seq, value) in rows {
                let old = table.insert(*seq, value.as_slice())?;
                assert!(old.is_none(), "outbox sequence {seq} written twice");
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Deletes published entries in one commit that is not synced on its own:
    /// the next append's (or [`Store::sync`]'s) sync makes it durable.
    pub(super) fn remove(&self, seqs: &[u64]) -> Result<(), redb::Error> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::None);
        {
            let mut table = tx.open_table(ENTRIES)?;
            for seq in seqs {
                table.remove(*seq)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// An empty durable commit: makes every earlier deletion durable.
    pub(super) fn sync(&self) -> Result<(), redb::Error> {
        self.db.begin_write()?.commit()?;
        Ok(())
    }
}

/// Copies the entries of a sled outbox (tree [`SLED_OUTBOX_TREE`], 8-byte
/// big-endian sequences) into `tx`, keeping sequences and values. Every
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
    let mut table = tx.open_table(ENTRIES).map_err(|e| redb_err(e.into()))?;
    let mut n = 0;
    for kv in tree.iter() {
        let (k, v) = kv.map_err(sled_err)?;
        let bad = |what: String| DurableError::Migrate { dir: dir.clone(), what };
        let seq = entry::seq_of(&k).ok_or_else(|| bad(format!("an outbox key of {} bytes", k.len())))?;
        entry::decode(seq, &v).map_err(|e| bad(e.to_string()))?;
        table.insert(seq, v.as_ref()).map_err(|e| redb_err(e.into()))?;
        n += 1;
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
}
