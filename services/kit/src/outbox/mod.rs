//! The durable outbox of an agency service, in redb ([`crate::durable`]).
//!
//! Guarantees, first:
//!
//! - **Accepted means durable.** A call is answered "accepted" only after its
//!   events were written to the outbox in one redb transaction committed
//!   with `Durability::Immediate` (an `fdatasync` before the commit returns).
//!   A call's events are in one transaction, so after a crash or a power cut
//!   either all of them are in the outbox or none is; they get consecutive
//!   outbox sequences.
//! - **Group commit.** One writer thread takes calls from a bounded channel
//!   ([`OUTBOX_QUEUE_CALLS_MAX`]); whatever calls are waiting when it is free
//!   (at most [`GROUP_COMMIT_CALLS_MAX`] calls or [`GROUP_COMMIT_BYTES_MAX`]
//!   bytes) go into one transaction and one sync, and each caller is answered
//!   after that commit. It never waits for more: the calls that arrive
//!   during a commit's sync form the next group (the `writer` module's
//!   docs). Concurrent calls therefore share syncs instead of paying one
//!   each, and the disk never idles while calls wait. A commit stores its events as one record (per
//!   256 events, `RECORD_EVENTS_MAX`), not one row each, so that its sync
//!   covers a few pages (the `store` module's docs; an outbox of the first
//!   redb format is moved into records when it is opened).
//! - **Publishing in outbox order, each event until acknowledged.** A relay
//!   task ([`Outbox::start_relay`]) sends entries to JetStream in outbox order
//!   with `Nats-Msg-Id` = event id, up to [`PUBLISH_IN_FLIGHT_MAX`] awaiting
//!   their PubAck at once (acknowledgements are taken in the order of
//!   sending). An entry is deleted only after its PubAck. On any failure the
//!   relay drops what is in flight and resends from the oldest unacknowledged
//!   entry, with the same event ids, after a capped exponential backoff
//!   ([`RELAY_BACKOFF_MS_MIN`]..=[`RELAY_BACKOFF_MS_MAX`]), forever. A resend of
//!   an event that JetStream did store is recognised as a duplicate within the
//!   stream's duplicate window and not stored again.
//! - **Atomic batches where allowed.** With nats-server 2.12+ and a stream
//!   with `allow_atomic` (the kit's definition sets it, and
//!   [`crate::stream::ensure_stream`] switches it on for an existing stream),
//!   the relay sends consecutive entries as ADR-50 atomic batches (at most
//!   [`BATCH_EVENTS_MAX`] entries and [`BATCH_BYTES_MAX`] bytes, up to
//!   [`BATCHES_IN_FLIGHT_MAX`] awaiting their commit PubAck). Each message
//!   keeps its `Nats-Msg-Id`; the server stores a batch whole or not at all,
//!   with one commit (one sync under `sync_interval: always`) for all of it.
//!   A batch holding an event already in the stream (a resend after a lost
//!   PubAck) is refused as a whole: the relay then sends that batch's range
//!   one event at a time, each stored once or acknowledged as a duplicate.
//!   After the start and after any failure the relay sends one batch alone
//!   until one is stored, so a later batch is never stored before a refused
//!   range. A stream without the flag or an older server: pipelined single
//!   publishes, as above.
//! - **Bounded.** At most [`OutboxConfig::entries_max`] entries and
//!   [`OutboxConfig::bytes_max`] bytes; a call that does not fit is refused
//!   with `OUTBOX_FULL` and nothing of it is written.
//! - **Restart.** Entries left at shutdown (or after a crash) stay on disk and
//!   are published first when the service starts again, with their event ids.
//!
//! Known limits, stated so nobody relies on more:
//!
//! - Deletions of published entries have no commit of their own: they are
//!   hidden at once and written by the next group commit, or by the relay
//!   after [`RELAY_IDLE_POLL_MS`] without new entries, or at shutdown (the
//!   `store` module's docs). A crash before that republishes those entries,
//!   which JetStream drops as duplicates while they are inside its duplicate
//!   window (10 minutes, see [`mpp_edge::stream`]).
//! - The durability of a commit is the disk's: a drive that acknowledges a
//!   flush it has not made (a volatile write cache without power-loss
//!   protection) can still lose it.
//! - Pipelining keeps the order of sending, and a resend starts from the
//!   oldest unacknowledged entry, so the stream receives the first copy of
//!   every event in outbox order — unless the NATS connection breaks while a
//!   message is on the wire and the client sends a later, still buffered one
//!   over the new connection: then the later one can be stored first. The
//!   relay only sends while the client reports a connection, which keeps that
//!   window small, but does not close it.
//! - An entry JetStream keeps refusing (e.g. a stream that does not capture
//!   the subject) blocks the entries behind it: the relay keeps retrying and
//!   logging, the outbox grows, and `mpp_outbox_oldest_age_seconds` tells the
//!   operator. Nothing is dropped.
//! - On a stream without `allow_atomic` that the relay may not change, its
//!   first batch after each start is refused (one count in
//!   `publish_errors_total`) before it publishes one event at a time; it does
//!   not notice the flag being set later until it restarts.

