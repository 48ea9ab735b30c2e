//! Hand-written conversions between the protobuf wire types (`mpp_proto`)
//! and the core's own types (`mpp_core`). Every enum is mapped explicitly,
//! so renumbering either side is a compile error or a visible diff here,
//! never a silent reinterpretation.

use mpp_core::case::Pending;
use mpp_core::log::Verdict;
use mpp_core::sla::SlaView;
use mpp_core::{
    AppState, Application, Case, CaseStatus, EventBody, LogEntry, TimelineItem, UncheckedEnvelope,
};
use mpp_proto::v1 as pb;
use pb::envelope::Body;

mod signed;

pub use signed::{
    append_signature, signature_of, signed_part, statement_to_unchecked, SignedPartError, SIGNATURE_FIELD,
};

/// Converts a decoded protobuf envelope field by field. An empty oneof gives
/// `body: None` (prost decodes a body of a kind this build does not know as
/// an empty oneof, too); validation turns that into `MISSING_BODY`.
pub fn to_unchecked(e: &pb::Envelope) -> UncheckedEnvelope {
    UncheckedEnvelope {
        schema_version: e.schema_version,
        event_id: e.event_id.clone(),
        case_id: e.case_id.clone(),
        region_code: e.region_code.clone(),
        agency_id: e.agency_id.clone(),
        service_id: e.service_id.clone(),
        application_id: e.application_id.clone(),
        occurred_at_ms: e.occurred_at_ms,
        officer: e.officer.clone(),
        body: e.body.as_ref().map(body_to_core),
    }
}

/// A wire body in the core's words; the inverse of [`body_to_wire`].
pub fn body_to_core(b: &Body) -> EventBody {
    match b {
        Body::CaseOpened(x) => EventBody::CaseOpened {
            pin_verifier: x.pin_verifier.clone(),
            nik_keyed_hash: x.nik_keyed_hash.clone(),
        },
        Body::ApplicationFiled(x) => EventBody::ApplicationFiled { documents: x.documents.clone() },
        Body::DocumentsRequested(x) => EventBody::DocumentsRequested {
            documents: x.documents.clone(),
            counter: x.counter.clone(),
            note: x.note.clone(),
        },
        Body::DocumentsReceived(x) => EventBody::DocumentsReceived { documents: x.documents.clone() },
        Body::FeeAssessed(x) => EventBody::FeeAssessed {
            amount_idr: x.amount_idr,
            payment_channel: x.payment_channel.clone(),
            billing_code: x.billing_code.clone(),
            due_at_ms: x.due_at_ms,
        },
        Body::PaymentReceived(x) => EventBody::PaymentReceived {
            amount_idr: x.amount_idr,
            payment_reference: x.payment_reference.clone(),
        },
        Body::AppointmentScheduled(x) => {
            EventBody::AppointmentScheduled { kind: x.kind.clone(), at_ms: x.at_ms, place: x.place.clone() }
        }
        Body::ReviewStarted(_) => EventBody::ReviewStarted,
        Body::Issued(x) => EventBody::Issued { document_number: x.document_number.clone() },
        Body::Rejected(x) => {
            EventBody::Rejected { reason_code: x.reason_code.clone(), reason: x.reason.clone() }
        }
        Body::Withdrawn(x) => EventBody::Withdrawn { reason: x.reason.clone() },
        Body::Collected(_) => EventBody::Collected,
        Body::ServiceStandardPublished(x) => EventBody::ServiceStandardPublished {
            name_id: x.name_id.clone(),
            name_en: x.name_en.clone(),
            completion_working_days: x.completion_working_days,
            fee_idr: x.fee_idr,
            requirements: x.requirements.clone(),
            fiktif_positif: x.fiktif_positif,
            version: x.version,
            collection: x.collection.as_ref().map(|c| mpp_core::Collection {
                place: c.place.clone(),
                within_working_days: c.within_working_days,
            }),
        },
        Body::PersonalDataSealed(x) => EventBody::PersonalDataSealed {
            key_id: x.key_id.clone(),
            nonce: x.nonce.clone(),
            ciphertext: x.ciphertext.clone(),
        },
        Body::PersonalDataErased(x) => EventBody::PersonalDataErased { key_id: x.key_id.clone() },
        Body::PinReissued(x) => EventBody::PinReissued { pin_verifier: x.pin_verifier.clone() },
        Body::PersonalDataRead(x) => EventBody::PersonalDataRead { client_id: x.client_id.clone() },
    }
}

