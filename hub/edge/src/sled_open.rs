//! Opening a sled database (0.34.7) the same way everywhere: the hub's
//! store and access log, and the sled stores of agency outboxes and front
//! offices of earlier versions, read once to migrate them to redb
//! (`mpp_agency_kit::durable`).

use std::time::{Duration, Instant};

/// How long [`open_waiting_for_lock`] keeps retrying while the directory's
/// lock is held, in milliseconds. sled's IO thread pool can hold the lock for
/// a moment after the last handle of a database is dropped (sled's own test
/// suite blocks on the lock for the same reason), so a reopen in the same
/// process, or a restart racing the old process's exit, waits instead of
/// failing.
pub const OPEN_LOCK_WAIT_MS_MAX: u64 = 5_000;

/// Interval between attempts while waiting for the lock, in milliseconds.
const OPEN_LOCK_POLL_MS: u64 = 10;

/// Opens the sled database of `config`, polling for up to
/// [`OPEN_LOCK_WAIT_MS_MAX`] while another handle still holds its lock.
pub fn open_waiting_for_lock(config: &sled::Config) -> Result<sled::Db, sled::Error> {
    let deadline = Instant::now() + Duration::from_millis(OPEN_LOCK_WAIT_MS_MAX);
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            // sled 0.34.7 reports a held lock only in the error text.
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && Instant::now() < deadline =>
            {
                tracing::debug!(error = %e, "Sled lock held, retrying");
                std::thread::sleep(Duration::from_millis(OPEN_LOCK_POLL_MS));
            }
            Err(e) => return Err(e),
        }
    }
}
