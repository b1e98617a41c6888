//! The replay of unfinished groups: at open, before any new data, every `ready`/`run`
//! group of the reader's topics (not held by another live reader of this process) is
//! read again from Kafka with a separate assign-only consumer (no consumer group, no
//! commits), and handed out with the same id and its attempt count plus one.
//!
//! Per group: the partition's watermarks are fetched; if offsets of the group's range
//! are below the log start offset (deleted by retention or delete-records) or beyond
//! the end of the partition, the missing range is logged as an error naming the group,
//! counted, and the group marked `lost`. Surviving messages of a partly deleted group
//! are still handed out (it stays `lost`).
//!
//! All partitions are read at once (one lane per partition: its groups in offset
//! order): the watermarks of every partition are fetched before the consumer fetches
//! anything (a watermark request waits behind a long-polling fetch), every partition is
//! assigned at its first group's start in one `assign`, and a group is handed out as
//! soon as its range was read, whichever partition it is of. Within a partition a group
//! that starts where the previous one ended (or at most `MAX_SKIP_FORWARD` further) is
//! read on; a later one is sought to; a partition with nothing left is paused. A
//! group's messages are buffered until it is complete, so the replay holds at most one
//! group per partition (`group-max-bytes` each, as recorded). The lanes' partitions are
//! forwarded to a fetch queue of the replay consumer before they are assigned, and
//! read from it in batches ([`fetch_queue`](crate::fetch_queue)); a lane sought, paused
//! or reassigned drops the messages of its partition still in the batch (they predate
//! its new position), and a paused lane resumes with a seek to where it stands.
//!
//! A group is recorded `run` with its new attempt before it is handed out. Groups
//! fully read while more messages are at hand (up to `RECORD_MAX_GROUPS` groups or
//! `RECORD_MAX_BYTES` bytes) are recorded together in one transaction, then handed out
//! one by one: a replay of many small groups costs one SQLite commit per batch, not per
//! group. A crash before all of a batch was handed out leaves each of its groups
//! counted one attempt more, as the live reader's queued groups are.
//!
//! A replayer also hands out the `failed` groups whose backoff ended (the live reader
//! starts one for them before it polls new data). A failed group whose attempts are
//! spent (`pseidon-kafka.max-attempts`) is not handed out as it is: with more than one
//! message it is split by message count into two halves, whose ids carry their real
//! first and last offsets (one SQLite transaction: halves `ready`, parent `split`), and
//! the halves are handed out at once as attempt 1; with one message, the message is
//! copied to `pseidon-kafka.dead-letter-topic` through the plugin's datasink (key,
//! value and headers byte for byte, plus `pseidon.origin.topic`, `.partition`,
//! `.offset`, `.timestamp`, `.attempts`, `.reason`), and the group is marked `dead`
//! only once the copy's delivery is confirmed; a copy that fails leaves it `failed`
//! (retried after the backoff, the error logged and recorded as its reason).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use pseidon_plugin_api::secret::Scrubber;
use pseidon_plugin_api::{
    Error, GroupInfo, GroupStatus, Header, MessageGroup, Record, message_group::MessageParts,
};
use rdkafka::{
    ClientConfig, ClientContext, Message, Offset, TopicPartitionList,
    config::RDKafkaLogLevel,
    consumer::{BaseConsumer, Consumer},
    error::{KafkaError, RDKafkaErrorCode},
};

use crate::{
    consume_error::ConsumeErrors,
    error::kafka_err,
    fetch_queue::{FetchBatch, FetchQueue},
    message::{copy_message, parts_bytes},
    metrics::source::Poison,
    state::{GroupKey, SourceState},
    store::{Scope, Store, now_ms},
};

/// The longest a dead-letter copy's delivery is waited for.
const DEAD_LETTER_TIMEOUT: Duration = Duration::from_secs(120);

const META_TIMEOUT: Duration = Duration::from_secs(10);
/// Read forward instead of re-assigning when the next group starts this close.
const MAX_SKIP_FORWARD: i64 = 10_000;
/// Groups fully read while more messages are at hand are recorded `run` together, in
/// one transaction, up to this many...
const RECORD_MAX_GROUPS: usize = 256;
/// ... or this many bytes of keys, values and headers.
const RECORD_MAX_BYTES: usize = 4 << 20;
/// While reading ahead, the deadline is looked at every this many messages: at most
/// 4 MiB (RECORD_MAX_BYTES) are read ahead anyway, so a call ends at most this many
/// messages late.
const DEADLINE_EVERY: u32 = 64;

