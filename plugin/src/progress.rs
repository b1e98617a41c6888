//! A reader's progress ([`ReaderProgress`]): whether the consumer group assigned it its
//! partitions, and which of them it read to their end; and the message budget of a
//! reader opened with `pseidon-kafka.reader-max-messages`
//! ([`reader_max_messages`](crate::config::reader_max_messages)).
//!
//! The assignment is known from the rebalance callbacks: an assignment sets it, a revoke
//! clears it (and forgets the revoked partitions' ends) until the next assignment.
//!
//! Ends: with `kafka.enable.partition.eof=true` librdkafka sends an end-of-partition
//! event each time the consumer reaches the end of a partition (never logged as a
//! warning: it is no error). rdkafka names only the partition number, not the topic: an
//! event that fits one assigned partition marks it; one that fits several (a reader of
//! topics with the same partition numbers) is resolved per candidate by comparing where
//! the reader stands in it (the offset after its last message, else the committed offset)
//! with librdkafka's cached high watermark. A partition counts as at its end in
//! [`Progress::snapshot`] only while the reader holds none of its messages (pending or
//! queued): what was read must be handed out first.

use std::{collections::HashSet, ffi::CString, sync::Mutex, time::Duration};

use pseidon_plugin_api::ReaderProgress;
use rdkafka::{Offset, TopicPartitionList, bindings as rdsys, consumer::Consumer};

/// How long resolving an ambiguous end-of-partition event may wait for committed offsets.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct State {
    known: bool,
    at_end: HashSet<(String, i32)>,
}

/// What the rebalance callbacks and the reader's poll loop record.
#[derive(Default)]
pub struct Progress {
    state: Mutex<State>,
}

impl Progress {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The group assigned partitions (the rebalance is over).
    pub fn assigned(&self) {
        self.lock().known = true;
    }

    /// Partitions were revoked: a rebalance is under way; their ends are forgotten.
    pub fn revoked(&self, parts: &[(String, i32)]) {
        let mut s = self.lock();
        s.known = false;
        for p in parts {
            s.at_end.remove(p);
        }
    }

    /// True if `topic`/`partition` is already known to be at its end.
    pub fn is_at_end(&self, topic: &str, partition: i32) -> bool {
        self.lock()
            .at_end
            .iter()
            .any(|(t, p)| t == topic && *p == partition)
    }

    /// `topic`/`partition` reached its end.
    pub fn reached_end(&self, topic: &str, partition: i32) {
        self.lock().at_end.insert((topic.to_string(), partition));
    }

    /// The progress over `assignment`, where `holds(topic, partition)` tells whether the
    /// reader still holds messages of a partition (those do not count as at their end).
    pub fn snapshot(
        &self,
        assignment: &[(String, i32)],
        holds: impl Fn(&str, i32) -> bool,
    ) -> ReaderProgress {
        let s = self.lock();
        let at_end = assignment
            .iter()
            .filter(|tp| s.at_end.contains(*tp) && !holds(&tp.0, tp.1))
            .count();
        ReaderProgress {
            assignment_known: s.known,
            assigned_partitions: u32::try_from(assignment.len()).unwrap_or(u32::MAX),
            partitions_at_end: u32::try_from(at_end).unwrap_or(u32::MAX),
        }
    }
}

