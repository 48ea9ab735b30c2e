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
    /// The request being written, reused from one request to the next.
    req: Vec<u8>,
    /// What was read and not yet consumed.
    buf: Vec<u8>,
}

/// What the head of a response says.
struct Head {
    status: u16,
    /// Where the body starts in the buffer.
    body_at: usize,
    /// `Content-Length`, when given.
    length: Option<usize>,
}

impl Conn {
    /// Connects to `addr` (`host:port`).
    pub(crate) async fn connect(addr: &str) -> Result<Self> {
        let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            host: addr.to_owned(),
            req: Vec::with_capacity(256),
            buf: Vec::with_capacity(8192),
        })
    }

    /// `GET path` with extra headers on the kept-alive connection, for the
    /// load generator: the status and the body's length, the body read
    /// whole (up to [`BODY_BYTES_MAX`]) and dropped without a copy.
    pub(crate) async fn get_status(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<(u16, usize)> {
        tokio::time::timeout(REQUEST_TIMEOUT, async {
            self.send(path, headers, false).await?;
            let head = self.read_head().await?;
            let Some(n) = head.length else { bail!("a keep-alive response without content-length") };
            self.read_body(&head, n).await?;
            self.consume(head.body_at + n);
            Ok((head.status, n))
        })
        .await
        .map_err(|_| anyhow!("GET {path}: no answer within {REQUEST_TIMEOUT:?}"))?
    }

    async fn send(&mut self, path: &str, headers: &[(&str, &str)], close: bool) -> Result<()> {
        self.req.clear();
        for part in ["GET ", path, " HTTP/1.1\r\nHost: ", &self.host, "\r\n"] {
            self.req.extend_from_slice(part.as_bytes());
        }
        for (k, v) in headers {
            for part in [k, ": ", v, "\r\n"] {
                self.req.extend_from_slice(part.as_bytes());
            }
        }
        if close {
            self.req.extend_from_slice(b"Connection: close\r\n");
        }
        self.req.extend_from_slice(b"\r\n");
        self.stream.write_all(&self.req).await?;
        Ok(())
    }

    /// Reads until the buffer holds a whole head, and parses its status
    /// line and `Content-Length`.
    async fn read_head(&mut self) -> Result<Head> {
        let mut searched = 0;
        let head_end = loop {
            if let Some(i) = find(&self.buf[searched..], b"\r\n\r\n") {
                break searched + i + 4;
            }
            searched = self.buf.len().saturating_sub(3);
            if self.buf.len() > HEAD_BYTES_MAX {
                bail!("response head over {HEAD_BYTES_MAX} bytes");
            }
            self.read_more().await?;
        };
        let head = &self.buf[..head_end];
        // "HTTP/1.1 200 OK": the status is the second word.
        let status = head
            .split(|b| *b == b' ')
            .nth(1)
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| anyhow!("no status in {:?}", String::from_utf8_lossy(head)))?;
        let mut length = None;
        for line in head.split(|b| *b == b'\n').skip(1) {
            let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
            let (k, v) = (&line[..colon], &line[colon + 1..]);
            if k.eq_ignore_ascii_case(b"content-length") {
                let v = std::str::from_utf8(v).context("content-length")?.trim();
                length = Some(v.parse::<usize>().context("content-length")?);
            } else if k.eq_ignore_ascii_case(b"transfer-encoding") {
                bail!("chunked responses are not supported by the bench client");
            }
        }
        Ok(Head { status, body_at: head_end, length })
    }

    /// Reads until the buffer holds the `n` bytes of the body.
    async fn read_body(&mut self, head: &Head, n: usize) -> Result<()> {
        if n > BODY_BYTES_MAX {
            bail!("response body of {n} bytes");
        }
        while self.buf.len() < head.body_at + n {
            self.read_more().await?;
        }
        Ok(())
    }

    /// Drops the first `n` bytes of the buffer (usually all of it).
    fn consume(&mut self, n: usize) {
        if n >= self.buf.len() {
            self.buf.clear();
        } else {
            self.buf.drain(..n);
        }
    }

    async fn get_inner(&mut self, path: &str, headers: &[(&str, &str)], close: bool) -> Result<Response> {
        self.send(path, headers, close).await?;
        let head = self.read_head().await?;
        let body = match head.length {
            Some(n) => {
                self.read_body(&head, n).await?;
                let body = self.buf[head.body_at..head.body_at + n].to_vec();
                self.consume(head.body_at + n);
                body
            }
            None if close => {
                while self.read_more().await.is_ok() {
                    if self.buf.len() > head.body_at + BODY_BYTES_MAX {
                        bail!("response body over {BODY_BYTES_MAX} bytes");
                    }
                }
                let body = self.buf[head.body_at..].to_vec();
                self.buf.clear();
                body
            }
            None => bail!("a keep-alive response without content-length"),
        };
        Ok(Response { status: head.status, body })
    }

    /// Reads what the socket has into the buffer's spare room.
    async fn read_more(&mut self) -> Result<()> {
        if self.buf.capacity() - self.buf.len() < READ_ROOM_MIN {
            self.buf.reserve(READ_ROOM_MIN);
        }
        let n = self.stream.read_buf(&mut self.buf).await?;
        if n == 0 {
            bail!("connection closed");
        }
        Ok(())
    }
}

/// The least free room a read is given, in bytes.
const READ_ROOM_MIN: usize = 8192;

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