// redb's error is 160 bytes. It is returned only on a failed disk
// operation, next to a sync that costs milliseconds: boxing it would buy
// nothing measurable and cost a layer at every `?`.
#![allow(clippy::result_large_err)]

#[cfg(test)]
mod commit_cost_tests;
mod entry;
#[cfg(test)]
mod power_cut_tests;
mod relay;
mod store;
mod writer;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use mpp_core::ReasonCode;
use tokio::sync::{mpsc, oneshot, Notify};

pub use self::entry::{EntryError, StoredEvent, ENTRY_BYTES_MAX, ENTRY_FORMAT, EVENT_ID_BYTES_MAX};
pub use self::relay::{
    RelayConfig, BATCHES_IN_FLIGHT_MAX, BATCH_BYTES_MAX, BATCH_EVENTS_MAX, BATCH_EVENTS_MIN,
    DELETE_BATCH_MAX, OUTBOX_AGE_WARN_S, PUBLISH_IN_FLIGHT_MAX, RELAY_BACKOFF_MS_MAX, RELAY_BACKOFF_MS_MIN,
    RELAY_CONNECTION_POLL_MS, RELAY_IDLE_POLL_MS, RELAY_STOP_WAIT_MS, RELAY_WARN_INTERVAL_MS,
    SIGNED_BATCH_FILL_MIN,
};
use self::store::Store;
pub use self::store::{OUTBOX_FILE, SLED_OUTBOX_TREE};
use crate::durable::{self, DurableError, Storage};
use crate::event::{Clock, OutgoingEvent};
use crate::publish::{too_many, Accepted, PublishError, PublishFuture, PublishOutcome, Publisher};

/// Calls that may wait in the channel to the writer thread. A caller that
/// finds it full waits (bounded by the gRPC request timeout): a burst pushes
/// back instead of growing memory. Worst case in memory: this many calls of
/// [`crate::publish::EVENTS_PER_CALL_MAX`] events of [`ENTRY_BYTES_MAX`] bytes;
/// real events are below 2 KiB.
pub const OUTBOX_QUEUE_CALLS_MAX: usize = 1024;

/// Most calls gathered into one transaction and one sync.
pub const GROUP_COMMIT_CALLS_MAX: usize = 1024;

/// The writer stops gathering calls into a batch once it holds this many
/// bytes (one call is never split).
pub const GROUP_COMMIT_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Default of [`OutboxConfig::entries_max`]: events waiting for JetStream.
pub const OUTBOX_ENTRIES_MAX_DEFAULT: u64 = 1_000_000;

/// Default of [`OutboxConfig::bytes_max`]: 1 GiB of waiting events.
pub const OUTBOX_BYTES_MAX_DEFAULT: u64 = 1024 * 1024 * 1024;

/// Key bytes counted per entry in [`OutboxSnapshot::bytes`] (the value's
/// length plus this).
const KEY_BYTES: u64 = 8;

/// Where the outbox lives and how large it may grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxConfig {
    /// The outbox directory (created if missing): the outbox is its
    /// [`OUTBOX_FILE`]. One service per directory: redb locks the file. A
    /// sled outbox found here is migrated on the first open.
    pub dir: PathBuf,
    /// Most events waiting in the outbox.
    pub entries_max: u64,
    /// Most bytes waiting in the outbox (keys and values).
    pub bytes_max: u64,
}

