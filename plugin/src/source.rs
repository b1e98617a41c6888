//! The datasource registered as [`SOURCE_NAME`](crate::SOURCE_NAME): opens readers
//! ([`consumer`](crate::consumer)), marks groups done, lists them.
//!
//! State shared by the source and its live readers:
//! - the status database ([`store`](crate::store)), opened at first use so that
//!   sink-only users need none; a bad database is an error at that first use;
//! - the *claims*: ids of unfinished groups this process has handed out (or is
//!   replaying) and not seen done yet, each under its [`Scope`] (cluster and consumer
//!   group) and with its topic id. A reader opened later does not replay them, and
//!   the group consumer skips their offsets instead of handing them out twice;
//! - the live readers, whose per-partition watermarks `mark_done` advances (only the
//!   readers of the group's scope).
//!
//! `mark_done(id)` finds the group's scope: the claim of this process if exactly one
//! scope holds the id; else the unfinished rows of the id in the database (the conf's
//! `kafka.group.id` first when several consumer groups have one). An id more than one
//! consumer group holds unfinished is an error naming them: `mark_done_in` says which.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use pseidon_plugin_api::{DataSource, Error, GroupFilter, GroupInfo, GroupStatus, ReaderOptions};

use crate::{
    config::Config,
    consumer::KafkaReader,
    consumer::LiveReader,
    store::{Scope, Store},
};

/// A claim: which reader holds an unfinished group, of which topic incarnation.
#[derive(Debug, Clone)]
struct Claim {
    owner: u64,
    topic_id: String,
}

/// The parts of a group id `topic:partition:min-offset:max-offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupKey {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// First offset.
    pub min_offset: i64,
    /// Last offset.
    pub max_offset: i64,
}

/// Parses a group id; the error names the id and what is wrong with it.
pub fn parse_group_id(id: &str) -> Result<GroupKey, Error> {
    let bad = |reason: &str| Error::InvalidGroupId {
        group_id: id.to_string(),
        reason: format!("{reason} (expected topic:partition:min-offset:max-offset)"),
    };
    let mut parts = id.rsplitn(4, ':');
    let (Some(max), Some(min), Some(partition), Some(topic)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("it has fewer than four `:`-separated parts"));
    };
    if topic.is_empty() {
        return Err(bad("the topic is empty"));
    }
    let number = |what: &str, s: &str| -> Result<i64, Error> {
        s.parse::<i64>()
            .ok()
            .filter(|n| *n >= 0 && s.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                bad(&format!(
                    "the {what} `{s}` is not a non-negative whole number"
                ))
            })
    };
    let partition = number("partition", partition)?;
    let partition = i32::try_from(partition).map_err(|_| bad("the partition is too large"))?;
    let min_offset = number("min-offset", min)?;
    let max_offset = number("max-offset", max)?;
    if min_offset > max_offset {
        return Err(bad(&format!(
            "the min-offset {min_offset} is greater than the max-offset {max_offset}"
        )));
    }
    Ok(GroupKey {
        topic: topic.to_string(),
        partition,
        min_offset,
        max_offset,
    })
}

/// What the source and its readers share.
pub struct SourceState {
    /// The plugin's configuration.
    pub config: Config,
    store: Mutex<Option<Arc<Store>>>,
    /// Unfinished groups handed out (or being replayed) by this process, by scope and
    /// id, and the reader that holds each.
    claims: Mutex<HashMap<(Scope, String), Claim>>,
    readers: Mutex<Vec<Weak<LiveReader>>>,
    /// Groups found lost by replays since start.
    pub lost: AtomicU64,
    closed: std::sync::atomic::AtomicBool,
}

impl SourceState {
    /// The status database, opened at first use.
    pub fn store(&self) -> Result<Arc<Store>, Error> {
        let mut guard = self.store.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = guard.as_ref() {
            return Ok(Arc::clone(s));
        }
        let s = Arc::new(Store::open(
            &self.config.settings.status_db,
            self.config.settings.done_retention_ms,
        )?);
        log::info!(
            "status database {} opened",
            self.config.settings.status_db.display()
        );
        *guard = Some(Arc::clone(&s));
        Ok(s)
    }

