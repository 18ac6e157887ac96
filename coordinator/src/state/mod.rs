//! The coordinator group's replicated control state: tenants, jobs, workers, placement and
//! checkpoint records. A plain state machine: `apply(command) -> result`, no I/O, no clock;
//! the Raft store feeds it committed entries in log order on every member.

mod checkpoints;
mod command;
mod duties;
mod join_counts;
pub mod lifecycle;
mod rescale;
mod savepoints;
mod stage_cut;
mod versions;

pub use command::{Command, CommandResult, Move, Refusal};
pub use join_counts::join_topic;
use lifecycle::{JobProgress, JobRequest};
pub use savepoints::{Pin, Restore, Savepoint, JOB_SAVEPOINTS_MAX};
pub use versions::{PendingUpgrade, JOB_VERSIONS_MAX};

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use weir_core::ids::{CheckpointId, Epoch, JobId, PartitionId, SavepointId, TenantName, WorkerId};
use weir_core::spec::stages::plan_stages;
use weir_core::wire::{CheckpointRecord, JobState, WorkerReport};

/// Checkpoint records kept per partition; older ones are garbage-collected on apply.
pub const CHECKPOINT_RECORDS_PER_PARTITION_MAX: usize = 16;
/// Tokens a tenant may hold at once (rotation replaces them all).
pub const TENANT_TOKENS_MAX: usize = 4;
/// Partitions a job may have; more is refused rather than placed.
pub const JOB_PARTITIONS_MAX: u32 = 4096;
/// Idempotency keys remembered, oldest forgotten first; a client retries for seconds, so
/// this covers far more than any retry window.
pub const IDEMPOTENCY_KEYS_MAX: usize = 10_000;
/// Longest problem or reason text a worker report may record, in bytes; longer ones are
/// cut (at a character boundary).
pub const REPORTED_REASON_BYTES_MAX: usize = 1024;
/// Longest idempotency key accepted, as a client sends it (the API checks this).
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 128;
/// Longest stored key of a command carrying a request digest: the client's key plus the
/// caller's prefix (`tenant:<63-byte name>/`). Entries without a digest (written before
/// digests existed) keep the old bound on the prefixed key, so replaying them answers as
/// it did then.
pub const SCOPED_IDEMPOTENCY_KEY_BYTES_MAX: usize = IDEMPOTENCY_KEY_BYTES_MAX + 72;

/// A tenant: the owner of jobs and of the tokens that act for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub name: TenantName,
    /// SHA-256 hex digests of the tenant's tokens; the tokens themselves are never stored.
    pub token_hashes: Vec<String>,
    pub created_at_ms: u64,
}

