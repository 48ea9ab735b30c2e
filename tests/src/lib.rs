//! Harness for MPP Hub's end-to-end tests: real `nats-server`, `mpp-hub` and
//! agency service processes on free local ports, each with its own temporary
//! directory, stopped (SIGKILL) when dropped.
//!
//! Guarantees the tests rely on:
//! - Every process runs on ports this harness picked and on data under a
//!   temporary directory it created; the harness never connects to a NATS
//!   server it did not start (it checks the server name it configured).
//! - Nothing waits by sleeping: every wait polls a condition until a deadline
//!   ([`wait::wait_for`]) and fails with what it waited for and the last answer.
//! - Randomness comes from a printed seed ([`rng::Rng`]), so a failure replays.
//!
//! The generic parts (the nats-server launcher, free ports, the seeded
//! generator, waiting, child processes, the HTTP client) live in
//! `mpp-test-support`, shared with every crate's tests and the bench; they
//! are re-exported here under their old module paths (`mpp_tests::nats`,
//! `mpp_tests::ports`, ...) so the e2e tests did not have to change.
//!
//! Binaries are found next to the test executable (`target/<profile>/`);
//! build them first with `cargo build --workspace --bins` (tests/run-all.sh
//! does).
//!
//! Environment:
//! - `MPP_NATS_SERVER`: the nats-server binary (else `nats-server` on `PATH`);
//! - `MPP_TEST_SEED`: replay a seeded test; `MPP_CRASH_CYCLES`: kills in the
//!   crash test (default 20); `MPP_SPINE_CASES`: cases in the spine test;
//! - `MPP_KEEP_TEST_DIRS=1`: keep every temporary directory (data, logs);
//! - `MPP_TEST_HUB_LOG`, `MPP_TEST_AGENCY_LOG`: log filters of the children
//!   (default `info`; their logs are in their temporary directories).

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

pub mod bins;
pub mod browser;
pub mod check;
pub mod docs;
pub mod dukcapil;
pub mod envelope;
pub mod natsgen;
pub mod pin;
pub mod registry;
pub mod rss;
pub mod services;
pub mod store;
pub mod witness;

pub use mpp_test_support::{copy_dir, http, nats, ports, process, rng, temp_dir, wait};
pub use nats::NatsServer;
pub use process::ManagedProcess;
pub use services::{AgencyProcess, Bearer, HubProcess};
pub use wait::wait_for;

/// The JetStream stream every agency publishes onto.
pub const STREAM_NAME: &str = "MPP_EVENTS";

/// A day, in milliseconds (due dates and appointments in the tests' events).
pub const DAY_MS: i64 = 86_400_000;

/// How long a hub, agency service or front office the tests start may take
/// to become ready (or to listen), on a busy machine with a debug build.
pub const READY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);
