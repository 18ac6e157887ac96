//! Whether a new version of a job can take over the old version's state, stage by stage,
//! and how: a pure check run by the coordinator when an upgrade is requested (a refusal is
//! a 400 naming the stage and the reason) and again by the worker that restores an old
//! version's snapshot into the new pipeline.
//!
//! Stateful stages are matched by identity ([`super::identity`]). A stage present in both
//! specs carries its state exactly when nothing that shaped the state changed: for a
//! window, its kind and sizes, the `key_by` expression before it and every aggregate
//! output it had (same function and argument; new outputs start empty); for a dedupe, its
//! key and a ttl at least as long; for both, the source's event-time field and
//! `max_out_of_orderness`. A stage of the old spec missing from the new one loses its
//! state, and a changed one cannot carry it: both are refused unless `allow_state_drop`
//! names the stage's id, and a named stage starts empty whatever changed. A new stateful
//! stage starts empty. Filters, maps, thresholds after an aggregate, routes and the sink
//! never matter. (A `map` before a stage can change what its unchanged key expression
//! reads; that is the user's to judge, as in any system that matches state by id.)

use super::error::SpecError;
use super::identity::{stateful_stages, StatefulKind, StatefulStage};
use super::model::JobSpec;
use super::stage::Stage;
use super::{parse_aggregate_call, AggregateCall};
use crate::bugs::{planted, PlantedBug};
use std::collections::BTreeMap;

/// How the new version's state is made from the old one's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CarryPlan {
    /// For each dedupe memory of the new pipeline (by ordinal), the old pipeline's memory
    /// it continues, or `None` to start empty.
    pub dedupe: Vec<Option<usize>>,
    /// The new pipeline's window, if it continues the old one's.
    pub window: Option<WindowCarry>,
    /// The ids of the stages that start empty although the old spec had them (named in
    /// `allow_state_drop`).
    pub dropped: Vec<String>,
}

/// How a carried window's accumulators map onto the new aggregate outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowCarry {
    /// For each output of the new aggregate stage, in name order (the order of a pane's
    /// accumulators), the index of the old output it continues, or `None` (new: empty).
    pub aggregates: Vec<Option<usize>>,
}

/// Why a new spec cannot take over the old one's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    /// The change is not one an upgrade can make (another source topic, a new shuffle).
    #[error(transparent)]
    Job(SpecError),
    /// A stateful stage's state cannot be carried and `allow_state_drop` does not name it.
    #[error("{field} ({id}): {reason}; name it in allow_state_drop to start it empty")]
    Incompatible {
        field: String,
        id: String,
        reason: String,
    },
    /// `allow_state_drop` names an id that no stateful stage of either spec has.
    #[error("allow_state_drop names `{0}`, which is no stateful stage of the old or new spec")]
    UnknownStage(String),
}

impl UpgradeError {
    /// The error as a spec error (field and sentence), as the HTTP API answers a 400.
    pub fn to_spec_error(&self) -> SpecError {
        match self {
            UpgradeError::Job(error) => error.clone(),
            UpgradeError::Incompatible { field, .. } => SpecError::new(field, self.to_string()),
            UpgradeError::UnknownStage(_) => SpecError::new("allow_state_drop", self.to_string()),
        }
    }
}

/// The ids among `ids` that name a stateful stage of `old` or `new`: of the stages an
/// earlier upgrade dropped, those that still matter when a state older than that upgrade
/// is carried further (a partition that committed nothing in between).
pub fn known_stage_ids(old: &JobSpec, new: &JobSpec, ids: &[String]) -> Vec<String> {
    let (old_stages, new_stages) = (
        stateful_stages(&old.pipeline),
        stateful_stages(&new.pipeline),
    );
    ids.iter()
        .filter(|id| {
            old_stages
                .iter()
                .chain(&new_stages)
                .any(|stage| &stage.id == *id)
        })
        .cloned()
        .collect()
}

