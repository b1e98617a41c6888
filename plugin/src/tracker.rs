//! The done-watermark of one partition: the offset up to which everything is done, so
//! the only offset the group consumer ever stores (and librdkafka commits).
//!
//! The tracker is created when the group consumer receives the first message of a
//! partition after an assignment, at that message's offset `start` (everything before it
//! was committed already, or does not exist). It holds the groups of the partition that
//! end at or after `start`, keyed by first offset, with a done flag: the groups this
//! reader forms, and the groups the status database already knows (done or lost ones as
//! done; unfinished ones held by this process — replayed — as not done).
//!
//! `seen` is the offset after the last message the consumer has put into a registered
//! group or skipped: every offset below it that is in no group holds no message.
//! The watermark `pos` walks forward from `start` over done groups and over gaps below
//! `seen`; it stops at the first group not done, or at `seen`. So it never passes a
//! message that is not in a done group, and never goes backwards.

use std::collections::BTreeMap;

/// The watermark of one partition.
#[derive(Debug, Clone)]
pub(crate) struct Tracker {
    pos: i64,
    seen: i64,
    /// (min, max) → done. Keyed by the whole range: the status database may hold
    /// overlapping groups of different boundaries (formed before and after a
    /// rebalance), and the one not done must hold the watermark.
    entries: BTreeMap<(i64, i64), bool>,
    stored: Option<i64>,
}

impl Tracker {
    /// A tracker whose first received message is at `start`.
    pub(crate) fn new(start: i64) -> Self {
        Tracker {
            pos: start,
            seen: start,
            entries: BTreeMap::new(),
            stored: None,
        }
    }

    /// A group the status database knows: `done` for done or lost ones.
    pub(crate) fn add_known(&mut self, min: i64, max: i64, done: bool) {
        if max < self.pos {
            return;
        }
        let e = self.entries.entry((min, max)).or_insert(done);
        *e = *e && done;
    }

    /// A group this reader formed from messages it read: not done yet.
    pub(crate) fn add_group(&mut self, min: i64, max: i64) {
        self.entries.insert((min, max), false);
        self.seen = self.seen.max(max + 1);
    }

    /// A message the consumer read and skipped (its offset is already tracked).
    pub(crate) fn skip(&mut self, offset: i64) {
        self.seen = self.seen.max(offset + 1);
    }

    /// Replaces the group `parent` by its `halves` (not done): a split group is passed
    /// only through its halves. False if the tracker does not hold the parent.
    pub(crate) fn split(&mut self, parent: (i64, i64), halves: [(i64, i64); 2]) -> bool {
        if self.entries.remove(&parent).is_none() {
            return false;
        }
        for h in halves {
            self.entries.insert(h, false);
        }
        true
    }

    /// Marks the group `min..=max` done; false if the tracker does not hold it.
    pub(crate) fn mark_done(&mut self, min: i64, max: i64) -> bool {
        match self.entries.get_mut(&(min, max)) {
            Some(done) => {
                *done = true;
                true
            }
            None => false,
        }
    }

    /// The watermark: the offset to commit (the first one not known done).
    pub(crate) fn watermark(&mut self) -> i64 {
        loop {
            let Some((&(min, max), &done)) = self.entries.first_key_value() else {
                self.pos = self.pos.max(self.seen);
                break;
            };
            if max < self.pos {
                self.entries.pop_first();
                continue;
            }
            if min <= self.pos {
                if done {
                    self.pos = max + 1;
                    self.entries.pop_first();
                    continue;
                }
                break;
            }
            // A gap [pos, min): offsets the consumer read (below `seen`) hold no message.
            if min <= self.seen {
                self.pos = min;
                continue;
            }
            self.pos = self.pos.max(self.seen);
            break;
        }
        self.pos
    }

    /// The group holding the watermark (the first not done at or after it), as (min, max).
    pub(crate) fn oldest_unfinished(&mut self) -> Option<(i64, i64)> {
        let pos = self.watermark();
        self.entries
            .iter()
            .find(|((_, max), done)| *max >= pos && !**done)
            .map(|(&range, _)| range)
    }

    /// The offset after the last message put into a group (handed out) or skipped.
    pub(crate) fn seen(&self) -> i64 {
        self.seen
    }

    /// The watermark if it differs from the last one stored.
    pub(crate) fn watermark_to_store(&mut self) -> Option<i64> {
        let w = self.watermark();
        (self.stored != Some(w)).then_some(w)
    }

