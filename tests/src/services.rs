//! The project's own daemons as child processes: `mpp-hub serve` and the
//! agency services (`mpp-dukcapil`), each on free ports with a temporary
//! data directory that survives restarts of the process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;

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
        let data_dir = dir.path().join("data");
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
        if let Some(name) = options.consumer_name {
            args.extend(["--consumer-name".to_owned(), name]);
        }
        if let Some(n) = options.batch_max {
            args.extend(["--batch-max".to_owned(), n.to_string()]);
        }
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

    /// `GET /api/v1/cases/{tracking_number}`: status and JSON body.
    pub async fn case_json(&self, tracking_number: &str) -> Result<(u16, serde_json::Value)> {
        let resp = self.get(&format!("/api/v1/cases/{tracking_number}")).await?;
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

/// An agency service binary (`mpp-<agency_id>`) on a free gRPC port, with a
/// tokens file naming one client system (`e2e-tests`) whose token the
/// harness holds.
#[derive(Debug)]
pub struct AgencyProcess {
    process: ManagedProcess,
    grpc_addr: SocketAddr,
    token: String,
    dir: tempfile::TempDir,
}

impl AgencyProcess {
    /// Spawns `mpp-dukcapil` for region `region_code` against `nats_url`.
    pub fn spawn_dukcapil(nats_url: &str, region_code: &str) -> Result<Self> {
        let exe = bins::workspace_bin("mpp-dukcapil")?;
        let dir = crate::temp_dir("mpp-dukcapil-")?;
        let grpc_addr = free_addr()?;
        let pepper = dir.path().join("pin-pepper");
        std::fs::write(&pepper, b"test pepper: not a secret, only for this test run\n")
            .context("cannot write pepper file")?;
        let help = std::process::Command::new(&exe).arg("--help").output().context("mpp-dukcapil --help")?;
        let help = String::from_utf8_lossy(&help.stdout).into_owned();
        let mut args = vec![
            "--nats-url".to_owned(),
            nats_url.to_owned(),
            "--grpc-addr".to_owned(),
            grpc_addr.to_string(),
            "--region-code".to_owned(),
            region_code.to_owned(),
        ];
        // A fresh token per process; the service keeps only its SHA-256.
        let token = format!("e2e-{}", uuid::Uuid::now_v7().simple());
        if help.contains("--tokens-file") {
            let tokens = dir.path().join("tokens");
            let hash = hex::encode(Sha256::digest(token.as_bytes()));
            std::fs::write(&tokens, format!("# written by the mpp-tests harness\ne2e-tests:{hash}\n"))
                .context("cannot write tokens file")?;
            args.extend(["--tokens-file".to_owned(), tokens.display().to_string()]);
        }
        if help.contains("--pin-pepper-file") {
            args.extend(["--pin-pepper-file".to_owned(), pepper.display().to_string()]);
        }
        // The durable outbox lives under the data directory, if the service has one.
        if help.contains("--data-dir") {
            args.extend(["--data-dir".to_owned(), dir.path().join("data").display().to_string()]);
        }
        let mut process = ManagedProcess::new("mpp-dukcapil", exe, args, dir.path().join("mpp-dukcapil.log"));
        let level = std::env::var("MPP_TEST_AGENCY_LOG").unwrap_or_else(|_| "info".to_owned());
        process.env("MPP_LOG", &level);
        process.env("RUST_LOG", &level);
        process.start()?;
        Ok(Self { process, grpc_addr, token, dir })
    }

    /// The bearer token of the `e2e-tests` client system.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// An interceptor authenticating calls as the `e2e-tests` client system.
    pub fn bearer(&self) -> Result<Bearer> {
        Bearer::new(&self.token)
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

    /// Waits until the gRPC port accepts a connection; fails early on exit.
    pub async fn wait_listening(&mut self, deadline: Duration) -> Result<()> {
        let addr = self.grpc_addr;
        let process = &mut self.process;
        let r = wait_for("mpp-dukcapil to accept gRPC connections", deadline, || {
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
                e.context(format!("mpp-dukcapil log tail:\n{}", self.log_tail()))
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
            bail!("mpp-dukcapil exited with {status} after SIGTERM; log tail:\n{}", self.log_tail());
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
