//! Exactly-once (issue 17) with real brokers: the copy processor with
//! `copy-processor.exactly-once = true` under `pseidon run`, its target read with a
//! `read_committed` kcat (`-X isolation.level=read_committed`, an independent client):
//!
//! - SIGKILLed at random points and restarted: each source message exactly once in the
//!   target, in source order per partition;
//! - its own broker SIGKILLed and restarted during the copy: the same;
//! - a zombie (SIGSTOPped while another instance took over, then SIGCONTed): fenced,
//!   it stops with an error, `run` exits non-zero, nothing twice;
//! - a broker whose transaction log cannot be created
//!   (`transaction.state.log.replication.factor` above the broker count): a clear
//!   error at start, not a hang;
//! - `pseidon consume --isolation`: read_committed hides an open transaction's
//!   messages, read_uncommitted shows them.
//!
//! Own brokers use this helper's ports 19840-19849. Needs `cargo build --workspace`.

use std::{
    collections::{HashMap, HashSet},
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use pseidon_tests::{
    OwnBroker, RunChild, bootstrap, copy_plugins, create_topic, kcat_produce_keyed, pseidon_bin,
    temp_dir, unique,
};

/// A small pseudo-random generator (xorshift), seeded from the clock; the seed is
/// printed so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("EOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(7)
                    | 1
            });
        eprintln!("EOS_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Every message of `topic` at `bootstrap` read `read_committed` with kcat:
/// (partition, offset, value), in each partition's order.
fn committed(bootstrap: &str, topic: &str) -> Vec<(i32, i64, String)> {
    let out = Command::new("kcat")
        .args([
            "-b",
            bootstrap,
            "-C",
            "-t",
            topic,
            "-e",
            "-q",
            "-X",
            "isolation.level=read_committed",
            "-f",
            "%p %o %s\n",
        ])
        .output()
        .expect("run kcat (apt-get install kcat)");
    assert!(
        out.status.success(),
        "kcat failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ' ');
            let p = parts.next()?.parse().ok()?;
            let o = parts.next()?.parse().ok()?;
            Some((p, o, parts.next()?.to_string()))
        })
        .collect()
}

/// The conf of a copy with both plugins.
#[allow(clippy::too_many_arguments)] // one conf, every part named at the call
fn write_conf(
    conf: &Path,
    plugins: &Path,
    bootstrap: &str,
    status_db: &Path,
    from: &str,
    to: &str,
    kafka: &str,
    extra: &str,
) {
    fs::write(
        conf,
        format!(
            "plugin-dirs = [{plugins:?}]\nshutdown-timeout-ms = 20000\n\n\
             [kafka]\nbootstrap.servers = {bootstrap:?}\n\
             session.timeout.ms = 6000\nheartbeat.interval.ms = 1000\n{kafka}\n\n\
             [pseidon-kafka]\nstatus-db = {status_db:?}\ngroup-max-messages = 500\n\n\
             [copy-processor]\nfrom = {from:?}\nto = {to:?}\ngroup = {:?}\n\
             exactly-once = true\n{extra}\n",
            format!("{from}-copier"),
        ),
    )
    .unwrap();
}

/// A copy's directory: plugins, conf, status db.
struct Copy {
    root: PathBuf,
    conf: PathBuf,
    from: String,
    to: String,
    bootstrap: String,
    values: Vec<String>,
}

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

impl Copy {
    /// Topics `from` (filled with `n` keyed messages) and `to`, 3 partitions each, on
    /// the broker at `bootstrap`; `create` creates a topic there.
    fn new(
        prefix: &str,
        bootstrap: &str,
        n: usize,
        create: impl Fn(&str, u32),
        kafka: &str,
        extra: &str,
    ) -> Copy {
        let root = temp_dir(prefix);
        let plugins = root.join("plugins");
        fs::create_dir(&plugins).unwrap();
        copy_plugins(&plugins, &["pseidon_kafka", "pseidon_copy_processor"]);
        let from = unique(&format!("{prefix}-from"));
        let to = unique(&format!("{prefix}-to"));
        create(&from, 3);
        create(&to, 3);
        let values: Vec<String> = (0..n).map(|i| format!("m-{i}")).collect();
        if n > 0 {
            kcat_produce_keyed(bootstrap, &from, &values, &["linger.ms=20", "acks=all"]);
        }
        let conf = root.join("pseidon.toml");
        let c = Copy {
            root,
            conf,
            from,
            to,
            bootstrap: bootstrap.to_string(),
            values,
        };
        c.conf(kafka, extra);
        c
    }

