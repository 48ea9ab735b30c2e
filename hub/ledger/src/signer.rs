//! The hub's checkpoint signing key, and the policy that decides when the
//! writer signs a checkpoint of its log.
//!
//! # Key files
//!
//! On first start the hub creates an Ed25519 key (RFC 8032) from the
//! operating system's random source, in `<data-dir>/keys/`:
//!
//! ```text
//! keys/                    directory, mode 0700
//! keys/checkpoint.ed25519  the 32-byte private key seed as 64 lowercase hex
//!                          digits and a newline; mode 0600
//! keys/checkpoint.pub      the 32-byte public key as 64 lowercase hex digits
//!                          and a newline; mode 0644
//! ```
//!
//! Both are plain hex so that any Ed25519 implementation can use them (a
//! seed and a public key are the raw forms RFC 8032 defines). The private
//! key file is created with `O_EXCL` and mode 0600 from the start, never
//! widened; an existing one that is readable, writable or executable by its
//! group or others is refused, and so the hub does not start. The public key
//! file is rewritten from the private key when missing, and a public key file
//! that does not match the private key is refused. `mpp-hub
//! export-public-key --data-dir DIR` prints the public key; the checkpoints'
//! `key_id` is the first 8 bytes of its SHA-256
//! ([`mpp_core::checkpoint::KeyId`]).
//!
//! Ed25519 comes from `ring` (already the hub's TLS-grade crypto dependency),
//! not `ed25519-dalek`: one audited implementation instead of two. Signing is
//! deterministic (RFC 8032), so only `signed_at_ms` differs between two hubs
//! signing the same log with the same key.
//!
//! # Policy
//!
//! [`Checkpointer`] runs on the ledger's writer thread. After every commit,
//! and on a timer tick, it signs a checkpoint of the ledger's head when the
//! tree grew since the last checkpoint and either `every_entries` entries
//! were added or `every_ms` milliseconds passed since the last checkpoint,
//! whichever comes first, then stores it ([`Store::put_checkpoint`]).

use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mpp_core::checkpoint::ProjectionCommitment;
use mpp_core::checkpoint::{Checkpoint, KeyId, Origin, SignedCheckpoint, SIGNATURE_BYTES};
use mpp_core::log::Hash32;
use mpp_store::{Store, StoreError};
use ring::rand::SecureRandom as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use tracing::{debug, info};

use crate::ledger::Ledger;

/// The directory of the hub's keys, under the data directory.
pub const KEYS_DIR: &str = "keys";

/// The private key file, under [`KEYS_DIR`].
pub const PRIVATE_KEY_FILE: &str = "checkpoint.ed25519";

/// The public key file, under [`KEYS_DIR`].
pub const PUBLIC_KEY_FILE: &str = "checkpoint.pub";

/// Largest key file read, in bytes (a key file is 65 bytes).
pub const KEY_FILE_BYTES_MAX: u64 = 1024;

/// Default `--checkpoint-every-entries`.
pub const CHECKPOINT_EVERY_ENTRIES_DEFAULT: u64 = 1000;

/// Default `--checkpoint-every-ms`.
pub const CHECKPOINT_EVERY_MS_DEFAULT: u64 = 10_000;

/// Default `--hub-id` (the checkpoints' origin is `mpp-hub/<hub id>`).
pub const HUB_ID_DEFAULT: &str = "mpp-hub";

/// Why the signing key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The private key file may be read by others than its owner.
    #[error(
        "{path} has mode {mode:04o}: a private key must be readable by its owner only (chmod 600 it, \
         and consider the key exposed)"
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file does not hold 64 hex digits and a newline.
    #[error("{path} does not hold a 32-byte key as 64 hex digits")]
    Malformed {
        /// The file.
        path: PathBuf,
    },
    /// The public key file does not belong to the private key.
    #[error("{path} does not match the private key next to it")]
    PublicKeyMismatch {
        /// The public key file.
        path: PathBuf,
    },
    /// The operating system's random source failed.
    #[error("the operating system's random source failed")]
    Random,
    /// The seed is not a usable Ed25519 key.
    #[error("{path} is not a usable Ed25519 key")]
    Rejected {
        /// The file.
        path: PathBuf,
    },
}

/// The hub's signing key and the origin it signs for.
pub struct Signer {
    key: Ed25519KeyPair,
    public_key: [u8; 32],
    key_id: KeyId,
    origin: Origin,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("Signer")
            .field("key_id", &self.key_id.to_string())
            .field("origin", &self.origin)
            .finish()
    }
}

/// `<data_dir>/keys/checkpoint.ed25519`.
pub fn private_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEYS_DIR).join(PRIVATE_KEY_FILE)
}

/// `<data_dir>/keys/checkpoint.pub`.
pub fn public_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEYS_DIR).join(PUBLIC_KEY_FILE)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io { path: path.to_owned(), source }
}

/// Parses 64 hex digits (either case), surrounded by optional whitespace.
pub fn parse_key_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text.trim()).ok()?;
    bytes.try_into().ok()
}

