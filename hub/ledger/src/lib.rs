//! The hub's writer: the JetStream consumer and the writer thread
//! ([`ingest`]), the deterministic batch pipeline ([`ledger`]: decode,
//! validate, dedupe, decide, apply, chain), checkpoint signing ([`signer`]), the registrar keys and
//! Ed25519 verification of participants' signatures ([`trust`])
//! and opening the store with its recovery policy ([`recover`]).
//!
//! Architecture invariant: the only code that writes the main store. No
//! HTTP, templates or tokens (no axum, minijinja or token table here);
//! business decisions stay in `mpp-core`. One thread owns the writer; it
//! tells others what changed through [`ingest::CommitListener`], never by
//! calling into them.

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

pub mod ingest;
pub mod ledger;
pub mod observe;
pub mod recover;
pub mod signer;
pub mod trust;
