//! Helpers shared by the end-to-end tests: where cargo put the built binaries and
//! plugins, unique names, the test broker, and the independent Kafka peers (kcat,
//! Kafka's own CLI tools).
#![deny(missing_docs)]

pub mod netns;
pub mod proxy;

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The cargo profile dir the tests were built in (`target/debug`), found from the
/// test executable's own path (`target/debug/deps/<test>`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .expect("target dir")
}

/// The `pseidon` binary built by `cargo build --workspace`.
pub fn pseidon_bin() -> PathBuf {
    let p = target_dir().join("pseidon");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace` first (scripts/test does)",
        p.display()
    );
    p
}

/// A plugin library `lib<crate_name>.so` built by `cargo build --workspace`.
pub fn plugin_so(crate_name: &str) -> PathBuf {
    let p = target_dir().join(format!("lib{crate_name}.so"));
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace` first (scripts/test does)",
        p.display()
    );
    p
}

/// A name no other test and no earlier run uses: `prefix-<pid>-<nanos>-<n>`.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The broker the Kafka tests use: `PSEIDON_TEST_BOOTSTRAP` if set, otherwise the
/// one `scripts/kafka start` runs (started on first use; a no-op if it runs).
pub fn bootstrap() -> String {
    static BOOTSTRAP: OnceLock<String> = OnceLock::new();
    BOOTSTRAP
        .get_or_init(|| {
            if let Ok(b) = std::env::var("PSEIDON_TEST_BOOTSTRAP")
                && !b.trim().is_empty()
            {
                return b.trim().to_string();
            }
            let out = Command::new(repo_root().join("scripts/kafka"))
                .arg("start")
                .output()
                .expect("run scripts/kafka start");
            assert!(
                out.status.success(),
                "scripts/kafka start failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .unwrap_or("127.0.0.1:9092")
                .trim()
                .to_string()
        })
        .clone()
}

/// Runs `scripts/kafka tools <args…>` (Kafka's own CLI) and returns its stdout;
/// panics with its stderr if it fails.
pub fn kafka_tool(args: &[&str]) -> String {
    kafka_tool_in(None, args)
}

/// [`kafka_tool`] run inside the network namespace `netns` (`ip netns exec`), if given.
fn kafka_tool_in(netns: Option<&str>, args: &[&str]) -> String {
    let mut tool = script_command("kafka", &["tools"]);
    tool.args(args);
    let mut cmd = match netns {
        Some(ns) => netns::wrap_in(ns, &tool),
        None => tool,
    };
    let out = cmd.output().expect("run scripts/kafka tools");
    assert!(
        out.status.success(),
        "scripts/kafka tools {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Creates `topic` with `partitions` partitions (replication factor 1) with Kafka's own tool.
pub fn create_topic(topic: &str, partitions: u32) {
    create_topic_at(None, &bootstrap(), topic, partitions, 1);
}

/// Creates `topic` with `partitions` partitions and `replication` replicas on the broker
/// (or cluster) at `bootstrap`, with Kafka's own tool (inside `netns`, if given).
fn create_topic_at(
    netns: Option<&str>,
    bootstrap: &str,
    topic: &str,
    partitions: u32,
    replication: u32,
) {
    kafka_tool_in(
        netns,
        &[
            "topics",
            "--bootstrap-server",
            bootstrap,
            "--create",
            "--topic",
            topic,
            "--partitions",
            &partitions.to_string(),
            "--replication-factor",
            &replication.to_string(),
        ],
    );
}

/// `scripts/<script> <args…>`, to be given its environment by the caller.
fn script_command(script: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(repo_root().join("scripts").join(script));
    cmd.args(args);
    cmd
}

/// Runs `cmd` (a [`script_command`] of `scripts/<script>`), panics naming `what` with its
/// stderr if it fails, and returns the last line of its stdout, trimmed.
fn last_stdout_line(mut cmd: Command, script: &str, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("run scripts/{script}: {e:?}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Stops the `scripts/kafka` broker on `port` with data dir `data` and removes the dir.
fn stop_broker(port: u16, data: &Path) {
    stop_and_remove(
        "kafka",
        "stop",
        "KAFKA_PORT",
        port,
        "PSEIDON_KAFKA_DATA",
        data,
    );
}

/// Stops a broker of its own on drop: runs `scripts/<script> <verb>` with `port_var` and
/// `data_var` set (its outcome ignored), then removes the data dir `data`.
fn stop_and_remove(
    script: &str,
    verb: &str,
    port_var: &str,
    port: u16,
    data_var: &str,
    data: &Path,
) {
    let _ = script_command(script, &[verb])
        .env(port_var, port.to_string())
        .env(data_var, data)
        .output();
    let _ = std::fs::remove_dir_all(data);
}

/// Reads a whole topic with kcat (an independent client) and returns the values,
/// one per message, as raw bytes. kcat's `-e` exits at the end of every partition.
pub fn kcat_values(topic: &str) -> Vec<Vec<u8>> {
    let out = Command::new("kcat")
        .args([
            "-b",
            &bootstrap(),
            "-C",
            "-t",
            topic,
            "-e",
            "-q",
            "-f",
            "%S %s\n",
        ])
        .output()
        .expect("run kcat (apt-get install kcat)");
    assert!(
        out.status.success(),
        "kcat failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_sized(&out.stdout)
}

/// Splits kcat output formatted as `%S %s\n` (size, space, value, newline).
pub(crate) fn parse_sized(mut buf: &[u8]) -> Vec<Vec<u8>> {
    let mut values = Vec::new();
    while !buf.is_empty() {
        let Some(sp) = buf.iter().position(|b| *b == b' ') else {
            break;
        };
        let size: i64 = std::str::from_utf8(&buf[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let size = usize::try_from(size).unwrap_or(0);
        let start = sp + 1;
        let end = (start + size).min(buf.len());
        values.push(buf[start..end].to_vec());
        buf = &buf[(end + 1).min(buf.len())..];
    }
    values
}

#[cfg(test)]
mod tests {
    #[test]
    fn parse_sized_splits_values_with_newlines_inside() {
        let v = super::parse_sized(b"3 a\nb\n0 \n2 xy\n");
        assert_eq!(v, vec![b"a\nb".to_vec(), b"".to_vec(), b"xy".to_vec()]);
    }
}

/// A fresh temporary directory `<tmp>/<unique(prefix)>` with mode 0755 (not
/// writable by group or others, so the host accepts plugins in it).
pub fn temp_dir(prefix: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(unique(prefix));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
    dir
}

/// Copies the plugin libraries of `crate_names` (as for [`plugin_so`]) into `dir`
/// as `NN-<crate>.so`, numbered in the given order so the host loads them in that
/// order, with mode 0644. Each copy is a distinct file, so the dynamic loader loads
/// it afresh (with its own statics) even when another test loaded the same plugin.
pub fn copy_plugins(dir: &Path, crate_names: &[&str]) -> Vec<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    crate_names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let to = dir.join(format!("{:02}-{name}.so", (i + 1) * 10));
            std::fs::copy(plugin_so(name), &to).expect("copy plugin");
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644))
                .expect("chmod plugin");
            to
        })
        .collect()
}

/// A work dir for runs of the `pseidon` binary: copies of plugins in `plugins/`, a conf
/// `pseidon.toml` naming them, the brokers and a status database of its own
/// (`status.db`); removed on drop.
pub struct Workdir {
    /// The dir.
    pub root: PathBuf,
    /// Its conf file.
    pub conf: PathBuf,
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Workdir {
    /// A dir named after `prefix` with copies of `plugins` (crate names, as for
    /// [`copy_plugins`]) and a conf of `top` lines at the top level, `kafka` lines in
    /// `[kafka]` (its `bootstrap.servers` is the test broker unless `kafka` sets one),
    /// and `settings` lines in `[pseidon-kafka]` after its `status-db`.
    pub fn new(prefix: &str, plugins: &[&str], top: &str, kafka: &str, settings: &str) -> Workdir {
        let root = temp_dir(prefix);
        let dir = root.join("plugins");
        std::fs::create_dir(&dir).expect("create plugins dir");
        copy_plugins(&dir, plugins);
        let conf = root.join("pseidon.toml");
        let w = Workdir { root, conf };
        w.write_conf("pseidon.toml", top, kafka, settings);
        w
    }

    /// [`Workdir::new`] with the Kafka plugin only.
    pub fn kafka(prefix: &str, kafka: &str, settings: &str) -> Workdir {
        Workdir::new(prefix, &["pseidon_kafka"], "", kafka, settings)
    }

    /// Writes another conf `name` of this dir (same plugins and status database), as
    /// [`Workdir::new`] describes; returns its path.
    pub fn write_conf(&self, name: &str, top: &str, kafka: &str, settings: &str) -> PathBuf {
        let servers = if kafka.contains("bootstrap.servers") {
            String::new()
        } else {
            format!("bootstrap.servers = {:?}\n", bootstrap())
        };
        let conf = self.root.join(name);
        std::fs::write(
            &conf,
            format!(
                "plugin-dirs = [{:?}]\n{top}\n\n[kafka]\n{servers}{kafka}\n\n[pseidon-kafka]\nstatus-db = {:?}\n{settings}\n",
                self.root.join("plugins"),
                self.db()
            ),
        )
        .expect("write conf");
        conf
    }

    /// The status database.
    pub fn db(&self) -> PathBuf {
        self.root.join("status.db")
    }

    /// `pseidon --conf <conf> args…`, with the caller's log settings removed.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_with(&self.conf, args)
    }

    /// [`Workdir::command`] with another conf (e.g. one of [`Workdir::write_conf`]).
    pub fn command_with(&self, conf: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(pseidon_bin());
        cmd.arg("--conf")
            .arg(conf)
            .args(args)
            .env_remove("PSEIDON_CONF")
            .env_remove("PSEIDON_LOG")
            .env_remove("RUST_LOG");
        cmd
    }

    /// Runs [`Workdir::command`] with `stdin` fed in and closed; asserts that it did not
    /// panic.
    pub fn run(&self, args: &[&str], stdin: &[u8]) -> std::process::Output {
        self.run_with(&self.conf, args, stdin)
    }

    /// [`Workdir::run`] with another conf.
    pub fn run_with(&self, conf: &Path, args: &[&str], stdin: &[u8]) -> std::process::Output {
        let mut child = self
            .command_with(conf, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pseidon");
        // Fed by a thread: a child that writes much before it reads all its input
        // must not deadlock with us. One that exits early closes its stdin: not this
        // test's failure.
        let writer = child.stdin.take().map(|mut input| {
            let data = stdin.to_vec();
            std::thread::spawn(move || {
                let _ = input.write_all(&data);
            })
        });
        let out = child.wait_with_output().expect("wait for pseidon");
        if let Some(w) = writer {
            let _ = w.join();
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && !stderr.to_lowercase().contains("backtrace"),
            "pseidon {args:?} panicked:\n{stderr}"
        );
        out
    }
}

// ---------------------------------------------------------------------------------
// The Kafka plugin loaded by the real host, its own brokers, and the host's log.
// ---------------------------------------------------------------------------------

/// Serialises the tests that load the Kafka plugin: one library instance per process
/// holds one plugin instance at a time (a second `init` before `shutdown` is refused).
/// Poisoning is ignored, so one failed test does not fail the others.
pub fn plugin_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Loads the built `libpseidon_kafka.so` with the real host (`pseidon_host::Host`),
/// strict, from a conf made of `plugin-dirs`, a throw-away `pseidon-kafka.status-db`
/// and then `body` (TOML: flat `"kafka.x" = ..` keys or a `[kafka]` table). The host's
/// log goes to [`captured_logs`] and, for failing tests, to the test output.
pub fn kafka_host(body: &str) -> Result<pseidon_host::Host, pseidon_host::HostError> {
    init_test_logging();
    let status_db = std::env::temp_dir().join(format!("{}.db", unique("pseidon-status")));
    let text = format!(
        "plugin-dirs = [{:?}]\nstrict = true\nshutdown-timeout-ms = 30000\n\"pseidon-kafka.status-db\" = {:?}\n{body}\n",
        plugin_so("pseidon_kafka"),
        status_db,
    );
    let conf = pseidon_host::Conf::parse(&text, &std::env::temp_dir().join("pseidon-test.toml"))?;
    pseidon_host::Host::load(conf)
}

/// One event of the host's log.
#[derive(Debug, Clone)]
pub struct CapturedLog {
    /// The level.
    pub level: tracing::Level,
    /// The `plugin` field (the plugin's name) of events forwarded from a plugin.
    pub plugin: String,
    /// The `target` field: the plugin-side log target (`librdkafka` for librdkafka's lines).
    pub target: String,
    /// The message.
    pub message: String,
}

fn captured() -> &'static std::sync::Mutex<Vec<CapturedLog>> {
    static LOGS: std::sync::Mutex<Vec<CapturedLog>> = std::sync::Mutex::new(Vec::new());
    &LOGS
}

/// Every event the host logged so far in this test process (level info and up, or
/// as `PSEIDON_LOG` says).
pub fn captured_logs() -> Vec<CapturedLog> {
    captured()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

struct CaptureLayer;

#[derive(Default)]
struct CaptureVisitor {
    plugin: String,
    target: String,
    message: String,
}

impl tracing::field::Visit for CaptureVisitor {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "plugin" => self.plugin = value.to_string(),
            "target" => self.target = value.to_string(),
            "message" => self.message = value.to_string(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        match field.name() {
            "plugin" => self.plugin = text,
            "target" => self.target = text,
            "message" => self.message = text,
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CaptureLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut v = CaptureVisitor::default();
        event.record(&mut v);
        captured()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(CapturedLog {
                level: *event.metadata().level(),
                plugin: v.plugin,
                target: v.target,
                message: v.message,
            });
    }
}

/// Installs the test process's log subscriber once: the host's log, filtered by
/// `PSEIDON_LOG` (default `info`), captured for [`captured_logs`] and printed to the
/// test output.
pub fn init_test_logging() {
    use tracing_subscriber::prelude::*;
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_env("PSEIDON_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _already = tracing_subscriber::registry()
            .with(filter)
            .with(CaptureLayer)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_test_writer()
                    .with_ansi(false),
            )
            .try_init();
    });
}

/// A broker of its own for a test that stops and starts it (`scripts/kafka` with
/// `KAFKA_PORT` and `PSEIDON_KAFKA_DATA`); stopped and its data dir removed on drop.
pub struct OwnBroker {
    port: u16,
    data: PathBuf,
    extra_props: String,
    /// `KAFKA_VERSION` for scripts/kafka, if not the environment's.
    version: Option<String>,
    /// The network namespace it runs in (`ip netns exec`), if not the test's own.
    netns: Option<String>,
    /// Its bootstrap address.
    pub bootstrap: String,
}

impl OwnBroker {
    /// Starts a fresh broker on `port` with a new data dir; `extra_props` are
    /// server.properties lines (`KAFKA_EXTRA_PROPS`).
    pub fn start(port: u16, extra_props: &str) -> OwnBroker {
        Self::start_version(port, extra_props, None)
    }

    /// [`OwnBroker::start`] with Apache Kafka `version` (e.g. "4.4.0") whatever
    /// `KAFKA_VERSION` says, for a test of a feature only that release has.
    pub fn start_version(port: u16, extra_props: &str, version: Option<&str>) -> OwnBroker {
        Self::start_with(None, port, extra_props, version)
    }

    /// [`OwnBroker::start`] inside the network namespace `ns`: the broker listens on the
    /// namespace's own loopback, so only commands run there ([`netns::Netns::wrap`])
    /// reach it, and nft rules of that namespace act on its traffic alone. `kill`,
    /// `start_keep_data`, `create_topic` and the drop run there too (the pid paths work
    /// from anywhere).
    pub fn start_in(ns: &netns::Netns, port: u16, extra_props: &str) -> OwnBroker {
        Self::start_with(Some(ns.name()), port, extra_props, None)
    }

    fn start_with(
        netns: Option<&str>,
        port: u16,
        extra_props: &str,
        version: Option<&str>,
    ) -> OwnBroker {
        let data = std::env::temp_dir().join(unique(&format!("pseidon-kafka-{port}")));
        let mut b = OwnBroker {
            port,
            data,
            extra_props: extra_props.to_string(),
            version: version.map(str::to_string),
            netns: netns.map(str::to_string),
            bootstrap: String::new(),
        };
        b.bootstrap = b.script(&["start"]);
        b
    }

    /// Runs `scripts/kafka <args>` against this broker; returns the last stdout line.
    pub fn script(&self, args: &[&str]) -> String {
        let mut cmd = script_command("kafka", args);
        cmd.env("KAFKA_PORT", self.port.to_string())
            .env("PSEIDON_KAFKA_DATA", &self.data)
            .env("KAFKA_EXTRA_PROPS", &self.extra_props);
        if let Some(v) = &self.version {
            cmd.env("KAFKA_VERSION", v);
        }
        if let Some(ns) = &self.netns {
            cmd = netns::wrap_in(ns, &cmd);
        }
        let what = format!("scripts/kafka {args:?} (port {})", self.port);
        last_stdout_line(cmd, "kafka", &what)
    }

    /// SIGKILLs the broker (its data is kept).
    pub fn kill(&self) {
        self.script(&["kill"]);
    }

    /// Starts it again on the same data.
    pub fn start_keep_data(&self) {
        self.script(&["start", "--keep-data"]);
    }

    /// Creates `topic` with `partitions` partitions on this broker.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        create_topic_at(self.netns.as_deref(), &self.bootstrap, topic, partitions, 1);
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        stop_broker(self.port, &self.data);
    }
}

/// Reads a whole topic of the broker at `bootstrap` with kcat, formatted with
/// `format` (kcat's `-f`: `%k` key, `%h` headers, `%p` partition, `%s` value...).
pub fn kcat_formatted(bootstrap: &str, topic: &str, format: &str) -> Vec<u8> {
    let out = Command::new("kcat")
        .args(["-b", bootstrap, "-C", "-t", topic, "-e", "-q", "-f", format])
        .output()
        .expect("run kcat (apt-get install kcat)");
    assert!(
        out.status.success(),
        "kcat failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Writes `values` to `topic` of the broker at `bootstrap` with kcat, one message each,
/// keyed `k<i>` so they spread over partitions; `props` are librdkafka properties for
/// kcat (`-X`, e.g. `acks=all`).
pub fn kcat_produce_keyed(bootstrap: &str, topic: &str, values: &[String], props: &[&str]) {
    let mut args = vec!["-b", bootstrap, "-P", "-t", topic, "-K", "\t"];
    for p in props {
        args.extend(["-X", p]);
    }
    let mut child = Command::new("kcat")
        .args(&args)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kcat (apt-get install kcat)");
    {
        let mut stdin = child.stdin.take().expect("kcat stdin");
        let text: String = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("k{i}\t{v}\n"))
            .collect();
        stdin.write_all(text.as_bytes()).expect("write to kcat");
    }
    let out = child.wait_with_output().expect("kcat");
    assert!(
        out.status.success(),
        "kcat -P failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The arguments of a `consume_child` process (see its docs) reading `topic` of the
/// broker at `bootstrap` as `group` with the status db `db`, then `extra`. A killed member
/// leaves the group quickly (6 s session timeout) for the others to take over.
pub fn consume_child_args(
    bootstrap: &str,
    topic: &str,
    group: &str,
    db: &Path,
    extra: &[&str],
) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "--plugin".into(),
        plugin_so("pseidon_kafka").display().to_string(),
        "--bootstrap".into(),
        bootstrap.into(),
        "--topic".into(),
        topic.into(),
        "--group".into(),
        group.into(),
        "--db".into(),
        db.display().to_string(),
        "--set".into(),
        "kafka.session.timeout.ms=6000".into(),
        "--set".into(),
        "kafka.heartbeat.interval.ms=1000".into(),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// A `pseidon run` child and the lines of its stderr; killed (if still running) on drop.
pub struct RunChild {
    child: std::process::Child,
    rx: std::sync::mpsc::Receiver<String>,
    /// The stderr lines read so far.
    pub lines: Vec<String>,
}

impl RunChild {
    /// Starts `pseidon --conf <conf> run` with `PSEIDON_LOG=<log>` (and no `RUST_LOG`);
    /// a thread forwards its stderr lines.
    pub fn spawn(conf: &Path, log: &str) -> RunChild {
        let mut child = Command::new(pseidon_bin())
            .args(["--conf", conf.to_str().unwrap(), "run"])
            .env_remove("RUST_LOG")
            .env("PSEIDON_LOG", log)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        RunChild {
            child,
            rx,
            lines: Vec::new(),
        }
    }

    /// Reads stderr until a line contains `needle` (20 s at most).
    pub fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.lines.iter().any(|l| l.contains(needle)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(l) => self.lines.push(l),
                Err(_) => {
                    let _ = self.child.kill();
                    panic!("no `{needle}` from pseidon run: {:#?}", self.lines);
                }
            }
        }
    }

    /// Takes the stderr lines that have arrived, without waiting.
    pub fn drain(&mut self) {
        while let Ok(l) = self.rx.try_recv() {
            self.lines.push(l);
        }
    }

    /// Sends SIG`signal` (`TERM`, `INT`, `KILL`...) with `kill`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the exit (`limit` at most, polling every `poll`) and collects the rest
    /// of stderr; returns the exit code.
    pub fn finish(&mut self, limit: Duration, poll: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.lines.extend(self.rx.iter());
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("pseidon run did not exit: {:#?}", self.lines);
            }
            std::thread::sleep(poll);
        }
    }

    /// The index of the first stderr line containing `needle` (panics if none does).
    pub fn at(&self, needle: &str) -> usize {
        self.lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in {:#?}", self.lines))
    }
}

impl Drop for RunChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// [`kcat_values`] for the broker at `bootstrap`.
pub fn kcat_values_from(bootstrap: &str, topic: &str) -> Vec<Vec<u8>> {
    parse_sized(&kcat_formatted(bootstrap, topic, "%S %s\n"))
}

// ---------------------------------------------------------------------------------
// Secured brokers (TLS, SASL/SCRAM over TLS) and the three-node cluster.
// ---------------------------------------------------------------------------------

/// A broker of its own with a TLS client listener (`KAFKA_SECURITY=ssl` or `sasl_ssl`
/// of `scripts/kafka`): a CA and certificates generated into its data dir, and a
/// PLAINTEXT inter-broker listener for independent checks. Stopped and removed on drop.
pub struct SecureBroker {
    port: u16,
    data: PathBuf,
    security: String,
    password: String,
    /// The TLS (or SASL_SSL) listener, `127.0.0.1:<port>`.
    pub bootstrap: String,
    /// The PLAINTEXT inter-broker listener (for kcat and Kafka's tools).
    pub internal_bootstrap: String,
    /// The CA that signed the broker certificate (PEM).
    pub ca: PathBuf,
    /// An unrelated CA (PEM), for negative tests.
    pub wrong_ca: PathBuf,
}

impl SecureBroker {
    /// Starts a fresh broker on `port` with `security` (`ssl` or `sasl_ssl`); for
    /// `sasl_ssl`, the SCRAM-SHA-512 user `pseidon` has `password`.
    pub fn start(port: u16, security: &str, password: &str) -> SecureBroker {
        let data = std::env::temp_dir().join(unique(&format!("pseidon-kafka-{security}-{port}")));
        let mut b = SecureBroker {
            port,
            data,
            security: security.to_string(),
            password: password.to_string(),
            bootstrap: String::new(),
            internal_bootstrap: String::new(),
            ca: PathBuf::new(),
            wrong_ca: PathBuf::new(),
        };
        b.bootstrap = b.script(&["start"]);
        b.internal_bootstrap = b.script(&["internal-bootstrap"]);
        b.ca = PathBuf::from(b.script(&["ca-path"]));
        b.wrong_ca = b.ca.with_file_name("wrong-ca.pem");
        b
    }

    /// The SCRAM user `scripts/kafka` creates.
    pub fn user(&self) -> &str {
        "pseidon"
    }

    /// Runs `scripts/kafka <args>` against this broker; returns the last stdout line.
    pub fn script(&self, args: &[&str]) -> String {
        let mut cmd = script_command("kafka", args);
        cmd.env("KAFKA_PORT", self.port.to_string())
            .env("PSEIDON_KAFKA_DATA", &self.data)
            .env("KAFKA_SECURITY", &self.security)
            .env("KAFKA_SASL_PASSWORD", &self.password)
            .env("KAFKA_HEAP_OPTS", "-Xms128m -Xmx512m")
            .env_remove("KAFKA_EXTRA_PROPS");
        let what = format!(
            "scripts/kafka {args:?} (port {}, {})",
            self.port, self.security
        );
        last_stdout_line(cmd, "kafka", &what)
    }

    /// Creates `topic` through the PLAINTEXT inter-broker listener.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        create_topic_at(None, &self.internal_bootstrap, topic, partitions, 1);
    }
}

impl Drop for SecureBroker {
    fn drop(&mut self) {
        stop_broker(self.port, &self.data);
    }
}

/// The three-node cluster of `scripts/kafka-cluster` (replication factor 3,
/// `min.insync.replicas=2`) on ports `base`, `base+1`, `base+2`. Stopped and removed on drop.
pub struct Cluster {
    base: u16,
    data: PathBuf,
    /// The bootstrap list of the three nodes.
    pub bootstrap: String,
}

impl Cluster {
    /// Starts a fresh cluster whose node 1 listens on `base`.
    pub fn start(base: u16) -> Cluster {
        let data = std::env::temp_dir().join(unique(&format!("pseidon-kafka-cluster-{base}")));
        let mut c = Cluster {
            base,
            data,
            bootstrap: String::new(),
        };
        c.bootstrap = c.script(&["start"]);
        c
    }

    /// Runs `scripts/kafka-cluster <args>`; returns the last stdout line.
    pub fn script(&self, args: &[&str]) -> String {
        let mut cmd = script_command("kafka-cluster", args);
        cmd.env("KAFKA_CLUSTER_PORT", self.base.to_string())
            .env("PSEIDON_KAFKA_CLUSTER_DATA", &self.data);
        let what = format!("scripts/kafka-cluster {args:?} (port {})", self.base);
        last_stdout_line(cmd, "kafka-cluster", &what)
    }

    /// Creates `topic` with `partitions` partitions, replication factor 3.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        create_topic_at(None, &self.bootstrap, topic, partitions, 3);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        stop_and_remove(
            "kafka-cluster",
            "kill",
            "KAFKA_CLUSTER_PORT",
            self.base,
            "PSEIDON_KAFKA_CLUSTER_DATA",
            &self.data,
        );
    }
}

