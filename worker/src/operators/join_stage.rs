//! A job's `join` as tasks of a [`Pipeline`], so the exactly-once runner drives its three
//! groups of tasks as it drives every other (`role.rs`):
//!
//! - the **left** upstream task compiles the job's source with the stages before the
//!   join and a last `key_by` on `left_key`; the **right** one compiles `join.with` as
//!   its source with only a `key_by` on `right_key`. Both judge lateness by their side's
//!   rule and write their events to the repartition topic (`pipeline.rs`, `shuffle_out`);
//! - the **downstream** task feeds the repartition topic to the join (`join_downstream.rs`)
//!   and runs the stages after the join, then the routes, on each joined record: the
//!   object `{"left": ..., "right": ...}`, its key the join key. A joined record that
//!   fails there is an `expression_error` dead letter naming the repartition record that
//!   completed it, with the joined record as payload.
//!
//! Its snapshot is the pipeline's own prefix (magic, version, fingerprint: a snapshot of
//! another job's join is refused) followed by the join's snapshot; its changes for the
//! local copy are the join's keys, under a header of that prefix and the join's header.

use std::borrow::Cow;

use super::changes::{StateChanges, StateEntry};
use super::compile::CompileError;
use super::join::{JoinPlan, Joined};
use super::join_downstream::JoinDownstream;
use super::json;
use super::limits::PipelineError;
use super::object::Obj;
use super::pipeline::{dead_letter, emit};
use super::plan::{Plan, RestoreError, State};
use super::record::{DeadLetterReason, OutputRecord, Outputs, SourceRecord};
use super::role::PipelineRole;
use super::shuffled::JoinSide;
use super::snapshot;
use super::stages::{run_steps, Flow};
use super::Pipeline;
use weir_core::spec::{JobSpec, Join, Stage};

/// The join's rules, for a plan of `role` over `spec`: only downstream of a join.
pub(crate) fn join_plan(spec: &JobSpec, role: PipelineRole) -> Option<JoinPlan> {
    let PipelineRole::JoinDownstream { join_at, .. } = role else {
        return None;
    };
    match spec.pipeline.get(join_at) {
        Some(Stage::Join(join)) => Some(JoinPlan::from_spec(join)),
        _ => None,
    }
}

/// The job's join at `join_at`, or why the role does not fit the spec.
fn join_of(spec: &JobSpec, join_at: usize) -> Result<&Join, CompileError> {
    match spec.pipeline.get(join_at) {
        Some(Stage::Join(join)) => Ok(join),
        _ => Err(CompileError::Expression {
            field: format!("pipeline[{join_at}]"),
            message: "the task runs a join the spec does not have there".into(),
        }),
    }
}

/// What one side's upstream task runs, as a spec of its own: its source, the stages it
/// runs and a last `key_by` on its join key (no routes: it writes no sink).
pub(crate) fn side_spec(spec: &JobSpec, side: JoinSide, join_at: usize, join: &Join) -> JobSpec {
    let mut side_spec = spec.clone();
    side_spec.routes.clear();
    match side {
        JoinSide::Left => {
            side_spec.pipeline.truncate(join_at);
            side_spec.pipeline.push(Stage::KeyBy(join.left_key.clone()));
        }
        JoinSide::Right => {
            side_spec.source = join.with.clone();
            side_spec.pipeline = vec![Stage::KeyBy(join.right_key.clone())];
        }
    }
    side_spec
}

/// Compiles a join's left or right upstream task, with empty state.
pub(crate) fn compile_upstream(
    spec: &JobSpec,
    role: PipelineRole,
) -> Result<Pipeline, CompileError> {
    let (side, join_at) = match role {
        PipelineRole::JoinLeft { join_at } => (JoinSide::Left, join_at),
        PipelineRole::JoinRight { join_at } => (JoinSide::Right, join_at),
        _ => {
            return Err(CompileError::Expression {
                field: "pipeline".into(),
                message: "not a join's upstream task".into(),
            })
        }
    };
    let join = join_of(spec, join_at)?;
    Pipeline::compile_join_upstream(&side_spec(spec, side, join_at, join), side, join)
}

/// Downstream of a join: one record of the repartition topic through the join, and each
/// result through the stages after it.
pub(crate) fn process(
    plan: &Plan,
    state: &mut State,
    record: &SourceRecord,
    out: &mut Outputs,
) -> Result<(), PipelineError> {
    let State {
        join: Some(join),
        dedupe,
        field_spans,
        ..
    } = state
    else {
        return Ok(());
    };
    let mut joined = Vec::new();
    join.process_into(record, &mut joined)?;
    let watermark_ms = join.watermark();
    for result in joined {
        if plan.pre.is_empty() && plan.routes.is_empty() {
            out.records.push(OutputRecord {
                key: Some(result.key),
                value: result.value,
                source_offset: record.offset,
                route: 0,
            });
            continue;
        }
        after_join(
            plan,
            dedupe,
            field_spans,
            &result,
            watermark_ms,
            record,
            out,
        )?;
    }
    Ok(())
}

