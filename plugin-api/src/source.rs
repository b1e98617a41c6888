//! Data sources: [`DataSource`] and [`Reader`] are what a plugin implements;
//! [`Source`], [`SourceReader`] and [`ReaderSeq`] are what users call.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, ROption, RResult, RStr, RString, RVec},
};

use crate::{
    error::Error,
    ffi::{
        FfiClusterMetadata, FfiDataSource, FfiDataSource_TO, FfiGroupInfo, FfiGroupQuery,
        FfiGroupRow, FfiGroupStatus, FfiKeyValue, FfiMessageGroup, FfiReader, FfiReader_TO,
        FfiReaderBox, FfiReaderProgress, FfiReplayed, FfiResult, FfiScopedGroupInfo, FfiSourceArc,
    },
    metadata::ClusterMetadata,
    module::catch_panic,
    record::{GroupInfo, GroupStatus, Message, MessageGroup},
};

/// Options of one reader.
///
/// ```
/// let opts = pseidon_plugin_api::ReaderOptions::default().group_id("my-group");
/// assert_eq!(opts.overrides(), &[("kafka.group.id".to_string(), "my-group".to_string())]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReaderOptions {
    overrides: Vec<(String, String)>,
}

impl ReaderOptions {
    /// Replaces conf key `key` (as written in the conf, e.g. `kafka.group.id`) for this reader.
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.overrides.retain(|(k, _)| k != key);
        self.overrides.push((key.to_string(), value.to_string()));
        self
    }

    /// Reads in consumer group `group` instead of the conf's `kafka.group.id`.
    pub fn group_id(self, group: &str) -> Self {
        self.set("kafka.group.id", group)
    }

    /// The conf keys this reader replaces.
    pub fn overrides(&self) -> &[(String, String)] {
        &self.overrides
    }
}

/// Which tracked groups to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupFilter {
    /// Only groups of this status.
    pub status: Option<GroupStatus>,
    /// Only groups of this topic.
    pub topic: Option<String>,
    /// Only groups of this consumer group (`group.id`).
    pub consumer_group: Option<String>,
    /// Only groups whose status changed at or after this instant (ms since the epoch).
    pub updated_since_ms: Option<i64>,
}

impl GroupFilter {
    /// True if `g` passes the filter.
    ///
    /// ```
    /// # use pseidon_plugin_api::{GroupFilter, GroupInfo, GroupStatus};
    /// let f = GroupFilter { updated_since_ms: Some(100), ..Default::default() };
    /// let g = GroupInfo { id: "t:0:0:9".into(), topic: "t".into(), partition: 0,
    ///     min_offset: 0, max_offset: 9, status: GroupStatus::Done, attempt: 1,
    ///     updated_ms: 99, cluster_id: String::new(), consumer_group: String::new(),
    ///     topic_id: String::new(), messages: Some(10), reason: None, retry_at_ms: None,
    ///     parent: None };
    /// assert!(!f.matches(&g));
    /// assert!(f.matches(&GroupInfo { updated_ms: 100, ..g }));
    /// ```
    pub fn matches(&self, g: &GroupInfo) -> bool {
        self.status.is_none_or(|s| s == g.status)
            && self.topic.as_deref().is_none_or(|t| t == g.topic)
            && self
                .consumer_group
                .as_deref()
                .is_none_or(|c| c == g.consumer_group)
            && self.updated_since_ms.is_none_or(|t| g.updated_ms >= t)
    }
}

/// What [`Source::replay`] did to a message group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// The group's status before: `done` (now `ready`: the next reader of its topic
    /// delivers it again), or `ready`/`run` (unchanged: unfinished groups are replayed
    /// by the next reader anyway).
    pub previous: GroupStatus,
    /// The group's row now. Its `attempt` counts the times it was handed out: the
    /// replay is delivered as attempt `attempt + 1`.
    pub group: GroupInfo,
}

impl From<FfiReplayed> for Replayed {
    fn from(r: FfiReplayed) -> Self {
        Replayed {
            previous: r.previous.into(),
            group: r.row.into(),
        }
    }
}

