//! A process's resident memory, read from `/proc/<pid>/status`, once or
//! sampled for its peak while something runs.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

/// How often [`peak_while`] reads the RSS.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// The resident memory (`VmRSS`) of `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("read /proc/<pid>/status")?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))?;
    Ok(kb * 1024)
}

/// Runs `work` while sampling the RSS of `pid` every [`SAMPLE_EVERY`];
/// returns what `work` returned and the peak RSS seen, in MiB.
pub async fn peak_while<T>(pid: u32, work: impl Future<Output = T>) -> Result<(T, u64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(rss_bytes(pid)?));
    let sampler = tokio::spawn({
        let (stop, peak) = (stop.clone(), peak.clone());
        async move {
            while !stop.load(Ordering::SeqCst) {
                if let Ok(b) = rss_bytes(pid) {
                    peak.fetch_max(b, Ordering::SeqCst);
                }
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
        }
    });
    let out = work.await;
    stop.store(true, Ordering::SeqCst);
    sampler.await.context("the RSS sampler")?;
    Ok((out, peak.load(Ordering::SeqCst) >> 20))
}
