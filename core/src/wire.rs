//! The JSON bodies of weir's HTTP API (docs/HTTP_API.md), shared by the coordinators that serve
//! them, the Rust client, the CLI and the workers. Field names are part of the contract.
//!
//! The bodies carry no version field: the `/v1/` in every path is the API's version, and
//! a body that changes incompatibly goes under a new path. Golden files
//! (`core/tests/golden/api/`) pin each body's JSON, so a change is made knowingly.

use crate::ids::{
    CheckpointId, Epoch, JobId, NodeId, PartitionId, SavepointId, TenantName, WorkerId,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The response header naming the leader's address as the answering member sees it (absent
/// while it knows none), on every `/v1` answer past admission, so that a client sends its
/// next requests to the leader instead of through a follower.
pub const LEADER_HEADER: &str = "x-weir-leader";

/// `GET /v1/cluster`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub leader: Option<NodeId>,
    pub term: u64,
    pub members: Vec<Member>,
    pub last_applied: u64,
    /// Members known to have stored part of the log. A member listed here that starts with
    /// no store lost its vote, and refuses to start (see `weir coordinator`).
    #[serde(default)]
    pub seen: Vec<NodeId>,
}

/// One coordinator in `GET /v1/cluster`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub id: NodeId,
    pub addr: String,
    /// `leader`, `follower`, `learner` or `unknown` (not heard from).
    pub state: String,
}

/// `POST /v1/cluster/members`: add a coordinator (as learner, then voter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    pub id: NodeId,
    pub addr: String,
}

/// `POST /v1/tenants`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantRequest {
    pub name: String,
}

/// The answer to creating a tenant or issuing it a new token: the only time the token is
/// shown, since the cluster stores only its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantToken {
    pub name: String,
    pub token: String,
}

/// `POST /v1/jobs` → 201.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmittedJob {
    pub id: JobId,
    pub name: String,
    pub version: u64,
}

/// A job's life-cycle state as users see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Pending,
    Running,
    /// Asked to pause: its partitions commit their open checkpoint and stop consuming.
    Pausing,
    /// Every partition committed and holds no open transaction; its state is kept.
    Paused,
    /// Asked to stop: its partitions commit and are released.
    Stopping,
    /// Every partition committed and was released; `start` runs it again from its last
    /// committed checkpoint.
    Stopped,
    /// Asked to upgrade while it ran: its partitions commit and are released as for a
    /// stop, then the new version starts from that cut (or from the savepoint named).
    Upgrading,
    Cancelling,
    Cancelled,
    Failed,
}

impl JobState {
    /// Every state, for metrics that report a count per state.
    pub const ALL: [JobState; 10] = [
        JobState::Pending,
        JobState::Running,
        JobState::Pausing,
        JobState::Paused,
        JobState::Stopping,
        JobState::Stopped,
        JobState::Upgrading,
        JobState::Cancelling,
        JobState::Cancelled,
        JobState::Failed,
    ];

    /// The name used on the wire and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Pausing => "pausing",
            JobState::Paused => "paused",
            JobState::Stopping => "stopping",
            JobState::Stopped => "stopped",
            JobState::Upgrading => "upgrading",
            JobState::Cancelling => "cancelling",
            JobState::Cancelled => "cancelled",
            JobState::Failed => "failed",
        }
    }
}

/// One row of `GET /v1/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    pub id: JobId,
    pub name: String,
    pub tenant: TenantName,
    pub state: JobState,
    pub version: u64,
    /// Why the job failed, or why a pending job cannot start yet (as in [`JobDetail`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The answer of `POST /v1/jobs/{id}/stop` and `.../start`: the job's summary, and the
/// savepoint a stop with `{"savepoint": true}` took (complete once the job is stopped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LifecycleAnswer {
    #[serde(flatten)]
    pub job: JobSummary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint: Option<SavepointId>,
}

/// Where a savepoint stands. A savepoint is an operation with a status of its own, not a
/// job state: it never blocks a pause or a stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SavepointStatus {
    /// Waiting for the job to be stopped (a stop with a savepoint): its cut is the stop's.
    Pending,
    /// Every partition is pinned; the savepoint can be started from.
    Complete,
    /// It can never complete (the job was cancelled or failed before it stopped); `reason`
    /// says why. Delete it to free its place.
    Failed,
}

impl SavepointStatus {
    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            SavepointStatus::Pending => "pending",
            SavepointStatus::Complete => "complete",
            SavepointStatus::Failed => "failed",
        }
    }
}

