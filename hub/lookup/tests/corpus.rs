//! The hostile-input corpus (`tests/corpus/`, see its README.md): its
//! generator, and its fast in-process runner.
//!
//! - `the_committed_corpus_is_the_generated_one`: the files under
//!   `tests/corpus/{nats,http,grpc}` are exactly what this file's generator
//!   writes, so they are reproducible. Regenerate after a change with
//!   `MPP_BLESS=1 cargo test -p mpp-lookup --test corpus`.
//! - `every_nats_entry_gets_its_verdict`: every `nats/` entry, in file order,
//!   through [`Ledger::commit_batch`] on a [`MemStore`] and on a
//!   [`SledStore`]: the recorded verdict and reason code are the expected
//!   ones, a rejected or duplicate entry leaves the projection unchanged,
//!   every message is one log entry, and the log rebuilds to the projection.
//! - `every_http_entry_gets_a_clear_answer`: every `http/` entry that is a
//!   well-formed HTTP request, through the hub's axum router in-process:
//!   the expected status class and reason code, never a 5xx.
//!
//! The end-to-end twin (`tests/tests/e2e/corpus.rs`) sends the same files
//! over real NATS, TCP and gRPC.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::http::Request;
use bytes::Bytes;
use mpp_core::calendar::CalendarSet;
use mpp_core::log::Verdict;
use mpp_core::pin::{pin_verifier, Pin, PinPepper};
use mpp_core::{ReasonCode, RegionCode, TrackingNumber};
use mpp_ledger::ledger::{self, Ledger, RawMessage};
use mpp_lookup::http::{router, AppState};
use mpp_lookup::lookup::Lookups;
use mpp_lookup::page::{Web, WebSettings};
use mpp_lookup::ratelimit::LookupLimits;
use mpp_lookup::watch::CaseChanges;
use mpp_proto::agency::dukcapil::v1 as dk;
use mpp_proto::v1::envelope::Body as B;
use mpp_proto::v1::{self as pb, Envelope};
use mpp_store::{MemStore, SledStore, Store};
use mpp_test_support::http::{parse_corpus_request, CorpusRequest};
use prost::Message as _;
use serde_json::{json, Value};
use tower::ServiceExt as _;

// ---------------------------------------------------------------------------
// Fixed facts of the corpus. The e2e harness's hubs and agency services read
// the same PIN pepper, so the corpus's cases open there with the same PIN.

/// `mpp_tests::services::TEST_PIN_PEPPER`, copied (this crate cannot depend
/// on the e2e harness, which depends on it).
const TEST_PIN_PEPPER: &[u8] = b"test pepper: not a secret, only for this test run\n";
/// `mpp_tests::pin::TEST_PIN`.
const TEST_PIN: &str = "314159";
/// `occurred_at_ms` of every corpus event: 2025-06-16T00:00:00Z. The e2e
/// run records them later (now), which the 24-hour skew rule allows.
const OCCURRED_MS: i64 = 1_750_032_000_000;
/// In-process time of record of corpus message 1: 2025-06-16T02:00:00Z.
const RECORD_MS: i64 = 1_750_039_200_000;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus")
}

fn tn(serial: u64) -> TrackingNumber {
    let region = RegionCode::parse("1771").unwrap_or_else(|e| panic!("{e}"));
    TrackingNumber::new(region, serial).unwrap_or_else(|| panic!("serial {serial}"))
}

/// The case the prefix opens, with applications in several states.
fn case_a() -> String {
    tn(5_000_001).to_string()
}
/// A case opened late in the corpus.
fn case_b() -> String {
    tn(5_000_002).to_string()
}
/// A case never opened.
fn case_c() -> String {
    tn(5_000_003).to_string()
}

/// A canonical UUIDv7 text, unique per `n`.
fn event_id(n: u64) -> String {
    let ms = OCCURRED_MS as u64 + n;
    let hex = format!("{ms:012x}");
    format!("{}-{}-7{:03x}-{:04x}-{:012x}", &hex[..8], &hex[8..], n & 0xfff, 0x8000 | (n & 0x3fff), n)
}

fn verifier(case: &str) -> Vec<u8> {
    let pepper = PinPepper::from_bytes(TEST_PIN_PEPPER).unwrap_or_else(|e| panic!("{e}"));
    let pin = Pin::parse(TEST_PIN).unwrap_or_else(|| panic!("pin"));
    let case = TrackingNumber::parse(case).unwrap_or_else(|e| panic!("{e}"));
    pin_verifier(&pepper, &case, &pin).to_vec()
}

// ---------------------------------------------------------------------------
// Base64 (RFC 4648 §4, with padding), small enough to keep here.

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(c.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(c.get(2).copied().unwrap_or(0));
        for i in 0..4 {
            out.push(if i <= c.len() { B64[(n >> (18 - 6 * i)) as usize & 63] as char } else { '=' });
        }
    }
    out
}

fn b64_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = B64.iter().position(|&a| a == c).unwrap_or_else(|| panic!("not base64: {c}")) as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The generator: NATS messages.

/// A NATS corpus entry as generated.
struct NatsCase {
    name: &'static str,
    subject: String,
    /// `{"base64": …}` or `{"base64": prefix, "fill_byte": b, "fill_len": n}`.
    payload: Value,
    verdict: Verdict,
    reason: Option<ReasonCode>,
    note: &'static str,
}

/// Builds envelopes of the corpus's agency (`dukcapil`, service `kk`, region
/// 1771) on case A.
struct Gen {
    n: u64,
}

impl Gen {
    fn env(&mut self, app: &str, body: B) -> Envelope {
        self.n += 1;
        Envelope {
            schema_version: 1,
            event_id: event_id(self.n),
            case_id: case_a(),
            region_code: "1771".to_owned(),
            agency_id: "dukcapil".to_owned(),
            service_id: "kk".to_owned(),
            application_id: app.to_owned(),
            occurred_at_ms: OCCURRED_MS,
            officer: "petugas-7".to_owned(),
            body: Some(body),
            signature: None,
        }
    }

    fn standard(&mut self, service: &str, version: u32) -> Envelope {
        let mut e = self.env("", standard_body(version));
        e.case_id.clear();
        e.service_id = service.to_owned();
        e
    }
}

fn standard_body(version: u32) -> B {
    B::ServiceStandardPublished(pb::ServiceStandardPublished {
        name_id: "Kartu Keluarga".to_owned(),
        name_en: "Family card".to_owned(),
        completion_working_days: 5,
        fee_idr: 0,
        requirements: vec!["surat pengantar RT/RW".to_owned()],
        fiktif_positif: false,
        version,
        collection: None,
    })
}

fn filed(docs: &[&str]) -> B {
    B::ApplicationFiled(pb::ApplicationFiled { documents: docs.iter().map(|d| (*d).to_owned()).collect() })
}

fn requested(docs: Vec<String>, note: &str) -> B {
    B::DocumentsRequested(pb::DocumentsRequested {
        documents: docs,
        counter: "Loket 3".to_owned(),
        note: note.to_owned(),
    })
}

fn fee(amount_idr: i64) -> B {
    B::FeeAssessed(pb::FeeAssessed {
        amount_idr,
        payment_channel: "Bank Bengkulu".to_owned(),
        billing_code: "820001234567".to_owned(),
        due_at_ms: 0,
    })
}

fn appointment(kind: &str, at_ms: i64) -> B {
    B::AppointmentScheduled(pb::AppointmentScheduled {
        kind: kind.to_owned(),
        at_ms,
        place: "Loket 2".to_owned(),
    })
}

fn with(mut e: Envelope, f: impl FnOnce(&mut Envelope)) -> Envelope {
    f(&mut e);
    e
}

fn subject_of(e: &Envelope) -> String {
    format!("mpp.events.{}.{}", e.agency_id, e.service_id)
}

