//! A participant's event-signing key and the batch signing of envelopes
//! (the canonical encoding is `mpp_core::signature`'s; docs/AUDIT.md).
//!
//! # Key files
//!
//! ```text
//! <name>        the 32-byte Ed25519 private key seed as 64 lowercase hex
//!               digits and a newline; mode 0600 as written (refused if
//!               others may read, write or execute it; group access is
//!               allowed, as Kubernetes mounts secrets 0440 for the pod's
//!               group)
//! <name>.pub    the 32-byte public key as 64 lowercase hex digits and a
//!               newline; what the registrar registers
//! ```
//!
//! the same plain forms as the hub's checkpoint key, so any Ed25519
//! implementation can use them. `mpp-registrar keygen` writes a pair.
//!
//! # Batches
//!
//! [`EnvelopeSigner::sign_batch`] takes up to
//! [`SIGN_BATCH_ENVELOPES_MAX`] encoded envelopes (without signature), builds
//! the Merkle tree of their leaves, signs its root once and appends to each
//! envelope its signature field (key id, batch size, index, path,
//! signature). The outbox relay signs each publish batch this way.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use mpp_core::checkpoint::KeyId;
use mpp_core::ids::AgencyId;
use mpp_core::signature::{batch_message, batch_tree, envelope_leaf, SIGN_BATCH_ENVELOPES_MAX};
use mpp_proto::v1 as pb;
use ring::rand::SecureRandom as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _};

/// Largest key file read, in bytes (a key file is 65 bytes).
pub const SIGNING_KEY_FILE_BYTES_MAX: u64 = 1024;

/// Why a signing key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    /// The file cannot be read or written.
    #[error("signing key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a key, or is open to others.
    #[error("signing key file {path}: {what}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

/// One envelope to sign: where it goes and its encoded bytes (signed
/// envelopes get their signature field appended in place).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToSign {
    /// The NATS subject it is published on.
    pub subject: String,
    /// Its event id.
    pub event_id: String,
    /// The encoded `mpp.v1.Envelope` without a signature field.
    pub payload: Vec<u8>,
}

/// A participant's signing key.
pub struct EnvelopeSigner {
    participant: AgencyId,
    pair: Ed25519KeyPair,
    public_key: [u8; 32],
    key_id: KeyId,
}

impl std::fmt::Debug for EnvelopeSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvelopeSigner")
            .field("participant", &self.participant.as_str())
            .field("key_id", &self.key_id.to_string())
            .finish_non_exhaustive()
    }
}

impl EnvelopeSigner {
    /// The signer of `participant` with this private key seed.
    pub fn from_seed(participant: AgencyId, seed: &[u8; 32]) -> Self {
        // A 32-byte seed is always a valid Ed25519 private key.
        let pair = match Ed25519KeyPair::from_seed_unchecked(seed) {
            Ok(p) => p,
            Err(_) => unreachable!("ring refuses no 32-byte Ed25519 seed"),
        };
        let mut public_key = [0u8; 32];
        public_key.copy_from_slice(pair.public_key().as_ref());
        Self { participant, key_id: KeyId::of(&public_key), public_key, pair }
    }

    /// Loads the private key file of `participant` (see the module docs).
    pub fn load(participant: AgencyId, path: &Path) -> Result<Self, SigningKeyError> {
        Ok(Self::from_seed(participant, &read_seed(path)?))
    }

