//! Given/when/then tests of the application state machine, driven through
//! `validate`, `decide` and `apply` over `MemState`: every state × every
//! application event, plus every rejection `decide` can give.

mod common;

use std::collections::BTreeMap;

use common::*;
use mpp_core::case::{CaseStatus, Pending};
use mpp_core::event::EventKind as E;
use mpp_core::limits;
use mpp_core::reason::ReasonCode as R;
use mpp_core::state::{next_state, AppState as S};

/// The specification, written out by hand from docs/DESIGN.md and state.rs's
/// diagram, independently of `next_state`: every legal (from, event) pair
/// and the state it leads to. Every pair not listed is illegal.
fn spec() -> BTreeMap<(S, E), S> {
    let open = [S::Submitted, S::DocumentsRequired, S::InReview, S::AwaitingPayment, S::Paid, S::Scheduled];
    let mut m = BTreeMap::new();
    for from in [S::Submitted, S::InReview, S::Scheduled] {
        m.insert((from, E::DocumentsRequested), S::DocumentsRequired);
        m.insert((from, E::FeeAssessed), S::AwaitingPayment);
    }
    m.insert((S::DocumentsRequired, E::DocumentsReceived), S::Submitted);
    m.insert((S::Submitted, E::ReviewStarted), S::InReview);
    m.insert((S::Scheduled, E::ReviewStarted), S::InReview);
    m.insert((S::AwaitingPayment, E::PaymentReceived), S::Paid);
    for from in [S::Submitted, S::InReview, S::Paid, S::Scheduled] {
        m.insert((from, E::AppointmentScheduled), S::Scheduled);
    }
    for from in [S::InReview, S::Paid, S::Scheduled] {
        m.insert((from, E::Issued), S::Issued);
    }
    m.insert((S::Issued, E::Collected), S::Collected);
    for from in open {
        m.insert((from, E::Rejected), S::Rejected);
        m.insert((from, E::Withdrawn), S::Withdrawn);
    }
    m
}

/// The events after filing that lead an application to `to`.
fn path_to(to: S) -> Vec<E> {
    let to_paid = [E::ReviewStarted, E::FeeAssessed, E::PaymentReceived];
    let mut path: Vec<E> = match to {
        S::Submitted => vec![],
        S::DocumentsRequired => vec![E::DocumentsRequested],
        S::InReview => vec![E::ReviewStarted],
        S::AwaitingPayment => vec![E::ReviewStarted, E::FeeAssessed],
        S::Paid => to_paid.to_vec(),
        S::Scheduled => [&to_paid[..], &[E::AppointmentScheduled]].concat(),
        S::Issued => [&to_paid[..], &[E::AppointmentScheduled, E::Issued]].concat(),
        S::Collected => [&to_paid[..], &[E::AppointmentScheduled, E::Issued, E::Collected]].concat(),
        S::Rejected => vec![E::ReviewStarted, E::Rejected],
        S::Withdrawn => vec![E::Withdrawn],
        // No application event leads here: see `app_in`.
        S::Dropped => vec![],
    };
    path.insert(0, E::ApplicationFiled);
    path
}

/// A standard, case 1 and application "A" brought to `state` by real events.
fn app_in(state: S) -> Scenario {
    if state == S::Dropped {
        return dropped_app();
    }
    let events =
        [standard(), open(1)].into_iter().chain(path_to(state).into_iter().map(|k| app_event(1, "A", k)));
    let s = given(events);
    assert_eq!(s.app_state(1, "A"), state, "path_to({state:?}) leads elsewhere");
    s
}

