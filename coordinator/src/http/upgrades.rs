//! `PUT /v1/jobs/{id}` (an upgrade: a new version of the job, its state carried stage by
//! stage) and `GET /v1/jobs/{id}/versions`. Tenant-scoped like every job route (another
//! tenant's job is a 404) and idempotent under an `Idempotency-Key`. What an upgrade may
//! change is decided by `weir_core::spec::upgrade` inside the replicated command (a 400
//! naming the stage and the reason); a job in a state that does not allow it, or one that
//! repartitions, is a 409.
//!
//! `POST /v1/jobs/{id}/rescale` (`{"parallelism": N}`) is an upgrade to the current spec
//! with a new `parallelism`, for a job that repartitions (`state/rescale.rs`).
//!
//! The body is `{"spec": ..., "savepoint": N, "allow_state_drop": [ids]}`, the spec a JSON
//! object or a string holding YAML or JSON; or the spec alone, in any form `POST /v1/jobs`
//! takes, with `?savepoint=N&allow_state_drop=a,b` in the query.

use super::error::ApiError;
use super::extract::{ApiPath as Path, ApiQuery as Query};
use super::jobs::{read_barrier, summary, visible_job, ReadQuery};
use super::json_body::{self, RawBody};
use super::ApiState;
use crate::state::{Command, CommandResult};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use weir_core::ids::{JobId, SavepointId};
use weir_core::spec::parse_job_spec;
use weir_core::wire::{JobVersionInfo, RescaleRequest, UpgradeAnswer, UpgradeRequest};

/// Ids one upgrade may name in `allow_state_drop` (a pipeline has at most 64 stages).
const STATE_DROP_IDS_MAX: usize = 64;

/// The query of `PUT /v1/jobs/{id}` when the body is the spec alone.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeQuery {
    savepoint: Option<u64>,
    /// Stage ids, comma-separated.
    allow_state_drop: Option<String>,
}

/// `PUT /v1/jobs/{id}` → 202 with the job's summary, the new version and its savepoint.
pub async fn upgrade(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<UpgradeQuery>,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<UpgradeAnswer>), ApiError> {
    let principal = state.principal(&headers)?;
    let id = parse_job_id(&id)?;
    if json_body::nesting_too_deep(&body, json_body::BODY_NESTING_DEPTH_MAX) {
        return Err(json_body::too_deep());
    }
    let request = json_body::parse_bounded(|| upgrade_request(&body, query)).await?;
    let at_ms = state.coordinator.seams().clock.now_ms();
    let command = Command::UpgradeJob {
        job: id,
        tenant: principal.tenant().cloned(),
        spec: request.spec,
        savepoint: request.savepoint,
        allow_state_drop: request.allow_state_drop,
        at_ms,
    };
    answer_upgrade(&state, &headers, &principal, id, command).await
}

/// `POST /v1/jobs/{id}/rescale` with `{"parallelism": N}` → 202 as an upgrade: the job's
/// summary, the version the rescale makes (the spec with the new `parallelism`) and the
/// savepoint its downstream stage's state is redistributed from.
pub async fn rescale(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<UpgradeAnswer>), ApiError> {
    let principal = state.principal(&headers)?;
    let id = parse_job_id(&id)?;
    let request: RescaleRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_field("parallelism", e.to_string()))?;
    let at_ms = state.coordinator.seams().clock.now_ms();
    let command = Command::RescaleJob {
        job: id,
        tenant: principal.tenant().cloned(),
        parallelism: request.parallelism,
        at_ms,
    };
    answer_upgrade(&state, &headers, &principal, id, command).await
}

/// Writes an upgrade (or rescale) command and answers with what it started.
async fn answer_upgrade(
    state: &ApiState,
    headers: &HeaderMap,
    principal: &super::auth::Principal,
    id: JobId,
    command: Command,
) -> Result<(StatusCode, Json<UpgradeAnswer>), ApiError> {
    let answer = state
        .coordinator
        .write(state.once(headers, principal, command))
        .await?;
    let CommandResult::JobSubmitted { version, .. } = answer else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unexpected answer {answer:?}"),
        ));
    };
    let s = state.coordinator.state().read();
    let job = visible_job(&s.control.jobs, id, principal)?;
    let savepoint = job
        .upgrade
        .as_ref()
        .map(|u| u.savepoint)
        .or_else(|| job.versions.last().and_then(|v| v.savepoint))
        .unwrap_or(SavepointId(0));
    Ok((
        StatusCode::ACCEPTED,
        Json(UpgradeAnswer {
            job: summary(job),
            upgrade_version: version,
            savepoint,
        }),
    ))
}

/// `GET /v1/jobs/{id}/versions`: the job's versions, oldest first.
pub async fn versions(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<ReadQuery>,
) -> Result<Json<Vec<JobVersionInfo>>, ApiError> {
    let principal = state.principal(&headers)?;
    let id = parse_job_id(&id)?;
    read_barrier(&state, &query).await?;
    let s = state.coordinator.state().read();
    let job = visible_job(&s.control.jobs, id, &principal)?;
    Ok(Json(job.versions()))
}

fn parse_job_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse::<u64>()
        .map(JobId)
        .map_err(|_| ApiError::not_found(format!("job {raw}")))
}

/// The upgrade a body (and query) asks for, its spec parsed, validated and as JSON.
fn upgrade_request(body: &[u8], query: UpgradeQuery) -> Result<UpgradeRequest, ApiError> {
    let wrapped = body.trim_ascii_start().starts_with(b"{")
        && serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v.get("spec").is_some());
    let (spec_bytes, savepoint, allow_state_drop) = if wrapped {
        if query.savepoint.is_some() || query.allow_state_drop.is_some() {
            return Err(ApiError::bad_field(
                "savepoint",
                "name the savepoint and allow_state_drop in the body or in the query, not both",
            ));
        }
        let request: UpgradeRequest =
            serde_json::from_slice(body).map_err(|e| ApiError::bad_field("spec", e.to_string()))?;
        let bytes = match &request.spec {
            serde_json::Value::String(text) => text.clone().into_bytes(),
            other => {
                serde_json::to_vec(other).map_err(|e| ApiError::bad_field("spec", e.to_string()))?
            }
        };
        (bytes, request.savepoint, request.allow_state_drop)
    } else {
        let drops = query
            .allow_state_drop
            .map(|ids| ids.split(',').map(|id| id.trim().to_string()).collect())
            .unwrap_or_default();
        (body.to_vec(), query.savepoint.map(SavepointId), drops)
    };
    if allow_state_drop.len() > STATE_DROP_IDS_MAX {
        return Err(ApiError::bad_field(
            "allow_state_drop",
            format!("names more than {STATE_DROP_IDS_MAX} stages"),
        ));
    }
    let spec = parse_job_spec(&spec_bytes).map_err(|e| ApiError::bad_field(e.field, e.message))?;
    let spec = serde_json::to_value(&spec)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(UpgradeRequest {
        spec,
        savepoint,
        allow_state_drop,
    })
}
