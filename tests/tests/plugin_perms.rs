//! Plugin file permissions (issue 12, item 11), through the `pseidon plugins` binary
//! with the real test plugin `.so` files: the host trusts a plugin only if the file,
//! its symlink's target and every directory on the way to either are writable by
//! their owner alone (a root-owned sticky dir like `/tmp` is fine) and owned by root
//! or the user running the host, as ssh's `StrictModes`; FIFOs and devices are
//! refused without being opened. Needs `cargo build --workspace` first.
//!
//! Every case also loads the same plugin from a safe place (the control), so a
//! refusal is the check's doing, not a broken copy.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use pseidon_tests::{copy_plugins, pseidon_bin, temp_dir};

const HELLO: &str = "pseidon_test_plugin_hello";

/// A scratch root (0755, under the root-owned sticky `/tmp`) removed on drop.
struct Scratch {
    root: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Make everything removable again (a 0555 dir would stop remove_dir_all).
        let _ = Command::new("chmod")
            .args(["-R", "u+rwx"])
            .arg(&self.root)
            .status();
        let _ = fs::remove_dir_all(&self.root);
    }
}

impl Scratch {
    fn new(prefix: &str) -> Scratch {
        Scratch {
            root: temp_dir(prefix),
        }
    }

    /// A dir `name` under the root with `mode`.
    fn dir(&self, name: &str, mode: u32) -> PathBuf {
        let d = self.root.join(name);
        fs::create_dir_all(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(mode)).unwrap();
        d
    }

    /// Runs `pseidon plugins` with a conf naming `plugin_dirs` (and `extra`).
    fn plugins(&self, plugin_dirs: &[&Path], extra: &str) -> Output {
        let conf = self.root.join("pseidon.toml");
        let list: Vec<String> = plugin_dirs
            .iter()
            .map(|p| format!("{:?}", p.display().to_string()))
            .collect();
        fs::write(
            &conf,
            format!("plugin-dirs = [{}]\n{extra}", list.join(", ")),
        )
        .unwrap();
        run_bounded(&["--conf", conf.to_str().unwrap(), "plugins"])
    }
}

