//! `mpp-dukcapil`: Disdukcapil's MPP agency service.

#![forbid(unsafe_code)]

use clap::{CommandFactory, FromArgMatches, Parser};
use mpp_agency_kit::cli::with_grpc_addr_default;
use mpp_agency_kit::{AgencyConfig, CommonArgs};
use mpp_core::ids::AgencyId;
use mpp_dukcapil::{catalogue, Dukcapil, AGENCY_ID, DEFAULT_GRPC_ADDR};

/// Disdukcapil's MPP agency service.
///
/// Serves mpp.agency.dukcapil.v1.DukcapilService over gRPC (with gRPC health
/// and reflection). Each RPC (AjukanPermohonan, MintaKelengkapan,
/// TerimaKelengkapan, MulaiVerifikasi, CetakDokumen, SerahkanDokumen,
/// TolakPermohonan, BatalkanPermohonan) becomes one of the hub's common events.
/// A call is answered once its events are flushed to the durable outbox in
/// --data-dir; the outbox publishes them to NATS JetStream on
/// mpp.events.dukcapil.<kk|ktp-el|akta-lahir> with Nats-Msg-Id = event id,
/// retrying while NATS is down and after restarts.
///
/// Callers authenticate with `authorization: Bearer <token>`; the tokens of
/// the client systems are listed hashed in --tokens-file (`client_id:` and the
/// output of `printf %s "$TOKEN" | sha256sum`). Without a tokens file the
/// service refuses to start unless --insecure-no-auth is given.
///
/// On start it creates the MPP_EVENTS stream if missing (unless
/// --skip-stream-setup) and publishes its service standards (re-publishing
/// an unchanged standard is a no-op). It stops gracefully on SIGTERM or
/// ctrl-c, draining the outbox for a bounded time.
#[derive(Debug, Parser)]
#[command(name = "mpp-dukcapil", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let matches = with_grpc_addr_default(Cli::command(), DEFAULT_GRPC_ADDR).get_matches();
    let cli = Cli::from_arg_matches(&matches)?;
    let config =
        AgencyConfig { agency_id: AgencyId::parse(AGENCY_ID)?, args: cli.common, standards: catalogue()? };
    mpp_agency_kit::run(config, |agency| Dukcapil::new(agency).into_server()).await?;
    Ok(())
}
