//! The Kafka plugin for pseidon. At `init` it parses its conf ([`config`]) and
//! registers [`SINK_NAME`] ([`producer`], its producer created at the first write: the
//! crate's `lazy_sink`) and [`SOURCE_NAME`] ([`source`]); this file only wires the parts
//! together.
#![deny(missing_docs)]

pub mod config;
pub mod consume_error;
pub(crate) mod consumer;
pub(crate) mod error;
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

/// The plugin instance: owns what `shutdown` must stop.
pub struct KafkaPlugin {
    config: config::Config,
    sink: lazy_sink::LazySink,
    source: source::KafkaSource,
}

impl Plugin for KafkaPlugin {
    const NAME: &'static str = "pseidon-kafka";

    fn init(ctx: InitContext) -> Result<Self, Error> {
        let config = config::Config::parse(&ctx.conf)?;
        // Validate every kafka.* property with librdkafka now, not at first use.
        config.client_config(config::Role::Producer, &[])?;
        log::info!("pseidon-kafka initialised: {}", config.kafka);
        // The producer is created at the first write (lazy_sink): a process that only
        // lists groups or asks for metadata opens no producer connection.
        let sink = lazy_sink::LazySink::new(&config);
        if let Err(e) = ctx.registry.register_sink(SINK_NAME, sink.clone()) {
            let _ = sink.shutdown(Duration::from_secs(1));
            return Err(e);
        }
        // The status database is opened at the source's first use: sink-only users need none.
        let source = source::KafkaSource::new(config.clone());
        // Dead letters go through the datasink as registered (its delivery ids and
        // flush tickets are the registered adapter's).
        if let Some(pseidon_plugin_api::Entry::Sink(s)) = ctx.registry.reg_get(SINK_NAME) {
            source.set_dead_letter_sink(s);
        }
        sink.attach_source(source.clone());
        if let Err(e) = ctx.registry.register_source(SOURCE_NAME, source.clone()) {
            let _ = sink.shutdown(Duration::from_secs(1));
            return Err(e);
        }
        Ok(KafkaPlugin {
            config,
            sink,
            source,
        })
    }

    fn metrics(&self) -> Vec<MetricFamily> {
        metrics::collect(self.sink.opened().as_ref(), &self.source)
    }

    fn readiness(&self, timeout: Duration) -> Vec<Check> {
        metrics::readiness(
            &self.config,
            self.sink.opened().as_ref(),
            &self.source,
            timeout,
        )
    }

    fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        let _ = &self.config;
        let source = self.source.shutdown(timeout);
        let sink = self.sink.shutdown(timeout);
        source.and(sink)
    }
}

pseidon_plugin_api::export_plugin!(KafkaPlugin);
