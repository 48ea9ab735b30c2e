//! A minimal HTTP/1.1 GET client over a tokio `TcpStream`: enough to read the
//! hub's JSON API and health endpoints without a heavy client dependency.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response the client reads.
pub const RESPONSE_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// How long one request may take, connect to last byte.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;

/// A response: status, headers (names lowercased) and the decoded body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code, e.g. 200.
    pub status: u16,
    /// Header names (lowercase) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header with this (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!("response ({}) is not JSON: {}", self.status, String::from_utf8_lossy(&self.body))
        })
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET path` on `addr`, with `Connection: close`.
pub async fn get(addr: SocketAddr, path: &str) -> Result<HttpResponse> {
    get_with_headers(addr, path, &[]).await
}

/// `GET path` on `addr` with extra request headers (e.g. the hub's
/// `x-mpp-pin`), with `Connection: close`.
pub async fn get_with_headers(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<HttpResponse> {
    let mut all = vec![("Accept", "application/json")];
    all.extend_from_slice(headers);
    request(addr, "GET", path, &all, &[]).await
}

/// `method path` on `addr` with request headers and a body (sent with its
/// `Content-Length`), with `Connection: close`, in at most
/// [`REQUEST_TIMEOUT_MS`].
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse> {
    tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), async {
        if headers.iter().any(|(k, v)| [k, v].iter().any(|s| s.contains(['\r', '\n']))) {
            bail!("a request header contains a line break");
        }
        let mut stream =
            TcpStream::connect(addr).await.with_context(|| format!("cannot connect to {addr}"))?;
        let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
        let length = if body.is_empty() && method == "GET" {
            String::new()
        } else {
            format!("Content-Length: {}\r\n", body.len())
        };
        let mut req =
            format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}{length}Connection: close\r\n\r\n")
                .into_bytes();
        req.extend_from_slice(body);
        stream.write_all(&req).await.context("cannot send request")?;
        let mut raw = Vec::new();
        (&mut stream).take(RESPONSE_BYTES_MAX).read_to_end(&mut raw).await.context("cannot read response")?;
        parse_response(&raw).with_context(|| format!("bad response to {method} http://{addr}{path}"))
    })
    .await
    .map_err(|_| anyhow!("{method} http://{addr}{path} timed out after {REQUEST_TIMEOUT_MS} ms"))?
}

/// Parses a complete HTTP/1.1 response.
pub fn parse_response(raw: &[u8]) -> Result<HttpResponse> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| anyhow!("no header end"))?;
    let head = std::str::from_utf8(&raw[..head_end]).context("headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| anyhow!("no status line"))?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?
        .parse()
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[head_end + 4..];
    let chunked =
        headers.iter().any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else if let Some((_, len)) = headers.iter().find(|(k, _)| k == "content-length") {
        let len: usize = len.parse().context("bad content-length")?;
        if rest.len() < len {
            bail!("body has {} bytes, content-length says {len}", rest.len());
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse { status, headers, body })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end =
            rest.windows(2).position(|w| w == b"\r\n").ok_or_else(|| anyhow!("bad chunk header"))?;
        let size_text = std::str::from_utf8(&rest[..line_end]).context("bad chunk size")?;
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size_hex, 16).with_context(|| format!("bad chunk size {size_hex:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size + 2 {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_and_chunked_bodies() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
        let r = parse_response(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"abcd"[..]));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab").is_err());
    }
}

/// One HTTP request file of the input corpus: `# key: value` lines (the
/// expectations, e.g. `expect-status`), then the request as written, LF
/// line ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusRequest {
    /// The `# key: value` lines.
    pub meta: std::collections::BTreeMap<String, String>,
    /// The raw request, with CRLF line ends in its head (up to the first
    /// empty line) and its body as written.
    pub raw: Vec<u8>,
}

/// Parses a request file of the corpus (see [`CorpusRequest`]).
pub fn parse_corpus_request(bytes: &[u8]) -> CorpusRequest {
    let mut meta = std::collections::BTreeMap::new();
    let mut rest = bytes;
    while rest.starts_with(b"# ") {
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let line = String::from_utf8_lossy(&rest[2..end]).into_owned();
        if let Some((k, v)) = line.split_once(": ") {
            meta.insert(k.to_owned(), v.to_owned());
        }
        rest = &rest[(end + 1).min(rest.len())..];
    }
    let head_end = rest.windows(2).position(|w| w == b"\n\n").map_or(rest.len(), |i| i + 2);
    let mut raw = Vec::new();
    for &b in &rest[..head_end] {
        if b == b'\n' {
            raw.push(b'\r');
        }
        raw.push(b);
    }
    raw.extend(&rest[head_end..]);
    CorpusRequest { meta, raw }
}
