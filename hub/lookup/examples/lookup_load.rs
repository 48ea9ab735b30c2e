//! Lookup throughput and latency of the hub's citizen surfaces, HTTP
//! (`GET /api/v1/cases/{tn}` with `X-MPP-PIN`) and gRPC (`GetCase`).
//!
//! Builds a store of `--cases` two-agency cases through the real ledger,
//! serves it with the real router and gRPC service (PIN check, store read,
//! SLA clocks, access log, JSON or protobuf) on 127.0.0.1, and runs
//! `--clients` concurrent clients for `--seconds` against each surface, each
//! client looking up random cases with their PINs over one kept-alive
//! connection. Rate limits are lifted (every client shares 127.0.0.1).
//! Prints requests per second and latency percentiles.
//!
//! ```text
//! cargo run --release -p mpp-hub --example lookup_load -- --cases 2000 --clients 32 --seconds 10
//! ```
//!
//! Bounded: every loop stops at its deadline; only loopback addresses are used.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use mpp_core::calendar::CalendarSet;
use mpp_core::pin::{pin_verifier, Pin, PinPepper};
use mpp_core::rng::Rng;
use mpp_core::{EventBody, RegionCode, TrackingNumber, UncheckedEnvelope};
use mpp_ledger::ledger::{Ledger, RawMessage};
use mpp_lookup::access::AccessLog;
use mpp_lookup::grpc::Cases;
use mpp_lookup::http::{router, AppState};
use mpp_lookup::lookup::{system_clock, Lookups};
use mpp_lookup::page::{Web, WebSettings};
use mpp_lookup::ratelimit::LookupLimits;
use mpp_lookup::watch::CaseChanges;
use mpp_proto::v1::cases_service_client::CasesServiceClient;
use mpp_proto::v1::cases_service_server::CasesServiceServer;
use mpp_proto::v1::GetCaseRequest;
use mpp_store::SledStore;
use mpp_wire as wire;
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PEPPER: &[u8] = b"lookup-load-example-pepper-0123456789";
/// Most cases the example builds.
const CASES_MAX: usize = 100_000;
/// Most concurrent clients.
const CLIENTS_MAX: usize = 1024;
/// Longest run per surface, in seconds.
const SECONDS_MAX: u64 = 600;

struct Args {
    cases: usize,
    clients: usize,
    seconds: u64,
}

