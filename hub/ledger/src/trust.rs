//! What the ledger trusts when it judges signatures: the registrar's public
//! keys (the hub's configuration, `--registrar-key-file`) and Ed25519
//! verification with a bounded cache of verified batch signatures.
//!
//! # The cache
//!
//! A participant signs a publish batch once (up to
//! `mpp_core::signature::SIGN_BATCH_ENVELOPES_MAX` envelopes) and every
//! envelope of the batch carries the same signature over the same root, so
//! the ledger verifies each batch signature once and remembers it: the
//! cache holds, by signature, the public key and message of every signature
//! that verified, in two generations of up to [`VERIFIED_SIGNATURES_MAX`]`
//! / 2` (the older one dropped whole when the younger fills). Only
//! successes are cached, and a hit means exactly the same public key,
//! message and signature verified before, so the cache never changes a
//! verdict: a replay with an empty cache judges the same.
//!
//! The ingest task fills the cache ahead of the writer
//! ([`Trust::preverify`]): while the writer commits one batch, the next
//! batch's distinct signatures are verified under the keys the registry
//! held at the last commit ([`Trust::learn_keys`]), so the writer mostly
//! finds them verified. A key the snapshot lacks (added in the same batch)
//! is simply verified by the writer.
//!
//! # Key file
//!
//! The registrar key file holds one or more Ed25519 public keys, one per
//! line as 64 lowercase or uppercase hex digits (the format of
//! `keys/checkpoint.pub`); blank lines and lines starting with `#` are
//! ignored. Every key listed is trusted: keep a retired registrar key in the
//! file while its statements must still replay.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, RwLock};

use mpp_core::checkpoint::KeyId;
use mpp_core::registry::Registry;
use mpp_core::signature::{BatchClaim, SignatureVerifier};
use ring::signature::{UnparsedPublicKey, ED25519};

/// Most verified signatures remembered (two generations of half each);
/// 32 bytes each, so about 128 KiB.
pub const VERIFIED_SIGNATURES_MAX: usize = 4096;

/// Most keys in a registrar key file.
pub const REGISTRAR_KEYS_MAX: usize = 16;

/// Largest registrar key file read, in bytes.
pub const REGISTRAR_KEY_FILE_BYTES_MAX: u64 = 4096;

/// The registrar keys and the verifier.
#[derive(Debug, Default)]
pub struct Trust {
    registrar_keys: Vec<[u8; 32]>,
    verified: Mutex<Generations>,
    /// Every key the registry held at the last commit: key id → (participant, public key).
    known_keys: RwLock<HashMap<KeyId, (String, [u8; 32])>>,
}

/// A verified signature: the public key and the message it was checked against.
type Verified = ([u8; 32], Box<[u8]>);

#[derive(Debug, Default)]
struct Generations {
    young: HashMap<[u8; 64], Verified>,
    old: HashMap<[u8; 64], Verified>,
}

/// Why a registrar key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RegistrarKeyError {
    /// The file cannot be read.
    #[error("cannot read registrar key file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds something else than public keys.
    #[error("registrar key file {path}: {what}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        what: String,
    },
}

impl Trust {
    /// Trusts these registrar keys (none: registry statements are refused
    /// with `REGISTRAR_NOT_CONFIGURED`).
    pub fn new(registrar_keys: Vec<[u8; 32]>) -> Self {
        Trust { registrar_keys, verified: Mutex::default(), known_keys: RwLock::default() }
    }

    /// Reads a registrar key file (see the module docs).
    pub fn from_key_file(path: &Path) -> Result<Self, RegistrarKeyError> {
        let shown = path.display().to_string();
        let invalid = |what: String| RegistrarKeyError::Invalid { path: shown.clone(), what };
        let meta = std::fs::metadata(path)
            .map_err(|source| RegistrarKeyError::Read { path: shown.clone(), source })?;
        if meta.len() > REGISTRAR_KEY_FILE_BYTES_MAX {
            return Err(invalid(format!("larger than {REGISTRAR_KEY_FILE_BYTES_MAX} bytes")));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|source| RegistrarKeyError::Read { path: shown.clone(), source })?;
        let keys = parse_registrar_keys(&text).map_err(invalid)?;
        Ok(Trust::new(keys))
    }

    /// The trusted registrar keys.
    pub fn registrar_keys(&self) -> &[[u8; 32]] {
        &self.registrar_keys
    }

