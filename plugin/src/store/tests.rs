use super::{open::suffixed, schema::SCHEMA_VERSION, *};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "pseidon-kafka-store-{}-{}-{name}",
        std::process::id(),
        now_ms()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("status.db")
}

fn scope(group: &str) -> Scope {
    Scope {
        cluster_id: "C1".into(),
        consumer_group: group.into(),
    }
}

fn g(topic: &str, p: i32, min: i64, max: i64) -> NewGroup {
    NewGroup {
        id: format!("{topic}:{p}:{min}:{max}"),
        topic: topic.into(),
        topic_id: "T1".into(),
        partition: p,
        min_offset: min,
        max_offset: max,
        messages: u64::try_from(max - min + 1).unwrap(),
    }
}

fn ready(s: &Store, sc: &Scope, groups: &[NewGroup]) -> Vec<u32> {
    s.insert(sc, groups.iter().map(|g| (g, GroupStatus::Ready)))
        .unwrap()
}

fn all(s: &Store) -> Vec<GroupInfo> {
    s.list(&GroupFilter::default()).unwrap()
}

fn tid(_: &str) -> String {
    "T1".into()
}

#[test]
fn lifecycle_ready_run_done() {
    let path = tmp("life");
    let s = Store::open(&path, 1000).unwrap();
    let a = scope("gA");
    assert_eq!(
        ready(&s, &a, &[g("t", 0, 0, 9), g("t", 0, 10, 19)]),
        vec![1, 1]
    );
    s.set_run(&a, "T1", "t:0:0:9", 1, 7).unwrap();
    assert_eq!(
        s.mark_done(&a, "T1", "t:0:0:9").unwrap(),
        Some(MarkDone::Marked)
    );
    assert_eq!(
        s.mark_done(&a, "T1", "t:0:0:9").unwrap(),
        Some(MarkDone::Unchanged(GroupStatus::Done))
    );
    assert_eq!(s.mark_done(&a, "T1", "t:0:5:9").unwrap(), None);
    let unfinished = s.unfinished(&a, &["t".into()], tid).unwrap();
    assert_eq!(unfinished.len(), 1);
    assert_eq!(unfinished[0].id, "t:0:10:19");
    assert_eq!(unfinished[0].status, GroupStatus::Ready);
    assert_eq!(unfinished[0].consumer_group, "gA");
    assert_eq!(unfinished[0].cluster_id, "C1");
    assert_eq!(unfinished[0].topic_id, "T1");
    // Seen again: attempt grows.
    assert_eq!(ready(&s, &a, &[g("t", 0, 10, 19)]), vec![2]);
    let r = s.ranges_from(&a, "t", "T1", 0, 10).unwrap();
    assert_eq!(r.len(), 1);
    s.set_lost(&a, "T1", "t:0:10:19", 3).unwrap();
    assert_eq!(
        s.mark_done(&a, "T1", "t:0:10:19").unwrap(),
        Some(MarkDone::Unchanged(GroupStatus::Lost))
    );
    let lost = s
        .list(&GroupFilter {
            status: Some(GroupStatus::Lost),
            ..GroupFilter::default()
        })
        .unwrap();
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].attempt, 3);
}

