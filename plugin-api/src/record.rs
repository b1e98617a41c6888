//! Records written to a sink, and messages and message groups read from a source.

use abi_stable::std_types::{RArc, ROption, RSlice, RStr, RVec};

use crate::ffi::{
    FfiGroupInfo, FfiGroupMeta, FfiGroupRow, FfiGroupStatus, FfiHeader, FfiMessage,
    FfiMessageGroup, FfiOwnedHeader, FfiRecord, FfiScopedGroupInfo,
};

/// A header of an outgoing [`Record`].
///
/// ```
/// use pseidon_plugin_api::Header;
/// let h = Header::new("trace-id", b"42");
/// assert_eq!(h.key(), "trace-id");
/// assert_eq!(h.value(), Some(&b"42"[..]));
/// ```
#[repr(transparent)]
#[derive(Debug, Clone, Copy)]
pub struct Header<'a>(pub(crate) FfiHeader<'a>);

impl<'a> Header<'a> {
    /// A header with a value.
    pub fn new(key: &'a str, value: &'a [u8]) -> Self {
        Header(FfiHeader {
            key: RStr::from_str(key),
            value: ROption::RSome(RSlice::from_slice(value)),
        })
    }

    /// A header with a null value.
    pub fn null(key: &'a str) -> Self {
        Header(FfiHeader {
            key: RStr::from_str(key),
            value: ROption::RNone,
        })
    }

    /// The header's name.
    pub fn key(&self) -> &'a str {
        self.0.key.as_str()
    }

    /// The header's value.
    pub fn value(&self) -> Option<&'a [u8]> {
        self.0.value.into_option().map(|v| v.as_slice())
    }
}

/// A record to write: a topic and a value, optionally a key, headers and a partition.
/// It borrows its parts, so building one copies nothing.
///
/// ```
/// use pseidon_plugin_api::{Header, Record};
/// let headers = [Header::new("source", b"doc")];
/// let r = Record::new("test", b"test-0").with_key(b"k").with_partition(2).with_headers(&headers);
/// assert_eq!(r.topic(), "test");
/// assert_eq!(r.value(), Some(&b"test-0"[..]));
/// assert_eq!(r.key(), Some(&b"k"[..]));
/// assert_eq!(r.partition(), Some(2));
/// assert_eq!(r.headers().len(), 1);
/// ```
#[repr(transparent)]
#[derive(Debug, Clone, Copy)]
pub struct Record<'a>(pub(crate) FfiRecord<'a>);

impl<'a> Record<'a> {
    /// A record with a value, no key, no headers, any partition.
    pub fn new(topic: &'a str, value: &'a [u8]) -> Self {
        Record(FfiRecord {
            topic: RStr::from_str(topic),
            partition: -1,
            key: ROption::RNone,
            value: ROption::RSome(RSlice::from_slice(value)),
            headers: RSlice::EMPTY,
        })
    }

    /// A record with a null value (a tombstone for compacted topics).
    pub fn tombstone(topic: &'a str, key: &'a [u8]) -> Self {
        Record(FfiRecord {
            topic: RStr::from_str(topic),
            partition: -1,
            key: ROption::RSome(RSlice::from_slice(key)),
            value: ROption::RNone,
            headers: RSlice::EMPTY,
        })
    }

    /// Sets the key.
    pub fn with_key(mut self, key: &'a [u8]) -> Self {
        self.0.key = ROption::RSome(RSlice::from_slice(key));
        self
    }

    /// Makes the value null (a tombstone; with no key, a record of neither key nor value).
    ///
    /// ```
    /// let r = pseidon_plugin_api::Record::new("t", b"").with_null_value();
    /// assert_eq!((r.key(), r.value()), (None, None));
    /// ```
    pub fn with_null_value(mut self) -> Self {
        self.0.value = ROption::RNone;
        self
    }

    /// Sets an explicit partition.
    pub fn with_partition(mut self, partition: i32) -> Self {
        self.0.partition = partition;
        self
    }

