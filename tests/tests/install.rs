//! `scripts/install` into a temporary prefix: the installed `pseidon` with the
//! installed sample conf loads the installed plugin; a second install keeps a
//! modified conf untouched; the systemd unit runs the installed binary with that conf.
//! Builds the debug profile through the script (cargo is on the PATH in tests).

use std::{
    fs,
    path::Path,
    process::{Command, Output},
};

use pseidon_tests::{repo_root, temp_dir};

fn install(prefix: &Path) -> Output {
    let out = Command::new(repo_root().join("scripts/install"))
        .arg("--prefix")
        .arg(prefix)
        .arg("--conf")
        .arg(prefix.join("conf/pseidon.toml"))
        .arg("--systemd-dir")
        .arg(prefix.join("systemd"))
        .arg("--debug")
        // Install what `cargo build --workspace` built: a build here would rebuild the
        // plugin with other features under the feet of tests running in parallel.
        .arg("--no-build")
        .env(
            "CARGO_TARGET_DIR",
            pseidon_tests::target_dir()
                .parent()
                .unwrap_or(Path::new("target")),
        )
        .output()
        .expect("run scripts/install");
    assert!(
        out.status.success(),
        "scripts/install failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn install_into_a_prefix_then_pseidon_plugins_from_there_and_the_conf_is_never_overwritten() {
    let prefix = temp_dir("pseidon-install");
    fs::create_dir(prefix.join("systemd")).unwrap();
    let out = install(&prefix);
    let said = String::from_utf8_lossy(&out.stdout);
    let conf = prefix.join("conf/pseidon.toml");
    assert!(said.contains("installed the sample conf"), "{said}");
    // The alert rules are installed as shipped.
    assert_eq!(
        fs::read(prefix.join("share/alerts.yml")).unwrap(),
        fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/alerts.yml")).unwrap()
    );

    let bin = prefix.join("bin/pseidon");
    let plugin = prefix.join("plugins/libpseidon_kafka.so");
    assert!(bin.is_file() && plugin.is_file());
    // The sample conf points at the installed plugins dir.
    let text = fs::read_to_string(&conf).unwrap();
    assert!(
        text.contains(&format!("plugin-dirs = [\"{}/plugins\"]", prefix.display())),
        "{text}"
    );

    // The installed binary, with the installed conf, loads the installed plugin.
    let out = Command::new(&bin)
        .arg("--conf")
        .arg(&conf)
        .arg("plugins")
        .env_remove("PSEIDON_CONF")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("loaded pseidon-kafka 0.1.0 {}", plugin.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains("sink      pseidon.kafka.util.datasink")
            && stdout.contains("source    pseidon.kafka.util.datasource"),
        "{stdout}"
    );
    assert!(!stdout.contains("failed"), "{stdout}");

    // The systemd unit runs the installed binary with the installed conf.
    let unit = fs::read_to_string(prefix.join("systemd/pseidon.service")).unwrap();
    let exec = format!("ExecStart={} --conf {} run", bin.display(), conf.display());
    assert!(unit.lines().any(|l| l == exec), "`{exec}` not in:\n{unit}");

    // A second install keeps a user's conf byte for byte.
    let mine = format!("{text}\n# changed by the user\n[kafka]\nbootstrap.servers = \"x:1\"\n");
    fs::write(&conf, &mine).unwrap();
    let out = install(&prefix);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("kept the existing conf"), "{said}");
    assert_eq!(fs::read_to_string(&conf).unwrap(), mine);
    let _ = fs::remove_dir_all(&prefix);
}
