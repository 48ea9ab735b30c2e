//! Fuzz targets of the core's decoders and parsers, proptest-driven so they
//! run in the ordinary test suite (few cases) and, with more cases, as long
//! fuzzing runs:
//!
//! ```text
//! MPP_FUZZ_CASES=2000000 MPP_FUZZ_SECONDS=60 \
//!     cargo test --release -p mpp-core --test fuzz -- --nocapture --test-threads 1
//! ```
//!
//! Each target prints its cases, seconds and cases per second. The
//! properties: no input panics; every `Ok` round-trips (a decoded log entry
//! re-encodes to the same bytes; a parsed id prints as text that parses to
//! the same id); `validate` of any envelope either accepts it with fields
//! equal to the input or rejects it with a code. A failure prints the seed
//! (`MPP_FUZZ_SEED` replays it); crashing inputs found go into
//! `tests/corpus/` (see `tests/corpus/FUZZING.md`).

mod common;

use common::any_signed_checkpoint;

use mpp_core::checkpoint::{Checkpoint, SignedCheckpoint};
use mpp_core::ids::{EventId, Nik, RegionCode, TrackingNumber};
use mpp_core::log::{LogEntry, Verdict};
use mpp_core::validate::validate;
use mpp_core::{EventBody, ReasonCode, UncheckedEnvelope};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Cases per target in the ordinary test run.
const DEFAULT_CASES: u64 = 2_000;
/// Runs `test` on values of `strategy` ([`mpp_test_support::fuzz::fuzz`],
/// [`DEFAULT_CASES`] unless `MPP_FUZZ_CASES` says otherwise).
fn fuzz<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    mpp_test_support::fuzz::fuzz(name, DEFAULT_CASES, strategy, test)
}

/// Byte-level mutations of a valid input: the bytes a decoder meets when
/// storage or a network corrupts them.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Set { at: usize, value: u8 },
    Insert { at: usize, bytes: Vec<u8> },
    Delete { at: usize, len: usize },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Mutation::Set { at, value }),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1usize..16).prop_map(|(at, len)| Mutation::Delete { at, len }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    let n = bytes.len();
    match m {
        Mutation::Flip { at, bit } if n > 0 => bytes[at % n] ^= 1 << bit,
        Mutation::Set { at, value } if n > 0 => bytes[at % n] = *value,
        Mutation::Insert { at, bytes: b } => {
            let at = at % (n + 1);
            bytes.splice(at..at, b.iter().copied());
        }
        Mutation::Delete { at, len } if n > 0 => {
            let at = at % n;
            bytes.drain(at..(at + len).min(n));
        }
        Mutation::Truncate { at } => bytes.truncate(at % (n + 1)),
        _ => {}
    }
}

fn verdict() -> impl Strategy<Value = (Verdict, Option<ReasonCode>)> {
    prop_oneof![
        Just((Verdict::Accepted, None)),
        proptest::sample::select(ReasonCode::ALL).prop_map(|r| (Verdict::Rejected, Some(r))),
        Just((Verdict::Duplicate, Some(ReasonCode::DuplicateEventId))),
    ]
}

fn log_entry() -> impl Strategy<Value = LogEntry> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<i64>(),
        verdict(),
        "\\PC{0,40}",
        "\\PC{0,40}",
        proptest::collection::vec(any::<u8>(), 0..200),
        any::<[u8; 32]>(),
    )
        .prop_map(|(seq, stream_seq, time, (v, r), detail, subject, payload, prev)| {
            LogEntry::new(seq, stream_seq, time, v, r, &detail, &subject, payload, prev)
        })
}

/// Any bytes: random ones, or a valid entry's bytes with mutations.
fn entry_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..400),
        (log_entry(), proptest::collection::vec(mutation(), 0..4)).prop_map(|(e, ms)| {
            let mut b = e.encode();
            ms.iter().for_each(|m| mutate(&mut b, m));
            b
        }),
    ]
}

#[test]
fn fuzz_log_entry_decode() {
    fuzz("log_entry_decode", entry_bytes(), |bytes| {
        if let Ok(e) = LogEntry::decode(&bytes) {
            prop_assert_eq!(&e.encode(), &bytes, "a decoded entry must re-encode to its bytes");
        }
        if let Ok((e, used)) = LogEntry::decode_prefix(&bytes) {
            prop_assert!(used <= bytes.len());
            prop_assert_eq!(e.encode(), bytes[..used].to_vec());
        }
        Ok(())
    });
}

