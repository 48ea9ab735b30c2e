//! Per-client rate limits of reading and erasing personal data and of
//! opening agencies' walk-in cases: a token bucket per authenticated client
//! system and action. Each call (whatever
//! its outcome) takes one token; a bucket holds at most `burst` tokens and
//! refills at `per_minute` a minute. An empty bucket refuses the call with
//! `RESOURCE_EXHAUSTED` / `RATE_LIMITED` and the seconds until the next token.
//!
//! The buckets are keyed by the client id the token authenticated, never by
//! a field the caller chooses, so an officer cannot spread their reads over
//! made-up officer ids. The table is bounded: client ids come from the tokens
//! file (at most [`CLIENTS_MAX`]), and [`PersonalDataLimiter`] asserts it
//! never holds more.
//!
//! Time is passed in (milliseconds from the injected [`Clock`]), so tests
//! step it by hand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mpp_agency_kit::auth::CLIENTS_MAX;
use mpp_agency_kit::{ClientId, Clock};

/// Reads of personal data a client system may make per minute, by default.
pub const READS_PER_MINUTE_DEFAULT: u32 = 30;

/// Reads a client system may make in a burst, by default.
pub const READS_BURST_DEFAULT: u32 = 20;

/// Erasures a client system may make per minute, by default (an erasure is
/// irreversible and rare: a citizen's request at the desk).
pub const ERASURES_PER_MINUTE_DEFAULT: u32 = 2;

/// Erasures a client system may make in a burst, by default.
pub const ERASURES_BURST_DEFAULT: u32 = 3;

/// Walk-in cases one agency service (one token) may have opened per minute,
/// by default (`BukaBerkasInstansi`; a busy agency counter serves a citizen
/// every few minutes, so this bounds what a leaked token can burn of the
/// serials and the hub's log, not a real counter).
pub const WALK_INS_PER_MINUTE_DEFAULT: u32 = 60;

/// Walk-in cases one agency service may have opened in a burst, by default.
pub const WALK_INS_BURST_DEFAULT: u32 = 30;

/// Largest value each of those six flags takes (per minute or burst): a
/// bucket that large no longer limits what one front office can serve, so
/// a larger number is a typo rather than a setting.
pub const RATE_FLAG_MAX: u32 = 100_000;

/// Actions with a bucket per client ([`Action`]'s variants).
const ACTIONS: usize = 3;

/// Milli-tokens in one token (buckets count in thousandths).
const MILLI: u64 = 1000;

/// One limit: a refill rate and a bucket size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Tokens a bucket gains per minute (at least 1).
    pub per_minute: u32,
    /// Most tokens a bucket holds (at least 1).
    pub burst: u32,
}

/// The limits of `LihatDataPribadi`, `HapusDataPribadi` and
/// `BukaBerkasInstansi`, per client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersonalDataLimits {
    /// Reads.
    pub reads: Limit,
    /// Erasures.
    pub erasures: Limit,
    /// Walk-in case openings for agency services.
    pub walk_ins: Limit,
}

impl PersonalDataLimits {
    /// The documented defaults.
    pub const DEFAULT: PersonalDataLimits = PersonalDataLimits {
        reads: Limit { per_minute: READS_PER_MINUTE_DEFAULT, burst: READS_BURST_DEFAULT },
        erasures: Limit { per_minute: ERASURES_PER_MINUTE_DEFAULT, burst: ERASURES_BURST_DEFAULT },
        walk_ins: Limit { per_minute: WALK_INS_PER_MINUTE_DEFAULT, burst: WALK_INS_BURST_DEFAULT },
    };
}

/// Which limit a call counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `LihatDataPribadi`.
    Read,
    /// `HapusDataPribadi`.
    Erase,
    /// `BukaBerkasInstansi`.
    WalkIn,
}

/// How long to wait before trying again, in whole seconds (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter {
    /// Seconds.
    pub seconds: u64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    milli_tokens: u64,
    at_ms: u64,
}

/// The buckets of every client, shared by the clones of the service.
#[derive(Debug, Clone)]
pub struct PersonalDataLimiter {
    limits: PersonalDataLimits,
    clock: Arc<dyn Clock>,
    buckets: Arc<Mutex<HashMap<(ClientId, Action), Bucket>>>,
}

impl PersonalDataLimiter {
    /// A limiter with every bucket full.
    pub fn new(limits: PersonalDataLimits, clock: Arc<dyn Clock>) -> Self {
        assert!(limits.reads.per_minute >= 1 && limits.reads.burst >= 1, "read limits must allow calls");
        assert!(
            limits.erasures.per_minute >= 1 && limits.erasures.burst >= 1,
            "erasure limits must allow calls"
        );
        assert!(
            limits.walk_ins.per_minute >= 1 && limits.walk_ins.burst >= 1,
            "walk-in limits must allow calls"
        );
        Self { limits, clock, buckets: Arc::default() }
    }

