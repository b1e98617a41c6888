//! Test plugin `late`: registers the sink `test.late.sink` from a thread of its own,
//! `late.delay-ms` (default 300) milliseconds after `init` returned.

use std::{
    sync::Mutex,
    thread::{self, JoinHandle},
    time::Duration,
};

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

struct Late {
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Plugin for Late {
    const NAME: &'static str = "late";

    fn init(ctx: InitContext) -> Result<Self, Error> {
        let delay_ms = match ctx.conf.get("late.delay-ms") {
            Some(e) => e
                .value
                .parse::<u64>()
                .map_err(|_| Error::config("late.delay-ms", "must be a number of milliseconds"))?,
            None => 300,
        };
        let registry = ctx.registry;
        let thread = thread::Builder::new()
            .name("late-register".into())
            .spawn(move || {
                thread::sleep(Duration::from_millis(delay_ms));
                match registry.register_sink("test.late.sink", NullSink) {
                    Ok(()) => log::info!("registered test.late.sink after {delay_ms} ms"),
                    Err(e) => log::error!("{e}"),
                }
            })
            .map_err(|e| Error::other(format!("cannot start a thread: {e}")))?;
        Ok(Late {
            thread: Mutex::new(Some(thread)),
        })
    }

    fn shutdown(&self, _timeout: Duration) -> Result<(), Error> {
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
        Ok(())
    }
}

pseidon_plugin_api::export_plugin!(Late);
