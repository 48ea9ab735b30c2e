//! Witness cosignatures on the hub's checkpoints: collected from the
//! witnesses the hub is configured with, kept beside the store, served with
//! the checkpoints (`GET /checkpoint`, and every `SignedCheckpoint.note` of
//! the audit API: latest, by size, in inclusion and consistency proofs and
//! receipts).
//!
//! **Pull, not push.** The hub asks each witness for its last cosigned
//! checkpoint (`GET <witness>/cosigned?origin=<origin>`, plain HTTP/1.1)
//! every `--witness-collect-ms`. The hub thus exposes no new endpoint that
//! writes (nothing to authenticate or rate-limit), a witness needs no
//! credential to the hub beyond the auditor token it follows with, and a
//! hub or witness that restarts simply catches up at the next poll. Nothing
//! a witness answers is trusted: a cosignature is kept only if it verifies
//! under a configured witness key (`--witness-key`, a C2SP vkey) over the
//! body of the checkpoint this hub signed at that size; the transport
//! needs no integrity of its own.
//!
//! Kept in `<data-dir>/witness-cosignatures.json` (written to a temporary
//! file, fsynced, renamed): the cosigned notes of the newest
//! [`COSIGNED_SIZES_KEPT_MAX`] tree sizes, each the hub's note with the
//! hub's signature and the witnesses' cosignature lines, so `mpp-hub audit
//! verify --data-dir` on a copy of the directory finds them. Losing the
//! file loses no safety: cosignatures are statements the witnesses keep
//! making.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{bail, Context};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use mpp_core::checkpoint::SignedCheckpoint;
use mpp_core::note::{self, CosignerKey, NoteSignature};
use mpp_store::{SledStore, Store};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch;
use tracing::{debug, warn};

/// The file, under the data directory.
pub const COSIGNATURES_FILE: &str = "witness-cosignatures.json";

/// Its `format`.
pub const COSIGNATURES_FORMAT: &str = "mpp-hub/witness-cosignatures/v1";

/// Tree sizes whose cosignatures are kept (the newest).
pub const COSIGNED_SIZES_KEPT_MAX: usize = 64;

/// Largest answer read from a witness, in bytes.
pub const WITNESS_RESPONSE_BYTES_MAX: usize = 64 * 1024;

/// Largest cosignatures file read, in bytes.
pub const COSIGNATURES_FILE_BYTES_MAX: u64 = (COSIGNED_SIZES_KEPT_MAX * 4 * 1024) as u64;

/// How long one request to a witness may take, in milliseconds.
pub const WITNESS_REQUEST_TIMEOUT_MS: u64 = 5_000;

/// Default `--witness-collect-ms`.
pub const WITNESS_COLLECT_MS_DEFAULT: u64 = 1_000;

/// Most witnesses a hub is configured with.
pub const WITNESSES_MAX: usize = 32;

#[derive(Debug, Default, Serialize, Deserialize)]
struct CosignaturesFile {
    format: String,
    /// Tree size → cosigned note.
    notes: BTreeMap<u64, String>,
}

fn ed25519(pk: &[u8; 32], m: &[u8], s: &[u8; 64]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, pk).verify(m, s).is_ok()
}

/// The cosignatures of `keys` that verify over `body` among `signatures`,
/// one per key, in the order of `keys`.
pub fn valid_cosignatures(
    body: &str,
    signatures: &[NoteSignature],
    keys: &[CosignerKey],
) -> Vec<NoteSignature> {
    keys.iter()
        .filter_map(|k| k.verify(body, signatures, |m, s| ed25519(&k.public_key, m, s)))
        .map(|c| c.to_note_signature())
        .collect()
}

/// The hub's cosigned notes.
#[derive(Debug)]
pub struct Cosignatures {
    path: PathBuf,
    origin: String,
    keys: Vec<CosignerKey>,
    notes: RwLock<BTreeMap<u64, String>>,
}

/// Reads `<data_dir>/witness-cosignatures.json` (tree size → cosigned
/// note); empty when there is none. Nothing in it is verified here.
pub fn read_file(data_dir: &Path) -> anyhow::Result<BTreeMap<u64, String>> {
    let path = data_dir.join(COSIGNATURES_FILE);
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    if std::fs::metadata(&path)?.len() > COSIGNATURES_FILE_BYTES_MAX {
        bail!("{} is larger than {COSIGNATURES_FILE_BYTES_MAX} bytes", path.display());
    }
    let f: CosignaturesFile = serde_json::from_slice(&std::fs::read(&path)?)
        .with_context(|| format!("{} does not parse", path.display()))?;
    if f.format != COSIGNATURES_FORMAT {
        bail!("{} is not of format {COSIGNATURES_FORMAT}", path.display());
    }
    Ok(f.notes)
}

