//! The datasource registered as [`SOURCE_NAME`](crate::SOURCE_NAME): opens readers
//! ([`consumer`](crate::consumer)), marks groups done, lists them.
//!
//! State shared by the source and its live readers:
//! - the status database ([`store`](crate::store)), opened at first use so that
//!   sink-only users need none; a bad database is an error at that first use;
//! - the *claims*: ids of unfinished groups this process has handed out (or is
//!   replaying) and not seen done yet. A reader opened later does not replay them, and
//!   the group consumer skips their offsets instead of handing them out twice;
//! - the live readers, whose per-partition watermarks `mark_done` advances.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use pseidon_plugin_api::{DataSource, Error, GroupFilter, GroupInfo, GroupStatus, ReaderOptions};

use crate::{config::Config, consumer::KafkaReader, consumer::LiveReader, store::Store};

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
    /// Unfinished groups handed out (or being replayed) by this process, and the id of
    /// the reader that holds each.
    claims: Mutex<HashMap<String, u64>>,
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

    /// True if this process holds the unfinished group `id`.
    pub fn is_claimed(&self, id: &str) -> bool {
        self.claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(id)
    }

    /// Claims `id` for reader `owner`; false if another reader holds it.
    pub fn claim(&self, id: &str, owner: u64) -> bool {
        let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        match claims.get(id) {
            Some(o) if *o != owner => false,
            _ => {
                claims.insert(id.to_string(), owner);
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
            .retain(|_, o| *o != owner);
    }

    /// Releases the claims on `ids`.
    pub fn release<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            claims.remove(id);
        }
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
        let key = parse_group_id(group_id)?;
        let store = self.state.store()?;
        match store.mark_done(group_id)? {
            None => {
                return Err(Error::UnknownGroup {
                    group_id: group_id.to_string(),
                });
            }
            Some(GroupStatus::Done) => return Ok(()),
            Some(_) => {}
        }
        self.state.release([group_id]);
        for reader in self.state.live_readers() {
            reader.group_done(&key);
        }
        Ok(())
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
