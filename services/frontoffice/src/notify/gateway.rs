//! The SMS and WhatsApp gateway: a provider-agnostic webhook
//! (docs/NOTIFICATIONS.md). One `POST` of JSON `{id, channel, to, language,
//! text}` per message, `Authorization: Bearer <token>` and
//! `Idempotency-Key: <id>`; 2xx accepted, 409 accepted before (a duplicate),
//! other 4xx refused for good, 5xx and timeouts retried. HTTP/1.1, one
//! connection per message (`Connection: close`): over TLS (rustls, the
//! certificate verified against `--sms-gateway-ca-file` for the URL's host)
//! for an `https://` URL, a provider on the internet; over plain TCP for an
//! `http://` URL, only an adapter on the MPP's own network.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// How long connecting, writing the request, or the answer's status line
/// may take.
pub const GATEWAY_STEP_TIMEOUT_MS: u64 = 10_000;

/// Most bytes of the gateway's answer read (the status line is all that is
/// used).
pub const GATEWAY_ANSWER_BYTES_MAX: usize = 8 * 1024;

/// Longest gateway URL, in bytes.
pub const GATEWAY_URL_BYTES_MAX: usize = 512;

/// The gateway's endpoint: `http[s]://host[:port]/path`
/// (`--sms-gateway-url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayUrl {
    /// `https://`: spoken over TLS.
    pub tls: bool,
    /// `host:port`.
    pub addr: String,
    /// `host[:port]` as given (the `Host` header).
    pub host: String,
    /// The host without port or brackets: the TLS server name (SNI) the
    /// certificate is checked for.
    pub server_name: String,
    /// The path, `/` at least.
    pub path: String,
}

impl GatewayUrl {
    /// Parses `http://host[:port][/path]` or `https://host[:port][/path]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("{s:?}: {why}; expected http[s]://host[:port]/path");
        if s.len() > GATEWAY_URL_BYTES_MAX || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad("too long or not printable ASCII"));
        }
        let (tls, rest) = match (s.strip_prefix("https://"), s.strip_prefix("http://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            (None, None) => return Err(bad("only http:// and https:// are spoken")),
        };
        let (host, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
        if host.is_empty() || host.contains('@') {
            return Err(bad("no host"));
        }
        let (addr, name) = match host.rsplit_once(':').filter(|(_, p)| p.parse::<u16>().is_ok()) {
            Some((name, _)) => (host.to_owned(), name),
            None => (format!("{host}:{}", if tls { 443 } else { 80 }), host),
        };
        let server_name = name.trim_start_matches('[').trim_end_matches(']').to_owned();
        if server_name.is_empty() {
            return Err(bad("no host"));
        }
        if tls && rustls::pki_types::ServerName::try_from(server_name.as_str()).is_err() {
            return Err(bad("the host is not a DNS name or IP address"));
        }
        Ok(Self { tls, addr, host: host.to_owned(), server_name, path: path.to_owned() })
    }
}

/// The webhook's JSON body.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayMessage<'a> {
    /// The notification's id, also the `Idempotency-Key`.
    pub id: &'a str,
    /// `sms` or `whatsapp`.
    pub channel: &'a str,
    /// The phone number, in E.164 (`+62…`).
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

