//! The export: the log and its signed checkpoints as JSON lines, readable
//! without this project (format `mpp-hub-export/v1`, specified in
//! docs/AUDIT.md; docs/verify_export.py verifies one with Python's standard
//! library).
//!
//! Guarantee: every entry line holds every field of the entry's canonical
//! encoding ([`mpp_core::log`]), so its hash can be recomputed from the line
//! alone; [`ExportReader`] accepts only lines that [`EntryLine::of`] would
//! write for some entry (unknown fields, non-canonical hex or base64, an
//! informational `envelope` that is not the payload's decoding are all
//! refused), so flipping any byte of an entry line is detected, either as an
//! unreadable line or as a hash that no longer matches.
//!
//! Layout, one JSON object per line:
//!
//! ```text
//! {"type":"header", ...}                 first line: format, hash and tree rules in prose
//! {"type":"checkpoint", ...}             checkpoints of tree size 0 (if any)
//! {"type":"entry","seq":1, ...}
//! {"type":"checkpoint","tree_size":1,...}   each checkpoint right after the entry that ends its tree
//! {"type":"entry","seq":2, ...}
//! ...
//! {"type":"end","entries":N,...}         last line: counts, head hash, Merkle root
//! ```

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::{bail, Context};
use mpp_core::checkpoint::{
    Checkpoint, KeyId, Origin, ProjectionCommitment, SignedCheckpoint, SIGNATURE_BYTES,
};
use mpp_core::log::{Hash32, Redrive, Verdict, ENTRY_FORMAT_V1, ENTRY_FORMAT_V2};
use mpp_core::merkle::MerkleFrontier;
use mpp_core::{LogEntry, ReasonCode};
use mpp_proto::v1 as pb;
use mpp_store::Store;
use prost::Message as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{base64_decode, base64_encode, hex32, open_store, parse_hex32, say, ExportArgs, Progress};

/// The format name in the header line.
pub const EXPORT_FORMAT: &str = "mpp-hub-export/v1";

/// Longest line an export reader accepts, in bytes (64 MiB): an entry's
/// payload is kept as received, at most a NATS message (1 MiB by default,
/// configurable up to 64 MiB in nats-server), and base64 grows it by a third.
pub const EXPORT_LINE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// The `entry_encoding` text of the header.
const ENTRY_ENCODING: &str =
    "canonical bytes, all integers big-endian: u8 format=1 | u64 seq | u64 stream_seq | \
     i64 stream_time_ns | u8 verdict (1 accepted, 2 rejected, 3 duplicate) | u16 len + reason_code ASCII | \
     u16 len + detail UTF-8 | u16 len + subject UTF-8 | u32 len + payload | [32] prev_hash; \
     an operator's redrive has format=2 and, after prev_hash, u64 redrive_of | u16 len + operator ASCII";

/// The `entry_hash` text of the header.
const ENTRY_HASH: &str =
    "hash = SHA-256(\"mpp-hub/log-entry/v1\" || 0x00 || canonical bytes); prev_hash of seq 1 \
     is 32 zero bytes, of seq n the hash of seq n-1; seq is dense from 1";

/// The `merkle` text of the header.
const MERKLE: &str =
    "RFC 9162 Merkle tree, SHA-256: leaf i = SHA-256(0x00 || hash of entry seq i+1), node = \
     SHA-256(0x01 || left || right), split at the largest power of two below n, empty tree = SHA-256()";

/// The `checkpoint` text of the header.
const CHECKPOINT: &str = "Ed25519 (RFC 8032) signature over: \"mpp-hub/checkpoint\" 0x00 | u8 version | u8 len + origin | \
     [8] key_id | u64 tree_size | [32] root_hash | [32] head_hash | u64 last_stream_seq | i64 last_entry_time_ns | \
     i64 signed_at_ms, then, in version 2 only, u64 projected_through | [32] projection_digest (big-endian); \
     version = 2 when the line has projected_through, else 1; key_id = first 8 bytes of SHA-256(public key)";

/// One line of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    /// The first line.
    Header(HeaderLine),
    /// One log entry.
    Entry(EntryLine),
    /// One signed checkpoint.
    Checkpoint(CheckpointLine),
    /// The last line.
    End(EndLine),
}

