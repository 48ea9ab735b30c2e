//! Accepted events per second: through the durable outbox (group commit, then
//! relayed to JetStream) versus one-at-a-time synchronous JetStream publishing,
//! both against a private nats-server with `sync_interval: always`. The outbox
//! runs twice: relayed one event at a time (pipelined single publishes, as on
//! a stream without `allow_atomic`), then in atomic batches.
//!
//! ```text
//! cargo run -p mpp-agency-kit --example outbox_rate --release
//! ```
//!
//! Prints the figures and their ratio; asserts nothing about timing. Sizes can
//! be changed with `MPP_BENCH_EVENTS` (outbox events, default 20000),
//! `MPP_BENCH_RAW_EVENTS` (default 2000) and `MPP_BENCH_CALLERS` (concurrent
//! callers, default 64).

use std::sync::Arc;
use std::time::{Duration, Instant};

use mpp_agency_kit::event::OutgoingEvent;
use mpp_agency_kit::outbox::OutboxSnapshot;
use mpp_agency_kit::{
    ensure_stream, new_application_id, EventBuilder, JetStreamPublisher, Outbox, OutboxConfig, Publisher,
    RelayConfig, SystemClock, STREAM_NAME,
};
use mpp_core::event::Target;
use mpp_core::ids::{AgencyId, OfficerId, RegionCode, ServiceId};
use mpp_core::EventBody;
use mpp_test_support::NatsServer;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(default)
}

fn events(n: usize) -> Vec<OutgoingEvent> {
    let b = EventBuilder::new(
        RegionCode::parse("1771").expect("region"),
        AgencyId::parse("dukcapil").expect("agency"),
        Arc::new(SystemClock),
    );
    let service = ServiceId::parse("kk").expect("service");
    let officer = OfficerId::parse("ptg-1").expect("officer");
    (0..n)
        .map(|_| {
            let case = mpp_agency_kit::testing::random_tracking_number(b.region());
            let app = new_application_id("DKC-KK").expect("application id");
            b.build(&service, Target::Application(case, app), &officer, EventBody::ReviewStarted)
                .expect("event")
        })
        .collect()
}

/// Publishes `events` one call of one event each, from `callers` concurrent
/// callers; returns the elapsed time until every call was answered.
async fn concurrent(publisher: Arc<dyn Publisher>, events: Vec<OutgoingEvent>, callers: usize) -> Duration {
    let events = Arc::new(events);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let (publisher, events, next) = (publisher.clone(), events.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(ev) = events.get(i) else { break };
                publisher.publish_all(std::slice::from_ref(ev)).await.expect("accepted");
            }
        }));
    }
    for t in tasks {
        t.await.expect("caller task");
    }
    started.elapsed()
}

/// Outbox snapshots before the calls and once all were accepted.
type Snapshots = (OutboxSnapshot, OutboxSnapshot);

/// Accepts `n` events into a new outbox in `dir` whose relay publishes with
/// `relay`; returns the time until all were accepted, until all were in the
/// stream, and the snapshots around the calls.
async fn through_outbox(
    client: &async_nats::Client,
    dir: &std::path::Path,
    relay: RelayConfig,
    n: usize,
    callers: usize,
) -> Result<(Duration, Duration, Snapshots), Box<dyn std::error::Error>> {
    let mut outbox = Outbox::open(OutboxConfig::new(dir), Arc::new(SystemClock))?;
    outbox.start_relay(client.clone(), relay);
    let status = outbox.status();
    let before = status.snapshot();
    let started = Instant::now();
    let accepted = concurrent(Arc::new(outbox.publisher()), events(n), callers).await;
    // ... and until the relay has every one of them acknowledged by JetStream.
    while status.snapshot().depth > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drained = started.elapsed();
    let after = status.snapshot();
    outbox.shutdown(Duration::from_secs(5)).await;
    Ok((accepted, drained, (before, after)))
}

