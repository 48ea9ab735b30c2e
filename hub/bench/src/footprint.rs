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
//!
//! The audit at each size runs the auditor's own tools as an auditor runs
//! them, `mpp-hub audit verify` (with the hub's public key) and `mpp-hub
//! audit rebuild`, each in its own process, timed, with its peak RSS: their
//! memory is bounded by what they hold, not by the bench's (an in-process
//! pass over a plain store keeps every log block it read: 16.8 GB at 30M
//! events, which a 100M store would not fit in 24 GB). Verify runs before
//! the hub is restarted and read, rebuild after. A rebuild that fails (one
//! killed for memory) or passes `--footprint-rebuild-deadline-s` (it is
//! then stopped) is recorded in the reading with the last progress it
//! printed, and the run goes on. Each reading is printed on stderr as soon as it is taken, so
//! an interrupted run keeps what it read.
//!
//! `--footprint-read DIR --footprint-nats-url URL` takes one reading of a
//! store an earlier run left (its `hub-footprint-*` directory, with the
//! run's nats-server still serving its stream at `URL`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use mpp_core::ids::TrackingNumber;
use mpp_store::{SledStore, Store};

use crate::corpus::{Filler, Pipeline, FILL_IN_FLIGHT_MAX, SAMPLE_CASES_MAX};
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

/// How often an auditor's tool's peak RSS is read while it runs.
const TOOL_POLL: Duration = Duration::from_millis(100);

/// Entries whose payloads give the mean payload of a store read by
/// `--footprint-read` (the generator's events are alike all through).
const PAYLOAD_SAMPLE_ENTRIES: usize = 1_000_000;

/// How each reading is taken.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadSettings {
    /// Each lookup API's time.
    pub(crate) window: Duration,
    /// The seed of the lookups' choices.
    pub(crate) seed: u64,
    /// When `mpp-hub audit rebuild` is stopped, if it is.
    pub(crate) rebuild_deadline: Option<Duration>,
}

/// One reading.
#[derive(Debug, Clone)]
pub(crate) struct Reading {
    events: u64,
    payload_bytes: u64,
    disk_allocated: u64,
    verify_per_s: f64,
    verify_peak_rss: u64,
    /// Entries per second, or why the rebuild failed.
    rebuild: Result<f64, String>,
    rebuild_peak_rss: u64,
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
    settings: ReadSettings,
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
    let mut filler = Filler::new(settings.seed)?;
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
        let reading = read(exe, &mut hub, &mut nats, hub_dir.path(), &filler, settings).await?;
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
    settings: ReadSettings,
) -> Result<Reading> {
    hub.stop().await?;
    let data_dir = hub.data_dir.clone();
    let (_, disk_allocated) = proc::dir_bytes(&data_dir)?;
    let verify = verify(exe, hub_dir, &data_dir).await?;
    nats.restart_with_sync(SyncInterval::Always).await?;
    let cases = Arc::new(filler.generator.started.clone());
    let served = serve_and_read(exe, hub_dir, &nats.url(), cases, settings).await?;
    let rebuild = rebuild(exe, hub_dir, &data_dir, settings.rebuild_deadline).await?;
    nats.restart_with_sync(SyncInterval::ServerDefault).await?;
    *hub = Hub::start(exe, hub_dir, &nats.url()).await?;
    Ok(Reading::new(filler.sent, filler.payload_bytes, disk_allocated, verify, rebuild, served))
}

/// One reading of the store an earlier run left in `hub_dir` (no hub may
/// hold it), served against the nats-server at `nats_url` that still holds
/// that run's stream (in whatever sync mode it runs).
pub(crate) async fn read_existing(
    exe: &Path,
    hub_dir: &Path,
    nats_url: &str,
    settings: ReadSettings,
) -> Result<Run> {
    let data_dir = hub_dir.join("hub-data");
    let (_, disk_allocated) = proc::dir_bytes(&data_dir)?;
    let verify = verify(exe, hub_dir, &data_dir).await?;
    // The cases the run looked up: the generator's first ones, serials from 1.
    let region = crate::workload::region()?;
    let cases: Vec<TrackingNumber> = (1..=SAMPLE_CASES_MAX as u64)
        .map(|serial| TrackingNumber::new(region, serial).ok_or_else(|| anyhow!("serial {serial}")))
        .collect::<Result<_>>()?;
    let served = serve_and_read(exe, hub_dir, nats_url, Arc::new(cases), settings).await?;
    let rebuild = rebuild(exe, hub_dir, &data_dir, settings.rebuild_deadline).await?;
    // Last: the store stays locked a moment after it is dropped.
    let sample_dir = data_dir.clone();
    let (sample, sample_bytes) =
        tokio::task::spawn_blocking(move || payload_sample(&sample_dir)).await.context("sample task")??;
    let events = verify.entries;
    let payload_bytes = (sample_bytes as f64 / sample.max(1) as f64 * events as f64) as u64;
    eprintln!(
        "[mpp-bench] footprint: payload estimated from the mean of the first {sample} entries' payloads"
    );
    Ok(Run {
        readings: vec![Reading::new(events, payload_bytes, disk_allocated, verify, rebuild, served)],
        stopped: None,
    })
}

