//! The example copy processor (`examples/copy-processor`) under `pseidon run` with the
//! real broker: the source topic is filled with kcat, `pseidon run` is SIGKILLed in
//! the middle of the copy and started again, and kcat checks that the target holds
//! every source message, with duplicates only from groups that were not done at the
//! kill. Needs `cargo build --workspace` first (scripts/test does it).

use std::{
    collections::{BTreeSet, HashMap},
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use pseidon_tests::{
    RunChild, bootstrap, copy_plugins, copy_run_to_the_end, create_topic, groups_of,
    kcat_formatted, kcat_produce_keyed, kcat_values, temp_dir, unique,
};

const N: usize = 20_000;

/// Writes `values` to `topic` with kcat, keyed so they spread over the partitions.
fn produce(topic: &str, values: &[String]) {
    kcat_produce_keyed(&bootstrap(), topic, values, &["linger.ms=20"]);
}

/// Every message of `topic` as (partition, offset) -> value, read with kcat.
fn positions(topic: &str) -> HashMap<(i32, i64), String> {
    let out = kcat_formatted(&bootstrap(), topic, "%p %o %s\n");
    String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ' ');
            let p = parts.next()?.parse().ok()?;
            let o = parts.next()?.parse().ok()?;
            Some(((p, o), parts.next()?.to_string()))
        })
        .collect()
}

/// The conf of a run: both plugins, the copy settings, `extra` in `[copy-processor]`.
fn write_conf(conf: &Path, plugins: &Path, status_db: &Path, from: &str, to: &str, extra: &str) {
    fs::write(
        conf,
        format!(
            "plugin-dirs = [{plugins:?}]\nshutdown-timeout-ms = 20000\n\n\
             [kafka]\nbootstrap.servers = {:?}\n\n\
             session.timeout.ms = 6000\nheartbeat.interval.ms = 1000\n\n\
             [pseidon-kafka]\nstatus-db = {status_db:?}\ngroup-max-messages = 250\n\n\
             [copy-processor]\nfrom = {from:?}\nto = {to:?}\ngroup = {:?}\n{extra}\n",
            bootstrap(),
            format!("{from}-copier"),
        ),
    )
    .unwrap();
}

/// (partition, min-offset, max-offset) of a group id `topic:partition:min:max`.
fn range(id: &str) -> (i32, i64, i64) {
    let parts: Vec<&str> = id.rsplitn(4, ':').collect();
    (
        parts[2].parse().unwrap(),
        parts[1].parse().unwrap(),
        parts[0].parse().unwrap(),
    )
}

fn count(values: &[Vec<u8>]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for v in values {
        *m.entry(String::from_utf8_lossy(v).into_owned())
            .or_insert(0) += 1;
    }
    m
}

