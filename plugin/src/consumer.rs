//! The datasource's reader: first the replay of unfinished groups ([`replay`](crate::replay)),
//! then librdkafka's high-level consumer, subscribed in the consumer group `kafka.group.id`.
//!
//! Messages are copied out of librdkafka as soon as they are polled (a borrowed message
//! pins fetch buffers, and a consumer dropped while one is alive hangs). They collect
//! into one pending group per partition; a group is closed when it holds
//! `group-max-messages` or `group-max-bytes` (keys, values, headers), or its first
//! message waited `group-max-wait-ms`, then queued.
//! Before `next_group` returns, the groups it closed are recorded in the status database
//! in one transaction: the one it hands out straight as `run`, the others `ready`
//! (marked `run` when a later call hands them out). No group is handed out unrecorded.
//!
//! Offsets: `enable.auto.offset.store=false`; the only offsets ever stored are the
//! per-partition done-watermarks ([`tracker`](crate::tracker)), which librdkafka
//! auto-commits. On a revoke the watermarks of the revoked partitions are stored and
//! committed synchronously, and their pending and queued groups are dropped (they are
//! not covered by the watermark: whoever reads the partition next reads them again).
//!
//! Identity: at the first `next_group` the reader learns the Kafka cluster id and the
//! topic id of each of its topics ([`identity`](crate::identity)); its
//! [`Scope`] (cluster and `group.id`) and the topic ids select the rows it sees in the
//! status database. Unfinished rows of an earlier incarnation of a topic (deleted and
//! recreated) are recorded `lost` with an error naming the topic; its done rows no
//! longer hide anything. Until the cluster answers, `next_group` returns no group (a
//! broker that is down is waited for, as below).
//!
//! Known ranges: a message inside a group the status database knows as done or lost
//! for this scope and incarnation, or inside an unfinished group this process holds
//! (replayed, or handed out and not done), is skipped; the watermark still accounts for
//! it. A partition whose position lies in or before done groups with no unfinished
//! group before them (offsets reset by an admin, or a commit that lagged a crash) is
//! logged as a warning naming the partition and the offsets skipped.
//!
//! Users must call `next_group` at least every `max.poll.interval.ms` (librdkafka's
//! default 300 s) or the member leaves the group; its partitions are revoked as above.
//!
//! Progress ([`progress`](crate::progress)): the rebalance callbacks record whether the
//! assignment is known; with `kafka.enable.partition.eof=true` end-of-partition events
//! mark partitions at their end (never logged as errors) and close their pending groups.
//! Budget: a reader opened with `pseidon-kafka.reader-max-messages` takes no message
//! past it (nothing more is polled), and closes its pending groups when it is used up.
//!
//! Connection failures: a broker that is down is waited for (its repeated errors are
//! logged once per window, [`log_limit`](crate::log_limit)). A TLS or authentication
//! failure (a wrong CA, a wrong password) that persisted
//! `pseidon-kafka.connect-failure-timeout-ms` with no broker answering makes
//! `next_group` return it ([`ConnectFailure`]); a received message, an assignment or
//! a broker answering clears it.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use pseidon_plugin_api::{
    Error, GroupStatus, MessageGroup, MessageHeader, Reader, ReaderOptions,
    message_group::MessageParts,
};
use rdkafka::{
    ClientContext, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance},
    error::{KafkaError, RDKafkaErrorCode},
    message::{BorrowedMessage, Headers},
};

use crate::{
    config::{Role, reader_max_messages},
    consume_error::{self, ConsumeErrors, ErrorText},
    health::{ConnectCheck, ConnectFailure, PROBE_TIMEOUT, broker_answers, connect_failure_text},
    identity::{self, TopicId},
    kafka_log::{log_librdkafka, scrub, secret_values},
    log_limit::{LogLimit, suppressed_note},
    progress::{Budget, Progress, assignment_of, resolve_eof},
    replay::Replayer,
    source::{GroupKey, SourceState},
    store::{NewGroup, Scope, Store},
    tracker::Tracker,
};

/// Per topic, per partition trackers.
type Trackers = HashMap<String, HashMap<i32, Tracker>>;

static NEXT_READER_ID: AtomicU64 = AtomicU64::new(1);

