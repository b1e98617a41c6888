//! Data sinks: [`DataSink`] is what a plugin implements, [`Sink`] what users call.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, ROption, RResult, RSlice, RVec},
};

use crate::{
    error::Error,
    ffi::{
        CONTROL_TIMEOUT_HEADER, CONTROL_TOPIC, FfiBatchAccepted, FfiDataSink, FfiDataSink_TO,
        FfiDeliveryFailure, FfiFlushReport, FfiRecord, FfiResult, FfiSinkArc, PROBE_TICKET,
        SINK_FEATURE_TIMESTAMPS, SINK_FEATURE_TRANSACTIONS, SINK_FEATURES, TIMESTAMP_HEADER,
    },
    module::catch_panic,
    record::{Header, Record},
};

/// The id `write` gives a record, reported back by [`Sink::flush`] if it fails.
pub type DeliveryId = u64;

/// A record the broker did not take, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFailure {
    /// The id `write` returned for the record.
    pub id: DeliveryId,
    /// The record's topic.
    pub topic: String,
    /// The reason.
    pub reason: String,
}

/// The outcome of a flush: deliveries since the previous flush.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Records acknowledged by the broker since the previous flush.
    pub delivered: u64,
    /// Records that failed since the previous flush, each once. A sink may bound the
    /// failures it keeps between two flushes (the Kafka sink keeps 100 000 in full): the
    /// rest then come as one summary entry naming their count and first and last ids.
    pub failed: Vec<DeliveryFailure>,
    /// Records still in flight when the flush timed out (0 if it did not).
    pub pending: u64,
}

impl FlushReport {
    /// True when nothing failed and nothing is pending.
    ///
    /// ```
    /// assert!(pseidon_plugin_api::FlushReport::default().is_clean());
    /// ```
    pub fn is_clean(&self) -> bool {
        self.failed.is_empty() && self.pending == 0
    }
}

/// How much of a batch was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchAccepted {
    /// Delivery id of the first record; record `i` has `first_id + i`.
    pub first_id: DeliveryId,
    /// How many records, from the first, were accepted.
    pub accepted: u64,
    /// Why record number `accepted` was refused, if not all were accepted.
    pub error: Option<Error>,
}

