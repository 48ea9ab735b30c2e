//! Fuzz targets of the hub's edge: protobuf bytes to a verdict. Proptest
//! driven, so they run in the ordinary test suite (few cases) and, with
//! more, as long fuzzing runs:
//!
//! ```text
//! MPP_FUZZ_CASES=2000000 MPP_FUZZ_SECONDS=60 \
//!     cargo test --release -p mpp-ledger --test fuzz -- --nocapture --test-threads 1
//! ```
//!
//! Properties: decoding any bytes as an `mpp.v1.Envelope`, converting it
//! ([`wire::to_unchecked`]) and validating it never panics, and an accepted
//! envelope re-encodes to an envelope that validates the same; any sequence
//! of field-mutated valid envelopes through the full [`Ledger`] never panics,
//! gives exactly one log entry per message, changes nothing on a rejection,
//! and rebuilds to the same projection. A failure prints the seed
//! (`MPP_FUZZ_SEED` replays it).

use bytes::Bytes;
use mpp_core::log::Verdict;
use mpp_core::validate::validate;
use mpp_core::{RegionCode, TrackingNumber};
use mpp_ledger::ledger::{self, Ledger, RawMessage};
use mpp_proto::v1::envelope::Body as B;
use mpp_proto::v1::{self as pb, Envelope};
use mpp_store::{MemStore, Store};
use mpp_test_support::fuzz::fuzz;
use mpp_wire as wire;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use prost::Message as _;

/// Time of record of message 1, Unix ms (2025-06-16T02:00Z).
const RECORD_MS: i64 = 1_750_039_200_000;

fn tracking(serial: u64) -> String {
    RegionCode::parse("1771")
        .ok()
        .and_then(|r| TrackingNumber::new(r, serial))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn event_id(n: u64) -> String {
    let ms = RECORD_MS as u64 + n;
    let hex = format!("{ms:012x}");
    format!("{}-{}-7{:03x}-{:04x}-{:012x}", &hex[..8], &hex[8..], n & 0xfff, 0x8000 | (n & 0x3fff), n)
}

/// A valid envelope of kind `kind` on case `case`, application `app`.
fn valid(n: u64, kind: u8, case: u64, app: u8) -> Envelope {
    let body = match kind % 12 {
        0 => B::ServiceStandardPublished(pb::ServiceStandardPublished {
            name_id: "Kartu Keluarga".to_owned(),
            name_en: "Family card".to_owned(),
            completion_working_days: 5,
            fee_idr: 0,
            requirements: vec!["KTP-el".to_owned()],
            fiktif_positif: false,
            version: (n % 1000) as u32 + 1,
            collection: None,
        }),
        1 => B::CaseOpened(pb::CaseOpened { pin_verifier: vec![1; 32], nik_keyed_hash: vec![2; 32] }),
        2 | 3 => B::ApplicationFiled(pb::ApplicationFiled { documents: vec!["surat pengantar".to_owned()] }),
        4 => B::DocumentsRequested(pb::DocumentsRequested {
            documents: vec!["akta".to_owned()],
            counter: "Loket 3".to_owned(),
            note: String::new(),
        }),
        5 => B::DocumentsReceived(pb::DocumentsReceived { documents: vec!["akta".to_owned()] }),
        6 => B::ReviewStarted(pb::ReviewStarted {}),
        7 => B::FeeAssessed(pb::FeeAssessed {
            amount_idr: 50_000,
            payment_channel: "Bank".to_owned(),
            billing_code: "B-1".to_owned(),
            due_at_ms: 0,
        }),
        8 => {
            B::PaymentReceived(pb::PaymentReceived { amount_idr: 50_000, payment_reference: "P".to_owned() })
        }
        9 => B::Issued(pb::Issued { document_number: "KK-1".to_owned() }),
        10 => B::Collected(pb::Collected {}),
        _ => B::Withdrawn(pb::Withdrawn { reason: "batal".to_owned() }),
    };
    let (case_id, application_id) = match kind % 12 {
        0 => (String::new(), String::new()),
        1 => (tracking(case), String::new()),
        _ => (tracking(case), format!("A-{app}")),
    };
    Envelope {
        schema_version: 1,
        event_id: event_id(n),
        case_id,
        region_code: "1771".to_owned(),
        agency_id: "dukcapil".to_owned(),
        service_id: "kk".to_owned(),
        application_id,
        occurred_at_ms: RECORD_MS,
        officer: "petugas-7".to_owned(),
        body: Some(body),
        signature: None,
    }
}

/// A field-level mutation of an envelope.
#[derive(Debug, Clone)]
enum FieldMutation {
    SchemaVersion(u32),
    EventId(String),
    ReuseEventId(u64),
    CaseId(String),
    Region(String),
    Agency(String),
    Service(String),
    Application(String),
    OccurredAt(i64),
    Officer(String),
    NoBody,
    Amount(i64),
    Documents(Vec<String>),
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z0-9-]{1,12}",
        "\\PC{0,40}",
        ".{0,20}",
        (1usize..600).prop_map(|n| "x".repeat(n)),
    ]
}

