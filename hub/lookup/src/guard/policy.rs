//! The guessing budgets as pure functions of a record and the time: what a
//! tracking number's record and a counter hold, how a wrong PIN changes
//! them, when they refuse. No IO and no clock: `now_ms` (Unix ms, the hub's
//! wall clock, since replicas share the records) is passed in.
//!
//! Records are encoded in a fixed little-endian layout with a version byte;
//! a value that does not decode counts as an empty record.

/// The longest a lock lasts, in milliseconds (24 hours): escalation stops
/// there.
pub const LOCKOUT_MS_MAX: u64 = 24 * 60 * 60 * 1000;

/// The window of the daily cap, in milliseconds (24 hours from the first
/// failure of the window).
pub const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// How much longer each further lock of a day lasts than the one before.
pub const LOCKOUT_GROWTH_FACTOR: u64 = 4;

/// Most bytes an encoded record takes.
pub const RECORD_BYTES_MAX: usize = 64;

/// The configured budgets (`mpp-hub serve` flags; docs/OPERATIONS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuessBudgets {
    /// Wrong PINs in a row that lock a tracking number.
    pub pin_failures_max: u32,
    /// The first lock of a day, in milliseconds; each further lock lasts
    /// [`LOCKOUT_GROWTH_FACTOR`] times longer, up to [`LOCKOUT_MS_MAX`].
    pub lockout_ms: u64,
    /// Wrong PINs within [`DAY_MS`] after which the number stays locked
    /// until its PIN is re-issued at the counter (or its record expires).
    pub pin_failures_per_day_max: u32,
    /// The window of the per-network and global counters, in milliseconds.
    pub window_ms: u64,
    /// Failed lookups per IPv4 address per window.
    pub per_ipv4_max: u32,
    /// Failed lookups per IPv6 /64 per window.
    pub per_ipv6_64_max: u32,
    /// Failed lookups per IPv6 /56 per window.
    pub per_ipv6_56_max: u32,
    /// Failed lookups per IPv6 /48 per window.
    pub per_ipv6_48_max: u32,
    /// Failed lookups of all clients together per window; past it, every
    /// lookup needs a proof of work.
    pub global_max: u32,
}

impl GuessBudgets {
    /// The documented defaults: 5 wrong PINs in a row lock a number for 15
    /// minutes, then 1 h, 4 h, 16 h; 20 in a day need a re-issued PIN; per
    /// hour, 30 failed lookups per IPv4 address or IPv6 /64, 120 per /56,
    /// 480 per /48, and 2,000 in all before proofs of work are asked.
    pub const DEFAULT: GuessBudgets = GuessBudgets {
        pin_failures_max: 5,
        lockout_ms: 15 * 60 * 1000,
        pin_failures_per_day_max: 20,
        window_ms: 60 * 60 * 1000,
        per_ipv4_max: 30,
        per_ipv6_64_max: 30,
        per_ipv6_56_max: 120,
        per_ipv6_48_max: 480,
        global_max: 2_000,
    };

    /// How long the lock of `level` (0 = the day's first) lasts.
    pub fn lock_ms(&self, level: u8) -> u64 {
        let mut ms = self.lockout_ms;
        for _ in 0..level {
            ms = ms.saturating_mul(LOCKOUT_GROWTH_FACTOR);
            if ms >= LOCKOUT_MS_MAX {
                break;
            }
        }
        ms.min(LOCKOUT_MS_MAX)
    }

    /// The most wrong PINs one tracking number can take in a day under
    /// these budgets: the daily cap, or fewer when the day's locks leave no
    /// time for it.
    pub fn guesses_per_number_per_day_max(&self) -> u64 {
        let mut guesses = 0u64;
        let mut elapsed = 0u64;
        let mut level = 0u8;
        while guesses < u64::from(self.pin_failures_per_day_max) && elapsed < DAY_MS as u64 {
            guesses += u64::from(self.pin_failures_max.max(1));
            elapsed = elapsed.saturating_add(self.lock_ms(level));
            level = level.saturating_add(1);
        }
        guesses.min(u64::from(self.pin_failures_per_day_max))
    }
}

