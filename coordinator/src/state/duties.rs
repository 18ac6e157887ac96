//! The duties the group hands to workers beside their partitions: fencing the
//! transactional ids of partitions that run nowhere, and deleting the topics weir created
//! for cancelled jobs. Each duty goes to one registered worker, spread by job and
//! partition, and comes again until its report arrives.

use super::{lifecycle, ControlState};
use weir_core::ids::{JobId, PartitionId, WorkerId};
use weir_core::spec::stages::repartition_topic_at;
use weir_core::wire::JobState;

/// How many generations before a cancelled job's current one have their repartition topics
/// deleted with it: a rescale leaves its previous topic (drained, unread) until the job is
/// cancelled; older ones than this are left to their retention.
const RETIRED_GENERATIONS_DELETED: u32 = 16;

impl ControlState {
    /// The fence duties of `worker`: partitions of jobs that run nowhere (stopping,
    /// stopped, cancelling, cancelled or failed) that need fencing (see
    /// [`PartitionState::needs_fencing`]), each given to one registered worker (spread by
    /// job and partition), at most `max` of them. A worker that leaves or dies is removed
    /// from the registrations, and its duties pass to the others.
    pub fn fence_duties(&self, worker: &WorkerId, max: usize) -> Vec<(JobId, PartitionId)> {
        let Some(index) = self.workers.keys().position(|w| w == worker) else {
            return Vec::new();
        };
        let n = self.workers.len() as u64;
        let mut out = Vec::new();
        for job in self.jobs.values() {
            // Cancelled too: a job cancelled while no worker was registered still gets its
            // partitions fenced by the first worker to come.
            if !lifecycle::fences_released_partitions(job.state) {
                continue;
            }
            for (partition, p) in &job.partitions {
                if out.len() >= max {
                    return out;
                }
                let mine = (job.id.0.wrapping_add(u64::from(partition.0))) % n == index as u64;
                if mine && p.needs_fencing() {
                    out.push((job.id, *partition));
                }
            }
        }
        out
    }

    /// The topics of cancelled jobs that `worker` should delete: each job's repartition
    /// topics, handed to one worker (by job id) until one reports them deleted. At most
    /// `max` jobs per round.
    pub fn topic_deletion_duties(
        &self,
        worker: &WorkerId,
        max: usize,
    ) -> Vec<(JobId, Vec<String>)> {
        let Some(index) = self.workers.keys().position(|w| w == worker) else {
            return Vec::new();
        };
        let n = self.workers.len() as u64;
        self.jobs
            .values()
            .filter(|job| {
                job.state == JobState::Cancelled
                    && !job.repartitions.is_empty()
                    && !job.topics_deleted
                    && job.id.0 % n == index as u64
            })
            .take(max)
            .map(|job| {
                // Each rescale switched to a new topic: the recent generations' go too.
                let generations = job
                    .repartition_generation
                    .saturating_sub(RETIRED_GENERATIONS_DELETED)
                    ..=job.repartition_generation;
                let topics = generations
                    .flat_map(|g| (1..=job.repartitions.len()).map(move |stage| (stage, g)))
                    .map(|(stage, g)| repartition_topic_at(job.id, stage, g))
                    .collect();
                (job.id, topics)
            })
            .collect()
    }
}
