//! Poison messages against the real broker (issue 16): a consumer process (`consume_child`
//! loading the real `libpseidon_kafka.so`) marks failed every group that holds a poison
//! message (`--fail-on`, through `Source::mark_failed`); the datasource retries, splits
//! at `max-attempts`, and dead-letters the single poison messages. Checked with
//! independent clients: kcat reads the dead-letter topic (values, keys, headers), Kafka's
//! `kafka-consumer-groups --describe` the committed offset; crashes are real SIGKILLs.

use std::{
    collections::{BTreeSet, HashMap},
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use pseidon_tests::{
    bootstrap, consume_child_args, create_topic, kafka_tool, kcat_formatted, kcat_produce_keyed,
    unique,
};

const CHILD: &str = env!("CARGO_BIN_EXE_consume_child");
const N: usize = 10_000;
const POISON_AT: [usize; 3] = [1234, 5000, 8765];

fn tmp_db(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(unique(name));
    std::fs::create_dir_all(&d).unwrap();
    d.join("status.db")
}

/// The values: `v-<i>`, and `POISON-<i>` at [`POISON_AT`].
fn values() -> Vec<String> {
    (0..N)
        .map(|i| {
            if POISON_AT.contains(&i) {
                format!("POISON-{i}")
            } else {
                format!("v-{i}")
            }
        })
        .collect()
}

/// What the consumer processes printed, over all their runs.
#[derive(Debug, Default)]
struct Seen {
    /// Group id → offsets of its messages (last hand-out).
    groups: HashMap<String, Vec<i64>>,
    done: Vec<String>,
    failed: Vec<String>,
    dead: Vec<String>,
    poison: Option<String>,
    end: bool,
    err: Option<String>,
}

impl Seen {
    fn feed(&mut self, line: &str) {
        let mut it = line.splitn(2, ' ');
        let tag = it.next().unwrap_or("");
        let rest = it.next().unwrap_or("");
        match tag {
            "G" => {
                let id = rest.split(' ').next().unwrap_or("").to_string();
                self.groups.insert(id, Vec::new());
            }
            "M" => {
                let f: Vec<&str> = rest.splitn(4, ' ').collect();
                let off: i64 = f[2].parse().unwrap();
                self.groups.entry(f[0].to_string()).or_default().push(off);
            }
            "D" => self.done.push(rest.to_string()),
            "F" => self.failed.push(rest.to_string()),
            "DEAD" => self.dead.push(rest.to_string()),
            "POISON" => self.poison = Some(rest.to_string()),
            "END" => self.end = true,
            "ERR" => self.err = Some(rest.to_string()),
            _ => {}
        }
    }

    /// The offsets of every group handed out to the consumer and marked done: by its
    /// `D` line, or (a SIGKILL between `mark_done` and that line) by its `done` row in
    /// the status database `db`, read with the sqlite3 CLI.
    fn done_offsets(&self, db: &Path) -> BTreeSet<i64> {
        let out = Command::new("sqlite3")
            .arg(db)
            .arg("SELECT id FROM groups WHERE status = 'done'")
            .output()
            .expect("run sqlite3");
        let in_db: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        let unprinted = in_db.iter().filter(|id| !self.done.contains(id)).count();
        if unprinted > 0 {
            eprintln!("{unprinted} group(s) done whose D line a SIGKILL cut off");
        }
        self.done
            .iter()
            .chain(in_db.iter())
            .flat_map(|id| self.groups.get(id).cloned().unwrap_or_default())
            .collect()
    }
}

fn args(topic: &str, group: &str, db: &Path, settings: &[String]) -> Vec<String> {
    let mut extra: Vec<String> = vec![
        "--fail-on".into(),
        "POISON".into(),
        "--idle-ms".into(),
        "4000".into(),
    ];
    for s in settings {
        extra.push("--set".into());
        extra.push(s.clone());
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    consume_child_args(&bootstrap(), topic, group, db, &extra)
}

/// Runs the consumer to its end, feeding `seen`; returns its stderr.
fn run(args: &[String], seen: &mut Seen) -> String {
    let out = Command::new(CHILD)
        .args(args)
        .output()
        .expect("run consume_child");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        seen.feed(line);
    }
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the consumer until it printed its `kill_after`-th `F` line, then SIGKILLs it.
/// Returns false if it ended before.
fn run_and_kill(args: &[String], kill_after: usize, seen: &mut Seen) -> bool {
    let mut child = Command::new(CHILD)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn consume_child");
    let stdout = child.stdout.take().expect("stdout");
    let mut fails = 0;
    let mut killed = false;
    // After the kill, what the child printed before it died is still read (to EOF); a
    // last line the kill cut short (no newline) was never printed whole: not fed.
    let mut reader = BufReader::new(stdout);
    let mut buf = String::new();
    loop {
        buf.clear();
        match reader.read_line(&mut buf) {
            Ok(n) if n > 0 && buf.ends_with('\n') => {}
            _ => break,
        }
        let line = buf.trim_end_matches('\n');
        seen.feed(line);
        if !killed && line.starts_with("F ") {
            fails += 1;
            if fails >= kill_after {
                let _ = child.kill(); // SIGKILL
                killed = true;
            }
        }
    }
    let _ = child.wait();
    killed
}

fn committed(group: &str, topic: &str) -> Option<i64> {
    let out = kafka_tool(&[
        "consumer-groups",
        "--bootstrap-server",
        &bootstrap(),
        "--describe",
        "--group",
        group,
    ]);
    out.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 4 && f[1] == topic && f[2] == "0")
            .then(|| f[3].parse::<i64>().ok())
            .flatten()
    })
}

