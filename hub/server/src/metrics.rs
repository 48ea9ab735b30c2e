//! The hub's metrics: a lean registry of atomics and fixed-bucket histograms,
//! rendered as the Prometheus text format (version 0.0.4) at `GET /metrics`
//! on the HTTP server. No metrics crate: every series is declared here, and
//! every label set is closed (verdicts, [`ReasonCode::ALL`], the lookup
//! channels and outcomes below), so the number of series is fixed at
//! compile time whatever the traffic.
//!
//! | name | type | meaning |
//! |---|---|---|
//! | `mpp_hub_ingest_messages_total{verdict}` | counter | log entries made, by verdict (`accepted`, `rejected`, `duplicate`) |
//! | `mpp_hub_rejected_total{reason}` | counter | entries recorded as rejected, by reason code (every code listed) |
//! | `mpp_hub_ingest_batch_size` | histogram | messages per batch handed to the ledger writer |
//! | `mpp_hub_commit_seconds` | histogram | decide + commit + flush time of one batch, in the writer thread |
//! | `mpp_hub_ingest_lag_messages` | gauge | messages the stream holds beyond the last batch (JetStream's `pending` of the batch's last message) |
//! | `mpp_hub_ingest_lag_seconds` | gauge | now − stream time of the last committed message while messages are pending; 0 when caught up |
//! | `mpp_hub_last_stream_timestamp_seconds` | gauge | stream time of the last committed message (Unix seconds; absent before the first) |
//! | `mpp_hub_last_seq` | gauge | last log sequence |
//! | `mpp_hub_last_stream_seq` | gauge | last stream sequence committed (the checkpoint) |
//! | `mpp_hub_ready` | gauge | 1 when `/readyz` answers 200 |
//! | `mpp_hub_disk_free_bytes` | gauge | free space of the data directory at the last check |
//! | `mpp_hub_lookups_total{channel,outcome}` | counter | citizen lookups with a PIN |
//! | `mpp_hub_lookup_seconds` | histogram | time of one citizen lookup (all outcomes) |
//! | `mpp_hub_sla_overdue_applications` | gauge | open applications past their service standard's due date (absent until a complete scan) |
//! | `mpp_hub_sla_scan_truncated` | gauge | 1 when the store holds more cases than one scan reads |
//! | `mpp_hub_watchers` | gauge | open watches (gRPC `WatchCase` and page live updates) |
//! | `mpp_hub_access_events_dropped_total` | counter | access events dropped because their queue was full |
//! | `mpp_hub_checkpoints_total` | counter | signed checkpoints stored since start |
//! | `mpp_hub_ops_redrives_total{outcome}` | counter | operators' redrives (`published`, `refused`: not redrivable, or NATS failed) |
//! | `mpp_hub_ops_auth_failures_total` | counter | operator requests refused for a missing or wrong token |
//!
//! # The SLA gauge and its cost
//!
//! Counting overdue applications needs every case's SLA clock as of now: a
//! scan of the whole projection. Doing it per scrape would make scrapes as
//! costly as the store is large, so a background task
//! ([`spawn_sla_refresh`]) rescans every [`SLA_REFRESH_INTERVAL`] on a
//! blocking thread, reading at most [`SLA_SCAN_CASES_MAX`] cases (one sled
//! read, one decode and one SLA computation per case: roughly tens of
//! microseconds each, so about a second of one core per interval at the
//! bound). A store with more cases is not counted at all (a partial count
//! would look like a real one): the gauge is left out and
//! `mpp_hub_sla_scan_truncated` is 1; `mpp-hub audit sla-report` gives the
//! full figures offline.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mpp_core::calendar::CalendarSet;
use mpp_core::sla::case_sla;
use mpp_core::ReasonCode;
use mpp_store::{Store, StoreError};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::access::AccessChannel;
use crate::health::{Health, Readiness};
use crate::ledger::BatchOutcome;
use crate::lookup::{LookupError, Lookups};

/// The `Content-Type` of the metrics text.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds of `mpp_hub_commit_seconds` buckets, in seconds: from one
/// millisecond (a small batch on a fast disk) to ten seconds (a stalled
/// fsync).
pub const COMMIT_SECONDS_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Upper bounds of `mpp_hub_lookup_seconds` buckets, in seconds: a lookup
/// is a rate-limit check, a SHA-256 and one or two sled reads.
pub const LOOKUP_SECONDS_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

/// Upper bounds of `mpp_hub_ingest_batch_size` buckets, in messages, up to
/// the largest `--batch-max` ([`crate::config::BATCH_MESSAGES_MAX`]).
pub const BATCH_SIZE_BUCKETS: &[f64] =
    &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 4096.0];

/// How often the SLA gauge is recomputed.
pub const SLA_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// Most cases one SLA scan reads; beyond, the gauge is left out (see the
/// module docs).
pub const SLA_SCAN_CASES_MAX: usize = 50_000;

