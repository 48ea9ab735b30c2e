//! Overdue timers: one per application of the cases this front office
//! opened, in `notify.redb` beside the outbox, so that the citizen is told
//! once when the application's SLA deadline passes (docs/NOTIFICATIONS.md,
//! "Overdue").
//!
//! Every case event of the hub's feed carries the application's SLA clock
//! ([`pb::SlaClock`], computed by the hub from its projection and the
//! region's calendar when the feed read the event). [`NotifyOutbox::observe`]
//! sets the application's timer from it:
//!
//! - a running clock arms it at `overdue_at_ms` (re-armed by every later
//!   event: a stop and restart moves the deadline);
//! - a paused clock (the application waits on the citizen) idles it;
//! - a finished clock (issued, rejected, withdrawn) cancels it for good;
//! - a timer that fired stays fired: one message per application.
//!
//! [`NotifyOutbox::fire_due`] fires the armed timers whose time has come:
//! in ONE write transaction the timer becomes fired and the overdue notice
//! is queued in the outbox on every channel, keyed like any entry
//! (`<event id>/<channel>`, the event id being [`overdue_event_id`]), so a
//! crash either fires and queues or does neither, and the outbox's
//! dedupe refuses a second queueing. Erasure and opt-out are the sender's
//! to honour, as for every entry.

// redb's error is 160 bytes; see `mpp_agency_kit::durable`.
#![allow(clippy::result_large_err)]

use mpp_agency_kit::durable::redb;
use mpp_proto::v1 as pb;
use prost::Message as _;
use redb::{ReadableTable, TableDefinition};

use super::outbox::{enqueue_in, Channel, NotifyOutbox, OutboxError, COUNTS};

/// Timers: key [`timer_key`], value [`Timer::encode`].
const TIMERS: TableDefinition<&str, &[u8]> = TableDefinition::new("overdue_timers");
/// Armed timers by time: key `<at_ms, 20 digits>/<timer key>`.
const ARMED: TableDefinition<&str, u8> = TableDefinition::new("overdue_armed");

/// The event type of an overdue notice (not a hub event type).
pub const OVERDUE_EVENT_TYPE: &str = "overdue";

/// The count of timers fired (overdue notices queued), for the operator.
pub const COUNT_OVERDUE_FIRED: &str = "overdue_fired";

/// Timers one [`NotifyOutbox::fire_due`] fires at most (the rest at the
/// next round, a second later).
pub const OVERDUE_FIRE_BATCH_MAX: usize = 64;

pub(super) fn create_tables(txn: &redb::WriteTransaction) -> Result<(), OutboxError> {
    txn.open_table(TIMERS)?;
    txn.open_table(ARMED)?;
    Ok(())
}

/// The state of an application's timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerState {
    /// Fires at this instant (Unix ms).
    Armed(i64),
    /// No deadline runs (the clock is paused): waits for the next event.
    Idle,
    /// The application finished: never fires.
    Cancelled,
    /// Fired: its notice was queued; never again.
    Fired,
}

impl TimerState {
    /// `armed`, `idle`, `cancelled`, `fired` (logs).
    pub fn as_str(self) -> &'static str {
        match self {
            TimerState::Armed(_) => "armed",
            TimerState::Idle => "idle",
            TimerState::Cancelled => "cancelled",
            TimerState::Fired => "fired",
        }
    }

    fn is_final(self) -> bool {
        matches!(self, TimerState::Cancelled | TimerState::Fired)
    }
}

/// An application's timer: its state and the latest event that set it
/// (with the clock the notice is worded from).
#[derive(Debug, Clone, PartialEq)]
pub struct Timer {
    /// The state.
    pub state: TimerState,
    /// The latest case event of the application.
    pub event: pb::CaseEvent,
}

