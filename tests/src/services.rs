//! The project's own daemons as child processes: `mpp-hub serve`, the
//! agency services (`mpp-dukcapil`, `mpp-pdam`, …) and the front office
//! (`mpp-frontoffice`), each on free ports with a temporary
//! data directory that survives restarts of the process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;

use mpp_proto::agency::dpmptsp::v1 as dpm;
use mpp_proto::frontoffice::v1 as fo;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::bins;
use crate::http::{self, HttpResponse};
use crate::ports::free_addr;
use crate::process::ManagedProcess;
use crate::wait::{wait_for, Fatal};

/// How long a clean stop (SIGTERM) of a daemon may take.
pub const TERMINATE_DEADLINE_MS: u64 = 30_000;

/// The hub's head, from `GET /api/v1/head`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Last hub log sequence (0 = empty log).
    pub last_seq: u64,
    /// Last JetStream stream sequence applied (the checkpoint).
    pub last_stream_seq: u64,
}

/// Options of a hub process beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct HubOptions {
    /// `--consumer-name` (the hub's default when `None`).
    pub consumer_name: Option<String>,
    /// `--batch-max` (the hub's default when `None`).
    pub batch_max: Option<u32>,
    /// `--pin-pepper-file` (the hub verifies citizens' PINs with the pepper
    /// the agencies use); `None` writes [`TEST_PIN_PEPPER`], the agency
    /// services' default, into the hub's temporary directory.
    pub pin_pepper_file: Option<PathBuf>,
    /// Keep the hub's documented lookup rate limits (60 a minute, bursts of
    /// 20 per client address). By default the harness lifts them to
    /// [`HARNESS_LOOKUPS_PER_MINUTE`], because every test looks cases up
    /// from one address, far faster than a citizen would.
    pub documented_rate_limits: bool,
    /// `--nats-user` and `--nats-nkey-file` (anonymous when `None`).
    pub nats_login: Option<(String, PathBuf)>,
    /// `--nats-tls-ca-file` (TLS only if the server asks when `None`).
    pub nats_tls_ca_file: Option<PathBuf>,
    /// More arguments of `mpp-hub serve` (e.g. the TLS flags), after the
    /// harness's own. The hub refuses a flag given twice: to set a rate
    /// limit or budget here, ask for `documented_rate_limits` (so the
    /// harness gives none of them).
    pub extra_args: Vec<String>,
    /// `--registrar-key-file`; `None` writes the test registrar's public
    /// key ([`crate::registry::test_registrar`]) into the hub's temporary
    /// directory.
    pub registrar_key_file: Option<PathBuf>,
    /// `--data-dir` (a directory prepared beforehand, e.g. restored from a
    /// backup); `None`: `data` in the hub's temporary directory.
    pub data_dir: Option<PathBuf>,
    /// `--on-corrupt-store` (`fail` or `rebuild`); `None` gives no flag, so
    /// the hub's default (`rebuild`) holds.
    pub on_corrupt_store: Option<&'static str>,
}

impl HubOptions {
    /// The defaults with one more `mpp-hub serve` flag naming a file, e.g.
    /// `--participant-tokens-file`.
    pub fn with_file(flag: &str, path: &Path) -> Self {
        HubOptions { extra_args: vec![flag.to_owned(), path.display().to_string()], ..HubOptions::default() }
    }
}

/// Lookup rate (and burst) per client address of the hubs the harness
/// starts, unless [`HubOptions::documented_rate_limits`]; the failed-lookup
/// budgets per network and in all are lifted to it too (tests fail many
/// lookups on purpose, all from loopback).
pub const HARNESS_LOOKUPS_PER_MINUTE: u32 = 10_000_000;

/// A client of the front office with a harness token.
pub type FrontOfficeClient =
    fo::front_office_service_client::FrontOfficeServiceClient<InterceptedService<Channel, Bearer>>;

/// A client of mpp-dpmptsp with a harness token.
pub type DpmptspClient =
    dpm::dpmptsp_service_client::DpmptspServiceClient<InterceptedService<Channel, Bearer>>;