/// A protobuf varint.
fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// The encoding of `e` with the bytes of `marker` (a string field's value)
/// replaced by as many bytes that are not UTF-8.
fn with_invalid_utf8(e: &Envelope, marker: &str) -> Vec<u8> {
    let mut bytes = e.encode_to_vec();
    let m = marker.as_bytes();
    let at = bytes.windows(m.len()).position(|w| w == m).unwrap_or_else(|| panic!("marker {marker}"));
    for (i, b) in bytes[at..at + m.len()].iter_mut().enumerate() {
        *b = if i % 2 == 0 { 0xC3 } else { 0x28 };
    }
    bytes
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

fn add(
    out: &mut Vec<NatsCase>,
    name: &'static str,
    e: &Envelope,
    verdict: Verdict,
    reason: Option<ReasonCode>,
    note: &'static str,
) {
    let payload = json!({ "base64": b64_encode(&e.encode_to_vec()) });
    out.push(NatsCase { name, subject: subject_of(e), payload, verdict, reason, note });
}

/// `e` published on `subject` (not its own).
fn foreign(
    out: &mut Vec<NatsCase>,
    e: &Envelope,
    name: &'static str,
    subject: &str,
    reason: ReasonCode,
    note: &'static str,
) {
    let payload = json!({ "base64": b64_encode(&e.encode_to_vec()) });
    out.push(NatsCase {
        name,
        subject: subject.to_owned(),
        payload,
        verdict: Verdict::Rejected,
        reason: Some(reason),
        note,
    });
}

/// Raw bytes (`payload` as in the files) rejected with `reason`.
fn raw(
    out: &mut Vec<NatsCase>,
    subject: &str,
    name: &'static str,
    payload: Value,
    reason: ReasonCode,
    note: &'static str,
) {
    out.push(NatsCase {
        name,
        subject: subject.to_owned(),
        payload,
        verdict: Verdict::Rejected,
        reason: Some(reason),
        note,
    });
}

/// An event of application KTP-1 (service ktp-el, in review).
fn ktp(g: &mut Gen, body: B) -> Envelope {
    with(g.env("KTP-1", body), |e| e.service_id = "ktp-el".to_owned())
}

fn nats_corpus() -> Vec<NatsCase> {
    use ReasonCode as R;
    use Verdict::{Accepted, Duplicate, Rejected};
    let mut g = Gen { n: 0 };
    let mut out = Vec::new();

    // The realistic prefix: standards, case A with applications in several states.
    let std_kk = g.standard("kk", 1);
    add(&mut out, "000-prefix-standard-kk", &std_kk, Accepted, None, "Prefix: the kk service standard.");
    let std_ktp = g.standard("ktp-el", 1);
    add(
        &mut out,
        "001-prefix-standard-ktp-el",
        &std_ktp,
        Accepted,
        None,
        "Prefix: the ktp-el service standard.",
    );
    let opened = g.env(
        "",
        B::CaseOpened(pb::CaseOpened { pin_verifier: verifier(&case_a()), nik_keyed_hash: vec![9; 32] }),
    );
    add(
        &mut out,
        "002-prefix-case-opened",
        &opened,
        Accepted,
        None,
        "Prefix: case A opened (PIN 314159 under the test pepper).",
    );
    let filed_kk1 = g.env("KK-1", filed(&["surat pengantar RT/RW"]));
    add(&mut out, "003-prefix-filed-kk-1", &filed_kk1, Accepted, None, "Prefix: KK-1 filed.");
    let e = g.env("KK-1", requested(vec!["akta nikah".to_owned()], ""));
    add(
        &mut out,
        "004-prefix-documents-requested-kk-1",
        &e,
        Accepted,
        None,
        "Prefix: KK-1 waits on documents.",
    );
    let e = with(g.env("KTP-1", filed(&["KK"])), |e| e.service_id = "ktp-el".to_owned());
    add(&mut out, "005-prefix-filed-ktp-1", &e, Accepted, None, "Prefix: KTP-1 filed (service ktp-el).");
    let e =
        with(g.env("KTP-1", B::ReviewStarted(pb::ReviewStarted {})), |e| e.service_id = "ktp-el".to_owned());
    add(&mut out, "006-prefix-review-ktp-1", &e, Accepted, None, "Prefix: KTP-1 in review.");
    let e = g.env("KK-2", filed(&["KTP-el"]));
    add(&mut out, "007-prefix-filed-kk-2", &e, Accepted, None, "Prefix: KK-2 filed.");
    let e = g.env(
        "KK-2",
        B::Rejected(pb::Rejected { reason_code: "D-01".to_owned(), reason: "data tidak cocok".to_owned() }),
    );
    add(&mut out, "008-prefix-rejected-kk-2", &e, Accepted, None, "Prefix: KK-2 rejected (terminal).");

    // Numbers out of range and overflowing.
    let e = with(g.env("KK-9", filed(&["a"])), |e| e.schema_version = u32::MAX);
    add(
        &mut out,
        "030-schema-version-u32-max",
        &e,
        Rejected,
        Some(R::UnsupportedSchemaVersion),
        "schema_version 4294967295.",
    );
    let e = with(g.env("KK-9", filed(&["a"])), |e| e.schema_version = 0);
    add(
        &mut out,
        "031-schema-version-zero",
        &e,
        Rejected,
        Some(R::UnsupportedSchemaVersion),
        "schema_version 0 (the proto3 default: field absent).",
    );
    let e = ktp(&mut g, fee(-50_000));
    add(
        &mut out,
        "032-fee-negative",
        &e,
        Rejected,
        Some(R::InvalidFieldValue),
        "A negative fee on an application in review.",
    );
    let e = ktp(&mut g, fee(i64::MIN));
    add(
        &mut out,
        "033-fee-i64-min",
        &e,
        Rejected,
        Some(R::InvalidFieldValue),
        "Fee i64::MIN (a 10-byte varint).",
    );
    let e = ktp(&mut g, fee(i64::MAX));
    add(&mut out, "034-fee-i64-max", &e, Rejected, Some(R::InvalidFieldValue), "Fee i64::MAX.");
    let e = ktp(&mut g, fee(1_000_000_000_001));
    add(
        &mut out,
        "035-fee-over-limit",
        &e,
        Rejected,
        Some(R::InvalidFieldValue),
        "Fee one rupiah above limits::AMOUNT_IDR_MAX.",
    );
    let e = ktp(
        &mut g,
        B::PaymentReceived(pb::PaymentReceived { amount_idr: 0, payment_reference: "P-1".to_owned() }),
    );
    add(&mut out, "036-payment-zero", &e, Rejected, Some(R::InvalidFieldValue), "A payment of 0 rupiah.");
    let e = with(g.standard("kk", 7), |e| {
        if let Some(B::ServiceStandardPublished(s)) = e.body.as_mut() {
            s.completion_working_days = u32::MAX;
        }
    });
    add(
        &mut out,
        "037-standard-days-u32-max",
        &e,
        Rejected,
        Some(R::InvalidFieldValue),
        "completion_working_days 4294967295.",
    );
    let e = g.standard("kk", 0);
    add(
        &mut out,
        "038-standard-version-zero",
        &e,
        Rejected,
        Some(R::InvalidFieldValue),
        "A standard of version 0.",
    );
    let e = with(g.standard("kk", 7), |e| {
        if let Some(B::ServiceStandardPublished(s)) = e.body.as_mut() {
            s.fee_idr = -1;
        }
    });
    add(
        &mut out,
        "039-standard-fee-negative",
        &e,
        Rejected,
        Some(R::InvalidFieldValue),
        "A standard with fee -1.",
    );
    let e = g.standard("kk", 1);
    add(
        &mut out,
        "040-standard-version-stale",
        &e,
        Rejected,
        Some(R::StaleStandardVersion),
        "Version 1 again: not above the one in force.",
    );
    let e = ktp(&mut g, appointment("interview", i64::MAX));
    add(
        &mut out,
        "041-appointment-far-future",
        &e,
        Rejected,
        Some(R::InvalidFieldValue),
        "An appointment at i64::MAX ms.",
    );
    let e = ktp(&mut g, appointment("interview", -1));
    add(
        &mut out,
        "042-appointment-negative",
        &e,
        Rejected,
        Some(R::InvalidFieldValue),
        "An appointment at -1 ms (1969).",
    );

    // Timestamps far in the past and the future.
    for (name, at, note) in [
        ("050-occurred-at-zero", 0, "occurred_at_ms 0 (1970, or the field left out)."),
        ("051-occurred-at-i64-min", i64::MIN, "occurred_at_ms i64::MIN."),
        ("052-occurred-at-i64-max", i64::MAX, "occurred_at_ms i64::MAX."),
        ("053-occurred-at-1999", 946_684_799_999, "One millisecond before 2000-01-01."),
        ("054-occurred-at-2100", 4_102_444_800_000, "The year 2100."),
        ("055-occurred-at-negative", -1, "occurred_at_ms -1."),
    ] {
        let e = with(g.env("KK-9", filed(&["a"])), |e| e.occurred_at_ms = at);
        add(&mut out, name, &e, Rejected, Some(R::TimestampOutOfRange), note);
    }

    // Identifiers.
    let e = with(g.env("KK-9", filed(&["a"])), |e| e.event_id.clear());
    add(&mut out, "060-event-id-missing", &e, Rejected, Some(R::MissingEventId), "No event_id.");
    let e = with(g.env("KK-9", filed(&["a"])), |e| {
        e.event_id = "550e8400-e29b-41d4-a716-446655440000".to_owned()
    });
    add(&mut out, "061-event-id-uuid-v4", &e, Rejected, Some(R::MalformedEventId), "A version 4 UUID.");
    let e = with(g.env("KK-9", filed(&["a"])), |e| e.event_id = "f".repeat(10_000));
    add(&mut out, "062-event-id-10-kib", &e, Rejected, Some(R::MalformedEventId), "A 10 KiB event_id.");
    let e = with(g.env("KK-9", filed(&["a"])), |e| e.event_id = e.event_id.replace('0', "\u{ff10}"));
    add(
        &mut out,
        "063-event-id-fullwidth",
        &e,
        Rejected,
        Some(R::MalformedEventId),
        "Fullwidth digit zero in the UUID.",
    );
    let e = with(
        g.env("", B::CaseOpened(pb::CaseOpened { pin_verifier: vec![1; 32], nik_keyed_hash: vec![] })),
        |e| {
            let mut t = case_c();
            let last = t.pop().and_then(|c| c.to_digit(10)).unwrap_or(0);
            t.push(char::from_digit((last + 1) % 10, 10).unwrap_or('0'));
            e.case_id = t;
        },
    );
    add(
        &mut out,
        "064-case-id-bad-check-digit",
        &e,
        Rejected,
        Some(R::BadCheckDigit),
        "A case opened with a mistyped tracking number.",
    );
    let e = with(g.env("KK-9", filed(&["a"])), |e| {
        e.case_id = e
            .case_id
            .chars()
            .map(|c| c.to_digit(10).map_or(c, |d| char::from_u32(0xff10 + d).unwrap_or(c)))
            .collect();
    });
    add(
        &mut out,
        "065-case-id-fullwidth-digits",
        &e,
        Rejected,
        Some(R::MalformedTrackingNumber),
        "The tracking number in fullwidth digits.",
    );
    let e = with(g.env("KK-9", filed(&["a"])), |e| e.case_id = "1".repeat(50_000));
    add(
        &mut out,
        "066-case-id-50-kib",
        &e,
        Rejected,
        Some(R::MalformedTrackingNumber),
        "A 50 KB tracking number.",
    );
    let e = with(g.env("KK-9", filed(&["a"])), |e| e.region_code = "3171".to_owned());
    add(
        &mut out,
        "067-region-mismatch",
        &e,
        Rejected,
        Some(R::RegionMismatch),
        "region_code 3171 for a 1771 tracking number.",
    );
    let e = with(g.env("KK-9", filed(&["a"])), |e| e.region_code = "0011".to_owned());
    add(
        &mut out,
        "068-region-code-out-of-range",
        &e,
        Rejected,
        Some(R::MalformedRegionCode),
        "Region 0011 (no province 00).",
    );
    let e = with(g.env("KK-9", filed(&["a"])), |e| e.region_code = "\u{661}\u{667}\u{667}\u{661}".to_owned());
    add(
        &mut out,
        "069-region-code-arabic-indic",
        &e,
        Rejected,
        Some(R::MalformedRegionCode),
        "Region 1771 in Arabic-Indic digits.",
    );
    let e = g.env("KK\u{200b}9", filed(&["a"]));
    add(
        &mut out,
        "070-application-id-zero-width-space",
        &e,
        Rejected,
        Some(R::MalformedApplicationId),
        "A zero-width space inside the application id.",
    );
    let e = g.env(&"A".repeat(65), filed(&["a"]));
    add(
        &mut out,
        "071-application-id-65-bytes",
        &e,
        Rejected,
        Some(R::MalformedApplicationId),
        "An application id one byte over the limit.",
    );
    let e = g.env("../../etc/passwd", B::ReviewStarted(pb::ReviewStarted {}));
    add(&mut out, "072-application-id-path-like", &e, Rejected, Some(R::UnknownApplication), "Dots and slashes are legal application id characters; it names no application, and is never used as a path.");
    let e = with(g.env("KK-9", filed(&["a"])), |e| e.officer.clear());
    add(&mut out, "073-officer-missing", &e, Rejected, Some(R::MalformedOfficer), "No officer.");
    let e = with(g.env("KK-9", filed(&["a"])), |e| e.officer = "petugas-\u{1f600}".to_owned());
    add(
        &mut out,
        "074-officer-emoji",
        &e,
        Rejected,
        Some(R::MalformedOfficer),
        "An emoji in the officer id.",
    );
    let e = with(g.env("KK-9", filed(&["a"])), |e| e.agency_id = "dukc\u{430}pil".to_owned());
    add(
        &mut out,
        "075-agency-id-cyrillic-homoglyph",
        &e,
        Rejected,
        Some(R::MalformedAgencyId),
        "Cyrillic a in dukcapil, on a subject spelled the same way.",
    );
    let e = with(g.env("KK-9", filed(&["a"])), |e| e.agency_id = "DUKCAPIL".to_owned());
    add(
        &mut out,
        "076-agency-id-uppercase",
        &e,
        Rejected,
        Some(R::MalformedAgencyId),
        "An uppercase agency id on an uppercase subject.",
    );
    let e = with(g.env("KK-9", filed(&["a"])), |e| e.service_id = "s".repeat(33));
    add(
        &mut out,
        "077-service-id-33-bytes",
        &e,
        Rejected,
        Some(R::MalformedServiceId),
        "A service id one byte over the limit.",
    );

    // Subjects: foreign agencies, wrong shapes.
    let e = g.env(
        "KK-1",
        B::DocumentsReceived(pb::DocumentsReceived { documents: vec!["akta nikah".to_owned()] }),
    );
    foreign(
        &mut out,
        &e,
        "080-foreign-agency-subject",
        "mpp.events.bpn.kk",
        R::AgencySubjectMismatch,
        "A valid dukcapil event published on BPN's subject.",
    );
    foreign(
        &mut out,
        &e,
        "081-foreign-service-subject",
        "mpp.events.dukcapil.ktp-el",
        R::ServiceSubjectMismatch,
        "A valid kk event published on the ktp-el subject.",
    );
    foreign(
        &mut out,
        &e,
        "082-subject-extra-token",
        "mpp.events.dukcapil.kk.extra",
        R::BadSubject,
        "Five tokens.",
    );
    foreign(
        &mut out,
        &e,
        "083-subject-missing-service",
        "mpp.events.dukcapil",
        R::BadSubject,
        "No service token.",
    );
    let long = format!("mpp.events.dukcapil.{}", "k".repeat(200));
    foreign(
        &mut out,
        &e,
        "084-subject-220-bytes",
        &long,
        R::BadSubject,
        "A subject over the ledger's 128-byte check.",
    );
    foreign(
        &mut out,
        &e,
        "085-subject-unicode-agency",
        "mpp.events.d\u{fc}kcapil.kk",
        R::AgencySubjectMismatch,
        "A non-ASCII agency token in the subject.",
    );
    let e = with(g.env("KK-1", B::ReviewStarted(pb::ReviewStarted {})), |e| e.agency_id = "bpn".to_owned());
    add(
        &mut out,
        "086-foreign-agency-unknown-service",
        &e,
        Rejected,
        Some(R::UnknownService),
        "BPN, on its own subject, acting on a service it never published.",
    );
    let e = with(g.standard("kk", 1), |e| e.agency_id = "bpn".to_owned());
    add(
        &mut out,
        "087-foreign-agency-standard",
        &e,
        Accepted,
        None,
        "BPN publishes its own kk standard (legal).",
    );
    let e = with(g.env("KK-1", B::ReviewStarted(pb::ReviewStarted {})), |e| e.agency_id = "bpn".to_owned());
    add(
        &mut out,
        "088-foreign-agency-on-anothers-application",
        &e,
        Rejected,
        Some(R::ApplicationOwnerMismatch),
        "BPN acting on Dukcapil's application KK-1.",
    );

    // Replays and state.
    add(
        &mut out,
        "090-replayed-filed",
        &filed_kk1,
        Duplicate,
        Some(R::DuplicateEventId),
        "The prefix's KK-1 filing again, byte for byte.",
    );
    add(
        &mut out,
        "091-replayed-case-opened",
        &opened,
        Duplicate,
        Some(R::DuplicateEventId),
        "The prefix's case opening again, byte for byte.",
    );
    let e = with(opened.clone(), |e| e.event_id = event_id(9_001));
    add(
        &mut out,
        "092-case-opened-again",
        &e,
        Rejected,
        Some(R::CaseAlreadyOpen),
        "Case A opened again under a new event id.",
    );
    let e = with(filed_kk1.clone(), |e| e.event_id = event_id(9_002));
    add(
        &mut out,
        "093-filed-again",
        &e,
        Rejected,
        Some(R::ApplicationAlreadyFiled),
        "KK-1 filed again under a new event id.",
    );
    let e = g.env("KK-2", B::ReviewStarted(pb::ReviewStarted {}));
    add(
        &mut out,
        "094-transition-out-of-terminal",
        &e,
        Rejected,
        Some(R::IllegalTransition),
        "Review on the rejected KK-2.",
    );
    let e = g.env("KK-1", B::Collected(pb::Collected {}));
    add(
        &mut out,
        "095-collected-before-issued",
        &e,
        Rejected,
        Some(R::IllegalTransition),
        "Collected while KK-1 waits on documents.",
    );
    let e = with(g.env("KK-1", B::ReviewStarted(pb::ReviewStarted {})), |e| e.case_id = case_c());
    add(&mut out, "096-unknown-case", &e, Rejected, Some(R::UnknownCase), "An event on a case never opened.");
    let e = g.env("NEVER-FILED", B::ReviewStarted(pb::ReviewStarted {}));
    add(
        &mut out,
        "097-unknown-application",
        &e,
        Rejected,
        Some(R::UnknownApplication),
        "An event on an application never filed.",
    );
    let e = with(g.env("KK-9", filed(&["a"])), |e| e.service_id = "tidak-ada".to_owned());
    add(
        &mut out,
        "098-unknown-service",
        &e,
        Rejected,
        Some(R::UnknownService),
        "A filing for a service without a standard.",
    );
    let e = with(g.env("KK-1", B::Collected(pb::Collected {})), |e| e.event_id = std_kk.event_id.clone());
    add(
        &mut out,
        "099-event-id-reused",
        &e,
        Duplicate,
        Some(R::DuplicateEventId),
        "A new event reusing an accepted event id: burned forever.",
    );

    // Huge fields and body rules.
    let e = g.env("KK-1", requested((0..33).map(|i| format!("dokumen {i}")).collect(), ""));
    add(
        &mut out,
        "100-documents-33-items",
        &e,
        Rejected,
        Some(R::FieldTooLong),
        "One list item over limits::LIST_ITEMS_MAX.",
    );
    let e = g.env("KK-1", requested(vec!["akta".to_owned()], &"x".repeat(501)));
    add(
        &mut out,
        "101-note-501-bytes",
        &e,
        Rejected,
        Some(R::FieldTooLong),
        "A note one byte over limits::TEXT_BYTES_MAX.",
    );
    let e = with(
        g.env("", B::CaseOpened(pb::CaseOpened { pin_verifier: vec![1; 65], nik_keyed_hash: vec![] })),
        |e| e.case_id = case_b(),
    );
    add(
        &mut out,
        "102-pin-verifier-65-bytes",
        &e,
        Rejected,
        Some(R::FieldTooLong),
        "A PIN verifier one byte over limits::HASH_BYTES_MAX.",
    );
    let e = with(g.env("KK-9", filed(&["a"])), |e| e.body = None);
    add(&mut out, "103-missing-body", &e, Rejected, Some(R::MissingBody), "No event in the oneof.");
    let e = with(g.standard("kk", 9), |e| e.case_id = case_a());
    add(
        &mut out,
        "104-standard-with-case-id",
        &e,
        Rejected,
        Some(R::InvalidFieldValue),
        "A standard carrying a case id.",
    );
    let e = with(opened.clone(), |e| {
        e.event_id = event_id(9_003);
        e.application_id = "KK-1".to_owned();
    });
    add(
        &mut out,
        "105-case-opened-with-application-id",
        &e,
        Rejected,
        Some(R::InvalidFieldValue),
        "A case opening carrying an application id.",
    );
    let e = ktp(&mut g, appointment("party", OCCURRED_MS + 86_400_000));
    add(
        &mut out,
        "106-appointment-unknown-kind",
        &e,
        Rejected,
        Some(R::InvalidFieldValue),
        "An appointment kind the hub does not know.",
    );
    let e = g.env("KK-9", filed(&[""]));
    add(
        &mut out,
        "107-empty-document-name",
        &e,
        Rejected,
        Some(R::InvalidFieldValue),
        "An empty document name.",
    );

    // Odd Unicode in names and text.
    let e = g.env("KK-1", requested(vec!["akta \u{202e}lanigiro\u{202c}".to_owned()], ""));
    add(
        &mut out,
        "110-document-bidi-override",
        &e,
        Rejected,
        Some(R::InvalidFieldValue),
        "A right-to-left override in a document name (Trojan Source).",
    );
    let e = g.env("KK-1", requested(vec!["akta".to_owned()], "a\u{0}b"));
    add(&mut out, "111-note-nul", &e, Rejected, Some(R::InvalidFieldValue), "A NUL character in a note.");
    let e = g.env("KK-1", requested(vec!["akta".to_owned()], "baris\u{2028}baru"));
    add(&mut out, "112-note-line-separator", &e, Rejected, Some(R::InvalidFieldValue), "U+2028 in a note.");
    let e = g.env("KK-1", requested(vec!["akta".to_owned()], "\u{1b}[31mmerah\u{1b}[0m"));
    add(
        &mut out,
        "113-note-ansi-escape",
        &e,
        Rejected,
        Some(R::InvalidFieldValue),
        "Terminal escape sequences in a note.",
    );
    let e = g.env(
        "KK-3",
        filed(&[
            "Akta \u{1f468}\u{200d}\u{1f469}\u{200d}\u{1f467}",
            "\u{995}\u{9cd}\u{9b7}",
            "e\u{301}",
            "\u{645}\u{633}\u{62a}\u{646}\u{62f}",
            "\u{6587}\u{4ef6}",
            "\u{fe0f}",
        ]),
    );
    add(
        &mut out,
        "114-documents-odd-unicode-accepted",
        &e,
        Accepted,
        None,
        "Emoji with joiners, Bengali conjuncts, combining accents, Arabic and CJK: legal text, accepted.",
    );
    let e = with(g.standard("kk", 2), |e| {
        if let Some(B::ServiceStandardPublished(s)) = e.body.as_mut() {
            s.name_id = "Kartu Keluarga \u{2014} \u{5bb6}\u{65cf} \u{1f3e0}".to_owned();
        }
    });
    add(
        &mut out,
        "115-standard-mixed-scripts-accepted",
        &e,
        Accepted,
        None,
        "A standard named in mixed scripts: accepted (version 2).",
    );
    let e = g.env("KK-4", filed(&[&"\u{e9}".repeat(250)]));
    add(
        &mut out,
        "116-document-500-bytes-accepted",
        &e,
        Accepted,
        None,
        "A document name of exactly limits::TEXT_BYTES_MAX bytes (250 two-byte characters).",
    );
    let e = g.env("KK-5", filed(&[&format!("{}a", "\u{e9}".repeat(250))]));
    add(
        &mut out,
        "117-document-501-bytes",
        &e,
        Rejected,
        Some(R::FieldTooLong),
        "501 bytes, though only 251 characters.",
    );
    let e = with(
        g.env(
            "",
            B::CaseOpened(pb::CaseOpened { pin_verifier: verifier(&case_b()), nik_keyed_hash: vec![7; 64] }),
        ),
        |e| e.case_id = case_b(),
    );
    add(
        &mut out,
        "118-case-b-opened-64-byte-hash",
        &e,
        Accepted,
        None,
        "Case B opened with a NIK hash of exactly limits::HASH_BYTES_MAX bytes.",
    );

    // Raw bytes: empty, random, truncated, overflowing, not UTF-8, too large.
    let template = g.env("KK-9", filed(&["@@INVALID@@"]));
    let subject = "mpp.events.dukcapil.kk".to_owned();
    raw(&mut out, &subject, "010-empty", json!({ "base64": "" }), R::EmptyMessage, "No payload at all.");
    let mut r = vec![0x0F];
    r.extend(noise(1, 63));
    raw(
        &mut out,
        &subject,
        "011-random-64-bytes",
        json!({ "base64": b64_encode(&r) }),
        R::UndecodableEnvelope,
        "Random bytes after a tag of wire type 7 (protobuf has none).",
    );
    let mut r = vec![0x07];
    r.extend(noise(2, 2047));
    raw(
        &mut out,
        &subject,
        "012-random-2-kib",
        json!({ "base64": b64_encode(&r) }),
        R::UndecodableEnvelope,
        "2 KiB of random bytes after field 0 (invalid).",
    );
    let full = template.encode_to_vec();
    raw(
        &mut out,
        &subject,
        "013-truncated-in-event-id",
        json!({ "base64": b64_encode(&full[..10]) }),
        R::UndecodableEnvelope,
        "A valid envelope cut inside its event_id string.",
    );
    raw(
        &mut out,
        &subject,
        "014-truncated-last-byte",
        json!({ "base64": b64_encode(&full[..full.len() - 1]) }),
        R::UndecodableEnvelope,
        "A valid envelope without its last byte (inside the body).",
    );
    let mut r = vec![0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F];
    r.extend(b"abc");
    raw(
        &mut out,
        &subject,
        "015-length-overflow",
        json!({ "base64": b64_encode(&r) }),
        R::UndecodableEnvelope,
        "event_id claiming 4 GiB of bytes.",
    );
    let mut r = vec![0x08];
    r.extend([0xFF; 10]);
    r.push(0x01);
    raw(
        &mut out,
        &subject,
        "016-varint-11-bytes",
        json!({ "base64": b64_encode(&r) }),
        R::UndecodableEnvelope,
        "schema_version as an 11-byte varint (overflows u64).",
    );
    let mut r = vec![0x10, 0x01];
    r.extend(template.encode_to_vec());
    raw(
        &mut out,
        &subject,
        "017-wrong-wire-type",
        json!({ "base64": b64_encode(&r) }),
        R::UndecodableEnvelope,
        "event_id (a string) sent as a varint.",
    );
    let bad_id = with(template.clone(), |e| e.event_id = "@@INVALID@@".to_owned());
    raw(
        &mut out,
        &subject,
        "018-event-id-not-utf8",
        json!({ "base64": b64_encode(&with_invalid_utf8(&bad_id, "@@INVALID@@")) }),
        R::UndecodableEnvelope,
        "event_id bytes that are not UTF-8.",
    );
    raw(
        &mut out,
        &subject,
        "019-document-not-utf8",
        json!({ "base64": b64_encode(&with_invalid_utf8(&template, "@@INVALID@@")) }),
        R::UndecodableEnvelope,
        "A document name, nested in the body, that is not UTF-8.",
    );
    let mut big = g.env("KK-9", filed(&["a"])).encode_to_vec();
    big.extend(varint(100 << 3 | 2));
    big.extend(varint(70_000));
    raw(
        &mut out,
        &subject,
        "020-over-64-kib",
        json!({ "base64": b64_encode(&big), "fill_byte": 120, "fill_len": 70_000 }),
        R::MessageTooLarge,
        "A valid envelope grown past 64 KiB by an unknown field.",
    );
    let mut big = g.env("KK-9", filed(&["a"])).encode_to_vec();
    big.extend(varint(100 << 3 | 2));
    big.extend(varint(900_000));
    raw(
        &mut out,
        &subject,
        "021-900-kb",
        json!({ "base64": b64_encode(&big), "fill_byte": 0, "fill_len": 900_000 }),
        R::MessageTooLarge,
        "900 kB: under NATS max_payload, far over the hub's limit.",
    );
    let mut r = with(g.env("KK-9", filed(&["a"])), |e| e.body = None).encode_to_vec();
    r.extend(varint(99 << 3 | 2));
    r.extend(varint(2));
    r.extend(b"\x08\x01");
    raw(
        &mut out,
        &subject,
        "022-unknown-body-kind",
        json!({ "base64": b64_encode(&r) }),
        R::MissingBody,
        "The body replaced by a field number this hub does not know (a newer event kind).",
    );

    // Unknown fields are ignored: a valid event with 30 kB of them is accepted.
    let mut r = g.env("KK-6", filed(&["a"])).encode_to_vec();
    r.extend(varint(100 << 3 | 2));
    r.extend(varint(30_000));
    out.push(NatsCase {
        name: "023-unknown-fields-accepted",
        subject: "mpp.events.dukcapil.kk".to_owned(),
        payload: json!({ "base64": b64_encode(&r), "fill_byte": 122, "fill_len": 30_000 }),
        verdict: Accepted,
        reason: None,
        note: "30 kB of an unknown field after a valid filing of KK-6: ignored, the event is accepted.",
    });

    // Ingest keeps going: the last message is a valid event.
    let e = g.env(
        "KK-1",
        B::DocumentsReceived(pb::DocumentsReceived { documents: vec!["akta nikah".to_owned()] }),
    );
    out.push(NatsCase {
        name: "199-final-valid-event",
        subject: subject_of(&e),
        payload: json!({ "base64": b64_encode(&e.encode_to_vec()) }),
        verdict: Accepted,
        reason: None,
        note: "A valid event after all the hostile ones: ingest keeps going.",
    });
    out.sort_by(|a, b| a.name.cmp(b.name));
    out
}

fn nats_json(c: &NatsCase) -> String {
    let v = json!({
        "subject": c.subject,
        "payload": c.payload,
        "expect": { "verdict": c.verdict.as_str(), "reason": c.reason.map_or("-", |r| r.as_str()) },
        "note": c.note,
    });
    format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
}

// ---------------------------------------------------------------------------
// The generator: raw HTTP requests.

struct HttpCase {
    name: String,
    status: &'static str,
    reason: &'static str,
    tcp_only: bool,
    note: &'static str,
    request: Vec<u8>,
}

/// A request with `Host` and `Connection: close`, `headers` and `body`
/// (with its `Content-Length`). Lines end in LF; runners send CRLF.
fn request(method: &str, target: &[u8], headers: &[(&str, &[u8])], body: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend(method.as_bytes());
    r.push(b' ');
    r.extend(target);
    r.extend(b" HTTP/1.1\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        r.extend(b"Host: hub.test\n");
    }
    r.extend(b"Connection: close\n");
    for (k, v) in headers {
        r.extend(k.as_bytes());
        r.extend(b": ");
        r.extend(*v);
        r.push(b'\n');
    }
    if !body.is_empty() {
        r.extend(format!("Content-Length: {}\n", body.len()).as_bytes());
    }
    r.push(b'\n');
    r.extend(body);
    r
}

fn http_corpus() -> Vec<HttpCase> {
    let a = case_a();
    let api = |tn: &str| format!("/api/v1/cases/{tn}").into_bytes();
    let pin: &[(&str, &[u8])] = &[("X-Mpp-Pin", TEST_PIN.as_bytes())];
    let form: &[(&str, &[u8])] = &[("Content-Type", b"application/x-www-form-urlencoded")];
    let mut bad_check = a.clone();
    let last = bad_check.pop().and_then(|c| c.to_digit(10)).unwrap_or(0);
    bad_check.push(char::from_digit((last + 1) % 10, 10).unwrap_or('0'));
    let long_pin = "1".repeat(10_000);
    let big_cookie = format!("mpp_session={}", "a".repeat(10_000));
    let long_xff = format!("{}, 203.0.113.9", "1.1.1.1, ".repeat(300));
    let mut many_headers: Vec<(String, Vec<u8>)> =
        (0..120).map(|i| (format!("X-Junk-{i}"), b"x".to_vec())).collect();
    many_headers.push(("X-Mpp-Pin".to_owned(), TEST_PIN.as_bytes().to_vec()));
    let many: Vec<(&str, &[u8])> = many_headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
    let c = |name: &str, status, reason, note, request| HttpCase {
        name: name.to_owned(),
        status,
        reason,
        tcp_only: false,
        note,
        request,
    };
    let tcp = |name: &str, status, note, request: Vec<u8>| HttpCase {
        name: name.to_owned(),
        status,
        reason: "-",
        tcp_only: true,
        note,
        request,
    };
    vec![
        c("h01-lookup-ok", "200", "-", "A well-formed lookup: the case.", request("GET", &api(&a), pin, b"")),
        c("h02-no-pin", "400", "PIN_REQUIRED", "No X-Mpp-Pin header.", request("GET", &api(&a), &[], b"")),
        c("h03-pin-letters", "400", "MALFORMED_PIN", "A PIN with a letter.", request("GET", &api(&a), &[("X-Mpp-Pin", b"31415x")], b"")),
        c("h04-pin-obs-text", "400", "MALFORMED_PIN", "A PIN header of bytes 0xFF 0xFE (not text).", request("GET", &api(&a), &[("X-Mpp-Pin", b"\xff\xfe\xff")], b"")),
        c("h05-pin-10-kb", "400", "FIELD_TOO_LONG", "A 10 kB PIN.", request("GET", &api(&a), &[("X-Mpp-Pin", long_pin.as_bytes())], b"")),
        c("h06-wrong-pin", "404", "CASE_NOT_FOUND", "A wrong PIN: the same answer as an unknown case.", request("GET", &api(&a), &[("X-Mpp-Pin", b"271828")], b"")),
        c("h07-unknown-case", "404", "CASE_NOT_FOUND", "A case never opened.", request("GET", &api(&case_c()), pin, b"")),
        c("h08-bad-check-digit", "400", "BAD_CHECK_DIGIT", "A mistyped tracking number.", request("GET", &api(&bad_check), pin, b"")),
        c("h09-path-not-utf8", "400", "MALFORMED_TRACKING_NUMBER", "Percent-encoded bytes that are not UTF-8.", request("GET", b"/api/v1/cases/%C3%28%FF", pin, b"")),
        c("h10-path-nul", "400", "MALFORMED_TRACKING_NUMBER", "Percent-encoded NUL bytes.", request("GET", b"/api/v1/cases/%00%00", pin, b"")),
        c("h11-path-traversal", "400", "MALFORMED_TRACKING_NUMBER", "An encoded ../../etc/passwd.", request("GET", b"/api/v1/cases/..%2F..%2Fetc%2Fpasswd", pin, b"")),
        tcp("h12-path-20-kb", "431", "A 20 kB tracking number: the request head is over the 16 KiB cap (mpp_edge::http_serve::HTTP_REQUEST_HEAD_BYTES_MAX), refused before the hub reads it.", request("GET", &api(&"A".repeat(20_000)), pin, b"")),
        c("h32-path-2-kb", "400", "FIELD_TOO_LONG", "A 2 kB tracking number (under the head cap).", request("GET", &api(&"A".repeat(2_000)), pin, b"")),
        c("h13-pin-in-query", "400", "PIN_REQUIRED", "The PIN in the query string is not read.", request("GET", format!("/api/v1/cases/{a}?pin={TEST_PIN}").as_bytes(), &[], b"")),
        c("h14-fullwidth-digits", "400", "MALFORMED_TRACKING_NUMBER", "The tracking number in fullwidth digits, percent-encoded.", request("GET", b"/api/v1/cases/%EF%BC%91%EF%BC%97%EF%BC%97%EF%BC%91", pin, b"")),
        c("h15-spaces-in-number", "200", "-", "Spaces instead of hyphens are an accepted spelling.", request("GET", &api(&a.replace('-', "%20")), pin, b"")),
        c("h16-head", "200", "-", "The head.", request("GET", b"/api/v1/head", &[], b"")),
        c("h17-method-not-allowed", "405", "METHOD_NOT_ALLOWED", "DELETE on a read-only path.", request("DELETE", b"/api/v1/head", &[], b"")),
        c("h18-unknown-path-traversal", "404", "NOT_FOUND", "Encoded dot segments outside any route.", request("GET", b"/%2e%2e/%2e%2e/etc/passwd", &[], b"")),
        c("h19-lang-garbage", "200", "-", "A malformed, repeated lang parameter is ignored.", request("GET", b"/lacak?lang=%FF%FE%00&lang=en&x=%ZZ", &[], b"")),
        c("h20-lang-script", "200", "-", "Markup in the lang parameter.", request("GET", format!("/lacak/{a}?lang=%3Cscript%3Ealert(1)%3C/script%3E").as_bytes(), &[], b"")),
        c("h21-page-bidi-number", "400", "-", "A right-to-left override in the page's tracking number.", request("GET", format!("/lacak/%E2%80%AE{a}").as_bytes(), &[], b"")),
        c("h22-receipt-hostile-host", "200", "-", "Markup in the Host header is not echoed into the QR code.", request("GET", format!("/lacak/{a}/tanda-terima").as_bytes(), &[("Host", b"evil\"><script>x</script>")], b"")),
        c("h23-events-without-session", "403", "-", "Live updates without a session cookie.", request("GET", format!("/lacak/{a}/events").as_bytes(), &[], b"")),
        c("h24-cookie-10-kb", "200", "-", "A 10 kB Cookie header is ignored.", request("GET", format!("/lacak/{a}").as_bytes(), &[("Cookie", big_cookie.as_bytes())], b"")),
        c("h25-form-ok", "200", "-", "The lookup form with the right PIN.", request("POST", b"/lacak", form, format!("nomor={a}&pin={TEST_PIN}").as_bytes())),
        c("h26-form-bad-encoding", "400", "-", "Invalid percent-encoding and bytes that are not UTF-8 in the form.", request("POST", b"/lacak", form, b"nomor=%ZZ%C3%28&pin=%FF")),
        c("h27-form-9-kib", "4xx", "-", "A form body over REQUEST_BODY_BYTES_MAX.", request("POST", b"/lacak", form, format!("nomor={}", "1".repeat(9 * 1024)).as_bytes())),
        c("h28-form-as-json", "400", "-", "JSON where a form belongs.", request("POST", b"/lacak", &[("Content-Type", b"application/json")], b"{\"nomor\":1}")),
        c("h29-form-bidi", "400", "-", "A right-to-left override in the typed number.", request("POST", b"/lacak", form, format!("nomor=%E2%80%AE{a}&pin={TEST_PIN}").as_bytes())),
        c("h30-form-duplicate-field", "400", "-", "The pin field twice.", request("POST", b"/lacak", form, format!("nomor={a}&pin={TEST_PIN}&pin=000000").as_bytes())),
        c("h31-forwarded-for-garbage", "200", "-", "A 2.7 kB X-Forwarded-For (not trusted by default).", request("GET", &api(&a), &[("X-Mpp-Pin", TEST_PIN.as_bytes()), ("X-Forwarded-For", long_xff.as_bytes())], b"")),
        tcp("t09-121-headers", "431", "121 headers: over hyper's limit of 100.", request("GET", &api(&a), &many, b"")),
        tcp("t01-garbage-request-line", "400", "Not HTTP at all.", b"GARBAGE\n\n".to_vec()),
        tcp("t02-nul-in-target", "400", "A raw NUL byte in the request target.", request("GET", b"/lacak\x00", &[], b"")),
        tcp("t03-raw-non-ascii-target", "400", "Raw bytes 0xFF in the request target.", request("GET", b"/lacak/\xff\xfe", &[], b"")),
        tcp("t04-content-length-negative", "400", "Content-Length: -1.", b"POST /lacak HTTP/1.1\nHost: hub.test\nConnection: close\nContent-Length: -1\n\n".to_vec()),
        tcp("t05-content-length-overflow", "400", "A Content-Length past u64.", b"POST /lacak HTTP/1.1\nHost: hub.test\nConnection: close\nContent-Length: 99999999999999999999999\n\n".to_vec()),
        tcp("t06-bad-chunk", "4xx", "A chunk size that is not hexadecimal.", b"POST /lacak HTTP/1.1\nHost: hub.test\nConnection: close\nContent-Type: application/x-www-form-urlencoded\nTransfer-Encoding: chunked\n\nzz\nnomor=1\n0\n\n".to_vec()),
        tcp("t07-bad-header-name", "400", "A space inside a header name.", b"GET /lacak HTTP/1.1\nHost: hub.test\nConnection: close\nBad Header: x\n\n".to_vec()),
        tcp("t08-http-0-9", "4xx", "An HTTP/0.9-style request line without a version.", b"GET /lacak\n\n".to_vec()),
    ]
}

fn http_text(c: &HttpCase) -> Vec<u8> {
    let mut out = format!(
        "# expect-status: {}\n# expect-reason: {}\n# transport: {}\n# note: {}\n",
        c.status,
        c.reason,
        if c.tcp_only { "tcp" } else { "any" },
        c.note
    )
    .into_bytes();
    out.extend(&c.request);
    out
}

// ---------------------------------------------------------------------------
// The generator: gRPC requests.

struct GrpcCase {
    name: &'static str,
    server: &'static str,
    path: &'static str,
    request: Vec<u8>,
    authorized: bool,
    code: &'static str,
    reason: &'static str,
    note: &'static str,
}

fn grpc_corpus() -> Vec<GrpcCase> {
    let a = case_a();
    let get = |tracking_number: &str, pin: &str| {
        pb::GetCaseRequest {
            tracking_number: tracking_number.to_owned(),
            pin: pin.to_owned(),
            ..Default::default()
        }
        .encode_to_vec()
    };
    let utf8_marker = |m: &pb::GetCaseRequest| {
        let mut b = m.encode_to_vec();
        let at = b.windows(4).position(|w| w == b"@@@@").unwrap_or(0);
        b[at..at + 4].copy_from_slice(&[0xC3, 0x28, 0xFF, 0xFE]);
        b
    };
    let bad_tn = utf8_marker(&pb::GetCaseRequest {
        tracking_number: "@@@@".to_owned(),
        pin: TEST_PIN.to_owned(),
        ..Default::default()
    });
    let full = get(&a, TEST_PIN);
    let ajukan = |nomor: &str, layanan: i32, dokumen: Vec<String>, petugas: &str| {
        dk::Permohonan { nomor_berkas: nomor.to_owned(), layanan, dokumen, petugas: petugas.to_owned() }
            .encode_to_vec()
    };
    let mut bad_nomor = ajukan("@@@@", 1, vec!["KTP-el".to_owned()], "petugas-7");
    if let Some(at) = bad_nomor.windows(4).position(|w| w == b"@@@@") {
        bad_nomor[at..at + 4].copy_from_slice(&[0xC3, 0x28, 0xFF, 0xFE]);
    }
    let mut random = vec![0x0F];
    random.extend(noise(3, 200));
    const GET: &str = "/mpp.v1.CasesService/GetCase";
    const AJUKAN: &str = "/mpp.agency.dukcapil.v1.DukcapilService/AjukanPermohonan";
    const MULAI: &str = "/mpp.agency.dukcapil.v1.DukcapilService/MulaiVerifikasi";
    let g = |name, server, path, request, authorized, code, reason, note| GrpcCase {
        name,
        server,
        path,
        request,
        authorized,
        code,
        reason,
        note,
    };
    vec![
        g("g01-get-case-ok", "hub", GET, full.clone(), false, "Ok", "-", "A well-formed lookup."),
        g("g02-get-case-not-utf8", "hub", GET, bad_tn, false, "Internal", "-", "tracking_number bytes that are not UTF-8: tonic's decoder answers Internal before the hub sees the call."),
        g("g03-get-case-20-kb-number", "hub", GET, get(&"1".repeat(20_000), TEST_PIN), false, "OutOfRange", "-", "A 20 kB tracking number: over the 1 KiB request cap (mpp_lookup::grpc::CASES_REQUEST_BYTES_MAX); tonic's decoder answers OutOfRange before the hub sees the call."),
        g("g04-get-case-20-kb-pin", "hub", GET, get(&a, &"1".repeat(20_000)), false, "OutOfRange", "-", "A 20 kB PIN: over the 1 KiB request cap."),
        g("g12-get-case-600-b-number", "hub", GET, get(&"1".repeat(600), TEST_PIN), false, "InvalidArgument", "FIELD_TOO_LONG", "A 600-byte tracking number (under the request cap)."),
        g("g13-get-case-600-b-pin", "hub", GET, get(&a, &"1".repeat(600)), false, "InvalidArgument", "FIELD_TOO_LONG", "A 600-byte PIN (under the request cap)."),
        g("g05-get-case-truncated", "hub", GET, full[..full.len() - 3].to_vec(), false, "Internal", "-", "A request cut inside its pin field: tonic's decoder answers Internal."),
        g("g06-get-case-random", "hub", GET, random.clone(), false, "Internal", "-", "Random bytes after a tag of wire type 7."),
        g("g07-get-case-empty", "hub", GET, Vec::new(), false, "InvalidArgument", "MALFORMED_TRACKING_NUMBER", "An empty request: no tracking number."),
        g("g08-get-case-wrong-pin", "hub", GET, get(&a, "271828"), false, "NotFound", "CASE_NOT_FOUND", "A wrong PIN."),
        g("g09-get-case-bidi", "hub", GET, get(&format!("\u{202e}{a}"), TEST_PIN), false, "InvalidArgument", "MALFORMED_TRACKING_NUMBER", "A right-to-left override before the number."),
        g("g10-audit-unauthenticated", "hub", "/mpp.v1.AuditService/GetLatestCheckpoint", Vec::new(), false, "Unauthenticated", "UNAUTHENTICATED", "The audit service without an auditor token."),
        g("g11-unknown-method", "hub", "/mpp.v1.CasesService/DropAllCases", Vec::new(), false, "Unimplemented", "-", "A method that does not exist."),
        g("g20-ajukan-unauthenticated", "dukcapil", AJUKAN, ajukan("", 1, vec!["KTP-el".to_owned()], "petugas-7"), false, "Unauthenticated", "UNAUTHENTICATED", "No bearer token."),
        g("g21-ajukan-not-utf8", "dukcapil", AJUKAN, bad_nomor, true, "Internal", "-", "nomor_berkas bytes that are not UTF-8: tonic's decoder answers Internal."),
        g("g22-ajukan-20-kb-number", "dukcapil", AJUKAN, ajukan(&"1".repeat(20_000), 1, vec!["KTP-el".to_owned()], "petugas-7"), true, "InvalidArgument", "MALFORMED_TRACKING_NUMBER", "A 20 kB tracking number."),
        g("g23-ajukan-unknown-enum", "dukcapil", AJUKAN, ajukan("", -1, vec!["KTP-el".to_owned()], "petugas-7"), true, "InvalidArgument", "INVALID_FIELD_VALUE", "layanan -1 (an enum value that does not exist)."),
        g("g24-ajukan-1000-documents", "dukcapil", AJUKAN, ajukan("", 1, (0..1000).map(|i| format!("dok {i}")).collect(), "petugas-7"), true, "InvalidArgument", "FIELD_TOO_LONG", "1,000 documents."),
        g("g25-ajukan-officer-bidi", "dukcapil", AJUKAN, ajukan("", 1, vec!["KTP-el".to_owned()], "petugas\u{202e}7"), true, "InvalidArgument", "MALFORMED_OFFICER", "A right-to-left override in the officer id."),
        g("g26-ajukan-random", "dukcapil", AJUKAN, random, true, "Internal", "-", "Random bytes."),
        g("g27-mulai-foreign-application-number", "dukcapil", MULAI, dk::Langkah { nomor_berkas: case_c(), nomor_permohonan: "KK-1".to_owned(), petugas: "petugas-7".to_owned() }.encode_to_vec(), true, "InvalidArgument", "MALFORMED_APPLICATION_ID", "A step naming an application number not in the agency's own format (KK-1), on a case it never saw."),
    ]
}

fn grpc_json(c: &GrpcCase) -> String {
    let v = json!({
        "server": c.server,
        "path": c.path,
        "request_base64": b64_encode(&c.request),
        "authorized": c.authorized,
        "expect": { "code": c.code, "reason": c.reason },
        "note": c.note,
    });
    format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
}

/// Every generated file, by path relative to the corpus directory.
fn generated() -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for c in nats_corpus() {
        files.insert(format!("nats/{}.json", c.name), nats_json(&c).into_bytes());
    }
    for c in http_corpus() {
        files.insert(format!("http/{}.txt", c.name), http_text(&c));
    }
    for c in grpc_corpus() {
        files.insert(format!("grpc/{}.json", c.name), grpc_json(&c).into_bytes());
    }
    files
}

