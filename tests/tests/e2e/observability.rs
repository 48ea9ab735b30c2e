//! Needs: `promtool` (Debian's `prometheus` package; tests/run-all.sh
//! installs it) on PATH or at `MPP_PROMTOOL`.
//!
//! The observability files are checked as an operator's tools would check
//! them, against the real binaries:
//!
//! - `deploy/prometheus/mpp-rules.yaml` passes `promtool check rules`, and
//!   its unit tests (`mpp-rules.test.yaml`) pass `promtool test rules`;
//! - every metric that the rules and the Grafana dashboard
//!   (`grafana-dashboard.json`) name is one that a running hub, agency
//!   service or NATS server exports (NATS through prometheus-nats-exporter,
//!   whose `gnatsd_varz_<field>` is the numeric field `<field>` of the
//!   server's `/varz`), or a rule's own recorded series.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use mpp_tests::nats::{config_text, ConfigSlots};
use mpp_tests::services::AgencyOptions;
use mpp_tests::{AgencyProcess, HubProcess, NatsServer};

/// How long the processes may take to start.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// Prefixes of the series names the files may use; anything else in an
/// expression is a function, keyword or label.
const SERIES_PREFIXES: [&str; 5] = ["mpp_", "process_", "gnatsd_varz_", "job:", "instance:"];

/// Series Prometheus itself makes for every target.
const PROMETHEUS_SERIES: [&str; 1] = ["up"];

fn prometheus_dir() -> Result<PathBuf> {
    let root =
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("no workspace above the tests crate")?;
    Ok(root.join("deploy").join("prometheus"))
}

fn promtool() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("MPP_PROMTOOL") {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join("promtool")).find(|p| p.is_file()).context(
        "promtool is not installed: install Debian's `prometheus` package (tests/run-all.sh does) or set MPP_PROMTOOL",
    )
}

fn run_promtool(args: &[&str]) -> Result<String> {
    let out = Command::new(promtool()?)
        .args(args)
        .current_dir(prometheus_dir()?)
        .output()
        .context("running promtool")?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    ensure!(out.status.success(), "promtool {} failed:\n{text}", args.join(" "));
    Ok(text)
}

#[test]
fn the_rules_pass_promtool_check_and_their_unit_tests() -> Result<()> {
    let checked = run_promtool(&["check", "rules", "mpp-rules.yaml"])?;
    ensure!(checked.contains("SUCCESS"), "{checked}");
    let tested = run_promtool(&["test", "rules", "mpp-rules.test.yaml"])?;
    ensure!(tested.contains("SUCCESS"), "{tested}");
    println!("{}\n{}", checked.trim(), tested.trim());
    Ok(())
}

/// The series names in a PromQL expression (by [`SERIES_PREFIXES`]).
fn series_in(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut token = String::new();
    let mut in_string = false;
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c == '"' {
            in_string = !in_string;
            token.clear();
            continue;
        }
        if !in_string && (c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            token.push(c);
            continue;
        }
        if SERIES_PREFIXES.iter().any(|p| token.starts_with(p)) || PROMETHEUS_SERIES.contains(&token.as_str())
        {
            out.insert(std::mem::take(&mut token));
        }
        token.clear();
    }
    out
}

/// Every `expr` string anywhere in a JSON value (the dashboard's targets).
fn dashboard_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

/// The rules file's `expr:` and `record:` values (one line each there).
fn rules_exprs_and_records(text: &str) -> (Vec<String>, BTreeSet<String>) {
    let (mut exprs, mut records) = (Vec::new(), BTreeSet::new());
    for line in text.lines().map(str::trim) {
        if let Some(e) = line.strip_prefix("expr: ") {
            exprs.push(e.to_owned());
        } else if let Some(r) = line.strip_prefix("- record: ") {
            records.insert(r.to_owned());
        }
    }
    (exprs, records)
}

