//! mpp-frontoffice as the binary runs it, with a tokens file: each RPC is
//! refused with PERMISSION_DENIED / SCOPE_MISSING to a token without its
//! scope and allowed to one with it; a line without scopes (the format
//! before scopes) may call every RPC; an agency service's walk-in token
//! opens walk-in cases and nothing else; reads and erasures are
//! rate-limited per token; a scope the front office does not know stops it at start.

use std::path::{Path, PathBuf};

use mpp_agency_kit::auth::hash_token;
use mpp_agency_kit::testing::grpc_channel;
use mpp_agency_kit::{CommonArgs, Listeners, REASON_CODE_METADATA_KEY};
use mpp_frontoffice::{run_with, FrontOfficeArgs, RunError, RETRY_AFTER_METADATA_KEY};
use mpp_proto::frontoffice::v1 as pb;
use mpp_test_support::NatsServer;
use pb::front_office_service_client::FrontOfficeServiceClient;
use support::{common, front};
use tonic::{Code, Request, Status};

mod support;

const NIK: &str = "1771014501900001";

fn hex(h: [u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// One client per scope, one with all three (a line without scopes).
fn tokens_file(dir: &Path, extra: &str) -> PathBuf {
    let line =
        |id: &str, scopes: &str| format!("{id}:{}{scopes}\n", hex(hash_token(format!("t-{id}").as_bytes())));
    let text = [
        line("opener", ":cases:open"),
        line("reader", ":personal-data:read"),
        line("eraser", ":personal-data:erase"),
        line("desk-all", ""),
        extra.to_owned(),
    ]
    .concat();
    let path = dir.join("tokens");
    std::fs::write(&path, text).unwrap();
    path
}

fn common_with(nats_url: String, dir: &Path, tokens: PathBuf) -> CommonArgs {
    CommonArgs { tokens_file: Some(tokens), insecure_no_auth: false, ..common(nats_url, dir.join("data")) }
}

/// Small limits: bursts of 2 reads and 1 erasure per token.
fn front_limited() -> FrontOfficeArgs {
    FrontOfficeArgs {
        personal_data_reads_per_minute: 1,
        personal_data_reads_burst: 2,
        personal_data_erasures_per_minute: 1,
        personal_data_erasures_burst: 1,
        insecure_dev_keys: true,
        ..front(None)
    }
}

fn with_token<T>(token: &str, message: T) -> Request<T> {
    let mut req = Request::new(message);
    req.metadata_mut().insert("authorization", format!("Bearer t-{token}").parse().unwrap());
    req
}

fn reason(s: &Status) -> &str {
    s.metadata().get(REASON_CODE_METADATA_KEY).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn assert_scope_missing(result: Result<impl std::fmt::Debug, Status>, what: &str) {
    let s = result.expect_err(what);
    assert_eq!((s.code(), reason(&s)), (Code::PermissionDenied, "SCOPE_MISSING"), "{what}: {s:?}");
}

fn open(petugas: &str) -> pb::PembukaanBerkas {
    pb::PembukaanBerkas {
        nik: NIK.into(),
        nama: "Siti Nurhaliza".into(),
        telepon: String::new(),
        petugas: petugas.into(),
        surel: String::new(),
        bahasa: String::new(),
        tanpa_notifikasi: false,
    }
}

fn read(nomor: &str) -> pb::PermintaanDataPribadi {
    pb::PermintaanDataPribadi { nomor_berkas: nomor.into(), petugas: "ptg-1".into() }
}

fn erase(nomor: &str) -> pb::PenghapusanDataPribadi {
    pb::PenghapusanDataPribadi { nomor_berkas: nomor.into(), petugas: "ptg-1".into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rpc_needs_its_scope_and_reads_and_erasures_are_rate_limited() {
    let nats = NatsServer::start().await.expect("start nats-server (is it on PATH?)");
    let dir = tempfile::tempdir().unwrap();
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = grpc.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run_with(
        common_with(
            nats.url(),
            dir.path(),
            tokens_file(
                dir.path(),
                &format!("walk-in-dukcapil:{}:cases:open-walk-in\n", hex(hash_token(b"t-walk-in-dukcapil"))),
            ),
        ),
        front_limited(),
        Listeners { grpc, metrics: None },
        async {
            let _ = stopped.await;
        },
    ));
    let channel = grpc_channel(addr).await;
    let mut c = FrontOfficeServiceClient::new(channel);

    // BukaBerkas: cases:open.
    for who in ["reader", "eraser"] {
        assert_scope_missing(c.buka_berkas(with_token(who, open("ptg-1"))).await, who);
    }
    let case = c.buka_berkas(with_token("opener", open("ptg-1"))).await.unwrap().into_inner();
    let second = c.buka_berkas(with_token("desk-all", open("ptg-2"))).await.unwrap().into_inner();

    // LihatDataPribadi: personal-data:read.
    for who in ["opener", "eraser"] {
        assert_scope_missing(c.lihat_data_pribadi(with_token(who, read(&case.nomor_berkas))).await, who);
    }
    let d = c.lihat_data_pribadi(with_token("reader", read(&case.nomor_berkas))).await.unwrap();
    assert_eq!(d.into_inner().nama, "Siti Nurhaliza");
    c.lihat_data_pribadi(with_token("desk-all", read(&case.nomor_berkas))).await.unwrap();
    // A burst of 2 per token, whatever officer id the request names.
    c.lihat_data_pribadi(with_token("reader", read(&second.nomor_berkas))).await.unwrap();
    let s = c.lihat_data_pribadi(with_token("reader", read(&case.nomor_berkas))).await.unwrap_err();
    assert_eq!((s.code(), reason(&s)), (Code::ResourceExhausted, "RATE_LIMITED"), "{s:?}");
    assert!(s.metadata().get(RETRY_AFTER_METADATA_KEY).is_some());

    // HapusDataPribadi: personal-data:erase.
    for who in ["opener", "reader"] {
        assert_scope_missing(c.hapus_data_pribadi(with_token(who, erase(&case.nomor_berkas))).await, who);
    }
    let e = c.hapus_data_pribadi(with_token("eraser", erase(&case.nomor_berkas))).await.unwrap();
    assert_eq!(e.into_inner().nomor_berkas.len(), 2, "both cases of the citizen");
    let s = c.hapus_data_pribadi(with_token("eraser", erase(&case.nomor_berkas))).await.unwrap_err();
    assert_eq!((s.code(), reason(&s)), (Code::ResourceExhausted, "RATE_LIMITED"), "{s:?}");
    c.hapus_data_pribadi(with_token("desk-all", erase(&second.nomor_berkas))).await.unwrap();

    // BukaBerkasInstansi: cases:open-walk-in, an agency service's token,
    // which opens nothing else.
    let walk_in = || pb::PembukaanBerkasInstansi { petugas: "dkc-ptg-1".into() };
    for who in ["opener", "reader", "eraser"] {
        assert_scope_missing(c.buka_berkas_instansi(with_token(who, walk_in())).await, who);
    }
    let w = c.buka_berkas_instansi(with_token("walk-in-dukcapil", walk_in())).await.unwrap().into_inner();
    assert!(!w.nomor_berkas.is_empty() && !w.pin.is_empty() && !w.event_id.is_empty(), "{w:?}");
    c.buka_berkas_instansi(with_token("desk-all", walk_in())).await.unwrap();
    assert_scope_missing(c.buka_berkas(with_token("walk-in-dukcapil", open("ptg-1"))).await, "walk-in");
    assert_scope_missing(
        c.lihat_data_pribadi(with_token("walk-in-dukcapil", read(&case.nomor_berkas))).await,
        "walk-in",
    );

    // No token, or a wrong one: UNAUTHENTICATED, before any scope.
    let s = c.buka_berkas(Request::new(open("ptg-1"))).await.unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated);
    let s = c.hapus_data_pribadi(with_token("nobody", erase(&case.nomor_berkas))).await.unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated);

    drop(c);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_scope_the_front_office_does_not_know_stops_it_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let typo = format!("typo:{}:personal-data:raed\n", hex(hash_token(b"t-typo")));
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = run_with(
        common_with("nats://127.0.0.1:1".into(), dir.path(), tokens_file(dir.path(), &typo)),
        front_limited(),
        Listeners { grpc, metrics: None },
        async {},
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RunError::Kit(mpp_agency_kit::RunError::Tokens(_))), "{text}");
    assert!(text.contains("line 5") && !text.contains("raed"), "{text}");
    assert!(text.contains("cases:open,personal-data:read,personal-data:erase"), "{text}");
}
