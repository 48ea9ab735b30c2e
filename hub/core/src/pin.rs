//! The citizen's lookup PIN and its verifier: the one definition that agency
//! services (which publish the verifier in `case_opened`) and the hub (which
//! checks a PIN against it) both use.
//!
//! # Two shapes, two verifier versions
//!
//! A PIN issued now is **strong**: [`STRONG_PIN_CHARS`] (9) characters from
//! [`PIN_ALPHABET`], the 31 symbols `2-9` and `A-Z` without `I`, `L` and `O`
//! (so no `0`/`O` or `1`/`I`/`L` look-alikes), printed in three groups of
//! three for reading aloud (`K7M-R2X-9QH`) and typeable on any phone
//! keyboard. It carries `9 · log2(31) = 9 × 4.954 = 44.59` bits, at least
//! 40 (eight characters would give only `8 × 4.954 = 39.63`). Its verifier
//! is version 2, 33 bytes:
//!
//! ```text
//! verifier_v2 = 0x02 || SHA-256( "mpp-pin-verifier-v2" || 0x00 || u32_be(len(pepper)) || pepper
//!                                || the tracking number's 15 ASCII digits (no hyphens)
//!                                || the PIN's 9 canonical characters (upper case, no separators) )
//! ```
//!
//! A **legacy** PIN is six ASCII digits, as every PIN was before; its
//! verifier (version 1) is the 32-byte digest with no version byte, so
//! verifiers already in the log stay valid:
//!
//! ```text
//! verifier_v1 = SHA-256( "mpp-pin-verifier-v1" || 0x00 || u32_be(len(pepper)) || pepper
//!                        || the tracking number's 15 ASCII digits || the PIN's 6 ASCII digits )
//! ```
//!
//! A stored verifier's length says its version (32 bytes: v1, 33 bytes
//! starting with 2: v2); a typed PIN's shape says which version to compute,
//! so a legacy PIN keeps working until the case's PIN is re-issued.
//!
//! Every part has a fixed length or a length prefix, so no two inputs share
//! an encoding. The pepper (a secret of the agency services and the hub of
//! one province, at least 16 bytes) keys the verifier: whoever holds a
//! verifier but not the pepper learns nothing about the PIN; whoever holds
//! both must try on average `31^9 / 2 ≈ 2^43.6` strong PINs per case
//! (and `10^6 / 2` legacy ones, which is why the hub's guessing budgets
//! matter most for them).
//!
//! Everything here is pure: reading a pepper file and drawing a random PIN
//! happen at the edges (the agency kit, the hub).

use std::fmt;

use sha2::{Digest, Sha256};

use crate::ids::TrackingNumber;

/// Digits of a legacy lookup PIN.
pub const LEGACY_PIN_DIGITS: usize = 6;

/// Characters of a strong lookup PIN: `log2(31^9) = 44.59` bits.
pub const STRONG_PIN_CHARS: usize = 9;

/// Characters of a strong PIN per printed group (`K7M-R2X-9QH`).
pub const STRONG_PIN_GROUP_CHARS: usize = 3;

/// The symbols of a strong PIN: digits 2–9 and the capital letters without
/// `I`, `L` and `O` (31 symbols). `0`, `1`, `I`, `L` and `O` are left out
/// because they are read and typed as each other.
pub const PIN_ALPHABET: &[u8; 31] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";

/// How many strong PINs exist: `31^9 = 26 439 622 160 671 ≈ 2^44.59`.
pub const STRONG_PIN_SPACE: u64 = 26_439_622_160_671;

/// How many legacy PINs exist: `10^6 ≈ 2^19.93`.
pub const LEGACY_PIN_SPACE: u64 = 1_000_000;

/// Bytes of a version-1 (legacy) PIN verifier: a bare SHA-256 digest.
pub const PIN_VERIFIER_V1_BYTES: usize = 32;

/// Bytes of a version-2 (strong) PIN verifier: the version byte and a
/// SHA-256 digest.
pub const PIN_VERIFIER_V2_BYTES: usize = 33;

/// The first byte of a version-2 verifier.
pub const PIN_VERIFIER_V2_TAG: u8 = 2;

/// Domain tag of the version-1 verifier.
pub const PIN_VERIFIER_DOMAIN: &[u8] = b"mpp-pin-verifier-v1";

