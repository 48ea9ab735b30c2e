//! The handle an agency's RPC implementation calls: build the events of one
//! call, publish them in order, report what was accepted.
//!
//! The service is stateless. It does not know whether a step is legal in the
//! application's current state: the hub decides, and an illegal step ends as a
//! rejected log entry (`ILLEGAL_TRANSITION`, `UNKNOWN_APPLICATION`, ...) that
//! the agency can see. "Accepted" here means what the [`Publisher`] says:
//! durably in the service's outbox ([`crate::outbox::OutboxPublisher`], the
//! production set-up) or acknowledged by JetStream
//! ([`crate::JetStreamPublisher`]).

use std::sync::Arc;

use mpp_core::event::Target;
use mpp_core::ids::{ApplicationId, OfficerId, RegionCode, ServiceId, TrackingNumber};
use mpp_core::EventBody;

use crate::catalogue::ServiceStandardSpec;
use crate::error::KitError;
use crate::event::{EventBuilder, OutgoingEvent};
use crate::ids::{allocate_tracking_number, pin_verifier, Pin, PinPepper};
use crate::publish::{Accepted, Publisher};

/// The result of filing an application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filed {
    /// The case (new or existing).
    pub tracking_number: TrackingNumber,
    /// The citizen's lookup PIN, when a new case was opened. Hand it to the
    /// caller once; it exists nowhere else.
    pub pin: Option<Pin>,
    /// The application id.
    pub application_id: ApplicationId,
    /// The events published, in order (`case_opened` first when a case was opened).
    pub accepted: Vec<Accepted>,
}

/// One agency at one MPP: its event builder, its publisher and its PIN pepper.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Agency {
    builder: EventBuilder,
    publisher: Arc<dyn Publisher>,
    pepper: PinPepper,
}

impl Agency {
    /// An agency handle.
    pub fn new(builder: EventBuilder, publisher: Arc<dyn Publisher>, pepper: PinPepper) -> Self {
        Self { builder, publisher, pepper }
    }

    /// The MPP's region code.
    pub fn region(&self) -> RegionCode {
        self.builder.region()
    }

    /// The event builder.
    pub fn builder(&self) -> &EventBuilder {
        &self.builder
    }

    async fn publish(&self, events: &[OutgoingEvent]) -> Result<Vec<Accepted>, KitError> {
        let accepted = self.publisher.publish_all(events).await?;
        crate::verdicts::note_accepted(accepted.iter().map(|a| a.event_id.as_str()));
        Ok(accepted)
    }

    /// Files an application for `service`. With `case` = `None` a new case is
    /// opened first: a tracking number and PIN are allocated, and
    /// `case_opened` (carrying only the PIN verifier) is published before
    /// `application_filed`, in one call to the publisher.
    ///
    /// The outbox writes both in one batch: both are accepted or neither.
    /// With the direct [`crate::JetStreamPublisher`], a failure between the two
    /// events leaves an opened case without the application; the error lists
    /// the published event id.
    pub async fn file_application(
        &self,
        service: &ServiceId,
        case: Option<TrackingNumber>,
        application_id: ApplicationId,
        officer: &OfficerId,
        documents: Vec<String>,
    ) -> Result<Filed, KitError> {
        let mut events = Vec::with_capacity(2);
        let (tracking_number, pin) = match case {
            Some(t) => (t, None),
            None => {
                let t = allocate_tracking_number(self.region());
                let pin = Pin::generate();
                let verifier = pin_verifier(&self.pepper, &t, &pin);
                events.push(self.builder.build(
                    service,
                    Target::Case(t),
                    officer,
                    EventBody::CaseOpened { pin_verifier: verifier.to_vec(), nik_keyed_hash: Vec::new() },
                )?);
                (t, Some(pin))
            }
        };
        events.push(self.builder.build(
            service,
            Target::Application(tracking_number, application_id.clone()),
            officer,
            EventBody::ApplicationFiled { documents },
        )?);
        let accepted = self.publish(&events).await?;
        tracing::info!(
            case = %tracking_number,
            application = %application_id,
            service = %service,
            case_opened = pin.is_some(),
            "Application filed"
        );
        Ok(Filed { tracking_number, pin, application_id, accepted })
    }

