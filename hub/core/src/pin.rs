//! The citizen's lookup PIN and its verifier: the one definition that agency
//! services (which publish the verifier in `case_opened`) and the hub (which
//! checks a PIN against it) both use.
//!
//! ```text
//! verifier = SHA-256( "mpp-pin-verifier-v1" || 0x00 || u32_be(len(pepper)) || pepper
//!                     || the tracking number's 15 ASCII digits (no hyphens)
//!                     || the PIN's 6 ASCII digits )
//! ```
//!
//! Every part has a fixed length or a length prefix, so no two inputs share
//! an encoding. A six-digit PIN has only 10^6 values: the pepper, a secret
//! shared by the agency services and the hub of one province, is what keeps
//! anyone who reads the log from finding every PIN by trying them all.
//!
//! Everything here is pure: reading a pepper file and generating a random
//! PIN happen at the edges (the agency kit, the hub).

use std::fmt;

use sha2::{Digest, Sha256};

use crate::ids::TrackingNumber;

/// Digits of a lookup PIN.
pub const PIN_DIGITS: usize = 6;

/// Bytes of a PIN verifier (a SHA-256 digest).
pub const PIN_VERIFIER_BYTES: usize = 32;

/// Domain tag of [`pin_verifier`], versioned so the construction can change.
pub const PIN_VERIFIER_DOMAIN: &[u8] = b"mpp-pin-verifier-v1";

/// Shortest accepted PIN pepper, in bytes (after trimming).
pub const PIN_PEPPER_BYTES_MIN: usize = 16;

/// Longest accepted PIN pepper, in bytes (after trimming; it fits a `u32`
/// length prefix with room to spare).
pub const PIN_PEPPER_BYTES_MAX: usize = 4096;

/// The pepper of development set-ups that were given no pepper file. Public
/// on purpose: it protects nothing, and every program using it must say so
/// loudly when it starts.
pub const DEV_PIN_PEPPER: &[u8] = b"mpp-dev-pin-pepper-NOT-FOR-PRODUCTION";

/// A lookup PIN: exactly six ASCII digits. `Debug` output is redacted, so a
/// PIN cannot end up in a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin([u8; PIN_DIGITS]);

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

impl Pin {
    /// Parses exactly six ASCII digits (no separators, no other characters).
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != PIN_DIGITS || !b.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut out = [0u8; PIN_DIGITS];
        out.copy_from_slice(b);
        Some(Self(out))
    }

    /// The PIN whose digits spell `n` with leading zeros; `None` when `n`
    /// has more than six digits.
    pub fn from_number(n: u32) -> Option<Self> {
        if n >= 1_000_000 {
            return None;
        }
        let mut rest = n;
        let mut out = [b'0'; PIN_DIGITS];
        for d in out.iter_mut().rev() {
            // `rest % 10` is a single decimal digit.
            *d = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        Some(Self(out))
    }

    /// The six digits, to hand to the citizen. Never log them.
    pub fn expose(&self) -> &str {
        // Digits are ASCII by construction; the fallback is unreachable.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

/// Why a pepper was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("PIN pepper must be {PIN_PEPPER_BYTES_MIN}..={PIN_PEPPER_BYTES_MAX} bytes after trimming, got {len}")]
pub struct PepperLengthError {
    /// Its length after trimming.
    pub len: usize,
}

/// The secret key of [`pin_verifier`]. `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct PinPepper(Vec<u8>);

impl fmt::Debug for PinPepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PinPepper(<redacted>)")
    }
}

impl PinPepper {
    /// A pepper from raw bytes, e.g. a file's contents: leading and trailing
    /// ASCII whitespace (such as the file's final newline) is not part of it.
    /// After trimming it must hold [`PIN_PEPPER_BYTES_MIN`]..=
    /// [`PIN_PEPPER_BYTES_MAX`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PepperLengthError> {
        let trimmed = bytes.trim_ascii();
        if !(PIN_PEPPER_BYTES_MIN..=PIN_PEPPER_BYTES_MAX).contains(&trimmed.len()) {
            return Err(PepperLengthError { len: trimmed.len() });
        }
        Ok(Self(trimmed.to_vec()))
    }

    /// The public development pepper [`DEV_PIN_PEPPER`]. The caller must
    /// warn loudly that it protects nothing.
    pub fn insecure_dev() -> Self {
        Self(DEV_PIN_PEPPER.to_vec())
    }
}

