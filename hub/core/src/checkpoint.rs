//! The signed checkpoint: what the hub vouches for about its log at one tree
//! size, in the exact bytes its Ed25519 key signs, and in a text form for
//! people and auditors.
//!
//! Guarantee: the signed bytes are a pure function of the checkpoint's fields
//! and every field is in them, so a valid signature over them vouches for
//! every field; the text form holds every field too and has exactly one
//! accepted spelling per checkpoint, so reading it back gives the same signed
//! bytes.
//!
//! This module does no cryptography beyond SHA-256: signing and verifying
//! happen at the edge (ed25519-dalek), which hands in a closure. Keeping the
//! Ed25519 library out of the core keeps the core pure and lets an auditor's
//! tool plug in any implementation.
//!
//! # Fields and time
//!
//! `tree_size` is the log's `last_seq`, `root_hash` the Merkle root of the
//! entries `1..=tree_size` ([`crate::merkle`]), `head_hash` the chain hash of
//! entry `tree_size`, and `last_stream_seq` the JetStream sequence of the last
//! message recorded. There are two times, because "the time" of a checkpoint
//! means two different things:
//!
//! * `last_entry_time_ns`: the time of record of entry `tree_size` (its
//!   JetStream timestamp, Unix ns), 0 for the empty log. It is deterministic:
//!   two hubs that consumed the same stream agree on it, like on every other
//!   field above.
//! * `signed_at_ms`: the wall clock of the hub when it signed, Unix ms, read
//!   at the edge. It tells an auditor how fresh a checkpoint is (a hub that
//!   keeps signing the same size is alive but not ingesting), and it is the
//!   only field two honest hubs differ on.
//!
//! `key_id` names the signing key: the first 8 bytes of SHA-256 of the 32-byte
//! Ed25519 public key ([`KeyId::of`]).
//!
//! # Signed bytes, version 1
//!
//! ```text
//! [19]    domain tag "mpp-hub/checkpoint" 0x00   (CHECKPOINT_DOMAIN)
//! u8      format version = 1
//! u8+..   origin: length (1..=128), then ASCII 0x21..=0x7e
//! [8]     key_id
//! u64     tree_size
//! [32]    root_hash
//! [32]    head_hash
//! u64     last_stream_seq
//! i64     last_entry_time_ns
//! i64     signed_at_ms
//! ```
//!
//! # Signed bytes, version 2
//!
//! Version 1's fields with the format version 2, followed by the
//! projection commitment ([`ProjectionCommitment`]):
//!
//! ```text
//! ...     every field of version 1, format version = 2
//! u64     projected_through
//! [32]    projection digest
//! ```
//!
//! The store keeps a homomorphic multiset hash (LtHash16) of every stored
//! projection pair (cases, timeline chunks, standards, registry, event-id
//! index) incrementally, in the same atomic write as the pairs; the digest
//! is the hash of that state, and `projected_through` the log sequence the
//! stored projection describes (the store writes case values behind the
//! log, so it may be below `tree_size`). A copy of the store whose
//! projections were altered at rest no longer hashes to it
//! (`mpp_store::commitment`). Hubs sign version 2; version 1 checkpoints
//! (signed before the commitment existed) still decode and verify, and
//! re-encode to exactly their signed bytes.
//!
//! All integers are big-endian. The signature is Ed25519 (RFC 8032, pure)
//! over exactly these bytes. The stored form ([`SignedCheckpoint::encode`]) is
//! these bytes followed by the 64-byte signature.
//!
//! # Text form
//!
//! Modelled on the C2SP tlog-checkpoint and signed-note formats (origin line,
//! decimal size, base64 root, extension lines, a blank line, then an em-dash
//! signature line), but it is not a C2SP signed note: the signature covers
//! the binary signed bytes above, not the text, so a C2SP note verifier does
//! not accept it. The standard note is a second signature by the same key,
//! over the C2SP body ([`Checkpoint::note_body`], [`crate::note`]), kept in
//! [`SignedCheckpoint::note`] and written by [`SignedCheckpoint::to_note`]. Every line ends with `\n`; base64 is the standard alphabet
//! with padding (RFC 4648 §4); numbers are decimal without leading zeros.
//!
//! ```text
//! mpp-hub/jakarta-1                  origin
//! 1048576                            tree_size
//! 3q2+7w...=                         base64 root_hash
//! head 9Xk...=                       base64 head_hash
//! stream-seq 1050017                 last_stream_seq
//! entry-time-ns 1750000000123456789  last_entry_time_ns
//! signed-at-ms 1750000000500         signed_at_ms
//! projection 1048000 Zm9v...=        version 2 only: projected_through, base64 digest
//!                                    (empty line)
//! — mpp-hub/jakarta-1 AAEC...        em dash (U+2014), origin, base64(key_id || signature)
//! ```

