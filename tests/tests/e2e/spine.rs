//! The spine: about 1,000 events through the Dukcapil agency service →
//! NATS JetStream → hub → lookup, all visible, counts exact.
//!
//! Real processes: a private nats-server, `mpp-hub serve` and `mpp-dukcapil`.
//! Cases follow five realistic Dukcapil journeys; every case is then looked
//! up over HTTP and gRPC, and after a clean stop the hub's store is audited:
//! every event id the service answered is accepted exactly once, nothing is
//! rejected, the chain verifies and the rebuilt projection equals the stored one.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use mpp_proto::agency::dukcapil::v1 as dk;
use mpp_proto::v1::cases_service_client::CasesServiceClient;
use mpp_proto::v1::{ApplicationState, GetCaseRequest};
use mpp_tests::envelope::{stream_last_seq, tracking_number, with_bad_check_digit};
use mpp_tests::pin::other_pin;
use mpp_tests::services::nats_and_hub;
use mpp_tests::store::audit_stopped_hub;
use mpp_tests::{check, wait_for, AgencyProcess, Bearer, HubProcess, READY_DEADLINE};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use dk::dukcapil_service_client::DukcapilServiceClient;

type Dukcapil = DukcapilServiceClient<InterceptedService<Channel, Bearer>>;

/// Region of the MPP in this test: Kota Bengkulu.
const REGION: &str = "1771";

/// Cases driven (override with MPP_SPINE_CASES); 200 cases give 1,040 events.
const CASES_DEFAULT: usize = 200;

/// Concurrent counter officers (gRPC callers).
const WORKERS: usize = 8;

/// Services whose standards mpp-dukcapil publishes when it starts.
const DUKCAPIL_SERVICES: [&str; 3] = ["kk", "ktp-el", "akta-lahir"];

const CATCH_UP_DEADLINE: Duration = Duration::from_secs(180);

/// What one application must look like after its journey.
#[derive(Debug, Clone)]
struct ExpectedApp {
    application_id: String,
    service_id: &'static str,
    state: &'static str,
    pb_state: ApplicationState,
    event_types: Vec<&'static str>,
}

/// What one case must look like after its journey.
#[derive(Debug, Clone)]
struct ExpectedCase {
    tracking_number: String,
    /// The lookup PIN mpp-dukcapil answered when it opened the case.
    pin: String,
    status: &'static str,
    apps: Vec<ExpectedApp>,
}

/// Every event id the service answered, in answer order.
#[derive(Debug, Default)]
struct Answers {
    event_ids: Vec<String>,
}

impl Answers {
    fn one(&mut self, d: dk::Diterima) -> Result<()> {
        ensure!(!d.event_id.is_empty(), "Diterima without event_id");
        self.event_ids.push(d.event_id);
        Ok(())
    }
}

fn langkah(tn: &str, app: &str) -> dk::Langkah {
    dk::Langkah {
        nomor_berkas: tn.to_owned(),
        nomor_permohonan: app.to_owned(),
        petugas: "petugas-loket-1".to_owned(),
    }
}

fn ret<T>(r: std::result::Result<tonic::Response<T>, tonic::Status>, what: &str) -> Result<T> {
    r.map(tonic::Response::into_inner).map_err(|s| {
        let code = s.metadata().get("mpp-reason-code").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        anyhow::anyhow!("{what} failed: {:?} {} (mpp-reason-code {code:?})", s.code(), s.message())
    })
}

