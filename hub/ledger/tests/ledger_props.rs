//! The ledger's delivery guarantees and verdicts.
//!
//! The property: any delivery schedule of a stream (random batch sizes,
//! redelivered prefixes and messages at or below the checkpoint, "crashes"
//! that drop the ledger and reopen the store) gives a log byte-identical to,
//! and a projection equal to, one pass that commits each stream message
//! exactly once. Runs on the in-memory store and on sled in a temporary
//! directory. Then one test per class of bad input, through `commit_batch`.

use bytes::Bytes;
use mpp_core::ids::{RegionCode, TrackingNumber};
use mpp_core::log::{Redrive, Verdict};
use mpp_core::{limits, AppState, EventBody, LogEntry, ReasonCode, UncheckedEnvelope};
use mpp_ledger::ledger::{self, BatchOutcome, Gap, Ledger, LedgerError, RawMessage, BATCH_MESSAGES_MAX};
use mpp_store::{push_entry, CommitBatch, Head, MemStore, SledStore, Store};
use mpp_wire as wire;
use proptest::prelude::*;
use prost::Message as _;

/// Time of record of stream message 1: 2025-06-15T15:06:40Z, in ns.
const T0_NS: i64 = 1_750_000_000_000_000_000;
/// Spacing of stream timestamps: one second.
const STEP_NS: i64 = 1_000_000_000;

fn tracking(serial: u64) -> String {
    TrackingNumber::new(RegionCode::parse("1771").unwrap(), serial).unwrap().to_string()
}

/// A canonical UUIDv7 text, unique per `n`.
fn event_id(n: u64) -> String {
    let ms = 1_750_000_000_000u64 + n;
    let hex = format!("{ms:012x}");
    format!("{}-{}-7{:03x}-{:04x}-{:012x}", &hex[..8], &hex[8..], n & 0xfff, 0x8000 | (n & 0x3fff), n)
}

fn subject(agency: &str, service: &str) -> String {
    format!("mpp.events.{agency}.{service}")
}

/// An envelope with every field valid for `agency`/`service`, body `body`.
fn envelope(
    id: &str,
    case: &str,
    app: &str,
    agency: &str,
    service: &str,
    body: EventBody,
) -> UncheckedEnvelope {
    UncheckedEnvelope {
        schema_version: 1,
        event_id: id.to_owned(),
        case_id: case.to_owned(),
        region_code: "1771".to_owned(),
        agency_id: agency.to_owned(),
        service_id: service.to_owned(),
        application_id: app.to_owned(),
        occurred_at_ms: T0_NS / 1_000_000,
        officer: "petugas-7".to_owned(),
        body: Some(body),
    }
}

fn encode(u: &UncheckedEnvelope) -> Bytes {
    Bytes::from(wire::from_unchecked(u).encode_to_vec())
}

fn standard_body(version: u32) -> EventBody {
    EventBody::ServiceStandardPublished {
        name_id: "Kartu Keluarga".to_owned(),
        name_en: "Family card".to_owned(),
        completion_working_days: 3,
        fee_idr: 0,
        requirements: vec!["surat pengantar RT/RW".to_owned()],
        fiktif_positif: false,
        version,
        collection: None,
    }
}

const SERVICES: [&str; 3] = ["kk", "ktp-el", "akta-lahir"];

fn app_body(kind: u8) -> EventBody {
    let docs = vec!["surat pengantar RT/RW".to_owned()];
    match kind % 12 {
        0 | 1 => EventBody::ApplicationFiled { documents: docs },
        2 => EventBody::DocumentsRequested {
            documents: docs,
            counter: "Loket 3".to_owned(),
            note: String::new(),
        },
        3 => EventBody::DocumentsReceived { documents: docs },
        4 => EventBody::ReviewStarted,
        5 => EventBody::FeeAssessed {
            amount_idr: 50_000,
            payment_channel: "Bank Bengkulu".to_owned(),
            billing_code: "B-1".to_owned(),
            due_at_ms: 0,
        },
        6 => EventBody::PaymentReceived { amount_idr: 50_000, payment_reference: "P-1".to_owned() },
        7 => EventBody::AppointmentScheduled {
            kind: "interview".to_owned(),
            at_ms: T0_NS / 1_000_000 + 86_400_000,
            place: "Loket 1".to_owned(),
        },
        8 => EventBody::Issued { document_number: "KK-0001".to_owned() },
        9 => EventBody::Collected,
        10 => EventBody::Rejected { reason_code: "D-01".to_owned(), reason: "data tidak cocok".to_owned() },
        _ => EventBody::Withdrawn { reason: "atas permintaan pemohon".to_owned() },
    }
}

