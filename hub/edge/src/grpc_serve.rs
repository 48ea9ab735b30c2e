//! Serving the hub's gRPC services: HTTP/2 connections whose request streams
//! run inside the connection's own task.
//!
//! tonic's server (`tonic::transport::Server`) hands every request stream to
//! hyper's default executor, which spawns a tokio task per stream: each
//! answer then costs a task spawn, cross-thread wake-ups of the connection
//! task, and usually a `writev` of its own. Profiled at 20k lookups/s on
//! 2 cores (BENCHMARKS.md), that HTTP/2 plumbing took more of the hub's CPU
//! than the lookups. Here a connection's streams are futures owned by the
//! connection's task ([`ConnDriver`]): it runs the streams that are ready,
//! then lets the connection write everything they answered and read what
//! came in, so the answers to one read of requests leave in one write.
//!
//! The price: one connection's requests share one core. Clients wanting more
//! open more connections (as the HTTP/1.1 API already requires).
//!
//! Each connection serves the same [`Routes`] as tonic's server would, with
//! the peer's [`Connected::connect_info`] in every request's extensions (what
//! `Request::remote_addr` reads). tonic's per-request `grpc-timeout` is not
//! applied (a client's deadline still ends its own call); the server's own
//! [`GrpcLimits::request_timeout_ms`] is.
//!
//! Limits ([`GrpcLimits`]): a connection must send its first request within
//! [`GRPC_FIRST_REQUEST_TIMEOUT_MS`] (the HTTP/2 preface alone does not
//! count), is closed after [`GRPC_IDLE_TIMEOUT_MS`] without an open request
//! stream and after [`GRPC_CONNECTION_AGE_MAX_MS`] in any case (gracefully,
//! with [`GRPC_CLOSE_GRACE_MS`] for its calls); flow-control windows of
//! [`GRPC_STREAM_WINDOW_BYTES`] and [`GRPC_CONNECTION_WINDOW_BYTES`] bound
//! what a client sends ahead. The number of connections is the listener's
//! ([`crate::conn`]); how large a message each method decodes is set per
//! service by the caller (`max_decoding_message_size`).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use futures::stream::{FuturesUnordered, Stream, StreamExt};
use futures::task::AtomicWaker;
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::service::Routes;
use tonic::transport::server::Connected;
use tower::Service;
use tracing::{debug, error};

/// Default for [`GrpcLimits::streams_per_connection_max`]: concurrent
/// request streams per connection (HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`:
/// the client holds further calls back).
pub const GRPC_STREAMS_PER_CONNECTION_MAX: u32 = 256;

/// Largest gRPC health or reflection request decoded, in bytes (a service
/// or symbol name).
pub const GRPC_CONTROL_REQUEST_BYTES_MAX: usize = 4 * 1024;

/// Largest request header block, in bytes.
pub const GRPC_HEADER_LIST_BYTES_MAX: u32 = 16 * 1024;

/// Default for [`GrpcLimits::first_request_timeout_ms`]: longest a new
/// connection may take to send the HTTP/2 preface and its first request's
/// headers, in milliseconds, before it is closed.
pub const GRPC_FIRST_REQUEST_TIMEOUT_MS: u64 = 10_000;

/// Default for [`GrpcLimits::idle_timeout_ms`]: longest a connection may sit
/// with no request stream open, in milliseconds, before it is closed
/// (gracefully: HTTP/2 GOAWAY).
pub const GRPC_IDLE_TIMEOUT_MS: u64 = 5 * 60 * 1000;

/// Default for [`GrpcLimits::connection_age_max_ms`]: longest a connection
/// lives, in milliseconds; then it is closed gracefully (clients reconnect,
/// and a watch ends as it does at its own limit).
pub const GRPC_CONNECTION_AGE_MAX_MS: u64 = 60 * 60 * 1000;

/// After a graceful close (idle, age or stop), how long the calls in flight
/// may take to finish, in milliseconds, before the connection is dropped.
pub const GRPC_CLOSE_GRACE_MS: u64 = 30_000;

/// Default for [`GrpcLimits::request_timeout_ms`]: longest a call may take
/// to produce its answer (a streaming call: to start streaming), reading its
/// request included, in milliseconds; then it fails with `CANCELLED`.
pub const GRPC_REQUEST_TIMEOUT_MS: u64 = 10_000;

/// HTTP/2 flow-control window of one request stream, in bytes: what a
/// client may send on a stream before the server reads it.
pub const GRPC_STREAM_WINDOW_BYTES: u32 = 64 * 1024;

