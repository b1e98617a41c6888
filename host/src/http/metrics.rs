//! `/metrics`: the Prometheus exposition of the host's own metrics and of every loaded
//! plugin's families (`Observer::metrics`), each plugin sample labelled
//! `plugin="<plugin name>"`, encoded by the `prometheus-client` crate through a
//! [`Collector`] of ours. A client that asks for OpenMetrics (`Accept:
//! application/openmetrics-text`, as Prometheus does) gets prometheus-client's output
//! as it is; any other client the Prometheus text format 0.0.4 (what `promtool check
//! metrics` reads): the same lines with each counter family named with its `_total`
//! and without the closing `# EOF`.
//!
//! Invariants: one family per name (families of the same name from several plugins
//! are merged; one of another type is dropped with a warning); counters are named
//! without `_total`, which the encoder adds; a family or label with an invalid name
//! is dropped (it would make the whole scrape unreadable); label values are escaped.

use std::collections::BTreeMap;

use prometheus_client::{collector::Collector, encoding::DescriptorEncoder, metrics::MetricType};
use pseidon_plugin_api::{
    HistogramValue, MetricFamily, MetricKind, ProcessorStatus, registry::WAIT_BUCKETS_SECONDS,
};

use super::State;

/// The Content-Type of the OpenMetrics exposition.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The Content-Type of the Prometheus text exposition.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The whole scrape, as OpenMetrics text or (`openmetrics` false) Prometheus text.
pub fn scrape(state: &State, openmetrics: bool) -> Result<String, std::fmt::Error> {
    let mut families = host_families(state);
    for p in &state.plugins {
        for mut f in p.observer.map(|o| o.metrics()).unwrap_or_default() {
            for s in &mut f.samples {
                s.labels.retain(|(k, _)| k != "plugin");
                s.labels.insert(0, ("plugin".to_string(), p.name.clone()));
            }
            families.push(f);
        }
    }
    let families = merge(families);
    let counters: Vec<String> = families
        .iter()
        .filter(|f| f.kind == MetricKind::Counter)
        .map(|f| f.name.clone())
        .collect();
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(Families(families)));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(if openmetrics {
        out
    } else {
        to_prometheus_text(&out, &counters)
    })
}