/// A `run` row to write before its group is handed out: scope, topic id, group id,
/// attempt, messages.
type RunRow = (Scope, String, String, u32, u64);

/// The replay consumer's context (also a plain read's): its librdkafka log lines and
/// errors, with the secrets blanked out (the one rule of `pseidon_plugin_api::secret`).
pub(crate) struct ReplayCtx {
    secrets: Scrubber,
    /// Repeated errors (a broker that is down) are logged once per window.
    log_limit: crate::log_limit::LogLimit,
}

impl ReplayCtx {
    /// A context scrubbing `secrets`.
    pub(crate) fn new(secrets: Scrubber) -> Self {
        ReplayCtx {
            secrets,
            log_limit: crate::log_limit::LogLimit::default(),
        }
    }
}

impl ClientContext for ReplayCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::kafka_log::log_librdkafka(&self.secrets, level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error,
            KafkaError::Global(RDKafkaErrorCode::PartitionEOF) | KafkaError::PartitionEOF(_)
        ) {
            // The end of a partition (a plain read's `enable.partition.eof`) is no error.
            log::debug!(target: "librdkafka", "{reason}");
            return;
        }
        let reason = self.secrets.scrub(reason);
        let text = format!("librdkafka (replay): {error}: {reason}");
        // A broker that is down repeats its errors: once per window.
        if let Some(n) = self.log_limit.check(&text) {
            log::error!(target: "librdkafka", "{text}{}", crate::log_limit::suppressed_note(n));
        }
    }
}

impl rdkafka::consumer::ConsumerContext for ReplayCtx {}

type ReplayConsumer = BaseConsumer<ReplayCtx>;

struct Current {
    info: GroupInfo,
    attempt: u32,
    start: i64,
    end: i64,
    high: i64,
    missing: Option<(i64, i64, String)>,
    parts: Vec<MessageParts>,
}

/// Where a lane's partition stands in the replay consumer's assignment.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fetching {
    /// Not in the assignment (yet).
    No,
    /// Assigned and fetching.
    Yes,
    /// Assigned and paused: its last group was read.
    Paused,
}

/// One partition's replay: its unfinished groups in offset order, the group being read,
/// and where reading stands.
struct Lane {
    topic: String,
    partition: i32,
    groups: VecDeque<GroupInfo>,
    cur: Option<Current>,
    /// The offset after the last message polled from it (its start once positioned).
    next: Option<i64>,
    /// The offset the partition must be (re)positioned at before it is read.
    seek_to: Option<i64>,
    /// A polled message past the current group, kept for the next one.
    peek: Option<MessageParts>,
    /// The partition's (low, high) watermarks, fetched once.
    marks: Option<(i64, i64)>,
    fetching: Fetching,
}

impl Lane {
    fn new(topic: &str, partition: i32) -> Lane {
        Lane {
            topic: topic.to_string(),
            partition,
            groups: VecDeque::new(),
            cur: None,
            next: None,
            seek_to: None,
            peek: None,
            marks: None,
            fetching: Fetching::No,
        }
    }

    /// True once the current group holds everything it will get.
    fn complete(&self) -> bool {
        match (&self.cur, self.next, self.seek_to) {
            (Some(cur), Some(next), None) => next > cur.end || next >= cur.high,
            _ => false,
        }
    }

    /// Takes `m` (polled from this lane's partition) into the current group, or keeps
    /// it for the next one; a message before the group, or with no group left, is dropped.
    fn take(&mut self, m: MessageParts) {
        let Some(cur) = self.cur.as_mut() else {
            if !self.groups.is_empty() {
                self.peek = Some(m);
            }
            return;
        };
        if m.offset < cur.start {
            return;
        }
        if m.offset > cur.end {
            self.peek = Some(m);
            return;
        }
        cur.parts.push(m);
    }

    /// Takes `m`, polled from this lane's partition, unless the lane waits for a new
    /// position (its messages until then predate it). True if taken.
    fn take_polled(&mut self, m: MessageParts) -> bool {
        if self.seek_to.is_some() {
            return false;
        }
        self.next = Some(m.offset + 1);
        self.take(m);
        true
    }

    fn tpl(&self, offset: Option<i64>) -> Result<TopicPartitionList, Error> {
        let mut tpl = TopicPartitionList::new();
        match offset {
            Some(o) => tpl
                .add_partition_offset(&self.topic, self.partition, Offset::Offset(o))
                .map_err(|e| kafka_err("replay: building the assignment", &e))?,
            None => {
                tpl.add_partition(&self.topic, self.partition);
            }
        }
        Ok(tpl)
    }
}

