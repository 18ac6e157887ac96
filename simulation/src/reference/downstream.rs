//! The downstream stage of a job that shuffles: one global evaluation over the events
//! every source partition's upstream stage handed on, keys now global.
//!
//! Each event runs the filter/map stages between the shuffling key_by and the window (a
//! failure is an `expression_error` with the event's source coordinates and the object
//! as shuffled for payload, as is a failing aggregate argument), then joins each of its
//! windows still open under its own upstream watermark. At the end of the run the
//! downstream watermark is the minimum of every source partition's final watermark
//! (none, and nothing fires, while any partition never had a valid event time); every
//! window it has passed fires through the stages after the aggregate. A result failing
//! there is dead-lettered at the repartition topic, the partition its key routes to,
//! offset -1.

use super::evaluator::{aggregate_inputs, result_json, run_stages, Event, Outcome};
use super::evaluator::{Upstream, EXPRESSION_ERROR};
use super::json::Json;
use super::plan::{route_of, Plan, WindowOp};
use super::routing::partition_of_key;
use super::windows::Windows;
use super::{RefDeadLetter, RefOutput, RefOutputs, ReferenceError};
use cel::Env;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One event as the upstream stage shuffles it.
#[derive(Debug, Clone)]
pub(crate) struct Shuffled {
    /// The key text of the shuffling key_by.
    pub(crate) key: String,
    /// The current object after the upstream stages.
    pub(crate) object: BTreeMap<String, Json>,
    /// What a dead letter of it carries: the object's JSON when a `map` ran upstream,
    /// else the source value.
    pub(crate) payload: Vec<u8>,
    pub(crate) time_ms: i128,
    /// The source partition's watermark before this record.
    pub(crate) watermark_before: Option<i128>,
    /// Source coordinates.
    pub(crate) partition: i32,
    pub(crate) offset: i64,
}

/// The repartition topic the downstream stage reads.
pub(crate) struct Repartition {
    pub(crate) topic: String,
    pub(crate) partitions: u32,
}

/// Runs the downstream stage over every partition's upstream result, adding its
/// outputs and dead letters to `out`. `source_topic` names the coordinates of events'
/// dead letters.
pub(crate) fn run_downstream(
    plan: &Plan,
    source_topic: &str,
    repartition: &Repartition,
    upstreams: Vec<Upstream>,
    out: &mut RefOutputs,
) -> Result<(), ReferenceError> {
    let Some(window) = &plan.window else {
        return Err(ReferenceError::InvalidSpec(
            "a shuffle with no window after it".to_string(),
        ));
    };
    let mut stage = Downstream {
        env: Arc::new(Env::stdlib()),
        plan,
        window,
        windows: Windows::new(window.shape, window.lateness_ms, window.aggregates.len()),
        out,
    };
    let mut downstream_watermark = Some(i128::MAX);
    for upstream in upstreams {
        stage.out.outputs.extend(upstream.out.outputs);
        stage.out.dead_letters.extend(upstream.out.dead_letters);
        stage.out.misplaced.extend(upstream.out.misplaced);
        downstream_watermark = match (downstream_watermark, upstream.watermark) {
            (Some(low), Some(w)) => Some(low.min(w)),
            _ => None,
        };
        for shuffled in upstream.shuffled {
            stage.admit(source_topic, shuffled);
        }
    }
    match downstream_watermark {
        Some(watermark) => stage.fire(repartition, watermark),
        None => Ok(()),
    }
}

/// The global downstream stage while it runs.
struct Downstream<'a> {
    env: Arc<Env>,
    plan: &'a Plan,
    window: &'a WindowOp,
    windows: Windows,
    out: &'a mut RefOutputs,
}

impl Downstream<'_> {
    /// One shuffled event through the stages before the window and into its windows
    /// still open under its upstream watermark, or a dead letter.
    fn admit(&mut self, source_topic: &str, shuffled: Shuffled) {
        let event = Event {
            object: shuffled.object.clone(),
            key: Some(shuffled.key.clone()),
            time_ms: shuffled.time_ms,
            mapped: false,
        };
        // The downstream stages hold no dedupe (refused), so no memory is kept.
        let mut no_memory = vec![BTreeMap::new(); self.plan.downstream().len()];
        let outcome = run_stages(
            &self.env,
            self.plan.downstream(),
            &mut no_memory,
            event,
            shuffled.watermark_before,
            &mut Vec::new(),
        );
        let inputs = match outcome {
            Outcome::Dropped => return,
            Outcome::Failed => None,
            Outcome::Kept(event) => aggregate_inputs(&self.env, self.window, &event.object).ok(),
        };
        match inputs {
            Some(inputs) => self.windows.add(
                &shuffled.key,
                shuffled.time_ms,
                shuffled.watermark_before,
                &inputs,
            ),
            None => self.out.dead_letters.push(RefDeadLetter {
                reason: EXPRESSION_ERROR.to_string(),
                topic: source_topic.to_string(),
                partition: shuffled.partition,
                offset: shuffled.offset,
                payload: Some(shuffled.payload),
                truncated: None,
            }),
        }
    }

    /// Fires every window `watermark` has passed through the stages after the aggregate.
    fn fire(&mut self, repartition: &Repartition, watermark: i128) -> Result<(), ReferenceError> {
        for fired in self.windows.fire(watermark) {
            let (bytes, object) = result_json(self.window, &fired)?;
            let partition = partition_of_key(fired.key.as_bytes(), repartition.partitions);
            let event = Event {
                object,
                key: Some(fired.key),
                time_ms: fired.end - 1,
                mapped: false,
            };
            // The stages after the aggregate hold no dedupe (refused) either.
            let mut no_memory = vec![BTreeMap::new(); self.plan.after.len()];
            let outcome = run_stages(
                &self.env,
                &self.plan.after,
                &mut no_memory,
                event,
                Some(watermark),
                &mut Vec::new(),
            );
            // A route that fails is an expression dead letter like a failing stage.
            let routed = match outcome {
                Outcome::Kept(event) => match route_of(&self.env, &self.plan.routes, &event.object)
                {
                    Ok(route) => Some((event, route)),
                    Err(()) => None,
                },
                Outcome::Dropped => continue,
                Outcome::Failed => None,
            };
            match routed {
                Some((event, route)) => self.out.outputs.push(RefOutput {
                    key: event.key.as_ref().map(|key| key.as_bytes().to_vec()),
                    value: event.value(&bytes),
                    route,
                }),
                None => self.out.dead_letters.push(RefDeadLetter {
                    reason: EXPRESSION_ERROR.to_string(),
                    topic: repartition.topic.clone(),
                    partition,
                    offset: -1,
                    payload: Some(bytes),
                    truncated: None,
                }),
            }
        }
        Ok(())
    }
}
