//! Envelope signatures: the canonical encoding a participant signs, and the
//! batch construction that lets one Ed25519 signature cover many envelopes.
//!
//! # What is signed
//!
//! Each envelope is one leaf. Its leaf data is
//!
//! ```text
//! "mpp-envelope/v1" 0x00
//! u32be len | event_id    (the envelope's event_id, UTF-8)
//! u32be len | participant (the envelope's agency_id, UTF-8)
//! u32be len | subject     (the NATS subject it is published on, UTF-8)
//! u32be len | payload     (the encoded mpp.v1.Envelope WITHOUT its signature field)
//! ```
//!
//! and its leaf hash is RFC 9162's, `SHA-256(0x00 || leaf data)`
//! ([`crate::merkle::leaf_hash`]). A publish batch of `n` envelopes
//! (`1 <= n <= SIGN_BATCH_ENVELOPES_MAX`) is the RFC 9162 Merkle tree over
//! their leaf hashes in publish order; the participant signs, with Ed25519,
//! the batch message
//!
//! ```text
//! "mpp-envelope-batch/v1" 0x00
//! u32be len | participant
//! key_id [8]
//! u32be batch_size
//! root [32]
//! ```
//!
//! and each envelope carries, in its `signature` field (field 60, the last
//! field of the payload), the key id, the batch size, its index, its
//! inclusion path and the signature. A verifier recomputes the leaf from
//! what it holds, walks the path to the root
//! ([`crate::merkle::root_from_inclusion`]), rebuilds the batch message and
//! checks the signature. Binding the participant and the key id into the
//! signed message means a signature can never be presented as another
//! participant's, or under another of its keys.
//!
//! Ed25519 itself is not computed here (the core holds no cryptographic
//! library): callers pass a [`SignatureVerifier`].

use crate::checkpoint::KeyId;
use crate::log::Hash32;
use crate::merkle::{self, ProofError};
use crate::reason::{ReasonCode, Rejection};

/// Domain prefix of an envelope's leaf data.
pub const ENVELOPE_LEAF_DOMAIN: &[u8] = b"mpp-envelope/v1\0";

/// Domain prefix of the signed batch message.
pub const BATCH_MESSAGE_DOMAIN: &[u8] = b"mpp-envelope-batch/v1\0";

/// Most envelopes one batch signature may cover. Bounds the path an
/// envelope carries (at most 8 hashes, 256 bytes) and the work a forged
/// proof can cause.
pub const SIGN_BATCH_ENVELOPES_MAX: u32 = 256;

/// Longest inclusion path of a batch of [`SIGN_BATCH_ENVELOPES_MAX`].
pub const SIGN_BATCH_PATH_HASHES_MAX: usize = 8;

/// Bytes of an Ed25519 signature.
pub const ED25519_SIGNATURE_BYTES: usize = 64;

/// Bytes of an Ed25519 public key.
pub const ED25519_PUBLIC_KEY_BYTES: usize = 32;

/// Ed25519 verification, supplied by the caller (the hub uses `ring`, with
/// a cache of verified batch roots).
pub trait SignatureVerifier {
    /// Whether `signature` is a valid Ed25519 signature of `message` under
    /// `public_key` (RFC 8032, strict).
    fn verify_ed25519(&self, public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool;
}

fn put_field(out: &mut Vec<u8>, field: &[u8]) {
    // Every field is bounded far below 4 GiB (a payload by
    // limits::MESSAGE_BYTES_MAX); saturate rather than wrap regardless.
    let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(field);
}

/// The leaf data of an envelope (see the module docs).
pub fn envelope_leaf_data(
    event_id: &str,
    participant: &str,
    subject: &str,
    signed_payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        ENVELOPE_LEAF_DOMAIN.len()
            + 16
            + event_id.len()
            + participant.len()
            + subject.len()
            + signed_payload.len(),
    );
    out.extend_from_slice(ENVELOPE_LEAF_DOMAIN);
    put_field(&mut out, event_id.as_bytes());
    put_field(&mut out, participant.as_bytes());
    put_field(&mut out, subject.as_bytes());
    put_field(&mut out, signed_payload);
    out
}

/// The leaf hash of an envelope: `SHA-256(0x00 || leaf data)`.
pub fn envelope_leaf(event_id: &str, participant: &str, subject: &str, signed_payload: &[u8]) -> Hash32 {
    merkle::leaf_hash(&envelope_leaf_data(event_id, participant, subject, signed_payload))
}