/// Copies a message out of librdkafka.
pub fn copy_message(m: &BorrowedMessage<'_>) -> MessageParts {
    MessageParts {
        offset: m.offset(),
        timestamp_ms: m.timestamp().to_millis(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        headers: m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| MessageHeader::new(h.key, h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Bytes of a message's key, value and headers (what `group-max-bytes` counts).
pub fn parts_bytes(m: &MessageParts) -> usize {
    m.key.as_ref().map_or(0, Vec::len)
        + m.value.as_ref().map_or(0, Vec::len)
        + m.headers
            .iter()
            .map(|h| h.key().len() + h.value().map_or(0, <[u8]>::len))
            .sum::<usize>()
}

/// A Kafka error as the interface's error.
pub fn kafka_err(operation: impl Into<String>, e: &KafkaError) -> Error {
    Error::Kafka {
        operation: operation.into(),
        reason: e.to_string(),
    }
}

/// True for librdkafka's "Erroneous state": the partition is no longer assigned.
fn is_state_error(e: &KafkaError) -> bool {
    e.rdkafka_error_code() == Some(RDKafkaErrorCode::State)
}

/// What the reader shares with its consumer context (rebalance callbacks) and the source.
pub struct ReaderShared {
    trackers: Mutex<Trackers>,
    revoked: Mutex<Vec<(String, i32)>>,
    has_revoked: AtomicBool,
    /// A TLS or authentication failure to connect, and whether it persisted.
    failure: ConnectFailure,
    /// librdkafka's text of the last error event, for the consume error it becomes.
    error_text: ErrorText,
    /// The assignment and the partitions read to their end ([`progress`](crate::progress)).
    progress: Progress,
    /// Repeated errors (a broker that is down) are logged once per window.
    log_limit: LogLimit,
}

impl ReaderShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Trackers> {
        self.trackers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The consumer context: commits watermarks on revoke, records connection failures.
pub struct Ctx {
    shared: Arc<ReaderShared>,
    /// Secret conf values, blanked out of the log lines and errors.
    secrets: pseidon_plugin_api::secret::Scrubber,
}

impl ClientContext for Ctx {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_librdkafka(&self.secrets, level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error,
            KafkaError::Global(RDKafkaErrorCode::PartitionEOF) | KafkaError::PartitionEOF(_)
        ) {
            // The end of a partition (`enable.partition.eof`) is no error.
            log::debug!(target: "librdkafka", "{reason}");
            return;
        }
        let reason = scrub(&self.secrets, reason);
        if let Some(failure) = connect_failure_text(&error, &reason) {
            self.shared.failure.record(&failure);
        }
        self.shared.error_text.set(&reason);
        let text = format!("librdkafka: {error}: {reason}");
        if let Some(n) = self.shared.log_limit.check(&text) {
            log::error!(target: "librdkafka", "{text}{}", suppressed_note(n));
        }
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let mut revoked = Vec::new();
                let mut commit = TopicPartitionList::new();
                {
                    let mut trackers = self.shared.lock();
                    for e in tpl.elements() {
                        let (topic, partition) = (e.topic().to_string(), e.partition());
                        if let Some(mut t) = trackers
                            .get_mut(&topic)
                            .and_then(|per| per.remove(&partition))
                        {
                            let w = t.watermark();
                            let _ =
                                commit.add_partition_offset(&topic, partition, Offset::Offset(w));
                        }
                        revoked.push((topic, partition));
                    }
                }
                if commit.count() > 0 {
                    match consumer.store_offsets(&commit) {
                        Ok(()) => {}
                        Err(e) if is_state_error(&e) => {}
                        Err(e) => log::warn!("storing watermarks on revoke: {e}"),
                    }
                    match consumer.commit(&commit, CommitMode::Sync) {
                        Ok(()) => log::debug!("committed watermarks on revoke: {commit:?}"),
                        Err(e) if is_state_error(&e) => {}
                        Err(e) => log::warn!("committing watermarks on revoke failed: {e}"),
                    }
                }
                log::info!("partitions revoked: {revoked:?}");
                self.shared.progress.revoked(&revoked);
                self.shared
                    .revoked
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(revoked);
                self.shared.has_revoked.store(true, Ordering::SeqCst);
            }
            Rebalance::Assign(tpl) => {
                let parts: Vec<_> = tpl
                    .elements()
                    .iter()
                    .map(|e| format!("{}/{}", e.topic(), e.partition()))
                    .collect();
                // The group coordinator answered: the connection works.
                self.shared.failure.clear();
                self.shared.progress.assigned();
                log::info!("partitions assigned: {parts:?}");
            }
            Rebalance::Error(e) => log::error!("consumer group rebalance failed: {e}"),
        }
    }
}

/// The part of a reader the source reaches: its consumer and watermarks.
pub struct LiveReader {
    shared: Arc<ReaderShared>,
    consumer: BaseConsumer<Ctx>,
    closed: AtomicBool,
    /// The reader's scope, once the cluster answered.
    scope: OnceLock<Scope>,
}

impl LiveReader {
    /// The cluster and consumer group the reader reads, once known.
    pub fn scope(&self) -> Option<Scope> {
        self.scope.get().cloned()
    }

    fn store_offsets(&self, tpl: &TopicPartitionList) {
        match self.consumer.store_offsets(tpl) {
            Ok(()) => {}
            Err(e) if is_state_error(&e) => {
                log::debug!("watermark of a partition no longer assigned not stored: {tpl:?}")
            }
            Err(e) => log::warn!("storing watermarks {tpl:?} failed: {e}"),
        }
    }

    /// A group was marked done: advance its partition's watermark and store it.
    pub fn group_done(&self, key: &GroupKey) {
        let mut tpl = TopicPartitionList::new();
        {
            let mut trackers = self.shared.lock();
            let Some(t) = trackers
                .get_mut(&key.topic)
                .and_then(|per| per.get_mut(&key.partition))
            else {
                return;
            };
            if !t.mark_done(key.min_offset, key.max_offset) {
                return;
            }
            if let Some(w) = t.to_store() {
                t.stored(w);
                let _ = tpl.add_partition_offset(&key.topic, key.partition, Offset::Offset(w));
            }
        }
        if tpl.count() > 0 {
            self.store_offsets(&tpl);
        }
    }

    /// Stores the watermarks that moved.
    fn store_dirty(&self) {
        let mut tpl = TopicPartitionList::new();
        {
            let mut trackers = self.shared.lock();
            for (topic, per) in trackers.iter_mut() {
                for (p, t) in per.iter_mut() {
                    if let Some(w) = t.to_store() {
                        t.stored(w);
                        let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(w));
                    }
                }
            }
        }
        if tpl.count() > 0 {
            self.store_offsets(&tpl);
        }
    }

    /// Stores and synchronously commits every watermark, and closes the reader.
    pub fn commit_watermarks(&self, timeout: Duration) -> Result<(), Error> {
        self.closed.store(true, Ordering::SeqCst);
        let mut tpl = TopicPartitionList::new();
        {
            let mut trackers = self.shared.lock();
            for (topic, per) in trackers.iter_mut() {
                for (p, t) in per.iter_mut() {
                    let w = t.watermark();
                    t.stored(w);
                    let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(w));
                }
            }
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        self.store_offsets(&tpl);
        let _ = timeout; // librdkafka's synchronous commit has its own socket timeouts.
        match self.consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                log::info!("committed done-watermarks {tpl:?}");
                Ok(())
            }
            Err(e) if is_state_error(&e) => Ok(()),
            Err(e) => Err(kafka_err("commit of the done-watermarks", &e)),
        }
    }
}

