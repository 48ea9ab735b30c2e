//! Who may do what to a case (issue 15 item 3), end to end: a real hub on
//! a real nats-server, the registry published by the test registrar, and
//! participants' envelopes signed with their registered keys and published
//! straight to the stream, as an attacker with a registered agency's key
//! and NATS access would. Each attack is logged with its reason code, the
//! victim's case does not move, and the log replays byte for byte. The
//! auditors' views of the cases (`mpp-hub audit case-at`, `GetCaseAt`)
//! agree with the citizen's.

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use mpp_core::{EventKind, ReasonCode, Verdict};
use mpp_proto::v1::audit_service_client::AuditServiceClient;
use mpp_proto::v1::cases_service_client::CasesServiceClient;
use mpp_proto::v1::get_case_at_request::AsOf;
use mpp_proto::v1::{ApplicationState, Envelope, GetCaseAtRequest, GetCaseRequest};
use mpp_registrar::{agency_event_types, key_added, publish as publish_statements, registration};
use mpp_tests::envelope::{body, now_ms, publish, tracking_number, EventFactory};
use mpp_tests::pin::TEST_PIN;
use mpp_tests::registry::{participant_key, test_registrar, FRONT_OFFICE};
use mpp_tests::services::{Bearer, HubOptions, HubProcess};
use mpp_tests::store::audit_stopped_hub;
use mpp_tests::READY_DEADLINE;
use mpp_tests::{NatsServer, DAY_MS};
use sha2::{Digest, Sha256};

use super::registry::{front_office_registration, signed, signer, wait_stream};

const REGION: &str = "1771";
const ATTACKER: &str = "evil";
/// The auditors' token of the hub (a test's, not a secret).
const AUDITOR_TOKEN: &str = "e2e-case-fence-auditor-token";

/// A participant that signs what it publishes.
struct Participant {
    factory: EventFactory,
    signer: mpp_agency_kit::signing::EnvelopeSigner,
}

