//! Serving an agency's gRPC service: gRPC health and reflection alongside it,
//! bounded connections and requests, graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mpp_edge::conn::ConnLimits;
use mpp_edge::grpc_serve::{GrpcLimits, GRPC_CONTROL_REQUEST_BYTES_MAX};
use mpp_edge::listen::{grpc_tls_incoming, plain_incoming};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;
use tonic::transport::server::Connected;
use tonic_health::ServingStatus;

use crate::tls::ServerTls;

/// Most simultaneous gRPC connections (TLS handshakes in progress
/// included). A connection beyond it is closed at once, so the accept loop
/// never stalls; slow and silent clients are dropped by the timeouts of
/// [`mpp_edge::grpc_serve`] and [`mpp_edge::tls`], which free their places.
pub const GRPC_CONNECTIONS_MAX: usize = 1024;

/// Most simultaneous gRPC connections from one client address (IPv4 address
/// or IPv6 /64): a back office opens a handful; more are closed at once.
pub const GRPC_CONNECTIONS_PER_ADDRESS_MAX: usize = 64;

/// Most requests in flight on one connection (HTTP/2 streams served at once).
pub const GRPC_CONCURRENT_REQUESTS_PER_CONNECTION_MAX: u32 = 64;

/// Largest request an agency's or the front office's service decodes, in
/// bytes: the events a request becomes are at most
/// [`mpp_core::limits::MESSAGE_BYTES_MAX`]. Requests are only decoded after
/// the caller's token was checked.
pub const GRPC_REQUEST_BYTES_MAX: usize = 64 * 1024;

/// Longest a request may run, in milliseconds, before it fails with
/// `CANCELLED`. With the outbox a call waits for one group-commit flush (and,
/// under a burst, its place in the writer's queue); with the direct
/// [`crate::JetStreamPublisher`] it covers two events published with every
/// retry (2 × ≈ 9.6 s, see [`crate::publish::PUBLISH_RETRY_BACKOFF_MS`]).
pub const GRPC_REQUEST_TIMEOUT_MS: u64 = 30_000;

/// After the shutdown signal, how long open connections may drain, in
/// milliseconds, before the server stops anyway.
pub const SHUTDOWN_DRAIN_MS_MAX: u64 = 15_000;

/// Pause after a failed `accept` (e.g. out of file descriptors), in
/// milliseconds, so the accept loop does not spin.
pub const ACCEPT_ERROR_BACKOFF_MS: u64 = mpp_edge::conn::ACCEPT_ERROR_BACKOFF_MS;

/// The connection caps of an agency's gRPC listener.
pub fn conn_limits() -> ConnLimits {
    ConnLimits {
        connections_max: GRPC_CONNECTIONS_MAX,
        connections_per_address_max: GRPC_CONNECTIONS_PER_ADDRESS_MAX,
        ..ConnLimits::default()
    }
}

/// The per-connection limits of an agency's gRPC server: the edge's
/// defaults (first request, idle and age timeouts) with the agency's
/// streams and request timeout.
pub fn grpc_limits() -> GrpcLimits {
    GrpcLimits {
        streams_per_connection_max: GRPC_CONCURRENT_REQUESTS_PER_CONNECTION_MAX,
        request_timeout_ms: GRPC_REQUEST_TIMEOUT_MS,
        ..GrpcLimits::default()
    }
}

/// How often gRPC health asks the [`Readiness`] source, in milliseconds.
pub const HEALTH_POLL_MS: u64 = 1_000;

