//! The job spec (docs/JOB_SPEC.md): its model, parsing from YAML or JSON, and
//! validation. A spec is checked completely at submit time — names, topics, durations, the
//! shape of the pipeline, and every CEL expression compiled — so that a job the coordinator
//! accepts is one a worker can run, and a rejected one names the field to fix.
//!
//! - [`model`]: the spec's top level, source and sink.
//! - [`stage`]: pipeline stages and their one-key-map wire form.
//! - [`duration`]: durations written like `5s`.
//! - [`cel`]: compiling CEL expressions, shared by validation and the worker.
//! - [`aggregate`]: reading `count()`, `sum(x)` and the other aggregate calls.
//! - [`parse`] and [`validate`]: from request body to a checked [`JobSpec`].
//! - [`join`]: the settings and checks of an interval join, the `join` stage.
//! - [`identity`] and [`upgrade`]: the stable identity of stateful stages, and whether
//!   (and how) a new version of a job carries the old version's state.
//! - [`stages`]: the chain of stages and repartition topics a job will run as (planned,
//!   not yet run).

pub mod aggregate;
pub mod cel;
pub mod duration;
pub mod error;
pub mod identity;
pub mod join;
pub mod model;
pub mod parse;
pub mod stage;
pub mod stages;
pub mod upgrade;
pub mod validate;

#[cfg(test)]
mod fixtures;

pub use aggregate::{parse_aggregate_call, AggregateCall, AggregateFunction};
pub use cel::compile_expression;
pub use duration::{ParseDurationError, SpecDuration};
pub use error::SpecError;
pub use join::{Join, JoinKind};
pub use model::{Delivery, Format, JobSpec, Sink, Source};
pub use parse::parse_job_spec;
pub use stage::{Dedupe, Session, Sliding, Stage, Window, WindowKind};
pub use validate::validate;
