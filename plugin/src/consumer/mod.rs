//! The datasource's reader: first the replay of unfinished groups ([`replay`](crate::replay)),
//! then librdkafka's high-level consumer, subscribed in the consumer group `kafka.group.id`.
//!
//! Messages are read in batches: every assigned partition is forwarded to the reader's
//! fetch queue before librdkafka fetches it, and the reader reads that queue with
//! `rd_kafka_consume_batch_queue` ([`fetch_queue`](crate::fetch_queue)); the consumer
//! queue (rebalances, commits, client errors) is polled at every turn of `next_group`
//! (so a rebalance is served while a batch lasts), and at least every 100 ms while no
//! message comes. A revoke drops the messages of the
//! revoked partitions still in the batch. Messages are copied out of librdkafka as they
//! are taken, and a batch is emptied before its consumer can be dropped (a borrowed
//! message pins fetch buffers, and a consumer dropped while one is alive hangs). They collect
//! into one pending group per partition; a group is closed when it holds
//! `group-max-messages` or `group-max-bytes` (keys, values, headers), or its first
//! message waited `group-max-wait-ms`, then queued.
//! Before `next_group` returns, the groups it closed are recorded in the status database
//! in one transaction: the one it hands out straight as `run`, the others `ready`
//! (marked `run` when a later call hands them out). No group is handed out unrecorded.
//!
//! Offsets: `enable.auto.offset.store=false`; the only offsets ever stored are the
//! per-partition done-watermarks ([`tracker`](crate::tracker)), which librdkafka
//! auto-commits. On a revoke the watermarks of the revoked partitions are stored and
//! committed synchronously, and their pending and queued groups are dropped (they are
//! not covered by the watermark: whoever reads the partition next reads them again).
//!
//! Identity: at the first `next_group` the reader learns the Kafka cluster id and the
//! topic id of each of its topics ([`identity`](crate::identity)); its
//! [`Scope`](crate::store::Scope) (cluster and `group.id`) and the topic ids select the rows it sees in the
//! status database. Unfinished rows of an earlier incarnation of a topic (deleted and
//! recreated) are recorded `lost` with an error naming the topic; its done rows no
//! longer hide anything. Until the cluster answers, `next_group` returns no group (a
//! broker that is down is waited for, as below).
//!
//! Known ranges: a message inside a group the status database knows as done or lost
//! for this scope and incarnation, or inside an unfinished group this process holds
//! (replayed, or handed out and not done), is skipped; the watermark still accounts for
//! it. A partition whose position lies in or before done groups with no unfinished
//! group before them (offsets reset by an admin, or a commit that lagged a crash) is
//! logged as a warning naming the partition and the offsets skipped.
//!
//! Users must call `next_group` at least every `max.poll.interval.ms` (librdkafka's
//! default 300 s) or the member leaves the group; its partitions are revoked as above.
//!
//! Progress ([`progress`](crate::progress)): the rebalance callbacks record whether the
//! assignment is known; with `kafka.enable.partition.eof=true` end-of-partition events
//! mark partitions at their end (never logged as errors) and close their pending groups.
//! Budget: a reader opened with `pseidon-kafka.reader-max-messages` takes no message
//! past it (nothing more is polled), and closes its pending groups when it is used up.
//!
//! Connection failures: a broker that is down is waited for (its repeated errors are
//! logged once per window, [`log_limit`](crate::log_limit)). A TLS or authentication
//! failure (a wrong CA, a wrong password) that persisted
//! `pseidon-kafka.connect-failure-timeout-ms` with no broker answering makes
//! `next_group` return it ([`ConnectFailure`](crate::health::ConnectFailure)); a received message, an assignment or
//! a broker answering clears it.
//!
//! The parts, each in its own file (this one only wires them):
//! - [`reader`]: [`KafkaReader`], the reader a user holds: open, `begin` (scope, topic
//!   ids, replay), `next_group`, `close`;
//! - [`batch`]: group formation (`Part`, `Queued`, `Batch`): known ranges, closing,
//!   queueing and recording groups, revokes;
//! - [`live`]: what the reader shares with its consumer context and the source
//!   (`ReaderShared`, the rebalance callbacks of `Ctx`, [`LiveReader`] and its
//!   watermark storing);
//! - [`topic_ids`]: the topic ids of a reader's topics, and the retirement of the rows
//!   of a topic's earlier incarnations;
//! - [`plain`]: [`PlainReader`], a plain read (reader options `pseidon-kafka.assign`,
//!   `start-offset`, `stop-timestamp-ms`): assigned partitions, no consumer group,
//!   nothing tracked or committed. [`AnyReader`] is either kind;
//! - [`patterns`]: topic patterns (`^prefix.*`), expanded when a reader opens.

mod batch;
mod live;
mod patterns;
mod plain;
mod reader;
mod topic_ids;
mod txn;

use std::time::Duration;

use pseidon_plugin_api::{Error, MessageGroup, Reader, ReaderProgress};

pub(crate) use live::LiveReader;
pub use plain::PlainReader;
pub use reader::KafkaReader;

/// The reader the datasource hands out: a group reader, or a plain read.
pub enum AnyReader {
    /// Reads in a consumer group, tracked in message groups.
    Group(Box<KafkaReader>),
    /// Reads assigned partitions, tracks nothing.
    Plain(Box<PlainReader>),
}

impl Reader for AnyReader {
    fn next_group(&mut self, timeout: Duration) -> Result<Option<MessageGroup>, Error> {
        match self {
            AnyReader::Group(r) => r.next_group(timeout),
            AnyReader::Plain(r) => r.next_group(timeout),
        }
    }

    fn progress(&self) -> Result<ReaderProgress, Error> {
        match self {
            AnyReader::Group(r) => r.progress(),
            AnyReader::Plain(r) => r.progress(),
        }
    }

    fn close(&mut self) -> Result<(), Error> {
        match self {
            AnyReader::Group(r) => r.close(),
            AnyReader::Plain(r) => r.close(),
        }
    }
}
