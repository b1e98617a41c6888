//! Lag of the open readers, per (consumer group, topic, partition), from what the reader
//! already knows: librdkafka's statistics (high watermark, log start, the next offset
//! handed to the reader, the committed offset) and the done-watermark of the partition's
//! tracker. No broker is asked at scrape time.
//!
//! The math ([`PartitionLag::compute`]):
//! - `done` = the tracker's watermark (the offset the consumer stores next), or the
//!   committed offset when the partition has no tracker yet;
//! - `next` = the offset after the last message handed out in a group (the tracker's,
//!   always current), or, without a tracker, the next offset librdkafka hands the
//!   reader (`app_offset`); never below `done`;
//! - unread = high watermark − `next`; unfinished = `next` − `done` (read, and handed
//!   out or about to be, not done). Their sum is high watermark − `done`: what
//!   kafka-consumer-groups shows as LAG once the commit caught up with the watermark;
//! - retention risk = the oldest unfinished group's first offset − log start offset.
//!
//! Invariants: every value is ≥ 0; a partition whose high watermark or `done` is not
//! known yet has no sample. `done` and `next` are the tracker's, current at every
//! scrape; the high watermark and the log start are librdkafka's cached watermarks (kept
//! current by its fetcher, no poll needed), else the consumer's statistics (which
//! arrive only through a poll). `pseidon_kafka_retention_risk_seconds` is not reported yet: the topic's
//! `retention.ms` would need a broker round trip (DescribeConfigs) the scrape must not make.

use pseidon_plugin_api::metrics::MetricFamily;

/// The group holding a partition's watermark back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OldestGroup {
    /// Its first offset.
    pub(crate) min_offset: i64,
    /// Times handed out.
    pub(crate) attempt: u32,
    /// Seconds since its status last changed (handed out), if the database knows.
    pub(crate) age_seconds: Option<f64>,
}

/// What is known of one partition of one reader.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PartitionInput {
    /// Consumer group.
    pub(crate) group: String,
    /// Topic.
    pub(crate) topic: String,
    /// Partition.
    pub(crate) partition: i32,
    /// High watermark (log end offset).
    pub(crate) hi_offset: Option<i64>,
    /// Log start offset.
    pub(crate) lo_offset: Option<i64>,
    /// The next offset the consumer hands the reader.
    pub(crate) app_offset: Option<i64>,
    /// The committed offset.
    pub(crate) committed_offset: Option<i64>,
    /// The offset after the last message the tracker put into a group (or skipped).
    pub(crate) handed_out: Option<i64>,
    /// The tracker's done-watermark.
    pub(crate) watermark: Option<i64>,
    /// The group holding the watermark, if any.
    pub(crate) oldest: Option<OldestGroup>,
}

/// The lag of one partition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PartitionLag {
    /// Not read yet.
    pub(crate) unread_messages: i64,
    /// Read and not done.
    pub(crate) unfinished_messages: i64,
    /// Oldest unfinished group's first offset − log start (when both are known).
    pub(crate) retention_risk_offsets: Option<i64>,
}

impl PartitionLag {
    /// The lag of `p` (module docs); `None` if its high watermark or done offset is unknown.
    pub(crate) fn compute(p: &PartitionInput) -> Option<PartitionLag> {
        let hi = p.hi_offset?;
        let done = p.watermark.or(p.committed_offset)?;
        let next = p.handed_out.or(p.app_offset).unwrap_or(done).max(done);
        Some(PartitionLag {
            unread_messages: (hi - next).max(0),
            unfinished_messages: (next.min(hi.max(done)) - done).max(0),
            retention_risk_offsets: p
                .oldest
                .as_ref()
                .zip(p.lo_offset)
                .map(|(o, lo)| (o.min_offset - lo).max(0)),
        })
    }
}

