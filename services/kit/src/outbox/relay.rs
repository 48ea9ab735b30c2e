//! The relay task: outbox entries to JetStream, in outbox order, each kept
//! until its PubAck (see the module docs of [`super`]).
//!
//! Where the server (2.12 or newer) and the stream (`allow_atomic`) allow
//! it, the relay sends consecutive entries as ADR-50 atomic batches: every
//! message carries `Nats-Batch-Id` and `Nats-Batch-Sequence` (and its
//! `Nats-Msg-Id`), only the last one (`Nats-Batch-Commit: 1`) asks for a
//! PubAck, and the server stores the whole batch or nothing. Otherwise, and
//! for the range of a batch that failed, it sends pipelined single
//! publishes.

use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::header::{NATS_BATCH_COMMIT, NATS_BATCH_COMMIT_FINAL, NATS_BATCH_ID, NATS_BATCH_SEQUENCE};
use async_nats::jetstream::context::{ContextBuilder, PublishError as JsPublishError};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::ErrorCode;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::store::StoreError;
use super::{entry, Counters, EntryError, Store, StoredEvent, KEY_BYTES};
use crate::event::Clock;
use crate::publish::PUBACK_TIMEOUT_MS;
use crate::signing::{EnvelopeSigner, ToSign};
use crate::stream::{ensure_stream, server_supports_atomic_batches, STREAM_NAME};
use mpp_edge::trace::TRACEPARENT_HEADER;

/// Most events sent and awaiting their PubAck at once. Acknowledgements are
/// taken in the order of sending.
pub const PUBLISH_IN_FLIGHT_MAX: usize = 256;

/// First wait after a failure, in milliseconds; doubled after each further
/// failure up to [`RELAY_BACKOFF_MS_MAX`], back to this after a success.
pub const RELAY_BACKOFF_MS_MIN: u64 = 100;

/// Longest wait between two attempts, in milliseconds.
pub const RELAY_BACKOFF_MS_MAX: u64 = 5_000;

/// Most acknowledged entries gathered before the relay marks them
/// published in the store (an in-memory mark that the next durable commit
/// writes; see the `store` module). They are also marked whenever nothing
/// is in flight.
pub const DELETE_BATCH_MAX: usize = 256;

/// How often the relay looks at the NATS connection while it is down, in
/// milliseconds (it sends nothing until the client is connected).
pub const RELAY_CONNECTION_POLL_MS: u64 = 100;

/// Longest the idle relay waits for a new-entries signal before looking at
/// the outbox anyway, in milliseconds (a safety net; the writer signals).
/// An idle relay that waited this long also makes its deletions durable
/// (no group commit came to carry them).
pub const RELAY_IDLE_POLL_MS: u64 = 1_000;

/// After the drain deadline of a shutdown, how long the relay may take to
/// stop (record its last deletions), in milliseconds, before it is aborted.
pub const RELAY_STOP_WAIT_MS: u64 = 2_000;

/// Least time between two warnings about failing publishes or an outbox that
/// does not drain, in milliseconds (the rest are counted, not logged).
pub const RELAY_WARN_INTERVAL_MS: u64 = 30_000;

/// An outbox whose oldest entry is older than this, in seconds, is reported
/// in a warning (every [`RELAY_WARN_INTERVAL_MS`]).
pub const OUTBOX_AGE_WARN_S: f64 = 60.0;

/// Most entries in one atomic batch (ADR-50): nats-server's default limit
/// (`atomic publish batch is too large` above it). A server configured lower
/// answers that error; the relay then halves its batches (down to
/// [`BATCH_EVENTS_MIN`]) and sends the refused range one entry at a time.
pub const BATCH_EVENTS_MAX: usize = 1_000;

/// Fewest entries worth a batch: a lone entry goes out as a plain publish
/// (same guarantees, no batch to track on the server).
pub const BATCH_EVENTS_MIN: usize = 2;

