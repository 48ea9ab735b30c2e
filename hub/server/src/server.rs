//! `mpp-hub serve`: wires the store, the writer thread, ingest, and the gRPC
//! and HTTP servers, and shuts them down in order.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mpp_core::calendar::CalendarSet;
use mpp_proto::v1::audit_service_server::AuditServiceServer;
use mpp_proto::v1::case_event_service_server::CaseEventServiceServer;
use mpp_proto::v1::cases_service_server::CasesServiceServer;
use mpp_proto::v1::verdict_service_server::VerdictServiceServer;
use mpp_store::SledStore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

use mpp_audit::audit_service::Audit;
use mpp_audit::auth::AuditorAuth;
use mpp_audit::case_events::CaseEvents;
use mpp_audit::verdicts::Verdicts;
use mpp_edge::auth::TokenTable;
use mpp_edge::grpc_serve::GrpcLimits;
use mpp_edge::listen::{grpc_tls_incoming, http_tls_incoming, plain_incoming};
use mpp_edge::nats::{connect_nats, NatsAccess};
use mpp_edge::nats_kv::{BucketSpec, NatsKv};
use mpp_edge::tls::Transport;
use mpp_ledger::ingest::{self, IngestConfig, OnCommit, Writer};
use mpp_ledger::ledger::Ledger;
use mpp_ledger::signer::{CheckpointPolicy, Checkpointer, Signer};
use mpp_lookup::access::AccessLog;
use mpp_lookup::cosigned::Transparency;
use mpp_lookup::grpc::Cases;
use mpp_lookup::guard::{GuardSettings, GuessBudgets, SharedGuard};
use mpp_lookup::http::{router, AppState};
use mpp_lookup::lookup::{load_calendars, read_pepper_file, system_clock, Lookups};
use mpp_lookup::page::{Web, WebSettings};
use mpp_lookup::pow::ProofOfWork;
use mpp_lookup::proxy::{ClientAddrPolicy, TrustedProxies};
use mpp_lookup::ratelimit::LookupLimits;
use mpp_lookup::session::Sessions;
use mpp_lookup::watch::CaseChanges;
use mpp_obs::health::NotReady;

use crate::config::ServeArgs;
use mpp_ledger::trust::Trust;

/// How long shutdown waits for in-flight requests.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The sockets the hub serves on, bound by the caller.
#[derive(Debug)]
pub struct Listeners {
    /// The gRPC server's (cases, audit, health, reflection).
    pub grpc: TcpListener,
    /// The HTTP server's (tracking page, JSON, operators, metrics, health).
    pub http: TcpListener,
}

/// Runs the hub until `shutdown` completes, serving on `--grpc-addr` and
/// `--http-addr` (bound after the store is open).
pub async fn serve(args: ServeArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    start(args, None, shutdown).await
}

/// Runs the hub in this process until `shutdown` completes, on `listeners`
/// the caller bound (tests bind port 0 and read the addresses first);
/// `--grpc-addr` and `--http-addr` are not used.
pub async fn run(
    args: ServeArgs,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    start(args, Some(listeners), shutdown).await
}

