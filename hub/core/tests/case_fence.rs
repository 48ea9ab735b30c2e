//! Who may do what to a case once the participant registry is in force
//! (issue 15 item 3), given / when / then over the core alone.

mod common;

use common::*;
use mpp_core::event::{EventKind, UncheckedEnvelope};
use mpp_core::limits::{
    HELD_APPLICATIONS_PER_PARTICIPANT_MAX, HELD_APPLICATION_ISSUE_SKEW_MS_MAX, HELD_APPLICATION_WINDOW_MS,
};
use mpp_core::reason::ReasonCode;
use mpp_core::registry::ParticipantKind;
use mpp_core::state::AppState;

const FRONT_OFFICE: &str = "mpp-1771";
const ATTACKER: &str = "evil";
const MINUTE_MS: i64 = 60_000;

/// The front office, Dukcapil and another agency registered, each agency
/// with its standard published.
fn registered() -> Scenario {
    let mut s = given([]);
    s.state.registry = registry_of(&[
        (FRONT_OFFICE, ParticipantKind::FrontOffice),
        (AGENCY, ParticipantKind::Agency),
        (ATTACKER, ParticipantKind::Agency),
    ]);
    s.submitted = s.state.registry.participants.len() as u64;
    for agency in [AGENCY, ATTACKER] {
        s.submit(&standard_of(agency, SERVICE, 1)).expect("standard");
    }
    s
}

/// The time of record the scenario's next entry gets.
fn next_record_ms(s: &Scenario) -> i64 {
    s.start_ms + ENTRY_GAP_MS * (s.submitted as i64 + 1)
}

/// The front office's opening of `case`, saying it issued the number at
/// `issued_ms`.
fn opening_issued_at(case: u64, issued_ms: i64) -> UncheckedEnvelope {
    let mut u = open_by(FRONT_OFFICE, case);
    u.occurred_at_ms = issued_ms;
    u
}

fn filing_by(agency: &str, case: u64, app: &str) -> UncheckedEnvelope {
    app_event_by(agency, SERVICE, case, app, EventKind::ApplicationFiled)
}

fn visible(s: &Scenario, case: u64) -> Vec<String> {
    s.case(case).visible_applications().map(|a| format!("{}/{}", a.agency, a.id)).collect()
}

fn open_by(participant: &str, case: u64) -> mpp_core::event::UncheckedEnvelope {
    envelope(participant, SERVICE, Some(case), None, body(EventKind::CaseOpened))
}

#[test]
fn an_agency_cannot_open_a_case_once_the_registry_is_in_force() {
    registered().when(open_by(AGENCY, 1)).then_expect(Err(ReasonCode::NotAFrontOffice));
}

#[test]
fn a_registered_front_office_opens_a_case() {
    let s = registered().when(open_by(FRONT_OFFICE, 1)).then_expect(Ok(()));
    assert_eq!(s.case(1).opened_by.as_str(), FRONT_OFFICE);
}

#[test]
fn an_agency_cannot_take_over_the_number_the_front_office_opened() {
    registered()
        .when(open_by(FRONT_OFFICE, 1))
        .then_expect(Ok(()))
        .when(open_by(AGENCY, 1))
        .then_expect(Err(ReasonCode::NotAFrontOffice));
}

#[test]
fn before_the_registry_any_agency_opens_cases_as_it_did() {
    let s = given([]).when(open_by(AGENCY, 1)).then_expect(Ok(()));
    assert_eq!(s.case(1).opened_by.as_str(), AGENCY);
}

#[test]
fn a_filing_that_outruns_the_opening_is_held_then_surfaces() {
    // Given: the front office issued number 1 a minute ago; its opening is
    // still in its outbox when Dukcapil's filing reaches the hub.
    let mut s = registered();
    let issued_ms = next_record_ms(&s) - MINUTE_MS;
    let s2 = s.clone().when(filing_by(AGENCY, 1, "KK-1")).then_expect(Ok(()));
    assert!(s2.case(1).is_shell(), "held out of sight");
    assert_eq!(s2.state.registry.holds.len(), 1);
    s = s2;
    // When: the opening arrives.
    let s = s.when(opening_issued_at(1, issued_ms)).then_expect(Ok(()));
    // Then: the application is in the case, no hold is left, nothing noted.
    assert_eq!(visible(&s, 1), ["dukcapil/KK-1"]);
    assert!(s.state.registry.holds.is_empty());
    assert_eq!(s.last_note, None);
}

