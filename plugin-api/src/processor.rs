//! Processors: plugins that run work of their own under `pseidon run`.

use std::time::Duration;

use abi_stable::{sabi_trait::TD_Opaque, std_types::RArc};

use crate::{
    error::Error,
    ffi::{FfiProcessor, FfiProcessor_TO, FfiProcessorArc, FfiResult},
    module::catch_panic,
};

/// What a plugin implements to run work of its own.
pub trait Processor: Send + Sync + 'static {
    /// Starts the work in threads of its own and returns.
    fn start(&self) -> Result<(), Error>;
    /// Stops the work, within `timeout`.
    fn stop(&self, timeout: Duration) -> Result<(), Error>;
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
}
