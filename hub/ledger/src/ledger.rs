//! The ledger: the deterministic batch pipeline from raw stream messages to
//! one atomic store commit, and its offline twins [`rebuild`],
//! [`verify_chain`] and [`projection`] for auditors and tests.
//!
//! The ledger also keeps the Merkle tree over the log current: each entry's
//! leaf is pushed onto the frontier as the entry is made, and the frontier
//! and the subtree hashes it completes go into the same commit as the
//! entries ([`mpp_store::push_entry`]). [`verify_chain`] and [`rebuild`]
//! recompute the tree while they walk the log and require the stored
//! frontier, every stored subtree hash and every stored signed checkpoint's
//! fields (not its signature) to match.
//!
//! # The verdict of one message
//!
//! Every message above the checkpoint becomes exactly one [`LogEntry`], in
//! stream order, whatever its content. Its verdict is decided in this fixed
//! order, the first failing step giving the reason:
//!
//! 1. the payload is empty → `EMPTY_MESSAGE`; longer than
//!    [`limits::MESSAGE_BYTES_MAX`] → `MESSAGE_TOO_LARGE`;
//! 2. the subject is longer than [`SUBJECT_CHECKED_BYTES_MAX`] → `BAD_SUBJECT`;
//! 3. the payload is not a protobuf `mpp.v1.Envelope` → `UNDECODABLE_ENVELOPE`;
//! 4. [`validate`] (fields, ids, subject) → its reason code;
//! 5. once the participant registry is in force ([`Registry::in_force`]):
//!    [`registry::admit`] (registered participant, a valid, unrevoked key,
//!    the signature, the service, event type and region in the
//!    registration) → its reason code;
//! 6. the event id was already **accepted** (earlier in the log, or earlier in
//!    this batch) → verdict *duplicate*, `DUPLICATE_EVENT_ID`, no effect;
//! 7. [`decide_at`] against the current projection and the time of record → its reason code;
//! 8. otherwise *accepted*: [`apply`] changes the projection and the event id
//!    enters the permanent dedupe index.
//!
//! A message on [`REGISTRY_SUBJECT`] is a registry statement instead: after
//! steps 1-2, it must decode as a `mpp.v1.SignedRegistryStatement` holding a
//! valid `mpp.v1.RegistryStatement` (`MALFORMED_REGISTRY_STATEMENT`), the hub
//! must have registrar keys (`REGISTRAR_NOT_CONFIGURED`) and the statement
//! must be signed by one of them (`REGISTRAR_SIGNATURE_INVALID`); then the
//! dedupe of step 6 (its statement id shares the event-id index),
//! [`registry::decide_statement`] and [`registry::apply_statement`].
//!
//! A message on a redrive subject (`mpp.events.redrive.<agency>.<service>`,
//! which only the hub's own NATS user may publish on) whose headers name
//! the entry and the operator is an operator's redrive
//! ([`mpp_core::redrive`]): its entry records both (log format version 2),
//! and it is judged as the payload on the original subject after two more
//! steps: first, the entry it names must be an earlier rejection of the
//! same subject and payload (`REDRIVE_INVALID`); after step 6, nothing
//! accepted since that entry may have changed the application, case or
//! standard the message is about (`REDRIVE_SUPERSEDED`).
//!
//! # Which event ids are burned
//!
//! Only accepted events enter the dedupe index. An event rejected at any
//! step leaves its id free, so the same event published again later (an
//! operator's redrive of a rejected event, or the agency's outbox resending
//! it after the state it was waiting for arrived) is judged afresh against
//! the state at that point. Once an id was accepted, every later message with
//! it is a duplicate, forever, whatever its content. The rule reads only the
//! log: the index at entry `n` is the set of event ids of the accepted entries
//! before `n`, which is how [`rebuild`] recomputes it.
//!
//! # Determinism
//!
//! Every step is a pure function of the entry's stored fields (subject,
//! payload, stream timestamp) and of the entries before it; detail texts
//! never include library error messages. [`rebuild`] replays every entry
//! from scratch and requires the recomputed entry to hash exactly like the
//! stored one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use mpp_core::decide::apply_noted;
use mpp_core::decide::MemState;
use mpp_core::hold::Holds;
use mpp_core::ids::{AgencyId, EventId, ServiceId, TrackingNumber};
use mpp_core::log::{Redrive, Verdict};
use mpp_core::merkle::{MerkleFrontier, Subtree};
use mpp_core::redrive;
use mpp_core::registry::{self, EnvelopeSignature, Registry, Statement, REGISTRY_SUBJECT};
use mpp_core::signature::{self as sig, SignatureVerifier as _};
use mpp_core::validate::validate;
use mpp_core::{
    decide_at, limits, Case, EntryMeta, Envelope, LogEntry, ReasonCode, Rejection, ServiceStandard,
    StandardTerms, State, StateMut,
};
use mpp_proto::v1 as pb;
use mpp_store::{push_entry, Checkpoints, CommitBatch, Head, Store, StoreError};
use prost::Message as _;

use mpp_wire as wire;

use crate::trust::Trust;

/// Most messages in one [`Ledger::commit_batch`]. A batch is one sled batch
/// held in memory with the cases it touches, so it is bounded; ingest's pull
/// batch size must not exceed it.
pub const BATCH_MESSAGES_MAX: usize = 10_000;

/// Longest subject the ledger validates, in bytes (`BAD_SUBJECT` beyond).
/// A valid subject `mpp.events.<agency>.<service>` is at most 76 bytes. The
/// bound lies well below the length at which a log entry truncates a subject
/// (`limits::SUBJECT_BYTES_MAX`), so a replay of the stored, truncated
/// subject reaches the same verdict as the original.
pub const SUBJECT_CHECKED_BYTES_MAX: usize = 128;

/// One message as consumed from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// JetStream stream sequence.
    pub stream_seq: u64,
    /// JetStream timestamp, Unix nanoseconds: the time of record.
    pub stream_time_ns: i64,
    /// The NATS subject.
    pub subject: String,
    /// The payload as received.
    pub payload: Bytes,
    /// The operator's redrive its headers claim, honoured on a redrive
    /// subject only ([`redrive::claim`]).
    pub redrive: Option<Redrive>,
}

/// A hole in the stream: the next message was not checkpoint + 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The stream sequence the ledger needed next.
    pub expected: u64,
    /// The stream sequence it received instead.
    pub got: u64,
}

/// What one [`Ledger::commit_batch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Messages at or below the checkpoint (redeliveries), not recorded again.
    pub skipped: usize,
    /// Entries recorded as accepted.
    pub accepted: usize,
    /// Entries recorded as rejected.
    pub rejected: usize,
    /// Entries recorded as duplicates.
    pub duplicates: usize,
    /// The first gap, if any; nothing from it on was processed.
    pub gap: Option<Gap>,
    /// The head after the batch (durable once this is returned).
    pub head: Head,
    /// Cases whose projection the batch changed, in tracking-number order.
    pub touched_cases: Vec<TrackingNumber>,
    /// The reason of every entry recorded as rejected, in log order (for
    /// the `mpp_hub_rejected_total{reason}` metric).
    pub rejections: Vec<ReasonCode>,
}

