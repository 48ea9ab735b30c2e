//! The hub's verdicts on this service's events, heard back and kept for the
//! back office.
//!
//! "Accepted" from an agency service means the event is durably in the
//! outbox; what the hub then decided (accepted into the log, rejected with
//! a reason, a duplicate) it tells each participant over its verdict feed
//! (`mpp.v1.VerdictService`, see the hub's `mpp_audit::verdicts`). With
//! `--hub-url` and `--hub-token-file` the service follows that feed
//! ([`spawn_follower`]), keeps every verdict in `verdicts.redb` beside its
//! outbox ([`VerdictStore`]) and answers its back office through
//! `mpp.v1.EventStatusService` ([`EventStatusApi`]): `GetEventStatus` for one
//! event, `WatchVerdicts` for all of them as they come.
//!
//! # Nothing missed, nothing twice
//!
//! Each batch of the feed is stored in one durable redb transaction
//! together with the feed's cursor (`scanned_to_seq`); the follower resumes
//! after that cursor when it or the hub restarts. A batch the store has
//! already taken (a resume that overlaps) changes nothing: verdicts at or
//! below the cursor are skipped.
//!
//! # Which verdict an event has
//!
//! The hub may hold several entries for one event id: a rejection and then,
//! after an operator's redrive, an acceptance; an acceptance and later
//! duplicates (a resend). An event's status is its acceptance if there is
//! one, else its latest rejection; a duplicate never replaces a verdict.
//!
//! # Bounds
//!
//! - The store keeps the newest [`VERDICTS_KEPT_MAX`] verdicts; older ones
//!   are removed in the transaction that goes past the bound, and their
//!   events answer "no verdict known" again (an auditor's receipt at the hub
//!   stays the proof).
//! - At most [`VERDICT_WATCHES_MAX`] `WatchVerdicts` streams at once; each
//!   reads [`WATCH_PAGE_VERDICTS`] verdicts at a time and ends when its
//!   client has not taken one for [`WATCH_SEND_STALL`].
//! - The follower retries a lost feed after [`FOLLOW_RETRY_MS_MIN`],
//!   doubling to [`FOLLOW_RETRY_MS_MAX`].
//!
//! # Waiting for the verdict on any call
//!
//! A back office that wants the hub's verdict in the answer of a call sends
//! the metadata entry `mpp-wait-verdict-ms: <ms>` (at most
//! [`WAIT_VERDICT_MS_MAX`]) with any RPC of the service. The service answers
//! as always once the events are in its outbox, but first waits up to that
//! long for the hub's verdicts on the events the call published, and puts
//! them in the answer's metadata entry `mpp-verdicts`: one
//! `<event_id>=<verdict>` per event, comma-separated, where the verdict is
//! `accepted:<seq>`, `rejected:<REASON_CODE>`, `duplicate:<seq>` or
//! `pending` (not known by the deadline; ask `GetEventStatus` later). The
//! call's own answer and status never depend on the wait ([`WaitVerdicts`]).

// redb's error is 160 bytes; see `crate::durable`.
#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use mpp_core::ids::EventId;
use mpp_core::ReasonCode;
use mpp_edge::auth::BearerToken;
use mpp_proto::v1 as pb;
use mpp_proto::v1::event_status_service_server::EventStatusService;
use mpp_proto::v1::verdict_service_client::VerdictServiceClient;
use prost::Message;
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::{mpsc, watch, Semaphore};
use tonic::server::NamedService;
use tonic::{Code, Request, Response, Status};
use tracing::{debug, info, warn};

use crate::durable::{self, Storage};
use crate::error::reason_status;
use crate::link::{self, LinkError};

/// The file of the verdict store, in the service's data directory.
pub const VERDICTS_FILE: &str = "verdicts.redb";

/// Verdicts the store keeps at most (about 200 bytes each on disk: 200 MB).
pub const VERDICTS_KEPT_MAX: u64 = 1_000_000;

/// `WatchVerdicts` streams open at once.
pub const VERDICT_WATCHES_MAX: usize = 16;

/// Verdicts a watch reads from the store at a time.
pub const WATCH_PAGE_VERDICTS: usize = 256;

/// How long a watch waits for its client to take a verdict before it ends.
pub const WATCH_SEND_STALL: Duration = Duration::from_secs(10);

