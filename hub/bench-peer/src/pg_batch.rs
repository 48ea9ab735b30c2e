//! `--mode pg-batch`: the peer a province's IT team would build instead of
//! the hub. A consumer of the hub's own JetStream stream that writes each
//! pull batch into PostgreSQL in ONE transaction (`synchronous_commit` on,
//! the default): the log entries with the hub's SHA-256 hash chain, the case
//! and application projections upserted, the checkpoint (stream sequence and
//! head hash), and only then acknowledges the batch.
//!
//! Per message it makes the hub's checks, with the hub core's functions:
//! size and subject, protobuf decoding, [`validate`], the participant
//! registry ([`registry::admit`]: registered participant, a valid key, the
//! Ed25519 batch signature, service, event type and region) and the
//! registrar's signature on registry statements, dedupe by event id (only
//! accepted ids, as the hub), then the state machine
//! ([`mpp_core::state::next_state`]) against the projection read from
//! PostgreSQL. Every message becomes one entry built with
//! [`LogEntry::new`], so while the verdicts agree with the hub's the chain
//! is the hub's, hash for hash.
//!
//! Written as well as we know how: one reused connection whose statements
//! sqlx prepares once and caches; per batch one `SELECT … = ANY($1)` each for
//! the dedupe index and the batch's cases and applications, one
//! `INSERT … SELECT FROM UNNEST(arrays)` for the entries, one
//! `INSERT … ON CONFLICT DO UPDATE` from arrays per projection table, one
//! checkpoint `UPDATE`, one commit. The consumer task decodes, validates
//! and verifies signatures of batch N+1 while the writer task commits batch
//! N (the hub's overlap); the writer acknowledges a batch (`AckAll` on its
//! last message, as the hub) after its commit.
//!
//! What it does not do (the hub does): the rules of `decide_at` beyond the
//! state machine and the checks named above (applications filed before
//! their case is opened, held applications, the opener being a front
//! office, personal-data and PIN rules, case and timeline size limits,
//! service-standard terms and SLAs); the case timeline (its projection is
//! the case's and each application's state and counts); the Merkle tree;
//! signed checkpoints; operators' redrives; restoring the registry after a
//! restart (it starts from an empty database).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use mpp_core::checkpoint::KeyId;
use mpp_core::event::Target;
use mpp_core::log::{Hash32, GENESIS_HASH};
use mpp_core::registry::{self, EnvelopeSignature, Registry, Statement};
use mpp_core::signature::SignatureVerifier;
use mpp_core::state::{next_state, AppState};
use mpp_core::{EntryMeta, Envelope, EventBody, EventKind, LogEntry, ReasonCode, Rejection, Verdict};
use mpp_ledger::ledger::{check_message, Checked, SignedStatement};
use sqlx::{Connection as _, PgConnection};
use tokio::sync::mpsc;

/// Batches queued for the writer beyond the one it commits (the hub's
/// `WRITER_QUEUE_BATCHES_MAX`).
const WRITER_QUEUE_BATCHES: usize = 1;

/// Most messages delivered and not yet acked (the hub's
/// `ACK_PENDING_MESSAGES_MAX`).
const ACK_PENDING_MESSAGES_MAX: i64 = 8192;

/// How long JetStream waits for an ack before redelivering.
const ACK_WAIT: Duration = Duration::from_secs(60);

/// How long a batch keeps gathering after its first message (the hub's
/// `BATCH_GATHER_WAIT`).
const BATCH_GATHER_WAIT: Duration = Duration::from_millis(2);

/// How long the consumer waits for any message before giving up.
const IDLE_DEADLINE: Duration = Duration::from_secs(60);

/// While a batch's gathering time is over but the writer is busy, how often
/// the consumer looks whether it became idle (the batch goes on filling
/// meanwhile, as the hub's does).
const BUSY_WRITER_POLL: Duration = Duration::from_millis(1);

/// Verified signatures remembered (the hub's `VERIFIED_SIGNATURES_MAX`);
/// cleared whole when full.
const VERIFIED_SIGNATURES_MAX: usize = 4096;

/// The peer's tables. `entries.event_id` is set for accepted entries only
/// (NULL otherwise): its unique index is the dedupe index.
pub(crate) const SCHEMA: &str = "
CREATE TABLE entries (
    seq bigint PRIMARY KEY,
    stream_seq bigint NOT NULL,
    stream_time_ns bigint NOT NULL,
    verdict smallint NOT NULL,
    reason text,
    detail text NOT NULL,
    subject text NOT NULL,
    event_id bytea,
    case_id text,
    payload bytea NOT NULL,
    prev_hash bytea NOT NULL,
    hash bytea NOT NULL);