/// Replays unfinished groups: every partition's groups in offset order, all partitions
/// read at once by one assign-only consumer (a group is handed out as soon as its range
/// was read, whichever partition it is of).
pub(crate) struct Replayer {
    /// Messages read from `fetch` and not taken yet; declared (so dropped) before the
    /// consumer, as `fetch` (see [`fetch_queue`](crate::fetch_queue)).
    fetched: FetchBatch,
    /// The queue every lane's partition is forwarded to, read in batches.
    fetch: FetchQueue,
    consumer: ReplayConsumer,
    lanes: Vec<Lane>,
    /// The lane of each (topic, partition).
    index: HashMap<(String, i32), usize>,
    /// Permanent consume errors ([`consume_error`](crate::consume_error)): a batch
    /// librdkafka cannot decode fails the replay at once (it would skip it, and the
    /// group would be handed out without its messages).
    errors: ConsumeErrors,
    /// The reader this replayer hands out for (the claims of split halves).
    owner: u64,
    /// Groups read (and halves of a split), recorded, handed out before more is read.
    out: VecDeque<MessageGroup>,
    /// Groups fully read whose `run` row is not written yet (module docs), with it.
    unrecorded: Vec<(MessageGroup, RunRow)>,
    /// Bytes of keys, values and headers in `unrecorded`.
    unrecorded_bytes: usize,
    /// Splits done, for the live reader's trackers: (parent, halves).
    pub(crate) splits: Vec<(GroupKey, [(i64, i64); 2])>,
    /// Groups found dead, for the live reader's trackers.
    pub(crate) deads: Vec<GroupKey>,
}

impl Replayer {
    /// A replayer of `groups` with a consumer from `cfg` (role Replay).
    /// Gives up on a permanent consume error after `error_timeout_ms`.
    pub(crate) fn new(
        cfg: &ClientConfig,
        secrets: Scrubber,
        mut groups: Vec<GroupInfo>,
        error_timeout_ms: u64,
        owner: u64,
    ) -> Result<Replayer, Error> {
        let consumer: ReplayConsumer = cfg
            .create_with_context(ReplayCtx {
                secrets,
                log_limit: crate::log_limit::LogLimit::default(),
            })
            .map_err(|e| kafka_err("creating the replay consumer", &e))?;
        let fetch = FetchQueue::new(consumer.client().native_ptr())
            .ok_or_else(|| Error::other("creating the replay consumer's fetch queue failed"))?;
        groups.sort_by(|a, b| {
            (&a.topic, a.partition, a.min_offset).cmp(&(&b.topic, b.partition, b.min_offset))
        });
        let mut lanes: Vec<Lane> = Vec::new();
        let mut index = HashMap::new();
        for g in groups {
            let i = *index
                .entry((g.topic.clone(), g.partition))
                .or_insert_with(|| {
                    lanes.push(Lane::new(&g.topic, g.partition));
                    lanes.len() - 1
                });
            lanes[i].groups.push_back(g);
        }
        Ok(Replayer {
            fetched: FetchBatch::default(),
            fetch,
            consumer,
            lanes,
            index,
            errors: ConsumeErrors::new(error_timeout_ms),
            owner,
            out: VecDeque::new(),
            unrecorded: Vec::new(),
            unrecorded_bytes: 0,
            splits: Vec::new(),
            deads: Vec::new(),
        })
    }

    /// True when every group was handed out or found lost.
    pub(crate) fn is_finished(&self) -> bool {
        self.out.is_empty()
            && self.unrecorded.is_empty()
            && self
                .lanes
                .iter()
                .all(|l| l.cur.is_none() && l.groups.is_empty())
    }

    fn lost(
        &self,
        store: &Store,
        state: &SourceState,
        info: &GroupInfo,
        attempt: u32,
        (from, to, why): (i64, i64, &str),
    ) -> Result<(), Error> {
        let scope = Scope::of(info);
        store.set_lost(&scope, &info.topic_id, &info.id, attempt)?;
        state.release(&scope, [info.id.as_str()]);
        state.metrics.lost(
            &info.topic,
            &scope.consumer_group,
            u64::try_from(to - from + 1).unwrap_or(0),
        );
        let n = state.lost.fetch_add(1, Ordering::SeqCst) + 1;
        log::error!(
            "message group {} is LOST: offsets {from}..={to} of {}/{} are gone from Kafka ({why}); \
             marked `lost` in the status database; {n} group(s) lost since start",
            info.id,
            info.topic,
            info.partition
        );
        Ok(())
    }

