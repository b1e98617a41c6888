//! The datasink `pseidon.kafka.util.datasink`: a [`KafkaSink`] implementing
//! [`DataSink`] on librdkafka's producer (rdkafka's blocking `BaseProducer`, polled
//! by a thread of the plugin's own: the host's async runtime is not visible here).
//!
//! - Every record gets a delivery id (`first_id + i` of its batch). It travels with
//!   the message as librdkafka's opaque pointer (a plain integer, no allocation);
//!   the delivery report callback counts deliveries with an atomic and keeps each
//!   failure (id, topic, reason) under a mutex until [`DataSink::flush`] drains it.
//!   Nothing is dropped silently: a record `write` accepted is either counted as
//!   delivered or listed as failed by a flush, and at shutdown what is left is
//!   logged and returned as an error.
//! - Backpressure: when librdkafka's queue (`queue.buffering.max.messages` /
//!   `queue.buffering.max.kbytes`) is full, `write` waits for room up to
//!   `pseidon-kafka.queue-full-timeout-ms`, then returns [`Error::QueueFull`].
//! - A record larger than the producer's `message.max.bytes` is refused before it is
//!   queued with [`Error::MessageTooLarge`], naming both sizes.
//! - librdkafka's log lines and errors go to the `log` crate with target `librdkafka`
//!   (the plugin-api forwards them to the host), secret conf values blanked out.
//! - A TLS or authentication failure to connect (a wrong CA, a wrong password) is
//!   retried by librdkafka until `message.timeout.ms` (300 s by default), like a broker
//!   that is down. [`ConnectFailure`] tells them apart: once such a failure has
//!   persisted `pseidon-kafka.connect-failure-timeout-ms` with no broker answering,
//!   the queued messages fail with that error as their reason and `write` refuses new
//!   ones at once, until a broker answers again.

