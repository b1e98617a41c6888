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
//! Named instances ([`crate::config::instances`]): each instance's families are
//! collected alike and [`merge`]d by name; their `sink`/`source`/`client` labels are the
//! instance's registry names, the lag families get an `instance` label (the default's
//! labels stay as they were).
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

use crate::{config::Config, producer::KafkaSink, source::KafkaSource};

/// Every family of one instance now: the sink's (if its producer was created), the
/// source's, the lag of its open readers, and the clients' statistics gauges. The
/// `sink`, `source` and `client` labels are the instance's registry names; the lag
/// families of a named instance carry `instance`.
pub(crate) fn collect(
    config: &Config,
    sink: Option<&KafkaSink>,
    source: &KafkaSource,
) -> Vec<MetricFamily> {
    let (sink_name, source_name) = (config.sink_name(), config.source_name());
    let mut out = Vec::new();
    let sink_stats = sink.and_then(KafkaSink::stats);
    if let Some(sink) = sink {
        out.extend(sink.metric_families());
    }
    let parts = source.metric_parts();
    out.extend(parts.families);
    out.extend(lag::families(&parts.lag, config.instance.as_deref()));
    let mut clients: Vec<(&str, &stats::ClientStats, clients::QueueField)> = Vec::new();
    if let Some(s) = sink_stats.as_deref() {
        clients.push((&sink_name, s, clients::QueueField::Messages));
    }
    for s in &parts.stats {
        clients.push((&source_name, s, clients::QueueField::ReplyQueue));
    }
    out.extend(clients::families(&clients));
    out
}

/// The families of several instances as one list: a family name appears once, with
/// the samples of every instance (their labels tell them apart), in first-seen order.
pub(crate) fn merge(families: impl IntoIterator<Item = MetricFamily>) -> Vec<MetricFamily> {
    let mut out: Vec<MetricFamily> = Vec::new();
    for f in families {
        match out.iter_mut().find(|o| o.name == f.name) {
            Some(o) => o.samples.extend(f.samples),
            None => out.push(f),
        }
    }
    out
}

/// One check for the datasink and one for the datasource of one instance, each within
/// `timeout`.
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
            format!("datasink {}: brokers", config.sink_name()),
            config,
            sink_stats.as_deref(),
            timeout,
        ),
        readiness::check(
            format!("datasource {}: brokers", config.source_name()),
            config,
            source_stats.as_deref(),
            timeout,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_one_family_per_name_with_every_sample() {
        let a = MetricFamily::counter("x", "h").with_sample(&[("sink", "a")], 1.0);
        let b = MetricFamily::counter("x", "h").with_sample(&[("sink", "b")], 2.0);
        let c = MetricFamily::gauge("y", "h").with_sample(&[], 3.0);
        let m = merge([a, c, b]);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].name, "x");
        let values: Vec<f64> = m[0].samples.iter().map(|s| s.value).collect();
        assert_eq!(values, vec![1.0, 2.0]);
    }
}
