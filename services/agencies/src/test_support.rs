//! Helpers of the agencies' mapping tests: an agency over a
//! [`MemoryPublisher`], and checks that an RPC published exactly the event
//! its mapping table names, or was refused with the right codes and
//! published nothing.

use std::fmt::Debug;
use std::sync::Arc;

use mpp_core::EventBody;
use proptest::prelude::*;

use mpp_agency_kit::testing::{MemoryFrontOffice, MemoryPublisher};
use mpp_agency_kit::{Agency, EventBuilder, OutgoingEvent, SystemClock, REASON_CODE_METADATA_KEY};
use mpp_core::ids::{AgencyId, RegionCode, TrackingNumber};
use mpp_core::state::next_state;
use mpp_core::{AppState, EventKind};
use mpp_proto::v1::envelope::Body;
use tonic::{Code, Status};

use crate::common::AgencyInfo;

/// The region of the tests' MPP (Kota Bengkulu).
pub(crate) const REGION: &str = "1771";

/// One day in milliseconds.
pub(crate) const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// `info`'s agency at the test MPP over an in-memory publisher, its walk-in
/// cases opened by an in-memory front office.
pub(crate) fn agency(info: &AgencyInfo, publisher: Arc<MemoryPublisher>) -> Agency {
    agency_with(info, publisher, Arc::new(MemoryFrontOffice::new()))
}

/// [`agency`] with the front office `front`.
pub(crate) fn agency_with(
    info: &AgencyInfo,
    publisher: Arc<MemoryPublisher>,
    front: Arc<MemoryFrontOffice>,
) -> Agency {
    let builder = EventBuilder::new(
        RegionCode::parse(REGION).unwrap(),
        AgencyId::parse(info.agency_id).unwrap(),
        Arc::new(SystemClock),
    );
    Agency::new(builder, publisher).with_walk_in(front)
}

/// A time `days` days from now, in Unix milliseconds.
pub(crate) fn in_days(days: i64) -> i64 {
    use mpp_agency_kit::Clock as _;
    SystemClock.now_ms() + days * DAY_MS
}

/// A tracking number of another MPP (Lebong).
pub(crate) fn other_region_case() -> String {
    TrackingNumber::new(RegionCode::parse("1707").unwrap(), 5).unwrap().to_string()
}

/// `case` with its check digit changed (a typo the check digit catches).
pub(crate) fn typo(case: &str) -> String {
    let mut s = case.to_owned();
    let last = s.pop().unwrap();
    s.push(if last == '0' { '1' } else { '0' });
    s
}

/// The stable reason code of a status.
pub(crate) fn reason(s: &Status) -> &str {
    s.metadata().get(REASON_CODE_METADATA_KEY).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// The kind of a wire body.
pub(crate) fn kind(body: &Body) -> EventKind {
    mpp_wire::body_to_core(body).kind()
}

/// The body of an event.
pub(crate) fn body(e: &OutgoingEvent) -> Body {
    e.envelope().body.clone().expect("every built event has a body")
}

/// Records what each step RPC published and checks it against the mapping
/// table.
#[derive(Debug)]
pub(crate) struct Recorder {
    pub(crate) info: &'static AgencyInfo,
    pub(crate) publisher: Arc<MemoryPublisher>,
    pub(crate) front: Arc<MemoryFrontOffice>,
}

impl Recorder {
    /// A recorder for `info` over a fresh in-memory publisher, and the agency.
    pub(crate) fn new(info: &'static AgencyInfo) -> (Self, Agency) {
        let publisher = Arc::new(MemoryPublisher::new());
        let front = Arc::new(MemoryFrontOffice::new());
        let agency = agency_with(info, publisher.clone(), front.clone());
        (Self { info, publisher, front }, agency)
    }

    /// Events published so far.
    pub(crate) fn count(&self) -> usize {
        self.publisher.events().len()
    }

    /// Checks that the step RPC `rpc` succeeded, published exactly one event
    /// (since `before` events), of the kind the mapping table names, with
    /// the returned event id, about `case`/`application`, by `officer`, on
    /// `mpp.events.<agency>.<service_id>`; returns the event.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn stepped(
        &self,
        rpc: &str,
        before: usize,
        event_id: &str,
        service_id: &str,
        case: &str,
        application: &str,
        officer: &str,
    ) -> OutgoingEvent {
        let events = self.publisher.events();
        assert_eq!(events.len(), before + 1, "{rpc} published one event");
        let e = events[before].clone();
        let expected = self.info.event_of(rpc).unwrap_or_else(|| panic!("{rpc} is not in the mapping table"));
        assert_eq!(kind(&body(&e)), expected, "{rpc}");
        assert_eq!(e.event_id(), event_id, "{rpc}");
        assert_eq!(e.subject(), format!("mpp.events.{}.{service_id}", self.info.agency_id), "{rpc}");
        let env = e.envelope();
        assert_eq!(env.agency_id, self.info.agency_id);
        assert_eq!(env.service_id, service_id);
        assert_eq!(env.case_id, case, "{rpc}");
        assert_eq!(env.application_id, application, "{rpc}");
        assert_eq!(env.officer, officer, "{rpc}");
        e
    }

    /// Checks that a request was refused with `code` and `reason`, that the
    /// message names `field`, and that nothing was published since `before`
    /// events.
    pub(crate) fn refused<T: Debug>(
        &self,
        before: usize,
        result: Result<T, Status>,
        code: Code,
        reason_code: &str,
        field: &str,
    ) {
        let s = result.expect_err("the request must be refused");
        assert_eq!((s.code(), reason(&s)), (code, reason_code), "{}", s.message());
        assert!(s.message().contains(field), "{field} not named in {:?}", s.message());
        assert_eq!(self.count(), before, "nothing published for a refused request");
    }
}

