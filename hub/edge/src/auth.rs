//! Authentication by bearer token, one format for every server: the
//! agency services' back-office clients (`--tokens-file`), the hub's
//! auditors (`--auditor-tokens-file`) and operators (`--operator-tokens-file`).
//!
//! Below, the agency services' use of it.
//!
//! Each client system has a bearer token. The service keeps only the
//! SHA-256 of each token, in a file given with `--tokens-file`:
//!
//! ```text
//! # client_id:sha256-hex-of-token, one per line; '#' starts a comment.
//! simduk-loket:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//! ```
//!
//! The hash of a token is printed by `printf %s "$TOKEN" | sha256sum` (no
//! trailing newline in the token). Clients send `authorization: Bearer
//! <token>` with every call.
//!
//! [`AuthInterceptor`] (a tonic interceptor) checks every call of the
//! agency's service; gRPC health and reflection are separate services and need
//! no token. A missing or wrong token is refused with `UNAUTHENTICATED` (reason
//! `UNAUTHENTICATED` in the `mpp-reason-code` metadata) and logged with the
//! client's address, the RPC and why, never the token. The presented token's
//! hash is compared with every stored hash in constant time. On success the
//! [`ClientId`] is put into the request's extensions for the handler, and
//! recorded on the call's tracing span, so every log line of the call names
//! the calling system. (The envelope's `officer` stays the pseudonymous
//! officer: the client id is not published.)
//!
//! [`authenticated`] wraps a generated service server with both the
//! interceptor and the span.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use mpp_core::ReasonCode;
use sha2::{Digest, Sha256};
use tonic::codegen::http;
use tonic::metadata::MetadataValue;
use tonic::server::NamedService;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::{Request, Status};
use tracing::instrument::Instrumented;
use tracing::Instrument as _;

use crate::meta::REASON_CODE_METADATA_KEY;

/// Largest tokens file read, in bytes.
pub const TOKENS_FILE_BYTES_MAX: usize = 1024 * 1024;

/// Most client systems in one tokens file.
pub const CLIENTS_MAX: usize = 10_000;

/// Longest client id, in bytes (`[A-Za-z0-9._-]`).
pub const CLIENT_ID_BYTES_MAX: usize = 64;

/// Longest bearer token accepted, in bytes. Longer ones are refused unhashed.
pub const TOKEN_BYTES_MAX: usize = 4096;

/// The client id given to every caller when authentication is disabled with
/// `--insecure-no-auth`.
pub const INSECURE_CLIENT_ID: &str = "unauthenticated";

/// The authenticated calling system, in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(Arc<str>);

impl ClientId {
    /// The id as written in the tokens file.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The path of the RPC being called (`/package.Service/Method`), put into the
/// request's extensions by [`RpcSpan`] so the interceptor can log it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcPath(pub String);

/// Why a tokens file was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    /// The file could not be read.
    #[error("cannot read tokens file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is larger than [`TOKENS_FILE_BYTES_MAX`].
    #[error("tokens file is larger than {TOKENS_FILE_BYTES_MAX} bytes")]
    TooLarge,
    /// The file is not UTF-8.
    #[error("tokens file is not UTF-8 text")]
    NotText,
    /// A line is malformed.
    #[error("tokens file line {line}: {problem}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it (never the line itself: it may hold a token
        /// pasted by mistake).
        problem: &'static str,
    },
    /// More than [`CLIENTS_MAX`] clients.
    #[error("tokens file lists more than {CLIENTS_MAX} clients")]
    TooMany,
    /// No client at all.
    #[error("tokens file lists no client; without clients every call would be refused")]
    Empty,
}

/// The client systems and the SHA-256 of their tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenTable {
    entries: Vec<(ClientId, [u8; 32])>,
}

impl fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenTable").field("clients", &self.clients().collect::<Vec<_>>()).finish()
    }
}