#[test]
fn a_filing_into_a_number_not_yet_issued_never_reaches_the_citizen() {
    // Given: an agency files into the number the counter will issue next.
    let s = registered().when(filing_by(ATTACKER, 1, "EVIL-2")).then_expect(Ok(()));
    // When: the front office issues that number two minutes later, then
    // Dukcapil files for the citizen.
    let issued_ms = next_record_ms(&s) + 2 * MINUTE_MS;
    let mut s = s.when(opening_issued_at(1, issued_ms)).then_expect(Ok(()));
    let note = s.last_note.clone().expect("the opening notes the dropped filing");
    assert_eq!(note.code, ReasonCode::HeldApplicationPredatesOpening);
    s.start_ms += 3 * MINUTE_MS;
    let s = s.when(filing_by(AGENCY, 1, "KK-1")).then_expect(Ok(()));
    // Then: the citizen's case shows Dukcapil's application only; the
    // attacker's is dropped, and the attacker can no longer move it.
    assert_eq!(visible(&s, 1), ["dukcapil/KK-1"]);
    assert_eq!(s.app_state(1, "EVIL-2"), AppState::Dropped);
    assert_eq!(s.case(1).status(), mpp_core::case::CaseStatus::InProgress);
    s.when(app_event_by(ATTACKER, SERVICE, 1, "EVIL-2", EventKind::FeeAssessed))
        .then_expect(Err(ReasonCode::IllegalTransition));
}

#[test]
fn the_clock_skew_allowance_is_honoured_and_no_more() {
    let s = registered().when(filing_by(AGENCY, 1, "KK-1")).then_expect(Ok(()));
    let filed_ms = next_record_ms(&s) - ENTRY_GAP_MS;
    let s = s.when(filing_by(ATTACKER, 1, "EVIL-2")).then_expect(Ok(()));
    // The front office says it issued the number the allowance and one
    // millisecond after the first filing was recorded: the first filing is
    // one millisecond too early, the second (a gap later) is in time.
    let s =
        s.when(opening_issued_at(1, filed_ms + HELD_APPLICATION_ISSUE_SKEW_MS_MAX + 1)).then_expect(Ok(()));
    assert_eq!(visible(&s, 1), [format!("{ATTACKER}/EVIL-2")]);
    assert_eq!(s.app_state(1, "KK-1"), AppState::Dropped);
}

#[test]
fn a_case_opened_after_the_window_drops_its_held_applications_with_the_code() {
    let mut s = registered().when(filing_by(AGENCY, 1, "KK-1")).then_expect(Ok(()));
    let filed_ms = next_record_ms(&s) - ENTRY_GAP_MS;
    s.start_ms += HELD_APPLICATION_WINDOW_MS;
    let s = s.when(opening_issued_at(1, filed_ms)).then_expect(Ok(()));
    let note = s.last_note.clone().expect("the late opening notes the expiry");
    assert_eq!(note.code, ReasonCode::HeldApplicationExpired);
    assert!(note.detail.contains(&format!("{} HELD_APPLICATION_EXPIRED", s.submitted - 1)), "{note:?}");
    assert!(visible(&s, 1).is_empty());
    assert!(s.state.registry.holds.is_empty());
}

#[test]
fn held_applications_are_bounded_per_participant_and_expire_to_make_room() {
    // Given: the attacker holds its whole share, in as many unopened numbers.
    let mut s = registered();
    let first_seq = s.submitted + 1;
    for n in 0..HELD_APPLICATIONS_PER_PARTICIPANT_MAX as u64 {
        s.submit(&filing_by(ATTACKER, 100 + n, "EVIL")).expect("held");
    }
    // When: it files into one more, then Dukcapil files into one.
    let s = s.when(filing_by(ATTACKER, 1, "EVIL")).then_expect(Err(ReasonCode::HeldApplicationsFull));
    let mut s = s.when(filing_by(AGENCY, 2, "KK-1")).then_expect(Ok(()));
    // Then: the share holds another participant's filing; once the window
    // has passed, the next filing expires the old holds and notes it.
    assert_eq!(s.state.registry.holds.len(), HELD_APPLICATIONS_PER_PARTICIPANT_MAX + 1);
    s.start_ms += HELD_APPLICATION_WINDOW_MS;
    let s = s.when(filing_by(ATTACKER, 1, "EVIL")).then_expect(Ok(()));
    let note = s.last_note.clone().expect("expiries are noted");
    assert_eq!(note.code, ReasonCode::HeldApplicationExpired);
    assert!(note.detail.contains(&format!(": {first_seq} HELD_APPLICATION_EXPIRED")), "{note:?}");
    assert_eq!(s.state.registry.holds.len(), 1);
}

#[test]
fn before_the_registry_a_filing_into_an_unopened_case_fills_in_as_it_did() {
    let s = given([standard()]).when(filing_by(AGENCY, 1, "KK-1")).then_expect(Ok(()));
    let s = s.when(open(1)).then_expect(Ok(()));
    assert_eq!(visible(&s, 1), ["dukcapil/KK-1"]);
    assert_eq!(s.last_note, None);
}
