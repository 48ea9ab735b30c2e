//! A real headless browser for page tests: Debian's `chromium`, driven over
//! the Chrome DevTools Protocol (CDP) on a WebSocket, without Node.
//!
//! Chromium is started with `--headless --no-sandbox --disable-gpu` (and
//! flags that keep it from calling home), a fresh profile in a temporary
//! directory and `--remote-debugging-port=0`; the port it picked is read
//! from `DevToolsActivePort` in the profile. One page target is attached
//! with a flat session, and the test drives it: navigate, evaluate
//! JavaScript (to fill a form, click, read the DOM), take a screenshot.
//!
//! Chromium is found through `MPP_CHROMIUM`, else `chromium`,
//! `chromium-browser` or `google-chrome` on `PATH`. Without one, launching
//! fails with a message saying how to install it (tests/run-all.sh does):
//! a page test must fail, not skip, when there is no browser.
//!
//! Every wait polls with a deadline; nothing sleeps to synchronise.

use std::collections::VecDeque;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::wait::wait_for;

/// How long Chromium may take to start and open its DevTools port.
pub const LAUNCH_DEADLINE: Duration = Duration::from_secs(60);

/// How long one CDP command may take.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(30);

/// How long a navigation (or a form submission) may take to load.
pub const LOAD_DEADLINE: Duration = Duration::from_secs(30);

/// Most CDP events kept while waiting for a command's answer.
pub const EVENTS_KEPT_MAX: usize = 1000;

/// A phone's viewport: 412 × 915 CSS pixels (a common Android size).
pub const PHONE_VIEWPORT: (u32, u32) = (412, 915);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The Chromium executable, or a message saying how to get one.
pub fn find_chromium() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("MPP_CHROMIUM").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("MPP_CHROMIUM={} is not a file", p.display());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "no headless browser: chromium is not on PATH (nor MPP_CHROMIUM set). Install Debian's chromium \
         (`apt-get install -y chromium`; tests/run-all.sh does this when it is missing)"
    )
}

