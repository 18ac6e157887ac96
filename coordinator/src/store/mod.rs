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

#[cfg(test)]
mod damage_tests;
mod entry_cache;
pub mod format;
#[cfg(test)]
mod format_tests;
mod log_store;
pub mod snapshot_format;
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
    /// The file exists but holds nothing: the store was truncated or emptied. Starting as a
    /// new member would forget the vote it saved, and a member that forgets its vote can
    /// vote twice in one term.
    #[error(
        "{path} is empty (0 bytes): this member's Raft log and vote are lost; refusing to start \
         as a new member (remove it from the group with `weir cluster remove-member`, delete the \
         file, start it with --initial-cluster-state existing and add it again)"
    )]
    Emptied { path: String },
    /// The file is not a readable store: a failed integrity check, an entry that does not
    /// decode, or a panic inside redb on what it read.
    #[error(
        "{path} is damaged ({detail}): refusing to start on it (remove this member from the \
         group, delete the file, start it with --initial-cluster-state existing and add it again)"
    )]
    Damaged { path: String, detail: String },
    /// The store was written in a format newer than this code reads (by a newer weir):
    /// reading it could misread the log or the vote. Not damage: the file is left as it is,
    /// for the newer weir to open again.
    #[error(
        "{path} has store format version {found}, but this coordinator reads versions up to \
         {supported}: it was written by a newer weir; run that version (or newer) on it"
    )]
    NewerFormat {
        path: String,
        found: u64,
        supported: u64,
    },
}

/// Refuses a store of a format newer than this code reads; `path` names it in the error.
fn check_format(db: &Database, path: &str) -> Result<(), OpenError> {
    let found = format::stored_version(db).map_err(|detail| OpenError::Damaged {
        path: path.to_string(),
        detail: format!("its format version does not read: {detail}"),
    })?;
    if format::readable(found) {
        Ok(())
    } else {
        Err(OpenError::NewerFormat {
            path: path.to_string(),
            found,
            supported: format::STORE_FORMAT_VERSION,
        })
    }
}

/// How [`open_with_backend`]'s errors name a store that has no file name.
const BACKEND_STORE_NAME: &str = "the coordinator store";

/// Opens (or creates) the database over any storage backend, refusing a store of a newer
/// format.
pub fn open_with_backend(backend: impl StorageBackend) -> Result<Arc<Database>, OpenError> {
    let db = redb::Builder::new().create_with_backend(backend)?;
    check_format(&db, BACKEND_STORE_NAME)?;
    Ok(Arc::new(db))
}

/// The store's file name inside the data directory.
pub const STORE_FILE: &str = "coordinator.redb";

/// Whether `<data_dir>/coordinator.redb` exists: a member with no store starts fresh
/// (bootstraps or waits to be added); one with a store restarts from it.
pub fn store_exists(data_dir: &Path) -> bool {
    data_dir.join(STORE_FILE).exists()
}

/// Beside the store, once it was found damaged: why. Its presence refuses every later
/// start, since redb's integrity check repairs the file it fails (going back to an older
/// commit), and a restart must not find a clean-looking file that lost acknowledged writes.
pub const DAMAGED_MARKER_FILE: &str = "coordinator.redb.damaged";

/// Opens (or creates) `<data_dir>/coordinator.redb`, refusing a file that is empty, of a
/// newer format ([`format`]) or fails its checks (see [`verify`]): nothing read from the disk may panic the process or be
/// mistaken for a new member's empty store. A refusal for damage is recorded beside the
/// store ([`DAMAGED_MARKER_FILE`]) and holds until an operator replaces the member.
#[allow(clippy::disallowed_methods, clippy::disallowed_types)] // the production disk seam
pub fn open_in_dir(data_dir: &Path) -> Result<Arc<Database>, OpenError> {
    std::fs::create_dir_all(data_dir).map_err(|source| OpenError::CreateDir {
        path: data_dir.display().to_string(),
        source,
    })?;
    let path = data_dir.join(STORE_FILE);
    let shown = path.display().to_string();
    let marker = data_dir.join(DAMAGED_MARKER_FILE);
    if let Ok(why) = std::fs::read_to_string(&marker) {
        return Err(OpenError::Damaged {
            path: shown,
            detail: format!("found damaged before: {}", why.trim()),
        });
    }
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == 0) {
        return Err(OpenError::Emptied { path: shown });
    }
    if !path.exists() {
        create_store_file(data_dir, &path)?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|source| OpenError::Open {
            path: shown.clone(),
            source,
        })?;
    let damaged = |detail: String| OpenError::Damaged {
        path: shown.clone(),
        detail,
    };
    let opened = guard_panics(|| {
        let mut db = redb::Builder::new()
            .create_with_backend(
                redb::backends::FileBackend::new(file).map_err(|e| damaged(e.to_string()))?,
            )
            .map_err(|e| damaged(e.to_string()))?;
        match db.check_integrity() {
            Ok(true) => {}
            Ok(false) => return Err(damaged("it failed redb's integrity check".into())),
            Err(e) => return Err(damaged(format!("integrity check: {e}"))),
        }
        // Before reading anything else: a newer format is refused as such, not as damage.
        check_format(&db, &shown)?;
        let db = Arc::new(db);
        verify(&db).map_err(damaged)?;
        Ok(db)
    });
    let result = match opened {
        Ok(result) => result,
        Err(panic) => Err(damaged(format!("redb panicked reading it: {panic}"))),
    };
    if let Err(OpenError::Damaged { detail, .. }) = &result {
        // Best effort: the refusal itself stands either way.
        if let Err(e) = std::fs::write(&marker, detail) {
            tracing::warn!(error = %e, "cannot record that the store is damaged");
        }
    }
    result
}