impl Participant {
    /// Signs `env` alone and publishes it; returns the payload as stored.
    async fn publish(&self, js: &async_nats::jetstream::Context, env: &Envelope) -> Result<Bytes> {
        let payload = signed(&self.signer, &self.factory.subject(), env);
        publish(js, &self.factory.subject(), Some(&env.event_id), payload.clone()).await?;
        Ok(payload)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agency_can_neither_open_a_case_nor_plant_an_application_in_one() -> Result<()> {
    // Given: a hub under the registry: the front office, Dukcapil, and an
    // agency `evil` whose registration (by the registrar's mistake) even
    // lists case_opened.
    let nats = NatsServer::start().await?;
    let js = nats.jetstream().await?;
    let keys = mpp_tests::temp_dir("mpp-case-fence-keys-")?;
    let auditors = keys.path().join("auditors");
    std::fs::write(&auditors, format!("e2e-auditor:{}\n", hex::encode(Sha256::digest(AUDITOR_TOKEN))))?;
    let mut hub =
        HubProcess::spawn_with(&nats.url(), HubOptions::with_file("--auditor-tokens-file", &auditors))?;
    hub.wait_ready(READY_DEADLINE).await?;
    let registrar = test_registrar();
    let now = now_ms();
    let all: Vec<EventKind> = EventKind::ALL.to_vec();
    let mut statements = vec![
        front_office_registration(&registrar, now),
        registrar.sign(
            registration("dukcapil", "agency", "daerah", &[REGION], &[("kk", &agency_event_types())]),
            now,
        ),
        registrar.sign(registration(ATTACKER, "agency", "swasta", &[REGION], &[("izin", &all)]), now),
    ];
    let mut participant = |id: &str, service: &str| -> Result<Participant> {
        let (key, public_key) = participant_key(keys.path(), id)?;
        statements.push(registrar.sign(key_added(id, &public_key, now - DAY_MS, now + 365 * DAY_MS), now));
        Ok(Participant { factory: EventFactory::new(id, service, REGION), signer: signer(id, &key)? })
    };
    let front = participant(FRONT_OFFICE, "loket")?;
    let dukcapil = participant("dukcapil", "kk")?;
    let evil = participant(ATTACKER, "izin")?;
    publish_statements(&nats.connect().await?, &statements).await?;
    dukcapil.publish(&js, &dukcapil.factory.standard(1)).await?;
    evil.publish(&js, &evil.factory.standard(1)).await?;
    // ...and a citizen's case opened at the front office, with Dukcapil's filing.
    let victim = tracking_number(1771, 1001)?;
    front.publish(&js, &front.factory.case_opened(&victim)).await?;
    dukcapil.publish(&js, &dukcapil.factory.app_event(&victim, "KK-1", body::filed())).await?;
    wait_stream(&js, &mut hub).await?;
    let (status, before) = hub.case_json(&victim, TEST_PIN).await?;
    ensure!(status == 200 && before["applications"].as_array().map(Vec::len) == Some(1), "{status} {before}");

    // When: the agency opens the victim's number and a number of its own...
    let take_over = evil.publish(&js, &evil.factory.case_opened(&victim)).await?;
    let own = tracking_number(1771, 1002)?;
    let shell_case = evil.publish(&js, &evil.factory.case_opened(&own)).await?;
    // ...and files into the number the counter will issue next, which the
    // front office issues two minutes later (its opening says when), after
    // which Dukcapil files for the citizen.
    let next = tracking_number(1771, 1003)?;
    let planted = evil.publish(&js, &evil.factory.app_event(&next, "EVIL-2", body::filed())).await?;
    wait_stream(&js, &mut hub).await?;
    let mut opening = front.factory.case_opened(&next);
    opening.occurred_at_ms = now_ms() + 2 * 60_000;
    let opened = front.publish(&js, &opening).await?;
    dukcapil.publish(&js, &dukcapil.factory.app_event(&next, "KK-2", body::filed())).await?;
    // ...while at another counter the front office issues a number, Dukcapil
    // files for that citizen before the opening reaches the hub (its
    // outbox lags), and then the opening arrives.
    let adopted = tracking_number(1771, 1004)?;
    let issued = front.factory.case_opened(&adopted);
    dukcapil.publish(&js, &dukcapil.factory.app_event(&adopted, "KK-3", body::filed())).await?;
    wait_stream(&js, &mut hub).await?;
    front.publish(&js, &issued).await?;
    wait_stream(&js, &mut hub).await?;

    // Then: the victim's case did not move, the agency's own number opens
    // to nobody, and the citizen of the next number sees Dukcapil only.
    let (status, after) = hub.case_json(&victim, TEST_PIN).await?;
    ensure!(status == 200, "GET victim answered {status}: {after}");
    for field in ["/last_seq", "/applications"] {
        ensure!(after.pointer(field) == before.pointer(field), "{field} changed: {before} -> {after}");
    }
    let (status, _) = hub.case_json(&own, TEST_PIN).await?;
    ensure!(status == 404, "the agency's own case answered {status}");
    let (status, next_case) = hub.case_json(&next, TEST_PIN).await?;
    let shown: Vec<String> = next_case["applications"]
        .as_array()
        .context("applications")?
        .iter()
        .map(|a| {
            format!(
                "{}/{}",
                a["agency_id"].as_str().unwrap_or(""),
                a["application_id"].as_str().unwrap_or("")
            )
        })
        .collect();
    ensure!(status == 200 && shown == ["dukcapil/KK-2"], "the citizen sees {shown:?} ({status} {next_case})");
    // The gRPC lookup leaves the dropped application out as the JSON does
    // (APPLICATION_STATE_DROPPED never reaches a citizen).
    let mut grpc = CasesServiceClient::connect(hub.grpc_endpoint()).await?;
    let view = grpc
        .get_case(GetCaseRequest {
            tracking_number: next.clone(),
            pin: TEST_PIN.to_owned(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let states: Vec<(String, i32)> =
        view.applications.iter().map(|a| (a.application_id.clone(), a.state)).collect();
    ensure!(states == [("KK-2".to_owned(), ApplicationState::Submitted as i32)], "GetCase shows {states:?}");
    // The auditors' GetCaseAt shows it, as dropped.
    let channel = tonic::transport::Channel::from_shared(hub.grpc_endpoint())?.connect().await?;
    let mut audit_api = AuditServiceClient::with_interceptor(channel, Bearer::new(AUDITOR_TOKEN)?);
    let at = audit_api
        .get_case_at(GetCaseAtRequest {
            tracking_number: next.clone(),
            as_of: Some(AsOf::Seq(view.last_seq)),
        })
        .await?
        .into_inner();
    let states: Vec<(String, i32)> =
        at.applications.iter().map(|a| (a.application_id.clone(), a.state)).collect();
    ensure!(
        states
            == [
                ("EVIL-2".to_owned(), ApplicationState::Dropped as i32),
                ("KK-2".to_owned(), ApplicationState::Submitted as i32)
            ],
        "GetCaseAt shows {states:?}"
    );
    let (status, adopted_case) = hub.case_json(&adopted, TEST_PIN).await?;
    let surfaced = adopted_case["applications"]
        .as_array()
        .map(|a| a.iter().map(|x| format!("{}/{}", x["application_id"], x["state"])).collect::<Vec<_>>());
    ensure!(
        status == 200 && surfaced == Some(vec!["\"KK-3\"/\"submitted\"".to_owned()]),
        "the held filing surfaced: {status} {adopted_case}"
    );

    // And: each attack is logged with its code; the planted filing was held
    // (accepted) and the opening that dropped it carries the note.
    hub.terminate().await?;
    let audit = audit_stopped_hub(hub.data_dir())?;
    let entry_of = |payload: &Bytes| {
        audit.entries.iter().find(|e| e.payload == payload.as_ref()).context("no log entry for a payload")
    };
    for (what, payload) in
        [("taking over the victim's number", &take_over), ("opening a number", &shell_case)]
    {
        let e = entry_of(payload)?;
        ensure!(
            e.verdict == Verdict::Rejected && e.reason == Some(ReasonCode::NotAFrontOffice),
            "{what}: logged {:?} {:?} {}",
            e.verdict,
            e.reason,
            e.detail
        );
    }
    let held = entry_of(&planted)?;
    ensure!(held.verdict == Verdict::Accepted && held.reason.is_none(), "the planted filing: {held:?}");
    let note = entry_of(&opened)?;
    ensure!(
        note.verdict == Verdict::Accepted
            && note.reason == Some(ReasonCode::HeldApplicationPredatesOpening)
            && note.detail.contains(&format!("{} HELD_APPLICATION_PREDATES_OPENING", held.seq)),
        "the opening: {:?} {:?} {}",
        note.verdict,
        note.reason,
        note.detail
    );

    // And: `mpp-hub audit case-at`, from the data directory and from an
    // export (which folds the registry statements itself), answers what the
    // live lookup answered for the case with the dropped filing and for the
    // one whose held filing surfaced, and lists the dropped one apart.
    let work = mpp_tests::temp_dir("mpp-case-fence-audit-")?;
    let export = work.path().join("export.jsonl");
    let (data_dir, export) = (hub.data_dir().display().to_string(), export.display().to_string());
    mpp_tests::bins::hub_audit(&["export", "--data-dir", &data_dir, "--out", &export])?;
    let last = audit.head.last_seq.to_string();
    for (tn, live, dropped) in [
        (&next, &next_case, vec![format!("{ATTACKER}/EVIL-2 (filed at seq {})", held.seq)]),
        (&adopted, &adopted_case, vec![]),
    ] {
        for source in [["--data-dir", data_dir.as_str()], ["--export", export.as_str()]] {
            let out =
                mpp_tests::bins::hub_audit(&["case-at", source[0], source[1], "--case", tn, "--seq", &last])?;
            let at: serde_json::Value =
                serde_json::from_str(&out).with_context(|| format!("case-at: {out}"))?;
            let what = format!("case-at {} of {tn}", source[0]);
            ensure!(
                applications(&at["case"])? == applications(live)?,
                "{what}: {} while the lookup showed {}",
                at["case"]["applications"],
                live["applications"]
            );
            ensure!(at["case"]["last_seq"] == live["last_seq"], "{what}: {} vs {}", at["case"], live);
            let listed: Vec<String> = serde_json::from_value(at["dropped_applications"].clone())?;
            ensure!(listed == dropped, "{what}: dropped {listed:?}, expected {dropped:?}");
        }
    }
    Ok(())
}

/// `agency/application/state` and the timeline's sequences of each
/// application a case view (lookup JSON or case-at) shows.
fn applications(case: &serde_json::Value) -> Result<Vec<String>> {
    case["applications"]
        .as_array()
        .context("no applications")?
        .iter()
        .map(|a| {
            let seqs: Vec<String> = a["timeline"]
                .as_array()
                .context("no timeline")?
                .iter()
                .map(|t| t["seq"].to_string())
                .collect();
            let id = format!(
                "{}/{}/{}",
                a["agency_id"].as_str().unwrap_or(""),
                a["application_id"].as_str().unwrap_or(""),
                a["state"].as_str().unwrap_or("")
            );
            Ok(if seqs.is_empty() { id } else { format!("{id} [{}]", seqs.join(",")) })
        })
        .collect()
}
