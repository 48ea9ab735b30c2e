//! Flags every agency binary shares and tracing set-up; the NATS connection
//! itself is the edge's (`mpp_edge::nats`), re-exported here.

use std::net::SocketAddr;
use std::path::PathBuf;

use mpp_core::ids::RegionCode;

pub use mpp_edge::nats::{
    check_nats_user, connect_nats, connect_nats_in_background, generate_nkey, NatsAccess, NatsArgs,
    NatsCredentials, NatsCredentialsError, NatsLogin, NATS_CONNECT_TIMEOUT_MS, NATS_PASSWORD_FILE_BYTES_MAX,
    NATS_RECONNECT_DELAY_MS_MAX, NATS_USER_BYTES_MAX,
};

use crate::outbox::{OUTBOX_BYTES_MAX_DEFAULT, OUTBOX_ENTRIES_MAX_DEFAULT};

/// Default of `--outbox-drain-ms`: after the gRPC server stopped, how long
/// the relay may publish what is left in the outbox, in milliseconds. The rest
/// stays on disk. With [`crate::server::SHUTDOWN_DRAIN_MS_MAX`] it fits in a
/// 30-second termination grace period.
pub const OUTBOX_DRAIN_MS_DEFAULT: u64 = 10_000;

/// Flags common to every agency service (`#[command(flatten)]` them). Each
/// has an `MPP_*` environment fallback.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Where NATS is and how to log in: --nats-url, --nats-user,
    /// --nats-nkey-file, --nats-password-file, --nats-tls-ca-file (see
    /// `mpp_edge::nats::NatsArgs`).
    #[command(flatten)]
    pub nats: mpp_edge::nats::NatsArgs,

    /// Address the gRPC server listens on (host:port). Each binary sets its
    /// own default, shown below.
    #[arg(long, env = "MPP_GRPC_ADDR")]
    pub grpc_addr: SocketAddr,

    /// BPS region code of the MPP this service runs for (4 digits, e.g. 1771
    /// Kota Bengkulu). New tracking numbers start with it; requests for cases
    /// of another region are refused with REGION_MISMATCH.
    #[arg(long, env = "MPP_REGION_CODE", default_value = "1771", value_parser = parse_region)]
    pub region_code: RegionCode,

    /// Logging: --log-format (see `mpp_edge::log`: stderr, filter MPP_LOG).
    #[command(flatten)]
    pub log: mpp_edge::log::LogArgs,

    /// Export of spans over OTLP: --otlp-endpoint (see `mpp_edge::otlp`).
    #[command(flatten)]
    pub otlp: mpp_edge::otlp::OtlpArgs,

    /// Do not create the MPP_EVENTS stream if it is missing (for deployments
    /// where agencies may only publish; the operator or the hub creates it).
    #[arg(long, env = "MPP_SKIP_STREAM_SETUP")]
    pub skip_stream_setup: bool,

    /// Directory of the durable outbox (redb; created if missing). A call is
    /// answered once its events are synced here; they are published to
    /// JetStream from here, also after a restart. One service per directory.
    /// Default: ./data/<agency_id>.
    #[arg(long, env = "MPP_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Most events waiting in the outbox; calls beyond it are refused with
    /// UNAVAILABLE / OUTBOX_FULL.
    #[arg(long, env = "MPP_OUTBOX_ENTRIES_MAX", default_value_t = OUTBOX_ENTRIES_MAX_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub outbox_entries_max: u64,

    /// Most bytes of events waiting in the outbox (default 1 GiB); calls
    /// beyond it are refused with UNAVAILABLE / OUTBOX_FULL.
    #[arg(long, env = "MPP_OUTBOX_BYTES_MAX", default_value_t = OUTBOX_BYTES_MAX_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub outbox_bytes_max: u64,

    /// At shutdown, after open calls finished, how long the outbox may keep
    /// publishing what is left, in milliseconds; the rest stays on disk and
    /// is published first after the next start.
    #[arg(long, env = "MPP_OUTBOX_DRAIN_MS", default_value_t = OUTBOX_DRAIN_MS_DEFAULT)]
    pub outbox_drain_ms: u64,

    /// File of the client systems allowed to call, one `client_id:sha256-hex`
    /// per line (`#` starts a comment). The hash of a token is the output of
    /// `printf %s "$TOKEN" | sha256sum`; clients send `authorization: Bearer
    /// <token>`. Required unless --insecure-no-auth is given.
    #[arg(long, env = "MPP_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,

    /// Accept calls without any token (development only; logged loudly at
    /// start). Without it the service refuses to start when no
    /// --tokens-file is given.
    #[arg(long, env = "MPP_INSECURE_NO_AUTH", conflicts_with = "tokens_file")]
    pub insecure_no_auth: bool,

    /// Service catalogue file (TOML, the format of
    /// deploy/catalogue/<agency_id>.toml): each service's completion time in
    /// working days, fee, requirements, fiktif positif and version. Without
    /// it the catalogue built into the binary (the shipped
    /// deploy/catalogue/<agency_id>.toml) is used. Checked at start with the
    /// hub's rules; a service's standard is published when its version rises.
    /// A standard changed without raising its version, or with a lower one,
    /// makes the service refuse to start.
    #[arg(long, env = "MPP_CATALOGUE_FILE")]
    pub catalogue_file: Option<PathBuf>,

    /// This participant's event-signing key (the Ed25519 seed file that
    /// `mpp-registrar keygen` writes, mode 0600; its `.pub` is what the
    /// province's registrar registers). Every batch the outbox relay
    /// publishes is signed with it. Without it events go out unsigned and a
    /// logged warning says so: a hub whose participant registry is in force
    /// rejects them (UNSIGNED_ENVELOPE).
    #[arg(long, env = "MPP_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,

    /// The hub's gRPC URL (`https://hub.example:50051`), to follow the hub's
    /// verdicts on this service's events (kept in `verdicts.redb` in the data
    /// directory, served as `mpp.v1.EventStatusService`), and, for a
    /// service that reacts to other agencies' events on its cases (PLN), the
    /// hub's cross-agency feed (cursor in `case-events.redb`); requires
    /// --hub-token-file. Without it the service hears no verdicts and
    /// `GetEventStatus` answers FAILED_PRECONDITION (VERDICT_FEED_OFF).
    #[arg(long, env = "MPP_HUB_URL", requires = "hub_token_file")]
    pub hub_url: Option<String>,

    /// This participant's token at the hub (first line of the file), whose
    /// SHA-256 the hub lists in its --participant-tokens-file under this
    /// participant's id.
    #[arg(long, env = "MPP_HUB_TOKEN_FILE", requires = "hub_url")]
    pub hub_token_file: Option<PathBuf>,

    /// CA certificate (PEM) of the hub's gRPC TLS certificate, for an
    /// `https://` --hub-url signed by a private CA.
    #[arg(long, env = "MPP_HUB_TLS_CA_FILE", requires = "hub_url")]
    pub hub_tls_ca_file: Option<PathBuf>,

    /// Address of the Prometheus `/metrics` endpoint (host:port): outbox
    /// depth, size, oldest age, published and failed counts. Not served
    /// when absent.
    #[arg(long, env = "MPP_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// TLS of the gRPC server (see docs/TLS.md).
    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,

    /// The front office that opens walk-in citizens' cases
    /// (--front-office-url, see [`crate::walk_in`]).
    #[command(flatten)]
    pub front_office: crate::walk_in::FrontOfficeLinkArgs,
}