/// The message a participant signs for a batch (see the module docs).
pub fn batch_message(participant: &str, key_id: &KeyId, batch_size: u32, root: &Hash32) -> Vec<u8> {
    let mut out = Vec::with_capacity(BATCH_MESSAGE_DOMAIN.len() + 4 + participant.len() + 8 + 4 + 32);
    out.extend_from_slice(BATCH_MESSAGE_DOMAIN);
    put_field(&mut out, participant.as_bytes());
    out.extend_from_slice(&key_id.0);
    out.extend_from_slice(&batch_size.to_be_bytes());
    out.extend_from_slice(root);
    out
}

/// A batch's root and each leaf's inclusion path, for the signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchTree {
    /// The Merkle root over the leaves.
    pub root: Hash32,
    /// The path of each leaf, in leaf order.
    pub paths: Vec<Vec<Hash32>>,
}

/// Why a batch cannot be signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a signed batch holds 1..={SIGN_BATCH_ENVELOPES_MAX} envelopes, not {0}")]
pub struct BatchSizeError(pub usize);

/// The tree of a batch of leaf hashes (1..=[`SIGN_BATCH_ENVELOPES_MAX`]).
pub fn batch_tree(leaves: &[Hash32]) -> Result<BatchTree, BatchSizeError> {
    let n = leaves.len();
    if n == 0 || n > SIGN_BATCH_ENVELOPES_MAX as usize {
        return Err(BatchSizeError(n));
    }
    let size = n as u64;
    let paths = (0..size)
        .map(|i| match merkle::inclusion_proof(leaves, i, size) {
            Ok(p) => p,
            // The index is below the size and a slice always answers.
            Err(_) => unreachable!("inclusion proof of leaf {i} in a tree of {size}"),
        })
        .collect();
    Ok(BatchTree { root: merkle::root_of(leaves), paths })
}

/// An envelope's signature field as decoded, nothing checked yet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UncheckedSignature {
    /// See `mpp.v1.EnvelopeSignature`.
    pub key_id: Vec<u8>,
    /// See `mpp.v1.EnvelopeSignature`.
    pub batch_size: u32,
    /// See `mpp.v1.EnvelopeSignature`.
    pub leaf_index: u32,
    /// See `mpp.v1.EnvelopeSignature`.
    pub path: Vec<Vec<u8>>,
    /// See `mpp.v1.EnvelopeSignature`.
    pub signature: Vec<u8>,
}

/// What an envelope's signature claims once its path is walked: "the
/// holder of key `key_id` signed the batch of `batch_size` with this root".
/// Checking the claim needs the registry (the key) and Ed25519.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchClaim {
    /// The signing key's id.
    pub key_id: KeyId,
    /// Envelopes in the batch.
    pub batch_size: u32,
    /// The root the envelope's path leads to.
    pub root: Hash32,
    /// The Ed25519 signature over the batch message.
    pub signature: [u8; ED25519_SIGNATURE_BYTES],
}

impl BatchClaim {
    /// Whether the claim's signature verifies under `public_key` for
    /// `participant`.
    pub fn verify(&self, participant: &str, public_key: &[u8; 32], verifier: &dyn SignatureVerifier) -> bool {
        let message = batch_message(participant, &self.key_id, self.batch_size, &self.root);
        verifier.verify_ed25519(public_key, &message, &self.signature)
    }
}

