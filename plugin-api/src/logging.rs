//! Logging across the boundary: a plugin's copy of the `log` crate cannot see the
//! host's logger, so the plugin installs [`PluginLogger`], which forwards every
//! record to the host's callback with the plugin's name.

use abi_stable::std_types::RStr;

use crate::ffi::{FfiLogFn, FfiLogLevel};

/// Converts a `log` level to the wire level.
pub fn to_ffi_level(level: log::Level) -> FfiLogLevel {
    match level {
        log::Level::Error => FfiLogLevel::Error,
        log::Level::Warn => FfiLogLevel::Warn,
        log::Level::Info => FfiLogLevel::Info,
        log::Level::Debug => FfiLogLevel::Debug,
        log::Level::Trace => FfiLogLevel::Trace,
    }
}

/// Converts a wire level to a `log` level filter.
pub fn to_level_filter(level: FfiLogLevel) -> log::LevelFilter {
    match level {
        FfiLogLevel::Error => log::LevelFilter::Error,
        FfiLogLevel::Warn => log::LevelFilter::Warn,
        FfiLogLevel::Info => log::LevelFilter::Info,
        FfiLogLevel::Debug => log::LevelFilter::Debug,
        FfiLogLevel::Trace => log::LevelFilter::Trace,
    }
}

/// A `log::Log` that forwards to the host.
pub struct PluginLogger {
    plugin: String,
    log_fn: FfiLogFn,
}

impl PluginLogger {
    /// Installs the forwarding logger in this plugin's copy of `log`, once; later
    /// calls (a second `init`) only update the level.
    pub fn install(plugin: &str, log_fn: FfiLogFn, max_level: FfiLogLevel) {
        let logger = PluginLogger {
            plugin: plugin.to_string(),
            log_fn,
        };
        let _already_installed = log::set_boxed_logger(Box::new(logger));
        log::set_max_level(to_level_filter(max_level));
    }
}

impl log::Log for PluginLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        (self.log_fn)(
            to_ffi_level(record.level()),
            RStr::from_str(&self.plugin),
            RStr::from_str(record.target()),
            RStr::from_str(&message),
        );
    }

    fn flush(&self) {}
}
