//! The job's stage plan: how a validated [`JobSpec`] splits into a chain of stages joined by
//! repartition topics, computed from the spec, the job id and the source topic's partition
//! count alone (a pure function: same inputs, same plan, on every coordinator and worker).
//!
//! **Run.** The coordinator group applies it when a job's source partition count is first
//! known and records the repartition topics' partition counts with the job; workers
//! resolve each task against that record (`worker/src/exactly_once/stage_task.rs`). A
//! validated spec has at most one window or one join, so at most one shuffle runs today.
//!
//! # The rules
//!
//! - **Stage 0** reads the source topic, one task per source partition.
//! - A `key_by` **shuffles** — ends the stage it is in and starts a new one reading a
//!   repartition topic — when both:
//!   1. a stage that keeps state per key follows it before the next `key_by` (a `window`;
//!      `dedupe` keeps its memory per partition by its own key, not by `key_by`, and a
//!      stateless tail only labels output records with the key, which needs no shuffle);
//!   2. the records are not already partitioned by that key: neither the source declares
//!      `source.partitioned_by: f` with the `key_by` naming the field `f` (carried through
//!      `map` stages that copy it as a bare field, `card: "card_id"`), nor an earlier
//!      shuffle used the same key expression with no `map` or `aggregate` in between.
//!
//!   Otherwise the `key_by` stays inside its stage ([`KeyByDecision`] says which reason).
//! - The `key_by` that shuffles belongs to the **upstream** stage: it computes the key,
//!   which routes the record (as the Kafka record key) to a repartition partition; the
//!   downstream stage starts with the pipeline stage after it.
//! - A **repartition topic** is named `weir-job-<job id>-repartition-<n>`, `n` the index
//!   of the stage it feeds (1, 2, ...): only the job id and the spec decide it, so the name
//!   is stable across restarts and coordinators, unique per job (job ids are never
//!   reused), a legal Kafka topic name, and at most [`REPARTITION_TOPIC_NAME_LEN_MAX`]
//!   bytes. Its partition count is the spec's `parallelism`, else the source topic's
//!   partition count; every stage after stage 0 runs with that many tasks. Its cleanup
//!   policy is `delete` and its retention [`REPARTITION_RETENTION_MS`].
//! - A **`join`** shuffles both of its sides: stage 0 runs the stages before it and
//!   writes each event, keyed by `left_key`, to the repartition topic
//!   `weir-job-<id>-repartition-1`; stage 1 runs the join and what follows it; the right
//!   side (`join.with.topic`) is read by the tasks of stage [`JOIN_RIGHT_STAGE`], one per
//!   partition of that topic, which write its events, keyed by `right_key`, to the same
//!   repartition topic. A job with a join has no window, so no `key_by` of it shuffles
//!   ([`StagePlan::stages`] lists stages 0 and 1; the right side's partition count is
//!   the coordinator's to learn).
//! - Every stage writes dead letters to the job's dead-letter topic; the last writes the
//!   sink.
//!
//! A declared `partitioned_by` is trusted here; checking that records really arrive on
//! the partition their key hashes to is the runtime's job.

use std::collections::BTreeSet;
use std::ops::Range;

use thiserror::Error;

use super::model::JobSpec;
use super::stage::Stage;
use super::validate::{PIPELINE_STAGES_MAX, TOPIC_LEN_MAX};
use crate::ids::JobId;

/// What every repartition topic's name starts with, before the job id: the same prefix as
/// the job's consumer group (`weir-job-<id>`), so an operator finds a job's topics and
/// group together.
pub const REPARTITION_TOPIC_PREFIX: &str = "weir-job-";

/// The longest repartition topic name: the prefix, a u64 job id (20 digits),
/// `-repartition-`, a stage index below [`PIPELINE_STAGES_MAX`] (2 digits) and, after a
/// rescale, `-g` and the generation (at most 6 digits, [`REPARTITION_GENERATIONS_MAX`]).
pub const REPARTITION_TOPIC_NAME_LEN_MAX: usize =
    REPARTITION_TOPIC_PREFIX.len() + 20 + "-repartition-".len() + 2 + "-g".len() + 6;
const _: () = assert!(REPARTITION_TOPIC_NAME_LEN_MAX <= TOPIC_LEN_MAX);
const _: () = assert!(PIPELINE_STAGES_MAX < 100);

/// `retention.ms` of repartition topics: 7 days. A downstream stage reads each record once,
/// soon after it is written; the retention only bounds the disk a stopped or stalled job
/// holds. A downstream stage stalled for longer would find its records gone: the runtime
/// must then fail the job (a committed offset below the log start), never skip them.
pub const REPARTITION_RETENTION_MS: u64 = 7 * 24 * 3600 * 1000;

