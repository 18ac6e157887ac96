//! The consistent cut of a job whose stages are joined by a repartition topic
//! (docs/ARCHITECTURE.md, "Savepoints of jobs that repartition").
//!
//! Each task commits on its own, so at an arbitrary moment the downstream tasks' commits
//! and the upstream tasks' commits describe different points of the input. They describe
//! the same point once the repartition topic is *drained*: every upstream task paused
//! (committed, writing nothing more) and every downstream task read the topic to its end
//! before it paused. So a downstream task is asked to pause only once every task writing
//! its input has paused, been released paused, or been fenced, and the worker reads the
//! topic to its end before pausing. A paused or stopped job's cut is then consistent, and
//! only such a cut may be a savepoint of a job that repartitions.

use super::{lifecycle, Job, PartitionState, Refusal};
use weir_core::ids::PartitionId;
use weir_core::spec::stages::{reads_repartition, task_input, task_stage, JOIN_RIGHT_STAGE};
use weir_core::wire::{JobState, TaskInput};

impl Job {
    /// Whether the owner of `partition` should pause now: the job wants its partitions
    /// paused and, for a task reading a repartition topic, every task writing it is done
    /// writing.
    pub fn wants_partition_paused(&self, partition: PartitionId) -> bool {
        if !lifecycle::wants_pause(self.state) {
            return false;
        }
        if self.repartitions.is_empty() || !reads_repartition(partition) {
            return true;
        }
        self.partitions
            .iter()
            .filter(|(id, _)| !reads_repartition(**id))
            .all(|(_, p)| self.done_writing(p))
    }

    /// Whether an upstream task writes nothing more: it paused (and may have been
    /// released since), or the job is stopping and the task has no owner and nothing to
    /// fence (so no owner of it will run again before the stop).
    fn done_writing(&self, p: &PartitionState) -> bool {
        if p.paused || p.released_paused {
            return true;
        }
        lifecycle::releases_when_paused(self.state)
            && p.worker.is_none()
            && !p.needs_fencing()
            && !self.has_pending_savepoint()
    }

    /// Refuses a savepoint of a job that repartitions unless its cut is consistent (it is
    /// paused or stopped, or pending with no task running yet) or will be (it is stopping:
    /// the savepoint waits for the stop).
    pub(super) fn check_stage_cut(&self) -> Result<(), Refusal> {
        let quiet = match self.state {
            JobState::Paused | JobState::Stopping | JobState::Stopped => true,
            JobState::Pending => self.partitions.values().all(|p| p.worker.is_none()),
            _ => false,
        };
        if self.repartitions.is_empty() || quiet {
            return Ok(());
        }
        Err(Refusal::Conflict(format!(
            "job {}: the job is {} and repartitions; its stages have a common cut only once \
             paused or stopped (each reads the repartition topic to its end first): pause it \
             and take the savepoint, or stop it with a savepoint",
            self.id,
            self.state.as_str()
        )))
    }

    /// Where the fence duties `duties` of this job read their input, for the fencer to
    /// read the job's commit point there.
    pub fn fence_inputs(&self, duties: &[PartitionId]) -> Vec<TaskInput> {
        let source = self.spec["source"]["topic"].as_str().unwrap_or_default();
        duties
            .iter()
            .filter_map(|partition| {
                let (topic, topic_partition) = match task_stage(*partition) {
                    // A join's right side reads the join's topic.
                    (JOIN_RIGHT_STAGE, index) => (
                        super::join_topic(&self.spec)?.to_string(),
                        i32::try_from(index).ok()?,
                    ),
                    _ => task_input(self.id, source, &self.repartitions, *partition)?,
                };
                Some(TaskInput {
                    job: self.id,
                    partition: *partition,
                    topic,
                    topic_partition,
                })
            })
            .collect()
    }
}
