//! Connecting to NATS, anonymously or as a user (an NKey, or a password),
//! over TLS or not, the same way from every process (the hub's ingest and
//! redrive, every agency's outbox relay, the front office, the registrar).
//!
//! A participant proves who it is to NATS with an NKey (Ed25519): the
//! server's configuration holds only the public key (`nkey: "U…"`), the
//! seed stays in the participant's file (`--nats-nkey-file`), and the login
//! signs the server's nonce, so no secret ever crosses the network or sits
//! in the server's configuration. Decentralised JWT accounts would add an
//! operator and account hierarchy and a resolver the province would have to
//! run, for nothing this deployment needs: its participants are few, listed
//! in one server configuration, and change only with the registry. A
//! password (`--nats-password-file`) still works, for servers configured
//! before NKeys; every file in deploy/ uses NKeys.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest NATS user name, in bytes.
pub const NATS_USER_BYTES_MAX: usize = 64;

/// Largest NATS password file, in bytes.
pub const NATS_PASSWORD_FILE_BYTES_MAX: u64 = 1024;

/// Largest NATS NKey seed file, in bytes (a seed is 58 characters).
pub const NATS_NKEY_FILE_BYTES_MAX: u64 = 1024;

/// The flags of every process that connects to NATS: where the server is
/// and how to log in. Each has an `MPP_*` environment fallback.
#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS server URL, or a comma-separated list of a cluster's nodes (the
    /// process connects to one and fails over to the others).
    #[arg(long, env = "MPP_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// User name on the NATS server (the process's own user in
    /// deploy/nats/secure.conf); requires --nats-nkey-file or
    /// --nats-password-file. Replies then come to the inbox prefix
    /// `_INBOX.<user>`, the only subjects the server lets that user subscribe
    /// to. Without it the connection is anonymous.
    #[arg(long, env = "MPP_NATS_USER", value_parser = parse_nats_user)]
    pub nats_user: Option<String>,
    /// File holding the NKey user seed (`SU…`, from `mpp-registrar
    /// nats-nkey`) of --nats-user; the server's configuration holds its
    /// public key. Read at every connect, never logged. Excludes
    /// --nats-password-file.
    #[arg(long, env = "MPP_NATS_NKEY_FILE", requires = "nats_user", conflicts_with = "nats_password_file")]
    pub nats_nkey_file: Option<PathBuf>,
    /// File holding the NATS password of --nats-user (at most 1 KiB;
    /// surrounding whitespace ignored), for servers configured with
    /// passwords (no file in deploy/ is: they use NKeys). Read at start,
    /// never logged.
    #[arg(long, env = "MPP_NATS_PASSWORD_FILE", requires = "nats_user")]
    pub nats_password_file: Option<PathBuf>,
    /// CA certificate (PEM) of the NATS server's TLS certificate. With it
    /// the connection must be TLS and the server's certificate must chain to
    /// this CA; without it TLS is used only if the server asks for it.
    #[arg(long, env = "MPP_NATS_TLS_CA_FILE")]
    pub nats_tls_ca_file: Option<PathBuf>,
}

impl NatsArgs {
    /// Anonymous access to `nats_url`, without TLS unless the server asks.
    pub fn anonymous(nats_url: String) -> Self {
        NatsArgs {
            nats_url,
            nats_user: None,
            nats_nkey_file: None,
            nats_password_file: None,
            nats_tls_ca_file: None,
        }
    }

    /// The login of `--nats-user` with `--nats-nkey-file` or
    /// `--nats-password-file` (`None`: anonymous); reads no file.
    pub fn login(&self) -> Result<Option<NatsLogin>, NatsCredentialsError> {
        NatsLogin::from_flags(
            self.nats_user.as_deref(),
            self.nats_password_file.as_deref(),
            self.nats_nkey_file.as_deref(),
        )
    }

    /// The credentials of [`Self::login`] (`None`: anonymous). Reads the file.
    pub fn credentials(&self) -> Result<Option<NatsCredentials>, NatsCredentialsError> {
        self.login()?.map(|login| login.load()).transpose()
    }

