//! weir's one HTTP client of the coordinator group. The `weir` CLI and the Rust API client
//! (`weir_api::client`), the worker's control plane (`weir_worker::control`) and the
//! benchmarks' helpers all send through [`GroupClient`]; the simulation's twin of the
//! worker's control plane drives the same policy over its simulated network.
//!
//! The decisions — which member to try, when to follow a "the leader is X" answer, when and
//! how long to wait, when to give up — are the plain state machine
//! `weir_core::leader_client`. This crate is only its driver: it sends over reqwest, reads
//! the tokio clock, draws the backoff's jitter seed and the first member from the entropy
//! seam, sleeps as told, and classifies each attempt into an `Answer`:
//!
//! | what came back | answer |
//! | --- | --- |
//! | no connection (refused, connect timeout) | unreachable |
//! | no response in the attempt's time, or one broken off | no answer (outcome unknown) |
//! | 429 | too many requests, with `Retry-After` in seconds |
//! | 503 naming another member in `x-weir-leader` | not the leader: that member leads |
//! | other 503 | unavailable |
//! | anything else | served (final), naming the leader from `x-weir-leader` |
//!
//! Coordinators forward what a follower cannot serve and name the leader on every answer
//! (`weir_core::wire::LEADER_HEADER`), so after its first answer a client sends straight
//! to the leader. Only an address in the client's own list is followed; any other name is
//! ignored and the request goes on through the members the client was given.

// Unit tests bind sockets freely; production code reaches them only through reqwest.
#![cfg_attr(test, allow(clippy::disallowed_methods, clippy::disallowed_types))]

mod group;

pub use group::{GroupClient, Reply, Request, Timeouts, Unavailable};
