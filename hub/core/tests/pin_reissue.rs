//! `pin_reissued`: the case's opener replaces the PIN verifier (the old PIN
//! stops working, the guessing budgets start afresh); nobody else may, and
//! not before the case is open. Given/when/then.

mod common;

use common::*;
use mpp_core::event::{EventBody, EventKind};
use mpp_core::reason::ReasonCode;

const FRONT: &str = "mpp-1771";
const LOKET: &str = "loket";

fn opened(case: u64) -> mpp_core::UncheckedEnvelope {
    envelope(FRONT, LOKET, Some(case), None, body(EventKind::CaseOpened))
}

fn reissued_by(agency: &str, service: &str, case: u64, verifier: Vec<u8>) -> mpp_core::UncheckedEnvelope {
    envelope(agency, service, Some(case), None, EventBody::PinReissued { pin_verifier: verifier })
}

#[test]
fn the_opener_replaces_the_verifier() {
    let s = given([opened(1)]);
    let before = s.case(1).pin_verifier.clone();
    let s = s.when(reissued_by(FRONT, LOKET, 1, vec![2; 33])).then_expect(Ok(()));
    assert_ne!(s.case(1).pin_verifier, before);
    assert_eq!(s.case(1).pin_verifier, vec![2; 33]);
    assert_eq!(s.case(1).last_seq, 2);
    // Again: each re-issue replaces the last.
    let s = s.when(reissued_by(FRONT, LOKET, 1, vec![5; 33])).then_expect(Ok(()));
    assert_eq!(s.case(1).pin_verifier, vec![5; 33]);
}

#[test]
fn only_the_opener_of_an_open_case_may_reissue_and_the_verifier_is_checked() {
    let s = given([opened(1)]);
    let before = s.case(1).pin_verifier.clone();
    let s = s.when(reissued_by("dukcapil", "kk", 1, vec![2; 33])).then_expect(Err(ReasonCode::NotCaseOpener));
    let s = s.when(reissued_by(FRONT, LOKET, 2, vec![2; 33])).then_expect(Err(ReasonCode::UnknownCase));
    let s = s.when(reissued_by(FRONT, LOKET, 1, vec![])).then_expect(Err(ReasonCode::InvalidFieldValue));
    let s = s.when(reissued_by(FRONT, LOKET, 1, vec![2; 65])).then_expect(Err(ReasonCode::FieldTooLong));
    assert_eq!(s.case(1).pin_verifier, before, "no refused re-issue changed the PIN");
}