/// One partition as the group consumer reads it, since its assignment.
struct Part {
    topic: String,
    /// The topic's incarnation (Kafka topic id), empty if unknown.
    topic_id: String,
    partition: i32,
    /// The ranges of the groups the status database knew when the partition was first
    /// read (done, lost, or unfinished and held by this process), by first offset;
    /// offsets inside them are skipped. A snapshot suffices: the consumer reads forward,
    /// and the groups formed since are behind it.
    known: Vec<(i64, i64)>,
    /// The first known range that may still hold offsets to come.
    cursor: usize,
    /// The group being filled.
    pending: Vec<MessageParts>,
    /// Bytes of keys, values and headers in `pending`.
    pending_bytes: usize,
    first_at: Instant,
    /// The offset after the last message received (taken or skipped).
    next: i64,
}

impl Part {
    /// True if `offset` (not below the previous one) lies in a known range.
    fn is_known(&mut self, offset: i64) -> bool {
        while let Some(&(_, max)) = self.known.get(self.cursor) {
            if max >= offset {
                break;
            }
            self.cursor += 1;
        }
        self.known
            .get(self.cursor)
            .is_some_and(|&(min, _)| min <= offset)
    }
}

/// What the group consumer's message handling reads.
struct Env<'a> {
    store: &'a Store,
    state: &'a SourceState,
    shared: &'a ReaderShared,
    consumer: &'a BaseConsumer<Ctx>,
}

/// A closed group, in the queue.
enum Queued {
    /// Recorded `ready` in the status database (of the topic incarnation `topic_id`).
    Recorded {
        group: MessageGroup,
        topic_id: String,
    },
    /// Closed in the current `next_group` call and not recorded yet.
    New {
        group: NewGroup,
        parts: Vec<MessageParts>,
    },
}

impl Queued {
    fn topic_partition(&self) -> (&str, i32) {
        match self {
            Queued::Recorded { group, .. } => (group.topic(), group.partition()),
            Queued::New { group, .. } => (&group.topic, group.partition),
        }
    }

    fn id(&self) -> &str {
        match self {
            Queued::Recorded { group, .. } => group.id(),
            Queued::New { group, .. } => &group.id,
        }
    }
}

/// The group consumer's side of a reader: partitions being read and closed groups.
struct Batch {
    reader_id: u64,
    /// What the reader's rows belong to (set before the first poll).
    scope: Scope,
    /// Topic → topic id, for the topics whose id is known (or was asked for: empty).
    topic_ids: HashMap<String, String>,
    parts: Vec<Part>,
    last_part: usize,
    queue: VecDeque<Queued>,
    group_max: usize,
    group_max_bytes: usize,
    group_wait: Duration,
    /// What remains of `pseidon-kafka.reader-max-messages`.
    budget: Budget,
}

impl Batch {
    /// Drops what was read from revoked partitions: pending groups and queued groups
    /// (`ready` or not recorded yet, not handed out, not covered by the watermark: read
    /// again).
    fn apply_revokes(&mut self, env: &Env<'_>) {
        // A plain load first: this runs for every message, a revoke almost never.
        if !env.shared.has_revoked.load(Ordering::Relaxed)
            || !env.shared.has_revoked.swap(false, Ordering::SeqCst)
        {
            return;
        }
        let revoked: Vec<(String, i32)> =
            std::mem::take(&mut *env.shared.revoked.lock().unwrap_or_else(|p| p.into_inner()));
        let is_revoked =
            |t: &str, p: i32| revoked.iter().any(|(rt, rp)| rt.as_str() == t && *rp == p);
        self.parts.retain(|pt| !is_revoked(&pt.topic, pt.partition));
        self.last_part = 0;
        let mut dropped = Vec::new();
        self.queue.retain(|g| {
            let (t, p) = g.topic_partition();
            let keep = !is_revoked(t, p);
            if !keep {
                dropped.push(g.id().to_string());
            }
            keep
        });
        if !dropped.is_empty() {
            log::info!(
                "dropped {} queued group(s) of revoked partitions (not handed out: they are read again): {dropped:?}",
                dropped.len()
            );
            env.state
                .release(&self.scope, dropped.iter().map(String::as_str));
        }
    }

    /// The id of `topic`'s incarnation; asked of the cluster the first time a topic
    /// without a known id is read (it may not have existed when the reader started),
    /// retiring the rows of an earlier incarnation then.
    fn topic_id(&mut self, topic: &str, env: &Env<'_>) -> Result<String, Error> {
        if let Some(id) = self.topic_ids.get(topic) {
            return Ok(id.clone());
        }
        let ids = resolve_topic_ids(
            env.consumer,
            env.store,
            env.state,
            &self.scope,
            &[topic.to_string()],
        )?;
        let id = ids.get(topic).cloned().unwrap_or_default();
        self.topic_ids.insert(topic.to_string(), id.clone());
        Ok(id)
    }

