//! The datasource against the real broker: the real `libpseidon_kafka.so` loaded by a
//! consumer process (`consume_child`, see its docs for the line protocol), data fed by
//! kcat (an independent client), statuses read from the SQLite file with the `sqlite3`
//! CLI. Crashes are real SIGKILLs of that process.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use pseidon_tests::{
    bootstrap, consume_child_args, create_topic, kafka_tool, kcat_produce_keyed, unique,
};

const CHILD: &str = env!("CARGO_BIN_EXE_consume_child");

/// Writes `values` to `topic`, one message each, with kcat; keys spread them over partitions.
fn produce(topic: &str, values: &[String]) {
    kcat_produce_keyed(&bootstrap(), topic, values, &["linger.ms=20"]);
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(unique(name));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The consumer process's arguments.
fn child_args(topic: &str, group: &str, db: &Path, extra: &[&str]) -> Vec<String> {
    consume_child_args(&bootstrap(), topic, group, db, extra)
}

/// What a consumer process printed.
#[derive(Debug, Default)]
struct Report {
    /// Group id → attempt, for each `G` line (last one wins).
    groups: Vec<(String, u32)>,
    /// (group id, partition, offset, value) for each `M` line.
    messages: Vec<(String, i32, i64, String)>,
    done: Vec<String>,
    ready: bool,
    marks: Vec<String>,
    /// `T` lines (with `--meta`): offset, timestamp, key, headers.
    meta: Vec<String>,
    status: Option<String>,
    lost: Vec<String>,
    end: Option<usize>,
    err: Option<String>,
    stderr: String,
}

impl Report {
    fn feed(&mut self, line: &str) {
        let mut it = line.splitn(2, ' ');
        let tag = it.next().unwrap_or("");
        let rest = it.next().unwrap_or("");
        match tag {
            "G" => {
                let f: Vec<&str> = rest.split(' ').collect();
                self.groups.push((f[0].to_string(), f[1].parse().unwrap()));
            }
            "M" => {
                let f: Vec<&str> = rest.splitn(4, ' ').collect();
                self.messages.push((
                    f[0].to_string(),
                    f[1].parse().unwrap(),
                    f[2].parse().unwrap(),
                    f.get(3).unwrap_or(&"").to_string(),
                ));
            }
            "D" => self.done.push(rest.to_string()),
            "READY" => self.ready = true,
            "MARK" => self.marks.push(rest.to_string()),
            "T" => self.meta.push(rest.to_string()),
            "STATUS" => self.status = Some(rest.to_string()),
            "LOST" => self.lost.push(rest.to_string()),
            "END" => self.end = rest.parse().ok(),
            "ERR" => self.err = Some(rest.to_string()),
            _ => {}
        }
    }

    fn from_output(out: &std::process::Output) -> Report {
        let mut r = Report::default();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            r.feed(line);
        }
        r.stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        r
    }

    fn assert_clean_end(&self) {
        assert!(
            self.err.is_none() && self.end.is_some(),
            "consumer did not end cleanly: err={:?} end={:?}\nstderr tail:\n{}",
            self.err,
            self.end,
            tail(&self.stderr)
        );
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Runs a consumer process to its end.
fn run_child(args: &[String]) -> Report {
    let out = Command::new(CHILD)
        .args(args)
        .output()
        .expect("run consume_child");
    Report::from_output(&out)
}

/// A consumer process whose stdout lines arrive on a channel.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    report: Report,
}

impl Running {
    fn spawn(args: &[String]) -> Running {
        let mut child = Command::new(CHILD)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn consume_child");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines: rx,
            report: Report::default(),
        }
    }

    /// Reads lines until `until(report)` holds; panics after `timeout`.
    fn wait_for(&mut self, timeout: Duration, what: &str, until: impl Fn(&Report) -> bool) {
        let deadline = Instant::now() + timeout;
        while !until(&self.report) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.report.feed(&line),
                Err(_) => panic!(
                    "timed out waiting for {what}; report so far: err={:?} groups={} done={}",
                    self.report.err,
                    self.report.groups.len(),
                    self.report.done.len()
                ),
            }
            assert!(
                self.report.err.is_none(),
                "consumer failed: {:?}",
                self.report.err
            );
        }
    }

    /// SIGKILLs the process and collects every line it printed before.
    fn kill(mut self) -> Report {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.report.feed(&line);
        }
        self.report
    }

    /// Waits for the process to end by itself.
    fn finish(mut self, timeout: Duration) -> Report {
        let deadline = Instant::now() + timeout;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => self.report.feed(&line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!("consumer did not end within {timeout:?}");
                }
            }
        }
        let _ = self.child.wait();
        self.report
    }
}

