//! The worker benches: what one core of the operator engine does without a broker
//! (`operators-bench`), and what the exactly-once runners do end to end through a real
//! Kafka, how fast a killed partition recovers, and how much memory an idle worker holds
//! (`pipeline-bench`). Every figure is reported against a baseline measured in the same
//! run: serde_json decoding the same records, and a plain rdkafka copy loop.
//!
//! - `nexmark` — the bid events, generated up front from a seed;
//! - `jobs` — the job specs measured;
//! - `operators` — the engine on one thread, against serde_json;
//! - `libraries` — the filter-map job built from JSON and CEL libraries, for the A/B of
//!   the engine's hand-written paths;
//! - `kafka` — the broker process, filling topics, and the copy-loop baseline;
//! - `control` — an in-process control plane that accepts every checkpoint;
//! - `e2e` — runners over a pre-filled topic;
//! - `recovery` — kill and recover one partition of a live stream;
//! - `idle` — resident memory of an idle `weir worker` process;
//! - `report` — the tables and the goals;
//! - `thread` — blocking work awaited from the async main;
//! - `tuned` — the experiment that led weir's reader to set `fetch.queue.backoff.ms`;
//!   kept to try other values (`--readers tuned`).

pub mod cluster_recovery;
pub mod control;
pub mod e2e;
pub mod idle;
pub mod jobs;
pub mod kafka;
pub mod libraries;
pub mod nexmark;
pub mod operators;
pub mod recovery;
pub mod report;
pub mod thread;
pub mod tuned;
