//! The audit gRPC service (`mpp.v1.AuditService`): replay, checkpoints,
//! proofs, a case as of any point, receipts. Read-only; every call needs an
//! auditor token ([`crate::auth::AuditorAuth`], added by the server).
//!
//! # Replay: paged and back-pressured
//!
//! A replay is one page of at most [`REPLAY_PAGE_ENTRIES_MAX`] matching
//! entries. A blocking reader (one thread of tokio's blocking pool) reads the
//! log block by block and feeds a channel of [`REPLAY_CHANNEL_ENTRIES`]
//! entries; when the client reads slower than the log is read, the channel
//! fills and the reader waits, so nothing is buffered beyond it. The reader
//! stops when the client goes away (checked before every entry it reads,
//! matching or not), or when the client has not taken an entry for
//! [`REPLAY_SEND_TIMEOUT`]. At most [`REPLAY_STREAMS_MAX`] replays run at
//! once; more are refused with `RESOURCE_EXHAUSTED`.
//!
//! Memory bound: per replay, the channel's [`REPLAY_CHANNEL_ENTRIES`]
//! entries of at most about 1 MiB each (a log entry keeps the payload as
//! received, up to NATS `max_payload`, 1 MiB, plus about 1 KiB of fields)
//! plus one decoded log block (about [`mpp_store::BLOCK_BYTES_MAX`] plus one
//! entry): 32 × 1 MiB + 2 MiB = 34 MiB at the very worst, about 100 KiB for
//! entries of typical size (1-2 KiB); so at most
//! [`REPLAY_STREAMS_MAX`] × 34 MiB = 272 MiB for all replays together.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use mpp_core::checkpoint::SignedCheckpoint;
use mpp_core::ids::{AgencyId, EventId};
use mpp_core::log::Verdict;
use mpp_core::sla::{case_sla, case_status_at};
use mpp_core::{EventKind, ReasonCode, TrackingNumber};
use mpp_proto::v1 as pb;
use mpp_proto::v1::audit_service_server::AuditService;
use mpp_store::{SledStore, Store};
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::{debug, error, warn};

use crate::audit::{self, AsOf, AuditError, ReplayFilter};
use crate::cosign::Cosignatures;
use mpp_lookup::access::{AccessChannel, AccessEvent, Accessor};
use mpp_lookup::error::ApiError;
use mpp_lookup::lookup::{parse_tracking_number, Found, Lookups, ServiceName};
use mpp_wire as wire;

/// Largest audit request the gRPC server decodes, in bytes: every request
/// is a few numbers and ids (a replay's filters included).
pub const AUDIT_REQUEST_BYTES_MAX: usize = 4 * 1024;

/// Entries in a replay page when the request does not say.
pub const REPLAY_PAGE_ENTRIES_DEFAULT: u32 = 1000;

/// Most entries in one replay page.
pub const REPLAY_PAGE_ENTRIES_MAX: u32 = 10_000;

/// Entries buffered between a replay's reader and its client.
pub const REPLAY_CHANNEL_ENTRIES: usize = 32;

/// Replays running at once.
pub const REPLAY_STREAMS_MAX: usize = 8;

/// How long a replay's reader waits for the client to take an entry before
/// it ends the stream.
pub const REPLAY_SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// The audit service.
#[derive(Debug, Clone)]
pub struct Audit {
    lookups: Lookups,
    replays: Arc<Semaphore>,
    cosignatures: Option<Arc<Cosignatures>>,
}

impl Audit {
    /// Answers from the store, calendars and access log of `lookups`.
    pub fn new(lookups: Lookups) -> Self {
        Self { lookups, replays: Arc::new(Semaphore::new(REPLAY_STREAMS_MAX)), cosignatures: None }
    }

    /// Serves every checkpoint note with the witnesses' cosignatures held
    /// for its size ([`crate::cosign`]).
    pub fn with_cosignatures(mut self, cosignatures: Arc<Cosignatures>) -> Self {
        self.cosignatures = Some(cosignatures);
        self
    }