    /// Starts the replay of `info` in lane `i`; `None` if it was found lost.
    fn begin(
        &mut self,
        i: usize,
        info: GroupInfo,
        store: &Store,
        state: &SourceState,
    ) -> Result<Option<Current>, Error> {
        let (min, max) = (info.min_offset, info.max_offset);
        // Fetched once per partition, before the consumer fetches anything if it can: a
        // watermark request waits behind the consumer's long-polling fetch on the broker
        // connection (up to fetch.wait.max.ms). A range deleted later is still noticed,
        // by the offsets that do not come (`finish`).
        let fetched = match self.lanes[i].marks {
            Some(w) => Ok(w),
            None => self
                .consumer
                .fetch_watermarks(&info.topic, info.partition, META_TIMEOUT),
        };
        let (low, high) = match fetched {
            Ok(w) => {
                self.lanes[i].marks = Some(w);
                w
            }
            Err(e)
                if matches!(
                    e.rdkafka_error_code(),
                    Some(
                        RDKafkaErrorCode::UnknownTopicOrPartition
                            | RDKafkaErrorCode::UnknownPartition
                            | RDKafkaErrorCode::UnknownTopic
                    )
                ) =>
            {
                let why = format!("the partition no longer exists: {e}");
                self.lost(store, state, &info, info.attempt, (min, max, &why))?;
                return Ok(None);
            }
            Err(e) => {
                let err = kafka_err(
                    format!("replay of group {}: fetching watermarks", info.id),
                    &e,
                );
                self.lanes[i].groups.push_front(info);
                return Err(err);
            }
        };
        if low > max {
            let why = format!("deleted: the log now starts at offset {low}");
            self.lost(store, state, &info, info.attempt, (min, max, &why))?;
            return Ok(None);
        }
        if high <= min {
            let why = format!(
                "beyond the end of the partition (high watermark {high}): was the topic recreated?"
            );
            self.lost(store, state, &info, info.attempt, (min, max, &why))?;
            return Ok(None);
        }
        let start = min.max(low);
        let end = max.min(high - 1);
        let missing = (low > min).then(|| {
            (
                min,
                low - 1,
                format!("deleted: the log now starts at offset {low}"),
            )
        });
        let lane = &mut self.lanes[i];
        // Read forward (a group that starts where the previous one ended needs no new
        // position), unless the next group starts too far ahead.
        let reuse = lane.seek_to.is_none()
            && lane.next.is_some_and(|next| {
                let first_unread = lane.peek.as_ref().map_or(next, |m| m.offset.min(next));
                first_unread <= start && start - first_unread <= MAX_SKIP_FORWARD
            });
        if !reuse {
            lane.seek_to = Some(start);
            lane.next = Some(start);
            lane.peek = None;
        }
        Ok(Some(Current {
            attempt: info.attempt + 1,
            info,
            start,
            end,
            high,
            missing,
            parts: Vec::new(),
        }))
    }

    /// Moves lane `i` on as far as it goes without polling: starts its next group,
    /// takes its kept message, and hands out (to `out`) every group fully read.
    /// True if the lane started or ended a group (the assignment may have to change).
    fn advance(&mut self, i: usize, store: &Store, state: &SourceState) -> Result<bool, Error> {
        let mut changed = false;
        loop {
            if self.lanes[i].cur.is_none() {
                let Some(info) = self.lanes[i].groups.pop_front() else {
                    return Ok(changed);
                };
                changed = true;
                let Some(cur) = self.begin(i, info, store, state)? else {
                    continue;
                };
                let lane = &mut self.lanes[i];
                lane.cur = Some(cur);
                if let Some(m) = lane.peek.take() {
                    lane.take(m);
                }
            }
            if !self.lanes[i].complete() {
                return Ok(changed);
            }
            changed = true;
            if let Some(cur) = self.lanes[i].cur.take()
                && let Some(g) = self.finish(cur, store, state)?
            {
                self.out.push_back(g);
            }
        }
    }

