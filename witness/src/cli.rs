//! `mpp-witness` subcommands and their flags (each with its `MPP_*`
//! variable).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio::sync::watch;
use tracing::info;

use crate::follow::{self, HubConfig, Shared};
use crate::key::WitnessKey;
use crate::state::{self, StateDir};

/// Default `--poll-ms`.
pub const POLL_MS_DEFAULT: u64 = 1000;

/// Largest auditor token file read, in bytes.
pub const TOKEN_FILE_BYTES_MAX: u64 = 4096;

/// The name of the key file in the state directory when no `--key-file`.
pub const KEY_FILE_DEFAULT: &str = "witness.ed25519";

/// Exit status of `check` and `verify-evidence` when they found (or could
/// not prove) misbehaviour.
pub const EXIT_FAILED: u8 = 1;

/// `mpp-witness`.
#[derive(Debug, Parser)]
#[command(
    name = "mpp-witness",
    version,
    about = "An independent witness of MPP hubs: checks each signed checkpoint is consistent with the last \
             one it cosigned, cosigns it (C2SP tlog-cosignature), keeps evidence of split views and rollbacks"
)]
pub struct Cli {
    /// Logging: --log-format.
    #[command(flatten)]
    pub log: mpp_edge::log::LogArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Follow hubs, cosign their consistent checkpoints, serve cosignatures,
    /// evidence and metrics over HTTP.
    Serve(ServeArgs),
    /// Read a witness's state directory: print each hub's last cosigned
    /// checkpoint and every evidence file; exit 1 if any evidence is kept.
    Check(CheckArgs),
    /// Check an evidence file offline with the hub's public key; exit 0
    /// when it proves what it says, 1 when it does not.
    VerifyEvidence(VerifyEvidenceArgs),
    /// Print the witness's public key as a C2SP vkey (creating the key on
    /// first use), for the hubs and auditors that count its cosignatures.
    PublicKey(KeyArgs),
}

/// The key flags.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// The witness's state directory.
    #[arg(long, env = "MPP_WITNESS_STATE_DIR", default_value = "./data/witness")]
    pub state_dir: PathBuf,
    /// The private key file (32-byte seed, 64 hex digits, mode 0600),
    /// created on first start. Default: <state-dir>/witness.ed25519.
    #[arg(long, env = "MPP_WITNESS_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// The witness's key name (C2SP: a schema-less URL naming it, e.g.
    /// ombudsman.go.id/witness).
    #[arg(long, env = "MPP_WITNESS_NAME")]
    pub name: String,
}

impl KeyArgs {
    fn load(&self) -> anyhow::Result<WitnessKey> {
        std::fs::create_dir_all(&self.state_dir)
            .with_context(|| format!("creating {}", self.state_dir.display()))?;
        let path = self.key_file.clone().unwrap_or_else(|| self.state_dir.join(KEY_FILE_DEFAULT));
        WitnessKey::load_or_create(&path, &self.name)
    }
}

/// Flags of `mpp-witness serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// State directory and key.
    #[command(flatten)]
    pub key: KeyArgs,
    /// A hub to follow, as ORIGIN,KEY,URL: its origin (`mpp-hub/<hub id>`),
    /// its checkpoint public key (64 hex digits, `mpp-hub
    /// export-public-key`) and its gRPC endpoint. Repeat the flag, or
    /// separate hubs with `;`.
    #[arg(long = "hub", env = "MPP_WITNESS_HUBS", value_delimiter = ';', required = true)]
    pub hubs: Vec<HubConfig>,
    /// File holding the auditor bearer token for the hubs' audit API (at
    /// most 4 KiB; surrounding whitespace ignored).
    #[arg(long, env = "MPP_WITNESS_AUDITOR_TOKEN_FILE")]
    pub auditor_token_file: PathBuf,
    /// PEM file of the CA of the hubs' TLS certificates (https:// URLs).
    #[arg(long, env = "MPP_WITNESS_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// Address of the HTTP server (/cosigned, /evidence, /metrics).
    #[arg(long, env = "MPP_WITNESS_HTTP_ADDR", default_value = "127.0.0.1:8090")]
    pub http_addr: SocketAddr,
    /// How often each hub is polled, in milliseconds.
    #[arg(long, env = "MPP_WITNESS_POLL_MS", default_value_t = POLL_MS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(10..))]
    pub poll_ms: u64,
}

