//! The keyed permutation that makes tracking numbers impossible to
//! enumerate.
//!
//! The durable [`counter`](crate::counter) still counts up (that is what
//! guarantees no serial twice and never backwards); with a serial key, the
//! printed serial is not the counter value but
//!
//! ```text
//! serial = domain_start + P_key(counter - domain_start)
//! ```
//!
//! where `P_key` is a pseudo-random permutation of `0..domain_size`: a
//! balanced Feistel network of [`FEISTEL_ROUNDS`] rounds over `2h` bits
//! (`h` = half the bit width of `domain_size - 1`, rounded up, at least 1),
//! with round function
//!
//! ```text
//! F(round, half) = HMAC-SHA-256(key, domain_start ‖ domain_size ‖ round ‖ half)
//!                  (u64 big-endian, u8, u64 big-endian), first 8 bytes, low h bits
//! ```
//!
//! and cycle-walking: a block value outside `0..domain_size` is encrypted
//! again until it falls inside. A Feistel network is a bijection of its
//! `2^(2h)` block values for any round function, and cycle-walking turns a
//! permutation of a superset into one of the subset, so distinct counter
//! values always give distinct serials, all inside the domain. `2^(2h)` is
//! less than four times `domain_size`, so a walk takes fewer than four
//! steps on average.
//!
//! Without the key, the serial after a known one cannot be guessed; the
//! counter value is never published.

use mpp_agency_kit::files::read_at_most;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::nik_key::hmac_sha256;

/// Shortest accepted serial key, in bytes (256 bits), i.e. 64 hex digits.
pub const SERIAL_KEY_BYTES_MIN: usize = 32;

/// Longest accepted serial key, in bytes (the file may hold twice as many
/// hex digits, plus surrounding whitespace).
pub const SERIAL_KEY_BYTES_MAX: usize = 1024;

/// The most bytes read from a serial key file: the hex digits of the
/// longest key and some whitespace. A wrong path to a huge file fails fast.
pub const SERIAL_KEY_FILE_BYTES_MAX: usize = 2 * SERIAL_KEY_BYTES_MAX + 64;

/// Rounds of the Feistel network (at least 8 for a pseudo-random
/// permutation, with margin).
pub const FEISTEL_ROUNDS: u8 = 10;

/// Largest domain a permutation may cover, in serials: 2^40, far above the
/// counters' 5 000 000 000 and small enough that `2h` bits fit a `u64`.
pub const PERMUTATION_SIZE_MAX: u64 = 1 << 40;

/// The secret key of the serial permutation (`--serial-key-file`).
/// `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct SerialKey(Vec<u8>);

impl fmt::Debug for SerialKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SerialKey(<redacted>)")
    }
}

/// Why a serial key file is unusable. The messages name the file, never
/// its content.
#[derive(Debug, thiserror::Error)]
pub enum SerialKeyError {
    /// The file could not be read.
    #[error("cannot read the serial key file {path} (--serial-key-file): {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not hex digits (surrounding whitespace aside).
    #[error(
        "the serial key file {path} (--serial-key-file) must hold only hex digits, an even number of them \
         (e.g. from `head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'`)"
    )]
    NotHex {
        /// The file.
        path: PathBuf,
    },
    /// The key is too short or too long.
    #[error(
        "the serial key in {path} (--serial-key-file) must be {SERIAL_KEY_BYTES_MIN}..={SERIAL_KEY_BYTES_MAX} \
         bytes ({} ..= {} hex digits), got {len} bytes",
        2 * SERIAL_KEY_BYTES_MIN,
        2 * SERIAL_KEY_BYTES_MAX
    )]
    Length {
        /// The file.
        path: PathBuf,
        /// The key's length in bytes (past the read limit for a huge file).
        len: usize,
    },
}

/// What a secret file of hex digits held.
#[derive(Debug)]
pub(crate) enum HexFile {
    /// The bytes the digits spell.
    Bytes(Vec<u8>),
    /// The file is longer than allowed; `len` bytes' worth of digits (at
    /// least) were read.
    TooLong {
        /// Bytes the digits read so far would spell.
        len: usize,
    },
    /// Something other than an even number of hex digits (surrounding
    /// whitespace is ignored).
    NotHex,
}

