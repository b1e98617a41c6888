//! The plugin's settings, parsed from its view of the host conf, and the one place
//! where librdkafka configurations are built (every `ClientConfig::set` is here).
//!
//! Keys:
//! - `kafka.<property>`: passed to librdkafka as `<property>`, as is (flat quoted keys and
//!   `[kafka]` tables alike). Strings pass as they are; integers, floats and booleans in
//!   their string form where librdkafka's type of the property takes them (an integer
//!   for a string property such as `bootstrap.servers = 9092` is an error naming the
//!   key, as is a boolean for a string or a float for an integer); arrays, tables and
//!   datetimes are an error naming the key. A bootstrap host that is a bare number
//!   (`"9092"`, `"1234:9092"`) is refused: the resolver reads it as an IP address
//!   (9092 is 0.0.35.196) and the client would connect off the machine.
//! - `pseidon-kafka.<setting>`: the plugin's own settings, see [`Settings`]. An unknown
//!   `pseidon-kafka.` key is an error (a typo must not silently fall back to a default).
//! - `pseidon-host.conf-dir`: set by the host to the conf file's directory; a relative
//!   `pseidon-kafka.status-db` is resolved against it, like the host's own paths.
//! - Per reader only (`ReaderOptions::set`, never in the conf):
//!   `pseidon-kafka.reader-max-messages`, see [`reader_max_messages`].
//! - Anything else is ignored by this plugin.

use std::{fmt, path::PathBuf};

use pseidon_plugin_api::{ConfKind, ConfView, Error, secret::Scrubber};
use rdkafka::{ClientConfig, config::RDKafkaLogLevel};

/// Prefix of the keys passed to librdkafka.
pub const KAFKA_PREFIX: &str = "kafka.";
/// Prefix of the plugin's own settings.
pub const SETTINGS_PREFIX: &str = "pseidon-kafka.";
/// The entry the host adds with the conf file's directory (see
/// `pseidon_host::conf::CONF_DIR_KEY`); absent with an older host.
pub const CONF_DIR_KEY: &str = "pseidon-host.conf-dir";
/// The per-reader key bounding the messages a reader hands out (see [`reader_max_messages`]).
pub const READER_MAX_MESSAGES: &str = "pseidon-kafka.reader-max-messages";

/// `pseidon-kafka.reader-max-messages`, a per-reader option (`ReaderOptions::set`): the
/// most messages the reader hands out in all (at least 1). No group the reader forms
/// holds more than what remains of it, so a caller printing at most N messages (`pseidon
/// consume --max N`) can finish, and mark done, every group it got. Once it is used up,
/// `next_group` hands out what it holds and then returns `None`. A replayed group keeps
/// its recorded range and may be larger than what remains: the caller checks. `None`
/// when not set (no bound).
pub fn reader_max_messages(overrides: &[(String, String)]) -> Result<Option<u64>, Error> {
    match overrides
        .iter()
        .rev()
        .find(|(k, _)| k == READER_MAX_MESSAGES)
    {
        None => Ok(None),
        Some((key, value)) => match parse_number::<u64>(key, value)? {
            0 => Err(Error::config(key.as_str(), "must be at least 1")),
            n => Ok(Some(n)),
        },
    }
}

/// The plugin's own settings (`pseidon-kafka.*` keys).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `pseidon-kafka.queue-full-timeout-ms`: how long `write` waits for room in a full
    /// producer queue before it returns a "queue full" error. Default 30000.
    pub queue_full_timeout_ms: u64,
    /// `pseidon-kafka.status-db`: the SQLite file that tracks message groups; a
    /// relative path is relative to the conf file's directory.
    /// Default `/var/lib/pseidon-kafka/status.db`.
    pub status_db: PathBuf,
    /// `pseidon-kafka.group-max-messages`: the most messages in one message group.
    /// Default 10000.
    pub group_max_messages: usize,
    /// `pseidon-kafka.group-max-bytes`: the most bytes of keys, values and headers in
    /// one message group (a single larger message is a group of its own), so a group's
    /// memory is bounded whatever the message size.
    /// Default 1048576 (1 MiB).
    pub group_max_bytes: usize,
    /// `pseidon-kafka.group-max-wait-ms`: the longest a message group waits to fill up
    /// before it is handed out. Default 100.
    pub group_max_wait_ms: u64,
    /// `pseidon-kafka.done-retention-ms`: done groups older than this are pruned from the
    /// status database. Default 604800000 (7 days).
    pub done_retention_ms: u64,
    /// `pseidon-kafka.connect-failure-timeout-ms`: how long a TLS or authentication
    /// failure to connect to the brokers (a wrong CA, a wrong password) may persist
    /// before the datasink fails its queued messages and refuses writes, and the
    /// datasource's `next_group` returns the error. A broker that is merely down is not
    /// such a failure. 0 disables it (librdkafka's `message.timeout.ms` applies). Default 10000.
    pub connect_failure_timeout_ms: u64,
    /// `pseidon-kafka.consume-error-timeout-ms`: how long a permanent consume error
    /// (authorization refused, a message over the fetch limits, a consumer group the
    /// broker rejects) may persist before the datasource's `next_group` returns it. A
    /// batch librdkafka cannot decode (decompression failure, corrupt batch) fails at
    /// once: librdkafka would skip it ([`consume_error`](crate::consume_error)).
    /// 0: every permanent error at once. Default 30000.
    pub consume_error_timeout_ms: u64,
}

