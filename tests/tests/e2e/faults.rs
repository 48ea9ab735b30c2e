//! Fault scenarios under continuous traffic (issue 7), each with a seeded
//! random schedule: the seed is printed and `MPP_FAULT_SEED=<seed>` replays
//! it. Each is bounded in cycles and time and ends with the
//! [`crate::checker`]: every event id the agency service answered
//! "accepted" is in the hub's log exactly once, no stream gap, `mpp-hub
//! audit verify` and `audit rebuild` pass; it prints `run, accepted, found
//! once, lost, duplicated`.
//!
//! The traffic is counter officers calling the Dukcapil agency service
//! ([`Driver`]); the slow-consumer scenario publishes straight onto
//! JetStream instead (a million events through gRPC would measure the
//! service, not the hub). The tests here are the short CI versions; the
//! long runs (≥ 200 hub kills, ≥ 1M events) are `mpp-faults` (see
//! docs/FAULTS.md), which runs this same code.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use mpp_tests::dukcapil::{self, Answered, Driver, DriverConfig};
use mpp_tests::envelope::{
    encode, random_journey, stream_last_seq, subject, tracking_number, EventFactory, StreamIds,
};
use mpp_tests::rng::Rng;
use mpp_tests::services::{ingest_halted, read_head, AgencyOptions, Head, HubOptions};
use mpp_tests::wait::Fatal;
use mpp_tests::{wait_for, AgencyProcess, HubProcess, NatsServer, READY_DEADLINE};

use crate::checker::{check_stopped_hub, Counts, Run};
use crate::cluster::{NatsCluster, NODES};

/// The environment variable that replays a scenario's schedule.
pub(crate) const SEED_ENV: &str = "MPP_FAULT_SEED";

/// Region of the MPP: Kota Bengkulu.
const REGION: &str = "1771";

/// Officers calling the service: about 180 events/s, which a debug-build
/// hub ingests with room to spare after an outage.
const DRIVER: DriverConfig = DriverConfig { workers: 4, journey_interval_ms: 100 };

/// Event ids answered before the first fault.
const WARM_UP_ANSWERS: u64 = 40;

/// Longest chaos pause before a `kill -9`, in milliseconds (where in its
/// work a process dies; it synchronises nothing).
const KILL_DELAY_MS_MAX: u64 = 400;

/// Answers the service must give while NATS (or a node) is down, at least …
const OUTAGE_ANSWERS_MIN: u64 = 30;
/// … and at most.
const OUTAGE_ANSWERS_MAX: u64 = 90;

/// Largest sled batch the hub-kill scenario picks (small batches make more
/// commit boundaries for the kills to fall between).
const HUB_KILL_BATCH_MAX: u64 = 64;

/// Publishes in flight at once when the slow-consumer scenario fills the stream.
const PUBLISH_WINDOW_MESSAGES: usize = 512;

/// The most resident memory the hub may use while it catches up on a
/// backlog, in bytes: its batches and channels are bounded, so its memory
/// must level off, not follow the backlog. Measured (release): it rises
/// about 60 MiB per 100,000 events ingested and levels off at about
/// 1,030 MiB from 1.4M events on (2M-event backlog), so the bound is 1.5 GiB.
pub(crate) const CATCH_UP_RSS_BYTES_MAX: u64 = 1536 * 1024 * 1024;

/// A tmpfs directory for the slow-consumer scenario's JetStream store, used
/// when it exists.
const BACKLOG_TMPFS_DIR: &str = "/dev/shm";

/// How often the hub's RSS is sampled during catch-up, in milliseconds.
const RSS_SAMPLE_INTERVAL_MS: u64 = 100;

/// Size of the tmpfs the disk-full scenario gives the hub, in MiB.
const DISK_TMPFS_MB: u64 = 64;

/// Free space left on that tmpfs once the filler file is written, in KiB.
const DISK_LEFT_FREE_KB: u64 = 256;

/// Free space left on that tmpfs in the first phase, in MiB: below the
/// hub's `--min-free-disk-mb` (a quarter of the tmpfs) but far from full, so
/// the hub's own disk check pauses ingest before sled meets a full disk.
const DISK_PAUSE_FREE_MB: u64 = 8;

/// Size the tmpfs is remounted at when space returns, in MiB.
const DISK_REGROWN_MB: u64 = 256;

/// How long the hub may take to notice a full disk (ingest halted, or
/// readiness false), and to resume once space returned without a restart.
const DISK_DEADLINE: Duration = Duration::from_secs(60);

/// How long to wait for the hub to resume by itself after space returned
/// (longer than the hub's 5 s disk check) before restarting it.
const DISK_SELF_RESUME_DEADLINE: Duration = Duration::from_secs(12);

const ANSWERS_DEADLINE: Duration = Duration::from_secs(60);
const PROGRESS_DEADLINE: Duration = Duration::from_secs(60);
const DELIVERY_DEADLINE: Duration = Duration::from_secs(180);
/// How long the hub may take to ingest the slow-consumer backlog.
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(1800);

/// The scenarios of issue 7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scenario {
    /// `kill -9` of the hub at random moments.
    HubKill,
    /// `kill -9` of the agency service, with a non-empty outbox.
    AgencyKill,
    /// nats-server stopped and restarted, and `kill -9`ed.
    NatsRestart,
    /// A 3-node cluster, stream R3: the stream leader and a follower killed in turn.
    ClusterKill,
    /// The hub's data directory runs out of space.
    DiskFull,
    /// The hub stopped while the stream grows; it catches up.
    SlowConsumer,
}

