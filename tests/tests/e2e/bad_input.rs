//! Bad input: every kind of bad message published raw onto NATS ends as a
//! log entry with a rejected (or duplicate) verdict and its stable reason
//! code; ingest carries on, readiness stays up, and the projection does not
//! move.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use mpp_core::{ReasonCode, Verdict};
use mpp_proto::v1::Envelope;
use mpp_tests::envelope::{
    self as env, body, encode, event_id, publish, publish_envelope, stream_last_seq, tracking_number,
    with_bad_check_digit, EventFactory,
};
use mpp_tests::pin::TEST_PIN;
use mpp_tests::rng::Rng;
use mpp_tests::store::audit_stopped_hub;
use mpp_tests::READY_DEADLINE;

const AGENCY: &str = "e2e-bad";
const SERVICE: &str = "izin";
const REGION: &str = "1771";
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(60);

/// A bad message and the verdict the hub must record for it.
#[derive(Debug)]
struct Bad {
    what: &'static str,
    subject: String,
    msg_id: Option<String>,
    payload: Bytes,
    verdict: Verdict,
    reason: ReasonCode,
}

impl Bad {
    fn rejected(
        what: &'static str,
        subject: String,
        msg_id: Option<String>,
        payload: Bytes,
        reason: ReasonCode,
    ) -> Self {
        Self { what, subject, msg_id, payload, verdict: Verdict::Rejected, reason }
    }
}

