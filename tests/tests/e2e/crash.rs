//! Crash: `kill -9` the hub at seeded-random moments while events flow, at
//! least 20 times (MPP_CRASH_CYCLES), then check that nothing acknowledged
//! was lost, nothing was applied twice, the log is dense and its chain
//! intact, and the projection equals a rebuild from the log.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use mpp_tests::envelope::{
    publish_envelope, random_journey, stream_last_seq, tracking_number, EventFactory, Journey,
};
use mpp_tests::rng::Rng;
use mpp_tests::store::audit_stopped_hub;
use mpp_tests::{check, wait_for, HubProcess, NatsServer, READY_DEADLINE};

const AGENCY: &str = "e2e-crash";
const SERVICE: &str = "izin";
const REGION: &str = "1771";

/// Crash cycles unless MPP_CRASH_CYCLES says otherwise.
const CYCLES_DEFAULT: u32 = 20;

/// Concurrent publishers (each publishes whole journeys, one event at a time).
const PUBLISHERS: u64 = 3;

/// Journeys each publisher publishes at most (bounds the run).
const JOURNEYS_PER_PUBLISHER_MAX: u64 = 10_000;

/// Longest pause before a kill, in milliseconds.
const KILL_DELAY_MS_MAX: u64 = 400;

const PROGRESS_DEADLINE: Duration = Duration::from_secs(60);
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(180);

/// What the publishers got acknowledged.
#[derive(Debug, Default)]
struct Acked {
    event_ids: Vec<String>,
    journeys: Vec<Journey>,
}

