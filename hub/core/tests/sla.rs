//! SLA arithmetic, given/when/then: a service standard and a region calendar
//! are given, events are recorded at chosen local times through `validate`,
//! `decide` and `apply`, and the SLA view is read as of a chosen instant.
//! Also: the civil date algorithm, calendar parsing with line numbers, and
//! the calendar files shipped in `deploy/calendars/`.
//!
//! March 2026, the month most scenarios use (WIB, UTC+7):
//!
//! ```text
//!  Mo Tu We Th Fr Sa Su
//!                     1
//!   2  3  4  5  6  7  8
//!   9 10 11 12 13 14 15
//!  16 17 18 19 20 21 22
//! ```

use mpp_core::calendar::{
    Calendar, CalendarError, CalendarSet, Date, DateError, Weekday, Zone, CALENDAR_LINE_BYTES_MAX,
    CALENDAR_TEXT_BYTES_MAX,
};
use mpp_core::case::{Application, CaseStatus};
use mpp_core::decide::{apply, decide, EntryMeta, MemState};
use mpp_core::event::{EventBody, EventKind as E, UncheckedEnvelope};
use mpp_core::ids::{ApplicationId, EventId, RegionCode, TrackingNumber};
use mpp_core::sla::{case_sla, case_status_at, overdue_at_ms, sla, SlaView};
use mpp_core::validate::{validate, SCHEMA_VERSION};
use proptest::prelude::*;

const WIB: i32 = 7 * 60;
const AGENCY: &str = "dpmptsp";
const SERVICE: &str = "pbg";

fn region(code: u16) -> RegionCode {
    RegionCode::parse(&code.to_string()).unwrap()
}

fn date(s: &str) -> Date {
    Date::parse(s).unwrap()
}

/// The instant of a local time `YYYY-MM-DD HH:MM` at `offset_minutes`.
fn local(s: &str, offset_minutes: i32) -> i64 {
    let (d, hm) = s.split_once(' ').unwrap();
    let (h, m) = hm.split_once(':').unwrap();
    let (h, m): (i64, i64) = (h.parse().unwrap(), m.parse().unwrap());
    date(d).start_unix_ms(offset_minutes) + h * 3_600_000 + m * 60_000
}

/// The instant of a WIB time `YYYY-MM-DD HH:MM`.
fn wib(s: &str) -> i64 {
    local(s, WIB)
}

/// The instant of a UTC time `YYYY-MM-DD HH:MM`.
fn utc(s: &str) -> i64 {
    local(s, 0)
}

/// A calendar of Kota Bengkulu (1771) for 2026 with these holidays.
fn bengkulu(holidays: &[&str]) -> CalendarSet {
    let mut text = String::from("year 2026\nzone WIB\n");
    for h in holidays {
        text.push_str(&format!("{h} Libur uji\n"));
    }
    let mut set = CalendarSet::new();
    set.insert_text(region(1771), &text).unwrap();
    set
}

fn standard_body(days: u32, fiktif_positif: bool, version: u32) -> EventBody {
    EventBody::ServiceStandardPublished {
        name_id: "Persetujuan Bangunan Gedung".to_owned(),
        name_en: "Building approval".to_owned(),
        completion_working_days: days,
        fee_idr: 0,
        requirements: vec!["KTP-el".to_owned()],
        fiktif_positif,
        version,
        collection: None,
    }
}

fn body(kind: E, record_ms: i64) -> EventBody {
    let s = |x: &str| x.to_owned();
    match kind {
        E::CaseOpened => EventBody::CaseOpened { pin_verifier: vec![1; 32], nik_keyed_hash: vec![2; 32] },
        E::ApplicationFiled => EventBody::ApplicationFiled { documents: vec![s("KTP-el")] },
        E::DocumentsRequested => EventBody::DocumentsRequested {
            documents: vec![s("Gambar teknis")],
            counter: s("Loket 5"),
            note: s(""),
        },
        E::DocumentsReceived => EventBody::DocumentsReceived { documents: vec![s("Gambar teknis")] },
        E::FeeAssessed => EventBody::FeeAssessed {
            amount_idr: 250_000,
            payment_channel: s("Bank Bengkulu"),
            billing_code: s("B-1"),
            due_at_ms: 0,
        },
        E::PaymentReceived => EventBody::PaymentReceived { amount_idr: 250_000, payment_reference: s("R-1") },
        E::AppointmentScheduled => EventBody::AppointmentScheduled {
            kind: s("inspection"),
            at_ms: record_ms + 86_400_000,
            place: s("Lokasi bangunan"),
        },
        E::ReviewStarted => EventBody::ReviewStarted,
        E::Issued => EventBody::Issued { document_number: s("PBG-1771-1") },
        E::Rejected => EventBody::Rejected { reason_code: s(""), reason: s("Tidak sesuai tata ruang") },
        E::Withdrawn => EventBody::Withdrawn { reason: s("") },
        E::Collected => EventBody::Collected,
        E::ServiceStandardPublished => standard_body(3, false, 1),
        E::PersonalDataSealed => {
            EventBody::PersonalDataSealed { key_id: vec![7; 16], nonce: vec![8; 12], ciphertext: vec![9; 48] }
        }
        E::PersonalDataErased => EventBody::PersonalDataErased { key_id: vec![7; 16] },
        E::PinReissued => EventBody::PinReissued { pin_verifier: vec![3; 33] },
        E::PersonalDataRead => EventBody::PersonalDataRead { client_id: "loket-desk-3".into() },
    }
}

/// A hub log in miniature: every event is validated, decided and applied
/// with its own time of record, and must be accepted.
#[derive(Debug, Clone)]
struct World {
    state: MemState,
    /// Every envelope accepted so far, with its time of record.
    log: Vec<(UncheckedEnvelope, i64)>,
    region: u16,
}

impl World {
    fn new() -> World {
        World::in_region(1771)
    }

    fn in_region(region: u16) -> World {
        World { state: MemState::default(), log: Vec::new(), region }
    }

