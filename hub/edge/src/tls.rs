//! TLS (rustls, ring provider) for every server and client of the project,
//! configured by PEM files.
//!
//! Servers (every agency service, the front office and the hub) take
//! [`TlsArgs`]: `--tls-cert-file` and `--tls-key-file` (PEM), and optionally
//! `--tls-client-ca-file` to require client certificates signed by that CA
//! (mutual TLS for back-office callers). Without a certificate a server
//! serves plaintext only where that is safe or explicitly asked for:
//!
//! - every address it listens on is a loopback address (development, the
//!   local stack, tests): allowed, logged;
//! - otherwise it refuses to start unless `--insecure-plaintext` is given
//!   (e.g. behind a TLS-terminating proxy on a private network), which is
//!   logged loudly.
//!
//! Handshakes happen off the accept loop, at most
//! [`TLS_HANDSHAKES_CONCURRENT_MAX`] at once and
//! [`TLS_HANDSHAKES_PER_ADDRESS_MAX`] per client address, the ClientHello
//! within [`TLS_CLIENT_HELLO_TIMEOUT_MS`] and the whole handshake within
//! [`TLS_HANDSHAKE_TIMEOUT_MS`]; a failed handshake closes that connection
//! only ([`tls_incoming`]).
//!
//! Clients take `--tls-ca-file` ([`load_ca_pem`], [`client_tls_config`]) and
//! then use `https://` URLs.
//!
//! Errors name the file and what is wrong with it, never its content.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::conn::{AddrGate, PeerAddr};

/// Largest certificate, key or CA file read, in bytes. Real chains are a few
/// KiB; the bound keeps a wrong path (a log file, a device) from being read
/// whole.
pub const TLS_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// Most TLS handshakes in progress at once on one listener. A connection
/// arriving while this many run is closed at once (the accept loop never
/// waits), so a flood of slow or half-open clients ties up neither memory
/// nor the listener.
pub const TLS_HANDSHAKES_CONCURRENT_MAX: usize = 1024;

/// Most TLS handshakes in progress at once from one client address (IPv4
/// address or IPv6 /64, see [`crate::conn::AddrKey`]) on one listener.
pub const TLS_HANDSHAKES_PER_ADDRESS_MAX: usize = 16;

/// Longest a client may take from connecting to sending its ClientHello, in
/// milliseconds (a client that connects and says nothing frees its slot).
pub const TLS_CLIENT_HELLO_TIMEOUT_MS: u64 = 2_000;

/// Longest a whole TLS handshake may take from connecting, in milliseconds.
pub const TLS_HANDSHAKE_TIMEOUT_MS: u64 = 5_000;

/// ALPN protocol id of HTTP/2, which gRPC runs on.
pub const ALPN_H2: &[u8] = b"h2";

/// ALPN protocol id of HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The TLS flags of a server (`#[command(flatten)]` them). Each has an
/// `MPP_*` environment fallback.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// PEM file with the server's certificate chain (leaf first). With
    /// --tls-key-file, every server of this process speaks TLS only.
    #[arg(long, env = "MPP_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM file with the private key of --tls-cert-file (PKCS#8, PKCS#1 or
    /// SEC1). Read once at start; its content is never logged.
    #[arg(long, env = "MPP_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// PEM file of the CA(s) whose client certificates are accepted: with
    /// it, callers must present a certificate it signed (mutual TLS).
    #[arg(long, env = "MPP_TLS_CLIENT_CA_FILE", requires = "tls_cert_file")]
    pub tls_client_ca_file: Option<PathBuf>,
    /// Serve plaintext on non-loopback addresses without a certificate
    /// (behind a TLS-terminating proxy on a trusted network only; logged
    /// loudly). Without TLS files and without this flag, plaintext is only
    /// served on loopback addresses (127.0.0.0/8, ::1).
    #[arg(long, env = "MPP_INSECURE_PLAINTEXT", conflicts_with = "tls_cert_file")]
    pub insecure_plaintext: bool,
}

/// Which file of the TLS set-up an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFileRole {
    /// `--tls-cert-file`.
    Certificate,
    /// `--tls-key-file`.
    Key,
    /// `--tls-client-ca-file`.
    ClientCa,
    /// A client's `--tls-ca-file`.
    Ca,
}

