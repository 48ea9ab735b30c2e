//! `mpp-pdam`: the MPP agency service of the regional water company PDAM (BUMD): water connections.
//! `--help` describes the RPCs, the events they become and every flag.

#![forbid(unsafe_code)]

use mpp_agencies::pdam::{Pdam, INFO};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = mpp_agencies::cli::parse_args(&INFO);
    mpp_agency_kit::run(INFO.config(args)?, Pdam::server).await?;
    Ok(())
}
