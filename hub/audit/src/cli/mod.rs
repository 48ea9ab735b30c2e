//! `mpp-hub audit …`: the auditor's command-line tools.
//!
//! Every subcommand works offline, on a **copy** of a hub's data directory
//! (or the directory of a stopped hub): sled 0.34 cannot open a directory
//! read-only and locks it, so pointing these tools at a running hub's
//! directory fails with a lock error after
//! [`mpp_edge::sled_open::OPEN_LOCK_WAIT_MS_MAX`]. Opening a copy may let sled finish
//! its crash recovery in the copy; the log itself is never written.
//! `verify`, `rebuild`, `case-at` and `sla-report` also read an export
//! (`--export FILE`), which is what an auditor without access to the hub
//! holds; `check-proof` needs nothing but a proof bundle and the public key.
//!
//! | subcommand    | does |
//! |---------------|------|
//! | `verify`      | recomputes the hash chain and the Merkle tree, checks every signed checkpoint, names the first bad sequence ([`verify`]) |
//! | `export`      | writes the log and the checkpoints as self-describing JSON lines ([`export`], format in docs/AUDIT.md) |
//! | `rebuild`     | folds the log from scratch and diffs the projection against the live one ([`rebuild`]) |
//! | `case-at`     | one case as of a log sequence or an instant ([`case_at`]) |
//! | `prove`       | an inclusion proof bundle for one event ([`prove`]) |
//! | `check-proof` | verifies a bundle with the public key alone ([`prove`]) |
//! | `sla-report`  | SLA compliance per MPP, agency and service for a filing period ([`sla_report`]) |
//!
//! `verify`, `export` and `prove` also run remotely against a hub's audit
//! gRPC service (`--hub-grpc URL --auditor-token T`, [`remote`]), checking
//! everything the hub answers the same way.
//! Long runs print a progress line (entries, entries/s) to stderr about once
//! a second ([`Progress`]). Results go to stdout; a failed check exits with
//! status 1 ([`EXIT_FAILED`]), a usage or IO error with status 2.

pub mod admin;
pub mod bootstrap;
pub mod case_at;
pub mod export;
pub mod fixture;
pub mod prove;
pub mod rebuild;
pub mod remote;
pub mod report;
pub mod sla_report;
pub mod verify;
pub mod window;
pub mod witnessed;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use mpp_core::calendar::CalendarSet;
use mpp_core::checkpoint::{KeyId, SignedCheckpoint, SIGNATURE_BYTES};
use mpp_core::Date;
use mpp_store::SledStore;

/// Exit status of a check that ran and found a problem (a broken chain, a
/// differing projection, a proof that does not verify).
pub const EXIT_FAILED: u8 = 1;

/// Exit status of a usage, IO or store error (nothing was checked).
pub const EXIT_ERROR: u8 = 2;

/// sled page cache of the auditor's store handle, in bytes (16 MiB): the
/// tools stream the log once, so a large cache buys nothing and bounds
/// memory.
pub const AUDIT_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// Interval between progress lines, in milliseconds.
pub const PROGRESS_INTERVAL_MS: u64 = 1_000;

/// Largest public key file read, in bytes.
pub const PUBLIC_KEY_FILE_BYTES_MAX: u64 = 4096;

/// `mpp-hub audit`: verify, export, rebuild and query the log offline.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// The audit subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain and the Merkle tree of a store or an export,
    /// check every signed checkpoint, and name the first bad sequence.
    Verify(VerifyArgs),
    /// Write the log and its signed checkpoints as JSON lines (one
    /// self-describing entry per line; format in docs/AUDIT.md).
    Export(ExportArgs),
    /// Recompute every projection from the log (of a store, or of an export)
    /// and diff it against the live projection: must be identical.
    Rebuild(RebuildArgs),
    /// Print one case as it stood at a log sequence or an instant.
    CaseAt(CaseAtArgs),
    /// Print an inclusion proof bundle for one event, checkable with the
    /// hub's public key alone (`audit check-proof`).
    Prove(ProveArgs),
    /// Verify a proof bundle from `audit prove` with the public key alone.
    CheckProof(CheckProofArgs),
    /// SLA compliance per MPP (region), agency and service for applications
    /// filed in a period.
    SlaReport(SlaReportArgs),
    /// Test fixture: write a generated, realistic log of N entries into a
    /// new data directory (every event type, rejections, duplicates).
    #[command(hide = true)]
    GenFixture(GenFixtureArgs),
}