/// Checks that `new` can take over the state `old` wrote, dropping only the stages
/// `allow_state_drop` names, and says how. Both specs are valid ones.
pub fn check_upgrade(
    old: &JobSpec,
    new: &JobSpec,
    allow_state_drop: &[String],
) -> Result<CarryPlan, UpgradeError> {
    check_job(old, new)?;
    let old_stages = stateful_stages(&old.pipeline);
    let new_stages = stateful_stages(&new.pipeline);
    for id in allow_state_drop {
        let known = |stages: &[StatefulStage<'_>]| stages.iter().any(|s| &s.id == id);
        if !known(&old_stages) && !known(&new_stages) {
            return Err(UpgradeError::UnknownStage(id.clone()));
        }
    }
    let named = |id: &str| allow_state_drop.iter().any(|d| d == id);
    for stage in &old_stages {
        if !named(&stage.id) && !new_stages.iter().any(|s| s.id == stage.id) {
            return Err(incompatible(
                stage,
                "the stage is gone from the new spec, and its state with it",
            ));
        }
    }
    let mut plan = CarryPlan::default();
    for stage in &new_stages {
        let Some(before) = old_stages.iter().find(|s| s.id == stage.id) else {
            push_empty(&mut plan, stage);
            continue;
        };
        if named(&stage.id) {
            // The planted bug carries a named stage's state whenever it could be carried.
            let carried_anyway = planted(PlantedBug::UpgradeRestoresWrongStage)
                && event_time_change(old, new).is_none()
                && carry_stage(old, before, new, stage).is_ok();
            if !carried_anyway {
                plan.dropped.push(stage.id.clone());
                push_empty(&mut plan, stage);
                continue;
            }
        }
        if let Some(reason) = event_time_change(old, new) {
            return Err(incompatible(stage, &reason));
        }
        match carry_stage(old, before, new, stage) {
            Ok(Carry::Dedupe(ordinal)) => plan.dedupe.push(Some(ordinal)),
            Ok(Carry::Window(window)) => plan.window = Some(window),
            Err(reason) => return Err(incompatible(stage, &reason)),
        }
    }
    Ok(plan)
}

/// One stage's carry.
enum Carry {
    Dedupe(usize),
    Window(WindowCarry),
}

fn push_empty(plan: &mut CarryPlan, stage: &StatefulStage<'_>) {
    if stage.kind == StatefulKind::Dedupe {
        plan.dedupe.push(None);
    }
}

fn incompatible(stage: &StatefulStage<'_>, reason: &str) -> UpgradeError {
    UpgradeError::Incompatible {
        field: stage.field(),
        id: stage.id.clone(),
        reason: reason.to_string(),
    }
}

/// What an upgrade may not change at all: the job's name and source topic (the offsets
/// and state are of that topic), and whether it shuffles (an upgrade of a job with
/// repartition topics is not supported yet).
fn check_job(old: &JobSpec, new: &JobSpec) -> Result<(), UpgradeError> {
    let refuse =
        |field: &str, message: &str| Err(UpgradeError::Job(SpecError::new(field, message)));
    if old.name != new.name {
        return refuse("name", "an upgrade keeps the job's name");
    }
    if old.source.topic != new.source.topic {
        return refuse(
            "source.topic",
            "an upgrade keeps the source topic: the state and offsets carried are of it",
        );
    }
    let shuffles = |spec: &JobSpec| super::stages::shuffling_key_by(spec).is_some();
    if (shuffles(old) || shuffles(new)) && !same_stateful_stages(old, new) {
        return refuse(
            "pipeline",
            "an upgrade of a job that repartitions (a key_by the source is not partitioned \
             by, or a join) may change the stages after its last stateful one (filters and \
             maps after the aggregate), its routes, sink, parallelism (a rescale), \
             dead-letter topic and checkpoint interval; changing its source or any stage up \
             to its aggregate is not supported yet: carrying its stages' state into a new \
             stage plan is not built",
        );
    }
    Ok(())
}

/// Whether `old` and `new` keep their state alike in every task of every stage: the same
/// source (its event-time settings included) and the same stages up to and including the
/// last stateful one (a dedupe, window, aggregate or join; the `key_by` that shuffles is
/// before it). What follows is stateless (filters, maps, a labelling key_by), so each
/// task's state, upstream partial aggregates and downstream windows alike, reads as it is
/// into the new pipeline. How a job that repartitions is upgraded.
pub fn same_stateful_stages(old: &JobSpec, new: &JobSpec) -> bool {
    old.source == new.source && stateful_prefix(old) == stateful_prefix(new)
}

/// The stages of `spec` up to and including its last stateful one.
fn stateful_prefix(spec: &JobSpec) -> &[super::Stage] {
    use super::Stage;
    let end = spec
        .pipeline
        .iter()
        .rposition(|stage| {
            matches!(
                stage,
                Stage::Dedupe(_) | Stage::Window(_) | Stage::Aggregate(_) | Stage::Join(_)
            )
        })
        .map_or(0, |last| last + 1);
    &spec.pipeline[..end]
}

/// Why the event-time settings, which every stateful stage's state depends on, changed.
fn event_time_change(old: &JobSpec, new: &JobSpec) -> Option<String> {
    if old.source.event_time != new.source.event_time {
        return Some(format!(
            "source.event_time changed from {:?} to {:?}",
            old.source.event_time, new.source.event_time
        ));
    }
    let (before, after) = (
        old.source.max_out_of_orderness_or_zero(),
        new.source.max_out_of_orderness_or_zero(),
    );
    (before != after)
        .then(|| format!("source.max_out_of_orderness changed from {before} to {after}"))
}

/// How `stage` of `new` continues `before` of `old`, or why it cannot.
fn carry_stage(
    old: &JobSpec,
    before: &StatefulStage<'_>,
    new: &JobSpec,
    stage: &StatefulStage<'_>,
) -> Result<Carry, String> {
    match (before.stage, stage.stage) {
        (Stage::Dedupe(was), Stage::Dedupe(is)) => {
            if was.key != is.key {
                return Err(format!(
                    "the dedupe key changed from `{}` to `{}`",
                    was.key, is.key
                ));
            }
            if is.ttl < was.ttl {
                return Err(format!(
                    "the dedupe ttl shrank from {} to {} (only a longer ttl carries)",
                    was.ttl, is.ttl
                ));
            }
            Ok(Carry::Dedupe(before.ordinal))
        }
        (Stage::Window(was), Stage::Window(is)) => {
            if was.kind != is.kind {
                return Err(format!(
                    "the window changed from {} to {}",
                    describe(&was.kind),
                    describe(&is.kind)
                ));
            }
            let (key_was, key_is) = (key_before(old, before.index), key_before(new, stage.index));
            if key_was != key_is {
                return Err(format!(
                    "the window's key changed from `{}` to `{}`",
                    key_was.unwrap_or_default(),
                    key_is.unwrap_or_default()
                ));
            }
            let aggregates = carry_aggregates(
                aggregate_after(old, before.index),
                aggregate_after(new, stage.index),
            )?;
            Ok(Carry::Window(WindowCarry { aggregates }))
        }
        _ => Err(format!(
            "the id now names a {} where it named a {}",
            stage.kind.as_str(),
            before.kind.as_str()
        )),
    }
}

fn describe(kind: &super::WindowKind) -> String {
    serde_json::to_string(&super::Window {
        kind: kind.clone(),
        allowed_lateness: None,
        id: None,
    })
    .unwrap_or_else(|_| kind.name().to_string())
}

/// The expression of the last `key_by` before `index`.
fn key_before(spec: &JobSpec, index: usize) -> Option<&str> {
    spec.pipeline
        .get(..index)?
        .iter()
        .rev()
        .find_map(|stage| match stage {
            Stage::KeyBy(key) => Some(key.trim()),
            _ => None,
        })
}

/// The outputs of the aggregate stage right after the window at `index`.
fn aggregate_after(spec: &JobSpec, index: usize) -> BTreeMap<String, Option<AggregateCall>> {
    match spec.pipeline.get(index + 1) {
        Some(Stage::Aggregate(outputs)) => outputs
            .iter()
            .map(|(name, call)| (name.clone(), parse_aggregate_call(call).ok()))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// For each new output (in name order), the old output it continues; refused when an old
/// output is gone or computes something else now.
fn carry_aggregates(
    old: BTreeMap<String, Option<AggregateCall>>,
    new: BTreeMap<String, Option<AggregateCall>>,
) -> Result<Vec<Option<usize>>, String> {
    for (name, call) in &old {
        match new.get(name) {
            None => return Err(format!("the aggregate output `{name}` was removed")),
            Some(now) if now != call => {
                return Err(format!(
                    "the aggregate output `{name}` computes something else now"
                ))
            }
            Some(_) => {}
        }
    }
    Ok(new
        .keys()
        .map(|name| old.keys().position(|n| n == name))
        .collect())
}

#[cfg(test)]
#[path = "upgrade_tests.rs"]
mod tests;
