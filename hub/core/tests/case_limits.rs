//! Given/when/then tests of the limits on one case's size and on one
//! agency's share of it (applications and bytes), and of their start: they
//! apply to entries recorded from `limits::CASE_SIZE_RULES_FROM_MS`, so a log
//! written before is judged again exactly as it was.

mod common;

use common::*;
use mpp_core::event::{EventBody, EventKind as E, UncheckedEnvelope};
use mpp_core::limits;
use mpp_core::reason::ReasonCode as R;

/// A time of record after the size rules took effect.
const AFTER_MS: i64 = limits::CASE_SIZE_RULES_FROM_MS;

/// Agencies of the tests, each with a standard for [`SERVICE`].
const AGENCIES: [&str; 5] = ["dukcapil", "imigrasi", "bpn", "pln", "pdam"];

/// A text of the longest length a field may have.
fn longest(c: char) -> String {
    std::iter::repeat_n(c, limits::TEXT_BYTES_MAX).collect()
}

/// The largest legal list of documents.
fn most_documents() -> Vec<String> {
    (0..limits::LIST_ITEMS_MAX).map(|i| longest(char::from(b'a' + (i % 26) as u8))).collect()
}

/// A `documents_requested` of the largest legal size, by `agency`.
fn big_request(agency: &str, case: u64, app: &str) -> UncheckedEnvelope {
    envelope(
        agency,
        SERVICE,
        Some(case),
        Some(app),
        EventBody::DocumentsRequested {
            documents: most_documents(),
            counter: longest('c'),
            note: longest('n'),
        },
    )
}

/// A `documents_received` of the largest legal size, by `agency`.
fn big_receipt(agency: &str, case: u64, app: &str) -> UncheckedEnvelope {
    envelope(
        agency,
        SERVICE,
        Some(case),
        Some(app),
        EventBody::DocumentsReceived { documents: most_documents() },
    )
}

/// A `rejected` with the longest code and reason (the largest finishing
/// event), by `agency`.
fn big_rejection(agency: &str, case: u64, app: &str) -> UncheckedEnvelope {
    envelope(
        agency,
        SERVICE,
        Some(case),
        Some(app),
        EventBody::Rejected { reason_code: longest('r'), reason: longest('w') },
    )
}

/// Standards for every agency of [`AGENCIES`], then case 1 opened, recorded
/// from `start_ms`.
fn case_at(start_ms: i64) -> Scenario {
    let standards = AGENCIES.iter().map(|a| standard_of(a, SERVICE, 1));
    given_at(start_ms, standards.chain([open(1)]))
}

#[test]
fn one_agency_files_at_most_its_share_of_applications_and_others_still_file() {
    let mut s = case_at(AFTER_MS);
    for i in 0..limits::APPLICATIONS_PER_AGENCY_PER_CASE_MAX {
        s = s
            .when(app_event_by("dukcapil", SERVICE, 1, &format!("d-{i}"), E::ApplicationFiled))
            .then_expect(Ok(()));
    }
    let s = s
        .when(app_event_by("dukcapil", SERVICE, 1, "d-one-more", E::ApplicationFiled))
        .then_expect(Err(R::AgencyApplicationsExceeded));
    // The case still has room, for the other agencies.
    let s = s.when(app_event_by("imigrasi", SERVICE, 1, "i-0", E::ApplicationFiled)).then_expect(Ok(()));
    // And the agency's own applications go on.
    let s = s.when(app_event_by("dukcapil", SERVICE, 1, "d-0", E::ReviewStarted)).then_expect(Ok(()));
    assert_eq!(s.case(1).applications.len(), limits::APPLICATIONS_PER_AGENCY_PER_CASE_MAX + 1);
}

#[test]
fn entries_recorded_before_the_rules_keep_their_verdicts() {
    // The same filings, recorded before the rules took effect: all accepted,
    // as they were when such a log was written.
    let before = limits::CASE_SIZE_RULES_FROM_MS - 365 * 86_400_000;
    let mut s = case_at(before);
    for i in 0..=limits::APPLICATIONS_PER_AGENCY_PER_CASE_MAX {
        s = s
            .when(app_event_by("dukcapil", SERVICE, 1, &format!("d-{i}"), E::ApplicationFiled))
            .then_expect(Ok(()));
    }
    // And one agency's big events are not held to its byte share.
    let mut i = 0;
    while s.case(1).agency_bytes(&mpp_core::AgencyId::parse("dukcapil").unwrap())
        <= limits::CASE_BYTES_PER_AGENCY_MAX
    {
        s = s.when(big_request("dukcapil", 1, "d-0")).then_expect(Ok(()));
        s = s.when(big_receipt("dukcapil", 1, "d-0")).then_expect(Ok(()));
        i += 1;
        assert!(i < 100, "never grew");
    }
}

