//! Cross-agency updates (issue 18, item 2): the PLN/PBG journey. PLN's
//! service follows DPMPTSP's PBG `issued` events on its cases (the only
//! type the registry grants it); when the building approval is issued on a
//! case where PLN's new connection is paid, PLN's service schedules the
//! installation by itself, the citizen's page shows it, and the case's
//! access history shows that PLN's system followed the case. A bank with
//! an application on the same case but a grant for another service receives
//! nothing of it, and PDAM, granted nothing, is refused.
//!
//! Real processes: a private nats-server, `mpp-hub serve` (trusting the
//! test registrar, with participant tokens), the front office, `mpp-dpmptsp`
//! and `mpp-pln` (following the hub with `--hub-url`), each signing with its
//! registered key; the bank's filing is published signed by the test.
//! PLN's service is then killed (`kill -9`) while a second case's PBG is
//! issued, and schedules that installation once restarted.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mpp_proto::agency::dpmptsp::v1 as dpm;
use mpp_proto::agency::pln::v1 as pln;
use mpp_proto::v1 as pb;
use mpp_proto::v1::case_event_service_client::CaseEventServiceClient;
use mpp_registrar::{key_added, publish as publish_statements};
use mpp_tests::envelope::{body, now_ms, publish, stream_last_seq, EventFactory};
use mpp_tests::registry::{agency_entry, participant_key, test_registrar, FRONT_OFFICE};
use mpp_tests::services::{case_opening, dpm_step, pbg_filing, AgencyOptions, HubOptions};
use mpp_tests::{wait_for, AgencyProcess, Bearer, HubProcess, NatsServer, DAY_MS, READY_DEADLINE};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::registry::{front_office_registration, signed, signer};

const REGION: &str = "1771";
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(60);
/// How long PLN's service may take to hear of the PBG and schedule.
const REACTION_DEADLINE: Duration = Duration::from_secs(60);

/// The case's JSON once `pred` holds for it.
async fn case_when(
    hub: &HubProcess,
    tn: &str,
    pin: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let found = wait_for(what, CATCH_UP_DEADLINE.max(REACTION_DEADLINE), || async {
        let (status, v) = hub.case_json(tn, pin).await?;
        Ok((status == 200 && pred(&v)).then_some(v))
    })
    .await;
    if found.is_err() {
        let (status, v) = hub.case_json(tn, pin).await?;
        let states: Vec<String> = v["applications"]
            .as_array()
            .map(|a| {
                a.iter().map(|a| format!("{}/{}={}", a["agency_id"], a["service_id"], a["state"])).collect()
            })
            .unwrap_or_default();
        eprintln!("the case ({status}): {states:?}\nhub log:\n{}", hub.log_tail());
    }
    found
}

fn application<'a>(case: &'a Value, agency: &str, service: &str) -> Option<&'a Value> {
    case["applications"].as_array()?.iter().find(|a| a["agency_id"] == agency && a["service_id"] == service)
}

/// An application's timeline items, oldest first (the JSON lists them
/// newest first).
fn timeline(app: &Value) -> Vec<Value> {
    let mut items = app["timeline"].as_array().cloned().unwrap_or_default();
    items.sort_by_key(|i| i["seq"].as_u64());
    items
}

/// Every case event the hub sends `token`'s participant, from the start up
/// to at least `head`.
async fn case_events_up_to(hub: &HubProcess, token: &str, head: u64) -> Result<Vec<pb::CaseEvent>> {
    let channel = tonic::transport::Endpoint::from_shared(hub.grpc_endpoint())?.connect().await?;
    let mut client = CaseEventServiceClient::with_interceptor(channel, Bearer::new(token)?);
    let mut feed =
        client.follow_case_events(pb::FollowCaseEventsRequest { after_seq: 0 }).await?.into_inner();
    let (mut events, mut cursor) = (Vec::new(), 0);
    while cursor < head {
        let batch = tokio::time::timeout(CATCH_UP_DEADLINE, feed.message())
            .await
            .context("the case-event feed stalled")??
            .context("the case-event feed ended early")?;
        cursor = batch.scanned_to_seq;
        events.extend(batch.events);
    }
    Ok(events)
}

