//! The bench's nats-server: the launcher of `mpp-test-support` (a free
//! 127.0.0.1 port, named and checked, stopped when dropped), with its
//! directory under the bench's own temporary directory (kept with
//! `MPP_BENCH_KEEP=1`). Every figure of the report is measured with
//! [`SyncInterval::Always`] (JetStream fsyncs before it acknowledges).

use std::path::Path;

use anyhow::{Context, Result};
pub(crate) use mpp_test_support::nats::{nats_server_exe, NatsOptions, SyncInterval};
pub(crate) use mpp_test_support::NatsServer;

/// Starts a server in `sync` mode under `parent` and waits until it accepts
/// clients with JetStream enabled.
pub(crate) async fn start(parent: &Path, sync: SyncInterval) -> Result<NatsServer> {
    let dir = crate::temp_dir(parent, "nats-").context("nats temp dir")?;
    NatsServer::start_with(NatsOptions { sync, dir: Some(dir), ..NatsOptions::default() }).await
}
