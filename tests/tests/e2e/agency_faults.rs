//! Agency faults: what a Dukcapil service answered "accepted" reaches the hub
//! exactly once, whatever happens to NATS or to the service in between.
//!
//! - `nats_outage_mid_traffic_…`: officers keep calling while nats-server is
//!   stopped (SIGTERM, then in a second outage `kill -9`); the service must
//!   keep accepting calls during each outage (its durable outbox holds them),
//!   and once NATS is back every answered event is in the stream and in the
//!   hub's log, once.
//! - `agency_kill9_…`: with NATS down the outbox fills deterministically, the
//!   service is killed with `kill -9` and restarted on the same data
//!   directory, and its relay publishes what the dead process had accepted;
//!   then a second `kill -9` hits it mid-traffic with NATS up (entries whose
//!   PubAck arrived but whose deletion was not yet durable are re-sent).
//!
//! Both end with the stopped hub's store audited: every answered event id is
//! accepted exactly once, the log is dense (no stream gap), the chain
//! verifies and the projection equals a rebuild from the log. DUPLICATE
//! verdicts (a re-sent event JetStream's window missed, caught by the hub's
//! permanent index) are legitimate and counted separately.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use mpp_core::Verdict;
use mpp_proto::v1::envelope::Body;
use mpp_tests::dukcapil::{self, Answered, Driver, DriverConfig, JOURNEY_KINDS};
use mpp_tests::envelope::{stream_last_seq, StreamIds};
use mpp_tests::rng::Rng;
use mpp_tests::services::{ingest_halted, read_head, Head};
use mpp_tests::store::{audit_stopped_hub, StoreAudit};
use mpp_tests::wait::Fatal;
use mpp_tests::{check, wait_for, AgencyProcess, HubProcess, NatsServer, READY_DEADLINE};
use prost::Message;

/// Region of the MPP: Kota Bengkulu.
const REGION: &str = "1771";

/// Service standards mpp-dukcapil publishes at every start (kk, ktp-el, akta-lahir).
const DUKCAPIL_STANDARDS: usize = 3;

/// Concurrent officers calling the service, each starting a journey (about
/// 4.4 events) at most every `journey_interval_ms`: about 180 events/s, which
/// a debug-build hub ingests with room to spare after an outage.
const DRIVER: DriverConfig = DriverConfig { workers: 4, journey_interval_ms: 100 };

/// Event ids answered before the first fault (traffic is flowing).
const WARM_UP_ANSWERS: u64 = 60;

/// Least event ids the service must answer during each NATS outage.
const OUTAGE_ANSWERS_MIN: u64 = 100;

/// Calls (event ids) accepted into the outbox while NATS is down, before the
/// `kill -9` of the service: at least this many …
const QUEUED_ANSWERS_MIN: u64 = 40;
/// … and at most about this many (a journey is finished once started).
const QUEUED_ANSWERS_MAX: u64 = 120;

/// Event ids answered during the mid-traffic `kill -9` phase before the kill.
const LIVE_KILL_ANSWERS_MIN: u64 = 50;

/// Longest chaos pause before the mid-traffic kill, in milliseconds (where in
/// its work the service dies; not synchronisation).
const KILL_DELAY_MS_MAX: u64 = 150;

/// Journeys made on the restarted service before the final checks.
const JOURNEYS_AFTER_RESTART: u64 = 5;

const ANSWERS_DEADLINE: Duration = Duration::from_secs(30);
const DELIVERY_DEADLINE: Duration = Duration::from_secs(60);

/// How nats-server is taken down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// SIGTERM, waited for.
    Graceful,
    /// SIGKILL.
    Kill9,
}

