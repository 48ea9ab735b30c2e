//! The metrics every MPP binary exports about itself, under the names
//! Prometheus' own client libraries use, so that standard dashboards and
//! alerts work unchanged: `mpp_build_info` (which binary, which version),
//! the OTLP span exporter's counts ([`SPAN_EXPORTS`]) and
//! the `process_*` family (memory, CPU, file descriptors, start time), read
//! from Linux's `/proc/self`.
//!
//! On a system without `/proc` (not a target of this project) the
//! `process_*` series are left out, never reported as zero.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::metrics::single;

/// Clock ticks per second of `/proc/<pid>/stat`'s CPU times (`USER_HZ`).
/// Linux fixes it at 100 for user space on every architecture this project
/// builds for (x86_64, aarch64), whatever the kernel's internal `HZ`.
pub const USER_HZ: f64 = 100.0;

/// Bytes of one page, the unit of `/proc/self/statm` (4 KiB on x86_64 and
/// on the aarch64 kernels of the usual distributions).
const PAGE_BYTES: u64 = 4096;

/// What identifies the running binary in `mpp_build_info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// The binary's name, e.g. `mpp-hub` (`[a-z0-9-]`, no quoting needed).
    pub binary: String,
    /// Its crate version (`env!("CARGO_PKG_VERSION")` of the binary's crate;
    /// every crate of the workspace shares one version).
    pub version: &'static str,
}

impl BuildInfo {
    /// The binary `binary` at this workspace's version.
    pub fn new(binary: impl Into<String>) -> Self {
        Self { binary: binary.into(), version: env!("CARGO_PKG_VERSION") }
    }
}

/// Spans the OTLP exporter (`--otlp-endpoint`, `mpp_edge::otlp`) handed to
/// the collector and spans it dropped (queue full, export failed or timed
/// out, or still queued when the flush at shutdown ran out of time); both
/// stay 0 without it. Rendered by [`render`] on every `/metrics`.
#[derive(Debug)]
pub struct SpanExportCounts {
    /// Spans the collector accepted.
    pub exported: AtomicU64,
    /// Spans dropped.
    pub dropped: AtomicU64,
}

/// The process's one [`SpanExportCounts`] (the exporter is process-wide).
pub static SPAN_EXPORTS: SpanExportCounts =
    SpanExportCounts { exported: AtomicU64::new(0), dropped: AtomicU64::new(0) };

/// One reading of the process's own figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// Resident set size, bytes.
    pub resident_memory_bytes: u64,
    /// Virtual memory size, bytes.
    pub virtual_memory_bytes: u64,
    /// User plus system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<u64>,
    /// Start time, seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
    /// Threads of the process.
    pub threads: u64,
}

impl ProcessStats {
    /// Reads `/proc/self`; `None` where it cannot be read.
    pub fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let fields = stat_fields(&stat)?;
        let mut pages = statm.split_whitespace().map(|v| v.parse::<u64>().ok());
        let (virtual_pages, resident_pages) = (pages.next()??, pages.next()??);
        let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
        // Fields after the command, numbered as in proc(5) minus 3:
        // utime (14), stime (15), num_threads (20), starttime (22).
        let (utime, stime, threads, start_ticks) = (field(11)?, field(12)?, field(17)?, field(19)?);
        let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse::<u64>().ok())
        });
        let open_fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0);
        let max_fds = std::fs::read_to_string("/proc/self/limits").ok().and_then(|s| max_open_files(&s));
        Some(Self {
            resident_memory_bytes: resident_pages * PAGE_BYTES,
            virtual_memory_bytes: virtual_pages * PAGE_BYTES,
            cpu_seconds: (utime + stime) as f64 / USER_HZ,
            open_fds,
            max_fds,
            start_time_seconds: boot_time.map(|b| b as f64 + start_ticks as f64 / USER_HZ),
            threads,
        })
    }
}

/// The fields of a `/proc/<pid>/stat` after the command name (which is in
/// parentheses and may itself hold spaces and parentheses): field `i` here
/// is field `i + 3` of proc(5).
pub fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let after = &stat[stat.rfind(')')? + 1..];
    Some(after.split_whitespace().collect())
}

/// The soft "Max open files" limit of `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// Appends `mpp_build_info`, the OTLP exporter's [`SPAN_EXPORTS`] and,
/// where `/proc` can be read, the
/// `process_*` series, in Prometheus' text format.
pub fn render(out: &mut String, build: &BuildInfo) {
    render_with(out, build, ProcessStats::read());
}

