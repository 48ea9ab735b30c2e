//! Ingest: JetStream → ledger → sled, exactly once and in order.
//!
//! Two parts, connected by a bounded channel:
//! - the **writer thread** owns the [`Ledger`] (and so the only sled writer):
//!   it decides a batch, commits it as one atomic sled batch and flushes;
//! - the **ingest task** owns the JetStream subscription: it gathers a batch
//!   (up to `batch_max` messages; when the writer is idle, only what arrives
//!   within [`BATCH_GATHER_WAIT`] of the batch's first message), hands it to
//!   the writer, and only after the writer reports the batch durable does it
//!   ack (one `AckAll` for the batch's last message).
//!
//! The two overlap: while the writer decides, commits and flushes batch N,
//! the task gathers batch N+1 and queues it behind N, so under load the
//! writer never waits for the network. Replies (and so acks) come back in
//! submission order; N is acked only after N's flush, and never before the
//! batches before it.
//!
//! On every (re)start the task recreates its durable consumer at the ledger's
//! checkpoint + 1, so the stream — not the consumer's memory — decides where
//! ingest resumes: if sled lost a flushed tail, the checkpoint rolled back
//! with it and those messages are simply read again. Messages at or below the
//! checkpoint (redeliveries) are acked and skipped by the ledger. A gap halts
//! ingest and readiness until an operator intervenes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use mpp_store::{Head, SledStore};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

use crate::ledger::{BatchOutcome, CheckedBatch, Ledger, LedgerError, RawMessage};
use crate::signer::Checkpointer;
use crate::trust::Trust;
use mpp_core::TrackingNumber;
use mpp_edge::nats::{connect_nats, NatsAccess};
use mpp_edge::stream::{stream_config, STREAM_NAME, STREAM_SUBJECT_FILTER};
use mpp_edge::trace::{TraceParent, TRACEPARENT_HEADER};
use mpp_obs::health::{Health, NotReady};
use mpp_obs::metrics::HubMetrics;

/// Batches queued for the writer thread beyond the one it is committing.
/// One is enough to overlap the next fetch with the current fsync.
pub const WRITER_QUEUE_BATCHES_MAX: usize = 1;

/// Most messages delivered to this hub and not yet acked. Bounds the memory
/// of in-flight messages: 2 × the largest batch.
pub const ACK_PENDING_MESSAGES_MAX: i64 = 8192;

/// How long JetStream waits for an ack before redelivering.
pub const ACK_WAIT: Duration = Duration::from_secs(60);

/// How long the ingest task keeps gathering a batch after its first message
/// while the writer is idle, before handing over what it has (2 ms). While
/// the writer is busy the batch fills up to `batch_max` instead; so an idle
/// hub adds at most this to an event's latency, and a loaded one commits
/// full batches.
pub const BATCH_GATHER_WAIT: Duration = Duration::from_millis(2);

/// How often a paused ingest (disk below `--min-free-disk-mb`) looks again
/// whether the disk check cleared.
pub const DISK_LOW_RECHECK: Duration = Duration::from_millis(500);

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
    /// NATS URL, or a comma-separated list of a cluster's nodes.
    pub nats_url: String,
    /// Durable consumer name.
    pub consumer_name: String,
    /// Most messages per batch.
    pub batch_max: usize,
    /// Told the cases each committed batch changed (live updates).
    pub changes: Option<OnCommit>,
}

/// What ingest tells after each committed batch: the cases it changed.
/// The ledger calls out through this and knows nothing of who listens (the
/// lookups' live updates, wired by the server).
#[derive(Clone)]
pub struct OnCommit(pub Arc<CommitFn>);

/// What [`OnCommit`] calls: the cases a committed batch changed.
pub type CommitFn = dyn Fn(&[TrackingNumber]) + Send + Sync;

impl std::fmt::Debug for OnCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnCommit(..)")
    }
}

/// What the writer thread is asked to do.
enum WriterJob {
    /// Commit a batch and report its outcome.
    Commit(CheckedBatch, oneshot::Sender<Result<BatchOutcome, LedgerError>>),
    /// Sign a checkpoint if the policy says one is due (a timer tick).
    Tick,
}

