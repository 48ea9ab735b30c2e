//! A link to a peer's gRPC API that this service calls with its own token
//! (the hub's verdict feed, the front office): the peer's URL, the token
//! file and the peer's CA certificate, checked once at start.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use mpp_edge::auth::BearerToken;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// Most bytes read of a token file (a token is one short line; a wrong path
/// to a large file fails fast).
pub const TOKEN_FILE_BYTES_MAX: u64 = 4_096;

/// Why a link's settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The token file holds no usable token.
    #[error("{0} holds no token (one line of visible ASCII)")]
    NoToken(PathBuf),
    /// The URL is not one tonic can connect to.
    #[error("{flag} {url:?} is not an http:// or https:// URL")]
    Url {
        /// The URL's flag, e.g. `--hub-url`.
        flag: &'static str,
        /// The URL given.
        url: String,
    },
    /// The CA certificate is unusable.
    #[error("{flag}: {message}")]
    Tls {
        /// The CA file's flag, e.g. `--front-office-tls-ca-file`.
        flag: &'static str,
        /// What tonic said.
        message: String,
    },
}

/// The endpoint of `url`, given by `flag`: an `http://` or `https://` URL
/// tonic accepts.
pub fn endpoint(flag: &'static str, url: &str) -> Result<Endpoint, LinkError> {
    let bad = || LinkError::Url { flag, url: url.to_owned() };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(bad());
    }
    Endpoint::from_shared(url.to_owned()).map_err(|_| bad())
}

/// The whole of the file at `path`.
pub fn read(path: &Path) -> Result<Vec<u8>, LinkError> {
    std::fs::read(path).map_err(|source| LinkError::Read { path: path.to_owned(), source })
}

/// The token on the first line of `path` (surrounding whitespace ignored;
/// at most [`TOKEN_FILE_BYTES_MAX`] bytes read), checked usable as a
/// [`BearerToken`].
pub fn read_token(path: &Path) -> Result<String, LinkError> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(TOKEN_FILE_BYTES_MAX).read_to_string(&mut text))
        .map_err(|source| LinkError::Read { path: path.to_owned(), source })?;
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() || BearerToken::new(line).is_none() {
        return Err(LinkError::NoToken(path.to_owned()));
    }
    Ok(line.to_owned())
}

/// `endpoint` trusting the CA certificate (PEM) `pem` from `flag`'s file.
pub fn with_ca(endpoint: Endpoint, flag: &'static str, pem: Vec<u8>) -> Result<Endpoint, LinkError> {
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
    endpoint.tls_config(tls).map_err(|e| LinkError::Tls { flag, message: e.to_string() })
}
