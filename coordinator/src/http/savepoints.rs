//! `/v1/jobs/{id}/savepoints`: take a savepoint (202), list a job's savepoints, delete one.
//! Tenant-scoped like every job route (another tenant's job is a 404), idempotent under an
//! `Idempotency-Key`; what a savepoint pins is decided by `state::savepoints`.

use super::error::ApiError;
use super::extract::{ApiPath as Path, ApiQuery as Query};
use super::jobs::{read_barrier, visible_job, ReadQuery};
use super::json_body::RawBody;
use super::ApiState;
use crate::state::{Command, CommandResult};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use weir_core::ids::{JobId, SavepointId};
use weir_core::wire::SavepointInfo;

/// `POST /v1/jobs/{id}/savepoints` → 202 with the savepoint: `complete` at once for a
/// job that is not stopping, `pending` until a stopping job is stopped.
pub async fn take(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: RawBody,
) -> Result<(StatusCode, Json<SavepointInfo>), ApiError> {
    super::job_lifecycle::no_body(&body)?;
    let principal = state.principal(&headers)?;
    let id = parse_job_id(&id)?;
    let at_ms = state.coordinator.seams().clock.now_ms();
    let command = Command::TakeSavepoint {
        job: id,
        tenant: principal.tenant().cloned(),
        at_ms,
    };
    let answer = state
        .coordinator
        .write(state.once(&headers, &principal, command))
        .await?;
    let CommandResult::SavepointTaken { id: savepoint } = answer else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unexpected answer {answer:?}"),
        ));
    };
    let s = state.coordinator.state().read();
    let job = visible_job(&s.control.jobs, id, &principal)?;
    let info = job
        .savepoints
        .get(&savepoint)
        .map(|sp| job.savepoint_info(sp))
        // Deleted by another request in the meantime.
        .ok_or_else(|| ApiError::not_found(format!("savepoint {savepoint} of job {id}")))?;
    Ok((StatusCode::ACCEPTED, Json(info)))
}

/// `GET /v1/jobs/{id}/savepoints`: the job's savepoints, oldest first.
pub async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<ReadQuery>,
) -> Result<Json<Vec<SavepointInfo>>, ApiError> {
    let principal = state.principal(&headers)?;
    let id = parse_job_id(&id)?;
    read_barrier(&state, &query).await?;
    let s = state.coordinator.state().read();
    let job = visible_job(&s.control.jobs, id, &principal)?;
    Ok(Json(
        job.savepoints
            .values()
            .map(|sp| job.savepoint_info(sp))
            .collect(),
    ))
}

/// `DELETE /v1/jobs/{id}/savepoints/{sp}` → 204; its snapshots are pruned like any other
/// old snapshot from then on.
pub async fn delete(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((id, savepoint)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let principal = state.principal(&headers)?;
    let id = parse_job_id(&id)?;
    let savepoint = parse_savepoint_id(&savepoint)
        .ok_or_else(|| ApiError::not_found(format!("savepoint {savepoint} of job {id}")))?;
    let command = Command::DeleteSavepoint {
        job: id,
        tenant: principal.tenant().cloned(),
        savepoint,
    };
    state
        .coordinator
        .write(state.once(&headers, &principal, command))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn parse_job_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse::<u64>()
        .map(JobId)
        .map_err(|_| ApiError::not_found(format!("job {raw}")))
}

/// A savepoint id as a path or body names it: its number, optionally written `sp-N`.
pub(super) fn parse_savepoint_id(raw: &str) -> Option<SavepointId> {
    let digits = raw.strip_prefix("sp-").unwrap_or(raw);
    digits.parse::<u64>().ok().map(SavepointId)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn savepoint_ids_read_as_numbers_with_or_without_the_prefix() {
        assert_eq!(parse_savepoint_id("3"), Some(SavepointId(3)));
        assert_eq!(parse_savepoint_id("sp-12"), Some(SavepointId(12)));
        for bad in ["", "sp-", "x", "-1", "sp-1.5"] {
            assert_eq!(parse_savepoint_id(bad), None, "{bad}");
        }
    }
}