/// `cleanup.policy` of repartition topics: `delete`. Compaction would drop records of a
/// key that a downstream stage has not read yet.
pub const REPARTITION_CLEANUP_POLICY: &str = "delete";

/// A job as a chain of stages; stage 0 reads the source, the last writes the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagePlan {
    /// The stages in order; never empty.
    pub stages: Vec<PlannedStage>,
    /// What each `key_by` of the pipeline does, in pipeline order.
    pub key_bys: Vec<KeyByPlan>,
}

impl StagePlan {
    /// The repartition topics the job needs, in stage order: what the coordinator creates
    /// before the job starts and deletes with it.
    pub fn repartition_topics(&self) -> Vec<&RepartitionTopic> {
        self.stages
            .iter()
            .filter_map(|stage| match &stage.output {
                StageOutput::Repartition(topic) => Some(topic),
                StageOutput::Sink => None,
            })
            .collect()
    }
}

/// One stage of the chain: a task per partition of its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStage {
    /// Where the stage reads.
    pub input: StageInput,
    /// The partition count of its input: how many tasks run the stage.
    pub partitions: u32,
    /// The pipeline stages it runs, as indices into [`JobSpec::pipeline`]; may be empty
    /// only for a job with no pipeline.
    pub operators: Range<usize>,
    /// Where its results go (dead letters always go to the job's dead-letter topic).
    pub output: StageOutput,
}

/// Where a stage reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageInput {
    /// The job's source topic (stage 0).
    Source { topic: String },
    /// The repartition topic the previous stage writes.
    Repartition { topic: String },
}

/// Where a stage writes its results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageOutput {
    /// The job's sink topic (the last stage).
    Sink,
    /// A repartition topic, records routed by the key of a `key_by`.
    Repartition(RepartitionTopic),
}

/// An internal topic between two stages, owned by the job: created before it runs and
/// deleted with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepartitionTopic {
    /// `weir-job-<job id>-repartition-<n>`, `n` the index of the stage it feeds.
    pub name: String,
    /// The spec's `parallelism`, else the source topic's partition count.
    pub partitions: u32,
    /// The pipeline index of the `key_by` (or the `join`) whose key routes records to
    /// partitions.
    pub key_by: usize,
    /// `retention.ms`: [`REPARTITION_RETENTION_MS`]; the cleanup policy is
    /// [`REPARTITION_CLEANUP_POLICY`].
    pub retention_ms: u64,
}

/// What one `key_by` of the pipeline does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyByPlan {
    /// Its index in [`JobSpec::pipeline`].
    pub index: usize,
    /// Whether it shuffles, and if not, why.
    pub decision: KeyByDecision,
}

/// Why a `key_by` shuffles or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyByDecision {
    /// It ends its stage: records go through a repartition topic to stage `stage`.
    Shuffle { stage: usize },
    /// The records are partitioned by this key already (`source.partitioned_by`, or an
    /// earlier shuffle by the same key): no shuffle.
    AlreadyPartitioned,
    /// No window follows before the next `key_by`: the key only labels records, no
    /// shuffle.
    NoKeyedState,
}

/// Why a stage plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StagePlanError {
    /// The source topic reported no partitions (a topic being deleted).
    #[error("the source topic {topic} has no partitions")]
    NoSourcePartitions { topic: String },
    /// The pipeline is longer than validation allows: the spec was not validated.
    #[error(
        "the pipeline has {stages} stages; a validated spec has at most {PIPELINE_STAGES_MAX}"
    )]
    PipelineTooLong { stages: usize },
}

/// How a job's tasks are numbered: task `stage * TASK_STAGE_STRIDE + index` runs partition
/// `index` of stage `stage`'s input. Stage 0's tasks keep their source partition's number,
/// so a job that does not shuffle numbers its tasks exactly as before stages existed, and a
/// source that grows adds tasks without renumbering the later stages'. Above every
/// partition count weir allows ([`PARALLELISM_MAX`](super::validate::PARALLELISM_MAX)
/// and a source's).
pub const TASK_STAGE_STRIDE: u32 = 10_000;
const _: () = assert!(super::validate::PARALLELISM_MAX <= TASK_STAGE_STRIDE);

/// How many times a job's downstream stage may be rescaled: each rescale starts a new
/// *generation* of it (a new repartition topic, new tasks), numbered from 1; generation 0
/// is the stage as first planned.
pub const REPARTITION_GENERATIONS_MAX: u32 = 100_000;