/// One step of a generated stream.
#[derive(Debug, Clone)]
enum Step {
    /// A (new version of a) service standard.
    Publish { service: u8 },
    /// A case opened.
    Open { case: u8 },
    /// An application event of a random kind (some legal, many not).
    Event { case: u8, app: u8, service: u8, kind: u8 },
    /// The next event on an application's happy path (filed, review, fee,
    /// payment, appointment, issued, collected), so applications get deep.
    Advance { case: u8, app: u8 },
    /// A message that fails before any state is read.
    Bad { class: u8 },
    /// The exact payload of an earlier message published again (an
    /// agency retry after JetStream's dedupe window, or an operator redrive).
    Resend { back: usize },
    /// A new event that reuses an earlier message's event id.
    ReuseId { back: usize, case: u8, app: u8, kind: u8 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (0u8..3).prop_map(|service| Step::Publish { service }),
        3 => (0u8..3).prop_map(|case| Step::Open { case }),
        10 => (0u8..3, 0u8..2).prop_map(|(case, app)| Step::Advance { case, app }),
        6 => (0u8..3, 0u8..2, prop_oneof![6 => Just(0u8), 1 => Just(1u8)], 0u8..12)
            .prop_map(|(case, app, service, kind)| Step::Event { case, app, service, kind }),
        2 => (0u8..6).prop_map(|class| Step::Bad { class }),
        2 => (1usize..40).prop_map(|back| Step::Resend { back }),
        1 => (1usize..40, 0u8..4, 0u8..2, 0u8..12)
            .prop_map(|(back, case, app, kind)| Step::ReuseId { back, case, app, kind }),
    ]
}

/// Turns steps into stream messages with sequences 1..=n. Two standards are
/// published and one case is opened first, so most events meet a known
/// service and case.
fn stream(steps: &[Step]) -> Vec<RawMessage> {
    let mut out: Vec<RawMessage> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    let mut versions = [0u32; 3];
    // Happy-path position of each (case, app), as `app_body` kinds.
    const HAPPY: [u8; 7] = [0, 4, 5, 6, 7, 8, 9];
    let mut cursor = std::collections::HashMap::<(u8, u8), usize>::new();
    let mut n = 0u64;
    fn push(out: &mut Vec<RawMessage>, ids: &mut Vec<String>, subject: String, payload: Bytes, id: String) {
        let seq = out.len() as u64 + 1;
        out.push(RawMessage {
            stream_seq: seq,
            stream_time_ns: T0_NS + seq as i64 * STEP_NS,
            subject,
            payload,
            redrive: None,
        });
        ids.push(id);
    }
    let prefix = [Step::Publish { service: 0 }, Step::Publish { service: 1 }, Step::Open { case: 0 }];
    for s in prefix.iter().chain(steps) {
        n += 1;
        let id = event_id(n);
        match s {
            Step::Publish { service } => {
                let svc = SERVICES[*service as usize];
                versions[*service as usize] += 1;
                let u = envelope(&id, "", "", "dukcapil", svc, standard_body(versions[*service as usize]));
                push(&mut out, &mut ids, subject("dukcapil", svc), encode(&u), id);
            }
            Step::Open { case } => {
                let body = EventBody::CaseOpened { pin_verifier: vec![7; 32], nik_keyed_hash: vec![9; 32] };
                let u = envelope(&id, &tracking(*case as u64 + 1), "", "dukcapil", "kk", body);
                push(&mut out, &mut ids, subject("dukcapil", "kk"), encode(&u), id);
            }
            Step::Event { case, app, service, kind } => {
                let svc = SERVICES[*service as usize];
                let u = envelope(
                    &id,
                    &tracking(*case as u64 + 1),
                    &format!("app-{app}"),
                    "dukcapil",
                    svc,
                    app_body(*kind),
                );
                push(&mut out, &mut ids, subject("dukcapil", svc), encode(&u), id);
            }
            Step::Advance { case, app } => {
                let at = cursor.entry((*case, *app)).or_default();
                let kind = HAPPY[*at % HAPPY.len()];
                *at += 1;
                let u = envelope(
                    &id,
                    &tracking(*case as u64 + 1),
                    &format!("app-{app}"),
                    "dukcapil",
                    "kk",
                    app_body(kind),
                );
                push(&mut out, &mut ids, subject("dukcapil", "kk"), encode(&u), id);
            }
            Step::Bad { class } => {
                let good = envelope(&id, &tracking(1), "app-0", "dukcapil", "kk", EventBody::ReviewStarted);
                let (subj, payload) = match class {
                    0 => (subject("dukcapil", "kk"), Bytes::from_static(&[0xff; 12])),
                    1 => (subject("dukcapil", "kk"), Bytes::new()),
                    2 => (subject("imigrasi", "kk"), encode(&good)),
                    3 => (
                        subject("dukcapil", "kk"),
                        encode(&UncheckedEnvelope { event_id: "not-a-uuid".into(), ..good }),
                    ),
                    4 => (
                        subject("dukcapil", "kk"),
                        encode(&UncheckedEnvelope { case_id: "1771-0000000001-0".into(), ..good }),
                    ),
                    _ => (subject("dukcapil", "kk"), Bytes::from(vec![0u8; limits::MESSAGE_BYTES_MAX + 1])),
                };
                push(&mut out, &mut ids, subj, payload, id);
            }
            Step::Resend { back } => {
                if let Some(earlier) = out.len().checked_sub(*back).map(|i| out[i].clone()) {
                    let eid = ids[earlier.stream_seq as usize - 1].clone();
                    push(&mut out, &mut ids, earlier.subject, earlier.payload, eid);
                }
            }
            Step::ReuseId { back, case, app, kind } => {
                if let Some(i) = ids.len().checked_sub(*back) {
                    let reused = ids[i].clone();
                    let u = envelope(
                        &reused,
                        &tracking(*case as u64 + 1),
                        &format!("app-{app}"),
                        "dukcapil",
                        "kk",
                        app_body(*kind),
                    );
                    push(&mut out, &mut ids, subject("dukcapil", "kk"), encode(&u), reused);
                }
            }
        }
    }
    out
}

