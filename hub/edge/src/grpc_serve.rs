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
//! applied: the hub's methods answer (or start streaming) without waiting on
//! anything a deadline could cut short; a client's deadline still ends its
//! own call.

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
use tokio::sync::{watch, Semaphore};
use tonic::service::Routes;
use tonic::transport::server::Connected;
use tower::Service;
use tracing::{debug, error};

/// Concurrent request streams per connection (HTTP/2
/// `SETTINGS_MAX_CONCURRENT_STREAMS`: the client holds further calls back).
pub const GRPC_STREAMS_PER_CONNECTION_MAX: u32 = 256;

/// Open gRPC connections; accepting waits while this many are open.
pub const GRPC_CONNECTIONS_MAX: usize = 4096;

/// Largest request header block, in bytes.
pub const GRPC_HEADER_LIST_BYTES_MAX: u32 = 64 * 1024;

/// How often an idle connection is pinged, and how long the answer may take
/// before the connection is dropped (a vanished client holding a
/// `WatchCase` stream would otherwise keep it open until TCP gives up).
pub const GRPC_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
/// See [`GRPC_KEEPALIVE_INTERVAL`].
pub const GRPC_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Rounds of "run the ready streams, then the connection" in one poll of a
/// connection's task before it yields to the other tasks of its worker.
const DRIVER_ROUNDS_PER_POLL_MAX: usize = 16;

/// Serves `routes` on every connection `incoming` yields (which logs and
/// paces its own accept errors, as [`crate::listen::tcp_incoming`] does) until
/// `stop` turns true, then lets each open connection finish its calls (HTTP/2 GOAWAY) and
/// returns once all have closed.
pub async fn serve<I, IO>(routes: Routes, incoming: I, mut stop: watch::Receiver<bool>)
where
    I: Stream<Item = std::io::Result<IO>>,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
{
    let routes = routes.prepare();
    let open = Arc::new(Semaphore::new(GRPC_CONNECTIONS_MAX));
    {
        // Scoped: the listening socket closes as soon as accepting stops.
        let mut incoming = std::pin::pin!(incoming);
        loop {
            let permit = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                p = open.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    // Never closed.
                    Err(_) => break,
                },
            };
            let io = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                io = incoming.next() => match io {
                    Some(Ok(io)) => io,
                    // Already logged and paced by `incoming`.
                    Some(Err(_)) => continue,
                    None => break,
                },
            };
            let routes = routes.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                serve_connection(io, routes, stop).await;
                drop(permit);
            });
        }
    }
    // Every connection task holds a permit until it ends.
    let _ = open.acquire_many(GRPC_CONNECTIONS_MAX as u32).await;
}

/// Serves one connection until it closes; on `stop`, closes it gracefully.
async fn serve_connection<IO>(io: IO, routes: Routes, mut stop: watch::Receiver<bool>)
where
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
{
    let info = io.connect_info();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(info.clone());
        let mut routes = routes.clone();
        routes.call(req.map(tonic::body::Body::new))
    });
    let spawned = Arc::new(Spawned::default());
    let mut builder = http2::Builder::new(ConnExec(spawned.clone()));
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(GRPC_STREAMS_PER_CONNECTION_MAX)
        .max_header_list_size(GRPC_HEADER_LIST_BYTES_MAX)
        .keep_alive_interval(GRPC_KEEPALIVE_INTERVAL)
        .keep_alive_timeout(GRPC_KEEPALIVE_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let mut driver = ConnDriver::new(conn, spawned);
    tokio::select! {
        biased;
        () = &mut driver => return,
        _ = stop.wait_for(|s| *s) => driver.conn.as_mut().graceful_shutdown(),
    }
    driver.await;
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
}

impl<C> ConnDriver<C> {
    fn new(conn: C, spawned: Arc<Spawned>) -> Self {
        Self { conn: Box::pin(conn), conn_done: false, streams: FuturesUnordered::new(), spawned }
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
            // The streams first, so that the connection's poll below writes
            // all they answered in one go.
            while let Poll::Ready(Some(())) = this.streams.poll_next_unpin(cx) {}
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
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stop_rx) = watch::channel(false);
        let done = tokio::spawn(serve(routes, crate::listen::tcp_incoming(listener), stop_rx));
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
