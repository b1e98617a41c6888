//! The wire format between the host and its plugins: `#[repr(C)]` types and
//! `#[sabi_trait]` trait objects checked by abi_stable at load time.
//!
//! Users do not need this module: the idiomatic types of the crate root wrap it.
//! Layout rules: fields and methods are only ever added after the one marked
//! `#[sabi(last_prefix_field)]`, so a newer plugin still loads into an older host.

// The `#[sabi_trait]` expansion has impls rustc flags as non-local.
#![allow(non_local_definitions)]

use abi_stable::{
    StableAbi, sabi_trait,
    std_types::{RArc, RBox, ROption, RResult, RSlice, RStr, RString, RVec, Tuple2},
};

pub use crate::error::FfiError;

/// Result type of every call across the boundary.
pub type FfiResult<T> = RResult<T, FfiError>;

// ---------------------------------------------------------------- conf and logging

/// The TOML type a conf value had in the file.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum FfiConfKind {
    String,
    Integer,
    Float,
    Boolean,
    Datetime,
    Array,
    Table,
}

/// One conf key (tables flattened to dotted names) and its value as text.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct FfiConfEntry {
    /// The dotted key, e.g. `kafka.bootstrap.servers`.
    pub key: RString,
    /// The TOML type of the value.
    pub kind: FfiConfKind,
    /// Strings as they are; other values in their TOML form.
    pub value: RString,
}

/// Log levels, as in the `log` crate.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum FfiLogLevel {
    Error = 1,
    Warn,
    Info,
    Debug,
    Trace,
}

/// The host's logging callback: `(level, plugin name, target, message)`.
pub type FfiLogFn = extern "C" fn(FfiLogLevel, RStr<'_>, RStr<'_>, RStr<'_>);

/// Everything a plugin receives at `init`.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiInitContext {
    /// The shared registry.
    pub registry: FfiRegistryArc,
    /// The whole conf, flattened.
    pub conf: RVec<FfiConfEntry>,
    /// Where the host's log goes.
    pub log: extern "C" fn(FfiLogLevel, RStr<'_>, RStr<'_>, RStr<'_>),
    /// The most verbose level the host will print; plugins skip anything below.
    pub max_log_level: FfiLogLevel,
    /// The path the plugin was loaded from.
    pub plugin_path: RString,
}

// ---------------------------------------------------------------- registry

/// What a registry entry is.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum FfiEntryKind {
    Sink,
    Source,
    Processor,
}

/// A registered object.
#[repr(u8)]
#[derive(StableAbi, Clone)]
#[allow(missing_docs)]
pub enum FfiEntry {
    Sink(FfiSinkArc),
    Source(FfiSourceArc),
    Processor(FfiProcessorArc),
}

/// A name, its owner and the kind of its entry.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct FfiRegistration {
    /// The registered name.
    pub name: RString,
    /// Who registered it (a plugin's name, or `host`).
    pub owner: RString,
    /// The kind of entry.
    pub kind: FfiEntryKind,
}

/// The name-keyed registry shared by the host and all plugins.
#[sabi_trait]
pub trait FfiRegistry: Send + Sync {
    /// Registers `entry` under `name` for `owner`; a taken name is an error.
    fn register(&self, name: RStr<'_>, owner: RStr<'_>, entry: FfiEntry) -> FfiResult<()>;
    /// The entry under `name`, if any, without waiting.
    fn get(&self, name: RStr<'_>) -> ROption<FfiEntry>;
    /// The entry under `name`, waiting up to `timeout_ms` for it to be registered.
    fn get_wait(&self, name: RStr<'_>, timeout_ms: u64) -> FfiResult<FfiEntry>;
    /// Every registration, in registration order.
    #[sabi(last_prefix_field)]
    fn list(&self) -> RVec<FfiRegistration>;
}

/// A shared registry object.
pub type FfiRegistryArc = RArc<FfiRegistry_TO<'static, RBox<()>>>;

// ---------------------------------------------------------------- sink

/// A header of an outgoing record.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct FfiHeader<'a> {
    /// Header name.
    pub key: RStr<'a>,
    /// Header value; `None` is a null header.
    pub value: ROption<RSlice<'a, u8>>,
}

/// An outgoing record, borrowed from the caller for the duration of the call.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct FfiRecord<'a> {
    /// Destination topic.
    pub topic: RStr<'a>,
    /// Explicit partition, or a negative number for the partitioner's choice.
    pub partition: i32,
    /// Message key.
    pub key: ROption<RSlice<'a, u8>>,
    /// Message value; `None` is a null value (tombstone).
    pub value: ROption<RSlice<'a, u8>>,
    /// Headers.
    pub headers: RSlice<'a, FfiHeader<'a>>,
}