/// One partition's part of a savepoint: a checkpoint the partition committed, its source
/// offset, and the snapshot stored at exactly that offset. A partition that never
/// committed is pinned at offset 0 with no checkpoint and no snapshot (empty state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavepointPartition {
    pub partition: PartitionId,
    pub checkpoint: Option<CheckpointId>,
    /// The next source offset to read when starting from the savepoint.
    pub offset: i64,
    /// Where the snapshot lives in the checkpoint store (`None`: empty state).
    pub snapshot: Option<String>,
}

/// One row of `GET /v1/jobs/{id}/savepoints`, and the answer of
/// `POST /v1/jobs/{id}/savepoints`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavepointInfo {
    pub savepoint: SavepointId,
    pub job: JobId,
    pub status: SavepointStatus,
    pub requested_at_ms: u64,
    /// Why a failed savepoint failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Every partition's pin, once complete (empty while pending).
    pub partitions: Vec<SavepointPartition>,
}

/// Where a partition of a job started from a savepoint resumes: the savepoint's pin, to
/// be restored until the partition commits a checkpoint newer than `after_checkpoint`
/// (every checkpoint id the partition used before the start is at most that).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePoint {
    pub savepoint: SavepointId,
    pub checkpoint: Option<CheckpointId>,
    pub offset: i64,
    pub snapshot: Option<String>,
    pub after_checkpoint: Option<CheckpointId>,
    /// The spec the pin's snapshot was written under, when it is another version's than
    /// the assignment's (an upgrade): the restore carries each stateful stage's state by
    /// identity into the new pipeline. Left out otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_before: Option<serde_json::Value>,
    /// The ids of stateful stages the upgrade named in `allow_state_drop`: they start
    /// empty. Left out when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state_drop: Vec<String>,
    /// A task of a rescaled stage that has not committed since the rescale: its state is
    /// the keys that route to it (Kafka's murmur2 of the key over the stage's new
    /// partition count) from these snapshots of the stage's previous tasks, and it reads
    /// its new repartition topic from `offset` (0). Left out otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redistribute: Vec<RestoreSource>,
}

/// One snapshot a rescaled task takes its keys from: a task of the stage before the
/// rescale, at its pinned cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreSource {
    pub partition: PartitionId,
    pub checkpoint: Option<CheckpointId>,
    pub offset: i64,
}

/// `POST /v1/jobs/{id}/rescale`: a new partition count for the stage behind the job's
/// shuffle (its repartition topic's, and so its task count).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RescaleRequest {
    pub parallelism: u32,
}

/// `PUT /v1/jobs/{id}`: a new version of the job (its body may instead be the spec alone,
/// in any form `POST /v1/jobs` takes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeRequest {
    /// The new spec, as JSON (a YAML spec is sent as the whole body instead).
    pub spec: serde_json::Value,
    /// Start the new version from this savepoint instead of the stop's cut (or, for a
    /// stopped job, its last commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint: Option<SavepointId>,
    /// The ids of stateful stages whose state may be dropped: they start empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_state_drop: Vec<String>,
}

/// The answer of `PUT /v1/jobs/{id}` (202): the job's summary (`upgrading` while a
/// running job is released, `pending` once the new version starts), the version the
/// upgrade makes and the savepoint it starts from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpgradeAnswer {
    #[serde(flatten)]
    pub job: JobSummary,
    pub upgrade_version: u64,
    pub savepoint: SavepointId,
}

/// One row of `GET /v1/jobs/{id}/versions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobVersionInfo {
    pub version: u64,
    pub created_at_ms: u64,
    pub spec: serde_json::Value,
    /// The savepoint the version started from; absent for the first version and for an
    /// upgrade of a stopped job from its last commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint: Option<SavepointId>,
    /// The version whose state it took over; absent for the first version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_version: Option<u64>,
    /// The stateful stages that started empty because the upgrade named them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state_dropped: Vec<String>,
}

/// `GET /v1/jobs/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDetail {
    pub id: JobId,
    pub name: String,
    pub tenant: TenantName,
    pub state: JobState,
    pub version: u64,
    /// Why the job failed, when it did; for a pending job, why it cannot start yet (for
    /// example "source topic payments does not exist"), when a worker found out.
    pub reason: Option<String>,
    /// The source topic's partition count, once a worker has learned it from Kafka.
    pub partition_count: Option<u32>,
    pub spec: serde_json::Value,
    pub partitions: Vec<PartitionStatus>,
}