/// A broken log: the first entry at which verification failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("log entry {seq}: {what}")]
pub struct ChainError {
    /// The sequence of the first bad entry (for a head that does not match
    /// the log, the head's sequence).
    pub seq: u64,
    /// What is wrong.
    pub what: String,
}

/// Errors of the ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The store failed; nothing of the batch was committed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The caller passed more than [`BATCH_MESSAGES_MAX`] messages.
    #[error("a batch of {len} messages exceeds BATCH_MESSAGES_MAX ({max})")]
    BatchTooLarge {
        /// Messages passed.
        len: usize,
        /// [`BATCH_MESSAGES_MAX`].
        max: usize,
    },
    /// The stored log or head is inconsistent.
    #[error("broken log: {0}")]
    Chain(#[from] ChainError),
    /// Replaying an entry gives another verdict, reason or detail than the
    /// one stored (the log was altered, or this build decides differently).
    #[error("replaying log entry {seq} gives another result: {what}")]
    Replay {
        /// The entry.
        seq: u64,
        /// Stored versus replayed.
        what: String,
    },
}

type StandardKey = (AgencyId, ServiceId);

/// Most cases the ledger keeps decoded in memory between batches (the
/// cases of recent batches, in two generations of up to half this each).
/// A busy mall works on a few thousand cases at once; keeping them saves
/// reading and decoding each case and its timeline from the store in every
/// batch that touches it. About 2 KiB per case, so at most ~16 MiB.
pub const CASE_CACHE_CASES_MAX: usize = 8192;

/// The single writer of the log. Owns the in-memory head, the catalogue of
/// standards in force and a cache of recently committed cases; other cases
/// are read from the store as messages need them.
#[derive(Debug)]
pub struct Ledger<S: Store> {
    store: S,
    head: Head,
    frontier: MerkleFrontier,
    /// The terms of every standard in force (the rest stays in the store).
    standards: BTreeMap<StandardKey, StandardTerms>,
    registry: Registry,
    trust: Arc<Trust>,
    cache: CaseCache,
}

/// Cases exactly as committed, by the only writer, so never stale: two
/// generations, the older dropped whole when the younger fills up (a cheap
/// approximation of least-recently-used). A batch takes the cases it needs
/// out, and puts them back only once its commit succeeded.
#[derive(Debug, Default)]
struct CaseCache {
    young: HashMap<TrackingNumber, Arc<Case>>,
    old: HashMap<TrackingNumber, Arc<Case>>,
}

impl CaseCache {
    /// The case, to change: copied only while the store still holds it
    /// back (its readers see the committed value until the next commit).
    fn take(&mut self, id: &TrackingNumber) -> Option<Case> {
        let shared = self.young.remove(id).or_else(|| self.old.remove(id))?;
        Some(Arc::try_unwrap(shared).unwrap_or_else(|held| Case::clone(&held)))
    }

    fn put(&mut self, case: Arc<Case>) {
        if self.young.len() >= CASE_CACHE_CASES_MAX / 2 {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(case.tracking_number, case);
    }
}

impl<S: Store> Ledger<S> {
    /// Opens the ledger on `store`: reads the head and the Merkle frontier,
    /// checks the head against the last entry, and loads the standards in
    /// force.
    ///
    /// The store writes case values behind the log (see
    /// [`Store::projected_through`]); after a crash the cases changed by the
    /// last few commits (at most `mpp_store::PROJECTION_EVERY_COMMITS`
    /// batches) are re-derived here from their log entries, each entry
    /// judged again and checked against its stored verdict, and handed back
    /// to the store, so every reader sees the projection of the whole log.
    ///
    /// Trusts no registrar key: registry statements are refused (see
    /// [`Ledger::open_with`]).
    pub fn open(store: S) -> Result<Self, LedgerError> {
        Self::open_with(store, Arc::new(Trust::default()))
    }

    /// [`Ledger::open`] with the registrar keys (and signature cache) of
    /// `trust`.
    pub fn open_with(store: S, trust: Arc<Trust>) -> Result<Self, LedgerError> {
        // Cases this handle (or a clone) still holds back: write them.
        store.flush_projection()?;
        let (head, frontier) = store.head_and_frontier()?;
        check_head_entry(&store, &head)?;
        let standards = store.standard_terms()?.into_iter().collect();
        let registry = store.registry()?;
        trust.learn_keys(&registry);
        let mut ledger =
            Ledger { store, head, frontier, standards, registry, trust, cache: CaseCache::default() };
        ledger.catch_up()?;
        Ok(ledger)
    }

    /// Re-derives the cases the entries after the stored projection changed
    /// and hands them to the store (see [`Ledger::open`]).
    fn catch_up(&mut self) -> Result<(), LedgerError> {
        let projected = self.store.projected_through()?;
        let lag = self.head.last_seq.saturating_sub(projected);
        if lag == 0 {
            return Ok(());
        }
        let entries: Vec<LogEntry> = self
            .store
            .entries(projected + 1)
            .take(usize::try_from(lag).unwrap_or(usize::MAX))
            .collect::<Result<_, _>>()?;
        let checked: Vec<Result<Checked, Rejection>> = entries
            .iter()
            .map(|e| {
                check_entry(
                    &e.subject,
                    &e.payload,
                    e.redrive.as_ref(),
                    e.stream_time_ns.div_euclid(1_000_000),
                )
            })
            .collect();
        let mut overlay = Overlay::new(&self.store, &self.standards, &self.registry, &mut self.cache);
        // The index already holds the ids these entries accepted; only ids
        // accepted up to the projection count as seen before them.
        let ids: Vec<EventId> = checked.iter().flatten().map(Checked::id).collect();
        overlay.prefetch_ids(&ids, projected)?;
        for (e, checked) in entries.iter().zip(checked) {
            let redrive = RedriveOf::read(&self.store, e.redrive.as_ref(), &[], &e.subject, &e.payload)?;
            let j = judge_checked(
                &mut overlay,
                &self.trust,
                e.seq,
                checked,
                redrive,
                e.stream_time_ns.div_euclid(1_000_000),
            )?;
            check_replayed(e, &j)?;
        }
        let Overlay { mut cases, dirty, standards, registry, .. } = overlay;
        if !standards.is_empty() || registry.is_some() {
            // A commit that changes a standard or the registry always
            // writes the projection.
            return Err(LedgerError::Replay {
                seq: projected + 1,
                what: "a service standard or the registry changed after the stored projection".to_owned(),
            });
        }
        let changed: Vec<Case> = dirty.iter().filter_map(|id| cases.remove(id).flatten()).collect();
        tracing::info!(
            projected,
            head = self.head.last_seq,
            cases = changed.len(),
            "Projection caught up from the log"
        );
        self.store.stage_replayed(changed)?;
        Ok(())
    }

    /// Writes the case values the store still holds back (the hub calls it
    /// when it stops, so the next start has nothing to re-derive).
    pub fn flush_projection(&self) -> Result<(), LedgerError> {
        Ok(self.store.flush_projection()?)
    }

    /// The head and checkpoint as of the last commit.
    pub fn head(&self) -> Head {
        self.head
    }

