//! What the worker's integration tests share: the control plane as the real replicated
//! state machine, in memory.

#![allow(dead_code)] // each test binary uses its own part

pub mod kafka;
pub mod shuffle_job;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use weir_coordinator::state::{Command, CommandResult, ControlState};
use weir_core::ids::{JobId, WorkerId};
use weir_core::wire::{Assignments, CheckpointReport, CheckpointReportResults, Lease};
use weir_worker::control::{ControlError, ControlPlane};

/// The control plane as the real state machine, in memory.
#[derive(Default)]
pub struct LocalControl {
    pub state: Mutex<ControlState>,
    /// Answer checkpoint reports with no results at all (a broken or hostile answer).
    pub answer_nothing: AtomicBool,
    /// Answer checkpoint reports with this body, as a newer coordinator would send it.
    pub answer_body: Mutex<Option<String>>,
}

impl LocalControl {
    pub fn apply(&self, c: Command) -> CommandResult {
        self.state.lock().unwrap().apply(&c)
    }
}

impl ControlPlane for LocalControl {
    async fn register(&self, _: &WorkerId, _: &str) -> Result<Lease, ControlError> {
        unreachable!("not used here")
    }
    async fn deregister(&self, _: &WorkerId) -> Result<(), ControlError> {
        unreachable!("not used here")
    }
    async fn heartbeat(&self, _: &WorkerId) -> Result<Lease, ControlError> {
        unreachable!("not used here")
    }
    async fn assignments(&self, _: &WorkerId) -> Result<Assignments, ControlError> {
        unreachable!("not used here")
    }
    async fn report_partitions(&self, _: JobId, _: u32) -> Result<(), ControlError> {
        unreachable!("not used here")
    }
    async fn report(
        &self,
        id: &WorkerId,
        report: weir_core::wire::WorkerReport,
    ) -> Result<(), ControlError> {
        match self.apply(Command::WorkerReport {
            worker: id.clone(),
            report,
        }) {
            CommandResult::Refused(r) => Err(ControlError::Refused {
                status: 409,
                message: r.to_string(),
            }),
            _ => Ok(()),
        }
    }
    async fn report_checkpoints(
        &self,
        id: &WorkerId,
        reports: Vec<CheckpointReport>,
    ) -> Result<CheckpointReportResults, ControlError> {
        if self.answer_nothing.load(Ordering::Relaxed) {
            return Ok(CheckpointReportResults { results: vec![] });
        }
        if let Some(body) = self.answer_body.lock().unwrap().as_deref() {
            return Ok(serde_json::from_str(body).expect("the answer's list reads"));
        }
        match self.apply(Command::Checkpoint {
            worker: id.clone(),
            reports,
            at_ms: 0,
        }) {
            CommandResult::CheckpointResults(results) => Ok(CheckpointReportResults { results }),
            other => panic!("{other:?}"),
        }
    }
}
