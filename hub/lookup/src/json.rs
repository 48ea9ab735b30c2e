//! The JSON shape of a case (`GET /api/v1/cases/{tracking_number}`), version 1.
//! Documented in docs/API.md; fields are only ever added.

use mpp_core::case::Pending;
use mpp_core::sla::SlaView;
use mpp_core::{Application, TimelineItem};
use serde::{Serialize, Serializer};

use crate::access::AccessEvent;
use crate::lookup::{Found, ServiceName};

/// A value written as a JSON string through its `Display` (tracking
/// numbers, region codes, dates): the same text as `to_string()` gives,
/// without a `String` of its own per field and answer.
#[derive(Debug, Clone, Copy)]
pub struct Shown<T>(pub T);

impl<T: std::fmt::Display> Serialize for Shown<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// Whether a borrowed text is empty (for `skip_serializing_if`).
fn is_empty(s: &&str) -> bool {
    s.is_empty()
}

/// A case as JSON, borrowing from the lookup's answer ([`Found`]).
#[derive(Debug, Serialize)]
pub struct CaseJson<'a> {
    /// `RRRR-SSSSSSSSSS-C`.
    pub tracking_number: Shown<&'a mpp_core::ids::TrackingNumber>,
    /// BPS region code of the MPP.
    pub region_code: Shown<mpp_core::ids::RegionCode>,
    /// `done`, `action_needed`, `in_progress` or `overdue`.
    pub status: &'static str,
    /// The status in Bahasa Indonesia.
    pub status_label: &'static str,
    /// The status in English.
    pub status_label_en: &'static str,
    /// Time of record of the opening, Unix ms.
    pub opened_at_ms: i64,
    /// Time of record of the last change, Unix ms.
    pub updated_at_ms: i64,
    /// Hub log sequence of the last change.
    pub last_seq: u64,
    /// Applications in filing order.
    pub applications: Vec<ApplicationJson<'a>>,
    /// What the citizen must do now.
    pub next_actions: Vec<NextActionJson>,
    /// The newest lookups of the case, newest first ("who looked at my case").
    pub access_events: Vec<AccessEventJson>,
    /// The citizen's name and contact details: `sealed` (held encrypted,
    /// readable only at the front office), `erased` (key destroyed on an
    /// erasure request) or `none`. Never the data (docs/PRIVACY.md).
    pub personal_data: &'static str,
    /// Timeline items the whole case holds; `applications[].timeline` hold
    /// one page of them (the newest [`crate::lookup::TIMELINE_PAGE_ITEMS_MAX`]
    /// across the case, older than `?timeline_before_seq=` when given).
    pub timeline_items_total: usize,
    /// The `?timeline_before_seq=` of the next, older page; `null` when this
    /// page holds the oldest item.
    pub timeline_next_before_seq: Option<u64>,
    /// Wrong PINs tried for this case since its last successful lookup, as
    /// of this lookup (only in the answer to a lookup with the PIN; seeing
    /// them clears them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_lookups: Option<FailedLookupsJson>,
}

/// Wrong PINs since the last successful lookup.
#[derive(Debug, Serialize)]
pub struct FailedLookupsJson {
    /// How many.
    pub count: u32,
    /// When the last was tried (Unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_at_ms: Option<i64>,
}

/// One lookup of the case as JSON.
#[derive(Debug, Serialize)]
pub struct AccessEventJson {
    /// Hub clock, Unix ms.
    pub at_ms: i64,
    /// `citizen`, `officer`, `auditor` or `agency` (another agency's system
    /// over the cross-agency feed).
    pub accessor: &'static str,
    /// The officer's or system's agency (accessor `officer` or `agency`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agency_id: Option<String>,
    /// `web`, `api`, `grpc`, `audit`, `counter` (the PIN re-issued at
    /// the counter of the case's opener), `feed` (accessor `agency`) or
    /// `personal_data` (the citizen's personal data read at the case's
    /// opener).
    pub channel: &'static str,
    /// The authenticated client that read the personal data (channel
    /// `personal_data`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// The JSON form of an access event.
pub fn access_event(e: &AccessEvent) -> AccessEventJson {
    AccessEventJson {
        at_ms: e.at_ms,
        accessor: e.accessor.as_str(),
        agency_id: e.accessor.agency().map(ToString::to_string),
        channel: e.channel.as_str(),
        client_id: e.accessor.client_id().map(str::to_owned),
    }
}

/// An application as JSON.
#[derive(Debug, Serialize)]
pub struct ApplicationJson<'a> {
    /// Id within the case.
    pub application_id: &'a str,
    /// Agency.
    pub agency_id: &'a str,
    /// Service.
    pub service_id: &'a str,
    /// The service's name in Bahasa Indonesia (from its current standard).
    #[serde(skip_serializing_if = "is_empty")]
    pub service_name_id: &'a str,
    /// The service's name in English.
    #[serde(skip_serializing_if = "is_empty")]
    pub service_name_en: &'a str,
    /// State, snake_case.
    pub state: &'static str,
    /// State in Bahasa Indonesia.
    pub state_label_id: &'static str,
    /// State in English.
    pub state_label_en: &'static str,
    /// Filing time of record, Unix ms.
    pub filed_at_ms: i64,
    /// Time of record of the last state change, Unix ms.
    pub state_since_ms: i64,
    /// Accepted events in order.
    pub timeline: Vec<TimelineJson<'a>>,
    /// The service-standard clock as of the lookup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sla: Option<SlaJson>,
}

