//! Optional export of spans over OTLP (`--otlp-endpoint`, off by default),
//! the same for the hub, every agency service and the front office.
//!
//! Without the flag nothing of this is installed: the process's subscriber
//! is exactly [`crate::log::init`]'s, and [`continue_trace`] returns at its
//! first load of a flag, so a hot path that calls it pays one relaxed
//! atomic load.
//!
//! With it, the log subscriber gains a second layer (tracing-opentelemetry)
//! whose spans go through a batch processor to an OTLP/gRPC exporter
//! (tonic, the workspace's own) at the endpoint, with `service.name` set to
//! the binary's name as a resource attribute. What is exported:
//! [`OTLP_SPAN_FILTER`] (every span at INFO and above, and the hub's
//! per-event `ingest` spans at DEBUG), whatever `MPP_LOG` says about log
//! lines; the events inside those spans become span events.
//!
//! Bounds: at most [`OTLP_QUEUE_SPANS_MAX`] spans wait for export; a span
//! ended while the queue is full is dropped and counted, never waited for,
//! so an unreachable or slow collector never blocks or slows an RPC or the
//! ingest. One export (with its retries) takes at most
//! [`OTLP_EXPORT_TIMEOUT_MS`]; its spans are dropped and counted when it
//! fails. The flush at shutdown ([`Telemetry::shutdown`]) waits at most
//! [`OTLP_SHUTDOWN_MS_MAX`]. Exported and dropped spans are counted in
//! [`mpp_obs::process::SPAN_EXPORTS`] (`mpp_otlp_spans_*_total` on every
//! `/metrics`).
//!
//! The trace ids are the W3C ones of [`crate::trace`]: [`continue_trace`]
//! makes a span the child of a `traceparent` (the caller's, or the NATS
//! header's) and hands back the span's own `traceparent` to send on.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry::Context;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

use crate::log::{LogArgs, LogFormat, LogInitError};
use crate::trace::TraceParent;

/// Most spans waiting for export (queued or being exported); a span ended
/// beyond it is dropped and counted.
pub const OTLP_QUEUE_SPANS_MAX: usize = 2_048;

/// Most spans in one export request.
pub const OTLP_EXPORT_BATCH_SPANS_MAX: usize = 512;

/// How long a span may wait for its batch to fill before the batch is sent,
/// in milliseconds.
pub const OTLP_BATCH_DELAY_MS: u64 = 1_000;

/// Longest one export request may take, retries included, in milliseconds;
/// then its spans are dropped and counted.
pub const OTLP_EXPORT_TIMEOUT_MS: u64 = 5_000;

/// Longest the flush at shutdown may take, in milliseconds (it fits in the
/// 30-second termination grace period with the servers' own drains).
pub const OTLP_SHUTDOWN_MS_MAX: u64 = 5_000;

/// Longest `--otlp-endpoint` accepted, in bytes.
pub const OTLP_ENDPOINT_BYTES_MAX: usize = 1_024;

/// Which spans are exported (tracing's `Targets` syntax): everything at
/// INFO and above, the hub's per-event ingest spans at DEBUG; never the
/// exporter's own stack (no span about exporting spans).
pub const OTLP_SPAN_FILTER: &str = "info,mpp_ledger::ingest=debug,opentelemetry=off,opentelemetry_sdk=off,\
                                    opentelemetry_otlp=off,tonic=off,h2=off,hyper=off,tower=off";

/// Whether the exporter is installed (set once, by [`init`]).
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The `--otlp-endpoint` flag, the same on every binary that has it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OtlpArgs {
    /// Export spans over OTLP/gRPC to this collector (`http://host:4317`),
    /// with `service.name` = the binary's name; an agency RPC's span and
    /// the hub's span for each of its events share the caller's W3C trace.
    /// Off when absent. A slow or unreachable collector never slows a call:
    /// spans beyond a bounded queue are dropped and counted
    /// (mpp_otlp_spans_dropped_total).
    #[arg(long, env = "MPP_OTLP_ENDPOINT", value_parser = parse_endpoint)]
    pub otlp_endpoint: Option<String>,
}

