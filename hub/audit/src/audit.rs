//! The auditor's library: proofs over the hub's log, a case as of any
//! point, a filtered replay, receipts, and the checks an auditor runs on
//! what the hub hands out. Used by the audit gRPC service
//! ([`crate::audit_service`]) and by `mpp-hub audit`.
//!
//! What the hub proves (see [`mpp_core::merkle`] and
//! [`mpp_core::checkpoint`]): the signed checkpoint of tree size `n` commits
//! to entries `1..=n` through the RFC 9162 Merkle root over their chain
//! hashes (leaf index `seq - 1`) and to entry `n` through its head hash. An
//! inclusion proof shows one entry is among them; a consistency proof shows
//! that an older checkpoint's tree is a prefix of a newer one's. Everything
//! here that verifies ([`verify_signature`], [`verify_inclusion_of`],
//! [`verify_checkpoints_consistent`], [`verify_receipt`]) needs nothing but
//! the hub's public key and what the hub answered, so an auditor runs it on
//! their own machine.

use mpp_core::checkpoint::{Checkpoint, CheckpointOrderError, KeyId, SignatureError, SignedCheckpoint};
use mpp_core::decide::{State, StateMut};
use mpp_core::ids::{AgencyId, EventId, ServiceId, TrackingNumber};
use mpp_core::log::{Hash32, Verdict};
use mpp_core::merkle::{self, ProofError, ProveError};
use mpp_core::registry::Registry;
use mpp_core::validate::{parse_subject, validate};
use mpp_core::{apply, limits, Case, EntryMeta, EventKind, LogEntry, ServiceStandard, StandardTerms};
use mpp_proto::v1 as pb;
use mpp_store::{Store, StoreError};
use prost::Message as _;

use mpp_wire as wire;

/// Most log entries [`case_at`] reads: every entry a case can hold (its
/// opening, then at most [`limits::TIMELINE_ITEMS_PER_APPLICATION_MAX`] events
/// in each of at most [`limits::APPLICATIONS_PER_CASE_MAX`] applications).
pub const CASE_ENTRIES_MAX: usize =
    1 + limits::APPLICATIONS_PER_CASE_MAX * limits::TIMELINE_ITEMS_PER_APPLICATION_MAX;

/// Why an audit question has no answer.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The store failed or is corrupt.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The sequence, tree size or event asked about is not (yet) in the log,
    /// or no checkpoint of that size was stored.
    #[error("not found: {0}")]
    NotFound(String),
    /// The question itself is malformed: a sequence of 0, sizes out of
    /// order, a sequence above the tree size.
    #[error("invalid question: {0}")]
    Invalid(String),
    /// The store contradicts itself: a case's index names an entry that is
    /// not an accepted event of that case.
    #[error("log entry {seq} contradicts the case index: {what}")]
    Inconsistent {
        /// The entry.
        seq: u64,
        /// What is wrong.
        what: String,
    },
}

fn prove_err(e: ProveError<StoreError>) -> AuditError {
    match e {
        ProveError::Source(s) => AuditError::Store(s),
        other => AuditError::Invalid(other.to_string()),
    }
}

/// Checks that `tree_size` is at most the head's sequence.
fn check_tree_size(store: &impl Store, tree_size: u64) -> Result<u64, AuditError> {
    let last_seq = store.head()?.last_seq;
    if tree_size > last_seq {
        return Err(AuditError::NotFound(format!(
            "tree size {tree_size} is beyond the head of the log ({last_seq})"
        )));
    }
    Ok(last_seq)
}

/// The entry `seq` and its inclusion proof in the tree of `tree_size`
/// entries (leaf index `seq - 1`, lowest sibling first). Needs
/// `1 <= seq <= tree_size <= head`.
pub fn inclusion_proof<S: Store>(
    store: &S,
    seq: u64,
    tree_size: u64,
) -> Result<(LogEntry, Vec<Hash32>), AuditError> {
    if seq == 0 || seq > tree_size {
        return Err(AuditError::Invalid(format!("seq {seq} is not in 1..={tree_size}")));
    }
    check_tree_size(store, tree_size)?;
    let entry = store.entry(seq)?.ok_or_else(|| AuditError::NotFound(format!("no log entry {seq}")))?;
    let proof = merkle::inclusion_proof(store, seq - 1, tree_size).map_err(prove_err)?;
    Ok((entry, proof))
}