/// Application "A" of case 1, filed while the registry is in force into
/// the number before the front office issued it (an hour later), then
/// dropped by the front office's opening (`mpp_core::hold`).
fn dropped_app() -> Scenario {
    let mut s = given([standard()]);
    s.state.registry = registry_of(&[
        ("mpp-1771", mpp_core::registry::ParticipantKind::FrontOffice),
        (AGENCY, mpp_core::registry::ParticipantKind::Agency),
    ]);
    s.submit(&app_event(1, "A", E::ApplicationFiled)).expect("held");
    let mut opening = envelope("mpp-1771", SERVICE, Some(1), None, body(E::CaseOpened));
    opening.occurred_at_ms = RECORD_MS + 60 * 60 * 1000;
    s.submit(&opening).expect("opened");
    assert_eq!(s.app_state(1, "A"), S::Dropped);
    s
}

/// What the citizen must do in each state, by kind of pending action.
fn expected_pending(state: S) -> Option<&'static str> {
    match state {
        S::DocumentsRequired => Some("bring documents"),
        S::AwaitingPayment => Some("pay fee"),
        S::Scheduled => Some("attend"),
        S::Issued => Some("collect"),
        _ => None,
    }
}

fn pending_name(p: &Pending) -> &'static str {
    match p {
        Pending::BringDocuments { .. } => "bring documents",
        Pending::PayFee { .. } | Pending::PayFeeBy { .. } => "pay fee",
        Pending::Attend { .. } => "attend",
        Pending::Collect | Pending::CollectAt { .. } => "collect",
    }
}

#[test]
fn every_state_is_reachable_through_real_events() {
    for &state in S::ALL {
        let s = app_in(state);
        let app = s.case(1).application(&app_id("A")).expect("filed");
        assert_eq!(app.timeline.len(), path_to(state).len());
        assert_eq!(app.pending.as_ref().map(pending_name), expected_pending(state), "pending in {state:?}");
    }
}

#[test]
fn next_state_matches_the_hand_written_table() {
    let spec = spec();
    for &from in S::ALL {
        for &kind in E::ALL {
            assert_eq!(next_state(Some(from), kind), spec.get(&(from, kind)).copied(), "{from:?} × {kind:?}");
        }
    }
    for &kind in E::ALL {
        let want = (kind == E::ApplicationFiled).then_some(S::Submitted);
        assert_eq!(next_state(None, kind), want, "not filed × {kind:?}");
    }
}

#[test]
fn decide_accepts_exactly_the_legal_pairs_and_apply_reaches_the_table_state() {
    let spec = spec();
    let mut accepted = 0;
    for &from in S::ALL {
        for kind in application_kinds() {
            let when = app_in(from).when(app_event(1, "A", kind));
            match (kind, spec.get(&(from, kind))) {
                (E::ApplicationFiled, _) => {
                    when.then_expect(Err(R::ApplicationAlreadyFiled));
                }
                (_, None) => {
                    when.then_expect(Err(R::IllegalTransition));
                }
                (_, Some(&to)) => {
                    accepted += 1;
                    let s = when.then_expect(Ok(()));
                    let app = s.case(1).application(&app_id("A")).expect("filed");
                    assert_eq!(app.state, to, "{from:?} × {kind:?}");
                    let last = app.timeline.last().expect("timeline has the event");
                    assert_eq!((last.kind, last.state_after), (kind, to));
                    assert_eq!(last.seq, s.submitted);
                    assert_eq!(app.state_since_ms, last.recorded_at_ms);
                    assert_eq!(app.timeline.len(), path_to(from).len() + 1);
                    assert_eq!(
                        app.pending.as_ref().map(pending_name),
                        expected_pending(to),
                        "{from:?} × {kind:?}"
                    );
                }
            }
        }
    }
    assert_eq!(accepted, spec.len(), "every legal pair was exercised");
}

#[test]
fn nothing_leaves_a_terminal_state() {
    for &terminal in S::ALL.iter().filter(|s| s.is_terminal()) {
        for kind in application_kinds() {
            let code =
                if kind == E::ApplicationFiled { R::ApplicationAlreadyFiled } else { R::IllegalTransition };
            app_in(terminal).when(app_event(1, "A", kind)).then_expect(Err(code));
        }
    }
}

