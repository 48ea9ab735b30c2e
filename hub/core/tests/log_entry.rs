//! The log entry's canonical encoding and hash chain.

mod common;

use common::accepted_chain;
use mpp_core::limits;
use mpp_core::log::{
    hash_canonical, EntryDecodeError, Hash32, ENTRY_FORMAT_V1, ENTRY_HASH_DOMAIN, GENESIS_HASH,
};
use mpp_core::{LogEntry, ReasonCode, Redrive, Verdict};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

fn small(prev_hash: Hash32) -> LogEntry {
    LogEntry::new(
        7,
        1_042,
        1_750_000_000_123_456_789,
        Verdict::Rejected,
        Some(ReasonCode::IllegalTransition),
        "issued is not allowed in state submitted",
        "mpp.events.dukcapil.kk",
        vec![0x0a, 0x03, b'a', b'b', b'c'],
        prev_hash,
    )
}

#[test]
fn the_encoding_is_the_documented_one() {
    let prev = [0xab; 32];
    let e = small(prev);
    let mut want = vec![ENTRY_FORMAT_V1];
    want.extend_from_slice(&7u64.to_be_bytes());
    want.extend_from_slice(&1_042u64.to_be_bytes());
    want.extend_from_slice(&1_750_000_000_123_456_789i64.to_be_bytes());
    want.push(2);
    for s in ["ILLEGAL_TRANSITION", "issued is not allowed in state submitted", "mpp.events.dukcapil.kk"] {
        want.extend_from_slice(&(s.len() as u16).to_be_bytes());
        want.extend_from_slice(s.as_bytes());
    }
    want.extend_from_slice(&5u32.to_be_bytes());
    want.extend_from_slice(&[0x0a, 0x03, b'a', b'b', b'c']);
    want.extend_from_slice(&prev);
    let mut canonical = Vec::new();
    e.write_canonical(&mut canonical);
    assert_eq!(canonical, want);

    let hash: Hash32 =
        Sha256::new().chain_update(b"mpp-hub/log-entry/v1\0").chain_update(&want).finalize().into();
    assert_eq!(ENTRY_HASH_DOMAIN, b"mpp-hub/log-entry/v1\0");
    assert_eq!(e.hash, hash);
    assert_eq!(hash_canonical(&want), hash);
    want.extend_from_slice(&hash);
    assert_eq!(e.encode(), want);
    let mut appended = vec![9, 9];
    e.encode_into(&mut appended);
    assert_eq!(&appended[2..], &want[..]);
}

#[test]
fn an_accepted_entry_has_an_empty_reason() {
    let e = LogEntry::new(1, 1, 0, Verdict::Accepted, None, "", "mpp.events.a.b", vec![], GENESIS_HASH);
    let bytes = e.encode();
    // format, 3 × u64, verdict, then a zero length for the reason.
    assert_eq!(&bytes[25..28], &[1, 0, 0]);
    assert_eq!(LogEntry::decode(&bytes), Ok(e));
}

#[test]
fn flipping_any_byte_of_a_record_is_detected() {
    let e = small([0x11; 32]);
    let bytes = e.encode();
    for i in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[i] ^= mask;
            match LogEntry::decode(&b) {
                Err(_) => {}
                Ok(d) => panic!("byte {i} ^ {mask:#x} decoded to {d:?}"),
            }
        }
    }
    // Flips in the fixed-size fields and the texts are hash mismatches.
    for i in (1..25).chain(bytes.len() - 64..bytes.len()) {
        let mut b = bytes.clone();
        b[i] ^= 0x01;
        assert_eq!(LogEntry::decode(&b), Err(EntryDecodeError::HashMismatch), "byte {i}");
    }
}

#[test]
fn any_truncation_is_an_error() {
    let bytes = small(GENESIS_HASH).encode();
    for n in 0..bytes.len() {
        assert_eq!(LogEntry::decode(&bytes[..n]), Err(EntryDecodeError::Truncated), "first {n} bytes");
        assert_eq!(LogEntry::decode_prefix(&bytes[..n]).map(|(_, n)| n), Err(EntryDecodeError::Truncated));
    }
}