/// OpenMetrics text to Prometheus text 0.0.4: the `# HELP`/`# TYPE` lines of the
/// `counters` get their `_total` (the samples have it already), `# EOF` goes.
pub fn to_prometheus_text(openmetrics: &str, counters: &[String]) -> String {
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|tag| {
            let rest = line.strip_prefix(tag)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters
                .iter()
                .any(|c| c == name)
                .then(|| format!("{tag}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// The host's own families.
pub fn host_families(state: &State) -> Vec<MetricFamily> {
    let running = state
        .processor_statuses()
        .iter()
        .filter(|(_, s)| matches!(s, ProcessorStatus::Running))
        .count();
    let mut out = vec![
        MetricFamily::gauge("pseidon_host_plugins_loaded", "Plugins loaded.")
            .with_sample(&[], state.plugins.len() as f64),
        MetricFamily::gauge(
            "pseidon_host_plugins_failed",
            "Plugin files or dirs that failed to load.",
        )
        .with_sample(&[], state.plugins_failed as f64),
        MetricFamily::gauge(
            "pseidon_host_processors_running",
            "Processors started and still running.",
        )
        .with_sample(&[], running as f64),
    ];
    if let Some(w) = state.registry.wait_stats() {
        out.push(
            MetricFamily::counter(
                "pseidon_host_registry_waits",
                "reg_get_wait calls on the host's registry (by the host and the plugins).",
            )
            .with_sample(&[], w.waits as f64),
        );
        let mut h = MetricFamily::histogram(
            "pseidon_host_registry_wait_seconds",
            "How long reg_get_wait calls waited, found or not.",
        );
        h.push_histogram(
            &[],
            HistogramValue {
                buckets: WAIT_BUCKETS_SECONDS
                    .iter()
                    .copied()
                    .zip(w.buckets.iter().copied())
                    .collect(),
                sum: w.wait_seconds_sum,
                count: w.waits,
            },
        );
        out.push(h);
    }
    out
}

/// True for a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
pub fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// True for a valid label name (`[a-zA-Z_][a-zA-Z0-9_]*`, not `__`-prefixed, not `le`).
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
        && name != "le"
}

/// One family per name, in first-seen order; invalid names dropped.
fn merge(families: Vec<MetricFamily>) -> Vec<MetricFamily> {
    let mut order: Vec<String> = Vec::new();
    let mut by_name: BTreeMap<String, MetricFamily> = BTreeMap::new();
    for mut f in families {
        if f.kind == MetricKind::Counter
            && let Some(base) = f.name.strip_suffix("_total")
        {
            f.name = base.to_string();
        }
        if !valid_metric_name(&f.name) {
            tracing::warn!(
                family = f.name,
                "metric family with an invalid name dropped"
            );
            continue;
        }
        for s in &mut f.samples {
            s.labels.retain(|(k, _)| valid_label_name(k));
        }
        match by_name.get_mut(&f.name) {
            Some(existing) if existing.kind == f.kind => existing.samples.append(&mut f.samples),
            Some(_) => {
                tracing::warn!(family = f.name, "metric family of a second type dropped")
            }
            None => {
                order.push(f.name.clone());
                by_name.insert(f.name.clone(), f);
            }
        }
    }
    order
        .into_iter()
        .filter_map(|n| by_name.remove(&n))
        .collect()
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The families of one scrape, encoded by prometheus-client.
#[derive(Debug)]
struct Families(Vec<MetricFamily>);

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.0 {
            let kind = match f.kind {
                MetricKind::Counter => MetricType::Counter,
                MetricKind::Gauge => MetricType::Gauge,
                MetricKind::Histogram => MetricType::Histogram,
            };
            let help = f.help.replace('\n', " ");
            let mut family = encoder.encode_descriptor(&f.name, &help, None, kind)?;
            for s in &f.samples {
                let labels: Vec<(String, String)> = s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), escape(v)))
                    .collect();
                let mut m = family.encode_family(&labels)?;
                match (f.kind, &s.histogram) {
                    (MetricKind::Histogram, Some(h)) => {
                        // prometheus-client wants per-bucket counts with +Inf last.
                        let mut buckets = Vec::with_capacity(h.buckets.len() + 1);
                        let mut previous = 0u64;
                        for &(bound, cumulative) in &h.buckets {
                            buckets.push((bound, cumulative.saturating_sub(previous)));
                            previous = previous.max(cumulative);
                        }
                        buckets.push((f64::MAX, h.count.saturating_sub(previous)));
                        m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                            h.sum, h.count, &buckets, None,
                        )?;
                    }
                    (MetricKind::Histogram, None) => {}
                    (MetricKind::Counter, _) => m
                        .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(
                            &s.value, None,
                        )?,
                    (MetricKind::Gauge, _) => m.encode_gauge(&s.value)?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_renamed_for_the_text_format_only() {
        let om = "# HELP a_b Help.\n# TYPE a_b counter\na_b_total{} 1\n# HELP g G.\n# TYPE g gauge\ng{} 2.0\n# EOF\n";
        let text = to_prometheus_text(om, &["a_b".to_string()]);
        assert_eq!(
            text,
            "# HELP a_b_total Help.\n# TYPE a_b_total counter\na_b_total{} 1\n# HELP g G.\n# TYPE g gauge\ng{} 2.0\n"
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_metric_name("pseidon_kafka_lag:x"));
        assert!(!valid_metric_name("9x") && !valid_metric_name("a-b") && !valid_metric_name(""));
        assert!(valid_label_name("topic") && !valid_label_name("le") && !valid_label_name("__x"));
    }

    #[test]
    fn merge_keeps_one_family_per_name_and_strips_total() {
        let a = MetricFamily::counter("c_total", "C.").with_sample(&[("plugin", "a")], 1.0);
        let b = MetricFamily::counter("c", "C.").with_sample(&[("plugin", "b")], 2.0);
        let g = MetricFamily::gauge("c", "other type");
        let bad = MetricFamily::gauge("bad-name", "x");
        let merged = merge(vec![a, b, g, bad]);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].name, "c");
        assert_eq!(merged[0].samples.len(), 2);
    }
}