impl Timer {
    fn encode(&self) -> Vec<u8> {
        let (tag, at) = match self.state {
            TimerState::Armed(at) => (0u8, at),
            TimerState::Idle => (1, 0),
            TimerState::Cancelled => (2, 0),
            TimerState::Fired => (3, 0),
        };
        let mut v = vec![tag];
        v.extend_from_slice(&at.to_be_bytes());
        v.extend_from_slice(&self.event.encode_to_vec());
        v
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let (&tag, rest) = b.split_first()?;
        let (at, rest) = rest.split_at_checked(8)?;
        let at = i64::from_be_bytes(at.try_into().ok()?);
        let state = match tag {
            0 => TimerState::Armed(at),
            1 => TimerState::Idle,
            2 => TimerState::Cancelled,
            3 => TimerState::Fired,
            _ => return None,
        };
        Some(Self { state, event: pb::CaseEvent::decode(rest).ok()? })
    }
}

/// The timer of the application of `event`: `<case>/<agency>/<application>`.
pub fn timer_key(event: &pb::CaseEvent) -> String {
    format!("{}/{}/{}", event.case_id, event.agency_id, event.application_id)
}

/// The event id of the overdue notice of the application with timer `key`
/// (the outbox's entries are `<this>/<channel>`).
pub fn overdue_event_id(key: &str) -> String {
    format!("overdue:{key}")
}

fn armed_key(at_ms: i64, key: &str) -> String {
    format!("{:020}/{key}", at_ms.max(0))
}

/// The overdue notice of `timer`: the application's latest event made into
/// an `overdue` event, with the service's names as its notice.
fn notice_of(key: &str, timer: &Timer, at_ms: i64) -> pb::CaseEvent {
    let clock = timer.event.sla.clone().unwrap_or_default();
    pb::CaseEvent {
        event_id: overdue_event_id(key),
        event_type: OVERDUE_EVENT_TYPE.to_owned(),
        recorded_at_ms: at_ms,
        own_applications: Vec::new(),
        notice: Some(pb::CitizenNotice {
            service_name_id: clock.service_name_id.clone(),
            service_name_en: clock.service_name_en.clone(),
            ..Default::default()
        }),
        sla: Some(clock),
        ..timer.event.clone()
    }
}

impl NotifyOutbox {
    /// Sets the timer of `event`'s application from its SLA clock (see the
    /// module docs); returns the timer's state after, or `None` for an
    /// event without a clock.
    pub fn observe(&self, event: &pb::CaseEvent) -> Result<Option<TimerState>, OutboxError> {
        let Some(clock) = event.sla.as_ref() else { return Ok(None) };
        let key = timer_key(event);
        let mut after = None;
        self.write(|txn| {
            let mut timers = txn.open_table(TIMERS)?;
            let mut armed = txn.open_table(ARMED)?;
            let before = timers.get(key.as_str())?.and_then(|v| Timer::decode(v.value()));
            if let Some(t) = &before {
                if t.state.is_final() {
                    after = Some(t.state);
                    return Ok(());
                }
                if let TimerState::Armed(at) = t.state {
                    armed.remove(armed_key(at, &key).as_str())?;
                }
            }
            let state = if clock.finished {
                TimerState::Cancelled
            } else if clock.paused || clock.overdue_at_ms <= 0 {
                TimerState::Idle
            } else {
                TimerState::Armed(clock.overdue_at_ms)
            };
            if let TimerState::Armed(at) = state {
                armed.insert(armed_key(at, &key).as_str(), 0)?;
            }
            timers.insert(key.as_str(), Timer { state, event: event.clone() }.encode().as_slice())?;
            after = Some(state);
            Ok(())
        })?;
        Ok(after)
    }

