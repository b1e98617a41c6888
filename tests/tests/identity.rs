//! The status database knows what it tracks (issue "No silent loss", cases 1, 2 and 9):
//! two consumer groups on one status database each read everything; a topic deleted
//! and recreated under the same name is read from its first message; offsets reset by
//! an admin are reported; a database of schema 1 is migrated without forgetting an
//! unfinished group. Every outcome is checked with an independent client (kcat,
//! Kafka's consumer-groups tool) besides what `pseidon` printed.

use std::{
    collections::BTreeSet,
    io::Write,
    path::PathBuf,
    process::{Command, Output, Stdio},
    rc::Rc,
    time::{Duration, Instant},
};

use pseidon_tests::{OwnBroker, Workdir, bootstrap, create_topic, kafka_tool, kcat_values, unique};

/// A conf of one work dir (the Kafka plugin, one status database for every run).
struct Setup {
    dir: Rc<Workdir>,
    conf: PathBuf,
}

const SETTINGS: &str = "group-max-messages = 25";

impl Setup {
    fn new() -> Setup {
        let dir = Workdir::kafka("pseidon-identity", "", SETTINGS);
        Setup {
            conf: dir.conf.clone(),
            dir: Rc::new(dir),
        }
    }

    /// The same plugins and status database, with the brokers at `bootstrap`.
    fn sibling(&self, bootstrap: &str) -> Setup {
        let name = format!("{}.toml", unique("sibling"));
        let kafka = format!("bootstrap.servers = {bootstrap:?}");
        Setup {
            conf: self.dir.write_conf(&name, "", &kafka, SETTINGS),
            dir: Rc::clone(&self.dir),
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.db()
    }

    fn pseidon(&self, args: &[&str]) -> Output {
        self.dir.run_with(&self.conf, args, b"")
    }

    /// `consume -e [--mark-done]` in `group`: the values printed, and stderr.
    fn consume(&self, topic: &str, group: &str, mark_done: bool) -> (Vec<String>, String) {
        let mut args = vec![
            "consume",
            "--topic",
            topic,
            "--group",
            group,
            "--exit-at-end",
        ];
        if mark_done {
            args.push("--mark-done");
        }
        let out = self.pseidon(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "consume {group}: {stderr}");
        let values = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        (values, stderr)
    }

    /// `pseidon groups` rows (id, status, consumer group) for `topic`, optionally of one group.
    fn groups(&self, topic: &str, group: Option<&str>) -> Vec<(String, String, String)> {
        self.groups_with_cluster(topic, group)
            .into_iter()
            .map(|(id, status, group, _)| (id, status, group))
            .collect()
    }

    /// `pseidon groups` rows (id, status, consumer group, cluster) for `topic`.
    fn groups_with_cluster(
        &self,
        topic: &str,
        group: Option<&str>,
    ) -> Vec<(String, String, String, String)> {
        let mut args = vec!["groups", "--topic", topic];
        if let Some(g) = group {
            args.extend(["--group", g]);
        }
        let out = self.pseidon(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .filter(|l| !l.ends_with("group(s)"))
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                // id status attempt date time group cluster
                (
                    f[0].to_string(),
                    f[1].to_string(),
                    f[5].to_string(),
                    f[6].to_string(),
                )
            })
            .collect()
    }
}

/// Writes `values` to `topic` with kcat (an independent producer).
fn kcat_produce(topic: &str, values: &[String]) {
    kcat_produce_at(&bootstrap(), topic, values);
}

