//! A whole job with a `join`, interval or temporal, from the rules the engine's
//! specification states (the `operators` module comment, "Interval join" and "Temporal
//! join", and docs/JOB_SPEC.md):
//!
//! - **Each side, per partition** of its own topic, records in offset order: the left
//!   side runs the job's stages before the join, then its key is `left_key` over the
//!   object; the right side decodes with `join.with`'s event-time settings and its key is
//!   `right_key`. Decoding, event-time and expression dead letters as for any upstream
//!   stage (`evaluator`), with the side's topic and coordinates.
//! - **Lateness**, judged with `W_u`, the event's own partition's watermark before it (the
//!   largest valid event time so far minus that topic's `max_out_of_orderness`): a left
//!   event is late iff `ts + within + L <= W_u`, a right one iff `ts + L <= W_u`; a
//!   `late` dead letter with the original value. The others are *admitted*.
//! - **Pairs**: every admitted left `l` and right `r` with equal key texts and
//!   `l.ts <= r.ts <= l.ts + within` give `{"left": <l>, "right": <r>}`, keyed by the key
//!   text, each object as it was handed on (the value as read, or the JSON of a `map`).
//! - **Left outer**: an admitted `l` with no such `r` gives `{"left": <l>, "right": null}`
//!   iff `Wd >= l.ts + within + L`, `Wd` the least final watermark over every partition of
//!   both topics (none while any partition never had a valid event time) — the same
//!   "fired by the end" as a window downstream of a shuffle.
//! - **Temporal kinds** (`within` zero in the lateness above): the right side's admitted
//!   events are versions of their keys; one whose object has `"deleted": true` deletes
//!   it. An admitted `l` is joined iff `Wr >= l.ts + L`, `Wr` the least final watermark
//!   over the partitions of the right topic alone, with the right event of its key with
//!   the greatest `ts <= l.ts` (of several at that time, the greatest object bytes):
//!   `{"left": <l>, "right": <r>}`; when there is none or it is a deletion,
//!   `temporal_left_outer` gives `{"left": <l>, "right": null}` and `temporal` nothing.
//!   The result's event time is `l.ts`. ([`temporal_version`].)
//! - **After the join**, the remaining stages and the routes run on each joined record
//!   (its event time the later of the two). A failure there is dead-lettered by the
//!   engine at the repartition record that completed the pair, an offset no sequential
//!   evaluation knows: reported as [`ReferenceError::Unsupported`].

use super::evaluator::{run_stages, Event, Outcome};
use super::json::{self, Json};
use super::plan::{route_of, Plan};
use super::{downstream::Shuffled, evaluator::Evaluator};
use super::{RefDeadLetter, RefOutput, RefOutputs, RefRecord, ReferenceError};
use cel::Env;
use std::collections::BTreeMap;
use std::sync::Arc;
use weir_core::ids::JobId;
use weir_core::spec::{JobSpec, JoinKind, Stage};

/// One topic a join reads: its name, partition count and every committed record.
#[derive(Debug, Clone, Copy)]
pub struct JoinSideInput<'a> {
    pub topic: &'a str,
    pub partitions: u32,
    pub records: &'a [RefRecord],
}

/// What one side hands on: its admitted events and its least final watermark.
struct Side {
    admitted: Vec<Shuffled>,
    watermark: Option<i128>,
}

/// Evaluates job `job`, whose spec has a `join`, over every committed record of its
/// source (`left`) and of the join's topic (`right`).
pub fn evaluate_join_job(
    spec: &JobSpec,
    job: JobId,
    left: JoinSideInput<'_>,
    right: JoinSideInput<'_>,
) -> Result<RefOutputs, ReferenceError> {
    let _ = job; // the repartition topic's name: no result of the reference names it
    let Some((join_at, join)) = spec.pipeline.iter().enumerate().find_map(|(i, s)| match s {
        Stage::Join(join) => Some((i, join.as_ref())),
        _ => None,
    }) else {
        return Err(ReferenceError::InvalidSpec("the job has no join".into()));
    };
    if right.topic != join.with.topic {
        return Err(ReferenceError::InvalidSpec(format!(
            "the right input is {}, the join reads {}",
            right.topic, join.with.topic
        )));
    }
    let within = i128::from(join.within.as_millis());
    let lateness = i128::from(join.allowed_lateness_or_zero().as_millis());
    let mut out = RefOutputs::default();
    let mut left_spec = spec.clone();
    left_spec.routes.clear();
    left_spec.pipeline.truncate(join_at);
    left_spec.pipeline.push(Stage::KeyBy(join.left_key.clone()));
    let mut right_spec = spec.clone();
    right_spec.routes.clear();
    right_spec.source = join.with.clone();
    right_spec.pipeline = vec![Stage::KeyBy(join.right_key.clone())];
    let temporal = join.kind.is_temporal();
    let left = side(&left_spec, left, within + lateness, &mut out)?;
    let right = side(&right_spec, right, lateness, &mut out)?;
    let right_watermark = right.watermark;
    let watermark = match (left.watermark, right.watermark) {
        (Some(l), Some(r)) => Some(l.min(r)),
        _ => None,
    };
    let mut after_spec = spec.clone();
    after_spec.pipeline = spec.pipeline[join_at + 1..].to_vec();
    let after = Plan::compile(&after_spec)?;
    let env = Arc::new(Env::stdlib());
    if temporal {
        let fired = left
            .admitted
            .iter()
            .filter(|l| right_watermark.is_some_and(|w| w >= l.time_ms + lateness));
        for l in fired {
            match temporal_version(l, &right.admitted) {
                Some(r) => emit(temporal, &env, &after, watermark, l, Some(r), &mut out)?,
                None if join.kind.is_outer() => {
                    emit(temporal, &env, &after, watermark, l, None, &mut out)?;
                }
                None => {}
            }
        }
        return Ok(out);
    }
    for l in &left.admitted {
        let mut matched = false;
        for r in &right.admitted {
            if l.key == r.key && l.time_ms <= r.time_ms && r.time_ms <= l.time_ms + within {
                matched = true;
                emit(temporal, &env, &after, watermark, l, Some(r), &mut out)?;
            }
        }
        let outer = join.kind == JoinKind::LeftOuter;
        if outer && !matched && watermark.is_some_and(|w| w >= l.time_ms + within + lateness) {
            emit(temporal, &env, &after, watermark, l, None, &mut out)?;
        }
    }
    Ok(out)
}

