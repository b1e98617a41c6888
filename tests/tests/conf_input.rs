//! Bad and tricky conf input (issue 12, items 10 and 13), through the `pseidon`
//! binary with the real Kafka plugin and the real broker: wrongly typed values and a
//! bare-number bootstrap host are clear errors before anything connects, a relative
//! `status-db` lives next to the conf, likely typos of tables and prefixes are
//! reported (fatal under `--strict`), and secrets stay out of every output, the
//! consumer's librdkafka log lines included. Needs `cargo build --workspace` first.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use pseidon_tests::{
    bootstrap, create_topic, kcat_values, plugin_so, pseidon_bin, temp_dir, unique,
};

/// A conf file in a fresh dir; removed on drop.
struct ConfDir {
    root: PathBuf,
    conf: PathBuf,
}

impl Drop for ConfDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

impl ConfDir {
    /// A conf loading the Kafka plugin, then `body`.
    fn new(body: &str) -> ConfDir {
        let root = temp_dir("conf-input");
        let conf = root.join("pseidon.toml");
        fs::write(
            &conf,
            format!(
                "plugin-dirs = [{:?}]\n{body}",
                plugin_so("pseidon_kafka").display().to_string()
            ),
        )
        .unwrap();
        ConfDir { root, conf }
    }

    /// Runs `pseidon --conf CONF args` (error cases pass `--strict`: a plugin that fails
    /// init then ends the command at once, instead of after the 5 s wait for its names) in `cwd` with `stdin` as input.
    fn run_in(&self, cwd: &Path, args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(pseidon_bin());
        cmd.arg("--conf")
            .arg(&self.conf)
            .args(args)
            .current_dir(cwd)
            .env_remove("PSEIDON_CONF")
            .env_remove("RUST_LOG")
            .env_remove("PSEIDON_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin).unwrap();
        drop(input);
        child.wait_with_output().unwrap()
    }

    fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        self.run_in(&self.root, args, stdin, &[])
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Lines librdkafka logged (forwarded with `target="librdkafka"`).
fn librdkafka_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("target=\"librdkafka\""))
        .collect()
}

/// `kafka.bootstrap.servers = 9092` (an integer) was taken as the host name "9092",
/// resolved as 0.0.35.196, and connected off the machine. Now: exit 2 naming the key
/// and the type, no librdkafka line (no client), nothing written.
#[test]
fn an_integer_bootstrap_servers_is_a_clear_error_and_nothing_connects() {
    let topic = unique("conf-int-bootstrap");
    create_topic(&topic, 1);
    let c = ConfDir::new("[kafka]\nbootstrap.servers = 9092\n");
    let out = c.run(&["--strict", "send", "--topic", &topic], b"a\nb\n");
    let stderr = text(&out.stderr);
    eprintln!("CASE integer bootstrap.servers: {stderr}");
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("kafka.bootstrap.servers")
            && stderr.contains("must be a string (in quotes), e.g. \"127.0.0.1:9092\"")
            && stderr.contains("not an integer"),
        "{stderr}"
    );
    assert!(librdkafka_lines(&stderr).is_empty(), "{stderr}");
    assert!(kcat_values(&topic).is_empty(), "nothing may be written");
}

/// A bootstrap host that is a bare number, as a string (`"9092"`, `"1234:9092"`), is
/// refused before any client exists, naming the key and the broker.
#[test]
fn a_bare_number_bootstrap_host_is_refused_before_anything_connects() {
    let topic = unique("conf-num-host");
    create_topic(&topic, 1);
    for value in ["9092", "1234:9092", &format!("{},9092", bootstrap())] {
        let c = ConfDir::new(&format!("[kafka]\nbootstrap.servers = {value:?}\n"));
        let out = c.run(&["--strict", "send", "--topic", &topic], b"x\n");
        let stderr = text(&out.stderr);
        eprintln!("CASE bootstrap {value}: {stderr}");
        assert_eq!(out.status.code(), Some(2), "{value}: {stderr}");
        assert!(
            stderr.contains("kafka.bootstrap.servers") && stderr.contains("a bare number"),
            "{value}: {stderr}"
        );
        assert!(librdkafka_lines(&stderr).is_empty(), "{value}: {stderr}");
    }
    assert!(kcat_values(&topic).is_empty(), "nothing may be written");
}

