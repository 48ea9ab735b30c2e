//! The HTTP contract: `hub/lookup/src/openapi.json`, served at
//! `/api/v1/openapi.json`, against a real hub.
//!
//! - `every_route_the_routers_register_is_documented`: every `.route(…)` of
//!   the hub's routers (read from their sources) is an operation of the
//!   document, and every operation is a route.
//! - `real_answers_of_every_documented_endpoint_and_status_conform`: drives
//!   every documented endpoint to every status it can be driven to from
//!   outside (a few need a broken store; they are listed in [`NOT_DRIVEN`]
//!   with the reason), records the answers and has `tools/check_openapi.py`
//!   (openapi-spec-validator and jsonschema, in the project's `.venv`
//!   through `MPP_PYTHON`) validate the document as OpenAPI 3.1 and each
//!   answer's status, media type, documented headers and JSON body against
//!   it. Prints the count of endpoint × status pairs checked.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use mpp_tests::envelope::{body, publish_envelope, tracking_number, with_bad_check_digit, EventFactory};
use mpp_tests::http::{parse_response, request, HttpResponse};
use mpp_tests::pin::{other_pin, TEST_PIN};
use mpp_tests::services::HubOptions;
use mpp_tests::{wait_for, HubProcess, NatsServer, READY_DEADLINE};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CATCH_UP_DEADLINE: Duration = Duration::from_secs(60);
const OPERATOR_TOKEN: &str = "ops-token-openapi-5b1e";
/// Largest response head read from an event stream, in bytes.
const STREAM_HEAD_BYTES_MAX: usize = 64 * 1024;
/// Most lookups sent to reach a 429 (the documented burst is 20).
const LOOKUPS_TO_LIMIT_MAX: usize = 200;

/// Documented (method, path, status) answers no request from outside can
/// cause on a healthy hub, and why.
const NOT_DRIVEN: &[(&str, &str, u16, &str)] = &[
    (
        "GET",
        "/lacak/{tracking_number}/bukti",
        404,
        "needs a case opened after the last checkpoint; this hub signs one after every entry",
    ),
    (
        "GET",
        "/lacak/{tracking_number}/bukti",
        429,
        "the per-address lookup limiter it shares is driven to 429 on /api/v1/cases",
    ),
    ("GET", "/checkpoint", 503, "needs a store that fails to read"),
    ("GET", "/ops", 503, "needs a store that fails to read"),
    ("GET", "/api/v1/ops/summary", 503, "needs a store that fails to read"),
    ("GET", "/ops/export/{file}", 503, "needs a store that fails to read"),
    ("GET", "/lacak/{tracking_number}", 503, "needs a store that fails to read"),
    (
        "GET",
        "/lacak/{tracking_number}/events",
        503,
        "needs 1,024 open watches (WATCHERS_MAX), beyond one client's 8",
    ),
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

fn document() -> Result<Value> {
    let p = repo_root().join("hub/lookup/src/openapi.json");
    serde_json::from_slice(&std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?)
        .context("openapi.json")
}

/// Every (method, path) of the document.
fn documented(doc: &Value) -> Result<BTreeSet<(String, String)>> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().context("paths")? {
        for method in item.as_object().context("path item")?.keys() {
            out.insert((method.to_ascii_uppercase(), path.clone()));
        }
    }
    Ok(out)
}

/// Every (method, path, status) of the document.
fn documented_statuses(doc: &Value) -> Result<BTreeSet<(String, String, u16)>> {
    let mut out = BTreeSet::new();
    for (method, path) in documented(doc)? {
        let op = &doc["paths"][&path][method.to_ascii_lowercase()];
        for status in op["responses"].as_object().context("responses")?.keys() {
            out.insert((method.clone(), path.clone(), status.parse().context("a numeric status")?));
        }
    }
    Ok(out)
}

