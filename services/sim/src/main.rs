//! `mpp-sim`: sample traffic for a local MPP Hub. It plays citizens and
//! counter officers: each case is opened at the front office and then filed
//! into by every agency its journey needs, through the services' own gRPC
//! APIs. It prints each case's tracking number, PIN, journey and lookup URL.
//! See `mpp-sim --help` and the library docs (`mpp_sim`).

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use mpp_sim::plan::Agency;
use mpp_sim::run::{CASES_MAX, IN_FLIGHT_CASES_MAX};
use mpp_sim::stack::Target;
use mpp_sim::{CaseRun, Endpoints, Journey, Pacer, RunConfig, Stack};

const ABOUT: &str = "Drive sample citizen journeys that span agencies through the MPP services' gRPC APIs";

const LONG_ABOUT: &str = "\
Drive sample citizen journeys that span agencies through the MPP services' gRPC APIs.

Every case is opened at the front office (mpp-frontoffice BukaBerkas) with a synthetic citizen: a \
valid NIK of --region-code (women's birth day + 40), a made-up name and phone number. Each agency \
then files its application into the case with the tracking number and walks it through its own \
RPCs. Journeys (--journey):

  usaha-baru  new small business: DPMPTSP NIB + PBG (inspection, retribution, paid, issued), PDAM \
sambungan (survey, RAB, paid, installation, active), PLN pasang baru (survey, bill, paid, \
installation, connected)
  kelahiran   newborn: Disdukcapil akta kelahiran + KK (collected), bank savings account (deposit, \
card collected)
  paspor      Imigrasi passport: interview booked and held, PNBP billed and paid, printed, collected
  tanah       BPN pengecekan sertipikat: PNBP billed and paid, check note collected

Any application may have documents missing (then brought), be left waiting on a payment, \
documents or an interview (so the case shows what the citizen must do next), be rejected or be \
withdrawn. The first cases take the journeys in order; later ones are drawn. Everything is \
deterministic from --seed except what the services allocate (tracking numbers, PINs, ids) and \
times.

Output (stdout), one tab-separated line per case when its plan is done: tracking number, PIN, \
journey, lookup URL (--lookup-base + tracking number), and each application's fate \
(service=fate, +docs when documents were missing). Lines starting with # are comments.

Addresses and tokens: every service has --<service>-addr and --<service>-token (env \
MPP_<SERVICE>_ADDR, MPP_<SERVICE>_TOKEN); --token (MPP_SIM_TOKEN) is the token for every service \
without its own. A token's SHA-256 must be in the service's --tokens-file. Only the services the \
chosen journeys need are contacted.";

/// Flags of `mpp-sim`.
#[derive(Debug, Parser)]
#[command(name = "mpp-sim", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    /// Logging: --log-format (stderr; filter MPP_LOG, default info). The
    /// sample cases themselves go to stdout.
    #[command(flatten)]
    log: mpp_edge::log::LogArgs,
    /// How many cases to create (1..=10000).
    #[arg(long, env = "MPP_SIM_CASES", default_value_t = 12,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(CASES_MAX)))]
    cases: u32,
    /// Seed of every choice: the same seed gives the same journeys, citizens and outcomes.
    #[arg(long, env = "MPP_SIM_SEED", default_value_t = 1771)]
    seed: u64,
    /// Pace, in events (RPCs) per second, token-bucket paced; 0 = as fast as the services answer.
    #[arg(long, env = "MPP_SIM_RATE", default_value_t = 20.0)]
    rate: f64,
    /// Only these journeys (repeat the flag or separate with commas):
    /// usaha-baru, kelahiran, paspor, tanah. Default: all.
    #[arg(long = "journey", env = "MPP_SIM_JOURNEYS", value_delimiter = ',', value_parser = parse_journey)]
    journeys: Vec<Journey>,
    /// Cases in progress at once (1..=64); their steps interleave, like citizens at several counters.
    #[arg(long, env = "MPP_SIM_IN_FLIGHT", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=IN_FLIGHT_CASES_MAX as i64))]
    in_flight: u32,
    /// BPS region code of the MPP (4 digits): the citizens' NIKs are of this region.
    #[arg(long, env = "MPP_REGION_CODE", default_value = "1771", value_parser = parse_region)]
    region_code: String,
    /// Prefix of the printed lookup URL; the tracking number is appended.
    #[arg(long, env = "MPP_LOOKUP_BASE", default_value = "http://127.0.0.1:8080/api/v1/cases/")]
    lookup_base: String,
    /// How long to wait for the services to accept connections at start, in seconds.
    #[arg(long, env = "MPP_SIM_CONNECT_TIMEOUT_SECS", default_value_t = 30)]
    connect_timeout_secs: u64,
    /// Print each case's plan (every RPC in order) and contact nothing.
    #[arg(long, env = "MPP_SIM_DRY_RUN")]
    dry_run: bool,

    /// gRPC address of mpp-frontoffice.
    #[arg(long, env = "MPP_FRONTOFFICE_ADDR", default_value = "http://127.0.0.1:50060")]
    frontoffice_addr: String,
    /// gRPC address of mpp-dukcapil.
    #[arg(long, env = "MPP_DUKCAPIL_ADDR", default_value = "http://127.0.0.1:50061")]
    dukcapil_addr: String,
    /// gRPC address of mpp-imigrasi.
    #[arg(long, env = "MPP_IMIGRASI_ADDR", default_value = "http://127.0.0.1:50062")]
    imigrasi_addr: String,
    /// gRPC address of mpp-bpn.
    #[arg(long, env = "MPP_BPN_ADDR", default_value = "http://127.0.0.1:50063")]
    bpn_addr: String,
    /// gRPC address of mpp-pln.
    #[arg(long, env = "MPP_PLN_ADDR", default_value = "http://127.0.0.1:50064")]
    pln_addr: String,
    /// gRPC address of mpp-pdam.
    #[arg(long, env = "MPP_PDAM_ADDR", default_value = "http://127.0.0.1:50065")]
    pdam_addr: String,
    /// gRPC address of mpp-bank.
    #[arg(long, env = "MPP_BANK_ADDR", default_value = "http://127.0.0.1:50066")]
    bank_addr: String,
    /// gRPC address of mpp-dpmptsp.
    #[arg(long, env = "MPP_DPMPTSP_ADDR", default_value = "http://127.0.0.1:50067")]
    dpmptsp_addr: String,

    /// PEM file of the CA that signed the services' TLS certificates; give
    /// the services' addresses as https://host:port then (docs/TLS.md).
    #[arg(long, env = "MPP_TLS_CA_FILE")]
    tls_ca_file: Option<std::path::PathBuf>,

    /// Bearer token for every service without its own --<service>-token.
    #[arg(long, env = "MPP_SIM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Bearer token at mpp-frontoffice.
    #[arg(long, env = "MPP_FRONTOFFICE_TOKEN", hide_env_values = true)]
    frontoffice_token: Option<String>,
    /// Bearer token at mpp-dukcapil.
    #[arg(long, env = "MPP_DUKCAPIL_TOKEN", hide_env_values = true)]
    dukcapil_token: Option<String>,
    /// Bearer token at mpp-imigrasi.
    #[arg(long, env = "MPP_IMIGRASI_TOKEN", hide_env_values = true)]
    imigrasi_token: Option<String>,
    /// Bearer token at mpp-bpn.
    #[arg(long, env = "MPP_BPN_TOKEN", hide_env_values = true)]
    bpn_token: Option<String>,
    /// Bearer token at mpp-pln.
    #[arg(long, env = "MPP_PLN_TOKEN", hide_env_values = true)]
    pln_token: Option<String>,
    /// Bearer token at mpp-pdam.
    #[arg(long, env = "MPP_PDAM_TOKEN", hide_env_values = true)]
    pdam_token: Option<String>,
    /// Bearer token at mpp-bank.
    #[arg(long, env = "MPP_BANK_TOKEN", hide_env_values = true)]
    bank_token: Option<String>,
    /// Bearer token at mpp-dpmptsp.
    #[arg(long, env = "MPP_DPMPTSP_TOKEN", hide_env_values = true)]
    dpmptsp_token: Option<String>,
}

