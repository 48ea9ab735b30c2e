//! `mpp-bench-peer`: the benchmark's peers, each on a PostgreSQL cluster it
//! creates and starts in a temporary directory; it prints one JSON line with
//! the result.
//!
//! - `--mode cqrs` (the default) runs MPP Hub's journey workload (a file of
//!   length-delimited `mpp.v1.Envelope`s written by `mpp-bench`) as commands
//!   through cqrs-es 0.5 with the postgres-es 0.5 event store and a
//!   postgres-es case view;
//! - `--mode pg-batch` consumes the hub's JetStream stream in the hub's
//!   batches into PostgreSQL, one transaction per batch (see [`pg_batch`]).
//!
//! In cqrs mode the aggregate is one case (id = tracking number) holding its
//! applications' states, decided by the hub core's own
//! [`mpp_core::state::next_state`]; service standards are a second
//! aggregate per service (a version must rise). Each case's commands run in
//! order on one of `--tasks` tasks.
//!
//! Without PostgreSQL (`initdb` and `pg_ctl` on PATH or under
//! `/usr/lib/postgresql/*/bin`) it prints `{"status":"skipped",...}` and
//! exits 0. As root, the cluster runs as the `postgres` user.

#![forbid(unsafe_code)]

mod pg_batch;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::GenericQuery;
use cqrs_es::{Aggregate, AggregateError, DomainEvent, EventEnvelope, View};
use mpp_core::state::{next_state, AppState};
use mpp_core::EventKind;
use mpp_proto::v1::envelope::Body;
use mpp_proto::v1::Envelope;
use postgres_es::{postgres_cqrs, PostgresViewRepository};
use prost::Message as _;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;

/// Flags.
#[derive(Debug, Parser)]
#[command(
    name = "mpp-bench-peer",
    version,
    about = "MPP Hub's journey workload through cqrs-es + postgres-es on a local PostgreSQL"
)]
struct Cli {
    /// Which peer: cqrs (cqrs-es + postgres-es over a workload file) or
    /// pg-batch (a batch consumer of the hub's stream).
    #[arg(long, value_enum, default_value_t = Mode::Cqrs)]
    mode: Mode,
    /// cqrs: the workload, length-delimited mpp.v1.Envelope messages (mpp-bench writes it).
    #[arg(long, required_if_eq("mode", "cqrs"))]
    workload: Option<PathBuf>,
    /// pg-batch: the NATS server holding the stream.
    #[arg(long, required_if_eq("mode", "pg-batch"))]
    nats_url: Option<String>,
    /// pg-batch: the stream.
    #[arg(long, default_value = "MPP_EVENTS")]
    stream: String,
    /// pg-batch: the durable consumer it creates (and deletes at the end).
    #[arg(long, default_value = "bench-pg-batch-peer")]
    consumer: String,
    /// pg-batch: messages to commit (stream sequences 1..=N).
    #[arg(long, required_if_eq("mode", "pg-batch"))]
    messages: Option<u64>,
    /// pg-batch: most messages per batch and transaction (the hub's --batch-max).
    #[arg(long, default_value_t = 1000)]
    batch_max: usize,
    /// pg-batch: a trusted registrar public key, 64 hex digits (repeatable).
    #[arg(long)]
    registrar_key: Vec<String>,
    /// Where the PostgreSQL cluster lives while the peer runs (default: a temp dir).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Concurrent tasks (and pool connections).
    #[arg(long, default_value_t = 16)]
    tasks: usize,
}

/// The peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    /// cqrs-es + postgres-es.
    Cqrs,
    /// The PostgreSQL batch consumer.
    PgBatch,
}

/// Most messages per pg-batch batch (the hub's ledger takes at most 10,000).
const BATCH_MAX: usize = 10_000;

/// Most workload bytes read.
const WORKLOAD_BYTES_MAX: u64 = 4 << 30;

/// A command: one envelope of the workload.
#[derive(Debug, Clone)]
struct Cmd {
    kind: EventKind,
    application_id: String,
    service: String,
    version: u32,
    payload: Vec<u8>,
}

