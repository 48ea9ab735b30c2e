//! `mpp-bench --footprint N[,N...]` (on demand, not a section): a decade of
//! a province (issue 20, item 4). One real `mpp-hub serve` grows its store
//! through the real ingest path, and at each size it is stopped and read:
//! disk per event, the auditor's verify and rebuild rates, the time from
//! a restart to `/readyz`, then RSS and lookup latency while it serves
//! lookups on both APIs.
//!
//! The stream is filled in chunks of [`CHUNK_EVENTS`] by a server with
//! JetStream's default sync (a fill under `sync_interval: always` would take
//! hours), and after each chunk is ingested the stream is purged below the
//! hub's head (the bench's stream is the hub's definition with
//! `deny_purge` off, which the hub logs at ERROR): a hub needs only the
//! messages after its head, and the stream's disk then stays at one chunk, so the store alone decides how
//! far the machine's disk goes. The readings run with `sync_interval:
//! always` (the server is restarted in that mode), as in production: the
//! lookups' wrong PINs write the guard's bucket with an fsync each.
//!
//! Before each chunk the free disk is checked: growth stops, with a line
//! saying why, where the next chunk would leave less than
//! `--footprint-disk-margin-gib`
//! ([`DISK_MARGIN_GIB_DEFAULT`]) free. The table then names the sizes reached.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::corpus::{Filler, Pipeline, FILL_IN_FLIGHT_MAX};
use crate::lookups::{self, Api};
use crate::nats::{self, SyncInterval};
use crate::proc::{self, Hub};

/// Events published and ingested between two purges of the stream.
pub(crate) const CHUNK_EVENTS: u64 = 2_000_000;

/// Free disk the run leaves by default (CI and everything else on the
/// machine share it), in GiB (`--footprint-disk-margin-gib`).
pub(crate) const DISK_MARGIN_GIB_DEFAULT: u64 = 8;

/// Disk per event assumed for the first chunk, before any reading
/// (about 1.4x what the first readings show), in bytes.
pub(crate) const FIRST_GUESS_BYTES_PER_EVENT: u64 = 2_000;

/// How long one chunk's ingest may take.
pub(crate) const CHUNK_INGEST_DEADLINE: Duration = Duration::from_secs(1_800);

/// How long a restarted hub may take to be ready.
pub(crate) const READY_DEADLINE: Duration = Duration::from_secs(600);

/// Concurrent lookup clients per API at each reading (as section 5).
pub(crate) const LOOKUP_TASKS: usize = 32;

/// One reading.
#[derive(Debug, Clone)]
pub(crate) struct Reading {
    events: u64,
    payload_bytes: u64,
    disk_allocated: u64,
    verify_per_s: f64,
    rebuild_per_s: f64,
    ready: Duration,
    rss_serving: u64,
    peak_rss: u64,
    grpc: (f64, f64),
    http: (f64, f64),
}

/// What a run reached.
#[derive(Debug, Clone, Default)]
pub(crate) struct Run {
    /// A reading at each size reached.
    pub(crate) readings: Vec<Reading>,
    /// Why growth stopped before the largest size asked for, if it did.
    pub(crate) stopped: Option<String>,
}

/// Grows one hub's store to each of `sizes` (events, ascending) under
/// `tmp`, reading it at each; `window` is each lookup API's time.
pub(crate) async fn run(
    exe: &Path,
    tmp: &Path,
    sizes: &[u64],
    margin_gib: u64,
    window: Duration,
    seed: u64,
) -> Result<Run> {
    let margin = margin_gib.saturating_mul(1 << 30);
    let mut sizes = sizes.to_vec();
    sizes.sort_unstable();
    sizes.dedup();
    let mut nats = nats::start(tmp, SyncInterval::ServerDefault).await?;
    // The one stream definition, but purgeable: the only deviation, which
    // the hub logs at ERROR ("deny_purge is false") and works with.
    let config =
        async_nats::jetstream::stream::Config { deny_purge: false, ..mpp_edge::stream::stream_config() };
    nats.jetstream().await?.get_or_create_stream(config).await.context("creating the stream")?;
    let hub_dir = crate::temp_dir(tmp, "hub-footprint-")?;
    let mut filler = Filler::new(seed)?;
    let mut hub = Hub::start(exe, hub_dir.path(), &nats.url()).await?;
    let mut run = Run::default();
    let mut per_event = FIRST_GUESS_BYTES_PER_EVENT;
    'sizes: for &size in &sizes {
        while filler.sent < size {
            let chunk = CHUNK_EVENTS.min(size - filler.sent);
            let free = fs2::available_space(tmp).context("free disk")?;
            let stream_bytes = chunk.saturating_mul(filler.payload_bytes / filler.sent.max(1) + 200);
            let need = chunk.saturating_mul(per_event).saturating_add(stream_bytes).saturating_add(margin);
            if free < need {
                run.stopped = Some(format!(
                    "growth stopped at {} events: {:.1} GiB free, the next {} events need about {:.1} GiB \
                     (store and stream) with {} GiB kept free",
                    filler.sent,
                    gib(free),
                    chunk,
                    gib(need - margin),
                    margin_gib
                ));
                break 'sizes;
            }
            let mut pipe = Pipeline::new(nats.connect().await?, FILL_IN_FLIGHT_MAX);
            filler.fill_to(&mut pipe, filler.sent + chunk).await?;
            hub.wait_for_stream_seq(filler.sent, CHUNK_INGEST_DEADLINE, |_| {}).await?;
            let stream = nats
                .jetstream()
                .await?
                .get_stream(mpp_edge::stream::STREAM_NAME)
                .await
                .context("the stream")?;
            // Everything below the hub's head (the stream's sequences are
            // the messages sent: nothing else publishes).
            stream.purge().sequence(filler.sent).await.context("purging the stream")?;
            let (_, allocated) = proc::dir_bytes(&hub.data_dir)?;
            per_event = (allocated / filler.sent.max(1)).max(1);
            eprintln!(
                "[mpp-bench] footprint: {} events ingested, store {:.2} GiB ({} B/event)",
                filler.sent,
                gib(allocated),
                per_event
            );
        }
        let reading = read(exe, &mut hub, &mut nats, hub_dir.path(), &filler, window, seed).await?;
        eprintln!("[mpp-bench] footprint: read at {} events", reading.events);
        run.readings.push(reading);
    }
    hub.stop().await?;
    Ok(run)
}

