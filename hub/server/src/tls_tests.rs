//! TLS on the hub's gRPC and HTTP servers, end to end (`serve` with the
//! edge's TLS listeners).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use clap::Parser;
use mpp_edge::tls::client_tls_config;
use mpp_edge::tls::test_pki::{http_get, https_get, TestPki};
use mpp_proto::v1::cases_service_client::CasesServiceClient;
use mpp_proto::v1::GetCaseRequest;
use mpp_test_support::wait::{wait_for, Fatal};
use mpp_test_support::{free_addr, free_port, NatsServer};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_answers_over_grpc_and_https_to_clients_trusting_its_ca_only() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path()).unwrap();
    let nats = NatsServer::start().await.unwrap();
    nats.connect().await.unwrap();
    // Bound here, handed to the in-process hub: no port can be taken between.
    let listeners = crate::server::Listeners {
        grpc: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        http: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let (grpc, http) = (listeners.grpc.local_addr().unwrap(), listeners.http.local_addr().unwrap());
    let (cert, key) = (pki.cert.display().to_string(), pki.key.display().to_string());
    let args = serve_args(
        &nats.url(),
        &dir.path().join("hub"),
        grpc,
        http,
        &["--tls-cert-file", &cert, "--tls-key-file", &key],
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let hub = tokio::spawn(crate::server::run(args, listeners, async {
        let _ = stopped.await;
    }));

    // HTTPS: poll /healthz until it answers (or the hub stops).
    let answered =
        wait_for("the hub to answer over HTTPS", Duration::from_millis(START_DEADLINE_MS), || async {
            if hub.is_finished() {
                return Err(Fatal("the hub stopped".to_owned()).into());
            }
            let answer = https_get(http, "localhost", &pki.ca, "/healthz", &[]).await;
            answer.map(Some).map_err(anyhow::Error::msg)
        })
        .await;
    let healthz = match answered {
        Ok(answer) => answer,
        Err(e) if hub.is_finished() => panic!("the hub stopped: {:?} ({e:#})", hub.await),
        Err(e) => panic!("the hub never answered over HTTPS: {e:#}"),
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
    std::fs::write(&bad_key, format!("-----BEGIN PRIVATE KEY-----\n{secret}\n-----END PRIVATE KEY-----\n"))
        .unwrap();
    let cert = pki.cert.display().to_string();
    let data = dir.path().join("hub");
    for key in [bad_key.clone(), dir.path().join("absent.key"), pki.other_key.clone()] {
        let key_arg = key.display().to_string();
        let args = serve_args(
            // Never contacted: the hub stops before connecting.
            "nats://127.0.0.1:1",
            &data,
            free_addr().unwrap(),
            free_addr().unwrap(),
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
    let args = serve_args("nats://127.0.0.1:1", &dir.path().join("hub"), free_addr().unwrap(), public, &[]);
    let e = format!("{:#}", crate::server::serve(args, std::future::pending()).await.unwrap_err());
    assert!(e.contains("--insecure-plaintext") && e.contains(&public.to_string()), "{e}");
}
