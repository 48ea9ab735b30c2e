//! SLA clocks: how many working days an application has used of its service
//! standard, when it is due, and whether it is overdue.
//!
//! Everything here is a pure function of an [`Application`] (its timeline of
//! times of record and states), a region's [`Calendar`] and an instant
//! `now_ms` that the caller passes in; nothing reads a clock.
//!
//! # Which standard applies
//!
//! The service standard in force when an application is filed governs it for
//! its whole life: [`crate::decide::apply`] copies the standard's completion
//! time, fiktif positif flag and version into the [`Application`] at filing.
//! A standard published later applies only to applications filed after it.
//! Because standards are events in the log, a replay files every application
//! under the same standard as the live hub did.
//!
//! # When the clock runs
//!
//! The clock runs while the application is with the agency (submitted, in
//! review, paid, scheduled). It stops while the application waits on the
//! citizen (documents required, awaiting payment) and restarts when the
//! citizen acts (documents received, payment received). It stops for good
//! when the application is finished: issued, rejected or withdrawn (a later
//! collection changes nothing). The state at an instant is the state after
//! the last timeline item recorded at or before it; items take effect in log
//! order, so an item recorded earlier than the one before it counts as
//! recorded at the same time as that one.
//!
//! # How working days are counted
//!
//! Days are civil dates in the region's time zone (WIB, WITA or WIT). The
//! filing date is day 0 and never counts. Every later working day (see
//! [`Calendar::is_working_day`]) on which the clock was running at the start
//! of the day (00:00 local) counts as one working day used. An event recorded
//! exactly at 00:00:00.000 local took effect before that day started. A
//! working day on which the clock was stopped at 00:00 counts as one working
//! day stopped instead. So a stop and restart within one day costs nothing,
//! the day the clock restarts is free like the filing day, and a stop pushes
//! the due date later by exactly the working days it covered.
//!
//! Counting runs to "as of": today (the local date of `now_ms`) for an open
//! application, or the date it finished for a finished one, so a finished
//! application's view does not depend on `now_ms`. Counting covers at most
//! [`SLA_SPAN_DAYS_MAX`] days after filing.
//!
//! # What the view shows
//!
//! The working days left are the standard's days minus those used; they are
//! negative once overdue. An open application is overdue when it has used
//! more working days than its standard grants, that is from the start of the
//! first working day after its due date on which the clock runs. A finished
//! application is never overdue; it finished on time when it had used no more
//! than the standard's days (this holds for withdrawals too, which record
//! whether the agency was still within its time when the citizen withdrew).
//!
//! The due date is the date on which the standard's last working day is used.
//! When days are left, it is projected as if the clock ran from "as of" on:
//! the working day that many working days after "as of". While the clock is
//! stopped this means "as if the citizen acted today", which is what a
//! citizen wants to know. When no days are left it is the date on which the
//! last day was actually used. An application without a standard (0 days,
//! which [`crate::decide::decide`] rules out) is due on its filing date.
//!
//! Where the standard grants approval by default (fiktif positif) and the
//! application is not finished, its due date is also its fiktif positif
//! deadline; once it is overdue the deadline has been reached.

use serde::{Deserialize, Serialize};

use crate::calendar::{Calendar, CalendarSet, Date};
use crate::case::{Application, Case, CaseStatus, Pending};
use crate::state::AppState;

/// The most days after filing the clock counts, and the most days a due
/// date is searched for after "as of" (about ten years; the longest standard,
/// `limits::COMPLETION_WORKING_DAYS_MAX`, is 365 working days). Beyond this
/// an application is reported as counted up to this day, and a due date that
/// cannot be found within it is `None`.
pub const SLA_SPAN_DAYS_MAX: i32 = 3660;

/// An application's SLA, as of an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaView {
    /// The version of the standard that governs the application.
    pub standard_version: u32,
    /// The standard's completion time, in working days.
    pub standard_working_days: u32,
    /// The local date of filing (day 0).
    pub filed_on: Date,
    /// Working days counted against the standard so far.
    pub working_days_used: u32,
    /// Working days on which the clock was stopped (waiting on the citizen).
    pub working_days_stopped: u32,
    /// The standard's days minus the days used; negative once overdue.
    pub working_days_left: i32,
    /// The due date (see the module docs); `None` only when it lies more
    /// than [`SLA_SPAN_DAYS_MAX`] days away.
    pub due_date: Option<Date>,
    /// Open and past its due date.
    pub overdue: bool,
    /// Open and waiting on the citizen: the clock is stopped.
    pub paused: bool,
    /// The local date the application finished (issued, rejected, withdrawn).
    pub finished_on: Option<Date>,
    /// For a finished application, whether it finished within the standard.
    pub finished_on_time: Option<bool>,
    /// The due date, when the standard grants approval by default and the
    /// application is not finished.
    pub fiktif_positif_deadline: Option<Date>,
    /// The fiktif positif deadline has passed without a decision.
    pub fiktif_positif_reached: bool,
    /// Whether the calendar declares every year from filing to the later of
    /// "as of" and the due date, so every holiday in between is known. False
    /// for a region without a calendar file (weekends only).
    pub calendar_covers_period: bool,
    /// The last local date to collect the issued document, when its
    /// service's standard says where it is collected ([`collect_by`]).
    pub collect_by: Option<Date>,
}

/// Whether the clock runs in `state`: with the agency and not finished.
fn clock_runs(state: AppState) -> bool {
    !state.waits_on_citizen() && !state.is_finished()
}

