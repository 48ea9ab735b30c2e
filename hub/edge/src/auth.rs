//! Authentication by bearer token, and authorisation by scope, one format
//! for every server: the agency services' and the front office's back-office
//! clients (`--tokens-file`), the hub's auditors (`--auditor-tokens-file`)
//! and operators (`--operator-tokens-file`).
//!
//! # The tokens file
//!
//! Each client system (participant) has its own bearer token. A server keeps
//! only the SHA-256 of each token, one client a line:
//!
//! ```text
//! # client_id:sha256-hex-of-token[:scope,scope...]; '#' starts a comment.
//! # Without the third field the client has every scope of this server.
//! simduk-loket:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//! # With it, only the scopes listed.
//! loket-1:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752:cases:open,personal-data:read
//! ```
//!
//! - `client_id`: 1..=64 bytes of `[A-Za-z0-9._-]`, unique in the file.
//! - The hash: 64 hex digits, printed by `printf %s "$TOKEN" | sha256sum` (no
//!   trailing newline in the token); unique in the file, so no two clients
//!   share a token.
//! - Scopes (optional): a comma-separated list after the second `:`, each
//!   1..=64 bytes of `[a-z0-9:._-]`, none empty or listed twice. A line
//!   without the field (the format before scopes existed) grants **all** of
//!   this server's scopes, so existing files keep working unchanged; a line
//!   ending in `:` with no scope is refused rather than read as "none".
//!   Each server checks at start that every listed scope is one it knows
//!   ([`TokenTable::check_scopes`]) and refuses the file otherwise, so a
//!   misspelt scope cannot silently deny (or grant) anything. Servers without
//!   scopes (the hub's auditors and operators, agencies that declare none)
//!   refuse every scoped line.
//!
//! No error message repeats a line, a hash or a scope from the file (a
//! token pasted by mistake would otherwise reach the log).
//!
//! # Per-RPC scopes
//!
//! A server declares the scope each of its RPCs needs as an [`RpcScopes`]
//! table (RPC path → scope), e.g. the front office's
//! `/mpp.frontoffice.v1.FrontOfficeService/HapusDataPribadi` →
//! `personal-data:erase`. With a table, the [`AuthInterceptor`] refuses a
//! call whose token lacks the RPC's scope, and any RPC missing from the
//! table, with `PERMISSION_DENIED` (reason `SCOPE_MISSING`); without one
//! (the agencies today) every authenticated caller may call every RPC.
//!
//! # Agency services
//!
//! Clients send `authorization: Bearer <token>` with every call.
//! [`AuthInterceptor`] (a tonic interceptor) checks every call of the
//! agency's service; gRPC health and reflection are separate services and need
//! no token. A missing or wrong token is refused with `UNAUTHENTICATED` (reason
//! `UNAUTHENTICATED` in the `mpp-reason-code` metadata) and logged with the
//! client's address, the RPC and why, never the token. The presented token's
//! hash is compared with every stored hash in constant time. On success the
//! [`ClientId`] and the [`Caller`] (id and scopes) are put into the request's
//! extensions for the handler, and the id is recorded on the call's tracing
//! span, so every log line of the call names the calling system. (The
//! envelope's `officer` stays the pseudonymous officer: the client id is not
//! published.)
//!
//! [`authenticated`] wraps a generated service server with both the
//! interceptor and the span.

use std::collections::BTreeSet;
use std::fmt;
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

/// Longest scope name, in bytes (`[a-z0-9:._-]`).
pub const SCOPE_BYTES_MAX: usize = 64;

/// Most scopes on one line of a tokens file.
pub const SCOPES_PER_CLIENT_MAX: usize = 32;

/// Longest bearer token accepted, in bytes. Longer ones are refused unhashed.
pub const TOKEN_BYTES_MAX: usize = 4096;

/// The client id given to every caller when authentication is disabled with
/// `--insecure-no-auth`.
pub const INSECURE_CLIENT_ID: &str = "unauthenticated";

/// The authenticated calling system, in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(Arc<str>);

impl ClientId {
    /// A client id, if `id` is 1..=64 bytes of `[A-Za-z0-9._-]` (as in the
    /// tokens file). For handlers' tests and embedding.
    pub fn parse(id: &str) -> Option<Self> {
        valid_client_id(id).then(|| Self(Arc::from(id)))
    }

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

/// What a client's token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scopes {
    /// Every scope of the server: a tokens-file line without a scope list,
    /// and every caller under `--insecure-no-auth`.
    All,
    /// Only these (never empty).
    Only(BTreeSet<String>),
}

