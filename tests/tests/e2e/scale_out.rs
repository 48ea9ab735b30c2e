//! Scale-out (issue 8.1): a 3-node NATS cluster on loopback with
//! `MPP_EVENTS` at replicas 3, and two hub replicas, each with its own
//! durable consumer (`--consumer-name`) and its own sled store, under
//! traffic from the Dukcapil service. Both reach the same head hash; case
//! lookups succeed on both; one replica is killed (`kill -9`) while the
//! other keeps serving lookups and ingesting; the killed one restarts and
//! catches up to the same head. Finally both stores are audited and their
//! logs compared entry by entry (byte-identical), and every answered event
//! is in each log exactly once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Result};
use mpp_proto::agency::dukcapil::v1 as dk;
use mpp_tests::dukcapil::{self, Answered, Driver, DriverConfig};
use mpp_tests::envelope::{stream_last_seq, StreamIds};
use mpp_tests::rng::Rng;
use mpp_tests::store::audit_stopped_hub;
use mpp_tests::{wait_for, AgencyProcess, HubProcess, READY_DEADLINE};

use crate::checker::{check_stopped_hub, Run};
use crate::cluster::NatsCluster;

/// Region of the MPP: Kota Bengkulu.
const REGION: &str = "1771";
/// The two hub replicas: consumer name and NATS user (the cluster
/// template's hub users, each allowed its own consumer only).
const REPLICAS: [(&str, &str); 2] = [("mpp-hub", "hub"), ("mpp-hub-2", "hub-2")];

/// Officers calling the service (about 180 events/s).
const DRIVER: DriverConfig = DriverConfig { workers: 4, journey_interval_ms: 100 };

/// Cases opened by the test itself, whose PINs it keeps for lookups.
const LOOKUP_CASES: usize = 5;

/// Event ids answered while one replica is down.
const ANSWERS_WHILE_DOWN: u64 = 100;

const ANSWERS_DEADLINE: Duration = Duration::from_secs(60);
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(180);

/// Every lookup case answers 200 on `hub`.
async fn lookups_succeed(hub: &HubProcess, cases: &[(String, String)]) -> Result<()> {
    for (tn, pin) in cases {
        let (status, v) = hub.case_json(tn, pin).await?;
        ensure!(status == 200, "lookup of {tn} on the hub at {} answered {status}: {v}", hub.http_addr());
    }
    Ok(())
}