    /// How to reach NATS: `credentials` and `--nats-tls-ca-file` (checked
    /// readable).
    pub fn access(&self, credentials: Option<NatsCredentials>) -> Result<NatsAccess, NatsCredentialsError> {
        NatsAccess::new(credentials, self.nats_tls_ca_file.as_deref())
    }
}

fn parse_nats_user(s: &str) -> Result<String, String> {
    check_nats_user(s).map(|()| s.to_owned()).map_err(|e| e.to_string())
}

/// How a NATS user proves who it is.
#[derive(Clone)]
enum Secret {
    /// A password, sent to the server (over TLS).
    Password(String),
    /// An NKey user seed (`SU…`): only the signature of the server's nonce
    /// is sent.
    NKeySeed(String),
}

/// A NATS user (the name of its inbox, `_INBOX.<user>`) and its password or
/// NKey seed. The secret is never shown: `Debug` prints it as `<redacted>`.
#[derive(Clone)]
pub struct NatsCredentials {
    user: String,
    secret: Secret,
}

impl std::fmt::Debug for NatsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.secret {
            Secret::Password(_) => "password",
            Secret::NKeySeed(_) => "nkey",
        };
        f.debug_struct("NatsCredentials").field("user", &self.user).field(kind, &"<redacted>").finish()
    }
}

/// Where a NATS user's secret is: the files of `--nats-password-file` and
/// `--nats-nkey-file`, read at every connect so a rotated file is picked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsSecretFile {
    /// A password file.
    Password(PathBuf),
    /// An NKey user seed file.
    NKeySeed(PathBuf),
}

/// A NATS login as the flags give it: the user and where its secret is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsLogin {
    /// The user (`--nats-user`).
    pub user: String,
    /// Its secret's file.
    pub secret: NatsSecretFile,
}

