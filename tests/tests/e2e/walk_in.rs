//! An agency's walk-in citizen (issue 15 item 3), end to end: a real hub on
//! a real nats-server with the participant registry in force, the front
//! office and Dukcapil as real processes signing with their registered
//! keys. Dukcapil has no PIN pepper: a filing without a tracking number
//! asks the front office (`BukaBerkasInstansi`, its own token with the
//! scope `cases:open-walk-in`) to open the case, files into it and hands
//! back the PIN, with which the citizen looks the application up. The RPC
//! is refused to a token without its scope, and a Dukcapil without a front
//! office, or with a token the front office refuses, refuses the walk-in
//! with its own code and publishes nothing.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mpp_core::registry::REGISTRY_SUBJECT;
use mpp_core::Verdict;
use mpp_proto::agency::dukcapil::v1 as dk;
use mpp_proto::frontoffice::v1 as fo;
use mpp_proto::v1::envelope::Body;
use mpp_proto::v1::Envelope;
use mpp_registrar::publish as publish_statements;
use mpp_tests::dukcapil::{self, Answered};
use mpp_tests::envelope::stream_last_seq;
use mpp_tests::registry::{participant_key, test_registrar, FRONT_OFFICE};
use mpp_tests::services::{token_line, walk_in_client_id, AgencyOptions, FrontOfficeLink};
use mpp_tests::store::audit_stopped_hub;
use mpp_tests::{wait_for, AgencyProcess, READY_DEADLINE};
use prost::Message as _;
use tonic::Code;

use super::registry::{front_office_and_dukcapil, wait_stream};

const REGION: &str = "1771";
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(60);
/// Dukcapil's token at the front office, for walk-ins only.
const WALK_IN_TOKEN: &str = "walk-in-token-of-dukcapil-e2e";
/// A counter desk's token at the front office: it opens cases at the desk
/// (`cases:open`), not walk-ins.
const DESK_TOKEN: &str = "desk-token-e2e";

