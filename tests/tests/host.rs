//! The host against real plugin `.so` files built by cargo (tests/plugins/*), both
//! through the library API (in this process) and through the `pseidon` binary.
//! Needs `cargo build --workspace` first (scripts/test does it).

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use pseidon_host::{Conf, Host, HostError, LoadError, ShutdownError};
use pseidon_plugin_api::{EntryKind, Error, Registration};
use pseidon_tests::{RunChild, copy_plugins, pseidon_bin, temp_dir};

const HELLO: &str = "pseidon_test_plugin_hello";
const LATE: &str = "pseidon_test_plugin_late";
const DUP: &str = "pseidon_test_plugin_dup";
const PANIC_INIT: &str = "pseidon_test_plugin_panic_init";
const PANIC_CALL: &str = "pseidon_test_plugin_panic_call";
const INIT_ERROR: &str = "pseidon_test_plugin_init_error";
const INCOMPATIBLE: &str = "pseidon_test_plugin_incompatible";
const INCOMPATIBLE_OLD: &str = "pseidon_test_plugin_incompatible_old";
const SLOW_SHUTDOWN: &str = "pseidon_test_plugin_slow_shutdown";

/// A dir with copies of `plugins` (loaded in that order) and a conf naming it.
struct Setup {
    root: PathBuf,
    plugins: PathBuf,
    conf: PathBuf,
}

impl Drop for Setup {
    /// Removes the copies (mapped libraries stay usable after their files are gone).
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

impl Setup {
    fn new(plugins: &[&str], extra_conf: &str) -> Setup {
        let root = temp_dir("pseidon-host");
        let dir = root.join("plugins");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        copy_plugins(&dir, plugins);
        let conf = root.join("pseidon.toml");
        fs::write(
            &conf,
            format!("plugin-dirs = [\"{}\"]\n{extra_conf}", dir.display()),
        )
        .unwrap();
        Setup {
            root,
            plugins: dir,
            conf,
        }
    }

    fn write_conf(&self, text: &str) {
        fs::write(&self.conf, text).unwrap();
    }

    fn host(&self) -> Host {
        Host::load(Conf::load(&self.conf).unwrap()).unwrap()
    }

