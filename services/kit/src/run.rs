//! The whole life of an agency service in one call: [`run`].
//!
//! An agency binary parses its flags ([`CommonArgs`] flattened), builds its
//! [`AgencyConfig`] with [`AgencyConfig::new`] (its agency id, its built-in
//! catalogue and the services its RPCs can file; `--catalogue-file`
//! replaces the built-in catalogue), and hands [`run`] a function that
//! builds its generated tonic server from an [`Agency`]:
//!
//! ```text
//! let config = AgencyConfig::new(agency_id, args, &CATALOGUE, &services)?;
//! mpp_agency_kit::run(config, |agency| DukcapilServiceServer::new(Dukcapil::new(agency))).await?;
//! ```
//!
//! [`run`] then, in order:
//!
//! 1. sets up tracing (`mpp_edge::log`: `--log-format`, `MPP_LOG`);
//! 2. loads the client tokens (`--tokens-file`), refusing a scope the
//!    service does not declare ([`AgencyConfig::rpc_scopes`]), or refuses to
//!    start unless `--insecure-no-auth` is given (then warns loudly);
//! 3. reads the front office's settings (`--front-office-url`,
//!    `--front-office-token-file`), which open walk-in citizens' cases
//!    ([`crate::walk_in`]; the service holds no PIN pepper);
//! 4. compares the catalogue with the standards recorded as published in
//!    `--data-dir` (default `./data/<agency_id>`) and refuses to start, before
//!    anything is opened or published, when a standard changed without a
//!    version bump or its version went down (see
//!    [`crate::catalogue::published`]); then opens the durable outbox there
//!    with its limits;
//! 5. connects to NATS in the background (the service starts and takes calls
//!    while NATS is down), as `--nats-user` with the password in
//!    `--nats-password-file` if given, and starts the outbox relay, which
//!    first creates the `MPP_EVENTS` stream unless `--skip-stream-setup`;
//! 6. binds `--grpc-addr` and, if given, `--metrics-addr` (`/metrics`);
//!    loads the TLS certificate and key (`--tls-cert-file`, `--tls-key-file`,
//!    see [`crate::tls`]) and refuses plaintext on a non-loopback address
//!    unless `--insecure-plaintext`;
//! 7. puts the standards that are new or have a higher version than the
//!    recorded ones into the outbox and records them (unchanged ones are not
//!    published again; event ids are deterministic, so a re-publication is a
//!    duplicate JetStream or the hub drops; if the outbox cannot take them,
//!    e.g. it is full, that is logged and the service serves anyway, and
//!    they go out on the next start);
//! 8. serves the agency's service behind the [`AuthInterceptor`] (which
//!    also checks each RPC's scope when the service declares them), with gRPC
//!    health (NOT_SERVING while the outbox cannot take calls) and reflection,
//!    over TLS when a certificate is given (`/metrics` too);
//! 9. on SIGTERM or ctrl-c: stops taking connections, lets open calls finish
//!    (bounded by [`crate::server::SHUTDOWN_DRAIN_MS_MAX`]), then lets the
//!    relay drain the outbox for at most `--outbox-drain-ms`; what is
//!    left stays on disk and is published first after the next start.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mpp_core::ids::{AgencyId, ServiceId};
use tokio::net::TcpListener;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::service::Routes;

use crate::agency::Agency;
use crate::auth::{authenticated, AuthInterceptor, AuthMode, RpcScopes, TokenTable, TokensError};
use crate::case_events::{spawn_case_event_follower, CaseEventCursor, CaseEventError, CaseEventReaction};
use crate::catalogue::{
    load_catalogue, publish_standard_changes, BuiltinCatalogue, CatalogueError, PublishedStandards,
    ServiceStandardSpec, StandardsError,
};
use crate::cli::{
    connect_nats_in_background, init_tracing, CommonArgs, NatsCredentialsError, TracingInitError,
};
use crate::error::KitError;
use crate::event::{EventBuilder, SystemClock};
use crate::metrics::MetricsSource;
use crate::outbox::{Outbox, OutboxConfig, OutboxError, RelayConfig};
use crate::server::{serve_with_transport, shutdown_signal, ServeError};
use crate::signing::EnvelopeSigner;
use crate::stream::STREAM_NAME;
use crate::tls::{TlsError, Transport};
use crate::verdicts::{spawn_follower, EventStatusApi, HubFeed, VerdictStore, WaitVerdicts};
use mpp_proto::v1::event_status_service_server::EventStatusServiceServer;

