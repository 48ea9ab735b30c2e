//! Keys and value encodings of the store (see the crate docs for the table).
//! Every decoder here checks what it reads and returns
//! [`StoreError::Corrupt`] instead of panicking.

use bincode::Options;
use mpp_core::checkpoint::SignedCheckpoint;
use mpp_core::ids::{AgencyId, EventId, ServiceId, TrackingNumber};
use mpp_core::log::Hash32;
use mpp_core::merkle::MerkleFrontier;
use mpp_core::{Case, DataRead, LogEntry, PinReissue, ServiceStandard, TimelineItem};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Head, StoreError};

/// One key-value pair as read.
pub(crate) type Pair = (Vec<u8>, Vec<u8>);

/// The format tag stored under `V`. A store with another tag is refused.
pub const FORMAT_TAG: &str = "mpp-store/v4";

/// A commit's entries are packed into blocks; a block is closed once it holds
/// at least this many bytes of records (64 KiB, about 200 entries of the
/// usual size), so one entry lookup (a proof, a receipt, a checkpoint's
/// check) never reads much more than this (a single larger entry gets a
/// block of its own). Larger blocks did not make ingest faster.
pub const BLOCK_BYTES_MAX: usize = 64 * 1024;

/// Most entries in one block (binds for entries under 128 bytes, such as
/// rejections of tiny messages).
pub const BLOCK_ENTRIES_MAX: usize = 512;

pub(crate) const PREFIX_FORMAT: u8 = b'V';
pub(crate) const PREFIX_HEAD: u8 = b'H';
pub(crate) const PREFIX_LOG: u8 = b'L';
pub(crate) const PREFIX_EVENT: u8 = b'E';
pub(crate) const PREFIX_CASE: u8 = b'C';
pub(crate) const PREFIX_TIMELINE: u8 = b'T';
pub(crate) const PREFIX_STANDARD: u8 = b'S';
pub(crate) const PREFIX_SUBTREE: u8 = b'M';
pub(crate) const PREFIX_CHECKPOINT: u8 = b'K';
/// The participant registry: one key, written with the projection.
pub(crate) const REGISTRY_KEY: &[u8] = b"R";
/// The projection commitment ([`crate::commitment`]): one key, written with
/// every commit that changes the head or the projection.
pub(crate) const COMMITMENT_KEY: &[u8] = b"D";

/// The first bytes of every key the projection commitment covers: case
/// values, timeline chunks, standards, the registry, event-id index parts.
pub(crate) const PROJECTION_PREFIXES: &[u8] =
    &[PREFIX_CASE, PREFIX_TIMELINE, PREFIX_STANDARD, b'R', PREFIX_EVENT];

/// Whether the projection commitment covers `key`.
pub(crate) fn is_projection_key(key: &[u8]) -> bool {
    match key.first() {
        Some(&(PREFIX_CASE | PREFIX_TIMELINE | PREFIX_STANDARD | PREFIX_EVENT)) => true,
        _ => key == REGISTRY_KEY,
    }
}

/// The commitment value: the head's `last_seq` u64 | `projected_through`
/// u64 | the 2 KiB LtHash16 state, as of the write that stored it.
pub(crate) fn encode_commitment(last_seq: u64, projected: u64, state: &crate::commitment::LtHash) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + crate::commitment::STATE_BYTES);
    v.extend_from_slice(&last_seq.to_be_bytes());
    v.extend_from_slice(&projected.to_be_bytes());
    v.extend_from_slice(&state.to_bytes());
    v
}

/// The value of [`encode_commitment`]; `None` if it is not one (the store
/// then computes it again).
pub(crate) fn decode_commitment(v: &[u8]) -> Option<(u64, u64, crate::commitment::LtHash)> {
    if v.len() != 16 + crate::commitment::STATE_BYTES {
        return None;
    }
    let last_seq = u64::from_be_bytes(v[..8].try_into().ok()?);
    let projected = u64::from_be_bytes(v[8..16].try_into().ok()?);
    Some((last_seq, projected, crate::commitment::LtHash::from_bytes(&v[16..])?))
}

const BLOCK_FORMAT_V1: u8 = 1;
/// A v1 block body compressed with LZ4 (block format, no frame), after its
/// uncompressed length (u32, little-endian, as `lz4_flex` prepends it).
const BLOCK_FORMAT_LZ4: u8 = 2;
/// Largest uncompressed body a compressed block may claim: one block's
/// records (at most [`BLOCK_BYTES_MAX`] plus one more record of at most a
/// 1 MiB payload and its fields) and its header. A larger claim is
/// corruption, refused before anything is allocated.
const BLOCK_BODY_BYTES_MAX: usize = BLOCK_BYTES_MAX + (1 << 20) + 64 * 1024;
/// The fixed part of the head value; the frontier follows it.
const HEAD_FIXED_BYTES: usize = 8 + 8 + 32 + 8;