fn parse_args() -> Result<Args> {
    let mut a = Args { cases: 2000, clients: 32, seconds: 10 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().context("a flag needs a value");
        match flag.as_str() {
            "--cases" => a.cases = value()?.parse()?,
            "--clients" => a.clients = value()?.parse()?,
            "--seconds" => a.seconds = value()?.parse()?,
            "-h" | "--help" => {
                println!("lookup_load [--cases N] [--clients C] [--seconds T]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    if !(1..=CASES_MAX).contains(&a.cases)
        || !(1..=CLIENTS_MAX).contains(&a.clients)
        || !(1..=SECONDS_MAX).contains(&a.seconds)
    {
        bail!("--cases 1..={CASES_MAX}, --clients 1..={CLIENTS_MAX}, --seconds 1..={SECONDS_MAX}");
    }
    Ok(a)
}

fn event_id(n: u64) -> String {
    let ms = 1_750_000_000_000u64 + n;
    let hex = format!("{ms:012x}");
    format!("{}-{}-7{:03x}-{:04x}-{:012x}", &hex[..8], &hex[8..], n & 0xfff, 0x8000 | (n & 0x3fff), n)
}

fn pin_of(i: usize) -> String {
    format!("{:06}", (i * 7919) % 1_000_000)
}

fn tracking(i: usize) -> TrackingNumber {
    TrackingNumber::new(RegionCode::parse("1771").unwrap_or_else(|_| unreachable!()), 1_000 + i as u64)
        .unwrap_or_else(|| unreachable!("small serials"))
}

/// Commits `cases` cases, each with a Dukcapil KK waiting on documents and a
/// DPMPTSP PBG waiting on payment.
fn build_store(store: SledStore, cases: usize) -> Result<()> {
    let mut ledger = Ledger::open(store)?;
    let pepper = PinPepper::from_bytes(PEPPER)?;
    let mut seq = 0u64;
    let mut batch = Vec::new();
    let t0_ms = 1_750_000_000_000i64;
    let mut push = |batch: &mut Vec<RawMessage>, agency: &str, service: &str, case: &str, app: &str, body| {
        seq += 1;
        let u = UncheckedEnvelope {
            schema_version: 1,
            event_id: event_id(seq),
            case_id: case.to_owned(),
            region_code: "1771".to_owned(),
            agency_id: agency.to_owned(),
            service_id: service.to_owned(),
            application_id: app.to_owned(),
            occurred_at_ms: t0_ms,
            officer: "petugas-1".to_owned(),
            body: Some(body),
        };
        batch.push(RawMessage {
            stream_seq: seq,
            stream_time_ns: (t0_ms + seq as i64) * 1_000_000,
            subject: format!("mpp.events.{agency}.{service}"),
            payload: Bytes::from(wire::from_unchecked(&u).encode_to_vec()),
            redrive: None,
        });
    };
    let standard = |name: &str| EventBody::ServiceStandardPublished {
        name_id: name.to_owned(),
        name_en: name.to_owned(),
        completion_working_days: 5,
        fee_idr: 50_000,
        requirements: vec![],
        fiktif_positif: false,
        version: 1,
        collection: None,
    };
    push(&mut batch, "dukcapil", "kk", "", "", standard("Kartu Keluarga"));
    push(&mut batch, "dpmptsp", "pbg", "", "", standard("PBG"));
    for i in 0..cases {
        let tn = tracking(i);
        let pin = Pin::parse(&pin_of(i)).context("pin")?;
        let c = tn.to_string();
        let opened = EventBody::CaseOpened {
            pin_verifier: pin_verifier(&pepper, &tn, &pin).to_vec(),
            nik_keyed_hash: vec![],
        };
        push(&mut batch, "dukcapil", "kk", &c, "", opened);
        push(&mut batch, "dukcapil", "kk", &c, "KK-1", EventBody::ApplicationFiled { documents: vec![] });
        push(
            &mut batch,
            "dukcapil",
            "kk",
            &c,
            "KK-1",
            EventBody::DocumentsRequested {
                documents: vec!["akta nikah".to_owned()],
                counter: "Loket 3".to_owned(),
                note: String::new(),
            },
        );
        push(&mut batch, "dpmptsp", "pbg", &c, "PBG-1", EventBody::ApplicationFiled { documents: vec![] });
        push(&mut batch, "dpmptsp", "pbg", &c, "PBG-1", EventBody::ReviewStarted);
        push(
            &mut batch,
            "dpmptsp",
            "pbg",
            &c,
            "PBG-1",
            EventBody::FeeAssessed {
                amount_idr: 1_250_000,
                payment_channel: "Bank Bengkulu".to_owned(),
                billing_code: "820001234567".to_owned(),
                due_at_ms: 0,
            },
        );
        if batch.len() >= 4000 {
            let out = ledger.commit_batch(&std::mem::take(&mut batch))?;
            if out.rejected > 0 {
                bail!("fixture events rejected: {out:?}");
            }
        }
    }
    let out = ledger.commit_batch(&batch)?;
    if out.rejected > 0 {
        bail!("fixture events rejected: {out:?}");
    }
    Ok(())
}

/// One keep-alive HTTP/1.1 GET; returns the status.
async fn http_get(stream: &mut TcpStream, buf: &mut Vec<u8>, path: &str, pin: &str) -> Result<u16> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: load\r\nX-MPP-PIN: {pin}\r\n\r\n");
    stream.write_all(req.as_bytes()).await?;
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed");
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end])?;
            let status: u16 = head.split(' ').nth(1).context("status")?.parse()?;
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                })
                .context("content-length")?
                .parse()?;
            while buf.len() < end + 4 + len {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    bail!("connection closed mid-body");
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok(status);
        }
    }
}

struct Run {
    latencies_us: Vec<u32>,
    errors: u64,
}

