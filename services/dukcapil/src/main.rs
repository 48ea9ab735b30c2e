//! `mpp-dukcapil`: Disdukcapil's MPP agency service.

#![forbid(unsafe_code)]

use clap::{CommandFactory, FromArgMatches, Parser};
use mpp_agency_kit::cli::with_grpc_addr_default;
use mpp_agency_kit::{AgencyConfig, CommonArgs};
use mpp_core::ids::AgencyId;
use mpp_dukcapil::{service_ids, Dukcapil, AGENCY_ID, CATALOGUE, DEFAULT_GRPC_ADDR};

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
/// Its service standards (completion time, fee, requirements, fiktif
/// positif) come from deploy/catalogue/dukcapil.toml, compiled in, or from
/// --catalogue-file; they are checked at start. On start it creates the
/// MPP_EVENTS stream if missing (unless --skip-stream-setup) and publishes
/// each standard whose version is higher than the one it published last; a
/// standard changed without a version bump makes it refuse to start. It
/// stops gracefully on SIGTERM or ctrl-c, draining the outbox for a bounded
/// time.
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
    let config = AgencyConfig::new(AgencyId::parse(AGENCY_ID)?, cli.common, &CATALOGUE, &service_ids()?)?;
    mpp_agency_kit::run(config, |agency| Dukcapil::new(agency).into_server()).await?;
    Ok(())
}
