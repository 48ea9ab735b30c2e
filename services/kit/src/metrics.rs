//! A tiny `/metrics` endpoint in the Prometheus text format (version 0.0.4),
//! served with a plain [`TcpListener`] (over TLS when the service has a
//! certificate) and a hand-written HTTP/1.1 answer: one request per
//! connection, `GET /metrics`, and the probes `GET /healthz` (200 while the
//! process answers) and `GET /readyz` (200, or 503 naming why the outbox
//! cannot take calls: the check behind gRPC health's `NOT_SERVING`), for
//! orchestrators whose probes speak neither gRPC over TLS nor gRPC health.
//!
//! Metrics:
//!
//! | name | type | meaning |
//! |---|---|---|
//! | `mpp_outbox_depth` | gauge | events in the outbox, waiting for their PubAck |
//! | `mpp_outbox_bytes` | gauge | bytes of those events |
//! | `mpp_outbox_oldest_age_seconds` | gauge | age of the oldest waiting event (0 when empty) |
//! | `mpp_outbox_published_total` | counter | events acknowledged by JetStream |
//! | `mpp_outbox_batches_total` | counter | atomic batches acknowledged by JetStream |
//! | `mpp_outbox_publish_errors_total` | counter | failed publish attempts |
//! | `mpp_outbox_accepted_events_total` | counter | events accepted into the outbox |
//! | `mpp_outbox_flushes_total` | counter | group-commit flushes |
//! | `mpp_outbox_flush_seconds_total` | counter | time spent in them (transaction and sync) |
//! | `mpp_outbox_full_total` | counter | calls refused with `OUTBOX_FULL` |
//! | `mpp_auth_failures_total` | counter | calls refused with `UNAUTHENTICATED` |
//! | `mpp_agency_verdicts_total` | counter | the hub's verdicts on this service's events heard since start, by `verdict` (accepted, rejected, duplicate) and `reason` (the reason code of a rejection); only with `--hub-url` |
//! | `mpp_agency_verdict_cursor` | gauge | the hub log sequence up to which the verdict feed has been read; only with `--hub-url` |
//!
//! A service may add its own families ([`ExtraMetrics`], e.g. the front
//! office's notifications).
//!
//! Alert on `mpp_outbox_oldest_age_seconds`: it grows while JetStream does
//! not take events, and the outbox fills behind it.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mpp_obs::metrics::{header, single};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::outbox::OutboxStatus;

/// Most metrics connections served at once; more wait in the backlog.
pub const METRICS_CONNECTIONS_MAX: usize = 8;

/// Largest request head read, in bytes; a longer one is refused.
pub const METRICS_REQUEST_BYTES_MAX: usize = 8 * 1024;

/// Longest one metrics connection may take, in milliseconds.
pub const METRICS_CONNECTION_TIMEOUT_MS: u64 = 5_000;

/// A service's own metric families, written in the Prometheus text format
/// after the kit's (see [`crate::AgencyConfig::extra_metrics`]).
#[derive(Clone)]
pub struct ExtraMetrics(pub Arc<dyn Fn(&mut String) + Send + Sync>);

impl std::fmt::Debug for ExtraMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExtraMetrics")
    }
}

/// What the endpoint reports.
#[derive(Debug, Clone)]
pub struct MetricsSource {
    /// The outbox.
    pub outbox: OutboxStatus,
    /// Calls refused by authentication.
    pub auth_failures: Arc<AtomicU64>,
    /// The binary, for `mpp_build_info`.
    pub build: mpp_obs::process::BuildInfo,
    /// The verdicts heard back from the hub, when the service follows them.
    pub verdicts: Option<Arc<crate::verdicts::VerdictStore>>,
    /// The service's own families, if any.
    pub extra: Option<ExtraMetrics>,
}

