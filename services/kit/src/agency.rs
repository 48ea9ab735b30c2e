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
use crate::ids::Pin;
use crate::publish::{Accepted, Publisher};
use crate::walk_in::{WalkInError, WalkInOpener};

/// The result of filing an application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filed {
    /// The case (new or existing).
    pub tracking_number: TrackingNumber,
    /// The citizen's lookup PIN, when the front office opened a new case for
    /// this filing. Hand it to the caller once; the agency keeps no copy.
    pub pin: Option<Pin>,
    /// The application id.
    pub application_id: ApplicationId,
    /// The events the call led to, in order: the front office's
    /// `case_opened` first when it opened a case (its receipt carries only
    /// the event id: it is durably in the front office's outbox, not this
    /// service's, so this service's verdict feed never hears of it), then
    /// this service's `application_filed`.
    pub accepted: Vec<Accepted>,
}

/// One agency at one MPP: its event builder, its publisher and, if
/// configured, the front office that opens its walk-in citizens' cases.
/// It holds no PIN pepper: only the front office computes PIN verifiers.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Agency {
    builder: EventBuilder,
    publisher: Arc<dyn Publisher>,
    walk_in: Option<Arc<dyn WalkInOpener>>,
}

impl Agency {
    /// An agency handle without a front office: a filing without a case is
    /// refused (`FRONT_OFFICE_NOT_CONFIGURED`).
    pub fn new(builder: EventBuilder, publisher: Arc<dyn Publisher>) -> Self {
        Self { builder, publisher, walk_in: None }
    }

    /// This agency with `opener` opening its walk-in citizens' cases.
    pub fn with_walk_in(mut self, opener: Arc<dyn WalkInOpener>) -> Self {
        self.walk_in = Some(opener);
        self
    }

    /// The MPP's region code.
    pub fn region(&self) -> RegionCode {
        self.builder.region()
    }

    /// The event builder.
    pub fn builder(&self) -> &EventBuilder {
        &self.builder
    }

    /// Publishes one event; its receipt.
    async fn publish_one(&self, ev: &OutgoingEvent) -> Result<Accepted, KitError> {
        let mut accepted = self.publish(std::slice::from_ref(ev)).await?;
        // `publish` returned Ok, so the event is accepted; a publisher
        // returns one receipt per event, the fallback only covers one that does not.
        Ok(accepted.pop().unwrap_or(Accepted {
            event_id: ev.event_id().to_owned(),
            ack: None,
            outbox_seq: None,
        }))
    }

    async fn publish(&self, events: &[OutgoingEvent]) -> Result<Vec<Accepted>, KitError> {
        let accepted = self.publisher.publish_all(events).await?;
        crate::verdicts::note_accepted(accepted.iter().map(|a| a.event_id.as_str()));
        Ok(accepted)
    }

