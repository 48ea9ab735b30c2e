//! Ingest: JetStream → ledger → sled, exactly once and in order.
//!
//! Two parts, connected by a bounded channel:
//! - the **writer thread** owns the [`Ledger`] (and so the only sled writer):
//!   it decides a batch, commits it as one atomic sled batch and flushes;
//! - the **ingest task** owns the JetStream subscription: it gathers a batch of
//!   up to `batch_max` ready messages, hands it to the writer, and only after
//!   the writer reports the batch durable does it ack (one `AckAll` for the
//!   batch's last message).
//!
//! On every (re)start the task recreates its durable consumer at the ledger's
//! checkpoint + 1, so the stream — not the consumer's memory — decides where
//! ingest resumes: if sled lost a flushed tail, the checkpoint rolled back
//! with it and those messages are simply read again. Messages at or below the
//! checkpoint (redeliveries) are acked and skipped by the ledger. A gap halts
//! ingest and readiness until an operator intervenes.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::{FutureExt, StreamExt};
use mpp_store::{Head, SledStore};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

use crate::health::{Health, NotReady};
use crate::ledger::{BatchOutcome, Ledger, LedgerError, RawMessage};
use crate::stream::{stream_config, STREAM_NAME, STREAM_SUBJECTS};

/// Batches queued for the writer thread beyond the one it is committing.
/// One is enough to overlap the next fetch with the current fsync.
pub const WRITER_QUEUE_BATCHES_MAX: usize = 1;

/// Most messages delivered to this hub and not yet acked. Bounds the memory
/// of in-flight messages: 2 × the largest batch.
pub const ACK_PENDING_MESSAGES_MAX: i64 = 8192;

/// How long JetStream waits for an ack before redelivering.
pub const ACK_WAIT: Duration = Duration::from_secs(60);

/// Pull request expiry: how long one pull waits for messages on an idle stream.
pub const PULL_EXPIRY: Duration = Duration::from_secs(5);

/// Idle heartbeat of the pull consumer (must be < `PULL_EXPIRY` / 2).
pub const PULL_HEARTBEAT: Duration = Duration::from_secs(2);

/// Backoff between reconnection attempts, doubling up to this cap.
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// First backoff.
pub const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(100);

/// Ingest settings.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// NATS URL.
    pub nats_url: String,
    /// Durable consumer name.
    pub consumer_name: String,
    /// Most messages per batch.
    pub batch_max: usize,
}

type WriterJob = (Vec<RawMessage>, oneshot::Sender<Result<BatchOutcome, LedgerError>>);

/// Handle of the writer thread.
#[derive(Debug)]
pub struct Writer {
    tx: mpsc::Sender<WriterJob>,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    /// Starts the writer thread owning `ledger`.
    pub fn spawn(mut ledger: Ledger<SledStore>) -> std::io::Result<Self> {
        let (tx, mut rx) = mpsc::channel::<WriterJob>(WRITER_QUEUE_BATCHES_MAX);
        let thread = std::thread::Builder::new().name("mpp-ledger-writer".into()).spawn(move || {
            while let Some((batch, reply)) = rx.blocking_recv() {
                let outcome = ledger.commit_batch(&batch);
                // The ingest task may have gone away (shutdown); nothing to do then.
                let _ = reply.send(outcome);
            }
            debug!("Ledger writer stopped");
        })?;
        Ok(Self { tx, thread })
    }

    /// Commits one batch, durably, and reports its outcome.
    pub async fn commit(&self, batch: Vec<RawMessage>) -> Result<BatchOutcome, IngestError> {
        let (reply_tx, reply_rx) = oneshot::channel();
        self.tx.send((batch, reply_tx)).await.map_err(|_| IngestError::WriterGone)?;
        reply_rx.await.map_err(|_| IngestError::WriterGone)?.map_err(IngestError::Ledger)
    }

    /// Stops the thread after the batches already queued.
    pub fn join(self) {
        drop(self.tx);
        if self.thread.join().is_err() {
            error!("Ledger writer thread panicked");
        }
    }
}

/// Why ingest stopped or paused.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// NATS connection, stream or consumer trouble; retried.
    #[error("NATS: {0}")]
    Nats(String),
    /// The ledger failed (store error); halts ingest.
    #[error("ledger: {0}")]
    Ledger(LedgerError),
    /// A stream sequence gap; halts ingest.
    #[error("stream sequence gap: expected {expected}, got {got}")]
    Gap {
        /// Expected sequence.
        expected: u64,
        /// Received sequence.
        got: u64,
    },
    /// The writer thread is gone.
    #[error("ledger writer stopped")]
    WriterGone,
}

fn nats_err(e: impl std::fmt::Display) -> IngestError {
    IngestError::Nats(e.to_string())
}

