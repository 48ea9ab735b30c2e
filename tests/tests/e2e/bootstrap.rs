//! A new replica in minutes (issue 20, item 5): hub A ingests traffic and
//! stops; `mpp-hub admin bootstrap` makes a new data directory from A's
//! store, verified against A's signed checkpoint; hub B starts on it with
//! its own consumer on the same stream, resumes at the snapshot's stream
//! sequence + 1 (it never re-reads what the snapshot holds), and after more
//! traffic both serve the same head. Copies of A's store with one entry's
//! byte flipped, or one case's field changed, are refused with a clear
//! error and leave no directory behind; so is A's directory while A runs.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use mpp_store::{SledStore, Store};
use mpp_tests::envelope::{publish_envelope, random_journey, stream_last_seq, tracking_number, EventFactory};
use mpp_tests::rng::Rng;
use mpp_tests::services::HubOptions;
use mpp_tests::{HubProcess, NatsServer, READY_DEADLINE};

const AGENCY: &str = "e2e-bootstrap";
const SERVICE: &str = "izin";
const REGION: &str = "1771";

/// Journeys published before the snapshot, and after it.
const JOURNEYS_BEFORE: u64 = 30;
const JOURNEYS_AFTER: u64 = 15;

const CATCH_UP_DEADLINE: Duration = Duration::from_secs(120);

async fn publish_journeys(
    js: &async_nats::jetstream::Context,
    rng: &mut Rng,
    f: &EventFactory,
    serials: std::ops::Range<u64>,
) -> Result<u64> {
    for j in serials {
        let tn = tracking_number(1771, j)?;
        for e in &random_journey(rng, f, &tn, &format!("P{j}")).events {
            publish_envelope(js, e).await?;
        }
    }
    stream_last_seq(js).await
}

fn bootstrap(from: &Path, to: &Path, key: &Path, keys_from: Option<&Path>) -> Result<Output> {
    bootstrap_with(from, to, key, keys_from, &[])
}

fn bootstrap_with(
    from: &Path,
    to: &Path,
    key: &Path,
    keys_from: Option<&Path>,
    more: &[&str],
) -> Result<Output> {
    let exe = mpp_tests::bins::workspace_bin("mpp-hub")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["admin", "bootstrap", "--from"])
        .arg(from)
        .arg("--data-dir")
        .arg(to)
        .arg("--hub-public-key")
        .arg(key)
        .arg("--registrar-key-file")
        .arg(mpp_tests::registry::write_registrar_key_file(to.parent().context("no parent")?)?);
    if let Some(k) = keys_from {
        cmd.arg("--keys-from").arg(k);
    }
    cmd.args(more);
    cmd.output().context("running mpp-hub admin bootstrap")
}

/// Runs a bootstrap expected to be refused; checks that it says so,
/// mentions `why`, and leaves neither the target nor a partial copy.
fn refused(from: &Path, to: &Path, key: &Path, why: &str) -> Result<String> {
    refused_with(from, to, key, why, &[])
}

/// [`refused`], with more flags.
fn refused_with(from: &Path, to: &Path, key: &Path, why: &str, more: &[&str]) -> Result<String> {
    let out = bootstrap_with(from, to, key, None, more)?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(!out.status.success(), "a bootstrap from {} succeeded", from.display());
    ensure!(
        stderr.contains("bootstrap refused") && stderr.contains(why),
        "the refusal says why ({why}):\n{stderr}"
    );
    let mut partial = to.as_os_str().to_owned();
    partial.push(".bootstrap-partial");
    ensure!(!to.exists() && !PathBuf::from(partial).exists(), "nothing is left of a refused bootstrap");
    Ok(stderr)
}

/// Opens a copied store's sled files directly, as anyone holding them could.
fn raw_db(dir: &Path) -> Result<sled::Db> {
    Ok(mpp_edge::sled_open::open_waiting_for_lock(&sled::Config::new().path(dir))?)
}

/// Flips the last byte of the first log block (the last byte of an LZ4
/// block is a literal, of an uncompressed one the last entry's last field).
fn flip_an_entry_byte(dir: &Path) -> Result<()> {
    let db = raw_db(dir)?;
    let (k, v) = db.scan_prefix(b"L").next().context("no log block")??;
    let mut v = v.to_vec();
    *v.last_mut().context("an empty block")? ^= 0x01;
    db.insert(k, v)?;
    db.flush()?;
    Ok(())
}

