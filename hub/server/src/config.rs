//! Command-line flags of `mpp-hub`, each with an `MPP_*` environment fallback.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use mpp_lookup::proxy::{ForwardedHeader, TrustedProxies};

/// Most messages the hub decides and commits in one sled batch.
pub const BATCH_MESSAGES_MAX: usize = 4096;

/// `mpp-hub`: the MPP case hub.
#[derive(Debug, Parser)]
#[command(
    name = "mpp-hub",
    version,
    about = "MPP Hub: one case status across every agency of a public service mall"
)]
pub struct Cli {
    /// Logging: --log-format (see `mpp_edge::log`).
    #[command(flatten)]
    pub log: mpp_edge::log::LogArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub: ingest from NATS JetStream, serve lookups over gRPC and HTTP.
    Serve(ServeArgs),
    /// Audit a hub's log: verify, export, rebuild, case-at, prove,
    /// check-proof, sla-report; on a copy of its data directory, on an
    /// export, or (verify, export, prove) over its audit gRPC service.
    Audit(mpp_audit::cli::AuditArgs),
    /// Print the hub's checkpoint public key (64 hex digits, Ed25519) from
    /// `<data-dir>/keys/checkpoint.pub`, for auditors to verify checkpoints.
    ExportPublicKey(ExportPublicKeyArgs),
    /// Operator tools: back up a hub's log (from a running hub or a stopped
    /// one's data directory) and restore it into a fresh data directory.
    Admin(mpp_audit::cli::admin::AdminArgs),
}

/// Flags of `mpp-hub export-public-key`.
#[derive(Debug, Clone, Args)]
pub struct ExportPublicKeyArgs {
    /// Directory of the hub's store (its keys are in `<data-dir>/keys/`).
    #[arg(long, env = "MPP_DATA_DIR", default_value = "./data/hub")]
    pub data_dir: PathBuf,
}