/// Sets the default of `--grpc-addr` on a binary's command (call it on
/// `Cli::command()` before parsing, then `Cli::from_arg_matches`).
pub fn with_grpc_addr_default(cmd: clap::Command, default: &'static str) -> clap::Command {
    cmd.mut_arg("grpc_addr", |a| a.default_value(default).required(false))
}

impl CommonArgs {
    /// How to reach NATS: the credentials of `--nats-user` with
    /// `--nats-nkey-file` or `--nats-password-file` (read now) and
    /// `--nats-tls-ca-file` (checked readable).
    pub fn nats_access(&self) -> Result<NatsAccess, NatsCredentialsError> {
        self.nats.access(self.nats.credentials()?)
    }
}

fn parse_region(s: &str) -> Result<RegionCode, String> {
    RegionCode::parse(s).map_err(|r| r.detail)
}

pub use mpp_edge::log::LogFormat;
pub use mpp_edge::otlp::{Telemetry, TelemetryInitError as TracingInitError};

/// Installs the global tracing subscriber under the one logging contract of
/// every binary ([`mpp_edge::log`]): stderr, filter `MPP_LOG` (default
/// info), `--log-format` or by terminal; with `--otlp-endpoint`, spans are
/// exported too, as `service_name` ([`mpp_edge::otlp`]). Shut the returned
/// [`Telemetry`] down when the service has stopped, to flush its spans.
pub fn init_tracing(args: &CommonArgs, service_name: &str) -> Result<Telemetry, TracingInitError> {
    let (_, telemetry) =
        mpp_edge::otlp::init(&args.log, mpp_edge::log::LOG_FILTER_DEFAULT, &args.otlp, service_name)?;
    Ok(telemetry)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches, Parser};

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        common: CommonArgs,
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let m = with_grpc_addr_default(Cli::command(), "127.0.0.1:50061").try_get_matches_from(args)?;
        Cli::from_arg_matches(&m)
    }

    #[test]
    fn defaults_and_region_validation() {
        let cli = parse(&["x"]).unwrap();
        assert_eq!(cli.common.grpc_addr.to_string(), "127.0.0.1:50061");
        assert_eq!(cli.common.region_code.to_string(), "1771");
        assert_eq!(cli.common.nats.nats_url, "nats://127.0.0.1:4222");
        assert_eq!(cli.common.log.log_format, None, "chosen by terminal at start");
        assert!(!cli.common.skip_stream_setup);
        assert_eq!(cli.common.data_dir, None);
        assert_eq!(cli.common.tokens_file, None);
        assert!(!cli.common.insecure_no_auth);
        assert_eq!(cli.common.metrics_addr, None);
        assert_eq!(cli.common.catalogue_file, None);
        assert_eq!(cli.common.outbox_entries_max, 1_000_000);
        let cli = parse(&["x", "--region-code", "1707", "--log-format", "json"]).unwrap();
        assert_eq!(cli.common.region_code.to_string(), "1707");
        assert_eq!(cli.common.log.log_format, Some(LogFormat::Json));
        assert!(parse(&["x", "--region-code", "17"]).is_err());
        let cli =
            parse(&["x", "--data-dir", "/tmp/o", "--tokens-file", "/t", "--metrics-addr", "127.0.0.1:9100"])
                .unwrap();
        assert_eq!(cli.common.data_dir.as_deref(), Some(std::path::Path::new("/tmp/o")));
        assert_eq!(cli.common.metrics_addr.map(|a| a.port()), Some(9100));
        assert!(parse(&["x", "--tokens-file", "/t", "--insecure-no-auth"]).is_err(), "conflicting");
        let cli = parse(&["x", "--catalogue-file", "deploy/catalogue/pln.toml"]).unwrap();
        assert_eq!(
            cli.common.catalogue_file.as_deref(),
            Some(std::path::Path::new("deploy/catalogue/pln.toml"))
        );
        assert!(parse(&["x", "--outbox-entries-max", "0"]).is_err());
    }

    #[test]
    fn nats_credentials_come_from_a_file_and_are_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dukcapil.pass");
        std::fs::write(&file, "s3cret-Pa55\n").unwrap();
        let f = file.to_str().unwrap();
        let cli = parse(&["x"]).unwrap();
        assert!(cli.common.nats.credentials().unwrap().is_none(), "anonymous by default");
        let cli = parse(&["x", "--nats-user", "dukcapil", "--nats-password-file", f]).unwrap();
        let c = cli.common.nats.credentials().unwrap().unwrap();
        assert_eq!(c.user(), "dukcapil");
        assert_eq!(c.password(), Some("s3cret-Pa55"), "surrounding whitespace trimmed");
        assert_eq!(c.inbox_prefix(), "_INBOX.dukcapil");
        let shown = format!("{c:?} {cli:?}");
        assert!(!shown.contains("s3cret"), "password shown: {shown}");
        // A user and one secret, or neither; the user becomes a subject token.
        assert!(parse(&["x", "--nats-user", "dukcapil"]).unwrap().common.nats.credentials().is_err());
        assert!(parse(&["x", "--nats-password-file", f]).is_err());
        assert!(parse(&["x", "--nats-nkey-file", f]).is_err());
        assert!(parse(&["x", "--nats-user", "u", "--nats-password-file", f, "--nats-nkey-file", f]).is_err());
        for bad in ["", "a.b", "a*", "a>", "a b", &"u".repeat(NATS_USER_BYTES_MAX + 1)] {
            assert!(parse(&["x", "--nats-user", bad, "--nats-password-file", f]).is_err(), "{bad:?}");
        }
        // Unreadable, empty and oversized files are refused.
        let missing = dir.path().join("missing");
        assert!(matches!(NatsCredentials::load("u", &missing), Err(NatsCredentialsError::Read { .. })));
        std::fs::write(&file, " \n").unwrap();
        assert!(matches!(NatsCredentials::load("u", &file), Err(NatsCredentialsError::Empty { .. })));
        std::fs::write(&file, "x".repeat(NATS_PASSWORD_FILE_BYTES_MAX as usize + 1)).unwrap();
        assert!(matches!(NatsCredentials::load("u", &file), Err(NatsCredentialsError::TooLarge { .. })));
        std::fs::write(&file, "x".repeat(NATS_PASSWORD_FILE_BYTES_MAX as usize)).unwrap();
        assert!(NatsCredentials::load("u", &file).is_ok(), "exactly the limit is fine");
    }
}
