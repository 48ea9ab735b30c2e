//! The personal-data events (`personal_data_sealed`, `personal_data_erased`;
//! docs/PRIVACY.md): validation of their fields, the decisions (who may seal
//! and erase, once each) and the projection's `personal_data` state, in
//! given/when/then form.

mod common;

use common::*;
use mpp_core::case::PersonalData;
use mpp_core::event::{EventBody, EventKind};
use mpp_core::reason::ReasonCode;

/// The front office that opens the cases of these tests.
const FRONT: &str = "mpp-1771";
const LOKET: &str = "loket";

fn key(n: u8) -> Vec<u8> {
    vec![n; 16]
}

fn opened(case: u64) -> mpp_core::UncheckedEnvelope {
    envelope(FRONT, LOKET, Some(case), None, body(EventKind::CaseOpened))
}

fn sealed_by(agency: &str, service: &str, case: u64, key_id: Vec<u8>) -> mpp_core::UncheckedEnvelope {
    envelope(
        agency,
        service,
        Some(case),
        None,
        EventBody::PersonalDataSealed { key_id, nonce: vec![3; 12], ciphertext: vec![4; 64] },
    )
}

fn sealed(case: u64, key_id: Vec<u8>) -> mpp_core::UncheckedEnvelope {
    sealed_by(FRONT, LOKET, case, key_id)
}

fn erased_by(agency: &str, service: &str, case: u64, key_id: Vec<u8>) -> mpp_core::UncheckedEnvelope {
    envelope(agency, service, Some(case), None, EventBody::PersonalDataErased { key_id })
}

fn erased(case: u64, key_id: Vec<u8>) -> mpp_core::UncheckedEnvelope {
    erased_by(FRONT, LOKET, case, key_id)
}

#[test]
fn a_case_is_sealed_then_erased_and_the_projection_says_so() {
    let s = given([opened(1)]);
    assert_eq!(s.case(1).personal_data, PersonalData::None);
    assert_eq!(s.case(1).personal_data.as_str(), "none");
    let s = s.when(sealed(1, key(1))).then_expect(Ok(()));
    assert_eq!(s.case(1).personal_data, PersonalData::Sealed { key_id: key(1), sealed_seq: 2 });
    assert_eq!(s.case(1).personal_data.as_str(), "sealed");
    assert_eq!(s.case(1).last_seq, 2);
    assert_eq!(s.case(1).entry_seqs(), vec![1, 2], "the sealing is in the case's entries");
    let s = s.when(erased(1, key(1))).then_expect(Ok(()));
    assert_eq!(
        s.case(1).personal_data,
        PersonalData::Erased { key_id: key(1), sealed_seq: 2, erased_seq: 3 }
    );
    assert_eq!(s.case(1).personal_data.as_str(), "erased");
    assert_eq!(s.case(1).entry_seqs(), vec![1, 2, 3]);
    assert_eq!(s.case(1).last_seq, 3);
}

#[test]
fn erasure_is_final_and_once() {
    let s = given([opened(1), sealed(1, key(1)), erased(1, key(1))]);
    let s = s.when(erased(1, key(1))).then_expect(Err(ReasonCode::PersonalDataErased));
    let _ = s.when(sealed(1, key(2))).then_expect(Err(ReasonCode::PersonalDataErased));
}

#[test]
fn only_the_opener_may_seal_or_erase() {
    let s = given([standard(), opened(1)]);
    let s = s.when(sealed_by(AGENCY, SERVICE, 1, key(1))).then_expect(Err(ReasonCode::NotCaseOpener));
    let s = s.when(sealed(1, key(1))).then_expect(Ok(()));
    let _ = s.when(erased_by(AGENCY, SERVICE, 1, key(1))).then_expect(Err(ReasonCode::NotCaseOpener));
}

#[test]
fn a_case_is_sealed_once_and_erased_only_under_its_key() {
    let s = given([opened(1)]);
    let s = s.when(erased(1, key(1))).then_expect(Err(ReasonCode::UnknownDataKey));
    let s = s.when(sealed(1, key(1))).then_expect(Ok(()));
    let s = s.when(sealed(1, key(1))).then_expect(Err(ReasonCode::PersonalDataAlreadySealed));
    let s = s.when(erased(1, key(2))).then_expect(Err(ReasonCode::UnknownDataKey));
    let _ = s.when(erased(1, key(1))).then_expect(Ok(()));
}

