//! The records of [`super::policy`] in a key-value store every replica
//! shares ([`CasKv`]: the NATS bucket in production), and the local cache
//! that spares a good lookup any round trip.
//!
//! # The two paths of a lookup
//!
//! - **Fast**: the cache is in step with the bucket (its watch has
//!   delivered every key), it holds no record of the tracking number, and
//!   no other lookup of it is in flight on this replica. The PIN is checked
//!   at once; a right PIN costs nothing more; a wrong one is then counted
//!   in the bucket with a compare-and-set write.
//! - **Reserved**: otherwise. Before the PIN is checked, one compare-and-set
//!   write checks the number's lock and counts the attempt as a wrong PIN
//!   (the check and the recording are one atomic step); a right PIN then
//!   gives the attempt back. If the bucket cannot be reached (or is full
//!   and the number has no key in it), the lookup is refused
//!   (`LOOKUP_BUDGET_UNAVAILABLE`): it fails closed.
//!
//! # The bound
//!
//! Only a fast-path attempt is checked without the bucket. A replica takes
//! the fast path for a number only while its cache shows no record of it
//! and nothing of it is in flight, and the wrong PIN it then counts puts a
//! record in its cache before the next attempt can be admitted. So beyond
//! the budgets, an attacker gets at most **one guess per tracking number
//! per replica** each time the number's record is absent from that
//! replica's cache: when the record has expired ([`GuardSettings::max_age`],
//! seven days after its last write), or in the moment between another
//! replica's first write and its arrival through the watch. Per day this is
//! at most `replicas` extra guesses on a number, on top of
//! `GuessBudgets::guesses_per_number_per_day_max` (20 by default).
//!
//! The per-network and global budgets are read from the cache and counted
//! after the PIN check: every replica can admit what its cache allows while
//! the others' failures are on their way, so a budget of `N` per window
//! holds to within the failures of one watch delay across replicas (at
//! most `N × replicas` in the worst case of every replica's cache lagging a
//! whole window).
//!
//! Memory is bounded: the cache holds at most as many records as the
//! bucket may ([`GuardSettings::keys_max`]); past that it stops being
//! complete and every lookup takes the reserved path. Numbers in flight or
//! whose wrong PIN could not be recorded are kept in a set of at most
//! [`NUMBERS_PENDING_MAX`]; when it is full, lookups take the reserved path.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use mpp_edge::cas::{CasKv, KvChange, KvError};
use tracing::{info, warn};

use super::keys::{GuardKey, GuardKeys, KeyKind, KeyMaker, GLOBAL_SHARDS};
use super::policy::{window_start, CounterRecord, FailedAttempts, GuessBudgets, NumberRecord, NumberRefusal};

/// Compare-and-set attempts of one update before it gives up (contention).
pub const CAS_ATTEMPTS_MAX: usize = 8;

/// Numbers with a fast-path lookup in flight, or a wrong PIN not yet
/// recorded, tracked at most (beyond, lookups take the reserved path).
pub const NUMBERS_PENDING_MAX: usize = 4096;

/// Longest wait before watching the bucket again after a failure, in ms.
pub const WATCH_RETRY_MS_MAX: u64 = 2_000;

/// Stripes of the per-key write locks: a replica writes one key at a time
/// (concurrent lookups of one case queue here instead of losing their
/// compare-and-set writes to each other), so writes contend only across
/// replicas, which [`CAS_ATTEMPTS_MAX`] covers.
pub const WRITE_LOCK_STRIPES: usize = 256;

/// How the shared guard is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardSettings {
    /// The budgets.
    pub budgets: GuessBudgets,
    /// Most keys the bucket (and so the cache) holds.
    pub keys_max: usize,
    /// How long a key lives after its last write (the bucket's max age).
    pub max_age: Duration,
}

/// Keys an in-memory guard (one replica, no NATS) holds.
pub const IN_MEMORY_KEYS_MAX: usize = 65_536;