/// The routes registered in a router source: `.route("path", get(…).post(…))`,
/// outside its `#[cfg(test)]` module.
fn routes_in(source: &str) -> BTreeSet<(String, String)> {
    let source = source.split("#[cfg(test)]").next().unwrap_or(source);
    let mut out = BTreeSet::new();
    for chunk in source.split(".route(").skip(1) {
        let Some(rest) = chunk.trim_start().strip_prefix('"') else { continue };
        let Some((path, rest)) = rest.split_once('"') else { continue };
        // The route's own arguments end at its closing parenthesis.
        let mut depth = 1usize;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map_or(rest.len(), |(i, _)| i);
        let args = &rest[..end];
        for method in ["get", "post", "put", "delete", "patch"] {
            let called = args.match_indices(&format!("{method}(")).any(|(i, _)| {
                i == 0 || !args.as_bytes()[i - 1].is_ascii_alphanumeric() && args.as_bytes()[i - 1] != b'_'
            });
            if called {
                out.insert((method.to_ascii_uppercase(), path.to_owned()));
            }
        }
    }
    out
}

#[test]
fn every_route_the_routers_register_is_documented() -> Result<()> {
    // The routers `hub/server/src/server.rs` merges into the HTTP server.
    let root = repo_root();
    let server = std::fs::read_to_string(root.join("hub/server/src/server.rs"))?;
    for merged in ["router(AppState", "mpp_ops::router("] {
        ensure!(server.contains(merged), "server.rs no longer serves {merged}…: update this test");
    }
    let mut routes = BTreeSet::new();
    for file in ["hub/lookup/src/http.rs", "hub/ops/src/lib.rs"] {
        let found = routes_in(&std::fs::read_to_string(root.join(file))?);
        ensure!(!found.is_empty(), "no route found in {file}");
        routes.extend(found);
    }
    let doc = documented(&document()?)?;
    let undocumented: Vec<_> = routes.difference(&doc).collect();
    let unrouted: Vec<_> = doc.difference(&routes).collect();
    ensure!(undocumented.is_empty(), "routes missing from hub/lookup/src/openapi.json: {undocumented:?}");
    ensure!(unrouted.is_empty(), "operations documented but not routed: {unrouted:?}");
    println!("{} routes, all documented", routes.len());
    Ok(())
}

/// The answers seen, as `tools/check_openapi.py` reads them.
#[derive(Debug, Default)]
struct Answers {
    seen: Vec<Value>,
}

impl Answers {
    fn record(&mut self, method: &str, path: &str, r: &HttpResponse) {
        self.push(method, ("path", path), r);
    }

    /// An answer outside any operation (405, unknown path), checked
    /// against the component schema `schema`.
    fn record_schema(&mut self, method: &str, schema: &str, r: &HttpResponse) {
        self.push(method, ("schema", schema), r);
    }

    fn push(&mut self, method: &str, (key, value): (&str, &str), r: &HttpResponse) {
        let mut v = json!({
            "method": method, "status": r.status,
            "content_type": r.header("content-type").unwrap_or(""),
            "headers": r.headers.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            "body": r.text(),
        });
        v[key] = json!(value);
        self.seen.push(v);
    }

    fn statuses(&self) -> BTreeSet<(String, String, u16)> {
        self.seen
            .iter()
            .filter_map(|v| {
                Some((
                    v["method"].as_str()?.to_owned(),
                    v["path"].as_str()?.to_owned(),
                    u16::try_from(v["status"].as_u64()?).ok()?,
                ))
            })
            .collect()
    }
}

/// A client of one hub that records every answer under its path template.
struct Client<'a> {
    addr: SocketAddr,
    answers: &'a mut Answers,
}