#[test]
fn consumer_groups_and_clusters_do_not_see_each_others_rows() {
    let s = Store::open(&tmp("scopes"), 1000).unwrap();
    let (a, b) = (scope("gA"), scope("gB"));
    let other_cluster = Scope {
        cluster_id: "C2".into(),
        consumer_group: "gA".into(),
    };
    ready(&s, &a, &[g("t", 0, 0, 99)]);
    s.mark_done(&a, "T1", "t:0:0:99").unwrap();
    ready(&s, &a, &[g("t", 0, 100, 199)]);
    for sc in [&b, &other_cluster] {
        assert!(
            s.ranges_from(sc, "t", "T1", 0, 0).unwrap().is_empty(),
            "{sc}"
        );
        assert!(s.unfinished(sc, &["t".into()], tid).unwrap().is_empty());
        assert_eq!(s.mark_done(sc, "T1", "t:0:100:199").unwrap(), None);
    }
    assert_eq!(s.ranges_from(&a, "t", "T1", 0, 0).unwrap().len(), 2);
    // The same id in another group is another row.
    assert_eq!(ready(&s, &b, &[g("t", 0, 0, 99)]), vec![1]);
    assert_eq!(s.find("t:0:0:99", None).unwrap().len(), 2);
    assert_eq!(s.find("t:0:0:99", Some("gB")).unwrap().len(), 1);
    let only_b = s
        .list(&GroupFilter {
            consumer_group: Some("gB".into()),
            ..GroupFilter::default()
        })
        .unwrap();
    assert_eq!(only_b.len(), 1);
    assert_eq!(only_b[0].status, GroupStatus::Ready);
}

#[test]
fn a_new_incarnation_retires_the_old_rows() {
    let s = Store::open(&tmp("incarnation"), 1000).unwrap();
    let a = scope("gA");
    ready(&s, &a, &[g("t", 0, 0, 99), g("t", 0, 100, 149)]);
    s.mark_done(&a, "T1", "t:0:0:99").unwrap();
    // The same incarnation: nothing retired.
    let r = s.retire_incarnations(&a, "t", "T1").unwrap();
    assert!(r.lost.is_empty() && r.finished == 0);
    // Recreated: topic id T2.
    let r = s.retire_incarnations(&a, "t", "T2").unwrap();
    assert_eq!(r.finished, 1);
    assert_eq!(r.lost.len(), 1);
    assert_eq!(r.lost[0].id, "t:0:100:149");
    assert_eq!(r.old_ids, vec!["T1".to_string()]);
    let t2 = |_: &str| "T2".to_string();
    assert!(s.ranges_from(&a, "t", "T2", 0, 0).unwrap().is_empty());
    assert!(s.unfinished(&a, &["t".into()], t2).unwrap().is_empty());
    // The new incarnation's group of the same id is a row of its own.
    let mut n = g("t", 0, 0, 99);
    n.topic_id = "T2".into();
    assert_eq!(s.insert(&a, [(&n, GroupStatus::Run)]).unwrap(), vec![1]);
    assert_eq!(
        s.mark_done(&a, "T2", "t:0:0:99").unwrap(),
        Some(MarkDone::Marked)
    );
    assert_eq!(all(&s).len(), 3);
}

#[test]
fn insert_records_run_and_ready_in_one_call() {
    let s = Store::open(&tmp("insert"), 1000).unwrap();
    let a = scope("gA");
    let (x, y) = (g("t", 0, 0, 9), g("t", 0, 10, 19));
    assert_eq!(
        s.insert(&a, [(&x, GroupStatus::Run), (&y, GroupStatus::Ready)])
            .unwrap(),
        vec![1, 1]
    );
    let status = |id: &str| {
        all(&s)
            .into_iter()
            .find(|i| i.id == id)
            .map(|i| (i.status, i.attempt))
    };
    assert_eq!(status("t:0:0:9"), Some((GroupStatus::Run, 1)));
    assert_eq!(status("t:0:10:19"), Some((GroupStatus::Ready, 1)));
    // Seen again (read again by the group consumer): attempt grows.
    assert_eq!(s.insert(&a, [(&y, GroupStatus::Run)]).unwrap(), vec![2]);
    assert_eq!(status("t:0:10:19"), Some((GroupStatus::Run, 2)));
    assert_eq!(
        s.mark_done(&a, "T1", "t:0:0:9").unwrap(),
        Some(MarkDone::Marked)
    );
}