    /// Brings the consumer's assignment in line with the lanes: the first time, every
    /// lane with a group at its start; then a lane that must move is sought (and
    /// resumed), one with nothing left paused.
    fn position_lanes(&mut self) -> Result<(), Error> {
        let fresh = self
            .lanes
            .iter()
            .any(|l| l.cur.is_some() && l.fetching == Fetching::No);
        if fresh {
            // (Re)assign every lane with a group, each where it must read next.
            let mut tpl = TopicPartitionList::new();
            for lane in self.lanes.iter_mut().filter(|l| l.cur.is_some()) {
                let at = match (lane.seek_to, lane.next) {
                    (Some(o), _) => o,
                    (None, Some(next)) => lane.peek.as_ref().map_or(next, |m| m.offset.min(next)),
                    (None, None) => continue,
                };
                tpl.add_partition_offset(&lane.topic, lane.partition, Offset::Offset(at))
                    .map_err(|e| kafka_err("replay: building the assignment", &e))?;
                lane.next = Some(at);
                lane.peek = None;
                lane.seek_to = None;
                lane.fetching = Fetching::Yes;
            }
            for lane in self.lanes.iter_mut().filter(|l| l.cur.is_none()) {
                lane.fetching = Fetching::No;
            }
            for lane in self.lanes.iter().filter(|l| l.fetching == Fetching::Yes) {
                // Before the assign: none of its messages reach the consumer queue.
                self.fetch.forward(&lane.topic, lane.partition);
            }
            // Everything read before predates the new positions.
            self.fetched.clear();
            return self
                .consumer
                .assign(&tpl)
                .map_err(|e| kafka_err("replay: assign", &e));
        }
        for lane in &mut self.lanes {
            let moved = lane.cur.is_none() || lane.seek_to.is_some();
            if moved {
                // Messages read before it moves (or pauses) predate its new position.
                let (topic, partition) = (lane.topic.as_str(), lane.partition);
                self.fetched.discard(|t, p| p == partition && t == topic);
            }
            if lane.cur.is_none() {
                if lane.fetching == Fetching::Yes {
                    self.consumer
                        .pause(&lane.tpl(None)?)
                        .map_err(|e| kafka_err("replay: pause", &e))?;
                    lane.fetching = Fetching::Paused;
                }
                continue;
            }
            if lane.fetching == Fetching::Paused && lane.seek_to.is_none() {
                // librdkafka would resume after the last message it returned, which a
                // batch may have read past the last one taken: resume where the lane is.
                lane.seek_to = lane.next;
            }
            if let Some(at) = lane.seek_to.take() {
                self.consumer
                    .seek(
                        &lane.topic,
                        lane.partition,
                        Offset::Offset(at),
                        META_TIMEOUT,
                    )
                    .map_err(|e| kafka_err("replay: seek", &e))?;
            }
            if lane.fetching == Fetching::Paused {
                self.consumer
                    .resume(&lane.tpl(None)?)
                    .map_err(|e| kafka_err("replay: resume", &e))?;
                lane.fetching = Fetching::Yes;
            }
        }
        Ok(())
    }

