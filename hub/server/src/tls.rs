//! TLS for the hub's gRPC and HTTP servers.
//!
//! The flags, file loading, the plaintext rule (plaintext only on loopback
//! addresses unless `--insecure-plaintext`) and the bounded handshake loop
//! are the agency kit's ([`mpp_agency_kit::tls`]), so every server of the
//! project behaves the same; this module adapts them to the hub's servers:
//! a TCP incoming stream for tonic ([`grpc_incoming`]) and an
//! [`axum::serve::Listener`] for the HTTP server ([`HttpsListener`]).

use std::io;
use std::net::SocketAddr;

use futures::{Stream, StreamExt};
use mpp_agency_kit::tls::{tls_incoming, ServerTls, ALPN_H2, ALPN_HTTP11};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

pub use mpp_agency_kit::tls::{TlsArgs, TlsError, Transport};

/// Pause after a failed `accept` (e.g. out of file descriptors), in
/// milliseconds, so an accept loop does not spin.
pub const ACCEPT_ERROR_BACKOFF_MS: u64 = 100;

/// Accepted TCP connections of `listener`, with TCP_NODELAY set (without
/// it, small gRPC answers wait for delayed ACKs, about 40 ms each on Linux).
/// An accept error is passed on after [`ACCEPT_ERROR_BACKOFF_MS`].
pub(crate) fn tcp_incoming(
    listener: TcpListener,
) -> impl Stream<Item = io::Result<TcpStream>> + Send + 'static {
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
/// [`mpp_agency_kit::tls::tls_incoming`] bounds them.
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::path::Path;
    use std::time::{Duration, Instant};

    use clap::Parser;
    use mpp_agency_kit::testing::{free_port, NatsServer};
    use mpp_agency_kit::tls::client_tls_config;
    use mpp_agency_kit::tls::test_pki::{http_get, https_get, TestPki};
    use mpp_proto::v1::cases_service_client::CasesServiceClient;
    use mpp_proto::v1::GetCaseRequest;
    use tonic::transport::Endpoint;

    use crate::config::{Cli, Command, ServeArgs};

    /// How long a test waits for the hub to answer over HTTPS, in milliseconds.
    const START_DEADLINE_MS: u64 = 20_000;

    /// How long a gRPC connection attempt may take, in milliseconds.
    const CONNECT_TIMEOUT_MS: u64 = 5_000;

    fn serve_args(nats: &str, data: &Path, grpc: SocketAddr, http: SocketAddr, tls: &[&str]) -> ServeArgs {
        let mut argv: Vec<String> =
            ["mpp-hub", "serve", "--nats-url", nats, "--insecure-dev-keys", "--min-free-disk-mb", "0"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        argv.extend(["--data-dir".into(), data.display().to_string()]);
        argv.extend(["--grpc-addr".into(), grpc.to_string(), "--http-addr".into(), http.to_string()]);
        argv.extend(tls.iter().map(|s| s.to_string()));
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(args) => args,
            other => panic!("parsed {other:?}"),
        }
    }

    fn loopback() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_hub_answers_over_grpc_and_https_to_clients_trusting_its_ca_only() {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::generate(dir.path()).unwrap();
        let mut nats = NatsServer::start().unwrap();
        nats.connect().await.unwrap();
        let (grpc, http) = (loopback(), loopback());
        let (cert, key) = (pki.cert.display().to_string(), pki.key.display().to_string());
        let args = serve_args(
            &nats.url(),
            &dir.path().join("hub"),
            grpc,
            http,
            &["--tls-cert-file", &cert, "--tls-key-file", &key],
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let hub = tokio::spawn(crate::server::serve(args, async {
            let _ = stopped.await;
        }));

        // HTTPS: poll /healthz until it answers.
        let deadline = Instant::now() + Duration::from_millis(START_DEADLINE_MS);
        let healthz = loop {
            match https_get(http, "localhost", &pki.ca, "/healthz", &[]).await {
                Ok(answer) => break answer,
                Err(e) if Instant::now() < deadline && !hub.is_finished() => {
                    tracing::debug!(error = %e, "Hub not up yet");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) if hub.is_finished() => panic!("the hub stopped: {:?} (last: {e})", hub.await),
                Err(e) => panic!("the hub never answered over HTTPS: {e}"),
            }
        };
        assert_eq!(healthz.0, 200, "{healthz:?}");
        // A case lookup over HTTPS gets the JSON API's answer (no such case).
        let (status, body) =
            https_get(http, "localhost", &pki.ca, "/api/v1/cases/not-a-number", &[]).await.unwrap();
        assert_eq!(status, 400, "{body}");

        // gRPC over TLS: the cases service answers (a bad tracking number is
        // refused by the service itself, so the call went all the way).
        let channel = Endpoint::from_shared(format!("https://{grpc}"))
            .unwrap()
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            .tls_config(client_tls_config(&pki.ca).unwrap())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let refused = CasesServiceClient::new(channel)
            .get_case(GetCaseRequest { tracking_number: "not-a-number".into(), ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");

        // Plaintext clients get nothing.
        let plain_http = http_get(http, "/healthz").await;
        assert!(plain_http.is_err(), "plaintext HTTP got {plain_http:?}");
        let plain_grpc = Endpoint::from_shared(format!("http://{grpc}"))
            .unwrap()
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            .connect()
            .await;
        let plain_call = match plain_grpc {
            Err(e) => Err(tonic::Status::unavailable(e.to_string())),
            Ok(ch) => CasesServiceClient::new(ch)
                .get_case(GetCaseRequest { tracking_number: "x".into(), ..Default::default() })
                .await
                .map(|_| ()),
        };
        // Refused at the transport (the broken connection surfaces as one of
        // several codes), never answered by the service, which would refuse
        // "x" with INVALID_ARGUMENT and a reason code.
        let refused = plain_call.expect_err("a plaintext gRPC call was answered");
        assert_ne!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
        assert!(refused.metadata().get("mpp-reason-code").is_none(), "{refused:?}");

        // Clients trusting another CA neither.
        let untrusted = https_get(http, "localhost", &pki.other_ca, "/healthz", &[]).await;
        assert!(untrusted.is_err(), "an untrusted hub answered: {untrusted:?}");
        let untrusted_grpc = Endpoint::from_shared(format!("https://{grpc}"))
            .unwrap()
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            .tls_config(client_tls_config(&pki.other_ca).unwrap())
            .unwrap()
            .connect()
            .await;
        assert!(untrusted_grpc.is_err(), "an untrusted hub accepted the gRPC connection");

        let _ = stop.send(());
        hub.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn unusable_tls_files_stop_the_hub_before_it_opens_anything() {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::generate(dir.path()).unwrap();
        let secret = "SUPER-SECRET-KEY-MATERIAL";
        let bad_key = dir.path().join("bad.key");
        std::fs::write(
            &bad_key,
            format!("-----BEGIN PRIVATE KEY-----\n{secret}\n-----END PRIVATE KEY-----\n"),
        )
        .unwrap();
        let cert = pki.cert.display().to_string();
        let data = dir.path().join("hub");
        for key in [bad_key.clone(), dir.path().join("absent.key"), pki.other_key.clone()] {
            let key_arg = key.display().to_string();
            let args = serve_args(
                // Never contacted: the hub stops before connecting.
                "nats://127.0.0.1:1",
                &data,
                loopback(),
                loopback(),
                &["--tls-cert-file", &cert, "--tls-key-file", &key_arg],
            );
            let e = format!("{:#}", crate::server::serve(args, std::future::pending()).await.unwrap_err());
            assert!(e.contains(&key_arg), "{e:?} does not name {key_arg}");
            assert!(!e.contains(secret), "{e:?} quotes the key file");
            assert!(!data.exists(), "the data directory was created before TLS was checked");
        }
    }

    #[tokio::test]
    async fn the_hub_refuses_plaintext_on_a_public_address() {
        let dir = tempfile::tempdir().unwrap();
        let public = SocketAddr::from(([0, 0, 0, 0], free_port().unwrap()));
        let args = serve_args("nats://127.0.0.1:1", &dir.path().join("hub"), loopback(), public, &[]);
        let e = format!("{:#}", crate::server::serve(args, std::future::pending()).await.unwrap_err());
        assert!(e.contains("--insecure-plaintext") && e.contains(&public.to_string()), "{e}");
    }
}
