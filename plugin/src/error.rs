//! Small error helpers shared by the datasource's modules: a librdkafka error as the
//! interface's [`Error`], and the librdkafka codes that are an expected outcome rather
//! than a failure.

use pseidon_plugin_api::Error;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// A Kafka error as the interface's error, naming the `operation` that failed.
pub(crate) fn kafka_err(operation: impl Into<String>, e: &KafkaError) -> Error {
    Error::Kafka {
        operation: operation.into(),
        reason: e.to_string(),
    }
}

/// True for librdkafka's "Erroneous state": the partition is no longer assigned.
pub(crate) fn is_state_error(e: &KafkaError) -> bool {
    e.rdkafka_error_code() == Some(RDKafkaErrorCode::State)
}