CREATE UNIQUE INDEX entries_event_id ON entries (event_id);
CREATE TABLE cases (
    case_id text PRIMARY KEY,
    agency text NOT NULL,
    opened_seq bigint NOT NULL,
    last_seq bigint NOT NULL,
    events integer NOT NULL);
CREATE TABLE applications (
    case_id text NOT NULL,
    application_id text NOT NULL,
    agency text NOT NULL,
    service text NOT NULL,
    state text NOT NULL,
    last_seq bigint NOT NULL,
    events integer NOT NULL,
    PRIMARY KEY (case_id, application_id));
CREATE TABLE standards (
    agency text NOT NULL,
    service text NOT NULL,
    version bigint NOT NULL,
    seq bigint NOT NULL,
    PRIMARY KEY (agency, service));
CREATE TABLE checkpoint (
    id smallint PRIMARY KEY CHECK (id = 1),
    last_seq bigint NOT NULL,
    last_stream_seq bigint NOT NULL,
    head_hash bytea NOT NULL);
INSERT INTO checkpoint VALUES (1, 0, 0, '\\x0000000000000000000000000000000000000000000000000000000000000000');
";

const INSERT_ENTRIES: &str =
    "INSERT INTO entries (seq, stream_seq, stream_time_ns, verdict, reason, detail, \
     subject, event_id, case_id, payload, prev_hash, hash) \
     SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::int2[], $5::text[], $6::text[], \
     $7::text[], $8::bytea[], $9::text[], $10::bytea[], $11::bytea[], $12::bytea[])";

const UPSERT_CASES: &str = "INSERT INTO cases (case_id, agency, opened_seq, last_seq, events) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int4[]) \
     ON CONFLICT (case_id) DO UPDATE SET last_seq = EXCLUDED.last_seq, events = cases.events + EXCLUDED.events";

const UPSERT_APPLICATIONS: &str = "INSERT INTO applications (case_id, application_id, agency, service, state, \
     last_seq, events) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::int4[]) \
     ON CONFLICT (case_id, application_id) DO UPDATE SET state = EXCLUDED.state, last_seq = EXCLUDED.last_seq, \
     events = applications.events + EXCLUDED.events";

const UPSERT_STANDARDS: &str = "INSERT INTO standards (agency, service, version, seq) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[]) \
     ON CONFLICT (agency, service) DO UPDATE SET version = EXCLUDED.version, seq = EXCLUDED.seq";

const UPDATE_CHECKPOINT: &str =
    "UPDATE checkpoint SET last_seq = $1, last_stream_seq = $2, head_hash = $3 WHERE id = 1";

/// Where and what to consume.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// NATS URL.
    pub(crate) nats_url: String,
    /// The JetStream stream.
    pub(crate) stream: String,
    /// The durable consumer's name.
    pub(crate) consumer: String,
    /// Messages to commit (stream sequences 1..=messages).
    pub(crate) messages: u64,
    /// Most messages per batch (the hub's `--batch-max`).
    pub(crate) batch_max: usize,
    /// The registrar's public keys (the hub's `--registrar-key-file`).
    pub(crate) registrar_keys: Vec<[u8; 32]>,
}

/// What a run did.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Outcome {
    /// Entries committed.
    pub(crate) events: u64,
    /// Seconds from the consumer's creation to the last commit.
    pub(crate) secs: f64,
    /// Entries per verdict.
    pub(crate) accepted: u64,
    /// Rejected entries.
    pub(crate) rejected: u64,
    /// Duplicate entries.
    pub(crate) duplicates: u64,
    /// Transactions committed.
    pub(crate) batches: u64,
    /// The hash of the entry at the last stream sequence, hex.
    pub(crate) head_hash: String,
    /// The head's stream sequence.
    pub(crate) last_stream_seq: u64,
    /// Ed25519 verifications actually computed (not from the cache).
    pub(crate) signatures_verified: u64,
    /// The writer's time per phase, seconds: reading the dedupe index and
    /// the projection, judging and chaining, inserting the entries,
    /// upserting the projections and the checkpoint, committing, acking.
    pub(crate) phase_secs: BTreeMap<&'static str, f64>,
}

/// A signature that verified: the public key and the message.
type Verified = ([u8; 32], Vec<u8>);

