//! An older plugin still loads into this host (the guide's rule for interface additions):
//! the `libpseidon_kafka.so` of the last plugin-api 0.3.0 landing (`PSEIDON_OLD_KAFKA_SO`,
//! built by `.ci/run` from this repository's history) is loaded by the real `pseidon`
//! binary, writes and reads, and what it lacks is refused by name. abi_stable refuses a
//! plugin whose vtables have fewer methods than the host's, so this is the test that
//! catches a method added to one (a host with `FfiDataSink::write_batch_timestamped`
//! refused this plugin: "too many fields ... expected 8, found 7").

use std::os::unix::fs::PermissionsExt;

use pseidon_tests::{Workdir, create_topic, kcat_values, old_kafka_so, unique};

#[test]
fn the_plugin_of_plugin_api_0_3_0_loads_writes_reads_and_refuses_timestamps_by_name() {
    let Some(old) = old_kafka_so() else {
        return;
    };
    let group = format!("group.id = {:?}", unique("compat-group"));
    let w = Workdir::new("pseidon-compat", &[], "", &group, "");
    let so = w.root.join("plugins/libpseidon_kafka.so");
    std::fs::copy(&old, &so).expect("copy the old plugin");
    std::fs::set_permissions(&so, std::fs::Permissions::from_mode(0o755)).unwrap();

    let plugins = w.run(&["--strict", "plugins"], b"");
    let said = String::from_utf8_lossy(&plugins.stdout).into_owned()
        + &String::from_utf8_lossy(&plugins.stderr);
    assert_eq!(plugins.status.code(), Some(0), "{said}");
    assert!(said.contains("pseidon.kafka.util.datasink"), "{said}");
    assert!(said.contains("pseidon.kafka.util.datasource"), "{said}");

    let topic = unique("compat");
    create_topic(&topic, 1);
    let sent = w.run(&["send", "-t", &topic], b"a\nb\n");
    assert_eq!(
        sent.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert_eq!(kcat_values(&topic), [b"a".to_vec(), b"b".to_vec()]);
    let read = w.run(&["consume", "-t", &topic, "--max", "2", "--mark-done"], b"");
    assert_eq!(
        read.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&read.stdout), "a\nb\n");

    // Timestamps came with 0.3.1: refused by name, nothing written.
    let stamped = w.run(
        &["send", "-t", &topic, "--input", "json"],
        b"{\"value\":\"c\",\"timestamp_ms\":1700000000000}\n",
    );
    let err = String::from_utf8_lossy(&stamped.stderr);
    assert_eq!(stamped.status.code(), Some(2), "{err}");
    assert!(err.contains("does not take record timestamps"), "{err}");
    assert_eq!(kcat_values(&topic).len(), 2);
}