    /// The index of the partition's state, created (with its tracker) at the first
    /// message after an assignment, at offset `start`.
    fn part_index(
        &mut self,
        topic: &str,
        partition: i32,
        start: i64,
        env: &Env<'_>,
    ) -> Result<usize, Error> {
        if let Some(p) = self.parts.get(self.last_part)
            && p.partition == partition
            && p.topic == topic
        {
            return Ok(self.last_part);
        }
        if let Some(i) = self
            .parts
            .iter()
            .position(|p| p.partition == partition && p.topic == topic)
        {
            self.last_part = i;
            return Ok(i);
        }
        let topic_id = self.topic_id(topic, env)?;
        let mut tracker = Tracker::new(start);
        let mut known = Vec::new();
        // Done groups reachable from the position before any unfinished one: offsets
        // reset by an admin (or a commit that lagged a crash) — skipped, and said so.
        let mut done_ahead: Option<(i64, i64, usize)> = None;
        let mut blocked = false;
        for g in env
            .store
            .ranges_from(&self.scope, topic, &topic_id, partition, start)?
        {
            let done = match g.status {
                GroupStatus::Done | GroupStatus::Lost => true,
                GroupStatus::Ready | GroupStatus::Run
                    if env.state.is_claimed(&self.scope, &g.id) =>
                {
                    false
                }
                // Unfinished and held by nobody: read and handed out again.
                GroupStatus::Ready | GroupStatus::Run => continue,
            };
            if done && !blocked {
                let d = done_ahead.get_or_insert((g.min_offset, g.max_offset, 0));
                d.1 = d.1.max(g.max_offset);
                d.2 += 1;
            } else if !done {
                blocked = true;
            }
            tracker.add_known(g.min_offset, g.max_offset, done);
            known.push((g.min_offset, g.max_offset));
        }
        if let Some((min, max, n)) = done_ahead {
            log::warn!(
                "{topic}/{partition}: the consumer group `{}` starts at offset {start}, but the \
                 status database has {n} done group(s) in offsets {}..={max} from there: they are \
                 skipped, not read again (offsets reset by an admin, or committed offsets that \
                 lagged a crash). To read them again on purpose, use a new consumer group, or \
                 stop the readers and delete their rows: sqlite3 STATUS_DB \"DELETE FROM groups \
                 WHERE consumer_group = '{}' AND topic = '{topic}' AND status = 'done'\"",
                self.scope.consumer_group,
                min.max(start),
                self.scope.consumer_group,
            );
        }
        log::debug!(
            "tracking {topic}/{partition} from offset {start} ({} known groups ahead)",
            known.len()
        );
        env.shared
            .lock()
            .entry(topic.to_string())
            .or_default()
            .insert(partition, tracker);
        self.parts.push(Part {
            topic: topic.to_string(),
            topic_id,
            partition,
            known,
            cursor: 0,
            pending: Vec::new(),
            pending_bytes: 0,
            first_at: Instant::now(),
            next: start,
        });
        self.last_part = self.parts.len() - 1;
        Ok(self.last_part)
    }

    /// Takes one polled message: skips it if known, else adds it to its partition's group.
    fn take(&mut self, m: &BorrowedMessage<'_>, env: &Env<'_>) -> Result<(), Error> {
        self.apply_revokes(env);
        let (topic, partition, offset) = (m.topic(), m.partition(), m.offset());
        let i = self.part_index(topic, partition, offset, env)?;
        self.parts[i].next = offset + 1;
        if self.parts[i].is_known(offset) {
            self.close(i, env)?;
            let mut trackers = env.shared.lock();
            if let Some(t) = trackers
                .get_mut(topic)
                .and_then(|per| per.get_mut(&partition))
            {
                t.skip(offset);
            }
            return Ok(());
        }
        let message = copy_message(m);
        let bytes = parts_bytes(&message);
        // A group holds at most `group_max_bytes`, unless one message alone is larger.
        if !self.parts[i].pending.is_empty()
            && self.parts[i].pending_bytes + bytes > self.group_max_bytes
        {
            self.close(i, env)?;
        }
        let part = &mut self.parts[i];
        if part.pending.is_empty() {
            part.first_at = Instant::now();
            part.pending.reserve(self.group_max.min(1024));
            part.pending_bytes = 0;
        }
        part.pending_bytes += bytes;
        part.pending.push(message);
        // Never fails: no message is polled once the budget is spent (`poll_live`).
        let _taken = self.budget.take_one();
        if part.pending.len() >= self.group_max || part.pending_bytes >= self.group_max_bytes {
            self.close(i, env)?;
        }
        if self.budget.is_spent() {
            // The budget is used up: what was read is handed out now.
            for j in 0..self.parts.len() {
                self.close(j, env)?;
            }
        }
        Ok(())
    }