impl OutboxConfig {
    /// An outbox in `dir` with the default limits.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), entries_max: OUTBOX_ENTRIES_MAX_DEFAULT, bytes_max: OUTBOX_BYTES_MAX_DEFAULT }
    }
}

/// Why the outbox could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The store could not be opened or migrated (e.g. another process
    /// holds it).
    #[error("cannot open the outbox: {0}")]
    Open(#[from] DurableError),
    /// Reading or writing the outbox failed.
    #[error("cannot read the outbox: {0}")]
    Read(Box<redb::Error>),
    /// A stored entry does not parse.
    #[error(transparent)]
    Corrupt(#[from] EntryError),
    /// A limit is zero.
    #[error("outbox limits must be positive (entries_max {entries_max}, bytes_max {bytes_max})")]
    Limits {
        /// The configured entry limit.
        entries_max: u64,
        /// The configured byte limit.
        bytes_max: u64,
    },
    /// The writer thread could not be started.
    #[error("cannot start the outbox writer thread: {0}")]
    Thread(std::io::Error),
}

/// Counters shared by the writer, the relay and [`OutboxStatus`].
#[derive(Debug, Default)]
struct Counters {
    depth: AtomicU64,
    bytes: AtomicU64,
    accepted_events_total: AtomicU64,
    published_total: AtomicU64,
    /// Atomic batches acknowledged by JetStream.
    batches_total: AtomicU64,
    publish_errors_total: AtomicU64,
    flushes_total: AtomicU64,
    /// Microseconds spent in group commits (the transaction and its sync).
    flush_us_total: AtomicU64,
    full_total: AtomicU64,
    /// Every sequence below this is durable on disk.
    durable_next_seq: AtomicU64,
    /// The last write or flush failed (cleared by the next success).
    write_failed: AtomicBool,
    /// The outbox accepts no more calls.
    closed: AtomicBool,
}

/// One call for the writer thread.
#[derive(Debug)]
struct Append {
    /// Encoded entry values (enqueue time filled in by the writer).
    values: Vec<Vec<u8>>,
    /// Keys and values of all of them.
    bytes: u64,
    reply: oneshot::Sender<Result<u64, AppendError>>,
}

/// Why the writer did not write a call.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AppendError {
    Full { depth: u64, bytes: u64, entries_max: u64, bytes_max: u64 },
    Storage { error: String, maybe_stored: bool },
}

crate::from_redb_errors!(OutboxError, OutboxError::Read);

impl From<store::StoreError> for OutboxError {
    fn from(e: store::StoreError) -> Self {
        match e {
            store::StoreError::Redb(e) => Self::Read(e),
            store::StoreError::Corrupt(e) => Self::Corrupt(e),
        }
    }
}

/// The way in to the writer thread. The only long-lived sender sits here, so
/// closing it lets the writer finish what is queued and stop.
#[derive(Debug, Default)]
struct Intake {
    tx: RwLock<Option<mpsc::Sender<Append>>>,
}

