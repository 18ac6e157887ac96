//! A job's pipeline compiled for one partition: the stages as a [`Plan`] that never
//! changes, and the partition's [`State`] (watermark, dedupe memories, open windows) that
//! every record moves forward. See the module doc of `operators` for the semantics.

use super::aggregate::Input;
use super::changes::{StateChanges, StateEntry, WINDOWS_SECTION};
use super::compile::{millis, CompileError};
use super::datum::write_i64;
use super::datum::Datum;
use super::dedupe::{Dedupe, DedupeMemory};
use super::event_time::event_time_ms;
use super::expr::cel_env;
use super::filter::Filter;
use super::json::{self, DecodeError, FieldSpan, SourceDoc};
use super::key_by::KeyBy;
use super::limits::PipelineError;
use super::map::Map;
use super::object::Obj;
use super::plan::{watermark, Plan, RestoreError, State, WindowPlan};
use super::record::{
    write_json_str, DeadLetter, DeadLetterReason, OutputRecord, Outputs, SourceRecord,
};
use super::role::{LateBound, LatenessRule, PipelineRole};
use super::snapshot;
use super::stages::{run_steps, Flow, Step};
use super::window::Assigner;
use super::window::{Fired, Windows};
use std::borrow::Cow;
use std::sync::Arc;
use weir_core::bugs::{planted, PlantedBug};
use weir_core::spec::{validate, JobSpec, Stage};

/// A compiled pipeline with its partition state.
pub struct Pipeline {
    pub(crate) plan: Plan,
    pub(crate) state: State,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("watermark_ms", &self.watermark_ms())
            .field("state_bytes", &self.state_bytes())
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Compiles `spec` (validating it first) into a pipeline with empty state.
    pub fn compile(spec: &JobSpec) -> Result<Pipeline, CompileError> {
        Pipeline::compile_role(spec, PipelineRole::Whole)
    }

    /// Compiles the part of `spec` that `role` runs, with empty state.
    pub fn compile_role(spec: &JobSpec, role: PipelineRole) -> Result<Pipeline, CompileError> {
        if let PipelineRole::JoinLeft { .. } | PipelineRole::JoinRight { .. } = role {
            return super::join_stage::compile_upstream(spec, role);
        }
        let plan = Plan::compile(spec, role)?;
        let state = State::new(&plan);
        Ok(Pipeline { plan, state })
    }

    /// Compiles the upstream task of one side of a join, with empty state: `side_spec`
    /// is that side's source with its pipeline up to and including a last `key_by` on the
    /// join key (the left side: the job's stages before the join; the right side: only
    /// the key), and events are judged late, and written, by `side`'s rule.
    pub fn compile_join_upstream(
        side_spec: &JobSpec,
        side: super::shuffled::JoinSide,
        join: &weir_core::spec::Join,
    ) -> Result<Pipeline, CompileError> {
        let shuffle_at = match side_spec.pipeline.last() {
            Some(Stage::KeyBy(_)) => side_spec.pipeline.len() - 1,
            _ => {
                return Err(CompileError::Expression {
                    field: "pipeline".into(),
                    message: "a join side's upstream ends with the key_by of its join key".into(),
                })
            }
        };
        let mut plan = Plan::compile(side_spec, PipelineRole::Upstream { shuffle_at })?;
        plan.lateness = Some(LatenessRule {
            bound: match side {
                super::shuffled::JoinSide::Left => LateBound::JoinLeft {
                    within_ms: millis(join.within),
                },
                super::shuffled::JoinSide::Right => LateBound::JoinRight,
            },
            allowed_lateness_ms: millis(join.allowed_lateness_or_zero()),
        });
        let state = State::new(&plan);
        Ok(Pipeline { plan, state })
    }

    /// Restores the upstream task of one side of a join from a snapshot of it.
    pub fn restore_join_upstream(
        side_spec: &JobSpec,
        side: super::shuffled::JoinSide,
        join: &weir_core::spec::Join,
        bytes: &[u8],
    ) -> Result<Pipeline, RestoreError> {
        let mut pipeline = Pipeline::compile_join_upstream(side_spec, side, join)?;
        snapshot::read(&pipeline.plan, &mut pipeline.state, bytes)?;
        Ok(pipeline)
    }

