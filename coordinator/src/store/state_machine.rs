//! The control state behind openraft's `RaftStateMachine`: applied in memory, snapshotted
//! into redb. The HTTP API reads the same state through `SharedState`.

use super::{read_err, write_err, SNAPSHOT};
use crate::raft_types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::state::{CommandResult, ControlState};
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder};
use redb::{Database, Durability, ReadableDatabase};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::sync::{Arc, RwLock, RwLockReadGuard};

pub(crate) const SNAPSHOT_META: &str = "meta";
pub(crate) const SNAPSHOT_DATA: &str = "data";

/// The applied state, the log id it reflects, and the group's membership as of it. Its
/// bytes in a snapshot are `snapshot_format`'s, which adds their version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppliedState {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub control: ControlState,
}

/// A read handle on the applied state, shared with the API. Readers hold the lock only
/// for the time of one copy or lookup, never across an await.
#[derive(Debug, Clone, Default)]
pub struct SharedState(Arc<RwLock<AppliedState>>);

impl SharedState {
    /// Borrows the applied state for reading.
    pub fn read(&self) -> RwLockReadGuard<'_, AppliedState> {
        // A poisoned lock means a panic mid-apply; the process is going down anyway and the
        // state is rebuilt from disk on restart, so reading what is there is fine.
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, AppliedState> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The state machine store.
#[derive(Debug)]
pub struct StateMachineStore {
    db: Arc<Database>,
    shared: SharedState,
    snapshots_built: u64,
}

impl StateMachineStore {
    /// Loads the newest snapshot, if any; openraft re-applies the log after it.
    pub fn load(db: Arc<Database>) -> Result<Self, StorageError> {
        let txn = db.begin_write().map_err(write_err)?;
        txn.open_table(SNAPSHOT).map_err(write_err)?;
        txn.commit().map_err(write_err)?;
        let store = StateMachineStore {
            db,
            shared: SharedState::default(),
            snapshots_built: 0,
        };
        if let Some((_, data)) = store.read_snapshot()? {
            let applied = super::snapshot_format::decode(&data).map_err(read_err)?;
            *store.shared.write() = applied;
        }
        Ok(store)
    }

    /// The handle the API reads the state through.
    pub fn shared(&self) -> SharedState {
        self.shared.clone()
    }

    fn read_snapshot(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StorageError> {
        super::guarded_read(|| self.read_snapshot_unguarded())
    }

    fn read_snapshot_unguarded(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StorageError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(SNAPSHOT).map_err(read_err)?;
        let meta = match table.get(SNAPSHOT_META).map_err(read_err)? {
            Some(v) => serde_json::from_slice::<SnapshotMeta>(v.value()).map_err(read_err)?,
            None => return Ok(None),
        };
        let data = match table.get(SNAPSHOT_DATA).map_err(read_err)? {
            Some(v) => v.value().to_vec(),
            None => return Ok(None),
        };
        Ok(Some((meta, data)))
    }

    fn write_snapshot(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        let meta_bytes = serde_json::to_vec(meta).map_err(write_err)?;
        let mut txn = self.db.begin_write().map_err(write_err)?;
        txn.set_durability(Durability::Immediate)
            .map_err(write_err)?;
        {
            let mut table = txn.open_table(SNAPSHOT).map_err(write_err)?;
            table
                .insert(SNAPSHOT_META, meta_bytes.as_slice())
                .map_err(write_err)?;
            table.insert(SNAPSHOT_DATA, data).map_err(write_err)?;
        }
        txn.commit().map_err(write_err)
    }
}

/// Builds a snapshot of the state as it was when the builder was made.
#[derive(Debug)]
pub struct SnapshotBuilder {
    db: Arc<Database>,
    applied: AppliedState,
    sequence: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let data = super::snapshot_format::encode(&self.applied).map_err(write_err)?;
        let last = self.applied.last_applied;
        let snapshot_id = match last {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, self.sequence),
            None => format!("0-0-{}", self.sequence),
        };
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: self.applied.membership.clone(),
            snapshot_id,
        };
        let store = StateMachineStore {
            db: self.db.clone(),
            shared: SharedState::default(),
            snapshots_built: 0,
        };
        store.write_snapshot(&meta, &data)?;
        metrics::counter!("weir_raft_snapshots_built_total").increment(1);
        metrics::gauge!("weir_raft_snapshot_bytes").set(data.len() as f64);
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let s = self.shared.read();
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut results = Vec::new();
        let mut s = self.shared.write();
        for entry in entries {
            debug_assert!(s.last_applied.is_none_or(|l| l.index < entry.log_id.index));
            s.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => results.push(CommandResult::Done),
                EntryPayload::Normal(command) => results.push(s.control.apply(&command)),
                EntryPayload::Membership(m) => {
                    s.membership = StoredMembership::new(Some(entry.log_id), m);
                    results.push(CommandResult::Done);
                }
            }
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshots_built += 1;
        SnapshotBuilder {
            db: self.db.clone(),
            applied: self.shared.read().clone(),
            sequence: self.snapshots_built,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let applied = super::snapshot_format::decode(&data).map_err(read_err)?;
        assert_eq!(
            applied.last_applied, meta.last_log_id,
            "snapshot data and metadata disagree"
        );
        self.write_snapshot(meta, &data)?;
        *self.shared.write() = applied;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self.read_snapshot()?.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
