//! weir's HTTP client and the pieces of the `weir` command-line tool.

pub mod cli;
pub mod client;
pub mod local;
