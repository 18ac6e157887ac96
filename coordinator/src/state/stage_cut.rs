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
use weir_core::spec::stages::{reads_repartition, task_input};
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
    /// released since). A stopping job's tasks that lost their owner are placed again
    /// (`scheduler::wants_owner`), so they too pause before the downstream tasks do.
    fn done_writing(&self, p: &PartitionState) -> bool {
        p.paused || p.released_paused
    }

    /// Records, as a stop finishes, whether it drained the repartition topics: every
    /// downstream task was released after reporting itself paused. A stop that finished
    /// with nobody to run them (no worker left) did not.
    pub(super) fn record_stop_cut(&mut self, releasing: JobState) {
        self.stopped_drained = matches!(releasing, JobState::Stopping | JobState::Upgrading)
            && self
                .partitions
                .iter()
                .filter(|(id, _)| reads_repartition(**id))
                .all(|(_, p)| p.released_paused);
    }

    /// Whether the job's committed cuts are one cut across its stages now: always for a
    /// job of one stage; for one that repartitions, when it is paused (every task paused,
    /// the downstream ones after draining) or stopped by a stop that drained.
    pub fn stage_cut_consistent(&self) -> bool {
        if self.repartitions.is_empty() {
            return true;
        }
        match self.state {
            JobState::Paused => self.partitions.values().all(|p| p.paused),
            JobState::Stopped => self.stopped_drained,
            _ => false,
        }
    }

    /// Refuses a savepoint of a job that repartitions unless its cut is consistent (it is
    /// paused, or stopped by a stop that drained, or pending with no task running yet) or
    /// will be (it is stopping: the savepoint waits for the stop).
    pub(super) fn check_stage_cut(&self) -> Result<(), Refusal> {
        let quiet = match self.state {
            JobState::Stopping | JobState::Upgrading => true,
            JobState::Paused | JobState::Stopped => self.stage_cut_consistent(),
            JobState::Pending => self.partitions.values().all(|p| p.worker.is_none()),
            _ => false,
        };
        if self.repartitions.is_empty() || quiet {
            return Ok(());
        }
        Err(Refusal::Conflict(format!(
            "job {}: the job is {} and repartitions; its stages have a common cut only once \
             paused or stopped with each downstream task having read the repartition topic \
             to its end (a stop with no worker left to run them does not): pause it and take \
             the savepoint, or start it and stop it with a savepoint",
            self.id,
            self.state.as_str()
        )))
    }

    /// Refuses a start from `savepoint` of a job that repartitions unless both cuts are
    /// one across the stages: the savepoint's (taken of a drained cut) and the job's
    /// stop (its downstream tasks read on from Kafka's commit point, which must be the
    /// repartition topics' end).
    pub(super) fn check_start_from(
        &self,
        savepoint: &super::savepoints::Savepoint,
    ) -> Result<(), Refusal> {
        if self.repartitions.is_empty() {
            return Ok(());
        }
        if !savepoint.stage_cut {
            return Err(Refusal::Conflict(format!(
                "job {}: savepoint {} was not taken at a cut common to the job's stages (of a \
                 running job, or before weir drained them): it cannot be started from",
                self.id, savepoint.id
            )));
        }
        if !self.stopped_drained {
            return Err(Refusal::Conflict(format!(
                "job {}: its last stop did not drain the repartition topics (no worker was \
                 left to run the downstream tasks); start it, stop it again, then start from \
                 savepoint {}",
                self.id, savepoint.id
            )));
        }
        Ok(())
    }

    /// Where the fence duties `duties` of this job read their input, for the fencer to
    /// read the job's commit point there.
    pub fn fence_inputs(&self, duties: &[PartitionId]) -> Vec<TaskInput> {
        let source = self.spec["source"]["topic"].as_str().unwrap_or_default();
        duties
            .iter()
            .filter_map(|partition| {
                let topics = (source, super::join_topic(&self.spec));
                let (topic, topic_partition) =
                    task_input(self.id, topics, &self.repartitions, *partition)?;
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
