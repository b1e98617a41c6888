//! Group formation: the group consumer's messages collect into one pending group per
//! partition ([`Part`]); a group is closed when it holds `group-max-messages` or
//! `group-max-bytes` (keys, values, headers; a single larger message is a group of its
//! own), or its first message waited `group-max-wait-ms`, or its partition reached its
//! end, or the reader's budget is used up; then queued ([`Queued`]).
//!
//! Invariants:
//! - a closed group is registered with its partition's tracker before it is queued, so
//!   the watermark never passes it, even if recording it fails; a group of a partition
//!   revoked meanwhile (no tracker) is dropped: covered by no watermark, read again by
//!   the next owner;
//! - every queued group is claimed by the reader (a reader opened later does not replay
//!   it); a revoke drops the pending and queued groups of the revoked partitions and
//!   releases their claims;
//! - before a group is handed out, the groups closed in the same call are recorded in
//!   one transaction ([`Batch::record_queued`]): the one handed out as `run`, the others
//!   `ready`, each with its attempt from the status database;
//! - a message inside a known range (a group the status database knows done or lost,
//!   or unfinished and held by this process) is skipped, and the tracker accounts for it.

use std::{
    collections::{HashMap, VecDeque},
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use pseidon_plugin_api::{Error, GroupStatus, MessageGroup, message_group::MessageParts};
use rdkafka::{Message, consumer::BaseConsumer, message::BorrowedMessage};

use super::{
    live::{Ctx, ReaderShared},
    topic_ids::resolve_topic_ids,
};
use crate::{
    fetch_queue::Fetched,
    message::{copy_message, parts_bytes},
    progress::{Budget, resolve_eof},
    state::{GroupKey, SourceState},
    store::{NewGroup, Scope, Store},
    tracker::Tracker,
};

/// One partition as the group consumer reads it, since its assignment.
pub(super) struct Part {
    topic: String,
    /// The topic's incarnation (Kafka topic id), empty if unknown.
    topic_id: String,
    partition: i32,
    /// The address of librdkafka's handle of the topic (`rd_kafka_topic_t`) its
    /// messages came with, 0 before the first: a message with the same handle and
    /// partition belongs here, with no look at the topic's name. The address names this
    /// topic only while the part exists: librdkafka keeps a topic handle while any of
    /// its partitions is assigned and while a message of it is alive, and a revoke
    /// (served on the reader's thread, in `poll`) removes the part before the next
    /// message is taken (`apply_revokes`).
    handle: usize,
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
pub(super) struct Env<'a> {
    pub(super) store: &'a Store,
    pub(super) state: &'a SourceState,
    pub(super) shared: &'a ReaderShared,
    /// Asked for the id of a topic first read without one.
    pub(super) consumer: &'a BaseConsumer<Ctx>,
}

/// A closed group, in the queue.
pub(super) enum Queued {
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

    pub(super) fn id(&self) -> &str {
        match self {
            Queued::Recorded { group, .. } => group.id(),
            Queued::New { group, .. } => &group.id,
        }
    }
}

/// The group consumer's side of a reader: partitions being read and closed groups.
pub(super) struct Batch {
    /// The reader's id: the owner of its claims.
    pub(super) reader_id: u64,
    /// What the reader's rows belong to (set before the first poll).
    pub(super) scope: Scope,
    /// Topic → topic id, for the topics whose id is known (or was asked for: empty).
    pub(super) topic_ids: HashMap<String, String>,
    pub(super) parts: Vec<Part>,
    last_part: usize,
    pub(super) queue: VecDeque<Queued>,
    group_max: usize,
    group_max_bytes: usize,
    group_wait: Duration,
    /// What remains of `pseidon-kafka.reader-max-messages`.
    pub(super) budget: Budget,
}

impl Batch {
    /// The batch of reader `reader_id`, closing groups at `group_max` messages or
    /// `group_max_bytes`, or when the first waited `group_wait`; nothing read yet.
    pub(super) fn new(
        reader_id: u64,
        group_max: usize,
        group_max_bytes: usize,
        group_wait: Duration,
        budget: Budget,
    ) -> Self {
        Batch {
            reader_id,
            scope: Scope::default(),
            topic_ids: HashMap::new(),
            parts: Vec::new(),
            last_part: 0,
            queue: VecDeque::new(),
            group_max,
            group_max_bytes,
            group_wait,
            budget,
        }
    }

    /// Drops what was read from revoked partitions: pending groups and queued groups
    /// (`ready` or not recorded yet, not handed out, not covered by the watermark: read
    /// again). Returns the partitions revoked since the last call (the reader drops the
    /// messages its fetch batch still holds of them).
    pub(super) fn apply_revokes(&mut self, env: &Env<'_>) -> Vec<(String, i32)> {
        // A plain load first: this runs for every message, a revoke almost never.
        if !env.shared.has_revoked.load(Ordering::Relaxed)
            || !env.shared.has_revoked.swap(false, Ordering::SeqCst)
        {
            return Vec::new();
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
        revoked
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
                s if s.is_passable() => true,
                _ if env.state.is_claimed(&self.scope, &g.id) => false,
                // Unfinished and held by nobody: read and handed out again.
                _ => continue,
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
            handle: 0,
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
    pub(super) fn take(&mut self, m: &BorrowedMessage<'_>, env: &Env<'_>) -> Result<(), Error> {
        self.take_with(
            || m.topic(),
            m.topic_ptr() as usize,
            m.partition(),
            m.offset(),
            || copy_message(m),
            env,
        )
    }

    /// [`take`](Self::take) of a message read from the fetch queue.
    pub(super) fn take_fetched(&mut self, m: Fetched<'_>, env: &Env<'_>) -> Result<(), Error> {
        self.take_with(
            || m.topic(),
            m.topic_handle(),
            m.partition(),
            m.offset(),
            || m.copy(),
            env,
        )
    }

    /// [`take`](Self::take) of the message at `offset` of `topic`/`partition`, copied
    /// by `copy` only if it is not skipped. `handle` is the address of the message's
    /// topic handle ([`Part::handle`]; 0: none): the topic's name is asked for only
    /// when it is not the last partition's.
    fn take_with<'m>(
        &mut self,
        topic: impl FnOnce() -> &'m str,
        handle: usize,
        partition: i32,
        offset: i64,
        copy: impl FnOnce() -> MessageParts,
        env: &Env<'_>,
    ) -> Result<(), Error> {
        self.apply_revokes(env);
        let i = match self.parts.get(self.last_part) {
            Some(p) if handle != 0 && p.handle == handle && p.partition == partition => {
                self.last_part
            }
            _ => {
                let i = self.part_index(topic(), partition, offset, env)?;
                self.parts[i].handle = handle;
                i
            }
        };
        self.parts[i].next = offset + 1;
        if self.parts[i].is_known(offset) {
            self.close(i, env)?;
            let mut trackers = env.shared.lock();
            if let Some(t) = trackers
                .get_mut(self.parts[i].topic.as_str())
                .and_then(|per| per.get_mut(&partition))
            {
                t.skip(offset);
            }
            return Ok(());
        }
        let message = copy();
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
    pub(super) fn reached_end(
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
    pub(super) fn holds(&self, topic: &str, partition: i32) -> bool {
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
        let key = GroupKey {
            topic: part.topic.clone(),
            partition: part.partition,
            min_offset: min,
            max_offset: max,
        };
        let group = key.new_group(&part.topic_id, pending.len() as u64);
        env.state
            .claim(&self.scope, &group.id, &part.topic_id, self.reader_id);
        self.queue.push_back(Queued::New {
            group,
            parts: pending,
        });
        Ok(())
    }

    /// Records the queued groups not recorded yet, in one transaction: the first of the
    /// queue as `run` if `hand_out` (it is about to be handed out), the others `ready`.
    /// Returns whether the first of the queue was recorded `run` here.
    pub(super) fn record_queued(&mut self, env: &Env<'_>, hand_out: bool) -> Result<bool, Error> {
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
                let g = GroupKey::from(&*group).message_group(attempt, std::mem::take(parts));
                *q = Queued::Recorded {
                    group: g,
                    topic_id: std::mem::take(&mut group.topic_id),
                };
            }
        }
        Ok(first_new && hand_out)
    }

    /// Closes the pending groups whose wait is over.
    pub(super) fn close_due(&mut self, now: Instant, env: &Env<'_>) -> Result<(), Error> {
        for i in 0..self.parts.len() {
            let p = &self.parts[i];
            if !p.pending.is_empty() && now.duration_since(p.first_at) >= self.group_wait {
                self.close(i, env)?;
            }
        }
        Ok(())
    }

    /// When the oldest pending group is due.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.parts
            .iter()
            .filter(|p| !p.pending.is_empty())
            .map(|p| p.first_at + self.group_wait)
            .min()
    }
}

#[cfg(test)]
mod tests;