    /// The Merkle frontier of entries `1..=head().last_seq`; its root is the
    /// tree's root hash.
    pub fn frontier(&self) -> &MerkleFrontier {
        &self.frontier
    }

    /// The store (for reads).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The participant registry as of the last commit.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// How many services' standard terms the ledger holds in memory: one
    /// per service with a standard in force (a newer version replaces the
    /// older; a refused standard adds nothing). `mpp_hub_standards_in_memory`.
    pub fn standards_in_memory(&self) -> usize {
        self.standards.len()
    }

    /// The registrar keys and signature verifier this ledger judges with.
    pub fn trust(&self) -> &Arc<Trust> {
        &self.trust
    }

    /// Processes messages in stream order as ONE atomic commit and flush.
    /// Messages at or below the running checkpoint are skipped (counted).
    /// The rest must be contiguous from checkpoint + 1: at the first gap,
    /// what came before is committed and the gap is reported; ingest must
    /// then halt. A batch of nothing but redeliveries writes nothing.
    ///
    /// On an error nothing of the batch is committed and the ledger is
    /// unchanged.
    pub fn commit_batch(&mut self, msgs: &[RawMessage]) -> Result<BatchOutcome, LedgerError> {
        let checked = msgs.iter().map(|m| Some(check_raw(m))).collect();
        self.commit_inner(msgs, checked)
    }

    /// [`Ledger::commit_batch`] of a batch whose messages were already
    /// decoded and validated (on another thread, see [`CheckedBatch`]).
    pub fn commit_checked(&mut self, batch: &mut CheckedBatch) -> Result<BatchOutcome, LedgerError> {
        let checked = std::mem::take(&mut batch.checked).into_iter().map(Some).collect();
        self.commit_inner(&batch.msgs, checked)
    }

    /// `checked` holds [`check_raw`] of each message of `msgs`, in order.
    fn commit_inner(
        &mut self,
        msgs: &[RawMessage],
        mut checked: Vec<Option<Result<Checked, Rejection>>>,
    ) -> Result<BatchOutcome, LedgerError> {
        if msgs.len() > BATCH_MESSAGES_MAX {
            return Err(LedgerError::BatchTooLarge { len: msgs.len(), max: BATCH_MESSAGES_MAX });
        }
        let mut overlay = Overlay::new(&self.store, &self.standards, &self.registry, &mut self.cache);
        let mut head = self.head;
        let mut out = BatchOutcome {
            skipped: 0,
            accepted: 0,
            rejected: 0,
            duplicates: 0,
            gap: None,
            head,
            touched_cases: Vec::new(),
            rejections: Vec::new(),
        };
        let mut entries = Vec::new();
        let mut frontier = self.frontier.clone();
        let mut subtrees: Vec<Subtree> = Vec::new();
        // Steps 1-4 were done for every message first (by the caller or
        // above), so that the dedupe index is read once per bucket for the
        // whole batch.
        let ids: Vec<EventId> = msgs
            .iter()
            .zip(&checked)
            .filter(|(m, _)| m.stream_seq > head.last_stream_seq)
            .filter_map(|(_, c)| c.as_ref()?.as_ref().ok().map(Checked::id))
            .collect();
        overlay.prefetch_ids(&ids, u64::MAX)?;
        for (m, checked) in msgs.iter().zip(checked.iter_mut()) {
            if m.stream_seq <= head.last_stream_seq {
                out.skipped += 1;
                continue;
            }
            let expected = head.last_stream_seq.saturating_add(1);
            if m.stream_seq != expected {
                out.gap = Some(Gap { expected, got: m.stream_seq });
                break;
            }
            let seq = head.last_seq + 1;
            // Each message's result is taken once (`checked` has one per message).
            let checked = checked.take().unwrap_or_else(|| check_raw(m));
            let redrive = RedriveOf::read(&self.store, m.redrive.as_ref(), &entries, &m.subject, &m.payload)?;
            let j = judge_checked(
                &mut overlay,
                &self.trust,
                seq,
                checked,
                redrive,
                m.stream_time_ns.div_euclid(1_000_000),
            )?;
            match j.verdict {
                Verdict::Accepted => out.accepted += 1,
                Verdict::Rejected => {
                    out.rejected += 1;
                    out.rejections.extend(j.reason);
                }
                Verdict::Duplicate => out.duplicates += 1,
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
                head.head_hash,
            )
            .with_redrive(m.redrive.clone());
            head = Head { last_seq: seq, last_stream_seq: m.stream_seq, head_hash: entry.hash };
            push_entry(&mut frontier, &entry.hash, &mut subtrees).map_err(|_| ChainError {
                seq,
                what: "the Merkle tree already holds u64::MAX leaves".to_owned(),
            })?;
            entries.push(entry);
        }
        if entries.is_empty() {
            return Ok(out);
        }
        let Overlay { mut cases, dirty, standards, new_ids, cache, registry, .. } = overlay;
        let changed: Vec<Case> = dirty.iter().filter_map(|id| cases.remove(id).flatten()).collect();
        let batch = CommitBatch {
            entries,
            cases: changed,
            standards: standards.values().cloned().collect(),
            registry: registry.clone(),
            event_ids: new_ids,
            head,
            frontier: frontier.clone(),
            subtrees,
        };
        let committed = self.store.commit_returning_cases(batch)?;
        // Committed: the batch's cases are the store's now.
        for case in committed.into_iter().chain(cases.into_values().flatten().map(Arc::new)) {
            cache.put(case);
        }
        self.head = head;
        self.frontier = frontier;
        self.standards.extend(standards.into_iter().map(|(key, s)| (key, s.terms())));
        if let Some(r) = registry {
            self.trust.learn_keys(&r);
            self.registry = r;
        }
        out.head = head;
        out.touched_cases = dirty.into_iter().collect();
        Ok(out)
    }
}

/// Checks that the head names the last entry of the log.
fn check_head_entry(store: &impl Store, head: &Head) -> Result<(), LedgerError> {
    if head.last_seq == 0 {
        if *head != Head::GENESIS {
            return Err(ChainError { seq: 0, what: format!("empty log but head {head:?}") }.into());
        }
        return Ok(());
    }
    let bad = |what: &str| ChainError { seq: head.last_seq, what: format!("the head {what}") };
    let last = store.entry(head.last_seq)?.ok_or_else(|| bad("names a missing entry"))?;
    if last.hash != head.head_hash {
        return Err(bad("hash differs from the last entry's hash").into());
    }
    if last.stream_seq != head.last_stream_seq {
        return Err(bad("checkpoint differs from the last entry's stream sequence").into());
    }
    if store.entry(head.last_seq + 1)?.is_some() {
        return Err(bad("is not the last entry").into());
    }
    Ok(())
}

/// The verdict of one message.
struct Judgement {
    verdict: Verdict,
    reason: Option<ReasonCode>,
    detail: String,
}

impl Judgement {
    fn rejected(r: Rejection) -> Self {
        Judgement { verdict: Verdict::Rejected, reason: Some(r.code), detail: r.detail }
    }
}

/// The state a verdict needs beyond the projection: the dedupe index, and
/// loading cases on demand.
trait Fold: StateMut {
    /// The seq of the entry that accepted this event id, if any.
    fn accepted_seq(&self, id: &EventId) -> Result<Option<u64>, LedgerError>;
    /// Makes the case visible through [`State::case`] (if it exists).
    fn load_case(&mut self, id: &TrackingNumber) -> Result<(), LedgerError>;
    /// Records an accepted event id.
    fn note_accepted(&mut self, id: EventId, seq: u64);
    /// The registry as of the entry being judged.
    fn registry_now(&self) -> &Registry;
    /// The registry, to change.
    fn registry_mut(&mut self) -> &mut Registry;
}

/// A message through steps 1-4 of the module docs: what every consumer of
/// the stream must check before any state is read (the benchmark's
/// PostgreSQL peer calls [`check_message`] too).
// Nearly every message is an event, and a registry statement is rare:
// boxing the event to shrink the enum would allocate once per event for
// the statements' sake (the envelope grew with `collection`).
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Checked {
    /// An event, with the signature it came with.
    Event {
        /// The validated envelope.
        env: Envelope,
        /// Its signature, as far as the envelope alone tells.
        signature: EnvelopeSignature,
    },
    /// A registry statement, its registrar signature not yet checked.
    Statement(SignedStatement),
}

impl Checked {
    /// The event or statement id (the dedupe key).
    fn id(&self) -> EventId {
        match self {
            Checked::Event { env, .. } => env.event_id,
            Checked::Statement(s) => s.statement.statement_id,
        }
    }
}

/// A decoded, validated registry statement and what its signature covers.
#[derive(Debug)]
pub struct SignedStatement {
    /// The validated statement.
    pub statement: Statement,
    /// The encoded `mpp.v1.RegistryStatement` the registrar signed.
    pub signed: Vec<u8>,
    /// The key the registrar says it signed with.
    pub registrar_public_key: Vec<u8>,
    /// The registrar's signature over `signed`.
    pub signature: Vec<u8>,
}

/// A batch of messages with steps 1-4 of the module docs (decode, validate)
/// done: a pure function of the messages, so the ingest task does it while
/// the writer thread commits the previous batch.
#[derive(Debug)]
pub struct CheckedBatch {
    msgs: Vec<RawMessage>,
    checked: Vec<Result<Checked, Rejection>>,
}

impl CheckedBatch {
    /// Decodes and validates every message.
    pub fn new(msgs: Vec<RawMessage>) -> Self {
        let checked = msgs.iter().map(check_raw).collect();
        CheckedBatch { msgs, checked }
    }

