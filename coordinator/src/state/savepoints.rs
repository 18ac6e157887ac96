//! Savepoints: a job's consistent cut kept until a user deletes it, and a stopped job
//! started again from one (docs/ARCHITECTURE.md, "Savepoints").
//!
//! A savepoint pins, per partition, the cut the partition committed last as the group
//! records it ([`PartitionState::committed_cut`]): a committed checkpoint's source offset
//! and the snapshot stored at exactly that offset. Each partition's cut is consistent on
//! its own (its state is exactly the state after its input before that offset), and a
//! job's partitions need no common barrier, so pinning each partition's cut is the whole
//! savepoint. The pins are copied into the savepoint, so the bound on checkpoint records
//! never drops them; workers learn the pinned offsets in their assignments and never prune
//! those snapshots.
//!
//! A savepoint of a running job pins what each partition committed when the request was
//! applied (at most one checkpoint interval old); one of a stopping job (`stop` with a
//! savepoint) waits, `pending`, until the job is stopped and pins the stop's cut, which
//! is exactly where a plain start would resume. A start from a savepoint records the pin
//! per partition as a [`Restore`], honoured by the partition's recovery until it commits a
//! checkpoint newer than every id the partition used before.

use super::{lifecycle, CommandResult, ControlState, Job, PartitionState, Refusal};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use weir_core::ids::{CheckpointId, JobId, PartitionId, SavepointId, TenantName};
use weir_core::wire::{JobState, RestorePoint, SavepointInfo, SavepointPartition, SavepointStatus};

/// Savepoints a job may hold at once (pending, complete or failed); one more is refused
/// (409) until one is deleted. Each pins a snapshot per partition in the checkpoint store.
pub const JOB_SAVEPOINTS_MAX: usize = 32;

/// One partition's cut: a committed checkpoint's offset and snapshot, or offset 0 with no
/// checkpoint (empty state) for a partition that never committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    pub checkpoint: Option<CheckpointId>,
    pub offset: i64,
    pub snapshot: Option<String>,
    /// The job version whose pipeline wrote the snapshot. Left out for version 1, so
    /// states from before upgrades encode as before.
    #[serde(default = "first_version", skip_serializing_if = "is_first_version")]
    pub version: u64,
    /// Stateful stages that upgrades since `version` started empty (a partition that
    /// committed nothing in between keeps an older version's pin): carrying this pin into
    /// a later version drops them too. Left out when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state_drop: Vec<String>,
    /// A task of a rescaled stage that has not committed since the rescale: its state is
    /// the keys routed to it from these pins of the stage's tasks before the rescale
    /// (`rescale.rs`); its own offset is 0 of its new topic. Left out otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<(PartitionId, Pin)>,
}

fn first_version() -> u64 {
    1
}

fn is_first_version(version: &u64) -> bool {
    *version == 1
}

/// A savepoint of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Savepoint {
    pub id: SavepointId,
    pub requested_at_ms: u64,
    pub status: SavepointStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Every partition's pin once complete; empty while pending.
    pub pins: BTreeMap<PartitionId, Pin>,
    /// Whether the pins are one cut across the job's stages (always, for a job of one
    /// stage; see `Job::stage_cut_consistent`). Savepoints recorded before weir drained
    /// the stages read as `false`, and a job that repartitions does not start from them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stage_cut: bool,
}

/// A partition of a job started from a savepoint: recovery restores `pin` rather than the
/// state at Kafka's commit point, until the partition commits a checkpoint newer than
/// `after_checkpoint`; that commit clears it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restore {
    pub savepoint: SavepointId,
    pub pin: Pin,
    /// The highest checkpoint id the partition used before the start; the restored run's
    /// ids start above it, which is how recovery tells its commits from the older ones.
    pub after_checkpoint: Option<CheckpointId>,
    /// An upgrade's stateful stages that start empty (its `allow_state_drop`). Left out
    /// when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state_drop: Vec<String>,
}

impl PartitionState {
    /// The cut the partition resumes from now: a pending restore's pin, else its newest
    /// committed checkpoint with the snapshot its record names, else offset 0 and empty
    /// state. A savepoint pins exactly this; the offset only ever grows within one run.
    /// `version` is the job's current one: whatever the partition committed since its
    /// last restore point was written by it.
    pub fn committed_cut(&self, version: u64) -> Pin {
        if let Some(restore) = &self.restore {
            return Pin {
                state_drop: restore.state_drop.clone(),
                ..restore.pin.clone()
            };
        }
        match self.committed {
            Some((checkpoint, offset)) => Pin {
                checkpoint: Some(checkpoint),
                offset,
                snapshot: self
                    .checkpoints
                    .iter()
                    .find(|c| c.checkpoint == checkpoint && c.offset == offset)
                    .map(|c| c.snapshot.clone()),
                version,
                state_drop: Vec::new(),
                sources: Vec::new(),
            },
            None => Pin {
                checkpoint: None,
                offset: 0,
                snapshot: None,
                version,
                state_drop: Vec::new(),
                sources: Vec::new(),
            },
        }
    }

