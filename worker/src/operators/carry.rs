//! An upgrade's restore: a snapshot written by an older version's pipeline, read with
//! that version's spec, and its state carried stage by stage into the new version's
//! pipeline as `weir_core::spec::upgrade` plans it (dedupe memories by stage identity,
//! open windows by key with each accumulator mapped by aggregate output; new stages and
//! those the upgrade names start empty). The event-time progress (the largest event time
//! seen) carries too: the check refuses an upgrade that changes the event-time settings.

use super::aggregate::Accumulator;
use super::pipeline::Pipeline;
use super::plan::{watermark, RestoreError};
use super::role::PipelineRole;
use super::window::{Accumulators, Pane};
use weir_core::spec::upgrade::{check_upgrade, known_stage_ids, same_stateful_stages, CarryPlan};
use weir_core::spec::JobSpec;

impl Pipeline {
    /// Restores a snapshot that `old_spec`'s pipeline wrote into `new_spec`'s pipeline,
    /// starting empty the stateful stages `state_drop` names. A job of several stages is
    /// upgraded only with its stateful stages unchanged (the coordinator refuses the
    /// others): its tasks' state then carries as it is.
    pub fn restore_upgraded(
        old_spec: &JobSpec,
        new_spec: &JobSpec,
        role: PipelineRole,
        state_drop: &[String],
        bytes: &[u8],
    ) -> Result<Pipeline, RestoreError> {
        if role != PipelineRole::Whole {
            return restore_same_state(old_spec, new_spec, role, bytes);
        }
        let old = Pipeline::restore_role(old_spec, role, bytes)?;
        // Drops of earlier upgrades may name stages neither spec has any more.
        let state_drop = known_stage_ids(old_spec, new_spec, state_drop);
        let plan = check_upgrade(old_spec, new_spec, &state_drop)
            .map_err(|e| RestoreError::Upgrade(e.to_string()))?;
        let mut new = Pipeline::compile_role(new_spec, role)?;
        carry(&old, &plan, &mut new)?;
        Ok(new)
    }
}

/// A task of a job of several stages, upgraded with its stateful stages unchanged (only
/// what follows the last of them, its sink or its parallelism changed:
/// `weir_core::spec::upgrade::same_stateful_stages`, which the coordinator checked): the
/// old pipeline's state (dedupe memories, windows or partial aggregates, upstream
/// watermarks, event-time progress) is the new one's as it is, under the new plan.
fn restore_same_state(
    old_spec: &JobSpec,
    new_spec: &JobSpec,
    role: PipelineRole,
    bytes: &[u8],
) -> Result<Pipeline, RestoreError> {
    if !same_stateful_stages(old_spec, new_spec) {
        return Err(RestoreError::Upgrade(
            "a job of several stages is upgraded only with its source and its stages up to \
             the last stateful one unchanged"
                .into(),
        ));
    }
    let old = Pipeline::restore_role(old_spec, role, bytes)?;
    let mut new = Pipeline::compile_role(new_spec, role)?;
    if old.plan.role != new.plan.role {
        return Err(RestoreError::Upgrade(format!(
            "the task runs {:?} in the old plan and {:?} in the new",
            old.plan.role, new.plan.role
        )));
    }
    new.state = old.state;
    // The next checkpoint writes the whole state: the local copy holds the old pipeline's.
    new.state.changes_complete = false;
    Ok(new)
}

