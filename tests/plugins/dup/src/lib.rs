//! Test plugin `dup`: registers `test.hello.sink`, the name the `hello` plugin
//! registers, so its `init` fails when `hello` was loaded first.

use std::time::Duration;

use pseidon_plugin_api::{DataSink, Error, FlushReport, InitContext, Plugin, Record};

struct NullSink;

impl DataSink for NullSink {
    fn write_batch(&self, _records: &[Record<'_>], _first_id: u64) -> Result<(), (u64, Error)> {
        Ok(())
    }

    fn flush(&self, _timeout: Duration) -> Result<FlushReport, Error> {
        Ok(FlushReport::default())
    }
}

struct Dup;

impl Plugin for Dup {
    const NAME: &'static str = "dup";

    fn init(ctx: InitContext) -> Result<Self, Error> {
        ctx.registry.register_sink("test.hello.sink", NullSink)?;
        Ok(Dup)
    }

    fn shutdown(&self, _timeout: Duration) -> Result<(), Error> {
        Ok(())
    }
}

pseidon_plugin_api::export_plugin!(Dup);
