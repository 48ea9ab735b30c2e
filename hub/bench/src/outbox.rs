//! Section 3: an agency service's publish path, through the agency kit's
//! durable outbox (group commit into redb, then the relay to JetStream with
//! `sync_interval: always`).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use mpp_agency_kit::{Outbox, OutboxConfig, OutgoingEvent, Publisher, RelayConfig, SystemClock};

use crate::nats::{self, SyncInterval};
use crate::workload::{Interleaved, KitEvents};

/// How long the relay may take to publish what was accepted.
pub(crate) const DRAIN_DEADLINE: Duration = Duration::from_secs(600);

/// What one run measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutboxRun {
    /// Events accepted (durable in the outbox), per second.
    pub(crate) accepted_per_s: f64,
    /// Events acknowledged by JetStream, per second, from the first call to
    /// the outbox being empty.
    pub(crate) published_per_s: f64,
    /// Group-commit flushes.
    pub(crate) flushes: u64,
    /// Mean time of one flush (the redb transaction and its sync), in
    /// milliseconds: the commit latency.
    pub(crate) flush_ms: f64,
    /// Events.
    pub(crate) events: usize,
}

/// Makes `n` realistic agency events, validated by the kit.
pub(crate) fn kit_events(n: usize, seed: u64) -> Result<Vec<OutgoingEvent>> {
    let mut gen = Interleaved::new(seed, 60_000_000, 1024, 0)?;
    let region = gen.region();
    let mut kit = KitEvents::default();
    (0..n).map(|_| kit.build(region, &gen.next_step()?)).collect()
}

/// Publishes `n` events, one per call, from `callers` concurrent callers,
/// through a fresh outbox relaying to a fresh nats-server.
pub(crate) async fn run(tmp: &Path, n: usize, callers: usize, seed: u64) -> Result<OutboxRun> {
    let nats = nats::start(tmp, SyncInterval::Always).await?;
    let client = nats.connect().await?;
    let dir = crate::temp_dir(tmp, "outbox-")?;
    let mut outbox = Outbox::open(OutboxConfig::new(dir.path()), Arc::new(SystemClock))?;
    outbox.start_relay(client, RelayConfig::default());
    let status = outbox.status();
    let events = Arc::new(kit_events(n, seed)?);
    let publisher: Arc<dyn Publisher> = Arc::new(outbox.publisher());
    let before = status.snapshot();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..callers.max(1) {
        let (publisher, events, next) = (publisher.clone(), events.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(ev) = events.get(i) else { return Ok::<(), anyhow::Error>(()) };
                publisher.publish_all(std::slice::from_ref(ev)).await.map_err(|e| anyhow!("{e}"))?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let accepted = started.elapsed();
    let after = status.snapshot();
    let until = Instant::now() + DRAIN_DEADLINE;
    while status.snapshot().depth > 0 {
        if Instant::now() >= until {
            bail!("the outbox did not drain within {DRAIN_DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let drained = started.elapsed();
    outbox.shutdown(Duration::from_secs(5)).await;
    let flushes = after.flushes_total - before.flushes_total;
    Ok(OutboxRun {
        accepted_per_s: n as f64 / accepted.as_secs_f64(),
        published_per_s: n as f64 / drained.as_secs_f64(),
        flushes,
        flush_ms: (after.flush_us_total - before.flush_us_total) as f64 / 1e3 / flushes.max(1) as f64,
        events: n,
    })
}