impl NatsLogin {
    /// The login of `--nats-user` with `--nats-nkey-file` or
    /// `--nats-password-file` (exactly one); `None` (anonymous) without any.
    pub fn from_flags(
        user: Option<&str>,
        password_file: Option<&Path>,
        nkey_file: Option<&Path>,
    ) -> Result<Option<Self>, NatsCredentialsError> {
        let secret = match (password_file, nkey_file) {
            (Some(_), Some(_)) => {
                return Err(NatsCredentialsError::Incomplete(
                    "--nats-password-file and --nats-nkey-file exclude each other",
                ))
            }
            (Some(p), None) => Some(NatsSecretFile::Password(p.to_owned())),
            (None, Some(n)) => Some(NatsSecretFile::NKeySeed(n.to_owned())),
            (None, None) => None,
        };
        match (user, secret) {
            (Some(user), Some(secret)) => Ok(Some(Self { user: user.to_owned(), secret })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(NatsCredentialsError::Incomplete(
                "--nats-user needs --nats-nkey-file or --nats-password-file",
            )),
            (None, Some(_)) => Err(NatsCredentialsError::Incomplete(
                "--nats-nkey-file and --nats-password-file need --nats-user",
            )),
        }
    }

    /// Reads the secret's file.
    pub fn load(&self) -> Result<NatsCredentials, NatsCredentialsError> {
        match &self.secret {
            NatsSecretFile::Password(f) => NatsCredentials::load(&self.user, f),
            NatsSecretFile::NKeySeed(f) => NatsCredentials::load_nkey(&self.user, f),
        }
    }
}

/// A new NKey user key pair: its seed (`SU…`, the `--nats-nkey-file`
/// content) and its public key (`U…`, the server configuration's `nkey`).
pub fn generate_nkey() -> (String, String) {
    let pair = nkeys::KeyPair::new_user();
    // A key pair made from random bytes always has its seed.
    let seed = pair.seed().unwrap_or_default();
    (seed, pair.public_key())
}

/// Reads a small text file, trimmed.
fn read_secret(path: &Path, max_bytes: u64) -> Result<String, NatsCredentialsError> {
    let read_err = |source| NatsCredentialsError::Read { path: path.to_owned(), source };
    let bytes = crate::files::read_at_most(path, max_bytes).map_err(read_err)?;
    if bytes.len() as u64 > max_bytes {
        return Err(NatsCredentialsError::TooLarge { path: path.to_owned() });
    }
    let text = String::from_utf8(bytes).ok().map(|s| s.trim().to_owned()).unwrap_or_default();
    if text.is_empty() {
        return Err(NatsCredentialsError::Empty { path: path.to_owned() });
    }
    Ok(text)
}

/// Why NATS credentials are unusable.
#[derive(Debug, thiserror::Error)]
pub enum NatsCredentialsError {
    /// The user name is empty, too long, or has characters other than ASCII
    /// letters, digits, `-` and `_` (it becomes a subject token of the inbox).
    #[error("NATS user {0:?} must be 1..={NATS_USER_BYTES_MAX} bytes of ASCII letters, digits, '-' and '_'")]
    BadUser(String),
    /// The password file cannot be read.
    #[error("cannot read the NATS password file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The password or NKey file is larger than
    /// [`NATS_PASSWORD_FILE_BYTES_MAX`] ([`NATS_NKEY_FILE_BYTES_MAX`]).
    #[error("the NATS secret file {} is larger than {NATS_PASSWORD_FILE_BYTES_MAX} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The password or NKey file is empty (or not UTF-8 text).
    #[error("the NATS secret file {} is empty, blank or not UTF-8", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The user, or its secret file, is missing, or both secret files
    /// were given.
    #[error("{0}")]
    Incomplete(&'static str),
    /// The NKey file does not hold an NKey user seed (`SU…`).
    #[error("the NATS NKey file {} holds no NKey user seed (SU…, as `mpp-registrar nats-nkey` writes)", path.display())]
    BadNKey {
        /// The file.
        path: PathBuf,
    },
    /// The CA file for the server's TLS certificate cannot be read.
    #[error("cannot read the NATS TLS CA file {}: {source}", path.display())]
    TlsCa {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Checks a NATS user name: 1..=[`NATS_USER_BYTES_MAX`] bytes of ASCII
/// letters, digits, `-` and `_` (it becomes a subject token of the inbox).
pub fn check_nats_user(user: &str) -> Result<(), NatsCredentialsError> {
    let ok = !user.is_empty()
        && user.len() <= NATS_USER_BYTES_MAX
        && user.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(NatsCredentialsError::BadUser(user.to_owned()))
    }
}

impl NatsCredentials {
    /// `user` with the password read from `password_file` (surrounding
    /// whitespace trimmed).
    pub fn load(user: &str, password_file: &Path) -> Result<Self, NatsCredentialsError> {
        check_nats_user(user)?;
        let password = read_secret(password_file, NATS_PASSWORD_FILE_BYTES_MAX)?;
        Ok(Self { user: user.to_owned(), secret: Secret::Password(password) })
    }

    /// `user` with the NKey user seed read from `seed_file` (surrounding
    /// whitespace ignored; at most [`NATS_NKEY_FILE_BYTES_MAX`] bytes).
    pub fn load_nkey(user: &str, seed_file: &Path) -> Result<Self, NatsCredentialsError> {
        check_nats_user(user)?;
        let seed = read_secret(seed_file, NATS_NKEY_FILE_BYTES_MAX)?;
        let bad = || NatsCredentialsError::BadNKey { path: seed_file.to_owned() };
        let pair = nkeys::KeyPair::from_seed(&seed).map_err(|_| bad())?;
        if pair.key_pair_type() != nkeys::KeyPairType::User {
            return Err(bad());
        }
        Ok(Self { user: user.to_owned(), secret: Secret::NKeySeed(seed) })
    }

    /// The public key of an NKey login (what the server's `nkey` is).
    pub fn nkey_public_key(&self) -> Option<String> {
        match &self.secret {
            Secret::NKeySeed(seed) => nkeys::KeyPair::from_seed(seed).ok().map(|p| p.public_key()),
            Secret::Password(_) => None,
        }
    }

    /// The user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The password of a password login, for connecting only: never log it.
    pub fn password(&self) -> Option<&str> {
        match &self.secret {
            Secret::Password(p) => Some(p),
            Secret::NKeySeed(_) => None,
        }
    }

    /// The inbox prefix of this user's connections, `_INBOX.<user>`: the
    /// server's configuration lets the user subscribe to `_INBOX.<user>.>`
    /// only, so no agency reads another's replies (or the hub's deliveries).
    pub fn inbox_prefix(&self) -> String {
        format!("_INBOX.{}", self.user)
    }
}

/// How a process reaches NATS besides the URL: its login and the CA that
/// signed the server's TLS certificate. The default is anonymous, and TLS
/// only if the server asks for it (verified against the system's roots).
#[derive(Debug, Clone, Default)]
pub struct NatsAccess {
    /// The user and password; anonymous when `None`.
    pub credentials: Option<NatsCredentials>,
    /// With a CA file (PEM), the connection must be TLS and the server's
    /// certificate must chain to this CA.
    pub tls_ca_file: Option<PathBuf>,
}

impl NatsAccess {
    /// `credentials`, and TLS verified against the CA in `tls_ca_file` when
    /// given; fails when that file cannot be read (a typo should stop the
    /// process at start, not make it retry its connection forever).
    pub fn new(
        credentials: Option<NatsCredentials>,
        tls_ca_file: Option<&Path>,
    ) -> Result<Self, NatsCredentialsError> {
        if let Some(path) = tls_ca_file {
            std::fs::File::open(path)
                .map_err(|source| NatsCredentialsError::TlsCa { path: path.to_owned(), source })?;
        }
        Ok(Self { credentials, tls_ca_file: tls_ca_file.map(Path::to_owned) })
    }
}

/// How long connecting to NATS may take at start, in milliseconds.
pub const NATS_CONNECT_TIMEOUT_MS: u64 = 5_000;

/// The connection options shared by both connect functions: the name,
/// the connect timeout, with credentials user, password and the user's
/// inbox prefix, and with a CA file required TLS verified against it.
fn connect_options(name: &str, access: &NatsAccess) -> async_nats::ConnectOptions {
    // The server's errors (a refused login, a publish outside the user's
    // permissions) otherwise show only as PubAck timeouts.
    let options = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_millis(NATS_CONNECT_TIMEOUT_MS))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::ServerError(e) => tracing::error!(error = %e, "NATS server error"),
                async_nats::Event::ClientError(e) => tracing::warn!(error = %e, "NATS client error"),
                _ => {}
            }
        });
    let options = match &access.credentials {
        Some(c) => match &c.secret {
            Secret::Password(p) => options.user_and_password(c.user.clone(), p.clone()),
            Secret::NKeySeed(seed) => options.nkey(seed.clone()),
        }
        .custom_inbox_prefix(c.inbox_prefix()),
        None => options,
    };
    match &access.tls_ca_file {
        Some(ca) => options.add_root_certificates(ca.clone()).require_tls(true),
        None => options,
    }
}

