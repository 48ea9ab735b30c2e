//! The hub's metrics: a lean registry of atomics and fixed-bucket histograms,
//! rendered as the Prometheus text format (version 0.0.4) at `GET /metrics`
//! on the HTTP server. No metrics crate: every series is declared here, and
//! every label set is closed (verdicts, the reason codes given to
//! [`HubMetrics::new`], the lookup
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
//! | `mpp_hub_standards_in_memory` | gauge | service standards whose terms the ledger writer holds in memory (one per service with a standard in force) |
//! | `mpp_hub_ready` | gauge | 1 when `/readyz` answers 200 |
//! | `mpp_hub_disk_free_bytes` | gauge | free space of the data directory at the last check |
//! | `mpp_hub_corrupt_stores_kept` | gauge | corrupt stores (a rebuilt main store, a reset access log) moved aside (`corrupt-store-*` in the data directory) at start; above 0 an operator must look |
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
//! The SLA gauge is computed by the operators' crate (`mpp_ops::sla_gauge`)
//! and stored here with [`HubMetrics::set_sla_scan`].

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

/// The binary whose registry this is, as `mpp_build_info` names it.
pub const HUB_BINARY: &str = "mpp-hub";

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
/// the largest `--batch-max` (`mpp_hub::config::BATCH_MESSAGES_MAX`).
pub const BATCH_SIZE_BUCKETS: &[f64] =
    &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 4096.0];

/// Log entry verdicts, the label values of `mpp_hub_ingest_messages_total`.
const VERDICTS: [&str; 3] = ["accepted", "rejected", "duplicate"];

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
    /// The label values of `mpp_hub_rejected_total` (every reason code of
    /// the build, listed even at 0) and their counters.
    reasons: Box<[&'static str]>,
    rejected: Box<[AtomicU64]>,
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
    corrupt_stores_kept: AtomicU64,
    standards_in_memory: AtomicU64,
}

/// What a scrape reads from outside the registry, at the moment of the
/// scrape.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// `/readyz` answers 200 (`mpp_hub_ready`).
    pub ready: bool,
    /// Last log sequence.
    pub last_seq: u64,
    /// Last stream sequence committed (the checkpoint).
    pub last_stream_seq: u64,
    /// Open watches, if known.
    pub watchers: Option<usize>,
    /// Access events dropped since start, if there is an access log.
    pub access_events_dropped: Option<u64>,
    /// Now, Unix milliseconds (for the lag in seconds).
    pub now_ms: i64,
}

/// Appends the `# HELP` and `# TYPE` lines of the series `name` of `kind`
/// (`counter`, `gauge`, `histogram`) in Prometheus' text format.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Appends the series `name` with one unlabelled sample, `value`, after
/// its [`header`].
pub fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

impl HubMetrics {
    /// An empty registry whose `mpp_hub_rejected_total` lists `reasons`
    /// (the stable reason codes, as their label values).
    pub fn new(reasons: Vec<&'static str>) -> Self {
        Self {
            ingest_messages: std::array::from_fn(|_| AtomicU64::new(0)),
            rejected: reasons.iter().map(|_| AtomicU64::new(0)).collect(),
            reasons: reasons.into_boxed_slice(),
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
            corrupt_stores_kept: AtomicU64::new(0),
            standards_in_memory: AtomicU64::new(0),
        }
    }

    /// Records one batch the writer committed: `messages` handed over, the
    /// entries it made by verdict (`[accepted, rejected, duplicates]`), the
    /// reason code of each rejection, the stream time of its last committed
    /// message (if it committed any) and how long decide + commit + flush
    /// took. A reason not in the registry's list is not counted.
    pub fn record_batch<'a>(
        &self,
        messages: usize,
        verdicts: [usize; 3],
        rejections: impl IntoIterator<Item = &'a str>,
        last_committed_time_ns: Option<i64>,
        took: Duration,
    ) {
        self.batch_size.observe(messages as f64);
        self.commit_seconds.observe(took.as_secs_f64());
        for (counter, n) in self.ingest_messages.iter().zip(verdicts) {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
        for code in rejections {
            if let Some(i) = self.reasons.iter().position(|c| *c == code) {
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

    /// Records one citizen lookup through `channel`.
    pub fn record_lookup(&self, channel: LookupChannel, outcome: LookupOutcome, took: Duration) {
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

    /// Stores how many corrupt stores moved aside the data directory keeps.
    pub fn set_corrupt_stores_kept(&self, n: u64) {
        self.corrupt_stores_kept.store(n, Ordering::Relaxed);
    }

    /// Stores how many service standards' terms the ledger writer holds in
    /// memory (one per service with a standard in force).
    pub fn set_standards_in_memory(&self, n: usize) {
        self.standards_in_memory.store(n as u64, Ordering::Relaxed);
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
        for (code, n) in self.reasons.iter().zip(self.rejected.iter()) {
            let _ = writeln!(out, "mpp_hub_rejected_total{{reason=\"{code}\"}} {}", load(n));
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
        single(&mut out, "mpp_hub_last_seq", "gauge", "Last log sequence.", scrape.last_seq);
        single(
            &mut out,
            "mpp_hub_last_stream_seq",
            "gauge",
            "Last stream sequence committed (the checkpoint).",
            scrape.last_stream_seq,
        );
        single(
            &mut out,
            "mpp_hub_standards_in_memory",
            "gauge",
            "Service standards whose terms the ledger writer holds in memory (one per service with a standard in force).",
            load(&self.standards_in_memory),
        );
        single(
            &mut out,
            "mpp_hub_ready",
            "gauge",
            "1 when ingesting with no gap and enough disk (/readyz answers 200).",
            u8::from(scrape.ready),
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
        single(
            &mut out,
            "mpp_hub_corrupt_stores_kept",
            "gauge",
            "Corrupt stores (a rebuilt main store, a reset access log) moved aside and the data directory still keeps (corrupt-store-*), at start.",
            load(&self.corrupt_stores_kept),
        );
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
        crate::process::render(&mut out, &crate::process::BuildInfo::new(HUB_BINARY));
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

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