#[test]
fn fuzz_valid_log_entries_round_trip() {
    fuzz("log_entry_round_trip", log_entry(), |e| {
        let bytes = e.encode();
        let decoded = LogEntry::decode(&bytes);
        prop_assert_eq!(decoded, Ok(e));
        Ok(())
    });
}

#[test]
fn fuzz_checkpoint_decode() {
    let input = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        (any_signed_checkpoint(), proptest::collection::vec(mutation(), 0..4)).prop_map(|(c, ms)| {
            let mut b = c.encode();
            ms.iter().for_each(|m| mutate(&mut b, m));
            b
        }),
    ];
    fuzz("checkpoint_decode", input, |bytes| {
        if let Ok(c) = SignedCheckpoint::decode(&bytes) {
            prop_assert_eq!(c.encode(), bytes.clone());
        }
        if let Ok(c) = Checkpoint::from_signed_bytes(&bytes) {
            prop_assert_eq!(c.to_signed_bytes(), bytes);
        }
        Ok(())
    });
}

#[test]
fn fuzz_checkpoint_parse_text() {
    let input = prop_oneof![
        "\\PC{0,300}",
        (any_signed_checkpoint(), proptest::collection::vec(mutation(), 0..4)).prop_map(|(c, ms)| {
            let mut b = c.to_text().into_bytes();
            ms.iter().for_each(|m| mutate(&mut b, m));
            String::from_utf8_lossy(&b).into_owned()
        }),
    ];
    fuzz("checkpoint_parse_text", input, |text| {
        if let Ok(c) = SignedCheckpoint::parse_text(&text) {
            prop_assert_eq!(c.to_text(), text);
        }
        Ok(())
    });
}

/// Text that looks like an id now and then: digits, hyphens, hex, spaces,
/// non-ASCII digits and letters, or anything.
fn id_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{0,20}",
        "[0-9 -]{0,40}",
        "[0-9a-fA-F-]{30,40}",
        "[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
        "[0-9０-９٠-٩-]{0,20}",
        "\\PC{0,40}",
        ".{0,40}",
    ]
}

#[test]
fn fuzz_tracking_number_parse() {
    let input = prop_oneof![
        id_text(),
        (1100u16..=9999, 0u64..=TrackingNumber::SERIAL_MAX, proptest::collection::vec(mutation(), 0..3))
            .prop_map(|(r, s, ms)| {
                let tn = RegionCode::try_from(r).ok().and_then(|r| TrackingNumber::new(r, s));
                let mut b = tn.map(|t| t.to_string()).unwrap_or_default().into_bytes();
                ms.iter().for_each(|m| mutate(&mut b, m));
                String::from_utf8_lossy(&b).into_owned()
            }),
    ];
    fuzz("tracking_number_parse", input, |s| {
        if let Ok(t) = TrackingNumber::parse(&s) {
            let text = t.to_string();
            prop_assert_eq!(TrackingNumber::parse(&text), Ok(t));
            let digits: String = s.chars().filter(char::is_ascii_digit).collect();
            prop_assert_eq!(text.replace('-', ""), digits);
        }
        Ok(())
    });
}

#[test]
fn fuzz_nik_parse() {
    let input = prop_oneof![id_text(), "[0-9]{16}", "[1-9][0-9]{5}[0-7][0-9][01][0-9]{7}"];
    fuzz("nik_parse", input, |s| {
        if let Ok(n) = Nik::parse(&s) {
            prop_assert_eq!(n.expose_digits().as_slice(), s.as_bytes());
            let again =
                std::str::from_utf8(n.expose_digits()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(Nik::parse(again).is_ok());
        }
        Ok(())
    });
}

#[test]
fn fuzz_event_id_parse() {
    fuzz("event_id_parse", id_text(), |s| {
        if let Ok(id) = EventId::parse(&s) {
            let text = id.to_string();
            prop_assert_eq!(&text, &s.to_ascii_lowercase());
            prop_assert_eq!(EventId::parse(&text), Ok(id));
        }
        Ok(())
    });
}

#[test]
fn fuzz_region_code_parse() {
    fuzz("region_code_parse", id_text(), |s| {
        if let Ok(r) = RegionCode::parse(&s) {
            prop_assert_eq!(r.to_string(), s.clone());
            prop_assert_eq!(RegionCode::parse(&r.to_string()), Ok(r));
        }
        Ok(())
    });
}

/// Strings a validator must survive: empty, ASCII, any Unicode, long runs,
/// and control and bidi characters.
fn field_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z0-9-]{1,40}",
        "\\PC{0,60}",
        ".{0,60}",
        (1usize..2_000).prop_map(|n| "é".repeat(n)),
        "[\u{0}-\u{1f}\u{7f}\u{202a}-\u{202e}\u{2066}-\u{2069}\u{200b}\u{feff}a]{1,10}",
    ]
}