/// What a filing RPC answered, in the hub's words.
#[derive(Debug)]
pub(crate) struct FiledAnswer<'a> {
    pub(crate) case: &'a str,
    pub(crate) application: &'a str,
    pub(crate) event_ids: &'a [String],
    pub(crate) pin: &'a str,
}

impl Recorder {
    /// Checks a filing of `service` (an enum value of the agency's proto)
    /// answered `answer` after `before` events: into a new case when `case`
    /// is `None` (the front office's last opening: its tracking number,
    /// PIN and event id, then the agency's `application_filed` only: an
    /// agency never publishes `case_opened`), else into `case` (no PIN,
    /// `application_filed` only); the application id has the service's
    /// prefix; the events
    /// carry the returned ids, `documents`, `officer` and the service's
    /// subject.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn filed(
        &self,
        before: usize,
        service: i32,
        answer: FiledAnswer<'_>,
        case: Option<&str>,
        documents: &[&str],
        officer: &str,
    ) {
        let info = self.info.service_by_value(service).unwrap();
        let prefix = format!("{}-", self.info.application_prefix(info));
        assert!(answer.application.starts_with(&prefix), "{} of {prefix}", answer.application);
        assert!(TrackingNumber::parse(answer.case).is_ok(), "{}", answer.case);
        let events = &self.publisher.events()[before..];
        let mut ids: Vec<&str> = events.iter().map(|e| e.event_id()).collect();
        let kinds: Vec<EventKind> = events.iter().map(|e| kind(&body(e))).collect();
        assert_eq!(kinds, [EventKind::ApplicationFiled], "an agency publishes only its filing");
        let opened = self.front.opened();
        match case {
            None => {
                let (o, _) = opened.last().expect("the front office opened the case");
                assert_eq!(answer.pin.len(), mpp_core::pin::STRONG_PIN_CHARS, "a new case has a strong PIN");
                assert_eq!(
                    (answer.case, answer.pin),
                    (o.tracking_number.to_string().as_str(), o.pin.expose())
                );
                ids.insert(0, &o.event_id);
            }
            Some(case) => {
                assert_eq!((answer.case, answer.pin), (case, ""), "filed into the case, no PIN");
            }
        }
        assert_eq!(answer.event_ids, ids);
        let filed = body(events.last().unwrap());
        assert!(matches!(&filed, Body::ApplicationFiled(f) if f.documents == documents), "{filed:?}");
        for e in events {
            assert_eq!(e.subject(), format!("mpp.events.{}.{}", self.info.agency_id, info.service_id));
            assert_eq!(
                (e.envelope().case_id.as_str(), e.envelope().officer.as_str()),
                (answer.case, officer)
            );
        }
    }
}

/// Checks that `kinds` (application events, starting with
/// `application_filed`) is a legal path of the hub's state machine, and
/// returns the final state.
pub(crate) fn legal_path(kinds: &[EventKind]) -> AppState {
    let mut state = None;
    for k in kinds {
        state = Some(
            next_state(state, *k)
                .unwrap_or_else(|| panic!("{} is illegal in state {state:?} (path {kinds:?})", k.as_str())),
        );
    }
    state.expect("a non-empty path")
}

