//! `mpp-witness`: see the library docs (`mpp_witness`) and docs/AUDIT.md.

use clap::Parser as _;
use mpp_witness::cli::{self, Cli, Command};

/// Exit status of a usage or IO error.
const EXIT_ERROR: i32 = 2;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = mpp_edge::log::init(&cli.log, mpp_edge::log::LOG_FILTER_DEFAULT) {
        eprintln!("error: {e}");
        std::process::exit(EXIT_ERROR);
    }
    let mut out = std::io::stdout();
    let result = match cli.command {
        Command::Serve(args) => cli::serve(args, mpp_edge::signal::shutdown_signal()).await.map(|()| 0),
        Command::Check(args) => cli::check(&args, &mut out),
        Command::VerifyEvidence(args) => cli::verify_evidence(&args, &mut out),
        Command::PublicKey(args) => cli::public_key(&args, &mut out),
    };
    match result {
        Ok(code) => std::process::exit(i32::from(code)),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(EXIT_ERROR);
        }
    }
}