impl Intake {
    fn sender(&self) -> Option<mpsc::Sender<Append>> {
        self.tx.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn close(&self) {
        self.tx.write().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// The durable outbox: open it, hand [`Outbox::publisher`] to the
/// [`crate::Agency`], start the relay, and [`Outbox::shutdown`] it at the end.
/// Dropping it without shutdown stops intake and the relay at once, as a
/// crash would (entries stay on disk).
#[derive(Debug)]
pub struct Outbox {
    store: Arc<Store>,
    counters: Arc<Counters>,
    intake: Arc<Intake>,
    notify: Arc<Notify>,
    clock: Arc<dyn Clock>,
    config: OutboxConfig,
    writer: Option<std::thread::JoinHandle<()>>,
    relay: Option<relay::RelayHandle>,
}

/// What [`Outbox::shutdown`] left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Entries still in the outbox; they are published after the next start.
    pub remaining_entries: u64,
    /// Whether the relay emptied the outbox before the drain deadline.
    pub drained: bool,
}

impl Outbox {
    /// Opens (or creates) the outbox in `config.dir` and starts its writer
    /// thread. Existing entries are counted (their total size is checked
    /// against nothing: an outbox over its limits only refuses new calls).
    /// `clock` stamps each entry's enqueue time.
    pub fn open(config: OutboxConfig, clock: Arc<dyn Clock>) -> Result<Self, OutboxError> {
        Self::check_limits(&config)?;
        let file = config.dir.join(OUTBOX_FILE);
        durable::migrate_from_sled(&config.dir, &file, |s, tx| store::copy_from_sled(&config.dir, s, tx))?;
        Self::open_in(config, Storage::File(file), clock)
    }

    /// Opens the outbox on `storage` (its redb file, or a test backend)
    /// instead of `config.dir`'s file, without migrating anything.
    pub fn open_in(
        config: OutboxConfig,
        storage: Storage,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OutboxError> {
        Self::check_limits(&config)?;
        let store = Store::new(durable::open(storage)?)?;
        let (depth, value_bytes) = store.totals()?;
        let bytes = depth * KEY_BYTES + value_bytes;
        let next_seq = store.next_seq()?;
        let counters = Arc::new(Counters::default());
        counters.depth.store(depth, Ordering::Relaxed);
        counters.bytes.store(bytes, Ordering::Relaxed);
        counters.durable_next_seq.store(next_seq, Ordering::Relaxed);
        let store = Arc::new(store);
        let (tx, rx) = mpsc::channel(OUTBOX_QUEUE_CALLS_MAX);
        let intake = Arc::new(Intake { tx: RwLock::new(Some(tx)) });
        let notify = Arc::new(Notify::new());
        let writer = writer::Writer {
            store: store.clone(),
            counters: counters.clone(),
            notify: notify.clone(),
            clock: clock.clone(),
            entries_max: config.entries_max,
            bytes_max: config.bytes_max,
            next_seq,
        };
        let writer = std::thread::Builder::new()
            .name("mpp-outbox-writer".to_owned())
            .spawn(move || writer.run(rx))
            .map_err(OutboxError::Thread)?;
        tracing::info!(dir = %config.dir.display(), entries = depth, bytes, next_seq, "Outbox opened");
        Ok(Self { store, counters, intake, notify, clock, config, writer: Some(writer), relay: None })
    }

    fn check_limits(config: &OutboxConfig) -> Result<(), OutboxError> {
        if config.entries_max == 0 || config.bytes_max == 0 {
            return Err(OutboxError::Limits { entries_max: config.entries_max, bytes_max: config.bytes_max });
        }
        Ok(())
    }

    /// The [`Publisher`] that accepts calls into this outbox. Cheap to clone;
    /// it does not keep the outbox open.
    pub fn publisher(&self) -> OutboxPublisher {
        OutboxPublisher { intake: self.intake.clone() }
    }

    /// A read-only view of depth, size, age and counters for health and
    /// metrics. It does not keep the outbox open.
    pub fn status(&self) -> OutboxStatus {
        OutboxStatus {
            counters: self.counters.clone(),
            store: Arc::downgrade(&self.store),
            clock: self.clock.clone(),
            entries_max: self.config.entries_max,
            bytes_max: self.config.bytes_max,
        }
    }

    /// Starts the relay task that publishes the entries to JetStream through
    /// `client` (see the module docs). Call it inside a Tokio runtime, once;
    /// a second call is ignored.
    pub fn start_relay(&mut self, client: async_nats::Client, config: RelayConfig) {
        if self.relay.is_some() {
            tracing::warn!("Outbox relay already started");
            return;
        }
        self.relay = Some(relay::spawn(
            self.store.clone(),
            self.counters.clone(),
            self.notify.clone(),
            self.clock.clone(),
            client,
            config,
        ));
    }

    /// Up to `limit` entries from sequence `from_seq` on, in outbox order.
    pub fn entries(&self, from_seq: u64, limit: usize) -> Result<Vec<StoredEvent>, OutboxError> {
        let rows = self.store.range(from_seq, limit)?;
        Ok(rows.iter().map(|(seq, v)| entry::decode(*seq, v)).collect::<Result<_, _>>()?)
    }

    /// Stops gracefully: no new calls are taken (calls already queued are
    /// still written and answered), the relay publishes what it can until the
    /// outbox is empty or `drain` has passed, and everything else stays on
    /// disk for the next start. The outbox directory is released when this
    /// returns (unless an [`Outbox::status`] snapshot is being taken at that
    /// very moment).
    pub async fn shutdown(mut self, drain: Duration) -> ShutdownReport {
        self.counters.closed.store(true, Ordering::Relaxed);
        self.intake.close();
        if let Some(writer) = self.writer.take() {
            match tokio::task::spawn_blocking(move || writer.join()).await {
                Ok(Ok(())) => {}
                _ => tracing::error!("The outbox writer thread panicked"),
            }
        }
        let mut drained = self.counters.depth.load(Ordering::Relaxed) == 0;
        if let Some(relay) = self.relay.take() {
            drained = relay.drain(drain).await;
        }
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.sync()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "Final outbox sync failed"),
            Err(e) => tracing::error!(error = %e, "Final outbox sync panicked"),
        }
        let remaining_entries = self.counters.depth.load(Ordering::Relaxed);
        tracing::info!(remaining_entries, drained, "Outbox closed");
        ShutdownReport { remaining_entries, drained }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.counters.closed.store(true, Ordering::Relaxed);
        self.intake.close();
        if let Some(relay) = self.relay.take() {
            relay.abort();
        }
        // The writer thread ends by itself once the queued calls are written;
        // it is not joined here, as dropping must not block.
    }
}

/// The [`Publisher`] of the outbox: a call's events are accepted once they are
/// durably in the outbox. [`Accepted::ack`] is `None` and
/// [`Accepted::outbox_seq`] names each event's entry.
#[derive(Debug, Clone)]
pub struct OutboxPublisher {
    intake: Arc<Intake>,
}

impl OutboxPublisher {
    async fn append(&self, events: &[OutgoingEvent]) -> Result<Vec<Accepted>, PublishError> {
        let first_id = events.first().map(|e| e.event_id().to_owned()).unwrap_or_default();
        let refuse = |reason, outcome, last_error: String| PublishError {
            reason,
            event_id: first_id.clone(),
            outcome,
            attempts: 1,
            last_error,
            accepted_before: Vec::new(),
        };
        let mut values = Vec::with_capacity(events.len());
        let mut bytes = 0u64;
        // The RPC's trace, kept with each of its events (crate::trace).
        let trace = crate::trace::current();
        for ev in events {
            let value = entry::encode(0, ev.subject(), ev.event_id(), trace.as_ref(), &ev.encode())
                .map_err(|e| refuse(ReasonCode::MessageTooLarge, PublishOutcome::NotStored, e.to_string()))?;
            bytes += KEY_BYTES + value.len() as u64;
            values.push(value);
        }
        let closed = || {
            refuse(
                ReasonCode::Unavailable,
                PublishOutcome::NotStored,
                "the outbox is shutting down and accepts no more calls".to_owned(),
            )
        };
        let tx = self.intake.sender().ok_or_else(closed)?;
        let (reply, answer) = oneshot::channel();
        tx.send(Append { values, bytes, reply }).await.map_err(|_| closed())?;
        drop(tx);
        match answer.await {
            Ok(Ok(first_seq)) => Ok(events
                .iter()
                .zip(first_seq..)
                .map(|(ev, seq)| Accepted {
                    event_id: ev.event_id().to_owned(),
                    ack: None,
                    outbox_seq: Some(seq),
                })
                .collect()),
            Ok(Err(AppendError::Full { depth, bytes, entries_max, bytes_max })) => Err(refuse(
                ReasonCode::OutboxFull,
                PublishOutcome::NotStored,
                format!(
                    "the outbox is full ({depth} of {entries_max} entries, {bytes} of {bytes_max} bytes): \
                     JetStream has not taken events for a while; retry later"
                ),
            )),
            Ok(Err(AppendError::Storage { error, maybe_stored })) => Err(refuse(
                ReasonCode::Unavailable,
                if maybe_stored { PublishOutcome::Unknown } else { PublishOutcome::NotStored },
                format!("the outbox could not be written: {error}"),
            )),
            Err(_) => Err(closed()),
        }
    }
}

impl Publisher for OutboxPublisher {
    fn publish_all<'a>(&'a self, events: &'a [OutgoingEvent]) -> PublishFuture<'a> {
        Box::pin(async move {
            if let Some(err) = too_many(events) {
                return Err(err);
            }
            if events.is_empty() {
                return Ok(Vec::new());
            }
            self.append(events).await
        })
    }
}

/// A read-only view of the outbox for health and metrics.
#[derive(Clone)]
pub struct OutboxStatus {
    counters: Arc<Counters>,
    store: Weak<Store>,
    clock: Arc<dyn Clock>,
    entries_max: u64,
    bytes_max: u64,
}

impl fmt::Debug for OutboxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxStatus").field("snapshot", &self.snapshot()).finish()
    }
}