#[test]
fn survives_reopen_and_second_instance_is_refused() {
    let path = tmp("lock");
    let s = Store::open(&path, 1000).unwrap();
    let a = scope("gA");
    ready(&s, &a, &[g("t", 1, 5, 6)]);
    let err = Store::open(&path, 1000)
        .err()
        .expect("second open must fail");
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(matches!(err, Error::StatusDbLocked { .. }), "{err:?}");
    assert!(
        text.contains("in use by another live pseidon-kafka instance"),
        "{text}"
    );
    // A symlink to the same file is the same database: refused too.
    let link = path.with_file_name("link.db");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let err = Store::open(&link, 1000).err().expect("a symlink must fail");
    assert!(matches!(err, Error::StatusDbLocked { .. }), "{err}");
    // A listing still works, read-only, while the owner runs.
    let rows = list_read_only(&path, &GroupFilter::default()).unwrap();
    assert_eq!(rows.len(), 1);
    drop(s);
    let s = Store::open(&link, 1000).unwrap();
    assert_eq!(s.unfinished(&a, &["t".into()], tid).unwrap().len(), 1);
}

#[test]
fn done_rows_are_pruned_after_retention() {
    let path = tmp("prune");
    let s = Store::open(&path, 0).unwrap();
    let a = scope("gA");
    ready(&s, &a, &[g("t", 0, 0, 1), g("t", 0, 2, 3)]);
    s.mark_done(&a, "T1", "t:0:0:1").unwrap();
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(s.prune().unwrap(), 1);
    assert_eq!(all(&s).len(), 1);
}

#[test]
fn schema_1_is_migrated_without_forgetting_unfinished_groups() {
    let path = tmp("migrate");
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE groups (
                id TEXT PRIMARY KEY NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
                min_offset INTEGER NOT NULL, max_offset INTEGER NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('ready', 'run', 'done', 'lost')),
                attempt INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
             CREATE INDEX groups_by_partition ON groups (topic, partition, max_offset);
             CREATE INDEX groups_by_status ON groups (status, updated_ms);
             PRAGMA user_version = 1;
             INSERT INTO groups VALUES ('t:0:0:9', 't', 0, 0, 9, 'done', 1, 9999999999999);
             INSERT INTO groups VALUES ('t:0:10:19', 't', 0, 10, 19, 'run', 2, 9999999999999);
             INSERT INTO groups VALUES ('u:0:0:9', 'u', 0, 0, 9, 'ready', 1, 9999999999999);",
        )
        .unwrap();
    }
    // A listing of the old schema, read-only, before anything migrates it.
    assert_eq!(
        list_read_only(&path, &GroupFilter::default())
            .unwrap()
            .len(),
        3
    );
    let s = Store::open(&path, 1000).unwrap();
    let rows = all(&s);
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter()
            .all(|r| r.consumer_group.is_empty() && r.cluster_id.is_empty())
    );
    let a = scope("gA");
    // Old done rows hide nothing from any scope.
    assert!(s.ranges_from(&a, "t", "T1", 0, 0).unwrap().is_empty());
    // The first reader of `t` adopts its unfinished row, and replays it.
    assert_eq!(s.adopt_unscoped(&a, &["t".into()]).unwrap(), 1);
    let u = s.unfinished(&a, &["t".into()], tid).unwrap();
    assert_eq!(u.len(), 1);
    assert_eq!((u[0].id.as_str(), u[0].attempt), ("t:0:10:19", 2));
    assert_eq!(u[0].topic_id, "", "its incarnation is unknown");
    // `u`'s row waits for a reader of `u`.
    assert_eq!(s.find("u:0:0:9", None).unwrap()[0].consumer_group, "");
    drop(s);
    let s = Store::open(&path, 1000).unwrap();
    assert_eq!(all(&s).len(), 3, "migrated once");
    let user_version: i64 = {
        let c = Connection::open(&path).unwrap();
        c.query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(user_version, SCHEMA_VERSION);
}