/// Reads a key file of at most [`KEY_FILE_BYTES_MAX`] bytes.
fn read_key_file(path: &Path) -> Result<[u8; 32], KeyError> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut text = String::new();
    file.take(KEY_FILE_BYTES_MAX)
        .read_to_string(&mut text)
        .map_err(|_| KeyError::Malformed { path: path.to_owned() })?;
    parse_key_hex(&text).ok_or_else(|| KeyError::Malformed { path: path.to_owned() })
}

/// Reads the public key from `<data_dir>/keys/checkpoint.pub` (what
/// `mpp-hub export-public-key` prints).
pub fn read_public_key(data_dir: &Path) -> Result<[u8; 32], KeyError> {
    read_key_file(&public_key_path(data_dir))
}

/// Writes `contents` to a new file `path` with `mode`, durably; fails if the
/// file exists.
fn create_file(path: &Path, mode: u32, contents: &[u8]) -> Result<(), KeyError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io_err(path))?;
    file.write_all(contents).and_then(|()| file.sync_all()).map_err(io_err(path))
}

impl Signer {
    /// Loads the key from `<data_dir>/keys/`, creating it on first start (see
    /// the module docs), to sign checkpoints for `origin`.
    pub fn load_or_create(data_dir: &Path, origin: Origin) -> Result<Self, KeyError> {
        let dir = data_dir.join(KEYS_DIR);
        let private = private_key_path(data_dir);
        let public = public_key_path(data_dir);
        if !dir.exists() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(io_err(&dir))?;
        }
        if !private.exists() {
            let mut seed = [0u8; 32];
            ring::rand::SystemRandom::new().fill(&mut seed).map_err(|_| KeyError::Random)?;
            // A public key file left from an earlier key would be refused
            // below as a mismatch; it cannot be right for a new key.
            create_file(&private, 0o600, format!("{}\n", hex::encode(seed)).as_bytes())?;
            info!(path = %private.display(), "Checkpoint signing key created");
        }
        let meta = std::fs::metadata(&private).map_err(io_err(&private))?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::TooOpen { path: private, mode });
        }
        let seed = read_key_file(&private)?;
        let signer = Signer::from_seed(&seed, origin).ok_or(KeyError::Rejected { path: private })?;
        if public.exists() {
            if read_key_file(&public)? != signer.public_key {
                return Err(KeyError::PublicKeyMismatch { path: public });
            }
        } else {
            create_file(&public, 0o644, format!("{}\n", hex::encode(signer.public_key)).as_bytes())?;
        }
        debug!(key_id = %signer.key_id, origin = %signer.origin, "Checkpoint signing key loaded");
        Ok(signer)
    }

    /// A signer from a 32-byte seed (tests and tools); `None` if the seed is
    /// not a usable key.
    pub fn from_seed(seed: &[u8; 32], origin: Origin) -> Option<Self> {
        let key = Ed25519KeyPair::from_seed_unchecked(seed).ok()?;
        let public_key: [u8; 32] = key.public_key().as_ref().try_into().ok()?;
        Some(Signer { key, public_key, key_id: KeyId::of(&public_key), origin })
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// The key's id.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The origin the checkpoints name.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Signs a checkpoint of the log at `tree_size` (see
    /// [`mpp_core::checkpoint`] for the fields), and its C2SP note
    /// ([`mpp_core::note`]) under the key name = the origin.
    pub fn sign(&self, fields: CheckpointFields, signed_at_ms: i64) -> SignedCheckpoint {
        Checkpoint {
            origin: self.origin.clone(),
            key_id: self.key_id,
            tree_size: fields.tree_size,
            root_hash: fields.root_hash,
            head_hash: fields.head_hash,
            last_stream_seq: fields.last_stream_seq,
            last_entry_time_ns: fields.last_entry_time_ns,
            signed_at_ms,
            projection: fields.projection,
        }
        .sign_with_note(mpp_core::note::key_hash(self.origin.as_str(), &self.public_key), |msg| {
            let sig = self.key.sign(msg);
            let mut out = [0u8; SIGNATURE_BYTES];
            // An Ed25519 signature is always 64 bytes.
            out.copy_from_slice(sig.as_ref());
            out
        })
    }
}

/// The deterministic fields of a checkpoint: everything but the origin, key
/// and signing time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointFields {
    /// Number of entries.
    pub tree_size: u64,
    /// Merkle root of entries `1..=tree_size`.
    pub root_hash: Hash32,
    /// Chain hash of entry `tree_size`.
    pub head_hash: Hash32,
    /// JetStream sequence of entry `tree_size`.
    pub last_stream_seq: u64,
    /// Time of record of entry `tree_size`, Unix ns.
    pub last_entry_time_ns: i64,
    /// The store's projection commitment (format version 2), `None` for a
    /// store that keeps none.
    pub projection: Option<ProjectionCommitment>,
}

