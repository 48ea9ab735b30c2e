//! The shared kit of every MPP agency service.
//!
//! An agency service speaks its own vocabulary over gRPC (Dukcapil "cetak
//! dokumen", Imigrasi "jadwal wawancara", ...) and translates each call into
//! the hub's common events. This crate holds everything those services share:
//!
//! - [`input`]: parsing of RPC fields with the core's types and limits, so a bad
//!   request is refused before anything is published;
//! - [`event`]: the [`EventBuilder`] that turns a core [`mpp_core::EventBody`]
//!   into a validated `mpp.v1.Envelope` with a fresh UUIDv7 event id;
//! - [`ids`]: tracking numbers, application ids, citizen PINs and their verifier;
//! - [`publish`]: the [`Publisher`] seam and the [`JetStreamPublisher`] behind it
//!   (`Nats-Msg-Id` = event id, awaiting the PubAck, bounded retries);
//! - [`stream`]: the one definition of the `MPP_EVENTS` stream;
//! - [`catalogue`]: service standards and their deterministic event ids;
//! - [`agency`]: the [`Agency`] handle an RPC implementation calls;
//! - [`error`]: the one mapping from kit errors to `tonic::Status`;
//! - [`server`] and [`cli`]: gRPC serving (health, reflection, limits, graceful
//!   shutdown), common flags and tracing set-up.
//!
//! Guarantee: an RPC is answered "accepted" only after every event it produced
//! was acknowledged by JetStream (a PubAck), in order. A later issue puts a
//! durable outbox behind the same [`Publisher`] trait; the answer then means
//! "durably queued", and the RPC code does not change.
//!
//! Architecture invariant: the kit knows nothing about any one agency's
//! vocabulary; services know nothing about NATS.

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

pub mod agency;
pub mod catalogue;
pub mod cli;
pub mod error;
pub mod event;
pub mod ids;
pub mod input;
pub mod publish;
pub mod server;
pub mod stream;
#[cfg(feature = "testing")]
pub mod testing;

pub use agency::{Agency, Filed};
pub use catalogue::{standard_event_id, ServiceStandardSpec};
pub use cli::{init_tracing, CommonArgs, LogFormat};
pub use error::{to_status, KitError, REASON_CODE_METADATA_KEY};
pub use event::{Clock, EventBuilder, OutgoingEvent, SystemClock};
pub use ids::{allocate_tracking_number, new_application_id, pin_verifier, Pin, PinPepper};
pub use publish::{Accepted, JetStreamPublisher, PubAckInfo, PublishError, Publisher};
pub use server::{serve, shutdown_signal};
pub use stream::{ensure_stream, stream_config, STREAM_NAME, STREAM_SUBJECTS};
