//! A minimal HTTP/1.1 client over one keep-alive TCP connection: the load
//! generator for JSON lookups, cheap enough not to steal the CPU the hub
//! needs on a shared 2-core machine. It reads only what the hub's JSON API
//! sends (a `Content-Length` body).

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head read, in bytes.
pub(crate) const HEAD_BYTES_MAX: usize = 16 * 1024;

/// Largest response body read, in bytes.
pub(crate) const BODY_BYTES_MAX: usize = 4 * 1024 * 1024;

/// How long one request may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A response.
#[derive(Debug)]
pub(crate) struct Response {
    /// The status code.
    pub(crate) status: u16,
    /// The body.
    pub(crate) body: Vec<u8>,
}

/// One keep-alive connection.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: TcpStream,
    host: String,
    buf: Vec<u8>,
}

impl Conn {
    /// Connects to `addr` (`host:port`).
    pub(crate) async fn connect(addr: &str) -> Result<Self> {
        let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Self { stream, host: addr.to_owned(), buf: Vec::with_capacity(8192) })
    }

    /// `GET path` with extra headers; the connection stays open.
    pub(crate) async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<Response> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.get_inner(path, headers, false))
            .await
            .map_err(|_| anyhow!("GET {path}: no answer within {REQUEST_TIMEOUT:?}"))?
    }

    async fn get_inner(&mut self, path: &str, headers: &[(&str, &str)], close: bool) -> Result<Response> {
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        for (k, v) in headers {
            req.push_str(k);
            req.push_str(": ");
            req.push_str(v);
            req.push_str("\r\n");
        }
        if close {
            req.push_str("Connection: close\r\n");
        }
        req.push_str("\r\n");
        self.stream.write_all(req.as_bytes()).await?;
        // The head.
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > HEAD_BYTES_MAX {
                bail!("response head over {HEAD_BYTES_MAX} bytes");
            }
            self.read_more().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).context("response head is not UTF-8")?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| anyhow!("no status in {head:?}"))?;
        let mut length = None;
        for line in head.lines().skip(1) {
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = Some(v.trim().parse::<usize>().context("content-length")?);
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    bail!("chunked responses are not supported by the bench client");
                }
            }
        }
        let body = match length {
            Some(n) if n > BODY_BYTES_MAX => bail!("response body of {n} bytes"),
            Some(n) => {
                while self.buf.len() < head_end + n {
                    self.read_more().await?;
                }
                let body = self.buf[head_end..head_end + n].to_vec();
                self.buf.drain(..head_end + n);
                body
            }
            None if close => {
                while self.read_more().await.is_ok() {
                    if self.buf.len() > head_end + BODY_BYTES_MAX {
                        bail!("response body over {BODY_BYTES_MAX} bytes");
                    }
                }
                let body = self.buf[head_end..].to_vec();
                self.buf.clear();
                body
            }
            None => bail!("a keep-alive response without content-length"),
        };
        Ok(Response { status, body })
    }

    async fn read_more(&mut self) -> Result<()> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One request on a fresh connection, closed afterwards.
pub(crate) async fn get(addr: &str, path: &str, headers: &[(&str, &str)]) -> Result<Response> {
    let mut conn = Conn::connect(addr).await?;
    tokio::time::timeout(REQUEST_TIMEOUT, conn.get_inner(path, headers, true))
        .await
        .map_err(|_| anyhow!("GET {path}: no answer within {REQUEST_TIMEOUT:?}"))?
}