use std::fmt;

use sha2::{Digest, Sha256};

use crate::log::Hash32;

/// Domain separation tag at the start of the signed bytes.
pub const CHECKPOINT_DOMAIN: &[u8] = b"mpp-hub/checkpoint\0";

/// Format version byte of the signed bytes.
pub const CHECKPOINT_FORMAT_V1: u8 = 1;

/// Format version byte of signed bytes that carry a projection commitment.
pub const CHECKPOINT_FORMAT_V2: u8 = 2;

/// Bytes the projection commitment adds to the signed bytes (version 2).
pub const PROJECTION_COMMITMENT_BYTES: usize = 8 + 32;

/// The origin of a hub's checkpoints is this prefix followed by its hub id.
pub const ORIGIN_PREFIX: &str = "mpp-hub/";

/// Longest origin, in bytes.
pub const ORIGIN_BYTES_MAX: usize = 128;

/// Length of an Ed25519 signature.
pub const SIGNATURE_BYTES: usize = 64;

/// Longest signed bytes (with the longest origin).
pub const SIGNED_BYTES_MAX: usize = CHECKPOINT_DOMAIN.len()
    + 1
    + 1
    + ORIGIN_BYTES_MAX
    + 8
    + 8
    + 32
    + 32
    + 8
    + 8
    + 8
    + PROJECTION_COMMITMENT_BYTES;

/// Longest text form accepted by [`SignedCheckpoint::parse_text`], in bytes.
pub const CHECKPOINT_TEXT_BYTES_MAX: usize = 1024;

/// The em dash that starts a signature line of the text form.
const SIGNATURE_LINE_PREFIX: &str = "\u{2014} ";