#[test]
fn trailing_bytes_are_refused_by_decode_and_left_by_decode_prefix() {
    let e = small(GENESIS_HASH);
    let mut bytes = e.encode();
    let len = bytes.len();
    bytes.extend_from_slice(&small(e.hash).encode());
    assert_eq!(LogEntry::decode(&bytes), Err(EntryDecodeError::Trailing));
    let (first, used) = LogEntry::decode_prefix(&bytes).expect("first record");
    assert_eq!((first, used), (e.clone(), len));
    let (second, used2) = LogEntry::decode_prefix(&bytes[used..]).expect("second record");
    assert_eq!(used + used2, bytes.len());
    assert_eq!(second.prev_hash, e.hash);
}

/// Seals hand-made canonical bytes with a correct hash, so decoding gets
/// past the hash check to the field checks.
fn sealed(canonical: &[u8]) -> Vec<u8> {
    let mut b = canonical.to_vec();
    b.extend_from_slice(&hash_canonical(canonical));
    b
}

fn canonical_with(verdict: u8, reason: &[u8], detail: &[u8]) -> Vec<u8> {
    let mut b = vec![ENTRY_FORMAT_V1];
    b.extend_from_slice(&[0; 24]);
    b.push(verdict);
    for s in [reason, detail, b"mpp.events.a.b"] {
        b.extend_from_slice(&(s.len() as u16).to_be_bytes());
        b.extend_from_slice(s);
    }
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&[0; 32]);
    b
}