/// Waits until the stream holds every id of `ids` and the hub has ingested
/// the stream up to the last of their first copies. `scan` keeps what was
/// read from the stream between calls.
async fn wait_delivered(
    what: &str,
    nats: &NatsServer,
    hub: &mut HubProcess,
    scan: &tokio::sync::Mutex<StreamIds>,
    ids: &[String],
) -> Result<Head> {
    let js = nats.jetstream().await?;
    let addr = hub.http_addr();
    let process = hub.process();
    let started = Instant::now();
    let head = wait_for(
        &format!(
            "{what}: the stream to hold all {} answered event ids and the hub to ingest them",
            ids.len()
        ),
        DELIVERY_DEADLINE,
        || {
            let running = process.ensure_running();
            let js = js.clone();
            async move {
                running?;
                let mut scan = scan.lock().await;
                let last = scan.read_to_end(&js).await?;
                let missing = scan.missing(ids);
                if let Some(first) = missing.first() {
                    bail!(
                        "stream (last seq {last}) lacks {} of {} answered event ids, e.g. {first}",
                        missing.len(),
                        ids.len()
                    );
                }
                let need = ids.iter().filter_map(|id| scan.seqs(id).first().copied()).max().unwrap_or(0);
                let head = read_head(addr).await?;
                if head.last_stream_seq < need {
                    if let Some(reason) = ingest_halted(addr).await? {
                        return Err(Fatal(format!(
                            "the hub's ingest halted at {head:?} with {reason}, although the stream holds a \
                             message at every sequence from 1 to {last}: nothing is missing there"
                        ))
                        .into());
                    }
                    bail!("hub head {head:?} is behind stream seq {need} (stream last seq {last})");
                }
                Ok(Some(head))
            }
        },
    )
    .await?;
    println!(
        "{what}: {} answered event ids in the stream and ingested after {:?}",
        ids.len(),
        started.elapsed()
    );
    Ok(head)
}

/// How a scenario ended: the tally of the answers against the stopped
/// hub's log, the audit of that log, the stream's last sequence, and how
/// many event ids the stream holds more than once.
struct Final {
    t: Tally,
    audit: StoreAudit,
    last: u64,
    stored_twice: usize,
}

/// Ends a scenario: waits until every answered event id of `ids` is in the
/// stream and the hub has ingested the whole stream, stops the service and
/// the hub, and audits the hub's log (one entry per stream message) against
/// the answers.
async fn finish(
    nats: &NatsServer,
    hub: &mut HubProcess,
    service: &mut AgencyProcess,
    scan: &tokio::sync::Mutex<StreamIds>,
    ids: &[String],
) -> Result<Final> {
    wait_delivered("final", nats, hub, scan, ids).await?;
    let js = nats.jetstream().await?;
    let last = stream_last_seq(&js).await?;
    hub.wait_caught_up(last, DELIVERY_DEADLINE).await?;
    let stored_twice = scan.lock().await.stored_twice();

    service.terminate().await?;
    hub.terminate().await?;
    let audit = audit_stopped_hub(hub.data_dir())?;
    ensure!(
        audit.entries.len() as u64 == last,
        "{} log entries for {last} stream messages",
        audit.entries.len()
    );
    let t = tally(&audit, ids)?;
    Ok(Final { t, audit, last, stored_twice })
}

/// The answered events compared with a stopped hub's audited log.
#[derive(Debug, Default)]
struct Tally {
    answered: usize,
    found_once: usize,
    lost: Vec<String>,
    applied_twice: Vec<String>,
    /// DUPLICATE verdict entries in the log (all of them).
    duplicate_entries: usize,
    /// Accepted service standards.
    standards: usize,
    /// Accepted events nobody got an answer for (a call in flight at a kill).
    unanswered_accepted: usize,
}

fn tally(audit: &StoreAudit, answered: &[String]) -> Result<Tally> {
    let unique: BTreeSet<&String> = answered.iter().collect();
    ensure!(unique.len() == answered.len(), "the service answered the same event id twice");
    let accepted = check::accepted_by_event_id(&audit.entries);
    let mut t = Tally { answered: answered.len(), ..Tally::default() };
    for id in answered {
        match accepted.get(id).map(Vec::len) {
            None => t.lost.push(id.clone()),
            Some(1) => t.found_once += 1,
            Some(_) => t.applied_twice.push(id.clone()),
        }
    }
    for e in &audit.entries {
        match e.verdict {
            Verdict::Duplicate => t.duplicate_entries += 1,
            Verdict::Accepted => {
                let env = mpp_proto::v1::Envelope::decode(e.payload.as_slice())
                    .with_context(|| format!("accepted entry seq {} is not an envelope", e.seq))?;
                if matches!(env.body, Some(Body::ServiceStandardPublished(_))) {
                    t.standards += 1;
                } else if !unique.contains(&env.event_id) {
                    t.unanswered_accepted += 1;
                }
            }
            Verdict::Rejected => {}
        }
    }
    Ok(t)
}

