//! Opening the store when sled finds its own files corrupt.
//!
//! sled 0.34.7 can fail to reopen a database after the process was killed
//! (`Read corrupted data at file offset None`; sled issues #1509, #1527,
//! #1533; seen twice in about 3,700 `kill -9`s of the hub, docs/FAULTS.md).
//! Nothing acknowledged is lost then, as long as JetStream still holds
//! every message from sequence 1: the log is a deterministic function of
//! the stream. With `--on-corrupt-store rebuild` (the default) the hub
//! first asks the stream where it starts; if it holds every message from
//! sequence 1 on, the hub moves sled's files aside (kept for a post-mortem,
//! never deleted, named in an ERROR log line and counted by
//! `mpp_hub_corrupt_stores_kept`) and starts an empty store beside them;
//! ingest recreates its consumer at checkpoint + 1 = 1 and re-derives the
//! same log, entry for entry, so its next checkpoints are consistent with
//! the ones it signed before. The signing key (`keys/`) and the access log
//! (`access/`) stay. If the stream no longer starts at 1 (or has lost a
//! message, or cannot be asked), a rebuild would lose the entries of the
//! missing messages: the hub refuses to start and says why, whatever the
//! flag. `fail` never rebuilds.

use std::future::Future;
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use mpp_edge::nats::{connect_nats, NatsAccess};
use mpp_edge::stream::STREAM_NAME;
use mpp_store::{SledStore, StoreError};
use tracing::{error, warn};

/// What the hub does when sled reports its files corrupt on open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnCorruptStore {
    /// Exit with the error; an operator follows the runbook
    /// (docs/OPERATIONS.md).
    Fail,
    /// Move sled's files aside and re-ingest the stream from sequence 1, if
    /// the stream still holds every message from 1 on (else exit, saying
    /// why).
    Rebuild,
}

/// The prefix of the directories corrupt stores are moved into, inside the
/// data directory.
pub const CORRUPT_STORE_DIR_PREFIX: &str = "corrupt-store-";

/// The names of sled's own files in a data directory: `conf`, `db`,
/// `blobs/` and `snap.*`. Everything else (`keys/`, `access/`, earlier
/// `corrupt-store-*` directories) stays where it is.
fn is_sled_file(name: &str) -> bool {
    matches!(name, "conf" | "db" | "blobs") || name.starts_with("snap.")
}

/// Where the events stream starts and ends, as JetStream reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamExtent {
    /// The lowest sequence still held (0 or 1 for a stream never trimmed).
    pub first_seq: u64,
    /// The last sequence assigned.
    pub last_seq: u64,
    /// Messages held.
    pub messages: u64,
}

impl StreamExtent {
    /// Whether the stream holds every message from sequence 1 to its last:
    /// only then does re-ingesting it give the log back whole.
    pub fn holds_all_from_one(&self) -> bool {
        self.first_seq <= 1 && self.messages == self.last_seq
    }
}

/// Why the store could not be opened, or moved aside.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// Opening failed (and was not a corruption to rebuild from).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store is corrupt and `--on-corrupt-store fail` forbids a rebuild.
    #[error(
        "the store's files are corrupt ({source}); --on-corrupt-store fail: not rebuilding. Follow \
         the runbook in docs/OPERATIONS.md (\"The store does not open after a crash\")"
    )]
    CorruptNoRebuild {
        /// sled's error.
        source: StoreError,
    },
    /// The store is corrupt and the stream no longer holds every message
    /// from sequence 1, so a rebuild would lose log entries.
    #[error(
        "the store's files are corrupt ({source}) and cannot be rebuilt from the stream: it no longer \
         holds every message from sequence 1 (first sequence {first}, last {last}, {messages} messages), \
         so a re-ingest would lose the log entries of the missing messages. The files were left as they \
         are; restore the log from a backup (mpp-hub admin restore, docs/OPERATIONS.md)",
        first = extent.first_seq,
        last = extent.last_seq,
        messages = extent.messages
    )]
    StreamIncomplete {
        /// sled's error.
        source: StoreError,
        /// What the stream holds.
        extent: StreamExtent,
    },
    /// The store is corrupt and the stream could not be asked where it
    /// starts.
    #[error(
        "the store's files are corrupt ({source}); not rebuilding, because the events stream could not \
         be checked for every message from sequence 1: {why}. The files were left as they are; start \
         the hub again once NATS answers"
    )]
    StreamUnknown {
        /// sled's error.
        source: StoreError,
        /// Why the stream could not be asked.
        why: String,
    },
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

