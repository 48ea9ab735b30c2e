//! End-to-end tests of MPP Hub against real processes: a private nats-server
//! per test, `mpp-hub serve`, and the agency services. One file per concern:
//!
//! - `agency_faults`: NATS stopped or killed mid-traffic, and `kill -9` of an
//!   agency service with a non-empty outbox: the service keeps accepting,
//!   every answered event reaches the hub exactly once.
//! - `citizen`: the tracking page in a real headless browser (Chromium),
//!   lookup rate limits and lockouts, identical answers for an unknown case
//!   and a wrong PIN, and live updates over a gRPC watch.
//! - `audit`: two hubs on one stream (one killed and restarted) hold
//!   byte-identical logs and sign equal Merkle roots; `mpp-hub audit`
//!   verify, export and rebuild agree on both.
//! - `harness`: the harness itself (nats-server start, restart, kill -9).
//! - `journey`: a case opened at the front office and filed into by
//!   DPMPTSP, PDAM and PLN: every agency's step and what the citizen must do
//!   next, visit by visit, until done.
//! - `spine`: 1,000 events through the Dukcapil service → NATS → hub → lookup.
//! - `bench_smoke`: `mpp-bench --quick` runs and writes a report that parses
//!   (no timing is asserted).
//! - `bad_input`: every kind of bad message ends as a rejected log entry with
//!   its reason code, and ingest carries on.
//! - `nats_auth`: NATS with one user per agency (deploy/nats/secure.conf):
//!   a foreign publish is refused by NATS and, on an open server, rejected
//!   by the hub.
//! - `crash`: `kill -9` the hub many times while events flow; nothing lost,
//!   nothing applied twice, chain intact, projection = rebuild.
//!
//! Build the binaries first: `cargo build --workspace --bins` (tests/run-all.sh).

mod agency_faults;
mod audit;
mod bad_input;
mod bench_smoke;
mod checker;
mod citizen;
mod cluster;
mod corpus;
mod crash;
mod faults;
mod harness;
mod journey;
mod nats_auth;
mod ops;
mod privacy;
mod scale_out;
mod spine;
mod tls;
