//! `mpp-bank`: the MPP agency service of a private bank desk (swasta): accounts and KUR credit.
//! `--help` describes the RPCs, the events they become and every flag.

#![forbid(unsafe_code)]

use mpp_agencies::bank::{Bank, INFO};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = mpp_agencies::cli::parse_args(&INFO);
    mpp_agency_kit::run(INFO.config(args)?, Bank::server).await?;
    Ok(())
}