/// The checks both tests share: nothing lost, nothing applied twice, nothing
/// rejected, the standards once each, and at most `unanswered_max` accepted
/// events nobody got an answer for.
fn check_tally(seed: u64, t: &Tally, audit: &StoreAudit, unanswered_max: usize) -> Result<()> {
    if !t.lost.is_empty() || !t.applied_twice.is_empty() {
        bail!(
            "seed {seed}: lost {} (e.g. {:?}), applied twice {} (e.g. {:?})",
            t.lost.len(),
            &t.lost[..t.lost.len().min(5)],
            t.applied_twice.len(),
            &t.applied_twice[..t.applied_twice.len().min(5)]
        );
    }
    ensure!(
        audit.summary.rejected_total() == 0,
        "seed {seed}: rejected entries {:?} (every journey step is legal in order)",
        audit.summary.rejected
    );
    ensure!(t.standards == DUKCAPIL_STANDARDS, "seed {seed}: {} service standards accepted", t.standards);
    ensure!(
        t.unanswered_accepted <= unanswered_max,
        "seed {seed}: {} accepted events were never answered (at most {unanswered_max} calls were in flight)",
        t.unanswered_accepted
    );
    ensure!(
        audit.summary.accepted == t.answered + t.standards + t.unanswered_accepted,
        "seed {seed}: {} accepted entries for {} answered events + {} standards + {} unanswered",
        audit.summary.accepted,
        t.answered,
        t.standards,
        t.unanswered_accepted
    );
    Ok(())
}

