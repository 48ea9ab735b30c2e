//! `mpp-pln`: the MPP agency service of PT PLN (BUMN): electricity connections.
//! `--help` describes the RPCs, the events they become and every flag.

#![forbid(unsafe_code)]

use mpp_agencies::pln::{Pln, INFO};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = mpp_agencies::cli::parse_args(&INFO);
    mpp_agency_kit::run(INFO.config(args)?, Pln::server).await?;
    Ok(())
}
