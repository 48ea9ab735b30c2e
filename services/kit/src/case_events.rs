//! Other agencies' progress on this agency's cases, heard from the hub and
//! handed to the agency's own reaction.
//!
//! The hub serves each participant the events of the other participants on
//! the cases where it has an application, limited to the event types the
//! participant registry grants it (`mpp.v1.CaseEventService`, see the hub's
//! `mpp_audit::case_events`). An agency that reacts to them gives
//! [`crate::run()`] a [`CaseEventReaction`] ([`crate::AgencyConfig::reacting`]);
//! with `--hub-url` and `--hub-token-file` the service then follows the
//! feed ([`spawn_case_event_follower`]) and calls the reaction for each
//! event, in log order, one at a time.
//!
//! # At least once; reactions are idempotent
//!
//! The feed's cursor is kept in `case-events.redb` beside the outbox
//! ([`CaseEventCursor`]) and stored, durably, after the reaction has
//! returned for every event of a batch. A crash between the two delivers
//! the batch's events again after the restart: a reaction must therefore be
//! idempotent. [`reaction_event_id`] gives it the means: an event id
//! derived from the event reacted to, so that a reaction published twice is
//! one event at the hub (the second a duplicate). A reaction that fails
//! (its outbox is full, say) is retried with the whole batch, after
//! [`crate::verdicts::FOLLOW_RETRY_MS_MIN`] doubling to
//! [`crate::verdicts::FOLLOW_RETRY_MS_MAX`], and the cursor does not move
//! past it.
//!
//! A hub that grants the participant nothing (`NO_FOLLOW_GRANT`) is asked
//! again on the same schedule: a grant the registrar adds later takes
//! effect without a restart.

// redb's error is 160 bytes; see `crate::durable`.
#![allow(clippy::result_large_err)]

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use mpp_edge::auth::BearerToken;
use mpp_proto::v1 as pb;
use mpp_proto::v1::case_event_service_client::CaseEventServiceClient;
use redb::{ReadableTable, TableDefinition};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tracing::{debug, info};
use uuid::Uuid;

use crate::agency::Agency;
use crate::durable::{self, Storage};
use crate::error::KitError;
use crate::verdicts::{follow_with_backoff, HubFeed};

/// The file of the feed's cursor, in the service's data directory.
pub const CASE_EVENTS_FILE: &str = "case-events.redb";

const META: TableDefinition<&str, u64> = TableDefinition::new("case_event_meta");
const CURSOR: &str = "scanned_to_seq";

/// Domain of [`reaction_event_id`].
const REACTION_EVENT_ID_DOMAIN: &[u8] = b"mpp-reaction-event-id/v1";

/// The future a reaction returns.
pub type ReactionFuture = Pin<Box<dyn Future<Output = Result<(), KitError>> + Send>>;

/// What an agency does with another agency's event on one of its cases:
/// called with the agency's handle (to publish its own steps) and the
/// event. Must be idempotent (see the module docs).
#[derive(Clone)]
pub struct CaseEventReaction(Arc<dyn Fn(Agency, pb::CaseEvent) -> ReactionFuture + Send + Sync>);

impl CaseEventReaction {
    /// A reaction calling `f`.
    pub fn new(f: impl Fn(Agency, pb::CaseEvent) -> ReactionFuture + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Reacts to `event`.
    pub fn call(&self, agency: Agency, event: pb::CaseEvent) -> ReactionFuture {
        (self.0)(agency, event)
    }
}

impl std::fmt::Debug for CaseEventReaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CaseEventReaction")
    }
}

/// The id of the event an agency publishes in reaction to `trigger` (for
/// its application `application_id`): a UUIDv7 whose time is the
/// trigger's time of record and whose random part is a hash of the
/// trigger's event id and the application, so the same reaction always has
/// the same id.
pub fn reaction_event_id(trigger: &pb::CaseEvent, application_id: &str) -> Uuid {
    let mut h = Sha256::new();
    h.update(REACTION_EVENT_ID_DOMAIN);
    h.update([0u8]);
    h.update(trigger.event_id.as_bytes());
    h.update([0u8]);
    h.update(application_id.as_bytes());
    let digest = h.finalize();
    let mut random = [0u8; 10];
    random.copy_from_slice(&digest[..10]);
    let ms = u64::try_from(trigger.recorded_at_ms).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(ms, &random).into_uuid()
}

