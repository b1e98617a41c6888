//! The datasource's part of a transactional commit (issue 17): which reader handed
//! each group out (its consumer's group metadata, its watermarks with the groups
//! done), the `txn` markers in the status database, and the status update once the
//! Kafka transaction committed. The sink ([`producer::txn`](crate::producer)) calls
//! it; the groups never cross the plugin boundary as anything but their ids.

use std::{collections::HashMap, sync::Arc};

use pseidon_plugin_api::Error;
use rdkafka::{TopicPartitionList, consumer::ConsumerGroupMetadata};

use super::KafkaSource;
use crate::{
    consumer::LiveReader,
    state::{GroupKey, parse_group_id},
    store::{Scope, TxnRow},
};

/// Whose offsets a transaction commits: a joined reader's consumer group metadata
/// (KIP-447: the broker checks its generation), or, for a reader that has not joined
/// yet (replaying), the consumer group's id alone.
pub(crate) enum TxnGroup {
    /// The joined consumer's metadata.
    Joined(ConsumerGroupMetadata),
    /// The group id only (generation -1, no member or instance id).
    GroupOnly(String),
}

/// What one transaction commits: per reader, its consumer group and the offsets; and
/// the rows marked with the transaction.
pub(crate) struct TxnPlan {
    /// `send_offsets_to_transaction` arguments, one per reader (consumer group).
    pub(crate) offsets: Vec<(TxnGroup, TopicPartitionList)>,
    /// The rows of the groups.
    pub(crate) rows: Vec<TxnRow>,
}

impl KafkaSource {
    /// The one scope (cluster and consumer group) of the live group readers, for the
    /// derived transactional id; an error if there is none or more than one.
    pub(crate) fn txn_scope(&self) -> Result<Scope, Error> {
        let mut scopes: Vec<Scope> = self
            .live_readers()
            .iter()
            .filter_map(|r| r.scope_now(std::time::Duration::from_secs(10)))
            .collect();
        scopes.sort_by(|a, b| {
            (&a.cluster_id, &a.consumer_group).cmp(&(&b.cluster_id, &b.consumer_group))
        });
        scopes.dedup();
        match scopes.len() {
            1 => Ok(scopes.remove(0)),
            0 => Err(Error::config(
                "kafka.transactional.id",
                "a transactional id is derived from the consumer group and cluster of the \
                 datasource's reader, and no reader is open (or the cluster did not tell its \
                 id within 10 s): open the reader first, or set kafka.transactional.id",
            )),
            _ => Err(Error::config(
                "kafka.transactional.id",
                format!(
                    "the datasource has readers in {} consumer groups ({}): a derived \
                     transactional id needs exactly one; set kafka.transactional.id",
                    scopes.len(),
                    scopes
                        .iter()
                        .map(Scope::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            )),
        }
    }

    /// The rows, readers and offsets of the groups `ids` (handed out by this process
    /// and unfinished), with `txn` set on the rows.
    pub(crate) fn txn_prepare(&self, ids: &[String], txn: &str) -> Result<TxnPlan, Error> {
        let store = self.state.store()?;
        let readers = self.live_readers();
        let mut rows = Vec::new();
        // Reader index → its groups.
        let mut by_reader: HashMap<usize, Vec<GroupKey>> = HashMap::new();
        for id in ids {
            let key = parse_group_id(id)?;
            let mut claims = self.state.claims_of(id, None);
            let (scope, topic_id) = match claims.len() {
                1 => claims.remove(0),
                0 => {
                    return Err(Error::InvalidGroupId {
                        group_id: id.clone(),
                        reason: "it is not an unfinished group handed out by a reader of this \
                                 plugin (a transaction commits only its own readers' groups)"
                            .into(),
                    });
                }
                _ => {
                    return Err(Error::InvalidGroupId {
                        group_id: id.clone(),
                        reason: "more than one consumer group of this process holds it".into(),
                    });
                }
            };
            let Some(reader) = pick_reader(&readers, &scope, &key) else {
                return Err(Error::InvalidGroupId {
                    group_id: id.clone(),
                    reason: format!("no open reader of {scope} holds it"),
                });
            };
            by_reader.entry(reader).or_default().push(key);
            rows.push(TxnRow {
                scope,
                topic_id,
                id: id.clone(),
            });
        }
        let mut offsets = Vec::new();
        for (index, keys) in by_reader {
            let reader = &readers[index];
            let group = if reader.is_subscribed() {
                match reader.group_metadata() {
                    Some(cgm) => TxnGroup::Joined(cgm),
                    None => {
                        return Err(Error::kafka(
                            "commit a transaction",
                            "the reader's consumer has no consumer group metadata yet",
                        ));
                    }
                }
            } else {
                TxnGroup::GroupOnly(reader.scope().map(|s| s.consumer_group).unwrap_or_default())
            };
            let mut plan = reader.txn_offsets(&keys);
            // Untracked partitions (replayed groups): only when no unfinished group below
            // the batch's is left out of it (else the offset would pass that group).
            let untracked: Vec<(String, i32)> = plan
                .offsets
                .iter()
                .filter(|(_, (_, tracked))| !tracked)
                .map(|(slot, _)| slot.clone())
                .collect();
            if !untracked.is_empty()
                && let Some(scope) = reader.scope()
            {
                let topics: Vec<String> = untracked.iter().map(|(t, _)| t.clone()).collect();
                let unfinished = store.unfinished(&scope, &topics, |_| String::new())?;
                for (topic, partition) in untracked {
                    let Some(&(offset, _)) = plan.offsets.get(&(topic.clone(), partition)) else {
                        continue;
                    };
                    let left_out = unfinished.iter().any(|g| {
                        g.topic == topic
                            && g.partition == partition
                            && g.max_offset < offset
                            && !ids.contains(&g.id)
                    });
                    if left_out {
                        log::warn!(
                            "transaction: {topic}/{partition} has an unfinished group below \
                             offset {offset} outside the batch; its offset is not committed \
                             with this transaction (a crash before the status update replays \
                             the batch)"
                        );
                        plan.offsets.remove(&(topic, partition));
                    }
                }
            }
            offsets.push((group, plan.to_tpl()));
        }
        store.set_txn(&rows, txn)?;
        Ok(TxnPlan { offsets, rows })
    }

    /// After the transaction of `ids` committed: each is marked done (the marker
    /// cleared) and the readers' watermarks advance.
    pub(crate) fn txn_done(&self, rows: &[TxnRow]) -> Result<(), Error> {
        for r in rows {
            self.mark_done_scoped(&r.id, Some(&r.scope.consumer_group))?;
        }
        Ok(())
    }
}

/// The reader of `scope` that tracks the group's partition, else the first of `scope`.
fn pick_reader(readers: &[Arc<LiveReader>], scope: &Scope, key: &GroupKey) -> Option<usize> {
    let of_scope: Vec<usize> = readers
        .iter()
        .enumerate()
        .filter(|(_, r)| r.scope().as_ref() == Some(scope))
        .map(|(i, _)| i)
        .collect();
    of_scope
        .iter()
        .copied()
        .find(|&i| readers[i].tracks(&key.topic, key.partition))
        .or_else(|| of_scope.first().copied())
}