impl Scopes {
    /// Whether `scope` is granted.
    pub fn allows(&self, scope: &str) -> bool {
        match self {
            Scopes::All => true,
            Scopes::Only(set) => set.contains(scope),
        }
    }
}

/// The authenticated caller, in the request's extensions next to its
/// [`ClientId`]: who it is and what its token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The client id of the token.
    pub id: ClientId,
    /// The scopes of the token.
    pub scopes: Scopes,
}

/// The scope each RPC of a server needs: `(path, scope)` pairs, the path as
/// `/package.Service/Method`. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcScopes(pub &'static [(&'static str, &'static str)]);

impl RpcScopes {
    /// The scope `rpc` needs, or `None` when the table does not list it
    /// (such a call is refused).
    pub fn scope_of(&self, rpc: &str) -> Option<&'static str> {
        self.0.iter().find(|(path, _)| *path == rpc).map(|(_, scope)| *scope)
    }

    /// Every scope of the table, each once, in table order.
    pub fn scopes(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for (_, scope) in self.0 {
            if !out.contains(scope) {
                out.push(scope);
            }
        }
        out
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
    /// A line lists a scope the server does not know.
    #[error(
        "tokens file line {line}: a scope of the list is not one this server knows \
         (it knows: {known}); check the spelling"
    )]
    UnknownScope {
        /// 1-based line number (the scope itself is not repeated).
        line: usize,
        /// The server's scopes, comma-separated, or "none: list no scopes".
        known: String,
    },
    /// More than [`CLIENTS_MAX`] clients.
    #[error("tokens file lists more than {CLIENTS_MAX} clients")]
    TooMany,
    /// No client at all.
    #[error("tokens file lists no client; without clients every call would be refused")]
    Empty,
}

/// One line of a tokens file.
#[derive(Clone, PartialEq, Eq)]
struct Entry {
    id: ClientId,
    hash: [u8; 32],
    scopes: Scopes,
    /// 1-based line number, for [`TokenTable::check_scopes`].
    line: usize,
}

/// The client systems, the SHA-256 of their tokens and their scopes.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenTable {
    entries: Vec<Entry>,
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

fn valid_scope(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= SCOPE_BYTES_MAX
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b':' | b'.' | b'_' | b'-'))
}