/// A citizen's case opening at counter `ptg-loket-1` for "Siti Aminah":
/// NIK `nik`, phone `telepon` (may be empty), no e-mail, default language,
/// notifications on.
pub fn case_opening(nik: &str, telepon: &str) -> fo::PembukaanBerkas {
    fo::PembukaanBerkas {
        nik: nik.to_owned(),
        nama: "Siti Aminah".to_owned(),
        telepon: telepon.to_owned(),
        petugas: "ptg-loket-1".to_owned(),
        surel: String::new(),
        bahasa: String::new(),
        tanpa_notifikasi: false,
    }
}

/// A building approval (PBG) filed at DPMPTSP into case `nomor_berkas` by
/// officer `dpm-1`, with the owner's KTP-el.
pub fn pbg_filing(nomor_berkas: &str) -> dpm::Permohonan {
    dpm::Permohonan {
        nomor_berkas: nomor_berkas.to_owned(),
        jenis_izin: dpm::JenisIzin::Pbg as i32,
        dokumen: vec!["KTP-el pemohon / pemilik bangunan".to_owned()],
        petugas: "dpm-1".to_owned(),
    }
}

/// A DPMPTSP step of officer `dpm-1` on the application `nomor_registrasi`
/// of case `nomor_berkas`.
pub fn dpm_step(nomor_berkas: &str, nomor_registrasi: &str) -> dpm::Langkah {
    dpm::Langkah {
        nomor_berkas: nomor_berkas.to_owned(),
        nomor_registrasi: nomor_registrasi.to_owned(),
        petugas: "dpm-1".to_owned(),
    }
}

/// `mpp-hub serve` on free ports with a temporary data directory.
#[derive(Debug)]
pub struct HubProcess {
    process: ManagedProcess,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    data_dir: PathBuf,
    dir: tempfile::TempDir,
}

impl HubProcess {
    /// Spawns a hub against `nats_url` (not yet waiting for readiness).
    pub fn spawn(nats_url: &str) -> Result<Self> {
        Self::spawn_with(nats_url, HubOptions::default())
    }

    /// Spawns a hub with options.
    pub fn spawn_with(nats_url: &str, options: HubOptions) -> Result<Self> {
        let exe = bins::workspace_bin("mpp-hub")?;
        let dir = crate::temp_dir("mpp-hub-")?;
        let data_dir = options.data_dir.clone().unwrap_or_else(|| dir.path().join("data"));
        let (grpc_addr, http_addr) = (free_addr()?, free_addr()?);
        let mut args = vec![
            "serve".to_owned(),
            "--nats-url".to_owned(),
            nats_url.to_owned(),
            "--data-dir".to_owned(),
            data_dir.display().to_string(),
            "--grpc-addr".to_owned(),
            grpc_addr.to_string(),
            "--http-addr".to_owned(),
            http_addr.to_string(),
            "--log-format".to_owned(),
            "json".to_owned(),
        ];
        // sled can find its files corrupt after a `kill -9` (rarely; see
        // docs/FAULTS.md): by default the hub then re-derives its log from
        // the stream, and the checkers verify the result like any other.
        if let Some(policy) = options.on_corrupt_store {
            args.extend(["--on-corrupt-store".to_owned(), policy.to_owned()]);
        }
        if let Some(name) = options.consumer_name {
            args.extend(["--consumer-name".to_owned(), name]);
        }
        if let Some(n) = options.batch_max {
            args.extend(["--batch-max".to_owned(), n.to_string()]);
        }
        let pepper = pin_pepper_file(options.pin_pepper_file, dir.path())?;
        args.extend(["--pin-pepper-file".to_owned(), pepper.display().to_string()]);
        let registrar = match options.registrar_key_file {
            Some(p) => p,
            None => crate::registry::write_registrar_key_file(dir.path())?,
        };
        args.extend(["--registrar-key-file".to_owned(), registrar.display().to_string()]);
        if let Some((user, nkey_file)) = options.nats_login {
            args.extend([
                "--nats-user".to_owned(),
                user,
                "--nats-nkey-file".to_owned(),
                nkey_file.display().to_string(),
            ]);
        }
        if let Some(ca) = options.nats_tls_ca_file {
            args.extend(["--nats-tls-ca-file".to_owned(), ca.display().to_string()]);
        }
        if !options.documented_rate_limits {
            let rate = HARNESS_LOOKUPS_PER_MINUTE.to_string();
            for flag in [
                "--lookups-per-minute",
                "--lookup-burst",
                "--failed-lookups-per-ipv4-max",
                "--failed-lookups-per-ipv6-64-max",
                "--failed-lookups-per-ipv6-56-max",
                "--failed-lookups-per-ipv6-48-max",
                "--failed-lookups-global-max",
            ] {
                args.extend([flag.to_owned(), rate.clone()]);
            }
        }
        args.extend(options.extra_args);
        let mut process = ManagedProcess::new("mpp-hub", exe, args, dir.path().join("mpp-hub.log"));
        process.env("MPP_LOG", &std::env::var("MPP_TEST_HUB_LOG").unwrap_or_else(|_| "info".to_owned()));
        process.start()?;
        Ok(Self { process, grpc_addr, http_addr, data_dir, dir })
    }