#[test]
fn the_committed_corpus_is_the_generated_one() {
    let dir = corpus_dir();
    let files = generated();
    let bless = std::env::var("MPP_BLESS").is_ok_and(|v| v == "1");
    let mut stale = Vec::new();
    for sub in ["nats", "http", "grpc"] {
        let d = dir.join(sub);
        if bless {
            std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        }
        for f in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let rel = format!("{sub}/{}", f.file_name().to_string_lossy());
            if !files.contains_key(&rel) {
                if bless {
                    std::fs::remove_file(f.path()).unwrap_or_else(|e| panic!("{rel}: {e}"));
                } else {
                    stale.push(format!("{rel} is not generated"));
                }
            }
        }
    }
    for (rel, bytes) in &files {
        let path = dir.join(rel);
        if bless {
            std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        } else if std::fs::read(&path).ok().as_ref() != Some(bytes) {
            stale.push(format!("{rel} differs from the generator"));
        }
    }
    assert!(
        stale.is_empty(),
        "tests/corpus is stale; regenerate with MPP_BLESS=1 cargo test -p mpp-lookup --test corpus:\n{}",
        stale.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Reading the committed files (what both runners do).

/// A `nats/` entry as read from its file.
#[derive(Debug)]
struct NatsEntry {
    name: String,
    subject: String,
    payload: Bytes,
    verdict: String,
    reason: String,
}

fn nats_payload(v: &Value) -> Vec<u8> {
    let mut bytes = b64_decode(v["base64"].as_str().unwrap_or(""));
    if let (Some(b), Some(n)) = (v["fill_byte"].as_u64(), v["fill_len"].as_u64()) {
        bytes.resize(bytes.len() + n as usize, b as u8);
    }
    bytes
}

fn sorted_files(sub: &str, ext: &str) -> Vec<PathBuf> {
    let d = corpus_dir().join(sub);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&d)
        .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
        .flatten()
        .map(|f| f.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    files
}

fn nats_entries() -> Vec<NatsEntry> {
    sorted_files("nats", "json")
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            NatsEntry {
                name: p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
                subject: v["subject"].as_str().unwrap_or("").to_owned(),
                payload: Bytes::from(nats_payload(&v["payload"])),
                verdict: v["expect"]["verdict"].as_str().unwrap_or("").to_owned(),
                reason: v["expect"]["reason"].as_str().unwrap_or("").to_owned(),
            }
        })
        .collect()
}

