//! The MPP agency services of every category the law names: one module per
//! agency, each serving the agency's own gRPC vocabulary and translating
//! every RPC into the hub's common events (see `MAPPING.md`, mapping v1).
//!
//! | module | agency | category | binary |
//! |---|---|---|---|
//! | [`dukcapil`] | Disdukcapil (family card, KTP-el, birth certificate) | daerah | `mpp-dukcapil` |
//! | [`imigrasi`] | Kantor Imigrasi (passports) | vertikal | `mpp-imigrasi` |
//! | [`bpn`] | Kantor Pertanahan, ATR/BPN (land) | pusat | `mpp-bpn` |
//! | [`pln`] | PT PLN (electricity connections) | BUMN | `mpp-pln` |
//! | [`pdam`] | Perumda Air Minum (water connections) | BUMD | `mpp-pdam` |
//! | [`bank`] | a private bank's desk (accounts, KUR credit) | swasta | `mpp-bank` |
//! | [`dpmptsp`] | DPMPTSP (PBG building approval, NIB) | daerah | `mpp-dpmptsp` |
//!
//! Every service is stateless: it checks the
//! shape of each request with the kit's input helpers (a bad request is
//! refused with `INVALID_ARGUMENT` or `FAILED_PRECONDITION` and a stable
//! reason code, and nothing is published), builds the common event and hands
//! it to the kit's [`mpp_agency_kit::Agency`]. Whether a step is legal in the
//! application's current state is the hub's decision.
//!
//! The binaries are a few lines each: [`cli::parse_args`] and
//! [`mpp_agency_kit::run`], which gives every one of them the durable outbox,
//! client authentication, metrics, health and reflection.
//!
//! Architecture invariant: this crate knows the agencies' vocabularies and
//! nothing about NATS, sled or tokens; everything below the RPC goes through
//! [`mpp_agency_kit`].

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

// First: its `agency_calls!` macro is used by `agency_service!`.
#[macro_use]
pub mod calls;

// Before the agency modules: its `agency_service!` writes their services,
// inverse mappings and `Call` enums.
#[macro_use]
mod service;

// Before the agency modules: its `round_trip_test!` and `mapping_tests!` are
// used by their tests.
#[cfg(test)]
#[macro_use]
mod test_support;

pub mod bank;
pub mod bpn;
pub mod cli;
pub mod common;
pub mod dpmptsp;
pub mod dukcapil;
pub mod imigrasi;
pub mod pdam;
pub mod pln;

pub use calls::{Answer, Target, Unmapped};
pub use common::{AgencyInfo, Category, RpcMapping, ServiceInfo, MAPPING_VERSION};

/// Every agency of this crate.
pub static AGENCIES: &[&AgencyInfo] =
    &[&dukcapil::INFO, &imigrasi::INFO, &bpn::INFO, &pln::INFO, &pdam::INFO, &bank::INFO, &dpmptsp::INFO];

#[cfg(test)]
mod tests;
