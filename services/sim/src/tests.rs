//! Plans checked against the hub's own state machine and the agencies'
//! vocabularies, without any network: every step has an RPC, every
//! application's events are legal in order, each ends as its fate says, and
//! every round ends with each application finished or waiting on the citizen.

use std::collections::BTreeSet;

use mpp_core::state::next_state;
use mpp_core::{AppState, EventKind};

use crate::plan::{Action, AppChoice, Fate, Journey, Plan, Service};
use crate::rng::Rng;
use crate::stack::rpc_name;

const FATES: [Fate; 6] = [
    Fate::Completed,
    Fate::DocumentsPending,
    Fate::PaymentPending,
    Fate::AppointmentPending,
    Fate::Rejected,
    Fate::Withdrawn,
];

fn kind(action: &Action) -> EventKind {
    EventKind::ALL
        .iter()
        .copied()
        .find(|k| k.as_str() == action.event_type())
        .unwrap_or_else(|| panic!("no hub event kind {}", action.event_type()))
}

/// The state of every application after the first `n` steps, checking each
/// step is legal.
fn states_after(plan: &Plan, n: usize) -> Vec<Option<AppState>> {
    let mut states = vec![None; plan.journey.services().len()];
    for (i, step) in plan.steps.iter().take(n).enumerate() {
        let Some(app) = step.app else {
            assert_eq!(i, 0, "only the first step opens the case");
            assert!(matches!(step.action, Action::OpenCase { .. }));
            continue;
        };
        let service = plan.service(app).unwrap();
        assert!(
            rpc_name(service, &step.action).is_some(),
            "{service:?} has no RPC for {} (step {i})",
            step.action.name()
        );
        let next = next_state(states[app], kind(&step.action));
        assert!(
            next.is_some(),
            "step {i}: {} on {service:?} in {:?} is illegal for the hub; plan {:#?}",
            step.action.name(),
            states[app],
            plan.steps
        );
        states[app] = next;
    }
    states
}

fn expected_end(service: Service, fate: Fate) -> AppState {
    match fate {
        Fate::Completed => match service {
            // Nothing to collect: the NIB is in OSS, a PBG is digital, a
            // connection is switched on.
            Service::DpmptspNib | Service::DpmptspPbg | Service::PdamSambungan | Service::PlnPasangBaru => {
                AppState::Issued
            }
            _ => AppState::Collected,
        },
        Fate::DocumentsPending => AppState::DocumentsRequired,
        Fate::PaymentPending => AppState::AwaitingPayment,
        Fate::AppointmentPending => AppState::Scheduled,
        Fate::Rejected => AppState::Rejected,
        Fate::Withdrawn => AppState::Withdrawn,
    }
}

fn check_plan(plan: &Plan) {
    assert!(matches!(plan.steps.first().map(|s| &s.action), Some(Action::OpenCase { .. })));
    assert!(plan.steps.windows(2).all(|w| w[0].round <= w[1].round), "rounds ascend");
    assert_eq!(plan.officers.len(), plan.journey.services().len() + 1);
    // Each application: filed first, exactly once.
    for app in 0..plan.journey.services().len() {
        let steps: Vec<_> = plan.steps_of(app).collect();
        assert!(matches!(steps.first().map(|s| &s.action), Some(Action::File { .. })), "slot {app}");
        assert_eq!(steps.iter().filter(|s| matches!(s.action, Action::File { .. })).count(), 1);
    }
    let ends = plan.round_ends();
    assert_eq!(ends.last(), Some(&plan.steps.len()));
    for (k, &end) in ends.iter().enumerate() {
        let states = states_after(plan, end);
        // At the end of every round each application is finished or waits on
        // the citizen (documents, payment, an interview, a collection).
        for (app, state) in states.iter().enumerate() {
            let s = state.unwrap_or_else(|| panic!("slot {app} not filed by the end of round {k}"));
            assert!(
                s.is_finished() || s.waits_on_citizen() || s == AppState::Scheduled,
                "round {k} ends with slot {app} in {s:?}, waiting on the agency"
            );
        }
        if k + 1 < ends.len() {
            // A later round exists only if something waited on the citizen.
            let first_next = &plan.steps[end];
            assert!(
                matches!(
                    first_next.action,
                    Action::ReceiveDocuments { .. }
                        | Action::ConfirmPayment { .. }
                        | Action::StartReview
                        | Action::Collect
                        | Action::Withdraw { .. }
                ),
                "round {} starts with the agency's {}",
                k + 1,
                first_next.action.name()
            );
        }
    }
    let last = states_after(plan, plan.steps.len());
    for (app, (service, choice)) in plan.journey.services().iter().zip(&plan.choices).enumerate() {
        assert_eq!(last[app], Some(expected_end(*service, choice.fate)), "{service:?} {choice:?}");
        let requested = plan.steps_of(app).any(|s| matches!(s.action, Action::RequestDocuments { .. }));
        assert_eq!(requested, choice.documents_missing, "{service:?} {choice:?}");
    }
}

