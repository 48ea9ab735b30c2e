//! Test support shared by the e2e harness (`mpp-tests`), every crate's own
//! tests and the benches, so that none of them keeps a copy:
//!
//! - [`nats`]: a real `nats-server` with JetStream per test, on a free port,
//!   its store in a temporary directory, stopped when dropped;
//! - [`ports`]: free local ports, never handed out twice by one process;
//! - [`rng`]: the seeded generator and the printed seed that replays a test;
//! - [`wait`]: waiting on a condition with a deadline, never on the clock
//!   alone;
//! - [`process`]: a child process with a log file, signalled by pid;
//! - [`http`]: a small HTTP/1.1 GET client;
//! - [`log`]: what a test binary logs, captured.
//!
//! Architecture invariant: this crate depends on no project crate but
//! `mpp-core` (for the one seeded generator), so any crate's tests can use it
//! without an import circle, and no production binary depends on it (only
//! `[dev-dependencies]`, the e2e harness and the bench do).
//!
//! Environment: `MPP_NATS_SERVER` (the nats-server binary, else
//! `nats-server` on `PATH`); `MPP_KEEP_TEST_DIRS=1` keeps every temporary
//! directory of [`temp_dir`] (data, logs) for a post-mortem.

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

#[cfg(feature = "fuzz")]
pub mod fuzz;
pub mod http;
pub mod log;
pub mod nats;
pub mod ports;
pub mod process;
pub mod rng;
pub mod wait;

use std::path::Path;

pub use nats::NatsServer;
pub use ports::{free_addr, free_port};
pub use process::ManagedProcess;
pub use rng::Rng;
pub use wait::{wait_for, wait_until};

/// A temporary directory named `<prefix>…` in the system's temporary
/// directory. With `MPP_KEEP_TEST_DIRS=1` it is kept after the test (for a
/// post-mortem) and its path is printed.
pub fn temp_dir(prefix: &str) -> anyhow::Result<tempfile::TempDir> {
    temp_dir_in(&std::env::temp_dir(), prefix)
}

/// Like [`temp_dir`], under `parent` (e.g. the bench's own directory).
pub fn temp_dir_in(parent: &Path, prefix: &str) -> anyhow::Result<tempfile::TempDir> {
    use anyhow::Context;
    let mut dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(parent)
        .with_context(|| format!("cannot create a temp dir in {}", parent.display()))?;
    if std::env::var("MPP_KEEP_TEST_DIRS").is_ok_and(|v| v == "1") {
        dir.disable_cleanup(true);
        eprintln!("[harness] keeping {}", dir.path().display());
    }
    Ok(dir)
}

/// Copies the directory `from` into `to` (created), recursively.
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
