//! The driver of the fuzz targets (`cargo test -p mpp-core --test fuzz`,
//! `-p mpp-ledger --test fuzz`): proptest runners seeded from one base seed,
//! so they run in the ordinary test suite (few cases) and, with more cases,
//! as long fuzzing runs:
//!
//! ```text
//! MPP_FUZZ_CASES=2000000 MPP_FUZZ_SECONDS=60 MPP_FUZZ_SEED=… cargo test --release …
//! ```

use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

/// Cases per proptest runner round; a long run is many rounds, each seeded
/// from the base seed and its round number.
pub const ROUND_CASES: u64 = 20_000;

/// Runs `test` on values of `strategy` until `MPP_FUZZ_CASES` cases (default
/// `default_cases`) or `MPP_FUZZ_SECONDS` of wall clock, whichever comes
/// first, and prints the figures. A failure panics with the seed
/// (`MPP_FUZZ_SEED` replays it) and round.
pub fn fuzz<S: Strategy>(
    name: &str,
    default_cases: u64,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let env_u64 = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let cases = env_u64("MPP_FUZZ_CASES").unwrap_or(default_cases);
    let limit = env_u64("MPP_FUZZ_SECONDS").map(Duration::from_secs);
    let seed = env_u64("MPP_FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    let start = Instant::now();
    let (mut done, mut round) = (0u64, 0u64);
    while done < cases && limit.is_none_or(|l| start.elapsed() < l) {
        let n = ROUND_CASES.min(cases - done);
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&round.to_le_bytes());
        let config = Config { cases: n as u32, failure_persistence: None, ..Config::default() };
        let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &key));
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("fuzz target {name} failed (MPP_FUZZ_SEED={seed}, round {round}): {e}");
        }
        done += n;
        round += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "fuzz {name}: {done} cases in {secs:.1} s = {:.0} cases/s (MPP_FUZZ_SEED={seed})",
        done as f64 / secs.max(1e-9)
    );
}