/// Default of `pseidon-kafka.queue-full-timeout-ms`.
pub fn default_queue_full_timeout_ms() -> u64 {
    30_000
}
/// Default of `pseidon-kafka.status-db`.
pub fn default_status_db() -> PathBuf {
    PathBuf::from("/var/lib/pseidon-kafka/status.db")
}
/// Default of `pseidon-kafka.group-max-messages`.
pub fn default_group_max_messages() -> usize {
    10_000
}
/// Default of `pseidon-kafka.group-max-bytes`.
pub fn default_group_max_bytes() -> usize {
    1 << 20
}
/// Default of `pseidon-kafka.group-max-wait-ms`.
pub fn default_group_max_wait_ms() -> u64 {
    100
}
/// Default of `pseidon-kafka.done-retention-ms`.
pub fn default_done_retention_ms() -> u64 {
    7 * 24 * 3600 * 1000
}
/// Default of `pseidon-kafka.connect-failure-timeout-ms`.
pub fn default_connect_failure_timeout_ms() -> u64 {
    10_000
}
/// Default of `pseidon-kafka.consume-error-timeout-ms`.
pub fn default_consume_error_timeout_ms() -> u64 {
    30_000
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            queue_full_timeout_ms: default_queue_full_timeout_ms(),
            status_db: default_status_db(),
            group_max_messages: default_group_max_messages(),
            group_max_bytes: default_group_max_bytes(),
            group_max_wait_ms: default_group_max_wait_ms(),
            done_retention_ms: default_done_retention_ms(),
            connect_failure_timeout_ms: default_connect_failure_timeout_ms(),
            consume_error_timeout_ms: default_consume_error_timeout_ms(),
        }
    }
}

/// What a client is for; each role has its own safe defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The datasink's producer: idempotent (`enable.idempotence=true`, so `acks=all`).
    Producer,
    /// The datasource's group consumer: offsets stored only by the done-watermark,
    /// `auto.offset.reset=earliest` so a new group misses nothing.
    Consumer,
    /// The replay consumer: assigned partitions only, never commits.
    Replay,
}

/// The producer role's default `queue.buffering.max.kbytes` (64 MiB).
pub const PRODUCER_QUEUE_MAX_KBYTES: &str = "65536";

/// librdkafka properties from `kafka.*` keys, prefix removed, in conf order.
#[derive(Clone, PartialEq)]
pub struct KafkaProps {
    props: Vec<(String, String)>,
}

impl fmt::Debug for KafkaProps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (k, v) in &self.props {
            if is_secret(k) {
                map.entry(k, &pseidon_plugin_api::secret::REDACTED);
            } else {
                map.entry(k, v);
            }
        }
        map.finish()
    }
}

/// True for properties whose values are secrets: never logged, never in an error.
/// The project's one rule, [`pseidon_plugin_api::secret::is_secret_key`] (with or
/// without the `kafka.` prefix).
pub fn is_secret(property: &str) -> bool {
    pseidon_plugin_api::secret::is_secret_key(property)
}

/// The parsed configuration of the plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// librdkafka properties.
    pub kafka: KafkaProps,
    /// The plugin's own settings.
    pub settings: Settings,
}

