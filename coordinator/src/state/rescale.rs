//! Rescaling a job's downstream stage (docs/ARCHITECTURE.md, "Rescaling"): a new partition
//! count for the stage behind the job's shuffle, its state redistributed by key.
//!
//! Kafka can only add partitions to a topic, and adding them would send the keys of
//! records still in flight to other partitions than their state. So a rescale is an
//! upgrade whose new spec differs only in `parallelism`: the job is stopped with a drained
//! cut (every upstream task paused, every downstream task read the repartition topic to
//! its end), then the downstream stage starts a new *generation*: a new repartition topic
//! with the new count and new tasks (`weir_core::spec::stages::downstream_task`), each
//! restoring the keys that route to it from the snapshots every task of the previous
//! generation left at the cut, and reading its topic from offset 0. Upstream tasks restore
//! their own cut, as for any upgrade, and write the new topic. Nothing bounds the key space
//! to a fixed number of key groups (Flink's maximum parallelism): keys move one by one, so
//! any count from 1 to the largest parallelism is reachable from any other.

use super::savepoints::{Pin, Restore, Savepoint};
use super::{ControlState, Job, PartitionState, Refusal};
use weir_core::ids::{JobId, PartitionId, SavepointId, TenantName};
use weir_core::spec::stages::{
    downstream_task, reads_repartition, task_generation, REPARTITION_GENERATIONS_MAX,
};
use weir_core::spec::validate::PARALLELISM_MAX;
use weir_core::spec::JobSpec;
use weir_core::wire::JobState;

impl Job {
    /// Whether `sp` pins downstream tasks of an earlier generation than the job runs now
    /// (it was taken before a rescale): its downstream state is of tasks the job no longer
    /// has.
    pub fn pinned_before_rescale(&self, sp: &Savepoint) -> bool {
        sp.pins
            .keys()
            .any(|t| reads_repartition(*t) && task_generation(*t) != self.repartition_generation)
    }

    /// Refuses an upgrade of a job that repartitions that weir cannot carry out yet, before
    /// anything changes: a job with a join, a change of source or pipeline (the core check
    /// refuses those too), dropped state, a savepoint of another generation or not at a
    /// drained cut, or a rescale that has no drained cut to start from.
    pub(super) fn check_repartitioning_upgrade(
        &self,
        new: &JobSpec,
        savepoint: Option<SavepointId>,
        allow_state_drop: &[String],
    ) -> Result<(), Refusal> {
        let job = self.id;
        let savepoint = match savepoint {
            Some(id) => Some(
                self.savepoints
                    .get(&id)
                    .ok_or_else(|| Refusal::NotFound(format!("savepoint {id} of job {job}")))?,
            ),
            None => None,
        };
        if super::join_topic(&self.spec).is_some() {
            return Err(Refusal::Conflict(format!(
                "job {job} has a join: upgrading or rescaling it is not supported yet \
                 (redistributing the join's state is not built)"
            )));
        }
        if !allow_state_drop.is_empty() {
            return Err(Refusal::Invalid(
                "allow_state_drop: an upgrade of a job that repartitions keeps its pipeline, \
                 so it has no stage whose state could be dropped"
                    .into(),
            ));
        }
        if let Some(sp) = savepoint {
            self.check_generation(sp)?;
        }
        let Some(count) = self.planned_count(new) else {
            return Ok(());
        };
        if Some(count) == self.repartitions.first().copied() {
            return Ok(());
        }
        if self.repartition_generation >= REPARTITION_GENERATIONS_MAX {
            return Err(Refusal::Conflict(format!(
                "job {job} was rescaled {REPARTITION_GENERATIONS_MAX} times, the most weir \
                 allows; submit it again as a new job"
            )));
        }
        let sources = match savepoint {
            Some(sp) => rescale_sources(sp.pins.iter().map(|(t, pin)| (*t, pin.clone()))),
            None => self.committed_sources(),
        }
        .map_err(|why| Refusal::Conflict(format!("job {job} cannot be rescaled now: {why}")))?;
        let pins = sources.len() as u64 * u64::from(count);
        if pins > RESCALE_SOURCE_PINS_MAX {
            return Err(Refusal::Conflict(format!(
                "job {job}: a rescale from {} to {count} partitions records {pins} restore \
                 sources, more than the {RESCALE_SOURCE_PINS_MAX} weir allows; rescale in \
                 smaller steps",
                sources.len()
            )));
        }
        if self.state == JobState::Stopped && !self.stopped_drained {
            return Err(Refusal::Conflict(format!(
                "job {job}: its last stop did not drain the repartition topic (no worker was \
                 left to run the downstream tasks); start it, then rescale it"
            )));
        }
        Ok(())
    }