/// The shapes of the fields an agency checks beyond "text": what the round
/// trip's events carry, so that every generated event is one the agency
/// accepts.
#[derive(Debug)]
pub(crate) struct Shapes {
    /// The service filed (and stepped on).
    pub(crate) service_id: &'static str,
    /// The agency's largest fee or payment.
    pub(crate) amount_max_idr: i64,
    /// `fee_assessed.billing_code`.
    pub(crate) billing_code: BoxedStrategy<String>,
    /// `payment_received.payment_reference`.
    pub(crate) payment_reference: BoxedStrategy<String>,
    /// `issued.document_number`.
    pub(crate) document_number: BoxedStrategy<String>,
}

/// Printable text without surrounding whitespace, 1 to 40 characters.
pub(crate) fn text() -> BoxedStrategy<String> {
    "[A-Za-z0-9][A-Za-z0-9 ./,()-]{0,38}[A-Za-z0-9.]".boxed()
}

/// [`text`] or empty.
pub(crate) fn optional_text() -> BoxedStrategy<String> {
    prop_oneof![Just(String::new()), text()].boxed()
}

/// `lens` ASCII digits.
pub(crate) fn digits(lens: std::ops::RangeInclusive<usize>) -> BoxedStrategy<String> {
    proptest::collection::vec(proptest::char::range('0', '9'), lens).prop_map(String::from_iter).boxed()
}

/// An NTPN: 16 digits or capital letters.
pub(crate) fn ntpn() -> BoxedStrategy<String> {
    "[0-9A-Z]{16}".boxed()
}

fn documents(min: usize) -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(text(), min..=4)
}

/// Every application event (and appointments of every kind), with fields
/// of `shapes`; an agency without the RPC for one must say so.
pub(crate) fn events(shapes: &Shapes) -> BoxedStrategy<EventBody> {
    prop_oneof![
        documents(0).prop_map(|documents| EventBody::ApplicationFiled { documents }),
        (documents(1), text(), optional_text()).prop_map(|(documents, counter, note)| {
            EventBody::DocumentsRequested { documents, counter, note }
        }),
        documents(0).prop_map(|documents| EventBody::DocumentsReceived { documents }),
        Just(EventBody::ReviewStarted),
        (prop::sample::select(vec!["interview", "inspection", "survey", "installation"]), 1i64..60, text())
            .prop_map(|(kind, days, place)| EventBody::AppointmentScheduled {
                kind: kind.to_owned(),
                at_ms: in_days(days),
                place
            }),
        (1..=shapes.amount_max_idr, text(), shapes.billing_code.clone()).prop_map(
            |(amount_idr, payment_channel, billing_code)| EventBody::FeeAssessed {
                amount_idr,
                payment_channel,
                billing_code,
                due_at_ms: 0
            }
        ),
        (1..=shapes.amount_max_idr, shapes.payment_reference.clone()).prop_map(
            |(amount_idr, payment_reference)| EventBody::PaymentReceived { amount_idr, payment_reference }
        ),
        shapes.document_number.clone().prop_map(|document_number| EventBody::Issued { document_number }),
        Just(EventBody::Collected),
        (optional_text(), text())
            .prop_map(|(reason_code, reason)| EventBody::Rejected { reason_code, reason }),
        optional_text().prop_map(|reason| EventBody::Withdrawn { reason }),
    ]
    .boxed()
}

