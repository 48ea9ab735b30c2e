//! The edges' durable store: redb, opened the same way by the agency outbox
//! and the front office's counter and vault, and the one-time migration of
//! their sled 0.34 files (docs/DESIGN.md, "Where durability comes from").
//!
//! Guarantees, first:
//!
//! - **A commit with `Durability::Immediate` is on disk when it returns.**
//!   redb writes the new pages, then the header's commit slot with a
//!   checksum of the new roots, then calls `fdatasync`. A commit cut short
//!   (a crash, a power cut, a torn page) fails its checksum on the next open
//!   and the previous commit is used. A new file's directory entry is synced
//!   too ([`open`]), so a power cut right after creation cannot lose the file.
//! - **A sync costs one disk flush.** Files are opened through
//!   [`ZeroFilledFile`], which writes zeros over every range the store grows
//!   into: a later commit then only overwrites allocated blocks, and its
//!   `fdatasync` needs no file-system journal commit (writing into sparse
//!   blocks doubled the cost of a sync on the development machine: 2.1 ms
//!   against 1.0 ms).
//! - **Migration is all or nothing, and keeps the old files.**
//!   [`migrate_from_sled`] copies a sled database into a new redb file in one
//!   durable transaction, under a temporary name, and renames it into place
//!   (then syncs the directory): the redb file exists only complete. Only
//!   after that are sled's files moved aside into [`SLED_ASIDE_DIR`], never
//!   deleted; an operator removes them. The redb file's presence is the
//!   marker that the migration happened, so a crash at any step either
//!   repeats the whole migration or only finishes moving the old files.

// redb's error is 160 bytes. It is returned only on a failed disk
// operation, next to a sync that costs milliseconds: boxing it would buy
// nothing measurable and cost a layer at every `?`.
#![allow(clippy::result_large_err)]

use std::fmt;
use std::path::{Path, PathBuf};

pub use redb;
/// The store the edges used before; read only to migrate it.
pub use sled;

/// Where sled's files of a migrated store are moved, inside the sled
/// directory itself.
pub const SLED_ASIDE_DIR: &str = "sled-before-redb";

/// The file names sled 0.34 keeps in its directory (`snap.*` are prefixes).
const SLED_ENTRIES: [&str; 3] = ["conf", "db", "blobs"];

/// Prefix of sled 0.34's snapshot files.
const SLED_SNAPSHOT_PREFIX: &str = "snap.";

/// Implements `From` for [`redb::Error`] and each of redb's error kinds
/// (transaction, table, storage, commit) for an error enum with a
/// `variant(Box<redb::Error>)`, so that `?` works on every redb call.
/// (Boxed: redb's error is 160 bytes, and would make every `Result` of
/// the enum that large.)
#[macro_export]
macro_rules! from_redb_errors {
    ($ty:ty, $variant:path) => {
        $crate::from_redb_errors!(@each $ty, $variant, Error, TransactionError, TableError, StorageError, CommitError);
    };
    (@each $ty:ty, $variant:path, $($kind:ident),*) => {
        $(
            impl From<$crate::durable::redb::$kind> for $ty {
                fn from(e: $crate::durable::redb::$kind) -> Self {
                    $variant(Box::new(e.into()))
                }
            }
        )*
    };
}

/// Where a store's redb database lives.
pub enum Storage {
    /// A file (created with its directory if missing).
    File(PathBuf),
    /// Any other redb storage backend; the power-cut tests use one that
    /// loses unsynced writes.
    Backend(Box<dyn redb::StorageBackend>),
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
            Self::Backend(b) => f.debug_tuple("Backend").field(b).finish(),
        }
    }
}

impl Storage {
    /// A human-readable name for logs and errors.
    pub fn describe(&self) -> String {
        match self {
            Self::File(p) => p.display().to_string(),
            Self::Backend(_) => "(a storage backend)".to_owned(),
        }
    }
}

/// Why a durable store could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    /// A file or directory operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// redb failed (another process holds the file, or it is not a redb
    /// file, or IO failed).
    #[error("redb store {path}: {source}")]
    Redb {
        /// The file.
        path: String,
        /// The cause.
        source: Box<redb::Error>,
    },
    /// The old sled store could not be read.
    #[error("cannot read the sled store in {dir} to migrate it: {source}")]
    Sled {
        /// The sled directory.
        dir: PathBuf,
        /// The cause.
        source: sled::Error,
    },
    /// The old sled store holds something the migration cannot carry over.
    #[error("cannot migrate the sled store in {dir}: {what}")]
    Migrate {
        /// The sled directory.
        dir: PathBuf,
        /// What is wrong.
        what: String,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> DurableError + 'a {
    move |source| DurableError::Io { what, path: path.to_owned(), source }
}

