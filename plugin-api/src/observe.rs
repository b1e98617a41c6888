//! The observability extension of a plugin: its metrics and readiness checks, found
//! by the symbol [`OBSERVE_SYMBOL`] beside the root module rather than in it.
//!
//! Why a symbol: abi_stable refuses a root module with fewer fields than the host
//! expects, so a field added to [`PluginMod`](crate::PluginMod) would refuse every
//! plugin built before it. An extension symbol keeps the root module's layout as it
//! is: a plugin without the symbol (built before 0.3 had it) loads and reports no
//! metrics and no checks. Its layout is checked with abi_stable before the first call;
//! a mismatch is reported and the extension left unused, the plugin still loads.
//! A later addition is a new symbol (`…_v2`), never a change to this one.

use std::time::Duration;

use abi_stable::{
    StableAbi, abi_stability::abi_checking::check_layout_compatibility, std_types::RVec,
};

use crate::{
    ffi::{FfiCheck, FfiMetricFamily, FfiObserve, FfiObserveExport},
    metrics::{Check, MetricFamily},
};

/// The name of the symbol a plugin exports (`extern "C" fn() -> FfiObserveExport`),
/// NUL-terminated as `dlsym` wants it.
pub const OBSERVE_SYMBOL: &[u8] = b"pseidon_plugin_observe_v1\0";

/// The signature of the symbol.
pub type ObserveFn = extern "C" fn() -> FfiObserveExport;

/// What [`export_plugin!`](crate::export_plugin)'s symbol returns (not for users).
#[doc(hidden)]
pub fn export(
    metrics: extern "C" fn() -> RVec<FfiMetricFamily>,
    readiness: extern "C" fn(u64) -> RVec<FfiCheck>,
) -> FfiObserveExport {
    FfiObserveExport {
        layout: <FfiObserve as StableAbi>::LAYOUT,
        observe: FfiObserve { metrics, readiness },
    }
}

/// A loaded plugin's observability extension, for hosts.
#[derive(Clone, Copy)]
pub struct Observer {
    observe: FfiObserve,
}

impl Observer {
    /// Checks what the plugin's symbol returned against this crate's layout; `Err`
    /// names the first mismatch.
    pub fn from_export(export: FfiObserveExport) -> Result<Observer, String> {
        check_layout_compatibility(<FfiObserve as StableAbi>::LAYOUT, export.layout)
            .map_err(|e| e.to_string().lines().take(3).collect::<Vec<_>>().join(" "))?;
        Ok(Observer {
            observe: export.observe,
        })
    }

    /// The plugin's metric families now.
    pub fn metrics(&self) -> Vec<MetricFamily> {
        (self.observe.metrics)()
            .into_iter()
            .map(MetricFamily::from_ffi)
            .collect()
    }

    /// The plugin's readiness checks, each waiting at most `timeout`.
    pub fn readiness(&self, timeout: Duration) -> Vec<Check> {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        (self.observe.readiness)(ms)
            .into_iter()
            .map(Check::from_ffi)
            .collect()
    }
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}