/// Grows `app` of `agency` with the largest legal events until one is
/// refused; returns the scenario and the refusal's code.
fn grow_until_refused(mut s: Scenario, agency: &str, app: &str) -> (Scenario, R) {
    for round in 0.. {
        assert!(round < 200, "never refused");
        for event in [big_request(agency, 1, app), big_receipt(agency, 1, app)] {
            let before = s.state.clone();
            match s.submit(&event) {
                Ok(()) => {}
                Err(r) => {
                    assert_eq!(s.state, before, "a refusal changed the state");
                    return (s, r.code);
                }
            }
        }
    }
    unreachable!()
}

#[test]
fn one_agency_takes_at_most_its_byte_share_and_the_case_at_most_its_size() {
    let mut s = case_at(AFTER_MS);
    for agency in AGENCIES {
        s = s
            .when(app_event_by(agency, SERVICE, 1, &format!("{agency}-0"), E::ApplicationFiled))
            .then_expect(Ok(()));
    }
    let (s, code) = grow_until_refused(s, "dukcapil", "dukcapil-0");
    assert_eq!(code, R::AgencyCaseShareExceeded);
    let own = s.case(1).agency_bytes(&mpp_core::AgencyId::parse("dukcapil").unwrap());
    assert!(own <= limits::CASE_BYTES_PER_AGENCY_MAX, "{own}");
    assert!(own > limits::CASE_BYTES_PER_AGENCY_MAX - 40_000, "refused well before its share: {own}");
    // The others fill the rest of the case, until the case is full.
    let mut s = s;
    let mut codes = Vec::new();
    for agency in &AGENCIES[1..] {
        let (next, code) = grow_until_refused(s, agency, &format!("{agency}-0"));
        s = next;
        codes.push(code);
        if code == R::CaseTooLarge {
            break;
        }
    }
    assert_eq!(codes.last(), Some(&R::CaseTooLarge), "{codes:?}");
    let size = s.case(1).size_bytes();
    assert!(size <= limits::CASE_BYTES_MAX - limits::CASE_BYTES_RESERVED_FOR_FINISH, "{size}");
    // Every application of the full case can still be closed, with the
    // longest code and reason.
    for agency in AGENCIES {
        s = s.when(big_rejection(agency, 1, &format!("{agency}-0"))).then_expect(Ok(()));
    }
    assert!(s.case(1).size_bytes() <= limits::CASE_BYTES_MAX);
}

#[test]
fn the_finishing_reserve_closes_every_application_of_a_full_case() {
    // The most applications a case holds, spread over five agencies (four
    // at their share of bytes would not fill it), each open.
    let counts = [8, 8, 8, 4, 4];
    assert_eq!(counts.iter().sum::<usize>(), limits::APPLICATIONS_PER_CASE_MAX);
    let mut s = case_at(AFTER_MS);
    let mut apps = Vec::new();
    for (agency, n) in AGENCIES.iter().zip(counts) {
        assert!(n <= limits::APPLICATIONS_PER_AGENCY_PER_CASE_MAX);
        for i in 0..n {
            let app = format!("{agency}-{i}");
            s = s.when(app_event_by(agency, SERVICE, 1, &app, E::ApplicationFiled)).then_expect(Ok(()));
            apps.push((*agency, app));
        }
    }
    let mut full = false;
    for (agency, app) in &apps {
        let (next, code) = grow_until_refused(s, agency, app);
        s = next;
        if code == R::CaseTooLarge {
            full = true;
            break;
        }
    }
    assert!(full, "the case never filled");
    // Every application closes, with the longest code and reason.
    for (agency, app) in &apps {
        s = s.when(big_rejection(agency, 1, app)).then_expect(Ok(()));
    }
    assert!(s.case(1).size_bytes() <= limits::CASE_BYTES_MAX);
}
