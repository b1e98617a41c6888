//! The state the datasource ([`source`](crate::source)) shares with its readers
//! ([`consumer`](crate::consumer), [`replay`](crate::replay)), and the group id.
//!
//! [`SourceState`] holds:
//! - the plugin's configuration;
//! - the status database ([`store`](crate::store)), opened at first use so that
//!   sink-only users need none; a bad database is an error at that first use;
//! - the *claims*: ids of unfinished groups this process has handed out (or is
//!   replaying) and not seen done yet, each under its [`Scope`] (cluster and consumer
//!   group) and with its topic id. A reader opened later does not replay them, and
//!   the group consumer skips their offsets instead of handing them out twice. A claim
//!   has one owner (a reader); another reader cannot take it;
//! - the count of groups found lost since start, and whether the plugin is shut down.
//!
//! It knows nothing of the readers themselves: the live readers, whose watermarks a
//! `mark_done` advances, are the source's.
//!
//! The group id `topic:partition:min-offset:max-offset` ([`GroupKey`]) is formatted by
//! [`GroupKey::id`] and parsed by [`parse_group_id`], nowhere else in the plugin; the
//! groups handed out are built from a key ([`GroupKey::message_group`]), so the id
//! plugin-api's `MessageGroup` carries is the same.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use pseidon_plugin_api::{Error, GroupInfo, MessageGroup, message_group::MessageParts};

use crate::{
    config::Config,
    metrics::source::SourceMetrics,
    store::{NewGroup, Scope, Store},
};

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

impl GroupKey {
    /// The group id: `topic:partition:min-offset:max-offset` (what [`parse_group_id`]
    /// parses back).
    pub(crate) fn id(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.topic, self.partition, self.min_offset, self.max_offset
        )
    }

    /// The row of a group of `messages` messages about to be recorded, of the topic
    /// incarnation `topic_id`.
    pub(crate) fn new_group(&self, topic_id: &str, messages: u64) -> NewGroup {
        NewGroup {
            id: self.id(),
            messages,
            topic: self.topic.clone(),
            topic_id: topic_id.to_string(),
            partition: self.partition,
            min_offset: self.min_offset,
            max_offset: self.max_offset,
        }
    }

    /// The group of this key handed out, with its `attempt` and messages (in offset
    /// order, inside the key's range; some offsets of it may hold none).
    pub(crate) fn message_group(&self, attempt: u32, parts: Vec<MessageParts>) -> MessageGroup {
        let g = MessageGroup::with_range(
            &self.topic,
            self.partition,
            self.min_offset,
            self.max_offset,
            attempt,
            parts,
        );
        debug_assert_eq!(g.id(), self.id(), "plugin-api formats the id alike");
        g
    }
}

impl From<&NewGroup> for GroupKey {
    fn from(g: &NewGroup) -> Self {
        GroupKey {
            topic: g.topic.clone(),
            partition: g.partition,
            min_offset: g.min_offset,
            max_offset: g.max_offset,
        }
    }
}

impl From<&GroupInfo> for GroupKey {
    fn from(g: &GroupInfo) -> Self {
        GroupKey {
            topic: g.topic.clone(),
            partition: g.partition,
            min_offset: g.min_offset,
            max_offset: g.max_offset,
        }
    }
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

/// A claim: which reader holds an unfinished group, in which scope, of which topic
/// incarnation.
#[derive(Debug, Clone)]
struct Claim {
    scope: Scope,
    owner: u64,
    topic_id: String,
}

/// What the source and its readers share (module docs).
pub(crate) struct SourceState {
    /// The plugin's configuration.
    pub(crate) config: Config,
    store: Mutex<Option<Arc<Store>>>,
    /// Unfinished groups handed out (or being replayed) by this process, by id (then by
    /// scope: one id almost always has one), and the reader that holds each. Keyed by
    /// id so that `mark_done` finds a claim without scanning all of them (a replay
    /// claims every unfinished group at once).
    claims: Mutex<HashMap<String, Vec<Claim>>>,
    /// Groups found lost (by replays, or with a deleted topic) since start.
    pub(crate) lost: AtomicU64,
    closed: AtomicBool,
    /// The datasource's counters (for the metrics).
    pub(crate) metrics: SourceMetrics,
    /// Failed groups waiting for their backoff, with the reader that holds each
    /// (`Source::mark_failed` pushes, the reader takes them when due).
    retries: Mutex<Vec<(u64, GroupInfo)>>,
    /// The plugin's own datasink, for dead letters (set at `init`).
    dead_letter_sink: std::sync::OnceLock<pseidon_plugin_api::Sink>,
}

impl SourceState {
    /// The state of a source with `config`; nothing is opened yet.
    pub(crate) fn new(config: Config) -> Self {
        SourceState {
            config,
            store: Mutex::new(None),
            claims: Mutex::new(HashMap::new()),
            lost: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            metrics: SourceMetrics::default(),
            retries: Mutex::new(Vec::new()),
            dead_letter_sink: std::sync::OnceLock::new(),
        }
    }

