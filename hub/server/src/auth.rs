//! Authentication of auditors, for the audit gRPC service.
//!
//! Each auditor (an Inspektorat, Ombudsman or BPK team, or a tool of
//! theirs) has a bearer token. The hub keeps only the SHA-256 of each token,
//! in the file given with `--auditor-tokens-file`, in the same format as the
//! agency services' `--tokens-file`:
//!
//! ```text
//! # client_id:sha256-hex-of-token, one per line; '#' starts a comment.
//! bpk-tim-3:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//! ```
//!
//! The hash of a token is printed by `printf %s "$TOKEN" | sha256sum`.
//! Auditors send `authorization: Bearer <token>` with every call. Auditor
//! access is read-only: the audit service has no call that changes anything.
//!
//! [`AuditorAuth`] (a tonic interceptor on the audit service only; cases,
//! health and reflection are separate services) refuses a missing or wrong
//! token with `UNAUTHENTICATED` (reason `UNAUTHENTICATED` in the
//! `mpp-reason-code` metadata), logged with the peer address and why, never
//! the token. The presented token's hash is compared with every stored hash,
//! each in constant time. On success the [`AuditorId`] is put into the
//! request's extensions. Without a tokens file every audit call is refused.
//!
//! This is a small copy of the agency kit's token table: the hub does not
//! depend on the agency kit.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mpp_core::ReasonCode;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::error::REASON_METADATA_KEY;

/// Largest tokens file read, in bytes.
pub const TOKENS_FILE_BYTES_MAX: usize = 1024 * 1024;

/// Most auditors in one tokens file.
pub const AUDITORS_MAX: usize = 10_000;

/// Longest auditor id, in bytes (`[A-Za-z0-9._-]`).
pub const AUDITOR_ID_BYTES_MAX: usize = 64;

/// Longest bearer token accepted, in bytes. Longer ones are refused unhashed.
pub const TOKEN_BYTES_MAX: usize = 4096;

/// The authenticated auditor, in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AuditorId(Arc<str>);

impl AuditorId {
    /// The id as written in the tokens file.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AuditorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

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
    /// More than [`AUDITORS_MAX`] auditors.
    #[error("tokens file lists more than {AUDITORS_MAX} auditors")]
    TooMany,
    /// No auditor at all.
    #[error("tokens file lists no auditor; without one every audit call would be refused")]
    Empty,
}

/// The auditors and the SHA-256 of their tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenTable {
    entries: Vec<(AuditorId, [u8; 32])>,
}

