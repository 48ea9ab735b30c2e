//! Guessing budgets that hold against many addresses (issue 16 item 3),
//! through the real HTTP API of real `mpp-hub serve` processes sharing a
//! real nats-server:
//!
//! - `a_seeded_distributed_guessing_attack_hits_every_budget`: a seeded
//!   attacker guesses the PINs of known cases from 48 IPv4 source addresses
//!   on loopback (each its own client) and from IPv6 /64s (one alone, then
//!   the /64s of one /56, then the /56s of one /48), named through a trusted proxy's
//!   `X-Forwarded-For`. It must hit the per-address budget, each per-prefix
//!   budget (/64, /56, /48), the per-number lock, and the
//!   global budget (after which it solves the proofs of work, as a
//!   determined attacker would). The test prints what was admitted and the
//!   resulting guesses per case per day and expected compromised cases per
//!   day at 1M cases.
//! - `lockouts_are_seen_by_a_second_replica_and_survive_a_restart`: wrong
//!   PINs on replica A lock the number on replica B, survive A's restart,
//!   and reach a replica started afterwards; the wrong PINs are shown on B.
//! - `right_pins_in_flight_never_lock_and_a_lock_on_one_replica_holds_on_the_other`:
//!   [`RIGHT_PINS_IN_FLIGHT`] lookups with the right PIN at once, through
//!   both replicas, all succeed (on a clean number and on one with wrong
//!   PINs to show, which are shown once); a number locked by wrong PINs on
//!   A refuses the right PIN on B with the answer a wrong PIN gets there.
//! - `a_number_at_its_daily_cap_opens_again_with_a_pin_reissued_at_the_counter`:
//!   a case of the front office reaches the daily cap
//!   (`PIN_REISSUE_REQUIRED`); `TerbitkanUlangPin` at the front office
//!   gives a new PIN that opens it, and the old PIN no longer does.
//! - `a_fresh_hub_keeps_the_guard_bucket_in_the_storage_asked`: a hub
//!   creates the guard bucket in memory by default and on file with
//!   `--guard-bucket-storage file`; a hub asking for memory keeps an
//!   existing file bucket as it is and warns how to switch.
//! - `a_memory_guard_bucket_lost_with_a_single_nats_server_comes_back`:
//!   after a single NATS server's restart (which keeps no memory stream),
//!   wrong PINs are counted again within a deadline, in a bucket the hub
//!   created again.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use mpp_core::pin::{pin_verifier, Pin, PinPepper, STRONG_PIN_SPACE};
use mpp_core::TrackingNumber;
use mpp_proto::v1::envelope::Body;
use mpp_proto::v1::CaseOpened;
use mpp_tests::envelope::{publish_envelope, stream_last_seq, EventFactory};
use mpp_tests::http::{parse_response, HttpResponse};
use mpp_tests::rng::{seed_from_env, Rng};
use mpp_tests::services::{case_opening, HubOptions, TEST_PIN_PEPPER};
use mpp_tests::{HubProcess, NatsServer, READY_DEADLINE};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REGION: &str = "1771";
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(60);

/// Cases the attacker knows the numbers of (the worst case: item 1 made
/// them unguessable, but a receipt or a leak can give some away).
const CASES: usize = 64;

/// The budgets of the simulation, small so that a test reaches each of them
/// in seconds; the per-number policy is the documented default.
const PIN_FAILURES_MAX: u64 = 5;
const PIN_FAILURES_PER_DAY_MAX: u64 = 20;
const PER_IPV4_MAX: u64 = 4;
const PER_IPV6_64_MAX: u64 = 4;
const PER_IPV6_56_MAX: u64 = 8;
const PER_IPV6_48_MAX: u64 = 16;
const GLOBAL_MAX: u64 = 100;
const POW_BITS: u32 = 8;

/// The documented defaults the figures are scaled to (docs/API.md).
const DEFAULT_GLOBAL_PER_HOUR: f64 = 2_000.0;
const DEFAULT_PER_48_PER_HOUR: f64 = 480.0;

/// Sources that all guess the first case's PIN (127.3.0.0/24).
const FOCUSED_SOURCES: u8 = 8;

/// IPv4 sources (127.1.0.0/16 on loopback) and guesses each tries.
const IPV4_SOURCES: u32 = 40;
const GUESSES_PER_SOURCE: usize = 5;

/// IPv6: guesses from one /64 alone; /64s of one /56 and the guesses of
/// each; /56s of one /48 (one /64 and one guess each).
const GUESSES_PER_64: usize = 6;
const GUESSES_PER_64_IN_56: usize = 2;

/// Lookups with the right PIN in flight at once, over two replicas.
const RIGHT_PINS_IN_FLIGHT: usize = 48;

/// How long a lock set through one replica may take to reach another's
/// mirror (the bucket's watch; docs/OPERATIONS.md says about a millisecond).
const LOCK_PROPAGATION_DEADLINE: Duration = Duration::from_secs(2);

/// Most IPv6 clients tried at one level before its budget must answer.
const V6_CLIENTS_MAX: u32 = 200;

