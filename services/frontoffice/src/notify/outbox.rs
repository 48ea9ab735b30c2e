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
/// Done entries by the time they ended: key `<ms, 20 digits>/<key>`, for
/// [`NotifyOutbox::purge_done`].
const DONE_AT: TableDefinition<&str, u8> = TableDefinition::new("notify_done_at");
/// Flags: [`META_DONE_INDEXED`].
const META: TableDefinition<&str, u64> = TableDefinition::new("notify_meta");
/// Set once the done entries of an outbox from before [`DONE_AT`] were
/// indexed (at the time of the first purge, so they are kept a whole
/// retention from then).
const META_DONE_INDEXED: &str = "done_indexed";

/// How long a done entry is kept (to refuse a redelivery of its event)
/// before [`NotifyOutbox::purge_done`] removes it: 90 days. Events the hub
/// recorded longer ago than this are never queued, so a purged key cannot
/// come back (not even when the feed's cursor is lost and the feed starts
/// over). The counts are kept.
pub const NOTIFY_RETENTION_MS: i64 = 90 * 86_400_000;

/// Done entries one purge removes at most (the rest at the next round).
pub const NOTIFY_PURGE_BATCH_MAX: usize = 1024;

/// The count of events refused as older than [`NOTIFY_RETENTION_MS`].
pub const COUNT_TOO_OLD: &str = "too_old";

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