/// The verifier of `pin` for the case `tracking` under `pepper` (see the
/// module docs for the construction).
pub fn pin_verifier(pepper: &PinPepper, tracking: &TrackingNumber, pin: &Pin) -> [u8; PIN_VERIFIER_BYTES] {
    let mut h = Sha256::new();
    h.update(PIN_VERIFIER_DOMAIN);
    h.update([0u8]);
    // A pepper holds at most PIN_PEPPER_BYTES_MAX (4096) bytes, so its
    // length fits in a u32.
    h.update((pepper.0.len() as u32).to_be_bytes());
    h.update(&pepper.0);
    h.update(tracking.digits());
    h.update(pin.0);
    h.finalize().into()
}

/// Whether a stored verifier equals a computed one, in time that does not
/// depend on where they differ (every byte is compared). A stored verifier of
/// another length never matches; the length is not secret.
pub fn verifier_matches(stored: &[u8], computed: &[u8; PIN_VERIFIER_BYTES]) -> bool {
    if stored.len() != PIN_VERIFIER_BYTES {
        return false;
    }
    let diff = stored.iter().zip(computed.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    // Keep the optimiser from turning the fold into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::RegionCode;

    fn tn(serial: u64) -> TrackingNumber {
        TrackingNumber::new(RegionCode::parse("1771").unwrap(), serial).unwrap()
    }

    #[test]
    fn pins_are_six_ascii_digits_and_redacted() {
        assert_eq!(Pin::parse("042137").map(|p| p.expose().to_owned()), Some("042137".to_owned()));
        for bad in ["", "12345", "1234567", "12345a", "12 345", "１２３４５６", "-12345"] {
            assert_eq!(Pin::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Pin::from_number(42).unwrap().expose(), "000042");
        assert_eq!(Pin::from_number(999_999).unwrap().expose(), "999999");
        assert_eq!(Pin::from_number(1_000_000), None);
        assert_eq!(format!("{:?}", Pin::parse("042137").unwrap()), "Pin(<redacted>)");
    }

    #[test]
    fn pepper_is_trimmed_and_bounded() {
        assert_eq!(PinPepper::from_bytes(b"short"), Err(PepperLengthError { len: 5 }));
        assert_eq!(PinPepper::from_bytes(b"  \n\t  "), Err(PepperLengthError { len: 0 }));
        assert!(PinPepper::from_bytes(&vec![b'x'; PIN_PEPPER_BYTES_MAX + 1]).is_err());
        assert!(PinPepper::from_bytes(&vec![b'x'; PIN_PEPPER_BYTES_MAX]).is_ok());
        assert_eq!(
            PinPepper::from_bytes(b"0123456789abcdef\n").unwrap(),
            PinPepper::from_bytes(b"0123456789abcdef").unwrap()
        );
        assert_eq!(format!("{:?}", PinPepper::insecure_dev()), "PinPepper(<redacted>)");
    }

    #[test]
    fn the_verifier_is_the_documented_construction() {
        let pepper = PinPepper::from_bytes(b"0123456789abcdef\n").unwrap();
        let t = tn(12345);
        let pin = Pin::parse("042137").unwrap();
        let mut h = Sha256::new();
        h.update(b"mpp-pin-verifier-v1\0");
        h.update(16u32.to_be_bytes());
        h.update(b"0123456789abcdef");
        h.update(b"177100000123457");
        h.update(b"042137");
        let expected: [u8; 32] = h.finalize().into();
        assert_eq!(t.digits(), *b"177100000123457", "check digit of the fixture");
        assert_eq!(pin_verifier(&pepper, &t, &pin), expected);
    }

    #[test]
    fn the_verifier_is_keyed_and_bound_to_case_and_pin() {
        let pepper = PinPepper::from_bytes(b"0123456789abcdef").unwrap();
        let other = PinPepper::from_bytes(b"0123456789abcdeX").unwrap();
        let pin = Pin::parse("042137").unwrap();
        let v = pin_verifier(&pepper, &tn(1), &pin);
        assert_eq!(v, pin_verifier(&pepper, &tn(1), &pin), "deterministic");
        assert_ne!(v, pin_verifier(&other, &tn(1), &pin));
        assert_ne!(v, pin_verifier(&pepper, &tn(2), &pin));
        assert_ne!(v, pin_verifier(&pepper, &tn(1), &Pin::parse("042138").unwrap()));
    }

    #[test]
    fn verifiers_match_only_when_equal_and_of_full_length() {
        let pepper = PinPepper::insecure_dev();
        let v = pin_verifier(&pepper, &tn(7), &Pin::parse("000000").unwrap());
        assert!(verifier_matches(&v, &v));
        for i in 0..PIN_VERIFIER_BYTES {
            let mut w = v;
            w[i] ^= 0x80;
            assert!(!verifier_matches(&w, &v), "byte {i}");
        }
        assert!(!verifier_matches(&v[..31], &v));
        assert!(!verifier_matches(&[], &v));
        let mut longer = v.to_vec();
        longer.push(0);
        assert!(!verifier_matches(&longer, &v));
    }
}