impl Config {
    /// Parses the conf: `kafka.*` keys into librdkafka properties, `pseidon-kafka.*`
    /// keys into [`Settings`]. Every error names the key.
    pub fn parse(conf: &ConfView) -> Result<Config, Error> {
        let mut props = Vec::new();
        let mut settings = Settings::default();
        for entry in conf.entries() {
            if let Some(property) = entry.key.strip_prefix(KAFKA_PREFIX) {
                let value = scalar_value(&entry.key, entry.kind, &entry.value)?;
                check_property_type(&entry.key, property, entry.kind)?;
                props.retain(|(k, _): &(String, String)| k != property);
                props.push((property.to_string(), value));
            } else if let Some(setting) = entry.key.strip_prefix(SETTINGS_PREFIX) {
                let value = scalar_value(&entry.key, entry.kind, &entry.value)?;
                check_setting_type(&entry.key, setting, entry.kind)?;
                apply_setting(&mut settings, &entry.key, setting, &value)?;
            }
        }
        if settings.status_db.is_relative()
            && let Some(dir) = conf.get(CONF_DIR_KEY)
        {
            settings.status_db = PathBuf::from(&dir.value).join(&settings.status_db);
        }
        Ok(Config {
            kafka: KafkaProps { props },
            settings,
        })
    }

    /// A scrubber of the secret values of the `kafka.*` properties (see [`is_secret`]),
    /// for librdkafka's log lines and error texts.
    pub fn scrubber(&self) -> Scrubber {
        Scrubber::from_pairs(self.kafka.props.iter().map(|(k, v)| (k, v)))
    }

    /// The configured value of librdkafka property `property`, if set in the conf.
    pub fn kafka_prop(&self, property: &str) -> Option<&str> {
        self.kafka
            .props
            .iter()
            .rev()
            .find(|(k, _)| k == property)
            .map(|(_, v)| v.as_str())
    }

    /// A librdkafka configuration for `role`: the role's defaults, then the conf's
    /// `kafka.*` properties, then `overrides` (keys as in the conf, `kafka.`-prefixed).
    /// Each property is checked by librdkafka here: a rejected one is an error naming
    /// the conf key and librdkafka's reason (secret values redacted).
    pub fn client_config(
        &self,
        role: Role,
        overrides: &[(String, String)],
    ) -> Result<ClientConfig, Error> {
        let mut cfg = ClientConfig::new();
        match role {
            Role::Producer => {
                cfg.set("enable.idempotence", "true");
                // The producer queue holds at most 64 MiB (librdkafka's default 1 GiB):
                // past that, `write` waits for room (backpressure) instead of the process
                // growing by up to a gigabyte. 10 KiB messages ran as fast or faster
                // (bench/RESULTS.md), at 80 MB RSS instead of 0.5–0.9 GB. Overridable.
                cfg.set("queue.buffering.max.kbytes", PRODUCER_QUEUE_MAX_KBYTES);
            }
            Role::Consumer => {
                cfg.set("enable.auto.offset.store", "false");
                cfg.set("enable.auto.commit", "true");
                cfg.set("auto.offset.reset", "earliest");
                cfg.set("enable.partition.eof", "false");
                // librdkafka postpones fetching by this much once its local queue passed
                // queued.min.messages (default 1000 ms): with small messages that idles
                // the reader for most of each second. Overridable.
                cfg.set("fetch.queue.backoff.ms", "10");
                // Stored watermarks reach the broker within 200 ms (default 5000): another
                // member taking a partition over after a crash re-reads less of what was
                // already done. Overridable.
                cfg.set("auto.commit.interval.ms", "200");
            }
            Role::Replay => {
                cfg.set("fetch.queue.backoff.ms", "10");
            }
        }
        let mut chosen: Vec<(String, String)> = self.kafka.props.clone();
        for (key, value) in overrides {
            if key == READER_MAX_MESSAGES {
                // The reader's own bound, not a librdkafka property.
                continue;
            }
            let Some(property) = key.strip_prefix(KAFKA_PREFIX) else {
                return Err(Error::config(
                    key.as_str(),
                    format!("only kafka.* keys and {READER_MAX_MESSAGES} can be set per reader"),
                ));
            };
            chosen.retain(|(k, _)| k != property);
            chosen.push((property.to_string(), value.clone()));
        }
        for (property, value) in &chosen {
            if BOOTSTRAP_PROPERTIES.contains(&property.as_str()) {
                check_bootstrap(&format!("{KAFKA_PREFIX}{property}"), value)?;
            }
            validate_property(property, value)?;
            // One conf serves both clients: a consumer-only property on the producer (or
            // the reverse) would only make librdkafka warn that it ignores it.
            if property_applies(role, property) {
                cfg.set(property.as_str(), value.as_str());
            }
        }
        match role {
            Role::Producer => {}
            Role::Consumer => {
                // The watermark is the only thing that stores offsets: not overridable.
                cfg.set("enable.auto.offset.store", "false");
            }
            Role::Replay => {
                // Assign-only: it never joins the consumer group (librdkafka's assign
                // still needs a group.id) and never commits; a static member id must not
                // fence the group consumer.
                cfg.remove("group.instance.id");
                cfg.set("enable.auto.commit", "false");
                cfg.set("enable.auto.offset.store", "false");
                cfg.set("enable.partition.eof", "false");
                // A range deleted during the replay resets to the log start, where the
                // replay sees (and reports) the missing offsets.
                cfg.set("auto.offset.reset", "earliest");
            }
        }
        cfg.set_log_level(log_level());
        Ok(cfg)
    }
}

