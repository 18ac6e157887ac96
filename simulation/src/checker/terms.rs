//! Terms never go backwards on a node, not even across a crash and restart: the vote (and
//! with it the term) is fsynced before openraft acts on it, so a restarted node must come
//! back with a term at least as high as any it showed before.

use std::collections::BTreeMap;
use weir_core::ids::NodeId;

/// The highest term each node has shown.
#[derive(Debug, Default)]
pub struct TermChecker {
    highest: BTreeMap<NodeId, u64>,
}

impl TermChecker {
    /// `node` shows `term`; a violation if it showed a higher one before.
    pub fn observe(&mut self, node: NodeId, term: u64) -> Option<String> {
        let highest = self.highest.entry(node).or_insert(term);
        if term < *highest {
            return Some(format!(
                "n{node}'s term went back from {} to {term}",
                *highest
            ));
        }
        *highest = term;
        None
    }
}
