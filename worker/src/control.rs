//! The worker's calls to the coordinator group, behind the `ControlPlane` seam. Production
//! speaks HTTP through the one leader-sticky client of the group (`weir_client`): calls go
//! to the coordinator last known to lead (followers forward to the leader and name it), a
//! coordinator that is down or has no leader is left for the next; the simulation
//! implements the same trait in memory and drives the same policy ([`CONTROL_POLICY`]).

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use thiserror::Error;
use weir_client::{GroupClient, Request, Timeouts};
use weir_core::ids::{JobId, WorkerId};
use weir_core::leader_client::RetryPolicy;
use weir_core::wire::{
    Assignments, CheckpointReport, CheckpointReportBatch, CheckpointReportResults, Lease,
    RegisterWorkerRequest, ReportPartitionsRequest, WorkerReport,
};

/// Attempts per call across the coordinators before giving up on this round.
pub const CONTROL_ATTEMPTS_MAX: u32 = 12;
/// No attempt of a call starts later than this after its first (twelve attempts of at most
/// 2 s each, as before the bound was explicit).
pub const CONTROL_DEADLINE_MS: u64 = 25_000;
/// The first backoff wait, once every coordinator failed in a row; it doubles from here.
pub const CONTROL_RETRY_BACKOFF_MS: u64 = 50;
/// The largest backoff base wait (jitter adds up to as much again).
pub const CONTROL_RETRY_BACKOFF_MAX_MS: u64 = 1_000;
/// Time one attempt may take.
pub const CONTROL_TIMEOUT_MS: u64 = 2_000;
/// Time connecting to one coordinator may take.
pub const CONTROL_CONNECT_TIMEOUT_MS: u64 = 300;
/// Time one heartbeat attempt may take: well below the lease, so that a hung coordinator
/// costs a heartbeat round one attempt, not the lease.
pub const HEARTBEAT_ATTEMPT_TIMEOUT_MS: u64 = 400;
/// Heartbeat attempts per round: every coordinator twice at most (the next round comes
/// one heartbeat interval later anyway).
pub const HEARTBEAT_ATTEMPTS_PER_COORDINATOR: u32 = 2;

/// The retry policy of the worker's control calls. A 429 is not waited out: the call
/// fails as unavailable and the worker's next round (a heartbeat interval or an assignments
/// poll later) tries again; the group never sheds the administrator's heartbeats anyway.
pub const CONTROL_POLICY: RetryPolicy = RetryPolicy {
    attempts_max: CONTROL_ATTEMPTS_MAX,
    deadline_ms: CONTROL_DEADLINE_MS,
    backoff_min_ms: CONTROL_RETRY_BACKOFF_MS,
    backoff_max_ms: CONTROL_RETRY_BACKOFF_MAX_MS,
    too_many_requests_max: 0,
    retry_after_default_ms: 0,
    retry_after_max_ms: 0,
};

/// The policy of one heartbeat round over `coordinators` members: every coordinator twice
/// at most, and no attempt starting after the time those attempts could take.
pub fn heartbeat_policy(coordinators: usize) -> RetryPolicy {
    let attempts = u32::try_from(coordinators)
        .unwrap_or(u32::MAX)
        .saturating_mul(HEARTBEAT_ATTEMPTS_PER_COORDINATOR)
        .clamp(1, CONTROL_ATTEMPTS_MAX);
    RetryPolicy {
        attempts_max: attempts,
        deadline_ms: u64::from(attempts) * HEARTBEAT_ATTEMPT_TIMEOUT_MS,
        ..CONTROL_POLICY
    }
}

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
    /// Reports the partition count of a topic a job reads besides its source (its
    /// join's right side). A control plane that has no such jobs need not implement it.
    fn report_topic_partitions(
        &self,
        job: JobId,
        topic: String,
        partition_count: u32,
    ) -> impl Future<Output = Result<(), ControlError>> + Send {
        let _ = (job, topic, partition_count);
        async { Ok(()) }
    }
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
    group: GroupClient,
    token: String,
}

impl HttpControlPlane {
    /// `POST /v1/jobs/{job}/partitions`: a topic's partition count (the source's when
    /// `topic` is `None`, else the join's other topic), as a worker read it from Kafka.
    async fn post_partition_count(
        &self,
        job: JobId,
        topic: Option<String>,
        partition_count: u32,
    ) -> Result<(), ControlError> {
        let body = ReportPartitionsRequest {
            partition_count,
            topic,
        };
        self.call::<()>(
            reqwest::Method::POST,
            &format!("/v1/jobs/{job}/partitions"),
            Some(&body),
        )
        .await
        .map_err(|e| control_error(None, e))
    }

    /// A control plane over the coordinators at `coordinators` (host:port), authenticating
    /// with the cluster's administrator token.
    pub fn new(coordinators: Vec<String>, token: String) -> Self {
        let timeouts = Timeouts {
            attempt_ms: CONTROL_TIMEOUT_MS,
            connect_ms: CONTROL_CONNECT_TIMEOUT_MS,
        };
        HttpControlPlane {
            group: GroupClient::new(coordinators, CONTROL_POLICY, timeouts),
            token,
        }
    }

    /// A control plane for a [`HeartbeatThread`](crate::fleet::HeartbeatThread): its own
    /// connections, short attempts, few of them.
    pub fn for_heartbeats(coordinators: Vec<String>, token: String) -> Self {
        let policy = heartbeat_policy(coordinators.len());
        let timeouts = Timeouts {
            attempt_ms: HEARTBEAT_ATTEMPT_TIMEOUT_MS,
            connect_ms: CONTROL_CONNECT_TIMEOUT_MS,
        };
        HttpControlPlane {
            group: GroupClient::new(coordinators, policy, timeouts),
            token,
        }
    }

    /// The address of the coordinator last known to lead.
    pub fn leader(&self) -> Option<String> {
        self.group.leader()
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&(impl Serialize + Sync)>,
    ) -> Result<T, (u16, String)> {
        let body = match body.map(serde_json::to_vec).transpose() {
            Ok(body) => body.map(|b| (Bytes::from(b), "application/json")),
            Err(e) => return Err((0, format!("cannot encode the request: {e}"))),
        };
        let request = Request {
            method,
            path,
            token: Some(&self.token),
            idempotency_key: None,
            body,
        };
        let reply = self
            .group
            .send(&request)
            .await
            .map_err(|e| (0, e.to_string()))?;
        if !reply.status.is_success() {
            let text = String::from_utf8_lossy(&reply.body).into_owned();
            let message = serde_json::from_str::<weir_core::wire::ErrorBody>(&text)
                .map(|b| b.error)
                .unwrap_or(text);
            return Err((reply.status.as_u16(), message));
        }
        let bytes = if reply.body.is_empty() {
            &b"null"[..]
        } else {
            &reply.body[..]
        };
        serde_json::from_slice(bytes).map_err(|e| (0, format!("{}: bad answer: {e}", reply.member)))
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
        self.post_partition_count(job, None, partition_count).await
    }

    async fn report_topic_partitions(
        &self,
        job: JobId,
        topic: String,
        partition_count: u32,
    ) -> Result<(), ControlError> {
        self.post_partition_count(job, Some(topic), partition_count)
            .await
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
