//! TLS of the agency services' gRPC servers, end to end (the edge's
//! `mpp_edge::tls` under the kit's `serve_with_transport`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use mpp_edge::tls::test_pki::TestPki;
use mpp_edge::tls::*;

/// How long a test waits for a connection attempt, in milliseconds.
const CONNECT_TIMEOUT_MS: u64 = 5_000;

/// The service whose health the tests ask for.
const SERVICE: &str = "grpc.reflection.v1alpha.ServerReflection";

/// Serves gRPC (health, reflection) with `tls` on a free loopback port
/// until the returned sender is dropped.
async fn start(tls: Option<ServerTls>) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Any routed service will do: v1alpha reflection is not added by the server itself.
    let routed = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(mpp_proto::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        crate::server::serve_with_transport(
            Routes::new(routed),
            &[SERVICE],
            listener,
            shutdown,
            None,
            tls.as_ref(),
        )
        .await
        .unwrap();
    });
    (addr, stop)
}

/// Asks the health of [`SERVICE`] at `url` with client TLS `tls`.
async fn health(url: String, tls: Option<ClientTlsConfig>) -> Result<i32, String> {
    let mut endpoint =
        Endpoint::from_shared(url).unwrap().connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(|e| format!("{e:?}"))?;
    }
    let channel = endpoint.connect().await.map_err(|e| format!("connect: {e:?}"))?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest { service: SERVICE.to_owned() })
        .await
        .map_err(|e| format!("call: {e:?}"))?;
    Ok(answer.into_inner().status)
}

fn pki() -> (tempfile::TempDir, TestPki) {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path()).unwrap();
    (dir, pki)
}

fn trusting(ca: &Path) -> ClientTlsConfig {
    client_tls_config(ca).unwrap()
}

const SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;

#[tokio::test]
async fn a_client_trusting_the_ca_gets_answers_over_tls() {
    let (_dir, pki) = pki();
    let tls = ServerTls::load(&pki.cert, &pki.key, None).unwrap();
    let (addr, _stop) = start(Some(tls)).await;
    // By IP address and by name: the certificate names both.
    assert_eq!(health(format!("https://{addr}"), Some(trusting(&pki.ca))).await, Ok(SERVING));
    let by_name = format!("https://localhost:{}", addr.port());
    assert_eq!(health(by_name, Some(trusting(&pki.ca))).await, Ok(SERVING));
}

#[tokio::test]
async fn a_plaintext_client_against_a_tls_server_fails() {
    let (_dir, pki) = pki();
    let (addr, _stop) = start(Some(ServerTls::load(&pki.cert, &pki.key, None).unwrap())).await;
    let r = health(format!("http://{addr}"), None).await;
    assert!(r.is_err(), "plaintext got {r:?}");
    // The server still serves TLS clients afterwards.
    assert_eq!(health(format!("https://{addr}"), Some(trusting(&pki.ca))).await, Ok(SERVING));
}

#[tokio::test]
async fn a_client_not_trusting_the_ca_fails() {
    let (_dir, pki) = pki();
    let (addr, _stop) = start(Some(ServerTls::load(&pki.cert, &pki.key, None).unwrap())).await;
    let r = health(format!("https://{addr}"), Some(trusting(&pki.other_ca))).await;
    assert!(r.is_err(), "an untrusted server answered: {r:?}");
}

#[tokio::test]
async fn a_plaintext_server_still_answers_plaintext_clients() {
    let (addr, _stop) = start(None).await;
    assert_eq!(health(format!("http://{addr}"), None).await, Ok(SERVING));
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_without_a_certificate() {
    let (_dir, pki) = pki();
    let tls = ServerTls::load(&pki.cert, &pki.key, Some(&pki.ca)).unwrap();
    assert!(tls.mutual());
    let (addr, _stop) = start(Some(tls)).await;
    let anonymous = health(format!("https://{addr}"), Some(trusting(&pki.ca))).await;
    assert!(anonymous.is_err(), "a client without a certificate got {anonymous:?}");
    let identity =
        Identity::from_pem(std::fs::read(&pki.client_cert).unwrap(), std::fs::read(&pki.client_key).unwrap());
    let with_cert = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(&pki.ca).unwrap()))
        .identity(identity);
    assert_eq!(health(format!("https://{addr}"), Some(with_cert)).await, Ok(SERVING));
}

