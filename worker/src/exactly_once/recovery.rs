//! Taking a partition over: fence the previous owner, find the commit point Kafka holds,
//! and restore exactly the state the committed outputs were computed from. What to restore
//! is decided by [`plan_recovery`] (pure, tested with the cycle); this file performs the
//! reads it needs and the plan it returns.

use super::cycle::{next_checkpoint_after, plan_recovery, RecoveryPlan};
use super::output_writer::{Markers, OutputTargets, RouteTarget};
use super::snapshot_codec::decode_snapshot;
use super::stage_task::{resolve, StageTask};
use super::{PartitionConfig, PartitionError};
use crate::checkpoint_store::CheckpointStore;
use crate::operators::shuffled::JoinSide;
use crate::operators::{KeyRange, Pipeline, PipelineRole, Redistribution};
use weir_broker::{Broker, TransactionalWriter, RECORD_FRAMING_BYTES_MAX};
use weir_core::bugs::{planted, PlantedBug};
use weir_core::ids::CheckpointId;
use weir_core::wire::RestorePoint;

/// A partition taken over, ready to run: the previous owner fenced, state restored, a
/// transaction open, reading from the commit point.
pub(super) struct Recovered<B: Broker> {
    pub writer: B::Writer,
    pub reader: B::Reader,
    pub pipeline: Pipeline,
    pub next_offset: i64,
    pub next_checkpoint: CheckpointId,
    /// Whether Kafka holds a commit point for the partition.
    pub has_commit_point: bool,
    pub targets: OutputTargets,
    /// The topic and partition the task reads: whose offsets its transactions commit.
    pub input: (String, i32),
    /// The checkpoint (id, offset) restored from Kafka's commit point, which a previous
    /// owner committed: its "committed" report may have been lost, so the runner reports
    /// it again before it reports itself paused. `None` for a fresh start or a savepoint.
    pub restored: Option<(CheckpointId, i64)>,
}

/// Whether Kafka's commit point (the checkpoint id stored with it, if any) was committed
/// by the run a start from a savepoint began: only that run's ids are above
/// `after_checkpoint`. Until it has committed, recovery restores the savepoint.
pub(super) fn committed_since_restore(
    commit_point_checkpoint: Option<u64>,
    after_checkpoint: Option<CheckpointId>,
) -> bool {
    match (commit_point_checkpoint, after_checkpoint) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(id), Some(after)) => id > after.0,
    }
}

/// Takes the partition of `config` over.
pub(super) async fn recover<B: Broker, S: CheckpointStore>(
    config: &PartitionConfig,
    broker: &B,
    store: &S,
) -> Result<Recovered<B>, PartitionError> {
    let (task, role) = prepare_task(config, broker).await?;
    let (topic, partition) = task.input(&config.spec);
    // Fence first: after this, the previous owner can commit nothing more.
    let mut writer = broker.writer(&config.transactional_id()).await?;
    let committed = broker
        .committed_offset(&config.group(), &topic, partition)
        .await?;
    let committed = match committed {
        Some(_) if planted(PlantedBug::RestoreNewestSnapshot) => {
            store.newest_offset(config.job, config.partition).await?
        }
        other => other,
    };
    // The local copy first (a restart on the same machine); any trouble with it sends
    // recovery to the checkpoint store, which is the source of truth.
    let mut local = match committed {
        Some(offset) => restore_local_copy(config, role, store, offset).await,
        None => None,
    };
    let local_checkpoint = local.as_ref().map(|(_, checkpoint)| *checkpoint);
    if let Some(restore) = savepoint_to_restore(config, store, committed, local_checkpoint).await? {
        let task = (&task, role, (topic, partition));
        let at = (committed, local.take());
        return restore_savepoint(config, broker, store, writer, restore, task, at).await;
    }
    let plan = plan_recovery(
        committed,
        local.as_ref().map(|(_, checkpoint)| *checkpoint),
        config.committed_checkpoint,
    );
    let mut restored = None;
    let (pipeline, next_offset, next_checkpoint) = match plan {
        RecoveryPlan::CommittedOffsetLost { checkpoint } => {
            return Err(PartitionError::CommittedOffsetLost { checkpoint })
        }
        RecoveryPlan::Fresh { next_checkpoint } => (
            Pipeline::compile_role(&config.spec, role)?,
            0,
            next_checkpoint,
        ),
        RecoveryPlan::Local {
            offset,
            next_checkpoint,
        } => {
            let Some((pipeline, checkpoint)) = local.take() else {
                unreachable!("recovery plans a local restore only with a local copy")
            };
            restored = Some((CheckpointId(checkpoint), offset));
            (pipeline, offset, next_checkpoint)
        }
        RecoveryPlan::Snapshot { offset } => {
            let (pipeline, checkpoint, next) =
                restore_snapshot(config, role, store, offset).await?;
            restored = Some((checkpoint, offset));
            (pipeline, offset, next)
        }
    };
    let mut pipeline = pipeline;
    check_partitioned_by(config, &task, &mut pipeline, broker).await?;
    let reader = broker.reader(&topic, partition, next_offset).await?;
    let targets = output_targets(config, &task, broker).await?;
    writer.begin()?;
    tracing::info!(job = %config.job, partition = %config.partition, epoch = %config.epoch, next_offset, "partition recovered");
    Ok(Recovered {
        writer,
        reader,
        pipeline,
        next_offset,
        next_checkpoint,
        has_commit_point: committed.is_some(),
        targets,
        input: (topic, partition),
        restored,
    })
}