/// A generated tonic server of an agency's service, as [`run`] serves it:
/// a named gRPC service that cannot fail (tonic answers errors as
/// statuses), cheap to clone and sendable to the server's tasks. Every
/// `<Agency>ServiceServer<T>` is one.
pub trait AgencyService:
    tonic::codegen::Service<
        http::Request<tonic::body::Body>,
        Response = http::Response<tonic::body::Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + NamedService
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> AgencyService for S where
    S: tonic::codegen::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + NamedService
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// What one agency service is.
#[derive(Debug, Clone)]
pub struct AgencyConfig {
    /// The agency id on every event and subject (`dukcapil`).
    pub agency_id: AgencyId,
    /// The parsed common flags.
    pub args: CommonArgs,
    /// The service standards (the catalogue), published when they change.
    pub standards: Vec<ServiceStandardSpec>,
    /// The scope each RPC needs (see [`crate::auth`]), or `None`: every
    /// authenticated caller may call every RPC, and the tokens file may list
    /// no scopes.
    pub rpc_scopes: Option<RpcScopes>,
    /// What the agency does with other agencies' events on its cases
    /// ([`crate::case_events`]), or `None`: it does not follow them.
    pub reaction: Option<CaseEventReaction>,
    /// The service's own metric families on `/metrics`, if any.
    pub extra_metrics: Option<crate::metrics::ExtraMetrics>,
}

impl AgencyConfig {
    /// The configuration of an agency binary: its standards are read from
    /// `--catalogue-file` when given, else from its built-in catalogue
    /// `builtin`, and validated (see [`crate::catalogue::file`]); `services`
    /// are the services its RPCs can file, each of which must have a
    /// standard, and no other.
    pub fn new(
        agency_id: AgencyId,
        args: CommonArgs,
        builtin: &BuiltinCatalogue,
        services: &[ServiceId],
    ) -> Result<Self, CatalogueError> {
        let standards = load_catalogue(args.catalogue_file.as_deref(), builtin, &agency_id, services)?;
        Ok(Self { agency_id, args, standards, rpc_scopes: None, reaction: None, extra_metrics: None })
    }

    /// This configuration with `reaction` to other agencies' events on the
    /// agency's cases (followed when `--hub-url` is given).
    pub fn reacting(mut self, reaction: CaseEventReaction) -> Self {
        self.reaction = Some(reaction);
        self
    }

    /// The binary's name, `mpp-<agency_id>` (also its NATS connection name).
    pub fn binary_name(&self) -> String {
        format!("mpp-{}", self.agency_id)
    }

    /// The outbox directory: `--data-dir`, or `./data/<agency_id>`.
    pub fn data_dir(&self) -> PathBuf {
        self.args.data_dir.clone().unwrap_or_else(|| PathBuf::from("data").join(self.agency_id.as_str()))
    }
}