impl fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenTable").field("auditors", &self.auditors().collect::<Vec<_>>()).finish()
    }
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= AUDITOR_ID_BYTES_MAX
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// SHA-256 of a token: what the tokens file stores.
pub fn hash_token(token: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
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
    /// Parses a tokens file's text (see the module docs). Ids and hashes
    /// must be unique.
    pub fn parse(text: &str) -> Result<Self, TokensError> {
        let mut entries = Vec::new();
        let mut ids = BTreeSet::new();
        let mut hashes = BTreeSet::new();
        for (i, raw) in text.lines().enumerate() {
            let err = |problem| TokensError::Line { line: i + 1, problem };
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (id, hex_text) = line.split_once(':').ok_or_else(|| err("expected auditor_id:sha256-hex"))?;
            let (id, hex_text) = (id.trim(), hex_text.trim());
            if !valid_id(id) {
                return Err(err("auditor id must be 1..=64 bytes of [A-Za-z0-9._-]"));
            }
            let hash: [u8; 32] = hex::decode(hex_text)
                .ok()
                .and_then(|b| b.try_into().ok())
                .filter(|_| hex_text.len() == 64)
                .ok_or_else(|| {
                    err("the token hash must be 64 hex digits (printf %s TOKEN | sha256sum), not the token itself")
                })?;
            if !ids.insert(id.to_owned()) {
                return Err(err("auditor id listed twice"));
            }
            if !hashes.insert(hash) {
                return Err(err("token hash listed twice: two auditors would share one token"));
            }
            if entries.len() == AUDITORS_MAX {
                return Err(TokensError::TooMany);
            }
            entries.push((AuditorId(Arc::from(id)), hash));
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

    /// The auditor ids, in file order.
    pub fn auditors(&self) -> impl Iterator<Item = &AuditorId> {
        self.entries.iter().map(|(id, _)| id)
    }

    /// The auditor whose token this is. Every stored hash is compared, each
    /// in constant time, whatever matches.
    pub fn authenticate(&self, token: &[u8]) -> Option<&AuditorId> {
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

/// The tonic interceptor of the audit service (see the module docs).
#[derive(Debug, Clone)]
pub struct AuditorAuth {
    table: Option<Arc<TokenTable>>,
}

impl AuditorAuth {
    /// Admits the auditors of `table`; `None` refuses every call (no
    /// `--auditor-tokens-file`).
    pub fn new(table: Option<Arc<TokenTable>>) -> Self {
        Self { table }
    }

    fn check(&self, req: &Request<()>) -> Result<AuditorId, &'static str> {
        let table = self.table.as_ref().ok_or("this hub has no auditor tokens configured")?;
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
}

impl Interceptor for AuditorAuth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        match self.check(&req) {
            Ok(auditor) => {
                req.extensions_mut().insert(auditor);
                Ok(req)
            }
            Err(reason) => {
                let peer = req.remote_addr().map(|a| a.to_string()).unwrap_or_else(|| "unknown".to_owned());
                tracing::warn!(peer = %peer, reason, "Unauthenticated audit call refused");
                let mut status = Status::unauthenticated(format!(
                    "UNAUTHENTICATED: {reason}; send 'authorization: Bearer <token>' with an auditor token"
                ));
                status.metadata_mut().insert(
                    REASON_METADATA_KEY,
                    MetadataValue::from_static(ReasonCode::Unauthenticated.as_str()),
                );
                Err(status)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn hash_matches_sha256sum() {
        // printf %s test | sha256sum
        assert_eq!(hex::encode(hash_token(b"test")), TEST_HASH);
    }

    #[test]
    fn tokens_file_parses_and_authenticates() {
        let t = TokenTable::parse(&format!("# auditors\nbpk-3:{TEST_HASH} # team 3\n\n")).unwrap();
        assert_eq!(t.authenticate(b"test").map(AuditorId::as_str), Some("bpk-3"));
        assert_eq!(t.authenticate(b"tesT"), None);
    }

    #[test]
    fn bad_tokens_files_are_refused_without_echoing_lines() {
        let cases: Vec<(String, usize)> = vec![
            ("bpk-3 test".to_owned(), 1),
            (format!("\nbpk 3:{TEST_HASH}"), 2),
            ("bpk-3:s3cret-token".to_owned(), 1),
            (format!("a:{TEST_HASH}\na:{}", "0".repeat(64)), 2),
            (format!("a:{TEST_HASH}\nb:{TEST_HASH}"), 2),
        ];
        for (text, line) in cases {
            match TokenTable::parse(&text) {
                Err(e @ TokensError::Line { line: l, .. }) => {
                    assert_eq!(l, line, "{text}");
                    assert!(!e.to_string().contains("s3cret"), "{e}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(matches!(TokenTable::parse("# nobody\n"), Err(TokensError::Empty)));
    }

    fn request(auth: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(a) = auth {
            r.metadata_mut().insert("authorization", a.parse().unwrap());
        }
        r
    }

    #[test]
    fn interceptor_refuses_and_admits() {
        let table = Arc::new(TokenTable::parse(&format!("bpk-3:{TEST_HASH}")).unwrap());
        let mut auth = AuditorAuth::new(Some(table));
        for bad in [None, Some("Bearer nope"), Some("Basic dGVzdA=="), Some("Bearer ")] {
            let status = auth.call(request(bad)).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated);
            assert_eq!(status.metadata().get(REASON_METADATA_KEY).unwrap(), "UNAUTHENTICATED");
            assert!(!status.message().contains("nope"));
        }
        let ok = auth.call(request(Some("bearer test"))).unwrap();
        assert_eq!(ok.extensions().get::<AuditorId>().map(AuditorId::as_str), Some("bpk-3"));
        // No tokens file: everything is refused.
        let mut closed = AuditorAuth::new(None);
        assert_eq!(
            closed.call(request(Some("Bearer test"))).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }
}