/// A job and where each of its partitions runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub tenant: TenantName,
    pub name: String,
    pub version: u64,
    pub spec: serde_json::Value,
    pub state: JobState,
    pub reason: Option<String>,
    pub partition_count: Option<u32>,
    /// Every task of the job by task id: stage 0's are numbered like their source
    /// partitions, stage `s`'s from `s × TASK_STAGE_STRIDE` (`weir_core::spec::stages`).
    pub partitions: BTreeMap<PartitionId, PartitionState>,
    pub submitted_at_ms: u64,
    /// The partition counts of the job's repartition topics, in stage order, fixed when
    /// the source's partition count is first known (a later growth of the source changes
    /// neither them nor the later stages' tasks). Empty for a job of one stage, and for
    /// every job submitted before stages existed, which so keeps running as it did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repartitions: Vec<u32>,
    /// A worker deleted the job's repartition topics after it was cancelled.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub topics_deleted: bool,
    /// Whether the job's last stop drained its repartition topics (every downstream task
    /// paused after reading its input to the end), so its stopped cut is one across the
    /// stages (`stage_cut.rs`); meaningful while the job is stopped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped_drained: bool,
    /// The job's savepoints by id, at most [`JOB_SAVEPOINTS_MAX`]; kept until deleted.
    /// Left out when empty, so states without savepoints encode as before.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub savepoints: BTreeMap<SavepointId, Savepoint>,
    /// Savepoints ever taken: the next one's id is one more (ids are never reused).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub savepoints_taken: u64,
    /// The job's versions, oldest first, at most [`JOB_VERSIONS_MAX`]; empty until the
    /// first upgrade (which records version 1, the submitted spec, and its own). Left out
    /// when empty, so states without upgrades encode as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<weir_core::wire::JobVersionInfo>,
    /// The upgrade an `upgrading` job waits to install once it is released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<PendingUpgrade>,
    /// The partition count of the `join`'s right topic (`join.with.topic`), for a job
    /// with a join: the job is planned once both it and the source's are known
    /// (`join_counts.rs`). Left out when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_partition_count: Option<u32>,
    /// The source's partition count a job with a join was planned with: with
    /// [`join_partition_count`](Self::join_partition_count), what numbers its upstream
    /// tasks. A source that grows later adds no task to such a job. Left out when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_left_partitions: Option<u32>,
    /// How many times the job's downstream stage was rescaled (`rescale.rs`): its tasks
    /// and repartition topic are this generation's. Left out while 0.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub repartition_generation: u32,
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The owner and checkpoint history of one (job, partition).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionState {
    /// The worker that owns the partition now, if any.
    pub worker: Option<WorkerId>,
    /// Grows by one at every change of owner; writes with another epoch are refused.
    pub epoch: Epoch,
    /// Newest last; at most `CHECKPOINT_RECORDS_PER_PARTITION_MAX`.
    pub checkpoints: VecDeque<CheckpointRecord>,
    /// The newest committed checkpoint and its source offset.
    pub committed: Option<(CheckpointId, i64)>,
    /// Why the partition cannot make progress, as its owner last reported; cleared when
    /// the partition moves.
    #[serde(default)]
    pub problem: Option<String>,
    /// Whether a worker fenced the partition's transactional id since it last had an
    /// owner, so that nothing its last owner left open holds readers back.
    #[serde(default)]
    pub fenced: bool,
    /// Whether this owner (at this epoch) reported the partition paused: committed, no
    /// open transaction, reading nothing. Cleared when the partition moves or the job
    /// resumes. Left out when false, so states without pauses encode as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// The job was started from a savepoint and this partition has not committed since:
    /// its recovery restores the savepoint's pin. Left out when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<Restore>,
    /// The partition was released after its owner reported it paused (a clean stop: the
    /// group's committed cut is Kafka's). A stopping job with a savepoint pending places
    /// a partition released any other way again, so that its next owner settles its cut.
    /// Left out when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub released_paused: bool,
}

/// The partition counts of the repartition topics of `job`'s stage plan, its source having
/// `source_partitions`; empty when it does not shuffle (or its spec does not read, which
/// validation at submit rules out).
fn planned_repartitions(job: &Job, source_partitions: u32) -> Vec<u32> {
    let Ok(spec) = serde_json::from_value::<weir_core::spec::JobSpec>(job.spec.clone()) else {
        return Vec::new();
    };
    repartition_counts(&spec, job.id, source_partitions)
}

/// The partition counts of the repartition topics `spec`'s stage plan has for job `job`,
/// its source having `source_partitions`; empty when it does not shuffle.
fn repartition_counts(
    spec: &weir_core::spec::JobSpec,
    job: JobId,
    source_partitions: u32,
) -> Vec<u32> {
    match plan_stages(spec, job, source_partitions) {
        Ok(plan) => plan
            .repartition_topics()
            .iter()
            .map(|topic| topic.partitions)
            .collect(),
        Err(_) => Vec::new(),
    }
}

impl PartitionState {
    /// A task no worker has owned yet.
    pub fn unowned() -> Self {
        PartitionState {
            worker: None,
            epoch: Epoch(0),
            checkpoints: VecDeque::new(),
            committed: None,
            problem: None,
            fenced: false,
            paused: false,
            restore: None,
            released_paused: false,
        }
    }