#[test]
fn state_predicates_agree_with_the_table() {
    let spec = spec();
    for &s in S::ALL {
        let has_exit = spec.keys().any(|(from, _)| *from == s);
        assert_eq!(s.is_terminal(), !has_exit, "{s:?}");
        assert_eq!(s.is_open(), spec.contains_key(&(s, E::Withdrawn)), "{s:?}");
        assert!(!s.as_str().is_empty() && !s.label_id().is_empty() && !s.label_en().is_empty());
    }
}

#[test]
fn application_events_for_a_never_filed_application_are_unknown_application() {
    for kind in application_kinds().filter(|k| *k != E::ApplicationFiled) {
        given([standard(), open(1), app_event(1, "A", E::ApplicationFiled)])
            .when(app_event(1, "B", kind))
            .then_expect(Err(R::UnknownApplication));
    }
}

#[test]
fn application_events_for_an_unopened_case_are_unknown_case() {
    for kind in application_kinds().filter(|k| *k != E::ApplicationFiled) {
        given([standard(), open(1)]).when(app_event(2, "A", kind)).then_expect(Err(R::UnknownCase));
    }
}

#[test]
fn an_application_filed_before_the_case_opening_creates_a_shell_the_opening_fills_in() {
    // Given an application filed into case 2 before its opening reached the hub,
    let s = given([standard(), app_event(2, "A", E::ApplicationFiled)]);
    let shell = s.case(2);
    assert!(shell.is_shell());
    assert!(shell.pin_verifier.is_empty(), "a shell holds no PIN verifier");
    assert_eq!(shell.entry_seqs().len(), 1);
    // when the opening arrives, it is accepted and fills the shell in,
    let s = s.when(open(2)).then_expect(Ok(()));
    let case = s.case(2);
    assert!(!case.is_shell());
    assert!(!case.pin_verifier.is_empty());
    assert_eq!(case.applications.len(), 1);
    assert_eq!(case.entry_seqs().len(), 2);
    // and a second opening is refused.
    s.when(open(2)).then_expect(Err(R::CaseAlreadyOpen));
}

#[test]
fn application_events_of_a_service_without_a_standard_are_unknown_service() {
    for kind in application_kinds() {
        given([open(1)]).when(app_event(1, "A", kind)).then_expect(Err(R::UnknownService));
    }
    // Another service of the same agency needs its own standard.
    given([standard(), open(1)])
        .when(app_event_by(AGENCY, "ktp-el", 1, "A", E::ApplicationFiled))
        .then_expect(Err(R::UnknownService));
    // Opening a case needs no standard.
    given([]).when(open(1)).then_expect(Ok(()));
}

#[test]
fn another_agency_touching_an_application_is_an_owner_mismatch() {
    let base = || {
        [
            standard(),
            standard_of("imigrasi", "paspor", 1),
            standard_of(AGENCY, "akta-lahir", 1),
            open(1),
            app_event(1, "A", E::ApplicationFiled),
        ]
    };
    for kind in application_kinds().filter(|k| *k != E::ApplicationFiled) {
        given(base())
            .when(app_event_by("imigrasi", "paspor", 1, "A", kind))
            .then_expect(Err(R::ApplicationOwnerMismatch));
        given(base())
            .when(app_event_by(AGENCY, "akta-lahir", 1, "A", kind))
            .then_expect(Err(R::ApplicationOwnerMismatch));
    }
    // Filing the same id again is a duplicate filing, whoever does it.
    given(base())
        .when(app_event_by("imigrasi", "paspor", 1, "A", E::ApplicationFiled))
        .then_expect(Err(R::ApplicationAlreadyFiled));
    // An agency without a standard is told about that first.
    given(base())
        .when(app_event_by("pdam", "sambungan", 1, "A", E::ReviewStarted))
        .then_expect(Err(R::UnknownService));
    // The owner can still act.
    given(base()).when(app_event(1, "A", E::ReviewStarted)).then_expect(Ok(()));
}

