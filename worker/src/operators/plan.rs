//! What a compiled pipeline is made of: the [`Plan`] that never changes while it runs and
//! the partition's [`State`] that every record moves forward, with the watermark they give.
//! In a file of their own so the pipeline (which runs them) and the snapshot codec (which
//! writes and reads them) both build on them without importing each other.

use super::aggregate::Input;
use super::compile::{compile_expr, millis, CompileError};
use super::dedupe::DedupeMemory;
use super::expr::{CelEnv, Expr};
use super::json::FieldSpan;
use super::limits::{PipelineError, WINDOWS_PER_EVENT_MAX};
use super::record::write_json_str;
use super::role::{LatenessRule, PipelineRole};
use super::stages::Step;
use super::window::{Assigner, Fired, Windows};
use weir_core::spec::{parse_aggregate_call, AggregateFunction};

/// Why a snapshot cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// The spec itself does not compile.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// The snapshot was taken of a pipeline with other stages or event-time settings.
    #[error("the snapshot belongs to a different pipeline (its stages or event time changed)")]
    SpecMismatch,
    /// The snapshot's format version is unknown to this build.
    #[error("the snapshot has format version {0}, which this build cannot read")]
    UnknownVersion(u32),
    /// The bytes are not a snapshot this pipeline could have written.
    #[error("the snapshot is corrupt: {0}")]
    Corrupt(String),
    /// An older version's state cannot be carried into the new version's pipeline.
    #[error("the state cannot be carried into the upgraded pipeline: {0}")]
    Upgrade(String),
}

/// What never changes while a pipeline runs.
pub(crate) struct Plan {
    pub(crate) env: CelEnv,
    pub(crate) event_time_field: Option<String>,
    pub(crate) max_out_of_orderness_ms: i64,
    /// Stages before the window (all of them when there is none).
    pub(crate) pre: Vec<Step>,
    pub(crate) window: Option<WindowPlan>,
    /// Stages after the aggregate, run on each window result.
    pub(crate) post: Vec<Step>,
    /// The ttl of each dedupe memory, by memory index.
    pub(crate) dedupe_ttls_ms: Vec<i64>,
    pub(crate) fingerprint: [u8; 32],
    /// The job's source topic, named in the dead letters of a downstream stage.
    pub(crate) source_topic: String,
    /// The part of the job's pipeline this plan runs.
    pub(crate) role: PipelineRole,
    /// An upstream task's lateness rule, from the window after its shuffle.
    pub(crate) lateness: Option<LatenessRule>,
    /// The spec's routes' predicates, in order (none upstream of a shuffle, which never
    /// writes the sink).
    pub(crate) routes: Vec<super::filter::Filter>,
    /// A source declared `partitioned_by` the window's key, with this many partitions:
    /// every keyed event must be on the partition Kafka's keyed partitioner gives its key.
    pub(crate) partitioned_by_check: Option<u32>,
    /// Downstream of a join: the join's rules (`pre` then holds the stages after it).
    pub(crate) join: Option<super::join::JoinPlan>,
}

#[derive(Debug)]
pub(crate) struct WindowPlan {
    pub(crate) assigner: Assigner,
    pub(crate) allowed_lateness_ms: i64,
    pub(crate) aggregates: Vec<AggregatePlan>,
}

impl WindowPlan {
    /// The window stage at `window_field` with its aggregate stage at `aggregate_field`.
    pub(crate) fn compile(
        window_field: &str,
        spec_window: &weir_core::spec::Window,
        aggregate_field: &str,
        outputs: &std::collections::BTreeMap<String, String>,
        env: &cel::Env,
    ) -> Result<WindowPlan, CompileError> {
        let assigner = Assigner::from_spec(&spec_window.kind);
        debug_assert!(
            assigner.windows_per_event() <= WINDOWS_PER_EVENT_MAX,
            "{window_field}: validation bounds the windows per event"
        );
        let mut aggregates = Vec::with_capacity(outputs.len());
        for (name, call_source) in outputs {
            let field = format!("{aggregate_field}.{name}");
            let call =
                parse_aggregate_call(call_source).map_err(|message| CompileError::Expression {
                    field: field.clone(),
                    message,
                })?;
            let argument = match &call.argument {
                Some(source) => Some(compile_expr(&field, source, env)?),
                None => None,
            };
            let mut json_prefix = b",".to_vec();
            write_json_str(&mut json_prefix, name);
            json_prefix.push(b':');
            aggregates.push(AggregatePlan {
                name: name.clone(),
                json_prefix,
                field,
                function: call.function,
                argument,
            });
        }
        Ok(WindowPlan {
            assigner,
            allowed_lateness_ms: millis(spec_window.allowed_lateness_or_zero()),
            aggregates,
        })
    }