    fn envelope(&self, case: Option<u64>, app: Option<&str>, body: EventBody, ms: i64) -> UncheckedEnvelope {
        let n = self.log.len() as u64 + 1;
        let mut id = [0u8; 16];
        id[..6].copy_from_slice(&(ms as u64).to_be_bytes()[2..]);
        id[6] = 0x70;
        id[8..].copy_from_slice(&n.to_be_bytes());
        id[8] = (id[8] & 0x3f) | 0x80;
        UncheckedEnvelope {
            schema_version: SCHEMA_VERSION,
            event_id: EventId(id).to_string(),
            case_id: case.map(|c| self.tracking(c).to_string()).unwrap_or_default(),
            region_code: self.region.to_string(),
            agency_id: AGENCY.to_owned(),
            service_id: SERVICE.to_owned(),
            application_id: app.unwrap_or_default().to_owned(),
            occurred_at_ms: ms,
            officer: "petugas-1".to_owned(),
            body: Some(body),
        }
    }

    fn tracking(&self, case: u64) -> TrackingNumber {
        TrackingNumber::new(region(self.region), case).unwrap()
    }

    #[track_caller]
    fn submit(&mut self, u: UncheckedEnvelope, ms: i64) {
        let seq = self.log.len() as u64 + 1;
        let subject = format!("mpp.events.{AGENCY}.{SERVICE}");
        let env = validate(&subject, &u, ms).unwrap_or_else(|r| panic!("validate: {r}"));
        decide(&self.state, &env).unwrap_or_else(|r| panic!("decide: {r}"));
        apply(&mut self.state, &env, EntryMeta { seq, recorded_at_ms: ms });
        self.log.push((u, ms));
    }

    /// Publishes a service standard at `ms`.
    #[track_caller]
    fn standard(mut self, days: u32, fiktif_positif: bool, version: u32, ms: i64) -> World {
        let u = self.envelope(None, None, standard_body(days, fiktif_positif, version), ms);
        self.submit(u, ms);
        self
    }

    /// Opens case `case` at `ms`.
    #[track_caller]
    fn open(mut self, case: u64, ms: i64) -> World {
        let u = self.envelope(Some(case), None, body(E::CaseOpened, ms), ms);
        self.submit(u, ms);
        self
    }

    /// Records an application event at `ms`.
    #[track_caller]
    fn event(mut self, case: u64, app: &str, kind: E, ms: i64) -> World {
        let u = self.envelope(Some(case), Some(app), body(kind, ms), ms);
        self.submit(u, ms);
        self
    }

    fn app(&self, case: u64, app: &str) -> &Application {
        self.state.cases[&self.tracking(case)].application(&ApplicationId::parse(app).unwrap()).unwrap()
    }

    /// The SLA view of an application as of `now_ms`.
    fn sla(&self, cals: &CalendarSet, case: u64, app: &str, now_ms: i64) -> SlaView {
        sla(self.app(case, app), &cals.calendar(region(self.region)), now_ms)
    }

    fn status(&self, cals: &CalendarSet, case: u64, now_ms: i64) -> CaseStatus {
        case_status_at(&self.state.cases[&self.tracking(case)], cals, now_ms)
    }

    /// The state rebuilt by replaying the accepted log into a fresh world.
    fn replayed(&self) -> MemState {
        let mut fresh = World::in_region(self.region);
        for (u, ms) in &self.log {
            fresh.submit(u.clone(), *ms);
        }
        fresh.state
    }
}

/// A world with a standard of `days` working days published on 2026-03-01
/// and case 1 opened on 2026-03-02 at 08:00 WIB.
fn given_standard(days: u32, fiktif_positif: bool) -> World {
    World::new().standard(days, fiktif_positif, 1, wib("2026-03-01 08:00")).open(1, wib("2026-03-02 08:00"))
}

// ---------------------------------------------------------------------------
// Weekends, holidays, due dates.
// ---------------------------------------------------------------------------

#[test]
fn filing_on_friday_counts_from_monday_and_skips_the_weekend() {
    // Given a 3-day standard and a calendar without holidays,
    let cals = bengkulu(&[]);
    // when an application is filed on Friday 2026-03-06 at 10:00,
    let w = given_standard(3, false).event(1, "A", E::ApplicationFiled, wib("2026-03-06 10:00"));

    // then the filing day is day 0 and the due date is Wednesday (Mon, Tue, Wed).
    let v = w.sla(&cals, 1, "A", wib("2026-03-06 16:00"));
    assert_eq!(v.filed_on, date("2026-03-06"));
    assert_eq!((v.working_days_used, v.working_days_left), (0, 3));
    assert_eq!(v.due_date, Some(date("2026-03-11")));
    assert!(!v.overdue && !v.paused && v.finished_on.is_none());
    assert!(v.calendar_covers_period);
    assert_eq!(v.standard_working_days, 3);
    assert_eq!(v.standard_version, 1);

    // The weekend costs nothing,
    let sunday = w.sla(&cals, 1, "A", wib("2026-03-08 23:59"));
    assert_eq!((sunday.working_days_used, sunday.due_date), (0, Some(date("2026-03-11"))));
    // Monday counts from its start,
    let monday = w.sla(&cals, 1, "A", wib("2026-03-09 00:00"));
    assert_eq!((monday.working_days_used, monday.working_days_left), (1, 2));
    assert_eq!(monday.due_date, Some(date("2026-03-11")));
    // the due date itself is not overdue,
    let wednesday = w.sla(&cals, 1, "A", wib("2026-03-11 23:59"));
    assert_eq!((wednesday.working_days_used, wednesday.working_days_left), (3, 0));
    assert!(!wednesday.overdue);
    assert_eq!(w.status(&cals, 1, wib("2026-03-11 23:59")), CaseStatus::InProgress);
    // and the next working day's start is.
    let thursday = w.sla(&cals, 1, "A", wib("2026-03-12 00:00"));
    assert_eq!((thursday.working_days_used, thursday.working_days_left), (4, -1));
    assert!(thursday.overdue);
    assert_eq!(thursday.due_date, Some(date("2026-03-11")));
    assert_eq!(w.status(&cals, 1, wib("2026-03-12 00:00")), CaseStatus::Overdue);
}

#[test]
fn a_holiday_inside_the_window_moves_the_due_date_by_one_working_day() {
    // Given a 3-day standard and Tuesday 2026-03-10 as a holiday,
    let cals = bengkulu(&["2026-03-10"]);
    // when an application is filed on Friday,
    let w = given_standard(3, false).event(1, "A", E::ApplicationFiled, wib("2026-03-06 10:00"));
    // then Monday, Wednesday and Thursday count: due Thursday.
    let v = w.sla(&cals, 1, "A", wib("2026-03-10 12:00"));
    assert_eq!(v.working_days_used, 1, "the holiday does not count");
    assert_eq!(v.working_days_stopped, 0, "a holiday is not a stop");
    assert_eq!(v.due_date, Some(date("2026-03-12")));
    assert!(!w.sla(&cals, 1, "A", wib("2026-03-12 23:59")).overdue);
    assert!(w.sla(&cals, 1, "A", wib("2026-03-13 00:00")).overdue);
}

