//! Group formation against a temporary status database. The consumer of the tests is
//! one of librdkafka's mock cluster: the topic ids are given, so it is never asked.

use std::{path::PathBuf, sync::Arc};

use pseidon_plugin_api::{ConfEntry, ConfKind, ConfView, GroupStatus};
use rdkafka::{mocking::MockCluster, producer::DefaultProducerContext};

use super::*;
use crate::{config::Config, config::Role, store::now_ms};

const TOPIC_ID: &str = "T1";

fn scope() -> Scope {
    Scope {
        cluster_id: "C1".into(),
        consumer_group: "g".into(),
    }
}

/// A status database, a source state and a consumer (of a mock cluster) for one test.
struct Fixture {
    consumer: BaseConsumer<Ctx>,
    shared: Arc<ReaderShared>,
    state: SourceState,
    store: Arc<Store>,
    dir: PathBuf,
    _cluster: MockCluster<'static, DefaultProducerContext>,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!(
            "pseidon-kafka-batch-{}-{}-{name}",
            std::process::id(),
            now_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let cluster = MockCluster::new(1).unwrap();
        let entry = |key: &str, value: String| ConfEntry {
            key: key.into(),
            kind: ConfKind::String,
            value,
        };
        let conf = ConfView::new(vec![
            entry("kafka.bootstrap.servers", cluster.bootstrap_servers()),
            entry("kafka.group.id", "g".into()),
            entry(
                "pseidon-kafka.status-db",
                dir.join("status.db").display().to_string(),
            ),
        ]);
        let config = Config::parse(&conf).unwrap();
        let shared = Arc::new(ReaderShared::new(60_000));
        let consumer = config
            .client_config(Role::Consumer, &[])
            .unwrap()
            .create_with_context(Ctx::new(
                Arc::clone(&shared),
                Default::default(),
                Duration::ZERO,
            ))
            .unwrap();
        let state = SourceState::new(config);
        let store = state.store().unwrap();
        Fixture {
            consumer,
            shared,
            state,
            store,
            dir,
            _cluster: cluster,
        }
    }

    fn env(&self) -> Env<'_> {
        Env {
            store: &self.store,
            state: &self.state,
            shared: &self.shared,
            consumer: &self.consumer,
        }
    }

    /// A batch of reader 1 in [`scope`], whose topic `t` has the id [`TOPIC_ID`].
    fn batch(&self, group_max: usize, group_max_bytes: usize) -> Batch {
        let mut b = Batch::new(
            1,
            group_max,
            group_max_bytes,
            Duration::from_secs(3600),
            Budget::new(None),
        );
        b.scope = scope();
        b.topic_ids.insert("t".into(), TOPIC_ID.into());
        b
    }

    /// Feeds the messages at `offsets` of `t`/`partition`, each with a value of `bytes`.
    fn feed(
        &self,
        b: &mut Batch,
        partition: i32,
        offsets: impl IntoIterator<Item = i64>,
        bytes: usize,
    ) {
        for o in offsets {
            b.take_with(|| "t", 0, partition, o, || message(o, bytes), &self.env())
                .unwrap();
        }
    }

    /// Marks `min..=max` of `t`/`partition` done in its tracker; its watermark then.
    fn done(&self, partition: i32, min: i64, max: i64) -> i64 {
        let mut trackers = self.shared.lock();
        let t = trackers
            .get_mut("t")
            .and_then(|per| per.get_mut(&partition))
            .unwrap();
        assert!(t.mark_done(min, max), "{min}..={max} is tracked");
        t.watermark()
    }

    /// Records `t:partition:min:max` in the status database with `status`.
    fn record(&self, partition: i32, min: i64, max: i64, status: GroupStatus) {
        let key = GroupKey {
            topic: "t".into(),
            partition,
            min_offset: min,
            max_offset: max,
        };
        let g = key.new_group(TOPIC_ID, (max - min + 1) as u64);
        let ready = if status == GroupStatus::Run {
            GroupStatus::Run
        } else {
            GroupStatus::Ready
        };
        self.store.insert(&scope(), [(&g, ready)]).unwrap();
        match status {
            GroupStatus::Done => {
                self.store.mark_done(&scope(), TOPIC_ID, &g.id).unwrap();
            }
            GroupStatus::Lost => self.store.set_lost(&scope(), TOPIC_ID, &g.id, 1).unwrap(),
            _ => {}
        }
    }

    fn status(&self, id: &str) -> (GroupStatus, u32) {
        let rows = self.store.find(id, None).unwrap();
        assert_eq!(rows.len(), 1, "{id}: {rows:?}");
        (rows[0].status, rows[0].attempt)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn message(offset: i64, bytes: usize) -> MessageParts {
    MessageParts {
        offset,
        timestamp_ms: None,
        key: None,
        value: Some(vec![b'v'; bytes]),
        headers: Vec::new(),
    }
}

fn queued(b: &Batch) -> Vec<String> {
    b.queue.iter().map(|q| q.id().to_string()).collect()
}

fn pending(b: &Batch, partition: i32) -> Vec<i64> {
    b.parts
        .iter()
        .filter(|p| p.partition == partition)
        .flat_map(|p| p.pending.iter().map(|m| m.offset))
        .collect()
}

#[test]
fn groups_close_at_group_max_messages() {
    let f = Fixture::new("max-messages");
    let mut b = f.batch(3, usize::MAX);
    f.feed(&mut b, 0, 0..8, 1);
    assert_eq!(queued(&b), ["t:0:0:2", "t:0:3:5"]);
    assert_eq!(pending(&b, 0), [6, 7]);
    // Queued groups are claimed by the reader and registered with the watermark.
    assert!(f.state.is_claimed(&scope(), "t:0:0:2") && f.state.is_claimed(&scope(), "t:0:3:5"));
    assert_eq!(f.done(0, 3, 5), 0, "the first group is not done yet");
    assert_eq!(f.done(0, 0, 2), 6);
}

#[test]
fn groups_close_at_group_max_bytes_and_a_larger_message_is_a_group_of_its_own() {
    let f = Fixture::new("max-bytes");
    let mut b = f.batch(100, 10);
    f.feed(&mut b, 0, 0..4, 4); // 4 + 4, then 4 would make 12 > 10
    f.feed(&mut b, 0, [4], 25); // larger than the limit alone
    f.feed(&mut b, 0, [5], 10); // exactly the limit
    f.feed(&mut b, 0, [6], 3);
    assert_eq!(queued(&b), ["t:0:0:1", "t:0:2:3", "t:0:4:4", "t:0:5:5"]);
    assert_eq!(pending(&b, 0), [6]);
    let Some(Queued::New { parts, .. }) = b.queue.get(2) else {
        panic!("not recorded yet");
    };
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].value.as_ref().map(Vec::len), Some(25));
}

