//! Helpers shared by the end-to-end tests: where cargo put the built binaries and
//! plugins, unique names, the test broker, and the independent Kafka peers (kcat,
//! Kafka's own CLI tools).
#![deny(missing_docs)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::{SystemTime, UNIX_EPOCH},
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
    let out = Command::new(repo_root().join("scripts/kafka"))
        .arg("tools")
        .args(args)
        .output()
        .expect("run scripts/kafka tools");
    assert!(
        out.status.success(),
        "scripts/kafka tools {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Creates `topic` with `partitions` partitions (replication factor 1) with Kafka's own tool.
pub fn create_topic(topic: &str, partitions: u32) {
    let b = bootstrap();
    kafka_tool(&[
        "topics",
        "--bootstrap-server",
        &b,
        "--create",
        "--topic",
        topic,
        "--partitions",
        &partitions.to_string(),
        "--replication-factor",
        "1",
    ]);
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
fn parse_sized(mut buf: &[u8]) -> Vec<Vec<u8>> {
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
            .with(tracing_subscriber::fmt::layer().with_test_writer())
            .try_init();
    });
}

/// A broker of its own for a test that stops and starts it (`scripts/kafka` with
/// `KAFKA_PORT` and `PSEIDON_KAFKA_DATA`); stopped and its data dir removed on drop.
pub struct OwnBroker {
    port: u16,
    data: PathBuf,
    extra_props: String,
    /// Its bootstrap address.
    pub bootstrap: String,
}

impl OwnBroker {
    /// Starts a fresh broker on `port` with a new data dir; `extra_props` are
    /// server.properties lines (`KAFKA_EXTRA_PROPS`).
    pub fn start(port: u16, extra_props: &str) -> OwnBroker {
        let data = std::env::temp_dir().join(unique(&format!("pseidon-kafka-{port}")));
        let mut b = OwnBroker {
            port,
            data,
            extra_props: extra_props.to_string(),
            bootstrap: String::new(),
        };
        b.bootstrap = b.script(&["start"]);
        b
    }

    /// Runs `scripts/kafka <args>` against this broker; returns the last stdout line.
    pub fn script(&self, args: &[&str]) -> String {
        let out = Command::new(repo_root().join("scripts/kafka"))
            .args(args)
            .env("KAFKA_PORT", self.port.to_string())
            .env("PSEIDON_KAFKA_DATA", &self.data)
            .env("KAFKA_EXTRA_PROPS", &self.extra_props)
            .output()
            .expect("run scripts/kafka");
        assert!(
            out.status.success(),
            "scripts/kafka {args:?} (port {}) failed:\n{}",
            self.port,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_string()
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
        kafka_tool(&[
            "topics",
            "--bootstrap-server",
            &self.bootstrap,
            "--create",
            "--topic",
            topic,
            "--partitions",
            &partitions.to_string(),
            "--replication-factor",
            "1",
        ]);
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/kafka"))
            .arg("stop")
            .env("KAFKA_PORT", self.port.to_string())
            .env("PSEIDON_KAFKA_DATA", &self.data)
            .output();
        let _ = std::fs::remove_dir_all(&self.data);
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
        let out = Command::new(repo_root().join("scripts/kafka"))
            .args(args)
            .env("KAFKA_PORT", self.port.to_string())
            .env("PSEIDON_KAFKA_DATA", &self.data)
            .env("KAFKA_SECURITY", &self.security)
            .env("KAFKA_SASL_PASSWORD", &self.password)
            .env("KAFKA_HEAP_OPTS", "-Xms128m -Xmx512m")
            .env_remove("KAFKA_EXTRA_PROPS")
            .output()
            .expect("run scripts/kafka");
        assert!(
            out.status.success(),
            "scripts/kafka {args:?} (port {}, {}) failed:\n{}",
            self.port,
            self.security,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// Creates `topic` through the PLAINTEXT inter-broker listener.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        kafka_tool(&[
            "topics",
            "--bootstrap-server",
            &self.internal_bootstrap,
            "--create",
            "--topic",
            topic,
            "--partitions",
            &partitions.to_string(),
            "--replication-factor",
            "1",
        ]);
    }
}

impl Drop for SecureBroker {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/kafka"))
            .arg("stop")
            .env("KAFKA_PORT", self.port.to_string())
            .env("PSEIDON_KAFKA_DATA", &self.data)
            .output();
        let _ = std::fs::remove_dir_all(&self.data);
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
        let out = Command::new(repo_root().join("scripts/kafka-cluster"))
            .args(args)
            .env("KAFKA_CLUSTER_PORT", self.base.to_string())
            .env("PSEIDON_KAFKA_CLUSTER_DATA", &self.data)
            .output()
            .expect("run scripts/kafka-cluster");
        assert!(
            out.status.success(),
            "scripts/kafka-cluster {args:?} (port {}) failed:\n{}",
            self.base,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// Creates `topic` with `partitions` partitions, replication factor 3.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        kafka_tool(&[
            "topics",
            "--bootstrap-server",
            &self.bootstrap,
            "--create",
            "--topic",
            topic,
            "--partitions",
            &partitions.to_string(),
            "--replication-factor",
            "3",
        ]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/kafka-cluster"))
            .arg("kill")
            .env("KAFKA_CLUSTER_PORT", self.base.to_string())
            .env("PSEIDON_KAFKA_CLUSTER_DATA", &self.data)
            .output();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}
