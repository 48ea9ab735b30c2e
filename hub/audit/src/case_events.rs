//! Cross-agency updates (`mpp.v1.CaseEventService`): a participant follows
//! the events other participants publish on the cases where it has an
//! application, as far as the participant registry lets it — the event
//! types, never their contents — and every case it hears of is recorded in
//! the case's access history, which the citizen sees.
//!
//! # Who sees what
//!
//! The caller authenticates as for the verdict feed ([`crate::verdicts`]:
//! `--participant-tokens-file`, client id = participant id). An entry of
//! the log reaches it only when all of these hold:
//!
//! - the entry was accepted, and its subject names another participant
//!   (nothing of the caller's own events: the verdict feed tells it those);
//! - it is an application event (the registry refuses grants of case-level
//!   and catalogue types: personal data, PIN re-issues, openings, standards
//!   are never followed) whose participant, service and type one of the
//!   caller's follow grants covers (`ParticipantRegistered.follows`, read
//!   from the registry at every step, so a grant withdrawn by the registrar
//!   stops the feed's events at its next step);
//! - the case, as the hub's projection holds it when the feed reads the
//!   entry, holds an application of the caller.
//!
//! A participant the registry registers as a front office also receives,
//! with no grant, the application events of the cases it opened (the case's
//! `opened_by`, the publisher of its `case_opened`) that need the citizen
//! ([`CITIZEN_NOTICE_KINDS`]), each with a [`pb::CitizenNotice`]: what the
//! event asks of or tells the citizen (documents and counter, amount,
//! payment channel, billing code and due date, appointment time and place,
//! where to collect from the service's standard, the rejection's reason
//! code). The front office alone can unseal the citizen's contact details,
//! so it alone can tell them (docs/NOTIFICATIONS.md); the notice holds no
//! personal data (the hub has none) and no free text of the agency's but
//! the counter, channel and place it names for every citizen. An agency's
//! steps that reach the log before the front office's opening (its relay
//! overtook the front office's: the application is held in the case's
//! shell) are sent when the feed reads the opening, with their notices, in
//! log order; those of applications the opening dropped never are.
//!
//! The opener also receives every other application event of its cases
//! (`application_filed`, `review_started`, `documents_received`, ...) with
//! no notice (no message), and every event it receives of its cases
//! carries the application's SLA clock ([`pb::SlaClock`]: its standard's
//! working days, due date, the instant it becomes overdue if its clock
//! keeps running, paused, finished), computed from the hub's projection
//! and the region's calendar when the feed reads the entry: the front
//! office keeps a durable timer per application from it and tells the
//! citizen once when the deadline passes (docs/NOTIFICATIONS.md).
//!
//! The last condition is judged at the time of reading, not of the entry:
//! a participant that files into a case after another's event, and whose
//! feed had already read past it, does not get it (its feed is a stream of
//! news, not a lookup of history). A caller the registry grants nothing is
//! refused at the start with `PERMISSION_DENIED`, reason `NO_FOLLOW_GRANT`.
//!
//! What an event carries is [`pb::CaseEvent`]: the case, the followed
//! participant, service and application, the event type, the log sequence
//! and time of record, and the caller's own applications in the case with
//! their states (what a follower needs to decide whether it was waiting on
//! the event). Never a field of the event's body for a follower by grant:
//! no document number, no amount, no place, no reason text.
//!
//! # The access history
//!
//! Each case the feed sends events of is recorded in the case's access
//! history (`mpp_lookup::access`) as accessor `agency` (the follower's
//! system, no person) through channel `feed`, at most once per follower,
//! case and UTC day ([`ACCESS_RECORD_DAY_MS`]): a feed remembers what it
//! recorded in a bounded memo ([`ACCESS_MEMO_MAX`]) shared by every feed of
//! the hub, and checks the case's recent history before recording. The
//! record is made when the step that found the events runs, just before
//! the batch is sent: a client that disconnects then is still shown as
//! having looked (the citizen is told too much rather than too little).
//!
//! # Bounds
//!
//! Those of the verdict feed, with their own places: at most
//! [`crate::verdicts::FOLLOWERS_MAX`] feeds in all and
//! [`crate::verdicts::FOLLOWERS_PER_PARTICIPANT_MAX`] per participant
//! (`TOO_MANY_FEEDS`), steps of [`crate::verdicts::SCAN_STEP_ENTRIES`]
//! entries on the blocking pool, at most [`CASE_EVENT_BATCH_MAX`] events a
//! batch, the same stall and duration limits. A step reads each case it
//! needs once (a granted entry costs a case read; other entries cost only
//! their decode).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use mpp_core::calendar::CalendarSet;
use mpp_core::case::ServiceStandard;
use mpp_core::ids::{AgencyId, ServiceId, TrackingNumber};
use mpp_core::log::{LogEntry, Verdict};
use mpp_core::registry::FollowGrant;
use mpp_core::registry::ParticipantKind;
use mpp_core::ReasonCode;
use mpp_core::{EventBody, EventKind};
use mpp_lookup::access::{AccessChannel, AccessEvent, Accessor, ACCESS_EVENTS_PER_CASE_MAX};
use mpp_lookup::error::ApiError;
use mpp_lookup::lookup::Lookups;
use mpp_lookup::watch::CaseChanges;
use mpp_proto::v1 as pb;
use mpp_proto::v1::case_event_service_server::CaseEventService;
use mpp_store::{Store, StoreError};
use prost::Message;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::{error, info};

