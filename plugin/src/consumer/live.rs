//! What a reader shares with its consumer context and with the source: the trackers
//! (one per partition read since its assignment, [`tracker`](crate::tracker)), the
//! partitions revoked and not yet applied to the reader's groups, the connection
//! failure, the last error text, the progress and the log limit ([`ReaderShared`]).
//!
//! The consumer context ([`Ctx`]) logs librdkafka's lines with the secrets blanked out,
//! records connection failures, and on a revoke first waits (up to
//! `pseidon-kafka.revoke-drain-ms`) for the groups handed out of the revoked partitions
//! to be marked done, then stores and synchronously commits the watermarks of the
//! revoked partitions, drops their trackers and records them revoked (the reader drops
//! their pending and queued groups at its next step).
//!
//! An assignment forwards the assigned partitions to the reader's fetch queue before
//! librdkafka fetches them ([`fetch_queue`](crate::fetch_queue)): the reader reads
//! their messages in batches and still polls the consumer queue for the rebalances.
//!
//! [`LiveReader`] is the part of a reader the source reaches: the consumer and its
//! scope; `mark_done` advances a tracker through it ([`LiveReader::group_done`]). The
//! only offsets ever stored are the watermarks (`enable.auto.offset.store=false`).

use std::{
    collections::HashMap,
    ptr,
    sync::{
        Arc, Mutex, MutexGuard, OnceLock,
        atomic::{AtomicBool, AtomicPtr, Ordering},
    },
    time::{Duration, Instant},
};

use pseidon_plugin_api::{Error, secret::Scrubber};
use rdkafka::{
    ClientContext, Offset, TopicPartitionList, bindings as rdsys,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance},
    error::{KafkaError, RDKafkaErrorCode},
};

use crate::{
    consume_error::ErrorText,
    error::{is_state_error, kafka_code_err, kafka_err},
    fetch_queue::{FetchQueue, forward_to},
    health::{ConnectCheck, ConnectFailure, PROBE_TIMEOUT, broker_answers, connect_failure_text},
    kafka_log::{log_librdkafka, scrub},
    log_limit::{LogLimit, suppressed_note},
    metrics::{
        lag::{OldestGroup, PartitionInput},
        stats::{StatsCell, known},
    },
    progress::Progress,
    state::GroupKey,
    store::{Scope, Store, now_ms},
    tracker::Tracker,
};

/// Per topic, per partition trackers.
type Trackers = HashMap<String, HashMap<i32, Tracker>>;

/// What the reader shares with its consumer context (rebalance callbacks) and the source.
pub(crate) struct ReaderShared {
    trackers: Mutex<Trackers>,
    /// Partitions revoked since the reader last looked (`has_revoked` says if any).
    pub(super) revoked: Mutex<Vec<(String, i32)>>,
    pub(super) has_revoked: AtomicBool,
    /// A TLS or authentication failure to connect, and whether it persisted.
    pub(super) failure: ConnectFailure,
    /// librdkafka's text of the last error event, for the consume error it becomes.
    pub(super) error_text: ErrorText,
    /// The assignment and the partitions read to their end ([`progress`](crate::progress)).
    pub(super) progress: Progress,
    /// Repeated errors (a broker that is down) are logged once per window.
    log_limit: LogLimit,
    /// The consumer's latest librdkafka statistics (for the metrics).
    pub(crate) stats: StatsCell,
    /// Per partition, the offset after the last group handed out (what a revoke drains).
    handed: Mutex<HashMap<(String, i32), i64>>,
    /// The reader's fetch queue ([`fetch_queue`](crate::fetch_queue)), which an
    /// assignment forwards the assigned partitions to before librdkafka fetches them;
    /// null before it exists and once it is destroyed (then messages stay on the
    /// consumer queue).
    pub(super) fetch_queue: AtomicPtr<rdsys::rd_kafka_queue_t>,
}

