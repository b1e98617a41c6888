//! The `pseidon` command line against the real broker: `send`, `consume`, `groups`
//! and `config` through the real `libpseidon_kafka.so`, checked with kcat (an
//! independent client); and bad input, which must end in a one-line error naming the
//! culprit and a non-zero exit, never a panic or a backtrace.
//! Needs `cargo build --workspace` first (scripts/test does it).

use std::{
    collections::BTreeSet,
    fs,
    io::Write as _,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use pseidon_tests::{
    Workdir, bootstrap, create_topic, kcat_formatted, kcat_values, pseidon_bin, unique,
};
use serde_json::Value;

/// A work dir with a copy of the Kafka plugin and a conf naming it, the test broker
/// and a status db of its own.
struct Setup(Workdir);

impl std::ops::Deref for Setup {
    type Target = Workdir;
    fn deref(&self) -> &Workdir {
        &self.0
    }
}

impl Setup {
    /// `extra` is appended to the conf (after `[pseidon-kafka]`'s status-db: use dotted
    /// keys or tables of their own).
    fn new(extra: &str) -> Setup {
        Setup(Workdir::kafka("pseidon-cli", "", extra))
    }

    fn pseidon(&self, args: &[&str]) -> Output {
        self.pseidon_stdin(args, None)
    }

    fn pseidon_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut all = vec!["--conf", self.conf.to_str().unwrap()];
        all.extend_from_slice(args);
        pseidon(&all, stdin)
    }
}

