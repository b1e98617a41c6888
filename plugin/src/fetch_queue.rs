//! Fetched messages read in batches: a queue of our own ([`FetchQueue`]) that the
//! partitions' fetch queues are forwarded to, read with librdkafka's
//! `rd_kafka_consume_batch_queue` into a [`FetchBatch`]: one lock and one wake-up per
//! batch instead of per message, and no event wrapper per message (the per-message
//! poll path of rdkafka's `BaseConsumer::poll` is most of a consumer's CPU on small
//! messages).
//!
//! Only fetched messages and the errors of a partition (a batch it cannot decode, an
//! offset out of range, the end of a partition) come this way; the consumer's own queue
//! keeps rebalances, commits, statistics and client errors, and is still polled (with
//! rdkafka's `poll`, which serves them as before). `consume_batch_queue` is never used
//! on the consumer's queue: there it would serve a rebalance without the context's
//! callback (librdkafka then unassigns everything).
//!
//! Invariants:
//! - a partition is forwarded (`rd_kafka_queue_forward` of `rd_kafka_queue_get_partition`)
//!   before it is assigned, so none of its messages reach the consumer queue first; a
//!   forward set by the application survives librdkafka's fetch starts (`FWD_APP`), and
//!   is set again at each assignment anyway;
//! - messages of a partition positioned anew (seek, assign, revoke) that are still in a
//!   [`FetchBatch`] predate the new position: the owner [`discard`s](FetchBatch::discard)
//!   them (librdkafka drops such outdated messages from its queues, but a batch already
//!   returned them); librdkafka's position of a partition is that of the last message it
//!   returned in a batch, not the last one taken, so nothing here commits from it;
//! - a [`FetchBatch`] holds librdkafka messages, which pin their partition and client: it
//!   is emptied before its consumer is dropped (a client destroyed while a message lives
//!   hangs), and a [`FetchQueue`] is destroyed before its consumer (librdkafka requires
//!   every application queue to be destroyed first; destroying it drops what it holds
//!   and anything forwarded to it later).

use std::{ffi::CString, ptr, time::Duration};

use pseidon_plugin_api::{MessageHeader, message_group::MessageParts};
use rdkafka::{
    bindings as rdsys,
    error::{KafkaError, RDKafkaErrorCode},
};

/// Messages read from a [`FetchQueue`] per call: enough to amortize the queue's lock
/// and wake-up, few enough to keep a batch's messages in the cache.
pub(crate) const FETCH_BATCH_MESSAGES: usize = 1024;

/// An application queue of a client that partitions are forwarded to.
pub(crate) struct FetchQueue {
    queue: *mut rdsys::rd_kafka_queue_t,
    client: *mut rdsys::rd_kafka_t,
}

// SAFETY: librdkafka's queues and client handles are thread-safe; the pointers stay
// valid while the owner keeps the client (module invariants).
unsafe impl Send for FetchQueue {}
// SAFETY: as above: every operation used here locks inside librdkafka.
unsafe impl Sync for FetchQueue {}

impl FetchQueue {
    /// A new queue of `client`, which must outlive it; `None` if librdkafka refused.
    pub(crate) fn new(client: *mut rdsys::rd_kafka_t) -> Option<FetchQueue> {
        // SAFETY: `client` is a live client handle (the caller's consumer).
        let queue = unsafe { rdsys::rd_kafka_queue_new(client) };
        (!queue.is_null()).then_some(FetchQueue { queue, client })
    }

    /// The queue's handle, for [`forward_to`].
    pub(crate) fn ptr(&self) -> *mut rdsys::rd_kafka_queue_t {
        self.queue
    }

    /// Forwards `topic`/`partition` here (see [`forward_to`]).
    pub(crate) fn forward(&self, topic: &str, partition: i32) -> bool {
        // SAFETY: both handles are live while `self` is.
        unsafe { forward_to(self.client, self.queue, topic, partition) }
    }

    /// Empties `batch` and fills it with what the queue holds, up to its capacity,
    /// waiting up to `wait` for a first message if none is at hand. Returns the number
    /// read.
    ///
    /// `rd_kafka_consume_batch_queue` with a timeout returns only when the array is
    /// full or the timeout passed: a blocking call would hold back messages at hand
    /// (up to the timeout at the end of the data, or until enough fetch responses came
    /// for large messages). So only the first message is waited for; the rest is what
    /// is at hand then.
    pub(crate) fn fill(&self, batch: &mut FetchBatch, wait: Duration) -> usize {
        batch.clear();
        let cap = batch.messages.capacity();
        let mut n = self.consume(batch, Duration::ZERO, cap);
        if n == 0 && !wait.is_zero() {
            n = self.consume(batch, wait, 1);
            if n > 0 {
                n += self.consume(batch, Duration::ZERO, cap - n);
            }
        }
        batch.next = 0;
        n
    }

