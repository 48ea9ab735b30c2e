//! The durable outbox with real redb in temporary directories and a real
//! nats-server: accepted means durable, group commit, publishing in outbox
//! order across NATS outages and restarts, each event once, and the limits.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::message::PublishMessage;
use mpp_agency_kit::cli::connect_nats_in_background;
use mpp_agency_kit::outbox::{OutboxError, StoredEvent};
use mpp_agency_kit::testing::call_events;
use mpp_agency_kit::Outbox;
use mpp_agency_kit::{
    ensure_stream, to_status, Accepted, EventBuilder, KitError, OutboxConfig, Publisher, RelayConfig,
    SystemClock, REASON_CODE_METADATA_KEY, STREAM_NAME,
};
use mpp_core::ids::{AgencyId, RegionCode};
use mpp_test_support::{free_port, wait_for, NatsServer};

/// How long a test waits for a condition before it fails.
const DEADLINE_MS: u64 = 30_000;

fn builder() -> EventBuilder {
    EventBuilder::new(
        RegionCode::parse("1771").unwrap(),
        AgencyId::parse("dukcapil").unwrap(),
        Arc::new(SystemClock),
    )
}

fn open(config: &OutboxConfig) -> Outbox {
    Outbox::open(config.clone(), Arc::new(SystemClock)).unwrap()
}

/// Reopens after a drop: the previous handles release redb's lock as their
/// thread and task end, so poll until the directory can be opened.
async fn reopen(config: &OutboxConfig) -> Outbox {
    wait_for("the outbox to reopen", Duration::from_millis(DEADLINE_MS), || {
        let opened = match Outbox::open(config.clone(), Arc::new(SystemClock)) {
            Ok(o) => Some(o),
            Err(OutboxError::Open(_)) => None,
            Err(e) => panic!("cannot reopen the outbox: {e}"),
        };
        async move { Ok(opened) }
    })
    .await
    .unwrap()
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Duration::from_millis(DEADLINE_MS);
    wait_for(what, deadline, || {
        let done = cond();
        async move { Ok(done.then_some(())) }
    })
    .await
    .unwrap();
}

/// A fresh nats-server, a client of it and that client's JetStream context.
async fn nats_with_jetstream() -> (NatsServer, async_nats::Client, jetstream::Context) {
    let nats = NatsServer::start().await.unwrap();
    let client = nats.connect().await.unwrap();
    let js = jetstream::new(client.clone());
    (nats, client, js)
}

/// [`nats_with_jetstream`] with the event stream created as the relay
/// creates it.
async fn nats_with_stream() -> (NatsServer, async_nats::Client, jetstream::Context) {
    let (nats, client, js) = nats_with_jetstream().await;
    ensure_stream(&js).await.unwrap();
    (nats, client, js)
}

fn ids(entries: &[StoredEvent]) -> Vec<String> {
    entries.iter().map(|e| e.event_id.clone()).collect()
}

fn accepted_ids(accepted: &[Accepted]) -> Vec<String> {
    accepted.iter().map(|a| a.event_id.clone()).collect()
}

/// Every message of the stream, in stream order: (subject, Nats-Msg-Id).
async fn stream_messages(js: &jetstream::Context) -> Vec<(String, String)> {
    let mut stream = js.get_stream(STREAM_NAME).await.unwrap();
    let n = stream.info().await.unwrap().state.messages;
    let mut out = Vec::new();
    for seq in 1..=n {
        let msg = stream.get_raw_message(seq).await.unwrap();
        let id = msg.headers.get(async_nats::header::NATS_MESSAGE_ID).map(|v| v.as_str().to_owned());
        out.push((msg.subject.to_string(), id.unwrap_or_default()));
    }
    out
}

