//! Section 5: case lookups per second, gRPC `GetCase` and HTTP
//! `GET /api/v1/cases/{tn}` (with the PIN; one in [`WRONG_PIN_EVERY`] with a
//! wrong one, so the lookup guard's shared store is exercised), from a load
//! generator on the same machine, while the hub ingests new events at a
//! steady rate.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mpp_core::ids::TrackingNumber;
use mpp_proto::v1::GetCaseRequest;
use mpp_sim::Rng;

use crate::proc::Hub;
use crate::report::{percentiles, Percentiles};
use crate::workload::BENCH_PIN;

/// The gRPC method the load calls.
const GET_CASE_PATH: &str = "/mpp.v1.CasesService/GetCase";

/// gRPC connections shared by the gRPC load tasks (HTTP/2 multiplexes):
/// two carry more requests per read and write than four, on both sides,
/// so the load takes less of the hub's CPU per lookup (BENCHMARKS.md,
/// "A lookup's CPU, continued").
pub(crate) const GRPC_CHANNELS: usize = 2;

/// One lookup in this many uses a wrong PIN ([`WRONG_PIN`]): it is
/// answered `CASE_NOT_FOUND` after its failure is checked and counted in the
/// hub's shared guard bucket (a compare-and-set write), and the next right
/// PIN of that number then clears the failure (another write), so the
/// guard's store path is part of what is measured, not only the lookups of
/// numbers without a record.
pub(crate) const WRONG_PIN_EVERY: u64 = 16;

/// A PIN no bench case has (they all have [`BENCH_PIN`]).
pub(crate) const WRONG_PIN: &str = "314159";

/// `grpc-status` NOT_FOUND.
const GRPC_NOT_FOUND: u32 = 5;

/// One protocol's result.
#[derive(Debug, Clone)]
pub(crate) struct LookupRun {
    /// Successful lookups per second.
    pub(crate) per_s: f64,
    /// Their latency.
    pub(crate) latency: Percentiles,
    /// The latency of those with the right PIN.
    pub(crate) right: Percentiles,
    /// The latency of those with a wrong PIN.
    pub(crate) wrong: Percentiles,
    /// Failed lookups (a wrong answer or none).
    pub(crate) errors: u64,
    /// Lookups with a wrong PIN, answered as such (among `per_s`).
    pub(crate) wrong_pins: u64,
    /// CPU per lookup of the bench, the hub and nats-server over the window.
    pub(crate) cpu_per_lookup: String,
}

/// Which API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    /// `mpp.v1.CasesService/GetCase`.
    Grpc,
    /// `GET /api/v1/cases/{tn}` with `X-MPP-PIN`.
    Http,
}

/// Looks up random cases of `cases` from `tasks` concurrent tasks for `window`.
pub(crate) async fn run(
    hub: &Hub,
    api: Api,
    cases: Arc<Vec<TrackingNumber>>,
    tasks: usize,
    window: Duration,
    seed: u64,
) -> Result<LookupRun> {
    if cases.is_empty() {
        bail!("no cases to look up");
    }
    let mut channels = Vec::new();
    if api == Api::Grpc {
        for _ in 0..GRPC_CHANNELS {
            channels.push(crate::grpc::GrpcConn::connect(&hub.grpc_url).await.context("gRPC connect")?);
        }
    }
    let uri = match channels.first() {
        Some(c) => Some(c.method_uri(GET_CASE_PATH)?),
        None => None,
    };
    // Each case's tracking number and path, written once rather than per lookup.
    let numbers: Arc<Vec<(String, String)>> = Arc::new(
        cases
            .iter()
            .map(|tn| {
                let tn = tn.to_string();
                let path = format!("/api/v1/cases/{tn}");
                (tn, path)
            })
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let cpu0 = crate::proc::CpuTimes::now();
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks.max(1) {
        let numbers = numbers.clone();
        let uri = uri.clone();
        let stop = stop.clone();
        let mut rng = Rng::new(seed ^ (t as u64 + 1));
        let grpc = channels.get(t % GRPC_CHANNELS.max(1)).cloned();
        let http_addr = hub.http_addr.clone();
        handles.push(tokio::spawn(async move {
            // Right PINs' latencies and wrong PINs', apart.
            let mut samples = (Vec::with_capacity(1 << 16), Vec::with_capacity(1 << 12));
            let mut errors = 0u64;
            let mut wrong_pins = 0u64;
            let mut conn = match api {
                Api::Http => Some(crate::http::Conn::connect(&http_addr).await?),
                Api::Grpc => None,
            };
            let mut grpc = grpc;
            while !stop.load(Ordering::Relaxed) {
                let (tn, path) = &numbers[rng.below(numbers.len() as u64) as usize];
                let wrong = rng.below(WRONG_PIN_EVERY) == 0;
                let pin = if wrong { WRONG_PIN } else { BENCH_PIN };
                let t0 = Instant::now();
                let ok = match (&mut grpc, &mut conn) {
                    (Some(c), _) => {
                        let req = GetCaseRequest {
                            tracking_number: tn.clone(),
                            pin: pin.to_owned(),
                            ..Default::default()
                        };
                        let want = if wrong { GRPC_NOT_FOUND } else { 0 };
                        match &uri {
                            Some(uri) => c.unary_status(uri, &req).await.ok().flatten() == Some(want),
                            None => false,
                        }
                    }
                    (None, Some(c)) => {
                        // The status, and a whole body of the length the head gave.
                        match c.get_status(path, &[("x-mpp-pin", pin)]).await {
                            Ok((status, _)) => status == if wrong { 404 } else { 200 },
                            Err(_) => {
                                // A broken connection: count it and reconnect.
                                *c = crate::http::Conn::connect(&http_addr).await?;
                                false
                            }
                        }
                    }
                    (None, None) => false,
                };
                if ok {
                    let took = t0.elapsed();
                    if wrong {
                        samples.1.push(took);
                        wrong_pins += 1;
                    } else {
                        samples.0.push(took);
                    }
                } else {
                    errors += 1;
                }
            }
            Ok::<_, anyhow::Error>((samples, errors, wrong_pins))
        }));
    }
    tokio::time::sleep(window).await;
    stop.store(true, Ordering::Relaxed);
    let cpu1 = crate::proc::CpuTimes::now();
    let (mut right, mut wrong) = (Vec::new(), Vec::new());
    let mut errors = 0;
    let mut wrong_pins = 0;
    for h in handles {
        let ((r, w), e, n) = h.await.context("lookup task")??;
        right.extend(r);
        wrong.extend(w);
        errors += e;
        wrong_pins += n;
    }
    let secs = started.elapsed().as_secs_f64();
    let mut all = [right.as_slice(), wrong.as_slice()].concat();
    let per_s = all.len() as f64 / secs;
    Ok(LookupRun {
        per_s,
        latency: percentiles(&mut all),
        right: percentiles(&mut right),
        wrong: percentiles(&mut wrong),
        errors,
        wrong_pins,
        cpu_per_lookup: cpu1.per_op_since(&cpu0, all.len() as u64),
    })
}
