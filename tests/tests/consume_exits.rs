//! How `pseidon consume` ends (issue 12, items 5, 7, 8 and two of 13), against the real
//! broker through the real `libpseidon_kafka.so`, checked with kcat and Kafka's own
//! consumer-groups tool:
//! `-e` exits 0 once every partition reached its end; `--idle-exit-ms` does not run out
//! while the group is still joining; `--max N --mark-done` advances run after run; SIGTERM
//! with a stalled stdout stops within a bound; `-t X -t X` is an error; an unreachable
//! broker logs a bounded number of lines.
//! Needs `cargo build --workspace` first (scripts/test does it).

use std::{
    collections::BTreeSet,
    io::{BufRead as _, BufReader, Read as _},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use pseidon_tests::{Workdir, bootstrap, create_topic, kafka_tool, kcat_values, unique};

/// A work dir with a copy of the Kafka plugin and a conf naming it, `servers` and a
/// status db of its own.
struct Setup(Workdir);

impl std::ops::Deref for Setup {
    type Target = Workdir;
    fn deref(&self) -> &Workdir {
        &self.0
    }
}

impl Setup {
    /// `kafka` goes into the `[kafka]` table, `settings` into `[pseidon-kafka]`.
    fn new(servers: &str, kafka: &str, settings: &str) -> Setup {
        let kafka = format!("bootstrap.servers = {servers:?}\n{kafka}");
        Setup(Workdir::kafka("pseidon-exits", &kafka, settings))
    }

    /// [`Workdir::command`] with stdin closed and the outputs captured.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.0.command(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs `pseidon --conf <conf> args…` to its end (60 s at most).
    fn pseidon(&self, args: &[&str]) -> Output {
        let child = self.command(args).spawn().unwrap();
        finish(child, Duration::from_secs(60))
    }
}

/// Waits for `child` (killing it past `limit`) and collects its output; asserts no panic.
fn finish(mut child: Child, limit: Duration) -> Output {
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "pseidon did not exit within {limit:?}; stderr:\n{}",
                text(&err_reader.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = Output {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    };
    let e = text(&out.stderr);
    assert!(
        !e.contains("panicked") && !e.to_lowercase().contains("backtrace"),
        "pseidon panicked:\n{e}"
    );
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn lines(out: &Output) -> Vec<String> {
    text(&out.stdout).lines().map(str::to_string).collect()
}

fn assert_code(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {} line(s)\nstderr:\n{}",
        text(&out.stdout).lines().count(),
        text(&out.stderr)
    );
}

/// Is this stderr line a log line (they start with a timestamp)?
fn is_log_line(l: &str) -> bool {
    l.len() > 4 && l.starts_with("20") && l.as_bytes()[4] == b'-'
}

/// Sends `values` to `topic` with kcat (one message per value, partitioned by librdkafka).
fn kcat_send(topic: &str, values: &[String]) {
    let mut child = Command::new("kcat")
        .args(["-b", &bootstrap(), "-t", topic, "-P"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kcat");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        for v in values {
            writeln!(stdin, "{v}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "kcat -P: {}", text(&out.stderr));
}

/// The sum of the committed offsets of `group` on `topic` (Kafka's consumer-groups tool).
fn committed_sum(group: &str, topic: &str) -> i64 {
    let out = kafka_tool(&[
        "consumer-groups",
        "--bootstrap-server",
        &bootstrap(),
        "--describe",
        "--group",
        group,
    ]);
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && f[1] == topic)
                .then(|| f[3].parse::<i64>().ok())
                .flatten()
        })
        .sum()
}

/// The `pseidon groups` rows of `topic`: (id, status).
fn group_rows(s: &Setup, topic: &str) -> Vec<(String, String)> {
    let out = s.pseidon(&["groups", "--topic", topic]);
    assert_code(&out, 0);
    text(&out.stdout)
        .lines()
        .skip(1)
        .filter(|l| !l.ends_with("group(s)"))
        .map(|l| {
            let mut f = l.split_whitespace();
            (
                f.next().unwrap_or_default().to_string(),
                f.next().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn exit_at_end_prints_every_message_of_three_partitions_and_exits_0() {
    let s = Setup::new(&bootstrap(), "", "");
    let topic = unique("exits-e");
    create_topic(&topic, 3);
    let values: Vec<String> = (0..600).map(|i| format!("e-{i}")).collect();
    kcat_send(&topic, &values);
    assert_eq!(kcat_values(&topic).len(), 600, "kcat sees every message");
    let group = unique("exits-e-g");
    let out = s.pseidon(&["consume", "-t", &topic, "-g", &group, "-e", "--mark-done"]);
    assert_code(&out, 0);
    let got = lines(&out);
    assert_eq!(got.len(), 600, "each message printed once");
    assert_eq!(
        got.iter().cloned().collect::<BTreeSet<_>>(),
        values.iter().cloned().collect::<BTreeSet<_>>()
    );
    assert_eq!(committed_sum(&group, &topic), 600);
    assert!(
        group_rows(&s, &topic).iter().all(|(_, st)| st == "done"),
        "every group done"
    );
    // At the end already: the next run exits 0 at once, printing nothing.
    let out = s.pseidon(&["consume", "-t", &topic, "-g", &group, "-e"]);
    assert_code(&out, 0);
    assert_eq!(lines(&out).len(), 0);
}

#[test]
fn idle_clock_does_not_run_while_the_group_waits_out_a_killed_member() {
    // A 12 s session: the restarted reader's join waits for the killed member to expire.
    let s = Setup::new(
        &bootstrap(),
        "session.timeout.ms = 12000\nheartbeat.interval.ms = 1000",
        "",
    );
    let topic = unique("exits-join");
    create_topic(&topic, 1);
    let group = unique("exits-join-g");
    let mut first = s
        .command(&["consume", "-t", &topic, "-g", &group])
        .env("PSEIDON_LOG", "info")
        .spawn()
        .unwrap();
    let stderr = first.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("partitions assigned") => break,
            Ok(_) => {}
            Err(_) => {
                let _ = first.kill();
                panic!("the first consumer never got its partitions");
            }
        }
    }
    first.kill().unwrap();
    let _ = first.wait();
    let values: Vec<String> = (0..500).map(|i| format!("j-{i}")).collect();
    kcat_send(&topic, &values);
    // 2 s of idleness would have ended the run long before the group rebalanced.
    let started = Instant::now();
    let out = s.pseidon(&[
        "consume",
        "-t",
        &topic,
        "-g",
        &group,
        "--idle-exit-ms",
        "2000",
        "--mark-done",
    ]);
    let took = started.elapsed();
    eprintln!(
        "figure: restart after SIGKILL printed {} of 500 in {took:?}",
        lines(&out).len()
    );
    assert_code(&out, 0);
    assert_eq!(lines(&out), values, "every message printed, in order");
    assert!(
        took > Duration::from_secs(4),
        "the join did not wait for the killed member ({took:?}): the test proves nothing"
    );
    assert_eq!(committed_sum(&group, &topic), 500);
}

#[test]
fn max_with_mark_done_advances_100_100_50() {
    let s = Setup::new(&bootstrap(), "", "");
    let topic = unique("exits-max");
    create_topic(&topic, 3);
    let values: Vec<String> = (0..250).map(|i| format!("m-{i}")).collect();
    kcat_send(&topic, &values);
    let group = unique("exits-max-g");
    let mut all = BTreeSet::new();
    for (run, want, committed) in [(1, 100, 100), (2, 100, 200), (3, 50, 250)] {
        let out = s.pseidon(&[
            "consume",
            "-t",
            &topic,
            "-g",
            &group,
            "--max",
            "100",
            "--mark-done",
            "-e",
        ]);
        assert_code(&out, 0);
        let got = lines(&out);
        assert_eq!(got.len(), want, "run {run}: {}", text(&out.stderr));
        for v in got {
            assert!(all.insert(v.clone()), "run {run} printed {v} again");
        }
        let rows = group_rows(&s, &topic);
        assert!(
            rows.iter().all(|(_, st)| st == "done"),
            "run {run}: every printed group is done: {rows:?}"
        );
        assert_eq!(committed_sum(&group, &topic), committed, "run {run}");
    }
    assert_eq!(all, values.into_iter().collect::<BTreeSet<_>>());
}

#[test]
fn sigterm_with_a_stalled_stdout_stops_within_a_bound() {
    let s = Setup::new(&bootstrap(), "", "");
    let topic = unique("exits-stall");
    create_topic(&topic, 1);
    // 5000 x 1 KiB: far more than a pipe holds.
    let pad = "x".repeat(1000);
    let values: Vec<String> = (0..5000).map(|i| format!("s-{i}-{pad}")).collect();
    kcat_send(&topic, &values);
    let group = unique("exits-stall-g");
    let mut child = s
        .command(&["consume", "-t", &topic, "-g", &group, "--mark-done"])
        .spawn()
        .unwrap();
    // Nobody reads its stdout: once the pipe is full, every write blocks.
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = BufReader::new(stderr).read_to_end(&mut b);
        b
    });
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        child.try_wait().unwrap().is_none(),
        "consume ended by itself"
    );
    let signalled = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if signalled.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("SIGTERM ignored for 30 s while stdout is stalled");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stopped_in = signalled.elapsed();
    eprintln!("figure: SIGTERM with stalled stdout: exit {code:?} after {stopped_in:?}");
    drop(stdout);
    let stderr = text(&err_reader.join().unwrap());
    assert_eq!(code, Some(143), "{stderr}");
    assert!(
        stopped_in < Duration::from_secs(15),
        "the stop took {stopped_in:?}: {stderr}"
    );
    assert!(stderr.contains("stopped by SIGTERM"), "{stderr}");
    // The next run prints everything not marked done (offset i holds s-i).
    let done: Vec<(i64, i64)> = group_rows(&s, &topic)
        .into_iter()
        .filter(|(_, st)| st == "done")
        .map(|(id, _)| {
            let f: Vec<&str> = id.rsplitn(3, ':').collect();
            (f[1].parse().unwrap(), f[0].parse().unwrap())
        })
        .collect();
    let out = s.pseidon(&["consume", "-t", &topic, "-g", &group, "--mark-done", "-e"]);
    assert_code(&out, 0);
    let got: BTreeSet<String> = lines(&out).into_iter().collect();
    let missing: Vec<usize> = (0..values.len())
        .filter(|i| {
            let o = *i as i64;
            !done.iter().any(|(min, max)| *min <= o && o <= *max) && !got.contains(&values[*i])
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} message(s) neither done nor printed by the next run, e.g. offset {:?}",
        missing.len(),
        missing.first()
    );
    assert_eq!(committed_sum(&group, &topic), 5000);
}

#[test]
fn a_topic_listed_twice_is_an_error_naming_it() {
    let s = Setup::new(&bootstrap(), "", "");
    let out = s.pseidon(&[
        "consume",
        "-t",
        "dup-topic",
        "-t",
        "other",
        "-t",
        "dup-topic",
    ]);
    assert_code(&out, 2);
    let stderr = text(&out.stderr);
    let msgs: Vec<&str> = stderr.lines().filter(|l| !is_log_line(l)).collect();
    assert_eq!(msgs.len(), 1, "{stderr}");
    assert!(
        msgs[0].contains("`dup-topic`") && msgs[0].contains("listed twice"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_broker_logs_a_bounded_number_of_lines() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = Setup::new(&format!("127.0.0.1:{port}"), "", "");
    let topic = unique("exits-down");
    let child = s
        .command(&["consume", "-t", &topic, "-g", "exits-down-g"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(10));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = finish(child, Duration::from_secs(30));
    assert_code(&out, 143);
    let stderr = text(&out.stderr);
    let logged: Vec<&str> = stderr.lines().filter(|l| is_log_line(l)).collect();
    eprintln!(
        "figure: {} log lines in 10 s against a closed port",
        logged.len()
    );
    assert!(
        logged
            .iter()
            .any(|l| l.contains(&format!("127.0.0.1:{port}"))),
        "the connection failure is reported: {stderr}"
    );
    assert!(
        logged.len() <= 10,
        "{} log lines in 10 s:\n{stderr}",
        logged.len()
    );
}
