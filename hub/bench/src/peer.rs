//! Section 8: the peer. The same journey workload, written to a file as
//! length-delimited `mpp.v1.Envelope`s, is run by `mpp-bench-peer`
//! (cqrs-es + postgres-es on a local PostgreSQL it starts itself), which
//! answers with one JSON object. The peer is a separate crate outside the
//! default build; without its binary the section says how to build it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use prost::Message as _;

use crate::workload::{now_ms, standards, Interleaved};

/// The peer's answer.
#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct PeerResult {
    /// `ok` or `skipped`.
    pub(crate) status: String,
    /// Why it skipped.
    #[serde(default)]
    pub(crate) reason: String,
    /// Commands executed.
    #[serde(default)]
    pub(crate) events: u64,
    /// Commands refused by the aggregate (illegal transitions).
    #[serde(default)]
    pub(crate) refused: u64,
    /// Seconds.
    #[serde(default)]
    pub(crate) secs: f64,
    /// Commands per second.
    #[serde(default)]
    pub(crate) events_per_s: f64,
    /// Concurrent tasks.
    #[serde(default)]
    pub(crate) tasks: u64,
    /// PostgreSQL version.
    #[serde(default)]
    pub(crate) postgres: String,
}

/// The peer binary: `--peer-bin`, else next to this executable.
pub(crate) fn peer_bin(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(p.to_path_buf());
    }
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.join("mpp-bench-peer");
    p.is_file().then_some(p)
}

/// Writes `events` events of the journey workload (standards first) to `path`.
pub(crate) fn write_workload(path: &Path, events: u64, seed: u64) -> Result<u64> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut gen = Interleaved::new(seed, 90_000_000, crate::workload::OPEN_CASES_DEFAULT, 0)?;
    let region = gen.region();
    let now = now_ms();
    let mut n = 0u64;
    let mut buf = Vec::new();
    for step in standards(1)? {
        buf.clear();
        step.envelope(region, now).encode_length_delimited(&mut buf)?;
        out.write_all(&buf)?;
        n += 1;
    }
    while n < events {
        buf.clear();
        gen.next_step()?.envelope(region, now).encode_length_delimited(&mut buf)?;
        out.write_all(&buf)?;
        n += 1;
    }
    out.flush()?;
    Ok(n)
}

/// Runs the peer on `workload` with `tasks` tasks.
pub(crate) fn run(bin: &Path, workload: &Path, work_dir: &Path, tasks: usize) -> Result<PeerResult> {
    let out = Command::new(bin)
        .arg("--workload")
        .arg(workload)
        .arg("--work-dir")
        .arg(work_dir)
        .args(["--tasks", &tasks.to_string()])
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| l.trim_start().starts_with('{'));
    match line {
        Some(l) => {
            let r: PeerResult = serde_json::from_str(l).with_context(|| format!("peer answer {l:?}"))?;
            if !out.status.success() && r.status != "skipped" {
                bail!("the peer failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
            }
            Ok(r)
        }
        None => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let start = stderr.char_indices().rev().nth(2000).map_or(0, |(i, _)| i);
            Err(anyhow!("the peer printed no result ({}): {}", out.status, &stderr[start..]))
        }
    }
}
