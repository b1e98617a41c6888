//! The flags a kcat user reaches for (issue 14, send and consume), each checked
//! against kcat or Kafka's own tools as the independent side: `send -K/-H/-p/-Z/-D
//! /--input json` and `consume -o/-p/-f/-Z/--null-value`, the lossless JSON copy of a
//! topic, and bad input (one error line naming the flag, exit 2).
//! Needs `cargo build --workspace` first (scripts/test does it).

use std::{
    fs,
    io::Write as _,
    ops::Deref,
    process::{Command, Output, Stdio},
};

use pseidon_tests::{
    Workdir, bootstrap, create_topic, kafka_tool, kcat_formatted, kcat_values, unique,
};

/// The shared [`Workdir`] (Kafka plugin, test broker, status db) with a consumer
/// group of its own.
struct Setup(Workdir);

impl Deref for Setup {
    type Target = Workdir;
    fn deref(&self) -> &Workdir {
        &self.0
    }
}

impl Setup {
    fn new() -> Setup {
        let group = format!("group.id = {:?}", unique("cli-kcat-group"));
        Setup(Workdir::kafka("pseidon-cli-kcat", &group, ""))
    }

    fn pseidon(&self, args: &[&str]) -> Output {
        self.run(args, b"")
    }

    fn pseidon_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        self.run(args, stdin)
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
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

/// The stderr lines that are not log lines (those start with a timestamp).
fn message_lines(out: &Output) -> Vec<String> {
    text(&out.stderr)
        .lines()
        .filter(|l| !(l.len() > 4 && l.starts_with("20") && l.as_bytes()[4] == b'-'))
        .map(str::to_string)
        .collect()
}

/// Asserts exit code 2 with one error line on stderr containing every needle.
fn assert_usage_error(out: &Output, needles: &[&str]) {
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let lines = message_lines(out);
    assert_eq!(lines.len(), 1, "expected one line on stderr: {lines:#?}");
    assert!(lines[0].starts_with("pseidon: error: "), "{}", lines[0]);
    for n in needles {
        assert!(lines[0].contains(n), "`{n}` not in: {}", lines[0]);
    }
}

/// kcat -P with `args` (e.g. `-K:`, `-p 0`, `-H a=b`), `input` on stdin.
fn kcat_produce(topic: &str, args: &[&str], input: &[u8]) {
    let mut child = Command::new("kcat")
        .args(["-b", &bootstrap(), "-P", "-t", topic])
        .args(args)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kcat (apt-get install kcat)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input)
        .expect("write to kcat");
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kcat -P failed: {}",
        text(&out.stderr)
    );
}

/// kcat -C -e with `args` (e.g. `-p 1 -o -2 -f FMT`).
fn kcat_consume(topic: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new("kcat")
        .args(["-b", &bootstrap(), "-C", "-t", topic, "-e", "-q"])
        .args(args)
        .output()
        .expect("run kcat");
    assert!(
        out.status.success(),
        "kcat -C failed: {}",
        text(&out.stderr)
    );
    out.stdout
}

fn sorted_lines(b: &[u8]) -> Vec<String> {
    let mut l: Vec<String> = text(b).lines().map(str::to_string).collect();
    l.sort();
    l
}

#[test]
fn send_key_delimiter_splits_at_the_first_one_as_kcat_reads_it() {
    let s = Setup::new();
    let topic = unique("kcat-send-k");
    create_topic(&topic, 1);
    let failed = s.root.join("failed.txt");
    let out = s.pseidon_stdin(
        &[
            "send",
            "-t",
            &topic,
            "-K:",
            "--failed-out",
            failed.to_str().unwrap(),
        ],
        b"k1:v1\nk2:v:2\nno delimiter here\n:v4\n",
    );
    // The line without the delimiter is a failed line (exit 1, as every failed line
    // of send), named with -K; the others are sent.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("line 3 of stdin: the line has no key delimiter `:` (-K)"),
        "{err}"
    );
    assert!(err.contains("failed lines of stdin: 3"), "{err}");
    assert_eq!(fs::read(&failed).unwrap(), b"no delimiter here\n");
    assert_eq!(
        text(&kcat_formatted(&bootstrap(), &topic, "%k=%s %K\n")),
        "k1=v1 2\nk2=v:2 2\n=v4 0\n"
    );
}

