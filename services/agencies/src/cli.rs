//! The command line of every agency binary: the kit's [`CommonArgs`] with
//! the agency's name, default address and a `--help` text generated from its
//! [`AgencyInfo`] (services, RPCs and the events they become).

use std::ffi::OsString;

use clap::{CommandFactory, FromArgMatches, Parser};
use mpp_agency_kit::cli::with_grpc_addr_default;
use mpp_agency_kit::{Agency, AgencyService, CommonArgs, RunError};

use crate::common::{AgencyInfo, MAPPING_VERSION};

/// The flags of an agency binary (all from the kit).
#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

/// The one-line description shown by `-h`.
pub fn about(info: &AgencyInfo) -> String {
    format!("{} ({}) MPP agency service", info.name, crate::common::category_label(info.category))
}

/// The description shown by `--help`.
pub fn long_about(info: &AgencyInfo) -> String {
    let rpcs: Vec<String> = info.rpcs.iter().map(|m| format!("{} → {}", m.rpc, m.event.as_str())).collect();
    let services: Vec<&str> = info.services.iter().map(|s| s.service_id).collect();
    format!(
        "{about}.\n\n\
         Serves {grpc} over gRPC (with gRPC health and reflection). Each RPC becomes one of the \
         hub's common events (docs/MAPPING.md, mapping v{MAPPING_VERSION}): {rpcs}.\n\n\
         A call is answered once its events are flushed to the durable outbox in --data-dir; the \
         outbox publishes them to NATS JetStream on mpp.events.{agency}.<{services}> with \
         Nats-Msg-Id = event id, retrying while NATS is down and after restarts.\n\n\
         Callers authenticate with `authorization: Bearer <token>`; the tokens of the client \
         systems are listed hashed in --tokens-file (`client_id:` and the output of \
         `printf %s \"$TOKEN\" | sha256sum`). Without a tokens file the service refuses to start \
         unless --insecure-no-auth is given. A filing without a tracking number (a walk-in \
         citizen) has its case opened by the MPP front office (--front-office-url, \
         BukaBerkasInstansi), which returns the tracking number and PIN; without a front office \
         it is refused (FRONT_OFFICE_NOT_CONFIGURED). The service holds no PIN pepper.\n\n\
         Its service standards (completion time, fee, requirements, fiktif positif) come from \
         {catalogue}, compiled in, or from --catalogue-file; they are checked at start. On start \
         it creates the MPP_EVENTS stream if missing (unless --skip-stream-setup) and publishes \
         each standard whose version is higher than the one it published last; a standard \
         changed without a version bump makes it refuse to start. It stops gracefully on SIGTERM \
         or ctrl-c, draining the outbox for a bounded time.",
        about = about(info),
        grpc = info.grpc_service,
        rpcs = rpcs.join(", "),
        agency = info.agency_id,
        services = services.join("|"),
        catalogue = info.catalogue.path,
    )
}

/// The clap command of `info`'s binary.
pub fn command(info: &AgencyInfo) -> clap::Command {
    let cmd = Cli::command()
        .name(info.binary)
        .bin_name(info.binary)
        .version(env!("CARGO_PKG_VERSION"))
        .about(about(info))
        .long_about(long_about(info));
    with_grpc_addr_default(cmd, info.default_grpc_addr)
}

/// Parses the process's arguments; prints help or an error and exits on
/// `--help`, `--version` or a bad flag.
pub fn parse_args(info: &AgencyInfo) -> CommonArgs {
    let matches = command(info).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()).common
}

/// [`run`] for an agency that reacts to other agencies' events on its
/// cases (`mpp_agency_kit::case_events`): followed when `--hub-url` is
/// given.
pub async fn run_reacting<S, F>(
    info: &AgencyInfo,
    make_service: F,
    reaction: mpp_agency_kit::case_events::CaseEventReaction,
) -> Result<(), RunError>
where
    F: FnOnce(Agency) -> S,
    S: AgencyService,
{
    let args = parse_args(info);
    mpp_agency_kit::run(info.config(args)?.reacting(reaction), make_service).await?;
    Ok(())
}

/// Parses `argv` (the first item is the program name), for tests and
/// embedding.
pub fn try_parse_args_from<I, T>(info: &AgencyInfo, argv: I) -> Result<CommonArgs, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = command(info).try_get_matches_from(argv)?;
    Ok(Cli::from_arg_matches(&matches)?.common)
}

/// The whole of an agency binary's `main`: parses the process's arguments
/// for `info` ([`parse_args`]) and runs the service `make_service` builds
/// with the kit's [`mpp_agency_kit::run`] until SIGTERM or ctrl-c.
pub async fn run<S, F>(info: &AgencyInfo, make_service: F) -> Result<(), RunError>
where
    F: FnOnce(Agency) -> S,
    S: AgencyService,
{
    let args = parse_args(info);
    mpp_agency_kit::run(info.config(args)?, make_service).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AGENCIES;

    #[test]
    fn every_binary_has_its_name_default_address_and_help() {
        let mut ports = std::collections::BTreeSet::new();
        for info in AGENCIES {
            let args = try_parse_args_from(info, [info.binary]).unwrap();
            assert_eq!(args.grpc_addr.to_string(), info.default_grpc_addr, "{}", info.agency_id);
            assert!(ports.insert(args.grpc_addr.port()), "{} reuses a port", info.agency_id);
            let help = command(info).render_long_help().to_string();
            assert!(help.contains(info.grpc_service), "{help}");
            assert!(help.contains("--insecure-no-auth"), "{help}");
            assert!(help.contains("--catalogue-file"), "{help}");
            assert!(help.contains(info.catalogue.path), "{help}");
            for m in info.rpcs {
                assert!(help.contains(&format!("{} → {}", m.rpc, m.event.as_str())), "{}", m.rpc);
            }
            let err = try_parse_args_from(info, [info.binary, "--region-code", "17"]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        }
    }
}