/// The consistency proof from tree size `old_size` to `new_size` (lowest
/// node first; empty when the sizes are equal or `old_size` is 0). Needs
/// `old_size <= new_size <= head`.
pub fn consistency_proof<S: Store>(
    store: &S,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash32>, AuditError> {
    if old_size > new_size {
        return Err(AuditError::Invalid(format!(
            "old tree size {old_size} exceeds new tree size {new_size}"
        )));
    }
    check_tree_size(store, new_size)?;
    merkle::consistency_proof(store, old_size, new_size).map_err(prove_err)
}

/// The root hash of the first `tree_size` entries (at most the head).
pub fn root_at<S: Store>(store: &S, tree_size: u64) -> Result<Hash32, AuditError> {
    check_tree_size(store, tree_size)?;
    Ok(merkle::root_at(store, tree_size)?)
}

/// Why something the hub handed out does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The checkpoint's signature does not verify under the public key.
    #[error("signature: {0}")]
    Signature(#[from] SignatureError),
    /// The Merkle proof does not lead to the checkpoint's root.
    #[error("proof: {0}")]
    Proof(#[from] ProofError),
    /// The two checkpoints cannot be two states of one log.
    #[error("checkpoint order: {0}")]
    Order(#[from] CheckpointOrderError),
}

/// Verifies a checkpoint's Ed25519 signature (RFC 8032, as `ring`
/// implements it: canonical `S` required) under `public_key`, and that the
/// checkpoint names that key's id.
pub fn verify_signature(public_key: &[u8; 32], checkpoint: &SignedCheckpoint) -> Result<(), SignatureError> {
    checkpoint.verify(KeyId::of(public_key), |msg, sig| {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key)
            .verify(msg, sig)
            .is_ok()
    })
}

/// Verifies that the entry with sequence `seq` and chain hash `entry_hash`
/// is in the tree that `checkpoint` signs, by `proof`. The entry hash must
/// be one the auditor computed (e.g. [`LogEntry::decode`] of the record, or
/// [`LogEntry::new`] from its fields), not one taken on trust.
pub fn verify_inclusion_of(
    seq: u64,
    entry_hash: &Hash32,
    proof: &[Hash32],
    checkpoint: &Checkpoint,
) -> Result<(), ProofError> {
    let index = seq
        .checked_sub(1)
        .ok_or(ProofError::IndexOutOfRange { index: 0, tree_size: checkpoint.tree_size })?;
    merkle::verify_inclusion(
        &merkle::entry_leaf_hash(entry_hash),
        index,
        checkpoint.tree_size,
        proof,
        &checkpoint.root_hash,
    )
}

/// Verifies that `newer` extends `older`: same origin, no rollback, and the
/// consistency `proof` between their roots.
pub fn verify_checkpoints_consistent(
    older: &Checkpoint,
    newer: &Checkpoint,
    proof: &[Hash32],
) -> Result<(), VerifyError> {
    newer.check_follows(older)?;
    merkle::verify_consistency(older.tree_size, newer.tree_size, &older.root_hash, &newer.root_hash, proof)?;
    Ok(())
}

/// What the hub answers an agency about one of its accepted events: where
/// the event sits in the log and, once a checkpoint covers it, the proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The event.
    pub event_id: EventId,
    /// Sequence of the entry that accepted it.
    pub seq: u64,
    /// That entry's chain hash.
    pub entry_hash: Hash32,
    /// The latest signed checkpoint, if it covers `seq` (`None` until the
    /// next checkpoint is signed: ask again).
    pub checkpoint: Option<SignedCheckpoint>,
    /// Inclusion proof of the entry in the checkpoint's tree (empty without
    /// a checkpoint).
    pub proof: Vec<Hash32>,
}

/// The receipt of an accepted event, `None` if the hub accepted no event
/// with this id (rejected events have no receipt: their ids stay free).
/// The proof is against the latest checkpoint; an agency can later ask
/// [`consistency_proof`] from that checkpoint to any newer one, so one
/// receipt proves the event against every later checkpoint.
pub fn receipt<S: Store>(store: &S, event_id: &EventId) -> Result<Option<Receipt>, AuditError> {
    let Some(seq) = store.event_seq(event_id)? else { return Ok(None) };
    let entry = store.entry(seq)?.ok_or_else(|| AuditError::Inconsistent {
        seq,
        what: "the event index names an entry past the head".to_owned(),
    })?;
    let checkpoint = store.latest_checkpoint()?.filter(|c| c.checkpoint.tree_size >= seq);
    let proof = match &checkpoint {
        Some(c) => merkle::inclusion_proof(store, seq - 1, c.checkpoint.tree_size).map_err(prove_err)?,
        None => Vec::new(),
    };
    Ok(Some(Receipt { event_id: *event_id, seq, entry_hash: entry.hash, checkpoint, proof }))
}

/// Verifies a receipt offline: the checkpoint's signature under the hub's
/// public key and the entry's inclusion in its tree. A receipt without a
/// checkpoint proves nothing yet ([`ProofError::WrongLength`]).
pub fn verify_receipt(public_key: &[u8; 32], receipt: &Receipt) -> Result<(), VerifyError> {
    let Some(cp) = &receipt.checkpoint else {
        return Err(ProofError::WrongLength { len: receipt.proof.len() }.into());
    };
    verify_signature(public_key, cp)?;
    verify_inclusion_of(receipt.seq, &receipt.entry_hash, &receipt.proof, &cp.checkpoint)?;
    Ok(())
}

/// The point a case is rebuilt as of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// After the log entry with this sequence (and every one before it).
    Seq(u64),
    /// After the case's entries recorded at or before this time, Unix ms
    /// (the case's entries in log order up to the first one recorded later;
    /// times of record follow the stream, so this is the case as it stood
    /// at that moment).
    TimeMs(i64),
}

