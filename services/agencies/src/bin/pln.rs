//! `mpp-pln`: the MPP agency service of PT PLN (BUMN): electricity connections.
//! `--help` describes the RPCs, the events they become and every flag.
//! With `--hub-url` it schedules a paid new connection's installation by
//! itself when DPMPTSP's building approval (PBG) is issued on the case.

#![forbid(unsafe_code)]

use mpp_agencies::pln::{reaction, Pln, INFO};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Schedules the installation itself once DPMPTSP's PBG is issued (see
    // `mpp_agencies::pln`), when it follows the hub (--hub-url).
    Ok(mpp_agencies::cli::run_reacting(&INFO, Pln::server, reaction()).await?)
}