/// The pipeline restored from the snapshot stored at the committed `offset`, its
/// checkpoint id, and the id the runner's checkpoints start from.
async fn restore_snapshot<S: CheckpointStore>(
    config: &PartitionConfig,
    role: PipelineRole,
    store: &S,
    offset: i64,
) -> Result<(Pipeline, CheckpointId, CheckpointId), PartitionError> {
    let Some(bytes) = store.get(config.job, config.partition, offset).await? else {
        let newest = store.newest_offset(config.job, config.partition).await?;
        return Err(PartitionError::MissingSnapshot {
            committed: offset,
            newest,
        });
    };
    let (checkpoint, state) = decode_snapshot(&bytes)?;
    let next = next_checkpoint_after(checkpoint.0, config.committed_checkpoint);
    let pipeline = Pipeline::restore_role(&config.spec, role, state)?;
    Ok((pipeline, checkpoint, next))
}

/// The stage the task runs and the part of the pipeline it runs, with the repartition
/// topic it reads or writes created: either stage may start first, both create it if
/// missing, and an existing one with another partition count is refused, never used.
async fn prepare_task<B: Broker>(
    config: &PartitionConfig,
    broker: &B,
) -> Result<(StageTask, PipelineRole), PartitionError> {
    let task = resolve(
        config.job,
        &config.spec,
        config.partition,
        (&config.repartitions, config.repartition_generation),
    )
    .map_err(|e| PartitionError::Stage(e.to_string()))?;
    let role = pipeline_role(&task, config, broker).await?;
    if let Some(repartition) = task.repartition() {
        broker.ensure_topic(&repartition.topic_spec()).await?;
    }
    Ok((task, role))
}

/// A one-stage job whose source declares `partitioned_by` the window's key checks every
/// event reaching the window against the source's partition count.
async fn check_partitioned_by<B: Broker>(
    config: &PartitionConfig,
    task: &StageTask,
    pipeline: &mut Pipeline,
    broker: &B,
) -> Result<(), PartitionError> {
    let declared = config.spec.source.partitioned_by.is_some();
    if matches!(task, StageTask::Whole { .. })
        && declared
        && weir_core::spec::stages::shuffling_key_by(&config.spec).is_none()
    {
        let source_partitions = broker.partition_count(&config.spec.source.topic).await?;
        pipeline.check_partitioned_by(source_partitions);
    }
    Ok(())
}

/// The savepoint to restore, if the job was started from one and the partition has not
/// committed since (`local_checkpoint`: the id of a usable local copy at Kafka's commit
/// point).
async fn savepoint_to_restore<'a, S: CheckpointStore>(
    config: &'a PartitionConfig,
    store: &S,
    committed: Option<i64>,
    local_checkpoint: Option<u64>,
) -> Result<Option<&'a RestorePoint>, PartitionError> {
    let Some(restore) = &config.restore else {
        return Ok(None);
    };
    let since = match (committed, local_checkpoint) {
        (_, Some(checkpoint)) => Some(checkpoint),
        (Some(offset), None) => stored_checkpoint(config, store, offset).await?,
        (None, None) => None,
    };
    Ok((!committed_since_restore(since, restore.after_checkpoint)).then_some(restore))
}

