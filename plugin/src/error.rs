//! Small error helpers shared by the plugin's modules: a librdkafka failure as the
//! interface's [`Error::Kafka`] with librdkafka's code kept and whether a retry may
//! cure it (one rule, [`is_retriable_code`]), and the librdkafka codes that are an
//! expected outcome rather than a failure.

use pseidon_plugin_api::Error;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::{
    consume_error::{self, Kind},
    health,
};

/// A Kafka error as the interface's error, naming the `operation` that failed.
pub(crate) fn kafka_err(operation: impl Into<String>, e: &KafkaError) -> Error {
    let code = e.rdkafka_error_code();
    Error::Kafka {
        operation: operation.into(),
        reason: e.to_string(),
        code: code.map(|c| c as i32),
        retriable: code.is_some_and(is_retriable_code),
    }
}

/// A failure with librdkafka's `code` as the interface's error; `reason` says it in
/// words (secrets already blanked out).
pub(crate) fn kafka_code_err(
    operation: impl Into<String>,
    code: RDKafkaErrorCode,
    reason: impl Into<String>,
) -> Error {
    Error::Kafka {
        operation: operation.into(),
        reason: reason.into(),
        code: Some(code as i32),
        retriable: is_retriable_code(code),
    }
}

/// Whether a call that failed with librdkafka's `code` may succeed if tried again
/// later: the errors librdkafka itself retries (a broker down, a leader moving, a full
/// queue), but not a refusal that stays (authorization, TLS or authentication, an
/// invalid argument or topic name, an undecodable batch, a fatal client error).
pub(crate) fn is_retriable_code(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    consume_error::classify_code(code) == Kind::Transient
        && !health::is_persistent_connect_code(code)
        && !matches!(
            code,
            C::InvalidArgument
                | C::InvalidTopic
                | C::InvalidConfig
                | C::InvalidRequest
                | C::InvalidPartitions
                | C::InvalidReplicationFactor
                | C::PolicyViolation
                | C::UnsupportedFeature
                | C::TopicAlreadyExists
        )
}

/// True for librdkafka's "Erroneous state": the partition is no longer assigned.
pub(crate) fn is_state_error(e: &KafkaError) -> bool {
    e.rdkafka_error_code() == Some(RDKafkaErrorCode::State)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kafka_error_keeps_librdkafkas_code_and_whether_a_retry_may_cure_it() {
        let down = kafka_err(
            "reading",
            &KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
        );
        assert_eq!(
            down.kafka_code(),
            Some(RDKafkaErrorCode::AllBrokersDown as i32)
        );
        assert!(down.is_retriable());
        let denied = kafka_err(
            "reading",
            &KafkaError::Global(RDKafkaErrorCode::TopicAuthorizationFailed),
        );
        assert_eq!(denied.kafka_code(), Some(29));
        assert!(!denied.is_retriable());
        let tls = kafka_code_err("write", RDKafkaErrorCode::SSL, "certificate verify failed");
        assert!(!tls.is_retriable(), "{tls:?}");
        assert_eq!(
            tls.to_string(),
            "kafka write failed: certificate verify failed"
        );
        // Crosses the boundary unchanged.
        let back: Error = pseidon_plugin_api::ffi::FfiError::from(denied.clone()).into();
        assert_eq!(back, denied);
        // Not from librdkafka: no code.
        assert_eq!(kafka_err("flush", &KafkaError::Canceled).kafka_code(), None);
    }
}
