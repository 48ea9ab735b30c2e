//! Child processes (`mpp-hub serve`), ports, memory and disk readings.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use mpp_test_support::free_port;

use crate::workload::BENCH_PEPPER;

/// How long `mpp-hub serve` may take to answer `/healthz` (a store of
/// tens of millions of events opens before it answers).
pub(crate) const HUB_START_DEADLINE: Duration = Duration::from_secs(120);

/// How long a hub may take to stop after SIGTERM.
pub(crate) const HUB_STOP_DEADLINE: Duration = Duration::from_secs(60);

/// Lookups per minute and burst given to the bench's hubs: the rate limit
/// is a defence against guessing, not a capacity limit, and every bench
/// client shares one address.
pub(crate) const BENCH_LOOKUP_RATE: u32 = 10_000_000;

/// SIGTERM (through `kill`, as the crate forbids unsafe code), then waits
/// for the exit; SIGKILL after `deadline`.
pub(crate) async fn terminate(child: &mut Child, deadline: Duration) -> Result<()> {
    if child.try_wait()?.is_some() {
        return Ok(());
    }
    let pid = child.id().to_string();
    let out = Command::new("kill").args(["-TERM", &pid]).output().context("running kill -TERM")?;
    if !out.status.success() {
        bail!("kill -TERM {pid}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    bail!("process {pid} ignored SIGTERM for {deadline:?}; killed")
}

/// A workspace binary next to this executable (`target/<profile>/`), or the
/// path in `env_var`.
pub(crate) fn sibling_bin(name: &str, env_var: &str) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(env_var).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("current_exe")?;
    let dir = exe.parent().ok_or_else(|| anyhow!("executable without a directory"))?;
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} not found next to mpp-bench (build it: cargo build -p mpp-hub; or set {env_var})",
            path.display()
        );
    }
    Ok(path)
}

/// Resident and peak resident memory of a process, in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Memory {
    /// `VmRSS`.
    pub(crate) rss_bytes: u64,
    /// `VmHWM`, the peak.
    pub(crate) peak_rss_bytes: u64,
}

/// Reads `/proc/<pid>/status`.
pub(crate) fn memory(pid: u32) -> Result<Memory> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    Ok(Memory { rss_bytes: field("VmRSS:"), peak_rss_bytes: field("VmHWM:") })
}

/// Bytes a directory tree takes on disk: (apparent size, allocated blocks).
/// Files that vanish during the walk count as gone.
pub(crate) fn dir_bytes(dir: &Path) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut apparent = 0u64;
    let mut allocated = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let entry = entry?;
            // The hub runs while this walks: sled deletes blob files it no
            // longer needs, so a file listed a moment ago may be gone.
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {}", entry.path().display())),
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                apparent += meta.len();
                allocated += meta.blocks() * 512;
            }
        }
    }
    Ok((apparent, allocated))
}

/// A running `mpp-hub serve`.
#[derive(Debug)]
pub(crate) struct Hub {
    child: Option<Child>,
    /// Its data directory.
    pub(crate) data_dir: PathBuf,
    /// `http://127.0.0.1:<port>` of its gRPC server.
    pub(crate) grpc_url: String,
    /// `127.0.0.1:<port>` of its HTTP server.
    pub(crate) http_addr: String,
    log: PathBuf,
}