/// Runs `pseidon args…` (logs at the default level) with `stdin` fed in.
fn pseidon(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(pseidon_bin())
        .args(args)
        .env_remove("PSEIDON_CONF")
        .env_remove("PSEIDON_LOG")
        .env_remove("RUST_LOG")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.unwrap_or_default().to_vec();
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

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The stderr lines that are not log lines (those start with a timestamp).
fn message_lines(out: &Output) -> Vec<String> {
    text(&out.stderr)
        .lines()
        .filter(|l| !(l.len() > 4 && l.starts_with("20") && l.as_bytes()[4] == b'-'))
        .map(str::to_string)
        .collect()
}

/// Asserts a failed run whose only message is one error line containing every needle.
fn assert_one_line_error(out: &Output, needles: &[&str]) -> String {
    assert_ne!(out.status.code(), Some(0), "expected a failure: {out:?}");
    assert!(out.status.code().is_some(), "killed by a signal: {out:?}");
    let lines = message_lines(out);
    assert_eq!(lines.len(), 1, "expected one line on stderr: {lines:#?}");
    let line = lines[0].clone();
    assert!(line.starts_with("pseidon: error: "), "{line}");
    for n in needles {
        assert!(line.contains(n), "`{n}` not in: {line}");
    }
    line
}

fn ok(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The rows of `pseidon groups`: (id, status).
fn group_rows(out: &Output) -> Vec<(String, String)> {
    ok(out);
    text(&out.stdout)
        .lines()
        .skip(1)
        .filter(|l| !l.ends_with("group(s)"))
        .map(|l| {
            let mut parts = l.split_whitespace();
            (
                parts.next().unwrap_or_default().to_string(),
                parts.next().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Bad input.
// ---------------------------------------------------------------------------------

#[test]
fn an_unknown_subcommand_or_flag_is_one_line_naming_it() {
    let out = pseidon(&["frobnicate"], None);
    assert_eq!(out.status.code(), Some(2));
    assert_one_line_error(&out, &["frobnicate"]);
    let out = pseidon(&["send", "--topic", "t", "--bogus-flag"], None);
    assert_eq!(out.status.code(), Some(2));
    assert_one_line_error(&out, &["--bogus-flag"]);
    let out = pseidon(&["consume", "--topic", "t", "--format", "xml"], None);
    assert_one_line_error(&out, &["xml", "--format"]);
    let out = pseidon(&["send"], None);
    assert_one_line_error(&out, &["--topic"]);
    let out = pseidon(&["groups", "--status", "finished"], None);
    assert_one_line_error(&out, &["finished"]);
}

#[test]
fn a_missing_conf_file_is_one_line_naming_the_path() {
    let missing = std::env::temp_dir()
        .join(unique("no-such-conf"))
        .join("pseidon.toml");
    let path = missing.to_str().unwrap();
    for args in [
        vec!["--conf", path, "send", "--topic", "t"],
        vec!["--conf", path, "consume", "--topic", "t"],
        vec!["--conf", path, "groups"],
        vec!["--conf", path, "config"],
    ] {
        let out = pseidon(&args, Some(b"x\n"));
        assert_one_line_error(&out, &[path, "--conf"]);
    }
}

#[test]
fn a_conf_without_plugin_dirs_is_one_line_naming_the_key_and_the_file() {
    let s = Setup::new("");
    fs::write(&s.conf, "[kafka]\nbootstrap.servers = \"127.0.0.1:1\"\n").unwrap();
    let conf = s.conf.to_str().unwrap().to_string();
    for args in [
        vec!["send", "--topic", "t"],
        vec!["consume", "--topic", "t", "--group", "g"],
        vec!["groups"],
    ] {
        let start = Instant::now();
        let out = s.pseidon_stdin(&args, Some(b"x\n"));
        assert_one_line_error(&out, &["plugin-dirs", &conf]);
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "it waited for nothing"
        );
    }
}

#[test]
fn a_name_that_is_not_registered_is_waited_for_then_one_line_naming_it() {
    let s = Setup::new("");
    let start = Instant::now();
    let out = s.pseidon_stdin(
        &[
            "send",
            "--topic",
            "t",
            "--sink",
            "no.such.sink",
            "--wait-ms",
            "700",
        ],
        Some(b"x\n"),
    );
    let waited = start.elapsed();
    assert_one_line_error(&out, &["`no.such.sink`", "within"]);
    assert!(waited >= Duration::from_millis(700), "{waited:?}");
    let out = s.pseidon(&[
        "consume",
        "--topic",
        "t",
        "--group",
        "g",
        "--source",
        "no.such.source",
        "--wait-ms",
        "300",
    ]);
    assert_one_line_error(&out, &["`no.such.source`"]);
    // A name registered as another kind.
    let out = s.pseidon_stdin(
        &[
            "send",
            "--topic",
            "t",
            "--sink",
            "pseidon.kafka.util.datasource",
            "--wait-ms",
            "300",
        ],
        Some(b"x\n"),
    );
    assert_one_line_error(&out, &["`pseidon.kafka.util.datasource`", "source", "sink"]);
}

#[test]
fn a_topic_name_kafka_rejects_is_one_line_naming_it() {
    let s = Setup::new("");
    for topic in ["bad topic!", "", "..", &"x".repeat(250)] {
        let out = s.pseidon_stdin(&["send", "--topic", topic], Some(b"x\n"));
        assert_one_line_error(&out, &[&format!("topic `{topic}`")]);
        let out = s.pseidon(&["consume", "--topic", topic, "--group", "g"]);
        assert_one_line_error(&out, &[&format!("topic `{topic}`")]);
    }
}

#[test]
fn a_non_utf8_value_stops_format_value_naming_topic_partition_offset_and_json_keeps_it() {
    let s = Setup::new("");
    let topic = unique("cli-binary");
    create_topic(&topic, 1);
    let input = b"first\n\xff\xfe binary\nlast\n";
    ok(&s.pseidon_stdin(&["send", "--topic", &topic], Some(input)));
    // The bytes reached Kafka as they were (kcat is the independent check).
    assert_eq!(
        kcat_values(&topic),
        vec![
            b"first".to_vec(),
            b"\xff\xfe binary".to_vec(),
            b"last".to_vec()
        ]
    );

    let group = unique("cli-binary-g");
    let out = s.pseidon(&[
        "consume",
        "--topic",
        &topic,
        "--group",
        &group,
        "--max",
        "3",
        "--idle-exit-ms",
        "20000",
        "--mark-done",
    ]);
    assert_one_line_error(
        &out,
        &[
            &format!("topic `{topic}`"),
            "partition 0",
            "offset 1",
            "UTF-8",
        ],
    );
    // What came before the bad message was printed; the group was not marked done.
    assert_eq!(text(&out.stdout), "first\n");
    let rows = group_rows(&s.pseidon(&["groups", "--topic", &topic]));
    assert!(rows.iter().all(|(_, st)| st != "done"), "{rows:?}");

    let out = s.pseidon(&[
        "consume",
        "--topic",
        &topic,
        "--group",
        &unique("cli-binary-json"),
        "--max",
        "3",
        "--idle-exit-ms",
        "20000",
        "--format",
        "json",
    ]);
    ok(&out);
    let objects: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objects.len(), 3);
    assert_eq!(objects[0]["value"], "first");
    assert!(objects[1].get("value").is_none(), "{}", objects[1]);
    // base64 of ff fe 20 62 69 6e 61 72 79
    assert_eq!(objects[1]["value_base64"], "//4gYmluYXJ5");
    assert_eq!(objects[1]["offset"], 1);
    assert_eq!(objects[2]["value"], "last");
}

// ---------------------------------------------------------------------------------
// Happy paths.
// ---------------------------------------------------------------------------------

#[test]
fn send_then_consume_json_then_groups_then_mark_done_by_hand() {
    let s = Setup::new("group-max-messages = 10\n");
    let topic = unique("cli-happy");
    create_topic(&topic, 1);
    let lines: Vec<String> = (0..35).map(|i| format!("msg-{i}")).collect();
    let input = format!("{}\n", lines.join("\n"));
    let out = s.pseidon_stdin(
        &["send", "--topic", &topic, "--key", "k1"],
        Some(input.as_bytes()),
    );
    ok(&out);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("sent 35, failed 0"), "{stderr}");
    // kcat: every value once, each with the key.
    let got = text(&kcat_formatted(&bootstrap(), &topic, "%k=%s\n"));
    let want: Vec<String> = lines.iter().map(|l| format!("k1={l}")).collect();
    assert_eq!(got.lines().collect::<Vec<_>>(), want);

    let group = unique("cli-happy-g");
    let out = s.pseidon(&[
        "consume",
        "--topic",
        &topic,
        "--group",
        &group,
        "--format",
        "json",
        "--max",
        "35",
        "--idle-exit-ms",
        "20000",
    ]);
    ok(&out);
    let objects: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objects.len(), 35);
    for (i, o) in objects.iter().enumerate() {
        assert_eq!(o["topic"], topic.as_str());
        assert_eq!(o["partition"], 0);
        assert_eq!(o["offset"], i as u64);
        assert_eq!(o["key"], "k1");
        assert_eq!(o["value"], lines[i].as_str());
        assert!(o["timestamp_ms"].as_i64().is_some_and(|t| t > 0), "{o}");
        assert_eq!(o["headers"], Value::Array(vec![]));
        let lo = i / 10 * 10;
        let hi = (lo + 9).min(34);
        assert_eq!(o["group_id"], format!("{topic}:0:{lo}:{hi}"), "{o}");
    }

    // Printed without --mark-done: handed out (run), not done.
    let rows = group_rows(&s.pseidon(&["groups", "--topic", &topic]));
    let ids: Vec<String> = rows.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(
        ids,
        ["0:9", "10:19", "20:29", "30:34"]
            .iter()
            .map(|r| format!("{topic}:0:{r}"))
            .collect::<Vec<_>>()
    );
    assert!(rows.iter().all(|(_, st)| st == "run"), "{rows:?}");
    assert!(group_rows(&s.pseidon(&["groups", "--topic", &topic, "--status", "done"])).is_empty());

    let mut args = vec!["groups", "mark-done"];
    args.extend(ids.iter().take(3).map(String::as_str));
    let out = s.pseidon(&args);
    ok(&out);
    assert_eq!(text(&out.stdout).lines().count(), 3);
    let done = group_rows(&s.pseidon(&["groups", "--topic", &topic, "--status", "done"]));
    assert_eq!(done.len(), 3, "{done:?}");
    let run = group_rows(&s.pseidon(&["groups", "--topic", &topic, "--status", "run"]));
    assert_eq!(run, vec![(ids[3].clone(), "run".to_string())]);

    // An unknown id is one line naming it.
    let bad = format!("{topic}:0:100:200");
    let out = s.pseidon(&["groups", "mark-done", &bad]);
    assert_one_line_error(&out, &[&bad]);
}

#[test]
fn consume_mark_done_with_max_forms_groups_no_larger_than_what_is_left() {
    let s = Setup::new("group-max-messages = 10\n");
    let topic = unique("cli-max");
    create_topic(&topic, 1);
    let input: String = (0..30).map(|i| format!("v-{i}\n")).collect();
    ok(&s.pseidon_stdin(&["send", "--topic", &topic], Some(input.as_bytes())));

    let group = unique("cli-max-g");
    let consume = |max: &str| {
        s.pseidon(&[
            "consume",
            "--topic",
            &topic,
            "--group",
            &group,
            "--mark-done",
            "--max",
            max,
            "--idle-exit-ms",
            "8000",
        ])
    };
    let out = consume("15");
    ok(&out);
    let first: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(first, (0..15).map(|i| format!("v-{i}")).collect::<Vec<_>>());
    let rows = group_rows(&s.pseidon(&["groups", "--topic", &topic]));
    let status = |id: &str| {
        rows.iter()
            .find(|(i, _)| i == &format!("{topic}:0:{id}"))
            .map(|(_, s)| s.clone())
    };
    // --max 15: the second group holds only the 5 still to print, so both are done.
    assert_eq!(status("0:9").as_deref(), Some("done"), "{rows:?}");
    assert_eq!(status("10:14").as_deref(), Some("done"), "{rows:?}");
    assert_eq!(rows.len(), 2, "{rows:?}");

    // The next reader of the group goes on after them.
    let out = consume("100");
    ok(&out);
    let second: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(
        second,
        (15..30).map(|i| format!("v-{i}")).collect::<Vec<_>>()
    );
    let rows = group_rows(&s.pseidon(&["groups", "--topic", &topic]));
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(rows.iter().all(|(_, st)| st == "done"), "{rows:?}");

    // All done and committed: a third reader gets nothing.
    let out = consume("100");
    ok(&out);
    assert_eq!(text(&out.stdout), "");
}

#[test]
fn send_reads_a_file_and_sends_every_line_as_bytes() {
    let s = Setup::new("");
    let topic = unique("cli-file");
    let file = s.root.join("lines.txt");
    let mut data = Vec::new();
    for i in 0..5000 {
        data.extend_from_slice(format!("line {i} \t with spaces\r\n").as_bytes());
    }
    data.extend_from_slice(b"no newline at the end");
    fs::write(&file, &data).unwrap();
    let out = s.pseidon(&["send", "--topic", &topic, "--file", file.to_str().unwrap()]);
    ok(&out);
    assert!(
        text(&out.stderr).contains("sent 5001, failed 0"),
        "{}",
        text(&out.stderr)
    );
    let got: BTreeSet<Vec<u8>> = kcat_values(&topic).into_iter().collect();
    let want: BTreeSet<Vec<u8>> = data.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
    assert_eq!(got.len(), 5001);
    assert_eq!(got, want);

    let missing = s.root.join("missing.txt");
    let out = s.pseidon(&[
        "send",
        "--topic",
        &topic,
        "--file",
        missing.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, &[missing.to_str().unwrap()]);
}

#[test]
fn config_prints_every_key_flattened_with_secrets_redacted() {
    let s =
        Setup::new("\n[kafka-extra]\nx = 1\n\n[more]\n\"kafka.sasl.password\" = \"hunter2-pw\"\n");
    let mut conf = fs::read_to_string(&s.conf).unwrap();
    conf = conf.replace(
        "[kafka]\n",
        "[kafka]\nsasl.username = \"alice\"\nsasl.password = \"hunter2-pw\"\nssl.key.pem = \"-----BEGIN PRIVATE KEY-----\"\n\
         sasl.oauthbearer.config = \"principal=x secret=hunter2-oauth\"\n\
         sasl.oauthbearer.client.secret = \"hunter2-client\"\nssl.key.password = \"hunter2-key\"\n",
    );
    fs::write(&s.conf, conf).unwrap();
    let out = s.pseidon(&["config"]);
    ok(&out);
    let stdout = text(&out.stdout);
    assert!(
        !stdout.contains("hunter2") && !stdout.contains("PRIVATE KEY"),
        "{stdout}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].contains(s.conf.to_str().unwrap()), "{stdout}");
    for want in [
        format!("kafka.bootstrap.servers = {}", bootstrap()),
        "kafka.sasl.username = alice".to_string(),
        "kafka.sasl.password = <redacted>".to_string(),
        "kafka.ssl.key.pem = <redacted>".to_string(),
        "kafka.sasl.oauthbearer.config = <redacted>".to_string(),
        "kafka.sasl.oauthbearer.client.secret = <redacted>".to_string(),
        "kafka.ssl.key.password = <redacted>".to_string(),
        "kafka-extra.x = 1".to_string(),
        "more.kafka.sasl.password = <redacted>".to_string(),
        format!(
            "pseidon-kafka.status-db = {}",
            s.root.join("status.db").display()
        ),
    ] {
        assert!(lines.contains(&want.as_str()), "`{want}` not in:\n{stdout}");
    }
    assert!(
        lines.iter().any(|l| l.starts_with("plugin-dirs = [")),
        "{stdout}"
    );
}

#[test]
fn consume_ends_on_sigint_closing_the_reader_and_exits_130() {
    use std::io::{BufRead as _, BufReader};
    let s = Setup::new("");
    let topic = unique("cli-sigint");
    let input: String = (0..100).map(|i| format!("s-{i}\n")).collect();
    ok(&s.pseidon_stdin(&["send", "--topic", &topic], Some(input.as_bytes())));
    let group = unique("cli-sigint-g");
    let mut child = Command::new(pseidon_bin())
        .args([
            "--conf",
            s.conf.to_str().unwrap(),
            "consume",
            "--topic",
            &topic,
        ])
        .args(["--group", &group, "--mark-done"])
        .env_remove("PSEIDON_LOG")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while lines.len() < 100 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(_) => {
                let _ = child.kill();
                panic!("only {} lines: {lines:?}", lines.len());
            }
        }
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("100 message(s) in 1 group(s) printed, 1 group(s) marked done"),
        "{stderr}"
    );
    let rows = group_rows(&s.pseidon(&["groups", "--topic", &topic]));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].1, "done");
}

