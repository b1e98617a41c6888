//! [`PlainReader`], a plain read ([`plain_read`](crate::config::plain_read), the reader
//! options `pseidon-kafka.assign`, `pseidon-kafka.start-offset`,
//! `pseidon-kafka.stop-timestamp-ms`; `pseidon consume -p/-o`): the reader assigns
//! itself the partitions, as kcat does, from a start offset; it joins no consumer group,
//! records nothing in the status database and commits nothing. Its groups carry the
//! usual ids (`topic:partition:min:max`) but are not tracked: they cannot be marked done.
//!
//! At open every start offset is resolved to a number (so a bad partition or topic
//! fails at once, naming it): the partitions from the metadata (`assign` names ones
//! that must exist), then per partition its watermarks, and for `s@TS`
//! `offsets_for_times`, for `stored` the consumer group's committed offset.
//!
//! Groups: the messages polled in one go are split per partition, each at most
//! `group-max-messages` / `group-max-bytes`; no group waits for more.
//!
//! Ends: with `kafka.enable.partition.eof=true` an end-of-partition event marks its
//! partition at its end (rdkafka names only the partition number: with several topics
//! the candidates are told apart by comparing where the reader stands in each with the
//! cached high watermark); a message at or after the stop timestamp is not handed out,
//! and its partition is paused and counts as at its end. `progress` counts a partition
//! at its end only while none of its messages wait to be handed out.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::{Duration, Instant},
};

use pseidon_plugin_api::{
    Error, MessageGroup, Reader, ReaderOptions, ReaderProgress, message_group::MessageParts,
};
use rdkafka::{
    Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    message::Message as _,
};

use crate::{
    config::{ASSIGN, PlainRead, Role, START_OFFSET, StartOffset, reader_max_messages},
    consume_error::ConsumeErrors,
    error::kafka_err,
    kafka_log::secret_values,
    message::{copy_message, parts_bytes},
    progress::{Budget, cached_watermarks},
    replay::ReplayCtx,
    state::SourceState,
};

/// How long each metadata, watermark or offset request at open may take.
const META_TIMEOUT: Duration = Duration::from_secs(10);

type Tp = (String, i32);

/// A plain read (module docs).
pub struct PlainReader {
    consumer: BaseConsumer<ReplayCtx>,
    topics: Vec<String>,
    assignment: Vec<Tp>,
    /// Per partition: the offset after the last message taken, else its start.
    next: HashMap<Tp, i64>,
    /// Partitions at their end (end-of-partition events), until a message comes.
    at_end: HashSet<Tp>,
    /// Partitions that reached the stop timestamp (paused).
    stopped: HashSet<Tp>,
    stop_timestamp_ms: Option<i64>,
    queue: VecDeque<MessageGroup>,
    group_max_messages: usize,
    group_max_bytes: usize,
    budget: Budget,
    errors: ConsumeErrors,
    closed: bool,
}

