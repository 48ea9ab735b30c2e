//! The durable notification outbox: one entry per (case event, channel) in
//! `notify.redb`, keyed by the event's id and the channel, so the same
//! event never enqueues twice (the hub's feed redelivers after a restart),
//! and remembered after it is done (sent, refused, suppressed), so a
//! redelivery after that is refused too. An entry holds the case event as
//! the hub sent it (no personal data: the contact details are read from
//! the vault when the message is sent) and its schedule; a message's
//! content is never stored.
//!
//! Every write is one redb transaction with immediate durability.

// redb's error is 160 bytes; see `mpp_agency_kit::durable`.
#![allow(clippy::result_large_err)]

use std::path::Path;

use mpp_agency_kit::durable::{self, redb, Storage};
use mpp_proto::v1 as pb;
use prost::Message as _;
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

/// The outbox's file in the front office's data directory.
pub const NOTIFY_FILE: &str = "notify.redb";

/// Pending entries: key `<event id>/<channel>`, value [`Entry::encode`].
pub(super) const PENDING: TableDefinition<&str, &[u8]> = TableDefinition::new("notify_pending");
/// Done entries: key as above, value the [`Outcome`] byte.
pub(super) const DONE: TableDefinition<&str, u8> = TableDefinition::new("notify_done");
/// Counts by outcome name, for the operator.
pub(super) const COUNTS: TableDefinition<&str, u64> = TableDefinition::new("notify_counts");

/// The count of redeliveries refused (an event already queued or done).
pub const COUNT_DEDUPLICATED: &str = "deduplicated";

/// A channel a message goes by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// E-mail over SMTP.
    Email,
    /// SMS through the HTTP gateway.
    Sms,
    /// WhatsApp through the HTTP gateway.
    Whatsapp,
}

impl Channel {
    /// Every channel.
    pub const ALL: [Channel; 3] = [Channel::Email, Channel::Sms, Channel::Whatsapp];

    /// `email`, `sms`, `whatsapp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Whatsapp => "whatsapp",
        }
    }

    /// The reverse of [`Channel::as_str`].
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether quiet hours hold it back (the phone channels).
    pub fn is_phone(self) -> bool {
        self != Channel::Email
    }
}

/// How an entry ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Handed to the SMTP server or the gateway (2xx).
    Sent,
    /// The gateway already had it (409): sent before a crash.
    Duplicate,
    /// Not sent: the citizen's data was erased.
    SuppressedErased,
    /// Not sent: the citizen declined notifications.
    SuppressedOptedOut,
    /// Not sent: no address for this channel, or the case is not this
    /// front office's.
    NoContact,
    /// Refused for good by the server or the gateway (5xx SMTP reply, 4xx
    /// HTTP other than 409).
    Failed,
    /// Retried until [`crate::notify::NOTIFY_MAX_AGE_MS`] without success.
    Expired,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 7] = [
        Outcome::Sent,
        Outcome::Duplicate,
        Outcome::SuppressedErased,
        Outcome::SuppressedOptedOut,
        Outcome::NoContact,
        Outcome::Failed,
        Outcome::Expired,
    ];

    /// Stable name (logs, counts).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Duplicate => "duplicate",
            Outcome::SuppressedErased => "suppressed_erased",
            Outcome::SuppressedOptedOut => "suppressed_opted_out",
            Outcome::NoContact => "no_contact",
            Outcome::Failed => "failed",
            Outcome::Expired => "expired",
        }
    }

    fn byte(self) -> u8 {
        Self::ALL.iter().position(|o| *o == self).unwrap_or(0) as u8
    }
}

/// A pending notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The channel.
    pub channel: Channel,
    /// The case event as the hub sent it (with its notice).
    pub event: pb::CaseEvent,
    /// When it was queued, Unix ms.
    pub enqueued_at_ms: i64,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not before, Unix ms.
    pub next_at_ms: i64,
}

impl Entry {
    /// Its key: `<event id>/<channel>`.
    pub fn key(&self) -> String {
        key(&self.event.event_id, self.channel)
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        v.push(self.channel as u8);
        v.extend_from_slice(&self.enqueued_at_ms.to_be_bytes());
        v.extend_from_slice(&self.attempts.to_be_bytes());
        v.extend_from_slice(&self.next_at_ms.to_be_bytes());
        v.extend_from_slice(&self.event.encode_to_vec());
        v
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let (&c, rest) = b.split_first()?;
        let channel = *Channel::ALL.get(usize::from(c))?;
        let (enq, rest) = rest.split_at_checked(8)?;
        let (att, rest) = rest.split_at_checked(4)?;
        let (next, rest) = rest.split_at_checked(8)?;
        Some(Self {
            channel,
            enqueued_at_ms: i64::from_be_bytes(enq.try_into().ok()?),
            attempts: u32::from_be_bytes(att.try_into().ok()?),
            next_at_ms: i64::from_be_bytes(next.try_into().ok()?),
            event: pb::CaseEvent::decode(rest).ok()?,
        })
    }
}

