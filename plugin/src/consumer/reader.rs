//! [`KafkaReader`], the reader a user of the datasource holds: `open` checks the conf
//! and creates the consumer; the first `next_group` learns the scope and the topic ids
//! and prepares the replay of the scope's unfinished groups (`begin`); then every
//! `next_group` hands out a replayed group ([`replay`](crate::replay)) until the replay
//! is finished, then subscribes and hands out the groups the batch
//! ([`batch`](super::batch)) forms from the group consumer's messages; `close` releases
//! its claims and commits its watermarks. The group consumer's side is described in
//! the [`consumer`](super) module.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use pseidon_plugin_api::Error;
use pseidon_plugin_api::{MessageGroup, Reader, ReaderOptions, ReaderProgress};
use rdkafka::{
    ClientContext,
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
};

use super::{
    batch::{Batch, Env, Queued},
    live::{Ctx, LiveReader, ReaderShared, poll_error},
    topic_ids::resolve_topic_ids,
};
use crate::{
    config::{Role, reader_max_messages},
    consume_error::{self, ConsumeErrors},
    error::kafka_err,
    fetch_queue::FetchBatch,
    kafka_log::secret_values,
    progress::{Budget, assignment_of},
    replay::Replayer,
    state::SourceState,
    store::{Scope, Store, now_ms},
};

static NEXT_READER_ID: AtomicU64 = AtomicU64::new(1);

/// The longest a reader waits for messages on its fetch queue before it looks at the
/// consumer queue (rebalances, errors) again.
const FETCH_WAIT_MAX: Duration = Duration::from_millis(100);

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
    /// Messages read from the live reader's fetch queue, not taken yet (emptied at
    /// `close`, before the consumer can be dropped).
    fetched: FetchBatch,
    /// Permanent consume errors, and whether the reader gave up on one.
    errors: ConsumeErrors,
    closed: bool,
}