async fn ajukan(
    c: &mut Dukcapil,
    answers: &mut Answers,
    nomor_berkas: &str,
    layanan: dk::Layanan,
    dokumen: &[&str],
) -> Result<(String, String, String)> {
    let r = ret(
        c.ajukan_permohonan(dk::Permohonan {
            nomor_berkas: nomor_berkas.to_owned(),
            layanan: layanan as i32,
            dokumen: dokumen.iter().map(|d| (*d).to_owned()).collect(),
            petugas: "petugas-loket-1".to_owned(),
        })
        .await,
        "AjukanPermohonan",
    )?;
    let want_ids = if nomor_berkas.is_empty() { 2 } else { 1 };
    ensure!(
        r.event_ids.len() == want_ids,
        "AjukanPermohonan (nomor_berkas {nomor_berkas:?}) answered {} event ids, expected {want_ids}: {r:?}",
        r.event_ids.len()
    );
    ensure!(nomor_berkas.is_empty() || r.nomor_berkas == nomor_berkas, "answered another case: {r:?}");
    let pin_ok = mpp_tests::pin::is_strong(&r.pin);
    ensure!(
        if nomor_berkas.is_empty() { pin_ok } else { r.pin.is_empty() },
        "AjukanPermohonan (nomor_berkas {nomor_berkas:?}) answered PIN {:?}: a new case needs a strong PIN, \
         an existing one none",
        r.pin
    );
    answers.event_ids.extend(r.event_ids);
    Ok((r.nomor_berkas, r.nomor_permohonan, r.pin))
}

async fn minta(c: &mut Dukcapil, a: &mut Answers, tn: &str, app: &str) -> Result<()> {
    a.one(ret(
        c.minta_kelengkapan(dk::KekuranganBerkas {
            langkah: Some(langkah(tn, app)),
            dokumen: vec!["akta nikah".to_owned(), "surat pindah".to_owned()],
            loket: "Loket 3 Disdukcapil".to_owned(),
            catatan: "bawa asli dan fotokopi".to_owned(),
        })
        .await,
        "MintaKelengkapan",
    )?)
}

async fn terima(c: &mut Dukcapil, a: &mut Answers, tn: &str, app: &str) -> Result<()> {
    a.one(ret(
        c.terima_kelengkapan(dk::BerkasDilengkapi {
            langkah: Some(langkah(tn, app)),
            dokumen: vec!["akta nikah".to_owned(), "surat pindah".to_owned()],
        })
        .await,
        "TerimaKelengkapan",
    )?)
}

async fn verifikasi(c: &mut Dukcapil, a: &mut Answers, tn: &str, app: &str) -> Result<()> {
    a.one(ret(c.mulai_verifikasi(langkah(tn, app)).await, "MulaiVerifikasi")?)
}

async fn cetak(c: &mut Dukcapil, a: &mut Answers, tn: &str, app: &str) -> Result<()> {
    a.one(ret(
        c.cetak_dokumen(dk::DokumenDicetak {
            langkah: Some(langkah(tn, app)),
            nomor_register: format!("REG-{tn}"),
        })
        .await,
        "CetakDokumen",
    )?)
}

async fn serahkan(c: &mut Dukcapil, a: &mut Answers, tn: &str, app: &str) -> Result<()> {
    a.one(ret(c.serahkan_dokumen(langkah(tn, app)).await, "SerahkanDokumen")?)
}

async fn tolak(c: &mut Dukcapil, a: &mut Answers, tn: &str, app: &str) -> Result<()> {
    a.one(ret(
        c.tolak_permohonan(dk::Penolakan {
            langkah: Some(langkah(tn, app)),
            kode_alasan: "DATA_TIDAK_SESUAI".to_owned(),
            alasan: "Data kelahiran tidak sesuai surat keterangan lahir".to_owned(),
        })
        .await,
        "TolakPermohonan",
    )?)
}

async fn batalkan(c: &mut Dukcapil, a: &mut Answers, tn: &str, app: &str) -> Result<()> {
    a.one(ret(c.batalkan_permohonan(langkah(tn, app)).await, "BatalkanPermohonan")?)
}

