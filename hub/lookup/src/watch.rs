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
//!   refused with `UNAVAILABLE`), at most [`WATCHERS_PER_CLIENT_MAX`] from
//!   one client address (IPv4 address or IPv6 /64) and at most
//!   [`WATCHERS_PER_CASE_MAX`] of one case (both refused with
//!   `TOO_MANY_WATCHES`), so one client cannot take every place;
//! - a watch ends after [`WATCH_DURATION_MAX`] (clients reconnect) and when
//!   the hub stops, and as soon as its client leaves a view untaken for
//!   [`WATCH_SEND_STALL_MS`] ([`deliver`]): a watcher that stops reading
//!   does not outlive its limits;
//! - every [`WATCH_RECHECK`] a watcher re-reads its case even without an
//!   announcement, because a status can change with time alone (a deadline
//!   passes and the case becomes overdue).
//!
//! Every announcement also advances a commit counter ([`CommitEpoch`]),
//! whether or not anyone watches and whether or not the batch touched a
//! case: lookups stamp what they cache from the store (service names) with
//! it and trust a cached value only while the counter has not moved.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mpp_core::{ReasonCode, TrackingNumber};
use mpp_edge::conn::AddrKey;
use tokio::sync::{broadcast, mpsc, watch};

use crate::error::ApiError;

/// Batches of changed cases buffered for slow watchers.
pub const CASE_CHANGE_BATCHES_MAX: usize = 256;

/// Watches (gRPC streams and SSE connections together) open at once.
pub const WATCHERS_MAX: usize = 1024;

/// Watches open at once from one client address (IPv4 address or IPv6
/// /64): a family following a few cases from one phone or home connection.
pub const WATCHERS_PER_CLIENT_MAX: usize = 8;

/// Watches open at once of one case.
pub const WATCHERS_PER_CASE_MAX: usize = 8;

/// Longest a watch waits for its client to take the next view, in
/// milliseconds, before it ends (the client stopped reading).
pub const WATCH_SEND_STALL_MS: u64 = 10_000;

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
    /// Ticks once per committed batch, for followers of the whole log (the
    /// verdict feed) that wait for anything new rather than for a case.
    commits: Arc<watch::Sender<u64>>,
    places: Arc<Places>,
    stop: watch::Receiver<bool>,
}

impl std::fmt::Debug for CaseChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaseChanges").field("watchers", &self.watchers()).finish_non_exhaustive()
    }
}

/// The open watches, counted in total, per client address and per case.
/// Each map holds only keys with an open watch, so both are bounded by the
/// total.
#[derive(Debug)]
struct Places {
    total_max: usize,
    counts: Mutex<PlaceCounts>,
}

#[derive(Debug, Default)]
struct PlaceCounts {
    total: usize,
    per_client: HashMap<AddrKey, usize>,
    per_case: HashMap<TrackingNumber, usize>,
}

impl Places {
    fn lock(&self) -> std::sync::MutexGuard<'_, PlaceCounts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(self: &Arc<Self>, client: IpAddr, case: TrackingNumber) -> Result<Place, WatchRefused> {
        let client = AddrKey::of(client);
        let mut c = self.lock();
        if c.total >= self.total_max {
            return Err(WatchRefused::Full);
        }
        if c.per_client.get(&client).copied().unwrap_or(0) >= WATCHERS_PER_CLIENT_MAX {
            return Err(WatchRefused::ClientFull);
        }
        if c.per_case.get(&case).copied().unwrap_or(0) >= WATCHERS_PER_CASE_MAX {
            return Err(WatchRefused::CaseFull);
        }
        c.total += 1;
        *c.per_client.entry(client).or_insert(0) += 1;
        *c.per_case.entry(case).or_insert(0) += 1;
        Ok(Place { places: self.clone(), client, case })
    }
}

/// One watch's place; dropping it gives the place back.
#[derive(Debug)]
struct Place {
    places: Arc<Places>,
    client: AddrKey,
    case: TrackingNumber,
}

impl Drop for Place {
    fn drop(&mut self) {
        /// Counts one fewer under `key`, forgetting keys that reach 0.
        fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
            if let Some(n) = map.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(key);
                }
            }
        }
        let mut c = self.places.lock();
        c.total -= 1;
        release(&mut c.per_client, &self.client);
        release(&mut c.per_case, &self.case);
    }
}

/// Why a watch could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WatchRefused {
    /// [`WATCHERS_MAX`] watches are open.
    #[error("{WATCHERS_MAX} watches are open already")]
    Full,
    /// [`WATCHERS_PER_CLIENT_MAX`] watches are open from this client address.
    #[error("{WATCHERS_PER_CLIENT_MAX} watches are open from this address already")]
    ClientFull,
    /// [`WATCHERS_PER_CASE_MAX`] watches of this case are open.
    #[error("{WATCHERS_PER_CASE_MAX} watches of this case are open already")]
    CaseFull,
}

impl From<WatchRefused> for ApiError {
    fn from(e: WatchRefused) -> Self {
        let code = match e {
            WatchRefused::Full => ReasonCode::Unavailable,
            WatchRefused::ClientFull | WatchRefused::CaseFull => ReasonCode::TooManyWatches,
        };
        ApiError::new(code, format!("{e}; retry later"))
    }
}

