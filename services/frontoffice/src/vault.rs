//! The key vault of one front office: one random data key per citizen, the
//! sealing of their name and contact details, and crypto-shredding on an
//! erasure request (UU 27/2022; docs/PRIVACY.md).
//!
//! Guarantees, first:
//!
//! - **One key per citizen, never derived from who they are.** A citizen
//!   (identified by the NIK's keyed hash) gets a random 256-bit AES-GCM key
//!   and a random 128-bit key id the first time a case is opened for them;
//!   later cases reuse it. Both are synced to disk before anything sealed
//!   under them is published, and the creation runs under a lock, so two
//!   concurrent first visits cannot create two keys.
//! - **A ciphertext belongs to one case.** The additional authenticated data
//!   is a domain tag, the tracking number and the event id of the
//!   `personal_data_sealed` event, so a ciphertext copied into another case
//!   or another event does not open ([`Sealed::open`]).
//! - **Every case of a key is known before its sealing is published.** The
//!   vault records (case → key) and (key → case) and syncs before the
//!   event enters the outbox, so an erasure reaches every case sealed under
//!   the key.
//! - **Erasure is one atomic, synced transaction**: the key, the citizen's NIK-hash
//!   link and the stored ciphertexts are removed, a tombstone for the key id
//!   is written. After it no code path of this service can decrypt the data,
//!   and no other copy of the key ever existed outside this database.
//!
//! - **Encrypted at rest, and erasure final after the next rotation.**
//!   Data keys are stored only wrapped under the vault file's wrapping key,
//!   itself stored only wrapped under the key-encryption key from
//!   `--vault-key-file` ([`crate::vault_key`]). [`Vault::rotate`] (daily,
//!   [`VAULT_KEY_ROTATION_S`]) copies the live records into a new file under
//!   a new wrapping key and shreds the old file, so after it nothing of an
//!   erased key — nor of the wrapping key that wrapped it — is in the
//!   vault's files (docs/PRIVACY.md states the bound).
//!
//! Known limits, honestly: redb does not overwrite the pages it frees, so
//! until the next rotation a raw copy of the vault file may hold an erased
//! key wrapped (readable with the key-encryption key). Overwriting the old
//! file does not reach blocks a copy-on-write file system or an SSD keeps
//! elsewhere: keep the vault on an encrypted volume.
//! Keys in memory are not zeroed on drop (no zeroize dependency).
//!
//! Layout (one redb table of byte strings, key prefixes; tracking numbers as their 17-byte
//! text `RRRR-SSSSSSSSSS-C`):
//!
//! ```text
//! "n" nik_keyed_hash           key_id [16]
//! "w"                          epoch u64 | created_ms i64 | wrapping key wrapped under the KEK [60]
//! "k" key_id [16]              data key wrapped under the wrapping key [60] | nik_keyed_hash
//! "e" key_id [16]              (empty): the key was destroyed
//! "x" key_id [16] tracking     (empty): a case sealed under the key
//! "c" tracking                 key_id [16] | event_id [16] | nonce [12] | ciphertext
//!                              (after erasure: key_id [16] only)
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use mpp_agency_kit::durable::{self, redb, sled, DurableError};
use mpp_core::ids::TrackingNumber;
use mpp_core::limits::{KEY_ID_BYTES, SEALED_CIPHERTEXT_BYTES_MAX, SEAL_NONCE_BYTES};
use redb::{ReadableTable, TableDefinition};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::rand::{SecureRandom, SystemRandom};

use crate::citizen::Bahasa;
pub use crate::vault_key::{FsDir, VaultDir, VaultKey, VAULT_KEY_ROTATION_S};
use crate::vault_key::{WrappingKey, WRAPPED_KEY_BYTES};

/// The vault's directory inside the service's data directory.
pub const VAULT_DIR: &str = "vault";

/// The vault's redb file inside [`VAULT_DIR`].
pub const VAULT_FILE: &str = "vault.redb";

/// The vault's table: the layout in the module docs.
const VAULT_TABLE: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("vault");

/// Length of a data key, in bytes (AES-256).
pub const DATA_KEY_BYTES: usize = 32;

/// Length of an event id in the additional authenticated data, in bytes.
pub const EVENT_ID_BYTES: usize = 16;

/// Most cases one citizen's key seals. Past it, opening another case for the
/// citizen is refused (`CASE_LIMIT_EXCEEDED`), which keeps an erasure — one
/// event per case, in one outbox batch — bounded.
pub const CASES_PER_DATA_KEY_MAX: usize = 1000;

/// Longest NIK keyed hash accepted, in bytes (the hub's own hash limit).
pub const NIK_HASH_BYTES_MAX: usize = mpp_core::limits::HASH_BYTES_MAX;

/// Domain tag at the start of the additional authenticated data.
pub const AAD_DOMAIN: &[u8] = b"mpp-frontoffice/personal-data/v1\0";

/// Format byte at the start of a sealed plaintext: the three texts.
pub const PLAINTEXT_FORMAT_V1: u8 = 1;

/// Format byte of a plaintext with the citizen's notification choices after
/// the texts: language (0 Bahasa Indonesia, 1 English) and opt-out (0, 1).
/// Version 1 plaintexts read as Bahasa Indonesia, notifications on.
pub const PLAINTEXT_FORMAT_V2: u8 = 2;

/// Longest sealed plaintext, in bytes: the ciphertext limit less the tag.
pub const PLAINTEXT_BYTES_MAX: usize = SEALED_CIPHERTEXT_BYTES_MAX - TAG_BYTES;

/// Length of the AES-GCM tag, in bytes.
const TAG_BYTES: usize = 16;

/// A data key's random id.
pub type KeyId = [u8; KEY_ID_BYTES];

/// Why the vault failed.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The store could not be opened or migrated (e.g. another process
    /// holds it).
    #[error("cannot open the key vault: {0}")]
    Open(#[from] DurableError),
    /// Reading, writing or syncing failed.
    #[error("key vault storage failed: {0}")]
    Storage(Box<redb::Error>),
    /// A stored value has the wrong shape.
    #[error("the key vault holds a malformed {what}; restore the vault from its backup")]
    Corrupt {
        /// Which kind of value.
        what: &'static str,
    },
    /// The operating system's random source failed.
    #[error("the random source failed")]
    Random,
    /// The citizen's key already seals [`CASES_PER_DATA_KEY_MAX`] cases.
    #[error("this citizen already has {CASES_PER_DATA_KEY_MAX} cases at this front office")]
    TooManyCases,
    /// The plaintext is longer than [`PLAINTEXT_BYTES_MAX`].
    #[error("the personal data is {len} bytes, more than the limit of {PLAINTEXT_BYTES_MAX} bytes")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// The NIK keyed hash is empty or longer than [`NIK_HASH_BYTES_MAX`].
    #[error("the NIK keyed hash must be 1..={NIK_HASH_BYTES_MAX} bytes")]
    BadNikHash,
    /// The case is already sealed in this vault.
    #[error("the personal data of case {0} is already sealed")]
    AlreadySealed(TrackingNumber),
    /// Sealing or opening failed: a ciphertext that was altered, moved to
    /// another case or event, or a wrong key.
    #[error("the sealed personal data does not open under its key (altered, or not of this case)")]
    Crypto,
    /// The vault was closed (the service is stopping).
    #[error("the key vault is closed")]
    Closed,
    /// The blocking task failed.
    #[error("the key vault task failed: {0}")]
    Task(String),
    /// The key-encryption key does not open the vault's wrapping key.
    #[error(
        "the vault key (--vault-key-file) does not open this key vault: it was created under another key. \
         Give the vault's own key file"
    )]
    WrongKey,
}

