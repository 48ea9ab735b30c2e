//! `mpp-dukcapil`: the MPP agency service of Disdukcapil (daerah): family
//! card, KTP-el and birth certificate applications. `--help` describes the
//! RPCs, the events they become and every flag.

#![forbid(unsafe_code)]

use mpp_agencies::dukcapil::{Dukcapil, INFO};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = mpp_agencies::cli::parse_args(&INFO);
    mpp_agency_kit::run(INFO.config(args)?, Dukcapil::server).await?;
    Ok(())
}