/// A printable form of a key for error messages: the prefix letter, then hex.
pub(crate) fn show_key(key: &[u8]) -> String {
    match key.split_first() {
        Some((p, rest)) if p.is_ascii_graphic() => {
            let hex: String = rest.iter().map(|b| format!("{b:02x}")).collect();
            format!("{}:{hex}", *p as char)
        }
        _ => key.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

pub(crate) fn corrupt(what: impl Into<String>, key: &[u8]) -> StoreError {
    StoreError::Corrupt { what: what.into(), key: show_key(key) }
}

pub(crate) fn format_key() -> [u8; 1] {
    [PREFIX_FORMAT]
}

pub(crate) fn head_key() -> [u8; 1] {
    [PREFIX_HEAD]
}

pub(crate) fn log_key(first_seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = PREFIX_LOG;
    k[1..].copy_from_slice(&first_seq.to_be_bytes());
    k
}

/// The first sequence of a block key, `None` if the key is not a block key.
pub(crate) fn log_key_seq(key: &[u8]) -> Option<u64> {
    match key {
        [PREFIX_LOG, rest @ ..] => Some(u64::from_be_bytes(rest.try_into().ok()?)),
        _ => None,
    }
}

/// Event ids are indexed in buckets of `2^EVENT_BUCKET_MS_SHIFT` ms (16 ms)
/// of their UUIDv7 timestamp (the first 48 bits; any 16 bytes have one), so
/// that the ids of one ingest batch, which agencies minted within moments of
/// each other, land in a few keys that grow instead of a thousand new keys:
/// in sled a new key costs several times what rewriting an existing one
/// does (node splits, page-table growth).
pub const EVENT_BUCKET_MS_SHIFT: u32 = 4;

/// Most ids in one part of a bucket (24 KiB of records). A busier bucket
/// (more than ~64,000 events/s, or an agency whose clock is stuck) spills
/// into further parts, so no commit rewrites more than one full part per
/// bucket.
pub const EVENT_PART_IDS_MAX: usize = 1024;

/// One record of an event-index part: the id, then the sequence of the entry
/// that accepted it.
const EVENT_RECORD_BYTES: usize = 16 + 8;

/// The bucket of an event id.
pub(crate) fn event_bucket(id: &EventId) -> u64 {
    let mut a = [0u8; 8];
    a[2..].copy_from_slice(&id.0[..6]);
    u64::from_be_bytes(a) >> EVENT_BUCKET_MS_SHIFT
}

/// `"E" bucket:u64`: the prefix of every part key of a bucket.
pub(crate) fn event_bucket_prefix(bucket: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = PREFIX_EVENT;
    k[1..].copy_from_slice(&bucket.to_be_bytes());
    k
}

/// `"E" bucket:u64 part:u32`.
pub(crate) fn event_part_key(bucket: u64, part: u32) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[..9].copy_from_slice(&event_bucket_prefix(bucket));
    k[9..].copy_from_slice(&part.to_be_bytes());
    k
}

/// The bucket and part number of a part key.
pub(crate) fn event_part_of(key: &[u8]) -> Result<(u64, u32), StoreError> {
    match key {
        [PREFIX_EVENT, rest @ ..] if rest.len() == 12 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&rest[..8]);
            let mut p = [0u8; 4];
            p.copy_from_slice(&rest[8..]);
            Ok((u64::from_be_bytes(b), u32::from_be_bytes(p)))
        }
        _ => Err(corrupt("event index key has a bad length", key)),
    }
}

/// A part value: records of `id [16] | seq u64`, sorted by id.
pub(crate) fn encode_event_part(records: &[(EventId, u64)]) -> Vec<u8> {
    let mut v = Vec::with_capacity(records.len() * EVENT_RECORD_BYTES);
    for (id, seq) in records {
        v.extend_from_slice(&id.0);
        v.extend_from_slice(&seq.to_be_bytes());
    }
    v
}

fn event_record(v: &[u8], i: usize) -> (EventId, u64) {
    let r = &v[i * EVENT_RECORD_BYTES..(i + 1) * EVENT_RECORD_BYTES];
    let mut id = [0u8; 16];
    id.copy_from_slice(&r[..16]);
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&r[16..]);
    (EventId(id), u64::from_be_bytes(seq))
}

fn check_event_part_len(key: &[u8], v: &[u8]) -> Result<usize, StoreError> {
    let n = v.len() / EVENT_RECORD_BYTES;
    if v.len() % EVENT_RECORD_BYTES != 0 || n == 0 || n > EVENT_PART_IDS_MAX {
        return Err(corrupt(format!("event index part of {} bytes", v.len()), key));
    }
    Ok(n)
}

