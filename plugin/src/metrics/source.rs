//! The datasource's counters ([`SourceMetrics`], kept in the source's shared state):
//! groups and messages handed out, groups replayed, messages lost, groups failed,
//! retried, split and dead (poison messages), per (topic,
//! consumer group), updated once per group under a small mutex; and the gauge of
//! groups by status, from the status database at most once per [`STATUS_CACHE`].
//!
//! Invariant: counters only grow; families carry `source`, `topic` and `group`,
//! never `plugin`.

use std::{
    collections::BTreeMap,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use pseidon_plugin_api::metrics::MetricFamily;

use crate::store::Store;

/// How long the groups-by-status gauge is served from its last query.
pub(crate) const STATUS_CACHE: Duration = Duration::from_secs(1);

/// The counters of one (topic, consumer group).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counters {
    messages_handed_out: u64,
    groups_handed_out: u64,
    groups_replayed: u64,
    messages_lost: u64,
    groups_failed: u64,
    groups_retried: u64,
    groups_split: u64,
    groups_dead: u64,
}

/// What happened to a failed group (the poison-message counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Poison {
    /// Marked failed by its user.
    Failed,
    /// Handed out again after its backoff.
    Retried,
    /// Split in two halves.
    Split,
    /// Dead (dead-lettered, or dropped without a dead-letter topic).
    Dead,
}

/// Rows per status, and when they were counted.
type StatusCounts = (Instant, Vec<(String, u64)>);

/// The datasource's counters (module docs).
#[derive(Default)]
pub(crate) struct SourceMetrics {
    counters: Mutex<BTreeMap<(String, String), Counters>>,
    by_status: Mutex<Option<StatusCounts>>,
}

impl SourceMetrics {
    fn add(&self, topic: &str, group: &str, f: impl FnOnce(&mut Counters)) {
        let mut c = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        f(c.entry((topic.to_string(), group.to_string())).or_default());
    }

    /// A group of `messages` messages of `topic` handed out in consumer group `group`;
    /// `replayed` if it was an unfinished group handed out again.
    pub(crate) fn handed_out(&self, topic: &str, group: &str, messages: u64, replayed: bool) {
        self.add(topic, group, |c| {
            c.groups_handed_out += 1;
            c.messages_handed_out += messages;
            c.groups_replayed += u64::from(replayed);
        });
    }

    /// `messages` messages of `topic` found lost in consumer group `group`.
    pub(crate) fn lost(&self, topic: &str, group: &str, messages: u64) {
        self.add(topic, group, |c| c.messages_lost += messages);
    }

    /// A poison-message event of a group of `topic` in consumer group `group`.
    pub(crate) fn poison(&self, topic: &str, group: &str, what: Poison) {
        self.add(topic, group, |c| match what {
            Poison::Failed => c.groups_failed += 1,
            Poison::Retried => c.groups_retried += 1,
            Poison::Split => c.groups_split += 1,
            Poison::Dead => c.groups_dead += 1,
        });
    }

    /// The rows by status, from `store` at most once per [`STATUS_CACHE`].
    fn by_status(&self, store: &Store) -> Vec<(String, u64)> {
        let mut cache = self
            .by_status
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((at, rows)) = cache.as_ref()
            && at.elapsed() < STATUS_CACHE
        {
            return rows.clone();
        }
        match store.count_by_status() {
            Ok(rows) => {
                *cache = Some((Instant::now(), rows.clone()));
                rows
            }
            Err(e) => {
                log::warn!("metrics: counting the groups by status: {e}");
                cache.as_ref().map(|(_, r)| r.clone()).unwrap_or_default()
            }
        }
    }

    /// The families of source `source`; the status gauge only once `store` is open.
    pub(crate) fn families(&self, source: &str, store: Option<&Store>) -> Vec<MetricFamily> {
        let mut messages = MetricFamily::counter(
            "pseidon_kafka_source_messages_handed_out",
            "Messages handed out in groups (replays included).",
        );
        let mut groups = MetricFamily::counter(
            "pseidon_kafka_source_groups_handed_out",
            "Groups handed out (replays included).",
        );
        let mut replayed = MetricFamily::counter(
            "pseidon_kafka_source_groups_replayed",
            "Unfinished groups handed out again.",
        );
        let mut lost = MetricFamily::counter(
            "pseidon_kafka_source_messages_lost",
            "Messages of groups found lost (gone from Kafka before they were done).",
        );
        let mut failed = MetricFamily::counter(
            "pseidon_kafka_source_groups_failed",
            "Groups marked failed (Source::mark_failed).",
        );
        let mut retried = MetricFamily::counter(
            "pseidon_kafka_source_groups_retried",
            "Failed groups handed out again after their backoff.",
        );
        let mut split = MetricFamily::counter(
            "pseidon_kafka_source_groups_split",
            "Failed groups split in two halves at max-attempts.",
        );
        let mut dead = MetricFamily::counter(
            "pseidon_kafka_source_groups_dead",
            "One-message groups dead at max-attempts (dead-lettered, or dropped without a dead-letter topic).",
        );
        for ((topic, group), c) in self
            .counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let l = [("source", source), ("topic", topic), ("group", group)];
            messages.push(&l, c.messages_handed_out as f64);
            groups.push(&l, c.groups_handed_out as f64);
            replayed.push(&l, c.groups_replayed as f64);
            lost.push(&l, c.messages_lost as f64);
            failed.push(&l, c.groups_failed as f64);
            retried.push(&l, c.groups_retried as f64);
            split.push(&l, c.groups_split as f64);
            dead.push(&l, c.groups_dead as f64);
        }
        let mut out = vec![
            messages, groups, replayed, lost, failed, retried, split, dead,
        ];
        if let Some(store) = store {
            let rows = self.by_status(store);
            let mut f = MetricFamily::gauge(
                "pseidon_kafka_source_groups",
                "Groups in the status database, by status.",
            );
            for status in pseidon_plugin_api::GroupStatus::ALL.map(|s| s.as_str()) {
                let n = rows.iter().find(|(s, _)| s == status).map_or(0, |r| r.1);
                f.push(&[("source", source), ("status", status)], n as f64);
            }
            out.push(f);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_topic_and_group() {
        let m = SourceMetrics::default();
        m.handed_out("t", "g", 10, false);
        m.handed_out("t", "g", 5, true);
        m.lost("t", "g", 3);
        m.poison("t", "g", Poison::Failed);
        m.poison("t", "g", Poison::Failed);
        m.poison("t", "g", Poison::Dead);
        let f = m.families("s", None);
        let v = |name: &str| {
            f.iter()
                .find(|x| x.name == name)
                .map(|x| x.samples[0].value)
        };
        assert_eq!(v("pseidon_kafka_source_messages_handed_out"), Some(15.0));
        assert_eq!(v("pseidon_kafka_source_groups_handed_out"), Some(2.0));
        assert_eq!(v("pseidon_kafka_source_groups_replayed"), Some(1.0));
        assert_eq!(v("pseidon_kafka_source_messages_lost"), Some(3.0));
        assert_eq!(v("pseidon_kafka_source_groups_failed"), Some(2.0));
        assert_eq!(v("pseidon_kafka_source_groups_dead"), Some(1.0));
        assert_eq!(v("pseidon_kafka_source_groups_split"), Some(0.0));
        assert!(f.iter().all(|x| x.name != "pseidon_kafka_source_groups"));
    }
}