/// The working day `k` working days after `from` (`k` ≥ 1), searched for
/// within [`SLA_SPAN_DAYS_MAX`] days.
fn working_day_after(cal: &Calendar, from: Date, k: u32) -> Option<Date> {
    let mut found = 0;
    let mut d = from;
    for _ in 0..SLA_SPAN_DAYS_MAX {
        let next = d.succ();
        if next == d {
            return None;
        }
        d = next;
        if cal.is_working_day(d) {
            found += 1;
            if found == k {
                return Some(d);
            }
        }
    }
    None
}

/// The SLA of `app` in the region of `cal` as of the instant `now_ms` (Unix
/// ms). See the module docs for every rule.
pub fn sla(app: &Application, cal: &Calendar, now_ms: i64) -> SlaView {
    let standard = app.sla_working_days;
    let filed_on = cal.local_date(app.filed_at_ms);
    let finished_at_ms = app.timeline.iter().find(|t| t.state_after.is_finished()).map(|t| t.recorded_at_ms);
    let finished_on = finished_at_ms.map(|ms| cal.local_date(ms));
    let as_of = finished_on.unwrap_or_else(|| cal.local_date(now_ms));
    let last = as_of.min(filed_on.add_days(SLA_SPAN_DAYS_MAX));

    let mut used: u32 = 0;
    let mut stopped: u32 = 0;
    let mut last_day_used_on: Option<Date> = None;
    let mut items = app.timeline.iter().peekable();
    let mut state = AppState::Submitted;
    let mut day = filed_on;
    while day < last {
        day = day.succ();
        let start_ms = cal.day_start_ms(day);
        while let Some(item) = items.next_if(|t| t.recorded_at_ms <= start_ms) {
            state = item.state_after;
        }
        if !cal.is_working_day(day) {
            continue;
        }
        if clock_runs(state) {
            used += 1;
            if used == standard {
                last_day_used_on = Some(day);
            }
        } else if state.waits_on_citizen() {
            stopped += 1;
        }
    }

    let finished = finished_on.is_some();
    let left = i64::from(standard) - i64::from(used);
    let due_date = if standard == 0 {
        Some(filed_on)
    } else if left > 0 {
        // `left` is at most `standard`, a u32.
        working_day_after(cal, as_of, left as u32)
    } else {
        last_day_used_on
    };
    let overdue = !finished && left < 0;
    let calendar_covers_period = {
        let until = due_date.map_or(as_of, |d| d.max(as_of));
        (filed_on.year()..=until.year()).all(|y| cal.covers_year(y))
    };
    SlaView {
        standard_version: app.standard_version,
        standard_working_days: standard,
        filed_on,
        working_days_used: used,
        working_days_stopped: stopped,
        // Both terms are bounded (a u32 standard, at most SLA_SPAN_DAYS_MAX
        // days used), so the difference fits.
        working_days_left: left.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
        due_date,
        overdue,
        paused: !finished && app.state.waits_on_citizen(),
        finished_on,
        finished_on_time: finished.then_some(left >= 0),
        fiktif_positif_deadline: if app.fiktif_positif && !finished { due_date } else { None },
        fiktif_positif_reached: app.fiktif_positif && overdue,
        calendar_covers_period,
        collect_by: collect_by(app, cal),
    }
}

/// When an application with `view` (as of any instant) becomes overdue if
/// its clock keeps running from then on: the start (00:00 local) of the
/// first working day after its due date, the first day it would count past
/// the standard. `None` when no deadline runs: finished, paused (waiting on
/// the citizen), or without a due date. In the past once it is overdue.
pub fn overdue_at_ms(view: &SlaView, cal: &Calendar) -> Option<i64> {
    if view.finished_on.is_some() || view.paused {
        return None;
    }
    let due = view.due_date?;
    working_day_after(cal, due, 1).map(|d| cal.day_start_ms(d))
}

/// The local date by which an issued document must be collected: the
/// working day [`Pending::CollectAt`]'s `within_working_days` after the
/// issue (the application's last state change) in the region of `cal`.
/// `None` when nothing is to be collected.
pub fn collect_by(app: &Application, cal: &Calendar) -> Option<Date> {
    let Some(Pending::CollectAt { within_working_days, .. }) = &app.pending else { return None };
    working_day_after(cal, cal.local_date(app.state_since_ms), *within_working_days)
}

/// The SLA of every application of `case`, in application order, in the
/// calendar of the case's region (weekends only when the set has none).
pub fn case_sla(case: &Case, calendars: &CalendarSet, now_ms: i64) -> Vec<SlaView> {
    let cal = calendars.calendar(case.tracking_number.region());
    case.applications.iter().map(|a| sla(a, &cal, now_ms)).collect()
}

/// The case status as of `now_ms`, deadlines included. Precedence, highest
/// first: overdue (Terlambat) when any open application is overdue, then
/// action needed (something waits on the citizen), then in progress, then
/// done; the last three are [`Case::status`]. An overdue application that
/// also waits on the citizen makes the case overdue: the agency was late
/// before it asked, and the next actions still say what the citizen must do.
pub fn case_status_at(case: &Case, calendars: &CalendarSet, now_ms: i64) -> CaseStatus {
    if case_sla(case, calendars, now_ms).iter().any(|v| v.overdue) {
        CaseStatus::Overdue
    } else {
        case.status()
    }
}