/// Ed25519 through ring (the hub's library), remembering the signatures
/// that verified (a participant's batch signature covers up to 256
/// envelopes), like the hub's `Trust`.
#[derive(Debug, Default)]
struct Verifier {
    verified: Mutex<HashMap<[u8; 64], Verified>>,
    computed: AtomicU64,
}

impl SignatureVerifier for Verifier {
    fn verify_ed25519(&self, public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
        {
            let g = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if g.get(signature).is_some_and(|(k, m)| k == public_key && m == message) {
                return true;
            }
        }
        self.computed.fetch_add(1, Ordering::Relaxed);
        let ok = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key)
            .verify(message, signature)
            .is_ok();
        if ok {
            let mut g = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if g.len() >= VERIFIED_SIGNATURES_MAX {
                g.clear();
            }
            g.insert(*signature, (*public_key, message.to_vec()));
        }
        ok
    }
}

/// The keys of the registry as of the last commit, for verifying a batch's
/// signatures on the consumer task ahead of the writer.
type KnownKeys = RwLock<HashMap<KeyId, (String, [u8; 32])>>;

/// One stream message, checked.
struct Msg {
    stream_seq: u64,
    stream_time_ns: i64,
    subject: String,
    payload: bytes::Bytes,
    checked: Result<Checked, Rejection>,
}

/// A batch for the writer: its messages and the one whose ack covers them.
struct Job {
    msgs: Vec<Msg>,
    last: jetstream::Message,
}

/// Runs the consumer against the database at `pg_url` (schema created)
/// until stream sequence `source.messages` is committed.
pub(crate) async fn run(pg_url: &str, source: Source) -> Result<Outcome> {
    let mut conn = PgConnection::connect(pg_url).await.context("connecting to PostgreSQL")?;
    sqlx::raw_sql(SCHEMA).execute(&mut conn).await.context("schema")?;
    // Plan each execution of the prepared statements with the tables' size
    // at the time: a generic plan made while the tables were nearly empty
    // would scan them whole ever after, instead of using their indexes.
    sqlx::raw_sql("SET plan_cache_mode = force_custom_plan")
        .execute(&mut conn)
        .await
        .context("plan cache mode")?;
    let client = async_nats::ConnectOptions::new()
        .name("mpp-bench-peer/pg-batch")
        .connect(&source.nats_url)
        .await
        .context("connecting to NATS")?;
    let js = jetstream::new(client);
    let stream = js.get_stream(&source.stream).await.context("the stream")?;
    let verifier = Arc::new(Verifier::default());
    let known: Arc<KnownKeys> = Arc::default();

    let started = Instant::now();
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(source.consumer.clone()),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: 1 },
            ack_policy: consumer::AckPolicy::All,
            ack_wait: ACK_WAIT,
            max_ack_pending: ACK_PENDING_MESSAGES_MAX,
            ..Default::default()
        })
        .await
        .context("creating the consumer")?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(source.batch_max)
        .expires(Duration::from_secs(5))
        .heartbeat(Duration::from_secs(2))
        .messages()
        .await
        .context("pull")?;

    let (tx, rx) = mpsc::channel::<Job>(WRITER_QUEUE_BATCHES);
    // Batches handed to the writer and not yet committed and acked.
    let in_flight = Arc::new(AtomicUsize::new(0));
    let writer = Writer {
        in_flight: in_flight.clone(),
        registry: Registry::default(),
        registrar_keys: source.registrar_keys.clone(),
        standards: HashMap::new(),
        seq: 0,
        head: GENESIS_HASH,
        verifier: verifier.clone(),
        known: known.clone(),
        outcome: Outcome {
            events: 0,
            secs: 0.0,
            accepted: 0,
            rejected: 0,
            duplicates: 0,
            batches: 0,
            head_hash: String::new(),
            last_stream_seq: 0,
            signatures_verified: 0,
            phase_secs: BTreeMap::new(),
        },
    };
    let writer_task = tokio::spawn(writer.run(conn, rx));

    // The consumer task: gathers batches, checks them and verifies their
    // signatures under the keys known so far, and hands them over: a batch
    // when it is full, or when its gathering time is over and the writer is
    // idle (the hub's rule), so that under load every transaction carries a
    // full batch.
    let mut next_seq = 1u64;
    let mut batch: Vec<Msg> = Vec::with_capacity(source.batch_max);
    let mut last: Option<jetstream::Message> = None;
    let mut gather_until: Option<tokio::time::Instant> = None;
    while next_seq <= source.messages {
        let wait = match gather_until {
            Some(t) => t.saturating_duration_since(tokio::time::Instant::now()).max(BUSY_WRITER_POLL),
            None => IDLE_DEADLINE,
        };
        let got = tokio::time::timeout(wait, messages.next()).await;
        match got {
            Ok(Some(m)) => {
                let m = m.map_err(|e| anyhow!("pull: {e}"))?;
                let info = m.info().map_err(|e| anyhow!("message info: {e}"))?;
                let stream_seq = info.stream_sequence;
                if stream_seq != next_seq {
                    bail!("stream sequence {stream_seq} where {next_seq} was expected");
                }
                next_seq += 1;
                let ns = info.published.unix_timestamp_nanos();
                let stream_time_ns = i64::try_from(ns).unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX });
                let subject = m.subject.to_string();
                let payload = m.payload.clone();
                let checked = check_message(&subject, &payload, stream_time_ns.div_euclid(1_000_000));
                batch.push(Msg { stream_seq, stream_time_ns, subject, payload, checked });
                last = Some(m);
                if gather_until.is_none() {
                    gather_until = Some(tokio::time::Instant::now() + BATCH_GATHER_WAIT);
                }
            }
            Ok(None) => bail!("the message stream ended"),
            Err(_) if gather_until.is_none() => bail!("no message for {IDLE_DEADLINE:?}"),
            Err(_) => {}
        }
        let deadline_passed = gather_until.is_some_and(|t| tokio::time::Instant::now() >= t);
        let idle = in_flight.load(Ordering::Acquire) == 0;
        let ready =
            batch.len() >= source.batch_max || next_seq > source.messages || (deadline_passed && idle);
        if ready && !batch.is_empty() {
            let msgs = std::mem::replace(&mut batch, Vec::with_capacity(source.batch_max));
            preverify(&msgs, &known, &verifier);
            let last = last.take().ok_or_else(|| anyhow!("a batch without its last message"))?;
            gather_until = None;
            in_flight.fetch_add(1, Ordering::AcqRel);
            if tx.send(Job { msgs, last }).await.is_err() {
                break;
            }
        }
    }
    drop(tx);
    let mut outcome = writer_task.await.context("writer task")??;
    outcome.secs = started.elapsed().as_secs_f64();
    outcome.signatures_verified = verifier.computed.load(Ordering::Relaxed);
    if outcome.last_stream_seq != source.messages {
        bail!("committed through stream seq {}, not {}", outcome.last_stream_seq, source.messages);
    }
    let _ = stream.delete_consumer(&source.consumer).await;
    Ok(outcome)
}