    /// Sets the headers.
    pub fn with_headers(mut self, headers: &'a [Header<'a>]) -> Self {
        // SAFETY: `Header` is `repr(transparent)` over `FfiHeader`.
        let raw: &'a [FfiHeader<'a>] = unsafe {
            std::slice::from_raw_parts(headers.as_ptr().cast::<FfiHeader<'a>>(), headers.len())
        };
        self.0.headers = RSlice::from_slice(raw);
        self
    }

    /// The topic.
    pub fn topic(&self) -> &'a str {
        self.0.topic.as_str()
    }

    /// The key, if set.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.0.key.into_option().map(|k| k.as_slice())
    }

    /// The value; `None` for a tombstone.
    pub fn value(&self) -> Option<&'a [u8]> {
        self.0.value.into_option().map(|v| v.as_slice())
    }

    /// The explicit partition, if set.
    pub fn partition(&self) -> Option<i32> {
        (self.0.partition >= 0).then_some(self.0.partition)
    }

    /// The headers.
    pub fn headers(&self) -> &'a [Header<'a>] {
        let raw = self.0.headers.as_slice();
        // SAFETY: `Header` is `repr(transparent)` over `FfiHeader`.
        unsafe { std::slice::from_raw_parts(raw.as_ptr().cast::<Header<'a>>(), raw.len()) }
    }

    pub(crate) fn as_ffi_slice(records: &'a [Record<'a>]) -> RSlice<'a, FfiRecord<'a>> {
        // SAFETY: `Record` is `repr(transparent)` over `FfiRecord`.
        RSlice::from_slice(unsafe {
            std::slice::from_raw_parts(records.as_ptr().cast::<FfiRecord<'a>>(), records.len())
        })
    }

    pub(crate) fn from_ffi_slice(records: RSlice<'a, FfiRecord<'a>>) -> &'a [Record<'a>] {
        let raw = records.as_slice();
        // SAFETY: `Record` is `repr(transparent)` over `FfiRecord`.
        unsafe { std::slice::from_raw_parts(raw.as_ptr().cast::<Record<'a>>(), raw.len()) }
    }
}

/// The status of a message group (see the datasource's state machine: `ready` → `run` →
/// `done`, or `failed` → `ready` again after a backoff, … → `split` / `dead`).
///
/// Not an FFI type: it crosses the plugin boundary as text (the extension calls of
/// `Source::groups` and `Source::mark_failed`, see the crate's `source_ext` module), or as
/// [`FfiGroupStatus`] through the methods of 0.3.0, which know only the first four
/// statuses ([`GroupStatus::to_ffi`] says what the others map to there).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupStatus {
    /// Recorded, to be handed out (again).
    Ready,
    /// Handed out, not done yet.
    Run,
    /// Marked done.
    Done,
    /// Its messages are gone from Kafka.
    Lost,
    /// Marked failed: handed out again after its backoff (`retry_at_ms`).
    Failed,
    /// Replaced by its two halves (rows of their own).
    Split,
    /// One message that failed `max-attempts` times, copied to the dead-letter topic.
    Dead,
}

impl GroupStatus {
    /// Every status, in the order of the state machine.
    pub const ALL: [GroupStatus; 7] = [
        GroupStatus::Ready,
        GroupStatus::Run,
        GroupStatus::Done,
        GroupStatus::Lost,
        GroupStatus::Failed,
        GroupStatus::Split,
        GroupStatus::Dead,
    ];

    /// The status as stored and printed: `ready`, `run`, `done`, `lost`, `failed`,
    /// `split` or `dead`.
    ///
    /// ```
    /// assert_eq!(pseidon_plugin_api::GroupStatus::Done.as_str(), "done");
    /// ```
    pub fn as_str(&self) -> &'static str {
        match self {
            GroupStatus::Ready => "ready",
            GroupStatus::Run => "run",
            GroupStatus::Done => "done",
            GroupStatus::Lost => "lost",
            GroupStatus::Failed => "failed",
            GroupStatus::Split => "split",
            GroupStatus::Dead => "dead",
        }
    }

    /// Parses what [`as_str`](Self::as_str) prints.
    ///
    /// ```
    /// use pseidon_plugin_api::GroupStatus;
    /// assert_eq!(GroupStatus::parse("run"), Some(GroupStatus::Run));
    /// assert_eq!(GroupStatus::parse("dead"), Some(GroupStatus::Dead));
    /// assert_eq!(GroupStatus::parse("later"), None);
    /// ```
    pub fn parse(s: &str) -> Option<Self> {
        GroupStatus::ALL.into_iter().find(|g| g.as_str() == s)
    }

    /// The status as the methods of pseidon-plugin-api 0.3.0 carry it: `failed` as
    /// `ready` (unfinished), `split` and `dead` as `done` (finished: a split group's
    /// messages are carried by its halves, a dead one's by the dead-letter topic).
    ///
    /// ```
    /// use pseidon_plugin_api::{GroupStatus, ffi::FfiGroupStatus};
    /// assert_eq!(GroupStatus::Dead.to_ffi(), FfiGroupStatus::Done);
    /// assert_eq!(GroupStatus::Failed.to_ffi(), FfiGroupStatus::Ready);
    /// ```
    pub fn to_ffi(self) -> FfiGroupStatus {
        match self {
            GroupStatus::Ready | GroupStatus::Failed => FfiGroupStatus::Ready,
            GroupStatus::Run => FfiGroupStatus::Run,
            GroupStatus::Done | GroupStatus::Split | GroupStatus::Dead => FfiGroupStatus::Done,
            GroupStatus::Lost => FfiGroupStatus::Lost,
        }
    }

    /// True for the statuses the done-watermark passes: `done`, `dead`, `lost`.
    pub fn is_passable(self) -> bool {
        matches!(
            self,
            GroupStatus::Done | GroupStatus::Dead | GroupStatus::Lost
        )
    }

    /// True for the statuses of a group still to be (re)delivered: `ready`, `run`, `failed`.
    pub fn is_unfinished(self) -> bool {
        matches!(
            self,
            GroupStatus::Ready | GroupStatus::Run | GroupStatus::Failed
        )
    }
}

