//! `mpp-bpn`: the MPP agency service of the ATR/BPN land office (pusat): land services.
//! `--help` describes the RPCs, the events they become and every flag.

#![forbid(unsafe_code)]

use mpp_agencies::bpn::{Bpn, INFO};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Ok(mpp_agencies::cli::run(&INFO, Bpn::server).await?)
}