fn with<F: FnOnce(&mut Envelope)>(mut e: Envelope, f: F) -> Envelope {
    f(&mut e);
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_is_recorded_with_its_reason_and_ingest_continues() -> Result<()> {
    let seed = mpp_tests::rng::seed_from_env("MPP_TEST_SEED");
    let mut rng = Rng::new(seed);
    let (nats, mut hub) = mpp_tests::services::nats_and_hub(READY_DEADLINE).await?;
    let js = nats.jetstream().await?;
    let f = EventFactory::new(AGENCY, SERVICE, REGION);
    let tn1 = tracking_number(1771, 1_000 + rng.below(1_000_000))?;
    let tn2 = tracking_number(1771, 2_000_000 + rng.below(1_000_000))?;

    // Given: a known service, and case tn1 whose application A1 was rejected (terminal).
    let opened = f.case_opened(&tn1);
    let filed = f.app_event(&tn1, "A1", body::filed());
    let given = [
        f.standard(1),
        opened.clone(),
        filed.clone(),
        f.app_event(&tn1, "A1", body::review_started()),
        f.app_event(&tn1, "A1", body::rejected()),
    ];
    for e in &given {
        publish_envelope(&js, e).await?;
    }
    hub.wait_caught_up(stream_last_seq(&js).await?, CATCH_UP_DEADLINE).await?;
    let (status, before) = hub.case_json(&tn1, TEST_PIN).await?;
    ensure!(status == 200, "case {tn1} not visible after the given events: {status} {before}");
    ensure!(before.pointer("/applications/0/state").and_then(|s| s.as_str()) == Some("rejected"), "{before}");

    // When: each bad message is published raw.
    let subject = f.subject();
    let fresh = || Some(event_id());
    let mut random = vec![0x0Fu8]; // field 1 with wire type 7, which protobuf does not have
    random.extend(rng.bytes(63));
    let oversized = with(f.app_event(&tn1, "A1", body::documents_requested()), |e| {
        if let Some(mpp_proto::v1::envelope::Body::DocumentsRequested(d)) = e.body.as_mut() {
            d.note = "x".repeat(70 * 1024);
        }
    });
    let bad_ids = [("", ReasonCode::MissingEventId), ("not-a-uuid-at-all", ReasonCode::MalformedEventId)];
    let mut bads = vec![
        Bad::rejected(
            "random bytes",
            subject.clone(),
            fresh(),
            Bytes::from(random),
            ReasonCode::UndecodableEnvelope,
        ),
        Bad::rejected("empty message", subject.clone(), fresh(), Bytes::new(), ReasonCode::EmptyMessage),
        Bad::rejected(
            "valid envelope on another agency's subject",
            env::subject("e2e-other", SERVICE),
            fresh(),
            encode(&f.app_event(&tn1, "A2", body::filed())),
            ReasonCode::AgencySubjectMismatch,
        ),
        Bad::rejected(
            "unknown service",
            env::subject(AGENCY, "tidak-ada"),
            fresh(),
            encode(&with(f.app_event(&tn1, "A3", body::filed()), |e| e.service_id = "tidak-ada".to_owned())),
            ReasonCode::UnknownService,
        ),
        Bad::rejected(
            "event for an application never filed",
            subject.clone(),
            fresh(),
            encode(&f.app_event(&tn1, "NEVER-FILED", body::review_started())),
            ReasonCode::UnknownApplication,
        ),
        Bad::rejected(
            "transition out of a terminal state",
            subject.clone(),
            fresh(),
            encode(&f.app_event(&tn1, "A1", body::review_started())),
            ReasonCode::IllegalTransition,
        ),
        Bad::rejected(
            "message over 64 KiB",
            subject.clone(),
            fresh(),
            encode(&oversized),
            ReasonCode::MessageTooLarge,
        ),
        Bad::rejected(
            "event id of UUID version 4",
            subject.clone(),
            fresh(),
            encode(&with(f.app_event(&tn1, "A5", body::filed()), |e| {
                e.event_id = "550e8400-e29b-41d4-a716-446655440000".to_owned()
            })),
            ReasonCode::MalformedEventId,
        ),
        Bad::rejected(
            "tracking number with a bad check digit",
            subject.clone(),
            fresh(),
            encode(&f.case_opened(&with_bad_check_digit(&tn2))),
            ReasonCode::BadCheckDigit,
        ),
        Bad {
            what: "accepted event re-published under another Nats-Msg-Id",
            subject: subject.clone(),
            msg_id: fresh(),
            payload: encode(&opened),
            verdict: Verdict::Duplicate,
            reason: ReasonCode::DuplicateEventId,
        },
        Bad {
            what: "accepted event re-published without Nats-Msg-Id",
            subject: subject.clone(),
            msg_id: None,
            payload: encode(&filed),
            verdict: Verdict::Duplicate,
            reason: ReasonCode::DuplicateEventId,
        },
    ];
    for (id, reason) in bad_ids {
        let e = with(f.app_event(&tn1, "A4", body::filed()), |e| e.event_id = id.to_owned());
        let what = if id.is_empty() { "missing event id" } else { "malformed event id" };
        bads.push(Bad::rejected(what, subject.clone(), None, encode(&e), reason));
    }
    ensure!(bads.iter().any(|b| b.payload.len() > 64 * 1024), "the oversized message is not over 64 KiB");

    let mut published = Vec::new();
    for bad in &bads {
        let ack = publish(&js, &bad.subject, bad.msg_id.as_deref(), bad.payload.clone())
            .await
            .with_context(|| format!("publishing {}", bad.what))?;
        ensure!(!ack.duplicate, "JetStream dropped {} as a duplicate", bad.what);
        published.push((bad, ack.sequence));
    }
    // A re-publish with the same Nats-Msg-Id never reaches the stream at all.
    let last_before = stream_last_seq(&js).await?;
    let again = publish_envelope(&js, &opened).await?;
    ensure!(again.duplicate, "JetStream did not drop a re-publish with the same Nats-Msg-Id: {again:?}");
    ensure!(stream_last_seq(&js).await? == last_before, "a JetStream duplicate reached the stream");

    // Then ingest continues: valid events after the bad ones are accepted.
    let after = [f.case_opened(&tn2), f.app_event(&tn2, "B1", body::filed())];
    for e in &after {
        publish_envelope(&js, e).await?;
    }
    let last = stream_last_seq(&js).await?;
    hub.wait_caught_up(last, CATCH_UP_DEADLINE).await?;
    let ready = hub.get("/readyz").await?;
    ensure!(ready.status == 200, "hub not ready after bad input: {} {}", ready.status, ready.text());
    let (status, tn2_json) = hub.case_json(&tn2, TEST_PIN).await?;
    ensure!(status == 200, "case {tn2} opened after the bad input is not visible: {status} {tn2_json}");
    ensure!(
        tn2_json.pointer("/applications/0/state").and_then(|s| s.as_str()) == Some("submitted"),
        "{tn2_json}"
    );
    let (_, mut after_json) = hub.case_json(&tn1, TEST_PIN).await?;
    // The access history grows with every lookup; the case itself must not move.
    after_json["access_events"] = before["access_events"].clone();
    ensure!(after_json == before, "bad input changed case {tn1}:\nbefore {before}\nafter  {after_json}");

    // And the stopped hub's log holds each bad message with its verdict and reason.
    hub.terminate().await?;
    let audit = audit_stopped_hub(hub.data_dir())?;
    ensure!(audit.entries.len() as u64 == last, "{} entries for {last} stream messages", audit.entries.len());
    let mut failures = Vec::new();
    for (bad, seq) in &published {
        let e = &audit.entries[(*seq - 1) as usize];
        if e.verdict != bad.verdict || e.reason != Some(bad.reason) {
            failures.push(format!(
                "{} (stream seq {seq}): recorded {:?} {:?} {:?}, expected {:?} {}",
                bad.what,
                e.verdict,
                e.reason.map(ReasonCode::as_str),
                e.detail,
                bad.verdict,
                bad.reason
            ));
        } else if e.payload != bad.payload.as_ref() {
            failures.push(format!("{}: payload not recorded as received", bad.what));
        }
        println!("{:<55} -> {:?} {} ({})", bad.what, e.verdict, bad.reason, e.detail);
    }
    ensure!(failures.is_empty(), "wrong verdicts:\n{}", failures.join("\n"));
    let duplicates = bads.iter().filter(|b| b.verdict == Verdict::Duplicate).count();
    ensure!(audit.summary.accepted == given.len() + after.len(), "accepted: {:?}", audit.summary);
    ensure!(audit.summary.duplicates == duplicates, "duplicates: {:?}", audit.summary);
    ensure!(audit.summary.rejected_total() == bads.len() - duplicates, "rejected: {:?}", audit.summary);
    Ok(())
}
