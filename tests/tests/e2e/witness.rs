//! Needs: the `cryptography` package in the project's Python environment
//! (`MPP_PYTHON`; tests/run-all.sh installs it into `.venv`).
//!
//! Witnessed transparency against real processes: a real nats-server,
//! real `mpp-hub serve` and real `mpp-witness serve` binaries.
//!
//! - Three witnesses cosign a running hub's checkpoints across `kill -9`
//!   and clean restarts of witnesses and hub; no witness ever goes back;
//!   the hub serves the cosigned checkpoint at `GET /checkpoint`; `mpp-hub
//!   audit verify --witness-quorum 2` passes with 2 of 3 (remotely and on
//!   the data directory) and fails when the checkpoint carries only 1; an
//!   independent verifier written from the C2SP specs
//!   (`docs/verify_cosignatures.py`) counts the cosignatures too.
//! - A hub restored from an old backup rolls its log back, then, fed a
//!   different suffix on another stream, signs another root for a size
//!   already cosigned: the witness refuses both, keeps evidence that
//!   `mpp-witness verify-evidence` checks offline, serves it at
//!   `/evidence` and in `/metrics`, and `mpp-witness check` exits 1.
//! - A citizen's receipt is checked in headless Chromium (the project's
//!   launcher, `mpp_tests::browser`): the case's opening entry against the
//!   checkpoint two witnesses cosigned, with WebCrypto, passes; the same
//!   proof with one byte of a path hash changed, or with a witness's
//!   cosignature changed, fails, each with the sentence the page shows
//!   (asserted, in Bahasa Indonesia and English); screenshots at 375 and
//!   1280 px go to `test-artifacts/receipt/` (printed); the downloaded proof
//!   passes `docs/verify_receipt.py`, and fails it changed. Needs Chromium.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use mpp_proto::agency::dukcapil::v1 as dk;
use mpp_tests::browser::{artifact_dir, Browser};
use mpp_tests::envelope::{event_id, publish, subject};
use mpp_tests::services::HubOptions;
use mpp_tests::witness::{self, WitnessProcess};
use mpp_tests::{wait_for, HubProcess, NatsServer};
use sha2::{Digest, Sha256};

/// The hub's origin with the default `--hub-id`.
const ORIGIN: &str = "mpp-hub/mpp-hub";

const AUDITOR_TOKEN: &str = "e2e-witness-auditor-token-not-a-secret";

/// How often the witnesses poll the hub and the hub the witnesses, ms.
const POLL_MS: u64 = 100;

const DEADLINE: Duration = Duration::from_secs(60);

/// Files of a test: the auditors' tokens file (for the hub) and the token
/// itself (for the witnesses and the audit commands).
struct Tokens {
    hashes: PathBuf,
    token: PathBuf,
}

fn tokens(dir: &Path) -> Result<Tokens> {
    let hashes = dir.join("auditors");
    std::fs::write(&hashes, format!("witness:{}\n", hex::encode(Sha256::digest(AUDITOR_TOKEN))))?;
    let token = dir.join("token");
    std::fs::write(&token, AUDITOR_TOKEN)?;
    Ok(Tokens { hashes, token })
}