impl std::fmt::Display for TlsFileRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsFileRole::Certificate => "--tls-cert-file",
            TlsFileRole::Key => "--tls-key-file",
            TlsFileRole::ClientCa => "--tls-client-ca-file",
            TlsFileRole::Ca => "--tls-ca-file",
        })
    }
}

/// Why TLS could not be set up. Each names the file and the problem, never
/// the file's content.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("{role} {}: cannot read it: {source}", file.display())]
    Read {
        /// Which flag.
        role: TlsFileRole,
        /// The file.
        file: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file is larger than [`TLS_FILE_BYTES_MAX`].
    #[error("{role} {}: larger than {TLS_FILE_BYTES_MAX} bytes; is it the right file?", file.display())]
    TooLarge {
        /// Which flag.
        role: TlsFileRole,
        /// The file.
        file: PathBuf,
    },
    /// The file holds no usable PEM item of the expected kind.
    #[error("{role} {}: no {expected} found in it (expected PEM)", file.display())]
    Missing {
        /// Which flag.
        role: TlsFileRole,
        /// The file.
        file: PathBuf,
        /// What was looked for.
        expected: &'static str,
    },
    /// The file is not well-formed PEM.
    #[error("{role} {}: malformed PEM ({expected})", file.display())]
    Malformed {
        /// Which flag.
        role: TlsFileRole,
        /// The file.
        file: PathBuf,
        /// What was looked for.
        expected: &'static str,
    },
    /// rustls refused the certificate and key (e.g. the key does not match
    /// the certificate, or an unsupported key type).
    #[error("--tls-cert-file {} with --tls-key-file {}: unusable: {reason}", cert.display(), key.display())]
    Config {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason (it carries no key material).
        reason: String,
    },
    /// A CA file holds certificates rustls cannot use as trust roots.
    #[error("{role} {}: unusable as a CA: {reason}", file.display())]
    Roots {
        /// Which flag.
        role: TlsFileRole,
        /// The file.
        file: PathBuf,
        /// The reason.
        reason: String,
    },
    /// No TLS files and a non-loopback address without `--insecure-plaintext`.
    #[error(
        "refusing to serve plaintext on {addr}, which is not a loopback address: give --tls-cert-file \
         and --tls-key-file, or --insecure-plaintext (behind a TLS-terminating proxy only)"
    )]
    PlaintextRefused {
        /// The first non-loopback address.
        addr: SocketAddr,
    },
}

/// How a server's listeners speak.
#[derive(Debug, Clone)]
pub enum Transport {
    /// Plaintext (loopback, or `--insecure-plaintext`).
    Plaintext,
    /// TLS with this configuration.
    Tls(ServerTls),
}

impl Transport {
    /// The transport for servers listening on `addrs`, from `args` (see the
    /// module docs); logs the choice.
    pub fn from_args(args: &TlsArgs, addrs: &[SocketAddr]) -> Result<Transport, TlsError> {
        match (&args.tls_cert_file, &args.tls_key_file) {
            (Some(cert), Some(key)) => {
                let tls = ServerTls::load(cert, key, args.tls_client_ca_file.as_deref())?;
                tracing::info!(
                    cert = %cert.display(),
                    mutual = tls.mutual(),
                    "TLS on: servers accept TLS connections only"
                );
                Ok(Transport::Tls(tls))
            }
            _ => {
                if let Some(addr) = addrs.iter().find(|a| !a.ip().is_loopback()) {
                    if !args.insecure_plaintext {
                        return Err(TlsError::PlaintextRefused { addr: *addr });
                    }
                    tracing::warn!(
                        addr = %addr,
                        "PLAINTEXT on a non-loopback address (--insecure-plaintext): tokens and personal \
                         data cross the network in the clear unless a TLS proxy sits in front"
                    );
                } else {
                    tracing::info!("No TLS files: serving plaintext on loopback addresses only");
                }
                Ok(Transport::Plaintext)
            }
        }
    }

    /// The TLS configuration, if any.
    pub fn tls(&self) -> Option<&ServerTls> {
        match self {
            Transport::Plaintext => None,
            Transport::Tls(t) => Some(t),
        }
    }
}

