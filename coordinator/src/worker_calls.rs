//! The calls a worker makes to the coordinator group, as plain functions over a
//! `Coordinator`. The HTTP handlers (`http::workers`, `http::jobs`) and the simulation's
//! control plane both call these, so the simulation runs the code production runs; only
//! the transport differs.

use crate::node::Coordinator;
use crate::state::{join_topic, Command, CommandResult, Refusal};
use crate::write_error::WriteError;
use weir_core::ids::{JobId, WorkerId};
use weir_core::wire::{
    Assignments, CheckpointReport, JobState, Lease, WorkerAssignment, WorkerReport,
};

/// Fence duties handed to one worker per assignments answer; the rest come in later
/// rounds (a fence is one InitProducerId call at the broker).
pub const FENCE_DUTIES_PER_ROUND_MAX: usize = 32;
/// Cancelled jobs whose topics one worker is asked to delete per round (each deletion
/// waits for the broker's metadata to drop the topic).
pub const TOPIC_DELETION_DUTIES_PER_ROUND_MAX: usize = 4;

/// Registers (or re-registers after a restart) a worker and grants it a lease.
pub async fn register(
    coordinator: &Coordinator,
    worker: &WorkerId,
    addr: &str,
) -> Result<Lease, WriteError> {
    let at_ms = coordinator.seams().clock.now_ms();
    coordinator
        .write(Command::RegisterWorker {
            worker: worker.clone(),
            addr: addr.to_string(),
            at_ms,
        })
        .await?;
    coordinator.heartbeat(worker)
}

/// A worker leaving on purpose: its partitions move at once (with epoch + 1).
pub async fn deregister(coordinator: &Coordinator, worker: &WorkerId) -> Result<(), WriteError> {
    coordinator
        .write(Command::RemoveWorker {
            worker: worker.clone(),
            reason: "left".into(),
        })
        .await?;
    Ok(())
}

/// What `worker` should run now, read linearizably from the leader, and the pending jobs
/// whose source partition count nobody has reported yet.
pub async fn assignments(
    coordinator: &Coordinator,
    worker: &WorkerId,
) -> Result<Assignments, WriteError> {
    coordinator.linearizable().await?;
    let s = coordinator.state().read();
    if !s.control.workers.contains_key(worker) {
        return Err(WriteError::Refused(Refusal::NotFound(format!(
            "worker {worker}"
        ))));
    }
    let assignments = s
        .control
        .assignments_of(worker)
        .into_iter()
        .filter_map(|(job, partition, epoch)| {
            let j = s.control.jobs.get(&job)?;
            let p = j.partitions.get(&partition);
            Some(WorkerAssignment {
                job,
                partition,
                epoch,
                job_version: j.version,
                spec: j.spec.clone(),
                committed_checkpoint: p.and_then(|p| p.checkpoint_floor()),
                pause: j.wants_partition_paused(partition),
                pause_recorded: p.is_some_and(|p| p.paused),
                repartitions: j.repartitions.clone(),
                repartition_generation: j.repartition_generation,
                keep_offsets: j.pinned_offsets(partition),
                prune_below: p.map(|p| p.committed_cut(j.version).offset),
                restore: p.and_then(|p| j.restore_point_of(p)),
                join_upstreams: j.join_left_partitions.zip(j.join_partition_count),
            })
        })
        .collect();
    let unknown_partition_counts = s
        .control
        .jobs
        .values()
        .filter(|j| j.partition_count.is_none() && j.state == JobState::Pending)
        .map(|j| {
            (
                j.id,
                j.spec["source"]["topic"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let unknown_topic_partition_counts = s
        .control
        .jobs
        .values()
        .filter(|j| j.join_partition_count.is_none() && j.state == JobState::Pending)
        .filter_map(|j| Some((j.id, join_topic(&j.spec)?.to_string())))
        .collect();
    let fence = s.control.fence_duties(worker, FENCE_DUTIES_PER_ROUND_MAX);
    let fence_inputs = fence
        .iter()
        .filter_map(|(job, partition)| {
            let j = s.control.jobs.get(job)?;
            j.fence_inputs(&[*partition]).pop()
        })
        .collect();
    let delete_topics = s
        .control
        .topic_deletion_duties(worker, TOPIC_DELETION_DUTIES_PER_ROUND_MAX);
    Ok(Assignments {
        worker: worker.clone(),
        assignments,
        unknown_partition_counts,
        unknown_topic_partition_counts,
        fence,
        delete_topics,
        fence_inputs,
    })
}

/// Records what a worker reports: a partition's problem (failing its job past the
/// worker's failure-rate limit), a pending job's reason, or partitions it fenced.
pub async fn report(
    coordinator: &Coordinator,
    worker: &WorkerId,
    report: WorkerReport,
) -> Result<(), WriteError> {
    match coordinator
        .write(Command::WorkerReport {
            worker: worker.clone(),
            report,
        })
        .await?
    {
        CommandResult::Refused(refusal) => Err(WriteError::Refused(refusal)),
        _ => Ok(()),
    }
}

/// Records a job's source partition count, learned from Kafka by a worker.
pub async fn report_partitions(
    coordinator: &Coordinator,
    job: JobId,
    partition_count: u32,
) -> Result<(), WriteError> {
    coordinator
        .write(Command::SetPartitionCount {
            job,
            partition_count,
        })
        .await?;
    Ok(())
}

/// Records the partition count of a topic a job reads besides its source (its join's
/// right side), learned from Kafka by a worker.
pub async fn report_topic_partitions(
    coordinator: &Coordinator,
    job: JobId,
    topic: String,
    partition_count: u32,
) -> Result<(), WriteError> {
    match coordinator
        .write(Command::SetTopicPartitionCount {
            job,
            topic,
            partition_count,
        })
        .await?
    {
        CommandResult::Refused(refusal) => Err(WriteError::Refused(refusal)),
        _ => Ok(()),
    }
}

/// Applies a worker's batch of checkpoint reports; one result per report, in order. A
/// report from anyone but the partition's current owner at its current epoch is refused.
pub async fn report_checkpoints(
    coordinator: &Coordinator,
    worker: &WorkerId,
    reports: Vec<CheckpointReport>,
) -> Result<Vec<Result<(), weir_core::wire::CheckpointRefusal>>, WriteError> {
    let at_ms = coordinator.seams().clock.now_ms();
    let result = coordinator
        .write(Command::Checkpoint {
            worker: worker.clone(),
            reports,
            at_ms,
        })
        .await?;
    match result {
        CommandResult::CheckpointResults(results) => Ok(results),
        other => Err(WriteError::Unavailable(format!(
            "unexpected answer {other:?}"
        ))),
    }
}