impl Cosignatures {
    /// Loads the file in `data_dir` (when there is one), keeping the
    /// cosignature lines that verify under `keys`.
    pub fn open(data_dir: &Path, origin: &str, keys: Vec<CosignerKey>) -> anyhow::Result<Cosignatures> {
        if keys.len() > WITNESSES_MAX {
            bail!("at most {WITNESSES_MAX} witness keys");
        }
        let mut notes = BTreeMap::new();
        for (size, text) in read_file(data_dir)? {
            if let Ok((body, sigs)) = note::parse(&text) {
                if !valid_cosignatures(body, &sigs, &keys).is_empty() {
                    notes.insert(size, text);
                }
            }
        }
        Ok(Cosignatures {
            path: data_dir.join(COSIGNATURES_FILE),
            origin: origin.to_owned(),
            keys,
            notes: RwLock::new(notes),
        })
    }

    /// The hub's origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// `cp`'s note with the cosignatures held for its size (only those over
    /// exactly its body); `None` for a checkpoint without a note.
    pub fn note_of(&self, cp: &SignedCheckpoint) -> Option<String> {
        let own = cp.to_note()?;
        let held =
            self.notes.read().unwrap_or_else(|e| e.into_inner()).get(&cp.checkpoint.tree_size).cloned();
        let Some(held) = held else { return Some(own) };
        let (Ok((body, own_sigs)), Ok((_, held_sigs))) = (note::parse(&own), note::parse(&held)) else {
            return Some(own);
        };
        let mut sigs = own_sigs;
        sigs.extend(valid_cosignatures(body, &held_sigs, &self.keys));
        Some(note::render(body, &sigs))
    }

    /// Merges the cosignatures of `witness_note` (a note of the checkpoint
    /// `own` of this hub) that verify; returns how many are new.
    pub fn merge(&self, own: &SignedCheckpoint, witness_note: &str) -> anyhow::Result<usize> {
        let own_note = own.to_note().context("the checkpoint has no note")?;
        let (body, _) = note::parse(&own_note)?;
        let (their_body, their_sigs) = note::parse(witness_note)?;
        if their_body != body {
            bail!("the witness cosigned another body than the hub's checkpoint of that size");
        }
        let size = own.checkpoint.tree_size;
        let mut notes = self.notes.write().unwrap_or_else(|e| e.into_inner());
        // Lines held for another body (a store restored over this
        // directory) are dropped.
        let mut held = match notes.get(&size).map(|n| note::parse(n)) {
            Some(Ok((b, s))) if b == body => s,
            _ => Vec::new(),
        };
        held.retain(|s| s.signature.len() == note::COSIGNATURE_V1_BYTES);
        let mut new = 0;
        for c in valid_cosignatures(body, &their_sigs, &self.keys) {
            if let Some(old) = held.iter_mut().find(|s| s.name == c.name && s.key_hash == c.key_hash) {
                *old = c;
            } else {
                held.push(c);
                new += 1;
            }
        }
        if new == 0 {
            return Ok(0);
        }
        let (_, mut sigs) = note::parse(&own_note)?;
        sigs.extend(held);
        notes.insert(size, note::render(body, &sigs));
        while notes.len() > COSIGNED_SIZES_KEPT_MAX {
            notes.pop_first();
        }
        let file = CosignaturesFile { format: COSIGNATURES_FORMAT.to_owned(), notes: notes.clone() };
        drop(notes);
        write_durably(&self.path, &serde_json::to_vec_pretty(&file)?)?;
        Ok(new)
    }
}

