//! Metrics and readiness as a plugin reports them to the host, through the
//! observability extension ([`observe`](crate::observe): a plugin built without it has
//! none, and the host shows none for it). Plain Rust types; their `ffi` twins cross
//! the boundary.
//!
//! Invariants: names are full Prometheus names (`[a-zA-Z_:][a-zA-Z0-9_:]*`), counters
//! without the `_total` suffix the exposition adds; the host adds the `plugin` label
//! to every sample, so a plugin never sets it. Histogram buckets are cumulative and
//! ascending, without the `+Inf` bucket (that is `count`).

use abi_stable::std_types::{RString, RVec, Tuple2};

use crate::ffi::{FfiCheck, FfiMetricFamily, FfiMetricKind, FfiSample};

/// What a family counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only ever goes up (reset only by a restart).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations in buckets.
    Histogram,
}

/// A histogram's value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramValue {
    /// (upper bound, cumulative count), ascending, without `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    /// The sum of the observations.
    pub sum: f64,
    /// How many observations.
    pub count: u64,
}

/// One sample: labels and a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// (name, value) pairs.
    pub labels: Vec<(String, String)>,
    /// The counter's or gauge's value (a histogram's sum).
    pub value: f64,
    /// A histogram's buckets and count; `None` for counters and gauges.
    pub histogram: Option<HistogramValue>,
}

/// One metric family.
///
/// ```
/// use pseidon_plugin_api::metrics::{MetricFamily, MetricKind};
/// let f = MetricFamily::gauge("pseidon_kafka_lag_unread_messages", "Messages not read yet.")
///     .with_sample(&[("topic", "t"), ("partition", "0")], 42.0);
/// assert_eq!(f.kind, MetricKind::Gauge);
/// assert_eq!(f.samples[0].value, 42.0);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MetricFamily {
    /// Full name.
    pub name: String,
    /// One line of help.
    pub help: String,
    /// The type.
    pub kind: MetricKind,
    /// The samples.
    pub samples: Vec<Sample>,
}

impl MetricFamily {
    fn new(name: &str, help: &str, kind: MetricKind) -> Self {
        MetricFamily {
            name: name.to_string(),
            help: help.to_string(),
            kind,
            samples: Vec::new(),
        }
    }

    /// An empty counter family.
    pub fn counter(name: &str, help: &str) -> Self {
        Self::new(name, help, MetricKind::Counter)
    }

    /// An empty gauge family.
    pub fn gauge(name: &str, help: &str) -> Self {
        Self::new(name, help, MetricKind::Gauge)
    }

    /// An empty histogram family.
    pub fn histogram(name: &str, help: &str) -> Self {
        Self::new(name, help, MetricKind::Histogram)
    }

    /// Adds a counter or gauge sample.
    pub fn push(&mut self, labels: &[(&str, &str)], value: f64) {
        self.samples.push(Sample {
            labels: own(labels),
            value,
            histogram: None,
        });
    }

    /// [`push`](Self::push), by value.
    pub fn with_sample(mut self, labels: &[(&str, &str)], value: f64) -> Self {
        self.push(labels, value);
        self
    }

    /// Adds a histogram sample.
    pub fn push_histogram(&mut self, labels: &[(&str, &str)], h: HistogramValue) {
        self.samples.push(Sample {
            labels: own(labels),
            value: h.sum,
            histogram: Some(h),
        });
    }
}

fn own(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One readiness check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What is checked, e.g. `datasource pseidon.kafka.util.datasource: brokers`.
    pub name: String,
    /// Whether it is ready.
    pub ready: bool,
    /// Why not, or a short state.
    pub detail: String,
}

impl MetricFamily {
    /// The wire form.
    pub fn to_ffi(&self) -> FfiMetricFamily {
        FfiMetricFamily {
            name: self.name.as_str().into(),
            help: self.help.as_str().into(),
            kind: match self.kind {
                MetricKind::Counter => FfiMetricKind::Counter,
                MetricKind::Gauge => FfiMetricKind::Gauge,
                MetricKind::Histogram => FfiMetricKind::Histogram,
            },
            samples: self
                .samples
                .iter()
                .map(|s| {
                    let h = s.histogram.clone().unwrap_or_default();
                    FfiSample {
                        labels: s
                            .labels
                            .iter()
                            .map(|(k, v)| Tuple2(RString::from(k.as_str()), v.as_str().into()))
                            .collect(),
                        value: s.value,
                        buckets: h.buckets.iter().map(|&(b, c)| Tuple2(b, c)).collect(),
                        count: h.count,
                    }
                })
                .collect(),
        }
    }

    /// From the wire form.
    pub fn from_ffi(f: FfiMetricFamily) -> Self {
        let kind = match f.kind {
            FfiMetricKind::Counter => MetricKind::Counter,
            FfiMetricKind::Gauge => MetricKind::Gauge,
            FfiMetricKind::Histogram => MetricKind::Histogram,
        };
        MetricFamily {
            name: f.name.into_string(),
            help: f.help.into_string(),
            kind,
            samples: f
                .samples
                .into_iter()
                .map(|s| Sample {
                    labels: s
                        .labels
                        .into_iter()
                        .map(|Tuple2(k, v)| (k.into_string(), v.into_string()))
                        .collect(),
                    value: s.value,
                    histogram: (kind == MetricKind::Histogram).then(|| HistogramValue {
                        buckets: s.buckets.into_iter().map(|Tuple2(b, c)| (b, c)).collect(),
                        sum: s.value,
                        count: s.count,
                    }),
                })
                .collect(),
        }
    }
}

impl Check {
    /// The wire form.
    pub fn to_ffi(&self) -> FfiCheck {
        FfiCheck {
            name: self.name.as_str().into(),
            ready: self.ready,
            detail: self.detail.as_str().into(),
        }
    }

    /// From the wire form.
    pub fn from_ffi(c: FfiCheck) -> Self {
        Check {
            name: c.name.into_string(),
            ready: c.ready,
            detail: c.detail.into_string(),
        }
    }
}

/// Families to the wire.
pub fn families_to_ffi(families: &[MetricFamily]) -> RVec<FfiMetricFamily> {
    families.iter().map(MetricFamily::to_ffi).collect()
}

/// Checks to the wire.
pub fn checks_to_ffi(checks: &[Check]) -> RVec<FfiCheck> {
    checks.iter().map(Check::to_ffi).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_survive_the_wire() {
        let mut f = MetricFamily::histogram("pseidon_kafka_delivery_latency_seconds", "Latency.");
        f.push_histogram(
            &[("topic", "t")],
            HistogramValue {
                buckets: vec![(0.01, 3), (0.1, 5)],
                sum: 0.2,
                count: 6,
            },
        );
        let g = MetricFamily::gauge("g", "G.").with_sample(&[("a", "b")], 1.5);
        for fam in [f, g] {
            assert_eq!(MetricFamily::from_ffi(fam.to_ffi()), fam);
        }
        let c = Check {
            name: "brokers".into(),
            ready: false,
            detail: "no broker answers".into(),
        };
        assert_eq!(Check::from_ffi(c.to_ffi()), c);
    }
}