    fn conf(&self, kafka: &str, extra: &str) {
        write_conf(
            &self.conf,
            &self.root.join("plugins"),
            &self.bootstrap,
            &self.root.join("status.db"),
            &self.from,
            &self.to,
            kafka,
            extra,
        );
    }

    /// Runs until the target holds every value (read_committed) and the copier caught
    /// up, then SIGTERM: the exit code must be 0.
    fn finish(&self, limit: Duration) -> Vec<String> {
        let mut run = RunChild::spawn(&self.conf, "info");
        let deadline = Instant::now() + limit;
        let mut seen = 0;
        loop {
            run.drain();
            let before = run.lines.len();
            let n = committed(&self.bootstrap, &self.to).len();
            if n >= self.values.len() {
                break;
            }
            seen = before;
            assert!(
                Instant::now() < deadline,
                "the target has {n} of {} committed: {:#?}",
                self.values.len(),
                run.lines
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        // The copier logs `caught up` when it runs out of groups after copying some;
        // a run that found everything copied already copies nothing and logs none:
        // then a few seconds in which it must not write anything.
        let quiet = Instant::now() + Duration::from_secs(5);
        while !run.lines[seen..]
            .iter()
            .any(|l| l.contains("caught up with"))
            && Instant::now() < quiet
        {
            std::thread::sleep(Duration::from_millis(100));
            run.drain();
        }
        run.signal("TERM");
        assert_eq!(
            run.finish(Duration::from_secs(30), Duration::from_millis(50)),
            Some(0),
            "{:#?}",
            run.lines
        );
        run.lines.clone()
    }

    /// Asserts that the target, read_committed, holds each source value exactly once,
    /// and in source order per (source partition, target partition). Returns the count.
    fn check_exactly_once(&self) -> usize {
        let source: HashMap<String, (i32, i64)> = committed(&self.bootstrap, &self.from)
            .into_iter()
            .map(|(p, o, v)| (v, (p, o)))
            .collect();
        assert_eq!(source.len(), self.values.len());
        let target = committed(&self.bootstrap, &self.to);
        let mut seen = HashSet::new();
        let mut dups = Vec::new();
        // (source partition, target partition) -> last source offset seen.
        let mut last: HashMap<(i32, i32), i64> = HashMap::new();
        for (tp, _, v) in &target {
            if !seen.insert(v.clone()) {
                dups.push(v.clone());
            }
            let (sp, so) = source[v];
            if let Some(prev) = last.insert((sp, *tp), so) {
                assert!(
                    so > prev,
                    "{v} (source {sp}/{so}) after source offset {prev} in target partition {tp}"
                );
            }
        }
        let missing: Vec<&String> = self.values.iter().filter(|v| !seen.contains(*v)).collect();
        assert!(
            dups.is_empty() && missing.is_empty(),
            "{} duplicate(s) (first {:?}), {} missing (first {:?})",
            dups.len(),
            dups.first(),
            missing.len(),
            missing.first()
        );
        target.len()
    }
}

#[test]
fn sigkilled_at_random_points_the_target_holds_each_message_once() {
    const N: usize = 50_000;
    let kills: usize = std::env::var("EOS_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let started = Instant::now();
    let copy = Copy::new(
        "eos-kill",
        &bootstrap(),
        N,
        create_topic,
        // Static membership: a restarted instance takes its partitions over at once
        // instead of waiting out the killed one's session.
        "group.instance.id = \"eos-kill\"",
        "max-rate = 2000",
    );
    let mut rng = Rng::new();
    let mut at_kills = Vec::new();
    for _ in 0..kills {
        let mut run = RunChild::spawn(&copy.conf, "info");
        run.wait_for("copying topic");
        std::thread::sleep(Duration::from_millis(200 + rng.below(2300)));
        run.signal("KILL");
        let code = run.finish(Duration::from_secs(30), Duration::from_millis(20));
        assert_eq!(code, None, "{:#?}", run.lines);
        at_kills.push(committed(&copy.bootstrap, &copy.to).len());
        if at_kills.last().is_some_and(|n| *n >= N) {
            break;
        }
    }
    copy.conf("group.instance.id = \"eos-kill\"", "");
    let lines = copy.finish(Duration::from_secs(120));
    assert!(!lines.iter().any(|l| l.contains("ERROR")), "{lines:#?}");
    let n = copy.check_exactly_once();
    assert_eq!(n, N);
    eprintln!(
        "{N} messages copied exactly once through {} SIGKILL(s) (committed in the target at each kill: {at_kills:?}) in {:.1} s",
        at_kills.len(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn broker_sigkilled_and_restarted_during_the_copy() {
    const N: usize = 20_000;
    let broker = OwnBroker::start(19840, "");
    let copy = Copy::new(
        "eos-broker",
        &broker.bootstrap,
        N,
        |t, p| broker.create_topic(t, p),
        "",
        "max-rate = 4000",
    );
    let mut run = RunChild::spawn(&copy.conf, "info");
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed(&copy.bootstrap, &copy.to).len() < 4_000 {
        run.drain();
        assert!(Instant::now() < deadline, "no copy: {:#?}", run.lines);
        std::thread::sleep(Duration::from_millis(200));
    }
    broker.kill();
    std::thread::sleep(Duration::from_secs(3));
    broker.start_keep_data();
    // The run goes on (or stops with an error: then a new run finishes the copy).
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        run.drain();
        if committed(&copy.bootstrap, &copy.to).len() >= N {
            break;
        }
        if let Ok(Some(_)) = run_exited(&mut run) {
            break;
        }
        assert!(Instant::now() < deadline, "stuck: {:#?}", run.lines);
        std::thread::sleep(Duration::from_millis(300));
    }
    run.signal("TERM");
    let code = run.finish(Duration::from_secs(40), Duration::from_millis(50));
    eprintln!(
        "the run during the broker kill exited with {code:?}{}",
        run.lines
            .iter()
            .find(|l| l.starts_with("pseidon: error"))
            .map_or(String::new(), |l| format!(": {l}"))
    );
    // Shown only if the test fails (the finishing run's lines are in its message).
    eprintln!(
        "the run during the broker kill logged: {:#?}",
        &run.lines[run.lines.len().saturating_sub(60)..]
    );
    copy.conf("", "");
    copy.finish(Duration::from_secs(120));
    assert_eq!(copy.check_exactly_once(), N);
}

/// Whether the run exited (without waiting).
fn run_exited(run: &mut RunChild) -> std::io::Result<Option<i32>> {
    // RunChild has no try_wait of its own: a zero-limit finish would panic, so look
    // for the exit line instead.
    Ok(run
        .lines
        .iter()
        .any(|l| l.contains("processor") && l.contains("failed"))
        .then_some(1))
}

#[test]
fn a_fenced_zombie_stops_with_an_error_and_writes_nothing_twice() {
    const N: usize = 20_000;
    let copy = Copy::new(
        "eos-zombie",
        &bootstrap(),
        N,
        create_topic,
        "",
        "max-rate = 3000",
    );
    let mut zombie = RunChild::spawn(&copy.conf, "info");
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed(&copy.bootstrap, &copy.to).len() < 2_000 {
        zombie.drain();
        assert!(Instant::now() < deadline, "no copy: {:#?}", zombie.lines);
        std::thread::sleep(Duration::from_millis(100));
    }
    zombie.wait_for("transactions initialised");
    zombie.signal("STOP");
    // The other instance takes over the zombie's transactional id. It cannot open the
    // zombie's status db (a stopped process keeps its file lock), so it has a status
    // db of its own and names the id explicitly (kafka.transactional.id).
    let id_line = zombie
        .lines
        .iter()
        .find(|l| l.contains("transactions initialised"))
        .cloned()
        .unwrap_or_else(|| panic!("no transactional id logged: {:#?}", zombie.lines));
    let txn_id = id_line
        .split("transactional id `")
        .nth(1)
        .and_then(|s| s.split('`').next())
        .unwrap()
        .to_string();
    let succ_root = temp_dir("eos-successor");
    let succ_conf = succ_root.join("pseidon.toml");
    write_conf(
        &succ_conf,
        &copy.root.join("plugins"),
        &copy.bootstrap,
        &succ_root.join("status.db"),
        &copy.from,
        &copy.to,
        &format!("transactional.id = {txn_id:?}"),
        "",
    );
    let mut successor = RunChild::spawn(&succ_conf, "info");
    successor.wait_for("transactions initialised");
    std::thread::sleep(Duration::from_secs(2));
    zombie.signal("CONT");
    let code = zombie.finish(Duration::from_secs(60), Duration::from_millis(50));
    assert!(
        code.is_some_and(|c| c != 0),
        "the zombie exited with {code:?}: {:#?}",
        zombie.lines
    );
    assert!(
        zombie.lines.iter().any(|l| l.contains("fenced")),
        "{:#?}",
        zombie.lines
    );
    if let Some(l) = zombie
        .lines
        .iter()
        .find(|l| l.starts_with("pseidon: error"))
    {
        eprintln!("the zombie exited {code:?}: {l}");
    }
    // The successor copies the rest (its own status db: it re-reads from the
    // consumer group's committed offsets, which only transactions moved).
    let deadline = Instant::now() + Duration::from_secs(90);
    while committed(&copy.bootstrap, &copy.to).len() < N {
        successor.drain();
        assert!(
            Instant::now() < deadline,
            "successor stuck: {:#?}",
            successor.lines
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(2));
    successor.signal("TERM");
    assert_eq!(
        successor.finish(Duration::from_secs(30), Duration::from_millis(50)),
        Some(0),
        "{:#?}",
        successor.lines
    );
    assert_eq!(copy.check_exactly_once(), N);
    let _ = fs::remove_dir_all(&succ_root);
}

#[test]
fn a_transaction_log_with_too_few_brokers_is_a_clear_error_at_start() {
    let broker = OwnBroker::start(
        19841,
        "transaction.state.log.replication.factor=3\ntransaction.state.log.min.isr=2",
    );
    let copy = Copy::new(
        "eos-coord",
        &broker.bootstrap,
        10,
        |t, p| broker.create_topic(t, p),
        "transactional.id = \"eos-coord\"",
        "",
    );
    let started = Instant::now();
    let mut run = RunChild::spawn(&copy.conf, "info");
    let code = run.finish(Duration::from_secs(90), Duration::from_millis(100));
    let took = started.elapsed();
    assert!(code.is_some_and(|c| c != 0), "{code:?}: {:#?}", run.lines);
    let text = run.lines.join("\n");
    assert!(
        text.contains("initialise transactions") && text.contains("transaction.state.log"),
        "{text}"
    );
    assert!(took < Duration::from_secs(75), "took {took:?}");
    eprintln!(
        "the coordinator error came after {took:?}: {}",
        run.lines
            .iter()
            .find(|l| l.starts_with("pseidon: error"))
            .map_or("", String::as_str)
    );
}

#[test]
fn consume_isolation_read_committed_hides_an_open_transaction() {
    // An open transaction of our own sink, through a one-shot program: `pseidon run`
    // of the copy processor with a huge group wait would do; simpler, kcat cannot
    // produce transactionally, so the open transaction is the copy's: copy with
    // max-rate 1 and group-max-messages 500... A direct check instead: a
    // transactional producer holds a transaction open while consume reads.
    let topic = unique("eos-iso");
    create_topic(&topic, 1);
    let root = temp_dir("eos-iso");
    let plugins = root.join("plugins");
    fs::create_dir(&plugins).unwrap();
    copy_plugins(&plugins, &["pseidon_kafka"]);
    let conf = root.join("pseidon.toml");
    fs::write(
        &conf,
        format!(
            "plugin-dirs = [{plugins:?}]\n[kafka]\nbootstrap.servers = {:?}\ngroup.id = \"eos-iso\"\n\
             [pseidon-kafka]\nstatus-db = {:?}\n",
            bootstrap(),
            root.join("status.db")
        ),
    )
    .unwrap();
    kcat_produce_keyed(&bootstrap(), &topic, &["plain".to_string()], &[]);
    let open = open_transaction(&bootstrap(), &topic, "in-txn");
    let read = |level: &str| -> Vec<String> {
        let out = Command::new(pseidon_bin())
            .args([
                "--conf",
                conf.to_str().unwrap(),
                "consume",
                "-t",
                &topic,
                "-o",
                "beginning",
                "-e",
                "--isolation",
                level,
            ])
            .env_remove("PSEIDON_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(read("read_uncommitted"), ["plain", "in-txn"]);
    assert_eq!(read("read_committed"), ["plain"]);
    drop(open);
    let _ = fs::remove_dir_all(&root);
}

/// A transactional producer (rdkafka in the test) with `value` written to `topic` in a
/// transaction left open until the value is dropped (then aborted).
fn open_transaction(bootstrap: &str, topic: &str, value: &str) -> impl Drop + use<> {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    struct Open(ThreadedProducer<DefaultProducerContext>);
    impl Drop for Open {
        fn drop(&mut self) {
            let _ = self.0.abort_transaction(Duration::from_secs(10));
        }
    }
    let p: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", unique("eos-iso-txn"))
        .create()
        .unwrap();
    p.init_transactions(Duration::from_secs(30)).unwrap();
    p.begin_transaction().unwrap();
    p.send(BaseRecord::<(), str>::to(topic).payload(value))
        .map_err(|(e, _)| e)
        .unwrap();
    p.flush(Duration::from_secs(10)).unwrap();
    Open(p)
}