use std::{
    collections::HashMap,
    ffi::{CString, c_int, c_void},
    ptr::{self, NonNull},
    sync::{
        Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use pseidon_plugin_api::{
    DataSink, DeliveryFailure, DeliveryId, Error, FlushReport, Record, secret::Scrubber,
};
use rdkafka::{
    ClientContext, Message, bindings as rdsys,
    config::RDKafkaLogLevel,
    error::{KafkaError, RDKafkaErrorCode},
    producer::{BaseProducer, DeliveryResult, Producer, ProducerContext, PurgeConfig},
    types::RDKafkaRespErr,
};

use crate::{
    config::{self, Config, Role},
    health::{ConnectCheck, ConnectFailure, PROBE_TIMEOUT, broker_answers, connect_failure_text},
    kafka_log::{log_librdkafka, scrub, secret_values},
};

/// librdkafka's default `message.max.bytes`.
pub const DEFAULT_MESSAGE_MAX_BYTES: u64 = 1_000_000;
/// librdkafka's default `message.timeout.ms` (alias `delivery.timeout.ms`).
pub const DEFAULT_MESSAGE_TIMEOUT_MS: u64 = 300_000;
/// librdkafka's largest framing of a record (`RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD`):
/// it refuses a record whose key, value, headers and this exceed `message.max.bytes`.
const RECORD_MAX_OVERHEAD: usize = 36;
/// The largest framing of one header (two varint lengths).
const HEADER_MAX_OVERHEAD: usize = 10;
/// How long one call of the poll thread waits for events; also the longest the
/// thread takes to notice a shutdown.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// The longest `write` waits for room in a full queue before it tries again.
const QUEUE_FULL_SLICE: Duration = Duration::from_millis(10);
/// librdkafka's default `queue.buffering.max.messages`.
pub const DEFAULT_QUEUE_MAX_MESSAGES: u64 = 100_000;
/// How often an undrained failure list is mentioned in the log again.
const FAILURE_LOG_EVERY: usize = 100_000;

/// The producer's context: delivery reports, librdkafka's logs and errors.
pub struct SinkContext {
    delivered: AtomicU64,
    failed: AtomicU64,
    failures: Mutex<Vec<DeliveryFailure>>,
    /// Writers waiting for room in a full queue sleep on `room` until the reports
    /// reach this count (`u64::MAX`: nobody waits).
    wake_at: AtomicU64,
    room_lock: Mutex<()>,
    room: Condvar,
    last_error: Mutex<Option<(String, Instant)>>,
    /// Repeated errors (a broker that is down) are logged once per window.
    log_limit: crate::log_limit::LogLimit,
    secrets: Scrubber,
    message_timeout_ms: u64,
    /// A TLS or authentication failure to connect, and whether it persisted.
    failure: ConnectFailure,
}

impl SinkContext {
    fn new(config: &Config, message_timeout_ms: u64) -> Self {
        let secrets = secret_values(config);
        SinkContext {
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            failures: Mutex::new(Vec::new()),
            wake_at: AtomicU64::new(u64::MAX),
            room_lock: Mutex::new(()),
            room: Condvar::new(),
            last_error: Mutex::new(None),
            log_limit: crate::log_limit::LogLimit::default(),
            secrets,
            message_timeout_ms,
            failure: ConnectFailure::new(config.settings.connect_failure_timeout_ms),
        }
    }

    /// `text` with every secret conf value blanked out.
    fn scrub<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        scrub(&self.secrets, text)
    }

    fn failures(&self) -> MutexGuard<'_, Vec<DeliveryFailure>> {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the writers waiting for room once the reports reached their mark.
    #[cold]
    fn wake_writers(&self) {
        let mark = self.wake_at.load(Ordering::Acquire);
        if self.done() >= mark
            && self
                .wake_at
                .compare_exchange(mark, u64::MAX, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            let _guard = self
                .room_lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.room.notify_all();
        }
    }

    /// Waits (at most `limit`) until `reports` more deliveries or failures were
    /// reported: a full queue then has room for that many messages again.
    fn wait_for_room(&self, reports: u64, limit: Duration) {
        let guard = self
            .room_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mark = self.done().saturating_add(reports);
        self.wake_at.fetch_min(mark, Ordering::AcqRel);
        // A report counted before the mark was set would not wake us: check.
        if self.done() >= mark {
            return;
        }
        let _ = self
            .room
            .wait_timeout(guard, limit)
            .unwrap_or_else(PoisonError::into_inner);
    }

    /// Deliveries and failures reported so far, in total.
    fn done(&self) -> u64 {
        self.delivered.load(Ordering::Acquire) + self.failed.load(Ordering::Acquire)
    }

    /// The reason given for a failed delivery.
    fn failure_reason(&self, err: &KafkaError) -> String {
        match err {
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut) => {
                match self.failure.recorded_text() {
                    Some(text) => format!(
                        "{} (not delivered within message.timeout.ms = {} ms; connecting to the brokers failed: {text})",
                        RDKafkaErrorCode::MessageTimedOut,
                        self.message_timeout_ms
                    ),
                    None => format!(
                        "{} (not delivered within message.timeout.ms = {} ms: is the broker reachable and the topic there?)",
                        RDKafkaErrorCode::MessageTimedOut,
                        self.message_timeout_ms
                    ),
                }
            }
            KafkaError::MessageProduction(code @ RDKafkaErrorCode::PurgeQueue)
            | KafkaError::MessageProduction(code @ RDKafkaErrorCode::PurgeInflight) => {
                match self.failure.tripped_reason() {
                    // Purged by the poll thread: the connection failure is the reason.
                    Some(reason) => reason,
                    None => format!("{code} (still queued when the datasink was shut down)"),
                }
            }
            KafkaError::MessageProduction(code) => code.to_string(),
            other => other.to_string(),
        }
    }
}

impl ClientContext for SinkContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_librdkafka(&self.secrets, level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let fatal = matches!(error, KafkaError::Global(RDKafkaErrorCode::Fatal));
        let reason = self.scrub(reason);
        if let Some(failure) = connect_failure_text(&error, &reason) {
            self.failure.record(&failure);
        }
        let text = format!("{error}: {reason}");
        {
            // rdkafka hands the producer each error event twice: log it once.
            let mut last = self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some((prev, at)) = last.as_ref()
                && *prev == text
                && at.elapsed() < Duration::from_secs(1)
            {
                return;
            }
            *last = Some((text.clone(), Instant::now()));
        }
        if fatal {
            log::error!(target: "librdkafka", "fatal producer error, the datasink cannot write any more: {text}");
        } else if let Some(n) = self.log_limit.check(&text) {
            log::warn!(target: "librdkafka", "{text}{}", crate::log_limit::suppressed_note(n));
        }
    }
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, id: usize) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Release);
                self.failure.clear();
            }
            Err((err, msg)) => {
                let failure = DeliveryFailure {
                    id: id as DeliveryId,
                    topic: msg.topic().to_string(),
                    reason: self.failure_reason(err),
                };
                let mut failures = self.failures();
                if failures.is_empty() {
                    log::warn!(
                        "delivery of message {} to topic `{}` failed: {} (this and later failures are reported by the next flush)",
                        failure.id,
                        failure.topic,
                        failure.reason
                    );
                } else if failures.len().is_multiple_of(FAILURE_LOG_EVERY) {
                    log::warn!(
                        "{} failed deliveries are waiting to be reported by a flush",
                        failures.len()
                    );
                }
                failures.push(failure);
                self.failed.fetch_add(1, Ordering::Release);
            }
        }
        if self.wake_at.load(Ordering::Relaxed) != u64::MAX {
            self.wake_writers();
        }
    }
}

