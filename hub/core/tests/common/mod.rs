//! Shared builders for the core's integration tests: valid sample envelopes,
//! and a cqrs-es style `given(events).when(event).then_expect(outcome)`
//! harness over [`MemState`], [`validate`], [`decide`] and [`apply`].
//!
//! Every test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use mpp_core::case::Case;
use mpp_core::checkpoint::{Checkpoint, KeyId, Origin, SignedCheckpoint};
use mpp_core::decide::{apply_noted, decide_at, EntryMeta, MemState};
use mpp_core::event::{EventBody, EventKind, UncheckedEnvelope};
use mpp_core::ids::{ApplicationId, EventId, RegionCode, TrackingNumber};
use mpp_core::log::{LogEntry, Verdict, GENESIS_HASH};
use mpp_core::reason::{ReasonCode, Rejection};
use mpp_core::registry::{
    apply_statement, decide_statement, validate_statement, ParticipantKind, Registry, UncheckedStatement,
    UncheckedStatementBody,
};
use mpp_core::state::AppState;
use mpp_core::validate::{validate, SCHEMA_VERSION};
use proptest::prelude::*;

/// The MPP every sample case belongs to (Kota Bengkulu).
pub(crate) const REGION: &str = "1771";
/// The first time of record of a scenario, Unix ms (2025-06-15).
pub(crate) const RECORD_MS: i64 = 1_750_000_000_000;
/// Milliseconds between two consecutive log entries of a scenario.
pub(crate) const ENTRY_GAP_MS: i64 = 1_000;
/// The default agency and service of sample events.
pub(crate) const AGENCY: &str = "dukcapil";
pub(crate) const SERVICE: &str = "kk";

/// The canonical text of the tracking number with this serial in [`REGION`].
pub(crate) fn tracking(serial: u64) -> String {
    tracking_number(serial).to_string()
}

/// The tracking number with this serial in [`REGION`].
pub(crate) fn tracking_number(serial: u64) -> TrackingNumber {
    let region = RegionCode::parse(REGION).expect("sample region is valid");
    TrackingNumber::new(region, serial).expect("sample serial fits")
}

/// An application id.
pub(crate) fn app_id(s: &str) -> ApplicationId {
    ApplicationId::parse(s).expect("sample application id is valid")
}