/// HTTP/2 flow-control window of a whole connection, in bytes.
pub const GRPC_CONNECTION_WINDOW_BYTES: u32 = 256 * 1024;

/// How often an idle connection is pinged, and how long the answer may take
/// before the connection is dropped (a vanished client holding a
/// `WatchCase` stream would otherwise keep it open until TCP gives up).
pub const GRPC_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
/// See [`GRPC_KEEPALIVE_INTERVAL`].
pub const GRPC_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Rounds of "run the ready streams, then the connection" in one poll of a
/// connection's task before it yields to the other tasks of its worker.
const DRIVER_ROUNDS_PER_POLL_MAX: usize = 16;

/// The per-connection limits of a gRPC server (the number of connections is
/// the listener's, [`crate::conn::ConnLimits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcLimits {
    /// Concurrent request streams per connection.
    pub streams_per_connection_max: u32,
    /// See [`GRPC_FIRST_REQUEST_TIMEOUT_MS`].
    pub first_request_timeout_ms: u64,
    /// See [`GRPC_IDLE_TIMEOUT_MS`].
    pub idle_timeout_ms: u64,
    /// See [`GRPC_CONNECTION_AGE_MAX_MS`].
    pub connection_age_max_ms: u64,
    /// See [`GRPC_REQUEST_TIMEOUT_MS`].
    pub request_timeout_ms: u64,
}

impl Default for GrpcLimits {
    fn default() -> Self {
        GrpcLimits {
            streams_per_connection_max: GRPC_STREAMS_PER_CONNECTION_MAX,
            first_request_timeout_ms: GRPC_FIRST_REQUEST_TIMEOUT_MS,
            idle_timeout_ms: GRPC_IDLE_TIMEOUT_MS,
            connection_age_max_ms: GRPC_CONNECTION_AGE_MAX_MS,
            request_timeout_ms: GRPC_REQUEST_TIMEOUT_MS,
        }
    }
}

/// Serves `routes` on every connection `incoming` yields (admitted by the
/// listener's caps, [`crate::conn::accept`]) under `limits` until `stop`
/// turns true, then lets each open connection finish its calls (HTTP/2
/// GOAWAY, for at most [`GRPC_CLOSE_GRACE_MS`]) and returns once all have
/// closed.
pub async fn serve<I, IO>(routes: Routes, incoming: I, stop: watch::Receiver<bool>, limits: GrpcLimits)
where
    I: Stream<Item = IO>,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
{
    let routes = routes.prepare();
    crate::conn::serve_each(incoming, stop, |io, stop| serve_connection(io, routes.clone(), stop, limits))
        .await;
}

/// The answer of a call that ran out of [`GrpcLimits::request_timeout_ms`].
fn timed_out() -> hyper::Response<tonic::body::Body> {
    tonic::Status::cancelled("the call took longer than the server allows").into_http()
}

/// Serves one connection until it closes; closes it when it sends no first
/// request in time, sits idle too long or reaches its age limit, and
/// gracefully on `stop`.
async fn serve_connection<IO>(io: IO, routes: Routes, mut stop: watch::Receiver<bool>, limits: GrpcLimits)
where
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
{
    let info = io.connect_info();
    let request_timeout = Duration::from_millis(limits.request_timeout_ms);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(info.clone());
        let mut routes = routes.clone();
        let call = routes.call(req.map(tonic::body::Body::new));
        async move {
            match tokio::time::timeout(request_timeout, call).await {
                Ok(answer) => answer,
                Err(_) => Ok(timed_out()),
            }
        }
    });
    let spawned = Arc::new(Spawned::default());
    let mut builder = http2::Builder::new(ConnExec(spawned.clone()));
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.streams_per_connection_max)
        .max_header_list_size(GRPC_HEADER_LIST_BYTES_MAX)
        .initial_stream_window_size(GRPC_STREAM_WINDOW_BYTES)
        .initial_connection_window_size(GRPC_CONNECTION_WINDOW_BYTES)
        .keep_alive_interval(GRPC_KEEPALIVE_INTERVAL)
        .keep_alive_timeout(GRPC_KEEPALIVE_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let mut driver = ConnDriver::new(conn, spawned);
    let opened = Instant::now();
    let first_request_by = opened + Duration::from_millis(limits.first_request_timeout_ms);
    let too_old_at = opened + Duration::from_millis(limits.connection_age_max_ms);
    let idle_for = Duration::from_millis(limits.idle_timeout_ms);
    let mut closing_by: Option<Instant> = None;
    loop {
        let next_check = match closing_by {
            Some(by) => by,
            None if !driver.requested => first_request_by,
            None => driver.idle_since.map_or(too_old_at, |since| (since + idle_for).min(too_old_at)),
        };
        tokio::select! {
            biased;
            () = &mut driver => return,
            _ = stop.wait_for(|s| *s), if closing_by.is_none() => {
                driver.conn.as_mut().graceful_shutdown();
                closing_by = Some(Instant::now() + Duration::from_millis(GRPC_CLOSE_GRACE_MS));
            }
            () = tokio::time::sleep_until(next_check) => {
                let now = Instant::now();
                if closing_by.is_some() {
                    debug!("gRPC connection still busy after its close grace; dropped");
                    return;
                }
                if !driver.requested {
                    debug!("gRPC connection sent no request in time; closed");
                    return;
                }
                let idle = driver.idle_since.is_some_and(|since| now >= since + idle_for);
                if idle || now >= too_old_at {
                    driver.conn.as_mut().graceful_shutdown();
                    closing_by = Some(now + Duration::from_millis(GRPC_CLOSE_GRACE_MS));
                }
            }
        }
    }
}

