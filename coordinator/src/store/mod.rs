//! The coordinator's durable storage: the Raft log, vote and state-machine snapshots in one
//! redb database. redb reaches the disk only through its `StorageBackend`, which is the disk
//! seam: production opens a file, the simulation a memory backend that can lose unsynced
//! writes in a crash.
//!
//! Durability: appended entries and the vote are committed with `Durability::Immediate`
//! (fsync) before openraft is told they are flushed, so an entry counts toward a quorum only
//! once it is on disk. One `append` call writes every entry openraft batched into it with a
//! single fsync. The state machine itself lives in memory and is rebuilt on start from the
//! newest snapshot plus the log after it.

// openraft's `StorageError` is what its storage traits return; boxing it here would only
// move the allocation.
#![allow(clippy::result_large_err)]

mod entry_cache;
mod log_store;
mod state_machine;

pub use log_store::LogStore;
pub use state_machine::{SharedState, StateMachineStore};

use crate::raft_types::StorageError;
use openraft::{AnyError, StorageIOError};
use redb::{Database, StorageBackend, TableDefinition};
use std::path::Path;
use std::sync::Arc;
use thiserror::Error;

/// Log entries by index, JSON-encoded.
pub const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Small records: the vote, the committed log id, the last purged log id.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
/// The newest snapshot: its metadata and its bytes.
pub(crate) const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_snapshot");

/// Failure to open the coordinator's database.
#[derive(Debug, Error)]
pub enum OpenError {
    #[error("cannot create data directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open database {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open redb database: {0}")]
    Redb(#[from] redb::DatabaseError),
    #[error("cannot read the stored Raft state: {0}")]
    Load(String),
}

/// Opens (or creates) the database over any storage backend.
pub fn open_with_backend(backend: impl StorageBackend) -> Result<Arc<Database>, OpenError> {
    let db = redb::Builder::new().create_with_backend(backend)?;
    Ok(Arc::new(db))
}

/// Opens (or creates) `<data_dir>/coordinator.redb`.
pub fn open_in_dir(data_dir: &Path) -> Result<Arc<Database>, OpenError> {
    std::fs::create_dir_all(data_dir).map_err(|source| OpenError::CreateDir {
        path: data_dir.display().to_string(),
        source,
    })?;
    let path = data_dir.join("coordinator.redb");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| OpenError::Open {
            path: path.display().to_string(),
            source,
        })?;
    open_with_backend(redb::backends::FileBackend::new(file)?)
}

/// Opens the log store and state machine over one database.
pub fn open_stores(db: Arc<Database>) -> Result<(LogStore, StateMachineStore), OpenError> {
    let log = LogStore::new(db.clone()).map_err(|e| OpenError::Load(e.to_string()))?;
    let sm = StateMachineStore::load(db).map_err(|e| OpenError::Load(e.to_string()))?;
    Ok((log, sm))
}

/// Wraps an error from a write as openraft's storage error.
pub fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write(AnyError::new(&e)).into()
}

/// Wraps an error from a read as openraft's storage error.
pub fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read(AnyError::new(&e)).into()
}
