//! Building and publishing raw event envelopes, the way an agency that
//! integrates directly with NATS would: protobuf `mpp.v1.Envelope` on
//! `mpp.events.<agency_id>.<service_id>` with `Nats-Msg-Id` = event id.

use anyhow::{anyhow, Context, Result};
use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::jetstream::publish::PublishAck;
use bytes::Bytes;
use mpp_core::{RegionCode, TrackingNumber};
use mpp_proto::v1::envelope::Body;
use mpp_proto::v1::{self as pb, Envelope};
use prost::Message;

use crate::rng::Rng;

/// The schema version the hub understands.
pub const SCHEMA_VERSION: u32 = 1;

/// A fresh event id (UUIDv7, canonical lowercase text).
pub fn event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The canonical text of a valid tracking number.
pub fn tracking_number(region: u16, serial: u64) -> Result<String> {
    let region = RegionCode::parse(&format!("{region:04}")).map_err(|e| anyhow!("{e}"))?;
    let tn = TrackingNumber::new(region, serial).ok_or_else(|| anyhow!("serial {serial} too large"))?;
    Ok(tn.to_string())
}

/// The same tracking number with its check digit changed, so it no longer verifies.
pub fn with_bad_check_digit(tracking_number: &str) -> String {
    let mut s = tracking_number.to_owned();
    if let Some(last) = s.pop() {
        let d = last.to_digit(10).unwrap_or(0);
        s.push(char::from_digit((d + 1) % 10, 10).unwrap_or('0'));
    }
    s
}

/// Now, in Unix milliseconds (an agency's `occurred_at_ms`).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The subject of an agency's service.
pub fn subject(agency: &str, service: &str) -> String {
    format!("mpp.events.{agency}.{service}")
}

/// The protobuf encoding of an envelope.
pub fn encode(env: &Envelope) -> Bytes {
    Bytes::from(env.encode_to_vec())
}

/// Builds envelopes for one agency service in one region.
#[derive(Debug, Clone)]
pub struct EventFactory {
    /// Agency id, e.g. `dukcapil`.
    pub agency: String,
    /// Service id, e.g. `kk`.
    pub service: String,
    /// Region code, e.g. `1771`.
    pub region: String,
    /// Pseudonymous officer id.
    pub officer: String,
}

impl EventFactory {
    /// A factory for `agency`/`service` in `region`.
    pub fn new(agency: &str, service: &str, region: &str) -> Self {
        Self {
            agency: agency.to_owned(),
            service: service.to_owned(),
            region: region.to_owned(),
            officer: "petugas-e2e-01".to_owned(),
        }
    }

    /// The subject this factory's events go to.
    pub fn subject(&self) -> String {
        subject(&self.agency, &self.service)
    }

    fn base(&self, case_id: &str, application_id: &str, body: Body) -> Envelope {
        Envelope {
            schema_version: SCHEMA_VERSION,
            event_id: event_id(),
            case_id: case_id.to_owned(),
            region_code: self.region.clone(),
            agency_id: self.agency.clone(),
            service_id: self.service.clone(),
            application_id: application_id.to_owned(),
            occurred_at_ms: now_ms(),
            officer: self.officer.clone(),
            body: Some(body),
            signature: None,
        }
    }

    /// The service standard (version `version`), which makes the service known.
    pub fn standard(&self, version: u32) -> Envelope {
        self.base(
            "",
            "",
            Body::ServiceStandardPublished(pb::ServiceStandardPublished {
                name_id: format!("Layanan uji {}", self.service),
                name_en: format!("Test service {}", self.service),
                completion_working_days: 5,
                fee_idr: 0,
                requirements: vec!["KTP-el".to_owned()],
                fiktif_positif: false,
                version,
                collection: None,
            }),
        )
    }

    /// Opens case `tracking_number` with lookup PIN [`crate::pin::TEST_PIN`]
    /// (its verifier under [`crate::pin::TEST_PIN_PEPPER`]).
    pub fn case_opened(&self, tracking_number: &str) -> Envelope {
        let pin_verifier = crate::pin::verifier(tracking_number, crate::pin::TEST_PIN).unwrap_or_default();
        self.base(
            tracking_number,
            "",
            Body::CaseOpened(pb::CaseOpened { pin_verifier, nik_keyed_hash: vec![9u8; 32] }),
        )
    }

