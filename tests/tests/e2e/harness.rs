//! The harness's own guarantees: a private nats-server starts on its own port,
//! keeps its JetStream data across a clean restart and across `kill -9`, and
//! is gone when dropped.

use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::stream;
use mpp_tests::envelope::publish;
use mpp_tests::NatsServer;

const MESSAGES: u64 = 50;

async fn last_seq(server: &NatsServer, name: &str) -> Result<u64> {
    let js = server.jetstream().await?;
    let mut s = js.get_stream(name).await.context("get stream")?;
    Ok(s.info().await.context("stream info")?.state.last_sequence)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_keeps_stream_data_across_restart_and_kill9() -> Result<()> {
    let mut server = NatsServer::start().await?;
    let port = server.port();
    let js = server.jetstream().await?;
    js.create_stream(stream::Config {
        name: "SELFTEST".to_owned(),
        subjects: vec!["selftest.>".to_owned()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .context("create stream")?;
    for i in 0..MESSAGES {
        let ack = publish(&js, "selftest.a", Some(&format!("msg-{i}")), format!("m{i}").into()).await?;
        assert_eq!(ack.sequence, i + 1);
        assert!(!ack.duplicate);
    }
    // A re-publish inside the duplicate window is recognised as a duplicate.
    let dup = publish(&js, "selftest.a", Some("msg-0"), "again".into()).await?;
    assert!(dup.duplicate, "JetStream did not flag a re-published Nats-Msg-Id as duplicate: {dup:?}");
    drop(js);

    server.kill9()?;
    assert!(!server.is_running());
    assert!(server.connect().await.is_err(), "something still answers on port {port} after kill -9");
    server.restart().await?;
    assert_eq!(server.port(), port, "restart must keep the port");
    assert_eq!(last_seq(&server, "SELFTEST").await?, MESSAGES, "kill -9 lost acknowledged messages");

    server.restart().await?;
    assert_eq!(last_seq(&server, "SELFTEST").await?, MESSAGES, "clean restart lost messages");
    println!("nats-server on port {port}: {MESSAGES} messages survived kill -9 and a clean restart");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_nats_server_is_stopped() -> Result<()> {
    let server = NatsServer::start().await?;
    let url = server.url();
    drop(server);
    let gone = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_millis(500))
        .connect(&url)
        .await
        .is_err();
    assert!(gone, "nats-server still answers at {url} after its handle was dropped");
    Ok(())
}
