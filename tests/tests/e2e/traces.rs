//! One trace across the hop: an agency RPC called with a W3C `traceparent`
//! → the agency's RPC span → its outbox entry → the NATS message header →
//! the hub's ingest span and its JSON log line for each of the call's
//! events, all with the caller's trace id.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mpp_proto::agency::dukcapil::v1 as dk;
use mpp_tests::dukcapil::{client, permohonan};
use mpp_tests::{wait_for, AgencyProcess, HubProcess, NatsServer};

const READY_DEADLINE: Duration = Duration::from_secs(60);
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

/// The hub's JSON log lines that hold `needle`, parsed.
fn json_lines_with(log: &std::path::Path, needle: &str) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    Ok(text.lines().filter(|l| l.contains(needle)).filter_map(|l| serde_json::from_str(l).ok()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agency_call_s_trace_id_reaches_the_hub_s_log_line_for_its_events() -> Result<()> {
    let nats = NatsServer::start().await?;
    let mut hub = HubProcess::spawn(&nats.url())?;
    hub.wait_ready(READY_DEADLINE).await?;
    // The per-event lines are DEBUG (docs/OPERATIONS.md, "Following a
    // trace"): restart the hub with them on.
    hub.terminate().await?;
    hub.process().env("MPP_LOG", "info,mpp_ledger::ingest=debug");
    hub.start()?;
    hub.wait_ready(READY_DEADLINE).await?;
    let mut dukcapil = AgencyProcess::spawn_dukcapil(&nats.url(), "1771")?;
    dukcapil.wait_listening(READY_DEADLINE).await?;

    let mut c = client(&dukcapil)?;
    let mut req = tonic::Request::new(permohonan("", dk::Layanan::Kk));
    req.metadata_mut().insert("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01").parse()?);
    let answer = c.ajukan_permohonan(req).await.context("AjukanPermohonan")?.into_inner();
    ensure!(answer.event_ids.len() == 2, "case_opened and application_filed: {:?}", answer.event_ids);
    println!("trace {TRACE_ID}: agency call answered events {:?}", answer.event_ids);

    // The hub: one line per event, with the caller's trace id, once the
    // event is in the log.
    let log = hub.process().log_path().to_owned();
    let lines = wait_for("the hub's log lines of the traced events", READY_DEADLINE, || {
        let (log, ids) = (log.clone(), answer.event_ids.clone());
        async move {
            let lines = json_lines_with(&log, TRACE_ID)?;
            let all = ids.iter().all(|id| lines.iter().any(|l| l["fields"]["event_id"] == id.as_str()));
            Ok(all.then_some(lines))
        }
    })
    .await?;
    for l in &lines {
        ensure!(l["fields"]["trace_id"] == TRACE_ID, "the line's own field: {l}");
        ensure!(
            l["span"]["trace_id"] == TRACE_ID && l["span"]["name"] == "ingest",
            "in the ingest span: {l}"
        );
        ensure!(l["fields"]["parent_span_id"] != CALLER_SPAN_ID, "the agency's RPC span is the parent: {l}");
        println!("hub: {l}");
    }
    // The agency: its RPC span (a child of the caller's) on its own line,
    // and the parent of the hub's lines.
    let agency_lines = json_lines_with(dukcapil.process().log_path(), TRACE_ID)?;
    let filed = agency_lines
        .iter()
        .find(|l| l["fields"]["message"] == "Application filed")
        .with_context(|| format!("no agency line in the trace: {agency_lines:?}"))?;
    let span = filed["spans"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "trace"))
        .with_context(|| format!("no trace span: {filed}"))?;
    ensure!(span["trace_id"] == TRACE_ID && span["span_id"] != CALLER_SPAN_ID, "{filed}");
    ensure!(
        lines.iter().all(|l| l["fields"]["parent_span_id"] == span["span_id"]),
        "the agency's span is the parent"
    );
    println!("agency: {filed}");
    Ok(())
}