/// Walks an envelope's path from its leaf: the claim it makes, or
/// `MALFORMED_SIGNATURE` when the fields have the wrong shape.
pub fn claim(leaf: &Hash32, sig: &UncheckedSignature) -> Result<BatchClaim, Rejection> {
    let bad = |what: String| Rejection::new(ReasonCode::MalformedSignature, what);
    let key_id: [u8; 8] = sig
        .key_id
        .as_slice()
        .try_into()
        .map_err(|_| bad(format!("key_id is {} bytes, not 8", sig.key_id.len())))?;
    let signature: [u8; ED25519_SIGNATURE_BYTES] = sig.signature.as_slice().try_into().map_err(|_| {
        bad(format!("signature is {} bytes, not {ED25519_SIGNATURE_BYTES}", sig.signature.len()))
    })?;
    if sig.batch_size == 0 || sig.batch_size > SIGN_BATCH_ENVELOPES_MAX {
        return Err(bad(format!("batch_size {} is not 1..={SIGN_BATCH_ENVELOPES_MAX}", sig.batch_size)));
    }
    if sig.path.len() > SIGN_BATCH_PATH_HASHES_MAX {
        return Err(bad(format!(
            "the path holds {} hashes, more than {SIGN_BATCH_PATH_HASHES_MAX}",
            sig.path.len()
        )));
    }
    let mut path = Vec::with_capacity(sig.path.len());
    for h in &sig.path {
        let h: Hash32 = h.as_slice().try_into().map_err(|_| bad("a path hash is not 32 bytes".to_owned()))?;
        path.push(h);
    }
    let root = merkle::root_from_inclusion(leaf, u64::from(sig.leaf_index), u64::from(sig.batch_size), &path)
        .map_err(|e| match e {
            ProofError::IndexOutOfRange { .. } => {
                bad(format!("leaf_index {} is not below batch_size {}", sig.leaf_index, sig.batch_size))
            }
            _ => bad(format!("the path's length does not fit leaf {} of {}", sig.leaf_index, sig.batch_size)),
        })?;
    Ok(BatchClaim { key_id: KeyId(key_id), batch_size: sig.batch_size, root, signature })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_of_a_batch_leads_to_its_root() {
        for n in 1..=40usize {
            let leaves: Vec<Hash32> = (0..n).map(|i| envelope_leaf(&i.to_string(), "p", "s", b"x")).collect();
            let tree = batch_tree(&leaves).unwrap();
            for (i, path) in tree.paths.iter().enumerate() {
                assert!(path.len() <= SIGN_BATCH_PATH_HASHES_MAX);
                let sig = UncheckedSignature {
                    key_id: vec![1; 8],
                    batch_size: n as u32,
                    leaf_index: i as u32,
                    path: path.iter().map(|h| h.to_vec()).collect(),
                    signature: vec![2; 64],
                };
                assert_eq!(claim(&leaves[i], &sig).unwrap().root, tree.root, "leaf {i} of {n}");
                // Another leaf at the same place leads elsewhere.
                let other = envelope_leaf("other", "p", "s", b"x");
                assert_ne!(claim(&other, &sig).unwrap().root, tree.root);
            }
        }
    }

    #[test]
    fn the_largest_batch_fits_the_path_bound() {
        let leaves = vec![[7u8; 32]; SIGN_BATCH_ENVELOPES_MAX as usize];
        let tree = batch_tree(&leaves).unwrap();
        assert!(tree.paths.iter().all(|p| p.len() == SIGN_BATCH_PATH_HASHES_MAX));
        assert_eq!(batch_tree(&[]), Err(BatchSizeError(0)));
        assert!(batch_tree(&vec![[0u8; 32]; 257]).is_err());
    }

    #[test]
    fn malformed_fields_are_named() {
        let leaf = [0u8; 32];
        let ok = UncheckedSignature {
            key_id: vec![1; 8],
            batch_size: 1,
            leaf_index: 0,
            path: vec![],
            signature: vec![2; 64],
        };
        assert!(claim(&leaf, &ok).is_ok());
        let cases = [
            UncheckedSignature { key_id: vec![1; 7], ..ok.clone() },
            UncheckedSignature { signature: vec![2; 63], ..ok.clone() },
            UncheckedSignature { batch_size: 0, ..ok.clone() },
            UncheckedSignature { batch_size: 257, ..ok.clone() },
            UncheckedSignature { leaf_index: 1, ..ok.clone() },
            UncheckedSignature { path: vec![vec![0; 32]], ..ok.clone() },
            UncheckedSignature { batch_size: 2, path: vec![vec![0; 31]], ..ok.clone() },
            UncheckedSignature { batch_size: 2, path: vec![vec![0; 32]; 9], ..ok.clone() },
        ];
        for c in cases {
            assert_eq!(claim(&leaf, &c).unwrap_err().code, ReasonCode::MalformedSignature, "{c:?}");
        }
    }

    #[test]
    fn the_encoding_separates_fields() {
        // Moving a byte from one field to the next changes the leaf.
        assert_ne!(envelope_leaf("ab", "c", "s", b""), envelope_leaf("a", "bc", "s", b""));
        assert_ne!(
            batch_message("p", &KeyId([0; 8]), 1, &[0; 32]),
            batch_message("p", &KeyId([0; 8]), 2, &[0; 32])
        );
    }
}