    /// An end-of-partition event of partition number `partition`: marks the partitions
    /// it belongs to at their end and closes their pending groups (handed out now).
    fn reached_end(
        &mut self,
        consumer: &BaseConsumer<Ctx>,
        partition: i32,
        env: &Env<'_>,
    ) -> Result<(), Error> {
        let topics = resolve_eof(consumer, &env.shared.progress, partition, |t| {
            self.parts
                .iter()
                .find(|p| p.partition == partition && p.topic == t)
                .map(|p| p.next)
        });
        for topic in topics {
            log::debug!("{topic}/{partition} reached its end");
            env.shared.progress.reached_end(&topic, partition);
            if let Some(i) = self
                .parts
                .iter()
                .position(|p| p.partition == partition && p.topic == topic)
            {
                self.close(i, env)?;
            }
        }
        Ok(())
    }

    /// True if messages of `topic`/`partition` are pending or queued here.
    fn holds(&self, topic: &str, partition: i32) -> bool {
        self.parts
            .iter()
            .any(|p| p.partition == partition && p.topic == topic && !p.pending.is_empty())
            || self
                .queue
                .iter()
                .any(|q| q.topic_partition() == (topic, partition))
    }

    /// Closes partition `i`'s pending group: registers it with the watermark and queues it
    /// (recorded by [`record_queued`](Self::record_queued) before the call returns).
    fn close(&mut self, i: usize, env: &Env<'_>) -> Result<(), Error> {
        let part = &mut self.parts[i];
        let (Some(first), Some(last)) = (part.pending.first(), part.pending.last()) else {
            return Ok(());
        };
        let (min, max) = (first.offset, last.offset);
        let pending = std::mem::take(&mut part.pending);
        part.pending_bytes = 0;
        {
            let mut trackers = env.shared.lock();
            let Some(t) = trackers
                .get_mut(&part.topic)
                .and_then(|per| per.get_mut(&part.partition))
            else {
                // Revoked meanwhile: covered by no watermark, read again by the next owner.
                return Ok(());
            };
            // Registered first: if recording fails, the watermark still never passes it.
            t.add_group(min, max);
        }
        let id = format!("{}:{}:{min}:{max}", part.topic, part.partition);
        env.state
            .claim(&self.scope, &id, &part.topic_id, self.reader_id);
        self.queue.push_back(Queued::New {
            group: NewGroup {
                id,
                topic: part.topic.clone(),
                topic_id: part.topic_id.clone(),
                partition: part.partition,
                min_offset: min,
                max_offset: max,
            },
            parts: pending,
        });
        Ok(())
    }

    /// Records the queued groups not recorded yet, in one transaction: the first of the
    /// queue as `run` if `hand_out` (it is about to be handed out), the others `ready`.
    /// Returns whether the first of the queue was recorded `run` here.
    fn record_queued(&mut self, env: &Env<'_>, hand_out: bool) -> Result<bool, Error> {
        let first_new = matches!(self.queue.front(), Some(Queued::New { .. }));
        let attempts = {
            let new = self.queue.iter().enumerate().filter_map(|(i, q)| match q {
                Queued::New { group, .. } => Some((
                    group,
                    if i == 0 && hand_out {
                        GroupStatus::Run
                    } else {
                        GroupStatus::Ready
                    },
                )),
                Queued::Recorded { .. } => None,
            });
            let mut new = new.peekable();
            if new.peek().is_none() {
                return Ok(false);
            }
            env.store.insert(&self.scope, new)?
        };
        let mut attempts = attempts.into_iter();
        for q in self.queue.iter_mut() {
            if let Queued::New { group, parts } = q {
                let attempt = attempts.next().unwrap_or(1);
                let g = MessageGroup::new(
                    &group.topic,
                    group.partition,
                    attempt,
                    std::mem::take(parts),
                );
                *q = Queued::Recorded {
                    group: g,
                    topic_id: std::mem::take(&mut group.topic_id),
                };
            }
        }
        Ok(first_new && hand_out)
    }

    /// Closes the pending groups whose wait is over.
    fn close_due(&mut self, now: Instant, env: &Env<'_>) -> Result<(), Error> {
        for i in 0..self.parts.len() {
            let p = &self.parts[i];
            if !p.pending.is_empty() && now.duration_since(p.first_at) >= self.group_wait {
                self.close(i, env)?;
            }
        }
        Ok(())
    }

    /// When the oldest pending group is due.
    fn next_due(&self) -> Option<Instant> {
        self.parts
            .iter()
            .filter(|p| !p.pending.is_empty())
            .map(|p| p.first_at + self.group_wait)
            .min()
    }
}

/// How long the topic ids may take at the start of a reader (the admin request).
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Asks the cluster for the ids of `topics`, and retires the rows of `scope` of earlier
/// incarnations of each (logged: lost unfinished groups as errors, hidden done ones as
/// a warning). Returns topic → id ("" where unknown: the topic does not exist yet, or
/// the broker has no topic ids).
fn resolve_topic_ids(
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
            return Err(Error::Kafka {
                operation: format!("describing topics {topics:?} (their topic ids)"),
                reason: format!("{:?}: {}", e.code, e.reason),
            });
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

/// Logs an error the consumer's poll returned (repeats once per window). Connection
/// errors come as well through the error callback, which logs them: here they are debug.
fn poll_error(shared: &ReaderShared, topics: &[String], e: &KafkaError) {
    if matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::Resolve
        )
    ) {
        log::debug!("consumer of {topics:?}: {e}");
        return;
    }
    let text = format!("consumer of {topics:?}: {e}");
    if let Some(n) = shared.log_limit.check(&text) {
        log::warn!("{text}{}", suppressed_note(n));
    }
}

