//! [`CasKv`] over a NATS JetStream key-value bucket: every replica of a
//! process that opens the same bucket shares its keys, and they outlive
//! every replica's restart.
//!
//! The bucket is the stream `KV_<name>` on subjects `$KV.<name>.>`, created
//! (or brought to this configuration) by [`NatsKv::open`] with the
//! conventions of a JetStream key-value bucket (one message per subject,
//! rollups, direct gets), plus the bounds a key-value configuration cannot
//! express: at most [`BucketSpec::keys_max`] keys (messages) and
//! `keys_max × (value_bytes_max + overhead)` bytes, discarding NEW
//! messages when full, so that a writer is told ([`KvError::Full`]) rather
//! than someone's key silently dropped. Every key lives [`BucketSpec::max_age`]
//! after its last write, then expires. The bucket is kept in the storage
//! [`BucketSpec::storage`] names: on disk (every write synced as the server
//! syncs, `sync_interval`) or in the servers' memory (replicated the same
//! way in a cluster, lost only when every server holding it restarts).
//!
//! On a server that takes ADR-50 atomic batches (2.12 or newer) a bucket
//! created here allows them (`allow_atomic`; an existing one without it
//! takes none, [`CasKv::batches`] says so), and
//! [`CasKv::put_all_if`] writes many keys in one commit: every message
//! carries its key's expected revision (`Nats-Expected-Last-Subject-Sequence`),
//! the server checks them all when the batch commits and stores the batch
//! or nothing, and the messages take consecutive stream sequences (the
//! commit's PubAck names the last).
//!
//! The subjects a user needs (docs/OPERATIONS.md): publish
//! `$KV.<name>.>`, `$JS.API.STREAM.INFO.KV_<name>`,
//! `$JS.API.STREAM.CREATE.KV_<name>`, `$JS.API.STREAM.UPDATE.KV_<name>`,
//! `$JS.API.DIRECT.GET.KV_<name>.>`, and for the watch (an ordered pull
//! consumer) `$JS.API.CONSUMER.CREATE.KV_<name>.>`,
//! `$JS.API.CONSUMER.MSG.NEXT.KV_<name>.>`,
//! `$JS.API.CONSUMER.DELETE.KV_<name>.>` and
//! `$JS.API.CONSUMER.INFO.KV_<name>.>`; and its own inbox.

use std::future::IntoFuture;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy, ReplayPolicy};
use async_nats::jetstream::kv::{self, Operation};
/// Where a bucket's stream keeps its messages (file or memory).
pub use async_nats::jetstream::stream::StorageType;
use async_nats::jetstream::stream::{self, DiscardPolicy};
use futures::StreamExt;

use crate::cas::{valid_key, CasKv, KvChange, KvError, KvFuture, KvValue, KvWrite};

/// How long one bucket operation may take before it counts as failed, in
/// milliseconds (the caller fails closed).
pub const KV_OP_TIMEOUT_MS: u64 = 2_000;

/// Bytes a stored message may take beyond its value (subject and headers).
pub const KV_MESSAGE_OVERHEAD_BYTES: i64 = 256;

/// The bucket's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSpec {
    /// The bucket's name (`KV_<name>` is its stream).
    pub name: String,
    /// Most keys the bucket holds.
    pub keys_max: i64,
    /// Largest value, in bytes.
    pub value_bytes_max: i32,
    /// How long a key lives after its last write.
    pub max_age: Duration,
    /// Copies of the bucket in a NATS cluster (1 on a single server).
    pub replicas: usize,
    /// Where the servers keep it: [`StorageType::File`] (each write costs
    /// a sync on a `sync_interval: always` server) or
    /// [`StorageType::Memory`] (at most `keys_max × (value_bytes_max +
    /// overhead)` bytes of each server's memory, gone when every server
    /// holding a copy restarts). Fixed when the bucket is created.
    pub storage: StorageType,
}

impl BucketSpec {
    /// The stream configuration of the bucket.
    pub fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: format!("KV_{}", self.name),
            description: Some("MPP hub: shared lookup guessing budgets and lockouts".to_owned()),
            subjects: vec![format!("$KV.{}.>", self.name)],
            max_messages: self.keys_max,
            max_messages_per_subject: 1,
            max_bytes: self
                .keys_max
                .saturating_mul(i64::from(self.value_bytes_max) + KV_MESSAGE_OVERHEAD_BYTES),
            max_age: self.max_age,
            max_message_size: self.value_bytes_max.saturating_add(KV_MESSAGE_OVERHEAD_BYTES as i32),
            storage: self.storage,
            num_replicas: self.replicas.max(1),
            allow_rollup: true,
            deny_delete: true,
            deny_purge: false,
            allow_direct: true,
            allow_atomic_publish: true,
            discard: DiscardPolicy::New,
            ..Default::default()
        }
    }
}