    /// Files an application for `service` into `case`. With `case` = `None`
    /// (a walk-in citizen) the front office opens a new case first
    /// ([`WalkInOpener`]: it allocates the tracking number and the PIN and
    /// publishes `case_opened` as itself), then `application_filed` is
    /// published into it; the PIN is returned to hand to the citizen.
    ///
    /// The filing is checked before the front office is asked, so a filing
    /// the hub would refuse opens no case. Without a front office, or when
    /// it cannot be reached or refuses, the call fails
    /// ([`KitError::WalkIn`]) and nothing is published. Should publishing
    /// the filing fail after the opening, the case stays opened and empty
    /// (no lookup shows an application; the citizen can be given the
    /// number and PIN to file again).
    pub async fn file_application(
        &self,
        service: &ServiceId,
        case: Option<TrackingNumber>,
        application_id: ApplicationId,
        officer: &OfficerId,
        documents: Vec<String>,
    ) -> Result<Filed, KitError> {
        let filing = |t: TrackingNumber| {
            self.builder.build(
                service,
                Target::Application(t, application_id.clone()),
                officer,
                EventBody::ApplicationFiled { documents: documents.clone() },
            )
        };
        let (tracking_number, opened) = match case {
            Some(t) => (t, None),
            None => {
                // The filing, built for a stand-in number of this region,
                // passes the hub's validation before a case is opened.
                let stand_in = TrackingNumber::new(self.region(), 0).ok_or_else(|| {
                    KitError::Event(mpp_core::Rejection::new(
                        mpp_core::ReasonCode::MalformedTrackingNumber,
                        "no tracking number of this region",
                    ))
                })?;
                filing(stand_in)?;
                let opener = self.walk_in.as_ref().ok_or(WalkInError::NotConfigured)?;
                let opened = opener.open(self.region(), officer).await.inspect_err(|e| {
                    tracing::warn!(service = %service, error = %e, "Walk-in case not opened; nothing filed");
                })?;
                (opened.tracking_number, Some(opened))
            }
        };
        let ev = filing(tracking_number)?;
        let published = self.publish(std::slice::from_ref(&ev)).await?;
        let mut accepted = Vec::with_capacity(2);
        if let Some(o) = &opened {
            accepted.push(Accepted { event_id: o.event_id.clone(), ack: None, outbox_seq: None });
        }
        accepted.extend(published);
        tracing::info!(
            case = %tracking_number,
            application = %application_id,
            service = %service,
            case_opened = opened.is_some(),
            case_opened_event_id = opened.as_ref().map_or("", |o| o.event_id.as_str()),
            "Application filed"
        );
        Ok(Filed { tracking_number, pin: opened.map(|o| o.pin), application_id, accepted })
    }

    /// Publishes events the caller built with [`Agency::builder`], in order,
    /// in one call to the publisher (one outbox batch).
    pub async fn publish_events(&self, events: &[OutgoingEvent]) -> Result<Vec<Accepted>, KitError> {
        self.publish(events).await
    }

