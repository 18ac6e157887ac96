//! The per-record loop: decode, event time, stages under the watermark from before the
//! record, then the watermark moves and due windows fire through the stages after the
//! aggregate. One plain sequential pass over one partition's records.
//!
//! For a job that shuffles this is the upstream stage: the stages up to the shuffling
//! key_by, lateness judged under the partition's watermark, and every event not late
//! handed on as a [`Shuffled`] for the downstream stage (`downstream`) instead of into
//! windows.

use super::aggregate::Number;
use super::downstream::Shuffled;
use super::event_time::event_time_ms;
use super::expr::{key_text, to_json};
use super::json::{self, Json};
use super::plan::{route_of, Plan, StageOp, WindowOp};
use super::routing::partition_of_key;
use super::windows::{Fired, Windows};
use super::{RefDeadLetter, RefMisplaced, RefOutput, RefOutputs, RefRecord, ReferenceError};
use cel::{Env, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// An event on its way through the stages.
pub(super) struct Event {
    pub(super) object: BTreeMap<String, Json>,
    /// The key text of the last `key_by` (or the window's key, for a result).
    pub(super) key: Option<String>,
    pub(super) time_ms: i128,
    /// Whether a `map` ran, so the value is the object rather than the original bytes.
    pub(super) mapped: bool,
}

impl Event {
    /// The event's value as the worker writes it: the object's JSON once a `map` ran,
    /// else the original bytes.
    pub(super) fn value(&self, original: &[u8]) -> Vec<u8> {
        match self.mapped {
            true => json::to_bytes(&Json::Object(self.object.clone())),
            false => original.to_vec(),
        }
    }
}

/// What the stages did with an event.
pub(super) enum Outcome {
    Kept(Event),
    Dropped,
    /// An `expression_error`.
    Failed,
}

/// The dead-letter reasons as the worker writes them.
const UNDECODABLE: &str = "undecodable";
const NOT_AN_OBJECT: &str = "not_an_object";
const BAD_EVENT_TIME: &str = "bad_event_time";
pub(super) const EXPRESSION_ERROR: &str = "expression_error";
const LATE: &str = "late";

/// One partition's evaluation: the plan and everything the partition remembers.
pub(crate) struct Evaluator<'t> {
    env: Arc<Env>,
    topic: &'t str,
    plan: Plan,
    /// The largest event time so far; the watermark trails it.
    time_max_ms: Option<i128>,
    /// Each dedupe stage's memory, key text -> time of the last kept event, by the
    /// stage's index in its list (before the window, after the aggregate).
    dedupe_before: Vec<BTreeMap<String, i128>>,
    dedupe_after: Vec<BTreeMap<String, i128>>,
    windows: Option<Windows>,
    out: RefOutputs,
    /// What the upstream stage of a shuffling job hands on, in offset order.
    shuffled: Vec<Shuffled>,
}

/// What one source partition's upstream stage leaves: its outputs and dead letters, the
/// events it shuffles, and its watermark after its last record.
pub(crate) struct Upstream {
    pub(crate) out: RefOutputs,
    pub(crate) shuffled: Vec<Shuffled>,
    pub(crate) watermark: Option<i128>,
}

impl<'t> Evaluator<'t> {
    pub(crate) fn new(plan: Plan, topic: &'t str) -> Self {
        let windows = plan
            .window
            .as_ref()
            .map(|window| Windows::new(window.shape, window.lateness_ms, window.aggregates.len()));
        Evaluator {
            env: Arc::new(Env::stdlib()),
            topic,
            time_max_ms: None,
            dedupe_before: vec![BTreeMap::new(); plan.before.len()],
            dedupe_after: vec![BTreeMap::new(); plan.after.len()],
            plan,
            windows,
            out: RefOutputs::default(),
            shuffled: Vec::new(),
        }
    }

    pub(crate) fn finish(self) -> RefOutputs {
        self.out
    }