impl GuardSettings {
    /// The settings of an in-memory guard with `budgets`: at most
    /// [`IN_MEMORY_KEYS_MAX`] keys, kept a week.
    pub fn in_memory(budgets: GuessBudgets) -> Self {
        Self { budgets, keys_max: IN_MEMORY_KEYS_MAX, max_age: Duration::from_secs(7 * 24 * 3600) }
    }
}

/// Why a lookup is refused by the budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardRefusal {
    /// The tracking number is locked, or needs a re-issued PIN.
    Number(NumberRefusal),
    /// A network of the client spent its budget; retry at `retry_at_ms`.
    Network {
        /// Which network level.
        kind: KeyKind,
        /// When the window ends (Unix ms).
        retry_at_ms: i64,
    },
    /// The shared store is needed and cannot answer (or is full).
    Unavailable,
}

/// Figures of the guard, for `/metrics` and the simulation.
#[derive(Debug, Default)]
pub struct GuardCounters {
    /// Lookups that took the fast path.
    pub fast: AtomicU64,
    /// Lookups that took the reserved path.
    pub reserved: AtomicU64,
    /// Wrong PINs counted in the store.
    pub failures_recorded: AtomicU64,
    /// Store operations that failed (unavailable, full, contended).
    pub store_errors: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
enum Record {
    Number(NumberRecord),
    Counter(CounterRecord),
}

#[derive(Debug)]
struct Cached {
    revision: u64,
    record: Record,
    /// When this replica learned of the write (Unix ms): the key expires
    /// in the bucket no later than `max_age` after it.
    seen_ms: i64,
}

#[derive(Debug, Default)]
struct Cache {
    map: HashMap<GuardKey, Cached>,
    /// False once a record could not be kept for want of room.
    complete: bool,
}

#[derive(Debug, Default)]
struct Pending {
    in_flight: HashSet<GuardKey>,
    dirty: HashSet<GuardKey>,
}

/// A lookup admitted by [`SharedGuard::admit`]; settle it with
/// [`SharedGuard::failed`] or [`SharedGuard::succeeded`]. Dropped unsettled
/// (the request went away), a fast-path ticket leaves its number marked
/// as possibly guessed, so its next lookup is reserved.
#[derive(Debug)]
pub struct Ticket {
    guard: Arc<SharedGuard>,
    number: GuardKey,
    reserved: bool,
    settled: bool,
}

impl Ticket {
    /// Whether the attempt was counted in advance (reserved path).
    pub fn reserved(&self) -> bool {
        self.reserved
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.reserved {
            return;
        }
        let mut p = lock(&self.guard.pending);
        p.in_flight.remove(&self.number);
        if !self.settled {
            p.dirty.insert(self.number);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Entries are replaced whole; a panic elsewhere leaves them usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The shared budgets of one hub replica. See the module docs.
pub struct SharedGuard {
    kv: Arc<dyn CasKv>,
    settings: GuardSettings,
    keys: KeyMaker,
    cache: Mutex<Cache>,
    synced: AtomicBool,
    pending: Mutex<Pending>,
    counters: GuardCounters,
    /// One writer per key per replica ([`WRITE_LOCK_STRIPES`]).
    writers: Box<[tokio::sync::Mutex<()>]>,
}

impl std::fmt::Debug for SharedGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedGuard")
            .field("settings", &self.settings)
            .field("synced", &self.synced)
            .finish_non_exhaustive()
    }
}

fn max_age_ms(s: &GuardSettings) -> i64 {
    i64::try_from(s.max_age.as_millis()).unwrap_or(i64::MAX)
}

impl SharedGuard {
    /// A guard over `kv`, keying its records with `secret` (derived from
    /// the PIN pepper, so every replica derives the same). Until
    /// [`SharedGuard::follow`] has read the whole bucket, every lookup takes
    /// the reserved path.
    pub fn new(kv: Arc<dyn CasKv>, secret: &[u8; 32], settings: GuardSettings) -> Arc<Self> {
        Arc::new(Self {
            kv,
            settings,
            keys: KeyMaker::new(secret),
            cache: Mutex::new(Cache { map: HashMap::new(), complete: true }),
            synced: AtomicBool::new(false),
            pending: Mutex::default(),
            counters: GuardCounters::default(),
            writers: (0..WRITE_LOCK_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        })
    }

    /// A guard of one process, in its own memory (tests, and a hub run
    /// without a shared store): nobody else writes its store, so its cache
    /// is in step from the start.
    pub fn in_memory(secret: &[u8; 32], settings: GuardSettings) -> Arc<Self> {
        let guard = Self::new(Arc::new(mpp_edge::cas::MemKv::new(settings.keys_max)), secret, settings);
        guard.synced.store(true, Ordering::Release);
        guard
    }

    /// The settings.
    pub fn settings(&self) -> &GuardSettings {
        &self.settings
    }

    /// The figures.
    pub fn counters(&self) -> &GuardCounters {
        &self.counters
    }

    /// Whether the cache is in step with the bucket.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// The keys of a lookup.
    pub fn keys(&self, tracking_digits: &[u8; 15], client: IpAddr) -> GuardKeys {
        self.keys.keys(tracking_digits, client)
    }

    fn limit(&self, kind: KeyKind) -> u32 {
        let b = &self.settings.budgets;
        match kind {
            KeyKind::Ipv4 => b.per_ipv4_max,
            KeyKind::Ipv6Slash64 => b.per_ipv6_64_max,
            KeyKind::Ipv6Slash56 => b.per_ipv6_56_max,
            KeyKind::Ipv6Slash48 => b.per_ipv6_48_max,
            KeyKind::Global => b.global_max,
            KeyKind::Number => u32::MAX,
        }
    }

    fn cached(&self, key: &GuardKey, now_ms: i64) -> Option<(u64, Record)> {
        let c = lock(&self.cache);
        let e = c.map.get(key)?;
        (now_ms < e.seen_ms.saturating_add(max_age_ms(&self.settings))).then_some((e.revision, e.record))
    }

    fn counter_at(&self, key: &GuardKey, now_ms: i64) -> u32 {
        match self.cached(key, now_ms) {
            Some((_, Record::Counter(c))) => c.count_at(now_ms, self.settings.budgets.window_ms),
            _ => 0,
        }
    }

    /// Failed lookups of all clients in the current window, as cached.
    pub fn global_failures(&self, now_ms: i64) -> u32 {
        (0..GLOBAL_SHARDS).map(|s| self.counter_at(&GuardKey::global(s), now_ms)).fold(0, u32::saturating_add)
    }

    /// Whether lookups need a proof of work now (the global budget is spent).
    pub fn proof_of_work_required(&self, now_ms: i64) -> bool {
        self.global_failures(now_ms) >= self.settings.budgets.global_max
    }

    /// Keeps `record` of `key` at `revision`, unless the cache already has
    /// a later one.
    fn remember(&self, key: GuardKey, revision: u64, record: Record, now_ms: i64) {
        let mut c = lock(&self.cache);
        if let Some(e) = c.map.get_mut(&key) {
            if e.revision < revision {
                *e = Cached { revision, record, seen_ms: now_ms };
            }
            return;
        }
        if c.map.len() >= self.settings.keys_max {
            let age = max_age_ms(&self.settings);
            c.map.retain(|_, e| now_ms < e.seen_ms.saturating_add(age));
        }
        if c.map.len() >= self.settings.keys_max {
            if c.complete {
                warn!(
                    keys_max = self.settings.keys_max,
                    "The lookup guard's cache is full: every lookup now takes the reserved path"
                );
            }
            c.complete = false;
            return;
        }
        c.map.insert(key, Cached { revision, record, seen_ms: now_ms });
    }

    fn forget(&self, key: &GuardKey, revision: u64) {
        let mut c = lock(&self.cache);
        if c.map.get(key).is_some_and(|e| e.revision < revision) {
            c.map.remove(key);
        }
    }

    /// Checks a lookup of `keys` (for the PIN `epoch`) against the cached
    /// budgets, then admits it on the fast path or, with one write to the
    /// store, on the reserved path. See the module docs.
    pub async fn admit(
        self: &Arc<Self>,
        keys: &GuardKeys,
        epoch: u64,
        now_ms: i64,
    ) -> Result<Ticket, GuardRefusal> {
        let b = self.settings.budgets;
        for net in &keys.nets {
            if self.counter_at(net, now_ms) >= self.limit(net.kind) {
                let end = window_start(now_ms, b.window_ms)
                    .saturating_add(i64::try_from(b.window_ms).unwrap_or(i64::MAX));
                return Err(GuardRefusal::Network { kind: net.kind, retry_at_ms: end });
            }
        }
        let cached_number = self.cached(&keys.number, now_ms);
        if let Some((_, Record::Number(r))) = cached_number {
            if let Some(refusal) = r.current(epoch, now_ms, &b).refusal(now_ms, &b) {
                return Err(GuardRefusal::Number(refusal));
            }
        }
        if cached_number.is_none() && self.synced() && lock(&self.cache).complete {
            let mut p = lock(&self.pending);
            let clean = !p.in_flight.contains(&keys.number) && !p.dirty.contains(&keys.number);
            if clean && p.in_flight.len() + p.dirty.len() < NUMBERS_PENDING_MAX {
                p.in_flight.insert(keys.number);
                self.counters.fast.fetch_add(1, Ordering::Relaxed);
                return Ok(Ticket {
                    guard: self.clone(),
                    number: keys.number,
                    reserved: false,
                    settled: false,
                });
            }
        }
        self.counters.reserved.fetch_add(1, Ordering::Relaxed);
        let reserved = self
            .update_number(keys.number, now_ms, |r| r.current(epoch, now_ms, &b).reserve(now_ms, &b))
            .await;
        match reserved {
            Ok(Ok(_)) => {
                lock(&self.pending).dirty.remove(&keys.number);
                Ok(Ticket { guard: self.clone(), number: keys.number, reserved: true, settled: false })
            }
            Ok(Err(refusal)) => Err(GuardRefusal::Number(refusal)),
            Err(e) => {
                self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, "The lookup guard's store could not reserve an attempt: refusing the lookup");
                Err(GuardRefusal::Unavailable)
            }
        }
    }

