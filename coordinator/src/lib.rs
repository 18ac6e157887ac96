//! A member of weir's coordinator group: the Raft-replicated control plane holding
//! tenants, jobs, placement, worker registrations and checkpoint records.
//!
//! Layout (after openraft's own examples): `raft_types` is the type configuration, `store`
//! the redb log and snapshots, `network` the transport seam, `state` the replicated state
//! machine, `scheduler` and `lease` the leader's pure control logic, `node` ties them into a
//! running coordinator, and `http` is its API surface.

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