/// The raw stage number of generation 1 of a rescaled downstream stage: generation `g >= 1`
/// of stage 1 numbers its tasks as stage `RESCALED_STAGE_BASE + g`. Far above every stage a
/// plan numbers (stage 1, [`JOIN_RIGHT_STAGE`]), so that each generation's tasks have ids
/// of their own: their snapshots, transactional ids and checkpoint histories never mix
/// with an earlier generation's, whose input was another topic.
pub const RESCALED_STAGE_BASE: u32 = 1_000;
const _: () = assert!(
    (RESCALED_STAGE_BASE as u64 + REPARTITION_GENERATIONS_MAX as u64 + 1)
        * TASK_STAGE_STRIDE as u64
        <= u32::MAX as u64
);
const _: () = assert!(RESCALED_STAGE_BASE as usize > PIPELINE_STAGES_MAX);

/// The task running partition `index` of stage `stage`'s input (for stage 1, as first
/// planned: generation 0; see [`downstream_task`]).
pub fn task_id(stage: usize, index: u32) -> crate::ids::PartitionId {
    debug_assert!(index < TASK_STAGE_STRIDE);
    crate::ids::PartitionId(stage as u32 * TASK_STAGE_STRIDE + index)
}

/// The task running partition `index` of the downstream stage (stage 1) in its
/// `generation` (0 as first planned, one more after each rescale).
pub fn downstream_task(generation: u32, index: u32) -> crate::ids::PartitionId {
    debug_assert!(generation <= REPARTITION_GENERATIONS_MAX);
    match generation {
        0 => task_id(1, index),
        g => task_id((RESCALED_STAGE_BASE + g) as usize, index),
    }
}

/// The stage and input partition of task `task`; every generation of the downstream
/// stage is stage 1 ([`task_generation`] tells them apart).
pub fn task_stage(task: crate::ids::PartitionId) -> (usize, u32) {
    let raw = task.0 / TASK_STAGE_STRIDE;
    let stage = if raw > RESCALED_STAGE_BASE { 1 } else { raw };
    (stage as usize, task.0 % TASK_STAGE_STRIDE)
}

/// The generation of the downstream stage task `task` belongs to: 0 for every task of a
/// stage as first planned (and every task outside stage 1).
pub fn task_generation(task: crate::ids::PartitionId) -> u32 {
    (task.0 / TASK_STAGE_STRIDE).saturating_sub(RESCALED_STAGE_BASE)
}

/// The input partition task `task` of job `job` reads: its source partition (stage 0), a
/// partition of the repartition topic (stage 1 of a job that repartitions), or a partition
/// of the join's topic (stage [`JOIN_RIGHT_STAGE`] of a job with a join, `join_topic`);
/// `None` for a task the job's stages do not have. `repartitions` as the group recorded
/// them.
pub fn task_input(
    job: JobId,
    (source_topic, join_topic): (&str, Option<&str>),
    repartitions: &[u32],
    task: crate::ids::PartitionId,
) -> Option<(String, i32)> {
    let (stage, index) = task_stage(task);
    let index = i32::try_from(index).ok()?;
    match stage {
        0 => Some((source_topic.to_string(), index)),
        1 if !repartitions.is_empty() => {
            Some((repartition_topic_at(job, 1, task_generation(task)), index))
        }
        JOIN_RIGHT_STAGE => Some((join_topic?.to_string(), index)),
        _ => None,
    }
}

/// Whether task `task` reads a repartition topic (a downstream stage's task). Such a task
/// pauses only once every task writing that topic has paused, and reads it to its end
/// first, so that a paused or stopped job's cut is consistent across the shuffle.
pub fn reads_repartition(task: crate::ids::PartitionId) -> bool {
    task_stage(task).0 == 1
}

/// The name of the repartition topic feeding stage `stage` of job `job`, as first
/// planned (generation 0).
pub fn repartition_topic_name(job: JobId, stage: usize) -> String {
    format!("{REPARTITION_TOPIC_PREFIX}{}-repartition-{stage}", job.0)
}

/// The name of the repartition topic feeding stage `stage` of job `job` in `generation`:
/// a rescale switches to a new topic (`...-repartition-<n>-g<generation>`), since Kafka
/// can only add partitions to one and adding them would re-route records in flight.
pub fn repartition_topic_at(job: JobId, stage: usize, generation: u32) -> String {
    match generation {
        0 => repartition_topic_name(job, stage),
        g => format!("{}-g{g}", repartition_topic_name(job, stage)),
    }
}