impl From<Replayed> for FfiReplayed {
    fn from(r: Replayed) -> Self {
        FfiReplayed {
            previous: r.previous.to_ffi(),
            row: r.group.into(),
        }
    }
}

/// How far a reader got (see [`SourceReader::progress`]).
///
/// ```
/// let p = pseidon_plugin_api::ReaderProgress {
///     assignment_known: true,
///     assigned_partitions: 3,
///     partitions_at_end: 3,
/// };
/// assert!(p.all_at_end());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReaderProgress {
    /// Whether the consumer group assigned the reader its partitions and no rebalance
    /// is under way: false while the reader joins the group (which can take a dead
    /// member's session timeout) and while it replays unfinished groups.
    pub assignment_known: bool,
    /// Partitions assigned to the reader.
    pub assigned_partitions: u32,
    /// Assigned partitions read to their end, every message read from them handed out.
    /// Only counted where the reader was opened with end-of-partition events on (the
    /// Kafka datasource: `kafka.enable.partition.eof=true`); else 0.
    pub partitions_at_end: u32,
}

impl ReaderProgress {
    /// True once the assignment is known and every assigned partition reached its end.
    pub fn all_at_end(&self) -> bool {
        self.assignment_known && self.partitions_at_end >= self.assigned_partitions
    }
}

impl From<FfiReaderProgress> for ReaderProgress {
    fn from(p: FfiReaderProgress) -> Self {
        ReaderProgress {
            assignment_known: p.assignment_known,
            assigned_partitions: p.assigned_partitions,
            partitions_at_end: p.partitions_at_end,
        }
    }
}

impl From<ReaderProgress> for FfiReaderProgress {
    fn from(p: ReaderProgress) -> Self {
        FfiReaderProgress {
            assignment_known: p.assignment_known,
            assigned_partitions: p.assigned_partitions,
            partitions_at_end: p.partitions_at_end,
        }
    }
}

/// What a plugin implements to read message groups.
pub trait Reader: Send + 'static {
    /// The next group, waiting up to `timeout`; `Ok(None)` if none came in time.
    fn next_group(&mut self, timeout: Duration) -> Result<Option<MessageGroup>, Error>;
    /// Commits what is done and leaves the consumer group.
    fn close(&mut self) -> Result<(), Error>;
    /// How far the reader got. The default is an error: a reader that cannot tell.
    fn progress(&self) -> Result<ReaderProgress, Error> {
        Err(Error::other("this reader does not report its progress"))
    }
}

/// What a plugin implements to offer a data source.
pub trait DataSource: Send + Sync + 'static {
    /// The plugin's reader type.
    type Reader: Reader;
    /// Opens a reader subscribed to `topics`, with `options` applied.
    fn open(&self, topics: &[String], options: &ReaderOptions) -> Result<Self::Reader, Error>;
    /// Marks a group done: unknown ids are an error, a done group again is harmless.
    /// An id that more than one consumer group holds unfinished is an error asking
    /// for [`mark_done_in`](Self::mark_done_in).
    fn mark_done(&self, group_id: &str) -> Result<(), Error>;
    /// The tracked groups matching `filter`.
    fn groups(&self, filter: &GroupFilter) -> Result<Vec<GroupInfo>, Error>;
    /// Marks a group of consumer group `consumer_group` done.
    fn mark_done_in(&self, group_id: &str, consumer_group: &str) -> Result<(), Error> {
        let _ = consumer_group;
        self.mark_done(group_id)
    }
    /// Sets a done group (of `consumer_group`, when given) back to `ready`, so that the
    /// next reader of its topic delivers it again as a new attempt, without moving the
    /// consumer group's committed offsets. A `ready`/`run` group is left as it is (it
    /// is replayed anyway); unknown and lost ids are errors. The default: an error.
    fn replay(&self, group_id: &str, consumer_group: Option<&str>) -> Result<Replayed, Error> {
        let _ = consumer_group;
        Err(Error::other(format!(
            "this datasource cannot replay message groups (group `{group_id}`)"
        )))
    }
    /// The cluster's metadata, only of `topic` when given, asked within `timeout`.
    /// The default: an error.
    fn metadata(&self, topic: Option<&str>, timeout: Duration) -> Result<ClusterMetadata, Error> {
        let _ = (topic, timeout);
        Err(Error::other(
            "this datasource does not report cluster metadata",
        ))
    }
    /// Marks a handed-out group (of `consumer_group`, when given) failed with `reason`;
    /// returns its status now (`failed`, or what a datasource does at its last attempt).
    /// The default: an error, "not supported".
    fn mark_failed(
        &self,
        group_id: &str,
        reason: &str,
        consumer_group: Option<&str>,
    ) -> Result<GroupStatus, Error> {
        let _ = (reason, consumer_group);
        Err(Error::other(format!(
            "this datasource cannot mark message groups failed (group `{group_id}`): \
             not supported by this plugin"
        )))
    }
}

