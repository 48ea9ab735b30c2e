//! The witnesses' cosignatures on the hub's checkpoints, as the hub keeps
//! and serves them: `GET /checkpoint` ([`crate::http`]), the receipt check
//! of the tracking page ([`crate::page`]), and every `SignedCheckpoint.note`
//! of the audit API. Collecting them from the witnesses is `mpp-audit`'s
//! (`mpp_audit::cosign`), which merges what it fetches into this store; the
//! lookups only read it, so the cosigned checkpoint is answered by the
//! lookup router, behind its concurrency limit.
//!
//! Nothing a witness answers is trusted: a cosignature is kept only if it
//! verifies under a configured witness key (`--witness-key`, a C2SP vkey)
//! over the body of the checkpoint this hub signed at that size.
//!
//! Kept in `<data-dir>/witness-cosignatures.json` (written to a temporary
//! file, fsynced, renamed): the cosigned notes of the newest
//! [`COSIGNED_SIZES_KEPT_MAX`] tree sizes, each the hub's note with the
//! hub's signature and the witnesses' cosignature lines, so `mpp-hub audit
//! verify --data-dir` on a copy of the directory finds them. Losing the
//! file loses no safety: cosignatures are statements the witnesses keep
//! making.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{bail, Context};
use mpp_core::checkpoint::SignedCheckpoint;
use mpp_core::note::{self, CosignerKey, NoteSignature};
use serde::{Deserialize, Serialize};

/// The file, under the data directory.
pub const COSIGNATURES_FILE: &str = "witness-cosignatures.json";

/// Its `format`.
pub const COSIGNATURES_FORMAT: &str = "mpp-hub/witness-cosignatures/v1";

/// Tree sizes whose cosignatures are kept (the newest).
pub const COSIGNED_SIZES_KEPT_MAX: usize = 64;

/// Largest cosignatures file read, in bytes.
pub const COSIGNATURES_FILE_BYTES_MAX: u64 = (COSIGNED_SIZES_KEPT_MAX * 4 * 1024) as u64;

/// Most witnesses a hub is configured with.
pub const WITNESSES_MAX: usize = 32;

#[derive(Debug, Default, Serialize, Deserialize)]
struct CosignaturesFile {
    format: String,
    /// Tree size → cosigned note.
    notes: BTreeMap<u64, String>,
}

fn ed25519(pk: &[u8; 32], m: &[u8], s: &[u8; 64]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, pk).verify(m, s).is_ok()
}

/// The cosignatures of `keys` that verify over `body` among `signatures`,
/// one per key, in the order of `keys`.
pub fn valid_cosignatures(
    body: &str,
    signatures: &[NoteSignature],
    keys: &[CosignerKey],
) -> Vec<NoteSignature> {
    keys.iter()
        .filter_map(|k| k.verify(body, signatures, |m, s| ed25519(&k.public_key, m, s)))
        .map(|c| c.to_note_signature())
        .collect()
}

/// The hub's cosigned notes.
#[derive(Debug)]
pub struct Cosignatures {
    path: PathBuf,
    origin: String,
    keys: Vec<CosignerKey>,
    notes: RwLock<BTreeMap<u64, String>>,
}

/// Reads `<data_dir>/witness-cosignatures.json` (tree size → cosigned
/// note); empty when there is none. Nothing in it is verified here.
pub fn read_file(data_dir: &Path) -> anyhow::Result<BTreeMap<u64, String>> {
    let path = data_dir.join(COSIGNATURES_FILE);
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    if std::fs::metadata(&path)?.len() > COSIGNATURES_FILE_BYTES_MAX {
        bail!("{} is larger than {COSIGNATURES_FILE_BYTES_MAX} bytes", path.display());
    }
    let f: CosignaturesFile = serde_json::from_slice(&std::fs::read(&path)?)
        .with_context(|| format!("{} does not parse", path.display()))?;
    if f.format != COSIGNATURES_FORMAT {
        bail!("{} is not of format {COSIGNATURES_FORMAT}", path.display());
    }
    Ok(f.notes)
}

