//! What a Raft log entry asks the control state to do, and what applying it answers.
//! Every time in a command was read by the proposer, so applying is deterministic.

use serde::{Deserialize, Serialize};
use weir_core::ids::{Epoch, JobId, PartitionId, SavepointId, TenantName, WorkerId};
use weir_core::wire::{CheckpointReport, WorkerReport};

/// One replicated change to the control state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Creates a tenant holding one token, stored as its SHA-256 hash.
    CreateTenant {
        name: TenantName,
        token_hash: String,
        at_ms: u64,
    },
    /// Replaces a tenant's tokens with a new one (rotation: old tokens stop working).
    RotateTenantToken {
        name: TenantName,
        token_hash: String,
    },
    /// Accepts a validated job spec for a tenant.
    SubmitJob {
        tenant: TenantName,
        name: String,
        spec: serde_json::Value,
        at_ms: u64,
    },
    /// Starts cancelling a job; `tenant` limits the request to that tenant's jobs.
    CancelJob {
        job: JobId,
        tenant: Option<TenantName>,
    },
    /// A user's life-cycle request (pause, resume, stop, start; cancel has its own
    /// command above); `tenant` limits the request to that tenant's jobs. Decided by
    /// `lifecycle::on_request`: a state that does not allow it is refused, naming it.
    ChangeJobState {
        job: JobId,
        tenant: Option<TenantName>,
        request: super::lifecycle::JobRequest,
    },
    /// Records that a stopping (or upgrading) job has no partition left running and none
    /// to fence: it is stopped (or its new version starts).
    FinishStop { job: JobId },
    /// A new version of a job (its spec validated by the proposer), its state carried
    /// from `savepoint` or, when `None`, from the cut of a savepoint the upgrade takes
    /// (the stop's, or a stopped job's last commit); `tenant` limits the request to that
    /// tenant's jobs.
    UpgradeJob {
        job: JobId,
        tenant: Option<TenantName>,
        spec: serde_json::Value,
        savepoint: Option<SavepointId>,
        allow_state_drop: Vec<String>,
        at_ms: u64,
    },
    /// A user's rescale request: an upgrade to the job's current spec with `parallelism`
    /// (the partition count of the stage behind its shuffle); `tenant` limits the request
    /// to that tenant's jobs.
    RescaleJob {
        job: JobId,
        tenant: Option<TenantName>,
        parallelism: u32,
        at_ms: u64,
    },
    /// A user's savepoint request: pins every partition's committed cut (a stopping job's
    /// once it is stopped); `tenant` limits the request to that tenant's jobs.
    TakeSavepoint {
        job: JobId,
        tenant: Option<TenantName>,
        at_ms: u64,
    },
    /// A stop and a savepoint of the stop's cut, together or not at all.
    StopWithSavepoint {
        job: JobId,
        tenant: Option<TenantName>,
        at_ms: u64,
    },
    /// Starts a stopped job again from a complete savepoint instead of its last commit.
    StartFromSavepoint {
        job: JobId,
        tenant: Option<TenantName>,
        savepoint: SavepointId,
    },
    /// Forgets a savepoint; its snapshots are pruned like any other from then on.
    DeleteSavepoint {
        job: JobId,
        tenant: Option<TenantName>,
        savepoint: SavepointId,
    },
    /// Records a worker's registration (or re-registration after a restart).
    RegisterWorker {
        worker: WorkerId,
        addr: String,
        at_ms: u64,
    },
    /// Removes a worker whose lease expired (decided by the leader) or that left.
    RemoveWorker { worker: WorkerId, reason: String },
    /// Records a job's source partition count, as a worker learned it from Kafka.
    SetPartitionCount { job: JobId, partition_count: u32 },
    /// Records the partition count of a topic a job reads besides its source (its
    /// `join`'s right side), as a worker learned it from Kafka.
    SetTopicPartitionCount {
        job: JobId,
        topic: String,
        partition_count: u32,
    },
    /// Applies the scheduler's placement decisions.
    Place { moves: Vec<Move> },
    /// Records that a cancelling job has no partition left running.
    FinishCancel { job: JobId },
    /// Marks a job failed with a reason users can read.
    FailJob { job: JobId, reason: String },
    /// A batch of checkpoint reports from one worker.
    Checkpoint {
        worker: WorkerId,
        reports: Vec<CheckpointReport>,
        at_ms: u64,
    },
    /// A worker's report of a partition's problem, a pending job's reason, or fenced
    /// partitions (see [`WorkerReport`]).
    WorkerReport {
        worker: WorkerId,
        report: WorkerReport,
    },
    /// A write that changes nothing: the leader's probe that it can commit.
    Noop,
    /// Records coordinators that have stored part of the log (the leader saw them match
    /// it). A member in this set that later starts with no store lost its vote and log,
    /// and is refused at start rather than taken for a new member.
    MembersSeen { members: Vec<u64> },
    /// A client's request with its idempotency key: applied once; a retry with the same
    /// key (after a lost answer or a failover) gets the first answer again.
    Idempotent {
        key: String,
        command: Box<Command>,
        /// SHA-256 (hex) of the request the key was sent with (method, path, caller,
        /// body): the same key with another request is refused rather than answered with
        /// the first request's answer. `None` in entries written before digests existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        digest: Option<String>,
    },
    /// Commands that queued up together, in one log entry (group commit), applied in
    /// order; each gets its own result.
    Batch(Vec<Command>),
}

/// One placement decision: (job, partition) goes to `worker` (or nowhere) at `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Move {
    pub job: JobId,
    pub partition: PartitionId,
    pub worker: Option<WorkerId>,
    /// Must be exactly one more than the partition's current epoch.
    pub epoch: Epoch,
}

/// What applying a command answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CommandResult {
    /// Applied, nothing to report.
    Done,
    /// The job was accepted with this id and version.
    JobSubmitted { id: JobId, version: u64 },
    /// A savepoint was recorded with this id (complete, or pending until the job stops).
    SavepointTaken { id: SavepointId },
    /// Per-report outcome of a checkpoint batch, in order.
    CheckpointResults(Vec<Result<(), weir_core::wire::CheckpointRefusal>>),
    /// The command was refused; the state is unchanged.
    Refused(Refusal),
    /// The results of a `Batch`, in order.
    Batch(Vec<CommandResult>),
}

/// Why a command was refused. These are answers, not failures of the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("stale epoch for job {job} partition {partition}: got {got}, current is {current}")]
    StaleEpoch {
        job: JobId,
        partition: PartitionId,
        got: Epoch,
        current: Epoch,
    },
    #[error("{0}")]
    Invalid(String),
    /// An idempotency key already answered a different request.
    #[error("the Idempotency-Key was already used for a different request; use a new key for a new request")]
    IdempotencyKeyReused,
}
