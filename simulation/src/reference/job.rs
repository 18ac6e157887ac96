//! A whole job over every source partition, following its stage plan
//! (`weir_core::spec::plan_stages`, the specification of where a job shuffles).
//!
//! - A job that does not shuffle is one stage: each source partition evaluated on its
//!   own, as [`evaluate_partition`](super::evaluate_partition) does. When its source is
//!   declared `partitioned_by` and a key_by relies on it, every key that key_by computes
//!   must hash to the record's partition; each that does not is reported as
//!   [`RefMisplaced`](super::RefMisplaced) (the engine fails the job on it).
//! - A job that shuffles (one shuffle at most: a validated spec has one window) runs an
//!   upstream stage per source partition up to the shuffling key_by (`evaluator`), then
//!   one global downstream stage (`downstream`). The runtime refuses a session window or
//!   a dedupe after the shuffling key_by at submit; the reference refuses them as
//!   [`ReferenceError::InvalidSpec`] naming the pipeline stage.
//!
//! # The upstream stage of a job that shuffles
//!
//! Per source partition `p`, records in offset order, exactly the single-stage evaluation
//! up to and including the shuffling key_by: decoding and event-time dead letters; the
//! watermark `W(p)` = the largest valid event time so far − `max_out_of_orderness`
//! (none before the first), moved by every record with a valid event time; the stages
//! under `W_before`, `W(p)` before the record (a dedupe there included); drops and
//! expression dead letters with the source coordinates and the original value. Lateness
//! is judged here, once: late iff `last_start + size + allowed_lateness <= W_before`,
//! `last_start = floor(t / slide) * slide` (tumbling: slide = size), a `late` dead letter.
//! Every other event is shuffled with its key text, current object, event time,
//! `W_before` and source coordinates.

use super::downstream::{run_downstream, Repartition};
use super::evaluator::Evaluator;
use super::plan::{Plan, StageOp};
use super::windows::Shape;
use super::{RefOutputs, RefRecord, ReferenceError};
use weir_core::ids::JobId;
use weir_core::spec::stages::{plan_stages, KeyByDecision, StagePlan};
use weir_core::spec::JobSpec;

/// Evaluates job `job` (its id names the repartition topic) over `records`, every
/// committed record of its source topic `topic` with `source_partitions` partitions, in
/// any order of partitions but each partition's in offset order.
pub fn evaluate_job(
    spec: &JobSpec,
    job: JobId,
    topic: &str,
    source_partitions: u32,
    records: &[RefRecord],
) -> Result<RefOutputs, ReferenceError> {
    let stages = plan_stages(spec, job, source_partitions)
        .map_err(|e| ReferenceError::InvalidSpec(e.to_string()))?;
    // A plan per partition and one for the downstream stage: an evaluator owns its plan.
    let compile = || {
        let mut plan = Plan::compile(spec)?;
        let repartition = apply_stage_plan(&mut plan, &stages, source_partitions)?;
        Ok::<_, ReferenceError>((plan, repartition))
    };
    let (plan, repartition) = compile()?;
    if let Some(bad) = records
        .iter()
        .find(|r| r.partition < 0 || r.partition as u32 >= source_partitions)
    {
        return Err(ReferenceError::Unsupported(format!(
            "a record on partition {} of a {source_partitions}-partition topic",
            bad.partition
        )));
    }
    let mut upstreams = Vec::new();
    for partition in 0..source_partitions as i32 {
        let mut evaluator = Evaluator::new(compile()?.0, topic);
        for record in records.iter().filter(|r| r.partition == partition) {
            evaluator.process(record)?;
        }
        upstreams.push(evaluator.finish_upstream());
    }
    let mut out = RefOutputs::default();
    match repartition {
        Some(repartition) => run_downstream(&plan, topic, &repartition, upstreams, &mut out)?,
        None => {
            for upstream in upstreams {
                out.outputs.extend(upstream.out.outputs);
                out.dead_letters.extend(upstream.out.dead_letters);
                out.misplaced.extend(upstream.out.misplaced);
            }
        }
    }
    Ok(out)
}

/// Marks in `plan` where the job shuffles and which key_bys a declared partitioning is
/// checked at; returns the repartition topic when it shuffles.
fn apply_stage_plan(
    plan: &mut Plan,
    stages: &StagePlan,
    source_partitions: u32,
) -> Result<Option<Repartition>, ReferenceError> {
    let topics = stages.repartition_topics();
    if topics.len() > 1 {
        return Err(ReferenceError::Unsupported(format!(
            "{} shuffles; a validated spec has at most one",
            topics.len()
        )));
    }
    let shuffle = topics.first().map(|topic| topic.key_by);
    for key_by in &stages.key_bys {
        let relies_on_source = key_by.decision == KeyByDecision::AlreadyPartitioned
            && shuffle.is_none_or(|at| key_by.index < at);
        if !relies_on_source {
            continue;
        }
        match plan.before_op(key_by.index) {
            Some(StageOp::KeyBy { checked, .. }) => *checked = true,
            _ => {
                return Err(invalid(
                    key_by.index,
                    "key_by",
                    "is not a key_by before the window",
                ))
            }
        }
        plan.source_partitions = Some(source_partitions);
    }
    let Some(topic) = topics.first() else {
        return Ok(None);
    };
    if !matches!(plan.before_op(topic.key_by), Some(StageOp::KeyBy { .. })) {
        return Err(invalid(
            topic.key_by,
            "key_by",
            "is not a key_by before the window",
        ));
    }
    plan.shuffle_after = Some(topic.key_by + 1);
    check_shuffled_pipeline(plan, topic.key_by)?;
    Ok(Some(Repartition {
        topic: topic.name.clone(),
        partitions: topic.partitions,
    }))
}

/// The submit-time refusals for a job that shuffles at pipeline index `key_by`: no
/// session window and no dedupe after the shuffling key_by.
fn check_shuffled_pipeline(plan: &Plan, key_by: usize) -> Result<(), ReferenceError> {
    let downstream = plan.downstream();
    // `before` holds the pipeline one for one up to the window, then window and
    // aggregate take two pipeline indices.
    let window_index = plan.before.len();
    if let Some(i) = downstream
        .iter()
        .position(|op| matches!(op, StageOp::Dedupe { .. }))
    {
        return Err(invalid(
            key_by + 1 + i,
            "dedupe",
            "after a shuffling key_by",
        ));
    }
    if let Some(window) = &plan.window {
        if matches!(window.shape, Shape::Session { .. }) {
            return Err(invalid(
                window_index,
                "window",
                "a session after a shuffling key_by",
            ));
        }
    }
    if let Some(i) = plan
        .after
        .iter()
        .position(|op| matches!(op, StageOp::Dedupe { .. }))
    {
        return Err(invalid(
            window_index + 2 + i,
            "dedupe",
            "after a shuffling key_by",
        ));
    }
    Ok(())
}

fn invalid(index: usize, field: &str, message: &str) -> ReferenceError {
    ReferenceError::InvalidSpec(format!("pipeline[{index}].{field}: {message}"))
}
