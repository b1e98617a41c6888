//! Faults against real brokers, each test with brokers of its own (port and data dir):
//! - a broker SIGKILLed and restarted while the datasink sends, and while the datasource
//!   reads: no accepted message lost, none written twice, the consumer resumes by itself;
//! - the partition leader of a three-node cluster (replication factor 3,
//!   `min.insync.replicas=2`) SIGKILLed during produce and during consume: zero lost;
//! - the status database's disk (a small tmpfs) full during consumption: a clear error
//!   naming the file, consumption stops, and a restart once space is back loses nothing.
//!
//! The datasink runs in this process through the real host (`kafka_host`); the datasource
//! runs in a child process (`consume_child`, the line protocol of the datasource tests).
//! kcat, an independent client, counts what is on the broker. Each test prints `FIGURE`
//! lines (counts and times) for docs/RELIABILITY.md.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use pseidon_tests::{
    Cluster, OwnBroker, consume_child_args, db_groups, kafka_host, kcat_produce_keyed,
    kcat_values_from, plugin_lock, unique,
};

const CHILD: &str = env!("CARGO_BIN_EXE_consume_child");
const SINK: &str = "pseidon.kafka.util.datasink";

// ------------------------------------------------------------------ producing

/// Writes `n` values `<prefix>-<i>` through the datasink of a host on `bootstrap`, from a
/// writer thread; calls `fault` once `fault_at` writes were accepted. Returns the
/// accepted values (write returned Ok and the flush did not report them failed) and the
/// values the datasink reported failed.
fn produce_with_fault(
    bootstrap: &str,
    topic: &str,
    prefix: &str,
    n: usize,
    fault_at: usize,
    fault: impl FnOnce(),
) -> (Vec<String>, Vec<String>) {
    let _serial = plugin_lock();
    let conf = format!(
        "[kafka]\nbootstrap.servers = \"{bootstrap}\"\nmessage.timeout.ms = 120000\nlinger.ms = 5\n"
    );
    let mut host = kafka_host(&conf).expect("host loads the plugin");
    let sink = host
        .registry()
        .reg_get_wait_sink(SINK, Duration::from_secs(5))
        .expect("datasink registered");
    let accepted_count = Arc::new(AtomicU64::new(0));
    let writer = {
        let sink = sink.clone();
        let topic = topic.to_string();
        let prefix = prefix.to_string();
        let accepted_count = Arc::clone(&accepted_count);
        thread::spawn(move || {
            let mut ids: HashMap<u64, String> = HashMap::new();
            let mut refused = Vec::new();
            for i in 0..n {
                let v = format!("{prefix}-{i}");
                match sink.write(&topic, v.as_bytes()) {
                    Ok(id) => {
                        ids.insert(id, v);
                        accepted_count.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => refused.push(format!("{v}: {e}")),
                }
                if i % 50 == 0 {
                    thread::sleep(Duration::from_millis(5));
                }
            }
            (ids, refused)
        })
    };
    let t0 = Instant::now();
    while (accepted_count.load(Ordering::Relaxed) as usize) < fault_at {
        assert!(t0.elapsed() < Duration::from_secs(60), "writer too slow");
        thread::sleep(Duration::from_millis(5));
    }
    fault();
    let (ids, refused) = writer.join().expect("writer thread");
    let t1 = Instant::now();
    let report = sink.flush(Duration::from_secs(150)).expect("flush");
    eprintln!(
        "FIGURE {topic}: {} accepted, {} refused by write, flush after the fault took {:?}: delivered {}, failed {}, pending {}",
        ids.len(),
        refused.len(),
        t1.elapsed(),
        report.delivered,
        report.failed.len(),
        report.pending
    );
    assert_eq!(report.pending, 0, "flush left messages pending: {report:?}");
    let failed: BTreeSet<u64> = report.failed.iter().map(|f| f.id).collect();
    for f in report.failed.iter().take(5) {
        eprintln!("failed: {} {}", f.id, f.reason);
    }
    assert!(host.shutdown().is_empty(), "clean shutdown");
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for (id, v) in ids {
        if failed.contains(&id) {
            bad.push(v);
        } else {
            ok.push(v);
        }
    }
    (ok, bad)
}

/// Every accepted value is on the topic exactly once (kcat); nothing else is there.
fn assert_exactly_once(bootstrap: &str, topic: &str, accepted: &[String], failed: &[String]) {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for v in kcat_values_from(bootstrap, topic) {
        *counts
            .entry(String::from_utf8_lossy(&v).into_owned())
            .or_default() += 1;
    }
    let lost: Vec<&String> = accepted
        .iter()
        .filter(|v| !counts.contains_key(*v))
        .collect();
    let dup: Vec<(&String, &usize)> = counts.iter().filter(|(_, c)| **c > 1).collect();
    let total: usize = counts.values().sum();
    eprintln!(
        "FIGURE {topic}: kcat counted {total} messages, {} distinct; {} accepted lost, {} duplicated, {} reported failed",
        counts.len(),
        lost.len(),
        dup.len(),
        failed.len()
    );
    assert!(
        lost.is_empty(),
        "{} accepted messages lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(
        dup.is_empty(),
        "{} messages written twice, e.g. {:?}",
        dup.len(),
        &dup[..dup.len().min(5)]
    );
    let known: BTreeSet<&String> = accepted.iter().chain(failed).collect();
    let stray: Vec<&String> = counts.keys().filter(|v| !known.contains(v)).collect();
    assert!(stray.is_empty(), "values nobody wrote: {stray:?}");
}

/// Writes `values` to `topic` with kcat (acks=all), spread over partitions by key.
fn kcat_produce(bootstrap: &str, topic: &str, values: &[String]) {
    kcat_produce_keyed(bootstrap, topic, values, &["acks=all", "linger.ms=20"]);
}

// ------------------------------------------------------------------ consuming

/// A running `consume_child`, its stdout lines collected by a thread.
struct Consumer {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr_path: PathBuf,
}

impl Consumer {
    fn spawn(bootstrap: &str, topic: &str, group: &str, db: &Path, extra: &[&str]) -> Consumer {
        let stderr_path = std::env::temp_dir().join(format!("{}.stderr", unique("consume-child")));
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let args = consume_child_args(bootstrap, topic, group, db, extra);
        let mut child = Command::new(CHILD)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn consume_child");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Consumer {
            child,
            lines: rx,
            seen: Vec::new(),
            stderr_path,
        }
    }

    /// Collects lines until `until` holds for the lines so far; panics after `limit`.
    fn wait_for(&mut self, limit: Duration, what: &str, until: impl Fn(&[String]) -> bool) {
        let t0 = Instant::now();
        while !until(&self.seen) {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(l) => self.seen.push(l),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!(
                        "consumer ended before {what}; last lines {:?}\n{}",
                        last(&self.seen),
                        self.stderr_tail()
                    )
                }
            }
            assert!(
                t0.elapsed() < limit,
                "no {what} within {limit:?}; last lines {:?}\n{}",
                last(&self.seen),
                self.stderr_tail()
            );
        }
    }

    /// Takes the lines printed so far.
    fn drain(&mut self) {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
    }

    /// Waits for the process to end (killing it after `limit`); returns all its lines.
    fn finish(mut self, limit: Duration) -> (Vec<String>, Option<i32>, String) {
        let t0 = Instant::now();
        let status = loop {
            while let Ok(l) = self.lines.try_recv() {
                self.seen.push(l);
            }
            if let Some(st) = self.child.try_wait().expect("wait") {
                break st;
            }
            if t0.elapsed() > limit {
                let _ = self.child.kill();
                panic!(
                    "consumer still running after {limit:?}; last lines {:?}\n{}",
                    last(&self.seen),
                    self.stderr_tail()
                );
            }
            thread::sleep(Duration::from_millis(100));
        };
        // Drain what the reader thread still holds.
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(l);
        }
        let stderr = self.stderr_tail();
        (self.seen, status.code(), stderr)
    }

    fn stderr_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let start = s.len().saturating_sub(4000);
        let start = (start..s.len())
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(s.len());
        s[start..].to_string()
    }
}