/// The reverse of [`to_unchecked`]: builds the protobuf envelope an agency
/// would publish. Used by tests and tools that produce events.
pub fn from_unchecked(u: &UncheckedEnvelope) -> pb::Envelope {
    pb::Envelope {
        schema_version: u.schema_version,
        event_id: u.event_id.clone(),
        case_id: u.case_id.clone(),
        region_code: u.region_code.clone(),
        agency_id: u.agency_id.clone(),
        service_id: u.service_id.clone(),
        application_id: u.application_id.clone(),
        occurred_at_ms: u.occurred_at_ms,
        officer: u.officer.clone(),
        body: u.body.as_ref().map(body_to_wire),
        signature: None,
    }
}

/// The protobuf oneof of a core event body.
pub fn body_to_wire(b: &EventBody) -> Body {
    match b {
        EventBody::CaseOpened { pin_verifier, nik_keyed_hash } => Body::CaseOpened(pb::CaseOpened {
            pin_verifier: pin_verifier.clone(),
            nik_keyed_hash: nik_keyed_hash.clone(),
        }),
        EventBody::ApplicationFiled { documents } => {
            Body::ApplicationFiled(pb::ApplicationFiled { documents: documents.clone() })
        }
        EventBody::DocumentsRequested { documents, counter, note } => {
            Body::DocumentsRequested(pb::DocumentsRequested {
                documents: documents.clone(),
                counter: counter.clone(),
                note: note.clone(),
            })
        }
        EventBody::DocumentsReceived { documents } => {
            Body::DocumentsReceived(pb::DocumentsReceived { documents: documents.clone() })
        }
        EventBody::FeeAssessed { amount_idr, payment_channel, billing_code, due_at_ms } => {
            Body::FeeAssessed(pb::FeeAssessed {
                amount_idr: *amount_idr,
                payment_channel: payment_channel.clone(),
                billing_code: billing_code.clone(),
                due_at_ms: *due_at_ms,
            })
        }
        EventBody::PaymentReceived { amount_idr, payment_reference } => {
            Body::PaymentReceived(pb::PaymentReceived {
                amount_idr: *amount_idr,
                payment_reference: payment_reference.clone(),
            })
        }
        EventBody::AppointmentScheduled { kind, at_ms, place } => {
            Body::AppointmentScheduled(pb::AppointmentScheduled {
                kind: kind.clone(),
                at_ms: *at_ms,
                place: place.clone(),
            })
        }
        EventBody::ReviewStarted => Body::ReviewStarted(pb::ReviewStarted {}),
        EventBody::Issued { document_number } => {
            Body::Issued(pb::Issued { document_number: document_number.clone() })
        }
        EventBody::Rejected { reason_code, reason } => {
            Body::Rejected(pb::Rejected { reason_code: reason_code.clone(), reason: reason.clone() })
        }
        EventBody::Withdrawn { reason } => Body::Withdrawn(pb::Withdrawn { reason: reason.clone() }),
        EventBody::Collected => Body::Collected(pb::Collected {}),
        EventBody::ServiceStandardPublished {
            name_id,
            name_en,
            completion_working_days,
            fee_idr,
            requirements,
            fiktif_positif,
            version,
            collection,
        } => Body::ServiceStandardPublished(pb::ServiceStandardPublished {
            name_id: name_id.clone(),
            name_en: name_en.clone(),
            completion_working_days: *completion_working_days,
            fee_idr: *fee_idr,
            requirements: requirements.clone(),
            fiktif_positif: *fiktif_positif,
            version: *version,
            collection: collection.as_ref().map(|c| pb::Collection {
                place: c.place.clone(),
                within_working_days: c.within_working_days,
            }),
        }),
        EventBody::PersonalDataSealed { key_id, nonce, ciphertext } => {
            Body::PersonalDataSealed(pb::PersonalDataSealed {
                key_id: key_id.clone(),
                nonce: nonce.clone(),
                ciphertext: ciphertext.clone(),
            })
        }
        EventBody::PersonalDataErased { key_id } => {
            Body::PersonalDataErased(pb::PersonalDataErased { key_id: key_id.clone() })
        }
        EventBody::PinReissued { pin_verifier } => {
            Body::PinReissued(pb::PinReissued { pin_verifier: pin_verifier.clone() })
        }
        EventBody::PersonalDataRead { client_id } => {
            Body::PersonalDataRead(pb::PersonalDataRead { client_id: client_id.clone() })
        }
    }
}

