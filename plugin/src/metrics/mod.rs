//! The plugin's metrics and readiness (`Plugin::metrics`, `Plugin::readiness`); this
//! file only wires the parts together ([`collect`], [`readiness`]).
//!
//! - `histogram`: an atomic histogram of seconds (the delivery latency);
//! - `sink`: the datasink's counters, kept in the producer's context;
//! - `source`: the datasource's counters and its groups by status;
//! - `stats`: librdkafka's statistics, parsed with serde, latest per client;
//! - `clients`: the broker and queue gauges from those statistics;
//! - `lag`: the lag math and families, per (group, topic, partition) of open readers;
//! - `readiness`: one check per datasink / datasource.
//!
//! Invariants: collecting is cheap and never uses the network (statistics arrive on
//! librdkafka's own schedule); no family sets the `plugin` label (the host adds it).

pub(crate) mod clients;
pub(crate) mod histogram;
pub(crate) mod lag;
pub(crate) mod readiness;
pub(crate) mod sink;
pub(crate) mod source;
pub(crate) mod stats;

use std::time::Duration;

use pseidon_plugin_api::metrics::{Check, MetricFamily};

use crate::{SINK_NAME, SOURCE_NAME, config::Config, producer::KafkaSink, source::KafkaSource};

/// Every family of the plugin now: the sink's (if its producer was created), the
/// source's, the lag of its open readers, and the clients' statistics gauges.
pub(crate) fn collect(sink: Option<&KafkaSink>, source: &KafkaSource) -> Vec<MetricFamily> {
    let mut out = Vec::new();
    let sink_stats = sink.and_then(KafkaSink::stats);
    if let Some(sink) = sink {
        out.extend(sink.metric_families());
    }
    let parts = source.metric_parts();
    out.extend(parts.families);
    out.extend(lag::families(&parts.lag));
    let mut clients: Vec<(&str, &stats::ClientStats, clients::QueueField)> = Vec::new();
    if let Some(s) = sink_stats.as_deref() {
        clients.push((SINK_NAME, s, clients::QueueField::Messages));
    }
    for s in &parts.stats {
        clients.push((SOURCE_NAME, s, clients::QueueField::ReplyQueue));
    }
    out.extend(clients::families(&clients));
    out
}

/// One check for the datasink and one for the datasource, each within `timeout`.
pub(crate) fn readiness(
    config: &Config,
    sink: Option<&KafkaSink>,
    source: &KafkaSource,
    timeout: Duration,
) -> Vec<Check> {
    let sink_stats = sink.and_then(KafkaSink::stats);
    let source_stats = source
        .reader_stats()
        .into_iter()
        .find(|s| s.any_broker_up());
    vec![
        readiness::check(
            format!("datasink {SINK_NAME}: brokers"),
            config,
            sink_stats.as_deref(),
            timeout,
        ),
        readiness::check(
            format!("datasource {SOURCE_NAME}: brokers"),
            config,
            source_stats.as_deref(),
            timeout,
        ),
    ]
}
