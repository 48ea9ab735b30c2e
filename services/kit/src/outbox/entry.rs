//! The on-disk form of one outbox entry.
//!
//! Key: the outbox sequence, a redb `u64`, so the table's order is the
//! outbox order (the sled outbox of earlier versions kept it as 8 bytes
//! big-endian; [`seq_of`] reads those when migrating). Value (format 2):
//!
//! ```text
//! u8      format = 2
//! i64 BE  enqueued_at_ms (the service's clock when the entry was written)
//! u16 BE  subject length, then the subject (UTF-8)
//! u8      event id length, then the event id (UTF-8, canonical UUIDv7 text)
//! u8      traceparent length (0: none), then the W3C traceparent of the
//!         RPC that wrote it (ASCII, version 00; mpp_edge::trace)
//! ...     the encoded mpp.v1.Envelope (the message payload), to the end
//! ```
//!
//! Format 1, written before traces were kept, is the same without the
//! traceparent; it is still read.
//!
//! Since the second layout of the outbox file, entries are stored in group records
//! ([`RecordBuilder`], [`record_entries`]): one record per run of
//! consecutive sequences of one group commit, keyed by its first sequence,
//! so that a commit writes one value instead of one per event:
//!
//! ```text
//! u8      format = 3 (never an entry's format byte, so neither is read as
//!         the other)
//! u32 BE  count (1..=RECORD_EVENTS_MAX)
//! count × (u32 BE length, then that many bytes: one entry as above)
//! ```
//!
//! Every length is checked on write and on read; a value that does not parse
//! is reported, never guessed at.

use bytes::Bytes;
use mpp_core::limits;
use mpp_edge::trace::{TraceParent, TRACEPARENT_BYTES};

/// The format byte of entries written by this version.
pub const ENTRY_FORMAT: u8 = 2;

/// The format of entries without a traceparent, still read.
const ENTRY_FORMAT_UNTRACED: u8 = 1;

/// Bytes of the fixed header before the subject (format, time, subject length).
const HEADER_BYTES: usize = 1 + 8 + 2;

/// Longest event id accepted in an entry, in bytes (a UUID's text is 36).
pub const EVENT_ID_BYTES_MAX: usize = 64;

/// Largest value of one entry, in bytes: header, subject, event id, payload.
pub const ENTRY_BYTES_MAX: usize = HEADER_BYTES
    + limits::SUBJECT_BYTES_MAX
    + 1
    + EVENT_ID_BYTES_MAX
    + 1
    + TRACEPARENT_BYTES
    + limits::MESSAGE_BYTES_MAX;

/// One event as stored in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its outbox sequence.
    pub seq: u64,
    /// When it was written to the outbox, Unix milliseconds (service clock).
    pub enqueued_at_ms: i64,
    /// The NATS subject.
    pub subject: String,
    /// The event id, sent as `Nats-Msg-Id`.
    pub event_id: String,
    /// The trace of the RPC that wrote it, sent as the `traceparent` header.
    pub traceparent: Option<TraceParent>,
    /// The encoded envelope.
    pub payload: Bytes,
}

/// Why an entry could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// A part is longer than the format allows.
    #[error("outbox entry {part} is {len} bytes, more than {max}")]
    TooLong {
        /// Which part.
        part: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A stored value does not parse.
    #[error("outbox entry {seq} is corrupt: {what}")]
    Corrupt {
        /// The entry's sequence.
        seq: u64,
        /// What is wrong.
        what: &'static str,
    },
}

/// The sequence of a sled outbox key (`None` if it is not 8 bytes).
pub(crate) fn seq_of(key: &[u8]) -> Option<u64> {
    let eight: [u8; 8] = key.try_into().ok()?;
    Some(u64::from_be_bytes(eight))
}