/// The wire form of an application state.
pub fn application_state(s: AppState) -> pb::ApplicationState {
    match s {
        AppState::Submitted => pb::ApplicationState::Submitted,
        AppState::DocumentsRequired => pb::ApplicationState::DocumentsRequired,
        AppState::InReview => pb::ApplicationState::InReview,
        AppState::AwaitingPayment => pb::ApplicationState::AwaitingPayment,
        AppState::Paid => pb::ApplicationState::Paid,
        AppState::Scheduled => pb::ApplicationState::Scheduled,
        AppState::Issued => pb::ApplicationState::Issued,
        AppState::Collected => pb::ApplicationState::Collected,
        AppState::Rejected => pb::ApplicationState::Rejected,
        AppState::Withdrawn => pb::ApplicationState::Withdrawn,
        // Never in a citizen's view (the lookup leaves dropped applications
        // out, see hub.proto); mapped for every other view of a case.
        AppState::Dropped => pb::ApplicationState::Dropped,
    }
}

/// The wire form of a case status.
pub fn case_status(s: CaseStatus) -> pb::CaseStatus {
    match s {
        CaseStatus::Done => pb::CaseStatus::Done,
        CaseStatus::ActionNeeded => pb::CaseStatus::ActionNeeded,
        CaseStatus::InProgress => pb::CaseStatus::InProgress,
        CaseStatus::Overdue => pb::CaseStatus::Overdue,
    }
}

/// The wire form of a verdict.
pub fn verdict(v: Verdict) -> pb::Verdict {
    match v {
        Verdict::Accepted => pb::Verdict::Accepted,
        Verdict::Rejected => pb::Verdict::Rejected,
        Verdict::Duplicate => pb::Verdict::Duplicate,
    }
}

/// The stable kind name of a next action, as documented in `hub.proto`.
pub fn next_action_kind(p: &Pending) -> &'static str {
    match p {
        Pending::BringDocuments { .. } => "bring_documents",
        Pending::PayFee { .. } | Pending::PayFeeBy { .. } => "pay_fee",
        Pending::Attend { .. } => "attend_appointment",
        Pending::Collect | Pending::CollectAt { .. } => "collect_document",
    }
}

fn next_action(application_id: &str, p: &Pending) -> pb::NextAction {
    let mut a = pb::NextAction {
        application_id: application_id.to_owned(),
        kind: next_action_kind(p).to_owned(),
        ..Default::default()
    };
    match p {
        Pending::BringDocuments { documents, counter } => {
            a.documents = documents.clone();
            a.place = counter.clone();
        }
        Pending::PayFee { .. } | Pending::PayFeeBy { .. } => {
            if let Some(fee) = p.fee() {
                a.amount_idr = fee.amount_idr;
                a.place = fee.payment_channel.to_owned();
                a.billing_code = fee.billing_code.to_owned();
                a.due_at_ms = fee.due_at_ms.unwrap_or(0);
            }
        }
        Pending::Attend { kind, at_ms, place } => {
            a.at_ms = *at_ms;
            a.place = place.clone();
            a.appointment_kind = kind.clone();
        }
        Pending::Collect => {}
        Pending::CollectAt { place, within_working_days } => {
            a.place = place.clone();
            a.collect_within_working_days = *within_working_days;
        }
    }
    a
}

fn timeline_item(t: &TimelineItem) -> pb::TimelineItem {
    pb::TimelineItem {
        seq: t.seq,
        recorded_at_ms: t.recorded_at_ms,
        event_type: t.kind.as_str().to_owned(),
        state_after: application_state(t.state_after) as i32,
        detail: t.detail.to_string(),
    }
}

fn date_text(d: Option<mpp_core::calendar::Date>) -> String {
    d.map(|d| d.to_string()).unwrap_or_default()
}

/// The wire form of an application's SLA clock.
pub fn sla_view(v: &SlaView) -> pb::SlaView {
    pb::SlaView {
        standard_version: v.standard_version,
        standard_working_days: v.standard_working_days,
        filed_on: v.filed_on.to_string(),
        working_days_used: v.working_days_used,
        working_days_stopped: v.working_days_stopped,
        working_days_left: v.working_days_left,
        due_date: date_text(v.due_date),
        overdue: v.overdue,
        paused: v.paused,
        finished_on: date_text(v.finished_on),
        finished_on_time: v.finished_on_time,
        fiktif_positif_deadline: date_text(v.fiktif_positif_deadline),
        fiktif_positif_reached: v.fiktif_positif_reached,
        calendar_covers_period: v.calendar_covers_period,
    }
}