/// The dead-letter topic's records with kcat: (value, key, headers) each.
fn dead_letters(topic: &str) -> Vec<(String, String, String)> {
    let out = kcat_formatted(&bootstrap(), topic, "%s\t%k\t%h\n");
    String::from_utf8_lossy(&out)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.splitn(3, '\t').collect();
            (
                f[0].to_string(),
                f.get(1).unwrap_or(&"").to_string(),
                f.get(2).unwrap_or(&"").to_string(),
            )
        })
        .collect()
}

fn settings(dlq: &str, extra: &[&str]) -> Vec<String> {
    let mut s: Vec<String> = vec![
        "pseidon-kafka.max-attempts=1".into(),
        "pseidon-kafka.retry-backoff-ms=10".into(),
        "pseidon-kafka.retry-backoff-max-ms=50".into(),
        format!("pseidon-kafka.dead-letter-topic={dlq}"),
    ];
    s.extend(extra.iter().map(|x| x.to_string()));
    s
}

/// The checks both the clean and the killed runs end with.
fn check_outcome(topic: &str, group: &str, dlq: &str, db: &Path, seen: &Seen) {
    let poison: BTreeSet<i64> = POISON_AT.iter().map(|&i| i as i64).collect();
    // Exactly the 3 poison messages are dead, each a group of its own.
    let dead: BTreeSet<String> = seen.dead.iter().cloned().collect();
    let want: BTreeSet<String> = poison
        .iter()
        .map(|o| format!("{topic}:0:{o}:{o}"))
        .collect();
    assert_eq!(dead, want, "dead groups");
    // The other 9 997 were processed (in groups marked done).
    let done = seen.done_offsets(db);
    let missing: Vec<i64> = (0..N as i64)
        .filter(|o| !poison.contains(o) && !done.contains(o))
        .collect();
    assert!(
        missing.is_empty(),
        "{} offsets never done: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert!(
        done.is_disjoint(&poison),
        "a poison message was marked done"
    );
    // The dead-letter topic holds exactly the 3 (kcat), with their key and origin headers.
    let letters = dead_letters(dlq);
    let vals: BTreeSet<String> = letters.iter().map(|l| l.0.clone()).collect();
    let want_vals: BTreeSet<String> = POISON_AT.iter().map(|i| format!("POISON-{i}")).collect();
    assert_eq!(vals, want_vals, "dead-letter values: {letters:?}");
    for (value, key, headers) in &letters {
        let i: usize = value.trim_start_matches("POISON-").parse().unwrap();
        assert_eq!(key, &format!("k{i}"), "key kept byte for byte");
        for h in [
            format!("pseidon.origin.topic={topic}"),
            "pseidon.origin.partition=0".to_string(),
            format!("pseidon.origin.offset={i}"),
            "pseidon.origin.attempts=1".to_string(),
            "pseidon.origin.reason=poison message (test)".to_string(),
        ] {
            assert!(headers.contains(&h), "header {h} in {headers}");
        }
        assert!(headers.contains("pseidon.origin.timestamp="), "{headers}");
    }
    // The commit passed the dead groups: at the end of the partition.
    assert_eq!(committed(group, topic), Some(N as i64), "committed offset");
}