/// Rows of the status database, read with the sqlite3 CLI: id → (status, attempt).
fn db_rows(db: &Path) -> BTreeMap<String, (String, u32)> {
    let out = Command::new("sqlite3")
        .args([
            db.to_str().unwrap(),
            "SELECT id, status, attempt FROM groups",
        ])
        .output()
        .expect("run sqlite3 (apt-get install sqlite3)");
    assert!(
        out.status.success(),
        "sqlite3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            (f[0].to_string(), (f[1].to_string(), f[2].parse().unwrap()))
        })
        .collect()
}

fn journal_mode(db: &Path) -> String {
    let out = Command::new("sqlite3")
        .args([db.to_str().unwrap(), "PRAGMA journal_mode"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A pseudo-random number in `lo..hi` (no rand crate needed for kill points).
fn random_in(lo: usize, hi: usize) -> usize {
    use std::hash::{BuildHasher, RandomState};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let h = RandomState::new().hash_one(nanos) as usize;
    lo + h % (hi - lo).max(1)
}

fn parse_id(id: &str) -> (i32, i64, i64) {
    let f: Vec<&str> = id.rsplitn(4, ':').collect();
    (
        f[2].parse().unwrap(),
        f[1].parse().unwrap(),
        f[0].parse().unwrap(),
    )
}

/// The seed README's example: 1000 messages read back through
/// `pseidon.kafka.util.datasource`, every group marked done; the statuses in SQLite.
#[test]
fn seed_example_reads_1000_messages_and_marks_groups_done() {
    let topic = unique("ds-seed");
    create_topic(&topic, 2);
    let sent = values("test", 1000);
    produce(&topic, &sent);
    let dir = tmp_dir("ds-seed");
    let db = dir.join("status.db");
    let group = unique("ds-seed-g");
    let r = run_child(&child_args(
        &topic,
        &group,
        &db,
        &[
            "--expect",
            "1000",
            "--idle-ms",
            "1500",
            "--set",
            "pseidon-kafka.group-max-messages=100",
        ],
    ));
    r.assert_clean_end();
    let got: BTreeSet<&str> = r.messages.iter().map(|m| m.3.as_str()).collect();
    let want: BTreeSet<&str> = sent.iter().map(String::as_str).collect();
    assert_eq!(r.messages.len(), 1000, "each message exactly once");
    assert_eq!(got, want);
    // Group ids name their range; every message of a group lies in it, in order.
    let mut by_group: HashMap<&str, Vec<(i32, i64)>> = HashMap::new();
    for (g, p, o, _) in &r.messages {
        by_group.entry(g).or_default().push((*p, *o));
    }
    for (id, attempt) in &r.groups {
        assert_eq!(*attempt, 1);
        let (p, min, max) = parse_id(id);
        assert!(id.starts_with(&format!("{topic}:")), "{id}");
        let msgs = &by_group[id.as_str()];
        assert_eq!(msgs.first(), Some(&(p, min)), "{id}");
        assert_eq!(msgs.last(), Some(&(p, max)), "{id}");
        assert!(msgs.len() <= 100);
    }
    assert_eq!(r.done.len(), r.groups.len());
    assert_eq!(
        r.status.as_deref(),
        Some(&*format!("ready=0 run=0 done={} lost=0", r.groups.len()))
    );
    // The SQLite file itself, read by sqlite3.
    let rows = db_rows(&db);
    assert_eq!(rows.len(), r.groups.len());
    assert!(
        rows.values().all(|(s, a)| s == "done" && *a == 1),
        "{rows:?}"
    );
    assert_eq!(journal_mode(&db), "wal");
    // The watermarks were committed: the same group reads nothing again.
    let again = run_child(&child_args(&topic, &group, &db, &["--idle-ms", "6000"]));
    again.assert_clean_end();
    assert_eq!(
        again.end,
        Some(0),
        "nothing is delivered twice: {:?}",
        &again.groups
    );
}

/// `group-max-bytes` bounds a group's bytes, whatever `group-max-messages` allows:
/// 300 messages of 1000 bytes with a 4000-byte bound come in groups of at most 4.
#[test]
fn group_max_bytes_bounds_each_group() {
    let topic = unique("ds-bytes");
    create_topic(&topic, 1);
    let sent: Vec<String> = (0..300)
        .map(|i| format!("{i:06}-{}", "x".repeat(993)))
        .collect();
    assert!(sent.iter().all(|v| v.len() == 1000));
    produce(&topic, &sent);
    let dir = tmp_dir("ds-bytes");
    let db = dir.join("status.db");
    let group = unique("ds-bytes-g");
    let r = run_child(&child_args(
        &topic,
        &group,
        &db,
        &[
            "--expect",
            "300",
            "--idle-ms",
            "1500",
            "--set",
            "pseidon-kafka.group-max-bytes=4000",
        ],
    ));
    r.assert_clean_end();
    assert_eq!(r.messages.len(), 300, "each message exactly once");
    let got: BTreeSet<&str> = r.messages.iter().map(|m| m.3.as_str()).collect();
    assert_eq!(got.len(), 300);
    let mut per_group: HashMap<&str, usize> = HashMap::new();
    for (g, _, _, _) in &r.messages {
        *per_group.entry(g).or_default() += 1;
    }
    assert!(
        per_group.values().all(|n| *n <= 4),
        "a group over 4000 bytes: {per_group:?}"
    );
    // 300 messages in groups of at most 4: at least 75 groups, all done.
    assert!(r.groups.len() >= 75, "{} groups", r.groups.len());
    assert_eq!(r.done.len(), r.groups.len());
}

/// SIGKILL at random points while consuming 20 000 messages; a restarted consumer
/// finishes. The groups done in SQLite cover every message exactly once, no gap.
#[test]
fn sigkill_at_random_points_loses_nothing() {
    const N: usize = 20_000;
    let topic = unique("ds-crash");
    create_topic(&topic, 2);
    let sent = values("crash", N);
    produce(&topic, &sent);
    let dir = tmp_dir("ds-crash");
    let db = dir.join("status.db");
    let group = unique("ds-crash-g");
    let instance = unique("static");
    let args = child_args(
        &topic,
        &group,
        &db,
        &[
            "--idle-ms",
            "8000",
            "--sleep-ms",
            "20",
            "--set",
            "pseidon-kafka.group-max-messages=250",
            // Static membership: a restarted instance takes its partitions over at once.
            "--set",
            &format!("kafka.group.instance.id={instance}"),
        ],
    );
    let mut reports = Vec::new();
    let mut kill_points = Vec::new();
    for round in 0..4 {
        let k = random_in(2, 12);
        kill_points.push(k);
        let mut run = Running::spawn(&args);
        // Mostly while the user holds a group it has not marked done yet (its messages
        // printed, mark_done pending); once right after a mark_done.
        let holding = round != 2;
        run.wait_for(Duration::from_secs(90), "groups marked done", |r| {
            r.done.len() >= k && (!holding || r.groups.len() > r.done.len())
        });
        reports.push(run.kill());
    }
    let last = Running::spawn(&args).finish(Duration::from_secs(240));
    last.assert_clean_end();
    assert_eq!(
        last.status
            .as_deref()
            .map(|s| s.starts_with("ready=0 run=0")),
        Some(true),
        "{:?}",
        last.status
    );
    assert!(last.lost.is_empty());
    reports.push(last);

    // Truth is the status database: the done groups, and what was delivered in them.
    let rows = db_rows(&db);
    assert!(
        rows.values().all(|(s, _)| s == "done"),
        "unfinished or lost rows: {rows:?}"
    );
    let mut values_of: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for r in &reports {
        for (g, _, _, v) in &r.messages {
            values_of.entry(g.as_str()).or_default().insert(v.as_str());
        }
    }
    let mut count: HashMap<&str, usize> = HashMap::new();
    for id in rows.keys() {
        let vals = values_of
            .get(id.as_str())
            .unwrap_or_else(|| panic!("done group {id} was never delivered"));
        for v in vals {
            *count.entry(v).or_default() += 1;
        }
    }
    let missing: Vec<&String> = sent
        .iter()
        .filter(|v| !count.contains_key(v.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} messages in no done group (kill points {kill_points:?}): {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "messages in two done groups: {twice:?}");
    assert_eq!(count.len(), N);
    // No gap and no overlap between done ranges, per partition, from offset 0.
    let mut ranges: BTreeMap<i32, Vec<(i64, i64)>> = BTreeMap::new();
    for id in rows.keys() {
        let (p, min, max) = parse_id(id);
        ranges.entry(p).or_default().push((min, max));
    }
    let mut total = 0;
    for (p, mut rs) in ranges {
        rs.sort();
        let mut next = 0;
        for (min, max) in rs {
            assert_eq!(min, next, "partition {p}: gap or overlap at {next}");
            next = max + 1;
        }
        total += next;
    }
    assert_eq!(total as usize, N);
    // Every D line printed before a kill is done in the database.
    for r in &reports {
        for id in &r.done {
            assert_eq!(rows.get(id).map(|x| x.0.as_str()), Some("done"), "{id}");
        }
    }
    // Replays happened: some group was handed out more than once.
    assert!(
        rows.values().any(|(_, a)| *a > 1),
        "no replay happened (kill points {kill_points:?})"
    );
}

/// Two instances in one consumer group on 4 partitions; one is SIGKILLed mid-stream.
/// The survivor delivers every message the killed one did not mark done.
#[test]
fn survivor_delivers_everything_the_killed_instance_did_not_finish() {
    const N: usize = 8_000;
    let topic = unique("ds-pair");
    create_topic(&topic, 4);
    let sent = values("pair", N);
    produce(&topic, &sent);
    let dir = tmp_dir("ds-pair");
    let (db_a, db_b) = (dir.join("a.db"), dir.join("b.db"));
    let group = unique("ds-pair-g");
    let extra = |sleep_ms: &'static str| {
        [
            "--sleep-ms",
            sleep_ms,
            "--idle-ms",
            "20000",
            "--set",
            "pseidon-kafka.group-max-messages=50",
        ]
    };
    // A is a slow user: it holds each group 300 ms before marking it done.
    let mut a = Running::spawn(&child_args(&topic, &group, &db_a, &extra("300")));
    let mut b = Running::spawn(&child_args(&topic, &group, &db_b, &extra("40")));
    // Both members consume (each owns partitions) before A dies.
    b.wait_for(Duration::from_secs(60), "B's first group", |r| {
        !r.groups.is_empty()
    });
    // Killed while it holds a group it has not marked done.
    a.wait_for(Duration::from_secs(60), "A's done groups", |r| {
        r.done.len() >= 5 && r.groups.len() > r.done.len()
    });
    let a = a.kill();
    let b = b.finish(Duration::from_secs(300));
    b.assert_clean_end();
    let a_partitions: BTreeSet<i32> = a.messages.iter().map(|m| m.1).collect();
    let b_partitions: BTreeSet<i32> = b.messages.iter().map(|m| m.1).collect();
    assert!(
        !a_partitions.is_empty() && a_partitions.len() < 4,
        "A owned {a_partitions:?}"
    );
    assert_eq!(
        b_partitions.len(),
        4,
        "B took over A's partitions: {b_partitions:?}"
    );

    let rows_a = db_rows(&db_a);
    let done_a: HashSet<&str> = rows_a
        .iter()
        .filter(|(_, (s, _))| s == "done")
        .map(|(id, _)| id.as_str())
        .collect();
    assert!(
        rows_a.values().any(|(s, _)| s != "done"),
        "A was killed with unfinished groups: rows {rows_a:?} G {:?} D {:?}",
        a.groups,
        a.done
    );
    let finished_by_a: HashSet<&str> = a
        .messages
        .iter()
        .filter(|m| done_a.contains(m.0.as_str()))
        .map(|m| m.3.as_str())
        .collect();
    let delivered_by_b: HashSet<&str> = b.messages.iter().map(|m| m.3.as_str()).collect();
    let missing: Vec<&String> = sent
        .iter()
        .filter(|v| !finished_by_a.contains(v.as_str()) && !delivered_by_b.contains(v.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} messages neither done by A nor delivered by B: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    // B finished everything it got.
    let rows_b = db_rows(&db_b);
    assert!(rows_b.values().all(|(s, _)| s == "done"), "{rows_b:?}");
}

/// A replay whose offsets were deleted (Kafka's delete-records tool) ends in `lost`,
/// reported in the log naming the group and the range; the rest is replayed with the
/// same ids and attempt 2, and nothing is delivered twice.
#[test]
fn replay_of_a_deleted_range_is_lost_and_reported() {
    let topic = unique("ds-lost");
    create_topic(&topic, 1);
    let sent = values("lost", 100);
    produce(&topic, &sent);
    let dir = tmp_dir("ds-lost");
    let db = dir.join("status.db");
    let group = unique("ds-lost-g");
    let set = ["--set", "pseidon-kafka.group-max-messages=10"];
    // First run: takes all 100 messages, marks nothing done.
    let mut first = set.to_vec();
    first.extend(["--no-done", "--expect", "100", "--idle-ms", "500"]);
    let r1 = run_child(&child_args(&topic, &group, &db, &first));
    r1.assert_clean_end();
    assert_eq!(r1.groups.len(), 10);
    assert_eq!(r1.status.as_deref(), Some("ready=0 run=10 done=0 lost=0"));
    // Offsets 0..=49 are deleted.
    let json = dir.join("delete.json");
    std::fs::write(
        &json,
        format!(
            r#"{{"version":1,"partitions":[{{"topic":"{topic}","partition":0,"offset":50}}]}}"#
        ),
    )
    .unwrap();
    kafka_tool(&[
        "delete-records",
        "--bootstrap-server",
        &bootstrap(),
        "--offset-json-file",
        json.to_str().unwrap(),
    ]);
    // Second run: replays.
    let mut second = set.to_vec();
    second.extend(["--idle-ms", "5000"]);
    let r2 = run_child(&child_args(&topic, &group, &db, &second));
    r2.assert_clean_end();
    let lost: Vec<String> = (0..5)
        .map(|i| format!("{topic}:0:{}:{}", i * 10, i * 10 + 9))
        .collect();
    assert_eq!(r2.lost, lost);
    for (i, id) in lost.iter().enumerate() {
        let needle = format!(
            "message group {id} is LOST: offsets {}..={}",
            i * 10,
            i * 10 + 9
        );
        assert!(
            r2.stderr.contains(&needle),
            "log must name {id} and its range:\n{}",
            tail(&r2.stderr)
        );
    }
    let replayed: Vec<(String, u32)> = (5..10)
        .map(|i| (format!("{topic}:0:{}:{}", i * 10, i * 10 + 9), 2))
        .collect();
    assert_eq!(
        r2.groups, replayed,
        "the surviving groups again, same ids, attempt 2, nothing else"
    );
    let vals: Vec<&str> = r2.messages.iter().map(|m| m.3.as_str()).collect();
    let want: Vec<&str> = sent[50..].iter().map(String::as_str).collect();
    assert_eq!(vals, want);
    assert_eq!(r2.status.as_deref(), Some("ready=0 run=0 done=5 lost=5"));
    let rows = db_rows(&db);
    for id in &lost {
        assert_eq!(rows[id], ("lost".to_string(), 1));
    }
}

/// A status database that is not a SQLite file is a clear error naming the file, and
/// is left as it was.
#[test]
fn corrupt_status_db_is_a_clear_error() {
    let topic = unique("ds-corrupt");
    create_topic(&topic, 1);
    let dir = tmp_dir("ds-corrupt");
    let db = dir.join("status.db");
    let garbage: Vec<u8> = (0..16384u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&db, &garbage).unwrap();
    let r = run_child(&child_args(&topic, &unique("g"), &db, &["--idle-ms", "0"]));
    let err = r.err.expect("a corrupt database must fail");
    assert!(err.contains(&db.display().to_string()), "{err}");
    assert!(err.contains("not a database"), "{err}");
    assert_eq!(std::fs::read(&db).unwrap(), garbage, "never reset");
}

/// A read-only status database is a clear error naming the file. As root (CI), file
/// modes do not stop writes, so the consumer runs as `nobody` via setpriv.
#[test]
fn read_only_status_db_is_a_clear_error() {
    use std::os::unix::fs::PermissionsExt;
    let topic = unique("ds-ro");
    create_topic(&topic, 1);
    let dir = tmp_dir("ds-ro");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = dir.join("status.db");
    let st = Command::new("sqlite3")
        .args([db.to_str().unwrap(), "CREATE TABLE t (a INTEGER);"])
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(dir.join("status.db.lock"), b"").unwrap();
    std::fs::set_permissions(
        dir.join("status.db.lock"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let mut args = child_args(&topic, &unique("g"), &db, &["--idle-ms", "0"]);
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false);
    let out = if is_root {
        // `nobody` may not reach the build tree (a clone under /root is 0700): run a
        // copy of the child and of the plugin from a directory it can read.
        let bin = tmp_dir("ds-ro-bin");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let child = bin.join("consume_child");
        std::fs::copy(CHILD, &child).unwrap();
        let plugin_arg = args.iter().position(|a| a == "--plugin").unwrap() + 1;
        let plugin = bin.join("libpseidon_kafka.so");
        std::fs::copy(&args[plugin_arg], &plugin).unwrap();
        for f in [&child, &plugin] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        args[plugin_arg] = plugin.display().to_string();
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&child)
            .args(&args)
            .output()
            .expect("setpriv (util-linux)");
        let _ = std::fs::remove_dir_all(&bin);
        out
    } else {
        Command::new(CHILD).args(&args).output().unwrap()
    };
    let r = Report::from_output(&out);
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755));
    let err = r
        .err
        .unwrap_or_else(|| panic!("a read-only database must fail:\n{}", tail(&r.stderr)));
    assert!(err.contains(&db.display().to_string()), "{err}");
    assert!(err.contains("not writable"), "{err}");

    // A path below a regular file fails for root too.
    let below = db.join("status.db");
    let r = run_child(&child_args(
        &topic,
        &unique("g"),
        &below,
        &["--idle-ms", "0"],
    ));
    let err = r.err.expect("must fail");
    assert!(err.contains(&below.display().to_string()), "{err}");
}

/// A second live instance on the same status database is refused, naming the file.
#[test]
fn second_live_instance_on_one_status_db_is_refused() {
    let topic = unique("ds-lock");
    create_topic(&topic, 1);
    let dir = tmp_dir("ds-lock");
    let db = dir.join("status.db");
    let mut first = Running::spawn(&child_args(
        &topic,
        &unique("g"),
        &db,
        &["--idle-ms", "60000"],
    ));
    first.wait_for(Duration::from_secs(30), "READY", |r| r.ready);
    let r = run_child(&child_args(&topic, &unique("g"), &db, &["--idle-ms", "0"]));
    let _ = first.kill();
    let err = r.err.expect("second instance must fail");
    assert!(err.contains(&db.display().to_string()), "{err}");
    assert!(err.contains("another live"), "{err}");
}

/// `mark_done` through the loaded plugin: done twice is fine; an unknown id is
/// `UnknownGroup`; a malformed one is `InvalidGroupId` naming the id and the problem.
#[test]
fn mark_done_errors_name_the_id() {
    let topic = unique("ds-ids");
    create_topic(&topic, 1);
    produce(&topic, &values("ids", 3));
    let dir = tmp_dir("ds-ids");
    let db = dir.join("status.db");
    let first = run_child(&child_args(
        &topic,
        &unique("g"),
        &db,
        &["--expect", "3", "--idle-ms", "200"],
    ));
    first.assert_clean_end();
    assert_eq!(first.groups.len(), 1);
    let done = first.groups[0].0.clone();
    let unknown = format!("{topic}:0:100:200");
    let r = run_child(&child_args(
        &topic,
        &unique("g"),
        &db,
        &[
            "--idle-ms",
            "0",
            "--mark",
            &done,
            "--mark",
            &unknown,
            "--mark",
            "nonsense",
            "--mark",
            &format!("{topic}:0:9:2"),
        ],
    ));
    r.assert_clean_end();
    assert_eq!(r.marks[0], format!("{done} ok"));
    assert!(
        r.marks[1].starts_with(&format!("{unknown} err UnknownGroup")),
        "{}",
        r.marks[1]
    );
    assert!(
        r.marks[2].starts_with("nonsense err InvalidGroupId") && r.marks[2].contains("four"),
        "{}",
        r.marks[2]
    );
    assert!(
        r.marks[3].contains("InvalidGroupId") && r.marks[3].contains("greater than"),
        "{}",
        r.marks[3]
    );
}

/// Each message carries its key, timestamp and headers (copied out of librdkafka).
#[test]
fn messages_carry_key_timestamp_and_headers() {
    let topic = unique("ds-meta");
    create_topic(&topic, 1);
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut child = Command::new("kcat")
        .args([
            "-b",
            &bootstrap(),
            "-P",
            "-t",
            &topic,
            "-K",
            "\t",
            "-H",
            "trace=abc",
            "-H",
            "n=1",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("kcat");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"key-1\tvalue-1\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let dir = tmp_dir("ds-meta");
    let r = run_child(&child_args(
        &topic,
        &unique("g"),
        &dir.join("status.db"),
        &["--expect", "1", "--idle-ms", "200", "--meta"],
    ));
    r.assert_clean_end();
    assert_eq!(r.messages.len(), 1);
    assert_eq!(r.messages[0].3, "value-1");
    let t: Vec<&str> = r.meta[0].split(' ').collect();
    assert_eq!(t[0], "0");
    let ts: i64 = t[1].parse().expect("a timestamp");
    assert!(
        ts >= before - 60_000 && ts <= before + 60_000,
        "{ts} vs {before}"
    );
    assert_eq!(t[2], "key-1");
    assert_eq!(t[3], "trace=abc,n=1");
}

/// Without `kafka.group.id` the reader is refused with an error naming the key.
#[test]
fn missing_group_id_is_a_config_error_naming_the_key() {
    let topic = unique("ds-nogroup");
    let dir = tmp_dir("ds-nogroup");
    let r = run_child(&child_args(
        &topic,
        "unused",
        &dir.join("status.db"),
        &["--no-group", "--idle-ms", "0"],
    ));
    let err = r.err.expect("must fail");
    assert!(err.contains("kafka.group.id"), "{err}");
}

/// The replay reads every partition's unfinished groups at once (plugin/src/replay.rs):
/// over 4 partitions with different gaps between the unfinished groups (none; one done
/// group, read over; five done groups, more than the replay reads over, so it seeks;
/// only the last group, so that partition is paused early), every unfinished group
/// comes back once, with its id, attempt 2 and exactly the messages of its range, each
/// partition's groups in offset order, and nothing else is handed out.
#[test]
fn replay_reads_all_partitions_at_once_with_gaps() {
    const N: usize = 100_000;
    let topic = unique("ds-replay-lanes");
    create_topic(&topic, 4);
    let sent = values("lanes", N);
    produce(&topic, &sent);
    let dir = tmp_dir("ds-replay-lanes");
    let db = dir.join("status.db");
    let group = unique("ds-replay-lanes-g");
    let set = ["--set", "pseidon-kafka.group-max-messages=2500"];
    let mut first = set.to_vec();
    let n = N.to_string();
    first.extend(["--no-done", "--expect", &n, "--idle-ms", "1000"]);
    let r1 = run_child(&child_args(&topic, &group, &db, &first));
    r1.assert_clean_end();
    assert_eq!(r1.messages.len(), N);
    // Per partition, the groups of the first run in offset order.
    let mut by_partition: BTreeMap<i32, Vec<(i64, i64, String)>> = BTreeMap::new();
    for (id, _) in &r1.groups {
        let (p, min, max) = parse_id(id);
        by_partition
            .entry(p)
            .or_default()
            .push((min, max, id.clone()));
    }
    assert_eq!(by_partition.len(), 4, "keys spread over 4 partitions");
    let mut unfinished: BTreeSet<String> = BTreeSet::new();
    let mut done: Vec<String> = Vec::new();
    for (p, groups) in &mut by_partition {
        groups.sort();
        assert!(groups.len() >= 8, "partition {p}: {} groups", groups.len());
        let last = groups.len() - 1;
        for (k, (_, _, id)) in groups.iter().enumerate() {
            let keep = match p {
                0 => true,
                1 => k % 2 == 0,
                2 => k % 6 == 0,
                _ => k == last,
            };
            if keep {
                unfinished.insert(id.clone());
            } else {
                done.push(format!("'{id}'"));
            }
        }
    }
    let sql = format!(
        "UPDATE groups SET status = 'done' WHERE id IN ({})",
        done.join(",")
    );
    let out = Command::new("sqlite3")
        .args([db.to_str().unwrap(), &sql])
        .output()
        .expect("sqlite3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut second = set.to_vec();
    second.extend(["--idle-ms", "3000"]);
    let r2 = run_child(&child_args(&topic, &group, &db, &second));
    r2.assert_clean_end();
    let got: BTreeSet<String> = r2.groups.iter().map(|g| g.0.clone()).collect();
    assert_eq!(got.len(), r2.groups.len(), "a group handed out twice");
    assert_eq!(got, unfinished, "exactly the unfinished groups again");
    assert!(
        r2.groups.iter().all(|g| g.1 == 2),
        "attempt 2: {:?}",
        r2.groups
    );
    // Each partition's groups in offset order.
    let mut last_max: BTreeMap<i32, i64> = BTreeMap::new();
    for (id, _) in &r2.groups {
        let (p, min, max) = parse_id(id);
        if let Some(prev) = last_max.insert(p, max) {
            assert!(
                prev < min,
                "partition {p}: {id} after a group ending at {prev}"
            );
        }
    }
    // Exactly the messages of each range, in order; the values are the first run's.
    let mut of_group: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    let first_value: BTreeMap<(i32, i64), &str> = r1
        .messages
        .iter()
        .map(|m| ((m.1, m.2), m.3.as_str()))
        .collect();
    for (id, p, off, value) in &r2.messages {
        of_group.entry(id.as_str()).or_default().push(*off);
        assert_eq!(first_value.get(&(*p, *off)).copied(), Some(value.as_str()));
    }
    for id in &unfinished {
        let (_, min, max) = parse_id(id);
        let want: Vec<i64> = (min..=max).collect();
        assert_eq!(of_group.get(id.as_str()), Some(&want), "messages of {id}");
    }
    let rows = db_rows(&db);
    assert!(rows.values().all(|(s, _)| s == "done"), "{rows:?}");
}

/// A slow user still serves a rebalance at its next `next_group`, however much of a
/// fetched batch it has left (the reader reads up to 1024 fetched messages at a time;
/// one that looked at the consumer queue only between batches would answer the join of
/// a second member after some 1024 / 10 groups x 1 s, and hold both partitions).
#[test]
fn a_slow_reader_serves_a_rebalance_while_its_fetched_batch_lasts() {
    const N: usize = 4_000;
    let topic = unique("ds-slow-rb");
    create_topic(&topic, 2);
    produce(&topic, &values("slow", N));
    let dir = tmp_dir("ds-slow-rb");
    let group = unique("ds-slow-rb-g");
    let extra = |sleep_ms: &'static str| {
        [
            "--sleep-ms",
            sleep_ms,
            "--idle-ms",
            "60000",
            "--set",
            "pseidon-kafka.group-max-messages=10",
        ]
    };
    // A takes a group of 10 messages a second.
    let mut a = Running::spawn(&child_args(
        &topic,
        &group,
        &dir.join("a.db"),
        &extra("1000"),
    ));
    a.wait_for(Duration::from_secs(60), "A's second group", |r| {
        r.groups.len() >= 2
    });
    let mut b = Running::spawn(&child_args(&topic, &group, &dir.join("b.db"), &extra("0")));
    b.wait_for(
        Duration::from_secs(45),
        "B's first group (A must answer the rebalance within a group or two)",
        |r| !r.groups.is_empty(),
    );
    let b = b.kill();
    drop(a.kill());
    // The partitions were split: B read one of the two.
    let b_partitions: BTreeSet<i32> = b.messages.iter().map(|m| m.1).collect();
    assert_eq!(b_partitions.len(), 1, "B read {b_partitions:?}");
}