fn reason(s: &tonic::Status) -> &str {
    s.metadata().get(mpp_agency_kit::REASON_CODE_METADATA_KEY).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn write_token(dir: &Path, name: &str, token: &str) -> Result<std::path::PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, format!("{token}\n")).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agency_walk_in_is_opened_by_the_front_office_and_looked_up_with_its_pin() -> Result<()> {
    // Given: a hub under the registry (the front office and Dukcapil with
    // their keys).
    let (nats, mut hub) = mpp_tests::services::nats_and_hub(READY_DEADLINE).await?;
    let js = nats.jetstream().await?;
    let keys = mpp_tests::temp_dir("mpp-walk-in-keys-")?;
    let (fo_key, fo_pk) = participant_key(keys.path(), "front-office")?;
    let (dk_key, dk_pk) = participant_key(keys.path(), "dukcapil")?;
    let registrar = test_registrar();
    let now = mpp_tests::envelope::now_ms();
    let statements = front_office_and_dukcapil(&registrar, keys.path(), now, (&fo_pk, &dk_pk), vec![])?;
    publish_statements(&nats.connect().await?, &statements).await?;
    wait_stream(&js, &mut hub).await?;

    // ...the front office, which lists Dukcapil's walk-in token and a desk's
    // token, each with its one scope...
    let signing = |key: &Path| vec!["--signing-key-file".to_owned(), key.display().to_string()];
    let walk_in_client = walk_in_client_id("mpp-dukcapil");
    let mut front = AgencyProcess::spawn_frontoffice(
        &nats.url(),
        AgencyOptions {
            extra_args: signing(&fo_key),
            extra_token_lines: vec![
                token_line(&walk_in_client, WALK_IN_TOKEN, "cases:open-walk-in"),
                token_line("desk-1", DESK_TOKEN, "cases:open"),
            ],
            ..AgencyOptions::region(REGION)
        },
    )?;
    front.wait_listening(READY_DEADLINE).await?;
    // ...Dukcapil with its token there; one without a front office; one
    // whose token the front office does not let open walk-ins.
    let tokens = mpp_tests::temp_dir("mpp-walk-in-tokens-")?;
    let dukcapil_with = |link: FrontOfficeLink| {
        AgencyProcess::spawn(
            "mpp-dukcapil",
            &nats.url(),
            AgencyOptions {
                extra_args: signing(&dk_key),
                front_office: link,
                ..AgencyOptions::region(REGION)
            },
        )
    };
    let url = front.grpc_endpoint();
    let mut dukcapil = dukcapil_with(FrontOfficeLink::Given {
        url: url.clone(),
        token_file: write_token(tokens.path(), "walk-in", WALK_IN_TOKEN)?,
    })?;
    let mut alone = dukcapil_with(FrontOfficeLink::None)?;
    let mut wrong_scope = dukcapil_with(FrontOfficeLink::Given {
        url: url.clone(),
        token_file: write_token(tokens.path(), "desk", DESK_TOKEN)?,
    })?;
    for agency in [&mut dukcapil, &mut alone, &mut wrong_scope] {
        agency.wait_listening(READY_DEADLINE).await?;
    }
    ensure!(
        !dukcapil.log_tail().contains("pin-pepper") && !dukcapil.log_tail().contains("PIN pepper"),
        "an agency service loads no PIN pepper:\n{}",
        dukcapil.log_tail()
    );
    // (Dukcapil's three standards, signed, once in the stream.)
    let standards = statements.len() as u64 + 3;
    wait_for("Dukcapil's standards in the stream", CATCH_UP_DEADLINE, || async {
        Ok((stream_last_seq(&js).await? >= standards).then_some(()))
    })
    .await?;

    // When: a walk-in citizen files a family card at Dukcapil's counter.
    let answered = Answered::default();
    let mut c = dukcapil::client(&dukcapil)?;
    let r = c
        .ajukan_permohonan(dukcapil::permohonan("", dk::Layanan::Kk))
        .await
        .context("AjukanPermohonan (walk-in)")?
        .into_inner();
    answered.record(&r.event_ids)?;
    let (tn, pin) = (r.nomor_berkas.clone(), r.pin.clone());
    ensure!(r.event_ids.len() == 2 && !pin.is_empty(), "the walk-in's answer: {r:?}");

    // ...and the refusals: no front office, a token without the scope,
    // and the RPC called with a desk's token.
    let s = dukcapil::client(&alone)?
        .ajukan_permohonan(dukcapil::permohonan("", dk::Layanan::Kk))
        .await
        .expect_err("a walk-in without a front office");
    ensure!(
        (s.code(), reason(&s)) == (Code::FailedPrecondition, "FRONT_OFFICE_NOT_CONFIGURED"),
        "without a front office: {s:?}"
    );
    let s = dukcapil::client(&wrong_scope)?
        .ajukan_permohonan(dukcapil::permohonan("", dk::Layanan::Kk))
        .await
        .expect_err("a walk-in with a token lacking the scope");
    ensure!(
        (s.code(), reason(&s)) == (Code::FailedPrecondition, "FRONT_OFFICE_REFUSED")
            && s.message().contains("SCOPE_MISSING"),
        "with a desk's token: {s:?}"
    );
    let channel = tonic::transport::Endpoint::from_shared(url)?.connect().await?;
    let mut fo_desk = fo::front_office_service_client::FrontOfficeServiceClient::with_interceptor(
        channel,
        mpp_tests::services::Bearer::new(DESK_TOKEN)?,
    );
    let s = fo_desk
        .buka_berkas_instansi(fo::PembukaanBerkasInstansi { petugas: "ptg-1".to_owned() })
        .await
        .expect_err("BukaBerkasInstansi with a desk's token");
    ensure!(
        (s.code(), reason(&s)) == (Code::PermissionDenied, "SCOPE_MISSING"),
        "BukaBerkasInstansi without its scope: {s:?}"
    );

    // Then: the walk-in's two events reach the stream (the front office's
    // opening, Dukcapil's filing), the refusals none, and the citizen sees
    // the application with the PIN Dukcapil handed back.
    let want = standards + 2;
    wait_for("the walk-in's events in the stream", CATCH_UP_DEADLINE, || async {
        Ok((stream_last_seq(&js).await? >= want).then_some(()))
    })
    .await?;
    let last = wait_stream(&js, &mut hub).await?;
    ensure!(last == standards + 2, "the stream holds {last} messages, expected {}", standards + 2);
    let (status, case) = hub.case_json(&tn, &pin).await?;
    ensure!(status == 200, "GET {tn} with the walk-in's PIN answered {status}: {case}");
    let apps = case["applications"].as_array().context("applications")?;
    ensure!(
        apps.len() == 1
            && apps[0]["agency_id"] == "dukcapil"
            && apps[0]["application_id"] == r.nomor_permohonan.as_str()
            && apps[0]["state"] == "submitted",
        "the citizen's case: {case}"
    );
    let front_log = front.log_tail();
    let opened_line = front_log
        .lines()
        .find(|l| l.contains("walk-in citizen") && l.contains(&tn))
        .with_context(|| format!("no walk-in line in the front office's log:\n{front_log}"))?;
    ensure!(opened_line.contains(&walk_in_client), "logged without the calling agency: {opened_line}");
    ensure!(!front_log.contains(&pin) && !dukcapil.log_tail().contains(&pin), "a PIN was logged");

    // And: the log holds one case_opened, by the front office, accepted,
    // and Dukcapil's filing, accepted; nothing else after the standards.
    hub.terminate().await?;
    let audit = audit_stopped_hub(hub.data_dir())?;
    let events: Vec<(&mpp_core::LogEntry, Envelope)> = audit
        .entries
        .iter()
        .filter(|e| e.subject != REGISTRY_SUBJECT)
        .map(|e| Ok((e, Envelope::decode(e.payload.as_slice())?)))
        .collect::<Result<_>>()?;
    let of_kind = |is: fn(&Body) -> bool| {
        events.iter().filter(|(_, env)| env.body.as_ref().is_some_and(is)).collect::<Vec<_>>()
    };
    let opened = of_kind(|b| matches!(b, Body::CaseOpened(_)));
    ensure!(opened.len() == 1, "{} case_opened entries", opened.len());
    let (entry, env) = opened[0];
    ensure!(
        entry.verdict == Verdict::Accepted
            && env.agency_id == FRONT_OFFICE
            && env.case_id == tn
            && env.event_id == r.event_ids[0],
        "the opening: {:?} {:?} {} by {}",
        entry.verdict,
        entry.reason,
        entry.detail,
        env.agency_id
    );
    let filed = of_kind(|b| matches!(b, Body::ApplicationFiled(_)));
    ensure!(filed.len() == 1, "{} application_filed entries", filed.len());
    let (entry, env) = filed[0];
    ensure!(
        entry.verdict == Verdict::Accepted && env.agency_id == "dukcapil" && env.event_id == r.event_ids[1],
        "the filing: {:?} {:?} {}",
        entry.verdict,
        entry.reason,
        entry.detail
    );
    ensure!(answered.count() == 2, "answered {}", answered.count());
    Ok(())
}
