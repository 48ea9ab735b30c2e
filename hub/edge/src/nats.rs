//! Connecting to NATS, with or without a user and password, over TLS or
//! not, the same way from every process (the hub's ingest and redrive,
//! every agency's outbox relay, the front office).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest NATS user name, in bytes.
pub const NATS_USER_BYTES_MAX: usize = 64;

/// Largest NATS password file, in bytes.
pub const NATS_PASSWORD_FILE_BYTES_MAX: u64 = 1024;

/// A NATS user and its password. The password is never shown: `Debug`
/// prints it as `<redacted>`.
#[derive(Clone)]
pub struct NatsCredentials {
    user: String,
    password: String,
}

impl std::fmt::Debug for NatsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsCredentials").field("user", &self.user).field("password", &"<redacted>").finish()
    }
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
    /// The password file is larger than [`NATS_PASSWORD_FILE_BYTES_MAX`].
    #[error("the NATS password file {} is larger than {NATS_PASSWORD_FILE_BYTES_MAX} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The password file holds no password (or not UTF-8 text).
    #[error("the NATS password file {} holds no password (empty, blank or not UTF-8)", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// Only one of user and password file was given.
    #[error("{0}")]
    Incomplete(&'static str),
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
        use std::io::Read;
        check_nats_user(user)?;
        let read_err = |source| NatsCredentialsError::Read { path: password_file.to_owned(), source };
        let file = std::fs::File::open(password_file).map_err(read_err)?;
        let mut bytes = Vec::new();
        file.take(NATS_PASSWORD_FILE_BYTES_MAX + 1).read_to_end(&mut bytes).map_err(read_err)?;
        if bytes.len() as u64 > NATS_PASSWORD_FILE_BYTES_MAX {
            return Err(NatsCredentialsError::TooLarge { path: password_file.to_owned() });
        }
        let password = String::from_utf8(bytes).ok().map(|s| s.trim().to_owned()).unwrap_or_default();
        if password.is_empty() {
            return Err(NatsCredentialsError::Empty { path: password_file.to_owned() });
        }
        Ok(Self { user: user.to_owned(), password })
    }

    /// The user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The password, for connecting only: never log it.
    pub fn password(&self) -> &str {
        &self.password
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
        Some(c) => options
            .user_and_password(c.user.clone(), c.password.clone())
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
        assert_eq!((c.user(), c.password.as_str()), ("hub", "s3cret-Pa55"));
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
