//! Processors: plugins that run work of their own under `pseidon run`.
//!
//! The host calls [`Processor::start`] once every plugin is loaded, polls
//! [`Processor::status`] while it runs (so that work which died ends `pseidon run`
//! with an error, instead of a service that runs on doing nothing), and calls
//! [`Processor::stop`] at the end.

use std::time::Duration;

use abi_stable::{sabi_trait::TD_Opaque, std_types::RArc};

use crate::{
    error::Error,
    ffi::{FfiProcessor, FfiProcessor_TO, FfiProcessorArc, FfiProcessorStatus, FfiResult},
    module::catch_panic,
};

/// What a plugin implements to run work of its own.
pub trait Processor: Send + Sync + 'static {
    /// Starts the work in threads of its own and returns.
    fn start(&self) -> Result<(), Error>;
    /// Stops the work, within `timeout`.
    fn stop(&self, timeout: Duration) -> Result<(), Error>;
    /// Whether the work still runs. `pseidon run` polls it a few times a second: a
    /// [`ProcessorStatus::Failed`] stops the host with a non-zero exit naming the
    /// processor and the error. Must not block. The default says always running
    /// (for a processor whose work cannot die on its own).
    fn status(&self) -> ProcessorStatus {
        ProcessorStatus::Running
    }
}

/// What [`Processor::status`] says.
///
/// ```
/// use pseidon_plugin_api::{Error, ProcessorStatus};
/// let s = ProcessorStatus::Failed(Error::other("the copy thread ended"));
/// assert!(s.to_string().contains("the copy thread ended"));
/// assert_eq!(ProcessorStatus::Running.to_string(), "running");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessorStatus {
    /// Started and still working (also before `start` and after `stop`).
    Running,
    /// The work ended by itself without an error.
    Finished,
    /// The work ended with this error.
    Failed(Error),
}

impl std::fmt::Display for ProcessorStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProcessorStatus::Running => f.write_str("running"),
            ProcessorStatus::Finished => f.write_str("finished"),
            ProcessorStatus::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

impl From<ProcessorStatus> for FfiProcessorStatus {
    fn from(s: ProcessorStatus) -> Self {
        match s {
            ProcessorStatus::Running => FfiProcessorStatus::Running,
            ProcessorStatus::Finished => FfiProcessorStatus::Finished,
            ProcessorStatus::Failed(e) => FfiProcessorStatus::Failed(e.into()),
        }
    }
}

impl From<FfiProcessorStatus> for ProcessorStatus {
    fn from(s: FfiProcessorStatus) -> Self {
        match s {
            FfiProcessorStatus::Running => ProcessorStatus::Running,
            FfiProcessorStatus::Finished => ProcessorStatus::Finished,
            FfiProcessorStatus::Failed(e) => ProcessorStatus::Failed(e.into()),
        }
    }
}

struct ProcessorAdapter<T> {
    owner: String,
    inner: T,
}

impl<T: Processor> FfiProcessor for ProcessorAdapter<T> {
    fn start(&self) -> FfiResult<()> {
        catch_panic(&self.owner, "start", || self.inner.start())
            .map_err(Into::into)
            .into()
    }

    fn stop(&self, timeout_ms: u64) -> FfiResult<()> {
        catch_panic(&self.owner, "stop", || {
            self.inner.stop(Duration::from_millis(timeout_ms))
        })
        .map_err(Into::into)
        .into()
    }

    fn status(&self) -> FfiProcessorStatus {
        // A panic in `status` is the processor failing.
        match catch_panic(&self.owner, "status", || Ok(self.inner.status())) {
            Ok(s) => s.into(),
            Err(e) => FfiProcessorStatus::Failed(e.into()),
        }
    }
}

/// A registered processor, as the host sees it.
///
/// ```
/// # use std::time::Duration;
/// # use pseidon_plugin_api::{Registry, Processor, Error};
/// struct Idle;
/// impl Processor for Idle {
///     fn start(&self) -> Result<(), Error> { Ok(()) }
///     fn stop(&self, _timeout: Duration) -> Result<(), Error> { Ok(()) }
/// }
/// let registry = Registry::new("doc");
/// registry.register_processor("idle", Idle).unwrap();
/// let p = registry.reg_get_wait_processor("idle", Duration::from_secs(1)).unwrap();
/// p.start().unwrap();
/// p.stop(Duration::from_secs(1)).unwrap();
/// ```
#[derive(Clone)]
pub struct ProcessorHandle {
    inner: FfiProcessorArc,
}

impl ProcessorHandle {
    pub(crate) fn from_impl(owner: &str, processor: impl Processor) -> Self {
        let adapter = ProcessorAdapter {
            owner: owner.to_string(),
            inner: processor,
        };
        ProcessorHandle {
            inner: RArc::new(FfiProcessor_TO::from_value(adapter, TD_Opaque)),
        }
    }

    pub(crate) fn from_ffi(inner: FfiProcessorArc) -> Self {
        ProcessorHandle { inner }
    }

    pub(crate) fn into_ffi(self) -> FfiProcessorArc {
        self.inner
    }

    /// Starts the processor.
    pub fn start(&self) -> Result<(), Error> {
        self.inner.start().into_result().map_err(Error::from)
    }

    /// Stops the processor within `timeout`.
    pub fn stop(&self, timeout: Duration) -> Result<(), Error> {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.inner
            .stop(timeout_ms)
            .into_result()
            .map_err(Error::from)
    }

    /// Whether the processor still runs (see [`Processor::status`]); a processor built
    /// against an interface without `status` always says [`ProcessorStatus::Running`].
    pub fn status(&self) -> ProcessorStatus {
        self.inner.status().into()
    }
}