/// Posts `m` to the gateway with `token`; over TLS with `tls` (the client
/// configuration trusting `--sms-gateway-ca-file`) when the URL is
/// `https://`, and never in clear then.
pub async fn post(
    url: &GatewayUrl,
    tls: Option<&Arc<rustls::ClientConfig>>,
    token: &str,
    m: &GatewayMessage<'_>,
) -> GatewayAnswer {
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
        let tcp = TcpStream::connect(&url.addr).await?;
        match (url.tls, tls) {
            (false, _) => status_line(tcp, &request).await,
            (true, Some(config)) => {
                let name = rustls::pki_types::ServerName::try_from(url.server_name.clone())
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                let s = tokio_rustls::TlsConnector::from(Arc::clone(config)).connect(name, tcp).await?;
                status_line(s, &request).await
            }
            (true, None) => Err(std::io::Error::other("https:// without a CA file")),
        }
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

/// Writes `request` on `s` and reads until the end of the status line.
async fn status_line<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, request: &str) -> std::io::Result<Vec<u8>> {
    s.write_all(request.as_bytes()).await?;
    s.flush().await?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") && answer.len() < GATEWAY_ANSWER_BYTES_MAX {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    Ok(answer)
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
        assert!(!u.tls && u.server_name == "127.0.0.1");
        assert_eq!(GatewayUrl::parse("http://gw.local").unwrap().addr, "gw.local:80");
        let s = GatewayUrl::parse("https://sms.provider.example/v1/kirim").unwrap();
        assert!(s.tls);
        assert_eq!(
            (s.addr.as_str(), s.host.as_str(), s.server_name.as_str(), s.path.as_str()),
            ("sms.provider.example:443", "sms.provider.example", "sms.provider.example", "/v1/kirim")
        );
        assert_eq!(GatewayUrl::parse("https://[::1]:8443/").unwrap().server_name, "::1");
        assert!(GatewayUrl::parse("ftp://gw.local").is_err());
        assert!(GatewayUrl::parse("http:///x").is_err());
        assert!(GatewayUrl::parse("https://:443/x").is_err());
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
            assert_eq!(post(&url, None, "tok", &m).await, want, "{status}");
            let req = task.await.unwrap();
            assert!(req.starts_with("POST /kirim HTTP/1.1\r\n"));
            assert!(
                req.contains("Authorization: Bearer tok\r\n") && req.contains("Idempotency-Key: n-1\r\n")
            );
            assert!(req.contains(r#""text":"halo \"x\"""#), "{req}");
        }
    }

    /// A TLS gateway on 127.0.0.1 with the test PKI's server certificate:
    /// answers 202 to one request and hands back what it read (or the
    /// handshake's error).
    async fn tls_gateway(
        pki: &mpp_edge::tls::test_pki::TestPki,
        host: &str,
    ) -> (GatewayUrl, tokio::task::JoinHandle<Result<String, String>>) {
        let acceptor = mpp_edge::tls::ServerTls::load(&pki.cert, &pki.key, None)
            .unwrap()
            .acceptor(&[mpp_edge::tls::ALPN_HTTP11]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = GatewayUrl::parse(&format!("https://{host}:{port}/kirim")).unwrap();
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut s = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&got).contains("\"text\"") {
                let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("closed".into());
                }
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n").await.unwrap();
            s.shutdown().await.unwrap();
            Ok(String::from_utf8(got).unwrap())
        });
        (url, task)
    }

    #[tokio::test]
    async fn https_reaches_a_gateway_whose_certificate_verifies_and_refuses_one_that_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let pki = mpp_edge::tls::test_pki::TestPki::generate(dir.path()).unwrap();
        let m = GatewayMessage { id: "n-2", channel: "whatsapp", to: "+62812", language: "en", text: "hi" };
        let trusted = mpp_edge::tls::rustls_client_config(&pki.ca, &[mpp_edge::tls::ALPN_HTTP11]).unwrap();

        // The CA that signed the certificate, by IP and by DNS name (SNI).
        for host in ["127.0.0.1", "localhost"] {
            let (url, task) = tls_gateway(&pki, host).await;
            assert_eq!(post(&url, Some(&trusted), "tok", &m).await, GatewayAnswer::Accepted, "{host}");
            let req = task.await.unwrap().unwrap();
            assert!(
                req.starts_with("POST /kirim HTTP/1.1\r\n") && req.contains("\"to\":\"+62812\""),
                "{req}"
            );
        }

        // An unrelated CA: the handshake fails, nothing is sent, it is retried.
        let wrong =
            mpp_edge::tls::rustls_client_config(&pki.other_ca, &[mpp_edge::tls::ALPN_HTTP11]).unwrap();
        let (url, task) = tls_gateway(&pki, "127.0.0.1").await;
        let answer = post(&url, Some(&wrong), "tok", &m).await;
        assert!(matches!(&answer, GatewayAnswer::Retry(why) if why.contains("certificate")), "{answer:?}");
        assert!(task.await.unwrap().is_err());

        // A name the certificate does not carry.
        let (mut url, task) = tls_gateway(&pki, "127.0.0.1").await;
        url.server_name = "gw.example".into();
        assert!(matches!(post(&url, Some(&trusted), "tok", &m).await, GatewayAnswer::Retry(_)));
        assert!(task.await.unwrap().is_err());

        // https:// never falls back to clear text.
        let (url, task) = tls_gateway(&pki, "127.0.0.1").await;
        assert!(matches!(post(&url, None, "tok", &m).await, GatewayAnswer::Retry(_)));
        task.abort();
    }
}
