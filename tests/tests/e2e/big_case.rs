//! The largest legal case (issue 16): before the case size limits one rogue
//! agency could grow a case to ~134 MB (32 applications × 256 events of the
//! largest legal documents lists), decoded whole on every lookup. Here five
//! agencies publish the largest legal events into one case, several times
//! what the limits allow, straight onto NATS; the hub must refuse the
//! growth past one agency's share (`AGENCY_CASE_SHARE_EXCEEDED`) and past
//! the case's size (`CASE_TOO_LARGE`), and lookups of the case it keeps, by
//! 32 concurrent clients (JSON and gRPC), must stay under the hub's RSS
//! bound, with answers of one timeline page. Also: one agency's ninth
//! application in the case is refused (`AGENCY_APPLICATIONS_EXCEEDED`)
//! while another agency can still file. The stopped hub's log then passes
//! the store audit (chain, and the projection rebuilt from the log equal to
//! the stored one).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mpp_core::{limits, ReasonCode, TrackingNumber, Verdict};
use mpp_proto::v1::cases_service_client::CasesServiceClient;
use mpp_proto::v1::envelope::Body;
use mpp_proto::v1::{self as pb, GetCaseRequest};
use mpp_store::{SledStore, Store};
use mpp_tests::envelope::{body, publish_envelope, tracking_number, EventFactory};
use mpp_tests::pin::TEST_PIN;
use mpp_tests::services::nats_and_hub;
use mpp_tests::store::audit_stopped_hub;
use mpp_tests::READY_DEADLINE;
use tonic::transport::Channel;

const REGION: &str = "1771";
const SERVICE: &str = "izin";
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(120);
/// Agencies filing into the case (four at their byte share would not fill
/// it).
const AGENCIES: [&str; 5] = ["e2e-big-a", "e2e-big-b", "e2e-big-c", "e2e-big-d", "e2e-big-e"];
/// Largest-event pairs (documents requested, then received) each agency
/// publishes: about 660 KB each, 2.6 times one agency's share.
const ROUNDS_PER_AGENCY: usize = 20;
/// Concurrent lookup clients, half JSON, half gRPC.
const CLIENTS: usize = 32;
/// How long they look the case up.
const LOAD: Duration = Duration::from_secs(5);
/// The hub's RSS bound, in MiB (BENCHMARKS.md's footprint bound).
const HUB_RSS_MIB_MAX: u64 = 512;

/// A text of the longest length a field may have.
fn longest(c: char) -> String {
    std::iter::repeat_n(c, limits::TEXT_BYTES_MAX).collect()
}

/// The largest legal list of documents.
fn most_documents() -> Vec<String> {
    (0..limits::LIST_ITEMS_MAX).map(|i| longest(char::from(b'a' + (i % 26) as u8))).collect()
}

fn big_request() -> Body {
    Body::DocumentsRequested(pb::DocumentsRequested {
        documents: most_documents(),
        counter: longest('c'),
        note: longest('n'),
    })
}

