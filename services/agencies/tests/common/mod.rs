//! What the agencies' integration tests share: reading the stream back.

use std::time::Duration;

use mpp_agency_kit::STREAM_NAME;
use mpp_proto::v1 as ev;
use mpp_test_support::wait_for;
use prost::Message as _;

/// How long the relays may take to bring every event into the stream.
pub(crate) const STREAM_DEADLINE_MS: u64 = 30_000;

/// A message of the stream, decoded.
pub(crate) struct Stored {
    pub(crate) subject: String,
    /// Its `Nats-Msg-Id` header.
    pub(crate) msg_id: Option<String>,
    pub(crate) envelope: ev::Envelope,
}

/// Waits until the stream holds `expected` messages (not fewer: the relays
/// publish in the background; not more: nothing may be duplicated), then
/// reads them all in stream order.
pub(crate) async fn read_stream(js: &async_nats::jetstream::Context, expected: u64) -> Vec<Stored> {
    let what = format!("{expected} messages in the stream");
    let mut stream = wait_for(&what, Duration::from_millis(STREAM_DEADLINE_MS), || async {
        let mut s = js.get_stream(STREAM_NAME).await?;
        let messages = s.info().await?.state.messages;
        Ok((messages >= expected).then_some(s))
    })
    .await
    .unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, expected, "no message more than expected");
    let mut out = Vec::new();
    for seq in 1..=expected {
        let msg = stream.get_raw_message(seq).await.unwrap();
        let msg_id = msg.headers.get(async_nats::header::NATS_MESSAGE_ID).map(|v| v.as_str().to_owned());
        let envelope = ev::Envelope::decode(msg.payload.clone()).unwrap();
        out.push(Stored { subject: msg.subject.to_string(), msg_id, envelope });
    }
    out
}