/// Remote mode: the hub's audit gRPC service instead of a data directory.
#[derive(Debug, Clone, Args)]
pub struct RemoteArgs {
    /// The hub's gRPC endpoint, e.g. http://hub.example:50051 (remote mode,
    /// instead of --data-dir).
    #[arg(long, env = "MPP_HUB_GRPC")]
    pub hub_grpc: Option<String>,
    /// The auditor's bearer token for the hub's audit service.
    #[arg(long, env = "MPP_AUDITOR_TOKEN", requires = "hub_grpc")]
    pub auditor_token: Option<String>,
    /// PEM file of the CA that signed the hub's TLS certificate; with it
    /// --hub-grpc must be an https:// URL (see docs/TLS.md).
    #[arg(long, env = "MPP_TLS_CA_FILE", requires = "hub_grpc")]
    pub tls_ca_file: Option<PathBuf>,
}

/// Flags of `mpp-hub audit verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// A COPY of a hub's data directory (or a stopped hub's): sled cannot
    /// open a directory read-only and locks it.
    #[arg(long, env = "MPP_VERIFY_DATA_DIR", required_unless_present_any = ["export", "hub_grpc"], conflicts_with = "export")]
    pub data_dir: Option<PathBuf>,
    /// An export file (`audit export`) instead of a data directory.
    #[arg(long, env = "MPP_VERIFY_EXPORT")]
    pub export: Option<PathBuf>,
    /// The hub's Ed25519 public key (32 raw bytes, 64 hex digits, base64, or
    /// a PEM/DER SubjectPublicKeyInfo). Without it, checkpoints are compared
    /// with the log but their signatures are not checked.
    #[arg(long, env = "MPP_PUBLIC_KEY_FILE")]
    pub public_key: Option<PathBuf>,
    /// Re-open the store every this many entries (sled keeps every log
    /// block it read in memory until the store is closed).
    #[arg(long, hide = true, default_value_t = verify::REOPEN_EVERY_ENTRIES,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub reopen_every: u64,
    /// Remote mode.
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Witnesses: --witness-key, --witness-quorum, --cosigned-checkpoint.
    #[command(flatten)]
    pub witnesses: witnessed::WitnessPolicyArgs,
}

/// Flags of `mpp-hub audit export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// A COPY of a hub's data directory (or a stopped hub's).
    #[arg(long, env = "MPP_EXPORT_DATA_DIR", required_unless_present = "hub_grpc")]
    pub data_dir: Option<PathBuf>,
    /// Where to write the export (`-` for stdout). Refuses to overwrite.
    #[arg(long, env = "MPP_EXPORT_OUT")]
    pub out: PathBuf,
    /// Leave out the informational `envelope` field (the payload decoded as
    /// JSON): about half the size.
    #[arg(long, env = "MPP_EXPORT_NO_DECODE")]
    pub no_decode: bool,
    /// Remote mode.
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// `--registrar-key-file`: the registrar keys a replay judges registry
/// statements with (the hub's own `--registrar-key-file`). A log holding
/// accepted registry statements replays only with them.
#[derive(Debug, Clone, Default, Args)]
pub struct RegistrarKeyArgs {
    /// File of the province registrar's public key(s), one per line as 64
    /// hex digits: the file the hub runs with. (Its own variable, so that
    /// a replay never picks up the environment of a hub's `serve`.)
    #[arg(long, env = "MPP_AUDIT_REGISTRAR_KEY_FILE")]
    pub registrar_key_file: Option<PathBuf>,
}

