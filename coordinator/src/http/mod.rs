//! The coordinator's HTTP surface (docs/HTTP_API.md): `/healthz`, `/metrics` and the
//! `/v1` API ([`router`]), and the Raft RPC endpoint ([`raft_router`]), served apart by
//! [`crate::server`] so that API load never delays heartbeats and votes.
//!
//! Any coordinator accepts any request. `/v1` requests other than `GET /v1/cluster` are
//! served by the leader: a follower forwards them (method, path, token, body and an
//! idempotency key) and relays the answer, so writes go through the leader and reads are
//! linearizable (read-index on the leader). `?consistency=stale` reads the local state
//! instead.
//!
//! Every `/v1` request is first admitted ([`admission`]): the caller is authenticated and
//! counted against the in-flight bounds (429 with `Retry-After` when over them) before its
//! body is read. Every error is JSON `{error, field?}`.

mod admission;
mod auth;
mod cluster;
mod error;
mod extract;
mod forward;
mod job_lifecycle;
mod jobs;
mod json_body;
mod savepoints;
mod tenants;
mod upgrades;
mod workers;

pub use admission::{
    ADMIN_IN_FLIGHT_PER_MEMBER_MAX, RETRY_AFTER_SECONDS, TENANTS_IN_FLIGHT_PER_MEMBER_MAX,
    TENANT_IN_FLIGHT_MAX, UNKNOWN_TOKEN_IN_FLIGHT_PER_MEMBER_MAX,
};
pub use auth::{hash_token, new_token};
pub use error::ApiError;
pub use json_body::{nesting_too_deep, BODY_NESTING_DEPTH_MAX, BODY_PARSES_IN_FLIGHT_MAX};

use crate::network::http::RAFT_RPC_PATH;
use crate::network::{serve_rpc, RaftRpc};
use crate::node::Coordinator;
use crate::state::{Command, IDEMPOTENCY_KEY_BYTES_MAX};
use auth::Principal;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use sha2::{Digest, Sha256};
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
    /// Requests in flight on this member, per caller, for load shedding.
    in_flight: Arc<admission::InFlight>,
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
            in_flight: Arc::new(admission::InFlight::default()),
        }
    }

    fn principal(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        auth::authenticate(headers, &self.admin_token_hash, &self.coordinator)
    }

    /// The request's idempotency key, scoped to whoever sent it so that one tenant's key
    /// never answers another's request.
    fn idempotency_key(&self, headers: &HeaderMap, principal: &Principal) -> Option<String> {
        let key = client_idempotency_key(headers)?;
        Some(scoped_key(principal.tenant().map(|t| t.0.as_str()), key))
    }

    /// `command`, made idempotent when the request carries an `Idempotency-Key`: a retry
    /// with the same key gets the first answer instead of being applied again, and the
    /// same key with a different request is refused (422).
    fn once(&self, headers: &HeaderMap, principal: &Principal, command: Command) -> Command {
        match self.idempotency_key(headers, principal) {
            Some(key) => {
                let digest = headers
                    .get(REQUEST_DIGEST_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(|d| caller_digest(d, principal));
                Command::Idempotent {
                    key,
                    command: Box::new(command),
                    digest,
                }
            }
            None => command,
        }
    }
}

/// The client's idempotency key as sent, when present and not blank.
fn client_idempotency_key(headers: &HeaderMap) -> Option<&str> {
    let key = headers.get(IDEMPOTENCY_HEADER)?.to_str().ok()?.trim();
    (!key.is_empty()).then_some(key)
}

/// Refuses an idempotency key that is not visible ASCII or is longer than
/// [`IDEMPOTENCY_KEY_BYTES_MAX`] as the client sent it, naming the header.
fn check_idempotency_key(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(raw) = headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(());
    };
    let Ok(key) = raw.to_str() else {
        return Err(ApiError::bad_field(
            IDEMPOTENCY_HEADER_NAME,
            "the Idempotency-Key must be visible ASCII",
        ));
    };
    if key.trim().len() > IDEMPOTENCY_KEY_BYTES_MAX {
        return Err(ApiError::bad_field(
            IDEMPOTENCY_HEADER_NAME,
            format!(
                "the Idempotency-Key is {} bytes long; the limit is {IDEMPOTENCY_KEY_BYTES_MAX}",
                key.trim().len()
            ),
        ));
    }
    Ok(())
}