/// How often the free space of the data directory is checked.
pub const DISK_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Default of `--min-free-disk-mb`.
pub const MIN_FREE_DISK_MB_DEFAULT: u64 = 256;

/// Bytes in one "MB" of `--min-free-disk-mb` (a mebibyte).
pub const BYTES_PER_MB: u64 = 1024 * 1024;

/// Log entry verdicts, the label values of `mpp_hub_ingest_messages_total`.
const VERDICTS: [&str; 3] = ["accepted", "rejected", "duplicate"];

/// Reason codes known to this build (the label values of
/// `mpp_hub_rejected_total`).
const REASONS: usize = ReasonCode::ALL.len();

/// A histogram with fixed buckets. Bucket counts are kept per bucket (not
/// cumulative) and summed when rendered; `_count` is that sum, so the
/// rendered buckets and count always agree, even while observations race
/// with a scrape.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound, then the `+Inf` bucket.
    counts: Box<[AtomicU64]>,
    /// The sum of observations, as `f64` bits.
    sum_bits: AtomicU64,
}

impl Histogram {
    /// A histogram with the given ascending upper bounds.
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        let i = self.bounds.iter().position(|b| value <= *b).unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        // The closure always returns Some, so the update cannot fail.
        let _ = self.sum_bits.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
            Some((f64::from_bits(bits) + value).to_bits())
        });
    }

    /// Cumulative counts per upper bound (the last is `+Inf`), and the sum.
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, f64) {
        let mut total = 0u64;
        let mut out = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            total = total.saturating_add(c.load(Ordering::Relaxed));
            out.push((self.bounds.get(i).copied().unwrap_or(f64::INFINITY), total));
        }
        (out, f64::from_bits(self.sum_bits.load(Ordering::Relaxed)))
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        header(out, name, "histogram", help);
        let (buckets, sum) = self.snapshot();
        for (bound, count) in &buckets {
            let le = if bound.is_infinite() { "+Inf".to_owned() } else { bound.to_string() };
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {count}");
        }
        let count = buckets.last().map_or(0, |b| b.1);
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// The channel of a citizen lookup (label `channel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupChannel {
    /// The JSON API.
    Http,
    /// gRPC `GetCase` and `WatchCase`.
    Grpc,
    /// The tracking page's form.
    Page,
}

impl LookupChannel {
    /// Every channel, in rendering order.
    pub const ALL: [LookupChannel; 3] = [LookupChannel::Http, LookupChannel::Grpc, LookupChannel::Page];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            LookupChannel::Http => "http",
            LookupChannel::Grpc => "grpc",
            LookupChannel::Page => "page",
        }
    }

    /// The lookup channel of an access channel; `None` for the audit API,
    /// whose reads are not citizen lookups.
    pub fn of(channel: AccessChannel) -> Option<Self> {
        match channel {
            AccessChannel::Api => Some(LookupChannel::Http),
            AccessChannel::Grpc => Some(LookupChannel::Grpc),
            AccessChannel::Web => Some(LookupChannel::Page),
            AccessChannel::Audit => None,
        }
    }
}

/// The outcome of a citizen lookup (label `outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupOutcome {
    /// The case, shown.
    Found,
    /// `CASE_NOT_FOUND`: an unknown case or a wrong PIN (indistinguishable
    /// on purpose).
    NotFoundOrPin,
    /// Malformed input (tracking number, PIN).
    Invalid,
    /// `RATE_LIMITED`.
    RateLimited,
    /// `LOOKUP_LOCKED`.
    Locked,
    /// `UNAVAILABLE`: the store failed.
    Error,
}

impl LookupOutcome {
    /// Every outcome, in rendering order.
    pub const ALL: [LookupOutcome; 6] = [
        LookupOutcome::Found,
        LookupOutcome::NotFoundOrPin,
        LookupOutcome::Invalid,
        LookupOutcome::RateLimited,
        LookupOutcome::Locked,
        LookupOutcome::Error,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            LookupOutcome::Found => "found",
            LookupOutcome::NotFoundOrPin => "not_found_or_pin",
            LookupOutcome::Invalid => "invalid",
            LookupOutcome::RateLimited => "rate_limited",
            LookupOutcome::Locked => "locked",
            LookupOutcome::Error => "error",
        }
    }

    /// The outcome of a lookup's result.
    pub fn of<T>(result: &Result<T, LookupError>) -> Self {
        match result {
            Ok(_) => LookupOutcome::Found,
            Err(e) => match e.code() {
                ReasonCode::CaseNotFound => LookupOutcome::NotFoundOrPin,
                ReasonCode::RateLimited => LookupOutcome::RateLimited,
                ReasonCode::LookupLocked => LookupOutcome::Locked,
                ReasonCode::Unavailable => LookupOutcome::Error,
                _ => LookupOutcome::Invalid,
            },
        }
    }
}

/// What one SLA scan found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlaScan {
    /// Open applications past their due date, among the cases read.
    pub overdue_applications: u64,
    /// Cases read.
    pub cases: usize,
    /// The store holds more than the cases read (the count is partial).
    pub truncated: bool,
}

