//! `pseidon metadata` and `pseidon groups` (message counts, `--format json`, `--since`,
//! no Kafka connection when only the status database is read) and `pseidon groups
//! replay`, through the real `libpseidon_kafka.so` and the real broker, checked against
//! Kafka's own tools (`kafka-topics --describe`, `kafka-get-offsets`,
//! `kafka-consumer-groups --describe`) and kcat.
//! Needs `cargo build --workspace` first (scripts/test does it).

use std::{
    fs,
    io::Write as _,
    path::PathBuf,
    process::{Command, Output, Stdio},
    time::{Duration, SystemTime},
};

use pseidon_plugin_api::ReaderOptions;
use pseidon_tests::{
    bootstrap, copy_plugins, create_topic, kafka_tool, kcat_values, pseidon_bin, temp_dir, unique,
};
use serde_json::Value;

/// A work dir with a copy of the Kafka plugin, a conf naming it and a status db of its own.
struct Setup {
    root: PathBuf,
    conf: PathBuf,
    extra: String,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

impl Setup {
    /// `extra` is appended to the conf's `[pseidon-kafka]` table.
    fn new(extra: &str) -> Setup {
        let root = temp_dir("pseidon-cli-meta");
        let plugins = root.join("plugins");
        fs::create_dir(&plugins).unwrap();
        copy_plugins(&plugins, &["pseidon_kafka"]);
        let s = Setup {
            conf: root.join("pseidon.toml"),
            root,
            extra: extra.to_string(),
        };
        s.write_conf(&bootstrap());
        s
    }

    /// (Re)writes the conf with `bootstrap.servers = servers`.
    fn write_conf(&self, servers: &str) {
        fs::write(
            &self.conf,
            format!(
                "plugin-dirs = [{:?}]\n\n[kafka]\nbootstrap.servers = {servers:?}\n\n[pseidon-kafka]\nstatus-db = {:?}\n{}\n",
                self.root.join("plugins"),
                self.root.join("status.db"),
                self.extra
            ),
        )
        .unwrap();
    }

    fn pseidon(&self, args: &[&str]) -> Output {
        self.pseidon_stdin(args, b"")
    }

    fn pseidon_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = Command::new(pseidon_bin())
            .arg("--conf")
            .arg(&self.conf)
            .args(args)
            .env_remove("PSEIDON_CONF")
            .env_remove("PSEIDON_LOG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        let stderr = text(&out.stderr);
        assert!(
            !stderr.contains("panicked") && !stderr.to_lowercase().contains("backtrace"),
            "pseidon {args:?} panicked:\n{stderr}"
        );
        out
    }

    /// Runs `args`, asserts exit 0, returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.pseidon(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "pseidon {args:?}\nstdout:\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Sends `lines` to `topic` (one message each), asserting every one was delivered.
    fn send(&self, topic: &str, lines: &[String]) {
        let input = format!("{}\n", lines.join("\n"));
        let out = self.pseidon_stdin(&["send", "--topic", topic], input.as_bytes());
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }

