//! weir's HTTP client and the pieces of the `weir` command-line tool.

// The `weir` binary's edge: it reads spec files, creates data directories, binds
// listeners and runs each worker's actix system on a thread of its own.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod cli;
pub mod client;
pub mod local;
pub mod malloc;
