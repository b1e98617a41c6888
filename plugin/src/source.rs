//! The datasource registered as [`SOURCE_NAME`](crate::SOURCE_NAME) (`SOURCE_NAME.NAME`
//! for a named instance, [`crate::config::instances`]): opens readers (the crate's
//! `consumer` module), marks groups done, lists them.
//!
//! The source holds the state it shares with its readers (the crate's `state` module:
//! configuration, status database, claims) and the list of its live readers, whose
//! per-partition watermarks `mark_done` advances (only the readers of the group's scope).
//! It holds them weakly: a reader dropped by its user leaves the list.
//!
//! A reader opened with the plain read options ([`plain_read`]) is a
//! `PlainReader`: it tracks nothing, and its groups cannot be marked done.
//!
//! `mark_done(id)` finds the group's scope: the claim of this process if exactly one
//! scope holds the id; else the unfinished rows of the id in the database (the conf's
//! `kafka.group.id` first when several consumer groups have one). An id more than one
//! consumer group holds unfinished is an error naming them: `mark_done_in` says which.
//!
//! `replay(id, group)` finds the id's rows in the database (of consumer group `group`,
//! when given; else the conf's `kafka.group.id` first when several consumer groups track
//! it; more than one left is an error naming them), and sets a done one back to `ready`
//! ([`Store::replay`](crate::store::Store::replay)). The next reader opened on its topic
//! in that scope replays it before new data, as every unfinished group, with its attempt
//! plus one. Nothing else changes: no offset is committed or reset, so the consumer
//! group's committed offsets never move backwards (the replay reads the range with its
//! own assign-only consumer, and a group consumer's watermark starts at the offset it
//! resumes from). A reader already reading the topic in this process does not pick the
//! replay up; the next one opened does. A `ready`/`run`/`failed` group is left as it is
//! (it is replayed anyway), a `lost` one is an error: its messages are gone; a `dead` one
//! goes back to `ready` like a done one (failing again, it is dead-lettered again at
//! once: its attempts stay spent); a `split` one is an error naming its halves' way.
//!
//! `mark_failed(id, reason)` finds the scope as `mark_done` does, records the group
//! `failed` with the reason (secrets scrubbed) and `retry_at_ms` = now +
//! `min(retry-backoff-ms × 2^(attempt-1), retry-backoff-max-ms)` (now, when the group
//! has no attempt left: `max-attempts`), and queues it for the reader that holds it:
//! that reader replays it once it is due, before it polls new data, and splits it or
//! dead-letters it there when its attempts are spent (the crate's `replay` module). A
//! failed group no reader of this process holds is replayed by the next reader opened.
//!
//! `metadata` asks the cluster (the crate's `metadata` module); it opens no status
//! database.

use std::{
    sync::{Arc, Mutex, Weak, atomic::Ordering},
    time::Duration,
};

use pseidon_plugin_api::{
    ClusterMetadata, DataSource, Error, GroupFilter, GroupInfo, GroupStatus, ReaderOptions,
    Replayed,
};

use crate::{
    config::Config,
    config::plain_read,
    consumer::{AnyReader, KafkaReader, LiveReader, PlainReader},
    metrics::{lag::PartitionInput, source::Poison, stats::ClientStats},
    state::SourceState,
    store::{MarkDone, Scope},
};

mod txn;

pub(crate) use txn::{TxnGroup, TxnPlan};

/// The group id and its parser, for the users of [`KafkaSource::mark_done`].
pub use crate::state::{GroupKey, parse_group_id};

/// What [`KafkaSource::metric_parts`] gives the metrics.
pub(crate) struct MetricParts {
    /// The counters and the groups by status.
    pub(crate) families: Vec<pseidon_plugin_api::metrics::MetricFamily>,
    /// Per partition of each open reader.
    pub(crate) lag: Vec<PartitionInput>,
    /// The open readers' latest librdkafka statistics.
    pub(crate) stats: Vec<Arc<ClientStats>>,
}

/// The datasource. Cheap to clone.
#[derive(Clone)]
pub struct KafkaSource {
    state: Arc<SourceState>,
    /// The readers opened and not dropped yet.
    readers: Arc<Mutex<Vec<Weak<LiveReader>>>>,
}

/// A [`KafkaSource`] that does not keep it alive: the datasink holds the plugin's source
/// this way, since the source holds the datasink (for dead letters), and a cycle would
/// keep the status database open, and locked, after the plugin's shutdown.
#[derive(Clone)]
pub(crate) struct WeakSource {
    state: std::sync::Weak<SourceState>,
    readers: std::sync::Weak<Mutex<Vec<Weak<LiveReader>>>>,
}

