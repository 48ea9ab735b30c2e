//! Collecting the witnesses' cosignatures on the hub's checkpoints: the
//! hub asks each witness it is configured with and merges what verifies
//! into the store the lookups serve from (`mpp_lookup::cosigned`:
//! `GET /checkpoint`, the tracking page's receipt check) and the audit API
//! reads (every `SignedCheckpoint.note`: latest, by size, in inclusion and
//! consistency proofs and receipts).
//!
//! **Pull, not push.** The hub asks each witness for its last cosigned
//! checkpoint (`GET <witness>/cosigned?origin=<origin>`, plain HTTP/1.1)
//! every `--witness-collect-ms`. The hub thus exposes no new endpoint that
//! writes (nothing to authenticate or rate-limit), a witness needs no
//! credential to the hub beyond the auditor token it follows with, and a
//! hub or witness that restarts simply catches up at the next poll. Nothing
//! a witness answers is trusted: [`Cosignatures::merge`] keeps a
//! cosignature only if it verifies under a configured witness key over the
//! body of the checkpoint this hub signed at that size; the transport
//! needs no integrity of its own.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use mpp_core::note::{self, CosignerKey};
use mpp_store::{SledStore, Store};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch;
use tracing::{debug, warn};

pub use mpp_lookup::cosigned::{
    read_file, valid_cosignatures, Cosignatures, COSIGNATURES_FILE, COSIGNATURES_FORMAT,
    COSIGNED_SIZES_KEPT_MAX, WITNESSES_MAX,
};

/// Largest answer read from a witness, in bytes.
pub const WITNESS_RESPONSE_BYTES_MAX: usize = 64 * 1024;

/// How long one request to a witness may take, in milliseconds.
pub const WITNESS_REQUEST_TIMEOUT_MS: u64 = 5_000;

/// Default `--witness-collect-ms`.
pub const WITNESS_COLLECT_MS_DEFAULT: u64 = 1_000;

