//! The checkpoint store seam: where partition state snapshots live between a checkpoint and
//! a recovery. A snapshot is named by (job, partition, source offset): recovery looks up the
//! snapshot whose offset equals the offset Kafka committed, which is exactly the state the
//! committed outputs were computed from.
//!
//! `put` returns only once the snapshot is durable (step 1 of the exactly-once protocol
//! must finish before the Kafka commit). Production uses a directory (`dir`) behind a
//! worker-local redb copy of the state that each checkpoint updates key by key
//! (`local_first`); the simulation and unit tests use memory (`memory`); object stores can
//! implement the same trait.

mod dir;
mod local_first;
mod memory;
mod offload;

pub use dir::DirCheckpointStore;
pub use local_first::LocalFirst;
pub use memory::MemoryCheckpointStore;
pub use offload::{Offload, DISK_JOBS_MAX};

use crate::operators::{StateChanges, StateEntry};
use std::future::Future;
use thiserror::Error;
use weir_core::bugs::{planted, PlantedBug};
use weir_core::ids::{JobId, PartitionId};

/// A partition's state as a worker-local copy holds it, key by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalState {
    /// The checkpoint the state was taken at.
    pub checkpoint: u64,
    /// The parts of the state that are not per key.
    pub header: Vec<u8>,
    /// Every key's entry, in (section, key) order.
    pub entries: Vec<StateEntry>,
}

/// A checkpoint as the runner hands it to the store: the whole snapshot, and what changed
/// in the state since the previous checkpoint of the same runner.
#[derive(Debug, Clone)]
pub struct Checkpoint<'a> {
    /// The checkpoint's id.
    pub checkpoint: u64,
    /// The next source offset: what the snapshot is named by.
    pub offset: i64,
    /// The snapshot, as `put` takes it.
    pub snapshot: &'a [u8],
    /// The state's changes since `base_offset`, handed over (a store may write them on
    /// another thread).
    pub changes: StateChanges,
    /// The offset of the previous checkpoint these changes build on (`None` for the first
    /// checkpoint of a runner, whose changes are full).
    pub base_offset: Option<i64>,
}

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
    /// A stored file of a format newer than this code reads (written by a newer weir):
    /// refused rather than misread.
    #[error(
        "{path} has format version {found}, but this worker reads versions up to {supported}: \
         it was written by a newer weir; run that version (or newer) on it, or move the file \
         away to start from the checkpoint store"
    )]
    NewerFormat {
        path: String,
        found: u64,
        supported: u64,
    },
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
    /// `SNAPSHOTS_PER_PARTITION_KEPT` and never one whose offset is in `keep` (the
    /// offsets savepoints pin, sorted).
    fn prune(
        &self,
        job: JobId,
        partition: PartitionId,
        offset: i64,
        keep: &[i64],
    ) -> impl Future<Output = Result<(), StoreError>>;

    /// Stores a checkpoint durably, as `put` does with its snapshot; a store with a local
    /// copy of the state also applies the checkpoint's changes to it.
    fn put_checkpoint(
        &self,
        job: JobId,
        partition: PartitionId,
        checkpoint: Checkpoint<'_>,
    ) -> impl Future<Output = Result<String, StoreError>> {
        self.put(job, partition, checkpoint.offset, checkpoint.snapshot)
    }

    /// The partition's state at exactly `offset` from a worker-local copy, if this store
    /// keeps one and it is at that offset; recovery then needs no snapshot.
    fn get_local(
        &self,
        job: JobId,
        partition: PartitionId,
        offset: i64,
    ) -> impl Future<Output = Result<Option<LocalState>, StoreError>> {
        let _ = (job, partition, offset);
        async { Ok(None) }
    }
}

/// The offsets `prune(.., offset, keep)` deletes from a partition's sorted snapshot
/// offsets: the oldest ones before `offset` that `keep` does not pin, keeping at least
/// `SNAPSHOTS_PER_PARTITION_KEPT` unpinned ones.
pub(crate) fn prunable(sorted_offsets: &[i64], offset: i64, keep: &[i64]) -> Vec<i64> {
    // Planted bug: savepoint pins are forgotten and their snapshots pruned like any other.
    let keep = if planted(PlantedBug::SavepointSnapshotsPruned) {
        &[][..]
    } else {
        keep
    };
    let unpinned: Vec<i64> = sorted_offsets
        .iter()
        .copied()
        .filter(|o| !keep.contains(o))
        .collect();
    let removable = unpinned.len().saturating_sub(SNAPSHOTS_PER_PARTITION_KEPT);
    let pruned: Vec<i64> = unpinned
        .into_iter()
        .take(removable)
        .filter(|o| *o < offset)
        .collect();
    debug_assert!(
        planted(PlantedBug::SavepointSnapshotsPruned) || pruned.iter().all(|o| !keep.contains(o)),
        "a pinned snapshot pruned"
    );
    pruned
}

/// The last four bytes of a stored snapshot: its format and version. A reader that meets
/// another version refuses the file by name instead of misreading it.
pub(crate) const SNAPSHOT_FILE_TRAILER_V1: [u8; 4] = *b"WSN\x01";

/// The trailer of a stored snapshot: the CRC-32C of the snapshot bytes (little-endian),
/// then [`SNAPSHOT_FILE_TRAILER_V1`]. CRC-32C is hardware-accelerated on current CPUs and
/// detects the corruption that matters here (torn and flipped bytes); it is not a defence
/// against tampering.
pub(crate) fn snapshot_trailer(snapshot: &[u8]) -> [u8; 8] {
    let mut trailer = [0u8; 8];
    trailer[..4].copy_from_slice(&crc32c::crc32c(snapshot).to_le_bytes());
    trailer[4..].copy_from_slice(&SNAPSHOT_FILE_TRAILER_V1);
    trailer
}

/// The snapshot inside a stored file, if its trailer names this format and its checksum
/// holds.
pub(crate) fn snapshot_from_file(mut bytes: Vec<u8>) -> Option<Vec<u8>> {
    let body_len = bytes.len().checked_sub(8)?;
    let trailer = bytes.split_off(body_len);
    (trailer[..] == snapshot_trailer(&bytes)[..]).then_some(bytes)
}

#[cfg(test)]
mod format_tests;
#[cfg(test)]
mod tests;
