//! The exactly-once copy (`copy-processor.exactly-once = true`, issue 17): each batch
//! of groups is copied in one Kafka transaction of the datasink, and committed with
//! the groups done (`Sink::commit_transaction`: their offsets go into the same
//! transaction, KIP-447; the status database follows). A `read_committed` reader of
//! the target then sees each source message once, whatever crashes: a batch whose
//! transaction did not commit is aborted by the broker (at the latest when the
//! restarted instance initialises the same transactional id) and replayed; one that
//! committed is recognised at restart and not replayed.
//!
//! A failed delivery aborts the transaction and writes the whole batch again (up to
//! `max-attempts`, pausing 1, 2, 4 … s between attempts, so a broker restart is ridden
//! out); a commit that fails with a retriable error likewise (the sink has aborted it). A fenced producer (a zombie: another instance took its transactional
//! id over, e.g. after a SIGSTOP) stops the copy with an error saying so: nothing of
//! it becomes visible, `pseidon run` exits non-zero.

use std::time::Duration;

use pseidon_plugin_api::{Error, MessageGroup, Sink};

use super::{Attempt, Copier, SLICE};

/// How long a transaction step (initialisation at the first begin, commit, abort)
/// may take before it is an error.
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// The first pause before a batch is written again; doubled per attempt.
const RETRY_BASE: Duration = Duration::from_secs(1);
/// The longest pause between attempts.
const RETRY_MAX: Duration = Duration::from_secs(16);

/// librdkafka's codes of a fenced producer: `_FENCED`, `PRODUCER_FENCED`,
/// `INVALID_PRODUCER_EPOCH`.
const FENCED_CODES: [i32; 3] = [-144, 90, 47];

/// librdkafka's text of a fenced producer (in a delivery failure's reason, which
/// carries no code). Not "fenced" alone: a static consumer member can be fenced
/// (`FENCED_INSTANCE_ID`) without the producer being so.
const FENCED_TEXT: &str = "fenced by a newer instance";

/// True if `e` says the producer was fenced.
pub fn is_fenced(e: &Error) -> bool {
    e.kafka_code().is_some_and(|c| FENCED_CODES.contains(&c)) || e.to_string().contains(FENCED_TEXT)
}

/// The error a fenced copy stops with.
fn fenced(e: Error) -> Error {
    Error::other(format!(
        "the copy was fenced: another instance with the same transactional id took over \
         (this one was paused or cut off); its open transaction is aborted and it stops \
         without writing anything more ({e})"
    ))
}

/// Initialises the sink's transactions (an empty transaction, begun and committed).
pub fn init(sink: &Sink) -> Result<(), Error> {
    sink.begin_transaction(TXN_TIMEOUT)
        .and_then(|()| sink.commit_transaction(&[], TXN_TIMEOUT))
        .map_err(|e| {
            if is_fenced(&e) {
                fenced(e)
            } else {
                Error::other(format!(
                    "copy-processor.exactly-once: the datasink's transactions cannot start: {e}"
                ))
            }
        })
}

impl Copier<'_> {
    /// Copies `batch` in one transaction committed with the groups done.
    pub(super) fn copy_batch_txn(&mut self, batch: Vec<MessageGroup>) -> Result<(), Error> {
        let ids: Vec<String> = batch.iter().map(|g| g.id().to_string()).collect();
        for attempt in 1..=self.settings.max_attempts {
            self.sink
                .begin_transaction(TXN_TIMEOUT)
                .map_err(|e| if is_fenced(&e) { fenced(e) } else { e })?;
            let outcome = match self.attempt(&batch) {
                Ok(o) => o,
                Err(e) => {
                    let _ = self.sink.abort_transaction(TXN_TIMEOUT);
                    return Err(if is_fenced(&e) { fenced(e) } else { e });
                }
            };
            let reason = match outcome {
                Attempt::Stopped => {
                    // Nothing of it becomes visible; the groups are replayed.
                    let _ = self.sink.abort_transaction(TXN_TIMEOUT);
                    return Ok(());
                }
                Attempt::Clean => match self.sink.commit_transaction(&ids, TXN_TIMEOUT) {
                    Ok(()) => {
                        self.totals.groups += ids.len() as u64;
                        log::debug!(
                            "transaction committed: {} group(s); {} message(s) copied so far",
                            ids.len(),
                            self.totals.messages
                        );
                        return Ok(());
                    }
                    Err(e) if is_fenced(&e) => return Err(fenced(e)),
                    Err(e) if e.is_retriable() => e.to_string(),
                    Err(e) => return Err(e),
                },
                Attempt::Failed(_, reason) => {
                    if let Err(e) = self.sink.abort_transaction(TXN_TIMEOUT) {
                        let e = Error::other(format!(
                            "a delivery of the transaction failed ({reason}) and aborting \
                             it failed too: {e}"
                        ));
                        return Err(if reason.contains(FENCED_TEXT) || is_fenced(&e) {
                            fenced(e)
                        } else {
                            e
                        });
                    }
                    if reason.contains(FENCED_TEXT) {
                        return Err(fenced(Error::other(reason)));
                    }
                    reason
                }
            };
            log::warn!(
                "attempt {attempt} of {}: the transaction of {} group(s) to `{}` was aborted \
                 ({reason}){}",
                self.settings.max_attempts,
                ids.len(),
                self.settings.to,
                if attempt < self.settings.max_attempts {
                    "; writing the batch again"
                } else {
                    ""
                }
            );
            // A broker that is down or restarting fails attempts quickly: back off
            // 1, 2, 4, 8 … s (at most 16 s), so a short outage is ridden out.
            let pause = RETRY_BASE
                .saturating_mul(1 << (attempt - 1).min(4))
                .min(RETRY_MAX);
            let until = std::time::Instant::now() + pause;
            while std::time::Instant::now() < until {
                if self.stopping() {
                    return Ok(());
                }
                std::thread::sleep(SLICE);
            }
        }
        Err(Error::other(format!(
            "exactly-once copy to `{}` gave up after {} attempt(s); group(s) {ids:?} stay \
             unfinished and are replayed at the next start",
            self.settings.to, self.settings.max_attempts
        )))
    }
}
