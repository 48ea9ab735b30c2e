//! Service standards from catalogue files, end to end: `mpp-pln` started as
//! its binary starts (the kit's `run_with`, a durable outbox in one data
//! directory kept across restarts) against a real nats-server.
//!
//! 1. The first start publishes the built-in catalogue (both services, v1).
//! 2. A restart with `--catalogue-file` raising `pasang-baru` to v2 (new
//!    completion time, fee and fiktif positif) publishes exactly that
//!    standard, with the deterministic id of v2; it decodes to the new values.
//! 3. A restart with the same file adds no standard to the stream: the
//!    application filed next directly follows the v2 standard. (That the
//!    service does not even queue it again, rather than JetStream dropping a
//!    duplicate, is shown by the kit's tests with an in-memory publisher.)
//! 4. A restart with content changed under the same version refuses to start,
//!    and publishes nothing.

mod common;

use common::{read_stream, Stored};
use std::path::Path;

use mpp_agencies::{cli, pln};
use mpp_agency_kit::testing::grpc_channel;
use mpp_agency_kit::{run_with, standard_event_id, Listeners, RunError, StandardsError};
use mpp_core::ids::ServiceId;
use mpp_proto::agency::pln::v1 as pb;
use mpp_proto::v1 as ev;
use mpp_test_support::NatsServer;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// `mpp-pln` running in this process.
struct Running {
    addr: std::net::SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), RunError>>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// The flags of `mpp-pln` on data directory `data`, with `--catalogue-file
/// catalogue` when given.
fn args(nats: &str, data: &Path, catalogue: Option<&Path>) -> mpp_agency_kit::CommonArgs {
    let mut argv = vec![
        pln::INFO.binary.to_owned(),
        "--nats-url".to_owned(),
        nats.to_owned(),
        "--data-dir".to_owned(),
        data.display().to_string(),
        "--insecure-no-auth".to_owned(),
        "--outbox-drain-ms".to_owned(),
        "5000".to_owned(),
    ];
    if let Some(c) = catalogue {
        argv.extend(["--catalogue-file".to_owned(), c.display().to_string()]);
    }
    cli::try_parse_args_from(&pln::INFO, argv).unwrap()
}

/// Starts `mpp-pln` as its binary does (configuration from the flags,
/// including the catalogue), on 127.0.0.1:0.
async fn start(nats: &str, data: &Path, catalogue: Option<&Path>) -> Running {
    let config = pln::INFO.config(args(nats, data, catalogue)).unwrap();
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = grpc.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run_with(config, pln::Pln::server, Listeners { grpc, metrics: None }, async {
        let _ = stopped.await;
    }));
    Running { addr, stop, task }
}

fn standard(s: &Stored) -> &ev::ServiceStandardPublished {
    match &s.envelope.body {
        Some(ev::envelope::Body::ServiceStandardPublished(p)) => p,
        other => panic!("{}: not a standard: {other:?}", s.subject),
    }
}

fn standard_id(service: &str, version: u32) -> String {
    standard_event_id(&pln::INFO.agency_id().unwrap(), &ServiceId::parse(service).unwrap(), version)
        .hyphenated()
        .to_string()
}

/// The shipped PLN catalogue with `pasang-baru` raised to version 2: 7
/// working days, Rp1.500.000, fiktif positif.
fn pasang_baru_v2() -> String {
    let text = pln::INFO.catalogue.text;
    let edits = [
        ("version = 1", "version = 2"),
        ("completion_working_days = 5", "completion_working_days = 7"),
        ("fee_idr = 1_259_700", "fee_idr = 1_500_000"),
        ("fiktif_positif = false", "fiktif_positif = true"),
    ];
    edits.iter().fold(text.to_owned(), |t, (from, to)| {
        let next = t.replacen(from, to, 1);
        assert_ne!(next, t, "{from}");
        next
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raised_version_reaches_the_stream_once_and_a_silent_change_refuses_to_start() {
    let nats = NatsServer::start().await.expect("start nats-server (is it on PATH?)");
    let js = async_nats::jetstream::new(nats.connect().await.unwrap());
    let url = nats.url();
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();

    // 1. The built-in catalogue: both standards, version 1.
    let running = start(&url, data.path(), None).await;
    let stored = read_stream(&js, 2).await;
    running.stop().await;
    let ids: Vec<&str> = stored.iter().map(|s| s.msg_id.as_deref().unwrap_or_default()).collect();
    assert_eq!(ids, [standard_id("pasang-baru", 1), standard_id("tambah-daya", 1)]);
    assert_eq!(standard(&stored[0]).fee_idr, 1_259_700);

    // 2. pasang-baru v2 from --catalogue-file: exactly one more message.
    let v2 = files.path().join("pln.toml");
    std::fs::write(&v2, pasang_baru_v2()).unwrap();
    let running = start(&url, data.path(), Some(&v2)).await;
    let stored = read_stream(&js, 3).await;
    running.stop().await;
    let third = &stored[2];
    assert_eq!(third.subject, "mpp.events.pln.pasang-baru");
    assert_eq!(third.msg_id.as_deref(), Some(standard_id("pasang-baru", 2).as_str()));
    assert_eq!(Some(third.envelope.event_id.as_str()), third.msg_id.as_deref());
    let s = standard(third);
    assert_eq!(
        (s.version, s.completion_working_days, s.fee_idr, s.fiktif_positif),
        (2, 7, 1_500_000, true),
        "{s:?}"
    );
    assert_eq!(s.name_id, "Pasang Baru Listrik");
    assert_eq!(s.requirements.len(), 4);

    // 3. The same file again: no standard reaches the stream. The
    // application filed now (into a case the front office opened) follows
    // the v2 standard directly (the outbox publishes in order, and
    // standards go in before the first call).
    let running = start(&url, data.path(), Some(&v2)).await;
    let region = mpp_core::ids::RegionCode::parse("1771").unwrap();
    let case = mpp_core::ids::TrackingNumber::new(region, 42).unwrap().to_string();
    let channel = grpc_channel(running.addr).await;
    let filed = pb::pln_service_client::PlnServiceClient::new(channel)
        .daftar_permohonan(pb::Permohonan {
            nomor_berkas: case.clone(),
            jenis_layanan: pb::JenisLayanan::PasangBaru as i32,
            dokumen: vec!["KTP-el".into()],
            petugas: "pln-11".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let stored = read_stream(&js, 4).await;
    running.stop().await;
    let ids: Vec<&str> = stored[3..].iter().map(|s| s.msg_id.as_deref().unwrap_or_default()).collect();
    assert_eq!(ids, filed.event_ids.iter().map(String::as_str).collect::<Vec<_>>());

    // 4. Content changed under the same version: refused before anything is
    // opened, so nothing can be published.
    let silent = files.path().join("silent.toml");
    std::fs::write(&silent, pasang_baru_v2().replacen("fee_idr = 1_500_000", "fee_idr = 1_600_000", 1))
        .unwrap();
    let running = start(&url, data.path(), Some(&silent)).await;
    let refused = running.task.await.unwrap();
    match &refused {
        Err(RunError::Standards(StandardsError::Conflicts { conflicts, .. })) => {
            assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let msg = refused.unwrap_err().to_string();
    assert!(
        msg.contains("catalogue changed for service pasang-baru without bumping version (published v2"),
        "{msg}"
    );
    read_stream(&js, 4).await;
}
