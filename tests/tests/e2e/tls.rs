//! TLS on the real binaries: `mpp-dukcapil` and `mpp-hub serve` started with
//! `--tls-cert-file` / `--tls-key-file` (a throw-away CA). An application
//! filed over gRPC+TLS at the agency reaches a case lookup over HTTPS at the
//! hub, and `mpp-hub audit verify` checks the log over the audit service with
//! `--tls-ca-file`. Plaintext clients and clients trusting another CA get
//! nothing; a wrong key file stops the service at start with an error naming
//! the file. The agency's `/metrics` is HTTPS too. Afterwards neither log
//! holds a token or a line of a key file.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use mpp_edge::tls::client_tls_config;
use mpp_edge::tls::test_pki::{https_get, TestPki};
use mpp_proto::agency::dukcapil::v1 as dk;
use mpp_tests::bins;
use mpp_tests::envelope::StreamIds;
use mpp_tests::ports::free_addr;
use mpp_tests::process::ManagedProcess;
use mpp_tests::services::{AgencyOptions, TEST_PIN_PEPPER};
use mpp_tests::wait::wait_for;
use mpp_tests::{AgencyProcess, NatsServer};
use sha2::{Digest, Sha256};
use tonic::transport::Endpoint;

const REGION: &str = "1771";
const START_DEADLINE: Duration = Duration::from_secs(60);
const LOOKUP_DEADLINE: Duration = Duration::from_secs(60);
/// Longest one gRPC call (connecting included) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// `mpp-hub serve` over TLS on free loopback ports.
fn spawn_hub(
    nats_url: &str,
    dir: &Path,
    pki: &TestPki,
    auditors: &Path,
) -> Result<(ManagedProcess, SocketAddr, SocketAddr)> {
    let (grpc, http) = (free_addr()?, free_addr()?);
    let pepper = dir.join("pin-pepper");
    std::fs::write(&pepper, TEST_PIN_PEPPER)?;
    let path = |p: &Path| p.display().to_string();
    let args = vec![
        "serve".to_owned(),
        "--nats-url".to_owned(),
        nats_url.to_owned(),
        "--data-dir".to_owned(),
        path(&dir.join("data")),
        "--grpc-addr".to_owned(),
        grpc.to_string(),
        "--http-addr".to_owned(),
        http.to_string(),
        "--pin-pepper-file".to_owned(),
        path(&pepper),
        "--registrar-key-file".to_owned(),
        path(&mpp_tests::registry::write_registrar_key_file(dir)?),
        "--auditor-tokens-file".to_owned(),
        path(auditors),
        "--checkpoint-every-ms".to_owned(),
        "100".to_owned(),
        "--tls-cert-file".to_owned(),
        path(&pki.cert),
        "--tls-key-file".to_owned(),
        path(&pki.key),
        "--log-format".to_owned(),
        "json".to_owned(),
    ];
    let mut hub =
        ManagedProcess::new("mpp-hub", bins::workspace_bin("mpp-hub")?, args, dir.join("mpp-hub.log"));
    // The hub's own debug logs too: even there no secret may appear.
    hub.env(
        "MPP_LOG",
        "info,mpp_hub=debug,mpp_ledger=debug,mpp_lookup=debug,mpp_ops=debug,mpp_audit=debug,mpp_edge=debug,mpp_agency_kit=debug",
    );
    hub.start()?;
    Ok((hub, grpc, http))
}

/// Every line of a PEM file that is not a `-----BEGIN/END` marker.
fn pem_body_lines(file: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(file)?;
    Ok(text.lines().filter(|l| !l.starts_with("-----") && !l.is_empty()).map(str::to_owned).collect())
}