#[test]
fn every_choice_of_every_service_makes_a_legal_plan_that_ends_as_chosen() {
    let mut rng = Rng::new(1);
    for journey in Journey::ALL {
        let n = journey.services().len();
        for slot in 0..n {
            for fate in FATES {
                for documents_missing in [false, true] {
                    let mut choices = vec![AppChoice::COMPLETED; n];
                    choices[slot] = AppChoice { documents_missing, fate };
                    let plan = Plan::with_choices(journey, "1771", &choices, &mut rng).unwrap();
                    check_plan(&plan);
                }
            }
        }
    }
    assert!(Plan::with_choices(Journey::Paspor, "1771", &[], &mut rng).is_err());
}

#[test]
fn random_plans_are_legal_and_cover_every_fate_and_journey() {
    let mut seen_fates = BTreeSet::new();
    let mut seen_rounds = BTreeSet::new();
    let mut docs = 0;
    for seed in 0..500u64 {
        let mut rng = Rng::new(seed);
        let journey = Journey::ALL[(seed % 4) as usize];
        let plan = Plan::random(journey, "1771", &mut rng);
        check_plan(&plan);
        seen_fates.extend(plan.choices.iter().map(|c| c.fate));
        docs += plan.choices.iter().filter(|c| c.documents_missing).count();
        seen_rounds.insert(plan.round_ends().len());
        assert_eq!(plan, Plan::random(journey, "1771", &mut Rng::new(seed)), "deterministic");
    }
    assert_eq!(seen_fates.len(), FATES.len(), "{seen_fates:?}");
    assert!(docs > 100, "{docs}");
    assert!(seen_rounds.len() >= 3, "{seen_rounds:?}");
}

/// The moment the end-to-end test stops at: after the first visit of a new
/// small business whose PBG lacks documents, DPMPTSP waits on documents and
/// PDAM and PLN on payment, and the NIB is issued.
#[test]
fn the_first_visit_of_a_small_business_leaves_documents_and_payments_to_the_citizen() {
    let choices = [
        AppChoice::COMPLETED,
        AppChoice { documents_missing: true, fate: Fate::Completed },
        AppChoice::COMPLETED,
        AppChoice::COMPLETED,
    ];
    let plan = Plan::with_choices(Journey::UsahaBaru, "1771", &choices, &mut Rng::new(1771)).unwrap();
    let ends = plan.round_ends();
    assert_eq!(ends.len(), 3, "visits: first, documents and payments, PBG retribution");
    assert_eq!(
        states_after(&plan, ends[0]),
        [
            Some(AppState::Issued),
            Some(AppState::DocumentsRequired),
            Some(AppState::AwaitingPayment),
            Some(AppState::AwaitingPayment)
        ]
    );
    assert_eq!(states_after(&plan, ends[1])[1], Some(AppState::AwaitingPayment));
    assert!(states_after(&plan, ends[2]).iter().all(|s| *s == Some(AppState::Issued)));
    let citizen = plan.citizen().unwrap();
    assert!(mpp_core::Nik::parse(&citizen.nik).is_ok());
}
