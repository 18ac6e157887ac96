//! The worker's calls to the coordinator group, behind the `ControlPlane` seam. Production
//! speaks HTTP to any coordinator (followers forward to the leader) and moves on to the next
//! coordinator when one is down or has no leader; the simulation implements the same trait
//! in memory.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::time::Duration;
use thiserror::Error;
use weir_core::ids::{JobId, WorkerId};
use weir_core::wire::{
    Assignments, CheckpointReport, CheckpointReportBatch, CheckpointReportResults, Lease,
    RegisterWorkerRequest, ReportPartitionsRequest, WorkerReport,
};

/// Attempts per call across the coordinators before giving up on this round.
pub const CONTROL_ATTEMPTS_MAX: u32 = 12;
/// Pause between attempts.
pub const CONTROL_RETRY_BACKOFF_MS: u64 = 50;
/// Time one attempt may take.
pub const CONTROL_TIMEOUT_MS: u64 = 2_000;
/// Time one heartbeat attempt may take: well below the lease, so that a hung coordinator
/// costs a heartbeat round one attempt, not the lease.
pub const HEARTBEAT_ATTEMPT_TIMEOUT_MS: u64 = 400;
/// Heartbeat attempts per round: every coordinator twice at most (the next round comes
/// one heartbeat interval later anyway).
pub const HEARTBEAT_ATTEMPTS_PER_COORDINATOR: u32 = 2;

/// Why a control call failed.
#[derive(Debug, Error)]
pub enum ControlError {
    /// The group does not know this worker (its lease expired): register again.
    #[error("the coordinator group does not know worker {0}; register again")]
    UnknownWorker(WorkerId),
    /// The group refused the call.
    #[error("refused ({status}): {message}")]
    Refused { status: u16, message: String },
    /// No coordinator could serve the call.
    #[error("no coordinator reachable: {0}")]
    Unavailable(String),
}

/// The control-plane calls a worker makes.
pub trait ControlPlane: Send + Sync + 'static {
    /// Registers (or re-registers) the worker; returns its lease terms.
    fn register(
        &self,
        id: &WorkerId,
        addr: &str,
    ) -> impl Future<Output = Result<Lease, ControlError>> + Send;
    /// Leaves the group on purpose: the worker's partitions are placed elsewhere at once.
    fn deregister(&self, id: &WorkerId) -> impl Future<Output = Result<(), ControlError>> + Send;
    /// Renews the worker's lease.
    fn heartbeat(&self, id: &WorkerId) -> impl Future<Output = Result<Lease, ControlError>> + Send;
    /// What the worker should run now.
    fn assignments(
        &self,
        id: &WorkerId,
    ) -> impl Future<Output = Result<Assignments, ControlError>> + Send;
    /// Reports a job's source partition count, learned from Kafka.
    fn report_partitions(
        &self,
        job: JobId,
        partition_count: u32,
    ) -> impl Future<Output = Result<(), ControlError>> + Send;
    /// Reports a batch of checkpoint steps; one result per report.
    fn report_checkpoints(
        &self,
        id: &WorkerId,
        reports: Vec<CheckpointReport>,
    ) -> impl Future<Output = Result<CheckpointReportResults, ControlError>> + Send;
    /// Reports a partition's problem, a pending job's reason, or fenced partitions, for
    /// the group to record and show users.
    fn report(
        &self,
        id: &WorkerId,
        report: WorkerReport,
    ) -> impl Future<Output = Result<(), ControlError>> + Send;
}

/// The production control plane: HTTP to the coordinators.
#[derive(Debug, Clone)]
pub struct HttpControlPlane {
    client: reqwest::Client,
    coordinators: Vec<String>,
    token: String,
    attempts: u32,
}

impl HttpControlPlane {
    /// A control plane over the coordinators at `coordinators` (host:port), authenticating
    /// with the cluster's administrator token.
    pub fn new(coordinators: Vec<String>, token: String) -> Self {
        Self::with_limits(
            coordinators,
            token,
            CONTROL_TIMEOUT_MS,
            CONTROL_ATTEMPTS_MAX,
        )
    }

    /// A control plane for a [`HeartbeatThread`](crate::fleet::HeartbeatThread): its own
    /// connections, short attempts, few of them.
    pub fn for_heartbeats(coordinators: Vec<String>, token: String) -> Self {
        let attempts = (coordinators.len() as u32)
            .saturating_mul(HEARTBEAT_ATTEMPTS_PER_COORDINATOR)
            .clamp(1, CONTROL_ATTEMPTS_MAX);
        Self::with_limits(coordinators, token, HEARTBEAT_ATTEMPT_TIMEOUT_MS, attempts)
    }