/// Fails if `log` holds any of `secrets`.
fn ensure_no_secret(name: &str, log: &str, secrets: &[String]) -> Result<()> {
    for s in secrets {
        ensure!(
            !log.contains(s.as_str()),
            "{name}'s log holds a secret ({} chars starting {:?})",
            s.len(),
            &s[..4]
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_filed_over_tls_reaches_a_lookup_over_https() -> Result<()> {
    let work = mpp_tests::temp_dir("mpp-tls-e2e-")?;
    let pki = TestPki::generate(work.path()).map_err(|e| anyhow::anyhow!("generating the test PKI: {e}"))?;
    let nats = NatsServer::start().await?;

    // Given: the Dukcapil service over TLS.
    let tls_args = vec![
        "--tls-cert-file".to_owned(),
        pki.cert.display().to_string(),
        "--tls-key-file".to_owned(),
        pki.key.display().to_string(),
    ];
    let metrics = free_addr()?;
    let mut options = AgencyOptions::region(REGION);
    options.extra_args = tls_args.clone();
    options.extra_args.extend(["--metrics-addr".to_owned(), metrics.to_string()]);
    let mut agency = AgencyProcess::spawn("mpp-dukcapil", &nats.url(), options)?;
    agency.wait_listening(START_DEADLINE).await?;

    // And the hub over TLS, with an auditor's token.
    let auditor_token = format!("e2e-tls-auditor-{}", uuid::Uuid::now_v7().simple());
    let auditors = work.path().join("auditors");
    std::fs::write(
        &auditors,
        format!("e2e-auditor:{}\n", hex::encode(Sha256::digest(auditor_token.as_bytes()))),
    )?;
    let hub_dir = work.path().join("hub");
    std::fs::create_dir_all(&hub_dir)?;
    let (mut hub, hub_grpc, hub_http) = spawn_hub(&nats.url(), &hub_dir, &pki, &auditors)?;
    wait_for("the hub to answer /healthz over HTTPS", START_DEADLINE, || {
        let running = hub.ensure_running();
        let ca = pki.ca.clone();
        async move {
            running?;
            match https_get(hub_http, "localhost", &ca, "/healthz", &[]).await {
                Ok((200, _)) => Ok(Some(())),
                Ok((status, body)) => bail!("{status} {body}"),
                Err(e) => bail!(e),
            }
        }
    })
    .await?;

    // When: an application is filed over gRPC+TLS (trusting the test CA).
    let channel = Endpoint::from_shared(format!("https://localhost:{}", agency.grpc_addr().port()))?
        .timeout(CALL_TIMEOUT)
        .connect_timeout(CALL_TIMEOUT)
        .tls_config(client_tls_config(&pki.ca)?)?
        .connect()
        .await
        .context("connecting to mpp-dukcapil over TLS")?;
    let mut client =
        dk::dukcapil_service_client::DukcapilServiceClient::with_interceptor(channel, agency.bearer()?);
    let filed = client
        .ajukan_permohonan(mpp_tests::dukcapil::permohonan("", dk::Layanan::Kk))
        .await
        .context("AjukanPermohonan over TLS")?
        .into_inner();
    let tn = filed.nomor_berkas.clone();
    ensure!(mpp_tests::pin::is_strong(&filed.pin), "a new case's answer carries its PIN");
    let pin = filed.pin.clone();

    // Then: once the hub has ingested the answered events (read over
    // HTTPS: lookups of a case not yet there would count towards its
    // lockout), the case is visible over HTTPS.
    ensure!(!filed.event_ids.is_empty(), "AjukanPermohonan answered no event ids");
    let js = nats.jetstream().await?;
    let last = wait_for("the answered events in the stream", LOOKUP_DEADLINE, || {
        let (js, want) = (&js, &filed.event_ids);
        async move {
            // A few dozen messages: read from the start each time.
            let mut ids = StreamIds::new();
            ids.read_to_end(js).await?;
            let missing = ids.missing(want);
            if missing.is_empty() {
                Ok(want.iter().flat_map(|id| ids.seqs(id)).copied().max())
            } else {
                bail!("missing {missing:?}")
            }
        }
    })
    .await?;
    wait_for(&format!("the hub to ingest up to stream seq {last}"), LOOKUP_DEADLINE, || {
        let running = hub.ensure_running();
        let ca = pki.ca.clone();
        async move {
            running?;
            let (status, body) = https_get(hub_http, "localhost", &ca, "/api/v1/head", &[])
                .await
                .map_err(anyhow::Error::msg)?;
            let head: serde_json::Value =
                serde_json::from_str(&body).with_context(|| format!("{status} {body}"))?;
            match head.get("last_stream_seq").and_then(serde_json::Value::as_u64) {
                Some(seq) if seq >= last => Ok(Some(())),
                _ => bail!("head {body}"),
            }
        }
    })
    .await?;
    let path = format!("/api/v1/cases/{tn}");
    let (status, case) = https_get(hub_http, "localhost", &pki.ca, &path, &[("X-MPP-PIN", &pin)])
        .await
        .map_err(anyhow::Error::msg)?;
    ensure!(status == 200, "case {tn} over HTTPS: {status} {case}");
    let json: serde_json::Value = serde_json::from_str(&case).context("case JSON")?;
    ensure!(json.pointer("/applications/0/state").and_then(|s| s.as_str()) == Some("submitted"), "{json}");
    println!("case {tn} filed over TLS and looked up over HTTPS");

    // And: the auditor verifies the log over the audit gRPC service with TLS.
    let url = format!("https://localhost:{}", hub_grpc.port());
    let key = hub_dir.join("data").join("keys").join("checkpoint.pub");
    let audit = |token: &str, ca: &Path| {
        Command::new(bins::workspace_bin("mpp-hub")?)
            .args(["audit", "verify", "--hub-grpc", &url, "--auditor-token", token, "--public-key"])
            .arg(&key)
            .arg("--tls-ca-file")
            .arg(ca)
            .env("MPP_LOG", "warn")
            .output()
            .context("running mpp-hub audit verify")
    };
    let verified = wait_for("audit verify over TLS", LOOKUP_DEADLINE, || {
        let out = audit(&auditor_token, &pki.ca);
        async move {
            let out = out?;
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && stdout.starts_with("OK: ") {
                Ok(Some(stdout))
            } else {
                bail!("{stdout}{}", String::from_utf8_lossy(&out.stderr))
            }
        }
    })
    .await?;
    println!("remote audit over TLS: {}", verified.trim());
    let untrusted = audit(&auditor_token, &pki.other_ca)?;
    ensure!(!untrusted.status.success(), "audit verify trusted a hub its CA file does not cover");
    let untrusted_err = String::from_utf8_lossy(&untrusted.stderr).into_owned();
    ensure!(!untrusted_err.contains(&auditor_token), "the CLI printed the auditor's token: {untrusted_err}");

    // Plaintext clients and clients trusting another CA get nothing.
    let plain = mpp_edge::tls::test_pki::http_get(hub_http, "/healthz").await;
    ensure!(plain.is_err(), "plaintext HTTP got {plain:?}");
    let plain_grpc =
        Endpoint::from_shared(agency.grpc_endpoint())?.connect_timeout(CALL_TIMEOUT).connect().await;
    if let Ok(channel) = plain_grpc {
        let mut c =
            dk::dukcapil_service_client::DukcapilServiceClient::with_interceptor(channel, agency.bearer()?);
        let r = c
            .ajukan_permohonan(dk::Permohonan {
                nomor_berkas: String::new(),
                layanan: dk::Layanan::Kk as i32,
                dokumen: vec!["x".to_owned()],
                petugas: "petugas-loket-1".to_owned(),
            })
            .await;
        ensure!(r.is_err(), "a plaintext call was served by a TLS service");
    }
    // The agency's /metrics is served over TLS too.
    let (status, body) =
        https_get(metrics, "localhost", &pki.ca, "/metrics", &[]).await.map_err(anyhow::Error::msg)?;
    ensure!(status == 200 && body.contains("mpp_outbox_depth"), "/metrics over HTTPS: {status} {body}");
    // So are the probes Kubernetes uses (deploy/k8s/agencies.yaml).
    let (status, body) =
        https_get(metrics, "localhost", &pki.ca, "/readyz", &[]).await.map_err(anyhow::Error::msg)?;
    ensure!((status, body.as_str()) == (200, "ready\n"), "/readyz over HTTPS: {status} {body}");
    let plain_metrics = mpp_edge::tls::test_pki::http_get(metrics, "/metrics").await;
    ensure!(plain_metrics.is_err(), "plaintext /metrics got {plain_metrics:?}");
    let other = https_get(hub_http, "localhost", &pki.other_ca, "/healthz", &[]).await;
    ensure!(other.is_err(), "a client trusting another CA got {other:?}");

    // A wrong key file stops a service at start, naming the file, not its content.
    let mut bad = AgencyOptions::region(REGION);
    bad.extra_args = vec![
        "--tls-cert-file".to_owned(),
        pki.cert.display().to_string(),
        "--tls-key-file".to_owned(),
        pki.other_key.display().to_string(),
    ];
    let mut refused = AgencyProcess::spawn("mpp-dukcapil", &nats.url(), bad)?;
    let status = wait_for("mpp-dukcapil with a wrong key to exit", START_DEADLINE, || {
        let status = refused.process().exit_status();
        async move { Ok(status) }
    })
    .await?;
    ensure!(!status.success(), "mpp-dukcapil started with a key that does not match its certificate");
    let refused_log = std::fs::read_to_string(refused.process().log_path())?;
    ensure!(
        refused_log.contains(&pki.other_key.display().to_string()),
        "the start-up error does not name the key file: {refused_log}"
    );

    // Finally: no token, and no line of a key file, in any log.
    hub.terminate(Duration::from_secs(20)).await?;
    agency.terminate().await?;
    let mut secrets = vec![auditor_token.clone(), agency.token().to_owned()];
    for key in [&pki.key, &pki.other_key, &pki.client_key] {
        secrets.extend(pem_body_lines(key)?);
    }
    let hub_log = std::fs::read_to_string(hub.log_path())?;
    let agency_log = std::fs::read_to_string(agency.process().log_path())?;
    ensure!(hub_log.lines().count() > 10 && agency_log.lines().count() > 3, "the logs are (nearly) empty");
    ensure_no_secret("mpp-hub", &hub_log, &secrets)?;
    ensure_no_secret("mpp-dukcapil", &agency_log, &secrets)?;
    ensure_no_secret("mpp-dukcapil (refused)", &refused_log, &secrets)?;
    println!(
        "no secret in {} hub and {} agency log lines ({} secrets checked)",
        hub_log.lines().count(),
        agency_log.lines().count(),
        secrets.len()
    );
    Ok(())
}