/// Opens the store in `dir` with `open`. On a sled corruption error with
/// [`OnCorruptStore::Rebuild`], awaits `stream` (where the events stream
/// starts; nothing is asked unless the store is corrupt) and, if it holds
/// every message from sequence 1, moves sled's files into
/// `dir/corrupt-store-<unix ms>/` and opens an empty store in `dir`
/// instead; otherwise fails saying why.
pub async fn open_store<S>(
    dir: &Path,
    policy: OnCorruptStore,
    open: impl Fn(&Path) -> Result<SledStore, StoreError>,
    stream: S,
) -> Result<SledStore, RecoverError>
where
    S: Future<Output = Result<StreamExtent, String>>,
{
    let source = match open(dir) {
        Err(e @ StoreError::Sled(sled::Error::Corruption { .. })) => e,
        other => return Ok(other?),
    };
    if policy == OnCorruptStore::Fail {
        return Err(RecoverError::CorruptNoRebuild { source });
    }
    let extent = match stream.await {
        Ok(extent) => extent,
        Err(why) => return Err(RecoverError::StreamUnknown { source, why }),
    };
    if !extent.holds_all_from_one() {
        return Err(RecoverError::StreamIncomplete { source, extent });
    }
    let to = move_aside(dir)?;
    error!(
        error = %source,
        moved_to = %to.display(),
        stream_last_seq = extent.last_seq,
        "STORE REBUILT: the store's files were corrupt and are kept in the directory named here; a new \
         store is being built beside them by re-ingesting the stream from sequence 1 \
         (--on-corrupt-store rebuild). Lookups miss cases until it has caught up. Find out why (disk, \
         kill -9), then remove the old files"
    );
    Ok(open(dir)?)
}

/// Longest the hub waits for NATS to say where the events stream starts,
/// before a rebuild, in milliseconds.
pub const STREAM_CHECK_MS_MAX: u64 = 10_000;

/// Asks NATS at `nats_url` where the events stream starts and ends (for
/// [`open_store`]), within [`STREAM_CHECK_MS_MAX`]. A missing stream is an
/// error: rebuilding from it would make an empty log.
pub async fn ask_stream(nats_url: &str, access: &NatsAccess) -> Result<StreamExtent, String> {
    let ask = async {
        let client = connect_nats(nats_url, "mpp-hub-recover", access)
            .await
            .map_err(|e| format!("cannot connect to NATS at {nats_url}: {e}"))?;
        let js = async_nats::jetstream::new(client);
        let mut stream =
            js.get_stream(STREAM_NAME).await.map_err(|e| format!("cannot find stream {STREAM_NAME}: {e}"))?;
        let info = stream.info().await.map_err(|e| format!("cannot read stream {STREAM_NAME}: {e}"))?;
        Ok(StreamExtent {
            first_seq: info.state.first_sequence,
            last_seq: info.state.last_sequence,
            messages: info.state.messages,
        })
    };
    tokio::time::timeout(std::time::Duration::from_millis(STREAM_CHECK_MS_MAX), ask)
        .await
        .map_err(|_| format!("NATS at {nats_url} did not answer within {STREAM_CHECK_MS_MAX} ms"))?
}

/// How many corrupt stores moved aside are kept in `dir` (the
/// `corrupt-store-*` directories an operator has not removed yet).
pub fn corrupt_stores_kept(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(CORRUPT_STORE_DIR_PREFIX))
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .count() as u64
    })
}