    /// An application event.
    pub fn app_event(&self, tracking_number: &str, application_id: &str, body: Body) -> Envelope {
        self.base(tracking_number, application_id, body)
    }
}

/// Event bodies with plausible contents.
pub mod body {
    use super::*;

    /// Application filed with documents.
    pub fn filed() -> Body {
        Body::ApplicationFiled(pb::ApplicationFiled { documents: vec!["surat pengantar RT/RW".to_owned()] })
    }
    /// Documents requested at a counter.
    pub fn documents_requested() -> Body {
        Body::DocumentsRequested(pb::DocumentsRequested {
            documents: vec!["akta nikah".to_owned()],
            counter: "Loket 3".to_owned(),
            note: "fotokopi dilegalisir".to_owned(),
        })
    }
    /// Documents received.
    pub fn documents_received() -> Body {
        Body::DocumentsReceived(pb::DocumentsReceived { documents: vec!["akta nikah".to_owned()] })
    }
    /// Review started.
    pub fn review_started() -> Body {
        Body::ReviewStarted(pb::ReviewStarted {})
    }
    /// Fee assessed.
    pub fn fee_assessed() -> Body {
        Body::FeeAssessed(pb::FeeAssessed {
            amount_idr: 50_000,
            payment_channel: "Bank Bengkulu".to_owned(),
            billing_code: "820001234567".to_owned(),
            due_at_ms: 0,
        })
    }
    /// Payment received.
    pub fn payment_received() -> Body {
        Body::PaymentReceived(pb::PaymentReceived {
            amount_idr: 50_000,
            payment_reference: "NTPN-0001".to_owned(),
        })
    }
    /// Appointment scheduled.
    pub fn scheduled() -> Body {
        Body::AppointmentScheduled(pb::AppointmentScheduled {
            kind: "interview".to_owned(),
            at_ms: now_ms() + 86_400_000,
            place: "MPP Kota Bengkulu, Loket 2".to_owned(),
        })
    }
    /// Issued.
    pub fn issued() -> Body {
        Body::Issued(pb::Issued { document_number: "REG-0001".to_owned() })
    }
    /// Collected.
    pub fn collected() -> Body {
        Body::Collected(pb::Collected {})
    }
    /// Rejected by the agency.
    pub fn rejected() -> Body {
        Body::Rejected(pb::Rejected {
            reason_code: "DATA_TIDAK_SESUAI".to_owned(),
            reason: "Data tidak sesuai".to_owned(),
        })
    }
    /// Withdrawn.
    pub fn withdrawn() -> Body {
        Body::Withdrawn(pb::Withdrawn { reason: "dibatalkan pemohon".to_owned() })
    }
}

/// One application's journey through one case: the envelopes in order and
/// what the hub must show afterwards.
#[derive(Debug, Clone)]
pub struct Journey {
    /// The case's tracking number.
    pub tracking_number: String,
    /// The application id.
    pub application_id: String,
    /// Envelopes in publishing order (case opened first).
    pub events: Vec<Envelope>,
    /// The application's final state (snake_case, as the JSON API shows it).
    pub final_state: &'static str,
    /// Timeline items the application ends with (every accepted application event).
    pub timeline_len: usize,
}

/// A random valid journey: the case is opened, one application is filed and
/// taken through one of several realistic paths.
pub fn random_journey(
    rng: &mut Rng,
    factory: &EventFactory,
    tracking_number: &str,
    application_id: &str,
) -> Journey {
    use body::*;
    let (steps, final_state): (Vec<Body>, &'static str) = match rng.below(5) {
        0 => (
            vec![
                filed(),
                review_started(),
                fee_assessed(),
                payment_received(),
                scheduled(),
                issued(),
                collected(),
            ],
            "collected",
        ),
        1 => (
            vec![
                filed(),
                documents_requested(),
                documents_received(),
                review_started(),
                issued(),
                collected(),
            ],
            "collected",
        ),
        2 => (vec![filed(), review_started(), rejected()], "rejected"),
        3 => (vec![filed(), documents_requested(), withdrawn()], "withdrawn"),
        _ => (vec![filed(), review_started(), fee_assessed()], "awaiting_payment"),
    };
    let timeline_len = steps.len();
    let mut events = vec![factory.case_opened(tracking_number)];
    events.extend(steps.into_iter().map(|b| factory.app_event(tracking_number, application_id, b)));
    Journey {
        tracking_number: tracking_number.to_owned(),
        application_id: application_id.to_owned(),
        events,
        final_state,
        timeline_len,
    }
}