fn big_receipt() -> Body {
    Body::DocumentsReceived(pb::DocumentsReceived { documents: most_documents() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_case_is_bounded_at_ingest_and_its_lookups_in_memory() -> Result<()> {
    let (nats, mut hub) = nats_and_hub(READY_DEADLINE).await?;
    let js = nats.jetstream().await?;
    let tn = tracking_number(1771, 7_007)?;
    let factories: Vec<EventFactory> =
        AGENCIES.iter().map(|a| EventFactory::new(a, SERVICE, REGION)).collect();

    // What each published event is, by stream sequence.
    let mut published: BTreeMap<u64, &'static str> = BTreeMap::new();
    let mut publish = |seq: u64, what: &'static str| published.insert(seq, what);
    for f in &factories {
        publish(publish_envelope(&js, &f.standard(1)).await?.sequence, "standard");
    }
    publish(publish_envelope(&js, &factories[0].case_opened(&tn)).await?.sequence, "opened");

    // One agency files its share of applications, then one more; another
    // agency still files.
    let a = &factories[0];
    for i in 0..limits::APPLICATIONS_PER_AGENCY_PER_CASE_MAX {
        let e = a.app_event(&tn, &format!("A-{i}"), body::filed());
        publish(publish_envelope(&js, &e).await?.sequence, "filing within the share");
    }
    let ninth = a.app_event(&tn, "A-one-more", body::filed());
    publish(publish_envelope(&js, &ninth).await?.sequence, "filing past the share");
    // Application ids are the case's: each agency its own.
    let apps = ["A-0", "B-0", "C-0", "D-0", "E-0"];
    for (f, app) in factories.iter().zip(apps).skip(1) {
        publish(publish_envelope(&js, &f.app_event(&tn, app, body::filed())).await?.sequence, "other filing");
    }

    // Every agency grows one application with the largest legal events,
    // far past what the limits allow.
    for (f, app) in factories.iter().zip(apps) {
        for _ in 0..ROUNDS_PER_AGENCY {
            for b in [big_request(), big_receipt()] {
                publish(publish_envelope(&js, &f.app_event(&tn, app, b)).await?.sequence, "big");
            }
        }
    }
    let last = *published.keys().last().context("nothing published")?;
    hub.wait_caught_up(last, CATCH_UP_DEADLINE).await?;

    // The case the hub kept: one timeline page per answer.
    let (status, json) = hub.case_json(&tn, TEST_PIN).await?;
    ensure!(status == 200, "lookup answered {status}: {json}");
    let shown: usize = json["applications"]
        .as_array()
        .context("applications")?
        .iter()
        .map(|a| a["timeline"].as_array().map_or(0, Vec::len))
        .sum();
    let total = json["timeline_items_total"].as_u64().context("timeline_items_total")?;
    let json_bytes = json.to_string().len();
    println!(
        "case {tn}: {total} timeline items, {shown} in the answer, next page before seq {}, JSON {json_bytes} bytes",
        json["timeline_next_before_seq"]
    );
    ensure!(shown == mpp_lookup::lookup::TIMELINE_PAGE_ITEMS_MAX, "{shown} items in one answer");
    ensure!(json["timeline_next_before_seq"].as_u64().is_some(), "no older page named");
    ensure!(json_bytes <= 2 * limits::CASE_BYTES_MAX, "a JSON answer of {json_bytes} bytes");

    // 32 clients look it up at once; the hub's RSS is sampled meanwhile.
    let pid = hub.process().pid().context("the hub's pid")?;
    let idle_mib = mpp_tests::rss::rss_bytes(pid)? >> 20;
    let lookups = Arc::new(AtomicU64::new(0));
    let channel = Channel::from_shared(hub.grpc_endpoint())?.connect().await?;
    let http = hub.http_addr();
    let path = format!("/api/v1/cases/{tn}");
    let until = tokio::time::Instant::now() + LOAD;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (channel, path, tn, lookups) = (channel.clone(), path.clone(), tn.clone(), lookups.clone());
            tokio::spawn(async move {
                while tokio::time::Instant::now() < until {
                    if i % 2 == 0 {
                        let r = mpp_tests::http::get_with_headers(http, &path, &[("X-MPP-PIN", TEST_PIN)])
                            .await?;
                        ensure!(r.status == 200, "JSON lookup answered {}", r.status);
                    } else {
                        let req = GetCaseRequest {
                            tracking_number: tn.clone(),
                            pin: TEST_PIN.to_owned(),
                            ..Default::default()
                        };
                        CasesServiceClient::new(channel.clone())
                            .max_decoding_message_size(8 * limits::CASE_BYTES_MAX)
                            .get_case(req)
                            .await
                            .context("GetCase")?;
                    }
                    lookups.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    let (finished, peak) = mpp_tests::rss::peak_while(pid, futures::future::join_all(clients)).await?;
    for c in finished {
        c??;
    }
    let n = lookups.load(Ordering::Relaxed);
    println!(
        "{CLIENTS} clients: {n} lookups in {} s ({:.0}/s); hub RSS idle {idle_mib} MiB, peak {peak} MiB (bound \
         {HUB_RSS_MIB_MAX} MiB)",
        LOAD.as_secs(),
        n as f64 / LOAD.as_secs_f64()
    );
    ensure!(peak <= HUB_RSS_MIB_MAX, "hub RSS peak {peak} MiB over {HUB_RSS_MIB_MAX} MiB");

    // The verdicts, from the stopped hub's log.
    hub.terminate().await?;
    let audit = audit_stopped_hub(hub.data_dir())?;
    // (what was published, verdict, reason code) → entries.
    let mut counts: BTreeMap<(&str, String, &str), usize> = BTreeMap::new();
    for e in &audit.entries {
        let what = published.get(&e.stream_seq).copied().unwrap_or("unexpected");
        let key = (what, format!("{:?}", e.verdict), e.reason.map_or("", ReasonCode::as_str));
        *counts.entry(key).or_default() += 1;
    }
    for ((what, verdict, reason), n) in &counts {
        println!("{n:>4} × {what}: {verdict} {reason}");
    }
    let count = |what: &str, verdict: Verdict, reason: Option<ReasonCode>| {
        let key = (what, format!("{verdict:?}"), reason.map_or("", ReasonCode::as_str));
        counts.get(&key).copied().unwrap_or(0)
    };
    ensure!(
        count("filing past the share", Verdict::Rejected, Some(ReasonCode::AgencyApplicationsExceeded)) == 1,
        "{counts:?}"
    );
    ensure!(count("other filing", Verdict::Accepted, None) == AGENCIES.len() - 1, "{counts:?}");
    ensure!(count("big", Verdict::Rejected, Some(ReasonCode::AgencyCaseShareExceeded)) > 0, "{counts:?}");
    ensure!(count("big", Verdict::Rejected, Some(ReasonCode::CaseTooLarge)) > 0, "{counts:?}");
    // Every other verdict is an acceptance or one of these refusals (a
    // refused request leaves the application where it was, so the receipt
    // after it does not fit: ILLEGAL_TRANSITION).
    let allowed = [
        "",
        ReasonCode::AgencyApplicationsExceeded.as_str(),
        ReasonCode::AgencyCaseShareExceeded.as_str(),
        ReasonCode::CaseTooLarge.as_str(),
        ReasonCode::IllegalTransition.as_str(),
    ];
    for ((what, verdict, reason), n) in &counts {
        ensure!(*what != "unexpected" && allowed.contains(reason), "{n} × {what}: {verdict} {reason}");
    }
    let store = SledStore::open(hub.data_dir())?;
    let case = store.case(&TrackingNumber::parse(&tn)?)?.context("the case is stored")?;
    let size = case.size_bytes();
    println!("the stored case takes {size} bytes (limit {})", limits::CASE_BYTES_MAX);
    ensure!(size <= limits::CASE_BYTES_MAX - limits::CASE_BYTES_RESERVED_FOR_FINISH, "{size} bytes");
    ensure!(size > limits::CASE_BYTES_MAX / 2, "the case never grew near its limit: {size} bytes");
    Ok(())
}
