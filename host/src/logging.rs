//! Logging: the callback through which plugins log into the host's `tracing`
//! subscriber, and the subscriber the `pseidon` binary installs.

use std::io::IsTerminal as _;

use abi_stable::std_types::RStr;
use pseidon_plugin_api::ffi::FfiLogLevel;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;

/// The environment variable with the log filter (`RUST_LOG` syntax); it wins over `RUST_LOG`.
pub const LOG_ENV: &str = "PSEIDON_LOG";

/// The target of every event forwarded from a plugin (filter it with e.g.
/// `PSEIDON_LOG=pseidon::plugin=debug`).
pub const PLUGIN_TARGET: &str = "pseidon::plugin";

/// Why the subscriber could not be installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoggingError {
    /// `PSEIDON_LOG` or `RUST_LOG` is not a valid filter.
    #[error("invalid log filter `{filter}` in {var}: {reason}")]
    Filter {
        /// The variable it came from.
        var: &'static str,
        /// Its value.
        filter: String,
        /// The parser's reason.
        reason: String,
    },
    /// Another global subscriber is already installed.
    #[error("cannot install the log subscriber: {reason}")]
    Install {
        /// Why.
        reason: String,
    },
}

/// The callback handed to plugins at `init`: forwards a plugin's log record into
/// `tracing` with the fields `plugin` and `target` (the plugin's module path).
/// It never panics (a panic here would cross the plugin boundary).
pub extern "C" fn log_callback(
    level: FfiLogLevel,
    plugin: RStr<'_>,
    target: RStr<'_>,
    message: RStr<'_>,
) {
    let plugin = plugin.as_str();
    let target = target.as_str();
    let message = message.as_str();
    match level {
        FfiLogLevel::Error => tracing::error!(target: PLUGIN_TARGET, plugin, target, "{message}"),
        FfiLogLevel::Warn => tracing::warn!(target: PLUGIN_TARGET, plugin, target, "{message}"),
        FfiLogLevel::Info => tracing::info!(target: PLUGIN_TARGET, plugin, target, "{message}"),
        FfiLogLevel::Debug => tracing::debug!(target: PLUGIN_TARGET, plugin, target, "{message}"),
        FfiLogLevel::Trace => tracing::trace!(target: PLUGIN_TARGET, plugin, target, "{message}"),
    }
}

/// The most verbose level the current subscriber prints, as plugins see it
/// (plugins skip formatting anything more verbose).
pub fn max_level() -> FfiLogLevel {
    let current = LevelFilter::current();
    if current >= LevelFilter::TRACE {
        FfiLogLevel::Trace
    } else if current >= LevelFilter::DEBUG {
        FfiLogLevel::Debug
    } else if current >= LevelFilter::INFO {
        FfiLogLevel::Info
    } else if current >= LevelFilter::WARN {
        FfiLogLevel::Warn
    } else {
        FfiLogLevel::Error
    }
}

/// Installs the `pseidon` binary's subscriber: human-readable lines on stderr,
/// filtered by `PSEIDON_LOG`, else `RUST_LOG`, else `info`.
pub fn init_subscriber() -> Result<(), LoggingError> {
    init_subscriber_with_default("info")
}

/// How the `pseidon` binary's log lines look (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (ANSI colours on a terminal only).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (the
    /// message is `fields.message`), for log shippers.
    Json,
}

/// [`init_subscriber`] with another filter (`RUST_LOG` syntax) for when neither
/// `PSEIDON_LOG` nor `RUST_LOG` is set.
pub fn init_subscriber_with_default(default: &str) -> Result<(), LoggingError> {
    init_subscriber_with(default, LogFormat::Text)
}

/// [`init_subscriber_with_default`] in the given format.
pub fn init_subscriber_with(default: &str, format: LogFormat) -> Result<(), LoggingError> {
    let (var, filter) = match (std::env::var(LOG_ENV), std::env::var("RUST_LOG")) {
        (Ok(f), _) if !f.trim().is_empty() => (LOG_ENV, f),
        (_, Ok(f)) if !f.trim().is_empty() => ("RUST_LOG", f),
        _ => ("the default", default.to_string()),
    };
    let env_filter = EnvFilter::try_new(&filter).map_err(|e| LoggingError::Filter {
        var,
        filter: filter.clone(),
        reason: e.to_string(),
    })?;
    let installed = match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_env_filter(env_filter)
            .try_init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_writer(std::io::stderr)
            .with_env_filter(env_filter)
            .try_init(),
    };
    installed.map_err(|e| LoggingError::Install {
        reason: e.to_string(),
    })
}