/// A test that the agency module's inverse mapping (`request`) and its RPC
/// handlers round-trip: for an arbitrary event, the request it builds,
/// handed to the handler in process, publishes exactly that event (after
/// `$published`, which applies what the mapping documents as lossy),
/// about the targeted application, with the kind the mapping table names.
/// An event without a request must have no row in the table, or be an
/// appointment of a kind the agency does not schedule. Seeds are printed
/// by proptest on failure.
macro_rules! round_trip_test {
    ($svc:ident, $shapes:expr, $published:expr) => {
        #[test]
        fn the_inverse_mapping_round_trips_through_the_handlers() {
            use mpp_core::{EventBody, EventKind};
            use proptest::prelude::*;
            use proptest::test_runner::{Config, TestRunner};

            use crate::calls::Target;
            use crate::test_support::{body, Recorder};

            let published: fn(EventBody) -> EventBody = $published;
            let shapes: crate::test_support::Shapes = $shapes;
            let service_id = shapes.service_id;
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let (rec, agency) = Recorder::new(&INFO);
            let svc = $svc::new(agency);
            let new_case = Target { service_id, case: "", application: "", officer: "rt-01" };
            let filing = request(&new_case, &EventBody::ApplicationFiled { documents: vec![] }).unwrap();
            let filed = rt.block_on(filing.serve(&svc)).unwrap();

            let mut runner = TestRunner::new(Config { cases: 256, ..Config::default() });
            let result = runner.run(&crate::test_support::events(&shapes), |event| {
                let filing = matches!(event, EventBody::ApplicationFiled { .. });
                let application = if filing { "" } else { filed.application.as_str() };
                let t = Target { service_id, case: &filed.case, application, officer: "rt-02" };
                let call = match request(&t, &event) {
                    Ok(call) => call,
                    Err(unmapped) => {
                        let kind = event.kind();
                        prop_assert!(
                            kind == EventKind::AppointmentScheduled
                                || INFO.rpcs.iter().all(|m| m.event != kind),
                            "{unmapped} but the mapping table has a row for {}",
                            kind.as_str()
                        );
                        return Ok(());
                    }
                };
                let rpc = call.rpc();
                let before = rec.count();
                let answer = rt.block_on(call.serve(&svc)).map_err(|s| {
                    TestCaseError::fail(format!("{rpc} refused {event:?}: {} {}", s.code(), s.message()))
                })?;
                prop_assert_eq!(answer.event_ids.len(), 1, "{}", rpc);
                let e = if filing {
                    prop_assert_eq!(&answer.case, &filed.case);
                    let events = rec.publisher.events();
                    prop_assert_eq!(events.len(), before + 1, "{}", rpc);
                    events[before].clone()
                } else {
                    let app = filed.application.as_str();
                    rec.stepped(rpc, before, &answer.event_ids[0], service_id, &filed.case, app, "rt-02")
                };
                prop_assert_eq!(INFO.event_of(rpc), Some(event.kind()), "{}", rpc);
                prop_assert_eq!(body(&e), mpp_wire::body_to_wire(&published(event.clone())), "{}", rpc);
                Ok(())
            });
            if let Err(e) = result {
                panic!("{e}");
            }
        }
    };
}

/// One row of an agency's step table: a step request and the event it
/// must publish.
pub(crate) type Step<C> = (C, EventBody);

/// One row of an agency's table of bad requests: the request, and the
/// status code, reason code and field it must be refused with.
pub(crate) type Refusal<C> = (C, Code, &'static str, &'static str);

