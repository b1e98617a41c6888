use pseidon_plugin_api::{ConfEntry, ConfKind};

use super::{types::*, *};

fn conf(entries: &[(&str, ConfKind, &str)]) -> ConfView {
    ConfView::new(
        entries
            .iter()
            .map(|(k, kind, v)| ConfEntry {
                key: k.to_string(),
                kind: *kind,
                value: v.to_string(),
            })
            .collect(),
    )
}

#[test]
fn kafka_keys_lose_their_prefix_and_others_are_ignored() {
    let c = Config::parse(&conf(&[
        (
            "kafka.bootstrap.servers",
            ConfKind::String,
            "127.0.0.1:9092",
        ),
        ("kafka.linger.ms", ConfKind::Integer, "5"),
        ("plugin-dirs", ConfKind::Array, "[\"/x\"]"),
        ("kafkaesque", ConfKind::String, "no"),
    ]))
    .unwrap();
    assert_eq!(c.kafka_prop("bootstrap.servers"), Some("127.0.0.1:9092"));
    assert_eq!(c.kafka_prop("linger.ms"), Some("5"));
    assert_eq!(c.kafka.props.len(), 2);
}

#[test]
fn arrays_are_an_error_naming_the_key() {
    let err = Config::parse(&conf(&[(
        "kafka.bootstrap.servers",
        ConfKind::Array,
        "[\"a\"]",
    )]))
    .unwrap_err();
    assert!(err.to_string().contains("kafka.bootstrap.servers"), "{err}");
}

#[test]
fn rejected_property_names_key_and_reason() {
    let c = Config::parse(&conf(&[("kafka.no.such.property", ConfKind::String, "1")])).unwrap();
    let err = c
        .client_config(Role::Producer, &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("kafka.no.such.property"), "{err}");
    assert!(err.contains("No such configuration property"), "{err}");
}

#[test]
fn secrets_never_reach_errors_or_debug() {
    let c = Config::parse(&conf(&[(
        "kafka.ssl.key.password",
        ConfKind::String,
        "hunter2",
    )]))
    .unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
    let shown = c.kafka.to_string();
    assert!(
        shown.contains("ssl.key.password=<redacted>") && !shown.contains("hunter2"),
        "{shown}"
    );
    let text = redact(
        "sasl.password",
        "hunter2",
        "Invalid value \"hunter2\" for sasl.password",
    );
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        is_secret("kafka.sasl.password") && is_secret("ssl.key.password") && !is_secret("acks")
    );
}

#[test]
fn each_client_gets_only_the_properties_of_its_role() {
    let c = Config::parse(&conf(&[
        ("kafka.group.id", ConfKind::String, "g"),
        ("kafka.linger.ms", ConfKind::Integer, "7"),
        ("kafka.client.id", ConfKind::String, "me"),
    ]))
    .unwrap();
    let p = c.client_config(Role::Producer, &[]).unwrap();
    assert_eq!(p.get("group.id"), None);
    assert_eq!(p.get("linger.ms"), Some("7"));
    assert_eq!(p.get("client.id"), Some("me"));
    let k = c.client_config(Role::Consumer, &[]).unwrap();
    assert_eq!(k.get("group.id"), Some("g"));
    assert_eq!(k.get("linger.ms"), None);
    assert_eq!(k.get("client.id"), Some("me"));
}

#[test]
fn producer_queue_is_64_mib_unless_the_conf_says_otherwise() {
    let c = Config::parse(&conf(&[])).unwrap();
    let cfg = c.client_config(Role::Producer, &[]).unwrap();
    assert_eq!(cfg.get("queue.buffering.max.kbytes"), Some("65536"));
    let c = Config::parse(&conf(&[(
        "kafka.queue.buffering.max.kbytes",
        ConfKind::Integer,
        "1048576",
    )]))
    .unwrap();
    let cfg = c.client_config(Role::Producer, &[]).unwrap();
    assert_eq!(cfg.get("queue.buffering.max.kbytes"), Some("1048576"));
    // Not a consumer property.
    let cfg = c.client_config(Role::Consumer, &[]).unwrap();
    assert_eq!(cfg.get("queue.buffering.max.kbytes"), None);
}

