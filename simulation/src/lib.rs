//! Deterministic simulation of whole weir clusters under faults, in the manner of
//! TigerBeetle's VOPR: the real coordinator and worker code, on one thread, over simulated
//! disks, clocks, a simulated network, the in-memory Kafka model and an in-memory
//! checkpoint store, driven by one seed.
//!
//! - `disk`: redb's storage backend in memory, losing unsynced writes in a crash.
//! - `network`: the Raft transport in memory, with drops, duplicates, delays, partitions.
//! - `clock`: per-node wall clocks on tokio's paused clock, with jumps; seeded entropy.
//! - `cluster`: a coordinator group over those seams; crash and restart of its nodes.
//! - `fleet`: the worker fleet (real supervisors and partition actors) over simulated
//!   seams; `jobs` and `dataflow`: the jobs (a single-stage family, and a multi-stage one
//!   behind `jobs::MULTI_STAGE_JOBS`), their input and the end-of-run output check.
//! - `reference`: the independent evaluator of job specs the outputs are checked against.
//! - `faults`: the seed's fault mix and schedule; `workload`: the clients; `api_load`:
//!   bursts of concurrent writes aimed at the leader; `lifecycle`: the pauses, resumes,
//!   stops and starts a run asks of its jobs.
//! - `checker`: the invariants, one a file; `trace`: the hashed event log; `context`: what
//!   every task of a run shares.
//! - `scenario`: one seeded run, `run_seed` (setup, the fault timeline, one method per
//!   fault kind, the final checks); `shrink`: a failing seed's fewest needed faults.
//! - `cli`: the `weir-sim` binary's flags and seed loop.

// Unit tests make files, sockets and threads freely; production code reaches them
// only through the seams (clippy.toml).
#![cfg_attr(test, allow(clippy::disallowed_methods, clippy::disallowed_types))]

pub mod api_load;
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
pub mod lifecycle;
pub mod network;
pub mod reference;
pub mod scenario;
pub mod shrink;
pub mod trace;
pub mod upgrades;
pub mod workload;

pub use faults::FaultClasses;
pub use scenario::{fault_schedule, run_seed, SimOptions, SimOutcome};
pub use shrink::{shrink, trace_to_first_violation, Shrunk};
