//! `mpp-hub`: see `mpp-hub --help`.

/// mimalloc instead of glibc malloc: the ledger writer allocates and frees
/// every case, entry and key of a batch, and glibc's `_int_malloc`, `free` and
/// `malloc_consolidate` were about a third of its time (see BENCHMARKS.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context as _;
use clap::Parser;
use mpp_hub::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Only the server exports spans (--otlp-endpoint); without it this is
    // the one logging contract's subscriber, as for every subcommand.
    let otlp = match &cli.command {
        Command::Serve(args) => args.otlp.clone(),
        _ => mpp_edge::otlp::OtlpArgs::default(),
    };
    let (_, telemetry) = mpp_edge::otlp::init(&cli.log, mpp_edge::log::LOG_FILTER_DEFAULT, &otlp, "mpp-hub")?;
    match cli.command {
        Command::Serve(args) => {
            let served = mpp_hub::server::serve(args, mpp_edge::signal::shutdown_signal()).await;
            // The spans of the last moments, flushed (bounded) once the
            // servers have stopped.
            tokio::task::spawn_blocking(move || telemetry.shutdown()).await?;
            served
        }
        Command::ExportPublicKey(args) => {
            let key = mpp_ledger::signer::read_public_key(&args.data_dir).context(
                "reading the checkpoint public key (the hub creates its key on its first `mpp-hub serve`)",
            )?;
            println!("{}", hex::encode(key));
            Ok(())
        }
        Command::Admin(args) => match mpp_audit::cli::admin::run(args).await {
            Ok(()) => Ok(()),
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::exit(i32::from(mpp_audit::cli::EXIT_ERROR))
            }
        },
        Command::Audit(args) => match mpp_audit::cli::run(args).await {
            Ok(0) => Ok(()),
            Ok(status) => std::process::exit(i32::from(status)),
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::exit(i32::from(mpp_audit::cli::EXIT_ERROR))
            }
        },
    }
}
