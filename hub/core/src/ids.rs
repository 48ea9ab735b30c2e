//! Identifiers, each parsed once at the edge and then carried as a type that
//! cannot hold an invalid value.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::limits;
use crate::reason::{ReasonCode, Rejection};

/// A BPS region code of an MPP's kabupaten/kota: four digits, province (2) +
/// regency/city (2), e.g. `1771` Kota Bengkulu. Serialized as its number;
/// deserializing checks the range like [`RegionCode::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct RegionCode(u16);

impl TryFrom<u16> for RegionCode {
    type Error = Rejection;

    fn try_from(v: u16) -> Result<Self, Rejection> {
        if (Self::MIN..=Self::MAX).contains(&v) {
            Ok(Self(v))
        } else {
            Err(Rejection::new(ReasonCode::MalformedRegionCode, "region code must be 1100..=9999"))
        }
    }
}

impl From<RegionCode> for u16 {
    fn from(r: RegionCode) -> u16 {
        r.0
    }
}

impl RegionCode {
    /// The smallest region code (province 11, Aceh).
    pub const MIN: u16 = 1100;
    /// The largest four-digit region code.
    pub const MAX: u16 = 9999;

    /// Parses four ASCII digits with a province code of 11..=99.
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        let bad =
            || Rejection::new(ReasonCode::MalformedRegionCode, "region code must be 4 digits, e.g. 1771");
        if s.len() != 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let v: u16 = s.parse().map_err(|_| bad())?;
        Self::try_from(v).map_err(|_| bad())
    }

    /// The numeric value (1100..=9999).
    pub fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}", self.0)
    }
}

/// A case tracking number (nomor berkas): the MPP's region code (4 digits), a
/// serial (10 digits) and a Damm check digit over the 14 digits before it.
/// Canonical text: `RRRR-SSSSSSSSSS-C`. Parsing accepts the digits with or
/// without hyphens and spaces. The Damm algorithm catches every single-digit
/// error and every adjacent transposition. Serialized as its region and
/// serial; deserializing checks both like [`TrackingNumber::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "TrackingNumberParts")]
pub struct TrackingNumber {
    region: RegionCode,
    serial: u64,
}

/// The serialized shape of a [`TrackingNumber`], checked on the way in.
#[derive(Deserialize)]
#[serde(rename = "TrackingNumber")]
struct TrackingNumberParts {
    region: RegionCode,
    serial: u64,
}

impl TryFrom<TrackingNumberParts> for TrackingNumber {
    type Error = Rejection;

    fn try_from(p: TrackingNumberParts) -> Result<Self, Rejection> {
        Self::new(p.region, p.serial).ok_or_else(|| {
            Rejection::new(
                ReasonCode::MalformedTrackingNumber,
                "tracking number serial has more than 10 digits",
            )
        })
    }
}

/// Longest text accepted as a tracking number before any parsing
/// (`MALFORMED_TRACKING_NUMBER`).
pub const TRACKING_NUMBER_TEXT_BYTES_MAX: usize = 32;

const DAMM: [[u8; 10]; 10] = [
    [0, 3, 1, 7, 5, 9, 8, 6, 4, 2],
    [7, 0, 9, 2, 1, 5, 4, 8, 6, 3],
    [4, 2, 0, 6, 8, 7, 1, 3, 5, 9],
    [1, 7, 5, 0, 9, 8, 3, 4, 2, 6],
    [6, 1, 2, 3, 0, 4, 5, 9, 7, 8],
    [3, 6, 7, 4, 2, 0, 9, 5, 8, 1],
    [5, 8, 6, 9, 7, 2, 0, 1, 3, 4],
    [8, 9, 4, 5, 3, 6, 2, 0, 1, 7],
    [9, 4, 3, 8, 6, 1, 7, 2, 0, 5],
    [2, 5, 8, 1, 4, 3, 6, 7, 9, 0],
];

/// The Damm check digit of the ASCII digits in `digits`. Any other byte
/// (a separator, or garbage) is skipped rather than trusted, so the function
/// is total: `damm_check_digit(b"1771-0000000001")` equals
/// `damm_check_digit(b"17710000000001")`. A string followed by its check
/// digit checks to 0.
pub fn damm_check_digit(digits: &[u8]) -> u8 {
    digits
        .iter()
        .filter(|d| d.is_ascii_digit())
        .fold(0u8, |interim, d| DAMM[usize::from(interim)][usize::from(d - b'0')])
}