/// How many records of a batch were accepted, and why the rest were not.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiBatchAccepted {
    /// Delivery id of the first record; the others follow consecutively.
    pub first_id: u64,
    /// How many records, from the first, were accepted.
    pub accepted: u64,
    /// Why record number `accepted` was refused, when not all were accepted.
    pub error: ROption<FfiError>,
}

/// A record the broker did not take.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct FfiDeliveryFailure {
    /// The delivery id `write` returned.
    pub id: u64,
    /// The record's topic.
    pub topic: RString,
    /// The reason.
    pub reason: RString,
}

/// What a flush found.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct FfiFlushReport {
    /// Records acknowledged by the broker since the previous flush.
    pub delivered: u64,
    /// Records that failed since the previous flush.
    pub failed: RVec<FfiDeliveryFailure>,
    /// Records still in flight when the flush returned (timeout).
    pub pending: u64,
}

/// A data sink: writes records, reports their delivery.
#[sabi_trait]
pub trait FfiDataSink: Send + Sync {
    /// Queues records; stops at the first one that cannot be queued.
    fn write_batch(&self, records: RSlice<'_, FfiRecord<'_>>) -> FfiResult<FfiBatchAccepted>;
    /// Waits up to `timeout_ms` for everything queued, and drains the delivery failures.
    #[sabi(last_prefix_field)]
    fn flush(&self, timeout_ms: u64) -> FfiResult<FfiFlushReport>;
    /// [`write_batch`](FfiDataSink::write_batch) with a flush ticket: the accepted
    /// records' deliveries are reported by `flush_ticket(first_id, ..)` only. (Added
    /// in 0.3.0; a sink without tickets refuses with an error saying so.)
    fn write_batch_ticketed(
        &self,
        records: RSlice<'_, FfiRecord<'_>>,
    ) -> FfiResult<FfiBatchAccepted> {
        let _ = records;
        RResult::RErr(FfiError::Other {
            message: NO_TICKETS.into(),
        })
    }
    /// Waits up to `timeout_ms` for the deliveries of ticket `first_id` and reports
    /// them (each once); a ticket with nothing pending any more is closed.
    fn flush_ticket(&self, first_id: u64, timeout_ms: u64) -> FfiResult<FfiFlushReport> {
        let _ = (first_id, timeout_ms);
        RResult::RErr(FfiError::Other {
            message: NO_TICKETS.into(),
        })
    }
    /// Closes ticket `first_id` unflushed: its reports go to `flush`.
    fn release_ticket(&self, first_id: u64) {
        let _ = first_id;
    }
}

const NO_TICKETS: &str = "this datasink has no flush tickets (they came with \
                          pseidon-plugin-api 0.3.0): use write_batch and flush";