/// The simulation's flags, with a daily cap of `per_day_max` wrong PINs.
fn hub_flags(trusted_proxy: bool, per_day_max: u64) -> Vec<String> {
    let mut args: Vec<String> = [
        ("--lookups-per-minute", "1000000".to_owned()),
        ("--lookup-burst", "1000000".to_owned()),
        ("--pin-failures-max", PIN_FAILURES_MAX.to_string()),
        ("--pin-failures-per-day-max", per_day_max.to_string()),
        ("--failed-lookups-per-ipv4-max", PER_IPV4_MAX.to_string()),
        ("--failed-lookups-per-ipv6-64-max", PER_IPV6_64_MAX.to_string()),
        ("--failed-lookups-per-ipv6-56-max", PER_IPV6_56_MAX.to_string()),
        ("--failed-lookups-per-ipv6-48-max", PER_IPV6_48_MAX.to_string()),
        ("--failed-lookups-global-max", GLOBAL_MAX.to_string()),
        ("--pow-difficulty-bits", POW_BITS.to_string()),
    ]
    .into_iter()
    .flat_map(|(k, v)| [k.to_owned(), v])
    .collect();
    if trusted_proxy {
        args.extend(["--trusted-proxies".to_owned(), "127.0.0.1/32".to_owned()]);
    }
    args
}

/// A strong PIN drawn from `rng`.
fn random_pin(rng: &mut Rng) -> Pin {
    Pin::strong_from_number(rng.below(STRONG_PIN_SPACE)).unwrap_or_else(|| unreachable!("below the space"))
}

/// Opens `n` cases with strong PINs drawn from `rng`; returns (number, PIN).
async fn seed_cases(nats: &NatsServer, rng: &mut Rng, n: usize) -> Result<Vec<(String, String)>> {
    let js = async_nats::jetstream::new(nats.connect().await?);
    let f = EventFactory::new("dukcapil", "kk", REGION);
    publish_envelope(&js, &f.standard(1)).await?;
    let pepper = PinPepper::from_bytes(TEST_PIN_PEPPER).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut cases = Vec::new();
    for i in 0..n {
        let serial = 5_000_000_000 + rng.below(4_999_999_999);
        let tn =
            TrackingNumber::new(mpp_core::RegionCode::parse(REGION)?, serial).context("a serial in range")?;
        let pin = random_pin(rng);
        let mut env = f.case_opened(&tn.to_string());
        env.body = Some(Body::CaseOpened(CaseOpened {
            pin_verifier: pin_verifier(&pepper, &tn, &pin).to_vec(),
            nik_keyed_hash: vec![i as u8; 32],
        }));
        publish_envelope(&js, &env).await?;
        cases.push((tn.to_string(), pin.expose().to_owned()));
    }
    Ok(cases)
}

/// Waits until the stream holds `n` messages (a service's outbox publishes
/// after it answers) and `hub` has ingested them.
async fn ingested(nats: &NatsServer, hub: &mut HubProcess, n: u64) -> Result<()> {
    let js = async_nats::jetstream::new(nats.connect().await?);
    let last = mpp_tests::wait_for(&format!("{n} messages in the stream"), CATCH_UP_DEADLINE, || async {
        let last = stream_last_seq(&js).await?;
        Ok((last >= n).then_some(last))
    })
    .await?;
    hub.wait_caught_up(last, CATCH_UP_DEADLINE).await?;
    Ok(())
}

async fn caught_up(nats: &NatsServer, hubs: &mut [&mut HubProcess]) -> Result<()> {
    let js = async_nats::jetstream::new(nats.connect().await?);
    let last = stream_last_seq(&js).await?;
    for hub in hubs {
        hub.wait_caught_up(last, CATCH_UP_DEADLINE).await?;
    }
    Ok(())
}

/// `GET /api/v1/cases/{tn}` from `source`, with the PIN and optional
/// headers (`X-Forwarded-For`, `X-MPP-POW`).
async fn lookup_from(
    source: IpAddr,
    addr: SocketAddr,
    tn: &str,
    pin: &str,
    headers: &[(&str, &str)],
) -> Result<HttpResponse> {
    let socket = match source {
        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source, 0)).with_context(|| format!("bind {source}"))?;
    let mut stream = tokio::time::timeout(Duration::from_secs(10), socket.connect(addr)).await??;
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let req = format!(
        "GET /api/v1/cases/{tn} HTTP/1.1\r\nHost: {addr}\r\nX-MPP-PIN: {pin}\r\n{extra}Connection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await??;
    parse_response(&raw)
}

/// The answer's reason code (`OK` for a case); a network budget's
/// `RATE_LIMITED` names the network level, e.g. `RATE_LIMITED ipv6_56`.
fn code(r: &HttpResponse) -> String {
    let v = r.json().ok();
    let code = v.as_ref().and_then(|v| v.pointer("/error/code")).and_then(|c| c.as_str());
    let Some(code) = code else {
        return if r.status == 200 { "OK".to_owned() } else { format!("HTTP {}", r.status) };
    };
    let message = v.as_ref().and_then(|v| v.pointer("/error/message")).and_then(|m| m.as_str()).unwrap_or("");
    match message.split_once("network (").and_then(|(_, rest)| rest.split_once(')')) {
        Some((kind, _)) if code == "RATE_LIMITED" => format!("{code} {kind}"),
        _ => code.to_owned(),
    }
}

