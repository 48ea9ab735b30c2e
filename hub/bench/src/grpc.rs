//! A minimal gRPC client for unary calls over one HTTP/2 connection (the
//! `h2` crate, without tonic's stack): the load generator for gRPC lookups,
//! the counterpart of [`crate::http`]. Like that one it checks the status
//! (`grpc-status` 0 and a whole length-prefixed message) and does not decode
//! the answer, so the load generator takes as little as it can of the CPU
//! the hub needs on a shared 2-core machine.

use anyhow::{bail, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use h2::client::SendRequest;

/// Largest answer read, in bytes.
pub(crate) const ANSWER_BYTES_MAX: usize = 4 * 1024 * 1024;

/// One HTTP/2 connection; clones share it (one stream per call).
#[derive(Debug, Clone)]
pub(crate) struct GrpcConn {
    send: SendRequest<Bytes>,
    base: String,
}

impl GrpcConn {
    /// Connects to `url` (`http://host:port`, plaintext HTTP/2).
    pub(crate) async fn connect(url: &str) -> Result<Self> {
        let addr = url.strip_prefix("http://").context("a gRPC URL without TLS: http://host:port")?;
        let tcp =
            tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        tcp.set_nodelay(true)?;
        let (send, conn) = h2::client::handshake(tcp).await.context("HTTP/2 handshake")?;
        tokio::spawn(async move {
            // Ends when the hub or the last clone closes the connection.
            let _ = conn.await;
        });
        Ok(Self { send, base: url.trim_end_matches('/').to_owned() })
    }

    /// The URI of the method at `path` (`/package.Service/Method`), made once
    /// for every call of [`Self::unary_status`].
    pub(crate) fn method_uri(&self, path: &str) -> Result<http::Uri> {
        Ok(format!("{}{path}", self.base).parse()?)
    }

    /// Calls the unary method at `uri` ([`Self::method_uri`]) with `msg`;
    /// the answer's `grpc-status`, `None` when the answer was not a whole
    /// gRPC answer (or a status 0 without one whole message).
    pub(crate) async fn unary_status(
        &self,
        uri: &http::Uri,
        msg: &impl prost::Message,
    ) -> Result<Option<u32>> {
        let len = msg.encoded_len();
        let mut body = BytesMut::with_capacity(5 + len);
        body.put_u8(0);
        body.put_u32(u32::try_from(len)?);
        msg.encode(&mut body)?;
        let req = http::Request::builder()
            .method(http::Method::POST)
            .uri(uri.clone())
            .header(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"))
            .header(http::header::TE, http::HeaderValue::from_static("trailers"))
            .body(())?;
        let mut send = self.send.clone().ready().await.context("HTTP/2 connection")?;
        let (answer, mut stream) = send.send_request(req, false)?;
        stream.send_data(body.freeze(), true)?;
        let (head, mut body) = answer.await?.into_parts();
        if head.status != http::StatusCode::OK {
            return Ok(None);
        }
        let status_of = |v: &http::HeaderValue| v.to_str().ok().and_then(|s| s.parse::<u32>().ok());
        // A "trailers-only" answer (an error) carries its status in the head.
        if let Some(status) = head.headers.get("grpc-status") {
            return Ok(status_of(status).filter(|s| *s != 0));
        }
        let mut got = 0usize;
        let mut declared = None;
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            if declared.is_none() && chunk.len() >= 5 {
                declared = Some(u32::from_be_bytes([chunk[1], chunk[2], chunk[3], chunk[4]]) as usize + 5);
            }
            got += chunk.len();
            body.flow_control().release_capacity(chunk.len())?;
            if got > ANSWER_BYTES_MAX {
                bail!("an answer of over {ANSWER_BYTES_MAX} bytes");
            }
        }
        let trailers = body.trailers().await?;
        let status = trailers.as_ref().and_then(|t| t.get("grpc-status")).and_then(status_of);
        Ok(status.filter(|s| *s != 0 || declared == Some(got)))
    }
}