/// The entries read and their payload bytes, from the first
/// [`PAYLOAD_SAMPLE_ENTRIES`] of the store in `data_dir`.
fn payload_sample(data_dir: &Path) -> Result<(u64, u64)> {
    let store = SledStore::open(data_dir).context("opening the store")?;
    let mut entries = 0u64;
    let mut bytes = 0u64;
    for e in store.entries(1).take(PAYLOAD_SAMPLE_ENTRIES) {
        let e = e.map_err(|e| anyhow!("reading the log: {e}"))?;
        entries += 1;
        bytes += e.payload.len() as u64;
    }
    Ok((entries, bytes))
}

/// What a hub serving lookups showed.
#[derive(Debug, Clone, Copy)]
struct Served {
    ready: Duration,
    rss_serving: u64,
    peak_rss: u64,
    grpc: (f64, f64),
    http: (f64, f64),
}

/// Starts a hub on `hub_dir`, times it to `/readyz`, runs the lookups on
/// both APIs reading its RSS, and stops it.
async fn serve_and_read(
    exe: &Path,
    hub_dir: &Path,
    nats_url: &str,
    cases: Arc<Vec<TrackingNumber>>,
    settings: ReadSettings,
) -> Result<Served> {
    let t0 = Instant::now();
    let mut hub = Hub::start(exe, hub_dir, nats_url).await?;
    hub.wait_ready(READY_DEADLINE).await?;
    let ready = t0.elapsed();
    let pid = hub.pid().context("the hub's pid")?;
    let mut rss_serving = 0u64;
    let mut apis = [(Api::Grpc, (0.0, 0.0)), (Api::Http, (0.0, 0.0))];
    for (api, figures) in &mut apis {
        let r = lookups::run(&hub, *api, cases.clone(), LOOKUP_TASKS, settings.window, settings.seed).await?;
        *figures = (r.per_s, r.latency.p99_ms);
        rss_serving = rss_serving.max(proc::memory(pid)?.rss_bytes);
    }
    let peak_rss = proc::memory(pid)?.peak_rss_bytes;
    hub.stop().await?;
    Ok(Served { ready, rss_serving, peak_rss, grpc: apis[0].1, http: apis[1].1 })
}

impl Reading {
    fn new(
        events: u64,
        payload_bytes: u64,
        disk_allocated: u64,
        verify: Verified,
        rebuild: ToolRun,
        s: Served,
    ) -> Self {
        let reading = Reading {
            events,
            payload_bytes,
            disk_allocated,
            verify_per_s: verify.entries as f64 / verify.run.seconds.max(1e-9),
            verify_peak_rss: verify.run.peak_rss,
            rebuild: rebuild.outcome.map(|_| verify.entries as f64 / rebuild.seconds.max(1e-9)),
            rebuild_peak_rss: rebuild.peak_rss,
            ready: s.ready,
            rss_serving: s.rss_serving,
            peak_rss: s.peak_rss,
            grpc: s.grpc,
            http: s.http,
        };
        eprintln!("[mpp-bench] footprint reading: {}", row(&reading).trim_end());
        reading
    }
}

/// `mpp-hub audit verify`'s run and the entries it reported.
#[derive(Debug)]
struct Verified {
    entries: u64,
    run: ToolRun,
}

/// One run of a tool.
#[derive(Debug)]
struct ToolRun {
    seconds: f64,
    /// `VmHWM`, as last read before it exited.
    peak_rss: u64,
    /// Its standard output, or how it failed.
    outcome: Result<String, String>,
}