async fn start(
    args: ServeArgs,
    listeners: Option<Listeners>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // TLS files are read (and plaintext on a non-loopback address refused)
    // before anything else is opened.
    let addrs = match &listeners {
        Some(l) => [l.grpc.local_addr()?, l.http.local_addr()?],
        None => [args.grpc_addr, args.http_addr],
    };
    let transport = Transport::from_args(&args.tls, &addrs)?;
    let (http_client_addr, grpc_client_addr) = client_addr_policies(&args)?;
    let sessions = page_sessions(&args)?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    let nats_login = args.nats.login()?;
    let nats_credentials = match &nats_login {
        Some(login) => {
            let c = login.load().context("loading the NATS credentials")?;
            info!(nats_user = c.user(), nkey = c.nkey_public_key(), "Connecting to NATS as a user");
            Some(c)
        }
        None => None,
    };
    let nats_access = args.nats.access(nats_credentials).context("checking --nats-tls-ca-file")?;
    // NATS is asked where the stream starts only if the store is corrupt.
    let stream = mpp_ledger::recover::ask_stream(&args.nats.nats_url, &nats_access);
    let store = mpp_ledger::recover::open_store(
        &args.data_dir,
        args.on_corrupt_store,
        |d| SledStore::open(d),
        stream,
    )
    .await
    .with_context(|| format!("opening the store in {}", args.data_dir.display()))?;
    let trust = Arc::new(registrar_trust(&args)?);
    let ledger = Ledger::open_with(store.clone(), trust).context("reading the ledger head")?;
    let registry = ledger.registry();
    info!(
        registry_in_force = registry.in_force(),
        participants = registry.participants.len(),
        "Participant registry read"
    );
    let head = ledger.head();
    info!(last_seq = head.last_seq, last_stream_seq = head.last_stream_seq, "Store opened");
    let calendars = match &args.calendars_dir {
        Some(dir) => load_calendars(dir)?,
        None => {
            warn!("No --calendars-dir: SLA clocks count only weekends as days off");
            CalendarSet::new()
        }
    };
    let pepper = match &args.pin_pepper_file {
        Some(path) => read_pepper_file(path)?,
        None if args.insecure_dev_keys => {
            warn!(
                "--insecure-dev-keys: checking citizens' PINs with the PUBLIC development pepper. Anyone \
                 holding the log can recover every PIN. Never run this in production"
            );
            mpp_core::pin::PinPepper::insecure_dev()
        }
        None => anyhow::bail!(
            "no --pin-pepper-file (MPP_PIN_PEPPER_FILE): the hub needs the province's PIN pepper to check \
             citizens' PINs (for development only, --insecure-dev-keys uses the public one)"
        ),
    };
    let limits = LookupLimits { per_minute: args.lookups_per_minute, burst: args.lookup_burst };
    let (access, _) =
        AccessLog::open_or_set_aside(&args.data_dir.join("access"), &corrupt_access_aside(&args.data_dir))
            .context("opening the access log")?;
    // Counted after the access log is open: a corrupt one is kept aside
    // beside corrupt main stores, under the same prefix, for the same gauge.
    let corrupt_stores_kept = mpp_ledger::recover::corrupt_stores_kept(&args.data_dir);
    if corrupt_stores_kept > 0 {
        warn!(
            corrupt_stores_kept,
            data_dir = %args.data_dir.display(),
            "Corrupt stores moved aside (by a rebuild, or an access log reset) are kept in the data directory (corrupt-store-*): \
             remove them once their cause is known"
        );
    }
    let health = Arc::new(mpp_ledger::observe::health(&head));
    let metrics = health.metrics().clone();
    metrics.set_corrupt_stores_kept(corrupt_stores_kept);
    let lookups = Lookups::new(store.clone(), Arc::new(calendars), system_clock(), pepper, limits)
        .with_access_log(access.clone())
        .with_metrics(metrics.clone());
    let guard = open_guard(&args, &nats_access, &lookups.guard_secret()).await?;
    let sessions = Arc::new(sessions);
    let pow = Arc::new(ProofOfWork::new(
        sessions.clone(),
        args.pow_difficulty_bits,
        i64::from(args.pow_fallback_delay_seconds) * 1000,
    ));
    let lookups = lookups.with_guard(guard.clone()).with_pow(pow);
    // Readiness knows the disk from the start; then a task checks it every few seconds.
    let min_free_bytes = args.min_free_disk_mb.saturating_mul(mpp_obs::health::BYTES_PER_MB);
    match mpp_obs::health::check_disk(&health, &args.data_dir, min_free_bytes) {
        Ok(free) if free < min_free_bytes => {
            warn!(free_bytes = free, min_free_bytes, "Disk low: the hub reports not ready")
        }
        Ok(_) => {}
        Err(e) => warn!(error = %e, "Checking free disk space failed"),
    }
    let origin = mpp_core::checkpoint::Origin::for_hub(&args.hub_id)
        .with_context(|| format!("--hub-id {:?} is not a usable id", args.hub_id))?;
    let signer = Arc::new(
        Signer::load_or_create(&args.data_dir, origin).context("loading the checkpoint signing key")?,
    );
    info!(key_id = %signer.key_id(), origin = %signer.origin(), "Checkpoint signing key ready");
    let policy =
        CheckpointPolicy { every_entries: args.checkpoint_every_entries, every_ms: args.checkpoint_every_ms };
    let hub_key = signer.public_key();
    let checkpointer = Checkpointer::new(signer, policy, mpp_lookup::lookup::system_clock(), &store)
        .context("reading the latest checkpoint")?;
    let auditors = match &args.auditor_tokens_file {
        Some(path) => Some(Arc::new(load_unscoped(path).context("loading --auditor-tokens-file")?)),
        None => {
            warn!("No --auditor-tokens-file: every audit gRPC call will be refused");
            None
        }
    };
    let participants = match &args.participant_tokens_file {
        Some(path) => Some(Arc::new(load_participants(path).context("loading --participant-tokens-file")?)),
        None => {
            info!("No --participant-tokens-file: every verdict and case-event feed call will be refused");
            None
        }
    };
    let writer = Arc::new(
        Writer::spawn_with_metrics(ledger, Some(checkpointer), metrics)
            .context("starting the ledger writer")?,
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(guard.clone().follow(system_clock(), stop_rx.clone()));
    // Network and global failure counts leave the answer path: this task
    // adds them to the bucket every GUARD_COUNTER_FLUSH_MS.
    let guard_flusher = tokio::spawn(guard.flush_counters(system_clock(), stop_rx.clone()));
    let changes = CaseChanges::new(stop_rx.clone());
    let web = Arc::new(
        Web::with_sessions(
            changes.clone(),
            WebSettings {
                public_url: args.public_url.clone(),
                client_addr: http_client_addr,
                serves_tls: matches!(transport, Transport::Tls(_)),
                profiles: Arc::new(match &args.mpp_profiles_file {
                    Some(path) => {
                        mpp_lookup::profile::MppProfiles::load(path).context("reading --mpp-profiles-file")?
                    }
                    None => mpp_lookup::profile::MppProfiles::none(),
                }),
            },
            sessions,
        )
        .context("setting up the tracking page")?,
    );

    let (grpc_listener, http_listener) = match listeners {
        Some(l) => (l.grpc, l.http),
        None => (
            TcpListener::bind(args.grpc_addr)
                .await
                .with_context(|| format!("binding gRPC on {}", args.grpc_addr))?,
            TcpListener::bind(args.http_addr)
                .await
                .with_context(|| format!("binding HTTP on {}", args.http_addr))?,
        ),
    };
    info!(
        grpc = %grpc_listener.local_addr()?,
        http = %http_listener.local_addr()?,
        tls = transport.tls().is_some(),
        "Listening"
    );

    let origin = mpp_core::checkpoint::Origin::for_hub(&args.hub_id)?;
    let cosignatures = args
        .witnesses
        .start(&args.data_dir, origin.as_str(), store.clone(), stop_rx.clone())
        .context("setting up the witnesses")?;
    let lookups = lookups.with_transparency(Arc::new(Transparency {
        origin: origin.as_str().to_owned(),
        hub_key,
        cosignatures: cosignatures.clone(),
    }));
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    spawn_grpc_health(health_reporter, health.subscribe_ready(), stop_rx.clone());
    // Decode limits per service: a lookup or watch request is a tracking
    // number, a PIN and a page cursor; an audit request a few numbers and
    // ids.
    let control_bytes_max = mpp_edge::grpc_serve::GRPC_CONTROL_REQUEST_BYTES_MAX;
    let reflection =
        reflection_builder(SERVICE_NAMES_V1).build_v1().context("building gRPC reflection (v1)")?;
    // Many clients (grpcurl before 1.9, older Postman and Evans) still ask
    // the v1alpha reflection service; both serve the same descriptors.
    let reflection_v1alpha = reflection_builder(SERVICE_NAMES_V1ALPHA)
        .build_v1alpha()
        .context("building gRPC reflection (v1alpha)")?;
    let routes = tonic::service::Routes::new(health_service.max_decoding_message_size(control_bytes_max))
        .add_service(reflection.max_decoding_message_size(control_bytes_max))
        .add_service(reflection_v1alpha.max_decoding_message_size(control_bytes_max))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            match &cosignatures {
                Some(c) => AuditServiceServer::new(Audit::new(lookups.clone()).with_cosignatures(c.clone())),
                None => AuditServiceServer::new(Audit::new(lookups.clone())),
            }
            .max_decoding_message_size(mpp_audit::audit_service::AUDIT_REQUEST_BYTES_MAX),
            AuditorAuth::new(auditors),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            VerdictServiceServer::new(Verdicts::new(lookups.clone(), changes.clone()))
                .max_decoding_message_size(mpp_audit::verdicts::VERDICT_REQUEST_BYTES_MAX),
            AuditorAuth::participants(participants.clone()),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            CaseEventServiceServer::new(CaseEvents::new(lookups.clone(), changes.clone()))
                .max_decoding_message_size(mpp_audit::case_events::CASE_EVENT_REQUEST_BYTES_MAX),
            AuditorAuth::participants(participants),
        ))
        .add_service(
            CasesServiceServer::new(Cases::new(lookups.clone(), changes.clone(), grpc_client_addr))
                .max_decoding_message_size(mpp_lookup::grpc::CASES_REQUEST_BYTES_MAX),
        );
    let conn_limits = args.conn_limits();
    let grpc_limits = GrpcLimits::default();
    let grpc_task = match transport.tls() {
        None => tokio::spawn(mpp_edge::grpc_serve::serve(
            routes,
            plain_incoming(grpc_listener, conn_limits),
            stop_rx.clone(),
            grpc_limits,
        )),
        Some(tls) => tokio::spawn(mpp_edge::grpc_serve::serve(
            routes,
            grpc_tls_incoming(grpc_listener, tls, conn_limits),
            stop_rx.clone(),
            grpc_limits,
        )),
    };
    mpp_obs::health::spawn_disk_check(health.clone(), args.data_dir.clone(), min_free_bytes, stop_rx.clone());
    mpp_lookup::sla_gauge::spawn_sla_refresh(health.clone(), lookups.clone(), stop_rx.clone());
    let operators = match &args.operator_tokens_file {
        Some(path) => Some(Arc::new(load_unscoped(path).context("loading --operator-tokens-file")?)),
        None => {
            warn!("No --operator-tokens-file: every operator dashboard request will be refused");
            None
        }
    };
    let ops = mpp_ops::Ops::new(
        mpp_ops::OpsSettings {
            tokens: operators,
            redrive: Some(mpp_ops::RedriveTarget {
                nats_url: args.nats.nats_url.clone(),
                login: nats_login,
                tls_ca_file: args.nats.nats_tls_ca_file.clone(),
            }),
            secure_cookie: web.settings().secure_cookies(),
        },
        lookups.clone(),
        health.clone(),
    )
    .context("setting up the operators' dashboard")?;
    let app = router(AppState { lookups, health: health.clone(), web }).merge(mpp_ops::router(ops));
    let http_task = match transport.tls() {
        None => tokio::spawn(mpp_edge::http_serve::serve(
            app,
            plain_incoming(http_listener, conn_limits),
            stop_rx.clone(),
        )),
        Some(tls) => tokio::spawn(mpp_edge::http_serve::serve(
            app,
            http_tls_incoming(http_listener, tls, conn_limits),
            stop_rx.clone(),
        )),
    };
    // Time-based checkpoints: the writer checks its policy on every tick.
    tokio::spawn({
        let writer = Arc::downgrade(&writer);
        let mut rx = stop_rx.clone();
        let mut every = tokio::time::interval(policy.tick_interval());
        async move {
            loop {
                tokio::select! {
                    _ = every.tick() => match writer.upgrade() {
                        Some(w) => w.tick(),
                        None => return,
                    },
                    _ = rx.wait_for(|s| *s) => return,
                }
            }
        }
    });
    let ingest_task = tokio::spawn(ingest::run_with_access(
        IngestConfig {
            nats_url: args.nats.nats_url.clone(),
            consumer_name: args.consumer_name.clone(),
            batch_max: args.batch_max as usize,
            changes: Some(OnCommit(Arc::new(move |touched| changes.publish(touched)))),
        },
        nats_access,
        writer.clone(),
        health.clone(),
        head,
        stop_rx.clone(),
    ));

    shutdown.await;
    info!("Shutting down");
    health.set_not_ready(NotReady::Stopping);
    let _ = stop_tx.send(true);
    match tokio::time::timeout(SHUTDOWN_GRACE, ingest_task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => error!(error = %e, "Ingest had halted"),
        Ok(Err(e)) => error!(error = %e, "Ingest task failed"),
        Err(_) => error!("Ingest did not stop in time"),
    }
    for (name, task) in [("gRPC", grpc_task.map_err_to_string()), ("HTTP", http_task.map_err_to_string())] {
        match tokio::time::timeout(SHUTDOWN_GRACE, task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => error!(server = name, error = %e, "Server failed"),
            Err(_) => error!(server = name, "Server did not stop in time"),
        }
    }
    // The lookup guard's last flush of pending failure counts.
    if tokio::time::timeout(SHUTDOWN_GRACE, guard_flusher).await.is_err() {
        warn!("The lookup guard's pending failure counts were not flushed in time");
    }
    // The writer finishes the batch it holds (if any); its flush made it durable.
    if let Ok(writer) = Arc::try_unwrap(writer) {
        writer.join();
    }
    access.settle().await;
    info!("Stopped");
    Ok(())
}

