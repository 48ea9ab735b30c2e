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
//! cache holds the SHA-256 of (public key, signature, message) of every
//! signature that verified, in two generations of up to
//! [`VERIFIED_SIGNATURES_MAX`]` / 2` (the older one dropped whole when the
//! younger fills). Only successes are cached, and a hit means exactly the
//! same bytes verified before, so the cache never changes a verdict: a
//! replay with an empty cache judges the same.
//!
//! # Key file
//!
//! The registrar key file holds one or more Ed25519 public keys, one per
//! line as 64 lowercase or uppercase hex digits (the format of
//! `keys/checkpoint.pub`); blank lines and lines starting with `#` are
//! ignored. Every key listed is trusted: keep a retired registrar key in the
//! file while its statements must still replay.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;

use mpp_core::signature::SignatureVerifier;
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
}

#[derive(Debug, Default)]
struct Generations {
    young: HashSet<[u8; 32]>,
    old: HashSet<[u8; 32]>,
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
        Trust { registrar_keys, verified: Mutex::default() }
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

    fn remember(&self, digest: [u8; 32]) {
        let mut g = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if g.young.len() >= VERIFIED_SIGNATURES_MAX / 2 {
            g.old = std::mem::take(&mut g.young);
        }
        g.young.insert(digest);
    }

    fn seen(&self, digest: &[u8; 32]) -> bool {
        let g = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        g.young.contains(digest) || g.old.contains(digest)
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

fn digest(public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> [u8; 32] {
    use sha2::{Digest as _, Sha256};
    Sha256::new().chain_update(public_key).chain_update(signature).chain_update(message).finalize().into()
}

impl SignatureVerifier for Trust {
    fn verify_ed25519(&self, public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
        let d = digest(public_key, message, signature);
        if self.seen(&d) {
            return true;
        }
        let ok = UnparsedPublicKey::new(&ED25519, public_key).verify(message, signature).is_ok();
        if ok {
            self.remember(d);
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
        assert!(t.seen(&digest(&pk, b"m", &sig)));
        assert!(!t.verify_ed25519(&pk, b"n", &sig));
        assert!(!t.seen(&digest(&pk, b"n", &sig)));
        assert!(t.verify_ed25519(&pk, b"m", &sig));
    }

    #[test]
    fn the_cache_is_bounded() {
        let t = Trust::default();
        for i in 0..(VERIFIED_SIGNATURES_MAX * 2) as u64 {
            let mut d = [0u8; 32];
            d[..8].copy_from_slice(&i.to_be_bytes());
            t.remember(d);
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
