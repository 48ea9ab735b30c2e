//! A small SMTP client (RFC 5321) for the citizens' e-mail: greeting, EHLO,
//! STARTTLS (RFC 3207) when `--smtp-tls` asks for it and the relay offers
//! it, then EHLO again, AUTH PLAIN when credentials are configured, MAIL,
//! RCPT, DATA with dot-stuffing, QUIT. One connection per message; every
//! reply read with a timeout and bounded in size. The TLS is rustls with the
//! relay's certificate verified against `--smtp-ca-file` for the URL's host;
//! without it (`--smtp-tls off`) hand messages to a relay on the machine or
//! the MPP's network (docs/NOTIFICATIONS.md). `lettre` was not added: the
//! few commands below are smaller than what it brings (its own address
//! parsing, encoders and TLS wiring).

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// How long connecting, one command's reply, or the whole DATA may take.
pub const SMTP_STEP_TIMEOUT_MS: u64 = 30_000;

/// Longest reply line read, in bytes (RFC 5321 4.5.3.1.5: 512).
pub const SMTP_REPLY_LINE_BYTES_MAX: usize = 512;

/// Most lines of one (multi-line) reply read.
pub const SMTP_REPLY_LINES_MAX: usize = 64;

/// The SMTP server: `smtp://host:port` (`--smtp-url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    /// `host:port`.
    pub addr: String,
    /// The host without port or brackets: the TLS server name (SNI) the
    /// relay's certificate is checked for after STARTTLS.
    pub server_name: String,
}

/// When the connection to the relay is upgraded with STARTTLS
/// (`--smtp-tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Never: plain SMTP (a relay on the machine or the MPP's network).
    Off,
    /// When the relay advertises STARTTLS; plain when it does not.
    Starttls,
    /// Always: a relay that does not advertise STARTTLS fails the send
    /// (retried with backoff), nothing is sent in clear.
    Required,
}

impl SmtpTls {
    /// Parses `off`, `starttls` or `required`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Self::Off),
            "starttls" => Ok(Self::Starttls),
            "required" => Ok(Self::Required),
            _ => Err(format!("{s:?}: expected off, starttls or required")),
        }
    }
}

/// How to talk to the relay: the TLS mode and, unless it is off, the
/// client configuration trusting `--smtp-ca-file`.
#[derive(Debug, Clone)]
pub struct SmtpSecurity {
    /// The mode.
    pub mode: SmtpTls,
    /// The client configuration (`None` only with [`SmtpTls::Off`]).
    pub config: Option<Arc<rustls::ClientConfig>>,
}

impl SmtpSecurity {
    /// Plain SMTP.
    pub const OFF: SmtpSecurity = SmtpSecurity { mode: SmtpTls::Off, config: None };
}

impl SmtpUrl {
    /// Parses `smtp://host[:port]` (port 25 by default).
    pub fn parse(s: &str) -> Result<Self, String> {
        let rest = s.strip_prefix("smtp://").ok_or_else(|| {
            format!("{s:?}: expected smtp://host[:port] (plain SMTP to a relay; see docs/NOTIFICATIONS.md)")
        })?;
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains(['/', '@', ' ']) {
            return Err(format!("{s:?}: expected smtp://host[:port]"));
        }
        let (addr, name) = match rest.rsplit_once(':').filter(|(_, p)| p.parse::<u16>().is_ok()) {
            Some((name, _)) => (rest.to_owned(), name),
            None => (format!("{rest}:25"), rest),
        };
        let server_name = name.trim_start_matches('[').trim_end_matches(']').to_owned();
        if server_name.is_empty() {
            return Err(format!("{s:?}: expected smtp://host[:port]"));
        }
        Ok(Self { addr, server_name })
    }
}

/// The user and password of AUTH PLAIN.
#[derive(Clone)]
pub struct Credentials {
    /// The user.
    pub user: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials {{ user: {:?}, .. }}", self.user)
    }
}

impl Credentials {
    /// The file's first line, `user:password`.
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let line = text.lines().next().unwrap_or("").trim();
        let (user, password) = line
            .split_once(':')
            .filter(|(u, p)| !u.is_empty() && !p.is_empty())
            .ok_or_else(|| format!("{}: expected one line user:password", path.display()))?;
        Ok(Self { user: user.to_owned(), password: password.to_owned() })
    }
}