impl TrackingNumber {
    /// Largest serial (10 digits).
    pub const SERIAL_MAX: u64 = 9_999_999_999;

    /// Builds a tracking number from its parts; `None` if the serial has more
    /// than 10 digits.
    pub fn new(region: RegionCode, serial: u64) -> Option<Self> {
        (serial <= Self::SERIAL_MAX).then_some(Self { region, serial })
    }

    /// Parses user or agency input. A wrong check digit gives
    /// `BAD_CHECK_DIGIT` (the number was mistyped); anything else malformed
    /// gives `MALFORMED_TRACKING_NUMBER`.
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        let malformed = || {
            Rejection::new(
                ReasonCode::MalformedTrackingNumber,
                "tracking number must be 15 digits: RRRR-SSSSSSSSSS-C",
            )
        };
        if s.len() > TRACKING_NUMBER_TEXT_BYTES_MAX {
            return Err(malformed());
        }
        let mut digits = [0u8; 15];
        let mut n = 0;
        for b in s.bytes() {
            match b {
                b'0'..=b'9' => {
                    if n == digits.len() {
                        return Err(malformed());
                    }
                    digits[n] = b;
                    n += 1;
                }
                b'-' | b' ' => {}
                _ => return Err(malformed()),
            }
        }
        if n != digits.len() {
            return Err(malformed());
        }
        if damm_check_digit(&digits[..14]) != digits[14] - b'0' {
            return Err(Rejection::new(
                ReasonCode::BadCheckDigit,
                "tracking number check digit does not match: check the number",
            ));
        }
        let region = RegionCode::parse(std::str::from_utf8(&digits[..4]).map_err(|_| malformed())?)
            .map_err(|_| malformed())?;
        let serial: u64 =
            std::str::from_utf8(&digits[4..14]).map_err(|_| malformed())?.parse().map_err(|_| malformed())?;
        Ok(Self { region, serial })
    }

    /// The MPP this case belongs to.
    pub fn region(&self) -> RegionCode {
        self.region
    }

    /// The serial within the region.
    pub fn serial(&self) -> u64 {
        self.serial
    }

    /// The 15 digits without separators, used as the store key.
    pub fn digits(&self) -> [u8; 15] {
        let mut out = [0u8; 15];
        // Both parts are in range by construction; the modulo keeps this
        // total (and allocation-free) regardless.
        let mut region = u64::from(self.region.get()) % 10_000;
        let mut serial = self.serial % (Self::SERIAL_MAX + 1);
        for d in out[4..14].iter_mut().rev() {
            *d = b'0' + (serial % 10) as u8;
            serial /= 10;
        }
        for d in out[..4].iter_mut().rev() {
            *d = b'0' + (region % 10) as u8;
            region /= 10;
        }
        out[14] = b'0' + damm_check_digit(&out[..14]);
        out
    }
}

impl fmt::Display for TrackingNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.digits();
        // The digits are ASCII by construction.
        let s = std::str::from_utf8(&d).map_err(|_| fmt::Error)?;
        write!(f, "{}-{}-{}", &s[..4], &s[4..14], &s[14..])
    }
}

/// An event id: a UUIDv7 (time-ordered), in canonical lowercase hyphenated
/// text on the wire, 16 bytes here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventId(pub [u8; 16]);