/// First wait before the follower reconnects to the hub, in milliseconds.
pub const FOLLOW_RETRY_MS_MIN: u64 = 500;

/// Longest wait before the follower reconnects to the hub, in milliseconds.
pub const FOLLOW_RETRY_MS_MAX: u64 = 30_000;

/// Largest request the event-status service decodes, in bytes (an event id
/// or a cursor).
pub const EVENT_STATUS_REQUEST_BYTES_MAX: usize = 1024;

/// Longest wait a call may ask for with `mpp-wait-verdict-ms`, in
/// milliseconds.
pub const WAIT_VERDICT_MS_MAX: u64 = 30_000;

/// The request metadata entry that asks for the verdicts in the answer.
pub const WAIT_VERDICT_METADATA_KEY: &str = "mpp-wait-verdict-ms";

/// The answer metadata entry that carries them.
pub const VERDICTS_METADATA_KEY: &str = "mpp-verdicts";

/// Verdicts by hub log sequence (the encoded `mpp.v1.EventVerdict`).
const BY_SEQ: TableDefinition<u64, &[u8]> = TableDefinition::new("verdicts_by_seq");
/// The sequence of each event's status verdict (see the module docs).
const BY_EVENT: TableDefinition<&str, u64> = TableDefinition::new("verdict_seq_by_event");
/// The feed's cursor.
const META: TableDefinition<&str, u64> = TableDefinition::new("verdict_meta");
const CURSOR: &str = "scanned_to_seq";

/// Why the verdict store failed.
#[derive(Debug, thiserror::Error)]
pub enum VerdictError {
    /// The redb file could not be opened.
    #[error(transparent)]
    Open(#[from] durable::DurableError),
    /// A redb operation failed.
    #[error("verdict store: {0}")]
    Redb(Box<redb::Error>),
    /// A stored verdict does not decode (the file was altered).
    #[error("verdict store: a stored verdict does not decode: {0}")]
    Corrupt(#[from] prost::DecodeError),
}

crate::from_redb_errors!(VerdictError, VerdictError::Redb);

/// The verdicts this service has heard back (see the module docs).
#[derive(Debug)]
pub struct VerdictStore {
    db: redb::Database,
    /// The cursor after each stored batch, for watchers and waiters.
    cursor: watch::Sender<u64>,
    kept_max: u64,
    counts: VerdictCounts,
}

/// Verdicts stored since the service started, by verdict and reason code,
/// for `/metrics` (`mpp_agency_verdicts_total`). The labels are bounded:
/// the verdict is one of four words and the reason one of
/// [`ReasonCode`]'s codes, `""` when accepted or a duplicate, or `OTHER`
/// for a code this build does not know (a newer hub).
#[derive(Debug, Default)]
pub struct VerdictCounts(std::sync::Mutex<std::collections::BTreeMap<(&'static str, &'static str), u64>>);

impl VerdictCounts {
    fn count(&self, v: &pb::EventVerdict) {
        let (verdict, reason) = match pb::Verdict::try_from(v.verdict) {
            Ok(pb::Verdict::Accepted) => ("accepted", ""),
            Ok(pb::Verdict::Duplicate) => ("duplicate", ""),
            Ok(pb::Verdict::Rejected) => {
                ("rejected", ReasonCode::from_code(&v.reason_code).map_or("OTHER", ReasonCode::as_str))
            }
            _ => ("unknown", ""),
        };
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry((verdict, reason))
            .or_default() += 1;
    }

    /// Every (verdict, reason, count) so far, in label order.
    pub fn snapshot(&self) -> Vec<(&'static str, &'static str, u64)> {
        let counts = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.iter().map(|(&(v, r), &n)| (v, r, n)).collect()
    }
}

fn is_duplicate(v: &pb::EventVerdict) -> bool {
    v.verdict == pb::Verdict::Duplicate as i32
}

fn is_accepted(v: &pb::EventVerdict) -> bool {
    v.verdict == pb::Verdict::Accepted as i32
}

impl VerdictStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open_in(dir: &Path) -> Result<Self, VerdictError> {
        Self::open(Storage::File(dir.join(VERDICTS_FILE)), VERDICTS_KEPT_MAX)
    }

    /// Opens the store on `storage`, keeping at most `kept_max` verdicts.
    pub fn open(storage: Storage, kept_max: u64) -> Result<Self, VerdictError> {
        let db = durable::open(storage)?;
        let txn = db.begin_write()?;
        let cursor = {
            txn.open_table(BY_SEQ)?;
            txn.open_table(BY_EVENT)?;
            let meta = txn.open_table(META)?;
            let cursor = meta.get(CURSOR)?.map(|v| v.value()).unwrap_or(0);
            cursor
        };
        txn.commit()?;
        Ok(Self {
            db,
            cursor: watch::Sender::new(cursor),
            kept_max: kept_max.max(1),
            counts: VerdictCounts::default(),
        })
    }

    /// The feed's cursor: every hub entry up to it has been looked at.
    pub fn cursor(&self) -> u64 {
        *self.cursor.borrow()
    }

    /// A receiver that changes after every stored batch.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.cursor.subscribe()
    }

