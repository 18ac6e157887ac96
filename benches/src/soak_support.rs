//! Pure helpers of the `soak` binary, apart so that they have unit tests: how long to wait
//! before restarting a process that ended by itself ([`RestartBackoff`]), and a resident
//! memory figure that one noisy sample cannot sway ([`RssWindow`]).

use std::collections::BTreeMap;
use std::time::Duration;

/// The first restart delay after a process ends by itself (systemd's `RestartSec`).
pub const RESTART_DELAY_MIN: Duration = Duration::from_millis(500);
/// Each further exit doubles the delay, up to this.
pub const RESTART_DELAY_MAX: Duration = Duration::from_secs(8);
/// A process that stayed up this long before ending starts the delays over from
/// [`RESTART_DELAY_MIN`].
pub const RESTART_RESET_AFTER: Duration = Duration::from_secs(10);

/// The delays of a supervisor that restarts a process which ended by itself, as systemd's
/// `Restart=on-failure` with a doubling `RestartSec` would: a process that keeps ending
/// at once (a coordinator ending on a storage error while its disk stays full) is
/// restarted at most every [`RESTART_DELAY_MAX`], not in a tight loop.
#[derive(Debug, Clone)]
pub struct RestartBackoff {
    next: Duration,
}

impl Default for RestartBackoff {
    fn default() -> Self {
        RestartBackoff {
            next: RESTART_DELAY_MIN,
        }
    }
}

impl RestartBackoff {
    /// The process ended after `uptime`: how long to wait before starting it again.
    pub fn on_exit(&mut self, uptime: Duration) -> Duration {
        if uptime >= RESTART_RESET_AFTER {
            self.next = RESTART_DELAY_MIN;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(RESTART_DELAY_MAX);
        delay
    }
}

/// Samples of resident memory taken in one window.
pub const RSS_SAMPLES: u32 = 7;
/// Time between two samples of a window (so a window spans 30 s).
pub const RSS_SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Resident memory of every process sampled [`RSS_SAMPLES`] times, [`RSS_SAMPLE_EVERY`]
/// apart: its figure is the median, so that one sample taken while a process briefly
/// holds a peak (a batch in flight, a flood's request bodies) does not decide a check.
/// Times are offsets from the window's start, so the window is a pure value.
#[derive(Debug, Clone, Default)]
pub struct RssWindow {
    taken: u32,
    /// Per process: the incarnation of every sample and the samples in KiB.
    samples: BTreeMap<String, (Vec<u32>, Vec<u64>)>,
}

/// One process's figure of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RssFigure {
    /// Median of the samples, in KiB.
    pub median_kib: u64,
    /// The incarnation every sample was taken of, or `None` when the process was
    /// restarted within the window or missed a sample (then it cannot be compared).
    pub incarnation: Option<u32>,
}

impl RssWindow {
    /// Whether the next sample is due `since_start` after the window's start.
    pub fn due(&self, since_start: Duration) -> bool {
        self.taken < RSS_SAMPLES && since_start >= RSS_SAMPLE_EVERY * self.taken
    }

    /// Whether every sample has been taken.
    pub fn complete(&self) -> bool {
        self.taken >= RSS_SAMPLES
    }

    /// Records one round of samples: (process, its incarnation, RSS in KiB, if readable).
    pub fn record(&mut self, round: impl IntoIterator<Item = (String, u32, Option<u64>)>) {
        for (name, incarnation, kib) in round {
            let entry = self.samples.entry(name).or_default();
            entry.0.push(incarnation);
            if let Some(kib) = kib {
                entry.1.push(kib);
            }
        }
        self.taken += 1;
    }