#[test]
fn a_region_without_a_calendar_counts_weekends_only_and_says_so() {
    // Given a calendar for 1771 with a holiday, but none for 1705,
    let cals = bengkulu(&["2026-03-10"]);
    // when an application is filed in 1705 on Friday,
    let w = World::in_region(1705)
        .standard(3, false, 1, wib("2026-03-01 08:00"))
        .open(1, wib("2026-03-02 08:00"))
        .event(1, "A", E::ApplicationFiled, wib("2026-03-06 10:00"));
    // then 1771's holiday does not apply and the view says holidays are unknown.
    let v = w.sla(&cals, 1, "A", wib("2026-03-06 12:00"));
    assert_eq!(v.due_date, Some(date("2026-03-11")));
    assert!(!v.calendar_covers_period);
    // A due date in a year no file declares is flagged too.
    let late = given_standard(3, false).event(1, "A", E::ApplicationFiled, wib("2026-12-30 10:00"));
    let v = late.sla(&cals, 1, "A", wib("2026-12-30 12:00"));
    assert_eq!(v.due_date, Some(date("2027-01-04")));
    assert!(!v.calendar_covers_period);
}

#[test]
fn the_overdue_instant_is_the_start_of_the_first_working_day_past_the_due_date() {
    // Given a 3-day standard and Thursday 2026-03-12 as a holiday,
    let cals = bengkulu(&["2026-03-12"]);
    let cal = cals.calendar(region(1771));
    // when an application is filed on Friday (due Wednesday 2026-03-11),
    let w = given_standard(3, false).event(1, "A", E::ApplicationFiled, wib("2026-03-06 10:00"));
    // then it becomes overdue at the start of Friday (the holiday skipped),
    // whenever the clock is read, and not a millisecond earlier.
    let at = wib("2026-03-13 00:00");
    for now in [wib("2026-03-06 12:00"), wib("2026-03-10 09:00"), at, at + 86_400_000] {
        assert_eq!(overdue_at_ms(&w.sla(&cals, 1, "A", now), &cal), Some(at), "as of {now}");
    }
    assert!(!w.sla(&cals, 1, "A", at - 1).overdue);
    assert!(w.sla(&cals, 1, "A", at).overdue);
    // A paused clock runs to no deadline, nor a finished one.
    let asked = w.clone().event(1, "A", E::DocumentsRequested, wib("2026-03-09 14:00"));
    assert_eq!(overdue_at_ms(&asked.sla(&cals, 1, "A", wib("2026-03-10 09:00")), &cal), None);
    let rejected = w.event(1, "A", E::Rejected, wib("2026-03-09 14:00"));
    assert_eq!(overdue_at_ms(&rejected.sla(&cals, 1, "A", wib("2026-03-10 09:00")), &cal), None);
}

// ---------------------------------------------------------------------------
// Clock stops and restarts.
// ---------------------------------------------------------------------------

#[test]
fn documents_required_for_three_working_days_push_the_due_date_by_exactly_three() {
    let cals = bengkulu(&[]);
    // Given a 5-day standard and an application filed on Monday 2026-03-02,
    let filed = given_standard(5, false).event(1, "A", E::ApplicationFiled, wib("2026-03-02 09:00"));
    // (without stops it would be due Monday 2026-03-09),
    assert_eq!(filed.sla(&cals, 1, "A", wib("2026-03-02 10:00")).due_date, Some(date("2026-03-09")));

    // when documents are requested on Tuesday afternoon,
    let asked = filed.event(1, "A", E::DocumentsRequested, wib("2026-03-03 14:00"));
    // then the clock stops: Tuesday counted, Wednesday and Thursday do not,
    let v = asked.sla(&cals, 1, "A", wib("2026-03-05 12:00"));
    assert!(v.paused);
    assert_eq!((v.working_days_used, v.working_days_stopped, v.working_days_left), (1, 2, 4));
    // and the due date reads "if you bring them today": Fri, Mon, Tue, Wed.
    assert_eq!(v.due_date, Some(date("2026-03-11")));
    assert_eq!(asked.status(&cals, 1, wib("2026-03-05 12:00")), CaseStatus::ActionNeeded);

    // When the documents arrive on Friday at 11:00,
    let back = asked.event(1, "A", E::DocumentsReceived, wib("2026-03-06 11:00"));
    // then Wednesday, Thursday and Friday were stopped, and the due date moved
    // from Monday 2026-03-09 by exactly those three working days.
    let v = back.sla(&cals, 1, "A", wib("2026-03-06 12:00"));
    assert!(!v.paused);
    assert_eq!((v.working_days_used, v.working_days_stopped, v.working_days_left), (1, 3, 4));
    assert_eq!(v.due_date, Some(date("2026-03-12")));
    assert_eq!(back.status(&cals, 1, wib("2026-03-06 12:00")), CaseStatus::InProgress);
    // The restarted clock counts from Monday on.
    let v = back.sla(&cals, 1, "A", wib("2026-03-12 17:00"));
    assert_eq!((v.working_days_used, v.working_days_stopped, v.working_days_left), (5, 3, 0));
    assert!(!v.overdue);
    assert!(back.sla(&cals, 1, "A", wib("2026-03-13 08:00")).overdue);
}

#[test]
fn a_stop_and_restart_within_one_day_costs_nothing() {
    let cals = bengkulu(&[]);
    let w = given_standard(5, false)
        .event(1, "A", E::ApplicationFiled, wib("2026-03-02 09:00"))
        .event(1, "A", E::DocumentsRequested, wib("2026-03-03 10:00"))
        .event(1, "A", E::DocumentsReceived, wib("2026-03-03 15:00"));
    let v = w.sla(&cals, 1, "A", wib("2026-03-04 09:00"));
    assert_eq!((v.working_days_used, v.working_days_stopped), (2, 0));
    assert_eq!(v.due_date, Some(date("2026-03-09")));
}

