//! What each partition of a worker is doing: the board its partition actors write to and
//! `weir local` and the supervisor read, in a file of its own so the actors and the
//! supervisor do not import each other for it.

use crate::checkpoint_store::CheckpointStore;
use crate::control::ControlPlane;
use crate::exactly_once::{PartitionConfig, PartitionCounters, PartitionError, PartitionRunner};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use weir_broker::Broker;
use weir_core::ids::{Epoch, JobId, PartitionId};

/// What one partition is doing, as shown by `weir local` and the worker's logs.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionStatus {
    pub job: JobId,
    pub partition: PartitionId,
    pub epoch: Epoch,
    pub next_offset: i64,
    pub lag: Option<i64>,
    pub counters: PartitionCounters,
    pub state_bytes: usize,
    /// The last error, while the partition is failing or recovering.
    pub error: Option<String>,
}

impl PartitionStatus {
    pub(super) fn running<B: Broker, S: CheckpointStore, C: ControlPlane>(
        config: &PartitionConfig,
        runner: &PartitionRunner<B, S, C>,
    ) -> Self {
        PartitionStatus {
            job: config.job,
            partition: config.partition,
            epoch: config.epoch,
            next_offset: runner.next_offset(),
            lag: runner.lag(),
            counters: runner.counters(),
            state_bytes: runner.state_bytes(),
            error: None,
        }
    }

    pub(super) fn failing(config: &PartitionConfig, e: &PartitionError) -> Self {
        PartitionStatus {
            job: config.job,
            partition: config.partition,
            epoch: config.epoch,
            next_offset: -1,
            lag: None,
            counters: PartitionCounters::default(),
            state_bytes: 0,
            error: Some(e.to_string()),
        }
    }
}

/// The partitions of one worker and what they are doing; readable from any thread.
pub type FleetStatus = BTreeMap<(JobId, PartitionId), PartitionStatus>;

/// Shared board the partition actors write their status to.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard(Arc<Mutex<FleetStatus>>);

impl StatusBoard {
    pub(super) fn set(&self, key: (JobId, PartitionId), status: PartitionStatus) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, status);
    }

    /// Removes the partition's entry if it is still the one `epoch` wrote: an actor that
    /// ends late must not remove its successor's entry.
    pub(super) fn remove(&self, key: &(JobId, PartitionId), epoch: Epoch) {
        let mut board = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if board.get(key).is_some_and(|status| status.epoch == epoch) {
            board.remove(key);
        }
    }

    /// A copy of every partition's status.
    pub fn snapshot(&self) -> FleetStatus {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(epoch: u64) -> PartitionStatus {
        PartitionStatus {
            job: JobId(1),
            partition: PartitionId(0),
            epoch: Epoch(epoch),
            next_offset: 0,
            lag: None,
            counters: PartitionCounters::default(),
            state_bytes: 0,
            error: None,
        }
    }

    #[test]
    fn an_actor_that_ends_late_leaves_its_successors_entry() {
        let board = StatusBoard::default();
        let key = (JobId(1), PartitionId(0));
        board.set(key, status(2));
        board.remove(&key, Epoch(1));
        assert_eq!(board.snapshot().get(&key).map(|s| s.epoch), Some(Epoch(2)));
        board.remove(&key, Epoch(2));
        assert!(board.snapshot().is_empty());
    }
}
