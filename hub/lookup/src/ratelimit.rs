//! This replica's rate limit of case lookups, in bounded memory: **per
//! client address**, a token bucket: each lookup (good, bad or malformed)
//! takes one token; the bucket holds at most `burst` tokens and refills at
//! `per_minute` tokens a minute. An empty bucket answers `RATE_LIMITED`
//! with the seconds until the next token.
//!
//! It bounds the load one client puts on one replica. The guessing budgets
//! (wrong PINs per tracking number, failed lookups per network and in all),
//! which must hold across replicas and restarts, are [`crate::guard`]'s.
//!
//! The table is a fixed-size, set-associative cache ([`SlotTable`]): a key
//! hashes (SipHash with a per-process random key, so collisions cannot be
//! chosen from outside) to a set of [`SET_WAYS`] slots; a new key takes a
//! free slot of its set or evicts the entry of the set that matters least
//! (a refilled bucket first). Memory is therefore fixed at start:
//! [`CLIENTS_TRACKED_MAX`] slots. The price of the bound: an attacker who
//! floods a set with new addresses can evict someone's bucket.
//!
//! IPv6 clients are keyed by their /64 prefix (one host usually holds a
//! whole /64), IPv4 clients (and IPv4-mapped IPv6) by their address.
//!
//! Time is passed in (milliseconds of a monotonic clock), so every rule is a
//! pure function of the calls made, and tests step the clock by hand.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::Mutex;

/// Slots of the per-client table (each under 64 bytes: about 3 MiB).
pub const CLIENTS_TRACKED_MAX: usize = 65_536;

/// Slots per set: a new key competes with this many others for a place.
pub const SET_WAYS: usize = 4;

/// Milli-tokens in one token (buckets count in thousandths).
const MILLI: u64 = 1000;

/// The limits, as configured (`mpp-hub serve --lookups-per-minute …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupLimits {
    /// Tokens a client's bucket gains per minute.
    pub per_minute: u32,
    /// Most tokens a bucket holds (lookups in a burst).
    pub burst: u32,
}

impl LookupLimits {
    /// The documented defaults: 60 lookups a minute with bursts of 20 per
    /// client address.
    pub const DEFAULT: LookupLimits = LookupLimits { per_minute: 60, burst: 20 };
}

/// The key of a client: its IPv4 address, or its IPv6 /64 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    /// The key of a client address.
    pub fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let mut o = v6.octets();
                    o[8..].fill(0);
                    Self(IpAddr::V6(o.into()))
                }
            },
        }
    }
}

/// How long to wait before trying again, in whole seconds (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter {
    /// Seconds.
    pub seconds: u64,
}

impl RetryAfter {
    /// The whole seconds covering `ms` (at least 1).
    pub fn from_ms(ms: u64) -> Self {
        Self { seconds: ms.div_ceil(1000).max(1) }
    }
}

/// A value kept in a [`SlotTable`]: how much it matters to keep it at
/// `now_ms` (0 = as good as absent, evict first).
pub trait Keep {
    /// Higher keeps longer.
    fn keep_score(&self, now_ms: u64) -> u64;
}

/// A fixed-capacity, set-associative map. See the module docs.
#[derive(Debug)]
pub struct SlotTable<K, V> {
    slots: Vec<Option<(K, V)>>,
    sets: usize,
    hasher: RandomState,
}

impl<K: Hash + Eq + Clone, V: Keep + Clone> SlotTable<K, V> {
    /// A table of `capacity` slots, rounded up to a power of two of at least
    /// [`SET_WAYS`].
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(SET_WAYS).next_power_of_two();
        Self { slots: vec![None; capacity], sets: capacity / SET_WAYS, hasher: RandomState::new() }
    }

    /// Slots in the table.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    fn set_of(&self, key: &K) -> std::ops::Range<usize> {
        // `sets` is a power of two, so the mask picks a set uniformly.
        let set = (self.hasher.hash_one(key) as usize) & (self.sets - 1);
        set * SET_WAYS..(set + 1) * SET_WAYS
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &K) -> Option<&V> {
        let range = self.set_of(key);
        self.slots[range].iter().flatten().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The value of `key`, inserted as `fresh()` if absent (evicting the
    /// entry of its set with the lowest keep score at `now_ms`).
    pub fn get_or_insert(&mut self, key: &K, now_ms: u64, fresh: impl FnOnce() -> V) -> &mut V {
        let range = self.set_of(key);
        let set = &mut self.slots[range];
        let found = set.iter().position(|s| matches!(s, Some((k, _)) if k == key));
        let i = match found {
            Some(i) => i,
            None => {
                let victim = set
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, s)| {
                        s.as_ref().map_or(0, |(_, v)| v.keep_score(now_ms).saturating_add(1))
                    })
                    .map_or(0, |(i, _)| i);
                set[victim] = Some((key.clone(), fresh()));
                victim
            }
        };
        // The slot at `i` was either found occupied or just filled.
        match &mut set[i] {
            Some((_, v)) => v,
            None => unreachable!("slot {i} was just filled"),
        }
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &K) {
        let range = self.set_of(key);
        for s in &mut self.slots[range] {
            if matches!(s, Some((k, _)) if k == key) {
                *s = None;
            }
        }
    }
}

/// A client's token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    milli_tokens: u64,
    at_ms: u64,
    per_minute: u32,
    burst: u32,
}

impl Bucket {
    fn full(limits: &LookupLimits, now_ms: u64) -> Self {
        Self {
            milli_tokens: u64::from(limits.burst) * MILLI,
            at_ms: now_ms,
            per_minute: limits.per_minute,
            burst: limits.burst,
        }
    }