    /// The sled data directory (open it only while the hub is stopped).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The temporary directory holding data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The gRPC endpoint URI, `http://127.0.0.1:<port>`.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// The HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The process (pid, log, start count).
    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }

    /// The end of the hub's log.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// `GET path` on the hub's HTTP address.
    pub async fn get(&self, path: &str) -> Result<HttpResponse> {
        http::get(self.http_addr, path).await
    }

    /// Waits until `GET /readyz` answers 200; fails early if the hub exits.
    pub async fn wait_ready(&mut self, deadline: Duration) -> Result<()> {
        self.wait_status("/readyz", deadline).await
    }

    /// Waits until `GET /healthz` answers 200; fails early if the hub exits.
    pub async fn wait_healthy(&mut self, deadline: Duration) -> Result<()> {
        self.wait_status("/healthz", deadline).await
    }

    async fn wait_status(&mut self, path: &str, deadline: Duration) -> Result<()> {
        let addr = self.http_addr;
        let process = &mut self.process;
        let r = wait_for(&format!("mpp-hub {path} to answer 200"), deadline, || {
            let running = process.ensure_running();
            async move {
                running?;
                let resp = http::get(addr, path).await?;
                if resp.status == 200 {
                    Ok(Some(()))
                } else {
                    bail!("{} {}", resp.status, resp.text())
                }
            }
        })
        .await;
        // An exit already carries the log tail (see ManagedProcess::ensure_running).
        r.map_err(|e| {
            if e.is::<Fatal>() {
                e
            } else {
                e.context(format!("mpp-hub log tail:\n{}", self.log_tail()))
            }
        })
    }

    /// The hub's head (`GET /api/v1/head`).
    pub async fn head(&self) -> Result<Head> {
        read_head(self.http_addr).await
    }

    /// The hub's head and its hash in hex (`GET /api/v1/head`): (last stream
    /// seq, last log seq, head hash).
    pub async fn head_with_hash(&self) -> Result<(u64, u64, String)> {
        let v = self.get("/api/v1/head").await?.json()?;
        let n = |k: &str| {
            v.get(k).and_then(serde_json::Value::as_u64).ok_or_else(|| anyhow!("head has no {k}: {v}"))
        };
        let hash = v
            .get("head_hash")
            .and_then(|h| h.as_str())
            .ok_or_else(|| anyhow!("head has no head_hash: {v}"))?;
        Ok((n("last_stream_seq")?, n("last_seq")?, hash.to_owned()))
    }

    /// Waits until the hub has ingested up to stream sequence `stream_seq`.
    pub async fn wait_caught_up(&mut self, stream_seq: u64, deadline: Duration) -> Result<Head> {
        let process = &mut self.process;
        let addr = self.http_addr;
        wait_for(&format!("mpp-hub to ingest up to stream seq {stream_seq}"), deadline, || {
            let running = process.ensure_running();
            async move {
                running?;
                let head = read_head(addr).await?;
                if head.last_stream_seq >= stream_seq {
                    Ok(Some(head))
                } else {
                    bail!("head is {head:?}")
                }
            }
        })
        .await
    }

    /// `GET /api/v1/cases/{tracking_number}` with the case's PIN in the
    /// `X-MPP-PIN` header: status and JSON body.
    pub async fn case_json(&self, tracking_number: &str, pin: &str) -> Result<(u16, serde_json::Value)> {
        let path = format!("/api/v1/cases/{tracking_number}");
        let resp = http::get_with_headers(self.http_addr, &path, &[("X-MPP-PIN", pin)]).await?;
        Ok((resp.status, resp.json()?))
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) -> Result<()> {
        self.process.kill9()
    }

    /// SIGTERM and wait for a clean exit; an unclean exit status is an error.
    pub async fn terminate(&mut self) -> Result<()> {
        let status = self.process.terminate(Duration::from_millis(TERMINATE_DEADLINE_MS)).await?;
        if !status.success() {
            bail!("mpp-hub exited with {status} after SIGTERM; log tail:\n{}", self.log_tail());
        }
        Ok(())
    }

    /// Starts the hub again (same ports, same data). Stops it cleanly first
    /// if it is running.
    pub async fn restart(&mut self) -> Result<()> {
        if self.process.is_running() {
            self.terminate().await?;
        }
        self.process.start()
    }

    /// Starts the hub again after a crash, without stopping anything.
    pub fn start(&mut self) -> Result<()> {
        self.process.start()
    }
}

