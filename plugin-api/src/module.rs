//! The root module every plugin exports, the [`Plugin`] trait behind it, and the
//! [`export_plugin!`](crate::export_plugin) macro that joins the two.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::PathBuf,
    sync::Mutex,
    time::Duration,
};

use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    package_version_strings,
    sabi_types::VersionStrings,
    std_types::{RResult, RStr, RVec},
};

use crate::{
    conf::ConfView,
    error::Error,
    ffi::{FfiCheck, FfiInitContext, FfiLogFn, FfiLogLevel, FfiMetricFamily, FfiResult},
    logging::PluginLogger,
    metrics::{Check, MetricFamily, checks_to_ffi, families_to_ffi},
    registry::Registry,
};

/// The root module of a plugin library. Plugins export it with
/// [`export_plugin!`](crate::export_plugin); the host loads it with abi_stable's
/// `lib_header_from_path(..)?.init_root_module::<PluginModRef>()`.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// The plugin's name.
    pub name: extern "C" fn() -> RStr<'static>,
    /// The plugin's own version.
    pub version: extern "C" fn() -> RStr<'static>,
    /// Initialises the plugin: it registers what it offers in the context's registry.
    pub init: extern "C" fn(FfiInitContext) -> FfiResult<()>,
    /// Stops the plugin's threads and flushes what it holds, within `timeout_ms`.
    #[sabi(last_prefix_field)]
    pub shutdown: extern "C" fn(u64) -> FfiResult<()>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "pseidon_plugin";
    const NAME: &'static str = "pseidon_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// The version of this interface crate, which the host and a plugin must agree on.
pub const INTERFACE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a plugin receives at `init`.
pub struct InitContext {
    /// The shared registry; registrations through it are owned by this plugin.
    pub registry: Registry,
    /// The whole host conf, flattened to dotted keys.
    pub conf: ConfView,
    /// The file the plugin was loaded from.
    pub plugin_path: PathBuf,
}

impl InitContext {
    /// Builds the wire form of a context (for hosts): `registry` is shared with the
    /// plugin, `log` receives its log records.
    pub fn to_ffi(&self, log: FfiLogFn, max_log_level: FfiLogLevel) -> FfiInitContext {
        FfiInitContext {
            registry: self.registry.to_ffi(),
            conf: self.conf.to_ffi(),
            log,
            max_log_level,
            plugin_path: self.plugin_path.to_string_lossy().as_ref().into(),
        }
    }
}

/// What a plugin implements; [`export_plugin!`](crate::export_plugin) turns it into the root module.
///
/// ```
/// use std::time::Duration;
/// use pseidon_plugin_api::{Error, InitContext, Plugin};
///
/// struct Hello;
/// impl Plugin for Hello {
///     const NAME: &'static str = "hello";
///     fn init(ctx: InitContext) -> Result<Self, Error> {
///         log::info!("hello from a plugin; {} conf keys", ctx.conf.entries().len());
///         Ok(Hello)
///     }
///     fn shutdown(&self, _timeout: Duration) -> Result<(), Error> { Ok(()) }
/// }
/// // In the plugin crate (a cdylib depending on abi_stable too):
/// // pseidon_plugin_api::export_plugin!(Hello);
/// ```
pub trait Plugin: Send + Sync + Sized + 'static {
    /// The plugin's name, as shown by `pseidon plugins` and in logs.
    const NAME: &'static str;
    /// Initialises the plugin; register sinks, sources and processors here.
    fn init(ctx: InitContext) -> Result<Self, Error>;
    /// Stops threads and flushes what the plugin holds, within `timeout`.
    fn shutdown(&self, timeout: Duration) -> Result<(), Error>;
    /// The plugin's metric families now (the host adds the `plugin` label). Called
    /// at every scrape: keep it cheap. Default: none.
    fn metrics(&self) -> Vec<MetricFamily> {
        Vec::new()
    }
    /// Whether what the plugin offers can work now (e.g. its brokers answer), each
    /// check taking at most `timeout`. Default: none (ready once loaded).
    fn readiness(&self, timeout: Duration) -> Vec<Check> {
        let _ = timeout;
        Vec::new()
    }
}

