//! The SMS and WhatsApp gateway: a provider-agnostic webhook
//! (docs/NOTIFICATIONS.md). One `POST` of JSON `{id, channel, to, language,
//! text}` per message, `Authorization: Bearer <token>` and
//! `Idempotency-Key: <id>`; 2xx accepted, 409 accepted before (a duplicate),
//! other 4xx refused for good, 5xx and timeouts retried. HTTP/1.1 over
//! plain TCP, one connection per message (`Connection: close`): run the
//! provider's adapter on the MPP's network, or put a TLS-terminating proxy
//! before the provider.

use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long connecting, writing the request, or the answer's status line
/// may take.
pub const GATEWAY_STEP_TIMEOUT_MS: u64 = 10_000;

/// Most bytes of the gateway's answer read (the status line is all that is
/// used).
pub const GATEWAY_ANSWER_BYTES_MAX: usize = 8 * 1024;

/// Longest gateway URL, in bytes.
pub const GATEWAY_URL_BYTES_MAX: usize = 512;

/// The gateway's endpoint: `http://host[:port]/path` (`--sms-gateway-url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayUrl {
    /// `host:port`.
    pub addr: String,
    /// `host[:port]` as given (the `Host` header).
    pub host: String,
    /// The path, `/` at least.
    pub path: String,
}

impl GatewayUrl {
    /// Parses `http://host[:port][/path]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("{s:?}: {why}; expected http://host[:port]/path");
        if s.len() > GATEWAY_URL_BYTES_MAX || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad("too long or not printable ASCII"));
        }
        let rest = s.strip_prefix("http://").ok_or_else(|| bad("only http:// is spoken"))?;
        let (host, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
        if host.is_empty() || host.contains('@') {
            return Err(bad("no host"));
        }
        let addr = if host.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            host.to_owned()
        } else {
            format!("{host}:80")
        };
        Ok(Self { addr, host: host.to_owned(), path: path.to_owned() })
    }
}

/// The webhook's JSON body.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayMessage<'a> {
    /// The notification's id, also the `Idempotency-Key`.
    pub id: &'a str,
    /// `sms` or `whatsapp`.
    pub channel: &'a str,
    /// The phone number as the citizen gave it.
    pub to: &'a str,
    /// `id` or `en`.
    pub language: &'a str,
    /// The text.
    pub text: &'a str,
}

/// What the gateway answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayAnswer {
    /// 2xx.
    Accepted,
    /// 409: it had the message already.
    Duplicate,
    /// Another 4xx: refused for good (the status).
    Refused(u16),
    /// 5xx, a timeout or a broken connection: retry.
    Retry(String),
}

/// Posts `m` to the gateway with `token`.
pub async fn post(url: &GatewayUrl, token: &str, m: &GatewayMessage<'_>) -> GatewayAnswer {
    let step = Duration::from_millis(GATEWAY_STEP_TIMEOUT_MS);
    let body = match serde_json::to_string(m) {
        Ok(b) => b,
        Err(e) => return GatewayAnswer::Retry(e.to_string()),
    };
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nIdempotency-Key: {id}\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {len}\r\nConnection: close\r\n\
         User-Agent: mpp-frontoffice\r\n\r\n{body}",
        path = url.path,
        host = url.host,
        id = m.id,
        len = body.len(),
    );
    let exchange = async {
        let mut s = TcpStream::connect(&url.addr).await?;
        s.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        while !answer.windows(2).any(|w| w == b"\r\n") && answer.len() < GATEWAY_ANSWER_BYTES_MAX {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(answer)
    };
    let answer = match tokio::time::timeout(step, exchange).await {
        Err(_) => return GatewayAnswer::Retry("timed out".into()),
        Ok(Err(e)) => return GatewayAnswer::Retry(e.to_string()),
        Ok(Ok(a)) => a,
    };
    let line = String::from_utf8_lossy(&answer);
    let status = line
        .split("\r\n")
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1."))
        .and_then(|l| l.get(2..5))
        .and_then(|c| c.parse::<u16>().ok());
    match status {
        Some(200..=299) => GatewayAnswer::Accepted,
        Some(409) => GatewayAnswer::Duplicate,
        Some(c @ 400..=499) => GatewayAnswer::Refused(c),
        Some(c) => GatewayAnswer::Retry(format!("status {c}")),
        None => GatewayAnswer::Retry("no HTTP status line".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = GatewayUrl::parse("http://127.0.0.1:9000/kirim").unwrap();
        assert_eq!(
            (u.addr.as_str(), u.host.as_str(), u.path.as_str()),
            ("127.0.0.1:9000", "127.0.0.1:9000", "/kirim")
        );
        assert_eq!(GatewayUrl::parse("http://gw.local").unwrap().addr, "gw.local:80");
        assert!(GatewayUrl::parse("https://gw.local").is_err());
        assert!(GatewayUrl::parse("http:///x").is_err());
    }

    async fn answering(status: &'static str) -> (GatewayUrl, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = GatewayUrl::parse(&format!("http://{}/kirim", listener.local_addr().unwrap())).unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&got).contains("\"text\"") {
                let n = s.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes()).await.unwrap();
            String::from_utf8(got).unwrap()
        });
        (url, task)
    }

    #[tokio::test]
    async fn the_status_decides() {
        let m = GatewayMessage { id: "n-1", channel: "sms", to: "0812", language: "id", text: "halo \"x\"" };
        for (status, want) in [
            ("202 Accepted", GatewayAnswer::Accepted),
            ("409 Conflict", GatewayAnswer::Duplicate),
            ("422 Unprocessable", GatewayAnswer::Refused(422)),
            ("503 Busy", GatewayAnswer::Retry("status 503".into())),
        ] {
            let (url, task) = answering(status).await;
            assert_eq!(post(&url, "tok", &m).await, want, "{status}");
            let req = task.await.unwrap();
            assert!(req.starts_with("POST /kirim HTTP/1.1\r\n"));
            assert!(
                req.contains("Authorization: Bearer tok\r\n") && req.contains("Idempotency-Key: n-1\r\n")
            );
            assert!(req.contains(r#""text":"halo \"x\"""#), "{req}");
        }
    }
}
