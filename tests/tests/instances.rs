//! Named instances (issue 18, `[pseidon-kafka.instances.NAME]`): two clusters in one
//! host. Cluster A is the shared test broker, cluster B an [`OwnBroker`] of this file
//! (ports 19861-19869). Checked with kcat against each broker, never through the plugin:
//! - the registry lists both pairs of names, `pseidon send --sink …datasink.b` writes to
//!   B only and `pseidon consume --source …datasource.b` reads B (its own status db);
//! - the copy processor copies A's topic (default datasource) to B (named datasink) with
//!   three SIGKILLs at random points: every message arrives (0 lost), duplicates counted;
//!   and back, B (named datasource) to A (default datasink), with one SIGKILL;
//! - metrics and readiness cover both instances without colliding; an instance's bad key
//!   fails the load naming the key as written; `pseidon config` redacts its secrets.
//!
//! Needs `cargo build --workspace` first (scripts/test does it).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs,
    process::Command,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use pseidon_tests::{
    OwnBroker, RunChild, Workdir, bootstrap, copy_plugins, copy_run_to_the_end, create_topic,
    groups_of, kcat_produce_keyed, kcat_values, kcat_values_from, unique,
};

const SINK_B: &str = "pseidon.kafka.util.datasink.b";
const SOURCE_B: &str = "pseidon.kafka.util.datasource.b";

/// `[pseidon-kafka.instances.b]` lines for cluster B at `bootstrap_b`.
fn instance_b(bootstrap_b: &str, settings: &str) -> String {
    format!(
        "\n[pseidon-kafka.instances.b]\n{settings}\n\n[pseidon-kafka.instances.b.kafka]\n\
         bootstrap.servers = {bootstrap_b:?}\n"
    )
}

#[test]
fn an_instance_that_fails_to_start_fails_the_load_naming_its_key() {
    let w = Workdir::kafka("pseidon-instances-bad", "", "");
    let mut text = fs::read_to_string(&w.conf).unwrap();
    text.push_str(&instance_b("127.0.0.1:19863", "group-max-messages = 0"));
    fs::write(&w.conf, &text).unwrap();
    let out = w.run(&["--strict", "plugins"], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("pseidon-kafka.instances.b.group-max-messages"),
        "{stderr}"
    );
    // The default instance is not left registered either.
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        !listing.contains("pseidon.kafka.util.datasink"),
        "{listing}"
    );
    // librdkafka's refusal names the key as written too (the kafka table ends the conf).
    let text = text.replace("group-max-messages = 0", "") + "no.such.property = \"1\"\n";
    fs::write(&w.conf, &text).unwrap();
    let out = w.run(&["--strict", "plugins"], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("pseidon-kafka.instances.b.kafka.no.such.property"),
        "{stderr}"
    );
    // And an instance without its own bootstrap servers.
    let text = text.replace("bootstrap.servers = \"127.0.0.1:19863\"", "");
    fs::write(&w.conf, &text).unwrap();
    let out = w.run(&["--strict", "plugins"], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("pseidon-kafka.instances.b.kafka.bootstrap.servers")
            && stderr.contains("not inherited"),
        "{stderr}"
    );
}