impl Scenario {
    /// Every scenario.
    pub(crate) const ALL: [Scenario; 6] = [
        Scenario::HubKill,
        Scenario::AgencyKill,
        Scenario::NatsRestart,
        Scenario::ClusterKill,
        Scenario::DiskFull,
        Scenario::SlowConsumer,
    ];

    /// The name on the command line and in the printed counts.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::HubKill => "hub-kill",
            Scenario::AgencyKill => "agency-kill",
            Scenario::NatsRestart => "nats-restart",
            Scenario::ClusterKill => "cluster-kill",
            Scenario::DiskFull => "disk-full",
            Scenario::SlowConsumer => "slow-consumer",
        }
    }

    /// The scenario named `name`.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// One run of a scenario.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// Which scenario.
    pub(crate) scenario: Scenario,
    /// The schedule's seed.
    pub(crate) seed: u64,
    /// Fault cycles (kills, outages); ignored by the slow consumer.
    pub(crate) cycles: u32,
    /// Events published while the hub is stopped (slow consumer only).
    pub(crate) events: u64,
}

/// The seed from `MPP_FAULT_SEED`, or a fresh one; printed either way.
pub(crate) fn seed_from_env() -> u64 {
    mpp_tests::rng::seed_from_env(SEED_ENV)
}

/// Runs a scenario to its checked end.
pub(crate) async fn run(plan: Plan) -> Result<Counts> {
    let started = Instant::now();
    println!(
        "[{}] seed {} (replay with {SEED_ENV}={}), cycles {}, events {}",
        plan.scenario.name(),
        plan.seed,
        plan.seed,
        plan.cycles,
        plan.events
    );
    let counts = match plan.scenario {
        Scenario::HubKill => hub_kill(plan).await,
        Scenario::AgencyKill => agency_kill(plan).await,
        Scenario::NatsRestart => nats_restart(plan).await,
        Scenario::ClusterKill => cluster_kill(plan).await,
        Scenario::DiskFull => disk_full(plan).await,
        Scenario::SlowConsumer => slow_consumer(plan).await,
    }
    .with_context(|| format!("[{}] seed {} ({SEED_ENV}={})", plan.scenario.name(), plan.seed, plan.seed))?;
    println!("[{}] seed {}: {counts}; took {:?}", plan.scenario.name(), plan.seed, started.elapsed());
    Ok(counts)
}

/// A single nats-server or a 3-node cluster.
#[derive(Debug)]
enum Broker {
    Single(Box<NatsServer>),
    Cluster(NatsCluster),
}

impl Broker {
    fn url(&self) -> String {
        match self {
            Broker::Single(s) => s.url(),
            Broker::Cluster(c) => c.urls(),
        }
    }

    async fn jetstream(&self) -> Result<async_nats::jetstream::Context> {
        match self {
            Broker::Single(s) => s.jetstream().await,
            Broker::Cluster(c) => c.jetstream().await,
        }
    }

    /// The Dukcapil service's options: anonymous on the single server (the
    /// harness's open config), its own NKey and TLS on the cluster.
    fn dukcapil_options(&self) -> AgencyOptions {
        match self {
            Broker::Single(_) => AgencyOptions::region(REGION),
            Broker::Cluster(c) => c.agency_options("dukcapil", REGION),
        }
    }

    fn single(&mut self) -> Result<&mut NatsServer> {
        match self {
            Broker::Single(s) => Ok(s),
            Broker::Cluster(_) => bail!("this scenario needs a single nats-server"),
        }
    }

    fn cluster(&mut self) -> Result<&mut NatsCluster> {
        match self {
            Broker::Cluster(c) => Ok(c),
            Broker::Single(_) => bail!("this scenario needs the cluster"),
        }
    }
}

/// NATS, a hub, the Dukcapil service and officers calling it.
#[derive(Debug)]
struct Stack {
    broker: Broker,
    hub: HubProcess,
    service: AgencyProcess,
    answered: Arc<Answered>,
    driver: Option<Driver>,
    scan: tokio::sync::Mutex<StreamIds>,
    rng: Rng,
    /// Calls that failed because the service was killed under them.
    cut_off_calls: usize,
}

impl Stack {
    /// Waits for the (already spawned) hub, starts the service and the
    /// officers, and waits until traffic flows.
    async fn start(broker: Broker, mut hub: HubProcess, mut rng: Rng) -> Result<Self> {
        hub.wait_ready(READY_DEADLINE).await?;
        let mut service = AgencyProcess::spawn("mpp-dukcapil", &broker.url(), broker.dukcapil_options())?;
        service.wait_listening(READY_DEADLINE).await?;
        let answered = Arc::new(Answered::default());
        let driver = Driver::spawn(&dukcapil::client(&service)?, answered.clone(), rng.next_u64(), DRIVER);
        driver.wait_answered("warm-up", WARM_UP_ANSWERS, ANSWERS_DEADLINE).await?;
        Ok(Self {
            broker,
            hub,
            service,
            answered,
            driver: Some(driver),
            scan: tokio::sync::Mutex::new(StreamIds::new()),
            rng,
            cut_off_calls: 0,
        })
    }