    /// Restores a pipeline for `spec` from a [`snapshot`](Pipeline::snapshot) of it.
    pub fn restore(spec: &JobSpec, bytes: &[u8]) -> Result<Pipeline, RestoreError> {
        Pipeline::restore_role(spec, PipelineRole::Whole, bytes)
    }

    /// Restores the part of `spec` that `role` runs from a snapshot of it.
    pub fn restore_role(
        spec: &JobSpec,
        role: PipelineRole,
        bytes: &[u8],
    ) -> Result<Pipeline, RestoreError> {
        let mut pipeline = Pipeline::compile_role(spec, role)?;
        if pipeline.state.join.is_some() {
            super::join_stage::read_snapshot(&mut pipeline, bytes)?;
        } else {
            snapshot::read(&pipeline.plan, &mut pipeline.state, bytes)?;
        }
        Ok(pipeline)
    }

    /// Restores a pipeline for `spec` from its state as [`take_changes`](Pipeline::take_changes)
    /// gave it: a header and every key's entry. The same checks as [`restore`](Pipeline::restore).
    pub fn restore_entries(
        spec: &JobSpec,
        role: PipelineRole,
        header: &[u8],
        entries: &[StateEntry],
    ) -> Result<Pipeline, RestoreError> {
        if let PipelineRole::JoinDownstream { .. } = role {
            return super::join_stage::restore_entries(spec, role, header, entries);
        }
        let bytes = snapshot::assemble(header, entries)?;
        Pipeline::restore_role(spec, role, &bytes)
    }

    /// The part of the job's pipeline this one runs.
    pub fn role(&self) -> PipelineRole {
        self.plan.role
    }

    /// Upstream of a shuffle, when it combines: how many windows hold partial aggregates
    /// not yet sent (0 in every other role).
    pub fn partial_windows(&self) -> usize {
        match (self.plan.role, &self.state.windows) {
            (PipelineRole::Upstream { .. }, Some(windows)) => windows.open_windows(),
            _ => 0,
        }
    }

    /// Upstream of a shuffle, when it combines: takes the partial aggregates out as records
    /// for the repartition topic, one per key (keyed by it), leaving none. Call before
    /// every snapshot: partial aggregates are output, never state.
    pub fn take_partials(&mut self, out: &mut Outputs) {
        let (PipelineRole::Upstream { .. }, Some(windows)) =
            (self.plan.role, self.state.windows.as_mut())
        else {
            return;
        };
        for (key, panes) in windows.drain_partials() {
            out.records.push(OutputRecord {
                key: Some(key.to_string()),
                value: super::shuffled::encode_partial(&snapshot::panes_value(&panes)),
                source_offset: -1,
                route: 0,
            });
        }
    }

    /// Checks from now on that every event reaching the window is on the partition of
    /// `source_partitions` that Kafka's keyed partitioner gives its key: for a source that
    /// declares `partitioned_by` the window's key. An event elsewhere stops the pipeline
    /// with [`PipelineError::NotPartitionedBy`], never a silently split window.
    pub fn check_partitioned_by(&mut self, source_partitions: u32) {
        if self.plan.window.is_some() && self.plan.role == PipelineRole::Whole {
            self.plan.partitioned_by_check = Some(source_partitions.max(1));
        }
    }