/// `mpp-hub audit verify` with the hub's public key on the stopped hub's
/// `data_dir`; a failure to verify ends the run (the log is broken).
async fn verify(exe: &Path, hub_dir: &Path, data_dir: &Path) -> Result<Verified> {
    let key = std::process::Command::new(exe)
        .arg("export-public-key")
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .context("running mpp-hub export-public-key")?;
    if !key.status.success() {
        bail!("mpp-hub export-public-key: {}", String::from_utf8_lossy(&key.stderr));
    }
    let key_file = hub_dir.join("checkpoint-key.hex");
    std::fs::write(&key_file, &key.stdout).context("writing the public key")?;
    let run = run_audit(exe, "verify", data_dir, ("--public-key", &key_file), hub_dir, None).await?;
    let out = run.outcome.as_ref().map_err(|e| anyhow!("mpp-hub audit verify failed: {e}"))?;
    let entries = out
        .lines()
        .find_map(|l| l.strip_prefix("OK: "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| anyhow!("mpp-hub audit verify printed no \"OK: N entries\": {out}"))?;
    Ok(Verified { entries, run })
}

/// `mpp-hub audit rebuild` on the stopped hub's `data_dir`, stopped after
/// `deadline`; a failure is recorded in its outcome.
async fn rebuild(exe: &Path, hub_dir: &Path, data_dir: &Path, deadline: Option<Duration>) -> Result<ToolRun> {
    let registrar = crate::signing::write_registrar_key_file(hub_dir)?;
    run_audit(exe, "rebuild", data_dir, ("--registrar-key-file", &registrar), hub_dir, deadline).await
}

/// Runs `exe audit <command> --data-dir <data_dir> <key flag> <key file>`,
/// its output in `dir/audit-<command>.out` and `.err`, timed, its peak RSS
/// read every [`TOOL_POLL`] until it exits; killed after `deadline`, which
/// its outcome then says with the last line it printed on stderr (the
/// audit tools' progress).
async fn run_audit(
    exe: &Path,
    command: &str,
    data_dir: &Path,
    (key_flag, key_file): (&str, &Path),
    dir: &Path,
    deadline: Option<Duration>,
) -> Result<ToolRun> {
    let name = format!("audit-{command}");
    let out_path = dir.join(format!("{name}.out"));
    let err_path = dir.join(format!("{name}.err"));
    let t = Instant::now();
    let mut child = std::process::Command::new(exe)
        .args(["audit", command, "--data-dir"])
        .arg(data_dir)
        .arg(key_flag)
        .arg(key_file)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let pid = child.id();
    let mut peak_rss = 0;
    let mut stopped = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if deadline.is_some_and(|d| t.elapsed() >= d) {
            child.kill().context("stopping a tool at its deadline")?;
            stopped = true;
            break child.wait()?;
        }
        // A process that just exited has no memory to read: keep the last.
        if let Ok(m) = proc::memory(pid) {
            peak_rss = peak_rss.max(m.peak_rss_bytes);
        }
        tokio::time::sleep(TOOL_POLL).await;
    };
    let seconds = t.elapsed().as_secs_f64();
    let err = || std::fs::read_to_string(&err_path).unwrap_or_default();
    let outcome = if stopped {
        Err(format!("stopped after {seconds:.0} s: {}", err().lines().last().unwrap_or("")))
    } else if status.success() {
        Ok(std::fs::read_to_string(&out_path).unwrap_or_default())
    } else {
        let err = err();
        let tail = err.get(err.len().saturating_sub(300)..).unwrap_or(&err);
        Err(format!("{status} after {seconds:.0} s: {}", tail.trim()))
    };
    Ok(ToolRun { seconds, peak_rss, outcome })
}

fn gib(b: u64) -> f64 {
    b as f64 / f64::from(1u32 << 30)
}

/// The readings as a Markdown table, with the targets of issue 20.
pub(crate) fn table(run: &Run) -> String {
    let mut s = String::from(
        "| events | disk per event (x payload) | RSS serving | peak RSS | restart to ready | gRPC lookups/s, p99 | \
         HTTP lookups/s, p99 | audit verify (peak RSS) | audit rebuild (peak RSS) |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in &run.readings {
        s.push_str(&row(r));
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

/// One reading's row of [`table`].
fn row(r: &Reading) -> String {
    let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
    let per_event = r.disk_allocated as f64 / r.events.max(1) as f64;
    let payload = r.payload_bytes as f64 / r.events.max(1) as f64;
    let rebuild = match &r.rebuild {
        Ok(per_s) => format!("{}/s", crate::report::fmt_num(*per_s)),
        Err(why) => format!("not done ({why})"),
    };
    format!(
        "| {} | {:.0} B ({:.2}x) | {:.0} MiB | {:.0} MiB | {:.2} s | {} , {:.2} ms | {} , {:.2} ms | {}/s ({:.0} MiB) | {} ({:.0} MiB) |\n",
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
        mib(r.verify_peak_rss),
        rebuild,
        mib(r.rebuild_peak_rss),
    )
}
