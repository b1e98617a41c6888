//! Cluster metadata as a data source reports it ([`Source::metadata`](crate::Source::metadata)):
//! brokers, topics, partitions with their leaders, replicas and in-sync replicas, and
//! each partition's watermarks — what `kcat -L` and `kafka-get-offsets` show. Plain
//! Rust types; their `ffi` twins cross the boundary.

use abi_stable::std_types::{ROption, RString, RVec};

use crate::ffi::{FfiBrokerMetadata, FfiClusterMetadata, FfiPartitionMetadata, FfiTopicMetadata};

/// The cluster's metadata.
///
/// ```
/// let m = pseidon_plugin_api::ClusterMetadata::default();
/// assert!(m.brokers.is_empty() && m.topics.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// Kafka cluster id; empty if the cluster did not tell.
    pub cluster_id: String,
    /// The controller's broker id, `None` if unknown.
    pub controller_id: Option<i32>,
    /// The id of the broker that answered.
    pub orig_broker_id: i32,
    /// The broker that answered, as librdkafka names it (`host:port/id`).
    pub orig_broker_name: String,
    /// Brokers, by id.
    pub brokers: Vec<BrokerMetadata>,
    /// Topics, by name.
    pub topics: Vec<TopicMetadata>,
}

/// A broker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerMetadata {
    /// Broker id.
    pub id: i32,
    /// Host name.
    pub host: String,
    /// Port.
    pub port: i32,
}

/// A topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicMetadata {
    /// Topic name.
    pub name: String,
    /// The broker's error for the topic (e.g. it does not exist), if any.
    pub error: Option<String>,
    /// Partitions, by id.
    pub partitions: Vec<PartitionMetadata>,
}

/// A partition and its watermarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// Partition id.
    pub id: i32,
    /// Leader broker id; -1 if the partition has none.
    pub leader: i32,
    /// Replica broker ids.
    pub replicas: Vec<i32>,
    /// In-sync replica broker ids.
    pub isr: Vec<i32>,
    /// The broker's error for the partition, if any.
    pub error: Option<String>,
    /// Low watermark: the first offset still in the log; `None` if not fetched.
    pub low_offset: Option<i64>,
    /// High watermark: the offset the next message gets; `None` if not fetched.
    pub high_offset: Option<i64>,
    /// Why the watermarks could not be fetched, if they could not.
    pub offsets_error: Option<String>,
}

fn opt_string(s: ROption<RString>) -> Option<String> {
    s.into_option().map(RString::into_string)
}

fn ropt_string(s: Option<String>) -> ROption<RString> {
    s.map(RString::from).into()
}

impl From<FfiClusterMetadata> for ClusterMetadata {
    fn from(m: FfiClusterMetadata) -> Self {
        ClusterMetadata {
            cluster_id: m.cluster_id.into_string(),
            controller_id: (m.controller_id >= 0).then_some(m.controller_id),
            orig_broker_id: m.orig_broker_id,
            orig_broker_name: m.orig_broker_name.into_string(),
            brokers: m
                .brokers
                .into_iter()
                .map(|b| BrokerMetadata {
                    id: b.id,
                    host: b.host.into_string(),
                    port: b.port,
                })
                .collect(),
            topics: m
                .topics
                .into_iter()
                .map(|t| TopicMetadata {
                    name: t.name.into_string(),
                    error: opt_string(t.error),
                    partitions: t
                        .partitions
                        .into_iter()
                        .map(|p| PartitionMetadata {
                            id: p.id,
                            leader: p.leader,
                            replicas: p.replicas.into_vec(),
                            isr: p.isr.into_vec(),
                            error: opt_string(p.error),
                            low_offset: p.low_offset.into_option(),
                            high_offset: p.high_offset.into_option(),
                            offsets_error: opt_string(p.offsets_error),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

impl From<ClusterMetadata> for FfiClusterMetadata {
    fn from(m: ClusterMetadata) -> Self {
        FfiClusterMetadata {
            cluster_id: m.cluster_id.into(),
            controller_id: m.controller_id.unwrap_or(-1),
            orig_broker_id: m.orig_broker_id,
            orig_broker_name: m.orig_broker_name.into(),
            brokers: m
                .brokers
                .into_iter()
                .map(|b| FfiBrokerMetadata {
                    id: b.id,
                    host: b.host.into(),
                    port: b.port,
                })
                .collect(),
            topics: m
                .topics
                .into_iter()
                .map(|t| FfiTopicMetadata {
                    name: t.name.into(),
                    error: ropt_string(t.error),
                    partitions: t
                        .partitions
                        .into_iter()
                        .map(|p| FfiPartitionMetadata {
                            id: p.id,
                            leader: p.leader,
                            replicas: RVec::from(p.replicas),
                            isr: RVec::from(p.isr),
                            error: ropt_string(p.error),
                            low_offset: p.low_offset.into(),
                            high_offset: p.high_offset.into(),
                            offsets_error: ropt_string(p.offsets_error),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_crosses_the_boundary_unchanged() {
        let m = ClusterMetadata {
            cluster_id: "C1".into(),
            controller_id: Some(1),
            orig_broker_id: 1,
            orig_broker_name: "127.0.0.1:9092/1".into(),
            brokers: vec![BrokerMetadata {
                id: 1,
                host: "127.0.0.1".into(),
                port: 9092,
            }],
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
                        high_offset: Some(10),
                        offsets_error: None,
                    },
                    PartitionMetadata {
                        id: 1,
                        leader: -1,
                        error: Some("Broker: Leader not available".into()),
                        offsets_error: Some("timed out".into()),
                        ..Default::default()
                    },
                ],
            }],
        };
        let back = ClusterMetadata::from(FfiClusterMetadata::from(m.clone()));
        assert_eq!(back, m);
        let unknown = ClusterMetadata {
            controller_id: None,
            ..m
        };
        let ffi = FfiClusterMetadata::from(unknown.clone());
        assert_eq!(ffi.controller_id, -1);
        assert_eq!(ClusterMetadata::from(ffi), unknown);
    }
}
