//! `mpp-pdam`: the MPP agency service of the regional water company PDAM (BUMD): water connections.
//! `--help` describes the RPCs, the events they become and every flag.

#![forbid(unsafe_code)]

use mpp_agencies::pdam::{Pdam, INFO};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Ok(mpp_agencies::cli::run(&INFO, Pdam::server).await?)
}
