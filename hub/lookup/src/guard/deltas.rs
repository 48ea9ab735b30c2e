//! A replica's failed-lookup counts not yet added to the shared store: the
//! per-network and global budgets are only budgets (the number's lock is
//! not among them), so a wrong PIN adds one to its keys here, off the
//! answer path, and one task adds each key's summed delta to the store
//! every [`GUARD_COUNTER_FLUSH_MS`] in one compare-and-set write
//! ([`super::shared::SharedGuard::flush_counters`]).
//!
//! This is the bookkeeping alone, with no IO and no clock: a delta leaves
//! only when the store has taken it ([`Deltas::settle`]), so a write that
//! failed is retried with the next flush and never counted twice by this
//! replica; reads add what is pending ([`Deltas::pending`]), so the
//! replica sees its own failures at once. A crash loses what is pending:
//! at most one flush interval of this replica's counts (plus what a store
//! that cannot be reached kept from being flushed).

use std::collections::HashMap;

use super::keys::GuardKey;

/// How often a replica adds its pending failed-lookup counts to the
/// shared store, in milliseconds.
pub const GUARD_COUNTER_FLUSH_MS: u64 = 50;

/// Keys (networks and the replica's global shard) with counts pending at
/// most. A failure of a further key is counted in the store at once, on
/// the answer path, as before there were deltas: the budgets stay exact,
/// and only the wrong PINs of whoever spreads failures over that many
/// networks within one flush interval wait for the store.
pub const COUNTER_DELTA_KEYS_MAX: usize = 4_096;

/// Failed lookups of one key not yet in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delta {
    /// The window they fall in (its start, Unix ms).
    pub window_start_ms: i64,
    /// How many.
    pub count: u32,
}

/// Where a failure went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deferred {
    /// Pending, for the next flush.
    Pending,
    /// Not taken: nobody flushes ([`Deltas::open`] not called, or
    /// [`Deltas::close`] called), or [`COUNTER_DELTA_KEYS_MAX`] keys are
    /// pending. The caller counts it in the store itself.
    CountNow,
}

/// The pending deltas of one replica, by key.
#[derive(Debug)]
pub struct Deltas {
    map: HashMap<GuardKey, Delta>,
    keys_max: usize,
    open: bool,
}

impl Deltas {
    /// Nothing pending; closed until a flusher [`Deltas::open`]s it.
    pub fn new(keys_max: usize) -> Self {
        Self { map: HashMap::new(), keys_max, open: false }
    }

    /// Takes failures from now on (a flusher runs).
    pub fn open(&mut self) {
        self.open = true;
    }

    /// Whether it takes failures.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Takes no more failures (the flusher stops after one last flush).
    pub fn close(&mut self) {
        self.open = false;
    }

    /// One failure of `key` in the window starting at `window_start_ms`.
    /// A delta of an earlier window is dropped: no budget reads a window
    /// that is over.
    pub fn add(&mut self, key: GuardKey, window_start_ms: i64) -> Deferred {
        if !self.open {
            return Deferred::CountNow;
        }
        let full = self.map.len() >= self.keys_max;
        match self.map.get_mut(&key) {
            Some(d) if d.window_start_ms == window_start_ms => d.count = d.count.saturating_add(1),
            Some(d) if d.window_start_ms < window_start_ms => *d = Delta { window_start_ms, count: 1 },
            // A later window is pending: the clock went back; count it there.
            Some(d) => d.count = d.count.saturating_add(1),
            None if full => return Deferred::CountNow,
            None => {
                self.map.insert(key, Delta { window_start_ms, count: 1 });
            }
        }
        Deferred::Pending
    }

    /// Failures of `key` in the window starting at `window_start_ms` that
    /// are pending.
    pub fn pending(&self, key: &GuardKey, window_start_ms: i64) -> u32 {
        self.map.get(key).filter(|d| d.window_start_ms == window_start_ms).map_or(0, |d| d.count)
    }

    /// Keys pending.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// What a flush writes: every pending delta, left pending until
    /// [`Deltas::settle`]d.
    pub fn snapshot(&self) -> Vec<(GuardKey, Delta)> {
        self.map.iter().map(|(k, d)| (*k, *d)).collect()
    }

