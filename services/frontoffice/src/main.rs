//! `mpp-frontoffice`: the reception desk of one MPP.

#![forbid(unsafe_code)]

use clap::{CommandFactory, FromArgMatches, Parser};
use mpp_agency_kit::cli::with_grpc_addr_default;
use mpp_agency_kit::CommonArgs;
use mpp_frontoffice::{FrontOfficeArgs, DEFAULT_GRPC_ADDR};

/// The MPP front office (loket penerimaan): opens citizens' cases.
///
/// Serves mpp.frontoffice.v1.FrontOfficeService over gRPC (with gRPC health
/// and reflection). BukaBerkas checks the citizen's NIK, allocates the next
/// tracking number from a durable counter in <data-dir>/counter, and
/// publishes case_opened on mpp.events.mpp-<region>.loket (e.g.
/// mpp.events.mpp-1771.loket) with the citizen's PIN verifier and the NIK's
/// keyed hash (HMAC-SHA-256 under --nik-key-file), followed by
/// personal_data_sealed: the name, phone and e-mail encrypted (AES-256-GCM)
/// under the citizen's own data key, kept in the key vault in
/// <data-dir>/vault and nowhere else. The answer carries the tracking
/// number, the PIN (once) and the receipt to print. BukaBerkasInstansi
/// opens a case the same way for an agency service's walk-in citizen (no
/// NIK, no personal data; the caller is the agency's token, scope
/// cases:open-walk-in), so no agency service holds the PIN pepper.
/// LihatDataPribadi
/// decrypts a case's personal data; HapusDataPribadi (erasure under UU
/// 27/2022) destroys the citizen's key and publishes personal_data_erased
/// for each of their cases (docs/PRIVACY.md). Keep <data-dir>/vault on an
/// encrypted volume and out of ordinary backups.
///
/// A call is answered once its event is flushed to the durable outbox in
/// --data-dir; the outbox publishes it to NATS JetStream with Nats-Msg-Id =
/// event id, retrying while NATS is down and after restarts.
///
/// Callers authenticate with `authorization: Bearer <token>` (--tokens-file);
/// without a tokens file the service refuses to start unless
/// --insecure-no-auth is given. Without --nik-key-file and --pin-pepper-file
/// it refuses to start unless --insecure-dev-keys is given.
#[derive(Debug, Parser)]
#[command(name = "mpp-frontoffice", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    front: FrontOfficeArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let matches =
        mpp_frontoffice::hide_agency_flags(with_grpc_addr_default(Cli::command(), DEFAULT_GRPC_ADDR))
            .get_matches();
    let cli = Cli::from_arg_matches(&matches)?;
    mpp_frontoffice::run(cli.common, cli.front).await?;
    Ok(())
}
