//! The vault's encryption at rest: the key-encryption key from a secret
//! file (`--vault-key-file`), the rotating wrapping keys it wraps, the
//! wrapping of citizens' data keys, and the vault's directory (where a
//! rotation writes a new file and shreds the old one).
//!
//! ```text
//! KEK (secret file, never stored)  ──wraps──▶  wrapping key W_epoch (one per vault file)
//! W_epoch                           ──wraps──▶  each citizen's data key
//! data key                          ──seals──▶  the citizen's personal data
//! ```
//!
//! Every wrapping is AES-256-GCM under a fresh random nonce, with a domain
//! tag and what the wrapped key belongs to in the additional authenticated
//! data, so a wrapped key moved to another record does not unwrap.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use mpp_agency_kit::durable::{self, Storage};
use mpp_core::limits::KEY_ID_BYTES;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use crate::serial_key::{read_hex_file, HexFile};

/// Length of the key-encryption key and of a wrapping key, in bytes
/// (AES-256).
pub const VAULT_KEY_BYTES: usize = 32;

/// The most bytes read from a vault key file: 64 hex digits and some
/// whitespace.
pub const VAULT_KEY_FILE_BYTES_MAX: usize = 2 * VAULT_KEY_BYTES + 64;

/// How often the wrapping key is replaced, in seconds (daily). An erased
/// citizen's key is unrecoverable from the vault's files after the next
/// rotation: at most this long (plus [`VAULT_ROTATION_CHECK_MS`]) after the
/// erasure.
pub const VAULT_KEY_ROTATION_S: u64 = 86_400;

/// How often the front office checks whether a rotation is due, in
/// milliseconds.
pub const VAULT_ROTATION_CHECK_MS: u64 = 60_000;

/// The key-encryption key used with `--insecure-dev-keys` when no
/// `--vault-key-file` is given. Public on purpose: it protects nothing, and
/// the service logs a warning.
pub const DEV_VAULT_KEY: [u8; VAULT_KEY_BYTES] = *b"mpp-dev-vault-key-NOT-FOR-PROD!!";

/// Domain tag of a wrapping key's additional authenticated data.
const WRAPPING_KEY_DOMAIN: &[u8] = b"mpp-frontoffice/wrapping-key/v1\0";

/// Domain tag of a data key's additional authenticated data.
const DATA_KEY_DOMAIN: &[u8] = b"mpp-frontoffice/data-key/v1\0";

/// Length of an AES-GCM tag, in bytes.
const TAG_BYTES: usize = 16;

/// Length of a wrapped 32-byte key: nonce, ciphertext, tag.
pub const WRAPPED_KEY_BYTES: usize = NONCE_LEN + VAULT_KEY_BYTES + TAG_BYTES;

/// The key-encryption key. `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct VaultKey([u8; VAULT_KEY_BYTES]);

impl fmt::Debug for VaultKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VaultKey(<redacted>)")
    }
}

/// Why the vault key file is unusable. The messages name the file, never
/// its content.
#[derive(Debug, thiserror::Error)]
pub enum VaultKeyError {
    /// Neither `--vault-key-file` nor `--insecure-dev-keys` was given.
    #[error(
        "no --vault-key-file (MPP_VAULT_KEY_FILE) given: refusing to keep citizens' data keys unencrypted \
         at rest. Give a file of {VAULT_KEY_BYTES} random bytes as 64 hex digits (e.g. `head -c 32 \
         /dev/urandom | od -An -tx1 | tr -d ' \\n' > vault.key`), or --insecure-dev-keys for development"
    )]
    Missing,
    /// The file could not be read.
    #[error("cannot read the vault key file {path} (--vault-key-file): {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file does not hold exactly 64 hex digits.
    #[error(
        "the vault key file {path} (--vault-key-file) must hold exactly {VAULT_KEY_BYTES} bytes as 64 hex \
         digits (surrounding whitespace ignored)"
    )]
    Format {
        /// The file.
        path: PathBuf,
    },
}

impl VaultKey {
    /// The key from `bytes`.
    pub fn from_bytes(bytes: [u8; VAULT_KEY_BYTES]) -> Self {
        Self(bytes)
    }

    /// Reads the key from a file of 64 hex digits.
    pub fn from_file(path: &Path) -> Result<Self, VaultKeyError> {
        let io = |source| VaultKeyError::Io { path: path.to_owned(), source };
        match read_hex_file(path, VAULT_KEY_FILE_BYTES_MAX).map_err(io)? {
            HexFile::Bytes(b) => {
                b.try_into().map(Self).map_err(|_| VaultKeyError::Format { path: path.to_owned() })
            }
            HexFile::TooLong { .. } | HexFile::NotHex => Err(VaultKeyError::Format { path: path.to_owned() }),
        }
    }

