//! The participant registry and signed envelopes, end to end: the test
//! registrar publishes registry statements, the front office and Dukcapil
//! run as real processes with their signing keys, and an attacker who can
//! publish to the stream tries every way around the registry. Each attack
//! is logged with its own reason code, the victim's case does not move,
//! and the log (registry included) replays byte for byte.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use mpp_agency_kit::signing::{EnvelopeSigner, ToSign};
use mpp_core::checkpoint::KeyId;
use mpp_core::ids::AgencyId;
use mpp_core::registry::REGISTRY_SUBJECT;
use mpp_core::{ReasonCode, Verdict};
use mpp_proto::agency::dukcapil::v1 as dk;
use mpp_proto::v1::Envelope;
use mpp_registrar::{
    front_office_event_types, key_added, key_revoked, publish as publish_statements, registration,
};
use mpp_tests::dukcapil::{self, Answered};
use mpp_tests::envelope::{body, encode, event_id, now_ms, publish, stream_last_seq, EventFactory};
use mpp_tests::registry::{agency_entry, participant_key, test_registrar, FRONT_OFFICE};
use mpp_tests::services::{case_opening, AgencyOptions, HubProcess};
use mpp_tests::store::audit_stopped_hub;
use mpp_tests::{wait_for, AgencyProcess, DAY_MS, READY_DEADLINE};
use prost::Message as _;

const REGION: &str = "1771";
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(60);

/// The statements that register the front office of [`REGION`] (key
/// `fo_pk`) and Dukcapil (its services from its catalogue, key `dk_pk`),
/// both keys valid from a day before `now` for a year, then `more`, all
/// signed by `registrar` at `now` (the registry file is written in `dir`).
pub(crate) fn front_office_and_dukcapil(
    registrar: &mpp_registrar::Registrar,
    dir: &Path,
    now: i64,
    (fo_pk, dk_pk): (&[u8; 32], &[u8; 32]),
    more: Vec<mpp_proto::v1::registry_statement::Body>,
) -> Result<Vec<mpp_proto::v1::SignedRegistryStatement>> {
    let registry_file = dir.join("registry.toml");
    std::fs::write(&registry_file, agency_entry("dukcapil", "daerah", REGION))?;
    let mut statements = vec![front_office_registration(registrar, now)];
    statements.extend(mpp_registrar::sign_registry(registrar, &registry_file, now)?);
    let keys = [
        key_added(FRONT_OFFICE, fo_pk, now - DAY_MS, now + 365 * DAY_MS),
        key_added("dukcapil", dk_pk, now - DAY_MS, now + 365 * DAY_MS),
    ];
    statements.extend(keys.into_iter().chain(more).map(|b| registrar.sign(b, now)));
    Ok(statements)
}

pub(crate) fn signer(participant: &str, key: &Path) -> Result<EnvelopeSigner> {
    Ok(EnvelopeSigner::load(AgencyId::parse(participant).map_err(|r| anyhow::anyhow!("{r}"))?, key)?)
}

/// The registrar's registration of the front office of [`REGION`].
pub(crate) fn front_office_registration(
    registrar: &mpp_registrar::Registrar,
    now_ms: i64,
) -> mpp_proto::v1::SignedRegistryStatement {
    registrar.sign(
        registration(
            FRONT_OFFICE,
            "front_office",
            "daerah",
            &[REGION],
            &[("loket", &front_office_event_types())],
        ),
        now_ms,
    )
}

/// The envelope signed alone, as a relay would sign a batch of one.
pub(crate) fn signed(signer: &EnvelopeSigner, subject: &str, env: &Envelope) -> Bytes {
    let mut batch = [ToSign {
        subject: subject.to_owned(),
        event_id: env.event_id.clone(),
        payload: env.encode_to_vec(),
    }];
    signer.sign_batch(&mut batch);
    let [one] = batch;
    Bytes::from(one.payload)
}

/// An attack: what is published, and the reason the hub must log.
struct Attack {
    what: &'static str,
    subject: String,
    event_id: String,
    payload: Bytes,
    reason: ReasonCode,
}

