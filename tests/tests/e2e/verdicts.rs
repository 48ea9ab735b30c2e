//! Verdicts back to the agency (issue 18, item 1): every event an agency
//! service answered "accepted" reaches the service's `GetEventStatus` with
//! the hub's verdict — accepted, rejected with its reason, and a duplicate
//! that never replaces the acceptance — across a hub restart and a `kill -9`
//! of the agency, nothing missed and nothing twice.
//!
//! Real processes: a private nats-server, `mpp-hub serve` with a
//! participant token for `dukcapil`, and `mpp-dukcapil` following the hub's
//! verdict feed (`--hub-url`, `--hub-token-file`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mpp_proto::agency::dukcapil::v1 as dk;
use mpp_proto::v1 as pb;
use mpp_proto::v1::event_status_service_client::EventStatusServiceClient;
use mpp_tests::dukcapil::{self, ajukan, step, Answered, DukcapilClient, Step};
use mpp_tests::services::{AgencyOptions, HubOptions};
use mpp_tests::{wait_for, AgencyProcess, Bearer, HubProcess, NatsServer, READY_DEADLINE};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

const REGION: &str = "1771";
const VERDICT_DEADLINE: Duration = Duration::from_secs(120);

type StatusClient = EventStatusServiceClient<InterceptedService<Channel, Bearer>>;

fn status_client(agency: &AgencyProcess) -> Result<StatusClient> {
    let channel = Channel::from_shared(agency.grpc_endpoint())?
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(10))
        .connect_lazy();
    Ok(EventStatusServiceClient::with_interceptor(channel, agency.bearer()?))
}

/// What the hub must have said about one event.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Accepted,
    Rejected,
}

/// One round of traffic: `journeys` full journeys (every event accepted),
/// then one step that is illegal in its application's state and one on an
/// application of another case (both rejected by the hub). Returns each
/// event id the agency answered for its own events with what the hub must
/// say about it, and how many cases the front office opened for the
/// walk-ins (their `case_opened` have their verdicts at the front office).
async fn traffic(c: &mut DukcapilClient, journeys: u64) -> Result<(Vec<(String, Expect)>, usize)> {
    let answered = Answered::default();
    let (tn_a, app_a) = ajukan(c, &answered, "", dk::Layanan::Kk).await?;
    let (tn_b, _) = ajukan(c, &answered, "", dk::Layanan::AktaLahir).await?;
    for kind in 0..journeys {
        dukcapil::journey(c, &answered, kind % dukcapil::JOURNEY_KINDS).await?;
    }
    // The front office's openings of the walk-ins' cases have their
    // verdicts at the front office, not here.
    let mut out: Vec<(String, Expect)> =
        answered.published_by_agency()?.into_iter().map(|id| (id, Expect::Accepted)).collect();
    let bad = Answered::default();
    // Collected right after filing: no document was issued.
    step(c, &bad, &tn_a, &app_a, Step::Serahkan).await?;
    // Case B has no such application.
    step(c, &bad, &tn_b, &app_a, Step::Verifikasi).await?;
    out.extend(bad.snapshot()?.into_iter().map(|id| (id, Expect::Rejected)));
    Ok((out, answered.openings()?.len()))
}