use crate::verdicts::{caller, follow, participant_of, scan_filtered, Feed, Places, SCAN_STEP_ENTRIES};

/// Largest request the case-event service decodes, in bytes: a cursor.
pub const CASE_EVENT_REQUEST_BYTES_MAX: usize = 1024;

/// Events in one batch at most (each about a hundred bytes, plus the
/// caller's applications in the case, bounded by the core's case limits).
pub const CASE_EVENT_BATCH_MAX: usize = 256;

/// The period within which one follower's access to one case is recorded
/// once: a UTC day, in milliseconds.
pub const ACCESS_RECORD_DAY_MS: i64 = 86_400_000;

/// (follower, case) pairs the hub remembers having recorded today; when
/// full, the memo is cleared and the cases' stored histories decide alone.
/// About 80 bytes each: at most about 5 MiB.
pub const ACCESS_MEMO_MAX: usize = 65_536;

/// The application event types a front office hears of, with their
/// [`pb::CitizenNotice`], on the cases it opened: those that need the
/// citizen.
pub const CITIZEN_NOTICE_KINDS: &[EventKind] = &[
    EventKind::DocumentsRequested,
    EventKind::FeeAssessed,
    EventKind::AppointmentScheduled,
    EventKind::Issued,
    EventKind::Rejected,
];

/// What SLA clocks are computed with: the regions' calendars and the
/// instant of reading.
#[derive(Debug, Clone, Copy)]
pub struct Clocks<'a> {
    /// The hub's calendars (weekends only for a region without one).
    pub calendars: &'a CalendarSet,
    /// Now, Unix ms.
    pub now_ms: i64,
}

/// What a step needs of a case: who opened it, the follower's applications
/// in it and, for its opener, every application's SLA clock.
#[derive(Debug, Clone)]
struct CaseView {
    opened_by: AgencyId,
    /// Not opened yet: its applications are held ([`mpp_core::hold`]).
    shell: bool,
    /// The opening's log sequence (0 for a shell).
    opened_seq: u64,
    own: Vec<pb::OwnApplication>,
    /// (agency, application id, clock without the service's names), for
    /// the opener only.
    clocks: Vec<(AgencyId, String, pb::SlaClock)>,
}

impl CaseView {
    fn clock_of(&self, agency: &AgencyId, application: &str) -> Option<pb::SlaClock> {
        self.clocks.iter().find(|(a, id, _)| a == agency && id == application).map(|(_, _, c)| c.clone())
    }
}

