//! `pin_reissued`: the case's opener replaces the PIN verifier (the old PIN
//! stops working, the guessing budgets start afresh); nobody else may, and
//! not before the case is open. Given/when/then.

mod common;

use common::*;
use mpp_core::event::{EventBody, EventKind};
use mpp_core::limits::PIN_REISSUE_FROM_MS;
use mpp_core::reason::ReasonCode;
use mpp_core::PinReissue;

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
    let s = given_at(PIN_REISSUE_FROM_MS, [opened(1)]);
    let before = s.case(1).pin_verifier.clone();
    let s = s.when(reissued_by(FRONT, LOKET, 1, vec![2; 33])).then_expect(Ok(()));
    assert_ne!(s.case(1).pin_verifier, before);
    assert_eq!(s.case(1).pin_verifier, vec![2; 33]);
    assert_eq!(s.case(1).last_seq, 2);
    // Again: each re-issue replaces the last.
    let s = s.when(reissued_by(FRONT, LOKET, 1, vec![5; 33])).then_expect(Ok(()));
    assert_eq!(s.case(1).pin_verifier, vec![5; 33]);
    // Each re-issue stays in the case: in its entries (so `case-at` folds
    // them) and its access history, and counted in its size.
    let c = s.case(1);
    assert_eq!(c.entry_seqs(), vec![1, 2, 3]);
    assert_eq!(c.pin_reissues.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2, 3]);
    assert!(c.pin_reissues.iter().all(|r: &PinReissue| r.at_ms > PIN_REISSUE_FROM_MS));
    let without = mpp_core::Case { pin_reissues: Vec::new(), ..c.clone() };
    assert_eq!(c.size_bytes(), without.size_bytes() + 2 * mpp_core::case::PIN_REISSUE_FIXED_BYTES);
}

#[test]
fn before_pin_reissued_existed_its_field_was_no_body() {
    // A hub before PIN_REISSUE_FROM_MS did not know field 35: an old log's
    // entry is judged again as it was then.
    let s = given_at(PIN_REISSUE_FROM_MS - 60_000, [opened(1)]);
    let before = s.case(1).pin_verifier.clone();
    let s = s.when(reissued_by(FRONT, LOKET, 1, vec![2; 33])).then_expect(Err(ReasonCode::MissingBody));
    assert_eq!(s.case(1).pin_verifier, before);
    assert!(s.case(1).pin_reissues.is_empty());
}

#[test]
fn only_the_opener_of_an_open_case_may_reissue_and_the_verifier_is_checked() {
    let s = given_at(PIN_REISSUE_FROM_MS, [opened(1)]);
    let before = s.case(1).pin_verifier.clone();
    let s = s.when(reissued_by("dukcapil", "kk", 1, vec![2; 33])).then_expect(Err(ReasonCode::NotCaseOpener));
    let s = s.when(reissued_by(FRONT, LOKET, 2, vec![2; 33])).then_expect(Err(ReasonCode::UnknownCase));
    let s = s.when(reissued_by(FRONT, LOKET, 1, vec![])).then_expect(Err(ReasonCode::InvalidFieldValue));
    let s = s.when(reissued_by(FRONT, LOKET, 1, vec![2; 65])).then_expect(Err(ReasonCode::FieldTooLong));
    assert_eq!(s.case(1).pin_verifier, before, "no refused re-issue changed the PIN");
}
