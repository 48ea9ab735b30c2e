//! The JetStream stream every agency publishes to, defined once.

use std::time::Duration;

use async_nats::jetstream::stream::{Config, DiscardPolicy, RetentionPolicy, StorageType};

/// Stream name.
pub const STREAM_NAME: &str = "MPP_EVENTS";

/// Subjects captured by the stream: `mpp.events.<agency_id>.<service_id>`.
/// Wider than the valid shape on purpose, so a malformed subject is still
/// recorded (as `BAD_SUBJECT`) rather than refused by NATS unseen.
pub const STREAM_SUBJECTS: &str = "mpp.events.>";

/// JetStream's duplicate window for `Nats-Msg-Id`: 10 minutes. The hub's own
/// event-id index is permanent; this window only saves it work.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);

/// Largest message the stream stores: 1 MiB, NATS' default `max_payload`.
/// The hub rejects events above `mpp_core::limits::MESSAGE_BYTES_MAX` (64 KiB)
/// itself, so that an oversized event is still recorded with its verdict.
pub const STREAM_MESSAGE_BYTES_MAX: i32 = 1024 * 1024;

/// The stream configuration: file storage, limits retention with no age
/// limit, deletes and purges denied, so the stream stays the replicated
/// source every hub can re-read from sequence 1.
pub fn stream_config() -> Config {
    Config {
        name: STREAM_NAME.to_owned(),
        subjects: vec![STREAM_SUBJECTS.to_owned()],
        storage: StorageType::File,
        retention: RetentionPolicy::Limits,
        discard: DiscardPolicy::New,
        max_age: Duration::ZERO,
        max_message_size: STREAM_MESSAGE_BYTES_MAX,
        duplicate_window: DUPLICATE_WINDOW,
        deny_delete: true,
        deny_purge: true,
        allow_rollup: false,
        ..Default::default()
    }
}