/// The SLA clocks of every application of `case` (see the module docs).
fn sla_clocks(case: &mpp_core::case::Case, clocks: Clocks<'_>) -> Vec<(AgencyId, String, pb::SlaClock)> {
    let cal = clocks.calendars.calendar(case.tracking_number.region());
    case.applications
        .iter()
        .map(|a| {
            let v = mpp_core::sla::sla(a, &cal, clocks.now_ms);
            let clock = pb::SlaClock {
                standard_working_days: v.standard_working_days,
                due_date: v.due_date.map(|d| d.to_string()).unwrap_or_default(),
                overdue_at_ms: mpp_core::sla::overdue_at_ms(&v, &cal).unwrap_or(0),
                paused: v.paused,
                finished: v.finished_on.is_some(),
                service_name_id: String::new(),
                service_name_en: String::new(),
            };
            (a.agency.clone(), a.id.to_string(), clock)
        })
        .collect()
}

/// The citizen's notice of `body` (see the module docs); `standard` is the
/// service's standard in force, if any.
fn citizen_notice(body: &EventBody, standard: Option<&ServiceStandard>) -> pb::CitizenNotice {
    let mut n = pb::CitizenNotice {
        service_name_id: standard.map(|s| s.name_id.clone()).unwrap_or_default(),
        service_name_en: standard.map(|s| s.name_en.clone()).unwrap_or_default(),
        ..Default::default()
    };
    match body {
        EventBody::DocumentsRequested { documents, counter, .. } => {
            n.documents = documents.clone();
            n.counter = counter.clone();
        }
        EventBody::FeeAssessed { amount_idr, payment_channel, billing_code, due_at_ms } => {
            n.amount_idr = *amount_idr;
            n.payment_channel = payment_channel.clone();
            n.billing_code = billing_code.clone();
            n.due_at_ms = *due_at_ms;
        }
        EventBody::AppointmentScheduled { kind, at_ms, place } => {
            n.appointment_kind = kind.clone();
            n.at_ms = *at_ms;
            n.place = place.clone();
        }
        EventBody::Issued { .. } => {
            if let Some(c) = standard.and_then(|s| s.collection.as_ref()) {
                n.collect_place = c.place.clone();
                n.collect_within_working_days = c.within_working_days;
            }
        }
        EventBody::Rejected { reason_code, .. } => n.reason_code = reason_code.clone(),
        _ => {}
    }
    n
}

/// The case-event service.
#[derive(Debug, Clone)]
pub struct CaseEvents {
    lookups: Lookups,
    changes: CaseChanges,
    places: Arc<Places>,
    memo: Arc<AccessMemo>,
}

impl CaseEvents {
    /// Serves from the store of `lookups` (and records in its access log),
    /// woken by the commits `changes` announces.
    pub fn new(lookups: Lookups, changes: CaseChanges) -> Self {
        Self { lookups, changes, places: Arc::default(), memo: Arc::default() }
    }
}

/// Which follower recorded which case on which day (see the module docs).
#[derive(Debug, Default)]
struct AccessMemo(Mutex<HashMap<(AgencyId, TrackingNumber), i64>>);

impl AccessMemo {
    /// Whether `(who, case)` is known recorded on `day`; if not, notes it.
    fn seen_or_note(&self, who: &AgencyId, case: &TrackingNumber, day: i64) -> bool {
        let mut memo = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (who.clone(), *case);
        if memo.get(&key) == Some(&day) {
            return true;
        }
        if memo.len() >= ACCESS_MEMO_MAX {
            memo.clear();
        }
        memo.insert(key, day);
        false
    }
}

/// Who follows: the participant, its grants, and whether the registry
/// registers it as a front office (see the module docs).
#[derive(Debug, Clone, Copy)]
struct Follower<'a> {
    id: &'a AgencyId,
    grants: &'a [FollowGrant],
    front_office: bool,
}