    /// Waits until the officers got `more` answers beyond now.
    async fn more_answers(&self, what: &str, more: u64) -> Result<u64> {
        let driver = self.driver.as_ref().ok_or_else(|| anyhow!("no officers are calling"))?;
        driver.wait_answered(what, self.answered.count() + more, ANSWERS_DEADLINE).await
    }

    /// Stops the officers; returns how many ended on a failed call.
    async fn stop_driver(&mut self) -> Result<Vec<String>> {
        let Some(driver) = self.driver.take() else { return Ok(Vec::new()) };
        Ok(driver.stop().await?.into_iter().filter_map(|r| r.error).collect())
    }

    fn start_driver(&mut self) -> Result<()> {
        ensure!(self.driver.is_none(), "officers are already calling");
        let client = dukcapil::client(&self.service)?;
        self.driver = Some(Driver::spawn(&client, self.answered.clone(), self.rng.next_u64(), DRIVER));
        Ok(())
    }

    /// Waits until the stream holds every answered event id and the hub has
    /// ingested up to the last of them; fails at once if ingest halted.
    async fn wait_delivered(&mut self, what: &str) -> Result<Head> {
        let ids = self.answered.snapshot()?;
        let js = self.broker.jetstream().await?;
        let addr = self.hub.http_addr();
        let scan = &self.scan;
        let process = self.hub.process();
        let started = Instant::now();
        let head = wait_for(
            &format!(
                "{what}: the stream to hold all {} answered event ids and the hub to ingest them",
                ids.len()
            ),
            DELIVERY_DEADLINE,
            || {
                let running = process.ensure_running();
                let (js, ids) = (js.clone(), &ids);
                async move {
                    running?;
                    let mut scan = scan.lock().await;
                    let last = scan.read_to_end(&js).await?;
                    let missing = scan.missing(ids);
                    if let Some(first) = missing.first() {
                        bail!("stream (last seq {last}) lacks {} answered ids, e.g. {first}", missing.len());
                    }
                    let need = ids.iter().filter_map(|id| scan.seqs(id).first().copied()).max().unwrap_or(0);
                    let head = read_head(addr).await?;
                    if head.last_stream_seq < need {
                        if let Some(reason) = ingest_halted(addr).await? {
                            return Err(Fatal(format!("hub ingest halted at {head:?}: {reason}")).into());
                        }
                        bail!("hub head {head:?} is behind stream seq {need}");
                    }
                    Ok(Some(head))
                }
            },
        )
        .await?;
        println!(
            "[faults] {what}: {} answered ids delivered and ingested after {:?}",
            ids.len(),
            started.elapsed()
        );
        Ok(head)
    }

    /// Stops the traffic, lets everything drain, stops the service and the
    /// hub, and runs the checker. With `calls_may_fail` false, any failed
    /// call fails the scenario (the service must answer whatever happens
    /// to NATS or to the hub).
    async fn finish(
        mut self,
        scenario: Scenario,
        seed: u64,
        run: u64,
        calls_may_fail: bool,
    ) -> Result<Counts> {
        let errors = self.stop_driver().await?;
        if let Some(e) = errors.first() {
            ensure!(calls_may_fail, "an officer's call failed: {e}");
            self.cut_off_calls += errors.len();
        }
        self.wait_delivered("final").await?;
        // The service is the only publisher: stopped first, so that a call
        // the stopped officers abandoned (accepted by the service, its
        // answer never read) cannot reach the stream after its last
        // sequence was read (seen once in CI: 270 log entries for 269).
        self.service.terminate().await?;
        let js = self.broker.jetstream().await?;
        let last = stream_last_seq(&js).await?;
        self.hub.wait_caught_up(last, DELIVERY_DEADLINE).await?;
        self.hub.terminate().await?;
        let ids = self.answered.snapshot()?;
        check_stopped_hub(
            self.hub.data_dir(),
            &Run {
                scenario: scenario.name(),
                seed,
                run,
                accepted: &ids,
                stream_last_seq: last,
                // A call cut off by a kill may be flushed without an answer
                // (opening a case carries two events).
                unanswered_max: 2 * self.cut_off_calls,
            },
        )
    }
}

/// (1) `kill -9` of the hub at random moments: a quarter during start-up
/// and recovery, the rest after the head moved past where the last run
/// left it.
async fn hub_kill(plan: Plan) -> Result<Counts> {
    let mut rng = Rng::new(plan.seed);
    let nats = NatsServer::start().await?;
    let batch_max = 1 + rng.below(HUB_KILL_BATCH_MAX) as u32;
    let hub =
        HubProcess::spawn_with(&nats.url(), HubOptions { batch_max: Some(batch_max), ..Default::default() })?;
    let mut s = Stack::start(Broker::Single(Box::new(nats)), hub, rng.clone()).await?;
    let started = Instant::now();
    let (mut max_seen, mut during_startup) = (0u64, 0u32);
    for cycle in 0..plan.cycles {
        let at_startup = rng.chance(25);
        if at_startup {
            during_startup += 1;
        } else {
            let addr = s.hub.http_addr();
            let floor = max_seen;
            let process = s.hub.process();
            let head = wait_for(
                &format!("cycle {cycle}: hub head past stream seq {floor}"),
                PROGRESS_DEADLINE,
                || {
                    let running = process.ensure_running();
                    async move {
                        running?;
                        let head = read_head(addr).await?;
                        Ok((head.last_stream_seq > floor).then_some(head))
                    }
                },
            )
            .await?;
            max_seen = head.last_stream_seq;
        }
        let delay_ms = if at_startup { rng.below(50) } else { rng.below(KILL_DELAY_MS_MAX) };
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        s.hub.kill9()?;
        s.hub.start()?;
        if (cycle + 1) % 25 == 0 {
            println!(
                "[hub-kill] {} cycles in {:?}, head at stream seq {max_seen}",
                cycle + 1,
                started.elapsed()
            );
        }
    }
    println!(
        "[hub-kill] {} kill -9 cycles ({during_startup} during start-up) with --batch-max {batch_max} in {:?}",
        plan.cycles,
        started.elapsed()
    );
    s.hub.wait_ready(READY_DEADLINE).await?;
    s.finish(plan.scenario, plan.seed, u64::from(plan.cycles), false).await
}