#[test]
fn an_event_at_local_midnight_takes_effect_before_that_day_starts() {
    let cals = bengkulu(&[]);
    // Given documents requested on Tuesday,
    let asked = given_standard(5, false).event(1, "A", E::ApplicationFiled, wib("2026-03-02 09:00")).event(
        1,
        "A",
        E::DocumentsRequested,
        wib("2026-03-03 14:00"),
    );
    // when they arrive at exactly 00:00:00.000 on Friday,
    let at_midnight = asked.clone().event(1, "A", E::DocumentsReceived, wib("2026-03-06 00:00"));
    // then Friday counts (the clock was running when Friday started),
    let v = at_midnight.sla(&cals, 1, "A", wib("2026-03-06 12:00"));
    assert_eq!((v.working_days_used, v.working_days_stopped), (2, 2));
    // while one millisecond after midnight, Friday is stopped.
    let after = asked.event(1, "A", E::DocumentsReceived, wib("2026-03-06 00:00") + 1);
    let v = after.sla(&cals, 1, "A", wib("2026-03-06 12:00"));
    assert_eq!((v.working_days_used, v.working_days_stopped), (1, 3));
}

#[test]
fn awaiting_payment_stops_the_clock_until_the_payment() {
    let cals = bengkulu(&[]);
    // Given a 3-day standard, an application filed Monday and a fee assessed on Tuesday,
    let assessed = given_standard(3, false)
        .event(1, "A", E::ApplicationFiled, wib("2026-03-02 09:00"))
        .event(1, "A", E::ReviewStarted, wib("2026-03-02 10:00"))
        .event(1, "A", E::FeeAssessed, wib("2026-03-03 11:00"));
    // then over the weekend the clock is stopped, due "if you pay today" (Mon, Tue),
    let v = assessed.sla(&cals, 1, "A", wib("2026-03-07 10:00"));
    assert!(v.paused);
    assert_eq!((v.working_days_used, v.working_days_stopped, v.working_days_left), (1, 3, 2));
    assert_eq!(v.due_date, Some(date("2026-03-10")));

    // When the citizen pays on Monday 2026-03-09 at 09:00,
    let paid = assessed.event(1, "A", E::PaymentReceived, wib("2026-03-09 09:00"));
    // then Monday was still stopped (Wed, Thu, Fri, Mon) and the due date is Wednesday.
    let v = paid.sla(&cals, 1, "A", wib("2026-03-09 12:00"));
    assert!(!v.paused);
    assert_eq!((v.working_days_used, v.working_days_stopped, v.working_days_left), (1, 4, 2));
    assert_eq!(v.due_date, Some(date("2026-03-11")));

    // A scheduled inspection keeps the clock running, and issuing on the due date is on time.
    let issued = paid.event(1, "A", E::AppointmentScheduled, wib("2026-03-09 13:00")).event(
        1,
        "A",
        E::Issued,
        wib("2026-03-11 15:00"),
    );
    let v = issued.sla(&cals, 1, "A", wib("2026-03-11 16:00"));
    assert_eq!(v.finished_on, Some(date("2026-03-11")));
    assert_eq!(v.finished_on_time, Some(true));
    assert_eq!((v.working_days_used, v.working_days_left), (3, 0));
    assert!(!v.overdue && !v.paused);
}

// ---------------------------------------------------------------------------
// Finishing, overdue, case status.
// ---------------------------------------------------------------------------

#[test]
fn issued_on_the_due_date_is_on_time_and_the_next_working_day_is_late() {
    let cals = bengkulu(&[]);
    let filed = given_standard(3, false).event(1, "A", E::ApplicationFiled, wib("2026-03-06 10:00")).event(
        1,
        "A",
        E::ReviewStarted,
        wib("2026-03-09 08:00"),
    );

    let on_time = filed.clone().event(1, "A", E::Issued, wib("2026-03-11 16:59"));
    let v = on_time.sla(&cals, 1, "A", wib("2026-03-11 17:00"));
    assert_eq!(v.finished_on_time, Some(true));
    assert_eq!(v.working_days_left, 0);
    assert!(v.due_date == Some(date("2026-03-11")) && !v.overdue);
    assert_eq!(on_time.status(&cals, 1, wib("2026-03-11 17:00")), CaseStatus::Done);

    let late = filed.event(1, "A", E::Issued, wib("2026-03-12 08:00"));
    let v = late.sla(&cals, 1, "A", wib("2026-03-12 09:00"));
    assert_eq!(v.finished_on_time, Some(false));
    assert_eq!((v.working_days_used, v.working_days_left), (4, -1));
    assert!(!v.overdue, "a finished application is never overdue");
    assert_eq!(late.status(&cals, 1, wib("2026-03-12 09:00")), CaseStatus::Done, "late, but done");

    // Collecting later changes nothing, and the view no longer depends on now.
    let collected = late.event(1, "A", E::Collected, wib("2026-03-20 10:00"));
    let a = collected.sla(&cals, 1, "A", wib("2026-03-20 11:00"));
    let b = collected.sla(&cals, 1, "A", wib("2027-06-01 11:00"));
    assert_eq!(a, v);
    assert_eq!(a, b);
    assert_eq!(collected.status(&cals, 1, wib("2026-03-20 11:00")), CaseStatus::Done);
}

#[test]
fn rejected_and_withdrawn_applications_record_whether_they_were_within_time() {
    let cals = bengkulu(&[]);
    let filed = given_standard(2, false).event(1, "A", E::ApplicationFiled, wib("2026-03-02 09:00"));
    let rejected = filed.clone().event(1, "A", E::Rejected, wib("2026-03-04 10:00"));
    let v = rejected.sla(&cals, 1, "A", wib("2026-03-30 10:00"));
    assert_eq!((v.finished_on, v.finished_on_time), (Some(date("2026-03-04")), Some(true)));
    let withdrawn = filed.event(1, "A", E::Withdrawn, wib("2026-03-05 10:00"));
    let v = withdrawn.sla(&cals, 1, "A", wib("2026-03-30 10:00"));
    assert_eq!((v.finished_on, v.finished_on_time), (Some(date("2026-03-05")), Some(false)));
    assert_eq!(v.working_days_left, -1);
    assert_eq!(withdrawn.status(&cals, 1, wib("2026-03-30 10:00")), CaseStatus::Done);
}

