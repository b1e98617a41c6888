//! Bad input that the host, datasink, datasource and status-database tests of the other
//! files do not already cover (the full list, with the test of each case, is in
//! docs/RELIABILITY.md). Each case asserts a clear error that names the culprit (key,
//! file, topic, property) and, where data is involved, that nothing was lost or written.
//!
//! The plugin runs in this process through the real host (`pseidon_host::Host`) from a
//! conf text; tests that load it are serialised (`plugin_lock`).

use std::{path::Path, time::Duration};

use pseidon_plugin_api::{Error, ReaderOptions, Record, Source};
use pseidon_tests::{
    bootstrap, create_topic, init_test_logging, kcat_values, plugin_lock, plugin_so, temp_dir,
    unique,
};

const SINK: &str = "pseidon.kafka.util.datasink";
const SOURCE: &str = "pseidon.kafka.util.datasource";

/// Loads the Kafka plugin, strict, from `plugin-dirs` plus `body` (which must set
/// `pseidon-kafka.status-db` itself if it needs one).
fn host(body: &str) -> Result<pseidon_host::Host, String> {
    init_test_logging();
    let text = format!(
        "plugin-dirs = [{:?}]\nstrict = true\nshutdown-timeout-ms = 10000\n{body}\n",
        plugin_so("pseidon_kafka")
    );
    let conf = pseidon_host::Conf::parse(&text, Path::new("/etc/pseidon/bad-input.toml"))
        .map_err(|e| e.to_string())?;
    pseidon_host::Host::load(conf).map_err(|e| e.to_string())
}

/// `host(body)` must fail; returns the error text.
fn init_error(body: &str) -> String {
    match host(body) {
        Ok(mut h) => {
            let _ = h.shutdown();
            panic!("init accepted bad conf:\n{body}")
        }
        Err(e) => e,
    }
}

fn status_db() -> String {
    let dir = temp_dir("bad-input-db");
    format!("{:?}", dir.join("status.db").display().to_string())
}

/// A new one-partition topic, named after `prefix`, on the test broker.
fn new_topic(prefix: &str) -> String {
    let topic = unique(prefix);
    create_topic(&topic, 1);
    topic
}

/// Loads the plugin (see [`host`]) with the status db `db` (a TOML string), the test
/// broker, a new `group.id` named `<group>-group` and then the `[kafka]` lines `extra`;
/// panics with `loads` if it fails. Returns the host and its datasource.
fn host_with_source(
    db: &str,
    group: &str,
    extra: &str,
    loads: &str,
) -> (pseidon_host::Host, Source) {
    let h = host(&format!(
        "\"pseidon-kafka.status-db\" = {db}\n[kafka]\nbootstrap.servers = \"{}\"\ngroup.id = \"{}\"\n{extra}",
        bootstrap(),
        unique(&format!("{group}-group"))
    ))
    .expect(loads);
    let source = h
        .registry()
        .reg_get_wait_source(SOURCE, Duration::from_secs(5))
        .expect("source");
    (h, source)
}

/// Opening a reader of `topics` with `options` must fail (`why` names the case); returns
/// the error, printed as a `CASE` line.
fn reader_error(source: &Source, topics: &[&str], options: ReaderOptions, why: &str) -> Error {
    let err = source.reader(topics, options).err().expect(why);
    eprintln!("CASE {}: {}", module_path!(), err);
    err
}

/// A conf file that is not UTF-8: an error naming the file (no plugin involved).
#[test]
fn conf_file_that_is_not_utf8_names_the_file() {
    let dir = temp_dir("bad-input-conf");
    let path = dir.join("pseidon.toml");
    std::fs::write(&path, b"strict = true\n\xff\xfe = 1\n").expect("write conf");
    let err = pseidon_host::Conf::load(&path)
        .expect_err("non-UTF-8 conf accepted")
        .to_string();
    eprintln!("CASE {}: {}", module_path!(), err);
    assert!(err.contains(&path.display().to_string()), "{err}");
}

