//! Event-time windows: which windows an event belongs to, whether it is late, the open
//! windows with their accumulators, and which fire when the watermark moves.
//!
//! Times are `i128` ms so that `end + lateness` and `t + gap` never overflow.

use super::aggregate::{Accumulator, Number};
use std::collections::BTreeMap;

/// The shape of a job's window, in ms.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape {
    Tumbling { size: i128 },
    Sliding { size: i128, slide: i128 },
    Session { gap: i128 },
}

/// A window that fired: its key, bounds and one accumulator per aggregate output.
#[derive(Debug)]
pub(crate) struct Fired {
    pub(crate) key: String,
    pub(crate) start: i128,
    pub(crate) end: i128,
    pub(crate) accumulators: Vec<Accumulator>,
}

/// One open session of a key.
#[derive(Debug)]
struct Session {
    start: i128,
    end: i128,
    accumulators: Vec<Accumulator>,
}

/// The open windows of one partition.
#[derive(Debug)]
pub(crate) struct Windows {
    shape: Shape,
    lateness: i128,
    aggregates: usize,
    /// Tumbling and sliding windows by (key, start); the end is start + size.
    fixed: BTreeMap<(String, i128), Vec<Accumulator>>,
    /// Sessions by key. Every stored session is open: each watermark change fires the rest.
    sessions: BTreeMap<String, Vec<Session>>,
}

impl Windows {
    pub(crate) fn new(shape: Shape, lateness: i128, aggregates: usize) -> Self {
        Windows {
            shape,
            lateness,
            aggregates,
            fixed: BTreeMap::new(),
            sessions: BTreeMap::new(),
        }
    }

    /// Whether a window ending at `end` is open under `watermark`.
    fn is_open(&self, end: i128, watermark: Option<i128>) -> bool {
        watermark.is_none_or(|w| w < end + self.lateness)
    }

    /// The starts of the tumbling or sliding windows holding `t`, latest first.
    fn fixed_starts(&self, t: i128) -> Vec<i128> {
        let (size, slide) = match self.shape {
            Shape::Tumbling { size } => (size, size),
            Shape::Sliding { size, slide } => (size, slide),
            Shape::Session { .. } => return Vec::new(),
        };
        let mut starts = Vec::new();
        let mut start = t.div_euclid(slide) * slide;
        while start > t - size {
            starts.push(start);
            start -= slide;
        }
        starts
    }

    /// Whether an event of `key` at `t` is late: none of its windows is open at arrival.
    pub(crate) fn is_late(&self, key: &str, t: i128, watermark: Option<i128>) -> bool {
        match self.shape {
            Shape::Tumbling { size } | Shape::Sliding { size, .. } => {
                let last_start = self.fixed_starts(t)[0];
                !self.is_open(last_start + size, watermark)
            }
            Shape::Session { gap } => {
                !self.is_open(t + gap, watermark) && self.overlapping(key, t, gap).is_empty()
            }
        }
    }

    /// The indexes of the open sessions of `key` the span `[t, t + gap)` overlaps.
    fn overlapping(&self, key: &str, t: i128, gap: i128) -> Vec<usize> {
        let Some(sessions) = self.sessions.get(key) else {
            return Vec::new();
        };
        (0..sessions.len())
            .filter(|&i| sessions[i].start < t + gap && t < sessions[i].end)
            .collect()
    }

