//! Slow-client attacks against running servers (issue 16): each attack
//! opens at least [`ATTACK_CONNECTIONS_MIN`] connections from many loopback
//! addresses (127.0.x.y, a few dozen per address, under the per-address
//! caps) and misbehaves in one way, while a well-behaved client from
//! 127.0.0.1 keeps looking cases up; its p99 latency must stay at most
//! [`LEGIT_P99_MS_MAX`] and the server's RSS under its bound.
//!
//! Against `mpp-hub serve`, all at once: HTTP request heads trickled a byte
//! a second, request bodies trickled a byte a second, gRPC connections that
//! never send the HTTP/2 preface, and `WatchCase` streams that are never
//! read; then, against a hub with TLS, handshakes that never complete.
//! Against an agency service (`mpp-dukcapil`): gRPC connections that never
//! send the preface, HTTP/2 request headers trickled, authenticated request
//! bodies trickled, and (with TLS) handshakes that never complete.
//!
//! Each attack's connections are held until the server closes them (counted
//! with the time each took) or the attack ends. The figures are printed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use mpp_edge::tls::test_pki::{https_get, TestPki};
use mpp_proto::agency::dukcapil::v1 as dk;
use mpp_proto::v1::cases_service_client::CasesServiceClient;
use mpp_proto::v1::{GetCaseRequest, WatchCaseRequest};
use mpp_tests::envelope::{body, publish_envelope, stream_last_seq, tracking_number, EventFactory};
use mpp_tests::pin::TEST_PIN;
use mpp_tests::services::{AgencyOptions, HubOptions};
use mpp_tests::{wait_for, AgencyProcess, HubProcess, NatsServer, READY_DEADLINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

const REGION: &str = "1771";
/// Connections of each attack (the issue asks for at least 500).
const ATTACK_CONNECTIONS_MIN: usize = 500;
/// Attacker addresses per attack; connections per address stay under the
/// servers' per-address caps, so the timeouts, not the caps, are what the
/// attacks meet.
const ATTACKER_ADDRESSES: usize = 20;
/// How long the well-behaved client calls while the attacks whose timeouts
/// are 10 s run: until past those timeouts. (Each attack connection is held
/// until the server closes it, or its timeout and [`CLOSE_SLACK`] passed.)
const LONG_ATTACK: Duration = Duration::from_millis(12_500);
/// The same for the TLS attacks (past the 2 s ClientHello timeout), and how
/// long the agency's trickled bodies (held until its 30 s request timeout)
/// are held.
const TLS_ATTACK: Duration = Duration::from_millis(6_000);
/// Attack connections are opened in steps of this many, one step every
/// [`RAMP_STEP`] (500 in 1 s): a burst of thousands at once would overflow
/// the servers' listen backlogs, and the kernel would then hold connections
/// the server has not even seen (the client believes them open; the server
/// accepts them seconds later).
const RAMP_CONNECTIONS: usize = 25;
const RAMP_STEP: Duration = Duration::from_millis(50);
/// The well-behaved client's latencies count from this long after an
/// attack starts, when its connections are open: while they open, the test
/// process (attacker and client on the same two cores) is busy setting up
/// hundreds of connections, and a slow call then measures the test machine
/// rather than the server. Calls before it must still succeed and are
/// printed.
const MEASURE_AFTER: Duration = Duration::from_millis(1_500);
/// Slack on a server timeout before a connection must have been closed (the
/// machine is shared: a loaded server reads late).
const CLOSE_SLACK: Duration = Duration::from_millis(5_000);
/// The well-behaved client's p99 latency bound: a liveness bound, not a
/// speed target. An attack that worked would hold the citizen's calls for
/// the servers' 2–10 s timeouts or refuse them. The p50/p99 figures are
/// printed; a speed target (50 ms) is not asserted in a test that shares
/// 2 cores with the rest of the suite.
const LEGIT_P99_MS_MAX: f64 = 1_000.0;
/// Between two of the well-behaved client's requests.
const LEGIT_PAUSE: Duration = Duration::from_millis(15);
/// RSS bounds, in MiB: the hub's footprint bound (BENCHMARKS.md), and an
/// agency service's.
const HUB_RSS_MIB_MAX: u64 = 512;
const AGENCY_RSS_MIB_MAX: u64 = 256;
/// The servers' timeouts the attacks meet (hub/edge).
const HEADER_TIMEOUT: Duration = Duration::from_millis(mpp_edge::http_serve::HTTP_HEADER_READ_TIMEOUT_MS);
const BODY_TIMEOUT: Duration = Duration::from_millis(mpp_edge::http_serve::HTTP_REQUEST_BODY_TIMEOUT_MS);
const FIRST_REQUEST_TIMEOUT: Duration =
    Duration::from_millis(mpp_edge::grpc_serve::GRPC_FIRST_REQUEST_TIMEOUT_MS);
const CLIENT_HELLO_TIMEOUT: Duration = Duration::from_millis(mpp_edge::tls::TLS_CLIENT_HELLO_TIMEOUT_MS);

/// What each connection of an attack does once connected.
#[derive(Debug, Clone)]
struct Misbehaviour {
    /// Sent at once.
    burst: Vec<u8>,
    /// Then sent a byte a second (nothing more after it).
    drip: Vec<u8>,
}

impl Misbehaviour {
    fn silent() -> Self {
        Misbehaviour { burst: Vec::new(), drip: Vec::new() }
    }

    fn trickle(burst: &[u8], drip: &[u8]) -> Self {
        Misbehaviour { burst: burst.to_vec(), drip: drip.to_vec() }
    }
}

/// What one attack saw.
#[derive(Debug, Default)]
struct AttackReport {
    name: &'static str,
    connected: usize,
    /// Connections open at once, at most (as the attacker saw them).
    held_peak: usize,
    /// Connections the server closed, and the longest any was held.
    closed: usize,
    longest_held: Duration,
}

impl AttackReport {
    fn print(&self) {
        println!(
            "attack {:<32} connected {:>4}, held at once {:>4}, closed by the server {:>4} (longest held {} ms)",
            self.name,
            self.connected,
            self.held_peak,
            self.closed,
            self.longest_held.as_millis()
        );
    }

    /// Every connection was closed by the server within `timeout` (plus
    /// [`CLOSE_SLACK`]; the attack held each at most that long).
    fn ensure_all_closed_within(&self, timeout: Duration) -> Result<()> {
        ensure!(self.connected >= ATTACK_CONNECTIONS_MIN, "{}: only {} connected", self.name, self.connected);
        ensure!(
            self.closed == self.connected,
            "{}: the server closed {} of {} connections",
            self.name,
            self.closed,
            self.connected
        );
        ensure!(
            self.longest_held <= timeout + CLOSE_SLACK,
            "{}: a connection was held {:?}, past the {:?} timeout",
            self.name,
            self.longest_held,
            timeout
        );
        Ok(())
    }
}

/// The `i`-th attacker address of attack number `attack`.
fn attacker(attack: u8, i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 10 + attack, (i % ATTACKER_ADDRESSES) as u8, 2))
}

