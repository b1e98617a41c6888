//! The producer's context ([`SinkContext`]): what librdkafka's callbacks, served by
//! the poll thread (or by a busy writer, see [`super::poll`]), report to the datasink.
//!
//! - Delivery accounting: deliveries are counted with an atomic; each failure (id,
//!   topic, reason) is kept under a mutex until a flush drains the list. Both counts
//!   only grow: `delivered + failed` ([`SinkContext::done`]) is every report so far,
//!   which the sink compares with the records it accepted. A report whose id lies in an
//!   open flush ticket ([`Tickets`]) is counted there instead of in the shared list. The list is bounded
//!   ([`FailureList`], [`MAX_LISTED_FAILURES`]): beyond the bound, failures are
//!   counted and summarised by the next flush.
//! - Room in a full queue: a writer that found librdkafka's queue full serves the
//!   reports itself until a step of the queue was delivered (see
//!   [`super::sink`]); [`SinkContext::polling_writer`] tells the poll thread to step
//!   aside meanwhile (each message is freed by the thread that allocated it).
//! - The reason given for a failure names the cause where it is known: the
//!   connection failure that tripped ([`ConnectFailure`]), `message.timeout.ms`, or the
//!   shutdown that purged the queue.
//! - librdkafka's log lines and errors go to the `log` crate ([`crate::kafka_log`])
//!   with the secret conf values blanked out; an error repeated within a second
//!   (rdkafka hands the producer each error event twice) is logged once, repeated
//!   kinds once per [`crate::log_limit`] window.

use std::{
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use pseidon_plugin_api::{DeliveryFailure, DeliveryId, secret::Scrubber};
use rdkafka::{
    ClientContext, Message,
    config::RDKafkaLogLevel,
    error::{KafkaError, RDKafkaErrorCode},
    producer::{BaseProducer, DeliveryResult, ProducerContext},
};

use super::{
    failures::{FailureList, MAX_LISTED_FAILURES},
    tickets::{Routed, Tickets},
};
use crate::{
    config::Config,
    health::{ConnectFailure, connect_failure_text},
    kafka_log::{log_librdkafka, scrub, secret_values},
    metrics::sink::{SinkMetrics, failure_reason_label},
};

/// How often an undrained failure list is mentioned in the log again.
const FAILURE_LOG_EVERY: u64 = 100_000;

/// The datasink's producer.
pub(super) type KafkaProducer = BaseProducer<SinkContext>;

/// The producer's context: delivery reports, librdkafka's logs and errors.
pub(crate) struct SinkContext {
    delivered: AtomicU64,
    failed: AtomicU64,
    failures: Mutex<FailureList>,
    /// Writers serving the reports themselves while the queue is full.
    polling_writers: AtomicU32,
    last_error: Mutex<Option<(String, Instant)>>,
    /// Repeated errors (a broker that is down) are logged once per window.
    log_limit: crate::log_limit::LogLimit,
    secrets: Scrubber,
    message_timeout_ms: u64,
    /// A TLS or authentication failure to connect, and whether it persisted.
    pub(super) failure: ConnectFailure,
    /// The open flush tickets: their deliveries bypass the shared accounting.
    pub(super) tickets: Tickets,
    /// The counters and statistics the metrics report.
    pub(crate) metrics: SinkMetrics,
    /// The datasink's registry name (`Config::sink_name`), for log lines.
    pub(super) name: String,
    /// Records queued by writers, in total: the poll thread steps aside while it
    /// grows (the writer serves the reports then, see [`super::poll`]).
    pub(super) queued: AtomicU64,
}

impl SinkContext {
    pub(super) fn new(config: &Config, message_timeout_ms: u64) -> Self {
        let secrets = secret_values(config);
        SinkContext {
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            failures: Mutex::new(FailureList::new(MAX_LISTED_FAILURES)),
            polling_writers: AtomicU32::new(0),
            last_error: Mutex::new(None),
            log_limit: crate::log_limit::LogLimit::default(),
            secrets,
            message_timeout_ms,
            failure: ConnectFailure::new(config.settings.connect_failure_timeout_ms),
            tickets: Tickets::new(),
            metrics: SinkMetrics::default(),
            name: config.sink_name(),
            queued: AtomicU64::new(0),
        }
    }

    /// `text` with every secret conf value blanked out.
    pub(super) fn scrub<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        scrub(&self.secrets, text)
    }

    /// The failures not drained by a flush yet.
    pub(super) fn failures(&self) -> MutexGuard<'_, FailureList> {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a writer serves the reports itself (a full queue).
    pub(super) fn writer_polls(&self) -> bool {
        self.polling_writers.load(Ordering::Relaxed) != 0
    }

    /// Marks the calling writer as serving the reports until the guard drops.
    pub(super) fn polling_writer(&self) -> PollingWriter<'_> {
        self.polling_writers.fetch_add(1, Ordering::Relaxed);
        PollingWriter(&self.polling_writers)
    }

    /// Deliveries reported so far, in total.
    pub(super) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Acquire)
    }

    /// Deliveries and failures reported so far, in total.
    pub(super) fn done(&self) -> u64 {
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
                match self.failure.tripped() {
                    // Purged by the poll thread: the connection failure is the reason.
                    Some((_, reason)) => reason,
                    None => format!("{code} (still queued when the datasink was shut down)"),
                }
            }
            KafkaError::MessageProduction(code) => code.to_string(),
            other => other.to_string(),
        }
    }
}