/// The checkpoint id stored with the snapshot at `offset`, if there is one.
async fn stored_checkpoint<S: CheckpointStore>(
    config: &PartitionConfig,
    store: &S,
    offset: i64,
) -> Result<Option<u64>, PartitionError> {
    let Some(bytes) = store.get(config.job, config.partition, offset).await? else {
        return Ok(None);
    };
    let (checkpoint, _) = decode_snapshot(&bytes)?;
    Ok(Some(checkpoint.0))
}

/// Restores the savepoint's pin (its snapshot, or empty state for a partition that had
/// never committed) and reads from its offset. Kafka's commit point moves to the
/// savepoint's cut with the first commit of this run, deliberately: until then every
/// recovery comes back here.
///
/// A task reading a repartition topic is the exception: it reads on from Kafka's commit
/// point (`committed`), not from the pin's offset. Its savepoint was taken with the topic
/// drained (the pin's state holds every record written before the upstream tasks' cut),
/// and every stop since drained it too, so the commit point is the topic's end: what lies
/// between the pin's offset and it was written by runs after the cut, which the restored
/// upstream tasks write again.
async fn restore_savepoint<B: Broker, S: CheckpointStore>(
    config: &PartitionConfig,
    broker: &B,
    store: &S,
    mut writer: B::Writer,
    restore: &RestorePoint,
    (task, role, input): (&StageTask, PipelineRole, (String, i32)),
    (committed, local): (Option<i64>, Option<(Pipeline, u64)>),
) -> Result<Recovered<B>, PartitionError> {
    let (pipeline, checkpoint) = match (restore.checkpoint, local_at_pin(restore, committed, local))
    {
        (None, _) if !restore.redistribute.is_empty() => (
            redistributed(config, store, restore, (task, role)).await?,
            0,
        ),
        (Some(_), Some(local)) => local,
        (Some(_), None) => {
            let pinned = (config.partition, restore.offset);
            pinned_pipeline(config, store, restore, pinned, role).await?
        }
        (None, _) => (Pipeline::compile_role(&config.spec, role)?, 0),
    };
    let floor = config.committed_checkpoint.max(restore.after_checkpoint);
    let next_checkpoint = next_checkpoint_after(checkpoint, floor);
    debug_assert!(restore.after_checkpoint.is_none_or(|a| next_checkpoint > a));
    let reads_repartition = matches!(
        task,
        StageTask::Downstream { .. } | StageTask::JoinDownstream { .. }
    );
    let next_offset = match (reads_repartition, committed, config.committed_checkpoint) {
        (true, Some(offset), _) => offset.max(restore.offset),
        // Kafka forgot the commit point the group recorded (the offsets expired while the
        // job was stopped): reading from the pin would count again what runs after the
        // savepoint wrote, so the partition does not start.
        (true, None, Some(checkpoint)) => {
            return Err(PartitionError::CommittedOffsetLost { checkpoint })
        }
        _ => restore.offset,
    };
    let reader = broker.reader(&input.0, input.1, next_offset).await?;
    let targets = output_targets(config, task, broker).await?;
    writer.begin()?;
    tracing::info!(job = %config.job, partition = %config.partition, epoch = %config.epoch, savepoint = %restore.savepoint, next_offset, "partition restored from a savepoint");
    Ok(Recovered {
        writer,
        reader,
        pipeline,
        next_offset,
        next_checkpoint,
        // No idle refresh before this run's first commit: that commit moves the point.
        has_commit_point: false,
        targets,
        input,
        restored: None,
    })
}

