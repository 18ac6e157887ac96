//! Log safety, checked while the simulation runs.
//!
//! - State machine safety: every node that applied index `i` applied the same entry (the
//!   same log id) there.
//! - Leader completeness: a node newly elected leader holds every entry any node had
//!   applied (hence committed) by then. The check runs at the instant the new leadership is
//!   first observed, which is the instant it was won: any later commit needs messages, and
//!   messages take simulated time. (A leadership restored from disk at startup was won
//!   earlier; `Checker` leaves it out.)

use crate::checker::LogLookup;
use std::collections::BTreeMap;
use weir_coordinator::raft_types::LogId;
use weir_core::ids::NodeId;

/// The applied log ids seen, by index, and the highest of them.
#[derive(Debug, Default)]
pub struct LogChecker {
    applied: BTreeMap<u64, (LogId, NodeId)>,
}

impl LogChecker {
    /// `node` has applied up to `last_applied`.
    pub fn observe_applied(&mut self, node: NodeId, last_applied: Option<LogId>) -> Option<String> {
        let applied = last_applied?;
        match self.applied.get(&applied.index) {
            Some((seen, by)) if *seen != applied => Some(format!(
                "n{node} applied {applied} at index {} where n{by} applied {seen}",
                applied.index
            )),
            Some(_) => None,
            None => {
                self.applied.insert(applied.index, (applied, node));
                None
            }
        }
    }

    /// The highest log id any node was seen to apply.
    pub fn committed_high(&self) -> Option<LogId> {
        self.applied.last_key_value().map(|(_, (id, _))| *id)
    }

    /// `node` was just elected leader of `term`; `lookup` reads its log.
    pub fn check_new_leader(
        &self,
        node: NodeId,
        term: u64,
        lookup: &dyn Fn(u64) -> LogLookup,
    ) -> Option<String> {
        let high = self.committed_high()?;
        match lookup(high.index) {
            LogLookup::Present(id) if id == high => None,
            LogLookup::Purged => None,
            LogLookup::Present(id) => Some(format!(
                "n{node}, new leader of term {term}, holds {id} where {high} was committed"
            )),
            LogLookup::Missing => Some(format!(
                "n{node}, new leader of term {term}, lacks committed entry {high}"
            )),
            LogLookup::Unreadable(e) => Some(format!(
                "n{node}, new leader of term {term}: cannot read its log: {e}"
            )),
        }
    }
}
