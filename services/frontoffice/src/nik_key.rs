//! The keyed hash of a citizen's NIK: HMAC-SHA-256 (RFC 2104) under the
//! front office's secret NIK key.
//!
//! A NIK has far fewer than 2^64 plausible values (region, birth date and a
//! 4-digit serial), so a plain hash of it could be reversed by trying them
//! all; the key is what makes the published `nik_keyed_hash` useless to
//! anyone reading the log. The same key gives the same hash for the same
//! citizen, so the hub can tell that two cases belong to one person without
//! ever holding the NIK (docs/DESIGN.md, invariant 7).
//!
//! The construction, the one definition every component must mirror:
//!
//! ```text
//! nik_keyed_hash = HMAC-SHA-256(key, the NIK's 16 ASCII digits)
//! ```
//!
//! HMAC is written out here over `sha2` (a dozen lines, checked against the
//! RFC 4231 test vectors) rather than adding a crate.

use mpp_agency_kit::files::read_at_most;
use std::fmt;
use std::path::{Path, PathBuf};

use mpp_core::ids::Nik;
use sha2::{Digest, Sha256};

/// Shortest accepted NIK key, in bytes (256 bits).
pub const NIK_KEY_BYTES_MIN: usize = 32;

/// Longest accepted NIK key, in bytes (and the most read from its file).
pub const NIK_KEY_BYTES_MAX: usize = 4096;

/// The key used with `--insecure-dev-keys` when no `--nik-key-file` is given.
/// Public on purpose: it protects nothing, and the service logs a warning.
pub const DEV_NIK_KEY: &[u8] = b"mpp-dev-nik-key-NOT-FOR-PRODUCTION-0000";

/// SHA-256's block size, in bytes.
const BLOCK_BYTES: usize = 64;

/// HMAC-SHA-256 of `message` under `key` (RFC 2104; a key longer than the
/// 64-byte block is hashed first).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; BLOCK_BYTES];
    if key.len() > BLOCK_BYTES {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

/// The secret key of NIK keyed hashes. Every front office and agency
/// service of a province that publishes `nik_keyed_hash` must use the same
/// key, and use it for nothing else. `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct NikKey(Vec<u8>);

impl fmt::Debug for NikKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NikKey(<redacted>)")
    }
}

/// Why a NIK key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum NikKeyError {
    /// Neither `--nik-key-file` nor `--insecure-dev-keys` was given.
    #[error(
        "no --nik-key-file (MPP_NIK_KEY_FILE) given: refusing to publish NIK hashes under a public key. \
         Give a key file of {NIK_KEY_BYTES_MIN}..={NIK_KEY_BYTES_MAX} random bytes (e.g. \
         `head -c 32 /dev/urandom | base64 > nik.key`), or --insecure-dev-keys for development"
    )]
    Missing,
    /// The file could not be read.
    #[error("cannot read NIK key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The key is shorter than [`NIK_KEY_BYTES_MIN`] or longer than
    /// [`NIK_KEY_BYTES_MAX`].
    #[error("NIK key must be {NIK_KEY_BYTES_MIN}..={NIK_KEY_BYTES_MAX} bytes after trimming, got {len}")]
    Length {
        /// Its length after trimming.
        len: usize,
    },
}

impl NikKey {
    /// A key from raw bytes: leading and trailing ASCII whitespace (e.g. the
    /// final newline of a file) is not part of it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, NikKeyError> {
        let trimmed = bytes.trim_ascii();
        if !(NIK_KEY_BYTES_MIN..=NIK_KEY_BYTES_MAX).contains(&trimmed.len()) {
            return Err(NikKeyError::Length { len: trimmed.len() });
        }
        Ok(Self(trimmed.to_vec()))
    }

    /// Reads a key file (at most [`NIK_KEY_BYTES_MAX`] + 1 bytes are read, so
    /// a wrong path to a huge file fails fast).
    pub fn from_file(path: &Path) -> Result<Self, NikKeyError> {
        let io = |source| NikKeyError::Io { path: path.to_owned(), source };
        Self::from_bytes(&read_at_most(path, NIK_KEY_BYTES_MAX as u64).map_err(io)?)
    }

    /// The development key [`DEV_NIK_KEY`], with a loud warning.
    pub fn dev_default() -> Self {
        tracing::warn!(
            "INSECURE DEVELOPMENT NIK KEY (--insecure-dev-keys, no --nik-key-file): the NIK hashes this \
             service publishes use a PUBLIC key, so every citizen's NIK can be recovered from the log by \
             trying all NIKs. Development only; never in production"
        );
        Self(DEV_NIK_KEY.to_vec())
    }

    /// The file's key if `path` is given; else the development key when
    /// `insecure_dev_keys`, else [`NikKeyError::Missing`].
    pub fn load(path: Option<&Path>, insecure_dev_keys: bool) -> Result<Self, NikKeyError> {
        match (path, insecure_dev_keys) {
            (Some(p), _) => Self::from_file(p),
            (None, true) => Ok(Self::dev_default()),
            (None, false) => Err(NikKeyError::Missing),
        }
    }
}

