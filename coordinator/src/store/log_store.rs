//! The Raft log and vote in redb (openraft's `RaftLogStorage`), with the newest entries
//! also kept decoded in memory (`EntryCache`).

use super::entry_cache::EntryCache;
use super::{guarded_read, read_err, write_err, LOG, META};
use crate::raft_types::{Entry, LogId, StorageError, TypeConfig};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader, Vote};
use redb::{Database, Durability, ReadableDatabase, ReadableTable};
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard};

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";
/// The committed index is saved (a hint that lets a restart apply committed entries before
/// hearing from a leader) only once it has moved this many entries past the saved one. A
/// stale hint is safe, since every entry below it was committed; saving each advance would
/// cost one redb transaction per write.
pub const COMMITTED_HINT_EVERY: u64 = 64;

/// The log store; cheap to clone, every clone sees the same database and cache.
#[derive(Debug, Clone)]
pub struct LogStore {
    db: Arc<Database>,
    cache: Arc<Mutex<EntryCache>>,
    /// The committed index last saved, shared by every clone.
    committed_saved: Arc<Mutex<Option<u64>>>,
}

impl LogStore {
    /// Opens the log tables, creating them on first use, and records the store's format
    /// version if it has none yet.
    pub fn new(db: Arc<Database>) -> Result<Self, StorageError> {
        let txn = db.begin_write().map_err(write_err)?;
        txn.open_table(LOG).map_err(write_err)?;
        txn.open_table(META).map_err(write_err)?;
        super::format::record_if_missing(&txn).map_err(write_err)?;
        txn.commit().map_err(write_err)?;
        Ok(LogStore {
            db,
            cache: Arc::default(),
            committed_saved: Arc::default(),
        })
    }

    fn cache(&self) -> MutexGuard<'_, EntryCache> {
        // The cache is consistent after every call that holds the lock; a panic elsewhere
        // cannot leave it half-updated.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StorageError> {
        guarded_read(|| {
            let txn = self.db.begin_read().map_err(read_err)?;
            let table = txn.open_table(META).map_err(read_err)?;
            match table.get(key).map_err(read_err)? {
                Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(read_err)?)),
                None => Ok(None),
            }
        })
    }

    fn write_meta<T: serde::Serialize>(
        &self,
        key: &str,
        value: &T,
        durability: Durability,
    ) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(value).map_err(write_err)?;
        let mut txn = self.db.begin_write().map_err(write_err)?;
        txn.set_durability(durability).map_err(write_err)?;
        {
            let mut table = txn.open_table(META).map_err(write_err)?;
            table.insert(key, bytes.as_slice()).map_err(write_err)?;
        }
        txn.commit().map_err(write_err)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        if let Some(entries) = self.cache().get(&range) {
            return Ok(entries);
        }
        guarded_read(|| {
            let txn = self.db.begin_read().map_err(read_err)?;
            let table = txn.open_table(LOG).map_err(read_err)?;
            let mut entries = Vec::new();
            for item in table.range(range).map_err(read_err)? {
                let (_, v) = item.map_err(read_err)?;
                entries.push(serde_json::from_slice(v.value()).map_err(read_err)?);
            }
            Ok(entries)
        })
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.read_meta(LAST_PURGED)?;
        let last = guarded_read(|| {
            let txn = self.db.begin_read().map_err(read_err)?;
            let table = txn.open_table(LOG).map_err(read_err)?;
            let last = match table.last().map_err(read_err)? {
                Some((_, v)) => Some(
                    serde_json::from_slice::<Entry>(v.value())
                        .map_err(read_err)?
                        .log_id,
                ),
                None => None,
            };
            Ok(last)
        })?;
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        let durability = if crate::bugs::planted(crate::bugs::PlantedBug::VoteNotSynced) {
            Durability::None
        } else {
            Durability::Immediate
        };
        self.write_meta(VOTE, vote, durability)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        self.read_meta(VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // A hint for faster restarts, not needed for safety: no fsync of its own, and only
        // every `COMMITTED_HINT_EVERY` entries.
        let index = committed.map(|c| c.index);
        {
            let mut saved = self
                .committed_saved
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let due = match (*saved, index) {
                (Some(s), Some(i)) => i < s || i - s >= COMMITTED_HINT_EVERY,
                (None, Some(_)) => true,
                (_, None) => saved.is_some(),
            };
            if !due {
                return Ok(());
            }
            *saved = index;
        }
        self.write_meta(COMMITTED, &committed, Durability::None)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.read_meta::<Option<LogId>>(COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut txn = self.db.begin_write().map_err(write_err)?;
        // The fsync that makes an entry count toward a quorum (planted bug: skip it).
        let durability = if crate::bugs::planted(crate::bugs::PlantedBug::AckBeforeSync) {
            Durability::None
        } else {
            Durability::Immediate
        };
        txn.set_durability(durability).map_err(write_err)?;
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut sizes = Vec::with_capacity(entries.len());
        {
            let mut table = txn.open_table(LOG).map_err(write_err)?;
            for entry in &entries {
                let bytes = serde_json::to_vec(entry).map_err(write_err)?;
                table
                    .insert(entry.log_id.index, bytes.as_slice())
                    .map_err(write_err)?;
                sizes.push(bytes.len());
            }
        }
        let result = txn
            .commit()
            .map_err(|e| std::io::Error::other(e.to_string()));
        if result.is_ok() {
            self.cache().appended(entries.iter().zip(sizes));
        }
        metrics::histogram!("weir_raft_append_batch_entries").record(entries.len() as f64);
        let failed = result.as_ref().err().map(|e| e.to_string());
        callback.log_io_completed(result);
        match failed {
            Some(e) => Err(write_err(std::io::Error::other(e))),
            None => Ok(()),
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut txn = self.db.begin_write().map_err(write_err)?;
        txn.set_durability(Durability::Immediate)
            .map_err(write_err)?;
        {
            let mut table = txn.open_table(LOG).map_err(write_err)?;
            table
                .retain_in(log_id.index.., |_, _| false)
                .map_err(write_err)?;
        }
        // Forget the entries first: whether or not the commit lands, none of them may be
        // served again.
        self.cache().truncated(log_id.index);
        txn.commit().map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(&Some(log_id)).map_err(write_err)?;
        let mut txn = self.db.begin_write().map_err(write_err)?;
        txn.set_durability(Durability::Immediate)
            .map_err(write_err)?;
        {
            let mut meta = txn.open_table(META).map_err(write_err)?;
            meta.insert(LAST_PURGED, bytes.as_slice())
                .map_err(write_err)?;
            let mut table = txn.open_table(LOG).map_err(write_err)?;
            table
                .retain_in(..=log_id.index, |_, _| false)
                .map_err(write_err)?;
        }
        self.cache().purged(log_id.index);
        txn.commit().map_err(write_err)
    }
}
