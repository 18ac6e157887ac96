//! A worker's local copy of its partitions' state, in redb under `--data-dir`, in front of
//! the checkpoint store. At each checkpoint the keys that changed since the previous one
//! are written to the local redb (one fsynced transaction, with the offset and checkpoint
//! they belong to), and then the whole snapshot to the checkpoint store. Recovery on the
//! same machine rebuilds the state from the local copy when it is at exactly the committed
//! offset, and goes to the checkpoint store otherwise (a new machine, a lost disk, or a
//! local copy ahead of the last Kafka commit). The checkpoint store stays the source of
//! truth: a checkpoint counts as durable only once both writes returned.

use super::{Checkpoint, CheckpointStore, LocalState, Offload, StoreError};
use crate::operators::{StateChanges, StateEntry};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::Arc;
use weir_core::bugs::{planted, PlantedBug};
use weir_core::ids::{JobId, PartitionId};

/// Per (job, partition): the offset and checkpoint of the local state, and its header.
pub(super) const STATE_META: TableDefinition<(u64, u32), &[u8]> =
    TableDefinition::new("state_meta");
/// Per (job, partition, section, key): the key's state.
pub(super) const STATE_KEYS: TableDefinition<(u64, u32, u32, &str), &[u8]> =
    TableDefinition::new("state_keys");
/// Bytes of a meta value before the header: offset and checkpoint.
const META_FIXED_BYTES: usize = 16;
/// The local copy's format version, under [`FORMAT_VERSION_KEY`]. It covers the tables'
/// keys and the meta values' layout; the header and the keys' values are the pipeline
/// snapshot's pieces, which carry that format's own version in the header.
pub(super) const FORMAT: TableDefinition<&str, u64> = TableDefinition::new("local_format");
/// The key of the format version in [`FORMAT`].
const FORMAT_VERSION_KEY: &str = "version";
/// The local copy format this code writes, and the newest it reads. Bump it (and
/// regenerate `worker/tests/golden/local_copy_meta.bin`) when the layout changes.
pub const LOCAL_COPY_FORMAT_VERSION: u64 = 1;
/// The version of a local copy written before the version was recorded.
const UNRECORDED_FORMAT_VERSION: u64 = 1;
/// The local copy's file name inside the worker's data directory.
pub const LOCAL_COPY_FILE: &str = "state.redb";
/// How errors name a local copy opened over a backend, which has no file name.
const BACKEND_LOCAL_COPY_NAME: &str = "the worker's local state copy";
/// Bytes of the local copy's pages redb keeps in the process's memory (its cache, 1 GiB
/// unless set). redb keeps every page it writes or reads until the cache is full, so with
/// its default the cache held the whole file: a worker's memory grew with the state of
/// every partition it had ever run, and stayed after the partitions moved away (the soak's
/// worker, after it held all four partitions and handed two back). The copy is written once
/// a checkpoint and read only at recovery; the kernel's page cache serves the pages a write
/// reads again, outside the process.
pub const LOCAL_COPY_CACHE_BYTES: usize = 256 * 1024;

fn local(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("local state database: {e}"))
}

/// The checkpoint store `S` with a local redb copy of the state in front of it.
#[derive(Debug, Clone)]
pub struct LocalFirst<S> {
    db: Arc<Database>,
    remote: S,
    /// Whether a local write failed already (its warning is logged once).
    local_failed: Arc<std::sync::atomic::AtomicBool>,
    /// Where the redb reads and fsynced writes run: the blocking pool on a real disk, inline
    /// on the simulation's.
    offload: Offload,
}

/// The local state's place: its offset, checkpoint and header.
pub(super) struct Meta {
    pub(super) offset: i64,
    pub(super) checkpoint: u64,
    pub(super) header: Vec<u8>,
}

impl Meta {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(META_FIXED_BYTES + self.header.len());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.checkpoint.to_le_bytes());
        out.extend_from_slice(&self.header);
        out
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<Meta, StoreError> {
        if bytes.len() < META_FIXED_BYTES {
            return Err(StoreError::Corrupt("local state meta is truncated".into()));
        }
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[..8]);
        let offset = i64::from_le_bytes(word);
        word.copy_from_slice(&bytes[8..16]);
        Ok(Meta {
            offset,
            checkpoint: u64::from_le_bytes(word),
            header: bytes[META_FIXED_BYTES..].to_vec(),
        })
    }
}