#[test]
fn send_reports_deliveries_the_broker_refused_and_exits_non_zero() {
    let s = Setup::new("");
    let topic = unique("cli-refused");
    pseidon_tests::kafka_tool(&[
        "topics",
        "--bootstrap-server",
        &bootstrap(),
        "--create",
        "--topic",
        &topic,
        "--partitions",
        "1",
        "--replication-factor",
        "1",
        "--config",
        "max.message.bytes=200",
    ]);
    // One record per produce request, so the broker refuses line 2 alone.
    let conf = fs::read_to_string(&s.conf).unwrap().replace(
        "[kafka]\n",
        "[kafka]\nbatch.num.messages = 1\nlinger.ms = 0\nmax.in.flight.requests.per.connection = 1\n",
    );
    fs::write(&s.conf, conf).unwrap();
    // Line 2 is larger than the topic takes; lines 1 and 3 fit.
    let input = format!("small-1\n{}\nsmall-3\n", "x".repeat(1000));
    let out = s.pseidon_stdin(&["send", "--topic", &topic], Some(input.as_bytes()));
    assert_eq!(out.status.code(), Some(1));
    let lines = message_lines(&out);
    let all = lines.join("\n");
    assert!(all.contains("sent 2, failed 1"), "{all}");
    assert!(all.contains("line 2 of stdin"), "{all}");
    let error: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("pseidon: error: "))
        .collect();
    assert_eq!(error.len(), 1, "{all}");
    assert!(
        error[0].contains(&format!("topic `{topic}`")) && error[0].contains("1 of 3"),
        "{all}"
    );
    assert_eq!(
        kcat_values(&topic),
        vec![b"small-1".to_vec(), b"small-3".to_vec()]
    );
}

#[test]
fn consume_json_shows_headers_and_keys_written_by_kcat() {
    let s = Setup::new("");
    let topic = unique("cli-headers");
    create_topic(&topic, 1);
    let mut kcat = Command::new("kcat")
        .args(["-b", &bootstrap(), "-P", "-t", &topic, "-K", ":"])
        .args(["-H", "trace=abc", "-H", "n=42"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("run kcat");
    kcat.stdin
        .take()
        .unwrap()
        .write_all(b"key-1:value-1\n")
        .unwrap();
    assert!(kcat.wait().unwrap().success());
    let out = s.pseidon(&[
        "consume",
        "--topic",
        &topic,
        "--group",
        &unique("cli-headers-g"),
        "--format",
        "json",
        "--max",
        "1",
        "--idle-exit-ms",
        "20000",
    ]);
    ok(&out);
    let o: Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(o["key"], "key-1");
    assert_eq!(o["value"], "value-1");
    assert_eq!(
        o["headers"],
        serde_json::json!([{"key": "trace", "value": "abc"}, {"key": "n", "value": "42"}])
    );
    assert_eq!(o["group_id"], format!("{topic}:0:0:0"));
}