    /// The highest checkpoint id the partition has used, committed or only prepared.
    pub(super) fn highest_checkpoint(&self) -> Option<CheckpointId> {
        let recorded = self.checkpoints.iter().map(|c| c.checkpoint).max();
        let committed = self.committed.map(|(c, _)| c);
        let restored = self.restore.as_ref().and_then(|r| r.after_checkpoint);
        recorded.max(committed).max(restored)
    }

    /// The checkpoint id the partition's next owner must start above.
    pub fn checkpoint_floor(&self) -> Option<CheckpointId> {
        let committed = self.committed.map(|(c, _)| c);
        let restored = self.restore.as_ref().and_then(|r| r.after_checkpoint);
        committed.max(restored)
    }

    /// The restore point a worker is told, if the partition is to restore a savepoint.
    pub fn restore_point(&self) -> Option<RestorePoint> {
        self.restore.as_ref().map(|r| RestorePoint {
            savepoint: r.savepoint,
            checkpoint: r.pin.checkpoint,
            offset: r.pin.offset,
            snapshot: r.pin.snapshot.clone(),
            after_checkpoint: r.after_checkpoint,
            spec_before: None,
            state_drop: r.state_drop.clone(),
            redistribute: r
                .pin
                .sources
                .iter()
                .map(|(partition, pin)| weir_core::wire::RestoreSource {
                    partition: *partition,
                    checkpoint: pin.checkpoint,
                    offset: pin.offset,
                })
                .collect(),
        })
    }
}

impl Job {
    /// Whether a savepoint waits for the job to stop.
    pub fn has_pending_savepoint(&self) -> bool {
        self.savepoints
            .values()
            .any(|sp| sp.status == SavepointStatus::Pending)
    }

    /// The offsets of `partition` whose snapshots a savepoint or a pending restore pins,
    /// sorted, each once: the worker's pruning keeps them.
    pub fn pinned_offsets(&self, partition: PartitionId) -> Vec<i64> {
        let mut offsets: Vec<i64> = self
            .savepoints
            .values()
            .filter_map(|sp| sp.pins.get(&partition))
            .chain(
                self.partitions
                    .get(&partition)
                    .and_then(|p| p.restore.as_ref())
                    .map(|r| &r.pin),
            )
            .filter(|pin| pin.checkpoint.is_some())
            .map(|pin| pin.offset)
            .collect();
        offsets.sort_unstable();
        offsets.dedup();
        offsets
    }

    /// Pins every partition's committed cut into `savepoint`.
    pub(super) fn pin_all(&mut self, savepoint: SavepointId) {
        let pins: BTreeMap<PartitionId, Pin> = self
            .partitions
            .iter()
            .map(|(partition, p)| (*partition, p.committed_cut(self.version)))
            .collect();
        let stage_cut = self.stage_cut_consistent();
        if let Some(sp) = self.savepoints.get_mut(&savepoint) {
            debug_assert_eq!(sp.status, SavepointStatus::Pending);
            sp.pins = pins;
            sp.status = SavepointStatus::Complete;
            sp.stage_cut = stage_cut;
        }
    }

    /// Whether a savepoint taken now must wait: the job is stopping (or upgrading), or stopped with a
    /// partition never fenced (a stop with no worker left to fence finishes anyway). An
    /// unfenced partition's last owner may have committed in Kafka without its report
    /// arriving; the fencer reads Kafka's commit point and settles the cut first.
    fn savepoint_waits(&self) -> bool {
        matches!(self.state, JobState::Stopping | JobState::Upgrading)
            || (self.state == JobState::Stopped
                && self.partitions.values().any(|p| p.needs_fencing()))
    }

    /// Completes the pending savepoints of a job that is now stopped (and fenced), and
    /// fails those of one that can no longer stop or that started again first. Called
    /// after every change of the job's state and every fencing.
    pub(super) fn settle_savepoints(&mut self) {
        let pending: Vec<SavepointId> = self
            .savepoints
            .values()
            .filter(|sp| sp.status == SavepointStatus::Pending)
            .map(|sp| sp.id)
            .collect();
        for id in pending {
            match self.state {
                JobState::Stopped if !self.savepoint_waits() => self.pin_all(id),
                JobState::Stopped => {}
                JobState::Pending | JobState::Running => {
                    if let Some(sp) = self.savepoints.get_mut(&id) {
                        sp.status = SavepointStatus::Failed;
                        sp.reason = Some(
                            "the job started again before a partition of its stop was fenced"
                                .into(),
                        );
                    }
                }
                JobState::Cancelling | JobState::Cancelled | JobState::Failed => {
                    let state = self.state.as_str();
                    if let Some(sp) = self.savepoints.get_mut(&id) {
                        sp.status = SavepointStatus::Failed;
                        sp.reason = Some(format!("the job became {state} before it stopped"));
                    }
                }
                _ => {}
            }
        }
    }