/// Stops the hub, reads its store, restarts it under `sync_interval:
/// always`, reads it serving lookups, and leaves it running on a server in
/// the filling mode again.
async fn read(
    exe: &Path,
    hub: &mut Hub,
    nats: &mut nats::NatsServer,
    hub_dir: &Path,
    filler: &Filler,
    window: Duration,
    seed: u64,
) -> Result<Reading> {
    hub.stop().await?;
    let data_dir = hub.data_dir.clone();
    let (_, disk_allocated) = proc::dir_bytes(&data_dir)?;
    let audit =
        tokio::task::spawn_blocking(move || crate::audit::run(&data_dir)).await.context("audit task")??;
    nats.restart_with_sync(SyncInterval::Always).await?;
    let t0 = Instant::now();
    *hub = Hub::start(exe, hub_dir, &nats.url()).await?;
    hub.wait_ready(READY_DEADLINE).await?;
    let ready = t0.elapsed();
    let pid = hub.pid().context("the hub's pid")?;
    let cases = Arc::new(filler.generator.started.clone());
    let mut rss_serving = 0u64;
    let mut apis = [(Api::Grpc, (0.0, 0.0)), (Api::Http, (0.0, 0.0))];
    for (api, figures) in &mut apis {
        let r = lookups::run(hub, *api, cases.clone(), LOOKUP_TASKS, window, seed).await?;
        *figures = (r.per_s, r.latency.p99_ms);
        rss_serving = rss_serving.max(proc::memory(pid)?.rss_bytes);
    }
    let peak_rss = proc::memory(pid)?.peak_rss_bytes;
    hub.stop().await?;
    nats.restart_with_sync(SyncInterval::ServerDefault).await?;
    *hub = Hub::start(exe, hub_dir, &nats.url()).await?;
    Ok(Reading {
        events: filler.sent,
        payload_bytes: filler.payload_bytes,
        disk_allocated,
        verify_per_s: audit.verify_per_s,
        rebuild_per_s: audit.rebuild_per_s,
        ready,
        rss_serving,
        peak_rss,
        grpc: apis[0].1,
        http: apis[1].1,
    })
}

fn gib(b: u64) -> f64 {
    b as f64 / f64::from(1u32 << 30)
}

/// The readings as a Markdown table, with the targets of issue 20.
pub(crate) fn table(run: &Run) -> String {
    let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
    let mut s = String::from(
        "| events | disk per event (x payload) | RSS serving | peak RSS | restart to ready | gRPC lookups/s, p99 | \
         HTTP lookups/s, p99 | verify | rebuild |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in &run.readings {
        let per_event = r.disk_allocated as f64 / r.events.max(1) as f64;
        let payload = r.payload_bytes as f64 / r.events.max(1) as f64;
        s.push_str(&format!(
            "| {} | {:.0} B ({:.2}x) | {:.0} MiB | {:.0} MiB | {:.2} s | {} , {:.2} ms | {} , {:.2} ms | {}/s | {}/s |\n",
            crate::report::fmt_num(r.events as f64),
            per_event,
            per_event / payload.max(1.0),
            mib(r.rss_serving),
            mib(r.peak_rss),
            r.ready.as_secs_f64(),
            crate::report::fmt_num(r.grpc.0),
            r.grpc.1,
            crate::report::fmt_num(r.http.0),
            r.http.1,
            crate::report::fmt_num(r.verify_per_s),
            crate::report::fmt_num(r.rebuild_per_s),
        ));
    }
    s.push_str(
        "\nTargets (issue 20): RSS serving <= 512 MiB, disk <= 2.5x payload, restart to ready <= 5 s, lookup \
         p99 <= 5 ms.\n",
    );
    if let Some(why) = &run.stopped {
        s.push_str(&format!("\n{why}.\n"));
    }
    s
}
