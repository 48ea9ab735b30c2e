//! `mpp-dukcapil`: the MPP agency service of Disdukcapil (daerah): family
//! card, KTP-el and birth certificate applications. `--help` describes the
//! RPCs, the events they become and every flag.

#![forbid(unsafe_code)]

use mpp_agencies::dukcapil::{Dukcapil, INFO};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Ok(mpp_agencies::cli::run(&INFO, Dukcapil::server).await?)
}
