//! The oracle for client writes, after TigerBeetle's VOPR: it knows what clients were told
//! and treats an answer that does not settle the outcome as "unknown", never as "failed".
//!
//! Each logical write creates one tenant with a unique name; a client retries it (same
//! name, fresh token hash per attempt, so each attempt is distinguishable in the log) until
//! an answer settles it. What settles it:
//! - `Acked`: the write applied; the tenant must end up with exactly that attempt's hash.
//! - `Exists` after earlier attempts: an earlier attempt applied; the tenant must end up
//!   with one of the earlier attempts' hashes.
//!
//! What does not: a timeout, "unavailable", and also "not the leader". openraft answers
//! `ForwardToLeader` both before appending and after a new leader truncated the entry from
//! this node's log, and a truncated entry can still be committed by a later leader that
//! holds a copy, so "not the leader" is as ambiguous as a timeout.
//!
//! The final state and the committed logs are then checked against the history: every
//! settled write is present, nothing appears that no client sent, and no attempt was
//! applied twice.

use std::collections::BTreeMap;
use weir_coordinator::state::{Command, ControlState};
use weir_core::ids::{NodeId, TenantName};

/// What one attempt of a write was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Committed and applied.
    Acked,
    /// Applied and refused: the tenant already exists.
    Exists,
    /// Refused for another reason (never expected for a fresh name).
    Refused(String),
    /// The node was not the leader (ambiguous, see the module doc).
    NotLeader,
    /// The group could not commit it in time (ambiguous).
    Unavailable,
    /// The client stopped waiting (ambiguous).
    TimedOut,
}

impl AttemptOutcome {
    /// The answer's name, without details.
    pub fn kind(&self) -> &'static str {
        match self {
            AttemptOutcome::Acked => "acked",
            AttemptOutcome::Exists => "exists",
            AttemptOutcome::Refused(_) => "refused",
            AttemptOutcome::NotLeader => "not-leader",
            AttemptOutcome::Unavailable => "unavailable",
            AttemptOutcome::TimedOut => "timed-out",
        }
    }
}

/// One attempt of a write.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The node the attempt was sent to.
    pub node: NodeId,
    /// The token hash it carried, unique to the attempt.
    pub token_hash: String,
    /// What it was told.
    pub outcome: AttemptOutcome,
}

/// Everything a client did for one logical write.
#[derive(Debug, Clone)]
pub struct WriteRecord {
    /// The tenant the write creates.
    pub name: TenantName,
    /// The creation time every attempt carries.
    pub at_ms: u64,
    /// Every attempt, in order.
    pub attempts: Vec<Attempt>,
}

/// How a write ended, as far as its client knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteVerdict {
    /// Attempt `n` was acknowledged.
    Acked(usize),
    /// Attempt `n` found the tenant already created by an earlier attempt.
    Exists(usize),
    /// No answer settled it.
    Unknown,
}

impl WriteRecord {
    /// The verdict the attempts add up to.
    pub fn verdict(&self) -> WriteVerdict {
        for (i, a) in self.attempts.iter().enumerate() {
            match a.outcome {
                AttemptOutcome::Acked => return WriteVerdict::Acked(i),
                AttemptOutcome::Exists => return WriteVerdict::Exists(i),
                _ => {}
            }
        }
        WriteVerdict::Unknown
    }

    fn hashes(&self) -> impl Iterator<Item = &str> {
        self.attempts.iter().map(|a| a.token_hash.as_str())
    }
}

/// Every write clients made, by tenant name.
#[derive(Debug, Default)]
pub struct WriteHistory {
    writes: BTreeMap<TenantName, WriteRecord>,
}

impl WriteHistory {
    /// Records an attempt of the write creating `name` at `at_ms`; returns a violation if
    /// the answer is impossible for what came before.
    pub fn record(&mut self, name: &TenantName, at_ms: u64, attempt: Attempt) -> Option<String> {
        let record = self
            .writes
            .entry(name.clone())
            .or_insert_with(|| WriteRecord {
                name: name.clone(),
                at_ms,
                attempts: Vec::new(),
            });
        let first = record.attempts.is_empty();
        let violation = match &attempt.outcome {
            AttemptOutcome::Exists if first => Some(format!(
                "tenant {name} was refused as existing on its first attempt (via n{})",
                attempt.node
            )),
            AttemptOutcome::Refused(why) => Some(format!(
                "tenant {name} was refused unexpectedly (via n{}): {why}",
                attempt.node
            )),
            _ if record.at_ms != at_ms => Some(format!(
                "tenant {name}: attempts carry different times {} and {at_ms}",
                record.at_ms
            )),
            _ => None,
        };
        record.attempts.push(attempt);
        violation
    }