struct ReaderAdapter<R> {
    owner: String,
    inner: R,
}

impl<R: Reader> FfiReader for ReaderAdapter<R> {
    fn next_group(&mut self, timeout_ms: u64) -> FfiResult<ROption<FfiMessageGroup>> {
        let inner = &mut self.inner;
        catch_panic(&self.owner, "next_group", || {
            inner.next_group(Duration::from_millis(timeout_ms))
        })
        .map(|g| g.map(MessageGroup::into_ffi).into())
        .map_err(Into::into)
        .into()
    }

    fn close(&mut self) -> FfiResult<()> {
        let inner = &mut self.inner;
        catch_panic(&self.owner, "close", || inner.close())
            .map_err(Into::into)
            .into()
    }

    fn progress(&self) -> FfiResult<FfiReaderProgress> {
        catch_panic(&self.owner, "progress", || self.inner.progress())
            .map(FfiReaderProgress::from)
            .map_err(Into::into)
            .into()
    }
}

struct SourceAdapter<T> {
    owner: String,
    inner: T,
}

impl<T: DataSource> FfiDataSource for SourceAdapter<T> {
    fn open(&self, topics: RVec<RString>, overrides: RVec<FfiKeyValue>) -> FfiResult<FfiReaderBox> {
        if let Some(call) = crate::source_ext::Call::parse(&topics, &overrides) {
            let outcome = catch_panic(&self.owner, call.what(), || call.run(&self.inner));
            return RResult::ROk(FfiReader_TO::from_value(
                crate::source_ext::Answer::new(outcome),
                TD_Opaque,
            ));
        }
        let topics: Vec<String> = topics.into_iter().map(RString::into_string).collect();
        let mut options = ReaderOptions::default();
        for kv in overrides {
            options = options.set(kv.key.as_str(), kv.value.as_str());
        }
        catch_panic(&self.owner, "open", || self.inner.open(&topics, &options))
            .map(|reader| {
                FfiReader_TO::from_value(
                    ReaderAdapter {
                        owner: self.owner.clone(),
                        inner: reader,
                    },
                    TD_Opaque,
                )
            })
            .map_err(Into::into)
            .into()
    }

    fn mark_done(&self, group_id: RStr<'_>) -> FfiResult<()> {
        catch_panic(&self.owner, "mark_done", || {
            self.inner.mark_done(group_id.as_str())
        })
        .map_err(Into::into)
        .into()
    }

    fn groups(
        &self,
        status: ROption<FfiGroupStatus>,
        topic: ROption<RStr<'_>>,
    ) -> FfiResult<RVec<FfiGroupInfo>> {
        let filter = GroupFilter {
            status: status.into_option().map(GroupStatus::from),
            topic: topic.into_option().map(|t| t.to_string()),
            consumer_group: None,
            updated_since_ms: None,
        };
        catch_panic(&self.owner, "groups", || self.inner.groups(&filter))
            .map(|v| v.into_iter().map(FfiGroupInfo::from).collect())
            .map_err(Into::into)
            .into()
    }