/// Names a signing key: the first 8 bytes of SHA-256 of its 32-byte Ed25519
/// public key. Displayed as 16 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    /// The key id of an Ed25519 public key.
    pub fn of(public_key: &[u8; 32]) -> KeyId {
        let digest: Hash32 = Sha256::digest(public_key).into();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        KeyId(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The name of the log a checkpoint is about: 1 to [`ORIGIN_BYTES_MAX`]
/// bytes of printable ASCII without spaces, `mpp-hub/<hub id>` by convention.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin(String);

/// Why a string is not an origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    /// Empty, or longer than [`ORIGIN_BYTES_MAX`].
    #[error("origin must be 1 to {ORIGIN_BYTES_MAX} bytes long")]
    Length,
    /// A byte outside printable ASCII (0x21..=0x7e).
    #[error("origin may hold only printable ASCII without spaces")]
    Character,
}

impl Origin {
    /// Checks `s` and wraps it.
    pub fn new(s: &str) -> Result<Origin, OriginError> {
        if s.is_empty() || s.len() > ORIGIN_BYTES_MAX {
            return Err(OriginError::Length);
        }
        if !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(OriginError::Character);
        }
        Ok(Origin(s.to_owned()))
    }

    /// The origin of the hub with this id: `mpp-hub/<hub_id>`.
    pub fn for_hub(hub_id: &str) -> Result<Origin, OriginError> {
        Origin::new(&format!("{ORIGIN_PREFIX}{hub_id}"))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the hub signs about its log. See the module docs for each field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Checkpoint {
    /// Which log.
    pub origin: Origin,
    /// Which key signs it.
    pub key_id: KeyId,
    /// Number of entries (the log's `last_seq`).
    pub tree_size: u64,
    /// Merkle root of entries `1..=tree_size`.
    pub root_hash: Hash32,
    /// Chain hash of entry `tree_size` (`GENESIS_HASH` when empty).
    pub head_hash: Hash32,
    /// JetStream sequence of the last message recorded.
    pub last_stream_seq: u64,
    /// Time of record of entry `tree_size`, Unix ns (deterministic).
    pub last_entry_time_ns: i64,
    /// The hub's wall clock when it signed, Unix ms (not deterministic).
    pub signed_at_ms: i64,
    /// The store's projection commitment when it signed (format version
    /// 2); `None` for version 1 checkpoints.
    pub projection: Option<ProjectionCommitment>,
}

/// What a version 2 checkpoint says about the hub's stored projections
/// (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProjectionCommitment {
    /// The last log sequence the stored projection describes.
    pub projected_through: u64,
    /// The hash of the store's multiset-hash state over every stored
    /// projection pair.
    pub digest: Hash32,
}

/// Why bytes or text do not decode to a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointDecodeError {
    /// The bytes end too early.
    #[error("checkpoint is truncated")]
    Truncated,
    /// Bytes left over after the last field.
    #[error("trailing bytes after the checkpoint")]
    Trailing,
    /// The bytes do not start with [`CHECKPOINT_DOMAIN`].
    #[error("not a checkpoint: wrong domain tag")]
    WrongDomain,
    /// Unknown format version.
    #[error("unknown checkpoint format version {0}")]
    UnknownFormat(u8),
    /// The origin is not a valid origin.
    #[error("bad origin: {0}")]
    Origin(#[from] OriginError),
    /// The text is longer than [`CHECKPOINT_TEXT_BYTES_MAX`].
    #[error("checkpoint text is longer than {CHECKPOINT_TEXT_BYTES_MAX} bytes")]
    TextTooLong,
    /// The text does not have the documented shape.
    #[error("malformed checkpoint text: {0}")]
    MalformedText(&'static str),
    /// The text holds a valid checkpoint but not in its one canonical spelling.
    #[error("checkpoint text is not in canonical form")]
    NonCanonical,
}

/// Why a signature does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The checkpoint names another key than the one offered.
    #[error("checkpoint is signed by key {found}, expected key {expected}")]
    KeyMismatch {
        /// The key id the verifier holds.
        expected: KeyId,
        /// The key id in the checkpoint.
        found: KeyId,
    },
    /// The signature does not verify under the key.
    #[error("checkpoint signature is invalid")]
    Invalid,
}

/// Why a later checkpoint cannot follow an earlier one of the same log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointOrderError {
    /// The two are about different logs.
    #[error("checkpoints are about different logs: {earlier} and {later}")]
    OriginChanged {
        /// The earlier origin.
        earlier: Origin,
        /// The later origin.
        later: Origin,
    },
    /// The later one has fewer entries, or an earlier stream sequence.
    #[error("log went backwards: size {earlier_size} then {later_size}, stream sequence {earlier_stream_seq} then {later_stream_seq}")]
    Rollback {
        /// Size of the earlier checkpoint.
        earlier_size: u64,
        /// Size of the later checkpoint.
        later_size: u64,
        /// Stream sequence of the earlier checkpoint.
        earlier_stream_seq: u64,
        /// Stream sequence of the later checkpoint.
        later_stream_seq: u64,
    },
    /// Same size, different content: the log was forked or rewritten.
    #[error("two different checkpoints for tree size {tree_size}")]
    Fork {
        /// The size both claim.
        tree_size: u64,
    },
}