/// (2) `kill -9` of the agency service: every other cycle (the first one
/// always) with NATS stopped so its outbox holds every call answered since,
/// the others mid-traffic with NATS up.
async fn agency_kill(plan: Plan) -> Result<Counts> {
    let mut rng = Rng::new(plan.seed);
    let nats = NatsServer::start().await?;
    let hub = HubProcess::spawn(&nats.url())?;
    let mut s = Stack::start(Broker::Single(Box::new(nats)), hub, rng.clone()).await?;
    let mut queued_total = 0u64;
    for cycle in 0..plan.cycles {
        let outage = cycle % 2 == 0 || rng.chance(50);
        if outage {
            s.broker.single()?.stop().await?;
        }
        let before = s.answered.count();
        s.more_answers(
            &format!("cycle {cycle}: calls before the kill"),
            rng.range(OUTAGE_ANSWERS_MIN, OUTAGE_ANSWERS_MAX),
        )
        .await?;
        if !outage {
            tokio::time::sleep(Duration::from_millis(rng.below(KILL_DELAY_MS_MAX))).await;
        }
        s.service.kill9()?;
        let errors = s.stop_driver().await?;
        s.cut_off_calls += errors.len();
        if outage {
            // Only the dead service's outbox holds what it answered while
            // NATS was down (besides the front office's walk-in openings).
            let queued = s.answered.since(before)?;
            queued_total += queued.len() as u64;
            s.broker.single()?.restart().await?;
            let js = s.broker.jetstream().await?;
            let mut scan = s.scan.lock().await;
            scan.read_to_end(&js).await?;
            // A walk-in's answer also names the front office's case_opened,
            // which the front office (alive) publishes once NATS is back:
            // only the dead agency's own ids must still be missing.
            let stream = js.get_stream(mpp_tests::STREAM_NAME).await?;
            let mut leaked = 0usize;
            for id in queued.iter().filter(|id| scan.contains(id)) {
                let seq = scan.seqs(id)[0];
                let msg = stream.get_raw_message(seq).await?;
                if !msg.subject.starts_with("mpp.events.mpp-") {
                    leaked += 1;
                }
            }
            ensure!(
                leaked == 0,
                "cycle {cycle}: {leaked} ids answered while NATS was down are in the stream already"
            );
            println!(
                "[agency-kill] cycle {cycle}: kill -9 with {} answered events in the outbox",
                queued.len()
            );
        } else {
            println!("[agency-kill] cycle {cycle}: kill -9 mid-traffic, {} calls cut off", errors.len());
        }
        s.service.process().start()?;
        s.service.wait_listening(READY_DEADLINE).await?;
        s.wait_delivered(&format!("cycle {cycle}: after the restart")).await?;
        s.start_driver()?;
    }
    println!("[agency-kill] {} events were in outboxes at a kill", queued_total);
    s.finish(plan.scenario, plan.seed, u64::from(plan.cycles), true).await
}

/// (3) nats-server stopped (SIGTERM) or `kill -9`ed mid-traffic, then
/// restarted; the service keeps accepting calls meanwhile.
async fn nats_restart(plan: Plan) -> Result<Counts> {
    let mut rng = Rng::new(plan.seed);
    let nats = NatsServer::start().await?;
    let hub = HubProcess::spawn(&nats.url())?;
    let mut s = Stack::start(Broker::Single(Box::new(nats)), hub, rng.clone()).await?;
    for cycle in 0..plan.cycles {
        let graceful = match cycle {
            0 => true,
            1 => false,
            _ => rng.chance(50),
        };
        s.more_answers(
            &format!("cycle {cycle}: traffic before the outage"),
            rng.range(10, OUTAGE_ANSWERS_MIN),
        )
        .await?;
        if graceful {
            s.broker.single()?.stop().await?;
        } else {
            s.broker.single()?.kill9()?;
        }
        let down = Instant::now();
        let n = s
            .more_answers(
                &format!("cycle {cycle}: calls while NATS is down"),
                rng.range(OUTAGE_ANSWERS_MIN, OUTAGE_ANSWERS_MAX),
            )
            .await?;
        s.broker.single()?.restart().await?;
        println!(
            "[nats-restart] cycle {cycle}: {} for {:?}, service at {n} answers",
            if graceful { "SIGTERM" } else { "kill -9" },
            down.elapsed()
        );
    }
    s.finish(plan.scenario, plan.seed, u64::from(plan.cycles), false).await
}