/// Waits until every hub has ingested the whole stream as it stands once
/// the service's outbox drained (`ids` all in the stream).
async fn wait_all_caught_up(
    cluster: &NatsCluster,
    scan: &tokio::sync::Mutex<StreamIds>,
    ids: &[String],
    hubs: &mut [&mut HubProcess],
) -> Result<u64> {
    let js = cluster.jetstream().await?;
    let last = wait_for("the stream to hold every answered event id", CATCH_UP_DEADLINE, || {
        let js = js.clone();
        async move {
            let mut scan = scan.lock().await;
            let last = scan.read_to_end(&js).await?;
            let missing = scan.missing(ids).len();
            if missing > 0 {
                bail!("{missing} answered ids not in the stream yet (last seq {last})");
            }
            Ok(Some(last))
        }
    })
    .await?;
    let last = last.max(stream_last_seq(&js).await?);
    for hub in hubs.iter_mut() {
        hub.wait_caught_up(last, CATCH_UP_DEADLINE).await?;
    }
    Ok(last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hub_replicas_on_a_3_node_cluster_agree_and_serve_while_one_is_down() -> Result<()> {
    let seed = mpp_tests::rng::seed_from_env("MPP_FAULT_SEED");
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let cluster = NatsCluster::start().await?;
    // Each replica knows every node, like the agency service, and logs in
    // as its own user, which may read through its own consumer only.
    let [(name_a, user_a), (name_b, user_b)] = REPLICAS;
    let mut a = HubProcess::spawn_with(&cluster.urls(), cluster.hub_options(user_a, Some(name_a)))?;
    let mut b = HubProcess::spawn_with(&cluster.urls(), cluster.hub_options(user_b, Some(name_b)))?;
    a.wait_ready(READY_DEADLINE).await?;
    b.wait_ready(READY_DEADLINE).await?;
    let mut service =
        AgencyProcess::spawn("mpp-dukcapil", &cluster.urls(), cluster.agency_options("dukcapil", REGION))?;
    service.wait_listening(READY_DEADLINE).await?;

    // Cases whose PINs the test keeps, then continuous traffic.
    let answered = Arc::new(Answered::default());
    let mut client = dukcapil::client(&service)?;
    let mut cases = Vec::new();
    for _ in 0..LOOKUP_CASES {
        let r = client
            .ajukan_permohonan(dk::Permohonan {
                nomor_berkas: String::new(),
                layanan: dk::Layanan::KtpEl as i32,
                dokumen: vec!["kartu keluarga".to_owned()],
                petugas: dukcapil::OFFICER.to_owned(),
            })
            .await
            .map_err(|s| anyhow!("AjukanPermohonan: {s}"))?
            .into_inner();
        answered.record(&r.event_ids)?;
        cases.push((r.nomor_berkas, r.pin));
    }
    let driver = Driver::spawn(&client, answered.clone(), rng.next_u64(), DRIVER);
    driver.wait_answered("traffic", 60, ANSWERS_DEADLINE).await?;

    // Under traffic, both replicas move and answer lookups.
    let scan = tokio::sync::Mutex::new(StreamIds::new());
    let ids = answered.snapshot()?;
    let upto = wait_all_caught_up(&cluster, &scan, &ids, &mut [&mut a, &mut b]).await?;
    lookups_succeed(&a, &cases).await?;
    lookups_succeed(&b, &cases).await?;
    println!("both replicas past stream seq {upto} under traffic; lookups succeed on both");

    // One replica dies; the other keeps ingesting and serving.
    let (victim, survivor) = if rng.chance(50) { (&mut a, &mut b) } else { (&mut b, &mut a) };
    victim.kill9()?;
    let at_kill = answered.count();
    driver
        .wait_answered("traffic with one replica down", at_kill + ANSWERS_WHILE_DOWN, ANSWERS_DEADLINE)
        .await?;
    let ids = answered.snapshot()?;
    let upto = wait_all_caught_up(&cluster, &scan, &ids, &mut [&mut *survivor]).await?;
    lookups_succeed(survivor, &cases).await?;
    ensure!(victim.get("/readyz").await.is_err(), "the killed replica still answers");
    println!("one replica killed: the other ingested up to stream seq {upto} and served every lookup");

    // The killed replica restarts and catches up; then traffic stops and both agree.
    victim.start()?;
    victim.wait_ready(READY_DEADLINE).await?;
    driver.wait_answered("traffic after the restart", answered.count() + 40, ANSWERS_DEADLINE).await?;
    let reports = driver.stop().await?;
    if let Some(e) = reports.iter().find_map(|r| r.error.as_ref()) {
        bail!("seed {seed}: an officer's call failed: {e}");
    }
    let ids = answered.snapshot()?;
    let last = wait_all_caught_up(&cluster, &scan, &ids, &mut [&mut a, &mut b]).await?;
    let (head_a, head_b) = (a.head_with_hash().await?, b.head_with_hash().await?);
    println!("replica {name_a} head: stream seq {}, log seq {}, hash {}", head_a.0, head_a.1, head_a.2);
    println!("replica {name_b} head: stream seq {}, log seq {}, hash {}", head_b.0, head_b.1, head_b.2);
    ensure!(head_a == head_b, "seed {seed}: the replicas disagree: {head_a:?} vs {head_b:?}");
    ensure!(head_a.0 == last, "seed {seed}: heads at stream seq {} but the stream ends at {last}", head_a.0);
    lookups_succeed(&a, &cases).await?;
    lookups_succeed(&b, &cases).await?;

    service.terminate().await?;
    a.terminate().await?;
    b.terminate().await?;
    for (name, hub) in [(name_a, &a), (name_b, &b)] {
        check_stopped_hub(
            hub.data_dir(),
            &Run { scenario: name, seed, run: 1, accepted: &ids, stream_last_seq: last, unanswered_max: 0 },
        )?;
    }
    let (log_a, log_b) = (audit_stopped_hub(a.data_dir())?.entries, audit_stopped_hub(b.data_dir())?.entries);
    ensure!(log_a == log_b, "seed {seed}: the replicas' logs differ although their heads agree");
    println!(
        "seed {seed}: {} identical log entries on both replicas, equal head hash {}; took {:?}",
        log_a.len(),
        head_a.2,
        started.elapsed()
    );
    Ok(())
}
