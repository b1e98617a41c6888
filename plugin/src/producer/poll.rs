//! The datasink's poll thread (`pseidon-kafka-sink-poll`): polls the producer every
//! [`POLL_INTERVAL`], which serves the delivery reports, log lines and errors to
//! [`SinkContext`](super::context::SinkContext), and after each poll checks the
//! connection's health ([`crate::health`]).
//!
//! While writers are queueing records (the context's `queued` count grew since the
//! last look) or one serves the reports of a full queue itself, the thread steps aside
//! for [`STEP_ASIDE`]: the writer serves the reports, once per 1024 records (`write`
//! polls without waiting) and while the queue is full. A message is then freed by the thread that allocated it, as in a plain
//! rdkafka loop; reports freed by this thread took glibc's arena lock against every
//! allocation of the writer (futex calls: 13 % of the writer thread's samples in a
//! perf profile of 1M × 100 B, and the poll thread's own 23 %). When the writes stop, the thread polls again within
//! [`STEP_ASIDE`].
//!
//! The thread waits for events with [`Reports::wait`] (woken by librdkafka when an
//! event is queued, or by the stop), not with rdkafka's `poll(timeout)`, which spins
//! through the last millisecond of every call.
//!
//! Invariants: the thread runs from the sink's creation until its shutdown has
//! flushed (a flush waits for reports only this thread serves once the writes
//! stopped), and it notices a stop at once (the stop wakes its wait; a step aside or
//! a connection probe, at most [`PROBE_TIMEOUT`], ends first): a one-message `pseidon
//! send` ends with this stop.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use pseidon_plugin_api::Error;
use rdkafka::producer::Producer;

use super::{context::KafkaProducer, raw, reports::Reports};
use crate::health::{ConnectCheck, PROBE_TIMEOUT, broker_answers};

/// The longest the poll thread waits for an event: it checks the connection's health
/// at least this often. An idle sink wakes 100 times a second (a futex timeout and a
/// flag check: no measurable CPU).
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How long the poll thread steps aside while writers are queueing records.
const STEP_ASIDE: Duration = Duration::from_millis(1);

/// The poll thread: serves delivery reports, logs and errors.
pub(super) struct Poller {
    stop: Arc<AtomicBool>,
    reports: Arc<Reports>,
    handle: JoinHandle<()>,
}

impl Poller {
    /// Starts polling `producer`.
    pub(super) fn start(reports: &Arc<Reports>) -> Result<Poller, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let reports = Arc::clone(reports);
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name("pseidon-kafka-sink-poll".to_string())
                .spawn(move || {
                    let producer = reports.producer();
                    let context = producer.context();
                    let mut seen = context.queued.load(Ordering::Relaxed);
                    while !stop.load(Ordering::Acquire) {
                        let queued = context.queued.load(Ordering::Relaxed);
                        if queued != seen || context.writer_polls() {
                            // A writer is busy: it serves the reports itself.
                            seen = queued;
                            thread::sleep(STEP_ASIDE);
                        } else {
                            // Served only while no writer is busy: a writer that
                            // became busy during the wait serves the event itself.
                            seen = queued;
                            let generation = reports.serve();
                            reports.wait(generation, POLL_INTERVAL);
                        }
                        check_connection(producer);
                    }
                })
                .map_err(|e| {
                    Error::other(format!("cannot start the datasink's poll thread: {e}"))
                })?
        };
        Ok(Poller {
            stop,
            reports: Arc::clone(reports),
            handle,
        })
    }

    /// Stops the thread and waits for it.
    pub(super) fn stop(self) {
        self.stop.store(true, Ordering::Release);
        self.reports.nudge();
        if self.handle.join().is_err() {
            log::error!("the datasink's poll thread panicked");
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
        ..
    } = check
    {
        if newly {
            log::error!(
                "the datasink {} fails its queued messages and refuses writes until a broker answers: {reason}",
                context.name
            );
        }
        // Again after each unanswered probe: a write may have raced the first purge.
        if probed {
            raw::purge(producer);
        }
    }
}
