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

/// The PostgreSQL batch peer's answer (`mpp-bench-peer --mode pg-batch`).
#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct PgBatchResult {
    /// `ok` or `skipped`.
    pub(crate) status: String,
    /// Why it skipped.
    #[serde(default)]
    pub(crate) reason: String,
    /// Entries committed.
    #[serde(default)]
    pub(crate) events: u64,
    /// Seconds from the consumer's creation to the last commit.
    #[serde(default)]
    pub(crate) secs: f64,
    /// Entries per second.
    #[serde(default)]
    pub(crate) events_per_s: f64,
    /// Verdicts.
    #[serde(default)]
    pub(crate) accepted: u64,
    /// Verdicts.
    #[serde(default)]
    pub(crate) rejected: u64,
    /// Verdicts.
    #[serde(default)]
    pub(crate) duplicates: u64,
    /// Transactions committed.
    #[serde(default)]
    pub(crate) batches: u64,
    /// Hash of its entry at the last stream sequence, hex.
    #[serde(default)]
    pub(crate) head_hash: String,
    /// Ed25519 verifications it computed.
    #[serde(default)]
    pub(crate) signatures_verified: u64,
    /// PostgreSQL version.
    #[serde(default)]
    pub(crate) postgres: String,
    /// The writer's time per phase, seconds.
    #[serde(default)]
    pub(crate) phase_secs: std::collections::BTreeMap<String, f64>,
}

impl PgBatchResult {
    fn skipped(reason: String) -> Self {
        PgBatchResult {
            status: "skipped".to_owned(),
            reason,
            events: 0,
            secs: 0.0,
            events_per_s: 0.0,
            accepted: 0,
            rejected: 0,
            duplicates: 0,
            batches: 0,
            head_hash: String::new(),
            signatures_verified: 0,
            postgres: String::new(),
            phase_secs: std::collections::BTreeMap::new(),
        }
    }
}

/// Runs the PostgreSQL batch peer over stream sequences `1..=messages` of
/// the stream at `nats_url`, in batches of `batch_max`, trusting the bench
/// registrar.
pub(crate) fn run_pg_batch(
    bin: &Path,
    nats_url: &str,
    messages: u64,
    batch_max: usize,
    work_dir: &Path,
) -> Result<PgBatchResult> {
    let out = Command::new(bin)
        .args(["--mode", "pg-batch", "--nats-url", nats_url])
        .args(["--stream", mpp_edge::stream::STREAM_NAME])
        .args(["--messages", &messages.to_string(), "--batch-max", &batch_max.to_string()])
        .args(["--registrar-key", &crate::signing::registrar_key_hex()])
        .arg("--work-dir")
        .arg(work_dir)
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().rev().find(|l| l.trim_start().starts_with('{')) else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // A peer binary built before it had the mode (clap's usage error).
        if stderr.contains("unexpected argument '--mode'") {
            return Ok(PgBatchResult::skipped(format!(
                "{} has no --mode pg-batch: rebuild it (cargo build --release -p mpp-bench-peer)",
                bin.display()
            )));
        }
        let start = stderr.char_indices().rev().nth(2000).map_or(0, |(i, _)| i);
        bail!("the PostgreSQL batch peer printed no result ({}): {}", out.status, &stderr[start..]);
    };
    let r: PgBatchResult = serde_json::from_str(line).with_context(|| format!("peer answer {line:?}"))?;
    if !out.status.success() && r.status != "skipped" {
        bail!("the PostgreSQL batch peer failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(r)
}
