//! The exactly-once protocol for one (job, partition) (docs/ARCHITECTURE.md,
//! "Exactly-once, per partition"). A `PartitionRunner` reads its source partition, runs the
//! job's pipeline, writes outputs and dead letters inside a Kafka transaction, and every
//! `checkpoint_interval`, at a record boundary:
//!
//! 1. writes the pipeline's state snapshot to the checkpoint store, named by the next
//!    source offset, and waits until it is durable;
//! 2. records "prepared c" (offset, snapshot location) in the coordinator group, which
//!    refuses it unless this worker owns the partition at this epoch;
//! 3. commits the Kafka transaction together with the source offset
//!    (`send_offsets_to_transaction`): the commit point;
//! 4. records "committed c".
//!
//! Recovery, on any worker: creating the transactional writer fences the previous owner
//! (same transactional id) and aborts what it left open; the committed group offset says
//! where the last commit point was, and the snapshot stored under that offset is exactly the
//! state the committed outputs were computed from. Restore it and read on from there.
//!
//! Where each part lives:
//! - `cycle.rs`: the protocol's decisions as a pure state machine (events in, actions out,
//!   no I/O), with `plan_recovery`; its table tests and exhaustive explorer beside it;
//! - `runner.rs`: the driver, performing the cycle's actions through the seams (the
//!   broker, the checkpoint store, the control plane; `now_ms` given by the caller);
//! - `recovery.rs`: fencing, finding the commit point and restoring its state;
//! - `output_writer.rs`: results and dead letters into the open transaction, within the
//!   topics' size limits;
//! - `snapshot_codec.rs`: the stored snapshot's bytes;
//! - `error.rs`: why a runner stopped.

pub mod cycle;
mod error;
mod output_writer;
mod recovery;
mod runner;
pub mod snapshot_codec;
pub mod stage_task;

pub use error::PartitionError;
pub use runner::PartitionRunner;

use std::sync::{Arc, Mutex};
use weir_core::bugs::{planted, PlantedBug};
use weir_core::ids::{CheckpointId, Epoch, JobId, PartitionId, WorkerId};
use weir_core::spec::JobSpec;
use weir_core::wire::RestorePoint;

/// Records read and processed per step: the unit of batching between Kafka and operators.
pub const POLL_BATCH_RECORDS_MAX: usize = 2_048;
/// Upstream of a shuffle, partial aggregates are sent early once this many windows hold
/// some: a bound on the memory they take between checkpoints.
pub const PARTIAL_WINDOWS_FLUSH_AT: usize = 100_000;
/// How long one poll waits for the first record.
pub const POLL_WAIT_MS: u64 = 50;
/// How long an idle partition goes without a commit before it commits its unchanged source
/// offset again, in an otherwise empty transaction. Kafka deletes the committed offsets of a
/// group that has no members (weir assigns partitions itself) once they are
/// `offsets.retention.minutes` old (7 days by default), and a partition that had no input
/// for that long would otherwise lose its commit point.
pub const OFFSETS_REFRESH_INTERVAL_MS: u64 = 3_600_000;
/// The size a dead letter is cut to when the broker refused one already cut to the topic's
/// limit (a limit that changed, or was misread): small enough for any Kafka setting.
pub const DEAD_LETTER_FALLBACK_BYTES: usize = 64 * 1024;

/// The transactional id of `partition` of `job`: every owner's, and the one a fence duty
/// fences (creating a writer with it aborts what an earlier owner left open).
pub fn transactional_id(job: JobId, partition: PartitionId) -> String {
    format!("weir-{job}-{partition}")
}

/// The consumer group whose committed offsets mark job `job`'s commit points: one
/// committed offset per task's input partition, written inside the task's transactions.
pub fn group_of(job: JobId) -> String {
    format!("weir-job-{job}")
}

/// What one partition runs.
#[derive(Debug, Clone)]
pub struct PartitionConfig {
    pub worker: WorkerId,
    pub job: JobId,
    pub partition: PartitionId,
    pub epoch: Epoch,
    pub spec: JobSpec,
    /// Records read and processed per step, at most `POLL_BATCH_RECORDS_MAX`.
    pub poll_batch_records: usize,
    /// The newest checkpoint id the group has recorded as committed for the partition:
    /// this runner's ids start above it even if the state it restores carries an older id
    /// (a local copy, or a snapshot a fenced owner rewrote at the same offset), since the
    /// group refuses ids that are not newer.
    pub committed_checkpoint: Option<CheckpointId>,
    /// The partition counts of the job's repartition topics as the group recorded them;
    /// empty for a job of one stage. With the task id (`partition`), they say which
    /// stage the task runs (`stage_task.rs`).
    pub repartitions: Vec<u32>,
    /// How many times the job's downstream stage was rescaled: which repartition topic
    /// the job's stages use now.
    pub repartition_generation: u32,
    /// The job was started from a savepoint: recovery restores this pin unless Kafka's
    /// commit point is a checkpoint of the restored run (newer than its
    /// `after_checkpoint`).
    pub restore: Option<RestorePoint>,
    /// What pruning must keep, as the group last said; `None` for a runner on its own
    /// (tests, benchmarks), which prunes all the cycle allows.
    pub pins: Option<SharedPins>,
    /// For a job with a join: the source's and the join topic's partition counts as the
    /// group planned the job (`WorkerAssignment.join_upstreams`); `None` reads them from
    /// the broker.
    pub join_upstreams: Option<(u32, u32)>,
}

/// What the group says a partition's pruning must keep: snapshots at or after `below`
/// (the committed cut the group records; a savepoint the worker has not heard of yet pins
/// a cut there or later) and at the offsets savepoints pin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrunePins {
    /// Only snapshots before this offset may go; none while `None`.
    pub below: Option<i64>,
    /// Offsets pinned by savepoints or a pending restore, sorted.
    pub keep: Vec<i64>,
}

/// [`PrunePins`] shared between the supervisor, which sets them from every assignments
/// answer, and the partition's runner, which reads them at every prune.
#[derive(Debug, Clone, Default)]
pub struct SharedPins(Arc<Mutex<PrunePins>>);

impl SharedPins {
    /// Pins starting as `pins`.
    pub fn new(pins: PrunePins) -> Self {
        SharedPins(Arc::new(Mutex::new(pins)))
    }

    /// Replaces the pins with what the group says now.
    pub fn set(&self, pins: PrunePins) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = pins;
    }

    /// The pins as last set.
    pub fn get(&self) -> PrunePins {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl PartitionConfig {
    /// The transactional id shared by every owner of this partition, so that a new owner
    /// fences the old one.
    pub fn transactional_id(&self) -> String {
        if planted(PlantedBug::SkipFencing) {
            return format!("weir-{}-{}-{}", self.job, self.partition, self.epoch);
        }
        transactional_id(self.job, self.partition)
    }

    /// The consumer group whose committed offsets mark the job's commit points.
    pub fn group(&self) -> String {
        group_of(self.job)
    }
}

/// Counters of one runner since it started, for metrics and progress displays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionCounters {
    pub records_in: u64,
    pub records_out: u64,
    pub dead_letters: u64,
    pub checkpoints: u64,
}