/// An `http://host:port[/path]` URL, split.
fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest =
        url.strip_prefix("http://").context("a witness URL is http://host:port (its answers are signed)")?;
    let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
    if host.is_empty() {
        bail!("{url:?} names no host");
    }
    Ok((host.to_owned(), format!("/{}", path.trim_end_matches('/'))))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET <url>/cosigned?origin=<origin>`: the witness's last cosigned note
/// of this hub, `None` on 404.
pub async fn fetch_cosigned(url: &str, origin: &str) -> anyhow::Result<Option<String>> {
    let (host, base) = split_url(url)?;
    let path = format!("{}/cosigned?origin={}", base.trim_end_matches('/'), percent_encode(origin));
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(&host).await?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
            .await?;
        let mut buf = Vec::new();
        s.take(WITNESS_RESPONSE_BYTES_MAX as u64 + 1).read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(Duration::from_millis(WITNESS_REQUEST_TIMEOUT_MS), fut)
        .await
        .context("the witness did not answer in time")??;
    if buf.len() > WITNESS_RESPONSE_BYTES_MAX {
        bail!("the witness answered more than {WITNESS_RESPONSE_BYTES_MAX} bytes");
    }
    let text = String::from_utf8(buf).context("the witness's answer is not UTF-8")?;
    let (head, body) = text.split_once("\r\n\r\n").context("no end of headers")?;
    let status = head.split(' ').nth(1).context("no status")?;
    let lower = head.to_ascii_lowercase();
    if lower.contains("transfer-encoding: chunked") {
        bail!("the witness answered chunked");
    }
    match status {
        "200" => {
            let len = lower
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(body.len());
            Ok(Some(body.get(..len).context("a short body")?.to_owned()))
        }
        "404" => Ok(None),
        other => bail!("the witness answered {other}"),
    }
}

/// Collects cosignatures from `urls` every `every` until `stop`.
pub async fn collect(
    cosignatures: Arc<Cosignatures>,
    store: SledStore,
    urls: Vec<String>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        for url in &urls {
            match collect_one(&cosignatures, &store, url).await {
                Ok(0) => {}
                Ok(n) => debug!(witness = %url, new = n, "Cosignatures collected"),
                Err(e) => warn!(witness = %url, error = %format!("{e:#}"), "Collecting cosignatures failed"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn collect_one(cos: &Cosignatures, store: &SledStore, url: &str) -> anyhow::Result<usize> {
    let Some(text) = fetch_cosigned(url, cos.origin()).await? else { return Ok(0) };
    let (body, _) = note::parse(&text)?;
    let size = note::parse_checkpoint(body)?.tree_size;
    let Some(own) = store.checkpoint(size)? else {
        bail!("the witness cosigned tree size {size}, which this hub never signed");
    };
    cos.merge(&own, &text)
}

/// The flags of `mpp-hub serve` that name the witnesses.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WitnessArgs {
    /// A witness to collect cosignatures from: its HTTP base URL
    /// (`http://host:port`, what `mpp-witness serve --http-addr` serves;
    /// its answers are signed, so plain HTTP). Repeat the flag, or separate
    /// URLs with `,`.
    #[arg(long = "witness-url", env = "MPP_WITNESS_URLS", value_delimiter = ',')]
    pub urls: Vec<String>,
    /// A witness key whose cosignatures the hub keeps and serves: a C2SP
    /// vkey `<name>+<key hash>+<base64 key>` (what `mpp-witness public-key`
    /// prints). Repeat the flag, or separate keys with `,`.
    #[arg(long = "witness-key", env = "MPP_WITNESS_KEYS", value_delimiter = ',', value_parser = parse_vkey)]
    pub keys: Vec<CosignerKey>,
    /// How often the witnesses are asked for cosignatures, in milliseconds.
    #[arg(long, env = "MPP_WITNESS_COLLECT_MS", default_value_t = WITNESS_COLLECT_MS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub witness_collect_ms: u64,
}

/// Parses a witness vkey (a clap value parser).
pub fn parse_vkey(s: &str) -> Result<CosignerKey, String> {
    CosignerKey::parse_vkey(s).map_err(|e| e.to_string())
}

impl WitnessArgs {
    /// The hub's cosignatures when witnesses are configured: their file in
    /// `data_dir` loaded, and the collector spawned (until `stop`).
    pub fn start(
        &self,
        data_dir: &Path,
        origin: &str,
        store: SledStore,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<Option<Arc<Cosignatures>>> {
        if self.keys.is_empty() {
            if !self.urls.is_empty() {
                bail!("--witness-url without --witness-key: no cosignature could be checked");
            }
            return Ok(None);
        }
        if self.urls.len() > WITNESSES_MAX {
            bail!("at most {WITNESSES_MAX} --witness-url");
        }
        for u in &self.urls {
            split_url(u).with_context(|| format!("--witness-url {u:?}"))?;
        }
        let cos = Arc::new(Cosignatures::open(data_dir, origin, self.keys.clone())?);
        tracing::info!(
            witnesses = self.urls.len(),
            keys = self.keys.len(),
            "Collecting witness cosignatures"
        );
        tokio::spawn(collect(
            cos.clone(),
            store,
            self.urls.clone(),
            Duration::from_millis(self.witness_collect_ms),
            stop,
        ));
        Ok(Some(cos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn witness_urls_are_plain_http_with_an_optional_base() {
        assert_eq!(split_url("http://127.0.0.1:8090").unwrap(), ("127.0.0.1:8090".into(), "/".into()));
        assert_eq!(split_url("http://w.example/x/").unwrap(), ("w.example".into(), "/x".into()));
        assert!(split_url("https://w.example").is_err());
        assert_eq!(percent_encode("mpp-hub/a b"), "mpp-hub%2Fa%20b");
    }
}