mpp_agency_kit::from_redb_errors!(VaultError, VaultError::Storage);

/// What [`Vault::reseal`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reseal {
    /// The new sealing replaced the old one.
    Done,
    /// Nothing was sealed for the case here.
    Unknown,
    /// The citizen's key was destroyed: nothing to seal again.
    Erased,
}

/// A citizen's data key, in memory only while sealing or opening.
#[derive(Clone)]
pub struct DataKey {
    id: KeyId,
    bytes: [u8; DATA_KEY_BYTES],
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key bytes.
        f.debug_struct("DataKey").field("id", &hex(&self.id)).finish_non_exhaustive()
    }
}

impl DataKey {
    /// The key's id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    fn aead(&self) -> Result<LessSafeKey, VaultError> {
        let unbound = UnboundKey::new(&AES_256_GCM, &self.bytes).map_err(|_| VaultError::Crypto)?;
        Ok(LessSafeKey::new(unbound))
    }

    /// Seals `plaintext` for `case` and the event `event_id` under a fresh
    /// random nonce.
    pub fn seal(
        &self,
        case: &TrackingNumber,
        event_id: &[u8; EVENT_ID_BYTES],
        plaintext: &[u8],
    ) -> Result<Sealed, VaultError> {
        if plaintext.len() > PLAINTEXT_BYTES_MAX {
            return Err(VaultError::TooLarge { len: plaintext.len() });
        }
        let mut nonce = [0u8; SEAL_NONCE_BYTES];
        SystemRandom::new().fill(&mut nonce).map_err(|_| VaultError::Random)?;
        let mut ciphertext = plaintext.to_vec();
        self.aead()?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(case, event_id)),
                &mut ciphertext,
            )
            .map_err(|_| VaultError::Crypto)?;
        Ok(Sealed { key_id: self.id, event_id: *event_id, nonce, ciphertext })
    }
}

/// The additional authenticated data of a sealing: domain tag, tracking
/// number text, event id bytes.
pub fn aad(case: &TrackingNumber, event_id: &[u8; EVENT_ID_BYTES]) -> Vec<u8> {
    let case = case.to_string();
    let mut v = Vec::with_capacity(AAD_DOMAIN.len() + case.len() + EVENT_ID_BYTES);
    v.extend_from_slice(AAD_DOMAIN);
    v.extend_from_slice(case.as_bytes());
    v.extend_from_slice(event_id);
    v
}

/// Personal data sealed for one case and one event.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The data key's id.
    pub key_id: KeyId,
    /// The `personal_data_sealed` event's id (part of the AAD).
    pub event_id: [u8; EVENT_ID_BYTES],
    /// The AES-GCM nonce.
    pub nonce: [u8; SEAL_NONCE_BYTES],
    /// Ciphertext and tag.
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("key_id", &hex(&self.key_id))
            .field("ciphertext_bytes", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

impl Sealed {
    /// Opens the sealing of `case` with `key`: [`VaultError::Crypto`] when
    /// the key is not this sealing's, or the ciphertext, nonce, case or
    /// event id differ from what was sealed.
    pub fn open(&self, key: &DataKey, case: &TrackingNumber) -> Result<Vec<u8>, VaultError> {
        if key.id != self.key_id {
            return Err(VaultError::Crypto);
        }
        let mut buf = self.ciphertext.clone();
        let plain = key
            .aead()?
            .open_in_place(
                Nonce::assume_unique_for_key(self.nonce),
                Aad::from(aad(case, &self.event_id)),
                &mut buf,
            )
            .map_err(|_| VaultError::Crypto)?;
        Ok(plain.to_vec())
    }

    fn encode(&self) -> Vec<u8> {
        let mut v =
            Vec::with_capacity(KEY_ID_BYTES + EVENT_ID_BYTES + SEAL_NONCE_BYTES + self.ciphertext.len());
        v.extend_from_slice(&self.key_id);
        v.extend_from_slice(&self.event_id);
        v.extend_from_slice(&self.nonce);
        v.extend_from_slice(&self.ciphertext);
        v
    }
}

/// What the vault knows of a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseRecord {
    /// Sealed under a live key: the key and the sealing.
    Sealed(DataKey, Sealed),
    /// The key was destroyed.
    Erased(KeyId),
}

impl PartialEq for DataKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.bytes == other.bytes
    }
}

impl Eq for DataKey {}

/// What an erasure destroyed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    /// The destroyed key's id.
    pub key_id: KeyId,
    /// Every case sealed under it, in tracking-number order.
    pub cases: Vec<TrackingNumber>,
    /// Whether this call destroyed the key (`false`: it was destroyed before).
    pub destroyed_now: bool,
}

/// The open vault file and its wrapping key.
#[derive(Debug)]
struct Open {
    db: redb::Database,
    wrapping: WrappingKey,
}

#[derive(Debug)]
struct Inner {
    /// `None` once closed. The lock serialises every read-modify-write and
    /// the rotation.
    open: Mutex<Option<Open>>,
    dir: Arc<dyn VaultDir>,
    kek: VaultKey,
}

/// The vault. Cheap to clone; [`Vault::close`] releases it for every clone.
#[derive(Debug, Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