/// librdkafka properties that only consumers use (scope `C` in librdkafka's CONFIGURATION.md).
const CONSUMER_ONLY: &[&str] = &[
    "group.id",
    "group.instance.id",
    "partition.assignment.strategy",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "group.protocol.type",
    "group.protocol",
    "group.remote.assignor",
    "coordinator.query.interval.ms",
    "max.poll.interval.ms",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "enable.auto.offset.store",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "fetch.wait.max.ms",
    "fetch.queue.backoff.ms",
    "fetch.message.max.bytes",
    "max.partition.fetch.bytes",
    "fetch.max.bytes",
    "fetch.min.bytes",
    "fetch.error.backoff.ms",
    "offset.store.method",
    "isolation.level",
    "enable.partition.eof",
    "check.crcs",
    "auto.offset.reset",
    "consume.callback.max.messages",
];

/// librdkafka properties that only producers use (scope `P`).
const PRODUCER_ONLY: &[&str] = &[
    "transactional.id",
    "transaction.timeout.ms",
    "enable.idempotence",
    "enable.gapless.guarantee",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.ms",
    "linger.ms",
    "message.send.max.retries",
    "retries",
    "queue.buffering.backpressure.threshold",
    "compression.codec",
    "compression.type",
    "compression.level",
    "batch.num.messages",
    "batch.size",
    "delivery.report.only.error",
    "sticky.partitioning.linger.ms",
    "request.required.acks",
    "acks",
    "request.timeout.ms",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "queuing.strategy",
    "produce.offset.report",
    "partitioner",
];

/// Whether a (validated) property is passed to a client of `role`.
fn property_applies(role: Role, property: &str) -> bool {
    match role {
        Role::Producer => !CONSUMER_ONLY.contains(&property),
        Role::Consumer | Role::Replay => !PRODUCER_ONLY.contains(&property),
    }
}

/// librdkafka's log level matching the host's level, so its log lines reach the host.
fn log_level() -> RDKafkaLogLevel {
    match log::max_level() {
        log::LevelFilter::Off | log::LevelFilter::Error => RDKafkaLogLevel::Error,
        log::LevelFilter::Warn => RDKafkaLogLevel::Warning,
        log::LevelFilter::Info => RDKafkaLogLevel::Notice,
        log::LevelFilter::Debug | log::LevelFilter::Trace => RDKafkaLogLevel::Debug,
    }
}

/// Checks one property with librdkafka itself, so a bad key fails at `init`.
fn validate_property(property: &str, value: &str) -> Result<(), Error> {
    let mut probe = ClientConfig::new();
    probe.set(property, value);
    match probe.create_native_config() {
        Ok(_) => Ok(()),
        Err(e) => {
            let reason = match e {
                rdkafka::error::KafkaError::ClientConfig(_, desc, _, _) => desc,
                other => other.to_string(),
            };
            let reason = redact(property, value, &reason);
            Err(Error::config(
                format!("{KAFKA_PREFIX}{property}"),
                format!("librdkafka rejected it: {reason}"),
            ))
        }
    }
}

/// `text` with the value of a secret property blanked out.
fn redact(property: &str, value: &str, text: &str) -> String {
    Scrubber::from_pairs([(property, value)])
        .scrub(text)
        .into_owned()
}