/// How the HTTP and the gRPC server find a request's client address, from
/// `--trusted-proxies`, `--grpc-trusted-proxies`, `--forwarded-header` and
/// the deprecated `--trust-forwarded-for` (refused together with either list).
/// The registrar keys of `--registrar-key-file`; none (with a loud
/// warning) under `--insecure-no-registrar` or `--insecure-dev-keys`.
fn registrar_trust(args: &ServeArgs) -> anyhow::Result<Trust> {
    match &args.registrar_key_file {
        Some(path) => {
            let trust = Trust::from_key_file(path)?;
            info!(registrar_keys = trust.registrar_keys().len(), "Registrar keys loaded");
            Ok(trust)
        }
        None if args.insecure_no_registrar || args.insecure_dev_keys => {
            warn!(
                "No --registrar-key-file: every registry statement is rejected, no participant registry comes \
                 into force, and events are accepted unsigned from anyone who can publish to the stream. Never \
                 run this in production"
            );
            Ok(Trust::default())
        }
        None => anyhow::bail!(
            "no --registrar-key-file (MPP_REGISTRAR_KEY_FILE): the hub needs the province registrar's public key \
             to judge the participant registry (--insecure-no-registrar runs without one, insecurely)"
        ),
    }
}

fn client_addr_policies(args: &ServeArgs) -> anyhow::Result<(ClientAddrPolicy, ClientAddrPolicy)> {
    let header = args.forwarded_header.into();
    let trusted = |list: &Option<TrustedProxies>| match list {
        Some(proxies) => ClientAddrPolicy::TrustedProxies { proxies: proxies.clone(), header },
        None => ClientAddrPolicy::Peer,
    };
    if args.trust_forwarded_for {
        anyhow::ensure!(
            args.trusted_proxies.is_none() && args.grpc_trusted_proxies.is_none(),
            "--trust-forwarded-for (MPP_TRUST_FORWARDED_FOR) is deprecated and cannot be combined with \
             --trusted-proxies or --grpc-trusted-proxies: drop it and name the proxies (docs/OPERATIONS.md)"
        );
        warn!(
            "--trust-forwarded-for is deprecated: it believes X-Forwarded-For from any peer, so a client \
             that reaches the hub directly picks its own address; use --trusted-proxies and \
             --grpc-trusted-proxies"
        );
        return Ok((ClientAddrPolicy::LastForwardedFor, ClientAddrPolicy::LastForwardedFor));
    }
    for (server, list) in [("HTTP", &args.trusted_proxies), ("gRPC", &args.grpc_trusted_proxies)] {
        if let Some(l) = list {
            info!(server, trusted_proxies = %l, header = header.name(), "Client addresses forwarded by trusted proxies");
        }
    }
    Ok((trusted(&args.trusted_proxies), trusted(&args.grpc_trusted_proxies)))
}