/// Flags of `mpp-witness check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// The witness's state directory.
    #[arg(long, env = "MPP_WITNESS_STATE_DIR", default_value = "./data/witness")]
    pub state_dir: PathBuf,
}

/// Flags of `mpp-witness verify-evidence`.
#[derive(Debug, Clone, Args)]
pub struct VerifyEvidenceArgs {
    /// The evidence file (from <state-dir>/evidence/ or GET /evidence).
    pub file: PathBuf,
    /// The hub's public key you trust (64 hex digits); without it, the key
    /// written in the file is used and the output says so.
    #[arg(long, env = "MPP_WITNESS_EVIDENCE_HUB_KEY")]
    pub hub_key: Option<String>,
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)
        .with_context(|| format!("opening {}", path.display()))?
        .take(TOKEN_FILE_BYTES_MAX)
        .read_to_string(&mut text)?;
    let token = text.trim().to_owned();
    anyhow::ensure!(!token.is_empty(), "{} is empty", path.display());
    Ok(token)
}

/// `mpp-witness serve` until `shutdown` resolves.
pub async fn serve(args: ServeArgs, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let state = StateDir::open_exclusive(&args.key.state_dir)?;
    let key = args.key.load()?;
    let token = read_token(&args.auditor_token_file)?;
    info!(vkey = %key.public().to_vkey(), hubs = args.hubs.len(), "Witness starting");
    let shared = Arc::new(Shared::load(key, state, &args.hubs)?);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for hub in &args.hubs {
        let client = follow::client(&hub.url, &token, args.tls_ca_file.as_deref())?;
        tasks.push(tokio::spawn(follow::follow(
            shared.clone(),
            hub.clone(),
            client,
            Duration::from_millis(args.poll_ms),
            stop_rx.clone(),
        )));
    }
    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("binding HTTP on {}", args.http_addr))?;
    info!(http = %listener.local_addr()?, "Listening");
    let mut rx = stop_rx.clone();
    let server = axum::serve(listener, crate::http::router(shared)).with_graceful_shutdown(async move {
        let _ = rx.wait_for(|s| *s).await;
    });
    let http = tokio::spawn(async move { server.await });
    shutdown.await;
    info!("Stopping");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    http.await.context("HTTP task")?.context("HTTP server")?;
    Ok(())
}

/// `mpp-witness check`: 0 without evidence, [`EXIT_FAILED`] with.
pub fn check(args: &CheckArgs, out: &mut dyn std::io::Write) -> anyhow::Result<u8> {
    let state = StateDir::open_read(&args.state_dir)?;
    for c in state.all()? {
        writeln!(out, "cosigned {} size {} root {} at {}", c.origin, c.size, c.root, c.cosigned_at_s)?;
    }
    let evidence = state.evidence()?;
    for (path, e) in &evidence {
        writeln!(
            out,
            "EVIDENCE {} of {} observed at {}: {}",
            e.kind.as_str(),
            e.origin,
            e.observed_at_s,
            path.display()
        )?;
    }
    if evidence.is_empty() {
        writeln!(out, "OK: no evidence of misbehaviour")?;
        Ok(0)
    } else {
        writeln!(
            out,
            "FAILED: {} evidence file(s): a hub showed a split view or rolled back",
            evidence.len()
        )?;
        Ok(EXIT_FAILED)
    }
}

/// `mpp-witness verify-evidence`.
pub fn verify_evidence(args: &VerifyEvidenceArgs, out: &mut dyn std::io::Write) -> anyhow::Result<u8> {
    let e: crate::evidence::Evidence = state::read_json(&args.file)?;
    let key: Option<[u8; 32]> = match &args.hub_key {
        Some(k) => Some(
            hex::decode(k.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .context("--hub-key is 64 hex digits")?,
        ),
        None => {
            writeln!(out, "note: no --hub-key: using the hub key written in the file")?;
            None
        }
    };
    match crate::evidence::verify(&e, key.as_ref()) {
        Ok(said) => {
            writeln!(out, "{said}")?;
            Ok(0)
        }
        Err(why) => {
            writeln!(out, "NOT PROVEN: {why}")?;
            Ok(EXIT_FAILED)
        }
    }
}

/// `mpp-witness public-key`.
pub fn public_key(args: &KeyArgs, out: &mut dyn std::io::Write) -> anyhow::Result<u8> {
    writeln!(out, "{}", args.load()?.public().to_vkey())?;
    Ok(0)
}