/// Syncs a directory, so that entries created or renamed in it survive a
/// power cut.
pub fn sync_dir(dir: &Path) -> Result<(), DurableError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io("cannot sync the directory", dir))
}

/// Opens (or creates) the redb database of `storage`. A new file is
/// created with its parent directory, and the directory is synced.
pub fn open(storage: Storage) -> Result<redb::Database, DurableError> {
    match storage {
        Storage::Backend(backend) => redb::Builder::new()
            .create_with_backend(Boxed(backend))
            .map_err(|e| redb_error("(a storage backend)")(e.into())),
        Storage::File(path) => {
            let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            std::fs::create_dir_all(parent).map_err(io("cannot create the directory", parent))?;
            let existed = path.exists();
            let file = ZeroFilledFile::open(&path).map_err(io("cannot open", &path))?;
            let db = redb::Builder::new()
                .create_with_backend(file)
                .map_err(|e| redb_error(&path.display().to_string())(e.into()))?;
            if !existed {
                sync_dir(parent)?;
            }
            Ok(db)
        }
    }
}

/// A boxed backend is a backend (redb takes one by value).
#[derive(Debug)]
struct Boxed(Box<dyn redb::StorageBackend>);

impl redb::StorageBackend for Boxed {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.0.len()
    }
    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, std::io::Error> {
        self.0.read(offset, len)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.0.set_len(len)
    }
    fn sync_data(&self, eventual: bool) -> Result<(), std::io::Error> {
        self.0.sync_data(eventual)
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.0.write(offset, data)
    }
}

/// Bytes of zeros written at a time when a file grows.
const ZERO_FILL_CHUNK_BYTES: usize = 1024 * 1024;

/// A redb storage backend on a file that is locked while open (a second
/// process, or a second open in this one, is refused) and grows by writing
/// zeros, never sparsely (see the module docs).
#[derive(Debug)]
pub struct ZeroFilledFile {
    file: std::fs::File,
}

impl ZeroFilledFile {
    /// Opens (or creates) `path` and locks it.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        fs2::FileExt::try_lock_exclusive(&file).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("{} is in use by another process or handle ({e})", path.display()),
            )
        })?;
        Ok(Self { file })
    }
}

impl Drop for ZeroFilledFile {
    fn drop(&mut self) {
        let _ = fs2::FileExt::unlock(&self.file);
    }
}

impl redb::StorageBackend for ZeroFilledFile {
    fn len(&self) -> Result<u64, std::io::Error> {
        Ok(self.file.metadata()?.len())
    }

    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, std::io::Error> {
        let mut buf = vec![0; len];
        std::os::unix::fs::FileExt::read_exact_at(&self.file, &mut buf, offset)?;
        Ok(buf)
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        let mut at = self.file.metadata()?.len();
        if len <= at {
            return self.file.set_len(len);
        }
        let zeros = vec![0; ZERO_FILL_CHUNK_BYTES];
        while at < len {
            let n = (len - at).min(ZERO_FILL_CHUNK_BYTES as u64) as usize;
            std::os::unix::fs::FileExt::write_all_at(&self.file, &zeros[..n], at)?;
            at += n as u64;
        }
        Ok(())
    }

    fn sync_data(&self, _eventual: bool) -> Result<(), std::io::Error> {
        self.file.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        std::os::unix::fs::FileExt::write_all_at(&self.file, data, offset)
    }
}

/// Whether `dir` holds a sled database (its `conf` and `db` files).
pub fn has_sled(dir: &Path) -> bool {
    dir.join("conf").is_file() && dir.join("db").is_file()
}