    fn groups_scoped(
        &self,
        status: ROption<FfiGroupStatus>,
        topic: ROption<RStr<'_>>,
        consumer_group: ROption<RStr<'_>>,
    ) -> FfiResult<RVec<FfiScopedGroupInfo>> {
        let filter = GroupFilter {
            status: status.into_option().map(GroupStatus::from),
            topic: topic.into_option().map(|t| t.to_string()),
            consumer_group: consumer_group.into_option().map(|g| g.to_string()),
            updated_since_ms: None,
        };
        catch_panic(&self.owner, "groups", || self.inner.groups(&filter))
            .map(|v| v.into_iter().map(FfiScopedGroupInfo::from).collect())
            .map_err(Into::into)
            .into()
    }

    fn groups_query(&self, query: FfiGroupQuery) -> FfiResult<RVec<FfiGroupRow>> {
        let filter = GroupFilter {
            status: query.status.into_option().map(GroupStatus::from),
            topic: query.topic.into_option().map(RString::into_string),
            consumer_group: query.consumer_group.into_option().map(RString::into_string),
            updated_since_ms: query.updated_since_ms.into_option(),
        };
        catch_panic(&self.owner, "groups", || self.inner.groups(&filter))
            // Whatever the implementation made of the filter, only matching rows pass.
            .map(|v| {
                v.into_iter()
                    .filter(|g| filter.matches(g))
                    .map(FfiGroupRow::from)
                    .collect()
            })
            .map_err(Into::into)
            .into()
    }

    fn replay(
        &self,
        group_id: RStr<'_>,
        consumer_group: ROption<RStr<'_>>,
    ) -> FfiResult<FfiReplayed> {
        catch_panic(&self.owner, "replay", || {
            self.inner.replay(
                group_id.as_str(),
                consumer_group.into_option().map(|g| g.as_str()),
            )
        })
        .map(FfiReplayed::from)
        .map_err(Into::into)
        .into()
    }

    fn metadata(&self, topic: ROption<RStr<'_>>, timeout_ms: u64) -> FfiResult<FfiClusterMetadata> {
        catch_panic(&self.owner, "metadata", || {
            self.inner.metadata(
                topic.into_option().map(|t| t.as_str()),
                Duration::from_millis(timeout_ms),
            )
        })
        .map(FfiClusterMetadata::from)
        .map_err(Into::into)
        .into()
    }

    fn mark_done_in(&self, group_id: RStr<'_>, consumer_group: RStr<'_>) -> FfiResult<()> {
        catch_panic(&self.owner, "mark_done_in", || {
            self.inner
                .mark_done_in(group_id.as_str(), consumer_group.as_str())
        })
        .map_err(Into::into)
        .into()
    }
}

/// A data source, as users see it. Cheap to clone; safe to share between threads.
///
/// ```no_run
/// # use std::time::Duration;
/// # fn demo(registry: pseidon_plugin_api::Registry) -> Result<(), pseidon_plugin_api::Error> {
/// let source = registry.reg_get_wait_source("pseidon.kafka.util.datasource", Duration::from_secs(5))?;
/// let mut reader = source.reader(&["test"], Default::default())?;
/// while let Some(group) = reader.next_group(Duration::from_secs(1))? {
///     for msg in group.messages() {
///         println!("{:?}", msg.value());
///     }
///     source.mark_done(group.id())?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Source {
    inner: FfiSourceArc,
}

impl Source {
    pub(crate) fn from_impl(owner: &str, source: impl DataSource) -> Self {
        let adapter = SourceAdapter {
            owner: owner.to_string(),
            inner: source,
        };
        Source {
            inner: RArc::new(FfiDataSource_TO::from_value(adapter, TD_Opaque)),
        }
    }

    pub(crate) fn from_ffi(inner: FfiSourceArc) -> Self {
        Source { inner }
    }

    pub(crate) fn into_ffi(self) -> FfiSourceArc {
        self.inner
    }