/// Reads a secret file of hex digits, at most `file_bytes_max` bytes of it
/// (a wrong path to a huge file fails fast).
pub(crate) fn read_hex_file(path: &Path, file_bytes_max: usize) -> std::io::Result<HexFile> {
    let buf = read_at_most(path, file_bytes_max as u64)?;
    let text = buf.trim_ascii();
    if buf.len() > file_bytes_max {
        return Ok(HexFile::TooLong { len: text.len() / 2 });
    }
    if text.len() % 2 != 0 || !text.iter().all(|&c| hex_digit(c).is_some()) {
        return Ok(HexFile::NotHex);
    }
    Ok(HexFile::Bytes(
        text.chunks_exact(2)
            .map(|pair| (hex_digit(pair[0]).unwrap_or(0) << 4) | hex_digit(pair[1]).unwrap_or(0))
            .collect(),
    ))
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl SerialKey {
    /// A key of raw bytes (for tests and embedding); `None` unless
    /// [`SERIAL_KEY_BYTES_MIN`]..=[`SERIAL_KEY_BYTES_MAX`] bytes long.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        (SERIAL_KEY_BYTES_MIN..=SERIAL_KEY_BYTES_MAX).contains(&bytes.len()).then(|| Self(bytes.to_vec()))
    }

    /// Reads a key file: hex digits, surrounding ASCII whitespace ignored.
    pub fn from_file(path: &Path) -> Result<Self, SerialKeyError> {
        let io = |source| SerialKeyError::Io { path: path.to_owned(), source };
        match read_hex_file(path, SERIAL_KEY_FILE_BYTES_MAX).map_err(io)? {
            HexFile::TooLong { len } => Err(SerialKeyError::Length { path: path.to_owned(), len }),
            HexFile::NotHex => Err(SerialKeyError::NotHex { path: path.to_owned() }),
            HexFile::Bytes(bytes) => {
                let len = bytes.len();
                Self::from_bytes(&bytes).ok_or(SerialKeyError::Length { path: path.to_owned(), len })
            }
        }
    }

    /// A public fingerprint of the key, stored next to the counter so a
    /// changed key is noticed (it reveals nothing about the key).
    pub fn fingerprint(&self) -> [u8; 32] {
        hmac_sha256(&self.0, b"mpp serial key fingerprint v1")
    }
}

/// A keyed permutation of `start..end`.
#[derive(Debug, Clone)]
pub struct Permutation {
    key: SerialKey,
    start: u64,
    size: u64,
    /// Bits of each Feistel half.
    half_bits: u32,
}

impl Permutation {
    /// The permutation of `start..end` under `key`;
    /// `start < end`, `end - start <= PERMUTATION_SIZE_MAX`.
    pub fn new(key: SerialKey, start: u64, end: u64) -> Self {
        assert!(start < end, "empty permutation domain {start}..{end}");
        let size = end - start;
        assert!(size <= PERMUTATION_SIZE_MAX, "permutation domain of {size} serials is too large");
        let bits = u64::BITS - (size - 1).leading_zeros();
        let half_bits = bits.div_ceil(2).max(1);
        Self { key, start, size, half_bits }
    }

    /// The first value of the domain.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// One past the last value of the domain.
    pub fn end(&self) -> u64 {
        self.start + self.size
    }

    fn round(&self, round: u8, half: u64) -> u64 {
        let mut msg = [0u8; 25];
        msg[..8].copy_from_slice(&self.start.to_be_bytes());
        msg[8..16].copy_from_slice(&self.size.to_be_bytes());
        msg[16] = round;
        msg[17..].copy_from_slice(&half.to_be_bytes());
        let mac = hmac_sha256(&self.key.0, &msg);
        let mut first = [0u8; 8];
        first.copy_from_slice(&mac[..8]);
        u64::from_be_bytes(first) & self.half_mask()
    }

    fn half_mask(&self) -> u64 {
        (1u64 << self.half_bits) - 1
    }

    /// One pass of the Feistel network over the `2h`-bit block `x`.
    fn feistel(&self, x: u64) -> u64 {
        let (mut left, mut right) = (x >> self.half_bits, x & self.half_mask());
        for round in 0..FEISTEL_ROUNDS {
            (left, right) = (right, left ^ self.round(round, right));
        }
        (left << self.half_bits) | right
    }

