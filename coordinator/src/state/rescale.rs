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
    /// Refuses an upgrade of a job that repartitions that weir cannot carry out yet, before
    /// anything changes: a job with a join, a change of source or pipeline (the core check
    /// refuses those too), dropped state, a savepoint of another generation or not at a
    /// drained cut, or a rescale that has no drained cut to start from.
    pub(super) fn check_repartitioning_upgrade(
        &self,
        new: &JobSpec,
        savepoint: Option<&Savepoint>,
        allow_state_drop: &[String],
    ) -> Result<(), Refusal> {
        let job = self.id;
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
        let rescales = self.planned_count(new) != self.repartitions.first().copied();
        if !rescales {
            return Ok(());
        }
        if self.repartition_generation >= REPARTITION_GENERATIONS_MAX {
            return Err(Refusal::Conflict(format!(
                "job {job} was rescaled {REPARTITION_GENERATIONS_MAX} times, the most weir \
                 allows; submit it again as a new job"
            )));
        }
        if let Some(task) = self.unsettled_rescale() {
            return Err(Refusal::Conflict(format!(
                "job {job}: task {task} has not committed since the last rescale (no input \
                 reached it yet); rescale again once every task has committed"
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
        let other = sp.pins.keys().find(|t| {
            reads_repartition(**t) && task_generation(**t) != self.repartition_generation
        });
        if other.is_some() {
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
        let source_partitions = self.partition_count?;
        weir_core::spec::stages::plan_stages(new, self.id, source_partitions)
            .ok()?
            .repartition_topics()
            .first()
            .map(|topic| topic.partitions)
    }

    /// A downstream task that still restores from the previous generation's snapshots (it
    /// has not committed since the last rescale), if one does: its state is no snapshot of
    /// its own yet, so it cannot be a source of the next rescale.
    fn unsettled_rescale(&self) -> Option<PartitionId> {
        self.partitions
            .iter()
            .find(|(_, p)| {
                p.restore
                    .as_ref()
                    .is_some_and(|r| !r.pin.sources.is_empty())
            })
            .map(|(task, _)| *task)
    }

    /// Whether installing `new` would rescale the job, and it cannot be done now: the
    /// stop that released it did not drain its repartition topic (no worker was left to
    /// run the downstream tasks), or a task has no snapshot of its own yet. The upgrade is
    /// then not applied.
    pub(super) fn rescale_blocked(&self, new: &JobSpec) -> Option<String> {
        if self.repartitions.is_empty()
            || self.planned_count(new) == self.repartitions.first().copied()
        {
            return None;
        }
        if !self.stopped_drained {
            return Some(
                "the stop did not drain the repartition topic (no worker was left to run the \
                 downstream tasks)"
                    .into(),
            );
        }
        self.unsettled_rescale()
            .map(|task| format!("task {task} has not committed since the last rescale"))
    }

    /// After an upgrade installed a spec whose plan has another partition count for the
    /// repartition topic: starts the downstream stage's next generation. Every task of the
    /// previous one is replaced by the new tasks, which restore the keys routed to them
    /// from the previous tasks' pins (each task's restore as the upgrade just set it).
    pub(super) fn start_next_generation(&mut self, savepoint: SavepointId) {
        let Some(count) = self.planned_count_of_current() else {
            return;
        };
        if self.repartitions.first() == Some(&count) {
            return;
        }
        let previous: Vec<PartitionId> = self
            .partitions
            .keys()
            .filter(|t| reads_repartition(**t))
            .copied()
            .collect();
        let mut sources: Vec<(PartitionId, Pin)> = Vec::with_capacity(previous.len());
        for task in previous {
            if let Some(p) = self.partitions.remove(&task) {
                let pin = match p.restore {
                    Some(restore) => restore.pin,
                    None => p.committed_cut(self.version),
                };
                debug_assert!(pin.sources.is_empty(), "a rescale of an unsettled rescale");
                sources.push((task, pin));
            }
        }
        let version = sources.first().map_or(self.version, |(_, pin)| pin.version);
        debug_assert!(sources.iter().all(|(_, pin)| pin.version == version));
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

    /// The repartition topic's partition count the current spec plans.
    fn planned_count_of_current(&self) -> Option<u32> {
        let spec: JobSpec = serde_json::from_value(self.spec.clone()).ok()?;
        self.planned_count(&spec)
    }
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