    /// Adds an event that is not late, with one input per aggregate output (`None` for
    /// `count()`), to each of its open windows.
    pub(crate) fn add(
        &mut self,
        key: &str,
        t: i128,
        watermark: Option<i128>,
        inputs: &[Option<Number>],
    ) {
        debug_assert_eq!(inputs.len(), self.aggregates);
        match self.shape {
            Shape::Tumbling { size } | Shape::Sliding { size, .. } => {
                for start in self.fixed_starts(t) {
                    if !self.is_open(start + size, watermark) {
                        continue;
                    }
                    let accumulators = self
                        .fixed
                        .entry((key.to_string(), start))
                        .or_insert_with(|| vec![Accumulator::new(); inputs.len()]);
                    add_inputs(accumulators, inputs);
                }
            }
            Shape::Session { gap } => {
                let overlapping = self.overlapping(key, t, gap);
                let sessions = self.sessions.entry(key.to_string()).or_default();
                let mut merged = Session {
                    start: t,
                    end: t + gap,
                    accumulators: vec![Accumulator::new(); inputs.len()],
                };
                add_inputs(&mut merged.accumulators, inputs);
                // Remove from the back so the earlier indexes stay valid.
                for i in overlapping.into_iter().rev() {
                    let session = sessions.remove(i);
                    merged.start = merged.start.min(session.start);
                    merged.end = merged.end.max(session.end);
                    for (acc, other) in merged.accumulators.iter_mut().zip(&session.accumulators) {
                        acc.merge(other);
                    }
                }
                sessions.push(merged);
            }
        }
    }

    /// Removes every window the watermark `w` has passed (`w >= end + lateness`), in
    /// firing order: by end, then start, then key bytes.
    pub(crate) fn fire(&mut self, w: i128) -> Vec<Fired> {
        let mut fired = Vec::new();
        let lateness = self.lateness;
        match self.shape {
            Shape::Tumbling { size } | Shape::Sliding { size, .. } => {
                let due: Vec<(String, i128)> = self
                    .fixed
                    .keys()
                    .filter(|(_, start)| w >= start + size + lateness)
                    .cloned()
                    .collect();
                for (key, start) in due {
                    let accumulators = self.fixed.remove(&(key.clone(), start)).unwrap_or_default();
                    fired.push(Fired {
                        key,
                        start,
                        end: start + size,
                        accumulators,
                    });
                }
            }
            Shape::Session { .. } => {
                for (key, sessions) in self.sessions.iter_mut() {
                    let (due, open): (Vec<Session>, Vec<Session>) = std::mem::take(sessions)
                        .into_iter()
                        .partition(|s| w >= s.end + lateness);
                    *sessions = open;
                    fired.extend(due.into_iter().map(|s| Fired {
                        key: key.clone(),
                        start: s.start,
                        end: s.end,
                        accumulators: s.accumulators,
                    }));
                }
                self.sessions.retain(|_, sessions| !sessions.is_empty());
            }
        }
        fired.sort_by(|a, b| {
            (a.end, a.start, a.key.as_bytes()).cmp(&(b.end, b.start, b.key.as_bytes()))
        });
        fired
    }
}

fn add_inputs(accumulators: &mut [Accumulator], inputs: &[Option<Number>]) {
    for (acc, input) in accumulators.iter_mut().zip(inputs) {
        acc.add(*input);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_windows_hold_every_start_up_to_t() {
        let windows = Windows::new(Shape::Sliding { size: 10, slide: 3 }, 0, 0);
        assert_eq!(windows.fixed_starts(7), vec![6, 3, 0]);
        assert_eq!(windows.fixed_starts(-1), vec![-3, -6, -9]);
        let tumbling = Windows::new(Shape::Tumbling { size: 10 }, 0, 0);
        assert_eq!(tumbling.fixed_starts(-1), vec![-10]);
        assert_eq!(tumbling.fixed_starts(10), vec![10]);
    }

    #[test]
    fn sessions_merge_when_less_than_a_gap_apart() {
        let mut windows = Windows::new(Shape::Session { gap: 5 }, 0, 1);
        windows.add("k", 0, None, &[None]);
        windows.add("k", 12, None, &[None]);
        windows.add("k", 6, None, &[None]);
        assert_eq!(windows.sessions["k"].len(), 3);
        windows.add("k", 10, None, &[None]);
        let fired = windows.fire(100);
        let bounds: Vec<_> = fired.iter().map(|f| (f.start, f.end)).collect();
        assert_eq!(bounds, vec![(0, 5), (6, 17)]);
    }
}
