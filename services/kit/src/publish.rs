//! Publishing events: the [`Publisher`] seam and JetStream behind it.
//!
//! [`JetStreamPublisher`] sends each event with `Nats-Msg-Id` = event id and
//! `Nats-Expected-Stream` = the events stream, and resolves only when the
//! PubAck arrives. A transient failure is retried a bounded number of times
//! with the same message id, so a retry of a message that was in fact stored
//! is recognised by JetStream's duplicate window and acknowledged as a
//! duplicate instead of being stored twice.
//!
//! [`crate::outbox::OutboxPublisher`] is the other implementation: it accepts
//! an event once it is durably in the service's outbox and publishes it in
//! the background. RPC implementations only see the trait.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, context::ContextBuilder};
use bytes::Bytes;
use mpp_core::ReasonCode;
use mpp_proto::v1 as pb;
use prost::Message as _;

use crate::event::OutgoingEvent;
use crate::stream::STREAM_NAME;

/// How long one publish attempt waits for its PubAck, in milliseconds. Also
/// the timeout of the JetStream API requests made through the same context
/// (stream bootstrap).
pub const PUBACK_TIMEOUT_MS: u64 = 3_000;

/// Most attempts to publish one event (the first plus the retries).
pub const PUBLISH_ATTEMPTS_MAX: u32 = 3;

/// Wait before the first retry, in milliseconds; doubled before each further
/// retry. With [`PUBACK_TIMEOUT_MS`] this bounds one event to about
/// 3 × 3 000 + 200 + 400 ms ≈ 9.6 s.
pub const PUBLISH_RETRY_BACKOFF_MS: u64 = 200;

/// Most events one call may publish (one RPC produces one or two).
pub const EVENTS_PER_CALL_MAX: usize = 8;

/// What JetStream acknowledged for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubAckInfo {
    /// The stream that stored it.
    pub stream: String,
    /// Its stream sequence (the original one when `duplicate`).
    pub stream_seq: u64,
    /// JetStream had already stored a message with this `Nats-Msg-Id` within
    /// the duplicate window and did not store it again.
    pub duplicate: bool,
}

/// One event accepted by a [`Publisher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The event id.
    pub event_id: String,
    /// The PubAck, when the event is already in JetStream. `None` for a
    /// publisher that accepts into a durable outbox and publishes later.
    pub ack: Option<PubAckInfo>,
    /// The event's outbox sequence, when it was accepted into a durable
    /// outbox (the event is flushed to disk under this key).
    pub outbox_seq: Option<u64>,
}

pub use crate::error::{PublishError, PublishOutcome};

/// The future returned by [`Publisher::publish_all`].
pub type PublishFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<Accepted>, PublishError>> + Send + 'a>>;

/// Accepts events for delivery to the hub.
pub trait Publisher: Send + Sync + fmt::Debug {
    /// Publishes `events` in order, each only after the previous one was
    /// accepted, and resolves once all are accepted. On failure nothing after
    /// the failed event is attempted; [`PublishError::accepted_before`] lists
    /// what went out. At most [`EVENTS_PER_CALL_MAX`] events.
    fn publish_all<'a>(&'a self, events: &'a [OutgoingEvent]) -> PublishFuture<'a>;
}

pub(crate) fn too_many(events: &[OutgoingEvent]) -> Option<PublishError> {
    (events.len() > EVENTS_PER_CALL_MAX).then(|| PublishError {
        reason: ReasonCode::PublishFailed,
        event_id: events.first().map(|e| e.event_id().to_owned()).unwrap_or_default(),
        outcome: PublishOutcome::NotStored,
        attempts: 0,
        last_error: format!("{} events in one call, more than {EVENTS_PER_CALL_MAX}", events.len()),
        accepted_before: Vec::new(),
    })
}

/// Publishes to NATS JetStream and awaits each PubAck.
#[derive(Debug, Clone)]
pub struct JetStreamPublisher {
    js: jetstream::Context,
    stream: String,
}

impl JetStreamPublisher {
    /// A publisher on `client` for the stream [`STREAM_NAME`].
    pub fn new(client: async_nats::Client) -> Self {
        Self::with_stream(client, STREAM_NAME)
    }

