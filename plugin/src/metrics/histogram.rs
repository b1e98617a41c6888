//! A histogram of seconds kept with atomics: fixed buckets, one relaxed add per
//! observation, so that the producer's delivery callback can observe every message.
//!
//! Invariants: [`BUCKETS_SECONDS`] ascend; a snapshot's buckets are cumulative, without
//! `+Inf` (that is its count), as plugin-api's `HistogramValue` wants.

use std::sync::atomic::{AtomicU64, Ordering};

use pseidon_plugin_api::metrics::HistogramValue;

/// Upper bounds, seconds: 1 ms to 30 s.
pub(crate) const BUCKETS_SECONDS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Observations in [`BUCKETS_SECONDS`].
#[derive(Default)]
pub(crate) struct Histogram {
    /// Per bucket (not cumulative); the last slot is above the last bound.
    counts: [AtomicU64; BUCKETS_SECONDS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Observes `micros` microseconds.
    pub(crate) fn observe_micros(&self, micros: u64) {
        let seconds = micros as f64 / 1e6;
        let slot = BUCKETS_SECONDS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(BUCKETS_SECONDS.len());
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The cumulative value now.
    pub(crate) fn snapshot(&self) -> HistogramValue {
        let mut cumulative = 0u64;
        let mut buckets = Vec::with_capacity(BUCKETS_SECONDS.len());
        for (bound, count) in BUCKETS_SECONDS.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            buckets.push((*bound, cumulative));
        }
        let count = cumulative + self.counts[BUCKETS_SECONDS.len()].load(Ordering::Relaxed);
        HistogramValue {
            buckets,
            sum: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_the_overflow_only_counts() {
        let h = Histogram::default();
        h.observe_micros(500); // 0.5 ms
        h.observe_micros(3_000); // 3 ms
        h.observe_micros(60_000_000); // 60 s
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets[0], (0.001, 1));
        assert_eq!(s.buckets[2], (0.005, 2));
        assert_eq!(s.buckets.last().copied(), Some((30.0, 2)));
        assert!((s.sum - 60.0035).abs() < 1e-9);
    }
}
