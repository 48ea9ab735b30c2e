//! The tracking page's session: after a lookup with the right PIN, the
//! browser gets a cookie that lets it see that one case again (language
//! switch, live updates) for [`SESSION_TTL_MS`] without retyping the PIN.
//!
//! The cookie is stateless and bounded: `<15 digits>.<expiry ms>.<tag>`,
//! where the tag is HMAC-SHA256 (hex). The key comes from a secret file
//! every replica shares (`--session-key-file`, [`Sessions::from_key_files`]),
//! so a session opened on one replica is valid on the others and across
//! restarts; a previous key (`--previous-session-key-file`) is accepted for
//! checking only, so a rotation keeps open sessions for their lifetime.
//! Without a file, the key is drawn at start from the operating system's
//! generator and a restart ends every session (the citizen types the PIN
//! again). Nothing is stored on the server. The cookie is
//! `HttpOnly`, `SameSite=Strict`, scoped to `/lacak/<number>`, and `Secure`
//! when the hub's public URL is https.

use std::path::{Path, PathBuf};

use mpp_core::TrackingNumber;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// How long a session lasts, in milliseconds: 30 minutes.
pub const SESSION_TTL_MS: i64 = 30 * 60 * 1000;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "mpp_sesi";

/// Longest cookie value accepted, in bytes (a real one has 15 + 1 + 13 + 1 + 64).
pub const SESSION_COOKIE_BYTES_MAX: usize = 128;

/// Fewest bytes of a session key file's key (64 hex digits).
pub const SESSION_KEY_BYTES_MIN: usize = 32;

/// Most bytes of a session key file's key (1024 hex digits).
pub const SESSION_KEY_BYTES_MAX: usize = 512;

/// Why a session key file was refused.
#[derive(Debug, thiserror::Error)]
pub enum SessionKeyError {
    /// The file cannot be read.
    #[error("cannot read the session key file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not hex, or its key is too short or too long.
    #[error(
        "the session key file {path} must hold {SESSION_KEY_BYTES_MIN}..={SESSION_KEY_BYTES_MAX} random bytes \
         as hex ({} to {} hex digits; surrounding whitespace ignored), e.g. from \
         `od -An -tx1 -N32 /dev/urandom | tr -d ' \\n'`: {reason}",
        SESSION_KEY_BYTES_MIN * 2,
        SESSION_KEY_BYTES_MAX * 2
    )]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the file's content).
        reason: &'static str,
    },
}

/// Reads a session key file: hex digits, surrounding whitespace ignored,
/// [`SESSION_KEY_BYTES_MIN`]..=[`SESSION_KEY_BYTES_MAX`] bytes.
fn read_key_file(path: &Path) -> Result<Vec<u8>, SessionKeyError> {
    let format = |reason| SessionKeyError::Format { path: path.to_owned(), reason };
    let read = |source| SessionKeyError::Read { path: path.to_owned(), source };
    // Read at most one byte past the longest accepted file (with room for
    // whitespace), so a wrong path to a large file fails fast.
    let limit = (SESSION_KEY_BYTES_MAX * 2 + 64) as u64;
    let mut raw = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(std::fs::File::open(path).map_err(read)?, limit + 1),
        &mut raw,
    )
    .map_err(read)?;
    if raw.len() as u64 > limit {
        return Err(format("the file is too long"));
    }
    let text =
        std::str::from_utf8(&raw).map_err(|_| format("the file is not text (raw bytes are not accepted)"))?;
    let key = hex::decode(text.trim()).map_err(|_| format("the file is not hex"))?;
    if key.len() < SESSION_KEY_BYTES_MIN {
        return Err(format("the key is too short"));
    }
    if key.len() > SESSION_KEY_BYTES_MAX {
        return Err(format("the key is too long"));
    }
    Ok(key)
}

/// Why the session key could not be made.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the operating system's random generator failed")]
pub struct RandomUnavailable;

