//! Listeners for gRPC and HTTP servers, plain or TLS.
//!
//! The flags, file loading, the plaintext rule (plaintext only on loopback
//! addresses unless `--insecure-plaintext`) and the bounded handshake loop
//! are [`crate::tls`]'s, so every server of the project behaves the same;
//! this module adapts them to the servers:
//! a TCP incoming stream for tonic ([`grpc_incoming`]) and an
//! [`axum::serve::Listener`] for the HTTP server ([`HttpsListener`]).

use std::io;
use std::net::SocketAddr;

use crate::tls::{tls_incoming, ServerTls, ALPN_H2, ALPN_HTTP11};
use futures::{Stream, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

/// Pause after a failed `accept` (e.g. out of file descriptors), in
/// milliseconds, so an accept loop does not spin.
pub const ACCEPT_ERROR_BACKOFF_MS: u64 = 100;

/// Accepted TCP connections of `listener`, with TCP_NODELAY set (without
/// it, small gRPC answers wait for delayed ACKs, about 40 ms each on Linux).
/// An accept error is passed on after [`ACCEPT_ERROR_BACKOFF_MS`].
pub fn tcp_incoming(listener: TcpListener) -> impl Stream<Item = io::Result<TcpStream>> + Send + 'static {
    futures::stream::unfold(listener, |listener| async move {
        let item = match listener.accept().await {
            Ok((io, _peer)) => {
                if let Err(e) = io.set_nodelay(true) {
                    tracing::debug!(error = %e, "Cannot set TCP_NODELAY");
                }
                Ok(io)
            }
            Err(e) => {
                tracing::warn!(error = %e, "Accepting a connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
                Err(e)
            }
        };
        Some((item, listener))
    })
}

/// The TLS connections of `listener` for the gRPC server (ALPN `h2`).
pub fn grpc_incoming(
    listener: TcpListener,
    tls: &ServerTls,
) -> impl Stream<Item = io::Result<TlsStream<TcpStream>>> + Send + 'static {
    tls_incoming(tcp_incoming(listener), tls.acceptor(&[ALPN_H2]))
}

/// An [`axum::serve::Listener`] whose connections are TLS (ALPN
/// `http/1.1`), handshaken off the accept loop as
/// [`crate::tls::tls_incoming`] bounds them.
pub struct HttpsListener {
    incoming: std::pin::Pin<Box<dyn Stream<Item = io::Result<TlsStream<TcpStream>>> + Send>>,
    local: SocketAddr,
}

impl std::fmt::Debug for HttpsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsListener").field("local", &self.local).finish_non_exhaustive()
    }
}

impl HttpsListener {
    /// TLS on `listener`.
    pub fn new(listener: TcpListener, tls: &ServerTls) -> io::Result<HttpsListener> {
        let local = listener.local_addr()?;
        let incoming = Box::pin(tls_incoming(tcp_incoming(listener), tls.acceptor(&[ALPN_HTTP11])));
        Ok(HttpsListener { incoming, local })
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.incoming.next().await {
                Some(Ok(tls)) => match tls.get_ref().0.peer_addr() {
                    Ok(peer) => return (tls, peer),
                    // Closed between the handshake and now.
                    Err(e) => tracing::debug!(error = %e, "Connection gone after its TLS handshake"),
                },
                // Already logged and paced by the accept loop.
                Some(Err(_)) => {}
                // The handshake task ended: accept no more.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