/// What a plugin implements to offer a data sink.
pub trait DataSink: Send + Sync + 'static {
    /// Queues `records` for asynchronous delivery; record `i` has delivery id
    /// `first_id + i`. On a record that cannot be queued, returns how many were
    /// queued before it and why.
    fn write_batch(&self, records: &[Record<'_>], first_id: DeliveryId)
    -> Result<(), (u64, Error)>;

    /// Waits up to `timeout` for queued records and reports (once each) the
    /// deliveries since the previous flush, leaving out those of open flush tickets.
    fn flush(&self, timeout: Duration) -> Result<FlushReport, Error>;

    /// [`write_batch`](DataSink::write_batch), opening a flush ticket for the ids
    /// `first_id ..` of the accepted records before the first is queued: their
    /// deliveries are reported by [`flush_ticket`](DataSink::flush_ticket)`(first_id)`
    /// only. The default refuses: this sink has no tickets.
    fn write_batch_ticketed(
        &self,
        records: &[Record<'_>],
        first_id: DeliveryId,
    ) -> Result<(), (u64, Error)> {
        let _ = (records, first_id);
        Err((0, Error::other(NO_TICKETS)))
    }

    /// Waits up to `timeout` for the deliveries of ticket `first_id` and reports those
    /// since its previous flush (each once), and how many are still pending; a ticket
    /// with none pending is closed (flushing it again is an error).
    fn flush_ticket(&self, first_id: DeliveryId, timeout: Duration) -> Result<FlushReport, Error> {
        let _ = (first_id, timeout);
        Err(Error::other(NO_TICKETS))
    }

    /// Closes ticket `first_id` without flushing it: what it holds and what is still
    /// to come are reported by [`flush`](DataSink::flush).
    fn release_ticket(&self, first_id: DeliveryId) {
        let _ = first_id;
    }

    /// [`write_batch`](DataSink::write_batch) (or, if `ticketed`,
    /// [`write_batch_ticketed`](DataSink::write_batch_ticketed)) where record `i`
    /// carries the timestamp `timestamps_ms[i]` (ms since the epoch; negative: none,
    /// the producer stamps it). The slices have one length (the caller checked). The
    /// default refuses: this sink does not take timestamps.
    fn write_batch_timestamped(
        &self,
        records: &[Record<'_>],
        timestamps_ms: &[i64],
        first_id: DeliveryId,
        ticketed: bool,
    ) -> Result<(), (u64, Error)> {
        let _ = (records, timestamps_ms, first_id, ticketed);
        Err((0, Error::other(NO_TIMESTAMPS)))
    }

    /// Begins a transaction (the first call may set the sink up for transactions,
    /// within `timeout`). The default refuses: this sink has no transactions.
    fn begin_transaction(&self, timeout: Duration) -> Result<(), Error> {
        let _ = timeout;
        Err(Error::other(NO_TRANSACTIONS))
    }

    /// Aborts the open transaction. The default refuses.
    fn abort_transaction(&self, timeout: Duration) -> Result<(), Error> {
        let _ = timeout;
        Err(Error::other(NO_TRANSACTIONS))
    }

    /// Commits the open transaction with the message groups `group_ids` done (their
    /// done-watermarks inside the transaction, then the status database); none: a
    /// plain commit. The default refuses.
    fn commit_transaction(&self, group_ids: &[String], timeout: Duration) -> Result<(), Error> {
        let _ = (group_ids, timeout);
        Err(Error::other(NO_TRANSACTIONS))
    }
}

const NO_TRANSACTIONS: &str = "this datasink does not support transactions";

/// The refusal of a sink without transactions, as "not supported by this plugin".
fn not_supported(e: Error) -> Error {
    match &e {
        Error::Other { message }
            if message.contains("has no transactions") || message.contains(NO_TRANSACTIONS) =>
        {
            Error::other(format!(
                "transactions are not supported by this plugin's datasink ({message})"
            ))
        }
        _ => e,
    }
}

const NO_TIMESTAMPS: &str = "this datasink does not take record timestamps";

const NO_TICKETS: &str = "this datasink has no flush tickets: use write_batch and flush";

fn report_to_ffi(r: FlushReport) -> FfiFlushReport {
    FfiFlushReport {
        delivered: r.delivered,
        failed: r
            .failed
            .into_iter()
            .map(|f| FfiDeliveryFailure {
                id: f.id,
                topic: f.topic.into(),
                reason: f.reason.into(),
            })
            .collect(),
        pending: r.pending,
    }
}

fn report_from_ffi(r: FfiFlushReport) -> FlushReport {
    FlushReport {
        delivered: r.delivered,
        failed: r
            .failed
            .into_iter()
            .map(|f| DeliveryFailure {
                id: f.id,
                topic: f.topic.into_string(),
                reason: f.reason.into_string(),
            })
            .collect(),
        pending: r.pending,
    }
}

fn batch_from_ffi(b: FfiBatchAccepted) -> BatchAccepted {
    BatchAccepted {
        first_id: b.first_id,
        accepted: b.accepted,
        error: b.error.into_option().map(Error::from),
    }
}

fn ms(timeout: Duration) -> u64 {
    u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)
}

struct SinkAdapter<T> {
    owner: String,
    next_id: AtomicU64,
    inner: T,
}

impl<T: DataSink> SinkAdapter<T> {
    /// Answers a control record ([`CONTROL_TOPIC`]): runs the transaction operation it
    /// names; `accepted` 1 if it succeeded, else 0 with its error. No delivery id is used.
    fn control(&self, r: Record<'_>) -> FfiResult<FfiBatchAccepted> {
        let op = String::from_utf8_lossy(r.key().unwrap_or_default()).into_owned();
        let timeout = r
            .headers()
            .iter()
            .find(|h| h.key() == CONTROL_TIMEOUT_HEADER)
            .and_then(|h| std::str::from_utf8(h.value().unwrap_or_default()).ok())
            .and_then(|t| t.parse::<u64>().ok())
            .map_or(Duration::from_secs(60), Duration::from_millis);
        let ids: Vec<String> = String::from_utf8_lossy(r.value().unwrap_or_default())
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        let result = catch_panic(&self.owner, "a transaction operation", || {
            match op.as_str() {
                "txn.begin" => self.inner.begin_transaction(timeout),
                "txn.abort" => self.inner.abort_transaction(timeout),
                "txn.commit" => self.inner.commit_transaction(&ids, timeout),
                other => Err(Error::other(format!(
                    "unknown datasink control operation `{other}`"
                ))),
            }
        });
        let error = match result {
            Ok(()) => ROption::RNone,
            Err(e) => ROption::RSome(e.into()),
        };
        RResult::ROk(FfiBatchAccepted {
            first_id: 0,
            accepted: u64::from(error.is_none()),
            error,
        })
    }

    fn write_with(
        &self,
        records: RSlice<'_, FfiRecord<'_>>,
        ticketed: bool,
    ) -> FfiResult<FfiBatchAccepted> {
        if let [r] = records.as_slice()
            && r.topic.as_str() == CONTROL_TOPIC
        {
            return self.control(Record::from_ffi_slice(records)[0]);
        }
        let n = records.len() as u64;
        let first_id = self.next_id.fetch_add(n, Ordering::Relaxed);
        let result = catch_panic(&self.owner, "write", || {
            let records = Record::from_ffi_slice(records);
            Ok(match take_timestamps(records) {
                Some((stripped, ts)) => self
                    .inner
                    .write_batch_timestamped(&stripped, &ts, first_id, ticketed),
                None if ticketed => self.inner.write_batch_ticketed(records, first_id),
                None => self.inner.write_batch(records, first_id),
            })
        });
        match result {
            Ok(Ok(())) => RResult::ROk(FfiBatchAccepted {
                first_id,
                accepted: n,
                error: ROption::RNone,
            }),
            Ok(Err((accepted, error))) => RResult::ROk(FfiBatchAccepted {
                first_id,
                accepted,
                error: ROption::RSome(error.into()),
            }),
            Err(panic) => RResult::RErr(panic.into()),
        }
    }
}

impl<T: DataSink> FfiDataSink for SinkAdapter<T> {
    fn write_batch(&self, records: RSlice<'_, FfiRecord<'_>>) -> FfiResult<FfiBatchAccepted> {
        self.write_with(records, false)
    }

    fn flush(&self, timeout_ms: u64) -> FfiResult<FfiFlushReport> {
        catch_panic(&self.owner, "flush", || {
            self.inner.flush(Duration::from_millis(timeout_ms))
        })
        .map(report_to_ffi)
        .map_err(Into::into)
        .into()
    }

    fn write_batch_ticketed(
        &self,
        records: RSlice<'_, FfiRecord<'_>>,
    ) -> FfiResult<FfiBatchAccepted> {
        self.write_with(records, true)
    }

    fn flush_ticket(&self, first_id: u64, timeout_ms: u64) -> FfiResult<FfiFlushReport> {
        if first_id == PROBE_TICKET {
            // The capability probe (see PROBE_TICKET): no ticket has this id.
            return RResult::ROk(FfiFlushReport {
                delivered: SINK_FEATURES,
                failed: RVec::new(),
                pending: PROBE_TICKET,
            });
        }
        catch_panic(&self.owner, "flush", || {
            self.inner
                .flush_ticket(first_id, Duration::from_millis(timeout_ms))
        })
        .map(report_to_ffi)
        .map_err(Into::into)
        .into()
    }

    fn release_ticket(&self, first_id: u64) {
        let _ = catch_panic(&self.owner, "release a flush ticket", || {
            self.inner.release_ticket(first_id);
            Ok(())
        });
    }
}

/// The records with their [`TIMESTAMP_HEADER`] (the last header, if any) taken off, and
/// each one's timestamp (-1: none); `None` if no record has one (the common case: one
/// comparison per record with headers, no copy).
fn take_timestamps<'a>(records: &'a [Record<'a>]) -> Option<(Vec<Record<'a>>, Vec<i64>)> {
    let stamp = |r: &Record<'a>| -> Option<i64> {
        let last = r.headers().last()?;
        if last.key() != TIMESTAMP_HEADER {
            return None;
        }
        let bytes: [u8; 8] = last.value()?.try_into().ok()?;
        Some(i64::from_be_bytes(bytes))
    };
    if !records.iter().any(|r| stamp(r).is_some()) {
        return None;
    }
    let mut stripped = Vec::with_capacity(records.len());
    let mut ts = Vec::with_capacity(records.len());
    for r in records {
        match stamp(r) {
            Some(t) => {
                let hs = r.headers();
                stripped.push(r.with_headers(&hs[..hs.len() - 1]));
                ts.push(t);
            }
            None => {
                stripped.push(*r);
                ts.push(-1);
            }
        }
    }
    Some((stripped, ts))
}

/// A data sink, as users see it. Cheap to clone; safe to share between threads.
///
/// ```
/// # use std::time::Duration;
/// # use pseidon_plugin_api::{Registry, DataSink, Record, FlushReport, Error, Header};
/// # struct Null;
/// # impl DataSink for Null {
/// #     fn write_batch(&self, _r: &[Record<'_>], _f: u64) -> Result<(), (u64, Error)> { Ok(()) }
/// #     fn flush(&self, _t: Duration) -> Result<FlushReport, Error> { Ok(FlushReport::default()) }
/// # }
/// # let registry = Registry::new("doc");
/// # registry.register_sink("pseidon.kafka.util.datasink", Null).unwrap();
/// let sink = registry.reg_get_wait_sink("pseidon.kafka.util.datasink", Duration::from_secs(5))?;
/// for i in 0..1000 {
///     sink.write("test", format!("test-{i}").as_bytes())?;
/// }
/// let headers = [Header::new("h", b"1")];
/// sink.send(&Record::new("test", b"v").with_key(b"k").with_headers(&headers))?;
/// let report = sink.flush(Duration::from_secs(30))?;
/// assert!(report.is_clean());
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone)]
pub struct Sink {
    inner: FfiSinkArc,
    /// The plugin adapter's feature bits, probed once ([`PROBE_TICKET`]).
    features: Arc<OnceLock<u64>>,
}

