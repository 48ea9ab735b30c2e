//! One trace across the hop: an agency RPC called with a W3C `traceparent`
//! → the agency's RPC span → its outbox entry → the NATS message header →
//! the hub's ingest span and its JSON log line for each of the call's
//! events, all with the caller's trace id; with `--otlp-endpoint`, the
//! same spans exported over OTLP to a collector (here a tiny one inside the
//! test), and a call that still succeeds when no collector answers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{ensure, Context, Result};
use mpp_proto::agency::dukcapil::v1 as dk;
use mpp_tests::dukcapil::{client, permohonan};
use mpp_tests::services::{nats_and_hub, AgencyOptions, HubOptions};
use mpp_tests::{wait_for, AgencyProcess, HubProcess, NatsServer, READY_DEADLINE};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

/// The hub's JSON log lines that hold `needle`, parsed.
fn json_lines_with(log: &std::path::Path, needle: &str) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    Ok(text.lines().filter(|l| l.contains(needle)).filter_map(|l| serde_json::from_str(l).ok()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agency_call_s_trace_id_reaches_the_hub_s_log_line_for_its_events() -> Result<()> {
    let (nats, mut hub) = nats_and_hub(READY_DEADLINE).await?;
    // The per-event lines are DEBUG (docs/OPERATIONS.md, "Following a
    // trace"): restart the hub with them on.
    hub.terminate().await?;
    hub.process().env("MPP_LOG", "info,mpp_ledger::ingest=debug");
    hub.start()?;
    hub.wait_ready(READY_DEADLINE).await?;
    let mut dukcapil = AgencyProcess::spawn_dukcapil(&nats.url(), "1771")?;
    dukcapil.wait_listening(READY_DEADLINE).await?;

    let answer = traced_filing(&dukcapil).await?;
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
    // The front office opened the walk-in's case in the same trace, in its
    // own span (the agency's call's child).
    let front = dukcapil.companion().context("the walk-in's front office")?;
    let front_lines = json_lines_with(front.process().log_path(), TRACE_ID)?;
    let opened = front_lines
        .iter()
        .find(|l| l["fields"]["message"] == "Case opened for an agency's walk-in citizen")
        .with_context(|| format!("no front office line in the trace: {front_lines:?}"))?;
    let front_span = opened["spans"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "trace"))
        .with_context(|| format!("no trace span: {opened}"))?;
    ensure!(front_span["trace_id"] == TRACE_ID && front_span["span_id"] != span["span_id"], "{opened}");
    // The hub's line of the filing has the agency's span as its parent,
    // that of the opening the front office's.
    for (id, parent) in [(&answer.event_ids[0], front_span), (&answer.event_ids[1], span)] {
        let line = lines
            .iter()
            .find(|l| l["fields"]["event_id"] == id.as_str())
            .with_context(|| format!("no hub line of {id}"))?;
        ensure!(line["fields"]["parent_span_id"] == parent["span_id"], "{line} is not the child of {parent}");
    }
    println!("agency: {filed}");
    println!("front office: {opened}");
    Ok(())
}

/// One span as the collector received it.
#[derive(Debug, Clone)]
struct Received {
    /// The resource's `service.name`.
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

/// A tiny OTLP/gRPC collector: `TraceService/Export` on a free loopback
/// port, keeping every span it is sent.
#[derive(Debug, Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut kept = self.spans.lock().map_err(|_| tonic::Status::internal("poisoned"))?;
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                kept.push(Received {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex::encode(span.trace_id),
                    span_id: hex::encode(span.span_id),
                    parent_span_id: hex::encode(span.parent_span_id),
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

impl Collector {
    /// Serves on a free loopback port until the test ends; returns the
    /// collector and its `--otlp-endpoint`.
    async fn start() -> Result<(Self, String)> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let collector = Self::default();
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        tokio::spawn(server);
        Ok((collector, endpoint))
    }

    /// The spans received so far of the trace `trace_id`.
    fn of_trace(&self, trace_id: &str) -> Vec<Received> {
        let spans = self.spans.lock().map(|s| s.clone()).unwrap_or_default();
        spans.into_iter().filter(|s| s.trace_id == trace_id).collect()
    }
}

/// Files a KK application at `agency` in the caller's trace
/// (`traceparent` with [`TRACE_ID`] and [`CALLER_SPAN_ID`]): a walk-in, so
/// two events: the front office's opening of the case, and the application.
async fn traced_filing(agency: &AgencyProcess) -> Result<dk::PermohonanDiterima> {
    let mut req = tonic::Request::new(permohonan("", dk::Layanan::Kk));
    req.metadata_mut().insert("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01").parse()?);
    let answer = client(agency)?.ajukan_permohonan(req).await.context("AjukanPermohonan")?.into_inner();
    ensure!(answer.event_ids.len() == 2, "case_opened and application_filed: {:?}", answer.event_ids);
    ensure!(!answer.pin.is_empty(), "a walk-in's PIN: {answer:?}");
    Ok(answer)
}

fn otlp_args(endpoint: &str) -> Vec<String> {
    vec!["--otlp-endpoint".to_owned(), endpoint.to_owned()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_spans_of_the_agency_and_the_hub_share_the_caller_s_trace() -> Result<()> {
    let (collector, endpoint) = Collector::start().await?;
    let nats = NatsServer::start().await?;
    let hub_options = HubOptions { extra_args: otlp_args(&endpoint), ..HubOptions::default() };
    let mut hub = HubProcess::spawn_with(&nats.url(), hub_options)?;
    hub.wait_ready(READY_DEADLINE).await?;
    // The front office that opens the walk-in's case exports its spans too.
    let options = AgencyOptions {
        extra_args: otlp_args(&endpoint),
        companion_args: otlp_args(&endpoint),
        ..AgencyOptions::region("1771")
    };
    let mut dukcapil = AgencyProcess::spawn("mpp-dukcapil", &nats.url(), options)?;
    dukcapil.wait_listening(READY_DEADLINE).await?;

    traced_filing(&dukcapil).await?;

    // The agency's RPC span, the front office's span of the opening it
    // asked for, and the hub's span for each of the call's two events, at
    // the collector with the caller's trace id.
    let spans = wait_for("the agency's and the hub's spans at the collector", READY_DEADLINE, || {
        let spans = collector.of_trace(TRACE_ID);
        async move {
            let rpc = spans.iter().filter(|s| s.service == "mpp-dukcapil" && s.name == "trace").count();
            let front = spans.iter().filter(|s| s.service == "mpp-frontoffice" && s.name == "trace").count();
            let ingest = spans.iter().filter(|s| s.service == "mpp-hub" && s.name == "ingest").count();
            Ok((rpc == 1 && front == 1 && ingest == 2).then_some(spans))
        }
    })
    .await?;
    for s in &spans {
        println!("collector: {s:?}");
    }
    let rpc = spans
        .iter()
        .find(|s| s.service == "mpp-dukcapil" && s.name == "trace")
        .context("the agency's RPC span")?;
    ensure!(rpc.parent_span_id == CALLER_SPAN_ID, "the RPC span is the caller's child: {rpc:?}");
    let front = spans
        .iter()
        .find(|s| s.service == "mpp-frontoffice" && s.name == "trace")
        .context("the front office's RPC span")?;
    ensure!(
        front.parent_span_id == rpc.span_id,
        "the front office's span is the RPC span's child: {front:?}"
    );
    // The filing's ingest is the agency's RPC span's child, the opening's
    // the front office's.
    let mut parents: Vec<&str> =
        spans.iter().filter(|s| s.service == "mpp-hub").map(|s| s.parent_span_id.as_str()).collect();
    parents.sort_unstable();
    let mut want = vec![rpc.span_id.as_str(), front.span_id.as_str()];
    want.sort_unstable();
    ensure!(
        parents == want,
        "the hub's spans' parents {parents:?}, expected the agency's and the front office's"
    );
    // The ids exported are the ids logged: the agency's log line carries
    // its exported span id.
    let agency_lines = json_lines_with(dukcapil.process().log_path(), TRACE_ID)?;
    ensure!(
        agency_lines.iter().any(|l| l["spans"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["name"] == "trace" && s["span_id"] == rpc.span_id.as_str()))),
        "the agency logs the exported span id {}: {agency_lines:?}",
        rpc.span_id
    );
    println!(
        "trace {TRACE_ID}: caller {CALLER_SPAN_ID} -> mpp-dukcapil {} (-> mpp-frontoffice {} -> mpp-hub ingest) -> mpp-hub ingest",
        rpc.span_id,
        front.span_id
    );
    Ok(())
}

/// `name`'s value on a `/metrics` page, if the series is there.
fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_stops_no_call_and_no_ingest_and_its_spans_are_counted() -> Result<()> {
    // Nothing listens there.
    let endpoint = format!("http://{}", mpp_tests::ports::free_addr()?);
    let nats = NatsServer::start().await?;
    let hub_options = HubOptions { extra_args: otlp_args(&endpoint), ..HubOptions::default() };
    let mut hub = HubProcess::spawn_with(&nats.url(), hub_options)?;
    hub.wait_ready(READY_DEADLINE).await?;
    let metrics_addr = mpp_tests::ports::free_addr()?;
    let mut extra_args = otlp_args(&endpoint);
    extra_args.extend(["--metrics-addr".to_owned(), metrics_addr.to_string()]);
    let options = AgencyOptions { extra_args, ..AgencyOptions::region("1771") };
    let mut dukcapil = AgencyProcess::spawn("mpp-dukcapil", &nats.url(), options)?;
    dukcapil.wait_listening(READY_DEADLINE).await?;

    traced_filing(&dukcapil).await.context("with no collector")?;
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await?);
    let last = mpp_tests::envelope::stream_last_seq(&js).await?;
    hub.wait_caught_up(last, READY_DEADLINE).await?;

    // Both processes tried, failed and counted the spans they dropped.
    for (who, addr) in [("mpp-dukcapil", metrics_addr), ("mpp-hub", hub.http_addr())] {
        let dropped = wait_for(&format!("{who} to count dropped spans"), READY_DEADLINE, || async move {
            let page = mpp_tests::http::get(addr, "/metrics").await?.text();
            let dropped = metric(&page, "mpp_otlp_spans_dropped_total").context("no dropped-spans series")?;
            let exported =
                metric(&page, "mpp_otlp_spans_exported_total").context("no exported-spans series")?;
            ensure!(exported == 0.0, "{who} exported to nowhere: {exported}");
            Ok((dropped >= 1.0).then_some(dropped))
        })
        .await?;
        println!("{who}: mpp_otlp_spans_dropped_total {dropped}");
    }
    Ok(())
}