impl ReaderShared {
    /// Nothing read, assigned or failed yet; a connection failure is the caller's error
    /// once it persisted `connect_failure_timeout_ms`.
    pub(super) fn new(connect_failure_timeout_ms: u64) -> Self {
        ReaderShared {
            trackers: Mutex::new(HashMap::new()),
            revoked: Mutex::new(Vec::new()),
            has_revoked: AtomicBool::new(false),
            failure: ConnectFailure::new(connect_failure_timeout_ms),
            error_text: ErrorText::default(),
            progress: Progress::default(),
            log_limit: LogLimit::default(),
            stats: StatsCell::default(),
            handed: Mutex::new(HashMap::new()),
            fetch_queue: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Records that a group of `topic`/`partition` ending at `max_offset` was handed out.
    pub(super) fn handed_out(&self, topic: &str, partition: i32, max_offset: i64) {
        let mut handed = self.handed.lock().unwrap_or_else(|p| p.into_inner());
        let end = handed.entry((topic.to_string(), partition)).or_insert(0);
        *end = (*end).max(max_offset + 1);
    }

    /// The partitions of `revoked` whose handed-out groups are not all done: the
    /// tracker's watermark is short of the end of the last group handed out.
    fn undrained(&self, revoked: &[(String, i32)]) -> Vec<(String, i32)> {
        let handed = self.handed.lock().unwrap_or_else(|p| p.into_inner());
        let mut trackers = self.lock();
        revoked
            .iter()
            .filter(|(topic, partition)| {
                let Some(end) = handed.get(&(topic.clone(), *partition)) else {
                    return false;
                };
                trackers
                    .get_mut(topic)
                    .and_then(|per| per.get_mut(partition))
                    .is_some_and(|t| t.watermark() < *end)
            })
            .cloned()
            .collect()
    }

    /// Waits up to `drain` for the groups handed out of `revoked` to be marked done
    /// (by other threads: `mark_done` advances the trackers meanwhile).
    fn drain(&self, revoked: &[(String, i32)], drain: Duration) {
        if drain.is_zero() {
            return;
        }
        let t0 = Instant::now();
        let mut waiting = self.undrained(revoked);
        if waiting.is_empty() {
            return;
        }
        while !waiting.is_empty() && t0.elapsed() < drain {
            std::thread::sleep(Duration::from_millis(5));
            waiting = self.undrained(revoked);
        }
        if waiting.is_empty() {
            log::info!(
                "revoke: the groups handed out of {revoked:?} were marked done within {} ms",
                t0.elapsed().as_millis()
            );
        } else {
            log::warn!(
                "revoke: groups handed out of {waiting:?} were not marked done within \
                 pseidon-kafka.revoke-drain-ms ({} ms): their next owner reads them again",
                drain.as_millis()
            );
        }
    }

    /// The trackers, per topic and partition.
    pub(super) fn lock(&self) -> MutexGuard<'_, Trackers> {
        self.trackers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The consumer context: commits watermarks on revoke, records connection failures.
pub(crate) struct Ctx {
    shared: Arc<ReaderShared>,
    /// Secret conf values, blanked out of the log lines and errors.
    secrets: Scrubber,
    /// `pseidon-kafka.revoke-drain-ms`.
    revoke_drain: Duration,
}

impl Ctx {
    /// The context of a reader's consumer; a revoke waits up to `revoke_drain` for the
    /// groups handed out of the revoked partitions.
    pub(super) fn new(
        shared: Arc<ReaderShared>,
        secrets: Scrubber,
        revoke_drain: Duration,
    ) -> Self {
        Ctx {
            shared,
            secrets,
            revoke_drain,
        }
    }
}

impl ClientContext for Ctx {
    fn stats_raw(&self, statistics: &[u8]) {
        self.shared.stats.update(statistics);
    }

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
        if let Some((code, failure)) = connect_failure_text(&error, &reason) {
            self.shared.failure.record(code, &failure);
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
                let partitions: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                self.shared.drain(&partitions, self.revoke_drain);
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
                {
                    let mut handed = self.shared.handed.lock().unwrap_or_else(|p| p.into_inner());
                    for p in &revoked {
                        handed.remove(p);
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
                let queue = self.shared.fetch_queue.load(Ordering::SeqCst);
                if !queue.is_null() {
                    let client = consumer.client().native_ptr();
                    for e in tpl.elements() {
                        // SAFETY: the queue is the consumer's and lives while the pointer
                        // is set (LiveReader's drop clears it first); a rebalance is
                        // served on the reader's thread, never during that drop.
                        unsafe { forward_to(client, queue, e.topic(), e.partition()) };
                    }
                }
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
pub(crate) struct LiveReader {
    pub(super) shared: Arc<ReaderShared>,
    /// Where the assigned partitions' messages are read from (`None`: librdkafka
    /// refused a queue; read from the consumer queue). Declared, so dropped, before the
    /// consumer, which must outlive it.
    pub(super) fetch: Option<FetchQueue>,
    pub(super) consumer: BaseConsumer<Ctx>,
    /// Set by the source's shutdown: the reader's next call is an error.
    pub(super) closed: AtomicBool,
    /// The reader's scope, once the cluster answered.
    pub(super) scope: OnceLock<Scope>,
    /// The reader's consumer group (set at open), for a transactional id derived
    /// before the scope is known.
    pub(super) group: OnceLock<String>,
}

impl Drop for LiveReader {
    fn drop(&mut self) {
        // No assignment forwards to the queue once it is gone (the consumer's close,
        // after the queue is dropped, may still serve a rebalance).
        self.shared
            .fetch_queue
            .store(ptr::null_mut(), Ordering::SeqCst);
    }
}

impl LiveReader {
    /// A live reader of `consumer`, whose context holds `shared`.
    pub(super) fn new(shared: Arc<ReaderShared>, consumer: BaseConsumer<Ctx>) -> Self {
        let fetch = FetchQueue::new(consumer.client().native_ptr());
        if let Some(f) = &fetch {
            shared.fetch_queue.store(f.ptr(), Ordering::SeqCst);
        }
        LiveReader {
            shared,
            fetch,
            consumer,
            closed: AtomicBool::new(false),
            scope: OnceLock::new(),
            group: OnceLock::new(),
        }
    }

    /// The cluster and consumer group the reader reads, once known.
    pub(crate) fn scope(&self) -> Option<Scope> {
        self.scope.get().cloned()
    }

    /// The consumer's latest librdkafka statistics, if any came yet.
    pub(crate) fn stats(&self) -> Option<Arc<crate::metrics::stats::ClientStats>> {
        self.shared.stats.get()
    }

    /// What the lag metrics need of each partition this reader knows (from its
    /// trackers and its consumer's statistics); nothing before the scope is known.
    /// The group holding a watermark is looked up in `store`; the network is not used.
    pub(crate) fn lag_inputs(&self, store: &Store) -> Vec<PartitionInput> {
        let Some(scope) = self.scope() else {
            return Vec::new();
        };
        let stats = self.shared.stats.get();
        let mut inputs: Vec<(PartitionInput, Option<(i64, i64)>)> = Vec::new();
        {
            let mut trackers = self.shared.lock();
            for (topic, per) in trackers.iter_mut() {
                for (&partition, t) in per.iter_mut() {
                    inputs.push((
                        PartitionInput {
                            group: scope.consumer_group.clone(),
                            topic: topic.clone(),
                            partition,
                            watermark: Some(t.watermark()),
                            handed_out: Some(t.seen()),
                            ..PartitionInput::default()
                        },
                        t.oldest_unfinished(),
                    ));
                }
            }
        }
        if let Some(stats) = stats.as_deref() {
            // Partitions assigned but without a tracker yet (nothing received since).
            for (topic, ts) in &stats.topics {
                for p in ts.partitions.values() {
                    let tracked = inputs
                        .iter()
                        .any(|(i, _)| i.topic == *topic && i.partition == p.partition);
                    if !tracked && known(p.committed_offset).is_some() {
                        inputs.push((
                            PartitionInput {
                                group: scope.consumer_group.clone(),
                                topic: topic.clone(),
                                partition: p.partition,
                                ..PartitionInput::default()
                            },
                            None,
                        ));
                    }
                }
            }
        }
        let now = now_ms();
        inputs
            .into_iter()
            .map(|(mut input, oldest)| {
                if let Some(p) = stats
                    .as_deref()
                    .and_then(|s| s.partition(&input.topic, input.partition))
                {
                    input.hi_offset = known(p.hi_offset);
                    input.lo_offset = known(p.lo_offset);
                    input.app_offset = known(p.app_offset);
                    input.committed_offset = known(p.committed_offset);
                }
                // The watermarks librdkafka's fetcher keeps current (no network, no
                // poll needed): fresher than statistics that come only through a poll.
                if let Some((lo, hi)) = crate::progress::cached_watermarks(
                    &self.consumer,
                    &input.topic,
                    input.partition,
                ) {
                    input.hi_offset = Some(hi);
                    if lo >= 0 {
                        input.lo_offset = Some(lo);
                    }
                }
                input.oldest = oldest.map(|(min, max)| {
                    let key = GroupKey {
                        topic: input.topic.clone(),
                        partition: input.partition,
                        min_offset: min,
                        max_offset: max,
                    };
                    let row = store
                        .find(&key.id(), Some(&scope.consumer_group))
                        .unwrap_or_default()
                        .into_iter()
                        .find(|g| g.cluster_id == scope.cluster_id);
                    OldestGroup {
                        min_offset: min,
                        attempt: row.as_ref().map_or(0, |g| g.attempt),
                        age_seconds: row.map(|g| (now - g.updated_ms).max(0) as f64 / 1000.0),
                    }
                });
                input
            })
            .collect()
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
    pub(crate) fn group_done(&self, key: &GroupKey) {
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
            if let Some(w) = t.watermark_to_store() {
                t.stored(w);
                let _ = tpl.add_partition_offset(&key.topic, key.partition, Offset::Offset(w));
            }
        }
        if tpl.count() > 0 {
            self.store_offsets(&tpl);
        }
    }

    /// Group `parent` was split into `halves`: its tracker passes it only through them.
    pub(crate) fn group_split(&self, parent: &GroupKey, halves: [(i64, i64); 2]) {
        let mut trackers = self.shared.lock();
        if let Some(t) = trackers
            .get_mut(&parent.topic)
            .and_then(|per| per.get_mut(&parent.partition))
        {
            t.split((parent.min_offset, parent.max_offset), halves);
        }
    }

    /// Stores the watermarks that moved.
    pub(super) fn store_dirty(&self) {
        let mut tpl = TopicPartitionList::new();
        {
            let mut trackers = self.shared.lock();
            for (topic, per) in trackers.iter_mut() {
                for (p, t) in per.iter_mut() {
                    if let Some(w) = t.watermark_to_store() {
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

    /// A TLS or authentication failure that persisted is the caller's error (reading
    /// `topics`); otherwise when the next check is due.
    pub(super) fn connect_failure(&self, topics: &[String]) -> Result<Option<Instant>, Error> {
        let consumer = &self.consumer;
        match self
            .shared
            .failure
            .check(|| broker_answers(consumer.client().native_ptr(), PROBE_TIMEOUT))
        {
            ConnectCheck::Fine => Ok(None),
            ConnectCheck::Pending(due) => Ok(Some(due)),
            ConnectCheck::Failed {
                reason,
                code,
                newly,
                ..
            } => {
                if newly {
                    log::error!("the datasource cannot read {topics:?}: {reason}");
                }
                self.store_dirty();
                Err(kafka_code_err(format!("reading {topics:?}"), code, reason))
            }
        }
    }

    /// Stores and synchronously commits every watermark, and closes the reader.
    pub(crate) fn commit_watermarks(&self, timeout: Duration) -> Result<(), Error> {
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

/// Logs an error the consumer's poll returned (repeats once per window). Connection
/// errors come as well through the error callback, which logs them: here they are debug.
pub(super) fn poll_error(shared: &ReaderShared, topics: &[String], e: &KafkaError) {
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