/// What the aggregates record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum CaseEvent {
    /// A case was opened.
    Opened { payload_hex: String },
    /// An application moved to a state.
    Application {
        application_id: String,
        service: String,
        kind: String,
        state: AppState,
        payload_hex: String,
    },
    /// A service standard was published.
    Standard { version: u32, payload_hex: String },
    /// The citizen's sealed personal data was stored, or its key erased.
    PersonalData { kind: String, payload_hex: String },
}

impl DomainEvent for CaseEvent {
    fn event_type(&self) -> String {
        match self {
            CaseEvent::Opened { .. } => "case_opened".to_owned(),
            CaseEvent::Application { kind, .. } => kind.clone(),
            CaseEvent::Standard { .. } => "service_standard_published".to_owned(),
            CaseEvent::PersonalData { kind, .. } => kind.clone(),
        }
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

/// Why a command was refused.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("case already open")]
    AlreadyOpen,
    #[error("case never opened")]
    UnknownCase,
    #[error("illegal transition")]
    Illegal,
    #[error("stale standard version")]
    Stale,
}

/// A case (or, for standards, one service's catalogue entry).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Case {
    opened: bool,
    applications: BTreeMap<String, AppState>,
    standard_version: u32,
}

impl Aggregate for Case {
    const TYPE: &'static str = "case";
    type Command = Cmd;
    type Event = CaseEvent;
    type Error = Refused;
    type Services = ();