/// A TCP connection to `target` from `from`.
async fn connect_from(from: IpAddr, target: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(target).await
}

/// Opens [`ATTACK_CONNECTIONS_MIN`] connections to `target` (ramped, see
/// [`RAMP_CONNECTIONS`]), each misbehaving as `how`, and holds each until
/// the server closes it or `hold_max` has passed since it connected.
async fn attack(
    name: &'static str,
    number: u8,
    target: SocketAddr,
    how: Misbehaviour,
    hold_max: Duration,
) -> AttackReport {
    let held = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..ATTACK_CONNECTIONS_MIN)
        .map(|i| {
            let (how, held, peak) = (how.clone(), held.clone(), peak.clone());
            tokio::spawn(async move {
                tokio::time::sleep(RAMP_STEP * (i / RAMP_CONNECTIONS) as u32).await;
                let Ok(stream) = connect_from(attacker(number, i), target).await else { return None };
                let now_held = held.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now_held, Ordering::SeqCst);
                let started = Instant::now();
                let until = started + hold_max;
                let (mut r, mut w) = stream.into_split();
                let read_to_end = async {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = r.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                };
                let misbehave = async {
                    if w.write_all(&how.burst).await.is_ok() {
                        for b in &how.drip {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            if w.write_all(&[*b]).await.is_err() {
                                break;
                            }
                        }
                    }
                    std::future::pending::<()>().await;
                };
                let closed = tokio::select! {
                    () = read_to_end => Some(started.elapsed()),
                    () = misbehave => None,
                    () = tokio::time::sleep_until(until) => None,
                };
                held.fetch_sub(1, Ordering::SeqCst);
                Some(closed)
            })
        })
        .collect();
    let mut report = AttackReport { name, ..AttackReport::default() };
    for t in tasks {
        if let Ok(Some(closed)) = t.await {
            report.connected += 1;
            if let Some(d) = closed {
                report.closed += 1;
                report.longest_held = report.longest_held.max(d);
            }
        }
    }
    report.held_peak = peak.load(Ordering::SeqCst);
    report
}

