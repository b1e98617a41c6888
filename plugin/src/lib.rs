//! The Kafka plugin for pseidon. At `init` it parses its conf ([`config`]) and
//! registers [`SINK_NAME`] ([`producer`], its producer created at the first write: the
//! crate's `lazy_sink`) and [`SOURCE_NAME`] ([`source`]); this file only wires the parts
//! together.
//!
//! Named instances ([`config::instances`]): each `[pseidon-kafka.instances.NAME]` is
//! another such pair, `SINK_NAME.NAME` and `SOURCE_NAME.NAME`, with its own cluster,
//! status database and dead letters (through its own datasink). Metrics, readiness and
//! shutdown cover every instance; an instance that fails to start fails `init` (the error
//! names it) after the instances already started are shut down.
#![deny(missing_docs)]

pub mod config;
pub mod consume_error;
pub(crate) mod consumer;
pub(crate) mod error;
pub(crate) mod fetch_queue;
pub(crate) mod health;
pub(crate) mod identity;
pub(crate) mod kafka_log;
pub(crate) mod lazy_sink;
pub(crate) mod log_limit;
pub(crate) mod message;
pub(crate) mod metadata;
pub(crate) mod metrics;
pub mod producer;
pub(crate) mod progress;
pub(crate) mod replay;
pub(crate) mod sha256;
pub mod source;
pub(crate) mod state;
pub mod store;
pub(crate) mod tracker;

use std::time::Duration;

use pseidon_plugin_api::{
    Error, InitContext, Plugin,
    metrics::{Check, MetricFamily},
};

/// The registry name of the datasink.
pub const SINK_NAME: &str = "pseidon.kafka.util.datasink";
/// The registry name of the datasource.
pub const SOURCE_NAME: &str = "pseidon.kafka.util.datasource";

/// One instance of the plugin's datasink and datasource: the default one, or a named
/// one (`pseidon-kafka.instances.NAME`, [`config::instances`]).
struct Instance {
    config: config::Config,
    sink: lazy_sink::LazySink,
    source: source::KafkaSource,
}

impl Instance {
    /// Creates the instance of `config` and registers its datasink and datasource under
    /// `config.sink_name()` / `config.source_name()`. On an error, what it created is
    /// shut down again.
    fn start(ctx: &InitContext, config: config::Config) -> Result<Instance, Error> {
        // Validate every kafka.* property with librdkafka now, not at first use.
        config.client_config(config::Role::Producer, &[])?;
        log::info!(
            "pseidon-kafka initialised {}: {}",
            config.sink_name(),
            config.kafka
        );
        let (sink_name, source_name) = (config.sink_name(), config.source_name());
        // The producer is created at the first write (lazy_sink): a process that only
        // lists groups or asks for metadata opens no producer connection.
        let sink = lazy_sink::LazySink::new(&config);
        if let Err(e) = ctx.registry.register_sink(&sink_name, sink.clone()) {
            let _ = sink.shutdown(Duration::from_secs(1));
            return Err(e);
        }
        // The status database is opened at the source's first use: sink-only users need none.
        let source = source::KafkaSource::new(config.clone());
        // Dead letters go through this instance's datasink as registered (its delivery
        // ids and flush tickets are the registered adapter's).
        if let Some(pseidon_plugin_api::Entry::Sink(s)) = ctx.registry.reg_get(&sink_name) {
            source.set_dead_letter_sink(s);
        }
        sink.attach_source(source.clone());
        if let Err(e) = ctx.registry.register_source(&source_name, source.clone()) {
            let _ = sink.shutdown(Duration::from_secs(1));
            return Err(e);
        }
        Ok(Instance {
            config,
            sink,
            source,
        })
    }

    fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        let source = self.source.shutdown(timeout);
        let sink = self.sink.shutdown(timeout);
        source.and(sink)
    }
}

/// The plugin: the default instance first, then the named ones; owns what `shutdown`
/// must stop.
pub struct KafkaPlugin {
    instances: Vec<Instance>,
}

/// `e` of named instance `name`, naming it (a conf error by its key as written, which
/// does).
fn of_instance(name: &str, e: Error) -> Error {
    match config::instances::rename_error(name, e) {
        e @ Error::Config { .. } => e,
        e => Error::other(format!("pseidon-kafka instance `{name}`: {e}")),
    }
}

impl Plugin for KafkaPlugin {
    const NAME: &'static str = "pseidon-kafka";

    fn init(ctx: InitContext) -> Result<Self, Error> {
        let default = config::Config::parse(&ctx.conf)?;
        let named = config::instances::parse(&ctx.conf, &default)?;
        let mut instances = vec![Instance::start(&ctx, default)?];
        for config in named {
            let name = config.instance.clone().unwrap_or_default();
            match Instance::start(&ctx, config) {
                Ok(i) => instances.push(i),
                Err(e) => {
                    for i in &instances {
                        let _ = i.shutdown(Duration::from_secs(1));
                    }
                    return Err(of_instance(&name, e));
                }
            }
        }
        Ok(KafkaPlugin { instances })
    }

    fn metrics(&self) -> Vec<MetricFamily> {
        metrics::merge(
            self.instances
                .iter()
                .flat_map(|i| metrics::collect(&i.config, i.sink.opened().as_ref(), &i.source)),
        )
    }

    fn readiness(&self, timeout: Duration) -> Vec<Check> {
        self.instances
            .iter()
            .flat_map(|i| {
                metrics::readiness(&i.config, i.sink.opened().as_ref(), &i.source, timeout)
            })
            .collect()
    }

    fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        let mut result = Ok(());
        for i in &self.instances {
            let r = i.shutdown(timeout);
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

pseidon_plugin_api::export_plugin!(KafkaPlugin);