impl ClientContext for SinkContext {
    fn stats_raw(&self, statistics: &[u8]) {
        self.metrics.stats.update(statistics);
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_librdkafka(&self.secrets, level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let fatal = matches!(error, KafkaError::Global(RDKafkaErrorCode::Fatal));
        let reason = self.scrub(reason);
        if let Some((code, failure)) = connect_failure_text(&error, &reason) {
            self.failure.record(code, &failure);
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
        let id = id as DeliveryId;
        match result {
            Ok(msg) => {
                self.metrics
                    .delivered(msg.topic(), super::raw::latency_micros(msg));
                let _ = self.tickets.route(id, None);
                self.delivered.fetch_add(1, Ordering::Release);
                self.failure.clear();
            }
            Err((err, msg)) => {
                self.metrics.failed(
                    msg.topic(),
                    failure_reason_label(err),
                    super::raw::latency_micros(msg),
                );
                let failure = DeliveryFailure {
                    id,
                    topic: msg.topic().to_string(),
                    reason: self.failure_reason(err),
                };
                if let Routed::Shared(Some(failure)) = self.tickets.route(id, Some(failure)) {
                    self.push_failure(failure);
                }
                self.failed.fetch_add(1, Ordering::Release);
            }
        }
    }
}

impl SinkContext {
    /// Adds a failure to the shared list (drained by the next flush).
    pub(super) fn push_failure(&self, failure: DeliveryFailure) {
        let mut failures = self.failures();
        let waiting = failures.len();
        if waiting == 0 {
            log::warn!(
                "delivery of message {} to topic `{}` failed: {} (this and later failures are reported by the next flush)",
                failure.id,
                failure.topic,
                failure.reason
            );
        }
        if failures.push(failure) {
            log::warn!(
                "{waiting} failed deliveries are waiting to be reported by a flush: later ones are only counted until then (the flush reports their count, first and last ids)"
            );
        } else if waiting > 0 && waiting.is_multiple_of(FAILURE_LOG_EVERY) {
            log::warn!("{waiting} failed deliveries are waiting to be reported by a flush");
        }
    }
}

/// A writer serving the reports itself ([`SinkContext::polling_writer`]).
pub(super) struct PollingWriter<'a>(&'a AtomicU32);

impl Drop for PollingWriter<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
