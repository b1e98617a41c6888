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
//!   `pseidon-kafka.reader-max-messages`, see [`reader_max_messages`]; and the plain
//!   read keys `pseidon-kafka.assign`, `pseidon-kafka.start-offset` and
//!   `pseidon-kafka.stop-timestamp-ms`, see [`plain_read`].
//! - `pseidon-kafka.instances.NAME.kafka.<property>` and
//!   `pseidon-kafka.instances.NAME.<setting>`: a named instance (another cluster, its own
//!   status database), parsed by [`instances::parse`] with the same rules; ignored by
//!   [`Config::parse`] of the default instance.
//! - Anything else is ignored by this plugin.

use std::{fmt, path::PathBuf};

use pseidon_plugin_api::{ConfView, Error, secret::Scrubber};
use rdkafka::{ClientConfig, config::RDKafkaLogLevel};

pub mod instances;
mod types;

use types::{
    BOOTSTRAP_PROPERTIES, check_bootstrap, check_property_type, check_setting_type, scalar_value,
};

/// Prefix of the keys passed to librdkafka.
pub const KAFKA_PREFIX: &str = "kafka.";
/// Prefix of the plugin's own settings.
pub const SETTINGS_PREFIX: &str = "pseidon-kafka.";
/// The entry the host adds with the conf file's directory (see
/// `pseidon_host::conf::CONF_DIR_KEY`); absent with an older host.
pub const CONF_DIR_KEY: &str = "pseidon-host.conf-dir";
/// The per-reader key bounding the messages a reader hands out (see [`reader_max_messages`]).
pub const READER_MAX_MESSAGES: &str = "pseidon-kafka.reader-max-messages";

/// The per-reader key that makes a reader a plain read of these partitions (see [`plain_read`]).
pub const ASSIGN: &str = "pseidon-kafka.assign";
/// The per-reader key of a plain read's start offset (see [`plain_read`]).
pub const START_OFFSET: &str = "pseidon-kafka.start-offset";
/// The per-reader key of a plain read's stop timestamp (see [`plain_read`]).
pub const STOP_TIMESTAMP_MS: &str = "pseidon-kafka.stop-timestamp-ms";
/// Every per-reader key of this plugin that is not a librdkafka property.
pub const READER_KEYS: &[&str] = &[READER_MAX_MESSAGES, ASSIGN, START_OFFSET, STOP_TIMESTAMP_MS];

/// Where a plain read starts in each partition (`pseidon-kafka.start-offset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOffset {
    /// `beginning`: the log start.
    Beginning,
    /// `end`: only messages written from now on.
    End,
    /// `stored`: the consumer group's committed offset (the log start if none).
    Stored,
    /// `N`: this offset (clamped to the partition's log start and end).
    Offset(i64),
    /// `-N`: N messages before the end (at most back to the log start).
    Tail(i64),
    /// `s@TS`: the first message with a timestamp at or after TS (ms since the epoch);
    /// the end if there is none.
    Timestamp(i64),
}

impl StartOffset {
    /// Parses kcat's `-o` forms: `beginning`, `end`, `stored`, `N`, `-N`, `s@TS`.
    pub fn parse(s: &str) -> Option<StartOffset> {
        let s = s.trim();
        Some(match s {
            "beginning" => StartOffset::Beginning,
            "end" => StartOffset::End,
            "stored" => StartOffset::Stored,
            _ => {
                if let Some(ts) = s.strip_prefix("s@") {
                    StartOffset::Timestamp(ts.parse().ok().filter(|t: &i64| *t >= 0)?)
                } else if let Some(n) = s.strip_prefix('-') {
                    StartOffset::Tail(n.parse().ok().filter(|n: &i64| *n >= 0)?)
                } else {
                    StartOffset::Offset(s.parse().ok().filter(|n: &i64| *n >= 0)?)
                }
            }
        })
    }
}