/// A hub that signs a checkpoint after every commit (so every size the
/// test waits for is signed) and collects from `witnesses`.
fn spawn_hub(
    nats_url: &str,
    t: &Tokens,
    witnesses: &[&WitnessProcess],
    data_dir: Option<PathBuf>,
) -> Result<HubProcess> {
    let mut args: Vec<String> = [
        "--checkpoint-every-entries",
        "1",
        "--checkpoint-every-ms",
        "100",
        "--witness-collect-ms",
        &POLL_MS.to_string(),
        "--auditor-tokens-file",
        &t.hashes.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for w in witnesses {
        args.extend(["--witness-url".to_owned(), w.url(), "--witness-key".to_owned(), w.vkey().to_owned()]);
    }
    HubProcess::spawn_with(nats_url, HubOptions { extra_args: args, data_dir, ..HubOptions::default() })
}

fn hub_key_file(hub: &HubProcess) -> PathBuf {
    hub.data_dir().join("keys").join("checkpoint.pub")
}

/// Witnesses named `names`, a hub collecting from them (ready), and the
/// witnesses following it.
async fn witnessed_hub(
    nats_url: &str,
    names: &[&str],
    dir: &Path,
) -> Result<(Tokens, Vec<WitnessProcess>, HubProcess)> {
    let t = tokens(dir)?;
    let mut ws = Vec::new();
    for name in names {
        ws.push(WitnessProcess::create(name).await?);
    }
    let mut hub = spawn_hub(nats_url, &t, &ws.iter().collect::<Vec<_>>(), None)?;
    hub.wait_ready(DEADLINE).await?;
    let spec = hub_spec(&hub)?;
    for w in &mut ws {
        w.follow(&spec, &t.token, POLL_MS).await?;
    }
    Ok((t, ws, hub))
}

/// `ORIGIN,KEY,URL` of a hub, for `mpp-witness serve --hub`.
fn hub_spec(hub: &HubProcess) -> Result<String> {
    let key = std::fs::read_to_string(hub_key_file(hub))?;
    Ok(format!("{ORIGIN},{},{}", key.trim(), hub.grpc_endpoint()))
}

/// Publishes `n` messages tagged `tag` after stream seq `from`, one at a
/// time, each ingested (and so signed: one checkpoint per size) before the
/// next; returns the new last stream seq.
async fn feed(
    hub: &mut HubProcess,
    js: &async_nats::jetstream::Context,
    from: u64,
    n: u64,
    tag: &str,
) -> Result<u64> {
    for i in from + 1..=from + n {
        publish(js, &subject("e2e-witness", "izin"), Some(&event_id()), Bytes::from(format!("{tag} {i}")))
            .await?;
        hub.wait_caught_up(i, DEADLINE).await?;
    }
    Ok(from + n)
}

fn note_size(note: &str) -> Option<u64> {
    note.lines().nth(1)?.parse().ok()
}

/// The names of the witnesses whose signature lines a note carries.
fn cosigners(note: &str) -> Vec<String> {
    note.lines()
        .filter_map(|l| l.strip_prefix("\u{2014} "))
        .filter_map(|l| l.split(' ').next())
        .filter(|name| *name != ORIGIN)
        .map(str::to_owned)
        .collect()
}

/// Waits until the hub's `GET /checkpoint` is of tree size `size` and
/// cosigned by exactly `n` witnesses; the note.
async fn wait_cosigned(hub: &HubProcess, size: u64, n: usize) -> Result<String> {
    wait_for(&format!("GET /checkpoint of size {size} cosigned by {n}"), DEADLINE, || async move {
        let r = hub.get("/checkpoint").await?;
        let note = r.text();
        Ok((r.status == 200 && note_size(&note) == Some(size) && cosigners(&note).len() == n).then_some(note))
    })
    .await
}

/// Waits until `w` has cosigned tree size `size`; its note.
async fn wait_witness_at(w: &WitnessProcess, size: u64) -> Result<String> {
    wait_for(&format!("{} to cosign size {size}", w.name()), DEADLINE, || async move {
        Ok(w.cosigned(ORIGIN).await?.filter(|n| note_size(n) == Some(size)))
    })
    .await
}

/// Runs the project's Python `docs/<script>` with `args`: whether it
/// passed, and what it said.
async fn docs_python(script: &str, args: &[String]) -> Result<(bool, String)> {
    let python = std::env::var("MPP_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs").join(script);
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .args(args)
        .output()
        .await
        .with_context(|| format!("running {python} {}", script.display()))?;
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    ensure!(
        !said.contains("ModuleNotFoundError"),
        "{python} lacks `cryptography` (tests/run-all.sh installs it): {said}"
    );
    Ok((out.status.success(), said))
}

/// Runs `docs/verify_cosignatures.py` on `note`: whether at least `quorum`
/// of `vkeys` cosigned it, and what it said.
async fn cosignatures_with_python(
    note: &str,
    quorum: u64,
    vkeys: &[String],
    dir: &Path,
) -> Result<(bool, String)> {
    let file = dir.join("cosigned-for-python.note");
    std::fs::write(&file, note)?;
    let mut args = vec![file.display().to_string(), quorum.to_string()];
    args.extend(vkeys.iter().cloned());
    docs_python("verify_cosignatures.py", &args).await
}

/// Runs `mpp-hub args…`: exit code and stdout + stderr.
async fn hub_cli(args: &[String]) -> Result<(i32, String)> {
    let exe = mpp_tests::bins::workspace_bin("mpp-hub")?;
    let out = tokio::process::Command::new(exe).args(args).output().await?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok((out.status.code().unwrap_or(-1), text))
}

fn verify_args(hub: &HubProcess, keys: &[String], quorum: u64) -> Vec<String> {
    vec![
        "audit".into(),
        "verify".into(),
        "--hub-grpc".into(),
        hub.grpc_endpoint(),
        "--auditor-token".into(),
        AUDITOR_TOKEN.into(),
        "--public-key".into(),
        hub_key_file(hub).display().to_string(),
        "--witness-key".into(),
        keys.join(","),
        "--witness-quorum".into(),
        quorum.to_string(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witnesses_cosign_across_restarts_and_kill9_and_a_quorum_of_two_verifies() -> Result<()> {
    let nats = NatsServer::start().await?;
    let dir = tempfile::tempdir()?;
    let names = ["ombudsman.example/witness", "inspektorat.example/witness", "kemenpan.example/witness"];
    let (_t, mut ws, mut hub) = witnessed_hub(&nats.url(), &names, dir.path()).await?;
    let js = nats.jetstream().await?;
    let mut sent = feed(&mut hub, &js, 0, 3, "a").await?;
    let note = wait_cosigned(&hub, sent, 3).await?;
    println!("GET /checkpoint, cosigned by 3 witnesses:\n{note}");
    // An implementation written from the C2SP specs alone counts them.
    let vkeys: Vec<String> = ws.iter().map(|w| w.vkey().to_owned()).collect();
    let (ok, said) = cosignatures_with_python(&note, 3, &vkeys, dir.path()).await?;
    ensure!(ok && said.starts_with(&format!("OK size={sent} cosigned by 3 of 3")), "{said}");
    println!("docs/verify_cosignatures.py: {}", said.trim());
    let one_changed = note.replacen(&format!("\n{sent}\n"), &format!("\n{}\n", sent + 1), 1);
    let (ok, said) = cosignatures_with_python(&one_changed, 1, &vkeys, dir.path()).await?;
    ensure!(!ok && said.contains("0 valid cosignature(s)"), "a changed size kept its cosignatures: {said}");

    // kill -9 a witness while the log grows: it restarts on its state,
    // never below what it cosigned, and catches up.
    let before = note_size(&ws[0].cosigned(ORIGIN).await?.context("w1 cosigned nothing")?);
    ws[0].kill9()?;
    sent = feed(&mut hub, &js, sent, 2, "b").await?;
    ws[0].start().await?;
    let after = note_size(&ws[0].cosigned(ORIGIN).await?.context("w1 forgot its state")?);
    ensure!(after >= before, "w1 went back from {before:?} to {after:?} after kill -9");
    wait_cosigned(&hub, sent, 3).await?;

    // kill -9 the hub: it restarts with the cosignatures it kept.
    hub.kill9()?;
    hub.start()?;
    hub.wait_ready(DEADLINE).await?;
    let kept = hub.get("/checkpoint").await?.text();
    ensure!(cosigners(&kept).len() == 3, "after kill -9 the hub lost its cosignatures:\n{kept}");
    // A clean restart of another witness while the log grows.
    ws[1].terminate().await?;
    sent = feed(&mut hub, &js, sent, 2, "c").await?;
    ws[1].start().await?;
    let quorum_note = wait_cosigned(&hub, sent, 3).await?;
    let quorum_file = dir.path().join("cosigned.note");
    std::fs::write(&quorum_file, &quorum_note)?;
    for w in &ws {
        let r = w.check().await?;
        ensure!(r.code == 0 && r.stdout.contains("OK: no evidence"), "{} check: {r:?}", w.name());
    }

    // 2 of 3 required: passes on the latest checkpoint.
    let all: Vec<String> = ws.iter().map(|w| w.vkey().to_owned()).collect();
    let (code, out) = hub_cli(&verify_args(&hub, &all, 2)).await?;
    ensure!(
        code == 0 && out.contains(&format!("tree size {sent} cosigned by 3 witnesses (2 required)")),
        "{out}"
    );
    println!("audit verify --witness-quorum 2 (3 cosigned):\n{out}");
    // A proof bundle carries the cosigned checkpoint; check-proof counts it.
    let bundle = dir.path().join("bundle.json");
    let (code, out) = hub_cli(&[
        "audit".into(),
        "prove".into(),
        "--hub-grpc".into(),
        hub.grpc_endpoint(),
        "--auditor-token".into(),
        AUDITOR_TOKEN.into(),
        "--seq".into(),
        "2".into(),
        "--tree-size".into(),
        sent.to_string(),
        "--out".into(),
        bundle.display().to_string(),
    ])
    .await?;
    ensure!(code == 0, "audit prove: {out}");
    let check = |quorum: u64| {
        let (bundle, key, keys) =
            (bundle.display().to_string(), hub_key_file(&hub).display().to_string(), all.join(","));
        async move {
            hub_cli(&[
                "audit".into(),
                "check-proof".into(),
                "--bundle".into(),
                bundle,
                "--public-key".into(),
                key,
                "--witness-key".into(),
                keys,
                "--witness-quorum".into(),
                quorum.to_string(),
            ])
            .await
        }
    };
    let (code, out) = check(3).await?;
    ensure!(
        code == 0
            && out.contains(&format!("witnesses: tree size {sent} cosigned by 3 witnesses (3 required)")),
        "{out}"
    );

    // Only one witness left: the newest checkpoint carries 1 cosignature.
    ws[1].terminate().await?;
    ws[2].terminate().await?;
    let cosigned_by_3 = sent;
    sent = feed(&mut hub, &js, sent, 2, "d").await?;
    wait_cosigned(&hub, sent, 1).await?;
    let (code, out) = hub_cli(&verify_args(&hub, &all, 2)).await?;
    ensure!(
        code == 1 && out.contains("FAILED: witnesses") && out.contains("1 valid cosignature(s)"),
        "{out}"
    );
    println!("audit verify --witness-quorum 2 (1 cosigned):\n{out}");
    let (code, out) = hub_cli(&verify_args(&hub, &all, 1)).await?;
    ensure!(code == 0, "quorum 1 with 1 cosignature: {out}");
    // Ending at the checkpoint the three cosigned: OK, and the entries
    // after it are reported.
    let mut args = verify_args(&hub, &all, 2);
    args.extend(["--cosigned-checkpoint".into(), quorum_file.display().to_string()]);
    let (code, out) = hub_cli(&args).await?;
    let warning = format!("WARNING: entries {}..={sent}", cosigned_by_3 + 1);
    ensure!(code == 0 && out.contains(&warning), "{out}");

    // The data directory of the stopped hub: its kept cosignatures.
    hub.terminate().await?;
    let (code, out) = hub_cli(&[
        "audit".into(),
        "verify".into(),
        "--data-dir".into(),
        hub.data_dir().display().to_string(),
        "--public-key".into(),
        hub_key_file(&hub).display().to_string(),
        "--witness-key".into(),
        all.join(","),
        "--witness-quorum".into(),
        "2".into(),
    ])
    .await?;
    ensure!(
        code == 0
            && out.contains(&format!("tree size {cosigned_by_3} cosigned by 3"))
            && out.contains(&warning),
        "{out}"
    );
    for w in &mut ws {
        w.terminate().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_hub_s_rollback_and_split_view_are_refused_with_evidence() -> Result<()> {
    let nats = NatsServer::start().await?;
    let dir = tempfile::tempdir()?;
    let t = tokens(dir.path())?;
    let mut w = WitnessProcess::create("ombudsman.example/witness").await?;
    let mut hub = spawn_hub(&nats.url(), &t, &[&w], None)?;
    hub.wait_ready(DEADLINE).await?;
    w.follow(&hub_spec(&hub)?, &t.token, POLL_MS).await?;
    let js = nats.jetstream().await?;
    let mut sent = feed(&mut hub, &js, 0, 3, "honest").await?;
    wait_witness_at(&w, sent).await?;
    // The operator's backup at tree size 3.
    let backup = dir.path().join("backup.jsonl");
    let (code, out) = hub_cli(&[
        "admin".into(),
        "backup".into(),
        "--hub-grpc".into(),
        hub.grpc_endpoint(),
        "--auditor-token-file".into(),
        t.token.display().to_string(),
        "--out".into(),
        backup.display().to_string(),
    ])
    .await?;
    ensure!(code == 0, "admin backup: {out}");
    sent = feed(&mut hub, &js, sent, 2, "honest").await?;
    let cosigned = wait_witness_at(&w, sent).await?;
    let hub_key = std::fs::read_to_string(hub_key_file(&hub))?.trim().to_owned();
    hub.terminate().await?;

    // The hub restored from the old backup (same key), on another stream.
    let restored = dir.path().join("restored");
    let (code, out) = hub_cli(&[
        "admin".into(),
        "restore".into(),
        "--from".into(),
        backup.display().to_string(),
        "--data-dir".into(),
        restored.display().to_string(),
        "--keys-from".into(),
        hub.data_dir().join("keys").display().to_string(),
    ])
    .await?;
    ensure!(code == 0, "admin restore: {out}");
    let other = NatsServer::start().await?;
    let mut forked = spawn_hub(&other.url(), &t, &[&w], Some(restored))?;
    forked.wait_ready(DEADLINE).await?;
    w.follow(&hub_spec(&forked)?, &t.token, POLL_MS).await?;

    // Rollback: the restored hub serves tree size 3 after 5 was cosigned.
    let has = |kind: &'static str| {
        let w = &w;
        move || async move {
            let r = w.get("/evidence").await?;
            let v = r.json()?;
            let list = v.as_array().context("evidence is a list")?;
            Ok(list.iter().any(|e| e["kind"] == kind).then_some(()))
        }
    };
    wait_for("rollback evidence", DEADLINE, has("rollback")).await?;

    // Split view: fed a different suffix, it signs another root for 5.
    let js2 = other.jetstream().await?;
    for i in 1..=3 {
        publish(&js2, &subject("e2e-witness", "izin"), Some(&event_id()), Bytes::from(format!("filler {i}")))
            .await?;
    }
    feed(&mut forked, &js2, 3, 2, "forked").await?;
    wait_for("split-view evidence", DEADLINE, has("split-view")).await?;
    ensure!(
        w.cosigned(ORIGIN).await?.as_deref() == Some(cosigned.as_str()),
        "the witness cosigned something of the forked hub"
    );
    let metrics = w.get("/metrics").await?.text();
    let split = format!("mpp_witness_refused_total{{origin=\"{ORIGIN}\",kind=\"split-view\"}} ");
    ensure!(
        metrics.lines().any(|l| l.starts_with(&split) && !l.ends_with(" 0"))
            && !metrics.contains("mpp_witness_evidence_files 0"),
        "{metrics}"
    );
    let r = w.check().await?;
    ensure!(r.code == 1 && r.stdout.contains("EVIDENCE split-view"), "check: {r:?}");
    println!("mpp-witness check:\n{}", r.stdout);

    // The evidence verifies offline with the hub's public key alone.
    let file = std::fs::read_dir(w.state_dir().join("evidence"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("split-view-")))
        .context("no split-view evidence file")?;
    println!("{}:\n{}", file.display(), std::fs::read_to_string(&file)?);
    let path = file.display().to_string();
    let ok = witness::run(&["verify-evidence", &path, "--hub-key", &hub_key]).await?;
    ensure!(ok.code == 0 && ok.stdout.starts_with("SPLIT VIEW PROVEN"), "{ok:?}");
    println!("mpp-witness verify-evidence: {}", ok.stdout.trim());
    // And with the independent C2SP verifier (docs/verify_note.py): both
    // notes are the hub's, of one size, with two roots.
    let e: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file)?)?;
    let mut roots = Vec::new();
    for which in ["cosigned", "conflicting"] {
        let note = e[which].as_str().context("a note")?;
        let (ok, said) = crate::transparency::verify_with_python(note, ORIGIN, &hub_key, dir.path())?;
        ensure!(ok && said.starts_with(&format!("OK origin={ORIGIN} size=5 root=")), "{which}: {said}");
        roots.push(said.trim().to_owned());
    }
    ensure!(roots[0] != roots[1], "one root twice: {roots:?}");
    println!("docs/verify_note.py on the evidence: {roots:?}");
    // Doctored (the conflicting root changed): not proven.
    let mut e: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file)?)?;
    let conflicting = e["conflicting"].as_str().context("conflicting")?.to_owned();
    let root = conflicting.lines().nth(2).context("root line")?;
    e["conflicting"] = conflicting.replacen(root, &format!("{}=", "A".repeat(43)), 1).into();
    let doctored = dir.path().join("doctored.json");
    std::fs::write(&doctored, serde_json::to_vec(&e)?)?;
    let bad =
        witness::run(&["verify-evidence", &doctored.display().to_string(), "--hub-key", &hub_key]).await?;
    ensure!(bad.code == 1 && bad.stdout.contains("NOT PROVEN"), "{bad:?}");

    // An auditor holding the witness's cosigned checkpoint sees the forked
    // hub's log is not the one witnessed.
    let note_file = dir.path().join("cosigned.note");
    std::fs::write(&note_file, &cosigned)?;
    let mut args = verify_args(&forked, &[w.vkey().to_owned()], 1);
    args.extend(["--cosigned-checkpoint".into(), note_file.display().to_string()]);
    let (code, out) = hub_cli(&args).await?;
    ensure!(code == 1 && out.contains("FAILED: witnesses"), "verify of the forked hub: {out}");
    println!("audit verify of the forked hub against the cosigned checkpoint:\n{out}");
    forked.terminate().await?;
    w.terminate().await?;
    Ok(())
}

/// Runs `docs/verify_receipt.py` on `proof` (a receipt's JSON) with the
/// hub's key and `vkeys`: whether it passed, and what it said.
async fn receipt_with_python(
    proof: &str,
    hub: &HubProcess,
    vkeys: &[String],
    dir: &Path,
) -> Result<(bool, String)> {
    let file = dir.join("bukti.json");
    std::fs::write(&file, proof)?;
    let key = std::fs::read_to_string(hub_key_file(hub))?;
    let mut args = vec![file.display().to_string()];
    args.extend(["--origin", ORIGIN, "--hub-key", key.trim()].map(str::to_owned));
    for v in vkeys {
        args.extend(["--witness-key".to_owned(), v.clone()]);
    }
    docs_python("verify_receipt.py", &args).await
}

/// Sets the page's viewport: `width` CSS pixels, a phone's or a desktop's.
async fn viewport(b: &mut Browser, width: u32, mobile: bool) -> Result<()> {
    b.call(
        "Emulation.setDeviceMetricsOverride",
        serde_json::json!({ "width": width, "height": 900, "deviceScaleFactor": 1, "mobile": mobile }),
    )
    .await?;
    // Readable: nothing wider than the viewport (no sideways scrolling).
    let fits = b.eval("document.documentElement.scrollWidth <= window.innerWidth").await?;
    ensure!(fits == true, "the receipt is wider than {width} px");
    Ok(())
}

/// Clicks "Periksa / Verify" and waits for the verdict; its text.
async fn click_verify(b: &mut Browser) -> Result<String> {
    b.eval("document.getElementById('periksa-hasil').textContent = ''; document.getElementById('periksa-tombol').click(); true")
        .await?;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let text = b.eval_string("document.getElementById('periksa-hasil').innerText").await?;
        if !text.trim().is_empty() {
            return Ok(text);
        }
        ensure!(tokio::time::Instant::now() < deadline, "no verdict after clicking Periksa");
        tokio::time::sleep(Duration::from_millis(mpp_tests::wait::POLL_INTERVAL_MS)).await;
    }
}

