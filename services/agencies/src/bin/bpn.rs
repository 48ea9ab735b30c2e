//! `mpp-bpn`: the MPP agency service of the ATR/BPN land office (pusat): land services.
//! `--help` describes the RPCs, the events they become and every flag.

#![forbid(unsafe_code)]

use mpp_agencies::bpn::{Bpn, INFO};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = mpp_agencies::cli::parse_args(&INFO);
    mpp_agency_kit::run(INFO.config(args)?, Bpn::server).await?;
    Ok(())
}