/// The mapping tests of an agency, over its own protobuf types. Writes the
/// fixtures `desk()` (the service over a fresh [`Recorder`]),
/// `file(&svc, service, case)` (files an application of `service` into
/// `case`, a new case when empty, through the filing RPC with the given
/// documents and filing officer, and answers what the RPC returned) and
/// `langkah(&filed)` (the step reference to that application by the
/// stepping officer); the checks `check_filing`, `check_steps` and
/// `check_refusals`, which serve a table of requests and check what each
/// published or why it was refused; and the tests:
///
/// - the filing opens a case with the first of `services` and files the
///   others into it;
/// - every step of the module's `steps(&langkah)` table publishes exactly
///   its event about an application of the first service;
/// - every request of its `refusals(&langkah)` table is refused as the
///   table says, and publishes nothing;
/// - a filing the publisher cannot take is answered UNAVAILABLE.
///
/// Expects the agency's `pb`, `INFO` and `Call`, tonic's `Request`, and
/// the module's `steps` and `refusals`.
macro_rules! mapping_tests {
    (
        $svc:ty,
        filing $filing:ident(pb::$req:ident { $service_field:ident: $service:ty }) -> pb::$filed:ident,
        langkah { $case:ident, $application:ident },
        dokumen: [$($document:expr),* $(,)?],
        petugas: $filer:expr => $stepper:expr,
        services: [$first:expr $(, $other:expr)* $(,)?] $(,)?
    ) => {
        fn desk() -> ($crate::test_support::Recorder, $svc) {
            let (rec, agency) = $crate::test_support::Recorder::new(&INFO);
            (rec, <$svc>::new(agency))
        }

        async fn file(svc: &$svc, $service_field: $service, $case: &str) -> pb::$filed {
            let request = pb::$req {
                $case: $case.to_owned(),
                $service_field: $service_field as i32,
                dokumen: vec![$($document.into()),*],
                petugas: $filer.into(),
            };
            svc.$filing(Request::new(request)).await.unwrap().into_inner()
        }

        fn langkah(filed: &pb::$filed) -> pb::Langkah {
            pb::Langkah {
                $case: filed.$case.clone(),
                $application: filed.$application.clone(),
                petugas: $stepper.into(),
            }
        }

        #[tokio::test]
        async fn the_filing_opens_a_case_or_files_into_one() {
            check_filing(&[$first $(, $other)*]).await;
        }

        #[tokio::test]
        async fn every_step_rpc_maps_to_its_common_event() {
            let (rec, svc) = desk();
            let filed = file(&svc, $first, "").await;
            check_steps(&rec, &svc, &filed, steps(&langkah(&filed))).await;
        }

        #[tokio::test]
        async fn bad_requests_are_refused_with_reason_codes_and_publish_nothing() {
            let (rec, svc) = desk();
            let filed = file(&svc, $first, "").await;
            check_refusals(&rec, &svc, refusals(&langkah(&filed))).await;
        }

        #[tokio::test]
        async fn a_publish_failure_is_unavailable() {
            let publisher = std::sync::Arc::new(mpp_agency_kit::testing::MemoryPublisher::failing_after(0));
            let svc = <$svc>::new($crate::test_support::agency(&INFO, publisher));
            let request = pb::$req {
                $case: String::new(),
                $service_field: $first as i32,
                dokumen: vec![],
                petugas: $filer.into(),
            };
            let s = svc.$filing(Request::new(request)).await.unwrap_err();
            let reason_code = $crate::test_support::reason(&s);
            assert_eq!((s.code(), reason_code), (tonic::Code::Unavailable, "PUBLISH_FAILED"));
        }

        /// Files the first of `services` into a new case and the others
        /// into that case, and checks every answer and its events
        /// ([`Recorder::filed`]).
        async fn check_filing(services: &[$service]) {
            fn answer(r: &pb::$filed) -> $crate::test_support::FiledAnswer<'_> {
                $crate::test_support::FiledAnswer {
                    case: &r.$case,
                    application: &r.$application,
                    event_ids: &r.event_ids,
                    pin: &r.pin,
                }
            }
            let (rec, svc) = desk();
            let documents = [$($document),*];
            let (first, others) = services.split_first().expect("a service to file");
            let r = file(&svc, *first, "").await;
            rec.filed(0, *first as i32, answer(&r), None, &documents, $filer);
            for service in others {
                let before = rec.count();
                let again = file(&svc, *service, &r.$case).await;
                rec.filed(before, *service as i32, answer(&again), Some(&r.$case), &documents, $filer);
            }
        }

        /// Serves each step of `steps` in order about `filed`'s application
        /// and checks that it published exactly its event
        /// ([`Recorder::stepped`]); answers the events.
        async fn check_steps(
            rec: &$crate::test_support::Recorder,
            svc: &$svc,
            filed: &pb::$filed,
            steps: Vec<$crate::test_support::Step<Call>>,
        ) -> Vec<mpp_agency_kit::OutgoingEvent> {
            let id = mpp_core::ids::ApplicationId::parse(&filed.$application).unwrap();
            let service = INFO.service_of_application("application", &id).unwrap().service_id;
            let mut published = Vec::new();
            for (call, want) in steps {
                let rpc = call.rpc();
                let before = rec.count();
                let answer = call.serve(svc).await.unwrap_or_else(|s| panic!("{rpc} refused: {s:?}"));
                let (case, application) = (&filed.$case, &filed.$application);
                let e = rec.stepped(rpc, before, &answer.event_ids[0], service, case, application, $stepper);
                assert_eq!($crate::test_support::body(&e), mpp_wire::body_to_wire(&want), "{rpc}");
                published.push(e);
            }
            published
        }

        /// Serves each request of `refusals` and checks that it was refused
        /// with its status code and reason code, naming its field, and
        /// published nothing ([`Recorder::refused`]).
        async fn check_refusals(
            rec: &$crate::test_support::Recorder,
            svc: &$svc,
            refusals: Vec<$crate::test_support::Refusal<Call>>,
        ) {
            for (call, code, reason_code, field) in refusals {
                let before = rec.count();
                rec.refused(before, call.serve(svc).await, code, reason_code, field);
            }
        }
    };
}