fn last(lines: &[String]) -> Vec<&String> {
    lines.iter().rev().take(5).collect()
}

fn count_tag(lines: &[String], tag: &str) -> usize {
    lines.iter().filter(|l| l.starts_with(tag)).count()
}

/// From consume_child lines: value → deliveries, and the values of groups marked done.
struct Outcome {
    deliveries: BTreeMap<String, usize>,
    done_values: BTreeSet<String>,
}

fn outcome(lines: &[String]) -> Outcome {
    let mut by_group: HashMap<String, Vec<String>> = HashMap::new();
    let mut deliveries: BTreeMap<String, usize> = BTreeMap::new();
    let mut done = Vec::new();
    for l in lines {
        if let Some(rest) = l.strip_prefix("M ") {
            let f: Vec<&str> = rest.splitn(4, ' ').collect();
            if f.len() == 4 {
                by_group
                    .entry(f[0].to_string())
                    .or_default()
                    .push(f[3].to_string());
                *deliveries.entry(f[3].to_string()).or_default() += 1;
            }
        } else if let Some(g) = l.strip_prefix("D ") {
            done.push(g.to_string());
        }
    }
    let done_values = done
        .iter()
        .flat_map(|g| by_group.get(g).cloned().unwrap_or_default())
        .collect();
    Outcome {
        deliveries,
        done_values,
    }
}

