//! What one task of a job reads and writes, from its task id and the job's repartition
//! topics as the coordinator group recorded them (`weir_core::spec::stages`): the whole
//! pipeline over a source partition; the upstream stage over a source partition, writing
//! the repartition topic; or the downstream stage over a repartition partition. A job
//! with a join has a third group: the right side's upstream tasks.

use crate::operators::shuffled::JoinSide;
use crate::operators::PipelineRole;
use weir_broker::{CleanupPolicy, Retention, TopicSpec};
use weir_core::ids::{JobId, PartitionId};
use weir_core::spec::stages::{
    join_at, repartition_topic_at, repartition_topic_name, shuffling_key_by, task_generation,
    task_stage, JOIN_RIGHT_STAGE, REPARTITION_CLEANUP_POLICY, REPARTITION_RETENTION_MS,
};
use weir_core::spec::{JobSpec, Stage};

/// The stage a task runs, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageTask {
    /// The whole pipeline: source partition to sink.
    Whole { source_partition: i32 },
    /// The stages up to the shuffle: source partition to the repartition topic.
    Upstream {
        source_partition: i32,
        shuffle_at: usize,
        repartition: Repartition,
    },
    /// The stages after the shuffle: a repartition partition to the sink.
    Downstream {
        partition: i32,
        shuffle_at: usize,
        repartition: Repartition,
    },
    /// One side of a `join` (at `join_at`): a partition of the source (left) or of
    /// `join.with.topic` (right) to the repartition topic.
    JoinUpstream {
        side: JoinSide,
        source_partition: i32,
        join_at: usize,
        repartition: Repartition,
    },
    /// The `join` and what follows it: a repartition partition to the sink.
    JoinDownstream {
        partition: i32,
        join_at: usize,
        repartition: Repartition,
    },
}

/// A job's repartition topic as its tasks use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repartition {
    pub topic: String,
    pub partitions: u32,
}

impl Repartition {
    /// The topic as weir creates it (or checks it, if it exists).
    pub fn topic_spec(&self) -> TopicSpec {
        debug_assert_eq!(REPARTITION_CLEANUP_POLICY, "delete");
        let mut spec = TopicSpec::new(&self.topic, self.partitions);
        spec.cleanup_policy = CleanupPolicy::Delete;
        spec.retention = Some(Retention::Ms(REPARTITION_RETENTION_MS));
        spec
    }
}

/// Why a task cannot be resolved: the group's record and the spec disagree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task {task} of job {job} does not fit the job's stages: {reason}")]
pub struct StageMismatch {
    pub job: JobId,
    pub task: PartitionId,
    pub reason: String,
}

/// The stage task `task` of `job` runs, given the partition counts of the job's
/// repartition topics as the group recorded them (`repartitions`; empty: one stage, as
/// every job before stages existed) and how many times its downstream stage was rescaled
/// (`generation`: which repartition topic upstream tasks write, and which tasks read it).
pub fn resolve(
    job: JobId,
    spec: &JobSpec,
    task: PartitionId,
    (repartitions, generation): (&[u32], u32),
) -> Result<StageTask, StageMismatch> {
    let (stage, index) = task_stage(task);
    let mismatch = |reason: String| StageMismatch { job, task, reason };
    let index = i32::try_from(index).map_err(|_| mismatch("index out of range".into()))?;
    let Some(&partitions) = repartitions.first() else {
        return match stage {
            0 => Ok(StageTask::Whole {
                source_partition: index,
            }),
            _ => Err(mismatch("the job has one stage".into())),
        };
    };
    if let Some(join_at) = join_at(spec) {
        return resolve_join(job, task, join_at, partitions, repartitions.len());
    }
    let Some(shuffle_at) = shuffling_key_by(spec) else {
        return Err(mismatch("the spec does not shuffle".into()));
    };
    if repartitions.len() > 1 {
        return Err(mismatch("more than one repartition topic".into()));
    }
    let repartition = Repartition {
        topic: repartition_topic_at(job, 1, generation),
        partitions,
    };
    if stage == 1 && task_generation(task) != generation {
        return Err(mismatch(format!(
            "a task of the downstream stage's generation {}, which runs generation {generation} \
             now",
            task_generation(task)
        )));
    }
    match stage {
        0 => Ok(StageTask::Upstream {
            source_partition: index,
            shuffle_at,
            repartition,
        }),
        1 if (index as u32) < partitions => Ok(StageTask::Downstream {
            partition: index,
            shuffle_at,
            repartition,
        }),
        _ => Err(mismatch(format!(
            "stage {stage} partition {index} is not among the job's tasks"
        ))),
    }
}

