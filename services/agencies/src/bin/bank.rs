//! `mpp-bank`: the MPP agency service of a private bank desk (swasta): accounts and KUR credit.
//! `--help` describes the RPCs, the events they become and every flag.

#![forbid(unsafe_code)]

use mpp_agencies::bank::{Bank, INFO};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Ok(mpp_agencies::cli::run(&INFO, Bank::server).await?)
}