/// Flags of `mpp-hub serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Where NATS is and how to log in: --nats-url, --nats-user,
    /// --nats-nkey-file, --nats-password-file, --nats-tls-ca-file (see
    /// `mpp_edge::nats::NatsArgs`).
    #[command(flatten)]
    pub nats: mpp_edge::nats::NatsArgs,
    /// Directory of the hub's sled store (created if missing).
    #[arg(long, env = "MPP_DATA_DIR", default_value = "./data/hub")]
    pub data_dir: PathBuf,
    /// Address of the gRPC server (cases service, health, reflection).
    #[arg(long, env = "MPP_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
    /// Address of the HTTP server (tracking page /lacak, JSON API, /healthz, /readyz).
    #[arg(long, env = "MPP_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Name of this hub's durable JetStream consumer; give each hub replica its own.
    #[arg(long, env = "MPP_CONSUMER_NAME", default_value = "mpp-hub")]
    pub consumer_name: String,
    /// Directory of region calendars (`<dir>/<region>/<year>.txt`) for SLA
    /// working days. Without it, only weekends are days off (logged).
    #[arg(long, env = "MPP_CALENDARS_DIR")]
    pub calendars_dir: Option<PathBuf>,
    /// Most messages decided and committed in one atomic sled batch (1..=4096).
    #[arg(long, env = "MPP_BATCH_MAX", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=BATCH_MESSAGES_MAX as i64))]
    pub batch_max: u32,
    /// File holding the province's secret PIN pepper (16..=4096 bytes after
    /// trimming whitespace), the same file the front offices use (and
    /// nobody else): the hub checks citizens' PINs against the verifiers
    /// they publish. Required unless --insecure-dev-keys is given.
    #[arg(long, env = "MPP_PIN_PEPPER_FILE")]
    pub pin_pepper_file: Option<PathBuf>,
    /// Development only: without --pin-pepper-file, use the PUBLIC
    /// development pepper (the front office's default); without
    /// --registrar-key-file, run without a participant registry as
    /// --insecure-no-registrar does. Logged loudly.
    #[arg(long, env = "MPP_INSECURE_DEV_KEYS", conflicts_with = "pin_pepper_file")]
    pub insecure_dev_keys: bool,
    /// File of the province registrar's Ed25519 public key(s), one per line
    /// as 64 hex digits (`mpp-registrar keygen` writes one): the hub accepts
    /// registry statements signed by these keys only, and from the first
    /// accepted one on, every event must come from a registered participant
    /// and be signed by one of its keys (docs/DESIGN.md "Trust boundaries").
    /// Required unless --insecure-no-registrar or --insecure-dev-keys is
    /// given. Keep a retired registrar key listed while its statements must
    /// still replay.
    #[arg(long, env = "MPP_REGISTRAR_KEY_FILE")]
    pub registrar_key_file: Option<PathBuf>,
    /// INSECURE: run without registrar keys. Every registry statement is
    /// rejected (REGISTRAR_NOT_CONFIGURED), so no participant registry ever
    /// comes into force and events are accepted from anyone who can publish
    /// to the stream, unsigned, as before the registry existed. Logged
    /// loudly at start.
    #[arg(long, env = "MPP_INSECURE_NO_REGISTRAR", conflicts_with = "registrar_key_file")]
    pub insecure_no_registrar: bool,
    /// Case lookups a client address may make per minute (token bucket
    /// refill; IPv6 clients counted per /64).
    #[arg(long, env = "MPP_LOOKUPS_PER_MINUTE", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(1..=LOOKUP_RATE_MAX as i64))]
    pub lookups_per_minute: u32,
    /// Case lookups a client address may make in a burst (bucket size).
    #[arg(long, env = "MPP_LOOKUP_BURST", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=LOOKUP_RATE_MAX as i64))]
    pub lookup_burst: u32,
    /// Wrong PINs in a row (or lookups of an unknown case) that lock a
    /// tracking number, on every replica (docs/API.md, "Guessing budgets").
    #[arg(long, env = "MPP_PIN_FAILURES_MAX", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub pin_failures_max: u32,
    /// How long the first lock of a day lasts, in minutes; each further
    /// lock that day lasts four times longer, up to 24 hours.
    #[arg(long, env = "MPP_LOCKOUT_MINUTES", default_value_t = 15,
          value_parser = clap::value_parser!(u32).range(1..=24 * 60))]
    pub lockout_minutes: u32,
    /// Wrong PINs for one tracking number within 24 hours after which its
    /// lookups stay locked until the PIN is re-issued at the counter (or
    /// the number's record expires, --guard-max-age-hours).
    #[arg(long, env = "MPP_PIN_FAILURES_PER_DAY_MAX", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub pin_failures_per_day_max: u32,
    /// The window of the failed-lookup budgets per network and in all, in
    /// seconds (windows are aligned to the clock, the same on every replica).
    #[arg(long, env = "MPP_GUESS_WINDOW_SECONDS", default_value_t = 3600,
          value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub guess_window_seconds: u32,
    /// Failed lookups per IPv4 address per window.
    #[arg(long, env = "MPP_FAILED_LOOKUPS_PER_IPV4_MAX", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=LOOKUP_RATE_MAX as i64))]
    pub failed_lookups_per_ipv4_max: u32,
    /// Failed lookups per IPv6 /64 per window.
    #[arg(long, env = "MPP_FAILED_LOOKUPS_PER_IPV6_64_MAX", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=LOOKUP_RATE_MAX as i64))]
    pub failed_lookups_per_ipv6_64_max: u32,
    /// Failed lookups per IPv6 /56 per window.
    #[arg(long, env = "MPP_FAILED_LOOKUPS_PER_IPV6_56_MAX", default_value_t = 120,
          value_parser = clap::value_parser!(u32).range(1..=LOOKUP_RATE_MAX as i64))]
    pub failed_lookups_per_ipv6_56_max: u32,
    /// Failed lookups per IPv6 /48 per window.
    #[arg(long, env = "MPP_FAILED_LOOKUPS_PER_IPV6_48_MAX", default_value_t = 480,
          value_parser = clap::value_parser!(u32).range(1..=LOOKUP_RATE_MAX as i64))]
    pub failed_lookups_per_ipv6_48_max: u32,
    /// Failed lookups of all clients per window; past it, every lookup
    /// needs a proof of work (or the page's wait).
    #[arg(long, env = "MPP_FAILED_LOOKUPS_GLOBAL_MAX", default_value_t = 2000,
          value_parser = clap::value_parser!(u32).range(1..=LOOKUP_RATE_MAX as i64))]
    pub failed_lookups_global_max: u32,
    /// Leading zero bits a proof of work needs (each bit doubles the work;
    /// 18 is about a quarter of a second in a phone's browser).
    #[arg(long, env = "MPP_POW_DIFFICULTY_BITS", default_value_t = 18,
          value_parser = clap::value_parser!(u8).range(1..=mpp_lookup::pow::POW_DIFFICULTY_BITS_MAX as i64))]
    pub pow_difficulty_bits: u8,
    /// How long the page's way without JavaScript makes a citizen wait
    /// before a lookup while proofs of work are asked, in seconds.
    #[arg(long, env = "MPP_POW_FALLBACK_DELAY_SECONDS", default_value_t = 15,
          value_parser = clap::value_parser!(u32).range(0..=600))]
    pub pow_fallback_delay_seconds: u32,
    /// The NATS key-value bucket every replica keeps the guessing budgets
    /// and lockouts in (created at start if missing).
    #[arg(long, env = "MPP_GUARD_BUCKET", default_value = GUARD_BUCKET_DEFAULT)]
    pub guard_bucket: String,
    /// Most keys of that bucket (tracking numbers and networks with recent
    /// failures); each replica caches them all (about 100 bytes each). When
    /// full, a number with no key there fails closed after its first guess.
    #[arg(long, env = "MPP_GUARD_KEYS_MAX", default_value_t = 262_144,
          value_parser = clap::value_parser!(u32).range(1_000..=16_777_216))]
    pub guard_keys_max: u32,
    /// How long a key of that bucket lives after its last write, in hours:
    /// a number's lock, daily cap or failures are forgotten that long after
    /// the last wrong PIN.
    #[arg(long, env = "MPP_GUARD_MAX_AGE_HOURS", default_value_t = 168,
          value_parser = clap::value_parser!(u32).range(25..=24 * 365))]
    pub guard_max_age_hours: u32,
    /// Copies of that bucket in a NATS cluster (1 on a single server).
    #[arg(long, env = "MPP_GUARD_REPLICAS", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=5))]
    pub guard_replicas: u8,
    /// Where NATS keeps that bucket: memory (replicated like file storage
    /// in a cluster, so a lock survives a hub's restart and one NATS node's
    /// loss, but cleared when the whole NATS deployment restarts) or file
    /// (each wrong PIN then waits for a disk sync). Fixed when the bucket
    /// is created: an existing bucket keeps its storage and the hub warns.
    #[arg(long, env = "MPP_GUARD_BUCKET_STORAGE", value_enum, default_value_t = GuardBucketStorageArg::Memory)]
    pub guard_bucket_storage: GuardBucketStorageArg,
    /// Deprecated: use --trusted-proxies and --grpc-trusted-proxies. Takes
    /// the client address (for rate limits) from the last entry of
    /// X-Forwarded-For (HTTP) / x-forwarded-for (gRPC metadata) from ANY
    /// peer, so a client that reaches the hub without the proxy picks its
    /// own address. Logged as deprecated at start; refused together with
    /// either trusted-proxies flag.
    #[arg(long, env = "MPP_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,
    /// Reverse proxies in front of the HTTP server (comma-separated CIDRs or
    /// addresses, IPv4 and IPv6, at most 64): only a request whose TCP peer
    /// is in the list has its --forwarded-header read, and then the client
    /// is the right-most address in it that is not itself a trusted proxy.
    /// Without it, the client is the TCP peer.
    #[arg(long, env = "MPP_TRUSTED_PROXIES", value_name = "CIDRS")]
    pub trusted_proxies: Option<TrustedProxies>,
    /// Like --trusted-proxies, for the gRPC server (its own list: a plain
    /// TCP load balancer in front of gRPC forwards whatever metadata a
    /// client sends, so only name proxies that append x-forwarded-for).
    #[arg(long, env = "MPP_GRPC_TRUSTED_PROXIES", value_name = "CIDRS")]
    pub grpc_trusted_proxies: Option<TrustedProxies>,
    /// The header the trusted proxies append the client to: x-forwarded-for
    /// or forwarded (RFC 7239 `for=`). Only that one is read; a client can
    /// send the other freely.
    #[arg(long, env = "MPP_FORWARDED_HEADER", value_enum, default_value_t = ForwardedHeaderArg::XForwardedFor)]
    pub forwarded_header: ForwardedHeaderArg,
    /// File holding the tracking page's session key: 32..=512 random bytes
    /// as hex (64 to 1024 hex digits, surrounding whitespace ignored; e.g.
    /// `od -An -tx1 -N32 /dev/urandom | tr -d ' \n'`). Give every replica
    /// the same file so a citizen's session survives restarts and reaches
    /// any replica. Without it, a random key per process (logged).
    #[arg(long, env = "MPP_SESSION_KEY_FILE")]
    pub session_key_file: Option<PathBuf>,
    /// The session key file before a rotation: sessions it signed are still
    /// accepted (never issued), so a rotation ends none early. Keep it for
    /// one session lifetime (30 minutes) after every replica has the new
    /// --session-key-file, then drop it.
    #[arg(long, env = "MPP_PREVIOUS_SESSION_KEY_FILE", requires = "session_key_file")]
    pub previous_session_key_file: Option<PathBuf>,
    /// Public base URL of the tracking page, e.g.
    /// https://lacak.mpp.example.go.id; receipts' QR codes point to
    /// <url>/lacak/<tracking number>. Without it, the request's Host header
    /// is used. An https URL also marks the session cookie Secure.
    #[arg(long, env = "MPP_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The MPPs' profiles (TOML: name, logo, address, opening hours,
    /// contact, complaint channel per region code; deploy/mpp-profiles.toml),
    /// shown on the tracking page. Checked at start: a bad file stops the
    /// hub. Without it, every page has the neutral header.
    #[arg(long, env = "MPP_PROFILES_FILE")]
    pub mpp_profiles_file: Option<PathBuf>,
    /// This hub's id: its signed checkpoints name the log `mpp-hub/<hub id>`
    /// (printable ASCII, no spaces, at most 120 bytes). Give each province's
    /// hub set its own; replicas of one set share it.
    #[arg(long, env = "MPP_HUB_ID", default_value = mpp_ledger::signer::HUB_ID_DEFAULT)]
    pub hub_id: String,
    /// Sign a checkpoint of the log after this many new entries (or after
    /// --checkpoint-every-ms, whichever comes first; never when the log did
    /// not grow). The signing key is created on first start in
    /// `<data-dir>/keys/` (see `mpp-hub export-public-key`).
    #[arg(long, env = "MPP_CHECKPOINT_EVERY_ENTRIES", default_value_t = mpp_ledger::signer::CHECKPOINT_EVERY_ENTRIES_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub checkpoint_every_entries: u64,
    /// Sign a checkpoint at least this often, in milliseconds, while the log grows.
    #[arg(long, env = "MPP_CHECKPOINT_EVERY_MS", default_value_t = mpp_ledger::signer::CHECKPOINT_EVERY_MS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(100..=86_400_000))]
    pub checkpoint_every_ms: u64,
    /// Auditors' tokens for the audit gRPC service: `auditor_id:sha256-hex`
    /// per line (`printf %s "$TOKEN" | sha256sum`), the agency services'
    /// tokens-file format. Without it every audit call is refused.
    #[arg(long, env = "MPP_AUDITOR_TOKENS_FILE")]
    pub auditor_tokens_file: Option<PathBuf>,
    /// Participants' tokens for the verdict feed and the cross-agency feed
    /// (gRPC `VerdictService`, `CaseEventService`), in the format of
    /// --auditor-tokens-file; each client id is the participant's id as in
    /// its subjects (`mpp.events.<id>.…`): it reads only its own verdicts,
    /// and of others' events on its cases only what the registry grants it.
    /// Without it every such call is refused.
    #[arg(long, env = "MPP_PARTICIPANT_TOKENS_FILE")]
    pub participant_tokens_file: Option<PathBuf>,
    /// Operators' tokens for the dashboard (`/ops`, `/api/v1/ops/…`), in
    /// the format of --auditor-tokens-file. Without it every operator
    /// request is refused.
    #[arg(long, env = "MPP_OPERATOR_TOKENS_FILE")]
    pub operator_tokens_file: Option<PathBuf>,
    /// The hub is not ready (`/readyz` 503, reason `disk_low`) while the
    /// data directory has less than this many MiB free (checked every 5 s).
    /// 0 turns the check off.
    #[arg(long, env = "MPP_MIN_FREE_DISK_MB", default_value_t = mpp_obs::health::MIN_FREE_DISK_MB_DEFAULT,
          value_parser = clap::value_parser!(u64).range(0..=MIN_FREE_DISK_MB_MAX))]
    pub min_free_disk_mb: u64,
    /// What to do when sled reports its files corrupt on open (seen after
    /// `kill -9`, see docs/FAULTS.md): `rebuild` (move sled's files aside
    /// into `corrupt-store-<ms>/`, keep `keys/` and `access/`, and
    /// re-ingest the stream from sequence 1 into a byte-identical log;
    /// lookups miss cases until it has caught up; an ERROR log line and
    /// `mpp_hub_corrupt_stores_kept` tell the operator) — only if the
    /// stream still holds every message from sequence 1, else the hub
    /// exits saying why — or `fail` (exit, an operator decides).
    #[arg(long, env = "MPP_ON_CORRUPT_STORE", value_enum, default_value_t = mpp_ledger::recover::OnCorruptStore::Rebuild)]
    pub on_corrupt_store: mpp_ledger::recover::OnCorruptStore,
    /// Most connections one client address (IPv4 address or IPv6 /64) may
    /// hold open on each of the HTTP and gRPC listeners; more are closed at
    /// once. Behind a reverse proxy every client shares the proxy's address:
    /// raise it to what the proxy opens (docs/OPERATIONS.md).
    #[arg(long, env = "MPP_CONNECTIONS_PER_ADDRESS_MAX",
          default_value_t = mpp_edge::conn::CONNECTIONS_PER_ADDRESS_MAX,
          value_parser = parse_connections_per_address)]
    pub connections_per_address_max: usize,
    /// TLS of the gRPC and HTTP servers: --tls-cert-file, --tls-key-file,
    /// --tls-client-ca-file, --insecure-plaintext (see docs/TLS.md).
    #[command(flatten)]
    pub tls: mpp_edge::tls::TlsArgs,
    /// Witnesses: --witness-url, --witness-key, --witness-collect-ms (see
    /// docs/AUDIT.md, "Witnesses").
    #[command(flatten)]
    pub witnesses: mpp_audit::cosign::WitnessArgs,
    /// Export of spans over OTLP (see `mpp_edge::otlp`).
    #[command(flatten)]
    pub otlp: mpp_edge::otlp::OtlpArgs,
}