/// Runs the binary; a run past 60 s (a hang: opening a FIFO blocks forever) is
/// killed and fails the test.
fn run_bounded(args: &[&str]) -> Output {
    let mut child = Command::new(pseidon_bin())
        .args(args)
        .env_remove("PSEIDON_CONF")
        .env_remove("RUST_LOG")
        .env_remove("PSEIDON_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "pseidon {args:?} hung (killed after 60 s): {}",
                text(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `loaded` and `failed` lines of `pseidon plugins`.
fn lines(out: &Output, kind: &str) -> Vec<String> {
    text(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(kind))
        .map(str::to_string)
        .collect()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// Asserts that `out` loaded `hello` from `path` and failed nothing.
fn assert_loads(out: &Output, path: &Path) {
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        lines(out, "loaded"),
        [format!("loaded hello 0.1.0 {}", path.display())],
        "{}",
        text(&out.stdout)
    );
    assert!(lines(out, "failed").is_empty(), "{}", text(&out.stdout));
}

/// Asserts that `out` loaded nothing and its one failure names `plugin` and, with
/// the chmod hint, `culprit`.
fn assert_refused(out: &Output, plugin: &Path, culprit: &Path, why: &str) {
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(lines(out, "loaded").is_empty(), "{}", text(&out.stdout));
    let failed = lines(out, "failed");
    assert_eq!(failed.len(), 1, "{}", text(&out.stdout));
    let f = &failed[0];
    assert!(
        f.starts_with(&format!("failed {}: refused because", plugin.display())),
        "{f}"
    );
    assert!(f.contains(why), "{f}");
    assert!(
        f.contains(&format!("{} ", culprit.display()))
            && f.contains("allow-writable-plugins = true"),
        "{f}"
    );
}

#[test]
fn a_plugin_named_directly_inside_a_world_writable_dir_is_refused() {
    let s = Scratch::new("perms-direct");
    let open = s.dir("open", 0o777);
    let so = copy_plugins(&open, &[HELLO]).remove(0);
    let out = s.plugins(&[&so], "");
    assert_refused(&out, &so, &open, "writable by group and others (mode 0777)");
    assert!(
        lines(&out, "failed")[0].contains(&format!("chmod go-w {}", open.display())),
        "{}",
        text(&out.stdout)
    );
    // Control: the same file once the dir is fixed; and with the opt-out.
    fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
    assert_loads(&s.plugins(&[&so], ""), &so);
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    assert_loads(&s.plugins(&[&so], "allow-writable-plugins = true\n"), &so);
}

#[test]
fn a_safe_plugin_dir_under_a_world_writable_parent_is_refused() {
    let s = Scratch::new("perms-parent");
    let parent = s.dir("parent", 0o777);
    let plugins = s.dir("parent/plugins", 0o755);
    copy_plugins(&plugins, &[HELLO]);
    let out = s.plugins(&[&plugins], "");
    assert_refused(&out, &plugins, &parent, "(a directory on its path)");
    // A group-writable parent is refused too, naming group.
    fs::set_permissions(&parent, fs::Permissions::from_mode(0o775)).unwrap();
    let out = s.plugins(&[&plugins], "");
    assert_refused(&out, &plugins, &parent, "writable by group (mode 0775)");
    fs::set_permissions(&parent, fs::Permissions::from_mode(0o755)).unwrap();
    assert_loads(
        &s.plugins(&[&plugins], ""),
        &plugins.join(format!("10-{HELLO}.so")),
    );
}

#[test]
fn a_plugin_symlink_into_a_world_writable_dir_is_refused() {
    let s = Scratch::new("perms-link");
    let open = s.dir("open", 0o777);
    let target = copy_plugins(&open, &[HELLO]).remove(0);
    let safe = s.dir("safe", 0o755);
    let link = safe.join("hello.so");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    // Found in a safe plugin dir, and named directly.
    assert_refused(
        &s.plugins(&[&safe], ""),
        &link,
        &open,
        "writable by group and others",
    );
    assert_refused(
        &s.plugins(&[&link], ""),
        &link,
        &open,
        "writable by group and others",
    );
    // A link to a group-writable file in a safe dir: the target is the culprit.
    fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o664)).unwrap();
    assert_refused(
        &s.plugins(&[&link], ""),
        &link,
        &target,
        "writable by group (mode 0664)",
    );
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
    assert_loads(&s.plugins(&[&link], ""), &link);
}

/// A root-owned sticky dir (like `/tmp`) may be writable by all; the same mode on a
/// dir owned by another user is refused, as is a plugin dir owned by one.
#[test]
fn a_root_owned_sticky_dir_is_trusted_and_another_users_dir_is_not() {
    assert!(
        is_root(),
        "this test chowns dirs to nobody and needs root (CI runs the tests as root)"
    );
    let s = Scratch::new("perms-sticky");
    let sticky = s.dir("sticky", 0o1777);
    let plugins = s.dir("sticky/plugins", 0o755);
    let so = copy_plugins(&plugins, &[HELLO]).remove(0);
    assert_loads(&s.plugins(&[&plugins], ""), &so);

    let chown = |p: &Path| {
        let st = Command::new("chown").arg("nobody").arg(p).status().unwrap();
        assert!(st.success(), "chown nobody {}", p.display());
    };
    chown(&sticky);
    let out = s.plugins(&[&plugins], "");
    // Owned by nobody: refused for the owner (checked first), naming the dir.
    assert_refused(&out, &plugins, &sticky, "is owned by uid 65534");
    assert!(
        lines(&out, "failed")[0].contains(&format!("chown root {}", sticky.display())),
        "{}",
        text(&out.stdout)
    );

    // A 0755 plugin dir owned by another user: refused too.
    let other = s.dir("other", 0o755);
    let so = copy_plugins(&other, &[HELLO]).remove(0);
    assert_loads(&s.plugins(&[&other], ""), &so);
    chown(&other);
    assert_refused(
        &s.plugins(&[&other], ""),
        &other,
        &other,
        "is owned by uid 65534",
    );
    // And a plugin file owned by another user, in a safe dir.
    let mine = s.dir("mine", 0o755);
    let so = copy_plugins(&mine, &[HELLO]).remove(0);
    chown(&so);
    assert_refused(&s.plugins(&[&so], ""), &so, &so, "is owned by uid 65534");
}

/// A FIFO named as a plugin hung the host in `open`; it is refused without being
/// opened, even with `allow-writable-plugins`. Other plugins still load.
#[test]
fn a_fifo_plugin_path_is_refused_without_opening_it() {
    let s = Scratch::new("perms-fifo");
    let dir = s.dir("plugins", 0o755);
    let hello = copy_plugins(&dir, &[HELLO]).remove(0);
    let fifo = dir.join("20-fifo.so");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    for extra in ["", "allow-writable-plugins = true\n"] {
        // Named directly: the only entry, refused.
        let out = s.plugins(&[&fifo], extra);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(
            lines(&out, "failed"),
            [format!(
                "failed {}: refused because it is a FIFO, not a regular file (not opened)",
                fifo.display()
            )],
            "{extra}"
        );
        // In a dir: listed as failed next to the plugin that loads.
        let out = s.plugins(&[&dir], extra);
        assert_eq!(
            lines(&out, "loaded"),
            [format!("loaded hello 0.1.0 {}", hello.display())]
        );
        assert_eq!(lines(&out, "failed").len(), 1, "{}", text(&out.stdout));
        assert!(lines(&out, "failed")[0].contains("a FIFO"));
    }
    // Under --strict the refusal is fatal (exit 2), still without hanging.
    let conf = s.root.join("pseidon.toml");
    let out = run_bounded(&["--strict", "--conf", conf.to_str().unwrap(), "plugins"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("a FIFO"),
        "{}",
        text(&out.stderr)
    );
}

/// A `*.so` link to `/dev/zero` (or a dangling link) in a plugin dir was skipped
/// silently; it is listed as failed.
#[test]
fn a_so_link_to_a_device_or_nowhere_is_listed_as_failed() {
    let s = Scratch::new("perms-dev");
    let dir = s.dir("plugins", 0o755);
    let hello = copy_plugins(&dir, &[HELLO]).remove(0);
    let zero = dir.join("20-zero.so");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let dangling = dir.join("30-dangling.so");
    std::os::unix::fs::symlink(dir.join("no-such-file"), &dangling).unwrap();
    let out = s.plugins(&[&dir], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        lines(&out, "loaded"),
        [format!("loaded hello 0.1.0 {}", hello.display())]
    );
    let failed = lines(&out, "failed");
    assert_eq!(failed.len(), 2, "{}", text(&out.stdout));
    assert_eq!(
        failed[0],
        format!(
            "failed {}: refused because it is a character device, not a regular file (not opened)",
            zero.display()
        )
    );
    assert!(
        failed[1].starts_with(&format!("failed {}: cannot be read", dangling.display())),
        "{}",
        failed[1]
    );
    // Named directly, /dev/zero itself is refused the same way.
    let out = s.plugins(&[Path::new("/dev/zero")], "");
    assert_eq!(
        lines(&out, "failed"),
        [
            "failed /dev/zero: refused because it is a character device, not a regular file (not opened)"
        ]
    );
}