/// Connects to NATS as `name` (shown in the server's connection list),
/// with `access`'s login and TLS. `urls` may list several servers of a
/// cluster, comma-separated. The client reconnects by itself after a later
/// disconnect.
pub async fn connect_nats(
    urls: &str,
    name: &str,
    access: &NatsAccess,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let servers: Vec<&str> = urls.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    connect_options(name, access).connect(servers).await
}

/// Longest wait between two reconnect attempts to NATS, in milliseconds.
pub const NATS_RECONNECT_DELAY_MS_MAX: u64 = 2_000;

/// Connects to NATS as `name` in the background: returns at once, even when
/// no server is reachable yet, and keeps (re)connecting forever (waits
/// doubling from 50 ms up to [`NATS_RECONNECT_DELAY_MS_MAX`]). For the outbox
/// relay, which must not keep a service from starting while NATS is down.
/// A login the server refuses (`access`) is retried the same way, and
/// each refusal is logged. Fails only on unusable options (e.g. a malformed
/// URL).
pub async fn connect_nats_in_background(
    urls: &str,
    name: &str,
    access: &NatsAccess,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let servers: Vec<&str> = urls.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    connect_options(name, access)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            let exp = u32::try_from(attempts.min(6)).unwrap_or(6);
            Duration::from_millis((50u64 << exp).min(NATS_RECONNECT_DELAY_MS_MAX))
        })
        .connect(servers)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_credentials_come_from_a_file_and_are_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hub.pass");
        std::fs::write(&file, "s3cret-Pa55\n").unwrap();
        let c = NatsCredentials::load("hub", &file).unwrap();
        assert_eq!((c.user(), c.password()), ("hub", Some("s3cret-Pa55")));
        assert_eq!(c.inbox_prefix(), "_INBOX.hub");
        assert!(!format!("{c:?}").contains("s3cret"));
        for bad in ["", "a.b", "a*", "a>", "a b"] {
            assert!(
                matches!(NatsCredentials::load(bad, &file), Err(NatsCredentialsError::BadUser(_))),
                "{bad:?}"
            );
        }
        let missing = dir.path().join("missing");
        assert!(matches!(NatsCredentials::load("hub", &missing), Err(NatsCredentialsError::Read { .. })));
        std::fs::write(&file, "\n").unwrap();
        assert!(matches!(NatsCredentials::load("hub", &file), Err(NatsCredentialsError::Empty { .. })));
        std::fs::write(&file, "x".repeat(NATS_PASSWORD_FILE_BYTES_MAX as usize + 1)).unwrap();
        assert!(matches!(NatsCredentials::load("hub", &file), Err(NatsCredentialsError::TooLarge { .. })));
    }

    #[test]
    fn an_nkey_seed_comes_from_a_file_and_is_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dukcapil.nk");
        let (seed, public) = generate_nkey();
        assert!(seed.starts_with("SU") && public.starts_with('U'), "{public}");
        std::fs::write(&file, format!("{seed}\n")).unwrap();
        let login = NatsLogin::from_flags(Some("dukcapil"), None, Some(&file)).unwrap().unwrap();
        let c = login.load().unwrap();
        assert_eq!((c.user(), c.password()), ("dukcapil", None));
        assert_eq!(c.nkey_public_key(), Some(public.clone()));
        assert!(!format!("{c:?}").contains(&seed[2..]), "{c:?}");
        // A public key, an account seed or garbage is no user seed.
        let account = nkeys::KeyPair::new_account().seed().unwrap();
        for bad in [public.as_str(), account.as_str(), "SUNOTASEED"] {
            std::fs::write(&file, bad).unwrap();
            assert!(matches!(login.load(), Err(NatsCredentialsError::BadNKey { .. })), "{bad}");
        }
        std::fs::write(&file, "S".repeat(NATS_NKEY_FILE_BYTES_MAX as usize + 1)).unwrap();
        assert!(matches!(login.load(), Err(NatsCredentialsError::TooLarge { .. })));
    }

    #[test]
    fn the_flags_give_one_secret_with_a_user_or_nothing() {
        let (p, n) = (Path::new("p"), Path::new("n"));
        assert_eq!(NatsLogin::from_flags(None, None, None).unwrap(), None);
        let login = NatsLogin::from_flags(Some("hub"), Some(p), None).unwrap().unwrap();
        assert_eq!(login.secret, NatsSecretFile::Password(p.to_owned()));
        for (user, pass, nkey) in [
            (Some("hub"), Some(p), Some(n)),
            (Some("hub"), None, None),
            (None, Some(p), None),
            (None, None, Some(n)),
        ] {
            assert!(
                matches!(NatsLogin::from_flags(user, pass, nkey), Err(NatsCredentialsError::Incomplete(_))),
                "{user:?} {pass:?} {nkey:?}"
            );
        }
    }

    #[test]
    fn a_missing_tls_ca_file_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("ca.pem");
        assert!(matches!(NatsAccess::new(None, Some(&missing)), Err(NatsCredentialsError::TlsCa { .. })));
        std::fs::write(&missing, "pem").unwrap();
        let access = NatsAccess::new(None, Some(&missing)).unwrap();
        assert_eq!(access.tls_ca_file.as_deref(), Some(missing.as_path()));
        assert!(NatsAccess::new(None, None).unwrap().tls_ca_file.is_none());
    }
}
