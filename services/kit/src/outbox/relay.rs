//! The relay task: outbox entries to JetStream, in outbox order, each kept
//! until its PubAck (see the module docs of [`super`]).

use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::jetstream::context::{ContextBuilder, PublishError as JsPublishError};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::store::StoreError;
use super::{entry, Counters, EntryError, Store, KEY_BYTES};
use crate::event::Clock;
use crate::publish::PUBACK_TIMEOUT_MS;
use crate::signing::{EnvelopeSigner, ToSign};
use crate::stream::{ensure_stream, STREAM_NAME};
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
        done: Vec::with_capacity(DELETE_BATCH_MAX),
        backoff: Duration::from_millis(RELAY_BACKOFF_MS_MIN),
        failing_since: None,
        last_warn: None,
        errors_since_warn: 0,
    };
    RelayHandle { mode: mode_tx, task: tokio::spawn(relay.run()) }
}

type AckFuture = Pin<Box<dyn Future<Output = Result<PublishAck, JsPublishError>> + Send>>;

/// One sent entry awaiting its PubAck.
struct InFlight {
    seq: u64,
    bytes: u64,
    ack: AckFuture,
}

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("JetStream publish failed: {0}")]
    Publish(#[from] JsPublishError),
    #[error("cannot set up the events stream: {0}")]
    Stream(#[from] crate::stream::StreamSetupError),
    #[error("cannot read the outbox: {0}")]
    Read(#[from] StoreError),
    #[error(transparent)]
    Corrupt(#[from] EntryError),
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
    /// Sent entries, consecutive sequences from the oldest unacknowledged one.
    inflight: VecDeque<InFlight>,
    /// The next sequence to send.
    cursor: u64,
    /// Acknowledged entries not yet deleted: (sequence, bytes).
    done: Vec<(u64, u64)>,
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
                Some(Ok(ack)) => self.acked(&ack),
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
                    Ok(_) => return true,
                    Err(e) => self.failed(e.into()).await,
                }
            } else {
                self.wait(Duration::from_millis(RELAY_CONNECTION_POLL_MS)).await;
            }
        }
    }

    /// Sends entries from the cursor until [`PUBLISH_IN_FLIGHT_MAX`] are in
    /// flight. Sends nothing while the client is not connected.
    async fn fill(&mut self) -> Result<(), RelayError> {
        let room = PUBLISH_IN_FLIGHT_MAX.saturating_sub(self.inflight.len());
        if room == 0 || !self.connected() {
            return Ok(());
        }
        if self.config.signer.is_some() && !self.inflight.is_empty() && room < SIGNED_BATCH_FILL_MIN {
            return Ok(());
        }
        let mut batch = Vec::with_capacity(room.min(64));
        for (seq, v) in self.store.range(self.cursor, room)? {
            batch.push((entry::decode(seq, &v)?, KEY_BYTES + v.len() as u64));
        }
        if let Some(signer) = &self.config.signer {
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
        for (ev, bytes) in batch {
            let mut message = PublishMessage::build()
                .payload(ev.payload)
                .message_id(&ev.event_id)
                .expected_stream(&self.config.stream);
            if let Some(t) = ev.traceparent {
                message = message.header(TRACEPARENT_HEADER, t.to_string().as_str());
            }
            let ack = self.js.send_publish(ev.subject, message).await?;
            self.inflight.push_back(InFlight { seq: ev.seq, bytes, ack: ack.into_future() });
            self.cursor = ev.seq + 1;
        }
        Ok(())
    }

    fn acked(&mut self, ack: &PublishAck) {
        let Some(sent) = self.inflight.pop_front() else { return };
        self.counters.published_total.fetch_add(1, Ordering::Relaxed);
        if ack.duplicate {
            tracing::debug!(
                seq = sent.seq,
                stream_seq = ack.sequence,
                "Outbox entry was already in the stream"
            );
        }
        self.done.push((sent.seq, sent.bytes));
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
        if self.done.len() >= DELETE_BATCH_MAX {
            self.delete_done();
        }
    }

    /// Marks acknowledged entries published: hidden at once, deleted on
    /// disk by the next durable commit (see the module docs).
    fn delete_done(&mut self) {
        // Acknowledgements come in outbox order from the oldest entry: what
        // is done is always the outbox's oldest entries.
        let Some(&(last, _)) = self.done.last() else { return };
        self.store.acknowledge(last);
        let bytes: u64 = self.done.iter().map(|(_, b)| *b).sum();
        self.counters.depth.fetch_sub(self.done.len() as u64, Ordering::Relaxed);
        self.counters.bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.done.clear();
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
    async fn failed(&mut self, err: RelayError) {
        self.counters.publish_errors_total.fetch_add(1, Ordering::Relaxed);
        if let Some(front) = self.inflight.front() {
            self.cursor = front.seq;
        }
        let dropped = self.inflight.len();
        self.inflight.clear();
        self.delete_done();
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
