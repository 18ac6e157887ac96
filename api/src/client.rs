//! A Rust client of the coordinators' HTTP API. It sends through the one leader-sticky
//! client of the group (`weir_client::GroupClient`): requests go to the member last known
//! to lead, a failed member is left for the next, 429s are waited out, and callers ride
//! through a leader failover without seeing it, within explicit bounds.

use bytes::Bytes;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;
use weir_client::{GroupClient, Reply, Request, Timeouts};
use weir_core::ids::{JobId, SavepointId};
use weir_core::leader_client::RetryPolicy;
use weir_core::wire::{
    AddMemberRequest, CheckpointRecord, ClusterStatus, CreateTenantRequest, ErrorBody, JobDetail,
    JobSummary, JobVersionInfo, LifecycleAnswer, RescaleRequest, SavepointInfo, SubmittedJob,
    TenantToken, UpgradeAnswer, UpgradeRequest, WorkerStatus,
};

/// Attempts per request across all coordinators before giving up.
pub const REQUEST_ATTEMPTS_MAX: u32 = 40;
/// No attempt of a request starts later than this after its first.
pub const REQUEST_DEADLINE_MS: u64 = 120_000;
/// The first backoff wait, once every coordinator failed in a row; it doubles from here.
pub const RETRY_BACKOFF_MS: u64 = 100;
/// The largest backoff base wait (jitter adds up to as much again).
pub const RETRY_BACKOFF_MAX_MS: u64 = 2_000;
/// Time one attempt may take.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Time connecting to one coordinator may take.
pub const CONNECT_TIMEOUT_MS: u64 = 500;
/// Longest wait a 429's `Retry-After` may ask of the client; a longer one is cut to this.
pub const RETRY_AFTER_MAX_MS: u64 = 5_000;
/// Wait after a 429 without a usable `Retry-After`.
pub const RETRY_AFTER_DEFAULT_MS: u64 = 1_000;
/// 429 answers one request accepts (each waits as asked) before the caller sees the 429.
pub const TOO_MANY_REQUESTS_RETRIES_MAX: u32 = 8;

/// The retry policy of the CLI's and the Rust client's requests.
pub const REQUEST_POLICY: RetryPolicy = RetryPolicy {
    attempts_max: REQUEST_ATTEMPTS_MAX,
    deadline_ms: REQUEST_DEADLINE_MS,
    backoff_min_ms: RETRY_BACKOFF_MS,
    backoff_max_ms: RETRY_BACKOFF_MAX_MS,
    too_many_requests_max: TOO_MANY_REQUESTS_RETRIES_MAX,
    retry_after_default_ms: RETRY_AFTER_DEFAULT_MS,
    retry_after_max_ms: RETRY_AFTER_MAX_MS,
};

/// A fresh random idempotency key.
fn new_idempotency_key() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What went wrong with a request.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The API answered with an error.
    #[error("{error}{}", field.as_ref().map(|f| format!(" (field {f})")).unwrap_or_default())]
    Api {
        status: u16,
        error: String,
        field: Option<String>,
    },
    /// No coordinator could serve the request within the attempts allowed.
    #[error(
        "no coordinator could serve the request after {attempts} attempts; last error: {last}"
    )]
    Unavailable { attempts: u32, last: String },
    /// The answer was not what the API promises.
    #[error("unexpected answer from {addr}: {message}")]
    Decode { addr: String, message: String },
}

impl ClientError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A client of one coordinator group.
#[derive(Debug, Clone)]
pub struct Client {
    group: GroupClient,
    token: Option<String>,
}

impl Client {
    /// A client of the coordinators at `coordinators` (host:port), authenticating with `token`.
    pub fn new(coordinators: Vec<String>, token: Option<String>) -> Self {
        let timeouts = Timeouts {
            attempt_ms: REQUEST_TIMEOUT_MS,
            connect_ms: CONNECT_TIMEOUT_MS,
        };
        Client {
            group: GroupClient::new(coordinators, REQUEST_POLICY, timeouts),
            token,
        }
    }

    /// The same client acting with another token (sharing what it knows of the leader).
    pub fn with_token(&self, token: impl Into<String>) -> Self {
        Client {
            token: Some(token.into()),
            ..self.clone()
        }
    }

    /// The address of the coordinator last known to lead.
    pub fn leader(&self) -> Option<String> {
        self.group.leader()
    }

    /// Sends a request, following the leader and retrying on other coordinators while none
    /// can serve it.
    pub async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<(Vec<u8>, &'static str)>,
    ) -> Result<T, ClientError> {
        // One key for every attempt of this request: a retry after a lost answer or a
        // failover is answered as the first attempt was, never applied twice.
        let idempotency_key = (method != Method::GET).then(new_idempotency_key);
        let request = Request {
            method,
            path,
            token: self.token.as_deref(),
            idempotency_key: idempotency_key.as_deref(),
            body: body.map(|(bytes, content_type)| (Bytes::from(bytes), content_type)),
        };
        let reply = self
            .group
            .send(&request)
            .await
            .map_err(|e| ClientError::Unavailable {
                attempts: e.attempts,
                last: e.last,
            })?;
        decode(reply)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.request(Method::GET, path, None).await
    }