/// Runs the page's check on the served proof changed by `change` (a
/// JavaScript statement on `p`); the verdict's text.
async fn verify_changed(b: &mut Browser, change: &str) -> Result<String> {
    let r = b
        .eval(&format!(
            "fetch(document.getElementById('periksa').dataset.bukti).then(r => r.json()).then(p => {{ {change}; \
             return window.mppPeriksa.periksa(p); }})"
        ))
        .await?;
    ensure!(r["ok"] == false, "a tampered proof passed: {r}");
    Ok(r["text"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_is_checked_in_the_browser_and_tampered_proofs_fail() -> Result<()> {
    // Fails (does not skip) when no browser can be found.
    let mut b = Browser::launch().await.context("the receipt check needs a headless browser")?;
    let nats = NatsServer::start().await?;
    let dir = tempfile::tempdir()?;
    let names = ["ombudsman.example/witness", "inspektorat.example/witness"];
    let (_t, ws, mut hub) = witnessed_hub(&nats.url(), &names, dir.path()).await?;
    let vkeys: Vec<String> = ws.iter().map(|w| w.vkey().to_owned()).collect();

    // A case opened for a walk-in at the Dukcapil counter (by the front
    // office): its tracking number and PIN.
    let mut dukcapil = mpp_tests::AgencyProcess::spawn_dukcapil(&nats.url(), "1771")?;
    dukcapil.wait_listening(DEADLINE).await?;
    let channel = tonic::transport::Channel::from_shared(dukcapil.grpc_endpoint())?.connect().await?;
    let mut client =
        dk::dukcapil_service_client::DukcapilServiceClient::with_interceptor(channel, dukcapil.bearer()?);
    let opened = client
        .ajukan_permohonan(mpp_tests::dukcapil::permohonan("", dk::Layanan::Kk))
        .await
        .context("AjukanPermohonan")?
        .into_inner();
    // Its opening ingested and cosigned by both witnesses: Dukcapil's three
    // standards, the front office's opening (a walk-in) and the filing,
    // published by two outboxes, so wait for all five.
    let js = nats.jetstream().await?;
    let last = wait_for("the case in the stream", DEADLINE, || {
        let js = js.clone();
        async move { Ok(mpp_tests::envelope::stream_last_seq(&js).await.ok().filter(|n| *n >= 5)) }
    })
    .await?;
    hub.wait_caught_up(last, DEADLINE).await?;
    let note = wait_cosigned(&hub, last, 2).await?;
    println!("the cosigned checkpoint the receipt is checked against:\n{note}");

    // The lookup with the PIN, then the receipt: its proof and the check.
    let page = |path: &str| format!("http://{}{path}", hub.http_addr());
    b.goto(&page("/lacak")).await?;
    let (tn, pin) = (serde_json::to_string(&opened.nomor_berkas)?, serde_json::to_string(&opened.pin)?);
    b.navigate_by(&format!(
        "document.getElementById('nomor').value = {tn}; document.getElementById('pin').value = {pin}; \
         document.getElementById('kirim').click();"
    ))
    .await?;
    b.goto(&page(&format!("/lacak/{}/tanda-terima", opened.nomor_berkas))).await?;
    let shown = b.eval_string("document.getElementById('periksa-checkpoint').textContent").await?;
    ensure!(shown.starts_with(&format!("{ORIGIN}\n")) && cosigners(&shown).len() == 2, "{shown}");
    let command = b.eval_string("document.getElementById('periksa-perintah').textContent").await?;
    ensure!(command.starts_with("python3 verify_receipt.py") && command.contains(&vkeys[1]), "{command}");
    ensure!(
        b.eval("!document.getElementById('periksa-data').open").await? == true,
        "with JavaScript the proof's data starts folded"
    );

    let artifacts = artifact_dir()?.join("receipt");
    let good = click_verify(&mut b).await?;
    println!("Chromium, the served proof:\n{good}");
    ensure!(good.starts_with("TERBUKTI: catatan nomor "), "{good}");
    ensure!(good.contains("PROVEN: log entry ") && good.contains("and 2 witnesses"), "{good}");
    ensure!(good.contains("ombudsman.example/witness, inspektorat.example/witness"), "{good}");
    viewport(&mut b, 375, true).await?;
    b.screenshot(&artifacts.join("receipt-ok-375.png")).await?;
    viewport(&mut b, 1280, false).await?;
    b.screenshot(&artifacts.join("receipt-ok-1280.png")).await?;

    // One byte of a proof hash changed: the path leads elsewhere.
    let bad = verify_changed(
        &mut b,
        "const h = p.inclusion_proof[0]; \
         p.inclusion_proof[0] = (h[0] === '0' ? '1' : '0') + h.slice(1)",
    )
    .await?;
    println!("Chromium, one byte of a proof hash changed:\n{bad}");
    ensure!(bad.starts_with("GAGAL: jalur bukti tidak mengarah ke akar log yang ditandatangani"), "{bad}");
    ensure!(bad.contains("FAILED: the inclusion proof does not lead to the root of the signed log"), "{bad}");
    b.screenshot(&artifacts.join("receipt-bad-path-1280.png")).await?;
    viewport(&mut b, 375, true).await?;
    b.screenshot(&artifacts.join("receipt-bad-path-375.png")).await?;

    // A wrong cosignature: one character of a witness's signature changed.
    let bad = verify_changed(
        &mut b,
        "const ls = p.checkpoint.split('\\n'); \
         const i = ls.findIndex(l => l.startsWith('\\u2014 ombudsman.example/witness ')); \
         const c = ls[i].length - 20; \
         ls[i] = ls[i].slice(0, c) + (ls[i][c] === 'A' ? 'B' : 'A') + ls[i].slice(c + 1); \
         p.checkpoint = ls.join('\\n')",
    )
    .await?;
    println!("Chromium, a wrong cosignature:\n{bad}");
    ensure!(bad.starts_with("GAGAL: tanda tangan saksi ombudsman.example/witness tidak sah"), "{bad}");
    ensure!(
        bad.contains("FAILED: the cosignature of witness ombudsman.example/witness does not verify"),
        "{bad}"
    );
    b.screenshot(&artifacts.join("receipt-bad-cosignature-375.png")).await?;
    // The proof's data (what a browser without JavaScript shows unfolded)
    // fits a phone too: long hashes and the command wrap.
    b.eval("document.getElementById('periksa-data').open = true").await?;
    viewport(&mut b, 375, true).await?;
    b.screenshot(&artifacts.join("receipt-data-375.png")).await?;

    // In English, the English sentence comes first.
    b.goto(&page(&format!("/lacak/{}/tanda-terima?lang=en", opened.nomor_berkas))).await?;
    viewport(&mut b, 1280, false).await?;
    let good_en = click_verify(&mut b).await?;
    ensure!(good_en.starts_with("PROVEN: log entry "), "{good_en}");
    b.screenshot(&artifacts.join("receipt-ok-en-1280.png")).await?;

    // The same proof, checked offline from the download, passes; changed, fails.
    let proof =
        b.eval_string("fetch(document.getElementById('periksa').dataset.bukti).then(r => r.text())").await?;
    let (ok, said) = receipt_with_python(&proof, &hub, &vkeys, dir.path()).await?;
    ensure!(ok && said.starts_with("OK: entry "), "docs/verify_receipt.py on the served proof: {said}");
    println!("docs/verify_receipt.py: {}", said.trim());
    let mut tampered: serde_json::Value = serde_json::from_str(&proof)?;
    let h = tampered["inclusion_proof"][0].as_str().context("no path")?.to_owned();
    tampered["inclusion_proof"][0] =
        format!("{}{}", if h.starts_with('0') { '1' } else { '0' }, &h[1..]).into();
    let (ok, said) = receipt_with_python(&tampered.to_string(), &hub, &vkeys, dir.path()).await?;
    ensure!(!ok && said.contains("does not lead to the root"), "a changed proof hash passed offline: {said}");

    // Without the case's session there is no proof to take.
    let r = hub.get(&format!("/lacak/{}/bukti", opened.nomor_berkas)).await?;
    ensure!(
        r.status == 400 && r.text().contains("\"PIN_REQUIRED\""),
        "bukti without a session: {}",
        r.text()
    );
    println!("screenshots in {}", artifacts.display());
    b.close().await?;
    dukcapil.terminate().await?;
    hub.terminate().await?;
    Ok(())
}