/// consume_child arguments: 20 000 messages in groups of 200, a slow user, and small
/// fetches (a few KB per partition, a 16 KB local queue), so the consumer still has
/// to fetch when a fault hits instead of working from a prefetched topic.
const SMALL_FETCHES: [&str; 18] = [
    "--expect",
    "20000",
    "--idle-ms",
    "8000",
    "--sleep-ms",
    "20",
    "--set",
    "pseidon-kafka.group-max-messages=200",
    "--set",
    "kafka.fetch.message.max.bytes=4096",
    "--set",
    "kafka.fetch.max.bytes=8192",
    "--set",
    "kafka.message.max.bytes=8192",
    "--set",
    "kafka.queued.max.messages.kbytes=16",
    "--set",
    "kafka.fetch.wait.max.ms=100",
];

/// Waits for the consumer to end (see [`Consumer::finish`]) and asserts it exited 0,
/// `what` leading the failure message; returns its lines.
fn finish_ok(c: Consumer, limit: Duration, what: &str) -> Vec<String> {
    let (lines, code, stderr) = c.finish(limit);
    assert_eq!(code, Some(0), "{what}: {:?}\n{stderr}", last(&lines));
    lines
}

/// The values of `sent` in no group of `o` marked done.
fn not_done_values<'a>(sent: &'a [String], o: &Outcome) -> Vec<&'a String> {
    sent.iter()
        .filter(|v| !o.done_values.contains(*v))
        .collect()
}

/// How many values of `o` were delivered more than once.
fn delivered_more_than_once(o: &Outcome) -> usize {
    o.deliveries.values().filter(|c| **c > 1).count()
}

