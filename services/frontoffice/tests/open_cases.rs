//! mpp-frontoffice wired by the kit as the binary runs it, against a real
//! nats-server: concurrent cases get distinct counter-allocated tracking
//! numbers, every case_opened (each followed by its personal_data_sealed)
//! reaches MPP_EVENTS with Nats-Msg-Id, a restart continues the counter, and
//! nothing personal reaches the stream or the log in the clear.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mpp_agency_kit::testing::grpc_channel;
use mpp_agency_kit::{CommonArgs, Listeners, STREAM_NAME};
use mpp_core::ids::{RegionCode, TrackingNumber};
use mpp_frontoffice::nik_key::hmac_sha256;
use mpp_frontoffice::{run_with, FrontOfficeArgs, RunError};
use mpp_proto::frontoffice::v1 as pb;
use mpp_proto::v1 as ev;
use mpp_test_support::{free_port, wait_for, NatsServer};
use pb::front_office_service_client::FrontOfficeServiceClient;
use prost::Message as _;
use support::{common, front};

mod support;

const DEADLINE_MS: u64 = 30_000;
const NIK_KEY: &[u8] = b"integration-test-nik-key-0123456789abcdef";
const CASES: usize = 50;

/// The personal data of citizen `i`.
struct Citizen {
    nik: String,
    nama: String,
    telepon: String,
    telepon_digits: String,
}

fn citizen(i: usize) -> Citizen {
    // A woman born 5 January 1990 in Kota Bengkulu, serial i + 1.
    let nik = format!("177101450190{:04}", i + 1);
    let telepon = format!("+62 813-{:04}-4321", 7000 + i);
    let telepon_digits = telepon.chars().filter(char::is_ascii_digit).collect();
    Citizen { nik, nama: format!("Kirana Anjani Putri {i}"), telepon, telepon_digits }
}

fn request(c: &Citizen) -> pb::PembukaanBerkas {
    pb::PembukaanBerkas {
        nik: c.nik.clone(),
        nama: c.nama.clone(),
        telepon: c.telepon.clone(),
        petugas: "ptg-loket-2".into(),
        surel: format!("kirana.{}@contoh.id", c.telepon_digits),
        bahasa: String::new(),
        tanpa_notifikasi: false,
    }
}

/// A running front office: its address, its stop switch and its task.
struct Running {
    client: FrontOfficeServiceClient<tonic::transport::Channel>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), RunError>>,
}

async fn start(common: CommonArgs, args: FrontOfficeArgs) -> Running {
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = grpc.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run_with(common, args, Listeners { grpc, metrics: None }, async {
        let _ = stopped.await;
    }));
    let channel = grpc_channel(addr).await;
    Running { client: FrontOfficeServiceClient::new(channel), stop, task }
}