/// Accepts an `http://` URL of at most [`OTLP_ENDPOINT_BYTES_MAX`] bytes
/// that tonic can connect to.
fn parse_endpoint(s: &str) -> Result<String, String> {
    if s.len() > OTLP_ENDPOINT_BYTES_MAX {
        return Err(format!("longer than {OTLP_ENDPOINT_BYTES_MAX} bytes"));
    }
    if !s.starts_with("http://") {
        return Err(
            "must be an http:// URL (OTLP over gRPC without TLS: run the collector beside the process)"
                .into(),
        );
    }
    tonic::transport::Endpoint::from_shared(s.to_owned()).map_err(|e| format!("not a usable URL: {e}"))?;
    Ok(s.to_owned())
}

/// Why logging and export could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryInitError {
    /// The log subscriber (see [`crate::log`]).
    #[error(transparent)]
    Log(#[from] LogInitError),
    /// The exporter could not be built.
    #[error("cannot set up the OTLP exporter for {endpoint}: {error}")]
    Exporter {
        /// `--otlp-endpoint`.
        endpoint: String,
        /// What went wrong.
        error: String,
    },
}

/// The process's span export, to shut down (flush) when the process stops.
/// Dropping it flushes too; [`Self::shutdown`] says when it is done.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans still queued, waiting at most
    /// [`OTLP_SHUTDOWN_MS_MAX`]; those not sent by then are counted as
    /// dropped. Blocks the calling thread: call it last, after the servers
    /// stopped.
    pub fn shutdown(mut self) {
        self.flush();
    }

    fn flush(&mut self) {
        let Some(provider) = self.provider.take() else { return };
        if let Err(e) = provider.shutdown_with_timeout(Duration::from_millis(OTLP_SHUTDOWN_MS_MAX)) {
            tracing::warn!(error = %e, "Span export not flushed at shutdown");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Installs the process's subscriber: [`crate::log::init`] exactly when
/// `otlp` has no endpoint; with one, the same log lines plus the export of
/// spans as `service_name` (see the module docs). Call once, first thing in
/// `main`, inside the tokio runtime (the exporter's connection lives on it).
pub fn init(
    log: &LogArgs,
    default_filter: &str,
    otlp: &OtlpArgs,
    service_name: &str,
) -> Result<(LogFormat, Telemetry), TelemetryInitError> {
    let Some(endpoint) = &otlp.otlp_endpoint else {
        return Ok((crate::log::init(log, default_filter)?, Telemetry { provider: None }));
    };
    let exporter_error = |error: String| TelemetryInitError::Exporter { endpoint: endpoint.clone(), error };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .with_timeout(Duration::from_millis(OTLP_EXPORT_TIMEOUT_MS))
        .build()
        .map_err(|e| exporter_error(e.to_string()))?;
    let in_flight = Arc::new(AtomicU64::new(0));
    let batch = BatchSpanProcessor::builder(Counted { inner: exporter, in_flight: Arc::clone(&in_flight) })
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(OTLP_QUEUE_SPANS_MAX)
                .with_max_export_batch_size(OTLP_EXPORT_BATCH_SPANS_MAX)
                .with_scheduled_delay(Duration::from_millis(OTLP_BATCH_DELAY_MS))
                .build(),
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(Bounded { inner: batch, in_flight })
        .with_resource(Resource::builder_empty().with_service_name(service_name.to_owned()).build())
        .build();
    let tracer = provider.tracer(service_name.to_owned());
    let spans: tracing_subscriber::filter::Targets =
        OTLP_SPAN_FILTER.parse().map_err(|e| exporter_error(format!("{OTLP_SPAN_FILTER}: {e}")))?;
    let otel = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(spans);
    let (format, fmt) = crate::log::layer(log, default_filter)?;
    tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|e| LogInitError::Install(e.to_string()))?;
    INSTALLED.store(true, Ordering::Release);
    tracing::info!(endpoint = %endpoint, service_name, "Span export to OTLP started");
    Ok((format, Telemetry { provider: Some(provider) }))
}

/// Whether spans are exported (`--otlp-endpoint` was given to [`init`]).
pub fn exporting() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

/// Makes `span` (not yet entered) the child of `parent` in the exported
/// trace, or the root of a new trace without one, and returns the span's
/// own `traceparent` as exported, for the next hop. `None`, at the cost
/// of one atomic load, when spans are not exported (or `span` is not).
pub fn continue_trace(span: &tracing::Span, parent: Option<&TraceParent>) -> Option<TraceParent> {
    if !exporting() || span.is_disabled() {
        return None;
    }
    if let Some(p) = parent {
        let remote = SpanContext::new(
            TraceId::from_bytes(p.trace_id()),
            SpanId::from_bytes(p.span_id()),
            TraceFlags::new(p.flags()),
            true,
            TraceState::default(),
        );
        // Refused only for a span already started or not exported, which
        // then keeps a trace of its own.
        let _ = span.set_parent(Context::new().with_remote_span_context(remote));
    }
    let cx = span.context();
    let own = cx.span().span_context().clone();
    if !own.is_valid() {
        return None;
    }
    TraceParent::from_parts(own.trace_id().to_bytes(), own.span_id().to_bytes(), own.trace_flags().to_u8())
}

/// The exporter, counting what it exported and dropped and what left the
/// queue (see [`Bounded`]).
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    /// Spans accepted by [`Bounded`] and not yet through an export.
    in_flight: Arc<AtomicU64>,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let result = self.inner.export(batch).await;
        let counts = &mpp_obs::process::SPAN_EXPORTS;
        match &result {
            Ok(()) => counts.exported.fetch_add(n, Ordering::Relaxed),
            Err(_) => counts.dropped.fetch_add(n, Ordering::Relaxed),
        };
        // Saturating: a flush that timed out at shutdown already set the
        // count to 0 (and counted what it held as dropped).
        let _ =
            self.in_flight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| Some(v.saturating_sub(n)));
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The batch processor behind a count of the spans it holds: a span
/// beyond [`OTLP_QUEUE_SPANS_MAX`] is dropped (and counted) here, so the
/// batch processor's own queue, of the same size, never fills and every
/// dropped span is counted.
#[derive(Debug)]
struct Bounded {
    inner: BatchSpanProcessor,
    in_flight: Arc<AtomicU64>,
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        let admitted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < OTLP_QUEUE_SPANS_MAX as u64).then_some(n + 1)
            })
            .is_ok();
        if admitted {
            self.inner.on_end(span);
        } else {
            mpp_obs::process::SPAN_EXPORTS.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let result = self.inner.shutdown_with_timeout(timeout);
        // What is still held was not sent in time: dropped.
        let left = self.in_flight.swap(0, Ordering::AcqRel);
        mpp_obs::process::SPAN_EXPORTS.dropped.fetch_add(left, Ordering::Relaxed);
        result
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_an_http_url_of_bounded_length() {
        assert!(parse_endpoint("http://127.0.0.1:4317").is_ok());
        assert!(parse_endpoint("http://otel-collector.monitoring:4317").is_ok());
        for bad in ["", "127.0.0.1:4317", "https://collector:4317", "grpc://x:1", "http://[::1", "http://a b"]
        {
            assert!(parse_endpoint(bad).is_err(), "{bad:?}");
        }
        let long = format!("http://{}.example:4317", "a".repeat(OTLP_ENDPOINT_BYTES_MAX));
        assert!(parse_endpoint(&long).unwrap_err().contains("longer than"));
    }

    #[test]
    fn the_span_filter_parses() {
        let f: tracing_subscriber::filter::Targets = OTLP_SPAN_FILTER.parse().unwrap();
        assert!(f.would_enable("mpp_ledger::ingest", &tracing::Level::DEBUG));
        assert!(f.would_enable("mpp_agency_kit::trace", &tracing::Level::INFO));
        assert!(!f.would_enable("mpp_ledger::ledger", &tracing::Level::DEBUG));
        assert!(!f.would_enable("opentelemetry_sdk", &tracing::Level::ERROR));
        assert!(!f.would_enable("h2::codec", &tracing::Level::INFO));
    }

    #[test]
    fn without_the_exporter_no_span_continues_a_trace() {
        let parent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(continue_trace(&tracing::info_span!("x"), Some(&parent)), None);
    }
}
