//! Sample traffic for MPP Hub: simulated citizens whose errands span
//! agencies, driven through the services' own gRPC APIs with bearer tokens,
//! never through NATS.
//!
//! Every case starts at the front office (`mpp-frontoffice`, `BukaBerkas`)
//! with a synthetic citizen (a valid NIK of the MPP's region, a name, a
//! phone number); each agency then files its application into the case with
//! the tracking number and walks it through its own steps. The journeys
//! ([`plan::Journey`]):
//!
//! | journey | applications |
//! |---|---|
//! | `usaha-baru` | DPMPTSP NIB and PBG (inspection, retribution), PDAM sambungan (survey, RAB, installation), PLN pasang baru (survey, bill, installation) |
//! | `kelahiran` | Disdukcapil akta kelahiran and KK, a savings account at the bank |
//! | `paspor` | Imigrasi passport (interview booked and held, PNBP, printed, collected) |
//! | `tanah` | BPN pengecekan sertipikat (PNBP, check note collected) |
//!
//! Each application may have documents found missing (then brought), be
//! left waiting on a payment, documents or an interview (so the case shows
//! what the citizen must do next), be rejected or be withdrawn.
//!
//! - [`plan`]: journeys → [`plan::Plan`]s (pure, seeded, in visits/rounds);
//! - [`stack`]: the gRPC clients and the mapping of each step to the
//!   agency's own RPC;
//! - [`run`]: running one case step by step ([`run::CaseRun`], used by the
//!   end-to-end tests) or many interleaved ([`run::run`], used by the
//!   `mpp-sim` binary), paced by [`run::Pacer`];
//! - [`citizen`]: synthetic citizens; [`rng`]: the seeded generator (the
//!   core's [`mpp_core::rng`], shared with the tests' support crate).
//!
//! Everything is deterministic from the seed except what the services
//! allocate (tracking numbers, PINs, application and event ids) and times.

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

pub mod citizen;
pub mod error;
pub mod plan;
pub mod run;
pub mod stack;

// The one seeded generator of the project lives in the core, so that the
// tests share it without depending on the simulator; re-exported under its
// old path so `crate::rng::Rng` and `mpp_sim::rng::Rng` keep working.
pub use mpp_core::rng;

pub use error::SimError;
pub use plan::{Action, Agency, AppChoice, Fate, Journey, Plan, Service, Step, Visit};
pub use rng::Rng;
pub use run::{run, CaseRun, Pacer, RunConfig, RunError, RunSummary};
pub use stack::{Endpoints, Stack, Target};

#[cfg(test)]
mod tests;