    async fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::Decode {
            addr: String::new(),
            message: e.to_string(),
        })?;
        self.request(Method::POST, path, Some((bytes, "application/json")))
            .await
    }

    /// `GET /v1/cluster` from the first coordinator that answers.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, ClientError> {
        self.get("/v1/cluster").await
    }

    /// `GET /v1/cluster` from one given coordinator, without retrying elsewhere.
    pub async fn cluster_status_of(&self, addr: &str) -> Result<ClusterStatus, ClientError> {
        Client {
            group: self.group.only(addr),
            ..self.clone()
        }
        .get("/v1/cluster")
        .await
    }

    /// Adds a coordinator to the group.
    pub async fn add_member(&self, id: u64, addr: &str) -> Result<ClusterStatus, ClientError> {
        self.post_json(
            "/v1/cluster/members",
            &AddMemberRequest {
                id,
                addr: addr.to_string(),
            },
        )
        .await
    }

    /// Removes a coordinator from the group.
    pub async fn remove_member(&self, id: u64) -> Result<ClusterStatus, ClientError> {
        self.request(Method::DELETE, &format!("/v1/cluster/members/{id}"), None)
            .await
    }

    /// Creates a tenant; the answer holds its token, shown only this once.
    pub async fn create_tenant(&self, name: &str) -> Result<TenantToken, ClientError> {
        self.post_json(
            "/v1/tenants",
            &CreateTenantRequest {
                name: name.to_string(),
            },
        )
        .await
    }

    /// Issues a tenant a new token; its old tokens stop working.
    pub async fn rotate_tenant_token(&self, name: &str) -> Result<TenantToken, ClientError> {
        self.request(Method::POST, &format!("/v1/tenants/{name}/token"), None)
            .await
    }

    /// The tenants' names (administrator).
    pub async fn list_tenants(&self) -> Result<Vec<String>, ClientError> {
        let rows: Vec<serde_json::Value> = self.get("/v1/tenants").await?;
        Ok(rows
            .iter()
            .filter_map(|r| r["name"].as_str().map(str::to_string))
            .collect())
    }

    /// Submits a job spec (YAML or JSON bytes); the administrator names the tenant.
    pub async fn submit_job(
        &self,
        spec: Vec<u8>,
        tenant: Option<&str>,
    ) -> Result<SubmittedJob, ClientError> {
        let path = match tenant {
            Some(t) => format!("/v1/jobs?tenant={t}"),
            None => "/v1/jobs".to_string(),
        };
        self.request(Method::POST, &path, Some((spec, "application/yaml")))
            .await
    }

    /// Lists the jobs the token may see.
    pub async fn list_jobs(&self) -> Result<Vec<JobSummary>, ClientError> {
        self.get("/v1/jobs").await
    }

    /// One job with its partitions.
    pub async fn get_job(&self, id: JobId) -> Result<JobDetail, ClientError> {
        self.get(&format!("/v1/jobs/{id}")).await
    }

    /// Starts cancelling a job.
    pub async fn cancel_job(&self, id: JobId) -> Result<JobSummary, ClientError> {
        self.request(Method::DELETE, &format!("/v1/jobs/{id}"), None)
            .await
    }

    /// Starts pausing a job: its partitions commit and stop consuming (`pausing`, then
    /// `paused`).
    pub async fn pause_job(&self, id: JobId) -> Result<JobSummary, ClientError> {
        self.request(Method::POST, &format!("/v1/jobs/{id}/pause"), None)
            .await
    }

    /// Resumes a pausing or paused job where it left off.
    pub async fn resume_job(&self, id: JobId) -> Result<JobSummary, ClientError> {
        self.request(Method::POST, &format!("/v1/jobs/{id}/resume"), None)
            .await
    }

    /// Starts stopping a job: its partitions commit and are released (`stopping`, then
    /// `stopped`).
    pub async fn stop_job(&self, id: JobId) -> Result<JobSummary, ClientError> {
        self.request(Method::POST, &format!("/v1/jobs/{id}/stop"), None)
            .await
    }

    /// Starts a stopped job again from its last committed checkpoint.
    pub async fn start_job(&self, id: JobId) -> Result<JobSummary, ClientError> {
        self.request(Method::POST, &format!("/v1/jobs/{id}/start"), None)
            .await
    }

    /// Stops a job; with `savepoint` also takes a savepoint of the stop's cut, which the
    /// answer names (`pending` until the job is `stopped`). `drain` (fire open windows
    /// first) is refused by coordinators that do not build it (501 naming `drain`).
    pub async fn stop_job_with(
        &self,
        id: JobId,
        savepoint: bool,
        drain: bool,
    ) -> Result<LifecycleAnswer, ClientError> {
        self.post_json(
            &format!("/v1/jobs/{id}/stop"),
            &serde_json::json!({"savepoint": savepoint, "drain": drain}),
        )
        .await
    }

    /// Starts a stopped job from a savepoint instead of its last committed checkpoint:
    /// outputs after the savepoint's cut are produced again.
    pub async fn start_job_from_savepoint(
        &self,
        id: JobId,
        savepoint: SavepointId,
    ) -> Result<LifecycleAnswer, ClientError> {
        self.post_json(
            &format!("/v1/jobs/{id}/start"),
            &serde_json::json!({"savepoint": savepoint}),
        )
        .await
    }

    /// Upgrades a job to a new spec (YAML or JSON text), its state carried from the stop's
    /// cut or from `savepoint`; `allow_state_drop` names stateful stages that may start
    /// empty.
    pub async fn upgrade_job(
        &self,
        id: JobId,
        spec: &str,
        savepoint: Option<SavepointId>,
        allow_state_drop: &[String],
    ) -> Result<UpgradeAnswer, ClientError> {
        let body = UpgradeRequest {
            spec: serde_json::Value::String(spec.to_string()),
            savepoint,
            allow_state_drop: allow_state_drop.to_vec(),
        };
        let bytes = serde_json::to_vec(&body).map_err(|e| ClientError::Decode {
            addr: String::new(),
            message: e.to_string(),
        })?;
        let path = format!("/v1/jobs/{id}");
        self.request(Method::PUT, &path, Some((bytes, "application/json")))
            .await
    }

    /// Rescales the stage behind a job's shuffle to `parallelism` partitions (an upgrade
    /// to the spec with that `parallelism`).
    pub async fn rescale_job(
        &self,
        id: JobId,
        parallelism: u32,
    ) -> Result<UpgradeAnswer, ClientError> {
        let bytes = serde_json::to_vec(&RescaleRequest { parallelism }).map_err(|e| {
            ClientError::Decode {
                addr: String::new(),
                message: e.to_string(),
            }
        })?;
        let path = format!("/v1/jobs/{id}/rescale");
        self.request(Method::POST, &path, Some((bytes, "application/json")))
            .await
    }

    /// A job's versions, oldest first.
    pub async fn job_versions(&self, id: JobId) -> Result<Vec<JobVersionInfo>, ClientError> {
        self.get(&format!("/v1/jobs/{id}/versions")).await
    }

    /// Takes a savepoint of a job: every partition's committed cut.
    pub async fn take_savepoint(&self, id: JobId) -> Result<SavepointInfo, ClientError> {
        self.request(Method::POST, &format!("/v1/jobs/{id}/savepoints"), None)
            .await
    }

    /// A job's savepoints, oldest first.
    pub async fn savepoints(&self, id: JobId) -> Result<Vec<SavepointInfo>, ClientError> {
        self.get(&format!("/v1/jobs/{id}/savepoints")).await
    }

    /// Deletes a savepoint; its snapshots are pruned like any old checkpoint's from then on.
    pub async fn delete_savepoint(
        &self,
        id: JobId,
        savepoint: SavepointId,
    ) -> Result<(), ClientError> {
        self.request(
            Method::DELETE,
            &format!("/v1/jobs/{id}/savepoints/{savepoint}"),
            None,
        )
        .await
    }

    /// A job's checkpoint records, newest first.
    pub async fn checkpoints(&self, id: JobId) -> Result<Vec<CheckpointRecord>, ClientError> {
        self.get(&format!("/v1/jobs/{id}/checkpoints")).await
    }

    /// The registered workers.
    pub async fn workers(&self) -> Result<Vec<WorkerStatus>, ClientError> {
        self.get("/v1/workers").await
    }
}