/// Waits until every event of `expected` has its verdict at the agency, and
/// checks it.
async fn check_statuses(agency: &AgencyProcess, expected: &BTreeMap<String, Expect>) -> Result<()> {
    let client = status_client(agency)?;
    for (id, want) in expected {
        let status = wait_for(&format!("the verdict on {id} at the agency"), VERDICT_DEADLINE, || {
            let mut client = client.clone();
            let id = id.clone();
            async move {
                let s =
                    client.get_event_status(pb::GetEventStatusRequest { event_id: id }).await?.into_inner();
                Ok(s.verdict_known.then_some(s))
            }
        })
        .await?;
        let v = status.verdict.context("verdict_known without a verdict")?;
        match want {
            Expect::Accepted => ensure!(
                v.verdict == pb::Verdict::Accepted as i32
                    && v.reason_code.is_empty()
                    && v.entry_hash.len() == 32,
                "{id}: expected accepted, got {v:?}"
            ),
            Expect::Rejected => ensure!(
                v.verdict == pb::Verdict::Rejected as i32
                    && ["ILLEGAL_TRANSITION", "UNKNOWN_APPLICATION"].contains(&v.reason_code.as_str()),
                "{id}: expected a rejection for an illegal step, got {v:?}"
            ),
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_verdict_reaches_the_agency_across_hub_and_agency_restarts() -> Result<()> {
    let nats = NatsServer::start().await?;
    let secrets = tempfile::tempdir()?;
    let (token_file, participants) =
        mpp_tests::services::participant_token_files(secrets.path(), "dukcapil")?;

    let mut hub = HubProcess::spawn_with(
        &nats.url(),
        HubOptions::with_file("--participant-tokens-file", &participants),
    )?;
    hub.wait_ready(READY_DEADLINE).await?;
    let metrics_addr = mpp_tests::ports::free_addr()?;
    let mut options = AgencyOptions::region(REGION);
    options.extra_args = vec![
        "--hub-url".into(),
        hub.grpc_endpoint(),
        "--hub-token-file".into(),
        token_file.display().to_string(),
        "--metrics-addr".into(),
        metrics_addr.to_string(),
    ];
    let mut agency = AgencyProcess::spawn("mpp-dukcapil", &nats.url(), options)?;
    agency.wait_listening(READY_DEADLINE).await?;
    let mut c = dukcapil::client(&agency)?;

    // Round 1, with everything up.
    let (round1, mut openings) = traffic(&mut c, 3).await?;
    let mut expected: BTreeMap<String, Expect> = round1.into_iter().collect();
    check_statuses(&agency, &expected).await?;

    // A call that waits for the hub's verdicts gets them in its answer.
    let mut request = tonic::Request::new(dukcapil::permohonan("", dk::Layanan::KtpEl));
    request.metadata_mut().insert("mpp-wait-verdict-ms", "20000".parse()?);
    let answer = c.ajukan_permohonan(request).await?;
    let verdicts =
        answer.metadata().get("mpp-verdicts").context("no mpp-verdicts in the answer")?.to_str()?.to_owned();
    let ids = &answer.get_ref().event_ids;
    ensure!(ids.len() == 2, "the front office's opening and the application: {ids:?}");
    openings += 1;
    // The agency waits for the verdicts of its own event, the filing.
    for id in &ids[1..] {
        ensure!(
            verdicts.split(',').any(|v| v.starts_with(&format!("{id}=accepted:"))),
            "{id} accepted in {verdicts:?}"
        );
        expected.insert(id.clone(), Expect::Accepted);
    }
    println!("a call that waited for its verdicts was answered with mpp-verdicts: {verdicts}");

    // A duplicate: an accepted event's message published again under
    // another message id. The hub logs it as a duplicate; the agency keeps
    // the acceptance as the event's status.
    let js = nats.jetstream().await?;
    let mut stream = js.get_stream("MPP_EVENTS").await?;
    let mut seq = stream.info().await?.state.last_sequence;
    let (raw, dup_id) = loop {
        use prost::Message as _;
        let raw = stream.get_raw_message(seq).await?;
        let id = pb::Envelope::decode(raw.payload.as_ref())?.event_id;
        if expected.get(&id) == Some(&Expect::Accepted) {
            break (raw, id);
        }
        ensure!(seq > 1, "no accepted event of this test in the stream");
        seq -= 1;
    };
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", format!("resend-{dup_id}").as_str());
    js.publish_with_headers(raw.subject.to_string(), headers, raw.payload.clone()).await?.await?;

    // Round 2, while the hub is down: the agency's outbox takes it all.
    hub.terminate().await?;
    let (round2, opened) = traffic(&mut c, 2).await?;
    openings += opened;
    hub.start()?;
    hub.wait_ready(READY_DEADLINE).await?;
    expected.extend(round2);
    check_statuses(&agency, &expected).await?;
    // Every verdict so far was heard by this process (it has not restarted):
    // its /metrics counts them by verdict and reason. The duplicate was
    // published before round 2, so its verdict is stored by now too.
    let metrics =
        String::from_utf8_lossy(&mpp_tests::http::get(metrics_addr, "/metrics").await?.body).into_owned();
    let count = |labels: &str| -> u64 {
        let prefix = format!("mpp_agency_verdicts_total{{{labels}}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    let of = |e: Expect| expected.values().filter(|&v| *v == e).count() as u64;
    let rejected = count("verdict=\"rejected\",reason=\"ILLEGAL_TRANSITION\"")
        + count("verdict=\"rejected\",reason=\"UNKNOWN_APPLICATION\"");
    let all: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("mpp_agency_verdicts_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    // Every message in this test's stream but the front office's openings
    // is dukcapil's: its events, its service standards (published at start,
    // accepted, not in `expected`) and the duplicate.
    let messages = stream.info().await?.state.messages - openings as u64;
    ensure!(
        all == messages
            && count("verdict=\"accepted\",reason=\"\"") >= of(Expect::Accepted)
            && rejected == of(Expect::Rejected)
            && count("verdict=\"duplicate\",reason=\"\"") == 1,
        "/metrics counts each of the stream's {messages} messages once by verdict and reason (at least {} \
         accepted, {} rejected, 1 duplicate expected):\n{metrics}",
        of(Expect::Accepted),
        of(Expect::Rejected)
    );
    println!(
        "dukcapil's /metrics before its kill -9: {}",
        metrics
            .lines()
            .filter(|l| l.starts_with("mpp_agency_verdicts_total{"))
            .collect::<Vec<_>>()
            .join("; ")
    );

    // Round 3 after a kill -9 of the agency: it resumes from its cursor.
    agency.kill9()?;
    agency.restart().await?;
    agency.wait_listening(READY_DEADLINE).await?;
    let mut c = dukcapil::client(&agency)?;
    expected.extend(traffic(&mut c, 2).await?.0);
    check_statuses(&agency, &expected).await?;

    // The watch from the start: every stored verdict once, in log order,
    // with the duplicate among them.
    let mut watch =
        status_client(&agency)?.watch_verdicts(pb::WatchVerdictsRequest { after_seq: 0 }).await?.into_inner();
    let mut seen_ids = BTreeSet::new();
    let (mut last_seq, mut counts) = (0u64, BTreeMap::<i32, u64>::new());
    let mut duplicate_seen = false;
    while !(expected.keys().all(|id| seen_ids.contains(id)) && duplicate_seen) {
        let v = tokio::time::timeout(VERDICT_DEADLINE, watch.message())
            .await
            .context("the watch stalled")??
            .context("the watch ended")?;
        ensure!(v.seq > last_seq, "verdict at seq {} after {last_seq}: out of order or twice", v.seq);
        last_seq = v.seq;
        *counts.entry(v.verdict).or_default() += 1;
        if v.verdict == pb::Verdict::Duplicate as i32 {
            ensure!(v.event_id == dup_id, "only {dup_id} was sent twice, got a duplicate of {}", v.event_id);
            duplicate_seen = true;
        }
        seen_ids.insert(v.event_id);
    }
    let status = status_client(&agency)?
        .get_event_status(pb::GetEventStatusRequest { event_id: dup_id.clone() })
        .await?
        .into_inner();
    ensure!(
        status.verdict.as_ref().map(|v| v.verdict) == Some(pb::Verdict::Accepted as i32),
        "the duplicate must not replace the acceptance of {dup_id}: {status:?}"
    );
    println!(
        "verdicts delivered to dukcapil: {} events checked; accepted {}, rejected {}, duplicate {} (seqs up to {last_seq})",
        expected.len(),
        counts.get(&(pb::Verdict::Accepted as i32)).copied().unwrap_or(0),
        counts.get(&(pb::Verdict::Rejected as i32)).copied().unwrap_or(0),
        counts.get(&(pb::Verdict::Duplicate as i32)).copied().unwrap_or(0),
    );

    // A malformed id gets its reason code; a service without a hub says so.
    let err = status_client(&agency)?
        .get_event_status(pb::GetEventStatusRequest { event_id: "not-an-id".into() })
        .await
        .unwrap_err();
    ensure!(err.code() == tonic::Code::InvalidArgument, "{err:?}");
    let mut plain = AgencyProcess::spawn("mpp-dukcapil", &nats.url(), AgencyOptions::region(REGION))?;
    plain.wait_listening(READY_DEADLINE).await?;
    let err = status_client(&plain)?
        .get_event_status(pb::GetEventStatusRequest { event_id: dup_id })
        .await
        .unwrap_err();
    ensure!(
        err.code() == tonic::Code::FailedPrecondition
            && err.metadata().get("mpp-reason-code").and_then(|v| v.to_str().ok())
                == Some("VERDICT_FEED_OFF"),
        "{err:?}"
    );
    Ok(())
}