/// Where [`export_plugin!`](crate::export_plugin) keeps the plugin's instance.
pub struct PluginSlot<P> {
    instance: Mutex<Option<P>>,
}

impl<P> PluginSlot<P> {
    /// An empty slot.
    pub const fn new() -> Self {
        PluginSlot {
            instance: Mutex::new(None),
        }
    }
}

impl<P> Default for PluginSlot<P> {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs `f`, turning a panic into [`Error::Panicked`] naming `plugin` and `operation`.
///
/// ```
/// let r: Result<(), _> = pseidon_plugin_api::module::catch_panic("p", "write", || panic!("boom"));
/// assert!(r.unwrap_err().to_string().contains("boom"));
/// ```
pub fn catch_panic<T>(
    plugin: &str,
    operation: &str,
    f: impl FnOnce() -> Result<T, Error>,
) -> Result<T, Error> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let message = if let Some(s) = payload.downcast_ref::<&str>() {
                (*s).to_string()
            } else if let Some(s) = payload.downcast_ref::<String>() {
                s.clone()
            } else {
                "unknown panic payload".to_string()
            };
            Err(Error::Panicked {
                plugin: plugin.to_string(),
                operation: operation.to_string(),
                message,
            })
        }
    }
}

/// The body of the generated `init` (used by [`export_plugin!`](crate::export_plugin)).
#[doc(hidden)]
pub fn run_init<P: Plugin>(slot: &PluginSlot<P>, ctx: FfiInitContext) -> FfiResult<()> {
    PluginLogger::install(P::NAME, ctx.log, ctx.max_log_level);
    // Panics are caught and returned as errors; their message goes to the host's log
    // instead of this library's stderr.
    std::panic::set_hook(Box::new(|info| log::error!("{info}")));
    let result = catch_panic(P::NAME, "init", || {
        let mut guard = slot.instance.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_some() {
            return Err(Error::other(format!(
                "plugin {} is already initialised",
                P::NAME
            )));
        }
        let context = InitContext {
            registry: Registry::from_ffi(ctx.registry, P::NAME),
            conf: ConfView::from_ffi(&ctx.conf),
            plugin_path: PathBuf::from(ctx.plugin_path.as_str()),
        };
        *guard = Some(P::init(context)?);
        Ok(())
    });
    match result {
        Ok(()) => RResult::ROk(()),
        Err(e) => RResult::RErr(e.into()),
    }
}

/// The body of the generated `shutdown` (used by [`export_plugin!`](crate::export_plugin)).
#[doc(hidden)]
pub fn run_shutdown<P: Plugin>(slot: &PluginSlot<P>, timeout_ms: u64) -> FfiResult<()> {
    let result = catch_panic(P::NAME, "shutdown", || {
        let instance = slot
            .instance
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match instance {
            Some(p) => p.shutdown(Duration::from_millis(timeout_ms)),
            None => Ok(()),
        }
    });
    match result {
        Ok(()) => RResult::ROk(()),
        Err(e) => RResult::RErr(e.into()),
    }
}

/// The body of the generated `metrics` (used by [`export_plugin!`](crate::export_plugin)):
/// a panic is logged and reported as no metrics.
#[doc(hidden)]
pub fn run_metrics<P: Plugin>(slot: &PluginSlot<P>) -> RVec<FfiMetricFamily> {
    let result = catch_panic(P::NAME, "metrics", || {
        let guard = slot.instance.lock().unwrap_or_else(|p| p.into_inner());
        Ok(guard.as_ref().map(P::metrics).unwrap_or_default())
    });
    match result {
        Ok(families) => families_to_ffi(&families),
        Err(e) => {
            log::error!("{e}");
            RVec::new()
        }
    }
}