    /// The image of `value` (in `start..end`), also in `start..end`.
    pub fn apply(&self, value: u64) -> u64 {
        assert!(value >= self.start && value - self.start < self.size, "{value} outside the domain");
        // The walk follows the cycle of `value - start` under the Feistel
        // permutation; that cycle has at most 2^(2h) elements and contains
        // `value - start` itself (below `size`), so the loop always returns.
        let blocks = 1u64 << (2 * self.half_bits);
        let mut x = value - self.start;
        for _ in 0..blocks {
            x = self.feistel(x);
            if x < self.size {
                return self.start + x;
            }
        }
        unreachable!("cycle-walking left the cycle of a permutation")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SerialKey {
        SerialKey::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn the_permutation_is_a_bijection_that_stays_in_range() {
        for size in [1u64, 2, 3, 10, 1000, 4097] {
            for start in [0u64, 1, 777] {
                let p = Permutation::new(key(1), start, start + size);
                let mut seen = vec![false; size as usize];
                for v in start..start + size {
                    let s = p.apply(v);
                    assert!((start..start + size).contains(&s), "size {size}: {v} -> {s}");
                    assert!(
                        !std::mem::replace(&mut seen[(s - start) as usize], true),
                        "size {size}: {s} twice"
                    );
                }
            }
        }
    }

    #[test]
    fn two_keys_give_different_orders() {
        let a = Permutation::new(key(1), 1, 1001);
        let b = Permutation::new(key(2), 1, 1001);
        let order = |p: &Permutation| (1..1001).map(|v| p.apply(v)).collect::<Vec<_>>();
        assert_ne!(order(&a), order(&b));
        let same = (1..1001).filter(|&v| a.apply(v) == b.apply(v)).count();
        assert!(same < 20, "{same} of 1000 values agree");
    }

    #[test]
    fn neighbours_are_not_consecutive() {
        // The counters' whole space (`counter::SERIAL_RANGE_END_MAX`).
        let p = Permutation::new(key(3), 1, crate::counter::SERIAL_RANGE_END_MAX);
        let draws_max = 10_000u64;
        let serials: Vec<u64> = (1..=draws_max).map(|v| p.apply(v)).collect();
        let plus_one = serials.windows(2).filter(|w| w[1] == w[0].wrapping_add(1)).count();
        assert!(plus_one * 100 < serials.len(), "{plus_one} of {draws_max} neighbours are +1");
        let mut sorted = serials.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), serials.len());
    }

    #[test]
    fn key_files_are_checked_and_never_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("serial.key");
        let good = "0123456789abcdefABCDEF0123456789abcdef0123456789abcdef0123456789";
        std::fs::write(&file, format!("\n{good}\n")).unwrap();
        let k = SerialKey::from_file(&file).unwrap();
        assert_eq!(k.0.len(), 32);
        assert_eq!(k.0[..3], [0x01, 0x23, 0x45]);
        assert_eq!(format!("{k:?}"), "SerialKey(<redacted>)");

        let short = "00112233445566778899aabbccddeeff";
        std::fs::write(&file, short).unwrap();
        let err = SerialKey::from_file(&file).unwrap_err();
        assert!(matches!(err, SerialKeyError::Length { len: 16, .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("serial.key") && !msg.contains(short), "{msg}");

        let secret = "not hex at all but a long secret sentence of sixty-four bytes ok";
        std::fs::write(&file, secret).unwrap();
        let msg = SerialKey::from_file(&file).unwrap_err().to_string();
        assert!(msg.contains("serial.key") && msg.contains("hex") && !msg.contains("secret"), "{msg}");
        std::fs::write(&file, &good[1..]).unwrap();
        assert!(matches!(SerialKey::from_file(&file), Err(SerialKeyError::NotHex { .. })));

        std::fs::write(&file, "ab".repeat(SERIAL_KEY_FILE_BYTES_MAX)).unwrap();
        assert!(matches!(SerialKey::from_file(&file), Err(SerialKeyError::Length { .. })));
        let missing = dir.path().join("missing.key");
        let msg = SerialKey::from_file(&missing).unwrap_err().to_string();
        assert!(msg.contains("missing.key"), "{msg}");
        assert!(SerialKey::from_bytes(&[0; 31]).is_none());
    }
}