    /// Fires the armed timers due at `timer_now_ms` (at most
    /// [`OVERDUE_FIRE_BATCH_MAX`]): each becomes fired and its notice is
    /// queued on `channels`, due at `now_ms`, in one transaction. Returns
    /// the notices queued.
    pub fn fire_due(
        &self,
        timer_now_ms: i64,
        channels: &[Channel],
        now_ms: i64,
    ) -> Result<Vec<pb::CaseEvent>, OutboxError> {
        let due: Vec<String> = {
            let txn = self.db.begin_read()?;
            let armed = txn.open_table(ARMED)?;
            let mut out = Vec::new();
            for item in armed.iter()? {
                let (k, _) = item?;
                let k = k.value();
                let Some((at, _)) = k.split_once('/') else { continue };
                if at.parse::<i64>().map_or(true, |at| at > timer_now_ms)
                    || out.len() >= OVERDUE_FIRE_BATCH_MAX
                {
                    break;
                }
                out.push(k.to_owned());
            }
            out
        };
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let mut fired = Vec::new();
        self.write(|txn| {
            let mut timers = txn.open_table(TIMERS)?;
            let mut armed = txn.open_table(ARMED)?;
            for index in &due {
                armed.remove(index.as_str())?;
                let Some((at, key)) = index.split_once('/') else { continue };
                let Some(mut timer) = timers.get(key)?.and_then(|v| Timer::decode(v.value())) else {
                    continue;
                };
                if timer.state != TimerState::Armed(at.parse().unwrap_or(-1)) {
                    continue;
                }
                let notice = notice_of(key, &timer, timer_now_ms);
                timer.state = TimerState::Fired;
                timers.insert(key, timer.encode().as_slice())?;
                enqueue_in(txn, &notice, channels, now_ms)?;
                fired.push(notice);
            }
            let mut counts = txn.open_table(COUNTS)?;
            let n = counts.get(COUNT_OVERDUE_FIRED)?.map_or(0, |v| v.value());
            counts.insert(COUNT_OVERDUE_FIRED, n + fired.len() as u64)?;
            Ok(())
        })?;
        Ok(fired)
    }