    /// Publishes one step of an application (documents requested, review
    /// started, issued, ...) under a fresh event id.
    pub async fn step(
        &self,
        service: &ServiceId,
        case: TrackingNumber,
        application_id: ApplicationId,
        officer: &OfficerId,
        body: EventBody,
    ) -> Result<Accepted, KitError> {
        self.step_with_id(uuid::Uuid::now_v7(), service, case, application_id, officer, body).await
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
        let accepted = self.publish_one(&ev).await?;
        tracing::info!(case = %case, application = %application_id, service = %service, event = kind.as_str(), event_id = ev.event_id(), "Step published");
        Ok(accepted)
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
    use crate::testing::{random_tracking_number, MemoryFrontOffice, MemoryPublisher};

    fn builder() -> EventBuilder {
        EventBuilder::new(
            RegionCode::parse("1771").unwrap(),
            AgencyId::parse("dukcapil").unwrap(),
            Arc::new(SystemClock),
        )
    }

    fn agency(publisher: Arc<MemoryPublisher>) -> (Agency, Arc<MemoryFrontOffice>) {
        let front = Arc::new(MemoryFrontOffice::new());
        (Agency::new(builder(), publisher).with_walk_in(front.clone()), front)
    }

    fn kk() -> ServiceId {
        ServiceId::parse("kk").unwrap()
    }

    fn officer() -> OfficerId {
        OfficerId::parse("ptg-1").unwrap()
    }

    #[tokio::test]
    async fn a_walk_in_has_its_case_opened_by_the_front_office_and_files_into_it() {
        let publisher = Arc::new(MemoryPublisher::new());
        let (a, front) = agency(publisher.clone());
        let app = new_application_id("DKC-KK").unwrap();
        let filed =
            a.file_application(&kk(), None, app.clone(), &officer(), vec!["KK lama".into()]).await.unwrap();
        let opened = front.opened();
        assert_eq!(opened.len(), 1, "one case opened at the front office");
        let (case, asked_by) = &opened[0];
        assert_eq!(asked_by, "ptg-1");
        assert_eq!(filed.tracking_number, case.tracking_number);
        assert_eq!(filed.pin.as_ref(), Some(&case.pin), "the front office's PIN is handed back");
        // The agency publishes only its filing: no case_opened, no verifier.
        let events = publisher.events();
        assert_eq!(events.len(), 1);
        assert!(matches!(events[0].envelope().body, Some(Body::ApplicationFiled(_))));
        assert_eq!(events[0].envelope().case_id, case.tracking_number.to_string());
        assert_eq!(events[0].envelope().application_id, app.as_str());
        assert_eq!(
            filed.accepted.iter().map(|x| x.event_id.as_str()).collect::<Vec<_>>(),
            vec![case.event_id.as_str(), events[0].event_id()],
            "the front office's opening, then the filing"
        );
    }

    #[tokio::test]
    async fn a_walk_in_without_a_front_office_is_refused_and_publishes_nothing() {
        let publisher = Arc::new(MemoryPublisher::new());
        let a = Agency::new(builder(), publisher.clone());
        let app = new_application_id("DKC-KK").unwrap();
        let err = a.file_application(&kk(), None, app, &officer(), vec![]).await.unwrap_err();
        assert!(matches!(err, KitError::WalkIn(WalkInError::NotConfigured)), "{err:?}");
        assert_eq!(err.reason_code(), mpp_core::ReasonCode::FrontOfficeNotConfigured);
        assert!(publisher.events().is_empty());
        // Filing into an existing case needs no front office.
        let case = random_tracking_number(a.region());
        let app = new_application_id("DKC-KK").unwrap();
        a.file_application(&kk(), Some(case), app, &officer(), vec![]).await.unwrap();
        assert_eq!(publisher.events().len(), 1);
    }

    #[tokio::test]
    async fn a_front_office_that_refuses_or_is_down_fails_the_call_and_nothing_is_published() {
        for error in [
            WalkInError::Unavailable("connection refused".into()),
            WalkInError::Refused {
                code: tonic::Code::PermissionDenied,
                reason: "SCOPE_MISSING".into(),
                message: "m".into(),
            },
        ] {
            let publisher = Arc::new(MemoryPublisher::new());
            let front = Arc::new(MemoryFrontOffice::refusing(error.clone()));
            let a = Agency::new(builder(), publisher.clone()).with_walk_in(front);
            let app = new_application_id("DKC-KK").unwrap();
            let err = a.file_application(&kk(), None, app, &officer(), vec![]).await.unwrap_err();
            assert!(matches!(&err, KitError::WalkIn(e) if *e == error), "{err:?}");
            assert!(publisher.events().is_empty());
        }
    }

    #[tokio::test]
    async fn a_filing_the_hub_would_refuse_opens_no_case() {
        let publisher = Arc::new(MemoryPublisher::new());
        let (a, front) = agency(publisher.clone());
        let app = new_application_id("DKC-KK").unwrap();
        let err =
            a.file_application(&kk(), None, app, &officer(), vec!["x".repeat(100_000)]).await.unwrap_err();
        assert!(matches!(err, KitError::Event(_)), "{err:?}");
        assert!(front.opened().is_empty(), "no case opened for a filing that cannot be published");
        assert!(publisher.events().is_empty());
    }

    #[tokio::test]
    async fn an_existing_case_gets_only_the_application() {
        let publisher = Arc::new(MemoryPublisher::new());
        let (a, front) = agency(publisher.clone());
        let case = random_tracking_number(a.region());
        let app = new_application_id("DKC-KK").unwrap();
        let filed = a.file_application(&kk(), Some(case), app, &officer(), vec![]).await.unwrap();
        assert_eq!(filed.pin, None);
        assert_eq!(filed.tracking_number, case);
        assert_eq!(publisher.events().len(), 1);
        assert!(front.opened().is_empty());
    }

    #[tokio::test]
    async fn a_failed_filing_after_the_opening_names_what_failed() {
        let publisher = Arc::new(MemoryPublisher::failing_after(0));
        let (a, front) = agency(publisher.clone());
        let app = new_application_id("DKC-KK").unwrap();
        let err = a.file_application(&kk(), None, app, &officer(), vec![]).await.unwrap_err();
        assert_eq!(front.opened().len(), 1, "the case was opened before the filing failed");
        assert!(publisher.events().is_empty());
        match err {
            KitError::Publish(e) => assert!(e.accepted_before.is_empty()),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_invalid_step_publishes_nothing() {
        let publisher = Arc::new(MemoryPublisher::new());
        let (a, _) = agency(publisher.clone());
        let case = random_tracking_number(a.region());
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