#[test]
fn consume_format_prints_what_kcat_wrote_with_a_key_delimiter() {
    let s = Setup::new();
    let topic = unique("kcat-consume-f");
    create_topic(&topic, 1);
    kcat_produce(&topic, &["-K:"], b"a:1\nb:two\nc:\n");
    let out = s.pseidon(&[
        "consume",
        "-t",
        &topic,
        "-o",
        "beginning",
        "-e",
        "-f",
        "%k=%s\\n",
    ]);
    ok(&out);
    assert_eq!(text(&out.stdout), "a=1\nb=two\nc=\n");
    let err = text(&out.stderr);
    assert!(
        err.contains("3 message(s) in") && err.contains("msg/s") && err.contains(" s ("),
        "summary with elapsed time and rate: {err}"
    );
}

#[test]
fn consume_format_tokens_match_kcat_byte_for_byte() {
    let s = Setup::new();
    let topic = unique("kcat-tokens");
    create_topic(&topic, 2);
    kcat_produce(
        &topic,
        &["-K:", "-p", "0", "-H", "h1=x", "-H", "h2="],
        b"k1:value one\nk2:\xff\xfe\n",
    );
    kcat_produce(&topic, &["-p", "1"], b"no key\n");
    let fmt = "%t|%p|%o|%k|%K|%s|%S|%R|%T|%h|100%%\\t\\n";
    let ours = s.pseidon(&["consume", "-t", &topic, "-o", "beginning", "-e", "-f", fmt]);
    ok(&ours);
    let theirs = kcat_consume(&topic, &["-f", fmt]);
    let split = |b: &[u8]| {
        let mut v: Vec<Vec<u8>> = b
            .split_inclusive(|c| *c == b'\n')
            .map(<[u8]>::to_vec)
            .collect();
        v.sort();
        v
    };
    assert_eq!(split(&ours.stdout), split(&theirs));
    assert_eq!(split(&theirs).len(), 3);
}

#[test]
fn send_headers_and_partition_are_on_every_message() {
    let s = Setup::new();
    let topic = unique("kcat-send-hp");
    create_topic(&topic, 3);
    let out = s.pseidon_stdin(
        &[
            "send", "-t", &topic, "-H", "a=1", "-H", "b=x=y", "-H", "e=", "-p", "2",
        ],
        b"v1\nv2\nv3\n",
    );
    ok(&out);
    assert_eq!(
        text(&kcat_formatted(&bootstrap(), &topic, "%p|%h|%s\n")),
        "2|a=1,b=x=y,e=|v1\n2|a=1,b=x=y,e=|v2\n2|a=1,b=x=y,e=|v3\n"
    );
}

#[test]
fn send_null_empty_writes_tombstones_kcat_sees_as_null() {
    let s = Setup::new();
    let topic = unique("kcat-send-z");
    create_topic(&topic, 1);
    ok(&s.pseidon_stdin(&["send", "-t", &topic, "-K:", "-Z"], b"k1:\nk2:v\n:v3\n"));
    // Without -Z an empty value stays an empty value.
    ok(&s.pseidon_stdin(&["send", "-t", &topic, "-K:"], b"k4:\n"));
    assert_eq!(
        text(&kcat_formatted(&bootstrap(), &topic, "%k|%K|%S\n")),
        "k1|2|-1\nk2|2|1\n|-1|2\nk4|2|0\n"
    );
    // And `consume` prints the nulls as kcat -Z does, or as --null-value says.
    let out = s.pseidon(&[
        "consume",
        "-t",
        &topic,
        "-o",
        "beginning",
        "-e",
        "-Z",
        "-f",
        "%k|%s\\n",
    ]);
    ok(&out);
    assert_eq!(text(&out.stdout), "k1|NULL\nk2|v\nNULL|v3\nk4|\n");
    let out = s.pseidon(&[
        "consume",
        "-t",
        &topic,
        "-o",
        "beginning",
        "-e",
        "--null-value",
        "<nil>",
    ]);
    ok(&out);
    assert_eq!(text(&out.stdout), "<nil>\nv\nv3\n\n");
    let theirs = kcat_consume(&topic, &["-Z", "-f", "%s\n"]);
    assert_eq!(
        text(&theirs),
        "NULL\nv\nv3\nNULL\n",
        "kcat -Z also prints an empty value as NULL"
    );
}