fn application_view(a: &Application, sla: Option<&SlaView>) -> pb::ApplicationView {
    pb::ApplicationView {
        sla: sla.map(sla_view),
        application_id: a.id.as_str().to_owned(),
        agency_id: a.agency.as_str().to_owned(),
        service_id: a.service.as_str().to_owned(),
        state: application_state(a.state) as i32,
        filed_at_ms: a.filed_at_ms,
        state_since_ms: a.state_since_ms,
        timeline: a.timeline.iter().map(timeline_item).collect(),
        // Service names come from the standards, not the case (see grpc::view).
        ..Default::default()
    }
}

/// The citizen's view of a case, with the status and SLA clocks computed at
/// lookup time (`slas` in application order, as [`mpp_core::sla::case_sla`]
/// gives them).
pub fn case_view(c: &Case, status: CaseStatus, slas: &[SlaView]) -> pb::CaseView {
    pb::CaseView {
        tracking_number: c.tracking_number.to_string(),
        region_code: c.tracking_number.region().to_string(),
        status: case_status(status) as i32,
        opened_at_ms: c.opened_at_ms,
        updated_at_ms: c.updated_at_ms,
        last_seq: c.last_seq,
        applications: c
            .applications
            .iter()
            .enumerate()
            .map(|(i, a)| application_view(a, slas.get(i)))
            .collect(),
        next_actions: c
            .next_actions()
            .iter()
            .map(|n| next_action(n.application_id.as_str(), &n.pending))
            .collect(),
        // Only the state ("none", "sealed", "erased"), never the data.
        personal_data: c.personal_data.as_str().to_owned(),
        // Access events come from the access log, not the case (see grpc::view).
        ..Default::default()
    }
}