#[test]
fn overdue_days_go_negative_and_overdue_outranks_action_needed() {
    let cals = bengkulu(&[]);
    // Given a 2-day standard, application A filed on Monday and B waiting on documents,
    let w = given_standard(2, false)
        .event(1, "A", E::ApplicationFiled, wib("2026-03-02 09:00"))
        .event(1, "B", E::ApplicationFiled, wib("2026-03-02 09:05"))
        .event(1, "B", E::DocumentsRequested, wib("2026-03-02 11:00"));
    // when the case is read on Wednesday, nothing is late yet: B waits on the citizen,
    assert_eq!(w.status(&cals, 1, wib("2026-03-04 12:00")), CaseStatus::ActionNeeded);
    // and on Friday, A is two working days late and the case is overdue.
    let v = w.sla(&cals, 1, "A", wib("2026-03-06 12:00"));
    assert_eq!((v.working_days_used, v.working_days_left), (4, -2));
    assert!(v.overdue);
    assert_eq!(v.due_date, Some(date("2026-03-04")), "Tuesday and Wednesday were its two days");
    assert_eq!(w.status(&cals, 1, wib("2026-03-06 12:00")), CaseStatus::Overdue);
    let all = case_sla(&w.state.cases[&w.tracking(1)], &cals, wib("2026-03-06 12:00"));
    assert_eq!(all.len(), 2);
    assert!(all[0].overdue && !all[1].overdue && all[1].paused);

    // An application that falls behind and then waits on the citizen stays overdue.
    let asked = w.event(1, "A", E::DocumentsRequested, wib("2026-03-06 13:00"));
    let v = asked.sla(&cals, 1, "A", wib("2026-03-10 12:00"));
    assert!(v.paused && v.overdue);
    assert_eq!(v.working_days_left, -2);
}

#[test]
fn fiktif_positif_deadline_is_the_due_date_while_undecided() {
    let cals = bengkulu(&[]);
    // Given a 5-day standard that grants approval by default,
    let filed = given_standard(5, true).event(1, "A", E::ApplicationFiled, wib("2026-03-02 09:00"));
    assert!(filed.app(1, "A").fiktif_positif);
    // then the deadline shows while the application is open,
    let v = filed.sla(&cals, 1, "A", wib("2026-03-03 10:00"));
    assert_eq!(v.fiktif_positif_deadline, Some(date("2026-03-09")));
    assert!(!v.fiktif_positif_reached);
    // and is reached once it passes undecided,
    let v = filed.sla(&cals, 1, "A", wib("2026-03-10 09:00"));
    assert_eq!(v.fiktif_positif_deadline, Some(date("2026-03-09")));
    assert!(v.fiktif_positif_reached && v.overdue);
    // while a decision removes it.
    let decided = filed.event(1, "A", E::ReviewStarted, wib("2026-03-03 09:00")).event(
        1,
        "A",
        E::Issued,
        wib("2026-03-05 09:00"),
    );
    let v = decided.sla(&cals, 1, "A", wib("2026-03-10 09:00"));
    assert_eq!(v.fiktif_positif_deadline, None);
    assert!(!v.fiktif_positif_reached);

    // A standard without fiktif positif never shows one.
    let plain = given_standard(5, false).event(1, "A", E::ApplicationFiled, wib("2026-03-02 09:00"));
    let v = plain.sla(&cals, 1, "A", wib("2026-03-10 09:00"));
    assert_eq!((v.fiktif_positif_deadline, v.fiktif_positif_reached), (None, false));
}

// ---------------------------------------------------------------------------
// Service standard changes.
// ---------------------------------------------------------------------------

#[test]
fn a_standard_published_mid_case_governs_only_applications_filed_after_it() {
    let cals = bengkulu(&[]);
    // Given standard v1 of 5 days and application A filed under it on Monday,
    let w = given_standard(5, false).event(1, "A", E::ApplicationFiled, wib("2026-03-02 09:00"));
    // when v2 of 3 days with fiktif positif is published on Tuesday and B is filed after it,
    let w = w.standard(3, true, 2, wib("2026-03-03 08:00")).event(
        1,
        "B",
        E::ApplicationFiled,
        wib("2026-03-03 09:00"),
    );
    // then A keeps v1's 5 days,
    let a = w.sla(&cals, 1, "A", wib("2026-03-03 10:00"));
    assert_eq!((a.standard_version, a.standard_working_days), (1, 5));
    assert_eq!(a.due_date, Some(date("2026-03-09")));
    assert_eq!(a.fiktif_positif_deadline, None);
    // and B gets v2's 3 days.
    let b = w.sla(&cals, 1, "B", wib("2026-03-03 10:00"));
    assert_eq!((b.standard_version, b.standard_working_days), (2, 3));
    assert_eq!(b.due_date, Some(date("2026-03-06")));
    assert_eq!(b.fiktif_positif_deadline, Some(date("2026-03-06")));
    // A is not overdue on Friday under v1 although v2 would make it so.
    assert!(!w.sla(&cals, 1, "A", wib("2026-03-06 23:00")).overdue);

    // A replay of the log files both applications under the same standards.
    let replayed = w.replayed();
    assert_eq!(replayed, w.state);
    let case = &replayed.cases[&w.tracking(1)];
    let cal = cals.calendar(region(1771));
    assert_eq!(
        sla(case.application(&ApplicationId::parse("A").unwrap()).unwrap(), &cal, wib("2026-03-03 10:00")),
        a
    );
}

// ---------------------------------------------------------------------------
// Time zones.
// ---------------------------------------------------------------------------

#[test]
fn the_local_date_decides_the_filing_day() {
    let cals = bengkulu(&[]);
    let given = |region_code: u16| {
        World::in_region(region_code)
            .standard(3, false, 1, wib("2026-03-01 08:00"))
            .open(1, wib("2026-03-02 08:00"))
    };
    // 16:30 UTC Thursday is 23:30 WIB Thursday: filed Thursday, due Tuesday.
    let w = given(1771).event(1, "A", E::ApplicationFiled, utc("2026-03-05 16:30"));
    let v = w.sla(&cals, 1, "A", utc("2026-03-05 16:45"));
    assert_eq!((v.filed_on, v.due_date), (date("2026-03-05"), Some(date("2026-03-10"))));
    // 17:30 UTC Thursday is 00:30 WIB Friday: filed Friday, due Wednesday.
    let w = given(1771).event(1, "A", E::ApplicationFiled, utc("2026-03-05 17:30"));
    let v = w.sla(&cals, 1, "A", utc("2026-03-05 17:45"));
    assert_eq!((v.filed_on, v.due_date), (date("2026-03-06"), Some(date("2026-03-11"))));
    // In Makassar (7371, WITA) 16:30 UTC Thursday is already 00:30 Friday.
    let w = given(7371).event(1, "A", E::ApplicationFiled, utc("2026-03-05 16:30"));
    let v = w.sla(&cals, 1, "A", utc("2026-03-05 16:45"));
    assert_eq!((v.filed_on, v.due_date), (date("2026-03-06"), Some(date("2026-03-11"))));
    // "Now" is read in the zone too: 17:00 UTC Wednesday is Thursday 00:00 WIB.
    let w = given(1771).event(1, "A", E::ApplicationFiled, wib("2026-03-06 10:00"));
    assert!(!w.sla(&cals, 1, "A", utc("2026-03-11 16:59")).overdue);
    assert!(w.sla(&cals, 1, "A", utc("2026-03-11 17:00")).overdue);
}

