//! Exit paths of `pseidon send` and `pseidon run` (issue 12, items 3, 6 and 13's
//! `/dev/zero`), against the real broker and checked with kcat: a signal flushes what
//! was accepted and ends in a summary and 130/143; a second signal exits at once; failed
//! lines are listed as ranges and written verbatim by `--failed-out`; an endless line
//! is skipped with bounded memory; `run` fails when a plugin or processor fails to
//! start, and exits non-zero when a running processor dies.
//! Needs `cargo build --workspace` first (scripts/test does it).

use std::{
    fs,
    io::{BufRead, BufReader, Write as _},
    path::Path,
    process::{Child, ChildStdin, Command, Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use pseidon_tests::{
    RunChild, Workdir, bootstrap, create_topic, kafka_tool, kcat_produce_keyed, kcat_values, unique,
};

const KAFKA: &str = "pseidon_kafka";
const FLAKY: &str = "pseidon_test_plugin_flaky_processor";
const HELLO: &str = "pseidon_test_plugin_hello";
const INIT_ERROR: &str = "pseidon_test_plugin_init_error";
const COPY: &str = "pseidon_copy_processor";

/// A work dir with copies of `plugins` and a conf: `top` at the top level, `kafka`
/// in `[kafka]` (the bootstrap is the test broker unless `kafka` names one), a status
/// db of its own, then `extra`.
struct Setup(Workdir);

impl std::ops::Deref for Setup {
    type Target = Workdir;
    fn deref(&self) -> &Workdir {
        &self.0
    }
}

impl Setup {
    fn new(plugins: &[&str], top: &str, kafka: &str, extra: &str) -> Setup {
        Setup(Workdir::new("pseidon-exits", plugins, top, kafka, extra))
    }

    /// `pseidon --conf C args…` with `stdin` fed in and closed.
    fn pseidon(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = self.spawn(args, "warn");
        let mut input = child.child.stdin.take().unwrap();
        input.write_all(stdin).unwrap();
        drop(input);
        let code = child.finish(Duration::from_secs(60));
        Output {
            status: code,
            stdout: Vec::new(),
            stderr: child.lines.join("\n").into_bytes(),
        }
    }

    fn spawn(&self, args: &[&str], log: &str) -> Proc {
        let mut child = self
            .command(args)
            .env("PSEIDON_LOG", log)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            rx,
            lines: Vec::new(),
        }
    }
}

/// A running `pseidon` and its stderr lines; killed on drop.
struct Proc {
    child: Child,
    rx: mpsc::Receiver<String>,
    lines: Vec<String>,
}

impl Proc {
    fn stdin(&mut self) -> &mut ChildStdin {
        self.child.stdin.as_mut().unwrap()
    }

    fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.lines.iter().any(|l| l.contains(needle)) {
            match self
                .rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(l) => self.lines.push(l),
                Err(_) => panic!("no `{needle}` on stderr: {:#?}", self.lines),
            }
        }
    }

    fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// Waits for the exit (`limit` at most: a hang guard) and the rest of stderr.
    fn finish(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.lines.extend(self.rx.iter());
                let all = self.lines.join("\n");
                assert!(
                    !all.contains("panicked") && !all.to_lowercase().contains("backtrace"),
                    "{all}"
                );
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "pseidon did not exit: {:#?}",
                self.lines
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr(&self) -> String {
        self.lines.join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lines `prefix-1` … `prefix-n`, each followed by `\n`.
fn numbered(prefix: &str, n: usize) -> String {
    (1..=n).map(|i| format!("{prefix}-{i}\n")).collect()
}

/// Sends `n` lines with `linger.ms = 3000`, keeps stdin open (the read blocks), waits
/// until every line was accepted, sends SIG`signal` and checks that every line is on
/// the topic, the summary is printed and the exit code is 128 + the signal number.
fn signal_during_send(signal: &str, n: usize, code: i32) {
    let s = Setup::new(
        &[KAFKA],
        "shutdown-timeout-ms = 20000",
        "linger.ms = 3000",
        "",
    );
    let topic = unique("exits-signal");
    create_topic(&topic, 1);
    let mut p = s.spawn(
        &["send", "--topic", &topic],
        "warn,pseidon::cli::send=debug",
    );
    p.stdin().write_all(numbered("v", n).as_bytes()).unwrap();
    p.stdin().flush().unwrap();
    p.wait_for(&format!("{n} line(s) accepted so far"));
    // The messages linger in the producer (3 s): the signal comes before they are sent.
    p.signal(signal);
    let status = p.finish(Duration::from_secs(60));
    let err = p.stderr();
    assert_eq!(status.code(), Some(code), "{err}");
    assert!(
        err.contains(&format!(
            "SIG{signal}: stopped reading stdin after line {n}"
        )),
        "{err}"
    );
    assert!(err.contains(&format!("sent {n}, failed 0")), "{err}");
    let got = kcat_values(&topic);
    assert_eq!(got.len(), n, "kcat count; stderr:\n{err}");
    let want: Vec<Vec<u8>> = (1..=n).map(|i| format!("v-{i}").into_bytes()).collect();
    assert_eq!(got, want);
}

#[test]
fn sigterm_during_send_flushes_the_lingering_lines_prints_the_summary_and_exits_143() {
    signal_during_send("TERM", 1000, 143);
}

#[test]
fn sigint_during_send_flushes_and_exits_130() {
    signal_during_send("INT", 300, 130);
}

#[test]
fn a_second_signal_exits_at_once_naming_the_undelivered_count() {
    // A closed port: nothing is ever delivered; the flush would wait 60 s.
    let s = Setup::new(
        &[KAFKA],
        "shutdown-timeout-ms = 60000",
        "bootstrap.servers = \"127.0.0.1:1\"\nmessage.timeout.ms = 60000",
        "",
    );
    let mut p = s.spawn(
        &["send", "--topic", "exits-second"],
        "warn,pseidon::cli::send=debug",
    );
    p.stdin().write_all(numbered("u", 50).as_bytes()).unwrap();
    p.stdin().flush().unwrap();
    p.wait_for("50 line(s) accepted so far");
    p.signal("TERM");
    p.wait_for("a second signal exits at once");
    let start = Instant::now();
    p.signal("INT");
    let status = p.finish(Duration::from_secs(30));
    let err = p.stderr();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(
        err.contains("second SIGINT: exiting at once; 50 message(s) to topic `exits-second`"),
        "{err}"
    );
    // Not the 60 s flush (a hang guard, not a speed figure).
    assert!(start.elapsed() < Duration::from_secs(30), "{err}");
}

#[test]
fn with_the_broker_unreachable_every_failed_line_is_listed_and_written_by_failed_out() {
    let s = Setup::new(
        &[KAFKA],
        "",
        "bootstrap.servers = \"127.0.0.1:1\"\nmessage.timeout.ms = 1500",
        "",
    );
    let out = s.root.join("failed.txt");
    let long = "L".repeat(100);
    let input = format!("a 1\nb\\t2\n\n{long}\nlast\t5\n\u{e9}6\n");
    let o = s.pseidon(
        &[
            "send",
            "--topic",
            "exits-down",
            "--failed-out",
            out.to_str().unwrap(),
            "--max-line-bytes",
            "50",
        ],
        input.as_bytes(),
    );
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("sent 0, failed 6"), "{err}");
    assert!(err.contains("failed lines of stdin: 1-6"), "{err}");
    assert!(
        err.contains("line 4 of stdin: line is 100 bytes, over the limit of 50 bytes"),
        "{err}"
    );
    assert!(err.contains("wrote 5 failed line(s)"), "{err}");
    // Verbatim, in input order, without the line skipped as too long.
    assert_eq!(
        fs::read(&out).unwrap(),
        "a 1\nb\\t2\n\nlast\t5\n\u{e9}6\n".as_bytes()
    );
    // The spool next to it is gone.
    let left: Vec<_> = fs::read_dir(&s.root)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("spool"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn lines_the_broker_refuses_are_listed_as_ranges_and_resent_from_failed_out() {
    // One record per request, so the broker refuses the large lines alone.
    let s = Setup::new(
        &[KAFKA],
        "",
        "batch.num.messages = 1\nlinger.ms = 0\nmax.in.flight.requests.per.connection = 1",
        "",
    );
    let topic = unique("exits-refused");
    kafka_tool(&[
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
    let big = |i: usize| format!("big-{i}-{}", "x".repeat(500));
    let lines: Vec<String> = (1..=10)
        .map(|i| {
            if matches!(i, 3..=5 | 9) {
                big(i)
            } else {
                format!("small-{i}")
            }
        })
        .collect();
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let out = s.root.join("failed.txt");
    let o = s.pseidon(
        &[
            "send",
            "--topic",
            &topic,
            "--failed-out",
            out.to_str().unwrap(),
        ],
        input.as_bytes(),
    );
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("sent 6, failed 4"), "{err}");
    assert!(err.contains("failed lines of stdin: 3-5, 9"), "{err}");
    let want_failed: String = [3, 4, 5, 9]
        .iter()
        .map(|&i| format!("{}\n", big(i)))
        .collect();
    assert_eq!(fs::read_to_string(&out).unwrap(), want_failed);
    let got: Vec<String> = kcat_values(&topic)
        .into_iter()
        .map(|v| String::from_utf8(v).unwrap())
        .collect();
    let want: Vec<String> = lines
        .iter()
        .filter(|l| l.starts_with("small"))
        .cloned()
        .collect();
    assert_eq!(got, want);
}

#[test]
fn send_of_dev_zero_skips_the_endless_line_in_bounded_memory_and_exits_1() {
    let s = Setup::new(&[KAFKA], "", "message.max.bytes = 1000", "");
    let topic = unique("exits-zero");
    create_topic(&topic, 1);
    let mut p = s.spawn(&["send", "--topic", &topic, "-f", "/dev/zero"], "warn");
    let status = p.finish(Duration::from_secs(60));
    let err = p.stderr();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("line 1 of /dev/zero: line is more than "),
        "{err}"
    );
    assert!(err.contains("over the limit of 1000 bytes"), "{err}");
    assert!(err.contains("stopped reading at line 1"), "{err}");
    assert!(err.contains("sent 0, failed 1"), "{err}");
    assert!(kcat_values(&topic).is_empty());
}

#[test]
fn send_dev_zero_memory_stays_bounded() {
    // The peak RSS of the child, from /proc, while it reads 1 GiB of one line.
    let s = Setup::new(&[KAFKA], "", "", "");
    let mut p = s.spawn(
        &["send", "--topic", "exits-zero-rss", "-f", "/dev/zero"],
        "warn",
    );
    let pid = p.child.id();
    let mut peak_kib = 0u64;
    loop {
        if let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(hwm) = status.lines().find(|l| l.starts_with("VmHWM:"))
        {
            peak_kib = hwm
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(peak_kib)
                .max(peak_kib);
        }
        if p.child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = p.finish(Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "{}", p.stderr());
    assert!(
        p.stderr().contains("over the limit of 1000000 bytes"),
        "{}",
        p.stderr()
    );
    // 1 GiB was read; far less is ever held (the line limit plus buffers).
    assert!(
        peak_kib > 0 && peak_kib < 200 * 1024,
        "peak RSS {peak_kib} KiB"
    );
}

// ------------------------------------------------------------------------ run

/// `pseidon run` of `s` to its exit; (exit code, stderr).
fn run_to_exit(s: &Setup) -> (Option<i32>, String) {
    let mut run = RunChild::spawn(&s.conf, "info");
    let code = run.finish(Duration::from_secs(60), Duration::from_millis(20));
    (code, run.lines.join("\n"))
}

#[test]
fn run_fails_at_start_when_a_processor_fails_to_start() {
    let s = Setup::new(&[HELLO, FLAKY], "", "", "[flaky]\nmode = \"start-error\"\n");
    let (code, err) = run_to_exit(&s);
    assert_eq!(code, Some(2), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("pseidon: error: ")
            && last
                .contains("processor `test.flaky.processor` (of flaky-processor) failed to start")
            && last.contains("flaky.required"),
        "{err}"
    );
    // What had started is stopped again; the service never said it was running.
    assert!(err.contains("test.hello.processor stopped"), "{err}");
    assert!(!err.contains("waiting for SIGINT or SIGTERM"), "{err}");
}

#[test]
fn run_fails_at_start_when_a_plugin_fails_to_load() {
    let s = Setup::new(&[HELLO, INIT_ERROR], "", "", "");
    let (code, err) = run_to_exit(&s);
    assert_eq!(code, Some(2), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains("failed to load") && last.contains("init-error.required"),
        "{err}"
    );
    assert!(!err.contains("waiting for SIGINT or SIGTERM"), "{err}");
}

#[test]
fn run_exits_non_zero_when_a_running_processor_dies() {
    let s = Setup::new(
        &[HELLO, FLAKY],
        "",
        "",
        "[flaky]\nmode = \"die-after-ms=500\"\n",
    );
    let (code, err) = run_to_exit(&s);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("waiting for SIGINT or SIGTERM"), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains("processor `test.flaky.processor` (of flaky-processor) stopped with an error while running")
            && last.contains("status database is locked"),
        "{err}"
    );
    // Everything was stopped on the way out.
    assert!(err.contains("test.hello.processor stopped"), "{err}");
}

#[test]
fn run_exits_0_once_every_processor_finished() {
    let s = Setup::new(
        &[FLAKY],
        "",
        "",
        "[flaky]\nmode = \"finish-after-ms=300\"\n",
    );
    let (code, err) = run_to_exit(&s);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("every processor has finished"), "{err}");
}

/// The copy processor's conf: the Kafka plugin and the copier from `from` to `to`.
fn copy_setup(from: &str, to: &str, status_db: Option<&Path>, extra: &str) -> Setup {
    let s = Setup::new(
        &[KAFKA, COPY],
        "shutdown-timeout-ms = 20000",
        "",
        &format!(
            "[copy-processor]\nfrom = {from:?}\nto = {to:?}\ngroup = {:?}\n{extra}\n",
            unique("exits-copier")
        ),
    );
    if let Some(db) = status_db {
        let text = fs::read_to_string(&s.conf).unwrap();
        let old = format!("status-db = {:?}", s.root.join("status.db"));
        fs::write(&s.conf, text.replace(&old, &format!("status-db = {db:?}"))).unwrap();
    }
    s
}

#[test]
fn run_fails_at_start_when_the_copy_processor_cannot_open_its_status_db() {
    let from = unique("exits-copy-from");
    let to = unique("exits-copy-to");
    create_topic(&from, 1);
    create_topic(&to, 1);
    // The first instance holds the status database's lock.
    let first = copy_setup(&from, &to, None, "");
    let mut holder = RunChild::spawn(&first.conf, "info");
    holder.wait_for("waiting for SIGINT or SIGTERM");
    let second = copy_setup(&from, &to, Some(&first.root.join("status.db")), "");
    let (code, err) = run_to_exit(&second);
    assert_eq!(code, Some(2), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains(
            "processor `pseidon.example.copy-processor` (of copy-processor) failed to start"
        ),
        "{err}"
    );
    assert!(last.contains("status.db"), "{err}");
    holder.signal("TERM");
    assert_eq!(
        holder.finish(Duration::from_secs(60), Duration::from_millis(20)),
        Some(0)
    );
}

#[test]
fn run_exits_non_zero_when_the_copy_thread_gives_up() {
    // Since issue 16 the copier marks such a group failed and goes on (poison.rs); it
    // gives up only when the datasource cannot mark groups failed: the Kafka plugin of
    // plugin-api 0.3.0 (PSEIDON_OLD_KAFKA_SO, built by .ci/run).
    let Some(old) = pseidon_tests::old_kafka_so() else {
        return;
    };
    let from = unique("exits-copy-from");
    let to = unique("exits-copy-to");
    create_topic(&from, 1);
    // The target refuses every message: the copier gives up after one attempt.
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
        "max.message.bytes=200",
    ]);
    kcat_produce_keyed(&bootstrap(), &from, &["v".repeat(1000)], &[]);
    let s = copy_setup(&from, &to, None, "max-attempts = 1");
    // The Kafka plugin is the first copied (`10-pseidon_kafka.so`): the old one instead.
    let so = fs::read_dir(s.root.join("plugins"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("pseidon_kafka.so"))
        .expect("the Kafka plugin's copy");
    fs::remove_file(&so).unwrap();
    fs::copy(&old, &so).unwrap();
    fs::set_permissions(&so, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (code, err) = run_to_exit(&s);
    assert_eq!(code, Some(2), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains("processor `pseidon.example.copy-processor` (of copy-processor) stopped with an error while running")
            && last.contains("gave up after 1 attempt"),
        "{err}"
    );
    assert!(kcat_values(&to).is_empty());
}