    /// Opens a reader of message groups on `topics`.
    pub fn reader(&self, topics: &[&str], options: ReaderOptions) -> Result<SourceReader, Error> {
        let topics: RVec<RString> = topics.iter().map(|t| RString::from(*t)).collect();
        let overrides: RVec<FfiKeyValue> = options
            .overrides
            .iter()
            .map(|(k, v)| FfiKeyValue {
                key: k.as_str().into(),
                value: v.as_str().into(),
            })
            .collect();
        let inner = self.inner.open(topics, overrides).into_result()?;
        Ok(SourceReader {
            inner,
            closed: false,
        })
    }

    /// The original's lazy `reader-seq`: an iterator over the messages of `topics`,
    /// blocking until messages arrive. Mark groups done with [`Source::mark_done`]
    /// or [`ReaderSeq::mark_done`].
    pub fn reader_seq(&self, topics: &[&str]) -> Result<ReaderSeq, Error> {
        Ok(ReaderSeq {
            reader: self.reader(topics, ReaderOptions::default())?,
            source: self.clone(),
            buffered: VecDeque::new(),
            idle_timeout: None,
        })
    }

    /// Marks a message group done. An unknown id is an error; marking a done group
    /// again is harmless.
    pub fn mark_done(&self, group_id: &str) -> Result<(), Error> {
        self.inner
            .mark_done(RStr::from_str(group_id))
            .into_result()
            .map_err(Error::from)
    }

    /// Marks a message group of consumer group `consumer_group` done (for an id that
    /// more than one consumer group tracks).
    pub fn mark_done_in(&self, group_id: &str, consumer_group: &str) -> Result<(), Error> {
        self.inner
            .mark_done_in(RStr::from_str(group_id), RStr::from_str(consumer_group))
            .into_result()
            .map_err(Error::from)
    }

    /// The tracked groups matching `filter`, with the cluster, consumer group and topic
    /// incarnation each belongs to, and their message counts (`None` from a plugin built
    /// before pseidon-plugin-api 0.3.0).
    pub fn groups(&self, filter: &GroupFilter) -> Result<Vec<GroupInfo>, Error> {
        if let Some(rows) = crate::source_ext::groups(&self.inner, filter)? {
            return Ok(rows);
        }
        // A plugin before 0.3.1: the four statuses of 0.3.0 only.
        let status = match filter.status {
            None => None,
            Some(
                s @ (GroupStatus::Ready | GroupStatus::Run | GroupStatus::Done | GroupStatus::Lost),
            ) => Some(s.to_ffi()),
            Some(_) => return Ok(Vec::new()),
        };
        let query = FfiGroupQuery {
            status: status.into(),
            topic: filter.topic.as_deref().map(RString::from).into(),
            consumer_group: filter.consumer_group.as_deref().map(RString::from).into(),
            updated_since_ms: filter.updated_since_ms.into(),
        };
        let v = self.inner.groups_query(query).into_result()?;
        Ok(v.into_iter().map(GroupInfo::from).collect())
    }

    /// Marks a message group handed out by a reader failed, with `reason` (logged and
    /// recorded, secrets scrubbed): the datasource hands it out again after a backoff;
    /// at its last attempt (`pseidon-kafka.max-attempts`) it splits a group of more than
    /// one message in two halves, and dead-letters a group of one. Returns the group's
    /// status now. `consumer_group` says whose group, when more than one consumer group
    /// tracks the id. A plugin built before pseidon-plugin-api 0.3.1: an error, "not
    /// supported by this plugin".
    pub fn mark_failed(
        &self,
        group_id: &str,
        reason: &str,
        consumer_group: Option<&str>,
    ) -> Result<GroupStatus, Error> {
        crate::source_ext::mark_failed(&self.inner, group_id, reason, consumer_group)
    }

