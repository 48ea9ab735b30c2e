//! The operators' side of a running hub: the dashboard in a real headless
//! browser (login form, figures per MPP and agency, a redrive clicked on the
//! page and its new verdict), its JSON twin behind a bearer token, and a
//! backup of the running hub restored into a fresh data directory that
//! verifies to the same head. The deployment files are checked in
//! [`deploy`].
//!
//! The screenshots (the whole page and each chart, 1280 px wide) go to
//! `test-artifacts/` or to `MPP_TEST_ARTIFACTS` when set.

#[path = "deploy.rs"]
mod deploy;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use mpp_tests::browser::{artifact_dir, decode_base64, Browser};
use mpp_tests::envelope::{body, encode, publish_envelope, stream_last_seq, tracking_number, EventFactory};
use mpp_tests::http::{get_with_headers, parse_response, HttpResponse};
use mpp_tests::{wait_for, HubProcess, NatsServer, READY_DEADLINE};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CATCH_UP_DEADLINE: Duration = Duration::from_secs(60);
/// How long a backup may take to cover the whole log (the hub signs a
/// checkpoint after every entry here, just after each commit).
const BACKUP_DEADLINE: Duration = Duration::from_secs(60);
/// Largest HTTP response read by [`post`], in bytes.
const RESPONSE_BYTES_MAX: u64 = 1 << 20;
/// The width of the operators' screens the page must fit, in CSS pixels.
const VIEWPORT_WIDTH_PX: u64 = 1280;
const OPERATOR_TOKEN: &str = "ops-token-e2e-7f3a";
/// The operator [`OPERATOR_TOKEN`] belongs to.
const OPERATOR_ID: &str = "op-e2e";
const AUDITOR_TOKEN: &str = "audit-token-e2e-91c2";

fn sha256_hex(s: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// `POST path` with an optional bearer token and `Connection: close`.
async fn post(addr: SocketAddr, path: &str, token: Option<&str>) -> Result<HttpResponse> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    (&mut stream).take(RESPONSE_BYTES_MAX).read_to_end(&mut raw).await?;
    parse_response(&raw)
}

async fn summary(hub: &HubProcess, token: &str) -> Result<HttpResponse> {
    get_with_headers(hub.http_addr(), "/api/v1/ops/summary", &[("Authorization", &format!("Bearer {token}"))])
        .await
}

/// The group `key` of `groups` (`by_mpp` or `by_agency`).
fn group<'a>(v: &'a Value, groups: &str, key: &str) -> Result<&'a Value> {
    v[groups]
        .as_array()
        .and_then(|a| a.iter().find(|g| g["key"] == key))
        .with_context(|| format!("no {groups} group {key} in {v}"))
}

fn state_count(g: &Value, state: &str) -> u64 {
    g["by_state"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["state"] == state))
        .and_then(|c| c["count"].as_u64())
        .unwrap_or(u64::MAX)
}

async fn run(exe: PathBuf, args: Vec<String>) -> Result<(bool, String, String)> {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(&exe).args(&args).output().context("running mpp-hub")?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    })
    .await?
}

