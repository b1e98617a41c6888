//! Cluster metadata for [`KafkaSource::metadata`](crate::source::KafkaSource): brokers,
//! topics, partitions with leader, replicas and in-sync replicas (librdkafka's
//! metadata request), the controller (`rd_kafka_controllerid`), the cluster id, and each
//! partition's low and high watermarks (one ListOffsets request per partition, as
//! `rd_kafka_query_watermark_offsets` asks them).
//!
//! A short-lived consumer of the replay role (assign-only, never joins a group, never
//! commits; a consumer asks the broker not to auto-create a topic it names) is created
//! for each call, with the conf's `kafka.*` properties; its librdkafka log lines and
//! errors go to the host's log with the secrets blanked out. The `unsafe` of the
//! controller id lives here only.

use std::time::{Duration, Instant};

use pseidon_plugin_api::{
    BrokerMetadata, ClusterMetadata, Error, PartitionMetadata, TopicMetadata, secret::Scrubber,
};
use rdkafka::{
    ClientContext,
    config::RDKafkaLogLevel,
    consumer::{BaseConsumer, Consumer, ConsumerContext},
    error::{KafkaError, RDKafkaErrorCode},
    types::RDKafkaRespErr,
};

use crate::{
    config::{Config, Role},
    error::{kafka_code_err, kafka_err},
    kafka_log::secret_values,
};

/// The metadata consumer's context: log lines and errors, secrets blanked out, repeated
/// errors (a broker that is down) once per window.
struct MetaCtx {
    secrets: Scrubber,
    log_limit: crate::log_limit::LogLimit,
}

impl ClientContext for MetaCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::kafka_log::log_librdkafka(&self.secrets, level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let reason = self.secrets.scrub(reason);
        let text = format!("librdkafka (metadata): {error}: {reason}");
        if let Some(n) = self.log_limit.check(&text) {
            log::error!(target: "librdkafka", "{text}{}", crate::log_limit::suppressed_note(n));
        }
    }
}

impl ConsumerContext for MetaCtx {}

/// The time left until `deadline`, at least a millisecond.
fn left(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

/// librdkafka's text for a broker error code.
fn resp_err(code: RDKafkaRespErr) -> String {
    RDKafkaErrorCode::from(code).to_string()
}

/// The metadata of the cluster behind `config` (only `topic`, when given) within
/// `timeout`. A topic asked for by name that the broker reports with an error (it does
/// not exist) is an error naming it.
pub(crate) fn fetch(
    config: &Config,
    topic: Option<&str>,
    timeout: Duration,
) -> Result<ClusterMetadata, Error> {
    let deadline = Instant::now() + timeout;
    let consumer: BaseConsumer<MetaCtx> = config
        .client_config(Role::Replay, &[])?
        .create_with_context(MetaCtx {
            secrets: secret_values(config),
            log_limit: crate::log_limit::LogLimit::default(),
        })
        .map_err(|e| kafka_err("creating the metadata consumer", &e))?;
    let servers = config.kafka_prop("bootstrap.servers").unwrap_or("-");
    let what = match topic {
        Some(t) => format!("fetching the metadata of topic `{t}` from {servers}"),
        None => format!("fetching the cluster metadata from {servers}"),
    };
    let md = consumer
        .fetch_metadata(topic, timeout)
        .map_err(|e| kafka_err(what.clone(), &e))?;
    let cluster_id = consumer
        .client()
        .fetch_cluster_id(left(deadline))
        .unwrap_or_default();
    let controller_ms = i32::try_from(left(deadline).as_millis()).unwrap_or(i32::MAX);
    // SAFETY: the handle is live (owned by `consumer` for the whole call); the call only
    // reads librdkafka's cached metadata, waiting up to `controller_ms` for it.
    let controller = unsafe {
        rdkafka::bindings::rd_kafka_controllerid(consumer.client().native_ptr(), controller_ms)
    };
    let mut brokers: Vec<BrokerMetadata> = md
        .brokers()
        .iter()
        .map(|b| BrokerMetadata {
            id: b.id(),
            host: b.host().to_string(),
            port: b.port(),
        })
        .collect();
    brokers.sort_by_key(|b| b.id);
    let mut topics = Vec::new();
    for t in md.topics() {
        let error = t.error().map(resp_err);
        if let (Some(_), Some(code)) = (topic, t.error()) {
            let code = RDKafkaErrorCode::from(code);
            return Err(kafka_code_err(what, code, code.to_string()));
        }
        let mut partitions: Vec<PartitionMetadata> = t
            .partitions()
            .iter()
            .map(|p| {
                let (low_offset, high_offset, offsets_error) =
                    match consumer.fetch_watermarks(t.name(), p.id(), left(deadline)) {
                        Ok((low, high)) => (Some(low), Some(high), None),
                        Err(e) => (None, None, Some(e.to_string())),
                    };
                PartitionMetadata {
                    id: p.id(),
                    leader: p.leader(),
                    replicas: p.replicas().to_vec(),
                    isr: p.isr().to_vec(),
                    error: p.error().map(resp_err),
                    low_offset,
                    high_offset,
                    offsets_error,
                }
            })
            .collect();
        partitions.sort_by_key(|p| p.id);
        topics.push(TopicMetadata {
            name: t.name().to_string(),
            error,
            partitions,
        });
    }
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(ClusterMetadata {
        cluster_id,
        controller_id: (controller >= 0).then_some(controller),
        orig_broker_id: md.orig_broker_id(),
        orig_broker_name: md.orig_broker_name().to_string(),
        brokers,
        topics,
    })
}
