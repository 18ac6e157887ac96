//! weir's HTTP client and the pieces of the `weir` command-line tool.
//!
//! - `client`: the Rust client of the coordinators' HTTP API, moving on across
//!   coordinators and honouring 429s.
//! - `cli`: the `weir` command line, one module per command group (`cli/reference.rs`
//!   renders docs/CLI.md from the definitions).
//! - `local`: `weir local`, the whole system in one process (coordinators on loopback,
//!   workers, the in-memory Kafka model or a real broker).

// The `weir` binary's edge: it reads spec files, creates data directories, binds
// listeners and runs each worker's actix system on a thread of its own.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod cli;
pub mod client;
pub mod local;
pub mod malloc;