#[test]
fn send_message_delimiter_keeps_newlines_in_values() {
    let s = Setup::new();
    let topic = unique("kcat-send-d");
    create_topic(&topic, 1);
    let failed = s.root.join("failed.txt");
    ok(&s.pseidon_stdin(
        &[
            "send",
            "-t",
            &topic,
            "-D",
            ";;",
            "--failed-out",
            failed.to_str().unwrap(),
        ],
        b"line 1\nline 2;;second;;;;last",
    ));
    assert_eq!(
        kcat_values(&topic),
        [
            b"line 1\nline 2".to_vec(),
            b"second".to_vec(),
            b"".to_vec(),
            b"last".to_vec()
        ]
    );
}

#[test]
fn json_round_trip_copies_a_topic_losslessly() {
    let s = Setup::new();
    let from = unique("kcat-json-from");
    let to = unique("kcat-json-to");
    create_topic(&from, 2);
    create_topic(&to, 2);
    // Binary keys and values, a null value (-Z), headers, two partitions.
    kcat_produce(
        &from,
        &[
            "-K:",
            "-Z",
            "-p",
            "0",
            "-H",
            "trace=\x01\x02",
            "-H",
            "empty=",
        ],
        b"\xff\x00key:\xfe\xfdvalue\ntext:plain\ntomb:\n",
    );
    kcat_produce(&from, &["-K:", "-p", "1"], b"k:\x80\x81\nk2:v2\n");
    let dump = s.pseidon(&[
        "consume",
        "-t",
        &from,
        "-o",
        "beginning",
        "-e",
        "--format",
        "json",
    ]);
    ok(&dump);
    assert_eq!(text(&dump.stdout).lines().count(), 5);
    ok(&s.pseidon_stdin(&["send", "-t", &to, "--input", "json"], &dump.stdout));
    // %R: the value's length as 4 bytes, so any byte can be in a value; %T: the
    // copy keeps the original's timestamp (kcat stamped them a while ago).
    std::thread::sleep(std::time::Duration::from_millis(20));
    let fmt = "%p %T %K %k|%R%s|%h\n";
    let a = kcat_consume(&from, &["-f", fmt]);
    let b = kcat_consume(&to, &["-f", fmt]);
    let split = |b: &[u8]| {
        let mut v: Vec<Vec<u8>> = b
            .split_inclusive(|c| *c == b'\n')
            .map(<[u8]>::to_vec)
            .collect();
        v.sort();
        v
    };
    assert_eq!(split(&a), split(&b));
    // The null value is still null (-1 as %R).
    assert!(
        a.windows(9).any(|w| w == b"tomb|\xff\xff\xff\xff"),
        "{}",
        text(&a)
    );
    // Per partition, in order.
    for p in ["0", "1"] {
        assert_eq!(
            kcat_consume(&from, &["-p", p, "-f", fmt]),
            kcat_consume(&to, &["-p", p, "-f", fmt])
        );
    }
}