/// Domain tag of the version-2 verifier.
pub const PIN_VERIFIER_V2_DOMAIN: &[u8] = b"mpp-pin-verifier-v2";

/// Longest verifier of any version, in bytes.
pub const PIN_VERIFIER_BYTES_MAX: usize = PIN_VERIFIER_V2_BYTES;

/// Shortest accepted PIN pepper, in bytes (after trimming).
pub const PIN_PEPPER_BYTES_MIN: usize = 16;

/// Longest accepted PIN pepper, in bytes (after trimming; it fits a `u32`
/// length prefix with room to spare).
pub const PIN_PEPPER_BYTES_MAX: usize = 4096;

/// The pepper of development set-ups that were given no pepper file. Public
/// on purpose: it protects nothing, and every program using it must say so
/// loudly when it starts.
pub const DEV_PIN_PEPPER: &[u8] = b"mpp-dev-pin-pepper-NOT-FOR-PRODUCTION";

/// A lookup PIN, strong or legacy (see the module docs). `Debug` output is
/// redacted, so a PIN cannot end up in a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub enum Pin {
    /// Nine characters of [`PIN_ALPHABET`], canonical (upper case).
    Strong([u8; STRONG_PIN_CHARS]),
    /// Six ASCII digits, as issued before strong PINs.
    Legacy([u8; LEGACY_PIN_DIGITS]),
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

/// Whether `b` is a symbol of [`PIN_ALPHABET`] (upper case only).
fn in_alphabet(b: u8) -> bool {
    PIN_ALPHABET.contains(&b)
}

impl Pin {
    /// Parses a PIN in canonical form: exactly six ASCII digits (legacy) or
    /// nine upper-case symbols of [`PIN_ALPHABET`] (strong), no separators.
    /// [`Pin::parse_typed`] accepts what a person types.
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() == LEGACY_PIN_DIGITS && b.iter().all(u8::is_ascii_digit) {
            let mut out = [0u8; LEGACY_PIN_DIGITS];
            out.copy_from_slice(b);
            return Some(Self::Legacy(out));
        }
        if b.len() == STRONG_PIN_CHARS && b.iter().all(|&c| in_alphabet(c)) {
            let mut out = [0u8; STRONG_PIN_CHARS];
            out.copy_from_slice(b);
            return Some(Self::Strong(out));
        }
        None
    }

    /// Parses a PIN as a person may type it: letters in either case,
    /// full-width forms (a phone's CJK keyboard) as their ASCII twins, and
    /// spaces, dashes of any kind, dots and slashes ignored. `None` when
    /// what is left is neither shape (e.g. it holds `0`, `1`, `I`, `L` or
    /// `O` among letters, or has another length). At most
    /// [`PIN_TYPED_CHARS_MAX`] characters are looked at.
    pub fn parse_typed(input: &str) -> Option<Self> {
        let mut out = [0u8; STRONG_PIN_CHARS];
        let mut len = 0usize;
        for (i, c) in input.chars().enumerate() {
            if i >= PIN_TYPED_CHARS_MAX {
                return None;
            }
            let c = match c {
                // Full-width ASCII U+FF01..=U+FF5E.
                '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFF01 + 0x21)?,
                c => c,
            };
            match c {
                '-' | '\u{2010}'..='\u{2015}' | '\u{2212}' | '.' | '/' => continue,
                c if c.is_whitespace() => continue,
                c if c.is_ascii_alphanumeric() => {
                    if len == STRONG_PIN_CHARS {
                        return None;
                    }
                    out[len] = c.to_ascii_uppercase() as u8;
                    len += 1;
                }
                _ => return None,
            }
        }
        // Only ASCII was stored, so this is valid UTF-8.
        Self::parse(std::str::from_utf8(&out[..len]).ok()?)
    }

    /// The strong PIN numbered `n` (`0..STRONG_PIN_SPACE`): `n` written in
    /// base 31 over [`PIN_ALPHABET`], most significant symbol first; `None`
    /// when `n` is out of range. The agency kit draws `n` uniformly.
    pub fn strong_from_number(n: u64) -> Option<Self> {
        if n >= STRONG_PIN_SPACE {
            return None;
        }
        let mut rest = n;
        let mut out = [0u8; STRONG_PIN_CHARS];
        for c in out.iter_mut().rev() {
            // `rest % 31` indexes the 31-symbol alphabet.
            *c = PIN_ALPHABET[(rest % 31) as usize];
            rest /= 31;
        }
        Some(Self::Strong(out))
    }

    /// The legacy PIN whose digits spell `n` with leading zeros; `None`
    /// when `n` has more than six digits.
    pub fn legacy_from_number(n: u32) -> Option<Self> {
        if u64::from(n) >= LEGACY_PIN_SPACE {
            return None;
        }
        let mut rest = n;
        let mut out = [b'0'; LEGACY_PIN_DIGITS];
        for d in out.iter_mut().rev() {
            // `rest % 10` is a single decimal digit.
            *d = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        Some(Self::Legacy(out))
    }

    /// Whether this is a legacy six-digit PIN.
    pub fn is_legacy(&self) -> bool {
        matches!(self, Self::Legacy(_))
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Self::Strong(b) => b,
            Self::Legacy(b) => b,
        }
    }

    /// The canonical characters (no separators). Never log them.
    pub fn expose(&self) -> &str {
        // ASCII by construction; the fallback is unreachable.
        std::str::from_utf8(self.bytes()).unwrap_or("")
    }

    /// The PIN as printed on the receipt: a strong PIN in groups of three
    /// joined by `-` (`K7M-R2X-9QH`), a legacy one as its six digits. Never
    /// log it.
    pub fn grouped(&self) -> String {
        match self {
            Self::Legacy(_) => self.expose().to_owned(),
            Self::Strong(b) => b
                .chunks(STRONG_PIN_GROUP_CHARS)
                .map(|g| std::str::from_utf8(g).unwrap_or(""))
                .collect::<Vec<_>>()
                .join("-"),
        }
    }
}

