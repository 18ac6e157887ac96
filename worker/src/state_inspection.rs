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
    /// The checkpoint whose snapshot was read.
    pub checkpoint: CheckpointId,
    /// The source offset that checkpoint committed (the snapshot is the state after the
    /// task's input before it).
    pub offset: i64,
    /// What the task holds for the key.
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
    /// No snapshot is stored at the task's committed offset: the store is not the one
    /// the workers write, or the snapshot was pruned since the job was looked up.
    #[error("no snapshot of task {partition} at its committed offset {offset} in this checkpoint store (is it the workers' --checkpoint-dir?)")]
    Missing { partition: PartitionId, offset: i64 },
    /// The snapshot at the committed offset is another checkpoint's than the group's
    /// committed one (a run started from a savepoint that has not committed yet).
    #[error("the snapshot of task {partition} at offset {offset} is checkpoint {found}'s, not the committed checkpoint {committed}'s; try again once the job has committed")]
    OtherCheckpoint {
        partition: PartitionId,
        offset: i64,
        found: CheckpointId,
        committed: CheckpointId,
    },
}

/// A job's task as the group lists it, with what reading its state needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommittedTask {
    /// The task's id, as the job lists its partitions.
    pub partition: PartitionId,
    /// The committed source offset; the snapshot stored at it is the committed state.
    pub offset: i64,
    /// The committed checkpoint as the group records it, if known: a snapshot at the
    /// offset written by another checkpoint (another run) is refused.
    pub checkpoint: Option<CheckpointId>,
}

/// What task `task` of `job` holds for `key` at its committed offset: `None` when the
/// task holds nothing for the key; [`InspectError::Missing`] when no snapshot is stored
/// there. `repartitions` and `source_partitions` as the group records them.
pub async fn task_key_state<S: CheckpointStore>(
    store: &S,
    job: JobId,
    spec: &JobSpec,
    (repartitions, source_partitions): (&[u32], u32),
    task: CommittedTask,
    key: &str,
) -> Result<Option<TaskKeyState>, InspectError> {
    let Some(bytes) = store.get(job, task.partition, task.offset).await? else {
        return Err(InspectError::Missing {
            partition: task.partition,
            offset: task.offset,
        });
    };
    let (checkpoint, state) = decode_snapshot(&bytes)?;
    if let Some(committed) = task.checkpoint.filter(|c| *c != checkpoint) {
        return Err(InspectError::OtherCheckpoint {
            partition: task.partition,
            offset: task.offset,
            found: checkpoint,
            committed,
        });
    }
    let generation = weir_core::spec::stages::task_generation(task.partition);
    let stage = resolve(job, spec, task.partition, (repartitions, generation))?;
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
