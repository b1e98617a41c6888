//! Test plugin `hello`: registers the sink `test.hello.sink`, the source
//! `test.hello.source` and the processor `test.hello.processor`, and logs the value of
//! the conf key `hello.greeting` so tests can see the conf and the log forwarding.
//!
//! For the host's HTTP endpoint it also reports metrics (a counter of what the sink
//! was given, a gauge whose label value needs escaping, a histogram) and one
//! readiness check: ready while the file named by `hello.ready-file` exists (no key:
//! always ready). `hello.stop-delay-ms` makes the processor's `stop` take that long.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use std::{path::PathBuf, sync::Arc};

use pseidon_plugin_api::{
    Check, DataSink, DataSource, Error, FlushReport, GroupFilter, GroupInfo, HistogramValue,
    InitContext, MessageGroup, MetricFamily, Plugin, Processor, Reader, ReaderOptions, Record,
};

/// Counts what it is given.
struct CountingSink {
    written: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
}

impl DataSink for CountingSink {
    fn write_batch(&self, records: &[Record<'_>], _first_id: u64) -> Result<(), (u64, Error)> {
        self.written
            .fetch_add(records.len() as u64, Ordering::SeqCst);
        self.total.fetch_add(records.len() as u64, Ordering::SeqCst);
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

/// Logs when it starts and stops; `stop` takes `stop_delay`.
struct LoggingProcessor {
    stop_delay: Duration,
}

impl Processor for LoggingProcessor {
    fn start(&self) -> Result<(), Error> {
        log::info!("test.hello.processor started");
        Ok(())
    }

    fn stop(&self, _timeout: Duration) -> Result<(), Error> {
        std::thread::sleep(self.stop_delay);
        log::info!("test.hello.processor stopped");
        Ok(())
    }
}

struct Hello {
    total: Arc<AtomicU64>,
    ready_file: Option<PathBuf>,
}

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
        let total = Arc::new(AtomicU64::new(0));
        ctx.registry.register_sink(
            "test.hello.sink",
            CountingSink {
                written: Arc::new(AtomicU64::new(0)),
                total: Arc::clone(&total),
            },
        )?;
        let ready_file = ctx
            .conf
            .get("hello.ready-file")
            .map(|e| PathBuf::from(&e.value));
        let stop_delay = Duration::from_millis(
            ctx.conf
                .get("hello.stop-delay-ms")
                .and_then(|e| e.value.parse().ok())
                .unwrap_or(0),
        );
        ctx.registry
            .register_source("test.hello.source", EmptySource)?;
        ctx.registry
            .register_processor("test.hello.processor", LoggingProcessor { stop_delay })?;
        Ok(Hello { total, ready_file })
    }

    fn metrics(&self) -> Vec<MetricFamily> {
        let mut h = MetricFamily::histogram("test_hello_write_seconds", "Made-up latencies.");
        h.push_histogram(
            &[("sink", "test.hello.sink")],
            HistogramValue {
                buckets: vec![(0.1, 1), (1.0, 3)],
                sum: 2.5,
                count: 4,
            },
        );
        vec![
            MetricFamily::counter("test_hello_written", "Records the sink was given.").with_sample(
                &[("sink", "test.hello.sink")],
                self.total.load(Ordering::SeqCst) as f64,
            ),
            MetricFamily::gauge("test_hello_odd_label", "A label value that needs escaping.")
                .with_sample(&[("value", "a \"quoted\" \\ back\nslash")], 1.0),
            h,
        ]
    }

    fn readiness(&self, _timeout: Duration) -> Vec<Check> {
        match &self.ready_file {
            None => Vec::new(),
            Some(f) => vec![Check {
                name: "ready-file".into(),
                ready: f.exists(),
                detail: if f.exists() {
                    "present".into()
                } else {
                    format!("{} is missing", f.display())
                },
            }],
        }
    }

    fn shutdown(&self, _timeout: Duration) -> Result<(), Error> {
        log::info!("hello shut down");
        Ok(())
    }
}

pseidon_plugin_api::export_plugin!(Hello);