fn done_at_key(at_ms: i64, key: &str) -> String {
    format!("{:020}/{key}", at_ms.max(0))
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
    if event.recorded_at_ms > 0 && event.recorded_at_ms < now_ms.saturating_sub(NOTIFY_RETENTION_MS) {
        let n = counts.get(COUNT_TOO_OLD)?.map_or(0, |v| v.value());
        counts.insert(COUNT_TOO_OLD, n + 1)?;
        return Ok(0);
    }
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
        txn.open_table(DONE_AT)?;
        txn.open_table(META)?;
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
    /// [`COUNT_DEDUPLICATED`]; and not at all when the hub recorded it more
    /// than [`NOTIFY_RETENTION_MS`] ago ([`COUNT_TOO_OLD`]). Returns how
    /// many were queued.
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

    /// Ends `entry` with `outcome` at `now_ms`: moved from pending to done,
    /// counted.
    pub fn finish(&self, entry: &Entry, outcome: Outcome, now_ms: i64) -> Result<(), OutboxError> {
        let k = entry.key();
        self.write(|txn| {
            txn.open_table(PENDING)?.remove(k.as_str())?;
            txn.open_table(DONE)?.insert(k.as_str(), outcome.byte())?;
            txn.open_table(DONE_AT)?.insert(done_at_key(now_ms, &k).as_str(), 0)?;
            let mut counts = txn.open_table(COUNTS)?;
            let n = counts.get(outcome.as_str())?.map_or(0, |v| v.value());
            counts.insert(outcome.as_str(), n + 1)?;
            Ok(())
        })
    }

    /// Removes the done entries that ended [`NOTIFY_RETENTION_MS`] or more
    /// before `now_ms`, at most `max`; returns how many. The counts stay.
    pub fn purge_done(&self, now_ms: i64, max: usize) -> Result<usize, OutboxError> {
        let cutoff = now_ms.saturating_sub(NOTIFY_RETENTION_MS);
        let indexed = {
            let txn = self.db.begin_read()?;
            txn.open_table(META)?.get(META_DONE_INDEXED)?.is_some()
        };
        if !indexed {
            self.write(|txn| {
                let done = txn.open_table(DONE)?;
                let mut at = txn.open_table(DONE_AT)?;
                for item in done.iter()? {
                    let (k, _) = item?;
                    at.insert(done_at_key(now_ms, k.value()).as_str(), 0)?;
                }
                txn.open_table(META)?.insert(META_DONE_INDEXED, 1)?;
                Ok(())
            })?;
        }
        let old: Vec<String> = {
            let txn = self.db.begin_read()?;
            let at = txn.open_table(DONE_AT)?;
            let mut out = Vec::new();
            for item in at.iter()? {
                let (k, _) = item?;
                let k = k.value();
                let t = k.split_once('/').and_then(|(t, _)| t.parse::<i64>().ok()).unwrap_or(i64::MAX);
                if t > cutoff || out.len() >= max {
                    break;
                }
                out.push(k.to_owned());
            }
            out
        };
        if old.is_empty() {
            return Ok(0);
        }
        self.write(|txn| {
            let mut at = txn.open_table(DONE_AT)?;
            let mut done = txn.open_table(DONE)?;
            for index in &old {
                at.remove(index.as_str())?;
                if let Some((_, k)) = index.split_once('/') {
                    done.remove(k)?;
                }
            }
            Ok(())
        })?;
        Ok(old.len())
    }

    /// Done entries kept.
    pub fn done_len(&self) -> Result<u64, OutboxError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(DONE)?.len()?)
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
        o.finish(&due[0], Outcome::Sent, 1500).unwrap();
        drop(o);
        let o = NotifyOutbox::open_in(dir.path()).unwrap();
        assert_eq!(o.pending_len().unwrap(), 1);
        assert_eq!(o.enqueue(&event("e1"), &[Channel::Email], 3000).unwrap(), 0, "done stays done");
        assert_eq!(o.count("sent").unwrap(), 1);
        assert_eq!(o.count(COUNT_DEDUPLICATED).unwrap(), 3);
        assert_eq!(o.enqueue(&event("e2"), &[Channel::Email], 3000).unwrap(), 1);
    }

    #[test]
    fn done_entries_are_purged_after_the_retention_and_the_counts_stay() {
        let dir = tempfile::tempdir().unwrap();
        let o = NotifyOutbox::open_in(dir.path()).unwrap();
        let t0 = 1_800_000_000_000;
        let at = |ms: i64, id: &str| pb::CaseEvent { recorded_at_ms: ms, ..event(id) };
        o.enqueue(&at(t0, "e1"), &[Channel::Email], t0).unwrap();
        o.enqueue(&at(t0, "e2"), &[Channel::Email], t0).unwrap();
        let due = o.due(t0, 10).unwrap();
        o.finish(&due[0], Outcome::Sent, t0).unwrap();
        o.finish(&due[1], Outcome::Sent, t0 + 86_400_000).unwrap();
        // Before the retention: kept, and a redelivery refused.
        assert_eq!(o.purge_done(t0 + NOTIFY_RETENTION_MS - 1, 100).unwrap(), 0);
        assert_eq!(o.enqueue(&at(t0, "e1"), &[Channel::Email], t0 + NOTIFY_RETENTION_MS - 1).unwrap(), 0);
        // At it: the first goes, the second a day later; the counts stay.
        assert_eq!(o.purge_done(t0 + NOTIFY_RETENTION_MS, 100).unwrap(), 1);
        assert_eq!(o.done_len().unwrap(), 1);
        drop(o);
        let o = NotifyOutbox::open_in(dir.path()).unwrap();
        assert_eq!(o.purge_done(t0 + NOTIFY_RETENTION_MS + 86_400_000, 100).unwrap(), 1);
        assert_eq!(o.done_len().unwrap(), 0);
        assert_eq!(o.count("sent").unwrap(), 2);
        // A purged event that comes again is older than the retention:
        // refused, not sent a second time.
        let later = t0 + NOTIFY_RETENTION_MS + 86_400_000;
        assert_eq!(o.enqueue(&at(t0, "e1"), &[Channel::Email], later).unwrap(), 0);
        assert_eq!(o.count(COUNT_TOO_OLD).unwrap(), 1);
        assert_eq!(o.pending_len().unwrap(), 0);
    }

    #[test]
    fn entries_done_before_the_index_are_kept_a_whole_retention_from_the_first_purge() {
        let dir = tempfile::tempdir().unwrap();
        let o = NotifyOutbox::open_in(dir.path()).unwrap();
        o.enqueue(&event("e1"), &[Channel::Email], 1000).unwrap();
        let e = o.due(1000, 10).unwrap().remove(0);
        // As an outbox of the previous build left it: done, no time.
        o.write(|txn| {
            txn.open_table(PENDING)?.remove(e.key().as_str())?;
            txn.open_table(DONE)?.insert(e.key().as_str(), Outcome::Sent.byte())?;
            Ok(())
        })
        .unwrap();
        let first = 2_000_000_000_000;
        assert_eq!(o.purge_done(first, 100).unwrap(), 0);
        assert_eq!(o.purge_done(first + NOTIFY_RETENTION_MS - 1, 100).unwrap(), 0);
        assert_eq!(o.purge_done(first + NOTIFY_RETENTION_MS, 100).unwrap(), 1);
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
        o.finish(&again[0], Outcome::Failed, 5000).unwrap();
        o.reschedule(&again[0]).unwrap();
        assert_eq!(o.pending_len().unwrap(), 0);
    }
}