#[test]
fn unknown_cases_and_shells_cannot_be_sealed_or_erased() {
    let s = given([standard()]);
    let s = s.when(sealed(1, key(1))).then_expect(Err(ReasonCode::UnknownCase));
    let _ = s.when(erased(1, key(1))).then_expect(Err(ReasonCode::UnknownCase));
    // A shell: an application filed before the case was opened.
    let s = given(s_events()).when(sealed(2, key(1))).then_expect(Err(ReasonCode::UnknownCase));
    assert!(s.case(2).is_shell());
    assert_eq!(s.case(2).personal_data, PersonalData::None);
}

fn s_events() -> Vec<mpp_core::UncheckedEnvelope> {
    vec![standard(), app_event(2, "A-1", EventKind::ApplicationFiled)]
}

#[test]
fn fields_are_validated() {
    let cases: Vec<(EventBody, ReasonCode)> = vec![
        (EventBody::PersonalDataErased { key_id: vec![1; 15] }, ReasonCode::InvalidFieldValue),
        (EventBody::PersonalDataErased { key_id: vec![1; 17] }, ReasonCode::InvalidFieldValue),
        (EventBody::PersonalDataErased { key_id: vec![] }, ReasonCode::InvalidFieldValue),
        (
            EventBody::PersonalDataSealed { key_id: key(1), nonce: vec![0; 11], ciphertext: vec![0; 32] },
            ReasonCode::InvalidFieldValue,
        ),
        (
            EventBody::PersonalDataSealed { key_id: vec![1; 8], nonce: vec![0; 12], ciphertext: vec![0; 32] },
            ReasonCode::InvalidFieldValue,
        ),
        (
            EventBody::PersonalDataSealed { key_id: key(1), nonce: vec![0; 12], ciphertext: vec![0; 15] },
            ReasonCode::InvalidFieldValue,
        ),
        (
            EventBody::PersonalDataSealed {
                key_id: key(1),
                nonce: vec![0; 12],
                ciphertext: vec![0; mpp_core::limits::SEALED_CIPHERTEXT_BYTES_MAX + 1],
            },
            ReasonCode::FieldTooLong,
        ),
    ];
    for (b, code) in cases {
        let s = given([opened(1)]);
        let _ = s.when(envelope(FRONT, LOKET, Some(1), None, b)).then_expect(Err(code));
    }
    // At the limit it is accepted.
    let big = EventBody::PersonalDataSealed {
        key_id: key(1),
        nonce: vec![0; 12],
        ciphertext: vec![0; mpp_core::limits::SEALED_CIPHERTEXT_BYTES_MAX],
    };
    let _ = given([opened(1)]).when(envelope(FRONT, LOKET, Some(1), None, big)).then_expect(Ok(()));
    // Case-level: an application id is refused, so is a missing case id.
    let mut with_app = sealed(1, key(1));
    with_app.application_id = "A-1".to_owned();
    let _ = given([opened(1)]).when(with_app).then_expect(Err(ReasonCode::InvalidFieldValue));
    let mut no_case = erased(1, key(1));
    no_case.case_id = String::new();
    let _ = given([opened(1)]).when(no_case).then_expect(Err(ReasonCode::MalformedTrackingNumber));
}

#[test]
fn the_new_kinds_are_case_events() {
    for k in [EventKind::PersonalDataSealed, EventKind::PersonalDataErased, EventKind::CaseOpened] {
        assert!(k.is_case_event(), "{k:?}");
        assert!(!k.is_application_event(), "{k:?}");
        assert_eq!(EventKind::from_name(k.as_str()), Some(k));
    }
    assert!(!EventKind::ServiceStandardPublished.is_case_event());
    assert!(!EventKind::ServiceStandardPublished.is_application_event());
    assert!(EventKind::Issued.is_application_event());
}
