//! The one definition of the events stream.
//!
//! | property | value | why |
//! |---|---|---|
//! | name | `MPP_EVENTS` ([`STREAM_NAME`]) | public surface |
//! | subjects | `mpp.events.>` ([`STREAM_SUBJECTS`]) | `mpp.events.<agency_id>.<service_id>` |
//! | storage | file | survives restarts (run the server with `sync_interval: always`) |
//! | retention | limits, no limits set (no max age, messages, bytes) | the stream is the replicated source the hub can always re-read |
//! | discard | new | should an operator ever add a limit, publishing fails loudly instead of old events vanishing |
//! | deny_delete, deny_purge | true | no event can be removed through the API |
//! | allow_rollup | false | no message can replace others |
//! | duplicate_window | 10 min ([`STREAM_DUPLICATE_WINDOW_S`]) | retries with the same `Nats-Msg-Id` are stored once |
//! | max_message_size | 1 MiB ([`STREAM_MESSAGE_BYTES_MAX`]) | oversize events (> 64 KiB) still reach the hub and are logged as `MESSAGE_TOO_LARGE` |
//! | replicas | 1 ([`STREAM_REPLICAS`]) | a cluster deployment creates the stream R3 itself |
//! | allow_atomic | true (server 2.12+) | agencies' outbox relays publish ADR-50 atomic batches: one commit (one sync) per batch instead of one per event |
//!
//! The hub's ingest, every agency's outbox relay, the front office, the
//! benchmarks and the tests all take the stream from here.

use std::time::Duration;

use async_nats::jetstream::context::CreateStreamError;
use async_nats::jetstream::stream::{Config, DiscardPolicy, Info, RetentionPolicy, StorageType};
use async_nats::jetstream::Context;

/// Name of the events stream.
pub const STREAM_NAME: &str = "MPP_EVENTS";

/// The one subject filter of the events stream, `mpp.events.<agency_id>.<service_id>`
/// and anything else below `mpp.events`: wider than the valid shape on
/// purpose, so a malformed subject is still recorded (as `BAD_SUBJECT`)
/// rather than refused by NATS unseen.
pub const STREAM_SUBJECT_FILTER: &str = "mpp.events.>";

/// Subjects of the events stream.
pub const STREAM_SUBJECTS: &[&str] = &[STREAM_SUBJECT_FILTER];

/// JetStream's duplicate window, in seconds: a message whose `Nats-Msg-Id`
/// was stored less than this long ago is acknowledged as a duplicate and not
/// stored again. Must cover every retry of one event.
pub const STREAM_DUPLICATE_WINDOW_S: u64 = 10 * 60;

/// Largest message the stream stores, in bytes (NATS' default `max_payload`).
pub const STREAM_MESSAGE_BYTES_MAX: i32 = 1024 * 1024;

/// Replicas of the stream when the kit creates it.
pub const STREAM_REPLICAS: usize = 1;

/// The configuration of the events stream (see the module docs).
pub fn stream_config() -> Config {
    Config {
        name: STREAM_NAME.to_owned(),
        description: Some("MPP Hub: every event of every agency, kept forever".to_owned()),
        subjects: STREAM_SUBJECTS.iter().map(|s| (*s).to_owned()).collect(),
        storage: StorageType::File,
        retention: RetentionPolicy::Limits,
        discard: DiscardPolicy::New,
        max_age: Duration::ZERO,
        max_messages: -1,
        max_bytes: -1,
        max_messages_per_subject: -1,
        max_consumers: -1,
        max_message_size: STREAM_MESSAGE_BYTES_MAX,
        num_replicas: STREAM_REPLICAS,
        duplicate_window: Duration::from_secs(STREAM_DUPLICATE_WINDOW_S),
        deny_delete: true,
        deny_purge: true,
        allow_rollup: false,
        allow_atomic_publish: true,
        ..Config::default()
    }
}