/// A final answer as the caller sees it: the decoded body, or the API's error.
fn decode<T: DeserializeOwned>(reply: Reply) -> Result<T, ClientError> {
    if !reply.status.is_success() {
        let err: ErrorBody = serde_json::from_slice(&reply.body).unwrap_or(ErrorBody {
            error: String::from_utf8_lossy(&reply.body).into_owned(),
            field: None,
        });
        return Err(ClientError::Api {
            status: reply.status.as_u16(),
            error: err.error,
            field: err.field,
        });
    }
    let bytes = if reply.body.is_empty() {
        &b"null"[..]
    } else {
        &reply.body[..]
    };
    serde_json::from_slice(bytes).map_err(|e| ClientError::Decode {
        addr: reply.member,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    fn reply(status: u16, body: &'static str) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            body: Bytes::from_static(body.as_bytes()),
            member: "c1".into(),
        }
    }

    #[test]
    fn final_answers_decode_or_become_api_errors() {
        assert_eq!(decode::<u32>(reply(200, "7")).unwrap(), 7);
        assert_eq!(decode::<Option<u32>>(reply(202, "")).unwrap(), None);
        match decode::<u32>(reply(429, r#"{"error":"busy"}"#)) {
            Err(ClientError::Api {
                status: 429,
                error,
                field: None,
            }) => assert_eq!(error, "busy"),
            other => panic!("{other:?}"),
        }
        match decode::<u32>(reply(400, "not json")) {
            Err(ClientError::Api {
                status: 400, error, ..
            }) => assert_eq!(error, "not json"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decode::<u32>(reply(200, "{}")),
            Err(ClientError::Decode { .. })
        ));
    }
}