    fn remember(&self, public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) {
        let mut g = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if g.young.len() >= VERIFIED_SIGNATURES_MAX / 2 {
            g.old = std::mem::take(&mut g.young);
        }
        g.young.insert(*signature, (*public_key, message.into()));
    }

    fn seen(&self, public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
        let g = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        let same = |v: &Verified| v.0 == *public_key && *v.1 == *message;
        g.young.get(signature).is_some_and(same) || g.old.get(signature).is_some_and(same)
    }

    /// Records the keys of `registry` for [`Trust::preverify`] (the ledger
    /// calls it when it opens and after each commit that changed the registry).
    pub fn learn_keys(&self, registry: &Registry) {
        let keys = registry
            .participants
            .iter()
            .flat_map(|(id, p)| {
                p.keys.iter().map(move |(k, key)| (*k, (id.as_str().to_owned(), key.public_key)))
            })
            .collect();
        *self.known_keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
    }

    /// Verifies the distinct batch signatures among `claims` (participant,
    /// claim) under the keys last learnt, filling the cache; claims of
    /// unknown keys are left for the writer. Never decides anything.
    pub fn preverify<'a>(&self, claims: impl Iterator<Item = (&'a str, &'a BatchClaim)>) {
        let mut last: Option<[u8; 64]> = None;
        for (participant, claim) in claims {
            // A batch's envelopes arrive together: skip repeats cheaply.
            if last == Some(claim.signature) {
                continue;
            }
            last = Some(claim.signature);
            let key = self.known_keys.read().unwrap_or_else(|e| e.into_inner()).get(&claim.key_id).cloned();
            if let Some((owner, public_key)) = key.filter(|(owner, _)| owner == participant) {
                claim.verify(&owner, &public_key, self);
            }
        }
    }
}

/// Parses the text of a registrar key file.
pub fn parse_registrar_keys(text: &str) -> Result<Vec<[u8; 32]>, String> {
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bytes = hex::decode(line).map_err(|_| format!("line {} is not hex", n + 1))?;
        let key: [u8; 32] =
            bytes.try_into().map_err(|_| format!("line {} is not a 32-byte public key", n + 1))?;
        if keys.len() >= REGISTRAR_KEYS_MAX {
            return Err(format!("more than {REGISTRAR_KEYS_MAX} keys"));
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Err("holds no key".to_owned());
    }
    Ok(keys)
}

impl SignatureVerifier for Trust {
    fn verify_ed25519(&self, public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
        if self.seen(public_key, message, signature) {
            return true;
        }
        let ok = UnparsedPublicKey::new(&ED25519, public_key).verify(message, signature).is_ok();
        if ok {
            self.remember(public_key, message, signature);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use ring::signature::{Ed25519KeyPair, KeyPair as _};

    use super::*;

    #[test]
    fn verifies_once_and_remembers_only_successes() {
        let pair = Ed25519KeyPair::from_seed_unchecked(&[9; 32]).unwrap();
        let pk: [u8; 32] = pair.public_key().as_ref().try_into().unwrap();
        let sig: [u8; 64] = pair.sign(b"m").as_ref().try_into().unwrap();
        let t = Trust::default();
        assert!(t.verify_ed25519(&pk, b"m", &sig));
        assert!(t.seen(&pk, b"m", &sig));
        // The same signature presented for another message, or under
        // another key, is no hit and does not verify.
        assert!(!t.verify_ed25519(&pk, b"n", &sig));
        assert!(!t.seen(&pk, b"n", &sig));
        assert!(!t.seen(&[0; 32], b"m", &sig));
        assert!(t.verify_ed25519(&pk, b"m", &sig));
    }

    #[test]
    fn the_cache_is_bounded() {
        let t = Trust::default();
        for i in 0..(VERIFIED_SIGNATURES_MAX * 2) as u64 {
            let mut s = [0u8; 64];
            s[..8].copy_from_slice(&i.to_be_bytes());
            t.remember(&[0; 32], b"m", &s);
        }
        let g = t.verified.lock().unwrap();
        assert!(g.young.len() + g.old.len() <= VERIFIED_SIGNATURES_MAX);
    }

    #[test]
    fn key_files_hold_hex_keys() {
        let k = hex::encode([7u8; 32]);
        assert_eq!(parse_registrar_keys(&format!("# registrar\n{k}\n\n")).unwrap(), vec![[7u8; 32]]);
        assert!(parse_registrar_keys("").is_err());
        assert!(parse_registrar_keys("abcd").is_err());
        assert!(parse_registrar_keys("zz").is_err());
    }
}
