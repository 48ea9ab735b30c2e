//! A standards flood (issue 15), end to end: a real hub on a real
//! nats-server with the registry in force, and an attacker who publishes
//! service standards straight to the stream. Standards from an agency
//! nobody registered, and from a registered agency for services outside
//! its registration, are refused and logged with their reason codes; a
//! registered agency's successive versions of its one service are accepted
//! but only the one in force is held in memory
//! (`mpp_hub_standards_in_memory`); a stale version is refused. The
//! citizen's view of a case does not move, and the log replays byte for
//! byte. The hub's memory under a flood of thousands is measured by
//! `mpp-bench --standards-flood` (BENCHMARKS.md), not asserted here.

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use mpp_agency_kit::signing::{EnvelopeSigner, ToSign};
use mpp_core::{ReasonCode, Verdict};
use mpp_proto::v1::Envelope;
use mpp_registrar::{agency_event_types, key_added, publish as publish_statements, registration};
use mpp_tests::envelope::{body, now_ms, publish, tracking_number, EventFactory};
use mpp_tests::pin::TEST_PIN;
use mpp_tests::registry::{participant_key, test_registrar, FRONT_OFFICE};
use mpp_tests::services::HubProcess;
use mpp_tests::store::audit_stopped_hub;
use mpp_tests::READY_DEADLINE;
use mpp_tests::{NatsServer, DAY_MS};
use prost::Message as _;

use super::registry::{front_office_registration, signed, signer, wait_stream};

const REGION: &str = "1771";
const ATTACKER: &str = "evil";
/// Standards of each kind of flood: enough to show that the count held in
/// memory does not follow them, few enough for a debug build (< 20 s).
const FLOOD: usize = 150;

/// `envelopes` on their own subjects, signed as one batch by `signer` (as
/// an attacker's relay would, one signature for the lot).
fn signed_batch(signer: &EnvelopeSigner, envelopes: &[Envelope]) -> Vec<(String, String, Bytes)> {
    let mut batch: Vec<ToSign> = envelopes
        .iter()
        .map(|e| ToSign {
            subject: mpp_tests::envelope::subject(&e.agency_id, &e.service_id),
            event_id: e.event_id.clone(),
            payload: e.encode_to_vec(),
        })
        .collect();
    signer.sign_batch(&mut batch);
    batch.into_iter().map(|t| (t.subject, t.event_id, Bytes::from(t.payload))).collect()
}

/// The value of an unlabelled or fully labelled series in a `/metrics` text.
fn series(metrics: &str, name: &str) -> Result<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .with_context(|| format!("no {name} in /metrics"))?
        .trim()
        .parse()
        .with_context(|| format!("{name} is not a number"))
}