/// An `http/` entry as read from its file.
#[derive(Debug)]
struct HttpEntry {
    name: String,
    status: String,
    reason: String,
    tcp_only: bool,
    /// The raw request with CRLF line ends in its head.
    raw: Vec<u8>,
}

fn http_entries() -> Vec<HttpEntry> {
    sorted_files("http", "txt")
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let CorpusRequest { meta, raw } = parse_corpus_request(&bytes);
            HttpEntry {
                name: p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
                status: meta.get("expect-status").cloned().unwrap_or_default(),
                reason: meta.get("expect-reason").cloned().unwrap_or_default(),
                tcp_only: meta.get("transport").is_some_and(|t| t == "tcp"),
                raw,
            }
        })
        .collect()
}

/// Whether `status` matches an expectation such as `404` or `4xx`.
fn status_matches(expected: &str, status: u16) -> bool {
    match expected.strip_suffix("xx") {
        Some(class) => class == (status / 100).to_string(),
        None => expected == status.to_string(),
    }
}

// ---------------------------------------------------------------------------
// The in-process runners.

fn run_nats_corpus<S: Store>(store: S) -> Vec<String> {
    let entries = nats_entries();
    assert!(entries.len() >= 60, "only {} nats entries", entries.len());
    let mut ledger = Ledger::open(store).unwrap_or_else(|e| panic!("{e}"));
    let mut failures = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let seq = i as u64 + 1;
        let before = ledger::projection(ledger.store()).unwrap_or_else(|e| panic!("{e}"));
        let msg = RawMessage {
            stream_seq: seq,
            stream_time_ns: (RECORD_MS + i as i64 * 1_000) * 1_000_000,
            subject: e.subject.clone(),
            payload: e.payload.clone(),
            redrive: None,
        };
        let outcome = ledger.commit_batch(&[msg]).unwrap_or_else(|err| panic!("{}: {err}", e.name));
        assert_eq!(outcome.head.last_seq, seq, "{}: not exactly one log entry", e.name);
        let entry =
            ledger.store().entry(seq).ok().flatten().unwrap_or_else(|| panic!("{}: no entry", e.name));
        let reason = entry.reason.map_or("-", |r| r.as_str());
        if entry.verdict.as_str() != e.verdict || reason != e.reason {
            failures.push(format!(
                "{}: recorded {} {reason} ({}), expected {} {}",
                e.name,
                entry.verdict.as_str(),
                entry.detail,
                e.verdict,
                e.reason
            ));
        }
        if entry.payload != e.payload.as_ref() {
            failures.push(format!("{}: payload not recorded as received", e.name));
        }
        if entry.verdict != Verdict::Accepted {
            let after = ledger::projection(ledger.store()).unwrap_or_else(|e| panic!("{e}"));
            if after != before {
                failures.push(format!(
                    "{}: a {} message changed the projection",
                    e.name,
                    entry.verdict.as_str()
                ));
            }
        }
    }
    let (rebuilt, _) = ledger::rebuild(ledger.store()).unwrap_or_else(|e| panic!("rebuild: {e}"));
    let stored = ledger::projection(ledger.store()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rebuilt, stored, "the log does not rebuild to the projection");
    failures
}

