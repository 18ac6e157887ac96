//! Snapshots as files: `<root>/<job>/<partition>/<offset as 20 digits>.snap`, written to a
//! temporary file, fsynced, renamed into place, and the directory fsynced, so a snapshot is
//! either whole and durable or absent. Each file ends with an 8-byte checksum.

use super::{checksum, prunable, CheckpointStore, StoreError};
use std::io::Write;
use std::path::{Path, PathBuf};
use weir_core::ids::{JobId, PartitionId};

/// A checkpoint store in a local (or mounted) directory.
#[derive(Debug, Clone)]
pub struct DirCheckpointStore {
    root: PathBuf,
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
        Ok(DirCheckpointStore { root })
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
        let dir = self.partition_dir(job, partition);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = self.file(job, partition, offset);
        let tmp = path.with_extension("tmp");
        {
            let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(snapshot).map_err(io(&tmp))?;
            f.write_all(&checksum(snapshot).to_le_bytes())
                .map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dir))?;
        Ok(format!("file://{}", path.display()))
    }

    async fn get(
        &self,
        job: JobId,
        partition: PartitionId,
        offset: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.file(job, partition, offset);
        let mut bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        if bytes.len() < 8 {
            return Err(StoreError::Corrupt(path.display().to_string()));
        }
        let tail = bytes.split_off(bytes.len() - 8);
        let stored = u64::from_le_bytes(
            tail.try_into()
                .map_err(|_| StoreError::Corrupt(path.display().to_string()))?,
        );
        if stored != checksum(&bytes) {
            return Err(StoreError::Corrupt(path.display().to_string()));
        }
        Ok(Some(bytes))
    }

    async fn newest_offset(
        &self,
        job: JobId,
        partition: PartitionId,
    ) -> Result<Option<i64>, StoreError> {
        Ok(self.offsets(job, partition)?.last().copied())
    }

    async fn prune(
        &self,
        job: JobId,
        partition: PartitionId,
        offset: i64,
    ) -> Result<(), StoreError> {
        let offsets = self.offsets(job, partition)?;
        for o in prunable(&offsets, offset) {
            let path = self.file(job, partition, o);
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        Ok(())
    }
}