/// Futures hyper spawned on a connection (one per request stream), waiting
/// for the connection's task to adopt them.
#[derive(Default)]
struct Spawned {
    queue: Mutex<Vec<BoxFuture<'static, ()>>>,
    /// The connection's task while it is not running (it checks the queue
    /// itself while it runs).
    waker: AtomicWaker,
}

impl Spawned {
    fn take(&self) -> Vec<BoxFuture<'static, ()>> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn is_empty(&self) -> bool {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
    }
}

/// The executor hyper is given for a connection: "spawning" queues the
/// future for the connection's own task.
#[derive(Clone)]
struct ConnExec(Arc<Spawned>);

impl<F> hyper::rt::Executor<F> for ConnExec
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        // As with a spawned task, a panic ends only its own stream (hyper
        // resets it), not the connection's other streams.
        let fut = AssertUnwindSafe(fut).catch_unwind().map(|r| {
            if r.is_err() {
                error!("A gRPC request stream panicked; it was reset");
            }
        });
        self.0.queue.lock().unwrap_or_else(PoisonError::into_inner).push(Box::pin(fut));
        self.0.waker.wake();
    }
}

/// One connection and its request streams, polled by one task.
struct ConnDriver<C> {
    conn: Pin<Box<C>>,
    conn_done: bool,
    streams: FuturesUnordered<BoxFuture<'static, ()>>,
    spawned: Arc<Spawned>,
    /// Whether any request stream was opened yet.
    requested: bool,
    /// Since when no request stream is open (`None` while one is, and
    /// before the first).
    idle_since: Option<Instant>,
}

impl<C> ConnDriver<C> {
    fn new(conn: C, spawned: Arc<Spawned>) -> Self {
        Self {
            conn: Box::pin(conn),
            conn_done: false,
            streams: FuturesUnordered::new(),
            spawned,
            requested: false,
            idle_since: None,
        }
    }

    /// Notes whether request streams are open, after a round of polling.
    fn note_activity(&mut self) {
        if !self.streams.is_empty() {
            self.requested = true;
            self.idle_since = None;
        } else if self.requested && self.idle_since.is_none() {
            self.idle_since = Some(Instant::now());
        }
    }
}