/// Where one partition of a job runs and how far it has checkpointed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionStatus {
    pub partition: PartitionId,
    pub worker: Option<WorkerId>,
    pub epoch: Epoch,
    /// The newest committed checkpoint.
    pub checkpoint: Option<CheckpointId>,
    /// The source offset of the newest committed checkpoint.
    pub offset: Option<i64>,
    /// Why the partition cannot make progress, as its owner last reported; absent while
    /// it progresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Whether a checkpoint has reached the Kafka commit point yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointPhase {
    Prepared,
    Committed,
}

/// One checkpoint record of `GET /v1/jobs/{id}/checkpoints`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    pub job: JobId,
    pub partition: PartitionId,
    pub checkpoint: CheckpointId,
    pub epoch: Epoch,
    pub phase: CheckpointPhase,
    /// The next source offset to read after this checkpoint.
    pub offset: i64,
    /// Where the state snapshot of this checkpoint lives in the checkpoint store.
    pub snapshot: String,
    pub prepared_at_ms: u64,
    pub committed_at_ms: Option<u64>,
}

/// One row of `GET /v1/workers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub id: WorkerId,
    pub addr: String,
    /// Unix epoch ms at which the leader will expire the lease unless renewed; `null` when
    /// the answering leader has not yet heard from the worker.
    pub lease_expires_at: Option<u64>,
    pub partitions: Vec<AssignmentRef>,
}

/// `(job, partition, epoch)`: one assignment as listed under a worker.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AssignmentRef {
    pub job: JobId,
    pub partition: PartitionId,
    pub epoch: Epoch,
}

/// `POST /v1/workers`: a worker announces itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterWorkerRequest {
    pub id: WorkerId,
    pub addr: String,
}

/// The lease a worker holds after registering or heartbeating.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub worker: WorkerId,
    pub lease_timeout_ms: u64,
    /// Heartbeat at least this often to keep the lease.
    pub heartbeat_interval_ms: u64,
}

/// `GET /v1/workers/{id}/assignments`: everything a worker should run now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignments {
    pub worker: WorkerId,
    pub assignments: Vec<WorkerAssignment>,
    /// Jobs whose source partition count no worker has reported yet, with their source
    /// topic; a worker that can reach Kafka reports it with `POST /v1/jobs/{id}/partitions`.
    pub unknown_partition_counts: Vec<(JobId, String)>,
    /// Topics jobs read besides their source (a `join`'s right side) whose partition
    /// count no worker has reported yet; report each with `POST /v1/jobs/{id}/partitions`
    /// naming the topic. The job is planned once every count is known. Left out when
    /// empty, and ignored by workers that predate it (the job then waits for one that
    /// does not).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown_topic_partition_counts: Vec<(JobId, String)>,
    /// Partitions of stopped (cancelling or failed) jobs whose transactional ids this
    /// worker should fence: their owner may be wedged or gone with a transaction open,
    /// which would hold back every `read_committed` reader of the topics it wrote to
    /// until the broker's transaction timeout. Report them with [`WorkerReport::Fenced`].
    #[serde(default)]
    pub fence: Vec<(JobId, PartitionId)>,
    /// Topics weir created for cancelled jobs (their repartition topics) that this worker
    /// should delete: report them with [`WorkerReport::TopicsDeleted`]. Left out when
    /// empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete_topics: Vec<(JobId, Vec<String>)>,
    /// Where the partitions of [`Assignments::fence`] read their input: after fencing,
    /// the fencer reads the job's commit point there and reports it with
    /// [`WorkerReport::Fenced`], since an owner that vanished between its Kafka commit
    /// and its "committed" report left the group one checkpoint behind Kafka. Left out
    /// when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fence_inputs: Vec<TaskInput>,
}

/// The input partition a task of a job reads (its source partition, or a partition of
/// the job's repartition topic), whose commit point in the job's consumer group is the
/// task's last commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInput {
    /// The job.
    pub job: JobId,
    /// The task, as the job's partitions number it.
    pub partition: PartitionId,
    /// The topic the task reads.
    pub topic: String,
    /// The partition of that topic.
    pub topic_partition: i32,
}