/// Solves a challenge as docs/API.md describes, independently of the hub's
/// code: the smallest n with SHA-256(challenge ":" digits ":" n) starting
/// with `bits` zero bits.
fn solve(challenge: &str, tn: &str, bits: u32) -> Result<String> {
    let digits: String = tn.chars().filter(char::is_ascii_digit).collect();
    for n in 0u64..(1 << 24) {
        let h = Sha256::digest(format!("{challenge}:{digits}:{n}").as_bytes());
        let lead = u32::from_be_bytes([h[0], h[1], h[2], h[3]]).leading_zeros();
        if lead >= bits {
            return Ok(format!("{challenge}:{n}"));
        }
    }
    bail!("no solution of {challenge} within 2^24 tries")
}

/// One guess: a lookup; when the hub asks for a proof of work, the attacker
/// solves it and asks again. Returns the final answer's code and whether a
/// proof was needed.
async fn guess(
    source: IpAddr,
    addr: SocketAddr,
    tn: &str,
    pin: &str,
    forwarded: Option<&str>,
) -> Result<(String, bool)> {
    let mut headers: Vec<(&str, &str)> = forwarded.map(|f| ("X-Forwarded-For", f)).into_iter().collect();
    let r = lookup_from(source, addr, tn, pin, &headers).await?;
    if code(&r) != "PROOF_OF_WORK_REQUIRED" {
        return Ok((code(&r), false));
    }
    let challenge = r.header("x-mpp-pow-challenge").context("a proof asked without a challenge")?.to_owned();
    let bits: u32 = r.header("x-mpp-pow-difficulty").context("no difficulty")?.parse()?;
    let proof = solve(&challenge, tn, bits)?;
    headers.push(("X-MPP-POW", &proof));
    let r = lookup_from(source, addr, tn, pin, &headers).await?;
    Ok((code(&r), true))
}

/// What the attacker saw.
#[derive(Debug, Default)]
struct Tally {
    /// Answers by code.
    codes: BTreeMap<String, u64>,
    /// Guesses the hub checked (`CASE_NOT_FOUND`, or `OK` had one hit), by case.
    admitted_by_case: BTreeMap<String, u64>,
    /// Checked guesses by network (an IPv4 address, a /64, a /56, a /48).
    admitted_by_net: BTreeMap<String, u64>,
    /// Checked guesses before the first proof of work was asked.
    admitted_before_pow: u64,
    pow_seen: bool,
    /// Cases the attacker saw locked (it stops guessing them).
    locked: std::collections::BTreeSet<String>,
}

impl Tally {
    /// A case the attacker has not seen locked, picked by `rng`.
    fn unlocked(&self, cases: &[(String, String)], rng: &mut Rng) -> Result<String> {
        let open: Vec<&String> =
            cases.iter().map(|(tn, _)| tn).filter(|tn| !self.locked.contains(*tn)).collect();
        ensure!(!open.is_empty(), "every case is locked: the test is too small");
        Ok((*rng.pick(&open)).clone())
    }

    fn add(&mut self, tn: &str, nets: &[String], (code, pow): (String, bool)) {
        self.pow_seen |= pow;
        if code == "LOOKUP_LOCKED" {
            self.locked.insert(tn.to_owned());
        }
        let checked = code == "CASE_NOT_FOUND" || code == "OK";
        if checked {
            *self.admitted_by_case.entry(tn.to_owned()).or_default() += 1;
            for n in nets {
                *self.admitted_by_net.entry(n.clone()).or_default() += 1;
            }
            if !self.pow_seen {
                self.admitted_before_pow += 1;
            }
        }
        *self.codes.entry(code).or_default() += 1;
    }

    fn admitted(&self) -> u64 {
        self.admitted_by_case.values().sum()
    }