impl From<FfiGroupStatus> for GroupStatus {
    fn from(s: FfiGroupStatus) -> Self {
        match s {
            FfiGroupStatus::Ready => GroupStatus::Ready,
            FfiGroupStatus::Run => GroupStatus::Run,
            FfiGroupStatus::Done => GroupStatus::Done,
            FfiGroupStatus::Lost => GroupStatus::Lost,
        }
    }
}

impl std::fmt::Display for GroupStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A header of a consumed [`Message`].
#[repr(transparent)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageHeader(FfiOwnedHeader);

impl MessageHeader {
    /// A header (for plugins building messages).
    pub fn new(key: &str, value: Option<Vec<u8>>) -> Self {
        MessageHeader(FfiOwnedHeader {
            key: key.into(),
            value: value.map(RVec::from).into(),
        })
    }

    /// The header's name.
    pub fn key(&self) -> &str {
        self.0.key.as_str()
    }

    /// The header's value.
    pub fn value(&self) -> Option<&[u8]> {
        self.0.value.as_ref().into_option().map(|v| v.as_slice())
    }
}

/// A consumed message: its payload, its position, and the id of its message group.
#[repr(transparent)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message(FfiMessage);

impl Message {
    /// The message's topic.
    pub fn topic(&self) -> &str {
        self.0.group.topic.as_str()
    }

    /// The message's partition.
    pub fn partition(&self) -> i32 {
        self.0.group.partition
    }

    /// The message's offset.
    pub fn offset(&self) -> i64 {
        self.0.offset
    }

    /// The id of the message group the message belongs to: pass it to `mark_done`.
    pub fn group_id(&self) -> &str {
        self.0.group.id.as_str()
    }

    /// The key.
    pub fn key(&self) -> Option<&[u8]> {
        self.0.key.as_ref().into_option().map(|k| k.as_slice())
    }

    /// The value; `None` for a tombstone.
    pub fn value(&self) -> Option<&[u8]> {
        self.0.value.as_ref().into_option().map(|v| v.as_slice())
    }

