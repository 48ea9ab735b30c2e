//! Live updates: the ingest task announces which cases each committed batch
//! changed; watchers (gRPC `WatchCase`, the tracking page's server-sent
//! events) wait for their case to appear and then re-read it.
//!
//! Bounds:
//! - the announcement channel holds [`CASE_CHANGE_BATCHES_MAX`] batches; a
//!   watcher that falls further behind loses announcements, notices (tokio's
//!   `Lagged`) and simply re-reads its case, so nothing is missed, only
//!   coalesced;
//! - at most [`WATCHERS_MAX`] watches are open at once (the next one is
//!   refused with `UNAVAILABLE`);
//! - a watch ends after [`WATCH_DURATION_MAX`] (clients reconnect) and when
//!   the hub stops;
//! - every [`WATCH_RECHECK`] a watcher re-reads its case even without an
//!   announcement, because a status can change with time alone (a deadline
//!   passes and the case becomes overdue).
//!
//! Every announcement also advances a commit counter ([`CommitEpoch`]),
//! whether or not anyone watches and whether or not the batch touched a
//! case: lookups stamp what they cache from the store (service names) with
//! it and trust a cached value only while the counter has not moved.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mpp_core::TrackingNumber;
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit, Semaphore};

/// Batches of changed cases buffered for slow watchers.
pub const CASE_CHANGE_BATCHES_MAX: usize = 256;

/// Watches (gRPC streams and SSE connections together) open at once.
pub const WATCHERS_MAX: usize = 1024;

/// How long one watch lasts at most.
pub const WATCH_DURATION_MAX: Duration = Duration::from_secs(30 * 60);

/// How often a watcher re-reads its case without an announcement.
pub const WATCH_RECHECK: Duration = Duration::from_secs(60);

/// Case views buffered per watch before the watcher waits for its client.
pub const WATCH_BUFFER_VIEWS_MAX: usize = 4;

/// Counts the store commits announced so far (see the module docs). A
/// value read before a store read and found unchanged afterwards proves no
/// announced commit came in between.
#[derive(Debug, Default)]
pub struct CommitEpoch(AtomicU64);

impl CommitEpoch {
    /// The commits announced so far.
    pub fn current(&self) -> u64 {
        // Acquire pairs with the Release of `advance`: whoever sees the new
        // value also sees the commit it announces.
        self.0.load(Ordering::Acquire)
    }

    fn advance(&self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

/// The announcement side, shared by ingest and the servers.
#[derive(Clone)]
pub struct CaseChanges {
    tx: broadcast::Sender<Arc<[TrackingNumber]>>,
    epoch: Arc<CommitEpoch>,
    permits: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
}

impl std::fmt::Debug for CaseChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaseChanges")
            .field("watchers", &(WATCHERS_MAX - self.permits.available_permits()))
            .finish_non_exhaustive()
    }
}

/// Why a watch could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{WATCHERS_MAX} watches are open already")]
pub struct WatchersFull;

/// Why a watch ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEnd {
    /// The hub is stopping.
    Stopping,
    /// [`WATCH_DURATION_MAX`] has passed.
    Expired,
}

impl CaseChanges {
    /// Announcements that end every watch when `stop` turns true.
    pub fn new(stop: watch::Receiver<bool>) -> Self {
        Self::with_watchers_max(stop, WATCHERS_MAX)
    }

    /// As [`CaseChanges::new`] with another watcher bound (tests).
    pub fn with_watchers_max(stop: watch::Receiver<bool>, watchers_max: usize) -> Self {
        let (tx, _) = broadcast::channel(CASE_CHANGE_BATCHES_MAX);
        Self { tx, epoch: Arc::default(), permits: Arc::new(Semaphore::new(watchers_max)), stop }
    }

    /// Announces the cases one committed batch changed (ingest calls this
    /// after the batch is durable, for every batch, even one that touched
    /// no case). Never blocks.
    pub fn publish(&self, touched: &[TrackingNumber]) {
        self.epoch.advance();
        if !touched.is_empty() && self.tx.receiver_count() > 0 {
            // An error only means nobody listens right now.
            let _ = self.tx.send(Arc::from(touched));
        }
    }

    /// Starts watching `case`, if fewer than the bound are open.
    pub fn subscribe(&self, case: TrackingNumber) -> Result<Subscription, WatchersFull> {
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| WatchersFull)?;
        Ok(Subscription {
            rx: self.tx.subscribe(),
            case,
            stop: self.stop.clone(),
            deadline: tokio::time::Instant::now() + WATCH_DURATION_MAX,
            _permit: permit,
        })
    }

    /// The commit counter this announcer advances.
    pub fn epoch(&self) -> Arc<CommitEpoch> {
        self.epoch.clone()
    }

    /// Watches open now.
    pub fn watchers(&self) -> usize {
        WATCHERS_MAX.saturating_sub(self.permits.available_permits())
    }
}