/// Handle of the writer thread.
#[derive(Debug)]
pub struct Writer {
    tx: mpsc::Sender<WriterJob>,
    thread: std::thread::JoinHandle<()>,
    trust: Arc<Trust>,
}

impl Writer {
    /// Starts the writer thread owning `ledger`, without checkpoints.
    pub fn spawn(ledger: Ledger<SledStore>) -> std::io::Result<Self> {
        Self::spawn_with_checkpoints(ledger, None)
    }

    /// Starts the writer thread owning `ledger`. With a `checkpointer`, the
    /// thread signs and stores checkpoints by its policy right after the
    /// commits (after replying, so acks do not wait for them) and on
    /// [`Writer::tick`], and a last one of the final head when it stops.
    /// A failure to store a checkpoint is logged; ingest goes on.
    pub fn spawn_with_checkpoints(
        ledger: Ledger<SledStore>,
        checkpointer: Option<Checkpointer>,
    ) -> std::io::Result<Self> {
        Self::start(ledger, checkpointer, None)
    }

    /// As [`Writer::spawn_with_checkpoints`], recording every batch (size,
    /// verdicts, reasons, decide + commit + flush time) and every
    /// checkpoint in `metrics`.
    pub fn spawn_with_metrics(
        ledger: Ledger<SledStore>,
        checkpointer: Option<Checkpointer>,
        metrics: Arc<HubMetrics>,
    ) -> std::io::Result<Self> {
        Self::start(ledger, checkpointer, Some(metrics))
    }