impl WeakSource {
    /// The source, if it is still alive.
    pub(crate) fn upgrade(&self) -> Option<KafkaSource> {
        Some(KafkaSource {
            state: self.state.upgrade()?,
            readers: self.readers.upgrade()?,
        })
    }
}

impl KafkaSource {
    /// This source, not kept alive by the handle.
    pub(crate) fn downgrade(&self) -> WeakSource {
        WeakSource {
            state: Arc::downgrade(&self.state),
            readers: Arc::downgrade(&self.readers),
        }
    }

    /// Gives the source the plugin's own datasink, for dead letters.
    pub fn set_dead_letter_sink(&self, sink: pseidon_plugin_api::Sink) {
        self.state.set_dead_letter_sink(sink);
    }

    /// A source with `config`; nothing is opened yet.
    pub fn new(config: Config) -> Self {
        KafkaSource {
            state: Arc::new(SourceState::new(config)),
            readers: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Closes every live reader: their watermarks are stored and committed now, and their
    /// next call returns [`Error::Closed`].
    pub fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        self.state.close();
        let mut first_err = None;
        for reader in self.live_readers() {
            if let Err(e) = reader.commit_watermarks(timeout) {
                log::warn!("datasource shutdown: {e}");
                first_err.get_or_insert(e);
            }
        }
        let lost = self.state.lost.load(Ordering::SeqCst);
        if lost > 0 {
            log::error!("datasource: {lost} message group(s) were lost (see earlier errors)");
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The latest librdkafka statistics of each open reader's consumer.
    pub(crate) fn reader_stats(&self) -> Vec<Arc<ClientStats>> {
        self.live_readers()
            .iter()
            .filter_map(|r| r.stats())
            .collect()
    }

    /// What the metrics need of the datasource: its counters and groups by status,
    /// the lag inputs and the statistics of its open readers. Uses no network.
    pub(crate) fn metric_parts(&self) -> MetricParts {
        let store = self.state.opened_store();
        let readers = self.live_readers();
        let lag = match store.as_deref() {
            Some(store) => readers.iter().flat_map(|r| r.lag_inputs(store)).collect(),
            None => Vec::new(),
        };
        MetricParts {
            families: self
                .state
                .metrics
                .families(&self.state.config.source_name(), store.as_deref()),
            lag,
            stats: readers.iter().filter_map(|r| r.stats()).collect(),
        }
    }

    fn live_readers(&self) -> Vec<Arc<LiveReader>> {
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        readers.retain(|w| w.strong_count() > 0);
        readers.iter().filter_map(Weak::upgrade).collect()
    }

    /// Marks `id` done in the scope that holds it (module docs), optionally only looking
    /// in consumer group `group`, and advances the watermarks of the readers of that scope.
    fn mark_done_scoped(&self, group_id: &str, group: Option<&str>) -> Result<(), Error> {
        let key = parse_group_id(group_id)?;
        let store = self.state.store()?;
        let mut target = self.state.claims_of(group_id, group);
        if target.is_empty() {
            let rows = store.find(group_id, group)?;
            if rows.is_empty() {
                return Err(Error::UnknownGroup {
                    group_id: match group {
                        Some(g) => format!("{group_id}` of consumer group `{g}"),
                        None => group_id.to_string(),
                    },
                });
            }
            let mut unfinished: Vec<_> = rows.iter().filter(|r| r.status.is_unfinished()).collect();
            if unfinished.len() > 1 && group.is_none() {
                // The conf's consumer group first.
                if let Some(conf_group) = self.state.config.kafka_prop("group.id") {
                    let mine: Vec<_> = unfinished
                        .iter()
                        .copied()
                        .filter(|r| r.consumer_group == conf_group)
                        .collect();
                    if !mine.is_empty() {
                        unfinished = mine;
                    }
                }
            }
            target = unfinished
                .iter()
                .map(|r| (Scope::of(r), r.topic_id.clone()))
                .collect();
            if target.is_empty() {
                // Done (harmless) or lost (stays lost) everywhere.
                return Ok(());
            }
        }
        if target.len() > 1 {
            let mut groups: Vec<String> = target.iter().map(|(s, _)| s.to_string()).collect();
            groups.sort();
            groups.dedup();
            return Err(Error::InvalidGroupId {
                group_id: group_id.to_string(),
                reason: format!(
                    "more than one consumer group holds it unfinished ({}); say which \
                     (`pseidon groups mark-done --group G`, Source::mark_done_in)",
                    groups.join("; ")
                ),
            });
        }
        let Some((scope, topic_id)) = target.pop() else {
            return Ok(());
        };
        match store.mark_done(&scope, &topic_id, group_id)? {
            None => {
                return Err(Error::UnknownGroup {
                    group_id: group_id.to_string(),
                });
            }
            Some(MarkDone::Unchanged(GroupStatus::Done)) => return Ok(()),
            // Ready, run or failed; or lost, and handed out with what survived: release
            // it too.
            Some(_) => {}
        }
        self.state.release(&scope, [group_id]);
        for reader in self.live_readers() {
            if reader.scope().as_ref() == Some(&scope) {
                reader.group_done(&key);
            }
        }
        Ok(())
    }
}

impl KafkaSource {
    /// Marks `group_id` failed (module docs); returns its status now.
    fn mark_failed_scoped(
        &self,
        group_id: &str,
        reason: &str,
        group: Option<&str>,
    ) -> Result<GroupStatus, Error> {
        parse_group_id(group_id)?;
        let store = self.state.store()?;
        let mut target = self.state.claims_of(group_id, group);
        let rows = store.find(group_id, group)?;
        if target.is_empty() {
            target = rows
                .iter()
                .filter(|r| r.status.is_unfinished())
                .map(|r| (Scope::of(r), r.topic_id.clone()))
                .collect();
        }
        if target.len() > 1 {
            let mut groups: Vec<String> = target.iter().map(|(s, _)| s.to_string()).collect();
            groups.sort();
            groups.dedup();
            return Err(Error::InvalidGroupId {
                group_id: group_id.to_string(),
                reason: format!(
                    "more than one consumer group holds it unfinished ({}); say which \
                     (Source::mark_failed with a consumer group)",
                    groups.join("; ")
                ),
            });
        }
        let Some((scope, topic_id)) = target.pop() else {
            return match rows.first() {
                None => Err(Error::UnknownGroup {
                    group_id: group_id.to_string(),
                }),
                Some(r) => Err(Error::InvalidGroupId {
                    group_id: group_id.to_string(),
                    reason: format!(
                        "it is {} in {}, not handed out: only an unfinished group can fail",
                        r.status,
                        Scope::of(r)
                    ),
                }),
            };
        };
        let attempt = rows
            .iter()
            .find(|r| Scope::of(r) == scope && r.topic_id == topic_id)
            .map_or(1, |r| r.attempt.max(1));
        let settings = &self.state.config.settings;
        let reason = crate::kafka_log::secret_values(&self.state.config)
            .scrub(reason)
            .into_owned();
        let spent = settings.attempts_spent(attempt);
        let backoff_ms = if spent {
            0
        } else {
            settings.retry_backoff_ms(attempt)
        };
        let retry_at_ms =
            crate::store::now_ms().saturating_add(i64::try_from(backoff_ms).unwrap_or(i64::MAX));
        let Some(row) = store.mark_failed(&scope, &topic_id, group_id, &reason, retry_at_ms)?
        else {
            return Err(Error::InvalidGroupId {
                group_id: group_id.to_string(),
                reason: format!("it is no longer unfinished in {scope}"),
            });
        };
        self.state
            .metrics
            .poison(&row.topic, &scope.consumer_group, Poison::Failed);
        let next = if !spent {
            format!("handed out again in {backoff_ms} ms")
        } else if row.messages.is_some_and(|n| n <= 1) || row.min_offset == row.max_offset {
            "no attempt left: dead-lettered".to_string()
        } else {
            "no attempt left: split in two halves".to_string()
        };
        log::warn!(
            "message group {group_id} failed at attempt {attempt} ({scope}): {reason}; {next}"
        );
        match self.state.claim_owner(&scope, group_id) {
            Some(owner) => self.state.push_retry(owner, row),
            None => log::info!(
                "failed group {group_id} is held by no reader of this process: the next \
                 reader of {} in {scope} replays it",
                row.topic
            ),
        }
        Ok(GroupStatus::Failed)
    }

    /// The rows of `group_id` to replay: of consumer group `group` when given; else of
    /// the conf's `kafka.group.id` first when several consumer groups track it. The
    /// error for an unknown id, or for more than one consumer group.
    fn replay_rows(&self, group_id: &str, group: Option<&str>) -> Result<Vec<GroupInfo>, Error> {
        let store = self.state.store()?;
        let rows = store.find(group_id, group)?;
        if rows.is_empty() {
            return Err(Error::UnknownGroup {
                group_id: match group {
                    Some(g) => format!("{group_id}` of consumer group `{g}"),
                    None => group_id.to_string(),
                },
            });
        }
        let mut scopes: Vec<Scope> = Vec::new();
        for r in &rows {
            let s = Scope::of(r);
            if !scopes.contains(&s) {
                scopes.push(s);
            }
        }
        if scopes.len() > 1
            && group.is_none()
            && let Some(conf_group) = self.state.config.kafka_prop("group.id")
            && scopes.iter().any(|s| s.consumer_group == conf_group)
        {
            scopes.retain(|s| s.consumer_group == conf_group);
        }
        if scopes.len() > 1 {
            let mut names: Vec<String> = scopes.iter().map(Scope::to_string).collect();
            names.sort();
            return Err(Error::InvalidGroupId {
                group_id: group_id.to_string(),
                reason: format!(
                    "more than one consumer group tracks it ({}); say which \
                     (`pseidon groups replay --group G`, Source::replay with a consumer group)",
                    names.join("; ")
                ),
            });
        }
        // Newest first (Store::find): the latest incarnation of the topic.
        Ok(rows
            .into_iter()
            .filter(|r| scopes.first().is_some_and(|s| *s == Scope::of(r)))
            .collect())
    }
}

impl DataSource for KafkaSource {
    type Reader = AnyReader;

    fn open(&self, topics: &[String], options: &ReaderOptions) -> Result<AnyReader, Error> {
        if self.state.is_closed() {
            return Err(Error::Closed {
                what: "the pseidon-kafka datasource".into(),
            });
        }
        if let Some(plain) = plain_read(options.overrides())? {
            return PlainReader::open(&self.state, topics, options, plain)
                .map(|r| AnyReader::Plain(Box::new(r)));
        }
        let reader = KafkaReader::open(Arc::clone(&self.state), topics, options)?;
        self.readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::downgrade(reader.live()));
        Ok(AnyReader::Group(Box::new(reader)))
    }

    fn mark_done(&self, group_id: &str) -> Result<(), Error> {
        self.mark_done_scoped(group_id, None)
    }

    fn mark_done_in(&self, group_id: &str, consumer_group: &str) -> Result<(), Error> {
        self.mark_done_scoped(group_id, Some(consumer_group))
    }

    fn replay(&self, group_id: &str, group: Option<&str>) -> Result<Replayed, Error> {
        parse_group_id(group_id)?;
        let rows = self.replay_rows(group_id, group)?;
        let Some(row) = rows.first() else {
            return Err(Error::UnknownGroup {
                group_id: group_id.to_string(),
            });
        };
        if row.status == GroupStatus::Lost {
            return Err(Error::InvalidGroupId {
                group_id: group_id.to_string(),
                reason: format!(
                    "it is lost in {}: its messages are gone from Kafka (the error logged \
                     when it was found lost says which offsets), so it cannot be replayed",
                    Scope::of(row)
                ),
            });
        }
        if row.status == GroupStatus::Split {
            return Err(Error::InvalidGroupId {
                group_id: group_id.to_string(),
                reason: format!(
                    "it was split into two halves in {} (its failures isolated a poison \
                     message): replay the halves (`pseidon groups --status done`, rows whose \
                     parent is this id)",
                    Scope::of(row)
                ),
            });
        }
        let store = self.state.store()?;
        match store.replay(&Scope::of(row), &row.topic_id, group_id)? {
            Some((previous, group)) => Ok(Replayed { previous, group }),
            None => Err(Error::UnknownGroup {
                group_id: group_id.to_string(),
            }),
        }
    }

    fn metadata(&self, topic: Option<&str>, timeout: Duration) -> Result<ClusterMetadata, Error> {
        crate::metadata::fetch(&self.state.config, topic, timeout)
    }

    fn mark_failed(
        &self,
        group_id: &str,
        reason: &str,
        consumer_group: Option<&str>,
    ) -> Result<GroupStatus, Error> {
        self.mark_failed_scoped(group_id, reason, consumer_group)
    }

    fn groups(&self, filter: &GroupFilter) -> Result<Vec<GroupInfo>, Error> {
        match self.state.store() {
            Ok(store) => store.list(filter),
            // Another live instance owns the file (e.g. `pseidon groups` while a consumer
            // runs): a listing only reads, and WAL mode lets readers in.
            Err(Error::StatusDbLocked { .. }) => {
                crate::store::list_read_only(&self.state.config.settings.status_db, filter)
            }
            Err(e) => Err(e),
        }
    }
}