type KafkaProducer = BaseProducer<SinkContext>;

/// The poll thread: serves delivery reports, logs and errors.
struct Poller {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

/// A librdkafka topic handle, kept for the producer's life: writing through it
/// spares librdkafka a topic lookup under its global lock and the writer a
/// C-string allocation per message.
struct TopicHandle(NonNull<rdsys::rd_kafka_topic_t>);

// SAFETY: librdkafka topic handles are reference-counted and thread-safe.
unsafe impl Send for TopicHandle {}
// SAFETY: as above.
unsafe impl Sync for TopicHandle {}

/// The live producer and its topic handles; dropped at shutdown.
struct Active {
    producer: Arc<KafkaProducer>,
    topics: RwLock<HashMap<Box<str>, TopicHandle>>,
}

impl Active {
    /// The handle of `topic`, created on first use.
    fn topic(&self, topic: &str) -> Result<*mut rdsys::rd_kafka_topic_t, Error> {
        if let Some(t) = self
            .topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(topic)
        {
            return Ok(t.0.as_ptr());
        }
        let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = topics.get(topic) {
            return Ok(t.0.as_ptr());
        }
        let write_error = |reason: String| Error::Kafka {
            operation: format!("write to topic `{topic}`"),
            reason,
        };
        let name = CString::new(topic)
            .map_err(|_| write_error("a topic name cannot contain a NUL byte".to_string()))?;
        // SAFETY: a live client and a NUL-terminated name; NULL conf = the defaults.
        let rkt = unsafe {
            rdsys::rd_kafka_topic_new(
                self.producer.client().native_ptr(),
                name.as_ptr(),
                ptr::null_mut(),
            )
        };
        let Some(rkt) = NonNull::new(rkt) else {
            // SAFETY: reads this thread's last librdkafka error.
            let code = RDKafkaErrorCode::from(unsafe { rdsys::rd_kafka_last_error() });
            return Err(write_error(format!("invalid topic: {code}")));
        };
        topics.insert(topic.into(), TopicHandle(rkt));
        Ok(rkt.as_ptr())
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
            // client is still alive (`self.producer`).
            unsafe { rdsys::rd_kafka_topic_destroy(t.0.as_ptr()) };
        }
    }
}

struct Shared {
    /// `None` once shut down. Writers take the read lock once per batch.
    active: RwLock<Option<Active>>,
    context: Arc<SinkContext>,
    closed: AtomicBool,
    /// Records accepted by `write`, in total.
    accepted: AtomicU64,
    queue_full_timeout: Duration,
    /// How many reports a writer waits for when the queue is full.
    refill_step: u64,
    max_message_bytes: u64,
    poller: Mutex<Option<Poller>>,
    /// Serialises flushes; holds the delivered count already reported.
    reported_delivered: Mutex<u64>,
}

/// The Kafka datasink. Cloning gives another handle on the same producer.
#[derive(Clone)]
pub struct KafkaSink {
    shared: Arc<Shared>,
}

fn closed_error() -> Error {
    Error::Closed {
        what: format!("the datasink {}", crate::SINK_NAME),
    }
}

fn parse_prop(config: &Config, names: &[&str], default: u64) -> Result<u64, Error> {
    for name in names {
        if let Some(v) = config.kafka_prop(name) {
            return v.trim().parse().map_err(|_| {
                Error::config(
                    format!("{}{name}", config::KAFKA_PREFIX),
                    format!("`{v}` is not a whole number"),
                )
            });
        }
    }
    Ok(default)
}