fn prefixed(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = vec![prefix];
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

fn key_id_of(v: &[u8], what: &'static str) -> Result<KeyId, VaultError> {
    v.get(..KEY_ID_BYTES).and_then(|b| b.try_into().ok()).ok_or(VaultError::Corrupt { what })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A key and its value.
type Record = (Vec<u8>, Vec<u8>);

/// One read or write transaction's view of the vault table.
trait View {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, VaultError>;
    /// Keys (and values) starting with `prefix`, at most `limit`, in order.
    fn scan(&self, prefix: &[u8], limit: usize) -> Result<Vec<Record>, VaultError>;
}

impl<T: ReadableTable<&'static [u8], &'static [u8]>> View for T {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, VaultError> {
        Ok(ReadableTable::get(self, key)?.map(|v| v.value().to_vec()))
    }

    fn scan(&self, prefix: &[u8], limit: usize) -> Result<Vec<Record>, VaultError> {
        let mut out = Vec::new();
        for kv in self.range(prefix..)? {
            let (k, v) = kv?;
            if !k.value().starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }
}

/// Copies every record of a sled vault (default tree) into `tx`, each
/// data key wrapped under `wrapping` (stored under `kek`). A destroyed key
/// has no record to copy, and its tombstone and case records are copied as
/// they are, so what was erased stays erased.
fn copy_from_sled(
    sled_db: &sled::Db,
    tx: &redb::WriteTransaction,
    kek: &VaultKey,
    wrapping: &WrappingKey,
) -> Result<u64, DurableError> {
    let redb_err = durable::redb_error(VAULT_FILE);
    let bad = |what: &str| DurableError::Migrate { dir: PathBuf::from(VAULT_DIR), what: what.to_owned() };
    let mut table = tx.open_table(VAULT_TABLE).map_err(|e| redb_err(e.into()))?;
    let stored = wrapping.encode(kek).map_err(|_| bad("the random source failed"))?;
    table.insert(WRAPPING_KEY_RECORD, stored.as_slice()).map_err(|e| redb_err(e.into()))?;
    let mut n = 0;
    for kv in sled_db.iter() {
        let (k, v) = kv.map_err(|source| DurableError::Sled { dir: PathBuf::from(VAULT_DIR), source })?;
        let value = match k.first() {
            // key [32] | nik_keyed_hash, in the clear in sled.
            Some(b'k') => {
                let id: KeyId = k.get(1..).and_then(|b| b.try_into().ok()).ok_or_else(|| bad("a key id"))?;
                let key: [u8; DATA_KEY_BYTES] = v
                    .get(..DATA_KEY_BYTES)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| bad("a data key"))?;
                let mut w = wrapping.wrap_data_key(&id, &key).map_err(|_| bad("the random source failed"))?;
                w.extend_from_slice(&v[DATA_KEY_BYTES..]);
                w
            }
            _ => v.to_vec(),
        };
        table.insert(k.as_ref(), value.as_slice()).map_err(|e| redb_err(e.into()))?;
        n += 1;
    }
    Ok(n)
}

/// The vault file; a rotation builds [`VAULT_NEXT_FILE`], renames the
/// current one to [`VAULT_OLD_FILE`] and the new one into place, then
/// shreds the old one.
pub const VAULT_NEXT_FILE: &str = "vault-next.redb";

/// The previous vault file during a rotation (shredded at its end, or at
/// the next open after a crash).
pub const VAULT_OLD_FILE: &str = "vault-old.redb";

/// The record of the file's wrapping key (no other key starts with `w`).
const WRAPPING_KEY_RECORD: &[u8] = b"w";

fn io_error(e: std::io::Error) -> VaultError {
    VaultError::Open(DurableError::Io { what: "key vault file", path: PathBuf::from(VAULT_DIR), source: e })
}

impl Vault {
    /// Opens (or creates) the vault in `dir` under the key-encryption key
    /// `kek`, migrating a sled vault found there. `now_ms` dates a new
    /// wrapping key.
    pub fn open(dir: &Path, kek: VaultKey, now_ms: i64) -> Result<Self, VaultError> {
        let file = dir.join(VAULT_FILE);
        if !file.exists() && !dir.join(VAULT_NEXT_FILE).exists() {
            let wrapping = WrappingKey::new(1, now_ms).map_err(|_| VaultError::Random)?;
            durable::migrate_from_sled(dir, &file, |s, tx| copy_from_sled(s, tx, &kek, &wrapping))?;
        }
        Self::open_in(Arc::new(FsDir(dir.to_owned())), kek, now_ms)
    }

    /// Opens the vault in `dir` (a directory of files, or a test's
    /// simulated disk), without migrating anything. Finishes a rotation a
    /// crash interrupted: an old file left behind is shredded, a complete
    /// new one is moved into place.
    pub fn open_in(dir: Arc<dyn VaultDir>, kek: VaultKey, now_ms: i64) -> Result<Self, VaultError> {
        let open = Self::open_file(dir.as_ref(), &kek, now_ms)?;
        tracing::info!(dir = ?dir, epoch = open.wrapping.epoch, "Key vault opened");
        Ok(Self { inner: Arc::new(Inner { open: Mutex::new(Some(open)), dir, kek }) })
    }

    fn open_file(dir: &dyn VaultDir, kek: &VaultKey, now_ms: i64) -> Result<Open, VaultError> {
        // The new file is complete once the current one was renamed away.
        if dir.exists(VAULT_FILE).map_err(io_error)? {
            dir.shred(VAULT_NEXT_FILE).map_err(io_error)?;
        } else if dir.exists(VAULT_NEXT_FILE).map_err(io_error)? {
            dir.rename(VAULT_NEXT_FILE, VAULT_FILE).map_err(io_error)?;
        }
        dir.shred(VAULT_OLD_FILE).map_err(io_error)?;
        let db = durable::open(dir.storage(VAULT_FILE).map_err(io_error)?)?;
        let tx = db.begin_write()?;
        let wrapping = {
            let mut table = tx.open_table(VAULT_TABLE)?;
            let stored = View::get(&table, WRAPPING_KEY_RECORD)?;
            match stored {
                Some(v) => WrappingKey::decode(kek, &v).map_err(|_| VaultError::WrongKey)?,
                None => {
                    if table.first()?.is_some() {
                        return Err(VaultError::Corrupt { what: "vault without a wrapping key" });
                    }
                    let w = WrappingKey::new(1, now_ms).map_err(|_| VaultError::Random)?;
                    table.insert(
                        WRAPPING_KEY_RECORD,
                        w.encode(kek).map_err(|_| VaultError::Random)?.as_slice(),
                    )?;
                    w
                }
            }
        };
        tx.commit()?;
        Ok(Open { db, wrapping })
    }

    fn with_open<T>(&self, f: impl FnOnce(&Open) -> Result<T, VaultError>) -> Result<T, VaultError> {
        let guard = self.inner.open.lock().unwrap_or_else(|e| e.into_inner());
        f(guard.as_ref().ok_or(VaultError::Closed)?)
    }

    /// Runs `f` in one write transaction, committed durably if it succeeds.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut redb::Table<&'static [u8], &'static [u8]>, &WrappingKey) -> Result<T, VaultError>,
    ) -> Result<T, VaultError> {
        self.with_open(|o| {
            let tx = o.db.begin_write()?;
            let out = f(&mut tx.open_table(VAULT_TABLE)?, &o.wrapping)?;
            tx.commit()?;
            Ok(out)
        })
    }

    /// Runs `f` on a read transaction.
    fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadOnlyTable<&'static [u8], &'static [u8]>, &WrappingKey) -> Result<T, VaultError>,
    ) -> Result<T, VaultError> {
        self.with_open(|o| f(&o.db.begin_read()?.open_table(VAULT_TABLE)?, &o.wrapping))
    }

    fn load_key(db: &impl View, w: &WrappingKey, id: &KeyId) -> Result<Option<DataKey>, VaultError> {
        let Some(v) = db.get(&prefixed(b'k', &[id]))? else { return Ok(None) };
        let wrapped = v.get(..WRAPPED_KEY_BYTES).ok_or(VaultError::Corrupt { what: "data key" })?;
        let bytes = w.unwrap_data_key(id, wrapped).map_err(|_| VaultError::Corrupt { what: "data key" })?;
        Ok(Some(DataKey { id: *id, bytes }))
    }

    /// The wrapping key's generation and creation time (Unix ms).
    pub fn wrapping_epoch(&self) -> Result<(u64, i64), VaultError> {
        self.with_open(|o| Ok((o.wrapping.epoch, o.wrapping.created_ms)))
    }

    /// Rotates the wrapping key if it is [`VAULT_KEY_ROTATION_S`] old at
    /// `now_ms`; whether it did.
    pub fn rotate_if_due(&self, now_ms: i64) -> Result<bool, VaultError> {
        let (_, created_ms) = self.wrapping_epoch()?;
        let due = now_ms.saturating_sub(created_ms) >= (VAULT_KEY_ROTATION_S * 1000) as i64;
        if due {
            self.rotate(now_ms)?;
        }
        Ok(due)
    }

    /// Replaces the wrapping key and the vault file: every live record is
    /// copied into a new file (data keys wrapped again under a new wrapping
    /// key), the new file is committed and renamed into place, and the old
    /// one is overwritten with zeros and removed. Nothing of an erased key,
    /// nor the old wrapping key, is copied: after this the vault's files
    /// hold no trace of them.
    pub fn rotate(&self, now_ms: i64) -> Result<(), VaultError> {
        let dir = self.inner.dir.as_ref();
        let mut guard = self.inner.open.lock().unwrap_or_else(|e| e.into_inner());
        let old = guard.as_ref().ok_or(VaultError::Closed)?;
        let new = WrappingKey::new(old.wrapping.epoch + 1, now_ms).map_err(|_| VaultError::Random)?;
        dir.shred(VAULT_NEXT_FILE).map_err(io_error)?;
        let records = {
            let next = durable::open(dir.storage(VAULT_NEXT_FILE).map_err(io_error)?)?;
            let tx = next.begin_write()?;
            let mut records = 0u64;
            {
                let mut to = tx.open_table(VAULT_TABLE)?;
                let read = old.db.begin_read()?;
                let from = read.open_table(VAULT_TABLE)?;
                for kv in from.iter()? {
                    let (k, v) = kv?;
                    let (k, v) = (k.value(), v.value());
                    let value = match k.first() {
                        Some(b'w') => continue,
                        Some(b'k') => {
                            let id = key_id_of(&k[1..], "data key")?;
                            let key = Self::load_key(&from, &old.wrapping, &id)?
                                .ok_or(VaultError::Corrupt { what: "data key" })?;
                            let mut w = new.wrap_data_key(&id, &key.bytes).map_err(|_| VaultError::Random)?;
                            w.extend_from_slice(&v[WRAPPED_KEY_BYTES..]);
                            w
                        }
                        _ => v.to_vec(),
                    };
                    to.insert(k, value.as_slice())?;
                    records += 1;
                }
                let stored = new.encode(&self.inner.kek).map_err(|_| VaultError::Random)?;
                to.insert(WRAPPING_KEY_RECORD, stored.as_slice())?;
            }
            tx.commit()?;
            records
        };
        // The swap: close the current file, rename it away, rename the new
        // one into place, open it. A crash anywhere here is finished by the
        // next open (see `open_file`).
        let swapped = guard.take().map(drop).ok_or(VaultError::Closed).and_then(|()| {
            dir.rename(VAULT_FILE, VAULT_OLD_FILE).map_err(io_error)?;
            dir.rename(VAULT_NEXT_FILE, VAULT_FILE).map_err(io_error)?;
            Self::open_file(dir, &self.inner.kek, now_ms)
        });
        match swapped {
            Ok(open) => {
                tracing::info!(epoch = open.wrapping.epoch, records, "Key vault wrapping key rotated");
                *guard = Some(open);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "Key vault rotation failed; reopening the vault");
                *guard = Some(Self::open_file(dir, &self.inner.kek, now_ms)?);
                Err(e)
            }
        }
    }

    /// The key linked to `nik_keyed_hash`, if any; refuses one that seals
    /// [`CASES_PER_DATA_KEY_MAX`] cases.
    fn existing_key(
        db: &impl View,
        w: &WrappingKey,
        nik_keyed_hash: &[u8],
    ) -> Result<Option<DataKey>, VaultError> {
        let Some(v) = db.get(&prefixed(b'n', &[nik_keyed_hash]))? else { return Ok(None) };
        let id = key_id_of(&v, "citizen key link")?;
        let key = Self::load_key(db, w, &id)?.ok_or(VaultError::Corrupt { what: "citizen key link" })?;
        let cases = db.scan(&prefixed(b'x', &[&id]), CASES_PER_DATA_KEY_MAX)?.len();
        if cases >= CASES_PER_DATA_KEY_MAX {
            return Err(VaultError::TooManyCases);
        }
        Ok(Some(key))
    }

    /// The citizen's data key, created (and synced) on their first case.
    /// Refuses with [`VaultError::TooManyCases`] when the key already seals
    /// [`CASES_PER_DATA_KEY_MAX`] cases.
    pub fn key_for(&self, nik_keyed_hash: &[u8]) -> Result<DataKey, VaultError> {
        if nik_keyed_hash.is_empty() || nik_keyed_hash.len() > NIK_HASH_BYTES_MAX {
            return Err(VaultError::BadNikHash);
        }
        // A returning citizen's key is read without a write (no sync); a new
        // one is created in a write transaction that looks again, so two
        // concurrent first visits make one key.
        if let Some(key) = self.read(|db, w| Self::existing_key(db, w, nik_keyed_hash))? {
            return Ok(key);
        }
        self.write(|db, w| {
            if let Some(key) = Self::existing_key(db, w, nik_keyed_hash)? {
                return Ok(key);
            }
            let link = prefixed(b'n', &[nik_keyed_hash]);
            let rng = SystemRandom::new();
            let mut id = [0u8; KEY_ID_BYTES];
            let mut bytes = [0u8; DATA_KEY_BYTES];
            rng.fill(&mut id).map_err(|_| VaultError::Random)?;
            rng.fill(&mut bytes).map_err(|_| VaultError::Random)?;
            let mut key_value = w.wrap_data_key(&id, &bytes).map_err(|_| VaultError::Random)?;
            key_value.extend_from_slice(nik_keyed_hash);
            db.insert(prefixed(b'k', &[&id]).as_slice(), key_value.as_slice())?;
            db.insert(link.as_slice(), id.as_slice())?;
            tracing::info!(key_id = %hex(&id), "Data key created for a citizen");
            Ok(DataKey { id, bytes })
        })
    }

    /// Records the sealing of `case` (case → key and key → case), synced
    /// before it returns. Publish the sealing only after this.
    pub fn record(&self, case: &TrackingNumber, sealed: &Sealed) -> Result<(), VaultError> {
        let tn = case.to_string();
        self.write(|db, _| {
            let ckey = prefixed(b'c', &[tn.as_bytes()]);
            if View::get(db, &ckey)?.is_some() {
                return Err(VaultError::AlreadySealed(*case));
            }
            db.insert(ckey.as_slice(), sealed.encode().as_slice())?;
            db.insert(prefixed(b'x', &[&sealed.key_id, tn.as_bytes()]).as_slice(), [].as_slice())?;
            Ok(())
        })
    }

    /// Replaces the sealing of `case` by `sealed` (the same personal data
    /// with a choice changed, sealed again under the same key: see
    /// `AturNotifikasi`), synced before it returns. Not for a case sealed
    /// nowhere here ([`Reseal::Unknown`]) or whose key was destroyed
    /// ([`Reseal::Erased`]); a sealing under another key is refused as
    /// [`VaultError::Crypto`].
    pub fn reseal(&self, case: &TrackingNumber, sealed: &Sealed) -> Result<Reseal, VaultError> {
        let tn = case.to_string();
        self.write(|db, _| {
            let ckey = prefixed(b'c', &[tn.as_bytes()]);
            let Some(v) = View::get(db, &ckey)? else { return Ok(Reseal::Unknown) };
            let key_id = key_id_of(&v, "case record")?;
            if View::get(db, &prefixed(b'k', &[&key_id]))?.is_none() {
                return Ok(Reseal::Erased);
            }
            if key_id != sealed.key_id {
                return Err(VaultError::Crypto);
            }
            db.insert(ckey.as_slice(), sealed.encode().as_slice())?;
            Ok(Reseal::Done)
        })
    }

    /// What the vault knows of `case`: `None` when nothing was sealed for it
    /// here.
    pub fn case(&self, case: &TrackingNumber) -> Result<Option<CaseRecord>, VaultError> {
        let tn = case.to_string();
        self.read(|db, w| {
            let Some(v) = View::get(db, &prefixed(b'c', &[tn.as_bytes()]))? else { return Ok(None) };
            let key_id = key_id_of(&v, "case record")?;
            let Some(key) = Self::load_key(db, w, &key_id)? else {
                return Ok(Some(CaseRecord::Erased(key_id)));
            };
            let rest = &v[KEY_ID_BYTES..];
            let (event_id, rest) =
                rest.split_at_checked(EVENT_ID_BYTES).ok_or(VaultError::Corrupt { what: "case record" })?;
            let (nonce, ciphertext) =
                rest.split_at_checked(SEAL_NONCE_BYTES).ok_or(VaultError::Corrupt { what: "case record" })?;
            let sealed = Sealed {
                key_id,
                event_id: event_id.try_into().map_err(|_| VaultError::Corrupt { what: "case record" })?,
                nonce: nonce.try_into().map_err(|_| VaultError::Corrupt { what: "case record" })?,
                ciphertext: ciphertext.to_vec(),
            };
            Ok(Some(CaseRecord::Sealed(key, sealed)))
        })
    }

    /// Erases the personal data of the citizen of `case`: in one synced
    /// transaction, removes their key, the link from their NIK hash and the stored
    /// ciphertexts of all their cases, and writes a tombstone. Repeating it
    /// changes nothing and answers the same cases. `None` when nothing was
    /// sealed for `case` here.
    pub fn erase(&self, case: &TrackingNumber) -> Result<Option<Erasure>, VaultError> {
        let tn = case.to_string();
        self.write(|db, _| {
            let Some(v) = View::get(db, &prefixed(b'c', &[tn.as_bytes()]))? else { return Ok(None) };
            let key_id = key_id_of(&v, "case record")?;
            let mut cases = Vec::new();
            for (k, _) in db.scan(&prefixed(b'x', &[&key_id]), CASES_PER_DATA_KEY_MAX)? {
                let text = k
                    .get(1 + KEY_ID_BYTES..)
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .ok_or(VaultError::Corrupt { what: "key index" })?;
                cases.push(TrackingNumber::parse(text).map_err(|_| VaultError::Corrupt { what: "key index" })?);
            }
            let kkey = prefixed(b'k', &[&key_id]);
            let Some(key_value) = View::get(db, &kkey)? else {
                return Ok(Some(Erasure { key_id, cases, destroyed_now: false }));
            };
            // The key value is wrapped key | nik_keyed_hash: unlink the citizen.
            if let Some(nik_hash) = key_value.get(WRAPPED_KEY_BYTES..).filter(|h| !h.is_empty()) {
                db.remove(prefixed(b'n', &[nik_hash]).as_slice())?;
            }
            db.remove(kkey.as_slice())?;
            db.insert(prefixed(b'e', &[&key_id]).as_slice(), [].as_slice())?;
            for c in &cases {
                db.insert(prefixed(b'c', &[c.to_string().as_bytes()]).as_slice(), key_id.as_slice())?;
            }
            tracing::info!(key_id = %hex(&key_id), cases = cases.len(), "Data key destroyed on an erasure request");
            Ok(Some(Erasure { key_id, cases, destroyed_now: true }))
        })
    }

    /// Releases the file (every change was synced when it returned); later
    /// calls fail with [`VaultError::Closed`].
    pub fn close(&self) -> Result<(), VaultError> {
        drop(self.inner.open.lock().unwrap_or_else(|e| e.into_inner()).take());
        Ok(())
    }

    /// Runs `f` on the blocking thread pool (every vault change syncs).
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Vault) -> Result<T, VaultError> + Send + 'static,
    ) -> Result<T, VaultError> {
        let vault = self.clone();
        tokio::task::spawn_blocking(move || f(&vault)).await.map_err(|e| VaultError::Task(e.to_string()))?
    }
}

