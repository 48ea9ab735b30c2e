//! The hostile-input corpus (`tests/corpus/`, see its README.md) against
//! real processes: every `nats/` entry published raw onto a private
//! nats-server, every `http/` entry sent byte for byte over TCP to a real
//! `mpp-hub`, every `grpc/` entry sent as raw protobuf bytes to the hub's
//! and `mpp-dukcapil`'s gRPC servers. Each must get its expected answer
//! within a deadline (no stall, no 5xx), the hub stays ready, ingest keeps
//! going (the corpus ends with a valid event, accepted), and the stopped
//! hub's log holds every NATS entry with its expected verdict and reason.
//!
//! The corpus files are generated and checked by
//! `hub/lookup/tests/corpus.rs`, which also runs them in-process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use bytes::{Buf, BufMut, Bytes};
use mpp_tests::envelope::{publish, stream_last_seq};
use mpp_tests::http::{parse_corpus_request, CorpusRequest};
use mpp_tests::services::{nats_and_hub, AgencyOptions};
use mpp_tests::store::audit_stopped_hub;
use mpp_tests::{AgencyProcess, READY_DEADLINE};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;

const CATCH_UP_DEADLINE: Duration = Duration::from_secs(60);
/// How long one HTTP or gRPC answer may take before it counts as a stall.
const ANSWER_DEADLINE: Duration = Duration::from_secs(10);
/// Most bytes read of one HTTP answer.
const ANSWER_BYTES_MAX: u64 = 1 << 20;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

fn sorted_files(sub: &str, ext: &str) -> Result<Vec<PathBuf>> {
    let d = corpus_dir().join(sub);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&d)
        .with_context(|| format!("reading {}", d.display()))?
        .flatten()
        .map(|f| f.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    Ok(files)
}

fn stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

fn read_json(p: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
}

fn b64_decode(s: &str) -> Result<Vec<u8>> {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = B64.iter().position(|&a| a == c).ok_or_else(|| anyhow!("not base64: {c}"))? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}

fn str_of<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// Whether `status` matches an expectation such as `404` or `4xx`.
fn status_matches(expected: &str, status: u16) -> bool {
    match expected.strip_suffix("xx") {
        Some(class) => class == (status / 100).to_string(),
        None => expected == status.to_string(),
    }
}

// ---------------------------------------------------------------------------
// A gRPC codec of raw bytes: the request goes out exactly as the corpus
// holds it, and an answer is only counted, not decoded.

#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

#[derive(Debug)]
struct RawEncoder;

#[derive(Debug)]
struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// Sends `request` to `path` and returns the gRPC code name and the
/// `mpp-reason-code` metadata (`-` when absent).
async fn grpc_call(
    endpoint: &str,
    path: &str,
    request: Bytes,
    token: Option<&str>,
) -> Result<(String, String)> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())?.connect().await?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| anyhow!("channel not ready: {e}"))?;
    let mut req = tonic::Request::new(request);
    if let Some(t) = token {
        req.metadata_mut().insert("authorization", format!("Bearer {t}").parse()?);
    }
    let path = PathAndQuery::from_str(path)?;
    match grpc.unary(req, path, RawCodec).await {
        Ok(_) => Ok(("Ok".to_owned(), "-".to_owned())),
        Err(status) => {
            let reason = status
                .metadata()
                .get("mpp-reason-code")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            Ok((format!("{:?}", status.code()), reason))
        }
    }
}

/// An `http/` entry: metadata lines, then the raw request with LF line
/// ends, sent with CRLF in its head.
struct HttpEntry {
    name: String,
    status: String,
    reason: String,
    raw: Vec<u8>,
}

fn http_entries() -> Result<Vec<HttpEntry>> {
    let mut out = Vec::new();
    for p in sorted_files("http", "txt")? {
        let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        let CorpusRequest { meta, raw } = parse_corpus_request(&bytes);
        out.push(HttpEntry {
            name: stem(&p),
            status: meta.get("expect-status").cloned().unwrap_or_default(),
            reason: meta.get("expect-reason").cloned().unwrap_or_default(),
            raw,
        });
    }
    Ok(out)
}