/// One e-mail.
#[derive(Debug, Clone)]
pub struct Mail<'a> {
    /// Envelope and header sender (`--smtp-from`).
    pub from: &'a str,
    /// The recipient.
    pub to: &'a str,
    /// Header `Message-ID` without the brackets.
    pub message_id: &'a str,
    /// Header `Date` (RFC 5322 text).
    pub date: &'a str,
    /// Subject (UTF-8; encoded as RFC 2047).
    pub subject: &'a str,
    /// Plain text (UTF-8; sent base64-encoded).
    pub text: &'a str,
    /// `Content-Language`.
    pub language: &'a str,
}

/// Why sending failed.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    /// Worth retrying: the connection, a timeout, a 4xx reply.
    #[error("transient: {0}")]
    Transient(String),
    /// The server refused for good (5xx).
    #[error("permanent: {0}")]
    Permanent(String),
}

/// The deterministic `Message-ID` of a notification: a hash of its key
/// (event id and channel), `@` the sender's domain. A receiver that sees
/// it twice has one message.
pub fn message_id(key: &str, from: &str) -> String {
    let digest = Sha256::digest(format!("mpp-notification/v1\0{key}").as_bytes());
    let domain = from.rsplit_once('@').map_or("mpp.invalid", |(_, d)| d);
    format!("{}@{domain}", hex::encode(&digest[..16]))
}

/// The message's bytes: headers and base64 body, CRLF line ends, not yet
/// dot-stuffed.
pub fn format_message(m: &Mail<'_>) -> String {
    let b64 = mpp_core::base64::encode(m.text.as_bytes());
    let mut body = String::new();
    for chunk in b64.as_bytes().chunks(76) {
        body.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        body.push_str("\r\n");
    }
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: =?UTF-8?B?{subject}?=\r\nDate: {date}\r\nMessage-ID: <{id}>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Language: {lang}\r\nAuto-Submitted: auto-generated\r\n\r\n{body}",
        from = m.from,
        to = m.to,
        subject = mpp_core::base64::encode(m.subject.as_bytes()),
        date = m.date,
        id = m.message_id,
        lang = m.language,
    )
}

/// `data` with every line that starts with `.` given another (RFC 5321
/// 4.5.2), and the terminating `.` line.
pub fn dot_stuff(data: &str) -> String {
    let mut out = String::with_capacity(data.len() + 8);
    for line in data.split_inclusive("\r\n") {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
    }
    if !out.ends_with("\r\n") {
        out.push_str("\r\n");
    }
    out.push_str(".\r\n");
    out
}

fn step() -> Duration {
    Duration::from_millis(SMTP_STEP_TIMEOUT_MS)
}

async fn reply<S: AsyncRead + Unpin>(r: &mut BufReader<S>) -> Result<(u16, String), SmtpError> {
    let mut text = String::new();
    for _ in 0..SMTP_REPLY_LINES_MAX {
        let mut line = Vec::new();
        let read = tokio::time::timeout(step(), async {
            let mut limited = (&mut *r).take(SMTP_REPLY_LINE_BYTES_MAX as u64 + 2);
            limited.read_until(b'\n', &mut line).await
        })
        .await
        .map_err(|_| SmtpError::Transient("no reply in time".into()))?
        .map_err(|e| SmtpError::Transient(e.to_string()))?;
        if read == 0 || !line.ends_with(b"\n") {
            return Err(SmtpError::Transient("connection closed or reply line too long".into()));
        }
        let line = String::from_utf8_lossy(&line).trim_end().to_owned();
        let code = line.get(..3).and_then(|c| c.parse::<u16>().ok()).ok_or_else(|| {
            SmtpError::Transient(format!(
                "not an SMTP reply: {:?}",
                line.chars().take(80).collect::<String>()
            ))
        })?;
        text.push_str(line.get(4..).unwrap_or(""));
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, text));
        }
        text.push('\n');
    }
    Err(SmtpError::Transient("reply has too many lines".into()))
}