/// Why an agency service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Tracing could not be set up.
    #[error(transparent)]
    Tracing(#[from] TracingInitError),
    /// Neither `--tokens-file` nor `--insecure-no-auth` was given.
    #[error(
        "no --tokens-file (MPP_TOKENS_FILE) given: refusing to serve without authentication. \
         Give a tokens file, or --insecure-no-auth for development"
    )]
    NoAuth,
    /// The tokens file is unusable.
    #[error(transparent)]
    Tokens(#[from] TokensError),
    /// `--front-office-url` / `--front-office-token-file` /
    /// `--front-office-tls-ca-file` are unusable.
    #[error(transparent)]
    FrontOffice(crate::link::LinkError),
    /// The outbox could not be opened.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// `--signing-key-file` is unusable.
    #[error(transparent)]
    SigningKey(#[from] crate::signing::SigningKeyError),
    /// `--nats-user` / `--nats-password-file` / `--nats-tls-ca-file` are unusable.
    #[error(transparent)]
    NatsCredentials(#[from] NatsCredentialsError),
    /// The NATS options are unusable (e.g. a malformed URL).
    #[error("cannot set up the NATS client for {url}: {source}")]
    Nats {
        /// `--nats-url`.
        url: String,
        /// The cause.
        source: async_nats::ConnectError,
    },
    /// An address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The catalogue (built in, or `--catalogue-file`) is unusable, so
    /// there is no [`AgencyConfig`] to run.
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    /// The service standards cannot be published: a standard changed
    /// without a version bump or went down, the record of published
    /// standards is unreadable, or a standard does not make a valid event.
    #[error(transparent)]
    Standards(StandardsError),
    /// TLS cannot be set up (a certificate or key file is unusable), or
    /// plaintext was refused on a non-loopback address.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The gRPC server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// `--hub-url` / `--hub-token-file` / `--hub-tls-ca-file` are unusable.
    #[error(transparent)]
    HubFeed(crate::link::LinkError),
    /// The verdict store could not be opened.
    #[error(transparent)]
    Verdicts(#[from] crate::verdicts::VerdictError),
    /// The case-event cursor could not be opened.
    #[error(transparent)]
    CaseEvents(#[from] CaseEventError),
}

/// The listeners [`run_with`] serves on.
#[derive(Debug)]
pub struct Listeners {
    /// The gRPC listener.
    pub grpc: TcpListener,
    /// The `/metrics` listener, if metrics are served.
    pub metrics: Option<TcpListener>,
}

/// Runs an agency service until SIGTERM or ctrl-c (see the module docs):
/// tracing, authentication, the durable outbox and its relay, metrics and
/// the gRPC server. `make_service` builds the agency's generated tonic
/// server (e.g. `|agency| DukcapilServiceServer::new(Dukcapil::new(agency))`).
pub async fn run<S, F>(config: AgencyConfig, make_service: F) -> Result<(), RunError>
where
    F: FnOnce(Agency) -> S,
    S: AgencyService,
{
    let telemetry = init_tracing(&config.args, &config.binary_name())?;
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr).await.map_err(|source| RunError::Bind { addr, source })
    };
    let grpc = bind(config.args.grpc_addr).await?;
    let metrics = match config.args.metrics_addr {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let ran = run_with(config, make_service, Listeners { grpc, metrics }, shutdown_signal()).await;
    // The last spans, flushed (bounded) once the server has stopped.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    ran
}

/// [`run`] without tracing set-up, on given listeners, until `shutdown`
/// resolves (for tests and embedding).
pub async fn run_with<S, F>(
    config: AgencyConfig,
    make_service: F,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError>
where
    F: FnOnce(Agency) -> S,
    S: AgencyService,
{
    let name = config.binary_name();
    let args = &config.args;
    let auth = match (&args.tokens_file, args.insecure_no_auth) {
        (Some(path), _) => {
            let table = TokenTable::load(path)?;
            table.check_scopes(&config.rpc_scopes.map(|t| t.scopes()).unwrap_or_default())?;
            let clients: Vec<&str> = table.clients().map(|c| c.as_str()).collect();
            tracing::info!(file = %path.display(), clients = %clients.join(","), "Client tokens loaded");
            AuthMode::Tokens(Arc::new(table))
        }
        (None, true) => {
            tracing::warn!(
                "AUTHENTICATION DISABLED (--insecure-no-auth): ANY caller that reaches the gRPC port can \
                 file and change applications. Development only; never in production"
            );
            AuthMode::Insecure
        }
        (None, false) => return Err(RunError::NoAuth),
    };
    let interceptor = match config.rpc_scopes {
        Some(table) => AuthInterceptor::new(auth).with_rpc_scopes(table),
        None => AuthInterceptor::new(auth),
    };
    // TLS files are read (and a plaintext non-loopback address refused)
    // before anything is opened or published.
    let grpc_addr =
        listeners.grpc.local_addr().map_err(|source| RunError::Bind { addr: args.grpc_addr, source })?;
    let mut addrs = vec![grpc_addr];
    if let Some(metrics) = &listeners.metrics {
        let addr = args.metrics_addr.unwrap_or(grpc_addr);
        addrs.push(metrics.local_addr().map_err(|source| RunError::Bind { addr, source })?);
    }
    let transport = Transport::from_args(&args.tls, &addrs)?;
    let front_office =
        crate::walk_in::FrontOfficeClient::from_args(&args.front_office).map_err(RunError::FrontOffice)?;
    let nats_access = args.nats_access()?;
    let hub_feed = match (&args.hub_url, &args.hub_token_file) {
        (Some(url), Some(token)) => {
            Some(HubFeed::load(url, token, args.hub_tls_ca_file.as_deref()).map_err(RunError::HubFeed)?)
        }
        _ => None,
    };

    // Refuse a catalogue the hub would never apply before anything is
    // opened or published (checked again, against the same record, when
    // publishing below).
    let data_dir = config.data_dir();
    PublishedStandards::load(&data_dir)
        .and_then(|record| record.plan(&config.standards).map(|_| ()))
        .map_err(RunError::Standards)?;

    let signer = match &args.signing_key_file {
        Some(path) => {
            let signer = EnvelopeSigner::load(config.agency_id.clone(), path)?;
            tracing::info!(key_id = %signer.key_id(), "Envelopes are signed");
            Some(Arc::new(signer))
        }
        None => {
            tracing::warn!(
                "No --signing-key-file (MPP_SIGNING_KEY_FILE): envelopes are published unsigned, and a hub whose \
                 participant registry is in force rejects them"
            );
            None
        }
    };
    let clock = Arc::new(SystemClock);
    let outbox_config = OutboxConfig {
        dir: data_dir.clone(),
        entries_max: args.outbox_entries_max,
        bytes_max: args.outbox_bytes_max,
    };
    let mut outbox = Outbox::open(outbox_config, clock.clone())?;
    let client = connect_nats_in_background(&args.nats.nats_url, &name, &nats_access)
        .await
        .map_err(|source| RunError::Nats { url: args.nats.nats_url.clone(), source })?;
    outbox.start_relay(
        client,
        RelayConfig { stream: STREAM_NAME.to_owned(), ensure_stream: !args.skip_stream_setup, signer },
    );
    let status = outbox.status();
    let (stop_follower, follower_stop) = tokio::sync::watch::channel(false);
    let verdicts = match hub_feed.clone() {
        Some(hub) => {
            let store = Arc::new(VerdictStore::open_in(&data_dir)?);
            tracing::info!(hub = %hub.url, cursor = store.cursor(), "Following the hub's verdicts");
            Some((store.clone(), spawn_follower(store, hub, follower_stop.clone())))
        }
        None => {
            tracing::info!(
                "No --hub-url: the hub's verdicts are not followed (GetEventStatus answers VERDICT_FEED_OFF)"
            );
            None
        }
    };
    let status_api = EventStatusApi::new(verdicts.as_ref().map(|(store, _)| store.clone()));

    let builder = EventBuilder::new(args.region_code, config.agency_id.clone(), clock);
    let mut agency = Agency::new(builder, Arc::new(outbox.publisher()));
    match front_office {
        Some(client) => {
            tracing::info!(front_office = %client.url(), "Walk-in citizens' cases are opened at the front office");
            agency = agency.with_walk_in(Arc::new(client));
        }
        None => tracing::info!(
            "No --front-office-url: filings without a tracking number are refused (FRONT_OFFICE_NOT_CONFIGURED)"
        ),
    }
    let reacting = match (&config.reaction, &hub_feed) {
        (Some(reaction), Some(hub)) => {
            let cursor = Arc::new(CaseEventCursor::open_in(&data_dir)?);
            tracing::info!(hub = %hub.url, "Following other agencies' events on this agency's cases");
            Some(spawn_case_event_follower(
                cursor,
                hub.clone(),
                agency.clone(),
                reaction.clone(),
                follower_stop.clone(),
            ))
        }
        (Some(_), None) => {
            tracing::info!("No --hub-url: other agencies' events on this agency's cases are not followed");
            None
        }
        (None, _) => None,
    };
    tracing::info!(
        region = %args.region_code,
        nats = %args.nats.nats_url,
        nats_user = nats_access.credentials.as_ref().map_or("(anonymous)", |c| c.user()),
        nats_tls = nats_access.tls_ca_file.is_some(),
        data_dir = %data_dir.display(),
        catalogue = %args.catalogue_file.as_ref().map_or("built in".into(), |f| f.display().to_string()),
        services = config.standards.len(),
        "{name} starting"
    );

    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_task = listeners.metrics.map(|listener| {
        let source = MetricsSource {
            outbox: status.clone(),
            auth_failures: interceptor.failures_counter(),
            build: mpp_obs::process::BuildInfo::new(config.binary_name()),
            verdicts: verdicts.as_ref().map(|(store, _)| store.clone()),
            extra: config.extra_metrics.clone(),
        };
        let tls = transport.tls().map(|t| t.acceptor(&[crate::tls::ALPN_HTTP11]));
        tokio::spawn(crate::metrics::serve_with_tls(listener, source, tls, async {
            let _ = metrics_stopped.await;
        }))
    });

    let result = async {
        match publish_standard_changes(&agency, &config.standards, &data_dir).await {
            Ok(report) => tracing::info!(
                published = report.published.len(),
                unchanged = report.unchanged.len(),
                "Service standards checked"
            ),
            // The outbox cannot take them right now (full after a long NATS
            // outage): serve anyway, so the relay can drain it; health says
            // NOT_SERVING meanwhile. What was not recorded goes out on the
            // next start.
            Err(StandardsError::Publish(KitError::Publish(e))) => tracing::error!(
                error = %e,
                "Cannot queue the service standards; serving without publishing them (retried at the next start)"
            ),
            // They are in the outbox; only the record is missing, so the
            // next start publishes them again (duplicates, dropped).
            Err(e @ StandardsError::Write { .. }) => tracing::error!(
                error = %e,
                "Cannot record the published service standards; they are published again at the next start"
            ),
            Err(e) => return Err(RunError::Standards(e)),
        }
        let store = verdicts.as_ref().map(|(store, _)| store.clone());
        let service = authenticated(WaitVerdicts::new(make_service(agency), store), interceptor.clone());
        let status_service = EventStatusServiceServer::new(status_api)
            .max_decoding_message_size(crate::verdicts::EVENT_STATUS_REQUEST_BYTES_MAX);
        let routes = Routes::new(service).add_service(authenticated(status_service, interceptor));
        serve_with_transport(
            routes,
            &[S::NAME, <EventStatusServiceServer<EventStatusApi> as NamedService>::NAME],
            listeners.grpc,
            shutdown,
            Some(Arc::new(status)),
            transport.tls(),
        )
        .await?;
        Ok(())
    }
    .await;

    let report = outbox.shutdown(Duration::from_millis(args.outbox_drain_ms)).await;
    if report.remaining_entries > 0 {
        tracing::warn!(
            remaining_entries = report.remaining_entries,
            "Outbox not empty at shutdown: the events stay on disk and are published after the next start"
        );
    }
    let _ = stop_metrics.send(());
    let _ = stop_follower.send(true);
    if let Some((_, follower)) = verdicts {
        let _ = follower.await;
    }
    if let Some(follower) = reacting {
        let _ = follower.await;
    }
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    tracing::info!("{name} stopped");
    result
}
