//! Test plugin `incompatible`: exports a root module named like pseidon's, but built
//! against a made-up interface 0.9.0 whose layout differs (`init` takes a plain
//! string and returns a number, and there is an extra field). It deliberately does
//! not depend on pseidon-plugin-api; the host must refuse it with a short message.

use abi_stable::{
    StableAbi, declare_root_module_statics, export_root_module,
    library::RootModule,
    prefix_type::PrefixTypeTrait,
    sabi_types::VersionStrings,
    std_types::{RStr, RString},
};

/// A root module with the same name as pseidon's but another layout.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// The plugin's name.
    pub name: extern "C" fn() -> RStr<'static>,
    /// The plugin's version.
    pub version: extern "C" fn() -> RStr<'static>,
    /// An `init` with another signature than pseidon's.
    pub init: extern "C" fn(RString) -> u32,
    /// A field pseidon's module does not have.
    pub extra: u64,
    /// A `shutdown` with another signature than pseidon's.
    #[sabi(last_prefix_field)]
    pub shutdown: extern "C" fn() -> u32,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "pseidon_plugin";
    const NAME: &'static str = "pseidon_plugin";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new("0.9.0");
}

extern "C" fn name() -> RStr<'static> {
    RStr::from_str("incompatible")
}

extern "C" fn version() -> RStr<'static> {
    RStr::from_str("0.9.0")
}

extern "C" fn init(_conf: RString) -> u32 {
    0
}

extern "C" fn shutdown() -> u32 {
    0
}

/// The root module.
#[export_root_module]
pub fn root_module() -> PluginModRef {
    PluginMod {
        name,
        version,
        init,
        extra: 7,
        shutdown,
    }
    .leak_into_prefix()
}