    /// Opens the case `tracking` on its own, as the MPP front office does: a
    /// PIN is generated and `case_opened` is published with its verifier and
    /// `nik_keyed_hash` (a keyed hash of the citizen's NIK, never the NIK;
    /// empty when unknown). The caller allocated `tracking` (e.g. from a
    /// durable counter). Returns the PIN, to hand to the caller once, and the
    /// accepted event.
    pub async fn open_case(
        &self,
        service: &ServiceId,
        tracking: TrackingNumber,
        officer: &OfficerId,
        nik_keyed_hash: Vec<u8>,
    ) -> Result<(Pin, Accepted), KitError> {
        let (pin, accepted) = self.open_case_with(service, tracking, officer, nik_keyed_hash, &[]).await?;
        // `open_case_with` returns one receipt per event, so this is never empty.
        let accepted = accepted.into_iter().next().unwrap_or(Accepted {
            event_id: String::new(),
            ack: None,
            outbox_seq: None,
        });
        Ok((pin, accepted))
    }

    /// [`Agency::open_case`], then `more` (case-level events the caller built
    /// for `tracking`, e.g. the front office's `personal_data_sealed`) in the
    /// same call to the publisher: with the outbox, all are accepted or none.
    /// Returns the receipts in order, `case_opened` first.
    pub async fn open_case_with(
        &self,
        service: &ServiceId,
        tracking: TrackingNumber,
        officer: &OfficerId,
        nik_keyed_hash: Vec<u8>,
        more: &[OutgoingEvent],
    ) -> Result<(Pin, Vec<Accepted>), KitError> {
        let (pin, ev) = self.new_pin_event(service, tracking, officer, |pin_verifier| {
            EventBody::CaseOpened { pin_verifier, nik_keyed_hash }
        })?;
        let mut events = Vec::with_capacity(1 + more.len());
        events.push(ev);
        events.extend_from_slice(more);
        let mut accepted = self.publish(&events).await?;
        // `publish_all` returned Ok, so every event is accepted; a publisher
        // returns one receipt per event, this only covers one that does not.
        let missing: Vec<Accepted> = events
            .iter()
            .skip(accepted.len())
            .map(|ev| Accepted { event_id: ev.event_id().to_owned(), ack: None, outbox_seq: None })
            .collect();
        accepted.extend(missing);
        Ok((pin, accepted))
    }

    /// Re-issues the lookup PIN of `tracking` (a case this agency opened): a
    /// new PIN is generated and `pin_reissued` is published with its
    /// verifier. Returns the PIN, to hand to the caller once, and the
    /// accepted event.
    pub async fn reissue_pin(
        &self,
        service: &ServiceId,
        tracking: TrackingNumber,
        officer: &OfficerId,
    ) -> Result<(Pin, Accepted), KitError> {
        let (pin, ev) = self.new_pin_event(service, tracking, officer, |pin_verifier| {
            EventBody::PinReissued { pin_verifier }
        })?;
        let event_id = ev.event_id().to_owned();
        let accepted = self.publish(std::slice::from_ref(&ev)).await?;
        let accepted =
            accepted.into_iter().next().unwrap_or(Accepted { event_id, ack: None, outbox_seq: None });
        Ok((pin, accepted))
    }

    /// A fresh PIN and the case-level event `body` makes of its verifier.
    fn new_pin_event(
        &self,
        service: &ServiceId,
        tracking: TrackingNumber,
        officer: &OfficerId,
        body: impl FnOnce(Vec<u8>) -> EventBody,
    ) -> Result<(Pin, OutgoingEvent), KitError> {
        let pin = Pin::generate();
        let verifier = pin_verifier(&self.pepper, &tracking, &pin).to_vec();
        let ev = self.builder.build(service, Target::Case(tracking), officer, body(verifier))?;
        Ok((pin, ev))
    }

    /// Publishes events the caller built with [`Agency::builder`], in order,
    /// in one call to the publisher (one outbox batch).
    pub async fn publish_events(&self, events: &[OutgoingEvent]) -> Result<Vec<Accepted>, KitError> {
        self.publish(events).await
    }

    /// Publishes one step of an application (documents requested, review
    /// started, issued, ...).
    pub async fn step(
        &self,
        service: &ServiceId,
        case: TrackingNumber,
        application_id: ApplicationId,
        officer: &OfficerId,
        body: EventBody,
    ) -> Result<Accepted, KitError> {
        let kind = body.kind();
        let ev =
            self.builder.build(service, Target::Application(case, application_id.clone()), officer, body)?;
        let mut accepted = self.publish(std::slice::from_ref(&ev)).await?;
        tracing::info!(case = %case, application = %application_id, service = %service, event = kind.as_str(), "Step published");
        // `publish_all` returned Ok, so the event is accepted; a publisher
        // returns one receipt per event, the fallback only covers one that does not.
        Ok(accepted.pop().unwrap_or(Accepted {
            event_id: ev.event_id().to_owned(),
            ack: None,
            outbox_seq: None,
        }))
    }