#[test]
fn known_ranges_are_skipped_and_the_tracker_accounts_for_them() {
    let f = Fixture::new("known");
    f.record(0, 10, 19, GroupStatus::Done);
    // Unfinished and held by nobody: read and handed out again.
    f.record(0, 25, 29, GroupStatus::Ready);
    // Unfinished and held by this process (being replayed): skipped, holds the watermark.
    f.record(0, 40, 44, GroupStatus::Run);
    assert!(f.state.claim(&scope(), "t:0:40:44", TOPIC_ID, 99));
    let mut b = f.batch(100, usize::MAX);
    f.feed(&mut b, 0, 0..50, 1);
    // A known offset closes the pending group before it.
    assert_eq!(queued(&b), ["t:0:0:9", "t:0:20:39"]);
    assert_eq!(pending(&b, 0), (45..50).collect::<Vec<_>>());
    assert_eq!(
        f.done(0, 0, 9),
        20,
        "the skipped done range 10..=19 is passed"
    );
    assert_eq!(f.done(0, 20, 39), 40, "the replayed group holds it");
    assert_eq!(
        f.done(0, 40, 44),
        45,
        "skipped offsets 40..=44 count as read"
    );
}

#[test]
fn a_revoke_drops_pending_and_queued_groups_of_the_partition_and_releases_their_claims() {
    let f = Fixture::new("revoke");
    let mut b = f.batch(2, usize::MAX);
    f.feed(&mut b, 0, 0..5, 1);
    f.feed(&mut b, 1, 0..3, 1);
    assert_eq!(queued(&b), ["t:0:0:1", "t:0:2:3", "t:1:0:1"]);
    assert!(b.holds("t", 0) && b.holds("t", 1));
    // What the rebalance callback does on a revoke of t/0.
    f.shared.lock().get_mut("t").unwrap().remove(&0);
    f.shared.revoked.lock().unwrap().push(("t".into(), 0));
    f.shared.has_revoked.store(true, Ordering::SeqCst);
    b.apply_revokes(&f.env());
    assert_eq!(queued(&b), ["t:1:0:1"]);
    assert!(pending(&b, 0).is_empty() && !b.holds("t", 0));
    assert_eq!(pending(&b, 1), [2]);
    assert!(!f.state.is_claimed(&scope(), "t:0:0:1"));
    assert!(!f.state.is_claimed(&scope(), "t:0:2:3"));
    assert!(f.state.is_claimed(&scope(), "t:1:0:1"));
    // Read again after a new assignment: a new partition state at the new position.
    f.feed(&mut b, 0, 4..6, 1);
    assert_eq!(queued(&b), ["t:1:0:1", "t:0:4:5"]);
}