    /// The limits.
    pub fn limits(&self) -> PersonalDataLimits {
        self.limits
    }

    /// Takes one token from `client`'s bucket for `action`, or says how long
    /// to wait.
    pub fn admit(&self, client: &ClientId, action: Action) -> Result<(), RetryAfter> {
        let limit = match action {
            Action::Read => self.limits.reads,
            Action::Erase => self.limits.erasures,
            Action::WalkIn => self.limits.walk_ins,
        };
        // A wall clock before 1970 reads as 0: it refills nothing.
        let now_ms = u64::try_from(self.clock.now_ms()).unwrap_or(0);
        // A panic while holding the lock leaves plain counters; still usable.
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let full = u64::from(limit.burst) * MILLI;
        let bucket =
            buckets.entry((client.clone(), action)).or_insert(Bucket { milli_tokens: full, at_ms: now_ms });
        // per_minute tokens per 60 000 ms = per_minute milli-tokens per 60 ms.
        // Only the time turned into whole milli-tokens is consumed, so
        // frequent calls do not lose the remainders.
        let per_minute = u64::from(limit.per_minute);
        let gained = now_ms.saturating_sub(bucket.at_ms).saturating_mul(per_minute) / 60;
        let tokens = bucket.milli_tokens.saturating_add(gained);
        if tokens >= full {
            bucket.at_ms = now_ms.max(bucket.at_ms);
        } else {
            bucket.at_ms += gained * 60 / per_minute;
        }
        let tokens = tokens.min(full);
        let answer = if tokens >= MILLI {
            bucket.milli_tokens = tokens - MILLI;
            Ok(())
        } else {
            bucket.milli_tokens = tokens;
            let wait_ms = ((MILLI - tokens) * 60).div_ceil(u64::from(limit.per_minute));
            Err(RetryAfter { seconds: wait_ms.div_ceil(1000).max(1) })
        };
        // One bucket per action and client id of the tokens file (plus the insecure id).
        assert!(buckets.len() <= ACTIONS * (CLIENTS_MAX + 1), "more rate-limit buckets than clients");
        answer
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;

    #[derive(Debug, Default)]
    struct Manual(AtomicI64);

    impl Clock for Manual {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn each_client_has_its_own_bucket_per_action_that_refills() {
        let clock = Arc::new(Manual::default());
        clock.0.store(1_000_000, Ordering::Relaxed);
        let limits = PersonalDataLimits {
            reads: Limit { per_minute: 6, burst: 2 },
            erasures: Limit { per_minute: 1, burst: 1 },
            walk_ins: Limit { per_minute: 1, burst: 1 },
        };
        let limiter = PersonalDataLimiter::new(limits, clock.clone());
        let (a, b) = (ClientId::parse("loket-a").unwrap(), ClientId::parse("loket-b").unwrap());
        assert_eq!(limiter.admit(&a, Action::Read), Ok(()));
        assert_eq!(limiter.admit(&a, Action::Read), Ok(()));
        // 6 a minute: one token every 10 s.
        assert_eq!(limiter.admit(&a, Action::Read), Err(RetryAfter { seconds: 10 }));
        assert_eq!(limiter.admit(&b, Action::Read), Ok(()), "another client's bucket is full");
        assert_eq!(limiter.admit(&a, Action::Erase), Ok(()), "erasures count separately");
        assert_eq!(limiter.admit(&a, Action::Erase), Err(RetryAfter { seconds: 60 }));
        assert_eq!(limiter.admit(&a, Action::WalkIn), Ok(()), "walk-in openings count separately");
        assert_eq!(limiter.admit(&a, Action::WalkIn), Err(RetryAfter { seconds: 60 }));
        clock.0.fetch_add(9_999, Ordering::Relaxed);
        assert_eq!(limiter.admit(&a, Action::Read), Err(RetryAfter { seconds: 1 }));
        clock.0.fetch_add(1, Ordering::Relaxed);
        assert_eq!(limiter.admit(&a, Action::Read), Ok(()));
        // Never more than the burst, however long the wait.
        clock.0.fetch_add(3_600_000, Ordering::Relaxed);
        assert_eq!(limiter.admit(&a, Action::Read), Ok(()));
        assert_eq!(limiter.admit(&a, Action::Read), Ok(()));
        assert!(limiter.admit(&a, Action::Read).is_err());
        // A clock that steps back refills nothing and breaks nothing.
        clock.0.store(0, Ordering::Relaxed);
        assert!(limiter.admit(&a, Action::Read).is_err());
    }
}