/// The state one case is folded in: the case itself, and the service
/// standard terms the live case recorded for the application being filed.
struct CaseFold<'a> {
    tn: TrackingNumber,
    live: &'a Case,
    case: Option<Case>,
    filing: Option<ServiceStandard>,
    /// The registry's start alone (an opening under the registry drops
    /// held applications, `mpp_core::hold`), while the entry folded is
    /// past it.
    registry: Option<Registry>,
}

impl State for CaseFold<'_> {
    fn case(&self, id: &TrackingNumber) -> Option<&Case> {
        self.case.as_ref().filter(|_| *id == self.tn)
    }

    fn standard(&self, agency: &AgencyId, service: &ServiceId) -> Option<StandardTerms> {
        self.filing
            .as_ref()
            .filter(|s| s.agency == *agency && s.service == *service)
            .map(ServiceStandard::terms)
    }

    fn registry(&self) -> Option<&Registry> {
        self.registry.as_ref()
    }
}

impl StateMut for CaseFold<'_> {
    fn case_mut(&mut self, id: &TrackingNumber) -> Option<&mut Case> {
        self.case.as_mut().filter(|_| *id == self.tn)
    }

    fn insert_case(&mut self, case: Case) {
        if case.tracking_number == self.tn {
            self.case = Some(case);
        }
    }

    fn put_standard(&mut self, _standard: ServiceStandard) {}
}

/// The terms the live case copied from the standard in force when the
/// application was filed, as a standard `apply` copies them from again.
fn filing_terms(live: &Case, app: &mpp_core::ApplicationId) -> Option<ServiceStandard> {
    let a = live.application(app).filter(|a| a.standard_version != 0)?;
    Some(ServiceStandard {
        agency: a.agency.clone(),
        service: a.service.clone(),
        name_id: String::new(),
        name_en: String::new(),
        completion_working_days: a.sla_working_days,
        fee_idr: 0,
        requirements: Vec::new(),
        fiktif_positif: a.fiktif_positif,
        version: a.standard_version,
        effective_from_seq: 0,
        effective_from_ms: 0,
        // Where the issued document is collected, as the live case recorded
        // it at the issue (once collected, the fold shows a bare collect).
        collection: match &a.pending {
            Some(mpp_core::case::Pending::CollectAt { place, within_working_days }) => {
                Some(mpp_core::Collection { place: place.clone(), within_working_days: *within_working_days })
            }
            _ => None,
        },
    })
}