impl Client<'_> {
    async fn call(
        &mut self,
        method: &str,
        template: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<HttpResponse> {
        let r = request(self.addr, method, path, headers, body.as_bytes()).await?;
        self.answers.record(method, template, &r);
        Ok(r)
    }

    async fn get(&mut self, template: &str, path: &str, headers: &[(&str, &str)]) -> Result<HttpResponse> {
        self.call("GET", template, path, headers, "").await
    }

    async fn form(
        &mut self,
        template: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<HttpResponse> {
        let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
        all.extend_from_slice(headers);
        self.call("POST", template, path, &all, body).await
    }

    /// Calls until the answer is `status` (at most [`LOOKUPS_TO_LIMIT_MAX`]
    /// times), for the limits that answer 429.
    async fn until(
        &mut self,
        status: u16,
        mut call: impl AsyncFnMut(&mut Self) -> Result<HttpResponse>,
    ) -> Result<HttpResponse> {
        for _ in 0..LOOKUPS_TO_LIMIT_MAX {
            let r = call(self).await?;
            if r.status == status {
                return Ok(r);
            }
        }
        bail!("no {status} after {LOOKUPS_TO_LIMIT_MAX} calls")
    }
}

/// The head of the answer to `GET path` on an event stream (which does not
/// end), recorded with no body.
async fn stream_head(addr: SocketAddr, path: &str, cookie: &str) -> Result<HttpResponse> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok(i);
            }
            let n = s.read(&mut buf).await?;
            ensure!(n > 0 && raw.len() < STREAM_HEAD_BYTES_MAX, "the stream ended before its head");
            raw.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .context("no stream head in 10 s")??;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    if !head.to_ascii_lowercase().contains("text/event-stream") {
        // Not a stream: an answer that ends.
        tokio::time::timeout(Duration::from_secs(10), (&mut s).take(1 << 20).read_to_end(&mut raw))
            .await
            .context("no end of the answer in 10 s")??;
        return parse_response(&raw);
    }
    let kept: Vec<&str> =
        head.split("\r\n").filter(|l| !l.to_ascii_lowercase().starts_with("transfer-encoding")).collect();
    parse_response(format!("{}\r\nContent-Length: 0\r\n\r\n", kept.join("\r\n")).as_bytes())
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_answers_of_every_documented_endpoint_and_status_conform() -> Result<()> {
    let doc = document()?;
    let nats = NatsServer::start().await?;
    let dir = mpp_tests::temp_dir("mpp-openapi-")?;
    let tokens = dir.path().join("operator-tokens");
    std::fs::write(&tokens, format!("op-openapi:{}\n", sha256_hex(OPERATOR_TOKEN)))?;
    let mut hub = HubProcess::spawn_with(
        &nats.url(),
        HubOptions {
            // The documented limits, so the lookups' 429 can be driven.
            documented_rate_limits: true,
            extra_args: vec![
                "--operator-tokens-file".to_owned(),
                tokens.display().to_string(),
                "--checkpoint-every-entries".to_owned(),
                "1".to_owned(),
                // PIN_REISSUE_REQUIRED (403) after 3 wrong PINs for a number.
                "--pin-failures-per-day-max".to_owned(),
                "3".to_owned(),
            ],
            ..HubOptions::default()
        },
    )?;
    hub.wait_ready(READY_DEADLINE).await?;
    let mut answers = Answers::default();
    let mut c = Client { addr: hub.http_addr(), answers: &mut answers };
    let bearer = format!("Bearer {OPERATOR_TOKEN}");
    let op = [("Authorization", bearer.as_str())];

    // Before any entry: no checkpoint yet.
    ensure!(c.get("/checkpoint", "/checkpoint", &[]).await?.status == 404);

    // One case (PIN TEST_PIN) with a PBG application, and a rejected filing
    // (IMB before its standard: UNKNOWN_SERVICE, redrivable).
    let js = nats.jetstream().await?;
    let f = EventFactory::new("dpmptsp", "pbg", "1771");
    let imb = EventFactory::new("dpmptsp", "imb", "1771");
    let (tn, locked_tn) = (tracking_number(1771, 51)?, tracking_number(1771, 52)?);
    let events = [
        f.standard(1),
        f.case_opened(&tn),
        f.app_event(&tn, "PBG-1", body::filed()),
        imb.app_event(&tn, "IMB-1", body::filed()),
        f.case_opened(&locked_tn),
    ];
    for e in &events {
        publish_envelope(&js, e).await?;
    }
    hub.wait_caught_up(events.len() as u64, CATCH_UP_DEADLINE).await?;
    let mut c = Client { addr: hub.http_addr(), answers: &mut answers };

    // Health, metrics, the head, this document, the checkpoint.
    for p in ["/healthz", "/readyz", "/metrics", "/api/v1/head", "/api/v1/openapi.json", "/checkpoint"] {
        ensure!(c.get(p, p, &[]).await?.status == 200, "{p}");
    }
    let served = c.get("/api/v1/openapi.json", "/api/v1/openapi.json", &[]).await?.json()?;
    ensure!(served == doc, "the served document is the checked-in one");

    // The citizens' JSON API.
    let case = "/api/v1/cases/{tracking_number}";
    let path = format!("/api/v1/cases/{tn}");
    let r = c.get(case, &path, &[("X-MPP-PIN", TEST_PIN)]).await?;
    ensure!(r.status == 200, "case: {} {}", r.status, r.text());
    let r = c.get(case, &format!("{path}?timeline_before_seq=x"), &[("X-MPP-PIN", TEST_PIN)]).await?;
    ensure!(r.status == 400, "{}", r.status);
    let bad = with_bad_check_digit(&tn);
    ensure!(c.get(case, &format!("/api/v1/cases/{bad}"), &[("X-MPP-PIN", TEST_PIN)]).await?.status == 400);
    ensure!(c.get(case, &path, &[("X-MPP-PIN", &other_pin(TEST_PIN))]).await?.status == 404);

    // The tracking page.
    ensure!(c.get("/lacak", "/lacak?lang=en", &[]).await?.status == 200);
    for js_path in ["/lacak/live.js", "/lacak/pow.js", "/lacak/periksa.js"] {
        ensure!(c.get(js_path, js_path, &[]).await?.status == 200);
    }
    let r = c.form("/lacak", "/lacak", &[], &format!("nomor={tn}&pin={TEST_PIN}")).await?;
    ensure!(r.status == 200, "POST /lacak: {} {}", r.status, r.text());
    let cookie =
        r.header("set-cookie").and_then(|v| v.split(';').next()).context("a session cookie")?.to_owned();
    ensure!(
        c.form("/lacak", "/lacak", &[], &format!("nomor={tn}&pin={}", other_pin(TEST_PIN))).await?.status
            == 404
    );
    ensure!(c.form("/lacak", "/lacak", &[], "nomor=12&pin=1").await?.status == 400);
    let page = "/lacak/{tracking_number}";
    ensure!(c.get(page, &format!("/lacak/{tn}"), &[("Cookie", &cookie)]).await?.status == 200);
    ensure!(c.get(page, &format!("/lacak/{}", tn.replace('-', "")), &[]).await?.status == 303);
    ensure!(c.get(page, &format!("/lacak/{bad}"), &[]).await?.status == 400);
    let receipt = "/lacak/{tracking_number}/tanda-terima";
    ensure!(c.get(receipt, &format!("/lacak/{tn}/tanda-terima"), &[]).await?.status == 200);
    ensure!(c.get(receipt, &format!("/lacak/{bad}/tanda-terima"), &[]).await?.status == 400);
    let proof = "/lacak/{tracking_number}/bukti";
    let r = c.get(proof, &format!("/lacak/{tn}/bukti"), &[("Cookie", &cookie)]).await?;
    ensure!(r.status == 200, "proof: {} {}", r.status, r.text());
    ensure!(c.get(proof, &format!("/lacak/{tn}/bukti"), &[]).await?.status == 400, "no session");
    ensure!(c.get(proof, &format!("/lacak/{bad}/bukti"), &[]).await?.status == 400);
    let events_t = "/lacak/{tracking_number}/events";
    let events_p = format!("/lacak/{tn}/events");
    ensure!(c.get(events_t, &format!("/lacak/{bad}/events"), &[]).await?.status == 400);
    ensure!(c.get(events_t, &events_p, &[]).await?.status == 403);
    let r = stream_head(hub.http_addr(), &events_p, &cookie).await?;
    ensure!(r.status == 200, "events: {}", r.status);
    c.answers.record("GET", events_t, &r);

    // The operators'.
    ensure!(c.get("/ops", "/ops", &[]).await?.status == 401);
    ensure!(c.get("/ops", "/ops", &op).await?.status == 200);
    let r = c.form("/ops/login", "/ops/login", &[], &format!("token={OPERATOR_TOKEN}")).await?;
    ensure!(r.status == 303, "login: {}", r.status);
    ensure!(c.form("/ops/login", "/ops/login", &[], "token=wrong").await?.status == 401);
    ensure!(c.form("/ops/login", "/ops/login", &[], "nothing=here").await?.status == 400);
    ensure!(c.form("/ops/logout", "/ops/logout", &[], "").await?.status == 303);
    ensure!(c.get("/api/v1/ops/summary", "/api/v1/ops/summary", &[]).await?.status == 401);
    let summary = c.get("/api/v1/ops/summary", "/api/v1/ops/summary", &op).await?;
    ensure!(summary.status == 200);
    let export = "/ops/export/{file}";
    ensure!(c.get(export, "/ops/export/overdue.csv", &op).await?.status == 200);
    ensure!(c.get(export, "/ops/export/overdue.csv", &[]).await?.status == 401);
    ensure!(c.get(export, "/ops/export/passwords.csv", &op).await?.status == 404);
    let rejected_seq = summary.json()?["rejected"][0]["seq"].as_u64().context("a rejected entry")?;
    let redrive = "/api/v1/ops/redrive/{seq}";
    let post = |seq: &str| format!("/api/v1/ops/redrive/{seq}");
    ensure!(c.call("POST", redrive, &post(&rejected_seq.to_string()), &op, "").await?.status == 202);
    ensure!(c.call("POST", redrive, &post("x"), &op, "").await?.status == 400);
    ensure!(c.call("POST", redrive, &post("1"), &[], "").await?.status == 401);
    ensure!(c.call("POST", redrive, &post("999999"), &op, "").await?.status == 404);
    ensure!(c.call("POST", redrive, &post("2"), &op, "").await?.status == 409, "an accepted entry");
    let r = c.form("/ops/redrive", "/ops/redrive", &op, &format!("seq={rejected_seq}")).await?;
    ensure!(r.status == 303);
    ensure!(c.form("/ops/redrive", "/ops/redrive", &[], "seq=1").await?.status == 401);

    // Answers outside any operation: the JSON error body.
    let r = request(hub.http_addr(), "DELETE", "/api/v1/head", &[], b"").await?;
    ensure!(r.status == 405 && r.header("allow").is_some(), "405: {}", r.status);
    c.answers.record_schema("DELETE", "Error", &r);
    let r = request(hub.http_addr(), "GET", "/api/v1/nothing", &[], b"").await?;
    ensure!(r.status == 404, "unknown path: {}", r.status);
    c.answers.record_schema("GET", "Error", &r);

    // The lookups' limits: wrong PINs for a number until its PIN must be
    // re-issued (403); then one address's burst runs out (429 on every
    // lookup route).
    let locked = format!("/api/v1/cases/{locked_tn}");
    let wrong = other_pin(TEST_PIN);
    c.until(403, async |c| c.get(case, &locked, &[("X-MPP-PIN", &wrong)]).await).await?;
    let form = format!("nomor={locked_tn}&pin={TEST_PIN}");
    ensure!(c.form("/lacak", "/lacak", &[], &form).await?.status == 403, "even with the right PIN");
    c.until(429, async |c| c.get(case, &locked, &[("X-MPP-PIN", &wrong)]).await).await?;
    c.until(429, async |c| c.form("/lacak", "/lacak", &[], &form).await).await?;
    let page_p = format!("/lacak/{tn}");
    c.until(429, async |c| c.get(page, &page_p, &[]).await).await?;
    let r = stream_head(hub.http_addr(), &events_p, &cookie).await?;
    ensure!(r.status == 429, "events past the burst: {}", r.status);
    c.answers.record("GET", events_t, &r);

    // NATS gone: not ready, and a redrive cannot publish.
    drop(nats);
    wait_for("readiness to fall", READY_DEADLINE, || async {
        let r = request(hub.http_addr(), "GET", "/readyz", &[], b"").await?;
        Ok((r.status == 503).then_some(()))
    })
    .await?;
    ensure!(c.get("/readyz", "/readyz", &[]).await?.status == 503);
    let r = c.call("POST", redrive, &post(&rejected_seq.to_string()), &op, "").await?;
    ensure!(r.status == 503, "redrive without NATS: {} {}", r.status, r.text());
    // The guessing budgets live in NATS too: once the address's burst has
    // refilled a little, a lookup is answered LOOKUP_BUDGET_UNAVAILABLE.
    let wrong_pin = [("X-MPP-PIN", wrong.as_str())];
    let r = wait_for("a lookup without the budget store", CATCH_UP_DEADLINE, || async {
        let r = request(hub.http_addr(), "GET", &path, &wrong_pin, b"").await?;
        Ok((r.status == 503).then_some(r))
    })
    .await?;
    answers.record("GET", case, &r);
    let form = format!("nomor={tn}&pin={wrong}");
    let urlencoded = [("Content-Type", "application/x-www-form-urlencoded")];
    let r = wait_for("a page lookup without the budget store", CATCH_UP_DEADLINE, || async {
        let r = request(hub.http_addr(), "POST", "/lacak", &urlencoded, form.as_bytes()).await?;
        Ok((r.status == 503).then_some(r))
    })
    .await?;
    answers.record("POST", "/lacak", &r);

    // Which documented answers were driven, and which cannot be.
    let driven = answers.statuses();
    let not_driven: BTreeSet<(String, String, u16)> =
        NOT_DRIVEN.iter().map(|(m, p, s, _)| ((*m).to_owned(), (*p).to_owned(), *s)).collect();
    let missing: Vec<_> = documented_statuses(&doc)?
        .into_iter()
        .filter(|k| !driven.contains(k) && !not_driven.contains(k))
        .collect();
    ensure!(missing.is_empty(), "documented answers this test never drove: {missing:?}");
    for (m, p, s, why) in NOT_DRIVEN {
        println!("not driven: {m} {p} {s}: {why}");
    }

    // The validator: the document as OpenAPI 3.1, then every answer.
    let observed = dir.path().join("observed.json");
    std::fs::write(&observed, serde_json::to_vec(&answers.seen)?)?;
    let python = std::env::var("MPP_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let out = std::process::Command::new(&python)
        .arg(repo_root().join("tools/check_openapi.py"))
        .arg(repo_root().join("hub/lookup/src/openapi.json"))
        .arg(&observed)
        .output()
        .with_context(|| format!("running {python} (MPP_PYTHON: .venv with openapi-spec-validator)"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    ensure!(out.status.success(), "the answers do not conform to the contract");
    println!(
        "OpenAPI: {} endpoints x statuses driven and validated ({} documented, {} not drivable), {} answers",
        driven.len(),
        documented_statuses(&doc)?.len(),
        NOT_DRIVEN.len(),
        answers.seen.len()
    );
    Ok(())
}