fn render_with(out: &mut String, build: &BuildInfo, stats: Option<ProcessStats>) {
    let _ = writeln!(out, "# HELP mpp_build_info The running binary and its version; always 1.");
    let _ = writeln!(out, "# TYPE mpp_build_info gauge");
    let _ = writeln!(out, "mpp_build_info{{binary=\"{}\",version=\"{}\"}} 1", build.binary, build.version);
    for (name, help, value) in [
        ("mpp_otlp_spans_exported_total", "Spans exported to the OTLP collector.", &SPAN_EXPORTS.exported),
        (
            "mpp_otlp_spans_dropped_total",
            "Spans the OTLP exporter dropped (queue full, export failed).",
            &SPAN_EXPORTS.dropped,
        ),
    ] {
        single(out, name, "counter", help, value.load(Ordering::Relaxed));
    }
    let Some(s) = stats else { return };
    let gauge = "gauge";
    let series = [
        (
            Some(s.resident_memory_bytes.to_string()),
            "process_resident_memory_bytes",
            gauge,
            "Resident memory size in bytes.",
        ),
        (
            Some(s.virtual_memory_bytes.to_string()),
            "process_virtual_memory_bytes",
            gauge,
            "Virtual memory size in bytes.",
        ),
        (
            Some(s.cpu_seconds.to_string()),
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time in seconds.",
        ),
        (Some(s.open_fds.to_string()), "process_open_fds", gauge, "Number of open file descriptors."),
        (
            s.max_fds.map(|m| m.to_string()),
            "process_max_fds",
            gauge,
            "Maximum number of open file descriptors.",
        ),
        (
            s.start_time_seconds.map(|t| format!("{t:.2}")),
            "process_start_time_seconds",
            gauge,
            "Start time of the process since the Unix epoch in seconds.",
        ),
        (Some(s.threads.to_string()), "process_threads", gauge, "Number of OS threads in the process."),
    ];
    // Those not known on this system (None) are left out.
    for (value, name, kind, help) in series {
        if let Some(value) = value {
            single(out, name, kind, help, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::parse;

    fn build() -> BuildInfo {
        BuildInfo { binary: "mpp-test".into(), version: "1.2.3" }
    }

    #[test]
    fn this_process_reads_plausible_figures() {
        let s = ProcessStats::read().expect("/proc/self is readable on Linux");
        assert!(s.resident_memory_bytes > 1 << 20, "{s:?}");
        assert!(s.virtual_memory_bytes >= s.resident_memory_bytes, "{s:?}");
        assert!(s.open_fds >= 3, "stdin, stdout, stderr at least: {s:?}");
        assert!(s.max_fds.is_some_and(|m| m >= s.open_fds), "{s:?}");
        assert!(s.threads >= 1, "{s:?}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        let start = s.start_time_seconds.expect("btime is in /proc/stat");
        assert!(start <= now + 1.0 && start > now - 86_400.0 * 365.0, "start {start}, now {now}");
    }

    #[test]
    fn renders_build_info_and_the_process_family() {
        let mut out = String::new();
        render(&mut out, &build());
        assert!(out.contains("mpp_build_info{binary=\"mpp-test\",version=\"1.2.3\"} 1\n"), "{out}");
        let s = parse(&out);
        for name in [
            "mpp_otlp_spans_exported_total",
            "mpp_otlp_spans_dropped_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
            "process_threads",
        ] {
            assert!(s.contains_key(name), "{name} missing:\n{out}");
        }
        assert!(s["process_resident_memory_bytes"] > 0.0);
    }

    #[test]
    fn without_proc_only_build_info_is_rendered() {
        let mut out = String::new();
        render_with(&mut out, &build(), None);
        assert!(!out.contains("process_"), "{out}");
        assert!(out.contains("mpp_build_info"), "{out}");
    }

    #[test]
    fn a_command_with_spaces_and_parentheses_does_not_shift_the_fields() {
        let stat = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 300 200 13 14 15 16 4 18 1234 20";
        let f = stat_fields(stat).unwrap();
        assert_eq!((f[11], f[12], f[17], f[19]), ("300", "200", "4", "1234"));
        assert_eq!(max_open_files("Limit Soft Hard Units\nMax open files            1024                 4096                 files\n"), Some(1024));
    }
}