/// Sends raw bytes over a fresh TCP connection and reads the answer to its
/// end: the status (if an HTTP status line came back) and the reason code
/// of a JSON error body (`-` when none).
async fn http_send(addr: SocketAddr, raw: &[u8]) -> Result<(Option<u16>, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(raw).await?;
    let mut answer = Vec::new();
    // Every request says `Connection: close`, so the server closes after its
    // answer. (No write shutdown here: hyper drops the answer to a client
    // that half-closed before it was written.)
    (&mut s).take(ANSWER_BYTES_MAX).read_to_end(&mut answer).await.ok();
    let text = String::from_utf8_lossy(&answer);
    let status = text.strip_prefix("HTTP/1.1 ").and_then(|r| r.get(..3)).and_then(|c| c.parse().ok());
    let reason = text
        .split_once("\"code\":\"")
        .and_then(|(_, r)| r.split_once('"'))
        .map_or("-".to_owned(), |(c, _)| c.to_owned());
    Ok((status, reason))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_entry_gets_its_answer_over_real_nats_tcp_and_grpc() -> Result<()> {
    let (nats, mut hub) = nats_and_hub(READY_DEADLINE).await?;
    let js = nats.jetstream().await?;

    // NATS: every entry published raw, without Nats-Msg-Id, so replays reach the stream.
    let mut published = Vec::new();
    for p in sorted_files("nats", "json")? {
        let v = read_json(&p)?;
        let mut payload = b64_decode(str_of(&v, "/payload/base64"))?;
        if let (Some(b), Some(n)) = (
            v.pointer("/payload/fill_byte").and_then(Value::as_u64),
            v.pointer("/payload/fill_len").and_then(Value::as_u64),
        ) {
            payload.resize(payload.len() + n as usize, b as u8);
        }
        let ack = publish(&js, str_of(&v, "/subject"), None, Bytes::from(payload.clone()))
            .await
            .with_context(|| format!("publishing {}", stem(&p)))?;
        ensure!(!ack.duplicate, "JetStream dropped {} as a duplicate", stem(&p));
        published.push((stem(&p), v, payload, ack.sequence));
    }
    ensure!(published.len() >= 60, "only {} nats entries", published.len());
    let last = stream_last_seq(&js).await?;
    hub.wait_caught_up(last, CATCH_UP_DEADLINE).await?;
    let ready = hub.get("/readyz").await?;
    ensure!(ready.status == 200, "hub not ready after the NATS corpus: {} {}", ready.status, ready.text());
    // Dukcapil (for the gRPC entries) starts only now: the standards it
    // publishes when it starts would otherwise race the corpus's own.
    let mut dukcapil = AgencyProcess::spawn("mpp-dukcapil", &nats.url(), AgencyOptions::region("1771"))?;
    dukcapil.wait_listening(READY_DEADLINE).await?;

    // The agency starts only now: the service standards it publishes when it
    // starts would otherwise race the corpus's own (the first version 1 in
    // the stream is in force; a later one is stale).
    let mut dukcapil = AgencyProcess::spawn("mpp-dukcapil", &nats.url(), AgencyOptions::region("1771"))?;
    dukcapil.wait_listening(READY_DEADLINE).await?;

    // HTTP over TCP, byte for byte.
    let mut failures = Vec::new();
    let entries = http_entries()?;
    ensure!(entries.len() >= 30, "only {} http entries", entries.len());
    for e in &entries {
        let answer = tokio::time::timeout(ANSWER_DEADLINE, http_send(hub.http_addr(), &e.raw)).await;
        let (status, reason) = match answer {
            Err(_) => {
                failures.push(format!("http {}: no answer within {ANSWER_DEADLINE:?}", e.name));
                continue;
            }
            Ok(r) => r.with_context(|| format!("http {}", e.name))?,
        };
        let ok = status.is_some_and(|s| s < 500 && status_matches(&e.status, s)) && reason == e.reason;
        println!("http {:<32} -> {status:?} {reason}", e.name);
        if !ok {
            failures.push(format!(
                "http {}: answered {status:?} {reason}, expected {} {}",
                e.name, e.status, e.reason
            ));
        }
    }

    // gRPC, raw request bytes.
    let grpc_files = sorted_files("grpc", "json")?;
    ensure!(grpc_files.len() >= 15, "only {} grpc entries", grpc_files.len());
    for p in &grpc_files {
        let v = read_json(p)?;
        let endpoint = match str_of(&v, "/server") {
            "hub" => hub.grpc_endpoint(),
            "dukcapil" => dukcapil.grpc_endpoint(),
            other => return Err(anyhow!("{}: unknown server {other}", stem(p))),
        };
        let token = v
            .pointer("/authorized")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            .then(|| dukcapil.token().to_owned());
        let request = Bytes::from(b64_decode(str_of(&v, "/request_base64"))?);
        let call = grpc_call(&endpoint, str_of(&v, "/path"), request, token.as_deref());
        let (code, reason) = match tokio::time::timeout(ANSWER_DEADLINE, call).await {
            Err(_) => {
                failures.push(format!("grpc {}: no answer within {ANSWER_DEADLINE:?}", stem(p)));
                continue;
            }
            Ok(r) => r.with_context(|| format!("grpc {}", stem(p)))?,
        };
        println!("grpc {:<32} -> {code} {reason}", stem(p));
        if code != str_of(&v, "/expect/code") || reason != str_of(&v, "/expect/reason") {
            failures.push(format!(
                "grpc {}: answered {code} {reason}, expected {} {}",
                stem(p),
                str_of(&v, "/expect/code"),
                str_of(&v, "/expect/reason")
            ));
        }
    }

    // Still ready, still ingesting: whatever the agency published meanwhile is in.
    let last = stream_last_seq(&js).await?;
    hub.wait_caught_up(last, CATCH_UP_DEADLINE).await?;
    let ready = hub.get("/readyz").await?;
    ensure!(ready.status == 200, "hub not ready after the corpus: {} {}", ready.status, ready.text());
    dukcapil.wait_listening(READY_DEADLINE).await.context("mpp-dukcapil stopped answering")?;

    // The stopped hub's log: every NATS entry with its verdict and reason.
    hub.terminate().await?;
    let audit = audit_stopped_hub(hub.data_dir())?;
    ensure!(audit.entries.len() as u64 == last, "{} entries for {last} stream messages", audit.entries.len());
    for (name, v, payload, seq) in &published {
        let e = &audit.entries[(*seq - 1) as usize];
        let reason = e.reason.map_or("-", |r| r.as_str());
        if e.verdict.as_str() != str_of(v, "/expect/verdict") || reason != str_of(v, "/expect/reason") {
            failures.push(format!(
                "nats {name} (stream seq {seq}): recorded {} {reason} ({}), expected {} {}",
                e.verdict.as_str(),
                e.detail,
                str_of(v, "/expect/verdict"),
                str_of(v, "/expect/reason")
            ));
        } else if e.payload != *payload {
            failures.push(format!("nats {name}: payload not recorded as received"));
        }
    }
    ensure!(failures.is_empty(), "wrong answers:\n{}", failures.join("\n"));
    Ok(())
}
