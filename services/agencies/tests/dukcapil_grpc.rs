//! mpp-dukcapil over real gRPC against a real nats-server: a call becomes
//! events in MPP_EVENTS (with `Nats-Msg-Id`), a bad call becomes a status with
//! a reason code and nothing in the stream, health reports SERVING.

use std::sync::Arc;

use mpp_agencies::dukcapil::{run, AGENCY_ID, SERVING};
use mpp_agency_kit::testing::grpc_channel;
use mpp_agency_kit::{
    ensure_stream, Agency, EventBuilder, JetStreamPublisher, SystemClock, REASON_CODE_METADATA_KEY,
    STREAM_NAME,
};
use mpp_core::ids::{AgencyId, RegionCode};
use mpp_proto::agency::dukcapil::v1 as pb;
use mpp_proto::v1 as ev;
use mpp_test_support::NatsServer;
use pb::dukcapil_service_client::DukcapilServiceClient;
use prost::Message as _;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

#[tokio::test]
async fn a_call_becomes_acknowledged_events_in_the_stream() {
    let nats = NatsServer::start().await.expect("start nats-server (is it on PATH?)");
    let publisher = JetStreamPublisher::new(nats.connect().await.unwrap());
    let js = publisher.context().clone();
    ensure_stream(&js).await.unwrap();

    let builder = EventBuilder::new(
        RegionCode::parse("1771").unwrap(),
        AgencyId::parse(AGENCY_ID).unwrap(),
        Arc::new(SystemClock),
    );
    // Walk-in cases are opened by an in-memory front office (its case_opened
    // is not in this stream).
    let front = Arc::new(mpp_agency_kit::testing::MemoryFrontOffice::new());
    let agency = Agency::new(builder, Arc::new(publisher)).with_walk_in(front.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(run(agency, listener, async {
        let _ = stop_rx.await;
    }));

    // The listener is bound before `run` is spawned, so connecting succeeds
    // at once; the first call is served after the standards are published.
    let channel = grpc_channel(addr).await;
    let mut client = DukcapilServiceClient::new(channel.clone());

    let filed = client
        .ajukan_permohonan(pb::Permohonan {
            nomor_berkas: String::new(),
            layanan: pb::Layanan::Kk as i32,
            dokumen: vec!["Formulir F-1.01".into()],
            petugas: "ptg-07".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(filed.event_ids.len(), 2, "the front office's case_opened, the filing");
    assert_eq!(filed.pin.len(), mpp_core::pin::STRONG_PIN_CHARS);
    let opened = front.opened();
    assert_eq!(opened.len(), 1);
    assert_eq!(
        (opened[0].0.tracking_number.to_string(), opened[0].0.pin.expose()),
        (filed.nomor_berkas.clone(), filed.pin.as_str())
    );
    assert_eq!(opened[0].0.event_id, filed.event_ids[0]);

    // The stream holds the three standards, then application_filed.
    let mut stream = js.get_stream(STREAM_NAME).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 4);
    for (seq, id) in [(4u64, &filed.event_ids[1])] {
        let msg = stream.get_raw_message(seq).await.unwrap();
        assert_eq!(msg.subject.as_str(), "mpp.events.dukcapil.kk");
        let header = msg.headers.get(async_nats::header::NATS_MESSAGE_ID).map(|v| v.as_str().to_owned());
        assert_eq!(header.as_deref(), Some(id.as_str()));
        let env = ev::Envelope::decode(msg.payload.clone()).unwrap();
        assert_eq!(env.case_id, filed.nomor_berkas);
    }

    // A step with a mistyped tracking number: INVALID_ARGUMENT, nothing published.
    let mut typo = filed.nomor_berkas.clone();
    let last = typo.pop().unwrap();
    typo.push(if last == '0' { '1' } else { '0' });
    let err = client
        .mulai_verifikasi(pb::Langkah {
            nomor_berkas: typo,
            nomor_permohonan: filed.nomor_permohonan.clone(),
            petugas: "ptg-07".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        err.metadata().get(REASON_CODE_METADATA_KEY).and_then(|v| v.to_str().ok()),
        Some("BAD_CHECK_DIGIT")
    );
    assert_eq!(stream.info().await.unwrap().state.messages, 4);

    // A good step is published on the application's service subject.
    let step = client
        .mulai_verifikasi(pb::Langkah {
            nomor_berkas: filed.nomor_berkas.clone(),
            nomor_permohonan: filed.nomor_permohonan.clone(),
            petugas: "ptg-07".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let msg = stream.get_raw_message(5).await.unwrap();
    assert_eq!(msg.subject.as_str(), "mpp.events.dukcapil.kk");
    let env = ev::Envelope::decode(msg.payload.clone()).unwrap();
    assert_eq!(env.event_id, step.event_id);
    assert!(matches!(env.body, Some(ev::envelope::Body::ReviewStarted(_))));

    // Health reports the service SERVING.
    let health = HealthClient::new(channel)
        .check(HealthCheckRequest { service: SERVING[0].to_owned() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
}
