//! Test plugin `old-prefix`: a hand-written root module with pseidon's name and
//! interface version (name, version, init, shutdown) and no observability extension
//! symbol, as a plugin built before metrics and readiness were added. The host must
//! load it and find no extension (no metrics, no readiness checks).

use abi_stable::{
    StableAbi, declare_root_module_statics, export_root_module, library::RootModule,
    prefix_type::PrefixTypeTrait, sabi_types::VersionStrings, std_types::RStr,
};
use pseidon_plugin_api::{
    INTERFACE_VERSION,
    ffi::{FfiInitContext, FfiResult},
};

/// pseidon's root module as of its first 0.3.0 layout.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// The plugin's name.
    pub name: extern "C" fn() -> RStr<'static>,
    /// The plugin's own version.
    pub version: extern "C" fn() -> RStr<'static>,
    /// Initialises the plugin.
    pub init: extern "C" fn(FfiInitContext) -> FfiResult<()>,
    /// Stops the plugin.
    #[sabi(last_prefix_field)]
    pub shutdown: extern "C" fn(u64) -> FfiResult<()>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "pseidon_plugin";
    const NAME: &'static str = "pseidon_plugin";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(INTERFACE_VERSION);
}

extern "C" fn name() -> RStr<'static> {
    RStr::from_str("old-prefix")
}

extern "C" fn version() -> RStr<'static> {
    RStr::from_str("0.1.0")
}

extern "C" fn init(_ctx: FfiInitContext) -> FfiResult<()> {
    FfiResult::ROk(())
}

extern "C" fn shutdown(_timeout_ms: u64) -> FfiResult<()> {
    FfiResult::ROk(())
}

/// The root module.
#[export_root_module]
pub fn root_module() -> PluginModRef {
    PluginMod {
        name,
        version,
        init,
        shutdown,
    }
    .leak_into_prefix()
}