/// The header: what the file is and how to check it. Readers check only
/// `format`; the rest is for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeaderLine {
    /// [`EXPORT_FORMAT`].
    pub format: String,
    /// `"sha-256"`.
    #[serde(default)]
    pub hash_algorithm: String,
    /// How an entry's canonical bytes are built from its fields.
    #[serde(default)]
    pub entry_encoding: String,
    /// How an entry's hash is computed and chained.
    #[serde(default)]
    pub entry_hash: String,
    /// How the Merkle tree is built.
    #[serde(default)]
    pub merkle: String,
    /// What a checkpoint's signature covers.
    #[serde(default)]
    pub checkpoint: String,
    /// Where the format is specified.
    #[serde(default)]
    pub documentation: String,
}

impl HeaderLine {
    /// The header this build writes.
    pub fn current() -> Self {
        HeaderLine {
            format: EXPORT_FORMAT.to_owned(),
            hash_algorithm: "sha-256".to_owned(),
            entry_encoding: ENTRY_ENCODING.to_owned(),
            entry_hash: ENTRY_HASH.to_owned(),
            merkle: MERKLE.to_owned(),
            checkpoint: CHECKPOINT.to_owned(),
            documentation: "docs/AUDIT.md of the mpp-hub project".to_owned(),
        }
    }
}

/// One log entry: every field of the canonical encoding, plus the payload
/// decoded for people (`envelope`, not covered by the hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryLine {
    /// Canonical encoding version: 1, or 2 for an operator's redrive.
    pub format: u8,
    /// Dense hub sequence, from 1.
    pub seq: u64,
    /// JetStream stream sequence.
    pub stream_seq: u64,
    /// Time of record: the JetStream timestamp, Unix ns (above 2^53: parse
    /// as an integer).
    pub stream_time_ns: i64,
    /// `accepted`, `rejected` or `duplicate`.
    pub verdict: String,
    /// Reason code, empty when accepted.
    pub reason_code: String,
    /// Deterministic detail of the reason.
    pub detail: String,
    /// The NATS subject.
    pub subject: String,
    /// The payload as received, standard base64 with padding.
    pub payload_b64: String,
    /// Hash of the previous entry, 64 lowercase hex digits.
    pub prev_hash: String,
    /// Hash of this entry, 64 lowercase hex digits.
    pub hash: String,
    /// Format 2 only: the seq of the rejected entry an operator redrove.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redrive_of: Option<u64>,
    /// Format 2 only: the operator who redrove it, the actor of this entry
    /// (the payload, and its signature, stay the participant's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// The payload decoded as an `mpp.v1.Envelope`, when it decodes: for
    /// reading only; the hash covers `payload_b64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<Value>,
}

impl EntryLine {
    /// The line of `e`; with `decode`, the informational envelope too.
    pub fn of(e: &LogEntry, decode: bool) -> Self {
        EntryLine {
            format: if e.redrive.is_some() { ENTRY_FORMAT_V2 } else { ENTRY_FORMAT_V1 },
            seq: e.seq,
            stream_seq: e.stream_seq,
            stream_time_ns: e.stream_time_ns,
            verdict: e.verdict.as_str().to_owned(),
            reason_code: e.reason.map_or("", |r| r.as_str()).to_owned(),
            detail: e.detail.clone(),
            subject: e.subject.clone(),
            payload_b64: base64_encode(&e.payload),
            prev_hash: hex32(&e.prev_hash),
            hash: hex32(&e.hash),
            redrive_of: e.redrive.as_ref().map(|r| r.of_seq),
            operator: e.redrive.as_ref().map(|r| r.operator.clone()),
            envelope: if decode { envelope_json(&e.payload) } else { None },
        }
    }