    /// Delivers message group `group_id` again: a done group goes back to `ready`, and
    /// the next reader opened on its topic (in its consumer group) hands it out before
    /// new data, as a new attempt; the committed offsets of the consumer group do not
    /// move. A `ready` or `run` group is left as it is (the next reader replays it
    /// anyway). `consumer_group` says whose group, when more than one consumer group
    /// tracks the id. An unknown id, or a lost group (its messages are gone), is an error.
    ///
    /// The store may be held by a running reader of another process: then this is an
    /// error naming the status database, as for [`Source::mark_done`].
    pub fn replay(&self, group_id: &str, consumer_group: Option<&str>) -> Result<Replayed, Error> {
        if let Some(r) = crate::source_ext::replay(&self.inner, group_id, consumer_group)? {
            return Ok(r);
        }
        self.inner
            .replay(
                RStr::from_str(group_id),
                consumer_group.map(RStr::from_str).into(),
            )
            .into_result()
            .map(Replayed::from)
            .map_err(Error::from)
    }

    /// The cluster's brokers, and its topics (only `topic`, when given) with their
    /// partitions, leaders, replicas, in-sync replicas and watermarks, asked of the
    /// cluster within `timeout`.
    pub fn metadata(
        &self,
        topic: Option<&str>,
        timeout: Duration,
    ) -> Result<ClusterMetadata, Error> {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.inner
            .metadata(topic.map(RStr::from_str).into(), timeout_ms)
            .into_result()
            .map(ClusterMetadata::from)
            .map_err(Error::from)
    }
}

/// A reader of message groups. Dropping it leaves the consumer group; prefer
/// [`SourceReader::close`] to see errors.
pub struct SourceReader {
    inner: FfiReaderBox,
    closed: bool,
}

impl SourceReader {
    /// The next message group, waiting up to `timeout`; `Ok(None)` if none came.
    pub fn next_group(&mut self, timeout: Duration) -> Result<Option<MessageGroup>, Error> {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        match self.inner.next_group(timeout_ms) {
            RResult::ROk(g) => Ok(g.into_option().map(MessageGroup::from_ffi)),
            RResult::RErr(e) => Err(e.into()),
        }
    }

    /// How far the reader got: whether its partitions are assigned, how many, and how
    /// many it read to their end. An error from a plugin that cannot tell (one built
    /// before pseidon-plugin-api 0.2.1).
    pub fn progress(&self) -> Result<ReaderProgress, Error> {
        self.inner
            .progress()
            .into_result()
            .map(ReaderProgress::from)
            .map_err(Error::from)
    }

    /// Commits what is done and leaves the consumer group.
    pub fn close(mut self) -> Result<(), Error> {
        self.closed = true;
        self.inner.close().into_result().map_err(Error::from)
    }
}

impl Drop for SourceReader {
    fn drop(&mut self) {
        if !self.closed {
            let _best_effort = self.inner.close();
        }
    }
}

/// An iterator over messages, group after group (see [`Source::reader_seq`]).
pub struct ReaderSeq {
    reader: SourceReader,
    source: Source,
    buffered: VecDeque<Message>,
    idle_timeout: Option<Duration>,
}

impl ReaderSeq {
    /// Ends the iteration once no message arrived for `idle` (by default it waits forever).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = Some(idle);
        self
    }

    /// Marks a message group done.
    pub fn mark_done(&self, group_id: &str) -> Result<(), Error> {
        self.source.mark_done(group_id)
    }

    /// Closes the underlying reader.
    pub fn close(self) -> Result<(), Error> {
        self.reader.close()
    }
}

impl Iterator for ReaderSeq {
    type Item = Result<Message, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let start = Instant::now();
        loop {
            if let Some(m) = self.buffered.pop_front() {
                return Some(Ok(m));
            }
            let wait = match self.idle_timeout {
                Some(idle) => {
                    let left = idle.saturating_sub(start.elapsed());
                    if left.is_zero() {
                        return None;
                    }
                    left.min(Duration::from_secs(1))
                }
                None => Duration::from_secs(1),
            };
            match self.reader.next_group(wait) {
                Ok(Some(group)) => self.buffered.extend(group.into_messages()),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