    /// The wire form of `cp`, its note cosigned when cosignatures are held.
    fn wire(&self) -> impl Fn(&SignedCheckpoint) -> pb::SignedCheckpoint + Send + 'static {
        let cos = self.cosignatures.clone();
        move |cp| cosigned_checkpoint_to_wire(cos.as_deref(), cp)
    }

    fn store(&self) -> &SledStore {
        self.lookups.store()
    }
}

/// The stream type of `Replay`.
pub type LogEntryStream = Pin<Box<dyn Stream<Item = Result<pb::LogEntry, Status>> + Send>>;

fn invalid(message: impl Into<String>) -> Status {
    ApiError::new(ReasonCode::InvalidFieldValue, message).into()
}

fn audit_status(e: AuditError) -> Status {
    match e {
        AuditError::NotFound(m) => Status::not_found(m),
        AuditError::Invalid(m) => invalid(m),
        AuditError::Store(e) => {
            error!(error = %e, "Audit read failed in the store");
            ApiError::internal().into()
        }
        e @ AuditError::Inconsistent { .. } => {
            error!(error = %e, "The store contradicts itself, operator action needed");
            Status::data_loss(e.to_string())
        }
    }
}

fn store_status(e: mpp_store::StoreError) -> Status {
    audit_status(AuditError::Store(e))
}

/// The wire form of a signed checkpoint.
pub fn checkpoint_to_wire(cp: &SignedCheckpoint) -> pb::SignedCheckpoint {
    pb::SignedCheckpoint {
        encoded: cp.encode(),
        text: cp.to_text(),
        tree_size: cp.checkpoint.tree_size,
        note: cp.to_note().unwrap_or_default(),
    }
}

/// [`checkpoint_to_wire`], with the note carrying the cosignatures held in
/// `cosignatures` for the checkpoint's size.
pub fn cosigned_checkpoint_to_wire(
    cosignatures: Option<&Cosignatures>,
    cp: &SignedCheckpoint,
) -> pb::SignedCheckpoint {
    let mut w = checkpoint_to_wire(cp);
    if let Some(note) = cosignatures.and_then(|c| c.note_of(cp)) {
        w.note = note;
    }
    w
}

/// `size`, or the tree size of the latest signed checkpoint when `size` is
/// 0 (the requests' "latest").
fn size_or_latest(store: &SledStore, size: u64) -> Result<u64, AuditError> {
    if size != 0 {
        return Ok(size);
    }
    let latest = store
        .latest_checkpoint()?
        .ok_or_else(|| AuditError::NotFound("no checkpoint has been signed yet".to_owned()))?;
    Ok(latest.checkpoint.tree_size)
}

fn hashes(h: &[[u8; 32]]) -> Vec<Vec<u8>> {
    h.iter().map(|x| x.to_vec()).collect()
}

/// Runs `f` on the blocking pool (proofs and folds read many keys).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AuditError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| {
            error!(error = %e, "Audit task failed");
            Status::from(ApiError::internal())
        })?
        .map_err(audit_status)
}

/// The filter of a replay request.
fn replay_filter(r: &pb::ReplayRequest) -> Result<ReplayFilter, Status> {
    let agency = match r.agency_id.as_str() {
        "" => None,
        a => Some(AgencyId::parse(a).map_err(ApiError::from)?),
    };
    let case = match r.tracking_number.as_str() {
        "" => None,
        t => Some(parse_tracking_number(t)?),
    };
    let event_type = match r.event_type.as_str() {
        "" => None,
        t => Some(EventKind::from_name(t).ok_or_else(|| invalid(format!("unknown event type {t:?}")))?),
    };
    let verdict = match pb::Verdict::try_from(r.verdict) {
        Ok(pb::Verdict::Unspecified) => None,
        Ok(pb::Verdict::Accepted) => Some(Verdict::Accepted),
        Ok(pb::Verdict::Rejected) => Some(Verdict::Rejected),
        Ok(pb::Verdict::Duplicate) => Some(Verdict::Duplicate),
        Err(_) => return Err(invalid(format!("unknown verdict {}", r.verdict))),
    };
    Ok(ReplayFilter { agency, case, event_type, verdict })
}

#[tonic::async_trait]
impl AuditService for Audit {
    type ReplayStream = LogEntryStream;