    /// The evaluation going on under `plan`, a new version of the job from this point of
    /// the input (an upgrade's cut): what was output stays, and the state carries by the
    /// default identity rule — the `k`-th dedupe in pipeline order (`dedupe#k`) keeps its
    /// memory, the window (`window#0`) its open windows, the event time its progress —
    /// except the stages `state_drop` names, which start empty. The reference models
    /// only upgrades that keep the stateful stages as they were.
    pub(crate) fn upgraded(
        self,
        plan: Plan,
        state_drop: &[String],
    ) -> Result<Evaluator<'t>, ReferenceError> {
        let dedupes = |plan: &Plan| -> Vec<(bool, usize)> {
            let before = plan.before.iter().enumerate().map(|(i, op)| (true, i, op));
            let after = plan.after.iter().enumerate().map(|(i, op)| (false, i, op));
            before
                .chain(after)
                .filter(|(_, _, op)| matches!(op, StageOp::Dedupe { .. }))
                .map(|(is_before, i, _)| (is_before, i))
                .collect()
        };
        let aggregates = |plan: &Plan| -> Option<Vec<String>> {
            let window = plan.window.as_ref()?;
            Some(window.aggregates.iter().map(|a| a.name.clone()).collect())
        };
        let (old_dedupes, new_dedupes) = (dedupes(&self.plan), dedupes(&plan));
        if old_dedupes.len() != new_dedupes.len() || aggregates(&self.plan) != aggregates(&plan) {
            return Err(ReferenceError::Unsupported(
                "an upgrade that changes the stateful stages".into(),
            ));
        }
        let dropped = |id: String| state_drop.contains(&id);
        let mut next = Evaluator::new(plan, self.topic);
        next.time_max_ms = self.time_max_ms;
        for (ordinal, (old, new)) in old_dedupes.into_iter().zip(new_dedupes).enumerate() {
            if dropped(format!("dedupe#{ordinal}")) {
                continue;
            }
            let memory = match old {
                (true, i) => self.dedupe_before[i].clone(),
                (false, i) => self.dedupe_after[i].clone(),
            };
            match new {
                (true, i) => next.dedupe_before[i] = memory,
                (false, i) => next.dedupe_after[i] = memory,
            }
        }
        if !dropped("window#0".to_string()) {
            next.windows = self.windows;
        }
        next.out = self.out;
        Ok(next)
    }

    /// The end of a partition's upstream stage.
    pub(crate) fn finish_upstream(self) -> Upstream {
        Upstream {
            watermark: self.watermark(),
            out: self.out,
            shuffled: self.shuffled,
        }
    }

    fn watermark(&self) -> Option<i128> {
        self.time_max_ms
            .map(|max| max - self.plan.max_out_of_orderness_ms)
    }

    pub(crate) fn process(&mut self, record: &RefRecord) -> Result<(), ReferenceError> {
        let Some(bytes) = &record.value else {
            self.dead_letter(record, UNDECODABLE, record.value.clone());
            return Ok(());
        };
        let object = match json::parse(bytes) {
            Err(_) => {
                self.dead_letter(record, UNDECODABLE, record.value.clone());
                return Ok(());
            }
            Ok(Json::Object(object)) => object,
            Ok(_) => {
                self.dead_letter(record, NOT_AN_OBJECT, record.value.clone());
                return Ok(());
            }
        };
        let field = self.plan.event_time_field.as_deref();
        let Ok(time_ms) = event_time_ms(field, &object, record.timestamp_ms) else {
            self.dead_letter(record, BAD_EVENT_TIME, record.value.clone());
            return Ok(());
        };
        let watermark_before = self.watermark();
        let event = Event {
            object,
            key: None,
            time_ms: i128::from(time_ms),
            mapped: false,
        };
        let mut checked_keys = Vec::new();
        let outcome = run_stages(
            &self.env,
            self.plan.upstream(),
            &mut self.dedupe_before,
            event,
            watermark_before,
            &mut checked_keys,
        );
        self.check_partition(record, checked_keys);
        match outcome {
            Outcome::Dropped => {}
            Outcome::Failed => self.dead_letter(record, EXPRESSION_ERROR, record.value.clone()),
            Outcome::Kept(event) => {
                match (
                    self.plan.shuffle_after.is_some(),
                    self.plan.window.is_some(),
                ) {
                    (true, _) => self.shuffle(record, bytes, event, watermark_before),
                    (false, false) => match route_of(&self.env, &self.plan.routes, &event.object) {
                        Ok(route) => self.emit(&event, bytes, route),
                        Err(()) => self.dead_letter(record, EXPRESSION_ERROR, record.value.clone()),
                    },
                    (false, true) => self.add_to_windows(record, event, watermark_before),
                }
            }
        }
        self.advance_watermark(record, i128::from(time_ms))
    }

    /// Notes every key a checked key_by computed for `record` that does not hash to the
    /// record's partition: the engine fails the job on the first.
    fn check_partition(&mut self, record: &RefRecord, keys: Vec<String>) {
        let Some(partitions) = self.plan.source_partitions else {
            return;
        };
        for key in keys {
            let expected = partition_of_key(key.as_bytes(), partitions);
            if expected != record.partition {
                self.out.misplaced.push(RefMisplaced {
                    partition: record.partition,
                    offset: record.offset,
                    key,
                    expected_partition: expected,
                });
            }
        }
    }

    /// The end of the upstream stage for an event that got through the shuffling
    /// key_by: a `late` dead letter when every window of it closed under the partition's
    /// watermark, else handed on with that watermark.
    fn shuffle(
        &mut self,
        record: &RefRecord,
        original: &[u8],
        event: Event,
        watermark: Option<i128>,
    ) {
        // Plan::compile refuses a window without a key_by before it.
        let key = event.key.clone().unwrap_or_default();
        let late = self
            .windows
            .as_ref()
            .is_some_and(|windows| windows.is_late(&key, event.time_ms, watermark));
        if late {
            self.dead_letter(record, LATE, record.value.clone());
            return;
        }
        self.shuffled.push(Shuffled {
            payload: event.value(original),
            key,
            object: event.object,
            time_ms: event.time_ms,
            watermark_before: watermark,
            partition: record.partition,
            offset: record.offset,
        });
    }

    /// A kept event into its windows, or a dead letter when late or its aggregate
    /// arguments fail.
    fn add_to_windows(&mut self, record: &RefRecord, event: Event, watermark: Option<i128>) {
        // Plan::compile refuses a window without a key_by before it.
        let key = event.key.as_deref().unwrap_or_default();
        let refused = match (&self.plan.window, &mut self.windows) {
            (Some(window), Some(windows)) => {
                if windows.is_late(key, event.time_ms, watermark) {
                    // Lateness is checked before the aggregate arguments are evaluated.
                    Some(LATE)
                } else {
                    match aggregate_inputs(&self.env, window, &event.object) {
                        Ok(inputs) => {
                            windows.add(key, event.time_ms, watermark, &inputs);
                            None
                        }
                        Err(_) => Some(EXPRESSION_ERROR),
                    }
                }
            }
            _ => None,
        };
        if let Some(reason) = refused {
            self.dead_letter(record, reason, record.value.clone());
        }
    }

    /// Moves the watermark for an event at `time_ms`; when it changes, due windows fire.
    fn advance_watermark(
        &mut self,
        record: &RefRecord,
        time_ms: i128,
    ) -> Result<(), ReferenceError> {
        let before = self.watermark();
        self.time_max_ms = Some(self.time_max_ms.map_or(time_ms, |max| max.max(time_ms)));
        let Some(after) = self.watermark() else {
            return Ok(());
        };
        if before == Some(after) {
            return Ok(());
        }
        let fired = match &mut self.windows {
            Some(windows) => windows.fire(after),
            None => Vec::new(),
        };
        for result in fired {
            self.emit_result(record, result, after)?;
        }
        Ok(())
    }

    /// Runs a fired window's result through the stages after the aggregate.
    fn emit_result(
        &mut self,
        record: &RefRecord,
        fired: Fired,
        watermark: i128,
    ) -> Result<(), ReferenceError> {
        let Some(window) = &self.plan.window else {
            return Ok(());
        };
        let (bytes, object) = result_json(window, &fired)?;
        let event = Event {
            object,
            key: Some(fired.key),
            time_ms: fired.end - 1,
            mapped: false,
        };
        let outcome = run_stages(
            &self.env,
            &self.plan.after,
            &mut self.dedupe_after,
            event,
            Some(watermark),
            &mut Vec::new(),
        );
        match outcome {
            Outcome::Kept(event) => match route_of(&self.env, &self.plan.routes, &event.object) {
                Ok(route) => self.emit(&event, &bytes, route),
                Err(()) => self.dead_letter(record, EXPRESSION_ERROR, Some(bytes)),
            },
            Outcome::Dropped => {}
            Outcome::Failed => self.dead_letter(record, EXPRESSION_ERROR, Some(bytes)),
        }
        Ok(())
    }

    fn emit(&mut self, event: &Event, original: &[u8], route: u16) {
        self.out.outputs.push(RefOutput {
            key: event.key.as_ref().map(|key| key.as_bytes().to_vec()),
            value: event.value(original),
            route,
        });
    }

    fn dead_letter(&mut self, record: &RefRecord, reason: &str, payload: Option<Vec<u8>>) {
        self.out.dead_letters.push(RefDeadLetter {
            reason: reason.to_string(),
            topic: self.topic.to_string(),
            partition: record.partition,
            offset: record.offset,
            payload,
            truncated: None,
        });
    }
}