/// librdkafka's type of a property (CONFIGURATION.md's `*Type:*`), as far as the TOML
/// type of its value matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PropType {
    /// `string`, `pattern list`: only a TOML string (librdkafka takes any text, so
    /// `9092` would silently become the host name "9092").
    Text,
    /// `enum value`, `CSV flags`: any scalar; librdkafka refuses what is not one of
    /// its values, naming the property.
    Enum,
    /// `boolean`: `true`/`false`, or a string.
    Boolean,
    /// `integer`: a TOML integer, or a string.
    Integer,
    /// `float`: a TOML float or integer, or a string.
    Float,
}

/// Every librdkafka 2.12.1 property with one of the types above, sorted (checked
/// against vendor/rdkafka-sys/librdkafka/CONFIGURATION.md by a test).
const PROPERTY_TYPES: &[(&str, PropType)] = &[
    ("acks", PropType::Integer),
    ("allow.auto.create.topics", PropType::Boolean),
    ("api.version.fallback.ms", PropType::Integer),
    ("api.version.request", PropType::Boolean),
    ("api.version.request.timeout.ms", PropType::Integer),
    ("auto.commit.enable", PropType::Boolean),
    ("auto.commit.interval.ms", PropType::Integer),
    ("auto.offset.reset", PropType::Enum),
    ("batch.num.messages", PropType::Integer),
    ("batch.size", PropType::Integer),
    ("bootstrap.servers", PropType::Text),
    ("broker.address.family", PropType::Enum),
    ("broker.address.ttl", PropType::Integer),
    ("broker.version.fallback", PropType::Text),
    ("builtin.features", PropType::Enum),
    ("check.crcs", PropType::Boolean),
    ("client.dns.lookup", PropType::Enum),
    ("client.id", PropType::Text),
    ("client.rack", PropType::Text),
    ("compression.codec", PropType::Enum),
    ("compression.level", PropType::Integer),
    ("compression.type", PropType::Enum),
    ("connections.max.idle.ms", PropType::Integer),
    ("consume.callback.max.messages", PropType::Integer),
    ("coordinator.query.interval.ms", PropType::Integer),
    ("debug", PropType::Enum),
    ("delivery.report.only.error", PropType::Boolean),
    ("delivery.timeout.ms", PropType::Integer),
    ("enable.auto.commit", PropType::Boolean),
    ("enable.auto.offset.store", PropType::Boolean),
    ("enable.gapless.guarantee", PropType::Boolean),
    ("enable.idempotence", PropType::Boolean),
    ("enable.metrics.push", PropType::Boolean),
    ("enable.partition.eof", PropType::Boolean),
    ("enable.random.seed", PropType::Boolean),
    ("enable.sasl.oauthbearer.unsecure.jwt", PropType::Boolean),
    ("enable.ssl.certificate.verification", PropType::Boolean),
    ("enabled_events", PropType::Integer),
    ("fetch.error.backoff.ms", PropType::Integer),
    ("fetch.max.bytes", PropType::Integer),
    ("fetch.message.max.bytes", PropType::Integer),
    ("fetch.min.bytes", PropType::Integer),
    ("fetch.queue.backoff.ms", PropType::Integer),
    ("fetch.wait.max.ms", PropType::Integer),
    ("group.id", PropType::Text),
    ("group.instance.id", PropType::Text),
    ("group.protocol", PropType::Enum),
    ("group.protocol.type", PropType::Text),
    ("group.remote.assignor", PropType::Text),
    ("heartbeat.interval.ms", PropType::Integer),
    ("https.ca.location", PropType::Text),
    ("https.ca.pem", PropType::Text),
    ("internal.termination.signal", PropType::Integer),
    ("isolation.level", PropType::Enum),
    ("linger.ms", PropType::Float),
    ("log.connection.close", PropType::Boolean),
    ("log.queue", PropType::Boolean),
    ("log.thread.name", PropType::Boolean),
    ("log_level", PropType::Integer),
    ("max.in.flight", PropType::Integer),
    ("max.in.flight.requests.per.connection", PropType::Integer),
    ("max.partition.fetch.bytes", PropType::Integer),
    ("max.poll.interval.ms", PropType::Integer),
    ("message.copy.max.bytes", PropType::Integer),
    ("message.max.bytes", PropType::Integer),
    ("message.send.max.retries", PropType::Integer),
    ("message.timeout.ms", PropType::Integer),
    ("metadata.broker.list", PropType::Text),
    ("metadata.max.age.ms", PropType::Integer),
    (
        "metadata.recovery.rebootstrap.trigger.ms",
        PropType::Integer,
    ),
    ("metadata.recovery.strategy", PropType::Enum),
    ("offset.store.method", PropType::Enum),
    ("offset.store.path", PropType::Text),
    ("offset.store.sync.interval.ms", PropType::Integer),
    ("partition.assignment.strategy", PropType::Text),
    ("partitioner", PropType::Text),
    ("plugin.library.paths", PropType::Text),
    ("produce.offset.report", PropType::Boolean),
    ("queue.buffering.backpressure.threshold", PropType::Integer),
    ("queue.buffering.max.kbytes", PropType::Integer),
    ("queue.buffering.max.messages", PropType::Integer),
    ("queue.buffering.max.ms", PropType::Float),
    ("queued.max.messages.kbytes", PropType::Integer),
    ("queued.min.messages", PropType::Integer),
    ("queuing.strategy", PropType::Enum),
    ("receive.message.max.bytes", PropType::Integer),
    ("reconnect.backoff.jitter.ms", PropType::Integer),
    ("reconnect.backoff.max.ms", PropType::Integer),
    ("reconnect.backoff.ms", PropType::Integer),
    ("request.required.acks", PropType::Integer),
    ("request.timeout.ms", PropType::Integer),
    ("retries", PropType::Integer),
    ("retry.backoff.max.ms", PropType::Integer),
    ("retry.backoff.ms", PropType::Integer),
    ("sasl.kerberos.keytab", PropType::Text),
    ("sasl.kerberos.kinit.cmd", PropType::Text),
    ("sasl.kerberos.min.time.before.relogin", PropType::Integer),
    ("sasl.kerberos.principal", PropType::Text),
    ("sasl.kerberos.service.name", PropType::Text),
    ("sasl.mechanism", PropType::Text),
    ("sasl.mechanisms", PropType::Text),
    ("sasl.oauthbearer.assertion.algorithm", PropType::Enum),
    ("sasl.oauthbearer.assertion.claim.aud", PropType::Text),
    (
        "sasl.oauthbearer.assertion.claim.exp.seconds",
        PropType::Integer,
    ),
    ("sasl.oauthbearer.assertion.claim.iss", PropType::Text),
    (
        "sasl.oauthbearer.assertion.claim.jti.include",
        PropType::Boolean,
    ),
    (
        "sasl.oauthbearer.assertion.claim.nbf.seconds",
        PropType::Integer,
    ),
    ("sasl.oauthbearer.assertion.claim.sub", PropType::Text),
    ("sasl.oauthbearer.assertion.file", PropType::Text),
    (
        "sasl.oauthbearer.assertion.jwt.template.file",
        PropType::Text,
    ),
    (
        "sasl.oauthbearer.assertion.private.key.file",
        PropType::Text,
    ),
    (
        "sasl.oauthbearer.assertion.private.key.passphrase",
        PropType::Text,
    ),
    ("sasl.oauthbearer.assertion.private.key.pem", PropType::Text),
    (
        "sasl.oauthbearer.client.credentials.client.id",
        PropType::Text,
    ),
    (
        "sasl.oauthbearer.client.credentials.client.secret",
        PropType::Text,
    ),
    ("sasl.oauthbearer.client.id", PropType::Text),
    ("sasl.oauthbearer.client.secret", PropType::Text),
    ("sasl.oauthbearer.config", PropType::Text),
    ("sasl.oauthbearer.extensions", PropType::Text),
    ("sasl.oauthbearer.grant.type", PropType::Enum),
    (
        "sasl.oauthbearer.metadata.authentication.type",
        PropType::Enum,
    ),
    ("sasl.oauthbearer.method", PropType::Enum),
    ("sasl.oauthbearer.scope", PropType::Text),
    ("sasl.oauthbearer.token.endpoint.url", PropType::Text),
    ("sasl.password", PropType::Text),
    ("sasl.username", PropType::Text),
    ("security.protocol", PropType::Enum),
    ("session.timeout.ms", PropType::Integer),
    ("socket.blocking.max.ms", PropType::Integer),
    ("socket.connection.setup.timeout.ms", PropType::Integer),
    ("socket.keepalive.enable", PropType::Boolean),
    ("socket.max.fails", PropType::Integer),
    ("socket.nagle.disable", PropType::Boolean),
    ("socket.receive.buffer.bytes", PropType::Integer),
    ("socket.send.buffer.bytes", PropType::Integer),
    ("socket.timeout.ms", PropType::Integer),
    ("ssl.ca.certificate.stores", PropType::Text),
    ("ssl.ca.location", PropType::Text),
    ("ssl.ca.pem", PropType::Text),
    ("ssl.certificate.location", PropType::Text),
    ("ssl.certificate.pem", PropType::Text),
    ("ssl.cipher.suites", PropType::Text),
    ("ssl.crl.location", PropType::Text),
    ("ssl.curves.list", PropType::Text),
    ("ssl.endpoint.identification.algorithm", PropType::Enum),
    ("ssl.engine.id", PropType::Text),
    ("ssl.engine.location", PropType::Text),
    ("ssl.key.location", PropType::Text),
    ("ssl.key.password", PropType::Text),
    ("ssl.key.pem", PropType::Text),
    ("ssl.keystore.location", PropType::Text),
    ("ssl.keystore.password", PropType::Text),
    ("ssl.providers", PropType::Text),
    ("ssl.sigalgs.list", PropType::Text),
    ("statistics.interval.ms", PropType::Integer),
    ("sticky.partitioning.linger.ms", PropType::Integer),
    ("topic.blacklist", PropType::Text),
    ("topic.metadata.propagation.max.ms", PropType::Integer),
    ("topic.metadata.refresh.fast.cnt", PropType::Integer),
    ("topic.metadata.refresh.fast.interval.ms", PropType::Integer),
    ("topic.metadata.refresh.interval.ms", PropType::Integer),
    ("topic.metadata.refresh.sparse", PropType::Boolean),
    ("transaction.timeout.ms", PropType::Integer),
    ("transactional.id", PropType::Text),
];

