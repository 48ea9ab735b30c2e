//! The shared kit of every MPP agency service.
//!
//! An agency service speaks its own vocabulary over gRPC (Dukcapil "cetak
//! dokumen", Imigrasi "jadwal wawancara", ...) and translates each call into
//! the hub's common events. This crate holds everything those services share:
//!
//! - [`input`]: parsing of RPC fields with the core's types and limits, so a bad
//!   request is refused before anything is published;
//! - [`event`]: the [`EventBuilder`] that turns a core [`mpp_core::EventBody`]
//!   into a validated `mpp.v1.Envelope` with a fresh UUIDv7 event id;
//! - [`ids`]: application ids, citizen PINs and their verifier (computed by
//!   the front office only);
//! - [`walk_in`]: a filing without a tracking number has its case opened by
//!   the MPP front office ([`FrontOfficeClient`], `--front-office-url`);
//! - [`publish`]: the [`Publisher`] seam and the [`JetStreamPublisher`] behind it
//!   (`Nats-Msg-Id` = event id, awaiting the PubAck, bounded retries);
//! - [`outbox`]: the durable outbox in redb ([`OutboxPublisher`], group
//!   commit, the relay that publishes to JetStream in outbox order);
//! - [`files`]: reading configured files (keys, catalogues) of bounded size
//!   (re-exported from `mpp_edge::files`, the one definition);
//! - [`durable`]: the redb store of the outbox and the front office's counter
//!   and vault, and the migration of their sled stores;
//! - [`auth`]: bearer tokens of the calling back-office systems, checked by
//!   the [`AuthInterceptor`];
//! - [`metrics`]: the `/metrics` endpoint;
//! - [`run`](mod@run): [`run()`], the one function an agency binary calls;
//! - [`stream`]: the one definition of the `MPP_EVENTS` stream;
//! - [`catalogue`]: service standards — the catalogue files
//!   (`deploy/catalogue/<agency_id>.toml`, built in or `--catalogue-file`),
//!   their validation, deterministic event ids, and publication when a
//!   standard's version rises (a change without a version bump refuses to
//!   start);
//! - [`agency`]: the [`Agency`] handle an RPC implementation calls;
//! - [`error`]: the one mapping from kit errors to `tonic::Status`;
//! - [`server`] and [`cli`]: gRPC serving (health, reflection, limits, graceful
//!   shutdown), common flags and tracing set-up.
//!
//! Guarantee: an RPC is answered "accepted" only after every event it produced
//! is durably in the service's outbox (one redb transaction, synced); the relay
//! then publishes it to JetStream with `Nats-Msg-Id` = event id until a PubAck
//! arrives, across NATS outages and restarts. The answer carries the event
//! ids, no stream sequence. (With the [`JetStreamPublisher`] instead, used by
//! tests, "accepted" means "acknowledged by JetStream".)
//!
//! # Writing an agency binary
//!
//! An agency binary is its flags, its agency id, its built-in catalogue and
//! its generated service; [`run()`] does everything else — tracing, client
//! authentication (`--tokens-file` or `--insecure-no-auth`), the outbox in
//! `--data-dir`, the NATS connection and relay, `/metrics` on
//! `--metrics-addr`, gRPC health and reflection, graceful shutdown:
//!
//! ```text
//! #[derive(clap::Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     common: mpp_agency_kit::CommonArgs,
//! }
//!
//! #[tokio::main]
//! async fn main() -> anyhow::Result<()> {
//!     let m = with_grpc_addr_default(Cli::command(), "127.0.0.1:50062").get_matches();
//!     let cli = Cli::from_arg_matches(&m)?;
//!     // deploy/catalogue/imigrasi.toml, compiled in; --catalogue-file replaces it.
//!     const CATALOGUE: BuiltinCatalogue = BuiltinCatalogue {
//!         path: "deploy/catalogue/imigrasi.toml",
//!         text: include_str!("../../../deploy/catalogue/imigrasi.toml"),
//!     };
//!     let services = [ServiceId::parse("paspor")?, ServiceId::parse("paspor-el")?];
//!     let config =
//!         AgencyConfig::new(AgencyId::parse("imigrasi")?, cli.common, &CATALOGUE, &services)?;
//!     mpp_agency_kit::run(config, |agency| ImigrasiServiceServer::new(Imigrasi::new(agency))).await?;
//!     Ok(())
//! }
//! ```
//!
//! Handlers find the authenticated calling system in the request extensions
//! (`request.extensions().get::<mpp_agency_kit::ClientId>()`); every log line
//! of a call carries it in the `rpc` span. Client tokens are stored hashed:
//! `printf %s "$TOKEN" | sha256sum` gives the line `client_id:<hash>` of the
//! tokens file.
//!
//! Architecture invariant: the kit knows nothing about any one agency's
//! vocabulary; services know nothing about NATS.

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

pub mod agency;
pub mod case_events;
pub mod catalogue;
pub mod cli;
pub mod durable;
pub mod error;
pub mod event;
pub use mpp_edge::files;
pub mod ids;
pub mod input;
pub mod link;
pub mod metrics;
pub mod outbox;
pub mod publish;
pub mod run;
pub mod server;
pub mod signing;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(test)]
mod tls_tests;
pub mod trace;
pub mod verdicts;
pub mod walk_in;

// The edge's modules, under the paths agency services have always used.
pub use mpp_edge::{auth, stream, tls};

pub use agency::{Agency, Filed};
pub use auth::{AuthInterceptor, AuthMode, Caller, ClientId, RpcScopes, Scopes, TokenTable};
pub use catalogue::{
    publish_standard_changes, standard_event_id, BuiltinCatalogue, CatalogueError, CatalogueFault,
    ServiceStandardSpec, StandardsError,
};
pub use cli::{init_tracing, CommonArgs, LogFormat};
pub use error::{to_status, KitError, REASON_CODE_METADATA_KEY};
pub use event::{Clock, EventBuilder, OutgoingEvent, SystemClock};
pub use ids::{new_application_id, pin_verifier, Pin, PinPepper};
pub use outbox::{Outbox, OutboxConfig, OutboxPublisher, OutboxSnapshot, OutboxStatus, RelayConfig};
pub use publish::{Accepted, JetStreamPublisher, PubAckInfo, PublishError, Publisher};
pub use run::{run, run_with, AgencyConfig, AgencyService, Listeners, RunError};
pub use server::{serve, serve_with_readiness, serve_with_transport, shutdown_signal, Readiness};
pub use signing::{EnvelopeSigner, SigningKeyError};
pub use stream::{ensure_stream, stream_config, STREAM_NAME, STREAM_SUBJECTS};
pub use walk_in::{FrontOfficeClient, FrontOfficeLinkArgs, WalkInCase, WalkInError, WalkInOpener};