/// Why the bucket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum NatsKvError {
    /// The name is not a valid bucket name.
    #[error("invalid key-value bucket name {0:?}")]
    BadName(String),
    /// Creating or updating the stream failed (permissions, limits, NATS down).
    #[error("creating or updating the key-value bucket {name}: {source}")]
    Stream {
        /// The bucket.
        name: String,
        /// The cause.
        source: async_nats::jetstream::context::CreateStreamError,
    },
    /// Binding to the bucket failed.
    #[error("opening the key-value bucket {name}: {source}")]
    Bind {
        /// The bucket.
        name: String,
        /// The cause.
        source: async_nats::jetstream::context::KeyValueError,
    },
}

/// A [`CasKv`] on a JetStream key-value bucket.
#[derive(Debug, Clone)]
pub struct NatsKv {
    store: kv::Store,
    timeout: Duration,
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    /// Whether the server and the stream take atomic batches.
    batches: bool,
    /// The stream as [`NatsKv::open`] creates it, to create it again when it
    /// is gone (a memory bucket on a restarted single server).
    config: stream::Config,
}

/// `file` or `memory`, as the flags and the `nats` tool spell them.
pub fn storage_name(storage: StorageType) -> &'static str {
    match storage {
        StorageType::File => "file",
        StorageType::Memory => "memory",
    }
}

fn valid_bucket_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl NatsKv {
    /// Binds to the bucket of `spec`, creating it if it does not exist. An
    /// existing bucket is used as it is (the hub's NATS user may not update
    /// streams): when its bounds differ from `spec`, a warning says so and
    /// an operator changes them (`nats stream edit KV_<name>`). A stream's
    /// storage cannot be changed at all: when it differs from `spec`, a
    /// warning names both and the way to switch (remove the stream while
    /// no process uses it, and let the next one create it).
    pub async fn open(client: async_nats::Client, spec: &BucketSpec) -> Result<Self, NatsKvError> {
        if !valid_bucket_name(&spec.name) {
            return Err(NatsKvError::BadName(spec.name.clone()));
        }
        let js = async_nats::jetstream::new(client.clone());
        let want = spec.stream_config();
        let config = want.clone();
        let server_batches = crate::stream::server_supports_atomic_batches(&client.server_info().version);
        let mut batches = server_batches;
        match js.get_stream(&want.name).await {
            Ok(existing) => {
                let have = &existing.cached_info().config;
                // Used as it is (the hub's user may not update streams): a
                // bucket created without `allow_atomic` takes no batches.
                batches = server_batches && have.allow_atomic_publish;
                if (have.max_messages, have.max_age, have.max_bytes, have.discard)
                    != (want.max_messages, want.max_age, want.max_bytes, want.discard)
                {
                    tracing::warn!(
                        bucket = %spec.name,
                        keys_max = have.max_messages,
                        wanted_keys_max = want.max_messages,
                        max_age_s = have.max_age.as_secs(),
                        wanted_max_age_s = want.max_age.as_secs(),
                        "The key-value bucket exists with other bounds; using it as it is"
                    );
                }
                if have.storage != want.storage {
                    tracing::warn!(
                        bucket = %spec.name,
                        storage = storage_name(have.storage),
                        wanted_storage = storage_name(want.storage),
                        "The key-value bucket exists with {} storage, not the {} configured; using it \
                         as it is (NATS cannot change a stream's storage). To switch, stop every process \
                         using it, run `nats stream rm {}` and start them again (the bucket is created \
                         afresh, empty); or keep it by configuring {} storage (mpp-hub: \
                         --guard-bucket-storage {})",
                        storage_name(have.storage),
                        storage_name(want.storage),
                        want.name,
                        storage_name(have.storage),
                        storage_name(have.storage),
                    );
                }
            }
            Err(_) => {
                js.create_stream(want)
                    .await
                    .map_err(|source| NatsKvError::Stream { name: spec.name.clone(), source })?;
            }
        }
        let store = js
            .get_key_value(spec.name.clone())
            .await
            .map_err(|source| NatsKvError::Bind { name: spec.name.clone(), source })?;
        Ok(Self { store, timeout: Duration::from_millis(KV_OP_TIMEOUT_MS), client, js, batches, config })
    }

    fn subject(&self, key: &str) -> String {
        // The context is the default one (no domain), so no JetStream
        // prefix goes before the key's subject.
        let mut subject = String::new();
        subject.push_str(self.store.put_prefix.as_ref().unwrap_or(&self.store.prefix));
        subject.push_str(key);
        subject
    }

    /// `writes` as one atomic batch; the revisions (consecutive, the last
    /// the commit's sequence).
    async fn put_batch(&self, writes: &[KvWrite]) -> Result<Vec<u64>, KvError> {
        use async_nats::header::{
            NATS_BATCH_COMMIT, NATS_BATCH_COMMIT_FINAL, NATS_BATCH_ID, NATS_BATCH_SEQUENCE,
            NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
        };
        let n = writes.len();
        let id = batch_id();
        let mut ack = None;
        for (i, w) in writes.iter().enumerate() {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(NATS_BATCH_ID, id.as_str());
            headers.insert(NATS_BATCH_SEQUENCE, (i + 1).to_string().as_str());
            headers.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, w.expected.to_string().as_str());
            let payload = w.value.clone().into();
            if i + 1 == n {
                headers.insert(NATS_BATCH_COMMIT, NATS_BATCH_COMMIT_FINAL);
                let sent = self.js.publish_with_headers(self.subject(&w.key), headers, payload).await;
                ack = Some(sent.map_err(|e| batch_error(&e))?);
            } else {
                self.client
                    .publish_with_headers(self.subject(&w.key), headers, payload)
                    .await
                    .map_err(|e| KvError::Unavailable(e.to_string()))?;
            }
        }
        let Some(ack) = ack else { return Ok(Vec::new()) };
        let ack = self.timed("writing a batch", ack.into_future()).await?.map_err(|e| batch_error(&e))?;
        if ack.batch_id.as_deref() != Some(id.as_str()) || ack.batch_size != Some(n as u64) {
            // A server that stored the messages one by one: what became of
            // the others is unknown.
            return Err(KvError::Unavailable(format!(
                "the batch's acknowledgement names {:?} of {:?} messages, not {id} of {n}",
                ack.batch_id, ack.batch_size
            )));
        }
        let first = ack.sequence + 1 - n as u64;
        Ok((first..=ack.sequence).collect())
    }

    async fn timed<T, E: std::fmt::Display>(
        &self,
        what: &str,
        op: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<Result<T, E>, KvError> {
        tokio::time::timeout(self.timeout, op).await.map_err(|_| {
            KvError::Unavailable(format!("{what} timed out after {} ms", self.timeout.as_millis()))
        })
    }
}