// ---------------------------------------------------------------------------------
// HTTP: the host's endpoint and a Prometheus server, read as a client would.
// ---------------------------------------------------------------------------------

/// `GET path` from `addr` (`127.0.0.1:port`) over HTTP/1.0: (status, body), `None` when
/// nothing answers (not listening yet, or the connection broke).
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// (id, status) of every group in the status database at `db` (`sqlite3` CLI); none if
/// the file does not exist (its owner never opened it).
pub fn db_groups(db: &Path) -> Vec<(String, String)> {
    if !db.exists() {
        return Vec::new();
    }
    let out = Command::new("sqlite3")
        .arg(db)
        .arg("SELECT id, status FROM groups")
        .output()
        .expect("run sqlite3 (apt-get install sqlite3)");
    assert!(
        out.status.success(),
        "sqlite3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_once('|')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .collect()
}

/// The `libpseidon_kafka.so` of an older landing (`PSEIDON_OLD_KAFKA_SO`; `.ci/run` builds
/// the one of 43f9ec0, plugin-api 0.3.0), for the tests that an older plugin still loads.
/// Without it: `None` and a note on stderr, or, under CI (`CI` set), a panic: CI must run them.
pub fn old_kafka_so() -> Option<String> {
    match std::env::var("PSEIDON_OLD_KAFKA_SO") {
        Ok(p) => {
            assert!(
                Path::new(&p).is_file(),
                "PSEIDON_OLD_KAFKA_SO={p} is not a file"
            );
            Some(p)
        }
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("PSEIDON_OLD_KAFKA_SO is not set under CI (.ci/run builds it)")
        }
        Err(_) => {
            eprintln!("not run: PSEIDON_OLD_KAFKA_SO is not set (.ci/run sets it)");
            None
        }
    }
}