    /// Whether the partition has no owner, had one (epoch above 0), and its transactional
    /// id was not fenced since: its last owner may have left a transaction open.
    pub fn needs_fencing(&self) -> bool {
        self.worker.is_none() && self.epoch.0 > 0 && !self.fenced
    }
}

/// A registered worker. Liveness (its lease) is tracked by the leader, not replicated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Worker {
    pub id: WorkerId,
    pub addr: String,
    pub registered_at_ms: u64,
}

/// Everything the coordinator group agrees on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ControlState {
    pub tenants: BTreeMap<TenantName, Tenant>,
    pub jobs: BTreeMap<JobId, Job>,
    pub next_job_id: u64,
    pub workers: BTreeMap<WorkerId, Worker>,
    /// Answers to recent idempotent requests, by key, and the keys in arrival order.
    #[serde(default)]
    pub answered: BTreeMap<String, CommandResult>,
    #[serde(default)]
    pub answered_order: VecDeque<String>,
    /// Coordinators known to have stored part of the log (`Command::MembersSeen`).
    #[serde(default)]
    pub members_seen: std::collections::BTreeSet<u64>,
    /// The request digest stored with each answered key that came with one.
    #[serde(default)]
    pub answered_digests: BTreeMap<String, String>,
}

impl ControlState {
    /// Applies one committed command. Deterministic: the same commands in the same order
    /// give the same state on every member.
    pub fn apply(&mut self, command: &Command) -> CommandResult {
        let result = match command {
            Command::CreateTenant {
                name,
                token_hash,
                at_ms,
            } => self.create_tenant(name, token_hash, *at_ms),
            Command::RotateTenantToken { name, token_hash } => self.rotate_token(name, token_hash),
            Command::SubmitJob {
                tenant,
                name,
                spec,
                at_ms,
            } => self.submit_job(tenant, name, spec, *at_ms),
            Command::CancelJob { job, tenant } => {
                self.request(*job, tenant.as_ref(), JobRequest::Cancel)
            }
            Command::ChangeJobState {
                job,
                tenant,
                request,
            } => self.request(*job, tenant.as_ref(), *request),
            Command::FinishStop { .. }
            | Command::UpgradeJob { .. }
            | Command::RescaleJob { .. } => self.apply_version_command(command),
            Command::TakeSavepoint { .. }
            | Command::StopWithSavepoint { .. }
            | Command::StartFromSavepoint { .. }
            | Command::DeleteSavepoint { .. } => self.apply_savepoint_command(command),
            Command::RegisterWorker {
                worker,
                addr,
                at_ms,
            } => self.register_worker(worker, addr, *at_ms),
            Command::RemoveWorker { worker, .. } => self.remove_worker(worker),
            Command::SetPartitionCount {
                job,
                partition_count,
            } => self.set_partition_count(*job, *partition_count),
            Command::SetTopicPartitionCount {
                job,
                topic,
                partition_count,
            } => self.set_topic_partition_count(*job, topic, *partition_count),
            Command::Place { moves } => self.place(moves),
            Command::FinishCancel { job } => self.finish_release(*job, JobState::Cancelling),
            Command::FailJob { job, reason } => self.fail_job(*job, reason),
            Command::MembersSeen { members } => {
                self.members_seen.extend(members.iter().copied());
                Ok(CommandResult::Done)
            }
            Command::Checkpoint {
                worker,
                reports,
                at_ms,
            } => Ok(self.apply_checkpoints(worker, reports, *at_ms)),
            Command::WorkerReport { worker, report } => self.worker_report(worker, report),
            Command::Noop => Ok(CommandResult::Done),
            Command::Idempotent {
                key,
                command,
                digest,
            } => return self.apply_once(key, digest.as_deref(), command),
            Command::Batch(commands) => Ok(CommandResult::Batch(
                commands
                    .iter()
                    .map(|c| match c {
                        Command::Batch(_) => CommandResult::Refused(Refusal::Invalid(
                            "a batch inside a batch".into(),
                        )),
                        c => self.apply(c),
                    })
                    .collect(),
            )),
        };
        result.unwrap_or_else(CommandResult::Refused)
    }

