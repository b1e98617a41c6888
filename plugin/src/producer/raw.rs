//! The raw librdkafka calls of the datasink, and all its `unsafe`: topic handles,
//! producing a message (with or without headers), librdkafka's own flush, the purge.
//! rdkafka's safe `BaseProducer::send` allocates per message and looks the topic up
//! under librdkafka's global lock; these calls spare both.
//!
//! Invariants:
//! - A topic handle is created once per topic name by [`Active::topic`] and destroyed
//!   only when the [`Active`] holding it is dropped, while its client is still alive
//!   (the handles are dropped before the producer). A [`Topic`] borrows the
//!   [`Active`] it came from, so it cannot outlive its handle.
//! - Every value, key and header is copied by librdkafka (`RD_KAFKA_MSG_F_COPY`,
//!   `rd_kafka_header_add`) before the call returns: no buffer of the caller's is
//!   kept.
//! - The delivery id travels as the message's opaque pointer: a plain integer, never
//!   dereferenced, handed back to [`SinkContext`](super::context::SinkContext)'s
//!   delivery callback.

use std::{
    collections::HashMap,
    ffi::{CString, c_int, c_void},
    marker::PhantomData,
    ptr::{self, NonNull},
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use pseidon_plugin_api::{Error, Header};
use rdkafka::{
    bindings as rdsys,
    error::RDKafkaErrorCode,
    producer::{Producer, PurgeConfig},
    types::RDKafkaRespErr,
};

use super::{context::KafkaProducer, reports::Reports};
use crate::error::kafka_code_err;

/// A librdkafka topic handle, kept for the producer's life: writing through it
/// spares librdkafka a topic lookup under its global lock and the writer a
/// C-string allocation per message.
struct TopicHandle(NonNull<rdsys::rd_kafka_topic_t>);

// SAFETY: librdkafka topic handles are reference-counted and thread-safe.
unsafe impl Send for TopicHandle {}
// SAFETY: as above.
unsafe impl Sync for TopicHandle {}

/// A topic handle of an [`Active`], valid as long as the borrow of it.
#[derive(Clone, Copy)]
pub(super) struct Topic<'a> {
    rkt: NonNull<rdsys::rd_kafka_topic_t>,
    _active: PhantomData<&'a Active>,
}

/// The live producer and its topic handles; dropped at shutdown.
pub(super) struct Active {
    /// The producer's report queue; it holds the producer.
    reports: Arc<Reports>,
    /// Looked up once per batch: hashed with foldhash, not SipHash (topic names are
    /// the application's, not an attacker's flood of keys).
    topics: RwLock<HashMap<Box<str>, TopicHandle, foldhash::fast::RandomState>>,
}

impl Active {
    /// Takes `producer` with no topic handle yet.
    pub(super) fn new(reports: Arc<Reports>) -> Self {
        Active {
            reports,
            topics: RwLock::new(HashMap::default()),
        }
    }

    /// The producer.
    pub(super) fn producer(&self) -> &Arc<KafkaProducer> {
        self.reports.producer()
    }

    /// The producer's report queue.
    pub(super) fn reports(&self) -> &Arc<Reports> {
        &self.reports
    }