/// The [`KvError`] of a failed write: a revision conflict, a full bucket
/// (the server's "maximum messages/bytes exceeded"), or unavailable.
fn write_error(e: &kv::UpdateError) -> KvError {
    if e.kind() == kv::UpdateErrorKind::WrongLastRevision {
        return KvError::Conflict;
    }
    let text = e.to_string();
    let source = std::error::Error::source(e).map(ToString::to_string).unwrap_or_default();
    if [&text, &source].iter().any(|t| t.contains("maximum messages") || t.contains("maximum bytes")) {
        return KvError::Full;
    }
    KvError::Unavailable(if source.is_empty() { text } else { format!("{text}: {source}") })
}

/// A batch id unique among the batches in flight (the server's limit is 64
/// characters): this process's start and a counter.
fn batch_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static PROCESS: OnceLock<String> = OnceLock::new();
    let process = PROCESS.get_or_init(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        format!("{:x}{:x}", t.as_nanos(), std::process::id())
    });
    format!("kv{process}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The [`KvError`] of a failed batch: a failed expectation is a conflict (of
/// some write of it, not said which), a full bucket is full, a lost
/// connection or acknowledgement is unavailable, and anything else the
/// server refused (batches disabled, too many in flight) is a refused
/// batch, written again one key at a time by the caller.
fn batch_error(e: &async_nats::jetstream::context::PublishError) -> KvError {
    use async_nats::jetstream::context::PublishErrorKind;
    let text = e.to_string();
    let source = std::error::Error::source(e).map(ToString::to_string).unwrap_or_default();
    match e.kind() {
        PublishErrorKind::WrongLastSequence => KvError::Conflict,
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
            KvError::Unavailable(format!("{text}: {source}"))
        }
        _ if [&text, &source]
            .iter()
            .any(|t| t.contains("maximum messages") || t.contains("maximum bytes")) =>
        {
            KvError::Full
        }
        _ => KvError::BatchRefused(format!("{text}: {source}")),
    }
}

impl CasKv for NatsKv {
    fn batches(&self) -> bool {
        self.batches
    }