/// `sla_state` values.
const SLA_NOT_SCANNED: u8 = 0;
const SLA_COMPLETE: u8 = 1;
const SLA_TRUNCATED: u8 = 2;

/// Sentinel of `disk_free_bytes`: not checked yet.
const DISK_UNKNOWN: u64 = u64::MAX;

/// The registry. One per hub process, shared through [`Health::metrics`].
#[derive(Debug)]
pub struct HubMetrics {
    ingest_messages: [AtomicU64; 3],
    rejected: [AtomicU64; REASONS],
    batch_size: Histogram,
    commit_seconds: Histogram,
    lag_messages: AtomicU64,
    /// Stream time of the last committed message, Unix ns; `i64::MIN` = none.
    last_stream_time_ns: AtomicI64,
    lookups: [[AtomicU64; LookupOutcome::ALL.len()]; LookupChannel::ALL.len()],
    lookup_seconds: Histogram,
    sla_overdue: AtomicU64,
    sla_state: AtomicU8,
    checkpoints: AtomicU64,
    /// Redrives published, refused.
    ops_redrives: [AtomicU64; 2],
    ops_auth_failures: AtomicU64,
    disk_free_bytes: AtomicU64,
}

impl Default for HubMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// What a scrape reads from outside the registry, at the moment of the
/// scrape.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// Readiness and head.
    pub readiness: Readiness,
    /// Open watches, if known.
    pub watchers: Option<usize>,
    /// Access events dropped since start, if there is an access log.
    pub access_events_dropped: Option<u64>,
    /// Now, Unix milliseconds (for the lag in seconds).
    pub now_ms: i64,
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

impl HubMetrics {
    /// An empty registry.
    pub fn new() -> Self {
        Self {
            ingest_messages: std::array::from_fn(|_| AtomicU64::new(0)),
            rejected: std::array::from_fn(|_| AtomicU64::new(0)),
            batch_size: Histogram::new(BATCH_SIZE_BUCKETS),
            commit_seconds: Histogram::new(COMMIT_SECONDS_BUCKETS),
            lag_messages: AtomicU64::new(0),
            last_stream_time_ns: AtomicI64::new(i64::MIN),
            lookups: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            lookup_seconds: Histogram::new(LOOKUP_SECONDS_BUCKETS),
            sla_overdue: AtomicU64::new(0),
            sla_state: AtomicU8::new(SLA_NOT_SCANNED),
            checkpoints: AtomicU64::new(0),
            ops_redrives: std::array::from_fn(|_| AtomicU64::new(0)),
            ops_auth_failures: AtomicU64::new(0),
            disk_free_bytes: AtomicU64::new(DISK_UNKNOWN),
        }
    }