/// An idempotency key in the namespace of whoever sent it: the administrator's, or one
/// tenant's. A tenant may be named `admin`, so the two kinds cannot share a form.
fn scoped_key(tenant: Option<&str>, key: &str) -> String {
    match tenant {
        Some(tenant) => format!("tenant:{tenant}/{key}"),
        None => format!("admin/{key}"),
    }
}

/// SHA-256 (hex) of a request: method, concrete path with its query, and body. Two
/// requests with the same digest ask for the same thing.
fn request_digest(method: &Method, path_and_query: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.as_str().as_bytes());
    h.update(b"\n");
    h.update(path_and_query.as_bytes());
    h.update(b"\n");
    h.update(body);
    hex::encode(h.finalize())
}

/// A request digest bound to the caller as well.
fn caller_digest(request_digest: &str, principal: &Principal) -> String {
    let caller = scoped_key(principal.tenant().map(|t| t.0.as_str()), "");
    hex::encode(Sha256::digest(
        format!("{caller}\n{request_digest}").as_bytes(),
    ))
}

/// Header carrying a client's idempotency key for a write (lower case, as HTTP/1 sends it).
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// The header's name as errors name it.
pub const IDEMPOTENCY_HEADER_NAME: &str = "Idempotency-Key";
/// Internal: the digest of the request being served, set by [`digest_request`] on the
/// member that serves it (any value a client sends is replaced or removed).
const REQUEST_DIGEST_HEADER: &str = "x-weir-request-digest";

/// The `/v1` API, `/healthz` and `/metrics` of one coordinator.
pub fn router(state: ApiState) -> Router {
    let v1 = Router::new()
        .route("/v1/cluster", get(cluster::status))
        .route("/v1/cluster/members", post(cluster::add_member))
        .route("/v1/cluster/members/{id}", delete(cluster::remove_member))
        .route("/v1/tenants", post(tenants::create).get(tenants::list))
        .route("/v1/tenants/{name}/token", post(tenants::rotate_token))
        .route("/v1/jobs", post(jobs::submit).get(jobs::list))
        .route(
            "/v1/jobs/{id}",
            get(jobs::get).delete(jobs::cancel).put(upgrades::upgrade),
        )
        .route("/v1/jobs/{id}/versions", get(upgrades::versions))
        .route("/v1/jobs/{id}/rescale", post(upgrades::rescale))
        .route("/v1/jobs/{id}/checkpoints", get(jobs::checkpoints))
        .route("/v1/jobs/{id}/pause", post(job_lifecycle::pause))
        .route("/v1/jobs/{id}/resume", post(job_lifecycle::resume))
        .route("/v1/jobs/{id}/stop", post(job_lifecycle::stop))
        .route("/v1/jobs/{id}/start", post(job_lifecycle::start))
        .route(
            "/v1/jobs/{id}/savepoints",
            post(savepoints::take).get(savepoints::list),
        )
        .route(
            "/v1/jobs/{id}/savepoints/{savepoint}",
            delete(savepoints::delete),
        )
        .route("/v1/jobs/{id}/partitions", post(jobs::report_partitions))
        .route("/v1/workers", get(workers::list).post(workers::register))
        .route("/v1/workers/{id}", delete(workers::deregister))
        .route("/v1/workers/{id}/heartbeat", post(workers::heartbeat))
        .route("/v1/workers/{id}/assignments", get(workers::assignments))
        .route("/v1/workers/{id}/reports", post(workers::report))
        .route("/v1/checkpoints", post(workers::report_checkpoints))
        // Innermost first: the digest is taken where the request is served, after
        // forwarding, which comes after admission.
        .layer(middleware::from_fn(digest_request))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            forward::to_leader,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            admission::admit,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(render_metrics))
        // Peers send Raft RPCs on connections of their own, served on the Raft runtime
        // (`crate::server`); one arriving on an API connection is still answered.
        .route(RAFT_RPC_PATH, post(raft_rpc_on_api))
        .merge(v1)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(record_latency))
        .layer(DefaultBodyLimit::max(REQUEST_BODY_BYTES_MAX))
        .with_state(state)
}

/// What the Raft listener serves: only `POST /raft/rpc`.
#[derive(Clone)]
pub struct RaftRpcState {
    pub coordinator: Arc<Coordinator>,
    /// SHA-256 of the administrator token, which peers authenticate with.
    pub admin_token_hash: Arc<str>,
}