impl ServeArgs {
    /// The connection caps of each of the hub's listeners.
    pub fn conn_limits(&self) -> mpp_edge::conn::ConnLimits {
        mpp_edge::conn::ConnLimits {
            connections_per_address_max: self.connections_per_address_max,
            ..mpp_edge::conn::ConnLimits::default()
        }
    }
}

/// `--connections-per-address-max`: 1 up to the listener's whole cap.
fn parse_connections_per_address(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{e}"))?;
    if (1..=mpp_edge::conn::CONNECTIONS_MAX).contains(&n) {
        Ok(n)
    } else {
        Err(format!("must be 1..={}", mpp_edge::conn::CONNECTIONS_MAX))
    }
}

/// The values of `--forwarded-header`.
/// Where NATS keeps the lookup guard's bucket (`--guard-bucket-storage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GuardBucketStorageArg {
    /// In the NATS servers' memory (replicated in a cluster).
    Memory,
    /// On the NATS servers' disks.
    File,
}

impl GuardBucketStorageArg {
    /// The stream storage.
    pub fn storage(self) -> mpp_edge::nats_kv::StorageType {
        match self {
            Self::Memory => mpp_edge::nats_kv::StorageType::Memory,
            Self::File => mpp_edge::nats_kv::StorageType::File,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ForwardedHeaderArg {
    /// `X-Forwarded-For: client, proxy1, …`.
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    Forwarded,
}

impl From<ForwardedHeaderArg> for ForwardedHeader {
    fn from(a: ForwardedHeaderArg) -> Self {
        match a {
            ForwardedHeaderArg::XForwardedFor => Self::XForwardedFor,
            ForwardedHeaderArg::Forwarded => Self::Forwarded,
        }
    }
}

/// Highest accepted `--min-free-disk-mb` (1 EiB in MiB; no disk is larger).
pub const MIN_FREE_DISK_MB_MAX: u64 = 1 << 40;

/// Highest accepted `--lookups-per-minute` and `--lookup-burst`.
pub const LOOKUP_RATE_MAX: u32 = 10_000_000;

/// The default NATS key-value bucket of the guessing budgets.
pub const GUARD_BUCKET_DEFAULT: &str = "MPP_LOOKUP_GUARD";