/// Verifies the batch's distinct envelope signatures under the keys the
/// registry held at the last commit (the hub's `Trust::preverify`); the
/// writer then finds them in the cache. Decides nothing.
fn preverify(msgs: &[Msg], known: &KnownKeys, verifier: &Verifier) {
    let keys = known.read().unwrap_or_else(|e| e.into_inner());
    let mut last: Option<[u8; 64]> = None;
    for m in msgs {
        let Ok(Checked::Event { env, signature: EnvelopeSignature::Claim(claim) }) = &m.checked else {
            continue;
        };
        if last == Some(claim.signature) {
            continue;
        }
        last = Some(claim.signature);
        if let Some((owner, public_key)) = keys.get(&claim.key_id) {
            if owner == env.agency.as_str() {
                claim.verify(owner, public_key, verifier);
            }
        }
    }
}

/// The writer task's state: what it keeps in memory (the registry and the
/// standards in force, small) and the head.
struct Writer {
    /// Decremented once a batch is committed and acked.
    in_flight: Arc<AtomicUsize>,
    registry: Registry,
    registrar_keys: Vec<[u8; 32]>,
    /// Version in force by (agency, service).
    standards: HashMap<(String, String), u32>,
    seq: u64,
    head: Hash32,
    verifier: Arc<Verifier>,
    known: Arc<KnownKeys>,
    outcome: Outcome,
}

/// An application as the projection holds it.
#[derive(Debug, Clone)]
struct App {
    agency: String,
    service: String,
    state: AppState,
}

/// A verdict.
struct Judgement {
    verdict: Verdict,
    reason: Option<ReasonCode>,
    detail: String,
    /// The id entering the dedupe index (accepted only).
    id: Option<[u8; 16]>,
}

impl Judgement {
    fn rejected(r: Rejection) -> Self {
        Judgement { verdict: Verdict::Rejected, reason: Some(r.code), detail: r.detail, id: None }
    }