#[test]
fn copy_processor_survives_sigkill_mid_copy_and_copies_every_message() {
    let root: PathBuf = temp_dir("pseidon-copy");
    let plugins = root.join("plugins");
    fs::create_dir(&plugins).unwrap();
    copy_plugins(&plugins, &["pseidon_kafka", "pseidon_copy_processor"]);
    // A conf with the Kafka plugin only, for `pseidon groups` while `run` runs.
    let kafka_only = root.join("kafka-only");
    fs::create_dir(&kafka_only).unwrap();
    copy_plugins(&kafka_only, &["pseidon_kafka"]);
    let status_db = root.join("status.db");
    let from = unique("copy-from");
    let to = unique("copy-to");
    create_topic(&from, 3);
    create_topic(&to, 3);
    let values: Vec<String> = (0..N).map(|i| format!("m-{i}")).collect();
    produce(&from, &values);
    let source = positions(&from);
    assert_eq!(source.len(), N);

    let conf = root.join("pseidon.toml");
    let groups_conf = root.join("groups.toml");
    write_conf(&groups_conf, &kafka_only, &status_db, &from, &to, "");
    // First run: slowed down, so the SIGKILL lands in the middle of the copy.
    write_conf(&conf, &plugins, &status_db, &from, &to, "max-rate = 2500\n");
    let mut run = RunChild::spawn(&conf, "info");
    let deadline = Instant::now() + Duration::from_secs(60);
    let at_kill = loop {
        let n = kcat_values(&to).len();
        if n >= 2_000 {
            break n;
        }
        run.drain();
        assert!(
            Instant::now() < deadline,
            "the copy did not start: {:#?}",
            run.lines
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    run.signal("KILL");
    assert_eq!(
        run.finish(Duration::from_secs(30), Duration::from_millis(50)),
        None,
        "killed by SIGKILL"
    );
    let copied_at_kill = kcat_values(&to).len();
    assert!(
        copied_at_kill < N,
        "the copy was already complete at the kill ({at_kill}, {copied_at_kill})"
    );
    let at_kill_groups = groups_of(&groups_conf, &["--topic", &from]);
    let done_at_kill: Vec<&String> = at_kill_groups
        .iter()
        .filter(|(_, s)| *s == "done")
        .map(|(id, _)| id)
        .collect();
    assert!(!done_at_kill.is_empty(), "{at_kill_groups:?}");
    assert!(
        at_kill_groups.values().any(|s| s != "done"),
        "nothing unfinished at the kill: {at_kill_groups:?}"
    );

    // Then at full speed until every group is done. The status db is the running
    // process's alone, so: wait for every value in the target and the copier's
    // `caught up` logged after the last delivery (it marks a batch's groups done before
    // it reads again), SIGTERM, and look at the groups; if a stop still caught a
    // batch between its delivery and its mark, those groups replay in one more run.
    write_conf(&conf, &plugins, &status_db, &from, &to, "");
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut rounds = 0;
    loop {
        rounds += 1;
        let run = copy_run_to_the_end(&conf, deadline, || {
            let have: BTreeSet<String> = count(&kcat_values(&to)).into_keys().collect();
            have.len() >= N && values.iter().all(|v| have.contains(v))
        });
        assert!(
            run.lines
                .iter()
                .any(|l| l.contains("processor stopped") && l.contains("copy-processor")),
            "{:#?}",
            run.lines
        );
        if rounds == 1 {
            // The groups unfinished at the kill were replayed first.
            assert!(
                run.lines
                    .iter()
                    .any(|l| l.contains("replaying") && l.contains("unfinished message group")),
                "{:#?}",
                run.lines
            );
        }
        let g = groups_of(&groups_conf, &["--topic", &from]);
        let covered: i64 = g
            .iter()
            .filter(|(_, s)| *s == "done")
            .map(|(id, _)| {
                let (_, lo, hi) = range(id);
                hi - lo + 1
            })
            .sum();
        if covered == N as i64 && g.values().all(|s| s == "done") {
            break;
        }
        assert!(
            rounds < 3,
            "groups still unfinished after {rounds} runs: {g:?}"
        );
    }

    // Every source message is in the target; duplicates only from groups not done at the kill.
    let target = kcat_values(&to);
    let counts = count(&target);
    let want: BTreeSet<&str> = values.iter().map(String::as_str).collect();
    let got: BTreeSet<&str> = counts.keys().map(String::as_str).collect();
    assert_eq!(
        got, want,
        "the target's set of values differs from the source's"
    );
    assert!(target.len() >= N);
    for id in &done_at_kill {
        let (p, lo, hi) = range(id);
        for o in lo..=hi {
            let v = &source[&(p, o)];
            assert_eq!(
                counts[v], 1,
                "{v} (group {id}, done before the kill) was copied more than once"
            );
        }
    }
    eprintln!(
        "copied {N} messages: {copied_at_kill} before the SIGKILL, {} in the target at the end ({} duplicates from unfinished groups), {rounds} run(s) after the kill",
        target.len(),
        target.len() - N
    );
    let _ = fs::remove_dir_all(&root);
}