fn app(
    application_id: String,
    service_id: &'static str,
    state: &'static str,
    pb_state: ApplicationState,
    event_types: &[&'static str],
) -> ExpectedApp {
    ExpectedApp { application_id, service_id, state, pb_state, event_types: event_types.to_vec() }
}

/// Drives journey `kind` (0..5) for one new case.
async fn journey(c: &mut Dukcapil, a: &mut Answers, kind: usize) -> Result<ExpectedCase> {
    use ApplicationState as S;
    const FILED: &str = "application_filed";
    match kind {
        // Kartu Keluarga: documents missing, brought, verified, printed, collected.
        0 => {
            let (tn, id, pin) = ajukan(c, a, "", dk::Layanan::Kk, &["surat pengantar RT/RW"]).await?;
            minta(c, a, &tn, &id).await?;
            terima(c, a, &tn, &id).await?;
            verifikasi(c, a, &tn, &id).await?;
            cetak(c, a, &tn, &id).await?;
            serahkan(c, a, &tn, &id).await?;
            let types =
                [FILED, "documents_requested", "documents_received", "review_started", "issued", "collected"];
            Ok(ExpectedCase {
                tracking_number: tn,
                pin,
                status: "done",
                apps: vec![app(id, "kk", "collected", S::Collected, &types)],
            })
        }
        // KTP-el: verified, printed, collected.
        1 => {
            let (tn, id, pin) = ajukan(c, a, "", dk::Layanan::KtpEl, &["kartu keluarga"]).await?;
            verifikasi(c, a, &tn, &id).await?;
            cetak(c, a, &tn, &id).await?;
            serahkan(c, a, &tn, &id).await?;
            let types = [FILED, "review_started", "issued", "collected"];
            Ok(ExpectedCase {
                tracking_number: tn,
                pin,
                status: "done",
                apps: vec![app(id, "ktp-el", "collected", S::Collected, &types)],
            })
        }
        // Akta kelahiran: verified, then rejected.
        2 => {
            let (tn, id, pin) = ajukan(c, a, "", dk::Layanan::AktaLahir, &["surat keterangan lahir"]).await?;
            verifikasi(c, a, &tn, &id).await?;
            tolak(c, a, &tn, &id).await?;
            let types = [FILED, "review_started", "rejected"];
            Ok(ExpectedCase {
                tracking_number: tn,
                pin,
                status: "done",
                apps: vec![app(id, "akta-lahir", "rejected", S::Rejected, &types)],
            })
        }
        // Kartu Keluarga: documents missing, then withdrawn.
        3 => {
            let (tn, id, pin) = ajukan(c, a, "", dk::Layanan::Kk, &["surat pengantar RT/RW"]).await?;
            minta(c, a, &tn, &id).await?;
            batalkan(c, a, &tn, &id).await?;
            let types = [FILED, "documents_requested", "withdrawn"];
            Ok(ExpectedCase {
                tracking_number: tn,
                pin,
                status: "done",
                apps: vec![app(id, "kk", "withdrawn", S::Withdrawn, &types)],
            })
        }
        // Two applications in one case: KK issued, KTP-el waiting on documents.
        _ => {
            let (tn, kk, pin) = ajukan(c, a, "", dk::Layanan::Kk, &["surat pengantar RT/RW"]).await?;
            let (_, ktp, _) = ajukan(c, a, &tn, dk::Layanan::KtpEl, &["kartu keluarga"]).await?;
            verifikasi(c, a, &tn, &kk).await?;
            cetak(c, a, &tn, &kk).await?;
            minta(c, a, &tn, &ktp).await?;
            Ok(ExpectedCase {
                tracking_number: tn,
                pin,
                status: "action_needed",
                apps: vec![
                    app(kk, "kk", "issued", S::Issued, &[FILED, "review_started", "issued"]),
                    app(
                        ktp,
                        "ktp-el",
                        "documents_required",
                        S::DocumentsRequired,
                        &[FILED, "documents_requested"],
                    ),
                ],
            })
        }
    }
}

fn check_case_json(want: &ExpectedCase, v: &serde_json::Value) -> Result<()> {
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("");
    ensure!(s("tracking_number") == want.tracking_number, "tracking_number: {v}");
    ensure!(s("region_code") == REGION, "region_code: {v}");
    ensure!(s("status") == want.status, "status {:?}, expected {:?}: {v}", s("status"), want.status);
    let apps = v.get("applications").and_then(|a| a.as_array()).context("no applications array")?;
    ensure!(apps.len() == want.apps.len(), "{} applications, expected {}: {v}", apps.len(), want.apps.len());
    for (got, exp) in apps.iter().zip(&want.apps) {
        let g = |k: &str| got.get(k).and_then(|x| x.as_str()).unwrap_or("");
        ensure!(g("application_id") == exp.application_id, "application order/id: {got}");
        ensure!(g("agency_id") == "dukcapil" && g("service_id") == exp.service_id, "owner: {got}");
        ensure!(
            g("state") == exp.state,
            "application {} state {:?}, expected {:?}",
            exp.application_id,
            g("state"),
            exp.state
        );
        let timeline = got.get("timeline").and_then(|t| t.as_array()).context("no timeline")?;
        let types: Vec<&str> =
            timeline.iter().map(|t| t.get("event_type").and_then(|x| x.as_str()).unwrap_or("")).collect();
        ensure!(
            types == exp.event_types,
            "application {} timeline {types:?}, expected {:?}",
            exp.application_id,
            exp.event_types
        );
        let seqs: Vec<u64> = timeline.iter().filter_map(|t| t.get("seq").and_then(|x| x.as_u64())).collect();
        ensure!(seqs.windows(2).all(|w| w[0] < w[1]), "timeline seqs not increasing: {seqs:?}");
        let last_state = timeline.last().and_then(|t| t.get("state_after")).and_then(|x| x.as_str());
        ensure!(
            last_state == Some(exp.state),
            "last timeline state_after {last_state:?}, expected {}",
            exp.state
        );
    }
    Ok(())
}

fn check_case_view(want: &ExpectedCase, v: &mpp_proto::v1::CaseView) -> Result<()> {
    ensure!(v.tracking_number == want.tracking_number, "gRPC tracking_number {v:?}");
    ensure!(v.region_code == REGION, "gRPC region_code {:?}", v.region_code);
    ensure!(v.applications.len() == want.apps.len(), "gRPC applications {}", v.applications.len());
    for (got, exp) in v.applications.iter().zip(&want.apps) {
        ensure!(got.application_id == exp.application_id, "gRPC application id {:?}", got.application_id);
        ensure!(got.state == exp.pb_state as i32, "gRPC state {} expected {:?}", got.state, exp.pb_state);
        ensure!(
            got.timeline.len() == exp.event_types.len(),
            "gRPC timeline of {} has {} items, expected {}",
            exp.application_id,
            got.timeline.len(),
            exp.event_types.len()
        );
    }
    Ok(())
}

fn reason_of(status: &tonic::Status) -> String {
    status.metadata().get("mpp-reason-code").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
}

/// Lookups of numbers that are mistyped, malformed or unknown, and of a
/// known case with a wrong PIN, fail with their reason codes over HTTP and
/// gRPC; an unknown case and a wrong PIN get the same answer.
async fn check_lookup_errors(hub: &HubProcess, any: &ExpectedCase) -> Result<()> {
    let (any_tn, pin) = (any.tracking_number.as_str(), any.pin.as_str());
    let wrong_pin = other_pin(pin);
    let bad = with_bad_check_digit(any_tn);
    let unknown = tracking_number(1771, 9_999_999_999)?;
    let unknown_answer = hub.case_json(&unknown, pin).await?;
    let wrong_pin_answer = hub.case_json(any_tn, &wrong_pin).await?;
    ensure!(
        unknown_answer == wrong_pin_answer,
        "an unknown case and a wrong PIN must get the same answer: {unknown_answer:?} vs {wrong_pin_answer:?}"
    );
    for (tn, pin, status, code) in [
        (bad.as_str(), pin, 400, "BAD_CHECK_DIGIT"),
        ("1771-12", pin, 400, "MALFORMED_TRACKING_NUMBER"),
        (unknown.as_str(), pin, 404, "CASE_NOT_FOUND"),
        (any_tn, wrong_pin.as_str(), 404, "CASE_NOT_FOUND"),
        (any_tn, "", 400, "PIN_REQUIRED"),
    ] {
        let (got_status, body) = hub.case_json(tn, pin).await?;
        let got_code = body.pointer("/error/code").and_then(|c| c.as_str()).unwrap_or("");
        ensure!(
            got_status == status && got_code == code,
            "GET /api/v1/cases/{tn}: got {got_status} {body}, expected {status} with error.code {code}"
        );
    }
    let mut cases = CasesServiceClient::connect(hub.grpc_endpoint()).await?;
    for (tn, pin, code, reason) in [
        (bad.as_str(), pin, tonic::Code::InvalidArgument, "BAD_CHECK_DIGIT"),
        (unknown.as_str(), pin, tonic::Code::NotFound, "CASE_NOT_FOUND"),
        (any_tn, wrong_pin.as_str(), tonic::Code::NotFound, "CASE_NOT_FOUND"),
        (any_tn, "", tonic::Code::InvalidArgument, "PIN_REQUIRED"),
    ] {
        let request =
            GetCaseRequest { tracking_number: tn.to_owned(), pin: pin.to_owned(), ..Default::default() };
        match cases.get_case(request).await {
            Ok(r) => bail!("GetCase({tn}) answered a case: {:?}", r.into_inner()),
            Err(s) => ensure!(
                s.code() == code && reason_of(&s) == reason,
                "GetCase({tn}): got {:?} with mpp-reason-code {:?}, expected {code:?} {reason}",
                s.code(),
                reason_of(&s)
            ),
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_events_through_dukcapil_are_all_visible_with_exact_counts() -> Result<()> {
    let cases: usize =
        std::env::var("MPP_SPINE_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(CASES_DEFAULT);
    let (nats, mut hub) = nats_and_hub(READY_DEADLINE).await?;
    let mut dukcapil = AgencyProcess::spawn_dukcapil(&nats.url(), REGION)?;
    dukcapil.wait_listening(READY_DEADLINE).await?;

    // When: `cases` citizens go through five kinds of journey, WORKERS at a time.
    let started = Instant::now();
    let channel = Channel::from_shared(dukcapil.grpc_endpoint())?.connect().await?;
    let anonymous = DukcapilServiceClient::new(channel.clone())
        .ajukan_permohonan(dk::Permohonan {
            layanan: dk::Layanan::Kk as i32,
            petugas: "petugas-loket-1".to_owned(),
            ..Default::default()
        })
        .await;
    match anonymous {
        Err(s) if s.code() == tonic::Code::Unauthenticated => {}
        other => bail!("a call without a token must be refused as UNAUTHENTICATED, got {other:?}"),
    }
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let mut client = DukcapilServiceClient::with_interceptor(channel.clone(), dukcapil.bearer()?);
        tasks.push(tokio::spawn(async move {
            let mut answers = Answers::default();
            let mut expected = Vec::new();
            for i in (w..cases).step_by(WORKERS) {
                expected.push(
                    journey(&mut client, &mut answers, i % 5).await.with_context(|| format!("case #{i}"))?,
                );
            }
            anyhow::Ok((answers, expected))
        }));
    }
    let mut event_ids = Vec::new();
    let mut expected = Vec::new();
    for t in tasks {
        let (answers, exp) = t.await??;
        event_ids.extend(answers.event_ids);
        expected.extend(exp);
    }
    let unique: BTreeSet<&String> = event_ids.iter().collect();
    ensure!(unique.len() == event_ids.len(), "the service answered the same event id twice");
    println!("{cases} cases, {} events answered by mpp-dukcapil in {:?}", event_ids.len(), started.elapsed());

    // Then: the service's outbox delivers every answered event to the stream
    // (an answer means "durably queued"; publishing follows) ...
    let js = nats.jetstream().await?;
    let expected_stream = (event_ids.len() + DUKCAPIL_SERVICES.len()) as u64;
    let js_probe = js.clone();
    wait_for("the stream to hold every answered event", CATCH_UP_DEADLINE, || {
        let js = js_probe.clone();
        async move { Ok((stream_last_seq(&js).await? >= expected_stream).then_some(())) }
    })
    .await?;
    let last = stream_last_seq(&js).await?;
    ensure!(
        last == expected_stream,
        "stream holds {last} messages, expected {expected_stream} ({} answered events + {} standards)",
        event_ids.len(),
        DUKCAPIL_SERVICES.len()
    );
    // ... and the hub ingests everything the stream holds.
    let head = hub.wait_caught_up(last, CATCH_UP_DEADLINE).await?;
    ensure!(head.last_seq == last, "hub head {head:?} after ingesting {last} stream messages");
    println!("hub caught up to stream seq {last} after {:?}", started.elapsed());

    // And every case reads back as its journey left it, over HTTP and gRPC.
    // Failures are collected, so the store audit below can show their log entries.
    let mut grpc = CasesServiceClient::connect(hub.grpc_endpoint()).await?;
    let mut failed: Vec<(String, String)> = Vec::new();
    for want in &expected {
        let tn = &want.tracking_number;
        let (status, body) = hub.case_json(tn, &want.pin).await?;
        let http = if status == 200 {
            check_case_json(want, &body)
        } else {
            Err(anyhow::anyhow!("{status} {body}"))
        };
        if let Err(e) = http {
            failed.push((tn.clone(), format!("HTTP: {e:#}")));
            continue;
        }
        let view = grpc
            .get_case(GetCaseRequest {
                tracking_number: tn.clone(),
                pin: want.pin.clone(),
                ..Default::default()
            })
            .await
            .with_context(|| format!("gRPC GetCase {tn}"))?
            .into_inner();
        if let Err(e) = check_case_view(want, &view) {
            failed.push((tn.clone(), format!("gRPC: {e:#}")));
        }
    }
    check_lookup_errors(&hub, &expected[0]).await?;
    let ready = hub.get("/readyz").await?;
    ensure!(ready.status == 200, "hub not ready after the run: {} {}", ready.status, ready.text());

    // Finally the stopped hub's store: exact counts, chain, rebuild = projection.
    dukcapil.terminate().await?;
    hub.terminate().await?;
    let audit = audit_stopped_hub(hub.data_dir())?;
    println!("store: {:?}, {} cases", audit.summary, audit.cases);
    if !failed.is_empty() {
        let mut report = format!("{} of {} cases look wrong:\n", failed.len(), expected.len());
        for (tn, why) in failed.iter().take(5) {
            report.push_str(&format!("case {tn}: {why}\n  log entries of the case:\n"));
            for line in check::describe_case_entries(&audit.entries, tn) {
                report.push_str(&format!("    {line}\n"));
            }
        }
        bail!(report);
    }
    ensure!(audit.summary.rejected_total() == 0, "rejected entries: {:?}", audit.summary.rejected);
    ensure!(audit.summary.duplicates == 0, "duplicate entries: {}", audit.summary.duplicates);
    ensure!(
        audit.summary.accepted == event_ids.len() + DUKCAPIL_SERVICES.len(),
        "accepted {}",
        audit.summary.accepted
    );
    ensure!(audit.cases == cases, "{} cases in the projection, expected {cases}", audit.cases);
    let accepted = check::accepted_by_event_id(&audit.entries);
    for id in &event_ids {
        match accepted.get(id).map(Vec::len) {
            Some(1) => {}
            n => bail!("event {id} answered by mpp-dukcapil is accepted {n:?} times in the log"),
        }
    }
    Ok(())
}
