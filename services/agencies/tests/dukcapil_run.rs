//! mpp-dukcapil wired by the kit's `run_with`, as the binary runs it: client
//! tokens checked on every RPC (not on health), the durable outbox between
//! the answer and JetStream, `/metrics`, and the refusal to start without
//! authentication.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mpp_agencies::dukcapil::{Dukcapil, AGENCY_ID, INFO, SERVING};
use mpp_agency_kit::auth::hash_token;
use mpp_agency_kit::testing::grpc_channel;
use mpp_agency_kit::{
    run_with, AgencyConfig, CommonArgs, Listeners, RunError, REASON_CODE_METADATA_KEY, STREAM_NAME,
};
use mpp_core::ids::AgencyId;
use mpp_proto::agency::dukcapil::v1 as pb;
use mpp_test_support::wait::{wait_for, wait_until};
use mpp_test_support::NatsServer;
use pb::dukcapil_service_client::DukcapilServiceClient;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const RIGHT_TOKEN: &str = "tok-right-5f0c2a9e-back-office";
const WRONG_TOKEN: &str = "tok-wrong-77aa10be-guess";
const DEADLINE_MS: u64 = 30_000;

fn args(nats_url: String, data_dir: PathBuf, tokens_file: Option<PathBuf>, insecure: bool) -> CommonArgs {
    CommonArgs {
        outbox_entries_max: 1000,
        outbox_drain_ms: 200,
        tokens_file,
        insecure_no_auth: insecure,
        ..mpp_agency_kit::testing::common_args(nats_url, data_dir)
    }
}

fn config(args: CommonArgs) -> AgencyConfig {
    AgencyConfig {
        agency_id: AgencyId::parse(AGENCY_ID).unwrap(),
        args,
        standards: INFO.builtin_standards().unwrap(),
        rpc_scopes: None,
        reaction: None,
        extra_metrics: None,
    }
}

/// A case the front office opened (these tests run no front office, so
/// they file into a given case; a walk-in filing is refused).
fn case() -> String {
    let region = mpp_core::ids::RegionCode::parse("1771").unwrap();
    mpp_core::ids::TrackingNumber::new(region, 42).unwrap().to_string()
}

fn permohonan() -> pb::Permohonan {
    pb::Permohonan {
        nomor_berkas: case(),
        layanan: pb::Layanan::Kk as i32,
        dokumen: vec!["Formulir F-1.01".into()],
        petugas: "ptg-07".into(),
    }
}