impl PlainReader {
    /// Opens a plain read of `topics` as `plain` says: resolves the start offsets and
    /// assigns the partitions.
    pub(crate) fn open(
        state: &SourceState,
        topics: &[String],
        options: &ReaderOptions,
        plain: PlainRead,
    ) -> Result<PlainReader, Error> {
        if topics.is_empty() || topics.iter().any(|t| t.trim().is_empty()) {
            return Err(Error::other(
                "the datasource needs at least one topic, and no empty topic name",
            ));
        }
        let config = &state.config;
        let consumer: BaseConsumer<ReplayCtx> = config
            .client_config(Role::Plain, options.overrides())?
            .create_with_context(ReplayCtx::new(secret_values(config)))
            .map_err(|e| kafka_err("creating the consumer of a plain read", &e))?;
        let group = options
            .overrides()
            .iter()
            .rev()
            .find(|(k, _)| k == "kafka.group.id")
            .map(|(_, v)| v.as_str())
            .or_else(|| config.kafka_prop("group.id"))
            .filter(|g| !g.trim().is_empty());
        let topics = &super::patterns::expand(&consumer, topics)?;
        if plain.start == StartOffset::Stored && group.is_none() {
            return Err(Error::config(
                START_OFFSET,
                "`stored` reads from the committed offsets of a consumer group: set \
                 kafka.group.id (or ReaderOptions::group_id)",
            ));
        }
        let mut assignment = Vec::new();
        for topic in topics {
            let count = partition_count(&consumer, topic)?;
            match &plain.partitions {
                None => assignment.extend((0..count).map(|p| (topic.clone(), p))),
                Some(wanted) => {
                    for &p in wanted {
                        if p >= count {
                            return Err(Error::config(
                                ASSIGN,
                                format!(
                                    "partition {p} of topic `{topic}` does not exist: it has {count} partition(s) (0-{})",
                                    count - 1
                                ),
                            ));
                        }
                        assignment.push((topic.clone(), p));
                    }
                }
            }
        }
        let next = resolve_starts(&consumer, &assignment, plain.start)?;
        let mut tpl = TopicPartitionList::new();
        for tp in &assignment {
            let start = next.get(tp).copied().unwrap_or(0);
            tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(start))
                .map_err(|e| kafka_err("plain read: building the assignment", &e))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| kafka_err(format!("plain read of {topics:?}: assign"), &e))?;
        log::info!(
            "plain read of {} partition(s) of {topics:?} (no consumer group, nothing tracked)",
            assignment.len()
        );
        let settings = &config.settings;
        Ok(PlainReader {
            consumer,
            topics: topics.to_vec(),
            assignment,
            next,
            at_end: HashSet::new(),
            stopped: HashSet::new(),
            stop_timestamp_ms: plain.stop_timestamp_ms,
            queue: VecDeque::new(),
            group_max_messages: settings.group_max_messages,
            group_max_bytes: settings.group_max_bytes,
            budget: Budget::new(reader_max_messages(options.overrides())?),
            errors: ConsumeErrors::new(settings.consume_error_timeout_ms),
            closed: false,
        })
    }

    fn what(&self) -> String {
        format!("plain read of {:?}", self.topics)
    }

    /// An end-of-partition event of partition number `partition`.
    fn reached_end(&mut self, partition: i32) {
        let candidates: Vec<Tp> = self
            .assignment
            .iter()
            .filter(|tp| tp.1 == partition && !self.at_end.contains(*tp))
            .cloned()
            .collect();
        let single = candidates.len() == 1;
        for tp in candidates {
            let at_high = || {
                let next = self.next.get(&tp).copied().unwrap_or(0);
                cached_watermarks(&self.consumer, &tp.0, tp.1).is_some_and(|(_, high)| next >= high)
            };
            if single || at_high() {
                log::debug!("plain read: {}/{} at its end", tp.0, tp.1);
                self.at_end.insert(tp);
            }
        }
    }

    /// Takes a burst of polled messages into groups, in the order their partitions came.
    fn take_burst(&mut self, burst: Vec<(Tp, MessageParts)>) {
        let mut order: Vec<Tp> = Vec::new();
        let mut pending: HashMap<Tp, (Vec<MessageParts>, usize)> = HashMap::new();
        for (tp, m) in burst {
            let size = parts_bytes(&m);
            let entry = pending.entry(tp.clone()).or_insert_with(|| {
                order.push(tp.clone());
                (Vec::new(), 0)
            });
            if !entry.0.is_empty()
                && (entry.0.len() >= self.group_max_messages
                    || entry.1 + size > self.group_max_bytes)
            {
                let full = std::mem::take(&mut entry.0);
                entry.1 = 0;
                self.queue
                    .push_back(MessageGroup::new(&tp.0, tp.1, 1, full));
            }
            entry.0.push(m);
            entry.1 += size;
        }
        for tp in order {
            if let Some((parts, _)) = pending.remove(&tp)
                && !parts.is_empty()
            {
                self.queue
                    .push_back(MessageGroup::new(&tp.0, tp.1, 1, parts));
            }
        }
    }

    /// One polled message: kept (with its partition) unless it is at or past the
    /// stop timestamp, which pauses its partition.
    fn take(&mut self, tp: Tp, parts: MessageParts, burst: &mut Vec<(Tp, MessageParts)>) {
        if self.stopped.contains(&tp) {
            // Paused at its stop: anything fetched before the pause is dropped.
            return;
        }
        self.at_end.remove(&tp);
        if let (Some(stop), Some(ts)) = (self.stop_timestamp_ms, parts.timestamp_ms)
            && ts >= stop
        {
            log::debug!(
                "plain read: {}/{} reached the stop timestamp at offset {}",
                tp.0,
                tp.1,
                parts.offset
            );
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&tp.0, tp.1);
            if let Err(e) = self.consumer.pause(&tpl) {
                log::debug!("plain read: pausing {}/{}: {e}", tp.0, tp.1);
            }
            self.stopped.insert(tp);
            return;
        }
        if !self.budget.take_one() {
            return;
        }
        self.next.insert(tp.clone(), parts.offset + 1);
        burst.push((tp, parts));
    }
}

