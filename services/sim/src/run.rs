//! Running plans against a [`Stack`]: one case ([`CaseRun`], resumable at
//! any step, which the end-to-end tests use to stop at a round's end), or a
//! whole run of many cases interleaved ([`run`]), paced by a token bucket
//! ([`Pacer`]).

use std::time::Duration;

use tokio::time::{Interval, MissedTickBehavior};

use crate::error::SimError;
use crate::plan::{Action, Journey, Plan};
use crate::rng::Rng;
use crate::stack::{Opened, Stack, StepRef};

/// Most cases one run may create.
pub const CASES_MAX: u32 = 10_000;

/// Most cases in progress at once in one run.
pub const IN_FLIGHT_CASES_MAX: usize = 64;

/// Highest `--rate`, in events (RPCs) per second.
pub const RATE_EVENTS_PER_S_MAX: f64 = 10_000.0;

/// Streams of [`Rng::derive`]: which journey case `i` takes, its plan, and
/// the interleaving of the cases in progress.
const JOURNEY_STREAM: u64 = 1;
const PLAN_STREAM: u64 = 2;
const INTERLEAVE_STREAM: u64 = 3;

/// A token bucket of depth one over [`tokio::time::interval`]: each
/// [`Pacer::acquire`] takes the next tick, one every `1/rate` seconds. A
/// slow call never earns a burst afterwards (missed ticks are delayed, not
/// caught up).
#[derive(Debug)]
pub struct Pacer {
    period: Option<Duration>,
    interval: Option<Interval>,
}

impl Pacer {
    /// Paces at `rate` events per second; `0` does not pace.
    pub fn new(rate: f64) -> Result<Self, SimError> {
        if rate == 0.0 {
            return Ok(Self::unpaced());
        }
        if !rate.is_finite() || !(0.0..=RATE_EVENTS_PER_S_MAX).contains(&rate) {
            return Err(SimError::BadRate(rate, RATE_EVENTS_PER_S_MAX));
        }
        Ok(Self { period: Some(Duration::from_secs_f64(1.0 / rate)), interval: None })
    }

    /// No pacing: every acquire returns at once.
    pub fn unpaced() -> Self {
        Self { period: None, interval: None }
    }

    /// Waits for the next token. The first one is immediate.
    pub async fn acquire(&mut self) {
        let Some(period) = self.period else { return };
        let interval = self.interval.get_or_insert_with(|| {
            let mut i = tokio::time::interval(period);
            i.set_missed_tick_behavior(MissedTickBehavior::Delay);
            i
        });
        interval.tick().await;
    }
}

/// One case being driven through its plan.
#[derive(Debug)]
pub struct CaseRun {
    index: u32,
    plan: Plan,
    next: usize,
    opened: Option<Opened>,
    applications: Vec<Option<String>>,
    event_ids: Vec<String>,
}

impl CaseRun {
    /// Case number `index` of a run, not started.
    pub fn new(index: u32, plan: Plan) -> Self {
        let applications = vec![None; plan.journey.services().len()];
        Self { index, plan, next: 0, opened: None, applications, event_ids: Vec::new() }
    }

    /// The case's number in its run.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The index of the next step to run (= steps done so far).
    pub fn next_step(&self) -> usize {
        self.next
    }

    /// Every step ran.
    pub fn is_finished(&self) -> bool {
        self.next >= self.plan.steps.len()
    }

    /// The tracking number, once the front office opened the case.
    pub fn tracking_number(&self) -> Option<&str> {
        self.opened.as_ref().map(|o| o.tracking_number.as_str())
    }

    /// The citizen's lookup PIN, once the case is open.
    pub fn pin(&self) -> Option<&str> {
        self.opened.as_ref().map(|o| o.pin.as_str())
    }

    /// The application id of slot `app`, once filed.
    pub fn application_id(&self, app: usize) -> Option<&str> {
        self.applications.get(app).and_then(|a| a.as_deref())
    }

    /// Every event id the services answered for this case, in order.
    pub fn event_ids(&self) -> &[String] {
        &self.event_ids
    }