    /// The state's entries that changed since the last call (or every entry, the first
    /// time and whenever more changed than are tracked), for a checkpoint's local copy.
    pub fn take_changes(&mut self) -> StateChanges {
        if self.state.join.is_some() {
            return super::join_stage::take_changes(self);
        }
        let state = &mut self.state;
        let dedupe_changed: Vec<Option<Vec<Arc<str>>>> = state
            .dedupe
            .iter_mut()
            .map(DedupeMemory::take_changed)
            .collect();
        let windows_changed = state.windows.as_mut().map(Windows::take_changed);
        let full = !std::mem::replace(&mut state.changes_complete, true)
            || dedupe_changed.iter().any(Option::is_none)
            || matches!(windows_changed, Some(None));
        let mut entries = Vec::new();
        if full {
            for (stage, memory) in state.dedupe.iter().enumerate() {
                for (key, last_ms) in memory.entries_sorted() {
                    entries.push(StateEntry {
                        section: stage as u32,
                        key: key.to_string(),
                        value: Some(snapshot::dedupe_value(last_ms)),
                    });
                }
            }
            if let Some(windows) = &state.windows {
                for (key, panes) in windows.keys_sorted() {
                    entries.push(StateEntry {
                        section: WINDOWS_SECTION,
                        key: key.to_string(),
                        value: Some(snapshot::panes_value(panes)),
                    });
                }
            }
        } else {
            for (stage, keys) in dedupe_changed.into_iter().enumerate() {
                let memory = &state.dedupe[stage];
                for key in keys.unwrap_or_default() {
                    entries.push(StateEntry {
                        section: stage as u32,
                        value: memory.last_kept_ms(&key).map(snapshot::dedupe_value),
                        key: key.to_string(),
                    });
                }
            }
            if let (Some(windows), Some(Some(keys))) = (&state.windows, windows_changed) {
                for key in keys {
                    let panes = windows.panes_of(&key);
                    entries.push(StateEntry {
                        section: WINDOWS_SECTION,
                        value: (!panes.is_empty()).then(|| snapshot::panes_value(panes)),
                        key: key.to_string(),
                    });
                }
            }
        }
        StateChanges {
            full,
            header: snapshot::header(&self.plan, state),
            entries,
        }
    }

    /// The pipeline's state at this record boundary, in a deterministic binary form: the
    /// same state always gives the same bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        if let Some(join) = &self.state.join {
            return super::join_stage::snapshot(&self.plan, &self.state, join);
        }
        snapshot::write(&self.plan, &self.state)
    }

    /// Processes one record, appending what it produces to `out`. After an error the
    /// pipeline refuses every further record with the same error; restore a snapshot.
    pub fn process(
        &mut self,
        record: &SourceRecord,
        out: &mut Outputs,
    ) -> Result<(), PipelineError> {
        if let Some(err) = &self.state.failed {
            return Err(err.clone());
        }
        let result = process_record(&self.plan, &mut self.state, record, out);
        if let Err(err) = &result {
            self.state.failed = Some(err.clone());
        }
        result
    }

    /// Processes records in order, as [`process`](Pipeline::process) each.
    pub fn process_batch(
        &mut self,
        records: &[SourceRecord],
        out: &mut Outputs,
    ) -> Result<(), PipelineError> {
        records
            .iter()
            .try_for_each(|record| self.process(record, out))
    }

    /// The partition's watermark: the largest event time seen minus the job's
    /// `max_out_of_orderness`; `None` before the first event with a valid time.
    pub fn watermark_ms(&self) -> Option<i64> {
        watermark(&self.plan, &self.state)
    }

    /// An estimate, in bytes, of the memory the partition state holds.
    pub fn state_bytes(&self) -> usize {
        let windows = self.state.windows.as_ref().map_or(0, Windows::state_bytes);
        let dedupe: usize = self
            .state
            .dedupe
            .iter()
            .map(DedupeMemory::state_bytes)
            .sum();
        let join = self
            .state
            .join
            .as_ref()
            .map_or(0, super::join_downstream::JoinDownstream::state_bytes);
        windows + dedupe + join
    }
}