/// Writes `values` to `topic` of the brokers at `bootstrap` with kcat.
fn kcat_produce_at(bootstrap: &str, topic: &str, values: &[String]) {
    let mut child = Command::new("kcat")
        .args(["-b", bootstrap, "-t", topic, "-P"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(format!("{}\n", values.join("\n")).as_bytes())
        .unwrap();
    drop(input);
    assert!(child.wait().unwrap().success(), "kcat -P {topic}");
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// The committed offset of `group` on `topic` partition 0, by Kafka's own tool.
fn committed_offset(group: &str, topic: &str) -> Option<i64> {
    committed_offset_at(&bootstrap(), group, topic)
}

/// [`committed_offset`] on the brokers at `bootstrap`.
fn committed_offset_at(bootstrap: &str, group: &str, topic: &str) -> Option<i64> {
    let out = kafka_tool(&[
        "consumer-groups",
        "--bootstrap-server",
        bootstrap,
        "--describe",
        "--group",
        group,
    ]);
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[1] == topic && f[2] == "0")
        .and_then(|f| f[3].parse().ok())
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn two_consumer_groups_on_one_status_db_each_read_everything() {
    let s = Setup::new();
    let topic = unique("id-groups");
    create_topic(&topic, 1);
    let values = numbered("m", 100);
    kcat_produce(&topic, &values);
    let (ga, gb) = (unique("id-gA"), unique("id-gB"));

    let (a, _) = s.consume(&topic, &ga, true);
    assert_eq!(sorted(a), sorted(values.clone()), "group A");
    // Group B on the same status database: everything again, not 0.
    let (b, _) = s.consume(&topic, &gb, true);
    assert_eq!(sorted(b), sorted(values.clone()), "group B");
    assert_eq!(committed_offset(&gb, &topic), Some(100));
    assert_eq!(committed_offset(&ga, &topic), Some(100));
    // Each group's rows are its own, and done.
    for g in [&ga, &gb] {
        let rows = s.groups(&topic, Some(g));
        assert!(!rows.is_empty());
        assert!(
            rows.iter().all(|(_, st, grp)| st == "done" && grp == g),
            "{rows:?}"
        );
    }
    let (na, nb) = (
        s.groups(&topic, Some(&ga)).len(),
        s.groups(&topic, Some(&gb)).len(),
    );
    assert_eq!(s.groups(&topic, None).len(), na + nb);

    // The reverse: C leaves its groups unfinished (run); D neither replays nor marks
    // them; C then replays all of them.
    let (gc, gd) = (unique("id-gC"), unique("id-gD"));
    let (c, _) = s.consume(&topic, &gc, false);
    assert_eq!(c.len(), 100);
    let (d, _) = s.consume(&topic, &gd, true);
    assert_eq!(sorted(d), sorted(values.clone()), "group D");
    let rows_c = s.groups(&topic, Some(&gc));
    assert!(rows_c.iter().all(|(_, st, _)| st == "run"), "{rows_c:?}");
    let (c2, stderr) = s.consume(&topic, &gc, true);
    assert_eq!(sorted(c2), sorted(values), "group C replayed: {stderr}");
    assert!(
        s.groups(&topic, Some(&gc))
            .iter()
            .all(|(_, st, _)| st == "done")
    );
    assert_eq!(committed_offset(&gc, &topic), Some(100));

    // mark-done by hand of an id both C and a new group E hold unfinished: an error
    // asking which; with --group, the right one.
    let ge = unique("id-gE");
    let (e, _) = s.consume(&topic, &ge, false);
    assert_eq!(e.len(), 100);
    let id = s.groups(&topic, Some(&ge))[0].0.clone();
    let out = s.pseidon(&["groups", "mark-done", &id, "--group", &ge]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows_e = s.groups(&topic, Some(&ge));
    assert!(
        rows_e.contains(&(id.clone(), "done".into(), ge.clone())),
        "{rows_e:?}"
    );
    assert!(
        s.groups(&topic, Some(&gc))
            .iter()
            .all(|(_, st, _)| st == "done"),
        "C untouched"
    );
}

/// Two Kafka clusters, one status database, the same topic name and the same
/// consumer group on both: each cluster's groups are its own. What one leaves
/// unfinished the other neither replays nor skips, and it is replayed on its own
/// cluster only; the committed offsets of both (by Kafka's tool) end at the end.
#[test]
fn two_clusters_on_one_status_db_keep_their_groups_apart() {
    let s = Setup::new();
    let other = OwnBroker::start(19751, "");
    let sb = s.sibling(&other.bootstrap);
    let topic = unique("id-clusters");
    create_topic(&topic, 1);
    other.create_topic(&topic, 1);
    let (va, vb) = (numbered("a", 50), numbered("b", 50));
    kcat_produce(&topic, &va);
    kcat_produce_at(&other.bootstrap, &topic, &vb);
    let group = unique("id-cl-g");

    // Cluster A: read, not marked done (its groups stay `run`).
    let (a, _) = s.consume(&topic, &group, false);
    assert_eq!(sorted(a), sorted(va.clone()));
    // Cluster B, same names: its own messages only, all of them.
    let (b, stderr) = sb.consume(&topic, &group, true);
    assert_eq!(sorted(b), sorted(vb.clone()), "cluster B: {stderr}");
    let rows = s.groups_with_cluster(&topic, Some(&group));
    let clusters: BTreeSet<&str> = rows.iter().map(|r| r.3.as_str()).collect();
    assert_eq!(clusters.len(), 2, "two clusters: {rows:?}");
    assert!(!clusters.contains("-"), "{rows:?}");
    let status_of = |cluster: &str| -> BTreeSet<String> {
        rows.iter()
            .filter(|r| r.3 == cluster)
            .map(|r| r.1.clone())
            .collect()
    };
    let mut statuses: Vec<BTreeSet<String>> = clusters.iter().map(|c| status_of(c)).collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [
            BTreeSet::from(["done".to_string()]),
            BTreeSet::from(["run".to_string()])
        ],
        "{rows:?}"
    );
    assert_eq!(
        committed_offset_at(&other.bootstrap, &group, &topic),
        Some(50)
    );
    // Cluster A replays exactly its own unfinished groups.
    let (a2, stderr) = s.consume(&topic, &group, true);
    assert_eq!(sorted(a2), sorted(va), "cluster A replayed: {stderr}");
    assert!(
        s.groups(&topic, Some(&group))
            .iter()
            .all(|(_, st, _)| st == "done")
    );
    assert_eq!(committed_offset(&group, &topic), Some(50));
    // Cluster B has nothing more to read.
    let (b2, _) = sb.consume(&topic, &group, true);
    assert!(b2.is_empty(), "{b2:?}");
}

#[test]
fn a_second_unscoped_mark_done_of_an_id_two_groups_hold_says_which() {
    let s = Setup::new();
    let topic = unique("id-ambiguous");
    create_topic(&topic, 1);
    kcat_produce(&topic, &numbered("x", 10));
    let (ga, gb) = (unique("id-amb-a"), unique("id-amb-b"));
    assert_eq!(s.consume(&topic, &ga, false).0.len(), 10);
    assert_eq!(s.consume(&topic, &gb, false).0.len(), 10);
    let id = format!("{topic}:0:0:9");
    let out = s.pseidon(&["groups", "mark-done", &id]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&ga) && stderr.contains(&gb) && stderr.contains("--group"),
        "{stderr}"
    );
    // Nothing was marked.
    let rows = s.groups(&topic, None);
    assert!(rows.iter().all(|(_, st, _)| st == "run"), "{rows:?}");
}

/// Deletes `topic` and creates it again (deletion is asynchronous: retried).
fn recreate_topic(topic: &str) {
    kafka_tool(&[
        "topics",
        "--bootstrap-server",
        &bootstrap(),
        "--delete",
        "--topic",
        topic,
    ]);
    let start = Instant::now();
    loop {
        let out = Command::new(pseidon_tests::repo_root().join("scripts/kafka"))
            .args([
                "tools",
                "topics",
                "--bootstrap-server",
                &bootstrap(),
                "--create",
                "--topic",
                topic,
                "--partitions",
                "1",
                "--replication-factor",
                "1",
            ])
            .output()
            .unwrap();
        if out.status.success() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "cannot recreate {topic}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_topic_deleted_and_recreated_is_read_from_its_first_message() {
    let s = Setup::new();
    let topic = unique("id-recreated");
    create_topic(&topic, 1);
    kcat_produce(&topic, &numbered("old", 100));
    let group = unique("id-rec-g");
    assert_eq!(s.consume(&topic, &group, true).0.len(), 100);
    // One more group left unfinished: its messages go with the topic.
    kcat_produce(&topic, &numbered("old-tail", 10));
    assert_eq!(s.consume(&topic, &group, false).0.len(), 10);

    recreate_topic(&topic);
    let new = numbered("new", 60);
    kcat_produce(&topic, &new);
    let (got, stderr) = s.consume(&topic, &group, true);
    assert_eq!(sorted(got), sorted(new.clone()), "stderr: {stderr}");
    assert!(
        stderr.contains(&format!("topic `{topic}` was deleted and recreated")),
        "{stderr}"
    );
    assert!(stderr.contains("is LOST"), "{stderr}");
    assert_eq!(committed_offset(&group, &topic), Some(60));
    // kcat sees the same 60.
    assert_eq!(kcat_values(&topic).len(), 60);
    let rows = s.groups(&topic, Some(&group));
    let lost: Vec<_> = rows.iter().filter(|(_, st, _)| st == "lost").collect();
    assert_eq!(lost.len(), 1, "{rows:?}");
    assert_eq!(lost[0].0, format!("{topic}:0:100:109"));
}

#[test]
fn offsets_reset_by_an_admin_are_reported_naming_partition_and_range() {
    let s = Setup::new();
    let topic = unique("id-reset");
    create_topic(&topic, 1);
    kcat_produce(&topic, &numbered("r", 50));
    let group = unique("id-reset-g");
    assert_eq!(s.consume(&topic, &group, true).0.len(), 50);
    kafka_tool(&[
        "consumer-groups",
        "--bootstrap-server",
        &bootstrap(),
        "--group",
        &group,
        "--topic",
        &topic,
        "--reset-offsets",
        "--to-earliest",
        "--execute",
    ]);
    assert_eq!(committed_offset(&group, &topic), Some(0));
    let (got, stderr) = s.consume(&topic, &group, true);
    assert!(got.is_empty(), "{got:?}");
    assert!(
        stderr.contains(&format!("{topic}/0"))
            && stderr.contains("offsets 0..=49")
            && stderr.contains("skipped"),
        "{stderr}"
    );
}

#[test]
fn a_schema_1_status_db_is_migrated_and_its_unfinished_group_replayed() {
    let s = Setup::new();
    let topic = unique("id-migrate");
    create_topic(&topic, 1);
    let values = numbered("v", 20);
    kcat_produce(&topic, &values);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let sql = format!(
        "CREATE TABLE groups (id TEXT PRIMARY KEY NOT NULL, topic TEXT NOT NULL,
            partition INTEGER NOT NULL, min_offset INTEGER NOT NULL, max_offset INTEGER NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('ready', 'run', 'done', 'lost')),
            attempt INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
         PRAGMA user_version = 1;
         INSERT INTO groups VALUES ('{topic}:0:0:9', '{topic}', 0, 0, 9, 'done', 1, {now});
         INSERT INTO groups VALUES ('{topic}:0:10:19', '{topic}', 0, 10, 19, 'run', 1, {now});"
    );
    let st = Command::new("sqlite3")
        .arg(s.db())
        .arg(&sql)
        .status()
        .unwrap();
    assert!(st.success());
    // The old done row (another consumer group's, maybe) hides nothing: all 20 come,
    // the unfinished one as a replay.
    let group = unique("id-mig-g");
    let (got, stderr) = s.consume(&topic, &group, true);
    assert_eq!(sorted(got), sorted(values), "{stderr}");
    assert!(stderr.contains("migrated 2 row(s) of schema 1"), "{stderr}");
    let rows = s.groups(&topic, None);
    let replayed: Vec<_> = rows
        .iter()
        .filter(|(id, _, _)| id == &format!("{topic}:0:10:19"))
        .collect();
    assert_eq!(replayed.len(), 1, "{rows:?}");
    assert_eq!(replayed[0].1, "done");
    assert_eq!(&replayed[0].2, &group, "adopted by the first reader");
    let old_done: Vec<_> = rows.iter().filter(|(_, _, g)| g == "-").collect();
    assert_eq!(old_done.len(), 1, "{rows:?}");
    assert_eq!(committed_offset(&group, &topic), Some(20));
}
