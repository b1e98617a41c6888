//! The JSON documents the host prints (and the observability endpoint is to serve):
//! the tracked message groups ([`groups_json`], `pseidon groups --format json`, `/groups`)
//! and the cluster metadata ([`metadata_json`], `pseidon metadata --format json`).
//! Their schemas are documented here, on each function, and nowhere else.

use std::time::{Duration, UNIX_EPOCH};

use pseidon_plugin_api::{ClusterMetadata, GroupInfo};
use serde_json::{Value, json};

/// `ms` since the epoch as RFC 3339 in UTC with milliseconds, e.g.
/// `2026-01-01T00:00:00.000Z` (instants before the epoch are the epoch).
///
/// ```
/// assert_eq!(pseidon_host::report::rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
/// ```
pub fn rfc3339_ms(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

fn non_empty(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        Value::String(s.to_string())
    }
}

/// One group as an object of [`groups_json`].
pub fn group_json(g: &GroupInfo) -> Value {
    json!({
        "id": g.id,
        "topic": g.topic,
        "partition": g.partition,
        "min_offset": g.min_offset,
        "max_offset": g.max_offset,
        "messages": g.messages,
        "status": g.status.as_str(),
        "attempt": g.attempt,
        "updated_ms": g.updated_ms,
        "updated": rfc3339_ms(g.updated_ms),
        "consumer_group": non_empty(&g.consumer_group),
        "cluster_id": non_empty(&g.cluster_id),
        "topic_id": non_empty(&g.topic_id),
        "reason": g.reason,
        "retry_at_ms": g.retry_at_ms,
        "parent": g.parent,
    })
}

/// The tracked message groups as one JSON document:
///
/// ```text
/// {
///   "groups": [
///     {
///       "id": "t:0:0:9",              // topic:partition:min-offset:max-offset
///       "topic": "t",
///       "partition": 0,
///       "min_offset": 0,
///       "max_offset": 9,
///       "messages": 10,               // when last handed out; null: unknown (older plugin)
///       "status": "done",             // "ready" | "run" | "done" | "lost" | "failed" | "split" | "dead"
///       "attempt": 1,                 // times handed out
///       "updated_ms": 1767225600000,  // last status change, ms since the epoch
///       "updated": "2026-01-01T00:00:00.000Z",
///       "consumer_group": "my-app",   // null: unknown (rows from before scoping)
///       "cluster_id": "…",            // null: unknown
///       "topic_id": "…",              // Kafka's topic id (base64); null: unknown
///       "reason": null,               // the last failure (mark_failed), secrets scrubbed
///       "retry_at_ms": null,          // when a failed group is handed out again
///       "parent": null                // the split group this one is a half of
///     }
///   ],
///   "count": 1,                       // groups listed
///   "messages": 10                    // their known message counts, summed
/// }
/// ```
///
/// Groups in the order given (the datasource lists them by consumer group, cluster,
/// topic, partition and offset).
///
/// ```
/// # use pseidon_plugin_api::{GroupInfo, GroupStatus};
/// let g = GroupInfo { id: "t:0:0:9".into(), topic: "t".into(), partition: 0,
///     min_offset: 0, max_offset: 9, status: GroupStatus::Done, attempt: 1, updated_ms: 0,
///     cluster_id: "C1".into(), consumer_group: "g".into(), topic_id: String::new(),
///     messages: Some(10), reason: None, retry_at_ms: None, parent: None };
/// let doc = pseidon_host::report::groups_json(&[g]);
/// assert_eq!(doc["count"], 1);
/// assert_eq!(doc["groups"][0]["status"], "done");
/// assert!(doc["groups"][0]["topic_id"].is_null());
/// ```
pub fn groups_json(groups: &[GroupInfo]) -> Value {
    let messages: u64 = groups.iter().filter_map(|g| g.messages).sum();
    json!({
        "groups": groups.iter().map(group_json).collect::<Vec<_>>(),
        "count": groups.len(),
        "messages": messages,
    })
}

