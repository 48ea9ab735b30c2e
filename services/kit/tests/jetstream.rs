//! The kit against a real nats-server: stream bootstrap, publishing with
//! `Nats-Msg-Id`, duplicate detection on republish, ordered multi-event calls
//! and idempotent service standards.

use std::sync::Arc;

use async_nats::jetstream;
use mpp_agency_kit::testing::random_tracking_number;
use mpp_agency_kit::{
    ensure_stream, new_application_id, Agency, EventBuilder, JetStreamPublisher, SystemClock, STREAM_NAME,
};
use mpp_core::ids::{AgencyId, OfficerId, RegionCode, ServiceId};
use mpp_core::EventBody;
use mpp_proto::v1 as pb;
use mpp_test_support::NatsServer;
use prost::Message as _;

fn kk() -> ServiceId {
    ServiceId::parse("kk").unwrap()
}

#[tokio::test]
async fn events_reach_the_stream_once_with_their_message_id() {
    let nats = NatsServer::start().await.expect("start nats-server (is it on PATH?)");
    let client = nats.connect().await.unwrap();
    let publisher = JetStreamPublisher::new(client);
    let js = publisher.context().clone();

    // Given the stream, created by the kit (twice: the second is a no-op).
    let info = ensure_stream(&js).await.unwrap();
    assert_eq!(info.config.name, STREAM_NAME);
    assert!(info.config.deny_delete && info.config.deny_purge && !info.config.allow_rollup);
    assert_eq!(info.config.subjects, vec!["mpp.events.>".to_owned()]);
    assert!(info.config.duplicate_window >= std::time::Duration::from_secs(600));
    assert_eq!(info.config.storage, jetstream::stream::StorageType::File);
    ensure_stream(&js).await.unwrap();

    let builder = EventBuilder::new(
        RegionCode::parse("1771").unwrap(),
        AgencyId::parse("dukcapil").unwrap(),
        Arc::new(SystemClock),
    );
    let agency = Agency::new(builder, Arc::new(publisher.clone()));

    // When the agency publishes its standard, twice (as on two starts).
    let spec = mpp_agency_kit::testing::kk_standard();
    let first = agency.publish_standards(std::slice::from_ref(&spec)).await.unwrap();
    let second = agency.publish_standards(std::slice::from_ref(&spec)).await.unwrap();
    let (a1, a2) = (first[0].ack.clone().unwrap(), second[0].ack.clone().unwrap());
    // Then the second is the same message, recognised as a duplicate.
    assert_eq!(first[0].event_id, second[0].event_id);
    assert!(!a1.duplicate);
    assert!(a2.duplicate);
    assert_eq!(a1.stream_seq, a2.stream_seq);

    // When an application is filed into a case, then its review starts.
    let app = new_application_id("DKC-KK").unwrap();
    let officer = OfficerId::parse("ptg-1").unwrap();
    let case = random_tracking_number(agency.region());
    let filed = agency
        .file_application(&kk(), Some(case), app.clone(), &officer, vec!["KK lama".into()])
        .await
        .unwrap();
    let step = agency.step(&kk(), case, app, &officer, EventBody::ReviewStarted).await.unwrap();
    let accepted = [filed.accepted.clone(), vec![step]].concat();
    let seqs: Vec<u64> = accepted.iter().map(|a| a.ack.as_ref().unwrap().stream_seq).collect();
    assert_eq!(seqs, vec![a1.stream_seq + 1, a1.stream_seq + 2], "in order, right after the standard");

    // Then each message is stored with Nats-Msg-Id = event id, on the service's subject.
    let stream = js.get_stream(STREAM_NAME).await.unwrap();
    for accepted in &accepted {
        let msg = stream.get_raw_message(accepted.ack.as_ref().unwrap().stream_seq).await.unwrap();
        assert_eq!(msg.subject.as_str(), "mpp.events.dukcapil.kk");
        let id = msg.headers.get(async_nats::header::NATS_MESSAGE_ID).map(|v| v.as_str().to_owned());
        assert_eq!(id.as_deref(), Some(accepted.event_id.as_str()));
        let env = pb::Envelope::decode(msg.payload.clone()).unwrap();
        assert_eq!(env.event_id, accepted.event_id);
        assert_eq!(env.case_id, filed.tracking_number.to_string());
    }

    // When the review_started envelope is published again with the same id
    // (a retry), then JetStream reports a duplicate and stores nothing new.
    let last = stream.get_raw_message(seqs[1]).await.unwrap();
    let env = pb::Envelope::decode(last.payload.clone()).unwrap();
    let ack = publisher.publish("mpp.events.dukcapil.kk", &env).await.unwrap();
    assert!(ack.duplicate);
    assert_eq!(ack.stream_seq, seqs[1]);
    let mut stream = js.get_stream(STREAM_NAME).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 3);

    // And the stream refuses deletion.
    assert!(stream.delete_message(seqs[0]).await.is_err(), "deny_delete");
    assert!(stream.purge().await.is_err(), "deny_purge");
}