/// Sends a command (or nothing) and expects a reply in `ok`; 4xx is
/// transient, 5xx permanent.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    r: &mut BufReader<S>,
    command: Option<&str>,
    ok: &[u16],
    what: &str,
) -> Result<String, SmtpError> {
    if let Some(c) = command {
        let w = r.get_mut();
        tokio::time::timeout(step(), async {
            w.write_all(c.as_bytes()).await?;
            w.flush().await
        })
        .await
        .map_err(|_| SmtpError::Transient(format!("{what}: write timed out")))?
        .map_err(|e| SmtpError::Transient(format!("{what}: {e}")))?;
    }
    let (code, text) = reply(r).await?;
    if ok.contains(&code) {
        return Ok(text);
    }
    let text: String = text.replace('\n', " ").chars().take(200).collect();
    match code {
        400..=499 => Err(SmtpError::Transient(format!("{what}: {code} {text}"))),
        _ => Err(SmtpError::Permanent(format!("{what}: {code} {text}"))),
    }
}

/// Whether an EHLO reply (its lines after the greeting) advertises
/// `keyword`.
fn advertises(ehlo: &str, keyword: &str) -> bool {
    ehlo.lines().skip(1).any(|l| l.split_whitespace().next().is_some_and(|k| k.eq_ignore_ascii_case(keyword)))
}

/// Sends `mail` to the server at `url`, as `helo` (our host name), with
/// STARTTLS as `security` says.
pub async fn send(
    url: &SmtpUrl,
    security: &SmtpSecurity,
    helo: &str,
    credentials: Option<&Credentials>,
    mail: &Mail<'_>,
) -> Result<(), SmtpError> {
    let stream = tokio::time::timeout(step(), TcpStream::connect(&url.addr))
        .await
        .map_err(|_| SmtpError::Transient(format!("connect to {}: timed out", url.addr)))?
        .map_err(|e| SmtpError::Transient(format!("connect to {}: {e}", url.addr)))?;
    let mut r = BufReader::new(stream);
    exchange(&mut r, None, &[220], "greeting").await?;
    let ehlo = format!("EHLO {helo}\r\n");
    let offered = advertises(&exchange(&mut r, Some(&ehlo), &[250], "EHLO").await?, "STARTTLS");
    let config = match (security.mode, &security.config, offered) {
        (SmtpTls::Off, _, _) => None,
        (SmtpTls::Starttls, _, false) if credentials.is_none() => None,
        (mode, _, false) => {
            // Retried: the relay may be reconfigured; never sent in clear.
            // Opportunistic STARTTLS with credentials refuses too: a relay
            // (or a man in the middle) that stops offering it must not get
            // the password in clear.
            let _ = exchange(&mut r, Some("QUIT\r\n"), &[221], "QUIT").await;
            return Err(SmtpError::Transient(if mode == SmtpTls::Required {
                format!("{} does not offer STARTTLS and --smtp-tls is required", url.addr)
            } else {
                format!("{} does not offer STARTTLS: the SMTP password is never sent in clear", url.addr)
            }));
        }
        (_, None, true) => return Err(SmtpError::Transient("STARTTLS without a CA file".into())),
        (_, Some(config), true) => Some(Arc::clone(config)),
    };
    let Some(config) = config else { return deliver(&mut r, helo, credentials, mail, false).await };
    exchange(&mut r, Some("STARTTLS\r\n"), &[220], "STARTTLS").await?;
    // Anything the server sent after its 220 came before the handshake: an
    // injection in clear (RFC 3207 5), refused.
    if !r.buffer().is_empty() {
        return Err(SmtpError::Transient("data in clear after 220 to STARTTLS".into()));
    }
    let name = rustls::pki_types::ServerName::try_from(url.server_name.clone())
        .map_err(|e| SmtpError::Transient(format!("TLS server name {:?}: {e}", url.server_name)))?;
    let tls =
        tokio::time::timeout(step(), tokio_rustls::TlsConnector::from(config).connect(name, r.into_inner()))
            .await
            .map_err(|_| SmtpError::Transient("TLS handshake: timed out".into()))?
            .map_err(|e| SmtpError::Transient(format!("TLS handshake with {}: {e}", url.addr)))?;
    let mut r = BufReader::new(tls);
    deliver(&mut r, helo, credentials, mail, true).await
}