/// The (topic, partition) pairs of a consumer's assignment.
pub fn assignment_of(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

/// The assigned partitions an end-of-partition event of partition number `partition`
/// belongs to. `next(topic)` is the offset after the last message the reader got from
/// `topic`/`partition` since its assignment, if it got one.
pub fn resolve_eof<C: Consumer<X>, X: rdkafka::consumer::ConsumerContext>(
    consumer: &C,
    progress: &Progress,
    partition: i32,
    next: impl Fn(&str) -> Option<i64>,
) -> Vec<String> {
    let assignment = match consumer.assignment() {
        Ok(tpl) => assignment_of(&tpl),
        Err(e) => {
            log::debug!("end of partition {partition}: no assignment to match it to: {e}");
            return Vec::new();
        }
    };
    let candidates: Vec<String> = assignment
        .into_iter()
        .filter(|(t, p)| *p == partition && !progress.is_at_end(t, *p))
        .map(|(t, _)| t)
        .collect();
    if candidates.len() <= 1 {
        return candidates;
    }
    candidates
        .into_iter()
        .filter(|topic| {
            let Some((low, high)) = cached_watermarks(consumer, topic, partition) else {
                return false;
            };
            let at = next(topic).or_else(|| committed(consumer, topic, partition));
            match at {
                Some(at) => at >= high,
                // Nothing committed: the reader started at the log start.
                None => low >= 0 && low >= high,
            }
        })
        .collect()
}

/// librdkafka's cached (low, high) watermarks of a partition (from its fetch responses).
pub(crate) fn cached_watermarks<C: Consumer<X>, X: rdkafka::consumer::ConsumerContext>(
    consumer: &C,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    let name = CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: a live client handle, a NUL-terminated topic name and two out-pointers to
    // locals; librdkafka only reads its cache under its own lock.
    let err = unsafe {
        rdsys::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            name.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some((low, high))
}

/// The group's committed offset of a partition, if there is one.
fn committed<C: Consumer<X>, X: rdkafka::consumer::ConsumerContext>(
    consumer: &C,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let got = consumer.committed_offsets(tpl, COMMITTED_TIMEOUT).ok()?;
    match got.find_partition(topic, partition)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

/// The message budget of a reader (`pseidon-kafka.reader-max-messages`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    left: Option<u64>,
}

impl Budget {
    /// A budget of `max` messages; `None`: unbounded.
    pub fn new(max: Option<u64>) -> Self {
        Budget { left: max }
    }

    /// True once no message may be taken any more.
    pub fn is_spent(&self) -> bool {
        self.left == Some(0)
    }

    /// Takes one message; false (taking nothing) if the budget is spent.
    pub fn take_one(&mut self) -> bool {
        match &mut self.left {
            None => true,
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
        }
    }

    /// Takes `n` messages handed out outside the budget's control (a replayed group),
    /// down to 0 at most.
    pub fn take(&mut self, n: usize) {
        if let Some(left) = &mut self.left {
            *left = left.saturating_sub(u64::try_from(n).unwrap_or(u64::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(t: &str, p: i32) -> (String, i32) {
        (t.to_string(), p)
    }

    #[test]
    fn ends_count_only_while_assigned_and_nothing_is_held() {
        let pr = Progress::default();
        let assignment = vec![tp("a", 0), tp("a", 1), tp("b", 0)];
        let s = pr.snapshot(&assignment, |_, _| false);
        assert_eq!((s.assignment_known, s.partitions_at_end), (false, 0));
        pr.assigned();
        pr.reached_end("a", 0);
        pr.reached_end("b", 0);
        pr.reached_end("gone", 7);
        let s = pr.snapshot(&assignment, |_, _| false);
        assert_eq!(
            (
                s.assignment_known,
                s.assigned_partitions,
                s.partitions_at_end
            ),
            (true, 3, 2)
        );
        assert!(!s.all_at_end());
        // Messages of b/0 still held: not at its end yet.
        let s = pr.snapshot(&assignment, |t, p| t == "b" && p == 0);
        assert_eq!(s.partitions_at_end, 1);
        pr.reached_end("a", 1);
        assert!(pr.snapshot(&assignment, |_, _| false).all_at_end());
        // A revoke: a rebalance is under way, the revoked ends are forgotten.
        pr.revoked(&[tp("a", 1)]);
        let s = pr.snapshot(&assignment, |_, _| false);
        assert_eq!((s.assignment_known, s.partitions_at_end), (false, 2));
        assert!(!pr.is_at_end("a", 1) && pr.is_at_end("a", 0));
    }

    #[test]
    fn budget_counts_down_and_stops_at_zero() {
        let mut b = Budget::new(Some(3));
        assert!(b.take_one() && b.take_one());
        assert!(!b.is_spent());
        b.take(5);
        assert!(b.is_spent());
        assert!(!b.take_one());
        let mut unbounded = Budget::new(None);
        unbounded.take(usize::MAX);
        assert!(unbounded.take_one() && !unbounded.is_spent());
    }
}