    fn start(
        mut ledger: Ledger<SledStore>,
        mut checkpointer: Option<Checkpointer>,
        metrics: Option<Arc<HubMetrics>>,
    ) -> std::io::Result<Self> {
        let trust = ledger.trust().clone();
        if let Some(m) = &metrics {
            m.set_standards_in_memory(ledger.standards_in_memory());
        }
        let (tx, mut rx) = mpsc::channel::<WriterJob>(WRITER_QUEUE_BATCHES_MAX);
        let thread = std::thread::Builder::new().name("mpp-ledger-writer".into()).spawn(move || {
            while let Some(job) = rx.blocking_recv() {
                if let WriterJob::Commit(mut batch, reply) = job {
                    let started = std::time::Instant::now();
                    let outcome = ledger.commit_checked(&mut batch);
                    if let (Some(m), Ok(o)) = (&metrics, &outcome) {
                        let msgs = batch.messages();
                        let last = msgs.iter().rev().find(|r| r.stream_seq == o.head.last_stream_seq);
                        m.record_batch(
                            msgs.len(),
                            [o.accepted, o.rejected, o.duplicates],
                            o.rejections.iter().map(|c| c.as_str()),
                            last.map(|r| r.stream_time_ns),
                            started.elapsed(),
                        );
                        m.set_standards_in_memory(ledger.standards_in_memory());
                    }
                    // The ingest task may have gone away (shutdown); nothing to do then.
                    let _ = reply.send(outcome);
                }
                if let Some(c) = checkpointer.as_mut() {
                    match c.maybe_checkpoint(&ledger, std::time::Instant::now()) {
                        Ok(Some(_)) => {
                            if let Some(m) = &metrics {
                                m.record_checkpoint();
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            error!(error = %e, "Signing a checkpoint failed; auditors see no newer checkpoint")
                        }
                    }
                }
            }
            // Held-back case values: written now, or re-derived from the log
            // at the next start. Written before the last checkpoint, so it
            // signs the projection a copy of the stopped store holds.
            if let Err(e) = ledger.flush_projection() {
                error!(error = %e, "Writing the held-back case values failed; the next start re-derives them");
            }
            if let Some(c) = checkpointer.as_mut() {
                if let Err(e) = c.finish(&ledger, std::time::Instant::now()) {
                    error!(error = %e, "Signing the last checkpoint failed");
                }
            }
            debug!("Ledger writer stopped");
        })?;
        Ok(Self { tx, thread, trust })
    }

    /// Offers the writer a timer tick for time-based checkpoints. Never
    /// waits: when the queue is full a commit is pending, and the writer
    /// checks the policy after it anyway.
    pub fn tick(&self) {
        let _ = self.tx.try_send(WriterJob::Tick);
    }

    /// Commits one batch, durably, and reports its outcome.
    pub async fn commit(&self, batch: Vec<RawMessage>) -> Result<BatchOutcome, IngestError> {
        let reply = self.submit(batch).await?;
        reply.await.map_err(|_| IngestError::WriterGone)?.map_err(IngestError::Ledger)
    }

    /// Queues one batch for the writer (waiting while its queue of
    /// [`WRITER_QUEUE_BATCHES_MAX`] is full) and returns the receiver of its
    /// outcome, so the caller can gather the next batch meanwhile. Batches
    /// are committed in the order they were submitted.
    pub async fn submit(
        &self,
        batch: Vec<RawMessage>,
    ) -> Result<oneshot::Receiver<Result<BatchOutcome, LedgerError>>, IngestError> {
        let (reply_tx, reply_rx) = oneshot::channel();
        // Decoding and validating here, on the caller's thread, runs in
        // parallel with the writer committing the batch before.
        let batch = CheckedBatch::new(batch);
        batch.preverify(&self.trust);
        self.tx.send(WriterJob::Commit(batch, reply_tx)).await.map_err(|_| IngestError::WriterGone)?;
        Ok(reply_rx)
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
    shutdown: watch::Receiver<bool>,
) -> Result<(), IngestError> {
    run_with_access(cfg, NatsAccess::default(), writer, health, initial_head, shutdown).await
}

/// [`run`], connecting to NATS with `access` (its login and TLS).
pub async fn run_with_access(
    cfg: IngestConfig,
    access: NatsAccess,
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
        let result = consume(&cfg, &access, &writer, &health, &mut head, &mut shutdown).await;
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
    access: &NatsAccess,
    writer: &Writer,
    health: &Health,
    head: &mut Head,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), IngestError> {
    // A comma-separated list names the nodes of a cluster; the client picks
    // one and fails over to the others.
    let name = format!("mpp-hub/{}", cfg.consumer_name);
    let client = connect_nats(&cfg.nats_url, &name, access).await.map_err(nats_err)?;
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
            filter_subject: STREAM_SUBJECT_FILTER.to_owned(),
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

    // Batches handed to the writer and not yet reported, oldest first: the
    // one it commits and the one queued behind it. Their acks go out in this
    // order, each only after its batch's flush.
    let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(IN_FLIGHT_BATCHES_MAX);
    let mut batch: Vec<jetstream::Message> = Vec::with_capacity(cfg.batch_max);
    // Set once the batch's gathering deadline has passed.
    let mut deadline_passed = false;
    let gather = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(gather);
    let mut paused = false;
    loop {
        // A low disk pauses pulling (nothing new is taken, nothing unacked
        // is lost: JetStream redelivers) before sled could meet ENOSPC, a
        // failure sled 0.34 does not recover from without a restart.
        if health.disk_low() != paused {
            paused = !paused;
            if paused {
                warn!("Free disk below --min-free-disk-mb: ingest paused until space returns");
            } else {
                info!("Free disk back above --min-free-disk-mb: ingest resumed");
            }
        }
        let can_gather = !paused && batch.len() < cfg.batch_max && in_flight.len() < IN_FLIGHT_BATCHES_MAX;
        let waiting_for_deadline = !batch.is_empty() && !deadline_passed;
        tokio::select! {
            biased;
            reply = next_reply(&mut in_flight) => {
                // `next_reply` only completes when a batch is in flight.
                let Some(done) = in_flight.pop_front() else { continue };
                if let Err(e) = finish(cfg, &stream, health, head, reply, &done).await {
                    drain(&mut in_flight, head).await;
                    return Err(e);
                }
            }
            _ = shutdown.changed() => {
                // Whatever was handed over is committed; ack it, leave the rest.
                while let Some(mut done) = in_flight.pop_front() {
                    let reply = (&mut done.reply).await;
                    if let Err(e) = finish(cfg, &stream, health, head, reply, &done).await {
                        drain(&mut in_flight, head).await;
                        return Err(e);
                    }
                }
                return Ok(());
            }
            m = messages.next(), if can_gather => {
                match m {
                    Some(Ok(m)) => {
                        if batch.is_empty() {
                            gather.as_mut().reset(tokio::time::Instant::now() + BATCH_GATHER_WAIT);
                            deadline_passed = false;
                        }
                        batch.push(m);
                    }
                    Some(Err(e)) if !batch.is_empty() => {
                        warn!(error = %e, "Pull error while gathering a batch; committing what arrived");
                        deadline_passed = true;
                    }
                    Some(Err(e)) => {
                        drain(&mut in_flight, head).await;
                        return Err(nats_err(e));
                    }
                    None => {
                        drain(&mut in_flight, head).await;
                        return Err(IngestError::Nats("message stream ended".into()));
                    }
                }
            }
            _ = &mut gather, if waiting_for_deadline => deadline_passed = true,
            _ = tokio::time::sleep(DISK_LOW_RECHECK), if paused => {}
        }
        // Hand the batch over when it is full, or when its deadline passed
        // and the writer is idle. While the writer is busy the batch keeps
        // filling up to `batch_max`, so under load every commit and flush
        // carries a full batch, and the writer never waits for the task.
        let ready = batch.len() >= cfg.batch_max || (deadline_passed && in_flight.is_empty());
        if !batch.is_empty() && ready && in_flight.len() < IN_FLIGHT_BATCHES_MAX {
            let msgs = std::mem::replace(&mut batch, Vec::with_capacity(cfg.batch_max));
            deadline_passed = false;
            match submit(writer, msgs).await {
                Ok(f) => in_flight.push_back(f),
                Err(e) => {
                    drain(&mut in_flight, head).await;
                    return Err(e);
                }
            }
        }
    }
}

/// Most batches handed to the writer and not yet reported: the one it
/// commits plus [`WRITER_QUEUE_BATCHES_MAX`] queued behind it.
const IN_FLIGHT_BATCHES_MAX: usize = WRITER_QUEUE_BATCHES_MAX + 1;

/// The writer's answer for one batch.
type Reply = Result<Result<BatchOutcome, LedgerError>, oneshot::error::RecvError>;

/// A batch handed to the writer: its reply, and the message whose `AckAll`
/// acknowledges the whole batch once it is durable.
struct InFlight {
    reply: oneshot::Receiver<Result<BatchOutcome, LedgerError>>,
    last: jetstream::Message,
    /// JetStream's count of messages beyond the batch's last one (the lag).
    pending: u64,
    /// The batch's messages that came with a W3C `traceparent`.
    traced: Vec<Traced>,
}

/// A message that came with a `traceparent` header (an agency RPC's trace,
/// `mpp_edge::trace`): logged with its `trace_id` once its batch is
/// committed, so an operator can follow the trace to the hub.
#[derive(Debug)]
struct Traced {
    stream_seq: u64,
    trace: TraceParent,
    /// The `Nats-Msg-Id` (the event id), as sent.
    msg_id: String,
}

impl Traced {
    fn of(m: &jetstream::Message, stream_seq: u64) -> Option<Self> {
        let headers = m.headers.as_ref()?;
        let trace = TraceParent::parse(headers.get(TRACEPARENT_HEADER)?.as_str())?;
        let msg_id = headers.get(async_nats::header::NATS_MESSAGE_ID).map(|v| v.as_str()).unwrap_or("");
        // The event id is at most a UUID's 36 characters; a longer header is
        // logged cut, never whole.
        let msg_id = msg_id.chars().take(MSG_ID_LOGGED_CHARS_MAX).collect();
        Some(Self { stream_seq, trace, msg_id })
    }
}

/// Characters of a message's `Nats-Msg-Id` written to a log line.
const MSG_ID_LOGGED_CHARS_MAX: usize = 64;

/// The reply of the oldest batch in flight; never completes when none is.
async fn next_reply(in_flight: &mut VecDeque<InFlight>) -> Reply {
    match in_flight.front_mut() {
        Some(f) => (&mut f.reply).await,
        None => std::future::pending().await,
    }
}

/// Converts the batch's messages and queues them for the writer (waiting
/// while its queue is full).
async fn submit(writer: &Writer, batch: Vec<jetstream::Message>) -> Result<InFlight, IngestError> {
    let mut raws = Vec::with_capacity(batch.len());
    let mut traced = Vec::new();
    let mut pending = 0;
    for m in &batch {
        let info = m.info().map_err(nats_err)?;
        // JetStream's count of messages beyond this one; the batch's
        // last message gives the lag after the batch.
        pending = info.pending;
        let ns = info.published.unix_timestamp_nanos();
        traced.extend(Traced::of(m, info.stream_sequence));
        let header = |name: &str| m.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str());
        let redrive = mpp_core::redrive::claim(
            m.subject.as_str(),
            header(mpp_core::redrive::REDRIVE_OF_HEADER),
            header(mpp_core::redrive::OPERATOR_HEADER),
        );
        raws.push(RawMessage {
            stream_seq: info.stream_sequence,
            stream_time_ns: i64::try_from(ns).unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX }),
            subject: m.subject.to_string(),
            payload: m.payload.clone(),
            redrive,
        });
    }
    let Some(last) = batch.into_iter().next_back() else {
        return Err(IngestError::Nats("an empty batch was handed to the writer".into()));
    };
    let reply = writer.submit(raws).await?;
    Ok(InFlight { reply, last, pending, traced })
}