impl Reader for PlainReader {
    fn next_group(&mut self, timeout: Duration) -> Result<Option<MessageGroup>, Error> {
        if self.closed {
            return Err(Error::Closed {
                what: "the pseidon-kafka datasource reader (plain read)".into(),
            });
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(g) = self.queue.pop_front() {
                return Ok(Some(g));
            }
            let what = self.what();
            self.errors.check_due(|| what)?;
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            if self.budget.is_spent() {
                std::thread::sleep(deadline - now);
                return Ok(None);
            }
            let wait = (deadline - now).min(Duration::from_millis(200));
            let mut burst = Vec::new();
            let mut polled = match poll(&self.consumer, wait) {
                None => continue,
                Some(r) => Some(r),
            };
            let mut n = 0u32;
            while let Some(r) = polled.take() {
                match r {
                    Ok((tp, parts)) => self.take(tp, parts, &mut burst),
                    Err(KafkaError::PartitionEOF(p)) => self.reached_end(p),
                    Err(e) => {
                        let what = self.what();
                        self.errors.poll_error(&e, None, || what)?;
                    }
                }
                n += 1;
                if n < 4096 && !self.budget.is_spent() {
                    polled = poll(&self.consumer, Duration::ZERO);
                }
            }
            self.take_burst(burst);
        }
    }

    fn progress(&self) -> Result<ReaderProgress, Error> {
        if self.closed {
            return Err(Error::Closed {
                what: "the pseidon-kafka datasource reader (plain read)".into(),
            });
        }
        let held: HashSet<(&str, i32)> = self
            .queue
            .iter()
            .map(|g| (g.topic(), g.partition()))
            .collect();
        let at_end = self
            .assignment
            .iter()
            .filter(|tp| {
                (self.at_end.contains(*tp) || self.stopped.contains(*tp))
                    && !held.contains(&(tp.0.as_str(), tp.1))
            })
            .count();
        Ok(ReaderProgress {
            assignment_known: true,
            assigned_partitions: u32::try_from(self.assignment.len()).unwrap_or(u32::MAX),
            partitions_at_end: u32::try_from(at_end).unwrap_or(u32::MAX),
        })
    }

    fn close(&mut self) -> Result<(), Error> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.queue.clear();
        if let Err(e) = self.consumer.unassign() {
            log::debug!("plain read: unassign: {e}");
        }
        Ok(())
    }
}

/// Polls one message, copied out of librdkafka at once (module `message`).
fn poll(
    consumer: &BaseConsumer<ReplayCtx>,
    wait: Duration,
) -> Option<Result<(Tp, MessageParts), KafkaError>> {
    consumer
        .poll(wait)
        .map(|r| r.map(|m| ((m.topic().to_string(), m.partition()), copy_message(&m))))
}