    /// The messages, in the order given.
    pub fn messages(&self) -> &[RawMessage] {
        &self.msgs
    }

    /// Verifies the batch's distinct envelope signatures ahead of the
    /// writer (see [`Trust::preverify`]); changes no verdict.
    pub fn preverify(&self, trust: &Trust) {
        trust.preverify(self.checked.iter().filter_map(|c| match c {
            Ok(Checked::Event { env, signature: EnvelopeSignature::Claim(claim) }) => {
                Some((env.agency.as_str(), claim))
            }
            _ => None,
        }));
    }
}

/// [`check_entry`] of a stream message, at its time of record.
fn check_raw(m: &RawMessage) -> Result<Checked, Rejection> {
    check_entry(&m.subject, &m.payload, m.redrive.as_ref(), m.stream_time_ns.div_euclid(1_000_000))
}

/// [`check_message`] of a message, or of an operator's redrive: its payload
/// on the subject it redrives (so the participant's signature, made over
/// that subject, is checked as it was made).
fn check_entry(
    subject: &str,
    payload: &[u8],
    redrive: Option<&Redrive>,
    record_ms: i64,
) -> Result<Checked, Rejection> {
    match redrive.and_then(|_| redrive::original_subject(subject)) {
        Some(original) if subject.len() <= SUBJECT_CHECKED_BYTES_MAX => {
            check_message(&original, payload, record_ms)
        }
        _ => check_message(subject, payload, record_ms),
    }
}

/// An operator's redrive being judged: what its headers claim and the log
/// entry they name.
struct RedriveOf<'a> {
    claim: &'a Redrive,
    original: Option<LogEntry>,
    subject: &'a str,
    payload: &'a [u8],
}

impl<'a> RedriveOf<'a> {
    /// Reads the entry `claim` names from `pending` (the entries of the
    /// batch not yet committed) or the store.
    fn read<S: Store>(
        store: &S,
        claim: Option<&'a Redrive>,
        pending: &[LogEntry],
        subject: &'a str,
        payload: &'a [u8],
    ) -> Result<Option<Self>, LedgerError> {
        let Some(claim) = claim else { return Ok(None) };
        let original = match pending.iter().find(|e| e.seq == claim.of_seq) {
            Some(e) => Some(e.clone()),
            None => store.entry(claim.of_seq)?,
        };
        Ok(Some(RedriveOf { claim, original, subject, payload }))
    }
}

/// Steps 1-4 of the module docs: bytes and subject to a valid envelope.
pub fn check_message(subject: &str, payload: &[u8], record_ms: i64) -> Result<Checked, Rejection> {
    if payload.is_empty() {
        return Err(Rejection::new(ReasonCode::EmptyMessage, "the message payload is empty"));
    }
    if payload.len() > limits::MESSAGE_BYTES_MAX {
        return Err(Rejection::new(
            ReasonCode::MessageTooLarge,
            format!(
                "the payload is {} bytes; limits::MESSAGE_BYTES_MAX is {}",
                payload.len(),
                limits::MESSAGE_BYTES_MAX
            ),
        ));
    }
    if subject.len() > SUBJECT_CHECKED_BYTES_MAX {
        return Err(Rejection::new(
            ReasonCode::BadSubject,
            format!("the subject is longer than {SUBJECT_CHECKED_BYTES_MAX} bytes"),
        ));
    }
    if subject == REGISTRY_SUBJECT {
        return check_statement(payload).map(Checked::Statement);
    }
    // The decoder's own message is left out of the detail: it may change
    // between prost versions, and the detail is part of the hashed log.
    let decoded = pb::Envelope::decode(payload).map_err(|_| {
        Rejection::new(ReasonCode::UndecodableEnvelope, "the payload is not a protobuf mpp.v1.Envelope")
    })?;
    let env = validate(subject, &wire::to_unchecked(&decoded), record_ms)?;
    let signature = envelope_signature(subject, payload, &decoded);
    Ok(Checked::Event { env, signature })
}

/// The signature of a decoded envelope: its path walked from the leaf of
/// the payload's signed part (see `mpp_core::signature`).
fn envelope_signature(subject: &str, payload: &[u8], decoded: &pb::Envelope) -> EnvelopeSignature {
    let Some(unchecked) = wire::signature_of(decoded) else { return EnvelopeSignature::Unsigned };
    let Ok(Some(signed_len)) = wire::signed_part(payload) else {
        return EnvelopeSignature::Malformed(Rejection::new(
            ReasonCode::MalformedSignature,
            "the signature field is not the payload's last field",
        ));
    };
    let leaf = sig::envelope_leaf(&decoded.event_id, &decoded.agency_id, subject, &payload[..signed_len]);
    match sig::claim(&leaf, &unchecked) {
        Ok(c) => EnvelopeSignature::Claim(c),
        Err(r) => EnvelopeSignature::Malformed(r),
    }
}

