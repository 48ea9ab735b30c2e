//! `audit verify`'s witness policy: `--witness-key K … --witness-quorum N`
//! requires N valid cosignatures (by distinct given keys) on the cosigned
//! checkpoint the verification ends at, and that checkpoint must be a
//! prefix of the log just verified. Entries after it are reported loudly:
//! no witness vouches that everyone was shown them alike, and cutting them
//! would verify the same.
//!
//! The cosigned checkpoint is `--cosigned-checkpoint FILE` (a note as
//! `GET /checkpoint` or a witness's `/cosigned` serves it); else, on a data
//! directory, the newest in `<data-dir>/witness-cosignatures.json` that
//! meets the policy; else, remotely, the latest checkpoint's note.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use mpp_core::log::Hash32;
use mpp_core::note::{self, CosignerKey};

use super::report::VerifyReport;
use super::PublicKey;
use crate::cosign::{parse_vkey, valid_cosignatures};

/// Largest `--cosigned-checkpoint` file read, in bytes.
pub const COSIGNED_CHECKPOINT_BYTES_MAX: u64 = note::NOTE_BYTES_MAX as u64;

/// The witness flags of `audit verify`.
#[derive(Debug, Clone, Default, Args)]
pub struct WitnessPolicyArgs {
    /// A witness key (C2SP vkey, what `mpp-witness public-key` prints) whose
    /// cosignatures count toward --witness-quorum. Repeat, or separate
    /// with `,`. Needs --public-key.
    #[arg(long = "witness-key", env = "MPP_VERIFY_WITNESS_KEYS", value_delimiter = ',', value_parser = parse_vkey)]
    pub keys: Vec<CosignerKey>,
    /// Valid cosignatures by distinct --witness-key keys required on the
    /// checkpoint the verification ends at (default: all of them).
    #[arg(long, env = "MPP_VERIFY_WITNESS_QUORUM", requires = "keys",
          value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub witness_quorum: Option<u64>,
    /// The cosigned checkpoint to end at: a C2SP note file with the hub's
    /// signature and the witnesses' cosignatures (as `GET /checkpoint`
    /// serves it). Needed with --export.
    #[arg(long, env = "MPP_VERIFY_COSIGNED_CHECKPOINT", requires = "keys")]
    pub cosigned_checkpoint: Option<PathBuf>,
}

/// A checked witness policy.
#[derive(Debug, Clone)]
pub struct Policy {
    keys: Vec<CosignerKey>,
    quorum: usize,
    hub_key: [u8; 32],
}

/// A cosigned checkpoint that meets the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosigned {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash32,
    /// The witnesses whose cosignatures verified.
    pub witnesses: Vec<String>,
}

impl WitnessPolicyArgs {
    /// The policy, `None` without --witness-key.
    pub fn policy(&self, hub_key: Option<&PublicKey>) -> anyhow::Result<Option<Policy>> {
        if self.keys.is_empty() {
            return Ok(None);
        }
        let Some(hub_key) = hub_key else {
            bail!("--witness-key needs --public-key: the hub's signature on the cosigned checkpoint is checked too")
        };
        let quorum = self.witness_quorum.map_or(self.keys.len(), |q| q as usize);
        if quorum > self.keys.len() {
            bail!("--witness-quorum {quorum} is more than the {} --witness-key given", self.keys.len());
        }
        Ok(Some(Policy { keys: self.keys.clone(), quorum, hub_key: hub_key.bytes }))
    }

    /// `--cosigned-checkpoint`'s text, if given.
    pub fn read_file(&self) -> anyhow::Result<Option<String>> {
        let Some(path) = &self.cosigned_checkpoint else { return Ok(None) };
        read_note(path).map(Some)
    }
}