#[test]
fn unwritable_shm_file_is_a_clear_error() {
    // As root every file is writable; a directory in place of -shm is not.
    let path = tmp("shm");
    std::fs::create_dir_all(suffixed(&path, "-shm")).unwrap();
    let err = Store::open(&path, 1000).err().expect("must fail");
    let text = err.to_string();
    assert!(text.contains("-shm"), "{text}");
}

#[test]
fn garbage_file_is_a_clear_error_and_is_not_reset() {
    let path = tmp("corrupt");
    let garbage = vec![0xA5u8; 8192];
    std::fs::write(&path, &garbage).unwrap();
    let err = Store::open(&path, 1000).err().expect("garbage must fail");
    assert!(matches!(err, Error::StatusDb { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("not a database"), "{text}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        garbage,
        "the file must not be reset"
    );
}

#[test]
fn path_below_a_regular_file_is_a_clear_error() {
    let path = tmp("notdir");
    std::fs::write(&path, b"x").unwrap();
    let below = path.join("status.db");
    let err = Store::open(&below, 1000).err().expect("must fail");
    assert!(
        err.to_string().contains(&below.display().to_string()),
        "{err}"
    );
}

#[test]
fn foreign_schema_is_refused() {
    let path = tmp("foreign");
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE groups (name TEXT)").unwrap();
    }
    let err = Store::open(&path, 1000).err().expect("must fail");
    assert!(err.to_string().contains("another schema"), "{err}");
}

#[test]
fn message_counts_are_recorded_and_updated_when_handed_out() {
    let s = Store::open(&tmp("counts"), 1000).unwrap();
    let a = scope("gA");
    ready(&s, &a, &[g("t", 0, 0, 9), g("t", 0, 10, 19)]);
    let count = |id: &str| all(&s).into_iter().find(|i| i.id == id).unwrap().messages;
    assert_eq!(count("t:0:0:9"), Some(10));
    // Handed out with fewer messages (compacted offsets): the count follows.
    s.set_run(&a, "T1", "t:0:0:9", 2, 7).unwrap();
    assert_eq!(count("t:0:0:9"), Some(7));
    // Formed again (read again by the group consumer): the new count.
    let mut again = g("t", 0, 10, 19);
    again.messages = 4;
    s.insert(&a, [(&again, GroupStatus::Run)]).unwrap();
    assert_eq!(count("t:0:10:19"), Some(4));
}

#[test]
fn since_filters_by_update_time() {
    let s = Store::open(&tmp("since"), 1000).unwrap();
    let a = scope("gA");
    ready(&s, &a, &[g("t", 0, 0, 9), g("t", 0, 10, 19)]);
    s.with(|c| {
        c.execute(
            "UPDATE groups SET updated_ms = 1000 WHERE id = 't:0:0:9'",
            [],
        )
    })
    .unwrap();
    let since = |ms: i64| {
        s.list(&GroupFilter {
            updated_since_ms: Some(ms),
            ..GroupFilter::default()
        })
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect::<Vec<_>>()
    };
    assert_eq!(since(1000), ["t:0:0:9", "t:0:10:19"]);
    assert_eq!(since(1001), ["t:0:10:19"]);
    assert!(since(now_ms() + 60_000).is_empty());
}

#[test]
fn replay_sets_a_done_group_ready_and_leaves_the_others() {
    let s = Store::open(&tmp("replay"), 1000).unwrap();
    let (a, b) = (scope("gA"), scope("gB"));
    s.insert(&a, [(&g("t", 0, 0, 9), GroupStatus::Run)])
        .unwrap();
    s.mark_done(&a, "T1", "t:0:0:9").unwrap();
    let (prev, row) = s.replay(&a, "T1", "t:0:0:9").unwrap().unwrap();
    assert_eq!(prev, GroupStatus::Done);
    assert_eq!((row.status, row.attempt), (GroupStatus::Ready, 1));
    assert_eq!(row.messages, Some(10));
    // The next reader replays it: it is unfinished again.
    let u = s.unfinished(&a, &["t".into()], tid).unwrap();
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].id, "t:0:0:9");
    // Ready stays ready; another scope does not see it.
    let (prev, row) = s.replay(&a, "T1", "t:0:0:9").unwrap().unwrap();
    assert_eq!((prev, row.status), (GroupStatus::Ready, GroupStatus::Ready));
    assert!(s.replay(&b, "T1", "t:0:0:9").unwrap().is_none());
    assert!(s.replay(&a, "T1", "t:0:0:8").unwrap().is_none());
    // A lost group stays lost: its messages are gone.
    ready(&s, &a, &[g("t", 0, 10, 19)]);
    s.set_lost(&a, "T1", "t:0:10:19", 2).unwrap();
    let (prev, row) = s.replay(&a, "T1", "t:0:10:19").unwrap().unwrap();
    assert_eq!((prev, row.status), (GroupStatus::Lost, GroupStatus::Lost));
    // Done again after the replay is handed out and marked.
    s.set_run(&a, "T1", "t:0:0:9", 2, 10).unwrap();
    assert_eq!(
        s.mark_done(&a, "T1", "t:0:0:9").unwrap(),
        Some(MarkDone::Marked)
    );
    let row = s.find("t:0:0:9", Some("gA")).unwrap().remove(0);
    assert_eq!((row.status, row.attempt), (GroupStatus::Done, 2));
}

