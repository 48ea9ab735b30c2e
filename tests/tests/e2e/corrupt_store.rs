//! A hub whose sled files no longer open (`Read corrupted data`, seen after
//! `kill -9`, docs/FAULTS.md). By default (`--on-corrupt-store rebuild`) it
//! moves them aside, says so in an ERROR line and in
//! `mpp_hub_corrupt_stores_kept`, re-ingests the stream — which still starts
//! at sequence 1 — and serves the same head as before; with `fail` it
//! refuses to start and leaves the files as they are. A corrupt access log
//! (its own sled database, which no stream can rebuild) is moved aside too
//! and a new one started, whatever the policy: an ERROR line "ACCESS LOG
//! RESET" and the same gauge say so.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mpp_tests::envelope::{publish_envelope, random_journey, stream_last_seq, tracking_number, EventFactory};
use mpp_tests::rng::Rng;
use mpp_tests::services::HubOptions;
use mpp_tests::{wait_for, HubProcess, READY_DEADLINE};

const AGENCY: &str = "e2e-corrupt";
const SERVICE: &str = "izin";
const REGION: &str = "1771";

/// Journeys published before the store is corrupted.
const JOURNEYS: u64 = 20;

const CATCH_UP_DEADLINE: Duration = Duration::from_secs(120);
const EXIT_DEADLINE: Duration = Duration::from_secs(60);

/// Makes sled refuse to open `data_dir` with its corruption error: its
/// `conf` file no longer parses (what `Read corrupted data at file offset
/// None` reports).
fn corrupt(data_dir: &Path) -> Result<()> {
    let conf = data_dir.join("conf");
    ensure!(conf.is_file(), "no sled conf in {}", data_dir.display());
    std::fs::write(&conf, b"this line has no separator\n\0\0\0\0").context("overwriting conf")
}

fn kept(data_dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(data_dir)? {
        let path = entry?.path();
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("corrupt-store-")) {
            out.push(path);
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_store_is_rebuilt_by_default_and_refused_with_fail() -> Result<()> {
    let seed = mpp_tests::rng::seed_from_env("MPP_TEST_SEED");
    let mut rng = Rng::new(seed);
    let (nats, mut hub) = mpp_tests::services::nats_and_hub(READY_DEADLINE).await?;
    let js = nats.jetstream().await?;
    let f = EventFactory::new(AGENCY, SERVICE, REGION);
    publish_envelope(&js, &f.standard(1)).await?;
    for j in 0..JOURNEYS {
        let tn = tracking_number(1771, j)?;
        for e in &random_journey(&mut rng, &f, &tn, &format!("P{j}")).events {
            publish_envelope(&js, e).await?;
        }
    }
    let last = stream_last_seq(&js).await?;
    hub.wait_caught_up(last, CATCH_UP_DEADLINE).await?;
    hub.wait_ready(READY_DEADLINE).await?;
    let before = hub.get("/api/v1/head").await?.text();
    hub.terminate().await?;

    // Given: the store's files corrupt, and the access log's (it has no
    // stream to be rebuilt from, so it is reset); a copy for the `fail` hub.
    corrupt(hub.data_dir())?;
    corrupt(&hub.data_dir().join("access"))?;
    let fail_dir = tempfile::tempdir()?;
    let fail_data = fail_dir.path().join("data");
    mpp_tests::copy_dir(hub.data_dir(), &fail_data)?;

    // When the hub starts with the default: it rebuilds and serves the same head.
    hub.start()?;
    hub.wait_caught_up(last, CATCH_UP_DEADLINE).await?;
    hub.wait_ready(READY_DEADLINE).await?;
    let after = hub.get("/api/v1/head").await?.text();
    ensure!(before == after, "head before the corruption {before}, after the rebuild {after}");
    let aside = kept(hub.data_dir())?;
    ensure!(aside.len() == 2, "the corrupt store and access log kept aside: {aside:?}");
    for dir in &aside {
        ensure!(dir.join("db").is_file() && dir.join("conf").is_file(), "the old files are kept in {dir:?}");
    }
    ensure!(
        aside.iter().filter(|d| d.to_string_lossy().ends_with("-access")).count() == 1,
        "one of them is the access log: {aside:?}"
    );
    let log = hub.log_tail();
    ensure!(
        log.contains("STORE REBUILT")
            && log.contains("ACCESS LOG RESET")
            && log.contains("\"level\":\"ERROR\""),
        "an ERROR line an operator cannot miss:\n{log}"
    );
    let metrics = hub.get("/metrics").await?.text();
    ensure!(metrics.contains("\nmpp_hub_corrupt_stores_kept 2\n"), "the gauge counts both kept aside");
    println!("seed {seed}: rebuilt to stream seq {last}, head {after}, old files in {}", aside[0].display());
    hub.terminate().await?;

    // With `fail`: the hub refuses to start and leaves the files.
    let mut failing = HubProcess::spawn_with(
        &nats.url(),
        HubOptions {
            data_dir: Some(fail_data.clone()),
            on_corrupt_store: Some("fail"),
            ..HubOptions::default()
        },
    )?;
    let process = failing.process();
    let status = wait_for("the hub with --on-corrupt-store fail to exit", EXIT_DEADLINE, || {
        let status = process.exit_status();
        async move { Ok(status) }
    })
    .await?;
    ensure!(!status.success(), "the hub with fail exited with {status}");
    let log = failing.log_tail();
    ensure!(log.contains("--on-corrupt-store fail"), "the error says why it stopped:\n{log}");
    ensure!(fail_data.join("db").is_file() && kept(&fail_data)?.is_empty(), "fail leaves the files in place");
    Ok(())
}