/// Why a tracking number refuses lookups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberRefusal {
    /// Locked until this time (Unix ms).
    Locked {
        /// When the lock ends.
        until_ms: i64,
    },
    /// The daily cap was reached: only a re-issued PIN opens the case.
    ReissueRequired,
}

/// Wrong PINs since the last successful lookup, as the citizen is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FailedAttempts {
    /// How many.
    pub count: u32,
    /// The last one (Unix ms); `None` when there was none.
    pub last_at_ms: Option<i64>,
}

/// A tracking number's record. `epoch` names the PIN it counts against
/// (a fingerprint of the case's verifier, 0 without a case): a re-issued
/// PIN starts a fresh record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NumberRecord {
    /// The PIN's fingerprint.
    pub epoch: u64,
    /// Wrong PINs since the last lock or success.
    pub streak: u16,
    /// Locks so far in this day window.
    pub level: u8,
    /// The current lock's end (Unix ms; in the past when not locked).
    pub locked_until_ms: i64,
    /// Start of the day window.
    pub day_start_ms: i64,
    /// Wrong PINs in the day window.
    pub day_failures: u16,
    /// Wrong PINs since the last successful lookup.
    pub unseen: u32,
    /// The last wrong PIN (Unix ms), 0 if none.
    pub last_failure_ms: i64,
    /// The wrong PIN before the last one (Unix ms), 0 if none.
    pub prev_failure_ms: i64,
    /// The last successful lookup (Unix ms), 0 if none.
    pub last_success_ms: i64,
}

const NUMBER_RECORD_VERSION: u8 = 1;
const NUMBER_RECORD_BYTES: usize = 1 + 8 + 2 + 1 + 8 + 8 + 2 + 4 + 8 + 8 + 8;

impl NumberRecord {
    /// The record as it stands for the PIN `epoch` at `now_ms`: a fresh
    /// one when the PIN changed; a new day window when the last one is
    /// over and its cap was not reached (a reached cap holds until the PIN
    /// is re-issued).
    pub fn current(mut self, epoch: u64, now_ms: i64, b: &GuessBudgets) -> Self {
        if self.epoch != epoch {
            return Self { epoch, ..Self::default() };
        }
        let capped = u32::from(self.day_failures) >= b.pin_failures_per_day_max;
        if !capped && now_ms.saturating_sub(self.day_start_ms) >= DAY_MS {
            self.day_start_ms = now_ms;
            self.day_failures = 0;
            self.level = 0;
        }
        self
    }

    /// Whether lookups are refused now.
    pub fn refusal(&self, now_ms: i64, b: &GuessBudgets) -> Option<NumberRefusal> {
        if u32::from(self.day_failures) >= b.pin_failures_per_day_max {
            Some(NumberRefusal::ReissueRequired)
        } else if now_ms < self.locked_until_ms {
            Some(NumberRefusal::Locked { until_ms: self.locked_until_ms })
        } else {
            None
        }
    }

    /// Counts one wrong PIN at `now_ms`, locking the number when the streak
    /// or the day's cap is reached (a failure counted while locked, which
    /// [`NumberRecord::wrong_pin`] never does, would not extend the lock).
    pub fn count_failure(mut self, now_ms: i64, b: &GuessBudgets) -> Self {
        let was_locked = now_ms < self.locked_until_ms;
        if self.day_failures == 0 {
            self.day_start_ms = now_ms;
        }
        self.day_failures = self.day_failures.saturating_add(1);
        self.unseen = self.unseen.saturating_add(1);
        self.prev_failure_ms = self.last_failure_ms;
        self.last_failure_ms = now_ms;
        if was_locked {
            return self;
        }
        self.streak = self.streak.saturating_add(1);
        if u32::from(self.streak) >= b.pin_failures_max {
            let lock = i64::try_from(b.lock_ms(self.level)).unwrap_or(i64::MAX);
            self.locked_until_ms = now_ms.saturating_add(lock);
            self.level = self.level.saturating_add(1);
            self.streak = 0;
        }
        self
    }