/// A plain read (per-reader options, `ReaderOptions::set`): the reader assigns itself
/// partitions, joins no consumer group, tracks nothing in the status database and
/// commits nothing (`pseidon consume -o/-p`, kcat's assign mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainRead {
    /// `pseidon-kafka.assign`: `all` (the default when only the other keys are set), or
    /// partition numbers separated by commas, of every topic of the reader.
    pub partitions: Option<Vec<i32>>,
    /// `pseidon-kafka.start-offset`: see [`StartOffset`]; default `beginning`.
    pub start: StartOffset,
    /// `pseidon-kafka.stop-timestamp-ms` (kcat's `-o e@TS`): a message with a timestamp
    /// at or after it is not handed out, and its partition counts as at its end.
    pub stop_timestamp_ms: Option<i64>,
}

/// The plain read the reader options ask for, if any of its keys is set; every error
/// names its key.
pub fn plain_read(overrides: &[(String, String)]) -> Result<Option<PlainRead>, Error> {
    let get = |key: &str| {
        overrides
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let (assign, start, stop) = (get(ASSIGN), get(START_OFFSET), get(STOP_TIMESTAMP_MS));
    if assign.is_none() && start.is_none() && stop.is_none() {
        return Ok(None);
    }
    let partitions = match assign.map(str::trim) {
        None | Some("all") => None,
        Some(list) => {
            let mut parts = Vec::new();
            for p in list.split(',') {
                match p.trim().parse::<i32>() {
                    Ok(n) if n >= 0 => {
                        if !parts.contains(&n) {
                            parts.push(n);
                        }
                    }
                    _ => {
                        return Err(Error::config(
                            ASSIGN,
                            format!(
                                "`{p}` in `{list}` is not a partition number (write `all` or e.g. `0,2`)"
                            ),
                        ));
                    }
                }
            }
            Some(parts)
        }
    };
    let start = match start {
        None => StartOffset::Beginning,
        Some(s) => StartOffset::parse(s).ok_or_else(|| {
            Error::config(
                START_OFFSET,
                format!("`{s}` is not beginning, end, stored, N, -N or s@TIMESTAMP_MS"),
            )
        })?,
    };
    let stop_timestamp_ms = stop
        .map(|s| parse_number::<i64>(STOP_TIMESTAMP_MS, s))
        .transpose()?;
    Ok(Some(PlainRead {
        partitions,
        start,
        stop_timestamp_ms,
    }))
}

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
    /// `pseidon-kafka.revoke-drain-ms`: when the consumer group takes partitions away
    /// (a rebalance), how long the revoke waits for the groups of those partitions
    /// already handed out to be marked done, so that the watermark it commits covers
    /// them and the next owner does not read them again. A group still unfinished then
    /// is read again by the next owner (a duplicate, never a loss). The wait holds the
    /// consumer's poll: keep it well below `kafka.max.poll.interval.ms` (checked) and
    /// the session timeout. 0: no wait. Default 5000.
    pub revoke_drain_ms: u64,
    /// `pseidon-kafka.retry-backoff-ms`: how long a group marked failed
    /// (`Source::mark_failed`) waits before it is handed out again, at its first failure;
    /// doubled at each further one (`retry-backoff-ms × 2^(attempt-1)`), up to
    /// `retry-backoff-max-ms`. Default 1000.
    pub retry_backoff_ms: u64,
    /// `pseidon-kafka.retry-backoff-max-ms`: the longest backoff of a failed group.
    /// Default 60000.
    pub retry_backoff_max_ms: u64,
    /// `pseidon-kafka.max-attempts`: after this many failed attempts a group of more than
    /// one message is split in two halves (handed out as new groups), and a group of one
    /// message is dead: copied to `dead-letter-topic` and passed by the done-watermark.
    /// `None` (the default, also written `0` or `unlimited`): a failed group is retried
    /// forever.
    pub max_attempts: Option<u32>,
    /// `pseidon-kafka.dead-letter-topic`: where dead messages are copied (through the
    /// plugin's producer, key, value and headers byte for byte, plus `pseidon.origin.*`
    /// headers), before their group is marked dead. Unset (the default): a dead group is
    /// marked dead without a copy, and that is logged as an error (the message is dropped
    /// on purpose).
    pub dead_letter_topic: Option<String>,
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
/// Default of `pseidon-kafka.revoke-drain-ms`.
pub fn default_revoke_drain_ms() -> u64 {
    5_000
}
/// Default of `pseidon-kafka.retry-backoff-ms`.
pub fn default_retry_backoff_ms() -> u64 {
    1_000
}
/// Default of `pseidon-kafka.retry-backoff-max-ms`.
pub fn default_retry_backoff_max_ms() -> u64 {
    60_000
}

impl Settings {
    /// The backoff of a group failed at attempt `attempt` (1 for its first hand-out):
    /// `min(retry-backoff-ms × 2^(attempt-1), retry-backoff-max-ms)`.
    ///
    /// ```
    /// let s = pseidon_kafka::config::Settings::default();
    /// assert_eq!(s.retry_backoff_ms(1), 1000);
    /// assert_eq!(s.retry_backoff_ms(3), 4000);
    /// assert_eq!(s.retry_backoff_ms(60), 60000);
    /// ```
    pub fn retry_backoff_ms(&self, attempt: u32) -> u64 {
        let shift = attempt.saturating_sub(1).min(63);
        self.retry_backoff_ms
            .saturating_mul(1u64 << shift)
            .min(self.retry_backoff_max_ms)
    }

    /// True if a group failed at attempt `attempt` has no attempt left (`max-attempts`).
    pub fn attempts_spent(&self, attempt: u32) -> bool {
        self.max_attempts.is_some_and(|m| attempt >= m)
    }
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
            revoke_drain_ms: default_revoke_drain_ms(),
            retry_backoff_ms: default_retry_backoff_ms(),
            retry_backoff_max_ms: default_retry_backoff_max_ms(),
            max_attempts: None,
            dead_letter_topic: None,
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
    /// A plain read's consumer ([`plain_read`]): as the replay consumer, but
    /// end-of-partition events as the reader's options ask.
    Plain,
}

/// The default `statistics.interval.ms` of the producer and the group consumer (librdkafka's
/// own default, 0, sends none): the metrics' broker, queue and lag gauges come from these
/// statistics, so they are at most this old. Overridable; 0 turns them off.
pub const DEFAULT_STATISTICS_INTERVAL_MS: &str = "5000";

/// The producer role's default `queue.buffering.max.kbytes` (64 MiB).
pub const PRODUCER_QUEUE_MAX_KBYTES: &str = "65536";

/// The consumers' default `queued.max.messages.kbytes` (16 MiB; librdkafka's own default
/// is 64 MiB): what librdkafka fetches ahead of the reader, in one queue whatever the
/// number of partitions. The reader keeps up or not whatever the depth; a deeper queue
/// only costs memory, and the malloc arena of librdkafka's broker thread grows to it
/// (1 M x 100 B on 128 partitions: RSS 240 -> 150 MB and less system time, rate as good
/// or better; bench/RESULTS.md). Overridable.
pub const CONSUMER_QUEUE_MAX_KBYTES: &str = "16384";

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

/// `key=value` pairs separated by spaces, in conf order, secret values redacted (what
/// the plugin logs when it starts).
impl fmt::Display for KafkaProps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.props.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            if is_secret(k) {
                write!(f, "{k}={}", pseidon_plugin_api::secret::REDACTED)?;
            } else {
                write!(f, "{k}={v}")?;
            }
        }
        Ok(())
    }
}

