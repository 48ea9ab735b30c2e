//! The records of [`super::policy`] in a key-value store every replica
//! shares ([`CasKv`]: the NATS bucket in production), and the local mirror
//! of it that spares a right PIN any round trip.
//!
//! # A lookup
//!
//! The PIN is checked first; the guard then settles the attempt:
//!
//! - **Locked, as mirrored.** When this replica's mirror shows the number
//!   locked (or at its daily cap), the lookup is refused at once, right PIN
//!   or wrong: the same answer, with no round trip on either path, so not
//!   even its timing tells the two apart. Nothing is written.
//! - **A wrong PIN** (or an unknown case) is checked and counted in one
//!   atomic step: a compare-and-set write of the number's record in the
//!   store (retried on conflict, [`CAS_ATTEMPTS_MAX`]) that refuses, and
//!   counts nothing, when the stored record is locked. Then the client's
//!   networks and the global counter are counted, off the answer path
//!   (below). The guard is correct over a store that batches concurrent
//!   writes ([`mpp_edge::cas_batch`]: each write keeps its own
//!   compare-and-set), but the hub does not batch them: an atomic batch's
//!   commit costs more than a wrong PIN may wait (see that module).
//! - **A right PIN** needs to know only whether the number is locked. When
//!   the mirror is in step with the store and shows no wrong PINs for the
//!   number, it is admitted with no round trip and nothing is written, so
//!   any number of concurrent right-PIN lookups cost nothing and never
//!   count as failures. When the mirror shows wrong PINs (to clear and show
//!   the citizen), or is not in step, one compare-and-set write checks the
//!   stored record's lock and clears them.
//!
//! If the store cannot be reached (or is full and the number has no key in
//! it) when a lookup needs it, the lookup is refused
//! (`LOOKUP_BUDGET_UNAVAILABLE`): it fails closed.
//!
//! # The bounds
//!
//! Every wrong PIN the hub answers `CASE_NOT_FOUND` was counted in the
//! store by the write that admitted it, so the per-number budgets hold
//! exactly, across every replica. Two things are looser:
//!
//! - **A lock reaches the other replicas' mirrors through the bucket's
//!   watch**, within its delivery latency (a JetStream push of a few
//!   hundred bytes: on one network about a millisecond; the e2e test
//!   `guessing` prints what it measured). Until then a right PIN on
//!   another replica that has seen no wrong PIN of the number is admitted.
//!   This never admits a guess: wrong PINs always go to the store.
//! - **While the store cannot record a wrong PIN** (unreachable before
//!   the watch notices, or full), a wrong PIN is answered
//!   `LOOKUP_BUDGET_UNAVAILABLE` while a right one on a clean number may
//!   succeed, which tells them apart: one uncounted guess per tracking
//!   number per replica. The number is then marked, and a right PIN of it
//!   opens only once a write of its record succeeds. At most
//!   [`NUMBERS_MARKED_MAX`] numbers are marked; once that many are, every
//!   right PIN needs a successful write (the guard fails closed).
//!
//! # The budgets of networks and of all clients
//!
//! These are only budgets: no lock of a number depends on them, so a wrong
//! PIN does not wait for them. It adds one to its keys (the client's
//! networks and this replica's shard of the global counter) in this
//! replica's pending deltas ([`super::deltas`]), and one task
//! ([`SharedGuard::flush_counters`]) adds each key's summed delta to the
//! store every [`GUARD_COUNTER_FLUSH_MS`], in one compare-and-set write
//! per key, so clients sharing a network no longer queue behind each
//! other's writes. A delta stays pending until the store took it: a failed
//! flush is retried with the next one, never counted twice by a failure
//! this replica saw (an answer lost after the write landed counts it twice,
//! which only tightens the budget). Reads add the replica's pending deltas
//! to the mirrored counts, so it sees its own failures at once; a flush
//! puts the record it wrote in the mirror and settles the delta in one step
//! under the mirror's lock, and holds back what the watch brings of that
//! key while its write is out (one round trip), so a read never counts a
//! failure both pending and mirrored. When
//! [`COUNTER_DELTA_KEYS_MAX`] keys are pending, a failure of a further key
//! is counted in the store before the answer, as when no flusher runs (an
//! in-memory guard, or after [`SharedGuard::flush_counters`] stopped).
//!
//! **What a crash loses:** the failures pending on the crashed replica, at
//! most one flush interval's ([`GUARD_COUNTER_FLUSH_MS`]) worth of its
//! network and global counts (more only while the store could not take
//! them). Never a number's record: its wrong PINs are written before the
//! answer.
//!
//! The budgets are read from the mirror: every replica can admit what its
//! mirror allows while the others' failures are on their way, so a budget
//! of `N` per window holds to within the failures of one flush interval
//! plus one watch delay across replicas (at most `N × replicas` in the
//! worst case of every replica's mirror lagging a whole window).
//!
//! Memory is bounded: the mirror holds at most as many records as the
//! bucket may ([`GuardSettings::keys_max`]); past that it stops being
//! complete and every right PIN needs the store.
//!
//! # The bucket in memory
//!
//! The hub keeps the bucket in the NATS servers' memory by default
//! (`--guard-bucket-storage memory`): on a server with `sync_interval:
//! always` (which the events stream needs) a bucket on file makes every
//! wrong PIN, and the next right PIN of its number, wait for a disk sync,
//! and those syncs bound the lookup benchmark (BENCHMARKS.md). In a NATS
//! cluster a memory bucket with `--guard-replicas 3` is replicated like a
//! file one (raft), so a lock survives a hub's restart, the loss of a hub
//! replica and of one NATS node. Only a restart of every NATS server
//! holding it (or of a single server) loses it; the watch then creates it
//! again, empty, and until it has, lookups that need the store fail closed.
//!
//! What one such restart gives a guesser is that of every key afresh: for
//! each number at most one more daily cap (`--pin-failures-per-day-max`, 20
//! by default, of which at most `--pin-failures-max` before a lock), and for
//! each network and for all clients one more window's budget. With a
//! nine-character PIN (`STRONG_PIN_SPACE` ≈ 2.6·10¹³, 44.6 bits) 20 guesses
//! find it with odds 20 / 2.6·10¹³ ≈ 7.6·10⁻¹³ per number per restart
//! (7.6·10⁻⁷ cases at 1M cases); a six-digit PIN of an older case, not yet
//! re-issued, with 2·10⁻⁵, the same as one more day of guessing. A guesser
//! cannot cause a restart: the hub's NATS user may not delete, purge or
//! update the stream, and the bucket cannot grow NATS's memory past its
//! bounds: at most `keys_max × (RECORD_BYTES_MAX + KV_MESSAGE_OVERHEAD_BYTES)`
//! bytes per server holding a copy (262,144 × 320 B = 80 MiB by default),
//! discarding new keys when full (then the guard fails closed, as on file).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use mpp_edge::cas::{CasKv, KvChange, KvError};
use tracing::{info, warn};