    fn pseidon(&self, args: &[&str]) -> Output {
        let mut all = vec!["--conf", self.conf.to_str().unwrap()];
        all.extend_from_slice(args);
        run_pseidon(&all, &[])
    }
}

fn run_pseidon(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(pseidon_bin());
    cmd.args(args)
        .env_remove("PSEIDON_CONF")
        .env_remove("RUST_LOG")
        .env_remove("PSEIDON_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn failure_messages(host: &Host) -> Vec<String> {
    host.failures().iter().map(|f| f.to_string()).collect()
}

/// The registration `name` of `host` (panics if there is none).
fn registration(host: &Host, name: &str) -> Registration {
    host.registry()
        .reg_list()
        .into_iter()
        .find(|r| r.name == name)
        .unwrap()
}

fn names(host: &Host) -> Vec<String> {
    host.plugins().into_iter().map(|p| p.name).collect()
}

#[test]
fn loads_two_plugins_from_a_dir_in_order_with_their_registrations() {
    let s = Setup::new(&[HELLO, LATE], "");
    let mut host = s.host();
    assert!(host.failures().is_empty(), "{:?}", failure_messages(&host));
    let plugins = host.plugins();
    assert_eq!(names(&host), ["hello", "late"]);
    assert_eq!(plugins[0].version, "0.1.0");
    assert_eq!(plugins[0].path, s.plugins.join(format!("10-{HELLO}.so")));
    let regs: Vec<_> = plugins[0]
        .registrations
        .iter()
        .map(|r| (r.name.as_str(), r.kind))
        .collect();
    assert_eq!(
        regs,
        [
            ("test.hello.sink", EntryKind::Sink),
            ("test.hello.source", EntryKind::Source),
            ("test.hello.processor", EntryKind::Processor)
        ]
    );
    assert!(plugins[0].registrations.iter().all(|r| r.owner == "hello"));

    // The registered sink is usable through the registry.
    let sink = host
        .registry()
        .reg_get_wait_sink("test.hello.sink", Duration::from_secs(1))
        .unwrap();
    sink.write("t", b"one").unwrap();
    sink.write("t", b"two").unwrap();
    assert_eq!(sink.flush(Duration::from_secs(1)).unwrap().delivered, 2);
    assert!(host.shutdown().is_empty());
}

#[test]
fn late_registration_from_a_plugin_thread_wakes_reg_get_wait() {
    let s = Setup::new(&[LATE], "[late]\ndelay-ms = 300\n");
    let start = Instant::now();
    let host = s.host();
    assert!(
        host.registry().reg_get("test.late.sink").is_none(),
        "registered too early"
    );
    let sink = host
        .registry()
        .reg_get_wait_sink("test.late.sink", Duration::from_secs(10));
    let waited = start.elapsed();
    assert!(sink.is_ok(), "{:?}", sink.err());
    assert!(
        waited >= Duration::from_millis(250),
        "woke before the registration: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(3),
        "woke far too late for a 300 ms registration: {waited:?}"
    );
    assert_eq!(registration(&host, "test.late.sink").owner, "late");
}

#[test]
fn reg_get_wait_timeout_names_the_name_and_the_time_waited() {
    let s = Setup::new(&[HELLO], "");
    let host = s.host();
    let start = Instant::now();
    let err = host
        .registry()
        .reg_get_wait("test.never.registered", Duration::from_millis(200))
        .err()
        .unwrap();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    match &err {
        Error::NotRegistered { name, waited } => {
            assert_eq!(name, "test.never.registered");
            assert!(*waited >= Duration::from_millis(200), "{waited:?}");
        }
        other => panic!("expected NotRegistered, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("test.never.registered") && msg.contains(" ms"),
        "{msg}"
    );
}

#[test]
fn duplicate_name_fails_the_second_plugin_naming_both_owners_and_the_first_stays() {
    let s = Setup::new(&[HELLO, DUP], "");
    let host = s.host();
    assert_eq!(names(&host), ["hello"]);
    let failures = failure_messages(&host);
    assert_eq!(failures.len(), 1, "{failures:?}");
    let msg = &failures[0];
    assert!(msg.contains(&format!("20-{DUP}.so")), "{msg}");
    assert!(
        msg.contains("`test.hello.sink` is already registered by hello; dup tried"),
        "{msg}"
    );
    assert_eq!(registration(&host, "test.hello.sink").owner, "hello");
}

#[test]
fn a_non_plugin_so_and_random_bytes_are_reported_and_the_others_load() {
    let s = Setup::new(&[HELLO], "");
    let libz = [
        "/lib/x86_64-linux-gnu/libz.so.1",
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("libz.so.1 (zlib1g) is installed");
    fs::copy(libz, s.plugins.join("05-libz.so")).unwrap();
    fs::write(
        s.plugins.join("06-random.so"),
        b"this is not an ELF file at all, just bytes\n",
    )
    .unwrap();
    for f in ["05-libz.so", "06-random.so"] {
        fs::set_permissions(s.plugins.join(f), fs::Permissions::from_mode(0o644)).unwrap();
    }
    let host = s.host();
    assert_eq!(names(&host), ["hello"]);
    let failures = failure_messages(&host);
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(
        failures[0].contains("05-libz.so") && failures[0].contains("not a pseidon plugin"),
        "{}",
        failures[0]
    );
    assert!(
        failures[1].contains("06-random.so")
            && failures[1].contains("cannot be loaded as a shared library"),
        "{}",
        failures[1]
    );
    assert!(matches!(
        host.failures()[0].error,
        LoadError::NotAPlugin { .. }
    ));
    for f in &failures {
        assert!(
            !f.contains('\n') && f.len() < 400,
            "not one short paragraph: {f}"
        );
    }
}

#[test]
fn a_truncated_plugin_file_is_reported_without_crashing_the_host() {
    let s = Setup::new(&[HELLO], "");
    let whole = fs::read(s.plugins.join(format!("10-{HELLO}.so"))).unwrap();
    fs::write(s.plugins.join("05-half.so"), &whole[..whole.len() / 2]).unwrap();
    fs::write(s.plugins.join("06-header-only.so"), &whole[..40]).unwrap();
    let host = s.host();
    assert_eq!(names(&host), ["hello"]);
    let failures = failure_messages(&host);
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(
        failures[0].contains("05-half.so") && failures[0].contains("truncated"),
        "{}",
        failures[0]
    );
    assert!(
        failures[1].contains("06-header-only.so") && failures[1].contains("truncated"),
        "{}",
        failures[1]
    );
    assert!(matches!(
        host.failures()[0].error,
        LoadError::Truncated { .. }
    ));
}

#[test]
fn a_missing_plugin_dir_is_reported_and_the_other_dirs_load() {
    let s = Setup::new(&[HELLO], "");
    let missing = s.root.join("no-such-dir");
    s.write_conf(&format!(
        "plugin-dirs = [\"{}\", \"{}\"]\n",
        missing.display(),
        s.plugins.display()
    ));
    let host = s.host();
    assert_eq!(names(&host), ["hello"]);
    let failures = failure_messages(&host);
    assert_eq!(
        failures,
        [format!(
            "{}: does not exist (named in `plugin-dirs` of the conf)",
            missing.display()
        )]
    );
}

#[test]
fn single_plugin_files_and_relative_paths_are_accepted() {
    let s = Setup::new(&[HELLO, LATE], "");
    s.write_conf(&format!(
        "plugin-dirs = [\"plugins/20-{LATE}.so\", \"plugins/10-{HELLO}.so\"]\n"
    ));
    let host = s.host();
    assert!(host.failures().is_empty(), "{:?}", failure_messages(&host));
    assert_eq!(names(&host), ["late", "hello"]);
}

#[test]
fn an_incompatible_interface_version_gets_a_short_message_naming_both_versions() {
    let s = Setup::new(&[INCOMPATIBLE, HELLO], "");
    let host = s.host();
    assert_eq!(names(&host), ["hello"]);
    let f = &host.failures()[0];
    let msg = f.to_string();
    assert!(matches!(f.error, LoadError::Incompatible { .. }), "{msg}");
    assert!(msg.contains(&format!("10-{INCOMPATIBLE}.so")), "{msg}");
    assert!(
        msg.contains("pseidon-plugin-api 0.9.0")
            && msg.contains(&format!(
                "this host has {}",
                pseidon_plugin_api::INTERFACE_VERSION
            )),
        "{msg}"
    );
    assert!(msg.contains("first mismatch:"), "{msg}");
    assert!(
        !msg.contains('\n') && msg.len() < 500,
        "not short: {} chars: {msg}",
        msg.len()
    );
}

#[test]
fn a_plugin_built_against_an_older_interface_version_is_refused_by_version() {
    let s = Setup::new(&[INCOMPATIBLE_OLD, HELLO], "");
    let host = s.host();
    assert_eq!(names(&host), ["hello"]);
    let f = &host.failures()[0];
    let msg = f.to_string();
    assert!(matches!(f.error, LoadError::Incompatible { .. }), "{msg}");
    assert!(
        msg.contains(&format!("10-{INCOMPATIBLE_OLD}.so"))
            && msg.contains("pseidon-plugin-api 0.0.5")
            && msg.contains(&format!(
                "this host has {}",
                pseidon_plugin_api::INTERFACE_VERSION
            )),
        "{msg}"
    );
    assert!(!msg.contains('\n') && msg.len() < 500, "not short: {msg}");
}

#[test]
fn a_panic_in_init_is_reported_and_the_host_lives_on() {
    let s = Setup::new(&[PANIC_INIT, HELLO], "");
    let host = s.host();
    assert_eq!(names(&host), ["hello"]);
    let f = &host.failures()[0];
    assert!(matches!(f.error, LoadError::InitPanicked { .. }));
    let msg = f.to_string();
    assert!(
        msg.contains(&format!("10-{PANIC_INIT}.so"))
            && msg.contains(
                "plugin `panic-init` panicked in init: panic-init plugin panics on purpose"
            ),
        "{msg}"
    );
    // The binary survives it too, and lists it.
    let out = s.pseidon(&["plugins"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("panicked in init"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_panic_in_a_call_comes_back_as_an_error_and_the_host_lives_on() {
    let s = Setup::new(&[PANIC_CALL], "");
    let host = s.host();
    let sink = host
        .registry()
        .reg_get_wait_sink("test.panic.sink", Duration::from_secs(1))
        .unwrap();
    for _ in 0..2 {
        match sink.write("t", b"x") {
            Err(Error::Panicked {
                plugin,
                operation,
                message,
            }) => {
                assert_eq!(
                    (plugin.as_str(), operation.as_str()),
                    ("panic-call", "write")
                );
                assert!(message.contains("panics on purpose"), "{message}");
            }
            other => panic!("expected a caught panic, got {other:?}"),
        }
    }
    // Still alive and the plugin's other methods still work.
    assert_eq!(sink.flush(Duration::from_secs(1)).unwrap().delivered, 0);
}

#[test]
fn init_error_is_reported_with_the_plugins_reason() {
    let s = Setup::new(&[INIT_ERROR, HELLO], "");
    let host = s.host();
    assert_eq!(names(&host), ["hello"]);
    let msg = failure_messages(&host).remove(0);
    assert!(
        msg.contains(&format!("10-{INIT_ERROR}.so"))
            && msg.contains("plugin `init-error` failed in init: conf key `init-error.required`"),
        "{msg}"
    );
}

#[test]
fn malformed_toml_names_the_file_line_and_column() {
    let s = Setup::new(&[HELLO], "");
    s.write_conf("strict = false\n[kafka]\nacks = \"all\n");
    let err = Conf::load(&s.conf).unwrap_err().to_string();
    assert!(
        err.contains(s.conf.to_str().unwrap()) && err.contains("line 3, column"),
        "{err}"
    );
    let out = s.pseidon(&["plugins"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("malformed TOML") && stderr.contains("line 3, column"),
        "{stderr}"
    );
}

#[test]
fn wrong_type_for_a_host_key_names_key_and_file() {
    let s = Setup::new(&[HELLO], "");
    s.write_conf("plugin-dirs = \"/opt/pseidon-kafka/plugins\"\n");
    let out = s.pseidon(&["plugins"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("`plugin-dirs`") && stderr.contains(s.conf.to_str().unwrap()),
        "{stderr}"
    );
}

#[test]
fn missing_conf_names_the_path_and_what_chose_it() {
    let path = std::env::temp_dir()
        .join(pseidon_tests::unique("no-conf"))
        .join("pseidon.toml");
    let p = path.to_str().unwrap();
    let out = run_pseidon(&["--conf", p, "plugins"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(p) && stderr.contains("--conf flag"),
        "{stderr}"
    );

    let out = run_pseidon(&["plugins"], &[("PSEIDON_CONF", p)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("PSEIDON_CONF environment variable"),
        "{}",
        text(&out.stderr)
    );

    // The flag wins over the environment.
    let s = Setup::new(&[HELLO], "");
    let out = run_pseidon(
        &["--conf", s.conf.to_str().unwrap(), "plugins"],
        &[("PSEIDON_CONF", p)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn strict_flag_and_strict_key_make_any_failure_fatal() {
    let s = Setup::new(&[HELLO, INIT_ERROR], "");
    let out = s.pseidon(&["plugins"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let out = run_pseidon(
        &["--strict", "--conf", s.conf.to_str().unwrap(), "plugins"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let last = text(&out.stderr)
        .trim()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    assert!(
        last.starts_with("pseidon: error:") && last.contains("strict mode"),
        "{last}"
    );
    assert!(last.contains(&format!("20-{INIT_ERROR}.so")), "{last}");
    assert!(out.stdout.is_empty());

    let mut conf = Conf::load(&s.conf).unwrap();
    conf.strict = true;
    match Host::load(conf) {
        Err(HostError::Strict { failure }) => {
            assert!(matches!(failure.error, LoadError::Init { .. }))
        }
        Err(other) => panic!("expected strict failure, got {other}"),
        Ok(_) => panic!("strict mode loaded despite a failure"),
    }

    s.write_conf(&format!(
        "strict = true\nplugin-dirs = [\"{}\"]\n",
        s.plugins.display()
    ));
    let out = s.pseidon(&["plugins"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn plugin_dirs_and_files_writable_by_others_are_refused_unless_allowed() {
    let s = Setup::new(&[HELLO], "");
    fs::set_permissions(&s.plugins, fs::Permissions::from_mode(0o777)).unwrap();
    let host = s.host();
    assert!(host.plugins().is_empty());
    let msg = failure_messages(&host).remove(0);
    assert!(
        msg.contains(&format!("chmod go-w {}", s.plugins.display())),
        "{msg}"
    );
    assert!(
        msg.contains("writable by group and others") && msg.contains("allow-writable-plugins"),
        "{msg}"
    );
    drop(host);

    // A group-writable file in a safe dir is refused alone.
    let s = Setup::new(&[HELLO, LATE], "");
    let writable = s.plugins.join(format!("20-{LATE}.so"));
    fs::set_permissions(&writable, fs::Permissions::from_mode(0o664)).unwrap();
    let host = s.host();
    assert_eq!(names(&host), ["hello"]);
    let msg = failure_messages(&host).remove(0);
    assert!(
        msg.contains(&format!("chmod go-w {}", writable.display())) && msg.contains("by group "),
        "{msg}"
    );
    drop(host);

    // allow-writable-plugins = true loads them.
    let s = Setup::new(&[HELLO], "allow-writable-plugins = true\n");
    fs::set_permissions(&s.plugins, fs::Permissions::from_mode(0o777)).unwrap();
    let host = s.host();
    assert!(host.failures().is_empty(), "{:?}", failure_messages(&host));
    assert_eq!(names(&host), ["hello"]);
}

#[test]
fn pseidon_plugins_lists_loaded_plugins_their_names_then_the_failures() {
    let s = Setup::new(
        &[HELLO, PANIC_CALL, INIT_ERROR],
        "[hello]\ngreeting = \"hi there\"\n",
    );
    let out = s.pseidon(&["plugins"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let dir = s.plugins.display();
    let expected = format!(
        "loaded hello 0.1.0 {dir}/10-{HELLO}.so\n\
         \x20   sink      test.hello.sink\n\
         \x20   source    test.hello.source\n\
         \x20   processor test.hello.processor\n\
         loaded panic-call 0.1.0 {dir}/20-{PANIC_CALL}.so\n\
         \x20   sink      test.panic.sink\n\
         failed {dir}/30-{INIT_ERROR}.so: plugin `init-error` failed in init: conf key `init-error.required`: \
         is missing (the init-error test plugin always says so)\n"
    );
    assert_eq!(stdout, expected);
    // The plugin's own log line reached the host's subscriber, with its name and the conf value.
    let stderr = text(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains("hello initialised"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        line.contains("greeting=hi there") && line.contains("plugin=\"hello\""),
        "{line}"
    );
    assert!(
        !stderr.contains('\x1b'),
        "colour codes on a non-terminal: {stderr}"
    );
}

#[test]
fn classpath_libraries_load_first_and_failures_name_them() {
    let s = Setup::new(&[HELLO], "");
    let lib = s.root.join("lib");
    fs::create_dir(&lib).unwrap();
    fs::set_permissions(&lib, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(lib.join("bad.so"), b"not a library").unwrap();
    let libz = [
        "/lib/x86_64-linux-gnu/libz.so.1",
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("libz.so.1 (zlib1g) is installed");
    let good = lib.join("libzcopy.so");
    fs::copy(libz, &good).unwrap();
    fs::set_permissions(&good, fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(lib.join("bad.so"), fs::Permissions::from_mode(0o644)).unwrap();
    s.write_conf(&format!(
        "classpath = [\"{}\", \"{}\"]\nplugin-dirs = [\"{}\"]\n",
        lib.display(),
        s.root.join("no-lib").display(),
        s.plugins.display()
    ));
    let host = s.host();
    assert_eq!(names(&host), ["hello"]);
    let failures = failure_messages(&host);
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(
        failures
            .iter()
            .any(|f| f.contains("bad.so: cannot be loaded as a shared library")),
        "{failures:?}"
    );
    assert!(
        failures
            .iter()
            .any(|f| f.contains("no-lib: does not exist (named in `classpath`")),
        "{failures:?}"
    );
}

#[test]
fn a_plugin_whose_shutdown_overruns_the_timeout_is_left_behind() {
    let s = Setup::new(&[HELLO, SLOW_SHUTDOWN], "shutdown-timeout-ms = 200\n");
    let mut host = s.host();
    let start = Instant::now();
    let errors = host.shutdown();
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "shutdown was not bounded: {took:?}"
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        matches!(&errors[0], ShutdownError::TimedOut { plugin, .. } if plugin == "slow-shutdown")
    );
    assert!(
        errors[0].to_string().contains("within 200 ms"),
        "{}",
        errors[0]
    );
    assert!(host.shutdown().is_empty(), "second shutdown is a no-op");
}

#[test]
fn pseidon_run_starts_processors_and_stops_everything_in_reverse_order_on_sigterm() {
    run_until_signal("TERM");
}

#[test]
fn pseidon_run_stops_cleanly_on_sigint() {
    run_until_signal("INT");
}

/// Runs `pseidon run` with hello and late, sends SIG`signal`, checks the order of
/// start, stop and shutdown in its log and the exit code 0.
fn run_until_signal(signal: &str) {
    let s = Setup::new(&[HELLO, LATE], "");
    let mut run = RunChild::spawn(&s.conf, "debug");
    run.wait_for("waiting for SIGINT or SIGTERM");
    run.signal(signal);
    let code = run.finish(Duration::from_secs(20), Duration::from_millis(20));
    assert_eq!(code, Some(0), "{:#?}", run.lines);
    assert!(run.at("test.hello.processor started") < run.at("waiting for SIGINT"));
    let got = run.at(&format!("signal=\"SIG{signal}\""));
    assert!(got < run.at("test.hello.processor stopped"));
    assert!(run.at("test.hello.processor stopped") < run.at("hello shut down"));
    // Plugins shut down in reverse load order: late (loaded second) first.
    let late_down = run.at("plugin shut down plugin=\"late\"");
    let hello_down = run.at("plugin shut down plugin=\"hello\"");
    assert!(late_down < hello_down, "{:#?}", run.lines);
    assert!(run.at("all stopped; exiting") > hello_down);
}

#[test]
fn a_second_signal_while_stopping_exits_at_once() {
    let s = Setup::new(&[SLOW_SHUTDOWN], "shutdown-timeout-ms = 60000\n");
    let mut run = RunChild::spawn(&s.conf, "debug");
    run.wait_for("waiting for SIGINT or SIGTERM");
    run.signal("TERM");
    run.wait_for("stopping processors and plugins");
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    run.signal("INT");
    let code = run.finish(Duration::from_secs(20), Duration::from_millis(20));
    assert_eq!(code, Some(2), "{:#?}", run.lines);
    assert!(start.elapsed() < Duration::from_secs(10));
    run.at("second SIGINT while stopping");
}

#[test]
fn a_top_level_key_that_is_not_a_host_key_is_warned_about() {
    let s = Setup::new(&[HELLO], "");
    s.write_conf(&format!(
        "plugin_dirs = [\"/x\"]\nplugin-dirs = [\"{}\"]\n",
        s.plugins.display()
    ));
    let out = s.pseidon(&["plugins"]);
    assert_eq!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("conf key `plugin_dirs`") && stderr.contains("is not a host key"),
        "{stderr}"
    );
}