/// Accepts `n` events into a new outbox in `dir` without a relay, then
/// starts the relay (atomic batches) and returns the time until the stream
/// holds them all.
async fn relay_drain(
    client: &async_nats::Client,
    dir: &std::path::Path,
    n: usize,
    callers: usize,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let mut outbox = Outbox::open(OutboxConfig::new(dir), Arc::new(SystemClock))?;
    concurrent(Arc::new(outbox.publisher()), events(n), callers).await;
    let status = outbox.status();
    let started = Instant::now();
    outbox.start_relay(client.clone(), RelayConfig::default());
    while status.snapshot().depth > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drained = started.elapsed();
    outbox.shutdown(Duration::from_secs(5)).await;
    Ok(drained)
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n_outbox = env_usize("MPP_BENCH_EVENTS", 20_000);
    let n_raw = env_usize("MPP_BENCH_RAW_EVENTS", 2_000);
    let callers = env_usize("MPP_BENCH_CALLERS", 64);

    let nats = NatsServer::start().await?;
    let client = nats.connect().await?;
    let raw = JetStreamPublisher::new(client.clone());
    ensure_stream(raw.context()).await?;

    // 1. One at a time: each event waits for its PubAck before the next.
    let raw_events = events(n_raw);
    let started = Instant::now();
    for ev in &raw_events {
        raw.publish_all(std::slice::from_ref(ev)).await?;
    }
    let raw_seq = started.elapsed();

    // 2. The same synchronous publisher, `callers` callers at once.
    let raw_conc = concurrent(Arc::new(raw.clone()), events(n_raw), callers).await;

    // 3. Through the outbox, relayed one event at a time: the stream without
    // `allow_atomic`, which the relay may not change.
    let js = raw.context();
    let atomic = |allow: bool| async move {
        let mut config = js.get_stream(STREAM_NAME).await?.info().await?.config.clone();
        config.allow_atomic_publish = allow;
        js.update_stream(config).await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    atomic(false).await?;
    let dir = tempfile::tempdir()?;
    let singles = RelayConfig { ensure_stream: false, ..RelayConfig::default() };
    let (_, single_drained, single_s) =
        through_outbox(&client, dir.path(), singles, n_outbox, callers).await?;

    // 4. Through the outbox in atomic batches: accepted = synced into redb
    // (group commit), published = in the stream.
    atomic(true).await?;
    let dir = tempfile::tempdir()?;
    let (accepted, drained, batch_s) =
        through_outbox(&client, dir.path(), RelayConfig::default(), n_outbox, callers).await?;
    let (before, after) = batch_s;

    // 5. The relay alone: the events are in the outbox before it starts.
    let dir = tempfile::tempdir()?;
    let relay_only = relay_drain(&client, dir.path(), n_outbox, callers).await?;

    let r_seq = rate(n_raw, raw_seq);
    let r_conc = rate(n_raw, raw_conc);
    let r_acc = rate(n_outbox, accepted);
    let r_e2e = rate(n_outbox, drained);
    let r_single = rate(n_outbox, single_drained);
    println!("nats-server sync_interval: always; outbox in {}", dir.path().display());
    println!("raw sync publish, one at a time:        {n_raw:>6} events in {raw_seq:>10.2?} = {r_seq:>9.0} events/s");
    println!(
        "raw sync publish, {callers} callers:          {n_raw:>6} events in {raw_conc:>10.2?} = {r_conc:>9.0} events/s"
    );
    println!(
        "outbox accepted (flushed), {callers} callers: {n_outbox:>6} events in {accepted:>10.2?} = {r_acc:>9.0} events/s \
         ({} flushes, {:.1} events per flush)",
        after.flushes_total - before.flushes_total,
        n_outbox as f64 / (after.flushes_total - before.flushes_total).max(1) as f64
    );
    println!(
        "outbox until all PubAcked, singles, {callers} callers: {n_outbox:>6} events in {single_drained:>10.2?} = \
         {r_single:>9.0} events/s ({} errors)",
        single_s.1.publish_errors_total - single_s.0.publish_errors_total
    );
    println!(
        "outbox until all PubAcked, batches, {callers} callers: {n_outbox:>6} events in {drained:>10.2?} = \
         {r_e2e:>9.0} events/s ({} batches, {} errors)",
        after.batches_total - before.batches_total,
        after.publish_errors_total - before.publish_errors_total
    );
    let r_relay = rate(n_outbox, relay_only);
    println!(
        "relay alone, batches, outbox filled first:      {n_outbox:>6} events in {relay_only:>10.2?} = {r_relay:>9.0} events/s"
    );
    println!("ratio accepted-through-outbox / raw one-at-a-time:   {:.1}x", r_acc / r_seq);
    println!("ratio relay alone (batches) / raw one-at-a-time:  {:.1}x", r_relay / r_seq);
    println!("ratio published-through-outbox (singles) / raw one-at-a-time:  {:.1}x", r_single / r_seq);
    println!("ratio published-through-outbox (batches) / raw one-at-a-time:  {:.1}x", r_e2e / r_seq);
    println!("ratio accepted-through-outbox / raw {callers} callers:     {:.1}x", r_acc / r_conc);
    Ok(())
}