/// The citizen's personal data, as sealed.
#[derive(Clone, PartialEq, Eq)]
pub struct PersonalData {
    /// The name (required).
    pub nama: String,
    /// The phone number, empty when none.
    pub telepon: String,
    /// The e-mail address, empty when none.
    pub surel: String,
    /// The language of the citizen's notifications.
    pub bahasa: Bahasa,
    /// Whether the citizen declined notifications.
    pub tanpa_notifikasi: bool,
}

impl std::fmt::Debug for PersonalData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the values: a Debug print must not leak them into a log.
        f.write_str("PersonalData { .. }")
    }
}

impl PersonalData {
    /// The plaintext: format byte ([`PLAINTEXT_FORMAT_V2`]), then each text
    /// as u16 big-endian length and UTF-8 bytes, then the language and
    /// opt-out bytes.
    pub fn encode(&self) -> Result<Vec<u8>, VaultError> {
        let mut v = vec![PLAINTEXT_FORMAT_V2];
        for f in [&self.nama, &self.telepon, &self.surel] {
            let len = u16::try_from(f.len()).map_err(|_| VaultError::TooLarge { len: f.len() })?;
            v.extend_from_slice(&len.to_be_bytes());
            v.extend_from_slice(f.as_bytes());
        }
        v.push(match self.bahasa {
            Bahasa::Id => 0,
            Bahasa::En => 1,
        });
        v.push(u8::from(self.tanpa_notifikasi));
        if v.len() > PLAINTEXT_BYTES_MAX {
            return Err(VaultError::TooLarge { len: v.len() });
        }
        Ok(v)
    }