impl CheckpointFields {
    /// The fields of the ledger's head (reads the last entry for its time).
    pub fn of_ledger<S: Store>(ledger: &Ledger<S>) -> Result<Self, StoreError> {
        let head = ledger.head();
        let last_entry_time_ns = match head.last_seq {
            0 => 0,
            seq => {
                ledger
                    .store()
                    .entry(seq)?
                    .ok_or(StoreError::BeyondHead { seq, last_seq: head.last_seq })?
                    .stream_time_ns
            }
        };
        Ok(CheckpointFields {
            tree_size: head.last_seq,
            root_hash: ledger.frontier().root(),
            head_hash: head.head_hash,
            last_stream_seq: head.last_stream_seq,
            last_entry_time_ns,
            projection: ledger.store().projection_commitment()?,
        })
    }
}

/// When to sign: every `every_entries` entries or `every_ms` milliseconds,
/// whichever comes first, and only when the tree grew.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// Entries since the last checkpoint that trigger one (at least 1).
    pub every_entries: u64,
    /// Milliseconds since the last checkpoint that trigger one (if the tree grew).
    pub every_ms: u64,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        CheckpointPolicy {
            every_entries: CHECKPOINT_EVERY_ENTRIES_DEFAULT,
            every_ms: CHECKPOINT_EVERY_MS_DEFAULT,
        }
    }
}

impl CheckpointPolicy {
    /// How often the serve loop should offer a timer tick: a quarter of
    /// `every_ms`, between 50 ms and 1 s.
    pub fn tick_interval(&self) -> Duration {
        Duration::from_millis((self.every_ms / 4).clamp(50, 1000))
    }
}

/// The wall clock for `signed_at_ms`, Unix ms.
pub type WallClock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Signs and stores checkpoints of a ledger by its [`CheckpointPolicy`]
/// (see the module docs). Lives on the writer thread.
pub struct Checkpointer {
    signer: Arc<Signer>,
    policy: CheckpointPolicy,
    wall_ms: WallClock,
    /// Tree size of the last checkpoint stored.
    last_size: u64,
    /// When the last checkpoint was stored (or the checkpointer started).
    last_at: Instant,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer")
            .field("signer", &self.signer)
            .field("policy", &self.policy)
            .field("last_size", &self.last_size)
            .finish_non_exhaustive()
    }
}

impl Checkpointer {
    /// A checkpointer that continues after the latest checkpoint in `store`.
    pub fn new<S: Store>(
        signer: Arc<Signer>,
        policy: CheckpointPolicy,
        wall_ms: WallClock,
        store: &S,
    ) -> Result<Self, StoreError> {
        let last_size = store.latest_checkpoint()?.map_or(0, |c| c.checkpoint.tree_size);
        Ok(Checkpointer { signer, policy, wall_ms, last_size, last_at: Instant::now() })
    }

    /// The signer.
    pub fn signer(&self) -> &Arc<Signer> {
        &self.signer
    }

    /// Signs and stores a checkpoint of the ledger's head if the policy says
    /// so at `now`; returns it. A checkpoint is never signed for a tree
    /// that did not grow since the last one.
    pub fn maybe_checkpoint<S: Store>(
        &mut self,
        ledger: &Ledger<S>,
        now: Instant,
    ) -> Result<Option<SignedCheckpoint>, StoreError> {
        let size = ledger.head().last_seq;
        if size <= self.last_size {
            return Ok(None);
        }
        let due_by_entries = size - self.last_size >= self.policy.every_entries.max(1);
        let due_by_time =
            now.saturating_duration_since(self.last_at) >= Duration::from_millis(self.policy.every_ms);
        if !(due_by_entries || due_by_time) {
            return Ok(None);
        }
        self.force(ledger, now).map(Some)
    }

    /// Signs and stores a checkpoint of the ledger's head if the tree grew
    /// since the last one, or if the store's projection commitment is not
    /// the latest checkpoint's (the held-back case values were written
    /// since: the same tree size is signed again, and replaces it), whatever
    /// the time. The writer calls it when it stops, after writing the
    /// held-back case values, so the latest checkpoint signs the projection
    /// a copy of the stopped store holds (`mpp-hub admin bootstrap`).
    pub fn finish<S: Store>(
        &mut self,
        ledger: &Ledger<S>,
        now: Instant,
    ) -> Result<Option<SignedCheckpoint>, StoreError> {
        if ledger.head().last_seq <= self.last_size {
            let current = ledger.store().projection_commitment()?;
            let signed = ledger.store().latest_checkpoint()?.and_then(|c| c.checkpoint.projection);
            if current.is_none() || current == signed {
                return Ok(None);
            }
        }
        self.force(ledger, now).map(Some)
    }

    fn force<S: Store>(&mut self, ledger: &Ledger<S>, now: Instant) -> Result<SignedCheckpoint, StoreError> {
        let fields = CheckpointFields::of_ledger(ledger)?;
        let cp = self.signer.sign(fields, (self.wall_ms)());
        ledger.store().put_checkpoint(&cp)?;
        self.last_size = fields.tree_size;
        self.last_at = now;
        debug!(tree_size = fields.tree_size, "Checkpoint signed");
        Ok(cp)
    }
}
