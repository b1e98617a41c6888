//! Property tests of the plugin's conf parsing ([`Config::parse`]) and of the librdkafka
//! configurations built from it ([`Config::client_config`]): whatever keys, kinds and
//! values the host hands over, parsing never panics, every error is a `Config` error that
//! names the culprit key as written in the conf, and secret values never reach an error
//! or a `Debug` rendering. Also the group-id parsing (`source::parse_group_id`) that
//! `mark_done` uses: arbitrary ids never panic, errors quote the id.

use proptest::prelude::*;
use pseidon_kafka::config::{Config, KAFKA_PREFIX, Role, SETTINGS_PREFIX, is_secret};
use pseidon_kafka::source::{GroupKey, parse_group_id};
use pseidon_plugin_api::{ConfEntry, ConfKind, ConfView, Error};

const SETTINGS: &[&str] = &[
    "queue-full-timeout-ms",
    "status-db",
    "group-max-messages",
    "group-max-bytes",
    "group-max-wait-ms",
    "done-retention-ms",
];

/// librdkafka properties that are safe to hand arbitrary values (nothing that loads a
/// library or runs a program, such as `plugin.library.paths`).
const PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "acks",
    "linger.ms",
    "batch.size",
    "message.max.bytes",
    "compression.type",
    "enable.idempotence",
    "retries",
    "client.id",
    "debug",
    "socket.timeout.ms",
    "security.protocol",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.key.password",
    "ssl.keystore.password",
    "auto.offset.reset",
    "session.timeout.ms",
    "no.such.property",
];

fn kind() -> impl Strategy<Value = ConfKind> {
    prop_oneof![
        Just(ConfKind::String),
        Just(ConfKind::Integer),
        Just(ConfKind::Float),
        Just(ConfKind::Boolean),
        Just(ConfKind::Datetime),
        Just(ConfKind::Array),
        Just(ConfKind::Table),
    ]
}

fn scalar_kind() -> impl Strategy<Value = ConfKind> {
    prop_oneof![
        Just(ConfKind::String),
        Just(ConfKind::Integer),
        Just(ConfKind::Float),
        Just(ConfKind::Boolean),
    ]
}

/// Keys of every shape: arbitrary text, `kafka.` + anything, known and unknown
/// `pseidon-kafka.` settings, and near misses of both prefixes.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        any::<String>().prop_map(|s| format!("{KAFKA_PREFIX}{s}")),
        prop::sample::select(PROPERTIES).prop_map(|p| format!("{KAFKA_PREFIX}{p}")),
        prop::sample::select(SETTINGS).prop_map(|s| format!("{SETTINGS_PREFIX}{s}")),
        any::<String>().prop_map(|s| format!("{SETTINGS_PREFIX}{s}")),
        prop_oneof![
            Just("kafka".to_string()),
            Just("kafkaesque.x".to_string()),
            Just("pseidon-kafka".to_string()),
            Just("Kafka.acks".to_string()),
            Just("pseidon_kafka.status-db".to_string()),
        ],
    ]
}

/// Values of every shape: arbitrary text, numbers (negative, huge, padded), booleans.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| format!(" {n} ")),
        Just("18446744073709551616".to_string()),
        Just(String::new()),
        Just("true".to_string()),
        "[0-9]{1,30}",
    ]
}

fn entry() -> impl Strategy<Value = ConfEntry> {
    (key(), kind(), value()).prop_map(|(key, kind, value)| ConfEntry { key, kind, value })
}

fn view(entries: &[ConfEntry]) -> ConfView {
    ConfView::new(entries.to_vec())
}

fn relevant(key: &str) -> bool {
    key.starts_with(KAFKA_PREFIX) || key.starts_with(SETTINGS_PREFIX)
}