    /// Appends up to `max` messages to `batch` (whose capacity has room for them),
    /// waiting up to `wait` for all of them.
    fn consume(&self, batch: &mut FetchBatch, wait: Duration, max: usize) -> usize {
        let len = batch.messages.len();
        let max = max.min(batch.messages.capacity() - len);
        if max == 0 {
            return 0;
        }
        // Rounded up: a wait under 1 ms rounded down would not wait, and the reader's
        // loop would spin through its last millisecond.
        let timeout_ms = i32::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
        // SAFETY: the array has room for `max` more pointers after `len`; librdkafka
        // writes `n` of them, each a message the batch now owns (destroyed by `clear`).
        let n = unsafe {
            rdsys::rd_kafka_consume_batch_queue(
                self.queue,
                timeout_ms,
                batch.messages.as_mut_ptr().add(len),
                max,
            )
        };
        let n = usize::try_from(n).unwrap_or(0).min(max);
        // SAFETY: librdkafka initialized the `n` elements after `len`.
        unsafe { batch.messages.set_len(len + n) };
        n
    }
}

impl Drop for FetchQueue {
    fn drop(&mut self) {
        // SAFETY: the queue is ours (rd_kafka_queue_new) and destroyed once; this drops
        // the messages it still holds.
        unsafe { rdsys::rd_kafka_queue_destroy(self.queue) };
    }
}

/// Forwards the fetch queue of `topic`/`partition` of `client` to `queue`: its messages
/// and errors are read from `queue` from now on. False if librdkafka has no handle for
/// the partition (its messages then stay on the consumer queue, read as before).
///
/// # Safety
/// `client` and `queue` must be live handles, `queue` a queue of `client`.
pub(crate) unsafe fn forward_to(
    client: *mut rdsys::rd_kafka_t,
    queue: *mut rdsys::rd_kafka_queue_t,
    topic: &str,
    partition: i32,
) -> bool {
    let Ok(name) = CString::new(topic) else {
        return false;
    };
    // SAFETY: per the caller; the partition queue handle is destroyed right after (the
    // forward keeps its own reference to `queue`).
    unsafe {
        let pq = rdsys::rd_kafka_queue_get_partition(client, name.as_ptr(), partition);
        if pq.is_null() {
            return false;
        }
        rdsys::rd_kafka_queue_forward(pq, queue);
        rdsys::rd_kafka_queue_destroy(pq);
    }
    true
}

/// Messages read from a [`FetchQueue`], taken one by one with [`next`](Self::next).
pub(crate) struct FetchBatch {
    messages: Vec<*mut rdsys::rd_kafka_message_t>,
    /// The first message not taken yet.
    next: usize,
}

// SAFETY: librdkafka's messages may be read and destroyed on any thread.
unsafe impl Send for FetchBatch {}

impl Default for FetchBatch {
    fn default() -> Self {
        FetchBatch {
            messages: Vec::with_capacity(FETCH_BATCH_MESSAGES),
            next: 0,
        }
    }
}

impl FetchBatch {
    /// True if no message is left to take.
    pub(crate) fn is_empty(&self) -> bool {
        self.next >= self.messages.len()
    }

    /// The next message not taken yet (a discarded one is skipped).
    pub(crate) fn next(&mut self) -> Option<Fetched<'_>> {
        while let Some(&m) = self.messages.get(self.next) {
            self.next += 1;
            if !m.is_null() {
                return Some(Fetched {
                    // SAFETY: a message the batch owns, alive until `clear`.
                    m: unsafe { &*m },
                });
            }
        }
        None
    }

    /// Destroys the messages not taken yet of every partition `hit` says yes to
    /// (given the topic's name and the partition).
    pub(crate) fn discard(&mut self, mut hit: impl FnMut(&str, i32) -> bool) {
        for slot in self.messages.iter_mut().skip(self.next) {
            if slot.is_null() {
                continue;
            }
            // SAFETY: a message the batch owns.
            let f = Fetched {
                m: unsafe { &**slot },
            };
            if hit(f.topic(), f.partition()) {
                // SAFETY: destroyed once: the slot is cleared.
                unsafe { rdsys::rd_kafka_message_destroy(*slot) };
                *slot = ptr::null_mut();
            }
        }
    }

    /// Destroys every message.
    pub(crate) fn clear(&mut self) {
        for m in self.messages.drain(..) {
            if !m.is_null() {
                // SAFETY: each message is destroyed once, here.
                unsafe { rdsys::rd_kafka_message_destroy(m) };
            }
        }
        self.next = 0;
    }
}

impl Drop for FetchBatch {
    fn drop(&mut self) {
        self.clear();
    }
}