impl Cosignatures {
    /// Loads the file in `data_dir` (when there is one), keeping the
    /// cosignature lines that verify under `keys`.
    pub fn open(data_dir: &Path, origin: &str, keys: Vec<CosignerKey>) -> anyhow::Result<Cosignatures> {
        if keys.len() > WITNESSES_MAX {
            bail!("at most {WITNESSES_MAX} witness keys");
        }
        let mut notes = BTreeMap::new();
        for (size, text) in read_file(data_dir)? {
            if let Ok((body, sigs)) = note::parse(&text) {
                if !valid_cosignatures(body, &sigs, &keys).is_empty() {
                    notes.insert(size, text);
                }
            }
        }
        Ok(Cosignatures {
            path: data_dir.join(COSIGNATURES_FILE),
            origin: origin.to_owned(),
            keys,
            notes: RwLock::new(notes),
        })
    }

    /// The hub's origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The witness keys whose cosignatures are kept.
    pub fn keys(&self) -> &[CosignerKey] {
        &self.keys
    }

    /// The newest tree size of at least `size` whose cosignatures are
    /// held, if any.
    pub fn newest_at_least(&self, size: u64) -> Option<u64> {
        self.notes.read().unwrap_or_else(|e| e.into_inner()).range(size..).next_back().map(|(s, _)| *s)
    }

    /// `cp`'s note with the cosignatures held for its size (only those over
    /// exactly its body); `None` for a checkpoint without a note.
    pub fn note_of(&self, cp: &SignedCheckpoint) -> Option<String> {
        let own = cp.to_note()?;
        let held =
            self.notes.read().unwrap_or_else(|e| e.into_inner()).get(&cp.checkpoint.tree_size).cloned();
        let Some(held) = held else { return Some(own) };
        let (Ok((body, own_sigs)), Ok((_, held_sigs))) = (note::parse(&own), note::parse(&held)) else {
            return Some(own);
        };
        let mut sigs = own_sigs;
        sigs.extend(valid_cosignatures(body, &held_sigs, &self.keys));
        Some(note::render(body, &sigs))
    }

    /// Merges the cosignatures of `witness_note` (a note of the checkpoint
    /// `own` of this hub) that verify; returns how many are new.
    pub fn merge(&self, own: &SignedCheckpoint, witness_note: &str) -> anyhow::Result<usize> {
        let own_note = own.to_note().context("the checkpoint has no note")?;
        let (body, _) = note::parse(&own_note)?;
        let (their_body, their_sigs) = note::parse(witness_note)?;
        if their_body != body {
            bail!("the witness cosigned another body than the hub's checkpoint of that size");
        }
        let size = own.checkpoint.tree_size;
        let mut notes = self.notes.write().unwrap_or_else(|e| e.into_inner());
        // Lines held for another body (a store restored over this
        // directory) are dropped.
        let mut held = match notes.get(&size).map(|n| note::parse(n)) {
            Some(Ok((b, s))) if b == body => s,
            _ => Vec::new(),
        };
        held.retain(|s| s.signature.len() == note::COSIGNATURE_V1_BYTES);
        let mut new = 0;
        for c in valid_cosignatures(body, &their_sigs, &self.keys) {
            if let Some(old) = held.iter_mut().find(|s| s.name == c.name && s.key_hash == c.key_hash) {
                *old = c;
            } else {
                held.push(c);
                new += 1;
            }
        }
        if new == 0 {
            return Ok(0);
        }
        let (_, mut sigs) = note::parse(&own_note)?;
        sigs.extend(held);
        notes.insert(size, note::render(body, &sigs));
        while notes.len() > COSIGNED_SIZES_KEPT_MAX {
            notes.pop_first();
        }
        let file = CosignaturesFile { format: COSIGNATURES_FORMAT.to_owned(), notes: notes.clone() };
        drop(notes);
        write_durably(&self.path, &serde_json::to_vec_pretty(&file)?)?;
        Ok(new)
    }
}