    /// The entry this line describes, its hash recomputed from the fields,
    /// and the hash the line claims. Refuses what [`EntryLine::of`] would
    /// never write.
    pub fn to_entry(&self) -> Result<(LogEntry, Hash32), String> {
        let redrive = match (self.format, self.redrive_of, &self.operator) {
            (ENTRY_FORMAT_V1, None, None) => None,
            (ENTRY_FORMAT_V2, Some(of_seq), Some(operator)) => {
                Some(Redrive { of_seq, operator: operator.clone() })
            }
            (ENTRY_FORMAT_V1 | ENTRY_FORMAT_V2, _, _) => {
                return Err("redrive_of and operator are given exactly in format 2".to_owned())
            }
            (other, _, _) => return Err(format!("unknown entry format {other}")),
        };
        let verdict = match self.verdict.as_str() {
            "accepted" => Verdict::Accepted,
            "rejected" => Verdict::Rejected,
            "duplicate" => Verdict::Duplicate,
            other => return Err(format!("unknown verdict {other:?}")),
        };
        let reason = match self.reason_code.as_str() {
            "" => None,
            code => Some(ReasonCode::from_code(code).ok_or_else(|| format!("unknown reason code {code:?}"))?),
        };
        let payload = base64_decode(&self.payload_b64).ok_or("payload_b64 is not canonical base64")?;
        let prev_hash = parse_hex32(&self.prev_hash).ok_or("prev_hash is not 64 lowercase hex digits")?;
        let claimed = parse_hex32(&self.hash).ok_or("hash is not 64 lowercase hex digits")?;
        if let Some(given) = &self.envelope {
            if envelope_json(&payload).as_ref() != Some(given) {
                return Err("the envelope field is not the decoding of payload_b64".to_owned());
            }
        }
        let e = LogEntry::new(
            self.seq,
            self.stream_seq,
            self.stream_time_ns,
            verdict,
            reason,
            &self.detail,
            &self.subject,
            payload,
            prev_hash,
        )
        .with_redrive(redrive);
        if e.detail != self.detail || e.subject != self.subject {
            return Err("detail or subject is longer than an entry can hold".to_owned());
        }
        if e.redrive.as_ref().map(|r| &r.operator) != self.operator.as_ref() {
            return Err("operator is longer than an entry can hold".to_owned());
        }
        Ok((e, claimed))
    }
}

/// The payload decoded as an `mpp.v1.Envelope`, as JSON; `None` when it does
/// not decode (or is empty).
pub fn envelope_json(payload: &[u8]) -> Option<Value> {
    if payload.is_empty() || payload.len() > mpp_core::limits::MESSAGE_BYTES_MAX {
        return None;
    }
    let env = pb::Envelope::decode(payload).ok()?;
    let u = mpp_wire::to_unchecked(&env);
    Some(json!({
        "schema_version": u.schema_version,
        "event_id": u.event_id,
        "case_id": u.case_id,
        "region_code": u.region_code,
        "agency_id": u.agency_id,
        "service_id": u.service_id,
        "application_id": u.application_id,
        "occurred_at_ms": u.occurred_at_ms,
        "officer": u.officer,
        "body": u.body.as_ref().map(|b| serde_json::to_value(b).unwrap_or(Value::Null)),
    }))
}