/// A message of a [`FetchBatch`], or a partition's error.
#[derive(Clone, Copy)]
pub(crate) struct Fetched<'a> {
    m: &'a rdsys::rd_kafka_message_t,
}

impl<'a> Fetched<'a> {
    /// The error it carries instead of a message (as rdkafka's `poll` returns it).
    pub(crate) fn error(&self) -> Option<KafkaError> {
        use rdsys::rd_kafka_resp_err_t as E;
        match self.m.err {
            E::RD_KAFKA_RESP_ERR_NO_ERROR => None,
            E::RD_KAFKA_RESP_ERR__PARTITION_EOF => Some(KafkaError::PartitionEOF(self.m.partition)),
            e => Some(KafkaError::MessageConsumption(RDKafkaErrorCode::from(e))),
        }
    }

    /// librdkafka's text of the error it carries ("" for a message): what the consumer
    /// context's `error` callback gets for an error polled from the consumer queue.
    pub(crate) fn error_text(&self) -> String {
        // SAFETY: a live message; the text lives as long as it does.
        let text = unsafe { rdsys::rd_kafka_message_errstr(ptr::from_ref(self.m)) };
        if self.m.err == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || text.is_null() {
            return String::new();
        }
        // SAFETY: a C string, as above.
        unsafe { std::ffi::CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned()
    }

    /// The partition.
    pub(crate) fn partition(&self) -> i32 {
        self.m.partition
    }

    /// The offset.
    pub(crate) fn offset(&self) -> i64 {
        self.m.offset
    }

    /// The address of librdkafka's topic handle (equal for messages of one topic while
    /// one of them lives).
    pub(crate) fn topic_handle(&self) -> usize {
        self.m.rkt as usize
    }

    /// The topic's name ("" if it has none, or not UTF-8: Kafka's names are ASCII).
    pub(crate) fn topic(&self) -> &'a str {
        if self.m.rkt.is_null() {
            return "";
        }
        // SAFETY: the topic handle lives while the message does; its name is a C string.
        unsafe { std::ffi::CStr::from_ptr(rdsys::rd_kafka_topic_name(self.m.rkt)) }
            .to_str()
            .unwrap_or("")
    }

    fn key(&self) -> Option<&'a [u8]> {
        // SAFETY: key_len bytes at key while the message lives.
        (!self.m.key.is_null())
            .then(|| unsafe { std::slice::from_raw_parts(self.m.key.cast::<u8>(), self.m.key_len) })
    }

    fn payload(&self) -> Option<&'a [u8]> {
        // SAFETY: len bytes at payload while the message lives.
        (!self.m.payload.is_null())
            .then(|| unsafe { std::slice::from_raw_parts(self.m.payload.cast::<u8>(), self.m.len) })
    }

    fn timestamp_ms(&self) -> Option<i64> {
        let mut kind = rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        let ptr = ptr::from_ref(self.m).cast_mut();
        // SAFETY: a live message; librdkafka only reads it.
        let ts = unsafe { rdsys::rd_kafka_message_timestamp(ptr, &mut kind) };
        (ts != -1 && kind != rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE)
            .then_some(ts)
    }

    fn headers(&self) -> Vec<MessageHeader> {
        let ptr = ptr::from_ref(self.m).cast_mut();
        let mut hdrs: *mut rdsys::rd_kafka_headers_t = ptr::null_mut();
        // SAFETY: a live message; the headers belong to it.
        let err = unsafe { rdsys::rd_kafka_message_headers(ptr, &mut hdrs) };
        if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || hdrs.is_null() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for idx in 0.. {
            let mut name: *const std::ffi::c_char = ptr::null();
            let mut value: *const std::ffi::c_void = ptr::null();
            let mut size: usize = 0;
            // SAFETY: index-based read of the message's headers; name and value live
            // while the message does.
            let err = unsafe {
                rdsys::rd_kafka_header_get_all(hdrs, idx, &mut name, &mut value, &mut size)
            };
            if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                break;
            }
            // SAFETY: as above.
            let key = unsafe { std::ffi::CStr::from_ptr(name) }.to_string_lossy();
            let value = (!value.is_null())
                // SAFETY: `size` bytes at `value`.
                .then(|| unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) }.to_vec());
            out.push(MessageHeader::new(&key, value));
        }
        out
    }

    /// Copies the message out of librdkafka (as [`copy_message`](crate::message::copy_message)).
    pub(crate) fn copy(&self) -> MessageParts {
        MessageParts {
            offset: self.offset(),
            timestamp_ms: self.timestamp_ms(),
            key: self.key().map(<[u8]>::to_vec),
            value: self.payload().map(<[u8]>::to_vec),
            headers: self.headers(),
        }
    }
}