/// The capability probe of a datasink, without a change of its vtable (abi_stable refuses
/// a plugin whose vtable has fewer methods than the host's): `flush_ticket(PROBE_TICKET, 0)`
/// answers, from a plugin built with pseidon-plugin-api 0.3.1 or later, `ROk` with
/// `pending == PROBE_TICKET` and the [`SINK_FEATURES`] bits in `delivered`; an older one
/// answers an error (no such ticket).
pub const PROBE_TICKET: u64 = u64::MAX;
/// Feature bit: records may carry a timestamp ([`TIMESTAMP_HEADER`]).
pub const SINK_FEATURE_TIMESTAMPS: u64 = 1;
/// Feature bit: the adapter takes transaction control records ([`CONTROL_TOPIC`]).
pub const SINK_FEATURE_TRANSACTIONS: u64 = 2;
/// The features the datasink adapter of this crate version has.
pub const SINK_FEATURES: u64 = SINK_FEATURE_TIMESTAMPS | SINK_FEATURE_TRANSACTIONS;
/// A `write_batch` of exactly one record to this topic (no Kafka topic name can hold a
/// NUL) is a control call the plugin's adapter answers itself: the key names the
/// operation (`txn.begin`, `txn.abort`, `txn.commit`), the value holds the message
/// group ids (one per line), the [`CONTROL_TIMEOUT_HEADER`] the timeout in ms (decimal);
/// the answer is `accepted` 1, or 0 with the operation's error. Sent only to sinks whose
/// probe has [`SINK_FEATURE_TRANSACTIONS`] (an older plugin would try to write it).
pub const CONTROL_TOPIC: &str = "\u{0}pseidon.control";
/// The header of a control record that holds its timeout in ms.
pub const CONTROL_TIMEOUT_HEADER: &str = "timeout-ms";
/// A record's timestamp crosses the boundary as this header, last of its headers, with
/// the ms since the epoch as 8 bytes big-endian; the plugin's adapter takes it off before
/// its sink sees the record. Sent only to sinks whose probe has [`SINK_FEATURE_TIMESTAMPS`].
pub const TIMESTAMP_HEADER: &str = "pseidon.internal.timestamp-ms";

/// A shared data sink object.
pub type FfiSinkArc = RArc<FfiDataSink_TO<'static, RBox<()>>>;

// ---------------------------------------------------------------- source

/// Status of a message group in the status database.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum FfiGroupStatus {
    Ready,
    Run,
    Done,
    Lost,
}

/// A header of a consumed message.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct FfiOwnedHeader {
    /// Header name.
    pub key: RString,
    /// Header value, `None` for a null header.
    pub value: ROption<RVec<u8>>,
}

/// What all messages of one group share; each message holds it (one reference count),
/// so that a group crosses the boundary, and reaches the user, without being copied.
#[repr(C)]
#[derive(StableAbi, Debug, PartialEq, Eq)]
pub struct FfiGroupMeta {
    /// `topic:partition:min-offset:max-offset`.
    pub id: RString,
    /// Topic.
    pub topic: RString,
    /// Partition.
    pub partition: i32,
}

/// A consumed message.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct FfiMessage {
    /// The group the message belongs to.
    pub group: RArc<FfiGroupMeta>,
    /// Offset in its partition.
    pub offset: i64,
    /// Timestamp in ms since the epoch, if the message has one.
    pub timestamp_ms: ROption<i64>,
    /// Key.
    pub key: ROption<RVec<u8>>,
    /// Value.
    pub value: ROption<RVec<u8>>,
    /// Headers.
    pub headers: RVec<FfiOwnedHeader>,
}

/// A run of consecutive messages of one partition, tracked as one unit.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct FfiMessageGroup {
    /// Id, topic and partition.
    pub meta: RArc<FfiGroupMeta>,
    /// First offset of the group.
    pub min_offset: i64,
    /// Last offset of the group.
    pub max_offset: i64,
    /// 1 the first time the group is handed out, then one more per replay.
    pub attempt: u32,
    /// The messages, in offset order.
    pub messages: RVec<FfiMessage>,
}

/// A row of the status database.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct FfiGroupInfo {
    /// Group id.
    pub id: RString,
    /// Topic.
    pub topic: RString,
    /// Partition.
    pub partition: i32,
    /// First offset.
    pub min_offset: i64,
    /// Last offset.
    pub max_offset: i64,
    /// Status.
    pub status: FfiGroupStatus,
    /// Times handed out.
    pub attempt: u32,
    /// Last status change, ms since the epoch.
    pub updated_ms: i64,
}

/// A row of the status database with what it tracks: the cluster, the consumer group
/// and the incarnation of the topic (empty strings where unknown).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct FfiScopedGroupInfo {
    /// The row.
    pub info: FfiGroupInfo,
    /// Kafka cluster id.
    pub cluster_id: RString,
    /// Consumer group (`group.id`).
    pub consumer_group: RString,
    /// Kafka topic id (base64).
    pub topic_id: RString,
}

/// A key/value pair of strings.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct FfiKeyValue {
    /// Key.
    pub key: RString,
    /// Value.
    pub value: RString,
}