#[test]
fn bad_json_lines_fail_alone() {
    let s = Setup::new();
    let topic = unique("kcat-json-bad");
    create_topic(&topic, 1);
    let out = s.pseidon_stdin(
        &["send", "-t", &topic, "--input", "json"],
        b"{\"value\":\"ok\"}\nnot json\n{\"key\":\"k\"}\n{\"value_base64\":\"!!\"}\n{\"value\":\"t\",\"timestamp_ms\":-5}\n{\"value\":\"at\",\"timestamp_ms\":1700000000123}\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("line 2 of stdin: not JSON"), "{err}");
    assert!(
        err.contains("line 3 of stdin: the object has no `value`"),
        "{err}"
    );
    assert!(
        err.contains("line 4 of stdin: `value_base64` is not standard base64"),
        "{err}"
    );
    assert!(
        err.contains("line 5 of stdin: `timestamp_ms` is -5, not a time in ms since the epoch"),
        "{err}"
    );
    assert_eq!(kcat_values(&topic), [b"ok".to_vec(), b"at".to_vec()]);
    // A timestamp given is the message's; one not given is the producer's now.
    let stamps = kcat_consume(&topic, &["-f", "%T %s\n"]);
    let stamps = text(&stamps);
    let mut lines = stamps.lines();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let first: i64 = lines
        .next()
        .and_then(|l| l.strip_suffix(" ok"))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{stamps}"));
    assert!((now_ms - first).abs() < 120_000, "{stamps}");
    assert_eq!(lines.next(), Some("1700000000123 at"), "{stamps}");
}

#[test]
fn partition_and_relative_offset_read_what_kcat_reads() {
    let s = Setup::new();
    let topic = unique("kcat-p-o");
    create_topic(&topic, 3);
    for p in ["0", "1", "2"] {
        let lines: String = (0..10).map(|i| format!("p{p}-{i}\n")).collect();
        kcat_produce(&topic, &["-p", p], lines.as_bytes());
    }
    let fmt = "%p %o %s\\n";
    for (ours, theirs) in [
        (vec!["-p", "1", "-o", "-3"], vec!["-p", "1", "-o", "-3"]),
        (vec!["-p", "2", "-o", "7"], vec!["-p", "2", "-o", "7"]),
        (
            vec!["-p", "0", "-o", "beginning"],
            vec!["-p", "0", "-o", "beginning"],
        ),
    ] {
        let mut args = vec!["consume", "-t", &topic, "-e", "-f", fmt];
        args.extend(&ours);
        let out = s.pseidon(&args);
        ok(&out);
        let mut kargs = theirs.clone();
        kargs.extend(["-f", "%p %o %s\n"]);
        let want = kcat_consume(&topic, &kargs);
        assert!(!want.is_empty());
        assert_eq!(text(&out.stdout), text(&want), "{ours:?}");
    }
    // Two partitions as a list, from 2 before the end of each.
    let out = s.pseidon(&[
        "consume", "-t", &topic, "-p", "0,2", "-o", "-2", "-e", "-f", fmt,
    ]);
    ok(&out);
    assert_eq!(
        sorted_lines(&out.stdout),
        ["0 8 p0-8", "0 9 p0-9", "2 8 p2-8", "2 9 p2-9"]
    );
    // `end`: nothing is there yet, and -e ends at once.
    let out = s.pseidon(&["consume", "-t", &topic, "-o", "end", "-e"]);
    ok(&out);
    assert!(out.stdout.is_empty());
    // A plain read tracks nothing: the status database has no group.
    let groups = s.pseidon(&["groups"]);
    assert!(
        !text(&groups.stdout).contains(&topic),
        "{}",
        text(&groups.stdout)
    );
}

/// `topic:partition:offset` lines of Kafka's get-offsets tool at `time`.
fn get_offsets(topic: &str, time: &str) -> Vec<(i32, i64)> {
    kafka_tool(&[
        "get-offsets",
        "--bootstrap-server",
        &bootstrap(),
        "--topic",
        topic,
        "--time",
        time,
    ])
    .lines()
    .filter_map(|l| {
        let mut it = l.rsplitn(3, ':');
        let offset = it.next()?.parse().ok()?;
        let partition = it.next()?.parse().ok()?;
        Some((partition, offset))
    })
    .collect()
}

#[test]
fn timestamps_start_and_stop_where_kafkas_get_offsets_says() {
    let s = Setup::new();
    let topic = unique("kcat-ts");
    create_topic(&topic, 1);
    let first: String = (0..20).map(|i| format!("a{i}\n")).collect();
    kcat_produce(&topic, &[], first.as_bytes());
    let second: String = (0..20).map(|i| format!("b{i}\n")).collect();
    kcat_produce(&topic, &[], second.as_bytes());
    // The timestamp of the second batch's first message, as kcat reads it.
    let ts = text(&kcat_consume(&topic, &["-o", "20", "-c", "1", "-f", "%T"]));
    let ts: i64 = ts.trim().parse().unwrap();
    let [(0, start)] = get_offsets(&topic, &ts.to_string())[..] else {
        panic!("get-offsets");
    };
    assert!(start <= 20, "{start}");
    let all = text(&kcat_consume(&topic, &["-f", "%o %s\n"]));
    let from_ts: String = all
        .lines()
        .filter(|l| l.split(' ').next().unwrap().parse::<i64>().unwrap() >= start)
        .map(|l| format!("{l}\n"))
        .collect();
    let before_ts: String = all
        .lines()
        .filter(|l| l.split(' ').next().unwrap().parse::<i64>().unwrap() < start)
        .map(|l| format!("{l}\n"))
        .collect();
    let s_at = format!("s@{ts}");
    let out = s.pseidon(&["consume", "-t", &topic, "-o", &s_at, "-e", "-f", "%o %s\\n"]);
    ok(&out);
    assert_eq!(text(&out.stdout), from_ts);
    // e@TS: stops before it, and exits 0 by itself (no -e needed).
    let e_at = format!("e@{ts}");
    let out = s.pseidon(&["consume", "-t", &topic, "-o", &e_at, "-f", "%o %s\\n"]);
    ok(&out);
    assert_eq!(text(&out.stdout), before_ts);
    // Both: an empty range.
    let out = s.pseidon(&["consume", "-t", &topic, "-o", &s_at, "-o", &e_at]);
    ok(&out);
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    // After every message: the end, nothing printed.
    let later = format!("s@{}", ts + 3_600_000);
    let out = s.pseidon(&["consume", "-t", &topic, "-o", &later, "-e"]);
    ok(&out);
    assert!(out.stdout.is_empty());
}

#[test]
fn stored_reads_from_the_offsets_the_group_committed() {
    let s = Setup::new();
    let topic = unique("kcat-stored");
    let group = unique("kcat-stored-group");
    create_topic(&topic, 1);
    kcat_produce(&topic, &[], b"1\n2\n3\n");
    ok(&s.pseidon(&["consume", "-t", &topic, "-g", &group, "--mark-done", "-e"]));
    kcat_produce(&topic, &[], b"4\n5\n");
    let described = kafka_tool(&[
        "consumer-groups",
        "--bootstrap-server",
        &bootstrap(),
        "--describe",
        "--group",
        &group,
    ]);
    assert!(
        described
            .lines()
            .any(|l| l.contains(&topic) && l.split_whitespace().any(|w| w == "3")),
        "committed offset 3: {described}"
    );
    let out = s.pseidon(&["consume", "-t", &topic, "-g", &group, "-o", "stored", "-e"]);
    ok(&out);
    assert_eq!(text(&out.stdout), "4\n5\n");
    // Nothing committed by the plain read: the group still stands at 3.
    let again = s.pseidon(&["consume", "-t", &topic, "-g", &group, "-o", "stored", "-e"]);
    ok(&again);
    assert_eq!(text(&again.stdout), "4\n5\n");
}

#[test]
fn bad_flags_are_one_line_errors_naming_the_flag() {
    let s = Setup::new();
    let topic = unique("kcat-bad");
    create_topic(&topic, 2);
    assert_usage_error(
        &s.pseidon(&["consume", "-t", &topic, "-o", "soon"]),
        &["--offset", "soon"],
    );
    assert_usage_error(
        &s.pseidon(&["consume", "-t", &topic, "-o", "s@x"]),
        &["--offset", "s@x"],
    );
    assert_usage_error(
        &s.pseidon(&["consume", "-t", &topic, "-p", "5", "-e"]),
        &["-p/--partition", "partition 5", &topic, "2 partition(s)"],
    );
    assert_usage_error(
        &s.pseidon(&["consume", "-t", &topic, "-p", "-1"]),
        &["--partition"],
    );
    assert_usage_error(
        &s.pseidon(&["consume", "-t", &topic, "-o", "beginning", "--mark-done"]),
        &["--mark-done", "-o/--offset", "-p/--partition"],
    );
    assert_usage_error(
        &s.pseidon(&["consume", "-t", &topic, "-o", "1", "-o", "2"]),
        &["-o/--offset", "2 times"],
    );
    assert_usage_error(
        &s.pseidon(&["consume", "-t", &topic, "-f", "%x"]),
        &["--format-string", "%x"],
    );
    assert_usage_error(
        &s.pseidon(&["send", "-t", &topic, "-H", "novalue"]),
        &["--header", "novalue", "="],
    );
    assert_usage_error(
        &s.pseidon(&["send", "-t", &topic, "-K", ""]),
        &["--key-delimiter", "empty"],
    );
    assert_usage_error(
        &s.pseidon(&["send", "-t", &topic, "-D", "\\q"]),
        &["--delimiter", "escape"],
    );
    assert_usage_error(
        &s.pseidon(&["send", "-t", &topic, "-p", "x"]),
        &["--partition"],
    );
    assert_usage_error(
        &s.pseidon(&["send", "-t", &topic, "-K:", "--input", "json"]),
        &["--key-delimiter", "--input"],
    );
    let missing = unique("kcat-missing");
    assert_usage_error(
        &s.pseidon(&["consume", "-t", &missing, "-o", "beginning", "-e"]),
        &[&missing, "does not exist"],
    );
    // Nothing was written by the refused sends.
    assert!(kcat_values(&topic).is_empty());
}

#[test]
fn help_lists_every_new_flag_with_an_example() {
    let s = Setup::new();
    let send = s.pseidon(&["send", "--help"]);
    ok(&send);
    let help = text(&send.stdout);
    for flag in [
        "-K, --key-delimiter <DELIM>",
        "-H, --header <NAME=VALUE>",
        "-p, --partition <N>",
        "-Z, --null-empty",
        "-D, --delimiter <DELIM>",
        "--input <INPUT>",
        "Examples:",
        "--input json",
    ] {
        assert!(help.contains(flag), "`{flag}` not in send --help:\n{help}");
    }
    let consume = s.pseidon(&["consume", "--help"]);
    ok(&consume);
    let help = text(&consume.stdout);
    for flag in [
        "-o, --offset <OFFSET>",
        "-p, --partition <N>",
        "-f, --format-string <FORMAT>",
        "-Z ",
        "--null-value <STR>",
        "-c, --max <N>",
        "plain read",
        "Examples:",
        "s@1700000000000",
    ] {
        assert!(
            help.contains(flag),
            "`{flag}` not in consume --help:\n{help}"
        );
    }
    // Each flag of the options list is followed by its one-line description.
    for help in [text(&send.stdout), text(&consume.stdout)] {
        let lines: Vec<&str> = help.lines().collect();
        let mut flags = 0;
        for (i, line) in lines.iter().enumerate() {
            let indent = line.len() - line.trim_start().len();
            if (2..=6).contains(&indent) && line.trim_start().starts_with('-') {
                flags += 1;
                let desc = lines.get(i + 1).map_or("", |l| l.trim());
                assert!(
                    !desc.is_empty() && !desc.starts_with('-'),
                    "flag without a description: {line}"
                );
            }
        }
        assert!(flags >= 10, "{help}");
    }
    // Every command's --help ends with examples of it, and describes each flag.
    for cmd in [
        "plugins", "run", "send", "consume", "groups", "metadata", "config", "metrics",
    ] {
        let out = s.pseidon(&[cmd, "--help"]);
        ok(&out);
        let help = text(&out.stdout);
        let examples = help
            .split("Examples:")
            .nth(1)
            .unwrap_or_else(|| panic!("no Examples: in {cmd} --help:\n{help}"));
        assert!(
            examples.contains(&format!(" {cmd}")),
            "{cmd} --help has no example of {cmd}:\n{help}"
        );
        let lines: Vec<&str> = help.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let indent = line.len() - line.trim_start().len();
            if (2..=6).contains(&indent) && line.trim_start().starts_with("--") {
                let desc = lines.get(i + 1).map_or("", |l| l.trim());
                assert!(
                    !desc.is_empty() && !desc.starts_with('-'),
                    "{cmd}: flag without a description: {line}"
                );
            }
        }
    }
}

