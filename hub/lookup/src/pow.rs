//! Proofs of work, asked of every lookup while the global failed-lookup
//! budget is spent ([`crate::guard`]): no third-party CAPTCHA, and a way
//! without JavaScript.
//!
//! - **Challenge** (`c1.<expires ms>.<bits>.<salt>.<tag>`): issued by the
//!   hub, an HMAC under the page-session key every replica shares
//!   ([`crate::session::Sessions`]) over the expiry, the difficulty, a
//!   random salt and the client's network (IPv4 address or IPv6 /64), so it
//!   is good only from there and only until it expires
//!   ([`CHALLENGE_TTL_MS`]). The client finds a counter `n` (decimal) such
//!   that `SHA-256(challenge ":" tracking-digits ":" n)` starts with `bits`
//!   zero bits, and sends `challenge:n` (header `X-MPP-POW`, gRPC metadata
//!   `x-mpp-pow`, the page's `bukti` field). A solution is good for one
//!   tracking number: each number guessed costs `2^bits` hashes on average.
//!   The tracking page's script (`/lacak/pow.js`) solves it in the browser.
//! - **Delay token** (`d1.<not before ms>.<expires ms>.<salt>.<tag>`), the
//!   way without JavaScript: the form carries one, good from a moment
//!   [`ProofOfWork::fallback_delay_ms`] ahead. Tokens for one client
//!   network are spaced by that delay (so waiting in parallel buys nothing),
//!   and each is accepted once per replica.
//!
//! Nothing here is stored but the spacing and the used salts, both in
//! bounded tables.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

use crate::session::Sessions;

/// How long a challenge may be solved and its solution used, in ms.
pub const CHALLENGE_TTL_MS: i64 = 10 * 60 * 1000;

/// How long a delay token is good after its not-before time, in ms.
pub const DELAY_TOKEN_TTL_MS: i64 = 5 * 60 * 1000;

/// Longest proof accepted, in bytes.
pub const PROOF_BYTES_MAX: usize = 160;

/// Most difficulty the hub asks (bits); each bit doubles the work.
pub const POW_DIFFICULTY_BITS_MAX: u8 = 32;

/// Client networks whose delay-token spacing is remembered; beyond it the
/// oldest is forgotten.
pub const DELAY_CLIENTS_TRACKED_MAX: usize = 65_536;

/// Used delay-token salts remembered (each until it expires); when full,
/// delay tokens are refused until some expire.
pub const DELAY_TOKENS_USED_MAX: usize = 65_536;

/// Bytes of a token's tag (a truncated HMAC-SHA-256: 128 bits).
pub const TAG_BYTES: usize = 16;

const CHALLENGE_DOMAIN: &[u8] = b"mpp-pow-challenge-v1";
const DELAY_DOMAIN: &[u8] = b"mpp-pow-delay-v1";

/// The client's network a token is bound to: an IPv4 address (IPv4-mapped
/// included) or an IPv6 /64.
fn network(client: IpAddr) -> Vec<u8> {
    match client {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => v6.octets()[..8].to_vec(),
        },
    }
}

/// Whether `hash` starts with `bits` zero bits.
pub fn leading_zero_bits_at_least(hash: &[u8], bits: u8) -> bool {
    let mut left = u32::from(bits);
    for b in hash {
        if left == 0 {
            return true;
        }
        let z = b.leading_zeros();
        if z < left.min(8) {
            return false;
        }
        left = left.saturating_sub(8);
    }
    left == 0
}

