//! Two small state machines that keep a worker's reactions to repeated trouble bounded,
//! with time given by the caller (so the simulation replays them exactly):
//!
//! - [`LogLimiter`]: lets one warning of each kind per key through per interval and counts
//!   the rest, so that 600 jobs whose source topic is missing log a few lines a minute
//!   rather than thousands a second.
//! - [`FailureLimiter`]: the backoff of a partition that keeps failing, and the verdict
//!   that it has failed too often to go on (its job is then marked failed) instead of
//!   restarting for ever.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// How often one kind of warning about one key may be logged.
pub const LOG_REPEAT_INTERVAL_MS: u64 = 60_000;
/// Keys a [`LogLimiter`] remembers; when full, the ones not seen for longest are forgotten
/// (they may log once more).
pub const LOG_LIMITER_KEYS_MAX: usize = 4_096;

/// Rate-limits repeated log lines by key (a message kind and what it is about).
#[derive(Debug, Clone)]
pub struct LogLimiter<K: Ord + Clone> {
    interval_ms: u64,
    max_keys: usize,
    /// Per key: when it was last let through, and how many were held back since.
    seen: BTreeMap<K, (u64, u64)>,
}

impl<K: Ord + Clone> LogLimiter<K> {
    /// A limiter letting one line per key through every `interval_ms`, remembering at most
    /// `max_keys` keys.
    pub fn new(interval_ms: u64, max_keys: usize) -> Self {
        LogLimiter {
            interval_ms,
            max_keys: max_keys.max(1),
            seen: BTreeMap::new(),
        }
    }

    /// Whether a line about `key` may be logged at `now_ms`: `Some(n)` with the number of
    /// lines held back since the last one let through, or `None` to stay quiet.
    pub fn check(&mut self, key: &K, now_ms: u64) -> Option<u64> {
        if let Some((last_ms, held)) = self.seen.get_mut(key) {
            if now_ms.saturating_sub(*last_ms) < self.interval_ms {
                *held += 1;
                return None;
            }
            let held_back = *held;
            *last_ms = now_ms;
            *held = 0;
            return Some(held_back);
        }
        if self.seen.len() >= self.max_keys {
            // Forget the key let through longest ago.
            if let Some(oldest) = self
                .seen
                .iter()
                .min_by_key(|(_, (last_ms, _))| *last_ms)
                .map(|(k, _)| k.clone())
            {
                self.seen.remove(&oldest);
            }
        }
        self.seen.insert(key.clone(), (now_ms, 0));
        Some(0)
    }

    /// Forgets `key`: its next line is logged at once (the trouble went away).
    pub fn forget(&mut self, key: &K) {
        self.seen.remove(key);
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// Pause after a partition's first failure before it recovers again; doubles with each
/// failure in a row.
pub const FAILURE_BACKOFF_INITIAL_MS: u64 = 500;
/// Longest pause between recoveries of a failing partition.
pub const FAILURE_BACKOFF_MAX_MS: u64 = 30_000;
/// Failures within [`FAILURE_WINDOW_MS`] after which a partition gives up and its job is
/// marked failed. With the backoff above, ten failures in a row take about two and a half
/// minutes.
pub const FAILURES_IN_WINDOW_MAX: usize = 10;
/// The window over which failures are counted.
pub const FAILURE_WINDOW_MS: u64 = 600_000;

/// What a failing partition does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureVerdict {
    /// Recover again after this pause.
    RetryAfter(Duration),
    /// Too many failures: report the job failed (and, should that report not get
    /// through, try again after the pause).
    GiveUp(Duration),
}

/// Counts one partition's failures: exponential backoff while they come in a row, and a
/// verdict once too many came within the window.
#[derive(Debug, Clone, Default)]
pub struct FailureLimiter {
    /// When each counted failure within the window happened, oldest first; at most
    /// [`FAILURES_IN_WINDOW_MAX`].
    recent: VecDeque<u64>,
    /// Failures since the partition last made progress.
    in_a_row: u32,
}

impl FailureLimiter {
    /// A limiter with no failures.
    pub fn new() -> Self {
        FailureLimiter::default()
    }