/// The local copy restored at Kafka's commit point, when it holds exactly the state the
/// restore point pins: a start of the same version from the savepoint of the stop that
/// left the copy (the same checkpoint at the same offset, and the copy was restored with
/// this version's spec). The checkpoint store's snapshot of that checkpoint holds the same
/// state; decoding it too cost a second restore of the whole state (about a second per
/// 500,000 keys of window state).
fn local_at_pin(
    restore: &RestorePoint,
    committed: Option<i64>,
    local: Option<(Pipeline, u64)>,
) -> Option<(Pipeline, u64)> {
    let (pipeline, checkpoint) = local?;
    let same_version = restore.spec_before.is_none()
        && restore.state_drop.is_empty()
        && restore.redistribute.is_empty();
    let at_pin =
        committed == Some(restore.offset) && restore.checkpoint == Some(CheckpointId(checkpoint));
    (same_version && at_pin).then_some((pipeline, checkpoint))
}

/// A task of a rescaled stage: the keys routed to it from the snapshots the stage's
/// previous tasks left at the rescale's cut (`operators/redistribute.rs`).
async fn redistributed<S: CheckpointStore>(
    config: &PartitionConfig,
    store: &S,
    restore: &RestorePoint,
    (task, role): (&StageTask, PipelineRole),
) -> Result<Pipeline, PartitionError> {
    let StageTask::Downstream {
        partition,
        repartition,
        ..
    } = task
    else {
        return Err(PartitionError::Stage(
            "only a task of a downstream stage restores a rescale".into(),
        ));
    };
    if restore.redistribute.len() > weir_core::spec::validate::PARALLELISM_MAX as usize {
        return Err(PartitionError::Stage(format!(
            "a rescale names {} previous tasks",
            restore.redistribute.len()
        )));
    }
    let index = u32::try_from(*partition)
        .map_err(|_| PartitionError::Stage(format!("a task of partition {partition}")))?;
    let range = KeyRange {
        index,
        partitions: repartition.partitions,
    };
    // One previous task's state at a time beside this task's own.
    let mut redistribution = Redistribution::new(&config.spec, role, range)?;
    for source in &restore.redistribute {
        let pipeline = match source.checkpoint {
            // A previous task that never committed held no key.
            None => Pipeline::compile_role(&config.spec, role)?,
            Some(_) => {
                let pinned = (source.partition, source.offset);
                pinned_pipeline(config, store, restore, pinned, role)
                    .await?
                    .0
            }
        };
        redistribution.add(&pipeline)?;
    }
    let pipeline = redistribution.finish();
    tracing::info!(job = %config.job, partition = %config.partition, previous = restore.redistribute.len(), state_bytes = pipeline.state_bytes(), "rescaled task took its keys");
    Ok(pipeline)
}

/// The pipeline restored from the snapshot a restore point pins for `partition` at
/// `offset` (the task's own, or a previous task's of a rescale), with its checkpoint id.
async fn pinned_pipeline<S: CheckpointStore>(
    config: &PartitionConfig,
    store: &S,
    restore: &RestorePoint,
    (partition, offset): (weir_core::ids::PartitionId, i64),
    role: PipelineRole,
) -> Result<(Pipeline, u64), PartitionError> {
    let bytes = store.get(config.job, partition, offset).await?.ok_or(
        PartitionError::MissingSavepointSnapshot {
            savepoint: restore.savepoint,
            offset,
        },
    )?;
    let (checkpoint, state) = decode_snapshot(&bytes)?;
    Ok((restore_pin(config, restore, role, state)?, checkpoint.0))
}

/// The pipeline restored from a restore point's snapshot: of this version's pipeline, or
/// (an upgrade) of the version whose spec the restore point carries, its state carried
/// stage by stage into this version's pipeline.
fn restore_pin(
    config: &PartitionConfig,
    restore: &RestorePoint,
    role: PipelineRole,
    state: &[u8],
) -> Result<Pipeline, PartitionError> {
    let Some(spec_before) = &restore.spec_before else {
        return Ok(Pipeline::restore_role(&config.spec, role, state)?);
    };
    let old: weir_core::spec::JobSpec = serde_json::from_value(spec_before.clone())
        .map_err(|e| PartitionError::Stage(format!("the spec before the upgrade: {e}")))?;
    let pipeline =
        Pipeline::restore_upgraded(&old, &config.spec, role, &restore.state_drop, state)?;
    tracing::info!(job = %config.job, partition = %config.partition, dropped = ?restore.state_drop, "state carried into the upgraded pipeline");
    Ok(pipeline)
}