/// A running headless Chromium with one attached page.
#[derive(Debug)]
pub struct Browser {
    child: Child,
    ws: Ws,
    session: String,
    next_id: u64,
    events: VecDeque<Value>,
    /// Whether `child` was waited for.
    reaped: bool,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium headless with a phone-sized window and attaches a page.
    pub async fn launch() -> Result<Self> {
        let exe = find_chromium()?;
        let profile = crate::temp_dir("mpp-chromium-")?;
        let log = std::fs::File::create(profile.path().join("chromium.log")).context("chromium log")?;
        let (w, h) = PHONE_VIEWPORT;
        let child = Command::new(&exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-default-apps",
                "--mute-audio",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
            ])
            .arg(format!("--window-size={w},{h}"))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("chromium log")?)
            .stderr(log)
            // Its own process group, so that closing it ends its helper
            // processes too (they write into the profile, which is removed
            // right after).
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let mut browser_guard = ChildGuard(Some(child));
        let port_file = profile.path().join("DevToolsActivePort");
        let ws_url = {
            let guard = &mut browser_guard;
            wait_for("chromium to open its DevTools port", LAUNCH_DEADLINE, || {
                let exited = guard.0.as_mut().map(|c| c.try_wait());
                let text = std::fs::read_to_string(&port_file);
                let log_path = profile.path().join("chromium.log");
                async move {
                    if let Some(Ok(Some(status))) = exited {
                        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                        return Err(
                            crate::wait::Fatal(format!("chromium exited with {status}: {log}")).into()
                        );
                    }
                    let text = text?;
                    let mut lines = text.lines();
                    match (lines.next(), lines.next()) {
                        (Some(port), Some(path)) if !port.is_empty() && path.starts_with('/') => {
                            Ok(Some(format!("ws://127.0.0.1:{}{path}", port.trim())))
                        }
                        _ => bail!("DevToolsActivePort is {text:?}"),
                    }
                }
            })
            .await?
        };
        let (ws, _) =
            tokio::time::timeout(COMMAND_DEADLINE, tokio_tungstenite::connect_async(ws_url.as_str()))
                .await
                .map_err(|_| anyhow!("connecting to {ws_url} timed out"))?
                .with_context(|| format!("cannot connect to chromium at {ws_url}"))?;
        let child = browser_guard.0.take().ok_or_else(|| anyhow!("chromium handle lost"))?;
        let mut b = Browser {
            child,
            ws,
            session: String::new(),
            next_id: 1,
            events: VecDeque::new(),
            reaped: false,
            _profile: profile,
        };
        let target = b.call("Target.createTarget", json!({ "url": "about:blank" })).await?;
        let target_id =
            target["targetId"].as_str().ok_or_else(|| anyhow!("no targetId: {target}"))?.to_owned();
        let attached =
            b.call("Target.attachToTarget", json!({ "targetId": target_id, "flatten": true })).await?;
        b.session =
            attached["sessionId"].as_str().ok_or_else(|| anyhow!("no sessionId: {attached}"))?.to_owned();
        b.call("Page.enable", json!({})).await?;
        b.call("Runtime.enable", json!({})).await?;
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": w, "height": h, "deviceScaleFactor": 1, "mobile": true }),
        )
        .await?;
        Ok(b)
    }

    /// Sends one CDP command (to the page session once attached) and waits
    /// for its result; a CDP error is an error.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            msg["sessionId"] = Value::String(self.session.clone());
        }
        self.ws.send(Message::text(msg.to_string())).await.with_context(|| format!("sending {method}"))?;
        let deadline = tokio::time::Instant::now() + COMMAND_DEADLINE;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| anyhow!("{method}: no answer within {COMMAND_DEADLINE:?}"))?;
            let frame = match next {
                Some(Ok(f)) => f,
                Some(Err(e)) => bail!("{method}: websocket error: {e}"),
                None => bail!("{method}: chromium closed the connection"),
            };
            let text = match frame {
                Message::Text(t) => t.to_string(),
                Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
                Message::Close(_) => bail!("{method}: chromium closed the connection"),
                _ => continue,
            };
            let v: Value = serde_json::from_str(&text).with_context(|| format!("{method}: bad CDP JSON"))?;
            if v.get("id").and_then(Value::as_u64) == Some(id) {
                if let Some(err) = v.get("error") {
                    bail!("{method} failed: {err}");
                }
                return Ok(v.get("result").cloned().unwrap_or(Value::Null));
            }
            if v.get("method").is_some() {
                if self.events.len() == EVENTS_KEPT_MAX {
                    self.events.pop_front();
                }
                self.events.push_back(v);
            }
        }
    }

    /// Evaluates a JavaScript expression in the page and returns its value
    /// (promises awaited). A thrown exception is an error.
    pub async fn eval(&mut self, expression: &str) -> Result<Value> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await?;
        if let Some(e) = r.get("exceptionDetails") {
            bail!("JavaScript threw: {e}\nin: {expression}");
        }
        Ok(r["result"].get("value").cloned().unwrap_or(Value::Null))
    }

    /// Evaluates an expression expected to give a string.
    pub async fn eval_string(&mut self, expression: &str) -> Result<String> {
        let v = self.eval(expression).await?;
        v.as_str().map(str::to_owned).ok_or_else(|| anyhow!("{expression} gave {v}, not a string"))
    }

    /// Runs `action` (which starts a navigation: `location = …`, a click on
    /// a link, a form submission) and waits until the new document has
    /// loaded.
    pub async fn navigate_by(&mut self, action: &str) -> Result<()> {
        // A marker on the old document: gone once a new one is loaded.
        self.eval("window.__mppOldDocument = true").await?;
        self.eval(&format!("setTimeout(() => {{ {action} }}, 0); true")).await?;
        let deadline = tokio::time::Instant::now() + LOAD_DEADLINE;
        loop {
            // Evaluation can fail while the navigation swaps documents; retry.
            let state = self
                .eval("(window.__mppOldDocument === undefined) ? document.readyState : 'old'")
                .await
                .unwrap_or(Value::Null);
            if state == "complete" {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let url = self.eval_string("location.href").await.unwrap_or_default();
                bail!(
                    "no new page loaded within {LOAD_DEADLINE:?} after `{action}` (at {url}, state {state})"
                );
            }
            tokio::task::yield_now().await;
        }
    }

    /// Opens `url` and waits until it has loaded.
    pub async fn goto(&mut self, url: &str) -> Result<()> {
        let target = serde_json::to_string(url)?;
        self.navigate_by(&format!("location.href = {target};")).await
    }

    /// The page's visible text (`document.body.innerText`).
    pub async fn text(&mut self) -> Result<String> {
        self.eval_string("document.body ? document.body.innerText : ''").await
    }

    /// Saves a PNG screenshot of the whole page to `path` (directories created).
    pub async fn screenshot(&mut self, path: &Path) -> Result<()> {
        let r = self
            .call("Page.captureScreenshot", json!({ "format": "png", "captureBeyondViewport": true }))
            .await?;
        let data = r["data"].as_str().ok_or_else(|| anyhow!("no screenshot data"))?;
        let png = decode_base64(data)?;
        if !png.starts_with(b"\x89PNG") {
            bail!("the screenshot is not a PNG");
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }

    /// Closes the browser (also done, forcefully, on drop).
    pub async fn close(mut self) -> Result<()> {
        let _ = self.call("Browser.close", json!({})).await;
        self.kill_group();
        Ok(())
    }

    /// Kills Chromium's whole process group (its renderers and helpers
    /// too, which would otherwise go on writing into the profile while it
    /// is removed) and reaps the main process.
    fn kill_group(&mut self) {
        // Until it is reaped, the main process's id (its group's) cannot
        // be taken by another process; after, the group is never signalled.
        if self.reaped {
            return;
        }
        self.reaped = true;
        let group = format!("-{}", self.child.id());
        let killed = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !killed {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill_group();
    }
}

/// Kills a child process unless it was taken out.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Decodes standard base64 (padding optional); CDP sends screenshots so.
pub fn decode_base64(text: &str) -> Result<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace() && *b != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c).ok_or_else(|| anyhow!("bad base64 character {c:?}"))? << (18 - 6 * i);
        }
        let n = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => bail!("truncated base64"),
        };
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + n]);
    }
    Ok(out)
}

/// The workspace's test artifact folder (`<workspace>/test-artifacts`,
/// git-ignored), or `MPP_TEST_ARTIFACTS` when set.
pub fn artifact_dir() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("MPP_TEST_ARTIFACTS").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    // The test executable lives in <workspace>/target/<profile>/deps/.
    let target = crate::bins::target_dir()?;
    let workspace = target
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("cannot find the workspace above {}", target.display()))?;
    Ok(workspace.join("test-artifacts"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_base64("aGk=").unwrap(), b"hi");
        assert_eq!(decode_base64("").unwrap(), b"");
        assert_eq!(decode_base64("/+8=").unwrap(), [0xff, 0xef]);
        assert!(decode_base64("a").is_err());
        assert!(decode_base64("a*bc").is_err());
    }
}