use super::deltas::{Deferred, Delta, Deltas};
pub use super::deltas::{COUNTER_DELTA_KEYS_MAX, GUARD_COUNTER_FLUSH_MS};
use super::keys::{GuardKey, GuardKeys, KeyKind, KeyMaker, GLOBAL_SHARDS};
use super::policy::{window_start, CounterRecord, FailedAttempts, GuessBudgets, NumberRecord, NumberRefusal};

/// Compare-and-set attempts of one update before it gives up (contention).
pub const CAS_ATTEMPTS_MAX: usize = 8;

/// Numbers marked because a wrong PIN of theirs could not be recorded,
/// tracked at most (beyond, every right PIN needs the store).
pub const NUMBERS_MARKED_MAX: usize = 4096;

/// Longest wait before watching the bucket again after a failure, in ms.
pub const WATCH_RETRY_MS_MAX: u64 = 2_000;

/// Stripes of the per-key write locks: a replica writes one key at a time
/// (concurrent lookups of one case queue here instead of losing their
/// compare-and-set writes to each other), so writes contend only across
/// replicas, which [`CAS_ATTEMPTS_MAX`] covers.
pub const WRITE_LOCK_STRIPES: usize = 256;

/// Counter writes one flush has in flight at most.
pub const FLUSH_WRITES_CONCURRENT_MAX: usize = 32;

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

/// Figures of the guard, for tests and the simulation.
#[derive(Debug, Default)]
pub struct GuardCounters {
    /// Lookups settled from the mirror alone, with no round trip.
    pub local: AtomicU64,
    /// Lookups settled by a write (or read) of the store.
    pub stored: AtomicU64,
    /// Wrong PINs counted in the store.
    pub failures_recorded: AtomicU64,
    /// Network and global counts written before the answer, because no
    /// flusher runs or [`COUNTER_DELTA_KEYS_MAX`] keys were pending.
    pub counted_now: AtomicU64,
    /// Counter writes of flushes that the store took.
    pub deltas_flushed: AtomicU64,
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
    /// Counters whose flush write is out: what the store says of them
    /// meanwhile (the latest, if anything) waits here, so that no read
    /// sees the write in the mirror while its delta is still pending. The
    /// flush puts it in the mirror and settles the delta in one step
    /// ([`SharedGuard::written_flush`]).
    held: HashMap<GuardKey, Option<Cached>>,
}