    /// The datasink dead letters are written through (the plugin's own, as registered).
    pub(crate) fn set_dead_letter_sink(&self, sink: pseidon_plugin_api::Sink) {
        let _ = self.dead_letter_sink.set(sink);
    }

    /// The datasink for dead letters, if `init` set one.
    pub(crate) fn dead_letter_sink(&self) -> Option<&pseidon_plugin_api::Sink> {
        self.dead_letter_sink.get()
    }

    /// The reader holding the unfinished group `id` of `scope`, if one of this process does.
    pub(crate) fn claim_owner(&self, scope: &Scope, id: &str) -> Option<u64> {
        self.claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .and_then(|cs| cs.iter().find(|c| c.scope == *scope))
            .map(|c| c.owner)
    }

    /// Queues failed group `info` (its `retry_at_ms` set) for reader `owner`.
    pub(crate) fn push_retry(&self, owner: u64, info: GroupInfo) {
        let mut r = self.retries.lock().unwrap_or_else(|p| p.into_inner());
        r.retain(|(o, g)| !(*o == owner && g.id == info.id && g.topic_id == info.topic_id));
        r.push((owner, info));
    }

    /// Takes the failed groups of reader `owner` whose backoff ended by `now_ms`, by
    /// topic, partition and offset.
    pub(crate) fn due_retries(&self, owner: u64, now_ms: i64) -> Vec<GroupInfo> {
        let mut r = self.retries.lock().unwrap_or_else(|p| p.into_inner());
        let mut due = Vec::new();
        r.retain(|(o, g)| {
            let is_due = *o == owner && g.retry_at_ms.unwrap_or(0) <= now_ms;
            if is_due {
                due.push(g.clone());
            }
            !is_due
        });
        due.sort_by(|a, b| {
            (&a.topic, a.partition, a.min_offset).cmp(&(&b.topic, b.partition, b.min_offset))
        });
        due
    }

    /// When the next failed group of reader `owner` is due (ms since the epoch).
    pub(crate) fn next_retry_ms(&self, owner: u64) -> Option<i64> {
        self.retries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(o, _)| *o == owner)
            .map(|(_, g)| g.retry_at_ms.unwrap_or(0))
            .min()
    }