// ---------------------------------------------------------------------------------
// The copy processor under `pseidon run`, run to the end.
// ---------------------------------------------------------------------------------

/// `pseidon groups <args>` (e.g. `--topic T`) through `conf` (a conf whose plugins can
/// load without a running `run`): group id → status.
pub fn groups_of(conf: &Path, args: &[&str]) -> std::collections::BTreeMap<String, String> {
    let out = Command::new(pseidon_bin())
        .args(["--conf", conf.to_str().unwrap(), "groups"])
        .args(args)
        .env_remove("PSEIDON_LOG")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pseidon groups: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter(|l| !l.ends_with("group(s)"))
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect()
}

/// One `pseidon run` of the copy processor with `conf` to the end: waits until
/// `complete()` (the target holds every value; polled every 300 ms) and then for the
/// copier's `caught up with` logged after the last check that found it incomplete (it
/// marks a batch's groups done before it reads again), SIGTERMs it and asserts exit 0
/// and no `ERROR` line; all before `deadline`. Returns the finished run (its lines).
pub fn copy_run_to_the_end(
    conf: &Path,
    deadline: Instant,
    mut complete: impl FnMut() -> bool,
) -> RunChild {
    let mut run = RunChild::spawn(conf, "info");
    // The log lines before the last check that found the target incomplete: the last
    // delivery came after them, so the `caught up` that follows it too.
    let mut seen = 0;
    loop {
        run.drain();
        let before = run.lines.len();
        if complete() {
            break;
        }
        seen = before;
        assert!(
            Instant::now() < deadline,
            "the target is still incomplete: {:#?}",
            run.lines
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    while !run.lines[seen..]
        .iter()
        .any(|l| l.contains("caught up with"))
    {
        assert!(
            Instant::now() < deadline,
            "no `caught up` after the copy: {:#?}",
            run.lines
        );
        std::thread::sleep(Duration::from_millis(100));
        run.drain();
    }
    run.signal("TERM");
    assert_eq!(
        run.finish(Duration::from_secs(30), Duration::from_millis(50)),
        Some(0),
        "{:#?}",
        run.lines
    );
    assert!(
        !run.lines.iter().any(|l| l.contains("ERROR")),
        "{:#?}",
        run.lines
    );
    run
}
