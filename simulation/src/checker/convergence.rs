//! Convergence, checked once the healed group has settled: every node's state machine
//! equals every other's, and the committed logs agree entry by entry wherever two nodes
//! both still hold an index (compaction may have purged it from some).

use super::{NodeLogs, NodeStates};
use std::collections::BTreeMap;
use weir_core::ids::NodeId;

/// Every node's state equals the first node's.
pub fn check_states_equal(states: &NodeStates) -> Vec<String> {
    let mut nodes = states.iter();
    let Some((first, reference)) = nodes.next() else {
        return vec!["no node to compare states of".to_string()];
    };
    nodes
        .filter(|(_, s)| *s != reference)
        .map(|(node, s)| {
            format!(
                "n{node}'s state differs from n{first}'s: {} vs {} tenants, {} vs {} jobs",
                s.tenants.len(),
                reference.tenants.len(),
                s.jobs.len(),
                reference.jobs.len()
            )
        })
        .collect()
}

/// Committed entries (as stored bytes, by index) agree across nodes.
pub fn check_logs_agree(logs: &NodeLogs) -> Vec<String> {
    let mut violations = Vec::new();
    let mut first_at: BTreeMap<u64, (NodeId, &[u8])> = BTreeMap::new();
    for (node, log) in logs {
        for (index, bytes) in log {
            match first_at.get(index) {
                Some((other, theirs)) if *theirs != bytes.as_slice() => {
                    violations.push(format!(
                        "n{node} and n{other} committed different entries at index {index}"
                    ));
                }
                Some(_) => {}
                None => {
                    first_at.insert(*index, (*node, bytes.as_slice()));
                }
            }
        }
    }
    violations
}