/// A fresh, valid UUIDv7 text for every call.
pub(crate) fn fresh_event_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    event_id(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A valid UUIDv7 text whose random bits are `n`.
pub(crate) fn event_id(n: u64) -> String {
    let mut b = [0u8; 16];
    let ts = (RECORD_MS as u64).to_be_bytes();
    b[..6].copy_from_slice(&ts[2..]);
    b[6] = 0x70;
    b[8..].copy_from_slice(&n.to_be_bytes());
    b[8] = (b[8] & 0x3f) | 0x80;
    EventId(b).to_string()
}

/// A valid sample body of each kind.
pub(crate) fn body(kind: EventKind) -> EventBody {
    let s = |x: &str| x.to_owned();
    match kind {
        EventKind::CaseOpened => {
            EventBody::CaseOpened { pin_verifier: vec![1; 32], nik_keyed_hash: vec![2; 32] }
        }
        EventKind::ApplicationFiled => {
            EventBody::ApplicationFiled { documents: vec![s("KTP-el"), s("Buku nikah")] }
        }
        EventKind::DocumentsRequested => EventBody::DocumentsRequested {
            documents: vec![s("Surat pengantar RT/RW")],
            counter: s("Loket 3"),
            note: s("Bawa aslinya"),
        },
        EventKind::DocumentsReceived => {
            EventBody::DocumentsReceived { documents: vec![s("Surat pengantar RT/RW")] }
        }
        EventKind::FeeAssessed => EventBody::FeeAssessed {
            amount_idr: 150_000,
            payment_channel: s("Bank Bengkulu"),
            billing_code: s("BILL-0001"),
            due_at_ms: 0,
        },
        EventKind::PaymentReceived => {
            EventBody::PaymentReceived { amount_idr: 150_000, payment_reference: s("REF-0001") }
        }
        EventKind::AppointmentScheduled => EventBody::AppointmentScheduled {
            kind: s("interview"),
            at_ms: RECORD_MS + 3 * 86_400_000,
            place: s("MPP Kota Bengkulu, loket 7"),
        },
        EventKind::ReviewStarted => EventBody::ReviewStarted,
        EventKind::Issued => EventBody::Issued { document_number: s("1771-KK-000123") },
        EventKind::Rejected => EventBody::Rejected { reason_code: s("R01"), reason: s("Dokumen tidak sah") },
        EventKind::Withdrawn => EventBody::Withdrawn { reason: s("Pemohon membatalkan") },
        EventKind::Collected => EventBody::Collected,
        EventKind::ServiceStandardPublished => standard_body(1),
        EventKind::PersonalDataSealed => {
            EventBody::PersonalDataSealed { key_id: vec![7; 16], nonce: vec![8; 12], ciphertext: vec![9; 48] }
        }
        EventKind::PersonalDataErased => EventBody::PersonalDataErased { key_id: vec![7; 16] },
        EventKind::PinReissued => EventBody::PinReissued { pin_verifier: vec![3; 33] },
        EventKind::PersonalDataRead => EventBody::PersonalDataRead { client_id: s("loket-desk-3") },
    }
}

/// A valid service standard body with this version.
pub(crate) fn standard_body(version: u32) -> EventBody {
    EventBody::ServiceStandardPublished {
        name_id: "Penerbitan Kartu Keluarga".to_owned(),
        name_en: "Family card issuance".to_owned(),
        completion_working_days: 3,
        fee_idr: 0,
        requirements: vec!["KTP-el".to_owned()],
        fiktif_positif: false,
        version,
        collection: None,
    }
}

/// A valid envelope with the given scope and body; ids are left empty when
/// `None`.
pub(crate) fn envelope(
    agency: &str,
    service: &str,
    case: Option<u64>,
    app: Option<&str>,
    body: EventBody,
) -> UncheckedEnvelope {
    UncheckedEnvelope {
        schema_version: SCHEMA_VERSION,
        event_id: fresh_event_id(),
        case_id: case.map(tracking).unwrap_or_default(),
        region_code: REGION.to_owned(),
        agency_id: agency.to_owned(),
        service_id: service.to_owned(),
        application_id: app.unwrap_or_default().to_owned(),
        occurred_at_ms: RECORD_MS,
        officer: "officer-17".to_owned(),
        body: Some(body),
    }
}

/// A service standard of the default agency and service.
pub(crate) fn standard() -> UncheckedEnvelope {
    standard_of(AGENCY, SERVICE, 1)
}

/// A service standard of any agency and service.
pub(crate) fn standard_of(agency: &str, service: &str, version: u32) -> UncheckedEnvelope {
    envelope(agency, service, None, None, standard_body(version))
}

/// Opens the case with this serial.
pub(crate) fn open(case: u64) -> UncheckedEnvelope {
    envelope(AGENCY, SERVICE, Some(case), None, body(EventKind::CaseOpened))
}

/// An application event of the default agency and service.
pub(crate) fn app_event(case: u64, app: &str, kind: EventKind) -> UncheckedEnvelope {
    app_event_by(AGENCY, SERVICE, case, app, kind)
}

/// An application event of any agency and service.
pub(crate) fn app_event_by(
    agency: &str,
    service: &str,
    case: u64,
    app: &str,
    kind: EventKind,
) -> UncheckedEnvelope {
    envelope(agency, service, Some(case), Some(app), body(kind))
}

/// The subject an envelope's agency publishes on.
pub(crate) fn subject_of(u: &UncheckedEnvelope) -> String {
    format!("mpp.events.{}.{}", u.agency_id, u.service_id)
}

/// The kinds that act on one application.
pub(crate) fn application_kinds() -> impl Iterator<Item = EventKind> {
    EventKind::ALL.iter().copied().filter(|k| k.is_application_event())
}

/// A state built by submitting events one after another, as the hub does:
/// every submission takes the next log sequence, accepted or not.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scenario {
    /// The projection so far.
    pub(crate) state: MemState,
    /// Sequences submitted so far.
    pub(crate) submitted: u64,
    /// The time of record before the first entry, Unix ms; [`RECORD_MS`]
    /// when 0.
    pub(crate) start_ms: i64,
    /// The note on the last accepted entry (held applications it resolved).
    pub(crate) last_note: Option<Rejection>,
}

/// Starts a scenario from events that must all be accepted.
pub(crate) fn given(events: impl IntoIterator<Item = UncheckedEnvelope>) -> Scenario {
    given_at(RECORD_MS, events)
}

/// [`given`], with entries recorded from `start_ms` on (rules that took
/// effect at some time apply to entries recorded from then).
pub(crate) fn given_at(start_ms: i64, events: impl IntoIterator<Item = UncheckedEnvelope>) -> Scenario {
    let mut s = Scenario { start_ms, ..Scenario::default() };
    for u in events {
        let kind = u.body.as_ref().map(EventBody::kind);
        if let Err(r) = s.submit(&u) {
            panic!("given: {kind:?} (submission {}) was rejected: {r}", s.submitted);
        }
    }
    s
}

impl Scenario {
    /// Validates, decides and (if accepted) applies one envelope on its own
    /// agency's subject.
    pub(crate) fn submit(&mut self, u: &UncheckedEnvelope) -> Result<(), Rejection> {
        self.submit_on(&subject_of(u), u)
    }

    /// Like [`Scenario::submit`] on an explicit subject.
    pub(crate) fn submit_on(&mut self, subject: &str, u: &UncheckedEnvelope) -> Result<(), Rejection> {
        self.submitted += 1;
        let meta = EntryMeta {
            seq: self.submitted,
            recorded_at_ms: self.start_ms + ENTRY_GAP_MS * self.submitted as i64,
        };
        let env = validate(subject, u, meta.recorded_at_ms)?;
        // As the ledger judges: under the rules in force at the time of record.
        decide_at(&self.state, &env, meta.recorded_at_ms)?;
        self.last_note = apply_noted(&mut self.state, &env, meta).note();
        Ok(())
    }