    /// A publisher for a differently named events stream (e.g. one stream
    /// per province). Messages carry `Nats-Expected-Stream` = `stream`, so
    /// JetStream refuses them if another stream captures the subject.
    pub fn with_stream(client: async_nats::Client, stream: impl Into<String>) -> Self {
        let js = ContextBuilder::new().timeout(Duration::from_millis(PUBACK_TIMEOUT_MS)).build(client);
        Self { js, stream: stream.into() }
    }

    /// The JetStream context (for [`crate::stream::ensure_stream`]).
    pub fn context(&self) -> &jetstream::Context {
        &self.js
    }

    /// Publishes one envelope on `subject` with `Nats-Msg-Id` = its event id
    /// and waits for the PubAck, retrying transient failures (timeouts, a
    /// broken connection, no stream responding, too many acks pending) up to
    /// [`PUBLISH_ATTEMPTS_MAX`] attempts with the same message id.
    #[tracing::instrument(skip(self, envelope), fields(event_id = %envelope.event_id))]
    pub async fn publish(&self, subject: &str, envelope: &pb::Envelope) -> Result<PubAckInfo, PublishError> {
        let event_id = envelope.event_id.clone();
        let payload = Bytes::from(envelope.encode_to_vec());
        let mut outcome = PublishOutcome::NotStored;
        let mut backoff = Duration::from_millis(PUBLISH_RETRY_BACKOFF_MS);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut message = PublishMessage::build()
                .payload(payload.clone())
                .message_id(&event_id)
                .expected_stream(&self.stream);
            // The RPC's trace, as the outbox's relay sends it (crate::trace).
            if let Some(t) = crate::trace::current() {
                message = message.header(mpp_edge::trace::TRACEPARENT_HEADER, t.to_string().as_str());
            }
            let result = match self.js.send_publish(subject.to_owned(), message).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            let err = match result {
                Ok(ack) => {
                    tracing::debug!(stream_seq = ack.sequence, duplicate = ack.duplicate, "Event published");
                    return Ok(PubAckInfo {
                        stream: ack.stream,
                        stream_seq: ack.sequence,
                        duplicate: ack.duplicate,
                    });
                }
                Err(e) => e,
            };
            let kind = err.kind();
            if matches!(kind, PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe) {
                outcome = PublishOutcome::Unknown;
            }
            let transient = matches!(
                kind,
                PublishErrorKind::TimedOut
                    | PublishErrorKind::BrokenPipe
                    | PublishErrorKind::StreamNotFound
                    | PublishErrorKind::MaxAckPending
            );
            if !transient || attempt >= PUBLISH_ATTEMPTS_MAX {
                tracing::error!(attempt, error = %err, "Event publish failed");
                return Err(PublishError {
                    reason: ReasonCode::PublishFailed,
                    event_id,
                    outcome,
                    attempts: attempt,
                    last_error: err.to_string(),
                    accepted_before: Vec::new(),
                });
            }
            tracing::warn!(attempt, error = %err, retry_in_ms = backoff.as_millis() as u64, "Event publish failed, retrying");
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
        }
    }
}

impl Publisher for JetStreamPublisher {
    fn publish_all<'a>(&'a self, events: &'a [OutgoingEvent]) -> PublishFuture<'a> {
        Box::pin(async move {
            if let Some(err) = too_many(events) {
                return Err(err);
            }
            let mut accepted = Vec::with_capacity(events.len());
            for ev in events {
                match self.publish(ev.subject(), ev.envelope()).await {
                    Ok(ack) => accepted.push(Accepted {
                        event_id: ev.event_id().to_owned(),
                        ack: Some(ack),
                        outbox_seq: None,
                    }),
                    Err(mut err) => {
                        err.accepted_before = accepted.into_iter().map(|a| a.event_id).collect();
                        return Err(err);
                    }
                }
            }
            Ok(accepted)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_says_what_may_be_stored() {
        let mut e = PublishError {
            reason: ReasonCode::PublishFailed,
            event_id: "e2".into(),
            outcome: PublishOutcome::Unknown,
            attempts: 3,
            last_error: "timed out".into(),
            accepted_before: vec!["e1".into()],
        };
        let text = e.to_string();
        assert!(text.contains("e2 may or may not have been stored"), "{text}");
        assert!(text.contains("earlier events of this call were published: e1"), "{text}");
        e.outcome = PublishOutcome::NotStored;
        e.accepted_before.clear();
        let text = e.to_string();
        assert!(text.contains("e2 was not stored after 3 attempt(s)"), "{text}");
        assert!(text.contains("no earlier event"), "{text}");
    }
}