    /// Each process's median, and whether all its samples came from one incarnation.
    pub fn figures(&self) -> BTreeMap<String, RssFigure> {
        self.samples
            .iter()
            .filter(|(_, (_, kib))| !kib.is_empty())
            .map(|(name, (incarnations, kib))| {
                let first = incarnations.first().copied();
                let one_incarnation = incarnations.iter().all(|i| Some(*i) == first);
                let all_sampled =
                    incarnations.len() as u32 == self.taken && kib.len() == incarnations.len();
                let figure = RssFigure {
                    median_kib: median(kib),
                    incarnation: first.filter(|_| one_incarnation && all_sampled),
                };
                (name.clone(), figure)
            })
            .collect()
    }

    /// The samples of one process, in KiB, in the order taken (for the log).
    pub fn samples_of(&self, name: &str) -> &[u64] {
        self.samples
            .get(name)
            .map_or(&[], |(_, kib)| kib.as_slice())
    }
}

/// The median of `values` (the lower middle one of an even count); 0 for none.
pub fn median(values: &[u64]) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    match sorted.len() {
        0 => 0,
        n => sorted[(n - 1) / 2],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_doubling_to_the_cap_while_a_process_keeps_ending_at_once() {
        let mut backoff = RestartBackoff::default();
        let delays: Vec<u64> = (0..8)
            .map(|_| backoff.on_exit(Duration::from_millis(300)).as_millis() as u64)
            .collect();
        assert_eq!(
            delays,
            [500, 1_000, 2_000, 4_000, 8_000, 8_000, 8_000, 8_000]
        );
    }

    #[test]
    fn a_process_that_stayed_up_long_enough_is_restarted_after_the_shortest_delay() {
        let mut backoff = RestartBackoff::default();
        for _ in 0..5 {
            backoff.on_exit(Duration::ZERO);
        }
        assert_eq!(backoff.on_exit(RESTART_RESET_AFTER), RESTART_DELAY_MIN);
        assert_eq!(
            backoff.on_exit(Duration::from_secs(1)),
            RESTART_DELAY_MIN * 2
        );
        assert_eq!(
            backoff.on_exit(RESTART_RESET_AFTER - Duration::from_millis(1)),
            RESTART_DELAY_MIN * 4
        );
    }

    #[test]
    fn the_median_ignores_one_outlier() {
        assert_eq!(median(&[]), 0);
        assert_eq!(median(&[7]), 7);
        assert_eq!(median(&[30, 31, 90, 30, 29, 31, 30]), 30);
        assert_eq!(median(&[4, 1, 3, 2]), 2);
    }

    fn round(w: &mut RssWindow, samples: &[(&str, u32, Option<u64>)]) {
        w.record(samples.iter().map(|(n, i, k)| (n.to_string(), *i, *k)));
    }

    #[test]
    fn a_window_takes_its_samples_on_time_and_then_stops() {
        let mut w = RssWindow::default();
        for k in 0..RSS_SAMPLES {
            let at = RSS_SAMPLE_EVERY * k;
            assert!(w.due(at), "sample {k} due at its time");
            round(&mut w, &[("a", 1, Some(100))]);
            assert!(!w.due(at), "not twice at once");
        }
        assert!(w.complete());
        assert!(!w.due(Duration::from_secs(3_600)));
    }

    #[test]
    fn a_process_restarted_or_unreadable_within_the_window_is_not_comparable() {
        let mut w = RssWindow::default();
        round(
            &mut w,
            &[
                ("kept", 1, Some(10)),
                ("restarted", 1, Some(10)),
                ("gone", 1, Some(10)),
            ],
        );
        round(
            &mut w,
            &[
                ("kept", 1, Some(50)),
                ("restarted", 2, Some(10)),
                ("gone", 1, None),
            ],
        );
        round(
            &mut w,
            &[
                ("kept", 1, Some(12)),
                ("restarted", 2, Some(10)),
                ("gone", 1, Some(10)),
            ],
        );
        let f = w.figures();
        assert_eq!(
            f["kept"],
            RssFigure {
                median_kib: 12,
                incarnation: Some(1)
            }
        );
        assert_eq!(f["restarted"].incarnation, None);
        assert_eq!(f["gone"].incarnation, None);
        assert_eq!(w.samples_of("kept"), [10, 50, 12]);
    }
}