    /// Records a failure at `now_ms`. `counts` is false for trouble outside the partition
    /// (the broker or the coordinators unreachable, a timeout): it backs off but never
    /// fails the job.
    pub fn on_failure(&mut self, now_ms: u64, counts: bool) -> FailureVerdict {
        self.in_a_row = self.in_a_row.saturating_add(1);
        let doublings = self.in_a_row.saturating_sub(1).min(16);
        let pause = FAILURE_BACKOFF_INITIAL_MS
            .saturating_mul(1 << doublings)
            .min(FAILURE_BACKOFF_MAX_MS);
        let pause = Duration::from_millis(pause);
        while self
            .recent
            .front()
            .is_some_and(|t| now_ms.saturating_sub(*t) >= FAILURE_WINDOW_MS)
        {
            self.recent.pop_front();
        }
        if counts {
            if self.recent.len() >= FAILURES_IN_WINDOW_MAX {
                self.recent.pop_front();
            }
            self.recent.push_back(now_ms);
        }
        if self.recent.len() >= FAILURES_IN_WINDOW_MAX {
            FailureVerdict::GiveUp(pause)
        } else {
            FailureVerdict::RetryAfter(pause)
        }
    }

    /// The partition made progress (a checkpoint committed): the backoff starts over. The
    /// failures in the window still count.
    pub fn on_progress(&mut self) {
        self.in_a_row = 0;
    }

    /// Failures since the last progress.
    pub fn in_a_row(&self) -> u32 {
        self.in_a_row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_key_and_interval_gets_through() {
        let mut limiter = LogLimiter::new(1_000, 8);
        let (a, b) = (("missing topic", 1), ("missing topic", 2));
        assert_eq!(limiter.check(&a, 0), Some(0));
        assert_eq!(limiter.check(&b, 0), Some(0));
        for t in 1..=999 {
            assert_eq!(limiter.check(&a, t), None);
        }
        assert_eq!(limiter.check(&a, 1_000), Some(999));
        assert_eq!(limiter.check(&a, 1_001), None);
        limiter.forget(&a);
        assert_eq!(limiter.check(&a, 1_002), Some(0));
    }

    #[test]
    fn the_limiter_remembers_a_bounded_number_of_keys() {
        let mut limiter = LogLimiter::new(1_000, 4);
        for key in 0..100u32 {
            limiter.check(&key, u64::from(key));
        }
        assert_eq!(limiter.len(), 4);
        // The newest are kept.
        assert_eq!(limiter.check(&99, 100), None);
    }

    /// 600 jobs with a missing source topic, reconciled every 250 ms for a minute: the
    /// flood of the hostile test (about 2,400 lines a second) becomes one line per job.
    #[test]
    fn six_hundred_failing_jobs_log_once_a_minute_each() {
        let mut limiter = LogLimiter::new(LOG_REPEAT_INTERVAL_MS, LOG_LIMITER_KEYS_MAX);
        let mut logged = 0;
        for round in 0..240u64 {
            for job in 0..600u64 {
                if limiter.check(&job, round * 250).is_some() {
                    logged += 1;
                }
            }
        }
        assert_eq!(logged, 600);
    }

    #[test]
    fn failures_back_off_exponentially_up_to_a_bound() {
        let mut f = FailureLimiter::new();
        let pauses: Vec<u64> = (0..8)
            .map(|i| match f.on_failure(i, false) {
                FailureVerdict::RetryAfter(d) => d.as_millis() as u64,
                FailureVerdict::GiveUp(_) => panic!("uncounted failures never give up"),
            })
            .collect();
        assert_eq!(
            pauses,
            [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]
        );
        f.on_progress();
        assert_eq!(
            f.on_failure(10, false),
            FailureVerdict::RetryAfter(Duration::from_millis(500))
        );
    }

    #[test]
    fn too_many_failures_within_the_window_give_up() {
        let mut f = FailureLimiter::new();
        let mut now = 0;
        for _ in 0..FAILURES_IN_WINDOW_MAX - 1 {
            let FailureVerdict::RetryAfter(pause) = f.on_failure(now, true) else {
                panic!("gave up too early");
            };
            now += pause.as_millis() as u64;
        }
        assert!(now < FAILURE_WINDOW_MS);
        assert!(matches!(f.on_failure(now, true), FailureVerdict::GiveUp(_)));
    }

    #[test]
    fn failures_spread_wider_than_the_window_never_give_up() {
        let mut f = FailureLimiter::new();
        for i in 0..100u64 {
            f.on_progress();
            let verdict = f.on_failure(i * (FAILURE_WINDOW_MS / 5), true);
            assert!(matches!(verdict, FailureVerdict::RetryAfter(_)), "{i}");
        }
    }
}