    /// Stores one batch of the feed and its cursor in one durable
    /// transaction; verdicts at or below the stored cursor are skipped.
    /// Returns how many verdicts were new.
    pub fn apply(&self, batch: &pb::VerdictBatch) -> Result<usize, VerdictError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::Immediate);
        let mut added = 0;
        let before;
        let cursor = {
            let mut meta = txn.open_table(META)?;
            let cursor = meta.get(CURSOR)?.map(|v| v.value()).unwrap_or(0);
            before = cursor;
            let mut by_seq = txn.open_table(BY_SEQ)?;
            let mut by_event = txn.open_table(BY_EVENT)?;
            for v in batch.verdicts.iter().filter(|v| v.seq > cursor) {
                by_seq.insert(v.seq, v.encode_to_vec().as_slice())?;
                added += 1;
                if v.event_id.is_empty() {
                    continue;
                }
                let current = match by_event.get(v.event_id.as_str())? {
                    Some(seq) => {
                        by_seq.get(seq.value())?.map(|b| pb::EventVerdict::decode(b.value())).transpose()?
                    }
                    None => None,
                };
                let replaces = match &current {
                    None => true,
                    Some(c) => !is_duplicate(v) && !is_accepted(c),
                };
                if replaces {
                    by_event.insert(v.event_id.as_str(), v.seq)?;
                }
            }
            // Keep the newest `kept_max`: drop the oldest, and their event
            // index entries where they are the event's status.
            let excess = by_seq.len()?.saturating_sub(self.kept_max);
            for _ in 0..excess {
                let Some((seq, bytes)) = by_seq.pop_first()? else { break };
                let old = pb::EventVerdict::decode(bytes.value())?;
                let seq = seq.value();
                drop(bytes);
                if !old.event_id.is_empty()
                    && by_event.get(old.event_id.as_str())?.map(|s| s.value()) == Some(seq)
                {
                    by_event.remove(old.event_id.as_str())?;
                }
            }
            let next = cursor.max(batch.scanned_to_seq);
            meta.insert(CURSOR, next)?;
            next
        };
        txn.commit()?;
        for v in batch.verdicts.iter().filter(|v| v.seq > before) {
            self.counts.count(v);
        }
        self.cursor.send_replace(cursor);
        Ok(added)
    }

    /// The verdicts stored since the service started, by verdict and reason.
    pub fn counts(&self) -> &VerdictCounts {
        &self.counts
    }

    /// The status verdict of `event_id` (see the module docs), if known.
    pub fn status(&self, event_id: &str) -> Result<Option<pb::EventVerdict>, VerdictError> {
        let txn = self.db.begin_read()?;
        let Some(seq) = txn.open_table(BY_EVENT)?.get(event_id)?.map(|s| s.value()) else { return Ok(None) };
        let by_seq = txn.open_table(BY_SEQ)?;
        let found = by_seq.get(seq)?.map(|b| pb::EventVerdict::decode(b.value())).transpose()?;
        Ok(found)
    }

    /// At most `max` stored verdicts after hub sequence `after`, in order.
    pub fn after(&self, after: u64, max: usize) -> Result<Vec<pb::EventVerdict>, VerdictError> {
        let txn = self.db.begin_read()?;
        let by_seq = txn.open_table(BY_SEQ)?;
        let mut out = Vec::new();
        for item in by_seq.range(after.saturating_add(1)..)?.take(max) {
            let (_, bytes) = item?;
            out.push(pb::EventVerdict::decode(bytes.value())?);
        }
        Ok(out)
    }
}

