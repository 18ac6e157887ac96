//! Deterministic simulation of whole weir clusters under faults, in the manner of
//! TigerBeetle's VOPR: the real coordinator code, on one thread, over simulated disks,
//! clocks and a simulated network, driven by one seed.
//!
//! - `disk`: redb's storage backend in memory, losing unsynced writes in a crash.
//! - `network`: the Raft transport in memory, with drops, duplicates, delays, partitions.
//! - `clock`: per-node wall clocks on tokio's paused clock, with jumps; seeded entropy.
//! - `cluster`: a coordinator group over those seams; crash and restart of its nodes.
//! - `faults`: the seed's fault mix and schedule; `workload`: the clients.
//! - `checker`: the invariants, one a file; `trace`: the hashed event log.
//! - `scenario`: one seeded run, `run_seed`.
//!
//! A failing seed prints the command that replays it (`SimOutcome::reproduce`);
//! `cargo run -p weir-simulation --example one_seed -- <seed>` runs one seed and, with
//! `WEIR_SIM_TRACE=1`, prints its trace.

// Unit tests make files, sockets and threads freely; production code reaches them
// only through the seams (clippy.toml).
#![cfg_attr(test, allow(clippy::disallowed_methods, clippy::disallowed_types))]

pub mod checker;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod context;
pub mod dataflow;
pub mod disk;
pub mod faults;
pub mod fleet;
pub mod jobs;
pub mod network;
pub mod reference;
pub mod scenario;
pub mod shrink;
pub mod trace;
pub mod workload;

pub use faults::FaultClasses;
pub use scenario::{fault_schedule, run_seed, SimOptions, SimOutcome};
pub use shrink::{shrink, trace_to_first_violation, Shrunk};
