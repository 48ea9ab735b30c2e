//! The log entry and its canonical encoding.
//!
//! Guarantee: an entry's bytes are a pure function of its fields, and its
//! hash commits to every field and to the previous entry's hash, so changing,
//! removing or reordering any entry changes every later hash.
//!
//! Canonical encoding, version 1 (all integers big-endian):
//!
//! ```text
//! u8      format version = 1
//! u64     seq               dense hub sequence, from 1
//! u64     stream_seq        JetStream stream sequence
//! i64     stream_time_ns    JetStream timestamp, Unix ns (time of record)
//! u8      verdict           1 accepted, 2 rejected, 3 duplicate
//! u16+..  reason_code       ASCII, empty when accepted (but for the note of held
//!                           applications an accepted entry resolved, mpp_core::hold)
//! u16+..  detail            UTF-8, at most limits::DETAIL_BYTES_MAX
//! u16+..  subject           UTF-8, at most limits::SUBJECT_BYTES_MAX
//! u32+..  payload           the message bytes as received
//! [32]    prev_hash         hash of entry seq-1, zeros for seq 1
//! ```
//!
//! Version 2 is the encoding of an operator's redrive (see
//! [`crate::redrive`]): version 1's fields with the format byte 2, followed,
//! after `prev_hash`, by
//!
//! ```text
//! u64     redrive_of        seq of the rejected entry the operator redrove
//! u16+..  operator          ASCII, the operator's id, at most redrive::OPERATOR_ID_BYTES_MAX
//! ```
//!
//! Every other entry is written in version 1, so a log from before
//! version 2 existed replays byte for byte.
//!
//! `hash = SHA-256("mpp-hub/log-entry/v1" || 0x00 || canonical bytes)` in
//! both versions (the format byte, first of the canonical bytes, tells
//! them apart). The stored record is the canonical bytes followed by the
//! 32-byte hash.

use sha2::{Digest, Sha256};

use crate::limits;
use crate::reason::ReasonCode;

/// Where the entry being applied sits in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMeta {
    /// Hub log sequence.
    pub seq: u64,
    /// Time of record (the JetStream timestamp), Unix ms.
    pub recorded_at_ms: i64,
}

/// Format version byte of the canonical encoding.
pub const ENTRY_FORMAT_V1: u8 = 1;

/// Format version byte of a redriven entry's canonical encoding.
pub const ENTRY_FORMAT_V2: u8 = 2;

/// Domain separation tag of the entry hash.
pub const ENTRY_HASH_DOMAIN: &[u8] = b"mpp-hub/log-entry/v1\0";

/// A 32-byte SHA-256 digest.
pub type Hash32 = [u8; 32];

/// The hash before the first entry.
pub const GENESIS_HASH: Hash32 = [0u8; 32];

/// What the hub decided about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Applied to the projections.
    Accepted,
    /// Recorded only; the reason code says why.
    Rejected,
    /// Same event id as an earlier entry; recorded only.
    Duplicate,
}

impl Verdict {
    /// The wire byte.
    pub fn as_u8(self) -> u8 {
        match self {
            Verdict::Accepted => 1,
            Verdict::Rejected => 2,
            Verdict::Duplicate => 3,
        }
    }

    /// From the wire byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(Verdict::Accepted),
            2 => Some(Verdict::Rejected),
            3 => Some(Verdict::Duplicate),
            _ => None,
        }
    }

    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accepted => "accepted",
            Verdict::Rejected => "rejected",
            Verdict::Duplicate => "duplicate",
        }
    }
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Dense hub sequence, from 1.
    pub seq: u64,
    /// JetStream stream sequence.
    pub stream_seq: u64,
    /// JetStream timestamp, Unix ns.
    pub stream_time_ns: i64,
    /// The verdict.
    pub verdict: Verdict,
    /// Reason code (`None` when accepted).
    pub reason: Option<ReasonCode>,
    /// Deterministic detail of the reason.
    pub detail: String,
    /// The NATS subject (truncated to `limits::SUBJECT_BYTES_MAX` bytes at a char boundary).
    pub subject: String,
    /// The payload as received.
    pub payload: Vec<u8>,
    /// Hash of the previous entry.
    pub prev_hash: Hash32,
    /// The operator's redrive this entry records (format version 2), or
    /// `None`: the participant's own message (version 1).
    pub redrive: Option<Redrive>,
    /// Hash of this entry.
    pub hash: Hash32,
}