impl KafkaReader {
    /// Opens a reader on `topics`: checks the conf, opens the status database and the
    /// consumer. The replay of unfinished groups is prepared at the first `next_group`,
    /// once the cluster id is known.
    pub(crate) fn open(
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
        let shared = Arc::new(ReaderShared::new(
            state.config.settings.connect_failure_timeout_ms,
        ));
        let consumer: BaseConsumer<Ctx> = state
            .config
            .client_config(Role::Consumer, options.overrides())?
            .create_with_context(Ctx::new(
                Arc::clone(&shared),
                secret_values(&state.config),
                Duration::from_millis(state.config.settings.revoke_drain_ms),
            ))
            .map_err(|e| kafka_err("creating the consumer", &e))?;
        // Topic patterns are expanded once, now (the only case where open asks the
        // cluster anything).
        let topics = &super::patterns::expand(&consumer, topics)?;
        // The replay consumer's conf is checked now, not at the first replay.
        state
            .config
            .client_config(Role::Replay, options.overrides())?;
        let id = NEXT_READER_ID.fetch_add(1, Ordering::Relaxed);
        let settings = &state.config.settings;
        let error_timeout_ms = settings.consume_error_timeout_ms;
        let batch = Batch::new(
            id,
            settings.group_max_messages,
            settings.group_max_bytes,
            Duration::from_millis(settings.group_max_wait_ms),
            Budget::new(reader_max_messages(options.overrides())?),
        );
        let live = Arc::new(LiveReader::new(shared, consumer));
        let _ = live.group.set(group.clone());
        Ok(KafkaReader {
            live,
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
            fetched: FetchBatch::default(),
            errors: ConsumeErrors::new(error_timeout_ms),
            closed: false,
        })
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
            self.live.connect_failure(&self.topics)?;
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
        // The exactly-once restart rule (issue 17): a `run` row of a transaction whose
        // offsets were committed past it is done, not replayed.
        let committed = super::txn::resolve_txn_rows(
            &self.live.consumer,
            &self.store,
            &scope,
            &unfinished,
            deadline,
        )?;
        unfinished.retain(|g| !committed.contains(&g.id));
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
                owner,
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

    /// Starts a replayer for the failed groups of this reader whose backoff ended (they
    /// go before new data, module docs of [`replay`](crate::replay)).
    fn start_retries(&mut self) -> Result<(), Error> {
        if !self.started {
            return Ok(());
        }
        let due = self.state.due_retries(self.batch.reader_id, now_ms());
        if due.is_empty() {
            return Ok(());
        }
        log::debug!(
            "handing out {} failed group(s) of {:?} again",
            due.len(),
            self.topics
        );
        let cfg = self
            .state
            .config
            .client_config(Role::Replay, &self.overrides)?;
        let owner = self.batch.reader_id;
        match Replayer::new(
            &cfg,
            secret_values(&self.state.config),
            due.clone(),
            self.state.config.settings.consume_error_timeout_ms,
            owner,
        ) {
            Ok(r) => {
                self.replay = Some(r);
                Ok(())
            }
            Err(e) => {
                for g in due {
                    self.state.push_retry(owner, g);
                }
                Err(e)
            }
        }
    }

    /// The part the source keeps a weak reference to.
    pub(crate) fn live(&self) -> &Arc<LiveReader> {
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
        let fetch = self.live.fetch.as_ref();
        let fetched = &mut self.fetched;
        loop {
            drop_revoked(fetched, &batch.apply_revokes(&env));
            if !batch.queue.is_empty() {
                // The groups closed in this call are recorded now, in one transaction:
                // the one handed out as `run`, the others `ready`.
                let recorded_run = batch.record_queued(&env, true)?;
                let Some(Queued::Recorded { group: g, topic_id }) = batch.queue.pop_front() else {
                    unreachable!("record_queued records every queued group");
                };
                if !recorded_run {
                    env.store.set_run(
                        &batch.scope,
                        &topic_id,
                        g.id(),
                        g.attempt(),
                        g.messages().len() as u64,
                    )?;
                }
                self.live.store_dirty();
                if let Some(last) = g.messages().last() {
                    self.live
                        .shared
                        .handed_out(g.topic(), last.partition(), last.offset());
                }
                self.state.metrics.handed_out(
                    g.topic(),
                    &batch.scope.consumer_group,
                    g.messages().len() as u64,
                    false,
                );
                return Ok(Some(g));
            }
            let now = Instant::now();
            batch.close_due(now, &env)?;
            if !batch.queue.is_empty() {
                continue;
            }
            // A TLS or authentication failure that persisted is the caller's error.
            let failure_due = self.live.connect_failure(&self.topics)?;
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
            // The consumer queue at every turn (a rebalance is served while a batch
            // lasts, however slowly its groups are taken): rebalances, commits, client
            // errors, and the messages of a partition not forwarded to the fetch queue.
            {
                let wait_here = if fetch.is_some() {
                    Duration::ZERO
                } else {
                    wait
                };
                let polled = consumer.poll(wait_here);
                drop_revoked(fetched, &batch.apply_revokes(&env));
                match polled {
                    None => {}
                    Some(Ok(m)) => {
                        env.shared.failure.clear();
                        batch.take(&m, &env)?;
                        continue;
                    }
                    Some(Err(KafkaError::PartitionEOF(p))) => {
                        batch.reached_end(consumer, p, &env)?;
                        continue;
                    }
                    Some(Err(e)) => {
                        consume_failed(&mut self.errors, env.shared, &self.topics, &e)?;
                        continue;
                    }
                }
                let Some(fetch) = fetch else {
                    continue;
                };
                if fetched.is_empty() {
                    // Waits at most FETCH_WAIT_MAX for messages: the consumer queue is
                    // not watched meanwhile.
                    if fetch.fill(fetched, wait.min(FETCH_WAIT_MAX)) == 0 {
                        continue;
                    }
                    env.shared.failure.clear();
                }
            }
            // While messages are at hand and no group is complete, take them without
            // the bookkeeping above; the wait of pending groups is checked between
            // batches.
            while batch.queue.is_empty() && !batch.budget.is_spent() {
                let Some(m) = fetched.next() else {
                    break;
                };
                match m.error() {
                    None => batch.take_fetched(m, &env)?,
                    Some(KafkaError::PartitionEOF(p)) => batch.reached_end(consumer, p, &env)?,
                    Some(e) => {
                        // What the context's callback does for an error polled from
                        // the consumer queue: log it, keep its text.
                        consumer.context().error(e.clone(), &m.error_text());
                        consume_failed(&mut self.errors, env.shared, &self.topics, &e)?;
                    }
                }
            }
        }
    }
}

/// Drops the messages `fetched` holds of the `revoked` partitions: read before the
/// revoke, they are the next owner's to read (and no part or tracker takes them now).
/// A consume error, polled from the consumer queue or read from the fetch batch: a
/// transient one is logged (once per window), every one goes to the error window with
/// the text the context kept; a permanent one that persisted is `next_group`'s error.
fn consume_failed(
    errors: &mut ConsumeErrors,
    shared: &ReaderShared,
    topics: &[String],
    e: &KafkaError,
) -> Result<(), Error> {
    if consume_error::is_transient(e) {
        poll_error(shared, topics, e);
    }
    errors.poll_error(e, shared.error_text.take(), || {
        format!("reading {topics:?}")
    })
}

fn drop_revoked(fetched: &mut FetchBatch, revoked: &[(String, i32)]) {
    if !revoked.is_empty() {
        fetched.discard(|t, p| revoked.iter().any(|(rt, rp)| *rp == p && rt == t));
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
        if self.replay.is_none() {
            self.start_retries()?;
        }
        if let Some(replay) = self.replay.as_mut() {
            if self.batch.budget.is_spent() {
                std::thread::sleep(timeout);
                return Ok(None);
            }
            let next = replay.next_group(&self.store, &self.state, deadline);
            for (parent, halves) in replay.splits.drain(..) {
                self.live.group_split(&parent, halves);
            }
            for key in replay.deads.drain(..) {
                self.live.group_done(&key);
            }
            match next? {
                Some(g) => {
                    self.batch.budget.take(g.messages().len());
                    self.state.metrics.handed_out(
                        g.topic(),
                        &self.group,
                        g.messages().len() as u64,
                        true,
                    );
                    return Ok(Some(g));
                }
                None if replay.is_finished() => {
                    if self.subscribed {
                        log::debug!("retries handed out; reading new data of {:?}", self.topics);
                    } else {
                        log::info!("replay finished; reading new data of {:?}", self.topics);
                    }
                    self.replay = None;
                    self.live.store_dirty();
                }
                None => return Ok(None),
            }
        }
        if !self.subscribed {
            self.subscribe()?;
        }
        // A failed group due before the deadline is handed out at the next call.
        let deadline = match self.state.next_retry_ms(self.batch.reader_id) {
            Some(at) => {
                let in_ms = u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0);
                deadline.min(Instant::now() + Duration::from_millis(in_ms))
            }
            None => deadline,
        };
        self.next_live(deadline)
    }

    fn progress(&self) -> Result<ReaderProgress, Error> {
        if self.closed || self.live.closed.load(Ordering::SeqCst) {
            return Err(Self::closed_error());
        }
        if self.replay.is_some() || !self.subscribed {
            // Replaying: the group consumer has not joined yet.
            return Ok(ReaderProgress::default());
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
        self.fetched.clear();
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
