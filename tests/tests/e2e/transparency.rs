//! Needs: the `cryptography` package in the project's Python environment
//! (`MPP_PYTHON`; tests/run-all.sh installs it into `.venv`).
//!
//! The hub's checkpoints as C2SP signed notes (tlog-checkpoint): a running
//! hub serves its latest checkpoint at `GET /checkpoint` and in the audit
//! API's `SignedCheckpoint.note`, the same text in both; an independent
//! verifier written from the C2SP specifications alone
//! (`docs/verify_note.py`) accepts it under the hub's public key and the
//! key name = origin, and refuses it once one byte of the body changes.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use mpp_proto::v1::audit_service_client::AuditServiceClient;
use mpp_proto::v1::GetLatestCheckpointRequest;
use mpp_tests::envelope::{event_id, publish, subject};
use mpp_tests::services::{Bearer, HubOptions};
use mpp_tests::{HubProcess, NatsServer};
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

/// Messages published (each becomes one log entry, accepted or not).
const MESSAGES: u64 = 12;

/// The hub signs a checkpoint every this many entries in this test, and at
/// least every [`CHECKPOINT_EVERY_MS`] while the log grows.
const CHECKPOINT_EVERY_ENTRIES: u64 = 5;
const CHECKPOINT_EVERY_MS: u64 = 200;

const DEADLINE: Duration = Duration::from_secs(60);

const AUDITOR_TOKEN: &str = "e2e-auditor-token-not-a-secret";

/// Runs `docs/verify_note.py` on `note` (written to `dir`): whether it
/// accepted it, and what it said.
pub(crate) fn verify_with_python(
    note: &str,
    name: &str,
    public_key_hex: &str,
    dir: &Path,
) -> Result<(bool, String)> {
    let file = dir.join("checkpoint.note");
    std::fs::write(&file, note)?;
    let python = std::env::var("MPP_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/verify_note.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(&file)
        .arg(name)
        .arg(public_key_hex)
        .output()
        .with_context(|| format!("running {python} {}", script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !stderr.contains("ModuleNotFoundError"),
        "{python} lacks the `cryptography` package (tests/run-all.sh installs it into .venv): {stderr}"
    );
    Ok((out.status.success(), format!("{stdout}{stderr}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_note_verifies_with_an_independent_c2sp_verifier() -> Result<()> {
    let nats = NatsServer::start().await?;
    let dir = tempfile::tempdir()?;
    let tokens = dir.path().join("auditors");
    std::fs::write(&tokens, format!("e2e-auditor:{}\n", hex::encode(Sha256::digest(AUDITOR_TOKEN))))?;
    let mut hub = HubProcess::spawn_with(
        &nats.url(),
        HubOptions {
            extra_args: vec![
                "--checkpoint-every-entries".to_owned(),
                CHECKPOINT_EVERY_ENTRIES.to_string(),
                "--checkpoint-every-ms".to_owned(),
                CHECKPOINT_EVERY_MS.to_string(),
                "--auditor-tokens-file".to_owned(),
                tokens.display().to_string(),
            ],
            ..HubOptions::default()
        },
    )?;
    hub.wait_ready(DEADLINE).await?;
    // Before any checkpoint: a JSON 404 with its reason code.
    let none = hub.get("/checkpoint").await?;
    ensure!(none.status == 404 && none.text().contains("NOT_FOUND"), "{} {}", none.status, none.text());

    let js = nats.jetstream().await?;
    for i in 0..MESSAGES {
        publish(&js, &subject("e2e-note", "izin"), Some(&event_id()), Bytes::from(format!("entry {i}")))
            .await?;
    }
    hub.wait_caught_up(MESSAGES, DEADLINE).await?;
    // The timer signs the caught-up head soon after the last batch.
    let want_size = MESSAGES;
    let http = mpp_tests::wait_for("a checkpoint note of the caught-up log", DEADLINE, || {
        let hub = &hub;
        async move {
            let r = hub.get("/checkpoint").await?;
            let text = r.text();
            Ok((r.status == 200 && text.lines().nth(1) == Some(want_size.to_string().as_str())).then_some(r))
        }
    })
    .await?;
    ensure!(http.header("content-type").is_some_and(|t| t.starts_with("text/plain")), "{:?}", http.headers);
    let note = http.text();
    println!("GET /checkpoint:\n{note}");

    // The audit API carries the same note.
    let channel = Channel::from_shared(hub.grpc_endpoint())?.connect().await?;
    let mut audit = AuditServiceClient::with_interceptor(channel, Bearer::new(AUDITOR_TOKEN)?);
    let latest = audit.get_latest_checkpoint(GetLatestCheckpointRequest {}).await?.into_inner();
    ensure!(latest.note == note, "audit API note differs:\n{}\nvs HTTP:\n{note}", latest.note);

    let origin = note.lines().next().context("empty note")?.to_owned();
    let public_key = std::fs::read_to_string(hub.data_dir().join("keys").join("checkpoint.pub"))?;
    let (ok, said) = verify_with_python(&note, &origin, public_key.trim(), dir.path())?;
    ensure!(ok, "the independent verifier refused the hub's note: {said}");
    ensure!(said.starts_with(&format!("OK origin={origin} size={want_size} root=")), "{said}");
    println!("docs/verify_note.py: {}", said.trim());

    // One byte of the body changed: refused.
    let forged = note.replacen(&format!("\n{want_size}\n"), &format!("\n{}\n", want_size + 1), 1);
    let (ok, said) = verify_with_python(&forged, &origin, public_key.trim(), dir.path())?;
    ensure!(!ok && said.contains("does not verify"), "a forged size passed: {said}");
    // Another key name: no signature by that key.
    let (ok, said) = verify_with_python(&note, "mpp-hub/someone-else", public_key.trim(), dir.path())?;
    ensure!(!ok && said.contains("no signature by key"), "{said}");
    hub.terminate().await?;
    Ok(())
}