/// The stage plan of `spec` (validated) for job `job` whose source topic has
/// `source_partitions` partitions. See the module documentation for the rules.
pub fn plan_stages(
    spec: &JobSpec,
    job: JobId,
    source_partitions: u32,
) -> Result<StagePlan, StagePlanError> {
    if source_partitions == 0 {
        return Err(StagePlanError::NoSourcePartitions {
            topic: spec.source.topic.clone(),
        });
    }
    if spec.pipeline.len() > PIPELINE_STAGES_MAX {
        return Err(StagePlanError::PipelineTooLong {
            stages: spec.pipeline.len(),
        });
    }
    let key_bys = decide_key_bys(spec);
    let repartition_partitions = spec.parallelism.unwrap_or(source_partitions);
    let mut stages = Vec::new();
    let mut input = StageInput::Source {
        topic: spec.source.topic.clone(),
    };
    let mut partitions = source_partitions;
    let mut start = 0;
    if let Some(join) = join_at(spec) {
        let topic = RepartitionTopic {
            name: repartition_topic_name(job, 1),
            partitions: repartition_partitions,
            key_by: join,
            retention_ms: REPARTITION_RETENTION_MS,
        };
        stages.push(PlannedStage {
            input,
            partitions,
            operators: 0..join,
            output: StageOutput::Repartition(topic.clone()),
        });
        input = StageInput::Repartition { topic: topic.name };
        partitions = repartition_partitions;
        start = join;
    }
    for key_by in &key_bys {
        let KeyByDecision::Shuffle { stage } = key_by.decision else {
            continue;
        };
        let topic = RepartitionTopic {
            name: repartition_topic_name(job, stage),
            partitions: repartition_partitions,
            key_by: key_by.index,
            retention_ms: REPARTITION_RETENTION_MS,
        };
        let next_input = StageInput::Repartition {
            topic: topic.name.clone(),
        };
        stages.push(PlannedStage {
            input,
            partitions,
            operators: start..key_by.index + 1,
            output: StageOutput::Repartition(topic),
        });
        input = next_input;
        partitions = repartition_partitions;
        start = key_by.index + 1;
    }
    stages.push(PlannedStage {
        input,
        partitions,
        operators: start..spec.pipeline.len(),
        output: StageOutput::Sink,
    });
    let plan = StagePlan { stages, key_bys };
    assert_covers_pipeline(&plan, spec.pipeline.len());
    Ok(plan)
}

/// Every pipeline stage runs in exactly one stage of the chain, in order.
fn assert_covers_pipeline(plan: &StagePlan, pipeline_len: usize) {
    let mut next = 0;
    for stage in &plan.stages {
        assert_eq!(
            stage.operators.start, next,
            "stages are contiguous: {plan:?}"
        );
        assert!(stage.operators.start <= stage.operators.end);
        next = stage.operators.end;
    }
    assert_eq!(
        next, pipeline_len,
        "the stages cover the pipeline: {plan:?}"
    );
}

/// The stage whose tasks read the right side of a job's `join` (`join.with.topic`), one
/// task per partition of it: upstream tasks like stage 0's, writing the same repartition
/// topic. It comes after the join's downstream stage (1) so that the first two stages are
/// numbered as for every other job that shuffles.
pub const JOIN_RIGHT_STAGE: usize = 2;

/// The pipeline index of the job's `join`, if it has one (a validated spec has at most
/// one).
pub fn join_at(spec: &JobSpec) -> Option<usize> {
    spec.pipeline
        .iter()
        .position(|stage| matches!(stage, Stage::Join(_)))
}

/// The pipeline index of the stage that shuffles, if the job shuffles: the `key_by`
/// that does (a validated spec has one window, so at most one does), or the job's `join`
/// (a job with a join has no window). It depends on the spec alone, not on the source's
/// partition count, so submit can check what a shuffle allows.
pub fn shuffling_key_by(spec: &JobSpec) -> Option<usize> {
    if let Some(join) = join_at(spec) {
        return Some(join);
    }
    decide_key_bys(spec)
        .into_iter()
        .find(|plan| matches!(plan.decision, KeyByDecision::Shuffle { .. }))
        .map(|plan| plan.index)
}

