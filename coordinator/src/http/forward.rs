//! Sends `/v1` requests that reach a follower on to the leader, and relays the answer.
//!
//! A forwarded write always carries an idempotency key (the client's, or one the follower
//! makes), so the follower may send it again: while a forwarded request is unanswered the
//! follower watches openraft's view of the leader, and when another leader is elected (the
//! old one frozen or partitioned) or the leader cannot be reached, it sends the request to
//! the new leader, within [`FORWARD_TIMEOUT_MS`] in all. The key makes the state machine
//! apply it once even if both leaders received it.

use super::error::ApiError;
use super::ApiState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::time::Duration;
use tokio::time::Instant;

/// Marks a forwarded request, so it is never forwarded twice.
pub const FORWARDED_HEADER: &str = "x-weir-forwarded";
/// How long a forwarded request may take, over all the leaders it is sent to.
pub const FORWARD_TIMEOUT_MS: u64 = 10_000;
/// Sends of one request to leaders before the follower gives up with a 503.
pub const FORWARD_ATTEMPTS_MAX: u32 = 5;
/// How often a follower waiting on a leader's answer checks who leads now.
const LEADER_CHECK_INTERVAL_MS: u64 = 50;
/// After a send failed, how long to wait for openraft to name another leader before
/// sending to the same one again.
const FAILED_SEND_PAUSE_MS: u64 = 300;
/// Connecting to a leader may take this long.
const FORWARD_CONNECT_TIMEOUT_MS: u64 = 500;

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
            .connect_timeout(Duration::from_millis(FORWARD_CONNECT_TIMEOUT_MS))
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

/// Whether this member would send `req` on to the leader rather than serve it.
pub(super) fn will_forward(state: &ApiState, req: &Request) -> bool {
    !served_locally(req)
        && !state.coordinator.is_leader()
        && !req.headers().contains_key(FORWARDED_HEADER)
}

/// Middleware: serve here when this node leads (or for local reads), else forward; either
/// way the answer names the leader (`x-weir-leader`) for the client's next requests.
pub async fn to_leader(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let mut response = serve_or_forward(&state, req, next).await;
    if let (Some(_), Some(addr)) = state.coordinator.leader() {
        if let Ok(value) = HeaderValue::from_str(&addr) {
            response
                .headers_mut()
                .insert(weir_core::wire::LEADER_HEADER, value);
        }
    }
    response
}