    async fn handle(&mut self, cmd: Cmd, _: &(), sink: &EventSink<Self>) -> Result<(), Refused> {
        let payload_hex = hex::encode(&cmd.payload);
        let event = match cmd.kind {
            EventKind::CaseOpened if self.opened => return Err(Refused::AlreadyOpen),
            EventKind::CaseOpened => CaseEvent::Opened { payload_hex },
            EventKind::ServiceStandardPublished if cmd.version <= self.standard_version => {
                return Err(Refused::Stale)
            }
            EventKind::ServiceStandardPublished => CaseEvent::Standard { version: cmd.version, payload_hex },
            EventKind::PersonalDataSealed
            | EventKind::PersonalDataErased
            | EventKind::PinReissued
            | EventKind::PersonalDataRead
                if !self.opened =>
            {
                return Err(Refused::UnknownCase)
            }
            kind @ (EventKind::PersonalDataSealed
            | EventKind::PersonalDataErased
            | EventKind::PinReissued
            | EventKind::PersonalDataRead) => {
                CaseEvent::PersonalData { kind: kind.as_str().to_owned(), payload_hex }
            }
            kind => {
                if !self.opened {
                    return Err(Refused::UnknownCase);
                }
                let from = self.applications.get(&cmd.application_id).copied();
                let state = next_state(from, kind).ok_or(Refused::Illegal)?;
                CaseEvent::Application {
                    application_id: cmd.application_id,
                    service: cmd.service,
                    kind: kind.as_str().to_owned(),
                    state,
                    payload_hex,
                }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: CaseEvent) {
        match event {
            CaseEvent::Opened { .. } => self.opened = true,
            CaseEvent::Application { application_id, state, .. } => {
                self.applications.insert(application_id, state);
            }
            CaseEvent::Standard { version, .. } => self.standard_version = version,
            CaseEvent::PersonalData { .. } => {}
        }
    }
}

/// The case view (the hub's projection's counterpart).
#[derive(Debug, Default, Serialize, Deserialize)]
struct CaseView {
    applications: BTreeMap<String, (String, AppState, usize)>,
    last_sequence: usize,
}

impl View<Case> for CaseView {
    fn update(&mut self, event: &EventEnvelope<Case>) {
        self.last_sequence = event.sequence;
        if let CaseEvent::Application { application_id, service, state, .. } = &event.payload {
            let entry =
                self.applications.entry(application_id.clone()).or_insert((service.clone(), *state, 0));
            entry.1 = *state;
            entry.2 += 1;
        }
    }
}

fn kind_of(body: &Body) -> EventKind {
    match body {
        Body::CaseOpened(_) => EventKind::CaseOpened,
        Body::ApplicationFiled(_) => EventKind::ApplicationFiled,
        Body::DocumentsRequested(_) => EventKind::DocumentsRequested,
        Body::DocumentsReceived(_) => EventKind::DocumentsReceived,
        Body::FeeAssessed(_) => EventKind::FeeAssessed,
        Body::PaymentReceived(_) => EventKind::PaymentReceived,
        Body::AppointmentScheduled(_) => EventKind::AppointmentScheduled,
        Body::ReviewStarted(_) => EventKind::ReviewStarted,
        Body::Issued(_) => EventKind::Issued,
        Body::Rejected(_) => EventKind::Rejected,
        Body::Withdrawn(_) => EventKind::Withdrawn,
        Body::Collected(_) => EventKind::Collected,
        Body::ServiceStandardPublished(_) => EventKind::ServiceStandardPublished,
        Body::PersonalDataSealed(_) => EventKind::PersonalDataSealed,
        Body::PersonalDataErased(_) => EventKind::PersonalDataErased,
        Body::PinReissued(_) => EventKind::PinReissued,
        Body::PersonalDataRead(_) => EventKind::PersonalDataRead,
    }
}

/// Reads the workload: (aggregate id, command) in order.
fn read_workload(path: &Path) -> Result<Vec<(String, Cmd)>> {
    let len = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?.len();
    if len > WORKLOAD_BYTES_MAX {
        bail!("workload of {len} bytes, more than {WORKLOAD_BYTES_MAX}");
    }
    let bytes = std::fs::read(path)?;
    let mut buf = bytes.as_slice();
    let mut out = Vec::new();
    while !buf.is_empty() {
        let env = Envelope::decode_length_delimited(&mut buf).context("workload envelope")?;
        let Some(body) = &env.body else { bail!("an envelope without a body") };
        let kind = kind_of(body);
        let version = match body {
            Body::ServiceStandardPublished(s) => s.version,
            _ => 0,
        };
        let id = if kind == EventKind::ServiceStandardPublished {
            format!("standard:{}/{}", env.agency_id, env.service_id)
        } else {
            env.case_id.clone()
        };
        let payload = env.encode_to_vec();
        out.push((
            id,
            Cmd {
                kind,
                application_id: env.application_id,
                service: format!("{}/{}", env.agency_id, env.service_id),
                version,
                payload,
            },
        ));
    }
    Ok(out)
}

/// PostgreSQL's programs.
struct PgBin {
    initdb: PathBuf,
    pg_ctl: PathBuf,
}

fn find_pg() -> Option<PgBin> {
    let on_path = |name: &str| {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    };
    if let (Some(initdb), Some(pg_ctl)) = (on_path("initdb"), on_path("pg_ctl")) {
        return Some(PgBin { initdb, pg_ctl });
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
        .collect();
    dirs.sort();
    dirs.pop().map(|d| PgBin { initdb: d.join("initdb"), pg_ctl: d.join("pg_ctl") })
}

/// The uid and gid of `postgres` from /etc/passwd, when running as root.
fn run_as() -> Result<Option<(u32, u32)>> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|r| r.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u32>().ok());
    if uid != Some(0) {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .ok_or_else(|| anyhow!("running as root and there is no postgres user to run PostgreSQL as"))?;
    let f: Vec<&str> = line.split(':').collect();
    let uid = f.get(2).and_then(|v| v.parse().ok()).ok_or_else(|| anyhow!("bad passwd line"))?;
    let gid = f.get(3).and_then(|v| v.parse().ok()).ok_or_else(|| anyhow!("bad passwd line"))?;
    Ok(Some((uid, gid)))
}

/// A running cluster, stopped on drop.
struct Cluster {
    pg_ctl: PathBuf,
    data: PathBuf,
    user: Option<(u32, u32)>,
    port: u16,
}

impl Cluster {
    fn command(&self, exe: &Path) -> Command {
        let mut c = Command::new(exe);
        if let Some((uid, gid)) = self.user {
            c.uid(uid).gid(gid);
        }
        c
    }

    fn start(bin: &PgBin, dir: &Path) -> Result<Cluster> {
        let user = run_as()?;
        let data = dir.join("pgdata");
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let cluster = Cluster { pg_ctl: bin.pg_ctl.clone(), data: data.clone(), user, port };
        let out = cluster
            .command(&bin.initdb)
            .arg("-D")
            .arg(&data)
            .args(["-U", "bench", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .context("initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let opts =
            // TCP on 127.0.0.1 only: clients connect there, and a Unix
            // socket's path under a deep work directory can pass its
            // 107-byte limit (PostgreSQL then refuses to start).
            format!("-p {port} -c unix_socket_directories='' -c listen_addresses=127.0.0.1 -c max_connections=100");
        let out = cluster
            .command(&bin.pg_ctl)
            .arg("-D")
            .arg(&data)
            .args(["-o", &opts, "-l"])
            .arg(dir.join("postgres.log"))
            .args(["-w", "-t", "60", "start"])
            .output()
            .context("pg_ctl start")?;
        if !out.status.success() {
            bail!(
                "pg_ctl start failed: {}{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default()
            );
        }
        Ok(cluster)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ =
            self.command(&self.pg_ctl).arg("-D").arg(&self.data).args(["-m", "fast", "-w", "stop"]).output();
    }
}

const SCHEMA: &str = "
CREATE TABLE events (
    aggregate_type text NOT NULL, aggregate_id text NOT NULL,
    sequence bigint CHECK (sequence >= 0) NOT NULL,
    event_type text NOT NULL, event_version text NOT NULL,
    payload json NOT NULL, metadata json NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence));
CREATE TABLE snapshots (
    aggregate_type text NOT NULL, aggregate_id text NOT NULL,
    last_sequence bigint CHECK (last_sequence >= 0) NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload json NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence));
CREATE TABLE case_view (
    view_id text NOT NULL, version bigint CHECK (version >= 0) NOT NULL,
    payload json NOT NULL, PRIMARY KEY (view_id));
";

fn skipped(reason: &str) {
    println!("{}", serde_json::json!({ "status": "skipped", "reason": reason }));
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let Some(bin) = find_pg() else {
        skipped(
            "PostgreSQL is not installed (no initdb and pg_ctl on PATH or under /usr/lib/postgresql/*/bin)",
        );
        return Ok(());
    };
    let tmp = match &cli.work_dir {
        Some(d) => tempfile_in(d)?,
        None => tempfile_in(&std::env::temp_dir())?,
    };
    let result = match cli.mode {
        Mode::Cqrs => run_cqrs(&cli, &bin, &tmp).await,
        Mode::PgBatch => run_pg_batch(&cli, &bin, &tmp).await,
    };
    let _ = std::fs::remove_dir_all(&tmp);
    println!("{}", result?);
    Ok(())
}

/// `--mode pg-batch`.
async fn run_pg_batch(cli: &Cli, bin: &PgBin, tmp: &Path) -> Result<serde_json::Value> {
    let messages = cli.messages.ok_or_else(|| anyhow!("--messages is required"))?;
    if cli.batch_max == 0 || cli.batch_max > BATCH_MAX {
        bail!("--batch-max must be 1..={BATCH_MAX}");
    }
    let registrar_keys = cli
        .registrar_key
        .iter()
        .map(|k| {
            let b = hex::decode(k.trim()).map_err(|_| anyhow!("--registrar-key is not hex"))?;
            <[u8; 32]>::try_from(b.as_slice()).map_err(|_| anyhow!("--registrar-key is not 32 bytes"))
        })
        .collect::<Result<Vec<_>>>()?;
    let cluster = Cluster::start(bin, tmp)?;
    let url = format!("postgres://bench@127.0.0.1:{}/postgres", cluster.port);
    let version = {
        use sqlx::Connection as _;
        let mut c = sqlx::PgConnection::connect(&url).await.context("connecting")?;
        let v: String = sqlx::query_scalar("SELECT version()").fetch_one(&mut c).await?;
        let sync: String = sqlx::query_scalar("SHOW synchronous_commit").fetch_one(&mut c).await?;
        let fsync: String = sqlx::query_scalar("SHOW fsync").fetch_one(&mut c).await?;
        if sync != "on" || fsync != "on" {
            bail!("synchronous_commit {sync}, fsync {fsync}: both must be on");
        }
        c.close().await.ok();
        v
    };
    let source = pg_batch::Source {
        nats_url: cli.nats_url.clone().ok_or_else(|| anyhow!("--nats-url is required"))?,
        stream: cli.stream.clone(),
        consumer: cli.consumer.clone(),
        messages,
        batch_max: cli.batch_max,
        registrar_keys,
    };
    let o = pg_batch::run(&url, source).await?;
    drop(cluster);
    Ok(serde_json::json!({
        "status": "ok",
        "mode": "pg-batch",
        "events": o.events,
        "secs": o.secs,
        "events_per_s": o.events as f64 / o.secs,
        "accepted": o.accepted,
        "rejected": o.rejected,
        "duplicates": o.duplicates,
        "batches": o.batches,
        "head_hash": o.head_hash,
        "last_stream_seq": o.last_stream_seq,
        "signatures_verified": o.signatures_verified,
        "phase_secs": o.phase_secs,
        "postgres": version.split(" on ").next().unwrap_or(&version),
    }))
}

/// `--mode cqrs`.
async fn run_cqrs(cli: &Cli, bin: &PgBin, tmp: &Path) -> Result<serde_json::Value> {
    let workload = read_workload(cli.workload.as_deref().ok_or_else(|| anyhow!("--workload is required"))?)?;
    let cluster = Cluster::start(bin, tmp)?;
    let url = format!("postgres://bench@127.0.0.1:{}/postgres", cluster.port);
    let tasks = cli.tasks.max(1);
    let pool =
        PgPoolOptions::new().max_connections(tasks as u32).connect(&url).await.context("connecting")?;
    let version: String = sqlx::query_scalar("SELECT version()").fetch_one(&pool).await?;
    sqlx::raw_sql(SCHEMA).execute(&pool).await.context("schema")?;
    let view = Arc::new(PostgresViewRepository::<CaseView, Case>::new("case_view", pool.clone()));
    let query = GenericQuery::new(view);
    let cqrs = Arc::new(postgres_cqrs(pool.clone(), vec![Box::new(query)], ()));

    // Standards first, then every case's commands in order on one task.
    let mut queues: Vec<Vec<(String, Cmd)>> = vec![Vec::new(); tasks];
    let mut standards = Vec::new();
    for (id, cmd) in workload {
        if cmd.kind == EventKind::ServiceStandardPublished {
            standards.push((id, cmd));
        } else {
            let h = id.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
            queues[(h % tasks as u64) as usize].push((id, cmd));
        }
    }
    let refused = Arc::new(AtomicU64::new(0));
    let total = standards.len() + queues.iter().map(Vec::len).sum::<usize>();
    let started = Instant::now();
    for (id, cmd) in standards {
        match cqrs.execute(&id, cmd).await {
            Ok(()) => {}
            Err(AggregateError::UserError(_)) => {
                refused.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => bail!("standard {id}: {e}"),
        }
    }
    let mut handles = Vec::new();
    for queue in queues {
        let (cqrs, refused) = (cqrs.clone(), refused.clone());
        handles.push(tokio::spawn(async move {
            for (id, cmd) in queue {
                match cqrs.execute(&id, cmd).await {
                    Ok(()) => {}
                    Err(AggregateError::UserError(_)) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => return Err(anyhow!("case {id}: {e}")),
                }
            }
            Ok(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    pool.close().await;
    drop(cluster);
    Ok(serde_json::json!({
        "status": "ok",
        "mode": "cqrs",
        "events": total,
        "refused": refused.load(Ordering::Relaxed),
        "secs": secs,
        "events_per_s": total as f64 / secs,
        "tasks": tasks,
        "postgres": version.split(" on ").next().unwrap_or(&version),
    }))
}

/// A fresh directory under `parent`.
fn tempfile_in(parent: &Path) -> Result<PathBuf> {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let dir = parent.join(format!("mpp-bench-peer-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