/// The case event of `e` for the follower, if the feed sends it (see the
/// module docs): `case_of` reads a case, `standard_of` a service's
/// standard.
fn case_event_of(
    e: &LogEntry,
    follower: Follower<'_>,
    mut case_of: impl FnMut(&TrackingNumber) -> Result<Option<CaseView>, StoreError>,
    standard_of: impl FnOnce(&AgencyId, &ServiceId) -> Result<Option<ServiceStandard>, StoreError>,
) -> Result<Option<(TrackingNumber, pb::CaseEvent)>, StoreError> {
    if e.verdict != Verdict::Accepted {
        return Ok(None);
    }
    let Some(publisher) = participant_of(e).and_then(|p| AgencyId::parse(p).ok()) else { return Ok(None) };
    if publisher == *follower.id
        || !(follower.front_office || follower.grants.iter().any(|g| g.participant == publisher))
    {
        return Ok(None);
    }
    let Ok(env) = pb::Envelope::decode(e.payload.as_slice()) else { return Ok(None) };
    let Some(body) = env.body.as_ref() else { return Ok(None) };
    let body = mpp_wire::body_to_core(body);
    let kind = body.kind();
    let Ok(service) = ServiceId::parse(&env.service_id) else { return Ok(None) };
    let granted = follower.grants.iter().any(|g| g.covers(&publisher, &service, kind));
    if !kind.is_application_event() || !(granted || follower.front_office) {
        return Ok(None);
    }
    let Ok(case) = TrackingNumber::parse(&env.case_id) else { return Ok(None) };
    let Some(view) = case_of(&case)? else { return Ok(None) };
    // Steps before the opening (held, then surfaced) are the opening's to
    // send ([`surfaced_at_opening`]), however late the feed reads them.
    let opener =
        follower.front_office && !view.shell && view.opened_by == *follower.id && e.seq > view.opened_seq;
    let follows_by_grant = granted && !view.own.is_empty();
    if !(opener || follows_by_grant) {
        return Ok(None);
    }
    let (mut notice, mut sla) = (None, None);
    if opener {
        let standard = standard_of(&publisher, &service)?;
        if CITIZEN_NOTICE_KINDS.contains(&kind) {
            notice = Some(citizen_notice(&body, standard.as_ref()));
        }
        sla = view.clock_of(&publisher, &env.application_id).map(|mut c| {
            c.service_name_id = standard.as_ref().map(|s| s.name_id.clone()).unwrap_or_default();
            c.service_name_en = standard.as_ref().map(|s| s.name_en.clone()).unwrap_or_default();
            c
        });
    }
    let own_applications = view.own;
    Ok(Some((
        case,
        pb::CaseEvent {
            seq: e.seq,
            event_id: env.event_id,
            case_id: case.to_string(),
            agency_id: publisher.to_string(),
            service_id: service.to_string(),
            application_id: env.application_id,
            event_type: kind.as_str().to_owned(),
            recorded_at_ms: e.stream_time_ns.div_euclid(1_000_000),
            own_applications,
            notice,
            sla,
        },
    )))
}

/// Who opened `case` and the follower's applications in it, or `None` when
/// the case is unknown.
fn case_view(
    store: &impl Store,
    follower: &AgencyId,
    case: &TrackingNumber,
    clocks: Option<Clocks<'_>>,
) -> Result<Option<CaseView>, StoreError> {
    let Some(c) = store.case(case)? else { return Ok(None) };
    let own: Vec<pb::OwnApplication> = c
        .applications
        .iter()
        .filter(|a| a.agency == *follower)
        .map(|a| pb::OwnApplication {
            application_id: a.id.to_string(),
            service_id: a.service.to_string(),
            state: a.state.as_str().to_owned(),
        })
        .collect();
    let clocks = match clocks {
        Some(clocks) if c.opened_by == *follower && !c.is_shell() => sla_clocks(&c, clocks),
        _ => Vec::new(),
    };
    Ok(Some(CaseView {
        opened_by: c.opened_by.clone(),
        shell: c.is_shell(),
        opened_seq: c.opened_seq,
        own,
        clocks,
    }))
}

