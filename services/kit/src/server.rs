//! Serving an agency's gRPC service: gRPC health and reflection alongside it,
//! bounded connections and requests, graceful shutdown.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::service::Routes;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::tls::ServerTls;

/// Most simultaneous gRPC connections. Further clients wait in the listen
/// backlog until a connection closes: a burst of back-office clients pushes
/// back instead of exhausting file descriptors.
pub const GRPC_CONNECTIONS_MAX: usize = 256;

/// Most requests in flight on one connection (HTTP/2 streams served at once).
pub const GRPC_CONCURRENT_REQUESTS_PER_CONNECTION_MAX: usize = 64;

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
pub const ACCEPT_ERROR_BACKOFF_MS: u64 = 100;

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
    /// The transport failed.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves `routes` (the agency's service) on `listener` until `shutdown`
/// resolves, together with gRPC health (each of `serving` reported SERVING,
/// and NOT_SERVING once shutdown begins) and gRPC reflection over
/// `mpp_proto::FILE_DESCRIPTOR_SET`.
///
/// Limits: [`GRPC_CONNECTIONS_MAX`], [`GRPC_CONCURRENT_REQUESTS_PER_CONNECTION_MAX`],
/// [`GRPC_REQUEST_TIMEOUT_MS`]; the drain after shutdown is bounded by
/// [`SHUTDOWN_DRAIN_MS_MAX`].
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
/// handshakes bounded as [`crate::tls::tls_incoming`] says, and counted
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
    let routes = routes.add_service(health_service).add_service(reflection);

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
    let incoming = limited_incoming(listener, GRPC_CONNECTIONS_MAX);
    match tls {
        None => serve_incoming(routes, incoming, signal, began_rx).await,
        Some(tls) => {
            let incoming = crate::tls::tls_incoming(incoming, tls.acceptor(&[crate::tls::ALPN_H2]));
            serve_incoming(routes, incoming, signal, began_rx).await
        }
    }
}

/// Serves `routes` on the connections of `incoming` until `signal`, then
/// drains for at most [`SHUTDOWN_DRAIN_MS_MAX`] after `began` fires.
async fn serve_incoming<I, IO>(
    routes: Routes,
    incoming: I,
    signal: impl Future<Output = ()> + Send,
    began: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), ServeError>
where
    I: futures::Stream<Item = io::Result<IO>> + Send,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IO::ConnectInfo: Clone + Send + Sync + 'static,
{
    let server = Server::builder()
        .concurrency_limit_per_connection(GRPC_CONCURRENT_REQUESTS_PER_CONNECTION_MAX)
        .timeout(Duration::from_millis(GRPC_REQUEST_TIMEOUT_MS))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, signal);
    let drain_deadline = async move {
        if began.await.is_ok() {
            tokio::time::sleep(Duration::from_millis(SHUTDOWN_DRAIN_MS_MAX)).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        biased;
        r = server => r?,
        () = drain_deadline => {
            tracing::warn!(drain_ms_max = SHUTDOWN_DRAIN_MS_MAX, "Connections still open after the drain deadline; stopping anyway");
        }
    }
    tracing::info!("gRPC server stopped");
    Ok(())
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

/// A TCP connection that holds one of the [`GRPC_CONNECTIONS_MAX`] permits
/// until it is dropped.
#[derive(Debug)]
struct LimitedConn {
    io: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for LimitedConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedConn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl Connected for LimitedConn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// Accepts connections only while fewer than `max` are open.
fn limited_incoming(
    listener: TcpListener,
    max: usize,
) -> impl futures::Stream<Item = io::Result<LimitedConn>> + Send {
    let permits = Arc::new(Semaphore::new(max));
    futures::stream::unfold((listener, permits), |(listener, permits)| async move {
        // The semaphore is never closed, so acquiring only fails if it were.
        let permit = permits.clone().acquire_owned().await.ok()?;
        let item = match listener.accept().await {
            Ok((io, _peer)) => {
                if let Err(e) = io.set_nodelay(true) {
                    tracing::debug!(error = %e, "Cannot set TCP_NODELAY");
                }
                Ok(LimitedConn { io, _permit: permit })
            }
            Err(e) => {
                tracing::warn!(error = %e, "Accepting a gRPC connection failed");
                tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
                Err(e)
            }
        };
        Some((item, (listener, permits)))
    })
}