/// Where the hub's verdict feed is, and how this service signs in.
#[derive(Debug, Clone)]
pub struct HubFeed {
    /// The hub's gRPC URL (`http://…` or `https://…`).
    pub url: String,
    /// This participant's token at the hub (the file's first line).
    pub token: String,
    /// CA certificate (PEM) of the hub's TLS certificate, for `https://`.
    pub tls_ca_file: Option<PathBuf>,
}

impl HubFeed {
    /// Reads the token file and checks the URL.
    pub fn load(url: &str, token_file: &Path, tls_ca_file: Option<&Path>) -> Result<Self, LinkError> {
        link::endpoint("--hub-url", url)?;
        let token = link::read_token(token_file)?;
        if let Some(ca) = tls_ca_file {
            link::read(ca)?;
        }
        Ok(Self { url: url.to_owned(), token, tls_ca_file: tls_ca_file.map(Path::to_owned) })
    }

    pub(crate) async fn connect(&self) -> Result<tonic::transport::Channel, String> {
        let mut endpoint = tonic::transport::Endpoint::from_shared(self.url.clone())
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        if let Some(ca) = &self.tls_ca_file {
            let pem = tokio::fs::read(ca).await.map_err(|e| format!("{}: {e}", ca.display()))?;
            endpoint = link::with_ca(endpoint, "--hub-tls-ca-file", pem).map_err(|e| e.to_string())?;
        }
        endpoint.connect().await.map_err(|e| e.to_string())
    }
}

/// Follows the hub's verdict feed into `store` until `stop` turns true
/// (see the module docs).
pub fn spawn_follower(
    store: Arc<VerdictStore>,
    hub: HubFeed,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let url = hub.url.clone();
        follow_with_backoff("verdicts", &url, &mut stop, || follow_once(&store, &hub)).await;
    })
}

/// Runs `once` (one feed of the hub, from the stored cursor until it ends,
/// answering how far it got) until `stop` turns true. A feed the hub ended
/// in order (its time bound, or it is stopping) resumes at once, and one
/// that made progress starts the backoff afresh; a lost or refused feed is
/// retried after [`FOLLOW_RETRY_MS_MIN`], doubling to
/// [`FOLLOW_RETRY_MS_MAX`]. Shared by the verdict and case-event followers.
pub(crate) async fn follow_with_backoff<F, Fut>(
    feed: &'static str,
    url: &str,
    stop: &mut watch::Receiver<bool>,
    mut once: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, String>>,
{
    let mut retry_ms = FOLLOW_RETRY_MS_MIN;
    loop {
        let outcome = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            r = once() => r,
        };
        match outcome {
            Ok(progress) => {
                debug!(feed, progress, "Feed ended; resuming");
                if progress > 0 {
                    retry_ms = FOLLOW_RETRY_MS_MIN;
                }
            }
            Err(e) => {
                warn!(feed, hub = %url, error = %e, retry_ms, "Feed lost or refused; retrying");
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(Duration::from_millis(retry_ms)) => {}
                }
                retry_ms = (retry_ms * 2).min(FOLLOW_RETRY_MS_MAX);
            }
        }
    }
}

/// One feed, from the stored cursor until it ends: the batches stored.
async fn follow_once(store: &Arc<VerdictStore>, hub: &HubFeed) -> Result<u64, String> {
    let channel = hub.connect().await?;
    let token = BearerToken::new(&hub.token).ok_or("unusable token")?;
    let mut client = VerdictServiceClient::with_interceptor(channel, token);
    let after_seq = store.cursor();
    let mut feed = client
        .follow_verdicts(pb::FollowVerdictsRequest { after_seq })
        .await
        .map_err(|s| format!("{}: {}", s.code(), s.message()))?
        .into_inner();
    info!(hub = %hub.url, after_seq, "Following the hub's verdicts");
    let mut stored = 0;
    while let Some(batch) = feed.message().await.map_err(|s| format!("{}: {}", s.code(), s.message()))? {
        let store = store.clone();
        let added = tokio::task::spawn_blocking(move || store.apply(&batch))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if added > 0 {
            debug!(added, "Verdicts stored");
        }
        stored += 1;
    }
    Ok(stored)
}