type Fo = mpp_tests::services::FrontOfficeClient;
type Dpm = mpp_tests::services::DpmptspClient;
type Pln = pln::pln_service_client::PlnServiceClient<InterceptedService<Channel, Bearer>>;

/// A case opened at the front office with a PBG under review at DPMPTSP
/// and a new connection at PLN surveyed, billed and paid.
struct Prepared {
    tn: String,
    pin: String,
    pbg: String,
}

async fn prepare(fo: &mut Fo, dpm: &mut Dpm, pln_c: &mut Pln, nik: &str) -> Result<Prepared> {
    let opened = fo.buka_berkas(case_opening(nik, "081234567890")).await.context("BukaBerkas")?.into_inner();
    let (tn, pin) = (opened.nomor_berkas, opened.pin);
    let pbg = dpm.ajukan_permohonan(pbg_filing(&tn)).await.context("AjukanPermohonan PBG")?.into_inner();
    dpm.mulai_pemeriksaan(dpm_step(&tn, &pbg.nomor_registrasi)).await.context("MulaiPemeriksaan")?;
    let connection = pln_c
        .daftar_permohonan(pln::Permohonan {
            nomor_berkas: tn.clone(),
            jenis_layanan: pln::JenisLayanan::PasangBaru as i32,
            dokumen: vec!["KTP-el pemohon".to_owned()],
            petugas: "pln-1".to_owned(),
        })
        .await
        .context("DaftarPermohonan")?
        .into_inner();
    let pln_step = || {
        Some(pln::Langkah {
            nomor_berkas: tn.clone(),
            nomor_agenda: connection.nomor_agenda.clone(),
            petugas: "pln-1".to_owned(),
        })
    };
    let survey_at = now_ms() + DAY_MS;
    pln_c
        .jadwalkan_survei(pln::Kunjungan {
            langkah: pln_step(),
            waktu_ms: survey_at,
            alamat: "Jl. Merapi 5".into(),
        })
        .await
        .context("JadwalkanSurvei")?;
    pln_c
        .terbitkan_tagihan(pln::Tagihan {
            langkah: pln_step(),
            jumlah_tagihan: 1_259_700,
            kode_bayar: "521100123456".to_owned(),
            saluran_pembayaran: "PLN Mobile".to_owned(),
            jatuh_tempo_ms: now_ms() + 7 * DAY_MS,
        })
        .await
        .context("TerbitkanTagihan")?;
    pln_c
        .konfirmasi_pembayaran(pln::Pembayaran {
            langkah: pln_step(),
            jumlah_bayar: 1_259_700,
            nomor_referensi: String::new(),
        })
        .await
        .context("KonfirmasiPembayaran")?;
    Ok(Prepared { tn, pin, pbg: pbg.nomor_registrasi })
}