/// Hands `item` to a watch's client through `tx`: `false` when the client
/// is gone or left the previous views untaken for [`WATCH_SEND_STALL_MS`],
/// and the watch must end.
pub async fn deliver<T>(tx: &mpsc::Sender<T>, item: T) -> bool {
    let stall = Duration::from_millis(WATCH_SEND_STALL_MS);
    matches!(tokio::time::timeout(stall, tx.send(item)).await, Ok(Ok(())))
}

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
        let places = Arc::new(Places { total_max: watchers_max, counts: Mutex::default() });
        let commits = Arc::new(watch::Sender::new(0));
        Self { tx, epoch: Arc::default(), commits, places, stop }
    }

    /// Announces the cases one committed batch changed (ingest calls this
    /// after the batch is durable, for every batch, even one that touched
    /// no case). Never blocks.
    pub fn publish(&self, touched: &[TrackingNumber]) {
        self.epoch.advance();
        self.commits.send_modify(|n| *n = n.wrapping_add(1));
        if !touched.is_empty() && self.tx.receiver_count() > 0 {
            // An error only means nobody listens right now.
            let _ = self.tx.send(Arc::from(touched));
        }
    }

    /// Starts watching `case` for `client`, if the bounds (see the module
    /// docs) leave a place.
    pub fn subscribe(&self, case: TrackingNumber, client: IpAddr) -> Result<Subscription, WatchRefused> {
        let place = self.places.take(client, case)?;
        Ok(Subscription {
            rx: self.tx.subscribe(),
            case,
            stop: self.stop.clone(),
            deadline: tokio::time::Instant::now() + WATCH_DURATION_MAX,
            _place: place,
        })
    }

    /// A receiver that sees a change after every committed batch (the
    /// number counts batches since start; only its changes matter).
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.commits.subscribe()
    }

    /// Whether the hub is stopping (or stopped).
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.clone()
    }

    /// The commit counter this announcer advances.
    pub fn epoch(&self) -> Arc<CommitEpoch> {
        self.epoch.clone()
    }

    /// Watches open now.
    pub fn watchers(&self) -> usize {
        self.places.lock().total
    }
}

/// One open watch; dropping it frees its place.
#[derive(Debug)]
pub struct Subscription {
    rx: broadcast::Receiver<Arc<[TrackingNumber]>>,
    case: TrackingNumber,
    stop: watch::Receiver<bool>,
    deadline: tokio::time::Instant,
    _place: Place,
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

    fn client(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn one_client_and_one_case_hold_a_bounded_share_of_the_watches() {
        let (_stop_tx, stop) = watch::channel(false);
        let changes = CaseChanges::new(stop);
        let mine: Vec<_> = (0..WATCHERS_PER_CLIENT_MAX)
            .map(|i| changes.subscribe(tn(i as u64 + 1), client(1)).unwrap())
            .collect();
        assert_eq!(changes.subscribe(tn(100), client(1)).unwrap_err(), WatchRefused::ClientFull);
        // Other clients still watch.
        let theirs: Vec<_> = (0..WATCHERS_PER_CASE_MAX - 1)
            .map(|i| changes.subscribe(tn(1), client(10 + i as u8)).unwrap())
            .collect();
        // Case 1 has its first watcher (client 1) and the others: full.
        assert_eq!(changes.subscribe(tn(1), client(99)).unwrap_err(), WatchRefused::CaseFull);
        assert_eq!(changes.subscribe(tn(2), client(99)).map(|s| s.case()), Ok(tn(2)));
        assert_eq!(ApiError::from(WatchRefused::CaseFull).code, ReasonCode::TooManyWatches);
        assert_eq!(ApiError::from(WatchRefused::Full).code, ReasonCode::Unavailable);
        drop(mine);
        drop(theirs);
        assert_eq!(changes.watchers(), 0);
        assert_eq!(changes.subscribe(tn(100), client(1)).map(|s| s.case()), Ok(tn(100)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_whose_client_stops_reading_ends() {
        let (tx, mut rx) = mpsc::channel::<u32>(WATCH_BUFFER_VIEWS_MAX);
        for i in 0..WATCH_BUFFER_VIEWS_MAX as u32 {
            assert!(deliver(&tx, i).await, "room in the buffer");
        }
        let started = tokio::time::Instant::now();
        assert!(!deliver(&tx, 99).await, "the client took nothing");
        assert_eq!(started.elapsed(), Duration::from_millis(WATCH_SEND_STALL_MS));
        assert_eq!(rx.recv().await, Some(0));
        assert!(deliver(&tx, 100).await, "taken again");
        drop(rx);
        assert!(!deliver(&tx, 101).await, "gone");
    }

    #[tokio::test(start_paused = true)]
    async fn a_watcher_wakes_for_its_case_only_and_rechecks_with_time() {
        let (_stop_tx, stop) = watch::channel(false);
        let changes = CaseChanges::new(stop);
        let mut sub = changes.subscribe(tn(1), client(1)).unwrap();
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
        let mut slow = changes.subscribe(tn(1), client(1)).unwrap();
        let _second = changes.subscribe(tn(1), client(2)).unwrap();
        assert_eq!(changes.subscribe(tn(1), client(3)).unwrap_err(), WatchRefused::Full);
        for _ in 0..(CASE_CHANGE_BATCHES_MAX + 10) {
            changes.publish(&[tn(9)]);
        }
        let started = tokio::time::Instant::now();
        assert_eq!(slow.changed().await, Ok(()), "lagged: re-read");
        assert!(started.elapsed() < WATCH_RECHECK);
        drop(slow);
        let mut third = changes.subscribe(tn(1), client(1)).unwrap();
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
        let mut sub = changes.subscribe(tn(1), client(1)).unwrap();
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