/// Decodes and validates a registry statement (its signature is checked
/// when it is judged, against the ledger's registrar keys).
fn check_statement(payload: &[u8]) -> Result<SignedStatement, Rejection> {
    let malformed = |what: &str| Rejection::new(ReasonCode::MalformedRegistryStatement, what);
    let outer = pb::SignedRegistryStatement::decode(payload)
        .map_err(|_| malformed("the payload is not a protobuf mpp.v1.SignedRegistryStatement"))?;
    let inner = pb::RegistryStatement::decode(outer.statement.as_slice())
        .map_err(|_| malformed("the statement is not a protobuf mpp.v1.RegistryStatement"))?;
    let statement = registry::validate_statement(&wire::statement_to_unchecked(&inner))?;
    Ok(SignedStatement {
        statement,
        signed: outer.statement,
        registrar_public_key: outer.registrar_public_key,
        signature: outer.signature,
    })
}

/// Steps 5-8 of the module docs, for a message [`check_message`] already
/// checked.
fn judge_checked(
    f: &mut impl Fold,
    trust: &Trust,
    seq: u64,
    checked: Result<Checked, Rejection>,
    redrive: Option<RedriveOf<'_>>,
    recorded_at_ms: i64,
) -> Result<Judgement, LedgerError> {
    if let Some(r) = &redrive {
        if let Err(rej) = redrive::check_original(seq, r.subject, r.payload, r.claim, r.original.as_ref()) {
            return Ok(Judgement::rejected(rej));
        }
    }
    let (env, signature) = match checked {
        Ok(Checked::Event { env, signature }) => (env, signature),
        Ok(Checked::Statement(s)) => return judge_statement(f, trust, seq, s, recorded_at_ms),
        Err(r) => return Ok(Judgement::rejected(r)),
    };
    if let Err(r) = registry::admit(f.registry_now(), &env, &signature, recorded_at_ms, trust) {
        return Ok(Judgement::rejected(r));
    }
    if let Some(first) = f.accepted_seq(&env.event_id)? {
        return Ok(Judgement {
            verdict: Verdict::Duplicate,
            reason: Some(ReasonCode::DuplicateEventId),
            detail: format!("event_id {} was accepted at seq {first}", env.event_id),
        });
    }
    if let Some(case) = env.case_id() {
        f.load_case(&case)?;
    }
    if let Some(rej) = redrive.and_then(|r| redrive::superseded(f, &env, r.claim.of_seq)) {
        return Ok(Judgement::rejected(rej));
    }
    if let Err(r) = decide_at(f, &env, recorded_at_ms) {
        return Ok(Judgement::rejected(r));
    }
    let resolution = apply_noted(f, &env, EntryMeta { seq, recorded_at_ms });
    f.note_accepted(env.event_id, seq);
    // An accepted entry that resolved held applications carries the note
    // (mpp_core::hold): the only accepted entries with a reason.
    let (reason, detail) = resolution.note().map_or((None, String::new()), |n| (Some(n.code), n.detail));
    Ok(Judgement { verdict: Verdict::Accepted, reason, detail })
}

/// Judges a registry statement: the registrar's signature, the dedupe of
/// its id, then [`registry::decide_statement`].
fn judge_statement(
    f: &mut impl Fold,
    trust: &Trust,
    seq: u64,
    s: SignedStatement,
    recorded_at_ms: i64,
) -> Result<Judgement, LedgerError> {
    if trust.registrar_keys().is_empty() {
        return Ok(Judgement::rejected(Rejection::new(
            ReasonCode::RegistrarNotConfigured,
            "this hub has no registrar key",
        )));
    }
    let invalid =
        |what: &str| Ok(Judgement::rejected(Rejection::new(ReasonCode::RegistrarSignatureInvalid, what)));
    let Ok(public_key) = <[u8; 32]>::try_from(s.registrar_public_key.as_slice()) else {
        return invalid("registrar_public_key is not 32 bytes");
    };
    if !trust.registrar_keys().contains(&public_key) {
        return invalid("registrar_public_key is not a registrar key this hub trusts");
    }
    let Ok(signature) = <[u8; 64]>::try_from(s.signature.as_slice()) else {
        return invalid("the signature is not 64 bytes");
    };
    if !trust.verify_ed25519(&public_key, &registry::statement_signed_bytes(&s.signed), &signature) {
        return invalid("the registrar's signature does not verify");
    }
    let st = s.statement;
    if let Some(first) = f.accepted_seq(&st.statement_id)? {
        return Ok(Judgement {
            verdict: Verdict::Duplicate,
            reason: Some(ReasonCode::DuplicateEventId),
            detail: format!("statement_id {} was accepted at seq {first}", st.statement_id),
        });
    }
    if let Err(r) = registry::decide_statement(f.registry_now(), &st) {
        return Ok(Judgement::rejected(r));
    }
    registry::apply_statement(f.registry_mut(), &st, EntryMeta { seq, recorded_at_ms });
    f.note_accepted(st.statement_id, seq);
    Ok(Judgement { verdict: Verdict::Accepted, reason: None, detail: String::new() })
}

/// The projection as a batch sees it: the store plus the batch's changes.
struct Overlay<'a, S: Store> {
    store: &'a S,
    committed_standards: &'a BTreeMap<StandardKey, StandardTerms>,
    committed_registry: &'a Registry,
    /// The registry as this batch changed it (`None`: unchanged).
    registry: Option<Registry>,
    /// Standards published in this batch.
    standards: BTreeMap<StandardKey, ServiceStandard>,
    /// Cases read or created in this batch; `None` = not in the store.
    cases: HashMap<TrackingNumber, Option<Case>>,
    /// Cases changed in this batch.
    dirty: BTreeSet<TrackingNumber>,
    /// Event ids accepted in this batch.
    ids: HashMap<EventId, u64>,
    new_ids: Vec<(EventId, u64)>,
    /// Event ids of the batch's messages already in the store's index, read
    /// before judging (one read per index bucket, not per message).
    stored_ids: HashMap<EventId, u64>,
    /// Whether `stored_ids` holds every stored id of the batch's messages.
    prefetched: bool,
    /// The ledger's cache of committed cases, taken from as cases load.
    cache: &'a mut CaseCache,
}

impl<'a, S: Store> Overlay<'a, S> {
    fn new(
        store: &'a S,
        committed_standards: &'a BTreeMap<StandardKey, StandardTerms>,
        committed_registry: &'a Registry,
        cache: &'a mut CaseCache,
    ) -> Self {
        Overlay {
            store,
            committed_standards,
            committed_registry,
            registry: None,
            cache,
            standards: BTreeMap::new(),
            cases: HashMap::new(),
            dirty: BTreeSet::new(),
            ids: HashMap::new(),
            new_ids: Vec::new(),
            stored_ids: HashMap::new(),
            prefetched: false,
        }
    }
}