/// Other wrongly typed values: a boolean for a string, a float for an integer, an
/// array, a number for the status db path: each exit 2 naming the key.
#[test]
fn wrongly_typed_values_are_clear_errors_naming_the_key() {
    let topic = unique("conf-types");
    for (body, key, needle) in [
        ("group.id = true", "kafka.group.id", "must be a string"),
        (
            "retries = 2.5",
            "kafka.retries",
            "must be a whole number, not a float",
        ),
        (
            "enable.idempotence = 1",
            "kafka.enable.idempotence",
            "must be a boolean",
        ),
        (
            "client.id = [\"a\", \"b\"]",
            "kafka.client.id",
            "an array is not allowed",
        ),
    ] {
        let c = ConfDir::new(&format!(
            "[kafka]\nbootstrap.servers = {:?}\n{body}\n",
            bootstrap()
        ));
        let out = c.run(&["--strict", "send", "--topic", &topic], b"x\n");
        let stderr = text(&out.stderr);
        eprintln!("CASE {body}: {stderr}");
        assert_eq!(out.status.code(), Some(2), "{body}: {stderr}");
        assert!(
            stderr.contains(key) && stderr.contains(needle),
            "{body}: {stderr}"
        );
    }
    let c = ConfDir::new(&format!(
        "[kafka]\nbootstrap.servers = {:?}\n[pseidon-kafka]\nstatus-db = 5\n",
        bootstrap()
    ));
    let out = c.run(&["--strict", "send", "--topic", &topic], b"x\n");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("pseidon-kafka.status-db") && stderr.contains("must be a path string"),
        "{stderr}"
    );
}

/// A relative `status-db` is relative to the conf file's directory (it was relative
/// to the working directory): run from elsewhere, the groups land next to the conf
/// and a second run from yet another directory sees them.
#[test]
fn a_relative_status_db_lives_next_to_the_conf() {
    let topic = unique("conf-rel-db");
    create_topic(&topic, 1);
    let group = unique("g");
    let c = ConfDir::new(&format!(
        "[kafka]\nbootstrap.servers = {:?}\ngroup.id = {group:?}\n[pseidon-kafka]\nstatus-db = \"state/status.db\"\n",
        bootstrap()
    ));
    fs::create_dir(c.root.join("state")).unwrap();
    let lines: String = (0..10).map(|i| format!("m{i}\n")).collect();
    let out = c.run(&["send", "--topic", &topic], lines.as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(kcat_values(&topic).len(), 10);

    let elsewhere = temp_dir("conf-rel-cwd");
    let out = c.run_in(
        &elsewhere,
        &[
            "consume",
            "--topic",
            &topic,
            "--mark-done",
            "--idle-exit-ms",
            "3000",
        ],
        b"",
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).lines().count(),
        10,
        "{}",
        text(&out.stdout)
    );
    assert!(
        c.root.join("state/status.db").is_file(),
        "not next to the conf"
    );
    assert!(
        !elsewhere.join("state").exists(),
        "created under the working directory"
    );

    let third = temp_dir("conf-rel-cwd2");
    let out = c.run_in(&third, &["groups"], b"", &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("{topic}:0:0:9")) && stdout.contains("done"),
        "{stdout}"
    );
    let _ = fs::remove_dir_all(elsewhere);
    let _ = fs::remove_dir_all(third);
}

/// `[pseidon_kafka]`, `[kafak]` and `"kafak.acks"` reached no setting, silently. Now a
/// warning names the key and the likely intended name; `--strict` (or `strict = true`)
/// makes it an error, exit 2, before any plugin loads.
#[test]
fn typos_of_known_tables_and_prefixes_are_reported_and_fatal_under_strict() {
    for (typo, key, intended) in [
        (
            "[pseidon_kafka]\nstatus-db = \"x.db\"\n",
            "pseidon_kafka.status-db",
            "pseidon-kafka",
        ),
        ("[kafak]\nacks = \"all\"\n", "kafak.acks", "kafka"),
        ("\"kafak.acks\" = \"all\"\n", "kafak.acks", "kafka"),
    ] {
        let c = ConfDir::new(&format!(
            "{typo}[kafka]\nbootstrap.servers = {:?}\n",
            bootstrap()
        ));
        let out = c.run(&["plugins"], b"");
        let stderr = text(&out.stderr);
        eprintln!("CASE typo {key}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{key}: {stderr}");
        let warning = stderr
            .lines()
            .find(|l| l.contains("WARN") && l.contains("looks like a typo"))
            .unwrap_or_else(|| panic!("{key}: no typo warning in {stderr}"));
        assert!(
            warning.contains(&format!("`{key}`"))
                && warning.contains(&format!("did you mean `{intended}`"))
                && warning.contains(c.conf.to_str().unwrap()),
            "{warning}"
        );
        assert!(
            text(&out.stdout).contains("loaded pseidon-kafka"),
            "{}",
            text(&out.stdout)
        );

        let out = c.run(&["--strict", "plugins"], b"");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}: {stderr}");
        let last = stderr.trim().lines().last().unwrap_or_default();
        assert!(
            last.starts_with("pseidon: error:")
                && last.contains(&format!("`{key}`"))
                && last.contains("strict"),
            "{last}"
        );
        assert!(
            !text(&out.stdout).contains("loaded"),
            "{}",
            text(&out.stdout)
        );
    }
    // The right names give no warning.
    let c = ConfDir::new(&format!(
        "[kafka]\nbootstrap.servers = {:?}\n[pseidon-kafka]\nstatus-db = \"x.db\"\n",
        bootstrap()
    ));
    let out = c.run(&["--strict", "plugins"], b"");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("typo"), "{}", text(&out.stderr));
}