/// Moves sled's files of `dir` into a new `corrupt-store-<unix ms>`
/// directory inside it; returns that directory.
fn move_aside(dir: &Path) -> Result<PathBuf, RecoverError> {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let to = dir.join(format!("{CORRUPT_STORE_DIR_PREFIX}{ms}"));
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

    /// A stream that holds messages 1..=n.
    fn whole(n: u64) -> StreamExtent {
        StreamExtent { first_seq: u64::from(n > 0), last_seq: n, messages: n }
    }

    async fn asked_never() -> Result<StreamExtent, String> {
        panic!("the stream is asked only when the store is corrupt and may be rebuilt")
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

    fn kept(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(CORRUPT_STORE_DIR_PREFIX))
            .collect()
    }

    #[tokio::test]
    async fn a_corrupt_store_is_moved_aside_and_reopened_empty_keeping_the_keys() {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path());
        let calls = Cell::new(0);
        let open = |d: &Path| {
            calls.set(calls.get() + 1);
            if calls.get() == 1 {
                Err(corruption())
            } else {
                SledStore::open(d)
            }
        };
        let store =
            open_store(dir.path(), OnCorruptStore::Rebuild, open, async { Ok(whole(40)) }).await.unwrap();
        assert_eq!(calls.get(), 2);
        assert_eq!(store.head().unwrap().last_seq, 0);
        let aside = kept(dir.path());
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(corrupt_stores_kept(dir.path()), 1);
        for f in ["conf", "db", "snap.0000000000000001"] {
            assert!(aside[0].join(f).exists(), "{f} moved aside");
        }
        assert_eq!(std::fs::read(dir.path().join("keys").join("k")).unwrap(), b"key", "keys stay");
    }

    #[tokio::test]
    async fn no_rebuild_when_the_stream_no_longer_holds_everything_from_one() {
        for extent in [
            StreamExtent { first_seq: 5, last_seq: 40, messages: 36 },
            StreamExtent { first_seq: 1, last_seq: 40, messages: 39 },
        ] {
            let dir = tempfile::tempdir().unwrap();
            filled(dir.path());
            let err =
                open_store(dir.path(), OnCorruptStore::Rebuild, |_| Err(corruption()), async { Ok(extent) })
                    .await
                    .unwrap_err();
            assert!(matches!(err, RecoverError::StreamIncomplete { .. }), "{err}");
            let text = err.to_string();
            assert!(text.contains("would lose") && text.contains("first sequence"), "{text}");
            assert!(dir.path().join("db").exists() && kept(dir.path()).is_empty(), "files left as they are");
        }
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path());
        let err = open_store(dir.path(), OnCorruptStore::Rebuild, |_| Err(corruption()), async {
            Err("no NATS".to_owned())
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("no NATS"), "{err}");
        assert!(dir.path().join("db").exists() && kept(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn fail_keeps_the_files_and_reports_the_corruption() {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path());
        let err = open_store(dir.path(), OnCorruptStore::Fail, |_| Err(corruption()), asked_never())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("orrupt") && err.to_string().contains("fail"), "{err}");
        assert!(dir.path().join("db").exists() && dir.path().join("conf").exists());
        assert!(kept(dir.path()).is_empty());
        assert_eq!(corrupt_stores_kept(dir.path()), 0);
    }

    #[tokio::test]
    async fn other_errors_are_never_rebuilt_from() {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path());
        let err = open_store(
            dir.path(),
            OnCorruptStore::Rebuild,
            |_| Err(StoreError::UnsupportedFormat { found: "x".into(), expected: "y" }),
            asked_never(),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("format"), "{err}");
        assert!(dir.path().join("db").exists());
    }

    #[test]
    fn a_stream_holds_all_from_one_only_when_dense_from_one() {
        assert!(whole(0).holds_all_from_one(), "a stream never written to");
        assert!(whole(7).holds_all_from_one());
        assert!(!StreamExtent { first_seq: 2, last_seq: 7, messages: 6 }.holds_all_from_one());
        assert!(!StreamExtent { first_seq: 1, last_seq: 7, messages: 6 }.holds_all_from_one());
    }
}