/// The properties that list the bootstrap brokers.
const BOOTSTRAP_PROPERTIES: &[&str] = &["bootstrap.servers", "metadata.broker.list"];

/// Refuses a TOML value whose type librdkafka's type of `property` does not take:
/// librdkafka would accept `bootstrap.servers = 9092` as the host name "9092".
fn check_property_type(key: &str, property: &str, kind: ConfKind) -> Result<(), Error> {
    let Ok(i) = PROPERTY_TYPES.binary_search_by(|(n, _)| (*n).cmp(property)) else {
        return Ok(()); // unknown: librdkafka itself names it
    };
    let ty = PROPERTY_TYPES[i].1;
    let ok = match (ty, kind) {
        (_, ConfKind::String) | (PropType::Enum, _) => true,
        (PropType::Text, _) => false,
        (PropType::Boolean, k) => k == ConfKind::Boolean,
        (PropType::Integer, k) => k == ConfKind::Integer,
        (PropType::Float, k) => matches!(k, ConfKind::Float | ConfKind::Integer),
    };
    if ok {
        return Ok(());
    }
    let expected = match ty {
        PropType::Text | PropType::Enum => "a string (in quotes)",
        PropType::Boolean => "a boolean (true or false)",
        PropType::Integer => "a whole number",
        PropType::Float => "a number",
    };
    let hint = if BOOTSTRAP_PROPERTIES.contains(&property) {
        ", e.g. \"127.0.0.1:9092\""
    } else {
        ""
    };
    Err(Error::config(
        key,
        format!(
            "must be {expected}{hint}, not {} (librdkafka's `{property}` is {})",
            kind_name(kind),
            match ty {
                PropType::Text | PropType::Enum => "a string",
                PropType::Boolean => "a boolean",
                PropType::Integer => "an integer",
                PropType::Float => "a float",
            }
        ),
    ))
}