    /// Refuses a savepoint whose downstream pins are of another generation than the
    /// job's tasks now (taken before a rescale), or not at a cut common to the stages.
    fn check_generation(&self, sp: &Savepoint) -> Result<(), Refusal> {
        if self.pinned_before_rescale(sp) {
            return Err(Refusal::Conflict(format!(
                "job {}: savepoint {} was taken before the job was rescaled; its downstream \
                 state is of other tasks than the job runs now",
                self.id, sp.id
            )));
        }
        self.check_start_from(sp)
    }

    /// The partition count `new` plans for the job's repartition topic, its source having
    /// the count the job was planned with.
    fn planned_count(&self, new: &JobSpec) -> Option<u32> {
        let counts = super::repartition_counts(new, self.id, self.partition_count?);
        counts.first().copied()
    }

    /// The state a rescale of the job now would restore from (`rescale_sources`), from
    /// every task's committed cut.
    fn committed_sources(&self) -> Result<Vec<(PartitionId, Pin)>, String> {
        let version = self.version;
        rescale_sources(
            self.partitions
                .iter()
                .map(|(t, p)| (*t, p.committed_cut(version))),
        )
    }

    /// Whether installing `new` cannot be done now, and why: the job repartitions and the
    /// stop that released it did not drain its repartition topic (no worker was left to
    /// run the downstream tasks: its downstream tasks would resume from their own commit
    /// points, short of what the upstream tasks restored to an older cut write again), or
    /// it rescales and its downstream tasks' state is no one cut of one version. The
    /// upgrade is then not applied.
    pub(super) fn upgrade_blocked(&self, new: &JobSpec) -> Option<String> {
        if self.repartitions.is_empty() {
            return None;
        }
        if !self.stopped_drained {
            return Some(
                "the stop did not drain the repartition topic (no worker was left to run the \
                 downstream tasks)"
                    .into(),
            );
        }
        if self.planned_count(new) == self.repartitions.first().copied() {
            return None;
        }
        self.committed_sources().err()
    }

    /// After an upgrade installed a spec whose plan has another partition count for the
    /// repartition topic: starts the downstream stage's next generation. Every task of the
    /// previous one is replaced by the new tasks, which restore the keys routed to them
    /// from the previous tasks' pins (each task's restore as the upgrade just set it).
    pub(super) fn start_next_generation(&mut self, savepoint: SavepointId) {
        let Some(source_partitions) = self.partition_count else {
            return;
        };
        let Some(&count) = super::planned_repartitions(self, source_partitions).first() else {
            return;
        };
        if self.repartitions.first() == Some(&count) {
            return;
        }
        // Checked when the upgrade was asked for and again before it was installed.
        let Ok(sources) = self.committed_sources() else {
            tracing::error!(job = %self.id, "a rescale without one cut to restore from; not applied");
            return;
        };
        self.partitions.retain(|t, _| !reads_repartition(*t));
        let version = sources.first().map_or(self.version, |(_, pin)| pin.version);
        self.repartition_generation += 1;
        self.repartitions = vec![count];
        for index in 0..count {
            let mut task = PartitionState::unowned();
            task.restore = Some(Restore {
                savepoint,
                pin: Pin {
                    checkpoint: None,
                    offset: 0,
                    snapshot: None,
                    version,
                    state_drop: Vec::new(),
                    sources: sources.clone(),
                },
                // Task ids of their own, with no checkpoint before: any commit of theirs
                // is newer than the restore (and a floor here would read, to recovery,
                // as a commit point Kafka forgot).
                after_checkpoint: None,
                state_drop: Vec::new(),
            });
            self.partitions
                .insert(downstream_task(self.repartition_generation, index), task);
        }
        tracing::info!(job = %self.id, generation = self.repartition_generation, partitions = count, "downstream stage rescaled");
    }
}