impl<S: Store> Overlay<'_, S> {
    /// Reads the index entries of `ids` (one read per index bucket) that
    /// were accepted at or below `up_to`; from then on, an id not found
    /// among them nor accepted in this batch is new.
    fn prefetch_ids(&mut self, ids: &[EventId], up_to: u64) -> Result<(), LedgerError> {
        for (id, seq) in ids.iter().zip(self.store.event_seqs(ids)?) {
            if let Some(seq) = seq.filter(|s| *s <= up_to) {
                self.stored_ids.insert(*id, seq);
            }
        }
        self.prefetched = true;
        Ok(())
    }
}

impl<S: Store> State for Overlay<'_, S> {
    fn case(&self, id: &TrackingNumber) -> Option<&Case> {
        self.cases.get(id).and_then(Option::as_ref)
    }

    fn standard(&self, agency: &AgencyId, service: &ServiceId) -> Option<StandardTerms> {
        let key = (agency.clone(), service.clone());
        self.standards
            .get(&key)
            .map(ServiceStandard::terms)
            .or_else(|| self.committed_standards.get(&key).cloned())
    }

    fn registry(&self) -> Option<&Registry> {
        Some(self.registry_now())
    }
}

impl<S: Store> StateMut for Overlay<'_, S> {
    fn case_mut(&mut self, id: &TrackingNumber) -> Option<&mut Case> {
        let case = self.cases.get_mut(id).and_then(Option::as_mut)?;
        self.dirty.insert(*id);
        Some(case)
    }

    fn insert_case(&mut self, case: Case) {
        self.dirty.insert(case.tracking_number);
        self.cases.insert(case.tracking_number, Some(case));
    }

    fn put_standard(&mut self, standard: ServiceStandard) {
        self.standards.insert((standard.agency.clone(), standard.service.clone()), standard);
    }

    fn holds_mut(&mut self) -> Option<&mut Holds> {
        Some(&mut self.registry_mut().holds)
    }
}

impl<S: Store> Fold for Overlay<'_, S> {
    fn accepted_seq(&self, id: &EventId) -> Result<Option<u64>, LedgerError> {
        match self.ids.get(id).or_else(|| self.stored_ids.get(id)) {
            Some(seq) => Ok(Some(*seq)),
            None if self.prefetched => Ok(None),
            None => Ok(self.store.event_seq(id)?),
        }
    }

    fn load_case(&mut self, id: &TrackingNumber) -> Result<(), LedgerError> {
        if !self.cases.contains_key(id) {
            let case = match self.cache.take(id) {
                Some(c) => Some(c),
                None => self.store.case(id)?,
            };
            self.cases.insert(*id, case);
        }
        Ok(())
    }

    fn note_accepted(&mut self, id: EventId, seq: u64) {
        self.ids.insert(id, seq);
        self.new_ids.push((id, seq));
    }

    fn registry_now(&self) -> &Registry {
        self.registry.as_ref().unwrap_or(self.committed_registry)
    }

    fn registry_mut(&mut self) -> &mut Registry {
        let committed = self.committed_registry;
        self.registry.get_or_insert_with(|| committed.clone())
    }
}

/// The state of a replay from scratch: the projection and the dedupe index,
/// both in memory (about 40 bytes per accepted event for the index).
#[derive(Default)]
struct Replay {
    state: MemState,
    ids: HashMap<EventId, u64>,
}

impl State for Replay {
    fn case(&self, id: &TrackingNumber) -> Option<&Case> {
        self.state.case(id)
    }

    fn standard(&self, agency: &AgencyId, service: &ServiceId) -> Option<StandardTerms> {
        self.state.standard(agency, service)
    }

    fn registry(&self) -> Option<&Registry> {
        Some(&self.state.registry)
    }
}

impl StateMut for Replay {
    fn case_mut(&mut self, id: &TrackingNumber) -> Option<&mut Case> {
        self.state.case_mut(id)
    }

    fn insert_case(&mut self, case: Case) {
        self.state.insert_case(case)
    }

    fn put_standard(&mut self, standard: ServiceStandard) {
        self.state.put_standard(standard)
    }

    fn holds_mut(&mut self) -> Option<&mut Holds> {
        self.state.holds_mut()
    }
}

impl Fold for Replay {
    fn accepted_seq(&self, id: &EventId) -> Result<Option<u64>, LedgerError> {
        Ok(self.ids.get(id).copied())
    }

    fn load_case(&mut self, _id: &TrackingNumber) -> Result<(), LedgerError> {
        Ok(())
    }

    fn note_accepted(&mut self, id: EventId, seq: u64) {
        self.ids.insert(id, seq);
    }

    fn registry_now(&self) -> &Registry {
        &self.state.registry
    }

    fn registry_mut(&mut self) -> &mut Registry {
        &mut self.state.registry
    }
}

/// Checks that `e` follows `prev` (the head before it): dense sequence,
/// hash link, stream sequence above the previous one.
fn check_link(prev: &Head, e: &LogEntry) -> Result<(), ChainError> {
    let want = prev.last_seq + 1;
    if e.seq != want {
        return Err(ChainError { seq: want, what: format!("found seq {} where {want} belongs", e.seq) });
    }
    if e.prev_hash != prev.head_hash {
        return Err(ChainError { seq: e.seq, what: "prev_hash is not the previous entry's hash".to_owned() });
    }
    if e.stream_seq <= prev.last_stream_seq {
        return Err(ChainError {
            seq: e.seq,
            what: format!("stream seq {} is not above the previous {}", e.stream_seq, prev.last_stream_seq),
        });
    }
    Ok(())
}

fn head_after(e: &LogEntry) -> Head {
    Head { last_seq: e.seq, last_stream_seq: e.stream_seq, head_hash: e.hash }
}

/// Entries in one chunk of the log that a reader thread of [`read_ahead`]
/// decodes (hash checked) and pre-checks ahead of the sequential walk: a
/// few blocks (a block holds up to [`mpp_store::BLOCK_ENTRIES_MAX`]), so a
/// chunk starting inside a block decodes only that block twice.
pub const READ_AHEAD_CHUNK_ENTRIES: u64 = 4096;

/// Chunks each reader thread of [`read_ahead`] may have sent ahead of the
/// walk. With the one it is reading and the one being walked, at most
/// (2 + 1) × readers + 1 chunks are in memory: 7 at two cores, about
/// 29,000 entries, some 70 MiB for rebuild at ~2.5 KiB per entry and its
/// checked message (13 chunks at [`READ_AHEAD_READERS_MAX`]).
pub const READ_AHEAD_CHUNKS: usize = 2;

/// Most reader threads of [`read_ahead`] (fewer on a machine with fewer
/// cores).
pub const READ_AHEAD_READERS_MAX: usize = 4;

/// One chunk read by a reader thread: its entries, each with what `pre`
/// computed, then the read error that ended it, if one did.
struct Chunk<T> {
    items: Vec<(LogEntry, T)>,
    err: Option<StoreError>,
}

