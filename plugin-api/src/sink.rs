//! Data sinks: [`DataSink`] is what a plugin implements, [`Sink`] what users call.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, ROption, RResult, RSlice},
};

use crate::{
    error::Error,
    ffi::{
        FfiBatchAccepted, FfiDataSink, FfiDataSink_TO, FfiDeliveryFailure, FfiFlushReport,
        FfiRecord, FfiResult, FfiSinkArc,
    },
    module::catch_panic,
    record::Record,
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
    /// deliveries since the previous flush.
    fn flush(&self, timeout: Duration) -> Result<FlushReport, Error>;
}

struct SinkAdapter<T> {
    owner: String,
    next_id: AtomicU64,
    inner: T,
}

impl<T: DataSink> FfiDataSink for SinkAdapter<T> {
    fn write_batch(&self, records: RSlice<'_, FfiRecord<'_>>) -> FfiResult<FfiBatchAccepted> {
        let n = records.len() as u64;
        let first_id = self.next_id.fetch_add(n, Ordering::Relaxed);
        let result = catch_panic(&self.owner, "write", || {
            Ok(self
                .inner
                .write_batch(Record::from_ffi_slice(records), first_id))
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

    fn flush(&self, timeout_ms: u64) -> FfiResult<FfiFlushReport> {
        catch_panic(&self.owner, "flush", || {
            self.inner.flush(Duration::from_millis(timeout_ms))
        })
        .map(|r| FfiFlushReport {
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
        })
        .map_err(Into::into)
        .into()
    }
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
        }
    }

    pub(crate) fn from_ffi(inner: FfiSinkArc) -> Self {
        Sink { inner }
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
        Ok(BatchAccepted {
            first_id: b.first_id,
            accepted: b.accepted,
            error: b.error.into_option().map(Error::from),
        })
    }

    /// Waits up to `timeout` for every queued record, and returns the deliveries
    /// and failures since the previous flush.
    pub fn flush(&self, timeout: Duration) -> Result<FlushReport, Error> {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let r = self.inner.flush(timeout_ms).into_result()?;
        Ok(FlushReport {
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
        })
    }
}