/// Creates an empty store under a temporary name, fsynced, then renames it into place and
/// fsyncs the directory: a crash while creating it leaves no `coordinator.redb` at all, so
/// a zero-length one can only be a store that was emptied.
#[allow(clippy::disallowed_methods, clippy::disallowed_types)] // the production disk seam
fn create_store_file(data_dir: &Path, path: &Path) -> Result<(), OpenError> {
    let tmp = data_dir.join(format!("{STORE_FILE}.new"));
    let io = |source: std::io::Error| OpenError::Open {
        path: tmp.display().to_string(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io)?;
    let db = redb::Builder::new().create_with_backend(redb::backends::FileBackend::new(file)?)?;
    drop(db);
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    std::fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}

/// Runs `f`, turning a panic into its message: redb can panic on bytes a damaged disk
/// returned, and what is read from disk must never end the process with a panic.
pub fn guard_panics<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into())
    })
}

/// Reads the whole store once: every log entry decodes and the indexes follow each other
/// without a gap, every record of the vote and hints decodes, and a snapshot, if any, has
/// both halves and decodes. A store that passes can be served from; one that does not is
/// refused at start rather than failing (or panicking) in the middle of serving.
pub fn verify(db: &Database) -> Result<(), String> {
    use redb::{ReadableDatabase, ReadableTable};
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    match txn.open_table(LOG) {
        Ok(table) => {
            let mut previous: Option<u64> = None;
            for item in table.iter().map_err(|e| e.to_string())? {
                let (index, bytes) = item.map_err(|e| e.to_string())?;
                let entry: crate::raft_types::Entry = serde_json::from_slice(bytes.value())
                    .map_err(|e| format!("log entry {}: {e}", index.value()))?;
                if entry.log_id.index != index.value() {
                    return Err(format!(
                        "log entry stored at {} says it is entry {}",
                        index.value(),
                        entry.log_id.index
                    ));
                }
                if previous.is_some_and(|p| p + 1 != index.value()) {
                    return Err(format!("the log has a gap before entry {}", index.value()));
                }
                previous = Some(index.value());
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.to_string()),
    }
    match txn.open_table(META) {
        Ok(table) => {
            for item in table.iter().map_err(|e| e.to_string())? {
                let (key, bytes) = item.map_err(|e| e.to_string())?;
                serde_json::from_slice::<serde_json::Value>(bytes.value())
                    .map_err(|e| format!("record {:?}: {e}", key.value()))?;
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.to_string()),
    }
    match txn.open_table(SNAPSHOT) {
        Ok(table) => {
            let meta = table
                .get(state_machine::SNAPSHOT_META)
                .map_err(|e| e.to_string())?;
            let data = table
                .get(state_machine::SNAPSHOT_DATA)
                .map_err(|e| e.to_string())?;
            match (meta, data) {
                (None, None) => {}
                (Some(meta), Some(data)) => {
                    serde_json::from_slice::<crate::raft_types::SnapshotMeta>(meta.value())
                        .map_err(|e| format!("snapshot metadata: {e}"))?;
                    snapshot_format::decode(data.value()).map_err(|e| format!("snapshot: {e}"))?;
                }
                _ => return Err("the snapshot has only one of its two halves".into()),
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.to_string()),
    }
    Ok(())
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

/// Runs a read of the store, turning a panic inside redb (on bytes a failing disk returned
/// after start) into a read error: openraft then stops this member, and the process ends
/// with that sentence instead of a panic.
pub(crate) fn guarded_read<T>(
    f: impl FnOnce() -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    guard_panics(f).unwrap_or_else(|panic| {
        Err(read_err(std::io::Error::other(format!(
            "the store is damaged: redb panicked reading it: {panic}"
        ))))
    })
}

/// Wraps an error from a read as openraft's storage error.
pub fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read(AnyError::new(&e)).into()
}