    fn register_worker(
        &mut self,
        worker: &WorkerId,
        addr: &str,
        at_ms: u64,
    ) -> Result<CommandResult, Refusal> {
        let registration = Worker {
            id: worker.clone(),
            addr: addr.to_string(),
            registered_at_ms: at_ms,
        };
        self.workers.insert(worker.clone(), registration);
        Ok(CommandResult::Done)
    }

    fn apply_once(&mut self, key: &str, digest: Option<&str>, command: &Command) -> CommandResult {
        if let Some(answer) = self.answered.get(key) {
            // A key answered with a digest answers again only the same request; one
            // stored without a digest (older entries) cannot be compared and answers as
            // before.
            return match (digest, self.answered_digests.get(key)) {
                (Some(new), Some(stored)) if new != stored => {
                    CommandResult::Refused(Refusal::IdempotencyKeyReused)
                }
                _ => answer.clone(),
            };
        }
        let key_bytes_max = if digest.is_some() {
            SCOPED_IDEMPOTENCY_KEY_BYTES_MAX
        } else {
            IDEMPOTENCY_KEY_BYTES_MAX
        };
        if key.is_empty()
            || key.len() > key_bytes_max
            || matches!(command, Command::Idempotent { .. })
        {
            return CommandResult::Refused(Refusal::Invalid("invalid idempotency key".into()));
        }
        let answer = self.apply(command);
        self.answered.insert(key.to_string(), answer.clone());
        if let Some(digest) = digest {
            self.answered_digests
                .insert(key.to_string(), digest.to_string());
        }
        self.answered_order.push_back(key.to_string());
        while self.answered_order.len() > IDEMPOTENCY_KEYS_MAX {
            if let Some(old) = self.answered_order.pop_front() {
                self.answered.remove(&old);
                self.answered_digests.remove(&old);
            }
        }
        debug_assert_eq!(self.answered.len(), self.answered_order.len());
        answer
    }

    /// The tenant a token acts for, given the token's hash.
    pub fn tenant_by_token_hash(&self, token_hash: &str) -> Option<&TenantName> {
        self.tenants
            .values()
            .find(|t| t.token_hashes.iter().any(|h| h == token_hash))
            .map(|t| &t.name)
    }

    /// The (job, partition) assignments of one worker, in order.
    pub fn assignments_of(&self, worker: &WorkerId) -> Vec<(JobId, PartitionId, Epoch)> {
        let mut out = Vec::new();
        for job in self.jobs.values() {
            for (partition, p) in &job.partitions {
                if p.worker.as_ref() == Some(worker) {
                    out.push((job.id, *partition, p.epoch));
                }
            }
        }
        out
    }

    fn create_tenant(
        &mut self,
        name: &TenantName,
        token_hash: &str,
        at_ms: u64,
    ) -> Result<CommandResult, Refusal> {
        if self.tenants.contains_key(name) {
            return Err(Refusal::Conflict(format!("tenant {name} already exists")));
        }
        self.tenants.insert(
            name.clone(),
            Tenant {
                name: name.clone(),
                token_hashes: vec![token_hash.to_string()],
                created_at_ms: at_ms,
            },
        );
        Ok(CommandResult::Done)
    }

    fn rotate_token(
        &mut self,
        name: &TenantName,
        token_hash: &str,
    ) -> Result<CommandResult, Refusal> {
        let tenant = self
            .tenants
            .get_mut(name)
            .ok_or_else(|| Refusal::NotFound(format!("tenant {name}")))?;
        tenant.token_hashes = vec![token_hash.to_string()];
        debug_assert!(tenant.token_hashes.len() <= TENANT_TOKENS_MAX);
        Ok(CommandResult::Done)
    }

