//! Snapshots in memory, for the simulation and unit tests. Shared between clones, so a
//! restarted worker in the same process finds what its predecessor stored.

use super::{prunable, CheckpointStore, StoreError};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use weir_core::ids::{JobId, PartitionId};

type Key = (JobId, PartitionId, i64);

/// An in-memory checkpoint store.
#[derive(Debug, Clone, Default)]
pub struct MemoryCheckpointStore {
    snapshots: Arc<Mutex<BTreeMap<Key, Vec<u8>>>>,
}

impl MemoryCheckpointStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Snapshots currently held, for tests.
    pub fn len(&self) -> usize {
        self.snapshots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Whether the store holds no snapshot.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl CheckpointStore for MemoryCheckpointStore {
    async fn put(
        &self,
        job: JobId,
        partition: PartitionId,
        offset: i64,
        snapshot: &[u8],
    ) -> Result<String, StoreError> {
        self.snapshots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((job, partition, offset), snapshot.to_vec());
        Ok(format!("memory://{job}/{partition}/{offset}"))
    }

    async fn get(
        &self,
        job: JobId,
        partition: PartitionId,
        offset: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .snapshots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(job, partition, offset))
            .cloned())
    }

    async fn newest_offset(
        &self,
        job: JobId,
        partition: PartitionId,
    ) -> Result<Option<i64>, StoreError> {
        Ok(self
            .snapshots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .range((job, partition, i64::MIN)..=(job, partition, i64::MAX))
            .next_back()
            .map(|((_, _, o), _)| *o))
    }

    async fn prune(
        &self,
        job: JobId,
        partition: PartitionId,
        offset: i64,
        keep: &[i64],
    ) -> Result<(), StoreError> {
        let mut map = self.snapshots.lock().unwrap_or_else(|e| e.into_inner());
        let offsets: Vec<i64> = map
            .range((job, partition, i64::MIN)..=(job, partition, i64::MAX))
            .map(|((_, _, o), _)| *o)
            .collect();
        for o in prunable(&offsets, offset, keep) {
            map.remove(&(job, partition, o));
        }
        Ok(())
    }
}