/// `kafka.*` values of the wrong type for librdkafka (mistyped values): init fails naming
/// the key and librdkafka's reason.
#[test]
fn mistyped_kafka_values_fail_init_naming_key_and_reason() {
    let _serial = plugin_lock();
    for (line, key) in [
        ("\"kafka.linger.ms\" = \"soon\"", "kafka.linger.ms"),
        (
            "\"kafka.enable.idempotence\" = \"maybe\"",
            "kafka.enable.idempotence",
        ),
        (
            "\"kafka.message.max.bytes\" = -5",
            "kafka.message.max.bytes",
        ),
        ("[kafka]\ncompression.type = true", "kafka.compression.type"),
    ] {
        let err = init_error(line);
        eprintln!("CASE {}: {}", module_path!(), err);
        assert!(
            err.contains(key),
            "{line}: error does not name {key}: {err}"
        );
        assert!(
            err.contains("Invalid value") || err.contains("librdkafka rejected"),
            "{line}: no reason: {err}"
        );
    }
}

/// A `kafka.*` datetime or table value: init fails naming the key (only strings,
/// numbers and booleans pass to librdkafka).
#[test]
fn datetime_and_table_kafka_values_fail_init_naming_the_key() {
    let _serial = plugin_lock();
    let err = init_error("[kafka]\nlinger.ms = 1979-05-27T07:32:00Z");
    eprintln!("CASE {}: {}", module_path!(), err);
    assert!(
        err.contains("kafka.linger.ms") && err.contains("datetime"),
        "{err}"
    );
    let err = init_error("[kafka]\nsasl = {}");
    eprintln!("CASE {}: {}", module_path!(), err);
    assert!(err.contains("kafka.sasl") && err.contains("table"), "{err}");
}

/// The plugin's own settings: unknown, mistyped, zero or empty values fail init naming
/// the key.
#[test]
fn bad_plugin_settings_fail_init_naming_the_key() {
    let _serial = plugin_lock();
    for (line, key, reason) in [
        (
            "\"pseidon-kafka.status-dbb\" = \"/tmp/x.db\"",
            "pseidon-kafka.status-dbb",
            "unknown",
        ),
        (
            "\"pseidon-kafka.group-max-messages\" = \"many\"",
            "pseidon-kafka.group-max-messages",
            "many",
        ),
        (
            "\"pseidon-kafka.group-max-messages\" = 0",
            "pseidon-kafka.group-max-messages",
            "at least 1",
        ),
        (
            "\"pseidon-kafka.group-max-wait-ms\" = -1",
            "pseidon-kafka.group-max-wait-ms",
            "-1",
        ),
        (
            "\"pseidon-kafka.status-db\" = \"  \"",
            "pseidon-kafka.status-db",
            "path",
        ),
        (
            "\"pseidon-kafka.queue-full-timeout-ms\" = [1]",
            "pseidon-kafka.queue-full-timeout-ms",
            "array",
        ),
    ] {
        let err = init_error(line);
        eprintln!("CASE {}: {}", module_path!(), err);
        assert!(err.contains(key) && err.contains(reason), "{line}: {err}");
    }
}

/// A batch whose second record is over `message.max.bytes`: the first is accepted and
/// delivered, the batch stops at the second with an error naming size and limit, and
/// nothing after it is written.
#[test]
fn batch_with_an_oversize_record_stops_there_naming_size_and_limit() {
    let _serial = plugin_lock();
    let topic = new_topic("bad-batch");
    let mut h = host(&format!(
        "\"pseidon-kafka.status-db\" = {}\n[kafka]\nbootstrap.servers = \"{}\"\nmessage.max.bytes = 10000\n",
        status_db(),
        bootstrap()
    ))
    .expect("host loads the plugin");
    let sink = h
        .registry()
        .reg_get_wait_sink(SINK, Duration::from_secs(5))
        .expect("sink");
    let big = vec![b'x'; 20_000];
    let records = [
        Record::new(&topic, b"small-1"),
        Record::new(&topic, &big),
        Record::new(&topic, b"small-3"),
    ];
    let b = sink.write_batch(&records).expect("write_batch");
    assert_eq!(b.accepted, 1, "{b:?}");
    let err = b.error.expect("the oversize record is refused");
    eprintln!("CASE {}: {}", module_path!(), err);
    let text = err.to_string();
    assert!(matches!(err, Error::MessageTooLarge { .. }), "{err:?}");
    assert!(
        text.contains("20000") && text.contains("10000") && text.contains(&topic),
        "{text}"
    );
    let report = sink.flush(Duration::from_secs(30)).expect("flush");
    assert!(report.is_clean() && report.delivered == 1, "{report:?}");
    assert!(h.shutdown().is_empty());
    assert_eq!(
        kcat_values(&topic),
        vec![b"small-1".to_vec()],
        "only the first record was written"
    );
}

