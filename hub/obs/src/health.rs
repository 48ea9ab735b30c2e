//! Liveness and readiness, shared between the ingest task and the servers,
//! and the hub's metrics registry ([`HubMetrics`]) that travels with them.
//!
//! Ready means "ingesting, no gap, disk ok": ingest runs (NATS reachable, no
//! stream gap, no store failure) and the data directory has at least
//! `--min-free-disk-mb` free (checked every few seconds, see
//! [`crate::metrics::check_disk`]). A halt (gap, store failure) and stopping
//! outrank a low disk; a low disk outranks the transient ingest reasons.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::metrics::HubMetrics;

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
        }
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
        self.lock().not_ready = None;
    }

    /// Marks the hub not ready, keeping a halt (gap, store failure) sticky
    /// against later transient reasons.
    pub fn set_not_ready(&self, why: NotReady) {
        let mut g = self.lock();
        let sticky = matches!(g.not_ready, Some(NotReady::Gap { .. }) | Some(NotReady::StoreFailed { .. }));
        if !sticky || matches!(why, NotReady::Stopping) {
            g.not_ready = Some(why);
        }
    }

    /// Records the outcome of a disk check: `Some(free, min)` when the free
    /// space is below the minimum, `None` when it is enough again.
    pub fn set_disk_low(&self, low: Option<(u64, u64)>) {
        let mut g = self.lock();
        g.disk_low = low.map(|(free_bytes, min_free_bytes)| NotReady::DiskLow { free_bytes, min_free_bytes });
        self.disk_low_flag.store(g.disk_low.is_some(), Ordering::Relaxed);
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
    pub fn readiness(&self) -> Readiness {
        let g = self.lock();
        let reason = match &g.not_ready {
            halt @ Some(NotReady::Gap { .. } | NotReady::StoreFailed { .. } | NotReady::Stopping) => {
                halt.clone()
            }
            other => g.disk_low.clone().or_else(|| other.clone()),
        };
        Readiness {
            ready: reason.is_none(),
            reason,
            last_seq: g.head.last_seq,
            last_stream_seq: g.head.last_stream_seq,
            head_hash: hex::encode(g.head.head_hash),
        }
    }
}
