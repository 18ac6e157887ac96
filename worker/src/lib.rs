//! A weir worker: registers with the coordinator group, holds a lease, and runs the
//! (job, partition) assignments the leader places on it.
//!
//! So far this crate holds the worker's side of the control plane (`control`): the
//! registration, heartbeat, assignment and checkpoint calls, behind a seam so the
//! simulation can drive the same worker logic; and the operator engine (`operators`), the
//! pure state machine that runs a job's pipeline over one partition's records.

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