impl Plan {
    fn compile(spec: &JobSpec, role: PipelineRole) -> Result<Plan, CompileError> {
        validate(spec)?;
        let env = cel_env();
        let mut pre = Vec::new();
        let mut post = Vec::new();
        let mut window: Option<WindowPlan> = None;
        let mut pending_window: Option<(String, &weir_core::spec::Window)> = None;
        let mut dedupe_ttls_ms = Vec::new();
        let mut lateness = None;
        for (index, stage) in spec.pipeline.iter().enumerate() {
            let field = format!("pipeline[{index}].{}", stage.kind());
            if !role.runs(index) {
                if let (Stage::Window(spec_window), PipelineRole::Upstream { .. }) = (stage, role) {
                    lateness.get_or_insert(lateness_rule(spec_window));
                }
                if !combined_upstream(spec, role, stage, window.is_some()) {
                    continue;
                }
            }
            let steps = if window.is_some() {
                &mut post
            } else {
                &mut pre
            };
            match stage {
                Stage::Filter(source) => {
                    steps.push(Step::Filter(Filter::compile(field, source, &env)?));
                }
                Stage::KeyBy(source) => {
                    steps.push(Step::KeyBy(KeyBy::compile(field, source, &env)?))
                }
                Stage::Map(outputs) => steps.push(Step::Map(Map::compile(field, outputs, &env)?)),
                Stage::Dedupe(dedupe) => {
                    let stage = Dedupe::compile(field, dedupe, dedupe_ttls_ms.len(), &env)?;
                    dedupe_ttls_ms.push(stage.ttl_ms());
                    steps.push(Step::Dedupe(stage));
                }
                Stage::Window(spec_window) => pending_window = Some((field, spec_window)),
                Stage::Aggregate(outputs) => {
                    // Validation guarantees the window stage right before.
                    let Some((window_field, spec_window)) = pending_window.take() else {
                        return Err(CompileError::Expression {
                            field,
                            message: "an aggregate stage must follow a window stage".into(),
                        });
                    };
                    window = Some(WindowPlan::compile(
                        &window_field,
                        spec_window,
                        &field,
                        outputs,
                        &env,
                    )?);
                }
                // Only a join's own stage tasks run it, and none of them runs it here.
                Stage::Join(_) => {
                    return Err(CompileError::Expression {
                        field,
                        message: "a join runs in stages of its own, not in one task".into(),
                    })
                }
            }
        }
        Ok(Plan {
            routes: compile_routes(spec, role, &env)?,
            env,
            event_time_field: spec.source.event_time.clone(),
            max_out_of_orderness_ms: millis(spec.source.max_out_of_orderness_or_zero()),
            pre,
            window,
            post,
            dedupe_ttls_ms,
            fingerprint: snapshot::fingerprint(spec, role),
            source_topic: spec.source.topic.clone(),
            role,
            lateness,
            partitioned_by_check: None,
            join: super::join_stage::join_plan(spec, role),
        })
    }
}

/// The lateness rule an upstream task judges by, from the window after its shuffle.
fn lateness_rule(spec_window: &weir_core::spec::Window) -> LatenessRule {
    LatenessRule {
        bound: LateBound::Windows(Assigner::from_spec(&spec_window.kind)),
        allowed_lateness_ms: millis(spec_window.allowed_lateness_or_zero()),
    }
}

/// Whether `stage`, which `role` does not run, is compiled anyway: an upstream task that
/// combines keeps the window and its aggregate (as partial aggregates it never fires), and
/// nothing after them.
fn combined_upstream(spec: &JobSpec, role: PipelineRole, stage: &Stage, has_window: bool) -> bool {
    role.combines(&spec.pipeline)
        && !has_window
        && matches!(stage, Stage::Window(_) | Stage::Aggregate(_))
}

/// The spec's routes' predicates, for a role that writes the sink (none upstream).
fn compile_routes(
    spec: &JobSpec,
    role: PipelineRole,
    env: &super::expr::CelEnv,
) -> Result<Vec<Filter>, CompileError> {
    match role {
        PipelineRole::Upstream { .. }
        | PipelineRole::JoinLeft { .. }
        | PipelineRole::JoinRight { .. } => Ok(Vec::new()),
        PipelineRole::Whole
        | PipelineRole::Downstream { .. }
        | PipelineRole::JoinDownstream { .. } => spec
            .routes
            .iter()
            .enumerate()
            .map(|(index, route)| {
                Filter::compile(format!("routes[{index}].when"), &route.when, env)
            })
            .collect(),
    }
}

fn process_record(
    plan: &Plan,
    state: &mut State,
    record: &SourceRecord,
    out: &mut Outputs,
) -> Result<(), PipelineError> {
    if let PipelineRole::Downstream { .. } = plan.role {
        return super::downstream::process_shuffled(plan, state, record, out);
    }
    if let PipelineRole::JoinDownstream { .. } = plan.role {
        return super::join_stage::process(plan, state, record, out);
    }
    let mut field_spans = std::mem::take(&mut state.field_spans);
    let event_ms = process_event(plan, state, record, &mut field_spans, out);
    state.field_spans = field_spans;
    match event_ms? {
        Some(event_ms) => advance(plan, state, event_ms, record, out),
        None => Ok(()),
    }
}