/// The pipeline restored from the worker's local copy at exactly `offset`, with its
/// checkpoint id, or `None` (no copy there, or one that cannot be used).
async fn restore_local_copy<S: CheckpointStore>(
    config: &PartitionConfig,
    role: PipelineRole,
    store: &S,
    offset: i64,
) -> Option<(Pipeline, u64)> {
    match store.get_local(config.job, config.partition, offset).await {
        Ok(Some(local)) => {
            match Pipeline::restore_entries(&config.spec, role, &local.header, &local.entries) {
                Ok(pipeline) => Some((pipeline, local.checkpoint)),
                Err(e) => {
                    tracing::warn!(job = %config.job, partition = %config.partition, error = %e, "local state copy unusable; restoring from the checkpoint store");
                    None
                }
            }
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(job = %config.job, partition = %config.partition, error = %e, "local state copy unreadable; restoring from the checkpoint store");
            None
        }
    }
}

/// The part of the pipeline `task` runs. Downstream of a shuffle, every source partition
/// has an upstream task whose watermark counts; downstream of a join, every partition of
/// both topics the job was planned with.
async fn pipeline_role<B: Broker>(
    task: &StageTask,
    config: &PartitionConfig,
    broker: &B,
) -> Result<PipelineRole, PartitionError> {
    let spec = &config.spec;
    let (source_partitions, right_partitions) = match task {
        StageTask::Downstream { .. } => (broker.partition_count(&spec.source.topic).await?, 0),
        StageTask::JoinDownstream { .. } => join_upstreams(config, broker).await?,
        StageTask::Whole { .. } | StageTask::Upstream { .. } | StageTask::JoinUpstream { .. } => {
            (0, 0)
        }
    };
    Ok(task.role_in(source_partitions, right_partitions))
}

/// How many upstream tasks each side of the job's join has: as the group planned the job,
/// else (a group that predates the record) as the broker counts the topics now.
async fn join_upstreams<B: Broker>(
    config: &PartitionConfig,
    broker: &B,
) -> Result<(u32, u32), PartitionError> {
    if let Some(counts) = config.join_upstreams {
        return Ok(counts);
    }
    let spec = &config.spec;
    let left = broker.partition_count(&spec.source.topic).await?;
    let right = match weir_core::spec::stages::join_at(spec).map(|at| &spec.pipeline[at]) {
        Some(weir_core::spec::Stage::Join(join)) => {
            broker.partition_count(&join.with.topic).await?
        }
        _ => 0,
    };
    Ok((left, right))
}

/// Where the partition's outputs go and how large each may be, read from the broker.
async fn output_targets<B: Broker>(
    config: &PartitionConfig,
    task: &StageTask,
    broker: &B,
) -> Result<OutputTargets, PartitionError> {
    let partition = config.partition.0 as i32;
    // Keyless outputs stay on the sink partition numbered like their source partition
    // (modulo the sink's size): they keep their source order and batch well, instead of
    // being spread record by record.
    let (sink_topic, route_by_key, markers) = stage_output(config, task, broker).await?;
    // A join's right side reads (and names in its dead letters) its own topic.
    let source_topic = match task {
        StageTask::JoinUpstream {
            side: JoinSide::Right,
            ..
        } => task.input(&config.spec).0,
        _ => config.spec.source.topic.clone(),
    };
    let dead_letter_topic = config.spec.dead_letter_topic_or_default();
    let sink_partition = partition % broker.partition_count(&sink_topic).await?.max(1) as i32;
    let dead_letter_partition =
        partition % broker.partition_count(&dead_letter_topic).await?.max(1) as i32;
    // Records over these would be refused and fail the partition at every retry: a result
    // is dead-lettered instead, and a dead letter cut to fit.
    let sink_record_max = broker
        .max_record_bytes(&sink_topic)
        .await?
        .saturating_sub(RECORD_FRAMING_BYTES_MAX);
    let dead_letter_max = broker
        .max_record_bytes(&dead_letter_topic)
        .await?
        .saturating_sub(RECORD_FRAMING_BYTES_MAX);
    let mut routes = Vec::new();
    if route_by_key.is_none() {
        for route in &config.spec.routes {
            let count = broker.partition_count(&route.topic).await?.max(1) as i32;
            let record_max = broker
                .max_record_bytes(&route.topic)
                .await?
                .saturating_sub(RECORD_FRAMING_BYTES_MAX);
            routes.push(RouteTarget {
                topic: route.topic.clone(),
                partition: partition % count,
                record_max,
            });
        }
    }
    Ok(OutputTargets {
        routes,
        job: config.job,
        partition: config.partition,
        source_topic,
        sink_topic,
        dead_letter_topic,
        sink_partition,
        dead_letter_partition,
        sink_record_max,
        dead_letter_max,
        route_by_key,
        markers,
    })
}