    /// `pseidon groups --format json` with `args`: the document.
    fn groups_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["groups", "--format", "json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// (id, status, attempt, messages) of every group of `topic`, from the JSON listing.
    fn rows(&self, topic: &str) -> Vec<(String, String, u64, Option<u64>)> {
        let doc = self.groups_json(&["--topic", topic]);
        doc["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                (
                    g["id"].as_str().unwrap().to_string(),
                    g["status"].as_str().unwrap().to_string(),
                    g["attempt"].as_u64().unwrap(),
                    g["messages"].as_u64(),
                )
            })
            .collect()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts a failed run (exit 2) whose stderr is one error line containing every needle.
fn assert_error(out: &Output, needles: &[&str]) {
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {stderr}");
    assert!(lines[0].starts_with("pseidon: error: "), "{stderr}");
    for n in needles {
        assert!(lines[0].contains(n), "`{n}` not in: {stderr}");
    }
}

/// The committed offset of `group` on partition 0 of `topic` (Kafka's consumer-groups
/// tool); `None` if nothing is committed.
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

/// `partition → offset` from `kafka-get-offsets --time T` for `topic`.
fn tool_offsets(topic: &str, time: &str) -> Vec<(i32, i64)> {
    let out = kafka_tool(&[
        "get-offsets",
        "--bootstrap-server",
        &bootstrap(),
        "--topic",
        topic,
        "--time",
        time,
    ]);
    let mut v: Vec<(i32, i64)> = out
        .lines()
        .filter_map(|l| {
            let mut f = l.rsplitn(3, ':');
            let offset = f.next()?.trim().parse().ok()?;
            let partition = f.next()?.parse().ok()?;
            (f.next()? == topic).then_some((partition, offset))
        })
        .collect();
    v.sort();
    v
}

/// `(partition, leader, replicas, isr)` from `kafka-topics --describe` for `topic`.
fn tool_partitions(topic: &str) -> Vec<(i64, i64, String, String)> {
    let out = kafka_tool(&[
        "topics",
        "--bootstrap-server",
        &bootstrap(),
        "--describe",
        "--topic",
        topic,
    ]);
    let field = |l: &str, name: &str| -> String {
        l.split('\t')
            .map(str::trim)
            .find_map(|f| f.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let mut v: Vec<(i64, i64, String, String)> = out
        .lines()
        .filter(|l| l.contains("Partition: "))
        .map(|l| {
            (
                field(l, "Partition:").parse().unwrap(),
                field(l, "Leader:").parse().unwrap(),
                field(l, "Replicas:"),
                field(l, "Isr:"),
            )
        })
        .collect();
    v.sort();
    v
}

fn ids(v: &Value) -> String {
    v.as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn topic_exists(topic: &str) -> bool {
    kafka_tool(&["topics", "--bootstrap-server", &bootstrap(), "--list"])
        .lines()
        .any(|l| l.trim() == topic)
}

// ---------------------------------------------------------------------------------
// metadata
// ---------------------------------------------------------------------------------

#[test]
fn metadata_shows_what_kafka_topics_and_get_offsets_show() {
    let s = Setup::new("");
    let topic = unique("meta");
    create_topic(&topic, 3);
    // 7, 4 and 0 messages in partitions 0, 1, 2 (kcat -p), then the first 3 of partition
    // 1 deleted: its low watermark moves to 3.
    for (p, n) in [(0, 7), (1, 4)] {
        let mut child = Command::new("kcat")
            .args(["-b", &bootstrap(), "-P", "-t", &topic, "-p", &p.to_string()])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let lines: String = (0..n).map(|i| format!("m{p}-{i}\n")).collect();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(lines.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
    }
    let json = s.root.join("delete.json");
    fs::write(
        &json,
        format!(r#"{{"partitions":[{{"topic":"{topic}","partition":1,"offset":3}}],"version":1}}"#),
    )
    .unwrap();
    kafka_tool(&[
        "delete-records",
        "--bootstrap-server",
        &bootstrap(),
        "--offset-json-file",
        json.to_str().unwrap(),
    ]);

    let doc: Value =
        serde_json::from_str(&s.ok(&["metadata", "--topic", &topic, "--format", "json"])).unwrap();
    assert_eq!(doc["query"]["topic"], topic.as_str());
    assert!(
        doc["cluster_id"].as_str().is_some_and(|c| !c.is_empty()),
        "{doc}"
    );
    let brokers = doc["brokers"].as_array().unwrap();
    assert_eq!(brokers.len(), 1, "{doc}");
    assert_eq!(brokers[0]["name"], bootstrap().as_str());
    assert_eq!(doc["controllerid"], brokers[0]["id"]);
    let topics = doc["topics"].as_array().unwrap();
    assert_eq!(topics.len(), 1);
    assert_eq!(topics[0]["topic"], topic.as_str());
    assert!(topics[0]["error"].is_null());
    let parts = topics[0]["partitions"].as_array().unwrap();
    let ours: Vec<(i64, i64, String, String)> = parts
        .iter()
        .map(|p| {
            (
                p["partition"].as_i64().unwrap(),
                p["leader"].as_i64().unwrap(),
                ids(&p["replicas"]),
                ids(&p["isrs"]),
            )
        })
        .collect();
    assert_eq!(ours, tool_partitions(&topic));
    let offsets = |key: &str| -> Vec<(i32, i64)> {
        parts
            .iter()
            .map(|p| {
                (
                    p["partition"].as_i64().unwrap() as i32,
                    p[key].as_i64().unwrap(),
                )
            })
            .collect()
    };
    let high = tool_offsets(&topic, "-1");
    let low = tool_offsets(&topic, "-2");
    assert_eq!(high, vec![(0, 7), (1, 4), (2, 0)]);
    assert_eq!(low, vec![(0, 0), (1, 3), (2, 0)]);
    assert_eq!(offsets("high_offset"), high);
    assert_eq!(offsets("low_offset"), low);

    // The text, as kcat -L prints it, with the offsets.
    let out = s.ok(&["metadata", "--topic", &topic]);
    assert!(
        out.starts_with(&format!("Metadata for topic \"{topic}\" (from broker ")),
        "{out}"
    );
    assert!(
        out.contains(&format!("  topic \"{topic}\" with 3 partitions:\n")),
        "{out}"
    );
    assert!(
        out.contains("    partition 1, leader 1, replicas: 1, isrs: 1, offsets: low 3, high 4\n"),
        "{out}"
    );
    // Every topic: ours among them, as kafka-topics --list has it.
    let all: Value = serde_json::from_str(&s.ok(&["metadata", "--format", "json"])).unwrap();
    assert_eq!(all["query"]["topic"], "*");
    let names: Vec<&str> = all["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["topic"].as_str().unwrap())
        .collect();
    assert!(names.contains(&topic.as_str()), "{names:?}");
}

#[test]
fn metadata_of_a_missing_topic_is_an_error_naming_it_and_creates_nothing() {
    let s = Setup::new("");
    let topic = unique("meta-missing");
    let out = s.pseidon(&["metadata", "--topic", &topic]);
    assert_error(&out, &[&topic, "Unknown topic"]);
    assert!(!topic_exists(&topic), "metadata must not create {topic}");
    // An unreachable cluster: an error naming the servers, within the timeout.
    s.write_conf("127.0.0.1:1");
    let out = s.pseidon(&["metadata", "--timeout-ms", "1500"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = text(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("pseidon: error: ") && last.contains("127.0.0.1:1"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------
// groups: counts, JSON, --since, SQLite only
// ---------------------------------------------------------------------------------

#[test]
fn groups_count_messages_list_as_json_filter_by_since_and_never_touch_kafka() {
    let s = Setup::new("group-max-messages = 10\n");
    let topic = unique("meta-groups");
    create_topic(&topic, 1);
    let lines: Vec<String> = (0..25).map(|i| format!("v-{i}")).collect();
    s.send(&topic, &lines);
    let group = unique("meta-groups-g");
    s.ok(&[
        "consume",
        "--topic",
        &topic,
        "--group",
        &group,
        "--mark-done",
        "-e",
    ]);
    // kcat: the topic holds the 25 messages the groups count.
    assert_eq!(kcat_values(&topic).len(), 25);
    let doc = s.groups_json(&["--topic", &topic]);
    assert_eq!(doc["count"], 3, "{doc}");
    assert_eq!(doc["messages"], 25, "{doc}");
    let rows = s.rows(&topic);
    let want: Vec<(String, String, u64, Option<u64>)> = [("0:9", 10), ("10:19", 10), ("20:24", 5)]
        .iter()
        .map(|(r, n)| (format!("{topic}:0:{r}"), "done".to_string(), 1, Some(*n)))
        .collect();
    assert_eq!(rows, want);
    let g0 = &doc["groups"][0];
    assert_eq!(g0["consumer_group"], group.as_str());
    assert_eq!(
        (g0["min_offset"].as_i64(), g0["max_offset"].as_i64()),
        (Some(0), Some(9))
    );
    assert!(g0["cluster_id"].as_str().is_some_and(|c| !c.is_empty()));
    assert!(g0["updated"].as_str().unwrap().ends_with('Z'), "{g0}");

    // The table: MESSAGES last, after the columns of before.
    let table = s.ok(&["groups", "--topic", &topic]);
    let t: Vec<&str> = table.lines().collect();
    let header: Vec<&str> = t[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "ID", "STATUS", "ATTEMPT", "UPDATED", "(UTC)", "GROUP", "CLUSTER", "MESSAGES"
        ],
        "{table}"
    );
    let counts: Vec<&str> = t[1..4]
        .iter()
        .map(|l| l.split_whitespace().last().unwrap())
        .collect();
    assert_eq!(counts, ["10", "10", "5"], "{table}");
    assert_eq!(t[4], "3 group(s)");

    // --since: by the time of the last status change.
    let consumed_at = SystemTime::now();
    assert_eq!(
        s.groups_json(&["--topic", &topic, "--since", "1h"])["count"],
        3
    );
    assert_eq!(
        s.groups_json(&["--topic", &topic, "--since", "0s"])["count"],
        0
    );
    std::thread::sleep(Duration::from_millis(1100));
    let id = format!("{topic}:0:10:19");
    s.ok(&["groups", "replay", &id]);
    let ago = consumed_at.elapsed().unwrap().as_millis() - 500;
    let recent = s.groups_json(&["--topic", &topic, "--since", &format!("{ago}ms")]);
    assert_eq!(recent["count"], 1, "{recent}");
    assert_eq!(recent["groups"][0]["id"], id.as_str());
    let out = s.pseidon(&["groups", "--since", "yesterday"]);
    assert_error(&out, &["--since", "yesterday"]);

    // Only SQLite: with no broker at all, not a line on stderr.
    s.write_conf("127.0.0.1:1");
    for args in [
        vec!["groups"],
        vec!["groups", "--format", "json", "--since", "1d"],
        vec!["groups", "mark-done", &id],
        vec!["groups", "replay", &id],
    ] {
        let out = s.pseidon(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        assert_eq!(text(&out.stderr), "", "{args:?} printed on stderr");
        assert!(!out.stdout.is_empty(), "{args:?}");
    }
    assert_eq!(s.rows(&topic)[1].1, "ready");
}

// ---------------------------------------------------------------------------------
// groups replay
// ---------------------------------------------------------------------------------

#[test]
fn a_replayed_done_group_arrives_once_more_in_order_as_attempt_2_and_offsets_never_go_back() {
    let s = Setup::new("group-max-messages = 10\n");
    let topic = unique("meta-replay");
    create_topic(&topic, 1);
    let lines: Vec<String> = (0..30).map(|i| format!("r-{i}")).collect();
    s.send(&topic, &lines);
    let group = unique("meta-replay-g");
    let consume = |extra: &[&str]| {
        let mut args = vec!["consume", "--topic", &topic, "--group", &group, "-e"];
        args.extend_from_slice(extra);
        s.ok(&args)
    };
    let printed = consume(&["--mark-done"]);
    assert_eq!(printed.lines().count(), 30);
    assert_eq!(committed(&group, &topic), Some(30));
    let id = format!("{topic}:0:10:19");

    // Replay: back to ready, nothing committed moves.
    let out = s.ok(&["groups", "replay", "--group", &group, &id]);
    assert_eq!(
        out.trim_end(),
        format!(
            "replay {id}: done -> ready; the next reader of {topic} in consumer group {group} \
             delivers it as attempt 2"
        )
    );
    let rows = s.rows(&topic);
    assert_eq!((rows[1].1.as_str(), rows[1].2), ("ready", 1), "{rows:?}");
    assert!(
        rows.iter().filter(|r| r.0 != id).all(|r| r.1 == "done"),
        "{rows:?}"
    );
    assert_eq!(committed(&group, &topic), Some(30));

    // New data after it: the replay comes first, then the new messages.
    let more: Vec<String> = (30..35).map(|i| format!("r-{i}")).collect();
    s.send(&topic, &more);
    {
        let host = pseidon_host::Host::load_path(&s.conf).unwrap();
        let source = host
            .registry()
            .reg_get_wait_source("pseidon.kafka.util.datasource", Duration::from_secs(5))
            .unwrap();
        let mut reader = source
            .reader(&[topic.as_str()], ReaderOptions::default().group_id(&group))
            .unwrap();
        let mut got = Vec::new();
        while got.len() < 2 {
            if let Some(g) = reader.next_group(Duration::from_secs(30)).unwrap() {
                got.push(g);
            }
        }
        let replayed = &got[0];
        assert_eq!((replayed.id(), replayed.attempt()), (id.as_str(), 2));
        let offsets: Vec<i64> = replayed.messages().iter().map(|m| m.offset()).collect();
        assert_eq!(offsets, (10..20).collect::<Vec<_>>());
        let values: Vec<&[u8]> = replayed
            .messages()
            .iter()
            .map(|m| m.value().unwrap_or_default())
            .collect();
        let want: Vec<&[u8]> = lines[10..20].iter().map(|l| l.as_bytes()).collect();
        assert_eq!(values, want);
        let new = &got[1];
        assert_eq!(
            (new.id(), new.attempt()),
            (format!("{topic}:0:30:34").as_str(), 1)
        );
        reader.close().unwrap();
        let mut host = host;
        assert!(host.shutdown().is_empty());
    }
    // Not done yet: nothing committed moves, backwards or forwards.
    assert_eq!(committed(&group, &topic), Some(30));
    let rows = s.rows(&topic);
    assert_eq!((rows[1].1.as_str(), rows[1].2), ("run", 2), "{rows:?}");

    // Replaying a group that is still unfinished changes nothing, and says so.
    let out = s.ok(&["groups", "replay", "--group", &group, &id]);
    assert!(out.contains("already run (unfinished), unchanged"), "{out}");
    assert!(out.contains("as attempt 3"), "{out}");
    assert_eq!(s.rows(&topic)[1].2, 2);

    // Done again after mark-done; the next reader has nothing to replay and commits
    // past the new data.
    s.ok(&[
        "groups",
        "mark-done",
        "--group",
        &group,
        &id,
        &format!("{topic}:0:30:34"),
    ]);
    let rows = s.rows(&topic);
    assert_eq!((rows[1].1.as_str(), rows[1].2), ("done", 2), "{rows:?}");
    assert!(rows.iter().all(|r| r.1 == "done"), "{rows:?}");
    assert_eq!(consume(&["--mark-done"]), "", "nothing is delivered again");
    assert_eq!(committed(&group, &topic), Some(35));

    // An unknown id: an error naming it, exit 2.
    let unknown = format!("{topic}:0:100:109");
    assert_error(&s.pseidon(&["groups", "replay", &unknown]), &[&unknown]);
    // A malformed one too.
    assert_error(
        &s.pseidon(&["groups", "replay", "not-an-id"]),
        &["not-an-id", "topic:partition:min-offset:max-offset"],
    );
}