/// Runs `stages` in order on `event` under `watermark`; the first drop or failure ends it.
/// `memories[i]` is the memory of `stages[i]` when that is a dedupe stage; the key of
/// every checked key_by reached is pushed onto `checked_keys`.
pub(super) fn run_stages(
    env: &Arc<Env>,
    stages: &[StageOp],
    memories: &mut [BTreeMap<String, i128>],
    mut event: Event,
    watermark: Option<i128>,
    checked_keys: &mut Vec<String>,
) -> Outcome {
    for (index, stage) in stages.iter().enumerate() {
        let result = match stage {
            StageOp::Filter(expr) => match expr.eval(env, &event.object) {
                Ok(Value::Bool(true)) => Ok(true),
                Ok(Value::Bool(false)) => Ok(false),
                Ok(other) => Err(format!("filter gave a {}, not a bool", other.type_of())),
                Err(err) => Err(err),
            },
            StageOp::Map(outputs) => map(env, outputs, &event.object).map(|object| {
                event.object = object;
                event.mapped = true;
                true
            }),
            StageOp::KeyBy { expr, checked } => expr
                .eval(env, &event.object)
                .and_then(|value| key_text(&value))
                .map(|key| {
                    if *checked {
                        checked_keys.push(key.clone());
                    }
                    event.key = Some(key);
                    true
                }),
            StageOp::Dedupe { key, ttl_ms } => key
                .eval(env, &event.object)
                .and_then(|value| key_text(&value))
                .map(|key| dedupe(&mut memories[index], key, event.time_ms, *ttl_ms, watermark)),
        };
        match result {
            Ok(true) => {}
            Ok(false) => return Outcome::Dropped,
            Err(_) => return Outcome::Failed,
        }
    }
    Outcome::Kept(event)
}