/// DPMPTSP issues the case's PBG.
async fn issue_pbg(dpm: &mut Dpm, p: &Prepared) -> Result<()> {
    let langkah = dpm::Langkah {
        nomor_berkas: p.tn.clone(),
        nomor_registrasi: p.pbg.clone(),
        petugas: "dpm-1".to_owned(),
    };
    dpm.terbitkan_izin(dpm::IzinTerbit { langkah: Some(langkah), nomor_izin: format!("PBG-{}", p.tn) })
        .await
        .context("TerbitkanIzin")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pln_schedules_the_installation_when_the_pbg_is_issued_and_others_see_nothing() -> Result<()> {
    // Given: NATS, and a hub with the participants' feed tokens.
    let nats = NatsServer::start().await?;
    let js = nats.jetstream().await?;
    let secrets = mpp_tests::temp_dir("mpp-cross-agency-")?;
    let dir = secrets.path();
    let mut tokens = String::new();
    let mut token_of = |participant: &str| -> Result<String> {
        let token = format!("{participant}-{}", uuid::Uuid::now_v7().simple());
        tokens.push_str(&format!("{participant}:{}\n", hex::encode(Sha256::digest(token.as_bytes()))));
        Ok(token)
    };
    let (pln_token, bank_token, pdam_token) = (token_of("pln")?, token_of("bank")?, token_of("pdam")?);
    let participants = dir.join("participants");
    std::fs::write(&participants, tokens)?;
    let pln_token_file = dir.join("pln-hub-token");
    std::fs::write(&pln_token_file, format!("{pln_token}\n"))?;
    let mut hub = HubProcess::spawn_with(
        &nats.url(),
        HubOptions::with_file("--participant-tokens-file", &participants),
    )?;
    hub.wait_ready(READY_DEADLINE).await?;

    // ...the registry: PLN may follow DPMPTSP's PBG `issued`, the bank
    // DPMPTSP's NIB `issued`; PDAM follows nothing.
    let (fo_key, fo_pk) = participant_key(dir, "front-office")?;
    let (dpm_key, dpm_pk) = participant_key(dir, "dpmptsp")?;
    let (pln_key, pln_pk) = participant_key(dir, "pln")?;
    let (bank_key, bank_pk) = participant_key(dir, "bank")?;
    let registry_file = dir.join("registry.toml");
    let agency =
        |id: &str, category: &str, follow: &str| format!("{}{follow}\n", agency_entry(id, category, REGION));
    std::fs::write(
        &registry_file,
        [
            agency("dpmptsp", "daerah", ""),
            agency(
                "pln",
                "bumn",
                "[[participant.follow]]\nparticipant = \"dpmptsp\"\nservice = \"pbg\"\nevent_types = [\"issued\"]\n",
            ),
            agency(
                "bank",
                "swasta",
                "[[participant.follow]]\nparticipant = \"dpmptsp\"\nservice = \"nib\"\nevent_types = [\"issued\"]\n",
            ),
            agency("pdam", "bumd", ""),
        ]
        .concat(),
    )?;
    let registrar = test_registrar();
    let now = now_ms();
    let mut statements = vec![front_office_registration(&registrar, now)];
    statements.extend(mpp_registrar::sign_registry(&registrar, &registry_file, now)?);
    for (id, pk) in [(FRONT_OFFICE, fo_pk), ("dpmptsp", dpm_pk), ("pln", pln_pk), ("bank", bank_pk)] {
        statements.push(registrar.sign(key_added(id, &pk, now - DAY_MS, now + 365 * DAY_MS), now));
    }
    publish_statements(&nats.connect().await?, &statements).await?;
    hub.wait_caught_up(stream_last_seq(&js).await?, CATCH_UP_DEADLINE).await?;

    // ...the front office, DPMPTSP, and PLN following the hub.
    let with_key = |key: &Path, more: Vec<String>| AgencyOptions {
        extra_args: [vec!["--signing-key-file".to_owned(), key.display().to_string()], more].concat(),
        ..AgencyOptions::region(REGION)
    };
    let mut front = AgencyProcess::spawn_frontoffice(&nats.url(), with_key(&fo_key, vec![]))?;
    let mut dpmptsp = AgencyProcess::spawn("mpp-dpmptsp", &nats.url(), with_key(&dpm_key, vec![]))?;
    let follow = vec![
        "--hub-url".to_owned(),
        hub.grpc_endpoint(),
        "--hub-token-file".to_owned(),
        pln_token_file.display().to_string(),
    ];
    let mut pln_service = AgencyProcess::spawn("mpp-pln", &nats.url(), with_key(&pln_key, follow))?;
    for p in [&mut front, &mut dpmptsp, &mut pln_service] {
        p.wait_listening(READY_DEADLINE).await?;
    }

    // ...a citizen's case: a PBG at DPMPTSP under review, a new connection
    // at PLN surveyed, billed and paid, a savings account at the bank.
    let mut fo_client = front.front_office_client()?;
    let mut dpm_client = dpmptsp.dpmptsp_client()?;
    let mut pln_client = pln::pln_service_client::PlnServiceClient::with_interceptor(
        pln_service.channel()?,
        pln_service.bearer()?,
    );
    let first = prepare(&mut fo_client, &mut dpm_client, &mut pln_client, "1771014501900001").await?;
    // (A second one, whose PBG is issued while PLN's service is down.)
    let second = prepare(&mut fo_client, &mut dpm_client, &mut pln_client, "1771014501900002").await?;
    let (tn, pin) = (first.tn.clone(), first.pin.clone());
    let bank = EventFactory::new("bank", "tabungan", REGION);
    // (The hub learns of the bank's service from its standard.)
    for env in [bank.standard(1), bank.app_event(&tn, "BANK-TAB-1", body::filed())] {
        let payload = signed(&signer("bank", &bank_key)?, &bank.subject(), &env);
        publish(&js, &bank.subject(), Some(&env.event_id), payload).await?;
    }
    let case = case_when(&hub, &tn, &pin, "PLN paid, the PBG in review, the bank filed", |c| {
        let state = |a: &str, s: &str| application(c, a, s).and_then(|a| a["state"].as_str()).unwrap_or("");
        state("pln", "pasang-baru") == "paid"
            && state("dpmptsp", "pbg") == "in_review"
            && state("bank", "tabungan") == "submitted"
    })
    .await?;
    ensure!(
        case["access_events"].as_array().is_some_and(|a| !a.iter().any(|e| e["channel"] == "feed")),
        "nobody followed the case yet: {}",
        case["access_events"]
    );

    // When: DPMPTSP issues the PBG. Nobody tells PLN.
    issue_pbg(&mut dpm_client, &first).await?;

    // Then: PLN's service schedules the installation by itself.
    let case = case_when(&hub, &tn, &pin, "PLN's installation scheduled after the PBG", |c| {
        application(c, "pln", "pasang-baru").is_some_and(|a| a["state"] == "scheduled")
    })
    .await?;
    let pbg_app = application(&case, "dpmptsp", "pbg").context("the PBG")?;
    ensure!(pbg_app["state"] == "issued", "the PBG: {pbg_app}");
    let pln_app = application(&case, "pln", "pasang-baru").context("PLN's application")?;
    let items = timeline(pln_app);
    let steps: Vec<&str> = items.iter().filter_map(|i| i["event_type"].as_str()).collect();
    ensure!(
        steps
            == [
                "application_filed",
                "appointment_scheduled",
                "fee_assessed",
                "payment_received",
                "appointment_scheduled"
            ],
        "PLN's timeline: {steps:?}"
    );
    let installation = items.last().context("no last step")?;
    let issued_seq = timeline(pbg_app).last().and_then(|i| i["seq"].as_u64()).context("the PBG's issue")?;
    ensure!(
        installation["seq"].as_u64() > Some(issued_seq),
        "the installation follows the PBG's issue: {installation} after seq {issued_seq}"
    );
    println!("PLN's own step after the PBG (seq {issued_seq}): {installation}");

    // ...and the access history shows PLN's system, once.
    let feeds: Vec<&Value> = case["access_events"]
        .as_array()
        .context("no access_events")?
        .iter()
        .filter(|e| e["channel"] == "feed")
        .collect();
    ensure!(
        feeds.len() == 1 && feeds[0]["accessor"] == "agency" && feeds[0]["agency_id"] == "pln",
        "the access history: {}",
        case["access_events"]
    );
    // The citizen's page says it in words.
    let form = format!("nomor={tn}&pin={pin}&lang=id");
    let page = mpp_tests::http::request(
        hub.http_addr(),
        "POST",
        "/lacak",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    )
    .await?;
    let html = String::from_utf8_lossy(&page.body);
    ensure!(page.status == 200, "the page answered {}: {html}", page.status);
    ensure!(
        html.contains("menerima kabar perkembangan berkas dari instansi lain") && html.contains("PLN"),
        "the page names PLN's system in its access history"
    );
    ensure!(html.contains("Dijadwalkan"), "the page shows the installation scheduled");

    // The bank (a grant for another service) received nothing of the case,
    // and PDAM, granted nothing, is refused.
    let head = stream_last_seq(&js).await?;
    hub.wait_caught_up(head, CATCH_UP_DEADLINE).await?;
    let bank_events = case_events_up_to(&hub, &bank_token, head).await?;
    ensure!(bank_events.is_empty(), "the bank received {bank_events:?}");
    let pln_events = case_events_up_to(&hub, &pln_token, head).await?;
    ensure!(
        pln_events.len() == 1
            && pln_events[0].event_type == "issued"
            && pln_events[0].service_id == "pbg"
            && pln_events[0].case_id == tn,
        "PLN's feed holds exactly the PBG's issue: {pln_events:?}"
    );
    let channel = tonic::transport::Endpoint::from_shared(hub.grpc_endpoint())?.connect().await?;
    let mut pdam = CaseEventServiceClient::with_interceptor(channel, Bearer::new(&pdam_token)?);
    let refused = pdam.follow_case_events(pb::FollowCaseEventsRequest { after_seq: 0 }).await.unwrap_err();
    ensure!(
        refused.code() == tonic::Code::PermissionDenied
            && refused.metadata().get("mpp-reason-code").and_then(|v| v.to_str().ok())
                == Some("NO_FOLLOW_GRANT"),
        "PDAM: {refused:?}"
    );
    let (_, after) = hub.case_json(&tn, &pin).await?;
    let feeds =
        after["access_events"].as_array().map_or(0, |a| a.iter().filter(|e| e["channel"] == "feed").count());
    ensure!(
        feeds == 1,
        "the bank's and PLN's second reads of today add no record: {}",
        after["access_events"]
    );

    // PLN's service is killed; the second case's PBG is issued meanwhile.
    // Restarted, it resumes from its stored cursor: the second case's
    // installation is scheduled, nothing happens again on the first.
    pln_service.kill9()?;
    issue_pbg(&mut dpm_client, &second).await?;
    pln_service.restart().await?;
    pln_service.wait_listening(READY_DEADLINE).await?;
    let case2 =
        case_when(&hub, &second.tn, &second.pin, "the second installation after PLN's restart", |c| {
            application(c, "pln", "pasang-baru").is_some_and(|a| a["state"] == "scheduled")
        })
        .await?;
    let feeds2 = case2["access_events"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|e| e["channel"] == "feed" && e["agency_id"] == "pln").count());
    ensure!(feeds2 == 1, "the second case's access history: {}", case2["access_events"]);
    let head = stream_last_seq(&js).await?;
    hub.wait_caught_up(head, CATCH_UP_DEADLINE).await?;
    let (_, first_again) = hub.case_json(&tn, &pin).await?;
    let steps: Vec<String> = application(&first_again, "pln", "pasang-baru")
        .map(timeline)
        .unwrap_or_default()
        .iter()
        .filter_map(|i| i["event_type"].as_str().map(str::to_owned))
        .collect();
    ensure!(
        steps.iter().filter(|s| *s == "appointment_scheduled").count() == 2,
        "the first case keeps one survey and one installation: {steps:?}"
    );
    println!(
        "PLN scheduled the installations of {tn} and, after a kill -9, of {} by itself; each access \
         history shows PLN's system once",
        second.tn
    );
    Ok(())
}