/// Most characters of a typed PIN [`Pin::parse_typed`] looks at (nine
/// symbols with room for separators and spaces).
pub const PIN_TYPED_CHARS_MAX: usize = 32;

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

    /// A 32-byte key for another purpose, derived one-way from the pepper:
    /// `SHA-256("mpp-pepper-derived-key" || 0x00 || u32_be(len(label)) ||
    /// label || pepper)`. Every process holding the pepper derives the same
    /// key (the hub's replicas key their shared lookup counters with one),
    /// and the key reveals nothing about the pepper.
    pub fn derive_key(&self, label: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"mpp-pepper-derived-key\0");
        // Labels are short constants of the callers.
        h.update((label.len() as u32).to_be_bytes());
        h.update(label);
        h.update(&self.0);
        h.finalize().into()
    }
}

/// A computed PIN verifier of either version (see the module docs).
#[derive(Clone, PartialEq, Eq)]
pub struct PinVerifier {
    bytes: [u8; PIN_VERIFIER_BYTES_MAX],
    len: usize,
}

impl fmt::Debug for PinVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PinVerifier(v{}, {} bytes)",
            if self.len == PIN_VERIFIER_V2_BYTES { 2 } else { 1 },
            self.len
        )
    }
}

impl PinVerifier {
    /// The bytes as published in `case_opened`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The bytes, owned.
    pub fn to_vec(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}

fn digest(domain: &[u8], pepper: &PinPepper, tracking: &TrackingNumber, pin: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(domain);
    h.update([0u8]);
    // A pepper holds at most PIN_PEPPER_BYTES_MAX (4096) bytes, so its
    // length fits in a u32.
    h.update((pepper.0.len() as u32).to_be_bytes());
    h.update(&pepper.0);
    h.update(tracking.digits());
    h.update(pin);
    h.finalize().into()
}

/// The verifier of `pin` for the case `tracking` under `pepper`: version 2
/// for a strong PIN, version 1 for a legacy one (see the module docs).
pub fn pin_verifier(pepper: &PinPepper, tracking: &TrackingNumber, pin: &Pin) -> PinVerifier {
    let mut bytes = [0u8; PIN_VERIFIER_BYTES_MAX];
    match pin {
        Pin::Legacy(d) => {
            bytes[..PIN_VERIFIER_V1_BYTES].copy_from_slice(&digest(PIN_VERIFIER_DOMAIN, pepper, tracking, d));
            PinVerifier { bytes, len: PIN_VERIFIER_V1_BYTES }
        }
        Pin::Strong(c) => {
            bytes[0] = PIN_VERIFIER_V2_TAG;
            bytes[1..].copy_from_slice(&digest(PIN_VERIFIER_V2_DOMAIN, pepper, tracking, c));
            PinVerifier { bytes, len: PIN_VERIFIER_V2_BYTES }
        }
    }
}

/// Whether a stored verifier is of the legacy version 1 (32 bytes).
pub fn is_legacy_verifier(stored: &[u8]) -> bool {
    stored.len() == PIN_VERIFIER_V1_BYTES
}

/// Whether a stored verifier equals a computed one, in time that does not
/// depend on where they differ (every byte of the longer form is compared).
/// A stored verifier of another length (another version, or none) never
/// matches; the length is not secret.
pub fn verifier_matches(stored: &[u8], computed: &PinVerifier) -> bool {
    let computed = computed.as_bytes();
    let mut diff = u8::from(stored.len() != computed.len());
    for i in 0..PIN_VERIFIER_BYTES_MAX {
        diff |= stored.get(i).copied().unwrap_or(0) ^ computed.get(i).copied().unwrap_or(0);
    }
    // Keep the optimiser from turning the loop into an early-exit comparison.
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
    fn a_strong_pin_carries_at_least_forty_bits() {
        assert_eq!(PIN_ALPHABET.len(), 31);
        assert_eq!(31u64.pow(STRONG_PIN_CHARS as u32), STRONG_PIN_SPACE);
        let bits = (STRONG_PIN_SPACE as f64).log2();
        assert!(bits >= 40.0, "{bits} bits");
        // Whoever holds verifier and pepper needs half the space on average.
        assert!(((STRONG_PIN_SPACE / 2) as f64).log2() >= 39.0);
        for c in b"01ILOilo" {
            assert!(!PIN_ALPHABET.contains(c), "{} is a look-alike", char::from(*c));
        }
        let mut sorted = PIN_ALPHABET.to_vec();
        sorted.dedup();
        assert_eq!(sorted.len(), 31, "no symbol twice");
    }

    #[test]
    fn strong_pins_are_numbered_in_base_31_and_printed_in_groups() {
        assert_eq!(Pin::strong_from_number(0).unwrap().expose(), "222222222");
        assert_eq!(Pin::strong_from_number(STRONG_PIN_SPACE - 1).unwrap().expose(), "ZZZZZZZZZ");
        assert_eq!(Pin::strong_from_number(STRONG_PIN_SPACE), None);
        assert_eq!(Pin::strong_from_number(31).unwrap().expose(), "222222232");
        let p = Pin::parse("K7MR2X9QH").unwrap();
        assert_eq!(p.grouped(), "K7M-R2X-9QH");
        assert!(!p.is_legacy());
        assert_eq!(format!("{p:?}"), "Pin(<redacted>)");
    }

    #[test]
    fn legacy_pins_are_six_ascii_digits() {
        assert_eq!(Pin::parse("042137").map(|p| p.expose().to_owned()), Some("042137".to_owned()));
        assert!(Pin::parse("042137").unwrap().is_legacy());
        assert_eq!(Pin::parse("042137").unwrap().grouped(), "042137");
        for bad in ["", "12345", "1234567", "12345a", "12 345", "１２３４５６", "-12345"] {
            assert_eq!(Pin::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Pin::legacy_from_number(42).unwrap().expose(), "000042");
        assert_eq!(Pin::legacy_from_number(999_999).unwrap().expose(), "999999");
        assert_eq!(Pin::legacy_from_number(1_000_000), None);
    }

    #[test]
    fn typed_pins_ignore_case_separators_and_full_width_forms() {
        let want = Pin::parse("K7MR2X9QH").unwrap();
        for typed in [
            "K7M-R2X-9QH",
            "k7m r2x 9qh",
            " k7mr2x9qh ",
            "Ｋ７Ｍ－Ｒ２Ｘ－９ＱＨ",
            "K7M.R2X/9QH",
            "k7m–r2x–9qh",
        ] {
            assert_eq!(Pin::parse_typed(typed), Some(want.clone()), "{typed:?}");
        }
        assert_eq!(Pin::parse_typed("042 137"), Pin::parse("042137"));
        assert_eq!(Pin::parse_typed("０４２１３７"), Pin::parse("042137"));
        for bad in [
            "",
            "K7M-R2X-9Q",
            "K7M-R2X-9QHH",
            "K7M-R2X-9Q0",
            "K7M-R2X-9QI",
            "K7M-R2X-9QL",
            "K7M-R2X-9QO",
            "K7M-R2X-9Q1",
            "12345",
            "K7M_R2X_9QH",
            "K7M-R2X-9QÄ",
            "<script>",
        ] {
            assert_eq!(Pin::parse_typed(bad), None, "{bad:?}");
        }
        assert_eq!(Pin::parse_typed(&format!("{}K7MR2X9QH", " ".repeat(PIN_TYPED_CHARS_MAX))), None);
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
    fn derived_keys_depend_on_label_and_pepper() {
        let a = PinPepper::from_bytes(b"0123456789abcdef").unwrap();
        let b = PinPepper::from_bytes(b"0123456789abcdeX").unwrap();
        assert_eq!(a.derive_key(b"x"), a.derive_key(b"x"));
        assert_ne!(a.derive_key(b"x"), a.derive_key(b"y"));
        assert_ne!(a.derive_key(b"x"), b.derive_key(b"x"));
    }

    #[test]
    fn both_verifiers_are_the_documented_constructions() {
        let pepper = PinPepper::from_bytes(b"0123456789abcdef\n").unwrap();
        let t = tn(12345);
        assert_eq!(t.digits(), *b"177100000123457", "check digit of the fixture");
        let reference = |domain: &[u8], pin: &[u8]| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update(domain);
            h.update([0]);
            h.update(16u32.to_be_bytes());
            h.update(b"0123456789abcdef");
            h.update(b"177100000123457");
            h.update(pin);
            h.finalize().into()
        };
        let v1 = pin_verifier(&pepper, &t, &Pin::parse("042137").unwrap());
        assert_eq!(v1.as_bytes(), reference(b"mpp-pin-verifier-v1", b"042137"));
        let v2 = pin_verifier(&pepper, &t, &Pin::parse("K7MR2X9QH").unwrap());
        let mut want = vec![2u8];
        want.extend_from_slice(&reference(b"mpp-pin-verifier-v2", b"K7MR2X9QH"));
        assert_eq!(v2.as_bytes(), &want[..]);
        assert!(is_legacy_verifier(v1.as_bytes()));
        assert!(!is_legacy_verifier(v2.as_bytes()));
    }

    #[test]
    fn the_verifier_is_keyed_and_bound_to_case_and_pin() {
        let pepper = PinPepper::from_bytes(b"0123456789abcdef").unwrap();
        let other = PinPepper::from_bytes(b"0123456789abcdeX").unwrap();
        for (pin, next) in [("042137", "042138"), ("K7MR2X9QH", "K7MR2X9QJ")] {
            let pin = Pin::parse(pin).unwrap();
            let v = pin_verifier(&pepper, &tn(1), &pin);
            assert_eq!(v, pin_verifier(&pepper, &tn(1), &pin), "deterministic");
            assert_ne!(v, pin_verifier(&other, &tn(1), &pin));
            assert_ne!(v, pin_verifier(&pepper, &tn(2), &pin));
            assert_ne!(v, pin_verifier(&pepper, &tn(1), &Pin::parse(next).unwrap()));
        }
    }

    #[test]
    fn verifiers_match_only_when_equal_and_of_the_same_version() {
        let pepper = PinPepper::insecure_dev();
        for pin in ["000000", "222222222"] {
            let v = pin_verifier(&pepper, &tn(7), &Pin::parse(pin).unwrap());
            let b = v.to_vec();
            assert!(verifier_matches(&b, &v));
            for i in 0..b.len() {
                let mut w = b.clone();
                w[i] ^= 0x80;
                assert!(!verifier_matches(&w, &v), "byte {i}");
            }
            assert!(!verifier_matches(&b[..b.len() - 1], &v));
            assert!(!verifier_matches(&[], &v));
            let mut longer = b.clone();
            longer.push(0);
            assert!(!verifier_matches(&longer, &v));
        }
        // A legacy PIN typed against a strong verifier (and the reverse) never matches.
        let strong = pin_verifier(&pepper, &tn(7), &Pin::parse("222222222").unwrap());
        let legacy = pin_verifier(&pepper, &tn(7), &Pin::parse("000000").unwrap());
        assert!(!verifier_matches(strong.as_bytes(), &legacy));
        assert!(!verifier_matches(legacy.as_bytes(), &strong));
        assert!(!verifier_matches(&strong.as_bytes()[1..], &legacy), "the digest without its tag is not v1");
    }
}