/// A loaded server certificate and key (and client CA, for mutual TLS).
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
    mutual: bool,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the configuration: it holds the private key.
        f.debug_struct("ServerTls").field("mutual", &self.mutual).finish_non_exhaustive()
    }
}

/// The ring crypto provider, named explicitly so that no other provider
/// enabled elsewhere in the build is picked up by accident.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM file of at most [`TLS_FILE_BYTES_MAX`] bytes.
fn read_bounded(role: TlsFileRole, file: &Path) -> Result<Vec<u8>, TlsError> {
    let read_err = |source| TlsError::Read { role, file: file.to_owned(), source };
    let buf = crate::files::read_at_most(file, TLS_FILE_BYTES_MAX).map_err(read_err)?;
    if buf.len() as u64 > TLS_FILE_BYTES_MAX {
        return Err(TlsError::TooLarge { role, file: file.to_owned() });
    }
    Ok(buf)
}

/// Every certificate in a PEM file (at least one).
fn read_certs(role: TlsFileRole, file: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    const EXPECTED: &str = "CERTIFICATE";
    let pem = read_bounded(role, file)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        // The parser's message may quote a line of the file: not shown.
        .map_err(|_| TlsError::Malformed { role, file: file.to_owned(), expected: EXPECTED })?;
    if certs.is_empty() {
        return Err(TlsError::Missing { role, file: file.to_owned(), expected: EXPECTED });
    }
    Ok(certs)
}

/// The first private key in a PEM file.
fn read_key(file: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    const EXPECTED: &str = "PRIVATE KEY";
    let role = TlsFileRole::Key;
    let pem = read_bounded(role, file)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            TlsError::Missing { role, file: file.to_owned(), expected: EXPECTED }
        }
        // The parser's message may quote a line of the key file: not shown.
        _ => TlsError::Malformed { role, file: file.to_owned(), expected: EXPECTED },
    })
}

