//! The copy loop: read message groups of `from`, write their messages to `to`, flush
//! until the sink reported every delivery, and mark done only the groups whose
//! messages were all delivered.
//!
//! At-least-once: a group is marked done only after a clean delivery of all its
//! messages, so a crash (or a stop) between the write and the mark leaves the group
//! unfinished, and the datasource replays it at the next start: the target may then
//! hold its messages twice, never miss one. Its writes carry flush tickets: the
//! processor learns the outcome of exactly its own writes, whoever else writes to and
//! flushes the same datasink.
//!
//! Poison messages: a group still not delivered after `max-attempts` (a record the sink
//! refuses for good, e.g. larger than the target topic takes) is marked failed
//! (`Source::mark_failed`, with the sink's reason) and the copy goes on: the datasource
//! retries it after its backoff and, at its own `pseidon-kafka.max-attempts`, bisects it
//! until the refused record is alone and dead-lettered. A retry writes each group alone
//! (a broker refuses a whole record batch, so groups written together fail together). The healthy messages of a failed
//! group may then reach the target twice (at-least-once). With a datasource that cannot
//! mark groups failed (a plugin before pseidon-plugin-api 0.3.1), the copy stops with
//! an error as before.
//! With `copy-processor.exactly-once = true` each batch is copied in one transaction
//! instead ([`exactly_once`]).

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use pseidon_plugin_api::{
    DeliveryFailure, DeliveryId, Error, FlushTicket, Header, MessageGroup, ReaderOptions, Record,
    Registry, Sink, Source, SourceReader,
};

use crate::settings::Settings;

pub mod exactly_once;

/// How long one wait for a group (and one flush) may take: the longest a stop waits
/// for the loop to notice it.
const SLICE: Duration = Duration::from_millis(200);
/// The most messages written before one flush.
const BATCH_MESSAGES: usize = 5000;

/// What one run of the thread copied.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Messages delivered to `to` (including those of groups retried).
    pub messages: u64,
    /// Groups marked done.
    pub groups: u64,
}

/// Looks up the source and the sink, opens the reader and copies until `stop`; the
/// reader is closed (committing what is done) however the loop ends.
pub fn run(registry: &Registry, settings: &Settings, stop: &AtomicBool) -> Result<Totals, Error> {
    run_notify(registry, settings, stop, || {})
}

/// [`run`], calling `opened` once the source and the sink were found and the reader
/// is open (the processor's `start` waits for that, so that a setup error such as a
/// locked status database fails `start`).
pub fn run_notify(
    registry: &Registry,
    settings: &Settings,
    stop: &AtomicBool,
    opened: impl FnOnce(),
) -> Result<Totals, Error> {
    let source = registry.reg_get_wait_source(&settings.source, settings.wait)?;
    let sink = registry.reg_get_wait_sink(&settings.sink, settings.wait)?;
    let mut reader = source.reader(
        &[settings.from.as_str()],
        ReaderOptions::default().group_id(&settings.group),
    )?;
    if settings.exactly_once {
        // Transactions are initialised before the first group is read: that fences a
        // previous instance and aborts its open transaction, whose pending offsets
        // would otherwise hold the reader's committed-offset fetch (KIP-447), and a
        // transaction coordinator that cannot work is an error now.
        if let Err(e) = exactly_once::init(&sink) {
            let _ = reader.close();
            return Err(e);
        }
    }
    opened();
    log::info!(
        "copying topic `{}` to `{}` (consumer group `{}`)",
        settings.from,
        settings.to,
        settings.group
    );
    let mut totals = Totals::default();
    let result = Copier {
        settings,
        source: &source,
        sink: &sink,
        stop,
        totals: &mut totals,
        started: Instant::now(),
        carried: Vec::new(),
        tickets: Vec::new(),
    }
    .copy_until_stopped(&mut reader);
    let closed = reader.close();
    log::info!(
        "copy stopped: {} message(s) delivered, {} group(s) done",
        totals.messages,
        totals.groups
    );
    result.and(closed).map(|()| totals)
}

struct Copier<'a> {
    settings: &'a Settings,
    source: &'a Source,
    sink: &'a Sink,
    stop: &'a AtomicBool,
    totals: &'a mut Totals,
    started: Instant,
    /// Failures a flush between writes reported, for the attempt to map to groups.
    carried: Vec<DeliveryFailure>,
    /// The flush tickets of the attempt's writes not flushed to their end yet.
    tickets: Vec<FlushTicket>,
}

/// The outcome of one attempt at a batch of groups.
enum Attempt {
    /// Indexes of the groups with a failed delivery, and the first reason.
    Failed(Vec<usize>, String),
    /// Every group delivered.
    Clean,
    /// Stopped before the deliveries were known.
    Stopped,
}