/// Encodes one entry's value.
pub(crate) fn encode(
    enqueued_at_ms: i64,
    subject: &str,
    event_id: &str,
    traceparent: Option<&TraceParent>,
    payload: &[u8],
) -> Result<Vec<u8>, EntryError> {
    let check = |part, len, max| if len > max { Err(EntryError::TooLong { part, len, max }) } else { Ok(()) };
    check("subject", subject.len(), limits::SUBJECT_BYTES_MAX)?;
    check("event id", event_id.len(), EVENT_ID_BYTES_MAX)?;
    check("payload", payload.len(), limits::MESSAGE_BYTES_MAX)?;
    let mut out = Vec::with_capacity(HEADER_BYTES + subject.len() + 1 + event_id.len() + payload.len());
    out.push(ENTRY_FORMAT);
    out.extend_from_slice(&enqueued_at_ms.to_be_bytes());
    // Both lengths were checked against limits that fit their widths.
    out.extend_from_slice(&(subject.len() as u16).to_be_bytes());
    out.extend_from_slice(subject.as_bytes());
    out.push(event_id.len() as u8);
    out.extend_from_slice(event_id.as_bytes());
    let trace = traceparent.map(ToString::to_string).unwrap_or_default();
    // Version 00, always TRACEPARENT_BYTES, which fits a u8.
    assert!(trace.is_empty() || trace.len() == TRACEPARENT_BYTES, "a version-00 traceparent");
    out.push(trace.len() as u8);
    out.extend_from_slice(trace.as_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Reads the enqueue time of a stored value without decoding the rest.
pub(crate) fn enqueued_at_ms(value: &[u8]) -> Option<i64> {
    let eight: [u8; 8] = value.get(1..9)?.try_into().ok()?;
    matches!(value.first(), Some(&(ENTRY_FORMAT | ENTRY_FORMAT_UNTRACED))).then(|| i64::from_be_bytes(eight))
}

/// Decodes the value of entry `seq`.
pub(crate) fn decode(seq: u64, value: &[u8]) -> Result<StoredEvent, EntryError> {
    let corrupt = |what| EntryError::Corrupt { seq, what };
    if value.len() > ENTRY_BYTES_MAX {
        return Err(corrupt("longer than the largest entry"));
    }
    let traced = match value.first() {
        Some(&ENTRY_FORMAT) => true,
        Some(&ENTRY_FORMAT_UNTRACED) => false,
        _ => return Err(corrupt("unknown format byte")),
    };
    let enqueued_at_ms = enqueued_at_ms(value).ok_or_else(|| corrupt("truncated header"))?;
    let subject_len = value
        .get(9..11)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .ok_or_else(|| corrupt("truncated header"))?;
    let subject_end = HEADER_BYTES + subject_len;
    let subject = value.get(HEADER_BYTES..subject_end).ok_or_else(|| corrupt("truncated subject"))?;
    let id_len = usize::from(*value.get(subject_end).ok_or_else(|| corrupt("truncated event id length"))?);
    let id_end = subject_end + 1 + id_len;
    let event_id = value.get(subject_end + 1..id_end).ok_or_else(|| corrupt("truncated event id"))?;
    let (traceparent, trace_end) = if traced {
        let len = usize::from(*value.get(id_end).ok_or_else(|| corrupt("truncated traceparent length"))?);
        let end = id_end + 1 + len;
        let text = value.get(id_end + 1..end).ok_or_else(|| corrupt("truncated traceparent"))?;
        let parsed = match len {
            0 => None,
            _ => Some(
                std::str::from_utf8(text)
                    .ok()
                    .and_then(TraceParent::parse)
                    .ok_or_else(|| corrupt("malformed traceparent"))?,
            ),
        };
        (parsed, end)
    } else {
        (None, id_end)
    };
    let payload = value.get(trace_end..).ok_or_else(|| corrupt("truncated payload"))?;
    if subject.is_empty() || event_id.is_empty() || payload.is_empty() {
        return Err(corrupt("empty subject, event id or payload"));
    }
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| corrupt("text is not UTF-8"));
    Ok(StoredEvent {
        seq,
        enqueued_at_ms,
        subject: text(subject)?,
        event_id: text(event_id)?,
        traceparent,
        payload: Bytes::copy_from_slice(payload),
    })
}

/// The format byte of a group record (the second layout of the outbox
/// file); distinct from every entry format byte.
pub(crate) const RECORD_FORMAT: u8 = 3;

/// Bytes of a record's header: format, event count.
const RECORD_HEADER_BYTES: usize = 1 + 4;

/// Bytes before each entry in a record: its length.
const RECORD_LENGTH_BYTES: usize = 4;

/// Most events in one record. A group commit with more is stored as
/// several records (the relay reads a record whole to send part of it, so
/// a record stays near what it sends at once).
pub(crate) const RECORD_EVENTS_MAX: usize = 256;

/// A record is closed before it grows past this many bytes (one entry
/// alone may be larger: up to [`ENTRY_BYTES_MAX`]).
pub(crate) const RECORD_BYTES_MAX: usize = 1024 * 1024;

/// Builds group records: consecutive entries, each record holding
/// consecutive sequences (a gap starts a new record).
#[derive(Debug, Default)]
pub(crate) struct RecordBuilder {
    done: Vec<(u64, Vec<u8>)>,
    /// The open record: its first sequence, the next one, its bytes.
    open: Option<(u64, u64, Vec<u8>)>,
}

impl RecordBuilder {
    /// Adds entry `seq` (its encoded value, [`encode`]).
    pub(crate) fn push(&mut self, seq: u64, value: &[u8]) {
        let fits = |next: u64, bytes: &Vec<u8>| {
            next == seq
                && record_count(bytes) < RECORD_EVENTS_MAX
                && bytes.len() + RECORD_LENGTH_BYTES + value.len() <= RECORD_BYTES_MAX
        };
        match &mut self.open {
            Some((_, next, bytes)) if fits(*next, bytes) => {
                append_entry(bytes, value);
                *next += 1;
            }
            open => {
                if let Some((first, _, bytes)) = open.take() {
                    self.done.push((first, bytes));
                }
                let mut bytes = Vec::with_capacity(RECORD_HEADER_BYTES + RECORD_LENGTH_BYTES + value.len());
                bytes.push(RECORD_FORMAT);
                bytes.extend_from_slice(&0u32.to_be_bytes());
                append_entry(&mut bytes, value);
                *open = Some((seq, seq + 1, bytes));
            }
        }
    }

    /// The records: (first sequence, record bytes), in order.
    pub(crate) fn finish(mut self) -> Vec<(u64, Vec<u8>)> {
        if let Some((first, _, bytes)) = self.open.take() {
            self.done.push((first, bytes));
        }
        self.done
    }
}

fn record_count(record: &[u8]) -> usize {
    record.get(1..RECORD_HEADER_BYTES).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

fn append_entry(record: &mut Vec<u8>, value: &[u8]) {
    // Entries are at most ENTRY_BYTES_MAX long and a record at most
    // RECORD_EVENTS_MAX of them: both fit in a u32.
    let count = record_count(record) as u32 + 1;
    record[1..RECORD_HEADER_BYTES].copy_from_slice(&count.to_be_bytes());
    record.extend_from_slice(&(value.len() as u32).to_be_bytes());
    record.extend_from_slice(value);
}

/// The entries of the record stored under `first_seq`: (sequence, encoded
/// entry), each checked with [`decode`]'s bounds on the way (not decoded).
pub(crate) fn record_entries(first_seq: u64, record: &[u8]) -> Result<Vec<(u64, &[u8])>, EntryError> {
    let corrupt = |what| EntryError::Corrupt { seq: first_seq, what };
    if record.first() != Some(&RECORD_FORMAT) {
        return Err(corrupt("unknown record format byte"));
    }
    let count = record_count(record);
    if record.len() < RECORD_HEADER_BYTES || count == 0 || count > RECORD_EVENTS_MAX {
        return Err(corrupt("bad record header"));
    }
    let mut out = Vec::with_capacity(count);
    let mut at = RECORD_HEADER_BYTES;
    for i in 0..count as u64 {
        let len = record
            .get(at..at + RECORD_LENGTH_BYTES)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| corrupt("truncated record"))?;
        if len > ENTRY_BYTES_MAX {
            return Err(corrupt("a record entry longer than the largest entry"));
        }
        at += RECORD_LENGTH_BYTES;
        let value = record.get(at..at + len).ok_or_else(|| corrupt("truncated record"))?;
        at += len;
        let seq = first_seq.checked_add(i).ok_or_else(|| corrupt("sequence overflow"))?;
        out.push((seq, value));
    }
    if at != record.len() {
        return Err(corrupt("bytes after the record's last entry"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_key_order() {
        let v = encode(1_767_225_600_000, "mpp.events.dukcapil.kk", "0190-abc", None, b"\x08\x01payload")
            .unwrap();
        let e = decode(7, &v).unwrap();
        assert_eq!(e.seq, 7);
        assert_eq!(e.enqueued_at_ms, 1_767_225_600_000);
        assert_eq!(e.subject, "mpp.events.dukcapil.kk");
        assert_eq!(e.event_id, "0190-abc");
        assert_eq!(&e.payload[..], b"\x08\x01payload");
        assert_eq!(enqueued_at_ms(&v), Some(1_767_225_600_000));
        assert_eq!(seq_of(&(u64::MAX - 1).to_be_bytes()), Some(u64::MAX - 1));
        assert_eq!(seq_of(b"short"), None);
    }

    #[test]
    fn bad_values_are_refused() {
        let v = encode(1, "s", "id", None, b"p").unwrap();
        for cut in 0..v.len() {
            assert!(decode(1, &v[..cut]).is_err(), "truncated at {cut}");
        }
        let mut other = v.clone();
        other[0] = 9;
        assert!(matches!(decode(1, &other), Err(EntryError::Corrupt { seq: 1, .. })));
        assert!(encode(1, &"s".repeat(limits::SUBJECT_BYTES_MAX + 1), "id", None, b"p").is_err());
        assert!(encode(1, "s", &"i".repeat(EVENT_ID_BYTES_MAX + 1), None, b"p").is_err());
        assert!(encode(1, "s", "id", None, &vec![0; limits::MESSAGE_BYTES_MAX + 1]).is_err());
        assert!(encode(1, "s", "id", None, &vec![0; limits::MESSAGE_BYTES_MAX]).is_ok());
    }

    #[test]
    fn the_traceparent_round_trips_and_format_1_is_still_read() {
        let t = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let v = encode(5, "mpp.events.dukcapil.kk", "0190-abc", Some(&t), b"\x08\x01payload").unwrap();
        let e = decode(3, &v).unwrap();
        assert_eq!((e.traceparent, &e.payload[..]), (Some(t), &b"\x08\x01payload"[..]));
        // Cut anywhere before the payload's first byte.
        for cut in 0..=v.len() - b"\x08\x01payload".len() {
            assert!(decode(3, &v[..cut]).is_err(), "truncated at {cut}");
        }
        // Format 1: the same without the traceparent length and text.
        let mut old = encode(5, "s", "id", None, b"p").unwrap();
        old[0] = ENTRY_FORMAT_UNTRACED;
        let trace_len_at = 1 + 8 + 2 + 1 + 1 + 2;
        assert_eq!(old.remove(trace_len_at), 0);
        let e = decode(4, &old).unwrap();
        assert_eq!(
            (e.subject.as_str(), e.event_id.as_str(), e.traceparent, &e.payload[..]),
            ("s", "id", None, &b"p"[..])
        );
        assert_eq!(enqueued_at_ms(&old), Some(5));
        // A stored traceparent that does not parse is corruption.
        let mut bad = v.clone();
        let at = bad.iter().position(|&b| b == b'4').unwrap();
        bad[at] = b'X';
        assert!(matches!(decode(3, &bad), Err(EntryError::Corrupt { what: "malformed traceparent", .. })));
    }

    #[test]
    fn records_hold_consecutive_entries_and_refuse_damage() {
        let values: Vec<Vec<u8>> =
            (0..600u64).map(|i| encode(i as i64, "s", &format!("id{i}"), None, &[1; 10]).unwrap()).collect();
        let mut b = RecordBuilder::default();
        // 1..=300, then a gap (a failed commit's sequences), then 310..=609.
        for (i, v) in values.iter().enumerate() {
            let seq = if i < 300 { 1 + i as u64 } else { 10 + i as u64 };
            b.push(seq, v);
        }
        let records = b.finish();
        let firsts: Vec<u64> = records.iter().map(|(s, _)| *s).collect();
        assert_eq!(firsts, vec![1, 257, 310, 566], "at most RECORD_EVENTS_MAX each, a gap starts a record");
        let mut all = Vec::new();
        for (first, r) in &records {
            all.extend(record_entries(*first, r).unwrap().into_iter().map(|(s, v)| (s, v.to_vec())));
        }
        assert_eq!(all.len(), 600);
        assert_eq!(all[299].0, 300);
        assert_eq!(all[300].0, 310);
        assert!(all.iter().zip(&values).all(|((_, got), want)| got == want), "values kept");
        let (first, r) = &records[0];
        for cut in 0..r.len() {
            assert!(record_entries(*first, &r[..cut]).is_err(), "truncated at {cut}");
        }
        let mut longer = r.clone();
        longer.push(0);
        assert!(record_entries(*first, &longer).is_err(), "trailing bytes");
        let mut other = r.clone();
        other[0] = ENTRY_FORMAT;
        assert!(record_entries(*first, &other).is_err(), "format byte");
        let mut big = RecordBuilder::default();
        let large = encode(1, "s", "id", None, &vec![0; limits::MESSAGE_BYTES_MAX]).unwrap();
        let per_record = RECORD_BYTES_MAX / (large.len() + RECORD_LENGTH_BYTES);
        for seq in 1..=per_record as u64 + 1 {
            big.push(seq, &large);
        }
        let big = big.finish();
        assert_eq!(big.len(), 2, "records close near RECORD_BYTES_MAX");
        assert!(big.iter().all(|(_, r)| r.len() <= RECORD_BYTES_MAX));
    }
}