/// A task of a job with a join: stage 0 the left side's upstream tasks, 1 the join's
/// downstream tasks, [`JOIN_RIGHT_STAGE`] the right side's upstream tasks.
fn resolve_join(
    job: JobId,
    task: PartitionId,
    join_at: usize,
    partitions: u32,
    repartition_topics: usize,
) -> Result<StageTask, StageMismatch> {
    let (stage, index) = task_stage(task);
    let mismatch = |reason: String| StageMismatch { job, task, reason };
    if repartition_topics > 1 {
        return Err(mismatch("more than one repartition topic".into()));
    }
    let index = i32::try_from(index).map_err(|_| mismatch("index out of range".into()))?;
    let repartition = Repartition {
        topic: repartition_topic_name(job, 1),
        partitions,
    };
    let upstream = |side| StageTask::JoinUpstream {
        side,
        source_partition: index,
        join_at,
        repartition: repartition.clone(),
    };
    match stage {
        0 => Ok(upstream(JoinSide::Left)),
        JOIN_RIGHT_STAGE => Ok(upstream(JoinSide::Right)),
        1 if (index as u32) < partitions => Ok(StageTask::JoinDownstream {
            partition: index,
            join_at,
            repartition,
        }),
        _ => Err(mismatch(format!(
            "stage {stage} partition {index} is not among the job's tasks"
        ))),
    }
}

impl StageTask {
    /// The topic and partition the task reads.
    pub fn input(&self, spec: &JobSpec) -> (String, i32) {
        match self {
            StageTask::Whole { source_partition }
            | StageTask::Upstream {
                source_partition, ..
            } => (spec.source.topic.clone(), *source_partition),
            StageTask::Downstream {
                partition,
                repartition,
                ..
            }
            | StageTask::JoinDownstream {
                partition,
                repartition,
                ..
            } => (repartition.topic.clone(), *partition),
            StageTask::JoinUpstream {
                side,
                source_partition,
                join_at,
                ..
            } => {
                let topic = match (side, spec.pipeline.get(*join_at)) {
                    (JoinSide::Right, Some(Stage::Join(join))) => join.with.topic.clone(),
                    _ => spec.source.topic.clone(),
                };
                (topic, *source_partition)
            }
        }
    }

    /// The part of the pipeline the task runs, its job's source having
    /// `source_partitions` partitions (downstream of a shuffle, one upstream task each).
    pub fn role(&self, source_partitions: u32) -> PipelineRole {
        self.role_in(source_partitions, 0)
    }

    /// The part of the pipeline the task runs, its job's source having
    /// `source_partitions` partitions and its join's right side `right_partitions`
    /// (downstream of a join, one upstream task each).
    pub fn role_in(&self, source_partitions: u32, right_partitions: u32) -> PipelineRole {
        match self {
            StageTask::JoinUpstream { side, join_at, .. } => match side {
                JoinSide::Left => PipelineRole::JoinLeft { join_at: *join_at },
                JoinSide::Right => PipelineRole::JoinRight { join_at: *join_at },
            },
            StageTask::JoinDownstream { join_at, .. } => PipelineRole::JoinDownstream {
                join_at: *join_at,
                left_upstreams: source_partitions,
                right_upstreams: right_partitions,
            },
            StageTask::Whole { .. } => PipelineRole::Whole,
            StageTask::Upstream { shuffle_at, .. } => PipelineRole::Upstream {
                shuffle_at: *shuffle_at,
            },
            StageTask::Downstream { shuffle_at, .. } => PipelineRole::Downstream {
                shuffle_at: *shuffle_at,
                upstreams: source_partitions,
            },
        }
    }

