//! Determinism across replicas (docs/DESIGN.md invariant 4) and the auditor's
//! tools on real hubs: two `mpp-hub serve` processes with their own data
//! directories and their own durable consumers read the same JetStream
//! stream while events flow (one of them is killed with SIGKILL mid-stream
//! and restarted). After both have caught up and stopped, their logs are
//! byte-identical, entry by entry and as `mpp-hub audit export` writes them,
//! and the Merkle roots each one signed are the roots of the other's log
//! (the two keys differ; the roots must not). Then `audit verify` (with each
//! hub's public key) and `audit rebuild` pass on both, and remote mode
//! (`--hub-grpc`, an auditor's token) verifies, exports and proves over the
//! running hub's audit service.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use mpp_core::merkle;
use mpp_store::{SledStore, Store};
use mpp_tests::envelope::{
    encode, publish, publish_envelope, random_journey, stream_last_seq, subject, tracking_number,
    EventFactory,
};
use mpp_tests::rng::Rng;
use mpp_tests::services::HubOptions;
use mpp_tests::{bins, HubProcess, NatsServer, READY_DEADLINE};
use sha2::{Digest, Sha256};

const REGION: &str = "1705";
const AGENCY: &str = "e2e-audit";
const SERVICE: &str = "izin";

/// Journeys published (about five events each), by two publishers.
const JOURNEYS_PER_PUBLISHER: u64 = 120;

const CATCH_UP_DEADLINE: Duration = Duration::from_secs(180);

