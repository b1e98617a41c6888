//! librdkafka's statistics (`statistics.interval.ms`, defaulted by the conf to
//! [`DEFAULT_STATISTICS_INTERVAL_MS`](crate::config::DEFAULT_STATISTICS_INTERVAL_MS)):
//! the few fields the metrics use, parsed with serde from the JSON librdkafka hands
//! the client context's `stats_raw` callback, and the latest parse of one client
//! ([`StatsCell`]).
//!
//! Invariants: the JSON is parsed once per interval on librdkafka's thread, never at
//! scrape time; a document that does not parse keeps the previous one (and is logged
//! once per client). Offsets librdkafka does not know are `-1001` there and `None`
//! here; the internal partition `-1` is dropped.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
};

use serde::Deserialize;

/// librdkafka's "invalid offset".
const OFFSET_INVALID: i64 = -1001;

/// One broker of a client, as the statistics give it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub(crate) struct BrokerStats {
    /// `host:port/nodeid`, or `GroupCoordinator` and the like.
    #[serde(default)]
    pub(crate) name: String,
    /// Node id; -1 for the bootstrap brokers before they are known.
    #[serde(default)]
    pub(crate) nodeid: i64,
    /// `UP`, `DOWN`, `INIT`, `CONNECT`, ...
    #[serde(default)]
    pub(crate) state: String,
    /// Requests waiting to be sent.
    #[serde(default)]
    pub(crate) outbuf_msg_cnt: i64,
    /// Round-trip times, microseconds.
    #[serde(default)]
    pub(crate) rtt: Window,
}

/// A rolling window of librdkafka's (microseconds for `rtt`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub(crate) struct Window {
    /// The average over the window.
    #[serde(default)]
    pub(crate) avg: i64,
    /// Values in the window.
    #[serde(default)]
    pub(crate) cnt: i64,
}

/// One partition of a topic.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub(crate) struct PartitionStats {
    /// Partition id.
    pub(crate) partition: i32,
    /// High watermark (log end offset).
    #[serde(default = "invalid")]
    pub(crate) hi_offset: i64,
    /// Log start offset.
    #[serde(default = "invalid")]
    pub(crate) lo_offset: i64,
    /// The next offset the application reads (last passed to it + 1).
    #[serde(default = "invalid")]
    pub(crate) app_offset: i64,
    /// The offset last committed.
    #[serde(default = "invalid")]
    pub(crate) committed_offset: i64,
}

fn invalid() -> i64 {
    OFFSET_INVALID
}

/// `offset`, if librdkafka knows it.
pub(crate) fn known(offset: i64) -> Option<i64> {
    (offset >= 0).then_some(offset)
}

/// One topic.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub(crate) struct TopicStats {
    /// Partitions by id (as a string key in the JSON).
    #[serde(default)]
    pub(crate) partitions: BTreeMap<String, PartitionStats>,
}

/// The fields of one statistics document the metrics use.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub(crate) struct ClientStats {
    /// The client's handle name.
    #[serde(default)]
    pub(crate) name: String,
    /// Messages in the producer queue.
    #[serde(default)]
    pub(crate) msg_cnt: i64,
    /// Operations (callbacks, events) waiting in the application's queue.
    #[serde(default)]
    pub(crate) replyq: i64,
    /// Brokers by name.
    #[serde(default)]
    pub(crate) brokers: BTreeMap<String, BrokerStats>,
    /// Topics by name.
    #[serde(default)]
    pub(crate) topics: BTreeMap<String, TopicStats>,
}

impl ClientStats {
    /// Parses one document.
    pub(crate) fn parse(json: &[u8]) -> Result<ClientStats, serde_json::Error> {
        let mut s: ClientStats = serde_json::from_slice(json)?;
        for t in s.topics.values_mut() {
            t.partitions.retain(|_, p| p.partition >= 0);
        }
        Ok(s)
    }