/// Hands the entries 1..=`last_seq` of `store` to `step` in sequence order,
/// each with `pre(&entry)`, exactly as a loop over
/// `store.entries(1).take(last_seq)` would: a read error goes to `step` in
/// the place the iterator yields it and ends the walk, as does the first
/// error `step` returns. Reader threads (one per core, up to
/// [`READ_AHEAD_READERS_MAX`], where [`Store::parallel_entries`] allows;
/// else one) read alternate chunks of [`READ_AHEAD_CHUNK_ENTRIES`] entries
/// and compute `pre` ahead of `step`, which runs on the calling thread. A
/// reader reads the whole block holding a chunk's first entry, as the
/// iterator does, so the first error met in sequence order is the one a
/// single iterator would yield.
fn read_ahead<S: Store, T: Send, E>(
    store: &S,
    last_seq: u64,
    pre: impl Fn(&LogEntry) -> T + Sync,
    mut step: impl FnMut(Result<(LogEntry, T), StoreError>) -> Result<(), E>,
) -> Result<(), E> {
    if last_seq == 0 {
        return Ok(());
    }
    let readers = if store.parallel_entries() {
        std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, READ_AHEAD_READERS_MAX)
    } else {
        1
    };
    let chunks = last_seq.div_ceil(READ_AHEAD_CHUNK_ENTRIES);
    let chunk_of = |k: u64| {
        let start = 1 + k * READ_AHEAD_CHUNK_ENTRIES;
        (start, READ_AHEAD_CHUNK_ENTRIES.min(last_seq - start + 1))
    };
    let pre = &pre;
    std::thread::scope(|scope| {
        let mut rxs = Vec::with_capacity(readers);
        for r in 0..readers {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk<T>>(READ_AHEAD_CHUNKS);
            rxs.push(rx);
            scope.spawn(move || {
                // One reader reads the whole log through one iterator.
                let mut single = (readers == 1)
                    .then(|| store.entries(1).take(usize::try_from(last_seq).unwrap_or(usize::MAX)));
                let mut k = r as u64;
                while k < chunks {
                    let (start, len) = chunk_of(k);
                    let mut own;
                    let it: &mut dyn Iterator<Item = Result<LogEntry, StoreError>> = match single.as_mut() {
                        Some(it) => it,
                        None => {
                            own = store.entries(start);
                            &mut own
                        }
                    };
                    let mut chunk = Chunk { items: Vec::with_capacity(len as usize), err: None };
                    for e in it.take(len as usize) {
                        match e {
                            Ok(e) => {
                                let t = pre(&e);
                                chunk.items.push((e, t));
                            }
                            Err(e) => {
                                chunk.err = Some(e);
                                break;
                            }
                        }
                    }
                    let last = chunk.err.is_some() || (chunk.items.len() as u64) < len;
                    if tx.send(chunk).is_err() || last {
                        return;
                    }
                    k += readers as u64;
                }
            });
        }
        for k in 0..chunks {
            let (_, len) = chunk_of(k);
            // A reader that ends early has sent its last chunk; one that
            // panicked is joined (and its panic raised) when the scope ends.
            let Ok(chunk) = rxs[(k % readers as u64) as usize].recv() else { break };
            let short = (chunk.items.len() as u64) < len;
            for item in chunk.items {
                step(Ok(item))?;
            }
            if let Some(e) = chunk.err {
                return step(Err(e));
            }
            if short {
                break;
            }
        }
        Ok(())
    })
}

/// The walk of the log shared by [`verify_chain`] and [`rebuild`]: the
/// chain links, the Merkle tree recomputed alongside (checked against every
/// stored subtree hash), and every stored checkpoint's fields at its size.
struct Walk<'a, S: Store> {
    store: &'a S,
    head: Head,
    last_time_ns: i64,
    frontier: MerkleFrontier,
    completed: Vec<Subtree>,
    checkpoints: std::iter::Peekable<Checkpoints<'a>>,
}

impl<'a, S: Store> Walk<'a, S> {
    /// A walk from the empty log, checking checkpoints up to `last_seq`.
    fn new(store: &'a S, last_seq: u64) -> Result<Self, ChainError> {
        let mut w = Walk {
            store,
            head: Head::GENESIS,
            last_time_ns: 0,
            frontier: MerkleFrontier::new(),
            completed: Vec::new(),
            checkpoints: store.checkpoints(0, last_seq).peekable(),
        };
        w.check_checkpoints()?;
        Ok(w)
    }

    fn step(&mut self, e: &LogEntry) -> Result<(), ChainError> {
        check_link(&self.head, e)?;
        self.completed.clear();
        push_entry(&mut self.frontier, &e.hash, &mut self.completed)
            .map_err(|_| ChainError { seq: e.seq, what: "the Merkle tree is full".to_owned() })?;
        for t in &self.completed {
            let stored = self.store.subtree(t.level, t.index).map_err(|err| ChainError {
                seq: e.seq,
                what: format!("reading Merkle subtree {}/{}: {err}", t.level, t.index),
            })?;
            if stored != Some(t.hash) {
                return Err(ChainError {
                    seq: e.seq,
                    what: format!(
                        "the stored hash of Merkle subtree {}/{} (completed by this entry) is {}",
                        t.level,
                        t.index,
                        if stored.is_some() { "wrong" } else { "missing" }
                    ),
                });
            }
        }
        self.head = head_after(e);
        self.last_time_ns = e.stream_time_ns;
        self.check_checkpoints()
    }

    /// Checks the stored checkpoints of the current size (and skips none).
    fn check_checkpoints(&mut self) -> Result<(), ChainError> {
        let size = self.head.last_seq;
        while let Some(next) =
            self.checkpoints.next_if(|r| r.as_ref().map_or(true, |c| c.checkpoint.tree_size <= size))
        {
            let cp =
                next.map_err(|err| ChainError { seq: size, what: format!("reading checkpoints: {err}") })?;
            let c = &cp.checkpoint;
            let differs = [
                (c.root_hash != self.frontier.root(), "root hash"),
                (c.head_hash != self.head.head_hash, "head hash"),
                (c.last_stream_seq != self.head.last_stream_seq, "stream sequence"),
                (c.last_entry_time_ns != self.last_time_ns, "entry time"),
            ];
            if let Some((_, what)) = differs.iter().find(|(d, _)| *d) {
                return Err(ChainError {
                    seq: c.tree_size,
                    what: format!(
                        "the stored checkpoint of tree size {}: its {what} is not the log's",
                        c.tree_size
                    ),
                });
            }
        }
        Ok(())
    }

    /// Checks the stored head and frontier against the end of the walk.
    fn finish(self, stored: &Head, stored_frontier: &MerkleFrontier) -> Result<Head, ChainError> {
        if *stored != self.head {
            return Err(ChainError {
                seq: stored.last_seq,
                what: format!("the stored head {stored:?} differs from the end of the log {:?}", self.head),
            });
        }
        if *stored_frontier != self.frontier {
            return Err(ChainError {
                seq: stored.last_seq,
                what: format!(
                    "the stored Merkle frontier (root {}) differs from the tree of the log (root {})",
                    hex::encode(stored_frontier.root()),
                    hex::encode(self.frontier.root())
                ),
            });
        }
        Ok(self.head)
    }
}