/// `POST /v1/workers/{id}/reports`: what a worker learned that the group should record,
/// so that users see it in `GET /v1/jobs/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkerReport {
    /// A partition this worker owns at `epoch` cannot make progress (`problem`), or
    /// progresses again (`None`). With `fail`, it kept failing past the worker's
    /// failure-rate limit: the job fails with the problem as its reason.
    PartitionProblem {
        job: JobId,
        partition: PartitionId,
        epoch: Epoch,
        problem: Option<String>,
        #[serde(default)]
        fail: bool,
    },
    /// A pending job cannot start (`reason`, e.g. its source topic does not exist), or
    /// the reason no longer holds (`None`).
    JobPending { job: JobId, reason: Option<String> },
    /// The worker fenced these partitions' transactional ids (a fence duty of
    /// [`Assignments::fence`]): nothing they left open holds readers back any more.
    ///
    /// `commit_points` holds, for the fenced partitions whose input the duty named
    /// ([`Assignments::fence_inputs`]), the job's commit point there once fenced: Kafka's
    /// word on which checkpoint committed last, which the group records in place of a
    /// "committed" report the owner never delivered.
    Fenced {
        job: JobId,
        partitions: Vec<PartitionId>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        commit_points: Vec<(PartitionId, i64)>,
    },
    /// The worker deleted every topic weir created for this cancelled job (a
    /// [`Assignments::delete_topics`] duty): they are gone from the broker.
    TopicsDeleted { job: JobId },
    /// The partition this worker owns at `epoch` was asked to pause ([`WorkerAssignment::pause`])
    /// and did: its last checkpoint committed, it holds no open transaction and reads
    /// nothing more. Once every partition of a pausing job reported it, the job is paused
    /// (a stopping one releases the partition).
    Paused {
        job: JobId,
        partition: PartitionId,
        epoch: Epoch,
    },
}

/// One (job, partition) a worker owns, with the job's spec so it can run it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerAssignment {
    pub job: JobId,
    pub partition: PartitionId,
    pub epoch: Epoch,
    pub job_version: u64,
    pub spec: serde_json::Value,
    /// The partition's newest committed checkpoint id the group knows: the new owner's
    /// checkpoint ids must be above it, whatever snapshot it restores.
    #[serde(default)]
    pub committed_checkpoint: Option<CheckpointId>,
    /// The job is pausing, paused or stopping: the partition commits its open checkpoint,
    /// stops consuming and holds no open transaction until this turns false again. Left
    /// out when false, so assignments of running jobs read as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pause: bool,
    /// The group recorded this owner's [`WorkerReport::Paused`] at this epoch: the worker
    /// reports it until this is true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pause_recorded: bool,
    /// The partition counts of the job's repartition topics, in stage order; left out
    /// for a job of one stage. With the task id (`partition`: stage × 10,000 + input
    /// partition) they say which stage this task runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repartitions: Vec<u32>,
    /// How many times the job's downstream stage was rescaled: which repartition topic
    /// its tasks use (`weir_core::spec::stages::repartition_topic_at`). Left out while 0.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub repartition_generation: u32,
    /// Source offsets whose snapshots savepoints (or a pending restore) pin: pruning keeps
    /// them until the savepoint is deleted. Left out when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep_offsets: Vec<i64>,
    /// The offset of the partition's committed cut as the group records it. A later
    /// savepoint pins a cut at or after it, so pruning deletes only snapshots before it
    /// (and none while it is absent); a pin at or after it the worker has not heard of
    /// yet is safe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune_below: Option<i64>,
    /// The job was started from a savepoint: recovery restores this pin instead of the
    /// state at Kafka's commit point, until the partition commits a checkpoint newer than
    /// its `after_checkpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestorePoint>,
    /// For a job with a `join`: the partition counts of its source and of the join's
    /// topic as the group planned the job with, `(left, right)`. They number the join's
    /// upstream tasks (right partition `p` is upstream `left + p`), so every task numbers
    /// them alike whatever the topics' sizes now. Left out for other jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_upstreams: Option<(u32, u32)>,
}

/// `POST /v1/jobs/{id}/partitions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportPartitionsRequest {
    pub partition_count: u32,
    /// The topic counted, when it is not the job's source (a `join`'s right side); left
    /// out for the source, as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

/// `POST /v1/checkpoints`: a batch of checkpoint reports from one worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointReportBatch {
    pub worker: WorkerId,
    pub reports: Vec<CheckpointReport>,
}