/// Contradicting librdkafka properties that are each valid alone (`fetch.max.bytes`
/// below `message.max.bytes`): opening a reader fails naming both properties.
#[test]
fn contradicting_consumer_properties_are_a_clear_error_naming_both() {
    let _serial = plugin_lock();
    let topic = new_topic("bad-fetch");
    let (mut h, source) = host_with_source(
        &status_db(),
        "bad-fetch",
        "fetch.max.bytes = 1024\nmessage.max.bytes = 8192\n",
        "each property alone is valid: init passes",
    );
    let err = reader_error(
        &source,
        &[topic.as_str()],
        ReaderOptions::default(),
        "reader with fetch.max.bytes < message.max.bytes",
    )
    .to_string();
    assert!(
        err.contains("fetch.max.bytes") && err.contains("message.max.bytes"),
        "{err}"
    );
    assert!(h.shutdown().is_empty());
}

/// A reader without topics, and a reader whose group id override is empty: each is
/// refused with an error saying what is missing.
#[test]
fn reader_without_topics_or_with_an_empty_group_is_refused() {
    let _serial = plugin_lock();
    let topic = new_topic("bad-reader");
    let (mut h, source) = host_with_source(&status_db(), "bad-reader", "", "host loads the plugin");
    let err = reader_error(
        &source,
        &[],
        ReaderOptions::default(),
        "reader without topics",
    )
    .to_string();
    assert!(err.to_lowercase().contains("topic"), "{err}");
    let err = reader_error(
        &source,
        &[topic.as_str()],
        ReaderOptions::default().group_id(""),
        "reader with an empty group id",
    )
    .to_string();
    assert!(err.contains("group"), "{err}");
    assert!(h.shutdown().is_empty());
}

/// A status database path that is a directory: opening a reader fails with a
/// `StatusDb` error naming that path; no group is handed out.
#[test]
fn status_db_path_that_is_a_directory_is_a_clear_error() {
    let _serial = plugin_lock();
    let topic = new_topic("bad-dbdir");
    let dir = temp_dir("bad-input-dbdir");
    let (mut h, source) = host_with_source(
        &format!("{:?}", dir.display().to_string()),
        "bad-dbdir",
        "",
        "host loads the plugin (the database opens at first use)",
    );
    let err = reader_error(
        &source,
        &[topic.as_str()],
        ReaderOptions::default(),
        "reader with a directory as status db",
    );
    assert!(matches!(err, Error::StatusDb { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&dir.display().to_string()),
        "{err}"
    );
    assert!(h.shutdown().is_empty());
}

/// A status database in a directory that does not exist: a `StatusDb` error naming the
/// path (never a database silently created somewhere else).
#[test]
fn status_db_in_a_missing_directory_is_a_clear_error() {
    let _serial = plugin_lock();
    let topic = new_topic("bad-dbmissing");
    let path = std::env::temp_dir()
        .join(unique("no-such-dir"))
        .join("status.db");
    let (mut h, source) = host_with_source(
        &format!("{:?}", path.display().to_string()),
        "bad-dbmissing",
        "",
        "host loads the plugin",
    );
    match source.reader(&[topic.as_str()], ReaderOptions::default()) {
        Err(err) => {
            assert!(matches!(err, Error::StatusDb { .. }), "{err:?}");
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
        }
        Ok(r) => {
            // Creating the missing directory is acceptable only if the file is then
            // exactly where the conf says.
            let _ = r.close();
            assert!(
                path.exists(),
                "reader opened, but {} was not created",
                path.display()
            );
        }
    }
    assert!(h.shutdown().is_empty());
}
