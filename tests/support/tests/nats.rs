//! The launcher against a real nats-server: ready when `start` returns, on
//! the port it was given, JetStream data kept across restarts (also when the
//! sync mode changes).

use std::time::Duration;

use mpp_test_support::nats::{NatsOptions, SyncInterval};
use mpp_test_support::{free_port, wait_for, NatsServer};

async fn stream_messages(server: &NatsServer) -> u64 {
    let js = server.jetstream().await.unwrap();
    let mut stream = js.get_stream("T").await.unwrap();
    stream.info().await.unwrap().state.messages
}

#[tokio::test]
async fn a_started_server_takes_jetstream_writes_that_survive_restarts() {
    let mut server = NatsServer::start().await.unwrap();
    let js = server.jetstream().await.unwrap();
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "T".to_owned(),
        subjects: vec!["t.>".to_owned()],
        ..Default::default()
    })
    .await
    .unwrap();
    js.publish("t.a", "one".into()).await.unwrap().await.unwrap();
    assert!(server.config_path().starts_with(server.dir()));
    assert!(std::fs::read_to_string(server.config_path()).unwrap().contains("sync_interval: always"));

    server.restart().await.unwrap();
    assert_eq!(stream_messages(&server).await, 1);

    server.restart_with_sync(SyncInterval::ServerDefault).await.unwrap();
    assert!(!std::fs::read_to_string(server.config_path()).unwrap().contains("sync_interval"));
    assert_eq!(stream_messages(&server).await, 1);

    server.kill9().unwrap();
    assert!(!server.is_running());
    server.restart_with_sync(SyncInterval::Always).await.unwrap();
    assert_eq!(stream_messages(&server).await, 1);
}

#[tokio::test]
async fn a_server_starts_on_the_port_a_client_was_given_and_in_the_given_dir() {
    let port = free_port().unwrap();
    let parent = tempfile::tempdir().unwrap();
    let dir = mpp_test_support::temp_dir_in(parent.path(), "nats-").unwrap();
    let server =
        NatsServer::start_with(NatsOptions { port: Some(port), dir: Some(dir), ..Default::default() })
            .await
            .unwrap();
    assert_eq!(server.port(), port);
    assert_eq!(server.url(), format!("nats://127.0.0.1:{port}"));
    assert!(server.store_dir().starts_with(parent.path()));
    let client = server.connect().await.unwrap();
    client.flush().await.unwrap();
    assert!(!server.log_tail().is_empty());
}

#[tokio::test]
async fn waiting_reports_what_it_waited_for() {
    let err = wait_for("nothing", Duration::from_millis(50), || async { Ok(None::<()>) }).await.unwrap_err();
    assert!(err.to_string().contains("waiting for nothing"), "{err}");
}
