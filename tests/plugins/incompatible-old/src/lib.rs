//! Test plugin `incompatible-old`: a root module with pseidon's layout that declares
//! the interface version 0.0.5, older than the host's 0.1.0, which abi_stable
//! refuses by version number before it looks at the layout. It deliberately does
//! not depend on pseidon-plugin-api.

use abi_stable::{
    StableAbi, declare_root_module_statics, export_root_module, library::RootModule,
    prefix_type::PrefixTypeTrait, sabi_types::VersionStrings, std_types::RStr,
};

/// A root module named like pseidon's.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// The plugin's name.
    #[sabi(last_prefix_field)]
    pub name: extern "C" fn() -> RStr<'static>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "pseidon_plugin";
    const NAME: &'static str = "pseidon_plugin";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new("0.0.5");
}

extern "C" fn name() -> RStr<'static> {
    RStr::from_str("incompatible-old")
}

/// The root module.
#[export_root_module]
pub fn root_module() -> PluginModRef {
    PluginMod { name }.leak_into_prefix()
}
