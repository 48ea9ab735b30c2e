//! The tracking page's shared state ([`Web`]): its templates, settings,
//! session keys and live-update channel, built once at start and held by
//! every HTTP handler (`crate::state::AppState`). The handlers are
//! [`crate::page`]'s.

use minijinja::Environment;

use crate::proxy::ClientAddrPolicy;
use crate::session::Sessions;
use crate::watch::CaseChanges;

/// Largest request body accepted anywhere on the HTTP server, in bytes.
pub const REQUEST_BODY_BYTES_MAX: usize = 8 * 1024;

/// Longest `Cookie` header read, in bytes.
pub const COOKIE_HEADER_BYTES_MAX: usize = 4096;

/// Longest public URL (`--public-url`) or `Host` header used in QR codes.
pub const PUBLIC_URL_BYTES_MAX: usize = 200;

/// The security headers of every page: no caching (pages show a case), no
/// framing, no referrer, and a content security policy that allows only
/// this origin's script and the pages' inline styles.
pub(crate) const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub(crate) const LIVE_JS: &str = include_str!("templates/live.js");

pub(crate) const POW_JS: &str = include_str!("templates/pow.js");

pub(crate) const PERIKSA_JS: &str = include_str!("templates/periksa.js");

/// The one page layout (`templates/layout.html`) of the citizens' pages and
/// the operators' dashboard (which adds it to its own environment as
/// `layout.html`).
pub const LAYOUT_HTML: &str = include_str!("templates/layout.html");

/// How the page is served.
#[derive(Debug, Clone, Default)]
pub struct WebSettings {
    /// Public base URL of the hub (`--public-url`), e.g.
    /// `https://lacak.mpp.example.go.id`; QR codes point there. Without it,
    /// the request's `Host` header is used.
    pub public_url: Option<String>,
    /// How the client address is found (`--trusted-proxies`, or the
    /// deprecated `--trust-forwarded-for`).
    pub client_addr: ClientAddrPolicy,
    /// The hub serves TLS itself (`--tls-cert-file`): session cookies are
    /// `Secure` then, as they are behind an `https://` `--public-url`.
    pub serves_tls: bool,
    /// The MPPs' profiles (`--mpp-profiles-file`), shown in the citizens'
    /// pages' header and footer ([`crate::profile`]).
    pub profiles: std::sync::Arc<crate::profile::MppProfiles>,
}

impl WebSettings {
    /// Whether cookies must carry `Secure`: the browser reaches the hub
    /// over https (its own TLS, or a TLS proxy named by `--public-url`).
    pub fn secure_cookies(&self) -> bool {
        self.serves_tls || self.public_url.as_deref().is_some_and(|u| u.starts_with("https://"))
    }
}

/// The page's templates, sessions and live-update source.
pub struct Web {
    pub(crate) env: Environment<'static>,
    pub(crate) sessions: std::sync::Arc<Sessions>,
    pub(crate) changes: CaseChanges,
    pub(crate) settings: WebSettings,
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Web").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// Why the page could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// A template does not compile (a build defect).
    #[error("template: {0}")]
    Template(#[from] minijinja::Error),
    /// No random key for sessions.
    #[error(transparent)]
    Random(#[from] crate::session::RandomUnavailable),
    /// `--public-url` is not an http(s) URL.
    #[error("--public-url must start with http:// or https://, hold no spaces or quotes, and be at most {PUBLIC_URL_BYTES_MAX} bytes")]
    PublicUrl,
}

/// The templates, compiled once.
pub fn templates() -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    // Names end in .html, so minijinja's default callback escapes HTML.
    env.add_template("layout.html", LAYOUT_HTML)?;
    env.add_template("base.html", include_str!("templates/base.html"))?;
    env.add_template("form.html", include_str!("templates/form.html"))?;
    env.add_template("case.html", include_str!("templates/case.html"))?;
    env.add_template("case_body.html", include_str!("templates/case_body.html"))?;
    env.add_template("receipt.html", include_str!("templates/receipt.html"))?;
    env.add_template("message.html", include_str!("templates/message.html"))?;
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    Ok(env)
}

fn valid_base_url(s: &str) -> bool {
    s.len() <= PUBLIC_URL_BYTES_MAX
        && (s.starts_with("http://") || s.starts_with("https://"))
        && s.chars().all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '<' | '>' | '\\'))
}

impl Web {
    /// The page with a fresh random session key (sessions end with the
    /// process and do not cross replicas).
    pub fn new(changes: CaseChanges, settings: WebSettings) -> Result<Self, WebError> {
        Self::with_sessions(changes, settings, std::sync::Arc::new(Sessions::new()?))
    }

    /// The page with `sessions` (e.g. from `--session-key-file`; the
    /// proofs of work share their key).
    pub fn with_sessions(
        changes: CaseChanges,
        mut settings: WebSettings,
        sessions: std::sync::Arc<Sessions>,
    ) -> Result<Self, WebError> {
        if let Some(url) = &settings.public_url {
            if !valid_base_url(url) {
                return Err(WebError::PublicUrl);
            }
            settings.public_url = Some(url.trim_end_matches('/').to_owned());
        }
        Ok(Self { env: templates()?, sessions, changes, settings })
    }

    /// The settings.
    pub fn settings(&self) -> &WebSettings {
        &self.settings
    }

    /// The live-update source.
    pub fn changes(&self) -> &CaseChanges {
        &self.changes
    }
}
