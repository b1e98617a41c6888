//! SIGINT/SIGTERM handling for `pseidon run`: install early, then block until one arrives.

use signal_hook::{
    consts::{SIGINT, SIGTERM},
    iterator::Signals,
};

/// Why the signal handlers could not be installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignalError {
    /// Registering the SIGINT/SIGTERM handlers failed.
    #[error("cannot install the SIGINT/SIGTERM handlers: {source}")]
    Install {
        /// The OS error.
        source: std::io::Error,
    },
}

/// Catches SIGINT and SIGTERM from the moment it is installed; [`Termination::wait`]
/// returns when one arrives (also when it arrived before `wait` was called).
pub struct Termination {
    signals: Signals,
}

impl Termination {
    /// Installs the handlers (the signals no longer end the process by themselves).
    pub fn install() -> Result<Self, SignalError> {
        Signals::new([SIGINT, SIGTERM])
            .map(|signals| Termination { signals })
            .map_err(|source| SignalError::Install { source })
    }

    /// Blocks until SIGINT or SIGTERM arrives; returns its name.
    pub fn wait(&mut self) -> &'static str {
        loop {
            if let Some(sig) = self.signals.forever().next() {
                return if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
            }
        }
    }
}