    fn submit_job(
        &mut self,
        tenant: &TenantName,
        name: &str,
        spec: &serde_json::Value,
        at_ms: u64,
    ) -> Result<CommandResult, Refusal> {
        if !self.tenants.contains_key(tenant) {
            return Err(Refusal::NotFound(format!("tenant {tenant}")));
        }
        let taken = self.jobs.values().any(|j| {
            &j.tenant == tenant
                && j.name == name
                && !matches!(j.state, JobState::Cancelled | JobState::Failed)
        });
        if taken {
            return Err(Refusal::Conflict(format!(
                "a job named {name} already exists in tenant {tenant}"
            )));
        }
        self.next_job_id += 1;
        let id = JobId(self.next_job_id);
        let version = 1;
        self.jobs.insert(
            id,
            Job {
                id,
                tenant: tenant.clone(),
                name: name.to_string(),
                version,
                spec: spec.clone(),
                state: JobState::Pending,
                reason: None,
                partition_count: None,
                partitions: BTreeMap::new(),
                submitted_at_ms: at_ms,
                repartitions: Vec::new(),
                topics_deleted: false,
                stopped_drained: false,
                savepoints: BTreeMap::new(),
                savepoints_taken: 0,
                versions: Vec::new(),
                upgrade: None,
                join_partition_count: None,
                join_left_partitions: None,
                repartition_generation: 0,
            },
        );
        Ok(CommandResult::JobSubmitted { id, version })
    }

    fn job_mut(&mut self, job: JobId) -> Result<&mut Job, Refusal> {
        self.jobs
            .get_mut(&job)
            .ok_or_else(|| Refusal::NotFound(format!("job {job}")))
    }

    /// A user's life-cycle request, decided by [`lifecycle::on_request`]. A job that
    /// resumes or starts again forgets its partitions' pause reports.
    fn request(
        &mut self,
        job: JobId,
        tenant: Option<&TenantName>,
        request: JobRequest,
    ) -> Result<CommandResult, Refusal> {
        let j = self.job_mut(job)?;
        if tenant.is_some_and(|t| t != &j.tenant) {
            return Err(Refusal::NotFound(format!("job {job}")));
        }
        let next = lifecycle::on_request(j.state, request)
            .map_err(|e| Refusal::Conflict(format!("job {job}: {e}")))?;
        if !lifecycle::wants_pause(next) {
            // A pause or a release of an earlier stop says nothing about the next one.
            for p in j.partitions.values_mut() {
                p.paused = false;
                p.released_paused = false;
            }
        }
        if next != JobState::Upgrading {
            // Cancelled while upgrading: the upgrade is abandoned.
            j.upgrade = None;
        }
        j.state = next;
        j.settle_savepoints();
        Ok(CommandResult::Done)
    }

    fn remove_worker(&mut self, worker: &WorkerId) -> Result<CommandResult, Refusal> {
        if self.workers.remove(worker).is_none() {
            return Err(Refusal::NotFound(format!("worker {worker}")));
        }
        // Its partitions stay at their epoch with no owner; the scheduler places them
        // again with epoch + 1, which fences anything the old owner still sends.
        for job in self.jobs.values_mut() {
            for p in job.partitions.values_mut() {
                if p.worker.as_ref() == Some(worker) {
                    p.worker = None;
                }
            }
        }
        Ok(CommandResult::Done)
    }

    fn set_partition_count(
        &mut self,
        job: JobId,
        partition_count: u32,
    ) -> Result<CommandResult, Refusal> {
        if partition_count == 0 || partition_count > JOB_PARTITIONS_MAX {
            return Err(Refusal::Invalid(format!(
                "partition count {partition_count} is outside 1..={JOB_PARTITIONS_MAX}"
            )));
        }
        let j = self.job_mut(job)?;
        match j.partition_count {
            Some(n) if n == partition_count => return Ok(CommandResult::Done),
            // Growing a topic adds partitions; Kafka never shrinks one.
            Some(n) if n > partition_count => {
                return Err(Refusal::Conflict(format!(
                    "job {job} already has {n} partitions; a topic cannot shrink"
                )))
            }
            _ => {}
        }
        let first_count = j.partition_count.is_none();
        j.partition_count = Some(partition_count);
        if first_count {
            j.plan_later_stages();
        }
        if j.state == JobState::Pending {
            // The reason it was pending (its source topic could not be read) is gone.
            j.reason = None;
        }
        if j.awaits_partition_counts() {
            return Ok(CommandResult::Done);
        }
        // A join's upstream tasks are numbered by the counts it was planned with.
        let partition_count = j.join_left_partitions.unwrap_or(partition_count);
        for p in 0..partition_count {
            j.partitions
                .entry(PartitionId(p))
                .or_insert_with(PartitionState::unowned);
        }
        Ok(CommandResult::Done)
    }