impl RegistrarKeyArgs {
    /// The keys to judge with (none without the flag).
    pub fn trust(&self) -> anyhow::Result<mpp_ledger::trust::Trust> {
        match &self.registrar_key_file {
            Some(path) => Ok(mpp_ledger::trust::Trust::from_key_file(path)?),
            None => Ok(mpp_ledger::trust::Trust::default()),
        }
    }
}

/// Flags of `mpp-hub audit rebuild`.
#[derive(Debug, Clone, Args)]
pub struct RebuildArgs {
    /// A COPY of a hub's data directory: its live projection is the one
    /// compared; without --export its log is also the one replayed.
    #[arg(long, env = "MPP_REBUILD_DATA_DIR", required_unless_present = "export")]
    pub data_dir: Option<PathBuf>,
    /// Replay this export instead of the store's log. With --data-dir the
    /// result is diffed against that store's live projection; alone, the
    /// replay is checked entry by entry and the projection's digest printed.
    #[arg(long, env = "MPP_REBUILD_EXPORT")]
    pub export: Option<PathBuf>,
    /// Print the rebuilt projection's digest and counts as JSON.
    #[arg(long, env = "MPP_REBUILD_JSON")]
    pub json: bool,
    /// The registrar keys of the replay.
    #[command(flatten)]
    pub registrar: RegistrarKeyArgs,
}

/// Flags of `mpp-hub audit case-at`.
#[derive(Debug, Clone, Args)]
pub struct CaseAtArgs {
    /// A COPY of a hub's data directory.
    #[arg(long, env = "MPP_CASE_AT_DATA_DIR", required_unless_present = "export", conflicts_with = "export")]
    pub data_dir: Option<PathBuf>,
    /// An export file instead of a data directory.
    #[arg(long, env = "MPP_CASE_AT_EXPORT")]
    pub export: Option<PathBuf>,
    /// The tracking number (RRRR-SSSSSSSSSS-C).
    #[arg(long = "case", env = "MPP_CASE_AT_CASE")]
    pub case: String,
    /// As of this log sequence (entries 1..=N).
    #[arg(long, env = "MPP_CASE_AT_SEQ", required_unless_present = "time", conflicts_with = "time")]
    pub seq: Option<u64>,
    /// As of this instant: RFC 3339 (2025-06-15T08:00:00+07:00) or Unix ms.
    /// Covers the log up to the last entry recorded at or before it.
    #[arg(long, env = "MPP_CASE_AT_TIME")]
    pub time: Option<String>,
    /// Region calendars (`<dir>/<region>/<year>.txt`) for the SLA clocks.
    #[arg(long, env = "MPP_CALENDARS_DIR")]
    pub calendars_dir: Option<PathBuf>,
}