/// Which tracked groups [`FfiDataSource::groups_query`] lists (see `GroupFilter`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct FfiGroupQuery {
    /// Only groups of this status.
    pub status: ROption<FfiGroupStatus>,
    /// Only groups of this topic.
    pub topic: ROption<RString>,
    /// Only groups of this consumer group.
    pub consumer_group: ROption<RString>,
    /// Only groups whose status changed at or after this instant (ms since the epoch).
    pub updated_since_ms: ROption<i64>,
}

/// A row of the status database with its scope and its message count.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct FfiGroupRow {
    /// The row and its scope.
    pub scoped: FfiScopedGroupInfo,
    /// Messages the group held when it was last handed out; `None` where unknown.
    pub messages: ROption<u64>,
}

/// What [`FfiDataSource::replay`] did.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct FfiReplayed {
    /// The group's status before the call.
    pub previous: FfiGroupStatus,
    /// The row after the call.
    pub row: FfiGroupRow,
}

/// A broker of the cluster, as the metadata lists it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct FfiBrokerMetadata {
    /// Broker id.
    pub id: i32,
    /// Host name.
    pub host: RString,
    /// Port.
    pub port: i32,
}

/// A partition of a topic, with its watermarks.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct FfiPartitionMetadata {
    /// Partition id.
    pub id: i32,
    /// Leader broker id (-1 if none).
    pub leader: i32,
    /// Replica broker ids.
    pub replicas: RVec<i32>,
    /// In-sync replica broker ids.
    pub isr: RVec<i32>,
    /// The broker's error for this partition, if any.
    pub error: ROption<RString>,
    /// The low watermark (log start offset), if it could be fetched.
    pub low_offset: ROption<i64>,
    /// The high watermark (offset of the next message), if it could be fetched.
    pub high_offset: ROption<i64>,
    /// Why the watermarks could not be fetched.
    pub offsets_error: ROption<RString>,
}

/// A topic, as the metadata lists it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct FfiTopicMetadata {
    /// Topic name.
    pub name: RString,
    /// The broker's error for this topic, if any.
    pub error: ROption<RString>,
    /// Partitions, by id.
    pub partitions: RVec<FfiPartitionMetadata>,
}

/// The cluster's metadata (what `kcat -L` shows), with each partition's watermarks.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct FfiClusterMetadata {
    /// Kafka cluster id; empty if unknown.
    pub cluster_id: RString,
    /// The controller's broker id, -1 if unknown.
    pub controller_id: i32,
    /// The broker that answered: id.
    pub orig_broker_id: i32,
    /// The broker that answered: `host:port/id`, as librdkafka names it.
    pub orig_broker_name: RString,
    /// Brokers, by id.
    pub brokers: RVec<FfiBrokerMetadata>,
    /// Topics, by name.
    pub topics: RVec<FfiTopicMetadata>,
}

/// A reader of message groups.
#[sabi_trait]
pub trait FfiReader: Send {
    /// The next group, waiting up to `timeout_ms`; `None` when none came in time.
    fn next_group(&mut self, timeout_ms: u64) -> FfiResult<ROption<FfiMessageGroup>>;
    /// Commits what is done and leaves the consumer group.
    #[sabi(last_prefix_field)]
    fn close(&mut self) -> FfiResult<()>;
    /// How far the reader got: its assignment and the partitions read to their end.
    /// (Added in 0.2.1; a plugin without it answers with an error saying so.)
    fn progress(&self) -> FfiResult<FfiReaderProgress> {
        RResult::RErr(FfiError::Other {
            message: "this datasource plugin predates reader progress \
                      (pseidon-plugin-api 0.2.1): it cannot tell its assignment or \
                      whether its partitions reached their end"
                .into(),
        })
    }
}

/// A reader's progress, as it crosses the boundary (see `ReaderProgress`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct FfiReaderProgress {
    /// Whether the consumer group assigned the reader its partitions (and no rebalance
    /// is under way): false while it joins, and while it replays.
    pub assignment_known: bool,
    /// Partitions assigned to the reader.
    pub assigned_partitions: u32,
    /// Assigned partitions read to their end, with every message read handed out.
    pub partitions_at_end: u32,
}

/// An owned reader object.
pub type FfiReaderBox = FfiReader_TO<'static, RBox<()>>;