    /// The reverse of [`PersonalData::encode`].
    pub fn decode(b: &[u8]) -> Result<Self, VaultError> {
        let bad = || VaultError::Corrupt { what: "sealed plaintext" };
        let (&format, mut rest) = b.split_first().ok_or_else(bad)?;
        if format != PLAINTEXT_FORMAT_V1 && format != PLAINTEXT_FORMAT_V2 {
            return Err(bad());
        }
        let mut field = || -> Result<String, VaultError> {
            let (len, tail) = rest.split_at_checked(2).ok_or_else(bad)?;
            let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
            let (text, tail) = tail.split_at_checked(len).ok_or_else(bad)?;
            rest = tail;
            String::from_utf8(text.to_vec()).map_err(|_| bad())
        };
        let (nama, telepon, surel) = (field()?, field()?, field()?);
        let (bahasa, tanpa_notifikasi) = match (format, rest) {
            (PLAINTEXT_FORMAT_V1, []) => (Bahasa::Id, false),
            (PLAINTEXT_FORMAT_V2, [0, opt]) if *opt <= 1 => (Bahasa::Id, *opt == 1),
            (PLAINTEXT_FORMAT_V2, [1, opt]) if *opt <= 1 => (Bahasa::En, *opt == 1),
            _ => return Err(bad()),
        };
        Ok(Self { nama, telepon, surel, bahasa, tanpa_notifikasi })
    }
}

#[cfg(test)]
mod tests {
    use mpp_core::ids::RegionCode;

    use super::*;

    /// A time for the tests' wrapping keys (2026-01-01).
    const NOW_MS: i64 = 1_767_225_600_000;

    fn kek() -> VaultKey {
        VaultKey::from_bytes([5; 32])
    }

    fn tn(serial: u64) -> TrackingNumber {
        TrackingNumber::new(RegionCode::parse("1771").unwrap(), serial).unwrap()
    }

    fn data() -> PersonalData {
        PersonalData {
            nama: "Siti Aminah".into(),
            telepon: "0812-3456-7890".into(),
            surel: "siti@contoh.id".into(),
            bahasa: Bahasa::En,
            tanpa_notifikasi: true,
        }
    }

    fn seal_case(v: &Vault, nik: &[u8], case: TrackingNumber, event: u8) -> Sealed {
        let key = v.key_for(nik).unwrap();
        let sealed = key.seal(&case, &[event; 16], &data().encode().unwrap()).unwrap();
        v.record(&case, &sealed).unwrap();
        sealed
    }