/// The local copy's format version: the recorded one, or [`UNRECORDED_FORMAT_VERSION`]
/// for a copy that has none.
fn format_version(db: &Database) -> Result<u64, StoreError> {
    let txn = db.begin_read().map_err(local)?;
    match txn.open_table(FORMAT) {
        Ok(table) => Ok(table
            .get(FORMAT_VERSION_KEY)
            .map_err(local)?
            .map_or(UNRECORDED_FORMAT_VERSION, |v| v.value())),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(UNRECORDED_FORMAT_VERSION),
        Err(e) => Err(local(e)),
    }
}

/// The keys of one partition in `STATE_KEYS`: from its first key up to the next
/// partition's first.
fn partition_keys(
    job: JobId,
    partition: PartitionId,
) -> std::ops::Range<(u64, u32, u32, &'static str)> {
    let end = match partition.0.checked_add(1) {
        Some(next) => (job.0, next, 0, ""),
        None => (job.0.saturating_add(1), 0, 0, ""),
    };
    (job.0, partition.0, 0, "")..end
}

impl<S: CheckpointStore> LocalFirst<S> {
    /// Opens (or creates) `<data_dir>/state.redb` in front of `remote`, refusing a copy of
    /// a newer format than this code reads.
    #[allow(clippy::disallowed_methods)] // the production disk seam: the local redb's folder
    pub fn open(data_dir: &Path, remote: S) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
            path: data_dir.display().to_string(),
            source,
        })?;
        let path = data_dir.join(LOCAL_COPY_FILE);
        let db = Database::builder()
            .set_cache_size(LOCAL_COPY_CACHE_BYTES)
            .create(&path)
            .map_err(local)?;
        Ok(
            Self::with_database(db, remote, &path.display().to_string())?
                .with_offload(Offload::blocking_pool()),
        )
    }

    /// Opens (or creates) the local copy over any redb storage backend: the disk seam the
    /// simulation drives (a disk that loses unsynced writes when its machine crashes).
    pub fn with_backend(backend: impl redb::StorageBackend, remote: S) -> Result<Self, StoreError> {
        let db = Database::builder()
            .set_cache_size(LOCAL_COPY_CACHE_BYTES)
            .create_with_backend(backend)
            .map_err(local)?;
        Self::with_database(db, remote, BACKEND_LOCAL_COPY_NAME)
    }

    /// Checks the copy's format version (`path` names it in a refusal), then creates the
    /// tables on first use and records the version in a copy that has none yet (one written
    /// before versions existed is version 1), in the same transaction.
    fn with_database(db: Database, remote: S, path: &str) -> Result<Self, StoreError> {
        let found = format_version(&db)?;
        if found > LOCAL_COPY_FORMAT_VERSION {
            return Err(StoreError::NewerFormat {
                path: path.to_string(),
                found,
                supported: LOCAL_COPY_FORMAT_VERSION,
            });
        }
        let txn = db.begin_write().map_err(local)?;
        txn.open_table(STATE_META).map_err(local)?;
        txn.open_table(STATE_KEYS).map_err(local)?;
        {
            let mut format = txn.open_table(FORMAT).map_err(local)?;
            if format.get(FORMAT_VERSION_KEY).map_err(local)?.is_none() {
                format
                    .insert(FORMAT_VERSION_KEY, LOCAL_COPY_FORMAT_VERSION)
                    .map_err(local)?;
            }
        }
        txn.commit().map_err(local)?;
        Ok(LocalFirst {
            db: Arc::new(db),
            remote,
            local_failed: Arc::default(),
            offload: Offload::Inline,
        })
    }

    /// Bytes of the local copy's pages in the process's memory (redb's cache), for tests.
    #[cfg(test)]
    pub(super) fn cached_bytes(&self) -> usize {
        self.db.cache_stats().used_bytes()
    }

    /// The same store running its redb work where `offload` says (`open` uses the
    /// blocking pool; `with_backend` runs inline unless told otherwise).
    pub fn with_offload(mut self, offload: Offload) -> Self {
        self.offload = offload;
        self
    }
}

/// Where a checkpoint's changes go in the local copy.
struct LocalWrite {
    job: JobId,
    partition: PartitionId,
    checkpoint: u64,
    offset: i64,
    base_offset: Option<i64>,
    changes: StateChanges,
}

