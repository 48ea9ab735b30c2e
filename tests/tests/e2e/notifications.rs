//! Notifications to citizens (issue 18, item 3): the front office hears of
//! the events of the cases it opened over the hub's case-event feed and
//! tells the citizen by e-mail, through a REAL SMTP server process
//! (`tests/tools/smtp_sink.py`, aiosmtpd, SMTP over TCP, one JSON file per
//! message), and by SMS through a local HTTP gateway (this test, recording
//! each request and answering as the webhook contract of
//! docs/NOTIFICATIONS.md says).
//!
//! Real processes: a private nats-server, `mpp-hub serve` (the test
//! registrar's registry, the front office's feed token), `mpp-frontoffice`
//! (following the hub, quiet hours off so the test passes at any hour) and
//! `mpp-dpmptsp`, both signing. The journey, on DPMPTSP's PBG:
//!
//! - case A (English): documents requested, the retribution assessed, the
//!   PBG issued: three e-mails and three SMS, in English, with the link and
//!   where to collect;
//! - case B (Bahasa Indonesia): rejected for the spatial plan: the reason in
//!   words;
//! - case E: the citizen declined notifications: nothing, recorded;
//! - case C: documents requested (sent), then the citizen's data erased and
//!   the application rejected: nothing more, the suppression recorded;
//! - case D: documents requested while the SMTP server is down and the
//!   gateway takes the SMS but never answers; the front office is killed
//!   (`kill -9`) with both pending, the SMTP server comes back, the front
//!   office restarts: the e-mail arrives once, the SMS is not taken twice
//!   (the gateway answers 409 to its `Idempotency-Key`);
//! - case F: DPMPTSP's filing and request for documents reach the hub
//!   before the front office opens the case (held in its shell): the
//!   citizen hears of the request once the opening surfaces it;
//! - overdue: case G is filed and left with the agency, case H filed and
//!   issued at once; the front office's overdue timers (armed for G,
//!   cancelled for H) survive a `kill -9`, and a restart with the timers'
//!   drill clock past G's 28-working-day deadline sends G's citizen one
//!   e-mail and one SMS "past its deadline", and H's nothing; a second
//!   `kill -9` and restart send nothing more;
//! - opt-out after the opening: G's citizen declines notifications at the
//!   counter (`AturNotifikasi`): the retribution's messages end
//!   `suppressed_opted_out`; taken back, the issue is sent.
//!
//! Every message: the tracking link, never the PIN. Needs aiosmtpd in
//! `MPP_PYTHON` (tests/run-all.sh installs it into `.venv`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use mpp_proto::agency::dpmptsp::v1 as dpm;
use mpp_proto::frontoffice::v1 as fo;
use mpp_registrar::{key_added, publish as publish_statements};
use mpp_tests::envelope::{body, now_ms, publish, stream_last_seq, EventFactory};
use mpp_tests::registry::{agency_entry, participant_key, test_registrar, FRONT_OFFICE};
use mpp_tests::services::{dpm_step, pbg_filing, AgencyOptions, HubOptions};
use mpp_tests::{wait_for, AgencyProcess, HubProcess, ManagedProcess, NatsServer, DAY_MS, READY_DEADLINE};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::registry::front_office_registration;

const REGION: &str = "1771";
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(60);
/// How long a message may take to arrive (the feed, the outbox, a retry
/// after the restart: at most `NOTIFY_RETRY_MS_MIN` doubled once).
const ARRIVAL_DEADLINE: Duration = Duration::from_secs(60);
const GATEWAY_TOKEN: &str = "gateway-token-for-this-test";
const GATEWAY_HEAD_BYTES_MAX: usize = 16 * 1024;

/// How the test gateway answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// 202, or 409 for a known `Idempotency-Key`.
    Normal,
    /// Takes the message (records it) and never answers.
    Hold,
}

#[derive(Debug, Default)]
struct Recorded {
    /// Accepted messages by `Idempotency-Key`, in arrival order.
    accepted: Vec<(String, Value)>,
    /// Requests answered 409.
    duplicates: Vec<String>,
    /// Requests refused for a wrong token.
    unauthorised: usize,
}

#[derive(Debug)]
struct Gateway {
    url: String,
    mode: Arc<Mutex<Mode>>,
    recorded: Arc<Mutex<Recorded>>,
    task: tokio::task::JoinHandle<()>,
}

impl Gateway {
    async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/v1/kirim", listener.local_addr()?);
        let mode = Arc::new(Mutex::new(Mode::Normal));
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let (m, r) = (mode.clone(), recorded.clone());
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let (m, r) = (m.clone(), r.clone());
                tokio::spawn(async move {
                    let _ = serve_one(s, m, r).await;
                });
            }
        });
        Ok(Self { url, mode, recorded, task })
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn recorded<T>(&self, f: impl FnOnce(&Recorded) -> T) -> T {
        f(&self.recorded.lock().unwrap())
    }
}