/// One signed checkpoint: every signed field, the signature, and the text
/// form (which must agree with the fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointLine {
    /// Which log (`mpp-hub/<hub id>`).
    pub origin: String,
    /// First 8 bytes of SHA-256 of the public key, 16 lowercase hex digits.
    pub key_id: String,
    /// Entries covered.
    pub tree_size: u64,
    /// Merkle root of entries `1..=tree_size`, hex.
    pub root_hash: String,
    /// Hash of entry `tree_size`, hex.
    pub head_hash: String,
    /// JetStream sequence of entry `tree_size`.
    pub last_stream_seq: u64,
    /// Time of record of entry `tree_size`, Unix ns.
    pub last_entry_time_ns: i64,
    /// The hub's clock when it signed, Unix ms.
    pub signed_at_ms: i64,
    /// Format version 2 only: the sequence the signed projection
    /// commitment's stored projection describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projected_through: Option<u64>,
    /// Format version 2 only: the projection commitment's digest, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projection_digest: Option<String>,
    /// Ed25519 signature, 128 lowercase hex digits.
    pub signature: String,
    /// The checkpoint's text form.
    pub text: String,
    /// The same checkpoint as the hub's C2SP signed note (`mpp_core::note`),
    /// when it signed one; absent in exports written before notes were
    /// exported (a restore from them serves no note for these sizes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl CheckpointLine {
    /// The line of `cp`.
    pub fn of(cp: &SignedCheckpoint) -> Self {
        let c = &cp.checkpoint;
        CheckpointLine {
            origin: c.origin.as_str().to_owned(),
            key_id: c.key_id.to_string(),
            tree_size: c.tree_size,
            root_hash: hex32(&c.root_hash),
            head_hash: hex32(&c.head_hash),
            last_stream_seq: c.last_stream_seq,
            last_entry_time_ns: c.last_entry_time_ns,
            signed_at_ms: c.signed_at_ms,
            projected_through: c.projection.map(|p| p.projected_through),
            projection_digest: c.projection.map(|p| hex32(&p.digest)),
            signature: hex::encode(cp.signature),
            text: cp.to_text(),
            note: cp.to_note(),
        }
    }

    /// The checkpoint, checked to agree with its text form. Does not verify
    /// the signature.
    pub fn to_checkpoint(&self) -> Result<SignedCheckpoint, String> {
        let origin = Origin::new(&self.origin).map_err(|e| format!("origin: {e}"))?;
        let mut key_id = [0u8; 8];
        if self.key_id.len() != 16 || self.key_id.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err("key_id is not 16 lowercase hex digits".to_owned());
        }
        hex::decode_to_slice(&self.key_id, &mut key_id).map_err(|_| "key_id is not hex")?;
        let mut signature = [0u8; SIGNATURE_BYTES];
        if self.signature.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err("signature is not lowercase hex".to_owned());
        }
        hex::decode_to_slice(&self.signature, &mut signature)
            .map_err(|_| "signature is not 64 bytes of hex")?;
        let cp = SignedCheckpoint {
            checkpoint: Checkpoint {
                origin,
                key_id: KeyId(key_id),
                tree_size: self.tree_size,
                root_hash: parse_hex32(&self.root_hash).ok_or("root_hash is not 64 lowercase hex digits")?,
                head_hash: parse_hex32(&self.head_hash).ok_or("head_hash is not 64 lowercase hex digits")?,
                last_stream_seq: self.last_stream_seq,
                last_entry_time_ns: self.last_entry_time_ns,
                signed_at_ms: self.signed_at_ms,
                projection: match (self.projected_through, &self.projection_digest) {
                    (None, None) => None,
                    (Some(projected_through), Some(d)) => Some(ProjectionCommitment {
                        projected_through,
                        digest: parse_hex32(d).ok_or("projection_digest is not 64 lowercase hex digits")?,
                    }),
                    _ => return Err("projected_through and projection_digest come together".to_owned()),
                },
            },
            signature,
            note: None,
        };
        if cp.to_text() != self.text {
            return Err("the text form does not match the fields".to_owned());
        }
        let Some(text) = &self.note else { return Ok(cp) };
        // The note must be of exactly this checkpoint's body, signed under
        // the origin; its signature is checked where the hub's key is known.
        let (body, sigs) = mpp_core::note::parse(text).map_err(|e| format!("note: {e}"))?;
        if body != cp.checkpoint.note_body() {
            return Err("the note's body is not this checkpoint's".to_owned());
        }
        let seal = sigs
            .iter()
            .find(|s| s.name == self.origin)
            .and_then(|s| {
                Some(mpp_core::checkpoint::NoteSeal {
                    key_hash: s.key_hash,
                    signature: s.signature.as_slice().try_into().ok()?,
                })
            })
            .ok_or("the note has no Ed25519 signature under the origin")?;
        Ok(SignedCheckpoint { note: Some(seal), ..cp })
    }
}

/// The last line: what the export holds, to detect a truncated file (it is
/// not signed; the checkpoints are what vouches for the log).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndLine {
    /// Entry lines.
    pub entries: u64,
    /// Checkpoint lines.
    pub checkpoints: u64,
    /// Hash of the last entry (zeros when empty), hex.
    pub head_hash: String,
    /// Merkle root of all entries, hex.
    pub root_hash: String,
}

/// What an export run wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportSummary {
    /// Entry lines.
    pub entries: u64,
    /// Checkpoint lines.
    pub checkpoints: u64,
    /// Hash of the last entry.
    pub head_hash: Hash32,
    /// Merkle root of all entries.
    pub root_hash: Hash32,
}

fn write_line(out: &mut impl Write, line: &Line) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, line).context("writing the export")?;
    out.write_all(b"\n").context("writing the export")?;
    Ok(())
}