/// A log entry as served to auditors.
pub fn log_entry(e: &LogEntry) -> pb::LogEntry {
    pb::LogEntry {
        seq: e.seq,
        stream_seq: e.stream_seq,
        stream_time_ns: e.stream_time_ns,
        subject: e.subject.clone(),
        payload: e.payload.clone(),
        verdict: verdict(e.verdict) as i32,
        reason_code: e.reason.map(|r| r.as_str().to_owned()).unwrap_or_default(),
        detail: e.detail.clone(),
        prev_hash: e.prev_hash.to_vec(),
        hash: e.hash.to_vec(),
        redrive_of: e.redrive.as_ref().map_or(0, |r| r.of_seq),
        redrive_operator: e.redrive.as_ref().map(|r| r.operator.clone()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use mpp_core::EventKind;

    use super::*;

    fn sample_bodies() -> Vec<EventBody> {
        vec![
            EventBody::CaseOpened { pin_verifier: vec![1], nik_keyed_hash: vec![2] },
            EventBody::ApplicationFiled { documents: vec!["a".into()] },
            EventBody::DocumentsRequested {
                documents: vec!["b".into()],
                counter: "c".into(),
                note: "n".into(),
            },
            EventBody::DocumentsReceived { documents: vec!["b".into()] },
            EventBody::FeeAssessed {
                amount_idr: 5,
                payment_channel: "bank".into(),
                billing_code: "x".into(),
                due_at_ms: 0,
            },
            EventBody::PaymentReceived { amount_idr: 5, payment_reference: "r".into() },
            EventBody::AppointmentScheduled { kind: "survey".into(), at_ms: 9, place: "p".into() },
            EventBody::ReviewStarted,
            EventBody::Issued { document_number: "d".into() },
            EventBody::Rejected { reason_code: "R1".into(), reason: "why".into() },
            EventBody::Withdrawn { reason: "w".into() },
            EventBody::Collected,
            EventBody::ServiceStandardPublished {
                name_id: "KK".into(),
                name_en: "Family card".into(),
                completion_working_days: 3,
                fee_idr: 0,
                requirements: vec!["x".into()],
                fiktif_positif: true,
                version: 2,
                collection: None,
            },
            EventBody::PersonalDataSealed {
                key_id: vec![3; 16],
                nonce: vec![4; 12],
                ciphertext: vec![5; 20],
            },
            EventBody::PersonalDataErased { key_id: vec![3; 16] },
            EventBody::PinReissued { pin_verifier: vec![4; 33] },
            EventBody::PersonalDataRead { client_id: "loket-1771".into() },
        ]
    }

    #[test]
    fn every_body_kind_round_trips() {
        let bodies = sample_bodies();
        let kinds: Vec<EventKind> = bodies.iter().map(EventBody::kind).collect();
        assert_eq!(kinds, EventKind::ALL, "the sample must cover every kind once");
        for body in bodies {
            let u = UncheckedEnvelope {
                schema_version: 1,
                event_id: "e".into(),
                case_id: "c".into(),
                region_code: "1771".into(),
                agency_id: "a".into(),
                service_id: "s".into(),
                application_id: "p".into(),
                occurred_at_ms: 7,
                officer: "o".into(),
                body: Some(body),
            };
            assert_eq!(to_unchecked(&from_unchecked(&u)), u);
        }
    }

    #[test]
    fn an_empty_oneof_is_no_body() {
        assert_eq!(to_unchecked(&pb::Envelope::default()).body, None);
    }

    #[test]
    fn enums_map_to_their_own_names() {
        for s in AppState::ALL {
            let name = application_state(*s).as_str_name();
            assert_eq!(name, format!("APPLICATION_STATE_{}", s.as_str().to_ascii_uppercase()));
        }
        for s in [CaseStatus::Done, CaseStatus::ActionNeeded, CaseStatus::InProgress, CaseStatus::Overdue] {
            assert_eq!(
                case_status(s).as_str_name(),
                format!("CASE_STATUS_{}", s.as_str().to_ascii_uppercase())
            );
        }
        for v in [Verdict::Accepted, Verdict::Rejected, Verdict::Duplicate] {
            assert_eq!(verdict(v).as_str_name(), format!("VERDICT_{}", v.as_str().to_ascii_uppercase()));
        }
    }

    #[test]
    fn case_view_carries_status_timeline_and_next_actions() {
        use mpp_core::decide::MemState;
        use mpp_core::event::Target;
        use mpp_core::ids::{
            AgencyId, ApplicationId, EventId, OfficerId, RegionCode, ServiceId, TrackingNumber,
        };
        use mpp_core::{apply, decide, EntryMeta, Envelope};

        let region = RegionCode::parse("1771").unwrap();
        let tn = TrackingNumber::new(region, 42).unwrap();
        let mut state = MemState::default();
        let mut seq = 0;
        let mut step = |target: Target, body: EventBody| {
            seq += 1;
            let env = Envelope {
                event_id: EventId([0; 16]),
                target,
                region,
                agency: AgencyId::parse("dukcapil").unwrap(),
                service: ServiceId::parse("kk").unwrap(),
                occurred_at_ms: 1,
                officer: OfficerId::parse("o-1").unwrap(),
                body,
            };
            decide(&state, &env).unwrap();
            apply(&mut state, &env, EntryMeta { seq, recorded_at_ms: 1_000 * seq as i64 });
        };
        let app = |id: &str| Target::Application(tn, ApplicationId::parse(id).unwrap());
        let bodies = sample_bodies();
        step(Target::Catalogue, bodies[12].clone());
        step(Target::Case(tn), bodies[0].clone());
        step(app("a-1"), bodies[1].clone());
        step(app("a-1"), bodies[4].clone()); // fee assessed
        step(app("a-2"), bodies[1].clone());
        let case = &state.cases[&tn];
        let calendars = mpp_core::calendar::CalendarSet::new();
        let now_ms = 10_000;
        let slas = mpp_core::sla::case_sla(case, &calendars, now_ms);
        let v = case_view(case, mpp_core::sla::case_status_at(case, &calendars, now_ms), &slas);
        assert_eq!(v.applications[0].sla.as_ref().map(|s| s.paused), Some(true));
        assert_eq!(v.tracking_number, tn.to_string());
        assert_eq!(v.region_code, "1771");
        assert_eq!(v.status, pb::CaseStatus::ActionNeeded as i32);
        assert_eq!(v.last_seq, 5);
        assert_eq!(v.applications.len(), 2);
        let a1 = &v.applications[0];
        assert_eq!(a1.state, pb::ApplicationState::AwaitingPayment as i32);
        let types: Vec<&str> = a1.timeline.iter().map(|t| t.event_type.as_str()).collect();
        assert_eq!(types, ["application_filed", "fee_assessed"]);
        assert_eq!(v.next_actions.len(), 1);
        let n = &v.next_actions[0];
        assert_eq!((n.application_id.as_str(), n.kind.as_str()), ("a-1", "pay_fee"));
        assert_eq!((n.amount_idr, n.place.as_str()), (5, "bank"));
    }
}