/// A participant's token for the hub's verdict feed, written into `dir`:
/// the token file its agency service reads (`--hub-token-file`) and the
/// hub's `--participant-tokens-file` naming `participant` with the token's
/// SHA-256. Returns (token file, participants file).
pub fn participant_token_files(dir: &Path, participant: &str) -> Result<(PathBuf, PathBuf)> {
    let token = format!("{participant}-{}", uuid::Uuid::now_v7().simple());
    let token_file = dir.join(format!("{participant}-hub-token"));
    std::fs::write(&token_file, format!("{token}\n")).context("cannot write the hub token file")?;
    let participants = dir.join("participants");
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    std::fs::write(&participants, format!("{participant}:{hash}\n"))
        .context("cannot write the participants file")?;
    Ok((token_file, participants))
}

/// A private nats-server and a hub against it, ready within `deadline`.
pub async fn nats_and_hub(deadline: Duration) -> Result<(crate::NatsServer, HubProcess)> {
    let nats = crate::NatsServer::start().await?;
    let mut hub = HubProcess::spawn(&nats.url())?;
    hub.wait_ready(deadline).await?;
    Ok((nats, hub))
}

/// `GET /api/v1/head` on a hub's HTTP address.
pub async fn read_head(addr: SocketAddr) -> Result<Head> {
    let resp = http::get(addr, "/api/v1/head").await?;
    if resp.status != 200 {
        bail!("GET /api/v1/head answered {}: {}", resp.status, resp.text());
    }
    let v = resp.json()?;
    let field =
        |k: &str| v.get(k).and_then(serde_json::Value::as_u64).ok_or_else(|| anyhow!("head has no {k}: {v}"));
    Ok(Head { last_seq: field("last_seq")?, last_stream_seq: field("last_stream_seq")? })
}

/// `reason.kind` values of `GET /api/v1/head` after which the hub's ingest
/// has stopped for good (until an operator acts): waiting longer is useless.
pub const INGEST_HALT_KINDS: [&str; 2] = ["gap", "store_failed"];

/// Why the hub's ingest halted for good, if it did: the `reason` object of
/// `GET /api/v1/head` when its `kind` is one of [`INGEST_HALT_KINDS`].
pub async fn ingest_halted(addr: SocketAddr) -> Result<Option<serde_json::Value>> {
    let resp = http::get(addr, "/api/v1/head").await?;
    if resp.status != 200 {
        bail!("GET /api/v1/head answered {}: {}", resp.status, resp.text());
    }
    let v = resp.json()?;
    let reason = v.get("reason").filter(|r| !r.is_null()).cloned();
    Ok(reason.filter(|r| {
        r.get("kind").and_then(serde_json::Value::as_str).is_some_and(|k| INGEST_HALT_KINDS.contains(&k))
    }))
}