fn write_durably(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// What the hub publishes so that anyone can check its log: its origin,
/// its checkpoint key, and the cosignatures of the witnesses it is
/// configured with. The lookups serve it (`GET /checkpoint`, the receipt
/// check of the tracking page), the server builds it once.
#[derive(Debug)]
pub struct Transparency {
    /// The hub's origin, `mpp-hub/<hub id>` (also its note key name).
    pub origin: String,
    /// The hub's Ed25519 checkpoint key.
    pub hub_key: [u8; 32],
    /// The witnesses' cosignatures, when witnesses are configured.
    pub cosignatures: Option<Arc<Cosignatures>>,
}

impl Transparency {
    /// The configured witness keys (none without witnesses).
    pub fn witness_keys(&self) -> &[CosignerKey] {
        self.cosignatures.as_deref().map_or(&[], Cosignatures::keys)
    }

    /// Cosignatures the tracking page's receipt check requires: a majority
    /// of the configured witnesses (`M / 2 + 1`, so that two quorums
    /// always share a witness; docs/AUDIT.md, "The trust model"), 0
    /// without witnesses.
    pub fn receipt_quorum(&self) -> usize {
        match self.witness_keys().len() {
            0 => 0,
            m => m / 2 + 1,
        }
    }

    /// `cp`'s note with the cosignatures held for it; `None` for a
    /// checkpoint without a note.
    pub fn note_of(&self, cp: &SignedCheckpoint) -> Option<String> {
        match &self.cosignatures {
            Some(c) => c.note_of(cp),
            None => cp.to_note(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use mpp_core::checkpoint::{Checkpoint, KeyId, Origin};
    use mpp_core::note::Cosignature;
    use ring::signature::{Ed25519KeyPair, KeyPair as _};

    fn pair(seed: u8) -> (Ed25519KeyPair, [u8; 32]) {
        let p = Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap();
        let pk = p.public_key().as_ref().try_into().unwrap();
        (p, pk)
    }

    fn signed(size: u64, root: u8) -> SignedCheckpoint {
        let (hub, pk) = pair(1);
        let origin = Origin::new("mpp-hub/t").unwrap();
        Checkpoint {
            origin: origin.clone(),
            key_id: KeyId::of(&pk),
            tree_size: size,
            root_hash: [root; 32],
            head_hash: [0; 32],
            last_stream_seq: size,
            last_entry_time_ns: 0,
            signed_at_ms: 0,
            projection: None,
        }
        .sign_with_note(note::key_hash(origin.as_str(), &pk), |m| hub.sign(m).as_ref().try_into().unwrap())
    }

    /// `cp`'s note cosigned by the witness of `seed`.
    fn cosigned_by(cp: &SignedCheckpoint, seed: u8) -> (CosignerKey, String) {
        let (w, pk) = pair(seed);
        let key = CosignerKey { name: format!("w{seed}.example/witness"), public_key: pk };
        let own = cp.to_note().unwrap();
        let (body, mut sigs) = note::parse(&own).unwrap();
        let c = Cosignature::sign(&key.name, &pk, 1_700_000_000, body, |m| {
            w.sign(m).as_ref().try_into().unwrap()
        });
        sigs.push(c.to_note_signature());
        (key, note::render(body, &sigs))
    }

    #[test]
    fn only_valid_cosignatures_of_the_hub_s_own_body_are_kept_served_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let cp = signed(5, 7);
        let (k2, by2) = cosigned_by(&cp, 2);
        let (k3, by3) = cosigned_by(&cp, 3);
        let (_, by_stranger) = cosigned_by(&cp, 4);
        let cos = Cosignatures::open(dir.path(), "mpp-hub/t", vec![k2.clone(), k3.clone()]).unwrap();
        assert_eq!(cos.note_of(&cp), cp.to_note(), "nothing held yet");
        assert_eq!(cos.merge(&cp, &by_stranger).unwrap(), 0, "a key not configured");
        assert_eq!(cos.merge(&cp, &by2).unwrap(), 1);
        assert_eq!(cos.merge(&cp, &by2).unwrap(), 0, "the same witness again");
        // The same witnesses over another root of size 5: not this hub's body.
        let (_, other) = cosigned_by(&signed(5, 8), 3);
        assert!(cos.merge(&cp, &other).is_err());
        assert_eq!(cos.merge(&cp, &by3).unwrap(), 1);
        let served = cos.note_of(&cp).unwrap();
        let (body, sigs) = note::parse(&served).unwrap();
        assert_eq!(valid_cosignatures(body, &sigs, &[k2.clone(), k3.clone()]).len(), 2);
        // A checkpoint of that size with another body gets none of them.
        assert_eq!(cos.note_of(&signed(5, 9)), signed(5, 9).to_note());
        // Reloaded from the file after a restart.
        let again = Cosignatures::open(dir.path(), "mpp-hub/t", vec![k2, k3]).unwrap();
        assert_eq!(again.note_of(&cp), Some(served));
    }
}