/// `pseidon config` printed `sasl.oauthbearer.assertion.private.key.pem` and the
/// passphrase in clear; now every secret of librdkafka's CONFIGURATION.md is
/// `<redacted>`, and public values (a CA PEM, a user name) are still shown.
#[test]
fn config_redacts_every_librdkafka_secret() {
    let pem = "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n-----END PRIVATE KEY-----";
    let c = ConfDir::new(&format!(
        "[kafka]\n\
         sasl.oauthbearer.assertion.private.key.pem = \"{pem}\"\n\
         sasl.oauthbearer.assertion.private.key.passphrase = \"hunter2-phrase\"\n\
         sasl.oauthbearer.client.credentials.client.secret = \"hunter2-cc\"\n\
         ssl.keystore.password = \"hunter2-ks\"\n\
         ssl.ca.pem = \"PUBLIC-CA\"\n\
         sasl.username = \"alice\"\n"
    ));
    let out = c.run(&["config"], b"");
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !stdout.contains("hunter2") && !stdout.contains("MIIE") && !stdout.contains("PRIVATE KEY"),
        "{stdout}"
    );
    for want in [
        "kafka.sasl.oauthbearer.assertion.private.key.pem = <redacted>",
        "kafka.sasl.oauthbearer.assertion.private.key.passphrase = <redacted>",
        "kafka.sasl.oauthbearer.client.credentials.client.secret = <redacted>",
        "kafka.ssl.keystore.password = <redacted>",
        "kafka.ssl.ca.pem = PUBLIC-CA",
        "kafka.sasl.username = alice",
    ] {
        assert!(
            stdout.lines().any(|l| l == want),
            "`{want}` not in:\n{stdout}"
        );
    }
}

/// The consumer's librdkafka log lines bypassed the scrubber. With a secret value that
/// librdkafka's consumer-group lines quote (the password set to the group id), every
/// such line shows `<redacted>` and none the secret.
#[test]
fn the_consumers_librdkafka_log_lines_are_scrubbed() {
    let topic = unique("conf-scrub");
    create_topic(&topic, 1);
    let secret = unique("S3cret-grp");
    let c = ConfDir::new(&format!(
        "[kafka]\nbootstrap.servers = {:?}\ngroup.id = {secret:?}\nsasl.password = {secret:?}\ndebug = \"cgrp\"\n\
         [pseidon-kafka]\nstatus-db = \"status.db\"\n",
        bootstrap()
    ));
    let out = c.run(&["send", "--topic", &topic], b"one\ntwo\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = c.run_in(
        &c.root,
        &["consume", "--topic", &topic, "--idle-exit-ms", "2000"],
        b"",
        &[("PSEIDON_LOG", "debug")],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        text(&out.stdout).lines().count(),
        2,
        "{}",
        text(&out.stdout)
    );
    let lines = librdkafka_lines(&stderr);
    let group_lines: Vec<&&str> = lines.iter().filter(|l| l.contains("Group \"")).collect();
    assert!(
        group_lines.len() > 3,
        "no consumer-group debug lines from librdkafka: {stderr}"
    );
    assert!(
        group_lines
            .iter()
            .all(|l| l.contains("Group \"<redacted>\"")),
        "{group_lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains(&secret)),
        "a librdkafka line shows the secret: {:?}",
        lines.iter().find(|l| l.contains(&secret))
    );
    eprintln!(
        "CASE scrubbed consumer lines: {} librdkafka lines, {} consumer-group lines, all redacted",
        lines.len(),
        group_lines.len()
    );
}