/// An application's SLA clock as JSON (dates `YYYY-MM-DD` in the MPP's zone).
#[derive(Debug, Serialize)]
pub struct SlaJson {
    /// Version of the standard in force at filing.
    pub standard_version: u32,
    /// Completion time the standard grants, in working days.
    pub standard_working_days: u32,
    /// Filing date.
    pub filed_on: Shown<mpp_core::calendar::Date>,
    /// Working days the clock ran.
    pub working_days_used: u32,
    /// Working days the clock stood still (waiting on the citizen).
    pub working_days_stopped: u32,
    /// Working days left; negative once overdue.
    pub working_days_left: i32,
    /// Due date.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_date: Option<Shown<mpp_core::calendar::Date>>,
    /// Past the due date and not finished.
    pub overdue: bool,
    /// The clock is stopped.
    pub paused: bool,
    /// When the agency finished (issued, rejected, withdrawn).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_on: Option<Shown<mpp_core::calendar::Date>>,
    /// Whether it finished within the standard.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_on_time: Option<bool>,
    /// Approval by default (fiktif positif) at this date.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fiktif_positif_deadline: Option<Shown<mpp_core::calendar::Date>>,
    /// The fiktif-positif deadline has passed.
    pub fiktif_positif_reached: bool,
    /// False when holidays were unknown for part of the period.
    pub calendar_covers_period: bool,
}

fn sla(v: &SlaView) -> SlaJson {
    SlaJson {
        standard_version: v.standard_version,
        standard_working_days: v.standard_working_days,
        filed_on: Shown(v.filed_on),
        working_days_used: v.working_days_used,
        working_days_stopped: v.working_days_stopped,
        working_days_left: v.working_days_left,
        due_date: v.due_date.map(Shown),
        overdue: v.overdue,
        paused: v.paused,
        finished_on: v.finished_on.map(Shown),
        finished_on_time: v.finished_on_time,
        fiktif_positif_deadline: v.fiktif_positif_deadline.map(Shown),
        fiktif_positif_reached: v.fiktif_positif_reached,
        calendar_covers_period: v.calendar_covers_period,
    }
}

/// A timeline item as JSON.
#[derive(Debug, Serialize)]
pub struct TimelineJson<'a> {
    /// Hub log sequence.
    pub seq: u64,
    /// Time of record, Unix ms.
    pub recorded_at_ms: i64,
    /// Event type, snake_case.
    pub event_type: &'static str,
    /// State after the event.
    pub state_after: &'static str,
    /// Short detail.
    pub detail: &'a str,
}

/// A next action as JSON.
#[derive(Debug, Serialize)]
pub struct NextActionJson {
    /// Which application.
    pub application_id: String,
    /// `bring_documents`, `pay_fee`, `attend_appointment` or `collect_document`.
    pub kind: &'static str,
    /// Documents to bring.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub documents: Vec<String>,
    /// Where (counter, payment channel, appointment place).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub place: String,
    /// Amount to pay, rupiah.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_idr: Option<i64>,
    /// Billing code for the payment.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub billing_code: String,
    /// Kind of appointment (interview, inspection, survey, installation, collection, other).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub appointment_kind: String,
    /// Appointment time, Unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<i64>,
    /// Pay by, Unix ms (`pay_fee`, when the agency set a due date).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_at_ms: Option<i64>,
    /// The last local date to collect the document, `YYYY-MM-DD`
    /// (`collect_document`, in the MPP region's calendar).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_on: Option<String>,
}