    /// The file's key if `path` is given; else the development key when
    /// `insecure_dev_keys` (with a warning), else [`VaultKeyError::Missing`].
    pub fn load(path: Option<&Path>, insecure_dev_keys: bool) -> Result<Self, VaultKeyError> {
        match (path, insecure_dev_keys) {
            (Some(p), _) => Self::from_file(p),
            (None, true) => {
                tracing::warn!(
                    "INSECURE DEVELOPMENT VAULT KEY (--insecure-dev-keys, no --vault-key-file): citizens' data \
                     keys are wrapped under a PUBLIC key, so anyone with the vault's files can read them. \
                     Development only; never in production"
                );
                Ok(Self(DEV_VAULT_KEY))
            }
            (None, false) => Err(VaultKeyError::Missing),
        }
    }
}

/// A wrapping key: the vault file's generation (`epoch`), when it was made,
/// and the key. `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct WrappingKey {
    pub(crate) epoch: u64,
    pub(crate) created_ms: i64,
    pub(crate) key: [u8; VAULT_KEY_BYTES],
}

impl fmt::Debug for WrappingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappingKey").field("epoch", &self.epoch).finish_non_exhaustive()
    }
}

/// Sealing or opening a wrapped key failed: a wrong key-encryption key, or
/// a record altered or moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unwrap;

/// Random bytes from the OS generator.
pub(crate) fn random<const N: usize>() -> Result<[u8; N], Unwrap> {
    let mut out = [0u8; N];
    SystemRandom::new().fill(&mut out).map_err(|_| Unwrap)?;
    Ok(out)
}

fn aead(key: &[u8; VAULT_KEY_BYTES]) -> Result<LessSafeKey, Unwrap> {
    Ok(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| Unwrap)?))
}

/// `nonce | ciphertext | tag` of `key` under `by`.
fn wrap(by: &[u8; VAULT_KEY_BYTES], aad: &[u8], key: &[u8; VAULT_KEY_BYTES]) -> Result<Vec<u8>, Unwrap> {
    let nonce: [u8; NONCE_LEN] = random()?;
    let mut out = key.to_vec();
    aead(by)?
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut out)
        .map_err(|_| Unwrap)?;
    let mut wrapped = nonce.to_vec();
    wrapped.extend_from_slice(&out);
    Ok(wrapped)
}

/// The reverse of [`wrap`].
fn unwrap(by: &[u8; VAULT_KEY_BYTES], aad: &[u8], wrapped: &[u8]) -> Result<[u8; VAULT_KEY_BYTES], Unwrap> {
    if wrapped.len() != WRAPPED_KEY_BYTES {
        return Err(Unwrap);
    }
    let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Unwrap)?;
    let mut buf = sealed.to_vec();
    let plain = aead(by)?.open_in_place(nonce, Aad::from(aad), &mut buf).map_err(|_| Unwrap)?;
    plain.try_into().map_err(|_| Unwrap)
}

fn wrapping_aad(epoch: u64) -> Vec<u8> {
    [WRAPPING_KEY_DOMAIN, &epoch.to_be_bytes()].concat()
}

fn data_key_aad(epoch: u64, key_id: &[u8; KEY_ID_BYTES]) -> Vec<u8> {
    [DATA_KEY_DOMAIN, &epoch.to_be_bytes(), key_id].concat()
}

impl WrappingKey {
    /// A fresh random wrapping key of generation `epoch`.
    pub(crate) fn new(epoch: u64, created_ms: i64) -> Result<Self, Unwrap> {
        Ok(Self { epoch, created_ms, key: random()? })
    }

    /// The stored form: `epoch u64 BE | created_ms i64 BE | wrapped key`
    /// under the key-encryption key.
    pub(crate) fn encode(&self, kek: &VaultKey) -> Result<Vec<u8>, Unwrap> {
        let mut v = self.epoch.to_be_bytes().to_vec();
        v.extend_from_slice(&self.created_ms.to_be_bytes());
        v.extend_from_slice(&wrap(&kek.0, &wrapping_aad(self.epoch), &self.key)?);
        Ok(v)
    }

    /// The reverse of [`WrappingKey::encode`]: fails under another
    /// key-encryption key.
    pub(crate) fn decode(kek: &VaultKey, v: &[u8]) -> Result<Self, Unwrap> {
        let word = |i: usize| v.get(i..i + 8).and_then(|b| b.try_into().ok()).ok_or(Unwrap);
        let epoch = u64::from_be_bytes(word(0)?);
        let created_ms = i64::from_be_bytes(word(8)?);
        let key = unwrap(&kek.0, &wrapping_aad(epoch), v.get(16..).ok_or(Unwrap)?)?;
        Ok(Self { epoch, created_ms, key })
    }

    /// A data key wrapped under this key, bound to its id and this epoch.
    pub(crate) fn wrap_data_key(
        &self,
        key_id: &[u8; KEY_ID_BYTES],
        key: &[u8; VAULT_KEY_BYTES],
    ) -> Result<Vec<u8>, Unwrap> {
        wrap(&self.key, &data_key_aad(self.epoch, key_id), key)
    }