/// The sample names of a Prometheus text exposition.
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_and_the_dashboard_name_only_metrics_the_binaries_export() -> Result<()> {
    // NATS with its monitoring endpoint, as prometheus-nats-exporter reads it.
    let monitor_port = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(0));
    let slot = monitor_port.clone();
    let nats = NatsServer::start_with_config(
        move |s: &ConfigSlots| {
            slot.store(s.http_port, std::sync::atomic::Ordering::Relaxed);
            Ok(format!(
                "{}http: \"127.0.0.1:{}\"\n",
                config_text(&s.server_name, s.port, &s.store_dir),
                s.http_port
            ))
        },
        None,
    )
    .await?;
    let monitor =
        std::net::SocketAddr::from(([127, 0, 0, 1], monitor_port.load(std::sync::atomic::Ordering::Relaxed)));
    // The agency follows the hub's verdict feed, so its verdict metrics
    // are exported (and documented) too.
    let secrets = tempfile::tempdir()?;
    let (token_file, participants) =
        mpp_tests::services::participant_token_files(secrets.path(), "dukcapil")?;
    let mut hub = HubProcess::spawn_with(
        &nats.url(),
        mpp_tests::services::HubOptions::with_file("--participant-tokens-file", &participants),
    )?;
    let metrics_addr = mpp_tests::ports::free_addr()?;
    let mut options = AgencyOptions::region("1771");
    options.extra_args = vec![
        "--metrics-addr".to_owned(),
        metrics_addr.to_string(),
        "--hub-url".into(),
        hub.grpc_endpoint(),
        "--hub-token-file".into(),
        token_file.display().to_string(),
    ];
    let mut agency = AgencyProcess::spawn("mpp-dukcapil", &nats.url(), options)?;
    hub.wait_ready(START_DEADLINE).await?;
    agency.wait_listening(START_DEADLINE).await?;

    let mut names = BTreeSet::new();
    let mut families: Vec<(&str, Vec<Family>)> = Vec::new();
    // The hub's SLA gauge appears after its first scan (at start), its
    // stream time after the first message (the agency's service standards)
    // is committed; the agency's verdict counts once it heard a verdict.
    for (what, addr, wanted) in [
        (
            "the hub",
            hub.http_addr(),
            &["mpp_hub_sla_overdue_applications", "mpp_hub_last_stream_timestamp_seconds"][..],
        ),
        (
            "every agency service and the front office",
            metrics_addr,
            &["mpp_outbox_depth", "mpp_agency_verdicts_total{"][..],
        ),
    ] {
        let page = mpp_tests::wait_for(&format!("{what}: /metrics"), START_DEADLINE, || async move {
            let r = mpp_tests::http::get(addr, "/metrics").await?;
            let text = String::from_utf8_lossy(&r.body).into_owned();
            Ok((r.status == 200 && wanted.iter().all(|w| text.contains(&format!("\n{w}")))).then_some(text))
        })
        .await?;
        let found = exported(&page);
        ensure!(
            found.contains("mpp_build_info") && found.contains("process_resident_memory_bytes"),
            "{what}: {page}"
        );
        names.extend(found);
        families.push((what, metric_families(&page)));
    }
    mpp_tests::docs::check_generated(
        "METRICS.md",
        &render_metrics_doc(&families),
        "the binaries' /metrics",
        "observability",
    )?;
    let varz = mpp_tests::http::get(monitor, "/varz").await.context("NATS /varz")?;
    let varz: serde_json::Value = serde_json::from_slice(&varz.body).context("NATS /varz is not JSON")?;
    for (field, value) in varz.as_object().context("/varz is not an object")? {
        if value.is_number() {
            names.insert(format!("gnatsd_varz_{field}"));
        }
    }

    let dir = prometheus_dir()?;
    let rules = std::fs::read_to_string(dir.join("mpp-rules.yaml"))?;
    let (mut exprs, records) = rules_exprs_and_records(&rules);
    let rule_exprs = exprs.len();
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("grafana-dashboard.json"))?)
            .context("grafana-dashboard.json does not parse")?;
    dashboard_exprs(&dashboard, &mut exprs);
    ensure!(
        rule_exprs >= 20 && exprs.len() >= rule_exprs + 30,
        "{rule_exprs} rule and {} exprs in all",
        exprs.len()
    );

    let mut unknown = BTreeSet::new();
    let mut used = BTreeSet::new();
    for e in &exprs {
        for s in series_in(e) {
            if !(names.contains(&s) || records.contains(&s) || PROMETHEUS_SERIES.contains(&s.as_str())) {
                unknown.insert(format!("{s} (in {e})"));
            }
            used.insert(s);
        }
    }
    if !unknown.is_empty() {
        bail!(
            "{} series are named but not exported:\n{}\nexported: {names:?}",
            unknown.len(),
            unknown.into_iter().collect::<Vec<_>>().join("\n")
        );
    }
    println!("{} expressions name {} series, each exported or recorded", exprs.len(), used.len());
    agency.terminate().await?;
    hub.terminate().await?;
    Ok(())
}

