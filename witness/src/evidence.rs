//! Evidence of a hub's misbehaviour: two checkpoints the hub signed that
//! cannot both be states of one append-only log, in a JSON file anyone can
//! check offline with the hub's public key alone (`mpp-witness
//! verify-evidence FILE`, [`verify`]).
//!
//! | kind | what the two checkpoints show | proven by the file alone |
//! |---|---|---|
//! | `split-view` | one tree size, two roots, both signed by the hub | yes: an append-only log has one root per size |
//! | `rollback` | the hub served a smaller tree after the witness cosigned a larger one | the signatures yes; the order is the witness's word (its cosignature on the larger one dates it) |
//! | `inconsistent` | a larger tree whose consistency proof from the cosigned one does not verify | the hub must produce a proof that verifies; an honest hub always can |

use mpp_core::log::Hash32;
use mpp_core::note::{self, CosignerKey};
use serde::{Deserialize, Serialize};

/// The `format` of an evidence file.
pub const EVIDENCE_FORMAT: &str = "mpp-witness/evidence/v1";

/// What the witness saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvidenceKind {
    /// Two roots for one tree size.
    SplitView,
    /// A smaller tree after a larger one was cosigned.
    Rollback,
    /// A larger tree without a consistency proof that verifies.
    Inconsistent,
}

impl EvidenceKind {
    /// The kind's name, as in the file and the metrics' labels.
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceKind::SplitView => "split-view",
            EvidenceKind::Rollback => "rollback",
            EvidenceKind::Inconsistent => "inconsistent",
        }
    }
}

/// One evidence file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// [`EVIDENCE_FORMAT`].
    pub format: String,
    /// What the witness saw.
    pub kind: EvidenceKind,
    /// The hub's origin (its key name).
    pub origin: String,
    /// The hub's Ed25519 public key the witness was given, 64 hex digits.
    pub hub_key: String,
    /// The witness's vkey (C2SP), which cosigned `cosigned`.
    pub witness: String,
    /// When the witness saw `conflicting`, Unix seconds.
    pub observed_at_s: u64,
    /// The checkpoint the witness had cosigned: the hub's note with the
    /// hub's signature and the witness's cosignature.
    pub cosigned: String,
    /// The checkpoint the hub served later, with the hub's signature.
    pub conflicting: String,
    /// For `inconsistent`: the consistency proof the hub served from
    /// `cosigned` to `conflicting` (base64 hashes, lowest first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consistency_proof: Vec<String>,
}

impl Evidence {
    /// A stable id: the same two checkpoints give the same file.
    pub fn id(&self) -> String {
        let mut bytes = Vec::new();
        for part in [self.kind.as_str(), &self.origin, &self.cosigned, &self.conflicting] {
            bytes.extend_from_slice(part.as_bytes());
            bytes.push(0);
        }
        format!("{}-{}", self.kind.as_str(), short_id(&bytes))
    }
}

/// A checkpoint note verified under the hub's key: its body and parsed
/// size and root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubCheckpoint {
    /// The signed text (the checkpoint body).
    pub body: String,
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash32,
    /// The hub's signature line.
    pub hub_signature: note::NoteSignature,
}

/// The first 16 hex digits of SHA-256 of `text`: names of evidence files
/// and of hubs' state files.
pub fn short_id(text: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(text)[..8])
}

/// Verifies `text` as a checkpoint note of `origin` signed by `hub_key`
/// (key name = origin); other signature lines are ignored.
pub fn verify_hub_note(text: &str, origin: &str, hub_key: &[u8; 32]) -> Result<HubCheckpoint, String> {
    let body = note::verify(text, origin, hub_key, |m, s| crate::ed25519_verifies(hub_key, m, s))
        .map_err(|e| format!("the hub's signature: {e}"))?;
    let cp = note::parse_checkpoint(body).map_err(|e| e.to_string())?;
    if cp.origin != origin {
        return Err(format!("the note names origin {:?}, not {origin:?}", cp.origin));
    }
    let want = note::key_hash(origin, hub_key);
    let (_, sigs) = note::parse(text).map_err(|e| e.to_string())?;
    let hub_signature = sigs
        .into_iter()
        .find(|s| s.name == origin && s.key_hash == want)
        .ok_or("no signature line by the hub's key")?;
    Ok(HubCheckpoint { body: body.to_owned(), size: cp.tree_size, root: cp.root_hash, hub_signature })
}

fn b64(h: &Hash32) -> String {
    mpp_core::base64::encode(h)
}

