//! The witness's durable state: per followed hub (by origin), the last
//! checkpoint it cosigned; and the evidence files of the checkpoints it
//! refused.
//!
//! ```text
//! <state-dir>/lock                        held (flock) by the one serving witness
//! <state-dir>/hubs/<origin id>.json       the last cosigned checkpoint (Cosigned)
//! <state-dir>/evidence/<evidence id>.json one refused checkpoint (evidence::Evidence)
//! ```
//!
//! `<origin id>` is the first 16 hex digits of SHA-256 of the origin. Every
//! file is written to a temporary name, fsynced, renamed over the old one,
//! and the directory fsynced: after a crash a file is wholly the old or
//! wholly the new one. A state file that does not parse stops the witness
//! (it must not forget what it cosigned and start over).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use mpp_core::log::Hash32;
use serde::{Deserialize, Serialize};

use crate::evidence::{short_id, Evidence};

/// The `format` of a state file.
pub const STATE_FORMAT: &str = "mpp-witness/state/v1";

/// Largest state or evidence file read, in bytes.
pub const STATE_FILE_BYTES_MAX: u64 = 256 * 1024;

/// Most evidence files kept (and served): further refusals are logged and
/// counted, not stored.
pub const EVIDENCE_FILES_MAX: usize = 1000;

/// The last checkpoint the witness cosigned for one hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cosigned {
    /// [`STATE_FORMAT`].
    pub format: String,
    /// The hub's origin.
    pub origin: String,
    /// Tree size.
    pub size: u64,
    /// Root hash, base64.
    pub root: String,
    /// The checkpoint note with the hub's signature and this witness's
    /// cosignature: what `GET /cosigned` serves.
    pub note: String,
    /// When it was cosigned, Unix seconds.
    pub cosigned_at_s: u64,
}

impl Cosigned {
    /// The root hash.
    pub fn root_hash(&self) -> anyhow::Result<Hash32> {
        mpp_core::base64::decode(&self.root)
            .and_then(|b| b.try_into().ok())
            .context("a state file's root is not 32 bytes of base64")
    }
}

/// The state directory.
#[derive(Debug)]
pub struct StateDir {
    dir: PathBuf,
    _lock: Option<std::fs::File>,
}

impl StateDir {
    /// Opens (creating) `dir` for the serving witness, holding its lock: a
    /// second witness on the same directory is refused.
    pub fn open_exclusive(dir: &Path) -> anyhow::Result<StateDir> {
        for d in [dir.to_owned(), dir.join("hubs"), dir.join("evidence")] {
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .context("opening the state lock")?;
        fs2::FileExt::try_lock_exclusive(&lock).with_context(|| {
            format!("{} is in use by another witness (one witness per state directory)", dir.display())
        })?;
        Ok(StateDir { dir: dir.to_owned(), _lock: Some(lock) })
    }

    /// Opens `dir` to read it (`check`), without the lock.
    pub fn open_read(dir: &Path) -> anyhow::Result<StateDir> {
        if !dir.join("hubs").is_dir() {
            bail!("{} is not a witness state directory (no hubs/)", dir.display());
        }
        Ok(StateDir { dir: dir.to_owned(), _lock: None })
    }

    fn hub_path(&self, origin: &str) -> PathBuf {
        self.dir.join("hubs").join(format!("{}.json", short_id(origin.as_bytes())))
    }

    /// The last cosigned checkpoint of `origin`, `None` before the first.
    pub fn load(&self, origin: &str) -> anyhow::Result<Option<Cosigned>> {
        let path = self.hub_path(origin);
        if !path.exists() {
            return Ok(None);
        }
        let c: Cosigned = read_json(&path)?;
        if c.format != STATE_FORMAT || c.origin != origin {
            bail!("{} is not the state of {origin} in format {STATE_FORMAT}", path.display());
        }
        c.root_hash()?;
        Ok(Some(c))
    }

    /// Every hub's state.
    pub fn all(&self) -> anyhow::Result<Vec<Cosigned>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.dir.join("hubs"))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                out.push(read_json(&path)?);
            }
        }
        out.sort_by(|a: &Cosigned, b| a.origin.cmp(&b.origin));
        Ok(out)
    }

    /// Commits `c` durably (the caller releases its cosignature only after).
    pub fn commit(&self, c: &Cosigned) -> anyhow::Result<()> {
        write_durably(&self.hub_path(&c.origin), &serde_json::to_vec_pretty(c)?)
    }

    /// Stores `e` unless an identical one is stored or [`EVIDENCE_FILES_MAX`]
    /// are; returns whether it was stored now.
    pub fn put_evidence(&self, e: &Evidence) -> anyhow::Result<bool> {
        let path = self.dir.join("evidence").join(format!("{}.json", e.id()));
        if path.exists() || self.evidence_count()? >= EVIDENCE_FILES_MAX {
            return Ok(false);
        }
        write_durably(&path, &serde_json::to_vec_pretty(e)?)?;
        Ok(true)
    }

    fn evidence_count(&self) -> anyhow::Result<usize> {
        Ok(std::fs::read_dir(self.dir.join("evidence"))?.count())
    }

    /// Every evidence file (at most [`EVIDENCE_FILES_MAX`]), oldest
    /// observation first, with its path.
    pub fn evidence(&self) -> anyhow::Result<Vec<(PathBuf, Evidence)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.dir.join("evidence"))?.take(EVIDENCE_FILES_MAX) {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let e: Evidence = read_json(&path)?;
                out.push((path, e));
            }
        }
        out.sort_by_key(|(_, e)| e.observed_at_s);
        Ok(out)
    }
}

/// Reads a JSON file of at most [`STATE_FILE_BYTES_MAX`] bytes.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let len = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    if len > STATE_FILE_BYTES_MAX {
        bail!("{} is larger than {STATE_FILE_BYTES_MAX} bytes", path.display());
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} does not parse", path.display()))
}

/// Writes `bytes` to `path` atomically and durably: a temporary file,
/// fsync, rename, fsync of the directory.
pub fn write_durably(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("a state file has a directory")?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all().with_context(|| format!("fsync of {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("renaming onto {}", path.display()))?;
    std::fs::File::open(dir)?.sync_all().with_context(|| format!("fsync of {}", dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosigned(size: u64) -> Cosigned {
        Cosigned {
            format: STATE_FORMAT.to_owned(),
            origin: "mpp-hub/a".to_owned(),
            size,
            root: mpp_core::base64::encode(&[size as u8; 32]),
            note: "n".to_owned(),
            cosigned_at_s: 1,
        }
    }

    #[test]
    fn a_commit_survives_a_reopen_and_a_second_witness_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDir::open_exclusive(dir.path()).unwrap();
        assert_eq!(s.load("mpp-hub/a").unwrap(), None);
        s.commit(&cosigned(5)).unwrap();
        s.commit(&cosigned(9)).unwrap();
        assert!(StateDir::open_exclusive(dir.path()).is_err(), "the lock is held");
        drop(s);
        let s = StateDir::open_exclusive(dir.path()).unwrap();
        assert_eq!(s.load("mpp-hub/a").unwrap(), Some(cosigned(9)));
        assert_eq!(s.all().unwrap(), vec![cosigned(9)]);
    }

    #[test]
    fn a_damaged_state_file_stops_the_witness_instead_of_starting_over() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDir::open_exclusive(dir.path()).unwrap();
        s.commit(&cosigned(5)).unwrap();
        std::fs::write(s.hub_path("mpp-hub/a"), b"{").unwrap();
        assert!(s.load("mpp-hub/a").is_err());
    }
}
