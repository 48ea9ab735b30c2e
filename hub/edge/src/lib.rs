//! The edge: what every MPP process needs where it meets another one.
//!
//! The hub and every agency service (and the front office) stand on this
//! crate, so each concern below has exactly one definition:
//!
//! - [`tls`]: TLS flags, file loading, the plaintext rule and the bounded
//!   handshake loop; [`listen`] adapts it to the TCP listeners of a gRPC and
//!   an HTTP server.
//! - [`auth`]: the one token-table format (`client_id:sha256-hex`) of every
//!   server, and the gRPC interceptor that checks it.
//! - [`stream`]: THE definition of the `MPP_EVENTS` stream.
//! - [`nats`]: connecting to NATS with credentials.
//! - [`grpc_serve`]: the gRPC connection loop (one task per connection).
//! - [`sled_open`]: opening a sled database, waiting for a held lock.
//! - [`meta`]: metadata and header names every API shares.
//! - [`log`]: the one logging contract of every binary (feature `log`).
//! - [`signal`]: the one shutdown signal (ctrl-c, SIGTERM) of every server.
//!
//! Architecture invariant: no domain decision and no business vocabulary
//! lives here (the only domain import is `ReasonCode`, for the reason
//! carried by an error); nothing here reads or writes the hub's store.

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

#[cfg(feature = "net")]
pub mod auth;
#[cfg(feature = "net")]
pub mod grpc_serve;
#[cfg(feature = "net")]
pub mod listen;
#[cfg(feature = "log")]
pub mod log;
pub mod meta;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "net")]
pub mod signal;
pub mod sled_open;
#[cfg(feature = "nats")]
pub mod stream;
#[cfg(feature = "net")]
pub mod tls;