/// The outbox at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutboxSnapshot {
    /// Entries waiting for their PubAck.
    pub depth: u64,
    /// Bytes of those entries (keys and values).
    pub bytes: u64,
    /// The entry limit.
    pub entries_max: u64,
    /// The byte limit.
    pub bytes_max: u64,
    /// Age of the oldest waiting entry, in seconds (0 when empty), from its
    /// stored enqueue time.
    pub oldest_age_s: f64,
    /// Events acknowledged by JetStream (duplicates included) since start.
    pub published_total: u64,
    /// Atomic batches acknowledged by JetStream since start (their events
    /// are counted in [`Self::published_total`]).
    pub batches_total: u64,
    /// Failed publish attempts (each failure of a send or a PubAck, a batch
    /// refused as a whole included) since start.
    pub publish_errors_total: u64,
    /// Group-commit flushes since start.
    pub flushes_total: u64,
    /// Microseconds those flushes took (the redb transaction and its sync),
    /// since start: divided by [`Self::flushes_total`], the commit latency.
    pub flush_us_total: u64,
    /// Events accepted into the outbox since start.
    pub accepted_events_total: u64,
    /// Calls refused with `OUTBOX_FULL` since start.
    pub full_total: u64,
    /// Every outbox sequence below this is flushed to disk.
    pub durable_next_seq: u64,
    /// The last write failed.
    pub write_failed: bool,
    /// The outbox takes no more calls (shutting down).
    pub closed: bool,
}