/// A tonic interceptor that sends `authorization: Bearer <token>`, as a
/// back-office system calling an agency service does.
#[derive(Debug, Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Bearer {
    /// An interceptor sending `token`.
    pub fn new(token: &str) -> Result<Self> {
        Ok(Self(format!("Bearer {token}").parse().context("token is not valid ASCII metadata")?))
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

/// An agency service binary (`mpp-<agency_id>`, or `mpp-frontoffice`) on a
/// free gRPC port, with a tokens file naming one client system (`e2e-tests`)
/// whose token the harness holds.
#[derive(Debug)]
pub struct AgencyProcess {
    name: String,
    process: ManagedProcess,
    grpc_addr: SocketAddr,
    token: String,
    dir: tempfile::TempDir,
    /// The front office the harness started for this agency's walk-in
    /// citizens ([`FrontOfficeLink::Companion`]).
    companion: Option<Box<AgencyProcess>>,
}

/// Which front office an agency service opens its walk-in citizens' cases
/// at (`--front-office-url`, `--front-office-token-file`).
#[derive(Debug, Clone, Default)]
pub enum FrontOfficeLink {
    /// A front office of the same region and NATS server, started by the
    /// harness with the agency (with [`AgencyOptions::companion_args`],
    /// e.g. its NATS login), which lists the agency's own token with the
    /// scope `cases:open-walk-in` only. What a deployment
    /// does: every agency service is given its MPP's front office.
    #[default]
    Companion,
    /// No front office: a walk-in filing is refused
    /// (`FRONT_OFFICE_NOT_CONFIGURED`).
    None,
    /// This front office's gRPC URL and the agency's token file there.
    Given {
        /// `--front-office-url`.
        url: String,
        /// `--front-office-token-file`.
        token_file: PathBuf,
    },
}

/// Walk-in openings per minute (and burst) per agency token at the
/// companion front offices the harness starts (the flags' largest value):
/// tests drive walk-ins far faster than a counter would (the front
/// office's default is 60 a minute).
pub const HARNESS_WALK_INS_PER_MINUTE: u32 = 100_000;

/// The client id of an agency service's token at its companion front
/// office: `walk-in-<binary>` (e.g. `walk-in-mpp-dukcapil`).
pub fn walk_in_client_id(binary: &str) -> String {
    format!("walk-in-{binary}")
}

/// A tokens-file line for `client_id` with `token`'s SHA-256 and `scopes`
/// (comma-separated; empty for all).
pub fn token_line(client_id: &str, token: &str, scopes: &str) -> String {
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    if scopes.is_empty() {
        format!("{client_id}:{hash}\n")
    } else {
        format!("{client_id}:{hash}:{scopes}\n")
    }
}

/// Options of an agency service process.
#[derive(Debug, Clone)]
pub struct AgencyOptions {
    /// `--region-code`.
    pub region_code: String,
    /// `--pin-pepper-file`; `None` writes a test pepper into the process's
    /// temporary directory. Give every process of one test (and the hub) the
    /// same file, as a province does.
    pub pin_pepper_file: Option<PathBuf>,
    /// More arguments, appended as given.
    pub extra_args: Vec<String>,
    /// An agency service's front office (ignored by the front office).
    pub front_office: FrontOfficeLink,
    /// More arguments of the companion front office
    /// ([`FrontOfficeLink::Companion`]), e.g. its NATS login.
    pub companion_args: Vec<String>,
    /// More lines of the tokens file (see [`token_line`]), after the
    /// harness's `e2e-tests` client, e.g. an agency's walk-in token at a
    /// front office.
    pub extra_token_lines: Vec<String>,
}

impl AgencyOptions {
    /// Defaults for region `region_code`: a companion front office for an
    /// agency service's walk-ins.
    pub fn region(region_code: &str) -> Self {
        Self {
            region_code: region_code.to_owned(),
            pin_pepper_file: None,
            extra_args: Vec::new(),
            front_office: FrontOfficeLink::Companion,
            companion_args: Vec::new(),
            extra_token_lines: Vec::new(),
        }
    }
}

/// The test pepper written when a process gets no `--pin-pepper-file`.
pub const TEST_PIN_PEPPER: &[u8] = b"test pepper: not a secret, only for this test run\n";

/// The `--pin-pepper-file` of a process: `given`, or a file with
/// [`TEST_PIN_PEPPER`] written into the process's directory `dir`.
fn pin_pepper_file(given: Option<PathBuf>, dir: &Path) -> Result<PathBuf> {
    match given {
        Some(p) => Ok(p),
        None => {
            let p = dir.join("pin-pepper");
            std::fs::write(&p, TEST_PIN_PEPPER).context("cannot write pepper file")?;
            Ok(p)
        }
    }
}

impl AgencyProcess {
    /// Spawns `mpp-dukcapil` for region `region_code` against `nats_url`.
    pub fn spawn_dukcapil(nats_url: &str, region_code: &str) -> Result<Self> {
        Self::spawn("mpp-dukcapil", nats_url, AgencyOptions::region(region_code))
    }

    /// Spawns the front office (`mpp-frontoffice`) with a test NIK key and
    /// a test vault key written into its temporary directory
    /// (`--nik-key-file`, `--vault-key-file`).
    pub fn spawn_frontoffice(nats_url: &str, options: AgencyOptions) -> Result<Self> {
        Self::spawn_with("mpp-frontoffice", nats_url, options, |dir| {
            let key = dir.join("nik-key");
            std::fs::write(&key, b"test NIK key: not a secret, only for this test run\n")
                .context("cannot write NIK key file")?;
            let vault_key = dir.join("vault-key");
            std::fs::write(&vault_key, "7e".repeat(32)).context("cannot write vault key file")?;
            Ok(vec![
                "--nik-key-file".to_owned(),
                key.display().to_string(),
                "--vault-key-file".to_owned(),
                vault_key.display().to_string(),
            ])
        })
    }

    /// Spawns the agency service binary `binary` (e.g. `mpp-pdam`) against
    /// `nats_url` (not yet waiting for it to listen).
    pub fn spawn(binary: &str, nats_url: &str, options: AgencyOptions) -> Result<Self> {
        Self::spawn_with(binary, nats_url, options, |_| Ok(Vec::new()))
    }

    /// [`AgencyProcess::spawn`] with more arguments made from the process's
    /// temporary directory (for files the binary reads).
    fn spawn_with(
        binary: &str,
        nats_url: &str,
        options: AgencyOptions,
        more_args: impl FnOnce(&Path) -> Result<Vec<String>>,
    ) -> Result<Self> {
        let exe = bins::workspace_bin(binary)?;
        let dir = crate::temp_dir(&format!("{binary}-"))?;
        let grpc_addr = free_addr()?;
        let help = std::process::Command::new(&exe)
            .arg("--help")
            .output()
            .with_context(|| format!("{binary} --help"))?;
        let help = String::from_utf8_lossy(&help.stdout).into_owned();
        let mut args = vec![
            "--nats-url".to_owned(),
            nats_url.to_owned(),
            "--grpc-addr".to_owned(),
            grpc_addr.to_string(),
            "--region-code".to_owned(),
            options.region_code.clone(),
        ];
        // A fresh token per process; the service keeps only its SHA-256.
        let token = format!("e2e-{}", uuid::Uuid::now_v7().simple());
        if help.contains("--tokens-file") {
            let tokens = dir.path().join("tokens");
            let text = format!(
                "# written by the mpp-tests harness\n{}{}",
                token_line("e2e-tests", &token, ""),
                options.extra_token_lines.concat()
            );
            std::fs::write(&tokens, text).context("cannot write tokens file")?;
            args.extend(["--tokens-file".to_owned(), tokens.display().to_string()]);
        }
        let mut companion = None;
        if binary != "mpp-frontoffice" && help.contains("--front-office-url") {
            let link = match options.front_office.clone() {
                FrontOfficeLink::None => None,
                FrontOfficeLink::Given { url, token_file } => Some((url, token_file)),
                FrontOfficeLink::Companion => {
                    let walk_in_token = format!("walk-in-{}", uuid::Uuid::now_v7().simple());
                    let token_file = dir.path().join("front-office-token");
                    std::fs::write(&token_file, format!("{walk_in_token}\n"))
                        .context("cannot write front-office token file")?;
                    let front = Self::spawn_frontoffice(
                        nats_url,
                        AgencyOptions {
                            pin_pepper_file: options.pin_pepper_file.clone(),
                            extra_args: [
                                options.companion_args.clone(),
                                ["--walk-ins-per-minute", "--walk-ins-burst"]
                                    .iter()
                                    .flat_map(|f| [f.to_string(), HARNESS_WALK_INS_PER_MINUTE.to_string()])
                                    .collect(),
                            ]
                            .concat(),
                            extra_token_lines: vec![token_line(
                                &walk_in_client_id(binary),
                                &walk_in_token,
                                "cases:open-walk-in",
                            )],
                            ..AgencyOptions::region(&options.region_code)
                        },
                    )?;
                    let url = front.grpc_endpoint();
                    companion = Some(Box::new(front));
                    Some((url, token_file))
                }
            };
            if let Some((url, token_file)) = link {
                args.extend([
                    "--front-office-url".to_owned(),
                    url,
                    "--front-office-token-file".to_owned(),
                    token_file.display().to_string(),
                ]);
            }
        }
        if help.contains("--pin-pepper-file") {
            let pepper = pin_pepper_file(options.pin_pepper_file, dir.path())?;
            args.extend(["--pin-pepper-file".to_owned(), pepper.display().to_string()]);
        }
        // The durable outbox lives under the data directory, if the service has one.
        if help.contains("--data-dir") {
            args.extend(["--data-dir".to_owned(), dir.path().join("data").display().to_string()]);
        }
        args.extend(options.extra_args);
        args.extend(more_args(dir.path())?);
        let log = dir.path().join(format!("{binary}.log"));
        let mut process = ManagedProcess::new(binary, exe, args, log);
        let level = std::env::var("MPP_TEST_AGENCY_LOG").unwrap_or_else(|_| "info".to_owned());
        process.env("MPP_LOG", &level);
        process.start()?;
        Ok(Self { name: binary.to_owned(), process, grpc_addr, token, dir, companion })
    }

    /// The binary's name, e.g. `mpp-pdam`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bearer token of the `e2e-tests` client system.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// An interceptor authenticating calls as the `e2e-tests` client system.
    pub fn bearer(&self) -> Result<Bearer> {
        Bearer::new(&self.token)
    }

    /// A client of this front office's gRPC API (`mpp-frontoffice`) with
    /// its token; the channel connects lazily.
    pub fn front_office_client(&self) -> Result<FrontOfficeClient> {
        Ok(fo::front_office_service_client::FrontOfficeServiceClient::with_interceptor(
            self.channel()?,
            self.bearer()?,
        ))
    }

    /// A client of this process as mpp-dpmptsp, with its harness token.
    pub fn dpmptsp_client(&self) -> Result<DpmptspClient> {
        Ok(dpm::dpmptsp_service_client::DpmptspServiceClient::with_interceptor(
            self.channel()?,
            self.bearer()?,
        ))
    }

    /// A channel to the gRPC port that connects on first use.
    pub fn channel(&self) -> Result<Channel> {
        Ok(tonic::transport::Endpoint::from_shared(self.grpc_endpoint())?.connect_lazy())
    }

    /// The gRPC endpoint URI.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// The gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The temporary directory (data, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process.
    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }

    /// The end of the service's log.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// The front office the harness started for this agency's walk-ins
    /// ([`FrontOfficeLink::Companion`]), if any.
    pub fn companion(&mut self) -> Option<&mut AgencyProcess> {
        self.companion.as_deref_mut()
    }

    /// Waits until the gRPC port (and the companion front office's)
    /// accepts a connection; fails early on exit.
    pub async fn wait_listening(&mut self, deadline: Duration) -> Result<()> {
        if let Some(front) = self.companion.as_deref_mut() {
            Box::pin(front.wait_listening(deadline)).await?;
        }
        let addr = self.grpc_addr;
        let process = &mut self.process;
        let r = wait_for(&format!("{} to accept gRPC connections", self.name), deadline, || {
            let running = process.ensure_running();
            async move {
                running?;
                tokio::net::TcpStream::connect(addr).await?;
                Ok(Some(()))
            }
        })
        .await;
        r.map_err(|e| {
            if e.is::<Fatal>() {
                e
            } else {
                e.context(format!("{} log tail:\n{}", self.name, self.log_tail()))
            }
        })
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) -> Result<()> {
        self.process.kill9()
    }

    /// SIGTERM and wait.
    pub async fn terminate(&mut self) -> Result<()> {
        let status = self.process.terminate(Duration::from_millis(TERMINATE_DEADLINE_MS)).await?;
        if !status.success() {
            bail!("{} exited with {status} after SIGTERM; log tail:\n{}", self.name, self.log_tail());
        }
        Ok(())
    }

    /// Starts the service again (same port, same data).
    pub async fn restart(&mut self) -> Result<()> {
        if self.process.is_running() {
            self.terminate().await?;
        }
        self.process.start()
    }
}