#[test]
fn consumer_queues_are_16_mib_unless_the_conf_or_the_reader_says_otherwise() {
    let c = Config::parse(&conf(&[])).unwrap();
    for role in [Role::Consumer, Role::Replay, Role::Plain] {
        let cfg = c.client_config(role, &[]).unwrap();
        assert_eq!(cfg.get("queued.max.messages.kbytes"), Some("16384"));
    }
    // Not a producer property.
    let cfg = c.client_config(Role::Producer, &[]).unwrap();
    assert_eq!(cfg.get("queued.max.messages.kbytes"), None);
    let c = Config::parse(&conf(&[(
        "kafka.queued.max.messages.kbytes",
        ConfKind::Integer,
        "65536",
    )]))
    .unwrap();
    for role in [Role::Consumer, Role::Replay, Role::Plain] {
        let cfg = c.client_config(role, &[]).unwrap();
        assert_eq!(cfg.get("queued.max.messages.kbytes"), Some("65536"));
    }
    let per_reader = [(
        "kafka.queued.max.messages.kbytes".to_string(),
        "1024".to_string(),
    )];
    let cfg = c.client_config(Role::Consumer, &per_reader).unwrap();
    assert_eq!(cfg.get("queued.max.messages.kbytes"), Some("1024"));
}