    /// The savepoint as the API shows it.
    pub fn savepoint_info(&self, savepoint: &Savepoint) -> SavepointInfo {
        SavepointInfo {
            savepoint: savepoint.id,
            job: self.id,
            status: savepoint.status,
            requested_at_ms: savepoint.requested_at_ms,
            reason: savepoint.reason.clone(),
            partitions: savepoint
                .pins
                .iter()
                .map(|(partition, pin)| SavepointPartition {
                    partition: *partition,
                    checkpoint: pin.checkpoint,
                    offset: pin.offset,
                    snapshot: pin.snapshot.clone(),
                })
                .collect(),
        }
    }
}

impl ControlState {
    /// Applies one of the savepoint commands; any other command is refused as invalid.
    pub(super) fn apply_savepoint_command(
        &mut self,
        command: &super::Command,
    ) -> Result<CommandResult, Refusal> {
        use super::Command as C;
        match command {
            C::TakeSavepoint { job, tenant, at_ms } => {
                self.take_savepoint(*job, tenant.as_ref(), *at_ms)
            }
            C::StopWithSavepoint { job, tenant, at_ms } => {
                self.stop_with_savepoint(*job, tenant.as_ref(), *at_ms)
            }
            C::StartFromSavepoint {
                job,
                tenant,
                savepoint,
            } => self.start_from_savepoint(*job, tenant.as_ref(), *savepoint),
            C::DeleteSavepoint {
                job,
                tenant,
                savepoint,
            } => self.delete_savepoint(*job, tenant.as_ref(), *savepoint),
            other => Err(Refusal::Invalid(format!(
                "not a savepoint command: {other:?}"
            ))),
        }
    }

    /// The job if the caller may see it (`tenant` limits to that tenant's jobs).
    pub(super) fn visible_job_mut(
        &mut self,
        job: JobId,
        tenant: Option<&TenantName>,
    ) -> Result<&mut Job, Refusal> {
        let j = self.job_mut(job)?;
        if tenant.is_some_and(|t| t != &j.tenant) {
            return Err(Refusal::NotFound(format!("job {job}")));
        }
        Ok(j)
    }

    /// `Command::TakeSavepoint`: pins every partition's committed cut now, or (a stopping
    /// job) once the job is stopped.
    pub(super) fn take_savepoint(
        &mut self,
        job: JobId,
        tenant: Option<&TenantName>,
        at_ms: u64,
    ) -> Result<CommandResult, Refusal> {
        let j = self.visible_job_mut(job, tenant)?;
        let id = new_savepoint(j, at_ms)?;
        if !j.savepoint_waits() {
            j.pin_all(id);
        }
        Ok(CommandResult::SavepointTaken { id })
    }

    /// `Command::StopWithSavepoint`: the stop request, and a savepoint of the stop's cut
    /// (pending until the job is stopped). Refused whole if either part is refused.
    pub(super) fn stop_with_savepoint(
        &mut self,
        job: JobId,
        tenant: Option<&TenantName>,
        at_ms: u64,
    ) -> Result<CommandResult, Refusal> {
        let j = self.visible_job_mut(job, tenant)?;
        let next = lifecycle::on_request(j.state, lifecycle::JobRequest::Stop)
            .map_err(|e| Refusal::Conflict(format!("job {job}: {e}")))?;
        // Checked before the stop applies, so a refused savepoint stops nothing.
        savepoint_allowed(j)?;
        self.request(job, tenant, lifecycle::JobRequest::Stop)?;
        let j = self.job_mut(job)?;
        debug_assert_eq!(j.state, next);
        let id = new_savepoint(j, at_ms)?;
        j.settle_savepoints();
        Ok(CommandResult::SavepointTaken { id })
    }