/// Changes one field of one case so that its value still decodes: the first
/// single-bit change from the value's end that reads back as another case.
fn alter_a_case(dir: &Path) -> Result<String> {
    let original = {
        let store = SledStore::open(dir)?;
        let case = store.cases().nth(3).context("fewer than 4 cases")??;
        case
    };
    let mut key = vec![b'C'];
    key.extend_from_slice(&original.tracking_number.digits());
    for back in 1..128usize {
        {
            let db = raw_db(dir)?;
            let mut v = db.get(&key)?.context("the case key")?.to_vec();
            ensure!(back <= v.len(), "no single-bit change of the case decodes");
            let i = v.len() - back;
            v[i] ^= 0x01;
            db.insert(&key, v)?;
            db.flush()?;
        }
        let decoded = SledStore::open(dir)?.case(&original.tracking_number);
        if matches!(&decoded, Ok(Some(c)) if *c != original) {
            return Ok(original.tracking_number.to_string());
        }
        let db = raw_db(dir)?;
        let mut v = db.get(&key)?.context("the case key")?.to_vec();
        let i = v.len() - back;
        v[i] ^= 0x01;
        db.insert(&key, v)?;
        db.flush()?;
    }
    Err(anyhow!("no single-bit change of the case decodes"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrapped_replica_resumes_the_stream_and_reaches_the_same_head() -> Result<()> {
    let seed = mpp_tests::rng::seed_from_env("MPP_TEST_SEED");
    let mut rng = Rng::new(seed);
    let nats = NatsServer::start().await?;
    let js = nats.jetstream().await?;
    let f = EventFactory::new(AGENCY, SERVICE, REGION);

    // Given: hub A has ingested some traffic and stopped (it signs its head).
    let mut a = HubProcess::spawn(&nats.url())?;
    a.wait_ready(READY_DEADLINE).await?;
    publish_envelope(&js, &f.standard(1)).await?;
    let snapshot_seq = publish_journeys(&js, &mut rng, &f, 0..JOURNEYS_BEFORE).await?;
    a.wait_caught_up(snapshot_seq, CATCH_UP_DEADLINE).await?;
    let snapshot_head = a.head_with_hash().await?;
    a.terminate().await?;
    let key = a.data_dir().join("keys").join("checkpoint.pub");
    let work = tempfile::tempdir()?;

    // Tampered copies are refused, and leave nothing behind.
    let copy = work.path().join("copy-entry");
    mpp_tests::copy_dir(a.data_dir(), &copy)?;
    flip_an_entry_byte(&copy)?;
    refused(&copy, &work.path().join("replica-entry"), &key, "log does not verify")?;
    let copy = work.path().join("copy-case");
    mpp_tests::copy_dir(a.data_dir(), &copy)?;
    let altered = alter_a_case(&copy)?;
    // By the commitment A signed when it stopped: refused with its reason;
    // by a replay: refused naming the case.
    refused(&copy, &work.path().join("replica-case"), &key, "PROJECTION_COMMITMENT_MISMATCH")?;
    let why = refused_with(&copy, &work.path().join("replica-case"), &key, "projection", &["--replay"])?;
    ensure!(why.contains(&altered), "the refusal names the altered case {altered}:\n{why}");

    // When: B's directory is bootstrapped from A's, with A's signing key.
    let b_dir = work.path().join("replica-b");
    let out = bootstrap(a.data_dir(), &b_dir, &key, Some(&a.data_dir().join("keys")))?;
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(out.status.success(), "bootstrap failed:\n{said}\n{}", String::from_utf8_lossy(&out.stderr));
    ensure!(
        said.contains(&format!("resumes the stream at {}", snapshot_seq + 1)),
        "bootstrap names where B resumes:\n{said}"
    );
    ensure!(said.contains("signed projection commitment"), "verified by the commitment A signed:\n{said}");

    // A's directory while A runs is refused (its lock is held).
    a.start()?;
    a.wait_ready(READY_DEADLINE).await?;
    refused(a.data_dir(), &work.path().join("replica-running"), &key, "sled locks the directory")?;

    // Then: B starts on it, at the snapshot's head, reading the stream from
    // the snapshot's sequence + 1.
    let mut b = HubProcess::spawn_with(
        &nats.url(),
        HubOptions {
            data_dir: Some(b_dir.clone()),
            consumer_name: Some("mpp-hub-b".to_owned()),
            ..HubOptions::default()
        },
    )?;
    b.wait_ready(READY_DEADLINE).await?;
    ensure!(b.head_with_hash().await? == snapshot_head, "B starts at the snapshot's head {snapshot_head:?}");
    let log = b.log_tail();
    ensure!(
        log.contains(&format!("\"from_stream_seq\":{}", snapshot_seq + 1)),
        "B's consumer starts after the snapshot:\n{log}"
    );

    // More traffic: both follow the stream to the same head.
    let last = publish_journeys(&js, &mut rng, &f, JOURNEYS_BEFORE..JOURNEYS_BEFORE + JOURNEYS_AFTER).await?;
    a.wait_caught_up(last, CATCH_UP_DEADLINE).await?;
    b.wait_caught_up(last, CATCH_UP_DEADLINE).await?;
    let (head_a, head_b) = (a.head_with_hash().await?, b.head_with_hash().await?);
    ensure!(head_a == head_b, "A's head {head_a:?}, B's {head_b:?}");
    ensure!(head_a.1 > snapshot_head.1, "the heads moved past the snapshot");
    ensure!(
        std::fs::read(b_dir.join("keys").join("checkpoint.pub"))? == std::fs::read(&key)?,
        "B signs with A's key"
    );
    println!("seed {seed}: snapshot at stream seq {snapshot_seq}, both heads {head_a:?}");
    b.terminate().await?;
    a.terminate().await?;
    Ok(())
}
