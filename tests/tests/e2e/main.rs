//! End-to-end tests of MPP Hub against real processes: a private nats-server
//! per test, `mpp-hub serve`, and the agency services. One file per concern:
//!
//! - `harness`: the harness itself (nats-server start, restart, kill -9).
//! - `spine`: 1,000 events through the Dukcapil service → NATS → hub → lookup.
//! - `bad_input`: every kind of bad message ends as a rejected log entry with
//!   its reason code, and ingest carries on.
//! - `crash`: `kill -9` the hub many times while events flow; nothing lost,
//!   nothing applied twice, chain intact, projection = rebuild.
//!
//! Build the binaries first: `cargo build --workspace --bins` (tests/run-all.sh).

mod bad_input;
mod crash;
mod harness;
mod spine;