async fn publisher(
    js: async_nats::jetstream::Context,
    seed: u64,
    index: u64,
    done: Arc<AtomicBool>,
) -> Result<u64> {
    let mut rng = Rng::new(seed ^ (index + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let f = EventFactory::new(AGENCY, SERVICE, REGION);
    let mut published = 0;
    for j in 0..JOURNEYS_PER_PUBLISHER {
        let tn = tracking_number(1705, (index + 1) * 1_000_000 + j)?;
        let journey = random_journey(&mut rng, &f, &tn, &format!("P{index}-{j}"));
        for e in &journey.events {
            publish_envelope(&js, e).await?;
            published += 1;
        }
        // Bad input too, so the logs hold rejections and duplicates: bytes
        // that are no envelope, and an event published again without a
        // message id (JetStream stores it; the hub records a duplicate).
        if rng.chance(10) {
            publish(&js, &subject(AGENCY, SERVICE), None, vec![0xff, 0x00, 0x13].into()).await?;
            published += 1;
        }
        if rng.chance(10) {
            publish(&js, &subject(AGENCY, SERVICE), None, encode(&journey.events[0])).await?;
            published += 1;
        }
    }
    done.store(true, Ordering::Relaxed);
    Ok(published)
}

/// Runs `mpp-hub audit … --data-dir DIR`; returns status and stdout.
fn audit(args: &[&str], data_dir: &Path) -> Result<(i32, String)> {
    let dir = data_dir.to_str().context("data dir path")?;
    audit_cmd(&[args, &["--data-dir", dir]].concat())
}

/// Runs `mpp-hub audit …`; returns status and stdout (status 2, an error
/// rather than a finding, fails).
fn audit_cmd(args: &[&str]) -> Result<(i32, String)> {
    let exe = bins::workspace_bin("mpp-hub")?;
    let out = Command::new(exe)
        .arg("audit")
        .args(args)
        .env("MPP_LOG", "warn")
        .output()
        .context("running mpp-hub audit")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.code() == Some(2) {
        bail!("mpp-hub audit {args:?}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((out.status.code().unwrap_or(-1), stdout))
}

/// The entry lines of an export (checkpoint lines differ between hubs: other
/// keys, other signing times).
fn export_entry_lines(data_dir: &Path, out: &Path) -> Result<Vec<String>> {
    let exe = bins::workspace_bin("mpp-hub")?;
    let status = Command::new(exe)
        .args(["audit", "export", "--data-dir"])
        .arg(data_dir)
        .arg("--out")
        .arg(out)
        .env("MPP_LOG", "warn")
        .status()
        .context("running mpp-hub audit export")?;
    ensure!(status.success(), "mpp-hub audit export failed: {status}");
    let text = std::fs::read_to_string(out)?;
    Ok(text.lines().filter(|l| l.starts_with("{\"type\":\"entry\"")).map(str::to_owned).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hubs_on_one_stream_hold_byte_identical_logs_and_sign_equal_roots() -> Result<()> {
    let seed = mpp_tests::rng::seed_from_env("MPP_TEST_SEED");
    let mut rng = Rng::new(seed);
    let nats = NatsServer::start().await?;
    let mut a = HubProcess::spawn_with(
        &nats.url(),
        HubOptions {
            consumer_name: Some("hub-a".to_owned()),
            batch_max: Some(1 + rng.below(200) as u32),
            ..Default::default()
        },
    )?;
    let mut b = HubProcess::spawn_with(
        &nats.url(),
        HubOptions {
            consumer_name: Some("hub-b".to_owned()),
            batch_max: Some(1 + rng.below(200) as u32),
            ..Default::default()
        },
    )?;
    println!("hub a: {:?}\nhub b: {:?}", a.process().args(), b.process().args());
    a.wait_ready(READY_DEADLINE).await?;
    b.wait_ready(READY_DEADLINE).await?;
    let js = nats.jetstream().await?;
    publish_envelope(&js, &EventFactory::new(AGENCY, SERVICE, REGION).standard(1)).await?;

    let done = Arc::new(AtomicBool::new(false));
    let publishers: Vec<_> =
        (0..2).map(|i| tokio::spawn(publisher(js.clone(), seed, i, done.clone()))).collect();
    // While events flow: kill hub b once it has ingested something, and
    // start it again; it resumes from its own checkpoint.
    let addr = b.http_addr();
    let floor = mpp_tests::wait_for("hub b to ingest some events", CATCH_UP_DEADLINE, || async move {
        let head = mpp_tests::services::read_head(addr).await?;
        Ok((head.last_seq > 20).then_some(head.last_seq))
    })
    .await?;
    // It comes back with an auditor's token, for the remote checks below.
    let work = mpp_tests::temp_dir("mpp-audit-e2e-")?;
    let token = format!("e2e-auditor-{seed}");
    let tokens = work.path().join("auditors");
    std::fs::write(&tokens, format!("e2e-auditor:{}\n", hex::encode(Sha256::digest(token.as_bytes()))))?;
    b.kill9()?;
    b.process().env("MPP_AUDITOR_TOKENS_FILE", tokens.to_str().context("tokens path")?);
    b.start()?;
    println!("hub b killed at seq >= {floor} and restarted");
    let mut published = 1;
    for p in publishers {
        published += p.await??;
    }
    ensure!(done.load(Ordering::Relaxed));
    let last = stream_last_seq(&js).await?;
    ensure!(last == published, "stream holds {last} messages, {published} published");
    b.wait_ready(READY_DEADLINE).await?;
    a.wait_caught_up(last, CATCH_UP_DEADLINE).await?;
    b.wait_caught_up(last, CATCH_UP_DEADLINE).await?;

    // Remote mode, over hub b's audit service: the signed prefix of its log
    // verifies with its public key, exports, and proves one entry.
    let url = b.grpc_endpoint();
    let key_b = b.data_dir().join("keys").join("checkpoint.pub");
    let key_b = key_b.to_str().context("key path")?.to_owned();
    let remote = ["--hub-grpc", url.as_str(), "--auditor-token", token.as_str()];
    let (code, out) = audit_cmd(&[&["verify", "--public-key", &key_b][..], &remote].concat())?;
    ensure!(code == 0 && out.starts_with("OK: "), "remote verify: {out}");
    let remote_export = work.path().join("remote.jsonl");
    let remote_export_s = remote_export.to_str().context("path")?;
    let (code, out) = audit_cmd(&[&["export", "--out", remote_export_s][..], &remote].concat())?;
    ensure!(code == 0, "remote export: {out}");
    let bundle = work.path().join("proof.json");
    let bundle_s = bundle.to_str().context("path")?;
    let (code, out) = audit_cmd(&[&["prove", "--seq", "5", "--out", bundle_s][..], &remote].concat())?;
    ensure!(code == 0, "remote prove: {out}");
    let (code, out) = audit_cmd(&["check-proof", "--bundle", bundle_s, "--public-key", &key_b])?;
    ensure!(code == 0 && out.starts_with("OK: entry 5 "), "check-proof of a remote bundle: {out}");
    let (code, out) =
        audit_cmd(&[&["verify"][..], &["--hub-grpc", url.as_str(), "--auditor-token", "wrong"]].concat())
            .or_else(|e| Ok::<_, anyhow::Error>((2, e.to_string())))?;
    ensure!(code == 2 && out.contains("Unauthenticated"), "a wrong token: {out}");

    a.terminate().await?;
    b.terminate().await?;

    // Byte-identical logs, and the same head.
    let (entries_a, head_a, frontier_a) = read_log(a.data_dir())?;
    let (entries_b, head_b, frontier_b) = read_log(b.data_dir())?;
    ensure!(entries_a.len() as u64 == last, "{} entries for {last} stream messages", entries_a.len());
    ensure!(head_a == head_b, "heads differ: {head_a:?} vs {head_b:?}");
    if let Some(i) = entries_a.iter().zip(&entries_b).position(|(x, y)| x != y) {
        bail!("the logs differ first at seq {}", i + 1);
    }
    ensure!(entries_a.len() == entries_b.len(), "the logs differ in length");
    ensure!(frontier_a.root() == frontier_b.root(), "the Merkle roots of equal logs differ");
    let lines_a = export_entry_lines(a.data_dir(), &work.path().join("a.jsonl"))?;
    let lines_b = export_entry_lines(b.data_dir(), &work.path().join("b.jsonl"))?;
    ensure!(lines_a.len() as u64 == last && lines_a == lines_b, "the exports' entry lines differ");
    let remote_lines: Vec<String> = std::fs::read_to_string(&remote_export)?
        .lines()
        .filter(|l| l.starts_with("{\"type\":\"entry\""))
        .map(str::to_owned)
        .collect();
    ensure!(
        !remote_lines.is_empty() && lines_a.starts_with(&remote_lines),
        "the remote export ({} entries) is not a prefix of the local one",
        remote_lines.len()
    );
    let rejected = entries_a
        .iter()
        .filter(|e| mpp_core::LogEntry::decode(e).map_or(true, |e| e.verdict != mpp_core::Verdict::Accepted))
        .count();
    println!("seed {seed}: {last} entries ({rejected} rejected or duplicate), byte-identical on both hubs");

    // Each hub's signed roots are the other's roots at the same size.
    let store_a = SledStore::open(a.data_dir())?;
    let store_b = SledStore::open(b.data_dir())?;
    let mut compared = 0;
    for (signer, other) in [(&store_a, &store_b), (&store_b, &store_a)] {
        for cp in signer.checkpoints(0, u64::MAX) {
            let c = cp?.checkpoint;
            let root = merkle::root_at(other, c.tree_size).map_err(|e| anyhow::anyhow!("{e}"))?;
            ensure!(
                root == c.root_hash,
                "the root signed at tree size {} is not the other hub's",
                c.tree_size
            );
            compared += 1;
        }
    }
    ensure!(compared >= 2, "the hubs signed {compared} checkpoints in all");
    let (latest_a, latest_b) = (store_a.latest_checkpoint()?, store_b.latest_checkpoint()?);
    drop((store_a, store_b));
    println!(
        "{compared} signed roots compared; latest: a {:?}, b {:?}",
        latest_a.map(|c| c.checkpoint.tree_size),
        latest_b.map(|c| c.checkpoint.tree_size)
    );

    // The auditor's tools agree, each with its hub's own public key.
    for hub in [&a, &b] {
        let key = hub.data_dir().join("keys").join("checkpoint.pub");
        let key = key.to_str().context("key path")?;
        let (code, out) = audit(&["verify", "--public-key", key], hub.data_dir())?;
        ensure!(code == 0 && out.starts_with(&format!("OK: {last} entries")), "audit verify: {out}");
        let (code, out) = audit(&["rebuild"], hub.data_dir())?;
        ensure!(code == 0 && out.starts_with("identical:"), "audit rebuild: {out}");
    }
    Ok(())
}

type Log = (Vec<Vec<u8>>, mpp_store::Head, merkle::MerkleFrontier);

/// Every entry's stored bytes, the head and the Merkle frontier of a
/// stopped hub's store.
fn read_log(data_dir: &Path) -> Result<Log> {
    let store = SledStore::open(data_dir).with_context(|| format!("opening {}", data_dir.display()))?;
    let (head, frontier) = store.head_and_frontier()?;
    let entries = store.entries(1).map(|e| e.map(|e| e.encode())).collect::<Result<Vec<_>, _>>()?;
    Ok((entries, head, frontier))
}