#[test]
fn schema_2_gains_the_message_count_and_lists_read_only_before() {
    let path = tmp("migrate2");
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE groups (
                cluster_id TEXT NOT NULL, consumer_group TEXT NOT NULL, topic_id TEXT NOT NULL,
                id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
                min_offset INTEGER NOT NULL, max_offset INTEGER NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('ready', 'run', 'done', 'lost')),
                attempt INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
                PRIMARY KEY (cluster_id, consumer_group, topic_id, id));
             PRAGMA user_version = 2;
             INSERT INTO groups VALUES ('C1', 'gA', 'T1', 't:0:0:9', 't', 0, 0, 9, 'run', 1, 5);",
        )
        .unwrap();
    }
    let rows = list_read_only(&path, &GroupFilter::default()).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].messages, None, "schema 2 knows no count");
    let s = Store::open(&path, 1000).unwrap();
    assert_eq!(all(&s)[0].messages, None, "old rows keep an unknown count");
    ready(&s, &scope("gA"), &[g("t", 0, 10, 19)]);
    assert_eq!(all(&s)[1].messages, Some(10));
    // What a plugin of schema 2 does still works on the new table.
    s.with(|c| {
        c.execute(
            "INSERT INTO groups (cluster_id, consumer_group, topic_id, id, topic, partition,
                                 min_offset, max_offset, status, attempt, updated_ms)
             VALUES ('C1', 'gA', 'T1', 't:0:20:29', 't', 0, 20, 29, 'ready', 1, 5)",
            [],
        )
    })
    .unwrap();
    assert_eq!(all(&s).len(), 3);
    drop(s);
    let user_version: i64 = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(user_version, SCHEMA_VERSION);
    assert_eq!(
        list_read_only(&path, &GroupFilter::default())
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn a_listing_of_a_database_being_created_is_empty_and_of_a_foreign_one_an_error() {
    // The first instance has created the file but not the schema yet.
    let path = tmp("being-created");
    std::fs::File::create(&path).unwrap();
    let rows = list_read_only(&path, &GroupFilter::default()).unwrap();
    assert!(rows.is_empty());
    // Another program's SQLite database: named, not listed as empty.
    let path = tmp("foreign");
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE other (x INTEGER);")
        .unwrap();
    let err = list_read_only(&path, &GroupFilter::default()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("not a status database"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
}

#[test]
fn schema_3_is_rebuilt_to_4_keeping_every_row_and_an_extra_column() {
    let path = tmp("migrate3");
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE groups (
                cluster_id TEXT NOT NULL, consumer_group TEXT NOT NULL, topic_id TEXT NOT NULL,
                id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
                min_offset INTEGER NOT NULL, max_offset INTEGER NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('ready', 'run', 'done', 'lost')),
                attempt INTEGER NOT NULL, updated_ms INTEGER NOT NULL, messages INTEGER,
                PRIMARY KEY (cluster_id, consumer_group, topic_id, id));
             ALTER TABLE groups ADD COLUMN txn TEXT;
             PRAGMA user_version = 3;
             INSERT INTO groups VALUES ('C1', 'gA', 'T1', 't:0:0:9', 't', 0, 0, 9, 'run', 2, 5, 10, 'tx/7');
             INSERT INTO groups VALUES ('C1', 'gA', 'T1', 't:0:10:19', 't', 0, 10, 19, 'done', 1, 5, 10, NULL);",
        )
        .unwrap();
    }
    // Read-only before the migration: the schema 4 columns read as unknown.
    let rows = list_read_only(&path, &GroupFilter::default()).unwrap();
    assert_eq!((rows.len(), rows[0].reason.clone()), (2, None));
    let s = Store::open(&path, u64::MAX).unwrap();
    let rows = all(&s);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].status, rows[0].attempt, rows[0].messages),
        (GroupStatus::Run, 2, Some(10))
    );
    let txn: Option<String> = s
        .with(|c| {
            c.query_row("SELECT txn FROM groups WHERE id = 't:0:0:9'", [], |r| {
                r.get(0)
            })
        })
        .unwrap();
    assert_eq!(
        txn.as_deref(),
        Some("tx/7"),
        "another version's column is kept"
    );
    // The new statuses pass the CHECK now.
    let a = scope("gA");
    let f = s
        .mark_failed(&a, "T1", "t:0:0:9", "bad", 42)
        .unwrap()
        .unwrap();
    assert_eq!(
        (f.status, f.reason.as_deref(), f.retry_at_ms),
        (GroupStatus::Failed, Some("bad"), Some(42))
    );
    drop(s);
    let user_version: i64 = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(user_version, 4);
    // Opening again migrates nothing and keeps the rows.
    let s = Store::open(&path, u64::MAX).unwrap();
    assert_eq!(all(&s).len(), 2);
}