impl Checkpoint {
    /// The exact bytes the hub signs (layout in the module docs).
    pub fn to_signed_bytes(&self) -> Vec<u8> {
        let origin = self.origin.as_str().as_bytes();
        let mut out = Vec::with_capacity(SIGNED_BYTES_MAX);
        out.extend_from_slice(CHECKPOINT_DOMAIN);
        out.push(if self.projection.is_some() { CHECKPOINT_FORMAT_V2 } else { CHECKPOINT_FORMAT_V1 });
        // An Origin is at most ORIGIN_BYTES_MAX (128) bytes long.
        out.push(origin.len() as u8);
        out.extend_from_slice(origin);
        out.extend_from_slice(&self.key_id.0);
        out.extend_from_slice(&self.tree_size.to_be_bytes());
        out.extend_from_slice(&self.root_hash);
        out.extend_from_slice(&self.head_hash);
        out.extend_from_slice(&self.last_stream_seq.to_be_bytes());
        out.extend_from_slice(&self.last_entry_time_ns.to_be_bytes());
        out.extend_from_slice(&self.signed_at_ms.to_be_bytes());
        if let Some(p) = &self.projection {
            out.extend_from_slice(&p.projected_through.to_be_bytes());
            out.extend_from_slice(&p.digest);
        }
        out
    }

    /// Decodes exactly the bytes of [`Checkpoint::to_signed_bytes`].
    pub fn from_signed_bytes(bytes: &[u8]) -> Result<Checkpoint, CheckpointDecodeError> {
        let (cp, used) = Self::decode_prefix(bytes)?;
        if used != bytes.len() {
            return Err(CheckpointDecodeError::Trailing);
        }
        Ok(cp)
    }

    fn decode_prefix(bytes: &[u8]) -> Result<(Checkpoint, usize), CheckpointDecodeError> {
        let mut r = Reader { buf: bytes, pos: 0 };
        if r.take(CHECKPOINT_DOMAIN.len())? != CHECKPOINT_DOMAIN {
            return Err(CheckpointDecodeError::WrongDomain);
        }
        let format = r.array::<1>()?[0];
        if format != CHECKPOINT_FORMAT_V1 && format != CHECKPOINT_FORMAT_V2 {
            return Err(CheckpointDecodeError::UnknownFormat(format));
        }
        let origin_len = r.array::<1>()?[0] as usize;
        let origin_bytes = r.take(origin_len)?;
        let origin_text = std::str::from_utf8(origin_bytes).map_err(|_| OriginError::Character)?;
        let mut cp = Checkpoint {
            origin: Origin::new(origin_text)?,
            key_id: KeyId(r.array()?),
            tree_size: u64::from_be_bytes(r.array()?),
            root_hash: r.array()?,
            head_hash: r.array()?,
            last_stream_seq: u64::from_be_bytes(r.array()?),
            last_entry_time_ns: i64::from_be_bytes(r.array()?),
            signed_at_ms: i64::from_be_bytes(r.array()?),
            projection: None,
        };
        if format == CHECKPOINT_FORMAT_V2 {
            cp.projection = Some(ProjectionCommitment {
                projected_through: u64::from_be_bytes(r.array()?),
                digest: r.array()?,
            });
        }
        Ok((cp, r.pos))
    }

    /// Signs the checkpoint with `signer`, which returns the Ed25519
    /// signature of the message it is given (the key whose id is `key_id`).
    pub fn sign(self, signer: impl FnOnce(&[u8]) -> [u8; SIGNATURE_BYTES]) -> SignedCheckpoint {
        let signature = signer(&self.to_signed_bytes());
        SignedCheckpoint { checkpoint: self, signature, note: None }
    }