/// NATS, a hub and the Dukcapil service, all ready.
async fn start() -> Result<(NatsServer, HubProcess, AgencyProcess)> {
    let (nats, hub) = mpp_tests::services::nats_and_hub(READY_DEADLINE).await?;
    let mut service = AgencyProcess::spawn_dukcapil(&nats.url(), REGION)?;
    service.wait_listening(READY_DEADLINE).await?;
    Ok((nats, hub, service))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_outage_mid_traffic_loses_nothing_and_the_agency_keeps_accepting() -> Result<()> {
    let seed = mpp_tests::rng::seed_from_env("MPP_TEST_SEED");
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let (mut nats, mut hub, mut service) = start().await?;
    let scan = tokio::sync::Mutex::new(StreamIds::new());

    // Officers call continuously; the traffic reaches the hub before anything breaks.
    let answered = Arc::new(Answered::default());
    let driver = Driver::spawn(&dukcapil::client(&service)?, answered.clone(), rng.next_u64(), DRIVER);
    driver.wait_answered("warm-up", WARM_UP_ANSWERS, ANSWERS_DEADLINE).await?;
    wait_delivered("warm-up", &nats, &mut hub, &scan, &answered.snapshot()?).await?;

    let mut during = Vec::new();
    for outage in [Outage::Graceful, Outage::Kill9] {
        match outage {
            Outage::Graceful => nats.stop().await?,
            Outage::Kill9 => nats.kill9()?,
        }
        ensure!(!nats.is_running(), "nats-server still runs after {outage:?}");
        let at_stop = answered.count();
        let down_since = Instant::now();
        let want = rng.range(OUTAGE_ANSWERS_MIN, 2 * OUTAGE_ANSWERS_MIN);
        // The service keeps accepting: its outbox, not NATS, answers the calls.
        driver
            .wait_answered(
                &format!("{outage:?} outage: calls accepted while NATS is down"),
                at_stop + want,
                ANSWERS_DEADLINE,
            )
            .await?;
        let n = answered.count() - at_stop;
        let down_for = down_since.elapsed();
        ensure!(!nats.is_running(), "nats-server came back by itself");
        nats.restart().await?;
        println!("{outage:?} outage: {n} event ids accepted in {down_for:?} while nats-server was down");
        during.push((outage, n));
        // The backlog drains while the traffic goes on.
        wait_delivered(
            &format!("after the {outage:?} outage"),
            &nats,
            &mut hub,
            &scan,
            &answered.snapshot()?,
        )
        .await?;
    }

    let reports = driver.stop().await?;
    for (w, r) in reports.iter().enumerate() {
        if let Some(e) = &r.error {
            bail!("seed {seed}: officer {w} saw a call fail (the service must accept calls whatever NATS does): {e}");
        }
    }
    let journeys: u64 = reports.iter().map(|r| r.journeys).sum();
    let Final { t, audit, last, stored_twice } =
        finish(&nats, &mut hub, &mut service, &scan, &answered.snapshot()?).await?;
    println!(
        "seed {seed}: accepted during outage: {}; total answered {} ({journeys} journeys); found once {}; \
         lost {}; duplicated {}; DUPLICATE entries {}; stored twice in the stream {stored_twice}; \
         stream {last} messages; log {:?}; {} cases; {:?}",
        during.iter().map(|(o, n)| format!("{o:?} {n}")).collect::<Vec<_>>().join(", "),
        t.answered,
        t.found_once,
        t.lost.len(),
        t.applied_twice.len(),
        t.duplicate_entries,
        audit.summary,
        audit.cases,
        started.elapsed()
    );
    // Every call of this test was answered: none was in flight at a fault of the service.
    check_tally(seed, &t, &audit, 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agency_kill9_with_unpublished_outbox_restarts_and_publishes_everything_once() -> Result<()> {
    let seed = mpp_tests::rng::seed_from_env("MPP_TEST_SEED");
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let (mut nats, mut hub, mut service) = start().await?;
    let scan = tokio::sync::Mutex::new(StreamIds::new());
    let answered = Arc::new(Answered::default());
    let mut client = dukcapil::client(&service)?;

    // A few journeys with everything up.
    for _ in 0..JOURNEYS_AFTER_RESTART {
        dukcapil::journey(&mut client, &answered, rng.below(JOURNEY_KINDS)).await?;
    }
    wait_delivered("warm-up", &nats, &mut hub, &scan, &answered.snapshot()?).await?;

    // Phase 1: NATS down, so the relay cannot drain; K answered calls sit in
    // the outbox when the service dies.
    nats.stop().await?;
    let before = answered.count();
    let k = rng.range(QUEUED_ANSWERS_MIN, QUEUED_ANSWERS_MAX);
    while answered.count() < before + k {
        dukcapil::journey(&mut client, &answered, rng.below(JOURNEY_KINDS))
            .await
            .context("a call while NATS is down")?;
    }
    let queued = answered.since(before)?;
    service.kill9()?;
    nats.restart().await?;
    {
        // Only the dead service's outbox holds them: none reached the stream.
        let mut scan = scan.lock().await;
        let last = scan.read_to_end(&nats.jetstream().await?).await?;
        let leaked: Vec<&String> = queued.iter().filter(|id| scan.contains(id)).collect();
        ensure!(
            leaked.is_empty(),
            "{} of {} events accepted while NATS was down are in the stream (last seq {last}) before the \
             service restarted: {:?}",
            leaked.len(),
            queued.len(),
            &leaked[..leaked.len().min(5)]
        );
    }
    service.process().start()?;
    service.wait_listening(READY_DEADLINE).await?;
    wait_delivered(
        "phase 1 (restart after kill -9 with a full outbox)",
        &nats,
        &mut hub,
        &scan,
        &answered.snapshot()?,
    )
    .await?;
    println!(
        "phase 1: {} event ids queued in the outbox at kill -9, published by the restarted service",
        queued.len()
    );

    // Phase 2: kill -9 mid-traffic with NATS up.
    let client = dukcapil::client(&service)?;
    let driver = Driver::spawn(&client, answered.clone(), rng.next_u64(), DRIVER);
    let base = answered.count();
    driver
        .wait_answered(
            "phase 2 traffic",
            base + rng.range(LIVE_KILL_ANSWERS_MIN, 3 * LIVE_KILL_ANSWERS_MIN),
            ANSWERS_DEADLINE,
        )
        .await?;
    // A chaos delay (not synchronisation): where in its work the service dies.
    tokio::time::sleep(Duration::from_millis(rng.below(KILL_DELAY_MS_MAX))).await;
    ensure!(!driver.any_ended(), "an officer's call failed before the kill");
    service.kill9()?;
    let reports = driver.stop().await?;
    let failed_at_kill = reports.iter().filter(|r| r.error.is_some()).count();
    let live = answered.count() - base;
    service.process().start()?;
    service.wait_listening(READY_DEADLINE).await?;
    let mut client = dukcapil::client(&service)?;
    for _ in 0..JOURNEYS_AFTER_RESTART {
        dukcapil::journey(&mut client, &answered, rng.below(JOURNEY_KINDS)).await?;
    }
    println!("phase 2: {live} event ids answered before kill -9 mid-traffic; {failed_at_kill} calls cut off");

    let Final { t, audit, last, stored_twice } =
        finish(&nats, &mut hub, &mut service, &scan, &answered.snapshot()?).await?;
    println!(
        "seed {seed}: queued at kill -9 {}; answered before mid-traffic kill -9 {live}; total answered {}; \
         found once {}; lost {}; duplicated {}; DUPLICATE entries {}; accepted but unanswered {}; stored \
         twice in the stream {stored_twice}; stream {last} messages; log {:?}; {} cases; {:?}",
        queued.len(),
        t.answered,
        t.found_once,
        t.lost.len(),
        t.applied_twice.len(),
        t.duplicate_entries,
        t.unanswered_accepted,
        audit.summary,
        audit.cases,
        started.elapsed()
    );
    // A call cut off by the kill may have been flushed without an answer
    // (an AjukanPermohonan opening a case carries two events).
    check_tally(seed, &t, &audit, 2 * failed_at_kill)
}