/// The body of the generated `readiness` (used by [`export_plugin!`](crate::export_plugin)):
/// a panic is reported as one check that is not ready.
#[doc(hidden)]
pub fn run_readiness<P: Plugin>(slot: &PluginSlot<P>, timeout_ms: u64) -> RVec<FfiCheck> {
    let result = catch_panic(P::NAME, "readiness", || {
        let guard = slot.instance.lock().unwrap_or_else(|p| p.into_inner());
        Ok(match guard.as_ref() {
            Some(p) => p.readiness(Duration::from_millis(timeout_ms)),
            None => vec![Check {
                name: format!("plugin {}", P::NAME),
                ready: false,
                detail: "not initialised (or shut down)".into(),
            }],
        })
    });
    let checks = result.unwrap_or_else(|e| {
        vec![Check {
            name: format!("plugin {}", P::NAME),
            ready: false,
            detail: e.to_string(),
        }]
    });
    checks_to_ffi(&checks)
}

/// Exports a [`Plugin`] implementation as the library's root module. The plugin
/// crate must be a `cdylib` and depend on `abi_stable` itself (the root-module
/// attribute refers to it by name).
///
/// ```ignore
/// pseidon_plugin_api::export_plugin!(MyPlugin);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        #[allow(missing_docs)]
        mod __pseidon_plugin_export {
            #[allow(unused_imports)]
            use super::*;

            static __PSEIDON_PLUGIN_SLOT: $crate::PluginSlot<$plugin> = $crate::PluginSlot::new();

            extern "C" fn __pseidon_plugin_name()
            -> $crate::reexports::abi_stable::std_types::RStr<'static> {
                $crate::reexports::abi_stable::std_types::RStr::from_str(
                    <$plugin as $crate::Plugin>::NAME,
                )
            }

            extern "C" fn __pseidon_plugin_version()
            -> $crate::reexports::abi_stable::std_types::RStr<'static> {
                $crate::reexports::abi_stable::std_types::RStr::from_str(env!("CARGO_PKG_VERSION"))
            }

            extern "C" fn __pseidon_plugin_init(
                ctx: $crate::ffi::FfiInitContext,
            ) -> $crate::ffi::FfiResult<()> {
                $crate::module::run_init(&__PSEIDON_PLUGIN_SLOT, ctx)
            }

            extern "C" fn __pseidon_plugin_shutdown(timeout_ms: u64) -> $crate::ffi::FfiResult<()> {
                $crate::module::run_shutdown(&__PSEIDON_PLUGIN_SLOT, timeout_ms)
            }

            pub(super) extern "C" fn __pseidon_plugin_metrics()
            -> $crate::reexports::abi_stable::std_types::RVec<$crate::ffi::FfiMetricFamily> {
                $crate::module::run_metrics(&__PSEIDON_PLUGIN_SLOT)
            }

            pub(super) extern "C" fn __pseidon_plugin_readiness(
                timeout_ms: u64,
            ) -> $crate::reexports::abi_stable::std_types::RVec<$crate::ffi::FfiCheck> {
                $crate::module::run_readiness(&__PSEIDON_PLUGIN_SLOT, timeout_ms)
            }

            /// The plugin's root module.
            #[$crate::reexports::abi_stable::export_root_module]
            pub fn __pseidon_plugin_root_module() -> $crate::PluginModRef {
                use $crate::reexports::abi_stable::prefix_type::PrefixTypeTrait;
                $crate::module::PluginMod {
                    name: __pseidon_plugin_name,
                    version: __pseidon_plugin_version,
                    init: __pseidon_plugin_init,
                    shutdown: __pseidon_plugin_shutdown,
                }
                .leak_into_prefix()
            }
        }

        /// The plugin's observability extension (metrics and readiness), found by
        /// the host by this symbol name ([`OBSERVE_SYMBOL`](crate::observe::OBSERVE_SYMBOL)).
        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub extern "C" fn pseidon_plugin_observe_v1() -> $crate::ffi::FfiObserveExport {
            $crate::observe::export(
                __pseidon_plugin_export::__pseidon_plugin_metrics,
                __pseidon_plugin_export::__pseidon_plugin_readiness,
            )
        }
    };
}