    /// Submits the event under test.
    pub(crate) fn when(mut self, u: UncheckedEnvelope) -> Outcome {
        let before = self.state.clone();
        let kind = u.body.as_ref().map(EventBody::kind);
        let result = self.submit(&u);
        Outcome { before, scenario: self, result, kind }
    }

    /// The case with this serial; panics when it was never opened.
    pub(crate) fn case(&self, serial: u64) -> &Case {
        self.state.cases.get(&tracking_number(serial)).expect("case is open")
    }

    /// The state of an application; panics when it was never filed.
    pub(crate) fn app_state(&self, serial: u64, app: &str) -> AppState {
        self.case(serial).application(&app_id(app)).expect("application is filed").state
    }
}

/// The result of `when`.
#[derive(Debug)]
pub(crate) struct Outcome {
    before: MemState,
    scenario: Scenario,
    result: Result<(), Rejection>,
    kind: Option<EventKind>,
}

impl Outcome {
    /// Asserts acceptance (`Ok`) or rejection with the given code (`Err`);
    /// a rejection must leave the state exactly as it was. Returns the
    /// scenario to continue from.
    #[track_caller]
    pub(crate) fn then_expect(self, expected: Result<(), ReasonCode>) -> Scenario {
        match (&self.result, expected) {
            (Ok(()), Ok(())) => {}
            (Err(r), Err(code)) => {
                assert_eq!(r.code, code, "{:?} was rejected with the wrong code: {r}", self.kind);
                assert_eq!(self.before, self.scenario.state, "a rejected {:?} changed the state", self.kind);
            }
            (got, want) => panic!("{:?}: expected {want:?}, got {got:?}", self.kind),
        }
        self.scenario
    }
}

/// A hash chain of `n` accepted entries on `subject`, as the hub builds
/// it: sequences from 1, stream sequences from 101, one nanosecond apart,
/// with the payload `payload(seq)`.
pub(crate) fn accepted_chain(n: u64, subject: &str, payload: impl Fn(u64) -> Vec<u8>) -> Vec<LogEntry> {
    let mut prev = GENESIS_HASH;
    (1..=n)
        .map(|seq| {
            let time_ns = RECORD_MS * 1_000_000 + seq as i64;
            let e = LogEntry::new(
                seq,
                seq + 100,
                time_ns,
                Verdict::Accepted,
                None,
                "",
                subject,
                payload(seq),
                prev,
            );
            prev = e.hash;
            e
        })
        .collect()
}

/// Any signed checkpoint: a valid origin, any fields, any signature bytes.
pub(crate) fn any_signed_checkpoint() -> impl Strategy<Value = SignedCheckpoint> {
    (
        "[!-~]{1,128}",
        any::<[u8; 8]>(),
        (any::<u64>(), any::<[u8; 32]>(), any::<[u8; 32]>()),
        (any::<u64>(), any::<i64>(), any::<i64>()),
        proptest::collection::vec(any::<u8>(), 64),
        // Format version 1 (none) or 2.
        proptest::option::of((any::<u64>(), any::<[u8; 32]>())),
    )
        .prop_filter_map(
            "a valid origin",
            |(origin, key, (size, root, head), (stream, time, at), sig, projection)| {
                let checkpoint = Checkpoint {
                    origin: Origin::new(&origin).ok()?,
                    key_id: KeyId(key),
                    tree_size: size,
                    root_hash: root,
                    head_hash: head,
                    last_stream_seq: stream,
                    last_entry_time_ns: time,
                    signed_at_ms: at,
                    projection: projection.map(|(projected_through, digest)| {
                        mpp_core::checkpoint::ProjectionCommitment { projected_through, digest }
                    }),
                };
                Some(SignedCheckpoint { checkpoint, signature: sig.try_into().ok()?, note: None })
            },
        )
}

/// A registry in force in which each of `participants` is registered with
/// its kind, for [`SERVICE`] with every event type, in [`REGION`]. Keys and
/// signatures are `admit`'s business, which the scenarios do not call.
pub(crate) fn registry_of(participants: &[(&str, ParticipantKind)]) -> Registry {
    let mut registry = Registry::default();
    for (i, (id, kind)) in participants.iter().enumerate() {
        let statement = validate_statement(&UncheckedStatement {
            schema_version: 1,
            statement_id: fresh_event_id(),
            issued_at_ms: RECORD_MS,
            body: Some(UncheckedStatementBody::ParticipantRegistered {
                participant_id: (*id).to_owned(),
                kind: kind.as_str().to_owned(),
                category: "daerah".to_owned(),
                region_codes: vec![REGION.to_owned()],
                services: vec![(
                    SERVICE.to_owned(),
                    EventKind::ALL.iter().map(|k| k.as_str().to_owned()).collect(),
                )],
                follows: vec![],
            }),
        })
        .expect("valid registration");
        decide_statement(&registry, &statement).expect("registration accepted");
        apply_statement(
            &mut registry,
            &statement,
            EntryMeta { seq: i as u64 + 1, recorded_at_ms: RECORD_MS },
        );
    }
    registry
}
