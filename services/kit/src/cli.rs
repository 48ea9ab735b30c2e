//! Flags every agency binary shares, tracing set-up and the NATS connection.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mpp_core::ids::RegionCode;

/// Flags common to every agency service (`#[command(flatten)]` them). Each
/// has an `MPP_*` environment fallback.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// NATS server URL; several may be given comma-separated (a cluster).
    #[arg(long, env = "MPP_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// Address the gRPC server listens on (host:port). Each binary sets its
    /// own default, shown below.
    #[arg(long, env = "MPP_GRPC_ADDR")]
    pub grpc_addr: SocketAddr,

    /// BPS region code of the MPP this service runs for (4 digits, e.g. 1771
    /// Kota Bengkulu). New tracking numbers start with it; requests for cases
    /// of another region are refused with REGION_MISMATCH.
    #[arg(long, env = "MPP_REGION_CODE", default_value = "1771", value_parser = parse_region)]
    pub region_code: RegionCode,

    /// File holding the secret pepper of citizen PIN verifiers (16..=4096
    /// bytes; surrounding whitespace ignored). Must be the same for every
    /// agency service and the hub of the province. Without it a public
    /// development pepper is used and a warning is logged: never in production.
    #[arg(long, env = "MPP_PIN_PEPPER_FILE")]
    pub pin_pepper_file: Option<PathBuf>,

    /// Log output format. The level is set with RUST_LOG (default: info).
    #[arg(long, env = "MPP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// Do not create the MPP_EVENTS stream if it is missing (for deployments
    /// where agencies may only publish; the operator or the hub creates it).
    #[arg(long, env = "MPP_SKIP_STREAM_SETUP")]
    pub skip_stream_setup: bool,
}

/// Sets the default of `--grpc-addr` on a binary's command (call it on
/// `Cli::command()` before parsing, then `Cli::from_arg_matches`).
pub fn with_grpc_addr_default(cmd: clap::Command, default: &'static str) -> clap::Command {
    cmd.mut_arg("grpc_addr", |a| a.default_value(default).required(false))
}

fn parse_region(s: &str) -> Result<RegionCode, String> {
    RegionCode::parse(s).map_err(|r| r.detail)
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for log shippers).
    Json,
    /// Human-readable lines.
    Pretty,
}

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TracingInitError {
    /// RUST_LOG is not a valid filter.
    #[error("invalid RUST_LOG filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::FromEnvError),
    /// A global subscriber was already installed.
    #[error("cannot install the tracing subscriber: {0}")]
    Install(String),
}

/// Installs the global tracing subscriber: level from RUST_LOG (default
/// info), format from `--log-format`.
pub fn init_tracing(format: LogFormat) -> Result<(), TracingInitError> {
    let filter = tracing_subscriber::EnvFilter::builder()
        .with_default_directive(tracing_subscriber::filter::LevelFilter::INFO.into())
        .from_env()?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    result.map_err(|e| TracingInitError::Install(e.to_string()))
}

/// How long connecting to NATS may take at start, in milliseconds.
pub const NATS_CONNECT_TIMEOUT_MS: u64 = 5_000;

/// Connects to NATS as `name` (shown in the server's connection list).
/// `urls` may list several servers of a cluster, comma-separated. The client
/// reconnects by itself after a later disconnect. The next issue adds
/// credentials here.
pub async fn connect_nats(urls: &str, name: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    let servers: Vec<&str> = urls.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_millis(NATS_CONNECT_TIMEOUT_MS))
        .connect(servers)
        .await
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
        assert_eq!(cli.common.nats_url, "nats://127.0.0.1:4222");
        assert_eq!(cli.common.log_format, LogFormat::Pretty);
        assert!(!cli.common.skip_stream_setup);
        let cli = parse(&["x", "--region-code", "1707", "--log-format", "json"]).unwrap();
        assert_eq!(cli.common.region_code.to_string(), "1707");
        assert_eq!(cli.common.log_format, LogFormat::Json);
        assert!(parse(&["x", "--region-code", "17"]).is_err());
    }
}
