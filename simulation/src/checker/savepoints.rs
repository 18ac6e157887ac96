//! Savepoints at the end of a run: every snapshot a complete savepoint pins is still in
//! the checkpoint store and restores into its job's pipeline. Pruning must keep them for
//! as long as the savepoint exists, whatever the partitions committed since (planted bug
//! `savepoint-snapshots-pruned` forgets the pins), each with the spec of the version
//! that wrote it. A pin without a checkpoint (a
//! partition that never committed) is empty state and pins no snapshot.

use weir_coordinator::state::ControlState;
use weir_core::spec::stages::{reads_repartition, task_generation, TASK_STAGE_STRIDE};
use weir_core::spec::JobSpec;
use weir_core::wire::SavepointStatus;
use weir_worker::checkpoint_store::CheckpointStore;
use weir_worker::exactly_once::snapshot_codec::decode_snapshot;
use weir_worker::exactly_once::stage_task::resolve;
use weir_worker::operators::Pipeline;

/// Every problem with the savepoints of `state` against `store`, one sentence each, and
/// how many pinned snapshots were checked.
pub async fn check<S: CheckpointStore>(state: &ControlState, store: &S) -> (Vec<String>, usize) {
    let mut problems = Vec::new();
    let mut checked = 0;
    for job in state.jobs.values() {
        for sp in job.savepoints.values() {
            if sp.status != SavepointStatus::Complete {
                continue;
            }
            if !covers_the_job(job, sp) {
                problems.push(format!(
                    "savepoint {} of job {} pins {} of {} partitions",
                    sp.id,
                    job.id,
                    sp.pins.len(),
                    job.partitions.len()
                ));
            }
            // A task of a rescale that had not committed yet pins its sources: the
            // previous generation's snapshots it restores from must be there too.
            let sources = sp.pins.values().flat_map(|pin| pin.sources.iter());
            let mut pins: Vec<(&weir_core::ids::PartitionId, &weir_coordinator::state::Pin)> = sp
                .pins
                .iter()
                .chain(sources.map(|(t, pin)| (t, pin)))
                .collect();
            pins.sort_by_key(|(t, pin)| (**t, pin.offset));
            pins.dedup_by_key(|(t, pin)| (**t, pin.offset));
            for (partition, pin) in pins {
                if pin.checkpoint.is_none() {
                    continue;
                }
                // The spec of the version that wrote the snapshot (an upgrade's savepoint
                // pins the old version's state).
                let spec: Option<JobSpec> = job
                    .version_spec(pin.version)
                    .and_then(|spec| serde_json::from_value(spec.clone()).ok());
                checked += 1;
                let at = format!(
                    "savepoint {} of job {} partition {partition} at offset {}",
                    sp.id, job.id, pin.offset
                );
                let bytes = match store.get(job.id, *partition, pin.offset).await {
                    Ok(Some(bytes)) => bytes,
                    Ok(None) => {
                        problems.push(format!("{at}: its snapshot is gone from the store"));
                        continue;
                    }
                    Err(e) => {
                        problems.push(format!("{at}: the store failed: {e}"));
                        continue;
                    }
                };
                let restored =
                    decode_snapshot(&bytes)
                        .map_err(|e| e.to_string())
                        .and_then(|(_, state)| match &spec {
                            Some(spec) => {
                                // Each task restores the part of the pipeline its stage runs.
                                let (counts, generation) = stages_of(job, *partition);
                                let task = resolve(job.id, spec, *partition, (&counts, generation))
                                    .map_err(|e| e.to_string())?;
                                let role = task.role_in(
                                    job.partition_count.unwrap_or(0),
                                    job.join_partition_count.unwrap_or(0),
                                );
                                Pipeline::restore_role(spec, role, state)
                                    .map(|_| ())
                                    .map_err(|e| e.to_string())
                            }
                            None => Err("the job's spec does not read".into()),
                        });
                if let Err(e) = restored {
                    problems.push(format!("{at}: its snapshot does not restore: {e}"));
                }
            }
        }
    }
    (problems, checked)
}

/// The repartition counts and generation a pin of `task` resolves with: the job's own, or,
/// for a task of an earlier generation of the downstream stage (a pin from before a
/// rescale), its own generation with any count (no longer recorded; the role the restore
/// needs does not depend on it).
fn stages_of(
    job: &weir_coordinator::state::Job,
    task: weir_core::ids::PartitionId,
) -> (Vec<u32>, u32) {
    if !reads_repartition(task) || task_generation(task) == job.repartition_generation {
        return (job.repartitions.clone(), job.repartition_generation);
    }
    (
        vec![TASK_STAGE_STRIDE; job.repartitions.len()],
        task_generation(task),
    )
}

/// Whether `sp` pins every task of `job`: a savepoint from before a rescale pins the
/// downstream tasks of its own generation, which the job no longer has, so only its
/// upstream tasks must match.
fn covers_the_job(
    job: &weir_coordinator::state::Job,
    sp: &weir_coordinator::state::Savepoint,
) -> bool {
    if !job.pinned_before_rescale(sp) {
        return sp.pins.len() == job.partitions.len();
    }
    let upstream = |tasks: &mut dyn Iterator<Item = &weir_core::ids::PartitionId>| {
        tasks.filter(|t| !reads_repartition(**t)).count()
    };
    upstream(&mut sp.pins.keys()) == upstream(&mut job.partitions.keys())
}
