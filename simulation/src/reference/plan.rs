//! A job spec read into what the evaluator runs: the stages before the window, the
//! window with its aggregates, and the stages after them, every expression compiled.

use super::expr::Expr;
use super::windows::Shape;
use super::ReferenceError;
use weir_core::spec::SpecDuration;
use weir_core::spec::{parse_aggregate_call, AggregateFunction, JobSpec, Stage, WindowKind};

/// A stage that runs on one event (or one window result).
pub(crate) enum StageOp {
    Filter(Expr),
    /// Output name and expression, in name order.
    Map(Vec<(String, Expr)>),
    Dedupe {
        key: Expr,
        ttl_ms: i128,
    },
    /// `checked`: the key must hash to the record's source partition (a source declared
    /// `partitioned_by` the key_by relies on).
    KeyBy {
        expr: Expr,
        checked: bool,
    },
}

/// One aggregate output: its name, function and argument (none for `count()`).
pub(crate) struct AggregateOp {
    pub(crate) name: String,
    pub(crate) function: AggregateFunction,
    pub(crate) argument: Option<Expr>,
}

/// The window and its aggregate stage.
pub(crate) struct WindowOp {
    pub(crate) shape: Shape,
    pub(crate) lateness_ms: i128,
    /// In name order, the order results write them.
    pub(crate) aggregates: Vec<AggregateOp>,
}

pub(crate) struct Plan {
    pub(crate) event_time_field: Option<String>,
    pub(crate) max_out_of_orderness_ms: i128,
    /// The stages before the window, or all of them for a stateless job.
    pub(crate) before: Vec<StageOp>,
    pub(crate) window: Option<WindowOp>,
    /// The stages after the aggregate, run on each window result.
    pub(crate) after: Vec<StageOp>,
    /// For a job that shuffles: how many of `before` run upstream (up to and including
    /// the shuffling key_by); the rest run downstream.
    pub(crate) shuffle_after: Option<usize>,
    /// For a checked key_by: the source partition count the key is hashed over.
    pub(crate) source_partitions: Option<u32>,
    /// The routes' predicates, in order: a result goes to the first that holds
    /// (route `i + 1`), else to the sink (route 0).
    pub(crate) routes: Vec<Expr>,
}

/// Where a result goes: `Ok(0)` the sink, `Ok(i)` route `i - 1`; `Err` when a predicate
/// fails (an expression dead letter).
pub(crate) fn route_of(
    env: &std::sync::Arc<cel::Env>,
    routes: &[Expr],
    object: &std::collections::BTreeMap<String, super::json::Json>,
) -> Result<u16, ()> {
    for (index, route) in routes.iter().enumerate() {
        match route.eval(env, object) {
            Ok(cel::Value::Bool(true)) => return Ok(index as u16 + 1),
            Ok(cel::Value::Bool(false)) => {}
            _ => return Err(()),
        }
    }
    Ok(0)
}

impl Plan {
    pub(crate) fn compile(spec: &JobSpec) -> Result<Plan, ReferenceError> {
        let mut plan = Plan {
            event_time_field: spec.source.event_time.clone(),
            max_out_of_orderness_ms: ms(spec.source.max_out_of_orderness_or_zero()),
            before: Vec::new(),
            window: None,
            after: Vec::new(),
            shuffle_after: None,
            source_partitions: None,
            routes: spec
                .routes
                .iter()
                .map(|route| Expr::compile(&route.when))
                .collect::<Result<_, _>>()?,
        };
        let mut stages = spec.pipeline.iter().peekable();
        let mut keyed = false;
        while let Some(stage) = stages.next() {
            let op = match stage {
                Stage::Filter(source) => StageOp::Filter(Expr::compile(source)?),
                Stage::Map(outputs) => StageOp::Map(
                    outputs
                        .iter()
                        .map(|(name, source)| Ok((name.clone(), Expr::compile(source)?)))
                        .collect::<Result<_, ReferenceError>>()?,
                ),
                Stage::Dedupe(dedupe) => StageOp::Dedupe {
                    key: Expr::compile(&dedupe.key)?,
                    ttl_ms: ms(dedupe.ttl),
                },
                Stage::KeyBy(source) => {
                    keyed = true;
                    StageOp::KeyBy {
                        expr: Expr::compile(source)?,
                        checked: false,
                    }
                }
                Stage::Window(window) => {
                    let Some(Stage::Aggregate(outputs)) = stages.next() else {
                        return Err(invalid("a window must be followed by an aggregate"));
                    };
                    if plan.window.is_some() || !keyed {
                        return Err(invalid("one window, after a key_by"));
                    }
                    plan.window = Some(WindowOp {
                        shape: shape(&window.kind)?,
                        lateness_ms: ms(window.allowed_lateness_or_zero()),
                        aggregates: aggregates(outputs)?,
                    });
                    continue;
                }
                Stage::Aggregate(_) => return Err(invalid("an aggregate without its window")),
                Stage::Join(_) => return Err(invalid("a join is evaluated by its own plan")),
            };
            match plan.window {
                None => plan.before.push(op),
                Some(_) => plan.after.push(op),
            }
        }
        Ok(plan)
    }
}

impl Plan {
    /// The stages one source partition runs: all of `before`, or the upstream part of a
    /// job that shuffles.
    pub(crate) fn upstream(&self) -> &[StageOp] {
        &self.before[..self.shuffle_after.unwrap_or(self.before.len())]
    }

    /// The stages between the shuffling key_by and the window (none without a shuffle).
    pub(crate) fn downstream(&self) -> &[StageOp] {
        &self.before[self.shuffle_after.unwrap_or(self.before.len())..]
    }

    /// The op of pipeline stage `index` when it runs before the window: `before` holds
    /// the pipeline's stages up to the window one for one.
    pub(crate) fn before_op(&mut self, index: usize) -> Option<&mut StageOp> {
        self.before.get_mut(index)
    }
}

fn shape(kind: &WindowKind) -> Result<Shape, ReferenceError> {
    Ok(match kind {
        WindowKind::Tumbling(size) => Shape::Tumbling {
            size: positive(*size)?,
        },
        WindowKind::Sliding(sliding) => {
            let size = positive(sliding.size)?;
            let slide = positive(sliding.slide)?;
            // The spec's compile-time refusal; the bound's value is the worker's constant.
            let per_event = (size + slide - 1) / slide;
            if per_event > weir_worker::operators::WINDOWS_PER_EVENT_MAX as i128 {
                return Err(invalid("a sliding window has too many windows per event"));
            }
            Shape::Sliding { size, slide }
        }
        WindowKind::Session(session) => Shape::Session {
            gap: positive(session.gap)?,
        },
    })
}

fn aggregates(
    outputs: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<AggregateOp>, ReferenceError> {
    outputs
        .iter()
        .map(|(name, call)| {
            let call =
                parse_aggregate_call(call).map_err(|message| ReferenceError::BadExpression {
                    expression: call.clone(),
                    message,
                })?;
            Ok(AggregateOp {
                name: name.clone(),
                function: call.function,
                argument: call.argument.as_deref().map(Expr::compile).transpose()?,
            })
        })
        .collect()
}

fn ms(duration: SpecDuration) -> i128 {
    i128::from(duration.as_millis())
}

fn positive(duration: SpecDuration) -> Result<i128, ReferenceError> {
    match ms(duration) {
        0 => Err(invalid("a window duration is zero")),
        ms => Ok(ms),
    }
}

fn invalid(message: &str) -> ReferenceError {
    ReferenceError::InvalidSpec(message.to_string())
}