/// When `e` is the follower's own opening of a case (a front office's
/// `case_opened`): the notice events of the applications filed and moved
/// before it, held in the case's shell and surfaced by the opening (an
/// agency's relay may overtake the front office's, so its steps reach the
/// log before the opening). The feed skipped them when it read them (the
/// case was not yet the follower's); they are sent now, once, in log
/// order. Applications the opening dropped send nothing.
fn surfaced_at_opening(
    store: &impl Store,
    e: &LogEntry,
    follower: Follower<'_>,
    clocks: Clocks<'_>,
) -> Result<Vec<(TrackingNumber, pb::CaseEvent)>, StoreError> {
    if !follower.front_office || e.verdict != Verdict::Accepted {
        return Ok(Vec::new());
    }
    if participant_of(e).and_then(|p| AgencyId::parse(p).ok()).as_ref() != Some(follower.id) {
        return Ok(Vec::new());
    }
    let Ok(env) = pb::Envelope::decode(e.payload.as_slice()) else { return Ok(Vec::new()) };
    let Some(body) = env.body.as_ref() else { return Ok(Vec::new()) };
    if mpp_wire::body_to_core(body).kind() != EventKind::CaseOpened {
        return Ok(Vec::new());
    }
    let Ok(case) = TrackingNumber::parse(&env.case_id) else { return Ok(Vec::new()) };
    let Some(c) = store.case(&case)? else { return Ok(Vec::new()) };
    if c.is_shell() || c.opened_by != *follower.id || c.opened_seq != e.seq {
        return Ok(Vec::new());
    }
    let mut seqs: Vec<u64> = c
        .applications
        .iter()
        .filter(|a| a.state != mpp_core::state::AppState::Dropped)
        .flat_map(|a| a.timeline.iter())
        .filter(|i| i.seq < e.seq && i.kind.is_application_event())
        .map(|i| i.seq)
        .collect();
    seqs.sort_unstable();
    let view = CaseView {
        opened_by: c.opened_by.clone(),
        shell: false,
        opened_seq: 0,
        own: Vec::new(),
        clocks: sla_clocks(&c, clocks),
    };
    let mut out = Vec::new();
    for seq in seqs {
        let Some(held) = store.entry(seq)? else { continue };
        let found = case_event_of(
            &held,
            follower,
            |_| Ok(Some(view.clone())),
            |agency, service| store.standard(agency, service),
        )?;
        out.extend(found);
    }
    Ok(out)
}

/// One step of a feed: the case events for `follower` among the entries
/// after `after` (at most `entries_max` read, `events_max` kept), the cases
/// they are of, and the last sequence looked at. The grants are read from
/// the store's registry.
pub fn scan_step_within(
    store: &impl Store,
    follower: &AgencyId,
    clocks: Clocks<'_>,
    after: u64,
    entries_max: usize,
    events_max: usize,
) -> Result<(Vec<(TrackingNumber, pb::CaseEvent)>, u64), StoreError> {
    let registry = store.registry()?;
    let front_office = registry.kind_of(follower) == Some(ParticipantKind::FrontOffice);
    let grants = registry.follows_of(follower);
    let who = Follower { id: follower, grants, front_office };
    scan_step_for(store, who, clocks, after, entries_max, events_max)
}

/// [`scan_step_within`] under the given grants instead of the registry's
/// (and not as a front office).
pub fn scan_step_with_grants(
    store: &impl Store,
    follower: &AgencyId,
    grants: &[FollowGrant],
    after: u64,
    entries_max: usize,
    events_max: usize,
) -> Result<(Vec<(TrackingNumber, pb::CaseEvent)>, u64), StoreError> {
    let calendars = CalendarSet::new();
    let clocks = Clocks { calendars: &calendars, now_ms: 0 };
    scan_step_as(store, follower, grants, false, clocks, after, entries_max, events_max)
}

/// [`scan_step_with_grants`], as a front office when `front_office`, its
/// SLA clocks read with `clocks`.
#[allow(clippy::too_many_arguments)]
pub fn scan_step_as(
    store: &impl Store,
    follower: &AgencyId,
    grants: &[FollowGrant],
    front_office: bool,
    clocks: Clocks<'_>,
    after: u64,
    entries_max: usize,
    events_max: usize,
) -> Result<(Vec<(TrackingNumber, pb::CaseEvent)>, u64), StoreError> {
    scan_step_for(
        store,
        Follower { id: follower, grants, front_office },
        clocks,
        after,
        entries_max,
        events_max,
    )
}

