//! Building `mpp.v1.Envelope`s.
//!
//! The [`EventBuilder`] takes the core's [`EventBody`] and [`Target`], stamps
//! the envelope (schema version, event id, region, agency, service, time at
//! the edge, officer), runs the hub's own field validation over it, checks its
//! encoded size, and only then converts it to the protobuf type. An event the
//! hub would reject for a field reason therefore never leaves the service.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use mpp_core::event::{Target, UncheckedEnvelope};
use mpp_core::ids::{AgencyId, OfficerId, RegionCode, ServiceId};
use mpp_core::validate::{subject_for, validate, SCHEMA_VERSION};
use mpp_core::{limits, EventBody, ReasonCode, Rejection};
use mpp_proto::v1 as pb;
use prost::Message as _;
use uuid::Uuid;

use crate::error::KitError;

/// The clock at the edge: `occurred_at_ms` of every event comes from here.
/// (The hub's time of record is the JetStream timestamp, not this.)
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, in Unix milliseconds.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        // A clock before 1970 reads as 0 and the event is then refused as
        // TIMESTAMP_OUT_OF_RANGE by the validation gate, not sent.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// An event ready to publish: its subject and its envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingEvent {
    subject: String,
    envelope: pb::Envelope,
}

impl OutgoingEvent {
    /// The subject, `mpp.events.<agency_id>.<service_id>`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The event id (canonical UUIDv7 text), also the `Nats-Msg-Id`.
    pub fn event_id(&self) -> &str {
        &self.envelope.event_id
    }

    /// The envelope.
    pub fn envelope(&self) -> &pb::Envelope {
        &self.envelope
    }

    /// The protobuf encoding, the message payload.
    pub fn encode(&self) -> Vec<u8> {
        self.envelope.encode_to_vec()
    }
}

/// Builds the envelopes of one agency at one MPP.
#[derive(Debug, Clone)]
pub struct EventBuilder {
    region: RegionCode,
    agency: AgencyId,
    clock: Arc<dyn Clock>,
}

impl EventBuilder {
    /// A builder for `agency` at the MPP of `region`, reading time from `clock`.
    pub fn new(region: RegionCode, agency: AgencyId, clock: Arc<dyn Clock>) -> Self {
        Self { region, agency, clock }
    }

    /// The MPP's region code.
    pub fn region(&self) -> RegionCode {
        self.region
    }

    /// The agency.
    pub fn agency(&self) -> &AgencyId {
        &self.agency
    }

    /// Now on the builder's clock, in Unix milliseconds (for input checks
    /// that must agree with the validation gate, e.g. appointment times).
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Builds an event with a fresh UUIDv7 event id.
    pub fn build(
        &self,
        service: &ServiceId,
        target: Target,
        officer: &OfficerId,
        body: EventBody,
    ) -> Result<OutgoingEvent, KitError> {
        self.build_with_id(Uuid::now_v7(), service, target, officer, body)
    }

    /// Builds an event with the given id, which must be a UUIDv7 (the
    /// validation gate refuses anything else with `MALFORMED_EVENT_ID`). Used
    /// for deterministic ids such as [`crate::catalogue::standard_event_id`].
    pub fn build_with_id(
        &self,
        event_id: Uuid,
        service: &ServiceId,
        target: Target,
        officer: &OfficerId,
        body: EventBody,
    ) -> Result<OutgoingEvent, KitError> {
        let now_ms = self.clock.now_ms();
        let (case_id, application_id) = match &target {
            Target::Catalogue => (String::new(), String::new()),
            Target::Case(case) => (case.to_string(), String::new()),
            Target::Application(case, app) => (case.to_string(), app.to_string()),
        };
        let unchecked = UncheckedEnvelope {
            schema_version: SCHEMA_VERSION,
            event_id: event_id.hyphenated().to_string(),
            case_id,
            region_code: self.region.to_string(),
            agency_id: self.agency.to_string(),
            service_id: service.to_string(),
            application_id,
            occurred_at_ms: now_ms,
            officer: officer.to_string(),
            body: Some(body),
        };
        let subject = subject_for(&self.agency, service);
        // The hub's own validation, with our clock standing in for the time
        // of record: the last gate before anything leaves the service.
        validate(&subject, &unchecked, now_ms).map_err(KitError::Event)?;
        // The hub's own conversion (mpp_wire), so what leaves is what it reads.
        let envelope = mpp_wire::from_unchecked(&unchecked);
        let len = envelope.encoded_len();
        if len > limits::MESSAGE_BYTES_MAX {
            return Err(KitError::Event(Rejection::new(
                ReasonCode::MessageTooLarge,
                format!(
                    "the event would be {len} bytes, more than the limit of {} bytes",
                    limits::MESSAGE_BYTES_MAX
                ),
            )));
        }
        Ok(OutgoingEvent { subject, envelope })
    }
}

