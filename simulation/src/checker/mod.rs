//! The invariants a simulated cluster must keep, one checker a file, behind one `Checker`
//! the simulation feeds as it runs.
//!
//! While running it sees every published Raft metrics sample of every node: election
//! safety (`election`), terms never decreasing (`terms`), and applied entries agreeing and
//! new leaders holding every committed entry (`log`); and every client write attempt
//! (`writes`). After the liveness phase it compares the converged nodes (`convergence`)
//! and checks the final state and committed logs against the write history; with a data
//! side, every savepoint's pinned snapshots are checked against the store (`savepoints`).
//!
//! The checker works on plain observations, so tests can feed it fabricated histories and
//! see that it catches what it claims to.

pub mod convergence;
pub mod election;
pub mod log;
pub mod savepoints;
pub mod terms;
pub mod writes;

pub use election::{ElectionChecker, ElectionSafety};
pub use log::LogChecker;
pub use terms::TermChecker;
pub use writes::{Attempt, AttemptOutcome, WriteHistory, WriteRecord, WriteVerdict};

use openraft::{ServerState, Vote};
use std::collections::{BTreeMap, BTreeSet};
use weir_coordinator::raft_types::{Entry, LogId};
use weir_coordinator::state::{Command, ControlState};
use weir_core::ids::NodeId;

/// A node's log entries as stored (JSON-encoded `Entry`s), by index.
pub type StoredLog = BTreeMap<u64, Vec<u8>>;
/// Each node's committed log.
pub type NodeLogs = BTreeMap<NodeId, StoredLog>;
/// Each node's state machine.
pub type NodeStates = BTreeMap<NodeId, ControlState>;

/// What a node's log holds at one index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLookup {
    /// An entry with this log id.
    Present(LogId),
    /// Nothing: the index was compacted into a snapshot.
    Purged,
    /// Nothing, and it was not compacted either.
    Missing,
    /// The log could not be read.
    Unreadable(String),
}

/// One node's Raft metrics at one moment: the part the invariants need.
#[derive(Debug, Clone)]
pub struct MetricsSample {
    /// The node sampled.
    pub node: NodeId,
    /// Which of the node's processes (incarnations) published it.
    pub process: u64,
    /// Its current term.
    pub term: u64,
    /// The vote it holds (for whom, in which term, granted by a quorum or not).
    pub vote: Vote<u64>,
    /// Leader, candidate, follower or learner.
    pub state: ServerState,
    /// The leader it knows of.
    pub current_leader: Option<NodeId>,
    /// The last entry it applied to its state machine.
    pub last_applied: Option<LogId>,
}

impl MetricsSample {
    /// Takes the sample from the metrics process `process` of the node published.
    pub fn of(m: &openraft::RaftMetrics<u64, openraft::BasicNode>, process: u64) -> Self {
        MetricsSample {
            node: m.id,
            process,
            term: m.current_term,
            vote: m.vote,
            state: m.state,
            current_leader: m.current_leader,
            last_applied: m.last_applied,
        }
    }

    /// Whether the node claims to be the leader.
    pub fn claims_leadership(&self) -> bool {
        self.state == ServerState::Leader && self.current_leader == Some(self.node)
    }
}

/// What an observation found worth a trace line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// The sample showed a (term, node) leadership not seen before.
    pub new_leader: bool,
    /// That leadership was not won in an election the checker saw: the process started up
    /// holding it (openraft restores a leader from its persisted committed vote).
    pub restored: bool,
}

/// All invariants, with the violations found so far (each prefixed with the simulated
/// time it was found at).
#[derive(Debug)]
pub struct Checker {
    election: ElectionChecker,
    terms: TermChecker,
    log: LogChecker,
    writes: WriteHistory,
    /// Processes seen in a state other than leader: a leadership they claim later was won
    /// in an election while observed.
    campaigned: BTreeSet<(NodeId, u64)>,
    violations: Vec<String>,
}