    /// Signs the checkpoint and its C2SP note ([`Checkpoint::note_body`])
    /// with the same key: `note_key_hash` is
    /// [`crate::note::key_hash`]`(origin, public key)`.
    pub fn sign_with_note(
        self,
        note_key_hash: [u8; crate::note::KEY_HASH_BYTES],
        signer: impl Fn(&[u8]) -> [u8; SIGNATURE_BYTES],
    ) -> SignedCheckpoint {
        let note = NoteSeal { key_hash: note_key_hash, signature: signer(self.note_body().as_bytes()) };
        let signature = signer(&self.to_signed_bytes());
        SignedCheckpoint { checkpoint: self, signature, note: Some(note) }
    }

    /// The C2SP tlog-checkpoint body of this checkpoint: origin, tree size,
    /// base64 root hash ([`crate::note`]).
    pub fn note_body(&self) -> String {
        crate::note::checkpoint_body(self.origin.as_str(), self.tree_size, &self.root_hash)
    }

    /// Checks that `self` can follow `earlier` in the history of one log:
    /// same origin, no fewer entries, no earlier stream sequence, and, at the
    /// same size, the same root, head, stream sequence and entry time. Two
    /// checkpoints of different sizes still need a consistency proof
    /// ([`crate::merkle::verify_consistency`]) to show one extends the other.
    pub fn check_follows(&self, earlier: &Checkpoint) -> Result<(), CheckpointOrderError> {
        if self.origin != earlier.origin {
            return Err(CheckpointOrderError::OriginChanged {
                earlier: earlier.origin.clone(),
                later: self.origin.clone(),
            });
        }
        if self.tree_size < earlier.tree_size || self.last_stream_seq < earlier.last_stream_seq {
            return Err(CheckpointOrderError::Rollback {
                earlier_size: earlier.tree_size,
                later_size: self.tree_size,
                earlier_stream_seq: earlier.last_stream_seq,
                later_stream_seq: self.last_stream_seq,
            });
        }
        if self.tree_size == earlier.tree_size
            && (self.root_hash != earlier.root_hash
                || self.head_hash != earlier.head_hash
                || self.last_stream_seq != earlier.last_stream_seq
                || self.last_entry_time_ns != earlier.last_entry_time_ns)
        {
            return Err(CheckpointOrderError::Fork { tree_size: self.tree_size });
        }
        Ok(())
    }
}

/// The hub's Ed25519 signature of a checkpoint's C2SP note: over
/// [`Checkpoint::note_body`], by the checkpoint's key under the key name =
/// the origin ([`crate::note`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NoteSeal {
    /// [`crate::note::key_hash`] of the origin and the public key.
    pub key_hash: [u8; crate::note::KEY_HASH_BYTES],
    /// The signature of the note body.
    pub signature: [u8; SIGNATURE_BYTES],
}

/// Bytes a [`NoteSeal`] adds to the stored form.
pub const NOTE_SEAL_BYTES: usize = crate::note::KEY_HASH_BYTES + SIGNATURE_BYTES;

/// A checkpoint with its Ed25519 signature.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SignedCheckpoint {
    /// What is signed.
    pub checkpoint: Checkpoint,
    /// Ed25519 signature over [`Checkpoint::to_signed_bytes`].
    pub signature: [u8; SIGNATURE_BYTES],
    /// The signature of its C2SP note; `None` for checkpoints signed before
    /// hubs signed notes.
    pub note: Option<NoteSeal>,
}

impl SignedCheckpoint {
    /// Verifies the signature: the checkpoint must name `key_id`, and
    /// `verifier(message, signature)` (Ed25519 verification under the public
    /// key with that id; use a strict verifier) must accept the signed bytes.
    pub fn verify(
        &self,
        key_id: KeyId,
        verifier: impl FnOnce(&[u8], &[u8; SIGNATURE_BYTES]) -> bool,
    ) -> Result<(), SignatureError> {
        if self.checkpoint.key_id != key_id {
            return Err(SignatureError::KeyMismatch { expected: key_id, found: self.checkpoint.key_id });
        }
        if verifier(&self.checkpoint.to_signed_bytes(), &self.signature) {
            Ok(())
        } else {
            Err(SignatureError::Invalid)
        }
    }