    fn with_limits(
        coordinators: Vec<String>,
        token: String,
        timeout_ms: u64,
        attempts: u32,
    ) -> Self {
        assert!(!coordinators.is_empty(), "at least one coordinator");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(timeout_ms))
            .connect_timeout(Duration::from_millis(300.min(timeout_ms)))
            .tcp_nodelay(true)
            .build()
            .unwrap_or_default();
        HttpControlPlane {
            client,
            coordinators,
            token,
            attempts,
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&(impl Serialize + Sync)>,
    ) -> Result<T, (u16, String)> {
        let mut last = String::new();
        for attempt in 0..self.attempts {
            let addr = &self.coordinators[attempt as usize % self.coordinators.len()];
            let mut req = self
                .client
                .request(method.clone(), format!("http://{addr}{path}"))
                .bearer_auth(&self.token);
            if let Some(b) = body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(resp) if resp.status().as_u16() == 503 => last = format!("{addr}: no leader"),
                Ok(resp) if resp.status().is_success() => {
                    let bytes = resp.bytes().await.map_err(|e| (0, e.to_string()))?;
                    let bytes = if bytes.is_empty() {
                        &b"null"[..]
                    } else {
                        &bytes[..]
                    };
                    return serde_json::from_slice(bytes)
                        .map_err(|e| (0, format!("{addr}: bad answer: {e}")));
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let text = resp.text().await.unwrap_or_default();
                    let message = serde_json::from_str::<weir_core::wire::ErrorBody>(&text)
                        .map(|b| b.error)
                        .unwrap_or(text);
                    return Err((status, message));
                }
                Err(e) => last = format!("{addr}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(CONTROL_RETRY_BACKOFF_MS)).await;
        }
        Err((0, last))
    }
}

fn control_error(worker: Option<&WorkerId>, (status, message): (u16, String)) -> ControlError {
    match (status, worker) {
        // No answer, or the group shedding load (429) or failing (5xx): try again later.
        // Taking these as a refusal made a partition abort as if fenced.
        (0 | 429 | 500..=599, _) => ControlError::Unavailable(message),
        (404, Some(w)) if message.contains("worker") => ControlError::UnknownWorker(w.clone()),
        _ => ControlError::Refused { status, message },
    }
}

const NO_BODY: Option<&()> = None;

impl ControlPlane for HttpControlPlane {
    async fn register(&self, id: &WorkerId, addr: &str) -> Result<Lease, ControlError> {
        let body = RegisterWorkerRequest {
            id: id.clone(),
            addr: addr.to_string(),
        };
        self.call(reqwest::Method::POST, "/v1/workers", Some(&body))
            .await
            .map_err(|e| control_error(None, e))
    }

    async fn deregister(&self, id: &WorkerId) -> Result<(), ControlError> {
        self.call::<()>(
            reqwest::Method::DELETE,
            &format!("/v1/workers/{id}"),
            NO_BODY,
        )
        .await
        .map_err(|e| control_error(Some(id), e))
    }

    async fn heartbeat(&self, id: &WorkerId) -> Result<Lease, ControlError> {
        self.call(
            reqwest::Method::POST,
            &format!("/v1/workers/{id}/heartbeat"),
            NO_BODY,
        )
        .await
        .map_err(|e| control_error(Some(id), e))
    }

    async fn assignments(&self, id: &WorkerId) -> Result<Assignments, ControlError> {
        self.call(
            reqwest::Method::GET,
            &format!("/v1/workers/{id}/assignments"),
            NO_BODY,
        )
        .await
        .map_err(|e| control_error(Some(id), e))
    }

    async fn report_partitions(
        &self,
        job: JobId,
        partition_count: u32,
    ) -> Result<(), ControlError> {
        let body = ReportPartitionsRequest { partition_count };
        self.call::<()>(
            reqwest::Method::POST,
            &format!("/v1/jobs/{job}/partitions"),
            Some(&body),
        )
        .await
        .map_err(|e| control_error(None, e))
    }

    async fn report_checkpoints(
        &self,
        id: &WorkerId,
        reports: Vec<CheckpointReport>,
    ) -> Result<CheckpointReportResults, ControlError> {
        let body = CheckpointReportBatch {
            worker: id.clone(),
            reports,
        };
        self.call(reqwest::Method::POST, "/v1/checkpoints", Some(&body))
            .await
            .map_err(|e| control_error(Some(id), e))
    }

    async fn report(&self, id: &WorkerId, report: WorkerReport) -> Result<(), ControlError> {
        self.call::<()>(
            reqwest::Method::POST,
            &format!("/v1/workers/{id}/reports"),
            Some(&report),
        )
        .await
        .map_err(|e| control_error(Some(id), e))
    }
}