fn report(name: &str, runs: Vec<Run>, elapsed: Duration) {
    let errors: u64 = runs.iter().map(|r| r.errors).sum();
    let mut all: Vec<u32> = runs.into_iter().flat_map(|r| r.latencies_us).collect();
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let i = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
        f64::from(all[i]) / 1000.0
    };
    println!(
        "{name:<5} {:>8} requests in {:.1} s = {:>8.0} req/s   p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms   errors {errors}",
        all.len(),
        elapsed.as_secs_f64(),
        all.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        all.last().map_or(0.0, |m| f64::from(*m) / 1000.0),
    );
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let dir = tempfile::tempdir()?;
    let store = SledStore::open(dir.path().join("store"))?;
    let started = Instant::now();
    build_store(store.clone(), args.cases)?;
    println!("built {} two-agency cases in {:.1} s", args.cases, started.elapsed().as_secs_f64());

    let limits = LookupLimits { per_minute: 10_000_000, burst: 10_000_000 };
    let access = AccessLog::open(&dir.path().join("access"))?;
    let lookups = Lookups::new(
        store,
        Arc::new(CalendarSet::new()),
        system_clock(),
        PinPepper::from_bytes(PEPPER)?,
        limits,
    )
    .with_access_log(access.clone());
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let changes = CaseChanges::new(stop_rx);
    let web = Arc::new(Web::new(changes.clone(), WebSettings::default())?);
    let health = Arc::new(mpp_ledger::observe::health(&mpp_store::Head::default()));
    let app = router(AppState { lookups: lookups.clone(), health, web });
    let http_listener = TcpListener::bind("127.0.0.1:0").await?;
    let http_addr = http_listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(http_listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    let grpc_listener = TcpListener::bind("127.0.0.1:0").await?;
    let grpc_addr = grpc_listener.local_addr()?;
    let cases_service =
        CasesServiceServer::new(Cases::new(lookups, changes, mpp_lookup::proxy::ClientAddrPolicy::Peer));
    let incoming = tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(cases_service)
            .serve_with_incoming(incoming)
            .await;
    });
    println!(
        "{} clients for {} s each; HTTP {http_addr}, gRPC {grpc_addr}; {} cores",
        args.clients,
        args.seconds,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let n = args.cases;
    let run_for = Duration::from_secs(args.seconds);

    // HTTP.
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        tasks.push(tokio::spawn(async move {
            let mut run = Run { latencies_us: Vec::new(), errors: 0 };
            let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15 ^ (c as u64 + 1));
            let mut stream = TcpStream::connect(http_addr).await?;
            stream.set_nodelay(true)?;
            let mut buf = Vec::with_capacity(16 * 1024);
            while start.elapsed() < run_for {
                let i = rng.below(n as u64) as usize;
                let path = format!("/api/v1/cases/{}", tracking(i));
                let t = Instant::now();
                match http_get(&mut stream, &mut buf, &path, &pin_of(i)).await {
                    Ok(200) => run.latencies_us.push(t.elapsed().as_micros() as u32),
                    Ok(_) => run.errors += 1,
                    Err(_) => {
                        run.errors += 1;
                        stream = TcpStream::connect(http_addr).await?;
                    }
                }
            }
            anyhow::Ok(run)
        }));
    }
    let mut runs = Vec::new();
    for t in tasks {
        runs.push(t.await??);
    }
    report("HTTP", runs, start.elapsed());

    // gRPC.
    let endpoint = format!("http://{grpc_addr}");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let endpoint = endpoint.clone();
        tasks.push(tokio::spawn(async move {
            let mut run = Run { latencies_us: Vec::new(), errors: 0 };
            let mut rng = Rng::new(0xD1B5_4A32_D192_ED03 ^ (c as u64 + 1));
            let mut client = CasesServiceClient::connect(endpoint).await?;
            while start.elapsed() < run_for {
                let i = rng.below(n as u64) as usize;
                let req = GetCaseRequest {
                    tracking_number: tracking(i).to_string(),
                    pin: pin_of(i),
                    ..Default::default()
                };
                let t = Instant::now();
                match client.get_case(req).await {
                    Ok(_) => run.latencies_us.push(t.elapsed().as_micros() as u32),
                    Err(_) => run.errors += 1,
                }
            }
            anyhow::Ok(run)
        }));
    }
    let mut runs = Vec::new();
    for t in tasks {
        runs.push(t.await??);
    }
    report("gRPC", runs, start.elapsed());
    println!("access events dropped (queue full): {}", access.dropped());
    Ok(())
}
