//! Model test: random sequences of mostly valid and some invalid events for a
//! few services, cases and applications go through `validate`, `decide` and
//! `apply` into a `MemState`, next to a small `BTreeMap` model that predicts
//! every verdict. After every step the projection must agree with the model.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use mpp_core::decide::{apply, decide_at, EntryMeta, MemState};
use mpp_core::event::{Envelope, EventBody, EventKind, UncheckedEnvelope};
use mpp_core::limits;
use mpp_core::reason::ReasonCode as R;
use mpp_core::state::{next_state, AppState};
use mpp_core::validate::validate;
use proptest::prelude::*;

const SERVICES: [(&str, &str); 3] = [("dukcapil", "kk"), ("dukcapil", "ktp-el"), ("imigrasi", "paspor")];
const CASES: u64 = 3;
const APPS: [&str; 3] = ["A", "B", "C"];

/// One way to break an otherwise valid envelope, and the code it must get.
#[derive(Debug, Clone, Copy)]
enum Fault {
    SchemaVersion,
    NoBody,
    EmptyOfficer,
    BadCheckDigit,
    ForeignSubject,
    NegativeFee,
}

impl Fault {
    fn code(self) -> R {
        match self {
            Fault::SchemaVersion => R::UnsupportedSchemaVersion,
            Fault::NoBody => R::MissingBody,
            Fault::EmptyOfficer => R::MalformedOfficer,
            Fault::BadCheckDigit => R::BadCheckDigit,
            Fault::ForeignSubject => R::AgencySubjectMismatch,
            Fault::NegativeFee => R::InvalidFieldValue,
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Publish {
        svc: usize,
        version: u32,
    },
    Open {
        case: u64,
    },
    App {
        svc: usize,
        case: u64,
        app: usize,
        kind: EventKind,
    },
    Broken {
        case: u64,
        app: usize,
        fault: Fault,
    },
    /// A legal next event for the application, chosen when the op runs
    /// (its owner's service, a kind the model's state allows), so random
    /// sequences reach the deep states too.
    Advance {
        case: u64,
        app: usize,
        pick: prop::sample::Index,
    },
}

fn arb_op() -> impl Strategy<Value = Op> {
    let kinds: Vec<EventKind> = application_kinds().collect();
    let faults = [
        Fault::SchemaVersion,
        Fault::NoBody,
        Fault::EmptyOfficer,
        Fault::BadCheckDigit,
        Fault::ForeignSubject,
        Fault::NegativeFee,
    ];
    prop_oneof![
        1 => (0..SERVICES.len(), 1u32..4).prop_map(|(svc, version)| Op::Publish { svc, version }),
        1 => (1..=CASES).prop_map(|case| Op::Open { case }),
        // Mostly the first service, so applications get far.
        10 => (prop_oneof![6 => Just(0usize), 1 => 1usize..SERVICES.len()], 1..=CASES, 0..APPS.len(), proptest::sample::select(kinds))
            .prop_map(|(svc, case, app, kind)| Op::App { svc, case, app, kind }),
        1 => (1..=CASES, 0..APPS.len(), proptest::sample::select(faults.to_vec()))
            .prop_map(|(case, app, fault)| Op::Broken { case, app, fault }),
        8 => (1..=CASES, 0..APPS.len(), any::<prop::sample::Index>())
            .prop_map(|(case, app, pick)| Op::Advance { case, app, pick }),
    ]
}

/// The envelope and subject an op submits.
fn envelope_of(op: &Op) -> (String, UncheckedEnvelope) {
    let u = match *op {
        Op::Advance { .. } => unreachable!("resolved before use"),
        Op::Publish { svc, version } => standard_of(SERVICES[svc].0, SERVICES[svc].1, version),
        Op::Open { case } => open(case),
        Op::App { svc, case, app, kind } => {
            app_event_by(SERVICES[svc].0, SERVICES[svc].1, case, APPS[app], kind)
        }
        Op::Broken { case, app, fault } => {
            let mut u = app_event(case, APPS[app], EventKind::FeeAssessed);
            match fault {
                Fault::SchemaVersion => u.schema_version += 1,
                Fault::NoBody => u.body = None,
                Fault::EmptyOfficer => u.officer.clear(),
                Fault::BadCheckDigit => {
                    let last = u.case_id.pop().expect("not empty");
                    u.case_id.push(if last == '0' { '1' } else { '0' });
                }
                Fault::ForeignSubject => return ("mpp.events.imigrasi.kk".to_owned(), u),
                Fault::NegativeFee => {
                    u.body = Some(EventBody::FeeAssessed {
                        amount_idr: -1,
                        payment_channel: "Bank".to_owned(),
                        billing_code: String::new(),
                        due_at_ms: 0,
                    })
                }
            }
            u
        }
    };
    (subject_of(&u), u)
}

#[derive(Debug, Default)]
struct ModelApp {
    svc: usize,
    kinds: Vec<EventKind>,
}

/// What the hub should do, kept as plainly as possible.
#[derive(Debug, Default)]
struct Model {
    versions: BTreeMap<usize, u32>,
    cases: BTreeSet<u64>,
    /// Cases known only from an application filed before their opening.
    shells: BTreeSet<u64>,
    apps: BTreeMap<(u64, usize), ModelApp>,
}

fn fold(kinds: &[EventKind]) -> Option<AppState> {
    kinds.iter().try_fold(None, |s, k| next_state(s, *k).map(Some)).flatten()
}

impl Model {
    /// Turns an `Advance` into a concrete event; other ops stay as they are.
    fn resolve(&self, op: &Op) -> Op {
        let Op::Advance { case, app, pick } = *op else { return op.clone() };
        let (svc, from) = match self.apps.get(&(case, app)) {
            Some(a) => (a.svc, fold(&a.kinds)),
            None => (0, None),
        };
        let legal: Vec<EventKind> = application_kinds().filter(|k| next_state(from, *k).is_some()).collect();
        // A terminal application has nothing legal left: try to collect.
        let kind = if legal.is_empty() { EventKind::Collected } else { legal[pick.index(legal.len())] };
        Op::App { svc, case, app, kind }
    }

    fn predict(&self, op: &Op) -> Result<(), R> {
        match *op {
            Op::Advance { .. } => unreachable!("resolved before use"),
            Op::Broken { fault, .. } => Err(fault.code()),
            Op::Publish { svc, version } => match self.versions.get(&svc) {
                Some(&cur) if version <= cur => Err(R::StaleStandardVersion),
                _ => Ok(()),
            },
            Op::Open { case } => {
                if self.cases.contains(&case) {
                    Err(R::CaseAlreadyOpen)
                } else {
                    Ok(())
                }
            }
            Op::App { svc, case, app, kind } => {
                if !self.versions.contains_key(&svc) {
                    return Err(R::UnknownService);
                }
                let known = self.cases.contains(&case) || self.shells.contains(&case);
                if !known {
                    // Filing into a case not yet opened creates its shell.
                    return if kind == EventKind::ApplicationFiled { Ok(()) } else { Err(R::UnknownCase) };
                }
                let existing = self.apps.get(&(case, app));
                if kind == EventKind::ApplicationFiled {
                    return match existing {
                        Some(_) => Err(R::ApplicationAlreadyFiled),
                        None => Ok(()),
                    };
                }
                let Some(a) = existing else { return Err(R::UnknownApplication) };
                if a.svc != svc {
                    return Err(R::ApplicationOwnerMismatch);
                }
                let Some(to) = next_state(fold(&a.kinds), kind) else { return Err(R::IllegalTransition) };
                let room = if to.is_finished() {
                    limits::TIMELINE_ITEMS_PER_APPLICATION_MAX
                } else {
                    limits::TIMELINE_ITEMS_PER_APPLICATION_MAX - limits::TIMELINE_ITEMS_RESERVED_FOR_FINISH
                };
                if a.kinds.len() >= room {
                    return Err(R::CaseLimitExceeded);
                }
                Ok(())
            }
        }
    }

    fn accept(&mut self, op: &Op) {
        match *op {
            Op::Broken { .. } | Op::Advance { .. } => {}
            Op::Publish { svc, version } => {
                self.versions.insert(svc, version);
            }
            Op::Open { case } => {
                self.shells.remove(&case);
                self.cases.insert(case);
            }
            Op::App { svc, case, app, kind } => {
                if !self.cases.contains(&case) {
                    self.shells.insert(case);
                }
                self.apps.entry((case, app)).or_insert(ModelApp { svc, kinds: vec![] }).kinds.push(kind)
            }
        }
    }
}

fn check_invariants(state: &MemState, model: &Model) -> Result<(), TestCaseError> {
    let open: BTreeSet<u64> =
        state.cases.values().filter(|c| !c.is_shell()).map(|c| c.tracking_number.serial()).collect();
    prop_assert_eq!(&open, &model.cases);
    let shells: BTreeSet<u64> =
        state.cases.values().filter(|c| c.is_shell()).map(|c| c.tracking_number.serial()).collect();
    prop_assert_eq!(&shells, &model.shells);
    prop_assert_eq!(state.standards.len(), model.versions.len());
    for (svc, version) in &model.versions {
        let key = (
            mpp_core::AgencyId::parse(SERVICES[*svc].0).expect("valid"),
            mpp_core::ServiceId::parse(SERVICES[*svc].1).expect("valid"),
        );
        prop_assert_eq!(state.standards.get(&key).map(|s| s.version), Some(*version));
    }
    for case in state.cases.values() {
        let seqs = case.entry_seqs();
        prop_assert!(seqs.windows(2).all(|w| w[0] < w[1]), "case seqs not strictly increasing: {:?}", seqs);
        prop_assert_eq!(seqs.last().copied(), Some(case.last_seq));
        prop_assert!(case.applications.len() <= limits::APPLICATIONS_PER_CASE_MAX);
        for app in &case.applications {
            let idx = APPS.iter().position(|a| *a == app.id.as_str()).expect("known app id");
            let m =
                model.apps.get(&(case.tracking_number.serial(), idx)).expect("model knows the application");
            let kinds: Vec<EventKind> = app.timeline.iter().map(|t| t.kind).collect();
            prop_assert_eq!(&kinds, &m.kinds);
            // The state is the fold of next_state over the accepted events.
            prop_assert_eq!(Some(app.state), fold(&m.kinds));
            prop_assert_eq!((app.agency.as_str(), app.service.as_str()), SERVICES[m.svc]);
            prop_assert!(
                app.timeline.windows(2).all(|w| w[0].seq < w[1].seq),
                "timeline seqs not increasing"
            );
            prop_assert!(app.timeline.len() <= limits::TIMELINE_ITEMS_PER_APPLICATION_MAX);
            let mut s = None;
            for item in &app.timeline {
                s = next_state(s, item.kind);
                prop_assert_eq!(s, Some(item.state_after));
            }
            prop_assert_eq!(
                app.state.waits_on_citizen()
                    || app.state == AppState::Issued
                    || app.state == AppState::Scheduled,
                app.pending.is_some()
            );
        }
        let model_apps = model.apps.keys().filter(|(c, _)| *c == case.tracking_number.serial()).count();
        prop_assert_eq!(case.applications.len(), model_apps);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_projection_follows_the_model(
        warmup in prop::bool::weighted(0.8),
        ops in proptest::collection::vec(arb_op(), 1..150),
    ) {
        let mut state = MemState::default();
        let mut model = Model::default();
        let mut accepted: Vec<(Envelope, EntryMeta)> = Vec::new();
        // Usually start with the main service published and case 1 open, so
        // short sequences reach deep states.
        let prelude = if warmup { vec![Op::Publish { svc: 0, version: 1 }, Op::Open { case: 1 }] } else { vec![] };
        for (i, op) in prelude.iter().chain(&ops).enumerate() {
            let meta = EntryMeta { seq: i as u64 + 1, recorded_at_ms: RECORD_MS + ENTRY_GAP_MS * i as i64 };
            let op = &model.resolve(op);
            let (subject, u) = envelope_of(op);
            let before = state.clone();
            let result = validate(&subject, &u, meta.recorded_at_ms).and_then(|env| {
                decide_at(&state, &env, meta.recorded_at_ms)?;
                Ok(env)
            });
            let want = model.predict(op);
            prop_assert_eq!(result.as_ref().map(|_| ()).map_err(|r| r.code), want, "step {}: {:?}", i, op);
            match result {
                Ok(env) => {
                    apply(&mut state, &env, meta);
                    prop_assert_ne!(&state, &before, "an accepted event changes the state");
                    model.accept(op);
                    accepted.push((env, meta));
                }
                Err(_) => prop_assert_eq!(&state, &before, "a rejected event changed the state"),
            }
            check_invariants(&state, &model)?;
        }
        // Projections are disposable: folding apply over the accepted
        // entries alone rebuilds exactly the live state.
        let mut rebuilt = MemState::default();
        for (env, meta) in &accepted {
            apply(&mut rebuilt, env, *meta);
        }
        prop_assert_eq!(rebuilt, state);
    }
}