impl ServerTls {
    /// Loads the certificate chain `cert` and private key `key` (PEM), and
    /// with `client_ca` requires client certificates that CA signed.
    pub fn load(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<ServerTls, TlsError> {
        let chain = read_certs(TlsFileRole::Certificate, cert)?;
        let private = read_key(key)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config {
                cert: cert.to_owned(),
                key: key.to_owned(),
                reason: e.to_string(),
            })?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in read_certs(TlsFileRole::ClientCa, ca)? {
                    roots.add(c).map_err(|e| TlsError::Roots {
                        role: TlsFileRole::ClientCa,
                        file: ca.to_owned(),
                        reason: e.to_string(),
                    })?;
                }
                let verifier =
                    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|e| TlsError::Roots {
                            role: TlsFileRole::ClientCa,
                            file: ca.to_owned(),
                            reason: e.to_string(),
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        // rustls checks that the key matches the certificate's public key.
        let config = builder.with_single_cert(chain, private).map_err(|e| TlsError::Config {
            cert: cert.to_owned(),
            key: key.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(ServerTls { config: Arc::new(config), mutual: client_ca.is_some() })
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.mutual
    }

    /// An acceptor offering the ALPN protocols `alpn` (e.g. [`ALPN_H2`] for
    /// gRPC, [`ALPN_HTTP11`] for an HTTP/1.1 server).
    pub fn acceptor(&self, alpn: &[&[u8]]) -> TlsAcceptor {
        TlsAcceptor::from(self.config(alpn))
    }

    /// The server configuration offering the ALPN protocols `alpn`, for
    /// [`tls_incoming`].
    pub fn config(&self, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let mut config = (*self.config).clone();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// Turns a stream of admitted connections into a stream of TLS connections.
///
/// A background task takes connections from `incoming` and hands each to a
/// task of its own for the handshake, so the accept loop never waits on a
/// slow client. At most [`TLS_HANDSHAKES_CONCURRENT_MAX`] handshakes run at
/// once, at most [`TLS_HANDSHAKES_PER_ADDRESS_MAX`] of them from one client
/// address; a connection over either cap is closed at once. The client must
/// send its ClientHello within [`TLS_CLIENT_HELLO_TIMEOUT_MS`] and finish
/// the handshake within [`TLS_HANDSHAKE_TIMEOUT_MS`] of connecting; a
/// handshake that fails or times out closes that connection (logged at debug
/// level: scanners and plaintext clients are routine). The task stops when
/// the returned stream is dropped, and then drops `incoming` (closing its
/// listener).
pub fn tls_incoming<S, IO>(
    incoming: S,
    config: Arc<rustls::ServerConfig>,
) -> impl Stream<Item = TlsStream<IO>>
where
    S: Stream<Item = IO> + Send + 'static,
    IO: AsyncRead + AsyncWrite + PeerAddr + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<TlsStream<IO>>(TLS_HANDSHAKES_CONCURRENT_MAX);
    tokio::spawn(async move {
        let handshakes = AddrGate::new(TLS_HANDSHAKES_CONCURRENT_MAX, TLS_HANDSHAKES_PER_ADDRESS_MAX);
        let mut incoming = std::pin::pin!(incoming);
        loop {
            let io = tokio::select! {
                () = tx.closed() => return,
                next = incoming.next() => match next {
                    None => return,
                    Some(io) => io,
                },
            };
            let peer = io.peer_addr();
            let ticket = match handshakes.admit(peer.ip()) {
                Ok(t) => t,
                Err(why) => {
                    tracing::debug!(peer = %peer, why = ?why, "TLS handshake refused by the handshake caps");
                    continue;
                }
            };
            let config = config.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let result = handshake(io, config).await;
                drop(ticket);
                match result {
                    Ok(tls) => {
                        let _ = tx.send(tls).await;
                    }
                    Err(e) => tracing::debug!(peer = %peer, error = %e, "TLS handshake failed"),
                }
            });
        }
    });
    tokio_stream_from(rx)
}

/// One server handshake on `io`, within the ClientHello and handshake
/// timeouts.
async fn handshake<IO>(io: IO, config: Arc<rustls::ServerConfig>) -> io::Result<TlsStream<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = tokio::time::Instant::now() + Duration::from_millis(TLS_HANDSHAKE_TIMEOUT_MS);
    let hello_by = tokio::time::Instant::now() + Duration::from_millis(TLS_CLIENT_HELLO_TIMEOUT_MS);
    let timed_out = |what: &str| io::Error::new(io::ErrorKind::TimedOut, format!("no {what} in time"));
    let start = tokio::time::timeout_at(
        hello_by.min(deadline),
        tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io),
    )
    .await
    .map_err(|_| timed_out("ClientHello"))??;
    tokio::time::timeout_at(deadline, start.into_stream(config)).await.map_err(|_| timed_out("handshake"))?
}

/// A stream over an mpsc receiver.
fn tokio_stream_from<T: Send + 'static>(rx: mpsc::Receiver<T>) -> impl Stream<Item = T> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

/// Reads a client's `--tls-ca-file`: the PEM certificates of the CA(s) the
/// client trusts (checked to hold at least one certificate), as PEM bytes.
pub fn load_ca_pem(file: &Path) -> Result<Vec<u8>, TlsError> {
    read_certs(TlsFileRole::Ca, file)?;
    read_bounded(TlsFileRole::Ca, file)
}

/// A tonic client TLS configuration trusting exactly the CA(s) in `file`
/// (for `https://` endpoints).
pub fn client_tls_config(file: &Path) -> Result<tonic::transport::ClientTlsConfig, TlsError> {
    let pem = load_ca_pem(file)?;
    Ok(tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(pem)))
}