    fn place(&mut self, moves: &[Move]) -> Result<CommandResult, Refusal> {
        // Check the whole batch first, so a refused batch changes nothing.
        for m in moves {
            let job = self
                .jobs
                .get(&m.job)
                .ok_or_else(|| Refusal::NotFound(format!("job {}", m.job)))?;
            let p = job.partitions.get(&m.partition).ok_or_else(|| {
                Refusal::NotFound(format!("partition {} of job {}", m.partition, m.job))
            })?;
            if m.epoch != p.epoch.next() {
                return Err(Refusal::StaleEpoch {
                    job: m.job,
                    partition: m.partition,
                    got: m.epoch,
                    current: p.epoch,
                });
            }
            if let Some(w) = &m.worker {
                if !self.workers.contains_key(w) {
                    return Err(Refusal::NotFound(format!("worker {w}")));
                }
            }
        }
        for m in moves {
            let job = self.jobs.get_mut(&m.job).expect("checked above");
            let p = job.partitions.get_mut(&m.partition).expect("checked above");
            p.released_paused = m.worker.is_none() && p.paused;
            p.worker = m.worker.clone();
            p.epoch = m.epoch;
            p.problem = None;
            p.fenced = false;
            p.paused = false;
        }
        for m in moves {
            let job = self.jobs.get_mut(&m.job).expect("checked above");
            let all_placed = job.partitions.values().all(|p| p.worker.is_some());
            if all_placed && !job.awaits_partition_counts() {
                if let Some(next) = lifecycle::on_progress(job.state, JobProgress::AllPlaced) {
                    job.state = next;
                }
            }
        }
        Ok(CommandResult::Done)
    }

    /// A cancelling, stopping or upgrading job (`releasing`) whose partitions all have no
    /// owner and need no fencing becomes cancelled, stopped or (its new version) pending.
    pub(super) fn finish_release(
        &mut self,
        job: JobId,
        releasing: JobState,
    ) -> Result<CommandResult, Refusal> {
        // With no worker registered nobody can fence; Kafka's transaction timeout ends
        // whatever the last owners left open.
        let nobody_to_fence = self.workers.is_empty();
        let j = self.job_mut(job)?;
        if j.state != releasing {
            return Err(Refusal::Conflict(format!(
                "job {job} is {}, not {}",
                j.state.as_str(),
                releasing.as_str()
            )));
        }
        if j.partitions.values().any(|p| p.worker.is_some()) {
            return Err(Refusal::Conflict(format!(
                "job {job} still has partitions placed"
            )));
        }
        if !nobody_to_fence && j.partitions.values().any(PartitionState::needs_fencing) {
            return Err(Refusal::Conflict(format!(
                "job {job} has partitions not yet fenced"
            )));
        }
        j.record_stop_cut(releasing);
        if j.state == JobState::Upgrading {
            j.finish_upgrade();
            return Ok(CommandResult::Done);
        }
        if let Some(next) = lifecycle::on_progress(j.state, JobProgress::AllReleased) {
            j.state = next;
        }
        j.settle_savepoints();
        Ok(CommandResult::Done)
    }