tokio::task_local! {
    /// The event ids the current call published, while a [`WaitVerdicts`]
    /// call collects them.
    static CALL_EVENTS: std::cell::RefCell<Vec<String>>;
}

/// Notes event ids the current call had accepted (a no-op outside a call
/// that waits for verdicts).
pub fn note_accepted<'a>(ids: impl IntoIterator<Item = &'a str>) {
    let _ = CALL_EVENTS.try_with(|c| c.borrow_mut().extend(ids.into_iter().map(str::to_owned)));
}

/// One event's verdict as `mpp-verdicts` spells it.
fn verdict_word(v: Option<&pb::EventVerdict>) -> String {
    match v {
        None => "pending".to_owned(),
        Some(v) if is_accepted(v) => format!("accepted:{}", v.seq),
        Some(v) if is_duplicate(v) => format!("duplicate:{}", v.seq),
        Some(v) => format!("rejected:{}", v.reason_code),
    }
}

/// Waits until every one of `ids` has a verdict in `store`, or `deadline`;
/// the `mpp-verdicts` value.
async fn await_verdicts(
    store: Arc<VerdictStore>,
    ids: Vec<String>,
    deadline: tokio::time::Instant,
) -> String {
    let mut changed = store.subscribe();
    loop {
        changed.borrow_and_update();
        let (s, wanted) = (store.clone(), ids.clone());
        let found = tokio::task::spawn_blocking(move || {
            wanted.iter().map(|id| s.status(id).ok().flatten()).collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let all_known = found.len() == ids.len() && found.iter().all(Option::is_some);
        if all_known || tokio::time::Instant::now() >= deadline {
            return ids
                .iter()
                .enumerate()
                .map(|(i, id)| format!("{id}={}", verdict_word(found.get(i).and_then(Option::as_ref))))
                .collect::<Vec<_>>()
                .join(",");
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            r = changed.changed() => if r.is_err() { return String::new() },
        }
    }
}

/// A service wrapper that honours `mpp-wait-verdict-ms` (see the module
/// docs) on every RPC of the service it wraps.
#[derive(Debug, Clone)]
pub struct WaitVerdicts<S> {
    inner: S,
    store: Option<Arc<VerdictStore>>,
}

impl<S> WaitVerdicts<S> {
    /// Wraps `inner`; without a store (no `--hub-url`) the wait answers
    /// every event `pending` at once.
    pub fn new(inner: S, store: Option<Arc<VerdictStore>>) -> Self {
        Self { inner, store }
    }
}

impl<S, B> tonic::codegen::Service<tonic::codegen::http::Request<B>> for WaitVerdicts<S>
where
    S: tonic::codegen::Service<
            tonic::codegen::http::Request<B>,
            Response = tonic::codegen::http::Response<tonic::body::Body>,
        > + Send,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: tonic::codegen::http::Request<B>) -> Self::Future {
        let wait_ms = req
            .headers()
            .get(WAIT_VERDICT_METADATA_KEY)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|ms| ms.min(WAIT_VERDICT_MS_MAX));
        let future = self.inner.call(req);
        let Some(wait_ms) = wait_ms else { return Box::pin(future) };
        let store = self.store.clone();
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
            let (result, ids) = CALL_EVENTS
                .scope(std::cell::RefCell::new(Vec::new()), async move {
                    let result = future.await;
                    (result, CALL_EVENTS.with(|c| c.take()))
                })
                .await;
            let mut response = result?;
            if ids.is_empty() {
                return Ok(response);
            }
            let value = match store {
                Some(store) => await_verdicts(store, ids, deadline).await,
                None => ids.iter().map(|id| format!("{id}=pending")).collect::<Vec<_>>().join(","),
            };
            if let Ok(v) = tonic::codegen::http::HeaderValue::from_str(&value) {
                response.headers_mut().insert(VERDICTS_METADATA_KEY, v);
            }
            Ok(response)
        })
    }
}

impl<S: NamedService> NamedService for WaitVerdicts<S> {
    const NAME: &'static str = S::NAME;
}

