//! abi_stable records the package (name and version) that declares a root module's type
//! and refuses a type of another package: this plugin's hand-written `PluginMod` stands
//! in for plugin-api's own (as compiled into a plugin built against 0.3.0), so it is
//! compiled under that package's name and version.

fn main() {
    println!("cargo:rustc-env=CARGO_PKG_NAME=pseidon-plugin-api");
    println!("cargo:rustc-env=CARGO_PKG_VERSION=0.3.0");
    println!("cargo:rerun-if-changed=build.rs");
}