#[test]
fn a_topic_pattern_reads_every_matching_topic_in_both_modes() {
    let s = Setup::new();
    let prefix = unique("kcatre");
    let (a, b, other) = (
        format!("{prefix}-a"),
        format!("{prefix}-b"),
        format!("x{prefix}-c"),
    );
    for t in [&a, &b, &other] {
        create_topic(t, 2);
        kcat_produce(t, &["-p", "1"], format!("in {t}\n").as_bytes());
    }
    let pattern = format!("^{prefix}-.*");
    let fmt = "%t %p %o %s\\n";
    let want = [format!("{a} 1 0 in {a}"), format!("{b} 1 0 in {b}")];
    // A plain read.
    let out = s.pseidon(&[
        "consume",
        "-t",
        &pattern,
        "-o",
        "beginning",
        "-e",
        "-f",
        fmt,
    ]);
    ok(&out);
    assert_eq!(sorted_lines(&out.stdout), want);
    // In a consumer group, tracked: both topics' groups end done, kcat agrees on the data.
    let out = s.pseidon(&["consume", "-t", &pattern, "--mark-done", "-e", "-f", fmt]);
    ok(&out);
    assert_eq!(sorted_lines(&out.stdout), want);
    let groups = text(&s.pseidon(&["groups"]).stdout);
    for t in [&a, &b] {
        assert!(
            groups
                .lines()
                .any(|l| l.starts_with(&format!("{t}:1:0:0")) && l.contains("done")),
            "{groups}"
        );
    }
    assert!(!groups.contains(&other), "{groups}");
    for t in [&a, &b] {
        assert_eq!(kcat_values(t), [format!("in {t}").into_bytes()]);
    }
    assert_usage_error(
        &s.pseidon(&["consume", "-t", &format!("^{prefix}-zz"), "-e"]),
        &["matches no topic"],
    );
    assert_usage_error(
        &s.pseidon(&["consume", "-t", "^((", "-o", "end", "-e"]),
        &["`^((`", "not a regular expression"],
    );
}
