//! The simulation's oracle: an independent, sequential evaluator of weir job specs over
//! one source partition's records, or over a whole job by its stage plan
//! ([`evaluate_job`]). The simulation compares what the real workers committed against
//! what this computes from the same input.
//!
//! It is written from the engine's specification alone — the module comment of
//! `weir_worker::operators` — plus the spec types of `weir_core::spec` (among them the
//! stage plan, `plan_stages`, which says where a job shuffles), the semantics of jobs
//! that shuffle as `job` and `downstream` state them, and the dead-letter wire form of
//! `DeadLetter::to_json`; none of the engine's implementation is reused, so a bug there
//! is not copied here. Clarity beats speed: BTreeMaps, plain loops, one record
//! at a time.
//!
//! - `json`: decoding with the spec's rules, and compact writing.
//! - `event_time`: the event-time field and RFC 3339.
//! - `expr`: CEL over the current object, JSON to CEL and back, key texts.
//! - `exact_sum` and `aggregate`: accumulators and the values windows write.
//! - `windows`: tumbling, sliding and session windows, lateness and firing.
//! - `plan` and `evaluator`: the spec read into stages, and the per-record loop (for a
//!   job that shuffles, its upstream stage).
//! - `job`, `downstream` and `routing`: a whole job by its stage plan; the global stage
//!   after a shuffle; Kafka's murmur2 partitioner.
//! - `join`: a whole job with an interval join, both of its sides and the pairs.
//! - `dead_letter`: reading a dead-letter record back for comparison.
//!
//! # Where it stops short of the specification
//!
//! - Expressions are compiled with `weir_core::spec::compile_expression`, the function
//!   spec validation uses; the engine's own syntax-tree depth bound
//!   (`EXPRESSION_DEPTH_MAX`) is not modelled, as validated specs stay within it.
//! - The `a.b` rule (a field literally named `a.b` wins over field `b` of field `a`) is the
//!   `cel` crate's own qualified-name resolution: every field is bound under its full name.
//! - The state bounds (`KEYS_PER_PARTITION_MAX` and the others) are not modelled: the
//!   simulation stays far below them, and reaching one stops the worker's pipeline.
//! - Window bounds beyond i64 (impossible with validated window sizes and event times
//!   within ±8.64e15 ms) are reported as [`ReferenceError::Unsupported`].
//! - Ambiguity resolved here: when a stage after the aggregate fails on a result that an
//!   earlier `map` after the aggregate already rewrote, the dead letter's payload is the
//!   result as fired (the spec: "the result's JSON as payload"); the worker agrees (see
//!   the differential tests' families).

mod aggregate;
mod dead_letter;
mod downstream;
mod evaluator;
mod event_time;
mod exact_sum;
mod expr;
mod job;
mod join;
mod json;
mod plan;
mod routing;
mod windows;

#[cfg(test)]
mod job_tests;
#[cfg(test)]
mod tests;
mod versions;

pub use dead_letter::parse_dead_letter;
pub use job::evaluate_job;
pub use join::{evaluate_join_job, JoinSideInput};
pub use routing::partition_of_key;
pub use versions::{evaluate_upgraded_partition, RefVersion};

use weir_core::spec::JobSpec;

/// One source record as the broker stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefRecord {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// One output the evaluator expects on the sink topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RefOutput {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    /// Where it goes: 0 the sink, `i` the spec's route `i - 1`.
    pub route: u16,
}

/// One expected dead letter, without the free-text `detail`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RefDeadLetter {
    pub reason: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The payload; for a letter cut to fit (`truncated`), what the letter kept of it when
    /// read back, and `None` once compared ([`as_written`]).
    pub payload: Option<Vec<u8>>,
    /// For a letter cut to fit the dead-letter topic: the payload's full length and its
    /// SHA-256 (hex), which the letter carries instead of the whole payload.
    pub truncated: Option<(u64, String)>,
}

/// The largest dead letter the simulated dead-letter topics accept: the smaller of the
/// model's writer and topic limits, less the framing the worker keeps free (the topics
/// keep Kafka's default `max.message.bytes`).
pub const DEAD_LETTER_RECORD_BYTES_MAX: usize = {
    let writer = weir_broker::memory::WRITER_MESSAGE_BYTES_MAX;
    let topic = weir_broker::memory::TOPIC_MESSAGE_BYTES_DEFAULT;
    let limit = if writer < topic { writer } else { topic };
    limit - weir_broker::RECORD_FRAMING_BYTES_MAX
};

/// Room the reference allows for a dead letter's fields besides its payload when it
/// decides whether the whole letter fits. The detail is free text, so a payload whose
/// encoded size lies within this of the limit is ambiguous; the simulation's records stay
/// far from it.
pub const DEAD_LETTER_ENVELOPE_BYTES: usize = 4_096;

/// A dead letter as the worker writes it, for comparison: one whose payload (as a JSON
/// string when UTF-8, else base64) cannot fit within `max_bytes` with its envelope is
/// cut to fit, keeping the payload's length and SHA-256 (docs/ARCHITECTURE.md, records
/// near the size limit: a dead letter over its topic's limit is marked truncated).
pub fn as_written(mut letter: RefDeadLetter, max_bytes: usize) -> RefDeadLetter {
    use sha2::{Digest, Sha256};
    let Some(payload) = &letter.payload else {
        return letter;
    };
    let encoded = match std::str::from_utf8(payload) {
        Ok(text) => serde_json::to_string(text).map_or(usize::MAX, |s| s.len()),
        Err(_) => payload.len().div_ceil(3) * 4,
    };
    if encoded.saturating_add(DEAD_LETTER_ENVELOPE_BYTES) <= max_bytes {
        return letter;
    }
    letter.truncated = Some((payload.len() as u64, hex::encode(Sha256::digest(payload))));
    letter.payload = None;
    letter
}

/// Everything one partition's records (or a whole job's) produce, each list in emission
/// order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefOutputs {
    pub outputs: Vec<RefOutput>,
    pub dead_letters: Vec<RefDeadLetter>,
    /// Records a key_by found on a partition other than the one their key hashes to, on
    /// a source declared `partitioned_by`: the engine fails the job at the first.
    pub misplaced: Vec<RefMisplaced>,
}

/// A record on the wrong partition of a source declared `partitioned_by`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefMisplaced {
    pub partition: i32,
    pub offset: i64,
    /// The key text the key_by computed.
    pub key: String,
    /// `(murmur2(key) & 0x7fffffff) % source partitions`.
    pub expected_partition: i32,
}

/// Why the reference cannot evaluate a spec or read a dead letter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// An expression the spec carries does not compile.
    #[error("expression `{expression}` does not compile: {message}")]
    BadExpression { expression: String, message: String },
    /// The pipeline's shape is not one validation accepts.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// The spec or input uses something the reference does not model.
    #[error("not supported by the reference evaluator: {0}")]
    Unsupported(String),
    /// A dead-letter record is not in the form the worker writes.
    #[error("malformed dead letter: {0}")]
    BadDeadLetter(String),
}

/// Evaluates `spec` over one source partition's records of `topic`, in offset order, as
/// a job runs that does not shuffle (every job, until the multi-stage runtime runs stage
/// plans; [`evaluate_job`] follows them).
pub fn evaluate_partition(
    spec: &JobSpec,
    topic: &str,
    records: &[RefRecord],
) -> Result<RefOutputs, ReferenceError> {
    let plan = plan::Plan::compile(spec)?;
    let mut evaluator = evaluator::Evaluator::new(plan, topic);
    for record in records {
        evaluator.process(record)?;
    }
    Ok(evaluator.finish())
}
