//! Section 4: visibility latency, from an agency's "accepted" (the event is
//! durable in the agency kit's outbox) to the case view showing it (a gRPC
//! `WatchCase` stream of a real `mpp-hub serve` delivers a view that holds
//! it), at a given offered load.
//!
//! The load is open-loop: a pacer hands out tokens at the offered rate, and
//! many lanes each walk one case at a time through its journey, taking a
//! token per event (so each case's events stay in order, as at a counter).
//! A few of the lanes are probes: they watch their case and send its next
//! event only once the previous one is visible, timing each.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use mpp_agency_kit::{Outbox, OutboxConfig, OutboxStatus, Publisher, RelayConfig, SystemClock};
use mpp_core::ids::{RegionCode, TrackingNumber};
use mpp_proto::v1::cases_service_client::CasesServiceClient;
use mpp_proto::v1::{CaseView, GetCaseRequest, WatchCaseRequest};
use tokio::sync::Semaphore;
use tonic::transport::Channel;

use crate::nats::{self, SyncInterval};
use crate::proc::Hub;
use crate::report::{percentiles, Percentiles};
use crate::workload::{region, standards, Cases, KitEvents, BENCH_PIN};

/// How long one probe waits for its event to become visible.
pub(crate) const VISIBLE_DEADLINE: Duration = Duration::from_secs(10);

/// How long the bench waits, between loads, for the outbox to drain and the
/// hub to catch up.
pub(crate) const SETTLE_DEADLINE: Duration = Duration::from_secs(600);

/// One offered load's result.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Level {
    /// Offered events/s.
    pub(crate) offered: f64,
    /// Accepted events/s during the window.
    pub(crate) achieved: f64,
    /// Latency of the probes' events.
    pub(crate) latency: Percentiles,
    /// Probe events not visible within [`VISIBLE_DEADLINE`].
    pub(crate) timeouts: u64,
    /// Seconds after the window until the outbox was empty and the hub had
    /// ingested everything.
    pub(crate) settle_secs: f64,
}

/// Shared state of the lanes.
struct Lanes {
    publisher: Arc<dyn Publisher>,
    cases: Mutex<Cases>,
    kit: Mutex<KitEvents>,
    region: RegionCode,
    tokens: Semaphore,
    stop: AtomicBool,
    accepted: AtomicU64,
    grpc: CasesServiceClient<Channel>,
    samples: Mutex<Vec<Duration>>,
    timeouts: AtomicU64,
}