    /// The stored form: the signed bytes followed by the signature, then,
    /// if there is one, the note's key hash and signature.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.checkpoint.to_signed_bytes();
        out.extend_from_slice(&self.signature);
        if let Some(n) = &self.note {
            out.extend_from_slice(&n.key_hash);
            out.extend_from_slice(&n.signature);
        }
        out
    }

    /// The checkpoint as a C2SP signed note (tlog-checkpoint), if its note
    /// was signed.
    pub fn to_note(&self) -> Option<String> {
        let seal = self.note?;
        let signature = crate::note::NoteSignature {
            name: self.checkpoint.origin.as_str().to_owned(),
            key_hash: seal.key_hash,
            signature: seal.signature.to_vec(),
        };
        Some(crate::note::render(&self.checkpoint.note_body(), &[signature]))
    }

    /// Decodes exactly the bytes of [`SignedCheckpoint::encode`]. Does not
    /// verify the signature.
    pub fn decode(bytes: &[u8]) -> Result<SignedCheckpoint, CheckpointDecodeError> {
        let (checkpoint, used) = Checkpoint::decode_prefix(bytes)?;
        let rest = &bytes[used..];
        if rest.len() < SIGNATURE_BYTES {
            return Err(CheckpointDecodeError::Truncated);
        }
        let (sig, seal) = rest.split_at(SIGNATURE_BYTES);
        let note = match seal.len() {
            0 => None,
            NOTE_SEAL_BYTES => {
                let (key_hash, signature) = seal.split_at(crate::note::KEY_HASH_BYTES);
                Some(NoteSeal {
                    key_hash: key_hash.try_into().map_err(|_| CheckpointDecodeError::Truncated)?,
                    signature: signature.try_into().map_err(|_| CheckpointDecodeError::Truncated)?,
                })
            }
            n if n < NOTE_SEAL_BYTES => return Err(CheckpointDecodeError::Truncated),
            _ => return Err(CheckpointDecodeError::Trailing),
        };
        let mut signature = [0u8; SIGNATURE_BYTES];
        signature.copy_from_slice(sig);
        Ok(SignedCheckpoint { checkpoint, signature, note })
    }

    /// The text form (layout in the module docs).
    pub fn to_text(&self) -> String {
        let c = &self.checkpoint;
        let mut key_and_sig = Vec::with_capacity(8 + SIGNATURE_BYTES);
        key_and_sig.extend_from_slice(&c.key_id.0);
        key_and_sig.extend_from_slice(&self.signature);
        let projection = match &c.projection {
            Some(p) => format!("projection {} {}\n", p.projected_through, base64_encode(&p.digest)),
            None => String::new(),
        };
        format!(
            "{origin}\n{size}\n{root}\nhead {head}\nstream-seq {stream}\nentry-time-ns {time}\n\
             signed-at-ms {signed}\n{projection}\n{SIGNATURE_LINE_PREFIX}{origin} {sig}\n",
            origin = c.origin,
            size = c.tree_size,
            root = base64_encode(&c.root_hash),
            head = base64_encode(&c.head_hash),
            stream = c.last_stream_seq,
            time = c.last_entry_time_ns,
            signed = c.signed_at_ms,
            sig = base64_encode(&key_and_sig),
        )
    }

    /// Parses the text form. Only the canonical spelling that
    /// [`SignedCheckpoint::to_text`] writes is accepted. Does not verify the
    /// signature.
    pub fn parse_text(text: &str) -> Result<SignedCheckpoint, CheckpointDecodeError> {
        use CheckpointDecodeError::MalformedText;
        if text.len() > CHECKPOINT_TEXT_BYTES_MAX {
            return Err(CheckpointDecodeError::TextTooLong);
        }
        let (body, signatures) = text.split_once("\n\n").ok_or(MalformedText("no empty line"))?;
        let mut lines = body.split('\n');
        let mut next = |what: &'static str| lines.next().ok_or(MalformedText(what));
        let origin = Origin::new(next("no origin line")?)?;
        let tree_size = next("no size line")?.parse::<u64>().map_err(|_| MalformedText("bad size"))?;
        let root_hash = hash_from_base64(next("no root line")?).ok_or(MalformedText("bad root hash"))?;
        let head_hash = field(next("no head line")?, "head ")
            .and_then(hash_from_base64)
            .ok_or(MalformedText("bad head line"))?;
        let last_stream_seq = field(next("no stream-seq line")?, "stream-seq ")
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or(MalformedText("bad stream-seq line"))?;
        let last_entry_time_ns = field(next("no entry-time-ns line")?, "entry-time-ns ")
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or(MalformedText("bad entry-time-ns line"))?;
        let signed_at_ms = field(next("no signed-at-ms line")?, "signed-at-ms ")
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or(MalformedText("bad signed-at-ms line"))?;
        let projection = match lines.next() {
            None => None,
            Some(line) => {
                let (through, digest) = field(line, "projection ")
                    .and_then(|v| v.split_once(' '))
                    .ok_or(MalformedText("bad projection line"))?;
                Some(ProjectionCommitment {
                    projected_through: through
                        .parse::<u64>()
                        .map_err(|_| MalformedText("bad projection line"))?,
                    digest: hash_from_base64(digest).ok_or(MalformedText("bad projection digest"))?,
                })
            }
        };
        if lines.next().is_some() {
            return Err(MalformedText("extra lines before the empty line"));
        }
        let sig_line = signatures
            .strip_suffix('\n')
            .filter(|l| !l.contains('\n'))
            .ok_or(MalformedText("expected exactly one signature line"))?;
        let rest = field(sig_line, SIGNATURE_LINE_PREFIX).ok_or(MalformedText("bad signature line"))?;
        let (name, sig_b64) = rest.split_once(' ').ok_or(MalformedText("bad signature line"))?;
        if name != origin.as_str() {
            return Err(MalformedText("signature line names another origin"));
        }
        let key_and_sig = base64_decode(sig_b64)
            .filter(|b| b.len() == 8 + SIGNATURE_BYTES)
            .ok_or(MalformedText("bad signature"))?;
        let mut key_id = [0u8; 8];
        key_id.copy_from_slice(&key_and_sig[..8]);
        let mut signature = [0u8; SIGNATURE_BYTES];
        signature.copy_from_slice(&key_and_sig[8..]);
        let signed = SignedCheckpoint {
            checkpoint: Checkpoint {
                origin,
                key_id: KeyId(key_id),
                tree_size,
                root_hash,
                head_hash,
                last_stream_seq,
                last_entry_time_ns,
                signed_at_ms,
                projection,
            },
            signature,
            // The text form carries no note signature (SignedCheckpoint::to_note
            // is the note form).
            note: None,
        };
        // One spelling per checkpoint: "+1", "007", other base64 padding bits
        // and the like are rejected here.
        if signed.to_text() != text {
            return Err(CheckpointDecodeError::NonCanonical);
        }
        Ok(signed)
    }
}

/// The value after `name` on a line that must start with it.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.strip_prefix(name)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CheckpointDecodeError> {
        let end = self.pos.checked_add(n).ok_or(CheckpointDecodeError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(CheckpointDecodeError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CheckpointDecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
}

use crate::base64::{decode as base64_decode, encode as base64_encode};

fn hash_from_base64(text: &str) -> Option<Hash32> {
    base64_decode(text)?.try_into().ok()
}
