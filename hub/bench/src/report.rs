//! The report: figures, ratios and targets per section, written as
//! `report.md` (tables) and `report.json` (the same data).

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

/// A figure compared with another one measured in the same run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Ratio {
    /// What it is compared with.
    pub(crate) to: String,
    /// figure / reference.
    pub(crate) value: f64,
}

/// A target from the issue and whether this run met it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Target {
    /// The target, e.g. `>= 0.5x raw consume`.
    pub(crate) text: String,
    /// Whether it was met.
    pub(crate) met: bool,
}

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    /// What was measured.
    pub(crate) name: String,
    /// The value.
    pub(crate) value: f64,
    /// Its unit, e.g. `events/s`, `ms`, `MiB`.
    pub(crate) unit: String,
    /// Compared with a raw limit, if any.
    pub(crate) ratio: Option<Ratio>,
    /// The target, if any.
    pub(crate) target: Option<Target>,
}

impl Row {
    /// A figure without ratio or target.
    pub(crate) fn new(name: impl Into<String>, value: f64, unit: &str) -> Self {
        Row { name: name.into(), value, unit: unit.to_owned(), ratio: None, target: None }
    }

    /// With a ratio to `reference` (skipped when the reference is unknown or zero).
    pub(crate) fn ratio(mut self, to: &str, reference: Option<f64>) -> Self {
        if let Some(r) = reference.filter(|r| *r > 0.0) {
            self.ratio = Some(Ratio { to: to.to_owned(), value: self.value / r });
        }
        self
    }

    /// With a target.
    pub(crate) fn target(mut self, text: &str, met: bool) -> Self {
        self.target = Some(Target { text: text.to_owned(), met });
        self
    }
}

/// One section of the report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Section {
    /// 1..=8, as in the issue.
    pub(crate) id: u8,
    /// Its title.
    pub(crate) title: String,
    /// The figures.
    pub(crate) rows: Vec<Row>,
    /// How it was measured, and what to know when reading it.
    pub(crate) notes: Vec<String>,
    /// Why it did not run, if it did not.
    pub(crate) skipped: Option<String>,
    /// The error that ended it, if any.
    pub(crate) error: Option<String>,
    /// Wall time of the section, seconds.
    pub(crate) secs: f64,
}

impl Section {
    /// An empty section.
    pub(crate) fn new(id: u8, title: &str) -> Self {
        Section {
            id,
            title: title.to_owned(),
            rows: Vec::new(),
            notes: Vec::new(),
            skipped: None,
            error: None,
            secs: 0.0,
        }
    }

    /// Adds a row.
    pub(crate) fn row(&mut self, row: Row) {
        self.rows.push(row);
    }

    /// Adds a note.
    pub(crate) fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }
}

/// The machine the run measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    /// `nproc`.
    pub(crate) cpus: usize,
    /// From `/proc/cpuinfo`.
    pub(crate) cpu_model: String,
    /// From `/proc/meminfo`.
    pub(crate) memory_bytes: u64,
    /// `uname -sr`.
    pub(crate) kernel: String,
    /// `nats-server --version`.
    pub(crate) nats_server: String,
    /// Load averages (1, 5, 15 min) when the run started.
    pub(crate) load_at_start: [f64; 3],
    /// Load averages when it ended.
    pub(crate) load_at_end: [f64; 3],
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// `mpp-bench` version.
    pub(crate) version: String,
    /// Build profile of the bench (and so, normally, of `mpp-hub`).
    pub(crate) profile: String,
    /// UTC start time, RFC 3339.
    pub(crate) started_utc: String,
    /// The command line.
    pub(crate) command: String,
    /// The machine.
    pub(crate) machine: Machine,
    /// The sections, in order.
    pub(crate) sections: Vec<Section>,
    /// Wall time of the run, seconds.
    pub(crate) total_secs: f64,
}

