//! Test plugin `panic-init`: panics in `init`.

use std::time::Duration;

use pseidon_plugin_api::{Error, InitContext, Plugin};

struct PanicInit;

impl Plugin for PanicInit {
    const NAME: &'static str = "panic-init";

    fn init(_ctx: InitContext) -> Result<Self, Error> {
        panic!("panic-init plugin panics on purpose")
    }

    fn shutdown(&self, _timeout: Duration) -> Result<(), Error> {
        Ok(())
    }
}

pseidon_plugin_api::export_plugin!(PanicInit);
