//! What the status database's rows are scoped by, as Kafka tells it: the cluster id
//! (librdkafka's `rd_kafka_clusterid`, from metadata) and each topic's id (Kafka's
//! topic UUID, from the DescribeTopics admin request, base64 as Kafka's tools print it).
//!
//! A topic deleted and recreated under the same name has a new topic id: that is how a
//! reader tells the rows of an earlier incarnation from the current one. The raw
//! librdkafka calls of the admin request and their `unsafe` live here only.

use std::{
    collections::HashMap,
    ffi::{CStr, CString},
    ptr,
    time::Duration,
};

use rdkafka::{bindings as rdsys, error::RDKafkaErrorCode};

/// A topic's id, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TopicId {
    /// Kafka's topic id, base64.
    Known(String),
    /// The topic does not exist (yet).
    NoSuchTopic,
    /// The broker answered with another error for this topic.
    Failed {
        /// librdkafka's error code.
        code: RDKafkaErrorCode,
        /// Its text.
        reason: String,
    },
}

/// Why describing topics failed as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DescribeError {
    /// librdkafka's error code.
    pub code: RDKafkaErrorCode,
    /// Its text.
    pub reason: String,
}

impl DescribeError {
    /// True if trying again later may help (a timeout, a broker not reachable yet).
    pub fn is_transient(&self) -> bool {
        matches!(
            self.code,
            RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::NotController
        )
    }
}

fn cstr(p: *const std::os::raw::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: librdkafka returns NUL-terminated strings that live as long as the event.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// The ids of `topics`, asked of the cluster behind `client` within `timeout`.
pub(crate) fn topic_ids(
    client: *mut rdsys::rd_kafka_t,
    topics: &[String],
    timeout: Duration,
) -> Result<HashMap<String, TopicId>, DescribeError> {
    let names: Vec<CString> = topics
        .iter()
        .filter_map(|t| CString::new(t.as_str()).ok())
        .collect();
    let mut ptrs: Vec<*const std::os::raw::c_char> = names.iter().map(|n| n.as_ptr()).collect();
    let timeout_ms = i32::try_from(timeout.as_millis())
        .unwrap_or(i32::MAX)
        .max(1);
    // SAFETY: `client` is a live handle owned by the caller for the whole call; every
    // object created here is destroyed before returning; the result's strings are
    // copied before the event is destroyed.
    unsafe {
        let queue = rdsys::rd_kafka_queue_new(client);
        let collection =
            rdsys::rd_kafka_TopicCollection_of_topic_names(ptrs.as_mut_ptr(), ptrs.len());
        let options = rdsys::rd_kafka_AdminOptions_new(
            client,
            rdsys::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
        );
        let mut errstr = [0 as std::os::raw::c_char; 256];
        rdsys::rd_kafka_AdminOptions_set_request_timeout(
            options,
            timeout_ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        rdsys::rd_kafka_DescribeTopics(client, collection, options, queue);
        // The admin request times out by itself; a little longer here to see that.
        let event = rdsys::rd_kafka_queue_poll(queue, timeout_ms.saturating_add(1000));
        let result = if event.is_null() {
            Err(DescribeError {
                code: RDKafkaErrorCode::OperationTimedOut,
                reason: format!("no answer to DescribeTopics within {timeout_ms} ms"),
            })
        } else {
            let err = rdsys::rd_kafka_event_error(event);
            if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                Err(DescribeError {
                    code: RDKafkaErrorCode::from(err),
                    reason: cstr(rdsys::rd_kafka_event_error_string(event)),
                })
            } else {
                let res = rdsys::rd_kafka_event_DescribeTopics_result(event);
                let mut cnt = 0usize;
                let descs = if res.is_null() {
                    ptr::null_mut()
                } else {
                    rdsys::rd_kafka_DescribeTopics_result_topics(res, &mut cnt)
                };
                let mut out = HashMap::new();
                for i in 0..if descs.is_null() { 0 } else { cnt } {
                    let d = *descs.add(i);
                    let name = cstr(rdsys::rd_kafka_TopicDescription_name(d));
                    let e = rdsys::rd_kafka_TopicDescription_error(d);
                    let code = if e.is_null() {
                        RDKafkaErrorCode::NoError
                    } else {
                        RDKafkaErrorCode::from(rdsys::rd_kafka_error_code(e))
                    };
                    let id = match code {
                        RDKafkaErrorCode::NoError => {
                            let uuid = rdsys::rd_kafka_TopicDescription_topic_id(d);
                            let s = if uuid.is_null() {
                                String::new()
                            } else {
                                cstr(rdsys::rd_kafka_Uuid_base64str(uuid))
                            };
                            // The zero UUID (a broker without topic ids) is no id.
                            if s.is_empty() || s == "AAAAAAAAAAAAAAAAAAAAAA" {
                                TopicId::Failed {
                                    code,
                                    reason: "the broker reports no topic id".into(),
                                }
                            } else {
                                TopicId::Known(s)
                            }
                        }
                        RDKafkaErrorCode::UnknownTopicOrPartition
                        | RDKafkaErrorCode::UnknownTopic
                        | RDKafkaErrorCode::UnknownTopicId => TopicId::NoSuchTopic,
                        _ => TopicId::Failed {
                            code,
                            reason: cstr(rdsys::rd_kafka_error_string(e)),
                        },
                    };
                    out.insert(name, id);
                }
                Ok(out)
            }
        };
        if !event.is_null() {
            rdsys::rd_kafka_event_destroy(event);
        }
        rdsys::rd_kafka_AdminOptions_destroy(options);
        rdsys::rd_kafka_TopicCollection_destroy(collection);
        rdsys::rd_kafka_queue_destroy(queue);
        result
    }
}