/// The guessing budgets every replica shares: the NATS key-value bucket
/// `--guard-bucket`, created (or brought to the configured bounds) now.
async fn open_guard(
    args: &ServeArgs,
    access: &NatsAccess,
    secret: &[u8; 32],
) -> anyhow::Result<Arc<SharedGuard>> {
    let budgets = GuessBudgets {
        pin_failures_max: args.pin_failures_max,
        lockout_ms: u64::from(args.lockout_minutes) * 60_000,
        pin_failures_per_day_max: args.pin_failures_per_day_max,
        window_ms: u64::from(args.guess_window_seconds) * 1000,
        per_ipv4_max: args.failed_lookups_per_ipv4_max,
        per_ipv6_64_max: args.failed_lookups_per_ipv6_64_max,
        per_ipv6_56_max: args.failed_lookups_per_ipv6_56_max,
        per_ipv6_48_max: args.failed_lookups_per_ipv6_48_max,
        global_max: args.failed_lookups_global_max,
    };
    let spec = BucketSpec {
        name: args.guard_bucket.clone(),
        keys_max: i64::from(args.guard_keys_max),
        value_bytes_max: mpp_lookup::guard::policy::RECORD_BYTES_MAX as i32,
        max_age: Duration::from_secs(u64::from(args.guard_max_age_hours) * 3600),
        replicas: usize::from(args.guard_replicas),
        storage: args.guard_bucket_storage.storage(),
    };
    let client = connect_nats(&args.nats.nats_url, "mpp-hub-guard", access)
        .await
        .with_context(|| format!("connecting to NATS at {} for the lookup guard", args.nats.nats_url))?;
    let kv = NatsKv::open(client, &spec).await.context("opening the lookup guard's key-value bucket")?;
    info!(
        bucket = %spec.name,
        keys_max = spec.keys_max,
        max_age_hours = args.guard_max_age_hours,
        storage = mpp_edge::nats_kv::storage_name(spec.storage),
        "Lookup guard bucket ready"
    );
    let settings = GuardSettings { budgets, keys_max: args.guard_keys_max as usize, max_age: spec.max_age };
    // One compare-and-set write per key, not atomic batches: a batch's
    // commit costs 17-40 ms on a `sync_interval: always` server against
    // under 1 ms for a single write (mpp-edge's kv_batch_cost example), so
    // batching would make every wrong PIN slower (see mpp_edge::cas_batch).
    Ok(SharedGuard::new(Arc::new(kv), secret, settings))
}

