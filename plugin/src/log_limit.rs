//! Rate limiting of repeated log lines: librdkafka repeats a connection error many
//! times a second while a broker is unreachable (the consumer's error callback and its
//! poll each see every one), which buried everything else at 40 lines a second.
//!
//! [`LogLimit::check`] lets the first line of a kind through, then suppresses the same
//! kind for [`WINDOW`]; the first one after the window goes through again, saying how
//! many were suppressed since the last line. A kind is the line's text with its digits
//! blanked out (so "1/1 brokers are down" and "0/1 brokers are down" are one kind) and
//! librdkafka's own ", N identical error(s) suppressed" left out.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// How long repeats of one kind of line are suppressed after one was logged.
pub const WINDOW: Duration = Duration::from_secs(30);

/// Kinds remembered at most (a flood of distinct lines must not grow memory).
const MAX_KINDS: usize = 256;

struct Kind {
    logged_at: Instant,
    suppressed: u64,
}

/// Decides which repeated lines are logged.
pub struct LogLimit {
    window: Duration,
    kinds: Mutex<HashMap<String, Kind>>,
}

impl Default for LogLimit {
    fn default() -> Self {
        LogLimit::new(WINDOW)
    }
}

impl LogLimit {
    /// A limiter suppressing repeats for `window`.
    pub fn new(window: Duration) -> Self {
        LogLimit {
            window,
            kinds: Mutex::new(HashMap::new()),
        }
    }

    /// `None` if `text` is to be suppressed; else `Some(n)`: log it, noting the `n`
    /// lines of its kind suppressed since the last one logged.
    pub fn check(&self, text: &str) -> Option<u64> {
        self.check_at(text, Instant::now())
    }

    fn check_at(&self, text: &str, now: Instant) -> Option<u64> {
        let key: String = text
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .collect();
        // librdkafka's own count of repeats is no new kind.
        let key = key.replace(", # identical error(s) suppressed", "");
        let mut kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = kinds.get_mut(&key) {
            if now.duration_since(k.logged_at) < self.window {
                k.suppressed += 1;
                return None;
            }
            let n = k.suppressed;
            k.logged_at = now;
            k.suppressed = 0;
            return Some(n);
        }
        if kinds.len() >= MAX_KINDS {
            let window = self.window;
            kinds.retain(|_, k| now.duration_since(k.logged_at) < window);
        }
        if kinds.len() < MAX_KINDS {
            kinds.insert(
                key,
                Kind {
                    logged_at: now,
                    suppressed: 0,
                },
            );
        }
        Some(0)
    }
}

/// The note appended to a line logged after `suppressed` repeats were not.
pub fn suppressed_note(suppressed: u64) -> String {
    if suppressed == 0 {
        String::new()
    } else {
        format!(
            " ({suppressed} more like it in the last {} s not logged)",
            WINDOW.as_secs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_then_one_per_window_with_the_count() {
        let l = LogLimit::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(
            l.check_at("AllBrokersDown: 1/1 brokers are down", t0),
            Some(0)
        );
        // Same kind (digits differ), within the window: suppressed.
        for i in 1..=39 {
            let t = t0 + Duration::from_millis(i * 25);
            assert_eq!(l.check_at("AllBrokersDown: 0/1 brokers are down", t), None);
        }
        assert_eq!(
            l.check_at("refused (after 0ms in state CONNECT)", t0),
            Some(0)
        );
        assert_eq!(
            l.check_at(
                "refused (after 0ms in state CONNECT, 3 identical error(s) suppressed)",
                t0
            ),
            None
        );
        // Another kind is not.
        assert_eq!(l.check_at("BrokerTransportFailure", t0), Some(0));
        // After the window: logged, with the count.
        assert_eq!(
            l.check_at(
                "AllBrokersDown: 1/1 brokers are down",
                t0 + Duration::from_secs(11)
            ),
            Some(39)
        );
        assert_eq!(suppressed_note(0), "");
        assert!(suppressed_note(39).contains("39 more"));
    }

    #[test]
    fn memory_is_bounded_by_distinct_kinds() {
        let l = LogLimit::new(Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..1000 {
            let text: String = std::iter::repeat_n('x', i % 500 + 1).collect();
            let _ = l.check_at(&text, t0);
        }
        assert!(l.kinds.lock().unwrap().len() <= MAX_KINDS);
    }
}