    /// [`Agency::step`] under a given event id (a deterministic one, such
    /// as [`crate::case_events::reaction_event_id`], makes publishing the
    /// step twice one event at the hub).
    pub async fn step_with_id(
        &self,
        event_id: uuid::Uuid,
        service: &ServiceId,
        case: TrackingNumber,
        application_id: ApplicationId,
        officer: &OfficerId,
        body: EventBody,
    ) -> Result<Accepted, KitError> {
        let kind = body.kind();
        let ev = self.builder.build_with_id(
            event_id,
            service,
            Target::Application(case, application_id.clone()),
            officer,
            body,
        )?;
        let mut accepted = self.publish(std::slice::from_ref(&ev)).await?;
        tracing::info!(case = %case, application = %application_id, service = %service, event = kind.as_str(), event_id = ev.event_id(), "Step published");
        Ok(accepted.pop().unwrap_or(Accepted {
            event_id: ev.event_id().to_owned(),
            ack: None,
            outbox_seq: None,
        }))
    }

    /// Publishes the service standards, one event each, with deterministic
    /// ids (re-publishing an unchanged standard is a no-op; see
    /// [`crate::catalogue::standard_event_id`]), whether or not they were
    /// published before. [`crate::run()`] publishes only what changed, with
    /// [`crate::catalogue::publish_standard_changes`].
    pub async fn publish_standards(
        &self,
        standards: &[ServiceStandardSpec],
    ) -> Result<Vec<Accepted>, KitError> {
        let mut accepted = Vec::with_capacity(standards.len());
        for spec in standards {
            let ev = spec.to_event(&self.builder)?;
            let mut a = self.publish(std::slice::from_ref(&ev)).await?;
            let duplicate = a.first().and_then(|a| a.ack.as_ref()).is_some_and(|ack| ack.duplicate);
            tracing::info!(
                service = %spec.service,
                version = spec.version,
                event_id = ev.event_id(),
                duplicate,
                "Service standard published"
            );
            accepted.append(&mut a);
        }
        Ok(accepted)
    }
}

#[cfg(test)]
mod tests {
    use mpp_core::ids::AgencyId;
    use mpp_proto::v1::envelope::Body;

    use super::*;
    use crate::event::SystemClock;
    use crate::ids::new_application_id;
    use crate::testing::MemoryPublisher;

    fn agency(publisher: Arc<MemoryPublisher>) -> Agency {
        let builder = EventBuilder::new(
            RegionCode::parse("1771").unwrap(),
            AgencyId::parse("dukcapil").unwrap(),
            Arc::new(SystemClock),
        );
        Agency::new(builder, publisher, PinPepper::from_bytes(b"test-pepper-0123456789").unwrap())
    }

    fn kk() -> ServiceId {
        ServiceId::parse("kk").unwrap()
    }

    fn officer() -> OfficerId {
        OfficerId::parse("ptg-1").unwrap()
    }

    #[tokio::test]
    async fn a_new_case_publishes_case_opened_then_application_filed() {
        let publisher = Arc::new(MemoryPublisher::new());
        let a = agency(publisher.clone());
        let app = new_application_id("DKC-KK").unwrap();
        let filed =
            a.file_application(&kk(), None, app.clone(), &officer(), vec!["KK lama".into()]).await.unwrap();
        let pin = filed.pin.clone().unwrap();
        let events = publisher.events();
        assert_eq!(events.len(), 2);
        assert_eq!(
            filed.accepted.iter().map(|x| x.event_id.as_str()).collect::<Vec<_>>(),
            vec![events[0].event_id(), events[1].event_id()]
        );
        let case_id = filed.tracking_number.to_string();
        match &events[0].envelope().body {
            Some(Body::CaseOpened(o)) => {
                let expected = pin_verifier(
                    &PinPepper::from_bytes(b"test-pepper-0123456789").unwrap(),
                    &filed.tracking_number,
                    &pin,
                );
                assert_eq!(o.pin_verifier, expected.to_vec());
                assert!(!o.pin_verifier.windows(pin.expose().len()).any(|w| w == pin.expose().as_bytes()));
            }
            other => panic!("first event is {other:?}"),
        }
        assert_eq!(events[0].envelope().case_id, case_id);
        assert!(matches!(events[1].envelope().body, Some(Body::ApplicationFiled(_))));
        assert_eq!(events[1].envelope().case_id, case_id);
        assert_eq!(events[1].envelope().application_id, app.as_str());
    }