/// Every record of a part, checked: sorted, each id in the key's bucket.
pub(crate) fn decode_event_part(key: &[u8], v: &[u8]) -> Result<Vec<(EventId, u64)>, StoreError> {
    let (bucket, _) = event_part_of(key)?;
    let n = check_event_part_len(key, v)?;
    let records: Vec<(EventId, u64)> = (0..n).map(|i| event_record(v, i)).collect();
    if records.windows(2).any(|w| w[0].0 .0 >= w[1].0 .0) {
        return Err(corrupt("event index part is not sorted by id", key));
    }
    if records.iter().any(|(id, _)| event_bucket(id) != bucket) {
        return Err(corrupt("event index part holds an id of another bucket", key));
    }
    Ok(records)
}

/// The sequence recorded for `id` in a part (binary search on the bytes).
pub(crate) fn find_event(key: &[u8], v: &[u8], id: &EventId) -> Result<Option<u64>, StoreError> {
    let n = check_event_part_len(key, v)?;
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let (found, seq) = event_record(v, mid);
        match found.0.cmp(&id.0) {
            std::cmp::Ordering::Equal => return Ok(Some(seq)),
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
        }
    }
    Ok(None)
}

pub(crate) fn case_key(id: &TrackingNumber) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[0] = PREFIX_CASE;
    k[1..].copy_from_slice(&id.digits());
    k
}

/// Timeline items per `"T"` chunk. A case's items (all its applications',
/// in log order) fill chunk 0, then 1, ...; a commit rewrites only the last,
/// partly filled chunk and adds new ones, so a case costs one new key per
/// 32 events instead of one per commit, and a read costs one `get` per
/// chunk (most cases have one).
pub const TIMELINE_CHUNK_ITEMS: usize = 32;

/// `"T" tracking_number:15 chunk:u32`: chunk `chunk` of a case's timeline items.
pub(crate) fn timeline_key(id: &TrackingNumber, chunk: u32) -> Vec<u8> {
    timeline_key_of(&id.digits(), chunk)
}

/// [`timeline_key`] from the case's 15 digits (as in its case key).
pub(crate) fn timeline_key_of(digits: &[u8], chunk: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + digits.len() + 4);
    k.push(PREFIX_TIMELINE);
    k.extend_from_slice(digits);
    k.extend_from_slice(&chunk.to_be_bytes());
    k
}

pub(crate) fn standard_key(agency: &AgencyId, service: &ServiceId) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + agency.as_str().len() + service.as_str().len());
    k.push(PREFIX_STANDARD);
    k.extend_from_slice(agency.as_str().as_bytes());
    k.push(0);
    k.extend_from_slice(service.as_str().as_bytes());
    k
}

/// The head value: `last_seq u64 | last_stream_seq u64 | head_hash [32] |
/// projected_through u64 | MerkleFrontier::to_bytes`. `projected_through`
/// is the last sequence the stored case values (and standards) describe.
pub(crate) fn encode_head(h: &Head, projected_through: u64, frontier: &MerkleFrontier) -> Vec<u8> {
    let tree = frontier.to_bytes();
    let mut v = Vec::with_capacity(HEAD_FIXED_BYTES + tree.len());
    v.extend_from_slice(&h.last_seq.to_be_bytes());
    v.extend_from_slice(&h.last_stream_seq.to_be_bytes());
    v.extend_from_slice(&h.head_hash);
    v.extend_from_slice(&projected_through.to_be_bytes());
    v.extend_from_slice(&tree);
    v
}

/// Decodes the head value (see [`decode_head_value`]).
pub(crate) fn decode_head(v: &[u8]) -> Result<(Head, MerkleFrontier), StoreError> {
    decode_head_value(v).map(|(h, _, f)| (h, f))
}

/// Decodes the head value and checks that the frontier's size is the head's
/// `last_seq` and that the projection is not ahead of it.
pub(crate) fn decode_head_value(v: &[u8]) -> Result<(Head, u64, MerkleFrontier), StoreError> {
    let key = head_key();
    if v.len() < HEAD_FIXED_BYTES {
        return Err(corrupt(format!("head is {} bytes, fewer than {HEAD_FIXED_BYTES}", v.len()), &key));
    }
    let u64_at = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&v[i..i + 8]);
        u64::from_be_bytes(a)
    };
    let mut head_hash: Hash32 = [0u8; 32];
    head_hash.copy_from_slice(&v[16..48]);
    let head = Head { last_seq: u64_at(0), last_stream_seq: u64_at(8), head_hash };
    let projected_through = u64_at(48);
    if projected_through > head.last_seq {
        return Err(corrupt(
            format!("the projection is at seq {projected_through}, beyond the head at {}", head.last_seq),
            &key,
        ));
    }
    let frontier = MerkleFrontier::from_bytes(&v[HEAD_FIXED_BYTES..])
        .map_err(|e| corrupt(format!("Merkle frontier of the head: {e}"), &key))?;
    if frontier.size() != head.last_seq {
        return Err(corrupt(
            format!(
                "Merkle frontier has {} leaves but the head is at seq {}",
                frontier.size(),
                head.last_seq
            ),
            &key,
        ));
    }
    Ok((head, projected_through, frontier))
}