    /// A wrong PIN, checked and counted in one step: refused (and not
    /// counted) while the number is locked, else counted.
    pub fn wrong_pin(self, now_ms: i64, b: &GuessBudgets) -> Result<Self, NumberRefusal> {
        match self.refusal(now_ms, b) {
            Some(r) => Err(r),
            None => Ok(self.count_failure(now_ms, b)),
        }
    }

    /// Whether a right PIN has anything to clear: a streak of wrong PINs,
    /// or wrong PINs the citizen has not been shown.
    pub fn has_failures(&self) -> bool {
        self.streak > 0 || self.unseen > 0
    }

    /// A right PIN at `now_ms`: refused while the number is locked, like
    /// any PIN. Else the wrong PINs since the last success (shown to the
    /// citizen) and, when there were any, the record with them and the
    /// streak cleared (`None`: nothing to write). The day's count stays.
    pub fn right_pin(
        self,
        now_ms: i64,
        b: &GuessBudgets,
    ) -> Result<(Option<Self>, FailedAttempts), NumberRefusal> {
        if let Some(r) = self.refusal(now_ms, b) {
            return Err(r);
        }
        if !self.has_failures() {
            return Ok((None, FailedAttempts::default()));
        }
        let shown = FailedAttempts {
            count: self.unseen,
            last_at_ms: (self.unseen > 0 && self.last_failure_ms > 0).then_some(self.last_failure_ms),
        };
        let after = Self { streak: 0, unseen: 0, last_success_ms: now_ms, ..self };
        Ok((Some(after), shown))
    }

    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(NUMBER_RECORD_BYTES);
        out.push(NUMBER_RECORD_VERSION);
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&self.streak.to_le_bytes());
        out.push(self.level);
        out.extend_from_slice(&self.locked_until_ms.to_le_bytes());
        out.extend_from_slice(&self.day_start_ms.to_le_bytes());
        out.extend_from_slice(&self.day_failures.to_le_bytes());
        out.extend_from_slice(&self.unseen.to_le_bytes());
        out.extend_from_slice(&self.last_failure_ms.to_le_bytes());
        out.extend_from_slice(&self.prev_failure_ms.to_le_bytes());
        out.extend_from_slice(&self.last_success_ms.to_le_bytes());
        debug_assert_eq!(out.len(), NUMBER_RECORD_BYTES);
        out
    }

    /// A record from its bytes; `None` when they are not one.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != NUMBER_RECORD_BYTES || b[0] != NUMBER_RECORD_VERSION {
            return None;
        }
        let mut r = Reader(&b[1..]);
        Some(Self {
            epoch: u64::from_le_bytes(r.take()?),
            streak: u16::from_le_bytes(r.take()?),
            level: r.take::<1>()?[0],
            locked_until_ms: i64::from_le_bytes(r.take()?),
            day_start_ms: i64::from_le_bytes(r.take()?),
            day_failures: u16::from_le_bytes(r.take()?),
            unseen: u32::from_le_bytes(r.take()?),
            last_failure_ms: i64::from_le_bytes(r.take()?),
            prev_failure_ms: i64::from_le_bytes(r.take()?),
            last_success_ms: i64::from_le_bytes(r.take()?),
        })
    }
}

/// A counter of failed lookups in fixed windows aligned to the Unix epoch
/// (so every replica agrees on them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CounterRecord {
    /// Start of the window counted (Unix ms).
    pub window_start_ms: i64,
    /// Failed lookups in it.
    pub count: u32,
}

const COUNTER_RECORD_VERSION: u8 = 1;
const COUNTER_RECORD_BYTES: usize = 1 + 8 + 4;

/// The start of the window holding `now_ms`.
pub fn window_start(now_ms: i64, window_ms: u64) -> i64 {
    let w = i64::try_from(window_ms.max(1)).unwrap_or(i64::MAX);
    now_ms - now_ms.rem_euclid(w)
}