    /// Runs the next step, after a token of `pacer`. Returns `false` when
    /// the plan was already finished.
    pub async fn step(&mut self, stack: &mut Stack, pacer: &mut Pacer) -> Result<bool, SimError> {
        let Some(step) = self.plan.steps.get(self.next) else { return Ok(false) };
        let index = self.next;
        let action = &step.action;
        pacer.acquire().await;
        let out_of_order = |what| SimError::OutOfOrder { index, action: action.name(), what };
        match (step.app, action) {
            (None, Action::OpenCase { citizen }) => {
                let officer = self.plan.officers.first().map_or("petugas-loket-01", String::as_str);
                let opened = stack.open_case(citizen, officer).await?;
                self.event_ids.push(opened.event_id.clone());
                // The sealed personal data is answered with the opening.
                self.event_ids.extend(opened.sealed_event_id.clone());
                self.opened = Some(opened);
            }
            (Some(app), action) => {
                let service = self.plan.service(app).ok_or_else(|| out_of_order("application slot"))?;
                let officer = self.plan.officers.get(app + 1).map_or("petugas-01", String::as_str);
                let tn = self.opened.as_ref().map(|o| o.tracking_number.as_str());
                let tn = tn.ok_or_else(|| out_of_order("tracking number"))?;
                if let Action::File { documents } = action {
                    let filed = stack.file(service, tn, documents, officer).await?;
                    self.event_ids.extend(filed.event_ids);
                    self.applications[app] = Some(filed.application_id);
                } else {
                    let application_id =
                        self.application_id(app).ok_or_else(|| out_of_order("application id"))?;
                    let at = StepRef { tracking_number: tn, application_id, officer };
                    let id = stack.step(service, at, action).await?;
                    self.event_ids.push(id);
                }
            }
            (None, _) => return Err(out_of_order("application slot")),
        }
        self.next += 1;
        Ok(true)
    }

    /// Runs steps until `end` steps are done (or the plan is finished).
    pub async fn run_until(
        &mut self,
        end: usize,
        stack: &mut Stack,
        pacer: &mut Pacer,
    ) -> Result<(), SimError> {
        while self.next < end.min(self.plan.steps.len()) {
            self.step(stack, pacer).await?;
        }
        Ok(())
    }

    /// Runs every remaining step.
    pub async fn run_to_end(&mut self, stack: &mut Stack, pacer: &mut Pacer) -> Result<(), SimError> {
        self.run_until(self.plan.steps.len(), stack, pacer).await
    }
}

/// What a run creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunConfig {
    /// How many cases (1..=[`CASES_MAX`]).
    pub cases: u32,
    /// Seed of every choice.
    pub seed: u64,
    /// The journeys to choose from (empty: all). The first cases take them
    /// in order, so every journey appears; later ones are drawn.
    pub journeys: Vec<Journey>,
    /// The MPP's region code, for NIKs and document numbers.
    pub region: String,
    /// Cases in progress at once (1..=[`IN_FLIGHT_CASES_MAX`]); their steps
    /// interleave in a seeded order, like citizens at several counters.
    pub in_flight: usize,
}

impl RunConfig {
    /// The journeys a run chooses from.
    pub fn journeys(&self) -> Vec<Journey> {
        if self.journeys.is_empty() {
            Journey::ALL.to_vec()
        } else {
            self.journeys.clone()
        }
    }

