//! Helpers of the agencies' mapping tests: an agency over a
//! [`MemoryPublisher`], and checks that an RPC published exactly the event
//! its mapping table names, or was refused with the right codes and
//! published nothing.

use std::fmt::Debug;
use std::sync::Arc;

use mpp_agency_kit::testing::MemoryPublisher;
use mpp_agency_kit::{Agency, EventBuilder, OutgoingEvent, PinPepper, SystemClock, REASON_CODE_METADATA_KEY};
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

/// `info`'s agency at the test MPP over an in-memory publisher.
pub(crate) fn agency(info: &AgencyInfo, publisher: Arc<MemoryPublisher>) -> Agency {
    let builder = EventBuilder::new(
        RegionCode::parse(REGION).unwrap(),
        AgencyId::parse(info.agency_id).unwrap(),
        Arc::new(SystemClock),
    );
    Agency::new(builder, publisher, PinPepper::from_bytes(b"agencies-unit-test-pepper").unwrap())
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
    match body {
        Body::CaseOpened(_) => EventKind::CaseOpened,
        Body::ApplicationFiled(_) => EventKind::ApplicationFiled,
        Body::DocumentsRequested(_) => EventKind::DocumentsRequested,
        Body::DocumentsReceived(_) => EventKind::DocumentsReceived,
        Body::FeeAssessed(_) => EventKind::FeeAssessed,
        Body::PaymentReceived(_) => EventKind::PaymentReceived,
        Body::AppointmentScheduled(_) => EventKind::AppointmentScheduled,
        Body::ReviewStarted(_) => EventKind::ReviewStarted,
        Body::Issued(_) => EventKind::Issued,
        Body::Rejected(_) => EventKind::Rejected,
        Body::Withdrawn(_) => EventKind::Withdrawn,
        Body::Collected(_) => EventKind::Collected,
        Body::ServiceStandardPublished(_) => EventKind::ServiceStandardPublished,
        Body::PersonalDataSealed(_) => EventKind::PersonalDataSealed,
        Body::PersonalDataErased(_) => EventKind::PersonalDataErased,
    }
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
}

impl Recorder {
    /// A recorder for `info` over a fresh in-memory publisher, and the agency.
    pub(crate) fn new(info: &'static AgencyInfo) -> (Self, Agency) {
        let publisher = Arc::new(MemoryPublisher::new());
        let agency = agency(info, publisher.clone());
        (Self { info, publisher }, agency)
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
