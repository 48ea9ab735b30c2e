//! What auditors use: inclusion and consistency proofs, receipts, a case as
//! of a sequence or time ([`audit`]), the `AuditService` gRPC API behind
//! auditor tokens ([`audit_service`]), and every `mpp-hub audit …` and
//! `mpp-hub admin …` subcommand ([`cli`]), and the witnesses' cosignatures
//! on the hub's checkpoints ([`cosign`]).
//!
//! Architecture invariant: never writes a live store. The offline tools
//! read a stopped hub's directory or an export; `rebuild` and `admin
//! restore` write only a new directory of their own.

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

pub mod audit;
pub mod audit_service;
pub mod auth;
pub mod cli;
pub mod cosign;
pub mod verdicts;
