//! A pipeline's record-at-a-time stages as compiled [`Step`]s, and [`run_steps`], which
//! takes one event (or one window result) through a list of them. Each stage kind has a
//! file of its own, named as the job spec names it: `filter.rs`, `map.rs`, `dedupe.rs`
//! (with its memory), `key_by.rs`; the `window` and `aggregate` stages are `window.rs`
//! and `aggregate.rs`. A `match` over the kinds, not a trait object: no dynamic call and
//! no allocation per record beyond what a stage itself needs.

use std::borrow::Cow;

use super::dedupe::{Dedupe, DedupeMemory};
use super::expr::CelEnv;
use super::filter::Filter;
use super::key_by::KeyBy;
use super::limits::PipelineError;
use super::map::Map;
use super::object::Obj;
use super::record::DeadLetterReason;

/// One compiled stage before or after the window.
#[derive(Debug)]
pub(crate) enum Step {
    Filter(Filter),
    Map(Map),
    Dedupe(Dedupe),
    KeyBy(KeyBy),
}

/// Where an event (or a window result) is after the stages.
pub(crate) enum Flow<'x> {
    /// Still in the pipeline: its current object and key.
    Continue(Obj<'x>, Option<Cow<'x, str>>),
    /// Dropped by a filter or as a repeat.
    Dropped,
    /// Failed: a dead letter.
    Failed(DeadLetterReason, String),
}

/// Runs `obj` (with `key`, at `event_ms`) through `steps`, with the watermark as it was
/// before this event. The first drop or failure ends its way.
pub(crate) fn run_steps<'x>(
    steps: &'x [Step],
    env: &CelEnv,
    dedupe: &mut [DedupeMemory],
    mut obj: Obj<'x>,
    mut key: Option<Cow<'x, str>>,
    event_ms: i64,
    watermark_ms: Option<i64>,
) -> Result<Flow<'x>, PipelineError> {
    let failed = |detail: String| Ok(Flow::Failed(DeadLetterReason::ExpressionError, detail));
    for step in steps {
        match step {
            Step::Filter(filter) => match filter.keeps(&obj, env) {
                Ok(true) => {}
                Ok(false) => return Ok(Flow::Dropped),
                Err(detail) => return failed(detail),
            },
            Step::Map(map) => match map.apply(&obj, env) {
                Ok(mapped) => obj = mapped,
                Err(detail) => return failed(detail),
            },
            Step::Dedupe(stage) => match stage.admit(dedupe, &obj, env, event_ms, watermark_ms)? {
                Ok(true) => {}
                Ok(false) => return Ok(Flow::Dropped),
                Err(detail) => return failed(detail),
            },
            Step::KeyBy(key_by) => match key_by.key(&obj, env) {
                Ok(text) => key = Some(text),
                Err(detail) => return failed(detail),
            },
        }
    }
    Ok(Flow::Continue(obj, key))
}