/// A data source: reads message groups and tracks their status.
#[sabi_trait]
pub trait FfiDataSource: Send + Sync {
    /// Opens a reader subscribed to `topics`; `overrides` replace conf keys for this reader.
    fn open(&self, topics: RVec<RString>, overrides: RVec<FfiKeyValue>) -> FfiResult<FfiReaderBox>;
    /// Marks a group done.
    fn mark_done(&self, group_id: RStr<'_>) -> FfiResult<()>;
    /// The tracked groups, optionally only of one status and one topic.
    #[sabi(last_prefix_field)]
    fn groups(
        &self,
        status: ROption<FfiGroupStatus>,
        topic: ROption<RStr<'_>>,
    ) -> FfiResult<RVec<FfiGroupInfo>>;
    /// The tracked groups with their cluster, consumer group and topic id, optionally
    /// only of one status, one topic and one consumer group. (Added in 0.2.1; a plugin
    /// without it lists its rows unscoped, and cannot filter by consumer group.)
    fn groups_scoped(
        &self,
        status: ROption<FfiGroupStatus>,
        topic: ROption<RStr<'_>>,
        consumer_group: ROption<RStr<'_>>,
    ) -> FfiResult<RVec<FfiScopedGroupInfo>> {
        if consumer_group.is_some() {
            return RResult::RErr(FfiError::Other {
                message: "this datasource plugin predates consumer-group scoping \
                          (pseidon-plugin-api 0.2.1): it cannot list one consumer group"
                    .into(),
            });
        }
        match self.groups(status, topic) {
            RResult::ROk(v) => RResult::ROk(
                v.into_iter()
                    .map(|info| FfiScopedGroupInfo {
                        info,
                        cluster_id: RString::new(),
                        consumer_group: RString::new(),
                        topic_id: RString::new(),
                    })
                    .collect(),
            ),
            RResult::RErr(e) => RResult::RErr(e),
        }
    }
    /// Marks a group of consumer group `consumer_group` done. (Added in 0.2.1.)
    fn mark_done_in(&self, group_id: RStr<'_>, consumer_group: RStr<'_>) -> FfiResult<()> {
        let _ = (group_id, consumer_group);
        RResult::RErr(FfiError::Other {
            message: "this datasource plugin predates consumer-group scoping \
                      (pseidon-plugin-api 0.2.1): it cannot mark a group done in one \
                      consumer group"
                .into(),
        })
    }
    /// The tracked groups matching `query`, with their message counts. (Added in
    /// 0.3.0; a plugin without it lists through `groups_scoped`, without counts, and
    /// `updated_since_ms` is applied to what it lists.)
    fn groups_query(&self, query: FfiGroupQuery) -> FfiResult<RVec<FfiGroupRow>> {
        let FfiGroupQuery {
            status,
            topic,
            consumer_group,
            updated_since_ms,
        } = query;
        let rows = self.groups_scoped(
            status,
            topic.as_ref().map(|t| t.as_rstr()),
            consumer_group.as_ref().map(|g| g.as_rstr()),
        );
        match rows {
            RResult::ROk(v) => RResult::ROk(
                v.into_iter()
                    .filter(|r| {
                        updated_since_ms
                            .into_option()
                            .is_none_or(|since| r.info.updated_ms >= since)
                    })
                    .map(|scoped| FfiGroupRow {
                        scoped,
                        messages: ROption::RNone,
                    })
                    .collect(),
            ),
            RResult::RErr(e) => RResult::RErr(e),
        }
    }
    /// Sets message group `group_id` (of `consumer_group`, when given) back to `ready`,
    /// so that the next reader of its topic delivers it again as a new attempt; the
    /// consumer group's committed offsets do not move. (Added in 0.3.0.)
    fn replay(
        &self,
        group_id: RStr<'_>,
        consumer_group: ROption<RStr<'_>>,
    ) -> FfiResult<FfiReplayed> {
        let _ = (group_id, consumer_group);
        RResult::RErr(FfiError::Other {
            message: "this datasource plugin predates group replay \
                      (pseidon-plugin-api 0.3.0): it cannot replay a message group"
                .into(),
        })
    }
    /// The cluster's brokers, topics (only `topic`, when given) and partitions with
    /// leaders, replicas, in-sync replicas and watermarks, asked within `timeout_ms`.
    /// (Added in 0.3.0.)
    fn metadata(&self, topic: ROption<RStr<'_>>, timeout_ms: u64) -> FfiResult<FfiClusterMetadata> {
        let _ = (topic, timeout_ms);
        RResult::RErr(FfiError::Other {
            message: "this datasource plugin predates cluster metadata \
                      (pseidon-plugin-api 0.3.0): it cannot list brokers and topics"
                .into(),
        })
    }
}

/// A shared data source object.
pub type FfiSourceArc = RArc<FfiDataSource_TO<'static, RBox<()>>>;

// ---------------------------------------------------------------- processor

/// A plugin that runs work of its own under `pseidon run`.
#[sabi_trait]
pub trait FfiProcessor: Send + Sync {
    /// Starts the work (returns once it runs, in threads of its own).
    fn start(&self) -> FfiResult<()>;
    /// Stops the work, waiting up to `timeout_ms`.
    #[sabi(last_prefix_field)]
    fn stop(&self, timeout_ms: u64) -> FfiResult<()>;
    /// Whether the work still runs, ended by itself, or died with an error; `pseidon
    /// run` polls it. Added after the prefix: a plugin built before it has no entry
    /// for it, and the host then sees this default (always running).
    fn status(&self) -> FfiProcessorStatus {
        FfiProcessorStatus::Running
    }
}

/// What [`FfiProcessor::status`] says.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub enum FfiProcessorStatus {
    /// Started and still working (also: not started yet, or stopped by `stop`).
    Running,
    /// The work ended by itself without an error.
    Finished,
    /// The work ended with this error.
    Failed(FfiError),
}