    async fn replay(
        &self,
        request: Request<pb::ReplayRequest>,
    ) -> Result<Response<Self::ReplayStream>, Status> {
        let r = request.into_inner();
        let filter = replay_filter(&r)?;
        let page = match r.max_entries {
            0 => REPLAY_PAGE_ENTRIES_DEFAULT,
            n if n > REPLAY_PAGE_ENTRIES_MAX => {
                return Err(invalid(format!("max_entries is at most {REPLAY_PAGE_ENTRIES_MAX}")))
            }
            n => n,
        };
        let from = r.from_seq.max(1);
        let to = if r.to_seq == 0 { u64::MAX } else { r.to_seq };
        if from > to {
            return Err(invalid(format!("from_seq {from} is above to_seq {to}")));
        }
        let permit = self.replays.clone().try_acquire_owned().map_err(|_| {
            Status::from(ApiError::new(
                ReasonCode::RateLimited,
                format!("{REPLAY_STREAMS_MAX} replays are running; retry when one ends"),
            ))
        })?;
        let (tx, rx) = mpsc::channel(REPLAY_CHANNEL_ENTRIES);
        let store = self.store().clone();
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut sent = 0u32;
            // `entries` stops at the head as it is now.
            for item in store.entries(from) {
                if tx.is_closed() {
                    debug!("Replay client went away");
                    return;
                }
                let msg = match item {
                    Ok(e) if e.seq > to => return,
                    Ok(e) if !filter.matches(&e) => continue,
                    Ok(e) => Ok(wire::log_entry(&e)),
                    Err(e) => {
                        error!(error = %e, "Replay read failed in the store");
                        Err(Status::from(ApiError::internal()))
                    }
                };
                let last = msg.is_err();
                match runtime.block_on(tx.send_timeout(msg, REPLAY_SEND_TIMEOUT)) {
                    Ok(()) => {}
                    Err(mpsc::error::SendTimeoutError::Closed(_)) => return,
                    Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                        warn!(
                            timeout_s = REPLAY_SEND_TIMEOUT.as_secs(),
                            "Replay client stopped reading; stream ended"
                        );
                        return;
                    }
                }
                sent += 1;
                if last || sent >= page {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_latest_checkpoint(
        &self,
        _request: Request<pb::GetLatestCheckpointRequest>,
    ) -> Result<Response<pb::SignedCheckpoint>, Status> {
        match self.store().latest_checkpoint().map_err(store_status)? {
            Some(cp) => Ok(Response::new(self.wire()(&cp))),
            None => Err(Status::not_found("no checkpoint has been signed yet")),
        }
    }

    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::SignedCheckpoint>, Status> {
        let size = request.get_ref().tree_size;
        match self.store().checkpoint(size).map_err(store_status)? {
            Some(cp) => Ok(Response::new(self.wire()(&cp))),
            None => Err(Status::not_found(format!("no checkpoint of tree size {size} was signed"))),
        }
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        use pb::get_inclusion_proof_request::Entry;
        let r = request.into_inner();
        let event = match &r.entry {
            Some(Entry::EventId(id)) => Some(EventId::parse(id).map_err(ApiError::from)?),
            Some(Entry::Seq(_)) => None,
            None => return Err(ApiError::new(ReasonCode::MissingField, "give seq or event_id").into()),
        };
        let store = self.store().clone();
        let wire_cp = self.wire();
        let out = blocking(move || {
            let seq = match (r.entry, event) {
                (Some(Entry::Seq(seq)), _) => seq,
                (_, Some(id)) => store
                    .event_seq(&id)?
                    .ok_or_else(|| AuditError::NotFound(format!("the hub accepted no event {id}")))?,
                _ => return Err(AuditError::Invalid("give seq or event_id".to_owned())),
            };
            let tree_size = size_or_latest(&store, r.tree_size)?;
            let (entry, proof) = audit::inclusion_proof(&store, seq, tree_size)?;
            let checkpoint = store.checkpoint(tree_size)?;
            Ok(pb::InclusionProof {
                entry: Some(wire::log_entry(&entry)),
                tree_size,
                proof: hashes(&proof),
                checkpoint: checkpoint.as_ref().map(&wire_cp),
            })
        })
        .await?;
        Ok(Response::new(out))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        let r = request.into_inner();
        let store = self.store().clone();
        let wire_cp = self.wire();
        let out = blocking(move || {
            let new_size = size_or_latest(&store, r.new_size)?;
            let proof = audit::consistency_proof(&store, r.old_size, new_size)?;
            Ok(pb::ConsistencyProof {
                old_size: r.old_size,
                new_size,
                proof: hashes(&proof),
                old_checkpoint: store.checkpoint(r.old_size)?.as_ref().map(&wire_cp),
                new_checkpoint: store.checkpoint(new_size)?.as_ref().map(&wire_cp),
            })
        })
        .await?;
        Ok(Response::new(out))
    }

    async fn get_case_at(
        &self,
        request: Request<pb::GetCaseAtRequest>,
    ) -> Result<Response<pb::CaseView>, Status> {
        use pb::get_case_at_request::AsOf as WireAsOf;
        let r = request.into_inner();
        let tn: TrackingNumber = parse_tracking_number(&r.tracking_number)?;
        let as_of = match r.as_of {
            Some(WireAsOf::Seq(n)) => AsOf::Seq(n),
            Some(WireAsOf::TimeMs(t)) => AsOf::TimeMs(t),
            None => return Err(ApiError::new(ReasonCode::MissingField, "give seq or time_ms").into()),
        };
        let store = self.store().clone();
        let (case, at_ms) = blocking(move || {
            let case = audit::case_at(&store, &tn, as_of)?;
            // Status and SLA clocks as of the moment asked about: the time, or
            // the time of record of the entry.
            let at_ms = match as_of {
                AsOf::TimeMs(t) => t,
                AsOf::Seq(n) => {
                    let seq = n.min(store.head()?.last_seq);
                    store.entry(seq)?.map_or(0, |e| e.recorded_at_ms())
                }
            };
            Ok((case, at_ms))
        })
        .await?;
        let case = case.ok_or_else(|| Status::not_found(format!("case {tn} was not open at that point")))?;
        let calendars = self.lookups.calendars();
        let service_names = case
            .applications
            .iter()
            .map(|a| match self.store().standard(&a.agency, &a.service) {
                Ok(Some(s)) => ServiceName { id: s.name_id, en: s.name_en },
                _ => ServiceName::default(),
            })
            .collect();
        let now_ms = self.lookups.now_ms();
        if let Some(log) = self.lookups.access_log() {
            log.record(
                tn,
                AccessEvent { at_ms: now_ms, accessor: Accessor::Auditor, channel: AccessChannel::Audit },
            );
        }
        // An auditor's view: every timeline item (the case is bounded by
        // mpp_core::limits::CASE_BYTES_MAX).
        let found = Found {
            status: case_status_at(&case, calendars, at_ms),
            slas: case_sla(&case, calendars, at_ms),
            timeline: mpp_lookup::lookup::TimelinePage::whole(&case),
            case,
            service_names,
            access: Vec::new(),
            failed_attempts: None,
            now_ms: at_ms,
        };
        Ok(Response::new(mpp_lookup::grpc::view(&found)))
    }

    async fn get_receipt(
        &self,
        request: Request<pb::GetReceiptRequest>,
    ) -> Result<Response<pb::Receipt>, Status> {
        let id = EventId::parse(&request.get_ref().event_id).map_err(ApiError::from)?;
        let store = self.store().clone();
        let receipt = blocking(move || audit::receipt(&store, &id)).await?;
        let Some(r) = receipt else {
            return Err(Status::not_found(format!("the hub accepted no event {id}")));
        };
        let mut wire = receipt_to_wire(&r);
        wire.checkpoint = r.checkpoint.as_ref().map(self.wire());
        Ok(Response::new(wire))
    }
}

/// The wire form of a receipt.
pub fn receipt_to_wire(r: &audit::Receipt) -> pb::Receipt {
    pb::Receipt {
        event_id: r.event_id.to_string(),
        seq: r.seq,
        entry_hash: r.entry_hash.to_vec(),
        checkpoint: r.checkpoint.as_ref().map(checkpoint_to_wire),
        proof: hashes(&r.proof),
    }
}