impl CounterRecord {
    /// Failed lookups in the window holding `now_ms`.
    pub fn count_at(&self, now_ms: i64, window_ms: u64) -> u32 {
        if self.window_start_ms == window_start(now_ms, window_ms) {
            self.count
        } else {
            0
        }
    }

    /// One more failed lookup at `now_ms`.
    pub fn add(self, now_ms: i64, window_ms: u64) -> Self {
        self.add_many(window_start(now_ms, window_ms), 1).unwrap_or(self)
    }

    /// `count` more failed lookups in the window starting at
    /// `window_start_ms`; `None` (nothing to write) when the record
    /// already counts a later window, which an earlier one cannot change.
    pub fn add_many(self, window_start_ms: i64, count: u32) -> Option<Self> {
        if self.window_start_ms > window_start_ms {
            return None;
        }
        let before = if self.window_start_ms == window_start_ms { self.count } else { 0 };
        Some(Self { window_start_ms, count: before.saturating_add(count) })
    }

    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(COUNTER_RECORD_BYTES);
        out.push(COUNTER_RECORD_VERSION);
        out.extend_from_slice(&self.window_start_ms.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out
    }

    /// A record from its bytes; `None` when they are not one.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != COUNTER_RECORD_BYTES || b[0] != COUNTER_RECORD_VERSION {
            return None;
        }
        let mut r = Reader(&b[1..]);
        Some(Self { window_start_ms: i64::from_le_bytes(r.take()?), count: u32::from_le_bytes(r.take()?) })
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: GuessBudgets = GuessBudgets::DEFAULT;
    const MIN: i64 = 60_000;

    fn fail_n(mut r: NumberRecord, n: u32, at: i64) -> NumberRecord {
        for _ in 0..n {
            r = r.wrong_pin(at, &B).expect("admitted");
        }
        r
    }

    #[test]
    fn five_wrong_pins_lock_for_fifteen_minutes_then_longer_each_time() {
        assert_eq!(B.lock_ms(0), 15 * 60_000);
        assert_eq!(B.lock_ms(1), 60 * 60_000);
        assert_eq!(B.lock_ms(2), 4 * 60 * 60_000);
        assert_eq!(B.lock_ms(3), 16 * 60 * 60_000);
        assert_eq!(B.lock_ms(9), LOCKOUT_MS_MAX);
        let t0 = 1_000 * MIN;
        let r = fail_n(NumberRecord::default(), 4, t0);
        assert_eq!(r.refusal(t0, &B), None);
        let r = r.wrong_pin(t0, &B).unwrap();
        assert_eq!(r.refusal(t0, &B), Some(NumberRefusal::Locked { until_ms: t0 + 15 * MIN }));
        assert_eq!(r.wrong_pin(t0 + 14 * MIN, &B), Err(NumberRefusal::Locked { until_ms: t0 + 15 * MIN }));
        let t1 = t0 + 15 * MIN;
        let r = fail_n(r, 5, t1);
        assert_eq!(r.refusal(t1, &B), Some(NumberRefusal::Locked { until_ms: t1 + 60 * MIN }));
    }

    #[test]
    fn the_daily_cap_holds_until_the_pin_changes() {
        let mut r = NumberRecord { epoch: 7, ..NumberRecord::default() };
        let mut t = 1_000 * MIN;
        for round in 0..4 {
            r = fail_n(r.current(7, t, &B), 5, t);
            t += i64::try_from(B.lock_ms(round)).unwrap();
        }
        assert_eq!(r.day_failures, 20);
        assert_eq!(r.refusal(t, &B), Some(NumberRefusal::ReissueRequired));
        // A day later, and a week later, still capped.
        let week = t + 7 * DAY_MS;
        assert_eq!(r.current(7, week, &B).refusal(week, &B), Some(NumberRefusal::ReissueRequired));
        // A re-issued PIN (another epoch) starts afresh.
        assert_eq!(r.current(8, week, &B).refusal(week, &B), None);
        assert_eq!(B.guesses_per_number_per_day_max(), 20);
    }

    #[test]
    fn a_quiet_day_starts_a_new_window() {
        let t = 1_000 * MIN;
        let r = fail_n(NumberRecord::default(), 3, t);
        let later = t + DAY_MS;
        let r = r.current(0, later, &B);
        assert_eq!((r.day_failures, r.level), (0, 0));
        assert_eq!(r.unseen, 3, "the citizen still sees them");
    }

    #[test]
    fn a_right_pin_is_refused_while_locked_and_else_clears_and_shows_the_failures() {
        let t = 1_000 * MIN;
        // Nothing to clear: nothing to write.
        assert_eq!(NumberRecord::default().right_pin(t, &B), Ok((None, FailedAttempts::default())));
        let r = fail_n(NumberRecord::default(), 4, t);
        let (after, shown) = r.right_pin(t + 2, &B).unwrap();
        let after = after.expect("the failures are cleared");
        assert_eq!(shown, FailedAttempts { count: 4, last_at_ms: Some(t) });
        assert_eq!((after.unseen, after.streak, after.day_failures), (0, 0, 4));
        assert_eq!(after.last_success_ms, t + 2);
        assert_eq!(after.right_pin(t + 3, &B), Ok((None, FailedAttempts::default())));
        // Locked: the right PIN is refused exactly as a wrong one.
        let locked = fail_n(r, 1, t + 1);
        let refusal = Err(NumberRefusal::Locked { until_ms: t + 1 + 15 * MIN });
        assert_eq!(locked.right_pin(t + 2, &B).map(|_| ()), refusal);
        assert_eq!(locked.wrong_pin(t + 2, &B).map(|_| ()), refusal);
    }

    #[test]
    fn failures_counted_while_locked_do_not_extend_the_lock() {
        let t = 1_000 * MIN;
        let r = fail_n(NumberRecord::default(), 5, t);
        let until = r.locked_until_ms;
        let r = r.count_failure(t + 1, &B);
        assert_eq!((r.locked_until_ms, r.streak, r.day_failures), (until, 0, 6));
    }

    #[test]
    fn counters_count_in_aligned_windows() {
        let w = 3_600_000u64;
        let c = CounterRecord::default().add(7_200_000 + 5, w).add(7_200_000 + 9, w);
        assert_eq!(c.count_at(7_200_000 + 3_599_999, w), 2);
        assert_eq!(c.count_at(10_800_000, w), 0);
        assert_eq!(c.add(10_800_001, w), CounterRecord { window_start_ms: 10_800_000, count: 1 });
        // Summed deltas: into the same window, a later one, never an earlier one.
        assert_eq!(c.add_many(7_200_000, 5), Some(CounterRecord { window_start_ms: 7_200_000, count: 7 }));
        assert_eq!(c.add_many(10_800_000, 5), Some(CounterRecord { window_start_ms: 10_800_000, count: 5 }));
        assert_eq!(c.add_many(3_600_000, 5), None);
        assert_eq!(c.add(3_600_001, w), c, "a failure of a window that is over changes nothing");
    }

    #[test]
    fn records_round_trip_and_garbage_is_no_record() {
        let r = NumberRecord {
            epoch: u64::MAX,
            streak: 3,
            level: 2,
            locked_until_ms: -5,
            day_start_ms: 9,
            day_failures: 11,
            unseen: 40_000,
            last_failure_ms: i64::MAX,
            prev_failure_ms: 3,
            last_success_ms: 1,
        };
        assert_eq!(NumberRecord::decode(&r.encode()), Some(r));
        assert!(r.encode().len() <= RECORD_BYTES_MAX);
        let c = CounterRecord { window_start_ms: 3_600_000, count: 17 };
        assert_eq!(CounterRecord::decode(&c.encode()), Some(c));
        assert_eq!(NumberRecord::decode(&c.encode()), None);
        assert_eq!(CounterRecord::decode(&r.encode()), None);
        assert_eq!(NumberRecord::decode(&[]), None);
        let mut wrong_version = r.encode();
        wrong_version[0] = 9;
        assert_eq!(NumberRecord::decode(&wrong_version), None);
    }
}