    /// The writes, by name.
    pub fn writes(&self) -> impl Iterator<Item = &WriteRecord> {
        self.writes.values()
    }

    /// How many writes ended with each verdict: (acked or exists, unknown).
    pub fn settled_and_unknown(&self) -> (usize, usize) {
        let unknown = self
            .writes
            .values()
            .filter(|w| w.verdict() == WriteVerdict::Unknown)
            .count();
        (self.writes.len() - unknown, unknown)
    }

    /// For each write present in `state`, the answer its applied attempt (told apart by
    /// its token hash) got, counted by answer. Shows how often an ambiguous answer, "not
    /// the leader" above all, was given for a write that took effect.
    pub fn applied_attempt_answers(&self, state: &ControlState) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for record in self.writes.values() {
            let Some(hash) = state
                .tenants
                .get(&record.name)
                .and_then(|t| t.token_hashes.first())
            else {
                continue;
            };
            if let Some(applied) = record.attempts.iter().find(|a| &a.token_hash == hash) {
                *counts
                    .entry(applied.outcome.kind().to_string())
                    .or_insert(0) += 1;
            }
        }
        counts
    }

    /// Checks the final (converged) state against the history.
    pub fn check_final_state(&self, state: &ControlState) -> Vec<String> {
        let mut violations = Vec::new();
        for (name, tenant) in &state.tenants {
            let Some(record) = self.writes.get(name) else {
                violations.push(format!("tenant {name} exists but no client created it"));
                continue;
            };
            let hash = tenant.token_hashes.first().map(String::as_str);
            if tenant.token_hashes.len() != 1 || !record.hashes().any(|h| Some(h) == hash) {
                violations.push(format!(
                    "tenant {name} holds token hashes {:?} that no attempt sent",
                    tenant.token_hashes
                ));
            }
            if tenant.created_at_ms != record.at_ms {
                violations.push(format!(
                    "tenant {name} was created at {} but clients sent {}",
                    tenant.created_at_ms, record.at_ms
                ));
            }
        }
        for record in self.writes.values() {
            let name = &record.name;
            let hash = state
                .tenants
                .get(name)
                .and_then(|t| t.token_hashes.first())
                .map(String::as_str);
            match record.verdict() {
                WriteVerdict::Acked(i) => {
                    let acked = record.attempts[i].token_hash.as_str();
                    if hash != Some(acked) {
                        violations.push(format!(
                            "acknowledged write lost: tenant {name} (attempt {i} via n{}) is {}",
                            record.attempts[i].node,
                            if hash.is_some() {
                                "from another attempt"
                            } else {
                                "missing"
                            }
                        ));
                    }
                }
                WriteVerdict::Exists(i) => {
                    let earlier = record.attempts[..i]
                        .iter()
                        .any(|a| Some(a.token_hash.as_str()) == hash);
                    if !earlier {
                        violations.push(format!(
                            "tenant {name} was reported existing (attempt {i}) but ends {}",
                            if hash.is_some() {
                                "from a later attempt"
                            } else {
                                "missing"
                            }
                        ));
                    }
                }
                WriteVerdict::Unknown => {}
            }
        }
        violations
    }

    /// Checks one node's committed log: no attempt appears twice, and every tenant write in
    /// it was sent by a client.
    pub fn check_committed_log(&self, node: NodeId, log: &[(u64, Command)]) -> Vec<String> {
        let mut violations = Vec::new();
        let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
        for (index, command) in log {
            let Command::CreateTenant {
                name, token_hash, ..
            } = command
            else {
                continue;
            };
            let sent = self
                .writes
                .get(name)
                .is_some_and(|r| r.hashes().any(|h| h == token_hash));
            if !sent {
                violations.push(format!(
                    "n{node}'s log holds at index {index} a write of tenant {name} no client sent"
                ));
            }
            if let Some(first) = seen.insert(token_hash, *index) {
                violations.push(format!(
                    "n{node} applied one attempt for tenant {name} twice: indexes {first} and {index}"
                ));
            }
        }
        violations
    }
}
