//! The topic ids of a reader's topics ([`identity`](crate::identity)), which tell a
//! topic from an earlier incarnation of the same name (deleted and recreated).
//!
//! When a topic's id is learnt, the rows of the reader's scope of its earlier
//! incarnations are retired: unfinished ones are recorded `lost` (logged as errors,
//! counted, their claims released), done ones no longer hide anything (a warning).

use std::{collections::HashMap, sync::atomic::Ordering, time::Duration};

use pseidon_plugin_api::Error;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::live::Ctx;
use crate::{
    error::kafka_code_err,
    identity::{self, TopicId},
    state::SourceState,
    store::{Scope, Store},
};

/// How long the topic ids may take at the start of a reader (the admin request).
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Asks the cluster for the ids of `topics`, and retires the rows of `scope` of earlier
/// incarnations of each (logged: lost unfinished groups as errors, hidden done ones as
/// a warning). Returns topic → id ("" where unknown: the topic does not exist yet, or
/// the broker has no topic ids).
pub(super) fn resolve_topic_ids(
    consumer: &BaseConsumer<Ctx>,
    store: &Store,
    state: &SourceState,
    scope: &Scope,
    topics: &[String],
) -> Result<HashMap<String, String>, Error> {
    let answer = identity::topic_ids(consumer.client().native_ptr(), topics, DESCRIBE_TIMEOUT);
    let mut ids = HashMap::new();
    match answer {
        Ok(found) => {
            for t in topics {
                match found.get(t) {
                    Some(TopicId::Known(id)) => {
                        ids.insert(t.clone(), id.clone());
                    }
                    Some(TopicId::NoSuchTopic) | None => {}
                    Some(TopicId::Failed { code, reason }) => log::warn!(
                        "topic `{t}`: no topic id ({code:?}: {reason}); a deleted and recreated \
                         topic of this name cannot be told from the old one"
                    ),
                }
            }
        }
        Err(e) if e.is_transient() => {
            return Err(kafka_code_err(
                format!("describing topics {topics:?} (their topic ids)"),
                e.code,
                format!("{:?}: {}", e.code, e.reason),
            ));
        }
        Err(e) => log::warn!(
            "topics {topics:?}: no topic ids ({:?}: {}); a deleted and recreated topic cannot \
             be told from the old one",
            e.code,
            e.reason
        ),
    }
    for (topic, id) in &ids {
        let retired = store.retire_incarnations(scope, topic, id)?;
        if retired.lost.is_empty() && retired.finished == 0 {
            continue;
        }
        log::warn!(
            "topic `{topic}` was deleted and recreated (topic id {id}; the status database knew \
             {:?}): {} done group(s) of the old topic no longer hide anything",
            retired.old_ids,
            retired.finished
        );
        for g in &retired.lost {
            state.release(scope, [g.id.as_str()]);
            let messages = g
                .messages
                .unwrap_or_else(|| u64::try_from(g.max_offset - g.min_offset + 1).unwrap_or(0));
            state
                .metrics
                .lost(&g.topic, &scope.consumer_group, messages);
            let n = state.lost.fetch_add(1, Ordering::SeqCst) + 1;
            log::error!(
                "message group {} is LOST: it was not done when topic `{topic}` was deleted \
                 (offsets {}..={} of partition {} went with it); marked `lost` in the status \
                 database; {n} group(s) lost since start",
                g.id,
                g.min_offset,
                g.max_offset,
                g.partition
            );
        }
    }
    for t in topics {
        ids.entry(t.clone()).or_default();
    }
    Ok(ids)
}
