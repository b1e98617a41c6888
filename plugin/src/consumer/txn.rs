//! What a transactional commit (issue 17) needs of a live reader: the done-watermarks
//! its partitions would have with a batch of groups done, computed on copies of the
//! trackers (the real ones advance only once the transaction committed, so no offset
//! the broker may still abort is ever stored or auto-committed), and its consumer's
//! group metadata for `send_offsets_to_transaction` (KIP-447).
//!
//! A partition without a tracker (its groups replayed before the reader subscribed)
//! gets the offset after the batch's last group of it: the replay hands a partition's
//! unfinished groups out in offset order, and the caller checks that no unfinished
//! group below it is left out of the batch.

use std::collections::HashMap;

use rdkafka::{
    Offset, TopicPartitionList,
    consumer::{Consumer, ConsumerGroupMetadata},
};

use super::live::LiveReader;
use crate::state::GroupKey;

/// The offsets of one reader's partitions for a transaction.
pub(crate) struct TxnOffsets {
    /// (topic, partition) → the offset to commit; `tracked` says if a tracker gave it.
    pub(crate) offsets: HashMap<(String, i32), (i64, bool)>,
}

impl LiveReader {
    /// The consumer group metadata of the reader's consumer (`None` before librdkafka
    /// has it).
    pub(crate) fn group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        self.consumer.group_metadata()
    }

    /// The watermark of each partition of `keys` with every group of `keys` done (the
    /// trackers are not changed).
    pub(crate) fn txn_offsets(&self, keys: &[GroupKey]) -> TxnOffsets {
        let mut offsets: HashMap<(String, i32), (i64, bool)> = HashMap::new();
        let trackers = self.shared.lock();
        let mut copies: HashMap<(String, i32), crate::tracker::Tracker> = HashMap::new();
        for k in keys {
            let slot = (k.topic.clone(), k.partition);
            match trackers.get(&k.topic).and_then(|per| per.get(&k.partition)) {
                Some(t) => {
                    let copy = copies.entry(slot).or_insert_with(|| t.clone());
                    if !copy.mark_done(k.min_offset, k.max_offset) {
                        log::debug!(
                            "transaction: group {} is not in its partition's tracker",
                            k.id()
                        );
                    }
                }
                None => {
                    let e = offsets.entry(slot).or_insert((k.max_offset + 1, false));
                    e.0 = e.0.max(k.max_offset + 1);
                }
            }
        }
        for (slot, mut t) in copies {
            offsets.insert(slot, (t.watermark(), true));
        }
        TxnOffsets { offsets }
    }
}

impl TxnOffsets {
    /// As a librdkafka list.
    pub(crate) fn to_tpl(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), (offset, _)) in &self.offsets {
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset));
        }
        tpl
    }
}

impl LiveReader {
    /// The reader's scope; before it is known, its consumer group and the cluster id
    /// asked now (within `timeout`), or `None` if the cluster did not answer.
    pub(crate) fn scope_now(&self, timeout: std::time::Duration) -> Option<crate::store::Scope> {
        if let Some(s) = self.scope() {
            return Some(s);
        }
        let group = self.group.get()?.clone();
        let cluster_id = self
            .consumer
            .client()
            .fetch_cluster_id(timeout)
            .filter(|id| !id.is_empty())?;
        Some(crate::store::Scope {
            cluster_id,
            consumer_group: group,
        })
    }

    /// True once the reader subscribed (it replayed what it had to).
    pub(crate) fn is_subscribed(&self) -> bool {
        self.consumer.subscription().is_ok_and(|t| t.count() > 0)
    }

    /// True if the reader has a tracker of this partition.
    pub(crate) fn tracks(&self, topic: &str, partition: i32) -> bool {
        self.shared
            .lock()
            .get(topic)
            .is_some_and(|per| per.contains_key(&partition))
    }
}

/// The restart rule (docs/DESIGN-group-states.md, "Exactly-once"): of the unfinished
/// rows `unfinished`, those with a `txn` marker whose range lies below the consumer
/// group's committed offset were committed by their transaction: they become `done`
/// (returned, not replayed). The other marked ones lose the marker (their transaction
/// aborted or never committed: replayed). Rows without a marker are not looked at.
pub(crate) fn resolve_txn_rows(
    consumer: &rdkafka::consumer::BaseConsumer<super::live::Ctx>,
    store: &crate::store::Store,
    scope: &crate::store::Scope,
    unfinished: &[pseidon_plugin_api::GroupInfo],
    deadline: std::time::Instant,
) -> Result<std::collections::HashSet<String>, pseidon_plugin_api::Error> {
    use crate::store::TxnRow;
    let mut marked = Vec::new();
    for g in unfinished {
        if store.txn_of(scope, &g.topic_id, &g.id)?.is_some() {
            marked.push(g);
        }
    }
    let mut done = std::collections::HashSet::new();
    if marked.is_empty() {
        return Ok(done);
    }
    let mut tpl = TopicPartitionList::new();
    for g in &marked {
        if tpl.find_partition(&g.topic, g.partition).is_none() {
            let _ = tpl.add_partition(&g.topic, g.partition);
        }
    }
    let timeout = deadline
        .saturating_duration_since(std::time::Instant::now())
        .max(std::time::Duration::from_secs(10));
    let committed = consumer
        .committed_offsets(tpl, timeout)
        .map_err(|e| crate::error::kafka_err("read the committed offsets (restart rule)", &e))?;
    let mut rows = Vec::new();
    for g in marked {
        let offset = committed
            .find_partition(&g.topic, g.partition)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
        let is_committed = offset.is_some_and(|o| o > g.max_offset);
        if is_committed {
            done.insert(g.id.clone());
        }
        rows.push((
            TxnRow {
                scope: scope.clone(),
                topic_id: g.topic_id.clone(),
                id: g.id.clone(),
            },
            is_committed,
        ));
    }
    let n = store.resolve_txn_rows(&rows)?;
    log::info!(
        "restart rule: {n} group(s) of {scope} committed by their transaction are done \
         (not replayed); {} of an unfinished transaction are replayed",
        rows.len() - done.len()
    );
    Ok(done)
}
