//! One logging contract for every binary of the project.
//!
//! - Logs go to **stderr**, never stdout (stdout is a command's output: an
//!   export, a report, the simulator's sample cases).
//! - The filter is `MPP_LOG` ([`LOG_FILTER_ENV`]), in `tracing`'s
//!   `EnvFilter` syntax (`info`, `warn,mpp_ledger=debug`); without it,
//!   [`LOG_FILTER_DEFAULT`]. `RUST_LOG` is not read, so one variable means
//!   the same on every process.
//! - `--log-format json|pretty` (`MPP_LOG_FORMAT`). Without it the format
//!   follows where the output goes: human-readable lines only when both
//!   stdout and stderr are terminals (someone is watching), one JSON
//!   object per line otherwise (a file, a pipe, journald, a container
//!   runtime's log collector).
//! - Colour escapes only when stderr is a terminal: a log file never
//!   carries them, whatever the format.

use std::io::IsTerminal;

/// The environment variable holding the log filter, on every binary.
pub const LOG_FILTER_ENV: &str = "MPP_LOG";

/// The filter without [`LOG_FILTER_ENV`].
pub const LOG_FILTER_DEFAULT: &str = "info";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for log shippers).
    Json,
    /// Human-readable lines.
    Pretty,
}

/// The `--log-format` flag, the same on every binary.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LogArgs {
    /// Log format: json or pretty. Default: pretty when stdout and stderr
    /// are both terminals, json otherwise. Logs go to stderr; the filter is
    /// MPP_LOG (default: info).
    #[arg(long, global = true, env = "MPP_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogInitError {
    /// `MPP_LOG` is not a valid filter.
    #[error("invalid {LOG_FILTER_ENV} filter {filter:?}: {error}")]
    Filter {
        /// The filter as given.
        filter: String,
        /// What is wrong with it.
        error: String,
    },
    /// A global subscriber was already installed.
    #[error("cannot install the log subscriber: {0}")]
    Install(String),
}

/// The format to use: the one asked for, else by where output goes.
pub fn resolve_format(
    asked: Option<LogFormat>,
    stdout_is_terminal: bool,
    stderr_is_terminal: bool,
) -> LogFormat {
    asked.unwrap_or(if stdout_is_terminal && stderr_is_terminal {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    })
}

/// The filter from `value` (the content of [`LOG_FILTER_ENV`], if set).
fn filter(value: Option<&str>) -> Result<tracing_subscriber::EnvFilter, LogInitError> {
    let text = value.unwrap_or(LOG_FILTER_DEFAULT);
    tracing_subscriber::EnvFilter::builder()
        .parse(text)
        .map_err(|e| LogInitError::Filter { filter: text.to_owned(), error: e.to_string() })
}

/// Installs the process's log subscriber under the contract above and
/// returns the format chosen. `default_filter` applies without `MPP_LOG`:
/// [`LOG_FILTER_DEFAULT`] for servers; a tool whose own output is on
/// stdout (the benchmark) may choose a quieter one. Call once, first thing
/// in `main`.
pub fn init(args: &LogArgs, default_filter: &str) -> Result<LogFormat, LogInitError> {
    let stderr_is_terminal = std::io::stderr().is_terminal();
    let format = resolve_format(args.log_format, std::io::stdout().is_terminal(), stderr_is_terminal);
    let value = std::env::var(LOG_FILTER_ENV).ok();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(Some(value.as_deref().unwrap_or(default_filter)))?)
        .with_writer(std::io::stderr)
        .with_ansi(stderr_is_terminal);
    let installed = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    installed.map_err(|e| LogInitError::Install(e.to_string()))?;
    Ok(format)
}

/// The fmt layer of [`init`], with its filter as a filter of its own, to
/// stand beside another layer with other filters (the span exporter of
/// `crate::otlp`). Writes exactly what [`init`]'s subscriber writes.
#[cfg(feature = "otlp")]
pub(crate) fn layer(
    args: &LogArgs,
    default_filter: &str,
) -> Result<
    (LogFormat, Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>),
    LogInitError,
> {
    use tracing_subscriber::Layer as _;
    let stderr_is_terminal = std::io::stderr().is_terminal();
    let format = resolve_format(args.log_format, std::io::stdout().is_terminal(), stderr_is_terminal);
    let value = std::env::var(LOG_FILTER_ENV).ok();
    let filter = filter(Some(value.as_deref().unwrap_or(default_filter)))?;
    let builder = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(stderr_is_terminal);
    let layer = match format {
        LogFormat::Json => builder.json().with_filter(filter).boxed(),
        LogFormat::Pretty => builder.with_filter(filter).boxed(),
    };
    Ok((format, layer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_follows_the_terminals_unless_asked() {
        assert_eq!(resolve_format(None, true, true), LogFormat::Pretty);
        assert_eq!(resolve_format(None, false, true), LogFormat::Json, "stdout redirected");
        assert_eq!(resolve_format(None, true, false), LogFormat::Json, "stderr redirected");
        assert_eq!(resolve_format(None, false, false), LogFormat::Json);
        assert_eq!(resolve_format(Some(LogFormat::Pretty), false, false), LogFormat::Pretty);
        assert_eq!(resolve_format(Some(LogFormat::Json), true, true), LogFormat::Json);
    }

    #[test]
    fn a_bad_filter_is_refused_with_its_text() {
        assert!(filter(None).is_ok());
        assert!(filter(Some("warn,mpp_ledger=debug")).is_ok());
        let err = filter(Some("info,=[")).unwrap_err();
        assert!(err.to_string().contains("MPP_LOG") && err.to_string().contains("info,=["), "{err}");
    }
}