async fn serve_or_forward(state: &ApiState, req: Request, next: Next) -> Response {
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
    match forward(state, req, next).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

/// An idempotency key for a forwarded write the client sent without one.
fn new_key(state: &ApiState) -> String {
    let mut bytes = [0u8; 16];
    state.coordinator.seams().entropy.fill(&mut bytes);
    format!("fwd-{}", hex::encode(bytes))
}

/// Why one send to a leader ended without an answer to relay.
enum AttemptEnd {
    /// Another leader was elected meanwhile.
    LeaderChanged,
    /// The leader could not be reached or broke off.
    Failed(String),
}

/// Where a request goes next.
enum Target {
    /// The leader, by id and address.
    Leader(u64, String),
    /// This member was elected meanwhile: it serves the request itself.
    Here,
}

async fn forward(state: &ApiState, req: Request, next: Next) -> Result<Response, ApiError> {
    let deadline = Instant::now() + Duration::from_millis(FORWARD_TIMEOUT_MS);
    let (parts, body) = req.into_parts();
    super::json_body::check_declared_length(&parts.headers)?;
    let body = super::json_body::read_body(body).await?;
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    let mut headers = reqwest::header::HeaderMap::new();
    for name in [
        axum::http::HeaderName::from_static(super::IDEMPOTENCY_HEADER),
        axum::http::header::AUTHORIZATION,
        axum::http::header::CONTENT_TYPE,
    ] {
        if let Some(v) = parts.headers.get(&name) {
            headers.insert(name, v.clone());
        }
    }
    if parts.method != Method::GET && super::client_idempotency_key(&parts.headers).is_none() {
        if let Ok(v) = HeaderValue::from_str(&new_key(state)) {
            headers.insert(super::IDEMPOTENCY_HEADER, v);
        }
    }
    headers.insert(FORWARDED_HEADER, HeaderValue::from_static("1"));

    let mut last = String::from("no leader is elected yet");
    for _ in 0..FORWARD_ATTEMPTS_MAX {
        let (leader_id, addr) = match wait_for_leader(state, None, deadline).await {
            Some(Target::Leader(id, addr)) => (id, addr),
            Some(Target::Here) => {
                let mut parts = parts;
                // The client's own key or the one made here: a request already sent to
                // the old leader is applied once.
                for (name, value) in &headers {
                    if name.as_str() == super::IDEMPOTENCY_HEADER {
                        parts.headers.insert(name.clone(), value.clone());
                    }
                }
                return Ok(next.run(Request::from_parts(parts, Body::from(body))).await);
            }
            None => break,
        };
        let send = send_once(state, &parts.method, &addr, &path, &headers, body.clone());
        match watch_leader(state, leader_id, deadline, send).await {
            Ok(resp) => return Ok(resp),
            Err(AttemptEnd::LeaderChanged) => {
                last = format!("the leader at {addr} was replaced");
            }
            Err(AttemptEnd::Failed(e)) => {
                last = e;
                // Give openraft a moment to name another leader instead of hammering the
                // one that did not answer; it may also still lead (a dropped connection).
                let pause = Instant::now() + Duration::from_millis(FAILED_SEND_PAUSE_MS);
                wait_for_leader(state, Some(leader_id), pause.min(deadline)).await;
            }
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the leader did not answer: {last}; retry"),
    ))
}

/// The current leader (other than `not`), waiting for one until `deadline`.
async fn wait_for_leader(state: &ApiState, not: Option<u64>, deadline: Instant) -> Option<Target> {
    loop {
        if state.coordinator.is_leader() {
            return Some(Target::Here);
        }
        if let (Some(id), Some(addr)) = state.coordinator.leader() {
            if Some(id) != not && id != state.coordinator.id() {
                return Some(Target::Leader(id, addr));
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(LEADER_CHECK_INTERVAL_MS)).await;
    }
}

/// Runs `send` until it answers, the deadline passes, or openraft names a leader other
/// than `leader_id`.
async fn watch_leader(
    state: &ApiState,
    leader_id: u64,
    deadline: Instant,
    send: impl std::future::Future<Output = Result<Response, String>>,
) -> Result<Response, AttemptEnd> {
    tokio::pin!(send);
    loop {
        tokio::select! {
            resp = &mut send => return resp.map_err(AttemptEnd::Failed),
            _ = tokio::time::sleep(Duration::from_millis(LEADER_CHECK_INTERVAL_MS)) => {
                let (now, _) = state.coordinator.leader();
                if now.is_some_and(|id| id != leader_id) {
                    return Err(AttemptEnd::LeaderChanged);
                }
                if Instant::now() >= deadline {
                    return Err(AttemptEnd::Failed(format!(
                        "no answer within {FORWARD_TIMEOUT_MS} ms"
                    )));
                }
            }
        }
    }
}

async fn send_once(
    state: &ApiState,
    method: &Method,
    addr: &str,
    path: &str,
    headers: &reqwest::header::HeaderMap,
    body: Bytes,
) -> Result<Response, String> {
    let url = format!("http://{addr}{path}");
    let resp = state
        .forwarder
        .client
        .request(method.clone(), url)
        .headers(headers.clone())
        .body(body)
        .send()
        .await
        .map_err(|e| format!("the leader at {addr} did not answer: {e}"))?;
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .cloned();
    let retry_after = resp.headers().get(axum::http::header::RETRY_AFTER).cloned();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| format!("the leader at {addr} broke off its answer: {e}"))?;
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    if let Some(ct) = content_type {
        response
            .headers_mut()
            .insert(axum::http::header::CONTENT_TYPE, ct);
    }
    if let Some(ra) = retry_after {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, ra);
    }
    Ok(response)
}