impl Sink {
    pub(crate) fn from_impl(owner: &str, sink: impl DataSink) -> Self {
        let adapter = SinkAdapter {
            owner: owner.to_string(),
            next_id: AtomicU64::new(0),
            inner: sink,
        };
        Sink {
            inner: RArc::new(FfiDataSink_TO::from_value(adapter, TD_Opaque)),
            features: Arc::default(),
        }
    }

    pub(crate) fn from_ffi(inner: FfiSinkArc) -> Self {
        Sink {
            inner,
            features: Arc::default(),
        }
    }

    /// The feature bits of the plugin's sink adapter (0 for a plugin built before the
    /// probe existed).
    fn features(&self) -> u64 {
        *self.features.get_or_init(|| {
            match self.inner.flush_ticket(PROBE_TICKET, 0).into_result() {
                Ok(r) if r.pending == PROBE_TICKET => r.delivered,
                _ => 0,
            }
        })
    }

    pub(crate) fn into_ffi(self) -> FfiSinkArc {
        self.inner
    }

    /// Writes `value` to `topic` (the original's `(writer {:topic t :val bytes})`);
    /// returns the record's delivery id once it is queued.
    pub fn write(&self, topic: &str, value: &[u8]) -> Result<DeliveryId, Error> {
        self.send(&Record::new(topic, value))
    }