/// The version of `left`'s key valid at its time among the right side's admitted events:
/// the greatest event time at or before it, of equal times the greatest object bytes;
/// `None` when there is none or it deletes the key.
fn temporal_version<'a>(left: &Shuffled, right: &'a [Shuffled]) -> Option<&'a Shuffled> {
    right
        .iter()
        .filter(|r| r.key == left.key && r.time_ms <= left.time_ms)
        .max_by(|a, b| (a.time_ms, &a.payload).cmp(&(b.time_ms, &b.payload)))
        .filter(|r| r.object.get("deleted") != Some(&Json::Bool(true)))
}

/// One side, partition by partition: its dead letters into `out`, its admitted events
/// handed on. An event is late iff `ts + late_after <= W_u`.
fn side(
    side_spec: &JobSpec,
    input: JoinSideInput<'_>,
    late_after: i128,
    out: &mut RefOutputs,
) -> Result<Side, ReferenceError> {
    if let Some(bad) = input
        .records
        .iter()
        .find(|r| r.partition < 0 || r.partition as u32 >= input.partitions)
    {
        return Err(ReferenceError::Unsupported(format!(
            "a record on partition {} of {}",
            bad.partition, input.topic
        )));
    }
    let mut admitted = Vec::new();
    let mut watermark = Some(i128::MAX);
    for partition in 0..input.partitions as i32 {
        let mut plan = Plan::compile(side_spec)?;
        // Everything up to the join key runs here, and every event is handed on.
        plan.shuffle_after = Some(plan.before.len());
        let mut evaluator = Evaluator::new(plan, input.topic);
        for record in input.records.iter().filter(|r| r.partition == partition) {
            evaluator.process(record)?;
        }
        let upstream = evaluator.finish_upstream();
        out.outputs.extend(upstream.out.outputs);
        out.dead_letters.extend(upstream.out.dead_letters);
        watermark = match (watermark, upstream.watermark) {
            (Some(low), Some(w)) => Some(low.min(w)),
            _ => None,
        };
        for event in upstream.shuffled {
            let late = event
                .watermark_before
                .is_some_and(|w| event.time_ms + late_after <= w);
            if !late {
                admitted.push(event);
                continue;
            }
            let original = input
                .records
                .iter()
                .find(|r| r.partition == event.partition && r.offset == event.offset)
                .and_then(|r| r.value.clone());
            out.dead_letters.push(RefDeadLetter {
                reason: "late".to_string(),
                topic: input.topic.to_string(),
                partition: event.partition,
                offset: event.offset,
                payload: original,
                truncated: None,
            });
        }
    }
    Ok(Side {
        admitted,
        watermark,
    })
}

/// A joined record through the stages after the join and the routes.
#[allow(clippy::too_many_arguments)] // a result's whole context, spelled out
fn emit(
    temporal: bool,
    env: &Arc<Env>,
    after: &Plan,
    watermark: Option<i128>,
    left: &Shuffled,
    right: Option<&Shuffled>,
    out: &mut RefOutputs,
) -> Result<(), ReferenceError> {
    let mut value = b"{\"left\":".to_vec();
    value.extend_from_slice(&left.payload);
    value.extend_from_slice(b",\"right\":");
    match right {
        Some(right) => value.extend_from_slice(&right.payload),
        None => value.extend_from_slice(b"null"),
    }
    value.push(b'}');
    if after.before.is_empty() && after.routes.is_empty() {
        out.outputs.push(RefOutput {
            key: Some(left.key.as_bytes().to_vec()),
            value,
            route: 0,
        });
        return Ok(());
    }
    let Ok(Json::Object(object)) = json::parse(&value) else {
        return Err(ReferenceError::Unsupported(
            "a joined record that does not read back".into(),
        ));
    };
    let event = Event {
        object,
        key: Some(left.key.clone()),
        time_ms: match temporal {
            true => left.time_ms,
            false => right.map_or(left.time_ms, |r| r.time_ms.max(left.time_ms)),
        },
        mapped: false,
    };
    // The stages after a join hold no dedupe (refused at submit).
    let mut no_memory = vec![BTreeMap::new(); after.before.len()];
    let outcome = run_stages(
        env,
        &after.before,
        &mut no_memory,
        event,
        watermark,
        &mut Vec::new(),
    );
    let failed = || {
        ReferenceError::Unsupported(
            "a stage after the join failed: the engine names the repartition record that \
             completed the pair"
                .into(),
        )
    };
    match outcome {
        Outcome::Dropped => Ok(()),
        Outcome::Failed => Err(failed()),
        Outcome::Kept(event) => {
            let route = route_of(env, &after.routes, &event.object).map_err(|()| failed())?;
            out.outputs.push(RefOutput {
                key: event.key.as_ref().map(|key| key.as_bytes().to_vec()),
                value: event.value(&value),
                route,
            });
            Ok(())
        }
    }
}