/// Checks an evidence file offline, under `hub_key` (the key the checker
/// trusts; the file's own `hub_key` when `None`). `Ok` says in words what
/// is proven; `Err` why the file proves nothing.
pub fn verify(e: &Evidence, hub_key: Option<&[u8; 32]>) -> Result<String, String> {
    if e.format != EVIDENCE_FORMAT {
        return Err(format!("not an evidence file of format {EVIDENCE_FORMAT}"));
    }
    let file_key: [u8; 32] = hex::decode(&e.hub_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("the file's hub_key is not 64 hex digits")?;
    let key = hub_key.unwrap_or(&file_key);
    let old =
        verify_hub_note(&e.cosigned, &e.origin, key).map_err(|w| format!("cosigned checkpoint: {w}"))?;
    let new = verify_hub_note(&e.conflicting, &e.origin, key)
        .map_err(|w| format!("conflicting checkpoint: {w}"))?;
    let witness = CosignerKey::parse_vkey(&e.witness).map_err(|w| format!("witness key: {w}"))?;
    let (_, sigs) = note::parse(&e.cosigned).map_err(|w| w.to_string())?;
    let cosig = witness
        .verify(&old.body, &sigs, |m, s| crate::ed25519_verifies(&witness.public_key, m, s))
        .ok_or("the cosigned checkpoint carries no valid cosignature by the witness")?;
    let both = format!(
        "the hub {} signed tree size {} with root {} (cosigned by {} at {}) and tree size {} with root {}",
        e.origin,
        old.size,
        b64(&old.root),
        witness.name,
        cosig.timestamp_s,
        new.size,
        b64(&new.root)
    );
    match e.kind {
        EvidenceKind::SplitView => {
            if old.size != new.size || old.root == new.root {
                return Err("the two checkpoints are not one size with two roots".to_owned());
            }
            Ok(format!("SPLIT VIEW PROVEN: {both}: an append-only log has one root per size"))
        }
        EvidenceKind::Rollback => {
            if new.size >= old.size {
                return Err("the later checkpoint is not smaller".to_owned());
            }
            Ok(format!(
                "ROLLBACK: {both}; the witness saw the smaller one served as the latest at {} (its word)",
                e.observed_at_s
            ))
        }
        EvidenceKind::Inconsistent => {
            if new.size <= old.size {
                return Err("the later checkpoint is not larger".to_owned());
            }
            let proof: Vec<Hash32> = e
                .consistency_proof
                .iter()
                .map(|h| mpp_core::base64::decode(h).and_then(|b| b.try_into().ok()))
                .collect::<Option<_>>()
                .ok_or("a proof hash is not 32 bytes of base64")?;
            match mpp_core::merkle::verify_consistency(old.size, new.size, &old.root, &new.root, &proof) {
                Ok(()) => Err("the consistency proof verifies: no misbehaviour".to_owned()),
                Err(why) => Ok(format!(
                    "INCONSISTENT: {both}, and the hub's consistency proof between them fails ({why}); \
                     an honest hub can always prove consistency: ask it"
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair as _};

    const ORIGIN: &str = "mpp-hub/test";

    fn hub() -> (Ed25519KeyPair, [u8; 32]) {
        let pair = Ed25519KeyPair::from_seed_unchecked(&[7; 32]).unwrap();
        let pk = pair.public_key().as_ref().try_into().unwrap();
        (pair, pk)
    }

    fn hub_note(pair: &Ed25519KeyPair, pk: &[u8; 32], size: u64, root: u8) -> String {
        let body = note::checkpoint_body(ORIGIN, size, &[root; 32]);
        let sig = note::NoteSignature {
            name: ORIGIN.into(),
            key_hash: note::key_hash(ORIGIN, pk),
            signature: pair.sign(body.as_bytes()).as_ref().to_vec(),
        };
        note::render(&body, &[sig])
    }

    fn evidence(kind: EvidenceKind, old: (u64, u8), new: (u64, u8)) -> Evidence {
        let (pair, pk) = hub();
        let witness = crate::key::WitnessKey::from_seed(&[9; 32], "witness.example/w1").unwrap();
        let old_note = hub_note(&pair, &pk, old.0, old.1);
        let v = verify_hub_note(&old_note, ORIGIN, &pk).unwrap();
        let cos = witness.cosign(&v.body, 1_700_000_000);
        Evidence {
            format: EVIDENCE_FORMAT.into(),
            kind,
            origin: ORIGIN.into(),
            hub_key: hex::encode(pk),
            witness: witness.public().to_vkey(),
            observed_at_s: 1_700_000_100,
            cosigned: note::render(&v.body, &[v.hub_signature, cos.to_note_signature()]),
            conflicting: hub_note(&pair, &pk, new.0, new.1),
            consistency_proof: Vec::new(),
        }
    }

    #[test]
    fn a_split_view_is_proven_offline_and_a_doctored_one_is_not() {
        let (_, pk) = hub();
        let e = evidence(EvidenceKind::SplitView, (10, 1), (10, 2));
        let said = verify(&e, Some(&pk)).unwrap();
        assert!(said.starts_with("SPLIT VIEW PROVEN"), "{said}");
        // The same root twice proves nothing.
        assert!(verify(&evidence(EvidenceKind::SplitView, (10, 1), (10, 1)), Some(&pk)).is_err());
        // Under another hub key, neither note verifies.
        assert!(verify(&e, Some(&[3; 32])).is_err());
        // A changed root in the conflicting note breaks its signature.
        let mut forged = e.clone();
        forged.conflicting = forged.conflicting.replacen(
            &mpp_core::base64::encode(&[2; 32]),
            &mpp_core::base64::encode(&[4; 32]),
            1,
        );
        assert!(verify(&forged, Some(&pk)).is_err());
    }

    #[test]
    fn rollbacks_and_inconsistencies_are_checked_for_what_they_claim() {
        let (_, pk) = hub();
        assert!(verify(&evidence(EvidenceKind::Rollback, (10, 1), (8, 1)), Some(&pk))
            .unwrap()
            .starts_with("ROLLBACK"));
        assert!(verify(&evidence(EvidenceKind::Rollback, (10, 1), (12, 1)), Some(&pk)).is_err());
        let said = verify(&evidence(EvidenceKind::Inconsistent, (10, 1), (12, 2)), Some(&pk)).unwrap();
        assert!(said.starts_with("INCONSISTENT"), "{said}");
    }
}