    #[test]
    fn one_key_per_citizen_that_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::open(dir.path(), kek(), NOW_MS).unwrap();
        let a = v.key_for(b"nik-hash-a").unwrap();
        let a2 = v.key_for(b"nik-hash-a").unwrap();
        let b = v.key_for(b"nik-hash-b").unwrap();
        assert_eq!(a, a2, "the same citizen gets the same key");
        assert_ne!(a.id(), b.id());
        assert_ne!(a.bytes, b.bytes);
        assert!(!a.id().windows(4).any(|w| b"nik-hash-a".windows(4).any(|x| x == w)), "id is not the hash");
        assert!(!format!("{a:?}").contains(&hex(&a.bytes)), "Debug hides the key");
        v.close().unwrap();
        assert!(matches!(v.key_for(b"nik-hash-a"), Err(VaultError::Closed)));
        drop(v);
        let v = Vault::open(dir.path(), kek(), NOW_MS).unwrap();
        assert_eq!(v.key_for(b"nik-hash-a").unwrap(), a, "survives a reopen");
        assert!(matches!(v.key_for(b""), Err(VaultError::BadNikHash)));
    }

    #[test]
    fn a_sealing_opens_only_for_its_case_and_event_and_untampered() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::open(dir.path(), kek(), NOW_MS).unwrap();
        let sealed = seal_case(&v, b"nik", tn(1), 7);
        let key = v.key_for(b"nik").unwrap();
        let plain = sealed.open(&key, &tn(1)).unwrap();
        assert_eq!(PersonalData::decode(&plain).unwrap(), data());
        assert!(!sealed.ciphertext.windows(4).any(|w| w == b"Siti"), "no name in the clear");
        // Moved to another case.
        assert!(matches!(sealed.open(&key, &tn(2)), Err(VaultError::Crypto)));
        // Attached to another event.
        let mut other_event = sealed.clone();
        other_event.event_id[0] ^= 1;
        assert!(matches!(other_event.open(&key, &tn(1)), Err(VaultError::Crypto)));
        // Any flipped bit of the ciphertext or tag.
        for i in [0, sealed.ciphertext.len() / 2, sealed.ciphertext.len() - 1] {
            let mut t = sealed.clone();
            t.ciphertext[i] ^= 0x01;
            assert!(matches!(t.open(&key, &tn(1)), Err(VaultError::Crypto)), "byte {i}");
        }
        let mut t = sealed.clone();
        t.nonce[0] ^= 1;
        assert!(matches!(t.open(&key, &tn(1)), Err(VaultError::Crypto)));
        // Another citizen's key.
        let other = v.key_for(b"other").unwrap();
        let mut wrong = sealed.clone();
        wrong.key_id = other.id();
        assert!(matches!(wrong.open(&other, &tn(1)), Err(VaultError::Crypto)));
        // Two sealings of the same data differ (fresh nonces).
        let again = key.seal(&tn(1), &[7; 16], &data().encode().unwrap()).unwrap();
        assert_ne!(again.nonce, sealed.nonce);
        assert_ne!(again.ciphertext, sealed.ciphertext);
    }

    #[test]
    fn a_case_is_sealed_again_with_a_choice_changed_until_its_key_is_destroyed() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::open(dir.path(), kek(), NOW_MS).unwrap();
        seal_case(&v, b"nik", tn(1), 7);
        let key = v.key_for(b"nik").unwrap();
        let changed = PersonalData { tanpa_notifikasi: false, ..data() };
        let again = key.seal(&tn(1), &[8; 16], &changed.encode().unwrap()).unwrap();
        assert_eq!(v.reseal(&tn(1), &again).unwrap(), Reseal::Done);
        drop(v);
        let v = Vault::open(dir.path(), kek(), NOW_MS).unwrap();
        let Some(CaseRecord::Sealed(k, s)) = v.case(&tn(1)).unwrap() else { panic!("sealed") };
        assert_eq!(PersonalData::decode(&s.open(&k, &tn(1)).unwrap()).unwrap(), changed, "survives a reopen");
        // Another citizen's key, an unknown case, an erased one.
        let other = v.key_for(b"other").unwrap();
        let wrong = other.seal(&tn(1), &[9; 16], &changed.encode().unwrap()).unwrap();
        assert!(matches!(v.reseal(&tn(1), &wrong), Err(VaultError::Crypto)));
        assert_eq!(v.reseal(&tn(2), &again).unwrap(), Reseal::Unknown);
        v.erase(&tn(1)).unwrap();
        assert_eq!(v.reseal(&tn(1), &again).unwrap(), Reseal::Erased);
        assert!(matches!(v.case(&tn(1)).unwrap(), Some(CaseRecord::Erased(_))));
    }

    #[test]
    fn records_survive_reopen_and_a_case_is_sealed_once() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::open(dir.path(), kek(), NOW_MS).unwrap();
        let sealed = seal_case(&v, b"nik", tn(1), 1);
        assert!(matches!(v.record(&tn(1), &sealed), Err(VaultError::AlreadySealed(_))));
        assert_eq!(v.case(&tn(2)).unwrap(), None);
        v.close().unwrap();
        drop(v);
        let v = Vault::open(dir.path(), kek(), NOW_MS).unwrap();
        match v.case(&tn(1)).unwrap() {
            Some(CaseRecord::Sealed(key, s)) => {
                assert_eq!(s, sealed);
                assert_eq!(PersonalData::decode(&s.open(&key, &tn(1)).unwrap()).unwrap(), data());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn erasure_destroys_the_key_for_every_case_of_the_citizen_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::open(dir.path(), kek(), NOW_MS).unwrap();
        let s1 = seal_case(&v, b"nik-a", tn(1), 1);
        let _ = seal_case(&v, b"nik-a", tn(3), 3);
        let _ = seal_case(&v, b"nik-b", tn(2), 2);
        let key_a = v.key_for(b"nik-a").unwrap();
        assert_eq!(v.erase(&tn(9)).unwrap(), None, "nothing sealed for that case");
        let e = v.erase(&tn(3)).unwrap().unwrap();
        assert_eq!(e, Erasure { key_id: key_a.id(), cases: vec![tn(1), tn(3)], destroyed_now: true });
        for c in [tn(1), tn(3)] {
            assert_eq!(v.case(&c).unwrap(), Some(CaseRecord::Erased(key_a.id())));
        }
        assert!(
            matches!(v.case(&tn(2)).unwrap(), Some(CaseRecord::Sealed(..))),
            "another citizen keeps theirs"
        );
        let again = v.erase(&tn(1)).unwrap().unwrap();
        assert_eq!(again, Erasure { destroyed_now: false, ..e.clone() }, "repeating changes nothing");
        v.close().unwrap();
        drop(v);

        let v = Vault::open(dir.path(), kek(), NOW_MS).unwrap();
        assert_eq!(v.case(&tn(1)).unwrap(), Some(CaseRecord::Erased(key_a.id())), "gone after reopen");
        // No live value of the database holds the key bytes or the ciphertext.
        v.read(|db, _| {
            for (k, val) in db.scan(b"", usize::MAX)? {
                assert!(!val.windows(16).any(|w| w == &key_a.bytes[..16]), "key bytes under {k:?}");
                assert!(!val.windows(16).any(|w| w == &s1.ciphertext[..16]), "ciphertext under {k:?}");
            }
            Ok(())
        })
        .unwrap();
        // The citizen coming back gets a new key.
        let fresh = v.key_for(b"nik-a").unwrap();
        assert_ne!(fresh.id(), key_a.id());
        assert_ne!(fresh.bytes, key_a.bytes);
    }

    /// Every 16-byte window of `secrets` found in the files under `dir`
    /// (live pages, freed pages, any file), as (file, secret index).
    fn scan_files(dir: &Path, secrets: &[Vec<u8>]) -> Vec<(String, usize)> {
        let mut windows = std::collections::HashMap::new();
        for (i, s) in secrets.iter().enumerate() {
            for w in s.windows(16) {
                windows.insert(w.to_vec(), i);
            }
        }
        let mut found = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let bytes = std::fs::read(&path).unwrap();
                for w in bytes.windows(16) {
                    if let Some(&i) = windows.get(w) {
                        found.push((path.display().to_string(), i));
                    }
                }
            }
        }
        found.sort();
        found.dedup();
        found
    }

    #[test]
    fn after_an_erasure_and_the_next_rotation_no_trace_of_the_key_is_in_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::open(dir.path(), kek(), NOW_MS).unwrap();
        let _ = seal_case(&v, b"nik-a", tn(1), 1);
        let _ = seal_case(&v, b"nik-a", tn(2), 2);
        let _ = seal_case(&v, b"nik-b", tn(3), 3);
        let (a, b) = (v.key_for(b"nik-a").unwrap(), v.key_for(b"nik-b").unwrap());
        // Every form of A's key the vault ever stored: the key, its wrapped
        // record, the wrapping key, and the wrapping key's stored form.
        let (a_wrapped, w_old, w_old_stored) = v
            .read(|db, w| {
                let rec = View::get(db, &prefixed(b'k', &[&a.id]))?.unwrap();
                let stored = View::get(db, WRAPPING_KEY_RECORD)?.unwrap();
                Ok((rec[..WRAPPED_KEY_BYTES].to_vec(), w.key.to_vec(), stored))
            })
            .unwrap();
        let b_wrapped = v.read(|db, _| Ok(View::get(db, &prefixed(b'k', &[&b.id]))?.unwrap())).unwrap();
        let secrets = vec![a.bytes.to_vec(), a_wrapped, w_old, w_old_stored[16..].to_vec()];
        v.erase(&tn(1)).unwrap().unwrap();
        assert!(!v.rotate_if_due(NOW_MS + 1).unwrap(), "not due before a day");
        let rotated_at = NOW_MS + (VAULT_KEY_ROTATION_S * 1000) as i64;
        assert!(v.rotate_if_due(rotated_at).unwrap(), "due after a day");
        assert_eq!(v.wrapping_epoch().unwrap(), (2, rotated_at));

        let found = scan_files(dir.path(), &secrets);
        assert!(found.is_empty(), "traces of the erased key after the rotation: {found:?}");
        // The scan does find what it looks for: B's live key, wrapped anew,
        // is in the file, and B's old wrapped form is not.
        let b_now = v.read(|db, _| Ok(View::get(db, &prefixed(b'k', &[&b.id]))?.unwrap())).unwrap();
        assert_ne!(b_now, b_wrapped, "wrapped again under the new wrapping key");
        assert_eq!(scan_files(dir.path(), &[b_now[..WRAPPED_KEY_BYTES].to_vec()]).len(), 1);
        assert!(scan_files(dir.path(), &[b.bytes.to_vec()]).is_empty(), "no key in the clear");
        assert!(!dir.path().join(VAULT_OLD_FILE).exists() && !dir.path().join(VAULT_NEXT_FILE).exists());
        // B lives on, A stays erased, across a reopen.
        v.close().unwrap();
        let v = Vault::open(dir.path(), kek(), NOW_MS).unwrap();
        assert_eq!(v.key_for(b"nik-b").unwrap(), b);
        assert_eq!(v.case(&tn(2)).unwrap(), Some(CaseRecord::Erased(a.id)));
        assert!(matches!(v.case(&tn(3)).unwrap(), Some(CaseRecord::Sealed(..))));
        v.close().unwrap();
        assert!(matches!(
            Vault::open(dir.path(), VaultKey::from_bytes([6; 32]), NOW_MS),
            Err(VaultError::WrongKey)
        ));
    }

    /// A vault directory on the simulated disk of the power-cut test.
    #[derive(Debug)]
    struct SimDir(mpp_agency_kit::testing::power_cut::SimDisk);

    impl VaultDir for SimDir {
        fn storage(&self, name: &str) -> std::io::Result<durable::Storage> {
            Ok(self.0.storage(name))
        }
        fn exists(&self, name: &str) -> std::io::Result<bool> {
            self.0.exists(name)
        }
        fn rename(&self, from: &str, to: &str) -> std::io::Result<()> {
            self.0.rename(from, to)
        }
        fn shred(&self, name: &str) -> std::io::Result<()> {
            self.0.remove(name)
        }
    }

    /// Power cuts this test makes (with the outbox's and the counter's, over
    /// 1,000).
    const VAULT_POWER_CUTS: u64 = 300;

    /// Citizens checked per cycle of the power-cut test, live and erased each.
    const POWER_CUT_SAMPLE_MAX: u64 = 8;

    /// Every live key of the model is the vault's, every erased one erased:
    /// all of them, or a sample drawn from `rng`.
    fn check(
        v: &Vault,
        at: &str,
        live: &std::collections::BTreeMap<u64, DataKey>,
        erased: &std::collections::BTreeMap<u64, KeyId>,
        mut rng: Option<&mut mpp_agency_kit::testing::power_cut::Rng>,
    ) {
        let mut pick = |len: usize| -> Vec<usize> {
            match rng.as_deref_mut() {
                None => (0..len).collect(),
                Some(r) if len > 0 => {
                    (0..POWER_CUT_SAMPLE_MAX).map(|_| r.below(len as u64) as usize).collect()
                }
                Some(_) => Vec::new(),
            }
        };
        for i in pick(live.len()) {
            let (n, key) = live.iter().nth(i).unwrap();
            let nik = format!("nik-{n}");
            assert_eq!(&v.key_for(nik.as_bytes()).unwrap(), key, "{at}: live key of citizen {n} lost");
        }
        for i in pick(erased.len()) {
            let (n, id) = erased.iter().nth(i).unwrap();
            assert_eq!(v.case(&tn(*n)).unwrap(), Some(CaseRecord::Erased(*id)), "{at}: citizen {n} back");
        }
    }

    #[test]
    fn live_keys_stay_and_erased_keys_stay_erased_across_power_cuts() {
        use mpp_agency_kit::testing::power_cut::{self, Rng, SimDisk};
        use std::collections::BTreeMap;
        let seed = power_cut::seed("vault");
        let mut rng = Rng::new(seed);
        let disk = SimDisk::new(rng.next_u64());
        // Citizen n: NIK hash "nik-n", one case with serial n.
        let (mut live, mut erased) = (BTreeMap::<u64, DataKey>::new(), BTreeMap::<u64, KeyId>::new());
        let (mut next, mut rotations, mut rotations_tried) = (1u64, 0u64, 0u64);
        for cycle in 0..VAULT_POWER_CUTS {
            let at = format!("seed {seed}, cycle {cycle}");
            let v = Vault::open_in(Arc::new(SimDir(disk.clone())), kek(), NOW_MS)
                .unwrap_or_else(|e| panic!("{at}: the vault does not reopen after a power cut: {e}"));
            // A sample each cycle (a lost key stays lost, so the full check
            // at the end finds what a sample missed).
            check(&v, &at, &live, &erased, Some(&mut rng));
            disk.arm(rng.below(60));
            for _ in 0..1 + rng.below(4) {
                // Rotations (a new file each) are the slow step: 1 in 16.
                let done = match rng.below(16) {
                    0..=9 => {
                        let n = next;
                        next += 1;
                        let key = v.key_for(format!("nik-{n}").as_bytes());
                        let sealed =
                            key.as_ref().ok().map(|k| k.seal(&tn(n), &[1; 16], b"\x01\0\x01a\0\0\0\0"));
                        match (key, sealed) {
                            (Ok(key), Some(Ok(s))) if v.record(&tn(n), &s).is_ok() => {
                                live.insert(n, key).is_none()
                            }
                            _ => false,
                        }
                    }
                    10..=14 => {
                        let Some((&n, key)) = live.iter().nth(rng.below(live.len() as u64) as usize) else {
                            continue;
                        };
                        let id = key.id();
                        match v.erase(&tn(n)) {
                            Ok(_) => {
                                live.remove(&n);
                                erased.insert(n, id);
                                true
                            }
                            // Unknown: erased or not. Either is allowed
                            // from here on, so the model forgets it.
                            Err(_) => {
                                live.remove(&n);
                                false
                            }
                        }
                    }
                    _ => {
                        rotations_tried += 1;
                        let ok = v.rotate(NOW_MS + cycle as i64).is_ok();
                        rotations += u64::from(ok);
                        ok
                    }
                };
                if !done {
                    break;
                }
            }
            disk.cut_now();
        }
        let v = Vault::open_in(Arc::new(SimDir(disk.clone())), kek(), NOW_MS).unwrap();
        check(&v, &format!("seed {seed}, at the end"), &live, &erased, None);
        let stats = disk.stats();
        println!(
            "vault power cuts: {} cuts ({} tearing a write), {} live keys, {} erased, {rotations} rotations \
             ({rotations_tried} tried: the rest cut short), seed {seed}",
            stats.cuts,
            stats.torn_writes,
            live.len(),
            erased.len()
        );
        assert!(stats.cuts >= VAULT_POWER_CUTS && rotations > 0 && !erased.is_empty() && !live.is_empty());
    }

    #[test]
    fn a_rotation_cut_short_is_finished_by_the_next_open() {
        for cut in ["after building the new file", "between the renames"] {
            let dir = tempfile::tempdir().unwrap();
            let v = Vault::open(dir.path(), kek(), NOW_MS).unwrap();
            let sealed = seal_case(&v, b"nik", tn(1), 1);
            v.close().unwrap();
            // Stage what a rotation leaves at `cut`: a complete new file
            // (a copy here) beside the current one, or only old and new.
            let (cur, next, old) = (
                dir.path().join(VAULT_FILE),
                dir.path().join(VAULT_NEXT_FILE),
                dir.path().join(VAULT_OLD_FILE),
            );
            std::fs::copy(&cur, &next).unwrap();
            if cut == "between the renames" {
                std::fs::rename(&cur, &old).unwrap();
            }
            let v = Vault::open(dir.path(), kek(), NOW_MS).unwrap();
            match v.case(&tn(1)).unwrap() {
                Some(CaseRecord::Sealed(_, s)) => assert_eq!(s, sealed, "{cut}"),
                other => panic!("{cut}: {other:?}"),
            }
            assert!(!next.exists() && !old.exists(), "{cut}: leftovers shredded");
        }
    }

    /// Writes a vault of the sled version: `live` sealed case 1 under a
    /// live key, `erased` sealed cases 2 and 3 under a key destroyed since.
    fn sled_vault(dir: &Path, live: &DataKey, erased: &DataKey) -> Sealed {
        let db = sled::open(dir).unwrap();
        let put = |k: Vec<u8>, v: &[u8]| {
            db.insert(k, v).unwrap();
        };
        let mut kv = live.bytes.to_vec();
        kv.extend_from_slice(b"nik-live");
        put(prefixed(b'k', &[&live.id]), &kv);
        put(prefixed(b'n', &[b"nik-live"]), &live.id);
        let sealed = live.seal(&tn(1), &[1; 16], &data().encode().unwrap()).unwrap();
        put(prefixed(b'c', &[tn(1).to_string().as_bytes()]), &sealed.encode());
        put(prefixed(b'x', &[&live.id, tn(1).to_string().as_bytes()]), b"");
        put(prefixed(b'e', &[&erased.id]), b"");
        for c in [tn(2), tn(3)] {
            put(prefixed(b'c', &[c.to_string().as_bytes()]), &erased.id);
            put(prefixed(b'x', &[&erased.id, c.to_string().as_bytes()]), b"");
        }
        db.flush().unwrap();
        sealed
    }

    #[test]
    fn a_sled_vault_is_carried_over_live_keys_live_and_erased_ones_erased() {
        let dir = tempfile::tempdir().unwrap();
        let live = DataKey { id: [1; KEY_ID_BYTES], bytes: [0xa1; DATA_KEY_BYTES] };
        let erased = DataKey { id: [2; KEY_ID_BYTES], bytes: [0xe2; DATA_KEY_BYTES] };
        let sealed = sled_vault(dir.path(), &live, &erased);
        let v = Vault::open(dir.path(), kek(), NOW_MS).unwrap();
        assert_eq!(v.key_for(b"nik-live").unwrap(), live, "the live key moved, under the same id");
        match v.case(&tn(1)).unwrap() {
            Some(CaseRecord::Sealed(key, s)) => {
                assert_eq!(s, sealed);
                assert_eq!(PersonalData::decode(&s.open(&key, &tn(1)).unwrap()).unwrap(), data());
            }
            other => panic!("{other:?}"),
        }
        for c in [tn(2), tn(3)] {
            assert_eq!(v.case(&c).unwrap(), Some(CaseRecord::Erased(erased.id)), "erased stays erased");
        }
        let again = v.erase(&tn(2)).unwrap().unwrap();
        assert_eq!(again, Erasure { key_id: erased.id, cases: vec![tn(2), tn(3)], destroyed_now: false });
        assert!(!durable::has_sled(dir.path()), "the sled files were moved");
        assert!(durable::has_sled(&dir.path().join(durable::SLED_ASIDE_DIR)), "and kept");
        v.close().unwrap();
        let v = Vault::open(dir.path(), kek(), NOW_MS).unwrap();
        assert_eq!(v.key_for(b"nik-live").unwrap(), live, "no second migration");
    }

    #[test]
    fn plaintext_round_trips_and_refuses_garbage() {
        let d = data();
        let b = d.encode().unwrap();
        assert_eq!(PersonalData::decode(&b).unwrap(), d);
        assert!(PersonalData::decode(&[]).is_err());
        assert!(PersonalData::decode(&[2, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(PersonalData::decode(&b[..b.len() - 1]).is_err());
        let mut long = b.clone();
        long.push(0);
        assert!(PersonalData::decode(&long).is_err());
        assert_eq!(format!("{d:?}"), "PersonalData { .. }");
        // A version 1 plaintext (before the notification choices): Bahasa
        // Indonesia, notifications on.
        let v1 = PersonalData::decode(b"\x01\0\x01a\0\0\0\0").unwrap();
        assert_eq!((v1.nama.as_str(), v1.bahasa, v1.tanpa_notifikasi), ("a", Bahasa::Id, false));
        assert!(PersonalData::decode(b"\x02\0\x01a\0\0\0\0\x02\0").is_err(), "an unknown language");
        let huge = PersonalData { nama: "a".repeat(PLAINTEXT_BYTES_MAX), ..d };
        assert!(matches!(huge.encode(), Err(VaultError::TooLarge { .. })));
    }

    #[test]
    fn a_key_seals_a_bounded_number_of_cases() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::open(dir.path(), kek(), NOW_MS).unwrap();
        let key = v.key_for(b"nik").unwrap();
        for serial in 1..=CASES_PER_DATA_KEY_MAX as u64 {
            let s = key.seal(&tn(serial), &[1; 16], b"\x01\0\x01a\0\0\0\0").unwrap();
            v.record(&tn(serial), &s).unwrap();
        }
        assert!(matches!(v.key_for(b"nik"), Err(VaultError::TooManyCases)));
        let e = v.erase(&tn(1)).unwrap().unwrap();
        assert_eq!(e.cases.len(), CASES_PER_DATA_KEY_MAX);
    }
}