    /// The timer of the application with timer key `key`.
    pub fn timer(&self, key: &str) -> Result<Option<Timer>, OutboxError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(TIMERS)?.get(key)?.and_then(|v| Timer::decode(v.value())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::outbox::COUNT_DEDUPLICATED;

    const CH: [Channel; 2] = [Channel::Email, Channel::Sms];

    fn event(id: &str, app: &str, clock: pb::SlaClock) -> pb::CaseEvent {
        pb::CaseEvent {
            seq: 7,
            event_id: id.to_owned(),
            case_id: "1771-0000000042-3".to_owned(),
            agency_id: "dpmptsp".to_owned(),
            service_id: "pbg".to_owned(),
            application_id: app.to_owned(),
            event_type: "application_filed".to_owned(),
            sla: Some(clock),
            ..Default::default()
        }
    }

    fn running(at: i64) -> pb::SlaClock {
        pb::SlaClock {
            standard_working_days: 28,
            due_date: "2026-12-09".into(),
            overdue_at_ms: at,
            service_name_id: "PBG".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_timer_is_re_armed_by_every_event_and_fires_once_at_its_time() {
        let dir = tempfile::tempdir().unwrap();
        let o = NotifyOutbox::open_in(dir.path()).unwrap();
        assert_eq!(o.observe(&event("e1", "A", running(5_000))).unwrap(), Some(TimerState::Armed(5_000)));
        // Paused (documents requested): idle; the citizen acts: re-armed later.
        let paused = pb::SlaClock { paused: true, overdue_at_ms: 0, ..running(0) };
        assert_eq!(o.observe(&event("e2", "A", paused)).unwrap(), Some(TimerState::Idle));
        assert!(o.fire_due(10_000, &CH, 10_000).unwrap().is_empty(), "an idle timer does not fire");
        assert_eq!(o.observe(&event("e3", "A", running(20_000))).unwrap(), Some(TimerState::Armed(20_000)));
        assert!(o.fire_due(19_999, &CH, 19_999).unwrap().is_empty(), "not before its time");
        // The old time's index is gone: nothing fires at 5 000 either.
        assert_eq!(o.pending_len().unwrap(), 0);

        let fired = o.fire_due(20_000, &CH, 20_500).unwrap();
        assert_eq!(fired.len(), 1);
        let n = &fired[0];
        assert_eq!(n.event_type, OVERDUE_EVENT_TYPE);
        assert_eq!(n.event_id, "overdue:1771-0000000042-3/dpmptsp/A");
        assert_eq!(n.notice.as_ref().unwrap().service_name_id, "PBG");
        assert_eq!(n.sla.as_ref().unwrap().due_date, "2026-12-09");
        assert_eq!(o.pending_len().unwrap(), 2, "queued on both channels");
        assert_eq!(o.due(20_500, 10).unwrap()[0].enqueued_at_ms, 20_500);
        assert_eq!(o.count(COUNT_OVERDUE_FIRED).unwrap(), 1);

        // Once: later rounds fire nothing, a later event does not re-arm.
        assert!(o.fire_due(99_000, &CH, 99_000).unwrap().is_empty());
        assert_eq!(o.observe(&event("e4", "A", running(30_000))).unwrap(), Some(TimerState::Fired));
        assert!(o.fire_due(99_000, &CH, 99_000).unwrap().is_empty());
        assert_eq!(o.pending_len().unwrap(), 2);
    }

    #[test]
    fn a_finished_application_cancels_its_timer_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let o = NotifyOutbox::open_in(dir.path()).unwrap();
        o.observe(&event("e1", "A", running(5_000))).unwrap();
        o.observe(&event("e1", "B", running(5_000))).unwrap();
        let finished = pb::SlaClock { finished: true, overdue_at_ms: 0, ..running(0) };
        assert_eq!(o.observe(&event("e2", "A", finished)).unwrap(), Some(TimerState::Cancelled));
        // A redelivered earlier event does not bring it back.
        assert_eq!(o.observe(&event("e1", "A", running(5_000))).unwrap(), Some(TimerState::Cancelled));
        let fired = o.fire_due(6_000, &CH, 6_000).unwrap();
        assert_eq!(fired.iter().map(|e| e.application_id.as_str()).collect::<Vec<_>>(), ["B"]);
        assert_eq!(o.timer("1771-0000000042-3/dpmptsp/A").unwrap().unwrap().state, TimerState::Cancelled);
        // No clock, no timer.
        let mut bare = event("e9", "C", running(1));
        bare.sla = None;
        assert_eq!(o.observe(&bare).unwrap(), None);
        assert!(o.timer("1771-0000000042-3/dpmptsp/C").unwrap().is_none());
    }

    #[test]
    fn timers_survive_reopening_and_a_fired_one_is_not_queued_twice() {
        let dir = tempfile::tempdir().unwrap();
        let o = NotifyOutbox::open_in(dir.path()).unwrap();
        o.observe(&event("e1", "A", running(5_000))).unwrap();
        o.observe(&event("e1", "B", running(50_000))).unwrap();
        drop(o);
        let o = NotifyOutbox::open_in(dir.path()).unwrap();
        assert_eq!(o.timer("1771-0000000042-3/dpmptsp/A").unwrap().unwrap().state, TimerState::Armed(5_000));
        assert_eq!(o.fire_due(5_000, &CH, 5_000).unwrap().len(), 1);
        drop(o);
        let o = NotifyOutbox::open_in(dir.path()).unwrap();
        assert_eq!(o.timer("1771-0000000042-3/dpmptsp/A").unwrap().unwrap().state, TimerState::Fired);
        assert!(o.fire_due(6_000, &CH, 6_000).unwrap().is_empty());
        assert_eq!(o.pending_len().unwrap(), 2);
        // The notice's entries are refused if ever queued again (the
        // outbox's dedupe of `<event id>/<channel>`).
        let again = o.due(6_000, 10).unwrap()[0].event.clone();
        assert_eq!(o.enqueue(&again, &CH, 7_000).unwrap(), 0);
        assert_eq!(o.count(COUNT_DEDUPLICATED).unwrap(), 2);
        assert_eq!(o.fire_due(50_000, &CH, 50_000).unwrap().len(), 1, "B at its own time");
    }
}