/// The rest of a session after the greeting and EHLO: EHLO again after
/// STARTTLS (`again`), AUTH, the envelope, the message, QUIT.
async fn deliver<S: AsyncRead + AsyncWrite + Unpin>(
    r: &mut BufReader<S>,
    helo: &str,
    credentials: Option<&Credentials>,
    mail: &Mail<'_>,
    again: bool,
) -> Result<(), SmtpError> {
    if again {
        exchange(r, Some(&format!("EHLO {helo}\r\n")), &[250], "EHLO after STARTTLS").await?;
    }
    if let Some(c) = credentials {
        let token = mpp_core::base64::encode(format!("\0{}\0{}", c.user, c.password).as_bytes());
        exchange(r, Some(&format!("AUTH PLAIN {token}\r\n")), &[235], "AUTH").await?;
    }
    exchange(r, Some(&format!("MAIL FROM:<{}>\r\n", mail.from)), &[250], "MAIL").await?;
    exchange(r, Some(&format!("RCPT TO:<{}>\r\n", mail.to)), &[250, 251], "RCPT").await?;
    exchange(r, Some("DATA\r\n"), &[354], "DATA").await?;
    exchange(r, Some(&dot_stuff(&format_message(mail))), &[250], "message").await?;
    // The message is accepted: a failed QUIT changes nothing.
    let _ = exchange(r, Some("QUIT\r\n"), &[221], "QUIT").await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one mail of these tests, with `text` as its body.
    fn test_mail(text: &str) -> Mail<'_> {
        Mail {
            from: "noreply@mpp.example",
            to: "siti@contoh.id",
            message_id: "abc@mpp.example",
            date: "Mon, 7 Dec 2026 12:00:00 +0000",
            subject: "Tagihan",
            text,
            language: "id",
        }
    }

    #[test]
    fn urls_default_to_port_25() {
        assert_eq!(SmtpUrl::parse("smtp://relay.local").unwrap().addr, "relay.local:25");
        assert_eq!(SmtpUrl::parse("smtp://127.0.0.1:2525").unwrap().addr, "127.0.0.1:2525");
        assert_eq!(SmtpUrl::parse("smtp://relay.local").unwrap().server_name, "relay.local");
        assert_eq!(SmtpUrl::parse("smtp://[::1]:2525").unwrap().server_name, "::1");
        assert!(SmtpUrl::parse("smtps://x").is_err());
        assert!(SmtpUrl::parse("smtp://:25").is_err());
        assert_eq!(SmtpTls::parse("required"), Ok(SmtpTls::Required));
        assert!(SmtpTls::parse("yes").is_err());
        assert!(SmtpUrl::parse("smtp://u@x").is_err());
    }

    #[test]
    fn lines_starting_with_a_dot_are_stuffed_and_the_data_ends_with_a_dot_line() {
        assert_eq!(dot_stuff("a\r\n.b\r\n..c\r\n"), "a\r\n..b\r\n...c\r\n.\r\n");
        assert_eq!(dot_stuff("x"), "x\r\n.\r\n");
    }

    #[test]
    fn the_message_id_is_one_per_key_at_the_senders_domain() {
        let a = message_id("e1/email", "noreply@mpp.example");
        assert_eq!(a, message_id("e1/email", "noreply@mpp.example"));
        assert_ne!(a, message_id("e2/email", "noreply@mpp.example"));
        assert!(a.ends_with("@mpp.example") && a.len() == 32 + 1 + 11);
    }

    #[tokio::test]
    async fn a_message_goes_through_a_scripted_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = SmtpUrl::parse(&format!("smtp://{}", listener.local_addr().unwrap())).unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            s.write_all(b"220 hi\r\n").await.unwrap();
            for answer in [&b"250-hello\r\n250 8BITMIME\r\n"[..], b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n"]
            {
                let n = s.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
                s.write_all(answer).await.unwrap();
            }
            while !seen.ends_with(b"\r\n.\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"250 queued\r\n").await.unwrap();
            let n = s.read(&mut buf).await.unwrap();
            seen.extend_from_slice(&buf[..n]);
            s.write_all(b"221 bye\r\n").await.unwrap();
            String::from_utf8(seen).unwrap()
        });
        let mail = test_mail(".titik\nRp 50.000");
        send(&url, &SmtpSecurity::OFF, "mpp.example", None, &mail).await.unwrap();
        let seen = server.await.unwrap();
        assert!(seen.starts_with(
            "EHLO mpp.example\r\nMAIL FROM:<noreply@mpp.example>\r\nRCPT TO:<siti@contoh.id>\r\nDATA\r\n"
        ));
        assert!(seen.contains("Message-ID: <abc@mpp.example>\r\n") && seen.ends_with("QUIT\r\n"));
    }

    #[tokio::test]
    async fn a_4xx_is_transient_and_a_5xx_permanent() {
        for (code, transient) in [("451", true), ("550", false)] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = SmtpUrl::parse(&format!("smtp://{}", listener.local_addr().unwrap())).unwrap();
            let answer = format!("{code} no\r\n");
            tokio::spawn(async move {
                let (s, _) = listener.accept().await.unwrap();
                let mut r = BufReader::new(s);
                r.get_mut().write_all(answer.as_bytes()).await.unwrap();
                let mut line = String::new();
                let _ = r.read_line(&mut line).await;
            });
            let mail = Mail {
                from: "a@b.c",
                to: "d@e.f",
                message_id: "x@b.c",
                date: "",
                subject: "",
                text: "",
                language: "en",
            };
            let e = send(&url, &SmtpSecurity::OFF, "h", None, &mail).await.unwrap_err();
            assert_eq!(matches!(e, SmtpError::Transient(_)), transient, "{code}: {e}");
        }
    }

    /// The EHLO answers of the test relay: with STARTTLS, without.
    const EHLO_STARTTLS: &str = "250-relay.test\r\n250-8BITMIME\r\n250 STARTTLS\r\n";
    const EHLO_PLAIN: &str = "250-relay.test\r\n250 8BITMIME\r\n";

    /// Answers commands line by line, noting each in `seen`, until QUIT
    /// (false), the end of the connection (false), or STARTTLS (true).
    async fn session<S: AsyncRead + AsyncWrite + Unpin>(
        r: &mut BufReader<S>,
        ehlo: &str,
        seen: &mut Vec<String>,
    ) -> bool {
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                return false;
            }
            let line = line.trim_end().to_owned();
            let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
            seen.push(line);
            let answer = match verb.as_str() {
                "EHLO" => ehlo.to_owned(),
                "STARTTLS" => "220 go ahead\r\n".into(),
                "MAIL" | "RCPT" => "250 ok\r\n".into(),
                "DATA" => {
                    r.get_mut().write_all(b"354 go\r\n").await.unwrap();
                    let mut data = String::new();
                    while !data.ends_with("\r\n.\r\n") {
                        if r.read_line(&mut data).await.unwrap_or(0) == 0 {
                            return false;
                        }
                    }
                    seen.push(format!("<{} bytes>", data.len()));
                    "250 queued\r\n".into()
                }
                "QUIT" => "221 bye\r\n".into(),
                _ => "500 what\r\n".into(),
            };
            r.get_mut().write_all(answer.as_bytes()).await.unwrap();
            r.get_mut().flush().await.unwrap();
            if verb == "QUIT" {
                return false;
            }
            if verb == "STARTTLS" {
                return true;
            }
        }
    }

    /// A relay on 127.0.0.1 answering EHLO with `ehlo`, upgrading on
    /// STARTTLS with the test PKI's server certificate; hands back the
    /// commands it saw (`--tls--` where TLS began).
    async fn relay(
        pki: &mpp_edge::tls::test_pki::TestPki,
        ehlo: &'static str,
    ) -> (SmtpUrl, tokio::task::JoinHandle<Vec<String>>) {
        let acceptor = mpp_edge::tls::ServerTls::load(&pki.cert, &pki.key, None).unwrap().acceptor(&[]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url =
            SmtpUrl::parse(&format!("smtp://localhost:{}", listener.local_addr().unwrap().port())).unwrap();
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut r = BufReader::new(tcp);
            r.get_mut().write_all(b"220 relay.test ESMTP\r\n").await.unwrap();
            let mut seen = Vec::new();
            if session(&mut r, ehlo, &mut seen).await {
                match acceptor.accept(r.into_inner()).await {
                    Err(e) => seen.push(format!("handshake failed: {e}")),
                    Ok(tls) => {
                        seen.push("--tls--".into());
                        session(&mut BufReader::new(tls), EHLO_PLAIN, &mut seen).await;
                    }
                }
            }
            seen
        });
        (url, task)
    }

    fn security(mode: SmtpTls, ca: &std::path::Path) -> SmtpSecurity {
        SmtpSecurity { mode, config: Some(mpp_edge::tls::rustls_client_config(ca, &[]).unwrap()) }
    }

    #[tokio::test]
    async fn starttls_upgrades_verifies_the_relay_and_required_never_sends_in_clear() {
        let dir = tempfile::tempdir().unwrap();
        let pki = mpp_edge::tls::test_pki::TestPki::generate(dir.path()).unwrap();
        let mail = test_mail("Rp 50.000");
        let envelope = ["MAIL FROM:<noreply@mpp.example>", "RCPT TO:<siti@contoh.id>", "DATA"];

        // Offered and required: upgraded, EHLO again, the whole envelope in TLS.
        for mode in [SmtpTls::Required, SmtpTls::Starttls] {
            let (url, task) = relay(&pki, EHLO_STARTTLS).await;
            send(&url, &security(mode, &pki.ca), "mpp.example", None, &mail).await.unwrap();
            let seen = task.await.unwrap();
            assert_eq!(
                &seen[..4],
                ["EHLO mpp.example", "STARTTLS", "--tls--", "EHLO mpp.example"],
                "{mode:?}"
            );
            assert_eq!(&seen[4..7], envelope, "{mode:?}");
            assert_eq!(seen.last().map(String::as_str), Some("QUIT"));
        }

        // A relay whose certificate the CA file does not vouch for: nothing sent, retried.
        for mode in [SmtpTls::Required, SmtpTls::Starttls] {
            let (url, task) = relay(&pki, EHLO_STARTTLS).await;
            let e = send(&url, &security(mode, &pki.other_ca), "mpp.example", None, &mail).await.unwrap_err();
            assert!(matches!(&e, SmtpError::Transient(why) if why.contains("TLS handshake")), "{e}");
            let seen = task.await.unwrap();
            assert!(seen[2].starts_with("handshake failed") && seen.len() == 3, "{seen:?}");
        }

        // Not offered, required: QUIT before MAIL, a transient failure.
        let (url, task) = relay(&pki, EHLO_PLAIN).await;
        let e =
            send(&url, &security(SmtpTls::Required, &pki.ca), "mpp.example", None, &mail).await.unwrap_err();
        assert!(matches!(&e, SmtpError::Transient(why) if why.contains("does not offer STARTTLS")), "{e}");
        assert_eq!(task.await.unwrap(), ["EHLO mpp.example", "QUIT"]);

        // Not offered, opportunistic, with a password: refused, no AUTH.
        let (url, task) = relay(&pki, EHLO_PLAIN).await;
        let user = Credentials { user: "mpp".into(), password: "rahasia".into() };
        let e = send(&url, &security(SmtpTls::Starttls, &pki.ca), "mpp.example", Some(&user), &mail)
            .await
            .unwrap_err();
        assert!(matches!(&e, SmtpError::Transient(why) if why.contains("never sent in clear")), "{e}");
        assert_eq!(task.await.unwrap(), ["EHLO mpp.example", "QUIT"]);

        // Not offered, opportunistic: plain. Off: plain even when offered.
        for (ehlo, mode) in [(EHLO_PLAIN, SmtpTls::Starttls), (EHLO_STARTTLS, SmtpTls::Off)] {
            let (url, task) = relay(&pki, ehlo).await;
            send(&url, &security(mode, &pki.ca), "mpp.example", None, &mail).await.unwrap();
            let seen = task.await.unwrap();
            assert_eq!(seen[0], "EHLO mpp.example");
            assert_eq!(&seen[1..4], envelope, "{mode:?}");
        }
    }

    #[test]
    fn the_ehlo_keywords_are_read_after_the_greeting_line() {
        assert!(advertises("relay.test\n8BITMIME\nSTARTTLS", "STARTTLS"));
        assert!(advertises("relay.test\nstarttls", "STARTTLS"));
        assert!(!advertises("STARTTLS relay says hi\n8BITMIME", "STARTTLS"));
        assert!(!advertises("relay.test", "STARTTLS"));
    }
}