/// Publishes `payload` on `subject` and waits for the PubAck. With
/// `msg_id = Some(id)` the `Nats-Msg-Id` header is set (JetStream's duplicate
/// window then drops a re-publish with the same id); `None` sends no header.
pub async fn publish(
    js: &async_nats::jetstream::Context,
    subject: &str,
    msg_id: Option<&str>,
    payload: Bytes,
) -> Result<PublishAck> {
    let mut msg = Publish::build().payload(payload);
    if let Some(id) = msg_id {
        msg = msg.message_id(id);
    }
    let ack = js
        .send_publish(subject.to_owned(), msg)
        .await
        .with_context(|| format!("publish on {subject}"))?
        .await
        .with_context(|| format!("PubAck for {subject}"))?;
    Ok(ack)
}

/// Publishes an envelope with `Nats-Msg-Id` = its event id.
pub async fn publish_envelope(js: &async_nats::jetstream::Context, env: &Envelope) -> Result<PublishAck> {
    publish(js, &subject(&env.agency_id, &env.service_id), Some(&env.event_id), encode(env)).await
}

/// The last sequence of the stream (0 when empty).
pub async fn stream_last_seq(js: &async_nats::jetstream::Context) -> Result<u64> {
    let mut stream = js.get_stream(crate::STREAM_NAME).await.context("get stream MPP_EVENTS")?;
    let info = stream.info().await.context("stream info")?;
    Ok(info.state.last_sequence)
}

/// The event ids a stream holds, read incrementally from sequence 1: each
/// message's `Nats-Msg-Id` header (or, without one, the event id in its
/// envelope), with the stream sequences it was stored at.
#[derive(Debug, Default, Clone)]
pub struct StreamIds {
    next_seq: u64,
    by_id: std::collections::BTreeMap<String, Vec<u64>>,
    without_id: Vec<u64>,
}

impl StreamIds {
    /// Nothing read yet.
    pub fn new() -> Self {
        Self { next_seq: 1, ..Self::default() }
    }

    /// Reads every message stored since the last call, up to the stream's
    /// current last sequence, which it returns.
    pub async fn read_to_end(&mut self, js: &async_nats::jetstream::Context) -> Result<u64> {
        let stream = js.get_stream(crate::STREAM_NAME).await.context("get stream MPP_EVENTS")?;
        let last = stream.get_info().await.context("stream info")?.state.last_sequence;
        self.next_seq = self.next_seq.max(1);
        while self.next_seq <= last {
            let seq = self.next_seq;
            let msg =
                stream.get_raw_message(seq).await.with_context(|| format!("get stream message {seq}"))?;
            let id = msg
                .headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.as_str().to_owned())
                .filter(|id| !id.is_empty())
                .or_else(|| {
                    Envelope::decode(msg.payload.as_ref())
                        .ok()
                        .map(|e| e.event_id)
                        .filter(|id| !id.is_empty())
                });
            match id {
                Some(id) => self.by_id.entry(id).or_default().push(seq),
                None => self.without_id.push(seq),
            }
            self.next_seq += 1;
        }
        Ok(last)
    }

    /// Messages read so far.
    pub fn messages(&self) -> u64 {
        self.next_seq.saturating_sub(1)
    }

    /// The stream sequences `event_id` was stored at (empty if none).
    pub fn seqs(&self, event_id: &str) -> &[u64] {
        self.by_id.get(event_id).map_or(&[], Vec::as_slice)
    }

    /// Whether the stream holds `event_id`.
    pub fn contains(&self, event_id: &str) -> bool {
        self.by_id.contains_key(event_id)
    }

    /// Those of `ids` the stream does not hold (yet).
    pub fn missing<'a>(&self, ids: &'a [String]) -> Vec<&'a String> {
        ids.iter().filter(|id| !self.contains(id)).collect()
    }

    /// Event ids stored more than once (JetStream's duplicate window missed a resend).
    pub fn stored_twice(&self) -> usize {
        self.by_id.values().filter(|seqs| seqs.len() > 1).count()
    }
}