/// One dedupe decision; `true` keeps the event.
fn dedupe(
    memory: &mut BTreeMap<String, i128>,
    key: String,
    t: i128,
    ttl: i128,
    watermark: Option<i128>,
) -> bool {
    // Forgetting is lazy: a key is remembered while `t_prev + ttl > W`, and as W never
    // decreases, checking at lookup is the same as forgetting when W moves.
    if let Some(&t_prev) = memory.get(&key) {
        let remembered = watermark.is_none_or(|w| t_prev + ttl > w);
        if remembered && (t - t_prev).abs() < ttl {
            return false;
        }
    }
    memory.insert(key, t);
    true
}

/// The object a `map` makes of `object`.
fn map(
    env: &Arc<Env>,
    outputs: &[(String, super::expr::Expr)],
    object: &BTreeMap<String, Json>,
) -> Result<BTreeMap<String, Json>, String> {
    outputs
        .iter()
        .map(|(name, expr)| {
            let value = expr.eval(env, object)?;
            Ok((name.clone(), to_json(&value)?))
        })
        .collect()
}

/// The aggregate inputs of one event: one a output, `None` for `count()`.
pub(super) fn aggregate_inputs(
    env: &Arc<Env>,
    window: &WindowOp,
    object: &BTreeMap<String, Json>,
) -> Result<Vec<Option<Number>>, String> {
    window
        .aggregates
        .iter()
        .map(|aggregate| {
            let Some(argument) = &aggregate.argument else {
                return Ok(None);
            };
            match argument.eval(env, object)? {
                Value::Int(i) => Ok(Some(Number::Integer(i.into()))),
                Value::UInt(u) => Ok(Some(Number::Integer(u.into()))),
                Value::Float(d) if d.is_finite() => Ok(Some(Number::Double(d))),
                other => Err(format!("aggregate input {other:?} is not a finite number")),
            }
        })
        .collect()
}

/// A window result as bytes, `{"key", "window_start", "window_end", <aggregates>...}` in
/// that order, and as the object later stages see.
pub(super) fn result_json(
    window: &WindowOp,
    fired: &Fired,
) -> Result<(Vec<u8>, BTreeMap<String, Json>), ReferenceError> {
    let bound = |ms: i128| {
        i64::try_from(ms)
            .map(Json::Int)
            .map_err(|_| ReferenceError::Unsupported(format!("window bound {ms} beyond i64")))
    };
    let mut fields = vec![
        ("key".to_string(), Json::String(fired.key.clone())),
        ("window_start".to_string(), bound(fired.start)?),
        ("window_end".to_string(), bound(fired.end)?),
    ];
    for (aggregate, acc) in window.aggregates.iter().zip(&fired.accumulators) {
        fields.push((aggregate.name.clone(), acc.result(aggregate.function)));
    }
    let mut bytes = vec![b'{'];
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            bytes.push(b',');
        }
        json::write_str(&mut bytes, name);
        bytes.push(b':');
        json::write(&mut bytes, value);
    }
    bytes.push(b'}');
    Ok((bytes, fields.into_iter().collect()))
}