/// The scope list of a line (the text after the second `:`), or what is
/// wrong with it.
fn parse_scopes(list: &str) -> Result<Scopes, &'static str> {
    if list.trim().is_empty() {
        return Err("empty scope list after the second ':': list scopes, or drop the ':' to grant all");
    }
    let mut set = BTreeSet::new();
    for scope in list.split(',').map(str::trim) {
        if scope.is_empty() {
            return Err("empty scope in the list (two commas in a row, or a trailing comma)");
        }
        if !valid_scope(scope) {
            return Err("a scope must be 1..=64 bytes of [a-z0-9:._-]");
        }
        if !set.insert(scope.to_owned()) {
            return Err("scope listed twice on one line");
        }
        if set.len() > SCOPES_PER_CLIENT_MAX {
            return Err("more than 32 scopes on one line");
        }
    }
    Ok(Scopes::Only(set))
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
            let mut fields = line.splitn(3, ':');
            let id = fields.next().unwrap_or("").trim();
            let hex = fields.next().ok_or_else(|| err("expected client_id:sha256-hex[:scopes]"))?.trim();
            let scopes = match fields.next() {
                None => Scopes::All,
                Some(list) => parse_scopes(list).map_err(err)?,
            };
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
            entries.push(Entry { id: ClientId(Arc::from(id)), hash, scopes, line: line_no });
        }
        if entries.is_empty() {
            return Err(TokensError::Empty);
        }
        Ok(Self { entries })
    }

    /// Reads and parses a tokens file (at most [`TOKENS_FILE_BYTES_MAX`] bytes).
    pub fn load(path: &Path) -> Result<Self, TokensError> {
        let io = |source| TokensError::Io { path: path.to_owned(), source };
        let buf = crate::files::read_at_most(path, TOKENS_FILE_BYTES_MAX as u64).map_err(io)?;
        if buf.len() > TOKENS_FILE_BYTES_MAX {
            return Err(TokensError::TooLarge);
        }
        Self::parse(std::str::from_utf8(&buf).map_err(|_| TokensError::NotText)?)
    }

    /// Refuses the table if a line lists a scope not in `known` (the
    /// server's scopes; empty for a server without scopes). Lines without a
    /// scope list pass: they grant all of `known`.
    pub fn check_scopes(&self, known: &[&str]) -> Result<(), TokensError> {
        for entry in &self.entries {
            let Scopes::Only(set) = &entry.scopes else { continue };
            if set.iter().any(|s| !known.contains(&s.as_str())) {
                let known =
                    if known.is_empty() { "none: list no scopes".to_owned() } else { known.join(",") };
                return Err(TokensError::UnknownScope { line: entry.line, known });
            }
        }
        Ok(())
    }

    /// The client ids, in file order.
    pub fn clients(&self) -> impl Iterator<Item = &ClientId> {
        self.entries.iter().map(|e| &e.id)
    }

    /// The client whose token this is. Every stored hash is compared, each
    /// in constant time, whatever matches.
    pub fn authenticate(&self, token: &[u8]) -> Option<&ClientId> {
        self.find(token).map(|e| &e.id)
    }

    /// The caller (id and scopes) whose token this is, compared as in
    /// [`TokenTable::authenticate`].
    pub fn authenticate_caller(&self, token: &[u8]) -> Option<Caller> {
        self.find(token).map(|e| Caller { id: e.id.clone(), scopes: e.scopes.clone() })
    }

    fn find(&self, token: &[u8]) -> Option<&Entry> {
        let presented = hash_token(token);
        let mut found = None;
        for entry in &self.entries {
            if constant_time_eq(&presented, &entry.hash) {
                found = Some(entry);
            }
        }
        found
    }
}

/// The client of `table` whose token `req` presents in its
/// `authorization: Bearer <token>` metadata, or why there is none (a
/// sentence that never holds the token).
pub fn bearer_client(table: &TokenTable, req: &Request<()>) -> Result<ClientId, &'static str> {
    bearer_caller(table, req).map(|caller| caller.id)
}

/// As [`bearer_client`], with the token's scopes.
pub fn bearer_caller(table: &TokenTable, req: &Request<()>) -> Result<Caller, &'static str> {
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
    table.authenticate_caller(token).ok_or("unknown token")
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

/// The `PERMISSION_DENIED` answer to an authenticated call its token does
/// not allow: `reason` says which scope is missing (never the token), with
/// the reason code `SCOPE_MISSING` in the metadata.
pub fn scope_missing(reason: &str) -> Status {
    let mut status = Status::permission_denied(format!("SCOPE_MISSING: {reason}"));
    status
        .metadata_mut()
        .insert(REASON_CODE_METADATA_KEY, MetadataValue::from_static(ReasonCode::ScopeMissing.as_str()));
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
    rpc_scopes: Option<RpcScopes>,
    failures: Arc<AtomicU64>,
}

impl AuthInterceptor {
    /// An interceptor for `mode`.
    pub fn new(mode: AuthMode) -> Self {
        Self {
            mode,
            insecure_id: ClientId(Arc::from(INSECURE_CLIENT_ID)),
            rpc_scopes: None,
            failures: Arc::default(),
        }
    }

    /// This interceptor, also refusing calls whose token lacks the scope
    /// `table` names for the RPC (and RPCs the table does not list).
    pub fn with_rpc_scopes(mut self, table: RpcScopes) -> Self {
        self.rpc_scopes = Some(table);
        self
    }

    /// Calls refused so far (for `mpp_auth_failures_total`).
    pub fn failures_total(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The counter behind [`AuthInterceptor::failures_total`].
    pub fn failures_counter(&self) -> Arc<AtomicU64> {
        self.failures.clone()
    }

    fn check(&self, req: &Request<()>) -> Result<Caller, &'static str> {
        let table = match &self.mode {
            AuthMode::Insecure => return Ok(Caller { id: self.insecure_id.clone(), scopes: Scopes::All }),
            AuthMode::Tokens(t) => t,
        };
        bearer_caller(table, req)
    }

