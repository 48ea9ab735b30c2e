//! Citizens' side of the hub: case lookups ([`lookup`]) over gRPC
//! ([`grpc`]) and HTTP ([`http`], [`json`]), the `/lacak` tracking page
//! ([`page`], [`i18n`], `templates/`), page sessions ([`session`]), rate
//! limits ([`ratelimit`]) per client address ([`proxy`]: who may name it),
//! guessing budgets every replica shares ([`guard`]) with proofs of work
//! ([`pow`]), the "who looked at my case" log ([`access`]),
//! live updates ([`watch`]) and the one mapping of reason codes to answers
//! ([`error`]).
//!
//! Architecture invariant: never writes the main store (it does not depend
//! on the writer, `mpp-ledger`, nor on async-nats); the clock is read here,
//! at the edge, never in the projection.

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

pub mod access;
#[cfg(test)]
mod citizen_tests;
pub mod cosigned;
pub mod error;
pub mod grpc;
pub mod guard;
pub mod http;
pub mod i18n;
pub mod json;
pub mod lookup;
pub mod page;
pub mod pow;
pub mod profile;
pub mod proxy;
pub mod ratelimit;
pub mod receipt;
pub mod session;
pub mod sla_gauge;
pub mod state;
pub mod watch;
pub mod web;