/// How the stream is delivered.
#[derive(Debug, Clone)]
enum Delivery {
    /// Deliver up to `len` messages starting `back` messages below the
    /// checkpoint + 1 (a redelivered prefix); `repeat` also repeats the
    /// batch's first message inside the batch.
    Batch { back: u64, len: u64, repeat: bool },
    /// Drop the ledger (and for sled the store) and reopen.
    Crash,
}

fn delivery() -> impl Strategy<Value = Delivery> {
    prop_oneof![
        8 => (prop_oneof![3 => Just(0u64), 1 => 1u64..6], 1u64..12, prop::bool::weighted(0.2))
            .prop_map(|(back, len, repeat)| Delivery::Batch { back, len, repeat }),
        1 => Just(Delivery::Crash),
    ]
}

/// Opens a fresh handle on the same store ("reopen after a crash").
trait Reopen: Store + Sized {
    fn reopen(self) -> Self;
}

impl Reopen for MemStore {
    /// What a crash leaves: the written data, without the case values the
    /// store held back (the ledger re-derives them when it opens).
    fn reopen(self) -> Self {
        self.without_held_back()
    }
}

struct SledDir(tempfile::TempDir);

impl SledDir {
    fn open(&self) -> SledStore {
        SledStore::open_with_cache(self.0.path(), 8 * 1024 * 1024).unwrap()
    }
}

/// Delivers `msgs` by `schedule` and then to the end; returns the store.
fn deliver<S: Store>(msgs: &[RawMessage], schedule: &[Delivery], store: S, reopen: impl Fn(S) -> S) -> S {
    let n = msgs.len() as u64;
    let mut ledger = Ledger::open(store).unwrap();
    let mut recorded = 0usize;
    let mut batch_of = |ledger: &mut Ledger<S>, back: u64, len: u64, repeat: bool| {
        let cp = ledger.head().last_stream_seq;
        let start = cp + 1 - back.min(cp);
        let end = (start + len - 1).min(n);
        if start > end {
            return;
        }
        let mut batch: Vec<RawMessage> = msgs[start as usize - 1..end as usize].to_vec();
        if repeat {
            batch.insert(1, batch[0].clone());
        }
        // Skipped: everything at or below the running checkpoint.
        let mut running = cp;
        let below = batch
            .iter()
            .filter(|m| {
                let skip = m.stream_seq <= running;
                running = running.max(m.stream_seq);
                skip
            })
            .count();
        let before = ledger.head();
        let out: BatchOutcome = ledger.commit_batch(&batch).unwrap();
        assert_eq!(out.gap, None);
        assert_eq!(out.skipped, below, "redeliveries are skipped and counted");
        let fresh = out.accepted + out.rejected + out.duplicates;
        assert_eq!(fresh, batch.len() - below);
        assert_eq!(out.head, ledger.head());
        assert_eq!(out.head.last_seq, before.last_seq + fresh as u64);
        assert_eq!(out.head.last_stream_seq, end.max(cp));
        recorded += fresh;
    };
    for d in schedule {
        match d {
            Delivery::Batch { back, len, repeat } => batch_of(&mut ledger, *back, *len, *repeat),
            Delivery::Crash => {
                let head = ledger.head();
                let store = reopen(ledger_into_store(ledger));
                ledger = Ledger::open(store).unwrap();
                assert_eq!(ledger.head(), head, "a commit is durable once commit_batch returned");
            }
        }
    }
    while ledger.head().last_stream_seq < n {
        batch_of(&mut ledger, 0, 16, false);
    }
    assert_eq!(recorded as u64, n, "each stream message is recorded exactly once");
    ledger_into_store(ledger)
}