#[test]
fn each_province_has_its_zone() {
    for (code, zone) in [
        (1101, Zone::Wib),
        (1771, Zone::Wib),
        (2171, Zone::Wib),
        (3173, Zone::Wib),
        (3671, Zone::Wib),
        (5171, Zone::Wita),
        (5271, Zone::Wita),
        (5371, Zone::Wita),
        (6171, Zone::Wib),
        (6271, Zone::Wib),
        (6371, Zone::Wita),
        (6471, Zone::Wita),
        (6571, Zone::Wita),
        (7171, Zone::Wita),
        (7371, Zone::Wita),
        (7604, Zone::Wita),
        (8171, Zone::Wit),
        (8271, Zone::Wit),
        (9171, Zone::Wit),
        (9471, Zone::Wit),
        (9701, Zone::Wit),
    ] {
        assert_eq!(Zone::of_region(region(code)), zone, "region {code}");
        assert_eq!(Calendar::weekends_only(region(code)).zone(), zone);
    }
    assert_eq!([Zone::Wib, Zone::Wita, Zone::Wit].map(Zone::offset_minutes), [420, 480, 540]);
    // A calendar file can override the province's zone.
    let cal = Calendar::parse(region(1771), "zone WITA").unwrap();
    assert_eq!(cal.zone(), Zone::Wita);
}

// ---------------------------------------------------------------------------
// Properties of the clock.
// ---------------------------------------------------------------------------

proptest! {
    /// Over any sequence of stops and restarts, every working day after
    /// filing is either used or stopped, the days used never decrease as
    /// time passes, and the due date of an open application with days left
    /// is that many working days after today.
    #[test]
    fn every_working_day_is_used_or_stopped(
        days in 1u32..=10,
        gaps_min in prop::collection::vec(1i64..(4 * 24 * 60), 0..8),
        now_after_min in 0i64..(30 * 24 * 60),
    ) {
        let cals = bengkulu(&["2026-03-10", "2026-03-19", "2026-03-20"]);
        let cal = cals.calendar(region(1771));
        let filed_ms = wib("2026-03-02 09:00");
        let mut w = given_standard(days, false).event(1, "A", E::ApplicationFiled, filed_ms);
        let mut t = filed_ms;
        for (i, gap) in gaps_min.iter().enumerate() {
            t += gap * 60_000;
            let kind = if i % 2 == 0 { E::DocumentsRequested } else { E::DocumentsReceived };
            w = w.event(1, "A", kind, t);
        }
        let now = t + now_after_min * 60_000;
        let v = w.sla(&cals, 1, "A", now);
        let today = cal.local_date(now);
        let mut working = 0u32;
        let mut d = v.filed_on;
        while d < today {
            d = d.succ();
            if cal.is_working_day(d) {
                working += 1;
            }
        }
        prop_assert_eq!(v.working_days_used + v.working_days_stopped, working);
        prop_assert_eq!(v.working_days_left, days as i32 - v.working_days_used as i32);
        prop_assert_eq!(v.overdue, v.working_days_left < 0);
        if v.working_days_left > 0 {
            let mut due = today;
            let mut k = 0;
            while k < v.working_days_left {
                due = due.succ();
                if cal.is_working_day(due) {
                    k += 1;
                }
            }
            prop_assert_eq!(v.due_date, Some(due));
        }
        let later = w.sla(&cals, 1, "A", now + 36 * 3_600_000);
        prop_assert!(later.working_days_used >= v.working_days_used);
        prop_assert!(later.working_days_stopped >= v.working_days_stopped);
    }
}

// ---------------------------------------------------------------------------
// Dates.
// ---------------------------------------------------------------------------