    /// The timestamp in ms since the epoch, if the message has one.
    pub fn timestamp_ms(&self) -> Option<i64> {
        self.0.timestamp_ms.into_option()
    }

    /// The headers.
    pub fn headers(&self) -> &[MessageHeader] {
        let raw = self.0.headers.as_slice();
        // SAFETY: `MessageHeader` is `repr(transparent)` over `FfiOwnedHeader`.
        unsafe { std::slice::from_raw_parts(raw.as_ptr().cast::<MessageHeader>(), raw.len()) }
    }
}

/// Builder of one message, for plugins that implement a data source.
///
/// ```
/// use pseidon_plugin_api::{MessageGroup, message_group::MessageParts};
/// let parts = MessageParts { offset: 7, timestamp_ms: None, key: None, value: Some(b"v".to_vec()), headers: vec![] };
/// let group = MessageGroup::new("t", 0, 1, vec![parts]);
/// assert_eq!(group.id(), "t:0:7:7");
/// assert_eq!(group.messages()[0].value(), Some(&b"v"[..]));
/// ```
pub mod message_group {
    use super::MessageHeader;

    /// The owned parts of one message.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct MessageParts {
        /// Offset.
        pub offset: i64,
        /// Timestamp, ms since the epoch.
        pub timestamp_ms: Option<i64>,
        /// Key.
        pub key: Option<Vec<u8>>,
        /// Value.
        pub value: Option<Vec<u8>>,
        /// Headers.
        pub headers: Vec<MessageHeader>,
    }
}

/// A message group: consecutive messages of one partition, marked done together.
///
/// It is the very value the plugin built: it crosses the plugin boundary without a copy.
#[repr(transparent)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageGroup(FfiMessageGroup);

impl MessageGroup {
    /// A group of `messages` (non-empty, in offset order) of `topic`/`partition`;
    /// its id is `topic:partition:min-offset:max-offset`.
    pub fn new(
        topic: &str,
        partition: i32,
        attempt: u32,
        messages: Vec<message_group::MessageParts>,
    ) -> Self {
        let min_offset = messages.first().map_or(0, |m| m.offset);
        let max_offset = messages.last().map_or(0, |m| m.offset);
        Self::with_range(topic, partition, min_offset, max_offset, attempt, messages)
    }

    /// A group with an explicit offset range (a replayed group keeps its id even if
    /// some offsets of its range hold no message).
    pub fn with_range(
        topic: &str,
        partition: i32,
        min_offset: i64,
        max_offset: i64,
        attempt: u32,
        messages: Vec<message_group::MessageParts>,
    ) -> Self {
        let meta = RArc::new(FfiGroupMeta {
            id: format!("{topic}:{partition}:{min_offset}:{max_offset}").into(),
            topic: topic.into(),
            partition,
        });
        let messages: Vec<FfiMessage> = messages
            .into_iter()
            .map(|p| FfiMessage {
                group: RArc::clone(&meta),
                offset: p.offset,
                timestamp_ms: p.timestamp_ms.into(),
                key: p.key.map(RVec::from).into(),
                value: p.value.map(RVec::from).into(),
                headers: p.headers.into_iter().map(|h| h.0).collect(),
            })
            .collect();
        MessageGroup(FfiMessageGroup {
            meta,
            min_offset,
            max_offset,
            attempt,
            messages: messages.into(),
        })
    }

    /// `topic:partition:min-offset:max-offset`.
    pub fn id(&self) -> &str {
        self.0.meta.id.as_str()
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        self.0.meta.topic.as_str()
    }

    /// The partition.
    pub fn partition(&self) -> i32 {
        self.0.meta.partition
    }

    /// First offset.
    pub fn min_offset(&self) -> i64 {
        self.0.min_offset
    }

    /// Last offset.
    pub fn max_offset(&self) -> i64 {
        self.0.max_offset
    }

    /// 1 the first time the group is handed out, one more for each replay.
    pub fn attempt(&self) -> u32 {
        self.0.attempt
    }

    /// The messages, in offset order.
    pub fn messages(&self) -> &[Message] {
        let raw = self.0.messages.as_slice();
        // SAFETY: `Message` is `repr(transparent)` over `FfiMessage`.
        unsafe { std::slice::from_raw_parts(raw.as_ptr().cast::<Message>(), raw.len()) }
    }