/// Issues and checks session cookies.
pub struct Sessions {
    key: hmac::Key,
    /// Accepted when checking, never used to issue.
    previous: Option<hmac::Key>,
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
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, secret), previous: None }
    }

    /// Sessions under the key of `current` (`--session-key-file`), also
    /// accepting those issued under `previous`
    /// (`--previous-session-key-file`), each a file of
    /// [`SESSION_KEY_BYTES_MIN`]..=[`SESSION_KEY_BYTES_MAX`] random bytes
    /// in hex.
    pub fn from_key_files(current: &Path, previous: Option<&Path>) -> Result<Self, SessionKeyError> {
        let key = read_key_file(current)?;
        let previous = previous.map(read_key_file).transpose()?;
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
            previous: previous.map(|p| hmac::Key::new(hmac::HMAC_SHA256, &p)),
        })
    }

    /// HMAC-SHA-256 tags of `msg` under the current key (first) and the
    /// previous one, for another use of the key every replica shares
    /// (proofs of work, [`crate::pow`]): a token is made with the first and
    /// accepted with either. `domain` separates the uses; it must not start
    /// with a digit, so no tag of another use is a session cookie's (whose
    /// message starts with the tracking number's digits).
    pub(crate) fn tags_for(&self, domain: &[u8], msg: &[u8]) -> Vec<[u8; 32]> {
        debug_assert!(domain.first().is_some_and(|b| !b.is_ascii_digit()));
        std::iter::once(&self.key)
            .chain(self.previous.as_ref())
            .map(|key| {
                let mut ctx = hmac::Context::with_key(key);
                ctx.update(domain);
                ctx.update(&[0]);
                ctx.update(msg);
                let mut out = [0u8; 32];
                out.copy_from_slice(ctx.sign().as_ref());
                out
            })
            .collect()
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
            || self.previous.as_ref().is_some_and(|k| hmac::verify(k, &msg, &tag).is_ok())
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

    fn key_file(dir: &Path, name: &str, content: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn replicas_sharing_a_key_file_share_sessions_and_a_rotation_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let old = key_file(dir.path(), "old", &format!("{}\n", "ab".repeat(32)));
        let new = key_file(dir.path(), "new", &"cd".repeat(48));
        let other = key_file(dir.path(), "other", &"ef".repeat(32));
        let replica_a = Sessions::from_key_files(&old, None).unwrap();
        let replica_b = Sessions::from_key_files(&old, None).unwrap();
        let c = replica_a.issue(&tn(1), 1_000);
        assert!(replica_b.check(&c, &tn(1), 1_000), "another replica, same key file");
        assert!(!replica_b.check(&c, &tn(2), 1_000), "still only its case");
        // Rotated: the new key issues, the old one still opens the sessions it issued.
        let rotated = Sessions::from_key_files(&new, Some(&old)).unwrap();
        assert!(rotated.check(&c, &tn(1), 1_000 + SESSION_TTL_MS - 1));
        assert!(!rotated.check(&c, &tn(1), 1_000 + SESSION_TTL_MS), "expiry still holds");
        let fresh = rotated.issue(&tn(1), 1_000);
        assert!(!replica_a.check(&fresh, &tn(1), 1_000), "the previous key never issues");
        assert!(Sessions::from_key_files(&new, None).unwrap().check(&fresh, &tn(1), 1_000));
        // An unrelated key opens nothing, as current or as previous.
        assert!(!Sessions::from_key_files(&other, None).unwrap().check(&c, &tn(1), 1_000));
        assert!(!Sessions::from_key_files(&new, Some(&other)).unwrap().check(&c, &tn(1), 1_000));
        assert!(!Sessions::new().unwrap().check(&c, &tn(1), 1_000), "a random per-process key");
    }

    #[test]
    fn bad_key_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let good = key_file(dir.path(), "good", &"ab".repeat(32));
        let refused = |content: &[u8]| {
            let path = dir.path().join("bad");
            std::fs::write(&path, content).unwrap();
            let e = Sessions::from_key_files(&good, Some(&path)).unwrap_err();
            assert!(matches!(e, SessionKeyError::Format { .. }), "{e}");
            let e2 = Sessions::from_key_files(&path, None).unwrap_err().to_string();
            assert!(e2.contains("64 to 1024 hex digits") && e2.contains("bad"), "{e2}");
            e2
        };
        assert!(refused(&"ab".repeat(31).into_bytes()).contains("too short"));
        assert!(refused(b"").contains("too short"));
        assert!(refused("ab".repeat(SESSION_KEY_BYTES_MAX + 1).as_bytes()).contains("too long"));
        assert!(refused(&vec![b'a'; 1 << 20]).contains("too long"));
        assert!(refused(&format!("{}z", "ab".repeat(32)).into_bytes()).contains("not hex"));
        assert!(refused(&"ab".repeat(32).into_bytes()[1..]).contains("not hex"), "odd length");
        assert!(refused(&[0xff; 64]).contains("not text"));
        let missing = Sessions::from_key_files(&dir.path().join("missing"), None).unwrap_err();
        assert!(matches!(missing, SessionKeyError::Read { .. }), "{missing}");
        assert!(missing.to_string().contains("missing"), "{missing}");
    }
}