/// Largest `--tls-ca-file` read, in bytes (a CA bundle is a few KiB).
const TLS_CA_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// Reads `--tls-ca-file` (bounded), checking it holds a PEM certificate.
fn read_ca_file(file: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let pem = mpp_edge::files::read_at_most(file, TLS_CA_FILE_BYTES_MAX)
        .with_context(|| format!("--tls-ca-file {}: cannot read it", file.display()))?;
    if pem.len() as u64 > TLS_CA_FILE_BYTES_MAX {
        anyhow::bail!("--tls-ca-file {}: larger than {TLS_CA_FILE_BYTES_MAX} bytes", file.display());
    }
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        anyhow::bail!("--tls-ca-file {}: no PEM CERTIFICATE in it", file.display());
    }
    Ok(pem)
}

fn parse_journey(s: &str) -> Result<Journey, String> {
    Journey::parse(s).ok_or_else(|| {
        let names: Vec<&str> = Journey::ALL.iter().map(|j| j.name()).collect();
        format!("unknown journey {s:?}; use one of {}", names.join(", "))
    })
}

fn parse_region(s: &str) -> Result<String, String> {
    if s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0') {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?} is not a BPS region code (4 digits, e.g. 1771)"))
    }
}

impl Cli {
    fn endpoints(&self) -> Endpoints {
        let mut e = Endpoints::default();
        let shared = self.token.as_ref();
        let pairs = [
            (Agency::FrontOffice, &self.frontoffice_addr, &self.frontoffice_token),
            (Agency::Dukcapil, &self.dukcapil_addr, &self.dukcapil_token),
            (Agency::Imigrasi, &self.imigrasi_addr, &self.imigrasi_token),
            (Agency::Bpn, &self.bpn_addr, &self.bpn_token),
            (Agency::Pln, &self.pln_addr, &self.pln_token),
            (Agency::Pdam, &self.pdam_addr, &self.pdam_token),
            (Agency::Bank, &self.bank_addr, &self.bank_token),
            (Agency::Dpmptsp, &self.dpmptsp_addr, &self.dpmptsp_token),
        ];
        for (agency, addr, token) in pairs {
            let token = token.as_ref().or(shared).cloned();
            e.set(agency, Target { addr: addr.clone(), token });
        }
        e
    }
}

