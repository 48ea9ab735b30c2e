//! Liveness and readiness, shared between the ingest task and the servers,
//! and the hub's metrics registry ([`HubMetrics`]) that travels with them.
//!
//! Ready means "ingesting, no gap, disk ok": ingest runs (NATS reachable, no
//! stream gap, no store failure) and the data directory has at least
//! `--min-free-disk-mb` free (checked every few seconds, see
//! [`check_disk`]). A halt (gap, store failure) and stopping
//! outrank a low disk; a low disk outranks the transient ingest reasons.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;
use tracing::warn;

use crate::metrics::{HubMetrics, Scrape};

/// How often the free space of the data directory is checked.
pub const DISK_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Default of `--min-free-disk-mb`.
pub const MIN_FREE_DISK_MB_DEFAULT: u64 = 256;

/// Bytes in one "MB" of `--min-free-disk-mb` (a mebibyte).
pub const BYTES_PER_MB: u64 = 1024 * 1024;

/// Why the hub is not ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NotReady {
    /// Ingest has not started yet.
    Starting,
    /// NATS or the stream cannot be reached; ingest retries.
    NatsUnavailable {
        /// What failed.
        error: String,
    },
    /// The next stream message is not checkpoint + 1: ingest halted.
    Gap {
        /// The sequence the hub expected.
        expected: u64,
        /// The sequence it received.
        got: u64,
    },
    /// The store failed to commit; ingest halted without acking.
    StoreFailed {
        /// What failed.
        error: String,
    },
    /// The hub is shutting down.
    Stopping,
    /// The data directory has less free space than `--min-free-disk-mb`.
    DiskLow {
        /// Free bytes available to the hub at the last check.
        free_bytes: u64,
        /// The configured minimum, in bytes.
        min_free_bytes: u64,
    },
}

/// Shared health state.
#[derive(Debug)]
pub struct Health {
    inner: Mutex<Inner>,
    metrics: Arc<HubMetrics>,
    /// Mirrors `Inner::disk_low.is_some()` for the ingest loop, which reads
    /// it once per message and should not take the lock for it.
    disk_low_flag: AtomicBool,
    /// Whether [`Health::readiness`] says ready, for those who follow it
    /// (the gRPC health service): changed only when readiness changes.
    ready_tx: watch::Sender<bool>,
}

#[derive(Debug)]
struct Inner {
    /// Why ingest is not running, if it is not.
    not_ready: Option<NotReady>,
    /// A [`NotReady::DiskLow`] while the disk is low.
    disk_low: Option<NotReady>,
    head: HeadMark,
}

/// A snapshot for `/readyz` and `/api/v1/head`.
/// Where the log stands, as readiness reports it: the head of the store in
/// plain numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeadMark {
    /// Last log sequence (0: empty log).
    pub last_seq: u64,
    /// Last stream sequence committed (the checkpoint).
    pub last_stream_seq: u64,
    /// Hash of the last entry (zeros: empty log).
    pub head_hash: [u8; 32],
}

#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    /// Ingest runs with no gap.
    pub ready: bool,
    /// Why not, if not.
    pub reason: Option<NotReady>,
    /// Last applied log sequence.
    pub last_seq: u64,
    /// Last applied stream sequence (the checkpoint).
    pub last_stream_seq: u64,
    /// Hash of the last log entry, hex.
    pub head_hash: String,
}

impl Health {
    /// Starting, at the given head, with the process's metrics registry.
    pub fn new(head: HeadMark, metrics: HubMetrics) -> Self {
        Self {
            inner: Mutex::new(Inner { not_ready: Some(NotReady::Starting), disk_low: None, head }),
            metrics: Arc::new(metrics),
            disk_low_flag: AtomicBool::new(false),
            ready_tx: watch::channel(false).0,
        }
    }

    /// Follows readiness: the receiver sees `true` while [`Health::readiness`]
    /// says ready and `false` otherwise, and wakes on each change.
    pub fn subscribe_ready(&self) -> watch::Receiver<bool> {
        self.ready_tx.subscribe()
    }

