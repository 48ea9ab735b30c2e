//! MPP Hub's pure core.
//!
//! Architecture invariant: this crate knows nothing about tokio, sled, tonic,
//! prost or NATS, and never reads a clock or a random source. Every function is
//! a pure function of its arguments, so two hubs that feed it the same stream
//! compute byte-identical logs and projections. Time arrives as data: the
//! JetStream timestamp of the message being decided.
//!
//! The flow for one inbound message is:
//! [`validate::validate`] (fields → typed [`event::Envelope`]) →
//! [`decide::decide`] (envelope + current state → `Ok` or a
//! [`reason::Rejection`]) → [`decide::apply`] (infallible state change) →
//! [`log::LogEntry`] (the hash-chained record of the verdict).
//!
//! Reading a case adds its SLA clocks: [`sla::sla`] and
//! [`sla::case_status_at`] take the case, the region calendars
//! ([`calendar::CalendarSet`], parsed from text the edge reads) and the
//! instant to report as of, passed in by the caller.
//!
//! Auditing: [`merkle`] builds the RFC 9162 Merkle tree over the entries'
//! chain hashes (frontier, inclusion and consistency proofs and their
//! verification), and [`checkpoint`] defines what the hub signs about it.
//!
//! Trust: [`registry`] is the participant registry, a fold over the
//! registrar's signed statements in the log, and its rules for every event
//! (registered participant, valid key, signature, service, event type,
//! region); [`signature`] is the canonical encoding participants sign,
//! one Ed25519 signature per batch over a Merkle root.
//!
//! Seeded choices: [`rng::Rng`] (SplitMix64) is the project's one seeded
//! generator, a pure function of its seed, used by the simulator's journeys
//! and the tests (not by the hub itself).

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

pub mod base64;
pub mod calendar;
pub mod case;
pub mod checkpoint;
pub mod decide;
pub mod event;
pub mod hold;
pub mod ids;
pub mod limits;
pub mod log;
pub mod merkle;
pub mod note;
pub mod pin;
pub mod reason;
pub mod redrive;
pub mod registry;
pub mod rejection;
pub mod rng;
pub mod signature;
pub mod sla;
pub mod state;
pub mod validate;

pub use calendar::{Calendar, CalendarError, CalendarSet, Date, Weekday, Zone};
pub use case::{
    Application, Case, CaseStatus, Collection, DataRead, NextAction, PersonalData, PinReissue,
    ServiceStandard, StandardTerms, TimelineItem,
};
pub use decide::{apply, decide, decide_at, EntryMeta, State, StateMut};
pub use event::{Envelope, EventBody, EventKind, UncheckedEnvelope};
pub use ids::{AgencyId, ApplicationId, EventId, Nik, RegionCode, ServiceId, TrackingNumber};
pub use log::{LogEntry, Redrive, Verdict};
pub use reason::{ReasonCode, Rejection};
pub use sla::{case_status_at, SlaView};
pub use state::AppState;
