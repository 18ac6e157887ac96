//! The downstream stage of a job that shuffles: reads the repartition topic's events and
//! watermark markers (`shuffled.rs`) and runs the rest of the pipeline.
//!
//! - An **event** runs the stages between the shuffle and the window, then joins the
//!   windows that were still open at its *upstream* watermark (carried with it): the same
//!   windows whatever the order in which events of different upstream tasks arrive, so a
//!   replay, or the reference evaluator, reaches the same result. Its dead letters name its
//!   source coordinates, with the object as shuffled as payload.
//! - A **marker** updates its upstream task's watermark; the stage's watermark is the least
//!   of every upstream task's (none until each has sent one), and windows fire as it moves.
//!   A window result's dead letter names the repartition topic and partition, offset -1.
//!
//! No event arrives after a window it belongs to fired: an upstream task writes a marker
//! only after the events it covers, in the same transaction, so the stage's watermark
//! never passes an event's upstream watermark before the event is read.

use std::borrow::Cow;

use super::json::{self, FieldSpan};
use super::limits::PipelineError;
use super::object::Obj;
use super::pipeline::{add_to_windows, dead_letter, emit, watermark_moved};
use super::plan::{watermark, Plan, State};
use super::record::{Outputs, SourceRecord};
use super::shuffled::{self, JoinSide, Shuffled};
use super::snapshot::read_panes_value;
use super::stages::{run_steps, Flow};

/// Processes one record of the repartition topic.
pub(super) fn process_shuffled(
    plan: &Plan,
    state: &mut State,
    record: &SourceRecord,
    out: &mut Outputs,
) -> Result<(), PipelineError> {
    let value = record.value.as_deref().unwrap_or_default();
    let shuffled = shuffled::decode(value).map_err(|detail| corrupt(record, &detail))?;
    match shuffled {
        Shuffled::Watermark {
            upstream,
            watermark_ms,
        } => on_marker(plan, state, record, upstream, watermark_ms, out),
        Shuffled::Event {
            side: JoinSide::Right,
            ..
        } => Err(corrupt(
            record,
            "an event of a join's second stream, in a job without a join",
        )),
        Shuffled::Partial { panes } => on_partial(plan, state, record, panes),
        Shuffled::Event {
            event_ms,
            watermark_before_ms,
            source_partition,
            source_offset,
            object,
            ..
        } => {
            let Some(key) = record
                .key
                .as_deref()
                .and_then(|k| std::str::from_utf8(k).ok())
            else {
                return Err(corrupt(record, "an event without a UTF-8 key"));
            };
            let coordinates = SourceRecord {
                topic: plan.source_topic.clone(),
                partition: source_partition,
                offset: source_offset,
                timestamp_ms: Some(event_ms),
                key: None,
                value: Some(object.to_vec()),
            };
            let mut spans: Vec<FieldSpan> = std::mem::take(&mut state.field_spans);
            let result = run_event(
                plan,
                state,
                &coordinates,
                key,
                event_ms,
                watermark_before_ms,
                &mut spans,
                out,
            );
            state.field_spans = spans;
            result
        }
    }
}

/// A marker: its upstream task's watermark moves, and with the least of them the stage's.
fn on_marker(
    plan: &Plan,
    state: &mut State,
    record: &SourceRecord,
    upstream: u32,
    watermark_ms: i64,
    out: &mut Outputs,
) -> Result<(), PipelineError> {
    let before = watermark(plan, state);
    let slot = state
        .upstream_watermarks
        .get_mut(upstream as usize)
        .ok_or_else(|| {
            corrupt(
                record,
                &format!("a marker from upstream task {upstream}, beyond the source's partitions"),
            )
        })?;
    // Markers of one upstream task only move forward; a restarted task may repeat one.
    if slot.is_some_and(|known| known >= watermark_ms) {
        return Ok(());
    }
    *slot = Some(watermark_ms);
    let trigger = SourceRecord {
        offset: -1,
        value: None,
        ..record.clone()
    };
    watermark_moved(plan, state, before, &trigger, out)
}

/// A partial aggregate: merged into the key's windows.
fn on_partial(
    plan: &Plan,
    state: &mut State,
    record: &SourceRecord,
    panes: &[u8],
) -> Result<(), PipelineError> {
    let (Some(window), Some(windows)) = (&plan.window, state.windows.as_mut()) else {
        return Err(corrupt(
            record,
            "a partial aggregate for a stage without a window",
        ));
    };
    let Some(key) = record
        .key
        .as_deref()
        .and_then(|k| std::str::from_utf8(k).ok())
    else {
        return Err(corrupt(record, "a partial aggregate without a UTF-8 key"));
    };
    let panes = read_panes_value(panes, &window.functions())
        .map_err(|e| corrupt(record, &format!("its panes do not read: {e}")))?;
    windows.merge_partial(key, &panes)
}

#[allow(clippy::too_many_arguments)] // the event's coordinates, passed down as they are
fn run_event(
    plan: &Plan,
    state: &mut State,
    coordinates: &SourceRecord,
    key: &str,
    event_ms: i64,
    watermark_before_ms: Option<i64>,
    spans: &mut Vec<FieldSpan>,
    out: &mut Outputs,
) -> Result<(), PipelineError> {
    let object = coordinates.value.as_deref().unwrap_or_default();
    let doc = json::index_object(object, spans).map_err(|e| {
        corrupt(
            coordinates,
            &format!("its object does not read: {}", e.detail()),
        )
    })?;
    let flow = run_steps(
        &plan.pre,
        &plan.env,
        &mut state.dedupe,
        Obj::Source(doc),
        Some(Cow::Borrowed(key)),
        event_ms,
        watermark_before_ms,
    )?;
    match flow {
        Flow::Continue(obj, key) if plan.window.is_some() => {
            let key = key.unwrap_or(Cow::Borrowed(""));
            add_to_windows(
                plan,
                state,
                &obj,
                &key,
                event_ms,
                watermark_before_ms,
                coordinates,
                out,
            )
        }
        Flow::Continue(obj, key) => {
            match plan.route_of(&obj) {
                Ok(route) => emit(out, &obj, key, coordinates.offset, route),
                Err(detail) => dead_letter(
                    out,
                    coordinates,
                    super::record::DeadLetterReason::ExpressionError,
                    detail,
                ),
            }
            Ok(())
        }
        Flow::Dropped => Ok(()),
        Flow::Failed(reason, detail) => {
            dead_letter(out, coordinates, reason, detail);
            Ok(())
        }
    }
}

/// A repartition record weir did not write: the partition stops rather than skip it.
fn corrupt(record: &SourceRecord, detail: &str) -> PipelineError {
    PipelineError::CorruptRepartitionRecord(format!(
        "{} partition {} offset {}: {detail}",
        record.topic, record.partition, record.offset
    ))
}