    /// The partition `partition` of `topic`, if the statistics name it.
    pub(crate) fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionStats> {
        self.topics
            .get(topic)?
            .partitions
            .values()
            .find(|p| p.partition == partition)
    }

    /// The brokers that name a real broker (not the coordinator aliases, which
    /// duplicate one), with their state.
    pub(crate) fn real_brokers(&self) -> impl Iterator<Item = &BrokerStats> {
        self.brokers.values().filter(|b| b.nodeid >= 0)
    }

    /// True if some broker is `UP`.
    pub(crate) fn any_broker_up(&self) -> bool {
        self.brokers.values().any(|b| b.state == "UP")
    }
}

/// The latest statistics of one client.
#[derive(Default)]
pub(crate) struct StatsCell {
    latest: Mutex<Option<Arc<ClientStats>>>,
    warned: AtomicBool,
}

impl StatsCell {
    /// Parses and keeps `json` (the `stats_raw` callback's body).
    pub(crate) fn update(&self, json: &[u8]) {
        match ClientStats::parse(json) {
            Ok(s) => {
                *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(s))
            }
            Err(e) => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "librdkafka's statistics do not parse ({e}): their metrics stay as they were"
                    );
                }
            }
        }
    }

    /// The latest statistics, if any came yet.
    pub(crate) fn get(&self) -> Option<Arc<ClientStats>> {
        self.latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trimmed document of librdkafka 2.x (consumer).
    const DOC: &str = r#"{
      "name": "rdkafka#consumer-1", "client_id": "rdkafka", "type": "consumer",
      "ts": 1, "time": 2, "replyq": 3, "msg_cnt": 0, "msg_size": 0,
      "brokers": {
        "127.0.0.1:9092/1": {"name": "127.0.0.1:9092/1", "nodeid": 1, "state": "UP",
          "outbuf_msg_cnt": 2, "rtt": {"min": 100, "max": 900, "avg": 450, "cnt": 4}},
        "GroupCoordinator": {"name": "GroupCoordinator", "nodeid": -1, "state": "UP",
          "outbuf_msg_cnt": 0, "rtt": {"avg": 0, "cnt": 0}}
      },
      "topics": {"t": {"topic": "t", "partitions": {
        "0": {"partition": 0, "hi_offset": 100, "lo_offset": 10, "app_offset": 60,
              "committed_offset": 40, "unknown_field": 7},
        "-1": {"partition": -1, "hi_offset": -1001}
      }}}
    }"#;

    #[test]
    fn parses_the_fields_used_and_ignores_the_rest() {
        let s = ClientStats::parse(DOC.as_bytes()).unwrap();
        assert_eq!((s.replyq, s.msg_cnt), (3, 0));
        let b = &s.brokers["127.0.0.1:9092/1"];
        assert_eq!(
            (b.state.as_str(), b.outbuf_msg_cnt, b.rtt.avg),
            ("UP", 2, 450)
        );
        let p = s.partition("t", 0).unwrap();
        assert_eq!(
            (p.hi_offset, p.lo_offset, p.app_offset, p.committed_offset),
            (100, 10, 60, 40)
        );
        assert!(
            s.partition("t", -1).is_none(),
            "the internal partition is dropped"
        );
        assert_eq!(s.real_brokers().count(), 1);
        assert!(s.any_broker_up());
    }

    #[test]
    fn unknown_offsets_are_none_and_a_bad_document_keeps_the_last() {
        let s = ClientStats::parse(br#"{"topics":{"t":{"partitions":{"0":{"partition":0}}}}}"#)
            .unwrap();
        let p = s.partition("t", 0).unwrap();
        assert_eq!((known(p.hi_offset), known(p.app_offset)), (None, None));
        let cell = StatsCell::default();
        cell.update(DOC.as_bytes());
        cell.update(b"{not json");
        assert_eq!(cell.get().unwrap().replyq, 3);
    }
}