    /// The store took `flushed` (a delta of [`Deltas::snapshot`]) for
    /// `key`: it stops being pending. Failures added since stay.
    pub fn settle(&mut self, key: &GuardKey, flushed: Delta) {
        let Some(d) = self.map.get_mut(key) else { return };
        if d.window_start_ms != flushed.window_start_ms {
            // A later window replaced it meanwhile: that one is still due.
            return;
        }
        assert!(d.count >= flushed.count, "settled more than was pending: {d:?} < {flushed:?}");
        d.count -= flushed.count;
        if d.count == 0 {
            self.map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W0: i64 = 3_600_000;
    const W1: i64 = 7_200_000;

    fn key(shard: u8) -> GuardKey {
        GuardKey::global(shard)
    }

    fn open(keys_max: usize) -> Deltas {
        let mut d = Deltas::new(keys_max);
        d.open();
        d
    }

    #[test]
    fn failures_sum_per_key_and_window() {
        let mut d = open(8);
        for _ in 0..3 {
            assert_eq!(d.add(key(0), W0), Deferred::Pending);
        }
        assert_eq!(d.add(key(1), W0), Deferred::Pending);
        assert_eq!((d.pending(&key(0), W0), d.pending(&key(1), W0), d.pending(&key(2), W0)), (3, 1, 0));
        assert_eq!(d.pending(&key(0), W1), 0, "another window reads nothing pending");
        // The next window replaces the one that is over.
        assert_eq!(d.add(key(0), W1), Deferred::Pending);
        assert_eq!((d.pending(&key(0), W0), d.pending(&key(0), W1)), (0, 1));
        // A clock that went back counts in the window pending.
        assert_eq!(d.add(key(0), W0), Deferred::Pending);
        assert_eq!(d.pending(&key(0), W1), 2);
    }

    #[test]
    fn a_flush_settles_what_it_wrote_and_keeps_what_came_since() {
        let mut d = open(8);
        d.add(key(0), W0);
        d.add(key(0), W0);
        d.add(key(1), W0);
        let flushed = d.snapshot();
        assert_eq!(flushed.len(), 2);
        // Pending until settled: reads still see them while the write is out.
        d.add(key(0), W0);
        assert_eq!(d.pending(&key(0), W0), 3);
        for (k, delta) in &flushed {
            d.settle(k, *delta);
        }
        assert_eq!((d.pending(&key(0), W0), d.pending(&key(1), W0), d.len()), (1, 0, 1));
        // Settling again (a duplicate) cannot take what was not written.
        let again = d.snapshot();
        d.settle(&key(0), again[0].1);
        assert!(d.is_empty());
        d.settle(&key(0), again[0].1);
        assert!(d.is_empty());
    }

    #[test]
    fn a_failed_flush_leaves_the_delta_for_the_next_one_counted_once() {
        let mut d = open(8);
        d.add(key(0), W0);
        d.add(key(0), W0);
        // The first flush's write fails: nothing is settled.
        let first = d.snapshot();
        assert_eq!(first, vec![(key(0), Delta { window_start_ms: W0, count: 2 })]);
        d.add(key(0), W0);
        // The next flush writes the sum, once.
        let second = d.snapshot();
        assert_eq!(second, vec![(key(0), Delta { window_start_ms: W0, count: 3 })]);
        d.settle(&key(0), second[0].1);
        assert!(d.is_empty());
    }

    #[test]
    fn a_delta_replaced_by_a_later_window_while_written_stays_due() {
        let mut d = open(8);
        d.add(key(0), W0);
        let out = d.snapshot();
        d.add(key(0), W1);
        d.settle(&key(0), out[0].1);
        assert_eq!(d.pending(&key(0), W1), 1);
    }

    #[test]
    fn past_the_key_bound_or_with_no_flusher_failures_are_counted_now() {
        let mut d = Deltas::new(2);
        assert_eq!(d.add(key(0), W0), Deferred::CountNow, "closed until a flusher opens it");
        d.open();
        assert_eq!(d.add(key(0), W0), Deferred::Pending);
        assert_eq!(d.add(key(1), W0), Deferred::Pending);
        assert_eq!(d.add(key(2), W0), Deferred::CountNow, "a third key does not fit");
        assert_eq!(d.add(key(1), W0), Deferred::Pending, "keys pending still take more");
        assert_eq!((d.len(), d.pending(&key(2), W0)), (2, 0));
        d.close();
        assert_eq!(d.add(key(0), W0), Deferred::CountNow);
        assert_eq!(d.pending(&key(0), W0), 1, "what was pending stays for the last flush");
    }
}