#[tokio::test]
async fn accepted_events_are_in_the_outbox_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let config = OutboxConfig::new(dir.path().join("outbox"));
    let b = builder();

    // Given an outbox without relay (nothing leaves it).
    let outbox = open(&config);
    let publisher = outbox.publisher();
    let mut accepted = Vec::new();
    for i in 0..20 {
        let events = call_events(&b, 1 + i % 2);
        let got = publisher.publish_all(&events).await.unwrap();
        assert_eq!(accepted_ids(&got), events.iter().map(|e| e.event_id().to_owned()).collect::<Vec<_>>());
        // A call's events get consecutive sequences, and no PubAck yet.
        let seqs: Vec<u64> = got.iter().map(|a| a.outbox_seq.unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
        assert!(got.iter().all(|a| a.ack.is_none()));
        accepted.extend(got);
    }
    assert_eq!(outbox.status().snapshot().depth, 30);

    // When the process "crashes": the handles are dropped without shutdown.
    drop(outbox);

    // Then every accepted event is in the reopened outbox, in order, intact.
    let outbox = reopen(&config).await;
    let entries = outbox.entries(0, 1000).unwrap();
    assert_eq!(ids(&entries), accepted_ids(&accepted));
    assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=30).collect::<Vec<u64>>());
    assert!(entries.iter().all(|e| e.subject == "mpp.events.dukcapil.kk" && !e.payload.is_empty()));
    let s = outbox.status().snapshot();
    assert_eq!(s.depth, 30);
    assert!(s.bytes > 30 * 100, "{s:?}");
    // And the old publisher no longer reaches any outbox.
    let err = publisher.publish_all(&call_events(&b, 1)).await.unwrap_err();
    assert_eq!(to_status(&KitError::Publish(err)).code(), tonic::Code::Unavailable);
    // New calls continue the sequence.
    let next = outbox.publisher().publish_all(&call_events(&b, 1)).await.unwrap();
    assert_eq!(next[0].outbox_seq, Some(31));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_flushes_and_are_durable_before_their_answer() {
    const CALLS: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(open(&OutboxConfig::new(dir.path())));
    let b = builder();
    let barrier = Arc::new(tokio::sync::Barrier::new(CALLS));
    let mut tasks = Vec::new();
    for i in 0..CALLS {
        let (outbox, barrier) = (outbox.clone(), barrier.clone());
        let events = call_events(&b, 1 + i % 2);
        tasks.push(tokio::spawn(async move {
            let publisher = outbox.publisher();
            barrier.wait().await;
            let accepted = publisher.publish_all(&events).await.unwrap();
            // At the answer, every event of the call is flushed and readable.
            let durable = outbox.status().snapshot().durable_next_seq;
            for a in &accepted {
                let seq = a.outbox_seq.unwrap();
                assert!(seq < durable, "answered before the flush of {seq} (durable below {durable})");
                let stored = outbox.entries(seq, 1).unwrap();
                assert_eq!(stored.first().map(|e| e.event_id.as_str()), Some(a.event_id.as_str()));
            }
            accepted.len()
        }));
    }
    let mut events = 0;
    for t in tasks {
        events += t.await.unwrap();
    }
    let s = outbox.status().snapshot();
    assert_eq!(s.accepted_events_total, events as u64);
    assert_eq!(s.depth, events as u64);
    println!("{CALLS} concurrent calls, {events} events, {} flushes", s.flushes_total);
    assert!(s.flushes_total >= 1);
    assert!(
        s.flushes_total <= (CALLS / 4) as u64,
        "group commit: {} flushes for {CALLS} calls",
        s.flushes_total
    );
}

