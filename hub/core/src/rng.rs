//! A tiny deterministic generator, one implementation for every seeded
//! choice in the project: the simulator's journeys, citizens, amounts and
//! document numbers (the same seed gives the same traffic), and the tests'
//! random steps (a printed seed replays a failure).
//!
//! It lives in the core because it is a pure function of its seed, like the
//! rest of the core: it reads no random source and no clock, and it has no
//! dependency, so the simulator (production) and the test-support crate can
//! share it without either depending on the other. Its output is part of
//! the simulator's contract (seeded journeys replay byte for byte): changing
//! a single constant or the order of draws in a method changes that output.

/// SplitMix64 (Steele, Lea, Flood 2014): small, fast and good enough to pick
/// journeys and synthetic data; never for anything secret.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// An independent generator for item `index` of a run with this seed:
    /// case `i`'s plan depends only on the seed and `i`, not on how many
    /// random numbers earlier cases drew.
    pub fn derive(seed: u64, stream: u64, index: u64) -> Self {
        let mut mix = Self::new(seed ^ stream.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        let base = mix.next_u64();
        let mut r = Self::new(base ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        // Discard one output so neighbouring indices do not start correlated.
        r.next_u64();
        r
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`0` when `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// A value in `lo..=hi` (`lo` when `hi < lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo).saturating_add(1))
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One item of `items`, which must not be empty (callers pass constant
    /// lists; an empty one is a bug and panics).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// `n` decimal digits (leading zeros allowed).
    pub fn digits(&mut self, n: usize) -> String {
        (0..n).map(|_| char::from(b'0' + self.below(10) as u8)).collect()
    }

    /// `n` random bytes (the low byte of one draw each).
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_numbers_and_derived_streams_differ() {
        let a: Vec<u64> = (0..8).scan(Rng::new(7), |r, _| Some(r.next_u64())).collect();
        let b: Vec<u64> = (0..8).scan(Rng::new(7), |r, _| Some(r.next_u64())).collect();
        assert_eq!(a, b);
        assert_ne!(Rng::derive(7, 1, 0).next_u64(), Rng::derive(7, 1, 1).next_u64());
        assert_ne!(Rng::derive(7, 1, 0).next_u64(), Rng::derive(7, 2, 0).next_u64());
        assert_eq!(Rng::derive(7, 1, 5).next_u64(), Rng::derive(7, 1, 5).next_u64());
        let mut r = Rng::new(1);
        for _ in 0..1000 {
            let v = r.range(3, 5);
            assert!((3..=5).contains(&v));
        }
        assert_eq!(r.digits(13).len(), 13);
        assert!(r.digits(13).bytes().all(|b| b.is_ascii_digit()));
    }

    /// The generator's output is the simulator's contract: these are the
    /// first SplitMix64 outputs for seed 0 (Steele, Lea, Flood 2014).
    #[test]
    fn the_sequence_is_splitmix64() {
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(r.next_u64(), 0x06C4_5D18_8009_454F);
    }
}