    /// The status database, opened at first use.
    pub(crate) fn store(&self) -> Result<Arc<Store>, Error> {
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

    /// The status database if it is open already (never opens it).
    pub(crate) fn opened_store(&self) -> Option<Arc<Store>> {
        self.store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(Arc::clone)
    }

    /// True once the plugin is shut down.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// The plugin is shut down: no reader opens any more.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// True if this process holds the unfinished group `id` of `scope`.
    pub(crate) fn is_claimed(&self, scope: &Scope, id: &str) -> bool {
        self.claim_owner(scope, id).is_some()
    }

    /// Claims `id` of `scope` for reader `owner`; false if another reader holds it.
    pub(crate) fn claim(&self, scope: &Scope, id: &str, topic_id: &str, owner: u64) -> bool {
        let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        let of_id = claims.entry(id.to_string()).or_default();
        match of_id.iter_mut().find(|c| c.scope == *scope) {
            Some(c) if c.owner != owner => false,
            Some(c) => {
                c.topic_id = topic_id.to_string();
                true
            }
            None => {
                of_id.push(Claim {
                    scope: scope.clone(),
                    owner,
                    topic_id: topic_id.to_string(),
                });
                true
            }
        }
    }

    /// Releases every claim of reader `owner` (it closed: a reader opened later replays
    /// what it left unfinished).
    pub(crate) fn release_owner(&self, owner: u64) {
        self.claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, cs| {
                cs.retain(|c| c.owner != owner);
                !cs.is_empty()
            });
        self.retries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(o, _)| *o != owner);
    }

    /// Releases the claims on `ids` of `scope`.
    pub(crate) fn release<'a>(&self, scope: &Scope, ids: impl IntoIterator<Item = &'a str>) {
        let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            if let Some(cs) = claims.get_mut(id) {
                cs.retain(|c| c.scope != *scope);
                if cs.is_empty() {
                    claims.remove(id);
                }
            }
        }
    }

    /// The scopes (and topic ids) in which this process holds `id`, optionally only of
    /// consumer group `group`.
    pub(crate) fn claims_of(&self, id: &str, group: Option<&str>) -> Vec<(Scope, String)> {
        self.claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .into_iter()
            .flatten()
            .filter(|c| group.is_none_or(|g| g == c.scope.consumer_group))
            .map(|c| (c.scope.clone(), c.topic_id.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_found_by_id_and_scope_and_released_by_scope_or_owner() {
        let state = SourceState::new(
            Config::parse(&pseidon_plugin_api::ConfView::new(Vec::new())).unwrap(),
        );
        let scope = |g: &str| Scope {
            cluster_id: "c".into(),
            consumer_group: g.into(),
        };
        let (a, b) = (scope("a"), scope("b"));
        assert!(state.claim(&a, "t:0:0:9", "id1", 1));
        assert!(state.claim(&b, "t:0:0:9", "id1", 2));
        // Another reader cannot take a held claim; the holder can renew it.
        assert!(!state.claim(&a, "t:0:0:9", "id1", 2));
        assert!(state.claim(&a, "t:0:0:9", "id2", 1));
        assert_eq!(state.claim_owner(&a, "t:0:0:9"), Some(1));
        assert_eq!(state.claim_owner(&b, "t:0:0:9"), Some(2));
        assert!(!state.is_claimed(&a, "t:0:10:19"));
        let mut of = state.claims_of("t:0:0:9", None);
        of.sort_by(|x, y| x.0.consumer_group.cmp(&y.0.consumer_group));
        assert_eq!(
            of,
            vec![(a.clone(), "id2".into()), (b.clone(), "id1".into())]
        );
        assert_eq!(
            state.claims_of("t:0:0:9", Some("b")),
            vec![(b.clone(), "id1".into())]
        );
        state.release(&a, ["t:0:0:9"]);
        assert!(!state.is_claimed(&a, "t:0:0:9"));
        assert!(state.is_claimed(&b, "t:0:0:9"));
        state.release_owner(2);
        assert!(state.claims_of("t:0:0:9", None).is_empty());
        assert!(state.claims.lock().unwrap().is_empty());
    }

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

    #[test]
    fn the_id_is_formatted_as_parsed_and_as_plugin_api_formats_it() {
        let k = GroupKey {
            topic: "a:b".into(),
            partition: 2,
            min_offset: 5,
            max_offset: 9,
        };
        assert_eq!(k.id(), "a:b:2:5:9");
        assert_eq!(parse_group_id(&k.id()).unwrap(), k);
        let g = k.message_group(3, Vec::new());
        assert_eq!((g.id(), g.attempt()), ("a:b:2:5:9", 3));
        let row = k.new_group("T1", 5);
        assert_eq!(
            (row.id.as_str(), row.topic_id.as_str()),
            ("a:b:2:5:9", "T1")
        );
        assert_eq!(GroupKey::from(&row), k);
    }
}