/// Where the task's results go: the sink, or upstream of a shuffle the repartition topic
/// (routed by key, with the task's watermark markers).
async fn stage_output<B: Broker>(
    config: &PartitionConfig,
    task: &StageTask,
    broker: &B,
) -> Result<(String, Option<u32>, Option<Markers>), PartitionError> {
    Ok(match task {
        StageTask::Upstream {
            source_partition,
            repartition,
            ..
        } => (
            repartition.topic.clone(),
            Some(repartition.partitions),
            Some(Markers {
                topic: repartition.topic.clone(),
                partitions: repartition.partitions,
                upstream: *source_partition as u32,
                last_sent_ms: None,
            }),
        ),
        StageTask::JoinUpstream {
            side,
            source_partition,
            repartition,
            ..
        } => {
            // Markers carry a global upstream index: the left side's tasks first.
            let upstream = match side {
                JoinSide::Left => *source_partition as u32,
                JoinSide::Right => {
                    join_upstreams(config, broker).await?.0 + *source_partition as u32
                }
            };
            (
                repartition.topic.clone(),
                Some(repartition.partitions),
                Some(Markers {
                    topic: repartition.topic.clone(),
                    partitions: repartition.partitions,
                    upstream,
                    last_sent_ms: None,
                }),
            )
        }
        StageTask::Whole { .. }
        | StageTask::Downstream { .. }
        | StageTask::JoinDownstream { .. } => (config.spec.sink.topic.clone(), None, None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_commit_of_the_restored_run_ends_a_restore() {
        let after = Some(CheckpointId(7));
        // No commit point, or one from before the start: restore the savepoint.
        assert!(!committed_since_restore(None, after));
        assert!(!committed_since_restore(None, None));
        assert!(!committed_since_restore(Some(7), after));
        assert!(!committed_since_restore(Some(3), after));
        // The restored run's ids start above every earlier one.
        assert!(committed_since_restore(Some(8), after));
        assert!(committed_since_restore(Some(1), None));
    }

    #[test]
    fn the_local_copy_stands_for_the_pin_only_at_its_checkpoint_offset_and_version() {
        let spec = weir_core::spec::parse_job_spec(
            b"name: j\nsource: { topic: t, format: json }\npipeline: []\nsink: { topic: s }\n",
        )
        .expect("a valid spec");
        let local = |checkpoint: u64| {
            let pipeline = Pipeline::compile_role(&spec, PipelineRole::Whole).expect("compiles");
            Some((pipeline, checkpoint))
        };
        let pin = RestorePoint {
            savepoint: weir_core::ids::SavepointId(1),
            checkpoint: Some(CheckpointId(5)),
            offset: 100,
            snapshot: Some("1/0/00000000000000000100.snap".into()),
            after_checkpoint: Some(CheckpointId(9)),
            spec_before: None,
            state_drop: Vec::new(),
            redistribute: Vec::new(),
        };
        assert!(local_at_pin(&pin, Some(100), local(5)).is_some());
        // Another commit point, another checkpoint, or no local copy: the store's snapshot.
        assert!(local_at_pin(&pin, Some(101), local(5)).is_none());
        assert!(local_at_pin(&pin, None, local(5)).is_none());
        assert!(local_at_pin(&pin, Some(100), local(4)).is_none());
        assert!(local_at_pin(&pin, Some(100), None).is_none());
        // An upgrade carries the old version's state: never the local copy.
        let upgrade = RestorePoint {
            spec_before: Some(serde_json::json!({})),
            ..pin.clone()
        };
        assert!(local_at_pin(&upgrade, Some(100), local(5)).is_none());
        let dropping = RestorePoint {
            state_drop: vec!["velocity".into()],
            ..pin
        };
        assert!(local_at_pin(&dropping, Some(100), local(5)).is_none());
    }
}
