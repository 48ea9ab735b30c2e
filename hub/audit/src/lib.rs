//! What auditors use: inclusion and consistency proofs, receipts, a case as
//! of a sequence or time ([`audit`]), the `AuditService` gRPC API behind
//! auditor tokens ([`audit_service`]), and every `mpp-hub audit …` and
//! `mpp-hub admin …` subcommand ([`cli`]), and the witnesses' cosignatures
//! on the hub's checkpoints ([`cosign`]); and what participants hear back
//! over their own tokens: the verdicts on their events ([`verdicts`]) and
//! other participants' progress on their cases ([`case_events`]).
//!
//! Architecture invariant: never writes a live store. The offline tools
//! read a stopped hub's directory or an export; `rebuild` and `admin
//! restore` write only a new directory of their own. The only live writes
//! are access events in the lookups' access log (an auditor's case view, a
//! cross-agency feed's cases), through `mpp_lookup::access`.

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

pub mod audit;
pub mod audit_service;
pub mod auth;
pub mod case_events;
pub mod cli;
pub mod cosign;
pub mod verdicts;