    pub(crate) fn functions(&self) -> Vec<AggregateFunction> {
        self.aggregates.iter().map(|a| a.function).collect()
    }
}

#[derive(Debug)]
pub(crate) struct AggregatePlan {
    pub(crate) name: String,
    /// `,"<name>":`, written before the value in a result.
    pub(crate) json_prefix: Vec<u8>,
    pub(crate) field: String,
    pub(crate) function: AggregateFunction,
    pub(crate) argument: Option<Expr>,
}

impl Plan {
    /// Which output a result goes to ([`OutputRecord::route`](super::record::OutputRecord)):
    /// the first route whose predicate holds, else the sink (0). The error is an expression
    /// dead letter's detail.
    pub(crate) fn route_of(&self, obj: &super::object::Obj<'_>) -> Result<u16, String> {
        for (index, route) in self.routes.iter().enumerate() {
            if route.keeps(obj, &self.env)? {
                return Ok(index as u16 + 1);
            }
        }
        Ok(0)
    }
}

/// What a partition's pipeline remembers between records.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) max_event_ms: Option<i64>,
    pub(crate) dedupe: Vec<DedupeMemory>,
    pub(crate) windows: Option<Windows>,
    pub(crate) failed: Option<PipelineError>,
    /// Whether the changes tracked since they were last taken are every difference from
    /// the state as then written (false for a new or restored state: write it whole).
    pub(crate) changes_complete: bool,
    // Buffers kept across records so the hot path does not allocate.
    pub(crate) field_spans: Vec<FieldSpan>,
    pub(crate) fired: Vec<Fired>,
    pub(crate) inputs: Vec<Option<Input>>,
    /// A downstream task's latest watermark from each upstream task, by upstream index
    /// (`None` until its first marker); empty in other roles.
    pub(crate) upstream_watermarks: Vec<Option<i64>>,
    /// Downstream of a join: the join's state and every upstream task's watermark.
    pub(crate) join: Option<super::join_downstream::JoinDownstream>,
}

impl State {
    pub(crate) fn new(plan: &Plan) -> State {
        State {
            max_event_ms: None,
            dedupe: vec![DedupeMemory::default(); plan.dedupe_ttls_ms.len()],
            windows: plan.window.as_ref().map(|window| {
                Windows::new(
                    window.assigner,
                    window.allowed_lateness_ms,
                    window.functions(),
                )
            }),
            failed: None,
            changes_complete: false,
            field_spans: Vec::new(),
            fired: Vec::new(),
            inputs: Vec::new(),
            upstream_watermarks: match plan.role {
                PipelineRole::Downstream { upstreams, .. } => vec![None; upstreams as usize],
                _ => Vec::new(),
            },
            join: match (plan.role, plan.join) {
                (
                    PipelineRole::JoinDownstream {
                        left_upstreams,
                        right_upstreams,
                        ..
                    },
                    Some(join),
                ) => Some(super::join_downstream::JoinDownstream::new(
                    join,
                    left_upstreams,
                    right_upstreams,
                )),
                _ => None,
            },
        }
    }
}

/// The least of upstream tasks' watermarks: none while any of them has sent none (or there
/// are none). A downstream stage's watermark, and each side's of a join.
pub(crate) fn least_watermark(watermarks: &[Option<i64>]) -> Option<i64> {
    if watermarks.is_empty() {
        return None;
    }
    watermarks
        .iter()
        .try_fold(i64::MAX, |least, w| w.map(|w| least.min(w)))
}

/// The partition's watermark: the largest event time seen minus `max_out_of_orderness`;
/// downstream of a shuffle, the least of every upstream task's (none until each has sent
/// one).
pub(crate) fn watermark(plan: &Plan, state: &State) -> Option<i64> {
    if let Some(join) = &state.join {
        return join.watermark();
    }
    if let PipelineRole::Downstream { .. } = plan.role {
        if weir_core::bugs::planted(weir_core::bugs::PlantedBug::DownstreamWatermarkNotMin) {
            return state.upstream_watermarks.iter().flatten().copied().max();
        }
        return least_watermark(&state.upstream_watermarks);
    }
    state
        .max_event_ms
        .map(|max| max - plan.max_out_of_orderness_ms)
}
