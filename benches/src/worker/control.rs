//! A control plane in the bench's process that accepts every checkpoint report at once: the
//! runners are measured without a coordinator group (whose own cost the coordinator bench
//! measures), and the bench learns from it when each partition last committed.

use std::collections::BTreeMap;
use std::sync::Mutex;
use tokio::time::Instant;
use weir_core::ids::{JobId, PartitionId, WorkerId};
use weir_core::wire::{
    Assignments, CheckpointPhase, CheckpointReport, CheckpointReportResults, Lease,
};
use weir_worker::control::{ControlError, ControlPlane};

/// The lease terms it hands out (never checked: no lease expires here).
const LEASE_TIMEOUT_MS: u64 = 3_000;
const HEARTBEAT_INTERVAL_MS: u64 = 1_000;

/// Accepts every report; remembers the reports per partition.
#[derive(Debug, Default)]
pub struct AcceptingControlPlane {
    reports: Mutex<BTreeMap<(JobId, PartitionId), PartitionReports>>,
}

/// What one partition reported.
#[derive(Debug, Clone, Copy, Default)]
pub struct PartitionReports {
    pub prepared: u64,
    pub committed: u64,
    /// When the last "committed" report arrived.
    pub committed_last_at: Option<Instant>,
}

impl AcceptingControlPlane {
    pub fn new() -> Self {
        Self::default()
    }

    /// The reports of one partition so far.
    pub fn reports(&self, job: JobId, partition: PartitionId) -> PartitionReports {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(job, partition))
            .copied()
            .unwrap_or_default()
    }
}

fn lease(id: &WorkerId) -> Lease {
    Lease {
        worker: id.clone(),
        lease_timeout_ms: LEASE_TIMEOUT_MS,
        heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
    }
}

impl ControlPlane for AcceptingControlPlane {
    async fn register(&self, id: &WorkerId, _addr: &str) -> Result<Lease, ControlError> {
        Ok(lease(id))
    }

    async fn deregister(&self, _id: &WorkerId) -> Result<(), ControlError> {
        Ok(())
    }

    async fn heartbeat(&self, id: &WorkerId) -> Result<Lease, ControlError> {
        Ok(lease(id))
    }

    async fn assignments(&self, id: &WorkerId) -> Result<Assignments, ControlError> {
        Ok(Assignments {
            worker: id.clone(),
            assignments: Vec::new(),
            unknown_partition_counts: Vec::new(),
            unknown_topic_partition_counts: Vec::new(),
            fence: Vec::new(),
            delete_topics: Vec::new(),
            fence_inputs: Vec::new(),
        })
    }

    async fn report_partitions(&self, _job: JobId, _count: u32) -> Result<(), ControlError> {
        Ok(())
    }

    async fn report(
        &self,
        _id: &WorkerId,
        _report: weir_core::wire::WorkerReport,
    ) -> Result<(), ControlError> {
        Ok(())
    }

    async fn report_checkpoints(
        &self,
        _id: &WorkerId,
        reports: Vec<CheckpointReport>,
    ) -> Result<CheckpointReportResults, ControlError> {
        let now = Instant::now();
        let mut all = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        for report in &reports {
            let entry = all.entry((report.job, report.partition)).or_default();
            match report.phase {
                CheckpointPhase::Prepared => entry.prepared += 1,
                CheckpointPhase::Committed => {
                    entry.committed += 1;
                    entry.committed_last_at = Some(now);
                }
            }
        }
        Ok(CheckpointReportResults {
            results: reports.iter().map(|_| Ok(())).collect(),
        })
    }
}
