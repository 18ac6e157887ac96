//! weir's shared vocabulary: the identifiers, the job spec with its validation, the HTTP
//! API's wire types, and the seams (clock, randomness) through which coordinator and worker
//! logic reach the outside world, so the simulation can drive the same code.
//!
//! - `ids`: the identifier newtypes (`JobId`, `PartitionId`, `Epoch`, `CheckpointId`, ...).
//! - `spec`: the job spec: model, the stage kinds (`spec/stage.rs`), parsing from
//!   YAML or JSON, validation naming the field, CEL compiled up front.
//! - `wire`: the JSON bodies of the HTTP API.
//! - `routing`: Kafka's keyed partitioner (murmur2), for shuffles and `partitioned_by`.
//! - `seams`: the `Clock` and `Entropy` seams.
//! - `bugs`: the planted bugs the simulation's self-test switches on; `cli_error`: one
//!   sentence from a clap error, for both binaries.

// Unit tests make files, sockets and threads freely; production code reaches them
// only through the seams (clippy.toml).
#![cfg_attr(test, allow(clippy::disallowed_methods, clippy::disallowed_types))]

pub mod bugs;
pub mod cli_error;
#[cfg(any(test, feature = "golden-files"))]
pub mod golden;
pub mod ids;
pub mod leader_client;
pub mod routing;
pub mod seams;
pub mod spec;
pub mod wire;