impl KafkaSink {
    /// Creates the producer (librdkafka checks the whole configuration here) and
    /// starts its poll thread.
    pub fn new(config: &Config) -> Result<KafkaSink, Error> {
        let max_message_bytes =
            parse_prop(config, &["message.max.bytes"], DEFAULT_MESSAGE_MAX_BYTES)?;
        let message_timeout_ms = parse_prop(
            config,
            &["message.timeout.ms", "delivery.timeout.ms"],
            DEFAULT_MESSAGE_TIMEOUT_MS,
        )?;
        let queue_max_messages = parse_prop(
            config,
            &["queue.buffering.max.messages"],
            DEFAULT_QUEUE_MAX_MESSAGES,
        )?;
        let client_config = config.client_config(Role::Producer, &[])?;
        let context = SinkContext::new(config, message_timeout_ms);
        let producer: KafkaProducer =
            client_config
                .create_with_context(context)
                .map_err(|e| Error::Kafka {
                    operation: "create the datasink's producer".to_string(),
                    reason: match e {
                        KafkaError::ClientCreation(reason) => reason,
                        other => other.to_string(),
                    },
                })?;
        let producer = Arc::new(producer);
        let context = Arc::clone(producer.context());
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let producer = Arc::clone(&producer);
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name("pseidon-kafka-sink-poll".to_string())
                .spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        producer.poll(POLL_INTERVAL);
                        check_connection(&producer);
                    }
                })
                .map_err(|e| {
                    Error::other(format!("cannot start the datasink's poll thread: {e}"))
                })?
        };
        Ok(KafkaSink {
            shared: Arc::new(Shared {
                active: RwLock::new(Some(Active {
                    producer,
                    topics: RwLock::new(HashMap::new()),
                })),
                context,
                closed: AtomicBool::new(false),
                accepted: AtomicU64::new(0),
                queue_full_timeout: Duration::from_millis(config.settings.queue_full_timeout_ms),
                refill_step: (queue_max_messages / 4).max(1),
                max_message_bytes,
                poller: Mutex::new(Some(Poller { stop, handle })),
                reported_delivered: Mutex::new(0),
            }),
        })
    }

    /// The `message.max.bytes` in force.
    pub fn max_message_bytes(&self) -> u64 {
        self.shared.max_message_bytes
    }

    /// Stops the sink: later writes fail with [`Error::Closed`]; what was accepted
    /// is flushed within `timeout`; what is still not delivered then is purged. Every
    /// failure is logged, stays available to a later [`DataSink::flush`], and makes
    /// the result an error counting them.
    pub fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        let shared = &self.shared;
        shared.closed.store(true, Ordering::Release);
        // Taking the write lock waits for writes in progress; later ones see `closed`.
        let producer = shared
            .active
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|a| Arc::clone(&a.producer));
        let Some(producer) = producer else {
            return Ok(());
        };
        let target = shared.accepted.load(Ordering::Acquire);
        let pending = wait_delivered(&producer, &shared.context, target, timeout);
        if pending > 0 {
            // Purged messages get a failed delivery report each.
            producer.purge(PurgeConfig::default().queue().inflight());
            wait_delivered(&producer, &shared.context, target, Duration::from_secs(1));
        }
        if let Some(poller) = shared
            .poller
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            poller.stop.store(true, Ordering::Release);
            if poller.handle.join().is_err() {
                log::error!("the datasink's poll thread panicked");
            }
        }
        // Topic handles first, then the client.
        drop(
            shared
                .active
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        // Destroys the librdkafka handle (and its threads) unless a flush still uses it.
        drop(producer);

        // Failures a flush already returned were reported; what is left is not.
        let unaccounted = shared
            .accepted
            .load(Ordering::Acquire)
            .saturating_sub(shared.context.done());
        let failures = shared.context.failures();
        if unaccounted == 0 && failures.is_empty() {
            log::info!(
                "datasink {} shut down; every accepted message was delivered or reported",
                crate::SINK_NAME
            );
            return Ok(());
        }
        for f in failures.iter().take(20) {
            log::error!(
                "message {} to topic `{}` was not delivered: {}",
                f.id,
                f.topic,
                f.reason
            );
        }
        if failures.len() > 20 {
            log::error!("... and {} more undelivered messages", failures.len() - 20);
        }
        let mut reason = format!(
            "{} accepted message(s) were not delivered (a flush lists them with their reasons)",
            failures.len()
        );
        if unaccounted > 0 {
            log::error!("{unaccounted} accepted message(s) have no delivery report at shutdown");
            reason.push_str(&format!("; {unaccounted} more have no delivery report"));
        }
        Err(Error::Kafka {
            operation: format!("shutdown of the datasink {}", crate::SINK_NAME),
            reason,
        })
    }

    fn report(&self, pending: u64) -> FlushReport {
        let shared = &self.shared;
        let mut reported = shared
            .reported_delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let failed = std::mem::take(&mut *shared.context.failures());
        let delivered_total = shared.context.delivered.load(Ordering::Acquire);
        let delivered = delivered_total.saturating_sub(*reported);
        *reported = delivered_total;
        FlushReport {
            delivered,
            failed,
            pending,
        }
    }

    fn send_one(
        &self,
        active: &Active,
        rkt: *mut rdsys::rd_kafka_topic_t,
        record: &Record<'_>,
        id: DeliveryId,
    ) -> Result<(), Error> {
        let shared = &self.shared;
        let topic = record.topic();
        let value = record.value();
        let key = record.get_key();
        let headers = record.get_headers();
        let mut size = value.map_or(0, <[u8]>::len) + key.map_or(0, <[u8]>::len);
        let mut overhead = RECORD_MAX_OVERHEAD;
        if !headers.is_empty() {
            size += headers
                .iter()
                .map(|h| h.key().len() + h.value().map_or(0, <[u8]>::len))
                .sum::<usize>();
            overhead += headers.len() * HEADER_MAX_OVERHEAD;
        }
        let limit = shared.max_message_bytes;
        // librdkafka compares the record's largest wire size with the limit: name the
        // record's own size unless only the framing takes it over.
        let too_large = || Error::MessageTooLarge {
            topic: topic.to_string(),
            size_bytes: if size as u64 > limit {
                size as u64
            } else {
                (size + overhead) as u64
            },
            limit_bytes: limit,
        };
        if (size + overhead) as u64 > limit {
            return Err(too_large());
        }
        let (value_ptr, value_len) = value.map_or((ptr::null_mut(), 0), |v| {
            (v.as_ptr().cast_mut().cast::<c_void>(), v.len())
        });
        let (key_ptr, key_len) =
            key.map_or((ptr::null(), 0), |k| (k.as_ptr().cast::<c_void>(), k.len()));
        let partition = record
            .get_partition()
            .unwrap_or(rdkafka::producer::PARTITION_UA);
        // The delivery id travels as librdkafka's per-message opaque pointer.
        let opaque = id as usize as *mut c_void;
        let mut full_since: Option<Instant> = None;
        loop {
            let code = if headers.is_empty() {
                // SAFETY: a live topic handle; value and key are copied (F_COPY)
                // before the call returns.
                let rc = unsafe {
                    rdsys::rd_kafka_produce(
                        rkt,
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
                    return Ok(());
                }
                // SAFETY: reads this thread's last librdkafka error.
                unsafe { rdsys::rd_kafka_last_error() }
            } else {
                let code =
                    produce_with_headers(active, rkt, partition, value, key, headers, opaque);
                if code == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
                    return Ok(());
                }
                code
            };
            let write_error = |reason: String| Error::Kafka {
                operation: format!("write to topic `{topic}`"),
                reason,
            };
            match RDKafkaErrorCode::from(code) {
                RDKafkaErrorCode::QueueFull => {
                    let since = *full_since.get_or_insert_with(Instant::now);
                    if shared.closed.load(Ordering::Acquire) {
                        return Err(closed_error());
                    }
                    let waited = since.elapsed();
                    if waited >= shared.queue_full_timeout {
                        return Err(Error::QueueFull {
                            topic: topic.to_string(),
                            waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                        });
                    }
                    // Refill in large steps: wait until a quarter of the queue was
                    // delivered (the poll thread serves the reports that free it),
                    // so that librdkafka's sender is not woken for a few messages
                    // at a time. The slice bounds the wait when the byte limit, not
                    // the message count, is what is full.
                    let left = shared.queue_full_timeout.saturating_sub(waited);
                    shared
                        .context
                        .wait_for_room(shared.refill_step, left.min(QUEUE_FULL_SLICE));
                }
                RDKafkaErrorCode::MessageSizeTooLarge => return Err(too_large()),
                RDKafkaErrorCode::Fatal => {
                    let reason = match active.producer.client().fatal_error() {
                        Some((code, text)) => format!(
                            "the producer hit a fatal error and cannot write any more: {code}: {}",
                            shared.context.scrub(&text)
                        ),
                        None => {
                            "the producer hit a fatal error and cannot write any more".to_string()
                        }
                    };
                    return Err(write_error(reason));
                }
                other => return Err(write_error(other.to_string())),
            }
        }
    }
}

