//! `mpp-bench --bootstrap N` (on demand, not a section): a new replica
//! bootstrapped from another's store against a full re-ingest of the same
//! log (issue 20, item 5; target: bootstrap in at most 10 % of the time).
//!
//! 1. The full re-ingest: `mpp-hub audit gen-fixture` writes an N-event
//!    store through the real ledger (decode, validate, dedupe, decide,
//!    apply, chain, one sled commit and flush per batch of 1,000, a signed
//!    checkpoint every 1,000 entries): exactly the work a hub does to
//!    ingest the same stream, without NATS in between. A real `mpp-hub
//!    serve` ingests more slowly (section 7: 0.93x the in-process ingest of
//!    section 2), so the ratio below is the pessimistic one.
//! 2. The bootstrap: `mpp-hub admin bootstrap` from that (stopped) store into
//!    a new directory, with the fixture's public key: copy, then verify the
//!    chain, the Merkle tree, every checkpoint's signature, and the copied
//!    projections and event-id index against the projection commitment the
//!    latest checkpoint signs (recomputed in one pass); with
//!    `MPP_BENCH_BOOTSTRAP_REPLAY=1` by a replay of the whole log instead
//!    (`--replay`, the stronger and slower check).
//!
//! Both are the release binary as an operator runs it; the figures are wall
//! time. Prints a table on stdout; everything is removed afterwards (~900 B
//! of temporary disk per event: two copies of the store).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

/// Entries between two signed checkpoints of the generated store (the
/// hub's batch size, so every fill commit is a batch of 1,000 as ingest's).
const CHECKPOINT_EVERY: u64 = 1_000;

/// Seed of the generated store.
const FIXTURE_SEED: u64 = 20_005;

/// What one run measured.
#[derive(Debug, Clone)]
pub(crate) struct BootstrapReading {
    events: u64,
    store_bytes: u64,
    ingest: Duration,
    bootstrap: Duration,
    /// The bootstrap's own split: copy, verify (from its output line).
    split: String,
}

fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut n = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        n += if m.is_dir() { dir_bytes(&e.path())? } else { m.len() };
    }
    Ok(n)
}

fn run_timed(exe: &Path, args: &[&str]) -> Result<(Duration, String)> {
    let started = Instant::now();
    let out = Command::new(exe).args(args).output().with_context(|| format!("running {}", exe.display()))?;
    let took = started.elapsed();
    ensure!(
        out.status.success(),
        "{} {} failed ({}):\n{}\n{}",
        exe.display(),
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((took, String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// Runs the comparison at `events` entries in a directory under `tmp`.
pub(crate) fn run(exe: &Path, tmp: &Path, events: u64) -> Result<BootstrapReading> {
    let dir = tmp.join(format!("bootstrap-{events}"));
    std::fs::create_dir_all(&dir)?;
    let source = dir.join("source");
    let key = dir.join("source.pub");
    let target = dir.join("replica");
    let (s, e) = (source.display().to_string(), events.to_string());
    let (k, t) = (key.display().to_string(), target.display().to_string());
    eprintln!("[mpp-bench] bootstrap: ingesting {events} events into a store");
    let every = CHECKPOINT_EVERY.to_string();
    let seed = FIXTURE_SEED.to_string();
    let (ingest, _) = run_timed(
        exe,
        &[
            "audit",
            "gen-fixture",
            "--entries",
            &e,
            "--data-dir",
            &s,
            "--seed",
            &seed,
            "--checkpoint-every",
            &every,
            "--public-key-out",
            &k,
        ],
    )?;
    let store_bytes = dir_bytes(&source)?;
    eprintln!(
        "[mpp-bench] bootstrap: {events} events ingested in {:.1} s; bootstrapping",
        ingest.as_secs_f64()
    );
    let mut args = vec!["admin", "bootstrap", "--from", &s, "--data-dir", &t, "--hub-public-key", &k];
    if std::env::var_os("MPP_BENCH_BOOTSTRAP_REPLAY").is_some_and(|v| v == "1") {
        args.push("--replay");
    }
    let (bootstrap, said) = run_timed(exe, &args)?;
    let split = said.rsplit_once("; ").map_or_else(|| said.trim().to_owned(), |(_, s)| s.trim().to_owned());
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(BootstrapReading { events, store_bytes, ingest, bootstrap, split })
}

/// The readings as a Markdown table.
pub(crate) fn table(readings: &[BootstrapReading]) -> String {
    let mut s = String::from(
        "| events | store on disk | full re-ingest (ledger, no NATS) | bootstrap (copy + verify) | its split | \
         bootstrap / re-ingest | target <= 10 % |\n|---:|---:|---:|---:|---|---:|---|\n",
    );
    for r in readings {
        let ratio = r.bootstrap.as_secs_f64() / r.ingest.as_secs_f64().max(1e-9);
        s.push_str(&format!(
            "| {} | {:.0} MiB | {:.1} s ({:.0} events/s) | {:.1} s | {} | {:.1} % | {} |\n",
            crate::report::fmt_num(r.events as f64),
            r.store_bytes as f64 / 1048576.0,
            r.ingest.as_secs_f64(),
            r.events as f64 / r.ingest.as_secs_f64().max(1e-9),
            r.bootstrap.as_secs_f64(),
            r.split,
            100.0 * ratio,
            if ratio <= 0.10 { "yes" } else { "no" }
        ));
    }
    s
}