fn with_token(token: &str) -> tonic::Request<pb::Permohonan> {
    let mut req = tonic::Request::new(permohonan());
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

fn reason(s: &tonic::Status) -> Option<&str> {
    s.metadata().get(REASON_CODE_METADATA_KEY).and_then(|v| v.to_str().ok())
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_and_accepted_calls_reach_the_stream() {
    mpp_test_support::log::capture(tracing::Level::INFO);
    let nats = NatsServer::start().await.expect("start nats-server (is it on PATH?)");
    let js = async_nats::jetstream::new(nats.connect().await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    let hash: String = hash_token(RIGHT_TOKEN.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::File::create(&tokens).unwrap();
    writeln!(f, "# back offices of Disdukcapil Kota Bengkulu\nsiak-loket:{hash}").unwrap();

    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (grpc_addr, metrics_addr) = (grpc.local_addr().unwrap(), metrics.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let cfg = config(args(nats.url(), dir.path().join("outbox"), Some(tokens), false));
    let server =
        tokio::spawn(run_with(cfg, Dukcapil::server, Listeners { grpc, metrics: Some(metrics) }, async {
            let _ = stop_rx.await;
        }));
    let channel = grpc_channel(grpc_addr).await;
    let mut client = DukcapilServiceClient::new(channel.clone());

    // Health needs no token.
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest { service: SERVING[0].to_owned() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    // No token, a wrong token: UNAUTHENTICATED with the reason code.
    let missing = client.ajukan_permohonan(permohonan()).await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::Unauthenticated);
    assert_eq!(reason(&missing), Some("UNAUTHENTICATED"));
    let wrong = client.ajukan_permohonan(with_token(WRONG_TOKEN)).await.unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
    assert_eq!(reason(&wrong), Some("UNAUTHENTICATED"));

    // The right token: accepted, event ids in the answer.
    let filed = client.ajukan_permohonan(with_token(RIGHT_TOKEN)).await.unwrap().into_inner();
    assert_eq!(filed.event_ids.len(), 1);

    // A walk-in (no tracking number) needs a front office, which this
    // service has none of: FAILED_PRECONDITION, nothing published.
    let mut walk_in = with_token(RIGHT_TOKEN);
    walk_in.get_mut().nomor_berkas = String::new();
    let refused = client.ajukan_permohonan(walk_in).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
    assert_eq!(reason(&refused), Some("FRONT_OFFICE_NOT_CONFIGURED"));

    // The refusals are logged with peer, RPC and reason, never a token; the
    // accepted call's log lines name the client system.
    let log = mpp_test_support::log::captured_text();
    let refusals: Vec<&str> = log.lines().filter(|l| l.contains("Unauthenticated call refused")).collect();
    assert_eq!(refusals.len(), 2, "{log}");
    for line in &refusals {
        assert!(line.contains("/mpp.agency.dukcapil.v1.DukcapilService/AjukanPermohonan"), "{line}");
        assert!(line.contains("peer=127.0.0.1:"), "{line}");
    }
    assert!(refusals[0].contains("no authorization header"), "{}", refusals[0]);
    assert!(refusals[1].contains("unknown token"), "{}", refusals[1]);
    assert!(!log.contains(WRONG_TOKEN) && !log.contains(RIGHT_TOKEN), "a token was logged:\n{log}");
    assert!(log.lines().any(|l| l.contains("client=siak-loket") && l.contains("Application filed")), "{log}");

    // The outbox publishes the standards and the filing to the stream, and
    // nothing of the refused walk-in.
    let mut stream = wait_for("the events in the stream", Duration::from_millis(DEADLINE_MS), || async {
        let mut s = js.get_stream(STREAM_NAME).await?;
        let messages = s.info().await?.state.messages;
        Ok((messages >= 4).then_some(s))
    })
    .await
    .unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 4, "3 standards, application_filed");
    for (seq, id) in [(4u64, &filed.event_ids[0])] {
        let msg = stream.get_raw_message(seq).await.unwrap();
        let header = msg.headers.get(async_nats::header::NATS_MESSAGE_ID).map(|v| v.as_str().to_owned());
        assert_eq!(header.as_deref(), Some(id.as_str()));
    }

    // /metrics reports the outbox and the refusals.
    let metrics = wait_until("the outbox to drain", Duration::from_millis(DEADLINE_MS), || async {
        let m = http_get(metrics_addr, "/metrics").await;
        Ok((m.contains("\nmpp_outbox_depth 0\n"), m))
    })
    .await
    .unwrap();
    assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
    assert!(metrics.contains("text/plain; version=0.0.4"), "{metrics}");
    for line in [
        "\nmpp_outbox_oldest_age_seconds 0.000\n",
        "\nmpp_outbox_published_total 4\n",
        "\nmpp_outbox_publish_errors_total 0\n",
        "\nmpp_auth_failures_total 2\n",
        "# TYPE mpp_outbox_published_total counter\n",
    ] {
        assert!(metrics.contains(line), "{line:?} missing from:\n{metrics}");
    }
    assert!(http_get(metrics_addr, "/other").await.starts_with("HTTP/1.1 404"));

    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn without_tokens_it_refuses_to_start_unless_told_to_run_insecurely() {
    mpp_test_support::log::capture(tracing::Level::INFO);
    let dir = tempfile::tempdir().unwrap();
    // A NATS URL nobody listens on: the service starts anyway.
    let url = format!("nats://127.0.0.1:{}", mpp_test_support::free_port().unwrap());
    let listeners = || async {
        Listeners { grpc: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(), metrics: None }
    };
    let refused = run_with(
        config(args(url.clone(), dir.path().join("a"), None, false)),
        Dukcapil::server,
        listeners().await,
        async {},
    )
    .await;
    assert!(matches!(refused, Err(RunError::NoAuth)), "{refused:?}");
    assert!(!dir.path().join("a").exists(), "nothing opened before the refusal");

    // An unusable front-office token file stops it before anything is opened.
    let mut bad_front_office = args(url.clone(), dir.path().join("p"), None, true);
    bad_front_office.front_office.front_office_url = Some("http://127.0.0.1:50060".into());
    bad_front_office.front_office.front_office_token_file = Some(dir.path().join("no-such-token"));
    let refused = run_with(config(bad_front_office), Dukcapil::server, listeners().await, async {}).await;
    assert!(matches!(refused, Err(RunError::FrontOffice(_))), "{refused:?}");
    assert!(refused.unwrap_err().to_string().contains("no-such-token"));
    assert!(!dir.path().join("p").exists(), "nothing opened before the refusal");

    // With --insecure-no-auth a call without a token is accepted into the
    // outbox although NATS is down.
    let l = listeners().await;
    let addr = l.grpc.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(run_with(
        config(args(url, dir.path().join("b"), None, true)),
        Dukcapil::server,
        l,
        async {
            let _ = stop_rx.await;
        },
    ));
    let channel = grpc_channel(addr).await;
    let filed =
        DukcapilServiceClient::new(channel).ajukan_permohonan(permohonan()).await.unwrap().into_inner();
    assert_eq!(filed.event_ids.len(), 1);
    assert!(mpp_test_support::log::captured_text().contains("AUTHENTICATION DISABLED"));
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
}
