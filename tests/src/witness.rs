//! `mpp-witness serve` as a child process: a state directory that
//! survives restarts, a free HTTP port, its key made (and its vkey read)
//! before it first runs, so a hub can be configured with it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::bins;
use crate::http::{self, HttpResponse};
use crate::ports::free_addr;
use crate::process::ManagedProcess;
use crate::services::TERMINATE_DEADLINE_MS;
use crate::wait::wait_for;

/// One witness.
#[derive(Debug)]
pub struct WitnessProcess {
    name: String,
    vkey: String,
    http_addr: SocketAddr,
    state_dir: PathBuf,
    process: Option<ManagedProcess>,
    dir: tempfile::TempDir,
}

/// What a one-shot `mpp-witness` command printed, and its exit code.
#[derive(Debug)]
pub struct Ran {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `mpp-witness args…`.
pub async fn run(args: &[&str]) -> Result<Ran> {
    let exe = bins::workspace_bin("mpp-witness")?;
    let out = tokio::process::Command::new(&exe)
        .args(args)
        .env("MPP_LOG_FORMAT", "json")
        .output()
        .await
        .with_context(|| format!("running mpp-witness {}", args.join(" ")))?;
    Ok(Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

impl WitnessProcess {
    /// A witness named `name` with a new key; not running yet.
    pub async fn create(name: &str) -> Result<Self> {
        let dir = crate::temp_dir("mpp-witness-")?;
        let state_dir = dir.path().join("state");
        let state = state_dir.display().to_string();
        let ran = run(&["public-key", "--state-dir", &state, "--name", name]).await?;
        if ran.code != 0 {
            bail!("mpp-witness public-key failed: {}", ran.stderr);
        }
        Ok(Self {
            name: name.to_owned(),
            vkey: ran.stdout.trim().to_owned(),
            http_addr: free_addr()?,
            state_dir,
            process: None,
            dir,
        })
    }

    /// The witness's vkey (what the hub and auditors are given).
    pub fn vkey(&self) -> &str {
        &self.vkey
    }

    /// Its key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its HTTP base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// Its state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Starts following `hub` (`ORIGIN,KEY,URL`) with the auditor token in
    /// `token_file`, polling every `poll_ms`; stops a running one first.
    pub async fn follow(&mut self, hub: &str, token_file: &Path, poll_ms: u64) -> Result<()> {
        self.terminate().await?;
        let exe = bins::workspace_bin("mpp-witness")?;
        let args = vec![
            "serve".to_owned(),
            "--state-dir".to_owned(),
            self.state_dir.display().to_string(),
            "--name".to_owned(),
            self.name.clone(),
            "--hub".to_owned(),
            hub.to_owned(),
            "--auditor-token-file".to_owned(),
            token_file.display().to_string(),
            "--http-addr".to_owned(),
            self.http_addr.to_string(),
            "--poll-ms".to_owned(),
            poll_ms.to_string(),
            "--log-format".to_owned(),
            "json".to_owned(),
        ];
        let log = self.dir.path().join("mpp-witness.log");
        let mut p = ManagedProcess::new(&format!("mpp-witness {}", self.name), exe, args, log);
        p.env("MPP_LOG", "info");
        p.start()?;
        self.process = Some(p);
        self.wait_healthy(Duration::from_secs(30)).await
    }

    /// Starts it again with the same flags (after a kill).
    pub async fn start(&mut self) -> Result<()> {
        self.process.as_mut().context("never started")?.start()?;
        self.wait_healthy(Duration::from_secs(30)).await
    }

    async fn wait_healthy(&mut self, deadline: Duration) -> Result<()> {
        let addr = self.http_addr;
        let p = self.process.as_mut().context("not started")?;
        wait_for("mpp-witness /healthz", deadline, || {
            let running = p.ensure_running();
            async move {
                running?;
                Ok((http::get(addr, "/healthz").await?.status == 200).then_some(()))
            }
        })
        .await
    }

    /// SIGKILL.
    pub fn kill9(&mut self) -> Result<()> {
        self.process.as_mut().context("not started")?.kill9()
    }

    /// SIGTERM and wait for a clean exit (nothing when not running).
    pub async fn terminate(&mut self) -> Result<()> {
        if let Some(p) = self.process.as_mut() {
            if !p.is_running() {
                return Ok(());
            }
            let status = p.terminate(Duration::from_millis(TERMINATE_DEADLINE_MS)).await?;
            if !status.success() {
                bail!("mpp-witness exited with {status}: {}", p.log_tail());
            }
        }
        Ok(())
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<HttpResponse> {
        http::get(self.http_addr, path).await
    }

    /// The last note it cosigned for `origin`, `None` before the first.
    pub async fn cosigned(&self, origin: &str) -> Result<Option<String>> {
        let r = self.get(&format!("/cosigned?origin={}", origin.replace('/', "%2F"))).await?;
        match r.status {
            200 => Ok(Some(r.text())),
            404 => Ok(None),
            s => bail!("GET /cosigned answered {s}: {}", r.text()),
        }
    }

    /// `mpp-witness check` on its state directory.
    pub async fn check(&self) -> Result<Ran> {
        run(&["check", "--state-dir", &self.state_dir.display().to_string()]).await
    }

    /// The end of its log.
    pub fn log_tail(&self) -> String {
        self.process.as_ref().map(ManagedProcess::log_tail).unwrap_or_default()
    }
}