#[test]
fn a_case_cannot_be_opened_twice() {
    let s = given([open(1)]).when(open(1)).then_expect(Err(R::CaseAlreadyOpen));
    // Another agency cannot open it either, and another case is independent.
    let mut other = open(1);
    other.agency_id = "imigrasi".to_owned();
    other.service_id = "paspor".to_owned();
    let s = s.when(other).then_expect(Err(R::CaseAlreadyOpen));
    s.when(open(2)).then_expect(Ok(()));
}

#[test]
fn an_application_cannot_be_filed_twice() {
    let s = given([standard(), open(1), app_event(1, "A", E::ApplicationFiled)])
        .when(app_event(1, "A", E::ApplicationFiled))
        .then_expect(Err(R::ApplicationAlreadyFiled));
    // The same id in another case is another application.
    let s = s.when(open(2)).then_expect(Ok(()));
    s.when(app_event(2, "A", E::ApplicationFiled)).then_expect(Ok(()));
}

#[test]
fn a_standard_version_must_increase() {
    let s = given([standard_of(AGENCY, SERVICE, 2)]);
    let s = s.when(standard_of(AGENCY, SERVICE, 2)).then_expect(Err(R::StaleStandardVersion));
    let s = s.when(standard_of(AGENCY, SERVICE, 1)).then_expect(Err(R::StaleStandardVersion));
    let s = s.when(standard_of(AGENCY, SERVICE, 3)).then_expect(Ok(()));
    // Versions are per agency and service.
    let s = s.when(standard_of(AGENCY, "ktp-el", 1)).then_expect(Ok(()));
    let s = s.when(standard_of("imigrasi", SERVICE, 1)).then_expect(Ok(()));
    let key = (mpp_core::AgencyId::parse(AGENCY).unwrap(), mpp_core::ServiceId::parse(SERVICE).unwrap());
    let std = &s.state.standards[&key];
    assert_eq!(std.version, 3);
    assert_eq!(std.effective_from_seq, 4, "the standard is in force from the entry that published it");
}

#[test]
fn a_case_holds_at_most_applications_per_case_max() {
    let mut s = given([standard(), open(1)]);
    for i in 0..limits::APPLICATIONS_PER_CASE_MAX {
        s = s.when(app_event(1, &format!("app-{i}"), E::ApplicationFiled)).then_expect(Ok(()));
    }
    let s = s.when(app_event(1, "one-too-many", E::ApplicationFiled)).then_expect(Err(R::CaseLimitExceeded));
    assert_eq!(s.case(1).applications.len(), limits::APPLICATIONS_PER_CASE_MAX);
    // A duplicate filing at the limit is still reported as a duplicate.
    let s = s.when(app_event(1, "app-0", E::ApplicationFiled)).then_expect(Err(R::ApplicationAlreadyFiled));
    // Existing applications keep working.
    s.when(app_event(1, "app-0", E::ReviewStarted)).then_expect(Ok(()));
}

/// Files application "A" and repeats `round` until decide refuses; returns
/// the scenario and the timeline length reached.
fn fill_timeline(round: &[E], prefix: &[E]) -> (Scenario, usize) {
    let events = [standard(), open(1)]
        .into_iter()
        .chain([E::ApplicationFiled].iter().chain(prefix).map(|k| app_event(1, "A", *k)));
    let mut s = given(events);
    'outer: for _ in 0..limits::TIMELINE_ITEMS_PER_APPLICATION_MAX {
        for &kind in round {
            let before = s.state.clone();
            match s.submit(&app_event(1, "A", kind)) {
                Ok(()) => {}
                Err(r) => {
                    assert_eq!(r.code, R::CaseLimitExceeded, "{kind:?}: {r}");
                    assert_eq!(before, s.state);
                    break 'outer;
                }
            }
        }
    }
    let len = s.case(1).application(&app_id("A")).expect("filed").timeline.len();
    (s, len)
}