    /// True once the plugin is shut down.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// True if this process holds the unfinished group `id` of `scope`.
    pub fn is_claimed(&self, scope: &Scope, id: &str) -> bool {
        self.claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&(scope.clone(), id.to_string()))
    }

    /// Claims `id` of `scope` for reader `owner`; false if another reader holds it.
    pub fn claim(&self, scope: &Scope, id: &str, topic_id: &str, owner: u64) -> bool {
        let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        let key = (scope.clone(), id.to_string());
        match claims.get(&key) {
            Some(c) if c.owner != owner => false,
            _ => {
                claims.insert(
                    key,
                    Claim {
                        owner,
                        topic_id: topic_id.to_string(),
                    },
                );
                true
            }
        }
    }

    /// Releases every claim of reader `owner` (it closed: a reader opened later replays
    /// what it left unfinished).
    pub fn release_owner(&self, owner: u64) {
        self.claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, c| c.owner != owner);
    }

    /// Releases the claims on `ids` of `scope`.
    pub fn release<'a>(&self, scope: &Scope, ids: impl IntoIterator<Item = &'a str>) {
        let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            claims.remove(&(scope.clone(), id.to_string()));
        }
    }

    /// The scopes (and topic ids) in which this process holds `id`, optionally only of
    /// consumer group `group`.
    fn claims_of(&self, id: &str, group: Option<&str>) -> Vec<(Scope, String)> {
        self.claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|((scope, cid), _)| {
                cid == id && group.is_none_or(|g| g == scope.consumer_group)
            })
            .map(|((scope, _), c)| (scope.clone(), c.topic_id.clone()))
            .collect()
    }

    /// Marks `id` done in the scope that holds it (module docs), optionally only looking
    /// in consumer group `group`.
    fn mark_done(&self, group_id: &str, group: Option<&str>) -> Result<(), Error> {
        let key = parse_group_id(group_id)?;
        let store = self.store()?;
        let mut target = self.claims_of(group_id, group);
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
            let mut unfinished: Vec<_> = rows
                .iter()
                .filter(|r| matches!(r.status, GroupStatus::Ready | GroupStatus::Run))
                .collect();
            if unfinished.len() > 1 && group.is_none() {
                // The conf's consumer group first.
                if let Some(conf_group) = self.config.kafka_prop("group.id") {
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
            Some(GroupStatus::Done) => return Ok(()),
            // Ready or run; or lost, and handed out with what survived: release it too.
            Some(_) => {}
        }
        self.release(&scope, [group_id]);
        for reader in self.live_readers() {
            if reader.scope().as_ref() == Some(&scope) {
                reader.group_done(&key);
            }
        }
        Ok(())
    }

    fn live_readers(&self) -> Vec<Arc<LiveReader>> {
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        readers.retain(|w| w.strong_count() > 0);
        readers.iter().filter_map(Weak::upgrade).collect()
    }
}

/// The datasource. Cheap to clone.
#[derive(Clone)]
pub struct KafkaSource {
    state: Arc<SourceState>,
}

impl KafkaSource {
    /// A source with `config`; nothing is opened yet.
    pub fn new(config: Config) -> Self {
        KafkaSource {
            state: Arc::new(SourceState {
                config,
                store: Mutex::new(None),
                claims: Mutex::new(HashMap::new()),
                readers: Mutex::new(Vec::new()),
                lost: AtomicU64::new(0),
                closed: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Closes every live reader: their watermarks are stored and committed now, and their
    /// next call returns [`Error::Closed`].
    pub fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        self.state.closed.store(true, Ordering::SeqCst);
        let mut first_err = None;
        for reader in self.state.live_readers() {
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
}

impl DataSource for KafkaSource {
    type Reader = KafkaReader;

    fn open(&self, topics: &[String], options: &ReaderOptions) -> Result<KafkaReader, Error> {
        if self.state.is_closed() {
            return Err(Error::Closed {
                what: "the pseidon-kafka datasource".into(),
            });
        }
        let reader = KafkaReader::open(Arc::clone(&self.state), topics, options)?;
        self.state
            .readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::downgrade(reader.live()));
        Ok(reader)
    }

    fn mark_done(&self, group_id: &str) -> Result<(), Error> {
        self.state.mark_done(group_id, None)
    }

    fn mark_done_in(&self, group_id: &str, consumer_group: &str) -> Result<(), Error> {
        self.state.mark_done(group_id, Some(consumer_group))
    }

    fn groups(&self, filter: &GroupFilter) -> Result<Vec<GroupInfo>, Error> {
        match self.state.store() {
            Ok(store) => store.list(filter),
            // Another live instance owns the file (e.g. `pseidon groups` while a consumer
            // runs): a listing only reads, and WAL mode lets readers in.
            Err(e) if crate::store::is_locked_error(&e) => {
                crate::store::list_read_only(&self.state.config.settings.status_db, filter)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_parse_and_errors_say_what_is_wrong() {
        let k = parse_group_id("my.topic-1:3:10:19").unwrap();
        assert_eq!(
            k,
            GroupKey {
                topic: "my.topic-1".into(),
                partition: 3,
                min_offset: 10,
                max_offset: 19
            }
        );
        let cases = [
            ("t:0:5", "fewer than four"),
            (":0:1:2", "topic is empty"),
            ("t:x:1:2", "partition `x`"),
            ("t:-1:1:2", "partition `-1`"),
            ("t:0:a:2", "min-offset `a`"),
            ("t:0:1:+2", "max-offset `+2`"),
            ("t:0:9:2", "greater than"),
        ];
        for (id, want) in cases {
            let err = parse_group_id(id).unwrap_err();
            assert!(matches!(err, Error::InvalidGroupId { .. }), "{id}: {err:?}");
            let text = err.to_string();
            assert!(text.contains(id) && text.contains(want), "{id}: {text}");
        }
    }
}
