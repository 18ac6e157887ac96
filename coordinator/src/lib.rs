//! A member of weir's coordinator group: the Raft-replicated control plane holding
//! tenants, jobs, placement, worker registrations and checkpoint records.
//!
//! Layout (after openraft's own examples), one concept a module:
//! - `raft_types`: the type configuration; `runtime`: openraft's async runtime, its
//!   election timeouts drawn from a generator the simulation seeds.
//! - `store`: the Raft log, vote and snapshots in one redb database (the disk seam).
//! - `network`: the transport seam between members, its adapter to openraft and the
//!   production HTTP transport.
//! - `state`: the replicated control state, a plain `apply(command) -> result` machine.
//! - `scheduler` and `lease`: the leader's pure decisions (placement, worker leases).
//! - `node`: `Coordinator`, which ties them into a running member: start, the leader's
//!   control loop, writes, linearizable reads, membership. `group_commit` batches the
//!   writes that queue up into one log entry; `write_error` is why a write was not
//!   applied, shared by both and by their callers.
//! - `worker_calls`: the workers' calls (register, heartbeat, checkpoint reports) as
//!   plain functions, run by the HTTP API and the simulation alike.
//! - `http`: the API surface (routes, auth, admission, errors) and the Raft RPC endpoint.
//! - `server`: the production driver (redb file, HTTP transport, OS clock and entropy,
//!   listeners) that `weir coordinator`, `weir local` and the tests start.

// Unit tests make files, sockets and threads freely; production code reaches them
// only through the seams (clippy.toml).
#![cfg_attr(test, allow(clippy::disallowed_methods, clippy::disallowed_types))]

/// Planted bugs live in the core crate so that the worker can check them too.
pub use weir_core::bugs;
pub mod group_commit;
pub mod http;
pub mod lease;
pub mod network;
pub mod node;
pub mod raft_types;
pub mod runtime;
pub mod scheduler;
pub mod server;
pub mod state;
pub mod store;
pub mod worker_calls;
pub mod write_error;

/// Describes every metric a coordinator records, so that `/metrics` carries a `# HELP`
/// line and a unit for each. Called once, when the process's recorder is installed.
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!("weir_raft_term", "The Raft term this member is in.");
    describe_gauge!(
        "weir_raft_is_leader",
        "1 while this member is the group's leader, else 0."
    );
    describe_gauge!(
        "weir_raft_applied_index",
        "Index of the last log entry this member applied."
    );
    describe_counter!(
        "weir_raft_leader_changes_total",
        "Times this member saw the leader change."
    );
    describe_counter!(
        "weir_leader_elected_total",
        "Times this member became leader."
    );
    describe_histogram!(
        "weir_raft_commit_latency_seconds",
        Unit::Seconds,
        "Time from proposing a write to its being applied."
    );
    describe_histogram!(
        "weir_raft_append_batch_entries",
        Unit::Count,
        "Log entries written per fsync (group commit)."
    );
    describe_histogram!(
        "weir_raft_batch_commands",
        Unit::Count,
        "Commands carried per batched log entry."
    );
    describe_counter!(
        "weir_raft_batches_unanswered_total",
        "Batches openraft did not answer in time, answered unavailable."
    );
    describe_counter!(
        "weir_raft_snapshots_built_total",
        "Snapshots of the control state this member built."
    );
    describe_gauge!(
        "weir_raft_snapshot_bytes",
        Unit::Bytes,
        "Size of the newest snapshot this member built."
    );
    describe_histogram!(
        "weir_api_request_seconds",
        Unit::Seconds,
        "Time to answer an HTTP API request, by route, method and status."
    );
    describe_counter!(
        "weir_api_shed_total",
        "API requests refused with 429 because an in-flight bound was reached."
    );
    describe_gauge!("weir_jobs", "Jobs in the control state, by state.");
    describe_gauge!(
        "weir_workers_live",
        "Registered workers whose lease has not expired."
    );
}