async fn serve_one(
    mut s: tokio::net::TcpStream,
    mode: Arc<Mutex<Mode>>,
    rec: Arc<Mutex<Recorded>>,
) -> Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        ensure!(buf.len() < GATEWAY_HEAD_BYTES_MAX, "head too long");
        let n = s.read(&mut chunk).await?;
        ensure!(n > 0, "closed");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let len: usize = header("content-length").and_then(|v| v.parse().ok()).context("no length")?;
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).await?;
        ensure!(n > 0, "closed");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body: Value = serde_json::from_slice(&buf[head_end..head_end + len])?;
    let answer =
        |status: &str| format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    if header("authorization").as_deref() != Some(&format!("Bearer {GATEWAY_TOKEN}")) {
        rec.lock().unwrap().unauthorised += 1;
        s.write_all(answer("401 Unauthorized").as_bytes()).await?;
        return Ok(());
    }
    let key = header("idempotency-key").context("no Idempotency-Key")?;
    let mode = *mode.lock().unwrap();
    let known = {
        let mut r = rec.lock().unwrap();
        let known = r.accepted.iter().any(|(k, _)| *k == key);
        if known {
            r.duplicates.push(key.clone());
        } else {
            r.accepted.push((key.clone(), body));
        }
        known
    };
    match (known, mode) {
        (true, _) => s.write_all(answer("409 Conflict").as_bytes()).await?,
        (false, Mode::Normal) => s.write_all(answer("202 Accepted").as_bytes()).await?,
        // Taken, never answered: the connection stays open until the
        // front office dies.
        (false, Mode::Hold) => {
            let _ = s.read(&mut chunk).await;
        }
    }
    Ok(())
}

/// The real SMTP server process.
struct SmtpSink {
    process: ManagedProcess,
    port: u16,
    dir: PathBuf,
}

impl SmtpSink {
    fn start(work: &Path) -> Result<Self> {
        let python = std::env::var("MPP_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let probe = std::process::Command::new(&python).args(["-c", "import aiosmtpd"]).output()?;
        if !probe.status.success() {
            bail!(
                "{python} has no aiosmtpd: run tests/run-all.sh, or set MPP_PYTHON to a Python with aiosmtpd"
            );
        }
        let port = mpp_tests::ports::free_port()?;
        let dir = work.join("mail");
        std::fs::create_dir_all(&dir)?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/smtp_sink.py");
        let mut process = ManagedProcess::new(
            "smtp-sink",
            PathBuf::from(python),
            vec![script.display().to_string(), port.to_string(), dir.display().to_string()],
            work.join("smtp-sink.log"),
        );
        process.start()?;
        Ok(Self { process, port, dir })
    }

    async fn wait_listening(&mut self) -> Result<()> {
        let (port, process) = (self.port, &mut self.process);
        wait_for("the SMTP sink to listen", READY_DEADLINE, || {
            let running = process.ensure_running();
            async move {
                running?;
                Ok(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(|_| ()))
            }
        })
        .await
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far.
    fn messages(&self) -> Result<Vec<Value>> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names.iter().map(|p| Ok(serde_json::from_slice(&std::fs::read(p)?)?)).collect()
    }
}

type Fo = mpp_tests::services::FrontOfficeClient;
type Dpm = mpp_tests::services::DpmptspClient;

struct Case {
    tn: String,
    pin: String,
    reg: String,
    email: String,
}

impl Case {
    fn step(&self) -> dpm::Langkah {
        dpm_step(&self.tn, &self.reg)
    }
}

async fn open(fo_c: &mut Fo, dpm_c: &mut Dpm, n: u32, bahasa: &str, opted_out: bool) -> Result<Case> {
    let mut case = open_case(fo_c, n, bahasa, opted_out).await?;
    let filed = dpm_c.ajukan_permohonan(pbg_filing(&case.tn)).await.context("AjukanPermohonan")?.into_inner();
    case.reg = filed.nomor_registrasi;
    Ok(case)
}

/// A case opened at the front office, nothing filed.
async fn open_case(fo_c: &mut Fo, n: u32, bahasa: &str, opted_out: bool) -> Result<Case> {
    let email = format!("warga{n}@contoh.id");
    let opened = fo_c
        .buka_berkas(fo::PembukaanBerkas {
            nik: format!("17710145019{n:05}"),
            nama: format!("Warga {n}"),
            telepon: format!("0812345{n:05}"),
            petugas: "ptg-loket-1".into(),
            surel: email.clone(),
            bahasa: bahasa.into(),
            tanpa_notifikasi: opted_out,
        })
        .await
        .context("BukaBerkas")?
        .into_inner();
    Ok(Case { tn: opened.nomor_berkas, pin: opened.pin, reg: String::new(), email })
}

async fn request_documents(dpm_c: &mut Dpm, c: &Case) -> Result<()> {
    dpm_c
        .minta_perbaikan(dpm::PerbaikanDokumen {
            langkah: Some(c.step()),
            dokumen: vec!["Gambar teknis bangunan".into()],
            loket: "Loket DPMPTSP, MPP Kota Bengkulu".into(),
            catatan: String::new(),
        })
        .await
        .context("MintaPerbaikan")?;
    Ok(())
}

async fn assess(dpm_c: &mut Dpm, c: &Case) -> Result<()> {
    dpm_c
        .tetapkan_retribusi(dpm::Skrd {
            langkah: Some(c.step()),
            jumlah_retribusi: 1_250_000,
            nomor_skrd: "SKRD/PBG/2026/0042".into(),
            saluran_pembayaran: "Bank Bengkulu".into(),
            // The SKRD's due date: the message says "by <date>".
            jatuh_tempo_ms: now_ms() + 10 * 86_400_000,
        })
        .await
        .context("TetapkanRetribusi")?;
    Ok(())
}

/// The front office's log lines of notification outcome `outcome`.
fn outcomes(front: &mut AgencyProcess, outcome: &str) -> usize {
    let log = std::fs::read_to_string(front.process().log_path()).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains("\"Notification\"") && l.contains(&format!("\"outcome\":\"{outcome}\"")))
        .count()
}