/// The tracking page's sessions: under `--session-key-file` (and
/// `--previous-session-key-file`), or a random key for this process only.
fn page_sessions(args: &ServeArgs) -> anyhow::Result<Sessions> {
    match &args.session_key_file {
        Some(current) => {
            let previous = args.previous_session_key_file.as_deref();
            let sessions = Sessions::from_key_files(current, previous)?;
            info!(previous_key = previous.is_some(), "Page sessions keyed from --session-key-file");
            Ok(sessions)
        }
        None => {
            warn!(
                "No --session-key-file: page sessions use a random key of this process; they do not \
                 survive a restart or reach another replica (citizens type the PIN again)"
            );
            Sessions::new().context("drawing a random session key")
        }
    }
}

trait JoinToString {
    fn map_err_to_string(self) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
}

impl JoinToString for tokio::task::JoinHandle<()> {
    fn map_err_to_string(self) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>> {
        Box::pin(async move { self.await.map_err(|e| e.to_string()) })
    }
}

impl<E: std::fmt::Display + Send + 'static> JoinToString for tokio::task::JoinHandle<Result<(), E>> {
    fn map_err_to_string(self) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>> {
        Box::pin(async move {
            match self.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

/// A hub tokens file (auditors, operators): the hub declares no scopes, so
/// a line with a scope list is refused rather than silently ignored.
fn load_unscoped(path: &std::path::Path) -> Result<TokenTable, mpp_edge::auth::TokensError> {
    let table = TokenTable::load(path)?;
    table.check_scopes(&[])?;
    Ok(table)
}

/// The participants' tokens: unscoped, and each client id must be a
/// participant id (an agency id as subjects carry it), or no feed could
/// ever match it.
fn load_participants(path: &std::path::Path) -> anyhow::Result<TokenTable> {
    let table = load_unscoped(path)?;
    if let Some(bad) = table.clients().find(|c| mpp_core::ids::AgencyId::parse(c.as_str()).is_err()) {
        anyhow::bail!(
            "client id {:?} is not a participant id (lowercase letters, digits, '-')",
            bad.as_str()
        );
    }
    Ok(table)
}

/// The services the hub's gRPC port serves, as reflection lists them: the
/// proto crate's descriptor set also holds the agencies' and the front
/// office's services, which this port does not serve and so must not list.
const HUB_SERVICE_NAMES: [&str; 5] = [
    "mpp.v1.CasesService",
    "mpp.v1.AuditService",
    "mpp.v1.VerdictService",
    "mpp.v1.CaseEventService",
    "grpc.health.v1.Health",
];
const SERVICE_NAMES_V1: &str = "grpc.reflection.v1.ServerReflection";
const SERVICE_NAMES_V1ALPHA: &str = "grpc.reflection.v1alpha.ServerReflection";

/// A reflection builder listing exactly the hub's services and the given
/// reflection service.
fn reflection_builder(reflection_service: &str) -> tonic_reflection::server::Builder<'static> {
    let builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(mpp_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name(reflection_service);
    HUB_SERVICE_NAMES.into_iter().fold(builder, |b, name| b.with_service_name(name))
}

/// The gRPC health service follows readiness (`/readyz`): the whole server
/// (service `""`) and each service report `SERVING` while the hub is ready
/// and `NOT_SERVING` otherwise (starting, NATS unreachable, a stream gap, a
/// store failure, a low disk, stopping), so that a gRPC probe and an HTTP
/// probe of one replica never disagree. The services still answer while not
/// ready (lookups from the last committed state); the status tells a load
/// balancer to prefer a ready replica.
fn spawn_grpc_health(
    reporter: tonic_health::server::HealthReporter,
    mut ready: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    use tonic::server::NamedService;
    use tonic_health::ServingStatus;
    const SERVICES: [&str; 5] = [
        "",
        <CasesServiceServer<Cases> as NamedService>::NAME,
        <AuditServiceServer<Audit> as NamedService>::NAME,
        <VerdictServiceServer<Verdicts> as NamedService>::NAME,
        <CaseEventServiceServer<CaseEvents> as NamedService>::NAME,
    ];
    tokio::spawn(async move {
        loop {
            let status =
                if *ready.borrow_and_update() { ServingStatus::Serving } else { ServingStatus::NotServing };
            for service in SERVICES {
                reporter.set_service_status(service, status).await;
            }
            tokio::select! {
                changed = ready.changed() => if changed.is_err() { return },
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        for service in SERVICES {
            reporter.set_service_status(service, ServingStatus::NotServing).await;
        }
    })
}

/// Where a corrupt access log is moved: `corrupt-store-<unix ms>-access/`
/// in the data directory, so `mpp_hub_corrupt_stores_kept` counts it.
fn corrupt_access_aside(data_dir: &std::path::Path) -> std::path::PathBuf {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    data_dir.join(format!("{}{ms}-access", mpp_ledger::recover::CORRUPT_STORE_DIR_PREFIX))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::{Cli, Command};

    fn serve_args(flags: &[&str]) -> Result<ServeArgs, clap::Error> {
        let argv = ["mpp-hub", "serve"].iter().chain(flags);
        match Cli::try_parse_from(argv)?.command {
            Command::Serve(args) => Ok(args),
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn trusted_proxies_are_per_server_and_refused_with_the_deprecated_flag() {
        let args =
            serve_args(&["--trusted-proxies", "10.0.0.0/8,fd00::/8", "--forwarded-header", "forwarded"])
                .unwrap();
        let (http, grpc) = client_addr_policies(&args).unwrap();
        match http {
            ClientAddrPolicy::TrustedProxies { proxies, header } => {
                assert_eq!(proxies.to_string(), "10.0.0.0/8,fd00::/8");
                assert_eq!(header, mpp_lookup::proxy::ForwardedHeader::Forwarded);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(grpc, ClientAddrPolicy::Peer), "gRPC has its own list");
        let args = serve_args(&["--grpc-trusted-proxies", "192.168.0.0/16"]).unwrap();
        let (http, grpc) = client_addr_policies(&args).unwrap();
        assert!(matches!(http, ClientAddrPolicy::Peer));
        assert!(matches!(grpc, ClientAddrPolicy::TrustedProxies { .. }));
        let (http, grpc) = client_addr_policies(&serve_args(&["--trust-forwarded-for"]).unwrap()).unwrap();
        assert!(matches!(
            (http, grpc),
            (ClientAddrPolicy::LastForwardedFor, ClientAddrPolicy::LastForwardedFor)
        ));
        for list in ["--trusted-proxies", "--grpc-trusted-proxies"] {
            let args = serve_args(&["--trust-forwarded-for", list, "10.0.0.0/8"]).unwrap();
            let e = client_addr_policies(&args).unwrap_err().to_string();
            assert!(e.contains("deprecated") && e.contains("cannot be combined"), "{e}");
        }
        let e = serve_args(&["--trusted-proxies", "10.0.0.1/8"]).unwrap_err().to_string();
        assert!(e.contains("did you mean 10.0.0.0/8"), "{e}");
        assert!(serve_args(&["--trusted-proxies", ""]).is_err());
        assert!(serve_args(&["--grpc-trusted-proxies", "example.org"]).is_err());
        let (http, _) = client_addr_policies(&serve_args(&[]).unwrap()).unwrap();
        assert!(matches!(http, ClientAddrPolicy::Peer), "unchanged without flags");
    }

    #[test]
    fn the_session_key_files_are_read_at_start_and_bad_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("session-key");
        std::fs::write(&key, "ab".repeat(32)).unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, "ab".repeat(16)).unwrap();
        let key = key.display().to_string();
        assert!(page_sessions(&serve_args(&[]).unwrap()).is_ok(), "a random key without the flag");
        assert!(page_sessions(&serve_args(&["--session-key-file", &key]).unwrap()).is_ok());
        let args = serve_args(&["--session-key-file", &key, "--previous-session-key-file", &key]).unwrap();
        assert!(page_sessions(&args).is_ok());
        let e = page_sessions(&serve_args(&["--session-key-file", &short.display().to_string()]).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("too short"), "{e}");
        assert!(serve_args(&["--previous-session-key-file", &key]).is_err(), "needs --session-key-file");
    }
}
