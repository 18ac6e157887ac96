//! openraft's type configuration for the coordinator group, in one place (as in openraft's
//! own examples): what a log entry carries, what applying it answers, and the runtime.

use crate::runtime::WeirRuntime;
use crate::state::{Command, CommandResult};
use std::io::Cursor;

openraft::declare_raft_types!(
    /// The coordinator group's Raft types.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = WeirRuntime,
);

/// The Raft handle of one coordinator.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log id of this group.
pub type LogId = openraft::LogId<u64>;
/// A log entry of this group.
pub type Entry = openraft::Entry<TypeConfig>;
/// Errors storage reports to openraft.
pub type StorageError = openraft::StorageError<u64>;
/// The group's membership as stored with the state machine.
pub type StoredMembership = openraft::StoredMembership<u64, openraft::BasicNode>;
/// Snapshot metadata of this group.
pub type SnapshotMeta = openraft::SnapshotMeta<u64, openraft::BasicNode>;
/// A snapshot of this group.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
