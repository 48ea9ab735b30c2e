//! The benchmark command keeps working: `mpp-bench --quick` runs every
//! section at tiny sizes (a few seconds), exits 0 and writes a report.md and
//! a report.json that parse and hold all nine sections. No figure is
//! checked: timing is the full benchmark's business, never a test's.

use std::time::Duration;

use anyhow::{bail, Context, Result};

/// How long the quick run may take (it takes seconds; the bound is for a
/// loaded machine and a debug build).
const QUICK_RUN_DEADLINE: Duration = Duration::from_secs(300);

/// Runs `mpp-bench` with `args` and a work directory under `dir`; fails
/// unless it exits 0 within [`QUICK_RUN_DEADLINE`].
async fn run_bench(dir: &tempfile::TempDir, args: &[&str]) -> Result<std::process::Output> {
    let exe = mpp_tests::bins::workspace_bin("mpp-bench")?;
    // Run as root, the PostgreSQL peers (when built) start PostgreSQL as the
    // `postgres` user, which must be able to enter the work directory: a
    // temp dir is created 0700.
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work)?;
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.args(args).arg("--work-dir").arg(&work).kill_on_drop(true);
    if let Ok(nats) = mpp_tests::bins::nats_server() {
        cmd.env("MPP_NATS_SERVER", nats);
    }
    let output = tokio::time::timeout(QUICK_RUN_DEADLINE, cmd.output())
        .await
        .with_context(|| format!("mpp-bench {args:?} did not finish in time"))?
        .context("running mpp-bench")?;
    if !output.status.success() {
        bail!(
            "mpp-bench {args:?} failed with {}:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_bench_writes_a_parseable_report() -> Result<()> {
    let dir = mpp_tests::temp_dir("mpp-bench-smoke-")?;
    let out = dir.path().join("report");
    let out_arg = out.display().to_string();
    run_bench(&dir, &["--quick", "--out", &out_arg]).await?;
    let md = std::fs::read_to_string(out.join("report.md")).context("report.md")?;
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).context("report.json")?)
            .context("report.json is not JSON")?;
    let sections = json["sections"].as_array().context("report.json has no sections")?;
    let ids: Vec<u64> = sections.iter().filter_map(|s| s["id"].as_u64()).collect();
    assert_eq!(ids, (1..=9).collect::<Vec<u64>>(), "sections in report.json");
    for s in sections {
        let id = &s["id"];
        assert!(s["error"].is_null(), "section {id} failed: {}", s["error"]);
        if s["skipped"].is_null() {
            let rows = s["rows"].as_array().with_context(|| format!("section {id} has no rows"))?;
            assert!(!rows.is_empty(), "section {id} measured nothing");
            for r in rows {
                assert!(r["value"].as_f64().is_some_and(f64::is_finite), "section {id}: {r}");
            }
        }
    }
    // Only the peers may be skipped (they are outside the default build).
    for s in sections.iter().filter(|s| !s["skipped"].is_null()) {
        assert!(s["id"] == 8 || s["id"] == 9, "section {} skipped: {}", s["id"], s["skipped"]);
    }
    for title in ["## 1. Raw limits", "## 2. Hub ingest", "## 8. Peer", "## 9. Peer"] {
        assert!(md.contains(title), "report.md lacks {title:?}");
    }
    assert!(json["machine"]["cpus"].as_u64().is_some_and(|n| n > 0), "machine: {}", json["machine"]);
    Ok(())
}

/// `mpp-bench --footprint` grows one real hub through the real ingest path
/// and reads it at each size asked for: a row per size, in order, and the
/// targets line; the auditor's tools (`audit verify`, `audit rebuild`) ran
/// to the end at each. Tiny sizes (one chunk each); no figure is checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn footprint_mode_reads_the_hub_at_each_size() -> Result<()> {
    let dir = mpp_tests::temp_dir("mpp-bench-footprint-")?;
    let output =
        run_bench(&dir, &["--footprint", "4000,2000", "--window-s", "1", "--footprint-disk-margin-gib", "1"])
            .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let rows: Vec<&str> =
        stdout.lines().filter(|l| l.starts_with("| 2,000 |") || l.starts_with("| 4,000 |")).collect();
    assert_eq!(rows.len(), 2, "one row per size:\n{stdout}");
    assert!(rows[0].starts_with("| 2,000 |"), "sizes in ascending order:\n{stdout}");
    for row in &rows {
        assert!(!row.contains("not done ("), "an audit tool failed or was stopped: {row}");
        assert_eq!(row.matches(" MiB) |").count(), 2, "both audit tools' rates and peaks: {row}");
    }
    assert!(stdout.contains("Targets (issue 20)"), "{stdout}");
    assert!(!stdout.contains("growth stopped"), "{stdout}");
    Ok(())
}