/// An operator's redrive of a rejected entry, as the log records it: the
/// operator is the actor of the entry, the participant's payload (and its
/// signature) is kept byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Redrive {
    /// Seq of the rejected entry redriven (always below the entry's own).
    pub of_seq: u64,
    /// The operator who asked for it (their token's client id).
    pub operator: String,
}

/// Why stored bytes do not decode to an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryDecodeError {
    /// Too short, or a length runs past the end.
    #[error("entry is truncated")]
    Truncated,
    /// Unknown format version.
    #[error("unknown entry format version {0}")]
    UnknownFormat(u8),
    /// Unknown verdict byte.
    #[error("unknown verdict byte {0}")]
    UnknownVerdict(u8),
    /// The reason code is not one this build knows.
    #[error("unknown reason code")]
    UnknownReason,
    /// A text field is not UTF-8.
    #[error("text field is not UTF-8")]
    NotUtf8,
    /// Bytes left over after the hash.
    #[error("trailing bytes after the entry")]
    Trailing,
    /// The stored hash does not match the recomputed one.
    #[error("stored hash does not match the entry")]
    HashMismatch,
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl LogEntry {
    /// Builds an entry and computes its hash. Subject and detail are
    /// truncated to their limits so the encoding always fits its length fields.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        seq: u64,
        stream_seq: u64,
        stream_time_ns: i64,
        verdict: Verdict,
        reason: Option<ReasonCode>,
        detail: &str,
        subject: &str,
        payload: Vec<u8>,
        prev_hash: Hash32,
    ) -> Self {
        let mut e = LogEntry {
            seq,
            stream_seq,
            stream_time_ns,
            verdict,
            reason,
            detail: truncate_utf8(detail, limits::DETAIL_BYTES_MAX).to_owned(),
            subject: truncate_utf8(subject, limits::SUBJECT_BYTES_MAX).to_owned(),
            payload,
            prev_hash,
            redrive: None,
            hash: GENESIS_HASH,
        };
        e.rehash();
        e
    }

    /// This entry as the record of an operator's `redrive` (format version
    /// 2), its hash recomputed; `None` leaves it as it is. The operator id
    /// is truncated to [`redrive::OPERATOR_ID_BYTES_MAX`] like the other
    /// text fields.
    ///
    /// [`redrive::OPERATOR_ID_BYTES_MAX`]: crate::limits::OPERATOR_ID_BYTES_MAX
    pub fn with_redrive(mut self, redrive: Option<Redrive>) -> Self {
        if let Some(mut r) = redrive {
            r.operator = truncate_utf8(&r.operator, limits::OPERATOR_ID_BYTES_MAX).to_owned();
            self.redrive = Some(r);
            self.rehash();
        }
        self
    }

    fn rehash(&mut self) {
        let mut buf = Vec::with_capacity(self.canonical_len());
        self.write_canonical(&mut buf);
        self.hash = hash_canonical(&buf);
    }

    /// Time of record in Unix milliseconds.
    pub fn recorded_at_ms(&self) -> i64 {
        self.stream_time_ns.div_euclid(1_000_000)
    }

    fn canonical_len(&self) -> usize {
        1 + 8
            + 8
            + 8
            + 1
            + 2
            + self.reason.map_or(0, |r| r.as_str().len())
            + 2
            + self.detail.len()
            + 2
            + self.subject.len()
            + 4
            + self.payload.len()
            + 32
            + self.redrive.as_ref().map_or(0, |r| 8 + 2 + r.operator.len())
    }

    /// Appends the canonical encoding (without the hash) to `out`.
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        let reason = self.reason.map_or("", |r| r.as_str());
        out.push(if self.redrive.is_some() { ENTRY_FORMAT_V2 } else { ENTRY_FORMAT_V1 });
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.stream_seq.to_be_bytes());
        out.extend_from_slice(&self.stream_time_ns.to_be_bytes());
        out.push(self.verdict.as_u8());
        for s in [reason, &self.detail, &self.subject] {
            // Lengths are bounded by the limits enforced in `new`.
            out.extend_from_slice(&(s.len() as u16).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        out.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.payload);
        out.extend_from_slice(&self.prev_hash);
        if let Some(r) = &self.redrive {
            out.extend_from_slice(&r.of_seq.to_be_bytes());
            // Bounded by `with_redrive`.
            out.extend_from_slice(&(r.operator.len() as u16).to_be_bytes());
            out.extend_from_slice(r.operator.as_bytes());
        }
    }

    /// Appends the stored record (canonical bytes + hash) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.canonical_len() + 32);
        self.write_canonical(out);
        out.extend_from_slice(&self.hash);
    }

    /// The stored record.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Decodes one stored record from the front of `buf`, returning it and
    /// the number of bytes used. Checks the hash against the content.
    pub fn decode_prefix(buf: &[u8]) -> Result<(Self, usize), EntryDecodeError> {
        let mut r = Reader { buf, pos: 0 };
        let format = r.u8()?;
        if format != ENTRY_FORMAT_V1 && format != ENTRY_FORMAT_V2 {
            return Err(EntryDecodeError::UnknownFormat(format));
        }
        let seq = r.u64()?;
        let stream_seq = r.u64()?;
        let stream_time_ns = r.u64()? as i64;
        let v = r.u8()?;
        let verdict = Verdict::from_u8(v).ok_or(EntryDecodeError::UnknownVerdict(v))?;
        let reason_text = r.str16()?;
        let reason = if reason_text.is_empty() {
            None
        } else {
            Some(ReasonCode::from_code(reason_text).ok_or(EntryDecodeError::UnknownReason)?)
        };
        let detail = r.str16()?.to_owned();
        let subject = r.str16()?.to_owned();
        let len = r.u32()? as usize;
        let payload = r.take(len)?.to_vec();
        let prev_hash = r.hash()?;
        let redrive = if format == ENTRY_FORMAT_V2 {
            let of_seq = r.u64()?;
            Some(Redrive { of_seq, operator: r.str16()?.to_owned() })
        } else {
            None
        };
        let canonical_end = r.pos;
        let hash = r.hash()?;
        if hash_canonical(&buf[..canonical_end]) != hash {
            return Err(EntryDecodeError::HashMismatch);
        }
        let entry = LogEntry {
            seq,
            stream_seq,
            stream_time_ns,
            verdict,
            reason,
            detail,
            subject,
            payload,
            prev_hash,
            redrive,
            hash,
        };
        Ok((entry, r.pos))
    }

    /// Decodes exactly one stored record.
    pub fn decode(buf: &[u8]) -> Result<Self, EntryDecodeError> {
        let (e, used) = Self::decode_prefix(buf)?;
        if used != buf.len() {
            return Err(EntryDecodeError::Trailing);
        }
        Ok(e)
    }
}

/// The entry hash over canonical bytes.
pub fn hash_canonical(canonical: &[u8]) -> Hash32 {
    let mut h = Sha256::new();
    h.update(ENTRY_HASH_DOMAIN);
    h.update(canonical);
    h.finalize().into()
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EntryDecodeError> {
        let end = self.pos.checked_add(n).ok_or(EntryDecodeError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(EntryDecodeError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, EntryDecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, EntryDecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, EntryDecodeError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(a))
    }
    fn u64(&mut self) -> Result<u64, EntryDecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    fn hash(&mut self) -> Result<Hash32, EntryDecodeError> {
        let mut a = [0u8; 32];
        a.copy_from_slice(self.take(32)?);
        Ok(a)
    }
    fn str16(&mut self) -> Result<&'a str, EntryDecodeError> {
        let n = self.u16()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| EntryDecodeError::NotUtf8)
    }
}