    /// Records one batch the writer committed: `messages` handed over, its
    /// outcome, the stream time of its last committed message (if it
    /// committed any) and how long decide + commit + flush took.
    pub fn record_batch(
        &self,
        messages: usize,
        outcome: &BatchOutcome,
        last_committed_time_ns: Option<i64>,
        took: Duration,
    ) {
        self.batch_size.observe(messages as f64);
        self.commit_seconds.observe(took.as_secs_f64());
        for (counter, n) in
            self.ingest_messages.iter().zip([outcome.accepted, outcome.rejected, outcome.duplicates])
        {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
        for code in &outcome.rejections {
            if let Some(i) = ReasonCode::ALL.iter().position(|c| c == code) {
                self.rejected[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(ns) = last_committed_time_ns {
            self.last_stream_time_ns.store(ns, Ordering::Relaxed);
        }
    }

    /// Records JetStream's count of messages pending beyond the last batch.
    pub fn set_ingest_lag(&self, pending: u64) {
        self.lag_messages.store(pending, Ordering::Relaxed);
    }

    /// Counts one signed checkpoint.
    pub fn record_checkpoint(&self) {
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one citizen lookup through `channel` (the audit channel is
    /// not counted).
    pub fn record_lookup(&self, channel: AccessChannel, outcome: LookupOutcome, took: Duration) {
        let Some(channel) = LookupChannel::of(channel) else { return };
        let c = LookupChannel::ALL.iter().position(|x| *x == channel).unwrap_or(0);
        let o = LookupOutcome::ALL.iter().position(|x| *x == outcome).unwrap_or(0);
        self.lookups[c][o].fetch_add(1, Ordering::Relaxed);
        self.lookup_seconds.observe(took.as_secs_f64());
    }

    /// Lookups counted so far for `channel` and `outcome`.
    pub fn lookups(&self, channel: LookupChannel, outcome: LookupOutcome) -> u64 {
        let c = LookupChannel::ALL.iter().position(|x| *x == channel).unwrap_or(0);
        let o = LookupOutcome::ALL.iter().position(|x| *x == outcome).unwrap_or(0);
        self.lookups[c][o].load(Ordering::Relaxed)
    }

    /// Stores the result of an SLA scan.
    pub fn set_sla_scan(&self, scan: SlaScan) {
        self.sla_overdue.store(scan.overdue_applications, Ordering::Relaxed);
        self.sla_state.store(if scan.truncated { SLA_TRUNCATED } else { SLA_COMPLETE }, Ordering::Relaxed);
    }

    /// Stores the free space found by a disk check.
    pub fn set_disk_free_bytes(&self, bytes: u64) {
        self.disk_free_bytes.store(bytes.min(DISK_UNKNOWN - 1), Ordering::Relaxed);
    }

    /// The metrics text (Prometheus text format 0.0.4).
    pub fn render(&self, scrape: &Scrape) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);

        header(
            &mut out,
            "mpp_hub_ingest_messages_total",
            "counter",
            "Log entries made from stream messages, by verdict.",
        );
        for (verdict, n) in VERDICTS.iter().zip(&self.ingest_messages) {
            let _ = writeln!(out, "mpp_hub_ingest_messages_total{{verdict=\"{verdict}\"}} {}", load(n));
        }
        header(
            &mut out,
            "mpp_hub_rejected_total",
            "counter",
            "Log entries recorded as rejected, by reason code.",
        );
        for (code, n) in ReasonCode::ALL.iter().zip(&self.rejected) {
            let _ = writeln!(out, "mpp_hub_rejected_total{{reason=\"{}\"}} {}", code.as_str(), load(n));
        }
        self.batch_size.render(
            &mut out,
            "mpp_hub_ingest_batch_size",
            "Messages per batch handed to the ledger writer.",
        );
        self.commit_seconds.render(
            &mut out,
            "mpp_hub_commit_seconds",
            "Decide, commit and flush time of one batch in the ledger writer.",
        );
        let lag = load(&self.lag_messages);
        single(
            &mut out,
            "mpp_hub_ingest_lag_messages",
            "gauge",
            "Messages pending in the stream beyond the last batch (JetStream's count).",
            lag,
        );
        let last_ns = self.last_stream_time_ns.load(Ordering::Relaxed);
        let lag_seconds = if lag == 0 || last_ns == i64::MIN {
            0.0
        } else {
            ((scrape.now_ms as f64 / 1e3) - (last_ns as f64 / 1e9)).max(0.0)
        };
        single(
            &mut out,
            "mpp_hub_ingest_lag_seconds",
            "gauge",
            "Now minus the stream time of the last committed message while messages are pending; 0 when caught up.",
            lag_seconds,
        );
        if last_ns != i64::MIN {
            single(
                &mut out,
                "mpp_hub_last_stream_timestamp_seconds",
                "gauge",
                "Stream time of the last committed message, Unix seconds.",
                last_ns as f64 / 1e9,
            );
        }
        let r = &scrape.readiness;
        single(&mut out, "mpp_hub_last_seq", "gauge", "Last log sequence.", r.last_seq);
        single(
            &mut out,
            "mpp_hub_last_stream_seq",
            "gauge",
            "Last stream sequence committed (the checkpoint).",
            r.last_stream_seq,
        );
        single(
            &mut out,
            "mpp_hub_ready",
            "gauge",
            "1 when ingesting with no gap and enough disk (/readyz answers 200).",
            u8::from(r.ready),
        );
        let free = load(&self.disk_free_bytes);
        if free != DISK_UNKNOWN {
            single(
                &mut out,
                "mpp_hub_disk_free_bytes",
                "gauge",
                "Free space of the data directory at the last check.",
                free,
            );
        }
        header(
            &mut out,
            "mpp_hub_lookups_total",
            "counter",
            "Citizen lookups with a PIN, by channel and outcome.",
        );
        for (channel, row) in LookupChannel::ALL.iter().zip(&self.lookups) {
            for (outcome, n) in LookupOutcome::ALL.iter().zip(row) {
                let _ = writeln!(
                    out,
                    "mpp_hub_lookups_total{{channel=\"{}\",outcome=\"{}\"}} {}",
                    channel.as_str(),
                    outcome.as_str(),
                    load(n)
                );
            }
        }
        self.lookup_seconds.render(&mut out, "mpp_hub_lookup_seconds", "Time of one citizen lookup.");
        let sla = self.sla_state.load(Ordering::Relaxed);
        if sla == SLA_COMPLETE {
            single(
                &mut out,
                "mpp_hub_sla_overdue_applications",
                "gauge",
                "Open applications past their service standard's due date (refreshed every 60 s).",
                load(&self.sla_overdue),
            );
        }
        single(
            &mut out,
            "mpp_hub_sla_scan_truncated",
            "gauge",
            "1 when the store holds more cases than one SLA scan reads (the overdue gauge is then left out).",
            u8::from(sla == SLA_TRUNCATED),
        );
        if let Some(w) = scrape.watchers {
            single(
                &mut out,
                "mpp_hub_watchers",
                "gauge",
                "Open watches (gRPC WatchCase and page live updates).",
                w,
            );
        }
        if let Some(d) = scrape.access_events_dropped {
            single(
                &mut out,
                "mpp_hub_access_events_dropped_total",
                "counter",
                "Access events dropped because their queue was full.",
                d,
            );
        }
        single(
            &mut out,
            "mpp_hub_checkpoints_total",
            "counter",
            "Signed checkpoints stored since start.",
            load(&self.checkpoints),
        );
        header(&mut out, "mpp_hub_ops_redrives_total", "counter", "Operators' redrives, by outcome.");
        for (outcome, n) in ["published", "refused"].iter().zip(&self.ops_redrives) {
            let _ = writeln!(out, "mpp_hub_ops_redrives_total{{outcome=\"{outcome}\"}} {}", load(n));
        }
        single(
            &mut out,
            "mpp_hub_ops_auth_failures_total",
            "counter",
            "Operator requests refused for a missing or wrong token.",
            load(&self.ops_auth_failures),
        );
        out
    }

    /// Counts one operator's redrive: published onto the stream, or refused.
    pub fn record_redrive(&self, published: bool) {
        self.ops_redrives[usize::from(!published)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one operator request refused for its token.
    pub fn record_ops_auth_failure(&self) {
        self.ops_auth_failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts the open applications past their due date as of `now_ms`,
/// reading at most `cases_max` cases (see the module docs).
pub fn scan_sla_overdue(
    store: &impl Store,
    calendars: &CalendarSet,
    now_ms: i64,
    cases_max: usize,
) -> Result<SlaScan, StoreError> {
    let mut scan = SlaScan { overdue_applications: 0, cases: 0, truncated: false };
    for case in store.cases() {
        if scan.cases == cases_max {
            scan.truncated = true;
            break;
        }
        let case = case?;
        scan.cases += 1;
        let overdue = case_sla(&case, calendars, now_ms).iter().filter(|s| s.overdue).count();
        scan.overdue_applications += overdue as u64;
    }
    Ok(scan)
}

/// Checks the free space of `dir`, records it, and marks the hub not ready
/// (`disk_low`) while it is below `min_free_bytes`. Returns the free bytes.
pub fn check_disk(health: &Health, dir: &Path, min_free_bytes: u64) -> std::io::Result<u64> {
    let free = fs2::available_space(dir)?;
    health.metrics().set_disk_free_bytes(free);
    health.set_disk_low((free < min_free_bytes).then_some((free, min_free_bytes)));
    Ok(free)
}

/// Checks the disk every [`DISK_CHECK_INTERVAL`] until `stop` turns true.
/// A failed check is logged and leaves readiness as it was.
pub fn spawn_disk_check(
    health: Arc<Health>,
    dir: PathBuf,
    min_free_bytes: u64,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(DISK_CHECK_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_low = false;
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let (h, d) = (health.clone(), dir.clone());
            // statvfs may block on a sick file system; keep it off the runtime.
            match tokio::task::spawn_blocking(move || check_disk(&h, &d, min_free_bytes)).await {
                Ok(Ok(free)) => {
                    let low = free < min_free_bytes;
                    if low && !was_low {
                        warn!(free_bytes = free, min_free_bytes, dir = %dir.display(), "Disk low: not ready");
                    } else if !low && was_low {
                        warn!(free_bytes = free, "Disk space recovered");
                    }
                    was_low = low;
                }
                Ok(Err(e)) => warn!(error = %e, dir = %dir.display(), "Checking free disk space failed"),
                Err(e) => warn!(error = %e, "Disk check task failed"),
            }
        }
    })
}

/// Refreshes the SLA gauge every [`SLA_REFRESH_INTERVAL`] (the first time
/// right away) until `stop` turns true.
pub fn spawn_sla_refresh(
    health: Arc<Health>,
    lookups: Lookups,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(SLA_REFRESH_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut warned = false;
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let l = lookups.clone();
            let scan = tokio::task::spawn_blocking(move || {
                scan_sla_overdue(l.store(), l.calendars(), l.now_ms(), SLA_SCAN_CASES_MAX)
            })
            .await;
            match scan {
                Ok(Ok(scan)) => {
                    if scan.truncated && !warned {
                        warn!(
                            cases_max = SLA_SCAN_CASES_MAX,
                            "More cases than one SLA scan reads: mpp_hub_sla_overdue_applications is left out"
                        );
                        warned = true;
                    }
                    debug!(cases = scan.cases, overdue = scan.overdue_applications, "SLA scan done");
                    health.metrics().set_sla_scan(scan);
                }
                Ok(Err(e)) => warn!(error = %e, "SLA scan failed; the gauge keeps its last value"),
                Err(e) => warn!(error = %e, "SLA scan task failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytes::Bytes;
    use mpp_store::{Head, SledStore};

    use super::*;
    use crate::health::NotReady;
    use crate::ingest::Writer;
    use crate::ledger::{Ledger, RawMessage};

    fn scrape(health: &Health, now_ms: i64) -> Scrape {
        Scrape { readiness: health.readiness(), watchers: Some(3), access_events_dropped: Some(7), now_ms }
    }

    /// Parses the text line by line: comments are `# HELP`/`# TYPE`, every
    /// other line `name{labels} value` with a float value. Returns the
    /// samples by `name{labels}`.
    fn parse(text: &str) -> BTreeMap<String, f64> {
        let mut samples = BTreeMap::new();
        let mut typed = std::collections::BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# ") {
                let mut parts = rest.splitn(3, ' ');
                let (kind, name) = (parts.next().unwrap(), parts.next().unwrap());
                assert!(kind == "HELP" || kind == "TYPE", "{line}");
                assert!(!parts.next().unwrap_or("").is_empty(), "{line}");
                if kind == "TYPE" {
                    assert!(typed.insert(name.to_owned()), "TYPE twice: {line}");
                }
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
            };
            let name = series.split('{').next().unwrap();
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
            assert!(name.starts_with("mpp_hub_"), "{line}");
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| typed.contains(*b)))
                .unwrap_or(name);
            assert!(typed.contains(base), "sample before its TYPE: {line}");
            if let Some(labels) = series.strip_prefix(name) {
                if !labels.is_empty() {
                    let inner = labels.strip_prefix('{').and_then(|l| l.strip_suffix('}')).unwrap();
                    for pair in inner.split(',') {
                        let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{line}"));
                        assert!(k.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{line}");
                        assert!(v.starts_with('"') && v.ends_with('"') && v.len() >= 2, "{line}");
                    }
                }
            }
            assert!(samples.insert(series.to_owned(), value).is_none(), "series twice: {line}");
        }
        samples
    }

    fn histogram_is_consistent(samples: &BTreeMap<String, f64>, name: &str, bounds: &[f64]) -> f64 {
        let mut last = 0.0;
        for b in bounds.iter().map(|b| b.to_string()).chain(["+Inf".to_owned()]) {
            let v = samples[&format!("{name}_bucket{{le=\"{b}\"}}")];
            assert!(v >= last, "{name} buckets must be cumulative");
            last = v;
        }
        assert_eq!(samples[&format!("{name}_count")], last, "{name}_count is the +Inf bucket");
        last
    }

    #[test]
    fn histograms_are_cumulative_with_a_matching_count_and_sum() {
        let h = Histogram::new(&[1.0, 10.0]);
        for v in [0.5, 1.0, 3.0, 10.0, 11.0, 1e9] {
            h.observe(v);
        }
        let (buckets, sum) = h.snapshot();
        assert_eq!(buckets, vec![(1.0, 2), (10.0, 4), (f64::INFINITY, 6)]);
        assert_eq!(sum, 0.5 + 1.0 + 3.0 + 10.0 + 11.0 + 1e9);
        let mut out = String::new();
        h.render(&mut out, "mpp_hub_x", "X.");
        assert!(out.contains("mpp_hub_x_bucket{le=\"1\"} 2\n"), "{out}");
        assert!(
            out.contains("mpp_hub_x_bucket{le=\"+Inf\"} 6\nmpp_hub_x_sum 1000000025.5\nmpp_hub_x_count 6\n")
        );
    }

    #[test]
    fn bucket_bounds_ascend() {
        for b in [COMMIT_SECONDS_BUCKETS, LOOKUP_SECONDS_BUCKETS, BATCH_SIZE_BUCKETS] {
            assert!(b.windows(2).all(|w| w[0] < w[1]), "{b:?}");
        }
        assert_eq!(BATCH_SIZE_BUCKETS.last(), Some(&(crate::config::BATCH_MESSAGES_MAX as f64)));
    }

    fn raw(seq: u64, subject: &str, payload: &'static [u8]) -> RawMessage {
        RawMessage {
            stream_seq: seq,
            stream_time_ns: 1_750_000_000_000_000_000 + seq as i64,
            subject: subject.to_owned(),
            payload: Bytes::from_static(payload),
        }
    }

    #[tokio::test]
    async fn a_batch_with_rejects_moves_the_counters_and_the_text_parses() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let ledger = Ledger::open(store).unwrap();
        let health = Health::new(ledger.head());
        let writer = Writer::spawn_with_metrics(ledger, None, health.metrics().clone()).unwrap();
        let batch = vec![
            raw(1, "mpp.events.dukcapil.kk", b""),
            raw(2, "mpp.events.dukcapil.kk", b"\xff\xff\xff"),
            raw(3, "mpp.events.dukcapil.kk", b""),
        ];
        let outcome = writer.commit(batch).await.unwrap();
        assert_eq!(outcome.rejected, 3);
        health.set_head(outcome.head);
        health.set_ready();
        health.metrics().set_ingest_lag(5);
        let now_ms = 1_750_000_000_000 + 2_500;
        let text = health.metrics().render(&scrape(&health, now_ms));
        let s = parse(&text);
        assert_eq!(s["mpp_hub_ingest_messages_total{verdict=\"rejected\"}"], 3.0);
        assert_eq!(s["mpp_hub_ingest_messages_total{verdict=\"accepted\"}"], 0.0);
        assert_eq!(s["mpp_hub_rejected_total{reason=\"EMPTY_MESSAGE\"}"], 2.0);
        assert_eq!(s["mpp_hub_rejected_total{reason=\"UNDECODABLE_ENVELOPE\"}"], 1.0);
        assert_eq!(s["mpp_hub_rejected_total{reason=\"BAD_CHECK_DIGIT\"}"], 0.0, "every code is listed");
        assert_eq!(histogram_is_consistent(&s, "mpp_hub_ingest_batch_size", BATCH_SIZE_BUCKETS), 1.0);
        assert_eq!(s["mpp_hub_ingest_batch_size_bucket{le=\"2\"}"], 0.0);
        assert_eq!(s["mpp_hub_ingest_batch_size_bucket{le=\"5\"}"], 1.0, "a batch of 3");
        assert_eq!(s["mpp_hub_ingest_batch_size_sum"], 3.0);
        assert_eq!(histogram_is_consistent(&s, "mpp_hub_commit_seconds", COMMIT_SECONDS_BUCKETS), 1.0);
        assert!(s["mpp_hub_commit_seconds_sum"] > 0.0);
        assert_eq!(s["mpp_hub_last_seq"], 3.0);
        assert_eq!(s["mpp_hub_last_stream_seq"], 3.0);
        assert_eq!(s["mpp_hub_ready"], 1.0);
        assert_eq!(s["mpp_hub_ingest_lag_messages"], 5.0);
        let lag = s["mpp_hub_ingest_lag_seconds"];
        assert!((lag - 2.5).abs() < 0.01, "now minus the last committed message's stream time: {lag}");
        assert_eq!(s["mpp_hub_watchers"], 3.0);
        assert_eq!(s["mpp_hub_access_events_dropped_total"], 7.0);
        assert_eq!(s["mpp_hub_checkpoints_total"], 0.0);
        assert_eq!(s["mpp_hub_ops_auth_failures_total"], 0.0);
        health.metrics().record_redrive(true);
        health.metrics().record_redrive(false);
        health.metrics().record_redrive(false);
        health.metrics().record_ops_auth_failure();
        let s = parse(&health.metrics().render(&scrape(&health, now_ms)));
        assert_eq!(s["mpp_hub_ops_redrives_total{outcome=\"published\"}"], 1.0);
        assert_eq!(s["mpp_hub_ops_redrives_total{outcome=\"refused\"}"], 2.0);
        assert_eq!(s["mpp_hub_ops_auth_failures_total"], 1.0);
        assert!(!s.contains_key("mpp_hub_sla_overdue_applications"), "no scan yet");
        // Caught up: no lag in seconds, however old the last message.
        health.metrics().set_ingest_lag(0);
        let s = parse(&health.metrics().render(&scrape(&health, now_ms + 3_600_000)));
        assert_eq!(s["mpp_hub_ingest_lag_seconds"], 0.0);
        // A redelivered batch (all skipped) counts as a batch, not as entries.
        let again = writer.commit(vec![raw(3, "mpp.events.dukcapil.kk", b"")]).await.unwrap();
        assert_eq!(again.skipped, 1);
        let s = parse(&health.metrics().render(&scrape(&health, now_ms)));
        assert_eq!(s["mpp_hub_ingest_batch_size_count"], 2.0);
        assert_eq!(s["mpp_hub_rejected_total{reason=\"EMPTY_MESSAGE\"}"], 2.0);
        writer.join();
    }

    #[test]
    fn lookups_are_counted_by_channel_and_outcome() {
        use crate::error::ApiError;
        let m = HubMetrics::new();
        let err = |code| -> Result<(), LookupError> { Err(ApiError::new(code, "x").into()) };
        let cases: [(AccessChannel, Result<(), LookupError>); 7] = [
            (AccessChannel::Api, Ok(())),
            (AccessChannel::Api, err(ReasonCode::CaseNotFound)),
            (AccessChannel::Grpc, err(ReasonCode::BadCheckDigit)),
            (AccessChannel::Grpc, err(ReasonCode::PinRequired)),
            (AccessChannel::Web, err(ReasonCode::RateLimited)),
            (AccessChannel::Web, err(ReasonCode::LookupLocked)),
            (AccessChannel::Audit, Ok(())),
        ];
        for (channel, result) in &cases {
            m.record_lookup(*channel, LookupOutcome::of(result), Duration::from_micros(300));
        }
        assert_eq!(m.lookups(LookupChannel::Http, LookupOutcome::Found), 1);
        assert_eq!(m.lookups(LookupChannel::Http, LookupOutcome::NotFoundOrPin), 1);
        assert_eq!(m.lookups(LookupChannel::Grpc, LookupOutcome::Invalid), 2);
        assert_eq!(m.lookups(LookupChannel::Page, LookupOutcome::RateLimited), 1);
        assert_eq!(m.lookups(LookupChannel::Page, LookupOutcome::Locked), 1);
        let health = Health::new(Head::GENESIS);
        let s = parse(&m.render(&scrape(&health, 0)));
        assert_eq!(s["mpp_hub_lookups_total{channel=\"grpc\",outcome=\"invalid\"}"], 2.0);
        assert_eq!(s["mpp_hub_lookups_total{channel=\"page\",outcome=\"found\"}"], 0.0);
        let total: f64 =
            s.iter().filter(|(k, _)| k.starts_with("mpp_hub_lookups_total{")).map(|(_, v)| v).sum();
        assert_eq!(total, 6.0, "the audit channel is not a citizen lookup");
        assert_eq!(histogram_is_consistent(&s, "mpp_hub_lookup_seconds", LOOKUP_SECONDS_BUCKETS), 6.0);
        assert_eq!(s["mpp_hub_lookup_seconds_bucket{le=\"0.00025\"}"], 0.0);
        assert_eq!(s["mpp_hub_lookup_seconds_bucket{le=\"0.0005\"}"], 6.0);
        assert_eq!(s["mpp_hub_ready"], 0.0, "starting");
    }

    #[test]
    fn readiness_turns_disk_low_below_the_minimum_and_back() {
        let dir = tempfile::tempdir().unwrap();
        let health = Health::new(Head::GENESIS);
        health.set_ready();
        let free = check_disk(&health, dir.path(), 0).unwrap();
        assert!(free > 0);
        assert!(health.readiness().ready);
        // A minimum above the real free space (rather than filling a disk).
        let huge = 1_000_000_000 * BYTES_PER_MB;
        check_disk(&health, dir.path(), huge).unwrap();
        let r = health.readiness();
        assert!(!r.ready);
        assert!(
            matches!(r.reason, Some(NotReady::DiskLow { min_free_bytes, .. }) if min_free_bytes == huge),
            "{r:?}"
        );
        assert_eq!(serde_json::to_value(&r.reason).unwrap()["kind"], "disk_low");
        let s = parse(&health.metrics().render(&scrape(&health, 0)));
        assert_eq!(s["mpp_hub_ready"], 0.0);
        assert!(s["mpp_hub_disk_free_bytes"] > 0.0);
        // Transient ingest trouble does not hide the disk; a halt outranks it.
        health.set_not_ready(NotReady::NatsUnavailable { error: "down".into() });
        assert!(matches!(health.readiness().reason, Some(NotReady::DiskLow { .. })));
        health.set_ready();
        check_disk(&health, dir.path(), 0).unwrap();
        assert!(health.readiness().ready, "recovers when space is back");
        check_disk(&health, dir.path(), huge).unwrap();
        health.set_not_ready(NotReady::Gap { expected: 2, got: 3 });
        assert!(matches!(health.readiness().reason, Some(NotReady::Gap { .. })));
        assert!(check_disk(&health, &dir.path().join("missing"), 0).is_err());
    }

    #[test]
    fn the_min_free_disk_flag_has_its_default() {
        use clap::Parser as _;
        let cli = crate::config::Cli::try_parse_from(["mpp-hub", "serve"]).unwrap();
        let crate::config::Command::Serve(args) = cli.command else { panic!("serve") };
        assert_eq!(args.min_free_disk_mb, MIN_FREE_DISK_MB_DEFAULT);
        let cli =
            crate::config::Cli::try_parse_from(["mpp-hub", "serve", "--min-free-disk-mb", "1000000000"])
                .unwrap();
        let crate::config::Command::Serve(args) = cli.command else { panic!("serve") };
        assert_eq!(args.min_free_disk_mb, 1_000_000_000);
    }

    #[test]
    fn an_sla_scan_of_an_empty_store_is_complete_and_a_bound_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let scan = scan_sla_overdue(&store, &CalendarSet::new(), 0, SLA_SCAN_CASES_MAX).unwrap();
        assert_eq!(scan, SlaScan { overdue_applications: 0, cases: 0, truncated: false });
        let m = HubMetrics::new();
        m.set_sla_scan(scan);
        let health = Health::new(Head::GENESIS);
        let s = parse(&m.render(&scrape(&health, 0)));
        assert_eq!(s["mpp_hub_sla_overdue_applications"], 0.0);
        assert_eq!(s["mpp_hub_sla_scan_truncated"], 0.0);
        m.set_sla_scan(SlaScan { overdue_applications: 4, cases: 10, truncated: true });
        let s = parse(&m.render(&scrape(&health, 0)));
        assert!(!s.contains_key("mpp_hub_sla_overdue_applications"), "a partial count is left out");
        assert_eq!(s["mpp_hub_sla_scan_truncated"], 1.0);
    }
}