/// `"M" level:u8 index:u64`: the hash of a complete aligned subtree.
pub(crate) fn subtree_key(level: u32, index: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[0] = PREFIX_SUBTREE;
    // Levels are below 64 (merkle::TREE_LEVELS_MAX).
    k[1] = level as u8;
    k[2..].copy_from_slice(&index.to_be_bytes());
    k
}

pub(crate) fn decode_subtree(v: &[u8], key: &[u8]) -> Result<Hash32, StoreError> {
    v.try_into().map_err(|_| corrupt(format!("subtree hash is {} bytes, not 32", v.len()), key))
}

/// `"K" tree_size:u64`: a signed checkpoint.
pub(crate) fn checkpoint_key(tree_size: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = PREFIX_CHECKPOINT;
    k[1..].copy_from_slice(&tree_size.to_be_bytes());
    k
}

pub(crate) fn decode_checkpoint(key: &[u8], v: &[u8]) -> Result<SignedCheckpoint, StoreError> {
    let cp =
        SignedCheckpoint::decode(v).map_err(|e| corrupt(format!("checkpoint does not decode: {e}"), key))?;
    if checkpoint_key(cp.checkpoint.tree_size) != key {
        return Err(corrupt("checkpoint is stored under another tree size", key));
    }
    Ok(cp)
}

fn bincode_options() -> impl Options {
    // Varint integers, little-endian, no trailing bytes: our own format, fixed
    // here so that writer and reader always agree.
    bincode::DefaultOptions::new()
}

pub(crate) fn encode_value<T: Serialize>(v: &T, key: &[u8]) -> Result<Vec<u8>, StoreError> {
    // Serialising our own plain data types cannot fail; should it ever, the
    // commit fails without writing anything.
    bincode_options().serialize(v).map_err(|e| StoreError::InvalidBatch(format!("{}: {e}", show_key(key))))
}

pub(crate) fn decode_value<T: DeserializeOwned>(v: &[u8], key: &[u8], what: &str) -> Result<T, StoreError> {
    bincode_options().deserialize(v).map_err(|e| corrupt(format!("{what} does not decode: {e}"), key))
}

/// What the case value records of each application's timeline (in
/// application order): how many items it holds, and the log sequence of the
/// last one (0 when empty). A commit checks the new value against it, so a
/// timeline only ever grows, and a read checks the reassembled timelines.
pub(crate) type TimelineShape = Vec<(u32, u64)>;

/// The shape of `case`'s timelines.
pub(crate) fn timeline_shape(case: &Case) -> TimelineShape {
    timeline_shape_iter(case).collect()
}

/// How many timeline items a shape counts, over all applications.
pub(crate) fn shape_items(shape: &TimelineShape) -> usize {
    shape.iter().map(|(n, _)| *n as usize).sum()
}

/// [`timeline_shape`] without collecting it.
pub(crate) fn timeline_shape_iter(case: &Case) -> impl ExactSizeIterator<Item = (u32, u64)> + '_ {
    case.applications.iter().map(|a| (a.timeline.len() as u32, a.timeline.last().map_or(0, |t| t.seq)))
}

/// The case value: `bincode(TimelineShape) ++ bincode(Case) ++
/// bincode(chunk 0) [++ bincode(pin re-issues)]`, the case with every
/// application's timeline empty and no re-issues (`case` must already have
/// both taken out), then `chunk0`, the encoded first
/// [`TIMELINE_CHUNK_ITEMS`] of its timeline items (see [`timeline_items`],
/// [`encode_timeline_chunk`]; chunks 1, 2, ... live under `"T"` keys), then
/// the case's PIN re-issues when it has any re-issues or personal-data
/// reads, then its personal-data reads when it has any. A case without
/// either is encoded exactly as before they existed, and one without reads
/// as before reads existed, so stores written before are read unchanged
/// (format still v4) and an old log rebuilds to the same bytes.
pub(crate) fn encode_case_value(
    shape: &TimelineShape,
    case: &Case,
    chunk0: &[u8],
    pin_reissues: &[PinReissue],
    reads: &[DataRead],
    key: &[u8],
) -> Result<Vec<u8>, StoreError> {
    assert!(
        case.pin_reissues.is_empty() && case.personal_data_reads.is_empty(),
        "the re-issues and reads are written after chunk 0"
    );
    let mut v = encode_value(shape, key)?;
    v.extend_from_slice(&encode_value(case, key)?);
    v.extend_from_slice(chunk0);
    if !pin_reissues.is_empty() || !reads.is_empty() {
        v.extend_from_slice(&encode_value(&pin_reissues, key)?);
    }
    if !reads.is_empty() {
        v.extend_from_slice(&encode_value(&reads, key)?);
    }
    Ok(v)
}

