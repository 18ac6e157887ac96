//! Sends `/v1` requests that reach a follower on to the leader, and relays the answer.

use super::error::ApiError;
use super::ApiState;
use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// Marks a forwarded request, so it is never forwarded twice.
pub const FORWARDED_HEADER: &str = "x-weir-forwarded";
/// How long a forwarded request may take at the leader.
const FORWARD_TIMEOUT_MS: u64 = 10_000;

/// The HTTP client followers forward with.
#[derive(Debug, Clone)]
pub struct Forwarder {
    client: reqwest::Client,
}

impl Forwarder {
    /// A forwarder with pooled connections.
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(FORWARD_TIMEOUT_MS))
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .build()
            .unwrap_or_default();
        Forwarder { client }
    }
}

impl Default for Forwarder {
    fn default() -> Self {
        Self::new()
    }
}

fn served_locally(req: &Request) -> bool {
    let stale = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "consistency=stale"));
    let cluster_read = req.method() == Method::GET && req.uri().path() == "/v1/cluster";
    stale && req.method() == Method::GET || cluster_read
}

/// Middleware: serve here when this node leads (or for local reads), else forward.
pub async fn to_leader(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    if served_locally(&req) || state.coordinator.is_leader() {
        return next.run(req).await;
    }
    if req.headers().contains_key(FORWARDED_HEADER) {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "leadership is changing; retry",
        )
        .into_response();
    }
    let (_, leader_addr) = state.coordinator.leader();
    let Some(addr) = leader_addr else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no leader is elected yet; retry",
        )
        .into_response();
    };
    match forward(&state.forwarder, &addr, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn forward(forwarder: &Forwarder, addr: &str, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let body = to_bytes(body, super::REQUEST_BODY_BYTES_MAX)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("cannot read request body: {e}"),
            )
        })?;
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let url = format!("http://{addr}{path}");
    let mut out = forwarder
        .client
        .request(parts.method.clone(), url)
        .body(body);
    for name in [
        axum::http::HeaderName::from_static(super::IDEMPOTENCY_HEADER),
        axum::http::header::AUTHORIZATION,
        axum::http::header::CONTENT_TYPE,
    ] {
        if let Some(v) = parts.headers.get(&name) {
            out = out.header(name, v.clone());
        }
    }
    out = out.header(FORWARDED_HEADER, HeaderValue::from_static("1"));
    let resp = out.send().await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the leader at {addr} did not answer: {e}"),
        )
    })?;
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .cloned();
    let bytes = resp.bytes().await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the leader at {addr} broke off its answer: {e}"),
        )
    })?;
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    if let Some(ct) = content_type {
        response
            .headers_mut()
            .insert(axum::http::header::CONTENT_TYPE, ct);
    }
    Ok(response)
}