#[test]
fn record_queued_records_the_first_run_and_the_rest_ready_with_attempts_from_the_store() {
    let f = Fixture::new("record");
    // Handed out before by a reader that is gone: read again, its attempt goes on.
    f.record(0, 2, 3, GroupStatus::Run);
    let mut b = f.batch(2, usize::MAX);
    f.feed(&mut b, 0, 0..6, 1);
    assert_eq!(queued(&b), ["t:0:0:1", "t:0:2:3", "t:0:4:5"]);
    assert!(
        b.record_queued(&f.env(), true).unwrap(),
        "the first is recorded `run`"
    );
    assert_eq!(f.status("t:0:0:1"), (GroupStatus::Run, 1));
    assert_eq!(f.status("t:0:2:3"), (GroupStatus::Ready, 2));
    assert_eq!(f.status("t:0:4:5"), (GroupStatus::Ready, 1));
    let groups: Vec<_> = b
        .queue
        .iter()
        .map(|q| match q {
            Queued::Recorded { group, topic_id } => {
                assert_eq!(topic_id, TOPIC_ID);
                (
                    group.id().to_string(),
                    group.attempt(),
                    group.messages().len(),
                )
            }
            Queued::New { .. } => panic!("not recorded"),
        })
        .collect();
    assert_eq!(
        groups,
        [
            ("t:0:0:1".to_string(), 1, 2),
            ("t:0:2:3".to_string(), 2, 2),
            ("t:0:4:5".to_string(), 1, 2)
        ]
    );
    // Nothing new: nothing recorded.
    assert!(!b.record_queued(&f.env(), true).unwrap());
    // Not handed out (an error ends the call): every new group `ready`.
    f.feed(&mut b, 0, 6..8, 1);
    assert!(!b.record_queued(&f.env(), false).unwrap());
    assert_eq!(f.status("t:0:6:7"), (GroupStatus::Ready, 1));
}

fn part(known: Vec<(i64, i64)>) -> Part {
    Part {
        topic: "t".into(),
        topic_id: String::new(),
        partition: 0,
        handle: 0,
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

#[test]
fn messages_go_to_their_topics_part_when_known_by_their_topic_handle() {
    let f = Fixture::new("handles");
    let mut b = f.batch(3, usize::MAX);
    b.topic_ids.insert("u".into(), "U1".into());
    // Two topics with the same partition number, in runs and interleaved, each with
    // its own handle: every message lands in its own topic's group.
    let feed = |b: &mut Batch, topic: &'static str, handle: usize, o: i64| {
        b.take_with(|| topic, handle, 0, o, || message(o, 1), &f.env())
            .unwrap();
    };
    for o in 0..2 {
        feed(&mut b, "t", 0x1000, o);
    }
    feed(&mut b, "u", 0x2000, 100);
    feed(&mut b, "t", 0x1000, 2);
    feed(&mut b, "u", 0x2000, 101);
    feed(&mut b, "u", 0x2000, 102);
    assert_eq!(queued(&b), ["t:0:0:2", "u:0:100:102"]);
    // The name is asked for only when the handle is not the last part's.
    b.take_with(
        || panic!("the topic name was asked for, though its handle is known"),
        0x2000,
        0,
        103,
        || message(103, 1),
        &f.env(),
    )
    .unwrap();
    let named = std::cell::Cell::new(0);
    let topic = || {
        named.set(named.get() + 1);
        "t"
    };
    b.take_with(topic, 0x1000, 0, 3, || message(3, 1), &f.env())
        .unwrap();
    assert_eq!(named.get(), 1, "a switch of topic asks for the name");
    let parts: Vec<(&str, Vec<i64>)> = b
        .parts
        .iter()
        .map(|p| {
            (
                p.topic.as_str(),
                p.pending.iter().map(|m| m.offset).collect(),
            )
        })
        .collect();
    assert_eq!(parts, [("t", vec![3]), ("u", vec![103])]);
}