/// `missing` (of [`not_done_values`]) is empty.
fn assert_all_done(missing: &[&String]) {
    assert!(
        missing.is_empty(),
        "{} messages never delivered in a done group, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

fn tmp_db(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(unique(name));
    std::fs::create_dir_all(&d).expect("db dir");
    d.join("status.db")
}

// ------------------------------------------------------------------ tests

/// The broker SIGKILLed while the datasink sends 20 000 messages, restarted 2 s later:
/// every accepted message is on the topic exactly once (idempotent producer), none
/// reported failed.
#[test]
fn broker_sigkill_during_send_loses_nothing_and_duplicates_nothing() {
    let broker = OwnBroker::start(19711, "");
    let topic = unique("fault-send");
    broker.create_topic(&topic, 3);
    let t0 = Instant::now();
    let (accepted, failed) =
        produce_with_fault(&broker.bootstrap, &topic, "fs", 20_000, 5_000, || {
            broker.kill();
            let down = Instant::now();
            thread::sleep(Duration::from_secs(2));
            broker.start_keep_data();
            eprintln!(
                "FIGURE {topic}: broker SIGKILLed at 5000 accepted writes, back after {:?}",
                down.elapsed()
            );
        });
    eprintln!("FIGURE {topic}: whole run {:?}", t0.elapsed());
    assert!(
        failed.is_empty(),
        "{} messages reported failed",
        failed.len()
    );
    assert_eq!(accepted.len(), 20_000);
    assert_exactly_once(&broker.bootstrap, &topic, &accepted, &failed);
}

/// The broker SIGKILLed while the datasource reads 20 000 messages, restarted 2 s
/// later: the consumer resumes by itself and every message is delivered and its group
/// marked done; deliveries of groups already done are counted as duplicates.
#[test]
fn broker_sigkill_during_consume_consumer_resumes_and_loses_nothing() {
    let broker = OwnBroker::start(19721, "");
    let topic = unique("fault-read");
    broker.create_topic(&topic, 3);
    let sent = values("fr", 20_000);
    kcat_produce(&broker.bootstrap, &topic, &sent);
    let db = tmp_db("fault-read");
    let group = unique("fault-read-group");
    let t0 = Instant::now();
    let mut c = Consumer::spawn(&broker.bootstrap, &topic, &group, &db, &SMALL_FETCHES);
    c.wait_for(Duration::from_secs(60), "2000 messages", |l| {
        count_tag(l, "M ") >= 2000
    });
    broker.kill();
    let down = Instant::now();
    let at_kill = count_tag(&c.seen, "M ");
    thread::sleep(Duration::from_secs(2));
    broker.start_keep_data();
    c.drain();
    let at_restart = count_tag(&c.seen, "M ");
    eprintln!(
        "FIGURE {topic}: broker SIGKILLed after {at_kill} delivered, back after {:?}; {at_restart} delivered by then",
        down.elapsed()
    );
    let lines = finish_ok(c, Duration::from_secs(150), "consumer did not end cleanly");
    let o = outcome(&lines);
    let missing = not_done_values(&sent, &o);
    let dups = delivered_more_than_once(&o);
    eprintln!(
        "FIGURE {topic}: {} distinct delivered, {} in done groups, {} delivered more than once, run {:?}",
        o.deliveries.len(),
        o.done_values.len(),
        dups,
        t0.elapsed()
    );
    assert_all_done(&missing);
    assert!(lines.iter().any(|l| l.starts_with("END ")), "no END line");
    assert!(
        count_tag(&lines, "M ") > at_restart,
        "nothing was read after the broker came back: the test did not exercise the resume"
    );
}

/// A three-node cluster: the leader of the partition SIGKILLed while the datasink sends
/// (then restarted), and again while the datasource reads. Zero lost, none duplicated
/// by the producer.
#[test]
fn cluster_leader_killed_during_produce_and_consume_loses_nothing() {
    let cluster = Cluster::start(29192);
    let topic = unique("fault-cluster");
    cluster.create_topic(&topic, 1);

    // Produce, with the leader killed after 5000 accepted writes.
    let t0 = Instant::now();
    let mut killed = String::new();
    let (accepted, failed) =
        produce_with_fault(&cluster.bootstrap, &topic, "fc", 20_000, 5_000, || {
            killed = cluster.script(&["kill-leader", &topic, "0"]);
        });
    eprintln!(
        "FIGURE {topic}: produce with leader (node {killed}) killed: {:?}",
        t0.elapsed()
    );
    assert!(
        failed.is_empty(),
        "{} messages reported failed",
        failed.len()
    );
    assert_exactly_once(&cluster.bootstrap, &topic, &accepted, &failed);
    let t1 = Instant::now();
    cluster.script(&["start-node", &killed]);
    eprintln!(
        "FIGURE {topic}: node {killed} restarted in {:?}",
        t1.elapsed()
    );

    // Consume, with the (new) leader killed after 4000 deliveries.
    let db = tmp_db("fault-cluster");
    let group = unique("fault-cluster-group");
    let t2 = Instant::now();
    let mut c = Consumer::spawn(&cluster.bootstrap, &topic, &group, &db, &SMALL_FETCHES);
    c.wait_for(Duration::from_secs(60), "4000 messages", |l| {
        count_tag(l, "M ") >= 4000
    });
    let killed2 = cluster.script(&["kill-leader", &topic, "0"]);
    eprintln!(
        "FIGURE {topic}: leader node {killed2} killed after {} delivered",
        count_tag(&c.seen, "M ")
    );
    let lines = finish_ok(c, Duration::from_secs(150), "consumer did not end cleanly");
    let o = outcome(&lines);
    let missing = not_done_values(&accepted, &o);
    let dups = delivered_more_than_once(&o);
    eprintln!(
        "FIGURE {topic}: consume with leader killed: {} distinct delivered, {} in done groups, {} more than once, {:?}",
        o.deliveries.len(),
        o.done_values.len(),
        dups,
        t2.elapsed()
    );
    assert_all_done(&missing);
}

/// A tmpfs mounted for the status database; unmounted (lazily) on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = std::env::temp_dir().join(unique("pseidon-tmpfs"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}")])
            .arg("tmpfs")
            .arg(&dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Tmpfs { dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Fills the filesystem of `dir` with a file until writing fails (ENOSPC).
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    path
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The status database on a 16 MiB tmpfs that fills up during consumption: the consumer
/// stops with an error naming the status database and saying the disk is full; after
/// space returns, a restarted consumer finishes and every message is in a done group.
#[test]
fn status_db_disk_full_stops_consumption_clearly_and_a_restart_loses_nothing() {
    if !is_root() {
        // In CI a skipped case must fail, not pass.
        assert!(
            std::env::var_os("CI").is_none(),
            "mounting a tmpfs needs root, and CI runs as root: this case cannot be skipped in CI"
        );
        eprintln!("SKIPPED: mounting a tmpfs needs root (the CI runs as root)");
        return;
    }
    let fs = Tmpfs::mount("16m").expect("mount a 16 MiB tmpfs (root can)");
    let broker = OwnBroker::start(19731, "");
    let topic = unique("fault-full");
    broker.create_topic(&topic, 2);
    let sent = values("ff", 20_000);
    kcat_produce(&broker.bootstrap, &topic, &sent);
    let db = fs.dir.join("status.db");
    let group = unique("fault-full-group");
    let extra = [
        "--expect",
        "20000",
        "--idle-ms",
        "8000",
        "--sleep-ms",
        "2",
        "--set",
        "pseidon-kafka.group-max-messages=10",
    ];

    let mut c = Consumer::spawn(&broker.bootstrap, &topic, &group, &db, &extra);
    c.wait_for(Duration::from_secs(60), "300 done groups", |l| {
        count_tag(l, "D ") >= 300
    });
    let filler = fill(&fs.dir);
    let full_at = Instant::now();
    let (lines1, code, stderr) = c.finish(Duration::from_secs(90));
    let err = lines1
        .iter()
        .find(|l| l.starts_with("ERR "))
        .cloned()
        .unwrap_or_default();
    eprintln!(
        "FIGURE {topic}: disk full after {} done groups; consumer stopped after {:?} with exit {code:?}: {err}",
        count_tag(&lines1, "D "),
        full_at.elapsed()
    );
    assert_eq!(
        code,
        Some(2),
        "the consumer must stop with an error; last lines {:?}\n{stderr}",
        last(&lines1)
    );
    assert!(
        err.contains("status database") && err.contains(&db.display().to_string()),
        "error does not name the status database: {err}"
    );
    assert!(
        err.to_lowercase().contains("full") || err.to_lowercase().contains("no space"),
        "error does not say the disk is full: {err}"
    );
    assert!(
        full_at.elapsed() < Duration::from_secs(60),
        "took too long to notice"
    );

    std::fs::remove_file(&filler).expect("free the space");
    // The restart delivers only what is not done yet: it ends after 10 s without news.
    let again = [
        "--idle-ms",
        "10000",
        "--set",
        "pseidon-kafka.group-max-messages=10",
    ];
    let c = Consumer::spawn(&broker.bootstrap, &topic, &group, &db, &again);
    let lines2 = finish_ok(c, Duration::from_secs(150), "restarted consumer failed");
    let mut all = lines1.clone();
    all.extend(lines2.iter().cloned());
    let o = outcome(&all);
    let missing = not_done_values(&sent, &o);
    eprintln!(
        "FIGURE {topic}: after restart: {} delivered by the first run, {} by the second, {} distinct in done groups",
        count_tag(&lines1, "M "),
        count_tag(&lines2, "M "),
        o.done_values.len()
    );
    assert!(
        missing.is_empty(),
        "{} messages lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

/// Seeded xorshift, so a failing run can be repeated (`PSEIDON_FAULT_SEED`).
struct Rng(u64);

impl Rng {
    fn from_env() -> (Rng, u64) {
        let seed = std::env::var("PSEIDON_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(7)
            });
        (Rng(seed.max(1)), seed)
    }

    fn between(&mut self, lo: usize, hi: usize) -> usize {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        lo + (x % (hi - lo + 1) as u64) as usize
    }
}

/// The consumer process SIGKILLed at 20 random points (after a random number of
/// delivered messages, so mostly in the middle of a group) over one run of 50 000
/// messages, then restarted each time with the same status database and static group
/// membership; a last run finishes. Every message ends up in a group marked done, and
/// no message of a group already marked done is delivered again.
#[test]
fn consumer_sigkill_at_20_random_points_over_50000_messages_loses_nothing() {
    const N: usize = 50_000;
    let (mut rng, seed) = Rng::from_env();
    let broker = OwnBroker::start(19741, "");
    let topic = unique("fault-kill20");
    broker.create_topic(&topic, 2);
    let sent = values("k20", N);
    kcat_produce(&broker.bootstrap, &topic, &sent);
    let db = tmp_db("fault-kill20");
    let group = unique("fault-kill20-group");
    let instance = format!("group.instance.id={}", unique("static"));
    let instance_set = format!("kafka.{instance}");
    let args = [
        "--idle-ms",
        "8000",
        "--sleep-ms",
        "50",
        "--set",
        "pseidon-kafka.group-max-messages=250",
        "--set",
        instance_set.as_str(),
    ];
    let t0 = Instant::now();
    let mut runs: Vec<Vec<String>> = Vec::new();
    let mut kill_points = Vec::new();
    for _ in 0..20 {
        let k = rng.between(200, 1500);
        let mut c = Consumer::spawn(&broker.bootstrap, &topic, &group, &db, &args);
        c.wait_for(Duration::from_secs(60), "messages before the kill", |l| {
            count_tag(l, "M ") >= k
        });
        let _ = c.child.kill();
        let (lines, _, _) = c.finish(Duration::from_secs(10));
        kill_points.push(count_tag(&lines, "M "));
        runs.push(lines);
    }
    let t_kills = t0.elapsed();
    let c = Consumer::spawn(&broker.bootstrap, &topic, &group, &db, &args);
    let lines = finish_ok(c, Duration::from_secs(150), "last run failed");
    let status = lines
        .iter()
        .find(|l| l.starts_with("STATUS "))
        .cloned()
        .unwrap_or_default();
    let last_run = count_tag(&lines, "M ");
    runs.push(lines);

    // Truth is the status database: a group is done once `mark_done` returned, even if
    // the process died before it printed `D`. Its messages are those delivered under its id.
    let rows = db_groups(&db);
    let mut values_of: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for run in &runs {
        for l in run {
            if let Some(rest) = l.strip_prefix("M ") {
                let f: Vec<&str> = rest.splitn(4, ' ').collect();
                if f.len() == 4 {
                    values_of.entry(f[0]).or_default().insert(f[3]);
                }
            }
        }
    }
    let not_done: Vec<&(String, String)> = rows.iter().filter(|(_, st)| st != "done").collect();
    let mut done_values: BTreeSet<&str> = BTreeSet::new();
    for (id, _) in rows.iter().filter(|(_, st)| st == "done") {
        done_values.extend(values_of.get(id.as_str()).cloned().unwrap_or_default());
    }
    // A message of a group whose `D` was printed in an earlier run must not come again.
    let mut seen_done: BTreeSet<String> = BTreeSet::new();
    let mut redelivered_done = Vec::new();
    for run in &runs {
        let o = outcome(run);
        redelivered_done.extend(
            o.deliveries
                .keys()
                .filter(|v| seen_done.contains(*v))
                .cloned(),
        );
        seen_done.extend(o.done_values);
    }
    let missing: Vec<&String> = sent
        .iter()
        .filter(|v| !done_values.contains(v.as_str()))
        .collect();
    eprintln!(
        "FIGURE {topic}: seed {seed}; messages delivered by each killed run {kill_points:?}, by the last run {last_run}; 20 kills in {t_kills:?}, whole run {:?}; {} groups in the db, {} of {N} messages in done groups; {} deliveries of already-done messages; last run {status}",
        t0.elapsed(),
        rows.len(),
        done_values.len(),
        redelivered_done.len()
    );
    assert!(not_done.is_empty(), "groups not done: {not_done:?}");
    assert!(
        last_run > 0,
        "the topic was finished before the 20th kill: kills did not all hit mid-stream"
    );
    assert!(
        status.starts_with("STATUS ready=0 run=0"),
        "unfinished groups left: {status}"
    );
    assert!(
        missing.is_empty(),
        "seed {seed}: {} messages lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(
        redelivered_done.is_empty(),
        "seed {seed}: {} messages of groups already marked done were delivered again, e.g. {:?}",
        redelivered_done.len(),
        &redelivered_done[..redelivered_done.len().min(5)]
    );
}