/// Days from 1970-01-01 by counting whole years and months, independently
/// of Hinnant's algorithm.
fn naive_days(y: i32, m: u32, d: u32) -> i64 {
    let leap = |y: i32| y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let year_len = |y: i32| if leap(y) { 366 } else { 365 };
    let mut days: i64 = 0;
    if y >= 1970 {
        days += (1970..y).map(year_len).sum::<i64>();
    } else {
        days -= (y..1970).map(year_len).sum::<i64>();
    }
    let month_len = [31, if leap(y) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    days += month_len[..(m as usize - 1)].iter().sum::<i64>();
    days + i64::from(d) - 1
}

#[test]
fn known_dates() {
    for (text, days, weekday) in [
        ("1970-01-01", 0, Weekday::Thursday),
        ("1969-12-31", -1, Weekday::Wednesday),
        ("2000-02-29", 11_016, Weekday::Tuesday),
        ("2000-03-01", 11_017, Weekday::Wednesday),
        ("2026-01-01", 20_454, Weekday::Thursday),
        ("2026-03-06", 20_518, Weekday::Friday),
        ("2026-08-17", 20_682, Weekday::Monday),
        ("0001-01-01", -719_162, Weekday::Monday),
        ("9999-12-31", 2_932_896, Weekday::Friday),
    ] {
        let d = date(text);
        assert_eq!(d.days(), days, "{text}");
        assert_eq!(d.weekday(), weekday, "{text}");
        assert_eq!(d.to_string(), text);
    }
    assert_eq!(Date::MIN, date("0001-01-01"));
    assert_eq!(Date::MAX, date("9999-12-31"));
    assert_eq!(Date::MAX.succ(), Date::MAX);
    assert_eq!(Date::from_days(2_932_897), Err(DateError::OutOfRange(2_932_897)));
    // 2026-01-01 00:00 UTC, and one millisecond before it.
    assert_eq!(Date::from_unix_ms(1_767_225_600_000, 0), date("2026-01-01"));
    assert_eq!(Date::from_unix_ms(1_767_225_599_999, 0), date("2025-12-31"));
    // 17:00 UTC on 2025-12-31 is midnight in WIB.
    assert_eq!(Date::from_unix_ms(1_767_200_400_000, WIB), date("2026-01-01"));
    assert_eq!(Date::from_unix_ms(1_767_200_399_999, WIB), date("2025-12-31"));
    assert_eq!(date("2026-01-01").start_unix_ms(WIB), 1_767_200_400_000);
    assert_eq!(Date::from_unix_ms(-1, 0), date("1969-12-31"));
    assert_eq!(Date::from_unix_ms(i64::MAX, 540), Date::MAX);
    assert_eq!(Date::from_unix_ms(i64::MIN, 0), Date::MIN);
}

#[test]
fn malformed_dates_are_refused() {
    for s in [
        "",
        "2026-1-01",
        "2026-01-1",
        "26-01-01",
        "2026/01/01",
        "2026-01-01 ",
        "+026-01-01",
        "２０２６-01-01",
    ] {
        assert_eq!(Date::parse(s), Err(DateError::Shape), "{s:?}");
    }
    for s in ["2026-02-29", "2100-02-29", "2026-13-01", "2026-00-10", "2026-04-31", "0000-01-01"] {
        assert!(matches!(Date::parse(s), Err(DateError::NoSuchDay(_))), "{s:?}");
    }
    assert!(Date::parse("2024-02-29").is_ok());
    assert!(Date::parse("2000-02-29").is_ok());
}

proptest! {
    #[test]
    fn days_round_trip_through_year_month_day(days in i64::from(Date::MIN.days())..=i64::from(Date::MAX.days())) {
        let d = Date::from_days(days).unwrap();
        let (y, m, dd) = d.ymd();
        prop_assert_eq!(Date::from_ymd(y, m, dd), Some(d));
        prop_assert_eq!(Date::parse(&d.to_string()), Ok(d));
        prop_assert_eq!(naive_days(y, m, dd), days);
        if d < Date::MAX {
            let next = d.succ();
            prop_assert_eq!(next.days(), d.days() + 1);
            prop_assert_eq!(
                next.weekday().index_from_monday(),
                (d.weekday().index_from_monday() + 1) % 7
            );
        }
    }

    #[test]
    fn year_month_day_round_trips(y in 1i32..=9999, m in 1u32..=12, d in 1u32..=31) {
        match Date::from_ymd(y, m, d) {
            Some(date) => {
                prop_assert_eq!(date.ymd(), (y, m, d));
                prop_assert_eq!(i64::from(date.days()), naive_days(y, m, d));
            }
            None => prop_assert!(d > 28, "{y}-{m}-{d} was refused"),
        }
    }

    #[test]
    fn an_instant_falls_on_the_day_that_contains_it(ms in -10_000_000_000_000i64..10_000_000_000_000, zone in 0usize..3) {
        let offset = [420, 480, 540][zone];
        let d = Date::from_unix_ms(ms, offset);
        prop_assert!(d.start_unix_ms(offset) <= ms);
        prop_assert!(ms < d.succ().start_unix_ms(offset));
    }
}

// ---------------------------------------------------------------------------
// Calendar files.
// ---------------------------------------------------------------------------

fn parse(text: &str) -> Result<Calendar, CalendarError> {
    Calendar::parse(region(1771), text)
}

#[test]
fn a_calendar_text_parses_with_comments_directives_and_names() {
    let cal = parse(
        "# Kota Bengkulu\r\n\
         year 2026   # the year\r\n\
         \r\n\
         weekend fri Sabtu\n\
         \t2026-01-01\tTahun Baru 2026 Masehi   # national\n\
         2026-01-02 Hari#1\n",
    )
    .unwrap();
    assert_eq!(cal.region(), region(1771));
    assert_eq!(cal.zone(), Zone::Wib, "the province's zone by default");
    assert_eq!(cal.holiday(date("2026-01-01")), Some("Tahun Baru 2026 Masehi"));
    assert_eq!(cal.holiday(date("2026-01-02")), Some("Hari#1"));
    assert_eq!(cal.holidays().count(), 2);
    assert_eq!(cal.weekend().iter().collect::<Vec<_>>(), [Weekday::Friday, Weekday::Saturday]);
    assert!(cal.is_working_day(date("2026-01-04")), "Sunday works under this weekend");
    assert!(!cal.is_working_day(date("2026-01-09")), "Friday does not");
    assert!(cal.covers(date("2026-06-01")) && !cal.covers(date("2027-01-01")));
    assert_eq!(cal.years().collect::<Vec<_>>(), [2026]);
    let empty = parse("").unwrap();
    assert_eq!(empty, Calendar::weekends_only(region(1771)));
}

#[test]
fn calendar_errors_name_their_line() {
    use CalendarError as C;
    let cases: Vec<(&str, C)> = vec![
        (
            "year 2026\n\n2026-13-01 X",
            C::BadDate { line: 3, source: DateError::NoSuchDay("2026-13-01".into()) },
        ),
        ("# c\n2026-1-1 X", C::BadDate { line: 2, source: DateError::Shape }),
        ("2026-01-01", C::MissingName { line: 1, date: date("2026-01-01") }),
        ("2026-01-01   # only a comment", C::MissingName { line: 1, date: date("2026-01-01") }),
        (
            "2026-01-01 A\n# c\n2026-01-01 B",
            C::DuplicateHoliday { line: 3, date: date("2026-01-01"), first_line: 1 },
        ),
        (
            "zone CET",
            C::BadDirective { line: 1, directive: "zone", found: "CET".into(), expected: "WIB, WITA or WIT" },
        ),
        ("zone WIB\nzone WITA", C::DuplicateDirective { line: 2, directive: "zone", first_line: 1 }),
        ("year 2026\nyear 2026", C::DuplicateDirective { line: 2, directive: "year", first_line: 1 }),
        (
            "weekend sat\n\nweekend sun",
            C::DuplicateDirective { line: 3, directive: "weekend", first_line: 1 },
        ),
        (
            "year 26x",
            C::BadDirective { line: 1, directive: "year", found: "26x".into(), expected: "a year 1..=9999" },
        ),
        ("year 2026\n2027-01-01 X", C::OutsideYear { line: 2, date: date("2027-01-01"), year: 2026 }),
        ("\n2027-01-01 X\nyear 2026", C::OutsideYear { line: 2, date: date("2027-01-01"), year: 2026 }),
        (
            "weekend mon tue wed thu fri sat sun",
            C::BadDirective {
                line: 1,
                directive: "weekend",
                found: "mon tue wed thu fri sat sun".into(),
                expected: "at least one working weekday",
            },
        ),
        (
            "weekend caturday",
            C::BadDirective {
                line: 1,
                directive: "weekend",
                found: "caturday".into(),
                expected: "weekday names such as sat sun",
            },
        ),
        (
            "weekend   # none",
            C::BadDirective {
                line: 1,
                directive: "weekend",
                found: "".into(),
                expected: "weekday names such as sat sun",
            },
        ),
        ("holiday 2026-01-01 X", C::UnknownLine { line: 1, found: "holiday".into() }),
        ("ok\u{7}", C::ControlCharacter { line: 1 }),
    ];
    for (text, want) in cases {
        assert_eq!(parse(text), Err(want), "{text:?}");
    }
    let long = format!("# ok\n2026-01-01 {}", "x".repeat(CALENDAR_LINE_BYTES_MAX));
    assert_eq!(parse(&long), Err(C::LineTooLong { line: 2 }));
    let big = "#\n".repeat(CALENDAR_TEXT_BYTES_MAX / 2 + 1);
    assert_eq!(parse(&big), Err(C::TooLarge { bytes: big.len() }));
    // Every error message names its line.
    let e = parse("zone WIB\nzone WITA").unwrap_err();
    assert!(e.to_string().starts_with("line 2:"), "{e}");
}

#[test]
fn files_of_one_region_merge_by_year() {
    let mut set = CalendarSet::new();
    set.insert_text(region(1771), "year 2026\nzone WIB\nweekend sat sun\n2026-01-01 Tahun Baru").unwrap();
    set.insert_text(region(1771), "year 2027\n2027-01-01 Tahun Baru").unwrap();
    let cal = set.get(region(1771)).unwrap();
    assert_eq!(cal.years().collect::<Vec<_>>(), [2026, 2027]);
    assert_eq!(cal.holidays().count(), 2);
    assert_eq!(set.regions().collect::<Vec<_>>(), [region(1771)]);

    let before = set.clone();
    let overlap = set.insert_text(region(1771), "year 2027\n2027-05-01 Hari Buruh");
    assert!(matches!(overlap, Err(CalendarError::Overlap { .. })), "{overlap:?}");
    let same_day = set.insert_text(region(1771), "2026-01-01 Tahun Baru lagi");
    assert!(matches!(same_day, Err(CalendarError::Overlap { .. })), "{same_day:?}");
    let zone = set.insert_text(region(1771), "year 2028\nzone WIT");
    assert!(matches!(zone, Err(CalendarError::ZoneConflict { .. })), "{zone:?}");
    let weekend = set.insert_text(region(1771), "year 2028\nweekend sun");
    assert!(matches!(weekend, Err(CalendarError::WeekendConflict { .. })), "{weekend:?}");
    assert_eq!(set, before, "a refused file leaves the set unchanged");

    let mut cal = Calendar::parse(region(1771), "").unwrap();
    let other = Calendar::parse(region(1705), "").unwrap();
    assert!(matches!(cal.merge(other), Err(CalendarError::RegionMismatch { .. })));
}

#[test]
fn the_shipped_calendar_files_parse_and_hold_the_2026_holidays() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/calendars");
    let mut set = CalendarSet::new();
    let mut files = 0;
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let code = RegionCode::parse(dir.file_name().unwrap().to_str().unwrap()).unwrap();
        for file in std::fs::read_dir(&dir).unwrap() {
            let file = file.unwrap().path();
            let text = std::fs::read_to_string(&file).unwrap();
            let cal = Calendar::parse(code, &text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let year: i32 = file.file_stem().unwrap().to_str().unwrap().parse().unwrap();
            if year == 2027 {
                // Only the fixed and computed holidays until the SKB 2027 is
                // checked: the file must not claim the whole year.
                assert_eq!(cal.years().count(), 0, "{} claims a year it does not complete", file.display());
                assert_eq!(cal.holidays().filter(|(d, _)| d.year() == 2027).count(), 8, "{}", file.display());
            } else {
                assert_eq!(cal.years().collect::<Vec<_>>(), [year], "{} declares its year", file.display());
            }
            set.insert(cal).unwrap();
            files += 1;
        }
    }
    assert!(files >= 3, "found {files} calendar files");
    for code in [1771, 1707, 1705] {
        let cal = set.get(region(code)).unwrap_or_else(|| panic!("no calendar for {code}"));
        assert_eq!(cal.zone(), Zone::Wib);
        // 17 national holidays and 8 cuti bersama per the SKB 3 Menteri for 2026.
        assert_eq!(cal.holidays().filter(|(d, _)| d.year() == 2026).count(), 25);
        assert!(cal.holidays().all(|(_, name)| !name.is_empty()));
        for (d, weekday) in [
            ("2026-01-01", Weekday::Thursday),
            ("2026-03-20", Weekday::Friday),
            ("2026-03-24", Weekday::Tuesday),
            ("2026-08-17", Weekday::Monday),
            ("2026-12-25", Weekday::Friday),
        ] {
            assert_eq!(date(d).weekday(), weekday);
            assert!(!cal.is_working_day(date(d)), "{code}: {d}");
        }
    }
    // Lebaran 2026 in Bengkulu: filed on Tuesday 2026-03-17, a 3-day standard
    // skips Nyepi and its cuti bersama (18, 19), Idulfitri's cuti bersama
    // (20, 23, 24) and the weekend, and runs Wednesday 25 to Friday 27 March.
    let w = given_standard(3, false).event(1, "A", E::ApplicationFiled, wib("2026-03-17 10:00"));
    let v = w.sla(&set, 1, "A", wib("2026-03-17 11:00"));
    assert_eq!(v.due_date, Some(date("2026-03-27")));
    assert!(v.calendar_covers_period);
    // Into 2027: Good Friday (26 March 2027, computed from Easter) is a day
    // off, but the year's list is not complete, so the caveat stays.
    let w = given_standard(3, false).event(1, "A", E::ApplicationFiled, wib("2027-03-24 10:00"));
    let v = w.sla(&set, 1, "A", wib("2027-03-24 11:00"));
    assert_eq!(v.due_date, Some(date("2027-03-30")), "Thursday 25, Monday 29, Tuesday 30");
    assert!(!v.calendar_covers_period);
}