/// The timeline shape at the front of a case value, and the rest of the value.
pub(crate) fn decode_case_shape<'v>(
    key: &[u8],
    v: &'v [u8],
) -> Result<(TimelineShape, &'v [u8]), StoreError> {
    let mut rest = v;
    let shape: TimelineShape = bincode_options()
        .deserialize_from(&mut rest)
        .map_err(|e| corrupt(format!("case timeline shape does not decode: {e}"), key))?;
    Ok((shape, rest))
}

/// One timeline chunk: up to [`TIMELINE_CHUNK_ITEMS`] items of a case, each
/// with the index of its application, in log order (see [`timeline_items`]).
pub(crate) fn encode_timeline_chunk(
    items: &[(u32, &TimelineItem)],
    key: &[u8],
) -> Result<Vec<u8>, StoreError> {
    encode_value(&items, key)
}

/// A decoded timeline chunk: items with their application's index.
type Chunk = Vec<(u32, TimelineItem)>;

/// Every timeline item of a case with its application's index, in log order
/// (by sequence; items of one sequence by application, then timeline order),
/// the order in which they fill the `"T"` chunks. New items always carry
/// sequences above the stored ones, so the stored items keep their places.
pub(crate) fn timeline_items(case: &Case) -> Vec<(u32, &TimelineItem)> {
    let mut items: Vec<(u32, &TimelineItem)> = case
        .applications
        .iter()
        .enumerate()
        .flat_map(|(i, a)| a.timeline.iter().map(move |t| (i as u32, t)))
        .collect();
    // Stable: one application's items keep their timeline order.
    items.sort_by_key(|(app, t)| (t.seq, *app));
    items
}

/// Decodes a case value and its timeline chunks (in key order) back into
/// the case, checking that the chunks rebuild exactly the recorded shape.
pub(crate) fn decode_case(key: &[u8], v: &[u8], chunks: &[Pair]) -> Result<Case, StoreError> {
    let (shape, mut rest) = decode_case_shape(key, v)?;
    // `Case::pin_reissues` is not serialised with the case: it follows.
    let mut case: Case = bincode_options()
        .deserialize_from(&mut rest)
        .map_err(|e| corrupt(format!("case does not decode: {e}"), key))?;
    let chunk0: Chunk = bincode_options()
        .deserialize_from(&mut rest)
        .map_err(|e| corrupt(format!("case's first timeline chunk does not decode: {e}"), key))?;
    if !rest.is_empty() {
        case.pin_reissues = bincode_options()
            .deserialize_from(&mut rest)
            .map_err(|e| corrupt(format!("case's PIN re-issues do not decode: {e}"), key))?;
    }
    if !rest.is_empty() {
        case.personal_data_reads = decode_value(rest, key, "case's personal-data reads")?;
    }
    if case_key(&case.tracking_number) != key {
        return Err(corrupt("case is stored under another tracking number", key));
    }
    if shape.len() != case.applications.len() {
        return Err(corrupt("case timeline shape does not match its applications", key));
    }
    let mut all: Vec<(&[u8], Chunk)> = vec![(key, chunk0)];
    for (k, c) in chunks {
        all.push((k, decode_value(c, k, "timeline chunk")?));
    }
    let count = all.len();
    for (n, (chunk_key, items)) in all.into_iter().enumerate() {
        let last = n + 1 == count;
        let empty_ok = n == 0 && last;
        if (items.is_empty() && !empty_ok)
            || items.len() > TIMELINE_CHUNK_ITEMS
            || (!last && items.len() < TIMELINE_CHUNK_ITEMS)
        {
            return Err(corrupt(format!("timeline chunk {n} of {} items", items.len()), chunk_key));
        }
        for (app, item) in items {
            let Some(a) = case.applications.get_mut(app as usize) else {
                return Err(corrupt(
                    format!("timeline chunk names application {app} of a case with fewer"),
                    chunk_key,
                ));
            };
            a.timeline.push(item);
        }
    }
    for (a, (len, last_seq)) in case.applications.iter().zip(&shape) {
        if a.timeline.len() != *len as usize || a.timeline.last().map_or(0, |t| t.seq) != *last_seq {
            return Err(corrupt(
                format!("the timeline chunks of application {} do not rebuild its recorded timeline", a.id),
                key,
            ));
        }
    }
    Ok(case)
}

/// A standard's value: `bincode(ServiceStandard) [++ bincode(Collection)]`,
/// the collection only when the standard has one, so a standard without
/// one is encoded exactly as before the field existed (format still v4).
pub(crate) fn encode_standard(s: &ServiceStandard, key: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut v = encode_value(s, key)?;
    if let Some(c) = &s.collection {
        v.extend_from_slice(&encode_value(c, key)?);
    }
    Ok(v)
}