/// A shared processor object.
pub type FfiProcessorArc = RArc<FfiProcessor_TO<'static, RBox<()>>>;

// ---------------------------------------------------------------- observability (0.3.1)

/// What a metric family counts (Prometheus metric types).
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum FfiMetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// One sample of a family: its labels and its value (a histogram's buckets, sum and
/// count; `buckets` is empty for counters and gauges).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct FfiSample {
    /// Label pairs (name, value), without the `plugin` label the host adds.
    pub labels: RVec<Tuple2<RString, RString>>,
    /// A counter's or gauge's value; a histogram's sum.
    pub value: f64,
    /// A histogram's buckets: (upper bound, cumulative count), ascending, without +Inf.
    pub buckets: RVec<Tuple2<f64, u64>>,
    /// A histogram's count of observations.
    pub count: u64,
}

/// One metric family.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct FfiMetricFamily {
    /// Full metric name, e.g. `pseidon_kafka_lag_unread_messages` (counters without `_total`).
    pub name: RString,
    /// One line of help.
    pub help: RString,
    /// The metric type.
    pub kind: FfiMetricKind,
    /// Its samples.
    pub samples: RVec<FfiSample>,
}

/// One readiness check of a plugin (e.g. "the brokers answer").
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct FfiCheck {
    /// What is checked, e.g. `datasink pseidon.kafka.util.datasink: brokers`.
    pub name: RString,
    /// Whether it is ready.
    pub ready: bool,
    /// Why not (or a short state when ready).
    pub detail: RString,
}

/// The functions of the observability extension: a plugin's metrics and readiness.
/// It is not a field of the root module (abi_stable refuses a root module with fewer
/// fields than the host's, so a field added there would refuse every older plugin):
/// the host looks up the symbol `pseidon_plugin_observe_v1` instead, and a plugin
/// without it reports no metrics and no checks. A later addition is a new symbol.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct FfiObserve {
    /// The plugin's metric families now.
    pub metrics: extern "C" fn() -> RVec<FfiMetricFamily>,
    /// The plugin's readiness checks, each waiting at most `timeout_ms`.
    pub readiness: extern "C" fn(u64) -> RVec<FfiCheck>,
}

/// What `pseidon_plugin_observe_v1` returns: the plugin's layout of [`FfiObserve`]
/// (the host checks it against its own with abi_stable before the first call) and the
/// functions.
#[repr(C)]
pub struct FfiObserveExport {
    /// `<FfiObserve as StableAbi>::LAYOUT` as the plugin was compiled.
    pub layout: &'static abi_stable::type_layout::TypeLayout,
    /// The functions.
    pub observe: FfiObserve,
}