#[test]
fn failed_split_and_dead_follow_the_state_machine() {
    let path = tmp("poison");
    let s = Store::open(&path, u64::MAX).unwrap();
    let a = scope("gA");
    s.insert(&a, [(&g("t", 0, 0, 9), GroupStatus::Run)])
        .unwrap();
    // Failed: still unfinished (replayed at the next start), not passable.
    let f = s
        .mark_failed(&a, "T1", "t:0:0:9", "no", 7)
        .unwrap()
        .unwrap();
    assert_eq!(f.status, GroupStatus::Failed);
    assert!(!f.status.is_passable());
    let un = s.unfinished(&a, &["t".into()], tid).unwrap();
    assert_eq!(un.len(), 1);
    // Handed out again: run, the reason stays on record.
    s.set_run(&a, "T1", "t:0:0:9", 2, 10).unwrap();
    assert_eq!(all(&s)[0].status, GroupStatus::Run);
    assert_eq!(all(&s)[0].reason.as_deref(), Some("no"));
    s.mark_failed(&a, "T1", "t:0:0:9", "no again", 8).unwrap();
    // Split: parent split, halves ready with parent set, in one call.
    let h1 = g("t", 0, 0, 4);
    let h2 = g("t", 0, 5, 9);
    assert!(s.split(&a, "T1", "t:0:0:9", [&h1, &h2]).unwrap());
    assert!(
        !s.split(&a, "T1", "t:0:0:9", [&h1, &h2]).unwrap(),
        "split once"
    );
    let rows = all(&s);
    let by = |id: &str| rows.iter().find(|r| r.id == id).unwrap().clone();
    assert_eq!(by("t:0:0:9").status, GroupStatus::Split);
    assert_eq!(
        (
            by("t:0:0:4").status,
            by("t:0:0:4").attempt,
            by("t:0:0:4").parent.as_deref()
        ),
        (GroupStatus::Ready, 0, Some("t:0:0:9"))
    );
    // Known ranges leave the split parent out; unfinished lists only the halves.
    let known = s.ranges_from(&a, "t", "T1", 0, 0).unwrap();
    assert_eq!(
        known.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        vec!["t:0:0:4", "t:0:5:9"]
    );
    assert_eq!(s.unfinished(&a, &["t".into()], tid).unwrap().len(), 2);
    // Dead: passable, finished; a finished row is not failed again.
    assert!(s.set_dead(&a, "T1", "t:0:0:4").unwrap());
    assert!(!s.set_dead(&a, "T1", "t:0:0:4").unwrap());
    assert!(
        s.mark_failed(&a, "T1", "t:0:0:4", "x", 1)
            .unwrap()
            .is_none()
    );
    assert_eq!(
        s.list(&GroupFilter {
            status: Some(GroupStatus::Dead),
            ..Default::default()
        })
        .unwrap()
        .len(),
        1
    );
    // Replay by hand accepts a dead group.
    let (prev, now) = s.replay(&a, "T1", "t:0:0:4").unwrap().unwrap();
    assert_eq!((prev, now.status), (GroupStatus::Dead, GroupStatus::Ready));
    // A failed group can still be marked done.
    s.mark_failed(&a, "T1", "t:0:5:9", "y", 1).unwrap();
    assert_eq!(
        s.mark_done(&a, "T1", "t:0:5:9").unwrap(),
        Some(MarkDone::Marked)
    );
    assert_eq!(by("t:0:5:9").status, GroupStatus::Ready);
    let counts = s.count_by_status().unwrap();
    assert!(counts.contains(&("split".to_string(), 1)), "{counts:?}");
}