/// Run by the poll thread after each poll: once a TLS or authentication failure has
/// persisted and no broker answers, fails every queued message (their delivery reports
/// give the failure as the reason; `write` refuses new ones meanwhile).
fn check_connection(producer: &KafkaProducer) {
    let context = producer.context();
    let check = context
        .failure
        .check(|| broker_answers(producer.client().native_ptr(), PROBE_TIMEOUT));
    if let ConnectCheck::Failed {
        reason,
        newly,
        probed,
    } = check
    {
        if newly {
            log::error!(
                "the datasink {} fails its queued messages and refuses writes until a broker answers: {reason}",
                crate::SINK_NAME
            );
        }
        // Again after each unanswered probe: a write may have raced the first purge.
        if probed {
            producer.purge(PurgeConfig::default().queue().inflight());
        }
    }
}

/// Produces one message with headers (`rd_kafka_producev`); returns librdkafka's code.
fn produce_with_headers(
    active: &Active,
    rkt: *mut rdsys::rd_kafka_topic_t,
    partition: i32,
    value: Option<&[u8]>,
    key: Option<&[u8]>,
    headers: &[pseidon_plugin_api::Header<'_>],
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
            active.producer.client().native_ptr(),
            RD_KAFKA_VTYPE_RKT,
            rkt,
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

/// Flushes `producer` and waits until `target` deliveries (or failures) were
/// reported, or `timeout` passes; returns how many are still pending. The poll
/// thread must be running: it serves the delivery reports.
fn wait_delivered(
    producer: &KafkaProducer,
    context: &SinkContext,
    target: u64,
    timeout: Duration,
) -> u64 {
    let deadline = Instant::now() + timeout;
    let timeout_ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
    // librdkafka's own flush: sends at once (linger.ms is skipped) and, as delivery
    // reports are events served by the poll thread, waits until every message is
    // done. (rdkafka's `Producer::flush` polls in 100 ms slices instead.) It
    // returns either no error or a timeout; the counters below tell which.
    // SAFETY: a live client.
    unsafe { rdsys::rd_kafka_flush(producer.client().native_ptr(), timeout_ms) };
    // The last reports may still be being counted by the poll thread.
    loop {
        let done = context.done();
        if done >= target {
            return 0;
        }
        let now = Instant::now();
        if now >= deadline {
            return target - done;
        }
        thread::sleep((deadline - now).min(Duration::from_millis(1)));
    }
}

impl DataSink for KafkaSink {
    fn write_batch(
        &self,
        records: &[Record<'_>],
        first_id: DeliveryId,
    ) -> Result<(), (u64, Error)> {
        let shared = &self.shared;
        let guard = shared.active.read().unwrap_or_else(PoisonError::into_inner);
        let Some(active) = guard.as_ref() else {
            return Err((0, closed_error()));
        };
        if shared.closed.load(Ordering::Acquire) {
            return Err((0, closed_error()));
        }
        if let Some(reason) = shared.context.failure.tripped_reason()
            && let Some(first) = records.first()
        {
            let topic = first.topic();
            return Err((
                0,
                Error::Kafka {
                    operation: format!("write to topic `{topic}`"),
                    reason,
                },
            ));
        }
        let mut accepted = 0u64;
        let mut result = Ok(());
        // Batches usually go to one topic: look its handle up once.
        let mut last: Option<(&str, *mut rdsys::rd_kafka_topic_t)> = None;
        for (i, record) in records.iter().enumerate() {
            let topic = record.topic();
            let rkt = match last {
                Some((t, rkt)) if t == topic => Ok(rkt),
                _ => active.topic(topic),
            };
            let sent = rkt.and_then(|rkt| {
                last = Some((topic, rkt));
                self.send_one(active, rkt, record, first_id + i as u64)
            });
            if let Err(e) = sent {
                result = Err(e);
                break;
            }
            accepted += 1;
        }
        shared.accepted.fetch_add(accepted, Ordering::AcqRel);
        result.map_err(|e| (accepted, e))
    }

    fn flush(&self, timeout: Duration) -> Result<FlushReport, Error> {
        let producer = self
            .shared
            .active
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|a| Arc::clone(&a.producer));
        let mut pending = 0;
        if let Some(producer) = producer {
            let target = self.shared.accepted.load(Ordering::Acquire);
            pending = wait_delivered(&producer, &self.shared.context, target, timeout);
        }
        Ok(self.report(pending))
    }
}

#[cfg(test)]
mod tests {
    use pseidon_plugin_api::{ConfEntry, ConfKind, ConfView, Header};

    use super::*;

    fn sink(entries: &[(&str, &str)]) -> KafkaSink {
        let conf = ConfView::new(
            entries
                .iter()
                .map(|(k, v)| ConfEntry {
                    key: k.to_string(),
                    kind: ConfKind::String,
                    value: v.to_string(),
                })
                .collect(),
        );
        KafkaSink::new(&Config::parse(&conf).unwrap()).unwrap()
    }

    fn unreachable(extra: &[(&'static str, &'static str)]) -> KafkaSink {
        let mut entries = vec![("kafka.bootstrap.servers", "127.0.0.1:1")];
        entries.extend_from_slice(extra);
        sink(&entries)
    }

    #[test]
    fn delivers_to_a_mock_cluster_and_reports_each_delivery_once() {
        let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
        cluster.create_topic("t", 3, 1).unwrap();
        let bootstrap = cluster.bootstrap_servers();
        let sink = sink(&[("kafka.bootstrap.servers", bootstrap.as_str())]);
        let headers = [Header::new("h", b"1"), Header::null("n")];
        let records: Vec<Record<'_>> = (0..1000)
            .map(|i| {
                Record::new("t", b"value")
                    .key(b"k")
                    .headers(&headers)
                    .partition(i % 3)
            })
            .collect();
        sink.write_batch(&records, 0).unwrap();
        sink.write_batch(&[Record::tombstone("t", b"k")], 1000)
            .unwrap();
        let report = sink.flush(Duration::from_secs(30)).unwrap();
        assert_eq!(report.delivered, 1001, "{report:?}");
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(sink.flush(Duration::ZERO).unwrap(), FlushReport::default());
        sink.shutdown(Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn oversize_is_refused_before_it_is_queued() {
        let sink = unreachable(&[("kafka.message.max.bytes", "1000")]);
        let big = vec![0u8; 2000];
        let records = [Record::new("t", b"small"), Record::new("t", &big)];
        let (accepted, err) = sink.write_batch(&records, 0).unwrap_err();
        assert_eq!(accepted, 1);
        assert_eq!(
            err,
            Error::MessageTooLarge {
                topic: "t".into(),
                size_bytes: 2000,
                limit_bytes: 1000
            }
        );
        // Key and headers count too.
        let key = vec![0u8; 900];
        let headers = [Header::new("h", &[0u8; 100])];
        let err = sink
            .write_batch(&[Record::new("t", b"v").key(&key).headers(&headers)], 2)
            .unwrap_err()
            .1;
        assert!(
            matches!(
                err,
                Error::MessageTooLarge {
                    size_bytes: 1002,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn failures_are_reported_once_with_ids_topic_and_reason() {
        let sink = unreachable(&[("kafka.message.timeout.ms", "300")]);
        sink.write_batch(&[Record::new("a", b"1"), Record::new("b", b"2")], 7)
            .unwrap();
        let started = Instant::now();
        let report = sink.flush(Duration::from_secs(30)).unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        let mut failed: Vec<(u64, String)> = report
            .failed
            .iter()
            .map(|f| (f.id, f.topic.clone()))
            .collect();
        failed.sort();
        assert_eq!(failed, [(7, "a".to_string()), (8, "b".to_string())]);
        assert!(
            report.failed[0]
                .reason
                .contains("message.timeout.ms = 300 ms")
        );
        assert_eq!((report.delivered, report.pending), (0, 0));
        assert!(sink.flush(Duration::ZERO).unwrap().failed.is_empty());
        // Reported already: shutdown has nothing left to complain about.
        sink.shutdown(Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn a_persistent_failure_fails_queued_messages_and_refuses_writes_until_a_broker_answers() {
        let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
        cluster.create_topic("t", 1, 1).unwrap();
        let bootstrap = cluster.bootstrap_servers();
        let sink = sink(&[
            ("kafka.bootstrap.servers", bootstrap.as_str()),
            ("pseidon-kafka.connect-failure-timeout-ms", "300"),
        ]);
        sink.write_batch(&[Record::new("t", b"ok")], 0).unwrap();
        assert_eq!(sink.flush(Duration::from_secs(30)).unwrap().delivered, 1);
        // The brokers go away (down: never a reason to give up), and an
        // authentication failure is reported meanwhile.
        cluster.broker_down(1).unwrap();
        sink.write_batch(&[Record::new("t", b"1"), Record::new("t", b"2")], 1)
            .unwrap();
        sink.shared.context.error(
            KafkaError::Global(RDKafkaErrorCode::Authentication),
            "sasl_ssl://b:9093/1: SASL authentication error: Authentication failed",
        );
        let started = Instant::now();
        let mut failed = Vec::new();
        while failed.len() < 2 && started.elapsed() < Duration::from_secs(10) {
            failed.extend(sink.flush(Duration::from_millis(100)).unwrap().failed);
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let ids: Vec<u64> = failed.iter().map(|f| f.id).collect();
        assert_eq!(ids.len(), 2, "{failed:?}");
        assert!(
            failed
                .iter()
                .all(|f| f.reason.contains("Authentication failed")),
            "{failed:?}"
        );
        let (accepted, err) = sink.write_batch(&[Record::new("t", b"3")], 3).unwrap_err();
        assert_eq!(accepted, 0);
        let Error::Kafka { operation, reason } = err else {
            panic!("{err:?}");
        };
        assert_eq!(operation, "write to topic `t`");
        assert!(reason.contains("SASL authentication error"), "{reason}");
        // The broker is back: the next check (every 2 s) finds it answering.
        cluster.broker_up(1).unwrap();
        let started = Instant::now();
        loop {
            match sink.write_batch(&[Record::new("t", b"4")], 4) {
                Ok(()) => break,
                Err(_) if started.elapsed() < Duration::from_secs(10) => {
                    thread::sleep(Duration::from_millis(50))
                }
                Err((_, e)) => panic!("writes still refused: {e}"),
            }
        }
        let report = sink.flush(Duration::from_secs(30)).unwrap();
        assert_eq!(
            (report.delivered, report.failed.len()),
            (1, 0),
            "{report:?}"
        );
        sink.shutdown(Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn a_broker_that_is_down_is_waited_for() {
        let sink = unreachable(&[("pseidon-kafka.connect-failure-timeout-ms", "100")]);
        sink.write_batch(&[Record::new("t", b"1")], 0).unwrap();
        let report = sink.flush(Duration::from_millis(800)).unwrap();
        assert_eq!((report.pending, report.failed.len()), (1, 0), "{report:?}");
        sink.write_batch(&[Record::new("t", b"2")], 1).unwrap();
        let err = sink.shutdown(Duration::from_millis(100)).unwrap_err();
        assert!(err.to_string().contains("were not delivered"), "{err}");
        let report = sink.flush(Duration::ZERO).unwrap();
        assert!(
            report.failed.iter().all(|f| f.reason.contains("shut down")),
            "{report:?}"
        );
    }

    #[test]
    fn full_queue_waits_then_says_so_and_shutdown_reports_the_rest() {
        let sink = unreachable(&[
            ("kafka.queue.buffering.max.messages", "2"),
            ("pseidon-kafka.queue-full-timeout-ms", "200"),
        ]);
        sink.write_batch(&[Record::new("t", b"1"), Record::new("t", b"2")], 0)
            .unwrap();
        let started = Instant::now();
        let (accepted, err) = sink.write_batch(&[Record::new("t", b"3")], 2).unwrap_err();
        assert_eq!(accepted, 0);
        assert!(matches!(err, Error::QueueFull { .. }), "{err:?}");
        assert!(started.elapsed() >= Duration::from_millis(200));
        let err = sink.shutdown(Duration::from_millis(300)).unwrap_err();
        assert!(
            err.to_string()
                .contains("2 accepted message(s) were not delivered"),
            "{err}"
        );
        let report = sink.flush(Duration::ZERO).unwrap();
        assert_eq!(report.failed.len(), 2, "{report:?}");
        // Shut down: writes are refused.
        let (_, err) = sink.write_batch(&[Record::new("t", b"4")], 3).unwrap_err();
        assert!(matches!(err, Error::Closed { .. }), "{err:?}");
        sink.shutdown(Duration::ZERO).unwrap();
    }
}
