//! What the hub shows of itself: the metrics registry ([`metrics`]: plain
//! counters, gauges and fixed-bucket histograms rendered as Prometheus
//! text) and readiness ([`health`]).
//!
//! Architecture invariant: imports no domain type. Every series takes
//! primitives (numbers, and label values from closed lists of `&'static
//! str`); the crates that own a domain type turn it into those.

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

pub mod health;
pub mod metrics;
pub mod testing;