/// The cluster metadata as one JSON document, in the layout of `kcat -L -J` (its keys
/// kept, so scripts written for kcat work), with the cluster id and each partition's
/// watermarks added:
///
/// ```text
/// {
///   "originating_broker": {"id": 1, "name": "127.0.0.1:9092/1"},
///   "query": {"topic": "*"},              // or the topic asked for
///   "cluster_id": "…",                    // null: unknown
///   "controllerid": 1,                    // null: unknown
///   "brokers": [{"id": 1, "name": "127.0.0.1:9092"}],
///   "topics": [
///     {
///       "topic": "t",
///       "error": null,                    // the broker's error for the topic
///       "partitions": [
///         {
///           "partition": 0,
///           "leader": 1,                  // -1: none
///           "replicas": [{"id": 1}],
///           "isrs": [{"id": 1}],
///           "error": null,                // the broker's error for the partition
///           "low_offset": 0,              // log start offset; null: not fetched
///           "high_offset": 35,            // offset of the next message; null: not fetched
///           "offsets_error": null         // why the offsets were not fetched
///         }
///       ]
///     }
///   ]
/// }
/// ```
pub fn metadata_json(m: &ClusterMetadata, topic: Option<&str>) -> Value {
    let ids = |v: &[i32]| v.iter().map(|id| json!({ "id": id })).collect::<Vec<_>>();
    json!({
        "originating_broker": {"id": m.orig_broker_id, "name": m.orig_broker_name},
        "query": {"topic": topic.unwrap_or("*")},
        "cluster_id": non_empty(&m.cluster_id),
        "controllerid": m.controller_id,
        "brokers": m.brokers.iter().map(|b| json!({
            "id": b.id,
            "name": format!("{}:{}", b.host, b.port),
        })).collect::<Vec<_>>(),
        "topics": m.topics.iter().map(|t| json!({
            "topic": t.name,
            "error": t.error,
            "partitions": t.partitions.iter().map(|p| json!({
                "partition": p.id,
                "leader": p.leader,
                "replicas": ids(&p.replicas),
                "isrs": ids(&p.isr),
                "error": p.error,
                "low_offset": p.low_offset,
                "high_offset": p.high_offset,
                "offsets_error": p.offsets_error,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// The cluster metadata as text, as `kcat -L` prints it, with the cluster id on the
/// first line and each partition's watermarks at the end of its line
/// (`offsets: low 0, high 35`).
pub fn metadata_text(m: &ClusterMetadata, topic: Option<&str>) -> String {
    let list = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    let mut out = format!(
        "Metadata for {} (from broker {}: {}), cluster id {}:\n",
        topic.map_or("all topics".to_string(), |t| format!("topic \"{t}\"")),
        m.orig_broker_id,
        m.orig_broker_name,
        if m.cluster_id.is_empty() {
            "unknown"
        } else {
            &m.cluster_id
        }
    );
    out.push_str(&format!(" {} brokers:\n", m.brokers.len()));
    for b in &m.brokers {
        let controller = if m.controller_id == Some(b.id) {
            " (controller)"
        } else {
            ""
        };
        out.push_str(&format!(
            "  broker {} at {}:{}{controller}\n",
            b.id, b.host, b.port
        ));
    }
    out.push_str(&format!(" {} topics:\n", m.topics.len()));
    for t in &m.topics {
        out.push_str(&format!(
            "  topic \"{}\" with {} partitions:",
            t.name,
            t.partitions.len()
        ));
        if let Some(e) = &t.error {
            out.push_str(&format!(" error: {e}"));
        }
        out.push('\n');
        for p in &t.partitions {
            out.push_str(&format!(
                "    partition {}, leader {}, replicas: {}, isrs: {}",
                p.id,
                p.leader,
                list(&p.replicas),
                list(&p.isr)
            ));
            if let Some(e) = &p.error {
                out.push_str(&format!(", error: {e}"));
            }
            match (p.low_offset, p.high_offset) {
                (Some(low), Some(high)) => {
                    out.push_str(&format!(", offsets: low {low}, high {high}"))
                }
                _ => out.push_str(&format!(
                    ", offsets: unknown ({})",
                    p.offsets_error.as_deref().unwrap_or("not fetched")
                )),
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use pseidon_plugin_api::{BrokerMetadata, PartitionMetadata, TopicMetadata};

    use super::*;

    fn sample() -> ClusterMetadata {
        ClusterMetadata {
            cluster_id: "C1".into(),
            controller_id: Some(1),
            orig_broker_id: 1,
            orig_broker_name: "127.0.0.1:9092/1".into(),
            brokers: vec![
                BrokerMetadata {
                    id: 1,
                    host: "127.0.0.1".into(),
                    port: 9092,
                },
                BrokerMetadata {
                    id: 2,
                    host: "127.0.0.1".into(),
                    port: 9093,
                },
            ],
            topics: vec![TopicMetadata {
                name: "t".into(),
                error: None,
                partitions: vec![
                    PartitionMetadata {
                        id: 0,
                        leader: 1,
                        replicas: vec![1, 2],
                        isr: vec![1],
                        error: None,
                        low_offset: Some(3),
                        high_offset: Some(35),
                        offsets_error: None,
                    },
                    PartitionMetadata {
                        id: 1,
                        leader: -1,
                        replicas: vec![2],
                        isr: vec![],
                        error: Some("Broker: Leader not available".into()),
                        low_offset: None,
                        high_offset: None,
                        offsets_error: Some("Local: Timed out".into()),
                    },
                ],
            }],
        }
    }

    #[test]
    fn metadata_text_is_kcat_s_layout_with_offsets() {
        let text = metadata_text(&sample(), None);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "Metadata for all topics (from broker 1: 127.0.0.1:9092/1), cluster id C1:",
                " 2 brokers:",
                "  broker 1 at 127.0.0.1:9092 (controller)",
                "  broker 2 at 127.0.0.1:9093",
                " 1 topics:",
                "  topic \"t\" with 2 partitions:",
                "    partition 0, leader 1, replicas: 1,2, isrs: 1, offsets: low 3, high 35",
                "    partition 1, leader -1, replicas: 2, isrs: , error: Broker: Leader not \
                 available, offsets: unknown (Local: Timed out)",
            ]
        );
    }

    #[test]
    fn metadata_json_keeps_kcat_s_keys() {
        let doc = metadata_json(&sample(), Some("t"));
        assert_eq!(doc["originating_broker"]["name"], "127.0.0.1:9092/1");
        assert_eq!(doc["query"]["topic"], "t");
        assert_eq!(doc["controllerid"], 1);
        assert_eq!(doc["brokers"][1]["name"], "127.0.0.1:9093");
        let p = &doc["topics"][0]["partitions"];
        assert_eq!(p[0]["replicas"], json!([{"id": 1}, {"id": 2}]));
        assert_eq!(p[0]["isrs"], json!([{"id": 1}]));
        assert_eq!(
            (p[0]["low_offset"].as_i64(), p[0]["high_offset"].as_i64()),
            (Some(3), Some(35))
        );
        assert!(p[1]["low_offset"].is_null());
        assert_eq!(p[1]["offsets_error"], "Local: Timed out");
        assert!(doc["topics"][0]["error"].is_null());
        let unknown = ClusterMetadata {
            controller_id: None,
            cluster_id: String::new(),
            ..sample()
        };
        let doc = metadata_json(&unknown, None);
        assert!(doc["controllerid"].is_null() && doc["cluster_id"].is_null());
        assert_eq!(doc["query"]["topic"], "*");
    }

    #[test]
    fn groups_json_sums_known_counts_and_nulls_unknowns() {
        let g = GroupInfo {
            id: "t:0:0:9".into(),
            topic: "t".into(),
            partition: 0,
            min_offset: 0,
            max_offset: 9,
            status: pseidon_plugin_api::GroupStatus::Run,
            attempt: 2,
            updated_ms: 1_798_761_599_999,
            cluster_id: "C1".into(),
            consumer_group: "gA".into(),
            topic_id: "T1".into(),
            messages: Some(10),
            reason: None,
            retry_at_ms: None,
            parent: None,
        };
        let old = GroupInfo {
            id: "t:0:10:19".into(),
            messages: None,
            consumer_group: String::new(),
            ..g.clone()
        };
        let doc = groups_json(&[g, old]);
        assert_eq!(doc["count"], 2);
        assert_eq!(doc["messages"], 10);
        let first = &doc["groups"][0];
        assert_eq!(first["updated"], "2026-12-31T23:59:59.999Z");
        assert_eq!(first["status"], "run");
        assert_eq!(first["attempt"], 2);
        assert_eq!(first["consumer_group"], "gA");
        assert!(doc["groups"][1]["messages"].is_null());
        assert!(doc["groups"][1]["consumer_group"].is_null());
        assert_eq!(groups_json(&[])["count"], 0);
    }
}