/// Carries the sled database in `sled_dir` over into the redb file
/// `target` (see the module docs): `copy` reads the sled database and
/// writes what it holds into the transaction, returning how many records it
/// carried over. Returns `None` when there was nothing to migrate (no sled
/// files, or `target` exists already; leftover sled files are then moved
/// aside, finishing a migration a crash interrupted).
pub fn migrate_from_sled(
    sled_dir: &Path,
    target: &Path,
    copy: impl FnOnce(&sled::Db, &redb::WriteTransaction) -> Result<u64, DurableError>,
) -> Result<Option<u64>, DurableError> {
    if !has_sled(sled_dir) {
        return Ok(None);
    }
    if target.exists() {
        move_sled_aside(sled_dir)?;
        return Ok(None);
    }
    let migrating = target.with_extension("redb-migrating");
    if migrating.exists() {
        std::fs::remove_file(&migrating).map_err(io("cannot remove the unfinished migration", &migrating))?;
    }
    let records = {
        let sled_db = mpp_edge::sled_open::open_waiting_for_lock(&sled::Config::new().path(sled_dir))
            .map_err(|source| DurableError::Sled { dir: sled_dir.to_owned(), source })?;
        let db = open(Storage::File(migrating.clone()))?;
        let name = migrating.display().to_string();
        let redb_err = redb_error(&name);
        let tx = db.begin_write().map_err(|e| redb_err(e.into()))?;
        let records = copy(&sled_db, &tx)?;
        tx.commit().map_err(|e| redb_err(e.into()))?;
        records
    };
    std::fs::rename(&migrating, target).map_err(io("cannot rename the migrated store to", target))?;
    sync_dir(target.parent().unwrap_or(Path::new(".")))?;
    let aside = move_sled_aside(sled_dir)?;
    tracing::warn!(
        from = %sled_dir.display(),
        to = %target.display(),
        records,
        old_files = %aside.display(),
        "Store migrated from sled to redb; the old sled files are kept: remove them once the service runs well"
    );
    Ok(Some(records))
}

/// Moves sled's own files in `dir` into [`SLED_ASIDE_DIR`] (a numbered
/// sibling if that is taken); returns where they went.
fn move_sled_aside(dir: &Path) -> Result<PathBuf, DurableError> {
    let mut aside = dir.join(SLED_ASIDE_DIR);
    let mut n = 1;
    while aside.exists() && std::fs::read_dir(&aside).map(|mut d| d.next().is_some()).unwrap_or(true) {
        n += 1;
        aside = dir.join(format!("{SLED_ASIDE_DIR}.{n}"));
    }
    std::fs::create_dir_all(&aside).map_err(io("cannot create", &aside))?;
    let entries = std::fs::read_dir(dir).map_err(io("cannot list", dir))?;
    for entry in entries {
        let entry = entry.map_err(io("cannot list", dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if SLED_ENTRIES.contains(&name.as_ref()) || name.starts_with(SLED_SNAPSHOT_PREFIX) {
            let to = aside.join(entry.file_name());
            std::fs::rename(entry.path(), &to).map_err(io("cannot move the old sled file to", &to))?;
        }
    }
    sync_dir(&aside)?;
    sync_dir(dir)?;
    Ok(aside)
}

/// A redb error as a [`DurableError`] naming `path`.
pub fn redb_error(path: &str) -> impl Fn(redb::Error) -> DurableError + '_ {
    move |source| DurableError::Redb { path: path.to_owned(), source: Box::new(source) }
}

#[cfg(test)]
mod tests {
    use redb::ReadableTableMetadata;

    use super::*;

    const T: redb::TableDefinition<'static, u64, u64> = redb::TableDefinition::new("t");

    #[test]
    fn a_sled_store_is_migrated_once_and_its_files_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            for i in 0..10u64 {
                db.insert(i.to_be_bytes(), &(i * 2).to_be_bytes()).unwrap();
            }
            db.flush().unwrap();
        }
        let target = dir.path().join("new.redb");
        let copy = |s: &sled::Db, tx: &redb::WriteTransaction| {
            let mut t = tx.open_table(T).map_err(|e| redb_error("t")(e.into()))?;
            let mut n = 0;
            for kv in s.iter() {
                let (k, v) = kv.unwrap();
                let k = u64::from_be_bytes(k.as_ref().try_into().unwrap());
                let v = u64::from_be_bytes(v.as_ref().try_into().unwrap());
                t.insert(k, v).map_err(|e| redb_error("t")(e.into()))?;
                n += 1;
            }
            Ok(n)
        };
        assert_eq!(migrate_from_sled(dir.path(), &target, copy).unwrap(), Some(10));
        assert!(!has_sled(dir.path()), "sled's files moved");
        assert!(has_sled(&dir.path().join(SLED_ASIDE_DIR)), "and kept");
        assert_eq!(migrate_from_sled(dir.path(), &target, |_, _| panic!("not again")).unwrap(), None);
        let db = open(Storage::File(target)).unwrap();
        let tx = db.begin_read().unwrap();
        let t = tx.open_table(T).unwrap();
        assert_eq!(t.get(7).unwrap().unwrap().value(), 14);
        assert_eq!(t.len().unwrap(), 10);
    }
}