#[tokio::test]
async fn calls_are_accepted_while_nats_is_down_and_published_in_order_once_it_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let mut outbox = open(&OutboxConfig::new(dir.path()));
    // Given a relay pointed at a NATS server that does not exist yet.
    let client =
        connect_nats_in_background(&format!("nats://127.0.0.1:{port}"), "outbox-test", &Default::default())
            .await
            .unwrap();
    outbox.start_relay(client, RelayConfig::default());
    let publisher = outbox.publisher();

    // When calls come in, they are accepted.
    let b = builder();
    let mut accepted = Vec::new();
    for i in 0..60 {
        accepted.extend(publisher.publish_all(&call_events(&b, 1 + i % 2)).await.unwrap());
    }
    let expected = accepted_ids(&accepted);
    assert_eq!(ids(&outbox.entries(0, 1000).unwrap()), expected, "all waiting, in order");
    assert_eq!(outbox.status().snapshot().published_total, 0);

    // When the server comes up, then the outbox drains.
    let nats = NatsServer::start_on(port).await.unwrap();
    let status = outbox.status();
    wait_until("the outbox is empty", || status.snapshot().depth == 0).await;

    // Then the stream holds every event exactly once, in outbox order.
    let js = jetstream::new(nats.connect().await.unwrap());
    let got = stream_messages(&js).await;
    assert_eq!(got.iter().map(|(_, id)| id.clone()).collect::<Vec<_>>(), expected);
    assert!(got.iter().all(|(subject, _)| subject == "mpp.events.dukcapil.kk"));
    assert_eq!(status.snapshot().published_total, expected.len() as u64);
    assert!(outbox.entries(0, 10).unwrap().is_empty());

    // And a call made now is published too.
    let more = publisher.publish_all(&call_events(&b, 1)).await.unwrap();
    wait_until("the new event is published", || status.snapshot().depth == 0).await;
    let got = stream_messages(&js).await;
    assert_eq!(got.last().map(|(_, id)| id.as_str()), Some(more[0].event_id.as_str()));
    let report = outbox.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.remaining_entries, 0);
    assert!(report.drained);
}