#[test]
fn an_application_holds_at_most_timeline_items_per_application_max() {
    let (s, len) = fill_timeline(&[E::DocumentsRequested, E::DocumentsReceived], &[]);
    assert!(len <= limits::TIMELINE_ITEMS_PER_APPLICATION_MAX);
    assert!(len >= limits::TIMELINE_ITEMS_PER_APPLICATION_MAX - limits::TIMELINE_ITEMS_RESERVED_FOR_FINISH);
    // Whatever state the application is stuck in, non-finishing events stay refused.
    let state = s.app_state(1, "A");
    let again = if state == S::Submitted { E::DocumentsRequested } else { E::DocumentsReceived };
    s.when(app_event(1, "A", again)).then_expect(Err(R::CaseLimitExceeded));
}

#[test]
fn an_application_at_its_limit_can_still_be_withdrawn_or_rejected() {
    for finish in [E::Withdrawn, E::Rejected] {
        let (s, _) = fill_timeline(&[E::DocumentsRequested, E::DocumentsReceived], &[]);
        let s = s.when(app_event(1, "A", finish)).then_expect(Ok(()));
        assert!(s.app_state(1, "A").is_terminal());
        let len = s.case(1).application(&app_id("A")).expect("filed").timeline.len();
        assert!(len <= limits::TIMELINE_ITEMS_PER_APPLICATION_MAX);
    }
}

#[test]
fn an_application_at_its_limit_can_still_be_issued_and_collected() {
    // Reschedule an appointment until the limit, then issue and collect.
    let (s, _) = fill_timeline(&[E::AppointmentScheduled], &[E::ReviewStarted]);
    assert_eq!(s.app_state(1, "A"), S::Scheduled);
    let s = s.when(app_event(1, "A", E::FeeAssessed)).then_expect(Err(R::CaseLimitExceeded));
    let s = s.when(app_event(1, "A", E::Issued)).then_expect(Ok(()));
    let s = s.when(app_event(1, "A", E::Collected)).then_expect(Ok(()));
    let len = s.case(1).application(&app_id("A")).expect("filed").timeline.len();
    assert!(len <= limits::TIMELINE_ITEMS_PER_APPLICATION_MAX);
    s.when(app_event(1, "A", E::Collected)).then_expect(Err(R::IllegalTransition));
}