    /// The handle of `topic`, created on first use.
    pub(super) fn topic(&self, topic: &str) -> Result<Topic<'_>, Error> {
        let borrow = |rkt: NonNull<rdsys::rd_kafka_topic_t>| Topic {
            rkt,
            _active: PhantomData,
        };
        if let Some(t) = self
            .topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(topic)
        {
            return Ok(borrow(t.0));
        }
        let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = topics.get(topic) {
            return Ok(borrow(t.0));
        }
        let operation = || format!("write to topic `{topic}`");
        let name = CString::new(topic)
            .map_err(|_| Error::kafka(operation(), "a topic name cannot contain a NUL byte"))?;
        // SAFETY: a live client and a NUL-terminated name; NULL conf = the defaults.
        let rkt = unsafe {
            rdsys::rd_kafka_topic_new(
                self.producer().client().native_ptr(),
                name.as_ptr(),
                ptr::null_mut(),
            )
        };
        let Some(rkt) = NonNull::new(rkt) else {
            // SAFETY: reads this thread's last librdkafka error.
            let code = RDKafkaErrorCode::from(unsafe { rdsys::rd_kafka_last_error() });
            return Err(kafka_code_err(
                operation(),
                code,
                format!("invalid topic: {code}"),
            ));
        };
        topics.insert(topic.into(), TopicHandle(rkt));
        Ok(borrow(rkt))
    }

    /// Queues one message (`rd_kafka_produce`, or `rd_kafka_producev` when it has
    /// headers or a timestamp) with `id` as its opaque; returns librdkafka's code
    /// (`NO_ERROR` when queued). Without a timestamp librdkafka stamps it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn produce(
        &self,
        topic: Topic<'_>,
        partition: i32,
        value: Option<&[u8]>,
        key: Option<&[u8]>,
        headers: &[Header<'_>],
        timestamp_ms: Option<i64>,
        id: u64,
    ) -> RDKafkaRespErr {
        // The delivery id travels as librdkafka's per-message opaque pointer.
        let opaque = id as usize as *mut c_void;
        if !headers.is_empty() || timestamp_ms.is_some() {
            return self.produce_v(topic, partition, value, key, headers, timestamp_ms, opaque);
        }
        let (value_ptr, value_len) = value.map_or((ptr::null_mut(), 0), |v| {
            (v.as_ptr().cast_mut().cast::<c_void>(), v.len())
        });
        let (key_ptr, key_len) =
            key.map_or((ptr::null(), 0), |k| (k.as_ptr().cast::<c_void>(), k.len()));
        // SAFETY: a live topic handle; value and key are copied (F_COPY)
        // before the call returns.
        let rc = unsafe {
            rdsys::rd_kafka_produce(
                topic.rkt.as_ptr(),
                partition,
                rdsys::RD_KAFKA_MSG_F_COPY as c_int,
                value_ptr,
                value_len,
                key_ptr,
                key_len,
                opaque,
            )
        };
        if rc == 0 {
            return RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR;
        }
        // SAFETY: reads this thread's last librdkafka error.
        unsafe { rdsys::rd_kafka_last_error() }
    }

    /// Produces one message with headers (possibly none) and a timestamp (`None`, or 0:
    /// librdkafka's "now") through `rd_kafka_producev`; returns librdkafka's code.
    #[allow(clippy::too_many_arguments)]
    fn produce_v(
        &self,
        topic: Topic<'_>,
        partition: i32,
        value: Option<&[u8]>,
        key: Option<&[u8]>,
        headers: &[Header<'_>],
        timestamp_ms: Option<i64>,
        opaque: *mut c_void,
    ) -> RDKafkaRespErr {
        // SAFETY: a new header list; every name and value is copied by librdkafka.
        let hdrs = unsafe { rdsys::rd_kafka_headers_new(headers.len()) };
        for h in headers {
            let (v_ptr, v_len) = h.value().map_or((ptr::null(), 0), |v| {
                (v.as_ptr().cast::<c_void>(), v.len() as isize)
            });
            // SAFETY: sizes are given, so no NUL terminators are needed.
            unsafe {
                rdsys::rd_kafka_header_add(
                    hdrs,
                    h.key().as_ptr().cast(),
                    h.key().len() as isize,
                    v_ptr,
                    v_len,
                )
            };
        }
        let (value_ptr, value_len) = value.map_or((ptr::null_mut(), 0), |v| {
            (v.as_ptr().cast_mut().cast::<c_void>(), v.len())
        });
        let (key_ptr, key_len) = key.map_or((ptr::null_mut(), 0), |k| {
            (k.as_ptr().cast_mut().cast::<c_void>(), k.len())
        });
        use rdsys::rd_kafka_vtype_t::*;
        // SAFETY: the argument list follows rd_kafka_producev's contract (type tag, then
        // its values, ending with END); value and key are copied (F_COPY).
        let code = unsafe {
            rdsys::rd_kafka_producev(
                self.producer().client().native_ptr(),
                RD_KAFKA_VTYPE_RKT,
                topic.rkt.as_ptr(),
                RD_KAFKA_VTYPE_PARTITION,
                partition,
                RD_KAFKA_VTYPE_MSGFLAGS,
                rdsys::RD_KAFKA_MSG_F_COPY as c_int,
                RD_KAFKA_VTYPE_VALUE,
                value_ptr,
                value_len,
                RD_KAFKA_VTYPE_KEY,
                key_ptr,
                key_len,
                RD_KAFKA_VTYPE_OPAQUE,
                opaque,
                RD_KAFKA_VTYPE_HEADERS,
                hdrs,
                RD_KAFKA_VTYPE_TIMESTAMP,
                timestamp_ms.unwrap_or(0),
                RD_KAFKA_VTYPE_END,
            )
        };
        if code != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
            // Only a successful producev takes the headers over.
            // SAFETY: still ours.
            unsafe { rdsys::rd_kafka_headers_destroy(hdrs) };
        }
        code
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        let topics = self
            .topics
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for (_, t) in topics.drain() {
            // SAFETY: each handle was created once by `rd_kafka_topic_new` and the
            // client is still alive (`self.reports` holds it).
            unsafe { rdsys::rd_kafka_topic_destroy(t.0.as_ptr()) };
        }
    }
}