/// The case as it stood at `as_of`, folded from its own accepted entries
/// (the case → entries index in the live case: its opening and every
/// timeline item), `None` if it was not opened by then (or never). Reads at
/// most [`CASE_ENTRIES_MAX`] entries, not the whole log. Each entry is
/// decoded and validated again and must be an accepted event of this case.
///
/// The standard terms an application was filed under come from the live
/// case (they are copied at filing and never change), so the fold needs no
/// history of the service standards and equals the projection a full replay
/// of the log up to `as_of` gives.
pub fn case_at<S: Store>(store: &S, tn: &TrackingNumber, as_of: AsOf) -> Result<Option<Case>, AuditError> {
    let Some(live) = store.case(tn)? else { return Ok(None) };
    let registry_since_seq = store.registry()?.since_seq;
    let mut fold = CaseFold { tn: *tn, live: &live, case: None, filing: None, registry: None };
    for seq in live.entry_seqs().into_iter().take(CASE_ENTRIES_MAX) {
        if let AsOf::Seq(n) = as_of {
            if seq > n {
                break;
            }
        }
        let entry = store.entry(seq)?.ok_or_else(|| AuditError::Inconsistent {
            seq,
            what: "the case names an entry past the head".to_owned(),
        })?;
        let recorded_at_ms = entry.recorded_at_ms();
        if let AsOf::TimeMs(t) = as_of {
            if recorded_at_ms > t {
                break;
            }
        }
        let bad = |what: &str| AuditError::Inconsistent { seq, what: what.to_owned() };
        if entry.verdict != Verdict::Accepted {
            return Err(bad("the case names an entry that was not accepted"));
        }
        let decoded =
            pb::Envelope::decode(entry.payload.as_slice()).map_err(|_| bad("the payload does not decode"))?;
        let env = validate(&entry.subject, &wire::to_unchecked(&decoded), recorded_at_ms)
            .map_err(|r| bad(&format!("the event no longer validates: {}", r.code.as_str())))?;
        if env.case_id() != Some(*tn) {
            return Err(bad("the event is about another case"));
        }
        fold.filing = match &env.target {
            mpp_core::event::Target::Application(_, app)
                if env.body.kind() == EventKind::ApplicationFiled =>
            {
                filing_terms(fold.live, app)
            }
            _ => None,
        };
        fold.registry = registry_since_seq
            .filter(|since| *since < seq)
            .map(|since| Registry { since_seq: Some(since), ..Registry::default() });
        apply(&mut fold, &env, EntryMeta { seq, recorded_at_ms });
    }
    Ok(fold.case)
}

/// Which entries a replay yields; every field set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayFilter {
    /// The agency on the entry's subject (`mpp.events.<agency>.<service>`):
    /// the agency that published it, whatever the payload claims.
    pub agency: Option<AgencyId>,
    /// The case the payload's envelope names (decoded leniently: rejected
    /// events count too, as long as their payload decodes and names it).
    pub case: Option<TrackingNumber>,
    /// The kind of event in the payload's envelope.
    pub event_type: Option<EventKind>,
    /// The hub's verdict.
    pub verdict: Option<Verdict>,
}

impl ReplayFilter {
    /// Whether `e` passes. Decodes the payload only when a case or event
    /// type is asked for.
    pub fn matches(&self, e: &LogEntry) -> bool {
        if self.verdict.is_some_and(|v| v != e.verdict) {
            return false;
        }
        if let Some(agency) = &self.agency {
            match parse_subject(&e.subject) {
                Ok((a, _)) if a == agency.as_str() => {}
                _ => return false,
            }
        }
        if self.case.is_none() && self.event_type.is_none() {
            return true;
        }
        let Ok(env) = pb::Envelope::decode(e.payload.as_slice()) else { return false };
        if let Some(tn) = &self.case {
            if TrackingNumber::parse(&env.case_id).ok() != Some(*tn) {
                return false;
            }
        }
        if let Some(kind) = self.event_type {
            if wire::to_unchecked(&env).body.map(|b| b.kind()) != Some(kind) {
                return false;
            }
        }
        true
    }
}

/// The entries with `from_seq <= seq <= to_seq` (and at most the head when
/// called) that pass `filter`, in sequence order, read lazily block by block:
/// memory stays at one log block whatever the range. Each entry's hash is
/// checked against its bytes; the chain between entries is the auditor's to
/// check. Ends after the first error.
pub fn replay<'a, S: Store>(
    store: &'a S,
    from_seq: u64,
    to_seq: u64,
    filter: ReplayFilter,
) -> impl Iterator<Item = Result<LogEntry, StoreError>> + Send + 'a {
    store
        .entries(from_seq.max(1))
        .take_while(move |r| r.as_ref().map_or(true, |e| e.seq <= to_seq))
        .filter(move |r| r.as_ref().map_or(true, |e| filter.matches(e)))
}
