//! `mpp-imigrasi`: the MPP agency service of Kantor Imigrasi (vertikal): passports.
//! `--help` describes the RPCs, the events they become and every flag.

#![forbid(unsafe_code)]

use mpp_agencies::imigrasi::{Imigrasi, INFO};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Ok(mpp_agencies::cli::run(&INFO, Imigrasi::server).await?)
}