/// One open watch; dropping it frees its place.
#[derive(Debug)]
pub struct Subscription {
    rx: broadcast::Receiver<Arc<[TrackingNumber]>>,
    case: TrackingNumber,
    stop: watch::Receiver<bool>,
    deadline: tokio::time::Instant,
    _permit: OwnedSemaphorePermit,
}

impl Subscription {
    /// The watched case.
    pub fn case(&self) -> TrackingNumber {
        self.case
    }

    /// Waits until the case may have changed (`Ok`), or the watch must end.
    pub async fn changed(&mut self) -> Result<(), WatchEnd> {
        if *self.stop.borrow() {
            return Err(WatchEnd::Stopping);
        }
        let recheck = tokio::time::sleep(WATCH_RECHECK);
        tokio::pin!(recheck);
        loop {
            tokio::select! {
                // Ending wins over a change that is due at the same moment.
                biased;
                r = self.stop.changed() => {
                    if r.is_err() || *self.stop.borrow() {
                        return Err(WatchEnd::Stopping);
                    }
                }
                _ = tokio::time::sleep_until(self.deadline) => return Err(WatchEnd::Expired),
                r = self.rx.recv() => match r {
                    Ok(batch) if batch.contains(&self.case) => return Ok(()),
                    Ok(_) => {}
                    // Announcements were lost: the case may have changed.
                    Err(broadcast::error::RecvError::Lagged(_)) => return Ok(()),
                    Err(broadcast::error::RecvError::Closed) => return Err(WatchEnd::Stopping),
                },
                _ = &mut recheck => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use mpp_core::RegionCode;

    use super::*;

    fn tn(serial: u64) -> TrackingNumber {
        TrackingNumber::new(RegionCode::parse("1771").unwrap(), serial).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_watcher_wakes_for_its_case_only_and_rechecks_with_time() {
        let (_stop_tx, stop) = watch::channel(false);
        let changes = CaseChanges::new(stop);
        let mut sub = changes.subscribe(tn(1)).unwrap();
        changes.publish(&[tn(2)]);
        changes.publish(&[tn(3), tn(1)]);
        let started = tokio::time::Instant::now();
        assert_eq!(sub.changed().await, Ok(()));
        assert!(started.elapsed() < WATCH_RECHECK, "woken by the announcement, not the recheck");
        // Nothing announced: the periodic recheck wakes it.
        assert_eq!(sub.changed().await, Ok(()));
        assert!(started.elapsed() >= WATCH_RECHECK);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lagging_watcher_rereads_and_watches_are_bounded_and_end() {
        let (stop_tx, stop) = watch::channel(false);
        let changes = CaseChanges::with_watchers_max(stop, 2);
        let mut slow = changes.subscribe(tn(1)).unwrap();
        let _second = changes.subscribe(tn(1)).unwrap();
        assert_eq!(changes.subscribe(tn(1)).unwrap_err(), WatchersFull);
        for _ in 0..(CASE_CHANGE_BATCHES_MAX + 10) {
            changes.publish(&[tn(9)]);
        }
        let started = tokio::time::Instant::now();
        assert_eq!(slow.changed().await, Ok(()), "lagged: re-read");
        assert!(started.elapsed() < WATCH_RECHECK);
        drop(slow);
        let mut third = changes.subscribe(tn(1)).unwrap();
        stop_tx.send(true).unwrap();
        assert_eq!(third.changed().await, Err(WatchEnd::Stopping));
    }

    #[test]
    fn every_announcement_advances_the_commit_epoch() {
        let (_stop_tx, stop) = watch::channel(false);
        let changes = CaseChanges::new(stop);
        let epoch = changes.epoch();
        assert_eq!(epoch.current(), 0);
        changes.publish(&[]);
        assert_eq!(
            epoch.current(),
            1,
            "a batch that touched no case still counts (a standard may have changed)"
        );
        changes.clone().publish(&[tn(1)]);
        assert_eq!(epoch.current(), 2, "clones share the counter");
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_expires() {
        let (_stop_tx, stop) = watch::channel(false);
        let changes = CaseChanges::new(stop);
        let mut sub = changes.subscribe(tn(1)).unwrap();
        let mut wakes = 0;
        let end = loop {
            match sub.changed().await {
                Ok(()) => wakes += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(end, WatchEnd::Expired);
        assert_eq!(wakes, (WATCH_DURATION_MAX.as_secs() / WATCH_RECHECK.as_secs()) as usize - 1);
    }
}