impl Checker {
    /// A checker enforcing `safety` for elections.
    pub fn new(safety: ElectionSafety) -> Self {
        Checker {
            election: ElectionChecker::new(safety),
            terms: TermChecker::default(),
            log: LogChecker::default(),
            writes: WriteHistory::default(),
            campaigned: BTreeSet::new(),
            violations: Vec::new(),
        }
    }

    fn flag(&mut self, at_ms: u64, violations: impl IntoIterator<Item = String>) {
        self.violations
            .extend(violations.into_iter().map(|v| format!("t={at_ms}ms {v}")));
    }

    /// Feeds one metrics sample; `lookup` reads the sampled node's log by index.
    pub fn observe(
        &mut self,
        at_ms: u64,
        sample: &MetricsSample,
        lookup: &dyn Fn(u64) -> LogLookup,
    ) -> Observed {
        let mut found = Vec::new();
        found.extend(self.terms.observe(sample.node, sample.term));
        found.extend(self.log.observe_applied(sample.node, sample.last_applied));
        let process = (sample.node, sample.process);
        let mut observed = Observed {
            new_leader: false,
            restored: false,
        };
        if !sample.claims_leadership() {
            self.campaigned.insert(process);
        } else {
            let (new, v) = self
                .election
                .observe_leader(sample.node, sample.term, &sample.vote);
            found.extend(v);
            observed.new_leader = new;
            // Completeness holds when a leadership is won. A leadership restored at startup
            // was won earlier, possibly in an election the checker never saw (the process
            // died on a failing disk the moment it won), and its log may have fallen
            // behind since; it is a stale leader that can no longer commit.
            observed.restored = new && !self.campaigned.contains(&process);
            if new && !observed.restored {
                found.extend(self.log.check_new_leader(sample.node, sample.term, lookup));
            }
        }
        self.flag(at_ms, found);
        observed
    }

    /// Records one client write attempt.
    pub fn record_attempt(
        &mut self,
        at_ms: u64,
        name: &weir_core::ids::TenantName,
        created_at_ms: u64,
        attempt: Attempt,
    ) {
        let v = self.writes.record(name, created_at_ms, attempt);
        self.flag(at_ms, v);
    }

    /// Records a violation found outside the checkers (a node that failed, a group that
    /// did not recover).
    pub fn violation(&mut self, at_ms: u64, violation: String) {
        self.flag(at_ms, [violation]);
    }

    /// Checks the settled group: equal states, agreeing logs, and both against the writes.
    /// `logs` holds each node's committed entries as stored (by index).
    pub fn check_final(&mut self, at_ms: u64, states: &NodeStates, logs: &NodeLogs) {
        let mut found = convergence::check_states_equal(states);
        found.extend(convergence::check_logs_agree(logs));
        if let Some(state) = states.values().next() {
            found.extend(self.writes.check_final_state(state));
        }
        for (node, log) in logs {
            match decode_commands(log) {
                Ok(commands) => found.extend(self.writes.check_committed_log(*node, &commands)),
                Err(e) => found.push(format!("n{node}'s log does not decode: {e}")),
            }
        }
        self.flag(at_ms, found);
    }

    /// The violations found so far.
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// The election checker, for its counts.
    pub fn election(&self) -> &ElectionChecker {
        &self.election
    }

    /// The write history.
    pub fn writes(&self) -> &WriteHistory {
        &self.writes
    }
}

/// The application commands in a log, by index.
pub fn decode_commands(log: &StoredLog) -> Result<Vec<(u64, Command)>, String> {
    let mut commands = Vec::new();
    for (index, bytes) in log {
        let entry: Entry =
            serde_json::from_slice(bytes).map_err(|e| format!("index {index}: {e}"))?;
        if let openraft::EntryPayload::Normal(command) = entry.payload {
            commands.push((*index, command));
        }
    }
    Ok(commands)
}