/// `mpp.v1.EventStatusService`: the back office's view of the verdicts.
#[derive(Debug, Clone)]
pub struct EventStatusApi {
    store: Option<Arc<VerdictStore>>,
    watches: Arc<Semaphore>,
}

impl EventStatusApi {
    /// Answers from `store`; `None` (no `--hub-url`) answers every call
    /// with `FAILED_PRECONDITION` (reason `VERDICT_FEED_OFF`).
    pub fn new(store: Option<Arc<VerdictStore>>) -> Self {
        Self { store, watches: Arc::new(Semaphore::new(VERDICT_WATCHES_MAX)) }
    }

    fn store(&self) -> Result<Arc<VerdictStore>, Status> {
        self.store.clone().ok_or_else(|| {
            reason_status(
                Code::FailedPrecondition,
                ReasonCode::VerdictFeedOff,
                "this service does not follow the hub's verdicts (no --hub-url / --hub-token-file)",
            )
        })
    }
}

fn internal(e: VerdictError) -> Status {
    tracing::error!(error = %e, "Verdict store read failed");
    Status::internal("the verdict store could not be read")
}

/// The stream type of `WatchVerdicts`.
pub type VerdictStream = Pin<Box<dyn Stream<Item = Result<pb::EventVerdict, Status>> + Send>>;

#[tonic::async_trait]
impl EventStatusService for EventStatusApi {
    type WatchVerdictsStream = VerdictStream;

    async fn get_event_status(
        &self,
        request: Request<pb::GetEventStatusRequest>,
    ) -> Result<Response<pb::EventStatus>, Status> {
        let store = self.store()?;
        let event_id = request.into_inner().event_id;
        if let Err(e) = EventId::parse(&event_id) {
            return Err(reason_status(Code::InvalidArgument, e.code, format!("event_id: {}", e.detail)));
        }
        let id = event_id.clone();
        let verdict = tokio::task::spawn_blocking(move || store.status(&id))
            .await
            .map_err(|_| Status::internal("the verdict store task failed"))?
            .map_err(internal)?;
        Ok(Response::new(pb::EventStatus { event_id, verdict_known: verdict.is_some(), verdict }))
    }

