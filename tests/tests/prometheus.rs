//! A real Prometheus server (Debian package `prometheus`) scrapes `pseidon run` with the
//! copy processor running, while the copy is held up: its rate limit (1 message/s)
//! holds each group of 60 messages handed out for a minute before it is written, as a
//! processor slower than its topic does. PromQL through Prometheus' HTTP API then
//! returns the two halves of the lag, and they match Kafka's own
//! `kafka-consumer-groups --describe` (LAG = unread + unfinished) and the status
//! database (unfinished = the messages of the groups not done); the oldest unfinished
//! group's age grows while it is held and resets once it is copied and marked done.

use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use pseidon_tests::{
    RunChild, Workdir, bootstrap, create_topic, http_get, kafka_tool, kcat_produce_keyed,
    kcat_values, unique,
};
use serde_json::Value;

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Prometheus server on loopback scraping `target` every second; killed on drop.
struct Prometheus {
    child: Child,
    addr: String,
}

impl Prometheus {
    fn start(dir: &Path, target: &str) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n\
                 scrape_configs:\n  - job_name: pseidon\n    static_configs:\n      - targets: [{target:?}]\n"
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "the `prometheus` server (Debian package prometheus, installed by scripts/deps)",
            );
        let p = Prometheus { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(&p.addr, "/-/ready").map(|(s, _)| s) != Some(200) {
            assert!(Instant::now() < deadline, "prometheus did not get ready");
            sleep(Duration::from_millis(200));
        }
        p
    }

    /// The value of the one-sample result of `query`, `None` while it has none.
    fn scalar(&self, query: &str) -> Option<f64> {
        let path = format!("/api/v1/query?query={}", url_encode(query));
        let (status, body) = http_get(&self.addr, &path)?;
        assert_eq!(status, 200, "{query}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let result = v["data"]["result"].as_array()?;
        match result.as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            [] => None,
            more => panic!("{query}: more than one sample: {more:?}"),
        }
    }

    /// Waits (60 s at most) until `query` returns `want`.
    fn wait_for(&self, query: &str, want: f64, pseidon: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = None;
        while Instant::now() < deadline {
            last = self.scalar(query);
            if last == Some(want) {
                return;
            }
            sleep(Duration::from_millis(500));
        }
        let scrape = http_get(pseidon, "/metrics").map(|(_, b)| b);
        panic!("{query}: {last:?}, want {want}; pseidon's /metrics now:\n{scrape:?}");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// (committed offset, log end offset, lag) of partition 0 of `topic` for `group`, as
/// Kafka's own `kafka-consumer-groups --describe` shows them; `None` before a commit.
fn describe(group: &str, topic: &str) -> Option<(i64, i64, i64)> {
    let out = kafka_tool(&[
        "consumer-groups",
        "--bootstrap-server",
        &bootstrap(),
        "--describe",
        "--group",
        group,
    ]);
    out.lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        if cols.len() >= 6 && cols[0] == group && cols[1] == topic && cols[2] == "0" {
            Some((
                cols[3].parse().ok()?,
                cols[4].parse().ok()?,
                cols[5].parse().ok()?,
            ))
        } else {
            None
        }
    })
}

/// Commits `offset` for partition 0 of `topic` in `group` (inactive), with Kafka's tool.
fn commit(group: &str, topic: &str, offset: i64) {
    kafka_tool(&[
        "consumer-groups",
        "--bootstrap-server",
        &bootstrap(),
        "--group",
        group,
        "--topic",
        &format!("{topic}:0"),
        "--reset-offsets",
        "--to-offset",
        &offset.to_string(),
        "--execute",
    ]);
}