fn field_mutation() -> impl Strategy<Value = FieldMutation> {
    use FieldMutation as M;
    prop_oneof![
        prop_oneof![Just(0u32), Just(2u32), any::<u32>()].prop_map(M::SchemaVersion),
        text().prop_map(M::EventId),
        (0u64..64).prop_map(M::ReuseEventId),
        prop_oneof![(0u64..6).prop_map(tracking), text()].prop_map(M::CaseId),
        prop_oneof![Just("3171".to_owned()), text()].prop_map(M::Region),
        prop_oneof![Just("bpn".to_owned()), text()].prop_map(M::Agency),
        prop_oneof![Just("ktp-el".to_owned()), text()].prop_map(M::Service),
        prop_oneof![(0u8..4).prop_map(|a| format!("A-{a}")), text()].prop_map(M::Application),
        any::<i64>().prop_map(M::OccurredAt),
        text().prop_map(M::Officer),
        Just(M::NoBody),
        any::<i64>().prop_map(M::Amount),
        proptest::collection::vec(text(), 0..40).prop_map(M::Documents),
    ]
}

fn apply_mutation(e: &mut Envelope, m: &FieldMutation) {
    use FieldMutation as M;
    match m {
        M::SchemaVersion(v) => e.schema_version = *v,
        M::EventId(s) => e.event_id = s.clone(),
        M::ReuseEventId(n) => e.event_id = event_id(*n),
        M::CaseId(s) => e.case_id = s.clone(),
        M::Region(s) => e.region_code = s.clone(),
        M::Agency(s) => e.agency_id = s.clone(),
        M::Service(s) => e.service_id = s.clone(),
        M::Application(s) => e.application_id = s.clone(),
        M::OccurredAt(t) => e.occurred_at_ms = *t,
        M::Officer(s) => e.officer = s.clone(),
        M::NoBody => e.body = None,
        M::Amount(a) => match e.body.as_mut() {
            Some(B::FeeAssessed(f)) => f.amount_idr = *a,
            Some(B::PaymentReceived(p)) => p.amount_idr = *a,
            Some(B::ServiceStandardPublished(s)) => s.fee_idr = *a,
            _ => {}
        },
        M::Documents(d) => match e.body.as_mut() {
            Some(B::ApplicationFiled(f)) => f.documents = d.clone(),
            Some(B::DocumentsRequested(r)) => r.documents = d.clone(),
            Some(B::DocumentsReceived(r)) => r.documents = d.clone(),
            _ => {}
        },
    }
}

/// Byte mutations on top of an encoding.
fn byte_mutations() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    proptest::collection::vec((any::<usize>(), 0u8..4, any::<u8>()), 0..4)
}

fn mutate_bytes(b: &mut Vec<u8>, ms: &[(usize, u8, u8)]) {
    for &(at, op, v) in ms {
        let n = b.len();
        match op {
            0 if n > 0 => b[at % n] ^= v | 1,
            1 => b.insert(at % (n + 1), v),
            2 if n > 0 => {
                b.remove(at % n);
            }
            3 => b.truncate(at % (n + 1)),
            _ => {}
        }
    }
}

