//! The `mpp-hub` binary's library: configuration ([`config`]) and the
//! wiring of the hub's crates into one process ([`server`]).
//!
//! Architecture invariant: configuration and wiring only. What the hub
//! does lives in its crates: `mpp-ledger` (the only writer of the store),
//! `mpp-lookup` (citizens), `mpp-ops` (operators), `mpp-audit` (auditors),
//! `mpp-obs` (metrics and readiness), on `mpp-edge` (TLS, tokens, NATS).

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

pub mod config;
pub mod server;
#[cfg(test)]
mod tls_tests;
