//! The MPP Hub daemon: ingest from NATS JetStream into the sled log, and
//! case lookups over gRPC and HTTP.
//!
//! Architecture invariant: business decisions live in `mpp-core`; this crate
//! only moves bytes between NATS, sled, gRPC and HTTP and converts wire types
//! by hand ([`wire`]). One thread owns the sled writer ([`ingest`]); every
//! other task only reads.

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

pub mod access;
pub mod audit;
pub mod audit_service;
pub mod auth;
#[cfg(test)]
mod citizen_tests;
pub mod cli;
pub mod config;
pub mod error;
pub mod grpc;
pub mod grpc_serve;
pub mod health;
pub mod http;
pub mod i18n;
pub mod ingest;
pub mod json;
pub mod ledger;
pub mod lookup;
pub mod metrics;
pub mod ops;
pub mod page;
pub mod ratelimit;
pub mod recover;
pub mod server;
pub mod session;
pub mod signer;
pub mod stream;
pub mod tls;
pub mod watch;
pub mod wire;