#[test]
fn three_poison_messages_among_10000_are_isolated_dead_lettered_and_passed() {
    let topic = unique("poison");
    let dlq = format!("{topic}-dlq");
    let group = unique("poison-g");
    create_topic(&topic, 1);
    create_topic(&dlq, 1);
    kcat_produce_keyed(&bootstrap(), &topic, &values(), &["linger.ms=20"]);
    let db = tmp_db("poison");
    let started = Instant::now();
    let mut seen = Seen::default();
    let stderr = run(&args(&topic, &group, &db, &settings(&dlq, &[])), &mut seen);
    assert!(
        seen.end && seen.err.is_none(),
        "err={:?}\n{stderr}",
        seen.err
    );
    eprintln!(
        "poison run: {:?}, {} failures, {} hand-outs, {} done groups, {:?}",
        started.elapsed(),
        seen.failed.len(),
        seen.groups.len(),
        seen.done.len(),
        seen.poison
    );
    check_outcome(&topic, &group, &dlq, &db, &seen);
    // Rounds: every failure is one hand-out of a group holding a poison message.
    let biggest = seen.groups.values().map(Vec::len).max().unwrap_or(1).max(2);
    let log2 = (biggest as f64).log2().ceil() as usize;
    let bound = 3 * log2 + 1;
    assert!(
        seen.failed.len() <= bound,
        "{} failed hand-outs > 3 × ceil(log2({biggest})) + 1 = {bound}",
        seen.failed.len()
    );
    assert!(
        stderr.contains("DEAD, copied to the dead-letter topic"),
        "the dead letters are logged"
    );
}