/// A parse error is a `Config` error about one of the plugin's own keys from the input,
/// and its text names that key.
fn assert_clear_error(err: &Error, entries: &[ConfEntry]) -> Result<(), TestCaseError> {
    let text = err.to_string();
    match err {
        Error::Config { key, reason } => {
            prop_assert!(
                entries.iter().any(|e| &e.key == key),
                "error names key {key:?} that is not in the conf: {text}"
            );
            prop_assert!(
                relevant(key),
                "error about a key the plugin ignores: {text}"
            );
            prop_assert!(
                text.contains(key.as_str()),
                "error text does not name the key: {text}"
            );
            prop_assert!(!reason.trim().is_empty(), "error without a reason: {text}");
        }
        other => prop_assert!(false, "not a Config error: {other:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Arbitrary confs: never a panic; either a config or a clear error naming a key.
    #[test]
    fn parse_never_panics_and_errors_name_the_key(entries in prop::collection::vec(entry(), 0..12)) {
        match Config::parse(&view(&entries)) {
            Ok(config) => {
                // Every scalar kafka.* key reached the librdkafka properties, last one wins.
                for e in entries.iter().rev() {
                    if let Some(p) = e.key.strip_prefix(KAFKA_PREFIX) {
                        let last = entries.iter().rev().find(|x| x.key == e.key).map(|x| x.value.as_str());
                        prop_assert_eq!(config.kafka_prop(p), last, "property {}", p);
                    }
                }
            }
            Err(err) => assert_clear_error(&err, &entries)?,
        }
    }

    /// Keys without either prefix are ignored, whatever their kind or value.
    #[test]
    fn keys_without_the_prefixes_are_ignored(
        entries in prop::collection::vec((any::<String>(), kind(), value()), 0..12)
    ) {
        let entries: Vec<ConfEntry> = entries
            .into_iter()
            .filter(|(k, _, _)| !relevant(k))
            .map(|(key, kind, value)| ConfEntry { key, kind, value })
            .collect();
        let config = Config::parse(&view(&entries));
        prop_assert!(config.is_ok(), "{:?}", config);
        if let Ok(config) = config {
            prop_assert_eq!(config, Config::parse(&ConfView::default()).map_err(|e| TestCaseError::fail(e.to_string()))?);
        }
    }

    /// A `kafka.*` array, table or datetime is an error naming that key.
    #[test]
    fn non_scalar_kafka_values_are_refused(
        property in prop::sample::select(PROPERTIES),
        kind in prop_oneof![Just(ConfKind::Array), Just(ConfKind::Table), Just(ConfKind::Datetime)],
        value in value(),
    ) {
        let key = format!("{KAFKA_PREFIX}{property}");
        let entries = vec![ConfEntry { key: key.clone(), kind, value }];
        let err = Config::parse(&view(&entries));
        prop_assert!(err.is_err(), "{:?} accepted", kind);
        if let Err(err) = err {
            assert_clear_error(&err, &entries)?;
            prop_assert!(err.to_string().contains(&key));
        }
    }

    /// Numeric settings: arbitrary text is either that number or an error naming the key
    /// and quoting the value.
    #[test]
    fn numeric_settings_parse_or_name_key_and_value(
        setting in prop::sample::select(&["queue-full-timeout-ms", "group-max-wait-ms", "done-retention-ms", "group-max-messages", "group-max-bytes"][..]),
        kind in scalar_kind(),
        value in value(),
    ) {
        let key = format!("{SETTINGS_PREFIX}{setting}");
        let entries = vec![ConfEntry { key: key.clone(), kind, value: value.clone() }];
        match Config::parse(&view(&entries)) {
            Ok(c) => {
                let n: u64 = value.trim().parse().map_err(|_| TestCaseError::fail(format!("`{value}` accepted for {key}")))?;
                let got = match setting {
                    "queue-full-timeout-ms" => c.settings.queue_full_timeout_ms,
                    "group-max-wait-ms" => c.settings.group_max_wait_ms,
                    "done-retention-ms" => c.settings.done_retention_ms,
                    "group-max-bytes" => c.settings.group_max_bytes as u64,
                    _ => c.settings.group_max_messages as u64,
                };
                prop_assert_eq!(got, n);
            }
            Err(err) => {
                assert_clear_error(&err, &entries)?;
                let parsed: Option<u64> = value.trim().parse().ok();
                prop_assert!(
                    parsed.is_none() || (setting.starts_with("group-max-") && setting != "group-max-wait-ms" && parsed == Some(0))
                        || parsed.is_some_and(|n| usize::try_from(n).is_err()),
                    "valid value `{}` refused: {}", value, err
                );
            }
        }
    }

    /// Building librdkafka configurations from arbitrary properties never panics; a
    /// rejection names the `kafka.` key; secret values never show in errors or Debug.
    #[test]
    fn client_config_errors_name_the_key_and_hide_secrets(
        props in prop::collection::vec((prop::sample::select(PROPERTIES), value()), 0..6),
        secret in "S3cr3t-[A-Za-z0-9]{12}",
        secret_prop in prop::sample::select(&["sasl.password", "ssl.key.password", "ssl.keystore.password", "sasl.oauthbearer.client.secret"][..]),
        role in prop_oneof![Just(Role::Producer), Just(Role::Consumer), Just(Role::Replay)],
    ) {
        let mut entries: Vec<ConfEntry> = props
            .iter()
            .map(|(p, v)| ConfEntry { key: format!("{KAFKA_PREFIX}{p}"), kind: ConfKind::String, value: v.clone() })
            .collect();
        entries.push(ConfEntry { key: format!("{KAFKA_PREFIX}{secret_prop}"), kind: ConfKind::String, value: secret.clone() });
        prop_assert!(is_secret(secret_prop));
        let config = Config::parse(&view(&entries)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(!format!("{config:?}").contains(&secret), "secret in Debug: {:?}", config);
        match config.client_config(role, &[]) {
            Ok(_) => {}
            Err(err) => {
                assert_clear_error(&err, &entries)?;
                prop_assert!(!err.to_string().contains(&secret), "secret in error: {}", err);
                prop_assert!(!format!("{err:?}").contains(&secret), "secret in error Debug: {:?}", err);
            }
        }
    }

    /// A secret-looking property that librdkafka rejects (unknown name): the error names
    /// the key and never shows the value.
    #[test]
    fn rejected_secret_looking_property_hides_its_value(secret in "S3cr3t-[A-Za-z0-9]{12}") {
        let entries = vec![ConfEntry {
            key: format!("{KAFKA_PREFIX}sasl.oauthbearer.client.secret.password.bad"),
            kind: ConfKind::String,
            value: secret.clone(),
        }];
        let config = Config::parse(&view(&entries)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let err = config.client_config(Role::Producer, &[]);
        prop_assert!(err.is_err(), "an unknown property was accepted");
        if let Err(err) = err {
            assert_clear_error(&err, &entries)?;
            prop_assert!(!err.to_string().contains(&secret), "secret in error: {}", err);
        }
    }
}

// ---------------------------------------------------------------------------------
// Group ids (`topic:partition:min-offset:max-offset`), as `mark_done` receives them.
// ---------------------------------------------------------------------------------

/// Strings that look more or less like group ids: arbitrary text, four arbitrary parts,
/// numbers with signs, spaces, leading `+`, overflow, empty parts.
fn group_id_like() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        any::<String>(),
        "[0-9]{1,25}",
        any::<i64>().prop_map(|n| n.to_string()),
        Just(String::new()),
        Just("+1".to_string()),
        Just(" 1".to_string()),
        Just("1 ".to_string()),
        Just("2147483648".to_string()),
        Just("9223372036854775808".to_string()),
    ];
    prop_oneof![
        any::<String>(),
        (part.clone(), part.clone(), part.clone(), part.clone())
            .prop_map(|(a, b, c, d)| format!("{a}:{b}:{c}:{d}")),
        (part.clone(), part.clone(), part).prop_map(|(a, b, c)| format!("{a}:{b}:{c}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Arbitrary ids: never a panic; an error is `InvalidGroupId` carrying the id as given,
    /// and its text quotes it and says what the expected form is.
    #[test]
    fn group_id_parse_never_panics_and_errors_quote_the_id(id in group_id_like()) {
        match parse_group_id(&id) {
            Ok(key) => {
                prop_assert!(!key.topic.is_empty());
                prop_assert!(key.partition >= 0 && key.min_offset >= 0 && key.min_offset <= key.max_offset);
                // The canonical form of what was parsed parses to the same parts.
                let canonical = format!("{}:{}:{}:{}", key.topic, key.partition, key.min_offset, key.max_offset);
                prop_assert_eq!(parse_group_id(&canonical).ok(), Some(key));
            }
            Err(Error::InvalidGroupId { group_id, reason }) => {
                prop_assert_eq!(&group_id, &id);
                let text = Error::InvalidGroupId { group_id: group_id.clone(), reason: reason.clone() }.to_string();
                prop_assert!(text.contains(&id), "error does not quote the id: {}", text);
                prop_assert!(reason.contains("topic:partition:min-offset:max-offset"), "{}", reason);
            }
            Err(other) => prop_assert!(false, "not an InvalidGroupId error: {:?}", other),
        }
    }

    /// Every well-formed id (any non-empty topic, even one with `:` in it) parses back
    /// to its parts.
    #[test]
    fn well_formed_group_ids_round_trip(
        topic in ".{1,40}",
        partition in 0..=i32::MAX,
        min in 0..=i64::MAX,
        len in 0..=1_000_000i64,
    ) {
        let max = min.saturating_add(len);
        let id = format!("{topic}:{partition}:{min}:{max}");
        let key = parse_group_id(&id).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(key, GroupKey { topic, partition, min_offset: min, max_offset: max });
    }

    /// A min-offset above the max-offset is refused, naming both.
    #[test]
    fn inverted_ranges_are_refused(topic in "[a-z._-]{1,20}", partition in 0..100i32, a in 0..i64::MAX, b in 0..i64::MAX) {
        prop_assume!(a != b);
        let (min, max) = (a.max(b), a.min(b));
        let id = format!("{topic}:{partition}:{min}:{max}");
        let err = parse_group_id(&id);
        prop_assert!(err.is_err(), "{} accepted", id);
        if let Err(err) = err {
            let text = err.to_string();
            prop_assert!(text.contains(&min.to_string()) && text.contains(&max.to_string()), "{}", text);
        }
    }
}