/// Verifies the whole log: every entry decodes and hashes to its stored hash
/// (checked by the store on read), sequences are dense from 1, each
/// `prev_hash` is the previous entry's hash, stream sequences increase, the
/// stored head describes the last entry, the Merkle tree recomputed from the
/// entries equals the stored frontier and every stored subtree hash, and
/// every stored checkpoint's root, head hash, stream sequence and entry time
/// are those of the log at its size (signatures are checked elsewhere, with
/// the public key). Reads up to the head as it was when called, so it also
/// works on a live store. Returns the number of entries, or the first bad
/// sequence.
pub fn verify_chain(store: &impl Store) -> Result<u64, ChainError> {
    let (stored, stored_frontier) = store
        .head_and_frontier()
        .map_err(|e| ChainError { seq: 0, what: format!("reading the head: {e}") })?;
    let mut walk = Walk::new(store, stored.last_seq)?;
    // Up to the head read above: a live store may commit more meanwhile.
    read_ahead(
        store,
        stored.last_seq,
        |_| (),
        |e| {
            let (e, ()) =
                e.map_err(|err| ChainError { seq: walk.head.last_seq + 1, what: err.to_string() })?;
            walk.step(&e)
        },
    )?;
    Ok(walk.finish(&stored, &stored_frontier)?.last_seq)
}

/// Rebuilds the projection from the log alone, the way an auditor does:
/// replays every entry from scratch (decode, validate, dedupe, decide, apply)
/// while checking the chain, and requires every replayed entry to hash
/// exactly like the stored one, so a verdict, reason or detail that the rules
/// would not produce is found too. Checks the Merkle tree and the stored
/// checkpoints like [`verify_chain`]. Reads up to the head as it was when
/// called. Returns the projection and the head.
///
/// Trusts no registrar key, so a log holding accepted registry statements
/// does not replay: use [`rebuild_with`] and the hub's registrar keys.
pub fn rebuild(store: &impl Store) -> Result<(MemState, Head), LedgerError> {
    rebuild_with(store, &Trust::default())
}

/// [`rebuild`], judging registry statements with the registrar keys of
/// `trust`.
pub fn rebuild_with(store: &impl Store, trust: &Trust) -> Result<(MemState, Head), LedgerError> {
    rebuild_with_ids(store, trust).map(|r| (r.state, r.head))
}

/// What [`rebuild_with_ids`] re-derived from a log.
#[derive(Debug, Clone, Default)]
pub struct Rebuilt {
    /// The projection: cases, standards in force, the registry.
    pub state: MemState,
    /// The dedupe index: every accepted event id and the sequence of the
    /// entry that accepted it.
    pub event_ids: HashMap<EventId, u64>,
    /// The head of the log replayed.
    pub head: Head,
}

/// [`rebuild_with`], also handing back the event ids the replay accepted,
/// to compare with a store's dedupe index.
pub fn rebuild_with_ids(store: &impl Store, trust: &Trust) -> Result<Rebuilt, LedgerError> {
    let (stored, stored_frontier) = store.head_and_frontier()?;
    let mut replay = Replay::default();
    let mut walk = Walk::new(store, stored.last_seq)?;
    // Up to the head read above: a live store may commit more meanwhile.
    // The readers decode and check each message ahead (steps 1-4, a pure
    // function of the entry); the judging that depends on the log before
    // it runs here, in order.
    read_ahead(
        store,
        stored.last_seq,
        |e| check_entry(&e.subject, &e.payload, e.redrive.as_ref(), e.stream_time_ns.div_euclid(1_000_000)),
        |item| -> Result<(), LedgerError> {
            let (e, checked) =
                item.map_err(|err| ChainError { seq: walk.head.last_seq + 1, what: err.to_string() })?;
            walk.step(&e)?;
            let redrive = RedriveOf::read(store, e.redrive.as_ref(), &[], &e.subject, &e.payload)?;
            let recorded_at_ms = e.stream_time_ns.div_euclid(1_000_000);
            let j = judge_checked(&mut replay, trust, e.seq, checked, redrive, recorded_at_ms)?;
            check_replayed(&e, &j)
        },
    )?;
    let head = walk.finish(&stored, &stored_frontier)?;
    Ok(Rebuilt { state: replay.state, event_ids: replay.ids, head })
}

/// Checks that judging the stored entry `e` again gave its verdict, reason
/// and detail: the replayed entry, built exactly as the ledger builds it
/// (detail truncated the same way), must hash like the stored one.
fn check_replayed(e: &LogEntry, j: &Judgement) -> Result<(), LedgerError> {
    // `e` comes from `Store::entries`, which checked its hash against its
    // stored bytes, and decoding is exact (encoding `e` again gives those
    // bytes: every field is kept as stored and reason codes map one to
    // one). So when the replayed entry would have exactly `e`'s fields
    // (nothing truncated, the same verdict, reason and detail), it hashes
    // like `e` without hashing it again; anything else is hashed below.
    let untruncated = j.detail.len() <= limits::DETAIL_BYTES_MAX
        && e.subject.len() <= limits::SUBJECT_BYTES_MAX
        && e.redrive.as_ref().is_none_or(|r| r.operator.len() <= limits::OPERATOR_ID_BYTES_MAX);
    if untruncated && j.verdict == e.verdict && j.reason == e.reason && j.detail == e.detail {
        return Ok(());
    }
    let again = LogEntry::new(
        e.seq,
        e.stream_seq,
        e.stream_time_ns,
        j.verdict,
        j.reason,
        &j.detail,
        &e.subject,
        e.payload.clone(),
        e.prev_hash,
    )
    .with_redrive(e.redrive.clone());
    if again.hash == e.hash {
        return Ok(());
    }
    Err(LedgerError::Replay {
        seq: e.seq,
        what: format!(
            "stored {} {} {:?}, replayed {} {} {:?}",
            e.verdict.as_str(),
            e.reason.map_or("-", |r| r.as_str()),
            e.detail,
            again.verdict.as_str(),
            again.reason.map_or("-", |r| r.as_str()),
            again.detail
        ),
    })
}

/// The projection as stored (every case and every standard in force), to
/// compare with [`rebuild`].
pub fn projection(store: &impl Store) -> Result<MemState, StoreError> {
    let mut state = MemState::default();
    for c in store.cases() {
        let c = c?;
        state.cases.insert(c.tracking_number, c);
    }
    for s in store.standards()? {
        state.standards.insert((s.agency.clone(), s.service.clone()), s);
    }
    state.registry = store.registry()?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, stream_seq: u64, prev: &Head) -> LogEntry {
        LogEntry::new(
            seq,
            stream_seq,
            0,
            Verdict::Rejected,
            Some(ReasonCode::EmptyMessage),
            "",
            "s",
            vec![],
            prev.head_hash,
        )
    }

    #[test]
    fn check_link_names_the_first_bad_seq() {
        let g = Head::GENESIS;
        let e1 = entry(1, 5, &g);
        assert_eq!(check_link(&g, &e1), Ok(()));
        let h1 = head_after(&e1);
        // A missing entry: seq 3 where 2 belongs.
        assert_eq!(check_link(&h1, &entry(3, 6, &h1)).unwrap_err().seq, 2);
        // A broken link.
        let err = check_link(&h1, &entry(2, 6, &g)).unwrap_err();
        assert_eq!(err.seq, 2);
        assert!(err.what.contains("prev_hash"), "{}", err.what);
        // A stream sequence going back.
        let err = check_link(&h1, &entry(2, 5, &h1)).unwrap_err();
        assert!(err.what.contains("stream seq"), "{}", err.what);
    }
}