fn timeline(t: &TimelineItem) -> TimelineJson<'_> {
    TimelineJson {
        seq: t.seq,
        recorded_at_ms: t.recorded_at_ms,
        event_type: t.kind.as_str(),
        state_after: t.state_after.as_str(),
        detail: &t.detail,
    }
}

fn application<'a>(
    a: &'a Application,
    v: Option<&SlaView>,
    name: Option<&'a ServiceName>,
) -> ApplicationJson<'a> {
    ApplicationJson {
        sla: v.map(sla),
        application_id: a.id.as_str(),
        agency_id: a.agency.as_str(),
        service_id: a.service.as_str(),
        service_name_id: name.map_or("", |n| n.id.as_str()),
        service_name_en: name.map_or("", |n| n.en.as_str()),
        state: a.state.as_str(),
        state_label_id: a.state.label_id(),
        state_label_en: a.state.label_en(),
        filed_at_ms: a.filed_at_ms,
        state_since_ms: a.state_since_ms,
        timeline: a.timeline.iter().map(timeline).collect(),
    }
}

/// The stable name of a next action's kind.
pub fn pending_kind(p: &Pending) -> &'static str {
    match p {
        Pending::BringDocuments { .. } => "bring_documents",
        Pending::PayFee { .. } | Pending::PayFeeBy { .. } => "pay_fee",
        Pending::Attend { .. } => "attend_appointment",
        Pending::Collect | Pending::CollectAt { .. } => "collect_document",
    }
}

fn next_action(application_id: String, p: &Pending, sla: Option<&SlaView>) -> NextActionJson {
    let mut out = NextActionJson {
        application_id,
        kind: pending_kind(p),
        documents: Vec::new(),
        place: String::new(),
        amount_idr: None,
        billing_code: String::new(),
        appointment_kind: String::new(),
        at_ms: None,
        due_at_ms: None,
        due_on: None,
    };
    match p {
        Pending::BringDocuments { documents, counter } => {
            out.documents = documents.clone();
            out.place = counter.clone();
        }
        Pending::PayFee { .. } | Pending::PayFeeBy { .. } => {
            if let Some(fee) = p.fee() {
                out.amount_idr = Some(fee.amount_idr);
                out.place = fee.payment_channel.to_owned();
                out.billing_code = fee.billing_code.to_owned();
                out.due_at_ms = fee.due_at_ms;
            }
        }
        Pending::Attend { kind, at_ms, place } => {
            out.appointment_kind = kind.clone();
            out.at_ms = Some(*at_ms);
            out.place = place.clone();
        }
        Pending::Collect => {}
        Pending::CollectAt { place, .. } => {
            out.place = place.clone();
            out.due_on = sla.and_then(|s| s.collect_by).map(|d| d.to_string());
        }
    }
    out
}

/// The JSON view of a case. Carries no PIN verifier, NIK hash or any other
/// personal data.
pub fn case_json(found: &Found) -> CaseJson<'_> {
    let c = &found.case;
    let status = found.status;
    CaseJson {
        tracking_number: Shown(&c.tracking_number),
        region_code: Shown(c.tracking_number.region()),
        status: status.as_str(),
        status_label: status.label_id(),
        status_label_en: crate::i18n::status_label(status, crate::i18n::Lang::En),
        opened_at_ms: c.opened_at_ms,
        updated_at_ms: c.updated_at_ms,
        last_seq: c.last_seq,
        applications: c
            .applications
            .iter()
            .enumerate()
            .map(|(i, a)| application(a, found.slas.get(i), found.service_names.get(i)))
            .collect(),
        next_actions: c
            .next_actions()
            .into_iter()
            .map(|n| {
                let sla = c
                    .applications
                    .iter()
                    .position(|a| a.id == n.application_id)
                    .and_then(|i| found.slas.get(i));
                next_action(n.application_id.to_string(), &n.pending, sla)
            })
            .collect(),
        access_events: found.access.iter().map(access_event).collect(),
        personal_data: c.personal_data.as_str(),
        timeline_items_total: found.timeline.items_total,
        timeline_next_before_seq: found.timeline.next_before_seq,
        failed_lookups: found
            .failed_attempts
            .map(|f| FailedLookupsJson { count: f.count, last_at_ms: f.last_at_ms }),
    }
}