    /// `Command::StartFromSavepoint`: a stopped job becomes pending, and each partition
    /// the savepoint pins restores that pin instead of its last commit.
    pub(super) fn start_from_savepoint(
        &mut self,
        job: JobId,
        tenant: Option<&TenantName>,
        savepoint: SavepointId,
    ) -> Result<CommandResult, Refusal> {
        let j = self.visible_job_mut(job, tenant)?;
        let sp = j
            .savepoints
            .get(&savepoint)
            .ok_or_else(|| Refusal::NotFound(format!("savepoint {savepoint} of job {job}")))?
            .clone();
        if sp.status != SavepointStatus::Complete {
            return Err(Refusal::Conflict(format!(
                "savepoint {savepoint} of job {job} is {}; only a complete savepoint can be \
                 started from",
                sp.status.as_str()
            )));
        }
        if j.pinned_before_rescale(&sp) {
            return Err(Refusal::Conflict(format!(
                "savepoint {savepoint} of job {job} was taken before the job was rescaled: its \
                 downstream state is of tasks the job no longer runs"
            )));
        }
        if let Some(pin) = sp.pins.values().find(|pin| pin.version != j.version) {
            return Err(Refusal::Conflict(format!(
                "savepoint {savepoint} of job {job} holds state of version {}; the job runs \
                 version {}: upgrade it with the spec to run from that savepoint",
                pin.version, j.version
            )));
        }
        if j.state != JobState::Stopped {
            return Err(Refusal::Conflict(format!(
                "job {job}: the job is {}; start from a savepoint applies only to a stopped job",
                j.state.as_str()
            )));
        }
        j.check_start_from(&sp)?;
        // Partitions the savepoint does not cover (the topic grew since) resume from
        // their own last commit, except in a job that repartitions: there they start
        // empty from offset 0, since the downstream state the savepoint restores holds
        // nothing of their input.
        let from_empty = !j.repartitions.is_empty();
        let pin_version = j.version;
        for (partition, p) in j.partitions.iter_mut() {
            let pin = match sp.pins.get(partition) {
                Some(pin) => pin.clone(),
                None if from_empty => Pin {
                    checkpoint: None,
                    offset: 0,
                    snapshot: None,
                    version: pin_version,
                    state_drop: Vec::new(),
                    sources: Vec::new(),
                },
                None => continue,
            };
            p.restore = Some(Restore {
                savepoint,
                pin,
                after_checkpoint: p.highest_checkpoint(),
                state_drop: Vec::new(),
            });
        }
        self.request(job, tenant, lifecycle::JobRequest::Start)
    }

    /// `Command::DeleteSavepoint`: forgets the savepoint; its snapshots are pruned by the
    /// partitions' owners like any other old snapshot from then on.
    pub(super) fn delete_savepoint(
        &mut self,
        job: JobId,
        tenant: Option<&TenantName>,
        savepoint: SavepointId,
    ) -> Result<CommandResult, Refusal> {
        let j = self.visible_job_mut(job, tenant)?;
        if j.upgrade.as_ref().is_some_and(|u| u.savepoint == savepoint) {
            return Err(Refusal::Conflict(format!(
                "savepoint {savepoint} of job {job} is the cut its upgrade starts from; delete \
                 it once the job is running again"
            )));
        }
        j.savepoints
            .remove(&savepoint)
            .ok_or_else(|| Refusal::NotFound(format!("savepoint {savepoint} of job {job}")))?;
        Ok(CommandResult::Done)
    }
}

/// Why the job cannot take a savepoint now, if it cannot.
pub(super) fn savepoint_allowed(j: &Job) -> Result<(), Refusal> {
    let job = j.id;
    if matches!(
        j.state,
        JobState::Cancelling | JobState::Cancelled | JobState::Failed
    ) {
        return Err(Refusal::Conflict(format!(
            "job {job}: the job is {}; a savepoint applies only to a job that is not \
             cancelling, cancelled or failed",
            j.state.as_str()
        )));
    }
    if j.partitions.is_empty() {
        return Err(Refusal::Conflict(format!(
            "job {job} has no partitions yet (no worker has read its source topic); take \
             the savepoint once it runs"
        )));
    }
    if j.savepoints.len() >= JOB_SAVEPOINTS_MAX {
        return Err(Refusal::Conflict(format!(
            "job {job} holds {JOB_SAVEPOINTS_MAX} savepoints, the most a job may; delete one \
             first"
        )));
    }
    Ok(())
}

/// Records a new pending savepoint of `j`, if it may take one.
pub(super) fn new_savepoint(j: &mut Job, at_ms: u64) -> Result<SavepointId, Refusal> {
    savepoint_allowed(j)?;
    j.check_stage_cut()?;
    j.savepoints_taken += 1;
    let id = SavepointId(j.savepoints_taken);
    j.savepoints.insert(
        id,
        Savepoint {
            id,
            requested_at_ms: at_ms,
            status: SavepointStatus::Pending,
            reason: None,
            pins: BTreeMap::new(),
            stage_cut: false,
        },
    );
    debug_assert!(j.savepoints.len() <= JOB_SAVEPOINTS_MAX);
    Ok(id)
}
