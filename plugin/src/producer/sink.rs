//! [`KafkaSink`], the [`DataSink`] of the plugin: creates the producer, writes
//! batches, flushes, shuts down.
//!
//! - `write_batch` refuses the batch at once when the sink is shut down or a
//!   connection failure has tripped; otherwise each record is size-checked against
//!   `message.max.bytes` (with librdkafka's largest framing), then queued. A full
//!   queue is waited on up to `pseidon-kafka.queue-full-timeout-ms`, in steps of a
//!   quarter of the queue. `accepted` counts every queued record.
//! - `flush` waits until the reports reach `accepted` (or the timeout), then drains
//!   the failure list and the deliveries not reported yet: each delivery and each
//!   failure is reported by exactly one flush (flushes are serialised).
//! - `shutdown` closes the sink (writes in progress finish first: they hold the read
//!   lock of `active`), flushes within its timeout, purges the rest, stops the poll
//!   thread, then drops the topic handles before the client. Failures not drained by
//!   a flush make its result an error, and stay for a later flush.

use std::{
    sync::{
        Arc, Mutex, PoisonError, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use pseidon_plugin_api::{DataSink, DeliveryId, Error, FlushReport, Record};
use rdkafka::{
    error::{KafkaError, RDKafkaErrorCode},
    producer::Producer,
    types::RDKafkaRespErr,
};

use super::{
    context::{KafkaProducer, SinkContext},
    poll::Poller,
    raw::{self, Active, Topic},
    reports::Reports,
};
use crate::{
    config::{self, Config, Role},
    error::{kafka_code_err, kafka_err},
};

/// librdkafka's default `message.max.bytes`.
pub(crate) const DEFAULT_MESSAGE_MAX_BYTES: u64 = 1_000_000;
/// librdkafka's default `message.timeout.ms` (alias `delivery.timeout.ms`).
pub(crate) const DEFAULT_MESSAGE_TIMEOUT_MS: u64 = 300_000;
/// librdkafka's largest framing of a record (`RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD`):
/// it refuses a record whose key, value, headers and this exceed `message.max.bytes`.
const RECORD_MAX_OVERHEAD: usize = 36;
/// The largest framing of one header (two varint lengths).
const HEADER_MAX_OVERHEAD: usize = 10;
/// The longest `write` waits for room in a full queue before it tries again.
const QUEUE_FULL_SLICE: Duration = Duration::from_millis(10);

/// How long one step of a flush that serves the reports itself lets librdkafka's
/// flush wait (it sends at once meanwhile) before the reports are served.
const FLUSH_STEP: Duration = Duration::from_millis(1);

/// A writer serves the delivery reports waiting once per 2^this records it queues.
const SERVE_EVERY_LOG2: u32 = 10;
/// librdkafka's default `queue.buffering.max.messages`.
pub(crate) const DEFAULT_QUEUE_MAX_MESSAGES: u64 = 100_000;

pub(super) struct Shared {
    /// `None` once shut down. Writers take the read lock once per batch.
    pub(super) active: RwLock<Option<Active>>,
    pub(super) context: Arc<SinkContext>,
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
    /// The transactional id, for a transactional sink ([`super::txn`]).
    pub(super) txn_id: std::sync::OnceLock<String>,
    /// The registry name (`Config::sink_name`): in errors, logs and the `sink` label.
    pub(super) name: String,
}

/// The Kafka datasink. Cloning gives another handle on the same producer.
#[derive(Clone)]
pub struct KafkaSink {
    pub(super) shared: Arc<Shared>,
}

fn closed_error(name: &str) -> Error {
    Error::Closed {
        what: format!("the datasink {name}"),
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
        KafkaSink::with_overrides(config, &[])
    }

    /// [`new`](KafkaSink::new) with librdkafka properties `overrides` (`kafka.`-prefixed
    /// keys) over the conf's.
    pub(super) fn with_overrides(
        config: &Config,
        overrides: &[(String, String)],
    ) -> Result<KafkaSink, Error> {
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
        let client_config = config.client_config(Role::Producer, overrides)?;
        let context = SinkContext::new(config, message_timeout_ms);
        let producer: KafkaProducer =
            client_config
                .create_with_context(context)
                .map_err(|e| match e {
                    KafkaError::ClientCreation(reason) => {
                        Error::kafka("create the datasink's producer", reason)
                    }
                    other => kafka_err("create the datasink's producer", &other),
                })?;
        let producer = Arc::new(producer);
        let context = Arc::clone(producer.context());
        let reports = Arc::new(Reports::new(producer));
        let poller = Poller::start(&reports)?;
        Ok(KafkaSink {
            shared: Arc::new(Shared {
                active: RwLock::new(Some(Active::new(reports))),
                context,
                closed: AtomicBool::new(false),
                accepted: AtomicU64::new(0),
                queue_full_timeout: Duration::from_millis(config.settings.queue_full_timeout_ms),
                refill_step: (queue_max_messages / 4).max(1),
                max_message_bytes,
                poller: Mutex::new(Some(poller)),
                reported_delivered: Mutex::new(0),
                txn_id: std::sync::OnceLock::new(),
                name: config.sink_name(),
            }),
        })
    }

    /// The datasink's metric families (`sink` = its registry name): counters,
    /// queue, latency, and librdkafka's statistics of the producer.
    pub(crate) fn metric_families(&self) -> Vec<pseidon_plugin_api::metrics::MetricFamily> {
        let queue = self
            .shared
            .active
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or(0, |a| {
                u64::try_from(a.producer().in_flight_count()).unwrap_or(0)
            });
        self.shared
            .context
            .metrics
            .families(&self.shared.name, queue)
    }

    /// The producer's latest librdkafka statistics, if any came yet.
    pub(crate) fn stats(&self) -> Option<std::sync::Arc<crate::metrics::stats::ClientStats>> {
        self.shared.context.metrics.stats.get()
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
        let reports = shared
            .active
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|a| Arc::clone(a.reports()));
        let Some(reports) = reports else {
            return Ok(());
        };
        let target = shared.accepted.load(Ordering::Acquire);
        let pending = wait_delivered(&reports, &shared.context, target, timeout);
        if pending > 0 {
            // Purged messages get a failed delivery report each.
            raw::purge(reports.producer());
            wait_delivered(&reports, &shared.context, target, Duration::from_secs(1));
        }
        if let Some(poller) = shared
            .poller
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            poller.stop();
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
        drop(reports);

        // Failures a flush already returned were reported; what is left is not.
        let unaccounted = shared
            .accepted
            .load(Ordering::Acquire)
            .saturating_sub(shared.context.done());
        for f in shared.context.tickets.untaken_failures() {
            shared.context.push_failure(f);
        }
        let failures = shared.context.failures();
        if unaccounted == 0 && failures.is_empty() {
            log::info!(
                "datasink {} shut down; every accepted message was delivered or reported",
                shared.name
            );
            return Ok(());
        }
        for f in failures.listed().iter().take(20) {
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
        Err(Error::kafka(
            format!("shutdown of the datasink {}", shared.name),
            reason,
        ))
    }

    fn report(&self, pending: u64) -> FlushReport {
        let shared = &self.shared;
        let mut reported = shared
            .reported_delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let failed = shared.context.failures().take();
        // Deliveries a ticket counted are that ticket's to report.
        let delivered_total = shared
            .context
            .delivered()
            .saturating_sub(shared.context.tickets.delivered());
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
        rkt: Topic<'_>,
        record: &Record<'_>,
        timestamp_ms: Option<i64>,
        id: DeliveryId,
    ) -> Result<(), Error> {
        let shared = &self.shared;
        let topic = record.topic();
        let value = record.value();
        let key = record.key();
        let headers = record.headers();
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
        let partition = record
            .partition()
            .unwrap_or(rdkafka::producer::PARTITION_UA);
        let mut full_since: Option<Instant> = None;
        loop {
            let code = active.produce(rkt, partition, value, key, headers, timestamp_ms, id);
            if code == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
                return Ok(());
            }
            let code = RDKafkaErrorCode::from(code);
            let write_error =
                |reason: String| kafka_code_err(format!("write to topic `{topic}`"), code, reason);
            match code {
                RDKafkaErrorCode::QueueFull => {
                    let since = *full_since.get_or_insert_with(Instant::now);
                    if shared.closed.load(Ordering::Acquire) {
                        return Err(closed_error(&self.shared.name));
                    }
                    let waited = since.elapsed();
                    if waited >= shared.queue_full_timeout {
                        return Err(Error::QueueFull {
                            topic: topic.to_string(),
                            waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                        });
                    }
                    // Refill in large steps: serve the reports until a quarter of the
                    // queue was delivered, so that librdkafka's sender is not woken
                    // for a few messages at a time. The writer serves them itself
                    // (the poll thread steps aside): each message is freed by the
                    // thread that allocated it, as in a plain rdkafka loop. The
                    // slice bounds the wait when the byte limit, not the message
                    // count, is what is full.
                    let left = shared.queue_full_timeout.saturating_sub(waited);
                    let until = Instant::now() + left.min(QUEUE_FULL_SLICE);
                    let mark = shared.context.done().saturating_add(shared.refill_step);
                    let _polling = shared.context.polling_writer();
                    loop {
                        let generation = active.reports().serve();
                        let left = until.saturating_duration_since(Instant::now());
                        if shared.context.done() >= mark || left.is_zero() {
                            break;
                        }
                        active.reports().wait(generation, left);
                    }
                }
                RDKafkaErrorCode::MessageSizeTooLarge => return Err(too_large()),
                RDKafkaErrorCode::Fatal => {
                    let reason = match active.producer().client().fatal_error() {
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

/// The bytes of `record` the metrics count: key, value, header names and values.
fn record_bytes(record: &Record<'_>) -> u64 {
    let headers: usize = record
        .headers()
        .iter()
        .map(|h| h.key().len() + h.value().map_or(0, <[u8]>::len))
        .sum();
    (record.value().map_or(0, <[u8]>::len) + record.key().map_or(0, <[u8]>::len) + headers) as u64
}

/// Flushes the producer of `reports` and waits until `target` deliveries (or failures) were
/// reported, or `timeout` passes; returns how many are still pending. The poll
/// thread must be running: it serves the delivery reports. While more than
/// 2^[`SERVE_EVERY_LOG2`] are pending, the flushing thread serves them itself (the
/// poll thread steps aside): a writer that flushes frees its own messages, as a
/// plain rdkafka loop does (a large queue's last reports were a tenth of a 1 M
/// message run's, each freed across threads).
///
/// A zero `timeout` only counts the reports so far: it does not call librdkafka's
/// flush, which would send every partly filled batch at once (it treats `linger.ms`
/// as elapsed while it runs). `pseidon send` collects reports that way after each
/// batch of lines, and the forced sends made its message sets small.
fn wait_delivered(reports: &Reports, context: &SinkContext, target: u64, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    if !timeout.is_zero() {
        let many = |done: u64| target.saturating_sub(done) >> SERVE_EVERY_LOG2 != 0;
        if many(context.done()) {
            let _polling = context.polling_writer();
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || !many(context.done()) {
                    break;
                }
                // librdkafka's flush sends at once while it waits (linger.ms is
                // skipped); it returns when the step passed, the reports wait.
                raw::flush(reports.producer(), left.min(FLUSH_STEP));
                reports.serve();
            }
        }
        raw::flush(
            reports.producer(),
            deadline.saturating_duration_since(Instant::now()),
        );
    }
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

impl KafkaSink {
    /// Queues `records` (record `i` with delivery id `first_id + i` and, if
    /// `timestamps_ms` is given, the timestamp `timestamps_ms[i]`; negative: none);
    /// stops at the first that cannot be queued.
    fn write_records(
        &self,
        records: &[Record<'_>],
        timestamps_ms: Option<&[i64]>,
        first_id: DeliveryId,
    ) -> Result<(), (u64, Error)> {
        let shared = &self.shared;
        let guard = shared.active.read().unwrap_or_else(PoisonError::into_inner);
        let Some(active) = guard.as_ref() else {
            return Err((0, closed_error(&self.shared.name)));
        };
        if shared.closed.load(Ordering::Acquire) {
            return Err((0, closed_error(&self.shared.name)));
        }
        if let Some((code, reason)) = shared.context.failure.tripped()
            && let Some(first) = records.first()
        {
            let topic = first.topic();
            return Err((
                0,
                kafka_code_err(format!("write to topic `{topic}`"), code, reason),
            ));
        }
        let mut accepted = 0u64;
        let mut result = Ok(());
        // Batches usually go to one topic: look its handle up once.
        let mut last: Option<(&str, Topic<'_>)> = None;
        // The run of records of one topic, counted for the metrics once per run.
        let mut run: (&str, u64, u64) = ("", 0, 0);
        let metrics = &shared.context.metrics;
        for (i, record) in records.iter().enumerate() {
            let topic = record.topic();
            let rkt = match last {
                Some((t, rkt)) if t == topic => Ok(rkt),
                _ => active.topic(topic),
            };
            let sent = rkt.and_then(|rkt| {
                last = Some((topic, rkt));
                let timestamp_ms = timestamps_ms
                    .and_then(|ts| ts.get(i).copied())
                    .filter(|t| *t >= 0);
                self.send_one(active, rkt, record, timestamp_ms, first_id + i as u64)
            });
            if let Err(e) = sent {
                result = Err(e);
                break;
            }
            if run.0 != topic {
                metrics.accepted(run.0, run.1, run.2);
                run = (topic, 0, 0);
            }
            run.1 += 1;
            run.2 += record_bytes(record);
            accepted += 1;
        }
        metrics.accepted(run.0, run.1, run.2);
        shared.accepted.fetch_add(accepted, Ordering::AcqRel);
        let before = shared.context.queued.fetch_add(accepted, Ordering::Relaxed);
        if before >> SERVE_EVERY_LOG2 != (before + accepted) >> SERVE_EVERY_LOG2 {
            active.reports().serve();
        }
        result.map_err(|e| (accepted, e))
    }

    /// [`write_records`](Self::write_records) under a flush ticket for the ids
    /// `first_id ..`, opened before the first record is queued (no report can miss it).
    fn write_records_ticketed(
        &self,
        records: &[Record<'_>],
        timestamps_ms: Option<&[i64]>,
        first_id: DeliveryId,
    ) -> Result<(), (u64, Error)> {
        let tickets = &self.shared.context.tickets;
        tickets.open(first_id, records.len() as u64);
        let result = self.write_records(records, timestamps_ms, first_id);
        let accepted = match &result {
            Ok(()) => records.len() as u64,
            Err((accepted, _)) => *accepted,
        };
        tickets.trim(first_id, accepted);
        result
    }
}

impl DataSink for KafkaSink {
    fn write_batch(
        &self,
        records: &[Record<'_>],
        first_id: DeliveryId,
    ) -> Result<(), (u64, Error)> {
        self.write_records(records, None, first_id)
    }

    fn write_batch_ticketed(
        &self,
        records: &[Record<'_>],
        first_id: DeliveryId,
    ) -> Result<(), (u64, Error)> {
        self.write_records_ticketed(records, None, first_id)
    }

    fn write_batch_timestamped(
        &self,
        records: &[Record<'_>],
        timestamps_ms: &[i64],
        first_id: DeliveryId,
        ticketed: bool,
    ) -> Result<(), (u64, Error)> {
        if ticketed {
            self.write_records_ticketed(records, Some(timestamps_ms), first_id)
        } else {
            self.write_records(records, Some(timestamps_ms), first_id)
        }
    }

    fn flush_ticket(&self, first_id: DeliveryId, timeout: Duration) -> Result<FlushReport, Error> {
        // Waits for this ticket's reports only (served by the poll thread), not for
        // every queued message as the shared flush does.
        self.shared
            .context
            .tickets
            .take(first_id, timeout)
            .ok_or_else(|| Error::Other {
                message: format!(
                    "flush ticket {first_id} of the datasink {} is not open (flushed to the end or \
                     released already)",
                    self.shared.name
                ),
            })
    }

    fn release_ticket(&self, first_id: DeliveryId) {
        let context = &self.shared.context;
        if let Some((_, failures)) = context.tickets.release(first_id) {
            for f in failures {
                context.push_failure(f);
            }
        }
    }

    fn flush(&self, timeout: Duration) -> Result<FlushReport, Error> {
        let reports = self
            .shared
            .active
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|a| Arc::clone(a.reports()));
        let mut pending = 0;
        if let Some(reports) = reports {
            let target = self.shared.accepted.load(Ordering::Acquire);
            pending = wait_delivered(&reports, &self.shared.context, target, timeout);
        }
        Ok(self.report(pending))
    }
}