/// Why the cursor store failed.
#[derive(Debug, thiserror::Error)]
pub enum CaseEventError {
    /// The redb file could not be opened.
    #[error(transparent)]
    Open(#[from] durable::DurableError),
    /// A redb operation failed.
    #[error("case-event cursor: {0}")]
    Redb(Box<redb::Error>),
}

crate::from_redb_errors!(CaseEventError, CaseEventError::Redb);

/// The feed's durable cursor.
#[derive(Debug)]
pub struct CaseEventCursor {
    db: redb::Database,
}

impl CaseEventCursor {
    /// Opens (or creates) the cursor in `dir`.
    pub fn open_in(dir: &Path) -> Result<Self, CaseEventError> {
        Self::open(Storage::File(dir.join(CASE_EVENTS_FILE)))
    }

    /// Opens the cursor on `storage`.
    pub fn open(storage: Storage) -> Result<Self, CaseEventError> {
        let db = durable::open(storage)?;
        let txn = db.begin_write()?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(Self { db })
    }

    /// Every hub entry up to it has been looked at and reacted to.
    pub fn get(&self) -> Result<u64, CaseEventError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let cursor = meta.get(CURSOR)?.map(|v| v.value()).unwrap_or(0);
        Ok(cursor)
    }

    /// Stores `seq` durably (never moves back).
    pub fn set(&self, seq: u64) -> Result<(), CaseEventError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::Immediate);
        {
            let mut meta = txn.open_table(META)?;
            let current = meta.get(CURSOR)?.map(|v| v.value()).unwrap_or(0);
            meta.insert(CURSOR, current.max(seq))?;
        }
        txn.commit()?;
        Ok(())
    }
}

/// Follows the hub's case-event feed, calling `reaction` for each event,
/// until `stop` turns true (see the module docs).
pub fn spawn_case_event_follower(
    cursor: Arc<CaseEventCursor>,
    hub: HubFeed,
    agency: Agency,
    reaction: CaseEventReaction,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let url = hub.url.clone();
        follow_with_backoff("case events", &url, &mut stop, || {
            follow_once(&cursor, &hub, &agency, &reaction)
        })
        .await;
    })
}

/// One feed, from the stored cursor until it ends: the batches handled.
async fn follow_once(
    cursor: &Arc<CaseEventCursor>,
    hub: &HubFeed,
    agency: &Agency,
    reaction: &CaseEventReaction,
) -> Result<u64, String> {
    let channel = hub.connect().await?;
    let token = BearerToken::new(&hub.token).ok_or("unusable token")?;
    let mut client = CaseEventServiceClient::with_interceptor(channel, token);
    let c = cursor.clone();
    let after_seq = tokio::task::spawn_blocking(move || c.get())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let mut feed = client
        .follow_case_events(pb::FollowCaseEventsRequest { after_seq })
        .await
        .map_err(|s| format!("{}: {}", s.code(), s.message()))?
        .into_inner();
    info!(hub = %hub.url, after_seq, "Following other agencies' events on this agency's cases");
    let mut handled = 0;
    while let Some(batch) = feed.message().await.map_err(|s| format!("{}: {}", s.code(), s.message()))? {
        for event in batch.events {
            let (seq, kind, case) = (event.seq, event.event_type.clone(), event.case_id.clone());
            reaction
                .call(agency.clone(), event)
                .await
                .map_err(|e| format!("the reaction to {kind} at seq {seq} of case {case} failed: {e}"))?;
            debug!(seq, event = %kind, case = %case, "Case event handled");
        }
        let (c, seq) = (cursor.clone(), batch.scanned_to_seq);
        tokio::task::spawn_blocking(move || c.set(seq))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        handled += 1;
    }
    Ok(handled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_is_durable_and_never_moves_back() {
        let dir = tempfile::tempdir().unwrap();
        let c = CaseEventCursor::open_in(dir.path()).unwrap();
        assert_eq!(c.get().unwrap(), 0);
        c.set(41).unwrap();
        c.set(7).unwrap();
        drop(c);
        assert_eq!(CaseEventCursor::open_in(dir.path()).unwrap().get().unwrap(), 41);
    }

    #[test]
    fn a_reaction_has_one_id_per_trigger_and_application() {
        let trigger = pb::CaseEvent {
            event_id: "01890000-0000-7000-8000-000000000001".to_owned(),
            recorded_at_ms: 1_750_000_000_000,
            ..Default::default()
        };
        let a = reaction_event_id(&trigger, "PLN-1");
        assert_eq!(a, reaction_event_id(&trigger, "PLN-1"));
        assert_ne!(a, reaction_event_id(&trigger, "PLN-2"));
        assert_eq!(a.get_version_num(), 7);
        let other = pb::CaseEvent { event_id: "01890000-0000-7000-8000-000000000002".to_owned(), ..trigger };
        assert_ne!(a, reaction_event_id(&other, "PLN-1"));
    }
}
