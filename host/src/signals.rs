//! SIGINT/SIGTERM handling for `pseidon run` and `pseidon send`: install early, then
//! block until one arrives ([`Termination::wait`]), or poll ([`Termination::wait_timeout`]).

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

    /// The signal that arrived (since the last call), if one did; waits up to
    /// `timeout` for one (`Duration::ZERO`: does not wait).
    pub fn wait_timeout(&mut self, timeout: std::time::Duration) -> Option<&'static str> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(sig) = self.signals.pending().next() {
                return Some(name(sig));
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            std::thread::sleep(left.min(std::time::Duration::from_millis(20)));
        }
    }

    /// Blocks until SIGINT or SIGTERM arrives; returns its name.
    pub fn wait(&mut self) -> &'static str {
        loop {
            if let Some(sig) = self.signals.forever().next() {
                return name(sig);
            }
        }
    }
}

fn name(sig: i32) -> &'static str {
    if sig == SIGINT { "SIGINT" } else { "SIGTERM" }
}

/// The exit code of a process ended by `signal` (a name [`Termination`] returned), as
/// a shell reports it: 128 + the signal number (130 for SIGINT, 143 for SIGTERM).
pub fn exit_code(signal: &str) -> u8 {
    if signal == "SIGINT" {
        128 + SIGINT as u8
    } else {
        128 + SIGTERM as u8
    }
}