async fn publisher(
    js: async_nats::jetstream::Context,
    seed: u64,
    index: u64,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Acked>>,
) -> Result<()> {
    let mut rng = Rng::new(seed ^ (index + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let f = EventFactory::new(AGENCY, SERVICE, REGION);
    for j in 0..JOURNEYS_PER_PUBLISHER_MAX {
        // Stop only between journeys, so every journey is complete.
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let tn = tracking_number(1771, index * 1_000_000 + j)?;
        let journey = random_journey(&mut rng, &f, &tn, &format!("P{index}-{j}"));
        for e in &journey.events {
            let ack = publish_envelope(&js, e).await.with_context(|| format!("journey {tn}"))?;
            ensure!(!ack.duplicate, "fresh event {} flagged duplicate by JetStream", e.event_id);
            acked.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.event_ids.push(e.event_id.clone());
        }
        acked.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.journeys.push(journey);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_hub_repeatedly_loses_nothing_and_applies_nothing_twice() -> Result<()> {
    let seed = mpp_tests::rng::seed_from_env("MPP_TEST_SEED");
    let cycles: u32 =
        std::env::var("MPP_CRASH_CYCLES").ok().and_then(|s| s.parse().ok()).unwrap_or(CYCLES_DEFAULT);
    println!("crash cycles = {cycles} (MPP_CRASH_CYCLES)");
    let mut rng = Rng::new(seed);
    let nats = NatsServer::start().await?;
    // Small batches make more commit boundaries for the kills to fall between.
    let mut hub = HubProcess::spawn_with(
        &nats.url(),
        mpp_tests::services::HubOptions { batch_max: Some(1 + rng.below(64) as u32), ..Default::default() },
    )?;
    println!("hub args: {:?}", hub.process().args());
    hub.wait_ready(READY_DEADLINE).await?;
    let js = nats.jetstream().await?;
    publish_envelope(&js, &EventFactory::new(AGENCY, SERVICE, REGION).standard(1)).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Acked::default()));
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|i| tokio::spawn(publisher(js.clone(), seed, i, stop.clone(), acked.clone())))
        .collect();

    // Kill at random moments: some during start-up and recovery, most while
    // ingesting (after the head has moved past where the last run left it).
    let started = Instant::now();
    let mut kills_during_startup = 0;
    let mut max_seen = 0u64;
    for cycle in 0..cycles {
        let during_startup = rng.chance(25);
        if during_startup {
            kills_during_startup += 1;
        } else {
            let addr = hub.http_addr();
            let floor = max_seen;
            let head = {
                let process = hub.process();
                wait_for(
                    &format!("cycle {cycle}: hub head to pass stream seq {floor}"),
                    PROGRESS_DEADLINE,
                    || {
                        let running = process.ensure_running();
                        async move {
                            running?;
                            let head = mpp_tests::services::read_head(addr).await?;
                            Ok((head.last_stream_seq > floor).then_some(head))
                        }
                    },
                )
                .await?
            };
            max_seen = head.last_stream_seq;
        }
        // A chaos delay (not synchronisation): where in its work the hub is killed.
        let delay_ms = if during_startup { rng.below(50) } else { rng.below(KILL_DELAY_MS_MAX) };
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        hub.kill9()?;
        hub.start()?;
    }
    println!(
        "{cycles} kill -9 cycles ({kills_during_startup} during start-up) in {:?}, hub started {} times",
        started.elapsed(),
        hub.process().starts()
    );

    // Let the publishers finish their journeys, then let the hub catch up.
    stop.store(true, Ordering::Relaxed);
    for p in publishers {
        p.await??;
    }
    hub.wait_ready(READY_DEADLINE).await?;
    let last = stream_last_seq(&js).await?;
    hub.wait_caught_up(last, CATCH_UP_DEADLINE).await?;
    let acked = std::mem::take(&mut *acked.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);

    // Every journey reads back in its final state.
    for j in &acked.journeys {
        let (status, v) = hub.case_json(&j.tracking_number, mpp_tests::pin::TEST_PIN).await?;
        ensure!(status == 200, "case {} missing after crashes: {status} {v}", j.tracking_number);
        let state = v.pointer("/applications/0/state").and_then(|s| s.as_str()).unwrap_or("");
        let timeline = v.pointer("/applications/0/timeline").and_then(|t| t.as_array()).map_or(0, Vec::len);
        ensure!(
            state == j.final_state && timeline == j.timeline_len,
            "case {}: state {state:?} with {timeline} timeline items, expected {:?} with {}",
            j.tracking_number,
            j.final_state,
            j.timeline_len
        );
    }
    hub.terminate().await?;

    // The log: dense, chained, projection = rebuild (audit), every acked event once.
    let audit = audit_stopped_hub(hub.data_dir())?;
    ensure!(
        audit.entries.len() as u64 == last,
        "{} log entries for {last} stream messages",
        audit.entries.len()
    );
    let accepted = check::accepted_by_event_id(&audit.entries);
    let mut lost = Vec::new();
    let mut twice = Vec::new();
    for id in &acked.event_ids {
        match accepted.get(id).map(Vec::len) {
            None => lost.push(id.clone()),
            Some(1) => {}
            Some(_) => twice.push(id.clone()),
        }
    }
    let found = acked.event_ids.len() - lost.len();
    println!(
        "seed {seed}: cycles {cycles}, journeys {}, events published (acked) {}, found {found}, lost {}, \
         applied twice {}; log {:?}",
        acked.journeys.len(),
        acked.event_ids.len(),
        lost.len(),
        twice.len(),
        audit.summary
    );
    let counts: BTreeMap<&str, usize> = acked.journeys.iter().fold(BTreeMap::new(), |mut m, j| {
        *m.entry(j.final_state).or_default() += 1;
        m
    });
    println!("journeys by final state: {counts:?}");
    if !lost.is_empty() || !twice.is_empty() {
        bail!(
            "seed {seed}: lost {:?}…, applied twice {:?}…",
            &lost[..lost.len().min(5)],
            &twice[..twice.len().min(5)]
        );
    }
    ensure!(
        audit.summary.rejected_total() == 0 && audit.summary.duplicates == 0,
        "unexpected verdicts: {:?}",
        audit.summary
    );
    ensure!(
        audit.summary.accepted == acked.event_ids.len() + 1,
        "accepted {} != acked {} + 1 standard",
        audit.summary.accepted,
        acked.event_ids.len()
    );
    Ok(())
}