fn ledger_into_store<S: Store>(ledger: Ledger<S>) -> S {
    let store = ledger.store().clone();
    drop(ledger);
    store
}

fn log_bytes(store: &impl Store) -> Vec<Vec<u8>> {
    store.entries(1).map(|e| e.unwrap().encode()).collect()
}

/// The reference: every message once, in one batch.
fn reference(msgs: &[RawMessage]) -> MemStore {
    let store = MemStore::new();
    let mut ledger = Ledger::open(store.clone()).unwrap();
    let out = ledger.commit_batch(msgs).unwrap();
    assert_eq!(out.skipped + out.accepted + out.rejected + out.duplicates, msgs.len());
    store
}

fn assert_same(got: &impl Store, want: &impl Store) {
    assert_eq!(got.head().unwrap(), want.head().unwrap());
    assert_eq!(log_bytes(got), log_bytes(want), "logs differ");
    let live = ledger::projection(got).unwrap();
    assert_eq!(live, ledger::projection(want).unwrap(), "projections differ");
    let (rebuilt, head) = ledger::rebuild(got).unwrap();
    assert_eq!(head, got.head().unwrap());
    assert_eq!(rebuilt, live, "rebuild from the log differs from the live projection");
    assert_eq!(ledger::verify_chain(got).unwrap(), head.last_seq);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn any_delivery_gives_the_reference_log_in_memory(
        steps in prop::collection::vec(step(), 0..60),
        schedule in prop::collection::vec(delivery(), 0..30),
    ) {
        let msgs = stream(&steps);
        let want = reference(&msgs);
        let got = deliver(&msgs, &schedule, MemStore::new(), MemStore::reopen);
        assert_same(&got, &want);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn any_delivery_gives_the_reference_log_on_sled(
        steps in prop::collection::vec(step(), 0..50),
        schedule in prop::collection::vec(delivery(), 0..20),
    ) {
        let msgs = stream(&steps);
        let want = reference(&msgs);
        let dir = SledDir(tempfile::tempdir().unwrap());
        let got = deliver(&msgs, &schedule, dir.open(), |s| { drop(s); dir.open() });
        assert_same(&got, &want);
        drop(got);
        // And once more from the directory alone, as a hub reopens it after
        // a crash (the held-back case values re-derived from the log).
        let again = dir.open();
        Ledger::open(again.clone()).unwrap();
        assert_same(&again, &want);
    }

    /// Arbitrary bytes are recorded as rejected, never accepted, never a panic.
    #[test]
    fn arbitrary_payloads_are_rejected(payload in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut h = Harness::new();
        let e = h.send(&subject("dukcapil", "kk"), Bytes::from(payload));
        prop_assert_eq!(e.verdict, Verdict::Rejected);
    }
}

/// A ledger on a memory store with a standard for dukcapil/kk, case 1 open
/// and application `app-0` filed, fed one message at a time.
struct Harness {
    ledger: Ledger<MemStore>,
    next: u64,
}

impl Harness {
    fn bare() -> Self {
        Harness { ledger: Ledger::open(MemStore::new()).unwrap(), next: 1 }
    }

    fn new() -> Self {
        let mut h = Harness::bare();
        h.ok(&envelope(&event_id(100_001), "", "", "dukcapil", "kk", standard_body(1)));
        let opened = EventBody::CaseOpened { pin_verifier: vec![1; 32], nik_keyed_hash: vec![] };
        h.ok(&envelope(&event_id(100_002), &tracking(1), "", "dukcapil", "kk", opened));
        h.ok(&envelope(&event_id(100_003), &tracking(1), "app-0", "dukcapil", "kk", app_body(0)));
        h
    }

    /// Commits one message at `at_ns` and returns its entry.
    fn send_at(&mut self, subject: &str, payload: Bytes, at_ns: i64) -> LogEntry {
        self.send_raw(subject, payload, at_ns, None)
    }

    /// Commits one message with the redrive its headers claim.
    fn send_redrive(&mut self, subject: &str, payload: Bytes, redrive: Redrive) -> LogEntry {
        self.send_raw(subject, payload, T0_NS + self.next as i64 * STEP_NS, Some(redrive))
    }

    fn send_raw(&mut self, subject: &str, payload: Bytes, at_ns: i64, redrive: Option<Redrive>) -> LogEntry {
        let m = RawMessage {
            stream_seq: self.next,
            stream_time_ns: at_ns,
            subject: subject.to_owned(),
            payload,
            redrive,
        };
        self.next += 1;
        let out = self.ledger.commit_batch(&[m]).unwrap();
        assert_eq!(out.skipped, 0);
        self.ledger.store().entry(out.head.last_seq).unwrap().unwrap()
    }

    fn send(&mut self, subject: &str, payload: Bytes) -> LogEntry {
        self.send_at(subject, payload, T0_NS + self.next as i64 * STEP_NS)
    }

    fn send_env(&mut self, u: &UncheckedEnvelope) -> LogEntry {
        self.send(&subject(&u.agency_id, &u.service_id), encode(u))
    }

    fn ok(&mut self, u: &UncheckedEnvelope) -> LogEntry {
        let e = self.send_env(u);
        assert_eq!((e.verdict, e.reason), (Verdict::Accepted, None), "{}", e.detail);
        e
    }

    /// Sends `u` and asserts it was rejected with `code` and changed nothing.
    fn rejects(&mut self, subject: &str, payload: Bytes, code: ReasonCode) -> LogEntry {
        let before = ledger::projection(self.ledger.store()).unwrap();
        let e = self.send(subject, payload);
        assert_eq!((e.verdict, e.reason), (Verdict::Rejected, Some(code)), "{}", e.detail);
        assert_eq!(ledger::projection(self.ledger.store()).unwrap(), before, "a rejection changes nothing");
        e
    }

    fn rejects_env(&mut self, u: &UncheckedEnvelope, code: ReasonCode) -> LogEntry {
        self.rejects(&subject(&u.agency_id, &u.service_id), encode(u), code)
    }
}

fn on_app(id: u64, kind: u8) -> UncheckedEnvelope {
    envelope(&event_id(id), &tracking(1), "app-0", "dukcapil", "kk", app_body(kind))
}

#[test]
fn random_bytes_are_undecodable() {
    Harness::new().rejects(
        &subject("dukcapil", "kk"),
        Bytes::from_static(&[0xff; 12]),
        ReasonCode::UndecodableEnvelope,
    );
}

#[test]
fn an_empty_payload_is_rejected() {
    Harness::new().rejects(&subject("dukcapil", "kk"), Bytes::new(), ReasonCode::EmptyMessage);
}

#[test]
fn an_oversized_payload_names_the_limit() {
    let mut h = Harness::new();
    // A valid envelope is padded past the limit with a long document list
    // entry; the size check comes before decoding.
    let mut u = on_app(1, 3);
    u.body = Some(EventBody::DocumentsReceived { documents: vec!["x".repeat(limits::MESSAGE_BYTES_MAX)] });
    let e = h.rejects_env(&u, ReasonCode::MessageTooLarge);
    assert!(e.detail.contains(&limits::MESSAGE_BYTES_MAX.to_string()), "{}", e.detail);
    assert!(e.detail.contains("MESSAGE_BYTES_MAX"), "{}", e.detail);
    assert!(e.payload.len() > limits::MESSAGE_BYTES_MAX, "the payload is kept as received");
    // Exactly at the limit is not too large (it fails later, as undecodable).
    h.rejects(
        &subject("dukcapil", "kk"),
        Bytes::from(vec![0xffu8; limits::MESSAGE_BYTES_MAX]),
        ReasonCode::UndecodableEnvelope,
    );
}

#[test]
fn an_envelope_on_another_agencys_subject_is_rejected() {
    let mut h = Harness::new();
    let u = on_app(1, 4);
    h.rejects(&subject("imigrasi", "kk"), encode(&u), ReasonCode::AgencySubjectMismatch);
}

#[test]
fn an_overlong_subject_is_a_bad_subject() {
    let mut h = Harness::new();
    let long = format!("mpp.events.dukcapil.{}", "k".repeat(300));
    let e = h.rejects(&long, encode(&on_app(1, 4)), ReasonCode::BadSubject);
    assert!(e.subject.len() <= limits::SUBJECT_BYTES_MAX);
    // The replay of the truncated subject agrees.
    ledger::rebuild(h.ledger.store()).unwrap();
}

#[test]
fn an_unknown_service_is_rejected() {
    let mut h = Harness::new();
    let u = envelope(&event_id(1), &tracking(1), "app-9", "dukcapil", "paspor", app_body(0));
    h.rejects_env(&u, ReasonCode::UnknownService);
}

#[test]
fn only_the_standard_in_force_of_each_service_is_held_in_memory() {
    let mut h = Harness::new();
    assert_eq!(h.ledger.standards_in_memory(), 1, "dukcapil/kk");
    // Successive versions of one service replace each other; a stale one
    // is refused and adds nothing.
    for (n, version) in [(1, 2), (2, 3), (3, 4)] {
        h.ok(&envelope(&event_id(n), "", "", "dukcapil", "kk", standard_body(version)));
    }
    let stale = envelope(&event_id(4), "", "", "dukcapil", "kk", standard_body(2));
    h.rejects_env(&stale, ReasonCode::StaleStandardVersion);
    assert_eq!(h.ledger.standards_in_memory(), 1, "still one service");
    // Another service is another entry; reopening loads the same count.
    h.ok(&envelope(&event_id(5), "", "", "dukcapil", "ktp-el", standard_body(1)));
    assert_eq!(h.ledger.standards_in_memory(), 2);
    let store = h.ledger.store().clone();
    assert_eq!(Ledger::open(store).unwrap().standards_in_memory(), 2);
}

#[test]
fn an_event_for_a_never_filed_application_is_rejected() {
    let mut h = Harness::new();
    let u = envelope(&event_id(1), &tracking(1), "app-404", "dukcapil", "kk", app_body(4));
    h.rejects_env(&u, ReasonCode::UnknownApplication);
}

#[test]
fn nothing_leaves_a_terminal_state() {
    let mut h = Harness::new();
    h.ok(&on_app(1, 11)); // withdrawn
    h.rejects_env(&on_app(2, 4), ReasonCode::IllegalTransition);
    h.rejects_env(&on_app(3, 10), ReasonCode::IllegalTransition);
}

#[test]
fn a_missing_event_id_is_rejected() {
    let mut h = Harness::new();
    let u = UncheckedEnvelope { event_id: String::new(), ..on_app(1, 4) };
    h.rejects_env(&u, ReasonCode::MissingEventId);
}

#[test]
fn a_malformed_event_id_is_rejected() {
    let mut h = Harness::new();
    // A version 4 UUID.
    let u = UncheckedEnvelope { event_id: "0190a5c8-1f2e-4d3c-8b4a-123456789abc".into(), ..on_app(1, 4) };
    h.rejects_env(&u, ReasonCode::MalformedEventId);
}

#[test]
fn a_bad_check_digit_is_rejected() {
    let mut h = Harness::new();
    let good = tracking(1);
    let last = good.chars().last().unwrap().to_digit(10).unwrap();
    let bad = format!("{}{}", &good[..good.len() - 1], (last + 1) % 10);
    let u = UncheckedEnvelope { case_id: bad, ..on_app(1, 4) };
    h.rejects_env(&u, ReasonCode::BadCheckDigit);
}

#[test]
fn a_duplicate_event_id_long_after_is_recorded_without_effect() {
    let mut h = Harness::new();
    let first = h.ok(&on_app(1, 4)); // review started
    for i in 0..5 {
        h.rejects_env(&on_app(10 + i, 3), ReasonCode::IllegalTransition);
    }
    let before = ledger::projection(h.ledger.store()).unwrap();
    // Thirty days later, far outside JetStream's duplicate window, the same
    // event arrives again, and then the same id with other content.
    let later = T0_NS + 30 * 86_400 * 1_000_000_000;
    for u in [on_app(1, 4), on_app(1, 8)] {
        let e = h.send_at(&subject("dukcapil", "kk"), encode(&u), later);
        assert_eq!((e.verdict, e.reason), (Verdict::Duplicate, Some(ReasonCode::DuplicateEventId)));
        assert!(e.detail.contains(&format!("seq {}", first.seq)), "{}", e.detail);
    }
    assert_eq!(ledger::projection(h.ledger.store()).unwrap(), before);
    let (rebuilt, _) = ledger::rebuild(h.ledger.store()).unwrap();
    assert_eq!(rebuilt, before);
}

#[test]
fn a_rejected_event_id_is_not_burned() {
    let mut h = Harness::new();
    // Review of app-1 arrives before app-1 is filed: rejected ...
    let review = envelope(&event_id(1), &tracking(1), "app-1", "dukcapil", "kk", app_body(4));
    h.rejects_env(&review, ReasonCode::UnknownApplication);
    h.ok(&envelope(&event_id(2), &tracking(1), "app-1", "dukcapil", "kk", app_body(0)));
    // ... and accepted when the same event is published again afterwards.
    let e = h.ok(&review);
    // Only now is the id burned.
    let again = h.send_env(&review);
    assert_eq!(again.verdict, Verdict::Duplicate);
    assert!(again.detail.contains(&format!("seq {}", e.seq)));
    ledger::rebuild(h.ledger.store()).unwrap();
}

#[test]
fn a_redrive_is_logged_as_the_operators_and_replays_byte_for_byte() {
    let mut h = Harness::new();
    let op = |of_seq| Redrive { of_seq, operator: "op-1".to_owned() };
    let redrive_subject = "mpp.events.redrive.dukcapil.kk";
    // Reviews of app-1 and app-2 before their filings: rejected.
    let early1 = envelope(&event_id(1), &tracking(1), "app-1", "dukcapil", "kk", app_body(4));
    let early2 = envelope(&event_id(2), &tracking(1), "app-2", "dukcapil", "kk", app_body(4));
    let r1 = h.rejects_env(&early1, ReasonCode::UnknownApplication);
    let r2 = h.rejects_env(&early2, ReasonCode::UnknownApplication);
    h.ok(&envelope(&event_id(3), &tracking(1), "app-1", "dukcapil", "kk", app_body(0)));
    h.ok(&envelope(&event_id(4), &tracking(1), "app-2", "dukcapil", "kk", app_body(0)));
    // app-2 moved on: its early review is superseded.
    h.ok(&envelope(&event_id(5), &tracking(1), "app-2", "dukcapil", "kk", app_body(4)));

    // The operator's redrive of r1: accepted, in the operator's name.
    let e = h.send_redrive(redrive_subject, encode(&early1), op(r1.seq));
    assert_eq!((e.verdict, e.reason), (Verdict::Accepted, None), "{}", e.detail);
    assert_eq!(e.redrive, Some(op(r1.seq)));
    assert_eq!(e.payload, r1.payload);
    assert_eq!(e.encode()[0], mpp_core::log::ENTRY_FORMAT_V2);
    // Of r2: superseded.
    let e = h.send_redrive(redrive_subject, encode(&early2), op(r2.seq));
    assert_eq!(e.reason, Some(ReasonCode::RedriveSuperseded), "{}", e.detail);
    // Naming an entry of another payload, an accepted one, a later one.
    for of_seq in [r1.seq, r1.seq + 2, h.next + 100] {
        let e = h.send_redrive(redrive_subject, encode(&early2), op(of_seq));
        assert_eq!(e.reason, Some(ReasonCode::RedriveInvalid), "of {of_seq}: {}", e.detail);
    }
    // Ingest never claims a redrive on an agency's own subject
    // (`redrive::claim`); the ledger refuses one there anyway.
    let own = h.send_redrive(&subject("dukcapil", "kk"), encode(&early1), op(r1.seq));
    assert_eq!(own.reason, Some(ReasonCode::RedriveInvalid), "{}", own.detail);

    // The log replays to the same hashes, redrives included.
    ledger::rebuild(h.ledger.store()).unwrap();
    ledger::verify_chain(h.ledger.store()).unwrap();
}

#[test]
fn a_duplicate_inside_one_batch_is_caught() {
    let mut h = Harness::new();
    let cp = h.ledger.head().last_stream_seq;
    let msg = |seq: u64| RawMessage {
        stream_seq: seq,
        stream_time_ns: T0_NS + seq as i64 * STEP_NS,
        subject: subject("dukcapil", "kk"),
        payload: encode(&on_app(1, 4)),
        redrive: None,
    };
    let out = h.ledger.commit_batch(&[msg(cp + 1), msg(cp + 2)]).unwrap();
    assert_eq!((out.accepted, out.duplicates), (1, 1));
    assert_eq!(out.touched_cases, vec![TrackingNumber::parse(&tracking(1)).unwrap()]);
}

#[test]
fn a_gap_is_reported_and_nothing_after_it_is_committed() {
    let mut h = Harness::new();
    let cp = h.ledger.head().last_stream_seq;
    assert_eq!(cp, 3);
    let head = h.ledger.head();
    let msg = |seq: u64, id: u64| RawMessage {
        stream_seq: seq,
        stream_time_ns: T0_NS + seq as i64 * STEP_NS,
        subject: subject("dukcapil", "kk"),
        payload: encode(&on_app(id, 4)),
        redrive: None,
    };
    // 4 is fine, 5 is missing.
    let out = h.ledger.commit_batch(&[msg(2, 90), msg(4, 1), msg(6, 2), msg(7, 3)]).unwrap();
    assert_eq!(out.gap, Some(Gap { expected: 5, got: 6 }));
    assert_eq!((out.skipped, out.accepted, out.rejected, out.duplicates), (1, 1, 0, 0));
    assert_eq!(out.head.last_seq, head.last_seq + 1);
    assert_eq!(out.head.last_stream_seq, 4);
    let store = h.ledger.store().clone();
    assert_eq!(store.head().unwrap(), out.head);
    assert_eq!(store.entry(out.head.last_seq + 1).unwrap(), None);
    // A gap right at the start commits nothing at all.
    let out = h.ledger.commit_batch(&[msg(6, 2)]).unwrap();
    assert_eq!(out.gap, Some(Gap { expected: 5, got: 6 }));
    assert_eq!(store.head().unwrap().last_stream_seq, 4);
    // Once 5 arrives, ingest continues.
    let out = h.ledger.commit_batch(&[msg(5, 4), msg(6, 2), msg(7, 3)]).unwrap();
    assert_eq!(out.gap, None);
    assert_eq!(out.head.last_stream_seq, 7);
}

#[test]
fn a_batch_of_redeliveries_writes_nothing() {
    let mut h = Harness::new();
    let head = h.ledger.head();
    let entries: Vec<LogEntry> = h.ledger.store().entries(1).map(Result::unwrap).collect();
    let redelivered: Vec<RawMessage> = entries
        .iter()
        .map(|e| RawMessage {
            stream_seq: e.stream_seq,
            stream_time_ns: e.stream_time_ns,
            subject: e.subject.clone(),
            payload: Bytes::from(e.payload.clone()),
            redrive: None,
        })
        .collect();
    let out = h.ledger.commit_batch(&redelivered).unwrap();
    assert_eq!(out.skipped, 3);
    assert_eq!(out.head, head);
    assert!(out.touched_cases.is_empty());
}

#[test]
fn an_oversized_batch_is_refused_whole() {
    let mut h = Harness::bare();
    let msgs: Vec<RawMessage> = (1..=BATCH_MESSAGES_MAX as u64 + 1)
        .map(|s| RawMessage {
            stream_seq: s,
            stream_time_ns: T0_NS,
            subject: String::new(),
            payload: Bytes::new(),
            redrive: None,
        })
        .collect();
    assert!(matches!(h.ledger.commit_batch(&msgs), Err(LedgerError::BatchTooLarge { .. })));
    assert_eq!(h.ledger.head(), Head::GENESIS);
}

#[test]
fn rebuild_finds_a_verdict_the_rules_would_not_give() {
    let mut h = Harness::new();
    let store = h.ledger.store().clone();
    let head = store.head().unwrap();
    // Someone with write access records garbage as accepted, chained properly.
    let forged = LogEntry::new(
        head.last_seq + 1,
        head.last_stream_seq + 1,
        T0_NS,
        Verdict::Accepted,
        None,
        "",
        &subject("dukcapil", "kk"),
        vec![0xff; 12],
        head.head_hash,
    );
    let new_head = Head { last_seq: forged.seq, last_stream_seq: forged.stream_seq, head_hash: forged.hash };
    let mut frontier = store.head_and_frontier().unwrap().1;
    let mut subtrees = Vec::new();
    push_entry(&mut frontier, &forged.hash, &mut subtrees).unwrap();
    store
        .commit(CommitBatch {
            entries: vec![forged.clone()],
            head: new_head,
            frontier,
            subtrees,
            ..Default::default()
        })
        .unwrap();
    // The chain itself is intact ...
    assert_eq!(ledger::verify_chain(&store).unwrap(), forged.seq);
    // ... but the replay disagrees, naming the entry.
    match ledger::rebuild(&store) {
        Err(LedgerError::Replay { seq, what }) => {
            assert_eq!(seq, forged.seq);
            assert!(what.contains("UNDECODABLE_ENVELOPE"), "{what}");
        }
        other => panic!("expected a replay error, got {other:?}"),
    }
    // The ledger reopens on it and carries on from the forged head.
    h.ledger = Ledger::open(store).unwrap();
    assert_eq!(h.ledger.head(), new_head);
}

/// The generated streams are realistic enough to mean something: across a
/// fixed sample, every verdict occurs, and applications pass through deep
/// states.
#[test]
fn generated_streams_cover_every_verdict_and_deep_states() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = prop::collection::vec(step(), 40..60);
    let mut reasons = std::collections::BTreeMap::<&str, usize>::new();
    let mut states = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let steps = strategy.new_tree(&mut runner).unwrap().current();
        let store = reference(&stream(&steps));
        for e in store.entries(1) {
            let e = e.unwrap();
            *reasons.entry(e.reason.map_or("ACCEPTED", |r| r.as_str())).or_default() += 1;
        }
        for c in ledger::projection(&store).unwrap().cases.values() {
            states.extend(c.applications.iter().flat_map(|a| a.timeline.iter().map(|t| t.state_after)));
        }
    }
    for code in
        ["ACCEPTED", "DUPLICATE_EVENT_ID", "ILLEGAL_TRANSITION", "UNKNOWN_CASE", "UNDECODABLE_ENVELOPE"]
    {
        assert!(reasons.get(code).copied().unwrap_or(0) >= 5, "{code} too rare: {reasons:?}");
    }
    for s in [
        AppState::AwaitingPayment,
        AppState::Scheduled,
        AppState::Issued,
        AppState::Collected,
        AppState::Withdrawn,
    ] {
        assert!(states.contains(&s), "no application reached {s:?}: {states:?}");
    }
}
