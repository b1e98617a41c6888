//! The producer's report queue ([`Reports`]): serving the delivery reports, logs and
//! errors librdkafka queued, and waiting for more without spinning.
//!
//! rdkafka's `BaseProducer::poll(timeout)` serves events until its deadline and
//! converts what is left of it to whole milliseconds, rounded down: during the last
//! millisecond of every call it polls with a zero timeout in a loop (a perf profile of
//! 1 M × 100 B: the poll thread's samples were mostly `clock_gettime`; a 1 ms poll
//! spins all of it). Here the waiting is ours: librdkafka calls [`on_event`] when an
//! event lands in the empty queue (`rd_kafka_queue_cb_event_enable`), which counts a
//! generation and wakes [`Reports::wait`]; [`Reports::serve`] serves what is queued
//! with rdkafka's `poll(0)` (one event per call, through the context's callbacks)
//! until the queue is empty, and returns the generation it started from.
//!
//! Invariants:
//! - The callback's opaque pointer is the boxed [`Signal`], which lives until
//!   [`Reports`] is dropped; the drop first unhooks the callback (under the queue's
//!   lock, which librdkafka also holds while it calls the callback), then destroys the
//!   queue handle, then lets go of the producer.
//! - A wake-up is never lost, by any of several waiters: the callback fires only
//!   when the queue was empty; every waiter empties it first and then waits for a
//!   generation later than the one read before it served.

use std::{
    ffi::c_void,
    ptr::NonNull,
    sync::{Arc, Condvar, Mutex, PoisonError},
    time::{Duration, Instant},
};

use rdkafka::{bindings as rdsys, producer::Producer};

use super::context::KafkaProducer;

/// The generation the callback counts and the waiters watch.
struct Signal {
    generation: Mutex<u64>,
    raised: Condvar,
}

/// The producer's main queue (its delivery reports, logs and errors), served and
/// waited for without spinning.
pub(super) struct Reports {
    producer: Arc<KafkaProducer>,
    queue: NonNull<rdsys::rd_kafka_queue_t>,
    signal: Box<Signal>,
}

// SAFETY: librdkafka queue handles are thread-safe; the signal is Sync.
unsafe impl Send for Reports {}
// SAFETY: as above.
unsafe impl Sync for Reports {}

/// Called by librdkafka (a broker or its main thread, the queue's lock held) when an
/// event lands in the empty queue: a new generation. Must not call librdkafka.
unsafe extern "C" fn on_event(_rk: *mut rdsys::rd_kafka_t, opaque: *mut c_void) {
    // SAFETY: the opaque pointer is the boxed Signal, alive until the callback is
    // unhooked (Reports::drop).
    unsafe { &*opaque.cast::<Signal>() }.raise();
}

impl Signal {
    /// A new generation; wakes every waiter.
    fn raise(&self) {
        let mut generation = self
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *generation = generation.wrapping_add(1);
        drop(generation);
        self.raised.notify_all();
    }
}

impl Reports {
    /// Hooks the wake-ups to `producer`'s main queue.
    pub(super) fn new(producer: Arc<KafkaProducer>) -> Self {
        let signal = Box::new(Signal {
            generation: Mutex::new(0),
            raised: Condvar::new(),
        });
        // SAFETY: a live client; the handle is destroyed in drop, before the client.
        let queue = unsafe { rdsys::rd_kafka_queue_get_main(producer.client().native_ptr()) };
        let queue = NonNull::new(queue).unwrap_or_else(|| {
            // librdkafka returns the main queue of every client; never null.
            unreachable!("rd_kafka_queue_get_main returned no queue")
        });
        let opaque = ptr_of(&signal);
        // SAFETY: the queue handle is live; the opaque outlives the hook (drop).
        unsafe { rdsys::rd_kafka_queue_cb_event_enable(queue.as_ptr(), Some(on_event), opaque) };
        Reports {
            producer,
            queue,
            signal,
        }
    }

    /// The producer.
    pub(super) fn producer(&self) -> &Arc<KafkaProducer> {
        &self.producer
    }

    /// Serves every event queued now (delivery reports through the context's
    /// callback), without waiting for more; returns the generation read before, for
    /// [`wait`](Self::wait).
    pub(super) fn serve(&self) -> u64 {
        let generation = *self
            .signal
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // SAFETY: a live queue handle.
        while unsafe { rdsys::rd_kafka_queue_length(self.queue.as_ptr()) } > 0 {
            self.producer.poll(Duration::ZERO);
        }
        generation
    }

    /// Wakes every waiter now (the poll thread's stop).
    pub(super) fn nudge(&self) {
        self.signal.raise();
    }

    /// Waits until an event was queued into the empty queue after `serve` returned
    /// `generation`, or `timeout` passed.
    pub(super) fn wait(&self, generation: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut now_at = self
            .signal
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while *now_at == generation {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            now_at = self
                .signal
                .raised
                .wait_timeout(now_at, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// The callback's opaque pointer to `signal`.
fn ptr_of(signal: &Signal) -> *mut c_void {
    std::ptr::from_ref(signal).cast_mut().cast()
}

impl Drop for Reports {
    fn drop(&mut self) {
        // SAFETY: the handle is live; unhooking takes the queue's lock, so no call of
        // the callback runs past this line; then the handle goes, before the client.
        unsafe {
            rdsys::rd_kafka_queue_cb_event_enable(self.queue.as_ptr(), None, std::ptr::null_mut());
            rdsys::rd_kafka_queue_destroy(self.queue.as_ptr());
        }
    }
}