/// Flags of `mpp-hub audit prove`.
#[derive(Debug, Clone, Args)]
pub struct ProveArgs {
    /// A COPY of a hub's data directory.
    #[arg(long, env = "MPP_PROVE_DATA_DIR", required_unless_present = "hub_grpc")]
    pub data_dir: Option<PathBuf>,
    /// The event id (UUIDv7) whose accepting entry to prove.
    #[arg(long, env = "MPP_PROVE_EVENT_ID", required_unless_present = "seq", conflicts_with = "seq")]
    pub event_id: Option<String>,
    /// Or the log sequence of any entry (rejected ones too).
    #[arg(long, env = "MPP_PROVE_SEQ")]
    pub seq: Option<u64>,
    /// Prove inclusion in the tree of this size; by default the size of the
    /// latest signed checkpoint (or the head when none covers the entry).
    #[arg(long, env = "MPP_PROVE_TREE_SIZE")]
    pub tree_size: Option<u64>,
    /// Write the bundle here instead of stdout.
    #[arg(long, env = "MPP_PROVE_OUT")]
    pub out: Option<PathBuf>,
    /// Remote mode.
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// Flags of `mpp-hub audit check-proof`.
#[derive(Debug, Clone, Args)]
pub struct CheckProofArgs {
    /// The proof bundle (`audit prove`).
    #[arg(long, env = "MPP_CHECK_PROOF_BUNDLE")]
    pub bundle: PathBuf,
    /// The hub's Ed25519 public key (see `audit verify --help`).
    #[arg(long, env = "MPP_PUBLIC_KEY_FILE")]
    pub public_key: PathBuf,
    /// Witnesses: with --witness-key, the bundle's tree must also be
    /// cosigned by the quorum (its checkpoint's note, or
    /// --cosigned-checkpoint).
    #[command(flatten)]
    pub witnesses: witnessed::WitnessPolicyArgs,
}

/// Flags of `mpp-hub audit sla-report`.
#[derive(Debug, Clone, Args)]
pub struct SlaReportArgs {
    /// A COPY of a hub's data directory (its live projection is reported).
    #[arg(
        long,
        env = "MPP_SLA_REPORT_DATA_DIR",
        required_unless_present = "export",
        conflicts_with = "export"
    )]
    pub data_dir: Option<PathBuf>,
    /// An export file: the projection is rebuilt from it first.
    #[arg(long, env = "MPP_SLA_REPORT_EXPORT")]
    pub export: Option<PathBuf>,
    /// First filing date of the period (YYYY-MM-DD, the MPP's local date).
    #[arg(long, env = "MPP_SLA_REPORT_FROM")]
    pub from: String,
    /// Last filing date of the period (YYYY-MM-DD, inclusive).
    #[arg(long, env = "MPP_SLA_REPORT_TO")]
    pub to: String,
    /// Clocks as of this instant (RFC 3339 or Unix ms); by default the time
    /// of record of the last log entry, so the report is a function of the
    /// log alone. Must not be before the last entry.
    #[arg(long, env = "MPP_SLA_REPORT_AS_OF")]
    pub as_of: Option<String>,
    /// Region calendars (`<dir>/<region>/<year>.txt`). Without it only
    /// weekends are days off, and the report says so.
    #[arg(long, env = "MPP_CALENDARS_DIR")]
    pub calendars_dir: Option<PathBuf>,
    /// JSON instead of a table.
    #[arg(long, env = "MPP_SLA_REPORT_JSON")]
    pub json: bool,
    /// The registrar keys of the replay (with --export).
    #[command(flatten)]
    pub registrar: RegistrarKeyArgs,
}

/// Flags of the hidden `mpp-hub audit gen-fixture`.
#[derive(Debug, Clone, Args)]
pub struct GenFixtureArgs {
    /// Entries to write.
    #[arg(long, env = "MPP_GEN_FIXTURE_ENTRIES")]
    pub entries: u64,
    /// A new (empty or missing) data directory.
    #[arg(long, env = "MPP_GEN_FIXTURE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Seed of the generator.
    #[arg(long, env = "MPP_GEN_FIXTURE_SEED", default_value_t = 1)]
    pub seed: u64,
    /// Sign a checkpoint every this many entries and at the end (0: none)
    /// with a key derived from the seed.
    #[arg(long, env = "MPP_GEN_FIXTURE_CHECKPOINT_EVERY", default_value_t = 0, requires = "public_key_out")]
    pub checkpoint_every: u64,
    /// Where to write that key's public key (hex).
    #[arg(long, env = "MPP_GEN_FIXTURE_PUBLIC_KEY_OUT")]
    pub public_key_out: Option<PathBuf>,
}

/// Runs an audit subcommand; returns the process exit status. The offline
/// subcommands block the calling thread (they are the whole process).
pub async fn run(args: AuditArgs) -> anyhow::Result<u8> {
    let mut out = std::io::stdout();
    let remote = |r: &RemoteArgs| r.hub_grpc.is_some();
    match args.command {
        AuditCommand::Verify(a) if remote(&a.remote) => remote::run_verify(&a, &mut out).await,
        AuditCommand::Verify(a) => verify::run(&a, &mut out),
        AuditCommand::Export(a) if remote(&a.remote) => remote::run_export(&a).await,
        AuditCommand::Export(a) => export::run(&a),
        AuditCommand::Rebuild(a) => rebuild::run(&a, &mut out),
        AuditCommand::CaseAt(a) => case_at::run(&a, &mut out),
        AuditCommand::Prove(a) if remote(&a.remote) => remote::run_prove(&a, &mut out).await,
        AuditCommand::Prove(a) => prove::run_prove(&a, &mut out),
        AuditCommand::CheckProof(a) => prove::run_check(&a, &mut out),
        AuditCommand::SlaReport(a) => sla_report::run(&a, &mut out),
        AuditCommand::GenFixture(a) => fixture::run(&a, &mut out),
    }
}

