//! Serving an axum router over HTTP/1.1 on admitted connections, with the
//! limits a server facing the public needs (axum's own `serve` sets none):
//!
//! - a request head (request line and headers) must arrive within
//!   [`HTTP_HEADER_READ_TIMEOUT_MS`], which is also how long a kept-alive
//!   connection may sit idle between requests (hyper starts the same timer
//!   when it waits for the next head), and must fit in
//!   [`HTTP_REQUEST_HEAD_BYTES_MAX`];
//! - a request body must arrive whole within [`HTTP_REQUEST_BODY_TIMEOUT_MS`]
//!   of its head and hold at most [`HTTP_REQUEST_BODY_BYTES_MAX`] (routes may
//!   set a smaller limit of their own);
//! - an answer the client does not read fails the connection after the
//!   listener's write-stall limit ([`crate::conn::Conn`]);
//! - the number of connections, in total and per client address, is the
//!   listener's ([`crate::conn`]).
//!
//! Every request carries the peer's address as axum's
//! `ConnectInfo<SocketAddr>`, as `into_make_service_with_connect_info` would
//! give it.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use futures::Stream;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};
use tower::Service;

use crate::conn::PeerAddr;

/// Longest a client may take to send a request's head, and longest a
/// kept-alive connection may wait idle for the next request, in
/// milliseconds.
pub const HTTP_HEADER_READ_TIMEOUT_MS: u64 = 10_000;

/// Largest request head (request line and headers), in bytes (hyper's read
/// buffer; a larger head is answered 431 and the connection closed).
pub const HTTP_REQUEST_HEAD_BYTES_MAX: usize = 16 * 1024;

/// Longest a request's body may take to arrive whole, from its head, in
/// milliseconds.
pub const HTTP_REQUEST_BODY_TIMEOUT_MS: u64 = 10_000;

/// Largest request body any route may read, in bytes.
pub const HTTP_REQUEST_BODY_BYTES_MAX: u64 = 64 * 1024;

/// After the stop signal, how long open connections may finish the answers
/// they are writing, in milliseconds, before they are closed.
pub const HTTP_SHUTDOWN_GRACE_MS: u64 = 5_000;

/// Serves `app` on every connection of `incoming` until `stop` turns true,
/// then lets each connection finish its answer in progress (for at most
/// [`HTTP_SHUTDOWN_GRACE_MS`]) and returns once all have closed.
pub async fn serve<I, IO>(app: axum::Router, incoming: I, stop: watch::Receiver<bool>)
where
    I: Stream<Item = IO>,
    IO: AsyncRead + AsyncWrite + PeerAddr + Unpin + Send + 'static,
{
    crate::conn::serve_each(incoming, stop, |io, stop| serve_connection(io, app.clone(), stop)).await;
}

async fn serve_connection<IO>(io: IO, app: axum::Router, mut stop: watch::Receiver<bool>)
where
    IO: AsyncRead + AsyncWrite + PeerAddr + Unpin + Send + 'static,
{
    let peer = io.peer_addr();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let mut req = req.map(|body| axum::body::Body::new(LimitedBody::new(body)));
        req.extensions_mut().insert(ConnectInfo(peer));
        // A router is always ready.
        let mut app = app.clone();
        async move { Ok::<_, Infallible>(app.call(req).await.unwrap_or_else(|e| match e {})) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(HTTP_HEADER_READ_TIMEOUT_MS))
        .max_buf_size(HTTP_REQUEST_HEAD_BYTES_MAX)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        biased;
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(peer = %peer, error = %e, "HTTP connection ended");
            }
            return;
        }
        _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
    }
    let grace = Duration::from_millis(HTTP_SHUTDOWN_GRACE_MS);
    if tokio::time::timeout(grace, conn).await.is_err() {
        tracing::debug!(peer = %peer, "HTTP connection still busy after the shutdown grace; closed");
    }
}

/// Why a request body was cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyLimitError {
    /// It did not arrive within [`HTTP_REQUEST_BODY_TIMEOUT_MS`].
    #[error("the request body did not arrive within {HTTP_REQUEST_BODY_TIMEOUT_MS} ms")]
    TooSlow,
    /// It is larger than [`HTTP_REQUEST_BODY_BYTES_MAX`].
    #[error("the request body is larger than {HTTP_REQUEST_BODY_BYTES_MAX} bytes")]
    TooLarge,
}

/// A request body bounded in time and size (see the module docs). The
/// deadline's timer is only set up once the body is read: most requests
/// (GETs) never read theirs.
struct LimitedBody {
    inner: Incoming,
    started: Instant,
    deadline: Option<Pin<Box<Sleep>>>,
    read_bytes: u64,
}

impl LimitedBody {
    fn new(inner: Incoming) -> Self {
        LimitedBody { inner, started: Instant::now(), deadline: None, read_bytes: 0 }
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let until = this.started + Duration::from_millis(HTTP_REQUEST_BODY_TIMEOUT_MS);
        let deadline = this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.read_bytes += data.len() as u64;
                    if this.read_bytes > HTTP_REQUEST_BODY_BYTES_MAX {
                        return Poll::Ready(Some(Err(Box::new(BodyLimitError::TooLarge))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyLimitError::TooSlow)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::conn::{accept_limited, ConnLimits};

    async fn start() -> (SocketAddr, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route(
                "/peer",
                get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
            )
            .route("/echo", post(|body: Bytes| async move { body.len().to_string() }));
        let (stop, stop_rx) = watch::channel(false);
        let done = tokio::spawn(serve(app, accept_limited(listener, ConnLimits::default()), stop_rx));
        (addr, stop, done)
    }

    async fn read_all(s: &mut TcpStream) -> String {
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn answers_with_the_peers_address_and_stops() {
        let (addr, stop, done) = start().await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
        let answer = read_all(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("127.0.0.1"), "{answer}");
        stop.send(true).unwrap();
        done.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_head_is_cut_off() {
        let (addr, _stop, _done) = start().await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /peer HTTP/1.1\r\nhost:").await.unwrap();
        let started = Instant::now();
        // The server closes the connection (with or without a 408).
        let answer = read_all(&mut s).await;
        assert!(!answer.contains("200"), "{answer}");
        assert!(started.elapsed() >= Duration::from_millis(HTTP_HEADER_READ_TIMEOUT_MS));
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_body_is_cut_off() {
        let (addr, _stop, _done) = start().await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nab").await.unwrap();
        let started = Instant::now();
        let answer = read_all(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(started.elapsed() >= Duration::from_millis(HTTP_REQUEST_BODY_TIMEOUT_MS));
    }

    #[tokio::test]
    async fn an_oversized_body_is_refused() {
        let (addr, _stop, _done) = start().await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let len = HTTP_REQUEST_BODY_BYTES_MAX as usize + 1;
        let head =
            format!("POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        // The server may answer before reading all of it.
        let _ = s.write_all(&vec![b'a'; len]).await;
        let answer = read_all(&mut s).await;
        assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}