    /// Records that `offset` was stored.
    pub(crate) fn stored(&mut self, offset: i64) {
        self.stored = Some(offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_unfinished_group_is_the_one_holding_the_mark() {
        let mut t = Tracker::new(0);
        t.add_group(0, 9);
        t.add_group(10, 19);
        t.add_group(20, 29);
        assert_eq!(t.oldest_unfinished(), Some((0, 9)));
        t.mark_done(0, 9);
        t.mark_done(20, 29);
        assert_eq!(t.oldest_unfinished(), Some((10, 19)));
        t.mark_done(10, 19);
        assert_eq!((t.oldest_unfinished(), t.watermark()), (None, 30));
    }

    #[test]
    fn a_split_group_passes_only_through_both_halves() {
        let mut t = Tracker::new(0);
        t.add_group(0, 9);
        t.add_group(10, 19);
        t.mark_done(10, 19);
        // Offsets 0 and 9 hold no message: the halves' real offsets are 1..=4, 5..=8.
        assert!(t.split((0, 9), [(1, 4), (5, 8)]));
        assert!(!t.split((0, 9), [(1, 4), (5, 8)]));
        assert!(!t.mark_done(0, 9), "the parent is gone");
        assert_eq!(t.watermark(), 1);
        t.mark_done(5, 8);
        assert_eq!(t.watermark(), 1, "one half done is not enough");
        t.mark_done(1, 4);
        assert_eq!(t.watermark(), 20);
    }

    #[test]
    fn stops_at_first_group_not_done() {
        let mut t = Tracker::new(100);
        assert_eq!(t.watermark(), 100);
        t.add_group(100, 109);
        t.add_group(110, 119);
        t.add_group(120, 129);
        assert_eq!(t.watermark(), 100);
        assert!(t.mark_done(110, 119));
        assert_eq!(t.watermark(), 100, "a later done group does not move it");
        assert!(t.mark_done(100, 109));
        assert_eq!(t.watermark(), 120);
        assert!(t.mark_done(120, 129));
        assert_eq!(t.watermark(), 130);
        assert!(!t.mark_done(120, 129), "popped groups are no longer held");
    }

    #[test]
    fn mark_done_needs_the_exact_range() {
        let mut t = Tracker::new(0);
        t.add_group(0, 9);
        assert!(!t.mark_done(0, 8));
        assert!(!t.mark_done(1, 9));
        assert_eq!(t.watermark(), 0);
    }

    #[test]
    fn gaps_below_seen_are_empty_offsets() {
        // Offsets 10..=14 hold no message (transaction markers, compaction).
        let mut t = Tracker::new(0);
        t.add_group(0, 9);
        t.add_group(15, 20);
        t.mark_done(0, 9);
        assert_eq!(t.watermark(), 15);
        t.mark_done(15, 20);
        assert_eq!(t.watermark(), 21);
    }

    #[test]
    fn known_done_ranges_ahead_are_not_jumped_before_read() {
        // The status db knows 200..=299 done; the consumer starts at 100 and has read nothing.
        let mut t = Tracker::new(100);
        t.add_known(200, 299, true);
        assert_eq!(t.watermark(), 100, "100..199 were never handed out");
        t.add_group(100, 199);
        assert_eq!(t.watermark(), 100);
        t.mark_done(100, 199);
        assert_eq!(t.watermark(), 300, "the known done range joins the chain");
        // The consumer then reads 200..=299: below the watermark, so skipped; 300 is not.
        for o in 200..=299 {
            t.skip(o);
        }
        assert_eq!(t.watermark(), 300);
    }

    #[test]
    fn replayed_groups_hold_the_watermark() {
        // A replayed (not yet done) group is skipped by the consumer but holds the mark.
        let mut t = Tracker::new(0);
        t.add_known(0, 49, false);
        for o in 0..50 {
            t.skip(o);
        }
        t.add_group(50, 99);
        t.mark_done(50, 99);
        assert_eq!(t.watermark(), 0);
        t.mark_done(0, 49);
        assert_eq!(t.watermark(), 100);
    }

    #[test]
    fn groups_behind_the_start_are_ignored_and_it_never_goes_back() {
        // Someone else committed 500; an old unfinished group 100..199 does not pull it back.
        let mut t = Tracker::new(500);
        t.add_known(100, 199, false);
        assert_eq!(t.watermark(), 500);
        // A group straddling the start holds it at the start, not before.
        let mut t = Tracker::new(150);
        t.add_known(100, 199, false);
        assert_eq!(t.watermark(), 150);
        t.skip(160);
        assert_eq!(
            t.watermark(),
            150,
            "a skipped offset inside it does not move it"
        );
        t.mark_done(100, 199);
        assert_eq!(t.watermark(), 200, "the whole group is done");
    }

    #[test]
    fn skipped_messages_advance_when_everything_is_done() {
        let mut t = Tracker::new(0);
        t.add_known(0, 9, true);
        assert_eq!(
            t.watermark(),
            10,
            "a known done group at the start is passed"
        );
        for o in 0..10 {
            t.skip(o);
        }
        assert_eq!(t.watermark(), 10);
    }

    #[test]
    fn overlapping_groups_the_one_not_done_holds_the_mark() {
        // The status db has 100..=180 done and 100..=149 unfinished (other boundaries
        // after a rebalance): the unfinished one must hold the watermark at 100.
        let mut t = Tracker::new(100);
        t.add_known(100, 180, true);
        t.add_known(100, 149, false);
        for o in 100..=180 {
            t.skip(o);
        }
        assert_eq!(t.watermark(), 100);
        assert!(t.mark_done(100, 149));
        assert_eq!(t.watermark(), 181);
        // The same range known twice: not done wins.
        let mut t = Tracker::new(0);
        t.add_known(0, 9, false);
        t.add_known(0, 9, true);
        assert_eq!(t.watermark(), 0);
    }

    #[test]
    fn watermark_to_store_reports_changes_once() {
        let mut t = Tracker::new(0);
        t.add_group(0, 4);
        assert_eq!(t.watermark_to_store(), Some(0));
        t.stored(0);
        assert_eq!(t.watermark_to_store(), None);
        t.mark_done(0, 4);
        assert_eq!(t.watermark_to_store(), Some(5));
        t.stored(5);
        assert_eq!(t.watermark_to_store(), None);
        assert!(!t.mark_done(0, 4), "the done group is no longer held");
    }
}