    /// Whether `caller` may call `rpc` under the scope table, or the
    /// refusal. Without a table every RPC is allowed; with one, an RPC it
    /// does not list (or an unknown path) is refused.
    fn authorise(&self, caller: &Caller, rpc: Option<&str>) -> Result<(), Status> {
        let Some(table) = &self.rpc_scopes else { return Ok(()) };
        let Some(rpc) = rpc else {
            return Err(scope_missing("the RPC path is unknown, so its scope cannot be checked"));
        };
        match table.scope_of(rpc) {
            Some(scope) if caller.scopes.allows(scope) => Ok(()),
            Some(scope) => Err(scope_missing(&format!(
                "the token of client {} lacks scope '{scope}', which {rpc} needs",
                caller.id
            ))),
            None => Err(scope_missing(&format!("{rpc} needs a scope this server does not declare"))),
        }
    }
}

impl Interceptor for AuthInterceptor {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        match self.check(&req) {
            Ok(caller) => {
                tracing::Span::current().record("client", tracing::field::display(&caller.id));
                let rpc = req.extensions().get::<RpcPath>().map(|p| p.0.as_str());
                if let Err(status) = self.authorise(&caller, rpc) {
                    tracing::warn!(
                        client = %caller.id,
                        rpc = rpc.unwrap_or("unknown"),
                        "Call refused: the token lacks the RPC's scope"
                    );
                    return Err(status);
                }
                req.extensions_mut().insert(caller.id.clone());
                req.extensions_mut().insert(caller);
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

    #[test]
    fn lines_without_scopes_grant_all_and_lines_with_scopes_grant_only_those() {
        let text = format!(
            "old-style:{}\nloket-1:{}:cases:open, personal-data:read # no erasure\nerase-only:{}:personal-data:erase\n",
            hex(hash_token(b"t-old")),
            hex(hash_token(b"t-loket")),
            hex(hash_token(b"t-erase"))
        );
        let t = TokenTable::parse(&text).unwrap();
        let old = t.authenticate_caller(b"t-old").unwrap();
        assert_eq!((old.id.as_str(), &old.scopes), ("old-style", &Scopes::All));
        assert!(old.scopes.allows("personal-data:erase") && old.scopes.allows("anything"));
        let loket = t.authenticate_caller(b"t-loket").unwrap();
        assert_eq!(loket.id.as_str(), "loket-1");
        assert!(loket.scopes.allows("cases:open") && loket.scopes.allows("personal-data:read"));
        assert!(!loket.scopes.allows("personal-data:erase"));
        let erase = t.authenticate_caller(b"t-erase").unwrap();
        assert!(erase.scopes.allows("personal-data:erase") && !erase.scopes.allows("cases:open"));
        assert_eq!(t.authenticate(b"t-loket").map(ClientId::as_str), Some("loket-1"));
        assert_eq!(t.authenticate_caller(b"nope"), None);

        let known = ["cases:open", "personal-data:read", "personal-data:erase"];
        t.check_scopes(&known).unwrap();
        // An unknown scope is named by line, not repeated.
        let err = t.check_scopes(&["cases:open", "personal-data:read"]).unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("cases:open,personal-data:read"), "{err}");
        // A server without scopes refuses scoped lines but takes old ones.
        let err = t.check_scopes(&[]).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("none"), "{err}");
        TokenTable::parse(&format!("a:{}\n", hex(hash_token(b"a")))).unwrap().check_scopes(&[]).unwrap();
    }

    #[test]
    fn bad_scope_lists_are_refused_without_echoing_them() {
        let h = hex(hash_token(b"x"));
        let secret = "my-plain-token";
        let cases: Vec<(String, &str)> = vec![
            (format!("a:{h}:\n"), "empty scope list"),
            (format!("a:{h}:   # nothing\n"), "empty scope list"),
            (format!("a:{h}:cases:open,,personal-data:read\n"), "empty scope in the list"),
            (format!("a:{h}:cases:open,\n"), "empty scope in the list"),
            (format!("a:{h}:Cases:Open\n"), "[a-z0-9:._-]"),
            (format!("a:{h}:{secret} x\n"), "[a-z0-9:._-]"),
            (format!("a:{h}:{}\n", "s".repeat(SCOPE_BYTES_MAX + 1)), "[a-z0-9:._-]"),
            (format!("a:{h}:cases:open,cases:open\n"), "listed twice"),
            (
                format!(
                    "a:{h}:{}\n",
                    (0..=SCOPES_PER_CLIENT_MAX).map(|i| format!("s{i}")).collect::<Vec<_>>().join(",")
                ),
                "more than 32",
            ),
        ];
        for (text, want) in cases {
            let err = TokenTable::parse(&text).unwrap_err().to_string();
            assert!(err.contains(want) && err.contains("line 1"), "{text:?}: {err}");
            assert!(!err.contains(secret) && !err.contains(&h), "{err}");
        }
        // An unknown scope that is a pasted token is not echoed either.
        let pasted = hex(hash_token(b"pasted"));
        let t = TokenTable::parse(&format!("a:{h}:{pasted}\n")).unwrap();
        let err = t.check_scopes(&["cases:open"]).unwrap_err().to_string();
        assert!(!err.contains(&pasted), "{err}");
    }