/// librdkafka's own flush: sends at once (linger.ms is skipped) and, as delivery
/// reports are events served by another thread (`Reports::serve`), waits until every message is done
/// or `timeout` passes. (rdkafka's `Producer::flush` polls in 100 ms slices
/// instead.) It returns either no error or a timeout: the caller's counters tell
/// which.
pub(super) fn flush(producer: &KafkaProducer, timeout: Duration) {
    // Rounded up: a wait under 1 ms rounded down would not wait (a flush serving its
    // own reports would spin through its last millisecond).
    let timeout_ms = c_int::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(c_int::MAX);
    // SAFETY: a live client.
    unsafe { rdsys::rd_kafka_flush(producer.client().native_ptr(), timeout_ms) };
}

/// The time from `rd_kafka_produce` to the delivery report of `msg`, if librdkafka
/// knows it.
pub(super) fn latency_micros(msg: &rdkafka::message::BorrowedMessage<'_>) -> Option<u64> {
    // SAFETY: a message borrowed for the delivery callback's duration.
    let us = unsafe { rdsys::rd_kafka_message_latency(msg.ptr()) };
    u64::try_from(us).ok()
}

/// Fails every queued and in-flight message: each gets a failed delivery report.
pub(super) fn purge(producer: &KafkaProducer) {
    producer.purge(PurgeConfig::default().queue().inflight());
}

/// A failed librdkafka transaction call, as its error object said.
pub(super) struct TxnFailure {
    pub(super) code: rdkafka::error::RDKafkaErrorCode,
    pub(super) text: String,
    pub(super) fatal: bool,
    pub(super) abortable: bool,
}

/// `rd_kafka_send_offsets_to_transaction` with consumer group metadata of the group id
/// only (`rd_kafka_consumer_group_metadata_new`: generation -1, no member, no instance
/// id), for a reader that has not joined its group yet (its groups are replayed): the
/// broker takes such a transactional offset commit whatever the group's members, while
/// the not-joined consumer's own metadata carries its `group.instance.id` and is fenced
/// as an unknown static member.
pub(super) fn send_offsets_group_only(
    producer: &KafkaProducer,
    offsets: &rdkafka::TopicPartitionList,
    group: &str,
    timeout_ms: i32,
) -> Result<(), TxnFailure> {
    let Ok(group) = std::ffi::CString::new(group) else {
        return Err(TxnFailure {
            code: rdkafka::error::RDKafkaErrorCode::InvalidArgument,
            text: "the consumer group holds a NUL byte".into(),
            fatal: false,
            abortable: false,
        });
    };
    // SAFETY: the metadata is created, used once and destroyed here; the producer's
    // handle and the list outlive the call.
    unsafe {
        let cgm = rdsys::rd_kafka_consumer_group_metadata_new(group.as_ptr());
        if cgm.is_null() {
            return Err(TxnFailure {
                code: rdkafka::error::RDKafkaErrorCode::Fail,
                text: "cannot create the consumer group metadata".into(),
                fatal: false,
                abortable: false,
            });
        }
        let err = rdsys::rd_kafka_send_offsets_to_transaction(
            producer.client().native_ptr(),
            offsets.ptr(),
            cgm,
            timeout_ms,
        );
        rdsys::rd_kafka_consumer_group_metadata_destroy(cgm);
        if err.is_null() {
            return Ok(());
        }
        let failure = TxnFailure {
            code: rdsys::rd_kafka_error_code(err).into(),
            text: std::ffi::CStr::from_ptr(rdsys::rd_kafka_error_string(err))
                .to_string_lossy()
                .into_owned(),
            fatal: rdsys::rd_kafka_error_is_fatal(err) != 0,
            abortable: rdsys::rd_kafka_error_txn_requires_abort(err) != 0,
        };
        rdsys::rd_kafka_error_destroy(err);
        Err(failure)
    }
}