    fn put_all_if<'a>(&'a self, writes: &'a [KvWrite]) -> KvFuture<'a, Vec<u64>> {
        Box::pin(async move {
            if writes.iter().any(|w| !valid_key(&w.key)) {
                return Err(KvError::InvalidKey);
            }
            if !self.batches {
                return Err(KvError::BatchRefused("the bucket takes no atomic batches".to_owned()));
            }
            if writes.is_empty() {
                return Ok(Vec::new());
            }
            self.timed("writing a batch", self.put_batch(writes)).await?
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> KvFuture<'a, KvValue> {
        Box::pin(async move {
            if !valid_key(key) {
                return Err(KvError::InvalidKey);
            }
            let entry = self.timed("reading a key", self.store.entry(key)).await?;
            match entry.map_err(|e| KvError::Unavailable(e.to_string()))? {
                None => Ok(KvValue { value: None, revision: 0 }),
                Some(e) => Ok(match e.operation {
                    Operation::Put => KvValue { value: Some(e.value.to_vec()), revision: e.revision },
                    Operation::Delete | Operation::Purge => KvValue { value: None, revision: e.revision },
                }),
            }
        })
    }

    fn put_if<'a>(&'a self, key: &'a str, value: Vec<u8>, expected: u64) -> KvFuture<'a, u64> {
        Box::pin(async move {
            if !valid_key(key) {
                return Err(KvError::InvalidKey);
            }
            let put = self.store.update(key, value.into(), expected);
            self.timed("writing a key", put).await?.map_err(|e| write_error(&e))
        })
    }

    fn watch(&self) -> KvFuture<'_, futures::stream::BoxStream<'static, Result<KvChange, KvError>>> {
        Box::pin(async move {
            // The bucket's message count now: with none, the (empty)
            // snapshot is complete at once.
            let mut stream = self.store.stream.clone();
            let info = match self.timed("reading the bucket's state", stream.info()).await? {
                Ok(info) => info.clone(),
                Err(e) => {
                    // Gone (a memory bucket whose servers all restarted: a
                    // single server keeps no memory stream): created again,
                    // empty, as the first process to open it would.
                    let created = self.js.get_or_create_stream(self.config.clone());
                    let mut created = self
                        .timed("creating the bucket again", created)
                        .await?
                        .map_err(|c| KvError::Unavailable(format!("{e}; creating it again: {c}")))?;
                    tracing::warn!(
                        bucket = %self.config.name,
                        error = %e,
                        "The key-value bucket could not be read; created it again if it was gone (its keys are lost)"
                    );
                    let info = self.timed("reading the bucket's state", created.info()).await?;
                    info.map_err(|e| KvError::Unavailable(e.to_string()))?.clone()
                }
            };
            let empty = info.state.messages == 0;
            // An ordered pull consumer from each key's last value on (a
            // push consumer's first delivery waited for its heartbeat).
            let config = pull::OrderedConfig {
                filter_subject: format!("{}>", self.store.prefix),
                deliver_policy: DeliverPolicy::LastPerSubject,
                replay_policy: ReplayPolicy::Instant,
                description: Some("MPP hub: lookup guard cache".to_owned()),
                ..Default::default()
            };
            let consumer = self.timed("watching the bucket", stream.create_consumer(config)).await?;
            let consumer = consumer.map_err(|e| KvError::Unavailable(e.to_string()))?;
            let messages = self.timed("watching the bucket", consumer.messages()).await?;
            let messages = messages.map_err(|e| KvError::Unavailable(e.to_string()))?;
            let prefix = self.store.prefix.clone();
            let mut current_sent = empty;
            let head = futures::stream::iter(empty.then_some(Ok(KvChange::Current)));
            let changes = messages.flat_map(move |m| {
                let out: Vec<Result<KvChange, KvError>> = match change_of(m, &prefix) {
                    Err(e) => vec![Err(e)],
                    Ok((change, pending)) => {
                        // At 0 pending the snapshot has been delivered.
                        if !current_sent && pending == 0 {
                            current_sent = true;
                            vec![Ok(change), Ok(KvChange::Current)]
                        } else {
                            vec![Ok(change)]
                        }
                    }
                };
                futures::stream::iter(out)
            });
            Ok(head.chain(changes).boxed())
        })
    }
}

/// The change a watched message carries, and the messages still pending.
fn change_of<E: std::fmt::Display>(
    m: Result<async_nats::jetstream::Message, E>,
    prefix: &str,
) -> Result<(KvChange, u64), KvError> {
    let m = m.map_err(|e| KvError::Unavailable(e.to_string()))?;
    let info = m.info().map_err(|e| KvError::Unavailable(e.to_string()))?;
    let (revision, pending) = (info.stream_sequence, info.pending);
    let key = m.subject.as_str().strip_prefix(prefix).unwrap_or_default().to_owned();
    let deleted = m
        .headers
        .as_ref()
        .and_then(|h| h.get("KV-Operation"))
        .is_some_and(|v| matches!(v.as_str(), "DEL" | "PURGE"));
    let change = if deleted {
        KvChange::Deleted { key, revision }
    } else {
        KvChange::Put { key, value: m.payload.to_vec(), revision }
    };
    Ok((change, pending))
}