/// The most restore sources a rescale may record: the previous generation's task count
/// times the new one (each new task's restore names every previous task). It bounds the
/// group's state and each assignment.
pub const RESCALE_SOURCE_PINS_MAX: u64 = 65_536;

/// The state a new generation of the downstream stage restores from, as `(task, pin)`:
/// every downstream task's pin among `pins` (a job's or a savepoint's, every task's), or —
/// when none of them has committed since the last rescale — the sources they all share.
/// An error says why there is no such cut: some tasks committed since the last rescale and
/// some not, or their state was written by different versions (a task that has not
/// committed since the last upgrade), which one restore cannot read.
fn rescale_sources(
    pins: impl Iterator<Item = (PartitionId, Pin)>,
) -> Result<Vec<(PartitionId, Pin)>, String> {
    let downstream: Vec<(PartitionId, Pin)> = pins.filter(|(t, _)| reads_repartition(*t)).collect();
    let unsettled = downstream
        .iter()
        .filter(|(_, p)| !p.sources.is_empty())
        .count();
    let sources = if unsettled == 0 {
        downstream
    } else if unsettled == downstream.len() {
        let first = downstream[0].1.sources.clone();
        if downstream.iter().any(|(_, p)| p.sources != first) {
            return Err("the tasks of the last rescale restore from different cuts".into());
        }
        first
    } else {
        return Err(format!(
            "{unsettled} of {} downstream tasks have not committed since the last rescale \
             and the others have; rescale again once input reached every task",
            downstream.len()
        ));
    };
    let version = sources.first().map(|(_, pin)| pin.version);
    if sources.iter().any(|(_, pin)| Some(pin.version) != version) {
        return Err(
            "the downstream tasks' state was written by different versions (a task \
                    has not committed since the last upgrade); rescale again once input \
                    reached every task"
                .into(),
        );
    }
    Ok(sources)
}

impl ControlState {
    /// `Command::RescaleJob`: an upgrade to the current spec with `parallelism`, which
    /// must change the partition count of the job's repartition topic.
    pub(super) fn rescale_job(
        &mut self,
        job: JobId,
        tenant: Option<&TenantName>,
        parallelism: u32,
        at_ms: u64,
    ) -> Result<super::CommandResult, Refusal> {
        if !(1..=PARALLELISM_MAX).contains(&parallelism) {
            return Err(Refusal::Invalid(format!(
                "parallelism: {parallelism} is outside the allowed range of 1 to \
                 {PARALLELISM_MAX}"
            )));
        }
        let j = self.visible_job_mut(job, tenant)?;
        let Some(&current) = j.repartitions.first() else {
            return Err(Refusal::Conflict(format!(
                "job {job} does not repartition{}: only a stage behind a shuffle (a key_by \
                 the source is not partitioned by, before a window) can be rescaled; the \
                 job runs one task per source partition",
                if j.partition_count.is_none() {
                    " (or is not planned yet: its source's partition count is unknown)"
                } else {
                    ""
                }
            )));
        };
        if current == parallelism {
            return Err(Refusal::Conflict(format!(
                "job {job} already runs its downstream stage with {parallelism} partitions"
            )));
        }
        let mut spec = j.spec.clone();
        let Some(fields) = spec.as_object_mut() else {
            return Err(Refusal::Invalid(format!(
                "job {job}'s spec is not an object"
            )));
        };
        fields.insert("parallelism".into(), parallelism.into());
        self.upgrade_job(super::versions::UpgradeAsk {
            job,
            tenant,
            spec: &spec,
            savepoint: None,
            allow_state_drop: &[],
            at_ms,
        })
    }
}
