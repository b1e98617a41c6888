//! librdkafka's type of each property (CONFIGURATION.md's `*Type:*`), as far as the TOML
//! type of a conf value matters, and the checks that refuse a value of the wrong type
//! (`bootstrap.servers = 9092` would silently become the host name "9092") or a
//! bootstrap host that is a bare number, before any client exists.

use pseidon_plugin_api::{ConfKind, Error};

/// librdkafka's type of a property (CONFIGURATION.md's `*Type:*`), as far as the TOML
/// type of its value matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PropType {
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
pub(super) const PROPERTY_TYPES: &[(&str, PropType)] = &[
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
pub(super) const BOOTSTRAP_PROPERTIES: &[&str] = &["bootstrap.servers", "metadata.broker.list"];

/// Refuses a TOML value whose type librdkafka's type of `property` does not take:
/// librdkafka would accept `bootstrap.servers = 9092` as the host name "9092".
pub(super) fn check_property_type(key: &str, property: &str, kind: ConfKind) -> Result<(), Error> {
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
pub(super) fn check_setting_type(key: &str, setting: &str, kind: ConfKind) -> Result<(), Error> {
    if setting == "status-db" && kind != ConfKind::String {
        return Err(Error::config(
            key,
            format!("must be a path string (in quotes), not {}", kind_name(kind)),
        ));
    }
    Ok(())
}

pub(super) fn kind_name(kind: ConfKind) -> &'static str {
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
pub(super) fn check_bootstrap(key: &str, value: &str) -> Result<(), Error> {
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
pub(super) fn scalar_value(key: &str, kind: ConfKind, value: &str) -> Result<String, Error> {
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
