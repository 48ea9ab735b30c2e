//! The tracking page's session: after a lookup with the right PIN, the
//! browser gets a cookie that lets it see that one case again (language
//! switch, live updates) for [`SESSION_TTL_MS`] without retyping the PIN.
//!
//! The cookie is stateless and bounded: `<15 digits>.<expiry ms>.<tag>`,
//! where the tag is HMAC-SHA256 (hex) under a key drawn at start from the
//! operating system's generator. Nothing is stored on the server; a restart
//! ends every session (the citizen types the PIN again). The cookie is
//! `HttpOnly`, `SameSite=Strict`, scoped to `/lacak/<number>`, and `Secure`
//! when the hub's public URL is https.

use mpp_core::TrackingNumber;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// How long a session lasts, in milliseconds: 30 minutes.
pub const SESSION_TTL_MS: i64 = 30 * 60 * 1000;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "mpp_sesi";

/// Longest cookie value accepted, in bytes (a real one has 15 + 1 + 13 + 1 + 64).
pub const SESSION_COOKIE_BYTES_MAX: usize = 128;

/// Why the session key could not be made.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the operating system's random generator failed")]
pub struct RandomUnavailable;

/// Issues and checks session cookies.
pub struct Sessions {
    key: hmac::Key,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sessions(<key redacted>)")
    }
}

impl Sessions {
    /// Sessions under a fresh random key.
    pub fn new() -> Result<Self, RandomUnavailable> {
        let mut secret = [0u8; 32];
        SystemRandom::new().fill(&mut secret).map_err(|_| RandomUnavailable)?;
        Ok(Self::with_key(&secret))
    }

    /// Sessions under a given key (tests).
    pub fn with_key(secret: &[u8]) -> Self {
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, secret) }
    }

    fn tag(&self, digits: &[u8; 15], expires_ms: i64) -> String {
        let mut msg = Vec::with_capacity(15 + 1 + 20);
        msg.extend_from_slice(digits);
        msg.push(b'.');
        msg.extend_from_slice(expires_ms.to_string().as_bytes());
        hex::encode(hmac::sign(&self.key, &msg).as_ref())
    }

    /// A cookie value for `case`, valid until `now_ms + SESSION_TTL_MS`.
    pub fn issue(&self, case: &TrackingNumber, now_ms: i64) -> String {
        let digits = case.digits();
        let expires = now_ms.saturating_add(SESSION_TTL_MS);
        // The digits are ASCII by construction.
        let d = std::str::from_utf8(&digits).unwrap_or("");
        format!("{d}.{expires}.{}", self.tag(&digits, expires))
    }

    /// Whether `value` is a live session for `case` at `now_ms`. The tag is
    /// checked in constant time.
    pub fn check(&self, value: &str, case: &TrackingNumber, now_ms: i64) -> bool {
        if value.len() > SESSION_COOKIE_BYTES_MAX {
            return false;
        }
        let mut parts = value.split('.');
        let (Some(d), Some(exp), Some(tag), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let digits = case.digits();
        if d.as_bytes() != digits {
            return false;
        }
        let Ok(expires) = exp.parse::<i64>() else { return false };
        if expires <= now_ms || expires > now_ms.saturating_add(SESSION_TTL_MS) {
            return false;
        }
        let Ok(tag) = hex::decode(tag) else { return false };
        let mut msg = Vec::with_capacity(15 + 1 + exp.len());
        msg.extend_from_slice(&digits);
        msg.push(b'.');
        msg.extend_from_slice(exp.as_bytes());
        hmac::verify(&self.key, &msg, &tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use mpp_core::RegionCode;

    use super::*;

    fn tn(serial: u64) -> TrackingNumber {
        TrackingNumber::new(RegionCode::parse("1771").unwrap(), serial).unwrap()
    }

    #[test]
    fn a_session_opens_its_case_only_until_it_expires() {
        let s = Sessions::new().unwrap();
        let c = s.issue(&tn(1), 1_000);
        assert!(s.check(&c, &tn(1), 1_000));
        assert!(s.check(&c, &tn(1), 1_000 + SESSION_TTL_MS - 1));
        assert!(!s.check(&c, &tn(1), 1_000 + SESSION_TTL_MS), "expired");
        assert!(!s.check(&c, &tn(2), 1_000), "another case");
        assert!(!Sessions::new().unwrap().check(&c, &tn(1), 1_000), "another key (a restarted hub)");
    }

    #[test]
    fn forged_or_garbled_cookies_fail() {
        let s = Sessions::with_key(b"k");
        let c = s.issue(&tn(1), 0);
        let (head, tag) = c.rsplit_once('.').unwrap();
        let (digits, _) = head.split_once('.').unwrap();
        // A later expiry with the old tag.
        assert!(!s.check(&format!("{digits}.{}.{tag}", SESSION_TTL_MS - 1), &tn(1), 0));
        let mut flipped = c.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        assert!(!s.check(&String::from_utf8(flipped).unwrap(), &tn(1), 0));
        for bad in ["", "...", "x", &format!("{c}.x"), &"1".repeat(500), "177100000000011.9.zz"] {
            assert!(!s.check(bad, &tn(1), 0), "{bad:?}");
        }
        // An expiry too far ahead is refused even with a valid tag.
        let far = Sessions::with_key(b"k").issue(&tn(1), 10 * SESSION_TTL_MS);
        assert!(!s.check(&far, &tn(1), 0));
    }
}
