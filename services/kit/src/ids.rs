//! Identifiers an agency service allocates (application ids) and the
//! citizen's lookup PIN with its verifier, which only the front office
//! computes (an agency service's walk-in citizens have their cases opened
//! there, [`crate::walk_in`]). Tracking numbers come from the front office's
//! durable counter only.
//!
//! Randomness comes from UUIDv4 (122 random bits from the operating system's
//! generator via `getrandom`), so the kit needs no separate RNG crate.

use std::fmt;
use std::path::{Path, PathBuf};

use mpp_core::ids::{ApplicationId, TrackingNumber};
pub use mpp_core::pin::{
    PinVerifier, DEV_PIN_PEPPER, LEGACY_PIN_DIGITS, PIN_ALPHABET, PIN_PEPPER_BYTES_MAX, PIN_PEPPER_BYTES_MIN,
    PIN_VERIFIER_DOMAIN, PIN_VERIFIER_V2_DOMAIN, STRONG_PIN_CHARS, STRONG_PIN_SPACE,
};
use mpp_core::Rejection;

/// Fourteen random bytes from one UUIDv4: bytes 0..=5, 7 and 9..=15 (byte 6
/// holds the version nibble and byte 8 the variant bits, so both are skipped).
fn random_bytes() -> [u8; 14] {
    let b = uuid::Uuid::new_v4().into_bytes();
    let mut out = [0u8; 14];
    out[..6].copy_from_slice(&b[..6]);
    out[6] = b[7];
    out[7..].copy_from_slice(&b[9..]);
    out
}

fn random_u64() -> u64 {
    let b = random_bytes();
    let mut eight = [0u8; 8];
    eight.copy_from_slice(&b[..8]);
    u64::from_be_bytes(eight)
}

/// Crockford's base32 alphabet (no I, L, O, U): unambiguous when read aloud
/// or retyped from a receipt.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Characters of the random part of an application id (60 random bits).
pub const APPLICATION_ID_RANDOM_CHARS: usize = 12;

/// A new application id `<prefix>-<12 Crockford base32 characters>`, e.g.
/// `DKC-KK-7Q2M9X4TB0RZ`. The random part carries 60 bits, so two
/// applications of one case collide with negligible probability (the hub
/// would reject the second with `APPLICATION_ALREADY_FILED`). Fails with
/// `MALFORMED_APPLICATION_ID` when the prefix makes the id invalid or longer
/// than `limits::LOCAL_ID_BYTES_MAX`.
pub fn new_application_id(prefix: &str) -> Result<ApplicationId, Rejection> {
    let mut bits = random_u64();
    let mut id = String::with_capacity(prefix.len() + 1 + APPLICATION_ID_RANDOM_CHARS);
    id.push_str(prefix);
    id.push('-');
    for _ in 0..APPLICATION_ID_RANDOM_CHARS {
        id.push(char::from(CROCKFORD[(bits & 31) as usize]));
        bits >>= 5;
    }
    ApplicationId::parse(&id)
}

/// A citizen's lookup PIN: nine characters of [`PIN_ALPHABET`] (44.6 bits,
/// see [`mpp_core::pin`]), returned once to the caller (the counter prints
/// it on the receipt, grouped `K7M-R2X-9QH`) and never stored or published.
/// Its `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(mpp_core::pin::Pin);

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

impl Pin {
    /// A uniformly random strong PIN: 64 random bits, drawn again while they
    /// fall in the incomplete last block of `STRONG_PIN_SPACE`-sized blocks
    /// (probability `2^64 mod 31^9 / 2^64 < 1.5·10^-6` per draw), so every
    /// PIN is exactly equally likely. After [`PIN_DRAWS_MAX`] unlucky draws
    /// (probability below 10^-46) the last is reduced with its negligible
    /// bias rather than looping on.
    pub fn generate() -> Self {
        let accept_below = u64::MAX - u64::MAX % STRONG_PIN_SPACE;
        let mut n = random_u64();
        for _ in 1..PIN_DRAWS_MAX {
            if n < accept_below {
                break;
            }
            n = random_u64();
        }
        let pin = mpp_core::pin::Pin::strong_from_number(n % STRONG_PIN_SPACE);
        Self(pin.expect("n is reduced modulo STRONG_PIN_SPACE"))
    }