/// The front office's log lines of `c`'s notifications of `event` sent.
fn sent_of(front: &mut AgencyProcess, c: &Case, event: &str) -> usize {
    let log = std::fs::read_to_string(front.process().log_path()).unwrap_or_default();
    let (hash, event) = (case_hash(&c.tn), format!("\"event\":\"{event}\""));
    log.lines()
        .filter(|l| l.contains("\"Notification\"") && l.contains(&hash) && l.contains(&event))
        .filter(|l| l.contains("\"outcome\":\"sent\""))
        .count()
}

/// The case as the front office's log names it (`notify::case_hash`).
fn case_hash(tn: &str) -> String {
    hex::encode(&Sha256::digest(format!("mpp-notify-case\0{tn}").as_bytes())[..8])
}

fn grouped(pin: &str) -> String {
    pin.as_bytes().chunks(3).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join("-")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn citizens_hear_once_per_change_by_email_and_sms_and_nothing_after_erasure_or_twice_after_kill_9(
) -> Result<()> {
    let started = std::time::Instant::now();
    // Given: NATS, a hub with the front office's feed token, the registry.
    let nats = NatsServer::start().await?;
    let js = nats.jetstream().await?;
    let secrets = mpp_tests::temp_dir("mpp-notify-")?;
    let dir = secrets.path();
    let fo_token = format!("mpp-1771-{}", uuid::Uuid::now_v7().simple());
    let participants = dir.join("participants");
    std::fs::write(
        &participants,
        format!("mpp-1771:{}\n", hex::encode(Sha256::digest(fo_token.as_bytes()))),
    )?;
    let fo_token_file = dir.join("fo-hub-token");
    std::fs::write(&fo_token_file, format!("{fo_token}\n"))?;
    let gateway_token_file = dir.join("gateway-token");
    std::fs::write(&gateway_token_file, format!("{GATEWAY_TOKEN}\n"))?;
    let mut hub = HubProcess::spawn_with(
        &nats.url(),
        HubOptions {
            extra_args: vec!["--participant-tokens-file".into(), participants.display().to_string()],
            ..HubOptions::default()
        },
    )?;
    hub.wait_ready(READY_DEADLINE).await?;
    let (fo_key, fo_pk) = participant_key(dir, "front-office")?;
    let (dpm_key, dpm_pk) = participant_key(dir, "dpmptsp")?;
    let registry_file = dir.join("registry.toml");
    std::fs::write(&registry_file, agency_entry("dpmptsp", "daerah", REGION))?;
    let registrar = test_registrar();
    let now = now_ms();
    let mut statements = vec![front_office_registration(&registrar, now)];
    statements.extend(mpp_registrar::sign_registry(&registrar, &registry_file, now)?);
    for (id, pk) in [(FRONT_OFFICE, fo_pk), ("dpmptsp", dpm_pk)] {
        statements.push(registrar.sign(key_added(id, &pk, now - DAY_MS, now + 365 * DAY_MS), now));
    }
    publish_statements(&nats.connect().await?, &statements).await?;
    hub.wait_caught_up(stream_last_seq(&js).await?, CATCH_UP_DEADLINE).await?;

    // ...the SMTP server, the gateway, the front office notifying, DPMPTSP.
    let mut sink = SmtpSink::start(dir)?;
    sink.wait_listening().await?;
    let gateway = Gateway::start().await?;
    let metrics_addr = mpp_tests::ports::free_addr()?;
    let front_args = vec![
        "--metrics-addr".to_owned(),
        metrics_addr.to_string(),
        "--signing-key-file".into(),
        fo_key.display().to_string(),
        "--hub-url".into(),
        hub.grpc_endpoint(),
        "--hub-token-file".into(),
        fo_token_file.display().to_string(),
        "--smtp-url".into(),
        sink.url(),
        "--smtp-from".into(),
        "noreply@mpp.bengkulukota.example".into(),
        "--sms-gateway-url".into(),
        gateway.url.clone(),
        "--sms-gateway-token-file".into(),
        gateway_token_file.display().to_string(),
        "--notify-quiet-hours".into(),
        "off".into(),
        "--mpp-name".into(),
        "MPP Kota Bengkulu".into(),
    ];
    let mut front = AgencyProcess::spawn_frontoffice(
        &nats.url(),
        AgencyOptions { extra_args: front_args, ..AgencyOptions::region(REGION) },
    )?;
    let mut dpmptsp = AgencyProcess::spawn(
        "mpp-dpmptsp",
        &nats.url(),
        AgencyOptions {
            extra_args: vec!["--signing-key-file".to_owned(), dpm_key.display().to_string()],
            ..AgencyOptions::region(REGION)
        },
    )?;
    front.wait_listening(READY_DEADLINE).await?;
    dpmptsp.wait_listening(READY_DEADLINE).await?;
    let mut fo_c = front.front_office_client()?;
    let mut dpm_c = dpmptsp.dpmptsp_client()?;

    // When: the journey of cases A (English), B (Bahasa Indonesia, rejected)
    // and E (declined notifications).
    let a = open(&mut fo_c, &mut dpm_c, 1, "en", false).await?;
    let b = open(&mut fo_c, &mut dpm_c, 2, "", false).await?;
    let e = open(&mut fo_c, &mut dpm_c, 5, "id", true).await?;
    request_documents(&mut dpm_c, &a).await?;
    dpm_c
        .terima_perbaikan(dpm::DokumenDiperbaiki {
            langkah: Some(a.step()),
            dokumen: vec!["Gambar teknis bangunan".into()],
        })
        .await
        .context("TerimaPerbaikan")?;
    dpm_c.mulai_pemeriksaan(a.step()).await.context("MulaiPemeriksaan")?;
    assess(&mut dpm_c, &a).await?;
    dpm_c
        .konfirmasi_pembayaran(dpm::PembayaranRetribusi {
            langkah: Some(a.step()),
            jumlah_bayar: 1_250_000,
            nomor_sts: "STS-1".into(),
        })
        .await
        .context("KonfirmasiPembayaran")?;
    dpm_c
        .terbitkan_izin(dpm::IzinTerbit { langkah: Some(a.step()), nomor_izin: "SK-PBG-177101-0001".into() })
        .await
        .context("TerbitkanIzin")?;
    dpm_c
        .tolak_permohonan(dpm::Penolakan {
            langkah: Some(b.step()),
            kode_alasan: "KKPR".into(),
            alasan: "Tidak sesuai KKPR".into(),
        })
        .await
        .context("TolakPermohonan")?;
    request_documents(&mut dpm_c, &e).await?;

    // Then: A gets three e-mails and three SMS in English, B one of each in
    // Bahasa Indonesia, E nothing (recorded).
    let arrived = |sink: &SmtpSink, gateway: &Gateway, mails: usize, sms: usize| {
        let m = sink.messages().unwrap_or_default().len();
        let s = gateway.recorded(|r| r.accepted.len());
        (m >= mails && s >= sms).then_some((m, s))
    };
    let waited =
        wait_for("A's and B's messages", ARRIVAL_DEADLINE, || async { Ok(arrived(&sink, &gateway, 4, 4)) })
            .await;
    if waited.is_err() {
        eprintln!("front office log:\n{}\nhub log:\n{}", front.log_tail(), hub.log_tail());
        let (status, case) = hub.case_json(&a.tn, &a.pin).await?;
        eprintln!("case A ({status}): {case}");
        let channel = tonic::transport::Endpoint::from_shared(hub.grpc_endpoint())?.connect().await?;
        let mut feed = mpp_proto::v1::case_event_service_client::CaseEventServiceClient::with_interceptor(
            channel,
            mpp_tests::Bearer::new(&fo_token)?,
        );
        let mut stream = feed
            .follow_case_events(mpp_proto::v1::FollowCaseEventsRequest { after_seq: 0 })
            .await?
            .into_inner();
        if let Ok(Ok(Some(batch))) = tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
            eprintln!("the feed now: {batch:?}");
        }
    }
    waited?;
    wait_for("E's opt-out recorded", ARRIVAL_DEADLINE, || {
        let n = outcomes(&mut front, "suppressed_opted_out");
        async move { Ok((n >= 2).then_some(())) }
    })
    .await?;
    let mails = sink.messages()?;
    let by_case = |tn: &str| -> Vec<&Value> {
        mails.iter().filter(|m| m["subject"].as_str().is_some_and(|s| s.contains(tn))).collect()
    };
    let a_mails = by_case(&a.tn);
    ensure!(a_mails.len() == 3, "A's e-mails: {a_mails:?}");
    for m in &a_mails {
        ensure!(m["rcpt_tos"] == serde_json::json!([a.email]) && m["language"] == "en", "{m}");
    }
    let a_text: Vec<&str> = a_mails.iter().filter_map(|m| m["text"].as_str()).collect();
    ensure!(a_text.iter().any(|t| t.contains("needs documents: Gambar teknis bangunan")), "{a_text:?}");
    ensure!(
        a_text
            .iter()
            .any(|t| t.contains("Rp 1.250.000") && t.contains("SKRD/PBG/2026/0042") && t.contains(", by ")),
        "{a_text:?}"
    );
    ensure!(
        a_text.iter().any(|t| t.contains("has been issued") && t.contains("Loket DPMPTSP di MPP tempat berkas dibuka")),
        "{a_text:?}"
    );
    let b_mails = by_case(&b.tn);
    ensure!(b_mails.len() == 1, "B's e-mails: {b_mails:?}");
    let b_text = b_mails[0]["text"].as_str().unwrap_or("");
    ensure!(b_text.contains("ditolak") && b_text.contains("rencana tata ruang (KKPR)"), "{b_text}");
    ensure!(by_case(&e.tn).is_empty(), "E declined notifications");
    let sms = gateway.recorded(|r| r.accepted.clone());
    let sms_of =
        |c: &Case| sms.iter().filter(|(_, v)| v["text"].as_str().is_some_and(|t| t.contains(&c.tn))).count();
    ensure!(sms_of(&a) == 3 && sms_of(&b) == 1 && sms_of(&e) == 0, "SMS: {sms:?}");
    for (_, v) in &sms {
        ensure!(v["channel"] == "sms" && v["to"].as_str().is_some_and(|t| t.starts_with("+62812345")), "{v}");
    }
    ensure!(sms.iter().any(|(_, v)| v["language"] == "en") && sms.iter().any(|(_, v)| v["language"] == "id"));

    // When: C's documents are requested (sent), then C's data is erased and
    // the application rejected.
    let c = open(&mut fo_c, &mut dpm_c, 3, "id", false).await?;
    request_documents(&mut dpm_c, &c).await?;
    wait_for("C's first messages", ARRIVAL_DEADLINE, || async { Ok(arrived(&sink, &gateway, 5, 5)) }).await?;
    fo_c.hapus_data_pribadi(fo::PenghapusanDataPribadi {
        nomor_berkas: c.tn.clone(),
        petugas: "ptg-loket-1".into(),
    })
    .await
    .context("HapusDataPribadi")?;
    dpm_c
        .tolak_permohonan(dpm::Penolakan {
            langkah: Some(c.step()),
            kode_alasan: "KKPR".into(),
            alasan: "Tidak sesuai KKPR".into(),
        })
        .await
        .context("TolakPermohonan C")?;
    // Then: the two are suppressed, nothing is sent.
    let suppressed = wait_for("C's suppression recorded", ARRIVAL_DEADLINE, || {
        let n = outcomes(&mut front, "suppressed_erased");
        async move { Ok((n >= 2).then_some(())) }
    })
    .await;
    if suppressed.is_err() {
        eprintln!("front office log:\n{}\nhub log:\n{}", front.log_tail(), hub.log_tail());
    }
    suppressed?;
    ensure!(
        sink.messages()?.len() == 5 && gateway.recorded(|r| r.accepted.len()) == 5,
        "nothing after erasure"
    );

    // When: D's documents are requested while the SMTP server is down and
    // the gateway takes the SMS without answering; the front office is
    // killed with both pending, then restarted with the SMTP server back.
    let d = open(&mut fo_c, &mut dpm_c, 4, "id", false).await?;
    sink.process.kill9()?;
    gateway.set(Mode::Hold);
    let retries_before = outcomes(&mut front, "retry");
    request_documents(&mut dpm_c, &d).await?;
    wait_for("D's SMS taken and its e-mail failing", ARRIVAL_DEADLINE, || {
        let (taken, retries) = (gateway.recorded(|r| r.accepted.len()), outcomes(&mut front, "retry"));
        async move { Ok((taken == 6 && retries > retries_before).then_some(())) }
    })
    .await?;
    front.kill9()?;
    sink.process.start()?;
    sink.wait_listening().await?;
    gateway.set(Mode::Normal);
    front.restart().await?;
    front.wait_listening(READY_DEADLINE).await?;
    // Then: the e-mail arrives, the SMS is offered again and refused as a
    // duplicate.
    wait_for("D's e-mail and the gateway's 409", ARRIVAL_DEADLINE, || async {
        let dup = gateway.recorded(|r| r.duplicates.len());
        Ok((sink.messages()?.len() == 6 && dup >= 1).then_some(()))
    })
    .await?;
    wait_for("the duplicate recorded", ARRIVAL_DEADLINE, || {
        let n = outcomes(&mut front, "duplicate");
        async move { Ok((n >= 1).then_some(())) }
    })
    .await?;

    // ...and the restarted front office's /metrics counts them since its
    // start: D's e-mail sent, its SMS a duplicate.
    let want = [
        "mpp_notifications_total{channel=\"email\",outcome=\"sent\"} 1",
        "mpp_notifications_total{channel=\"sms\",outcome=\"duplicate\"} 1",
        "mpp_notifications_total{channel=\"sms\",outcome=\"sent\"} 0",
        "mpp_notifications_pending 0",
    ];
    let scraped = wait_for("the front office's /metrics", ARRIVAL_DEADLINE, || async {
        let page = mpp_tests::http::request(metrics_addr, "GET", "/metrics", &[], b"").await?;
        let metrics = String::from_utf8_lossy(&page.body).into_owned();
        Ok(want.iter().all(|w| metrics.lines().any(|l| l == *w)).then_some(()))
    })
    .await;
    if scraped.is_err() {
        let page = mpp_tests::http::request(metrics_addr, "GET", "/metrics", &[], b"").await?;
        eprintln!("/metrics:\n{}", String::from_utf8_lossy(&page.body));
    }
    scraped?;

    // When: DPMPTSP's filing and request for documents reach the hub before
    // the front office's opening of the case (the number it issues next),
    // as when an agency's relay overtakes the front office's: held in the
    // case's shell until the opening surfaces them.
    let f_tn = mpp_tests::envelope::tracking_number(1771, 6)?;
    let dpm_f = EventFactory::new("dpmptsp", "pbg", REGION);
    let dpm_signer = crate::registry::signer("dpmptsp", &dpm_key)?;
    for b in [body::filed(), body::documents_requested()] {
        let env = dpm_f.app_event(&f_tn, "DPM-PBG-HELD-1", b);
        let payload = crate::registry::signed(&dpm_signer, &dpm_f.subject(), &env);
        publish(&js, &dpm_f.subject(), Some(&env.event_id), payload).await?;
    }
    hub.wait_caught_up(stream_last_seq(&js).await?, CATCH_UP_DEADLINE).await?;
    let f = open_case(&mut fo_c, 6, "id", false).await?;
    ensure!(f.tn == f_tn, "the front office issued {} (expected {f_tn})", f.tn);
    // Then: the citizen hears of the held request once the case is opened.
    wait_for("F's messages", ARRIVAL_DEADLINE, || async { Ok(arrived(&sink, &gateway, 7, 7)) }).await?;
    let f_mail =
        sink.messages()?.into_iter().find(|m| m["subject"].as_str().is_some_and(|x| x.contains(&f.tn)));
    let f_text = f_mail.as_ref().and_then(|m| m["text"].as_str()).unwrap_or("").to_owned();
    ensure!(f_text.contains("akta nikah") && f_text.contains("Loket 3"), "F's e-mail: {f_text}");

    // Every message once, with the link and never the PIN.
    let mails = sink.messages()?;
    let sms = gateway.recorded(|r| r.accepted.clone());
    let mut ids: HashMap<String, usize> = HashMap::new();
    for m in &mails {
        *ids.entry(m["message_id"].as_str().unwrap_or("").to_owned()).or_default() += 1;
    }
    ensure!(ids.len() == mails.len() && mails.len() == 7, "Message-IDs: {ids:?}");
    ensure!(sms.len() == 7, "the gateway took each SMS once: {sms:?}");
    let texts: Vec<String> = mails
        .iter()
        .map(|m| format!("{} {}", m["subject"], m["raw"]))
        .chain(mails.iter().map(|m| m["text"].as_str().unwrap_or("").to_owned()))
        .chain(sms.iter().map(|(_, v)| v["text"].as_str().unwrap_or("").to_owned()))
        .collect();
    for c in [&a, &b, &c, &d, &e, &f] {
        for t in &texts {
            ensure!(!t.contains(&c.pin) && !t.contains(&grouped(&c.pin)), "a PIN in {t}");
        }
    }
    for (m, c) in [(&a, "en"), (&b, "id"), (&c, "id"), (&d, "id"), (&f, "id")] {
        let link = format!("/lacak?nomor={}&lang={c}", m.tn);
        ensure!(
            mails.iter().filter(|x| x["text"].as_str().is_some_and(|t| t.contains(&link))).count() >= 1,
            "{link}"
        );
        ensure!(
            sms.iter().filter(|(_, v)| v["text"].as_str().is_some_and(|t| t.contains(&link))).count() >= 1,
            "{link}"
        );
    }
    ensure!(gateway.recorded(|r| r.unauthorised) == 0);

    // When: G is filed and left with DPMPTSP; H is filed and issued at once.
    let g = open(&mut fo_c, &mut dpm_c, 7, "en", false).await?;
    let h = open(&mut fo_c, &mut dpm_c, 8, "id", false).await?;
    dpm_c.mulai_pemeriksaan(h.step()).await.context("MulaiPemeriksaan H")?;
    assess(&mut dpm_c, &h).await?;
    dpm_c
        .konfirmasi_pembayaran(dpm::PembayaranRetribusi {
            langkah: Some(h.step()),
            jumlah_bayar: 1_250_000,
            nomor_sts: "STS-2".into(),
        })
        .await
        .context("KonfirmasiPembayaran H")?;
    dpm_c
        .terbitkan_izin(dpm::IzinTerbit { langkah: Some(h.step()), nomor_izin: "SK-PBG-177101-0002".into() })
        .await
        .context("TerbitkanIzin H")?;
    // Then: G's timer is armed, H's cancelled, H's two messages sent.
    let timer_states = |front: &mut AgencyProcess, c: &Case| -> Vec<String> {
        let log = std::fs::read_to_string(front.process().log_path()).unwrap_or_default();
        let hash = case_hash(&c.tn);
        log.lines()
            .filter(|l| l.contains("\"Overdue timer\"") && l.contains(&hash))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["fields"]["state"].as_str().or(v["state"].as_str()).map(str::to_owned))
            .collect()
    };
    let timers = wait_for("G's timer armed and H's cancelled", ARRIVAL_DEADLINE, || {
        let (gs, hs) = (timer_states(&mut front, &g), timer_states(&mut front, &h));
        let ok = gs.iter().any(|s| s == "armed") && hs.last().is_some_and(|s| s == "cancelled");
        // Received and recorded as sent: a kill -9 before the front office
        // marks them done would send them again (deduplicated by the
        // receivers, but the sink keeps both).
        let sent = arrived(&sink, &gateway, 9, 9).is_some() && sent_of(&mut front, &h, "issued") == 2;
        async move { Ok((ok && sent).then_some(())) }
    })
    .await;
    if timers.is_err() {
        eprintln!("front office log:\n{}", front.log_tail());
    }
    timers?;
    ensure!(timer_states(&mut front, &g).iter().all(|s| s == "armed"), "G is with the agency");

    // When: the front office is killed and restarts with its timers' clock
    // 200 days on (past G's 28 working days, whatever the holidays).
    front.kill9()?;
    front.process().env("MPP_NOTIFY_OVERDUE_CLOCK_OFFSET_MS", &(200 * DAY_MS).to_string());
    front.restart().await?;
    front.wait_listening(READY_DEADLINE).await?;
    // Then: G's citizen is told once by e-mail and SMS, in English.
    let is_overdue = |t: &str| t.contains("-working-day deadline of") || t.contains("melewati batas waktu");
    let overdue_mails = |sink: &SmtpSink| -> Result<Vec<Value>> {
        Ok(sink.messages()?.into_iter().filter(|m| m["text"].as_str().is_some_and(is_overdue)).collect())
    };
    let overdue_sms = |gateway: &Gateway| -> Vec<Value> {
        gateway.recorded(|r| {
            r.accepted
                .iter()
                .filter(|(_, v)| v["text"].as_str().is_some_and(is_overdue))
                .map(|(_, v)| v.clone())
                .collect()
        })
    };
    let fired = wait_for("G's overdue notice", ARRIVAL_DEADLINE, || async {
        Ok((overdue_mails(&sink)?.len() == 1 && overdue_sms(&gateway).len() == 1).then_some(()))
    })
    .await;
    if fired.is_err() {
        eprintln!("front office log:\n{}", front.log_tail());
    }
    fired?;
    wait_for("G's overdue notice recorded as sent", ARRIVAL_DEADLINE, || {
        let n = sent_of(&mut front, &g, "overdue");
        async move { Ok((n == 2).then_some(())) }
    })
    .await?;
    let m = overdue_mails(&sink)?.remove(0);
    let text = m["text"].as_str().unwrap_or("");
    ensure!(m["rcpt_tos"] == serde_json::json!([g.email]) && m["language"] == "en", "{m}");
    ensure!(
        text.contains("your application at DPMPTSP for ")
            && text.contains(&format!("(case {}) is past its 28-working-day deadline of ", g.tn))
            && text.contains(
                "What you can do: the MPP's complaint channel, SP4N-LAPOR! https://www.lapor.go.id"
            )
            && text.contains(&format!("/lacak?nomor={}&lang=en", g.tn))
            && !text.contains(&g.pin),
        "G's overdue e-mail: {text}"
    );
    let sms = overdue_sms(&gateway).remove(0);
    ensure!(sms["text"].as_str().is_some_and(|t| t.contains(&g.tn)) && sms["language"] == "en", "{sms}");

    // When: killed and restarted once more, and G's documents requested (a
    // message that shows the restarted sender's rounds ran).
    front.kill9()?;
    front.restart().await?;
    front.wait_listening(READY_DEADLINE).await?;
    request_documents(&mut dpm_c, &g).await?;
    wait_for("G's request for documents", ARRIVAL_DEADLINE, || async {
        Ok(arrived(&sink, &gateway, 11, 11))
    })
    .await?;
    // Then: still one overdue notice, G's alone; none for H, issued in time.
    let (om, os) = (overdue_mails(&sink)?, overdue_sms(&gateway));
    ensure!(om.len() == 1 && os.len() == 1, "overdue notices once: {om:?} {os:?}");
    ensure!(
        sink.messages()?.iter().filter(|m| m["subject"].as_str().is_some_and(|s| s.contains(&h.tn))).count()
            == 2,
        "H: the retribution and the issue, nothing overdue"
    );
    let overdue_sent = om.len() + os.len();

    // When: G's citizen declines notifications at the counter
    // (AturNotifikasi) and the retribution is assessed, then takes them
    // back and the PBG is issued.
    let opted_out_before = outcomes(&mut front, "suppressed_opted_out");
    let set = |off: bool| fo::PengaturanNotifikasi {
        nomor_berkas: g.tn.clone(),
        tanpa_notifikasi: off,
        petugas: "ptg-loket-1".into(),
    };
    let off = fo_c.atur_notifikasi(set(true)).await.context("AturNotifikasi off")?.into_inner();
    ensure!(off.tanpa_notifikasi && off.berubah, "{off:?}");
    dpm_c
        .terima_perbaikan(dpm::DokumenDiperbaiki {
            langkah: Some(g.step()),
            dokumen: vec!["Gambar teknis bangunan".into()],
        })
        .await
        .context("TerimaPerbaikan G")?;
    dpm_c.mulai_pemeriksaan(g.step()).await.context("MulaiPemeriksaan G")?;
    assess(&mut dpm_c, &g).await?;
    // Then: the retribution's messages end suppressed_opted_out.
    wait_for("G's opt-out honoured", ARRIVAL_DEADLINE, || {
        let n = outcomes(&mut front, "suppressed_opted_out");
        async move { Ok((n >= opted_out_before + 2).then_some(())) }
    })
    .await?;
    let on = fo_c.atur_notifikasi(set(false)).await.context("AturNotifikasi on")?.into_inner();
    ensure!(!on.tanpa_notifikasi && on.berubah, "{on:?}");
    dpm_c
        .konfirmasi_pembayaran(dpm::PembayaranRetribusi {
            langkah: Some(g.step()),
            jumlah_bayar: 1_250_000,
            nomor_sts: "STS-3".into(),
        })
        .await
        .context("KonfirmasiPembayaran G")?;
    dpm_c
        .terbitkan_izin(dpm::IzinTerbit { langkah: Some(g.step()), nomor_izin: "SK-PBG-177101-0003".into() })
        .await
        .context("TerbitkanIzin G")?;
    // Then: the issue reaches the citizen again; nothing of the retribution.
    wait_for("G's issue", ARRIVAL_DEADLINE, || async { Ok(arrived(&sink, &gateway, 12, 12)) }).await?;
    let g_mails: Vec<String> = sink
        .messages()?
        .iter()
        .filter_map(|m| m["text"].as_str().filter(|t| t.contains(&g.tn)).map(str::to_owned))
        .collect();
    ensure!(
        g_mails.len() == 3
            && g_mails.iter().any(|t| t.contains("has been issued"))
            && !g_mails.iter().any(|t| t.contains("Rp 1.250.000")),
        "G's e-mails: {g_mails:?}"
    );

    let deduplicated = gateway.recorded(|r| r.duplicates.len());
    let suppressed_erased = outcomes(&mut front, "suppressed_erased");
    let suppressed_opted_out = outcomes(&mut front, "suppressed_opted_out");
    let mut per_case: BTreeMap<&str, usize> = BTreeMap::new();
    let mails = sink.messages()?;
    let sms = gateway.recorded(|r| r.accepted.clone());
    let all_texts: Vec<&str> = mails
        .iter()
        .filter_map(|m| m["text"].as_str())
        .chain(sms.iter().filter_map(|(_, v)| v["text"].as_str()))
        .collect();
    for (name, c) in [("A", &a), ("B", &b), ("C", &c), ("D", &d), ("E", &e), ("F", &f), ("G", &g), ("H", &h)]
    {
        per_case.insert(name, all_texts.iter().filter(|t| t.contains(&c.tn)).count());
    }
    println!(
        "notifications: sent {} (e-mail {}, sms {}; overdue {overdue_sent}), deduplicated {deduplicated} (gateway 409 after kill -9), \
         suppressed {} (erased {suppressed_erased}, opted out {suppressed_opted_out}); messages per case (e-mail and sms) {per_case:?}; {:.1} s",
        mails.len() + sms.len(),
        mails.len(),
        sms.len(),
        suppressed_erased + suppressed_opted_out,
        started.elapsed().as_secs_f64()
    );
    gateway.task.abort();
    Ok(())
}