pub(crate) fn decode_standard(key: &[u8], v: &[u8]) -> Result<ServiceStandard, StoreError> {
    let mut rest = v;
    let mut s: ServiceStandard = bincode_options()
        .allow_trailing_bytes()
        .deserialize_from(&mut rest)
        .map_err(|e| corrupt(format!("service standard does not decode: {e}"), key))?;
    if !rest.is_empty() {
        s.collection = Some(decode_value(rest, key, "service standard's collection")?);
    }
    if standard_key(&s.agency, &s.service) != key {
        return Err(corrupt("service standard is stored under another agency or service", key));
    }
    Ok(s)
}

/// Packs entries (dense, in order) into blocks: `(first_seq, block bytes)`.
pub(crate) fn encode_blocks(entries: &[LogEntry]) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < entries.len() {
        let mut records = Vec::new();
        let mut ends: Vec<u32> = Vec::new();
        let mut i = start;
        while i < entries.len() && ends.len() < BLOCK_ENTRIES_MAX && records.len() < BLOCK_BYTES_MAX {
            entries[i].encode_into(&mut records);
            // A record is at most a NATS payload (1 MiB) plus ~1 KiB of
            // fields, so a block stays far below 4 GiB.
            ends.push(records.len() as u32);
            i += 1;
        }
        let mut body = Vec::with_capacity(4 + 4 * ends.len() + records.len());
        body.extend_from_slice(&(ends.len() as u32).to_be_bytes());
        for e in &ends {
            body.extend_from_slice(&e.to_be_bytes());
        }
        body.extend_from_slice(&records);
        // Entries of one block repeat subjects, agency and service names,
        // field tags and each previous entry's hash (the next one's
        // prev_hash): LZ4 roughly halves a block, at a few hundred MB/s.
        let mut block = vec![BLOCK_FORMAT_LZ4];
        block.extend_from_slice(&lz4_flex::block::compress_prepend_size(&body));
        out.push((entries[start].seq, block));
        start = i;
    }
    out
}

/// A block read back: its first sequence and the offsets of its records.
#[derive(Debug)]
pub(crate) struct Block<'a> {
    first_seq: u64,
    key: [u8; 9],
    ends: Vec<usize>,
    /// The block body; its records start at `records_start`.
    body: std::borrow::Cow<'a, [u8]>,
    records_start: usize,
}

impl<'a> Block<'a> {
    /// Parses and checks the block header.
    pub(crate) fn parse(first_seq: u64, bytes: &'a [u8]) -> Result<Self, StoreError> {
        let key = log_key(first_seq);
        let bad = |what: &str| corrupt(format!("log block {what}"), &key);
        let (&format, rest) = bytes.split_first().ok_or_else(|| bad("is empty"))?;
        let body: std::borrow::Cow<'a, [u8]> = match format {
            BLOCK_FORMAT_V1 => rest.into(),
            BLOCK_FORMAT_LZ4 => {
                let size_bytes: [u8; 4] =
                    rest.get(..4).and_then(|b| b.try_into().ok()).ok_or_else(|| bad("size is truncated"))?;
                let size = u32::from_le_bytes(size_bytes) as usize;
                if size > BLOCK_BODY_BYTES_MAX {
                    return Err(bad(&format!("claims {size} uncompressed bytes")));
                }
                let body = lz4_flex::block::decompress(&rest[4..], size)
                    .map_err(|e| bad(&format!("does not decompress: {e}")))?;
                if body.len() != size {
                    return Err(bad("decompresses to another size than it claims"));
                }
                body.into()
            }
            other => return Err(bad(&format!("has unknown format {other}"))),
        };
        let (ends, records_start) = parse_block_header(&body, &bad)?;
        Ok(Block { first_seq, key, ends, body, records_start })
    }
}

/// The record end offsets of a block body (`u32 count | u32 * count ends |
/// records`) and where its records start; checks every offset.
fn parse_block_header(
    body: &[u8],
    bad: &dyn Fn(&str) -> StoreError,
) -> Result<(Vec<usize>, usize), StoreError> {
    let count_bytes: [u8; 4] =
        body.get(..4).and_then(|b| b.try_into().ok()).ok_or_else(|| bad("header is truncated"))?;
    let count = u32::from_be_bytes(count_bytes) as usize;
    if count == 0 || count > BLOCK_ENTRIES_MAX {
        return Err(bad(&format!("claims {count} entries")));
    }
    let offsets_end = 4 + 4 * count;
    let offsets = body.get(4..offsets_end).ok_or_else(|| bad("offsets are truncated"))?;
    let records_len = body.len() - offsets_end;
    let mut ends = Vec::with_capacity(count);
    let mut prev = 0usize;
    for chunk in offsets.chunks_exact(4) {
        let end = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) as usize;
        if end <= prev || end > records_len {
            return Err(bad("offsets are out of order or out of bounds"));
        }
        ends.push(end);
        prev = end;
    }
    if prev != records_len {
        return Err(bad("has bytes after its last record"));
    }
    Ok((ends, offsets_end))
}