/// A rustls client configuration trusting exactly the CA(s) in `file`,
/// offering `alpn` (for hand-written HTTPS clients and tests).
pub fn rustls_client_config(file: &Path, alpn: &[&[u8]]) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in read_certs(TlsFileRole::Ca, file)? {
        roots.add(c).map_err(|e| TlsError::Roots {
            role: TlsFileRole::Ca,
            file: file.to_owned(),
            reason: e.to_string(),
        })?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Roots { role: TlsFileRole::Ca, file: file.to_owned(), reason: e.to_string() })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Throw-away certificate authorities and certificates for tests (feature
/// `testing`): a CA, a server certificate it signed for `localhost` and
/// `127.0.0.1`, a client certificate it signed, and an unrelated CA, all
/// written as PEM files into a directory.
#[cfg(feature = "testing")]
pub mod test_pki {
    use std::net::{IpAddr, Ipv4Addr};
    use std::path::{Path, PathBuf};

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
    };

    /// The PEM files of one test PKI.
    #[derive(Debug, Clone)]
    pub struct TestPki {
        /// The CA's certificate (what clients trust).
        pub ca: PathBuf,
        /// The server's certificate, signed by the CA.
        pub cert: PathBuf,
        /// The server's private key.
        pub key: PathBuf,
        /// A client certificate signed by the CA (for mutual TLS).
        pub client_cert: PathBuf,
        /// The client certificate's private key.
        pub client_key: PathBuf,
        /// An unrelated CA's certificate (a client trusting it must fail).
        pub other_ca: PathBuf,
        /// A valid private key that does not match `cert`.
        pub other_key: PathBuf,
    }

    fn ca(name: &str) -> Result<(rcgen::Certificate, KeyPair), rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok((cert, key))
    }

    impl TestPki {
        /// Generates a PKI and writes its files into `dir`.
        pub fn generate(dir: &Path) -> Result<TestPki, Box<dyn std::error::Error>> {
            let (ca_cert, ca_key) = ca("MPP test CA")?;
            let (other_cert, other_ca_key) = ca("Unrelated test CA")?;

            let mut server = CertificateParams::new(Vec::<String>::new())?;
            server.distinguished_name.push(DnType::CommonName, "localhost");
            server.subject_alt_names = vec![
                SanType::DnsName("localhost".try_into()?),
                SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ];
            server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            let server_key = KeyPair::generate()?;
            let server_cert = server.signed_by(&server_key, &ca_cert, &ca_key)?;

            let mut client = CertificateParams::new(Vec::<String>::new())?;
            client.distinguished_name.push(DnType::CommonName, "back-office");
            client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let client_key = KeyPair::generate()?;
            let client_cert = client.signed_by(&client_key, &ca_cert, &ca_key)?;

            let write = |name: &str, pem: String| -> std::io::Result<PathBuf> {
                let path = dir.join(name);
                std::fs::write(&path, pem)?;
                Ok(path)
            };
            Ok(TestPki {
                ca: write("ca.pem", ca_cert.pem())?,
                cert: write("server.pem", server_cert.pem())?,
                key: write("server.key", server_key.serialize_pem())?,
                client_cert: write("client.pem", client_cert.pem())?,
                client_key: write("client.key", client_key.serialize_pem())?,
                other_ca: write("other-ca.pem", other_cert.pem())?,
                other_key: write("other.key", other_ca_key.serialize_pem())?,
            })
        }
    }

    /// Largest answer [`https_get`] reads, in bytes.
    pub const HTTPS_ANSWER_BYTES_MAX: u64 = 4 * 1024 * 1024;

    /// `GET path` over HTTPS/1.1 at `addr` with `headers`, checking the
    /// server's certificate against the CA in `ca` for `server_name`; the
    /// status code and body (`Connection: close`, so the body is the rest).
    pub async fn https_get(
        addr: std::net::SocketAddr,
        server_name: &str,
        ca: &Path,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(u16, String), String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let config = super::rustls_client_config(ca, &[super::ALPN_HTTP11]).map_err(|e| e.to_string())?;
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(server_name.to_owned())
            .map_err(|e| e.to_string())?;
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {server_name}\r\n{extra}Connection: close\r\n\r\n");
        tls.write_all(request.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
        let mut answer = Vec::new();
        tls.take(HTTPS_ANSWER_BYTES_MAX).read_to_end(&mut answer).await.map_err(|e| format!("read: {e}"))?;
        parse_answer(&answer)
    }

    /// `GET path` over plain HTTP/1.1 (to show a TLS server refuses it).
    pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> Result<(u16, String), String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
        let mut answer = Vec::new();
        tcp.take(HTTPS_ANSWER_BYTES_MAX).read_to_end(&mut answer).await.map_err(|e| format!("read: {e}"))?;
        parse_answer(&answer)
    }

    fn parse_answer(answer: &[u8]) -> Result<(u16, String), String> {
        let text = String::from_utf8_lossy(answer);
        let status = text
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| format!("not an HTTP answer ({} bytes)", answer.len()))?;
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
        Ok((status, body))
    }
}