    /// The next replayed group; `None` when the deadline passed (call again) or
    /// [`is_finished`](Self::is_finished).
    pub(crate) fn next_group(
        &mut self,
        store: &Arc<Store>,
        state: &Arc<SourceState>,
        deadline: Instant,
    ) -> Result<Option<MessageGroup>, Error> {
        // Lanes to move on: all of them at first and after a position update, else the
        // one a message came from; the assignment and the group named in errors are
        // looked at again only when a lane started or ended a group.
        let mut all = true;
        let mut one: Option<usize> = None;
        let mut changed = true;
        let mut reading = String::new();
        let mut last_lane: Option<usize> = None;
        // Set when a poll came back empty: nothing more is at hand.
        let mut at_hand = true;
        // Turns of the loop: while reading ahead the deadline is looked at every
        // DEADLINE_EVERY turns only (a clock read costs about as much as a poll).
        let mut turns: u32 = 0;
        loop {
            turns = turns.wrapping_add(1);
            if !self.unrecorded.is_empty()
                && (!at_hand
                    || self.unrecorded.len() >= RECORD_MAX_GROUPS
                    || self.unrecorded_bytes >= RECORD_MAX_BYTES
                    || (turns.is_multiple_of(DEADLINE_EVERY) && Instant::now() >= deadline))
            {
                self.record_unrecorded(store)?;
            }
            if let Some(g) = self.out.pop_front() {
                return Ok(Some(g));
            }
            if all {
                for i in 0..self.lanes.len() {
                    changed |= self.advance(i, store, state)?;
                }
                all = false;
            } else if let Some(i) = one.take() {
                changed |= self.advance(i, store, state)?;
            }
            if !self.out.is_empty() {
                continue;
            }
            // Read groups wait for their `run` rows while more messages are at hand.
            let reading_ahead = !self.unrecorded.is_empty();
            if changed {
                let Some(cur) = self.lanes.iter().find_map(|l| l.cur.as_ref()) else {
                    // Nothing left to read: hand out what was read ahead.
                    if self.unrecorded.is_empty() {
                        return Ok(None);
                    }
                    self.record_unrecorded(store)?;
                    continue;
                };
                reading.clone_from(&cur.info.id);
                self.position_lanes()?;
                changed = false;
            }
            let what = || format!("replay of group {reading}");
            self.errors.check_due(what)?;
            // Reading ahead, the clock is not read: one message per turn of this loop,
            // and a clock read costs as much as a poll here.
            let wait = if reading_ahead {
                Duration::ZERO
            } else {
                let now = Instant::now();
                if now >= deadline {
                    return Ok(None);
                }
                (deadline - now).min(Duration::from_millis(200))
            };
            at_hand = true;
            if self.fetched.is_empty() {
                // The consumer's own queue first: client errors (and the messages of a
                // partition librdkafka could not forward).
                match self.consumer.poll(Duration::ZERO) {
                    Some(Ok(m)) => {
                        let i = self
                            .index
                            .get(&(m.topic().to_string(), m.partition()))
                            .copied();
                        if let Some(i) = i {
                            let parts = copy_message(&m);
                            drop(m);
                            one = self.lanes[i].take_polled(parts).then_some(i).or(one);
                        }
                        continue;
                    }
                    Some(Err(e)) => {
                        self.errors.poll_error(&e, None, what)?;
                        continue;
                    }
                    None => {}
                }
                if self.fetch.fill(&mut self.fetched, wait) == 0 {
                    at_hand = false;
                    // Control records (transaction markers) advance a position without
                    // a message: learn it from librdkafka (every message it returned
                    // was taken: the batch is empty).
                    if let Ok(tpl) = self.consumer.position() {
                        for e in tpl.elements() {
                            let (Offset::Offset(o), Some(&i)) = (
                                e.offset(),
                                self.index.get(&(e.topic().to_string(), e.partition())),
                            ) else {
                                continue;
                            };
                            let lane = &mut self.lanes[i];
                            if lane.cur.is_some()
                                && lane.seek_to.is_none()
                                && let Some(next) = lane.next.as_mut()
                            {
                                *next = (*next).max(o);
                            }
                        }
                    }
                    all = true;
                    continue;
                }
            }
            let Some(m) = self.fetched.next() else {
                continue;
            };
            if let Some(e) = m.error() {
                // Logged as the context's callback logs an error of the consumer queue.
                self.consumer.context().error(e.clone(), &m.error_text());
                self.errors.poll_error(&e, None, what)?;
                continue;
            }
            // Messages come in runs of one partition: try the last lane first.
            let i = match last_lane {
                Some(l)
                    if self.lanes[l].partition == m.partition()
                        && self.lanes[l].topic == m.topic() =>
                {
                    Some(l)
                }
                _ => self
                    .index
                    .get(&(m.topic().to_string(), m.partition()))
                    .copied(),
            };
            last_lane = i;
            if let Some(i) = i
                && self.lanes[i].seek_to.is_none()
            {
                let parts = m.copy();
                self.lanes[i].take_polled(parts);
                one = Some(i);
            }
        }
    }

    /// Writes the `run` rows of the groups read ahead, in one transaction, and queues
    /// them to be handed out. On an error they stay unrecorded (written on the next call).
    fn record_unrecorded(&mut self, store: &Store) -> Result<(), Error> {
        store.set_run_many(self.unrecorded.iter().map(
            |(_, (scope, topic_id, id, attempt, messages))| {
                (scope, topic_id.as_str(), id.as_str(), *attempt, *messages)
            },
        ))?;
        self.out.extend(self.unrecorded.drain(..).map(|(g, _)| g));
        self.unrecorded_bytes = 0;
        Ok(())
    }