    /// Parses a PIN in canonical form: nine symbols of [`PIN_ALPHABET`], or
    /// six digits (a legacy PIN).
    pub fn parse(s: &str) -> Option<Self> {
        mpp_core::pin::Pin::parse(s).map(Self)
    }

    /// The canonical characters, to hand to the citizen. Do not log.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The PIN as printed on the receipt (`K7M-R2X-9QH`). Do not log.
    pub fn grouped(&self) -> String {
        self.0.grouped()
    }
}

/// Most random draws [`Pin::generate`] makes.
pub const PIN_DRAWS_MAX: usize = 8;

/// A secret key for [`pin_verifier`], held by the front offices and the hub
/// of one province (never by an agency service). Without it, the published verifier tells nothing
/// about the PIN; with it, a strong PIN still takes `31^9 / 2 ≈ 2^43.6`
/// tries on average to find (a legacy six-digit one only 500 000). `Debug`
/// output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct PinPepper(mpp_core::pin::PinPepper);

impl fmt::Debug for PinPepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PinPepper(<redacted>)")
    }
}

/// Why a PIN pepper could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PepperError {
    /// The file could not be read.
    #[error("cannot read PIN pepper file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The pepper is shorter than [`PIN_PEPPER_BYTES_MIN`] or longer than
    /// [`PIN_PEPPER_BYTES_MAX`].
    #[error(
        "PIN pepper must be {PIN_PEPPER_BYTES_MIN}..={PIN_PEPPER_BYTES_MAX} bytes after trimming, got {len}"
    )]
    Length {
        /// Its length after trimming.
        len: usize,
    },
}

impl PinPepper {
    /// A pepper from raw bytes: leading and trailing ASCII whitespace (e.g.
    /// the final newline of a file) is not part of it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PepperError> {
        mpp_core::pin::PinPepper::from_bytes(bytes).map(Self).map_err(|e| PepperError::Length { len: e.len })
    }

    /// Reads a pepper file (at most [`PIN_PEPPER_BYTES_MAX`] + 1 bytes are
    /// read, so a wrong path to a huge file fails fast).
    pub fn from_file(path: &Path) -> Result<Self, PepperError> {
        let io = |source| PepperError::Io { path: path.to_owned(), source };
        Self::from_bytes(&crate::files::read_at_most(path, PIN_PEPPER_BYTES_MAX as u64).map_err(io)?)
    }

    /// The development pepper [`DEV_PIN_PEPPER`], with a loud warning (only
    /// under `--insecure-dev-keys`).
    pub fn dev_default() -> Self {
        tracing::warn!(
            "--insecure-dev-keys and no --pin-pepper-file: using the PUBLIC development PIN pepper. Every \
             citizen PIN published by this service can be recovered from the log. Never run this in production"
        );
        Self(mpp_core::pin::PinPepper::insecure_dev())
    }
}

/// The verifier of a case's lookup PIN, published in `case_opened` instead of
/// the PIN (version 2 for a strong PIN, 33 bytes):
///
/// ```text
/// 0x02 || SHA-256( "mpp-pin-verifier-v2" || 0x00 || u32_be(len(pepper)) || pepper
///                  || the tracking number's 15 ASCII digits (no hyphens) || the PIN's 9 characters )
/// ```
///
/// Every part has a fixed length or a length prefix, so no two inputs share
/// an encoding. The one definition is [`mpp_core::pin::pin_verifier`], which
/// the hub uses to check a PIN; this delegates to it.
pub fn pin_verifier(pepper: &PinPepper, tracking: &TrackingNumber, pin: &Pin) -> PinVerifier {
    mpp_core::pin::pin_verifier(&pepper.0, tracking, &pin.0)
}