/// Whether the service can take calls right now, for gRPC health. The
/// outbox's [`crate::outbox::OutboxStatus`] is one: NOT_SERVING while it is
/// full, its last write failed, or it is shutting down.
pub trait Readiness: Send + Sync + std::fmt::Debug {
    /// `Ok` when calls can be taken, else why not.
    fn check(&self) -> Result<(), String>;
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The reflection service could not be built from the descriptor set.
    #[error("cannot build the gRPC reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Serves `routes` (the agency's service) on `listener` until `shutdown`
/// resolves, together with gRPC health (each of `serving` reported SERVING,
/// and NOT_SERVING once shutdown begins) and gRPC reflection over
/// `mpp_proto::FILE_DESCRIPTOR_SET`.
///
/// Limits: [`conn_limits`] and [`grpc_limits`]; the drain after shutdown is
/// bounded by [`SHUTDOWN_DRAIN_MS_MAX`].
pub async fn serve(
    routes: Routes,
    serving: &[&'static str],
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    serve_with_readiness(routes, serving, listener, shutdown, None).await
}

/// [`serve`], with the health of each of `serving` following `readiness`
/// (asked every [`HEALTH_POLL_MS`]; changes are logged): SERVING while it
/// says `Ok`, NOT_SERVING otherwise, and NOT_SERVING once shutdown begins.
/// The overall health (service name `""`) stays SERVING while the process
/// serves.
pub async fn serve_with_readiness(
    routes: Routes,
    serving: &[&'static str],
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    readiness: Option<Arc<dyn Readiness>>,
) -> Result<(), ServeError> {
    serve_with_transport(routes, serving, listener, shutdown, readiness, None).await
}

/// [`serve_with_readiness`], over TLS when `tls` is given (HTTP/2 by ALPN;
/// handshakes bounded as [`mpp_edge::tls::tls_incoming`] says, and counted
/// against [`GRPC_CONNECTIONS_MAX`] while they run).
pub async fn serve_with_transport(
    routes: Routes,
    serving: &[&'static str],
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    readiness: Option<Arc<dyn Readiness>>,
    tls: Option<&ServerTls>,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    for name in serving {
        health.set_service_status(*name, ServingStatus::Serving).await;
    }
    let poller = readiness.map(|r| tokio::spawn(follow_readiness(health.clone(), serving.to_vec(), r)));
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(mpp_proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let routes = routes
        .add_service(health_service.max_decoding_message_size(GRPC_CONTROL_REQUEST_BYTES_MAX))
        .add_service(reflection.max_decoding_message_size(GRPC_CONTROL_REQUEST_BYTES_MAX));
    // Every RPC in a trace of its own or its caller's (W3C traceparent).
    let routes = crate::trace::layer(routes);

    let local = listener.local_addr().ok();
    tracing::info!(addr = ?local, services = ?serving, tls = tls.is_some(), "gRPC server listening");

    let (began_tx, began_rx) = tokio::sync::oneshot::channel::<()>();
    let names: Vec<&'static str> = serving.to_vec();
    let signal = async move {
        shutdown.await;
        tracing::info!("Shutting down: draining gRPC connections");
        if let Some(poller) = poller {
            poller.abort();
        }
        for name in names {
            health.set_service_status(name, ServingStatus::NotServing).await;
        }
        let _ = began_tx.send(());
    };
    match tls {
        None => serve_incoming(routes, plain_incoming(listener, conn_limits()), signal, began_rx).await,
        Some(tls) => {
            serve_incoming(routes, grpc_tls_incoming(listener, tls, conn_limits()), signal, began_rx).await
        }
    }
    Ok(())
}

/// Serves `routes` on the connections of `incoming` until `signal`, then
/// drains for at most [`SHUTDOWN_DRAIN_MS_MAX`] after `began` fires.
async fn serve_incoming<I, IO>(
    routes: Routes,
    incoming: I,
    signal: impl Future<Output = ()> + Send,
    began: tokio::sync::oneshot::Receiver<()>,
) where
    I: futures::Stream<Item = IO> + Send,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = mpp_edge::grpc_serve::serve(routes, incoming, stop_rx, grpc_limits());
    let stop = async move {
        signal.await;
        let _ = stop_tx.send(true);
        // Keep the sender: the server watches it until it returns.
        std::future::pending::<()>().await;
    };
    let drain_deadline = async move {
        if began.await.is_ok() {
            tokio::time::sleep(Duration::from_millis(SHUTDOWN_DRAIN_MS_MAX)).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        biased;
        () = server => {}
        () = stop => {}
        () = drain_deadline => {
            tracing::warn!(drain_ms_max = SHUTDOWN_DRAIN_MS_MAX, "Connections still open after the drain deadline; stopping anyway");
        }
    }
    tracing::info!("gRPC server stopped");
}

/// Sets the health of `names` from `readiness`, every [`HEALTH_POLL_MS`].
async fn follow_readiness(
    health: tonic_health::server::HealthReporter,
    names: Vec<&'static str>,
    readiness: Arc<dyn Readiness>,
) {
    let mut was_ready = true;
    let mut tick = tokio::time::interval(Duration::from_millis(HEALTH_POLL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = readiness.check();
        if now.is_ok() == was_ready {
            continue;
        }
        was_ready = now.is_ok();
        let status = match &now {
            Ok(()) => {
                tracing::info!(services = ?names, "Service can take calls again: health SERVING");
                ServingStatus::Serving
            }
            Err(why) => {
                tracing::warn!(services = ?names, reason = %why, "Service cannot take calls: health NOT_SERVING");
                ServingStatus::NotServing
            }
        };
        for name in &names {
            health.set_service_status(*name, status).await;
        }
    }
}

/// The edge's one shutdown signal (ctrl-c, SIGTERM).
pub use mpp_edge::signal::shutdown_signal;