    /// The reverse of [`WrappingKey::wrap_data_key`].
    pub(crate) fn unwrap_data_key(
        &self,
        key_id: &[u8; KEY_ID_BYTES],
        wrapped: &[u8],
    ) -> Result<[u8; VAULT_KEY_BYTES], Unwrap> {
        unwrap(&self.key, &data_key_aad(self.epoch, key_id), wrapped)
    }
}

/// The directory of a vault's files. A rotation writes a new file beside
/// the current one, swaps them by renaming, and shreds the old one; the
/// power-cut tests implement this over a simulated disk.
pub trait VaultDir: fmt::Debug + Send + Sync {
    /// The storage of file `name` (created when first opened).
    fn storage(&self, name: &str) -> std::io::Result<Storage>;
    /// Whether file `name` exists.
    fn exists(&self, name: &str) -> std::io::Result<bool>;
    /// Renames `from` to `to` (replacing it) and syncs the directory.
    fn rename(&self, from: &str, to: &str) -> std::io::Result<()>;
    /// Overwrites file `name` with zeros, syncs it, removes it and syncs the
    /// directory. Nothing if it does not exist.
    fn shred(&self, name: &str) -> std::io::Result<()>;
}

/// A vault directory on the file system.
#[derive(Debug, Clone)]
pub struct FsDir(pub PathBuf);

/// Bytes of zeros written at a time when shredding.
const SHRED_CHUNK_BYTES: usize = 64 * 1024;

impl VaultDir for FsDir {
    fn storage(&self, name: &str) -> std::io::Result<Storage> {
        Ok(Storage::File(self.0.join(name)))
    }

    fn exists(&self, name: &str) -> std::io::Result<bool> {
        self.0.join(name).try_exists()
    }

    fn rename(&self, from: &str, to: &str) -> std::io::Result<()> {
        std::fs::rename(self.0.join(from), self.0.join(to))?;
        durable::sync_dir(&self.0).map_err(std::io::Error::other)
    }

    fn shred(&self, name: &str) -> std::io::Result<()> {
        let path = self.0.join(name);
        let mut file = match std::fs::OpenOptions::new().write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut left = file.metadata()?.len();
        let zeros = vec![0u8; SHRED_CHUNK_BYTES];
        while left > 0 {
            let n = left.min(SHRED_CHUNK_BYTES as u64) as usize;
            file.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        file.sync_all()?;
        drop(file);
        std::fs::remove_file(&path)?;
        durable::sync_dir(&self.0).map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_keys_open_only_under_their_key_epoch_and_id() {
        let kek = VaultKey::from_bytes([3; 32]);
        let w = WrappingKey::new(7, 1_000).unwrap();
        let stored = w.encode(&kek).unwrap();
        assert_eq!(WrappingKey::decode(&kek, &stored).unwrap(), w);
        assert!(WrappingKey::decode(&VaultKey::from_bytes([4; 32]), &stored).is_err(), "another KEK");
        let mut moved = stored.clone();
        moved[7] ^= 1;
        assert!(WrappingKey::decode(&kek, &moved).is_err(), "another epoch");
        let (id, key) = ([1; KEY_ID_BYTES], [9; VAULT_KEY_BYTES]);
        let wrapped = w.wrap_data_key(&id, &key).unwrap();
        assert!(!wrapped.windows(8).any(|x| x == &key[..8]), "not in the clear");
        assert_eq!(w.unwrap_data_key(&id, &wrapped).unwrap(), key);
        assert!(w.unwrap_data_key(&[2; KEY_ID_BYTES], &wrapped).is_err(), "another key id");
        let other = WrappingKey::new(8, 1_000).unwrap();
        assert!(other.unwrap_data_key(&id, &wrapped).is_err(), "another wrapping key");
        assert_ne!(w.wrap_data_key(&id, &key).unwrap(), wrapped, "fresh nonces");
    }

    #[test]
    fn key_files_hold_exactly_64_hex_digits() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vault.key");
        std::fs::write(&file, format!("  {}\n", "ab".repeat(32))).unwrap();
        assert_eq!(VaultKey::from_file(&file).unwrap(), VaultKey::from_bytes([0xab; 32]));
        for bad in ["ab".repeat(31), "ab".repeat(33), "zz".repeat(32), "a".repeat(63)] {
            std::fs::write(&file, bad).unwrap();
            assert!(matches!(VaultKey::from_file(&file), Err(VaultKeyError::Format { .. })));
        }
        assert!(matches!(VaultKey::load(None, false), Err(VaultKeyError::Missing)));
        assert_eq!(VaultKey::load(None, true).unwrap(), VaultKey::from_bytes(DEV_VAULT_KEY));
        assert!(!format!("{:?}", VaultKey::from_bytes([0xab; 32])).contains("ab"), "Debug hides it");
    }
}