impl Hub {
    /// Starts `mpp-hub serve` on free ports against `nats_url`, with its data
    /// and log under `dir`, the bench's pepper and no practical lookup rate
    /// limit; waits for `/healthz`.
    pub(crate) async fn start(exe: &Path, dir: &Path, nats_url: &str) -> Result<Self> {
        let data_dir = dir.join("hub-data");
        let pepper = dir.join("pepper");
        std::fs::write(&pepper, BENCH_PEPPER)?;
        let registrar = crate::signing::write_registrar_key_file(dir)?;
        let grpc_port = free_port()?;
        let http_port = free_port()?;
        let log = dir.join("mpp-hub.log");
        let rate = BENCH_LOOKUP_RATE.to_string();
        let child = Command::new(exe)
            .arg("--log-format")
            .arg("json")
            .arg("serve")
            .args(["--nats-url", nats_url])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--grpc-addr", &format!("127.0.0.1:{grpc_port}")])
            .args(["--http-addr", &format!("127.0.0.1:{http_port}")])
            .arg("--pin-pepper-file")
            .arg(&pepper)
            .arg("--registrar-key-file")
            .arg(&registrar)
            .args(["--lookups-per-minute", &rate, "--lookup-burst", &rate])
            // The bench's clients stand behind an ingress on 127.0.0.1: the
            // visibility probes each name their own citizen's address
            // (visibility::as_citizen).
            .args(["--grpc-trusted-proxies", "127.0.0.1/32"])
            // Probes poll a case until it exists, and section 5 sends one
            // lookup in 16 with a wrong PIN (lookups::WRONG_PIN_EVERY), all
            // from 127.0.0.1: misses must not lock a case, nor spend the
            // failed-lookup budgets (which would ask for proofs of work).
            .args(["--pin-failures-max", "1000", "--pin-failures-per-day-max", "10000"])
            .args(["--failed-lookups-per-ipv4-max", &rate, "--failed-lookups-global-max", &rate])
            .env("MPP_LOG", std::env::var("MPP_BENCH_HUB_LOG").unwrap_or_else(|_| "warn".to_owned()))
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log)?))
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let mut hub = Self {
            child: Some(child),
            data_dir,
            grpc_url: format!("http://127.0.0.1:{grpc_port}"),
            http_addr: format!("127.0.0.1:{http_port}"),
            log,
        };
        let until = Instant::now() + HUB_START_DEADLINE;
        loop {
            if let Some(status) = hub.child.as_mut().map(Child::try_wait).transpose()?.flatten() {
                bail!("mpp-hub exited with {status}: {}", hub.log_tail());
            }
            if crate::http::get(&hub.http_addr, "/healthz", &[]).await.is_ok_and(|r| r.status == 200) {
                return Ok(hub);
            }
            if Instant::now() >= until {
                bail!("mpp-hub did not answer /healthz within {HUB_START_DEADLINE:?}: {}", hub.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The process id.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `last_stream_seq` from `/api/v1/head`.
    pub(crate) async fn last_stream_seq(&self) -> Result<u64> {
        let r = crate::http::get(&self.http_addr, "/api/v1/head", &[]).await?;
        let v: serde_json::Value = serde_json::from_slice(&r.body).context("head is not JSON")?;
        if v.get("reason").and_then(|r| r.get("kind")).and_then(|k| k.as_str()) == Some("gap") {
            bail!("the hub halted on a gap: {v}");
        }
        v.get("last_stream_seq")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| anyhow!("no last_stream_seq in {v}"))
    }

    /// Polls the head until it reaches `stream_seq`; `on_poll` sees every
    /// reading. Fails after `deadline`.
    pub(crate) async fn wait_for_stream_seq(
        &self,
        stream_seq: u64,
        deadline: Duration,
        mut on_poll: impl FnMut(u64),
    ) -> Result<Instant> {
        let until = Instant::now() + deadline;
        loop {
            let seq = self.last_stream_seq().await?;
            on_poll(seq);
            if seq >= stream_seq {
                return Ok(Instant::now());
            }
            if Instant::now() >= until {
                bail!(
                    "the hub reached stream seq {seq} of {stream_seq} within {deadline:?}: {}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Polls `/readyz` until it answers 200. Fails after `deadline`.
    pub(crate) async fn wait_ready(&self, deadline: Duration) -> Result<()> {
        let until = Instant::now() + deadline;
        loop {
            if crate::http::get(&self.http_addr, "/readyz", &[]).await.is_ok_and(|r| r.status == 200) {
                return Ok(());
            }
            if Instant::now() >= until {
                bail!("mpp-hub was not ready within {deadline:?}: {}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the hub (SIGTERM) and waits for it.
    pub(crate) async fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, HUB_STOP_DEADLINE).await?;
        }
        Ok(())
    }

    /// The end of its log.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(3000);
        text.get(start..).unwrap_or("").to_owned()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// CPU time (user + system) of this process and of its direct children by
/// name (`mpp-hub`, `nats-server`), read from `/proc/<pid>/stat`: what a
/// measured window cost each process on a machine where they share the
/// cores. Empty off Linux.
#[derive(Debug, Clone, Default)]
pub(crate) struct CpuTimes {
    /// (process name, CPU time).
    pub(crate) by_process: Vec<(String, Duration)>,
}

impl CpuTimes {
    /// Reads them now.
    pub(crate) fn now() -> Self {
        let me = std::process::id();
        let mut by_process = Vec::new();
        if let Some((_, _, cpu)) = stat_of("self") {
            by_process.push(("bench".to_owned(), cpu));
        }
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let name = e.file_name();
                let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else {
                    continue;
                };
                if let Some((comm, ppid, cpu)) = stat_of(pid) {
                    if ppid == me {
                        by_process.push((comm, cpu));
                    }
                }
            }
        }
        by_process.sort();
        Self { by_process }
    }

    /// Each process's CPU since `earlier` in µs per `ops` (processes seen
    /// both times), as `name µs` pairs joined by " / ".
    pub(crate) fn per_op_since(&self, earlier: &Self, ops: u64) -> String {
        let mut out = Vec::new();
        for (name, cpu) in &self.by_process {
            if let Some((_, before)) = earlier.by_process.iter().find(|(n, _)| n == name) {
                let us = cpu.saturating_sub(*before).as_secs_f64() * 1e6 / ops.max(1) as f64;
                out.push(format!("{name} {us:.1}"));
            }
        }
        out.join(" / ")
    }
}

/// (comm, ppid, utime + stime) of `/proc/<pid>/stat`.
fn stat_of(pid: &str) -> Option<(String, u32, Duration)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let comm = text.get(text.find('(')? + 1..text.rfind(')')?)?.to_owned();
    let fields = mpp_obs::process::stat_fields(&text)?;
    // After the name: state(0) ppid(1) ... utime(11) stime(12).
    let ppid = fields.get(1)?.parse().ok()?;
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((comm, ppid, Duration::from_secs_f64(ticks as f64 / mpp_obs::process::USER_HZ)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_own_stat() {
        let (comm, ppid, _cpu) = stat_of("self").expect("/proc/self/stat");
        assert!(!comm.is_empty() && !comm.contains(')'), "{comm:?}");
        assert_eq!(ppid, std::os::unix::process::parent_id());
    }
}