fn print_case(case: &CaseRun, lookup_base: &str) {
    let tn = case.tracking_number().unwrap_or("-");
    println!(
        "{tn}\t{}\t{}\t{lookup_base}{tn}\t{}",
        case.pin().unwrap_or("-"),
        case.plan().journey,
        case.plan().summary()
    );
}

fn print_plan(config: &RunConfig, index: u32) {
    let plan = config.plan_case(index);
    println!("# case #{index}: {} ({})", plan.journey, plan.summary());
    let ends = plan.round_ends();
    for (i, step) in plan.steps.iter().enumerate() {
        let who = match step.app.and_then(|a| plan.service(a)) {
            Some(s) => {
                let rpc = mpp_sim::stack::rpc_name(s, &step.action).unwrap_or("?");
                format!("mpp-{} {}/{} {rpc}", s.agency_id(), s.service_id(), step.action.event_type())
            }
            None => "mpp-frontoffice BukaBerkas".to_owned(),
        };
        let end = if ends.contains(&(i + 1)) { "   <- end of visit" } else { "" };
        println!("  {i:>3} visit {} {who}{end}", step.round);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    mpp_edge::log::init(&cli.log, mpp_edge::log::LOG_FILTER_DEFAULT)?;
    let config = RunConfig {
        cases: cli.cases,
        seed: cli.seed,
        journeys: cli.journeys.clone(),
        region: cli.region_code.clone(),
        in_flight: cli.in_flight as usize,
    };
    let journeys = config.journeys();
    let names: Vec<&str> = journeys.iter().map(|j| j.name()).collect();
    if cli.dry_run {
        for i in 0..cli.cases {
            print_plan(&config, i);
        }
        return Ok(());
    }
    let mut pacer = Pacer::new(cli.rate).context("--rate")?;
    let mut endpoints = cli.endpoints();
    if let Some(file) = &cli.tls_ca_file {
        endpoints.set_tls_ca_pem(read_ca_file(file)?);
    }
    let mut stack = Stack::connect_lazy(endpoints)?;
    let mut needed: Vec<Agency> = vec![Agency::FrontOffice];
    for j in &journeys {
        for s in j.services() {
            if !needed.contains(&s.agency()) {
                needed.push(s.agency());
            }
        }
    }
    stack.wait_reachable(&needed, Duration::from_secs(cli.connect_timeout_secs)).await?;
    let rate = if cli.rate == 0.0 { "unpaced".to_owned() } else { format!("{} events/s", cli.rate) };
    println!(
        "# mpp-sim: {} cases, seed {}, {rate}, {} in flight, journeys {}",
        cli.cases,
        cli.seed,
        cli.in_flight,
        names.join(",")
    );
    println!("# tracking_number\tpin\tjourney\tlookup_url\tapplications");
    let started = Instant::now();
    let summary = mpp_sim::run(&config, &mut stack, &mut pacer, |case| print_case(case, &cli.lookup_base))
        .await
        .context("the simulation stopped")?;
    if summary.cases != cli.cases {
        bail!("{} of {} cases finished", summary.cases, cli.cases);
    }
    println!(
        "# {} cases, {} events accepted by the services in {:.1} s",
        summary.cases,
        summary.events,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