/// [`open_store`], then brings the projection up to the head of the log
/// the way the hub does when it starts ([`mpp_ledger::ledger::Ledger::open`]):
/// the store writes case values behind the log, so a store whose hub
/// stopped abruptly holds the newest ones only in its log.
pub fn open_store_with_projection(dir: &Path) -> anyhow::Result<SledStore> {
    let store = open_store(dir)?;
    mpp_ledger::ledger::Ledger::open(store.clone())
        .map_err(|e| anyhow::anyhow!("catching the projection up with the log: {e}"))?;
    Ok(store)
}

/// Opens the store in a data directory for auditing, with a page cache of
/// [`AUDIT_CACHE_BYTES`]. Refuses a missing directory (sled would create an
/// empty store there) and explains a held lock.
pub fn open_store(dir: &Path) -> anyhow::Result<SledStore> {
    if !dir.join("db").is_file() && !dir.join("conf").is_file() {
        bail!("{} holds no hub store (no sled `db` or `conf` file)", dir.display());
    }
    SledStore::open_with_cache(dir, AUDIT_CACHE_BYTES).with_context(|| {
        format!(
            "opening the store in {} (sled locks the directory: audit a copy, or the directory of a stopped \
             hub)",
            dir.display()
        )
    })
}

/// A progress reporter: prints `<label>: <n> entries, <rate> entries/s` to
/// stderr at most once per [`PROGRESS_INTERVAL_MS`], and a summary line at
/// the end.
#[derive(Debug)]
pub struct Progress {
    label: &'static str,
    started: Instant,
    last_print: Instant,
    count: u64,
    next_check: u64,
    quiet: bool,
}

impl Progress {
    /// A reporter for a run called `label`.
    pub fn new(label: &'static str) -> Self {
        let now = Instant::now();
        Progress { label, started: now, last_print: now, count: 0, next_check: 0, quiet: false }
    }

    /// A reporter that counts but never prints (for library callers and tests).
    pub fn quiet(label: &'static str) -> Self {
        Progress { quiet: true, ..Progress::new(label) }
    }

    /// Counts `n` more entries and prints a line when one is due.
    pub fn tick(&mut self, n: u64) {
        self.count += n;
        // Reading the clock per entry costs ~20 ns; only look every 1024.
        if self.quiet || self.count < self.next_check {
            return;
        }
        self.next_check = self.count + 1024;
        if self.last_print.elapsed() >= Duration::from_millis(PROGRESS_INTERVAL_MS) {
            self.last_print = Instant::now();
            eprintln!("{}: {} entries, {:.0} entries/s", self.label, self.count, self.rate());
        }
    }

    /// Entries counted so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Entries per second since the start.
    pub fn rate(&self) -> f64 {
        let s = self.started.elapsed().as_secs_f64();
        if s > 0.0 {
            self.count as f64 / s
        } else {
            0.0
        }
    }

    /// Prints the closing line: entries, seconds, entries/s, and the
    /// process's peak resident memory so far (where the OS tells it).
    pub fn finish(&self) {
        if !self.quiet {
            let peak = peak_rss_bytes()
                .map_or_else(String::new, |b| format!(", peak RSS {:.1} MiB", b as f64 / 1048576.0));
            eprintln!(
                "{}: {} entries in {:.2} s ({:.0} entries/s){peak}",
                self.label,
                self.count,
                self.elapsed().as_secs_f64(),
                self.rate()
            );
        }
    }
}

