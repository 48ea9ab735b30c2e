//! Service standards over time, given/when/then: an application is governed
//! by the standard in force when it was filed, live and in any replay of the
//! log, whatever the agency publishes later; and the hub refuses what an
//! agency service refuses to publish (a version that does not rise).
//!
//! The agency side (catalogue files, publishing a standard when its version
//! rises, refusing a change without a bump) is tested in `mpp-agency-kit`.

mod common;

use common::{
    app_event, app_id, envelope, given, open, tracking_number, Scenario, AGENCY, RECORD_MS, SERVICE,
};
use mpp_core::calendar::CalendarSet;
use mpp_core::event::{EventBody, EventKind, UncheckedEnvelope};
use mpp_core::ids::RegionCode;
use mpp_core::reason::ReasonCode;
use mpp_core::sla::sla;

/// A standard of the default agency and service.
fn standard(version: u32, days: u32, fee_idr: i64, fiktif_positif: bool) -> UncheckedEnvelope {
    envelope(
        AGENCY,
        SERVICE,
        None,
        None,
        EventBody::ServiceStandardPublished {
            name_id: format!("Kartu Keluarga (standar v{version})"),
            name_en: "Family card".to_owned(),
            completion_working_days: days,
            fee_idr,
            requirements: vec!["Formulir F-1.01".to_owned()],
            fiktif_positif,
            version,
            collection: None,
        },
    )
}

/// The log of the scenario: v1 (3 days, free), case 1 opened, A filed
/// under v1, v2 (10 days, Rp50.000, fiktif positif), B filed under v2, then
/// A moves on under v2 and is issued, and v3 (5 days) arrives last.
fn log() -> Vec<UncheckedEnvelope> {
    vec![
        standard(1, 3, 0, false),
        open(1),
        app_event(1, "A", EventKind::ApplicationFiled),
        standard(2, 10, 50_000, true),
        app_event(1, "B", EventKind::ApplicationFiled),
        app_event(1, "A", EventKind::ReviewStarted),
        app_event(1, "A", EventKind::Issued),
        standard(3, 5, 50_000, false),
    ]
}

/// The terms an application carries: (standard version, working days, fiktif positif).
fn terms(s: &Scenario, app: &str) -> (u32, u32, bool) {
    let a = s.case(1).application(&app_id(app)).expect("application is filed");
    (a.standard_version, a.sla_working_days, a.fiktif_positif)
}

#[test]
fn a_replay_keeps_the_standard_in_force_at_filing_for_an_application_filed_before_a_change() {
    let log = log();
    // Given the whole log, applied live,
    let live = given(log.clone());
    // then A keeps v1 although v2 and v3 were published while it was open,
    assert_eq!(terms(&live, "A"), (1, 3, false));
    // B has v2, under which it was filed,
    assert_eq!(terms(&live, "B"), (2, 10, true));
    // and v3 is the standard in force for the next filing.
    let in_force = live.state.standards.values().next().expect("a standard is in force");
    assert_eq!((in_force.version, in_force.completion_working_days, in_force.effective_from_seq), (3, 5, 8));
    assert_eq!(live.state.standards.len(), 1);

    // When the log is replayed from the start into an empty state,
    let replayed = given(log.clone());
    // then the state is the same, byte for byte in every field.
    assert_eq!(replayed.state, live.state);

    // A replay of the log as it was before v2 (a case "as of" that point)
    // has v1 in force and A under it, and no B.
    let before_v2 = given(log[..3].iter().cloned());
    assert_eq!(before_v2.state.standards.values().next().map(|s| s.version), Some(1));
    assert_eq!(terms(&before_v2, "A"), (1, 3, false));
    assert!(before_v2.case(1).application(&app_id("B")).is_none());
    // Replaying further does not change A's terms: they were fixed at filing.
    for end in 3..=log.len() {
        assert_eq!(terms(&given(log[..end].iter().cloned()), "A"), (1, 3, false), "after {end} entries");
    }

    // The SLA clocks follow: A is judged by v1's 3 days, without fiktif
    // positif, B by v2's 10 days with it.
    // No holidays configured: weekends only.
    let calendars = CalendarSet::new();
    let cal = calendars.calendar(RegionCode::parse("1771").unwrap());
    let case = &replayed.state.cases[&tracking_number(1)];
    let a = sla(case.application(&app_id("A")).unwrap(), &cal, RECORD_MS + 86_400_000);
    assert_eq!((a.standard_version, a.standard_working_days, a.fiktif_positif_deadline), (1, 3, None));
    assert_eq!(a.finished_on_time, Some(true), "issued the same day");
    let b = sla(case.application(&app_id("B")).unwrap(), &cal, RECORD_MS + 86_400_000);
    assert_eq!((b.standard_version, b.standard_working_days), (2, 10));
    assert!(b.fiktif_positif_deadline.is_some());
    assert_eq!(b.fiktif_positif_deadline, b.due_date);
}

#[test]
fn a_version_that_does_not_rise_is_refused_and_changes_nothing() {
    // Given v1 and v2 in force,
    let s = given([standard(1, 3, 0, false), standard(2, 10, 50_000, true)]);
    // when v2 is published again with other content (what an agency that
    // forgot to bump its version would send), the hub refuses it,
    let s = s.when(standard(2, 7, 0, false)).then_expect(Err(ReasonCode::StaleStandardVersion));
    // and the same for an older version (what an agency lowering its
    // version would send),
    let s = s.when(standard(1, 3, 0, false)).then_expect(Err(ReasonCode::StaleStandardVersion));
    // so v2 stays in force, unchanged.
    let v2 = s.state.standards.values().next().unwrap();
    assert_eq!(
        (v2.version, v2.completion_working_days, v2.fee_idr, v2.fiktif_positif),
        (2, 10, 50_000, true)
    );
    // A higher version is accepted.
    let s = s.when(standard(3, 7, 0, false)).then_expect(Ok(()));
    assert_eq!(s.state.standards.values().next().map(|s| s.version), Some(3));
}
