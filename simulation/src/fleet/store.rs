//! The checkpoint store in the simulation: one in-memory store for the whole run (it is a
//! remote service that outlives workers), reached by each process through its gate, with
//! a latency drawn per call and stalls the fault schedule switches on and off. The latency
//! opens the windows between the protocol's steps in which crashes and pauses land.

use super::gate::{Gate, GATE_POLL_MS};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weir_core::ids::{JobId, PartitionId};
use weir_worker::checkpoint_store::{CheckpointStore, MemoryCheckpointStore, StoreError};

/// Simulated time one store call takes, drawn per call.
pub const STORE_LATENCY_MS: (u64, u64) = (1, 30);

/// The run's checkpoint store service: the stored snapshots, its stall switch and the
/// generator of call latencies.
#[derive(Debug, Clone)]
pub struct StoreService {
    snapshots: MemoryCheckpointStore,
    stalled: Arc<AtomicBool>,
    latency: Arc<Mutex<StdRng>>,
}

impl StoreService {
    /// An empty store whose latencies come from `seed`.
    pub fn new(seed: u64) -> Self {
        StoreService {
            snapshots: MemoryCheckpointStore::new(),
            stalled: Arc::new(AtomicBool::new(false)),
            latency: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))),
        }
    }

    /// The stored snapshots as they are, for the checks at the end of a run.
    pub fn snapshots(&self) -> &MemoryCheckpointStore {
        &self.snapshots
    }

    /// Stalls (or releases) every call: a store that hangs without failing.
    pub fn set_stalled(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::Relaxed);
    }

    /// The store as the process behind `gate` sees it.
    pub fn handle(&self, gate: Gate) -> GatedStore {
        GatedStore {
            service: self.clone(),
            gate,
        }
    }

    async fn delay(&self) {
        while self.stalled.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(GATE_POLL_MS)).await;
        }
        let ms = self
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .gen_range(STORE_LATENCY_MS.0..=STORE_LATENCY_MS.1);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// One process's handle on the checkpoint store.
#[derive(Debug, Clone)]
pub struct GatedStore {
    service: StoreService,
    gate: Gate,
}

impl CheckpointStore for GatedStore {
    async fn put(
        &self,
        job: JobId,
        partition: PartitionId,
        offset: i64,
        snapshot: &[u8],
    ) -> Result<String, StoreError> {
        self.gate.pass().await;
        self.service.delay().await;
        self.gate.pass().await;
        let location = self
            .service
            .snapshots
            .put(job, partition, offset, snapshot)
            .await;
        self.service.delay().await;
        self.gate.pass().await;
        location
    }

    async fn get(
        &self,
        job: JobId,
        partition: PartitionId,
        offset: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.gate.pass().await;
        self.service.delay().await;
        let found = self.service.snapshots.get(job, partition, offset).await;
        self.gate.pass().await;
        found
    }

    async fn newest_offset(
        &self,
        job: JobId,
        partition: PartitionId,
    ) -> Result<Option<i64>, StoreError> {
        self.gate.pass().await;
        self.service.delay().await;
        let newest = self.service.snapshots.newest_offset(job, partition).await;
        self.gate.pass().await;
        newest
    }

    async fn prune(
        &self,
        job: JobId,
        partition: PartitionId,
        offset: i64,
        keep: &[i64],
    ) -> Result<(), StoreError> {
        self.gate.pass().await;
        self.service.delay().await;
        let pruned = self
            .service
            .snapshots
            .prune(job, partition, offset, keep)
            .await;
        self.gate.pass().await;
        pruned
    }
}