/// The process's peak resident set size in bytes (`VmHWM` of
/// `/proc/self/status`), `None` where that file does not exist.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// An Ed25519 public key as the auditor holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    /// The 32 key bytes.
    pub bytes: [u8; 32],
}

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), before the
/// 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] =
    [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

impl PublicKey {
    /// Parses a key file's content: 32 raw bytes, 64 hex digits, standard
    /// base64 of 32 bytes, an Ed25519 SubjectPublicKeyInfo in DER (44 bytes)
    /// or PEM (`-----BEGIN PUBLIC KEY-----`). Whitespace around text forms
    /// is ignored.
    pub fn parse(content: &[u8]) -> anyhow::Result<PublicKey> {
        if let Ok(bytes) = <[u8; 32]>::try_from(content) {
            return Ok(PublicKey { bytes });
        }
        if let Some(key) = Self::from_spki(content) {
            return Ok(key);
        }
        let text = std::str::from_utf8(content).context("the key file is neither 32 bytes nor text")?.trim();
        if let Some(body) = text.strip_prefix("-----BEGIN PUBLIC KEY-----") {
            let body =
                body.trim_end().strip_suffix("-----END PUBLIC KEY-----").context("PEM key without END")?;
            let b64: String = body.split_whitespace().collect();
            let der = base64_decode(&b64).context("PEM key body is not base64")?;
            return Self::from_spki(&der).context("PEM key is not an Ed25519 SubjectPublicKeyInfo");
        }
        if text.len() == 64 {
            let mut bytes = [0u8; 32];
            if hex::decode_to_slice(text, &mut bytes).is_ok() {
                return Ok(PublicKey { bytes });
            }
        }
        if let Some(bytes) = base64_decode(text).and_then(|b| <[u8; 32]>::try_from(b).ok()) {
            return Ok(PublicKey { bytes });
        }
        bail!("the key file holds no Ed25519 public key (32 bytes, 64 hex digits, base64, DER or PEM)")
    }

    fn from_spki(der: &[u8]) -> Option<PublicKey> {
        let rest = der.strip_prefix(&ED25519_SPKI_PREFIX[..])?;
        Some(PublicKey { bytes: rest.try_into().ok()? })
    }

    /// Reads and parses a key file (at most [`PUBLIC_KEY_FILE_BYTES_MAX`]).
    pub fn read(path: &Path) -> anyhow::Result<PublicKey> {
        let buf = mpp_edge::files::read_at_most(path, PUBLIC_KEY_FILE_BYTES_MAX)
            .with_context(|| format!("reading key file {}", path.display()))?;
        if buf.len() as u64 > PUBLIC_KEY_FILE_BYTES_MAX {
            bail!("key file {} is larger than {PUBLIC_KEY_FILE_BYTES_MAX} bytes", path.display());
        }
        Self::parse(&buf).with_context(|| format!("in key file {}", path.display()))
    }

    /// The key id checkpoints name it by.
    pub fn key_id(&self) -> KeyId {
        KeyId::of(&self.bytes)
    }

    /// Whether `signature` is a valid Ed25519 signature of `message` under
    /// this key (ring's verifier, which rejects non-canonical encodings).
    pub fn verifies(&self, message: &[u8], signature: &[u8; SIGNATURE_BYTES]) -> bool {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &self.bytes)
            .verify(message, signature)
            .is_ok()
    }

    /// Verifies a signed checkpoint: it names this key and its signature holds.
    pub fn verify_checkpoint(
        &self,
        cp: &SignedCheckpoint,
    ) -> Result<(), mpp_core::checkpoint::SignatureError> {
        cp.verify(self.key_id(), |m, s| self.verifies(m, s))
    }
}

/// Reads the optional `--public-key`.
pub(crate) fn read_key(path: Option<&Path>) -> anyhow::Result<Option<PublicKey>> {
    path.map(PublicKey::read).transpose()
}

/// Loads `--calendars-dir`, or the weekends-only set (said on stderr).
pub(crate) fn calendars(dir: Option<&Path>) -> anyhow::Result<(CalendarSet, String)> {
    match dir {
        Some(d) => Ok((mpp_lookup::lookup::load_calendars(d)?, d.display().to_string())),
        None => {
            eprintln!("note: no --calendars-dir: only weekends count as days off");
            Ok((CalendarSet::new(), "weekends only (no --calendars-dir)".to_owned()))
        }
    }
}