/// Writes the store's log, up to its head as it was when called, with every
/// stored checkpoint within it. Stops at the first entry the store cannot
/// read (the export then has no end line).
pub fn export_store<S: Store>(
    store: &S,
    out: &mut impl Write,
    decode: bool,
    progress: &mut Progress,
) -> anyhow::Result<ExportSummary> {
    let head = store.head().context("reading the head")?;
    write_line(out, &Line::Header(HeaderLine::current()))?;
    let mut checkpoints = store.checkpoints(0, head.last_seq).peekable();
    let mut frontier = MerkleFrontier::new();
    let mut summary =
        ExportSummary { entries: 0, checkpoints: 0, head_hash: head.head_hash, root_hash: frontier.root() };
    let mut emit_checkpoints =
        |size: u64, out: &mut dyn Write, summary: &mut ExportSummary| -> anyhow::Result<()> {
            while let Some(next) =
                checkpoints.next_if(|c| c.as_ref().map_or(true, |c| c.checkpoint.tree_size <= size))
            {
                let cp = next.context("reading a stored checkpoint")?;
                let mut w = &mut *out;
                write_line(&mut w, &Line::Checkpoint(CheckpointLine::of(&cp)))?;
                summary.checkpoints += 1;
            }
            Ok(())
        };
    emit_checkpoints(0, out, &mut summary)?;
    let take = usize::try_from(head.last_seq).unwrap_or(usize::MAX);
    for e in store.entries(1).take(take) {
        let e = e.with_context(|| format!("reading entry {}", summary.entries + 1))?;
        frontier.push(mpp_core::merkle::entry_leaf_hash(&e.hash)).context("Merkle tree full")?;
        write_line(out, &Line::Entry(EntryLine::of(&e, decode)))?;
        summary.entries += 1;
        progress.tick(1);
        emit_checkpoints(e.seq, out, &mut summary)?;
    }
    if summary.entries != head.last_seq {
        bail!("the log ends at entry {} but the head is at {}", summary.entries, head.last_seq);
    }
    summary.root_hash = frontier.root();
    write_line(
        out,
        &Line::End(EndLine {
            entries: summary.entries,
            checkpoints: summary.checkpoints,
            head_hash: hex32(&summary.head_hash),
            root_hash: hex32(&summary.root_hash),
        }),
    )?;
    out.flush().context("writing the export")?;
    Ok(summary)
}

/// `mpp-hub audit export`.
pub(crate) fn run(args: &ExportArgs) -> anyhow::Result<u8> {
    let Some(dir) = &args.data_dir else { bail!("--data-dir is required") };
    // Fail early on a directory without a store; then read the log in
    // windows (see `Windowed`: sled would keep every block read otherwise).
    drop(open_store(dir)?);
    let store = super::window::Windowed::new(dir);
    let mut progress = Progress::new("export");
    let summary = if args.out.as_os_str() == "-" {
        let stdout = std::io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        export_store(&store, &mut out, !args.no_decode, &mut progress)?
    } else {
        let file = File::options().write(true).create_new(true).open(&args.out).with_context(|| {
            format!("creating {} (an existing file is never overwritten)", args.out.display())
        })?;
        let mut out = BufWriter::new(file);
        let s = export_store(&store, &mut out, !args.no_decode, &mut progress)?;
        out.into_inner().map_err(|e| e.into_error()).context("writing the export")?.sync_all()?;
        s
    };
    progress.finish();
    let mut stderr = std::io::stderr();
    say(
        &mut stderr,
        &format!(
            "exported {} entries and {} checkpoints to {}: head {}, root {}",
            summary.entries,
            summary.checkpoints,
            args.out.display(),
            hex32(&summary.head_hash),
            hex32(&summary.root_hash)
        ),
    )?;
    Ok(0)
}

/// A line that cannot be read, by its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {what}")]
pub struct LineError {
    /// Line number, from 1.
    pub line: u64,
    /// What is wrong.
    pub what: String,
}

/// Reads an export line by line, with bounded memory (one line of at most
/// [`EXPORT_LINE_BYTES_MAX`] at a time).
#[derive(Debug)]
pub struct ExportReader<R> {
    input: R,
    line: u64,
    buf: Vec<u8>,
}