impl<C: Future<Output = Result<(), hyper::Error>>> Future for ConnDriver<C> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        // While this task runs it looks at the queue itself.
        this.spawned.waker.take();
        for _ in 0..DRIVER_ROUNDS_PER_POLL_MAX {
            this.streams.extend(this.spawned.take());
            this.note_activity();
            // The streams first, so that the connection's poll below writes
            // all they answered in one go.
            while let Poll::Ready(Some(())) = this.streams.poll_next_unpin(cx) {}
            this.note_activity();
            if !this.conn_done {
                if let Poll::Ready(res) = this.conn.as_mut().poll(cx) {
                    if let Err(e) = res {
                        debug!(error = %e, "gRPC connection failed");
                    }
                    this.conn_done = true;
                }
            }
            if this.spawned.is_empty() {
                this.spawned.waker.register(cx.waker());
                if this.spawned.is_empty() {
                    // Streams still running after the connection ended get
                    // to finish (their answers go nowhere).
                    return if this.conn_done && this.streams.is_empty() {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    };
                }
                this.spawned.waker.take();
            }
        }
        // More work keeps arriving: yield to the worker's other tasks.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::extract::Request;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::{Notify, Semaphore};
    use tonic::transport::server::TcpConnectInfo;
    use tonic::transport::Channel;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    use super::*;

    /// A served [`Routes`] on a free local port.
    struct Served {
        addr: SocketAddr,
        stop: watch::Sender<bool>,
        done: tokio::task::JoinHandle<()>,
    }

    async fn start(routes: Routes) -> Served {
        start_with(routes, GrpcLimits::default()).await
    }

    async fn start_with(routes: Routes, limits: GrpcLimits) -> Served {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stop_rx) = watch::channel(false);
        let incoming = crate::conn::accept_limited(listener, crate::conn::ConnLimits::default());
        let done = tokio::spawn(serve(routes, incoming, stop_rx, limits));
        Served { addr, stop, done }
    }

    async fn channel(addr: SocketAddr) -> Channel {
        Channel::from_shared(format!("http://{addr}")).expect("url").connect().await.expect("connect")
    }

    async fn health_routes() -> Routes {
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter.set_service_status("mpp.test", tonic_health::ServingStatus::Serving).await;
        Routes::new(service)
    }

    /// POSTs to `path` over `channel` (HTTP/2) and returns the answer's body.
    async fn post(channel: &mut Channel, path: &str) -> String {
        let req = axum::http::Request::post(format!("http://hub{path}"))
            .header("content-type", "application/grpc")
            .body(tonic::body::Body::empty())
            .expect("request");
        let answer = tower::ServiceExt::ready(channel).await.expect("ready").call(req).await.expect("call");
        let body = axum::body::to_bytes(axum::body::Body::new(answer.into_body()), 1024).await.expect("body");
        String::from_utf8(body.to_vec()).expect("utf-8")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_every_call_of_a_connection_beyond_its_concurrent_stream_limit() {
        let served = start(health_routes().await).await;
        let client = HealthClient::new(channel(served.addr).await);
        let calls = GRPC_STREAMS_PER_CONNECTION_MAX as usize * 3;
        let answers = futures::future::join_all((0..calls).map(|_| {
            let mut client = client.clone();
            async move { client.check(HealthCheckRequest { service: "mpp.test".to_owned() }).await }
        }))
        .await;
        for answer in answers {
            assert_eq!(answer.expect("check").into_inner().status(), ServingStatus::Serving);
        }
        let unknown = client.clone().check(HealthCheckRequest { service: "nope".to_owned() }).await;
        assert_eq!(unknown.expect_err("unknown service").code(), tonic::Code::NotFound);
        served.stop.send(true).expect("stop");
        served.done.await.expect("server task");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_request_carries_the_peers_address() {
        let router = axum::Router::new().route(
            "/mpp.test.Peer/Address",
            axum::routing::post(|req: Request| async move {
                let info = req.extensions().get::<TcpConnectInfo>().cloned();
                info.and_then(|i| i.remote_addr()).map(|a| a.to_string()).unwrap_or_default()
            }),
        );
        let served = start(Routes::from(router)).await;
        let mut channel = channel(served.addr).await;
        let seen: SocketAddr =
            post(&mut channel, "/mpp.test.Peer/Address").await.parse().expect("an address");
        assert!(seen.ip().is_loopback(), "{seen}");
        assert_ne!(seen.port(), served.addr.port(), "the client's port, not the server's");
        served.stop.send(true).expect("stop");
        served.done.await.expect("server task");
    }

    /// Routes with `/mpp.test.Slow/Call`, which answers "finished" once a
    /// permit is added to the returned semaphore (the notify fires when it
    /// starts waiting), and `/mpp.test.Bad/Panic`, which panics.
    fn slow_and_panicking_routes() -> (Routes, Arc<Notify>, Arc<Semaphore>) {
        let entered = Arc::new(Notify::new());
        let release = Arc::new(Semaphore::new(0));
        let router = axum::Router::new()
            .route(
                "/mpp.test.Slow/Call",
                axum::routing::post({
                    let entered = entered.clone();
                    let release = release.clone();
                    move || async move {
                        entered.notify_one();
                        let _permit = release.acquire().await.expect("open");
                        "finished"
                    }
                }),
            )
            .route(
                "/mpp.test.Bad/Panic",
                axum::routing::post(|| async {
                    if std::hint::black_box(true) {
                        panic!("a handler bug");
                    }
                    "unreachable"
                }),
            );
        (Routes::from(router), entered, release)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_call_ends_only_its_own_stream() {
        let (routes, entered, release) = slow_and_panicking_routes();
        let served = start(routes).await;
        let mut channel = channel(served.addr).await;
        let slow = tokio::spawn({
            let mut channel = channel.clone();
            async move { post(&mut channel, "/mpp.test.Slow/Call").await }
        });
        entered.notified().await;
        let req = axum::http::Request::post("http://hub/mpp.test.Bad/Panic")
            .body(tonic::body::Body::empty())
            .expect("request");
        let answer = tower::ServiceExt::ready(&mut channel).await.expect("ready").call(req).await;
        assert!(answer.is_err(), "the panicking call's stream is reset: {answer:?}");
        // The call in flight on the same connection lives on.
        release.add_permits(1);
        assert_eq!(slow.await.expect("slow call task"), "finished");
        served.stop.send(true).expect("stop");
        served.done.await.expect("server task");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stop_lets_calls_in_flight_finish_then_returns() {
        let (routes, entered, release) = slow_and_panicking_routes();
        let served = start(routes).await;
        let mut channel = channel(served.addr).await;
        let call = tokio::spawn(async move { post(&mut channel, "/mpp.test.Slow/Call").await });
        entered.notified().await;
        served.stop.send(true).expect("stop");
        let mut done = served.done;
        // A negative check: the server must still be waiting for the call.
        let early = tokio::time::timeout(Duration::from_millis(200), &mut done).await;
        assert!(early.is_err(), "the server returned with a call in flight");
        release.add_permits(1);
        assert_eq!(call.await.expect("call task"), "finished");
        done.await.expect("server task");
        // The listener is gone with the server.
        assert!(tokio::net::TcpStream::connect(served.addr).await.is_err());
    }

    /// Short limits, so that tests see them act in real time.
    const SHORT: GrpcLimits = GrpcLimits {
        streams_per_connection_max: 8,
        first_request_timeout_ms: 300,
        idle_timeout_ms: 300,
        connection_age_max_ms: 60_000,
        request_timeout_ms: 300,
    };

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn silent_and_preface_only_connections_are_closed_after_the_first_request_timeout() {
        let served = start_with(health_routes().await, SHORT).await;
        let mut silent = tokio::net::TcpStream::connect(served.addr).await.expect("connect");
        let mut preface = tokio::net::TcpStream::connect(served.addr).await.expect("connect");
        preface.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.expect("write");
        let started = tokio::time::Instant::now();
        let mut rest = Vec::new();
        let _ = silent.read_to_end(&mut rest).await;
        let _ = preface.read_to_end(&mut rest).await;
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(10), "{took:?}");
        served.stop.send(true).expect("stop");
        served.done.await.expect("server task");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_over_the_request_timeout_is_cancelled() {
        let (routes, _entered, _release) = slow_and_panicking_routes();
        let served = start_with(routes, SHORT).await;
        let mut channel = channel(served.addr).await;
        let req = axum::http::Request::post("http://hub/mpp.test.Slow/Call")
            .header("content-type", "application/grpc")
            .body(tonic::body::Body::empty())
            .expect("request");
        let answer =
            tower::ServiceExt::ready(&mut channel).await.expect("ready").call(req).await.expect("answer");
        let status = tonic::Status::from_header_map(answer.headers()).expect("a gRPC status");
        assert_eq!(status.code(), tonic::Code::Cancelled);
        served.stop.send(true).expect("stop");
        served.done.await.expect("server task");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_speaking_garbage_is_closed_and_others_are_served() {
        let served = start(health_routes().await).await;
        let mut raw = tokio::net::TcpStream::connect(served.addr).await.expect("connect");
        raw.write_all(b"GET / HTTP/1.1\r\nhost: hub\r\n\r\n\x00\xff garbage").await.expect("write");
        let mut rest = Vec::new();
        // Ends (EOF or reset) once the hub closes the connection.
        let _ = raw.read_to_end(&mut rest).await;
        let mut client = HealthClient::new(channel(served.addr).await);
        let answer = client.check(HealthCheckRequest { service: "mpp.test".to_owned() }).await;
        assert_eq!(answer.expect("check").into_inner().status(), ServingStatus::Serving);
        served.stop.send(true).expect("stop");
        served.done.await.expect("server task");
    }
}