/// The router of the Raft listener: the RPC route and JSON errors for anything else.
pub fn raft_router(state: RaftRpcState) -> Router {
    Router::new()
        .route(RAFT_RPC_PATH, post(raft_rpc))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this endpoint does not take that method",
    )
}

/// Middleware: on the member serving a write that carries an idempotency key, reads the
/// body (within the size bound) and records the request's digest for [`ApiState::once`].
async fn digest_request(req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    parts.headers.remove(REQUEST_DIGEST_HEADER);
    if parts.method == Method::GET || client_idempotency_key(&parts.headers).is_none() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    if let Err(e) = json_body::check_declared_length(&parts.headers) {
        return e.into_response();
    }
    let bytes = match json_body::read_body(body).await {
        Ok(bytes) => bytes,
        Err(e) => return e.into_response(),
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let digest = request_digest(&parts.method, path, &bytes);
    if let Ok(value) = HeaderValue::from_str(&digest) {
        parts.headers.insert(REQUEST_DIGEST_HEADER, value);
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

async fn render_metrics(State(state): State<ApiState>) -> Response {
    match &state.metrics {
        Some(handle) => handle.render().into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "metrics are not enabled in this process",
        )
        .into_response(),
    }
}

async fn raft_rpc_on_api(State(state): State<ApiState>, req: Request) -> Response {
    let state = RaftRpcState {
        coordinator: state.coordinator,
        admin_token_hash: state.admin_token_hash,
    };
    raft_rpc(State(state), req).await
}

/// `POST /raft/rpc`: the token is checked before the body is read.
async fn raft_rpc(State(state): State<RaftRpcState>, req: Request) -> Response {
    // Peers authenticate with the administrator token, which all members share.
    let authorized =
        auth::bearer(req.headers()).is_some_and(|t| *hash_token(t) == *state.admin_token_hash);
    if !authorized {
        return ApiError::unauthorized().into_response();
    }
    if let Err(e) = json_body::check_declared_length(req.headers()) {
        return e.into_response();
    }
    let bytes = match json_body::read_body(req.into_body()).await {
        Ok(bytes) => bytes,
        Err(e) => return e.into_response(),
    };
    let rpc: RaftRpc = match serde_json::from_slice(&bytes) {
        Ok(rpc) => rpc,
        Err(e) => {
            return ApiError::new(StatusCode::BAD_REQUEST, format!("not a Raft RPC: {e}"))
                .into_response()
        }
    };
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
    use super::*;

    #[test]
    fn a_tenant_named_admin_does_not_share_the_administrators_keys() {
        assert_ne!(scoped_key(Some("admin"), "k"), scoped_key(None, "k"));
        assert_ne!(scoped_key(Some("a"), "k"), scoped_key(Some("b"), "k"));
        assert_eq!(scoped_key(Some("a"), "k"), scoped_key(Some("a"), "k"));
    }

    #[test]
    fn the_digest_covers_method_path_body_and_caller() {
        let d = request_digest(&Method::POST, "/v1/jobs", b"x");
        assert_eq!(d, request_digest(&Method::POST, "/v1/jobs", b"x"));
        assert_ne!(d, request_digest(&Method::PUT, "/v1/jobs", b"x"));
        assert_ne!(d, request_digest(&Method::POST, "/v1/jobs?tenant=a", b"x"));
        assert_ne!(d, request_digest(&Method::POST, "/v1/jobs", b"y"));
        let a = Principal::Tenant(weir_core::ids::TenantName("a".into()));
        let b = Principal::Tenant(weir_core::ids::TenantName("b".into()));
        assert_ne!(caller_digest(&d, &a), caller_digest(&d, &b));
        assert_ne!(caller_digest(&d, &a), caller_digest(&d, &Principal::Admin));
    }

    #[test]
    fn the_key_bound_is_on_the_key_as_sent() {
        let mut h = HeaderMap::new();
        h.insert(IDEMPOTENCY_HEADER, "k".repeat(120).parse().unwrap());
        assert!(check_idempotency_key(&h).is_ok());
        h.insert(
            IDEMPOTENCY_HEADER,
            "k".repeat(IDEMPOTENCY_KEY_BYTES_MAX + 1).parse().unwrap(),
        );
        let e = check_idempotency_key(&h).unwrap_err();
        assert_eq!(e.field.as_deref(), Some(IDEMPOTENCY_HEADER_NAME));
    }
}