/// What a job that shuffles cannot run yet, as `(spec field, reason)`: the stages whose
/// result would depend on the order in which records of different upstream tasks arrive
/// downstream, which no replay or reference could then predict.
///
/// - a `session` window after the shuffle: whether an event merges into a session depends
///   on which of the key's sessions the downstream watermark has already closed;
/// - a `dedupe` after the shuffle: "keep the first" has no first across upstreams.
///
/// A source partitioned by the key (`source.partitioned_by`) needs no shuffle and runs both.
pub fn check_shuffle_supported(spec: &JobSpec) -> Result<(), (String, String)> {
    let Some(shuffle) = shuffling_key_by(spec) else {
        return Ok(());
    };
    for (index, stage) in spec.pipeline.iter().enumerate().skip(shuffle + 1) {
        match stage {
            Stage::Window(window) if matches!(window.kind, crate::spec::WindowKind::Session(_)) => {
                return Err((
                    format!("pipeline[{index}].window"),
                    format!(
                        "a session window after a key_by that repartitions (pipeline[{shuffle}]) \
                         is not supported; declare source.partitioned_by if the source topic is \
                         already partitioned by that key"
                    ),
                ));
            }
            Stage::Dedupe(_) => {
                return Err((
                    format!("pipeline[{index}].dedupe"),
                    format!(
                        "a dedupe after a key_by that repartitions (pipeline[{shuffle}]) is not \
                         supported; put it before the key_by, or declare \
                         source.partitioned_by if the source topic is already partitioned by \
                         that key"
                    ),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Each `key_by`'s decision, following how the records are partitioned through the
/// pipeline.
fn decide_key_bys(spec: &JobSpec) -> Vec<KeyByPlan> {
    let mut partitioning = match &spec.source.partitioned_by {
        Some(field) => Partitioning::Fields(BTreeSet::from([field.clone()])),
        None => Partitioning::Unknown,
    };
    let mut key_bys = Vec::new();
    let mut stage = 0;
    for (index, pipeline_stage) in spec.pipeline.iter().enumerate() {
        match pipeline_stage {
            Stage::KeyBy(expression) => {
                let decision = if !keyed_state_follows(&spec.pipeline[index + 1..]) {
                    KeyByDecision::NoKeyedState
                } else if partitioning.is_by(expression) {
                    KeyByDecision::AlreadyPartitioned
                } else {
                    stage += 1;
                    partitioning = Partitioning::by_key(expression);
                    KeyByDecision::Shuffle { stage }
                };
                key_bys.push(KeyByPlan { index, decision });
            }
            Stage::Map(outputs) => partitioning = partitioning.through_map(outputs.iter()),
            // A window result is a new object; nothing keyed may follow an aggregate today,
            // so forgetting the partitioning costs nothing and cannot be wrong.
            Stage::Aggregate(_) => partitioning = Partitioning::Unknown,
            // A join repartitions by its own key, and nothing keyed may follow it.
            Stage::Join(_) => partitioning = Partitioning::Unknown,
            Stage::Filter(_) | Stage::Dedupe(_) | Stage::Window(_) => {}
        }
    }
    key_bys
}

/// Whether a stage keeping state per key comes before the next `key_by` in `after`.
fn keyed_state_follows(after: &[Stage]) -> bool {
    after
        .iter()
        .take_while(|stage| !matches!(stage, Stage::KeyBy(_)))
        .any(|stage| matches!(stage, Stage::Window(_)))
}

/// What the records at one point of the pipeline are known to be partitioned by.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Partitioning {
    /// Nothing known.
    Unknown,
    /// The key text of these fields of the current object, which all hold the same value.
    Fields(BTreeSet<String>),
    /// The key text of this expression (trimmed) over the current object.
    Expression(String),
}

impl Partitioning {
    /// After a shuffle by the key of `expression`.
    fn by_key(expression: &str) -> Self {
        let expression = expression.trim();
        if is_identifier(expression) {
            Partitioning::Fields(BTreeSet::from([expression.to_string()]))
        } else {
            Partitioning::Expression(expression.to_string())
        }
    }

    /// Whether the key of `expression` is what the records are partitioned by.
    fn is_by(&self, expression: &str) -> bool {
        let expression = expression.trim();
        match self {
            Partitioning::Unknown => false,
            Partitioning::Fields(fields) => fields.contains(expression),
            Partitioning::Expression(known) => known == expression,
        }
    }

    /// After a `map`: the outputs that copy a partitioning field as it is keep it.
    fn through_map<'a>(&self, outputs: impl Iterator<Item = (&'a String, &'a String)>) -> Self {
        let Partitioning::Fields(fields) = self else {
            // An expression's inputs may be gone or changed in the new object.
            return Partitioning::Unknown;
        };
        let carried: BTreeSet<String> = outputs
            .filter(|(_, expression)| fields.contains(expression.trim()))
            .map(|(name, _)| name.clone())
            .collect();
        if carried.is_empty() {
            Partitioning::Unknown
        } else {
            Partitioning::Fields(carried)
        }
    }
}

/// A CEL identifier: what names a top-level field as it is.
fn is_identifier(text: &str) -> bool {
    let mut bytes = text.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
#[path = "stages_tests.rs"]
mod tests;
