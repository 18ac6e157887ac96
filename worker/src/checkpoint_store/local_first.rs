//! A worker's local copy of its partitions' state, in redb under `--data-dir`, in front of
//! the checkpoint store. At each checkpoint the snapshot is committed to the local redb
//! (fsynced) and then to the checkpoint store; recovery on the same machine reads the local
//! copy and goes to the checkpoint store only when the local one is missing (a new machine,
//! or a lost disk). The checkpoint store stays the source of truth: a snapshot counts as
//! durable only once `put` has returned from both.

use super::{prunable, CheckpointStore, StoreError};
use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use std::path::Path;
use std::sync::Arc;
use weir_core::ids::{JobId, PartitionId};

/// Snapshots by (job, partition, offset).
const SNAPSHOTS: TableDefinition<(u64, u32, i64), &[u8]> = TableDefinition::new("snapshots");

fn local(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("local state database: {e}"))
}

/// The checkpoint store `S` with a local redb copy in front of it.
#[derive(Debug, Clone)]
pub struct LocalFirst<S> {
    db: Arc<Database>,
    remote: S,
}

impl<S: CheckpointStore> LocalFirst<S> {
    /// Opens (or creates) `<data_dir>/state.redb` in front of `remote`.
    pub fn open(data_dir: &Path, remote: S) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
            path: data_dir.display().to_string(),
            source,
        })?;
        let db = Database::create(data_dir.join("state.redb")).map_err(local)?;
        let txn = db.begin_write().map_err(local)?;
        txn.open_table(SNAPSHOTS).map_err(local)?;
        txn.commit().map_err(local)?;
        Ok(LocalFirst {
            db: Arc::new(db),
            remote,
        })
    }

    fn offsets(&self, job: JobId, partition: PartitionId) -> Result<Vec<i64>, StoreError> {
        let txn = self.db.begin_read().map_err(local)?;
        let table = txn.open_table(SNAPSHOTS).map_err(local)?;
        let mut out = Vec::new();
        for item in table
            .range((job.0, partition.0, i64::MIN)..=(job.0, partition.0, i64::MAX))
            .map_err(local)?
        {
            let (k, _) = item.map_err(local)?;
            out.push(k.value().2);
        }
        Ok(out)
    }
}

impl<S: CheckpointStore> CheckpointStore for LocalFirst<S> {
    async fn put(
        &self,
        job: JobId,
        partition: PartitionId,
        offset: i64,
        snapshot: &[u8],
    ) -> Result<String, StoreError> {
        let mut txn = self.db.begin_write().map_err(local)?;
        txn.set_durability(Durability::Immediate).map_err(local)?;
        {
            let mut table = txn.open_table(SNAPSHOTS).map_err(local)?;
            table
                .insert((job.0, partition.0, offset), snapshot)
                .map_err(local)?;
        }
        txn.commit().map_err(local)?;
        self.remote.put(job, partition, offset, snapshot).await
    }

    async fn get(
        &self,
        job: JobId,
        partition: PartitionId,
        offset: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let found = {
            let txn = self.db.begin_read().map_err(local)?;
            let table = txn.open_table(SNAPSHOTS).map_err(local)?;
            let value = table.get((job.0, partition.0, offset)).map_err(local)?;
            value.map(|v| v.value().to_vec())
        };
        match found {
            Some(bytes) => Ok(Some(bytes)),
            None => self.remote.get(job, partition, offset).await,
        }
    }

    async fn newest_offset(
        &self,
        job: JobId,
        partition: PartitionId,
    ) -> Result<Option<i64>, StoreError> {
        // The checkpoint store is the source of truth; the local copy may lag behind it.
        self.remote.newest_offset(job, partition).await
    }

    async fn prune(
        &self,
        job: JobId,
        partition: PartitionId,
        offset: i64,
    ) -> Result<(), StoreError> {
        let offsets = self.offsets(job, partition)?;
        let doomed: Vec<i64> = prunable(&offsets, offset).collect();
        if !doomed.is_empty() {
            let txn = self.db.begin_write().map_err(local)?;
            {
                let mut table = txn.open_table(SNAPSHOTS).map_err(local)?;
                for o in doomed {
                    table.remove((job.0, partition.0, o)).map_err(local)?;
                }
            }
            txn.commit().map_err(local)?;
        }
        self.remote.prune(job, partition, offset).await
    }
}