#[tokio::test]
async fn a_silent_connection_does_not_block_others() {
    let (_dir, pki) = pki();
    let (addr, _stop) = start(Some(ServerTls::load(&pki.cert, &pki.key, None).unwrap())).await;
    // Connects and never says a word: its handshake waits in its own task.
    let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let answer = tokio::time::timeout(
        Duration::from_millis(TLS_HANDSHAKE_TIMEOUT_MS / 2),
        health(format!("https://{addr}"), Some(trusting(&pki.ca))),
    )
    .await;
    assert_eq!(answer.ok(), Some(Ok(SERVING)));
}

/// Writes `content` to `dir/name`.
fn file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn unusable_key_files_fail_naming_the_file_and_never_its_content() {
    let (dir, pki) = pki();
    let secret = "c2VjcmV0LWtleS1tYXRlcmlhbA-NOT-BASE64!";
    let garbage = file(
        dir.path(),
        "garbage.key",
        &format!("-----BEGIN PRIVATE KEY-----\n{secret}\n-----END PRIVATE KEY-----\n"),
    );
    let empty = file(dir.path(), "empty.key", "no pem here\n");
    let missing = dir.path().join("missing.key");
    let key_text = std::fs::read_to_string(&pki.other_key).unwrap();
    let key_body: Vec<&str> = key_text.lines().filter(|l| !l.starts_with("-----")).collect();

    for (key, expect) in [
        (&missing, "cannot read"),
        (&garbage, "malformed PEM"),
        (&empty, "no PRIVATE KEY found"),
        // A valid key, but not the certificate's.
        (&pki.other_key, "unusable"),
    ] {
        let e = ServerTls::load(&pki.cert, key, None).unwrap_err().to_string();
        assert!(e.contains(&key.display().to_string()), "{e:?} does not name {}", key.display());
        assert!(e.contains(expect), "{e:?} does not say {expect:?}");
        assert!(!e.contains(secret), "{e:?} quotes the key file");
        for line in &key_body {
            assert!(!e.contains(line), "{e:?} quotes the key");
        }
        // Debug output (e.g. `{:?}` in a log) neither.
        let debug = format!("{:?}", ServerTls::load(&pki.cert, key, None).unwrap_err());
        assert!(!debug.contains(secret) && key_body.iter().all(|l| !debug.contains(l)), "{debug}");
    }
    let e = ServerTls::load(&empty, &pki.key, None).unwrap_err().to_string();
    assert!(e.contains("--tls-cert-file") && e.contains("no CERTIFICATE found"), "{e}");
    let e = client_tls_config(&missing).unwrap_err().to_string();
    assert!(e.contains("--tls-ca-file") && e.contains("missing.key"), "{e}");
}

#[test]
fn oversized_files_are_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.pem");
    std::fs::write(&big, vec![b'A'; TLS_FILE_BYTES_MAX as usize + 1]).unwrap();
    let e = load_ca_pem(&big).unwrap_err();
    assert!(matches!(e, TlsError::TooLarge { .. }), "{e}");
}

#[test]
fn plaintext_is_served_on_loopback_or_when_asked_only() {
    let loopback: SocketAddr = "127.0.0.1:50051".parse().unwrap();
    let v6: SocketAddr = "[::1]:50051".parse().unwrap();
    let public: SocketAddr = "0.0.0.0:50051".parse().unwrap();
    let none = TlsArgs::default();
    assert!(matches!(Transport::from_args(&none, &[loopback, v6]), Ok(Transport::Plaintext)));
    let e = Transport::from_args(&none, &[loopback, public]).unwrap_err();
    assert!(matches!(e, TlsError::PlaintextRefused { addr } if addr == public), "{e}");
    assert!(e.to_string().contains("--insecure-plaintext"), "{e}");
    let asked = TlsArgs { insecure_plaintext: true, ..TlsArgs::default() };
    assert!(matches!(Transport::from_args(&asked, &[public]), Ok(Transport::Plaintext)));
}

#[test]
fn tls_files_turn_tls_on_for_every_address() {
    let (_dir, pki) = pki();
    let args = TlsArgs { tls_cert_file: Some(pki.cert), tls_key_file: Some(pki.key), ..TlsArgs::default() };
    let public: SocketAddr = "0.0.0.0:50051".parse().unwrap();
    let t = Transport::from_args(&args, &[public]).unwrap();
    assert!(t.tls().is_some_and(|t| !t.mutual()));
    // The configuration is never printed (it holds the key).
    assert!(!format!("{t:?}").contains("PRIVATE"));
}