/// The metrics text.
pub fn render(source: &MetricsSource) -> String {
    let s = source.outbox.snapshot();
    let mut out = String::with_capacity(1024);
    let mut metric =
        |name: &str, kind: &str, help: &str, value: String| single(&mut out, name, kind, help, value);
    metric(
        "mpp_outbox_depth",
        "gauge",
        "Events in the outbox waiting for their JetStream PubAck.",
        s.depth.to_string(),
    );
    metric("mpp_outbox_bytes", "gauge", "Bytes of the events waiting in the outbox.", s.bytes.to_string());
    metric(
        "mpp_outbox_oldest_age_seconds",
        "gauge",
        "Age of the oldest event waiting in the outbox (0 when empty).",
        format!("{:.3}", s.oldest_age_s),
    );
    metric(
        "mpp_outbox_published_total",
        "counter",
        "Events acknowledged by JetStream, duplicates included.",
        s.published_total.to_string(),
    );
    metric(
        "mpp_outbox_batches_total",
        "counter",
        "Atomic batches of outbox events acknowledged by JetStream (their events are in mpp_outbox_published_total).",
        s.batches_total.to_string(),
    );
    metric(
        "mpp_outbox_publish_errors_total",
        "counter",
        "Failed attempts to publish outbox events.",
        s.publish_errors_total.to_string(),
    );
    metric(
        "mpp_outbox_accepted_events_total",
        "counter",
        "Events accepted into the outbox.",
        s.accepted_events_total.to_string(),
    );
    metric(
        "mpp_outbox_flushes_total",
        "counter",
        "Group-commit flushes of the outbox.",
        s.flushes_total.to_string(),
    );
    metric(
        "mpp_outbox_flush_seconds_total",
        "counter",
        "Seconds spent in group-commit flushes of the outbox (transaction and sync).",
        (s.flush_us_total as f64 / 1e6).to_string(),
    );
    metric(
        "mpp_outbox_full_total",
        "counter",
        "Calls refused because the outbox was full.",
        s.full_total.to_string(),
    );
    metric(
        "mpp_auth_failures_total",
        "counter",
        "Calls refused because the caller presented no valid token.",
        source.auth_failures.load(Ordering::Relaxed).to_string(),
    );
    if let Some(store) = &source.verdicts {
        metric(
            "mpp_agency_verdict_cursor",
            "gauge",
            "Hub log sequence up to which the verdict feed has been read.",
            store.cursor().to_string(),
        );
        header(
            &mut out,
            "mpp_agency_verdicts_total",
            "counter",
            "The hub's verdicts on this service's events heard since start, by verdict and reason code.",
        );
        for (verdict, reason, n) in store.counts().snapshot() {
            let _ =
                writeln!(out, "mpp_agency_verdicts_total{{verdict=\"{verdict}\",reason=\"{reason}\"}} {n}");
        }
    }
    if let Some(extra) = &source.extra {
        (extra.0)(&mut out);
    }
    mpp_obs::process::render(&mut out, &source.build);
    out
}

/// Serves `/metrics` on `listener` until `shutdown` resolves.
pub async fn serve(listener: TcpListener, source: MetricsSource, shutdown: impl Future<Output = ()> + Send) {
    serve_with_tls(listener, source, None, shutdown).await
}