#[test]
fn a_named_instance_registers_its_names_and_talks_to_its_own_cluster() {
    let b = OwnBroker::start(19861, "");
    let w = Workdir::kafka("pseidon-instances-cli", "", "");
    let topic = unique("inst-cli");
    b.create_topic(&topic, 2);
    // Append instance b to the conf Workdir wrote (its [pseidon-kafka] table ends it).
    let mut text = fs::read_to_string(&w.conf).unwrap();
    text.push_str(&instance_b(&b.bootstrap, ""));
    fs::write(&w.conf, text).unwrap();

    let out = w.run(&["plugins"], b"");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{listing}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "pseidon.kafka.util.datasink",
        "pseidon.kafka.util.datasource",
        SINK_B,
        SOURCE_B,
    ] {
        assert!(listing.contains(name), "{name} not in:\n{listing}");
    }

    let lines: String = (0..100).map(|i| format!("b-{i}\n")).collect();
    let out = w.run(
        &["send", "--topic", &topic, "--sink", SINK_B],
        lines.as_bytes(),
    );
    assert!(
        out.status.success(),
        "send: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut on_b: Vec<String> = kcat_values_from(&b.bootstrap, &topic)
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    on_b.sort();
    let mut want: Vec<String> = (0..100).map(|i| format!("b-{i}")).collect();
    want.sort();
    assert_eq!(on_b, want, "cluster B holds exactly what was sent");
    // Nothing went to cluster A: the topic does not even exist there.
    assert!(
        !topics_of_a().contains(&topic),
        "topic {topic} exists on cluster A"
    );

    let out = w.run(
        &[
            "consume",
            "--source",
            SOURCE_B,
            "--topic",
            &topic,
            "--group",
            &unique("inst-g"),
            "-e",
            "--mark-done",
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "consume: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut read: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    read.sort();
    assert_eq!(read, want, "read back from cluster B");
    // Instance b tracked its groups in its own status database, beside the default's.
    let db_b = w.root.join("status.b.db");
    assert!(db_b.exists(), "no {}", db_b.display());
    assert!(!w.db().exists(), "the default status db was used");
    // `groups --source` reads that database: every group done, 100 messages in all.
    let g = groups_of(&w.conf, &["--source", SOURCE_B, "--topic", &topic]);
    assert!(!g.is_empty() && g.values().all(|s| s == "done"), "{g:?}");
    assert_eq!(done_messages(&g), 100, "{g:?}");
    // `metadata --source` asks cluster B: the topic is there, led by B.
    let out = w.run(
        &[
            "metadata", "--source", SOURCE_B, "--topic", &topic, "--format", "json",
        ],
        b"",
    );
    let meta = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(meta.contains(&topic) && meta.contains("19861"), "{meta}");
}

/// The topics of cluster A (kcat -L of every topic: naming one could create it).
fn topics_of_a() -> Vec<String> {
    let out = Command::new("kcat")
        .args(["-b", &bootstrap(), "-L"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kcat -L: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("topic \""))
        .filter_map(|l| l.split('"').next())
        .map(str::to_string)
        .collect()
}

/// A number from the clock, for the kill points.
fn random_below(n: usize) -> usize {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as usize);
    nanos.wrapping_mul(2_654_435_761) % n.max(1)
}

/// The messages of group ids `topic:partition:min:max` that are done.
fn done_messages(g: &BTreeMap<String, String>) -> i64 {
    g.iter()
        .filter(|(_, s)| *s == "done")
        .map(|(id, _)| {
            let parts: Vec<&str> = id.rsplitn(4, ':').collect();
            parts[0].parse::<i64>().unwrap() - parts[1].parse::<i64>().unwrap() + 1
        })
        .sum()
}

/// The work dir of a copy test: both plugins; the conf's settings shared by every run.
fn copy_workdir(name: &str) -> Workdir {
    Workdir::new(
        name,
        &["pseidon_kafka", "pseidon_copy_processor"],
        COPY_HOST,
        COPY_KAFKA,
        COPY_SETTINGS,
    )
}

const COPY_HOST: &str = "shutdown-timeout-ms = 20000";
/// A short session: a restart after a SIGKILL waits out the killed member's session.
const COPY_KAFKA: &str = "session.timeout.ms = 6000\nheartbeat.interval.ms = 1000";
const COPY_SETTINGS: &str = "group-max-messages = 250";

/// Conf `name` of `w` with the `[copy-processor]` table `copier` and then `instance`'s
/// tables (both tables: order is free).
fn copy_conf(w: &Workdir, name: &str, copier: &str, instance: &str) -> std::path::PathBuf {
    let conf = w.write_conf(name, COPY_HOST, COPY_KAFKA, COPY_SETTINGS);
    let mut text = fs::read_to_string(&conf).unwrap();
    text.push_str(copier);
    text.push_str(instance);
    fs::write(&conf, text).unwrap();
    conf
}

#[test]
fn copy_between_two_clusters_survives_three_sigkills_with_nothing_lost() {
    const N: usize = 20_000;
    let started = Instant::now();
    let b = OwnBroker::start(19862, "");
    let w = copy_workdir("pseidon-instances-copy");
    let from = unique("inst-from");
    let to = unique("inst-to");
    create_topic(&from, 3);
    b.create_topic(&to, 3);
    let values: Vec<String> = (0..N).map(|i| format!("m-{i}")).collect();
    kcat_produce_keyed(&bootstrap(), &from, &values, &["linger.ms=20"]);
    assert_eq!(kcat_values(&from).len(), N);

    let copier = |extra: &str| {
        format!(
            "\n[copy-processor]\nfrom = {from:?}\nto = {to:?}\ngroup = {:?}\nsink = {SINK_B:?}\n{extra}\n",
            format!("{from}-copier"),
        )
    };
    let write = |name: &str, extra: &str| {
        copy_conf(&w, name, &copier(extra), &instance_b(&b.bootstrap, ""))
    };
    // Slowed down so that the kills land in the middle of the copy.
    let slow = write("slow.toml", "max-rate = 1500");
    // `pseidon groups` through a conf with the Kafka plugin only (same status dbs).
    let kafka_only = w.root.join("kafka-only");
    fs::create_dir(&kafka_only).unwrap();
    copy_plugins(&kafka_only, &["pseidon_kafka"]);
    let groups_conf = w.root.join("groups.toml");
    let text = fs::read_to_string(&w.conf).unwrap().replace(
        &format!("{:?}", w.root.join("plugins")),
        &format!("{kafka_only:?}"),
    );
    fs::write(&groups_conf, text).unwrap();
    let fast = write("fast.toml", "");
    let on_b = || kcat_values_from(&b.bootstrap, &to).len();

    let mut kills = Vec::new();
    for round in 0..3 {
        // Each kill at a random point 0 to 2.5 s after the run's first copied message.
        let before = on_b();
        let delay = Duration::from_millis(random_below(2_500) as u64);
        let mut run = RunChild::spawn(&slow, "info");
        let spawned = Instant::now();
        // A restart waits out the killed member's session (6 s) before it reads on.
        let deadline = spawned + Duration::from_secs(60);
        while on_b() <= before {
            run.drain();
            assert!(
                Instant::now() < deadline,
                "round {round}: nothing copied in 60 s ({before} in B): {:#?}",
                &run.lines[run.lines.len().saturating_sub(60)..]
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let first_ms = spawned.elapsed().as_millis();
        std::thread::sleep(delay);
        run.signal("KILL");
        assert_eq!(
            run.finish(Duration::from_secs(20), Duration::from_millis(50)),
            None,
            "killed by SIGKILL"
        );
        let n = on_b();
        assert!(
            n < N,
            "round {round}: the copy was complete at the kill ({n})"
        );
        kills.push(format!(
            "{n} in B (first copy after {first_ms} ms, killed {} ms later)",
            delay.as_millis()
        ));
    }

    // Then at full speed until B holds every value and every group is done (a stop
    // between a delivery and its mark leaves groups to replay in one more run).
    let mut rounds = 0;
    loop {
        rounds += 1;
        let deadline = Instant::now() + Duration::from_secs(60);
        copy_run_to_the_end(&fast, deadline, || {
            let have: HashSet<Vec<u8>> = kcat_values_from(&b.bootstrap, &to).into_iter().collect();
            have.len() >= N
        });
        let g = groups_of(&groups_conf, &["--topic", &from]);
        if done_messages(&g) == N as i64 && g.values().all(|s| s == "done") {
            break;
        }
        assert!(
            rounds < 3,
            "groups still unfinished after {rounds} runs: {g:?}"
        );
    }

    let target = kcat_values_from(&b.bootstrap, &to);
    let mut counts: HashMap<String, usize> = HashMap::new();
    for v in &target {
        *counts
            .entry(String::from_utf8_lossy(v).into_owned())
            .or_insert(0) += 1;
    }
    let lost: Vec<&String> = values.iter().filter(|v| !counts.contains_key(*v)).collect();
    let strangers = counts.keys().filter(|k| !k.starts_with("m-")).count();
    let duplicates = target.len() - counts.len();
    eprintln!(
        "instances copy A -> B: {N} messages, SIGKILLs: {kills:?}, {} lost, \
         {duplicates} duplicates, {} in B, {rounds} final run(s), {:.1} s",
        lost.len(),
        target.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        lost.is_empty(),
        "{} lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert_eq!(strangers, 0);
    assert_eq!(counts.len(), N);
    // Nothing of the copy went to cluster A's topic of that name.
    assert!(
        !topics_of_a().contains(&to),
        "the target topic exists on cluster A"
    );
}

/// The metrics and readiness of the host loading the plugin with instance b (both on the
/// shared broker here, so both are ready): one family per name, the samples of each
/// instance under its registry name; four checks.
#[test]
fn metrics_and_readiness_cover_every_instance_without_colliding() {
    let _serial = pseidon_tests::plugin_lock();
    let topic = unique("inst-met");
    create_topic(&topic, 1);
    let conf = format!(
        "[kafka]\nbootstrap.servers = {:?}\n\n\
         [pseidon-kafka.instances.b.kafka]\nbootstrap.servers = {:?}\n",
        bootstrap(),
        bootstrap()
    );
    let mut host = pseidon_tests::kafka_host(&conf).expect("host loads the plugin");
    let obs = host
        .loaded_plugins()
        .iter()
        .find(|p| p.name() == "pseidon-kafka")
        .and_then(|p| p.observer())
        .expect("observability extension");
    for (name, n) in [("pseidon.kafka.util.datasink", 3), (SINK_B, 5)] {
        let sink = host
            .registry()
            .reg_get_wait_sink(name, Duration::from_secs(5))
            .expect("sink");
        for i in 0..n {
            sink.write(&topic, format!("{name}-{i}").as_bytes())
                .expect("write");
        }
        let report = sink.flush(Duration::from_secs(30)).expect("flush");
        assert_eq!(report.delivered, n as u64, "{name}: {report:?}");
    }
    assert_eq!(kcat_values(&topic).len(), 8);
    let m = obs.metrics();
    let mut names: Vec<&str> = m.iter().map(|f| f.name.as_str()).collect();
    let all = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all, "a family name twice: {names:?}");
    let accepted = m
        .iter()
        .find(|f| f.name == "pseidon_kafka_sink_messages_accepted")
        .expect("accepted family");
    let of = |sink: &str| {
        accepted
            .samples
            .iter()
            .find(|s| {
                s.labels.contains(&("sink".into(), sink.into()))
                    && s.labels.contains(&("topic".into(), topic.clone()))
            })
            .map(|s| s.value)
    };
    assert_eq!(of("pseidon.kafka.util.datasink"), Some(3.0), "{accepted:?}");
    assert_eq!(of(SINK_B), Some(5.0), "{accepted:?}");
    let checks = obs.readiness(Duration::from_secs(5));
    assert_eq!(checks.len(), 4, "{checks:?}");
    assert!(checks.iter().all(|c| c.ready), "{checks:?}");
    assert!(
        checks.iter().any(|c| c.name.contains(SINK_B))
            && checks.iter().any(|c| c.name.contains(SOURCE_B)),
        "{checks:?}"
    );
    assert!(host.shutdown().is_empty());
}

/// `pseidon config` shows an instance's keys as written, its secrets redacted.
#[test]
fn an_instances_secrets_are_redacted_in_the_effective_conf() {
    let w = Workdir::kafka("pseidon-instances-config", "", "");
    let mut text = fs::read_to_string(&w.conf).unwrap();
    text.push_str(&instance_b("127.0.0.1:19863", ""));
    text.push_str("sasl.password = \"instance-secret-42\"\n");
    fs::write(&w.conf, &text).unwrap();
    let out = w.run(&["config"], b"");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("pseidon-kafka.instances.b.kafka.bootstrap.servers = 127.0.0.1:19863"),
        "{stdout}"
    );
    assert!(
        stdout.contains("pseidon-kafka.instances.b.kafka.sasl.password = <redacted>"),
        "{stdout}"
    );
    assert!(!stdout.contains("instance-secret-42"), "{stdout}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("instance-secret-42"));
}

/// The other direction: the copy processor reads a named instance's datasource (B) and
/// writes through the default datasink (A), SIGKILLed once in the middle, then run to the
/// end: every message in A, the groups tracked in B's status db only (`groups --source
/// …datasource.b`), nothing written to B's topic of the target's name.
#[test]
fn copy_from_a_named_source_to_the_default_sink_survives_a_sigkill() {
    const N: usize = 6_000;
    let started = Instant::now();
    let b = OwnBroker::start(19864, "");
    let w = copy_workdir("pseidon-instances-copy-back");
    let from = unique("inst-back-from");
    let to = unique("inst-back-to");
    b.create_topic(&from, 3);
    create_topic(&to, 3);
    let values: Vec<String> = (0..N).map(|i| format!("b-{i}")).collect();
    kcat_produce_keyed(&b.bootstrap, &from, &values, &["linger.ms=20"]);
    assert_eq!(kcat_values_from(&b.bootstrap, &from).len(), N);

    let write = |name: &str, extra: &str| {
        let copier = format!(
            "\n[copy-processor]\nfrom = {from:?}\nto = {to:?}\ngroup = {:?}\nsource = {SOURCE_B:?}\n{extra}\n",
            format!("{from}-copier"),
        );
        // Nothing is inherited: the instance's consumer needs its own short session.
        let instance = instance_b(&b.bootstrap, COPY_SETTINGS) + COPY_KAFKA + "\n";
        copy_conf(&w, name, &copier, &instance)
    };
    let slow = write("slow.toml", "max-rate = 1500");
    let fast = write("fast.toml", "");
    let on_a = || kcat_values(&to).len();

    // One kill 0.5 to 1.5 s after the first copy reached A.
    let mut run = RunChild::spawn(&slow, "info");
    let deadline = Instant::now() + Duration::from_secs(60);
    while on_a() == 0 {
        run.drain();
        assert!(
            Instant::now() < deadline,
            "nothing copied in 60 s: {:#?}",
            &run.lines[run.lines.len().saturating_sub(60)..]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500 + random_below(1_000) as u64));
    run.signal("KILL");
    assert_eq!(
        run.finish(Duration::from_secs(20), Duration::from_millis(50)),
        None,
        "killed by SIGKILL"
    );
    let at_kill = on_a();
    assert!(at_kill < N, "the copy was complete at the kill ({at_kill})");

    let mut rounds = 0;
    loop {
        rounds += 1;
        let deadline = Instant::now() + Duration::from_secs(60);
        copy_run_to_the_end(&fast, deadline, || {
            let have: HashSet<Vec<u8>> = kcat_values(&to).into_iter().collect();
            have.len() >= N
        });
        let g = groups_of(&fast, &["--source", SOURCE_B, "--topic", &from]);
        if done_messages(&g) == N as i64 && g.values().all(|s| s == "done") {
            break;
        }
        assert!(
            rounds < 3,
            "groups still unfinished after {rounds} runs: {g:?}"
        );
    }
    // The default datasource never saw the topic: its status db has no group of it.
    let default_groups = groups_of(&fast, &["--topic", &from]);
    assert!(default_groups.is_empty(), "{default_groups:?}");

    let target = kcat_values(&to);
    let distinct: HashSet<String> = target
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    let lost = values.iter().filter(|v| !distinct.contains(*v)).count();
    eprintln!(
        "instances copy B -> A: {N} messages, killed with {at_kill} in A, {lost} lost, {} \
         duplicates, {rounds} final run(s), {:.1} s",
        target.len() - distinct.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(lost, 0);
    assert_eq!(distinct.len(), N, "values in A that were never sent");
    // Nothing of the copy went to cluster B's topic of that name.
    let on_b = Command::new("kcat")
        .args(["-b", &b.bootstrap, "-L", "-J"])
        .output()
        .unwrap();
    assert!(on_b.status.success());
    assert!(
        !String::from_utf8_lossy(&on_b.stdout).contains(&format!("\"{to}\"")),
        "the target topic exists on cluster B"
    );
}