#[test]
fn every_nats_entry_gets_its_verdict() {
    let failures = run_nats_corpus(MemStore::new());
    assert!(failures.is_empty(), "wrong verdicts on MemStore:\n{}", failures.join("\n"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let sled = SledStore::open(dir.path().join("store")).unwrap_or_else(|e| panic!("{e}"));
    let failures = run_nats_corpus(sled);
    assert!(failures.is_empty(), "wrong verdicts on SledStore:\n{}", failures.join("\n"));
}

#[test]
fn the_nats_corpus_in_one_batch_gives_the_same_log() {
    let entries = nats_entries();
    let msgs: Vec<RawMessage> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| RawMessage {
            stream_seq: i as u64 + 1,
            stream_time_ns: (RECORD_MS + i as i64 * 1_000) * 1_000_000,
            subject: e.subject.clone(),
            payload: e.payload.clone(),
            redrive: None,
        })
        .collect();
    let mut one = Ledger::open(MemStore::new()).unwrap_or_else(|e| panic!("{e}"));
    one.commit_batch(&msgs).unwrap_or_else(|e| panic!("{e}"));
    let mut each = Ledger::open(MemStore::new()).unwrap_or_else(|e| panic!("{e}"));
    for m in &msgs {
        each.commit_batch(std::slice::from_ref(m)).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(one.head(), each.head(), "batching changed the log");
}

/// The parts of a raw request an in-process router needs; `None` when the
/// bytes are not a request `http` can represent (those are `tcp` entries).
fn parse_request(raw: &[u8]) -> Option<Request<Body>> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = &raw[..head_end];
    let body = raw[head_end + 4..].to_vec();
    let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let line = lines.next()?;
    let mut parts = line.split(|&b| b == b' ');
    let (method, target, _version) = (parts.next()?, parts.next()?, parts.next()?);
    let mut b = Request::builder().method(method).uri(target);
    for l in lines {
        let colon = l.iter().position(|&c| c == b':')?;
        let value = l[colon + 1..].strip_prefix(b" ").unwrap_or(&l[colon + 1..]);
        b = b.header(&l[..colon], value);
    }
    b.body(Body::from(body)).ok()
}

#[tokio::test]
async fn every_http_entry_gets_a_clear_answer() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = SledStore::open(dir.path().join("store")).unwrap_or_else(|e| panic!("{e}"));
    let mut ledger = Ledger::open(store.clone()).unwrap_or_else(|e| panic!("{e}"));
    let msgs: Vec<RawMessage> = nats_entries()
        .iter()
        .enumerate()
        .map(|(i, e)| RawMessage {
            stream_seq: i as u64 + 1,
            stream_time_ns: (RECORD_MS + i as i64 * 1_000) * 1_000_000,
            subject: e.subject.clone(),
            payload: e.payload.clone(),
            redrive: None,
        })
        .collect();
    ledger.commit_batch(&msgs).unwrap_or_else(|e| panic!("{e}"));
    let limits = LookupLimits { per_minute: 1_000_000, burst: 1_000_000 };
    let pepper = PinPepper::from_bytes(TEST_PIN_PEPPER).unwrap_or_else(|e| panic!("{e}"));
    let lookups =
        Lookups::new(store, Arc::new(CalendarSet::new()), Arc::new(|| RECORD_MS + 3_600_000), pepper, limits);
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let web = Arc::new(
        Web::new(CaseChanges::new(stop_rx), WebSettings::default()).unwrap_or_else(|e| panic!("{e}")),
    );
    let app =
        router(AppState { lookups, health: Arc::new(mpp_ledger::observe::health(&ledger.head())), web });

    let mut failures = Vec::new();
    let mut ran = 0;
    for e in http_entries() {
        if e.tcp_only {
            continue;
        }
        let Some(mut req) = parse_request(&e.raw) else {
            failures.push(format!("{}: not a request http can hold; mark it `transport: tcp`", e.name));
            continue;
        };
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)), 40_000)));
        let resp = app.clone().oneshot(req).await.unwrap_or_else(|e| match e {});
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap_or_default();
        let code = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.pointer("/error/code").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| "-".to_owned());
        ran += 1;
        if status >= 500 || !status_matches(&e.status, status) || code != e.reason {
            failures
                .push(format!("{}: answered {status} {code}, expected {} {}", e.name, e.status, e.reason));
        }
    }
    assert!(ran >= 25, "only {ran} http entries ran in-process");
    assert!(failures.is_empty(), "wrong answers:\n{}", failures.join("\n"));
}
