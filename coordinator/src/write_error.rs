//! [`WriteError`]: why a write to the group was not applied. A module of its own because
//! both the coordinator (`node`) and the group commit that batches its writes
//! (`group_commit`) produce it, and the HTTP API and the workers' calls turn it into
//! answers: none of them should have to import another for it.

use thiserror::Error;
use weir_core::ids::NodeId;

/// Why a write was not applied.
#[derive(Debug, Error)]
pub enum WriteError {
    /// This node is not the leader; the leader, when known, is at `leader_addr`.
    #[error("not the leader (leader: {leader_id:?})")]
    NotLeader {
        leader_id: Option<NodeId>,
        leader_addr: Option<String>,
    },
    /// The command was applied and refused by the state machine.
    #[error(transparent)]
    Refused(#[from] crate::state::Refusal),
    /// The group could not commit it; whether it will be applied later is unknown.
    #[error("the coordinator group is unavailable: {0}")]
    Unavailable(String),
}