/// Runs one record through the stages; returns its event time when it has a valid one
/// (and so moves the watermark).
fn process_event(
    plan: &Plan,
    state: &mut State,
    record: &SourceRecord,
    field_spans: &mut Vec<FieldSpan>,
    out: &mut Outputs,
) -> Result<Option<i64>, PipelineError> {
    let (doc, event_ms) = match decode(plan, record, field_spans) {
        Ok(decoded) => decoded,
        Err((reason, detail)) => {
            dead_letter(out, record, reason, detail);
            return Ok(None);
        }
    };
    let watermark_ms = watermark(plan, state);
    let flow = run_steps(
        &plan.pre,
        &plan.env,
        &mut state.dedupe,
        Obj::Source(doc),
        None,
        event_ms,
        watermark_ms,
    )?;
    match flow {
        Flow::Continue(obj, key) if plan.window.is_some() => {
            // Validation puts a key_by before every window, so there is a key.
            let key = key.unwrap_or_default();
            if let Some(partitions) = plan.partitioned_by_check {
                let expected = weir_core::routing::partition_for_key(key.as_bytes(), partitions);
                if expected as i32 != record.partition {
                    return Err(PipelineError::NotPartitionedBy {
                        partition: record.partition,
                        offset: record.offset,
                        key: key.to_string(),
                        expected,
                    });
                }
            }
            add_to_windows(plan, state, &obj, &key, event_ms, watermark_ms, record, out)?;
        }
        Flow::Continue(obj, key) if plan.lateness.is_some() => {
            let key = key.unwrap_or_default();
            shuffle_out(plan, &obj, &key, event_ms, watermark_ms, record, out);
        }
        Flow::Continue(obj, key) => match plan.route_of(&obj) {
            Ok(route) => emit(out, &obj, key, record.offset, route),
            Err(detail) => dead_letter(out, record, DeadLetterReason::ExpressionError, detail),
        },
        Flow::Dropped => {}
        Flow::Failed(reason, detail) => dead_letter(out, record, reason, detail),
    }
    Ok(Some(event_ms))
}

/// Upstream of a shuffle: judges the event's lateness (once, here, by this task's
/// watermark) and writes it for the repartition topic, routed by `key`.
#[allow(clippy::too_many_arguments)] // the event's coordinates, passed down as they are
fn shuffle_out(
    plan: &Plan,
    obj: &Obj<'_>,
    key: &str,
    event_ms: i64,
    watermark_ms: Option<i64>,
    record: &SourceRecord,
    out: &mut Outputs,
) {
    let Some(rule) = &plan.lateness else {
        return;
    };
    if rule.is_late(event_ms, watermark_ms) {
        let detail = match rule.bound {
            LateBound::Windows(_) => late_text(event_ms, watermark_ms, rule.allowed_lateness_ms),
            LateBound::JoinLeft { .. } | LateBound::JoinRight => format!(
                "event time {event_ms} ms is too late: the watermark is at {} ms and the join \
                 can no longer keep it (allowed lateness {} ms)",
                watermark_ms.unwrap_or(i64::MIN),
                rule.allowed_lateness_ms
            ),
        };
        dead_letter(out, record, DeadLetterReason::Late, detail);
        return;
    }
    let mut object = Vec::with_capacity(match obj {
        Obj::Source(doc) => doc.text().len(),
        Obj::Fields(fields) => 16 + 32 * fields.len(),
    });
    obj.write_json(&mut object);
    out.records.push(OutputRecord {
        key: Some(key.to_string()),
        value: super::shuffled::encode_side_event(
            rule.side(),
            event_ms,
            watermark_ms,
            record.partition,
            record.offset,
            &object,
        ),
        source_offset: record.offset,
        route: 0,
    });
}

/// The record's value as an object, and its event time.
fn decode<'a>(
    plan: &Plan,
    record: &'a SourceRecord,
    field_spans: &'a mut Vec<FieldSpan>,
) -> Result<(SourceDoc<'a>, i64), (DeadLetterReason, String)> {
    let Some(value) = record.value.as_deref() else {
        let detail = "the record has no value".to_string();
        return Err((DeadLetterReason::Undecodable, detail));
    };
    let doc = json::index_object(value, field_spans).map_err(|err| {
        let reason = match err {
            DecodeError::NotJson { .. } => DeadLetterReason::Undecodable,
            DecodeError::NotAnObject(_) => DeadLetterReason::NotAnObject,
        };
        (reason, err.detail())
    })?;
    let event_ms = event_time_ms(&doc, plan.event_time_field.as_deref(), record.timestamp_ms)
        .map_err(|detail| (DeadLetterReason::BadEventTime, detail))?;
    Ok((doc, event_ms))
}