#[tokio::test]
async fn a_restart_publishes_the_rest_once_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let config = OutboxConfig::new(dir.path());
    let (_nats, client, js) = nats_with_stream().await;

    // Given 40 accepted events, of which the first 10 reached the stream
    // before the crash but were not yet deleted from the outbox.
    let outbox = open(&config);
    let b = builder();
    for i in 0..30 {
        outbox.publisher().publish_all(&call_events(&b, 1 + i % 3 / 2)).await.unwrap();
    }
    let entries = outbox.entries(0, 1000).unwrap();
    assert_eq!(entries.len(), 40);
    for e in &entries[..10] {
        let msg = PublishMessage::build().payload(e.payload.clone()).message_id(&e.event_id);
        let ack = js.send_publish(e.subject.clone(), msg).await.unwrap().await.unwrap();
        assert!(!ack.duplicate);
    }
    drop(outbox);

    // When the service starts again with its relay.
    let mut outbox = reopen(&config).await;
    assert_eq!(ids(&outbox.entries(0, 1000).unwrap()), ids(&entries), "same entries, same event ids");
    outbox.start_relay(client.clone(), RelayConfig::default());
    let status = outbox.status();
    wait_until("the outbox is empty", || status.snapshot().depth == 0).await;

    // Then the stream holds each of the 40 exactly once, in outbox order:
    // the first 10 were re-sent and recognised as duplicates.
    let got: Vec<String> = stream_messages(&js).await.into_iter().map(|(_, id)| id).collect();
    assert_eq!(got, ids(&entries));
    assert_eq!(status.snapshot().published_total, 40, "10 duplicates + 30 new, all acknowledged");
    outbox.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn shutdown_keeps_what_could_not_be_published_for_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = OutboxConfig::new(dir.path());
    let port = free_port().unwrap();
    let url = format!("nats://127.0.0.1:{port}");
    let mut outbox = open(&config);
    outbox.start_relay(
        connect_nats_in_background(&url, "outbox-test", &Default::default()).await.unwrap(),
        RelayConfig::default(),
    );
    let publisher = outbox.publisher();
    let b = builder();
    let mut accepted = Vec::new();
    for _ in 0..10 {
        accepted.extend(publisher.publish_all(&call_events(&b, 2)).await.unwrap());
    }

    // When it shuts down while NATS is unreachable: the drain times out,
    // everything stays, and no further call is accepted.
    let report = outbox.shutdown(Duration::from_millis(300)).await;
    assert_eq!(report.remaining_entries, 20);
    assert!(!report.drained);
    let err = publisher.publish_all(&call_events(&b, 1)).await.unwrap_err();
    let status = to_status(&KitError::Publish(err));
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.metadata().get(REASON_CODE_METADATA_KEY).unwrap(), "UNAVAILABLE");

    // Then after a restart with NATS up, the rest goes out first, in order.
    let nats = NatsServer::start_on(port).await.unwrap();
    let mut outbox = reopen(&config).await;
    assert_eq!(ids(&outbox.entries(0, 1000).unwrap()), accepted_ids(&accepted));
    outbox.start_relay(
        connect_nats_in_background(&url, "outbox-test", &Default::default()).await.unwrap(),
        RelayConfig::default(),
    );
    let newer = outbox.publisher().publish_all(&call_events(&b, 1)).await.unwrap();
    let status = outbox.status();
    wait_until("the outbox is empty", || status.snapshot().depth == 0).await;
    let js = jetstream::new(nats.connect().await.unwrap());
    let got: Vec<String> = stream_messages(&js).await.into_iter().map(|(_, id)| id).collect();
    let mut want = accepted_ids(&accepted);
    want.extend(accepted_ids(&newer));
    assert_eq!(got, want);
    outbox.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_full_outbox_refuses_calls_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let b = builder();

    // By entries: 3 at most.
    let config = OutboxConfig { entries_max: 3, ..OutboxConfig::new(dir.path().join("entries")) };
    let outbox = open(&config);
    let publisher = outbox.publisher();
    let first = publisher.publish_all(&call_events(&b, 2)).await.unwrap();
    let err = publisher.publish_all(&call_events(&b, 2)).await.unwrap_err();
    assert_eq!(err.accepted_before, Vec::<String>::new());
    let status = to_status(&KitError::Publish(err));
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.metadata().get(REASON_CODE_METADATA_KEY).unwrap(), "OUTBOX_FULL");
    assert!(status.message().contains("outbox is full"), "{}", status.message());
    // Nothing of the refused call was written.
    assert_eq!(ids(&outbox.entries(0, 100).unwrap()), accepted_ids(&first));
    let s = outbox.status().snapshot();
    assert_eq!((s.depth, s.full_total), (2, 1));
    assert!(outbox.status().accepting().is_ok());
    // One more event fits; then the outbox reports itself full.
    publisher.publish_all(&call_events(&b, 1)).await.unwrap();
    assert!(outbox.status().accepting().unwrap_err().contains("full"));
    assert_eq!(outbox.entries(0, 100).unwrap().len(), 3);

    // By bytes: not even one event fits.
    let config = OutboxConfig { bytes_max: 64, ..OutboxConfig::new(dir.path().join("bytes")) };
    let outbox = open(&config);
    let err = outbox.publisher().publish_all(&call_events(&b, 1)).await.unwrap_err();
    assert_eq!(err.reason, mpp_core::ReasonCode::OutboxFull);
    assert!(outbox.entries(0, 100).unwrap().is_empty());
    assert_eq!(outbox.status().snapshot().bytes, 0);
}

/// Asserts that the stream holds `want`, each once, in that order; on a
/// difference says where (the lists are too long to print).
fn assert_ids(got: &[String], want: &[String]) {
    let distinct: std::collections::HashSet<&String> = got.iter().collect();
    let first_diff = got.iter().zip(want).position(|(g, w)| g != w);
    assert!(
        got == want,
        "stream holds {} messages ({} distinct), want {}; first difference at {first_diff:?}",
        got.len(),
        distinct.len(),
        want.len()
    );
}