    /// A wrong PIN (or an unknown case) of an admitted lookup: counted for
    /// the number (unless reserved, which counted it already), the client's
    /// networks and the global counter. Store errors are logged and leave
    /// the number marked, so its next lookup is reserved.
    pub async fn failed(&self, mut ticket: Ticket, keys: &GuardKeys, epoch: u64, now_ms: i64) {
        let b = self.settings.budgets;
        let number = async {
            if ticket.reserved {
                return Ok(());
            }
            self.update_number(keys.number, now_ms, |r| {
                Ok::<_, NumberRefusal>(r.current(epoch, now_ms, &b).count_failure(now_ms, &b))
            })
            .await
            .map(|_| ())
        };
        let shard = GuardKey::global(random_shard());
        let counters = futures::future::join_all(
            keys.nets.iter().chain(std::iter::once(&shard)).map(|k| self.add_failure(*k, now_ms)),
        );
        let (number, counters) = tokio::join!(number, counters);
        self.counters.failures_recorded.fetch_add(1, Ordering::Relaxed);
        match number {
            Ok(()) => ticket.settled = true,
            Err(e) => {
                self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, "A wrong PIN could not be counted in the lookup guard's store");
            }
        }
        for r in counters {
            if let Err(e) = r {
                self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, "A failed lookup could not be counted for a network or globally");
            }
        }
    }