/// A reader of message groups.
pub struct KafkaReader {
    live: Arc<LiveReader>,
    state: Arc<SourceState>,
    store: Arc<Store>,
    topics: Vec<String>,
    /// The consumer group, and the reader's conf overrides (for the replay consumer).
    group: String,
    overrides: Vec<(String, String)>,
    /// The cluster id, once it answered.
    cluster_id: Option<String>,
    /// False until the scope is known and the replay prepared ([`begin`](Self::begin)).
    started: bool,
    replay: Option<Replayer>,
    subscribed: bool,
    batch: Batch,
    /// Permanent consume errors, and whether the reader gave up on one.
    errors: ConsumeErrors,
    closed: bool,
}

impl KafkaReader {
    /// Opens a reader on `topics`: checks the conf, opens the status database and the
    /// consumer. The replay of unfinished groups is prepared at the first `next_group`,
    /// once the cluster id is known.
    pub fn open(
        state: Arc<SourceState>,
        topics: &[String],
        options: &ReaderOptions,
    ) -> Result<KafkaReader, Error> {
        if topics.is_empty() || topics.iter().any(|t| t.trim().is_empty()) {
            return Err(Error::other(
                "the datasource needs at least one topic, and no empty topic name",
            ));
        }
        let group = options
            .overrides()
            .iter()
            .rev()
            .find(|(k, _)| k == "kafka.group.id")
            .map(|(_, v)| v.as_str())
            .or_else(|| state.config.kafka_prop("group.id"));
        let group = match group {
            Some(g) if !g.trim().is_empty() => g.to_string(),
            _ => {
                return Err(Error::config(
                    "kafka.group.id",
                    "the datasource reads in a consumer group: set kafka.group.id in the conf \
                     (or per reader with ReaderOptions::group_id)",
                ));
            }
        };
        let store = state.store()?;
        let shared = Arc::new(ReaderShared {
            trackers: Mutex::new(HashMap::new()),
            revoked: Mutex::new(Vec::new()),
            has_revoked: AtomicBool::new(false),
            failure: ConnectFailure::new(state.config.settings.connect_failure_timeout_ms),
            error_text: ErrorText::default(),
            progress: Progress::default(),
            log_limit: LogLimit::default(),
        });
        let consumer: BaseConsumer<Ctx> = state
            .config
            .client_config(Role::Consumer, options.overrides())?
            .create_with_context(Ctx {
                shared: Arc::clone(&shared),
                secrets: secret_values(&state.config),
            })
            .map_err(|e| kafka_err("creating the consumer", &e))?;
        // The replay consumer's conf is checked now, not at the first replay.
        state
            .config
            .client_config(Role::Replay, options.overrides())?;
        let id = NEXT_READER_ID.fetch_add(1, Ordering::Relaxed);
        let settings = &state.config.settings;
        let error_timeout_ms = settings.consume_error_timeout_ms;
        let batch = Batch {
            reader_id: id,
            scope: Scope::default(),
            topic_ids: HashMap::new(),
            parts: Vec::new(),
            last_part: 0,
            queue: VecDeque::new(),
            group_max: settings.group_max_messages,
            group_max_bytes: settings.group_max_bytes,
            group_wait: Duration::from_millis(settings.group_max_wait_ms),
            budget: Budget::new(reader_max_messages(options.overrides())?),
        };
        Ok(KafkaReader {
            live: Arc::new(LiveReader {
                shared,
                consumer,
                closed: AtomicBool::new(false),
                scope: OnceLock::new(),
            }),
            state,
            store,
            topics: topics.to_vec(),
            group,
            overrides: options.overrides().to_vec(),
            cluster_id: None,
            started: false,
            replay: None,
            subscribed: false,
            batch,
            errors: ConsumeErrors::new(error_timeout_ms),
            closed: false,
        })
    }

    /// A TLS or authentication failure that persisted is the caller's error; otherwise
    /// when the next check is due.
    fn connect_failure(&self) -> Result<Option<Instant>, Error> {
        let consumer = &self.live.consumer;
        match self
            .live
            .shared
            .failure
            .check(|| broker_answers(consumer.client().native_ptr(), PROBE_TIMEOUT))
        {
            ConnectCheck::Fine => Ok(None),
            ConnectCheck::Pending(due) => Ok(Some(due)),
            ConnectCheck::Failed { reason, newly, .. } => {
                if newly {
                    log::error!("the datasource cannot read {:?}: {reason}", self.topics);
                }
                self.live.store_dirty();
                Err(Error::Kafka {
                    operation: format!("reading {:?}", self.topics),
                    reason,
                })
            }
        }
    }