/// Accepts `calls` calls of `per_call` events each; returns their ids in order.
async fn accept(outbox: &Outbox, calls: usize, per_call: usize) -> Vec<String> {
    let b = builder();
    let mut out = Vec::new();
    for _ in 0..calls {
        out.extend(accepted_ids(&outbox.publisher().publish_all(&call_events(&b, per_call)).await.unwrap()));
    }
    out
}

/// The events stream as [`mpp_agency_kit::stream_config`] defines it but
/// without `allow_atomic` (as a stream created before the kit asked for it).
async fn stream_without_atomic_batches(js: &jetstream::Context) {
    let config = jetstream::stream::Config { allow_atomic_publish: false, ..mpp_agency_kit::stream_config() };
    let info = js.create_stream(config).await.unwrap().cached_info().clone();
    assert!(!info.config.allow_atomic_publish);
}

#[tokio::test]
async fn entries_go_out_in_atomic_batches_in_outbox_order() {
    let dir = tempfile::tempdir().unwrap();
    let (_nats, client, js) = nats_with_jetstream().await;

    // Given 2,500 accepted events waiting (more than two full batches).
    let mut outbox = open(&OutboxConfig::new(dir.path()));
    let expected = accept(&outbox, 500, 5).await;

    // When the relay runs (it creates the stream).
    outbox.start_relay(client, RelayConfig::default());
    let status = outbox.status();
    wait_until("the outbox is empty", || status.snapshot().depth == 0).await;

    // Then the stream holds each once, in outbox order, sent as batches of
    // at most BATCH_EVENTS_MAX, without a single failure.
    let got: Vec<String> = stream_messages(&js).await.into_iter().map(|(_, id)| id).collect();
    assert_ids(&got, &expected);
    let s = status.snapshot();
    assert_eq!(s.published_total, 2_500);
    assert_eq!(s.publish_errors_total, 0, "{s:?}");
    let least = 2_500usize.div_ceil(mpp_agency_kit::outbox::BATCH_EVENTS_MAX) as u64;
    assert!((least..=2_500 / 2).contains(&s.batches_total), "{s:?}");
    // The stored messages carry their batch (ADR-50 headers are kept).
    let mut stream = js.get_stream(STREAM_NAME).await.unwrap();
    assert!(stream.info().await.unwrap().config.allow_atomic_publish);
    let first = stream.get_raw_message(1).await.unwrap();
    assert!(first.headers.get("Nats-Batch-Id").is_some(), "{:?}", first.headers);
    outbox.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_batch_resent_after_its_lost_puback_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = OutboxConfig::new(dir.path());
    let (_nats, client, js) = nats_with_stream().await;

    // Given 1,500 accepted events whose first 300 JetStream stored as one
    // atomic batch whose PubAck never came back (the relay still holds them).
    let outbox = open(&config);
    let expected = accept(&outbox, 300, 5).await;
    let entries = outbox.entries(0, 300).unwrap();
    let batch = "lost-ack-batch";
    for (i, e) in entries.iter().enumerate() {
        let mut msg = PublishMessage::build()
            .payload(e.payload.clone())
            .message_id(&e.event_id)
            .header("Nats-Batch-Id", batch)
            .header("Nats-Batch-Sequence", (i + 1).to_string().as_str());
        if i + 1 == entries.len() {
            msg = msg.header("Nats-Batch-Commit", "1");
            let ack = js.send_publish(e.subject.clone(), msg).await.unwrap().await.unwrap();
            assert_eq!((ack.batch_id.as_deref(), ack.batch_size), (Some(batch), Some(300)));
        } else {
            let out = msg.outbound_message(e.subject.clone());
            client.publish_with_headers(out.subject, out.headers.unwrap(), out.payload).await.unwrap();
        }
    }
    drop(outbox);

    // When the relay resends them with the same event ids (its first batch
    // holds those 300 and 700 more: the server refuses it as a whole).
    let mut outbox = reopen(&config).await;
    outbox.start_relay(client.clone(), RelayConfig::default());
    let status = outbox.status();
    wait_until("the outbox is empty", || status.snapshot().depth == 0).await;

    // Then every event is in the stream exactly once, in outbox order: the
    // refused batch went out one event at a time (300 duplicates), the rest
    // in batches again.
    let got: Vec<String> = stream_messages(&js).await.into_iter().map(|(_, id)| id).collect();
    assert_ids(&got, &expected);
    let s = status.snapshot();
    assert_eq!(s.published_total, 1_500, "300 duplicates + 1,200 new, all acknowledged");
    assert_eq!(s.publish_errors_total, 1, "the one refused batch: {s:?}");
    assert!(s.batches_total >= 1, "batches resume after the refused range: {s:?}");

    // And resending the very same batch once more changes nothing.
    let again = PublishMessage::build()
        .payload(entries[0].payload.clone())
        .message_id(&entries[0].event_id)
        .header("Nats-Batch-Id", "lost-ack-again")
        .header("Nats-Batch-Sequence", "1")
        .header("Nats-Batch-Commit", "1");
    let err = js.send_publish(entries[0].subject.clone(), again).await.unwrap().await.unwrap_err();
    assert!(err.to_string().contains("duplicate"), "{err}");
    assert_eq!(stream_messages(&js).await.len(), 1_500);
    outbox.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_stream_without_allow_atomic_gets_single_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let (_nats, client, js) = nats_with_jetstream().await;
    // Given a stream without the flag, which this relay may not change.
    stream_without_atomic_batches(&js).await;
    let mut outbox = open(&OutboxConfig::new(dir.path()));
    let expected = accept(&outbox, 120, 5).await;

    // When the relay runs.
    outbox.start_relay(client.clone(), RelayConfig { ensure_stream: false, ..RelayConfig::default() });
    let status = outbox.status();
    wait_until("the outbox is empty", || status.snapshot().depth == 0).await;

    // Then its first batch is refused, and everything goes out one event at
    // a time, each once, in order.
    let got: Vec<String> = stream_messages(&js).await.into_iter().map(|(_, id)| id).collect();
    assert_ids(&got, &expected);
    let s = status.snapshot();
    assert_eq!((s.published_total, s.batches_total, s.publish_errors_total), (600, 0, 1), "{s:?}");
    // Later events too, without another refused batch.
    let more = accept(&outbox, 40, 5).await;
    wait_until("the outbox is empty", || status.snapshot().depth == 0).await;
    let got: Vec<String> = stream_messages(&js).await.into_iter().map(|(_, id)| id).collect();
    assert_ids(&got[600..], &more);
    let s = status.snapshot();
    assert_eq!((s.batches_total, s.publish_errors_total), (0, 1), "{s:?}");
    let info = js.get_stream(STREAM_NAME).await.unwrap().info().await.unwrap().clone();
    assert!(!info.config.allow_atomic_publish, "left as it was");
    outbox.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn ensure_stream_allows_atomic_batches_on_an_existing_stream() {
    let nats = NatsServer::start().await.unwrap();
    let js = jetstream::new(nats.connect().await.unwrap());
    stream_without_atomic_batches(&js).await;
    let info = ensure_stream(&js).await.unwrap();
    assert!(info.config.allow_atomic_publish);
    let info = js.get_stream(STREAM_NAME).await.unwrap().info().await.unwrap().clone();
    assert!(info.config.allow_atomic_publish);
    // Nothing else changed.
    let want = jetstream::stream::Config { allow_atomic_publish: true, ..mpp_agency_kit::stream_config() };
    assert_eq!(
        (
            info.config.deny_delete,
            info.config.deny_purge,
            info.config.duplicate_window,
            &info.config.subjects
        ),
        (want.deny_delete, want.deny_purge, want.duplicate_window, &want.subjects)
    );
}