fn valid_client_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= CLIENT_ID_BYTES_MAX
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// SHA-256 of a token: what the tokens file stores.
pub fn hash_token(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// Equality of two hashes in time independent of where they differ.
pub fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    // Keep the compiler from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

impl TokenTable {
    /// Parses a tokens file's text (see the module docs). Client ids and
    /// hashes must be unique.
    pub fn parse(text: &str) -> Result<Self, TokensError> {
        let mut entries = Vec::new();
        let mut ids = BTreeSet::new();
        let mut hashes = BTreeSet::new();
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let err = |problem| TokensError::Line { line: line_no, problem };
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (id, hex) = line.split_once(':').ok_or_else(|| err("expected client_id:sha256-hex"))?;
            let (id, hex) = (id.trim(), hex.trim());
            if !valid_client_id(id) {
                return Err(err("client id must be 1..=64 bytes of [A-Za-z0-9._-]"));
            }
            let hash = parse_hex32(hex).ok_or_else(|| {
                err("the token hash must be 64 hex digits (printf %s TOKEN | sha256sum), not the token itself")
            })?;
            if !ids.insert(id.to_owned()) {
                return Err(err("client id listed twice"));
            }
            if !hashes.insert(hash) {
                return Err(err("token hash listed twice: two clients would share one token"));
            }
            if entries.len() == CLIENTS_MAX {
                return Err(TokensError::TooMany);
            }
            entries.push((ClientId(Arc::from(id)), hash));
        }
        if entries.is_empty() {
            return Err(TokensError::Empty);
        }
        Ok(Self { entries })
    }

    /// Reads and parses a tokens file (at most [`TOKENS_FILE_BYTES_MAX`] bytes).
    pub fn load(path: &Path) -> Result<Self, TokensError> {
        let io = |source| TokensError::Io { path: path.to_owned(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut buf = Vec::new();
        file.take(TOKENS_FILE_BYTES_MAX as u64 + 1).read_to_end(&mut buf).map_err(io)?;
        if buf.len() > TOKENS_FILE_BYTES_MAX {
            return Err(TokensError::TooLarge);
        }
        Self::parse(std::str::from_utf8(&buf).map_err(|_| TokensError::NotText)?)
    }

    /// The client ids, in file order.
    pub fn clients(&self) -> impl Iterator<Item = &ClientId> {
        self.entries.iter().map(|(id, _)| id)
    }

    /// The client whose token this is. Every stored hash is compared, each
    /// in constant time, whatever matches.
    pub fn authenticate(&self, token: &[u8]) -> Option<&ClientId> {
        let presented = hash_token(token);
        let mut found = None;
        for (id, hash) in &self.entries {
            if constant_time_eq(&presented, hash) {
                found = Some(id);
            }
        }
        found
    }
}

/// The client of `table` whose token `req` presents in its
/// `authorization: Bearer <token>` metadata, or why there is none (a
/// sentence that never holds the token).
pub fn bearer_client(table: &TokenTable, req: &Request<()>) -> Result<ClientId, &'static str> {
    let value = req.metadata().get("authorization").ok_or("no authorization header")?;
    let value = value.as_bytes();
    let token = value
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
        .and_then(|_| value.get(7..))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
        .ok_or("authorization header is not 'Bearer <token>'")?;
    if token.len() > TOKEN_BYTES_MAX {
        return Err("token is too long");
    }
    table.authenticate(token).cloned().ok_or("unknown token")
}

/// The `UNAUTHENTICATED` answer to a refused call: `reason` and which token
/// to send (`wanted`, e.g. "an auditor token"), with the reason code in the
/// metadata.
pub fn unauthenticated(reason: &str, wanted: &str) -> Status {
    let mut status = Status::unauthenticated(format!(
        "UNAUTHENTICATED: {reason}; send 'authorization: Bearer <token>' with {wanted}"
    ));
    status
        .metadata_mut()
        .insert(REASON_CODE_METADATA_KEY, MetadataValue::from_static(ReasonCode::Unauthenticated.as_str()));
    status
}

/// Who may call.
#[derive(Debug, Clone)]
pub enum AuthMode {
    /// Callers must present a token from the table.
    Tokens(Arc<TokenTable>),
    /// Every call is let through as [`INSECURE_CLIENT_ID`]
    /// (`--insecure-no-auth`; development only).
    Insecure,
}

/// The tonic interceptor that authenticates every call (see the module docs).
/// Cheap to clone; clones share the failure counter.
#[derive(Debug, Clone)]
pub struct AuthInterceptor {
    mode: AuthMode,
    insecure_id: ClientId,
    failures: Arc<AtomicU64>,
}

impl AuthInterceptor {
    /// An interceptor for `mode`.
    pub fn new(mode: AuthMode) -> Self {
        Self { mode, insecure_id: ClientId(Arc::from(INSECURE_CLIENT_ID)), failures: Arc::default() }
    }

    /// Calls refused so far (for `mpp_auth_failures_total`).
    pub fn failures_total(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The counter behind [`AuthInterceptor::failures_total`].
    pub fn failures_counter(&self) -> Arc<AtomicU64> {
        self.failures.clone()
    }

    fn check(&self, req: &Request<()>) -> Result<ClientId, &'static str> {
        let table = match &self.mode {
            AuthMode::Insecure => return Ok(self.insecure_id.clone()),
            AuthMode::Tokens(t) => t,
        };
        bearer_client(table, req)
    }
}

impl Interceptor for AuthInterceptor {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        match self.check(&req) {
            Ok(client) => {
                tracing::Span::current().record("client", tracing::field::display(&client));
                req.extensions_mut().insert(client);
                Ok(req)
            }
            Err(reason) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                let peer = req.remote_addr().map(|a| a.to_string()).unwrap_or_else(|| "unknown".to_owned());
                let rpc = req.extensions().get::<RpcPath>().map(|p| p.0.as_str()).unwrap_or("unknown");
                tracing::warn!(peer = %peer, rpc, reason, "Unauthenticated call refused");
                Err(unauthenticated(reason, "the token of your client system"))
            }
        }
    }
}

