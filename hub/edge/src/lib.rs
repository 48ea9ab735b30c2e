//! The edge: what every MPP process needs where it meets another one.
//!
//! The hub and every agency service (and the front office) stand on this
//! crate, so each concern below has exactly one definition:
//!
//! - [`conn`]: the connection caps of every listener (in total and per
//!   client address) and the write-stall limit.
//! - [`tls`]: TLS flags, file loading, the plaintext rule and the bounded
//!   handshakes; [`listen`] puts caps and TLS together for the TCP
//!   listeners of a gRPC and an HTTP server.
//! - [`auth`]: the one token-table format (`client_id:sha256-hex`) of every
//!   server, and the gRPC interceptor that checks it.
//! - [`stream`]: THE definition of the `MPP_EVENTS` stream.
//! - [`nats`]: connecting to NATS with credentials.
//! - [`cas`]: a key-value store with compare-and-set writes, as a trait
//!   with an in-memory twin ([`cas_batch`] gathers concurrent writes into
//!   atomic batches); [`nats_kv`] implements it on a JetStream
//!   key-value bucket.
//! - [`grpc_serve`]: the gRPC connection loop (one task per connection,
//!   first-request, idle, age and request timeouts).
//! - [`http_serve`]: the HTTP/1.1 connection loop (head, idle and body
//!   timeouts, body cap).
//! - [`sled_open`]: opening a sled database, waiting for a held lock.
//! - [`files`]: the one bounded read of a configured file (keys, tokens,
//!   certificates, catalogues).
//! - [`meta`]: metadata and header names every API shares.
//! - [`log`]: the one logging contract of every binary (feature `log`).
//! - [`otlp`]: the optional export of spans over OTLP (`--otlp-endpoint`,
//!   feature `otlp`), continuing the callers' W3C traces.
//! - [`signal`]: the one shutdown signal (ctrl-c, SIGTERM) of every server.
//! - [`trace`]: the W3C `traceparent` that follows an event across the hop.
//!
//! Architecture invariant: no domain decision and no business vocabulary
//! lives here (the only domain import is `ReasonCode`, for the reason
//! carried by an error); nothing here reads or writes the hub's store.

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

#[cfg(feature = "net")]
pub mod auth;
#[cfg(any(feature = "net", feature = "nats"))]
pub mod cas;
#[cfg(any(feature = "net", feature = "nats"))]
pub mod cas_batch;
#[cfg(feature = "net")]
pub mod conn;
pub mod files;
#[cfg(feature = "net")]
pub mod grpc_serve;
#[cfg(feature = "net")]
pub mod http_serve;
#[cfg(feature = "net")]
pub mod listen;
#[cfg(feature = "log")]
pub mod log;
pub mod meta;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "nats")]
pub mod nats_kv;
#[cfg(feature = "otlp")]
pub mod otlp;
#[cfg(feature = "net")]
pub mod signal;
pub mod sled_open;
#[cfg(feature = "nats")]
pub mod stream;
#[cfg(feature = "net")]
pub mod tls;
pub mod trace;