fn scan_step_for(
    store: &impl Store,
    who: Follower<'_>,
    clocks: Clocks<'_>,
    after: u64,
    entries_max: usize,
    events_max: usize,
) -> Result<(Vec<(TrackingNumber, pb::CaseEvent)>, u64), StoreError> {
    let follower = who.id;
    let with_clocks = who.front_office.then_some(clocks);
    // One read per case per step.
    let mut cases: HashMap<TrackingNumber, Option<CaseView>> = HashMap::new();
    let (found, scanned_to) = scan_filtered(store, after, entries_max, events_max, |e| {
        let mut out = surfaced_at_opening(store, e, who, clocks)?;
        out.extend(case_event_of(
            e,
            who,
            |tn| {
                if let Some(known) = cases.get(tn) {
                    return Ok(known.clone());
                }
                let view = case_view(store, follower, tn, with_clocks)?;
                cases.insert(*tn, view.clone());
                Ok(view)
            },
            |agency, service| store.standard(agency, service),
        )?);
        Ok((!out.is_empty()).then_some(out))
    })?;
    Ok((found.into_iter().flatten().collect(), scanned_to))
}

impl CaseEvents {
    /// Records in each case's access history that `follower` received its
    /// events, once per follower, case and day.
    fn record_access(&self, follower: &AgencyId, cases: impl IntoIterator<Item = TrackingNumber>) {
        let Some(log) = self.lookups.access_log() else { return };
        let now_ms = self.lookups.now_ms();
        let day = now_ms.div_euclid(ACCESS_RECORD_DAY_MS);
        let accessor = Accessor::Agency { agency: follower.clone() };
        for case in cases {
            if self.memo.seen_or_note(follower, &case, day) {
                continue;
            }
            let recorded_today = log.recent(&case, ACCESS_EVENTS_PER_CASE_MAX).iter().any(|a| {
                a.channel == AccessChannel::Feed
                    && a.accessor == accessor
                    && a.at_ms.div_euclid(ACCESS_RECORD_DAY_MS) == day
            });
            if !recorded_today {
                log.record(
                    case,
                    AccessEvent { at_ms: now_ms, accessor: accessor.clone(), channel: AccessChannel::Feed },
                );
            }
        }
    }
}

/// The stream type of `FollowCaseEvents`.
pub type CaseEventStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::CaseEventBatch, Status>> + Send>>;

#[tonic::async_trait]
impl CaseEventService for CaseEvents {
    type FollowCaseEventsStream = CaseEventStream;

    async fn follow_case_events(
        &self,
        request: Request<pb::FollowCaseEventsRequest>,
    ) -> Result<Response<Self::FollowCaseEventsStream>, Status> {
        let participant = caller(&request)?;
        let follower = AgencyId::parse(&participant).map_err(ApiError::from)?;
        let store = self.lookups.store().clone();
        let registry = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.registry())
                .await
                .map_err(|_| Status::from(ApiError::internal()))?
                .map_err(|e| {
                    error!(error = %e, "Registry read failed");
                    Status::from(ApiError::internal())
                })?
        };
        if registry.follows_of(&follower).is_empty()
            && registry.kind_of(&follower) != Some(ParticipantKind::FrontOffice)
        {
            return Err(ApiError::new(
                ReasonCode::NoFollowGrant,
                format!(
                    "the participant registry grants {follower} no other participant's events to follow, \
                     and does not register it as a front office"
                ),
            )
            .into());
        }
        let place = self.places.take(&participant)?;
        let after_seq = request.get_ref().after_seq;
        info!(participant = %participant, after_seq, "Case event feed opened");
        let me = self.clone();
        let rx = follow(
            "Case event feed",
            Feed { participant, after_seq, place, changes: self.changes.clone() },
            move |_: &str, cursor| {
                let clocks = Clocks { calendars: me.lookups.calendars(), now_ms: me.lookups.now_ms() };
                let (found, scanned_to) = scan_step_within(
                    &store,
                    &follower,
                    clocks,
                    cursor,
                    SCAN_STEP_ENTRIES,
                    CASE_EVENT_BATCH_MAX,
                )?;
                let mut cases: Vec<TrackingNumber> = found.iter().map(|(tn, _)| *tn).collect();
                cases.sort_unstable();
                cases.dedup();
                me.record_access(&follower, cases);
                Ok((found.into_iter().map(|(_, e)| e).collect::<Vec<_>>(), scanned_to))
            },
            |events, scanned_to_seq| pb::CaseEventBatch { events, scanned_to_seq },
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
