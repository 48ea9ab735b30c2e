//! Listeners for gRPC and HTTP servers, plain or TLS, under the connection
//! caps of [`crate::conn`].
//!
//! The flags, file loading, the plaintext rule (plaintext only on loopback
//! addresses unless `--insecure-plaintext`) and the bounded handshakes are
//! [`crate::tls`]'s, the caps [`crate::conn`]'s, so every server of the
//! project behaves the same; this module puts them together for the two
//! kinds of server: [`crate::grpc_serve::serve`] and
//! [`crate::http_serve::serve`] take the streams made here.

use tokio::net::TcpListener;
use tokio_rustls::server::TlsStream;

use crate::conn::{accept_limited, Conn, ConnLimits};
use crate::tls::{tls_incoming, ServerTls, ALPN_H2, ALPN_HTTP11};
use futures::Stream;

/// The plaintext connections of `listener` that `limits` admit.
pub fn plain_incoming(
    listener: TcpListener,
    limits: ConnLimits,
) -> impl Stream<Item = Conn> + Send + 'static {
    accept_limited(listener, limits)
}

/// The TLS connections of `listener` for a gRPC server (ALPN `h2`).
pub fn grpc_tls_incoming(
    listener: TcpListener,
    tls: &ServerTls,
    limits: ConnLimits,
) -> impl Stream<Item = TlsStream<Conn>> + Send + 'static {
    tls_incoming(accept_limited(listener, limits), tls.config(&[ALPN_H2]))
}

/// The TLS connections of `listener` for an HTTP/1.1 server (ALPN
/// `http/1.1`).
pub fn http_tls_incoming(
    listener: TcpListener,
    tls: &ServerTls,
    limits: ConnLimits,
) -> impl Stream<Item = TlsStream<Conn>> + Send + 'static {
    tls_incoming(accept_limited(listener, limits), tls.config(&[ALPN_HTTP11]))
}
