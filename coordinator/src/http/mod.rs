//! The coordinator's HTTP surface (CONTRACT.md "HTTP API"): `/healthz`, `/metrics`, the
//! `/v1` API and the Raft RPC endpoint, on one listener.
//!
//! Any coordinator accepts any request. `/v1` requests other than `GET /v1/cluster` are
//! served by the leader: a follower forwards them (method, path, token and body) and relays
//! the answer, so writes go through the leader and reads are linearizable (read-index on the
//! leader). `?consistency=stale` reads the local state instead.

mod auth;
mod cluster;
mod error;
mod forward;
mod jobs;
mod json_body;
mod tenants;
mod workers;

pub use auth::{hash_token, new_token};
pub use error::ApiError;

use crate::network::http::RAFT_RPC_PATH;
use crate::network::{serve_rpc, RaftRpc};
use crate::node::Coordinator;
use crate::state::Command;
use auth::Principal;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use tokio::time::Instant;

/// Request bodies larger than this are refused (job specs are a few KiB; Raft batches and
/// snapshots chunks are bounded by openraft's payload limits).
pub const REQUEST_BODY_BYTES_MAX: usize = 8 * 1024 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    pub coordinator: Arc<Coordinator>,
    /// SHA-256 of the administrator token (`--admin-token`).
    pub admin_token_hash: Arc<str>,
    pub metrics: Option<PrometheusHandle>,
    pub forwarder: forward::Forwarder,
}

impl ApiState {
    /// The state for a coordinator with the given administrator token.
    pub fn new(
        coordinator: Arc<Coordinator>,
        admin_token: &str,
        metrics: Option<PrometheusHandle>,
    ) -> Self {
        ApiState {
            coordinator,
            admin_token_hash: hash_token(admin_token).into(),
            metrics,
            forwarder: forward::Forwarder::new(),
        }
    }

    fn principal(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        auth::authenticate(headers, &self.admin_token_hash, &self.coordinator)
    }

    /// The request's idempotency key, scoped to whoever sent it so that one tenant's key
    /// never answers another's request.
    fn idempotency_key(&self, headers: &HeaderMap, principal: &Principal) -> Option<String> {
        let key = headers.get(IDEMPOTENCY_HEADER)?.to_str().ok()?.trim();
        if key.is_empty() {
            return None;
        }
        Some(scoped_key(principal.tenant().map(|t| t.0.as_str()), key))
    }

    /// `command`, made idempotent when the request carries an `Idempotency-Key`: a retry
    /// with the same key gets the first answer instead of being applied again.
    fn once(&self, headers: &HeaderMap, principal: &Principal, command: Command) -> Command {
        match self.idempotency_key(headers, principal) {
            Some(key) => Command::Idempotent {
                key,
                command: Box::new(command),
            },
            None => command,
        }
    }
}

/// An idempotency key in the namespace of whoever sent it: the administrator's, or one
/// tenant's. A tenant may be named `admin`, so the two kinds cannot share a form.
fn scoped_key(tenant: Option<&str>, key: &str) -> String {
    match tenant {
        Some(tenant) => format!("tenant:{tenant}/{key}"),
        None => format!("admin/{key}"),
    }
}

/// Header carrying a client's idempotency key for a write.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// The full router of one coordinator.
pub fn router(state: ApiState) -> Router {
    let v1 = Router::new()
        .route("/v1/cluster", get(cluster::status))
        .route("/v1/cluster/members", post(cluster::add_member))
        .route("/v1/cluster/members/{id}", delete(cluster::remove_member))
        .route("/v1/tenants", post(tenants::create).get(tenants::list))
        .route("/v1/tenants/{name}/token", post(tenants::rotate_token))
        .route("/v1/jobs", post(jobs::submit).get(jobs::list))
        .route("/v1/jobs/{id}", get(jobs::get).delete(jobs::cancel))
        .route("/v1/jobs/{id}/checkpoints", get(jobs::checkpoints))
        .route("/v1/jobs/{id}/partitions", post(jobs::report_partitions))
        .route("/v1/workers", get(workers::list).post(workers::register))
        .route("/v1/workers/{id}", delete(workers::deregister))
        .route("/v1/workers/{id}/heartbeat", post(workers::heartbeat))
        .route("/v1/workers/{id}/assignments", get(workers::assignments))
        .route("/v1/workers/{id}/reports", post(workers::report))
        .route("/v1/checkpoints", post(workers::report_checkpoints))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            forward::to_leader,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(render_metrics))
        .route(RAFT_RPC_PATH, post(raft_rpc))
        .merge(v1)
        .layer(middleware::from_fn(record_latency))
        .layer(DefaultBodyLimit::max(REQUEST_BODY_BYTES_MAX))
        .with_state(state)
}

/// Serves the router on a bound listener until the future is dropped.
pub async fn serve(listener: tokio::net::TcpListener, state: ApiState) -> std::io::Result<()> {
    axum::serve(listener, router(state)).await
}

async fn render_metrics(State(state): State<ApiState>) -> Response {
    match &state.metrics {
        Some(handle) => handle.render().into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "metrics are not enabled in this process",
        )
            .into_response(),
    }
}

async fn raft_rpc(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Json(rpc): Json<RaftRpc>,
) -> Response {
    // Peers authenticate with the administrator token, which all members share.
    let authorized =
        auth::bearer(&headers).is_some_and(|t| *hash_token(t) == *state.admin_token_hash);
    if !authorized {
        return ApiError::unauthorized().into_response();
    }
    Json(serve_rpc(state.coordinator.raft(), rpc).await).into_response()
}

async fn record_latency(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    metrics::histogram!("weir_api_request_seconds", "route" => route, "method" => method, "status" => resp.status().as_u16().to_string())
        .record(started.elapsed().as_secs_f64());
    resp
}

#[cfg(test)]
mod tests {
    use super::scoped_key;

    #[test]
    fn a_tenant_named_admin_does_not_share_the_administrators_keys() {
        assert_ne!(scoped_key(Some("admin"), "k"), scoped_key(None, "k"));
        assert_ne!(scoped_key(Some("a"), "k"), scoped_key(Some("b"), "k"));
        assert_eq!(scoped_key(Some("a"), "k"), scoped_key(Some("a"), "k"));
    }
}