/// A delivery that skips past checkpoint + 1 is only a real gap if the
/// stream lacks the expected message. After a NATS restart a durable
/// consumer can resume beyond messages it had sent but the hub never
/// received (they would come back only after `ACK_WAIT`); that is a
/// retryable delivery hole: resubscribing at the checkpoint fills it.
async fn classify_gap(stream: &jetstream::stream::Stream, expected: u64, got: u64) -> IngestError {
    use async_nats::jetstream::stream::LastRawMessageErrorKind;
    match stream.get_raw_message(expected).await {
        Ok(_) => {
            warn!(
                expected,
                got, "Consumer skipped messages the stream holds; resubscribing at the checkpoint"
            );
            IngestError::Nats(format!("delivery skipped from {expected} to {got}; resubscribing"))
        }
        Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => {
            IngestError::Gap { expected, got }
        }
        Err(e) => nats_err(format!("checking stream sequence {expected} after a delivery gap: {e}")),
    }
}

/// Runs ingest until `shutdown` turns true or ingest halts (gap, store
/// failure). NATS trouble is retried with capped backoff, forever: the hub
/// keeps serving lookups meanwhile and reports not ready.
pub async fn run(
    cfg: IngestConfig,
    writer: Arc<Writer>,
    health: Arc<Health>,
    initial_head: Head,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), IngestError> {
    let mut head = initial_head;
    let mut backoff = RETRY_BACKOFF_MIN;
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let head_before = head;
        let result = consume(&cfg, &writer, &health, &mut head, &mut shutdown).await;
        if head.last_stream_seq > head_before.last_stream_seq {
            // Progress since the last failure: start the backoff afresh.
            backoff = RETRY_BACKOFF_MIN;
        }
        match result {
            Ok(()) => return Ok(()),
            Err(IngestError::Nats(e)) => {
                warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "NATS unavailable, retrying");
                health.set_not_ready(NotReady::NatsUnavailable { error: e });
            }
            Err(e @ IngestError::Gap { expected, got }) => {
                error!(expected, got, "Stream sequence gap: ingest halted, operator action needed");
                health.set_not_ready(NotReady::Gap { expected, got });
                return Err(e);
            }
            Err(e) => {
                error!(error = %e, "Ingest halted without acking the failed batch, operator action needed");
                health.set_not_ready(NotReady::StoreFailed { error: e.to_string() });
                return Err(e);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => {}
        }
        backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
    }
}

async fn consume(
    cfg: &IngestConfig,
    writer: &Writer,
    health: &Health,
    head: &mut Head,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), IngestError> {
    let client = async_nats::ConnectOptions::new()
        .name(format!("mpp-hub/{}", cfg.consumer_name))
        .connect(&cfg.nats_url)
        .await
        .map_err(nats_err)?;
    let js = jetstream::new(client);
    let stream = js.get_or_create_stream(stream_config()).await.map_err(nats_err)?;
    // Start exactly after the checkpoint, whatever the consumer remembered.
    match stream.delete_consumer(&cfg.consumer_name).await {
        Ok(_) => {}
        Err(e) if e.to_string().contains("not found") => {}
        Err(e) => return Err(nats_err(e)),
    }
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(cfg.consumer_name.clone()),
            description: Some("MPP Hub ingest; recreated at the hub's checkpoint on every start".into()),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: head.last_stream_seq + 1,
            },
            ack_policy: consumer::AckPolicy::All,
            ack_wait: ACK_WAIT,
            max_ack_pending: ACK_PENDING_MESSAGES_MAX,
            filter_subject: STREAM_SUBJECTS.to_owned(),
            ..Default::default()
        })
        .await
        .map_err(nats_err)?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(cfg.batch_max)
        .expires(PULL_EXPIRY)
        .heartbeat(PULL_HEARTBEAT)
        .messages()
        .await
        .map_err(nats_err)?;
    info!(stream = STREAM_NAME, consumer = %cfg.consumer_name, from_stream_seq = head.last_stream_seq + 1, "Ingest started");
    health.set_ready();

    loop {
        let first = tokio::select! {
            m = messages.next() => m,
            _ = shutdown.changed() => return Ok(()),
        };
        let Some(first) = first else { return Err(IngestError::Nats("message stream ended".into())) };
        let mut batch = vec![first.map_err(nats_err)?];
        while batch.len() < cfg.batch_max {
            match messages.next().now_or_never() {
                Some(Some(Ok(m))) => batch.push(m),
                Some(Some(Err(e))) => {
                    warn!(error = %e, "Pull error while gathering a batch; committing what arrived");
                    break;
                }
                Some(None) | None => break,
            }
        }
        let mut raws = Vec::with_capacity(batch.len());
        for m in &batch {
            let info = m.info().map_err(nats_err)?;
            let ns = info.published.unix_timestamp_nanos();
            raws.push(RawMessage {
                stream_seq: info.stream_sequence,
                stream_time_ns: i64::try_from(ns).unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX }),
                subject: m.subject.to_string(),
                payload: m.payload.clone(),
            });
        }
        let outcome = writer.commit(raws).await?;
        *head = outcome.head;
        health.set_head(outcome.head);
        debug!(
            accepted = outcome.accepted,
            rejected = outcome.rejected,
            duplicates = outcome.duplicates,
            skipped = outcome.skipped,
            last_seq = outcome.head.last_seq,
            "Batch committed"
        );
        if let Some(gap) = outcome.gap {
            return Err(classify_gap(&stream, gap.expected, gap.got).await);
        }
        // Durable: ack the batch. AckAll on the last message covers the rest.
        if let Some(last) = batch.last() {
            last.ack().await.map_err(nats_err)?;
        }
    }
}
