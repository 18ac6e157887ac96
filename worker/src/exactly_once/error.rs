//! Why a partition runner stopped, typed so the partition actor can tell fencing (stop
//! for good) from failures it recovers from, and count the ones that may fail the job.

use crate::checkpoint_store::StoreError;
use crate::operators::{CompileError, PipelineError, RestoreError};
use thiserror::Error;
use weir_broker::BrokerError;
use weir_core::ids::{CheckpointId, SavepointId};

/// Why a partition stopped. The caller (the partition actor) decides whether to recover.
#[derive(Debug, Error)]
pub enum PartitionError {
    /// Another owner took over (Kafka fenced the producer or the coordinator refused the
    /// epoch): this runner is a zombie and must stop without committing anything.
    #[error("fenced: {0}")]
    Fenced(String),
    /// The task does not fit the job's stages as the group recorded them.
    #[error("{0}")]
    Stage(String),
    /// The group refused a checkpoint report for a reason other than another owner (a
    /// checkpoint id not newer, an offset that does not match, a kind this worker does
    /// not know): recover, backing off, and fail the job if it keeps happening.
    #[error("checkpoint refused: {0}")]
    Refused(weir_core::wire::CheckpointRefusal),
    /// The open transaction had to be aborted; recover from the last commit point.
    #[error("transaction aborted: {0}")]
    Aborted(String),
    #[error("broker: {0}")]
    Broker(BrokerError),
    #[error("checkpoint store: {0}")]
    Store(#[from] StoreError),
    #[error("pipeline: {0}")]
    Pipeline(#[from] PipelineError),
    #[error("the job cannot run: {0}")]
    Compile(#[from] CompileError),
    #[error("the snapshot cannot be restored: {0}")]
    Restore(#[from] RestoreError),
    /// Kafka committed an offset for which no snapshot exists: the store lost data.
    #[error("no snapshot for committed offset {committed} (newest stored: {newest:?})")]
    MissingSnapshot { committed: i64, newest: Option<i64> },
    /// Kafka has no committed offset although the group recorded a committed checkpoint:
    /// the offsets expired or were deleted. Starting from the beginning would emit every
    /// output again, so the partition does not start.
    #[error("Kafka has no committed offset for this partition, yet checkpoint {checkpoint} was committed: the group's offsets expired or were deleted; not starting from offset 0, which would repeat every output")]
    CommittedOffsetLost { checkpoint: CheckpointId },
    /// The job was started from a savepoint whose snapshot for this partition is not in
    /// the checkpoint store (deleted by hand, or a store that lost it).
    #[error("savepoint {savepoint} pins offset {offset}, but no snapshot is stored there; start without the savepoint or from another one")]
    MissingSavepointSnapshot { savepoint: SavepointId, offset: i64 },
}

impl PartitionError {
    /// A short name of the kind of failure, for the `reason` label of
    /// `weir_partition_failures_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            PartitionError::Fenced(_) => "fenced",
            PartitionError::Stage(_) => "stage",
            PartitionError::Aborted(_) => "aborted",
            PartitionError::Refused(_) => "refused",
            PartitionError::Broker(BrokerError::Unavailable(_)) => "broker_unavailable",
            PartitionError::Broker(BrokerError::Timeout(_)) => "broker_timeout",
            PartitionError::Broker(BrokerError::UnknownTopic(_)) => "unknown_topic",
            PartitionError::Broker(BrokerError::RecordTooLarge(_)) => "record_too_large",
            PartitionError::Broker(_) => "broker",
            PartitionError::Store(_) => "checkpoint_store",
            PartitionError::Pipeline(_) => "pipeline",
            PartitionError::Compile(_) => "compile",
            PartitionError::Restore(_) => "restore",
            PartitionError::MissingSnapshot { .. } => "missing_snapshot",
            PartitionError::CommittedOffsetLost { .. } => "committed_offset_lost",
            PartitionError::MissingSavepointSnapshot { .. } => "missing_savepoint_snapshot",
        }
    }

    /// Whether the failure counts toward the failure-rate limit that fails the job: not
    /// when the broker was unreachable or slow, which says nothing about the job and
    /// passes by itself.
    pub fn counts_toward_failing_the_job(&self) -> bool {
        !matches!(
            self,
            PartitionError::Fenced(_)
                | PartitionError::Broker(BrokerError::Unavailable(_) | BrokerError::Timeout(_))
        )
    }
}

impl From<BrokerError> for PartitionError {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::Fenced(m) => PartitionError::Fenced(m),
            BrokerError::AbortRequired(m) => PartitionError::Aborted(m),
            other => PartitionError::Broker(other),
        }
    }
}