    #[test]
    fn rpc_scopes_refuse_calls_without_the_scope_with_permission_denied() {
        const TABLE: RpcScopes =
            RpcScopes(&[("/p.S/Open", "cases:open"), ("/p.S/Read", "personal-data:read")]);
        assert_eq!(TABLE.scopes(), vec!["cases:open", "personal-data:read"]);
        let text =
            format!("opener:{}:cases:open\nall:{}\n", hex(hash_token(b"t-open")), hex(hash_token(b"t-all")));
        let table = Arc::new(TokenTable::parse(&text).unwrap());
        let mut auth = AuthInterceptor::new(AuthMode::Tokens(table)).with_rpc_scopes(TABLE);
        let call = |auth: &mut AuthInterceptor, token: &str, rpc: Option<&str>| {
            let mut req = request(Some(&format!("Bearer {token}")));
            if let Some(rpc) = rpc {
                req.extensions_mut().insert(RpcPath(rpc.to_owned()));
            }
            auth.call(req)
        };
        let req = call(&mut auth, "t-open", Some("/p.S/Open")).unwrap();
        let caller = req.extensions().get::<Caller>().unwrap();
        assert_eq!(caller.id.as_str(), "opener");
        assert_eq!(req.extensions().get::<ClientId>().map(ClientId::as_str), Some("opener"));
        for (token, rpc) in [("t-open", Some("/p.S/Read")), ("t-all", Some("/p.S/Erase")), ("t-all", None)] {
            let status = call(&mut auth, token, rpc).unwrap_err();
            assert_eq!(status.code(), tonic::Code::PermissionDenied, "{token} {rpc:?}");
            let reason = status.metadata().get(REASON_CODE_METADATA_KEY).and_then(|v| v.to_str().ok());
            assert_eq!(reason, Some("SCOPE_MISSING"));
            assert!(!status.message().contains(token), "{}", status.message());
        }
        assert!(call(&mut auth, "t-all", Some("/p.S/Read")).is_ok(), "an old line has every scope");
        assert_eq!(auth.failures_total(), 0, "refusals by scope are not authentication failures");
        let status = call(&mut auth, "wrong", Some("/p.S/Open")).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "authentication comes first");
        let mut open = AuthInterceptor::new(AuthMode::Insecure).with_rpc_scopes(TABLE);
        let mut req = request(None);
        req.extensions_mut().insert(RpcPath("/p.S/Read".to_owned()));
        assert!(open.call(req).is_ok(), "--insecure-no-auth grants every scope");
    }

    #[test]
    fn client_ids_parse_as_in_the_file() {
        assert_eq!(ClientId::parse("loket-1.a_b").map(|c| c.to_string()), Some("loket-1.a_b".to_owned()));
        assert_eq!(ClientId::parse(""), None);
        assert_eq!(ClientId::parse("a b"), None);
        assert_eq!(ClientId::parse(&"a".repeat(CLIENT_ID_BYTES_MAX + 1)), None);
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

/// A client's interceptor that sends `authorization: Bearer <token>` (the
/// witness and the auditor's tools calling a hub).
#[derive(Debug, Clone)]
pub struct BearerToken(MetadataValue<tonic::metadata::Ascii>);

impl BearerToken {
    /// The interceptor for `token`; `None` when the token is not valid
    /// ASCII metadata. The token is never part of an error.
    pub fn new(token: &str) -> Option<Self> {
        format!("Bearer {token}").parse().ok().map(BearerToken)
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}