/// Numbers with thousands separators, or two significant decimals for small ones.
pub(crate) fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_owned();
    }
    if v.abs() >= 100.0 {
        let n = v.round() as i64;
        let digits = n.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if n < 0 {
            out.insert(0, '-');
        }
        out
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

impl Report {
    /// The Markdown rendering.
    pub(crate) fn markdown(&self) -> String {
        let m = &self.machine;
        let mut s = String::new();
        let _ = writeln!(s, "# MPP Hub benchmark report\n");
        let _ = writeln!(s, "- started: {} (UTC), {:.0} s in all", self.started_utc, self.total_secs);
        let _ =
            writeln!(s, "- command: `{}` ({} build, mpp-bench {})", self.command, self.profile, self.version);
        let _ = writeln!(
            s,
            "- machine: {} CPUs ({}), {:.1} GiB RAM, {}; {}",
            m.cpus,
            m.cpu_model,
            m.memory_bytes as f64 / (1u64 << 30) as f64,
            m.kernel,
            m.nats_server
        );
        let _ = writeln!(
            s,
            "- load average at start {:.2} / {:.2} / {:.2}, at end {:.2} / {:.2} / {:.2} (1/5/15 min; the \
             machine is shared, so every figure is read against the raw limits measured in the same run)\n",
            m.load_at_start[0],
            m.load_at_start[1],
            m.load_at_start[2],
            m.load_at_end[0],
            m.load_at_end[1],
            m.load_at_end[2]
        );
        for sec in &self.sections {
            let _ = writeln!(s, "## {}. {}\n", sec.id, sec.title);
            if let Some(why) = &sec.skipped {
                let _ = writeln!(s, "Skipped: {why}\n");
                continue;
            }
            if !sec.rows.is_empty() {
                let _ = writeln!(s, "| figure | value | unit | ratio | target | met |");
                let _ = writeln!(s, "|---|---:|---|---|---|---|");
                for r in &sec.rows {
                    let ratio =
                        r.ratio.as_ref().map_or(String::new(), |x| format!("{:.2}x {}", x.value, x.to));
                    let (target, met) = r.target.as_ref().map_or((String::new(), String::new()), |t| {
                        (t.text.clone(), if t.met { "yes".to_owned() } else { "**no**".to_owned() })
                    });
                    let _ = writeln!(
                        s,
                        "| {} | {} | {} | {} | {} | {} |",
                        r.name,
                        fmt_num(r.value),
                        r.unit,
                        ratio,
                        target,
                        met
                    );
                }
                let _ = writeln!(s);
            }
            if let Some(e) = &sec.error {
                let _ = writeln!(s, "**Error:** {e}\n");
            }
            for n in &sec.notes {
                let _ = writeln!(s, "- {n}");
            }
            let _ = writeln!(s, "\n_Section time: {:.1} s._\n", sec.secs);
        }
        s
    }
}

/// Latency percentiles of a sample, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Percentiles {
    /// Samples.
    pub(crate) count: usize,
    /// Median.
    pub(crate) p50_ms: f64,
    /// 99th percentile.
    pub(crate) p99_ms: f64,
    /// Largest.
    pub(crate) max_ms: f64,
}

/// Percentiles of `samples` (sorted in place).
pub(crate) fn percentiles(samples: &mut [Duration]) -> Percentiles {
    if samples.is_empty() {
        return Percentiles::default();
    }
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1000.0
    };
    Percentiles { count: samples.len(), p50_ms: at(0.50), p99_ms: at(0.99), max_ms: at(1.0) }
}

/// RFC 3339 UTC text of a Unix time in seconds.
pub(crate) fn rfc3339(unix_s: u64) -> String {
    let days = (unix_s / 86_400) as i64;
    let secs = unix_s % 86_400;
    let (y, m, d) = mpp_core::calendar::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_numbers() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_200), "2024-03-01T00:00:00Z");
        assert_eq!(fmt_num(1_234_567.4), "1,234,567");
        assert_eq!(fmt_num(12.34), "12.3");
        assert_eq!(fmt_num(0.5), "0.50");
    }

    #[test]
    fn percentiles_pick_the_right_samples() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let p = percentiles(&mut v);
        assert_eq!((p.count, p.p50_ms, p.p99_ms, p.max_ms), (100, 50.0, 99.0, 100.0));
    }
}
