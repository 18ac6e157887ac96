//! A weir worker: registers with the coordinator group, holds a lease, and runs the
//! (job, partition) assignments the leader places on it.
//!
//! - `operators`: the operator engine, the pure state machine that runs a job's pipeline
//!   over one partition's records; its module documentation is the specification of
//!   every stage.
//! - `exactly_once`: the exactly-once protocol of one partition: the pure cycle, the
//!   runner that performs its actions through the seams, recovery, the output writer,
//!   the snapshot codec.
//! - `checkpoint_store`: the checkpoint store seam (a directory, memory, and a local redb
//!   copy in front of either).
//! - `control`: the worker's calls to the coordinator group, behind the `ControlPlane`
//!   seam.
//! - `fleet`: the actix actors: the `Supervisor` holding the lease and reconciling
//!   assignments, and a `PartitionActor` per (job, partition).
//! - `rate_limit`: the bounds on reactions to repeated trouble (failure backoff, logs).
//!
//! Kafka is reached only through `weir_broker`'s seam, so the simulation runs this same
//! code over the in-memory model.

// Unit tests make files, sockets and threads freely; production code reaches them
// only through the seams (clippy.toml).
#![cfg_attr(test, allow(clippy::disallowed_methods, clippy::disallowed_types))]

pub mod checkpoint_store;
pub mod control;
pub mod exactly_once;
pub mod fleet;
pub mod metrics;
pub mod operators;
pub mod rate_limit;
pub mod state_inspection;