/// One step of the exactly-once protocol for one partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointReport {
    pub job: JobId,
    pub partition: PartitionId,
    pub epoch: Epoch,
    pub checkpoint: CheckpointId,
    pub phase: CheckpointPhase,
    pub offset: i64,
    pub snapshot: String,
}

/// The outcome of each report in a batch, in order: `ok`, or why it was refused. A result
/// this reader cannot read (a refusal of a kind, or with fields, from a newer coordinator)
/// reads as [`CheckpointRefusal::Unknown`]: the report was not accepted, and the worker
/// must say so rather than take the whole answer for a lost one and retry it silently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointReportResults {
    #[serde(deserialize_with = "results_as_far_as_known")]
    pub results: Vec<Result<(), CheckpointRefusal>>,
}

/// Reads each result of [`CheckpointReportResults`] on its own, an unreadable one as
/// [`CheckpointRefusal::Unknown`]; the list itself must still be a list.
fn results_as_far_as_known<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Result<(), CheckpointRefusal>>, D::Error> {
    /// One result as sent: one this version reads, or anything else.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Answer {
        Known(Result<(), CheckpointRefusal>),
        Unreadable(serde::de::IgnoredAny),
    }
    let answers = Vec::<Answer>::deserialize(deserializer)?;
    Ok(answers
        .into_iter()
        .map(|answer| match answer {
            Answer::Known(result) => result,
            Answer::Unreadable(_) => Err(CheckpointRefusal::Unknown),
        })
        .collect())
}

/// Why the group refused a checkpoint report, typed end to end: the worker decides by the
/// kind (a stale epoch or a lost ownership means another owner took over) rather than by
/// reading a sentence. On the wire `{"refusal": "<kind>", ...fields}`; a kind this reader
/// does not know, or a known kind whose fields it cannot read (a newer coordinator's, under
/// the same `/v1/`), is [`CheckpointRefusal::Unknown`], which stops the partition with a
/// clear error rather than being taken for a known one. Fields a reader does not know are
/// ignored, so a refusal may gain fields without a new version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "refusal", rename_all = "snake_case")]
pub enum CheckpointRefusal {
    #[error("job {job} not found")]
    UnknownJob { job: JobId },
    #[error("partition {partition} of job {job} not found")]
    UnknownPartition { job: JobId, partition: PartitionId },
    #[error("stale epoch: got {got}, current is {current}")]
    StaleEpoch { got: Epoch, current: Epoch },
    #[error("worker {worker} does not own the partition")]
    NotOwner { worker: WorkerId },
    #[error("offset {offset} is negative")]
    NegativeOffset { offset: i64 },
    #[error("checkpoint {checkpoint} is not newer than committed checkpoint {committed}")]
    NotNewer {
        checkpoint: CheckpointId,
        committed: CheckpointId,
    },
    #[error("checkpoint {checkpoint} was never prepared")]
    NeverPrepared { checkpoint: CheckpointId },
    #[error("checkpoint {checkpoint} was prepared at offset {prepared_offset}, not {offset}")]
    OffsetMismatch {
        checkpoint: CheckpointId,
        prepared_offset: i64,
        offset: i64,
    },
    #[error("checkpoint {checkpoint} is older than committed checkpoint {committed}")]
    OlderThanCommitted {
        checkpoint: CheckpointId,
        committed: CheckpointId,
    },
    /// The group answered something other than exactly one result for one report.
    #[error("the coordinator did not answer the report exactly once")]
    NotAnsweredOnce,
    /// A refusal this version cannot read: a kind it does not know, or a known kind with
    /// fields it cannot read (a newer coordinator's). Neither fencing nor to be retried
    /// as if unanswered.
    #[error(
        "a refusal this worker cannot read (a refusal kind or version from a newer \
         coordinator; upgrade the worker)"
    )]
    #[serde(other)]
    Unknown,
}

impl CheckpointRefusal {
    /// Whether the refusal means another owner took the partition over: this runner is a
    /// zombie and must stop without committing.
    pub fn means_fenced(&self) -> bool {
        matches!(
            self,
            CheckpointRefusal::StaleEpoch { .. }
                | CheckpointRefusal::NotOwner { .. }
                | CheckpointRefusal::UnknownPartition { .. }
                | CheckpointRefusal::UnknownJob { .. }
        )
    }
}

/// Every error answer of the API: one sentence, and the offending field when there is one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Keyed counts (for example jobs by state) reported by status endpoints.
pub type Counts = BTreeMap<String, u64>;

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}