#[test]
fn reader_max_messages_is_per_reader_only() {
    let ov = |v: &str| vec![(READER_MAX_MESSAGES.to_string(), v.to_string())];
    assert_eq!(reader_max_messages(&[]).unwrap(), None);
    assert_eq!(reader_max_messages(&ov("100")).unwrap(), Some(100));
    let err = reader_max_messages(&ov("0")).unwrap_err().to_string();
    assert!(
        err.contains(READER_MAX_MESSAGES) && err.contains("at least 1"),
        "{err}"
    );
    let err = reader_max_messages(&ov("x")).unwrap_err().to_string();
    assert!(err.contains(READER_MAX_MESSAGES), "{err}");
    // Not a librdkafka property: the consumer's configuration does not get it.
    let c = Config::parse(&conf(&[])).unwrap();
    let cfg = c.client_config(Role::Consumer, &ov("5")).unwrap();
    assert_eq!(cfg.get("reader-max-messages"), None);
    // Not a conf key.
    let err = Config::parse(&conf(&[(READER_MAX_MESSAGES, ConfKind::Integer, "5")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("per-reader"), "{err}");
}

#[test]
fn unknown_setting_is_an_error() {
    let err = Config::parse(&conf(&[(
        "pseidon-kafka.status-dbb",
        ConfKind::String,
        "/x",
    )]))
    .unwrap_err();
    assert!(
        err.to_string().contains("pseidon-kafka.status-dbb"),
        "{err}"
    );
}

#[test]
fn settings_parse() {
    let c = Config::parse(&conf(&[
        ("pseidon-kafka.status-db", ConfKind::String, "/tmp/s.db"),
        ("pseidon-kafka.group-max-messages", ConfKind::Integer, "10"),
        ("pseidon-kafka.group-max-bytes", ConfKind::Integer, "4096"),
        (
            "pseidon-kafka.connect-failure-timeout-ms",
            ConfKind::Integer,
            "2500",
        ),
        (
            "pseidon-kafka.consume-error-timeout-ms",
            ConfKind::Integer,
            "0",
        ),
    ]))
    .unwrap();
    assert_eq!(c.settings.consume_error_timeout_ms, 0);
    assert_eq!(Settings::default().consume_error_timeout_ms, 30_000);
    assert_eq!(c.settings.status_db, PathBuf::from("/tmp/s.db"));
    assert_eq!(c.settings.group_max_messages, 10);
    assert_eq!(c.settings.group_max_bytes, 4096);
    assert_eq!(Settings::default().group_max_bytes, 1 << 20);
    assert_eq!(c.settings.connect_failure_timeout_ms, 2500);
    assert_eq!(
        Settings::default().connect_failure_timeout_ms,
        default_connect_failure_timeout_ms()
    );
    let err = Config::parse(&conf(&[(
        "pseidon-kafka.group-max-messages",
        ConfKind::Integer,
        "0",
    )]))
    .unwrap_err();
    assert!(err.to_string().contains("at least 1"));
    let err = Config::parse(&conf(&[(
        "pseidon-kafka.group-max-bytes",
        ConfKind::Integer,
        "0",
    )]))
    .unwrap_err();
    assert!(
        err.to_string().contains("pseidon-kafka.group-max-bytes")
            && err.to_string().contains("at least 1"),
        "{err}"
    );
}

#[test]
fn property_types_match_configuration_md() {
    let md = include_str!("../../../vendor/rdkafka-sys/librdkafka/CONFIGURATION.md");
    let mut want: Vec<(String, PropType)> = Vec::new();
    for line in md.lines() {
        let Some((name, rest)) = line.split_once(" | ") else {
            continue;
        };
        let name = name.trim();
        let Some(ty) = rest
            .split("*Type: ")
            .nth(1)
            .and_then(|t| t.split('*').next())
        else {
            continue;
        };
        let ty = match ty {
            "string" | "pattern list" => PropType::Text,
            "enum value" | "CSV flags" => PropType::Enum,
            "boolean" => PropType::Boolean,
            "integer" => PropType::Integer,
            "float" => PropType::Float,
            _ => continue,
        };
        if !want.iter().any(|(n, _)| n == name) {
            want.push((name.to_string(), ty));
        }
    }
    want.sort_by(|a, b| a.0.cmp(&b.0));
    let got: Vec<(String, PropType)> = PROPERTY_TYPES
        .iter()
        .map(|(n, t)| (n.to_string(), *t))
        .collect();
    assert!(want.len() > 150, "{}", want.len());
    assert_eq!(
        got, want,
        "PROPERTY_TYPES is out of date with CONFIGURATION.md"
    );
}

#[test]
fn wrongly_typed_values_are_errors_naming_the_key() {
    for (key, kind, value, needle) in [
        (
            "kafka.bootstrap.servers",
            ConfKind::Integer,
            "9092",
            "must be a string",
        ),
        (
            "kafka.group.id",
            ConfKind::Boolean,
            "true",
            "must be a string",
        ),
        (
            "kafka.acks",
            ConfKind::Boolean,
            "true",
            "must be a whole number",
        ),
        (
            "kafka.linger.ms",
            ConfKind::Boolean,
            "true",
            "must be a number",
        ),
        (
            "kafka.retries",
            ConfKind::Float,
            "1.5",
            "must be a whole number",
        ),
        (
            "kafka.enable.idempotence",
            ConfKind::Integer,
            "1",
            "must be a boolean",
        ),
        (
            "kafka.debug",
            ConfKind::Array,
            "[\"all\"]",
            "an array is not allowed",
        ),
        (
            "pseidon-kafka.status-db",
            ConfKind::Integer,
            "5",
            "must be a path string",
        ),
        (
            "pseidon-kafka.group-max-messages",
            ConfKind::Boolean,
            "true",
            "not a non-negative whole number",
        ),
    ] {
        let err = Config::parse(&conf(&[(key, kind, value)]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key) && err.contains(needle), "{key}: {err}");
    }
    // The types librdkafka takes pass.
    let c = Config::parse(&conf(&[
        ("kafka.bootstrap.servers", ConfKind::String, "h:9092"),
        ("kafka.request.required.acks", ConfKind::Integer, "-1"),
        ("kafka.linger.ms", ConfKind::Integer, "5"),
        ("kafka.enable.idempotence", ConfKind::Boolean, "true"),
        ("kafka.retries", ConfKind::String, "3"),
        ("kafka.no.such.thing", ConfKind::Integer, "3"),
        ("pseidon-kafka.group-max-messages", ConfKind::String, "10"),
    ]))
    .unwrap();
    assert_eq!(c.kafka_prop("linger.ms"), Some("5"));
    assert_eq!(c.settings.group_max_messages, 10);
}

#[test]
fn a_bootstrap_host_that_is_a_bare_number_is_refused() {
    let refused = |key: &str, v: &str| {
        Config::parse(&conf(&[(key, ConfKind::String, v)]))
            .unwrap()
            .client_config(Role::Producer, &[])
            .unwrap_err()
            .to_string()
    };
    for v in ["9092", "1234:9092", "h:9092, 9092", "PLAINTEXT://1234:9092"] {
        let err = refused("kafka.bootstrap.servers", v);
        assert!(
            err.contains("kafka.bootstrap.servers") && err.contains("bare number"),
            "{v}: {err}"
        );
    }
    let err = refused("kafka.metadata.broker.list", "9092");
    assert!(err.contains("kafka.metadata.broker.list"), "{err}");
    // A per-reader override too.
    let err = Config::parse(&conf(&[]))
        .unwrap()
        .client_config(
            Role::Consumer,
            &[("kafka.bootstrap.servers".into(), "9092".into())],
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("bare number"), "{err}");
    for v in [
        "127.0.0.1:9092",
        "localhost",
        "b1:9092,b2:9093",
        "[::1]:9092",
        "SSL://broker-1.example:9093",
        "10.0.0.1",
    ] {
        Config::parse(&conf(&[("kafka.bootstrap.servers", ConfKind::String, v)]))
            .and_then(|c| c.client_config(Role::Producer, &[]).map(|_| ()))
            .unwrap_or_else(|e| panic!("{v}: {e}"));
    }
}

#[test]
fn a_relative_status_db_is_relative_to_the_conf_dir() {
    let c = Config::parse(&conf(&[
        ("pseidon-kafka.status-db", ConfKind::String, "state/s.db"),
        (CONF_DIR_KEY, ConfKind::String, "/etc/pseidon"),
    ]))
    .unwrap();
    assert_eq!(
        c.settings.status_db,
        PathBuf::from("/etc/pseidon/state/s.db")
    );
    let c = Config::parse(&conf(&[
        ("pseidon-kafka.status-db", ConfKind::String, "/var/s.db"),
        (CONF_DIR_KEY, ConfKind::String, "/etc/pseidon"),
    ]))
    .unwrap();
    assert_eq!(c.settings.status_db, PathBuf::from("/var/s.db"));
    // An older host sets no conf dir: as given.
    let c = Config::parse(&conf(&[(
        "pseidon-kafka.status-db",
        ConfKind::String,
        "s.db",
    )]))
    .unwrap();
    assert_eq!(c.settings.status_db, PathBuf::from("s.db"));
}

#[test]
fn plain_read_keys_are_per_reader_and_named_in_errors() {
    let ov = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(plain_read(&[]).unwrap(), None);
    let p = plain_read(&ov(&[(ASSIGN, "0, 2,2")])).unwrap().unwrap();
    assert_eq!(p.partitions, Some(vec![0, 2]));
    assert_eq!(p.start, StartOffset::Beginning);
    let p = plain_read(&ov(&[(START_OFFSET, "-5"), (STOP_TIMESTAMP_MS, "17")]))
        .unwrap()
        .unwrap();
    assert_eq!(
        (p.partitions, p.start, p.stop_timestamp_ms),
        (None, StartOffset::Tail(5), Some(17))
    );
    for (s, want) in [
        ("beginning", StartOffset::Beginning),
        ("end", StartOffset::End),
        ("stored", StartOffset::Stored),
        ("42", StartOffset::Offset(42)),
        ("s@1700000000000", StartOffset::Timestamp(1_700_000_000_000)),
    ] {
        assert_eq!(StartOffset::parse(s), Some(want), "{s}");
    }
    for bad in ["", "begin", "s@", "s@x", "--1", "e@5", "1.5"] {
        assert_eq!(StartOffset::parse(bad), None, "{bad}");
    }
    let err = plain_read(&ov(&[(START_OFFSET, "soon")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains(START_OFFSET) && err.contains("soon"), "{err}");
    let err = plain_read(&ov(&[(ASSIGN, "0,x")])).unwrap_err().to_string();
    assert!(err.contains(ASSIGN) && err.contains("`x`"), "{err}");
    // Not librdkafka properties, and not conf keys.
    let c = Config::parse(&conf(&[])).unwrap();
    let cfg = c
        .client_config(Role::Plain, &ov(&[(ASSIGN, "0"), (START_OFFSET, "end")]))
        .unwrap();
    assert_eq!(cfg.get("assign"), None);
    assert_eq!(cfg.get("enable.auto.commit"), Some("false"));
    let err = Config::parse(&conf(&[(START_OFFSET, ConfKind::String, "end")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("per-reader"), "{err}");
}

#[test]
fn the_revoke_drain_must_stay_below_max_poll_interval() {
    let c = Config::parse(&conf(&[])).unwrap();
    assert_eq!(c.settings.revoke_drain_ms, 5_000);
    let c = Config::parse(&conf(&[(
        "pseidon-kafka.revoke-drain-ms",
        ConfKind::Integer,
        "0",
    )]))
    .unwrap();
    assert_eq!(c.settings.revoke_drain_ms, 0);
    let err = Config::parse(&conf(&[
        ("pseidon-kafka.revoke-drain-ms", ConfKind::Integer, "60000"),
        ("kafka.max.poll.interval.ms", ConfKind::Integer, "60000"),
    ]))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("pseidon-kafka.revoke-drain-ms")
            && err.contains("max.poll.interval.ms (60000)"),
        "{err}"
    );
}

mod named_instances {
    use super::*;
    use crate::config::instances::{self, INSTANCES_PREFIX};

    fn parse_all(entries: &[(&str, ConfKind, &str)]) -> Result<(Config, Vec<Config>), Error> {
        let view = conf(entries);
        let default = Config::parse(&view)?;
        let named = instances::parse(&view, &default)?;
        Ok((default, named))
    }

    #[test]
    fn an_instance_view_is_its_keys_renamed_and_parsed_alike() {
        let (default, named) = parse_all(&[
            (
                "kafka.bootstrap.servers",
                ConfKind::String,
                "127.0.0.1:9092",
            ),
            (
                "pseidon-kafka.status-db",
                ConfKind::String,
                "/var/lib/p/status.db",
            ),
            (
                "pseidon-kafka.instances.audit.kafka.bootstrap.servers",
                ConfKind::String,
                "127.0.0.1:19861",
            ),
            (
                "pseidon-kafka.instances.audit.kafka.acks",
                ConfKind::String,
                "all",
            ),
            (
                "pseidon-kafka.instances.audit.group-max-messages",
                ConfKind::Integer,
                "7",
            ),
            (
                "pseidon-kafka.instances.b-2.kafka.bootstrap.servers",
                ConfKind::String,
                "127.0.0.1:19862",
            ),
            (
                "pseidon-kafka.instances.b-2.status-db",
                ConfKind::String,
                "b.db",
            ),
            (CONF_DIR_KEY, ConfKind::String, "/etc/p"),
        ])
        .unwrap();
        assert_eq!(default.instance, None);
        assert_eq!(default.sink_name(), crate::SINK_NAME);
        assert_eq!(
            default.kafka_prop("bootstrap.servers"),
            Some("127.0.0.1:9092")
        );
        assert_eq!(named.len(), 2);
        let audit = &named[0];
        assert_eq!(audit.instance.as_deref(), Some("audit"));
        assert_eq!(audit.sink_name(), "pseidon.kafka.util.datasink.audit");
        assert_eq!(audit.source_name(), "pseidon.kafka.util.datasource.audit");
        assert_eq!(
            audit.kafka_prop("bootstrap.servers"),
            Some("127.0.0.1:19861")
        );
        assert_eq!(audit.kafka_prop("acks"), Some("all"));
        assert_eq!(audit.settings.group_max_messages, 7);
        assert_eq!(
            default.settings.group_max_messages, 10_000,
            "not the other way"
        );
        // Derived beside the default's.
        assert_eq!(
            audit.settings.status_db,
            PathBuf::from("/var/lib/p/status.audit.db")
        );
        // A relative one is relative to the conf dir, as the default's.
        assert_eq!(named[1].settings.status_db, PathBuf::from("/etc/p/b.db"));
        assert_eq!(
            named[1].settings.group_max_messages, 10_000,
            "not inherited"
        );
        audit.client_config(Role::Producer, &[]).unwrap();
    }

    #[test]
    fn kafka_properties_are_never_inherited() {
        let (default, named) = parse_all(&[
            (
                "kafka.bootstrap.servers",
                ConfKind::String,
                "127.0.0.1:9092",
            ),
            ("kafka.sasl.password", ConfKind::String, "default-secret"),
            ("kafka.sasl.username", ConfKind::String, "u"),
            (
                "pseidon-kafka.instances.b.kafka.bootstrap.servers",
                ConfKind::String,
                "127.0.0.1:19861",
            ),
        ])
        .unwrap();
        assert_eq!(default.kafka_prop("sasl.password"), Some("default-secret"));
        let b = &named[0];
        assert_eq!(b.kafka_prop("sasl.password"), None);
        assert_eq!(b.kafka_prop("sasl.username"), None);
        let cfg = b.client_config(Role::Consumer, &[]).unwrap();
        assert_eq!(cfg.get("sasl.password"), None);
        assert_eq!(cfg.get("bootstrap.servers"), Some("127.0.0.1:19861"));
    }

    #[test]
    fn a_bad_name_is_an_error_naming_the_key() {
        for key in [
            "pseidon-kafka.instances.Audit.kafka.bootstrap.servers",
            "pseidon-kafka.instances.a b.kafka.bootstrap.servers",
            "pseidon-kafka.instances..kafka.bootstrap.servers",
            "pseidon-kafka.instances.a/b.status-db",
        ] {
            let err = parse_all(&[(key, ConfKind::String, "x:1")]).unwrap_err();
            let Error::Config { key: k, .. } = &err else {
                panic!("{err:?}");
            };
            assert_eq!(k, key);
        }
        let err = parse_all(&[("pseidon-kafka.instances.x", ConfKind::String, "y")]).unwrap_err();
        assert!(
            err.to_string().contains("pseidon-kafka.instances.x"),
            "{err}"
        );
    }

    #[test]
    fn an_instance_needs_its_own_bootstrap_servers() {
        let err = parse_all(&[
            (
                "kafka.bootstrap.servers",
                ConfKind::String,
                "127.0.0.1:9092",
            ),
            (
                "pseidon-kafka.instances.b.kafka.acks",
                ConfKind::String,
                "all",
            ),
        ])
        .unwrap_err();
        let Error::Config { key, reason, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(key, "pseidon-kafka.instances.b.kafka.bootstrap.servers");
        assert!(reason.contains("not inherited"), "{reason}");
    }

    #[test]
    fn errors_of_an_instance_name_its_keys_as_written() {
        let err = parse_all(&[
            (
                "pseidon-kafka.instances.b.kafka.bootstrap.servers",
                ConfKind::String,
                "127.0.0.1:1",
            ),
            (
                "pseidon-kafka.instances.b.no-such-setting",
                ConfKind::Integer,
                "1",
            ),
        ])
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("pseidon-kafka.instances.b.no-such-setting"),
            "{err}"
        );
        let err = parse_all(&[(
            "pseidon-kafka.instances.b.kafka.bootstrap.servers",
            ConfKind::Integer,
            "9092",
        )])
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("pseidon-kafka.instances.b.kafka.bootstrap.servers"),
            "{err}"
        );
        // librdkafka's check of a property too.
        let err = parse_all(&[
            (
                "pseidon-kafka.instances.b.kafka.bootstrap.servers",
                ConfKind::String,
                "127.0.0.1:1",
            ),
            (
                "pseidon-kafka.instances.b.kafka.no.such.property",
                ConfKind::String,
                "1",
            ),
        ])
        .unwrap_err();
        let Error::Config { key, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(key, "pseidon-kafka.instances.b.kafka.no.such.property");
        // The default parse ignores the instances' keys, and nothing else.
        assert!(
            Config::parse(&conf(&[(
                &format!("{INSTANCES_PREFIX}b.whatever"),
                ConfKind::String,
                "x"
            )]))
            .is_ok()
        );
        assert!(
            Config::parse(&conf(&[("pseidon-kafka.instances", ConfKind::String, "x")])).is_err()
        );
    }

    #[test]
    fn two_instances_on_one_status_db_is_an_error_naming_both() {
        let err = parse_all(&[
            (
                "pseidon-kafka.status-db",
                ConfKind::String,
                "/tmp/p/status.db",
            ),
            (
                "pseidon-kafka.instances.b.kafka.bootstrap.servers",
                ConfKind::String,
                "127.0.0.1:1",
            ),
            (
                "pseidon-kafka.instances.b.status-db",
                ConfKind::String,
                "/tmp/p/./status.db",
            ),
        ])
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("pseidon-kafka.instances.b.status-db"),
            "{text}"
        );
        assert!(text.contains("pseidon-kafka.status-db"), "{text}");
        // Two named ones: b's derived path is the one c sets.
        let err = parse_all(&[
            (
                "pseidon-kafka.status-db",
                ConfKind::String,
                "/tmp/p/status.db",
            ),
            (
                "pseidon-kafka.instances.b.kafka.bootstrap.servers",
                ConfKind::String,
                "127.0.0.1:1",
            ),
            (
                "pseidon-kafka.instances.c.kafka.bootstrap.servers",
                ConfKind::String,
                "127.0.0.1:2",
            ),
            (
                "pseidon-kafka.instances.c.status-db",
                ConfKind::String,
                "/tmp/p/status.b.db",
            ),
        ])
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("pseidon-kafka.instances.b.status-db")
                && text.contains("pseidon-kafka.instances.c.status-db"),
            "{text}"
        );
    }
}
