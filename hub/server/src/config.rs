//! Command-line flags of `mpp-hub`, each with an `MPP_*` environment fallback.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// Log output format.
    #[arg(long, global = true, env = "MPP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub: ingest from NATS JetStream, serve lookups over gRPC and HTTP.
    Serve(ServeArgs),
}

/// Flags of `mpp-hub serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// NATS server URL.
    #[arg(long, env = "MPP_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// Directory of the hub's sled store (created if missing).
    #[arg(long, env = "MPP_DATA_DIR", default_value = "./data/hub")]
    pub data_dir: PathBuf,
    /// Address of the gRPC server (cases service, health, reflection).
    #[arg(long, env = "MPP_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
    /// Address of the HTTP server (JSON API, /healthz, /readyz).
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
}