impl LocalWrite {
    /// Applies the changes to the local copy `db`, in one fsynced transaction.
    fn apply(self, db: &Database) -> Result<(), StoreError> {
        let LocalWrite {
            job,
            partition,
            checkpoint,
            offset,
            base_offset,
            changes,
        } = self;
        let mut txn = db.begin_write().map_err(local)?;
        txn.set_durability(Durability::Immediate).map_err(local)?;
        {
            let mut meta = txn.open_table(STATE_META).map_err(local)?;
            let mut keys = txn.open_table(STATE_KEYS).map_err(local)?;
            let current = match meta.get((job.0, partition.0)).map_err(local)? {
                Some(v) => Some(Meta::decode(v.value())?),
                None => None,
            };
            if changes.full {
                keys.retain_in(partition_keys(job, partition), |_, _| false)
                    .map_err(local)?;
            } else {
                let at = current.as_ref().map(|m| m.offset);
                if at.is_none() || at != base_offset {
                    return Err(StoreError::Unavailable(format!(
                        "the local state of job {job} partition {partition} is at offset {at:?}, \
                         not at {base_offset:?} where these changes start"
                    )));
                }
            }
            for entry in &changes.entries {
                let key = (job.0, partition.0, entry.section, entry.key.as_str());
                match &entry.value {
                    Some(value) => {
                        keys.insert(key, value.as_slice()).map_err(local)?;
                    }
                    None => {
                        keys.remove(key).map_err(local)?;
                    }
                }
            }
            let new_meta = Meta {
                offset,
                checkpoint,
                header: changes.header,
            };
            meta.insert((job.0, partition.0), new_meta.encode().as_slice())
                .map_err(local)?;
        }
        txn.commit().map_err(local)
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
        self.remote.put(job, partition, offset, snapshot).await
    }

    async fn put_checkpoint(
        &self,
        job: JobId,
        partition: PartitionId,
        checkpoint: Checkpoint<'_>,
    ) -> Result<String, StoreError> {
        let write = LocalWrite {
            job,
            partition,
            checkpoint: checkpoint.checkpoint,
            offset: checkpoint.offset,
            base_offset: checkpoint.base_offset,
            changes: checkpoint.changes,
        };
        let db = self.db.clone();
        if let Err(e) = self.offload.run(move || write.apply(&db)).await {
            // The local copy is a shortcut for recovery on this machine, not part of a
            // checkpoint's durability: the checkpoint store is. A copy not brought to this
            // offset is never restored (recovery takes it only at exactly the committed
            // offset), so the checkpoint goes on without it. Failing the checkpoint
            // instead turned a full disk (after which redb refuses every write until it is
            // reopened) into a partition failing until its job failed (soak run, seed 1).
            if !self
                .local_failed
                .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                tracing::warn!(job = %job, partition = %partition, error = %e, "local state copy not updated; recovery on this machine reads the checkpoint store (warned once)");
            } else {
                tracing::debug!(job = %job, partition = %partition, error = %e, "local state copy not updated");
            }
            metrics::counter!("weir_local_copy_failures_total").increment(1);
        }
        self.remote
            .put(job, partition, checkpoint.offset, checkpoint.snapshot)
            .await
    }

    async fn get(
        &self,
        job: JobId,
        partition: PartitionId,
        offset: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.remote.get(job, partition, offset).await
    }

    async fn get_local(
        &self,
        job: JobId,
        partition: PartitionId,
        offset: i64,
    ) -> Result<Option<LocalState>, StoreError> {
        let db = self.db.clone();
        self.offload
            .run(move || read_local(&db, job, partition, offset))
            .await
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
        keep: &[i64],
    ) -> Result<(), StoreError> {
        self.remote.prune(job, partition, offset, keep).await
    }
}

/// The local copy's state of (job, partition) if it is at exactly `offset`.
fn read_local(
    db: &Database,
    job: JobId,
    partition: PartitionId,
    offset: i64,
) -> Result<Option<LocalState>, StoreError> {
    let txn = db.begin_read().map_err(local)?;
    let meta = txn.open_table(STATE_META).map_err(local)?;
    let Some(found) = meta.get((job.0, partition.0)).map_err(local)? else {
        return Ok(None);
    };
    let found = Meta::decode(found.value())?;
    // Planted bug: trust the copy whatever offset it is at.
    if found.offset != offset && !planted(PlantedBug::LocalCopyAnyOffset) {
        return Ok(None);
    }
    let keys = txn.open_table(STATE_KEYS).map_err(local)?;
    let mut entries = Vec::new();
    for item in keys.range(partition_keys(job, partition)).map_err(local)? {
        let (k, v) = item.map_err(local)?;
        let (_, _, section, key) = k.value();
        entries.push(StateEntry {
            section,
            key: key.to_string(),
            value: Some(v.value().to_vec()),
        });
    }
    Ok(Some(LocalState {
        checkpoint: found.checkpoint,
        header: found.header,
        entries,
    }))
}