/// Prints a server's RSS peak and fails when it is over `bound_mib`.
fn ensure_rss(what: &str, peak_mib: u64, bound_mib: u64) -> Result<()> {
    println!("{what} RSS peak under attack: {peak_mib} MiB (bound {bound_mib} MiB)");
    ensure!(peak_mib <= bound_mib, "{what} RSS peak {peak_mib} MiB over {bound_mib} MiB");
    Ok(())
}

/// Latencies of a well-behaved client's calls, in ms, with when each
/// started (ms after the first); [`Latencies::summary`] counts those from
/// [`MEASURE_AFTER`] on.
#[derive(Debug, Default, Clone)]
struct Latencies(Arc<Mutex<Vec<(f64, f64)>>>);

impl Latencies {
    fn push(&self, at: Duration, d: Duration) {
        let mut v = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        v.push((at.as_secs_f64() * 1000.0, d.as_secs_f64() * 1000.0));
    }

    /// (calls, p50, p99, max), in ms.
    fn summary(&self) -> (usize, f64, f64, f64) {
        let all = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let from_ms = MEASURE_AFTER.as_secs_f64() * 1000.0;
        let mut v: Vec<f64> = all.iter().filter(|(at, _)| *at >= from_ms).map(|(_, d)| *d).collect();
        v.sort_by(f64::total_cmp);
        let at =
            |q: f64| v.get(((v.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0.0);
        (v.len(), at(0.50), at(0.99), v.last().copied().unwrap_or(0.0))
    }

    fn ensure_fast(&self, what: &str) -> Result<()> {
        let p99 = self.print(what)?;
        ensure!(p99 <= LEGIT_P99_MS_MAX, "{what}: p99 {p99:.2} ms over {LEGIT_P99_MS_MAX} ms");
        Ok(())
    }

    /// Prints the figures (every call succeeded); returns the p99.
    fn print(&self, what: &str) -> Result<f64> {
        let (n, p50, p99, max) = self.summary();
        println!("well-behaved {what:<34} {n:>5} calls, p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms");
        let mut slowest = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        slowest.sort_by(|a, b| b.1.total_cmp(&a.1));
        let calls = slowest.len();
        let slowest: Vec<String> =
            slowest.iter().take(5).map(|(at, d)| format!("{d:.1} ms at +{:.0} ms", at)).collect();
        println!(
            "  slowest 5 of all {} calls (measured from +{} ms): {}",
            calls,
            MEASURE_AFTER.as_millis(),
            slowest.join(", ")
        );
        ensure!(n >= 50, "{what}: only {n} calls were made");
        Ok(p99)
    }
}

/// Calls `call` every [`LEGIT_PAUSE`] until `until`; every call must
/// succeed. Returns the latencies.
async fn well_behaved<F, Fut>(until: Instant, mut call: F) -> Result<Latencies>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let latencies = Latencies::default();
    let first = Instant::now();
    while Instant::now() < until {
        let started = Instant::now();
        call().await?;
        latencies.push(started - first, started.elapsed());
        tokio::time::sleep(LEGIT_PAUSE).await;
    }
    Ok(latencies)
}

/// Fails unless this process may open `needed` more files.
fn ensure_file_limit(needed: u64) -> Result<()> {
    let limits = std::fs::read_to_string("/proc/self/limits").context("reading /proc/self/limits")?;
    let soft: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX);
    ensure!(soft >= needed, "RLIMIT_NOFILE is {soft}; this test needs {needed} (raise it with ulimit -n)");
    Ok(())
}

