//! Flush tickets ([`Tickets`]): the deliveries of one batch, reported to the flush of
//! that batch only, so that several users of one datasink each learn exactly the
//! outcome of their own writes.
//!
//! A ticket is the delivery-id range `[first_id, end)` of a batch, opened before the
//! first record of the batch is queued (so no report can miss it) and trimmed to the
//! records accepted. A delivery report whose id falls in an open ticket is counted
//! there, not in the sink's shared list; [`DataSink::flush`] never reports it.
//!
//! Invariants: every report of a ticket's id is reported exactly once — by a
//! [`Tickets::take`] of that ticket, or, for a ticket released before all its reports
//! were taken, by the sink's shared flush (its failures move to the shared list, its
//! later reports go there). A ticket whose every report was taken is closed. Each
//! ticket's failure list is bounded like the shared one ([`FailureList`]).
//!
//! [`DataSink::flush`]: pseidon_plugin_api::DataSink::flush

use std::{
    collections::BTreeMap,
    sync::{
        Condvar, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use pseidon_plugin_api::{DeliveryFailure, DeliveryId, FlushReport};

use super::failures::{FailureList, MAX_LISTED_FAILURES};

/// One open ticket.
struct Ticket {
    /// One past the last id of the batch.
    end: DeliveryId,
    /// Deliveries not yet taken.
    delivered: u64,
    /// Failures not yet taken.
    failures: FailureList,
    /// Reports still to come: `end - first_id` minus the reports so far.
    outstanding: u64,
}

/// The open tickets of one datasink.
pub(crate) struct Tickets {
    /// Open tickets: the callback's fast path skips the map while there are none.
    open: AtomicUsize,
    by_first: Mutex<BTreeMap<DeliveryId, Ticket>>,
    /// Signalled when a ticket has no reports outstanding any more.
    settled: Condvar,
    /// Deliveries counted by a ticket, in total (the shared flush leaves them out).
    delivered: AtomicU64,
}

/// What [`Tickets::route`] did with a report.
pub(crate) enum Routed {
    /// Counted by an open ticket.
    Ticketed,
    /// No open ticket holds the id: the shared accounting takes it (given back).
    Shared(Option<DeliveryFailure>),
}

impl Tickets {
    pub(crate) fn new() -> Self {
        Tickets {
            open: AtomicUsize::new(0),
            by_first: Mutex::new(BTreeMap::new()),
            settled: Condvar::new(),
            delivered: AtomicU64::new(0),
        }
    }

    fn map(&self) -> MutexGuard<'_, BTreeMap<DeliveryId, Ticket>> {
        self.by_first.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Deliveries counted by tickets so far, in total.
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Acquire)
    }

    /// Opens a ticket for the ids `first_id .. first_id + count`, before any is queued.
    pub(crate) fn open(&self, first_id: DeliveryId, count: u64) {
        let mut map = self.map();
        map.insert(
            first_id,
            Ticket {
                end: first_id + count,
                delivered: 0,
                failures: FailureList::new(MAX_LISTED_FAILURES),
                outstanding: count,
            },
        );
        self.open.store(map.len(), Ordering::Release);
    }

    /// Only the first `accepted` records of the ticket were queued: no report will
    /// come for the others.
    pub(crate) fn trim(&self, first_id: DeliveryId, accepted: u64) {
        let mut map = self.map();
        if accepted == 0 {
            // Nothing queued: there is nothing to report (the caller gets no ticket).
            map.remove(&first_id);
            self.open.store(map.len(), Ordering::Release);
            return;
        }
        if let Some(t) = map.get_mut(&first_id) {
            let dropped = t.end.saturating_sub(first_id + accepted);
            t.end = first_id + accepted;
            t.outstanding = t.outstanding.saturating_sub(dropped);
            if t.outstanding == 0 {
                self.settled.notify_all();
            }
        }
    }

    /// Counts the report of delivery `id` (`failure`: `None` if it was delivered) in
    /// the open ticket holding it, if one does. Cheap while no ticket is open.
    pub(crate) fn route(&self, id: DeliveryId, failure: Option<DeliveryFailure>) -> Routed {
        if self.open.load(Ordering::Acquire) == 0 {
            return Routed::Shared(failure);
        }
        let mut map = self.map();
        let Some((_, t)) = map.range_mut(..=id).next_back().filter(|(_, t)| id < t.end) else {
            return Routed::Shared(failure);
        };
        match failure {
            None => {
                t.delivered += 1;
                self.delivered.fetch_add(1, Ordering::AcqRel);
            }
            Some(f) => {
                t.failures.push(f);
            }
        }
        t.outstanding = t.outstanding.saturating_sub(1);
        if t.outstanding == 0 {
            self.settled.notify_all();
        }
        Routed::Ticketed
    }

    /// Waits up to `timeout` until ticket `first_id` has no reports outstanding, then
    /// takes what it has: the deliveries and failures since its previous take, and
    /// how many reports are still to come. A ticket with none to come is closed.
    /// `None`: no such ticket is open (closed, released, or never opened).
    pub(crate) fn take(&self, first_id: DeliveryId, timeout: Duration) -> Option<FlushReport> {
        let deadline = Instant::now() + timeout;
        let mut map = self.map();
        loop {
            let outstanding = map.get(&first_id)?.outstanding;
            let now = Instant::now();
            if outstanding == 0 || now >= deadline {
                break;
            }
            map = self
                .settled
                .wait_timeout(map, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let t = map.get_mut(&first_id)?;
        let report = FlushReport {
            delivered: std::mem::take(&mut t.delivered),
            failed: t.failures.take(),
            pending: t.outstanding,
        };
        if t.outstanding == 0 {
            map.remove(&first_id);
            self.open.store(map.len(), Ordering::Release);
        }
        Some(report)
    }

    /// Closes ticket `first_id` without taking its reports: what it holds and what is
    /// still to come go to the shared accounting. Returns the deliveries and failures
    /// it held (the shared flush reports them).
    pub(crate) fn release(&self, first_id: DeliveryId) -> Option<(u64, Vec<DeliveryFailure>)> {
        let mut map = self.map();
        let mut t = map.remove(&first_id)?;
        self.open.store(map.len(), Ordering::Release);
        // The shared flush counts these deliveries now.
        self.delivered.fetch_sub(t.delivered, Ordering::AcqRel);
        Some((t.delivered, t.failures.take()))
    }

    /// Failures held by open tickets and not taken yet (for the shutdown's account).
    pub(crate) fn untaken_failures(&self) -> Vec<DeliveryFailure> {
        let mut map = self.map();
        map.values_mut().flat_map(|t| t.failures.take()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(id: u64) -> Option<DeliveryFailure> {
        Some(DeliveryFailure {
            id,
            topic: "t".into(),
            reason: format!("reason {id}"),
        })
    }

    #[test]
    fn a_ticket_takes_exactly_its_own_reports_once() {
        let tickets = Tickets::new();
        assert!(matches!(tickets.route(0, None), Routed::Shared(None)));
        tickets.open(10, 3);
        tickets.open(13, 2);
        assert!(matches!(tickets.route(9, None), Routed::Shared(None)));
        assert!(matches!(
            tickets.route(15, failure(15)),
            Routed::Shared(Some(_))
        ));
        assert!(matches!(tickets.route(10, None), Routed::Ticketed));
        assert!(matches!(tickets.route(12, failure(12)), Routed::Ticketed));
        assert!(matches!(tickets.route(13, None), Routed::Ticketed));
        // 11 is still to come: the take waits, then reports what it has.
        let r = tickets.take(10, Duration::from_millis(10)).unwrap();
        assert_eq!((r.delivered, r.pending), (1, 1));
        assert_eq!(r.failed.iter().map(|f| f.id).collect::<Vec<_>>(), [12]);
        assert!(matches!(tickets.route(11, None), Routed::Ticketed));
        let r = tickets.take(10, Duration::from_secs(5)).unwrap();
        assert_eq!((r.delivered, r.failed.len(), r.pending), (1, 0, 0));
        // Settled and taken: closed.
        assert!(tickets.take(10, Duration::ZERO).is_none());
        assert_eq!(tickets.delivered(), 3);
        // The other ticket, released with one report held and one to come.
        let (delivered, failed) = tickets.release(13).unwrap();
        assert_eq!((delivered, failed.len()), (1, 0));
        assert_eq!(tickets.delivered(), 2);
        assert!(matches!(tickets.route(14, None), Routed::Shared(None)));
    }

    #[test]
    fn a_trimmed_ticket_settles_without_the_refused_records() {
        let tickets = Tickets::new();
        tickets.open(0, 5);
        assert!(matches!(tickets.route(0, None), Routed::Ticketed));
        tickets.trim(0, 2);
        assert!(matches!(tickets.route(1, None), Routed::Ticketed));
        let r = tickets.take(0, Duration::from_secs(5)).unwrap();
        assert_eq!((r.delivered, r.pending), (2, 0));
        assert!(matches!(tickets.route(2, None), Routed::Shared(None)));
        // Nothing accepted: no ticket stays open.
        tickets.open(5, 3);
        tickets.trim(5, 0);
        assert!(tickets.take(5, Duration::ZERO).is_none());
        assert_eq!(tickets.open.load(Ordering::Acquire), 0);
    }
}