    /// Learns the scope (cluster id) and the topic ids, and prepares the replay of the
    /// scope's unfinished groups; false if the cluster did not answer before `deadline`.
    fn begin(&mut self, deadline: Instant) -> Result<bool, Error> {
        while self.cluster_id.is_none() {
            // Waits on the consumer's queue (it serves the events: logs, connection
            // failures) while librdkafka connects and fetches the metadata, whose
            // cluster id is then cached.
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = left.clamp(Duration::from_millis(1), Duration::from_millis(100));
            if let Some(Err(e)) = self.live.consumer.poll(wait) {
                log::debug!("consumer of {:?} before subscribing: {e}", self.topics);
            }
            self.connect_failure()?;
            match self
                .live
                .consumer
                .client()
                .fetch_cluster_id(Duration::from_millis(1))
            {
                Some(id) if !id.is_empty() => self.cluster_id = Some(id),
                _ if Instant::now() >= deadline => return Ok(false),
                _ => {}
            }
        }
        let scope = Scope {
            cluster_id: self.cluster_id.clone().unwrap_or_default(),
            consumer_group: self.group.clone(),
        };
        let adopted = self.store.adopt_unscoped(&scope, &self.topics)?;
        if adopted > 0 {
            log::warn!(
                "{adopted} unfinished group(s) of {:?} from before scoping are now tracked in \
                 {scope}, and replayed",
                self.topics
            );
        }
        let topic_ids = match resolve_topic_ids(
            &self.live.consumer,
            &self.store,
            &self.state,
            &scope,
            &self.topics,
        ) {
            Ok(ids) => ids,
            Err(e) if Instant::now() < deadline => return Err(e),
            Err(e) => {
                log::debug!("{e}; asked again at the next call");
                return Ok(false);
            }
        };
        let mut unfinished = self.store.unfinished(&scope, &self.topics, |t| {
            topic_ids.get(t).cloned().unwrap_or_default()
        })?;
        let owner = self.batch.reader_id;
        unfinished.retain(|g| self.state.claim(&scope, &g.id, &g.topic_id, owner));
        if !unfinished.is_empty() {
            log::info!(
                "replaying {} unfinished message group(s) of {:?} ({scope}) before new data",
                unfinished.len(),
                self.topics
            );
            let cfg = self
                .state
                .config
                .client_config(Role::Replay, &self.overrides)?;
            match Replayer::new(
                &cfg,
                secret_values(&self.state.config),
                unfinished.clone(),
                self.state.config.settings.consume_error_timeout_ms,
            ) {
                Ok(r) => self.replay = Some(r),
                Err(e) => {
                    self.state
                        .release(&scope, unfinished.iter().map(|g| g.id.as_str()));
                    return Err(e);
                }
            }
        }
        log::info!("reading {:?} in {scope}", self.topics);
        let _ = self.live.scope.set(scope.clone());
        self.batch.scope = scope;
        self.batch.topic_ids = topic_ids;
        self.started = true;
        if self.replay.is_none() {
            self.subscribe()?;
        }
        Ok(true)
    }

    /// The part the source keeps a weak reference to.
    pub fn live(&self) -> &Arc<LiveReader> {
        &self.live
    }

    fn subscribe(&mut self) -> Result<(), Error> {
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        self.live
            .consumer
            .subscribe(&topics)
            .map_err(|e| kafka_err(format!("subscribing to {topics:?}"), &e))?;
        self.subscribed = true;
        Ok(())
    }

    fn closed_error() -> Error {
        Error::Closed {
            what: "the pseidon-kafka datasource reader".into(),
        }
    }

    /// The next group of the group consumer.
    fn next_live(&mut self, deadline: Instant) -> Result<Option<MessageGroup>, Error> {
        let r = self.poll_live(deadline);
        if r.is_err() {
            // Groups closed before the error stay queued: recorded `ready` as documented.
            let env = Env {
                store: &self.store,
                state: &self.state,
                shared: &self.live.shared,
                consumer: &self.live.consumer,
            };
            if let Err(e) = self.batch.record_queued(&env, false) {
                log::warn!("recording queued groups of {:?}: {e}", self.topics);
            }
        }
        r
    }

    fn poll_live(&mut self, deadline: Instant) -> Result<Option<MessageGroup>, Error> {
        let env = Env {
            store: &self.store,
            state: &self.state,
            shared: &self.live.shared,
            consumer: &self.live.consumer,
        };
        let batch = &mut self.batch;
        let consumer = &self.live.consumer;
        loop {
            batch.apply_revokes(&env);
            if !batch.queue.is_empty() {
                // The groups closed in this call are recorded now, in one transaction:
                // the one handed out as `run`, the others `ready`.
                let recorded_run = batch.record_queued(&env, true)?;
                let Some(Queued::Recorded { group: g, topic_id }) = batch.queue.pop_front() else {
                    unreachable!("record_queued records every queued group");
                };
                if !recorded_run {
                    env.store
                        .set_run(&batch.scope, &topic_id, g.id(), g.attempt())?;
                }
                self.live.store_dirty();
                return Ok(Some(g));
            }
            let now = Instant::now();
            batch.close_due(now, &env)?;
            if !batch.queue.is_empty() {
                continue;
            }
            // A TLS or authentication failure that persisted is the caller's error.
            let failure_due = match env
                .shared
                .failure
                .check(|| broker_answers(consumer.client().native_ptr(), PROBE_TIMEOUT))
            {
                ConnectCheck::Fine => None,
                ConnectCheck::Pending(due) => Some(due),
                ConnectCheck::Failed { reason, newly, .. } => {
                    if newly {
                        log::error!("the datasource cannot read {:?}: {reason}", self.topics);
                    }
                    self.live.store_dirty();
                    return Err(Error::Kafka {
                        operation: format!("reading {:?}", self.topics),
                        reason,
                    });
                }
            };
            self.errors
                .check_due(|| format!("reading {:?}", self.topics))?;
            if now >= deadline {
                self.live.store_dirty();
                return Ok(None);
            }
            if batch.budget.is_spent() {
                // Everything read was handed out: nothing more is polled.
                self.live.store_dirty();
                std::thread::sleep(deadline - now);
                return Ok(None);
            }
            let mut wait = deadline - now;
            let error_due = self.errors.due();
            for due in [batch.next_due(), failure_due, error_due]
                .into_iter()
                .flatten()
            {
                wait = wait.min(due.saturating_duration_since(now));
            }
            match consumer.poll(wait) {
                None => continue,
                Some(Ok(m)) => {
                    env.shared.failure.clear();
                    batch.take(&m, &env)?
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    batch.reached_end(consumer, p, &env)?;
                    continue;
                }
                Some(Err(e)) => {
                    if consume_error::is_transient(&e) {
                        poll_error(env.shared, &self.topics, &e);
                    }
                    self.errors
                        .poll_error(&e, env.shared.error_text.take(), || {
                            format!("reading {:?}", self.topics)
                        })?;
                    continue;
                }
            }
            // While messages are at hand and no group is complete, take them without
            // the bookkeeping above; the wait of pending groups is checked now and then.
            let mut n = 0u32;
            while batch.queue.is_empty() && n < 4096 && !batch.budget.is_spent() {
                match consumer.poll(Duration::ZERO) {
                    Some(Ok(m)) => batch.take(&m, &env)?,
                    Some(Err(KafkaError::PartitionEOF(p))) => {
                        batch.reached_end(consumer, p, &env)?
                    }
                    Some(Err(e)) => {
                        if consume_error::is_transient(&e) {
                            poll_error(env.shared, &self.topics, &e);
                        }
                        self.errors
                            .poll_error(&e, env.shared.error_text.take(), || {
                                format!("reading {:?}", self.topics)
                            })?
                    }
                    None => break,
                }
                n += 1;
            }
        }
    }
}