/// One metric family as `# HELP` and `# TYPE` describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Family {
    name: String,
    kind: String,
    help: String,
}

/// The families of an exposition, in order.
fn metric_families(text: &str) -> Vec<Family> {
    let mut out: Vec<Family> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push(Family { name: name.to_owned(), kind: String::new(), help: help.to_owned() });
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let (Some(f), Some((name, kind))) = (out.last_mut(), rest.split_once(' ')) {
                if f.name == name {
                    f.kind = kind.to_owned();
                }
            }
        }
    }
    out
}

/// `docs/METRICS.md`: every metric family each kind of binary exports.
fn render_metrics_doc(sources: &[(&str, Vec<Family>)]) -> String {
    let mut out = String::from(
        "# Metrics\n\
         \n\
         <!-- Generated by tests/tests/e2e/observability.rs from the /metrics of a running hub and\n\
         \x20    agency service; do not edit by hand.\n\
         \x20    Regenerate with: MPP_BLESS=1 cargo test -p mpp-tests --test e2e observability -->\n\
         \n\
         Prometheus text format on the hub's HTTP port (`GET /metrics`) and on each agency service's\n\
         and the front office's `--metrics-addr`. Alerts and the dashboard that use them:\n\
         `deploy/prometheus/` (docs/OPERATIONS.md).\n",
    );
    let everywhere: Vec<&Family> = sources
        .first()
        .map(|(_, fs)| fs.iter().filter(|f| sources.iter().all(|(_, other)| other.contains(f))).collect())
        .unwrap_or_default();
    let mut table = |title: &str, families: &mut dyn Iterator<Item = &Family>| {
        out.push_str(&format!("\n## {title}\n\n| metric | type | meaning |\n|---|---|---|\n"));
        for f in families {
            out.push_str(&format!("| `{}` | {} | {} |\n", f.name, f.kind, f.help.replace('|', "\\|")));
        }
    };
    for (what, families) in sources {
        table(&format!("Exported by {what}"), &mut families.iter().filter(|f| !everywhere.contains(f)));
    }
    table("Exported by every binary", &mut everywhere.iter().copied());
    out
}

#[test]
fn series_are_found_in_expressions_but_not_labels_or_strings() {
    let found =
        series_in(r#"sum by (job) (rate(mpp_hub_x_total{reason="mpp_not_a_series"}[5m])) / up and job:a:b"#);
    assert_eq!(found.into_iter().collect::<Vec<_>>(), ["job:a:b", "mpp_hub_x_total", "up"]);
    assert_eq!(
        exported("# HELP a b\na_total{x=\"1\"} 2\nb 3\n").into_iter().collect::<Vec<_>>(),
        ["a_total", "b"]
    );
}