fn body() -> impl Strategy<Value = Option<EventBody>> {
    let docs = || proptest::collection::vec(field_text(), 0..40);
    let bytes = || proptest::collection::vec(any::<u8>(), 0..80);
    prop_oneof![
        Just(None),
        (bytes(), bytes())
            .prop_map(|(p, n)| Some(EventBody::CaseOpened { pin_verifier: p, nik_keyed_hash: n })),
        docs().prop_map(|documents| Some(EventBody::ApplicationFiled { documents })),
        (docs(), field_text(), field_text()).prop_map(|(documents, counter, note)| Some(
            EventBody::DocumentsRequested { documents, counter, note }
        )),
        (any::<i64>(), field_text(), field_text()).prop_map(|(amount_idr, payment_channel, billing_code)| {
            Some(EventBody::FeeAssessed { amount_idr, payment_channel, billing_code, due_at_ms: 0 })
        }),
        (field_text(), any::<i64>(), field_text())
            .prop_map(|(kind, at_ms, place)| Some(EventBody::AppointmentScheduled { kind, at_ms, place })),
        Just(Some(EventBody::ReviewStarted)),
        (field_text(), field_text(), any::<u32>(), any::<i64>(), docs(), any::<bool>(), any::<u32>())
            .prop_map(
                |(
                    name_id,
                    name_en,
                    completion_working_days,
                    fee_idr,
                    requirements,
                    fiktif_positif,
                    version,
                )| {
                    Some(EventBody::ServiceStandardPublished {
                        name_id,
                        name_en,
                        completion_working_days,
                        fee_idr,
                        requirements,
                        fiktif_positif,
                        version,
                        collection: None,
                    })
                }
            ),
    ]
}

fn unchecked() -> impl Strategy<Value = (String, UncheckedEnvelope, i64)> {
    (
        prop_oneof![Just("mpp.events.dukcapil.kk".to_owned()), "mpp\\.events\\.[a-z.]{0,12}", "\\PC{0,300}"],
        prop_oneof![Just(1u32), any::<u32>()],
        id_text(),
        id_text(),
        prop_oneof![Just("1771".to_owned()), id_text()],
        prop_oneof![Just("dukcapil".to_owned()), field_text()],
        prop_oneof![Just("kk".to_owned()), field_text()],
        field_text(),
        any::<i64>(),
        field_text(),
        body(),
        any::<i64>(),
    )
        .prop_map(
            |(subject, v, event_id, case_id, region, agency, service, app, at, officer, body, record)| {
                let u = UncheckedEnvelope {
                    schema_version: v,
                    event_id,
                    case_id,
                    region_code: region,
                    agency_id: agency,
                    service_id: service,
                    application_id: app,
                    occurred_at_ms: at,
                    officer,
                    body,
                };
                (subject, u, record)
            },
        )
}

#[test]
fn fuzz_validate() {
    fuzz("validate", unchecked(), |(subject, u, record_ms)| {
        match validate(&subject, &u, record_ms) {
            Ok(env) => {
                prop_assert_eq!(env.event_id.to_string(), u.event_id.to_ascii_lowercase());
                prop_assert_eq!(env.agency.as_str(), u.agency_id.as_str());
                prop_assert_eq!(Some(&env.body), u.body.as_ref());
                prop_assert_eq!(env.occurred_at_ms, u.occurred_at_ms);
            }
            Err(r) => prop_assert!(ReasonCode::ALL.contains(&r.code)),
        }
        Ok(())
    });
}
