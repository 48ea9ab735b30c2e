//! `personal_data_read`: the case's opener records that an authenticated
//! client read the citizen's sealed personal data. The case keeps the newest
//! reads (its access history); nobody but the opener may say it, and only
//! of data sealed and not erased. Given/when/then.

mod common;

use common::*;
use mpp_core::event::{EventBody, EventKind};
use mpp_core::limits::{PERSONAL_DATA_READS_KEPT, PERSONAL_DATA_READ_FROM_MS};
use mpp_core::reason::ReasonCode;

const FRONT: &str = "mpp-1771";
const LOKET: &str = "loket";

fn opened(case: u64) -> mpp_core::UncheckedEnvelope {
    envelope(FRONT, LOKET, Some(case), None, body(EventKind::CaseOpened))
}

fn sealed(case: u64) -> mpp_core::UncheckedEnvelope {
    envelope(FRONT, LOKET, Some(case), None, body(EventKind::PersonalDataSealed))
}

fn read_by(agency: &str, service: &str, case: u64, client_id: &str) -> mpp_core::UncheckedEnvelope {
    envelope(agency, service, Some(case), None, EventBody::PersonalDataRead { client_id: client_id.into() })
}

#[test]
fn the_opener_records_reads_and_the_case_keeps_the_newest() {
    let s = given_at(PERSONAL_DATA_READ_FROM_MS, [opened(1), sealed(1)]);
    let s = s.when(read_by(FRONT, LOKET, 1, "loket-desk-3")).then_expect(Ok(()));
    let c = s.case(1);
    assert_eq!(c.personal_data_reads.len(), 1);
    assert_eq!(
        (c.personal_data_reads[0].seq, c.personal_data_reads[0].client_id.as_str()),
        (3, "loket-desk-3")
    );
    assert!(c.personal_data_reads[0].at_ms >= PERSONAL_DATA_READ_FROM_MS);
    assert_eq!(c.entry_seqs(), vec![1, 2, 3], "the read is in the case's entries");
    assert_eq!(c.last_seq, 3);
    let without = mpp_core::Case { personal_data_reads: Vec::new(), ..c.clone() };
    assert_eq!(
        c.size_bytes(),
        without.size_bytes() + mpp_core::case::PERSONAL_DATA_READ_FIXED_BYTES + 8 + "loket-desk-3".len()
    );
    // Many more reads: only the newest are kept, so the case's size is
    // bounded however often its data is read.
    let mut s = s;
    let extra = PERSONAL_DATA_READS_KEPT as u64 + 5;
    for n in 0..extra {
        s = s.when(read_by(FRONT, LOKET, 1, &format!("desk-{n}"))).then_expect(Ok(()));
    }
    let c = s.case(1);
    assert_eq!(c.personal_data_reads.len(), PERSONAL_DATA_READS_KEPT);
    let seqs: Vec<u64> = c.personal_data_reads.iter().map(|r| r.seq).collect();
    let last = 3 + extra;
    assert_eq!(seqs, ((last + 1 - PERSONAL_DATA_READS_KEPT as u64)..=last).collect::<Vec<_>>());
    assert_eq!(c.personal_data_reads.last().unwrap().client_id, format!("desk-{}", extra - 1));
}

#[test]
fn only_the_opener_of_sealed_data_may_record_a_read() {
    let s = given_at(PERSONAL_DATA_READ_FROM_MS, [opened(1), opened(2), sealed(1)]);
    let s = s.when(read_by("dukcapil", "kk", 1, "loket-desk-3")).then_expect(Err(ReasonCode::NotCaseOpener));
    let s = s.when(read_by(FRONT, LOKET, 3, "loket-desk-3")).then_expect(Err(ReasonCode::UnknownCase));
    // Case 2 has no sealed data.
    let s = s.when(read_by(FRONT, LOKET, 2, "loket-desk-3")).then_expect(Err(ReasonCode::UnknownDataKey));
    // Client ids as the tokens files write them.
    let s = s.when(read_by(FRONT, LOKET, 1, "")).then_expect(Err(ReasonCode::InvalidFieldValue));
    let s = s.when(read_by(FRONT, LOKET, 1, "desk 3")).then_expect(Err(ReasonCode::InvalidFieldValue));
    let s = s.when(read_by(FRONT, LOKET, 1, &"a".repeat(65))).then_expect(Err(ReasonCode::InvalidFieldValue));
    assert!(s.case(1).personal_data_reads.is_empty(), "no refused read was recorded");
    // After erasure there is nothing left to read.
    let s = s
        .when(envelope(FRONT, LOKET, Some(1), None, body(EventKind::PersonalDataErased)))
        .then_expect(Ok(()));
    let s = s.when(read_by(FRONT, LOKET, 1, "loket-desk-3")).then_expect(Err(ReasonCode::PersonalDataErased));
    assert!(s.case(1).personal_data_reads.is_empty());
}

#[test]
fn before_personal_data_read_existed_its_field_was_no_body() {
    let s = given_at(PERSONAL_DATA_READ_FROM_MS - 60_000, [opened(1), sealed(1)]);
    let s = s.when(read_by(FRONT, LOKET, 1, "loket-desk-3")).then_expect(Err(ReasonCode::MissingBody));
    assert!(s.case(1).personal_data_reads.is_empty());
}