/// The keyed hash of `nik` published in `case_opened` (see the module docs).
pub fn nik_keyed_hash(key: &NikKey, nik: &Nik) -> [u8; 32] {
    hmac_sha256(&key.0, nik.expose_digits())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn rfc_4231_test_vectors() {
        // Test case 1.
        assert_eq!(
            hex(&hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        // Test case 2: a key shorter than the block.
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        assert_eq!(
            hex(&hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        // A key of exactly one block is used as is.
        assert_ne!(hmac_sha256(&[1; 64], b"x"), hmac_sha256(&Sha256::digest([1u8; 64]), b"x"));
    }

    #[test]
    fn nik_hash_is_the_hmac_of_the_digits_and_depends_on_the_key() {
        let key = NikKey::from_bytes(&[7u8; 32]).unwrap();
        let other = NikKey::from_bytes(&[8u8; 32]).unwrap();
        let nik = Nik::parse("1771014501900001").unwrap();
        let h = nik_keyed_hash(&key, &nik);
        assert_eq!(h, hmac_sha256(&[7u8; 32], b"1771014501900001"));
        assert_ne!(h, nik_keyed_hash(&other, &nik));
        assert_ne!(h, nik_keyed_hash(&key, &Nik::parse("1771014501900002").unwrap()));
        let plain: [u8; 32] = Sha256::digest(b"1771014501900001").into();
        assert_ne!(h, plain, "keyed, not a plain hash");
    }

    #[test]
    fn key_bounds_loading_and_redaction() {
        assert!(matches!(NikKey::from_bytes(&[b'k'; 31]), Err(NikKeyError::Length { len: 31 })));
        assert!(NikKey::from_bytes(&[b'k'; NIK_KEY_BYTES_MIN]).is_ok());
        assert!(NikKey::from_bytes(&[b'k'; NIK_KEY_BYTES_MAX]).is_ok());
        assert!(NikKey::from_bytes(&[b'k'; NIK_KEY_BYTES_MAX + 1]).is_err());
        // Surrounding whitespace is not part of the key.
        let padded = [b"\n ".as_slice(), &[b'k'; 32], b"\n"].concat();
        assert_eq!(NikKey::from_bytes(&padded).unwrap(), NikKey::from_bytes(&[b'k'; 32]).unwrap());
        assert_eq!(format!("{:?}", NikKey::from_bytes(&[b's'; 32]).unwrap()), "NikKey(<redacted>)");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nik.key");
        std::fs::write(&file, [b'z'; 40]).unwrap();
        assert_eq!(NikKey::load(Some(&file), false).unwrap(), NikKey::from_bytes(&[b'z'; 40]).unwrap());
        std::fs::write(&file, vec![b'z'; 10_000]).unwrap();
        assert!(matches!(NikKey::load(Some(&file), true), Err(NikKeyError::Length { len: 4097 })));
        assert!(matches!(NikKey::load(Some(&dir.path().join("missing")), true), Err(NikKeyError::Io { .. })));
        assert!(matches!(NikKey::load(None, false), Err(NikKeyError::Missing)));
        assert_eq!(NikKey::load(None, true).unwrap(), NikKey(DEV_NIK_KEY.to_vec()));
        assert!(DEV_NIK_KEY.len() >= NIK_KEY_BYTES_MIN);
    }
}