/// The lag families of `partitions`.
pub(crate) fn families(partitions: &[PartitionInput], instance: Option<&str>) -> Vec<MetricFamily> {
    let mut unread = MetricFamily::gauge(
        "pseidon_kafka_lag_unread_messages",
        "Messages not read yet: high watermark - next offset to read.",
    );
    let mut unfinished = MetricFamily::gauge(
        "pseidon_kafka_lag_unfinished_messages",
        "Messages read and not done yet (what the committed offset waits for).",
    );
    let mut age = MetricFamily::gauge(
        "pseidon_kafka_oldest_unfinished_group_age_seconds",
        "Age of the group holding the commit back (since it was handed out); 0 when none.",
    );
    let mut attempts = MetricFamily::gauge(
        "pseidon_kafka_oldest_unfinished_group_attempts",
        "Times the group holding the commit back was handed out; 0 when none.",
    );
    let mut risk = MetricFamily::gauge(
        "pseidon_kafka_retention_risk_offsets",
        "Offsets between the log start and the oldest unfinished group: how far retention is from deleting it.",
    );
    for p in partitions {
        let Some(lag) = PartitionLag::compute(p) else {
            continue;
        };
        let part = p.partition.to_string();
        let mut l = vec![
            ("group", p.group.as_str()),
            ("topic", p.topic.as_str()),
            ("partition", part.as_str()),
        ];
        // A named instance's partitions may have the default's (group, topic, partition).
        if let Some(name) = instance {
            l.push(("instance", name));
        }
        unread.push(&l, lag.unread_messages as f64);
        unfinished.push(&l, lag.unfinished_messages as f64);
        let oldest = p.oldest.as_ref();
        age.push(&l, oldest.and_then(|o| o.age_seconds).unwrap_or(0.0));
        attempts.push(&l, oldest.map_or(0.0, |o| f64::from(o.attempt)));
        if let Some(r) = lag.retention_risk_offsets {
            risk.push(&l, r as f64);
        }
    }
    vec![unread, unfinished, age, attempts, risk]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> PartitionInput {
        PartitionInput {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            hi_offset: Some(100),
            lo_offset: Some(5),
            app_offset: Some(60),
            committed_offset: Some(30),
            watermark: Some(40),
            handed_out: None,
            oldest: Some(OldestGroup {
                min_offset: 40,
                attempt: 2,
                age_seconds: Some(3.0),
            }),
        }
    }

    #[test]
    fn unread_and_unfinished_add_up_to_the_lag_behind_the_watermark() {
        let lag = PartitionLag::compute(&input()).unwrap();
        assert_eq!((lag.unread_messages, lag.unfinished_messages), (40, 20));
        assert_eq!(lag.unread_messages + lag.unfinished_messages, 100 - 40);
        assert_eq!(lag.retention_risk_offsets, Some(35));
    }

    #[test]
    fn the_trackers_handed_out_offset_wins_over_stale_statistics() {
        // The reader handed out up to 80 after the last statistics (app_offset 60).
        let p = PartitionInput {
            handed_out: Some(80),
            ..input()
        };
        let lag = PartitionLag::compute(&p).unwrap();
        assert_eq!((lag.unread_messages, lag.unfinished_messages), (20, 40));
    }

    #[test]
    fn without_a_tracker_the_committed_offset_counts_and_nothing_is_negative() {
        let p = PartitionInput {
            watermark: None,
            app_offset: None,
            oldest: None,
            ..input()
        };
        let lag = PartitionLag::compute(&p).unwrap();
        assert_eq!((lag.unread_messages, lag.unfinished_messages), (70, 0));
        // Stale statistics: the watermark passed app_offset and the high watermark.
        let p = PartitionInput {
            hi_offset: Some(50),
            app_offset: Some(45),
            watermark: Some(55),
            ..input()
        };
        let lag = PartitionLag::compute(&p).unwrap();
        assert_eq!((lag.unread_messages, lag.unfinished_messages), (0, 0));
        let p = PartitionInput {
            hi_offset: None,
            ..input()
        };
        assert!(PartitionLag::compute(&p).is_none());
    }

    #[test]
    fn families_have_one_sample_per_partition_and_zero_when_no_group_holds_the_mark() {
        let mut other = input();
        other.partition = 1;
        other.oldest = None;
        let f = families(&[input(), other], None);
        let attempts = f
            .iter()
            .find(|x| x.name == "pseidon_kafka_oldest_unfinished_group_attempts")
            .unwrap();
        let values: Vec<f64> = attempts.samples.iter().map(|s| s.value).collect();
        assert_eq!(values, vec![2.0, 0.0]);
        let risk = f
            .iter()
            .find(|x| x.name == "pseidon_kafka_retention_risk_offsets")
            .unwrap();
        assert_eq!(risk.samples.len(), 1);
    }
}