impl Lanes {
    /// Waits for a token; `false` once the window is over.
    async fn token(&self) -> bool {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            if let Ok(Ok(permit)) =
                tokio::time::timeout(Duration::from_millis(50), self.tokens.acquire()).await
            {
                permit.forget();
                return true;
            }
        }
    }

    async fn publish(&self, step: &crate::workload::Step) -> Result<()> {
        let ev = {
            let mut kit = self.kit.lock().map_err(|_| anyhow!("poisoned"))?;
            kit.build(self.region, step)?
        };
        self.publisher.publish_all(std::slice::from_ref(&ev)).await.map_err(|e| anyhow!("{e}"))?;
        if !self.stop.load(Ordering::Relaxed) {
            self.accepted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn next_case(&self) -> Result<crate::workload::CaseSteps> {
        self.cases.lock().map_err(|_| anyhow!("poisoned"))?.next_case()
    }

    /// A background lane: cases one after the other, no waiting.
    async fn background(self: Arc<Self>) -> Result<()> {
        while !self.stop.load(Ordering::Relaxed) {
            let case = self.next_case()?;
            for step in &case.steps {
                if !self.token().await {
                    return Ok(());
                }
                self.publish(step).await?;
            }
        }
        Ok(())
    }

    /// A probe lane: opens a case, waits until it can be read, watches it,
    /// and times each further event from accepted to visible.
    async fn probe(self: Arc<Self>, lane: usize) -> Result<()> {
        while !self.stop.load(Ordering::Relaxed) {
            let case = self.next_case()?;
            let Some((open, rest)) = case.steps.split_first() else { continue };
            if !self.token().await {
                return Ok(());
            }
            self.publish(open).await?;
            let tn = case.tracking_number;
            let mut grpc = self.grpc.clone();
            if !wait_readable(&mut grpc, &tn).await? {
                // Not even the opening became visible: one timeout, next case.
                self.timeouts.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let req = WatchCaseRequest { tracking_number: tn.to_string(), pin: BENCH_PIN.to_owned() };
            let mut watch = grpc.watch_case(as_citizen(req, lane)?).await.context("WatchCase")?.into_inner();
            let mut seen = 0usize;
            let mut want = 0usize;
            for step in rest {
                if !self.token().await {
                    return Ok(());
                }
                self.publish(step).await?;
                let accepted = Instant::now();
                if !step.adds_timeline_item() {
                    continue;
                }
                want += 1;
                let until = accepted + VISIBLE_DEADLINE;
                while seen < want {
                    let left = until.saturating_duration_since(Instant::now());
                    match tokio::time::timeout(left, watch.message()).await {
                        Ok(Ok(Some(view))) => seen = timeline_items(&view),
                        Ok(Ok(None)) => bail!("the watch of {tn} ended"),
                        Ok(Err(e)) => bail!("the watch of {tn} failed: {e}"),
                        Err(_) => break,
                    }
                }
                if seen >= want {
                    self.samples.lock().map_err(|_| anyhow!("poisoned"))?.push(accepted.elapsed());
                } else {
                    self.timeouts.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        Ok(())
    }
}

/// Timeline items of every application of the case.
fn timeline_items(view: &CaseView) -> usize {
    view.applications.iter().map(|a| a.timeline.len()).sum()
}

/// Most `GetCase` polls for one probe case, well below the bench hubs'
/// `--pin-failures-max` (1,000): every miss counts towards the number's
/// lockout until a hit clears it.
pub(crate) const PROBE_READ_ATTEMPTS_MAX: u32 = 500;

/// Longest pause between two polls of a probe case.
pub(crate) const PROBE_POLL_MAX: Duration = Duration::from_millis(100);

/// Polls `GetCase`, backing off from 1 ms to [`PROBE_POLL_MAX`], until the
/// case can be read; `false` after [`PROBE_READ_ATTEMPTS_MAX`] misses.
/// `req` as the citizen of probe `lane` sends it through the bench's
/// ingress: each probe is a citizen of its own (an address of TEST-NET-2,
/// 198.51.100.0/24, named in `x-forwarded-for`, which the bench's hub trusts
/// from 127.0.0.1), as the watches of real citizens come from many
/// addresses; from one address the hub allows only
/// `mpp_lookup::watch::WATCHERS_PER_CLIENT_MAX` watches.
fn as_citizen<T>(req: T, lane: usize) -> Result<tonic::Request<T>> {
    let mut r = tonic::Request::new(req);
    let addr = format!("198.51.100.{}", 1 + lane % 254);
    r.metadata_mut().insert("x-forwarded-for", addr.parse().context("x-forwarded-for")?);
    Ok(r)
}

async fn wait_readable(grpc: &mut CasesServiceClient<Channel>, tn: &TrackingNumber) -> Result<bool> {
    let mut pause = Duration::from_millis(1);
    for _ in 0..PROBE_READ_ATTEMPTS_MAX {
        let req = GetCaseRequest {
            tracking_number: tn.to_string(),
            pin: BENCH_PIN.to_owned(),
            ..Default::default()
        };
        match grpc.get_case(req).await {
            Ok(_) => return Ok(true),
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(s) => bail!("GetCase {tn}: {s}"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(PROBE_POLL_MAX);
    }
    Ok(false)
}

/// Waits until the outbox is empty and the hub has ingested the whole stream.
async fn settle(status: &OutboxStatus, js: &async_nats::jetstream::Context, hub: &Hub) -> Result<f64> {
    let started = Instant::now();
    while status.snapshot().depth > 0 {
        if started.elapsed() >= SETTLE_DEADLINE {
            bail!("the outbox did not drain within {SETTLE_DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut stream = js.get_stream(mpp_edge::stream::STREAM_NAME).await.context("stream")?;
    let last = stream.info().await.context("stream info")?.state.last_sequence;
    hub.wait_for_stream_seq(last, SETTLE_DEADLINE, |_| {}).await?;
    Ok(started.elapsed().as_secs_f64())
}

/// Sizes of section 4.
#[derive(Debug, Clone)]
pub(crate) struct VisibilitySizes {
    /// Offered loads, events/s.
    pub(crate) loads: Vec<f64>,
    /// Window per load.
    pub(crate) window: Duration,
    /// Lanes in all (probes included).
    pub(crate) lanes: usize,
    /// Probe lanes.
    pub(crate) probes: usize,
}

/// Runs every load against one hub.
pub(crate) async fn run(
    tmp: &Path,
    hub_exe: &Path,
    sizes: &VisibilitySizes,
    seed: u64,
) -> Result<Vec<Level>> {
    let nats = nats::start(tmp, SyncInterval::Always).await?;
    let hub_dir = crate::temp_dir(tmp, "hub-vis-")?;
    let mut hub = Hub::start(hub_exe, hub_dir.path(), &nats.url()).await?;
    let client = nats.connect().await?;
    let js = async_nats::jetstream::new(client.clone());
    let box_dir = crate::temp_dir(tmp, "outbox-vis-")?;
    let mut outbox = Outbox::open(OutboxConfig::new(box_dir.path()), Arc::new(SystemClock))?;
    outbox.start_relay(client, RelayConfig::default());
    let status = outbox.status();
    let publisher: Arc<dyn Publisher> = Arc::new(outbox.publisher());
    let region = region()?;
    // The services must be known before anything is filed.
    let mut kit = KitEvents::default();
    for step in standards(1)? {
        let ev = kit.build(region, &step)?;
        publisher.publish_all(std::slice::from_ref(&ev)).await.map_err(|e| anyhow!("{e}"))?;
    }
    settle(&status, &js, &hub).await?;
    let grpc = CasesServiceClient::connect(hub.grpc_url.clone()).await.context("gRPC connect")?;
    let mut levels = Vec::new();
    for (i, &offered) in sizes.loads.iter().enumerate() {
        let lanes = Arc::new(Lanes {
            publisher: publisher.clone(),
            cases: Mutex::new(Cases::new(seed ^ (i as u64 + 1), 70_000_000 + i as u64 * 10_000_000)?),
            kit: Mutex::new(KitEvents::default()),
            region,
            tokens: Semaphore::new(0),
            stop: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            grpc: grpc.clone(),
            samples: Mutex::new(Vec::new()),
            timeouts: AtomicU64::new(0),
        });
        let mut tasks = Vec::new();
        for lane in 0..sizes.lanes.max(1) {
            let l = lanes.clone();
            if lane < sizes.probes {
                tasks.push(tokio::spawn(l.probe(lane)));
            } else {
                tasks.push(tokio::spawn(l.background()));
            }
        }
        let started = Instant::now();
        let mut handed = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        while started.elapsed() < sizes.window {
            tick.tick().await;
            let due = (started.elapsed().as_secs_f64() * offered) as u64;
            if due > handed {
                lanes.tokens.add_permits((due - handed) as usize);
                handed = due;
            }
        }
        let window = started.elapsed().as_secs_f64();
        lanes.stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.context("lane")??;
        }
        let accepted = lanes.accepted.load(Ordering::Relaxed);
        let settle_secs = settle(&status, &js, &hub).await?;
        let mut samples = std::mem::take(&mut *lanes.samples.lock().map_err(|_| anyhow!("poisoned"))?);
        levels.push(Level {
            offered,
            achieved: accepted as f64 / window,
            latency: percentiles(&mut samples),
            timeouts: lanes.timeouts.load(Ordering::Relaxed),
            settle_secs,
        });
    }
    outbox.shutdown(Duration::from_secs(5)).await;
    hub.stop().await?;
    Ok(levels)
}