impl EventId {
    /// Parses the canonical text form `xxxxxxxx-xxxx-7xxx-yxxx-xxxxxxxxxxxx`
    /// (lowercase or uppercase hex), version 7, RFC 9562 variant.
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        if s.is_empty() {
            return Err(Rejection::new(ReasonCode::MissingEventId, "event_id is required"));
        }
        let bad = |why: &str| Rejection::new(ReasonCode::MalformedEventId, format!("event_id {why}"));
        let b = s.as_bytes();
        if b.len() != 36 {
            return Err(bad("must be a UUID in 36-character hyphenated form"));
        }
        let mut out = [0u8; 16];
        let mut nibble = 0usize;
        for (i, &c) in b.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                if c != b'-' {
                    return Err(bad("must be a UUID in 36-character hyphenated form"));
                }
                continue;
            }
            let v = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(bad("must be hexadecimal")),
            };
            out[nibble / 2] |= if nibble % 2 == 0 { v << 4 } else { v };
            nibble += 1;
        }
        if out[6] >> 4 != 7 {
            return Err(bad("must be a version 7 UUID"));
        }
        if out[8] >> 6 != 0b10 {
            return Err(bad("must have the RFC 9562 variant"));
        }
        Ok(Self(out))
    }

    /// The Unix millisecond timestamp embedded in a UUIDv7.
    pub fn unix_ms(&self) -> u64 {
        self.0[..6].iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

fn is_slug(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && s.as_bytes()[0].is_ascii_alphanumeric()
}

fn is_local_id(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $check:expr, $max:expr, $code:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(String);

        impl $name {
            /// Parses and validates the id.
            pub fn parse(s: &str) -> Result<Self, Rejection> {
                if $check(s, $max) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(Rejection::new(ReasonCode::$code, $what))
                }
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// An agency id: a lowercase slug (`[a-z0-9][a-z0-9_-]*`, ≤ 32 bytes), e.g. `dukcapil`.
    AgencyId,
    is_slug,
    limits::SLUG_BYTES_MAX,
    MalformedAgencyId,
    "agency_id must be a lowercase slug of 1..=32 bytes [a-z0-9_-]"
);
string_id!(
    /// A service id within an agency: a lowercase slug, e.g. `kk`.
    ServiceId,
    is_slug,
    limits::SLUG_BYTES_MAX,
    MalformedServiceId,
    "service_id must be a lowercase slug of 1..=32 bytes [a-z0-9_-]"
);
string_id!(
    /// An application id within a case, chosen by the agency
    /// (`[A-Za-z0-9._/-]`, ≤ 64 bytes).
    ApplicationId,
    is_local_id,
    limits::LOCAL_ID_BYTES_MAX,
    MalformedApplicationId,
    "application_id must be 1..=64 bytes of [A-Za-z0-9._/-]"
);
string_id!(
    /// A pseudonymous officer id (`[A-Za-z0-9._/-]`, ≤ 64 bytes); never a name.
    OfficerId,
    is_local_id,
    limits::LOCAL_ID_BYTES_MAX,
    MalformedOfficer,
    "officer must be a pseudonymous id of 1..=64 bytes of [A-Za-z0-9._/-]"
);

/// A Nomor Induk Kependudukan: 16 digits = province (2) regency (2) district
/// (2) birth date DDMMYY (day + 40 for women) serial (4). Only its shape and
/// date are checked; the hub never stores it, only a keyed hash of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Nik([u8; 16]);

impl fmt::Debug for Nik {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print a NIK, even in debug output.
        f.write_str("Nik(<redacted>)")
    }
}

impl Nik {
    /// Validates shape, region and birth date (including the +40 rule).
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        let bad = |why: &str| Rejection::new(ReasonCode::MalformedNik, format!("NIK {why}"));
        let b = s.as_bytes();
        if b.len() != 16 || !b.iter().all(u8::is_ascii_digit) {
            return Err(bad("must be 16 digits"));
        }
        let num = |i: usize| u32::from(b[i] - b'0') * 10 + u32::from(b[i + 1] - b'0');
        if num(0) < 11 {
            return Err(bad("has no valid province code"));
        }
        if num(2) == 0 || num(4) == 0 {
            return Err(bad("has no valid regency or district code"));
        }
        let mut day = num(6);
        if day > 40 {
            day -= 40;
        }
        let month = num(8);
        let yy = num(10);
        if !(1..=12).contains(&month) {
            return Err(bad("has an invalid birth month"));
        }
        // Two-digit year: the century is unknown, so a 29 February is accepted
        // when the year is a leap year in either century it could be.
        let leap = yy % 4 == 0;
        let days_in_month = match month {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        if day == 0 || day > days_in_month {
            return Err(bad("has an invalid birth day"));
        }
        if b[12..16] == *b"0000" {
            return Err(bad("has a zero serial"));
        }
        let mut out = [0u8; 16];
        out.copy_from_slice(b);
        Ok(Self(out))
    }

    /// The digits, for keyed hashing at the edge. Do not log.
    pub fn expose_digits(&self) -> &[u8; 16] {
        &self.0
    }
}
