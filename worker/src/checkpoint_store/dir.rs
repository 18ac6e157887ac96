//! Snapshots as files: `<root>/<job>/<partition>/<offset as 20 digits>.snap`, written to a
//! temporary file, fsynced, renamed into place, and the directory fsynced, so a snapshot is
//! either whole and durable or absent. Each file ends with an 8-byte trailer: a CRC-32C and the format version.
//!
//! Every write has a temporary file of its own (`<offset>.<process>-<write>.tmp`, created
//! new): a fenced owner still finishing its last checkpoint and the new owner may write
//! the same offset at once, and a shared temporary name would let one truncate or append
//! to the other's file just before it is renamed into place. Whichever rename lands last
//! wins, with a whole snapshot either way. Leftovers of writes that died are removed with
//! the snapshots they were for.

// The production side of the checkpoint-store seam: files are what this module is for.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use super::{prunable, snapshot_from_file, snapshot_trailer, CheckpointStore, Offload, StoreError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use weir_core::ids::{JobId, PartitionId};

/// Numbers this process's writes, for their temporary files' names.
static WRITES: AtomicU64 = AtomicU64::new(0);

/// The offset a snapshot's or temporary file's name starts with.
fn offset_of(file_name: &str) -> Option<i64> {
    file_name.split('.').next()?.parse().ok()
}

/// A checkpoint store in a local (or mounted) directory.
#[derive(Debug, Clone)]
pub struct DirCheckpointStore {
    root: PathBuf,
    /// File work runs on the blocking pool, off the partitions' actor threads.
    offload: Offload,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl DirCheckpointStore {
    /// A store rooted at `root` (created if missing). `file://` prefixes are accepted.
    pub fn new(root: impl AsRef<str>) -> Result<Self, StoreError> {
        let root = PathBuf::from(
            root.as_ref()
                .strip_prefix("file://")
                .unwrap_or(root.as_ref()),
        );
        std::fs::create_dir_all(&root).map_err(io(&root))?;
        Ok(DirCheckpointStore {
            root,
            offload: Offload::blocking_pool(),
        })
    }

    fn partition_dir(&self, job: JobId, partition: PartitionId) -> PathBuf {
        self.root.join(job.to_string()).join(partition.to_string())
    }

    fn file(&self, job: JobId, partition: PartitionId, offset: i64) -> PathBuf {
        self.partition_dir(job, partition)
            .join(format!("{offset:020}.snap"))
    }

    fn offsets(&self, job: JobId, partition: PartitionId) -> Result<Vec<i64>, StoreError> {
        let dir = self.partition_dir(job, partition);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&dir)(e)),
        };
        let mut offsets: Vec<i64> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".snap")?.parse().ok())
            .collect();
        offsets.sort_unstable();
        Ok(offsets)
    }
}

impl CheckpointStore for DirCheckpointStore {
    async fn put(
        &self,
        job: JobId,
        partition: PartitionId,
        offset: i64,
        snapshot: &[u8],
    ) -> Result<String, StoreError> {
        let (this, snapshot) = (self.clone(), snapshot.to_vec());
        self.offload
            .run(move || this.put_now(job, partition, offset, &snapshot))
            .await
    }

    async fn get(
        &self,
        job: JobId,
        partition: PartitionId,
        offset: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let this = self.clone();
        self.offload
            .run(move || this.get_now(job, partition, offset))
            .await
    }

    async fn newest_offset(
        &self,
        job: JobId,
        partition: PartitionId,
    ) -> Result<Option<i64>, StoreError> {
        let this = self.clone();
        self.offload
            .run(move || Ok(this.offsets(job, partition)?.last().copied()))
            .await
    }

    async fn prune(
        &self,
        job: JobId,
        partition: PartitionId,
        offset: i64,
        keep: &[i64],
    ) -> Result<(), StoreError> {
        let (this, keep) = (self.clone(), keep.to_vec());
        self.offload
            .run(move || this.prune_now(job, partition, offset, &keep))
            .await
    }
}

/// The file work itself, run where `offload` puts it.
impl DirCheckpointStore {
    fn put_now(
        &self,
        job: JobId,
        partition: PartitionId,
        offset: i64,
        snapshot: &[u8],
    ) -> Result<String, StoreError> {
        let dir = self.partition_dir(job, partition);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = self.file(job, partition, offset);
        let write = WRITES.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!("{offset:020}.{}-{write}.tmp", std::process::id()));
        {
            let mut f = std::fs::File::options()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(io(&tmp))?;
            f.write_all(snapshot).map_err(io(&tmp))?;
            f.write_all(&snapshot_trailer(snapshot)).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dir))?;
        Ok(format!("file://{}", path.display()))
    }

    fn get_now(
        &self,
        job: JobId,
        partition: PartitionId,
        offset: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.file(job, partition, offset);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        match snapshot_from_file(bytes) {
            Some(snapshot) => Ok(Some(snapshot)),
            None => Err(StoreError::Corrupt(path.display().to_string())),
        }
    }

    fn prune_now(
        &self,
        job: JobId,
        partition: PartitionId,
        offset: i64,
        keep: &[i64],
    ) -> Result<(), StoreError> {
        let offsets = self.offsets(job, partition)?;
        let pruned = prunable(&offsets, offset, keep);
        for &o in &pruned {
            let path = self.file(job, partition, o);
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        let Some(oldest_kept) = offsets.iter().copied().find(|o| !pruned.contains(o)) else {
            return Ok(());
        };
        // Temporary files of writes that died, for offsets older than any snapshot kept.
        let dir = self.partition_dir(job, partition);
        let entries = std::fs::read_dir(&dir).map_err(io(&dir))?;
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".tmp") && offset_of(name).is_some_and(|o| o < oldest_kept) {
                let path = entry.path();
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        Ok(())
    }
}