/// A PNG of the element `id` alone, saved to `path`.
async fn screenshot_of(b: &mut Browser, id: &str, path: &Path) -> Result<()> {
    let rect = b
        .eval(&format!(
            "(() => {{ const r = document.getElementById('{id}').getBoundingClientRect(); \
             return [r.x + window.scrollX, r.y + window.scrollY, r.width, r.height]; }})()"
        ))
        .await?;
    let r: Vec<f64> = serde_json::from_value(rect).context("element rectangle")?;
    let clip = serde_json::json!({ "x": r[0], "y": r[1], "width": r[2], "height": r[3], "scale": 1 });
    let shot = b
        .call(
            "Page.captureScreenshot",
            serde_json::json!({ "format": "png", "clip": clip, "captureBeyondViewport": true }),
        )
        .await?;
    let png = decode_base64(shot["data"].as_str().context("no screenshot data")?)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A ready hub on `nats` with the operator `op-e2e` ([`OPERATOR_TOKEN`]) and
/// the auditor `backup` (its token in the returned file), signing a
/// checkpoint after every entry.
async fn hub_with_operator(nats: &NatsServer) -> Result<(HubProcess, PathBuf)> {
    let mut hub = HubProcess::spawn(&nats.url())?;
    hub.wait_ready(READY_DEADLINE).await?;
    // Restart it with operator and auditor tokens (the harness passes flags
    // through the MPP_* environment), signing a checkpoint after every entry.
    hub.terminate().await?;
    let dir = hub.dir().to_owned();
    let (ops_tokens, audit_tokens, audit_token) =
        (dir.join("operator-tokens"), dir.join("auditor-tokens"), dir.join("auditor-token"));
    std::fs::write(&ops_tokens, format!("{OPERATOR_ID}:{}\n", sha256_hex(OPERATOR_TOKEN)))?;
    std::fs::write(&audit_tokens, format!("backup:{}\n", sha256_hex(AUDITOR_TOKEN)))?;
    std::fs::write(&audit_token, AUDITOR_TOKEN)?;
    for (k, v) in [
        ("MPP_OPERATOR_TOKENS_FILE", s(&ops_tokens)),
        ("MPP_AUDITOR_TOKENS_FILE", s(&audit_tokens)),
        ("MPP_CHECKPOINT_EVERY_ENTRIES", "1".to_owned()),
    ] {
        hub.process().env(k, &v);
    }
    hub.start()?;
    hub.wait_ready(READY_DEADLINE).await?;
    Ok((hub, audit_token))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_traffic_redrives_and_the_backup_restores_to_the_same_head() -> Result<()> {
    // Fails (does not skip) when no browser can be found.
    let mut b = Browser::launch().await.context("the dashboard test needs a headless browser")?;
    let nats = NatsServer::start().await?;
    let (mut hub, audit_token) = hub_with_operator(&nats).await?;

    // Traffic: two MPPs (1771, 1707), DPMPTSP's PBG service; an IMB filing
    // before its standard exists (UNKNOWN_SERVICE, fixed upstream later) and
    // a payment on an application never assessed (ILLEGAL_TRANSITION).
    let js = nats.jetstream().await?;
    let (f1771, f1707) =
        (EventFactory::new("dpmptsp", "pbg", "1771"), EventFactory::new("dpmptsp", "pbg", "1707"));
    let imb = EventFactory::new("dpmptsp", "imb", "1771");
    let (t1, t2) = (tracking_number(1771, 41)?, tracking_number(1707, 42)?);
    let early_imb = imb.app_event(&t1, "IMB-1", body::filed());
    let events = [
        f1771.standard(1),
        f1771.case_opened(&t1),
        f1771.app_event(&t1, "PBG-1", body::filed()),
        f1771.app_event(&t1, "PBG-1", body::review_started()),
        f1771.app_event(&t1, "PBG-1", body::fee_assessed()),
        early_imb.clone(),
        f1707.case_opened(&t2),
        f1707.app_event(&t2, "PBG-2", body::filed()),
        f1707.app_event(&t2, "PBG-2", body::payment_received()),
    ];
    for e in &events {
        publish_envelope(&js, e).await?;
    }
    let mut published = events.len() as u64;
    hub.wait_caught_up(published, CATCH_UP_DEADLINE).await?;

    // Wrong or no token: 401, and no figure in the answer.
    for bad in [summary(&hub, "wrong-token").await?, hub.get("/api/v1/ops/summary").await?] {
        ensure!(bad.status == 401, "a wrong token got {}: {}", bad.status, bad.text());
        ensure!(!bad.text().contains("cases_opened"), "a 401 must carry no figures: {}", bad.text());
    }
    let page = hub.get("/ops").await?;
    ensure!(
        page.status == 401 && !page.text().contains("kpi-cases"),
        "GET /ops without a token: {}",
        page.status
    );

    // The JSON twin: the numbers of the traffic above.
    let r = summary(&hub, OPERATOR_TOKEN).await?;
    ensure!(r.status == 200, "summary: {} {}", r.status, r.text());
    let v = r.json()?;
    ensure!(v["total"]["cases_opened"] == 2 && v["total"]["applications"] == 2, "totals: {}", v["total"]);
    let (m1771, m1707) = (group(&v, "by_mpp", "1771")?, group(&v, "by_mpp", "1707")?);
    ensure!(m1771["cases_opened"] == 1 && m1707["cases_opened"] == 1, "per MPP: {}", v["by_mpp"]);
    ensure!(state_count(m1771, "awaiting_payment") == 1, "1771 states: {m1771}");
    ensure!(state_count(m1707, "submitted") == 1, "1707 states: {m1707}");
    let dpmptsp = group(&v, "by_agency", "dpmptsp")?;
    ensure!(dpmptsp["applications"] == 2 && dpmptsp["overdue"] == 0, "per agency: {dpmptsp}");
    ensure!(v["rejected_total"] == 2, "rejected: {}", v["rejected_total"]);
    let reasons: Vec<(String, u64)> = v["rejections_by_reason"]
        .as_array()
        .context("rejections_by_reason")?
        .iter()
        .map(|r| {
            (
                format!("{}/{}", r["agency"].as_str().unwrap_or(""), r["reason"].as_str().unwrap_or("")),
                r["count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let mut want =
        vec![("dpmptsp/ILLEGAL_TRANSITION".to_owned(), 1), ("dpmptsp/UNKNOWN_SERVICE".to_owned(), 1)];
    let mut got = reasons.clone();
    got.sort();
    want.sort();
    ensure!(got == want, "rejections by reason: {reasons:?}");
    let rejected = v["rejected"].as_array().context("rejected")?;
    let imb_row = rejected
        .iter()
        .find(|r| r["event_id"] == early_imb.event_id.as_str())
        .with_context(|| format!("the early IMB filing is not listed: {rejected:?}"))?;
    let imb_seq = imb_row["seq"].as_u64().context("seq")?;
    ensure!(imb_row["redrivable"] == true && imb_row["redriven"].is_null(), "IMB row: {imb_row}");

    // Fixed upstream: DPMPTSP publishes the IMB standard.
    publish_envelope(&js, &imb.standard(1)).await?;
    published += 1;
    hub.wait_caught_up(published, CATCH_UP_DEADLINE).await?;

    // The browser: the login form, then the dashboard with the same figures.
    let base = format!("http://{}", hub.http_addr());
    b.goto(&format!("{base}/ops")).await?;
    ensure!(
        b.eval("!!document.getElementById('token')").await? == true,
        "no login form:\n{}",
        b.text().await?
    );
    b.eval(&format!("document.getElementById('token').value = {}", serde_json::to_string(OPERATOR_TOKEN)?))
        .await?;
    b.navigate_by("document.querySelector('form').submit()").await?;
    let kpi = |id: &str| format!("document.getElementById('{id}').textContent.trim()");
    ensure!(b.eval_string(&kpi("kpi-cases")).await? == "2", "cases KPI:\n{}", b.text().await?);
    ensure!(b.eval_string(&kpi("kpi-applications")).await? == "2");
    ensure!(b.eval_string(&kpi("kpi-rejected")).await? == "2");
    let row = |m: &str| {
        format!("document.querySelector('#by-mpp tr[data-key=\"{m}\"] td.cases').textContent.trim()")
    };
    ensure!(b.eval_string(&row("1771")).await? == "1" && b.eval_string(&row("1707")).await? == "1");

    // Redrive the IMB filing from the page: a new message on the stream, a
    // new log entry, accepted now that the standard exists.
    b.navigate_by(&format!("document.getElementById('redrive-{imb_seq}').click()")).await?;
    ensure!(
        b.eval("!!document.getElementById('notice')").await? == true,
        "no redrive notice:\n{}",
        b.text().await?
    );
    published += 1;
    wait_for("the redrive on the stream", CATCH_UP_DEADLINE, || {
        let js = js.clone();
        async move { Ok(stream_last_seq(&js).await.ok().filter(|n| *n >= published)) }
    })
    .await?;
    ensure!(stream_last_seq(&js).await? == published, "one redrive, one message");
    hub.wait_caught_up(published, CATCH_UP_DEADLINE).await?;
    b.goto(&format!("{base}/ops")).await?;
    let outcome = b
        .eval_string(&format!(
            "(document.querySelector('#rejected tr[data-seq=\"{imb_seq}\"] .redriven') || {{textContent: ''}}).textContent"
        ))
        .await?;
    ensure!(outcome.contains("accepted"), "the redriven row shows {outcome:?}:\n{}", b.text().await?);
    ensure!(b.eval_string(&kpi("kpi-applications")).await? == "3");

    // DPMPTSP decides the redriven IMB application the same day: on time,
    // a point on the SLA chart.
    publish_envelope(&js, &imb.app_event(&t1, "IMB-1", body::rejected())).await?;
    published += 1;
    hub.wait_caught_up(published, CATCH_UP_DEADLINE).await?;

    // A desktop-sized window (the operators' screens, not a phone): the
    // three charts are drawn without JavaScript, nothing makes the page
    // scroll sideways, and the SLA column is in view.
    b.call(
        "Emulation.setDeviceMetricsOverride",
        serde_json::json!({ "width": VIEWPORT_WIDTH_PX, "height": 900, "deviceScaleFactor": 1, "mobile": false }),
    )
    .await?;
    b.goto(&format!("{base}/ops")).await?;
    let labels = b
        .eval_string("[...document.querySelectorAll('svg[role=img]')].map(s => s.getAttribute('aria-label')).join('|')")
        .await?;
    for want in
        ["SLA compliance per week per agency", "Backlog by state per agency", "Rejections per day by reason"]
    {
        ensure!(labels.contains(want), "no chart {want:?} among {labels:?}");
    }
    let empty = b.eval("document.querySelectorAll('figure.chart-box svg').length === 3 && [...document.querySelectorAll('figure.chart-box svg')].filter(s => s.textContent.includes('no data yet')).length").await?;
    ensure!(empty == 0, "every chart has data after this traffic (empty: {empty})");
    let point = b.eval_string("document.querySelector('#chart-sla circle title').textContent").await?;
    ensure!(point.starts_with("dpmptsp · ") && point.ends_with(": 100% (1/1)"), "the SLA point: {point:?}");
    let scroll_width = b.eval("document.documentElement.scrollWidth").await?;
    ensure!(
        scroll_width.as_u64().is_some_and(|w| w <= VIEWPORT_WIDTH_PX),
        "the page is {scroll_width} px wide at {VIEWPORT_WIDTH_PX} px"
    );
    for table in ["by-mpp", "by-agency"] {
        let right = b
            .eval(&format!("document.querySelector('#{table} td.pct').getBoundingClientRect().right"))
            .await?;
        ensure!(
            right.as_f64().is_some_and(|r| r <= VIEWPORT_WIDTH_PX as f64),
            "the SLA column of #{table} ends at {right} px, out of view"
        );
    }
    let dir = artifact_dir()?;
    let shot = dir.join("ops-dashboard.png");
    b.screenshot(&shot).await?;
    println!("dashboard screenshot: {}", shot.display());
    for id in ["chart-sla", "chart-backlog", "chart-rejections"] {
        let shot = dir.join(format!("ops-{id}.png"));
        screenshot_of(&mut b, id, &shot).await?;
        println!("chart screenshot: {}", shot.display());
    }
    b.close().await?;

    // Every table downloads as CSV with the token, and only with it.
    let addr = hub.http_addr();
    let csv = |path: &'static str| async move {
        get_with_headers(addr, path, &[("Authorization", &format!("Bearer {OPERATOR_TOKEN}"))]).await
    };
    let r = csv("/ops/export/rejections_by_reason.csv").await?;
    ensure!(r.status == 200, "CSV: {} {}", r.status, r.text());
    ensure!(r.header("content-type") == Some("text/csv; charset=utf-8"), "CSV type: {:?}", r.headers);
    ensure!(r.header("content-disposition").is_some_and(|d| d.starts_with("attachment")), "CSV disposition");
    let text = r.text();
    let mut lines = text.split("\r\n");
    ensure!(lines.next() == Some("agency,reason,count"), "CSV header: {text:?}");
    ensure!(text.split("\r\n").any(|l| l == "dpmptsp,UNKNOWN_SERVICE,1"), "CSV rows: {text:?}");
    let r = csv("/ops/export/sla_weekly.csv").await?;
    ensure!(
        r.text().starts_with("agency,week,starts_on,on_time,late,overdue,sla_compliance_pct\r\ndpmptsp,"),
        "SLA CSV: {}",
        r.text()
    );
    ensure!(hub.get("/ops/export/by_mpp.csv").await?.status == 401, "a CSV without a token");
    ensure!(csv("/ops/export/nope.csv").await?.status == 404, "an unknown table");

    // The JSON agrees, and the redrive is not redrivable again.
    let v = summary(&hub, OPERATOR_TOKEN).await?.json()?;
    ensure!(v["total"]["applications"] == 3 && v["rejected_total"] == 2, "after the redrive: {}", v["total"]);
    ensure!(v["sla_weekly"][0]["on_time"] == 1, "the weekly SLA: {}", v["sla_weekly"]);
    let again =
        post(hub.http_addr(), &format!("/api/v1/ops/redrive/{imb_seq}"), Some(OPERATOR_TOKEN)).await?;
    ensure!(again.status == 409, "a second redrive of an accepted event: {} {}", again.status, again.text());
    let anon = post(hub.http_addr(), &format!("/api/v1/ops/redrive/{imb_seq}"), None).await?;
    ensure!(anon.status == 401, "a redrive without a token: {}", anon.status);
    let metrics = hub.get("/metrics").await?.text();
    for line in [
        "mpp_hub_ops_redrives_total{outcome=\"published\"} 1",
        "mpp_hub_ops_redrives_total{outcome=\"refused\"} 1",
    ] {
        ensure!(metrics.lines().any(|l| l == line), "/metrics lacks {line:?}");
    }
    ensure!(
        !metrics.contains("mpp_hub_ops_auth_failures_total 0\n"),
        "refused operator requests are counted"
    );

    // Backup of the running hub, restore, verify: the same head.
    let head: Value = hub.get("/api/v1/head").await?.json()?;
    let (last_seq, head_hash) = (head["last_seq"].as_u64().context("last_seq")?, head["head_hash"].clone());
    let exe = mpp_tests::bins::workspace_bin("mpp-hub")?;
    let work = tempfile::tempdir()?;
    let grpc = hub.grpc_endpoint();
    let mut attempt = 0u32;
    let backup = wait_for("a backup covering the whole log", BACKUP_DEADLINE, || {
        attempt += 1;
        let out = work.path().join(format!("backup-{attempt}.jsonl"));
        let args = vec![
            "admin".into(),
            "backup".into(),
            "--hub-grpc".into(),
            grpc.clone(),
            "--auditor-token-file".into(),
            s(&audit_token),
            "--out".into(),
            s(&out),
        ];
        let exe = exe.clone();
        async move {
            let (ok, _, err) = run(exe, args).await?;
            if !ok {
                bail!("admin backup failed: {err}");
            }
            Ok(err.contains(&format!("backed up {last_seq} entries")).then_some(out))
        }
    })
    .await?;
    let restored = work.path().join("restored");
    let (ok, out, err) = run(
        exe.clone(),
        vec![
            "admin".into(),
            "restore".into(),
            "--from".into(),
            s(&backup),
            "--data-dir".into(),
            s(&restored),
        ],
    )
    .await?;
    ensure!(ok, "admin restore failed: {out}{err}");
    let hash = head_hash.as_str().context("head_hash")?;
    ensure!(out.contains(hash), "the restore's head differs from the hub's {hash}: {out}");
    let (ok, out, err) =
        run(exe.clone(), vec!["audit".into(), "verify".into(), "--data-dir".into(), s(&restored)]).await?;
    ensure!(ok, "audit verify of the restored store failed: {out}{err}");
    ensure!(
        out.contains(hash) || err.contains(hash),
        "audit verify does not show the head {hash}: {out}{err}"
    );
    println!("restored head {hash} at seq {last_seq}");
    hub.terminate().await?;

    // A stopped hub's data directory backs up to its whole head, signed or not.
    let offline = work.path().join("offline.jsonl");
    let (ok, _, err) = run(
        exe.clone(),
        vec![
            "admin".into(),
            "backup".into(),
            "--data-dir".into(),
            s(hub.data_dir()),
            "--out".into(),
            s(&offline),
        ],
    )
    .await?;
    ensure!(ok && err.contains(hash), "admin backup --data-dir: {err}");
    let again = work.path().join("restored-offline");
    let (ok, out, err) = run(
        exe.clone(),
        vec!["admin".into(), "restore".into(), "--from".into(), s(&offline), "--data-dir".into(), s(&again)],
    )
    .await?;
    ensure!(ok && out.contains(hash), "restore of the offline backup: {out}{err}");
    // A restore never writes over a store.
    let (ok, _, _) = run(
        exe,
        vec!["admin".into(), "restore".into(), "--from".into(), s(&offline), "--data-dir".into(), s(&again)],
    )
    .await?;
    ensure!(!ok, "a restore into a directory holding a store must fail");
    Ok(())
}

/// The entry lines of `mpp-hub audit export` of a stopped hub's store, by
/// seq, after docs/verify_export.py checked the whole export.
async fn exported_entries(hub: &HubProcess, work: &Path) -> Result<Vec<Value>> {
    let out = work.join("export.jsonl");
    let exe = mpp_tests::bins::workspace_bin("mpp-hub")?;
    let args = ["audit", "export", "--data-dir", &s(hub.data_dir()), "--out", &s(&out)];
    let (ok, _, err) = run(exe, args.iter().map(|a| (*a).to_owned()).collect()).await?;
    ensure!(ok, "audit export failed: {err}");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/verify_export.py");
    let (ok, stdout, stderr) = run(PathBuf::from("python3"), vec![s(&script), s(&out)]).await?;
    ensure!(ok && stdout.starts_with("OK"), "docs/verify_export.py: {stdout}{stderr}");
    let mut entries = Vec::new();
    for line in std::fs::read_to_string(&out)?.lines() {
        let v: Value = serde_json::from_str(line)?;
        if v["type"] == "entry" {
            entries.push(v);
        }
    }
    Ok(entries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_is_logged_as_the_operators_act_and_a_superseded_one_is_refused() -> Result<()> {
    let nats = NatsServer::start().await?;
    let (mut hub, _) = hub_with_operator(&nats).await?;
    let js = nats.jetstream().await?;
    let pbg = EventFactory::new("dpmptsp", "pbg", "1771");
    let t = tracking_number(1771, 51)?;
    // Two reviews started before their filings arrived: both rejected.
    let (early1, early2) = (
        pbg.app_event(&t, "PBG-1", body::review_started()),
        pbg.app_event(&t, "PBG-2", body::review_started()),
    );
    let events = [
        pbg.standard(1),
        pbg.case_opened(&t),
        early1.clone(),
        early2.clone(),
        pbg.app_event(&t, "PBG-1", body::filed()),
        pbg.app_event(&t, "PBG-2", body::filed()),
        // PBG-2 moved on since: its early review is superseded.
        pbg.app_event(&t, "PBG-2", body::review_started()),
        pbg.app_event(&t, "PBG-2", body::fee_assessed()),
    ];
    for e in &events {
        publish_envelope(&js, e).await?;
    }
    hub.wait_caught_up(events.len() as u64, CATCH_UP_DEADLINE).await?;
    let v = summary(&hub, OPERATOR_TOKEN).await?.json()?;
    let rows = v["rejected"].as_array().context("rejected")?.clone();
    let seq_of = |id: &str| {
        rows.iter()
            .find(|r| r["event_id"] == id)
            .and_then(|r| r["seq"].as_u64())
            .context("not listed as rejected")
    };
    let (seq1, seq2) = (seq_of(&early1.event_id)?, seq_of(&early2.event_id)?);

    // An agency that sets the redrive headers itself, on its own subject,
    // is logged as saying the message again: no operator in its entry.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Mpp-Redrive-Of", seq2.to_string().as_str());
    headers.insert("Mpp-Operator", "op-forged");
    js.publish_with_headers(pbg.subject(), headers.clone(), encode(&early2)).await?.await?;
    let own_subject_seq = stream_last_seq(&js).await?;

    // The operator redrives PBG-1's early review: accepted, in their name.
    let r = post(hub.http_addr(), &format!("/api/v1/ops/redrive/{seq1}"), Some(OPERATOR_TOKEN)).await?;
    ensure!(r.status == 202, "redrive of {seq1}: {} {}", r.status, r.text());
    let redrive_stream_seq = r.json()?["stream_seq"].as_u64().context("stream_seq")?;
    // The dashboard refuses PBG-2's: superseded.
    let r = post(hub.http_addr(), &format!("/api/v1/ops/redrive/{seq2}"), Some(OPERATOR_TOKEN)).await?;
    ensure!(
        r.status == 409 && r.text().contains("REDRIVE_SUPERSEDED"),
        "redrive of the superseded {seq2}: {} {}",
        r.status,
        r.text()
    );
    // Past the dashboard (this NATS is open; the NATS configs let only the
    // hub publish redrives): the ledger refuses it too, and a redrive that
    // names an entry of another message.
    let redrive_subject = format!("mpp.events.redrive.{}", pbg.subject().trim_start_matches("mpp.events."));
    js.publish_with_headers(redrive_subject.clone(), headers.clone(), encode(&early2)).await?.await?;
    let mut wrong = async_nats::HeaderMap::new();
    wrong.insert("Mpp-Redrive-Of", seq1.to_string().as_str());
    wrong.insert("Mpp-Operator", "op-forged");
    js.publish_with_headers(redrive_subject, wrong, encode(&early2)).await?.await?;
    let last = stream_last_seq(&js).await?;
    hub.wait_caught_up(last, CATCH_UP_DEADLINE).await?;

    let v = summary(&hub, OPERATOR_TOKEN).await?.json()?;
    let row1 = v["rejected"]
        .as_array()
        .context("rejected")?
        .iter()
        .find(|r| r["seq"] == seq1)
        .cloned()
        .context("PBG-1's early review is no longer listed")?;
    ensure!(
        row1["redriven"]["operator"] == OPERATOR_ID && row1["redriven"]["verdict"] == "accepted",
        "the dashboard's row of {seq1}: {row1}"
    );
    ensure!(row1["redrivable"] == false, "an accepted redrive is not redrivable again: {row1}");

    hub.terminate().await?;
    let work = tempfile::tempdir()?;
    let entries = exported_entries(&hub, work.path()).await?;
    let by_stream = |n: u64| entries.iter().find(|e| e["stream_seq"] == n).context("no entry of stream seq");
    let original = entries.iter().find(|e| e["seq"] == seq1).context("entry seq1")?;
    let own = by_stream(own_subject_seq)?;
    ensure!(
        own["format"] == 1 && own.get("operator").is_none() && own["verdict"] == "rejected",
        "the agency's own headers made its entry an operator's: {own}"
    );
    let redriven = by_stream(redrive_stream_seq)?;
    ensure!(
        redriven["format"] == 2
            && redriven["operator"] == OPERATOR_ID
            && redriven["redrive_of"] == seq1
            && redriven["verdict"] == "accepted"
            && redriven["payload_b64"] == original["payload_b64"],
        "the redrive's entry: {redriven}"
    );
    let superseded = by_stream(redrive_stream_seq + 1)?;
    ensure!(
        superseded["format"] == 2
            && superseded["redrive_of"] == seq2
            && superseded["reason_code"] == "REDRIVE_SUPERSEDED",
        "the superseded redrive's entry: {superseded}"
    );
    let invalid = by_stream(redrive_stream_seq + 2)?;
    ensure!(invalid["reason_code"] == "REDRIVE_INVALID", "a redrive of another entry: {invalid}");
    Ok(())
}
