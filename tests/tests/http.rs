//! The host's HTTP endpoint under `pseidon run` (issue 15, host side): the copy
//! processor runs against the real broker; every endpoint is fetched with curl (an
//! independent client); the scrape and the alert rules are checked by promtool; a
//! bad `http-listen` or a taken port ends `run` with exit 2 naming the key; no
//! secret value of the conf is ever served; `/ready` follows a broker of the test's
//! own (killed and started again) while `/health` stays 200.
//!
//! HTTP ports: 19830-19839; the broker of its own: 19821.

use std::{
    fs,
    io::Write as _,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use pseidon_tests::{
    OwnBroker, RunChild, bootstrap, copy_plugins, create_topic, kcat_produce_keyed, pseidon_bin,
    repo_root, temp_dir, unique,
};
use serde_json::Value;

const SECRET_PASSWORD: &str = "pw-7f3c-NEVER-SERVED";
const SECRET_TOKEN: &str = "tok-91ab-NEVER-SERVED";

/// (status code, body) of `curl -X method url`.
fn curl(method: &str, url: &str, accept: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-X",
        method,
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "--max-time",
        "20",
    ]);
    if let Some(a) = accept {
        cmd.args(["-H", &format!("Accept: {a}")]);
    }
    let out = cmd.arg(url).output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn get(base: &str, path: &str) -> (u16, String) {
    curl("GET", &format!("{base}{path}"), None)
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Polls `path` until it answers `code` (`limit` at most); returns the body.
fn wait_status(base: &str, path: &str, code: u16, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let (c, body) = get(base, path);
        if c == code {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} did not answer {code} in {limit:?}: last {c} {body}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `promtool check <what>` on `input` (stdin) or a file; asserts it is clean.
fn promtool_check_metrics(scrape: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{scrape}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Setup {
    root: std::path::PathBuf,
    conf: std::path::PathBuf,
    base: String,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// A work dir with the Kafka plugin and the copy processor, a conf copying `from` to
/// `to` with `http-listen` on `port` and secrets set; `servers` is the bootstrap.
fn setup(prefix: &str, port: u16, servers: &str, from: &str, to: &str, extra_kafka: &str) -> Setup {
    let root = temp_dir(prefix);
    let plugins = root.join("plugins");
    fs::create_dir(&plugins).unwrap();
    copy_plugins(&plugins, &["pseidon_kafka", "pseidon_copy_processor"]);
    let conf = root.join("pseidon.toml");
    fs::write(
        &conf,
        format!(
            "plugin-dirs = [{plugins:?}]\nhttp-listen = \"127.0.0.1:{port}\"\n\n\
             [kafka]\nbootstrap.servers = {servers:?}\nsasl.password = {SECRET_PASSWORD:?}\n{extra_kafka}\n\n\
             [pseidon-kafka]\nstatus-db = {:?}\ngroup-max-messages = 50\n\n\
             [copy-processor]\nfrom = {from:?}\nto = {to:?}\ngroup = {:?}\n\n\
             [monitoring-test]\napi-token = {SECRET_TOKEN:?}\n",
            root.join("status.db"),
            format!("{from}-copier"),
        ),
    )
    .unwrap();
    Setup {
        root,
        conf,
        base: format!("http://127.0.0.1:{port}"),
    }
}

#[test]
fn every_endpoint_answers_with_its_shape_and_serves_no_secret() {
    let from = unique("http-from");
    let to = unique("http-to");
    create_topic(&from, 2);
    create_topic(&to, 2);
    let values: Vec<String> = (0..200).map(|i| format!("v-{i}")).collect();
    kcat_produce_keyed(&bootstrap(), &from, &values, &[]);
    let s = setup("pseidon-http", 19830, &bootstrap(), &from, &to, "");
    let mut run = RunChild::spawn(&s.conf, "info");
    run.wait_for("HTTP endpoint serving");

    assert_eq!(
        json(&wait_status(
            &s.base,
            "/health",
            200,
            Duration::from_secs(20)
        ))["status"],
        "alive"
    );
    let ready = json(&wait_status(
        &s.base,
        "/ready",
        200,
        Duration::from_secs(30),
    ));
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["not_ready"], Value::Array(vec![]));

    let (code, body) = get(&s.base, "/registry");
    assert_eq!(code, 200);
    let reg = json(&body);
    let names: Vec<&str> = reg["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert!(p["file"].as_str().unwrap().ends_with(".so"), "{p}");
            assert!(p["version"].is_string(), "{p}");
            p["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(names, ["pseidon-kafka", "copy-processor"]);
    let entries: Vec<(String, String, String)> = reg["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["name"].as_str().unwrap().to_string(),
                e["owner"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(entries.contains(&(
        "source".into(),
        "pseidon.kafka.util.datasource".into(),
        "pseidon-kafka".into()
    )));
    assert!(
        entries
            .iter()
            .any(|(k, _, o)| k == "processor" && o == "copy-processor")
    );

    // Every message copied and its group done: /groups says so.
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let (code, body) = get(&s.base, &format!("/groups?status=done&topic={from}"));
        assert_eq!(code, 200, "{body}");
        let doc = json(&body);
        if doc["messages"] == 200 {
            break doc;
        }
        assert!(Instant::now() < deadline, "not every group done: {doc}");
        std::thread::sleep(Duration::from_millis(300));
    };
    for g in done["groups"].as_array().unwrap() {
        assert_eq!(g["status"], "done");
        assert_eq!(g["topic"], from.as_str());
        assert_eq!(g["consumer_group"], format!("{from}-copier").as_str());
    }
    assert_eq!(done["count"], done["groups"].as_array().unwrap().len());
    let (code, body) = get(&s.base, "/groups?status=run&topic=nothing-here");
    assert_eq!((code, json(&body)["count"].clone()), (200, Value::from(0)));
    let (code, body) = get(&s.base, "/groups?status=bogus");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("bogus"), "{body}");
    let (_, all_groups) = get(&s.base, &format!("/groups?topic={from}"));

    // The scrape: host metrics, valid for promtool, in both formats.
    let (code, scrape) = get(&s.base, "/metrics");
    assert_eq!(code, 200);
    for needle in [
        "pseidon_host_plugins_loaded{} 2",
        "pseidon_host_plugins_failed{} 0",
        "pseidon_host_processors_running{} 1",
        "# TYPE pseidon_host_registry_waits_total counter",
        "pseidon_host_registry_wait_seconds_bucket{le=\"+Inf\"}",
    ] {
        assert!(scrape.contains(needle), "no `{needle}` in\n{scrape}");
    }
    promtool_check_metrics(&scrape);
    // The copy processor looked its source and sink up with reg_get_wait, from inside
    // its plugin: the host's registry counted both.
    let waits: f64 = scrape
        .lines()
        .find_map(|l| l.strip_prefix("pseidon_host_registry_waits_total{} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no registry waits in\n{scrape}"));
    assert!(waits >= 2.0, "{waits}");
    let (code, om) = curl(
        "GET",
        &format!("{}/metrics", s.base),
        Some("application/openmetrics-text; version=1.0.0"),
    );
    assert_eq!(code, 200);
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(
        om.contains("# TYPE pseidon_host_registry_waits counter"),
        "{om}"
    );
    let cli = Command::new(pseidon_bin())
        .args(["--conf", s.conf.to_str().unwrap(), "metrics"])
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let cli_scrape = String::from_utf8_lossy(&cli.stdout).into_owned();
    assert!(
        cli_scrape.contains("pseidon_host_plugins_loaded{} 2"),
        "{cli_scrape}"
    );
    promtool_check_metrics(&cli_scrape);

    // Unknown paths and other methods.
    assert_eq!(get(&s.base, "/nope").0, 404);
    assert_eq!(get(&s.base, "/").0, 404);
    for method in ["POST", "PUT", "DELETE"] {
        assert_eq!(
            curl(method, &format!("{}/metrics", s.base), None).0,
            405,
            "{method}"
        );
        assert_eq!(
            curl(method, &format!("{}/health", s.base), None).0,
            405,
            "{method}"
        );
    }

    // No secret value in anything served.
    let mut served = vec![scrape, om, cli_scrape, body, all_groups.clone()];
    for path in [
        "/health",
        "/ready",
        "/registry",
        "/groups",
        "/nope",
        "/groups?topic=x%22",
    ] {
        served.push(get(&s.base, path).1);
    }
    for text in &served {
        assert!(
            !text.contains(SECRET_PASSWORD) && !text.contains(SECRET_TOKEN),
            "a secret was served: {text}"
        );
    }

    // /groups is the schema of `pseidon groups --format json`: the same document.
    run.signal("TERM");
    assert_eq!(
        run.finish(Duration::from_secs(60), Duration::from_millis(100)),
        Some(0),
        "{:#?}",
        run.lines
    );
    assert!(!run.lines.iter().any(|l| l.contains(SECRET_PASSWORD)));
    let cli = Command::new(pseidon_bin())
        .args([
            "--conf",
            s.conf.to_str().unwrap(),
            "groups",
            "--topic",
            &from,
            "--format",
            "json",
        ])
        .env_remove("PSEIDON_LOG")
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert_eq!(
        json(&String::from_utf8_lossy(&cli.stdout)),
        json(&all_groups)
    );

    // Nothing listens once it has stopped: `pseidon metrics` says so, exit 2.
    let cli = Command::new(pseidon_bin())
        .args(["--conf", s.conf.to_str().unwrap(), "metrics"])
        .output()
        .unwrap();
    assert_eq!(cli.status.code(), Some(2));
    let err = String::from_utf8_lossy(&cli.stderr);
    assert!(
        err.contains("127.0.0.1:19830") && err.contains("nothing answers"),
        "{err}"
    );
}

/// `pseidon --conf conf run [extra]` to its end (30 s at most): (exit code, stderr).
fn run_to_end(conf: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(pseidon_bin())
        .args(["--conf", conf.to_str().unwrap(), "run"])
        .args(extra)
        .env("PSEIDON_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            return (status.code(), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pseidon run {extra:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_bad_http_listen_or_a_taken_port_ends_run_first_with_exit_2_naming_it() {
    let s = setup(
        "pseidon-http-bad",
        19831,
        &bootstrap(),
        "bad-a",
        "bad-b",
        "",
    );
    let text = fs::read_to_string(&s.conf).unwrap();
    for bad in [
        "localhost:9644",
        "127.0.0.1",
        "not an address",
        "127.0.0.1:99999",
    ] {
        let conf = s.root.join("bad.toml");
        fs::write(
            &conf,
            text.replace(
                "http-listen = \"127.0.0.1:19831\"",
                &format!("http-listen = {bad:?}"),
            ),
        )
        .unwrap();
        let (code, err) = run_to_end(&conf, &[]);
        assert_eq!(code, Some(2), "{bad}: {err}");
        assert!(
            err.contains("`http-listen`") && err.contains(bad),
            "{bad}: {err}"
        );
        assert!(
            !err.contains("plugin loaded"),
            "{bad}: started anyway: {err}"
        );
    }
    let (code, err) = run_to_end(&s.conf, &["--http-listen", "example.org:80"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--http-listen") && err.contains("example.org:80"),
        "{err}"
    );

    // A port that is taken, by the conf and by the flag.
    let taken = std::net::TcpListener::bind("127.0.0.1:19832").unwrap();
    let conf = s.root.join("taken.toml");
    fs::write(&conf, text.replace("127.0.0.1:19831", "127.0.0.1:19832")).unwrap();
    let (code, err) = run_to_end(&conf, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("cannot listen on 127.0.0.1:19832") && err.contains("`http-listen`"),
        "{err}"
    );
    assert!(!err.contains("plugin loaded"), "started anyway: {err}");
    let (code, err) = run_to_end(&s.conf, &["--http-listen", "127.0.0.1:19832"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--http-listen 127.0.0.1:19832"), "{err}");
    drop(taken);
}

#[test]
fn the_alert_rules_pass_promtool() {
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(repo_root().join("conf/alerts.yml"))
        .output()
        .expect("run promtool");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("SUCCESS: 2 rules found"), "{text}");
    let rules = fs::read_to_string(repo_root().join("conf/alerts.yml")).unwrap();
    assert!(rules.contains("pseidon_kafka_oldest_unfinished_group_age_seconds > 600"));
    assert!(rules.contains("pseidon_kafka_retention_risk_offsets"));
}

/// `/ready` follows the Kafka plugin's "brokers answer" checks: 503 naming the check
/// while the broker is down, 200 once it is back; `/health` stays 200 throughout.
#[test]
fn ready_follows_the_broker_and_health_stays_200() {
    let broker = OwnBroker::start(19821, "");
    let from = unique("http-ready-from");
    let to = unique("http-ready-to");
    broker.create_topic(&from, 1);
    broker.create_topic(&to, 1);
    let s = setup(
        "pseidon-http-ready",
        19833,
        &broker.bootstrap,
        &from,
        &to,
        "socket.timeout.ms = 3000\nreconnect.backoff.max.ms = 1000\n",
    );
    let mut run = RunChild::spawn(&s.conf, "info");
    run.wait_for("HTTP endpoint serving");
    wait_status(&s.base, "/ready", 200, Duration::from_secs(30));
    broker.kill();
    let body = wait_status(&s.base, "/ready", 503, Duration::from_secs(60));
    let doc = json(&body);
    assert_eq!(doc["status"], "not ready");
    let not_ready = doc["not_ready"].as_array().unwrap();
    assert!(
        not_ready.iter().any(|c| c["what"]
            .as_str()
            .is_some_and(|w| w.starts_with("plugin pseidon-kafka:"))
            && c["detail"]
                .as_str()
                .is_some_and(|d| d.contains(&broker.bootstrap))),
        "the Kafka plugin's check names the brokers: {doc}"
    );
    assert_eq!(get(&s.base, "/health").0, 200);
    broker.start_keep_data();
    wait_status(&s.base, "/ready", 200, Duration::from_secs(90));
    assert_eq!(get(&s.base, "/health").0, 200);
    run.signal("TERM");
    assert_eq!(
        run.finish(Duration::from_secs(60), Duration::from_millis(100)),
        Some(0)
    );
}

/// The test plugin `hello` under `pseidon run`: its families come out labelled
/// `plugin="hello"` (counters with `_total`, label values escaped, promtool-clean);
/// `/ready` follows its readiness check, past the 1 s cache; `/health` turns 503
/// while the processors stop.
#[test]
fn plugin_metrics_are_labelled_and_ready_follows_the_plugin_checks() {
    let root = temp_dir("pseidon-http-hello");
    let plugins = root.join("plugins");
    fs::create_dir(&plugins).unwrap();
    copy_plugins(&plugins, &["pseidon_test_plugin_hello"]);
    let ready_file = root.join("ready");
    let conf = root.join("pseidon.toml");
    fs::write(
        &conf,
        format!(
            "plugin-dirs = [{plugins:?}]\nhttp-listen = \"127.0.0.1:19834\"\n\n\
             [hello]\nready-file = {ready_file:?}\nstop-delay-ms = 3000\nsecret = {SECRET_TOKEN:?}\n"
        ),
    )
    .unwrap();
    let base = "http://127.0.0.1:19834";
    let mut run = RunChild::spawn(&conf, "info");
    run.wait_for("HTTP endpoint serving");

    let body = wait_status(base, "/ready", 503, Duration::from_secs(20));
    let doc = json(&body);
    assert_eq!(doc["status"], "not ready");
    assert_eq!(
        doc["not_ready"][0]["what"], "plugin hello: ready-file",
        "{doc}"
    );
    assert!(
        doc["not_ready"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("is missing"),
        "{doc}"
    );
    assert_eq!(get(base, "/health").0, 200);
    fs::write(&ready_file, "").unwrap();
    let started = Instant::now();
    let doc = json(&wait_status(base, "/ready", 200, Duration::from_secs(10)));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(doc["checks"][0]["ready"], true, "{doc}");

    let (code, scrape) = get(base, "/metrics");
    assert_eq!(code, 200);
    for needle in [
        "# TYPE test_hello_written_total counter",
        "test_hello_written_total{plugin=\"hello\",sink=\"test.hello.sink\"} 0",
        "test_hello_odd_label{plugin=\"hello\",value=\"a \\\"quoted\\\" \\\\ back\\nslash\"} 1",
        "test_hello_write_seconds_bucket{le=\"0.1\",plugin=\"hello\",sink=\"test.hello.sink\"} 1",
        "test_hello_write_seconds_bucket{le=\"1.0\",plugin=\"hello\",sink=\"test.hello.sink\"} 3",
        "test_hello_write_seconds_bucket{le=\"+Inf\",plugin=\"hello\",sink=\"test.hello.sink\"} 4",
        "test_hello_write_seconds_count{plugin=\"hello\",sink=\"test.hello.sink\"} 4",
        "pseidon_host_processors_running{} 1",
    ] {
        assert!(scrape.contains(needle), "no `{needle}` in\n{scrape}");
    }
    assert!(!scrape.contains(SECRET_TOKEN));
    promtool_check_metrics(&scrape);

    // Stopping: the processor's stop takes 3 s, /health says 503 meanwhile.
    run.signal("TERM");
    let body = wait_status(base, "/health", 503, Duration::from_secs(3));
    assert_eq!(json(&body)["status"], "stopping");
    assert_eq!(get(base, "/ready").0, 503);
    assert_eq!(
        run.finish(Duration::from_secs(30), Duration::from_millis(100)),
        Some(0)
    );
    let _ = fs::remove_dir_all(&root);
}

/// `--log-format json` prints one JSON object per line; `--help` documents
/// `PSEIDON_LOG`, `--log-format`, and `run --help` the endpoint and `--http-listen`.
#[test]
fn log_format_json_and_the_help_texts() {
    let root = temp_dir("pseidon-http-log");
    let plugins = root.join("plugins");
    fs::create_dir(&plugins).unwrap();
    copy_plugins(&plugins, &["pseidon_test_plugin_hello"]);
    let conf = root.join("pseidon.toml");
    fs::write(
        &conf,
        format!("plugin-dirs = [{plugins:?}]\n[hello]\ngreeting = \"hi\"\n"),
    )
    .unwrap();
    let out = Command::new(pseidon_bin())
        .args([
            "--conf",
            conf.to_str().unwrap(),
            "--log-format",
            "json",
            "plugins",
        ])
        .env("PSEIDON_LOG", "info")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<Value> = err.lines().map(json).collect();
    assert!(
        lines.iter().any(|l| l["level"] == "INFO"
            && l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("hello initialised: greeting=hi"))
            && l["fields"]["plugin"] == "hello"),
        "{err}"
    );
    let help = Command::new(pseidon_bin()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("PSEIDON_LOG") && help.contains("--log-format"),
        "{help}"
    );
    let help = Command::new(pseidon_bin())
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for needle in [
        "--http-listen",
        "/metrics",
        "/health",
        "/ready",
        "/registry",
        "/groups",
    ] {
        assert!(
            help.contains(needle),
            "`{needle}` not in run --help:\n{help}"
        );
    }
    let _ = fs::remove_dir_all(&root);
}
