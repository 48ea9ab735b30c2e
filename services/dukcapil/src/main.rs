//! `mpp-dukcapil`: Disdukcapil's MPP agency service.

#![forbid(unsafe_code)]

use std::sync::Arc;

use anyhow::Context as _;
use clap::{CommandFactory, FromArgMatches, Parser};
use mpp_agency_kit::cli::{connect_nats, with_grpc_addr_default};
use mpp_agency_kit::{
    ensure_stream, init_tracing, shutdown_signal, Agency, CommonArgs, EventBuilder, JetStreamPublisher,
    PinPepper, SystemClock,
};
use mpp_core::ids::AgencyId;
use mpp_dukcapil::{run, AGENCY_ID, DEFAULT_GRPC_ADDR};

/// Disdukcapil's MPP agency service.
///
/// Serves mpp.agency.dukcapil.v1.DukcapilService over gRPC (with gRPC health
/// and reflection). Each RPC (AjukanPermohonan, MintaKelengkapan,
/// TerimaKelengkapan, MulaiVerifikasi, CetakDokumen, SerahkanDokumen,
/// TolakPermohonan, BatalkanPermohonan) becomes one of the hub's common events,
/// published to NATS JetStream on mpp.events.dukcapil.<kk|ktp-el|akta-lahir>
/// with Nats-Msg-Id = event id. A call is answered only after JetStream
/// acknowledged its events.
///
/// On start it creates the MPP_EVENTS stream if missing (unless
/// --skip-stream-setup) and publishes its service standards (re-publishing
/// an unchanged standard is a no-op). It stops gracefully on SIGTERM or ctrl-c.
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
    let args = cli.common;
    init_tracing(args.log_format)?;

    let pepper = PinPepper::load(args.pin_pepper_file.as_deref())?;
    let client = connect_nats(&args.nats_url, "mpp-dukcapil")
        .await
        .with_context(|| format!("cannot connect to NATS at {}", args.nats_url))?;
    let publisher = JetStreamPublisher::new(client);
    if !args.skip_stream_setup {
        ensure_stream(publisher.context()).await?;
    }
    let builder = EventBuilder::new(args.region_code, AgencyId::parse(AGENCY_ID)?, Arc::new(SystemClock));
    let agency = Agency::new(builder, Arc::new(publisher), pepper);
    let listener = tokio::net::TcpListener::bind(args.grpc_addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.grpc_addr))?;
    tracing::info!(region = %args.region_code, nats = %args.nats_url, "mpp-dukcapil starting");
    run(agency, listener, shutdown_signal()).await?;
    Ok(())
}