/// Adds an event to its key's windows, unless it is late or an aggregate argument fails.
#[allow(clippy::too_many_arguments)] // the event's coordinates, passed down as they are
pub(super) fn add_to_windows(
    plan: &Plan,
    state: &mut State,
    obj: &Obj<'_>,
    key: &str,
    event_ms: i64,
    watermark_ms: Option<i64>,
    record: &SourceRecord,
    out: &mut Outputs,
) -> Result<(), PipelineError> {
    let (Some(window), Some(windows)) = (&plan.window, state.windows.as_mut()) else {
        return Ok(());
    };
    if windows.is_late(key, event_ms, watermark_ms) {
        let detail = late_detail(window, event_ms, watermark_ms);
        dead_letter(out, record, DeadLetterReason::Late, detail);
        return Ok(());
    }
    state.inputs.clear();
    for aggregate in &window.aggregates {
        let input = match &aggregate.argument {
            None => None,
            Some(expr) => {
                let input = expr
                    .eval(obj, &plan.env)
                    .and_then(|value| Input::from_datum(&value));
                match input {
                    Ok(input) => Some(input),
                    Err(message) => {
                        let detail = format!("{}: {message}", aggregate.field);
                        if let PipelineRole::Upstream { .. } = plan.role {
                            // As downstream of a shuffle: the object as it would be shuffled.
                            let mut payload = Vec::new();
                            obj.write_json(&mut payload);
                            let shuffled = SourceRecord {
                                value: Some(payload),
                                ..record.clone()
                            };
                            dead_letter(out, &shuffled, DeadLetterReason::ExpressionError, detail);
                        } else {
                            dead_letter(out, record, DeadLetterReason::ExpressionError, detail);
                        }
                        return Ok(());
                    }
                }
            }
        };
        state.inputs.push(input);
    }
    windows.add(key, event_ms, watermark_ms, &state.inputs)
}

fn late_detail(window: &WindowPlan, event_ms: i64, watermark_ms: Option<i64>) -> String {
    late_text(event_ms, watermark_ms, window.allowed_lateness_ms)
}

fn late_text(event_ms: i64, watermark_ms: Option<i64>, allowed_lateness_ms: i64) -> String {
    format!(
        "event time {event_ms} ms is too late: the watermark is at {} ms and every window \
         the event belongs to has closed (allowed lateness {allowed_lateness_ms} ms)",
        watermark_ms.unwrap_or(i64::MIN),
    )
}

/// Moves the watermark after an event at `event_ms`, forgets what it passed and fires
/// the windows it closed.
fn advance(
    plan: &Plan,
    state: &mut State,
    event_ms: i64,
    record: &SourceRecord,
    out: &mut Outputs,
) -> Result<(), PipelineError> {
    let before = watermark(plan, state);
    state.max_event_ms = Some(state.max_event_ms.map_or(event_ms, |max| max.max(event_ms)));
    watermark_moved(plan, state, before, record, out)
}

/// After the watermark may have moved from `before`: forgets what it passed and fires the
/// windows it closed, `record` being what moved it.
pub(super) fn watermark_moved(
    plan: &Plan,
    state: &mut State,
    before: Option<i64>,
    record: &SourceRecord,
    out: &mut Outputs,
) -> Result<(), PipelineError> {
    let Some(watermark_ms) = watermark(plan, state) else {
        return Ok(());
    };
    if before == Some(watermark_ms) {
        return Ok(());
    }
    for (memory, ttl_ms) in state.dedupe.iter_mut().zip(&plan.dedupe_ttls_ms) {
        memory.forget(watermark_ms, *ttl_ms);
    }
    if let PipelineRole::Upstream { .. } = plan.role {
        // Partial aggregates are sent at checkpoints; the downstream stage fires.
        return Ok(());
    }
    let Some(windows) = state.windows.as_mut() else {
        return Ok(());
    };
    let mut fired = std::mem::take(&mut state.fired);
    fired.clear();
    windows.fire(watermark_ms, &mut fired);
    let result = fired
        .iter()
        .try_for_each(|result| emit_window_result(plan, state, result, watermark_ms, record, out));
    fired.clear();
    state.fired = fired;
    result
}

