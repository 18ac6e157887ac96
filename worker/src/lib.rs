//! A weir worker: registers with the coordinator group, holds a lease, and runs the
//! (job, partition) assignments the leader places on it.
//!
//! So far this crate holds the worker's side of the control plane (`control`): the
//! registration, heartbeat, assignment and checkpoint calls, behind a seam so the
//! simulation can drive the same worker logic.

pub mod control;
