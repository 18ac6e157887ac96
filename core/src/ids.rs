//! Newtypes for the identifiers weir passes around, so the compiler catches a partition
//! passed where an epoch was meant.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A coordinator's Raft node id, as given by `--id`.
pub type NodeId = u64;

/// A job's cluster-wide id, assigned by the state machine in submission order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub u64);

/// A source partition of a job (the Kafka partition number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PartitionId(pub u32);

/// The generation of one (job, partition) assignment. It grows by one every time the
/// partition changes owner; a write carrying an older epoch comes from a zombie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Epoch(pub u64);

/// A checkpoint's number within one (job, partition); grows by one per checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CheckpointId(pub u64);

/// A savepoint's number within its job, assigned by the state machine in request order
/// (1, 2, ...); never reused, also after a savepoint is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SavepointId(pub u64);

/// A worker's name, as given by `weir worker --id`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkerId(pub String);

/// A tenant's name; jobs and tokens belong to exactly one tenant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantName(pub String);

impl WorkerId {
    /// Whether `id` may name a worker: 1 to 128 of `A-Z a-z 0-9 . _ -`, so that it is one
    /// path segment of the API's URLs as it is.
    pub fn is_valid(id: &str) -> bool {
        (1..=128).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    }
}

impl Epoch {
    /// The epoch a fresh assignment starts with.
    pub const FIRST: Epoch = Epoch(1);

    /// The epoch of the next owner of the same partition.
    pub fn next(self) -> Epoch {
        Epoch(self.0 + 1)
    }
}

macro_rules! display_inner {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    )*};
}
display_inner!(
    JobId,
    PartitionId,
    Epoch,
    CheckpointId,
    SavepointId,
    WorkerId,
    TenantName
);

impl From<&str> for WorkerId {
    fn from(s: &str) -> Self {
        WorkerId(s.to_string())
    }
}

impl From<&str> for TenantName {
    fn from(s: &str) -> Self {
        TenantName(s.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_grow_by_one() {
        assert_eq!(Epoch::FIRST.next(), Epoch(2));
        assert!(Epoch(3) > Epoch(2));
    }

    #[test]
    fn ids_serialize_as_their_inner_value() {
        assert_eq!(serde_json::to_string(&JobId(7)).unwrap(), "7");
        assert_eq!(
            serde_json::to_string(&WorkerId::from("w1")).unwrap(),
            "\"w1\""
        );
    }
}