/// [`serve`], over TLS with `tls` when given (the service's own
/// certificate, see [`crate::tls`]). The handshake runs in the
/// connection's task, inside its [`METRICS_CONNECTION_TIMEOUT_MS`] and
/// under [`METRICS_CONNECTIONS_MAX`].
pub async fn serve_with_tls(
    listener: TcpListener,
    source: MetricsSource,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let permits = Arc::new(Semaphore::new(METRICS_CONNECTIONS_MAX));
    tracing::info!(addr = ?listener.local_addr().ok(), tls = tls.is_some(), "Metrics endpoint listening");
    let accept = async {
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else { return };
            match listener.accept().await {
                Ok((stream, _)) => {
                    let source = source.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let timeout = Duration::from_millis(METRICS_CONNECTION_TIMEOUT_MS);
                        let served = async {
                            match tls {
                                None => answer(stream, &source).await,
                                Some(tls) => match tls.accept(stream).await {
                                    Ok(stream) => answer(stream, &source).await,
                                    Err(e) => tracing::debug!(error = %e, "Metrics TLS handshake failed"),
                                },
                            }
                        };
                        if let Err(e) = tokio::time::timeout(timeout, served).await {
                            tracing::debug!(error = %e, "Metrics connection timed out");
                        }
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Accepting a metrics connection failed");
                    tokio::time::sleep(Duration::from_millis(crate::server::ACCEPT_ERROR_BACKOFF_MS)).await;
                }
            }
        }
    };
    tokio::select! {
        () = accept => {}
        () = shutdown => {}
    }
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, source: &MetricsSource) {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let complete = loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            break true;
        }
        if buf.len() > METRICS_REQUEST_BYTES_MAX {
            break false;
        }
    };
    let first_line = buf.split(|&b| b == b'\r').next().unwrap_or(&[]);
    let mut parts = first_line.split(|&b| b == b' ');
    let (method, target) = (parts.next().unwrap_or(&[]), parts.next().unwrap_or(&[]));
    let path = target.split(|&b| b == b'?').next().unwrap_or(&[]);
    let (status, body) = if !complete {
        ("400 Bad Request", "bad request\n".to_owned())
    } else if !matches!(path, b"/metrics" | b"/healthz" | b"/readyz") {
        ("404 Not Found", "served here: /metrics, /healthz, /readyz\n".to_owned())
    } else if method != b"GET" && method != b"HEAD" {
        ("405 Method Not Allowed", "use GET\n".to_owned())
    } else if path == b"/healthz" {
        ("200 OK", "ok\n".to_owned())
    } else if path == b"/readyz" {
        // The same check as gRPC health: can the outbox take calls?
        match source.outbox.accepting() {
            Ok(()) => ("200 OK", "ready\n".to_owned()),
            Err(why) => ("503 Service Unavailable", format!("not ready: {why}\n")),
        }
    } else {
        ("200 OK", render(source))
    };
    let content_type = if status.starts_with("200") {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != b"HEAD" {
        response.push_str(&body);
    }
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::{Outbox, OutboxConfig};
    use crate::tls::test_pki::http_get;

    #[tokio::test]
    async fn the_probes_follow_the_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let outbox =
            Outbox::open(OutboxConfig::new(dir.path()), Arc::new(crate::event::SystemClock)).unwrap();
        let source = MetricsSource {
            outbox: outbox.status(),
            auth_failures: Arc::default(),
            build: mpp_obs::process::BuildInfo::new("mpp-test"),
            verdicts: None,
            extra: None,
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(serve(listener, source, async {
            let _ = stopped.await;
        }));
        assert_eq!(http_get(addr, "/healthz").await.unwrap(), (200, "ok\n".to_owned()));
        assert_eq!(http_get(addr, "/readyz").await.unwrap(), (200, "ready\n".to_owned()));
        let (status, body) = http_get(addr, "/metrics").await.unwrap();
        assert!(status == 200 && body.contains("mpp_outbox_depth 0"), "{status} {body}");
        assert!(body.contains("mpp_build_info{binary=\"mpp-test\",version=\""), "{body}");
        assert!(body.contains("\nprocess_resident_memory_bytes "), "{body}");
        assert_eq!(http_get(addr, "/nope").await.unwrap().0, 404);
        // A closed outbox takes no calls: not ready, still alive.
        let _ = outbox.shutdown(Duration::ZERO).await;
        let (status, body) = http_get(addr, "/readyz").await.unwrap();
        assert_eq!((status, body.as_str()), (503, "not ready: the outbox is shutting down\n"));
        assert_eq!(http_get(addr, "/healthz").await.unwrap().0, 200);
        let _ = stop.send(());
        served.await.unwrap();
    }
}
