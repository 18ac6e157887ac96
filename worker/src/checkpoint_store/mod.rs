//! The checkpoint store seam: where partition state snapshots live between a checkpoint and
//! a recovery. A snapshot is named by (job, partition, source offset): recovery looks up the
//! snapshot whose offset equals the offset Kafka committed, which is exactly the state the
//! committed outputs were computed from.
//!
//! `put` returns only once the snapshot is durable (step 1 of the exactly-once protocol
//! must finish before the Kafka commit). Production uses a directory (`dir`); the
//! simulation and unit tests use memory (`memory`); object stores can implement the same
//! trait.

mod dir;
mod local_first;
mod memory;

pub use dir::DirCheckpointStore;
pub use local_first::LocalFirst;
pub use memory::MemoryCheckpointStore;

use std::future::Future;
use thiserror::Error;
use weir_core::ids::{JobId, PartitionId};

/// Snapshots kept per partition; older ones are deleted after a newer commit.
pub const SNAPSHOTS_PER_PARTITION_KEPT: usize = 4;

/// Why the store failed.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("checkpoint store I/O failed at {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("snapshot {0} is corrupt")]
    Corrupt(String),
    #[error("checkpoint store unavailable: {0}")]
    Unavailable(String),
}

/// Durable storage for partition snapshots.
pub trait CheckpointStore: Clone + 'static {
    /// Stores the snapshot taken at `offset` (the next source offset to read) durably and
    /// returns its location.
    fn put(
        &self,
        job: JobId,
        partition: PartitionId,
        offset: i64,
        snapshot: &[u8],
    ) -> impl Future<Output = Result<String, StoreError>>;

    /// The snapshot taken at exactly `offset`, if there is one.
    fn get(
        &self,
        job: JobId,
        partition: PartitionId,
        offset: i64,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>>;

    /// The offset of the partition's newest stored snapshot, if any. Recovery names it when
    /// the committed offset has no snapshot; it never restores from it (the newest snapshot
    /// may belong to a checkpoint whose Kafka commit never happened).
    fn newest_offset(
        &self,
        job: JobId,
        partition: PartitionId,
    ) -> impl Future<Output = Result<Option<i64>, StoreError>>;

    /// Deletes every snapshot of the partition taken before `offset`, keeping at least
    /// `SNAPSHOTS_PER_PARTITION_KEPT`.
    fn prune(
        &self,
        job: JobId,
        partition: PartitionId,
        offset: i64,
    ) -> impl Future<Output = Result<(), StoreError>>;
}

/// The offsets `prune(.., offset)` deletes from a partition's sorted snapshot offsets: the
/// oldest ones before `offset`, keeping at least `SNAPSHOTS_PER_PARTITION_KEPT`.
pub(crate) fn prunable(sorted_offsets: &[i64], offset: i64) -> impl Iterator<Item = i64> + '_ {
    let removable = sorted_offsets
        .len()
        .saturating_sub(SNAPSHOTS_PER_PARTITION_KEPT);
    sorted_offsets
        .iter()
        .copied()
        .take(removable)
        .filter(move |o| *o < offset)
}

/// A checksum over snapshot bytes, stored with them so corruption is detected on restore.
pub(crate) fn checksum(bytes: &[u8]) -> u64 {
    // FNV-1a: no dependency, and corruption detection, not security, is the point.
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests;
