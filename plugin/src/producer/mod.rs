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
//!   logged and returned as an error. Between two flushes at most
//!   `MAX_LISTED_FAILURES` (100 000) failures are kept in full; later ones are counted
//!   and the next flush reports them in one summary entry (count, first and last
//!   ids and reasons), so that a sink nobody flushes does not grow without bound.
//! - Backpressure: when librdkafka's queue (`queue.buffering.max.messages` /
//!   `queue.buffering.max.kbytes`) is full, `write` waits for room up to
//!   `pseidon-kafka.queue-full-timeout-ms`, then returns [`Error::QueueFull`].
//! - A record larger than the producer's `message.max.bytes` is refused before it is
//!   queued with [`Error::MessageTooLarge`], naming both sizes.
//! - librdkafka's log lines and errors go to the `log` crate with target `librdkafka`
//!   (the plugin-api forwards them to the host), secret conf values blanked out
//!   (`crate::kafka_log`).
//! - A TLS or authentication failure to connect (a wrong CA, a wrong password) is
//!   retried by librdkafka until `message.timeout.ms` (300 s by default), like a broker
//!   that is down. `health::ConnectFailure` tells them apart: once such a failure has
//!   persisted `pseidon-kafka.connect-failure-timeout-ms` with no broker answering,
//!   the queued messages fail with that error as their reason and `write` refuses new
//!   ones at once, until a broker answers again.
//!
//! The rooms (this file only wires them):
//! - `sink`: [`KafkaSink`], the [`DataSink`] impl (write, flush, shutdown), the size
//!   check and the wait for room in a full queue;
//! - `context`: `SinkContext`, the producer's context: delivery accounting (counts,
//!   the failure list of `failures`), whether a writer serves the reports itself, the reasons
//!   given for failures, librdkafka's logs and errors;
//! - `failures`: `FailureList`, the bounded list of failures waiting for a flush;
//! - `tickets`: `Tickets`, the flush tickets: a batch written with
//!   `write_batch_ticketed` has its deliveries reported to its own `flush_ticket`
//!   only, never to the shared `flush` of another user of the sink;
//! - `raw`: the raw librdkafka calls and all their `unsafe` (topic handles, produce
//!   with and without headers, flush, purge);
//! - `reports`: `Reports`, the producer's report queue, served and waited for
//!   without spinning (librdkafka's wake-up callback);
//! - `poll`: the poll thread that serves the delivery reports and checks the
//!   connection's health (`crate::health`).
//!
//! [`DataSink`]: pseidon_plugin_api::DataSink
//! [`DataSink::flush`]: pseidon_plugin_api::DataSink::flush
//! [`Error::QueueFull`]: pseidon_plugin_api::Error::QueueFull
//! [`Error::MessageTooLarge`]: pseidon_plugin_api::Error::MessageTooLarge

mod context;
mod failures;
mod poll;
mod raw;
mod reports;
mod sink;
#[cfg(test)]
mod tests;
mod tickets;
mod txn;

pub use sink::KafkaSink;
pub use txn::is_fenced_code;
