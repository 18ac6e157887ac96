//! One key's state read from a job's committed snapshots in the checkpoint store, for
//! `weir job state ID --key K`: each task's snapshot at its committed offset is decoded
//! and restored into its stage's pipeline, which is asked what it holds for the key.
//! Read-only: nothing is written, and the running job is not involved.

use crate::checkpoint_store::{CheckpointStore, StoreError};
use crate::exactly_once::snapshot_codec::decode_snapshot;
use crate::exactly_once::stage_task::{resolve, StageMismatch};
use crate::operators::{KeyState, Pipeline, RestoreError};
use serde::Serialize;
use weir_core::ids::{CheckpointId, JobId, PartitionId};
use weir_core::spec::JobSpec;

/// What one task's committed snapshot holds for a key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskKeyState {
    /// The task (its partition id as the job lists it).
    pub partition: PartitionId,
    /// The checkpoint whose snapshot was read, and its source offset.
    pub checkpoint: CheckpointId,
    pub offset: i64,
    #[serde(flatten)]
    pub state: KeyState,
}

/// Why a task's state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("reading the checkpoint store: {0}")]
    Store(#[from] StoreError),
    #[error("the snapshot cannot be read: {0}")]
    Restore(#[from] RestoreError),
    #[error(transparent)]
    Stage(#[from] StageMismatch),
}

/// A job's task as the group lists it, with what reading its state needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommittedTask {
    pub partition: PartitionId,
    /// The committed source offset; the snapshot stored at it is the committed state.
    pub offset: i64,
}

/// What task `task` of `job` holds for `key` at its committed offset: `None` when no
/// snapshot is stored there (nothing committed yet, or pruned since) or the task holds
/// nothing for the key. `repartitions` and `source_partitions` as the group records them.
pub async fn task_key_state<S: CheckpointStore>(
    store: &S,
    job: JobId,
    spec: &JobSpec,
    (repartitions, source_partitions): (&[u32], u32),
    task: CommittedTask,
    key: &str,
) -> Result<Option<TaskKeyState>, InspectError> {
    let Some(bytes) = store.get(job, task.partition, task.offset).await? else {
        return Ok(None);
    };
    let (checkpoint, state) = decode_snapshot(&bytes)?;
    let stage = resolve(job, spec, task.partition, repartitions)?;
    let pipeline = Pipeline::restore_role(spec, stage.role(source_partitions), state)?;
    let state = pipeline.key_state(key);
    if state.is_empty() {
        return Ok(None);
    }
    Ok(Some(TaskKeyState {
        partition: task.partition,
        checkpoint,
        offset: task.offset,
        state,
    }))
}
