//! `mpp-dpmptsp`: the MPP agency service of DPMPTSP (daerah): building approval (PBG) and NIB guidance.
//! `--help` describes the RPCs, the events they become and every flag.

#![forbid(unsafe_code)]

use mpp_agencies::dpmptsp::{Dpmptsp, INFO};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Ok(mpp_agencies::cli::run(&INFO, Dpmptsp::server).await?)
}