    fn accepted(id: [u8; 16]) -> Self {
        Judgement { verdict: Verdict::Accepted, reason: None, detail: String::new(), id: Some(id) }
    }
}

/// What one batch changes, gathered before it is written.
#[derive(Default)]
struct Batch {
    /// Cases in the store or opened in this batch: case id → opening agency.
    cases: HashMap<String, String>,
    /// Applications by (case, application).
    apps: HashMap<(String, String), App>,
    /// Accepted ids: stored before the batch, or accepted in it → seq.
    ids: HashMap<[u8; 16], u64>,
    /// Changed cases: case id → (agency, opened seq, last seq, events added).
    case_rows: BTreeMap<String, (String, i64, i64, i32)>,
    /// Changed applications → (last seq, events added).
    app_rows: BTreeMap<(String, String), (i64, i32)>,
    /// Standards published: (agency, service) → (version, seq).
    standard_rows: BTreeMap<(String, String), (u32, i64)>,
    registry_changed: bool,
}

impl Writer {
    async fn run(mut self, mut conn: PgConnection, mut rx: mpsc::Receiver<Job>) -> Result<Outcome> {
        while let Some(job) = rx.recv().await {
            self.commit(&mut conn, &job.msgs).await?;
            let t = Instant::now();
            // Durable: AckAll on the last message covers the batch.
            job.last.ack().await.map_err(|e| anyhow!("ack: {e}"))?;
            self.phase("ack", t);
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
        conn.close().await.ok();
        self.outcome.head_hash = hex::encode(self.head);
        Ok(self.outcome)
    }

    /// Adds the time since `t` to `phase`; returns now.
    fn phase(&mut self, phase: &'static str, t: Instant) -> Instant {
        let now = Instant::now();
        *self.outcome.phase_secs.entry(phase).or_insert(0.0) += now.duration_since(t).as_secs_f64();
        now
    }

    async fn commit(&mut self, conn: &mut PgConnection, msgs: &[Msg]) -> Result<()> {
        let t = Instant::now();
        let mut tx = conn.begin().await?;
        let mut b = Batch::default();
        // Read what the batch's verdicts need: the dedupe index entries of
        // its ids, and its cases with their applications.
        let ids: Vec<Vec<u8>> = msgs
            .iter()
            .filter_map(|m| match &m.checked {
                Ok(Checked::Event { env, .. }) => Some(env.event_id.0.to_vec()),
                Ok(Checked::Statement(s)) => Some(s.statement.statement_id.0.to_vec()),
                Err(_) => None,
            })
            .collect();
        let stored: Vec<(Vec<u8>, i64)> =
            sqlx::query_as("SELECT event_id, seq FROM entries WHERE event_id = ANY($1)")
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await
                .context("reading the dedupe index")?;
        let t = self.phase("read: dedupe index", t);
        for (id, seq) in stored {
            if let Ok(id) = <[u8; 16]>::try_from(id.as_slice()) {
                b.ids.insert(id, seq as u64);
            }
        }
        let case_ids: Vec<String> = msgs
            .iter()
            .filter_map(|m| match &m.checked {
                Ok(Checked::Event { env, .. }) => env.case_id().map(|c| c.to_string()),
                _ => None,
            })
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let cases: Vec<(String, String)> =
            sqlx::query_as("SELECT case_id, agency FROM cases WHERE case_id = ANY($1)")
                .bind(&case_ids)
                .fetch_all(&mut *tx)
                .await
                .context("reading cases")?;
        let t = self.phase("read: cases", t);
        b.cases.extend(cases);
        let apps: Vec<(String, String, String, String, String)> = sqlx::query_as(
            "SELECT case_id, application_id, agency, service, state FROM applications WHERE case_id = ANY($1)",
        )
        .bind(&case_ids)
        .fetch_all(&mut *tx)
        .await
        .context("reading applications")?;
        for (case, app, agency, service, state) in apps {
            let state = parse_state(&state).ok_or_else(|| anyhow!("stored state {state:?}"))?;
            b.apps.insert((case, app), App { agency, service, state });
        }

        let t = self.phase("read: applications", t);
        // Judge and chain every message, in order.
        let n = msgs.len();
        let mut seqs = Vec::with_capacity(n);
        let mut stream_seqs = Vec::with_capacity(n);
        let mut times = Vec::with_capacity(n);
        let mut verdicts: Vec<i16> = Vec::with_capacity(n);
        let mut reasons: Vec<Option<String>> = Vec::with_capacity(n);
        let mut details = Vec::with_capacity(n);
        let mut subjects = Vec::with_capacity(n);
        let mut event_ids: Vec<Option<Vec<u8>>> = Vec::with_capacity(n);
        let mut entry_cases: Vec<Option<String>> = Vec::with_capacity(n);
        let mut payloads = Vec::with_capacity(n);
        let mut prevs = Vec::with_capacity(n);
        let mut hashes = Vec::with_capacity(n);
        let mut seq = self.seq;
        let mut head = self.head;
        for m in msgs {
            seq += 1;
            let record_ms = m.stream_time_ns.div_euclid(1_000_000);
            let j = self.judge(&mut b, seq, &m.checked, record_ms);
            match j.verdict {
                Verdict::Accepted => self.outcome.accepted += 1,
                Verdict::Rejected => self.outcome.rejected += 1,
                Verdict::Duplicate => self.outcome.duplicates += 1,
            }
            let entry = LogEntry::new(
                seq,
                m.stream_seq,
                m.stream_time_ns,
                j.verdict,
                j.reason,
                &j.detail,
                &m.subject,
                m.payload.to_vec(),
                head,
            );
            seqs.push(seq as i64);
            stream_seqs.push(m.stream_seq as i64);
            times.push(m.stream_time_ns);
            verdicts.push(i16::from(entry.verdict.as_u8()));
            reasons.push(entry.reason.map(|r| r.as_str().to_owned()));
            subjects.push(entry.subject);
            details.push(entry.detail);
            event_ids.push(j.id.map(|id| id.to_vec()));
            entry_cases.push(match &m.checked {
                Ok(Checked::Event { env, .. }) => env.case_id().map(|c| c.to_string()),
                _ => None,
            });
            payloads.push(entry.payload);
            prevs.push(entry.prev_hash.to_vec());
            hashes.push(entry.hash.to_vec());
            head = entry.hash;
        }
        let last_stream_seq = msgs.last().map_or(0, |m| m.stream_seq);
        let t = self.phase("judge", t);

        sqlx::query(INSERT_ENTRIES)
            .bind(&seqs)
            .bind(&stream_seqs)
            .bind(&times)
            .bind(&verdicts)
            .bind(&reasons)
            .bind(&details)
            .bind(&subjects)
            .bind(&event_ids)
            .bind(&entry_cases)
            .bind(&payloads)
            .bind(&prevs)
            .bind(&hashes)
            .execute(&mut *tx)
            .await
            .context("inserting entries")?;
        let t = self.phase("insert entries", t);
        if !b.case_rows.is_empty() {
            let mut cols = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for (case, (agency, opened, last, events)) in std::mem::take(&mut b.case_rows) {
                cols.0.push(case);
                cols.1.push(agency);
                cols.2.push(opened);
                cols.3.push(last);
                cols.4.push(events);
            }
            sqlx::query(UPSERT_CASES)
                .bind(&cols.0)
                .bind(&cols.1)
                .bind(&cols.2)
                .bind(&cols.3)
                .bind(&cols.4)
                .execute(&mut *tx)
                .await
                .context("upserting cases")?;
        }
        if !b.app_rows.is_empty() {
            let mut cols =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for ((case, app), (last, events)) in std::mem::take(&mut b.app_rows) {
                let a =
                    b.apps.get(&(case.clone(), app.clone())).ok_or_else(|| anyhow!("a lost application"))?;
                cols.2.push(a.agency.clone());
                cols.3.push(a.service.clone());
                cols.4.push(a.state.as_str().to_owned());
                cols.0.push(case);
                cols.1.push(app);
                cols.5.push(last);
                cols.6.push(events);
            }
            sqlx::query(UPSERT_APPLICATIONS)
                .bind(&cols.0)
                .bind(&cols.1)
                .bind(&cols.2)
                .bind(&cols.3)
                .bind(&cols.4)
                .bind(&cols.5)
                .bind(&cols.6)
                .execute(&mut *tx)
                .await
                .context("upserting applications")?;
        }
        if !b.standard_rows.is_empty() {
            let mut cols = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for ((agency, service), (version, seq)) in std::mem::take(&mut b.standard_rows) {
                cols.0.push(agency);
                cols.1.push(service);
                cols.2.push(i64::from(version));
                cols.3.push(seq);
            }
            sqlx::query(UPSERT_STANDARDS)
                .bind(&cols.0)
                .bind(&cols.1)
                .bind(&cols.2)
                .bind(&cols.3)
                .execute(&mut *tx)
                .await
                .context("upserting standards")?;
        }
        sqlx::query(UPDATE_CHECKPOINT)
            .bind(seq as i64)
            .bind(last_stream_seq as i64)
            .bind(head.to_vec())
            .execute(&mut *tx)
            .await
            .context("writing the checkpoint")?;
        let t = self.phase("upsert projections + checkpoint", t);
        tx.commit().await.context("commit")?;
        self.phase("commit", t);

        // Committed: the batch is the peer's state now.
        self.seq = seq;
        self.head = head;
        self.outcome.events += n as u64;
        self.outcome.batches += 1;
        self.outcome.last_stream_seq = last_stream_seq;
        if b.registry_changed {
            let keys = self
                .registry
                .participants
                .iter()
                .flat_map(|(id, p)| {
                    p.keys.iter().map(move |(k, key)| (*k, (id.as_str().to_owned(), key.public_key)))
                })
                .collect();
            *self.known.write().unwrap_or_else(|e| e.into_inner()) = keys;
        }
        Ok(())
    }

    /// The verdict of one message (the hub's steps 5-8, with the state
    /// machine for step 7), applied to the batch's state when accepted.
    fn judge(
        &mut self,
        b: &mut Batch,
        seq: u64,
        checked: &Result<Checked, Rejection>,
        record_ms: i64,
    ) -> Judgement {
        let (env, signature) = match checked {
            Err(r) => return Judgement::rejected(r.clone()),
            Ok(Checked::Statement(SignedStatement {
                statement,
                signed,
                registrar_public_key,
                signature,
            })) => {
                return self.judge_statement(
                    b,
                    seq,
                    statement,
                    signed,
                    registrar_public_key,
                    signature,
                    record_ms,
                )
            }
            Ok(Checked::Event { env, signature }) => (env, signature),
        };
        if let Err(r) = registry::admit(&self.registry, env, signature, record_ms, &*self.verifier) {
            return Judgement::rejected(r);
        }
        if let Some(first) = b.ids.get(&env.event_id.0) {
            return Judgement {
                verdict: Verdict::Duplicate,
                reason: Some(ReasonCode::DuplicateEventId),
                detail: format!("event_id {} was accepted at seq {first}", env.event_id),
                id: None,
            };
        }
        if let Err(r) = self.decide(b, env) {
            return Judgement::rejected(r);
        }
        self.apply(b, env, seq);
        b.ids.insert(env.event_id.0, seq);
        Judgement::accepted(env.event_id.0)
    }

    #[allow(clippy::too_many_arguments)]
    fn judge_statement(
        &mut self,
        b: &mut Batch,
        seq: u64,
        st: &Statement,
        signed: &[u8],
        registrar_public_key: &[u8],
        signature: &[u8],
        record_ms: i64,
    ) -> Judgement {
        if self.registrar_keys.is_empty() {
            return Judgement::rejected(Rejection::new(
                ReasonCode::RegistrarNotConfigured,
                "this hub has no registrar key",
            ));
        }
        let invalid =
            |what: &str| Judgement::rejected(Rejection::new(ReasonCode::RegistrarSignatureInvalid, what));
        let Ok(public_key) = <[u8; 32]>::try_from(registrar_public_key) else {
            return invalid("registrar_public_key is not 32 bytes");
        };
        if !self.registrar_keys.contains(&public_key) {
            return invalid("registrar_public_key is not a registrar key this hub trusts");
        }
        let Ok(signature) = <[u8; 64]>::try_from(signature) else {
            return invalid("the signature is not 64 bytes");
        };
        if !self.verifier.verify_ed25519(&public_key, &registry::statement_signed_bytes(signed), &signature) {
            return invalid("the registrar's signature does not verify");
        }
        if let Some(first) = b.ids.get(&st.statement_id.0) {
            return Judgement {
                verdict: Verdict::Duplicate,
                reason: Some(ReasonCode::DuplicateEventId),
                detail: format!("statement_id {} was accepted at seq {first}", st.statement_id),
                id: None,
            };
        }
        if let Err(r) = registry::decide_statement(&self.registry, st) {
            return Judgement::rejected(r);
        }
        registry::apply_statement(&mut self.registry, st, EntryMeta { seq, recorded_at_ms: record_ms });
        b.registry_changed = true;
        b.ids.insert(st.statement_id.0, seq);
        Judgement::accepted(st.statement_id.0)
    }

    /// The state machine and the checks around it, with the hub's reason
    /// codes and texts (see the module docs for the rules it skips).
    fn decide(&self, b: &Batch, env: &Envelope) -> Result<(), Rejection> {
        let kind = env.body.kind();
        let key = (env.agency.as_str().to_owned(), env.service.as_str().to_owned());
        let in_force = b.standard_rows.get(&key).map(|s| s.0).or_else(|| self.standards.get(&key).copied());
        if let Target::Catalogue = env.target {
            if let (Some(cur), EventBody::ServiceStandardPublished { version, .. }) = (in_force, &env.body) {
                if *version <= cur {
                    return Err(Rejection::new(
                        ReasonCode::StaleStandardVersion,
                        format!("version {version} is not above the version {cur} in force"),
                    ));
                }
            }
            return Ok(());
        }
        if !kind.is_case_event() && in_force.is_none() {
            return Err(Rejection::new(
                ReasonCode::UnknownService,
                format!("agency {} has published no standard for service {}", env.agency, env.service),
            ));
        }
        match &env.target {
            Target::Catalogue => Ok(()),
            Target::Case(id) if kind == EventKind::CaseOpened => {
                if b.cases.contains_key(&id.to_string()) {
                    Err(Rejection::new(ReasonCode::CaseAlreadyOpen, format!("case {id} is already open")))
                } else {
                    Ok(())
                }
            }
            Target::Case(id) | Target::Application(id, _) if !b.cases.contains_key(&id.to_string()) => {
                Err(Rejection::new(ReasonCode::UnknownCase, format!("case {id} was never opened")))
            }
            Target::Case(_) => Ok(()),
            Target::Application(id, app_id) => {
                let app = b.apps.get(&(id.to_string(), app_id.as_str().to_owned()));
                if kind == EventKind::ApplicationFiled {
                    if app.is_some() {
                        return Err(Rejection::new(
                            ReasonCode::ApplicationAlreadyFiled,
                            format!("application {app_id} is already filed in case {id}"),
                        ));
                    }
                    return Ok(());
                }
                let app = app.ok_or_else(|| {
                    Rejection::new(
                        ReasonCode::UnknownApplication,
                        format!("application {app_id} was never filed in case {id}"),
                    )
                })?;
                if app.agency != env.agency.as_str() || app.service != env.service.as_str() {
                    return Err(Rejection::new(
                        ReasonCode::ApplicationOwnerMismatch,
                        format!("application {app_id} belongs to {}/{}", app.agency, app.service),
                    ));
                }
                if next_state(Some(app.state), kind).is_none() {
                    return Err(Rejection::new(
                        ReasonCode::IllegalTransition,
                        format!("{} is not allowed in state {}", kind.as_str(), app.state.as_str()),
                    ));
                }
                Ok(())
            }
        }
    }

    /// Applies an accepted event to the batch's state.
    fn apply(&mut self, b: &mut Batch, env: &Envelope, seq: u64) {
        let kind = env.body.kind();
        let seq = seq as i64;
        match &env.target {
            Target::Catalogue => {
                if let EventBody::ServiceStandardPublished { version, .. } = &env.body {
                    let key = (env.agency.as_str().to_owned(), env.service.as_str().to_owned());
                    self.standards.insert(key.clone(), *version);
                    b.standard_rows.insert(key, (*version, seq));
                }
            }
            Target::Case(id) | Target::Application(id, _) => {
                let case = id.to_string();
                if kind == EventKind::CaseOpened {
                    b.cases.insert(case.clone(), env.agency.as_str().to_owned());
                }
                let agency = b.cases.get(&case).cloned().unwrap_or_default();
                let row = b.case_rows.entry(case.clone()).or_insert((agency, seq, seq, 0));
                row.2 = seq;
                row.3 += 1;
                if let Target::Application(_, app_id) = &env.target {
                    let key = (case, app_id.as_str().to_owned());
                    let from = b.apps.get(&key).map(|a| a.state);
                    if let Some(state) = next_state(from, kind) {
                        b.apps.insert(
                            key.clone(),
                            App {
                                agency: env.agency.as_str().to_owned(),
                                service: env.service.as_str().to_owned(),
                                state,
                            },
                        );
                    }
                    let row = b.app_rows.entry(key).or_insert((seq, 0));
                    row.0 = seq;
                    row.1 += 1;
                }
            }
        }
    }
}

/// An [`AppState`] from its stored name.
fn parse_state(s: &str) -> Option<AppState> {
    AppState::ALL.iter().copied().find(|a| a.as_str() == s)
}