    /// The repartition topic the task reads or writes, if any.
    pub fn repartition(&self) -> Option<&Repartition> {
        match self {
            StageTask::Whole { .. } => None,
            StageTask::Upstream { repartition, .. }
            | StageTask::Downstream { repartition, .. }
            | StageTask::JoinUpstream { repartition, .. }
            | StageTask::JoinDownstream { repartition, .. } => Some(repartition),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::spec::parse_job_spec;
    use weir_core::spec::stages::{downstream_task, task_id};

    fn spec(pipeline: &str) -> JobSpec {
        let yaml = format!(
            "name: j\nsource: {{ topic: payments }}\npipeline: [{pipeline}]\nsink: {{ topic: out }}\n"
        );
        parse_job_spec(yaml.as_bytes()).unwrap()
    }

    #[test]
    fn tasks_resolve_to_their_stage_and_partition() {
        let shuffles = spec(
            r#"{ key_by: "card" }, { window: { tumbling: 5s } }, { aggregate: { n: "count()" } }"#,
        );
        let job = JobId(7);
        let topic = "weir-job-7-repartition-1".to_string();
        assert_eq!(
            resolve(job, &shuffles, task_id(0, 2), (&[4], 0))
                .unwrap()
                .input(&shuffles),
            ("payments".to_string(), 2)
        );
        let down = resolve(job, &shuffles, task_id(1, 3), (&[4], 0)).unwrap();
        assert_eq!(down.input(&shuffles), (topic.clone(), 3));
        assert_eq!(down.repartition().unwrap().topic_spec().partitions, 4);
        assert!(resolve(job, &shuffles, task_id(1, 4), (&[4], 0)).is_err());
        assert!(resolve(job, &shuffles, task_id(2, 0), (&[4], 0)).is_err());
        // Recorded with one stage (before stages existed): the whole pipeline, as then.
        assert_eq!(
            resolve(job, &shuffles, task_id(0, 1), (&[], 0)).unwrap(),
            StageTask::Whole {
                source_partition: 1
            }
        );
        assert!(resolve(job, &shuffles, task_id(1, 0), (&[], 0)).is_err());
        // A spec that does not shuffle cannot have repartition topics.
        let stateless = spec(r#"{ key_by: "card" }"#);
        assert!(resolve(job, &stateless, task_id(0, 0), (&[4], 0)).is_err());
    }

    #[test]
    fn after_a_rescale_upstream_tasks_write_and_only_the_new_tasks_read_the_new_topic() {
        let shuffles = spec(
            r#"{ key_by: "card" }, { window: { tumbling: 5s } }, { aggregate: { n: "count()" } }"#,
        );
        let job = JobId(7);
        let topic = "weir-job-7-repartition-1-g2".to_string();
        let up = resolve(job, &shuffles, task_id(0, 1), (&[6], 2)).unwrap();
        assert_eq!(up.repartition().unwrap().topic, topic);
        assert_eq!(up.repartition().unwrap().partitions, 6);
        let down = resolve(job, &shuffles, downstream_task(2, 5), (&[6], 2)).unwrap();
        assert_eq!(down.input(&shuffles), (topic, 5));
        // A task of an earlier generation no longer fits the job's stages.
        assert!(resolve(job, &shuffles, task_id(1, 0), (&[6], 2)).is_err());
        assert!(resolve(job, &shuffles, downstream_task(1, 0), (&[6], 2)).is_err());
    }
}