    /// A right PIN of an admitted lookup: the wrong PINs since the last
    /// success, as the store knows them (cleared now). On the fast path the
    /// number had no record, so there were none.
    pub async fn succeeded(
        &self,
        mut ticket: Ticket,
        keys: &GuardKeys,
        epoch: u64,
        now_ms: i64,
    ) -> FailedAttempts {
        ticket.settled = true;
        if !ticket.reserved {
            return FailedAttempts::default();
        }
        let b = self.settings.budgets;
        let mut shown = FailedAttempts::default();
        let r = self
            .update_number(keys.number, now_ms, |r| {
                let (after, s) = r.current(epoch, now_ms, &b).succeed(now_ms, true);
                shown = s;
                Ok::<_, NumberRefusal>(after)
            })
            .await;
        if let Err(e) = r {
            self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
            warn!(error = %e, "A successful lookup could not clear its number's failures");
        }
        shown
    }

    async fn add_failure(&self, key: GuardKey, now_ms: i64) -> Result<(), KvError> {
        let window = self.settings.budgets.window_ms;
        self.update(key, now_ms, |r| match r {
            Some(Record::Counter(c)) => Ok::<_, NumberRefusal>(Record::Counter(c.add(now_ms, window))),
            _ => Ok(Record::Counter(CounterRecord::default().add(now_ms, window))),
        })
        .await
        .map(|_| ())
    }