/// Moves `old`'s state into `new` (empty, just compiled) as `plan` says.
fn carry(old: &Pipeline, plan: &CarryPlan, new: &mut Pipeline) -> Result<(), RestoreError> {
    let corrupt = |message: String| RestoreError::Upgrade(message);
    new.state.max_event_ms = old.state.max_event_ms;
    if plan.dedupe.len() != new.state.dedupe.len() {
        return Err(corrupt("the carry plan's dedupe stages differ".into()));
    }
    for (memory, from) in new.state.dedupe.iter_mut().zip(&plan.dedupe) {
        let Some(from) = from else { continue };
        let old_memory = old
            .state
            .dedupe
            .get(*from)
            .ok_or_else(|| corrupt(format!("no dedupe stage {from} in the old state")))?;
        for (key, last_ms) in old_memory.entries_sorted() {
            memory.restore_entry(key, last_ms).map_err(corrupt)?;
        }
    }
    let watermark_ms = watermark(&new.plan, &new.state);
    let (Some(window_carry), Some(old_windows)) = (&plan.window, &old.state.windows) else {
        return Ok(());
    };
    let (Some(windows), Some(window_plan)) = (new.state.windows.as_mut(), &new.plan.window) else {
        return Err(corrupt(
            "the new pipeline has no window to carry into".into(),
        ));
    };
    let functions = window_plan.functions();
    if window_carry.aggregates.len() != functions.len() {
        return Err(corrupt("the carry plan's aggregates differ".into()));
    }
    for (key, panes) in old_windows.keys_sorted() {
        let mut carried = Vec::with_capacity(panes.len());
        for pane in panes {
            let accumulators = window_carry
                .aggregates
                .iter()
                .zip(&functions)
                .map(|(from, function)| match from {
                    Some(index) => pane
                        .accumulators
                        .get(*index)
                        .cloned()
                        .filter(|acc| acc.is_of(*function))
                        .ok_or_else(|| corrupt(format!("no aggregate {index} of its function"))),
                    None => Ok(Accumulator::new(*function)),
                })
                .collect::<Result<Accumulators, _>>()?;
            carried.push(Pane {
                start_ms: pane.start_ms,
                end_ms: pane.end_ms,
                accumulators,
            });
        }
        windows
            .restore_key(key, carried, watermark_ms)
            .map_err(corrupt)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::{Outputs, SourceRecord};
    use serde_json::{json, Value};
    use weir_core::spec::parse_job_spec;

    fn spec(pipeline: &str) -> JobSpec {
        let yaml = format!(
            "name: velocity\nsource: {{ topic: events, event_time: ts, partitioned_by: k }}\n\
             pipeline:\n{pipeline}sink: {{ topic: results }}\n"
        );
        parse_job_spec(yaml.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
    }

    const OLD: &str = "  - dedupe: { key: id, ttl: 1h }\n  - key_by: k\n  - window: { tumbling: 10ms }\n  - aggregate: { n: 'count()' }\n  - filter: 'n >= 3'\n";

    fn record(offset: i64, value: Value) -> SourceRecord {
        SourceRecord {
            topic: "events".into(),
            partition: 0,
            offset,
            timestamp_ms: None,
            key: None,
            value: Some(value.to_string().into_bytes()),
        }
    }

    fn event(offset: i64, ts: i64, k: &str, id: &str) -> SourceRecord {
        record(
            offset,
            json!({"ts": ts, "k": k, "id": id, "v": 10 * offset}),
        )
    }

    fn outputs(pipeline: &mut Pipeline, input: &[SourceRecord]) -> Vec<Value> {
        let mut out = Outputs::new();
        pipeline.process_batch(input, &mut out).unwrap();
        out.records
            .iter()
            .map(|r| serde_json::from_slice(&r.value).unwrap())
            .collect()
    }

    /// Two events of key a in window [0, 10), then the snapshot.
    fn old_snapshot() -> Vec<u8> {
        let mut old = Pipeline::compile(&spec(OLD)).unwrap();
        let fired = outputs(&mut old, &[event(0, 1, "a", "e0"), event(1, 2, "a", "e1")]);
        assert!(fired.is_empty());
        old.snapshot()
    }

    fn upgraded(new: &str, drop: &[&str]) -> Pipeline {
        let drop: Vec<String> = drop.iter().map(|d| d.to_string()).collect();
        Pipeline::restore_upgraded(
            &spec(OLD),
            &spec(new),
            PipelineRole::Whole,
            &drop,
            &old_snapshot(),
        )
        .unwrap()
    }

    /// After the cut: a repeat of e1, one new event of a, and one that closes the window.
    fn after_cut() -> Vec<SourceRecord> {
        vec![
            event(2, 3, "a", "e1"),
            event(3, 4, "a", "e3"),
            event(4, 30, "b", "e4"),
        ]
    }

    #[test]
    fn counts_continue_across_a_threshold_change_and_a_new_aggregate() {
        let new = OLD
            .replace("n: 'count()'", "n: 'count()', total: 'sum(v)'")
            .replace("n >= 3", "n >= 2");
        let mut pipeline = upgraded(&new, &[]);
        let fired = outputs(&mut pipeline, &after_cut());
        // The repeat of e1 is still dropped (the dedupe memory carried); the count goes
        // on from 2; the new aggregate saw only the input after the cut.
        assert_eq!(
            fired,
            vec![json!({"key": "a", "window_start": 0, "window_end": 10, "n": 3, "total": 30})]
        );
    }

    #[test]
    fn a_dropped_stage_starts_empty() {
        let mut pipeline = upgraded(OLD, &["window#0"]);
        // The window forgot its two events: one event is below the threshold.
        assert!(outputs(&mut pipeline, &after_cut()).is_empty());
        let mut pipeline = upgraded(&OLD.replace("n >= 3", "n >= 1"), &["dedupe#0"]);
        // The dedupe forgot e1: its repeat counts.
        let fired = outputs(&mut pipeline, &after_cut());
        assert_eq!(fired[0]["n"], json!(4));
    }

    #[test]
    fn an_earlier_upgrades_drop_of_a_stage_neither_spec_has_is_ignored() {
        let mut pipeline = upgraded(OLD, &["velocity"]);
        assert_eq!(outputs(&mut pipeline, &after_cut())[0]["n"], json!(3));
    }

    #[test]
    fn an_incompatible_change_is_refused_at_restore_too() {
        let new = OLD.replace("tumbling: 10ms", "tumbling: 20ms");
        let err = Pipeline::restore_upgraded(
            &spec(OLD),
            &spec(&new),
            PipelineRole::Whole,
            &[],
            &old_snapshot(),
        )
        .unwrap_err();
        assert!(
            matches!(err, RestoreError::Upgrade(ref m) if m.contains("pipeline[2].window")),
            "{err}"
        );
    }
}