/// Runs a joined record through the stages after the join and the routes.
fn after_join(
    plan: &Plan,
    dedupe: &mut [super::dedupe::DedupeMemory],
    spans: &mut Vec<json::FieldSpan>,
    result: &Joined,
    watermark_ms: Option<i64>,
    record: &SourceRecord,
    out: &mut Outputs,
) -> Result<(), PipelineError> {
    let failed = |out: &mut Outputs, detail: String| {
        let letter = SourceRecord {
            value: Some(result.value.clone()),
            ..record.clone()
        };
        dead_letter(
            out,
            &letter,
            DeadLetterReason::ExpressionError,
            format!("joined record: {detail}"),
        );
    };
    let doc = match json::index_object(&result.value, spans) {
        Ok(doc) => doc,
        Err(e) => {
            failed(out, e.detail());
            return Ok(());
        }
    };
    let flow = run_steps(
        &plan.pre,
        &plan.env,
        dedupe,
        Obj::Source(doc),
        Some(Cow::Borrowed(&result.key)),
        result.event_ms,
        watermark_ms,
    )?;
    match flow {
        Flow::Continue(obj, key) => match plan.route_of(&obj) {
            Ok(route) => emit(out, &obj, key, record.offset, route),
            Err(detail) => failed(out, detail),
        },
        Flow::Dropped => {}
        Flow::Failed(_, detail) => failed(out, detail),
    }
    Ok(())
}

/// The pipeline's prefix (its identity) then the join's snapshot.
pub(crate) fn snapshot(plan: &Plan, state: &State, join: &JoinDownstream) -> Vec<u8> {
    let mut bytes = snapshot::write(plan, state);
    bytes.extend_from_slice(&join.snapshot());
    bytes
}

/// The length of the pipeline's prefix in a join task's snapshot and header: fixed, since
/// the task keeps no event time, dedupe memory or window of its own.
fn prefix_len(plan: &Plan) -> usize {
    snapshot::write(plan, &State::new(plan)).len()
}

/// Splits `bytes` after the pipeline's prefix, having checked that prefix is this plan's.
fn read_prefix<'a>(pipeline: &mut Pipeline, bytes: &'a [u8]) -> Result<&'a [u8], RestoreError> {
    let len = prefix_len(&pipeline.plan);
    if bytes.len() < len {
        return Err(RestoreError::Corrupt("a join snapshot cut short".into()));
    }
    let (prefix, rest) = bytes.split_at(len);
    snapshot::read(&pipeline.plan, &mut pipeline.state, prefix)?;
    Ok(rest)
}

fn upstreams(plan: &Plan) -> Result<(JoinPlan, u32, u32), RestoreError> {
    match (plan.role, plan.join) {
        (
            PipelineRole::JoinDownstream {
                left_upstreams,
                right_upstreams,
                ..
            },
            Some(join),
        ) => Ok((join, left_upstreams, right_upstreams)),
        _ => Err(RestoreError::Corrupt("not a join's downstream task".into())),
    }
}

/// Restores a join's downstream task from [`snapshot`]'s bytes.
pub(crate) fn read_snapshot(pipeline: &mut Pipeline, bytes: &[u8]) -> Result<(), RestoreError> {
    let rest = read_prefix(pipeline, bytes)?;
    let (join, left, right) = upstreams(&pipeline.plan)?;
    let restored =
        JoinDownstream::restore(join, left, right, rest).map_err(RestoreError::Corrupt)?;
    pipeline.state.join = Some(restored);
    Ok(())
}

/// The join's changes since the last call, under the pipeline's prefix.
pub(crate) fn take_changes(pipeline: &mut Pipeline) -> StateChanges {
    let mut header = snapshot::write(&pipeline.plan, &State::new(&pipeline.plan));
    let Some(join) = pipeline.state.join.as_mut() else {
        return StateChanges {
            full: true,
            header,
            entries: Vec::new(),
        };
    };
    let changes = join.take_changes();
    header.extend_from_slice(&changes.header);
    StateChanges { header, ..changes }
}

