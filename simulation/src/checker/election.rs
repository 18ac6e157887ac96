//! Election safety: who may lead a term.
//!
//! Standard Raft allows at most one leader per term. openraft 0.9 in its default
//! ("advanced") mode identifies a leader by (term, node id) with a total order, so a later
//! candidate with a higher node id can be elected in the same term as an earlier one; only
//! the last can commit. Which rule holds depends on whether openraft was built with its
//! `single-term-leader` feature, so the checker is told which one to enforce and
//! `ElectionSafety::of_openraft_build` reads it off the compiled types.
//!
//! Either way, a node that claims leadership must hold a vote for itself that a quorum
//! granted (a committed vote) for the term it claims.

use openraft::Vote;
use std::collections::{BTreeMap, BTreeSet};
use weir_core::ids::NodeId;

/// Which leader-uniqueness rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionSafety {
    /// Standard Raft (openraft's `single-term-leader`): at most one leader per term.
    OneLeaderPerTerm,
    /// openraft's default: at most one leader per (term, node id); several per term allowed.
    OneLeaderPerLeaderId,
}

impl ElectionSafety {
    /// The rule of the openraft this crate was compiled against. In standard mode a
    /// committed leader id is the term alone; in advanced mode it also holds the node id.
    pub fn of_openraft_build() -> Self {
        let committed_leader_id = std::mem::size_of::<openraft::CommittedLeaderId<u64>>();
        if committed_leader_id == std::mem::size_of::<u64>() {
            ElectionSafety::OneLeaderPerTerm
        } else {
            ElectionSafety::OneLeaderPerLeaderId
        }
    }
}

/// Records every leadership claim seen and flags the illegal ones.
#[derive(Debug)]
pub struct ElectionChecker {
    safety: ElectionSafety,
    /// Nodes seen leading each term.
    leaders: BTreeMap<u64, BTreeSet<NodeId>>,
}

impl ElectionChecker {
    /// A checker enforcing `safety`.
    pub fn new(safety: ElectionSafety) -> Self {
        ElectionChecker {
            safety,
            leaders: BTreeMap::new(),
        }
    }

    /// The rule enforced.
    pub fn safety(&self) -> ElectionSafety {
        self.safety
    }

    /// `node` claims to lead `term` holding `vote`. Returns whether the claim is new (not
    /// seen before for this term and node), and any violations.
    pub fn observe_leader(
        &mut self,
        node: NodeId,
        term: u64,
        vote: &Vote<u64>,
    ) -> (bool, Vec<String>) {
        let mut violations = Vec::new();
        if vote.leader_id().voted_for() != Some(node) || !vote.is_committed() {
            violations.push(format!(
                "n{node} claims to lead term {term} holding vote {vote}, not a committed vote for itself"
            ));
        }
        if vote.leader_id().get_term() != term {
            violations.push(format!(
                "n{node} claims to lead term {term} holding a vote of term {}",
                vote.leader_id().get_term()
            ));
        }
        let leaders = self.leaders.entry(term).or_default();
        let new = leaders.insert(node);
        if new && self.safety == ElectionSafety::OneLeaderPerTerm && leaders.len() > 1 {
            violations.push(format!(
                "two leaders in term {term}: nodes {:?}",
                leaders.iter().collect::<Vec<_>>()
            ));
        }
        (new, violations)
    }

    /// Distinct (term, node) leaderships seen.
    pub fn leaderships(&self) -> usize {
        self.leaders.values().map(BTreeSet::len).sum()
    }

    /// Terms in which more than one node led (legal only in openraft's advanced mode).
    pub fn terms_with_several_leaders(&self) -> usize {
        self.leaders.values().filter(|l| l.len() > 1).count()
    }
}