    async fn update_number<E>(
        &self,
        key: GuardKey,
        now_ms: i64,
        mut f: impl FnMut(NumberRecord) -> Result<NumberRecord, E>,
    ) -> Result<Result<NumberRecord, E>, KvError> {
        let r = self
            .update(key, now_ms, |r| {
                let current = match r {
                    Some(Record::Number(n)) => n,
                    _ => NumberRecord::default(),
                };
                f(current).map(Record::Number)
            })
            .await?;
        Ok(r.map(|rec| match rec {
            Record::Number(n) => n,
            Record::Counter(_) => NumberRecord::default(),
        }))
    }

    /// One atomic read-modify-write of `key`: up to [`CAS_ATTEMPTS_MAX`]
    /// compare-and-set tries, the first on the cached revision.
    async fn update<E>(
        &self,
        key: GuardKey,
        now_ms: i64,
        mut f: impl FnMut(Option<Record>) -> Result<Record, E>,
    ) -> Result<Result<Record, E>, KvError> {
        let kv_key = key.kv_key();
        let stripe = {
            use std::hash::{BuildHasher, BuildHasherDefault};
            let h = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(key);
            (h % WRITE_LOCK_STRIPES as u64) as usize
        };
        // Held across the round trips: the next local writer of this key
        // then starts from the revision this one wrote (remembered below).
        let _writer = self.writers[stripe].lock().await;
        let mut guess = self.cached(&key, now_ms).map(|(rev, rec)| (rev, Some(rec)));
        if guess.is_none() && self.synced() {
            guess = Some((0, None));
        }
        for _ in 0..CAS_ATTEMPTS_MAX {
            let (revision, current) = match guess.take() {
                Some(g) => g,
                None => {
                    let v = self.kv.get(&kv_key).await?;
                    (v.revision, v.value.as_deref().and_then(|b| decode(key.kind, b)))
                }
            };
            let next = match f(current) {
                Ok(next) => next,
                Err(refusal) => return Ok(Err(refusal)),
            };
            match self.kv.put_if(&kv_key, encode(&next), revision).await {
                Ok(new_revision) => {
                    self.remember(key, new_revision, next, now_ms);
                    return Ok(Ok(next));
                }
                Err(KvError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(KvError::Unavailable(format!(
            "{CAS_ATTEMPTS_MAX} compare-and-set attempts lost to other writers"
        )))
    }

    /// Follows the bucket until `stop`: its watch fills the cache, and the
    /// fast path opens once every key was read. A broken watch closes the
    /// fast path and is started again (waits doubling up to
    /// [`WATCH_RETRY_MS_MAX`]).
    pub async fn follow(
        self: Arc<Self>,
        clock: crate::lookup::Clock,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut wait_ms = 50u64;
        loop {
            if *stop.borrow() {
                return;
            }
            match self.kv.watch().await {
                Ok(mut changes) => {
                    *lock(&self.cache) = Cache { map: HashMap::new(), complete: true };
                    loop {
                        let change = tokio::select! {
                            c = changes.next() => c,
                            _ = stop.changed() => return,
                        };
                        match change {
                            Some(Ok(c)) => {
                                wait_ms = 50;
                                self.apply(c, clock());
                            }
                            Some(Err(e)) => {
                                warn!(error = %e, "The lookup guard's watch failed");
                                break;
                            }
                            None => break,
                        }
                    }
                }
                Err(e) => warn!(error = %e, "Cannot watch the lookup guard's store"),
            }
            if self.synced.swap(false, Ordering::AcqRel) {
                warn!("The lookup guard lost its watch: lookups take the reserved path until it is back");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
                _ = stop.changed() => return,
            }
            wait_ms = (wait_ms * 2).min(WATCH_RETRY_MS_MAX);
        }
    }

    fn apply(&self, change: KvChange, now_ms: i64) {
        match change {
            KvChange::Put { key, value, revision } => {
                let Some(k) = GuardKey::parse(&key) else { return };
                if let Some(record) = decode(k.kind, &value) {
                    self.remember(k, revision, record, now_ms);
                }
            }
            KvChange::Deleted { key, revision } => {
                if let Some(k) = GuardKey::parse(&key) {
                    self.forget(&k, revision);
                }
            }
            KvChange::Current => {
                if !self.synced.swap(true, Ordering::AcqRel) {
                    info!(
                        keys = lock(&self.cache).map.len(),
                        "The lookup guard's cache is in step with its store"
                    );
                }
            }
        }
    }
}

fn decode(kind: KeyKind, b: &[u8]) -> Option<Record> {
    match kind {
        KeyKind::Number => NumberRecord::decode(b).map(Record::Number),
        _ => CounterRecord::decode(b).map(Record::Counter),
    }
}

fn encode(r: &Record) -> Vec<u8> {
    match r {
        Record::Number(n) => n.encode(),
        Record::Counter(c) => c.encode(),
    }
}

fn random_shard() -> u8 {
    use std::hash::{BuildHasher, Hasher};
    // A fresh RandomState per call is seeded from the OS once per thread and
    // then varied; good enough to spread writes over shards.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    (h.finish() % u64::from(GLOBAL_SHARDS)) as u8
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use mpp_edge::cas::{KvFuture, KvValue, MemKv};

    use super::*;

    const T0: i64 = 1_750_000_000_000;
    const TN: [u8; 15] = *b"177100000123457";

    fn settings() -> GuardSettings {
        GuardSettings::in_memory(GuessBudgets { per_ipv4_max: 12, global_max: 30, ..GuessBudgets::DEFAULT })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Two replicas over one store, each following it.
    async fn replicas(kv: &MemKv) -> (Arc<SharedGuard>, Arc<SharedGuard>, tokio::sync::watch::Sender<bool>) {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let clock: crate::lookup::Clock = Arc::new(|| T0);
        let mut out = Vec::new();
        for _ in 0..2 {
            let g = SharedGuard::new(Arc::new(kv.clone()), &[5; 32], settings());
            tokio::spawn(g.clone().follow(clock.clone(), rx.clone()));
            out.push(g);
        }
        for g in &out {
            let synced = || async { Ok(g.synced().then_some(())) };
            mpp_test_support::wait::wait_for("the guard follows its store", Duration::from_secs(5), synced)
                .await
                .unwrap();
        }
        let b = out.pop().unwrap();
        (out.pop().unwrap(), b, stop)
    }

    async fn guess(
        g: &Arc<SharedGuard>,
        client: &str,
        right: bool,
        now: i64,
    ) -> Result<(bool, FailedAttempts), GuardRefusal> {
        let keys = g.keys(&TN, ip(client));
        let ticket = g.admit(&keys, 1, now).await?;
        let reserved = ticket.reserved();
        if right {
            Ok((reserved, g.succeeded(ticket, &keys, 1, now).await))
        } else {
            g.failed(ticket, &keys, 1, now).await;
            Ok((reserved, FailedAttempts::default()))
        }
    }

    #[tokio::test]
    async fn a_lock_made_on_one_replica_holds_on_the_other_and_only_a_first_guess_is_unreserved() {
        let kv = MemKv::new(1000);
        let (a, b, _stop) = replicas(&kv).await;
        // The first guess of a clean number takes the fast path; every
        // later one is reserved (checked and counted in one write).
        assert!(!guess(&a, "10.0.0.1", false, T0).await.unwrap().0);
        for i in 1..5 {
            let g = if i % 2 == 0 { &a } else { &b };
            wait_for_record(g, T0).await;
            assert!(guess(g, "10.0.0.1", false, T0 + i).await.unwrap().0, "guess {i}");
        }
        // Five wrong PINs: locked on both replicas, right PIN or not.
        for g in [&a, &b] {
            match guess(g, "10.0.0.2", true, T0 + 10).await {
                Err(GuardRefusal::Number(NumberRefusal::Locked { until_ms })) => {
                    assert_eq!(until_ms, T0 + 4 + 15 * 60_000)
                }
                other => panic!("{other:?}"),
            }
        }
        // After the lock, the right PIN shows the five wrong ones and clears them.
        let after = T0 + 4 + 15 * 60_000;
        let (reserved, shown) = guess(&b, "10.0.0.2", true, after).await.unwrap();
        assert!(reserved);
        assert_eq!(shown, FailedAttempts { count: 5, last_at_ms: Some(T0 + 4) });
        assert_eq!(guess(&a, "10.0.0.2", true, after + 1).await.unwrap().1.count, 0);
        assert_eq!(a.counters().fast.load(Ordering::Relaxed), 1);
    }

    async fn wait_for_record(g: &Arc<SharedGuard>, now: i64) {
        let keys = g.keys(&TN, ip("10.0.0.1"));
        let arrived = || async { Ok(g.cached(&keys.number, now).map(|_| ())) };
        mpp_test_support::wait::wait_for("the record reaches the replica", Duration::from_secs(5), arrived)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn network_budgets_refuse_and_the_global_one_asks_for_work() {
        let g = SharedGuard::in_memory(&[5; 32], settings());
        let tns: Vec<[u8; 15]> = (0..40u64)
            .map(|i| {
                let t = mpp_core::TrackingNumber::new(mpp_core::RegionCode::parse("1771").unwrap(), 1000 + i)
                    .unwrap();
                t.digits()
            })
            .collect();
        let mut admitted = 0;
        for t in &tns[..20] {
            let keys = g.keys(t, ip("10.0.0.1"));
            match g.admit(&keys, 0, T0).await {
                Ok(ticket) => {
                    admitted += 1;
                    g.failed(ticket, &keys, 0, T0).await;
                }
                Err(GuardRefusal::Network { kind, retry_at_ms }) => {
                    assert_eq!(kind, KeyKind::Ipv4);
                    assert!(retry_at_ms > T0);
                }
                Err(other) => panic!("{other:?}"),
            }
        }
        assert_eq!(admitted, 12, "the IPv4 address's budget");
        assert!(!g.proof_of_work_required(T0));
        // Other addresses spend the global budget of 30.
        for (i, t) in tns[20..].iter().enumerate() {
            let keys = g.keys(t, ip(&format!("10.0.1.{i}")));
            let ticket = g.admit(&keys, 0, T0).await.unwrap();
            g.failed(ticket, &keys, 0, T0).await;
        }
        assert_eq!(g.global_failures(T0), 32);
        assert!(g.proof_of_work_required(T0));
        // The next window starts afresh.
        let next = T0 + 3_600_000;
        assert!(!g.proof_of_work_required(next));
    }

    /// A store whose every operation yields first, so that concurrent
    /// writers of one key interleave between their read and their write.
    #[derive(Debug)]
    struct Yielding(MemKv);

    impl CasKv for Yielding {
        fn get<'a>(&'a self, key: &'a str) -> KvFuture<'a, KvValue> {
            Box::pin(async move {
                tokio::task::yield_now().await;
                self.0.get(key).await
            })
        }
        fn put_if<'a>(&'a self, key: &'a str, value: Vec<u8>, expected: u64) -> KvFuture<'a, u64> {
            Box::pin(async move {
                tokio::task::yield_now().await;
                self.0.put_if(key, value, expected).await
            })
        }
        fn watch(&self) -> KvFuture<'_, futures::stream::BoxStream<'static, Result<KvChange, KvError>>> {
            self.0.watch()
        }
    }

    #[tokio::test]
    async fn concurrent_lookups_of_one_case_on_one_replica_never_fail_on_the_store() {
        // 64 right-PIN lookups of one number at once (a watch attack with a
        // known PIN, or a family looking together): each reserved attempt
        // is a read-modify-write of the same key. With one local writer per
        // key none loses its compare-and-set writes to the others (which
        // would refuse it as if the store were down); the guard refuses
        // only what its budgets refuse (attempts in flight count as wrong
        // PINs until they are given back).
        let g = SharedGuard::new(Arc::new(Yielding(MemKv::new(1000))), &[5; 32], settings());
        let lookups: Vec<_> = (0..64)
            .map(|i| {
                let g = g.clone();
                tokio::spawn(async move { guess(&g, &format!("10.0.2.{i}"), true, T0).await })
            })
            .collect();
        let mut admitted = 0;
        for l in lookups {
            match l.await.unwrap() {
                Ok(_) => admitted += 1,
                Err(GuardRefusal::Number(_)) => {}
                Err(other) => panic!("a right PIN was refused: {other:?}"),
            }
        }
        assert!(admitted >= 4, "only {admitted} of 64 admitted");
        assert_eq!(g.counters().store_errors.load(Ordering::Relaxed), 0);
    }

    #[derive(Debug)]
    struct Broken;

    impl CasKv for Broken {
        fn get<'a>(&'a self, _key: &'a str) -> KvFuture<'a, KvValue> {
            Box::pin(async { Err(KvError::Unavailable("down".into())) })
        }
        fn put_if<'a>(&'a self, _key: &'a str, _value: Vec<u8>, _expected: u64) -> KvFuture<'a, u64> {
            Box::pin(async { Err(KvError::Unavailable("down".into())) })
        }
        fn watch(&self) -> KvFuture<'_, futures::stream::BoxStream<'static, Result<KvChange, KvError>>> {
            Box::pin(async { Err(KvError::Unavailable("down".into())) })
        }
    }

    #[tokio::test]
    async fn without_its_store_the_guard_fails_closed() {
        // Never synced: every lookup needs the store, which is down.
        let g = SharedGuard::new(Arc::new(Broken), &[5; 32], settings());
        assert_eq!(guess(&g, "10.0.0.1", true, T0).await.unwrap_err(), GuardRefusal::Unavailable);
        assert_eq!(g.counters().store_errors.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_full_store_refuses_new_numbers_once_their_first_guess_is_spent() {
        let g = SharedGuard::new(Arc::new(MemKv::new(0)), &[5; 32], settings());
        g.synced.store(true, Ordering::Release);
        // The fast path admits the first guess; its failure cannot be
        // recorded, so the number is marked and its next lookup refused.
        assert!(!guess(&g, "10.0.0.1", false, T0).await.unwrap().0);
        assert_eq!(guess(&g, "10.0.0.1", true, T0).await.unwrap_err(), GuardRefusal::Unavailable);
    }
}
