//! The seeded generator: every random choice in a test comes from a seed the
//! test prints, so a failure replays exactly. The generator itself is the
//! core's ([`mpp_core::rng::Rng`], SplitMix64), the one the simulator uses.

pub use mpp_core::rng::Rng;

/// The seed from environment variable `var` if set (decimal), otherwise one
/// derived from the clock; printed either way, with how to replay it.
pub fn seed_from_env(var: &str) -> u64 {
    let seed = std::env::var(var).ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x5eed)
    });
    println!("seed = {seed} (replay with {var}={seed})");
    seed
}