/// Parses an instant: Unix milliseconds, or RFC 3339
/// (`YYYY-MM-DDTHH:MM:SS[.fff][Z|±HH:MM]`, `T` or a space). Returns Unix ms.
pub fn parse_instant(s: &str) -> anyhow::Result<i64> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || anyhow::anyhow!("{s:?} is neither Unix milliseconds nor an RFC 3339 time");
    if s.len() < 20 || !s.is_ascii() {
        return Err(bad());
    }
    let date = Date::parse(&s[..10]).map_err(|_| bad())?;
    if !matches!(s.as_bytes()[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|t| t.parse::<i64>().ok()).ok_or_else(bad);
    let (h, m, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if &s[13..14] != ":" || &s[16..17] != ":" || h > 23 || m > 59 || sec > 60 {
        return Err(bad());
    }
    let mut rest = &s[19..];
    let mut frac_ms = 0i64;
    if let Some(f) = rest.strip_prefix('.') {
        let digits = f.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let first3: String = f[..digits.min(3)].chars().chain("00".chars()).take(3).collect();
        frac_ms = first3.parse().map_err(|_| bad())?;
        rest = &f[digits..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(&rest[..1], "+" | "-") && &rest[3..4] == ":" => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (num(s.len() - 5..s.len() - 3)? * 60 + num(s.len() - 2..s.len())?)
        }
        _ => return Err(bad()),
    };
    let midnight_ms = date.start_unix_ms(0);
    Ok(midnight_ms + ((h * 60 + m - offset_min) * 60 + sec) * 1000 + frac_ms)
}

/// Lowercase hex of a hash.
pub(crate) fn hex32(h: &[u8; 32]) -> String {
    hex::encode(h)
}

/// Parses exactly 64 lowercase hex digits (the one spelling exports use).
pub(crate) fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

pub use mpp_core::base64::{decode as base64_decode, encode as base64_encode};

/// Writes one line to `out`, mapping a closed pipe to success (so
/// `mpp-hub audit … | head` ends quietly).
pub(crate) fn say(out: &mut dyn Write, line: &str) -> anyhow::Result<()> {
    match writeln!(out, "{line}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to stdout"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_parse_as_rfc_3339_or_unix_ms() {
        assert_eq!(parse_instant("1750000000000").unwrap(), 1_750_000_000_000);
        assert_eq!(parse_instant("2025-06-15T15:06:40Z").unwrap(), 1_750_000_000_000);
        assert_eq!(parse_instant("2025-06-15T22:06:40+07:00").unwrap(), 1_750_000_000_000);
        assert_eq!(parse_instant("2025-06-15T15:06:40.5Z").unwrap(), 1_750_000_000_500);
        assert_eq!(parse_instant("2025-06-15 12:06:40.123456-03:00").unwrap(), 1_750_000_000_123);
        for bad in [
            "2025-06-15",
            "2025-06-15T25:00:00Z",
            "2025-06-15T15:06:40",
            "yesterday",
            "2025-06-15T15:06:40+0700",
        ] {
            assert!(parse_instant(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn public_keys_parse_from_every_documented_form() {
        let bytes: [u8; 32] = std::array::from_fn(|i| i as u8 * 7);
        let want = PublicKey { bytes };
        let mut spki = ED25519_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(&bytes);
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", base64_encode(&spki));
        for form in [
            bytes.to_vec(),
            format!("{}\n", hex::encode(bytes)).into_bytes(),
            base64_encode(&bytes).into_bytes(),
            spki.clone(),
            pem.into_bytes(),
        ] {
            assert_eq!(PublicKey::parse(&form).unwrap(), want);
        }
        assert!(PublicKey::parse(b"not a key").is_err());
        assert!(PublicKey::parse(&[0u8; 31]).is_err());
    }
}