impl OutboxStatus {
    /// The current numbers.
    pub fn snapshot(&self) -> OutboxSnapshot {
        let c = &self.counters;
        let depth = c.depth.load(Ordering::Relaxed);
        let oldest_ms = if depth == 0 {
            None
        } else {
            self.store
                .upgrade()
                .and_then(|s| s.first().ok().flatten())
                .and_then(|(_, v)| entry::enqueued_at_ms(&v))
        };
        let oldest_age_s =
            oldest_ms.map_or(0.0, |ms| (self.clock.now_ms().saturating_sub(ms)).max(0) as f64 / 1000.0);
        OutboxSnapshot {
            depth,
            bytes: c.bytes.load(Ordering::Relaxed),
            entries_max: self.entries_max,
            bytes_max: self.bytes_max,
            oldest_age_s,
            published_total: c.published_total.load(Ordering::Relaxed),
            batches_total: c.batches_total.load(Ordering::Relaxed),
            publish_errors_total: c.publish_errors_total.load(Ordering::Relaxed),
            flushes_total: c.flushes_total.load(Ordering::Relaxed),
            flush_us_total: c.flush_us_total.load(Ordering::Relaxed),
            accepted_events_total: c.accepted_events_total.load(Ordering::Relaxed),
            full_total: c.full_total.load(Ordering::Relaxed),
            durable_next_seq: c.durable_next_seq.load(Ordering::Relaxed),
            write_failed: c.write_failed.load(Ordering::Relaxed),
            closed: c.closed.load(Ordering::Relaxed),
        }
    }

    /// Whether the outbox can take calls: `Err` with the reason when it is
    /// full, its last write failed, or it is shutting down. A large or old
    /// outbox alone is not a reason: taking calls while JetStream is away is
    /// what the outbox is for (watch `mpp_outbox_oldest_age_seconds`).
    pub fn accepting(&self) -> Result<(), String> {
        let s = self.snapshot();
        if s.closed {
            return Err("the outbox is shutting down".to_owned());
        }
        if s.write_failed {
            return Err("the last outbox write failed".to_owned());
        }
        if s.depth >= s.entries_max || s.bytes >= s.bytes_max {
            return Err(format!("the outbox is full ({} entries, {} bytes)", s.depth, s.bytes));
        }
        Ok(())
    }
}

impl crate::server::Readiness for OutboxStatus {
    fn check(&self) -> Result<(), String> {
        self.accepting()
    }
}