#[test]
fn field_errors_are_named() {
    assert!(LogEntry::decode(&sealed(&canonical_with(2, b"ILLEGAL_TRANSITION", b"x"))).is_ok());
    assert_eq!(
        LogEntry::decode(&sealed(&canonical_with(0, b"", b""))),
        Err(EntryDecodeError::UnknownVerdict(0))
    );
    assert_eq!(
        LogEntry::decode(&sealed(&canonical_with(4, b"", b""))),
        Err(EntryDecodeError::UnknownVerdict(4))
    );
    assert_eq!(
        LogEntry::decode(&sealed(&canonical_with(2, b"NOT_A_CODE", b""))),
        Err(EntryDecodeError::UnknownReason)
    );
    assert_eq!(
        LogEntry::decode(&sealed(&canonical_with(2, b"illegal_transition", b""))),
        Err(EntryDecodeError::UnknownReason)
    );
    assert_eq!(LogEntry::decode(&sealed(&canonical_with(2, b"\xff", b""))), Err(EntryDecodeError::NotUtf8));
    assert_eq!(
        LogEntry::decode(&sealed(&canonical_with(2, b"", b"caf\xc3"))),
        Err(EntryDecodeError::NotUtf8)
    );
    let mut v3 = canonical_with(1, b"", b"");
    v3[0] = 3;
    assert_eq!(LogEntry::decode(&sealed(&v3)), Err(EntryDecodeError::UnknownFormat(3)));
    // Format 2 needs the redrive fields after prev_hash.
    let mut v2 = canonical_with(1, b"", b"");
    v2[0] = 2;
    assert_eq!(LogEntry::decode(&sealed(&v2)), Err(EntryDecodeError::Truncated));
    // A payload length that runs past the end, even near u32::MAX.
    let mut huge = small(GENESIS_HASH).encode();
    let at = huge.len() - 64 - 5 - 4;
    huge[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(LogEntry::decode(&huge), Err(EntryDecodeError::Truncated));
}

#[test]
fn new_truncates_detail_and_subject_at_char_boundaries() {
    let detail = "é".repeat(limits::DETAIL_BYTES_MAX); // twice the limit in bytes
    let subject = format!("mpp.events.{}", "👍".repeat(limits::SUBJECT_BYTES_MAX));
    let e = LogEntry::new(
        1,
        1,
        0,
        Verdict::Rejected,
        Some(ReasonCode::BadSubject),
        &detail,
        &subject,
        vec![],
        GENESIS_HASH,
    );
    assert_eq!(e.detail.len(), limits::DETAIL_BYTES_MAX);
    assert!(e.subject.len() <= limits::SUBJECT_BYTES_MAX && e.subject.len() > limits::SUBJECT_BYTES_MAX - 4);
    assert!(subject.starts_with(&e.subject));
    assert_eq!(LogEntry::decode(&e.encode()), Ok(e));
}

#[test]
fn every_field_is_committed_to_by_the_hash() {
    let base = small(GENESIS_HASH);
    // `base` with one field changed, built (and so hashed) afresh.
    let with = |change: &dyn Fn(&mut LogEntry)| {
        let mut e = base.clone();
        change(&mut e);
        let (detail, subject, payload) = (e.detail.clone(), e.subject.clone(), e.payload.clone());
        LogEntry::new(
            e.seq,
            e.stream_seq,
            e.stream_time_ns,
            e.verdict,
            e.reason,
            &detail,
            &subject,
            payload,
            e.prev_hash,
        )
    };
    let variants = [
        with(&|e| e.seq = 8),
        with(&|e| e.stream_seq = 1_043),
        with(&|e| e.stream_time_ns += 1),
        with(&|e| e.verdict = Verdict::Duplicate),
        with(&|e| e.reason = Some(ReasonCode::UnknownCase)),
        with(&|e| e.reason = None),
        with(&|e| e.detail = "other".into()),
        with(&|e| e.subject = "mpp.events.x.y".into()),
        with(&|e| e.payload = vec![]),
        with(&|e| e.prev_hash = [1; 32]),
        // Moving bytes between adjacent length-prefixed fields.
        with(&|e| {
            e.detail = "issued is not allowed in state submittedm".into();
            e.subject = "pp.events.dukcapil.kk".into();
        }),
    ];
    for v in &variants {
        assert_ne!(v.hash, base.hash, "{v:?}");
    }
    let same = small(GENESIS_HASH);
    assert_eq!(same.hash, base.hash, "the hash is a pure function of the fields");
}

#[test]
fn recorded_at_ms_floors() {
    let at = |ns: i64| {
        LogEntry::new(1, 1, ns, Verdict::Accepted, None, "", "", vec![], GENESIS_HASH).recorded_at_ms()
    };
    assert_eq!(at(1_750_000_000_999_999_999), 1_750_000_000_999);
    assert_eq!(at(0), 0);
    assert_eq!(at(-1), -1);
    assert_eq!(at(i64::MIN), i64::MIN.div_euclid(1_000_000));
}

#[test]
fn verdict_bytes_round_trip() {
    for v in [Verdict::Accepted, Verdict::Rejected, Verdict::Duplicate] {
        assert_eq!(Verdict::from_u8(v.as_u8()), Some(v));
        assert!(!v.as_str().is_empty());
    }
    let known = (0..=255u8).filter(|b| Verdict::from_u8(*b).is_some()).count();
    assert_eq!(known, 3);
}

/// What an auditor checks: every record decodes, sequences are dense and
/// each links to the one before. Returns the first bad sequence.
fn verify(records: &[Vec<u8>]) -> Result<Hash32, u64> {
    let mut prev = GENESIS_HASH;
    for (i, r) in records.iter().enumerate() {
        let seq = i as u64 + 1;
        let e = LogEntry::decode(r).map_err(|_| seq)?;
        if e.seq != seq || e.prev_hash != prev {
            return Err(seq);
        }
        prev = e.hash;
    }
    Ok(prev)
}

#[test]
fn entries_chain_through_prev_hash() {
    let entries = accepted_chain(10, "mpp.events.dukcapil.kk", |seq| seq.to_be_bytes().to_vec());
    assert_eq!(entries[0].prev_hash, GENESIS_HASH);
    for w in entries.windows(2) {
        assert_eq!(w[1].prev_hash, w[0].hash);
    }
    let records: Vec<Vec<u8>> = entries.iter().map(LogEntry::encode).collect();
    assert_eq!(verify(&records), Ok(entries[9].hash));

    // Rewriting entry 4 with a valid hash of its own breaks the link at 5.
    let mut forged = records.clone();
    let e = &entries[3];
    forged[3] = LogEntry::new(
        e.seq,
        e.stream_seq,
        e.stream_time_ns,
        e.verdict,
        e.reason,
        "",
        &e.subject,
        b"forged".to_vec(),
        e.prev_hash,
    )
    .encode();
    assert_eq!(verify(&forged), Err(5));

    // Removing or swapping entries is caught too.
    let mut removed = records.clone();
    removed.remove(6);
    assert_eq!(verify(&removed), Err(7));
    let mut swapped = records.clone();
    swapped.swap(2, 3);
    assert_eq!(verify(&swapped), Err(3));

    // Changing anything earlier changes the head.
    let mut other = accepted_chain(10, "mpp.events.dukcapil.kk", |seq| seq.to_be_bytes().to_vec());
    other[0] =
        LogEntry::new(1, 101, 0, Verdict::Accepted, None, "", "mpp.events.dukcapil.kk", vec![], GENESIS_HASH);
    assert_ne!(other[0].hash, entries[0].hash);
}

fn arb_entry() -> impl Strategy<Value = LogEntry> {
    let reason = prop_oneof![Just(None), proptest::sample::select(ReasonCode::ALL).prop_map(Some)];
    let verdict = proptest::sample::select(vec![Verdict::Accepted, Verdict::Rejected, Verdict::Duplicate]);
    let payload = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec(any::<u8>(), 0..(limits::MESSAGE_BYTES_MAX * 3)),
    ];
    (
        (any::<u64>(), any::<u64>(), any::<i64>(), verdict, reason),
        ("\\PC{0,600}", "\\PC{0,300}", payload, any::<[u8; 32]>()),
    )
        .prop_map(|((seq, stream_seq, ns, verdict, reason), (detail, subject, payload, prev))| {
            LogEntry::new(seq, stream_seq, ns, verdict, reason, &detail, &subject, payload, prev)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn encode_decode_round_trips(e in arb_entry()) {
        let bytes = e.encode();
        prop_assert!(e.detail.len() <= limits::DETAIL_BYTES_MAX);
        prop_assert!(e.subject.len() <= limits::SUBJECT_BYTES_MAX);
        prop_assert_eq!(LogEntry::decode(&bytes), Ok(e.clone()));
        let mut canonical = Vec::new();
        e.write_canonical(&mut canonical);
        prop_assert_eq!(&bytes[..bytes.len() - 32], &canonical[..]);
        prop_assert_eq!(hash_canonical(&canonical), e.hash);
    }

    #[test]
    fn a_flipped_byte_never_decodes(e in arb_entry(), at in any::<prop::sample::Index>(), mask in 1u8..=255) {
        let mut bytes = e.encode();
        let i = at.index(bytes.len());
        bytes[i] ^= mask;
        prop_assert!(LogEntry::decode(&bytes).is_err(), "byte {} ^ {:#x}", i, mask);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = LogEntry::decode(&bytes);
    }
}

#[test]
fn a_redrive_is_format_2_and_everything_else_stays_format_1() {
    let plain = small(GENESIS_HASH);
    assert_eq!(plain.encode()[0], 1);
    let redrive = Redrive { of_seq: 7, operator: "op-1".to_owned() };
    let e = small(GENESIS_HASH).with_redrive(Some(redrive.clone()));
    let bytes = e.encode();
    assert_eq!(bytes[0], 2);
    assert_ne!(e.hash, plain.hash, "the redrive fields are hashed");
    let back = LogEntry::decode(&bytes).unwrap();
    assert_eq!(back.redrive, Some(redrive));
    assert_eq!(back, e);
    // Every field of the redrive is covered by the hash.
    let other_op = small(GENESIS_HASH).with_redrive(Some(Redrive { of_seq: 7, operator: "op-2".to_owned() }));
    let other_seq =
        small(GENESIS_HASH).with_redrive(Some(Redrive { of_seq: 8, operator: "op-1".to_owned() }));
    assert_ne!(other_op.hash, e.hash);
    assert_ne!(other_seq.hash, e.hash);
    // `None` changes nothing.
    assert_eq!(small(GENESIS_HASH).with_redrive(None), plain);
}
