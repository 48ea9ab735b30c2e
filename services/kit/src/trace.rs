//! Each RPC's trace (W3C Trace Context, [`mpp_edge::trace`]): the gRPC
//! server's layer ([`layer`]) takes the caller's `traceparent` metadata, or
//! starts a trace when there is none or it is malformed, opens the RPC's span
//! (`trace`, with `trace_id` and `span_id`) and keeps its own `traceparent` for the call in a
//! task-local. With `--otlp-endpoint` the span is exported as the caller's
//! child ([`mpp_edge::otlp::continue_trace`]) and its exported ids are the
//! ones logged and sent on. The publishers read it there ([`current`]): the outbox stores
//! it with each entry and the relay sends it as the NATS header
//! `traceparent`, where the hub's ingest picks it up.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use mpp_edge::trace::{TraceParent, TRACEPARENT_HEADER};
use ring::rand::{SecureRandom, SystemRandom};
use tracing::Instrument as _;

tokio::task_local! {
    static CURRENT: TraceParent;
}

/// The `traceparent` of the RPC being served, if the caller runs inside one.
pub fn current() -> Option<TraceParent> {
    CURRENT.try_with(|t| *t).ok()
}

/// Runs `f` as part of the trace `t` (for tests and callers outside gRPC).
pub async fn scope<F: std::future::Future>(t: TraceParent, f: F) -> F::Output {
    CURRENT.scope(t, f).await
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The OS generator does not fail on a running Linux; an all-zero id is
    // refused below and the RPC then goes on untraced.
    let _ = SystemRandom::new().fill(&mut b);
    b
}

/// This RPC's span: a child of the caller's `traceparent`, or a new trace.
fn rpc_trace(incoming: Option<&str>) -> Option<TraceParent> {
    rpc_trace_under(incoming.and_then(TraceParent::parse))
}

/// [`rpc_trace`] of a parsed `traceparent`.
fn rpc_trace_under(parent: Option<TraceParent>) -> Option<TraceParent> {
    match parent {
        Some(parent) => parent.child(random()),
        None => TraceParent::root(random()),
    }
}

/// The layer's function: see the module docs.
async fn trace_rpc(req: Request, next: Next) -> Response {
    let incoming = req.headers().get(TRACEPARENT_HEADER).and_then(|v| v.to_str().ok());
    if mpp_edge::otlp::exporting() {
        return trace_exported_rpc(incoming.and_then(TraceParent::parse), req, next).await;
    }
    let Some(trace) = rpc_trace(incoming) else { return next.run(req).await };
    let span = tracing::info_span!("trace", trace_id = %trace.trace_id_hex(), span_id = %trace.span_id_hex(), path = %req.uri().path());
    CURRENT.scope(trace, next.run(req).instrument(span)).await
}

/// [`trace_rpc`] with `--otlp-endpoint`: the span is exported as the
/// caller's child, and its exported ids are the ones logged and sent on, so
/// the hub's span for each event is this span's child.
async fn trace_exported_rpc(parent: Option<TraceParent>, req: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "trace",
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
        path = %req.uri().path()
    );
    let trace = mpp_edge::otlp::continue_trace(&span, parent.as_ref()).or_else(|| rpc_trace_under(parent));
    let Some(trace) = trace else { return next.run(req).await };
    span.record("trace_id", tracing::field::display(trace.trace_id_hex()));
    span.record("span_id", tracing::field::display(trace.span_id_hex()));
    CURRENT.scope(trace, next.run(req).instrument(span)).await
}

/// Adds the tracing layer to every service of `routes` so far.
pub fn layer(mut routes: tonic::service::Routes) -> tonic::service::Routes {
    let router = std::mem::take(routes.axum_router_mut());
    *routes.axum_router_mut() = router.layer(axum::middleware::from_fn(trace_rpc));
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rpc_continues_the_caller_s_trace_or_starts_one() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = rpc_trace(Some(parent)).unwrap();
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(t.span_id_hex(), "00f067aa0ba902b7", "a span of its own");
        for bad in [None, Some("garbage"), Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01")] {
            let t = rpc_trace(bad).unwrap();
            assert_ne!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        }
    }

    #[tokio::test]
    async fn current_is_the_scope_s_trace() {
        assert!(current().is_none());
        let t = rpc_trace(None).unwrap();
        assert_eq!(scope(t, async { current() }).await, Some(t));
    }
}