    fn refilled(&self, now_ms: u64) -> u64 {
        let elapsed = now_ms.saturating_sub(self.at_ms);
        // per_minute tokens per 60 000 ms = per_minute milli-tokens per 60 ms.
        let gained = elapsed.saturating_mul(u64::from(self.per_minute)) / 60;
        self.milli_tokens.saturating_add(gained).min(u64::from(self.burst) * MILLI)
    }
}

impl Keep for Bucket {
    fn keep_score(&self, now_ms: u64) -> u64 {
        // Milli-tokens missing: a full bucket is the same as no bucket.
        (u64::from(self.burst) * MILLI).saturating_sub(self.refilled(now_ms))
    }
}

/// The rate limit of one hub replica, shared by HTTP and gRPC.
#[derive(Debug)]
pub struct Guard {
    limits: LookupLimits,
    clients: Mutex<SlotTable<ClientKey, Bucket>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain counters behind; they are
    // still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Guard {
    /// A guard with the default table size.
    pub fn new(limits: LookupLimits) -> Self {
        Self::with_capacity(limits, CLIENTS_TRACKED_MAX)
    }

    /// A guard with the given table size (tests use small ones).
    pub fn with_capacity(limits: LookupLimits, clients: usize) -> Self {
        Self { limits, clients: Mutex::new(SlotTable::new(clients)) }
    }

    /// The limits.
    pub fn limits(&self) -> LookupLimits {
        self.limits
    }

    /// Takes one token from `client`'s bucket, or says how long to wait.
    pub fn admit(&self, client: ClientKey, now_ms: u64) -> Result<(), RetryAfter> {
        let limits = self.limits;
        let mut t = lock(&self.clients);
        let b = t.get_or_insert(&client, now_ms, || Bucket::full(&limits, now_ms));
        let tokens = b.refilled(now_ms);
        b.at_ms = now_ms;
        if tokens >= MILLI {
            b.milli_tokens = tokens - MILLI;
            Ok(())
        } else {
            b.milli_tokens = tokens;
            let missing = MILLI - tokens;
            // Milli-tokens accrue at per_minute per 60 ms.
            let wait_ms = (missing * 60).div_ceil(u64::from(limits.per_minute.max(1)));
            Err(RetryAfter::from_ms(wait_ms))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn client(last: u8) -> ClientKey {
        ClientKey::of(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)))
    }

    #[test]
    fn a_bucket_allows_the_burst_then_the_rate() {
        let g = Guard::new(LookupLimits::DEFAULT);
        let c = client(1);
        for i in 0..20 {
            assert_eq!(g.admit(c, 1_000), Ok(()), "lookup {i} of the burst");
        }
        assert_eq!(g.admit(c, 1_000), Err(RetryAfter { seconds: 1 }), "21st in the same instant");
        // Another client is not affected.
        assert_eq!(g.admit(client(2), 1_000), Ok(()));
        // 60 a minute: one token a second.
        assert!(g.admit(c, 1_999).is_err(), "999 ms later there is not yet a whole token");
        assert_eq!(g.admit(c, 2_000), Ok(()));
        assert!(g.admit(c, 2_000).is_err());
        // After a minute idle the bucket is full again, and no fuller.
        for i in 0..20 {
            assert_eq!(g.admit(c, 600_000), Ok(()), "lookup {i} after a pause");
        }
        assert!(g.admit(c, 600_000).is_err());
    }

    #[test]
    fn retry_after_counts_whole_seconds_until_the_next_token() {
        let limits = LookupLimits { per_minute: 6, burst: 1 };
        let g = Guard::new(limits);
        let c = client(1);
        assert_eq!(g.admit(c, 0), Ok(()));
        // Six a minute: a token every 10 s.
        assert_eq!(g.admit(c, 0), Err(RetryAfter { seconds: 10 }));
        assert_eq!(g.admit(c, 7_500), Err(RetryAfter { seconds: 3 }));
        assert_eq!(g.admit(c, 10_000), Ok(()));
    }

    #[test]
    fn ipv6_clients_share_their_slash_64_and_mapped_ipv4_is_ipv4() {
        let a: Ipv6Addr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientKey::of(a.into()), ClientKey::of(b.into()));
        assert_ne!(ClientKey::of(a.into()), ClientKey::of(c.into()));
        let mapped: Ipv6Addr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(ClientKey::of(mapped.into()), client(1));
    }

    #[test]
    fn memory_is_bounded() {
        let g = Guard::with_capacity(LookupLimits::DEFAULT, 64);
        assert_eq!(lock(&g.clients).capacity(), 64);
        for i in 0..10_000u32 {
            let c = ClientKey::of(IpAddr::V4(Ipv4Addr::from(i)));
            let _ = g.admit(c, 0);
        }
        assert_eq!(lock(&g.clients).capacity(), 64, "the table never grows");
    }

    #[test]
    fn an_exhausted_bucket_is_kept_over_full_ones() {
        let g = Guard::with_capacity(LookupLimits::DEFAULT, 4);
        let greedy = client(1);
        for _ in 0..20 {
            g.admit(greedy, 0).unwrap();
        }
        assert!(g.admit(greedy, 0).is_err());
        // One set of 4 slots: three fresh clients (each leaving 19 of 20
        // tokens) do not push the empty bucket out.
        for i in 2..200u8 {
            g.admit(client(i), 0).unwrap();
        }
        assert!(g.admit(greedy, 0).is_err(), "the empty bucket must survive");
    }
}
