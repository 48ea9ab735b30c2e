//! The receipt's proof: what a citizen's browser needs to check, with
//! nothing but the published keys, that the entry which opened their case
//! is in the hub's log, and that witnesses vouch for that log
//! (`GET /lacak/{tn}/bukti`, checked by `templates/periksa.js` or offline
//! by `docs/verify_receipt.py`; docs/AUDIT.md, "Checking a receipt").
//!
//! A proof (`mpp-hub-receipt/v1`, JSON) holds the entry's canonical bytes
//! (its hash is recomputed from them, and its sequence read from them), its
//! RFC 9162 inclusion proof, and the hub's cosigned checkpoint note of the
//! tree the proof is for: the newest tree size covering the entry whose
//! cosignatures the hub holds, else the latest signed checkpoint if it
//! covers the entry. Nothing in it is believed by the checker: the hub's
//! signature and the witnesses' cosignatures are checked under keys the
//! checker gets elsewhere.
//!
//! Cost: one case read, one entry read and one inclusion proof
//! (at most 64 hashes, [`mpp_core::merkle`]); the answer is the entry (at
//! most [`mpp_core::limits`]' message size plus its fields), the path and
//! one note (at most [`mpp_core::note::NOTE_BYTES_MAX`]).

use mpp_core::checkpoint::SignedCheckpoint;
use mpp_core::merkle::{entry_leaf_hash, inclusion_proof, root_from_inclusion};
use mpp_store::{SledStore, Store, StoreError};
use serde::Serialize;

use crate::cosigned::Transparency;

/// The proof's `format`.
pub const RECEIPT_FORMAT: &str = "mpp-hub-receipt/v1";

/// A receipt's proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceiptProof {
    /// [`RECEIPT_FORMAT`].
    pub format: &'static str,
    /// The case.
    pub tracking_number: String,
    /// The entry's log sequence.
    pub seq: u64,
    /// The entry's canonical bytes (what its hash covers after the domain
    /// tag), standard base64.
    pub canonical_b64: String,
    /// `seq - 1`.
    pub leaf_index: u64,
    /// Size of the tree the proof is for (the checkpoint's).
    pub tree_size: u64,
    /// The RFC 9162 inclusion proof, lowest sibling first, hex.
    pub inclusion_proof: Vec<String>,
    /// The hub's C2SP checkpoint note of `tree_size`, with the witnesses'
    /// cosignature lines it holds.
    pub checkpoint: String,
}

/// Why there is no proof.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    /// No signed checkpoint covers the entry yet (it is newer than the
    /// latest one), or the hub signed it before notes were.
    #[error("no signed checkpoint covers entry {0} yet")]
    NotYetSigned(u64),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The store contradicts itself (a defect or a damaged store).
    #[error("{0}")]
    Inconsistent(String),
}

/// The proof of entry `seq` (of case `tracking_number`).
pub fn receipt_proof(
    store: &SledStore,
    transparency: &Transparency,
    tracking_number: &str,
    seq: u64,
) -> Result<ReceiptProof, ReceiptError> {
    if seq == 0 {
        return Err(ReceiptError::Inconsistent("a case opened at sequence 0".into()));
    }
    let Some(cp) = covering_checkpoint(store, transparency, seq)? else {
        return Err(ReceiptError::NotYetSigned(seq));
    };
    let Some(note) = transparency.note_of(&cp) else { return Err(ReceiptError::NotYetSigned(seq)) };
    let tree_size = cp.checkpoint.tree_size;
    let entry = store.entry(seq)?.ok_or_else(|| ReceiptError::Inconsistent(format!("no entry {seq}")))?;
    let proof = inclusion_proof(store, seq - 1, tree_size).map_err(|e| match e {
        mpp_core::merkle::ProveError::Source(s) => ReceiptError::Store(s),
        other => ReceiptError::Inconsistent(other.to_string()),
    })?;
    // Checked before it leaves: a proof that does not lead to the signed
    // root is a damaged store, not something to hand a citizen.
    let root = root_from_inclusion(&entry_leaf_hash(&entry.hash), seq - 1, tree_size, &proof)
        .map_err(|e| ReceiptError::Inconsistent(e.to_string()))?;
    if root != cp.checkpoint.root_hash {
        return Err(ReceiptError::Inconsistent(format!(
            "the inclusion proof of entry {seq} does not lead to the root signed at size {tree_size}"
        )));
    }
    let mut canonical = Vec::new();
    entry.write_canonical(&mut canonical);
    Ok(ReceiptProof {
        format: RECEIPT_FORMAT,
        tracking_number: tracking_number.to_owned(),
        seq,
        canonical_b64: mpp_core::base64::encode(&canonical),
        leaf_index: seq - 1,
        tree_size,
        inclusion_proof: proof.iter().map(hex::encode).collect(),
        checkpoint: note,
    })
}

/// The newest cosigned checkpoint covering `seq`, else the latest signed
/// one if it covers it.
fn covering_checkpoint(
    store: &SledStore,
    transparency: &Transparency,
    seq: u64,
) -> Result<Option<SignedCheckpoint>, StoreError> {
    if let Some(size) = transparency.cosignatures.as_ref().and_then(|c| c.newest_at_least(seq)) {
        if let Some(cp) = store.checkpoint(size)? {
            return Ok(Some(cp));
        }
    }
    Ok(store.latest_checkpoint()?.filter(|cp| cp.checkpoint.tree_size >= seq))
}
