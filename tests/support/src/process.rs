//! One child process the harness owns: spawned with its output appended to a
//! log file, signalled by pid (SIGKILL or SIGTERM), killed when dropped.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::wait::{wait_for, Fatal};

/// How much of a log file's end [`ManagedProcess::log_tail`] shows.
pub const LOG_TAIL_BYTES_MAX: u64 = 8 * 1024;

/// A child process with a name (for messages), a command line and a log file.
/// Restartable: [`ManagedProcess::start`] runs the same command line again.
#[derive(Debug)]
pub struct ManagedProcess {
    name: String,
    exe: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    log_path: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl ManagedProcess {
    /// A process description; nothing runs until [`ManagedProcess::start`].
    pub fn new(name: &str, exe: PathBuf, args: Vec<String>, log_path: PathBuf) -> Self {
        Self { name: name.to_owned(), exe, args, envs: Vec::new(), log_path, child: None, starts: 0 }
    }

    /// Sets an environment variable for every later start.
    pub fn env(&mut self, key: &str, value: &str) {
        self.envs.push((key.to_owned(), value.to_owned()));
    }

    /// The name used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The command line arguments.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The log file (stdout and stderr of every run, appended).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// How many times the process was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// The running child's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Spawns the process. Fails if it is already running.
    pub fn start(&mut self) -> Result<()> {
        if self.is_running() {
            bail!("{} is already running", self.name);
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("cannot open log {}", self.log_path.display()))?;
        let log2 = log.try_clone().context("cannot clone log file handle")?;
        let mut cmd = Command::new(&self.exe);
        cmd.args(&self.args).stdin(Stdio::null()).stdout(Stdio::from(log)).stderr(Stdio::from(log2));
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        let child =
            cmd.spawn().with_context(|| format!("cannot spawn {} ({})", self.name, self.exe.display()))?;
        self.starts += 1;
        note(&format!("started {} pid {} (start #{})", self.name, child.id(), self.starts));
        self.child = Some(child);
        Ok(())
    }

    /// Whether the child is still running (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(c) => matches!(c.try_wait(), Ok(None)),
        }
    }

    /// The exit status if the child has exited (it stays recorded until the next start).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// A [`Fatal`] error if the child exited, naming its status and the end
    /// of its log (so a [`wait_for`] on it ends at once).
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.exit_status() {
            Some(status) => {
                bail!(Fatal(format!("{} exited with {status}; log tail:\n{}", self.name, self.log_tail())))
            }
            None if self.child.is_none() => bail!(Fatal(format!("{} is not started", self.name))),
            None => Ok(()),
        }
    }

    /// SIGKILL (`kill -9`) and reap. No-op if not running.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                // Child::kill sends SIGKILL on Unix.
                child.kill().with_context(|| format!("cannot SIGKILL {}", self.name))?;
            }
            child.wait().with_context(|| format!("cannot reap {}", self.name))?;
        }
        Ok(())
    }

    /// SIGTERM, then waits up to `deadline` for a clean exit. If the process
    /// does not stop in time it is killed with SIGKILL and this is an error.
    pub async fn terminate(&mut self, deadline: Duration) -> Result<ExitStatus> {
        let Some(child) = self.child.as_mut() else {
            bail!("{} is not started", self.name);
        };
        if let Some(status) = child.try_wait().context("try_wait")? {
            self.child = None;
            return Ok(status);
        }
        let pid = child.id();
        // The child is not reaped yet, so its pid cannot have been reused.
        let out = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .output()
            .context("cannot run `kill -TERM`")?;
        if !out.status.success() {
            bail!("kill -TERM {pid} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let name = self.name.clone();
        let waited = wait_for(&format!("{name} to exit after SIGTERM"), deadline, || {
            let r = child.try_wait().map_err(|e| anyhow!(e));
            async move { r }
        })
        .await;
        match waited {
            Ok(status) => {
                self.child = None;
                Ok(status)
            }
            Err(e) => {
                self.kill9()?;
                Err(e.context(format!("{name} ignored SIGTERM; killed it; log tail:\n{}", self.log_tail())))
            }
        }
    }

    /// The last [`LOG_TAIL_BYTES_MAX`] bytes of the log.
    pub fn log_tail(&self) -> String {
        read_tail(&self.log_path, LOG_TAIL_BYTES_MAX)
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        // Best effort: never leave a child running after its test.
        let _ = self.kill9();
    }
}

/// The last `max` bytes of a file, lossily decoded; empty if unreadable.
pub fn read_tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = std::fs::File::open(path) else { return String::new() };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if f.seek(SeekFrom::Start(len.saturating_sub(max))).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = f.take(max).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Progress notes go to stderr, which the test runner shows for failing
/// tests only (and always with `--nocapture`), and which keeps a binary's
/// stdout (the bench's) free of them.
fn note(msg: &str) {
    eprintln!("[harness] {msg}");
}