impl Running {
    async fn stop(self) {
        drop(self.client);
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

async fn open_concurrently(r: &Running, citizens: impl Iterator<Item = usize>) -> Vec<pb::BerkasDibuka> {
    let calls: Vec<_> = citizens
        .map(|i| {
            let mut client = r.client.clone();
            tokio::spawn(async move { client.buka_berkas(request(&citizen(i))).await.unwrap().into_inner() })
        })
        .collect();
    let mut out = Vec::new();
    for c in calls {
        out.push(c.await.unwrap());
    }
    out
}

async fn wait_for_messages(
    js: &async_nats::jetstream::Context,
    n: u64,
) -> async_nats::jetstream::stream::Stream {
    let what = format!("{n} events to reach the stream");
    wait_for(&what, Duration::from_millis(DEADLINE_MS), || async move {
        let mut s = js.get_stream(STREAM_NAME).await?;
        let messages = s.info().await.map(|i| i.state.messages).unwrap_or(0);
        assert!(messages <= n, "{messages} messages in the stream, expected {n}");
        Ok((messages == n).then_some(s))
    })
    .await
    .unwrap()
}

fn write_file(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cases_get_unique_numbers_that_survive_a_restart() {
    mpp_test_support::log::capture(tracing::Level::TRACE);
    let nats = NatsServer::start().await.expect("start nats-server (is it on PATH?)");
    let js = async_nats::jetstream::new(nats.connect().await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let key = write_file(dir.path(), "nik.key", &[NIK_KEY, b"\n"].concat());
    let data = dir.path().join("data");
    let cfg = || (common(nats.url(), data.clone()), front(Some(key.clone())));

    // 50 cases at once.
    let (c, a) = cfg();
    let running = start(c, a).await;
    let first = open_concurrently(&running, 0..CASES).await;
    let serials: BTreeSet<u64> =
        first.iter().map(|r| TrackingNumber::parse(&r.nomor_berkas).unwrap().serial()).collect();
    assert_eq!(serials, (1..=CASES as u64).collect(), "distinct, dense, from the range start");
    for r in &first {
        let t = TrackingNumber::parse(&r.nomor_berkas).expect("a valid check digit");
        assert_eq!(t.to_string(), r.nomor_berkas);
        assert_eq!(t.region(), RegionCode::parse("1771").unwrap());
        assert_eq!(r.pin.len(), mpp_core::pin::STRONG_PIN_CHARS);
        assert!(r.tanda_terima.iter().any(|l| l == &format!("Nomor berkas / Tracking number: {t}")));
    }

    // Every case_opened reaches the stream with its event id as Nats-Msg-Id,
    // followed (in the same outbox batch) by the case's personal_data_sealed.
    let stream = wait_for_messages(&js, 2 * CASES as u64).await;
    let mut seen_cases = BTreeSet::new();
    let mut seen_ids = BTreeSet::new();
    let mut nik_hashes = BTreeSet::new();
    let mut sealed_cases = BTreeSet::new();
    for seq in 1..=2 * CASES as u64 {
        let msg = stream.get_raw_message(seq).await.unwrap();
        assert_eq!(msg.subject.as_str(), "mpp.events.mpp-1771.loket");
        let env = ev::Envelope::decode(msg.payload.clone()).unwrap();
        let header = msg.headers.get(async_nats::header::NATS_MESSAGE_ID).map(|v| v.as_str().to_owned());
        assert_eq!(header.as_deref(), Some(env.event_id.as_str()));
        assert_eq!((env.agency_id.as_str(), env.service_id.as_str()), ("mpp-1771", "loket"));
        let opened = match &env.body {
            Some(ev::envelope::Body::CaseOpened(o)) => {
                assert_eq!(o.pin_verifier.len(), mpp_core::pin::PIN_VERIFIER_V2_BYTES);
                nik_hashes.insert(o.nik_keyed_hash.clone());
                true
            }
            Some(ev::envelope::Body::PersonalDataSealed(p)) => {
                assert_eq!((p.key_id.len(), p.nonce.len()), (16, 12));
                assert!(seen_cases.contains(&env.case_id), "sealed after its case_opened");
                assert!(sealed_cases.insert(env.case_id.clone()), "one sealing per case");
                false
            }
            other => panic!("{other:?}"),
        };
        for i in 0..CASES {
            let c = citizen(i);
            for needle in [&c.nik, &c.nama, &c.telepon, &c.telepon_digits] {
                assert!(!contains(&msg.payload, needle.as_bytes()), "{needle:?} in the stream at {seq}");
            }
        }
        if opened {
            seen_cases.insert(env.case_id);
            seen_ids.insert(env.event_id);
        }
    }
    assert_eq!(seen_cases, first.iter().map(|r| r.nomor_berkas.clone()).collect());
    assert_eq!(sealed_cases, seen_cases, "every case is sealed");
    assert_eq!(seen_ids, first.iter().map(|r| r.event_id.clone()).collect());
    let expected_hashes: BTreeSet<Vec<u8>> =
        (0..CASES).map(|i| hmac_sha256(NIK_KEY, citizen(i).nik.as_bytes()).to_vec()).collect();
    assert_eq!(nik_hashes, expected_hashes, "HMAC-SHA-256 of each NIK under the trimmed key file");
    running.stop().await;

    // A restart on the same data directory continues the counter.
    let (c, a) = cfg();
    let running = start(c, a).await;
    let second = open_concurrently(&running, CASES..CASES + 5).await;
    let more: BTreeSet<u64> =
        second.iter().map(|r| TrackingNumber::parse(&r.nomor_berkas).unwrap().serial()).collect();
    assert_eq!(more, (CASES as u64 + 1..=CASES as u64 + 5).collect(), "no serial reused");
    wait_for_messages(&js, 2 * (CASES as u64 + 5)).await;
    running.stop().await;

    // Nothing personal was logged, by the service, the kit or a dependency.
    let log = mpp_test_support::log::captured_text();
    assert!(log.lines().filter(|l| l.contains("Case opened")).count() >= CASES + 5, "{log}");
    assert!(log.contains("Tracking-number counter opened"), "{log}");
    for i in 0..CASES + 5 {
        let c = citizen(i);
        for needle in [&c.nik, &c.nama, &c.telepon, &c.telepon_digits] {
            assert!(!log.contains(needle.as_str()), "{needle:?} was logged");
        }
    }
    assert!(!log.contains("Kirana"), "a name was logged");
}

#[tokio::test]
async fn it_refuses_to_start_without_keys_before_opening_anything() {
    mpp_test_support::log::capture(tracing::Level::TRACE);
    let dir = tempfile::tempdir().unwrap();
    // A NATS URL nobody listens on: nothing gets that far anyway.
    let url = format!("nats://127.0.0.1:{}", free_port().unwrap());
    let key = write_file(dir.path(), "nik.key", NIK_KEY);
    let pepper = write_file(dir.path(), "pepper", b"integration-test-pepper-0123");
    let short = write_file(dir.path(), "short.key", b"too short");
    let data = dir.path().join("data");
    let listeners = || async {
        Listeners { grpc: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(), metrics: None }
    };

    let no_key = run_with(
        common(url.clone(), data.clone()),
        FrontOfficeArgs { pin_pepper_file: Some(pepper.clone()), ..front(None) },
        listeners().await,
        async {},
    )
    .await;
    assert!(matches!(no_key, Err(RunError::NikKey(_))), "{no_key:?}");
    assert!(no_key.unwrap_err().to_string().contains("--insecure-dev-keys"));
    let no_pepper = run_with(
        common(url.clone(), data.clone()),
        FrontOfficeArgs { pin_pepper_file: None, ..front(Some(key.clone())) },
        listeners().await,
        async {},
    )
    .await;
    assert!(matches!(no_pepper, Err(RunError::NoPepper)), "{no_pepper:?}");
    let bad_key =
        run_with(common(url.clone(), data.clone()), front(Some(short)), listeners().await, async {}).await;
    assert!(matches!(bad_key, Err(RunError::NikKey(_))), "{bad_key:?}");
    let mut bad_range = front(Some(key.clone()));
    bad_range.serial_range_end = 5_000_000_001;
    let refused = run_with(common(url.clone(), data.clone()), bad_range, listeners().await, async {}).await;
    assert!(matches!(refused, Err(RunError::Range(_))), "{refused:?}");
    let mut bad_serial_key = front(Some(key.clone()));
    bad_serial_key.serial_key_file = Some(data.with_extension("serial-key-missing"));
    let refused =
        run_with(common(url.clone(), data.clone()), bad_serial_key, listeners().await, async {}).await;
    let Err(RunError::SerialKey(e)) = &refused else { panic!("{refused:?}") };
    assert!(e.to_string().contains("serial-key-missing"), "{e}");
    let mut no_auth = common(url.clone(), data.clone());
    no_auth.insecure_no_auth = false;
    let refused = run_with(no_auth, front(Some(key.clone())), listeners().await, async {}).await;
    assert!(matches!(refused, Err(RunError::Kit(mpp_agency_kit::RunError::NoAuth))), "{refused:?}");
    let mut with_catalogue = common(url.clone(), data.clone());
    with_catalogue.catalogue_file = Some(data.join("catalogue.toml"));
    let refused = run_with(with_catalogue, front(Some(key.clone())), listeners().await, async {}).await;
    assert!(matches!(refused, Err(RunError::CatalogueNotUsed)), "{refused:?}");
    let mut with_front_office = common(url.clone(), data.clone());
    with_front_office.front_office.front_office_url = Some("http://127.0.0.1:1".into());
    with_front_office.front_office.front_office_token_file = Some(data.join("token"));
    let refused = run_with(with_front_office, front(Some(key.clone())), listeners().await, async {}).await;
    assert!(matches!(refused, Err(RunError::FrontOfficeLinkNotUsed)), "{refused:?}");
    assert!(!data.exists(), "nothing opened before a refusal");

    // With --insecure-dev-keys it starts (NATS down: the case waits in the
    // outbox) and says loudly that the keys are public.
    let running =
        start(common(url, data.clone()), FrontOfficeArgs { insecure_dev_keys: true, ..front(None) }).await;
    let mut client = running.client.clone();
    let r = client.buka_berkas(request(&citizen(0))).await.unwrap().into_inner();
    assert_eq!(TrackingNumber::parse(&r.nomor_berkas).unwrap().serial(), 1);
    running.stop().await;
    let log = mpp_test_support::log::captured_text();
    assert!(log.contains("INSECURE DEVELOPMENT NIK KEY"), "{log}");
    assert!(log.contains("PUBLIC development PIN pepper"), "{log}");
    assert!(data.join("counter").is_dir());
}