#[cfg(test)]
mod tests {
    use mpp_core::ids::{ApplicationId, EventId, TrackingNumber};

    use super::*;

    #[derive(Debug)]
    struct Fixed(i64);

    impl Clock for Fixed {
        fn now_ms(&self) -> i64 {
            self.0
        }
    }

    const NOW_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn builder() -> EventBuilder {
        EventBuilder::new(
            RegionCode::parse("1771").unwrap(),
            AgencyId::parse("dukcapil").unwrap(),
            Arc::new(Fixed(NOW_MS)),
        )
    }

    fn kk() -> ServiceId {
        ServiceId::parse("kk").unwrap()
    }

    fn officer() -> OfficerId {
        OfficerId::parse("ptg-07").unwrap()
    }

    fn case() -> TrackingNumber {
        TrackingNumber::new(RegionCode::parse("1771").unwrap(), 42).unwrap()
    }

    #[test]
    fn builds_a_complete_envelope() {
        let app = ApplicationId::parse("DKC-KK-1").unwrap();
        let ev = builder()
            .build(
                &kk(),
                Target::Application(case(), app),
                &officer(),
                EventBody::DocumentsRequested {
                    documents: vec!["KK lama".into()],
                    counter: "Loket 3".into(),
                    note: String::new(),
                },
            )
            .unwrap();
        assert_eq!(ev.subject(), "mpp.events.dukcapil.kk");
        let env = ev.envelope();
        assert_eq!(env.schema_version, 1);
        let id = EventId::parse(&env.event_id).unwrap();
        assert_eq!(id.to_string(), env.event_id, "canonical lowercase text");
        assert_eq!(env.case_id, case().to_string());
        assert_eq!(env.region_code, "1771");
        assert_eq!(env.agency_id, "dukcapil");
        assert_eq!(env.service_id, "kk");
        assert_eq!(env.application_id, "DKC-KK-1");
        assert_eq!(env.occurred_at_ms, NOW_MS);
        assert_eq!(env.officer, "ptg-07");
        assert!(
            matches!(env.body, Some(pb::envelope::Body::DocumentsRequested(ref d)) if d.counter == "Loket 3")
        );
        assert_eq!(ev.event_id(), env.event_id);
        // Round trip through the wire.
        let decoded = pb::Envelope::decode(ev.encode().as_slice()).unwrap();
        assert_eq!(&decoded, env);
    }

    #[test]
    fn event_ids_are_fresh_v7() {
        let b = builder();
        let a = b.build(&kk(), Target::Case(case()), &officer(), opened()).unwrap();
        let c = b.build(&kk(), Target::Case(case()), &officer(), opened()).unwrap();
        assert_ne!(a.event_id(), c.event_id());
        assert!(EventId::parse(a.event_id()).is_ok());
        assert!(a.envelope().application_id.is_empty());
    }

    fn opened() -> EventBody {
        EventBody::CaseOpened { pin_verifier: vec![1; 32], nik_keyed_hash: vec![] }
    }

    #[test]
    fn the_validation_gate_refuses_what_the_hub_would_reject() {
        // A documents request without a counter: the hub says INVALID_FIELD_VALUE.
        let app = ApplicationId::parse("DKC-KK-1").unwrap();
        let err = builder()
            .build(
                &kk(),
                Target::Application(case(), app),
                &officer(),
                EventBody::DocumentsRequested {
                    documents: vec!["x".into()],
                    counter: String::new(),
                    note: String::new(),
                },
            )
            .unwrap_err();
        assert!(matches!(err, KitError::Event(_)));
        assert_eq!(err.reason_code(), ReasonCode::InvalidFieldValue);
        // A case of another region.
        let other = TrackingNumber::new(RegionCode::parse("1707").unwrap(), 1).unwrap();
        let err = builder().build(&kk(), Target::Case(other), &officer(), opened()).unwrap_err();
        assert_eq!(err.reason_code(), ReasonCode::RegionMismatch);
        // A non-v7 id.
        let err = builder()
            .build_with_id(Uuid::nil(), &kk(), Target::Case(case()), &officer(), opened())
            .unwrap_err();
        assert_eq!(err.reason_code(), ReasonCode::MalformedEventId);
    }

    #[test]
    fn system_clock_is_after_2000() {
        assert!(SystemClock.now_ms() > limits::OCCURRED_AT_MS_MIN);
    }
}