/// Handles the writer's reply for one batch: records the new head, announces
/// the changed cases, and acks the batch (AckAll on its last message), or
/// reports the gap or failure.
async fn finish(
    cfg: &IngestConfig,
    stream: &jetstream::stream::Stream,
    health: &Health,
    head: &mut Head,
    reply: Reply,
    batch: &InFlight,
) -> Result<(), IngestError> {
    let (last, pending) = (&batch.last, batch.pending);
    let outcome = reply.map_err(|_| IngestError::WriterGone)?.map_err(IngestError::Ledger)?;
    for t in batch.traced.iter().filter(|t| t.stream_seq <= outcome.head.last_stream_seq) {
        let span = tracing::debug_span!("ingest", trace_id = %t.trace.trace_id_hex());
        // With --otlp-endpoint, the exported span is the agency RPC span's
        // child; without it, one relaxed load.
        mpp_edge::otlp::continue_trace(&span, Some(&t.trace));
        span.in_scope(|| {
            debug!(
                trace_id = %t.trace.trace_id_hex(),
                parent_span_id = %t.trace.span_id_hex(),
                stream_seq = t.stream_seq,
                event_id = %t.msg_id,
                "Traced event logged"
            );
        });
    }
    *head = outcome.head;
    health.set_head(crate::observe::head_mark(&outcome.head));
    health.metrics().set_ingest_lag(pending);
    if let Some(changes) = &cfg.changes {
        (changes.0)(&outcome.touched_cases);
    }
    debug!(
        accepted = outcome.accepted,
        rejected = outcome.rejected,
        duplicates = outcome.duplicates,
        skipped = outcome.skipped,
        last_seq = outcome.head.last_seq,
        "Batch committed"
    );
    if let Some(gap) = outcome.gap {
        return Err(classify_gap(stream, gap.expected, gap.got).await);
    }
    // Durable: ack the batch. AckAll on the last message covers the rest.
    last.ack().await.map_err(nats_err)
}

/// Before giving up on a consumer: waits for the batches still in flight
/// (the writer commits them whatever happens here) so that `head` is the
/// ledger's, without acking them (the consumer is recreated at the
/// checkpoint anyway).
async fn drain(in_flight: &mut VecDeque<InFlight>, head: &mut Head) {
    while let Some(f) = in_flight.pop_front() {
        if let Ok(Ok(outcome)) = f.reply.await {
            *head = outcome.head;
        }
    }
}
