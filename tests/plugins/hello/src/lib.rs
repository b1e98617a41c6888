//! Test plugin `hello`: registers the sink `test.hello.sink`, the source
//! `test.hello.source` and the processor `test.hello.processor`, and logs the value of
//! the conf key `hello.greeting` so tests can see the conf and the log forwarding.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use pseidon_plugin_api::{
    DataSink, DataSource, Error, FlushReport, GroupFilter, GroupInfo, InitContext, MessageGroup,
    Plugin, Processor, Reader, ReaderOptions, Record,
};

/// Counts what it is given.
struct CountingSink {
    written: AtomicU64,
}

impl DataSink for CountingSink {
    fn write_batch(&self, records: &[Record<'_>], _first_id: u64) -> Result<(), (u64, Error)> {
        self.written
            .fetch_add(records.len() as u64, Ordering::SeqCst);
        Ok(())
    }

    fn flush(&self, _timeout: Duration) -> Result<FlushReport, Error> {
        Ok(FlushReport {
            delivered: self.written.swap(0, Ordering::SeqCst),
            ..FlushReport::default()
        })
    }
}

/// A source with nothing in it.
struct EmptySource;

/// A reader that never has a group.
struct EmptyReader;

impl Reader for EmptyReader {
    fn next_group(&mut self, _timeout: Duration) -> Result<Option<MessageGroup>, Error> {
        Ok(None)
    }

    fn close(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

impl DataSource for EmptySource {
    type Reader = EmptyReader;

    fn open(&self, _topics: &[String], _options: &ReaderOptions) -> Result<EmptyReader, Error> {
        Ok(EmptyReader)
    }

    fn mark_done(&self, group_id: &str) -> Result<(), Error> {
        Err(Error::UnknownGroup {
            group_id: group_id.to_string(),
        })
    }

    fn groups(&self, _filter: &GroupFilter) -> Result<Vec<GroupInfo>, Error> {
        Ok(Vec::new())
    }
}

/// Logs when it starts and stops.
struct LoggingProcessor;

impl Processor for LoggingProcessor {
    fn start(&self) -> Result<(), Error> {
        log::info!("test.hello.processor started");
        Ok(())
    }

    fn stop(&self, _timeout: Duration) -> Result<(), Error> {
        log::info!("test.hello.processor stopped");
        Ok(())
    }
}

struct Hello;

impl Plugin for Hello {
    const NAME: &'static str = "hello";

    fn init(ctx: InitContext) -> Result<Self, Error> {
        let greeting = ctx
            .conf
            .get("hello.greeting")
            .map(|e| e.value.clone())
            .unwrap_or_default();
        log::info!(
            "hello initialised: greeting={greeting} conf-keys={}",
            ctx.conf.entries().len()
        );
        ctx.registry.register_sink(
            "test.hello.sink",
            CountingSink {
                written: AtomicU64::new(0),
            },
        )?;
        ctx.registry
            .register_source("test.hello.source", EmptySource)?;
        ctx.registry
            .register_processor("test.hello.processor", LoggingProcessor)?;
        Ok(Hello)
    }

    fn shutdown(&self, _timeout: Duration) -> Result<(), Error> {
        log::info!("hello shut down");
        Ok(())
    }
}

pseidon_plugin_api::export_plugin!(Hello);