impl Reader for KafkaReader {
    fn next_group(&mut self, timeout: Duration) -> Result<Option<MessageGroup>, Error> {
        if self.closed || self.live.closed.load(Ordering::SeqCst) {
            return Err(Self::closed_error());
        }
        let deadline = Instant::now() + timeout;
        self.store.prune_if_due();
        if !self.started && !self.begin(deadline)? {
            return Ok(None);
        }
        if let Some(replay) = self.replay.as_mut() {
            if self.batch.budget.is_spent() {
                std::thread::sleep(timeout);
                return Ok(None);
            }
            match replay.next_group(&self.store, &self.state, deadline)? {
                Some(g) => {
                    self.batch.budget.take(g.messages().len());
                    return Ok(Some(g));
                }
                None if replay.is_finished() => {
                    log::info!("replay finished; reading new data of {:?}", self.topics);
                    self.replay = None;
                }
                None => return Ok(None),
            }
        }
        if !self.subscribed {
            self.subscribe()?;
        }
        self.next_live(deadline)
    }

    fn progress(&self) -> Result<pseidon_plugin_api::ReaderProgress, Error> {
        if self.closed || self.live.closed.load(Ordering::SeqCst) {
            return Err(Self::closed_error());
        }
        if self.replay.is_some() || !self.subscribed {
            // Replaying: the group consumer has not joined yet.
            return Ok(pseidon_plugin_api::ReaderProgress::default());
        }
        let assignment = self.live.consumer.assignment().map_err(|e| {
            kafka_err(
                format!("the assignment of the reader of {:?}", self.topics),
                &e,
            )
        })?;
        let assignment = assignment_of(&assignment);
        Ok(self
            .live
            .shared
            .progress
            .snapshot(&assignment, |t, p| self.batch.holds(t, p)))
    }

    fn close(&mut self) -> Result<(), Error> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.replay = None;
        let ids: Vec<String> = self
            .batch
            .queue
            .drain(..)
            .map(|g| g.id().to_string())
            .collect();
        self.state
            .release(&self.batch.scope, ids.iter().map(String::as_str));
        self.batch.parts.clear();
        self.state.release_owner(self.batch.reader_id);
        let r = self.live.commit_watermarks(Duration::from_secs(10));
        self.live.consumer.unsubscribe();
        r
    }
}

impl Drop for KafkaReader {
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(known: Vec<(i64, i64)>) -> Part {
        Part {
            topic: "t".into(),
            topic_id: String::new(),
            partition: 0,
            known,
            cursor: 0,
            pending: Vec::new(),
            pending_bytes: 0,
            first_at: Instant::now(),
            next: 0,
        }
    }

    #[test]
    fn known_ranges_are_found_with_a_forward_cursor() {
        let mut p = part(vec![(10, 19), (30, 39)]);
        let known: Vec<i64> = (0..50).filter(|o| p.is_known(*o)).collect();
        let want: Vec<i64> = (10..20).chain(30..40).collect();
        assert_eq!(known, want);
        assert_eq!(p.cursor, 2);
    }

    #[test]
    fn parts_bytes_counts_key_value_and_headers() {
        let m = MessageParts {
            offset: 0,
            timestamp_ms: None,
            key: Some(b"kk".to_vec()),
            value: Some(vec![0; 100]),
            headers: vec![
                MessageHeader::new("h1", Some(b"vvv".to_vec())),
                MessageHeader::new("h2", None),
            ],
        };
        assert_eq!(parts_bytes(&m), 2 + 100 + (2 + 3) + 2);
        let tombstone = MessageParts {
            value: None,
            key: None,
            headers: vec![],
            ..m
        };
        assert_eq!(parts_bytes(&tombstone), 0);
    }

    #[test]
    fn overlapping_known_ranges() {
        // Sorted by first offset; a long range before a short one inside it.
        let mut p = part(vec![(0, 99), (10, 20), (150, 160)]);
        assert!(p.is_known(5));
        assert!(p.is_known(50));
        assert!(p.is_known(99));
        assert!(!p.is_known(100));
        assert!(!p.is_known(149));
        assert!(p.is_known(150));
        assert!(!p.is_known(161));
    }
}