/// Runs a fired window's result through the stages after the aggregate and emits it.
pub(super) fn emit_window_result(
    plan: &Plan,
    state: &mut State,
    fired: &Fired,
    watermark_ms: i64,
    record: &SourceRecord,
    out: &mut Outputs,
) -> Result<(), PipelineError> {
    let Some(window) = &plan.window else {
        return Ok(());
    };
    if plan.post.is_empty() && plan.routes.is_empty() {
        out.records.push(OutputRecord {
            key: Some(fired.key.to_string()),
            value: window_result_json(window, fired),
            source_offset: record.offset,
            route: 0,
        });
        return Ok(());
    }
    let mut fields: Vec<(&str, Datum<'_>)> = Vec::with_capacity(3 + window.aggregates.len());
    fields.push(("key", Datum::Str(Cow::Borrowed(&fired.key))));
    fields.push(("window_start", Datum::Int(fired.start_ms)));
    fields.push(("window_end", Datum::Int(fired.end_ms)));
    for (aggregate, accumulator) in window.aggregates.iter().zip(&fired.accumulators) {
        fields.push((aggregate.name.as_str(), accumulator.result()));
    }
    let obj = Obj::Fields(fields);
    let flow = run_steps(
        &plan.post,
        &plan.env,
        &mut state.dedupe,
        obj.clone(),
        Some(Cow::Borrowed(&fired.key)),
        fired.end_ms - 1,
        Some(watermark_ms),
    )?;
    let routed = match flow {
        Flow::Continue(routed_obj, key) => match plan.route_of(&routed_obj) {
            Ok(route) => {
                emit(out, &routed_obj, key, record.offset, route);
                Flow::Dropped
            }
            Err(detail) => Flow::Failed(DeadLetterReason::ExpressionError, detail),
        },
        other => other,
    };
    match routed {
        Flow::Continue(..) | Flow::Dropped => {}
        Flow::Failed(reason, detail) => {
            let mut payload = Vec::new();
            obj.write_json(&mut payload);
            out.dead_letters.push(DeadLetter {
                reason,
                detail: format!(
                    "window result [{}, {}): {detail}",
                    fired.start_ms, fired.end_ms
                ),
                topic: record.topic.clone(),
                partition: record.partition,
                offset: record.offset,
                payload: Some(payload),
            });
        }
    }
    Ok(())
}

/// A window result as JSON, written directly: the same text as the result object's.
pub(super) fn window_result_json(window: &WindowPlan, fired: &Fired) -> Vec<u8> {
    let mut value = Vec::with_capacity(48 + fired.key.len() + 24 * window.aggregates.len());
    value.extend_from_slice(b"{\"key\":");
    write_json_str(&mut value, &fired.key);
    value.extend_from_slice(b",\"window_start\":");
    write_i64(&mut value, fired.start_ms);
    value.extend_from_slice(b",\"window_end\":");
    write_i64(&mut value, fired.end_ms);
    for (aggregate, accumulator) in window.aggregates.iter().zip(&fired.accumulators) {
        value.extend_from_slice(&aggregate.json_prefix);
        accumulator.result().write_json(&mut value);
    }
    value.push(b'}');
    value
}

pub(super) fn emit(
    out: &mut Outputs,
    obj: &Obj<'_>,
    key: Option<Cow<'_, str>>,
    source_offset: i64,
    route: u16,
) {
    let mut value = Vec::with_capacity(match obj {
        Obj::Source(doc) => doc.text().len(),
        Obj::Fields(fields) => 16 + 32 * fields.len(),
    });
    obj.write_json(&mut value);
    if route > 0 && planted(PlantedBug::RouteAlsoToSink) {
        // The mistake: the routed result reaches the sink as well.
        out.records.push(OutputRecord {
            key: key.as_deref().map(str::to_string),
            value: value.clone(),
            source_offset,
            route: 0,
        });
    }
    out.records.push(OutputRecord {
        key: key.map(Cow::into_owned),
        value,
        source_offset,
        route,
    });
}

pub(super) fn dead_letter(
    out: &mut Outputs,
    record: &SourceRecord,
    reason: DeadLetterReason,
    detail: String,
) {
    out.dead_letters.push(DeadLetter {
        reason,
        detail,
        topic: record.topic.clone(),
        partition: record.partition,
        offset: record.offset,
        payload: record.value.clone(),
    });
}