    /// The messages, by value.
    pub fn into_messages(self) -> Vec<Message> {
        self.0.messages.into_iter().map(Message).collect()
    }

    pub(crate) fn into_ffi(self) -> FfiMessageGroup {
        self.0
    }

    pub(crate) fn from_ffi(group: FfiMessageGroup) -> Self {
        MessageGroup(group)
    }
}

/// A row of the status database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// Group id.
    pub id: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// First offset.
    pub min_offset: i64,
    /// Last offset.
    pub max_offset: i64,
    /// Status.
    pub status: GroupStatus,
    /// Times handed out.
    pub attempt: u32,
    /// Last status change, ms since the epoch.
    pub updated_ms: i64,
    /// The Kafka cluster the group was read from (its cluster id); empty when unknown
    /// (rows from before tracking was scoped, or from an older plugin).
    pub cluster_id: String,
    /// The consumer group (`group.id`) that read it; empty when unknown.
    pub consumer_group: String,
    /// The incarnation of the topic (Kafka's topic id, base64); empty when unknown.
    pub topic_id: String,
    /// How many messages the group held when it was last handed out (fewer than its
    /// offset range where offsets hold no message: compaction, transaction markers);
    /// `None` when unknown (rows from an older plugin).
    pub messages: Option<u64>,
    /// The reason of the last failure (`Source::mark_failed`), secrets scrubbed; `None`
    /// if the group never failed (or from a plugin before 0.3.1).
    pub reason: Option<String>,
    /// When a `failed` group is handed out again, ms since the epoch.
    pub retry_at_ms: Option<i64>,
    /// The id of the `split` group this one is a half of.
    pub parent: Option<String>,
}

impl From<FfiGroupInfo> for GroupInfo {
    fn from(g: FfiGroupInfo) -> Self {
        GroupInfo {
            id: g.id.into_string(),
            topic: g.topic.into_string(),
            partition: g.partition,
            min_offset: g.min_offset,
            max_offset: g.max_offset,
            status: g.status.into(),
            attempt: g.attempt,
            updated_ms: g.updated_ms,
            cluster_id: String::new(),
            consumer_group: String::new(),
            topic_id: String::new(),
            messages: None,
            reason: None,
            retry_at_ms: None,
            parent: None,
        }
    }
}

impl From<FfiGroupRow> for GroupInfo {
    fn from(r: FfiGroupRow) -> Self {
        GroupInfo {
            messages: r.messages.into_option(),
            ..GroupInfo::from(r.scoped)
        }
    }
}

impl From<GroupInfo> for FfiGroupRow {
    fn from(g: GroupInfo) -> Self {
        FfiGroupRow {
            messages: g.messages.into(),
            scoped: g.into(),
        }
    }
}

impl From<FfiScopedGroupInfo> for GroupInfo {
    fn from(g: FfiScopedGroupInfo) -> Self {
        GroupInfo {
            cluster_id: g.cluster_id.into_string(),
            consumer_group: g.consumer_group.into_string(),
            topic_id: g.topic_id.into_string(),
            ..GroupInfo::from(g.info)
        }
    }
}

impl From<GroupInfo> for FfiScopedGroupInfo {
    fn from(mut g: GroupInfo) -> Self {
        FfiScopedGroupInfo {
            cluster_id: std::mem::take(&mut g.cluster_id).into(),
            consumer_group: std::mem::take(&mut g.consumer_group).into(),
            topic_id: std::mem::take(&mut g.topic_id).into(),
            info: g.into(),
        }
    }
}

impl From<GroupInfo> for FfiGroupInfo {
    fn from(g: GroupInfo) -> Self {
        FfiGroupInfo {
            id: g.id.into(),
            topic: g.topic.into(),
            partition: g.partition,
            min_offset: g.min_offset,
            max_offset: g.max_offset,
            status: g.status.to_ffi(),
            attempt: g.attempt,
            updated_ms: g.updated_ms,
        }
    }
}