impl ExportReader<BufReader<File>> {
    /// Opens an export file.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let file = File::open(path).with_context(|| format!("opening export {}", path.display()))?;
        Ok(ExportReader::new(BufReader::with_capacity(1 << 20, file)))
    }
}

impl<R: BufRead> ExportReader<R> {
    /// Reads from `input`.
    pub fn new(input: R) -> Self {
        ExportReader { input, line: 0, buf: Vec::new() }
    }

    /// Number of the line last returned.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The next line, `None` at the end of the input.
    pub fn next_line(&mut self) -> Option<Result<Line, LineError>> {
        self.buf.clear();
        self.line += 1;
        let line = self.line;
        let err = |what: String| Some(Err(LineError { line, what }));
        let limit = EXPORT_LINE_BYTES_MAX as u64 + 1;
        match std::io::Read::take(&mut self.input, limit).read_until(b'\n', &mut self.buf) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => return err(format!("reading: {e}")),
        }
        if self.buf.last() != Some(&b'\n') {
            if self.buf.len() as u64 >= limit {
                return err(format!("longer than {EXPORT_LINE_BYTES_MAX} bytes"));
            }
            return err("the last line does not end with a newline (truncated file?)".to_owned());
        }
        self.buf.pop();
        match serde_json::from_slice::<Line>(&self.buf) {
            Ok(l) => Some(Ok(l)),
            Err(e) => err(format!("not a valid export line: {e}")),
        }
    }
}

impl<R: BufRead> Iterator for ExportReader<R> {
    type Item = Result<Line, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_line()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, payload: Vec<u8>) -> LogEntry {
        LogEntry::new(
            seq,
            seq + 10,
            1_750_000_000_123_456_789,
            Verdict::Rejected,
            Some(ReasonCode::UndecodableEnvelope),
            "the payload is not a protobuf mpp.v1.Envelope",
            "mpp.events.dukcapil.kk",
            payload,
            [7u8; 32],
        )
    }

    #[test]
    fn an_entry_line_round_trips_and_every_byte_flip_is_caught() {
        let e = entry(3, vec![0xff, 0x00, 0x10, 0x7f]);
        let text = serde_json::to_string(&Line::Entry(EntryLine::of(&e, true))).unwrap();
        let Line::Entry(line) = serde_json::from_str::<Line>(&text).unwrap() else { panic!("not an entry") };
        assert_eq!(line.to_entry().unwrap(), (e.clone(), e.hash));
        for i in 0..text.len() {
            let mut bytes = text.clone().into_bytes();
            bytes[i] ^= 0x01;
            let caught = match serde_json::from_slice::<Line>(&bytes) {
                Err(_) => true,
                Ok(Line::Entry(l)) => match l.to_entry() {
                    Err(_) => true,
                    Ok((got, claimed)) => got.hash != claimed || got.seq != e.seq,
                },
                Ok(_) => true,
            };
            assert!(caught, "flipping byte {i} of {text} went unnoticed");
        }
    }

    #[test]
    fn unknown_fields_and_uppercase_hex_are_refused() {
        let e = entry(1, vec![1, 2, 3]);
        let mut v = serde_json::to_value(Line::Entry(EntryLine::of(&e, false))).unwrap();
        v["extra"] = json!(1);
        assert!(serde_json::from_value::<Line>(v).is_err());
        let mut line = EntryLine::of(&e, false);
        line.hash = line.hash.to_uppercase();
        assert!(line.to_entry().is_err());
    }

    #[test]
    fn the_reader_names_lines_and_bounds_them() {
        let e = entry(1, vec![1]);
        let good = serde_json::to_string(&Line::Entry(EntryLine::of(&e, false))).unwrap();
        let input = format!("{good}\n{{\"type\":\"nonsense\"}}\n{good}");
        let mut r = ExportReader::new(input.as_bytes());
        assert!(matches!(r.next(), Some(Ok(Line::Entry(_)))));
        assert_eq!(r.next().unwrap().unwrap_err().line, 2);
        let err = r.next().unwrap().unwrap_err();
        assert!(err.what.contains("truncated"), "{err}");
        assert!(r.next().is_none());
    }
}
