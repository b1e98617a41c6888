//! The failure list of the datasink ([`FailureList`]): the failed deliveries that no
//! flush has drained yet, bounded so that a sink nobody flushes cannot grow it without
//! end.
//!
//! Invariants: every failure pushed is reported by exactly one [`FailureList::take`]
//! (the next one) and counted by [`FailureList::len`] until then; the first
//! [`MAX_LISTED_FAILURES`] in full (id, topic, reason), the later ones together in one
//! summary entry. Memory is bounded by the listed ones plus one failure and one reason.

use pseidon_plugin_api::{DeliveryFailure, DeliveryId};

/// The most failures kept in full (id, topic, reason) between two flushes. Later ones,
/// until the next flush, are only counted: that flush reports them as one summary
/// entry after the listed ones, with the id and topic of the first of them, their
/// count, the first and last ids, and the first and last reasons. A user that flushes
/// after each batch (as `pseidon send` and the copy processor do) never reaches it.
pub(crate) const MAX_LISTED_FAILURES: usize = 100_000;

/// The failures beyond the listed ones.
struct Unlisted {
    count: u64,
    first: DeliveryFailure,
    last_id: DeliveryId,
    last_topic: String,
    last_reason: String,
}

/// Failed deliveries waiting for a flush: at most `limit` listed, the rest counted.
pub(crate) struct FailureList {
    listed: Vec<DeliveryFailure>,
    limit: usize,
    unlisted: Option<Unlisted>,
}

impl FailureList {
    /// An empty list keeping at most `limit` failures in full.
    pub(crate) fn new(limit: usize) -> Self {
        FailureList {
            listed: Vec::new(),
            limit,
            unlisted: None,
        }
    }

    /// Failures waiting, listed or not.
    pub(crate) fn len(&self) -> u64 {
        self.listed.len() as u64 + self.unlisted.as_ref().map_or(0, |u| u.count)
    }

    /// True when no failure is waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The failures kept in full, oldest first.
    pub(crate) fn listed(&self) -> &[DeliveryFailure] {
        &self.listed
    }

    /// Adds `failure`; true when it is the first one only counted (the list is full).
    pub(crate) fn push(&mut self, failure: DeliveryFailure) -> bool {
        if self.listed.len() < self.limit {
            self.listed.push(failure);
            return false;
        }
        match &mut self.unlisted {
            Some(u) => {
                u.count += 1;
                u.last_id = failure.id;
                u.last_topic = failure.topic;
                u.last_reason = failure.reason;
                false
            }
            None => {
                self.unlisted = Some(Unlisted {
                    count: 1,
                    last_id: failure.id,
                    last_topic: failure.topic.clone(),
                    last_reason: failure.reason.clone(),
                    first: failure,
                });
                true
            }
        }
    }

    /// Empties the list: the listed failures, then the summary of the others if any.
    pub(crate) fn take(&mut self) -> Vec<DeliveryFailure> {
        let mut failed = std::mem::take(&mut self.listed);
        if let Some(u) = self.unlisted.take() {
            let mut reason = format!(
                "{} more message(s) failed and were not listed, ids {} to {} (at most {} are kept in full between two flushes): the first failed with: {}",
                u.count, u.first.id, u.last_id, self.limit, u.first.reason
            );
            if u.count > 1 {
                reason.push_str(&format!(
                    "; the last (to topic `{}`) with: {}",
                    u.last_topic, u.last_reason
                ));
            }
            failed.push(DeliveryFailure {
                id: u.first.id,
                topic: u.first.topic,
                reason,
            });
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(id: u64, topic: &str) -> DeliveryFailure {
        DeliveryFailure {
            id,
            topic: topic.to_string(),
            reason: format!("reason {id}"),
        }
    }

    #[test]
    fn keeps_the_first_failures_in_full_and_counts_the_rest_until_the_next_take() {
        let mut list = FailureList::new(3);
        let firsts: Vec<bool> = (10..16)
            .map(|id| list.push(failure(id, if id < 15 { "a" } else { "b" })))
            .collect();
        assert_eq!(firsts, [false, false, false, true, false, false]);
        assert_eq!(list.len(), 6);
        assert_eq!(list.listed().len(), 3);
        let failed = list.take();
        assert_eq!(
            failed[..3],
            [failure(10, "a"), failure(11, "a"), failure(12, "a")]
        );
        assert_eq!(failed.len(), 4, "{failed:?}");
        let summary = &failed[3];
        assert_eq!((summary.id, summary.topic.as_str()), (13, "a"));
        assert_eq!(
            summary.reason,
            "3 more message(s) failed and were not listed, ids 13 to 15 (at most 3 are kept in full between two flushes): the first failed with: reason 13; the last (to topic `b`) with: reason 15"
        );
        // Taken once: the next take has nothing, and the list keeps anew.
        assert!(list.is_empty());
        assert!(list.take().is_empty());
        assert!(!list.push(failure(20, "a")));
        assert_eq!(list.take(), [failure(20, "a")]);
    }

    #[test]
    fn one_unlisted_failure_is_summarised_with_its_own_reason() {
        let mut list = FailureList::new(0);
        assert!(list.push(failure(7, "t")));
        assert_eq!(list.len(), 1);
        assert_eq!(
            list.take(),
            [DeliveryFailure {
                id: 7,
                topic: "t".into(),
                reason: "1 more message(s) failed and were not listed, ids 7 to 7 (at most 0 are kept in full between two flushes): the first failed with: reason 7".into(),
            }]
        );
    }
}