/// A case for the lookups, opened and filed into straight onto NATS.
async fn publish_case(nats: &NatsServer, serial: u64) -> Result<(String, u64)> {
    let tn = tracking_number(1771, serial)?;
    let f = EventFactory::new("e2e-slow", "izin", REGION);
    let js = nats.jetstream().await?;
    for e in [
        f.standard(1),
        f.case_opened(&tn),
        f.app_event(&tn, "A1", body::filed()),
        f.app_event(&tn, "A1", body::review_started()),
    ] {
        publish_envelope(&js, &e).await?;
    }
    Ok((tn, stream_last_seq(&js).await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_attacks_leave_lookups_fast_and_memory_bounded() -> Result<()> {
    // Four hub attacks at once, then the TLS ones, each with its sockets on
    // both ends, plus room.
    ensure_file_limit(12 * ATTACK_CONNECTIONS_MIN as u64)?;
    let nats = NatsServer::start().await?;
    let work = mpp_tests::temp_dir("mpp-slow-clients-")?;
    let pki = TestPki::generate(work.path()).map_err(|e| anyhow::anyhow!("generating the test PKI: {e}"))?;

    let mut hub = HubProcess::spawn(&nats.url())?;
    hub.wait_ready(READY_DEADLINE).await?;
    // The watch attack's case, and the well-behaved client's.
    let (watched, _) = publish_case(&nats, 4_241).await?;
    let (tn, last) = publish_case(&nats, 4_242).await?;
    hub.wait_caught_up(last, READY_DEADLINE).await?;
    hub_plaintext_attacks(&mut hub, &watched, &tn).await?;
    hub.terminate().await?;

    let mut tls_hub = HubProcess::spawn_with(
        &nats.url(),
        HubOptions {
            extra_args: tls_args(&pki),
            consumer_name: Some("hub-tls".to_owned()),
            ..HubOptions::default()
        },
    )?;
    // Ready is not caught up: the new replica must hold the case first.
    wait_https_ready(&mut tls_hub, &pki.ca, last).await?;
    hub_tls_attack(&mut tls_hub, &pki, &tn).await?;
    tls_hub.terminate().await?;

    let mut agency = AgencyProcess::spawn_dukcapil(&nats.url(), REGION)?;
    agency.wait_listening(READY_DEADLINE).await?;
    agency_plaintext_attacks(&mut agency).await?;
    agency.process().kill9()?;

    let mut options = AgencyOptions::region(REGION);
    options.extra_args = tls_args(&pki);
    let mut tls_agency = AgencyProcess::spawn("mpp-dukcapil", &nats.url(), options)?;
    tls_agency.wait_listening(READY_DEADLINE).await?;
    agency_tls_attack(&mut tls_agency, &pki).await?;
    Ok(())
}

fn tls_args(pki: &TestPki) -> Vec<String> {
    vec![
        "--tls-cert-file".to_owned(),
        pki.cert.display().to_string(),
        "--tls-key-file".to_owned(),
        pki.key.display().to_string(),
    ]
}

/// Waits until the TLS hub is ready and has ingested the stream up to
/// `stream_seq`, asked over HTTPS.
async fn wait_https_ready(hub: &mut HubProcess, ca: &Path, stream_seq: u64) -> Result<()> {
    let addr = hub.http_addr();
    let process = hub.process();
    wait_for("the TLS hub to be ready and caught up, over HTTPS", READY_DEADLINE, || {
        let running = process.ensure_running();
        async move {
            running?;
            match https_get(addr, "localhost", ca, "/readyz", &[]).await {
                Ok((200, _)) => {}
                Ok((status, body)) => bail!("{status} {body}"),
                Err(e) => bail!(e),
            }
            let (status, body) =
                https_get(addr, "localhost", ca, "/api/v1/head", &[]).await.map_err(anyhow::Error::msg)?;
            ensure!(status == 200, "/api/v1/head answered {status}: {body}");
            let head: serde_json::Value = serde_json::from_str(&body)?;
            let at = head.get("last_stream_seq").and_then(serde_json::Value::as_u64).unwrap_or(0);
            Ok((at >= stream_seq).then_some(()))
        }
    })
    .await
}

/// The hub's JSON and gRPC lookups of `tn`, timed, until `until`.
async fn hub_lookups(hub: &HubProcess, tn: &str, until: Instant) -> Result<(Latencies, Latencies)> {
    let http = hub.http_addr();
    let path = format!("/api/v1/cases/{tn}");
    let json = well_behaved(until, || {
        let path = path.clone();
        async move {
            let r = mpp_tests::http::get_with_headers(http, &path, &[("X-MPP-PIN", TEST_PIN)]).await?;
            ensure!(r.status == 200, "JSON lookup answered {}: {}", r.status, r.text());
            Ok(())
        }
    });
    let channel = Channel::from_shared(hub.grpc_endpoint())?.connect().await?;
    let grpc = well_behaved(until, || {
        let mut client = CasesServiceClient::new(channel.clone());
        let req =
            GetCaseRequest { tracking_number: tn.to_owned(), pin: TEST_PIN.to_owned(), ..Default::default() };
        async move {
            client.get_case(req).await.context("GetCase")?;
            Ok(())
        }
    });
    let (json, grpc) = tokio::join!(json, grpc);
    Ok((json?, grpc?))
}

/// `WatchCase` streams of `tn` from [`ATTACK_CONNECTIONS_MIN`] connections
/// (attacker addresses), never read: returns (connections, watches
/// granted, refused), holding them until `until`. A watch is refused only
/// with TOO_MANY_WATCHES past the per-case cap: lookups with the right PIN
/// never count against the number's lock, however many are in flight.
async fn unread_watches(grpc: SocketAddr, tn: String, until: Instant) -> Result<(usize, usize, usize)> {
    let tasks: Vec<_> = (0..ATTACK_CONNECTIONS_MIN)
        .map(|i| {
            let tn = tn.clone();
            tokio::spawn(async move {
                tokio::time::sleep(RAMP_STEP * (i / RAMP_CONNECTIONS) as u32).await;
                let channel = Endpoint::from_shared(format!("http://{grpc}"))?
                    .local_address(Some(attacker(3, i)))
                    .connect()
                    .await?;
                let mut client = CasesServiceClient::new(channel);
                let req = WatchCaseRequest { tracking_number: tn, pin: TEST_PIN.to_owned() };
                let answer = client.watch_case(req).await;
                // Never read; hold the stream (and the connection).
                tokio::time::sleep_until(until).await;
                Ok::<_, anyhow::Error>(match answer {
                    Ok(_stream) => (1, 0),
                    Err(s)
                        if s.code() == tonic::Code::ResourceExhausted
                            && s.metadata().get("mpp-reason-code").and_then(|v| v.to_str().ok())
                                == Some("TOO_MANY_WATCHES") =>
                    {
                        (0, 1)
                    }
                    Err(s) => bail!("WatchCase answered {s:?}"),
                })
            })
        })
        .collect();
    let (mut connected, mut granted, mut refused) = (0, 0, 0);
    for t in tasks {
        let (g, r) = t.await??;
        connected += 1;
        granted += g;
        refused += r;
    }
    Ok((connected, granted, refused))
}

async fn hub_plaintext_attacks(hub: &mut HubProcess, watched: &str, tn: &str) -> Result<()> {
    let pid = hub.process().pid().context("the hub's pid")?;
    let until = Instant::now() + LONG_ATTACK;
    let (http, grpc) = (hub.http_addr(), hub.grpc_addr());
    let head = format!("GET /api/v1/cases/{tn} HTTP/1.1\r\nHost: hub\r\nX-MPP-PIN: ");
    let form_head =
        b"POST /lacak HTTP/1.1\r\nHost: hub\r\nContent-Type: application/x-www-form-urlencoded\r\n\
                      Content-Length: 64\r\n\r\n";
    let ((headers, bodies, prefaces, watches, lookups), rss_peak_mib) =
        mpp_tests::rss::peak_while(pid, async {
            tokio::join!(
                attack(
                    "HTTP head trickled",
                    0,
                    http,
                    Misbehaviour::trickle(head.as_bytes(), b"1234567890123456"),
                    HEADER_TIMEOUT + CLOSE_SLACK
                ),
                attack(
                    "HTTP body trickled",
                    1,
                    http,
                    Misbehaviour::trickle(form_head, b"nomor=1771012345678"),
                    BODY_TIMEOUT + CLOSE_SLACK
                ),
                attack(
                    "gRPC without preface",
                    2,
                    grpc,
                    Misbehaviour::silent(),
                    FIRST_REQUEST_TIMEOUT + CLOSE_SLACK
                ),
                unread_watches(grpc, watched.to_owned(), until),
                hub_lookups(hub, tn, until),
            )
        })
        .await?;
    for r in [&headers, &bodies, &prefaces] {
        r.print();
    }
    let (watch_conns, granted, refused) = watches?;
    println!(
        "attack {:<32} connected {watch_conns:>4}, watches granted {granted}, refused {refused}",
        "WatchCase never read"
    );
    let (json, grpc_lookups) = lookups?;
    json.ensure_fast("hub JSON lookups (new connection each)")?;
    grpc_lookups.ensure_fast("hub gRPC GetCase")?;
    ensure_rss("hub", rss_peak_mib, HUB_RSS_MIB_MAX)?;
    headers.ensure_all_closed_within(HEADER_TIMEOUT)?;
    bodies.ensure_all_closed_within(BODY_TIMEOUT)?;
    prefaces.ensure_all_closed_within(FIRST_REQUEST_TIMEOUT)?;
    ensure!(watch_conns >= ATTACK_CONNECTIONS_MIN, "only {watch_conns} watch connections");
    ensure!(
        granted <= mpp_lookup::watch::WATCHERS_PER_CASE_MAX && granted + refused == watch_conns,
        "watches granted {granted}, refused {refused} of {watch_conns}"
    );
    Ok(())
}

/// A TLS record header of a ClientHello, then its first bytes: a handshake
/// that never completes.
const TLS_HELLO_START: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03];

async fn hub_tls_attack(hub: &mut HubProcess, pki: &TestPki, tn: &str) -> Result<()> {
    let pid = hub.process().pid().context("the hub's pid")?;
    let until = Instant::now() + TLS_ATTACK;
    let http = hub.http_addr();
    let path = format!("/api/v1/cases/{tn}");
    let lookups = well_behaved(until, || {
        let (path, ca) = (path.clone(), pki.ca.clone());
        async move {
            let (status, body) = https_get(http, "localhost", &ca, &path, &[("X-MPP-PIN", TEST_PIN)])
                .await
                .map_err(anyhow::Error::msg)?;
            ensure!(status == 200, "HTTPS lookup answered {status}: {body}");
            Ok(())
        }
    });
    let ((handshakes, lookups), rss_peak_mib) = mpp_tests::rss::peak_while(pid, async {
        tokio::join!(
            attack(
                "TLS handshake never completed",
                4,
                http,
                Misbehaviour::trickle(&[], TLS_HELLO_START),
                CLIENT_HELLO_TIMEOUT + CLOSE_SLACK
            ),
            lookups,
        )
    })
    .await?;
    handshakes.print();
    lookups?.ensure_fast("hub HTTPS lookups (new TLS each)")?;
    ensure_rss("TLS hub", rss_peak_mib, HUB_RSS_MIB_MAX)?;
    handshakes.ensure_all_closed_within(CLIENT_HELLO_TIMEOUT)?;
    Ok(())
}

/// An agency's well-behaved client: gRPC health checks (its reads: every
/// RPC of an agency writes) and filings, timed. A filing waits for an fsync
/// of the outbox, whose latency is the shared disk's: its figures are
/// printed, and every filing must succeed.
async fn agency_calls(
    agency: &AgencyProcess,
    tls: Option<&TestPki>,
    until: Instant,
) -> Result<(Latencies, Latencies)> {
    let mut endpoint = Endpoint::from_shared(match tls {
        None => agency.grpc_endpoint(),
        Some(_) => format!("https://localhost:{}", agency.grpc_addr().port()),
    })?;
    if let Some(pki) = tls {
        endpoint = endpoint.tls_config(mpp_edge::tls::client_tls_config(&pki.ca)?)?;
    }
    let channel = endpoint.connect().await?;
    let health = well_behaved(until, || {
        let mut client = tonic_health_client(channel.clone());
        async move {
            client
                .check(tonic_health_request("mpp.agency.dukcapil.v1.DukcapilService"))
                .await
                .context("health Check")?;
            Ok(())
        }
    });
    let bearer = agency.bearer()?;
    let filings = well_behaved(until, || {
        let mut client = dk::dukcapil_service_client::DukcapilServiceClient::with_interceptor(
            channel.clone(),
            bearer.clone(),
        );
        async move {
            client
                .ajukan_permohonan(mpp_tests::dukcapil::permohonan("", dk::Layanan::Kk))
                .await
                .context("AjukanPermohonan")?;
            Ok(())
        }
    });
    let (health, filings) = tokio::join!(health, filings);
    Ok((health?, filings?))
}

fn tonic_health_client(channel: Channel) -> tonic_health::pb::health_client::HealthClient<Channel> {
    tonic_health::pb::health_client::HealthClient::new(channel)
}

fn tonic_health_request(service: &str) -> tonic_health::pb::HealthCheckRequest {
    tonic_health::pb::HealthCheckRequest { service: service.to_owned() }
}

/// The HTTP/2 client preface and an empty SETTINGS frame.
fn h2_preface() -> Vec<u8> {
    let mut b = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    b.extend(h2_frame(0x4, 0, 0, &[]));
    b
}

/// One HTTP/2 frame.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut b = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    b.extend(stream.to_be_bytes());
    b.extend(payload);
    b
}

/// A HPACK literal header field without indexing, with a new name (no
/// Huffman coding; names and values shorter than 127 bytes).
fn hpack_literal(name: &str, value: &str) -> Vec<u8> {
    let mut b = vec![0x00, name.len() as u8];
    b.extend(name.as_bytes());
    b.push(value.len() as u8);
    b.extend(value.as_bytes());
    b
}

/// The HEADERS frame (stream 1) of an authenticated unary call to `path`.
fn grpc_headers(path: &str, token: &str) -> Vec<u8> {
    // :method POST (static 3), :scheme http (static 6), then literals.
    let mut block = vec![0x83, 0x86];
    block.extend(hpack_literal(":path", path));
    block.extend(hpack_literal(":authority", "localhost"));
    block.extend(hpack_literal("content-type", "application/grpc"));
    block.extend(hpack_literal("te", "trailers"));
    block.extend(hpack_literal("authorization", &format!("Bearer {token}")));
    h2_frame(0x1, 0x4, 1, &block)
}

async fn agency_plaintext_attacks(agency: &mut AgencyProcess) -> Result<()> {
    let pid = agency.process().pid().context("the agency's pid")?;
    let grpc = agency.grpc_addr();
    let path = format!("/{}/AjukanPermohonan", dk::dukcapil_service_server::SERVICE_NAME);
    let headers = grpc_headers(&path, agency.token());

    // Connections that never send the preface, and preface then request
    // headers trickled, together (under the agency's 1,024 connections).
    let until = Instant::now() + LONG_ATTACK;
    let ((silent, trickled, calls), rss_peak_mib) = mpp_tests::rss::peak_while(pid, async {
        tokio::join!(
            attack(
                "agency gRPC without preface",
                5,
                grpc,
                Misbehaviour::silent(),
                FIRST_REQUEST_TIMEOUT + CLOSE_SLACK
            ),
            attack(
                "agency HTTP/2 headers trickled",
                6,
                grpc,
                Misbehaviour::trickle(&h2_preface(), &headers),
                FIRST_REQUEST_TIMEOUT + CLOSE_SLACK
            ),
            agency_calls(agency, None, until),
        )
    })
    .await?;
    silent.print();
    trickled.print();
    let (health, filings) = calls?;
    health.ensure_fast("agency health checks")?;
    filings.print("agency AjukanPermohonan")?;
    ensure_rss("agency", rss_peak_mib, AGENCY_RSS_MIB_MAX)?;
    silent.ensure_all_closed_within(FIRST_REQUEST_TIMEOUT)?;
    trickled.ensure_all_closed_within(FIRST_REQUEST_TIMEOUT)?;

    // Authenticated calls whose request body trickles: each is held until
    // the agency's request timeout (30 s, past this attack), and meanwhile
    // the agency serves as before.
    let mut burst = h2_preface();
    burst.extend(&headers);
    // The gRPC message's prefix announces 100 bytes; one more DATA frame of
    // one byte then trickles.
    burst.extend(h2_frame(0x0, 0, 1, &[0, 0, 0, 0, 100]));
    let drip = h2_frame(0x0, 0, 1, &[0x0a]);
    let until = Instant::now() + TLS_ATTACK;
    let ((bodies, calls), rss_peak_mib) = mpp_tests::rss::peak_while(pid, async {
        tokio::join!(
            attack("agency request body trickled", 7, grpc, Misbehaviour::trickle(&burst, &drip), TLS_ATTACK),
            agency_calls(agency, None, until),
        )
    })
    .await?;
    bodies.print();
    let (health, filings) = calls?;
    health.ensure_fast("agency health checks (bodies)")?;
    filings.print("agency AjukanPermohonan (bodies)")?;
    ensure_rss("agency", rss_peak_mib, AGENCY_RSS_MIB_MAX)?;
    ensure!(bodies.connected >= ATTACK_CONNECTIONS_MIN, "only {} connected", bodies.connected);
    Ok(())
}

async fn agency_tls_attack(agency: &mut AgencyProcess, pki: &TestPki) -> Result<()> {
    let pid = agency.process().pid().context("the agency's pid")?;
    let until = Instant::now() + TLS_ATTACK;
    let grpc = agency.grpc_addr();
    let ((handshakes, calls), rss_peak_mib) = mpp_tests::rss::peak_while(pid, async {
        tokio::join!(
            attack(
                "agency TLS never completed",
                8,
                grpc,
                Misbehaviour::trickle(&[], TLS_HELLO_START),
                CLIENT_HELLO_TIMEOUT + CLOSE_SLACK
            ),
            agency_calls(agency, Some(pki), until),
        )
    })
    .await?;
    handshakes.print();
    let (health, filings) = calls?;
    health.ensure_fast("agency health checks over TLS")?;
    filings.print("agency AjukanPermohonan over TLS")?;
    ensure_rss("TLS agency", rss_peak_mib, AGENCY_RSS_MIB_MAX)?;
    handshakes.ensure_all_closed_within(CLIENT_HELLO_TIMEOUT)?;
    Ok(())
}