fn read_note(path: &Path) -> anyhow::Result<String> {
    let len = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    if len > COSIGNED_CHECKPOINT_BYTES_MAX {
        bail!("{} is larger than {COSIGNED_CHECKPOINT_BYTES_MAX} bytes", path.display());
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

impl Policy {
    /// Checks `text`: the hub's signature (key name = its origin), then
    /// at least the quorum of valid cosignatures by distinct keys.
    pub fn check(&self, text: &str) -> Result<Cosigned, String> {
        let (body, sigs) = note::parse(text).map_err(|e| e.to_string())?;
        let cp = note::parse_checkpoint(body).map_err(|e| e.to_string())?;
        note::verify(text, cp.origin, &self.hub_key, |m, s| {
            ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &self.hub_key)
                .verify(m, s)
                .is_ok()
        })
        .map_err(|e| format!("the cosigned checkpoint is not the hub's: {e}"))?;
        let valid = valid_cosignatures(body, &sigs, &self.keys);
        if valid.len() < self.quorum {
            return Err(format!(
                "tree size {} carries {} valid cosignature(s) by the given witness keys, {} required",
                cp.tree_size,
                valid.len(),
                self.quorum
            ));
        }
        Ok(Cosigned {
            size: cp.tree_size,
            root: cp.root_hash,
            witnesses: valid.into_iter().map(|s| s.name).collect(),
        })
    }

    /// The newest of a hub's kept cosigned notes (tree size → note) that
    /// meets the policy.
    pub fn newest_in(&self, notes: &std::collections::BTreeMap<u64, String>) -> Result<Cosigned, String> {
        let mut why = "no cosigned checkpoint is kept in the data directory".to_owned();
        for text in notes.values().rev() {
            match self.check(text) {
                Ok(c) => return Ok(c),
                Err(w) if why.starts_with("no cosigned") => why = w,
                Err(_) => {}
            }
        }
        Err(why)
    }

    /// The required quorum.
    pub fn quorum(&self) -> usize {
        self.quorum
    }
}

/// The lines after `OK:` that say what the witnesses vouch for, or the
/// failure: the cosigned checkpoint is beyond the verified log, or its root
/// is not the root of the log's prefix (`root_at(size)`).
pub fn conclude(
    report: &VerifyReport,
    cosigned: Result<Cosigned, String>,
    quorum: usize,
    root_at: impl FnOnce(u64) -> anyhow::Result<Hash32>,
) -> Result<Vec<String>, String> {
    let c = cosigned.map_err(|w| format!("FAILED: witnesses: {w}"))?;
    if c.size > report.entries {
        return Err(format!(
            "FAILED: witnesses: the cosigned checkpoint has {} entries, the log verified has {}: entries are missing",
            c.size, report.entries
        ));
    }
    let root = root_at(c.size).map_err(|e| format!("FAILED: witnesses: {e:#}"))?;
    if root != c.root {
        return Err(format!(
            "FAILED: witnesses: the witnesses cosigned another tree of size {} than this log's: this is not the \
             history they were shown (split view)",
            c.size
        ));
    }
    let mut lines = vec![format!(
        "witnesses: tree size {} cosigned by {} witnesses ({} required): {}",
        c.size,
        c.witnesses.len(),
        quorum,
        c.witnesses.join(", ")
    )];
    if c.size < report.entries {
        lines.push(format!(
            "WARNING: entries {}..={} ({} entries) come after the last cosigned checkpoint: no witness vouches \
             that everyone was shown them, and a log cut at {} would verify the same",
            c.size + 1,
            report.entries,
            report.entries - c.size,
            c.size
        ));
    }
    Ok(lines)
}

/// The warning about entries after the last signed checkpoint (without a
/// witness policy), if any.
pub fn unsigned_tail(report: &VerifyReport) -> Option<String> {
    let signed = report.latest_checkpoint.as_ref().map_or(0, |c| c.checkpoint.tree_size);
    (signed < report.entries).then(|| {
        format!(
            "WARNING: entries {}..={} ({} entries) come after the last signed checkpoint: the hub has not signed \
             them, and a log cut at {signed} would verify the same",
            signed + 1,
            report.entries,
            report.entries - signed
        )
    })
}