/// The number of partitions of `topic`; an error naming it if it does not exist.
fn partition_count(consumer: &BaseConsumer<ReplayCtx>, topic: &str) -> Result<i32, Error> {
    let md = consumer
        .fetch_metadata(Some(topic), META_TIMEOUT)
        .map_err(|e| kafka_err(format!("plain read: the metadata of topic `{topic}`"), &e))?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Err(Error::other(format!("topic `{topic}` does not exist")));
    };
    if let Some(err) = t.error() {
        use rdkafka::error::RDKafkaErrorCode as Code;
        let code = Code::from(err);
        return Err(Error::other(match code {
            Code::UnknownTopicOrPartition | Code::UnknownTopic => {
                format!("topic `{topic}` does not exist ({code})")
            }
            _ => format!("topic `{topic}`: {code}"),
        }));
    }
    match i32::try_from(t.partitions().len()) {
        Ok(0) | Err(_) => Err(Error::other(format!("topic `{topic}` has no partitions"))),
        Ok(n) => Ok(n),
    }
}

/// The start offset of every assigned partition, as a number.
fn resolve_starts(
    consumer: &BaseConsumer<ReplayCtx>,
    assignment: &[Tp],
    start: StartOffset,
) -> Result<HashMap<Tp, i64>, Error> {
    let mut marks = HashMap::new();
    for tp in assignment {
        let w = consumer
            .fetch_watermarks(&tp.0, tp.1, META_TIMEOUT)
            .map_err(|e| {
                kafka_err(
                    format!("plain read: the watermarks of {}/{}", tp.0, tp.1),
                    &e,
                )
            })?;
        marks.insert(tp.clone(), w);
    }
    let mut starts = HashMap::new();
    let by_tpl = |offset: Offset, what: &str| -> Result<TopicPartitionList, Error> {
        let mut tpl = TopicPartitionList::new();
        for tp in assignment {
            tpl.add_partition_offset(&tp.0, tp.1, offset)
                .map_err(|e| kafka_err(format!("plain read: {what}"), &e))?;
        }
        Ok(tpl)
    };
    let looked_up = match start {
        StartOffset::Timestamp(ts) => Some(
            consumer
                .offsets_for_times(
                    by_tpl(Offset::Offset(ts), "offsets for times")?,
                    META_TIMEOUT,
                )
                .map_err(|e| kafka_err(format!("plain read: the offsets at timestamp {ts}"), &e))?,
        ),
        StartOffset::Stored => {
            let mut tpl = TopicPartitionList::new();
            for tp in assignment {
                tpl.add_partition(&tp.0, tp.1);
            }
            Some(
                consumer
                    .committed_offsets(tpl, META_TIMEOUT)
                    .map_err(|e| kafka_err("plain read: the committed offsets", &e))?,
            )
        }
        _ => None,
    };
    for tp in assignment {
        let (low, high) = marks.get(tp).copied().unwrap_or((0, 0));
        let found = looked_up
            .as_ref()
            .and_then(|l| l.find_partition(&tp.0, tp.1))
            .map(|e| e.offset());
        let at = match start {
            StartOffset::Beginning => low,
            StartOffset::End => high,
            StartOffset::Offset(n) => n.clamp(low, high),
            StartOffset::Tail(n) => high.saturating_sub(n).max(low),
            StartOffset::Timestamp(_) => match found {
                Some(Offset::Offset(o)) => o.clamp(low, high),
                // No message at or after it: the end.
                _ => high,
            },
            StartOffset::Stored => match found {
                Some(Offset::Offset(o)) => o.clamp(low, high),
                // Nothing committed: the log start, as the datasource's default.
                _ => low,
            },
        };
        starts.insert(tp.clone(), at);
    }
    Ok(starts)
}
