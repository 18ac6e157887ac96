//! Shrinking a failing seed: the same seed with scheduled faults left out, one at a time,
//! keeping each omission under which the run still fails (greedy delta debugging, one
//! pass). What remains is a schedule in which every fault left is needed for this seed to
//! fail — usually a handful, and a much shorter trace to read. The network's background
//! misbehaviour (drop, duplicate and delay rates) is part of the seed and stays.

use crate::scenario::{fault_schedule, run_seed, SimOptions, SimOutcome};
use std::collections::BTreeSet;

/// Runs shrinking may make; past this the best schedule so far is reported.
pub const SHRINK_RUNS_MAX: usize = 64;

/// A failing seed and the smallest schedule found that still fails.
#[derive(Debug, Clone)]
pub struct Shrunk {
    /// Faults in the seed's full schedule.
    pub scheduled: usize,
    /// The indices of the faults left out.
    pub skipped: BTreeSet<usize>,
    /// The run with those faults left out (failing).
    pub outcome: SimOutcome,
    /// Runs made while shrinking.
    pub runs: usize,
}

impl Shrunk {
    /// Faults still in the schedule.
    pub fn kept(&self) -> usize {
        self.scheduled - self.skipped.len()
    }
}

/// Shrinks `failing`, the outcome of `seed` run with `options`. Returns `None` if the
/// seed does not fail again (it would not be deterministic).
pub fn shrink(seed: u64, options: &SimOptions, failing: &SimOutcome) -> Option<Shrunk> {
    if failing.ok {
        return None;
    }
    let scheduled = fault_schedule(seed, options).len();
    let mut best = Shrunk {
        scheduled,
        skipped: options.skip_faults.clone(),
        outcome: failing.clone(),
        runs: 0,
    };
    for index in 0..scheduled {
        if best.runs >= SHRINK_RUNS_MAX {
            break;
        }
        if best.skipped.contains(&index) {
            continue;
        }
        let mut trial = options.clone();
        trial.skip_faults = best.skipped.clone();
        trial.skip_faults.insert(index);
        let outcome = run_seed(seed, &trial);
        best.runs += 1;
        if !outcome.ok {
            best.skipped = trial.skip_faults;
            best.outcome = outcome;
        }
    }
    Some(best)
}

/// The lines of `outcome`'s trace that lead to its first violation: the last `lines`
/// before it, and the violation itself.
pub fn trace_to_first_violation(outcome: &SimOutcome, lines: usize) -> Vec<String> {
    let end = outcome
        .trace
        .iter()
        .position(|l| l.contains("VIOLATION"))
        .map_or(outcome.trace.len(), |i| i + 1);
    let start = end.saturating_sub(lines + 1);
    outcome.trace[start..end].to_vec()
}