/// Restores a join's downstream task from its local copy: a header of [`take_changes`]
/// and every entry.
pub(crate) fn restore_entries(
    spec: &JobSpec,
    role: PipelineRole,
    header: &[u8],
    entries: &[StateEntry],
) -> Result<Pipeline, RestoreError> {
    let mut pipeline = Pipeline::compile_role(spec, role)?;
    let rest = read_prefix(&mut pipeline, header)?;
    let (join, left, right) = upstreams(&pipeline.plan)?;
    let restored = JoinDownstream::restore_entries(join, left, right, rest, entries)
        .map_err(RestoreError::Corrupt)?;
    pipeline.state.join = Some(restored);
    Ok(pipeline)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::shuffled::{encode_side_event, encode_watermark};
    use weir_core::spec::parse_job_spec;

    const ROLE: PipelineRole = PipelineRole::JoinDownstream {
        join_at: 0,
        left_upstreams: 1,
        right_upstreams: 1,
    };

    fn join_spec(after: &str) -> JobSpec {
        let yaml = format!(
            "name: j\nsource: {{ topic: auths, event_time: ts }}\npipeline:\n  - join: {{ with: \
             {{ topic: captures, event_time: ts }}, left_key: id, right_key: id, within: 10ms, \
             kind: left_outer }}\n{after}sink: {{ topic: out }}\n"
        );
        parse_job_spec(yaml.as_bytes()).unwrap()
    }

    fn record(offset: i64, key: Option<&str>, value: Vec<u8>) -> SourceRecord {
        SourceRecord {
            topic: "weir-job-1-repartition-1".into(),
            partition: 0,
            offset,
            timestamp_ms: None,
            key: key.map(|k| k.as_bytes().to_vec()),
            value: Some(value),
        }
    }

    fn event(offset: i64, side: JoinSide, key: &str, ms: i64, object: &str) -> SourceRecord {
        let value = encode_side_event(side, ms, None, 0, offset, object.as_bytes());
        record(offset, Some(key), value)
    }

    fn values(out: &Outputs) -> Vec<String> {
        out.records
            .iter()
            .map(|r| String::from_utf8(r.value.clone()).unwrap())
            .collect()
    }

    #[test]
    fn a_restored_task_from_its_snapshot_or_its_changes_goes_on_alike() {
        let spec = join_spec("");
        let mut task = Pipeline::compile_role(&spec, ROLE).unwrap();
        let mut out = Outputs::new();
        task.process(&event(0, JoinSide::Left, "a", 5, r#"{"l":1}"#), &mut out)
            .unwrap();
        task.process(&event(1, JoinSide::Left, "b", 6, r#"{"l":2}"#), &mut out)
            .unwrap();
        assert!(out.records.is_empty());
        let snapshot = task.snapshot();
        let changes = task.take_changes();
        assert!(changes.full);
        let from_snapshot = Pipeline::restore_role(&spec, ROLE, &snapshot).unwrap();
        let from_changes =
            Pipeline::restore_entries(&spec, ROLE, &changes.header, &changes.entries).unwrap();
        for mut restored in [task, from_snapshot, from_changes] {
            let mut out = Outputs::new();
            let right = event(2, JoinSide::Right, "a", 9, r#"{"r":1}"#);
            restored.process(&right, &mut out).unwrap();
            restored
                .process(&record(3, None, encode_watermark(0, 100)), &mut out)
                .unwrap();
            restored
                .process(&record(4, None, encode_watermark(1, 100)), &mut out)
                .unwrap();
            assert_eq!(restored.watermark_ms(), Some(100));
            assert_eq!(
                values(&out),
                [
                    r#"{"left":{"l":1},"right":{"r":1}}"#,
                    r#"{"left":{"l":2},"right":null}"#
                ]
            );
            assert_eq!(out.records[0].key.as_deref(), Some("a"));
        }
        // Another spec's snapshot is refused.
        let other = join_spec("  - filter: \"true\"\n");
        assert!(matches!(
            Pipeline::restore_role(&other, ROLE, &snapshot),
            Err(RestoreError::SpecMismatch)
        ));
    }

    #[test]
    fn the_stages_after_the_join_run_on_each_joined_record() {
        let spec =
            join_spec("  - filter: \"right.r > 1\"\n  - map: { l: \"left.l\", r: \"right.r\" }\n");
        let mut task = Pipeline::compile_role(&spec, ROLE).unwrap();
        let mut out = Outputs::new();
        task.process(&event(0, JoinSide::Left, "a", 5, r#"{"l":1}"#), &mut out)
            .unwrap();
        task.process(&event(1, JoinSide::Right, "a", 6, r#"{"r":1}"#), &mut out)
            .unwrap();
        task.process(&event(2, JoinSide::Right, "a", 7, r#"{"r":2}"#), &mut out)
            .unwrap();
        task.process(&event(3, JoinSide::Right, "a", 8, r#"{"r":"x"}"#), &mut out)
            .unwrap();
        assert_eq!(values(&out), [r#"{"l":1,"r":2}"#]);
        assert_eq!(out.records[0].source_offset, 2);
        let letter = &out.dead_letters[0];
        assert_eq!(letter.reason, DeadLetterReason::ExpressionError);
        assert_eq!((letter.partition, letter.offset), (0, 3));
        assert_eq!(
            letter.payload.as_deref(),
            Some(br#"{"left":{"l":1},"right":{"r":"x"}}"#.as_slice())
        );
    }
}