    #[tokio::test]
    async fn open_case_publishes_only_case_opened_with_both_hashes() {
        let publisher = Arc::new(MemoryPublisher::new());
        let a = agency(publisher.clone());
        let case = TrackingNumber::new(a.region(), 7).unwrap();
        let (pin, accepted) = a.open_case(&kk(), case, &officer(), vec![9; 32]).await.unwrap();
        let events = publisher.events();
        assert_eq!(events.len(), 1);
        assert_eq!(accepted.event_id, events[0].event_id());
        assert_eq!(events[0].envelope().case_id, case.to_string());
        assert!(events[0].envelope().application_id.is_empty());
        match &events[0].envelope().body {
            Some(Body::CaseOpened(o)) => {
                let pepper = PinPepper::from_bytes(b"test-pepper-0123456789").unwrap();
                assert_eq!(o.pin_verifier, pin_verifier(&pepper, &case, &pin).to_vec());
                assert_eq!(o.nik_keyed_hash, vec![9; 32]);
            }
            other => panic!("{other:?}"),
        }
        // An oversized hash is refused by the validation gate, nothing published.
        let err = a.open_case(&kk(), case, &officer(), vec![0; 65]).await.unwrap_err();
        assert!(matches!(err, KitError::Event(_)), "{err:?}");
        assert_eq!(publisher.events().len(), 1);
    }

    #[tokio::test]
    async fn open_case_with_publishes_the_extra_events_after_case_opened_in_one_call() {
        let publisher = Arc::new(MemoryPublisher::new());
        let a = agency(publisher.clone());
        let case = TrackingNumber::new(a.region(), 8).unwrap();
        let extra = a
            .builder()
            .build(
                &kk(),
                Target::Case(case),
                &officer(),
                EventBody::PersonalDataSealed {
                    key_id: vec![1; 16],
                    nonce: vec![2; 12],
                    ciphertext: vec![3; 32],
                },
            )
            .unwrap();
        let (_pin, accepted) = a
            .open_case_with(&kk(), case, &officer(), vec![9; 32], std::slice::from_ref(&extra))
            .await
            .unwrap();
        let events = publisher.events();
        assert_eq!(events.len(), 2);
        assert!(matches!(events[0].envelope().body, Some(Body::CaseOpened(_))));
        assert_eq!(events[1], extra);
        assert_eq!(
            accepted.iter().map(|x| x.event_id.as_str()).collect::<Vec<_>>(),
            vec![events[0].event_id(), extra.event_id()]
        );
        // A failure of the extra event fails the call.
        let b = agency(Arc::new(MemoryPublisher::failing_after(1)));
        assert!(b.open_case_with(&kk(), case, &officer(), vec![], &[extra]).await.is_err());
    }

    #[tokio::test]
    async fn an_existing_case_gets_only_the_application() {
        let publisher = Arc::new(MemoryPublisher::new());
        let a = agency(publisher.clone());
        let case = allocate_tracking_number(a.region());
        let app = new_application_id("DKC-KK").unwrap();
        let filed = a.file_application(&kk(), Some(case), app, &officer(), vec![]).await.unwrap();
        assert_eq!(filed.pin, None);
        assert_eq!(filed.tracking_number, case);
        assert_eq!(publisher.events().len(), 1);
    }

    #[tokio::test]
    async fn a_failure_after_the_first_event_names_what_was_published() {
        let publisher = Arc::new(MemoryPublisher::failing_after(1));
        let a = agency(publisher.clone());
        let app = new_application_id("DKC-KK").unwrap();
        let err = a.file_application(&kk(), None, app, &officer(), vec![]).await.unwrap_err();
        let published = publisher.events();
        assert_eq!(published.len(), 1);
        match err {
            KitError::Publish(e) => assert_eq!(e.accepted_before, vec![published[0].event_id().to_owned()]),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_invalid_step_publishes_nothing() {
        let publisher = Arc::new(MemoryPublisher::new());
        let a = agency(publisher.clone());
        let case = allocate_tracking_number(a.region());
        let app = new_application_id("DKC-KK").unwrap();
        let err = a
            .step(
                &kk(),
                case,
                app,
                &officer(),
                EventBody::Rejected { reason_code: String::new(), reason: String::new() },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, KitError::Event(_)), "{err:?}");
        assert!(publisher.events().is_empty());
    }
}
