//! Test plugin `panic-call`: registers the sink `test.panic.sink`, whose every write
//! panics (flush works).

use std::time::Duration;

use pseidon_plugin_api::{DataSink, Error, FlushReport, InitContext, Plugin, Record};

struct PanickingSink;

impl DataSink for PanickingSink {
    fn write_batch(&self, _records: &[Record<'_>], _first_id: u64) -> Result<(), (u64, Error)> {
        panic!("panic-call sink panics on purpose")
    }

    fn flush(&self, _timeout: Duration) -> Result<FlushReport, Error> {
        Ok(FlushReport::default())
    }
}

struct PanicCall;

impl Plugin for PanicCall {
    const NAME: &'static str = "panic-call";

    fn init(ctx: InitContext) -> Result<Self, Error> {
        ctx.registry
            .register_sink("test.panic.sink", PanickingSink)?;
        Ok(PanicCall)
    }

    fn shutdown(&self, _timeout: Duration) -> Result<(), Error> {
        Ok(())
    }
}

pseidon_plugin_api::export_plugin!(PanicCall);