    /// Publishes the readiness `g` now implies to the subscribers, if it changed.
    fn publish_ready(&self, g: &Inner) {
        let ready = Self::reason(g).is_none();
        self.ready_tx.send_if_modified(|r| std::mem::replace(r, ready) != ready);
    }

    /// The hub's metrics registry.
    pub fn metrics(&self) -> &Arc<HubMetrics> {
        &self.metrics
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-update of
        // two plain fields; the values are still usable.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks ingest as running.
    pub fn set_ready(&self) {
        let mut g = self.lock();
        g.not_ready = None;
        self.publish_ready(&g);
    }

    /// Marks the hub not ready, keeping a halt (gap, store failure) sticky
    /// against later transient reasons.
    pub fn set_not_ready(&self, why: NotReady) {
        let mut g = self.lock();
        let sticky = matches!(g.not_ready, Some(NotReady::Gap { .. }) | Some(NotReady::StoreFailed { .. }));
        if !sticky || matches!(why, NotReady::Stopping) {
            g.not_ready = Some(why);
        }
        self.publish_ready(&g);
    }

    /// Records the outcome of a disk check: `Some(free, min)` when the free
    /// space is below the minimum, `None` when it is enough again.
    pub fn set_disk_low(&self, low: Option<(u64, u64)>) {
        let mut g = self.lock();
        g.disk_low = low.map(|(free_bytes, min_free_bytes)| NotReady::DiskLow { free_bytes, min_free_bytes });
        self.disk_low_flag.store(g.disk_low.is_some(), Ordering::Relaxed);
        self.publish_ready(&g);
    }

    /// Whether the last disk check found less free space than the minimum:
    /// ingest pulls nothing new meanwhile, so sled never meets a full disk.
    pub fn disk_low(&self) -> bool {
        self.disk_low_flag.load(Ordering::Relaxed)
    }

    /// Records the head after a commit.
    pub fn set_head(&self, head: HeadMark) {
        self.lock().head = head;
    }

    /// The current snapshot.
    /// What a scrape of `/metrics` reads at this moment: readiness and head,
    /// with the figures the caller knows (open watches, dropped access
    /// events) and the wall clock.
    pub fn scrape(&self, watchers: Option<usize>, access_events_dropped: Option<u64>, now_ms: i64) -> Scrape {
        let r = self.readiness();
        Scrape {
            ready: r.ready,
            last_seq: r.last_seq,
            last_stream_seq: r.last_stream_seq,
            watchers,
            access_events_dropped,
            now_ms,
        }
    }

    /// Why `g` is not ready, if it is not: a halt or stopping outranks a
    /// low disk, which outranks the transient ingest reasons.
    fn reason(g: &Inner) -> Option<NotReady> {
        match &g.not_ready {
            halt @ Some(NotReady::Gap { .. } | NotReady::StoreFailed { .. } | NotReady::Stopping) => {
                halt.clone()
            }
            other => g.disk_low.clone().or_else(|| other.clone()),
        }
    }

    pub fn readiness(&self) -> Readiness {
        let g = self.lock();
        let reason = Self::reason(&g);
        Readiness {
            ready: reason.is_none(),
            reason,
            last_seq: g.head.last_seq,
            last_stream_seq: g.head.last_stream_seq,
            head_hash: hex::encode(g.head.head_hash),
        }
    }
}

/// Checks the free space of `dir`, records it, and marks the hub not ready
/// (`disk_low`) while it is below `min_free_bytes`. Returns the free bytes.
pub fn check_disk(health: &Health, dir: &Path, min_free_bytes: u64) -> std::io::Result<u64> {
    let free = fs2::available_space(dir)?;
    health.metrics().set_disk_free_bytes(free);
    health.set_disk_low((free < min_free_bytes).then_some((free, min_free_bytes)));
    Ok(free)
}

/// Checks the disk every [`DISK_CHECK_INTERVAL`] until `stop` turns true.
/// A failed check is logged and leaves readiness as it was.
pub fn spawn_disk_check(
    health: Arc<Health>,
    dir: PathBuf,
    min_free_bytes: u64,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(DISK_CHECK_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_low = false;
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let (h, d) = (health.clone(), dir.clone());
            // statvfs may block on a sick file system; keep it off the runtime.
            match tokio::task::spawn_blocking(move || check_disk(&h, &d, min_free_bytes)).await {
                Ok(Ok(free)) => {
                    let low = free < min_free_bytes;
                    if low && !was_low {
                        warn!(free_bytes = free, min_free_bytes, dir = %dir.display(), "Disk low: not ready");
                    } else if !low && was_low {
                        warn!(free_bytes = free, "Disk space recovered");
                    }
                    was_low = low;
                }
                Ok(Err(e)) => warn!(error = %e, dir = %dir.display(), "Checking free disk space failed"),
                Err(e) => warn!(error = %e, "Disk check task failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::parse;

    fn scrape(health: &Health, now_ms: i64) -> Scrape {
        health.scrape(Some(3), Some(7), now_ms)
    }

    #[test]
    fn the_ready_watch_follows_readiness_and_wakes_only_on_changes() {
        let health = Health::new(HeadMark::default(), HubMetrics::new(Vec::new()));
        let mut rx = health.subscribe_ready();
        assert!(!*rx.borrow_and_update(), "starting is not ready");
        health.set_ready();
        assert!(rx.has_changed().unwrap());
        assert!(*rx.borrow_and_update());
        health.set_ready();
        assert!(!rx.has_changed().unwrap(), "no change, no wake-up");
        health.set_disk_low(Some((1, 2)));
        assert!(!*rx.borrow_and_update(), "a low disk is not ready");
        health.set_disk_low(None);
        assert!(*rx.borrow_and_update());
        health.set_not_ready(NotReady::Gap { expected: 2, got: 3 });
        assert!(!*rx.borrow_and_update());
        health.set_ready();
        assert!(*rx.borrow_and_update(), "set_ready clears a halt, and the watch says so");
        assert_eq!(*rx.borrow(), health.readiness().ready);
    }

    #[test]
    fn readiness_turns_disk_low_below_the_minimum_and_back() {
        let dir = tempfile::tempdir().unwrap();
        let health = Health::new(HeadMark::default(), HubMetrics::new(Vec::new()));
        health.set_ready();
        let free = check_disk(&health, dir.path(), 0).unwrap();
        assert!(free > 0);
        assert!(health.readiness().ready);
        // A minimum above the real free space (rather than filling a disk).
        let huge = 1_000_000_000 * BYTES_PER_MB;
        check_disk(&health, dir.path(), huge).unwrap();
        let r = health.readiness();
        assert!(!r.ready);
        assert!(
            matches!(r.reason, Some(NotReady::DiskLow { min_free_bytes, .. }) if min_free_bytes == huge),
            "{r:?}"
        );
        assert_eq!(serde_json::to_value(&r.reason).unwrap()["kind"], "disk_low");
        let s = parse(&health.metrics().render(&scrape(&health, 0)));
        assert_eq!(s["mpp_hub_ready"], 0.0);
        assert!(s["mpp_hub_disk_free_bytes"] > 0.0);
        // Transient ingest trouble does not hide the disk; a halt outranks it.
        health.set_not_ready(NotReady::NatsUnavailable { error: "down".into() });
        assert!(matches!(health.readiness().reason, Some(NotReady::DiskLow { .. })));
        health.set_ready();
        check_disk(&health, dir.path(), 0).unwrap();
        assert!(health.readiness().ready, "recovers when space is back");
        check_disk(&health, dir.path(), huge).unwrap();
        health.set_not_ready(NotReady::Gap { expected: 2, got: 3 });
        assert!(matches!(health.readiness().reason, Some(NotReady::Gap { .. })));
        assert!(check_disk(&health, &dir.path().join("missing"), 0).is_err());
    }
}