fn envelope_bytes() -> impl Strategy<Value = (String, Vec<u8>)> {
    let subject = prop_oneof![
        4 => Just("mpp.events.dukcapil.kk".to_owned()),
        1 => "mpp\\.events\\.[a-z.]{0,12}",
        1 => "\\PC{0,150}",
    ];
    let bytes = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        (
            0u64..1000,
            any::<u8>(),
            0u64..4,
            0u8..3,
            proptest::collection::vec(field_mutation(), 0..3),
            byte_mutations()
        )
            .prop_map(|(n, kind, case, app, fields, bytes)| {
                let mut e = valid(n, kind, case, app);
                fields.iter().for_each(|m| apply_mutation(&mut e, m));
                let mut b = e.encode_to_vec();
                mutate_bytes(&mut b, &bytes);
                b
            }),
    ];
    (subject, bytes)
}

#[test]
fn fuzz_envelope_decode_and_validate() {
    fuzz("envelope_decode_validate", 3_000, envelope_bytes(), |(subject, bytes)| {
        let Ok(decoded) = pb::Envelope::decode(bytes.as_slice()) else { return Ok(()) };
        let u = wire::to_unchecked(&decoded);
        if let Ok(env) = validate(&subject, &u, RECORD_MS) {
            // What was accepted survives a round trip through the wire form.
            let again = wire::to_unchecked(
                &pb::Envelope::decode(wire::from_unchecked(&u).encode_to_vec().as_slice())
                    .map_err(|e| TestCaseError::fail(e.to_string()))?,
            );
            prop_assert_eq!(validate(&subject, &again, RECORD_MS), Ok(env));
        }
        Ok(())
    });
}

/// One message of a fuzzed stream: a field-mutated valid envelope (or not
/// mutated at all), on its subject or another.
fn stream_message() -> impl Strategy<Value = (bool, Vec<u8>)> {
    (
        prop_oneof![9 => Just(true), 1 => Just(false)],
        0u64..64,
        any::<u8>(),
        0u64..4,
        0u8..3,
        prop_oneof![3 => Just(Vec::new()), 2 => proptest::collection::vec(field_mutation(), 1..3)],
        prop_oneof![9 => Just(Vec::new()), 1 => byte_mutations()],
    )
        .prop_map(|(own_subject, n, kind, case, app, fields, bytes)| {
            let mut e = valid(n, kind, case, app);
            fields.iter().for_each(|m| apply_mutation(&mut e, m));
            let mut b = e.encode_to_vec();
            mutate_bytes(&mut b, &bytes);
            (own_subject, b)
        })
}

#[test]
fn fuzz_mutated_streams_through_the_ledger() {
    let stream = proptest::collection::vec(stream_message(), 1..40);
    fuzz("ledger_mutated_streams", 200, stream, |msgs| {
        let mut ledger = Ledger::open(MemStore::new()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let prefix = [valid(10_000, 0, 0, 0), valid(10_001, 1, 0, 0), valid(10_002, 1, 1, 0)];
        let mut all: Vec<(String, Vec<u8>)> =
            prefix.iter().map(|e| ("mpp.events.dukcapil.kk".to_owned(), e.encode_to_vec())).collect();
        all.extend(msgs.into_iter().map(|(own, b)| {
            (if own { "mpp.events.dukcapil.kk" } else { "mpp.events.bpn.kk" }.to_owned(), b)
        }));
        for (i, (subject, payload)) in all.iter().enumerate() {
            let seq = i as u64 + 1;
            let before =
                ledger::projection(ledger.store()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let msg = RawMessage {
                stream_seq: seq,
                stream_time_ns: (RECORD_MS + i as i64 * 1000) * 1_000_000,
                subject: subject.clone(),
                payload: Bytes::from(payload.clone()),
                redrive: None,
            };
            let out = ledger.commit_batch(&[msg]).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(out.head.last_seq, seq, "one message, one log entry");
            prop_assert_eq!(out.accepted + out.rejected + out.duplicates, 1);
            let entry = ledger.store().entry(seq).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let entry = entry.ok_or_else(|| TestCaseError::fail("no entry"))?;
            prop_assert_eq!(entry.verdict == Verdict::Accepted, entry.reason.is_none());
            if entry.verdict != Verdict::Accepted {
                let after =
                    ledger::projection(ledger.store()).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(after == before, "a {} message changed the projection", entry.verdict.as_str());
            }
        }
        let (rebuilt, _) = ledger::rebuild(ledger.store()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let stored = ledger::projection(ledger.store()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(rebuilt == stored, "the log does not rebuild to the projection");
        Ok(())
    });
}
