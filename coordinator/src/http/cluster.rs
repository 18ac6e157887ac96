//! `/v1/cluster`: the group's status and membership changes.

use super::error::ApiError;
use super::extract::ApiPath as Path;
use super::json_body::JsonBody;
use super::ApiState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use weir_core::wire::{AddMemberRequest, ClusterStatus};

/// `GET /v1/cluster`: this node's view of the group (served locally, for status displays
/// that must work while there is no leader).
pub async fn status(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<ClusterStatus>, ApiError> {
    state.principal(&headers)?;
    Ok(Json(state.coordinator.cluster_status()))
}

/// `POST /v1/cluster/members`: add a coordinator (learner first, then voter).
pub async fn add_member(
    State(state): State<ApiState>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<AddMemberRequest>,
) -> Result<(StatusCode, Json<ClusterStatus>), ApiError> {
    state.principal(&headers)?.require_admin()?;
    if req.addr.trim().is_empty() || !req.addr.contains(':') {
        return Err(ApiError::bad_field("addr", "addr must be host:port"));
    }
    state.coordinator.add_member(req.id, req.addr).await?;
    Ok((StatusCode::OK, Json(state.coordinator.cluster_status())))
}

/// `DELETE /v1/cluster/members/{id}`.
pub async fn remove_member(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Result<Json<ClusterStatus>, ApiError> {
    state.principal(&headers)?.require_admin()?;
    state.coordinator.remove_member(id).await?;
    Ok(Json(state.coordinator.cluster_status()))
}