/// Refuses a wrongly typed `pseidon-kafka.` setting: `status-db` is a path string
/// (the numeric settings refuse what is not a number when they parse it).
fn check_setting_type(key: &str, setting: &str, kind: ConfKind) -> Result<(), Error> {
    if setting == "status-db" && kind != ConfKind::String {
        return Err(Error::config(
            key,
            format!("must be a path string (in quotes), not {}", kind_name(kind)),
        ));
    }
    Ok(())
}

fn kind_name(kind: ConfKind) -> &'static str {
    match kind {
        ConfKind::String => "a string",
        ConfKind::Integer => "an integer",
        ConfKind::Float => "a float",
        ConfKind::Boolean => "a boolean",
        ConfKind::Datetime => "a datetime",
        ConfKind::Array => "an array",
        ConfKind::Table => "a table",
    }
}

/// Refuses a bootstrap broker whose host is a bare number (`9092`, `1234:9092`): the
/// resolver reads it as an IPv4 address (9092 is 0.0.35.196), off this machine.
fn check_bootstrap(key: &str, value: &str) -> Result<(), Error> {
    for broker in value.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        let rest = broker.split_once("://").map_or(broker, |(_, r)| r);
        if rest.starts_with('[') {
            continue; // [IPv6]:port
        }
        let host = match rest.rsplit_once(':') {
            Some((h, port)) if !h.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => h,
            _ => rest,
        };
        if !host.is_empty() && host.chars().all(|c| c.is_ascii_digit()) {
            return Err(Error::config(
                key,
                format!(
                    "broker `{broker}` has the host `{host}`, a bare number, which the resolver reads as an \
                     IP address (not this machine); write host:port, e.g. \"127.0.0.1:{}\"",
                    if rest == host {
                        host
                    } else {
                        rest.rsplit_once(':').map_or("9092", |(_, p)| p)
                    }
                ),
            ));
        }
    }
    Ok(())
}

