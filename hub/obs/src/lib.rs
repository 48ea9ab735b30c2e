//! What the hub shows of itself: the metrics registry ([`metrics`]: plain
//! counters, gauges and fixed-bucket histograms rendered as Prometheus
//! text), readiness ([`health`]), and what every binary reports about itself
//! ([`process`]: `mpp_build_info` and the standard `process_*` series).
//!
//! Architecture invariant: imports no domain type. Every series takes
//! primitives (numbers, and label values from closed lists of `&'static
//! str`); the crates that own a domain type turn it into those.

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

pub mod health;
pub mod metrics;
pub mod process;
pub mod testing;