fn write_durably(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// `GET /checkpoint`: the latest checkpoint note with its cosignatures.
pub fn checkpoint_router(cosignatures: Arc<Cosignatures>, store: SledStore) -> Router {
    Router::new().route("/checkpoint", get(checkpoint)).with_state((cosignatures, store))
}

async fn checkpoint(State((cos, store)): State<(Arc<Cosignatures>, SledStore)>) -> Response {
    let text = |code, body: String| {
        (
            code,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")],
            body,
        )
            .into_response()
    };
    match store.latest_checkpoint() {
        Ok(Some(cp)) => match cos.note_of(&cp) {
            Some(n) => text(StatusCode::OK, n),
            None => mpp_lookup::error::ApiError::new(
                mpp_core::ReasonCode::NotFound,
                "the latest checkpoint was signed before notes were",
            )
            .into_response(),
        },
        Ok(None) => mpp_lookup::error::ApiError::new(
            mpp_core::ReasonCode::NotFound,
            "no checkpoint has been signed yet",
        )
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "Reading the latest checkpoint failed");
            mpp_lookup::error::ApiError::internal().into_response()
        }
    }
}

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

/// `app` with `GET /checkpoint` answered with the cosignatures, when held.
pub fn with_cosigned_checkpoint(
    app: Router,
    cosignatures: Option<&Arc<Cosignatures>>,
    store: SledStore,
) -> Router {
    match cosignatures {
        Some(c) => checkpoint_router(c.clone(), store).fallback_service(app),
        None => app,
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

    use mpp_core::checkpoint::{Checkpoint, KeyId, Origin};
    use mpp_core::note::Cosignature;
    use ring::signature::{Ed25519KeyPair, KeyPair as _};

    fn pair(seed: u8) -> (Ed25519KeyPair, [u8; 32]) {
        let p = Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap();
        let pk = p.public_key().as_ref().try_into().unwrap();
        (p, pk)
    }

    fn signed(size: u64, root: u8) -> SignedCheckpoint {
        let (hub, pk) = pair(1);
        let origin = Origin::new("mpp-hub/t").unwrap();
        Checkpoint {
            origin: origin.clone(),
            key_id: KeyId::of(&pk),
            tree_size: size,
            root_hash: [root; 32],
            head_hash: [0; 32],
            last_stream_seq: size,
            last_entry_time_ns: 0,
            signed_at_ms: 0,
        }
        .sign_with_note(note::key_hash(origin.as_str(), &pk), |m| hub.sign(m).as_ref().try_into().unwrap())
    }

    /// `cp`'s note cosigned by the witness of `seed`.
    fn cosigned_by(cp: &SignedCheckpoint, seed: u8) -> (CosignerKey, String) {
        let (w, pk) = pair(seed);
        let key = CosignerKey { name: format!("w{seed}.example/witness"), public_key: pk };
        let own = cp.to_note().unwrap();
        let (body, mut sigs) = note::parse(&own).unwrap();
        let c = Cosignature::sign(&key.name, &pk, 1_700_000_000, body, |m| {
            w.sign(m).as_ref().try_into().unwrap()
        });
        sigs.push(c.to_note_signature());
        (key, note::render(body, &sigs))
    }

    #[test]
    fn only_valid_cosignatures_of_the_hub_s_own_body_are_kept_served_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let cp = signed(5, 7);
        let (k2, by2) = cosigned_by(&cp, 2);
        let (k3, by3) = cosigned_by(&cp, 3);
        let (_, by_stranger) = cosigned_by(&cp, 4);
        let cos = Cosignatures::open(dir.path(), "mpp-hub/t", vec![k2.clone(), k3.clone()]).unwrap();
        assert_eq!(cos.note_of(&cp), cp.to_note(), "nothing held yet");
        assert_eq!(cos.merge(&cp, &by_stranger).unwrap(), 0, "a key not configured");
        assert_eq!(cos.merge(&cp, &by2).unwrap(), 1);
        assert_eq!(cos.merge(&cp, &by2).unwrap(), 0, "the same witness again");
        // The same witnesses over another root of size 5: not this hub's body.
        let (_, other) = cosigned_by(&signed(5, 8), 3);
        assert!(cos.merge(&cp, &other).is_err());
        assert_eq!(cos.merge(&cp, &by3).unwrap(), 1);
        let served = cos.note_of(&cp).unwrap();
        let (body, sigs) = note::parse(&served).unwrap();
        assert_eq!(valid_cosignatures(body, &sigs, &[k2.clone(), k3.clone()]).len(), 2);
        // A checkpoint of that size with another body gets none of them.
        assert_eq!(cos.note_of(&signed(5, 9)), signed(5, 9).to_note());
        // Reloaded from the file after a restart.
        let again = Cosignatures::open(dir.path(), "mpp-hub/t", vec![k2, k3]).unwrap();
        assert_eq!(again.note_of(&cp), Some(served));
    }
}