    /// Writes one record, with key, headers or partition as set on it.
    pub fn send(&self, record: &Record<'_>) -> Result<DeliveryId, Error> {
        let b = self.write_batch(std::slice::from_ref(record))?;
        match b.error {
            Some(e) => Err(e),
            None => Ok(b.first_id),
        }
    }

    /// Writes records in order, stopping at the first that cannot be queued.
    pub fn write_batch(&self, records: &[Record<'_>]) -> Result<BatchAccepted, Error> {
        let b = self
            .inner
            .write_batch(Record::as_ffi_slice(records))
            .into_result()?;
        Ok(batch_from_ffi(b))
    }

    /// [`write_batch`](Sink::write_batch) where record `i` carries the timestamp
    /// `timestamps_ms[i]` (ms since the epoch, as Kafka's `CreateTime`; negative: none,
    /// the producer stamps it), so that a copy keeps the original's time. A sink of a
    /// plugin built before 0.3.1 refuses the batch (an error saying so); so does any
    /// sink when the slices differ in length.
    ///
    /// ```
    /// # use pseidon_plugin_api::{Record, Error};
    /// # fn run(sink: &pseidon_plugin_api::Sink) -> Result<(), Error> {
    /// let records = [Record::new("test", b"a"), Record::new("test", b"b")];
    /// let b = sink.write_batch_timestamped(&records, &[1_700_000_000_000, -1])?;
    /// assert_eq!(b.accepted, 2);
    /// # Ok(()) }
    /// ```
    pub fn write_batch_timestamped(
        &self,
        records: &[Record<'_>],
        timestamps_ms: &[i64],
    ) -> Result<BatchAccepted, Error> {
        if timestamps_ms.len() != records.len() {
            return Err(Error::other(format!(
                "{} timestamps for {} records: one per record is needed",
                timestamps_ms.len(),
                records.len()
            )));
        }
        if self.features() & SINK_FEATURE_TIMESTAMPS == 0 {
            return Err(Error::other(
                "this datasink's plugin does not take record timestamps (built before \
                 pseidon-plugin-api 0.3.1): rebuild it",
            ));
        }
        let stamps: Vec<[u8; 8]> = timestamps_ms.iter().map(|t| t.to_be_bytes()).collect();
        let headers: Vec<Vec<Header<'_>>> = records
            .iter()
            .zip(timestamps_ms.iter().zip(&stamps))
            .map(|(r, (t, bytes))| {
                let mut hs = r.headers().to_vec();
                if *t >= 0 {
                    hs.push(Header::new(TIMESTAMP_HEADER, bytes));
                }
                hs
            })
            .collect();
        let stamped: Vec<Record<'_>> = records
            .iter()
            .zip(&headers)
            .map(|(r, hs)| r.with_headers(hs))
            .collect();
        self.write_batch(&stamped)
    }

    /// Waits up to `timeout` for every queued record, and returns the deliveries
    /// and failures since the previous flush (each reported once), except those of
    /// batches written with a flush ticket ([`write_batch_ticket`](Sink::write_batch_ticket)):
    /// those are their ticket's.
    pub fn flush(&self, timeout: Duration) -> Result<FlushReport, Error> {
        let r = self.inner.flush(ms(timeout)).into_result()?;
        Ok(report_from_ffi(r))
    }

    /// Begins a transaction: the records written until
    /// [`commit_transaction`](Sink::commit_transaction) are visible to `read_committed`
    /// readers only once it commits, all together, or never
    /// ([`abort_transaction`](Sink::abort_transaction)). The first call sets the sink
    /// up for transactions within `timeout` (a broker whose transaction coordinator
    /// cannot work is an error then, not a hang). A sink without transactions (or of a
    /// plugin built before 0.3.1) refuses: "not supported by this plugin".
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use pseidon_plugin_api::Error;
    /// # fn run(sink: &pseidon_plugin_api::Sink, ids: &[String]) -> Result<(), Error> {
    /// sink.begin_transaction(Duration::from_secs(30))?;
    /// sink.write("copied", b"v")?;
    /// // The groups `ids` (handed out by the same plugin's datasource) are done with
    /// // the commit: their offsets are committed inside the transaction.
    /// sink.commit_transaction(ids, Duration::from_secs(30))?;
    /// # Ok(()) }
    /// ```
    pub fn begin_transaction(&self, timeout: Duration) -> Result<(), Error> {
        self.control("txn.begin", &[], timeout)
    }

    /// Sends a control record ([`CONTROL_TOPIC`]) if the plugin's adapter takes them.
    fn control(&self, op: &str, group_ids: &[String], timeout: Duration) -> Result<(), Error> {
        if self.features() & SINK_FEATURE_TRANSACTIONS == 0 {
            return Err(Error::other(
                "transactions are not supported by this plugin's datasink (built before \
                 pseidon-plugin-api 0.3.1): rebuild it",
            ));
        }
        let ids = group_ids.join("\n");
        let timeout_ms = ms(timeout).to_string();
        let headers = [Header::new(CONTROL_TIMEOUT_HEADER, timeout_ms.as_bytes())];
        let record = Record::new(CONTROL_TOPIC, ids.as_bytes())
            .with_key(op.as_bytes())
            .with_headers(&headers);
        let b = self
            .inner
            .write_batch(Record::as_ffi_slice(std::slice::from_ref(&record)))
            .into_result()
            .map_err(Error::from)?;
        match b.error.into_option() {
            Some(e) => Err(not_supported(e.into())),
            None => Ok(()),
        }
    }

    /// Aborts the open transaction: its records are never visible to
    /// `read_committed` readers (the groups it copied stay unfinished).
    pub fn abort_transaction(&self, timeout: Duration) -> Result<(), Error> {
        self.control("txn.abort", &[], timeout)
    }

    /// Commits the open transaction, with the message groups `group_ids` done: the
    /// done-watermarks of their consumer groups are committed in the same Kafka
    /// transaction as the records, and once it committed the groups are marked done
    /// in the status database (a crash in between is recognised at the next start:
    /// the groups are not replayed). The ids must be of groups handed out by a
    /// reader of the sink's own plugin. An empty `group_ids` is a plain commit.
    /// A failed commit leaves the groups unfinished: a fenced producer (another
    /// instance took over its transactional id) is [`Error::Kafka`] with librdkafka's
    /// code of the fencing, and no transaction can follow on this sink.
    pub fn commit_transaction(&self, group_ids: &[String], timeout: Duration) -> Result<(), Error> {
        self.control("txn.commit", group_ids, timeout)
    }

    /// [`write_batch`](Sink::write_batch) with a [`FlushTicket`] for the accepted
    /// records: flushing the ticket reports exactly their deliveries, whoever else
    /// writes to and flushes this sink meanwhile.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use pseidon_plugin_api::{Registry, Record, Error};
    /// # fn run(sink: &pseidon_plugin_api::Sink) -> Result<(), Error> {
    /// let records = [Record::new("test", b"a"), Record::new("test", b"b")];
    /// let (batch, mut ticket) = sink.write_batch_ticket(&records)?;
    /// assert_eq!(batch.accepted, 2);
    /// let report = ticket.flush(Duration::from_secs(30))?;
    /// assert_eq!(report.delivered + report.failed.len() as u64 + report.pending, 2);
    /// # Ok(()) }
    /// ```
    pub fn write_batch_ticket(
        &self,
        records: &[Record<'_>],
    ) -> Result<(BatchAccepted, FlushTicket), Error> {
        let b = batch_from_ffi(
            self.inner
                .write_batch_ticketed(Record::as_ffi_slice(records))
                .into_result()?,
        );
        let ticket = FlushTicket {
            sink: self.inner.clone(),
            first_id: b.first_id,
            count: b.accepted,
            open: b.accepted > 0,
        };
        Ok((b, ticket))
    }
}

/// The deliveries of one batch written with [`Sink::write_batch_ticket`], to be
/// flushed by their writer alone. Dropped unflushed (or before its last delivery was
/// reported), its reports go to the sink's [`Sink::flush`]: none is lost.
pub struct FlushTicket {
    sink: FfiSinkArc,
    first_id: DeliveryId,
    count: u64,
    /// False once every report was taken (the sink closed the ticket).
    open: bool,
}

impl FlushTicket {
    /// The delivery ids of the batch's accepted records.
    pub fn ids(&self) -> std::ops::Range<DeliveryId> {
        self.first_id..self.first_id + self.count
    }

    /// True while reports of the batch are still to be taken.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Waits up to `timeout` for the batch's deliveries and returns those since this
    /// ticket's previous flush (each once) and how many are still pending. Once
    /// nothing is pending, later flushes report nothing more.
    pub fn flush(&mut self, timeout: Duration) -> Result<FlushReport, Error> {
        if !self.open {
            return Ok(FlushReport::default());
        }
        let r = report_from_ffi(
            self.sink
                .flush_ticket(self.first_id, ms(timeout))
                .into_result()?,
        );
        if r.pending == 0 {
            self.open = false;
        }
        Ok(r)
    }
}

impl Drop for FlushTicket {
    fn drop(&mut self) {
        if self.open {
            self.sink.release_ticket(self.first_id);
        }
    }
}

impl std::fmt::Debug for FlushTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlushTicket")
            .field("ids", &self.ids())
            .field("open", &self.open)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Records what reached the plugin's side: (value, headers, timestamp).
    #[derive(Default)]
    struct Seen(Mutex<Vec<(Vec<u8>, usize, i64)>>);

    struct Stamping(Arc<Seen>);

    impl DataSink for Stamping {
        fn write_batch(&self, r: &[Record<'_>], _: DeliveryId) -> Result<(), (u64, Error)> {
            self.write_batch_timestamped(r, &vec![-1; r.len()], 0, false)
        }
        fn flush(&self, _: Duration) -> Result<FlushReport, Error> {
            Ok(FlushReport::default())
        }
        fn write_batch_timestamped(
            &self,
            r: &[Record<'_>],
            ts: &[i64],
            _: DeliveryId,
            _: bool,
        ) -> Result<(), (u64, Error)> {
            let mut seen = self.0.0.lock().unwrap();
            for (r, t) in r.iter().zip(ts) {
                seen.push((
                    r.value().unwrap_or_default().to_vec(),
                    r.headers().len(),
                    *t,
                ));
            }
            Ok(())
        }
    }

    #[test]
    fn timestamps_cross_as_a_header_the_adapter_takes_off() {
        let seen = Arc::new(Seen::default());
        let sink = Sink::from_impl("t", Stamping(Arc::clone(&seen)));
        assert_eq!(
            sink.features() & SINK_FEATURE_TIMESTAMPS,
            SINK_FEATURE_TIMESTAMPS
        );
        let hs = [Header::new("h", b"1")];
        let records = [
            Record::new("t", b"a").with_headers(&hs),
            Record::new("t", b"b"),
        ];
        let b = sink
            .write_batch_timestamped(&records, &[1_700_000_000_123, -1])
            .unwrap();
        assert_eq!(b.accepted, 2);
        assert_eq!(
            *seen.0.lock().unwrap(),
            [
                (b"a".to_vec(), 1, 1_700_000_000_123),
                (b"b".to_vec(), 0, -1)
            ]
        );
        assert!(sink.write_batch_timestamped(&records, &[1]).is_err());
    }
}

#[cfg(test)]
mod txn_tests {
    use super::*;
    use crate::Registry;

    struct Plain;
    impl DataSink for Plain {
        fn write_batch(&self, _r: &[Record<'_>], _f: DeliveryId) -> Result<(), (u64, Error)> {
            Ok(())
        }
        fn flush(&self, _t: Duration) -> Result<FlushReport, Error> {
            Ok(FlushReport::default())
        }
    }

    #[test]
    fn a_sink_without_transactions_says_not_supported() {
        let registry = Registry::new("txn-test");
        registry.register_sink("plain", Plain).unwrap();
        let sink = registry
            .reg_get_wait_sink("plain", Duration::from_secs(1))
            .unwrap();
        for e in [
            sink.begin_transaction(Duration::from_secs(1)).unwrap_err(),
            sink.abort_transaction(Duration::from_secs(1)).unwrap_err(),
            sink.commit_transaction(&["t:0:0:9".into()], Duration::from_secs(1))
                .unwrap_err(),
        ] {
            assert!(
                e.to_string().contains("not supported by this plugin"),
                "{e}"
            );
        }
    }
}