/// Most bytes (entry values) in one atomic batch: the server holds a batch
/// in memory until its commit. Real events are below 2 KiB, so
/// [`BATCH_EVENTS_MAX`] usually ends a batch first.
pub const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Most atomic batches (or lone entries) sent and awaiting their PubAck at
/// once in batch mode. One: `outbox_rate` (release, loaded 2-core machine,
/// 20,000 events filled first) drained 35,051 and 35,756 events/s with one,
/// 27,855 and 35,022 with two, 28,977 and 30,381 with four; the server
/// commits one stream's batches one after the other, and it allows only 50
/// batches in flight per stream, shared by every agency
/// (`ATOMIC_PUBLISH_TOO_MANY_INFLIGHT` above it, which the relay answers by
/// sending that range one entry at a time). More is supported (see
/// `probing`) should a slow link to NATS make it worth it.
pub const BATCHES_IN_FLIGHT_MAX: usize = 1;

/// With a signer, the relay sends while fewer than this many entries are
/// in flight only if none are: so a busy relay sends (and signs) batches of
/// at least this many instead of one entry per PubAck.
pub const SIGNED_BATCH_FILL_MIN: usize = PUBLISH_IN_FLIGHT_MAX / 2;

/// How the relay publishes.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The events stream: every message carries `Nats-Expected-Stream` = this.
    pub stream: String,
    /// Create the stream (with [`crate::stream::stream_config`]) before
    /// publishing, retrying until it succeeds. Off where the agency may only
    /// publish.
    pub ensure_stream: bool,
    /// The participant's signing key: each batch the relay sends is signed
    /// with one signature (see [`crate::signing`]). Without it envelopes go
    /// out unsigned, which a hub whose participant registry is in force
    /// rejects (`UNSIGNED_ENVELOPE`).
    pub signer: Option<Arc<EnvelopeSigner>>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self { stream: STREAM_NAME.to_owned(), ensure_stream: true, signer: None }
    }
}

/// What the relay is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Publish forever.
    Run,
    /// Publish until the outbox is empty, then stop.
    Drain,
    /// Stop now.
    Stop,
}

/// The running relay.
#[derive(Debug)]
pub(super) struct RelayHandle {
    mode: watch::Sender<Mode>,
    task: JoinHandle<()>,
}

impl RelayHandle {
    /// Lets the relay empty the outbox for at most `drain`, then stops it.
    /// Returns whether the outbox was emptied.
    pub(super) async fn drain(mut self, drain: Duration) -> bool {
        let _ = self.mode.send(Mode::Drain);
        if tokio::time::timeout(drain, &mut self.task).await.is_ok() {
            return true;
        }
        let _ = self.mode.send(Mode::Stop);
        if tokio::time::timeout(Duration::from_millis(RELAY_STOP_WAIT_MS), &mut self.task).await.is_err() {
            tracing::warn!("Outbox relay did not stop in time; aborting it");
            self.task.abort();
            let _ = self.task.await;
        }
        false
    }

    /// Stops the relay at once, as a crash would.
    pub(super) fn abort(self) {
        self.task.abort();
    }
}

pub(super) fn spawn(
    store: Arc<Store>,
    counters: Arc<Counters>,
    notify: Arc<Notify>,
    clock: Arc<dyn Clock>,
    client: async_nats::Client,
    config: RelayConfig,
) -> RelayHandle {
    let (mode_tx, mode_rx) = watch::channel(Mode::Run);
    let js = ContextBuilder::new().timeout(Duration::from_millis(PUBACK_TIMEOUT_MS)).build(client.clone());
    let cursor = store.first().ok().flatten().map_or(0, |(seq, _)| seq);
    let relay = Relay {
        store,
        counters,
        notify,
        clock,
        client,
        js,
        config,
        mode: mode_rx,
        inflight: VecDeque::with_capacity(PUBLISH_IN_FLIGHT_MAX),
        cursor,
        batching: Batching::Unknown,
        batch_max: BATCH_EVENTS_MAX,
        singles_until: 0,
        probing: true,
        done: Done::default(),
        backoff: Duration::from_millis(RELAY_BACKOFF_MS_MIN),
        failing_since: None,
        last_warn: None,
        errors_since_warn: 0,
    };
    RelayHandle { mode: mode_tx, task: tokio::spawn(relay.run()) }
}

type AckFuture = Pin<Box<dyn Future<Output = Result<PublishAck, JsPublishError>> + Send>>;

