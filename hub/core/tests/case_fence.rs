//! Who may do what to a case once the participant registry is in force
//! (issue 15 item 3), given / when / then over the core alone.

mod common;

use common::*;
use mpp_core::event::EventKind;
use mpp_core::reason::ReasonCode;
use mpp_core::registry::ParticipantKind;

const FRONT_OFFICE: &str = "mpp-1771";

/// The front office and Dukcapil registered; nothing in the log yet.
fn registered() -> Scenario {
    let mut s = given([]);
    s.state.registry =
        registry_of(&[(FRONT_OFFICE, ParticipantKind::FrontOffice), (AGENCY, ParticipantKind::Agency)]);
    s.submitted = s.state.registry.participants.len() as u64;
    s
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