    /// The participant this key signs for.
    pub fn participant(&self) -> &AgencyId {
        &self.participant
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// The key's id (first 8 bytes of SHA-256 of the public key).
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Signs a batch of 1..=[`SIGN_BATCH_ENVELOPES_MAX`] envelopes with one
    /// signature, appending each envelope's signature field to its payload.
    /// An empty batch is left alone; a longer one is signed in chunks.
    pub fn sign_batch(&self, batch: &mut [ToSign]) {
        for chunk in batch.chunks_mut(SIGN_BATCH_ENVELOPES_MAX as usize) {
            self.sign_chunk(chunk);
        }
    }

    fn sign_chunk(&self, chunk: &mut [ToSign]) {
        let participant = self.participant.as_str();
        let leaves: Vec<_> =
            chunk.iter().map(|e| envelope_leaf(&e.event_id, participant, &e.subject, &e.payload)).collect();
        // `chunks_mut` never yields an empty or oversized chunk.
        let Ok(tree) = batch_tree(&leaves) else { return };
        let size = chunk.len() as u32;
        let signature = self.pair.sign(&batch_message(participant, &self.key_id, size, &tree.root));
        for (i, (e, path)) in chunk.iter_mut().zip(tree.paths).enumerate() {
            let field = pb::EnvelopeSignature {
                key_id: self.key_id.0.to_vec(),
                batch_size: size,
                leaf_index: i as u32,
                path: path.iter().map(|h| h.to_vec()).collect(),
                signature: signature.as_ref().to_vec(),
            };
            mpp_wire::append_signature(&mut e.payload, &field);
        }
    }
}

/// Reads a private key file (see the module docs): the 32-byte seed.
pub fn read_seed(path: &Path) -> Result<[u8; 32], SigningKeyError> {
    let io = |source| SigningKeyError::Io { path: path.to_owned(), source };
    let invalid = |what: &str| SigningKeyError::Invalid { path: path.to_owned(), what: what.to_owned() };
    let file = std::fs::File::open(path).map_err(io)?;
    let mode = file.metadata().map_err(io)?.permissions().mode();
    if mode & 0o007 != 0 {
        return Err(invalid("others have access to it; chmod 600 it"));
    }
    let mut text = String::new();
    file.take(SIGNING_KEY_FILE_BYTES_MAX).read_to_string(&mut text).map_err(io)?;
    let bytes = hex_decode(text.trim()).ok_or_else(|| invalid("is not 64 hex digits"))?;
    bytes.try_into().map_err(|_| invalid("is not a 32-byte Ed25519 seed"))
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Creates a new key: writes the seed to `path` (created exclusively, mode
/// 0600) and the public key to `path.pub`; returns the public key.
pub fn generate_key_file(path: &Path) -> Result<[u8; 32], SigningKeyError> {
    let io = |p: &Path| {
        let p = p.to_owned();
        move |source| SigningKeyError::Io { path: p, source }
    };
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut seed).map_err(|_| SigningKeyError::Invalid {
        path: path.to_owned(),
        what: "the system's random source failed".to_owned(),
    })?;
    let mut f =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io(path))?;
    f.write_all(format!("{}\n", hex_encode(&seed)).as_bytes()).map_err(io(path))?;
    f.sync_all().map_err(io(path))?;
    let public_key = public_key_of_seed(&seed);
    let pub_path = public_key_path(path);
    std::fs::write(&pub_path, format!("{}\n", hex_encode(&public_key))).map_err(io(&pub_path))?;
    Ok(public_key)
}

/// The public key file beside a private key file: `<path>.pub`.
pub fn public_key_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// The Ed25519 public key of a seed.
pub fn public_key_of_seed(seed: &[u8; 32]) -> [u8; 32] {
    let participant = AgencyId::parse("key").unwrap_or_else(|_| unreachable!("\"key\" is a valid slug"));
    EnvelopeSigner::from_seed(participant, seed).public_key()
}

/// Reads a public key file (64 hex digits).
pub fn read_public_key(path: &Path) -> Result<[u8; 32], SigningKeyError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| SigningKeyError::Io { path: path.to_owned(), source })?;
    hex_decode(text.trim()).and_then(|b| b.try_into().ok()).ok_or_else(|| SigningKeyError::Invalid {
        path: path.to_owned(),
        what: "is not a 32-byte public key in 64 hex digits".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use ring::signature::{UnparsedPublicKey, ED25519};

    use super::*;

    #[test]
    fn a_signed_batch_verifies_envelope_by_envelope() {
        let signer = EnvelopeSigner::from_seed(AgencyId::parse("dukcapil").unwrap(), &[5; 32]);
        let mut batch: Vec<ToSign> = (0..5)
            .map(|i| {
                let env = pb::Envelope {
                    event_id: format!("e{i}"),
                    agency_id: "dukcapil".into(),
                    ..Default::default()
                };
                ToSign {
                    subject: "mpp.events.dukcapil.kk".into(),
                    event_id: format!("e{i}"),
                    payload: env.encode_to_vec(),
                }
            })
            .collect();
        let unsigned: Vec<Vec<u8>> = batch.iter().map(|e| e.payload.clone()).collect();
        signer.sign_batch(&mut batch);
        for (e, before) in batch.iter().zip(&unsigned) {
            let n = mpp_wire::signed_part(&e.payload).unwrap().unwrap();
            assert_eq!(&e.payload[..n], before.as_slice());
            let decoded = pb::Envelope::decode(e.payload.as_slice()).unwrap();
            let sig = mpp_wire::signature_of(&decoded).unwrap();
            let leaf = envelope_leaf(&e.event_id, "dukcapil", &e.subject, before);
            let claim = mpp_core::signature::claim(&leaf, &sig).unwrap();
            let msg = batch_message("dukcapil", &claim.key_id, claim.batch_size, &claim.root);
            UnparsedPublicKey::new(&ED25519, signer.public_key()).verify(&msg, &claim.signature).unwrap();
        }
    }

    #[test]
    fn key_files_round_trip_and_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dukcapil.key");
        let pk = generate_key_file(&path).unwrap();
        assert_eq!(read_public_key(&public_key_path(&path)).unwrap(), pk);
        let signer = EnvelopeSigner::load(AgencyId::parse("dukcapil").unwrap(), &path).unwrap();
        assert_eq!(signer.public_key(), pk);
        assert!(generate_key_file(&path).is_err(), "never overwrites a key");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(EnvelopeSigner::load(AgencyId::parse("dukcapil").unwrap(), &path).is_err());
    }
}