/// (4) A 3-node cluster, `MPP_EVENTS` at R3: the stream leader (even
/// cycles) or a follower (odd cycles) killed with `kill -9` under traffic;
/// the survivors keep taking events (the service and the hub know every
/// node and fail over) and the hub keeps ingesting; the node restarts and
/// catches up. Any node may be the victim, the one the hub happens to be
/// connected to included.
async fn cluster_kill(plan: Plan) -> Result<Counts> {
    let mut rng = Rng::new(plan.seed);
    let cluster = NatsCluster::start().await?;
    let hub = HubProcess::spawn_with(&cluster.urls(), cluster.hub_options("hub", None))?;
    let mut s = Stack::start(Broker::Cluster(cluster), hub, rng.clone()).await?;
    for cycle in 0..plan.cycles {
        let kill_leader = cycle % 2 == 0;
        let placement = s.broker.cluster()?.wait_placement(|p| p.current.len() == NODES).await?;
        let victim = if kill_leader {
            placement.leader
        } else {
            let followers: Vec<usize> = (0..NODES).filter(|&i| i != placement.leader).collect();
            followers[rng.below(followers.len() as u64) as usize]
        };
        s.more_answers(&format!("cycle {cycle}: traffic before the kill"), rng.range(10, OUTAGE_ANSWERS_MIN))
            .await?;
        s.broker.cluster()?.kill9(victim)?;
        let down = Instant::now();
        let after = s.broker.cluster()?.wait_placement(|p| p.leader != victim).await?;
        s.more_answers(
            &format!("cycle {cycle}: calls with node {victim} down"),
            rng.range(OUTAGE_ANSWERS_MIN, OUTAGE_ANSWERS_MAX),
        )
        .await?;
        s.wait_delivered(&format!("cycle {cycle}: ingest with node {victim} down")).await?;
        let restarted = s.broker.cluster()?.restart(victim).await?;
        println!(
            "[cluster-kill] cycle {cycle}: killed {} node {victim} (leader was {}, then {}), down {:?}, back: {restarted:?}",
            if kill_leader { "leader" } else { "follower" },
            placement.leader,
            after.leader,
            down.elapsed()
        );
    }
    s.finish(plan.scenario, plan.seed, u64::from(plan.cycles), false).await
}

/// A tmpfs mounted by this test, unmounted when dropped.
#[derive(Debug)]
struct TmpfsMount {
    path: std::path::PathBuf,
}

impl TmpfsMount {
    /// Mounts a tmpfs of `size_mb` MiB at `path`. Fails with a clear message
    /// when mounting is not permitted (the scenario needs root or
    /// CAP_SYS_ADMIN; it does not skip).
    fn mount(path: &std::path::Path, size_mb: u64) -> Result<Self> {
        std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(path)
            .output()
            .context("cannot run mount")?;
        if !out.status.success() {
            bail!(
                "the disk-full scenario must mount a small tmpfs for the hub's data directory and mounting is \
                 not permitted here (run as root or with CAP_SYS_ADMIN): `mount -t tmpfs {}` said: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(Self { path: path.to_owned() })
    }

    /// `mount -o remount,size=<size_mb>m`.
    fn resize(&self, size_mb: u64) -> Result<()> {
        let out = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size_mb}m")])
            .arg(&self.path)
            .output()
            .context("cannot run mount -o remount")?;
        ensure!(out.status.success(), "remount failed: {}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        // Lazy: a process still holding a file must not keep the mount alive.
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).output();
        // The hub's temporary directory could not remove the mount point
        // while it was mounted; finish its job (unless dirs are kept).
        if std::env::var("MPP_KEEP_TEST_DIRS").is_ok_and(|v| v == "1") {
            return;
        }
        if let Some(parent) = self
            .path
            .parent()
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("mpp-hub-")))
        {
            let _ = std::fs::remove_dir_all(parent);
        }
    }
}

/// Bytes available on the filesystem of `path`, from `df`.
fn available_bytes(path: &std::path::Path) -> Result<u64> {
    let out =
        std::process::Command::new("df").args(["-B1", "--output=avail"]).arg(path).output().context("df")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().nth(1).and_then(|l| l.trim().parse().ok()).ok_or_else(|| anyhow!("df said {text:?}"))
}

/// The durable consumer's ack floor (stream sequence), from consumer info.
async fn ack_floor(js: &async_nats::jetstream::Context, consumer: &str) -> Result<u64> {
    let stream = js.get_stream(mpp_tests::STREAM_NAME).await.context("get stream")?;
    let mut c: async_nats::jetstream::consumer::PullConsumer =
        stream.get_consumer(consumer).await.map_err(|e| anyhow!("get consumer {consumer}: {e}"))?;
    Ok(c.info().await.map_err(|e| anyhow!("consumer info: {e}"))?.ack_floor.stream_sequence)
}