impl Copier<'_> {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn copy_until_stopped(&mut self, reader: &mut SourceReader) -> Result<(), Error> {
        let mut busy = false;
        while !self.stopping() {
            let Some(first) = reader.next_group(SLICE)? else {
                if busy {
                    busy = false;
                    log::info!(
                        "caught up with `{}`: {} message(s) delivered, {} group(s) done so far",
                        self.settings.from,
                        self.totals.messages,
                        self.totals.groups
                    );
                }
                continue;
            };
            busy = true;
            let mut messages = first.messages().len();
            let mut batch = vec![first];
            // Under a rate limit, batches of about a fifth of a second's worth.
            let cap = match self.settings.max_rate {
                0 => BATCH_MESSAGES,
                rate => usize::try_from(rate / 5)
                    .unwrap_or(BATCH_MESSAGES)
                    .clamp(1, BATCH_MESSAGES),
            };
            while messages < cap {
                match reader.next_group(Duration::ZERO)? {
                    Some(g) => {
                        messages += g.messages().len();
                        batch.push(g);
                    }
                    None => break,
                }
            }
            // The groups are handed out (status `run`) while the rate limit holds them.
            self.throttle(messages);
            if self.stopping() {
                break;
            }
            if self.settings.exactly_once {
                self.copy_batch_txn(batch)?;
            } else {
                self.copy_batch(batch)?;
            }
        }
        Ok(())
    }

    /// Sleeps until `next` more messages may be written under `max-rate`. Idle time
    /// earns no credit: after a pause the rate holds from the pause's end, not from
    /// the start (no burst after a slow start or a quiet topic).
    fn throttle(&mut self, next: usize) {
        if self.settings.max_rate == 0 {
            return;
        }
        let rate = self.settings.max_rate as f64;
        let sent = Duration::from_secs_f64(self.totals.messages as f64 / rate);
        if self.started.elapsed() > sent + SLICE {
            // Behind schedule (idle): restart the schedule now.
            self.started = Instant::now()
                .checked_sub(sent)
                .unwrap_or_else(Instant::now);
        }
        let due = sent + Duration::from_secs_f64(next as f64 / rate);
        while !self.stopping() {
            let ahead = due.saturating_sub(self.started.elapsed());
            if ahead.is_zero() {
                return;
            }
            std::thread::sleep(ahead.min(SLICE));
        }
    }

    /// Copies `batch`, writing again the groups whose delivery failed, up to
    /// `max-attempts`; marks the delivered groups done.
    fn copy_batch(&mut self, mut batch: Vec<MessageGroup>) -> Result<(), Error> {
        let mut last_reason = String::new();
        for attempt in 1..=self.settings.max_attempts {
            // A retry writes each group alone: a broker refuses a whole record batch
            // (e.g. one record over the topic's max.message.bytes), so groups written
            // together fail together, and a healthy one must not be failed for another.
            let outcome = if attempt == 1 || batch.len() == 1 {
                self.attempt(&batch)?
            } else {
                self.attempt_each(&batch)?
            };
            match outcome {
                Attempt::Stopped => return Ok(()),
                Attempt::Clean => {
                    return self.mark_done(&batch);
                }
                Attempt::Failed(failed, reason) => {
                    last_reason.clone_from(&reason);
                    let (retry, done): (Vec<_>, Vec<_>) = batch
                        .into_iter()
                        .enumerate()
                        .partition(|(i, _)| failed.contains(i));
                    let done: Vec<MessageGroup> = done.into_iter().map(|(_, g)| g).collect();
                    self.mark_done(&done)?;
                    batch = retry.into_iter().map(|(_, g)| g).collect();
                    log::warn!(
                        "attempt {attempt} of {}: {} group(s) not fully delivered to `{}` ({reason}); not marked done{}",
                        self.settings.max_attempts,
                        batch.len(),
                        self.settings.to,
                        if attempt < self.settings.max_attempts {
                            ", writing them again"
                        } else {
                            ""
                        }
                    );
                    std::thread::sleep(SLICE);
                    if self.stopping() {
                        return Ok(());
                    }
                }
            }
        }
        self.mark_failed(&batch, &last_reason)
    }

    /// Marks the groups the sink kept refusing failed, for the datasource to retry and
    /// bisect them (module docs); the error of before where it cannot.
    fn mark_failed(&mut self, batch: &[MessageGroup], reason: &str) -> Result<(), Error> {
        let reason = format!(
            "not delivered to `{}` after {} attempt(s): {reason}",
            self.settings.to, self.settings.max_attempts
        );
        for g in batch {
            if let Err(e) = self
                .source
                .mark_failed(g.id(), &reason, Some(&self.settings.group))
            {
                let ids: Vec<&str> = batch.iter().map(MessageGroup::id).collect();
                return Err(Error::other(format!(
                    "copy to `{}` gave up after {} attempt(s); group(s) {ids:?} stay unfinished and are replayed at the next start (marking them failed: {e})",
                    self.settings.to, self.settings.max_attempts
                )));
            }
            log::warn!(
                "group {} marked failed ({reason}); the copy goes on",
                g.id()
            );
        }
        Ok(())
    }

    fn mark_done(&mut self, groups: &[MessageGroup]) -> Result<(), Error> {
        for g in groups {
            self.source.mark_done(g.id())?;
            self.totals.groups += 1;
        }
        if !groups.is_empty() {
            log::debug!(
                "{} group(s) done; {} message(s) copied so far",
                groups.len(),
                self.totals.messages
            );
        }
        Ok(())
    }

    /// [`attempt`](Self::attempt) of each group of `batch` alone, one after the other.
    fn attempt_each(&mut self, batch: &[MessageGroup]) -> Result<Attempt, Error> {
        let mut failed = Vec::new();
        let mut first_reason = None;
        for (i, g) in batch.iter().enumerate() {
            match self.attempt(std::slice::from_ref(g))? {
                Attempt::Stopped => return Ok(Attempt::Stopped),
                Attempt::Clean => {}
                Attempt::Failed(_, reason) => {
                    failed.push(i);
                    first_reason.get_or_insert(reason);
                }
            }
        }
        Ok(match first_reason {
            Some(reason) => Attempt::Failed(failed, reason),
            None => Attempt::Clean,
        })
    }

    /// Writes every message of `batch`, then flushes until each delivery is reported.
    fn attempt(&mut self, batch: &[MessageGroup]) -> Result<Attempt, Error> {
        // Delivery ids of each group: (group index, first id, count).
        let mut spans: Vec<(usize, DeliveryId, u64)> = Vec::new();
        let mut refused: Vec<usize> = Vec::new();
        let mut first_reason = None;
        for (i, group) in batch.iter().enumerate() {
            match self.write_group(group, &mut spans, i)? {
                Some(reason) => {
                    refused.push(i);
                    first_reason.get_or_insert(reason);
                }
                None if self.stopping() => return Ok(Attempt::Stopped),
                None => {}
            }
        }
        let mut failed = refused;
        let mut absorb = |failures: &[DeliveryFailure]| {
            for f in failures {
                if let Some(&(i, _, _)) = spans
                    .iter()
                    .find(|(_, first, n)| (*first..*first + *n).contains(&f.id))
                {
                    if !failed.contains(&i) {
                        failed.push(i);
                    }
                    first_reason.get_or_insert_with(|| f.reason.clone());
                }
            }
        };
        absorb(&std::mem::take(&mut self.carried));
        // Each ticket reports exactly its own writes: another user of the sink
        // flushing meanwhile takes none of them.
        for mut ticket in std::mem::take(&mut self.tickets) {
            while ticket.is_open() {
                let report = ticket.flush(SLICE)?;
                self.totals.messages += report.delivered;
                absorb(&report.failed);
                if report.pending > 0 && self.stopping() {
                    return Ok(Attempt::Stopped);
                }
            }
        }
        Ok(match first_reason {
            Some(reason) if !failed.is_empty() => Attempt::Failed(failed, reason),
            _ => Attempt::Clean,
        })
    }

    /// Writes the messages of `group` to `to` (keys, values and headers as they are);
    /// returns why a message was refused, if one was.
    fn write_group(
        &mut self,
        group: &MessageGroup,
        spans: &mut Vec<(usize, DeliveryId, u64)>,
        index: usize,
    ) -> Result<Option<String>, Error> {
        let to = self.settings.to.as_str();
        let headers: Vec<Vec<Header<'_>>> = group
            .messages()
            .iter()
            .map(|m| {
                m.headers()
                    .iter()
                    .map(|h| match h.value() {
                        Some(v) => Header::new(h.key(), v),
                        None => Header::null(h.key()),
                    })
                    .collect()
            })
            .collect();
        let records: Vec<Record<'_>> = group
            .messages()
            .iter()
            .zip(&headers)
            .map(|(m, hs)| {
                let r = match (m.value(), m.key()) {
                    (Some(v), _) => Record::new(to, v),
                    (None, Some(k)) => Record::tombstone(to, k),
                    (None, None) => Record::new(to, &[]),
                };
                let r = match (m.key(), m.value()) {
                    (Some(k), Some(_)) => r.with_key(k),
                    _ => r,
                };
                r.with_headers(hs)
            })
            .collect();
        let mut from = 0;
        while from < records.len() {
            let (b, ticket) = self.sink.write_batch_ticket(&records[from..])?;
            self.tickets.push(ticket);
            let accepted = usize::try_from(b.accepted)
                .unwrap_or(usize::MAX)
                .min(records.len() - from);
            if accepted > 0 {
                spans.push((index, b.first_id, accepted as u64));
            }
            from += accepted;
            match b.error {
                None => {}
                Some(Error::QueueFull { .. }) if !self.stopping() => {
                    // The producer is behind: let it deliver (our oldest writes
                    // first), then write the rest.
                    if let Some(ticket) = self.tickets.iter_mut().find(|t| t.is_open()) {
                        let report = ticket.flush(SLICE)?;
                        self.totals.messages += report.delivered;
                        self.carried.extend(report.failed);
                    }
                }
                Some(e) => return Ok(Some(e.to_string())),
            }
        }
        Ok(None)
    }
}