/// What a right PIN needs of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreNeed {
    /// Nothing: the mirror is in step and complete.
    Nothing,
    /// A read: the mirror may miss a lock.
    Read,
    /// A write that succeeds: a wrong PIN of the number could not be
    /// recorded (or too many numbers are marked to tell).
    Write,
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
    /// Numbers whose wrong PIN could not be recorded ([`NUMBERS_MARKED_MAX`]).
    marked: Mutex<HashSet<GuardKey>>,
    counters: GuardCounters,
    /// One writer per key per replica ([`WRITE_LOCK_STRIPES`]).
    writers: Box<[tokio::sync::Mutex<()>]>,
    /// Network and global counts not yet in the store.
    deltas: Mutex<Deltas>,
    /// This replica's shard of the global counter, so that replicas rarely
    /// write the same one.
    global_shard: u8,
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
    /// [`SharedGuard::follow`] has read the whole bucket, every right PIN
    /// needs the store.
    pub fn new(kv: Arc<dyn CasKv>, secret: &[u8; 32], settings: GuardSettings) -> Arc<Self> {
        Arc::new(Self {
            kv,
            settings,
            keys: KeyMaker::new(secret),
            cache: Mutex::new(Cache { map: HashMap::new(), complete: true, held: HashMap::new() }),
            synced: AtomicBool::new(false),
            marked: Mutex::default(),
            counters: GuardCounters::default(),
            writers: (0..WRITE_LOCK_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            deltas: Mutex::new(Deltas::new(COUNTER_DELTA_KEYS_MAX)),
            global_shard: random_shard(),
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

    /// The count of `key` in the window of `now_ms`, as mirrored, without
    /// this replica's pending delta.
    fn mirrored_count(&self, c: &Cache, key: &GuardKey, now_ms: i64) -> u32 {
        match c.map.get(key) {
            Some(e) if now_ms < e.seen_ms.saturating_add(max_age_ms(&self.settings)) => match e.record {
                Record::Counter(r) => r.count_at(now_ms, self.settings.budgets.window_ms),
                Record::Number(_) => 0,
            },
            _ => 0,
        }
    }

    fn window_of(&self, now_ms: i64) -> i64 {
        window_start(now_ms, self.settings.budgets.window_ms)
    }

    /// The count of `key` in the window of `now_ms`: as mirrored, plus what
    /// this replica has pending.
    fn counter_at(&self, key: &GuardKey, now_ms: i64) -> u32 {
        // Both under the cache's lock, which a flush holds while it moves a
        // delta from pending into the mirror: never counted twice.
        let c = lock(&self.cache);
        let mirrored = self.mirrored_count(&c, key, now_ms);
        mirrored.saturating_add(lock(&self.deltas).pending(key, self.window_of(now_ms)))
    }

    /// Failed lookups of all clients in the current window: every shard as
    /// mirrored, plus this replica's pending ones.
    pub fn global_failures(&self, now_ms: i64) -> u32 {
        let c = lock(&self.cache);
        let mirrored = (0..GLOBAL_SHARDS)
            .map(|s| self.mirrored_count(&c, &GuardKey::global(s), now_ms))
            .fold(0, u32::saturating_add);
        let own = GuardKey::global(self.global_shard);
        mirrored.saturating_add(lock(&self.deltas).pending(&own, self.window_of(now_ms)))
    }

    /// Whether lookups need a proof of work now (the global budget is spent).
    pub fn proof_of_work_required(&self, now_ms: i64) -> bool {
        self.global_failures(now_ms) >= self.settings.budgets.global_max
    }

    /// Keeps `record` of `key` at `revision`, unless the cache already has
    /// a later one.
    fn remember(&self, key: GuardKey, revision: u64, record: Record, now_ms: i64) {
        let mut c = lock(&self.cache);
        if let Some(slot) = c.held.get_mut(&key) {
            // A flush write of the key is out: kept until it is settled.
            if slot.as_ref().is_none_or(|h| h.revision < revision) {
                *slot = Some(Cached { revision, record, seen_ms: now_ms });
            }
            return;
        }
        self.remember_locked(&mut c, key, revision, record, now_ms);
    }

    fn remember_locked(&self, c: &mut Cache, key: GuardKey, revision: u64, record: Record, now_ms: i64) {
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
                    "The lookup guard's mirror is full: every right PIN now needs its store"
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

    /// The budgets of the client's networks, as mirrored: checked before
    /// the PIN (they do not depend on it).
    pub fn check_networks(&self, keys: &GuardKeys, now_ms: i64) -> Result<(), GuardRefusal> {
        let b = &self.settings.budgets;
        for net in &keys.nets {
            if self.counter_at(net, now_ms) >= self.limit(net.kind) {
                let end = window_start(now_ms, b.window_ms)
                    .saturating_add(i64::try_from(b.window_ms).unwrap_or(i64::MAX));
                return Err(GuardRefusal::Network { kind: net.kind, retry_at_ms: end });
            }
        }
        Ok(())
    }

    /// The number's record for the PIN `epoch`, as mirrored (empty when
    /// the mirror has none).
    fn mirrored_number(&self, keys: &GuardKeys, epoch: u64, now_ms: i64) -> Option<NumberRecord> {
        match self.cached(&keys.number, now_ms) {
            Some((_, Record::Number(r))) => Some(r.current(epoch, now_ms, &self.settings.budgets)),
            _ => None,
        }
    }

    /// What a right PIN of `number` needs of the store.
    fn store_need(&self, number: &GuardKey) -> StoreNeed {
        {
            let marked = lock(&self.marked);
            if marked.len() >= NUMBERS_MARKED_MAX || marked.contains(number) {
                return StoreNeed::Write;
            }
        }
        if self.synced() && lock(&self.cache).complete {
            StoreNeed::Nothing
        } else {
            StoreNeed::Read
        }
    }

    /// A right PIN of the case whose PIN is `epoch`: the wrong PINs since
    /// the last success (cleared now, shown to the citizen), or the
    /// refusal a wrong PIN would get. See the module docs.
    pub async fn right_pin(
        &self,
        keys: &GuardKeys,
        epoch: u64,
        now_ms: i64,
    ) -> Result<FailedAttempts, GuardRefusal> {
        let b = self.settings.budgets;
        let mirrored = self.mirrored_number(keys, epoch, now_ms);
        if let Some(refusal) = mirrored.and_then(|r| r.refusal(now_ms, &b)) {
            self.counters.local.fetch_add(1, Ordering::Relaxed);
            return Err(GuardRefusal::Number(refusal));
        }
        let need = self.store_need(&keys.number);
        if need == StoreNeed::Nothing && !mirrored.is_some_and(|r| r.has_failures()) {
            self.counters.local.fetch_add(1, Ordering::Relaxed);
            return Ok(FailedAttempts::default());
        }
        self.counters.stored.fetch_add(1, Ordering::Relaxed);
        let mut shown = FailedAttempts::default();
        let fresh = need != StoreNeed::Nothing;
        let written = self
            .update_number(keys.number, now_ms, fresh, |r| {
                let current = r.current(epoch, now_ms, &b);
                let (after, s) = current.right_pin(now_ms, &b)?;
                shown = s;
                // A marked number opens only once a write of it succeeds.
                Ok(after.or((need == StoreNeed::Write).then_some(current)))
            })
            .await;
        match written {
            Ok(Ok(())) => {
                lock(&self.marked).remove(&keys.number);
                Ok(shown)
            }
            Ok(Err(refusal)) => Err(GuardRefusal::Number(refusal)),
            Err(e) => Err(self.unavailable(&e, "A right PIN could not be checked against its number's lock")),
        }
    }

    /// A wrong PIN (or an unknown case) for the PIN `epoch`: checked
    /// against the number's lock and counted in one atomic write; when
    /// counted, counted for the client's networks and globally too. The
    /// refusal is what a right PIN would get while the number is locked.
    pub async fn wrong_pin(&self, keys: &GuardKeys, epoch: u64, now_ms: i64) -> Result<(), GuardRefusal> {
        let b = self.settings.budgets;
        if let Some(refusal) = self.mirrored_number(keys, epoch, now_ms).and_then(|r| r.refusal(now_ms, &b)) {
            self.counters.local.fetch_add(1, Ordering::Relaxed);
            return Err(GuardRefusal::Number(refusal));
        }
        self.counters.stored.fetch_add(1, Ordering::Relaxed);
        let counted = self
            .update_number(keys.number, now_ms, false, |r| {
                r.current(epoch, now_ms, &b).wrong_pin(now_ms, &b).map(Some)
            })
            .await;
        let answer = match counted {
            Ok(Err(refusal)) => return Err(GuardRefusal::Number(refusal)),
            Ok(Ok(())) => {
                lock(&self.marked).remove(&keys.number);
                self.counters.failures_recorded.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                {
                    let mut marked = lock(&self.marked);
                    if marked.len() < NUMBERS_MARKED_MAX {
                        marked.insert(keys.number);
                    }
                }
                Err(self.unavailable(&e, "A wrong PIN could not be counted in the lookup guard's store"))
            }
        };
        self.count_failure(keys, now_ms).await;
        answer
    }

    /// Counts a failed lookup for the client's networks and globally: in
    /// the pending deltas, or in the store at once for the keys they do
    /// not take.
    async fn count_failure(&self, keys: &GuardKeys, now_ms: i64) {
        let window_start_ms = self.window_of(now_ms);
        let shard = GuardKey::global(self.global_shard);
        let now: Vec<GuardKey> = {
            let mut deltas = lock(&self.deltas);
            keys.nets
                .iter()
                .chain(std::iter::once(&shard))
                .filter(|k| deltas.add(**k, window_start_ms) == Deferred::CountNow)
                .copied()
                .collect()
        };
        if now.is_empty() {
            return;
        }
        self.counters.counted_now.fetch_add(now.len() as u64, Ordering::Relaxed);
        let delta = Delta { window_start_ms, count: 1 };
        let written =
            futures::future::join_all(now.iter().map(|k| self.add_to_counter(*k, delta, now_ms))).await;
        for r in written {
            if let Err(e) = r {
                self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, "A failed lookup could not be counted for a network or globally");
            }
        }
    }

    /// Adds this replica's pending network and global counts to the store
    /// every [`GUARD_COUNTER_FLUSH_MS`] until `stop`, then once more; while
    /// it runs, wrong PINs leave their counts to it. See the module docs.
    pub async fn flush_counters(
        self: Arc<Self>,
        clock: crate::lookup::Clock,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        lock(&self.deltas).open();
        let mut tick = tokio::time::interval(Duration::from_millis(GUARD_COUNTER_FLUSH_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
            self.flush(clock()).await;
        }
        // From now on wrong PINs count in the store themselves; what is
        // pending goes in one last flush.
        lock(&self.deltas).close();
        self.flush(clock()).await;
    }

    /// Writes every pending delta to the store, one compare-and-set write
    /// per key ([`FLUSH_WRITES_CONCURRENT_MAX`] at once); a delta the
    /// store took stops being pending, one it did not waits for the next
    /// flush. The number of keys whose delta the store did not take.
    async fn flush(&self, now_ms: i64) -> usize {
        let pending = lock(&self.deltas).snapshot();
        if pending.is_empty() {
            return 0;
        }
        let mut failed = 0usize;
        let mut last_error = None;
        let mut writes = futures::stream::iter(pending)
            .map(|(key, delta)| async move { (key, self.flush_counter(key, delta, now_ms).await) })
            .buffer_unordered(FLUSH_WRITES_CONCURRENT_MAX);
        while let Some((_, written)) = writes.next().await {
            match written {
                Ok(()) => {
                    self.counters.deltas_flushed.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    failed += 1;
                    last_error = Some(e);
                }
            }
        }
        if let Some(e) = last_error {
            self.counters.store_errors.fetch_add(failed as u64, Ordering::Relaxed);
            warn!(error = %e, keys = failed, "Failed lookups could not be counted in the lookup guard's store: retrying");
        }
        failed
    }

    fn unavailable(&self, e: &KvError, message: &'static str) -> GuardRefusal {
        self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
        warn!(error = %e, "{message}: refusing the lookup");
        GuardRefusal::Unavailable
    }

    /// Adds `delta` to the counter `key` in the store, in one atomic
    /// read-modify-write (nothing, when the store counts a later window).
    async fn add_to_counter(&self, key: GuardKey, delta: Delta, now_ms: i64) -> Result<(), KvError> {
        self.update(key, now_ms, false, |r| {
            let before = match r {
                Some(Record::Counter(c)) => c,
                _ => CounterRecord::default(),
            };
            Ok::<_, NumberRefusal>(before.add_many(delta.window_start_ms, delta.count).map(Record::Counter))
        })
        .await
        .map(|_| ())
    }

    /// [`SharedGuard::update`] of a number's record (an empty one when the
    /// store has none).
    async fn update_number<E>(
        &self,
        key: GuardKey,
        now_ms: i64,
        fresh: bool,
        mut f: impl FnMut(NumberRecord) -> Result<Option<NumberRecord>, E>,
    ) -> Result<Result<(), E>, KvError> {
        self.update(key, now_ms, fresh, |r| {
            let current = match r {
                Some(Record::Number(n)) => n,
                _ => NumberRecord::default(),
            };
            f(current).map(|next| next.map(Record::Number))
        })
        .await
    }

    /// One atomic read-modify-write of `key`: up to [`CAS_ATTEMPTS_MAX`]
    /// compare-and-set tries, the first on the mirrored revision unless
    /// `fresh` (which reads the store first). `f` gives the record to
    /// write, `None` when nothing changes (then nothing is written: with
    /// `fresh`, the store was read and it answered), or a refusal.
    async fn update<E>(
        &self,
        key: GuardKey,
        now_ms: i64,
        fresh: bool,
        f: impl FnMut(Option<Record>) -> Result<Option<Record>, E>,
    ) -> Result<Result<(), E>, KvError> {
        let _writer = self.writer(&key).await;
        let written = self.read_modify_write(key, now_ms, fresh, f).await;
        if let Ok(Ok(Some((revision, record)))) = written {
            self.remember(key, revision, record, now_ms);
        }
        written.map(|r| r.map(|_| ()))
    }

    /// One local writer of `key` at a time: held across the round trips,
    /// so the next local writer of this key starts from the revision this
    /// one wrote (remembered before the lock is let go).
    async fn writer(&self, key: &GuardKey) -> tokio::sync::MutexGuard<'_, ()> {
        let stripe = {
            use std::hash::{BuildHasher, BuildHasherDefault};
            let h = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(key);
            (h % WRITE_LOCK_STRIPES as u64) as usize
        };
        self.writers[stripe].lock().await
    }

    /// Adds the pending `delta` of the counter `key` to the store (a flush)
    /// in one atomic read-modify-write, and once the store took it, puts
    /// the written record in the mirror and settles the delta in one step
    /// under the mirror's lock: a read sees the failures either pending or
    /// mirrored, never both. Until then what the watch brings of the key
    /// is held back (at most one write's round trip).
    async fn flush_counter(&self, key: GuardKey, delta: Delta, now_ms: i64) -> Result<(), KvError> {
        let _writer = self.writer(&key).await;
        lock(&self.cache).held.insert(key, None);
        let written = self
            .read_modify_write(key, now_ms, false, |r| {
                let before = match r {
                    Some(Record::Counter(c)) => c,
                    _ => CounterRecord::default(),
                };
                Ok::<_, std::convert::Infallible>(
                    before.add_many(delta.window_start_ms, delta.count).map(Record::Counter),
                )
            })
            .await;
        let mut c = lock(&self.cache);
        let held = c.held.remove(&key).flatten();
        if let Ok(Ok(Some((revision, record)))) = written {
            self.remember_locked(&mut c, key, revision, record, now_ms);
        }
        if let Some(h) = held {
            self.remember_locked(&mut c, key, h.revision, h.record, h.seen_ms);
        }
        match written {
            // Taken (or a later window is counted and the delta is moot).
            Ok(Ok(_)) => {
                lock(&self.deltas).settle(&key, delta);
                Ok(())
            }
            Ok(Err(never)) => match never {},
            Err(e) => Err(e),
        }
    }

    /// The compare-and-set loop of [`SharedGuard::update`], under the
    /// key's writer lock: the revision and record written, `None` when
    /// nothing was. Records what it reads in the mirror, not what it writes.
    async fn read_modify_write<E>(
        &self,
        key: GuardKey,
        now_ms: i64,
        fresh: bool,
        mut f: impl FnMut(Option<Record>) -> Result<Option<Record>, E>,
    ) -> Result<Result<Option<(u64, Record)>, E>, KvError> {
        let kv_key = key.kv_key();
        let mut guess = None;
        if !fresh {
            guess = self.cached(&key, now_ms).map(|(rev, rec)| (rev, Some(rec)));
            if guess.is_none() && self.synced() {
                guess = Some((0, None));
            }
        }
        for _ in 0..CAS_ATTEMPTS_MAX {
            let (revision, current) = match guess.take() {
                Some(g) => g,
                None => {
                    let v = self.kv.get(&kv_key).await?;
                    let record = v.value.as_deref().and_then(|b| decode(key.kind, b));
                    // What the store holds is news to the mirror too.
                    if let Some(r) = record {
                        self.remember(key, v.revision, r, now_ms);
                    }
                    (v.revision, record)
                }
            };
            let next = match f(current) {
                Ok(Some(next)) => next,
                Ok(None) => return Ok(Ok(None)),
                Err(refusal) => return Ok(Err(refusal)),
            };
            match self.kv.put_if(&kv_key, encode(&next), revision).await {
                Ok(new_revision) => return Ok(Ok(Some((new_revision, next)))),
                Err(KvError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(KvError::Unavailable(format!(
            "{CAS_ATTEMPTS_MAX} compare-and-set attempts lost to other writers"
        )))
    }

    /// Follows the bucket until `stop`: its watch fills the mirror, and
    /// right PINs are admitted from it once every key was read. A broken
    /// watch sends every right PIN to the store again, and is started again (waits doubling up to
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
                    {
                        // A flush write still out keeps its key held.
                        let mut c = lock(&self.cache);
                        c.map.clear();
                        c.complete = true;
                        c.held.values_mut().for_each(|h| *h = None);
                    }
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
                warn!("The lookup guard lost its watch: every right PIN needs its store until it is back");
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

    /// A lookup of [`TN`] (PIN epoch 1) from `client`, as `lookup.rs` does.
    async fn guess(
        g: &SharedGuard,
        client: &str,
        right: bool,
        now: i64,
    ) -> Result<FailedAttempts, GuardRefusal> {
        let keys = g.keys(&TN, ip(client));
        g.check_networks(&keys, now)?;
        if right {
            g.right_pin(&keys, 1, now).await
        } else {
            g.wrong_pin(&keys, 1, now).await.map(|()| FailedAttempts::default())
        }
    }

    fn stored(g: &SharedGuard) -> u64 {
        g.counters().stored.load(Ordering::Relaxed)
    }

    async fn wait_for_lock(g: &SharedGuard, now: i64) {
        let keys = g.keys(&TN, ip("10.0.0.1"));
        let b = g.settings.budgets;
        let locked =
            || async { Ok(g.mirrored_number(&keys, 1, now).and_then(|r| r.refusal(now, &b)).map(|_| ())) };
        mpp_test_support::wait::wait_for("the lock reaches the replica", Duration::from_secs(5), locked)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_lock_made_through_both_replicas_refuses_the_right_pin_on_each_as_a_wrong_one() {
        let kv = MemKv::new(1000);
        let (a, b, _stop) = replicas(&kv).await;
        // A right PIN of a clean number needs no store.
        assert_eq!(guess(&a, "10.0.0.2", true, T0).await, Ok(FailedAttempts::default()));
        assert_eq!(stored(&a), 0);
        // Five wrong PINs, alternating replicas, each checked and counted
        // in the store whatever the replica's mirror shows.
        for i in 0..5 {
            let g = if i % 2 == 0 { &a } else { &b };
            assert_eq!(guess(g, "10.0.0.1", false, T0 + i).await, Ok(FailedAttempts::default()), "guess {i}");
        }
        // Locked on both replicas: a right PIN gets what a wrong one gets,
        // from the mirror, with no round trip.
        let locked = Err(GuardRefusal::Number(NumberRefusal::Locked { until_ms: T0 + 4 + 15 * 60_000 }));
        for g in [&a, &b] {
            wait_for_lock(g, T0 + 10).await;
            let before = stored(g);
            assert_eq!(guess(g, "10.0.0.2", true, T0 + 10).await, locked);
            assert_eq!(guess(g, "10.0.0.3", false, T0 + 10).await, locked);
            assert_eq!(stored(g), before, "a mirrored lock needs no store");
        }
        // After the lock, the right PIN shows the five wrong ones and clears them.
        let after = T0 + 4 + 15 * 60_000;
        assert_eq!(
            guess(&b, "10.0.0.2", true, after).await,
            Ok(FailedAttempts { count: 5, last_at_ms: Some(T0 + 4) })
        );
        assert_eq!(guess(&a, "10.0.0.2", true, after + 1).await.unwrap().count, 0);
    }

    #[tokio::test]
    async fn a_wrong_pin_is_refused_by_a_lock_the_mirror_has_not_seen() {
        // Replica A is not following the store (its mirror never learns of
        // B's writes): its wrong PINs are still checked against the stored
        // lock, in the one write that would count them.
        let kv = MemKv::new(1000);
        let a = SharedGuard::new(Arc::new(kv.clone()), &[5; 32], settings());
        a.synced.store(true, Ordering::Release);
        let b = SharedGuard::new(Arc::new(kv.clone()), &[5; 32], settings());
        for i in 0..5 {
            guess(&b, "10.0.0.1", false, T0 + i).await.unwrap();
        }
        let locked = Err(GuardRefusal::Number(NumberRefusal::Locked { until_ms: T0 + 4 + 15 * 60_000 }));
        assert_eq!(guess(&a, "10.0.0.9", false, T0 + 5).await, locked);
        // Its mirror now holds the stored record: the right PIN is refused too.
        assert_eq!(guess(&a, "10.0.0.9", true, T0 + 6).await, locked);
    }

    /// `n` tracking numbers of region 1771.
    fn numbers(n: u64) -> Vec<[u8; 15]> {
        (0..n)
            .map(|i| {
                let t = mpp_core::TrackingNumber::new(mpp_core::RegionCode::parse("1771").unwrap(), 1000 + i)
                    .unwrap();
                t.digits()
            })
            .collect()
    }

    #[tokio::test]
    async fn network_budgets_refuse_and_the_global_one_asks_for_work() {
        // Counted in the store before each answer (no flusher runs)...
        let g = SharedGuard::in_memory(&[5; 32], settings());
        spend_the_budgets(&g).await;
        assert_eq!(g.counters().counted_now.load(Ordering::Relaxed), 2 * 32);
        // ... or pending, never flushed: the replica sees its own at once.
        let g = SharedGuard::in_memory(&[5; 32], settings());
        lock(&g.deltas).open();
        spend_the_budgets(&g).await;
        assert_eq!(g.counters().counted_now.load(Ordering::Relaxed), 0);
        assert_eq!(lock(&g.deltas).len(), 22, "21 addresses and a global shard");
    }

    async fn spend_the_budgets(g: &SharedGuard) {
        let tns = numbers(40);
        let mut admitted = 0;
        for t in &tns[..20] {
            let keys = g.keys(t, ip("10.0.0.1"));
            match g.check_networks(&keys, T0) {
                Ok(()) => {
                    admitted += 1;
                    g.wrong_pin(&keys, 0, T0).await.unwrap();
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
            g.check_networks(&keys, T0).unwrap();
            g.wrong_pin(&keys, 0, T0).await.unwrap();
        }
        assert_eq!(g.global_failures(T0), 32);
        assert!(g.proof_of_work_required(T0));
        // The next window starts afresh.
        let next = T0 + 3_600_000;
        assert!(!g.proof_of_work_required(next));
    }

    /// A store whose counter writes fail while `down` (the numbers' go
    /// through).
    #[derive(Debug)]
    struct CountersDown {
        kv: MemKv,
        down: AtomicBool,
    }

    impl CasKv for CountersDown {
        fn get<'a>(&'a self, key: &'a str) -> KvFuture<'a, KvValue> {
            self.kv.get(key)
        }
        fn put_if<'a>(&'a self, key: &'a str, value: Vec<u8>, expected: u64) -> KvFuture<'a, u64> {
            if !key.starts_with("n.") && self.down.load(Ordering::Relaxed) {
                return Box::pin(async { Err(KvError::Unavailable("down".into())) });
            }
            self.kv.put_if(key, value, expected)
        }
        fn watch(&self) -> KvFuture<'_, futures::stream::BoxStream<'static, Result<KvChange, KvError>>> {
            self.kv.watch()
        }
    }

    /// The count of `key` in the store.
    async fn in_store(kv: &MemKv, key: &GuardKey, now: i64) -> u32 {
        let v = kv.get(&key.kv_key()).await.unwrap();
        v.value
            .and_then(|b| CounterRecord::decode(&b))
            .map_or(0, |c| c.count_at(now, settings().budgets.window_ms))
    }

    #[tokio::test]
    async fn network_counts_wait_for_the_flush_and_a_failed_one_is_retried_once() {
        let kv = MemKv::new(1000);
        let store = Arc::new(CountersDown { kv: kv.clone(), down: AtomicBool::new(false) });
        let g = SharedGuard::new(store.clone(), &[5; 32], settings());
        g.synced.store(true, Ordering::Release);
        lock(&g.deltas).open();
        let keys = g.keys(&TN, ip("10.0.0.1"));
        let (net, shard) = (keys.nets[0], GuardKey::global(g.global_shard));
        for i in 0..3 {
            guess(&g, "10.0.0.1", false, T0 + i).await.unwrap();
        }
        // Given three wrong PINs: their number's record is in the store,
        // the network's and global counts only pending, seen at once here.
        assert_eq!(g.counters().failures_recorded.load(Ordering::Relaxed), 3);
        assert_eq!((in_store(&kv, &net, T0).await, g.counter_at(&net, T0)), (0, 3));
        assert_eq!(g.global_failures(T0), 3);
        // When a flush fails, nothing is lost or settled.
        store.down.store(true, Ordering::Relaxed);
        assert_eq!(g.flush(T0 + 3).await, 2, "the network and the global shard");
        assert_eq!((in_store(&kv, &net, T0).await, g.counter_at(&net, T0)), (0, 3));
        guess(&g, "10.0.0.1", false, T0 + 4).await.unwrap();
        // Then the next one writes the sum once, and a third writes nothing.
        store.down.store(false, Ordering::Relaxed);
        assert_eq!(g.flush(T0 + 5).await, 0);
        assert!(lock(&g.deltas).is_empty());
        assert_eq!((in_store(&kv, &net, T0).await, in_store(&kv, &shard, T0).await), (4, 4));
        assert_eq!((g.counter_at(&net, T0), g.global_failures(T0)), (4, 4), "mirrored, not pending too");
        assert_eq!(g.flush(T0 + 6).await, 0);
        assert_eq!(in_store(&kv, &net, T0).await, 4);
        assert_eq!(g.counters().deltas_flushed.load(Ordering::Relaxed), 2);
    }

    /// A store whose counter writes land (and reach the guard's mirror, as
    /// a watch faster than the answer would bring them) but answer only
    /// once the test lets them.
    #[derive(Debug)]
    struct SlowAnswers {
        kv: MemKv,
        guard: std::sync::OnceLock<std::sync::Weak<SharedGuard>>,
        landed: AtomicU64,
        answer: tokio::sync::Semaphore,
    }

    impl CasKv for SlowAnswers {
        fn get<'a>(&'a self, key: &'a str) -> KvFuture<'a, KvValue> {
            self.kv.get(key)
        }
        fn put_if<'a>(&'a self, key: &'a str, value: Vec<u8>, expected: u64) -> KvFuture<'a, u64> {
            Box::pin(async move {
                let revision = self.kv.put_if(key, value.clone(), expected).await?;
                if key.starts_with("n.") {
                    return Ok(revision);
                }
                if let Some(g) = self.guard.get().and_then(std::sync::Weak::upgrade) {
                    g.apply(KvChange::Put { key: key.to_owned(), value, revision }, T0);
                }
                self.landed.fetch_add(1, Ordering::SeqCst);
                self.answer.acquire().await.expect("open").forget();
                Ok(revision)
            })
        }
        fn watch(&self) -> KvFuture<'_, futures::stream::BoxStream<'static, Result<KvChange, KvError>>> {
            self.kv.watch()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flushed_count_is_never_read_both_pending_and_mirrored() {
        let store = Arc::new(SlowAnswers {
            kv: MemKv::new(1000),
            guard: std::sync::OnceLock::new(),
            landed: AtomicU64::new(0),
            answer: tokio::sync::Semaphore::new(0),
        });
        let g = SharedGuard::new(store.clone(), &[5; 32], settings());
        store.guard.set(Arc::downgrade(&g)).unwrap();
        g.synced.store(true, Ordering::Release);
        lock(&g.deltas).open();
        let net = g.keys(&TN, ip("10.0.0.1")).nets[0];
        for i in 0..3 {
            guess(&g, "10.0.0.1", false, T0 + i).await.unwrap();
        }
        assert_eq!((g.counter_at(&net, T0), g.global_failures(T0)), (3, 3));
        let flush = tokio::spawn({
            let g = g.clone();
            async move { g.flush(T0 + 3).await }
        });
        // Both writes (the network's, the global shard's) are in the store
        // and their records in the mirror's reach; the answers are not back.
        let landed = || async { Ok((store.landed.load(Ordering::SeqCst) == 2).then_some(())) };
        mpp_test_support::wait::wait_for("the flush's writes land", Duration::from_secs(5), landed)
            .await
            .unwrap();
        assert_eq!(
            (g.counter_at(&net, T0), g.global_failures(T0)),
            (3, 3),
            "a write out with its delta pending counts once"
        );
        store.answer.add_permits(2);
        assert_eq!(flush.await.unwrap(), 0);
        assert!(lock(&g.deltas).is_empty());
        assert_eq!((g.counter_at(&net, T0), g.global_failures(T0)), (3, 3), "now mirrored only");
    }

    #[tokio::test]
    async fn a_network_spending_its_budget_on_one_replica_is_refused_on_the_other() {
        let kv = MemKv::new(1000);
        let (a, b, stop) = replicas(&kv).await;
        let clock: crate::lookup::Clock = Arc::new(|| T0);
        let flushers: Vec<_> =
            [&a, &b].map(|g| tokio::spawn(g.clone().flush_counters(clock.clone(), stop.subscribe()))).into();
        for g in [&a, &b] {
            let open = || async { Ok(lock(&g.deltas).is_open().then_some(())) };
            mpp_test_support::wait::wait_for("the flusher runs", Duration::from_secs(5), open).await.unwrap();
        }
        for t in &numbers(12) {
            let keys = a.keys(t, ip("10.0.0.1"));
            a.check_networks(&keys, T0).unwrap();
            a.wrong_pin(&keys, 0, T0).await.unwrap();
        }
        let keys = b.keys(&TN, ip("10.0.0.1"));
        let refused = || async { Ok(b.check_networks(&keys, T0).is_err().then_some(())) };
        mpp_test_support::wait::wait_for(
            "the budget reaches the other replica",
            Duration::from_secs(5),
            refused,
        )
        .await
        .unwrap();
        assert_eq!(b.global_failures(T0), 12);
        assert_eq!(a.counters().counted_now.load(Ordering::Relaxed), 0, "all left to the flusher");
        // Stopping flushes what is left, and from then on counts at once.
        stop.send(true).unwrap();
        for f in flushers {
            f.await.unwrap();
        }
        assert_eq!(in_store(&kv, &keys.nets[0], T0).await, 12);
        assert_eq!(lock(&a.deltas).add(keys.nets[0], a.window_of(T0)), Deferred::CountNow);
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

    /// `n` concurrent lookups of [`TN`] with the right PIN on `g`.
    async fn right_pins_at_once(g: &Arc<SharedGuard>, n: usize) -> Vec<Result<FailedAttempts, GuardRefusal>> {
        let lookups: Vec<_> = (0..n)
            .map(|i| {
                let g = g.clone();
                tokio::spawn(async move { guess(&g, &format!("10.0.2.{i}"), true, T0 + 1).await })
            })
            .collect();
        let mut out = Vec::new();
        for l in lookups {
            out.push(l.await.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn concurrent_right_pins_all_succeed_and_never_count_as_failures() {
        // 64 right-PIN lookups of one number at once (a watch attack with a
        // known PIN, or a family looking together), first with no record,
        // then with three wrong PINs to show: every one is admitted, the
        // wrong PINs are shown once, and nothing is counted against the
        // number.
        let g = SharedGuard::new(Arc::new(Yielding(MemKv::new(1000))), &[5; 32], settings());
        g.synced.store(true, Ordering::Release);
        let clean = right_pins_at_once(&g, 64).await;
        assert!(clean.iter().all(|r| *r == Ok(FailedAttempts::default())), "{clean:?}");
        assert_eq!(stored(&g), 0, "a clean number's right PINs need no store");
        for _ in 0..3 {
            guess(&g, "10.0.3.1", false, T0).await.unwrap();
        }
        let shown = right_pins_at_once(&g, 64).await;
        let counts: Vec<u32> = shown.iter().map(|r| r.as_ref().expect("admitted").count).collect();
        assert_eq!(counts.iter().filter(|c| **c == 3).count(), 1, "shown once: {counts:?}");
        assert_eq!(counts.iter().sum::<u32>(), 3);
        let keys = g.keys(&TN, ip("10.0.0.1"));
        let r = g.mirrored_number(&keys, 1, T0 + 1).unwrap();
        assert_eq!((r.streak, r.unseen, r.day_failures), (0, 0, 3));
        assert_eq!(g.counters().store_errors.load(Ordering::Relaxed), 0);
    }

    /// A store that batches, every operation of which yields a few times,
    /// so that concurrent writers interleave and gather into batches.
    #[derive(Debug)]
    struct SlowBatches(MemKv);

    async fn yields() {
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
    }

    impl CasKv for SlowBatches {
        fn get<'a>(&'a self, key: &'a str) -> KvFuture<'a, KvValue> {
            Box::pin(async move {
                yields().await;
                self.0.get(key).await
            })
        }
        fn put_if<'a>(&'a self, key: &'a str, value: Vec<u8>, expected: u64) -> KvFuture<'a, u64> {
            Box::pin(async move {
                yields().await;
                self.0.put_if(key, value, expected).await
            })
        }
        fn watch(&self) -> KvFuture<'_, futures::stream::BoxStream<'static, Result<KvChange, KvError>>> {
            self.0.watch()
        }
        fn batches(&self) -> bool {
            true
        }
        fn put_all_if<'a>(&'a self, writes: &'a [mpp_edge::cas::KvWrite]) -> KvFuture<'a, Vec<u64>> {
            Box::pin(async move {
                yields().await;
                self.0.put_all_if(writes).await
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batched_wrong_pins_of_two_replicas_never_miss_a_lock_or_a_count() {
        use mpp_edge::cas_batch::BatchingKv;
        // Two replicas writing through batches into one store; replica A
        // follows it, replica B does not (its mirror is stale, so its
        // writes expect revisions the store moved past: its batches fail
        // and fall back to one compare-and-set per key).
        let kv = MemKv::new(10_000);
        let batching = BatchingKv::new(Arc::new(SlowBatches(kv.clone())));
        let (stop, rx) = tokio::sync::watch::channel(false);
        let a = SharedGuard::new(Arc::new(batching.clone()), &[5; 32], settings());
        tokio::spawn(a.clone().follow(Arc::new(|| T0), rx));
        let synced = || async { Ok(a.synced().then_some(())) };
        mpp_test_support::wait::wait_for("A follows", Duration::from_secs(5), synced).await.unwrap();
        let b = SharedGuard::new(
            Arc::new(BatchingKv::new(Arc::new(SlowBatches(kv.clone())))),
            &[5; 32],
            settings(),
        );
        b.synced.store(true, Ordering::Release);
        // 24 wrong PINs of one number, alternating replicas, all at once,
        // and among them one wrong PIN of each of 40 other numbers.
        let tns = numbers(40);
        let mut lookups = Vec::new();
        for i in 0..24u32 {
            let g = if i % 2 == 0 { a.clone() } else { b.clone() };
            let keys = g.keys(&TN, ip(&format!("10.1.0.{i}")));
            lookups.push(tokio::spawn(async move { (true, g.wrong_pin(&keys, 1, T0).await) }));
        }
        for (i, t) in tns.iter().enumerate() {
            let g = if i % 2 == 0 { a.clone() } else { b.clone() };
            let keys = g.keys(t, ip(&format!("10.2.0.{i}")));
            lookups.push(tokio::spawn(async move { (false, g.wrong_pin(&keys, 1, T0).await) }));
        }
        let (mut counted, mut refused) = (0, 0);
        for l in lookups {
            match l.await.unwrap() {
                (true, Ok(())) => counted += 1,
                (true, Err(GuardRefusal::Number(NumberRefusal::Locked { .. }))) => refused += 1,
                (false, Ok(())) => {}
                other => panic!("{other:?}"),
            }
        }
        // Exactly the five the policy allows were counted; every other one
        // met the lock, in the store, whatever its replica's mirror showed.
        assert_eq!((counted, refused), (5, 19));
        let stored = |t: &[u8; 15]| {
            let key = a.keys(t, ip("10.0.0.1")).number.kv_key();
            let kv = kv.clone();
            async move { NumberRecord::decode(&kv.get(&key).await.unwrap().value.unwrap()).unwrap() }
        };
        let r = stored(&TN).await;
        assert_eq!((r.day_failures, r.unseen, r.level), (5, 5, 1));
        for t in &tns {
            assert_eq!(stored(t).await.day_failures, 1, "every other number counted once");
        }
        let c = batching.counters();
        assert!(c.batches.load(Ordering::Relaxed) > 0, "writes went in batches");
        // The lock holds on both replicas, for the right PIN too.
        for g in [&a, &b] {
            let keys = g.keys(&TN, ip("10.3.0.1"));
            assert!(matches!(
                g.right_pin(&keys, 1, T0 + 1).await,
                Err(GuardRefusal::Number(NumberRefusal::Locked { .. }))
            ));
        }
        stop.send(true).unwrap();
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
        // Never synced: a right PIN needs the store, which is down.
        let g = SharedGuard::new(Arc::new(Broken), &[5; 32], settings());
        assert_eq!(guess(&g, "10.0.0.1", true, T0).await, Err(GuardRefusal::Unavailable));
        assert_eq!(guess(&g, "10.0.0.1", false, T0).await, Err(GuardRefusal::Unavailable));
    }

    #[tokio::test]
    async fn a_number_whose_wrong_pin_went_unrecorded_opens_only_after_a_write() {
        // A full store, a mirror in step: the wrong PIN cannot be recorded
        // (refused), and from then on the right PIN needs a write, which
        // the full store refuses too.
        let g = SharedGuard::new(Arc::new(MemKv::new(0)), &[5; 32], settings());
        g.synced.store(true, Ordering::Release);
        assert_eq!(guess(&g, "10.0.0.1", false, T0).await, Err(GuardRefusal::Unavailable));
        assert_eq!(guess(&g, "10.0.0.1", true, T0).await, Err(GuardRefusal::Unavailable));
        // Another number is unaffected until it too is guessed.
        let other = g.keys(b"177100000123464", ip("10.0.0.1"));
        assert_eq!(g.right_pin(&other, 1, T0).await, Ok(FailedAttempts::default()));
    }
}