/// The groups of `topic` in the status database, through `pseidon groups --format json`.
fn groups(w: &Workdir, topic: &str) -> Vec<Value> {
    let out = w.run(&["groups", "--topic", topic, "--format", "json"], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["groups"].as_array().unwrap().clone()
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[test]
fn prometheus_scrapes_the_lag_in_two_halves_matching_kafka_and_the_status_db() {
    let from = unique("prom-from");
    let to = unique("prom-to");
    let group = format!("{from}-copier");
    create_topic(&from, 1);
    create_topic(&to, 1);
    kcat_produce_keyed(&bootstrap(), &from, &values("m", 100), &[]);
    // Done before this run: offsets 0..20.
    commit(&group, &from, 20);
    let http = format!("127.0.0.1:{}", free_port());
    let w = Workdir::new(
        "pseidon-prom",
        &["pseidon_kafka", "pseidon_copy_processor"],
        &format!("http-listen = {http:?}\nshutdown-timeout-ms = 10000\n"),
        "statistics.interval.ms = 1000\nsession.timeout.ms = 6000\nheartbeat.interval.ms = 1000\n",
        &format!(
            "group-max-messages = 60\n\n[copy-processor]\nfrom = {from:?}\nto = {to:?}\n\
             group = {group:?}\nmax-rate = 1\n"
        ),
    );
    let mut run = RunChild::spawn(&w.conf, "info");
    run.wait_for("copying topic");

    // Held: the group 20..79 handed out (`run`) for a minute, the commit at 20.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (unfinished, oldest) = loop {
        let gs = groups(&w, &from);
        let open: Vec<&Value> = gs.iter().filter(|g| g["status"] != "done").collect();
        if let [held] = open.as_slice() {
            break (
                held["messages"].as_i64().expect("a count"),
                held["id"].as_str().unwrap().to_string(),
            );
        }
        run.drain();
        assert!(
            Instant::now() < deadline,
            "no group held: {gs:#?}\n{:#?}",
            run.lines
        );
        sleep(Duration::from_millis(200));
    };
    assert_eq!(oldest, format!("{from}:0:20:79"));
    assert_eq!(unfinished, 60);
    let (committed, end, lag) = describe(&group, &from).expect("a committed offset");
    assert_eq!((committed, end, lag), (20, 100, 80));

    let prom = Prometheus::start(&w.root, &http);
    let sel = format!("{{topic={from:?},group={group:?}}}");
    prom.wait_for(
        &format!("sum(pseidon_kafka_lag_unfinished_messages{sel})"),
        unfinished as f64,
        &http,
    );
    prom.wait_for(
        &format!("sum(pseidon_kafka_lag_unread_messages{sel})"),
        (lag - unfinished) as f64,
        &http,
    );
    prom.wait_for(
        &format!("max(pseidon_kafka_retention_risk_offsets{sel})"),
        committed as f64,
        &http,
    );
    // Still the same state, seen by Kafka's tool and the status database.
    assert_eq!(describe(&group, &from), Some((20, 100, 80)));
    assert!(
        groups(&w, &from)
            .iter()
            .any(|g| g["id"] == oldest.as_str() && g["status"] == "run")
    );
    // The held group's age grows; its attempts are counted.
    let age = |p: &Prometheus| {
        p.scalar(&format!(
            "max(pseidon_kafka_oldest_unfinished_group_age_seconds{sel})"
        ))
        .expect("an oldest unfinished group")
    };
    let first = age(&prom);
    sleep(Duration::from_secs(4));
    let later = age(&prom);
    assert!(later >= first + 2.0, "age {first} then {later}");
    let attempts = prom
        .scalar(&format!(
            "max(pseidon_kafka_oldest_unfinished_group_attempts{sel})"
        ))
        .expect("attempts");
    assert!(attempts >= 1.0, "{attempts}");
    // The endpoint's /groups names it too.
    let (status, body) = http_get(&http, &format!("/groups?topic={from}&status=run")).unwrap();
    assert_eq!(status, 200);
    assert!(body.contains(&oldest), "{oldest} not in /groups: {body}");

    // Once copied and marked done, the next group is the oldest: the age resets.
    let deadline = Instant::now() + Duration::from_secs(120);
    while groups(&w, &from)
        .iter()
        .any(|g| g["id"] == oldest.as_str() && g["status"] != "done")
    {
        assert!(Instant::now() < deadline, "{oldest} was never done");
        sleep(Duration::from_millis(500));
    }
    let reset_by = Instant::now() + Duration::from_secs(30);
    loop {
        let now = prom
            .scalar(&format!(
                "max(pseidon_kafka_oldest_unfinished_group_age_seconds{sel})"
            ))
            .unwrap_or(0.0);
        if now < later {
            break;
        }
        assert!(Instant::now() < reset_by, "the age did not reset: {now}");
        sleep(Duration::from_millis(500));
    }
    assert_eq!(kcat_values(&to).len(), 60, "the held group, copied once");
    run.signal("TERM");
    assert_eq!(
        run.finish(Duration::from_secs(30), Duration::from_millis(100)),
        Some(0),
        "{:#?}",
        run.lines
    );
}