    fn max_by_net(&self, prefix: &str) -> u64 {
        self.admitted_by_net.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| *v).max().unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_distributed_guessing_attack_hits_every_budget() -> Result<()> {
    let seed = seed_from_env("MPP_TEST_SEED");
    let mut rng = Rng::new(seed);
    let nats = NatsServer::start().await?;
    let mut hub = HubProcess::spawn_with(
        &nats.url(),
        HubOptions {
            documented_rate_limits: true,
            extra_args: hub_flags(true, PIN_FAILURES_PER_DAY_MAX),
            ..HubOptions::default()
        },
    )?;
    // The hub creates the stream.
    hub.wait_ready(READY_DEADLINE).await?;
    let cases = seed_cases(&nats, &mut rng, CASES).await?;
    caught_up(&nats, &mut [&mut hub]).await?;
    let addr = hub.http_addr();
    let started = std::time::Instant::now();
    let mut tally = Tally::default();

    // Phase 0: many addresses on one number do not help: 8 sources, one
    // guess each at the first case; the number locks after 5.
    let (focus, _) = cases[0].clone();
    for s in 0..FOCUSED_SOURCES {
        let source = Ipv4Addr::new(127, 3, 0, s + 1);
        let pin = random_pin(&mut rng);
        let answer = guess(IpAddr::V4(source), addr, &focus, pin.expose(), None).await?;
        let want = if u64::from(s) < PIN_FAILURES_MAX { "CASE_NOT_FOUND" } else { "LOOKUP_LOCKED" };
        ensure!(answer.0 == want, "guess {s} at one number from its own address: {answer:?}");
        tally.add(&focus, &[format!("v4 {source}")], answer);
    }

    // Phase 1: 40 IPv4 addresses, each trying 5 guesses on cases the seed
    // picks, in order (one request at a time: what is counted is exact).
    for s in 0..IPV4_SOURCES {
        let source = Ipv4Addr::new(127, 1, (s / 250) as u8, (s % 250 + 1) as u8);
        for _ in 0..GUESSES_PER_SOURCE {
            let tn = tally.unlocked(&cases, &mut rng)?;
            let pin = random_pin(&mut rng);
            let answer = guess(IpAddr::V4(source), addr, &tn, pin.expose(), None).await?;
            tally.add(&tn, &[format!("v4 {source}")], answer);
        }
    }
    let v4 = tally.codes.clone();
    println!("IPv4 phase: {v4:?}");

    // Phase 2: IPv6 clients named by the trusted proxy on 127.0.0.1: one
    // /64 alone; one /56 over its /64s (2 guesses each); one /48 over its
    // /56s (one /64 and one guess each); each until its budget answers.
    let levels: [(&str, u32, usize); 3] =
        [("ipv6_64", 0xc, GUESSES_PER_64), ("ipv6_56", 0xd, GUESSES_PER_64_IN_56), ("ipv6_48", 0xe, 1)];
    for (kind, net48, per_client) in levels {
        let want = format!("RATE_LIMITED {kind}");
        let mut tripped = false;
        for i in 0..V6_CLIENTS_MAX {
            let (net56, net64) = match kind {
                "ipv6_64" => (0, 0),
                "ipv6_56" => (1, i),
                _ => (i, 0),
            };
            let client = format!("2001:db8:{net48:x}:{:x}::{:x}", net56 * 0x100 + net64, 1 + rng.below(1000));
            let nets = [
                format!("v6/64 {net48:x}:{net56:x}:{net64:x}"),
                format!("v6/56 {net48:x}:{net56:x}"),
                format!("v6/48 {net48:x}"),
            ];
            for _ in 0..per_client {
                let tn = tally.unlocked(&cases, &mut rng)?;
                let pin = random_pin(&mut rng);
                let answer =
                    guess(IpAddr::V4(Ipv4Addr::LOCALHOST), addr, &tn, pin.expose(), Some(&client)).await?;
                tripped |= answer.0 == want;
                tally.add(&tn, &nets, answer);
            }
            if tripped {
                break;
            }
        }
        ensure!(tripped, "the {kind} budget never answered: {:?}", tally.codes);
    }
    let elapsed = started.elapsed();
    println!("all answers: {:?}", tally.codes);

    // Every budget was hit.
    for want in [
        "CASE_NOT_FOUND",
        "LOOKUP_LOCKED",
        "RATE_LIMITED ipv4",
        "RATE_LIMITED ipv6_64",
        "RATE_LIMITED ipv6_56",
        "RATE_LIMITED ipv6_48",
    ] {
        ensure!(tally.codes.get(want).copied().unwrap_or(0) > 0, "no {want} answer: {:?}", tally.codes);
    }
    ensure!(tally.pow_seen, "the global budget never asked for a proof of work: {:?}", tally.codes);
    ensure!(!tally.codes.contains_key("OK"), "a random guess found a strong PIN: {:?}", tally.codes);
    ensure!(
        tally.admitted_before_pow <= GLOBAL_MAX,
        "{} guesses were checked before the global budget of {GLOBAL_MAX} asked for work",
        tally.admitted_before_pow
    );
    let per_v4 = tally.max_by_net("v4 ");
    let (per_64, per_56, per_48) =
        (tally.max_by_net("v6/64"), tally.max_by_net("v6/56"), tally.max_by_net("v6/48"));
    ensure!(per_v4 <= PER_IPV4_MAX, "an IPv4 address got {per_v4} guesses checked");
    ensure!(per_64 <= PER_IPV6_64_MAX, "a /64 got {per_64} guesses checked");
    ensure!(per_56 <= PER_IPV6_56_MAX, "a /56 got {per_56} guesses checked");
    ensure!(per_48 <= PER_IPV6_48_MAX, "a /48 got {per_48} guesses checked");
    // Each budget is reached, never passed, and not long before: a replica
    // counts its failures off the answer path and, while one flush of them
    // is between the store (already echoed into its mirror) and being
    // settled, reads them twice, so a budget may answer a little early
    // (hub/lookup/src/guard/deltas.rs; the safe direction). Half the budget
    // is the least a check may have been given.
    for (what, got, max) in
        [("/64", per_64, PER_IPV6_64_MAX), ("/56", per_56, PER_IPV6_56_MAX), ("/48", per_48, PER_IPV6_48_MAX)]
    {
        ensure!(
            got * 2 >= max,
            "the {what} budget of {max} answered after {got} guesses: /64 {per_64}, /56 {per_56}, /48 {per_48}"
        );
    }
    let per_case = tally.admitted_by_case.values().copied().max().unwrap_or(0);
    ensure!(
        per_case <= PIN_FAILURES_MAX,
        "a case had {per_case} guesses checked within one lock ({PIN_FAILURES_MAX} allowed)"
    );

    // The right PIN of the locked case is refused too.
    let (ltn, lpin) = &cases[0];
    let (c, _) = guess(IpAddr::V4(Ipv4Addr::new(127, 2, 0, 1)), addr, ltn, lpin, None).await?;
    ensure!(c == "LOOKUP_LOCKED", "the locked case with its right PIN: {c}");

    // The figures.
    let admitted = tally.admitted();
    let secs = elapsed.as_secs_f64();
    let per_case_mean = admitted as f64 / CASES as f64;
    let day_cap = PIN_FAILURES_PER_DAY_MAX as f64;
    // Per case: at most PIN_FAILURES_MAX checked per lock, locks of 15 min,
    // 1 h, 4 h and 16 h, and the daily cap of 20 (here measured: the most
    // any case had checked before its lock, scaled by those four locks).
    let per_case_per_day = (per_case as f64 * 4.0).min(day_cap);
    let space = STRONG_PIN_SPACE as f64;
    let cases_1m = 1_000_000.0;
    println!(
        "seed {seed}: {admitted} guesses checked in {secs:.1} s over {CASES} cases from {} IPv4 addresses and {} IPv6 /64s",
        IPV4_SOURCES + u32::from(FOCUSED_SOURCES),
        tally.admitted_by_net.keys().filter(|k| k.starts_with("v6/64")).count()
    );
    println!(
        "measured: at most {per_case} per case (mean {per_case_mean:.1}) before its lock; per IPv4 address {per_v4}, /64 {per_64}, /56 {per_56}, /48 {per_48}; {} checked before the global budget ({GLOBAL_MAX}) asked for work",
        tally.admitted_before_pow
    );
    println!(
        "guesses per case per day, whatever the attacker's addresses or proofs of work: {per_case_per_day:.0} (however many replicas)"
    );
    println!(
        "expected compromised cases per day at 1M cases (9-character PINs, 31^9): {:.2e}; an attacker without proofs of work is held to the global budget, {:.0}/day in all: {:.2e} cases per day",
        cases_1m * per_case_per_day / space,
        DEFAULT_GLOBAL_PER_HOUR * 24.0,
        DEFAULT_GLOBAL_PER_HOUR * 24.0 / space,
    );
    println!(
        "for comparison, the finding's 6-digit PINs under the same per-case cap: {:.0} cases per day at 1M (then locked until re-issue); one /48 at the default budget checks {:.0} guesses per day",
        cases_1m * per_case_per_day / 1e6,
        DEFAULT_PER_48_PER_HOUR * 24.0
    );
    hub.terminate().await?;
    Ok(())
}

/// A hub replica of its own consumer `name`.
fn replica(name: &str) -> HubOptions {
    HubOptions { consumer_name: Some(name.to_owned()), ..HubOptions::default() }
}

/// Replicas A and B sharing `nats`, both caught up with `n` cases drawn
/// from `rng` (number, PIN).
async fn two_replicas(
    nats: &NatsServer,
    rng: &mut Rng,
    n: usize,
) -> Result<(HubProcess, HubProcess, Vec<(String, String)>)> {
    let mut a = HubProcess::spawn_with(&nats.url(), replica("mpp-hub-a"))?;
    let mut b = HubProcess::spawn_with(&nats.url(), replica("mpp-hub-b"))?;
    a.wait_ready(READY_DEADLINE).await?;
    b.wait_ready(READY_DEADLINE).await?;
    let cases = seed_cases(nats, rng, n).await?;
    caught_up(nats, &mut [&mut a, &mut b]).await?;
    Ok((a, b, cases))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockouts_are_seen_by_a_second_replica_and_survive_a_restart() -> Result<()> {
    let seed = seed_from_env("MPP_TEST_SEED");
    let mut rng = Rng::new(seed);
    let nats = NatsServer::start().await?;
    let (mut a, mut b, cases) = two_replicas(&nats, &mut rng, 2).await?;
    let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (shown_tn, shown_pin) = &cases[0];
    let (tn, pin) = &cases[1];
    let wrong = mpp_tests::pin::other_pin(pin);

    // Wrong PINs on A are shown on B, once.
    for _ in 0..3 {
        ensure!(code(&lookup_from(client, a.http_addr(), shown_tn, &wrong, &[]).await?) == "CASE_NOT_FOUND");
    }
    let r = lookup_from(client, b.http_addr(), shown_tn, shown_pin, &[]).await?;
    let v = r.json()?;
    ensure!(r.status == 200 && v["failed_lookups"]["count"] == 3, "B after 3 wrong PINs on A: {v}");
    let v = lookup_from(client, a.http_addr(), shown_tn, shown_pin, &[]).await?.json()?;
    ensure!(v["failed_lookups"]["count"] == 0, "seen on B, so cleared on A: {v}");

    // Five wrong PINs, alternating replicas, lock the number on both.
    for i in 0..5 {
        let hub = if i % 2 == 0 { &a } else { &b };
        let c = code(&lookup_from(client, hub.http_addr(), tn, &wrong, &[]).await?);
        ensure!(c == "CASE_NOT_FOUND", "wrong PIN {i}: {c}");
    }
    for (name, hub) in [("A", &a), ("B", &b)] {
        let r = lookup_from(client, hub.http_addr(), tn, pin, &[]).await?;
        ensure!(code(&r) == "LOOKUP_LOCKED", "{name} with the right PIN: {}", r.text());
        let retry: u64 = r.header("retry-after").context("no Retry-After")?.parse()?;
        ensure!((14 * 60..=15 * 60).contains(&retry), "Retry-After {retry}");
    }

    // A restarts (kill -9: nothing of the lock lived in its memory only),
    // and a replica started now sees the lock too.
    a.kill9()?;
    a.start()?;
    a.wait_ready(READY_DEADLINE).await?;
    let r = lookup_from(client, a.http_addr(), tn, pin, &[]).await?;
    ensure!(code(&r) == "LOOKUP_LOCKED", "A after its restart: {}", r.text());
    let mut c = HubProcess::spawn_with(&nats.url(), replica("mpp-hub-c"))?;
    c.wait_ready(READY_DEADLINE).await?;
    caught_up(&nats, &mut [&mut c]).await?;
    let r = lookup_from(client, c.http_addr(), tn, pin, &[]).await?;
    ensure!(code(&r) == "LOOKUP_LOCKED", "a new replica: {}", r.text());
    // The other case is untouched on every replica.
    for hub in [&a, &b, &c] {
        let r = lookup_from(client, hub.http_addr(), shown_tn, shown_pin, &[]).await?;
        ensure!(r.status == 200, "the other case on {}: {}", hub.http_addr(), r.text());
    }
    println!(
        "seed {seed}: a lock made through two replicas held on both, after a kill -9 and on a third replica"
    );
    for hub in [&mut a, &mut b, &mut c] {
        hub.terminate().await?;
    }
    Ok(())
}

/// `RIGHT_PINS_IN_FLIGHT` lookups of `tn` with its right `pin` at once,
/// alternating replicas, each from its own loopback address; returns the
/// answers.
async fn right_pins_at_once(
    hubs: [SocketAddr; 2],
    tn: &str,
    pin: &str,
    net: u8,
) -> Result<Vec<HttpResponse>> {
    let lookups: Vec<_> = (0..RIGHT_PINS_IN_FLIGHT)
        .map(|i| {
            let (tn, pin) = (tn.to_owned(), pin.to_owned());
            let source = IpAddr::V4(Ipv4Addr::new(127, 5, net, i as u8 + 1));
            tokio::spawn(async move { lookup_from(source, hubs[i % 2], &tn, &pin, &[]).await })
        })
        .collect();
    let mut answers = Vec::new();
    for l in lookups {
        answers.push(l.await??);
    }
    Ok(answers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn right_pins_in_flight_never_lock_and_a_lock_on_one_replica_holds_on_the_other() -> Result<()> {
    let seed = seed_from_env("MPP_TEST_SEED");
    let mut rng = Rng::new(seed);
    let nats = NatsServer::start().await?;
    let (mut a, mut b, cases) = two_replicas(&nats, &mut rng, 3).await?;
    let hubs = [a.http_addr(), b.http_addr()];
    let client = IpAddr::V4(Ipv4Addr::LOCALHOST);

    // A clean number: every right PIN in flight at once is answered.
    let (tn, pin) = &cases[0];
    for (i, r) in right_pins_at_once(hubs, tn, pin, 0).await?.iter().enumerate() {
        ensure!(r.status == 200, "right PIN {i} of {RIGHT_PINS_IN_FLIGHT} at once: {}", r.text());
    }
    // A number with wrong PINs to show: all answered, the wrong PINs shown
    // once, and none of the right PINs counted (the number is not locked
    // after more than its 5-in-a-row and 20-a-day budgets of lookups).
    let (tn, pin) = &cases[1];
    let wrong = mpp_tests::pin::other_pin(pin);
    for _ in 0..3 {
        ensure!(code(&lookup_from(client, hubs[0], tn, &wrong, &[]).await?) == "CASE_NOT_FOUND");
    }
    let mut shown = 0;
    for (i, r) in right_pins_at_once(hubs, tn, pin, 1).await?.iter().enumerate() {
        ensure!(r.status == 200, "right PIN {i} after 3 wrong ones: {}", r.text());
        shown += r.json()?["failed_lookups"]["count"].as_u64().context("no failed_lookups")?;
    }
    ensure!(shown == 3, "the 3 wrong PINs were shown {shown} times over");
    for _ in 0..4 {
        ensure!(code(&lookup_from(client, hubs[1], tn, &wrong, &[]).await?) == "CASE_NOT_FOUND");
    }
    ensure!(lookup_from(client, hubs[1], tn, pin, &[]).await?.status == 200, "4 wrong PINs do not lock");

    // Five wrong PINs on A lock the number; B refuses the right PIN with
    // what it answers a wrong one.
    let (tn, pin) = &cases[2];
    for i in 0..5 {
        let c = code(&lookup_from(client, hubs[0], tn, &wrong, &[]).await?);
        ensure!(c == "CASE_NOT_FOUND", "wrong PIN {i} on A: {c}");
    }
    let locked_at = std::time::Instant::now();
    let mut tries = 0u32;
    let right =
        mpp_tests::wait::wait_until("B to refuse the right PIN", LOCK_PROPAGATION_DEADLINE, || {
            tries += 1;
            async move {
                lookup_from(client, hubs[1], tn, pin, &[]).await.map(|r| (code(&r) == "LOOKUP_LOCKED", r))
            }
        })
        .await?;
    let refused_after = locked_at.elapsed();
    let wrong_answer = lookup_from(client, hubs[1], tn, &wrong, &[]).await?;
    ensure!(
        (right.status, right.body.as_slice()) == (wrong_answer.status, wrong_answer.body.as_slice()),
        "B told the right PIN ({} {}) from a wrong one ({} {})",
        right.status,
        right.text(),
        wrong_answer.status,
        wrong_answer.text()
    );
    let retry =
        |r: &HttpResponse| -> Result<i64> { Ok(r.header("retry-after").context("no Retry-After")?.parse()?) };
    ensure!((retry(&right)? - retry(&wrong_answer)?).abs() <= 1, "Retry-After differs");
    // And A, which locked it, refuses it too.
    ensure!(code(&lookup_from(client, hubs[0], tn, pin, &[]).await?) == "LOOKUP_LOCKED");
    println!(
        "seed {seed}: {RIGHT_PINS_IN_FLIGHT} right PINs at once answered on a clean number and on one with 3 wrong PINs (shown once); a lock set on A refused the right PIN on B {} ms after A's fifth wrong PIN was answered (try {tries}), as B answers a wrong one",
        refused_after.as_millis()
    );
    for hub in [&mut a, &mut b] {
        hub.terminate().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_at_its_daily_cap_opens_again_with_a_pin_reissued_at_the_counter() -> Result<()> {
    use mpp_proto::frontoffice::v1 as fo;
    use mpp_tests::services::AgencyOptions;
    let nats = NatsServer::start().await?;
    let secrets = mpp_tests::temp_dir("mpp-guessing-secrets-")?;
    let pepper = secrets.path().join("pin-pepper");
    std::fs::write(&pepper, TEST_PIN_PEPPER).context("cannot write the pepper")?;
    // A daily cap of 3, reached before the first lock (at 5).
    let flags = hub_flags(false, 3);
    let mut hub = HubProcess::spawn_with(
        &nats.url(),
        HubOptions {
            pin_pepper_file: Some(pepper.clone()),
            documented_rate_limits: true,
            extra_args: flags,
            ..HubOptions::default()
        },
    )?;
    hub.wait_ready(READY_DEADLINE).await?;
    let options = AgencyOptions { pin_pepper_file: Some(pepper), ..AgencyOptions::region(REGION) };
    let mut front = mpp_tests::AgencyProcess::spawn_frontoffice(&nats.url(), options)?;
    front.wait_listening(READY_DEADLINE).await?;
    let mut desk = front.front_office_client()?;
    let opened =
        desk.buka_berkas(case_opening("1771014501900007", "")).await.context("BukaBerkas")?.into_inner();
    let (tn, old_pin) = (opened.nomor_berkas.clone(), opened.pin.clone());
    // case_opened and personal_data_sealed.
    ingested(&nats, &mut hub, 2).await?;
    let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let addr = hub.http_addr();
    ensure!(lookup_from(client, addr, &tn, &old_pin, &[]).await?.status == 200, "the case opens at first");
    for i in 0..3 {
        let wrong = mpp_tests::pin::other_pin(&old_pin);
        let c =
            code(&lookup_from(IpAddr::V4(Ipv4Addr::new(127, 4, 0, i + 1)), addr, &tn, &wrong, &[]).await?);
        ensure!(c == "CASE_NOT_FOUND", "wrong PIN {i}: {c}");
    }
    let r = lookup_from(client, addr, &tn, &old_pin, &[]).await?;
    ensure!(r.status == 403 && code(&r) == "PIN_REISSUE_REQUIRED", "at the daily cap: {}", r.text());

    // At the counter: a new PIN.
    let new = desk
        .terbitkan_ulang_pin(fo::PenerbitanUlangPin {
            nomor_berkas: tn.clone(),
            petugas: "ptg-loket-1".to_owned(),
        })
        .await
        .context("TerbitkanUlangPin")?
        .into_inner();
    ensure!(mpp_tests::pin::is_strong(&new.pin) && new.pin != old_pin, "a new strong PIN: {new:?}");
    ingested(&nats, &mut hub, 3).await?;
    let r = lookup_from(client, addr, &tn, &new.pin, &[]).await?;
    let v = r.json()?;
    ensure!(r.status == 200 && v["failed_lookups"]["count"] == 0, "the new PIN: {v}");
    // The re-issue is in the case's access history: the opener's officer,
    // at the counter.
    let events = v["access_events"].as_array().context("no access_events")?;
    ensure!(
        events.iter().any(|e| e["accessor"] == "officer" && e["channel"] == "counter"),
        "the re-issue in the access history: {events:?}"
    );
    let r = lookup_from(client, addr, &tn, &old_pin, &[]).await?;
    ensure!(code(&r) == "CASE_NOT_FOUND", "the old PIN no longer opens the case: {}", r.text());
    println!("a number at its daily cap opened again with a PIN re-issued at the counter");
    front.terminate().await?;
    hub.terminate().await?;
    Ok(())
}

/// The storage of the guard bucket's stream on `nats`.
async fn guard_storage(nats: &NatsServer) -> Result<async_nats::jetstream::stream::StorageType> {
    let js = async_nats::jetstream::new(nats.connect().await?);
    let mut stream = js.get_stream("KV_MPP_LOOKUP_GUARD").await.context("the guard bucket's stream")?;
    Ok(stream.info().await?.config.storage)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_hub_keeps_the_guard_bucket_in_the_storage_asked() -> Result<()> {
    use async_nats::jetstream::stream::StorageType;
    let nats = NatsServer::start().await?;
    let mut hub = HubProcess::spawn_with(&nats.url(), replica("mpp-hub-a"))?;
    hub.wait_ready(READY_DEADLINE).await?;
    ensure!(guard_storage(&nats).await? == StorageType::Memory, "the default is memory storage");
    hub.terminate().await?;

    let nats = NatsServer::start().await?;
    let file = HubOptions {
        extra_args: vec!["--guard-bucket-storage".to_owned(), "file".to_owned()],
        ..replica("mpp-hub-a")
    };
    let mut hub = HubProcess::spawn_with(&nats.url(), file)?;
    hub.wait_ready(READY_DEADLINE).await?;
    ensure!(guard_storage(&nats).await? == StorageType::File, "--guard-bucket-storage file");
    hub.terminate().await?;
    // A hub asking for memory (the default) uses the file bucket as it is
    // and says how to switch.
    let mut hub = HubProcess::spawn_with(&nats.url(), replica("mpp-hub-b"))?;
    hub.wait_ready(READY_DEADLINE).await?;
    ensure!(guard_storage(&nats).await? == StorageType::File, "an existing bucket keeps its storage");
    let log = std::fs::read_to_string(hub.process().log_path())?;
    ensure!(
        log.contains("not the memory configured") && log.contains("nats stream rm KV_MPP_LOOKUP_GUARD"),
        "no warning of the storage mismatch in the hub's log: {}",
        hub.log_tail()
    );
    hub.terminate().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_guard_bucket_lost_with_a_single_nats_server_comes_back() -> Result<()> {
    let seed = seed_from_env("MPP_TEST_SEED");
    let mut rng = Rng::new(seed);
    let mut nats = NatsServer::start().await?;
    let mut hub = HubProcess::spawn_with(&nats.url(), replica("mpp-hub-a"))?;
    hub.wait_ready(READY_DEADLINE).await?;
    let cases = seed_cases(&nats, &mut rng, 1).await?;
    caught_up(&nats, &mut [&mut hub]).await?;
    let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (tn, pin) = &cases[0];
    let wrong = mpp_tests::pin::other_pin(pin);
    ensure!(code(&lookup_from(client, hub.http_addr(), tn, &wrong, &[]).await?) == "CASE_NOT_FOUND");

    nats.restart().await?;
    // Until the hub has the bucket again, a wrong PIN fails closed.
    mpp_tests::wait::wait_for("the guard bucket back after the NATS restart", READY_DEADLINE, || async {
        let c = code(&lookup_from(client, hub.http_addr(), tn, &wrong, &[]).await?);
        if c == "CASE_NOT_FOUND" {
            return Ok(Some(()));
        }
        if c != "LOOKUP_BUDGET_UNAVAILABLE" {
            return Err(mpp_tests::wait::Fatal(format!("a wrong PIN after the restart: {c}")).into());
        }
        Ok(None)
    })
    .await
    .with_context(|| hub.log_tail())?;
    ensure!(guard_storage(&nats).await? == async_nats::jetstream::stream::StorageType::Memory);
    let log = std::fs::read_to_string(hub.process().log_path())?;
    ensure!(log.contains("created it again"), "no word of the bucket made again: {}", hub.log_tail());
    // The failure before the restart is forgotten, the one after counted.
    let v = lookup_from(client, hub.http_addr(), tn, pin, &[]).await?.json()?;
    ensure!(v["failed_lookups"]["count"] == 1, "after the restart: {v}");
    hub.terminate().await?;
    Ok(())
}