    fn fail_job(&mut self, job: JobId, reason: &str) -> Result<CommandResult, Refusal> {
        let j = self.job_mut(job)?;
        let Some(next) = lifecycle::on_progress(j.state, JobProgress::Failed) else {
            return Ok(CommandResult::Done);
        };
        j.state = next;
        j.reason = Some(reason.to_string());
        j.upgrade = None;
        j.settle_savepoints();
        for p in j.partitions.values_mut() {
            if p.worker.take().is_some() {
                p.epoch = p.epoch.next();
                p.fenced = false;
            }
        }
        Ok(CommandResult::Done)
    }

    fn worker_report(
        &mut self,
        worker: &WorkerId,
        report: &WorkerReport,
    ) -> Result<CommandResult, Refusal> {
        match report {
            WorkerReport::PartitionProblem {
                job,
                partition,
                epoch,
                problem,
                fail,
            } => {
                let j = self.job_mut(*job)?;
                let p = j.partitions.get_mut(partition).ok_or_else(|| {
                    Refusal::NotFound(format!("partition {partition} of job {job}"))
                })?;
                if p.epoch != *epoch || p.worker.as_ref() != Some(worker) {
                    return Err(Refusal::StaleEpoch {
                        job: *job,
                        partition: *partition,
                        got: *epoch,
                        current: p.epoch,
                    });
                }
                let problem = problem.as_deref().map(bounded_reason);
                p.problem = problem.clone();
                if *fail {
                    let reason = format!(
                        "partition {partition} kept failing: {}",
                        problem.as_deref().unwrap_or("no reason given")
                    );
                    return self.fail_job(*job, &bounded_reason(&reason));
                }
                Ok(CommandResult::Done)
            }
            WorkerReport::JobPending { job, reason } => {
                if !self.workers.contains_key(worker) {
                    return Err(Refusal::NotFound(format!("worker {worker}")));
                }
                let j = self.job_mut(*job)?;
                // Only a pending job's reason is the worker's to set.
                if j.state == JobState::Pending {
                    j.reason = reason.as_deref().map(bounded_reason);
                }
                Ok(CommandResult::Done)
            }
            WorkerReport::Fenced {
                job,
                partitions,
                commit_points,
            } => self.partitions_fenced(worker, *job, partitions, commit_points),
            WorkerReport::Paused {
                job,
                partition,
                epoch,
            } => self.partition_paused(worker, *job, *partition, *epoch),
            WorkerReport::TopicsDeleted { job } => {
                if !self.workers.contains_key(worker) {
                    return Err(Refusal::NotFound(format!("worker {worker}")));
                }
                let j = self.job_mut(*job)?;
                if j.state == JobState::Cancelled {
                    j.topics_deleted = true;
                }
                Ok(CommandResult::Done)
            }
        }
    }

    /// Records the owner's report that a partition is paused; the last one of a pausing
    /// job makes it paused.
    fn partition_paused(
        &mut self,
        worker: &WorkerId,
        job: JobId,
        partition: PartitionId,
        epoch: Epoch,
    ) -> Result<CommandResult, Refusal> {
        let j = self.job_mut(job)?;
        if !lifecycle::wants_pause(j.state) {
            // Resumed (or cancelled) since the pause this report answers.
            return Err(Refusal::Conflict(format!(
                "job {job} is {}, not pausing",
                j.state.as_str()
            )));
        }
        let p = j
            .partitions
            .get_mut(&partition)
            .ok_or_else(|| Refusal::NotFound(format!("partition {partition} of job {job}")))?;
        if p.epoch != epoch || p.worker.as_ref() != Some(worker) {
            return Err(Refusal::StaleEpoch {
                job,
                partition,
                got: epoch,
                current: p.epoch,
            });
        }
        p.paused = true;
        let all_paused = j
            .partitions
            .values()
            .all(|p| p.paused && p.worker.is_some());
        if all_paused {
            if let Some(next) = lifecycle::on_progress(j.state, JobProgress::AllPaused) {
                j.state = next;
            }
        }
        Ok(CommandResult::Done)
    }
}

/// `text` cut to [`REPORTED_REASON_BYTES_MAX`] at a character boundary.
fn bounded_reason(text: &str) -> String {
    let mut end = text.len().min(REPORTED_REASON_BYTES_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests;