    /// Reads a read group out (or records it lost, or done if its range holds no
    /// message); a group to hand out as it is waits in `unrecorded` for its `run` row.
    fn finish(
        &mut self,
        mut cur: Current,
        store: &Store,
        state: &SourceState,
    ) -> Result<Option<MessageGroup>, Error> {
        let id = cur.info.id.clone();
        // Deleted while we were reading? The consumer then resets to the log start.
        let check = cur.missing.is_none() && cur.parts.first().is_none_or(|m| m.offset > cur.start);
        let low = check
            .then(|| {
                self.consumer
                    .fetch_watermarks(&cur.info.topic, cur.info.partition, META_TIMEOUT)
                    .ok()
            })
            .flatten()
            .map(|(low, _)| low);
        if let Some(low) = low.filter(|low| *low > cur.start) {
            cur.missing = Some((
                cur.start,
                (low - 1).min(cur.end),
                format!("deleted during the replay: the log now starts at offset {low}"),
            ));
        }
        if let Some((from, to, why)) = &cur.missing {
            let attempt = if cur.parts.is_empty() {
                cur.info.attempt
            } else {
                cur.attempt
            };
            self.lost(store, state, &cur.info, attempt, (*from, *to, why))?;
        } else if cur.parts.is_empty() {
            // Compacted away or only control records: nothing to deliver, nothing lost.
            log::info!("replayed group {id} holds no message any more (compaction); marked done");
            let scope = Scope::of(&cur.info);
            store.mark_done(&scope, &cur.info.topic_id, &id)?;
            state.release(&scope, [id.as_str()]);
            return Ok(None);
        } else if cur.info.status == GroupStatus::Failed
            && state.config.settings.attempts_spent(cur.info.attempt)
        {
            return self.poison(cur, store, state);
        } else {
            if cur.info.status == GroupStatus::Failed {
                state
                    .metrics
                    .poison(&cur.info.topic, &cur.info.consumer_group, Poison::Retried);
            }
            let row = (
                Scope::of(&cur.info),
                cur.info.topic_id.clone(),
                id.clone(),
                cur.attempt,
                cur.parts.len() as u64,
            );
            log::debug!(
                "replayed group {id} (attempt {}, {} messages)",
                cur.attempt,
                cur.parts.len()
            );
            self.unrecorded_bytes += cur.parts.iter().map(parts_bytes).sum::<usize>();
            let g = GroupKey::from(&cur.info).message_group(cur.attempt, cur.parts);
            self.unrecorded.push((g, row));
            return Ok(None);
        }
        if cur.parts.is_empty() {
            return Ok(None);
        }
        log::debug!(
            "replayed group {id} (attempt {}, {} messages)",
            cur.attempt,
            cur.parts.len()
        );
        Ok(Some(
            GroupKey::from(&cur.info).message_group(cur.attempt, cur.parts),
        ))
    }
}

impl Replayer {
    /// A failed group with no attempt left (module docs): split, or dead-lettered.
    fn poison(
        &mut self,
        cur: Current,
        store: &Store,
        state: &SourceState,
    ) -> Result<Option<MessageGroup>, Error> {
        let info = cur.info;
        let scope = Scope::of(&info);
        let reason = info.reason.clone().unwrap_or_default();
        if cur.parts.len() > 1 {
            let mut first = cur.parts;
            let second = first.split_off(first.len() / 2);
            let key_of = |parts: &[MessageParts]| GroupKey {
                topic: info.topic.clone(),
                partition: info.partition,
                min_offset: parts.first().map_or(0, |m| m.offset),
                max_offset: parts.last().map_or(0, |m| m.offset),
            };
            let (k1, k2) = (key_of(&first), key_of(&second));
            let n1 = k1.new_group(&info.topic_id, first.len() as u64);
            let n2 = k2.new_group(&info.topic_id, second.len() as u64);
            if !store.split(&scope, &info.topic_id, &info.id, [&n1, &n2])? {
                // Marked done (or else) meanwhile: nothing to split.
                state.release(&scope, [info.id.as_str()]);
                return Ok(None);
            }
            state
                .metrics
                .poison(&info.topic, &scope.consumer_group, Poison::Split);
            log::warn!(
                "message group {} failed {} time(s) (last: {reason}): split into {} ({} messages) \
                 and {} ({} messages)",
                info.id,
                info.attempt,
                n1.id,
                n1.messages,
                n2.id,
                n2.messages
            );
            state.release(&scope, [info.id.as_str()]);
            for (k, parts) in [(&k1, first), (&k2, second)] {
                let id = k.id();
                state.claim(&scope, &id, &info.topic_id, self.owner);
                store.set_run(&scope, &info.topic_id, &id, 1, parts.len() as u64)?;
                self.out.push_back(k.message_group(1, parts));
            }
            self.splits.push((
                GroupKey::from(&info),
                [
                    (k1.min_offset, k1.max_offset),
                    (k2.min_offset, k2.max_offset),
                ],
            ));
            return Ok(self.out.pop_front());
        }
        let Some(m) = cur.parts.first() else {
            return Ok(None);
        };
        match dead_letter(state, &info, m, &reason) {
            Ok(copied) => {
                store.set_dead(&scope, &info.topic_id, &info.id)?;
                state.release(&scope, [info.id.as_str()]);
                state
                    .metrics
                    .poison(&info.topic, &scope.consumer_group, Poison::Dead);
                match copied {
                    Some(t) => log::error!(
                        "message group {} (offset {} of {}/{}) failed {} time(s) (last: {reason}): \
                         DEAD, copied to the dead-letter topic `{t}` (delivery confirmed); the \
                         commit passes it",
                        info.id,
                        m.offset,
                        info.topic,
                        info.partition,
                        info.attempt
                    ),
                    None => log::error!(
                        "message group {} (offset {} of {}/{}) failed {} time(s) (last: {reason}): \
                         DEAD and DROPPED: no pseidon-kafka.dead-letter-topic is set; the commit \
                         passes it",
                        info.id,
                        m.offset,
                        info.topic,
                        info.partition,
                        info.attempt
                    ),
                }
                self.deads.push(GroupKey::from(&info));
            }
            Err(e) => {
                let backoff = state.config.settings.retry_backoff_ms(info.attempt);
                let retry_at = now_ms().saturating_add(i64::try_from(backoff).unwrap_or(i64::MAX));
                let why = format!("{reason}; the dead-letter copy failed: {e}");
                log::error!(
                    "message group {} (offset {} of {}/{}): {e}; it stays failed (never dead \
                     without a confirmed copy) and is tried again in {backoff} ms",
                    info.id,
                    m.offset,
                    info.topic,
                    info.partition
                );
                if let Some(row) =
                    store.mark_failed(&scope, &info.topic_id, &info.id, &why, retry_at)?
                {
                    state.push_retry(self.owner, row);
                }
            }
        }
        Ok(None)
    }
}