fn rejected(metrics: &str, code: ReasonCode) -> Result<f64> {
    series(metrics, &format!("mpp_hub_rejected_total{{reason=\"{code}\"}}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standards_flood_is_refused_or_replaced_and_memory_holds_one_standard_per_service() -> Result<()> {
    // Given: a hub under the registry, with the front office and Dukcapil
    // (registered for `kk` only), both with their keys; the attacker `evil`
    // is not registered but has a key of its own.
    let nats = NatsServer::start().await?;
    let js = nats.jetstream().await?;
    let mut hub = HubProcess::spawn(&nats.url())?;
    hub.wait_ready(READY_DEADLINE).await?;
    let keys = mpp_tests::temp_dir("mpp-standards-flood-keys-")?;
    let registrar = test_registrar();
    let now = now_ms();
    let (fo_key, fo_pk) = participant_key(keys.path(), FRONT_OFFICE)?;
    let (dk_key, dk_pk) = participant_key(keys.path(), "dukcapil")?;
    let (evil_key, _) = participant_key(keys.path(), ATTACKER)?;
    let statements = vec![
        front_office_registration(&registrar, now),
        registrar.sign(
            registration("dukcapil", "agency", "daerah", &[REGION], &[("kk", &agency_event_types())]),
            now,
        ),
        registrar.sign(key_added(FRONT_OFFICE, &fo_pk, now - DAY_MS, now + 365 * DAY_MS), now),
        registrar.sign(key_added("dukcapil", &dk_pk, now - DAY_MS, now + 365 * DAY_MS), now),
    ];
    publish_statements(&nats.connect().await?, &statements).await?;
    let front = EventFactory::new(FRONT_OFFICE, "loket", REGION);
    let dukcapil = EventFactory::new("dukcapil", "kk", REGION);
    let (fo_signer, dk_signer) = (signer(FRONT_OFFICE, &fo_key)?, signer("dukcapil", &dk_key)?);
    let send = |signer: &EnvelopeSigner, factory: &EventFactory, env: Envelope| {
        let payload = signed(signer, &factory.subject(), &env);
        let (js, subject) = (js.clone(), factory.subject());
        async move { publish(&js, &subject, Some(&env.event_id), payload).await }
    };
    send(&dk_signer, &dukcapil, dukcapil.standard(1)).await?;
    // ...and a citizen's case opened at the front office, with Dukcapil's filing.
    let victim = tracking_number(1771, 2001)?;
    send(&fo_signer, &front, front.case_opened(&victim)).await?;
    send(&dk_signer, &dukcapil, dukcapil.app_event(&victim, "KK-1", body::filed())).await?;
    wait_stream(&js, &mut hub).await?;
    let (status, before) = hub.case_json(&victim, TEST_PIN).await?;
    ensure!(status == 200 && before["applications"].as_array().map(Vec::len) == Some(1), "{status} {before}");
    let metrics = hub.get("/metrics").await?.text();
    ensure!(series(&metrics, "mpp_hub_standards_in_memory")? == 1.0, "one standard before the flood");

    // When: the unregistered agency floods standards for services of its
    // own invention; Dukcapil's key floods standards for services it is not
    // registered for; Dukcapil publishes successive versions of `kk`, then
    // an old version again.
    let evil: Vec<Envelope> =
        (0..FLOOD).map(|i| EventFactory::new(ATTACKER, &format!("izin-{i}"), REGION).standard(1)).collect();
    let outside: Vec<Envelope> = (0..FLOOD)
        .map(|i| EventFactory::new("dukcapil", &format!("banjir-{i}"), REGION).standard(1))
        .collect();
    let versions: Vec<Envelope> = (0..FLOOD).map(|i| dukcapil.standard(2 + i as u32)).collect();
    let stale = dukcapil.standard(FLOOD as u32);
    let flood = [
        signed_batch(&signer(ATTACKER, &evil_key)?, &evil),
        signed_batch(&dk_signer, &outside),
        signed_batch(&dk_signer, &versions),
        signed_batch(&dk_signer, std::slice::from_ref(&stale)),
    ];
    for (subject, id, payload) in flood.iter().flatten() {
        publish(&js, subject, Some(id), payload.clone()).await?;
    }
    wait_stream(&js, &mut hub).await?;

    // Then: every refusal is counted with its reason, the hub holds one
    // standard in memory (Dukcapil's kk, the last version)...
    let metrics = hub.get("/metrics").await?.text();
    for (code, want) in [
        (ReasonCode::UnregisteredParticipant, FLOOD),
        (ReasonCode::ServiceNotRegistered, FLOOD),
        (ReasonCode::StaleStandardVersion, 1),
    ] {
        let got = rejected(&metrics, code)?;
        ensure!(got == want as f64, "{code}: {got} rejections counted, {want} expected");
    }
    let held = series(&metrics, "mpp_hub_standards_in_memory")?;
    ensure!(held == 1.0, "the hub holds {held} standards in memory after the flood");
    // ...and the citizen's view of the case did not move.
    let (status, after) = hub.case_json(&victim, TEST_PIN).await?;
    ensure!(status == 200, "GET victim answered {status}: {after}");
    for field in ["/last_seq", "/applications"] {
        ensure!(after.pointer(field) == before.pointer(field), "{field} changed: {before} -> {after}");
    }

    // And: the log records each refusal as rejected with its code and each
    // version as accepted, and replays byte for byte (audit_stopped_hub
    // rebuilds it under the registrar's key and compares projections).
    hub.terminate().await?;
    let audit = audit_stopped_hub(hub.data_dir())?;
    let by_payload: std::collections::HashMap<&[u8], (Verdict, Option<ReasonCode>)> =
        audit.entries.iter().map(|e| (e.payload.as_slice(), (e.verdict, e.reason))).collect();
    let [evil_sent, outside_sent, versions_sent, stale_sent] = &flood;
    for (what, sent, want) in [
        (
            "the unregistered agency's standard",
            evil_sent,
            (Verdict::Rejected, Some(ReasonCode::UnregisteredParticipant)),
        ),
        (
            "a standard outside Dukcapil's registration",
            outside_sent,
            (Verdict::Rejected, Some(ReasonCode::ServiceNotRegistered)),
        ),
        ("a new version of Dukcapil's kk", versions_sent, (Verdict::Accepted, None)),
        (
            "an old version of Dukcapil's kk",
            stale_sent,
            (Verdict::Rejected, Some(ReasonCode::StaleStandardVersion)),
        ),
    ] {
        for (_, id, payload) in sent {
            let got =
                by_payload.get(payload.as_ref()).with_context(|| format!("{what} {id}: not in the log"))?;
            ensure!(*got == want, "{what} {id}: logged {got:?}, expected {want:?}");
        }
    }
    Ok(())
}
