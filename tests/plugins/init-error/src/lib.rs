//! Test plugin `init-error`: its `init` returns a conf error.

use std::time::Duration;

use pseidon_plugin_api::{Error, InitContext, Plugin};

struct InitError;

impl Plugin for InitError {
    const NAME: &'static str = "init-error";

    fn init(_ctx: InitContext) -> Result<Self, Error> {
        Err(Error::config(
            "init-error.required",
            "is missing (the init-error test plugin always says so)",
        ))
    }

    fn shutdown(&self, _timeout: Duration) -> Result<(), Error> {
        Ok(())
    }
}

pseidon_plugin_api::export_plugin!(InitError);