pub(crate) async fn wait_stream(js: &async_nats::jetstream::Context, hub: &mut HubProcess) -> Result<u64> {
    let last = stream_last_seq(js).await?;
    hub.wait_caught_up(last, CATCH_UP_DEADLINE).await?;
    Ok(last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unregistered_participants_and_wrong_expired_or_revoked_keys_are_logged_and_change_nothing(
) -> Result<()> {
    // Given: NATS and a hub that trusts the test registrar.
    let (nats, mut hub) = mpp_tests::services::nats_and_hub(READY_DEADLINE).await?;
    let js = nats.jetstream().await?;
    let keys = mpp_tests::temp_dir("mpp-registry-keys-")?;
    let (fo_key, fo_pk) = participant_key(keys.path(), "front-office")?;
    let (dk_key, dk_pk) = participant_key(keys.path(), "dukcapil")?;
    let (expired_key, expired_pk) = participant_key(keys.path(), "dukcapil-expired")?;
    let (revoked_key, revoked_pk) = participant_key(keys.path(), "dukcapil-revoked")?;
    let (stranger_key, _) = participant_key(keys.path(), "stranger")?;
    let (bpn_key, _) = participant_key(keys.path(), "bpn")?;

    // ...and the registry: the front office and Dukcapil with their keys, an
    // expired and a revoked Dukcapil key. BPN is not registered.
    let registrar = test_registrar();
    let now = now_ms();
    let statements = front_office_and_dukcapil(
        &registrar,
        keys.path(),
        now,
        (&fo_pk, &dk_pk),
        vec![
            key_added("dukcapil", &expired_pk, now - 10 * DAY_MS, now - 5 * DAY_MS),
            key_added("dukcapil", &revoked_pk, now - DAY_MS, now + 365 * DAY_MS),
            key_revoked("dukcapil", &KeyId::of(&revoked_pk)),
        ],
    )?;
    publish_statements(&nats.connect().await?, &statements).await?;
    wait_stream(&js, &mut hub).await?;

    // ...the front office and Dukcapil, each signing with its own key.
    let with_key = |key: &Path| AgencyOptions {
        extra_args: vec!["--signing-key-file".to_owned(), key.display().to_string()],
        ..AgencyOptions::region(REGION)
    };
    let mut front = AgencyProcess::spawn_frontoffice(&nats.url(), with_key(&fo_key))?;
    let mut dukcapil = AgencyProcess::spawn("mpp-dukcapil", &nats.url(), with_key(&dk_key))?;
    front.wait_listening(READY_DEADLINE).await?;
    dukcapil.wait_listening(READY_DEADLINE).await?;

    // ...a citizen's case opened at the front office, a family card filed at Dukcapil.
    let mut fo_client = front.front_office_client()?;
    let opened = fo_client
        .buka_berkas(case_opening("1771014501900001", "081234567890"))
        .await
        .context("BukaBerkas")?
        .into_inner();
    let (tn, pin) = (opened.nomor_berkas, opened.pin);
    let mut dk_client = dukcapil::client(&dukcapil)?;
    let (_, app) = dukcapil::ajukan(&mut dk_client, &Answered::default(), &tn, dk::Layanan::Kk).await?;
    // (Lookups of a case not yet there count as wrong PINs and would lock
    // it: wait for the stream, not the lookup.) The statements, the opening
    // and its sealed personal data, Dukcapil's three standards, the filing.
    let want = statements.len() as u64 + 2 + 3 + 1;
    wait_for(&format!("{want} messages in the stream"), CATCH_UP_DEADLINE, || async {
        Ok((stream_last_seq(&js).await? >= want).then_some(()))
    })
    .await?;
    wait_stream(&js, &mut hub).await?;
    let (status, before) = hub.case_json(&tn, &pin).await?;
    let filed = before.pointer("/applications/0/state").and_then(|s| s.as_str()) == Some("submitted");
    ensure!(status == 200 && filed, "the case with its application at the hub: {status} {before}");

    // When: an attacker who can publish to the stream tries every way in.
    let dk_factory = EventFactory::new("dukcapil", "kk", REGION);
    let bpn_factory = EventFactory::new("bpn", "peralihan-hak", REGION);
    let issue = || dk_factory.app_event(&tn, &app, body::issued());
    let dk_signed = |key: &Path, env: Envelope| -> Result<(String, Bytes)> {
        let id = env.event_id.clone();
        Ok((id, signed(&signer("dukcapil", key)?, &dk_factory.subject(), &env)))
    };
    let mut attacks = Vec::new();
    let mut attack = |what, subject: String, (event_id, payload): (String, Bytes), reason| {
        attacks.push(Attack { what, subject, event_id, payload, reason });
    };
    let bpn_event = bpn_factory.app_event(&tn, "BPN-1", body::filed());
    attack(
        "an unregistered participant's event",
        bpn_factory.subject(),
        (bpn_event.event_id.clone(), signed(&signer("bpn", &bpn_key)?, &bpn_factory.subject(), &bpn_event)),
        ReasonCode::UnregisteredParticipant,
    );
    let bpn_standard = bpn_factory.standard(1);
    attack(
        "an unregistered participant's standard",
        bpn_factory.subject(),
        (
            bpn_standard.event_id.clone(),
            signed(&signer("bpn", &bpn_key)?, &bpn_factory.subject(), &bpn_standard),
        ),
        ReasonCode::UnregisteredParticipant,
    );
    attack(
        "a key Dukcapil was never given",
        dk_factory.subject(),
        dk_signed(&stranger_key, issue())?,
        ReasonCode::UnknownSigningKey,
    );
    attack(
        "Dukcapil's expired key",
        dk_factory.subject(),
        dk_signed(&expired_key, issue())?,
        ReasonCode::SigningKeyExpired,
    );
    attack(
        "Dukcapil's revoked key",
        dk_factory.subject(),
        dk_signed(&revoked_key, issue())?,
        ReasonCode::SigningKeyRevoked,
    );
    let (id, genuine) = dk_signed(&dk_key, issue())?;
    let mut tampered = Envelope::decode(genuine.clone())?;
    if let Some(mpp_proto::v1::envelope::Body::Issued(i)) = tampered.body.as_mut() {
        i.document_number = "PALSU-0001".to_owned();
    }
    attack(
        "an altered envelope under Dukcapil's valid signature",
        dk_factory.subject(),
        (id, encode(&tampered)),
        ReasonCode::BadSignature,
    );
    let unsigned = issue();
    attack(
        "an unsigned envelope",
        dk_factory.subject(),
        (unsigned.event_id.clone(), encode(&unsigned)),
        ReasonCode::UnsignedEnvelope,
    );
    let pln = EventFactory::new("dukcapil", "pasang-baru", REGION);
    let other_service = pln.app_event(&tn, &app, body::issued());
    attack(
        "a service outside Dukcapil's registration",
        pln.subject(),
        (
            other_service.event_id.clone(),
            signed(&signer("dukcapil", &dk_key)?, &pln.subject(), &other_service),
        ),
        ReasonCode::ServiceNotRegistered,
    );
    let fo_factory = EventFactory::new(FRONT_OFFICE, "loket", REGION);
    let fo_issue = fo_factory.app_event(&tn, &app, body::issued());
    attack(
        "an event type outside the front office's registration",
        fo_factory.subject(),
        (
            fo_issue.event_id.clone(),
            signed(&signer(FRONT_OFFICE, &fo_key)?, &fo_factory.subject(), &fo_issue),
        ),
        ReasonCode::EventTypeNotRegistered,
    );
    let far = EventFactory::new("dukcapil", "kk", "1705");
    let far_case = mpp_tests::envelope::tracking_number(1705, 77)?;
    let far_event = far.app_event(&far_case, "KK-1705-1", body::filed());
    attack(
        "an MPP region Dukcapil does not serve",
        far.subject(),
        (far_event.event_id.clone(), signed(&signer("dukcapil", &dk_key)?, &far.subject(), &far_event)),
        ReasonCode::RegionNotServed,
    );
    let forged_registration = test_registrar_impostor().sign(
        registration(
            "bpn",
            "agency",
            "pusat",
            &[REGION],
            &[("peralihan-hak", &mpp_registrar::agency_event_types())],
        ),
        now,
    );
    attack(
        "a registry statement signed by someone else",
        REGISTRY_SUBJECT.to_owned(),
        (event_id(), Bytes::from(forged_registration.encode_to_vec())),
        ReasonCode::RegistrarSignatureInvalid,
    );
    for a in &attacks {
        publish(&js, &a.subject, Some(&a.event_id), a.payload.clone()).await.with_context(|| a.what)?;
    }
    wait_stream(&js, &mut hub).await?;

    // Then: the victim's case is as it was...
    let (status, after) = hub.case_json(&tn, &pin).await?;
    ensure!(status == 200, "GET case answered {status}: {after}");
    for field in ["/last_seq", "/applications", "/personal_data"] {
        ensure!(after.pointer(field) == before.pointer(field), "{field} changed: {before} -> {after}");
    }
    // ...and every attack is in the log with its own reason, while the
    // genuine participants' events were accepted, signed.
    hub.terminate().await?;
    let audit = audit_stopped_hub(hub.data_dir())?;
    for a in &attacks {
        let entry = audit
            .entries
            .iter()
            .rev()
            .find(|e| e.payload == a.payload.as_ref())
            .with_context(|| format!("{}: no log entry", a.what))?;
        ensure!(
            entry.verdict == Verdict::Rejected && entry.reason == Some(a.reason),
            "{}: logged {:?} {:?} ({}), expected {}",
            a.what,
            entry.verdict,
            entry.reason,
            entry.detail,
            a.reason
        );
    }
    let accepted_signed = audit
        .entries
        .iter()
        .filter(|e| e.verdict == Verdict::Accepted && !e.subject.starts_with(REGISTRY_SUBJECT))
        .filter(|e| Envelope::decode(e.payload.as_slice()).is_ok_and(|env| env.signature.is_some()))
        .count();
    ensure!(accepted_signed >= 5, "only {accepted_signed} signed events were accepted: {:?}", audit.summary);
    let registry_accepted = audit
        .entries
        .iter()
        .filter(|e| e.subject == REGISTRY_SUBJECT && e.verdict == Verdict::Accepted)
        .count();
    ensure!(
        registry_accepted == statements.len(),
        "{registry_accepted} of {} statements accepted",
        statements.len()
    );

    // And: an independent verifier (Python, from docs/AUDIT.md alone) checks
    // every signature of the export: the accepted ones verify, the altered
    // envelope and the stranger's key do not; a proof bundle of Dukcapil's
    // filing proves offline that Dukcapil's key signed it.
    let work = mpp_tests::temp_dir("mpp-registry-verify-")?;
    let export = work.path().join("export.jsonl");
    let data_dir = path_str(hub.data_dir())?;
    mpp_tests::bins::hub_audit(&["export", "--data-dir", &data_dir, "--out", &path_str(&export)?])?;
    let registrar_pub = mpp_tests::registry::write_registrar_key_file(work.path())?;
    let (ok, out) = verifier(&[&path_str(&export)?, &path_str(&registrar_pub)?])?;
    ensure!(ok && out.contains("OK: "), "the verifier refused the export: {out}");
    for a in attacks
        .iter()
        .filter(|a| matches!(a.reason, ReasonCode::BadSignature | ReasonCode::UnknownSigningKey))
    {
        let seq = audit.entries.iter().rev().find(|e| e.payload == a.payload.as_ref()).map(|e| e.seq);
        let seq = seq.with_context(|| a.what)?;
        ensure!(
            out.contains(&format!("does not verify: seq {seq} ")),
            "{}: not flagged (seq {seq}): {out}",
            a.what
        );
    }
    let filed = audit
        .entries
        .iter()
        .find(|e| e.verdict == Verdict::Accepted && e.subject == dk_factory.subject())
        .context("Dukcapil's accepted filing")?;
    let bundle = work.path().join("proof.json");
    let seq = filed.seq.to_string();
    mpp_tests::bins::hub_audit(&[
        "prove",
        "--data-dir",
        &data_dir,
        "--seq",
        &seq,
        "--out",
        &path_str(&bundle)?,
    ])?;
    let dk_pub = mpp_agency_kit::signing::public_key_path(&dk_key);
    let (ok, out) = verifier(&["--bundle", &path_str(&bundle)?, &path_str(&dk_pub)?])?;
    ensure!(ok && out.contains("signed by dukcapil"), "the bundle did not verify: {out}");
    let fo_pub = mpp_agency_kit::signing::public_key_path(&fo_key);
    let (ok, out) = verifier(&["--bundle", &path_str(&bundle)?, &path_str(&fo_pub)?])?;
    ensure!(!ok && out.contains("FAIL"), "the bundle verified under the front office's key: {out}");
    // An export in which an accepted envelope was altered fails.
    let mut forged = String::new();
    for line in std::fs::read_to_string(&export)?.lines() {
        let mut json: serde_json::Value = serde_json::from_str(line)?;
        if json["seq"] == filed.seq {
            let mut payload = filed.payload.clone();
            let middle = payload.len() / 2;
            payload[middle] ^= 1;
            json["payload_b64"] = mpp_core::base64::encode(&payload).into();
        }
        forged.push_str(&format!("{json}\n"));
    }
    let forged_path = work.path().join("forged.jsonl");
    std::fs::write(&forged_path, forged)?;
    let (ok, out) = verifier(&[&path_str(&forged_path)?, &path_str(&registrar_pub)?])?;
    ensure!(!ok && out.contains("FAIL"), "the verifier accepted an altered export: {out}");
    Ok(())
}

fn path_str(p: &Path) -> Result<String> {
    Ok(p.to_str().context("a non-UTF-8 path")?.to_owned())
}

/// Runs tools/verify_signatures.py with the project's Python (`MPP_PYTHON`,
/// the .venv with `cryptography` that tests/run-all.sh sets up).
fn verifier(args: &[&str]) -> Result<(bool, String)> {
    let python = std::env::var("MPP_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/verify_signatures.py");
    let out = std::process::Command::new(&python).arg(script).args(args).output().with_context(|| {
        format!("running {python} (MPP_PYTHON: the project's .venv with the cryptography package)")
    })?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    ensure!(!text.contains("ModuleNotFoundError"), "{python} lacks the cryptography package: {text}");
    Ok((out.status.success(), text))
}

/// A registrar key the hub does not trust.
fn test_registrar_impostor() -> mpp_registrar::Registrar {
    mpp_registrar::Registrar::from_seed(&[0x1d; 32])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_from_before_the_registry_keeps_its_verdicts_and_the_rules_start_with_the_first_statement(
) -> Result<()> {
    // Given: a hub whose log holds unsigned events of an agency from before
    // any registry statement.
    let (nats, mut hub) = mpp_tests::services::nats_and_hub(READY_DEADLINE).await?;
    let js = nats.jetstream().await?;
    let f = EventFactory::new("e2e-legacy", "izin", REGION);
    let tn = mpp_tests::envelope::tracking_number(1771, 4242)?;
    for e in [f.standard(1), f.case_opened(&tn), f.app_event(&tn, "A1", body::filed())] {
        mpp_tests::envelope::publish_envelope(&js, &e).await?;
    }
    wait_stream(&js, &mut hub).await?;

    // When: the registrar registers another participant (the first statement)...
    let statement =
        test_registrar().sign(registration("dukcapil", "agency", "daerah", &[REGION], &[]), now_ms());
    publish_statements(&nats.connect().await?, &[statement]).await?;
    // ...and the legacy agency goes on publishing unsigned.
    let late = f.app_event(&tn, "A1", body::review_started());
    mpp_tests::envelope::publish_envelope(&js, &late).await?;
    wait_stream(&js, &mut hub).await?;
    hub.terminate().await?;

    // Then: the events before the statement stay accepted, the one after is
    // refused, and the whole log replays byte for byte (audit_stopped_hub
    // rebuilds it with the registrar's key and compares).
    let audit = audit_stopped_hub(hub.data_dir())?;
    let verdicts: Vec<(Verdict, Option<ReasonCode>)> =
        audit.entries.iter().map(|e| (e.verdict, e.reason)).collect();
    ensure!(
        verdicts
            == [
                (Verdict::Accepted, None),
                (Verdict::Accepted, None),
                (Verdict::Accepted, None),
                (Verdict::Accepted, None),
                (Verdict::Rejected, Some(ReasonCode::UnregisteredParticipant)),
            ],
        "verdicts {verdicts:?}"
    );
    Ok(())
}
