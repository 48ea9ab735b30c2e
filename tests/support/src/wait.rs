//! Waiting on conditions with a deadline, never on the clock alone.

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// An error that ends a [`wait_for`] at once instead of counting as "not
/// yet", e.g. the process being waited on has exited.
#[derive(Debug)]
pub struct Fatal(pub String);

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Fatal {}

/// Pause between two polls of a condition.
pub const POLL_INTERVAL_MS: u64 = 20;

/// Polls `probe` until it returns `Ok(Some(value))` or `deadline` passes.
/// `Ok(None)` and `Err(_)` both mean "not yet"; the last of them is reported
/// if the deadline passes, together with what was awaited. An error that is
/// (or wraps) [`Fatal`] ends the wait at once.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    loop {
        let last = match probe().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => "condition not met".to_owned(),
            Err(e) if e.is::<Fatal>() => return Err(e.context(format!("while waiting for {what}"))),
            Err(e) => format!("{e:#}"),
        };
        if start.elapsed() >= deadline {
            bail!("timed out after {deadline:?} waiting for {what}; last answer: {last}");
        }
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
}

/// Like [`wait_for`] for a condition that reports what it saw: waits until
/// `probe` returns `(true, _)` and reports the last observation on timeout.
pub async fn wait_until<O, F, Fut>(what: &str, deadline: Duration, mut probe: F) -> Result<O>
where
    O: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(bool, O)>>,
{
    wait_for(what, deadline, || {
        let fut = probe();
        async move {
            let (done, seen) = fut.await?;
            if done {
                Ok(Some(seen))
            } else {
                bail!("saw {seen:?}")
            }
        }
    })
    .await
}
