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
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The cargo profile dir the tests were built in (`target/debug`), found from the
/// test executable's own path (`target/debug/deps/<test>`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(Path::parent).map(Path::to_path_buf).expect("target dir")
}

/// The `pseidon` binary built by `cargo build --workspace`.
pub fn pseidon_bin() -> PathBuf {
    let p = target_dir().join("pseidon");
    assert!(p.exists(), "{} is missing: run `cargo build --workspace` first (scripts/test does)", p.display());
    p
}

/// A plugin library `lib<crate_name>.so` built by `cargo build --workspace`.
pub fn plugin_so(crate_name: &str) -> PathBuf {
    let p = target_dir().join(format!("lib{crate_name}.so"));
    assert!(p.exists(), "{} is missing: run `cargo build --workspace` first (scripts/test does)", p.display());
    p
}

/// A name no other test and no earlier run uses: `prefix-<pid>-<nanos>-<n>`.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{prefix}-{}-{}-{}", std::process::id(), nanos % 1_000_000_000_000, N.fetch_add(1, Ordering::Relaxed))
}

/// The broker the Kafka tests use: `PSEIDON_TEST_BOOTSTRAP` if set, otherwise the
/// one `scripts/kafka start` runs (started on first use; a no-op if it runs).
pub fn bootstrap() -> String {
    static BOOTSTRAP: OnceLock<String> = OnceLock::new();
    BOOTSTRAP
        .get_or_init(|| {
            if let Ok(b) = std::env::var("PSEIDON_TEST_BOOTSTRAP") {
                if !b.trim().is_empty() {
                    return b.trim().to_string();
                }
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
            String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("127.0.0.1:9092").trim().to_string()
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
        .args(["-b", &bootstrap(), "-C", "-t", topic, "-e", "-q", "-f", "%S %s\n"])
        .output()
        .expect("run kcat (apt-get install kcat)");
    assert!(out.status.success(), "kcat failed: {}", String::from_utf8_lossy(&out.stderr));
    parse_sized(&out.stdout)
}

/// Splits kcat output formatted as `%S %s\n` (size, space, value, newline).
fn parse_sized(mut buf: &[u8]) -> Vec<Vec<u8>> {
    let mut values = Vec::new();
    while !buf.is_empty() {
        let Some(sp) = buf.iter().position(|b| *b == b' ') else { break };
        let size: i64 = std::str::from_utf8(&buf[..sp]).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
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
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644)).expect("chmod plugin");
            to
        })
        .collect()
}