/// The string form of a scalar conf value; arrays, tables and datetimes are errors.
fn scalar_value(key: &str, kind: ConfKind, value: &str) -> Result<String, Error> {
    match kind {
        ConfKind::String | ConfKind::Integer | ConfKind::Float | ConfKind::Boolean => {
            Ok(value.to_string())
        }
        ConfKind::Array => Err(Error::config(
            key,
            "an array is not allowed here: write the value as one string, e.g. \"a,b\"",
        )),
        ConfKind::Table => Err(Error::config(
            key,
            "a table is not allowed here: the value must be a string, number or boolean",
        )),
        ConfKind::Datetime => Err(Error::config(
            key,
            "a datetime is not allowed here: write it as a string",
        )),
    }
}

fn apply_setting(
    settings: &mut Settings,
    key: &str,
    setting: &str,
    value: &str,
) -> Result<(), Error> {
    match setting {
        "queue-full-timeout-ms" => settings.queue_full_timeout_ms = parse_number(key, value)?,
        "status-db" => {
            if value.trim().is_empty() {
                return Err(Error::config(key, "must be the path of a SQLite file"));
            }
            settings.status_db = PathBuf::from(value);
        }
        "group-max-messages" => settings.group_max_messages = parse_positive(key, value)?,
        "group-max-bytes" => settings.group_max_bytes = parse_positive(key, value)?,
        "group-max-wait-ms" => settings.group_max_wait_ms = parse_number(key, value)?,
        "done-retention-ms" => settings.done_retention_ms = parse_number(key, value)?,
        "connect-failure-timeout-ms" => {
            settings.connect_failure_timeout_ms = parse_number(key, value)?
        }
        "consume-error-timeout-ms" => settings.consume_error_timeout_ms = parse_number(key, value)?,
        "reader-max-messages" => {
            return Err(Error::config(
                key,
                "a per-reader option (ReaderOptions::set, or `pseidon consume --max`), not a conf key",
            ));
        }
        _ => {
            return Err(Error::config(
                key,
                "unknown pseidon-kafka setting (known: queue-full-timeout-ms, status-db, group-max-messages, group-max-bytes, group-max-wait-ms, done-retention-ms, connect-failure-timeout-ms, consume-error-timeout-ms)",
            ));
        }
    }
    Ok(())
}

/// A number of at least 1.
fn parse_positive(key: &str, value: &str) -> Result<usize, Error> {
    match parse_number(key, value)? {
        0 => Err(Error::config(key, "must be at least 1")),
        n => Ok(n),
    }
}

fn parse_number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, Error> {
    value
        .trim()
        .parse()
        .map_err(|_| Error::config(key, format!("`{value}` is not a non-negative whole number")))
}

#[cfg(test)]
mod tests {
    use pseidon_plugin_api::ConfEntry;

    use super::*;

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
        let md = include_str!("../../vendor/rdkafka-sys/librdkafka/CONFIGURATION.md");
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
}