/// The status `CHECK` of a new database and the guarded status updates are written with
/// `=` and `OR`: SQLite builds an `IN (...)` list of constants into an ephemeral table on
/// every execution of the statement (the CHECK's seven statuses, the guard's three):
/// a third of a bare UPDATE's CPU, a sixth of a `mark_done`'s. The CHECK still refuses
/// an unknown status.
#[test]
fn status_updates_build_no_ephemeral_table_and_the_check_still_holds() {
    let path = tmp("ephemeral");
    let s = Store::open(&path, 1000).unwrap();
    let a = scope("gE");
    ready(&s, &a, &[g("t", 0, 0, 9)]);
    let conn = Connection::open(&path).unwrap();
    for sql in [
        "UPDATE groups SET status = 'done', txn = NULL, updated_ms = 1
         WHERE cluster_id = 'C1' AND consumer_group = 'gE' AND topic_id = 'T1'
           AND id = 't:0:0:9' AND (status = 'ready' OR status = 'run' OR status = 'failed')",
        "INSERT INTO groups (cluster_id, consumer_group, topic_id, id, topic, partition,
           min_offset, max_offset, status, attempt, updated_ms)
         VALUES ('C1', 'gE', 'T1', 't:0:10:19', 't', 0, 10, 19, 'ready', 1, 1)",
    ] {
        let ops: Vec<String> = conn
            .prepare(&format!("EXPLAIN {sql}"))
            .unwrap()
            .query_map([], |r| r.get::<_, String>(1))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(ops.iter().any(|o| o == "Halt"), "{ops:?}");
        assert!(!ops.iter().any(|o| o == "OpenEphemeral"), "{sql}: {ops:?}");
    }
    let bad = conn.execute(
        "UPDATE groups SET status = 'bogus' WHERE id = 't:0:0:9'",
        [],
    );
    assert!(bad.is_err(), "{bad:?}");
    assert_eq!(
        s.mark_done(&a, "T1", "t:0:0:9").unwrap(),
        Some(MarkDone::Marked)
    );
}