/// The hash a solution must make small.
pub fn work_hash(challenge: &str, tracking_digits: &[u8; 15], counter: &str) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(challenge.as_bytes());
    ctx.update(b":");
    ctx.update(tracking_digits);
    ctx.update(b":");
    ctx.update(counter.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Finds a solution of `challenge` for `tracking_digits` (clients, tests
/// and the bench; at most `tries_max` hashes).
pub fn solve(challenge: &str, tracking_digits: &[u8; 15], bits: u8, tries_max: u64) -> Option<String> {
    (0..tries_max)
        .map(|n| n.to_string())
        .find(|n| leading_zero_bits_at_least(&work_hash(challenge, tracking_digits, n), bits))
        .map(|n| format!("{challenge}:{n}"))
}

#[derive(Debug, Default)]
struct DelayState {
    /// The latest not-before handed to each client network.
    next: HashMap<Vec<u8>, i64>,
    order: VecDeque<Vec<u8>>,
    /// Salts used, with their expiry.
    used: HashMap<[u8; 8], i64>,
}

/// Issues and checks challenges and delay tokens.
pub struct ProofOfWork {
    sessions: std::sync::Arc<Sessions>,
    difficulty_bits: u8,
    fallback_delay_ms: i64,
    delay: Mutex<DelayState>,
    rng: SystemRandom,
}

impl std::fmt::Debug for ProofOfWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofOfWork")
            .field("difficulty_bits", &self.difficulty_bits)
            .field("fallback_delay_ms", &self.fallback_delay_ms)
            .finish_non_exhaustive()
    }
}