/// Copies `m` of group `info` to the dead-letter topic and waits for its delivery.
/// `Ok(Some(topic))` once delivered, `Ok(None)` if no dead-letter topic is set, an
/// error naming the topic and the broker's reason otherwise.
fn dead_letter(
    state: &SourceState,
    info: &GroupInfo,
    m: &MessageParts,
    reason: &str,
) -> Result<Option<String>, Error> {
    let Some(topic) = state.config.settings.dead_letter_topic.clone() else {
        return Ok(None);
    };
    let what = |e: &dyn std::fmt::Display| {
        Error::other(format!(
            "writing the dead-letter copy to topic `{topic}`: {e}"
        ))
    };
    let Some(sink) = state.dead_letter_sink() else {
        return Err(what(&"the plugin's datasink is not available"));
    };
    let origin = [
        ("pseidon.origin.topic", info.topic.clone()),
        ("pseidon.origin.partition", info.partition.to_string()),
        ("pseidon.origin.offset", m.offset.to_string()),
        (
            "pseidon.origin.timestamp",
            m.timestamp_ms.map(|t| t.to_string()).unwrap_or_default(),
        ),
        ("pseidon.origin.attempts", info.attempt.to_string()),
        ("pseidon.origin.reason", reason.to_string()),
    ];
    let mut headers: Vec<Header<'_>> = m
        .headers
        .iter()
        .map(|h| match h.value() {
            Some(v) => Header::new(h.key(), v),
            None => Header::null(h.key()),
        })
        .collect();
    headers.extend(origin.iter().map(|(k, v)| Header::new(k, v.as_bytes())));
    let mut record = match &m.value {
        Some(v) => Record::new(&topic, v),
        None => Record::new(&topic, b"").with_null_value(),
    };
    if let Some(k) = &m.key {
        record = record.with_key(k);
    }
    let record = record.with_headers(&headers);
    let (batch, mut ticket) = sink
        .write_batch_ticket(std::slice::from_ref(&record))
        .map_err(|e| what(&e))?;
    if batch.accepted < 1 {
        return Err(what(&"the datasink did not accept it"));
    }
    let deadline = Instant::now() + DEAD_LETTER_TIMEOUT;
    let mut delivered = 0;
    loop {
        let report = ticket.flush(Duration::from_secs(5)).map_err(|e| what(&e))?;
        if let Some(f) = report.failed.first() {
            return Err(what(&f.reason));
        }
        delivered += report.delivered;
        if !ticket.is_open() || report.pending == 0 {
            return if delivered > 0 {
                Ok(Some(topic))
            } else {
                Err(what(&"the datasink reported no delivery"))
            };
        }
        if Instant::now() >= deadline {
            return Err(what(&format!(
                "no delivery report within {} s",
                DEAD_LETTER_TIMEOUT.as_secs()
            )));
        }
    }
}
