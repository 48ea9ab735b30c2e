//! `mpp-pln`: the MPP agency service of PT PLN (BUMN): electricity connections.
//! `--help` describes the RPCs, the events they become and every flag.

#![forbid(unsafe_code)]

use mpp_agencies::pln::{Pln, INFO};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Ok(mpp_agencies::cli::run(&INFO, Pln::server).await?)
}
