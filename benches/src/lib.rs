//! weir's benchmarks, measured side by side with the systems users would otherwise pick.
//!
//! `coordinator-bench` starts a 3-member weir coordinator group and a 3-member etcd cluster as
//! real processes on loopback, drives both with the same closed-loop HTTP load generator and
//! the same failover procedure, and prints the figures with their weir/etcd ratios (see
//! docs/BENCHMARKS.md).

// Benchmarks drive real processes, files and sockets: they are tools, not seams.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod bench_main;
pub mod cluster;
pub mod disk;
pub mod etcd;
pub mod failover;
pub mod lifecycle;
pub mod load;
pub mod process;
pub mod report;
pub mod soak_support;
pub mod weir;
pub mod worker;