/// What a proof is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofCheck {
    /// Good for this lookup.
    Valid,
    /// A delay token used before its time: wait this long (ms).
    TooEarly {
        /// Milliseconds until it is good.
        wait_ms: i64,
    },
    /// Malformed, forged, expired, for another client or number, too easy,
    /// or a delay token used already.
    Invalid,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ProofOfWork {
    /// Proofs under `sessions`' key, asking `difficulty_bits` (at most
    /// [`POW_DIFFICULTY_BITS_MAX`]) and offering delay tokens good
    /// `fallback_delay_ms` after they are handed out.
    pub fn new(sessions: std::sync::Arc<Sessions>, difficulty_bits: u8, fallback_delay_ms: i64) -> Self {
        Self {
            sessions,
            difficulty_bits: difficulty_bits.min(POW_DIFFICULTY_BITS_MAX),
            fallback_delay_ms: fallback_delay_ms.max(0),
            delay: Mutex::default(),
            rng: SystemRandom::new(),
        }
    }

    /// The difficulty asked, in bits.
    pub fn difficulty_bits(&self) -> u8 {
        self.difficulty_bits
    }

    /// How long after it is handed out a delay token is good, in ms.
    pub fn fallback_delay_ms(&self) -> i64 {
        self.fallback_delay_ms
    }

    fn salt(&self) -> [u8; 8] {
        let mut s = [0u8; 8];
        // The system generator does not fail on supported platforms; a zero
        // salt would still be bound to time and client.
        let _ = self.rng.fill(&mut s);
        s
    }

    fn challenge_msg(expires: i64, bits: u8, salt: &str, net: &[u8]) -> Vec<u8> {
        format!("{expires}.{bits}.{salt}.{}", hex::encode(net)).into_bytes()
    }

    /// A fresh challenge for `client`.
    pub fn challenge(&self, client: IpAddr, now_ms: i64) -> String {
        let expires = now_ms.saturating_add(CHALLENGE_TTL_MS);
        let salt = hex::encode(self.salt());
        let bits = self.difficulty_bits;
        let tags = self
            .sessions
            .tags_for(CHALLENGE_DOMAIN, &Self::challenge_msg(expires, bits, &salt, &network(client)));
        format!("c1.{expires}.{bits}.{salt}.{}", hex::encode(&tags[0][..TAG_BYTES]))
    }

    /// A delay token for `client`, good from `fallback_delay_ms` after the
    /// last one handed to its network (or after now); returns the token and
    /// its not-before time.
    pub fn delay_token(&self, client: IpAddr, now_ms: i64) -> (String, i64) {
        let net = network(client);
        let not_before = {
            let mut d = lock(&self.delay);
            let last = d.next.get(&net).copied().unwrap_or(i64::MIN);
            let nbf = last.max(now_ms).saturating_add(self.fallback_delay_ms);
            if d.next.insert(net.clone(), nbf).is_none() {
                d.order.push_back(net.clone());
                while d.order.len() > DELAY_CLIENTS_TRACKED_MAX {
                    if let Some(old) = d.order.pop_front() {
                        d.next.remove(&old);
                    }
                }
            }
            nbf
        };
        let expires = not_before.saturating_add(DELAY_TOKEN_TTL_MS);
        let salt = hex::encode(self.salt());
        let msg = format!("{not_before}.{expires}.{salt}.{}", hex::encode(&net));
        let tags = self.sessions.tags_for(DELAY_DOMAIN, msg.as_bytes());
        (format!("d1.{not_before}.{expires}.{salt}.{}", hex::encode(&tags[0][..TAG_BYTES])), not_before)
    }

    /// What `proof` is worth for a lookup of `tracking_digits` by `client`.
    pub fn check(&self, proof: &str, tracking_digits: &[u8; 15], client: IpAddr, now_ms: i64) -> ProofCheck {
        if proof.len() > PROOF_BYTES_MAX || !proof.is_ascii() {
            return ProofCheck::Invalid;
        }
        let net = network(client);
        if let Some(rest) = proof.strip_prefix("c1.") {
            return self.check_solution(proof, rest, tracking_digits, &net, now_ms);
        }
        if let Some(rest) = proof.strip_prefix("d1.") {
            return self.check_delay(rest, &net, now_ms);
        }
        ProofCheck::Invalid
    }

    fn check_solution(
        &self,
        proof: &str,
        rest: &str,
        digits: &[u8; 15],
        net: &[u8],
        now_ms: i64,
    ) -> ProofCheck {
        let Some((challenge, counter)) = proof.rsplit_once(':') else { return ProofCheck::Invalid };
        let rest = rest.split_once(':').map_or(rest, |(c, _)| c);
        let f: Vec<&str> = rest.split('.').collect();
        let [expires, bits, salt, tag] = f[..] else { return ProofCheck::Invalid };
        let (Ok(expires), Ok(bits)) = (expires.parse::<i64>(), bits.parse::<u8>()) else {
            return ProofCheck::Invalid;
        };
        if counter.is_empty() || counter.len() > 20 || !counter.bytes().all(|b| b.is_ascii_digit()) {
            return ProofCheck::Invalid;
        }
        if now_ms >= expires
            || expires > now_ms.saturating_add(CHALLENGE_TTL_MS)
            || bits < self.difficulty_bits
        {
            return ProofCheck::Invalid;
        }
        let Ok(tag) = hex::decode(tag) else { return ProofCheck::Invalid };
        if !self.authentic(CHALLENGE_DOMAIN, &Self::challenge_msg(expires, bits, salt, net), &tag) {
            return ProofCheck::Invalid;
        }
        if leading_zero_bits_at_least(&work_hash(challenge, digits, counter), bits) {
            ProofCheck::Valid
        } else {
            ProofCheck::Invalid
        }
    }

    fn authentic(&self, domain: &[u8], msg: &[u8], tag: &[u8]) -> bool {
        tag.len() == TAG_BYTES
            && self.sessions.tags_for(domain, msg).iter().any(|t| constant_time_eq(&t[..TAG_BYTES], tag))
    }

    fn check_delay(&self, rest: &str, net: &[u8], now_ms: i64) -> ProofCheck {
        let f: Vec<&str> = rest.split('.').collect();
        let [nbf, expires, salt, tag] = f[..] else { return ProofCheck::Invalid };
        let (Ok(nbf), Ok(expires)) = (nbf.parse::<i64>(), expires.parse::<i64>()) else {
            return ProofCheck::Invalid;
        };
        let (Ok(salt_bytes), Ok(tag)) = (hex::decode(salt), hex::decode(tag)) else {
            return ProofCheck::Invalid;
        };
        let Ok(salt_bytes) = <[u8; 8]>::try_from(salt_bytes) else { return ProofCheck::Invalid };
        let msg = format!("{nbf}.{expires}.{salt}.{}", hex::encode(net));
        if !self.authentic(DELAY_DOMAIN, msg.as_bytes(), &tag)
            || now_ms >= expires
            || expires != nbf.saturating_add(DELAY_TOKEN_TTL_MS)
        {
            return ProofCheck::Invalid;
        }
        if now_ms < nbf {
            return ProofCheck::TooEarly { wait_ms: nbf - now_ms };
        }
        let mut d = lock(&self.delay);
        d.used.retain(|_, exp| *exp > now_ms);
        if d.used.contains_key(&salt_bytes) || d.used.len() >= DELAY_TOKENS_USED_MAX {
            return ProofCheck::Invalid;
        }
        d.used.insert(salt_bytes, expires);
        ProofCheck::Valid
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const TN: [u8; 15] = *b"177100000123457";
    const OTHER: [u8; 15] = *b"177100000123464";

    fn pow(bits: u8) -> ProofOfWork {
        ProofOfWork::new(std::sync::Arc::new(Sessions::with_key(&[9; 32])), bits, 15_000)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn zero_bits_are_counted_from_the_left() {
        assert!(leading_zero_bits_at_least(&[0, 0x0f], 12));
        assert!(!leading_zero_bits_at_least(&[0, 0x1f], 12));
        assert!(leading_zero_bits_at_least(&[0xff], 0));
        assert!(!leading_zero_bits_at_least(&[0, 0], 17));
    }

    #[test]
    fn a_solved_challenge_is_good_for_its_number_client_and_lifetime_only() {
        let p = pow(8);
        let c = p.challenge(ip("2001:db8::1"), 1_000);
        let proof = solve(&c, &TN, 8, 1 << 16).unwrap();
        assert_eq!(p.check(&proof, &TN, ip("2001:db8::99"), 2_000), ProofCheck::Valid, "same /64");
        // A proof is bound to its number by the hash: for another number it
        // meets the difficulty only by chance (2^-8 here), so count over
        // many challenges rather than assert on one.
        let for_other = (0..64)
            .filter(|i| {
                let c = p.challenge(ip("2001:db8::1"), 1_000 + i);
                let proof = solve(&c, &TN, 8, 1 << 16).unwrap();
                p.check(&proof, &OTHER, ip("2001:db8::1"), 2_000) == ProofCheck::Valid
            })
            .count();
        assert!(for_other <= 8, "{for_other} of 64 proofs also held for another number (expected 0.25)");
        assert_eq!(p.check(&proof, &TN, ip("2001:db8:0:1::1"), 2_000), ProofCheck::Invalid, "another /64");
        assert_eq!(p.check(&proof, &TN, ip("2001:db8::1"), 1_000 + CHALLENGE_TTL_MS), ProofCheck::Invalid);
        let forged = proof.replacen(".8.", ".0.", 1);
        assert_eq!(p.check(&forged, &TN, ip("2001:db8::1"), 2_000), ProofCheck::Invalid, "easier than asked");
        let unsolved = format!("{c}:0");
        if !leading_zero_bits_at_least(&work_hash(&c, &TN, "0"), 8) {
            assert_eq!(p.check(&unsolved, &TN, ip("2001:db8::1"), 2_000), ProofCheck::Invalid);
        }
        // Another key's challenge is not this hub's.
        let other = ProofOfWork::new(std::sync::Arc::new(Sessions::with_key(&[1; 32])), 8, 15_000);
        assert_eq!(other.check(&proof, &TN, ip("2001:db8::1"), 2_000), ProofCheck::Invalid);
        for junk in ["", "c1.", "c1.1.2.3.4:5", "x", &"c".repeat(PROOF_BYTES_MAX + 1), "c1.9.8.aa.bb:ü"] {
            assert_eq!(p.check(junk, &TN, ip("2001:db8::1"), 2_000), ProofCheck::Invalid, "{junk:?}");
        }
    }

    #[test]
    fn delay_tokens_wait_are_spaced_per_network_and_used_once() {
        let p = pow(20);
        let a = ip("10.1.2.3");
        let (t1, nbf1) = p.delay_token(a, 1_000);
        let (t2, nbf2) = p.delay_token(a, 1_000);
        assert_eq!((nbf1, nbf2), (16_000, 31_000), "spaced by the delay");
        let (_, nbf_other) = p.delay_token(ip("10.1.2.4"), 1_000);
        assert_eq!(nbf_other, 16_000, "another address has its own spacing");
        assert_eq!(p.check(&t1, &TN, a, 10_000), ProofCheck::TooEarly { wait_ms: 6_000 });
        assert_eq!(p.check(&t1, &TN, a, 16_000), ProofCheck::Valid);
        assert_eq!(p.check(&t1, &OTHER, a, 16_001), ProofCheck::Invalid, "once");
        assert_eq!(p.check(&t2, &TN, ip("10.1.2.4"), 31_000), ProofCheck::Invalid, "another client");
        assert_eq!(p.check(&t2, &TN, a, 31_000 + DELAY_TOKEN_TTL_MS), ProofCheck::Invalid, "expired");
    }
}