/// (5) The hub's data directory on a small tmpfs, filled up under traffic:
/// ingest stops without acking what it did not commit (paused by the hub's
/// disk check, or halted by sled's ENOSPC when the fill beat the check),
/// readiness goes false, the hub does not crash; the store is intact; once
/// the tmpfs is remounted bigger ingest resumes (by itself after a pause;
/// after a restart after a halt, which is printed) and nothing is lost.
async fn disk_full(plan: Plan) -> Result<Counts> {
    let rng = Rng::new(plan.seed);
    let nats = NatsServer::start().await?;
    // The harness picks the data directory; mount the tmpfs there before
    // the hub's first real start.
    let mut hub = HubProcess::spawn(&nats.url())?;
    hub.kill9()?;
    let data_dir = hub.data_dir().to_owned();
    let _ = std::fs::remove_dir_all(&data_dir);
    let mount = TmpfsMount::mount(&data_dir, DISK_TMPFS_MB)?;
    // Readiness' own disk check, at a quarter of the tmpfs.
    hub.process().env("MPP_MIN_FREE_DISK_MB", &(DISK_TMPFS_MB / 4).to_string());
    hub.start()?;
    let mut s = Stack::start(Broker::Single(Box::new(nats)), hub, rng).await?;
    s.wait_delivered("before the disk fills").await?;

    // Phase 1: the disk runs low. The hub's disk check pauses ingest (no
    // pull, no ack), and ingest resumes by itself once space is freed.
    let addr = s.hub.http_addr();
    let low_filler = data_dir.join("filler-low");
    let low_fill = available_bytes(&data_dir)?.saturating_sub(DISK_PAUSE_FREE_MB * 1024 * 1024);
    std::fs::write(&low_filler, vec![0u8; usize::try_from(low_fill)?])?;
    let process = s.hub.process();
    wait_for("the hub to report disk_low", DISK_DEADLINE, || {
        let running = process.ensure_running();
        async move {
            running?;
            let head = mpp_tests::http::get(addr, "/api/v1/head").await?.json()?;
            Ok((head.pointer("/reason/kind").and_then(|k| k.as_str()) == Some("disk_low")).then_some(()))
        }
    })
    .await
    .context("the hub must turn not ready when its disk runs low")?;
    let paused_head = read_head(addr).await?;
    s.more_answers("calls while ingest is paused", OUTAGE_ANSWERS_MIN).await?;
    let js = s.broker.jetstream().await?;
    let stream_last = wait_for("the calls to reach the stream", DISK_DEADLINE, || {
        let js = js.clone();
        async move {
            let mut stream = js.get_stream(mpp_tests::STREAM_NAME).await?;
            let last = stream.info().await?.state.last_sequence;
            Ok((last >= paused_head.last_stream_seq + OUTAGE_ANSWERS_MIN).then_some(last))
        }
    })
    .await?;
    let head = read_head(addr).await?;
    let floor = ack_floor(&js, "mpp-hub").await?;
    println!(
        "[disk-full] disk low: ingest paused at stream seq {} (then {}), stream at {stream_last}, ack floor {floor}",
        paused_head.last_stream_seq, head.last_stream_seq
    );
    ensure!(head.last_stream_seq < stream_last, "ingest went on while the disk was low: {head:?}");
    ensure!(floor <= head.last_stream_seq, "the hub acked {floor} beyond its checkpoint {head:?}");
    std::fs::remove_file(&low_filler).context("removing the first filler")?;
    s.wait_delivered("after space was freed (ingest resumed by itself)").await?;

    // Phase 2: the disk fills at once, faster than the hub's check.
    // Fill the tmpfs but for a little, while the officers keep calling.
    let free = available_bytes(&data_dir)?;
    let filler = data_dir.join("filler");
    let fill = free.saturating_sub(DISK_LEFT_FREE_KB * 1024);
    std::fs::write(&filler, vec![0u8; usize::try_from(fill)?]).or_else(|e| {
        if e.raw_os_error() == Some(28) {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    let filled_at = Instant::now();
    println!("[disk-full] {free} bytes were free; filler of {fill} bytes written");
    let process = s.hub.process();
    let (status, reason) = wait_for("the hub to stop ingesting and turn not ready", DISK_DEADLINE, || {
        let running = process.ensure_running();
        async move {
            running?;
            let resp = mpp_tests::http::get(addr, "/readyz").await?;
            let head = mpp_tests::http::get(addr, "/api/v1/head").await?.json()?;
            let kind = head.pointer("/reason/kind").and_then(|k| k.as_str()).unwrap_or("").to_owned();
            // `disk_low`: ingest paused at the hub's own disk check before
            // sled met the full disk; `store_failed`: sled met it first.
            let halted = kind == "disk_low" || kind == "store_failed";
            Ok((resp.status != 200 && halted).then_some((resp.status, head)))
        }
    })
    .await
    .context("the hub must halt ingest on a full disk (and stay alive)")?;
    println!("[disk-full] after {:?}: /readyz {status}, head {reason}", filled_at.elapsed());
    let halted_head = read_head(addr).await?;
    let js = s.broker.jetstream().await?;
    let floor = ack_floor(&js, "mpp-hub").await?;
    ensure!(
        floor <= halted_head.last_stream_seq,
        "the hub acked stream seq {floor} but committed only up to {}",
        halted_head.last_stream_seq
    );
    // The service keeps accepting into its outbox; NATS keeps them.
    s.more_answers("calls while the hub's disk is full", OUTAGE_ANSWERS_MIN).await?;

    // Space returns.
    mount.resize(DISK_REGROWN_MB)?;
    let resumed_alone = wait_for("the hub to resume by itself", DISK_SELF_RESUME_DEADLINE, || async move {
        let head = read_head(addr).await?;
        Ok((head.last_stream_seq > halted_head.last_stream_seq).then_some(()))
    })
    .await
    .is_ok();
    if !resumed_alone {
        println!(
            "[disk-full] the hub did not resume by itself within {DISK_SELF_RESUME_DEADLINE:?} (a store failure \
             halts ingest until restart); checking the store, then restarting it"
        );
        s.hub.kill9()?;
        let audit = mpp_tests::store::audit_stopped_hub(&data_dir).context("the store after ENOSPC")?;
        ensure!(
            audit.head.last_stream_seq >= floor,
            "the durable checkpoint {} is behind the ack floor {floor}",
            audit.head.last_stream_seq
        );
        println!("[disk-full] store intact after the full disk: {:?}", audit.summary);
        drop(audit);
        s.hub.start()?;
        s.hub.wait_ready(READY_DEADLINE).await?;
    }
    s.more_answers("calls after space returned", OUTAGE_ANSWERS_MIN).await?;
    s.wait_delivered("after space returned").await?;
    std::fs::remove_file(&filler).context("removing the filler")?;
    let counts = s.finish(plan.scenario, plan.seed, 1, false).await?;
    println!("[disk-full] resumed {}", if resumed_alone { "by itself" } else { "after a restart" });
    drop(mount);
    Ok(counts)
}

/// (6) Slow consumer: the hub stopped while `plan.events` events (whole
/// journeys) are published onto the stream; then it starts and catches up,
/// its RSS sampled all along; its peak must stay under
/// [`CATCH_UP_RSS_BYTES_MAX`].
async fn slow_consumer(plan: Plan) -> Result<Counts> {
    let mut rng = Rng::new(plan.seed);
    // The stream's store on tmpfs when there is one: with `sync_interval:
    // always` on a disk, filling the backlog would measure NATS' fsyncs
    // (about 1,000 a second here), not the hub's catch-up.
    let shm = std::path::Path::new(BACKLOG_TMPFS_DIR);
    let store_parent = if shm.is_dir() {
        Some(
            tempfile::Builder::new()
                .prefix("mpp-nats-backlog-")
                .tempdir_in(shm)
                .context("tempdir in /dev/shm")?,
        )
    } else {
        None
    };
    let nats = match &store_parent {
        Some(d) => {
            let store = d.path().join("jetstream");
            println!("[slow-consumer] JetStream store on tmpfs: {}", store.display());
            NatsServer::start_with_config(
                move |slots| Ok(mpp_tests::nats::config_text(&slots.server_name, slots.port, &store)),
                None,
            )
            .await?
        }
        None => NatsServer::start().await?,
    };
    let js = nats.jetstream().await?;
    js.get_or_create_stream(mpp_edge::stream::stream_config())
        .await
        .map_err(|e| anyhow!("create stream: {e}"))?;
    let f = EventFactory::new("e2e-backlog", "izin", REGION);
    let mut accepted = Vec::with_capacity(usize::try_from(plan.events).unwrap_or(0));
    let mut in_flight = std::collections::VecDeque::new();
    let publish_started = Instant::now();
    let standard = f.standard(1);
    let mut messages = vec![standard];
    let mut journey = 0u64;
    while (accepted.len() as u64) < plan.events || !in_flight.is_empty() {
        if (accepted.len() + in_flight.len()) as u64 >= plan.events
            || in_flight.len() >= PUBLISH_WINDOW_MESSAGES
        {
            let (id, ack): (String, async_nats::jetstream::context::PublishAckFuture) =
                in_flight.pop_front().ok_or_else(|| anyhow!("nothing in flight"))?;
            let ack = ack.await.map_err(|e| anyhow!("PubAck: {e}"))?;
            ensure!(!ack.duplicate, "fresh event {id} flagged duplicate");
            accepted.push(id);
            if accepted.len() % 100_000 == 0 {
                println!(
                    "[slow-consumer] {} events published after {:?}",
                    accepted.len(),
                    publish_started.elapsed()
                );
            }
            continue;
        }
        if messages.is_empty() {
            let tn = tracking_number(1771, journey)?;
            messages = random_journey(&mut rng, &f, &tn, &format!("B-{journey}")).events;
            messages.reverse();
            journey += 1;
        }
        let Some(env) = messages.pop() else { continue };
        let ack = js
            .send_publish(
                subject(&env.agency_id, &env.service_id),
                async_nats::jetstream::message::PublishMessage::build()
                    .payload(encode(&env))
                    .message_id(&env.event_id),
            )
            .await
            .map_err(|e| anyhow!("publish: {e}"))?;
        in_flight.push_back((env.event_id, ack));
    }
    let last = stream_last_seq(&js).await?;
    println!(
        "[slow-consumer] {} events ({journey} journeys) published with the hub stopped in {:?}; stream last seq {last}",
        accepted.len(),
        publish_started.elapsed()
    );

    let mut hub = HubProcess::spawn(&nats.url())?;
    let pid = hub.process().pid().ok_or_else(|| anyhow!("hub has no pid"))?;
    let addr = hub.http_addr();
    let catch_up = Instant::now();
    let mut rss_max = 0u64;
    let mut every = tokio::time::interval(Duration::from_millis(RSS_SAMPLE_INTERVAL_MS));
    let mut last_print = Instant::now();
    // Peak RSS by tenth of the backlog ingested: bounded memory shows as a
    // curve that flattens, not one that follows the backlog.
    let mut curve = [0u64; 10];
    loop {
        every.tick().await;
        hub.process().ensure_running()?;
        let rss = mpp_tests::rss::rss_bytes(pid)?;
        rss_max = rss_max.max(rss);
        let head = read_head(addr).await.ok();
        let done = head.map_or(0, |h| h.last_stream_seq);
        let tenth = usize::try_from(done.saturating_mul(10) / last.max(1)).unwrap_or(9).min(9);
        curve[tenth] = curve[tenth].max(rss);
        if done >= last {
            break;
        }
        if let Some(reason) = ingest_halted(addr).await.ok().flatten() {
            bail!("hub ingest halted during catch-up: {reason}");
        }
        ensure!(
            catch_up.elapsed() < CATCH_UP_DEADLINE,
            "catch-up took over {CATCH_UP_DEADLINE:?}: head {head:?}"
        );
        if last_print.elapsed() > Duration::from_secs(30) {
            println!("[slow-consumer] catching up: head {head:?} of {last}, RSS max {} MiB", rss_max >> 20);
            last_print = Instant::now();
        }
    }
    let took = catch_up.elapsed();
    println!(
        "[slow-consumer] caught up on {last} messages in {took:?} ({:.0} msg/s); hub RSS max {} MiB (limit {} MiB)",
        last as f64 / took.as_secs_f64().max(1e-9),
        rss_max >> 20,
        CATCH_UP_RSS_BYTES_MAX >> 20
    );
    let curve_mib: Vec<u64> = curve.iter().map(|b| b >> 20).collect();
    println!("[slow-consumer] hub RSS peak (MiB) by tenth of the backlog ingested: {curve_mib:?}");
    ensure!(rss_max <= CATCH_UP_RSS_BYTES_MAX, "hub RSS peaked at {} MiB during catch-up", rss_max >> 20);
    // Whether the memory follows the work done or the store's size: the
    // same store, reopened by a fresh process with nothing to ingest.
    hub.restart().await?;
    hub.wait_ready(READY_DEADLINE).await?;
    let pid = hub.process().pid().ok_or_else(|| anyhow!("hub has no pid"))?;
    println!(
        "[slow-consumer] hub RSS after a restart on the caught-up store ({last} entries): {} MiB",
        mpp_tests::rss::rss_bytes(pid)? >> 20
    );
    hub.terminate().await?;
    check_stopped_hub(
        hub.data_dir(),
        &Run {
            scenario: plan.scenario.name(),
            seed: plan.seed,
            run: plan.events,
            accepted: &accepted,
            stream_last_seq: last,
            unanswered_max: 0,
        },
    )
}

#[test]
fn every_scenario_name_parses_back() {
    for s in Scenario::ALL {
        assert_eq!(Scenario::parse(s.name()), Some(s));
    }
    assert_eq!(Scenario::parse("hub-kil"), None);
}

/// Short CI versions: counts come from the environment when set (the
/// long runs use `mpp-faults`).
fn ci_plan(scenario: Scenario, cycles: u32, events: u64) -> Plan {
    Plan { scenario, seed: seed_from_env(), cycles, events }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fault_hub_kill9_at_random_moments_loses_nothing() -> Result<()> {
    let c = run(ci_plan(Scenario::HubKill, 10, 0)).await?;
    ensure!(c.lost == 0 && c.duplicated == 0 && c.found_once == c.accepted && c.run == 10, "{c}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fault_agency_kill9_with_outbox_loses_nothing() -> Result<()> {
    let c = run(ci_plan(Scenario::AgencyKill, 2, 0)).await?;
    ensure!(c.lost == 0 && c.duplicated == 0 && c.found_once == c.accepted, "{c}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fault_nats_stop_and_kill9_mid_traffic_loses_nothing() -> Result<()> {
    let c = run(ci_plan(Scenario::NatsRestart, 2, 0)).await?;
    ensure!(c.lost == 0 && c.duplicated == 0 && c.found_once == c.accepted, "{c}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fault_cluster_leader_then_follower_kill9_loses_nothing() -> Result<()> {
    let c = run(ci_plan(Scenario::ClusterKill, 2, 0)).await?;
    ensure!(c.lost == 0 && c.duplicated == 0 && c.found_once == c.accepted, "{c}");
    Ok(())
}

/// Needs root: it mounts a small tmpfs for the hub's data directory. As
/// another user it prints one line saying it was skipped and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fault_hub_disk_full_needs_root_halts_without_acking_and_resumes() -> Result<()> {
    let uid = std::process::Command::new("id").arg("-u").output().context("running id -u")?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        println!(
            "SKIPPED fault_hub_disk_full: mounting a tmpfs needs root; run the tests as root to include it"
        );
        return Ok(());
    }
    let c = run(ci_plan(Scenario::DiskFull, 1, 0)).await?;
    ensure!(c.lost == 0 && c.duplicated == 0 && c.found_once == c.accepted, "{c}");
    Ok(())
}

/// Events the CI version of the slow consumer publishes (the long run:
/// `mpp-faults --scenario slow-consumer --events 1000000`).
const CI_BACKLOG_EVENTS: u64 = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fault_slow_consumer_catches_up_with_bounded_memory() -> Result<()> {
    let c = run(ci_plan(Scenario::SlowConsumer, 0, CI_BACKLOG_EVENTS)).await?;
    ensure!(c.lost == 0 && c.duplicated == 0 && c.found_once == c.accepted, "{c}");
    ensure!(c.accepted as u64 == CI_BACKLOG_EVENTS, "{c}");
    Ok(())
}