impl Block<'_> {
    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// The sequence after the block's last entry.
    pub(crate) fn end_seq(&self) -> u64 {
        self.first_seq + self.ends.len() as u64
    }

    /// Decodes the entry at index `i` (sequence `first_seq + i`).
    pub(crate) fn entry(&self, i: usize) -> Result<LogEntry, StoreError> {
        let end = *self.ends.get(i).ok_or_else(|| corrupt("log block index out of range", &self.key))?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        let records = &self.body[self.records_start..];
        let e = LogEntry::decode(&records[start..end])
            .map_err(|err| corrupt(format!("log entry {i} of block: {err}"), &self.key))?;
        let want = self.first_seq + i as u64;
        if e.seq != want {
            return Err(corrupt(
                format!("log entry {i} of block has seq {}, expected {want}", e.seq),
                &self.key,
            ));
        }
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use mpp_core::log::{Verdict, GENESIS_HASH};

    use super::*;

    fn entries(from: u64, n: usize, payload_bytes: usize) -> Vec<LogEntry> {
        let mut prev = GENESIS_HASH;
        (0..n as u64)
            .map(|i| {
                let e = LogEntry::new(
                    from + i,
                    100 + from + i,
                    1_700_000_000_000_000_000,
                    Verdict::Accepted,
                    None,
                    "",
                    "mpp.events.a.b",
                    vec![7u8; payload_bytes],
                    prev,
                );
                prev = e.hash;
                e
            })
            .collect()
    }

    #[test]
    fn pin_reissues_follow_chunk_zero_only_when_a_case_has_any() {
        let tn = TrackingNumber::new(mpp_core::RegionCode::parse("1771").unwrap(), 42).unwrap();
        let mut case = Case {
            tracking_number: tn,
            opened_by: AgencyId::parse("frontoffice").unwrap(),
            opened_at_ms: 5,
            opened_seq: 1,
            pin_verifier: vec![7; 33],
            nik_keyed_hash: vec![8; 32],
            updated_at_ms: 6,
            last_seq: 9,
            applications: Vec::new(),
            personal_data: mpp_core::PersonalData::None,
            pin_reissues: Vec::new(),
            personal_data_reads: Vec::new(),
        };
        let key = case_key(&tn);
        let chunk0 = encode_timeline_chunk(&[], &key).unwrap();
        let shape = timeline_shape(&case);
        // Without re-issues: the value a store before them wrote.
        let before = encode_case_value(&shape, &case, &chunk0, &[], &[], &key).unwrap();
        assert_eq!(decode_case(&key, &before, &[]).unwrap(), case);
        // With them: the same bytes, then the re-issues.
        let reissues = [PinReissue { seq: 9, at_ms: 6 }, PinReissue { seq: 12, at_ms: 70 }];
        let after = encode_case_value(&shape, &case, &chunk0, &reissues, &[], &key).unwrap();
        assert_eq!(&after[..before.len()], &before[..]);
        assert!(after.len() > before.len());
        case.pin_reissues = reissues.to_vec();
        assert_eq!(decode_case(&key, &after, &[]).unwrap(), case);
        // A damaged tail is corrupt, not a panic.
        assert!(decode_case(&key, &[&after[..], &[0xFF]].concat(), &[]).is_err());
        // Personal-data reads follow the re-issues: the value with them
        // starts with the value without.
        let reads = [DataRead { seq: 13, at_ms: 80, client_id: "loket-1771".into() }];
        let with_reads = encode_case_value(
            &shape,
            &Case { pin_reissues: Vec::new(), ..case.clone() },
            &chunk0,
            &reissues,
            &reads,
            &key,
        )
        .unwrap();
        assert_eq!(&with_reads[..after.len()], &after[..]);
        case.personal_data_reads = reads.to_vec();
        assert_eq!(decode_case(&key, &with_reads, &[]).unwrap(), case);
        // Reads without re-issues: an empty list of re-issues comes first.
        let mut no_reissues = case.clone();
        no_reissues.pin_reissues = Vec::new();
        let reads_only = encode_case_value(
            &shape,
            &Case { personal_data_reads: Vec::new(), ..no_reissues.clone() },
            &chunk0,
            &[],
            &reads,
            &key,
        )
        .unwrap();
        assert_eq!(decode_case(&key, &reads_only, &[]).unwrap(), no_reissues);
    }

    #[test]
    fn blocks_round_trip_and_split_at_the_byte_limit() {
        let es = entries(5, 40, 100 * 1024);
        let blocks = encode_blocks(&es);
        // 1 MiB / ~100 KiB per entry: 11 entries per block (the one that
        // crosses the limit closes the block).
        assert!(blocks.len() >= 3, "expected several blocks, got {}", blocks.len());
        let mut next = 5u64;
        for (first, bytes) in &blocks {
            assert_eq!(*first, next);
            let b = Block::parse(*first, bytes).unwrap();
            for i in 0..b.len() {
                assert_eq!(b.entry(i).unwrap(), es[(first - 5) as usize + i]);
            }
            next = b.end_seq();
        }
        assert_eq!(next, 45);
    }

    #[test]
    fn blocks_split_at_the_entry_limit() {
        let es = entries(1, BLOCK_ENTRIES_MAX + 3, 0);
        let blocks = encode_blocks(&es);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[1].0, BLOCK_ENTRIES_MAX as u64 + 1);
    }

    #[test]
    fn blocks_are_compressed_and_claims_are_bounded() {
        let es = entries(1, 40, 200);
        let blocks = encode_blocks(&es);
        let raw: usize = es.iter().map(|e| e.encode().len()).sum();
        let stored: usize = blocks.iter().map(|(_, b)| b.len()).sum();
        assert!(stored < raw, "{stored} bytes stored for {raw} of records");
        // The same body uncompressed (format 1) still reads.
        let b = Block::parse(1, &blocks[0].1).unwrap();
        let mut v1 = vec![BLOCK_FORMAT_V1];
        v1.extend_from_slice(&lz4_flex::block::decompress_size_prepended(&blocks[0].1[1..]).unwrap());
        let b1 = Block::parse(1, &v1).unwrap();
        assert_eq!(b1.len(), b.len());
        assert_eq!(b1.entry(3).unwrap(), es[3]);
        // A size claim beyond any block is refused before decompressing.
        let mut huge = vec![BLOCK_FORMAT_LZ4];
        huge.extend_from_slice(&(BLOCK_BODY_BYTES_MAX as u32 + 1).to_le_bytes());
        huge.extend_from_slice(&[0u8; 16]);
        assert!(matches!(Block::parse(1, &huge), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn damaged_blocks_are_corrupt_not_panics() {
        let es = entries(1, 3, 10);
        let (_, bytes) = encode_blocks(&es).remove(0);
        for cut in 0..bytes.len() {
            let r = Block::parse(1, &bytes[..cut])
                .and_then(|b| (0..b.len()).try_for_each(|i| b.entry(i).map(drop)));
            assert!(matches!(r, Err(StoreError::Corrupt { .. })), "cut at {cut} gave {r:?}");
        }
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x40;
            let r =
                Block::parse(1, &damaged).and_then(|b| (0..b.len()).try_for_each(|i| b.entry(i).map(drop)));
            assert!(r.is_err(), "flipping byte {i} went unnoticed");
        }
        // The right bytes under the wrong key.
        let b = Block::parse(2, &bytes).unwrap();
        assert!(matches!(b.entry(0), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn head_round_trips_and_rejects_wrong_lengths() {
        let mut f = MerkleFrontier::new();
        for i in 0..9u8 {
            f.push([i; 32]).unwrap();
        }
        let h = Head { last_seq: 9, last_stream_seq: 12, head_hash: [3u8; 32] };
        assert_eq!(decode_head(&encode_head(&h, 0, &f)).unwrap(), (h, f.clone()));
        assert_eq!(decode_head_value(&encode_head(&h, 7, &f)).unwrap(), (h, 7, f.clone()));
        // A projection ahead of the log.
        assert!(decode_head(&encode_head(&h, 10, &f)).is_err());
        assert!(decode_head(&[0u8; 55]).is_err());
        // A frontier of another size than the head's last_seq.
        let h10 = Head { last_seq: 10, ..h };
        assert!(decode_head(&encode_head(&h10, 0, &f)).is_err());
        // Trailing or missing frontier bytes.
        let mut v = encode_head(&h, 0, &f);
        v.push(0);
        assert!(decode_head(&v).is_err());
        assert!(decode_head(&v[..HEAD_FIXED_BYTES]).is_err());
    }

    #[test]
    fn keys_sort_by_sequence() {
        assert!(log_key(255) < log_key(256));
        assert_eq!(log_key_seq(&log_key(1 << 40)), Some(1 << 40));
        assert_eq!(log_key_seq(&event_part_key(0, 0)), None);
        assert_eq!(show_key(&log_key(1)), "L:0000000000000001");
        assert!(subtree_key(6, 255) < subtree_key(6, 256));
        assert!(subtree_key(6, u64::MAX) < subtree_key(7, 0));
        assert!(checkpoint_key(255) < checkpoint_key(256));
    }
}
