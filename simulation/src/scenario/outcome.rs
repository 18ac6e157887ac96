//! [`SimOutcome`]: what one run found, and how it prints.

use crate::checker::ElectionSafety;
use crate::network::NetStats;

/// What one run found.
#[derive(Debug, Clone)]
pub struct SimOutcome {
    /// The seed that drew the run.
    pub seed: u64,
    /// The `weir sim` command that replays this run exactly.
    pub replay: String,
    /// No invariant was violated.
    pub ok: bool,
    /// SHA-256 (hex) of the trace; equal for equal seeds and options.
    pub trace_hash: String,
    /// Every invariant violation found, stamped with simulated time.
    pub violations: Vec<String>,
    /// The event lines the digest covers (the first `trace::TRACE_LINES_KEPT_MAX`).
    pub trace: Vec<String>,
    /// Simulated time the run took.
    pub simulated_ms: u64,
    /// Writes whose clients learned they applied.
    pub writes_acked: usize,
    /// Writes whose outcome no answer settled.
    pub writes_unknown: usize,
    /// Writes that took effect through an attempt answered "not the leader" (legal: the
    /// answer is ambiguous; see `checker::writes`).
    pub writes_applied_though_not_leader: usize,
    /// Crashes, partitions and clock jumps injected.
    pub faults_injected: usize,
    /// Distinct (term, node) leaderships observed.
    pub leaderships: usize,
    /// Terms with more than one leader (legal only in openraft's advanced mode).
    pub terms_with_several_leaders: usize,
    /// The election rule that was enforced.
    pub election_safety: ElectionSafety,
    /// What the network did.
    pub net: NetStats,
    /// Records in the jobs' source topics, summed over jobs.
    pub job_input_records: usize,
    /// Records committed to the jobs' sink topics.
    pub job_outputs: usize,
    /// Records committed to the jobs' dead-letter topics.
    pub job_dead_letters: usize,
}

impl SimOutcome {
    /// The command that replays this seed.
    pub fn reproduce(&self) -> String {
        self.replay.clone()
    }
}

impl std::fmt::Display for SimOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "seed {}: {} in {} simulated ms; {} writes acked, {} unknown, {} applied though not-leader; {} faults; {} leaderships ({} terms with several); trace {}",
            self.seed,
            if self.ok { "ok" } else { "FAILED" },
            self.simulated_ms,
            self.writes_acked,
            self.writes_unknown,
            self.writes_applied_though_not_leader,
            self.faults_injected,
            self.leaderships,
            self.terms_with_several_leaders,
            self.trace_hash
        )?;
        for v in &self.violations {
            writeln!(f, "  violation: {v}")?;
        }
        if !self.ok {
            writeln!(f, "  replay: {}", self.reproduce())?;
        }
        Ok(())
    }
}
