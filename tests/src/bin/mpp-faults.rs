//! `mpp-faults`: the long runs of the fault scenarios of issue 7 (the e2e
//! suite runs short versions of the same code, tests/tests/e2e/faults.rs).
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run -p mpp-tests --release --bin mpp-faults -- --scenario hub-kill --cycles 200 [--seed N]
//! ```
//!
//! It spawns nats-server (or a 3-node cluster), `mpp-hub` and `mpp-dukcapil`
//! from the same target directory as itself, on free local ports, and
//! prints each scenario's counts: run, accepted, found once, lost,
//! duplicated. Exit status 0 only if every scenario passed its checks.
//! See docs/FAULTS.md.

#![forbid(unsafe_code)]

// The scenarios and the checker live with the e2e tests; this binary runs
// the same code with larger counts. Items only the tests use are unused here.
#[allow(dead_code)]
#[path = "../../tests/e2e/checker.rs"]
mod checker;
#[allow(dead_code)]
#[path = "../../tests/e2e/cluster.rs"]
mod cluster;
#[allow(dead_code)]
#[path = "../../tests/e2e/faults.rs"]
mod faults;

use anyhow::{bail, Context, Result};
use faults::{Plan, Scenario};

/// Hub kills of the long run (issue 7 asks for at least 200).
const HUB_KILL_CYCLES_DEFAULT: u32 = 200;
/// Agency service kills of the long run.
const AGENCY_KILL_CYCLES_DEFAULT: u32 = 20;
/// NATS outages of the long run.
const NATS_RESTART_CYCLES_DEFAULT: u32 = 20;
/// Cluster node kills of the long run (leader and follower alternately).
const CLUSTER_KILL_CYCLES_DEFAULT: u32 = 10;
/// Events of the slow-consumer long run (issue 7 asks for at least 1M).
const SLOW_CONSUMER_EVENTS_DEFAULT: u64 = 1_000_000;

const USAGE: &str = "usage: mpp-faults --scenario <hub-kill|agency-kill|nats-restart|cluster-kill|disk-full|slow-consumer|all> \
                     [--cycles N] [--events N] [--seed N]\n\
                     The seed also comes from MPP_FAULT_SEED. Build the binaries first: cargo build --release --workspace --bins";

fn default_plan(scenario: Scenario, seed: u64) -> Plan {
    let (cycles, events) = match scenario {
        Scenario::HubKill => (HUB_KILL_CYCLES_DEFAULT, 0),
        Scenario::AgencyKill => (AGENCY_KILL_CYCLES_DEFAULT, 0),
        Scenario::NatsRestart => (NATS_RESTART_CYCLES_DEFAULT, 0),
        Scenario::ClusterKill => (CLUSTER_KILL_CYCLES_DEFAULT, 0),
        Scenario::DiskFull => (1, 0),
        Scenario::SlowConsumer => (0, SLOW_CONSUMER_EVENTS_DEFAULT),
    };
    Plan { scenario, seed, cycles, events }
}

fn main() -> Result<()> {
    let mut scenarios = Vec::new();
    let (mut cycles, mut events, mut seed) = (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--scenario" => {
                let v = value()?;
                if v == "all" {
                    scenarios.extend(Scenario::ALL);
                } else {
                    scenarios.push(
                        Scenario::parse(&v).with_context(|| format!("unknown scenario {v:?}\n{USAGE}"))?,
                    );
                }
            }
            "--cycles" => cycles = Some(value()?.parse::<u32>().context("--cycles")?),
            "--events" => events = Some(value()?.parse::<u64>().context("--events")?),
            "--seed" => seed = Some(value()?.parse::<u64>().context("--seed")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if scenarios.is_empty() {
        bail!("no --scenario given\n{USAGE}");
    }
    let seed = seed.unwrap_or_else(faults::seed_from_env);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build()?;
    let mut failed = Vec::new();
    let mut summary = Vec::new();
    for scenario in scenarios {
        let mut plan = default_plan(scenario, seed);
        plan.cycles = cycles.unwrap_or(plan.cycles);
        plan.events = events.unwrap_or(plan.events);
        match runtime.block_on(faults::run(plan)) {
            Ok(c) => summary.push(format!("{}: {c}", scenario.name())),
            Err(e) => {
                eprintln!("[{}] FAILED: {e:#}", scenario.name());
                summary.push(format!("{}: FAILED", scenario.name()));
                failed.push(scenario.name());
            }
        }
    }
    println!("\nseed {seed} (replay with --seed {seed} or MPP_FAULT_SEED={seed})");
    for line in &summary {
        println!("{line}");
    }
    if !failed.is_empty() {
        bail!("failed: {}", failed.join(", "));
    }
    Ok(())
}