/// Wraps an agency's generated service server so that every call runs in a
/// tracing span `rpc{rpc=<path> client=<id>}` and passes the
/// [`AuthInterceptor`] first.
pub fn authenticated<S>(
    service: S,
    auth: AuthInterceptor,
) -> RpcSpan<InterceptedService<S, AuthInterceptor>> {
    RpcSpan { inner: InterceptedService::new(service, auth) }
}

/// A service wrapper that opens the call's tracing span and records the RPC
/// path in the request extensions (tonic interceptors see neither the URI nor
/// the path).
#[derive(Debug, Clone)]
pub struct RpcSpan<S> {
    inner: S,
}

impl<S, B> tonic::codegen::Service<http::Request<B>> for RpcSpan<S>
where
    S: tonic::codegen::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_owned();
        let span = tracing::info_span!("rpc", rpc = %path, client = tracing::field::Empty);
        req.extensions_mut().insert(RpcPath(path));
        let future = span.in_scope(|| self.inner.call(req));
        future.instrument(span)
    }
}

impl<S: NamedService> NamedService for RpcSpan<S> {
    const NAME: &'static str = S::NAME;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(h: [u8; 32]) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hash_matches_sha256sum() {
        // printf %s test | sha256sum
        assert_eq!(
            hex(hash_token(b"test")),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }

    #[test]
    fn constant_time_eq_is_eq() {
        let a = hash_token(b"a");
        let mut b = a;
        assert!(constant_time_eq(&a, &b));
        b[31] ^= 1;
        assert!(!constant_time_eq(&a, &b));
        b = a;
        b[0] ^= 0x80;
        assert!(!constant_time_eq(&a, &b));
    }

    #[test]
    fn tokens_file_parses_and_authenticates() {
        let text = format!(
            "# back offices\n\nloket-1:{}\n  siak.pusat : {}  # trailing comment\n",
            hex(hash_token(b"secret-one")),
            hex(hash_token(b"secret-two")).to_uppercase()
        );
        let t = TokenTable::parse(&text).unwrap();
        assert_eq!(t.clients().map(ClientId::as_str).collect::<Vec<_>>(), vec!["loket-1", "siak.pusat"]);
        assert_eq!(t.authenticate(b"secret-one").map(ClientId::as_str), Some("loket-1"));
        assert_eq!(t.authenticate(b"secret-two").map(ClientId::as_str), Some("siak.pusat"));
        assert_eq!(t.authenticate(b"secret-three"), None);
        assert_eq!(t.authenticate(b""), None);
        assert!(!format!("{t:?}").contains(&hex(hash_token(b"secret-one"))), "Debug shows no hashes");
    }

    #[test]
    fn bad_tokens_files_are_refused_without_echoing_lines() {
        let h = hex(hash_token(b"x"));
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "no client"),
            ("# only a comment\n".into(), "no client"),
            ("loket-1 plain-token\n".into(), "line 1"),
            ("loket-1:my-plain-token\n".into(), "64 hex digits"),
            (format!("bad id:{h}\n"), "client id"),
            (format!("a:{h}\na:{}\n", hex(hash_token(b"y"))), "listed twice"),
            (format!("a:{h}\nb:{h}\n"), "share one token"),
            (format!("a:{}\n", &h[..63]), "64 hex digits"),
        ];
        for (text, want) in cases {
            let err = TokenTable::parse(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(!err.contains("my-plain-token"), "{err}");
        }
    }

    fn request(auth: Option<&str>) -> Request<()> {
        let mut req = Request::new(());
        if let Some(v) = auth {
            req.metadata_mut().insert("authorization", v.parse().unwrap());
        }
        req
    }

    #[test]
    fn interceptor_refuses_and_admits() {
        let table = TokenTable::parse(&format!("loket-1:{}\n", hex(hash_token(b"s3cret")))).unwrap();
        let mut auth = AuthInterceptor::new(AuthMode::Tokens(Arc::new(table)));
        for bad in [None, Some("Bearer wrong"), Some("Basic s3cret"), Some("Bearer "), Some("s3cret")] {
            let status = auth.call(request(bad)).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{bad:?}");
            let reason = status.metadata().get(REASON_CODE_METADATA_KEY).and_then(|v| v.to_str().ok());
            assert_eq!(reason, Some("UNAUTHENTICATED"));
            assert!(!status.message().contains("s3cret"));
        }
        assert_eq!(auth.failures_total(), 5);
        for good in ["Bearer s3cret", "bearer s3cret", "BEARER  s3cret "] {
            let req = auth.call(request(Some(good))).unwrap();
            assert_eq!(req.extensions().get::<ClientId>().map(ClientId::as_str), Some("loket-1"), "{good}");
        }
        let mut open = AuthInterceptor::new(AuthMode::Insecure);
        let req = open.call(request(None)).unwrap();
        assert_eq!(req.extensions().get::<ClientId>().map(ClientId::as_str), Some(INSECURE_CLIENT_ID));
    }
}
