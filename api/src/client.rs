//! A Rust client of the coordinators' HTTP API. It knows several coordinators and moves on
//! to the next when one is unreachable or has no leader, with a bounded number of attempts,
//! so callers ride through a leader failover without seeing it.

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;
use thiserror::Error;
use weir_core::ids::JobId;
use weir_core::wire::{
    AddMemberRequest, CheckpointRecord, ClusterStatus, CreateTenantRequest, ErrorBody, JobDetail,
    JobSummary, SubmittedJob, TenantToken, WorkerStatus,
};

/// Attempts per request across all coordinators before giving up.
pub const REQUEST_ATTEMPTS_MAX: u32 = 40;
/// Pause between attempts after a coordinator could not serve the request.
pub const RETRY_BACKOFF_MS: u64 = 100;
/// Time one attempt may take.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Longest wait a 429's `Retry-After` may ask of the client; a longer one is cut to this.
pub const RETRY_AFTER_MAX_MS: u64 = 5_000;
/// Wait after a 429 without a usable `Retry-After`.
pub const RETRY_AFTER_DEFAULT_MS: u64 = 1_000;
/// 429 answers one request accepts (each waits as asked) before the caller sees the 429.
pub const TOO_MANY_REQUESTS_RETRIES_MAX: u32 = 8;

/// The wait a 429 asks for: `Retry-After` in seconds, bounded by [`RETRY_AFTER_MAX_MS`].
fn retry_after_ms(headers: &reqwest::header::HeaderMap) -> u64 {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| s.saturating_mul(1_000))
        .unwrap_or(RETRY_AFTER_DEFAULT_MS)
        .min(RETRY_AFTER_MAX_MS)
}

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
    http: reqwest::Client,
    coordinators: Vec<String>,
    token: Option<String>,
}

impl Client {
    /// A client of the coordinators at `coordinators` (host:port), authenticating with `token`.
    pub fn new(coordinators: Vec<String>, token: Option<String>) -> Self {
        assert!(!coordinators.is_empty(), "at least one coordinator address");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .build()
            .unwrap_or_default();
        Client {
            http,
            coordinators,
            token,
        }
    }

    /// The same client acting with another token.
    pub fn with_token(&self, token: impl Into<String>) -> Self {
        Client {
            token: Some(token.into()),
            ..self.clone()
        }
    }

    /// Sends a request, retrying on other coordinators while none can serve it.
    pub async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<(Vec<u8>, &'static str)>,
    ) -> Result<T, ClientError> {
        let mut last = String::new();
        // One key for every attempt of this request: a retry after a lost answer or a
        // failover is answered as the first attempt was, never applied twice.
        let idempotency_key = (method != Method::GET).then(new_idempotency_key);
        let mut too_many = 0u32;
        for attempt in 0..REQUEST_ATTEMPTS_MAX {
            let addr = &self.coordinators[attempt as usize % self.coordinators.len()];
            let mut req = self
                .http
                .request(method.clone(), format!("http://{addr}{path}"));
            if let Some(token) = &self.token {
                req = req.bearer_auth(token);
            }
            if let Some(key) = &idempotency_key {
                req = req.header("idempotency-key", key);
            }
            if let Some((bytes, content_type)) = &body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, *content_type)
                    .body(bytes.clone());
            }
            let resp = match req.send().await {
                Ok(resp) => resp,
                Err(e) => {
                    last = format!("{addr}: {e}");
                    tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await;
                    continue;
                }
            };
            let status = resp.status();
            let wait_ms = retry_after_ms(resp.headers());
            let bytes = match resp.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    last = format!("{addr}: {e}");
                    continue;
                }
            };
            if status == StatusCode::TOO_MANY_REQUESTS && too_many < TOO_MANY_REQUESTS_RETRIES_MAX {
                // The coordinator sheds load: wait as long as it asks, then try again.
                too_many += 1;
                last = format!("{addr}: {}", String::from_utf8_lossy(&bytes));
                tokio::time::sleep(Duration::from_millis(wait_ms)).await;
                continue;
            }
            if status == StatusCode::SERVICE_UNAVAILABLE {
                last = format!("{addr}: {}", String::from_utf8_lossy(&bytes));
                tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await;
                continue;
            }
            if !status.is_success() {
                let err: ErrorBody = serde_json::from_slice(&bytes).unwrap_or(ErrorBody {
                    error: String::from_utf8_lossy(&bytes).into_owned(),
                    field: None,
                });
                return Err(ClientError::Api {
                    status: status.as_u16(),
                    error: err.error,
                    field: err.field,
                });
            }
            let bytes = if bytes.is_empty() {
                &b"null"[..]
            } else {
                &bytes[..]
            };
            return serde_json::from_slice(bytes).map_err(|e| ClientError::Decode {
                addr: addr.clone(),
                message: e.to_string(),
            });
        }
        Err(ClientError::Unavailable {
            attempts: REQUEST_ATTEMPTS_MAX,
            last,
        })
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
            coordinators: vec![addr.to_string()],
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

    /// A job's checkpoint records, newest first.
    pub async fn checkpoints(&self, id: JobId) -> Result<Vec<CheckpointRecord>, ClientError> {
        self.get(&format!("/v1/jobs/{id}/checkpoints")).await
    }

    /// The registered workers.
    pub async fn workers(&self) -> Result<Vec<WorkerStatus>, ClientError> {
        self.get("/v1/workers").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after_ms(&h), RETRY_AFTER_DEFAULT_MS);
        h.insert(reqwest::header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after_ms(&h), 2_000);
        h.insert(reqwest::header::RETRY_AFTER, "3600".parse().unwrap());
        assert_eq!(retry_after_ms(&h), RETRY_AFTER_MAX_MS);
        h.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after_ms(&h), RETRY_AFTER_DEFAULT_MS);
    }
}
