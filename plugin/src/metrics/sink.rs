//! The datasink's counters ([`SinkMetrics`]), kept in the producer's context: what
//! `write` accepted (counted once per run of records of one topic in a batch), what
//! the delivery callback reported (per topic: an atomic add; failures by librdkafka's
//! error name, a bounded set, under a mutex as they are rare), and the latency from
//! enqueue to delivery report.
//!
//! A topic's counters are found in a map under a read lock; each thread remembers the
//! last topic it counted ([`LAST_TOPIC`]), so a writer of one topic and the delivery
//! reports of one partition's batch skip the lock and the hash.
//!
//! Invariant: counters only grow; the families carry `sink` and `topic`, never `plugin`.

use std::{
    cell::RefCell,
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use pseidon_plugin_api::metrics::MetricFamily;
use rdkafka::error::KafkaError;

use super::{histogram::Histogram, stats::StatsCell};

/// One topic's counters.
#[derive(Default)]
struct TopicCounters {
    accepted: AtomicU64,
    accepted_bytes: AtomicU64,
    delivered: AtomicU64,
}

/// Tells the sinks' counters apart in [`LAST_TOPIC`] (an address could be reused).
static NEXT_METRICS_ID: AtomicU64 = AtomicU64::new(0);

/// The identity of a cached topic: the [`SinkMetrics`] id and the topic's name.
type LastTopic = Option<(u64, String, Arc<TopicCounters>)>;

thread_local! {
    /// This thread's last counted topic (module docs).
    static LAST_TOPIC: RefCell<LastTopic> = const { RefCell::new(None) };
}

/// The datasink's counters (module docs).
pub(crate) struct SinkMetrics {
    /// Unique in the process, for [`LAST_TOPIC`].
    id: u64,
    topics: RwLock<HashMap<String, Arc<TopicCounters>>>,
    /// (topic, reason) → failures.
    failed: Mutex<HashMap<(String, String), u64>>,
    latency: Histogram,
    /// The producer's latest librdkafka statistics.
    pub(crate) stats: StatsCell,
}

/// The label value for a failed delivery: librdkafka's error name.
pub(crate) fn failure_reason_label(err: &KafkaError) -> String {
    match err.rdkafka_error_code() {
        Some(code) => format!("{code:?}"),
        None => "Other".to_string(),
    }
}

impl Default for SinkMetrics {
    fn default() -> Self {
        SinkMetrics {
            id: NEXT_METRICS_ID.fetch_add(1, Ordering::Relaxed),
            topics: RwLock::default(),
            failed: Mutex::default(),
            latency: Histogram::default(),
            stats: StatsCell::default(),
        }
    }
}

impl SinkMetrics {
    /// Runs `f` on `topic`'s counters, from this thread's cache when it holds them.
    fn with_topic(&self, topic: &str, f: impl FnOnce(&TopicCounters)) {
        LAST_TOPIC.with(|cell| {
            let Ok(mut last) = cell.try_borrow_mut() else {
                return f(&self.topic(topic));
            };
            match last.as_mut() {
                Some((id, name, c)) if *id == self.id && name == topic => f(c),
                Some((id, name, c)) => {
                    let counters = self.topic(topic);
                    f(&counters);
                    *id = self.id;
                    name.clear();
                    name.push_str(topic);
                    *c = counters;
                }
                None => {
                    let counters = self.topic(topic);
                    f(&counters);
                    *last = Some((self.id, topic.to_string(), counters));
                }
            }
        });
    }

    fn topic(&self, topic: &str) -> Arc<TopicCounters> {
        if let Some(c) = self
            .topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(topic)
        {
            return Arc::clone(c);
        }
        let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(topics.entry(topic.to_string()).or_default())
    }

    /// `messages` records of `bytes` (keys, values and headers) accepted for `topic`.
    pub(crate) fn accepted(&self, topic: &str, messages: u64, bytes: u64) {
        if messages == 0 {
            return;
        }
        self.with_topic(topic, |c| {
            c.accepted.fetch_add(messages, Ordering::Relaxed);
            c.accepted_bytes.fetch_add(bytes, Ordering::Relaxed);
        });
    }

    /// One delivery to `topic`, `latency_micros` after it was queued (if known).
    pub(crate) fn delivered(&self, topic: &str, latency_micros: Option<u64>) {
        self.with_topic(topic, |c| {
            c.delivered.fetch_add(1, Ordering::Relaxed);
        });
        if let Some(us) = latency_micros {
            self.latency.observe_micros(us);
        }
    }

    /// One failed delivery to `topic` for `reason` ([`failure_reason_label`]).
    pub(crate) fn failed(&self, topic: &str, reason: String, latency_micros: Option<u64>) {
        *self
            .failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((topic.to_string(), reason))
            .or_default() += 1;
        if let Some(us) = latency_micros {
            self.latency.observe_micros(us);
        }
    }

    /// The families of sink `sink`, with `queue_messages` in the producer's queue now.
    pub(crate) fn families(&self, sink: &str, queue_messages: u64) -> Vec<MetricFamily> {
        let mut accepted = MetricFamily::counter(
            "pseidon_kafka_sink_messages_accepted",
            "Records the datasink accepted (queued to librdkafka).",
        );
        let mut bytes = MetricFamily::counter(
            "pseidon_kafka_sink_bytes_accepted",
            "Bytes (keys, values, headers) of the records the datasink accepted.",
        );
        let mut delivered = MetricFamily::counter(
            "pseidon_kafka_sink_messages_delivered",
            "Records the brokers acknowledged.",
        );
        let mut failed = MetricFamily::counter(
            "pseidon_kafka_sink_messages_failed",
            "Records whose delivery failed, by librdkafka's error name.",
        );
        {
            let topics = self.topics.read().unwrap_or_else(PoisonError::into_inner);
            let mut names: Vec<&String> = topics.keys().collect();
            names.sort();
            for t in names {
                let c = &topics[t];
                let labels = [("sink", sink), ("topic", t.as_str())];
                accepted.push(&labels, c.accepted.load(Ordering::Relaxed) as f64);
                bytes.push(&labels, c.accepted_bytes.load(Ordering::Relaxed) as f64);
                delivered.push(&labels, c.delivered.load(Ordering::Relaxed) as f64);
            }
        }
        {
            let f = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
            let mut rows: Vec<_> = f.iter().collect();
            rows.sort();
            for ((topic, reason), n) in rows {
                failed.push(
                    &[("sink", sink), ("topic", topic), ("reason", reason)],
                    *n as f64,
                );
            }
        }
        let queue = MetricFamily::gauge(
            "pseidon_kafka_sink_queue_messages",
            "Records queued in the producer and not reported yet.",
        )
        .with_sample(&[("sink", sink)], queue_messages as f64);
        let mut latency = MetricFamily::histogram(
            "pseidon_kafka_sink_delivery_latency_seconds",
            "Time from enqueue to the delivery report.",
        );
        latency.push_histogram(&[("sink", sink)], self.latency.snapshot());
        vec![accepted, bytes, delivered, failed, queue, latency]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::RDKafkaErrorCode;

    #[test]
    fn counts_by_topic_and_reason() {
        let m = SinkMetrics::default();
        m.accepted("a", 3, 30);
        m.accepted("b", 1, 5);
        m.delivered("a", Some(2_000));
        m.failed(
            "b",
            failure_reason_label(&KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageTimedOut,
            )),
            None,
        );
        let f = m.families("s", 2);
        let value = |name: &str, topic: &str| {
            f.iter()
                .find(|x| x.name == name)
                .and_then(|x| {
                    x.samples
                        .iter()
                        .find(|s| s.labels.contains(&("topic".into(), topic.into())))
                })
                .map(|s| s.value)
        };
        assert_eq!(
            value("pseidon_kafka_sink_messages_accepted", "a"),
            Some(3.0)
        );
        assert_eq!(value("pseidon_kafka_sink_bytes_accepted", "a"), Some(30.0));
        assert_eq!(
            value("pseidon_kafka_sink_messages_delivered", "a"),
            Some(1.0)
        );
        let failed = f
            .iter()
            .find(|x| x.name == "pseidon_kafka_sink_messages_failed")
            .unwrap();
        assert!(
            failed.samples[0]
                .labels
                .contains(&("reason".into(), "MessageTimedOut".into()))
        );
        assert!(f.iter().all(|x| {
            x.samples
                .iter()
                .all(|s| s.labels.iter().all(|(k, _)| k != "plugin"))
        }));
    }
}