    /// The plan of case `index`: a function of the seed, the journeys and
    /// `index` only.
    pub fn plan_case(&self, index: u32) -> Plan {
        let journeys = self.journeys();
        let journey = match journeys.get(index as usize) {
            Some(j) => *j,
            None => *Rng::derive(self.seed, JOURNEY_STREAM, u64::from(index)).pick(&journeys),
        };
        Plan::random(journey, &self.region, &mut Rng::derive(self.seed, PLAN_STREAM, u64::from(index)))
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    /// Cases driven to the end of their plans.
    pub cases: u32,
    /// Events the services answered "accepted".
    pub events: u64,
}

/// Drives `config.cases` cases to the end of their plans, `in_flight` at a
/// time, one step per [`Pacer`] token; calls `done` with each case as it
/// finishes. Stops at the first failed step.
pub async fn run(
    config: &RunConfig,
    stack: &mut Stack,
    pacer: &mut Pacer,
    mut done: impl FnMut(&CaseRun),
) -> Result<RunSummary, RunError> {
    let cases = config.cases.min(CASES_MAX);
    let in_flight = config.in_flight.clamp(1, IN_FLIGHT_CASES_MAX);
    let mut order = Rng::derive(config.seed, INTERLEAVE_STREAM, 0);
    let mut active: Vec<CaseRun> = Vec::with_capacity(in_flight);
    let mut started = 0u32;
    let mut summary = RunSummary { cases: 0, events: 0 };
    loop {
        while active.len() < in_flight && started < cases {
            active.push(CaseRun::new(started, config.plan_case(started)));
            started += 1;
        }
        if active.is_empty() {
            return Ok(summary);
        }
        let i = order.below(active.len() as u64) as usize;
        let case = &mut active[i];
        if let Err(source) = case.step(stack, pacer).await {
            return Err(RunError {
                index: case.index(),
                journey: case.plan().journey,
                tracking_number: case.tracking_number().map(str::to_owned),
                source,
            });
        }
        if case.is_finished() {
            let case = active.swap_remove(i);
            summary.cases += 1;
            summary.events += case.event_ids().len() as u64;
            done(&case);
        }
    }
}

/// A run stopped at a failed step of one case.
#[derive(Debug, thiserror::Error)]
#[error("case #{index} ({journey}, {}): {source}", tracking_number.as_deref().unwrap_or("not opened"))]
pub struct RunError {
    /// The case's number in the run.
    pub index: u32,
    /// Its journey.
    pub journey: Journey,
    /// Its tracking number, if it was opened.
    pub tracking_number: Option<String>,
    /// What failed.
    #[source]
    pub source: SimError,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_pacer_spaces_events_and_never_bursts_after_a_stall() {
        let mut p = Pacer::new(10.0).unwrap();
        let start = tokio::time::Instant::now();
        for _ in 0..11 {
            p.acquire().await;
        }
        // The first token is immediate, then one every 100 ms.
        assert_eq!(start.elapsed(), Duration::from_millis(1000));
        // A stall of 1 s earns one token, not ten.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let t = tokio::time::Instant::now();
        p.acquire().await;
        assert_eq!(t.elapsed(), Duration::ZERO);
        p.acquire().await;
        assert_eq!(t.elapsed(), Duration::from_millis(100));

        let mut unpaced = Pacer::new(0.0).unwrap();
        let t = tokio::time::Instant::now();
        for _ in 0..1000 {
            unpaced.acquire().await;
        }
        assert_eq!(t.elapsed(), Duration::ZERO);
        for bad in [-1.0, f64::NAN, f64::INFINITY, RATE_EVENTS_PER_S_MAX * 2.0] {
            assert!(matches!(Pacer::new(bad), Err(SimError::BadRate(_, _))), "{bad}");
        }
    }

    #[test]
    fn plans_depend_only_on_seed_journeys_and_index() {
        let config =
            RunConfig { cases: 50, seed: 9, journeys: Vec::new(), region: "1771".to_owned(), in_flight: 4 };
        let a: Vec<Plan> = (0..50).map(|i| config.plan_case(i)).collect();
        let b: Vec<Plan> = (0..50).rev().map(|i| config.plan_case(i)).rev().collect();
        assert_eq!(a, b, "a case's plan must not depend on the others");
        let firsts: Vec<Journey> = a.iter().take(4).map(|p| p.journey).collect();
        assert_eq!(firsts, Journey::ALL, "the first cases cover every journey");
        let other = RunConfig { seed: 10, ..config.clone() };
        assert_ne!(a, (0..50).map(|i| other.plan_case(i)).collect::<Vec<_>>());
        let only = RunConfig { journeys: vec![Journey::Paspor], ..config };
        assert!((0..50).all(|i| only.plan_case(i).journey == Journey::Paspor));
    }
}
