//! The local broker script itself: `scripts/kafka-selftest` starts its own broker on
//! another port, produces one record with kcat, reads it back with Kafka's console
//! consumer, stops the broker and checks that nothing is left running.

use std::process::Command;

#[test]
fn broker_script_round_trips_one_record_and_leaves_nothing_running() {
    let root = pseidon_tests::repo_root();
    let out = Command::new(root.join("scripts/kafka-selftest"))
        .env("SELFTEST_KAFKA_PORT", "19192")
        .env(
            "SELFTEST_KAFKA_DATA",
            std::env::temp_dir().join(pseidon_tests::unique("selftest")),
        )
        .output()
        .expect("run scripts/kafka-selftest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed, 0 failed"),
        "self-test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
