//! `mpp-registrar`: the province registrar's command (see the library docs
//! and docs/OPERATIONS.md "Participant registry").

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use mpp_agency_kit::cli::{connect_nats, generate_nkey, NatsArgs};
use mpp_agency_kit::signing::{generate_key_file, public_key_path, read_public_key};
use mpp_core::checkpoint::KeyId;
use mpp_registrar::{publish, read_statements, sign_registry, sign_revocation, write_statements, Registrar};

/// The province registrar's tool.
#[derive(Debug, Parser)]
#[command(name = "mpp-registrar", version, about)]
struct Cli {
    /// Logging: --log-format.
    #[command(flatten)]
    log: mpp_edge::log::LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Creates an Ed25519 key: the seed in FILE (mode 0600, never
    /// overwritten) and the public key in FILE.pub. For the registrar and
    /// for each participant's --signing-key-file alike.
    Keygen {
        /// The private key file to create.
        #[arg(long, env = "MPP_KEYGEN_OUT")]
        out: PathBuf,
    },
    /// Signs the statements of a registry file (offline): each
    /// participant's registration, then its keys.
    Sign {
        /// The registrar's private key file.
        #[arg(long, env = "MPP_REGISTRAR_PRIVATE_KEY_FILE")]
        registrar_key: PathBuf,
        /// The registry file (TOML).
        #[arg(long, env = "MPP_SIGN_REGISTRY")]
        registry: PathBuf,
        /// Where to write the signed statements.
        #[arg(long, env = "MPP_SIGN_OUT")]
        out: PathBuf,
    },
    /// Signs the revocation of a participant's key (offline).
    Revoke {
        /// The registrar's private key file.
        #[arg(long, env = "MPP_REGISTRAR_PRIVATE_KEY_FILE")]
        registrar_key: PathBuf,
        /// The participant.
        #[arg(long, env = "MPP_REVOKE_PARTICIPANT")]
        participant: String,
        /// The key's public key file (its id is derived from it).
        #[arg(long, env = "MPP_REVOKE_PUBLIC_KEY_FILE")]
        public_key_file: PathBuf,
        /// Where to write the signed statement.
        #[arg(long, env = "MPP_REVOKE_OUT")]
        out: PathBuf,
    },
    /// Creates a participant's NATS NKey: the user seed in FILE (mode
    /// 0600, never overwritten; the participant's --nats-nkey-file) and the
    /// public key in FILE.pub and on stdout (the NATS server's `nkey`).
    NatsNkey {
        /// The seed file to create.
        #[arg(long, env = "MPP_NATS_NKEY_OUT")]
        out: PathBuf,
    },
    /// Publishes signed statements on the registry subject, in order.
    Publish {
        /// The statements file (from `sign` or `revoke`).
        #[arg(long, env = "MPP_PUBLISH_STATEMENTS")]
        statements: PathBuf,
        /// Where NATS is and how to log in (the registrar's own user in
        /// deploy/nats/secure.conf).
        #[command(flatten)]
        nats: NatsArgs,
    },
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    mpp_edge::log::init(&cli.log, mpp_edge::log::LOG_FILTER_DEFAULT)?;
    match cli.command {
        Command::NatsNkey { out } => {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let (seed, public) = generate_nkey();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&out)
                .with_context(|| format!("creating {} (never overwritten)", out.display()))?;
            f.write_all(format!("{seed}\n").as_bytes()).and_then(|()| f.sync_all())?;
            let pub_path = public_key_path(&out);
            std::fs::write(&pub_path, format!("{public}\n"))
                .with_context(|| format!("writing {}", pub_path.display()))?;
            println!("{public}");
        }
        Command::Keygen { out } => {
            let pk = generate_key_file(&out)?;
            println!(
                "wrote {} (private, 0600) and {}: public key {} (key id {})",
                out.display(),
                public_key_path(&out).display(),
                hex::encode(pk),
                KeyId::of(&pk)
            );
        }
        Command::Sign { registrar_key, registry, out } => {
            let registrar = Registrar::load(&registrar_key)?;
            let statements = sign_registry(&registrar, &registry, now_ms())?;
            write_statements(&out, &statements)?;
            println!("signed {} statements into {}", statements.len(), out.display());
        }
        Command::Revoke { registrar_key, participant, public_key_file, out } => {
            let registrar = Registrar::load(&registrar_key)?;
            let key_id = KeyId::of(&read_public_key(&public_key_file)?);
            write_statements(&out, &[sign_revocation(&registrar, &participant, &key_id, now_ms())])?;
            println!("signed the revocation of key {key_id} of {participant} into {}", out.display());
        }
        Command::Publish { statements, nats } => {
            let statements = read_statements(&statements)?;
            let access = nats.access(nats.credentials()?)?;
            let nats_url = &nats.nats_url;
            let client = connect_nats(nats_url, "mpp-registrar", &access)
                .await
                .with_context(|| format!("connecting to {nats_url}"))?;
            publish(&client, &statements).await?;
            client.flush().await.context("flushing")?;
            println!("published {} statements", statements.len());
        }
    }
    Ok(())
}