/// One sent entry, or one atomic batch of consecutive entries, awaiting its
/// PubAck.
struct InFlight {
    /// The (first) entry's outbox sequence.
    seq: u64,
    /// Entries: `seq..seq + count`.
    count: u64,
    /// Their bytes (keys and values).
    bytes: u64,
    /// The atomic batch's `Nats-Batch-Id`; `None` for a single publish.
    batch: Option<String>,
    ack: AckFuture,
}

/// Acknowledged entries not yet marked published.
#[derive(Debug, Default)]
struct Done {
    /// The last acknowledged sequence (all before it are acknowledged too).
    last: Option<u64>,
    entries: u64,
    bytes: u64,
}

/// Whether the relay sends atomic batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Batching {
    /// Not known until connected (the server's version decides).
    Unknown,
    On,
    /// The server or the stream does not take atomic batches.
    Off,
}

/// Why the server refused a whole atomic batch (nothing of it is stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The stream lacks `allow_atomic`, or the server does not know batches
    /// (its PubAck does not name the batch).
    Unsupported,
    /// A `Nats-Msg-Id` of the batch is already in the stream (a resend after
    /// a lost PubAck) or twice in it.
    Duplicate,
    /// More entries than the server's batch limit.
    TooLarge,
    /// The stream or server has too many batches in flight, or dropped this
    /// one (incomplete, timed out).
    Busy,
}

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("JetStream publish failed: {0}")]
    Publish(#[from] JsPublishError),
    #[error("sending a batch message failed: {0}")]
    Send(#[from] async_nats::PublishError),
    #[error(
        "the PubAck of batch {batch} does not confirm its {count} messages (server without atomic batches?)"
    )]
    NotABatchAck { batch: String, count: u64 },
    #[error("cannot set up the events stream: {0}")]
    Stream(#[from] crate::stream::StreamSetupError),
    #[error("cannot read the outbox: {0}")]
    Read(#[from] StoreError),
    #[error(transparent)]
    Corrupt(#[from] EntryError),
}

impl RelayError {
    /// Whether (and why) the server refused an atomic batch as a whole.
    fn refusal(&self) -> Option<Refusal> {
        let code = match self {
            Self::NotABatchAck { .. } => return Some(Refusal::Unsupported),
            Self::Publish(e) => {
                std::error::Error::source(e)?.downcast_ref::<async_nats::jetstream::Error>()?.error_code()
            }
            _ => return None,
        };
        Some(match code {
            ErrorCode::ATOMIC_PUBLISH_DISABLED
            | ErrorCode::ATOMIC_PUBLISH_UNSUPPORTED_HEADER
            | ErrorCode::ATOMIC_PUBLISH_INVALID_BATCH_COMMIT => Refusal::Unsupported,
            ErrorCode::ATOMIC_PUBLISH_CONTAINS_DUPLICATE_MESSAGE => Refusal::Duplicate,
            ErrorCode::ATOMIC_PUBLISH_TOO_LARGE_BATCH => Refusal::TooLarge,
            ErrorCode::ATOMIC_PUBLISH_TOO_MANY_INFLIGHT
            | ErrorCode::ATOMIC_PUBLISH_INCOMPLETE_BATCH
            | ErrorCode::ATOMIC_PUBLISH_MISSING_SEQ => Refusal::Busy,
            _ => return None,
        })
    }
}

struct Relay {
    store: Arc<Store>,
    counters: Arc<Counters>,
    notify: Arc<Notify>,
    clock: Arc<dyn Clock>,
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    config: RelayConfig,
    mode: watch::Receiver<Mode>,
    /// Sent entries and batches, consecutive sequences from the oldest
    /// unacknowledged one.
    inflight: VecDeque<InFlight>,
    /// The next sequence to send.
    cursor: u64,
    batching: Batching,
    /// Most entries in one batch ([`BATCH_EVENTS_MAX`], halved when the
    /// server refuses a batch as too large).
    batch_max: usize,
    /// Entries below this sequence go out one at a time: the range of the
    /// last batch that failed.
    singles_until: u64,
    /// After the start and after each failure, a batch goes out only while
    /// nothing else is in flight, until one is stored: a resent batch may be
    /// refused as a duplicate, and a later batch must not be stored before
    /// the refused range goes out one event at a time.
    probing: bool,
    /// Acknowledged entries not yet deleted.
    done: Done,
    backoff: Duration,
    failing_since: Option<Instant>,
    last_warn: Option<Instant>,
    errors_since_warn: u64,
}

impl Relay {
    fn mode(&mut self) -> Mode {
        // A dropped handle means the outbox is gone: stop.
        if self.mode.has_changed().is_err() {
            return Mode::Stop;
        }
        *self.mode.borrow_and_update()
    }

    fn connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    async fn run(mut self) {
        if self.config.ensure_stream && !self.set_up_stream().await {
            return;
        }
        loop {
            let mode = self.mode();
            if mode == Mode::Stop {
                break;
            }
            if let Err(e) = self.fill().await {
                self.failed(e).await;
                continue;
            }
            let Some(front) = self.inflight.front_mut() else {
                self.delete_done();
                if mode == Mode::Drain && self.counters.depth.load(Ordering::Relaxed) == 0 {
                    break;
                }
                self.idle().await;
                continue;
            };
            let outcome = tokio::select! {
                biased;
                r = &mut front.ack => Some(r),
                _ = self.mode.changed() => None,
            };
            match outcome {
                Some(Ok(ack)) => {
                    if let Err(e) = self.acked(&ack) {
                        self.failed(e).await;
                    }
                }
                Some(Err(e)) => self.failed(e.into()).await,
                None => {}
            }
        }
        self.delete_done();
        tracing::debug!(cursor = self.cursor, "Outbox relay stopped");
    }

    /// Creates the events stream, retrying until it works. False if told to
    /// stop first.
    async fn set_up_stream(&mut self) -> bool {
        loop {
            if self.mode() == Mode::Stop {
                return false;
            }
            if self.connected() {
                match ensure_stream(&self.js).await {
                    Ok(info) => {
                        if !info.config.allow_atomic_publish {
                            self.batching_off("the events stream does not allow atomic batches");
                        }
                        return true;
                    }
                    Err(e) => self.failed(e.into()).await,
                }
            } else {
                self.wait(Duration::from_millis(RELAY_CONNECTION_POLL_MS)).await;
            }
        }
    }

    /// Sends entries from the cursor: as atomic batches while batching is on
    /// (until [`BATCHES_IN_FLIGHT_MAX`] are in flight, one while probing), one at a time
    /// otherwise and below `singles_until` (until [`PUBLISH_IN_FLIGHT_MAX`]
    /// entries are in flight). Sends nothing while the client is not
    /// connected.
    async fn fill(&mut self) -> Result<(), RelayError> {
        if !self.connected() {
            return Ok(());
        }
        if self.batching == Batching::Unknown {
            let version = self.client.server_info().version;
            if server_supports_atomic_batches(&version) {
                self.batching = Batching::On;
                tracing::info!(server = %version, "Outbox relay publishes in atomic batches");
            } else {
                self.batching_off("the server is older than 2.12");
            }
        }
        loop {
            let as_batch = self.batching == Batching::On && self.cursor >= self.singles_until;
            let limit = if as_batch {
                // Batches (and lone entries) in flight.
                let window = if self.probing { 1 } else { BATCHES_IN_FLIGHT_MAX };
                if self.inflight.len() >= window {
                    return Ok(());
                }
                self.batch_max
            } else {
                let in_flight: u64 = self.inflight.iter().map(|f| f.count).sum();
                let room = PUBLISH_IN_FLIGHT_MAX.saturating_sub(in_flight as usize);
                if room == 0 {
                    return Ok(());
                }
                if self.config.signer.is_some() && !self.inflight.is_empty() && room < SIGNED_BATCH_FILL_MIN {
                    return Ok(());
                }
                match self.singles_until.checked_sub(self.cursor) {
                    Some(left) if left > 0 => room.min(left as usize),
                    _ => room,
                }
            };
            let rows = self.store.range(self.cursor, limit)?;
            if rows.is_empty() {
                return Ok(());
            }
            let mut batch = Vec::with_capacity(rows.len());
            let mut value_bytes = 0usize;
            for (seq, v) in rows {
                if as_batch && !batch.is_empty() && value_bytes + v.len() > BATCH_BYTES_MAX {
                    break;
                }
                value_bytes += v.len();
                batch.push((entry::decode(seq, &v)?, KEY_BYTES + v.len() as u64));
            }
            self.sign(&mut batch);
            if as_batch && batch.len() >= BATCH_EVENTS_MIN {
                self.send_batch(batch).await?;
            } else {
                for (ev, bytes) in batch {
                    self.send_single(ev, bytes).await?;
                }
            }
        }
    }

    /// Signs the envelopes of `batch` with one signature (see
    /// [`crate::signing`]), when the relay has a signer.
    fn sign(&self, batch: &mut [(StoredEvent, u64)]) {
        let Some(signer) = &self.config.signer else { return };
        let mut to_sign: Vec<ToSign> = batch
            .iter()
            .map(|(ev, _)| ToSign {
                subject: ev.subject.clone(),
                event_id: ev.event_id.clone(),
                payload: ev.payload.to_vec(),
            })
            .collect();
        signer.sign_batch(&mut to_sign);
        for ((ev, _), signed) in batch.iter_mut().zip(to_sign) {
            ev.payload = signed.payload.into();
        }
    }

    /// The message of one entry: its payload, `Nats-Msg-Id` = its event id,
    /// the expected stream and its trace.
    fn message(&self, ev: &StoredEvent) -> PublishMessage {
        let mut message = PublishMessage::build()
            .payload(ev.payload.clone())
            .message_id(&ev.event_id)
            .expected_stream(&self.config.stream);
        if let Some(t) = &ev.traceparent {
            message = message.header(TRACEPARENT_HEADER, t.to_string().as_str());
        }
        message
    }

    async fn send_single(&mut self, ev: StoredEvent, bytes: u64) -> Result<(), RelayError> {
        let message = self.message(&ev);
        let ack = self.js.send_publish(ev.subject, message).await?;
        self.inflight.push_back(InFlight {
            seq: ev.seq,
            count: 1,
            bytes,
            batch: None,
            ack: ack.into_future(),
        });
        self.cursor = ev.seq + 1;
        Ok(())
    }

    /// Sends `batch` (consecutive entries, at least [`BATCH_EVENTS_MIN`]) as
    /// one atomic batch: only its commit message awaits a PubAck. A batch cut
    /// short by a failed send is never committed; the server drops it.
    async fn send_batch(&mut self, batch: Vec<(StoredEvent, u64)>) -> Result<(), RelayError> {
        // 32 hex digits: unique among the batches in flight (the server's
        // limit on an id is 64 characters).
        let id = uuid::Uuid::new_v4().simple().to_string();
        let count = batch.len();
        let first = batch[0].0.seq;
        let mut bytes = 0;
        let mut ack = None;
        for (i, (ev, b)) in batch.into_iter().enumerate() {
            bytes += b;
            let message = self
                .message(&ev)
                .header(NATS_BATCH_ID, id.as_str())
                .header(NATS_BATCH_SEQUENCE, (i + 1).to_string().as_str());
            if i + 1 == count {
                let message = message.header(NATS_BATCH_COMMIT, NATS_BATCH_COMMIT_FINAL);
                ack = Some(self.js.send_publish(ev.subject, message).await?);
            } else {
                let out = message.outbound_message(ev.subject);
                self.client
                    .publish_with_headers(out.subject, out.headers.unwrap_or_default(), out.payload)
                    .await?;
            }
        }
        let Some(ack) = ack else { return Ok(()) };
        self.inflight.push_back(InFlight {
            seq: first,
            count: count as u64,
            bytes,
            batch: Some(id),
            ack: ack.into_future(),
        });
        self.cursor = first + count as u64;
        Ok(())
    }

    fn batching_off(&mut self, why: &str) {
        if self.batching != Batching::Off {
            tracing::info!(reason = why, "Outbox relay publishes one event at a time");
        }
        self.batching = Batching::Off;
    }

    /// The front's PubAck. A batch's must name the batch and all its
    /// messages: a server that does not know batches stores each message
    /// alone and acknowledges only the last, so its ack proves nothing of the
    /// others (they are resent one at a time, as duplicates where stored).
    fn acked(&mut self, ack: &PublishAck) -> Result<(), RelayError> {
        let Some(front) = self.inflight.front() else { return Ok(()) };
        if let Some(batch) = &front.batch {
            if ack.batch_id.as_deref() != Some(batch.as_str()) || ack.batch_size != Some(front.count) {
                return Err(RelayError::NotABatchAck { batch: batch.clone(), count: front.count });
            }
        }
        let Some(sent) = self.inflight.pop_front() else { return Ok(()) };
        self.counters.published_total.fetch_add(sent.count, Ordering::Relaxed);
        if sent.batch.is_some() {
            self.counters.batches_total.fetch_add(1, Ordering::Relaxed);
            self.probing = false;
        }
        if ack.duplicate {
            tracing::debug!(
                seq = sent.seq,
                stream_seq = ack.sequence,
                "Outbox entry was already in the stream"
            );
        }
        self.done.last = Some(sent.seq + sent.count - 1);
        self.done.entries += sent.count;
        self.done.bytes += sent.bytes;
        if let Some(since) = self.failing_since.take() {
            tracing::info!(
                failed_for_ms = since.elapsed().as_millis() as u64,
                errors = self.errors_since_warn,
                "Outbox publishing resumed"
            );
            self.errors_since_warn = 0;
            self.last_warn = None;
        }
        self.backoff = Duration::from_millis(RELAY_BACKOFF_MS_MIN);
        if self.done.entries >= DELETE_BATCH_MAX as u64 {
            self.delete_done();
        }
        Ok(())
    }

    /// Marks acknowledged entries published: hidden at once, deleted on
    /// disk by the next durable commit (see the module docs).
    fn delete_done(&mut self) {
        // Acknowledgements come in outbox order from the oldest entry: what
        // is done is always the outbox's oldest entries.
        let Some(last) = self.done.last.take() else { return };
        self.store.acknowledge(last);
        self.counters.depth.fetch_sub(self.done.entries, Ordering::Relaxed);
        self.counters.bytes.fetch_sub(self.done.bytes, Ordering::Relaxed);
        self.done = Done::default();
    }

    /// Makes the acknowledged deletions durable when no group commit did
    /// (an idle outbox), off the runtime's threads: the commit syncs. (The
    /// future holds the store, not the relay, which is not `Sync`.)
    fn sync_deletions(&self) -> impl Future<Output = ()> + Send + 'static {
        let store = self.store.deletions_pending().then(|| self.store.clone());
        async move {
            let Some(store) = store else { return };
            match tokio::task::spawn_blocking(move || store.sync()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "Cannot delete published outbox entries"),
                Err(e) => tracing::error!(error = %e, "Deleting published outbox entries panicked"),
            }
        }
    }

    /// A failure: forget what is in flight, resend from the oldest
    /// unacknowledged entry after the backoff.
    ///
    /// When the failure is the oldest batch's, its range is resent one entry
    /// at a time: a batch is stored whole or not at all, so each of its
    /// entries is then either stored once or acknowledged as a duplicate (a
    /// resent batch holding one stored event is refused as a whole). A batch
    /// the server refused (not a fault: a duplicate, a stream without
    /// `allow_atomic`, a batch limit) is resent at once, without backoff.
    async fn failed(&mut self, err: RelayError) {
        self.counters.publish_errors_total.fetch_add(1, Ordering::Relaxed);
        let mut refused = None;
        self.probing = true;
        if let Some(front) = self.inflight.front() {
            self.cursor = front.seq;
            if front.batch.is_some() {
                self.singles_until = front.seq + front.count;
                refused = err.refusal();
            }
        }
        let dropped = self.inflight.len();
        self.inflight.clear();
        self.delete_done();
        if let Some(refusal) = refused {
            match refusal {
                Refusal::Unsupported => self.batching_off("the server or the stream refused an atomic batch"),
                Refusal::TooLarge => self.batch_max = (self.batch_max / 2).max(BATCH_EVENTS_MIN),
                Refusal::Duplicate | Refusal::Busy => {}
            }
            tracing::debug!(
                error = %err,
                ?refusal,
                resend_from = self.cursor,
                one_at_a_time_until = self.singles_until,
                "Outbox batch refused; resending its events one at a time"
            );
            return;
        }
        self.failing_since.get_or_insert_with(Instant::now);
        self.errors_since_warn += 1;
        let warn_due =
            self.last_warn.is_none_or(|t| t.elapsed() >= Duration::from_millis(RELAY_WARN_INTERVAL_MS));
        if warn_due {
            tracing::warn!(
                error = %err,
                resend_from = self.cursor,
                dropped_in_flight = dropped,
                errors = self.errors_since_warn,
                retry_in_ms = self.backoff.as_millis() as u64,
                depth = self.counters.depth.load(Ordering::Relaxed),
                "Outbox publish failed; retrying with the same event ids"
            );
            self.last_warn = Some(Instant::now());
            self.errors_since_warn = 0;
        } else {
            tracing::debug!(error = %err, resend_from = self.cursor, "Outbox publish failed");
        }
        self.warn_if_stale();
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(Duration::from_millis(RELAY_BACKOFF_MS_MAX));
        self.wait(wait).await;
    }

    /// Nothing in flight: wait for new entries, a mode change, or (while
    /// disconnected) the next look at the connection. Deletions still
    /// pending after [`RELAY_IDLE_POLL_MS`] without new entries (or while
    /// disconnected) are made durable.
    async fn idle(&mut self) {
        self.warn_if_stale();
        if !self.connected() {
            self.sync_deletions().await;
            self.wait(Duration::from_millis(RELAY_CONNECTION_POLL_MS)).await;
            return;
        }
        let notified = self.notify.notified();
        let quiet = tokio::select! {
            () = notified => false,
            _ = self.mode.changed() => false,
            () = tokio::time::sleep(Duration::from_millis(RELAY_IDLE_POLL_MS)) => true,
        };
        if quiet {
            self.sync_deletions().await;
        }
    }

    /// Sleeps for `d`, or less if the mode changes.
    async fn wait(&mut self, d: Duration) {
        tokio::select! {
            () = tokio::time::sleep(d) => {}
            _ = self.mode.changed() => {}
        }
    }

    fn warn_if_stale(&mut self) {
        if self.counters.depth.load(Ordering::Relaxed) == 0 {
            return;
        }
        let Some(oldest_ms) = self.store.first().ok().flatten().and_then(|(_, v)| entry::enqueued_at_ms(&v))
        else {
            return;
        };
        let age_s = self.clock.now_ms().saturating_sub(oldest_ms) as f64 / 1000.0;
        let due = self.last_warn.is_none_or(|t| t.elapsed() >= Duration::from_millis(RELAY_WARN_INTERVAL_MS));
        if age_s > OUTBOX_AGE_WARN_S && due {
            tracing::warn!(
                oldest_age_s = age_s,
                depth = self.counters.depth.load(Ordering::Relaxed),
                connected = self.connected(),
                "Outbox is not draining: events wait for JetStream"
            );
            self.last_warn = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use async_nats::jetstream::context::PublishErrorKind;

    use super::*;

    /// A failed PubAck carrying the JetStream API error `err_code`, as the
    /// client reports it.
    fn api_error(err_code: u64) -> RelayError {
        let json = format!(r#"{{"code":400,"err_code":{err_code},"description":"test"}}"#);
        let error: async_nats::jetstream::Error = serde_json::from_str(&json).unwrap();
        RelayError::Publish(JsPublishError::with_source(PublishErrorKind::Other, error))
    }

    #[test]
    fn refused_batches_are_told_apart_from_failures() {
        for (code, want) in [
            (10174, Some(Refusal::Unsupported)),
            (10177, Some(Refusal::Unsupported)),
            (10201, Some(Refusal::Duplicate)),
            (10199, Some(Refusal::TooLarge)),
            (10210, Some(Refusal::Busy)),
            (10176, Some(Refusal::Busy)),
            // Not about the batch: a stream that does not take the subject,
            // a wrong expected stream.
            (10077, None),
            (10060, None),
        ] {
            assert_eq!(api_error(code).refusal(), want, "err_code {code}");
        }
        let not_acked = RelayError::NotABatchAck { batch: "b".to_owned(), count: 2 };
        assert_eq!(not_acked.refusal(), Some(Refusal::Unsupported));
        let timeout = RelayError::Publish(JsPublishError::new(PublishErrorKind::TimedOut));
        assert_eq!(timeout.refusal(), None);
    }
}