/// A tiny deterministic generator (no crate needed); the seed is printed.
fn next_rand(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

#[test]
fn sigkill_during_bisection_loses_nothing_and_ends_with_the_same_three_dead() {
    let topic = unique("poison-kill");
    let dlq = format!("{topic}-dlq");
    let group = unique("poison-kill-g");
    create_topic(&topic, 1);
    create_topic(&dlq, 1);
    kcat_produce_keyed(&bootstrap(), &topic, &values(), &["linger.ms=20"]);
    let db = tmp_db("poison-kill");
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("seed {seed}");
    let a = args(&topic, &group, &db, &settings(&dlq, &[]));
    let mut seen = Seen::default();
    let started = Instant::now();
    let mut kills = 0;
    let mut points = Vec::new();
    // 10 kills, each after a random number (1..=6) of failures of that run.
    while kills < 10 && started.elapsed() < Duration::from_secs(90) {
        let after = 1 + (next_rand(&mut seed) % 6) as usize;
        if !run_and_kill(&a, after, &mut seen) {
            break;
        }
        kills += 1;
        points.push((after, seen.failed.len()));
    }
    eprintln!(
        "{kills} SIGKILLs at (failures of the run, failures in all): {points:?}, {:?}",
        started.elapsed()
    );
    assert!(
        kills >= 3,
        "only {kills} kills happened during the bisection"
    );
    // The last run waits for the consumer group to take it in (the killed member's
    // session timeout, 6 s) and to commit.
    let mut last = a.clone();
    let idle = last.iter().position(|x| x == "--idle-ms").unwrap() + 1;
    last[idle] = "15000".into();
    let stderr = run(&last, &mut seen);
    assert!(
        seen.end && seen.err.is_none(),
        "err={:?}\n{stderr}",
        seen.err
    );
    eprintln!(
        "after the restart: {:?} in all, {:?}",
        started.elapsed(),
        seen.poison
    );
    // A kill between the dead letter's delivery and its `dead` row may copy a message
    // twice (at least once); the set of dead letters is still exactly the 3.
    check_outcome(&topic, &group, &dlq, &db, &seen);
}

#[test]
fn a_dead_letter_topic_that_refuses_the_copy_leaves_the_group_failed_never_dead() {
    let topic = unique("poison-dlqfail");
    let dlq = format!("{topic}-dlq");
    let group = unique("poison-dlqfail-g");
    create_topic(&topic, 1);
    kafka_tool(&[
        "topics",
        "--bootstrap-server",
        &bootstrap(),
        "--create",
        "--topic",
        &dlq,
        "--partitions",
        "1",
        "--replication-factor",
        "1",
        "--config",
        "max.message.bytes=200",
    ]);
    let big = format!("POISON-{}", "x".repeat(2000));
    let vals: Vec<String> = (0..10)
        .map(|i| {
            if i == 4 {
                big.clone()
            } else {
                format!("v-{i}")
            }
        })
        .collect();
    kcat_produce_keyed(&bootstrap(), &topic, &vals, &["linger.ms=20"]);
    let db = tmp_db("poison-dlqfail");
    let mut seen = Seen::default();
    let s = settings(
        &dlq,
        &[
            "pseidon-kafka.retry-backoff-ms=200",
            "pseidon-kafka.retry-backoff-max-ms=500",
        ],
    );
    let stderr = run(&args(&topic, &group, &db, &s), &mut seen);
    assert!(
        seen.end && seen.err.is_none(),
        "err={:?}\n{stderr}",
        seen.err
    );
    assert!(seen.dead.is_empty(), "never dead: {:?}", seen.dead);
    assert_eq!(
        seen.poison.as_deref().map(|p| p.starts_with("failed=1 ")),
        Some(true),
        "{:?}",
        seen.poison
    );
    let line = stderr
        .lines()
        .find(|l| l.contains("dead-letter copy") || l.contains("writing the dead-letter copy"))
        .unwrap_or_else(|| panic!("no dead-letter error logged:\n{stderr}"));
    eprintln!("the error: {line}");
    assert!(line.contains(&dlq), "names the topic: {line}");
    assert!(
        line.to_lowercase().contains("too large") || line.contains("MSG_SIZE_TOO_LARGE"),
        "says why: {line}"
    );
    assert!(line.contains("stays failed"), "{line}");
    assert!(
        dead_letters(&dlq).is_empty(),
        "nothing in the dead-letter topic"
    );
    // The commit stops at the poison message (offset 4).
    assert_eq!(committed(&group, &topic), Some(4));
}

/// A datasource plugin built before 0.3.1 (set `PSEIDON_OLD_KAFKA_SO` to a
/// `libpseidon_kafka.so` built at an older commit, e.g. 43f9ec0; under CI it must be set)
/// loads with this plugin-api, lists its groups, and answers `mark_failed` with "not
/// supported by this plugin".
#[test]
fn an_older_datasource_plugin_loads_and_mark_failed_is_not_supported() {
    let Some(old) = pseidon_tests::old_kafka_so() else {
        return;
    };
    let topic = unique("poison-old");
    create_topic(&topic, 1);
    kcat_produce_keyed(&bootstrap(), &topic, &["a".into(), "POISON".into()], &[]);
    let run_old = |group: &str, fail: bool| {
        let mut a = consume_child_args(
            &bootstrap(),
            &topic,
            group,
            &tmp_db("poison-old"),
            &["--idle-ms", "3000"],
        );
        a[1] = old.clone();
        if fail {
            a.extend(["--fail-on".to_string(), "POISON".to_string()]);
        }
        let out = Command::new(CHILD)
            .args(&a)
            .output()
            .expect("run consume_child");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = run_old(&unique("poison-old-g"), false);
    assert!(
        listed.contains("STATUS ready=0 run=0 done=1 lost=0") && listed.contains("END 2"),
        "{listed}"
    );
    let failed = run_old(&unique("poison-old-g"), true);
    assert!(
        failed.contains("ERR mark_failed") && failed.contains("not supported by this plugin"),
        "{failed}"
    );
}

/// The copy processor under `pseidon run`: one record larger than the target topic takes
/// (`max.message.bytes=1000`, the record 5 000 bytes) among 300. The copier marks its
/// group failed, the datasource bisects it and dead-letters the record, and every other
/// record reaches the target (kcat), the big one never.
#[test]
fn the_copy_processor_dead_letters_a_record_too_large_for_the_target_and_goes_on() {
    use pseidon_tests::{RunChild, copy_plugins, kcat_values, temp_dir};
    let root = temp_dir("poison-copy");
    let plugins = root.join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    copy_plugins(&plugins, &["pseidon_kafka", "pseidon_copy_processor"]);
    let from = unique("poison-copy-from");
    let to = format!("{from}-to");
    let dlq = format!("{from}-dlq");
    create_topic(&from, 1);
    create_topic(&dlq, 1);
    kafka_tool(&[
        "topics",
        "--bootstrap-server",
        &bootstrap(),
        "--create",
        "--topic",
        &to,
        "--partitions",
        "1",
        "--replication-factor",
        "1",
        "--config",
        "max.message.bytes=1000",
    ]);
    let big = format!("BIG-{}", "x".repeat(5000));
    let vals: Vec<String> = (0..300)
        .map(|i| {
            if i == 177 {
                big.clone()
            } else {
                format!("m-{i}")
            }
        })
        .collect();
    kcat_produce_keyed(&bootstrap(), &from, &vals, &["linger.ms=20"]);
    let conf = root.join("pseidon.toml");
    std::fs::write(
        &conf,
        format!(
            "plugin-dirs = [{plugins:?}]\nshutdown-timeout-ms = 20000\n\n\
             [kafka]\nbootstrap.servers = {:?}\n\
             session.timeout.ms = 6000\nheartbeat.interval.ms = 1000\n\n\
             [pseidon-kafka]\nstatus-db = {:?}\ngroup-max-messages = 100\n\
             max-attempts = 1\nretry-backoff-ms = 10\nretry-backoff-max-ms = 50\n\
             dead-letter-topic = {dlq:?}\n\n\
             [copy-processor]\nfrom = {from:?}\nto = {to:?}\ngroup = {:?}\nmax-attempts = 2\n",
            bootstrap(),
            root.join("status.db"),
            format!("{from}-copier"),
        ),
    )
    .unwrap();
    let started = Instant::now();
    let mut run = RunChild::spawn(&conf, "info");
    let small: BTreeSet<String> = vals.iter().filter(|v| **v != big).cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    let (copied, dead) = loop {
        run.drain();
        let copied: BTreeSet<String> = kcat_values(&to)
            .iter()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        let dead = dead_letters(&dlq);
        if !dead.is_empty() && small.is_subset(&copied) {
            break (copied, dead);
        }
        assert!(
            Instant::now() < deadline,
            "target {} of {}, dead letters {}: {:#?}",
            copied.len(),
            small.len(),
            dead.len(),
            &run.lines[run.lines.len().saturating_sub(30)..]
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    eprintln!(
        "copy with a poison record: {:?}, {} values in the target, {} dead letter(s)",
        started.elapsed(),
        copied.len(),
        dead.len()
    );
    run.signal("TERM");
    let _ = run.finish(Duration::from_secs(30), Duration::from_millis(50));
    assert!(
        !copied.contains(&big),
        "the big record never reached the target"
    );
    assert_eq!(copied, small, "exactly the 299 others");
    let values: Vec<&str> = dead.iter().map(|d| d.0.as_str()).collect();
    assert_eq!(
        values,
        vec![big.as_str()],
        "only the big record is dead-lettered"
    );
    assert!(
        dead[0].2.contains("pseidon.origin.offset=177")
            && dead[0]
                .2
                .contains(&format!("pseidon.origin.reason=not delivered to `{to}`")),
        "{}",
        dead[0].2
    );
    let _ = std::fs::remove_dir_all(&root);
}