    async fn watch_verdicts(
        &self,
        request: Request<pb::WatchVerdictsRequest>,
    ) -> Result<Response<Self::WatchVerdictsStream>, Status> {
        let store = self.store()?;
        let permit = self.watches.clone().try_acquire_owned().map_err(|_| {
            reason_status(
                Code::ResourceExhausted,
                ReasonCode::TooManyFeeds,
                format!("{VERDICT_WATCHES_MAX} verdict watches are open; retry later"),
            )
        })?;
        let mut after = request.into_inner().after_seq;
        let mut changed = store.subscribe();
        let (tx, rx) = mpsc::channel(WATCH_PAGE_VERDICTS);
        tokio::spawn(async move {
            let _permit = permit;
            loop {
                changed.borrow_and_update();
                let s = store.clone();
                let page =
                    match tokio::task::spawn_blocking(move || s.after(after, WATCH_PAGE_VERDICTS)).await {
                        Ok(Ok(page)) => page,
                        Ok(Err(e)) => {
                            let _ = tx.send(Err(internal(e))).await;
                            return;
                        }
                        Err(_) => return,
                    };
                let full = page.len() == WATCH_PAGE_VERDICTS;
                for v in page {
                    after = v.seq;
                    if tx.send_timeout(Ok(v), WATCH_SEND_STALL).await.is_err() {
                        return;
                    }
                }
                if full {
                    continue;
                }
                tokio::select! {
                    _ = tx.closed() => return,
                    r = changed.changed() => if r.is_err() { return },
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(seq: u64, event_id: &str, verdict: pb::Verdict) -> pb::EventVerdict {
        pb::EventVerdict { seq, event_id: event_id.to_owned(), verdict: verdict as i32, ..Default::default() }
    }

    fn batch(verdicts: Vec<pb::EventVerdict>, scanned_to_seq: u64) -> pb::VerdictBatch {
        pb::VerdictBatch { verdicts, scanned_to_seq }
    }

    fn open(dir: &Path, kept_max: u64) -> VerdictStore {
        VerdictStore::open(Storage::File(dir.join(VERDICTS_FILE)), kept_max).unwrap()
    }

    #[test]
    fn verdicts_are_counted_once_by_verdict_and_known_reason() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 100);
        let rejected = |seq, code: &str| pb::EventVerdict {
            reason_code: code.to_owned(),
            ..verdict(seq, &format!("r{seq}"), pb::Verdict::Rejected)
        };
        let first = batch(
            vec![
                verdict(1, "a", pb::Verdict::Accepted),
                rejected(2, "ILLEGAL_TRANSITION"),
                rejected(3, "ILLEGAL_TRANSITION"),
                rejected(4, "NOT_A_CODE_THIS_BUILD_KNOWS"),
                verdict(5, "a", pb::Verdict::Duplicate),
            ],
            5,
        );
        store.apply(&first).unwrap();
        // A resume that overlaps counts only what is new.
        store
            .apply(&batch(
                vec![verdict(5, "a", pb::Verdict::Duplicate), verdict(6, "b", pb::Verdict::Accepted)],
                6,
            ))
            .unwrap();
        assert_eq!(
            store.counts().snapshot(),
            vec![
                ("accepted", "", 2),
                ("duplicate", "", 1),
                ("rejected", "ILLEGAL_TRANSITION", 2),
                ("rejected", "OTHER", 1),
            ]
        );
    }

    #[test]
    fn a_batch_is_taken_once_and_the_cursor_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 100);
        let b =
            batch(vec![verdict(3, "a", pb::Verdict::Accepted), verdict(7, "b", pb::Verdict::Rejected)], 9);
        assert_eq!(store.apply(&b).unwrap(), 2);
        assert_eq!(store.apply(&b).unwrap(), 0, "a resumed feed that overlaps adds nothing");
        assert_eq!(store.cursor(), 9);
        drop(store);
        let store = open(dir.path(), 100);
        assert_eq!(store.cursor(), 9);
        assert_eq!(store.after(0, 10).unwrap().iter().map(|v| v.seq).collect::<Vec<_>>(), [3, 7]);
        assert_eq!(store.after(3, 10).unwrap().iter().map(|v| v.seq).collect::<Vec<_>>(), [7]);
        // An empty batch still moves the cursor; it never goes back.
        store.apply(&batch(vec![], 20)).unwrap();
        store.apply(&batch(vec![], 15)).unwrap();
        assert_eq!(store.cursor(), 20);
    }

    #[test]
    fn an_acceptance_stands_a_duplicate_never_replaces_and_a_redrive_replaces_a_rejection() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 100);
        store
            .apply(&batch(
                vec![
                    verdict(1, "a", pb::Verdict::Accepted),
                    verdict(2, "b", pb::Verdict::Rejected),
                    verdict(3, "a", pb::Verdict::Duplicate),
                    verdict(4, "b", pb::Verdict::Accepted),
                    verdict(5, "b", pb::Verdict::Rejected),
                    verdict(6, "c", pb::Verdict::Rejected),
                    verdict(7, "c", pb::Verdict::Rejected),
                    verdict(8, "", pb::Verdict::Rejected),
                ],
                8,
            ))
            .unwrap();
        let seq = |id: &str| store.status(id).unwrap().map(|v| v.seq);
        assert_eq!(seq("a"), Some(1));
        assert_eq!(seq("b"), Some(4), "accepted after a redrive, and a later rejection changes nothing");
        assert_eq!(seq("c"), Some(7), "the latest rejection");
        assert_eq!(seq("d"), None);
        assert_eq!(store.after(0, 100).unwrap().len(), 8, "garbage without an id is kept by sequence");
    }

    #[test]
    fn the_oldest_verdicts_go_past_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 3);
        let ids = ["a", "b", "c", "d", "e"];
        let all =
            ids.iter().enumerate().map(|(i, id)| verdict(i as u64 + 1, id, pb::Verdict::Accepted)).collect();
        store.apply(&batch(all, 5)).unwrap();
        assert_eq!(store.after(0, 10).unwrap().iter().map(|v| v.seq).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(store.status("a").unwrap(), None);
        assert_eq!(store.status("b").unwrap(), None);
        assert_eq!(store.status("c").unwrap().map(|v| v.seq), Some(3));
    }
}