/// Why the stream could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot find or create JetStream stream {STREAM_NAME}: {0}")]
pub struct StreamSetupError(#[from] CreateStreamError);

/// The oldest nats-server release with atomic batch publishes (ADR-50).
pub const ATOMIC_BATCH_SERVER_MIN: (u64, u64) = (2, 12);

/// Whether a nats-server of `version` ("2.15.1", "v2.12.0-beta") takes
/// atomic batches. An unparsable version does not.
pub fn server_supports_atomic_batches(version: &str) -> bool {
    let mut parts = version.trim_start_matches('v').split(['.', '-']);
    let mut number = || parts.next().and_then(|p| p.parse::<u64>().ok());
    match (number(), number()) {
        (Some(major), Some(minor)) => (major, minor) >= ATOMIC_BATCH_SERVER_MIN,
        _ => false,
    }
}

/// Finds the events stream or creates it with [`stream_config`]. An existing
/// stream is left as it is but for one property: where the server takes
/// atomic batches and the stream does not allow them (a stream created
/// before the kit asked for it), `allow_atomic` is switched on (only that;
/// it adds a way to publish and weakens nothing). If that update fails the
/// stream stays as it was and outbox relays publish one event at a time.
/// Every property that differs from [`stream_config`] in a way that weakens
/// the guarantees is logged at ERROR (an operator must look), so a
/// deployment that created the stream differently (e.g. R3) starts without
/// noise.
#[tracing::instrument(skip(js))]
pub async fn ensure_stream(js: &Context) -> Result<Info, StreamSetupError> {
    let stream = js.get_or_create_stream(stream_config()).await?;
    let mut info = stream.cached_info().clone();
    let version = js.client().server_info().version;
    if !info.config.allow_atomic_publish && server_supports_atomic_batches(&version) {
        let mut config = info.config.clone();
        config.allow_atomic_publish = true;
        match js.update_stream(config).await {
            Ok(updated) => {
                tracing::info!(stream = STREAM_NAME, "Events stream now allows atomic batches");
                info = updated;
            }
            Err(e) => tracing::warn!(
                stream = STREAM_NAME,
                error = %e,
                "Cannot allow atomic batches on the events stream; outbox relays publish one event at a time"
            ),
        }
    }
    for problem in weakened(&info.config) {
        tracing::error!(
            stream = STREAM_NAME,
            problem,
            "Events stream is configured more weakly than the kit's definition"
        );
    }
    tracing::info!(stream = STREAM_NAME, messages = info.state.messages, "Events stream ready");
    Ok(info)
}

/// The ways `actual` is weaker than [`stream_config`], as sentences.
pub fn weakened(actual: &Config) -> Vec<String> {
    let want = stream_config();
    let mut out = Vec::new();
    for s in &want.subjects {
        if !actual.subjects.contains(s) {
            out.push(format!("subjects {:?} do not include {s}", actual.subjects));
        }
    }
    if actual.storage != want.storage {
        out.push("storage is not file".to_owned());
    }
    if actual.retention != want.retention {
        out.push(format!("retention is {:?}, not limits", actual.retention));
    }
    if !actual.max_age.is_zero() {
        out.push(format!("max_age is {:?}: events expire", actual.max_age));
    }
    let limited = actual.max_messages > 0 || actual.max_bytes > 0 || actual.max_messages_per_subject > 0;
    if limited && actual.discard == DiscardPolicy::Old {
        out.push("a size limit is set with discard old: events can be dropped".to_owned());
    }
    if !actual.deny_delete {
        out.push("deny_delete is false".to_owned());
    }
    if !actual.deny_purge {
        out.push("deny_purge is false".to_owned());
    }
    if actual.allow_rollup {
        out.push("allow_rollup is true".to_owned());
    }
    if actual.duplicate_window < want.duplicate_window {
        out.push(format!(
            "duplicate_window {:?} is shorter than {:?}",
            actual.duplicate_window, want.duplicate_window
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_the_documented_one() {
        let c = stream_config();
        assert_eq!(c.name, "MPP_EVENTS");
        assert_eq!(c.subjects, vec!["mpp.events.>".to_owned()]);
        assert_eq!(c.storage, StorageType::File);
        assert_eq!(c.retention, RetentionPolicy::Limits);
        assert!(c.max_age.is_zero());
        assert!(c.deny_delete && c.deny_purge && !c.allow_rollup);
        assert!(c.duplicate_window >= Duration::from_secs(600));
        assert_eq!(c.max_message_size, 1 << 20);
        assert!(c.allow_atomic_publish);
        assert!(weakened(&c).is_empty());
    }

    #[test]
    fn atomic_batches_need_server_2_12() {
        for v in ["2.12.0", "v2.12.0-beta.1", "2.14.3", "2.15.1", "3.0.0"] {
            assert!(server_supports_atomic_batches(v), "{v}");
        }
        for v in ["2.11.9", "2.10.0", "1.4.1", "", "x.y"] {
            assert!(!server_supports_atomic_batches(v), "{v}");
        }
    }

    #[test]
    fn weakened_configs_are_named() {
        let mut c = stream_config();
        c.deny_delete = false;
        c.max_age = Duration::from_secs(3600);
        c.duplicate_window = Duration::from_secs(60);
        let w = weakened(&c);
        assert_eq!(w.len(), 3, "{w:?}");
    }
}