fn key(event_id: &str, channel: Channel) -> String {
    format!("{event_id}/{}", channel.as_str())
}

/// [`NotifyOutbox::enqueue`] within `txn`.
pub(super) fn enqueue_in(
    txn: &redb::WriteTransaction,
    event: &pb::CaseEvent,
    channels: &[Channel],
    now_ms: i64,
) -> Result<usize, OutboxError> {
    let mut queued = 0;
    let mut pending = txn.open_table(PENDING)?;
    let done = txn.open_table(DONE)?;
    let mut counts = txn.open_table(COUNTS)?;
    for &channel in channels {
        let k = key(&event.event_id, channel);
        if pending.get(k.as_str())?.is_some() || done.get(k.as_str())?.is_some() {
            let n = counts.get(COUNT_DEDUPLICATED)?.map_or(0, |v| v.value());
            counts.insert(COUNT_DEDUPLICATED, n + 1)?;
            continue;
        }
        let entry =
            Entry { channel, event: event.clone(), enqueued_at_ms: now_ms, attempts: 0, next_at_ms: now_ms };
        pending.insert(k.as_str(), entry.encode().as_slice())?;
        queued += 1;
    }
    Ok(queued)
}

/// Why the outbox failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The file could not be opened.
    #[error(transparent)]
    Open(#[from] durable::DurableError),
    /// A redb operation failed.
    #[error("notification outbox: {0}")]
    Redb(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for OutboxError {
            fn from(e: $t) -> Self {
                OutboxError::Redb(e.to_string())
            }
        }
    )*};
}
from_redb!(redb::Error, redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

/// The outbox (see the module docs).
#[derive(Debug)]
pub struct NotifyOutbox {
    pub(super) db: redb::Database,
}

impl NotifyOutbox {
    /// Opens (or creates) the outbox in `dir`.
    pub fn open_in(dir: &Path) -> Result<Self, OutboxError> {
        Self::open(Storage::File(dir.join(NOTIFY_FILE)))
    }

    /// Opens the outbox on `storage`.
    pub fn open(storage: Storage) -> Result<Self, OutboxError> {
        let db = durable::open(storage)?;
        let txn = db.begin_write()?;
        txn.open_table(PENDING)?;
        txn.open_table(DONE)?;
        txn.open_table(COUNTS)?;
        super::overdue::create_tables(&txn)?;
        txn.commit()?;
        Ok(Self { db })
    }

    pub(super) fn write(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), OutboxError>,
    ) -> Result<(), OutboxError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::Immediate);
        f(&txn)?;
        txn.commit()?;
        Ok(())
    }

    /// Queues `event` on each of `channels`, due now (`now_ms`), except on
    /// a channel where it is already queued or done: those are counted as
    /// [`COUNT_DEDUPLICATED`]. Returns how many were queued.
    pub fn enqueue(
        &self,
        event: &pb::CaseEvent,
        channels: &[Channel],
        now_ms: i64,
    ) -> Result<usize, OutboxError> {
        let mut queued = 0;
        self.write(|txn| {
            queued = enqueue_in(txn, event, channels, now_ms)?;
            Ok(())
        })?;
        Ok(queued)
    }

    /// Up to `max` pending entries due at `now_ms`, in key order.
    pub fn due(&self, now_ms: i64, max: usize) -> Result<Vec<Entry>, OutboxError> {
        let txn = self.db.begin_read()?;
        let pending = txn.open_table(PENDING)?;
        let mut out = Vec::new();
        for item in pending.iter()? {
            let (_, v) = item?;
            if let Some(e) = Entry::decode(v.value()) {
                if e.next_at_ms <= now_ms {
                    out.push(e);
                    if out.len() >= max {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    /// The earliest `next_at_ms` of any pending entry.
    pub fn next_due(&self) -> Result<Option<i64>, OutboxError> {
        let txn = self.db.begin_read()?;
        let pending = txn.open_table(PENDING)?;
        let mut next: Option<i64> = None;
        for item in pending.iter()? {
            let (_, v) = item?;
            if let Some(e) = Entry::decode(v.value()) {
                next = Some(next.map_or(e.next_at_ms, |n| n.min(e.next_at_ms)));
            }
        }
        Ok(next)
    }

    /// Pending entries.
    pub fn pending_len(&self) -> Result<u64, OutboxError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(PENDING)?.len()?)
    }

    /// Ends `entry` with `outcome`: moved from pending to done, counted.
    pub fn finish(&self, entry: &Entry, outcome: Outcome) -> Result<(), OutboxError> {
        let k = entry.key();
        self.write(|txn| {
            txn.open_table(PENDING)?.remove(k.as_str())?;
            txn.open_table(DONE)?.insert(k.as_str(), outcome.byte())?;
            let mut counts = txn.open_table(COUNTS)?;
            let n = counts.get(outcome.as_str())?.map_or(0, |v| v.value());
            counts.insert(outcome.as_str(), n + 1)?;
            Ok(())
        })
    }

    /// Puts `entry` back with its new schedule (attempts, next time).
    pub fn reschedule(&self, entry: &Entry) -> Result<(), OutboxError> {
        let k = entry.key();
        self.write(|txn| {
            let mut pending = txn.open_table(PENDING)?;
            if pending.get(k.as_str())?.is_some() {
                pending.insert(k.as_str(), entry.encode().as_slice())?;
            }
            Ok(())
        })
    }

    /// The counts by outcome name and [`COUNT_DEDUPLICATED`].
    pub fn counts(&self) -> Result<Vec<(String, u64)>, OutboxError> {
        let txn = self.db.begin_read()?;
        let counts = txn.open_table(COUNTS)?;
        let mut out = Vec::new();
        for item in counts.iter()? {
            let (k, v) = item?;
            out.push((k.value().to_owned(), v.value()));
        }
        Ok(out)
    }

    /// The count of `name`.
    pub fn count(&self, name: &str) -> Result<u64, OutboxError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(COUNTS)?.get(name)?.map_or(0, |v| v.value()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str) -> pb::CaseEvent {
        pb::CaseEvent {
            seq: 7,
            event_id: id.to_owned(),
            case_id: "1771-0000000042-3".to_owned(),
            event_type: "fee_assessed".to_owned(),
            notice: Some(pb::CitizenNotice { amount_idr: 50_000, ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn an_event_is_queued_once_per_channel_even_after_it_is_done_and_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let o = NotifyOutbox::open_in(dir.path()).unwrap();
        assert_eq!(o.enqueue(&event("e1"), &[Channel::Email, Channel::Sms], 1000).unwrap(), 2);
        assert_eq!(o.enqueue(&event("e1"), &[Channel::Email, Channel::Sms], 2000).unwrap(), 0);
        assert_eq!(o.count(COUNT_DEDUPLICATED).unwrap(), 2);
        let due = o.due(1000, 10).unwrap();
        assert_eq!(due.len(), 2);
        assert_eq!(due[0].event, event("e1"));
        o.finish(&due[0], Outcome::Sent).unwrap();
        drop(o);
        let o = NotifyOutbox::open_in(dir.path()).unwrap();
        assert_eq!(o.pending_len().unwrap(), 1);
        assert_eq!(o.enqueue(&event("e1"), &[Channel::Email], 3000).unwrap(), 0, "done stays done");
        assert_eq!(o.count("sent").unwrap(), 1);
        assert_eq!(o.count(COUNT_DEDUPLICATED).unwrap(), 3);
        assert_eq!(o.enqueue(&event("e2"), &[Channel::Email], 3000).unwrap(), 1);
    }

    #[test]
    fn a_rescheduled_entry_is_not_due_before_its_time() {
        let dir = tempfile::tempdir().unwrap();
        let o = NotifyOutbox::open_in(dir.path()).unwrap();
        o.enqueue(&event("e1"), &[Channel::Whatsapp], 1000).unwrap();
        let mut e = o.due(1000, 10).unwrap().remove(0);
        e.attempts = 1;
        e.next_at_ms = 5000;
        o.reschedule(&e).unwrap();
        assert!(o.due(4999, 10).unwrap().is_empty());
        assert_eq!(o.next_due().unwrap(), Some(5000));
        let again = o.due(5000, 10).unwrap();
        assert_eq!((again[0].attempts, again[0].channel), (1, Channel::Whatsapp));
        // A finished entry is not brought back by a late reschedule.
        o.finish(&again[0], Outcome::Failed).unwrap();
        o.reschedule(&again[0]).unwrap();
        assert_eq!(o.pending_len().unwrap(), 0);
    }
}