#[test]
fn case_status_and_next_actions_follow_the_applications() {
    let s = given([standard(), standard_of("pdam", "sambungan", 1), open(1)]);
    assert_eq!(s.case(1).status(), CaseStatus::InProgress, "a case without applications is in progress");
    assert!(s.case(1).next_actions().is_empty());

    let s = s.when(app_event(1, "kk-1", E::ApplicationFiled)).then_expect(Ok(()));
    let s = s.when(app_event_by("pdam", "sambungan", 1, "air-1", E::ApplicationFiled)).then_expect(Ok(()));
    assert_eq!(s.case(1).status(), CaseStatus::InProgress);
    assert!(s.case(1).next_actions().is_empty());

    // Documents requested: the citizen must act, and is told what and where.
    let s = s.when(app_event(1, "kk-1", E::DocumentsRequested)).then_expect(Ok(()));
    assert_eq!(s.case(1).status(), CaseStatus::ActionNeeded);
    let actions = s.case(1).next_actions();
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].application_id, app_id("kk-1"));
    assert_eq!(
        actions[0].pending,
        Pending::BringDocuments {
            documents: vec!["Surat pengantar RT/RW".to_owned()],
            counter: "Loket 3".to_owned()
        }
    );

    // A fee on the other application adds a second action, in filing order.
    let s = s.when(app_event_by("pdam", "sambungan", 1, "air-1", E::FeeAssessed)).then_expect(Ok(()));
    let actions = s.case(1).next_actions();
    assert_eq!(actions.iter().map(|a| a.application_id.as_str()).collect::<Vec<_>>(), ["kk-1", "air-1"]);
    assert_eq!(
        actions[1].pending,
        Pending::PayFee {
            amount_idr: 150_000,
            payment_channel: "Bank Bengkulu".to_owned(),
            billing_code: "BILL-0001".to_owned()
        }
    );

    // The citizen acts on both: back in progress.
    let s = s.when(app_event(1, "kk-1", E::DocumentsReceived)).then_expect(Ok(()));
    let s = s.when(app_event_by("pdam", "sambungan", 1, "air-1", E::PaymentReceived)).then_expect(Ok(()));
    assert_eq!(s.case(1).status(), CaseStatus::InProgress);
    assert!(s.case(1).next_actions().is_empty());

    // An installation appointment is shown, but the agency is still at work.
    let s =
        s.when(app_event_by("pdam", "sambungan", 1, "air-1", E::AppointmentScheduled)).then_expect(Ok(()));
    assert_eq!(s.case(1).status(), CaseStatus::InProgress);
    assert!(matches!(s.case(1).next_actions()[..], [ref a] if matches!(a.pending, Pending::Attend { .. })));

    // One issued, one still open: in progress. The water connection's
    // standard names no place to collect anything: no action for the citizen.
    let s = s.when(app_event_by("pdam", "sambungan", 1, "air-1", E::Issued)).then_expect(Ok(()));
    assert_eq!(s.case(1).status(), CaseStatus::InProgress);
    let air = s.case(1).application(&app_id("air-1")).unwrap().pending.clone();
    assert_eq!(air, Some(Pending::Collect), "projected as before collection places existed");
    assert!(s.case(1).next_actions().is_empty());

    // Everything finished (issued, rejected): done.
    let s = s.when(app_event(1, "kk-1", E::Rejected)).then_expect(Ok(()));
    assert_eq!(s.case(1).status(), CaseStatus::Done);
    assert!(s.case(1).next_actions().is_empty());
    let s = s.when(app_event_by("pdam", "sambungan", 1, "air-1", E::Collected)).then_expect(Ok(()));
    assert_eq!(s.case(1).status(), CaseStatus::Done);
    assert!(s.case(1).next_actions().is_empty());

    // The case remembers every entry that touched it, in order.
    let case = s.case(1);
    let seqs = case.entry_seqs();
    assert_eq!(seqs.first(), Some(&case.opened_seq));
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(case.last_seq, *seqs.last().expect("not empty"));
    assert_eq!(case.updated_at_ms, RECORD_MS + ENTRY_GAP_MS * case.last_seq as i64);
}

#[test]
fn action_needed_wins_over_done() {
    let s = given([
        standard(),
        open(1),
        app_event(1, "A", E::ApplicationFiled),
        app_event(1, "B", E::ApplicationFiled),
        app_event(1, "A", E::Withdrawn),
        app_event(1, "B", E::ReviewStarted),
        app_event(1, "B", E::FeeAssessed),
    ]);
    assert_eq!(s.case(1).status(), CaseStatus::ActionNeeded);
}

#[test]
fn decide_refuses_a_hand_built_envelope_whose_target_does_not_fit_its_body() {
    use mpp_core::event::Target;
    use mpp_core::validate::validate;
    let s = given([standard(), open(1), app_event(1, "A", E::ApplicationFiled)]);
    let check = |u: &mpp_core::UncheckedEnvelope| validate(&subject_of(u), u, RECORD_MS).expect("valid");
    let review = check(&app_event(1, "A", E::ReviewStarted));
    let opened = check(&open(2));
    let published = check(&standard_of(AGENCY, SERVICE, 7));
    let cases = [
        (review.clone(), Target::Case(tracking_number(1))),
        (review.clone(), Target::Case(tracking_number(2))),
        (review, Target::Catalogue),
        (opened.clone(), Target::Application(tracking_number(1), app_id("A"))),
        (opened, Target::Catalogue),
        (published.clone(), Target::Case(tracking_number(3))),
        (published, Target::Application(tracking_number(1), app_id("A"))),
    ];
    for (mut env, target) in cases {
        env.target = target;
        let r = mpp_core::decide(&s.state, &env).expect_err("target and body disagree");
        assert_eq!(r.code, R::InvalidFieldValue, "{env:?}");
    }
}