#[cfg(test)]
mod tests {

    use super::*;

    fn region() -> mpp_core::ids::RegionCode {
        mpp_core::ids::RegionCode::parse("1771").unwrap()
    }

    #[test]
    fn application_ids() {
        let a = new_application_id("DKC-KK").unwrap();
        let b = new_application_id("DKC-KK").unwrap();
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("DKC-KK-"));
        assert_eq!(a.as_str().len(), "DKC-KK-".len() + APPLICATION_ID_RANDOM_CHARS);
        assert!(new_application_id("bad prefix").is_err());
        assert!(new_application_id(&"X".repeat(60)).is_err());
    }

    #[test]
    fn new_pins_are_strong_uniform_enough_and_redacted() {
        let mut first = [0usize; 31];
        for _ in 0..3100 {
            let p = Pin::generate();
            assert_eq!(p.expose().len(), STRONG_PIN_CHARS);
            assert!(p.expose().bytes().all(|b| PIN_ALPHABET.contains(&b)));
            assert_eq!(Pin::parse(p.expose()), Some(p.clone()));
            assert_eq!(p.grouped().len(), STRONG_PIN_CHARS + 2);
            assert_eq!(format!("{p:?}"), "Pin(<redacted>)");
            let i = PIN_ALPHABET.iter().position(|&c| c == p.expose().as_bytes()[0]).unwrap();
            first[i] += 1;
        }
        // 100 expected per symbol; each bound fails with probability < 10^-9.
        assert!(first.iter().all(|&n| (40..=170).contains(&n)), "first symbols: {first:?}");
        assert_eq!(Pin::parse("12345"), None);
        assert_eq!(Pin::parse("K7MR2X9Q0"), None);
        assert!(Pin::parse("042137").is_some(), "legacy PINs still parse");
    }

    #[test]
    fn pin_verifier_is_keyed_and_bound_to_case_and_pin() {
        let pepper = PinPepper::from_bytes(b"0123456789abcdef\n").unwrap();
        let other_pepper = PinPepper::from_bytes(b"0123456789abcdeX").unwrap();
        let t = TrackingNumber::new(region(), 12345).unwrap();
        let t2 = TrackingNumber::new(region(), 12346).unwrap();
        let pin = Pin::parse("K7MR2X9QH").unwrap();
        let pin2 = Pin::parse("K7MR2X9QJ").unwrap();
        let v = pin_verifier(&pepper, &t, &pin);
        assert_eq!(v, pin_verifier(&pepper, &t, &pin), "deterministic");
        assert_ne!(v, pin_verifier(&other_pepper, &t, &pin));
        assert_ne!(v, pin_verifier(&pepper, &t2, &pin));
        assert_ne!(v, pin_verifier(&pepper, &t, &pin2));
        // The core's verifier (whose tests spell out the documented
        // construction) of the same pepper, case and PIN.
        let core_pepper = mpp_core::pin::PinPepper::from_bytes(b"0123456789abcdef").unwrap();
        let core_pin = mpp_core::pin::Pin::parse("K7MR2X9QH").unwrap();
        assert_eq!(v, mpp_core::pin::pin_verifier(&core_pepper, &t, &core_pin));
    }

    #[test]
    fn pepper_bounds() {
        assert!(matches!(PinPepper::from_bytes(b"short"), Err(PepperError::Length { len: 5 })));
        assert!(PinPepper::from_bytes(&vec![b'x'; PIN_PEPPER_BYTES_MAX + 1]).is_err());
        assert!(PinPepper::from_bytes(&vec![b'x'; PIN_PEPPER_BYTES_MAX]).is_ok());
        assert_eq!(format!("{:?}", PinPepper::dev_default()), "PinPepper(<redacted>)");
        let missing = PinPepper::from_file(Path::new("/nonexistent/mpp-pepper"));
        assert!(matches!(missing, Err(PepperError::Io { .. })));
    }
}