/// `base`, or `base.NAME` for the named instance `NAME`.
fn registry_name(base: &str, instance: Option<&str>) -> String {
    match instance {
        None => base.to_string(),
        Some(name) => format!("{base}.{name}"),
    }
}

/// True for properties whose values are secrets: never logged, never in an error.
/// The project's one rule, [`pseidon_plugin_api::secret::is_secret_key`] (with or
/// without the `kafka.` prefix).
pub fn is_secret(property: &str) -> bool {
    pseidon_plugin_api::secret::is_secret_key(property)
}

/// The parsed configuration of the plugin (of its default instance, or of one named
/// instance: [`instances`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// librdkafka properties.
    pub kafka: KafkaProps,
    /// The plugin's own settings.
    pub settings: Settings,
    /// The named instance this is the configuration of (`pseidon-kafka.instances.NAME`);
    /// `None` for the default (unnamed) instance.
    pub instance: Option<String>,
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
            } else if entry.key.starts_with(instances::INSTANCES_PREFIX) {
                // A named instance's key: parsed by `instances::parse`.
                continue;
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
        // The drain holds the consumer's poll: at max.poll.interval.ms or more the
        // member would be thrown out of the group while it drains.
        let max_poll_ms = props
            .iter()
            .rev()
            .find(|(k, _)| k == "max.poll.interval.ms")
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .unwrap_or(300_000);
        if settings.revoke_drain_ms >= max_poll_ms {
            return Err(Error::config(
                format!("{SETTINGS_PREFIX}revoke-drain-ms"),
                format!(
                    "{} is not below kafka.max.poll.interval.ms ({max_poll_ms}): the drain holds \
                     the consumer's poll, and the broker would throw the member out of its group",
                    settings.revoke_drain_ms
                ),
            ));
        }
        Ok(Config {
            kafka: KafkaProps { props },
            settings,
            instance: None,
        })
    }

    /// The registry name of this instance's datasink: [`crate::SINK_NAME`], with
    /// `.NAME` for a named instance.
    pub fn sink_name(&self) -> String {
        registry_name(crate::SINK_NAME, self.instance.as_deref())
    }

    /// The registry name of this instance's datasource: [`crate::SOURCE_NAME`], with
    /// `.NAME` for a named instance.
    pub fn source_name(&self) -> String {
        registry_name(crate::SOURCE_NAME, self.instance.as_deref())
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
        if matches!(role, Role::Producer | Role::Consumer) {
            // The metrics' statistics (DEFAULT_STATISTICS_INTERVAL_MS); the conf may override.
            cfg.set("statistics.interval.ms", DEFAULT_STATISTICS_INTERVAL_MS);
        }
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
                cfg.set("queued.max.messages.kbytes", CONSUMER_QUEUE_MAX_KBYTES);
                // Stored watermarks reach the broker within 200 ms (default 5000): another
                // member taking a partition over after a crash re-reads less of what was
                // already done. Overridable.
                cfg.set("auto.commit.interval.ms", "200");
            }
            Role::Replay | Role::Plain => {
                cfg.set("fetch.queue.backoff.ms", "10");
                cfg.set("queued.max.messages.kbytes", CONSUMER_QUEUE_MAX_KBYTES);
            }
        }
        let mut chosen: Vec<(String, String)> = self.kafka.props.clone();
        for (key, value) in overrides {
            if READER_KEYS.contains(&key.as_str()) {
                // The reader's own options, not librdkafka properties.
                continue;
            }
            let Some(property) = key.strip_prefix(KAFKA_PREFIX) else {
                return Err(Error::config(
                    key.as_str(),
                    format!(
                        "only kafka.* keys and {} can be set per reader",
                        READER_KEYS.join(", ")
                    ),
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
            Role::Plain => {
                // Assign-only and never commits, as the replay consumer; its start
                // offsets are resolved by the reader (an offset deleted meanwhile
                // resets to the log start).
                cfg.remove("group.instance.id");
                cfg.set("enable.auto.commit", "false");
                cfg.set("enable.auto.offset.store", "false");
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
        Role::Consumer | Role::Replay | Role::Plain => !PRODUCER_ONLY.contains(&property),
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
        "revoke-drain-ms" => settings.revoke_drain_ms = parse_number(key, value)?,
        "retry-backoff-ms" => settings.retry_backoff_ms = parse_number(key, value)?,
        "retry-backoff-max-ms" => settings.retry_backoff_max_ms = parse_number(key, value)?,
        "max-attempts" => {
            settings.max_attempts = match value.trim() {
                "unlimited" | "0" => None,
                _ => Some(parse_number(key, value)?),
            }
        }
        "dead-letter-topic" => {
            let t = value.trim();
            settings.dead_letter_topic = (!t.is_empty()).then(|| t.to_string());
        }
        "reader-max-messages" | "assign" | "start-offset" | "stop-timestamp-ms" => {
            return Err(Error::config(
                key,
                "a per-reader option (ReaderOptions::set, or `pseidon consume --max`/`-p`/`-o`), not a conf key",
            ));
        }
        _ => {
            return Err(Error::config(
                key,
                "unknown pseidon-kafka setting (known: queue-full-timeout-ms, status-db, group-max-messages, group-max-bytes, group-max-wait-ms, done-retention-ms, connect-failure-timeout-ms, consume-error-timeout-ms, revoke-drain-ms, retry-backoff-ms, retry-backoff-max-ms, max-attempts, dead-letter-topic)",
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
mod tests;
