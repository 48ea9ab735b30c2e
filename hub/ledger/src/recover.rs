//! Opening the store when sled finds its own files corrupt.
//!
//! sled 0.34.7 can fail to reopen a database after the process was killed
//! (`Read corrupted data at file offset None`; sled issues #1509, #1527,
//! #1533; seen twice in about 3,700 `kill -9`s of the hub, docs/FAULTS.md).
//! Nothing acknowledged is lost then: JetStream keeps every message and the
//! log is a deterministic function of the stream. With
//! `--on-corrupt-store rebuild` the hub moves sled's files aside (kept for a
//! post-mortem, never deleted) and starts an empty store; ingest recreates
//! its consumer at checkpoint + 1 = 1 and re-derives the same log, entry for
//! entry, so its next checkpoints are consistent with the ones it signed
//! before. The signing key (`keys/`) and the access log (`access/`) stay.

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use mpp_store::{SledStore, StoreError};
use tracing::{error, warn};

/// What the hub does when sled reports its files corrupt on open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnCorruptStore {
    /// Exit with the error; an operator follows the runbook
    /// (docs/OPERATIONS.md).
    Fail,
    /// Move sled's files aside and re-ingest the stream from sequence 1.
    Rebuild,
}

/// The names of sled's own files in a data directory: `conf`, `db`,
/// `blobs/` and `snap.*`. Everything else (`keys/`, `access/`, earlier
/// `corrupt-store-*` directories) stays where it is.
fn is_sled_file(name: &str) -> bool {
    matches!(name, "conf" | "db" | "blobs") || name.starts_with("snap.")
}

/// Why the store could not be opened, or moved aside.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// Opening failed (and was not a corruption to rebuild from).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Moving sled's files aside failed.
    #[error("moving the corrupt store's files from {dir} to {to}: {source}")]
    MoveAside {
        /// The data directory.
        dir: PathBuf,
        /// Where they were to go.
        to: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
}

/// Opens the store in `dir` with `open`; on a sled corruption error and
/// [`OnCorruptStore::Rebuild`], moves sled's files into
/// `dir/corrupt-store-<unix ms>/` and opens an empty store there instead.
pub fn open_store(
    dir: &Path,
    policy: OnCorruptStore,
    open: impl Fn(&Path) -> Result<SledStore, StoreError>,
) -> Result<SledStore, RecoverError> {
    match open(dir) {
        Err(StoreError::Sled(sled::Error::Corruption { .. })) if policy == OnCorruptStore::Rebuild => {
            let to = move_aside(dir)?;
            error!(
                moved_to = %to.display(),
                "The store's files are corrupt: moved aside; re-ingesting the stream from sequence 1 \
                 (--on-corrupt-store rebuild)"
            );
            Ok(open(dir)?)
        }
        other => Ok(other?),
    }
}

/// Moves sled's files of `dir` into a new `corrupt-store-<unix ms>`
/// directory inside it; returns that directory.
fn move_aside(dir: &Path) -> Result<PathBuf, RecoverError> {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let to = dir.join(format!("corrupt-store-{ms}"));
    let fail = |source| RecoverError::MoveAside { dir: dir.to_owned(), to: to.clone(), source };
    std::fs::create_dir(&to).map_err(fail)?;
    for entry in std::fs::read_dir(dir).map_err(fail)? {
        let entry = entry.map_err(fail)?;
        let name = entry.file_name();
        if name.to_str().is_some_and(is_sled_file) {
            std::fs::rename(entry.path(), to.join(&name)).map_err(fail)?;
            warn!(file = %name.to_string_lossy(), "Moved aside");
        }
    }
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mpp_store::Store;
    use std::cell::Cell;

    fn corruption() -> StoreError {
        StoreError::Sled(sled::Error::Corruption { at: None, bt: () })
    }

    /// A store with something in it, so an empty reopen is visible.
    fn filled(dir: &Path) {
        let store = SledStore::open(dir).unwrap();
        assert!(store.head().unwrap().last_seq == 0);
        drop(store);
        std::fs::create_dir_all(dir.join("keys")).unwrap();
        std::fs::write(dir.join("keys").join("k"), b"key").unwrap();
        std::fs::write(dir.join("snap.0000000000000001"), b"x").unwrap();
    }

    #[test]
    fn a_corrupt_store_is_moved_aside_and_reopened_empty_keeping_the_keys() {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path());
        let calls = Cell::new(0);
        let store = open_store(dir.path(), OnCorruptStore::Rebuild, |d| {
            calls.set(calls.get() + 1);
            if calls.get() == 1 {
                Err(corruption())
            } else {
                SledStore::open(d)
            }
        })
        .unwrap();
        assert_eq!(calls.get(), 2);
        assert_eq!(store.head().unwrap().last_seq, 0);
        let aside: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("corrupt-store-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        for f in ["conf", "db", "snap.0000000000000001"] {
            assert!(aside[0].join(f).exists(), "{f} moved aside");
        }
        assert_eq!(std::fs::read(dir.path().join("keys").join("k")).unwrap(), b"key", "keys stay");
    }

    #[test]
    fn fail_keeps_the_files_and_reports_the_corruption() {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path());
        let err = open_store(dir.path(), OnCorruptStore::Fail, |_| Err(corruption())).unwrap_err();
        assert!(err.to_string().contains("orrupt"), "{err}");
        assert!(dir.path().join("db").exists() && dir.path().join("conf").exists());
        assert!(!std::fs::read_dir(dir.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("corrupt-store-")));
    }

    #[test]
    fn other_errors_are_never_rebuilt_from() {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path());
        let err = open_store(dir.path(), OnCorruptStore::Rebuild, |_| {
            Err(StoreError::UnsupportedFormat { found: "x".into(), expected: "y" })
        })
        .unwrap_err();
        assert!(err.to_string().contains("format"), "{err}");
        assert!(dir.path().join("db").exists());
    }
}
