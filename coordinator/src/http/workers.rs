//! `/v1/workers` and `/v1/checkpoints`: the calls a worker makes (register, heartbeat,
//! fetch assignments, report checkpoints) and the administrator's view of the fleet.

use super::error::ApiError;
use super::extract::ApiPath as Path;
use super::json_body::JsonBody;
use super::ApiState;
use crate::state::Refusal;
use crate::worker_calls;
use crate::write_error::WriteError;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use weir_core::ids::WorkerId;
use weir_core::wire::{
    AssignmentRef, Assignments, CheckpointReportBatch, CheckpointReportResults, Lease,
    RegisterWorkerRequest, WorkerReport, WorkerStatus,
};

/// Reports one worker may send in one batch.
pub const CHECKPOINT_REPORTS_PER_BATCH_MAX: usize = 4096;

/// `POST /v1/workers`: register (or re-register after a restart) and get a lease.
pub async fn register(
    State(state): State<ApiState>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<RegisterWorkerRequest>,
) -> Result<Json<Lease>, ApiError> {
    state.principal(&headers)?.require_admin()?;
    if !WorkerId::is_valid(&req.id.0) {
        return Err(ApiError::bad_field(
            "id",
            "a worker id is 1 to 128 of a-z, A-Z, 0-9, -, _ and .",
        ));
    }
    Ok(Json(
        worker_calls::register(&state.coordinator, &req.id, &req.addr).await?,
    ))
}

/// `DELETE /v1/workers/{id}`: a worker leaving on purpose; its partitions move at once
/// (with epoch + 1) instead of after its lease runs out.
pub async fn deregister(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.principal(&headers)?.require_admin()?;
    worker_calls::deregister(&state.coordinator, &WorkerId(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/workers/{id}/heartbeat`: renew the lease; 404 means "register again".
pub async fn heartbeat(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Lease>, ApiError> {
    state.principal(&headers)?.require_admin()?;
    Ok(Json(state.coordinator.heartbeat(&WorkerId(id))?))
}

/// `GET /v1/workers/{id}/assignments`: what the worker should run now.
pub async fn assignments(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Assignments>, ApiError> {
    state.principal(&headers)?.require_admin()?;
    let worker = WorkerId(id);
    match worker_calls::assignments(&state.coordinator, &worker).await {
        Ok(assignments) => Ok(Json(assignments)),
        Err(WriteError::Refused(Refusal::NotFound(_))) => {
            Err(ApiError::not_found(format!("worker {worker}")))
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /v1/workers`.
pub async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<Vec<WorkerStatus>>, ApiError> {
    state.principal(&headers)?.require_admin()?;
    state.coordinator.linearizable().await?;
    let s = state.coordinator.state().read();
    let rows = s
        .control
        .workers
        .values()
        .map(|w| WorkerStatus {
            id: w.id.clone(),
            addr: w.addr.clone(),
            lease_expires_at: state.coordinator.lease_expires_at_ms(&w.id),
            partitions: s
                .control
                .assignments_of(&w.id)
                .into_iter()
                .map(|(job, partition, epoch)| AssignmentRef {
                    job,
                    partition,
                    epoch,
                })
                .collect(),
        })
        .collect();
    Ok(Json(rows))
}

/// `POST /v1/checkpoints`: a worker's batch of prepared/committed reports.
pub async fn report_checkpoints(
    State(state): State<ApiState>,
    headers: HeaderMap,
    JsonBody(batch): JsonBody<CheckpointReportBatch>,
) -> Result<(StatusCode, Json<CheckpointReportResults>), ApiError> {
    state.principal(&headers)?.require_admin()?;
    if batch.reports.len() > CHECKPOINT_REPORTS_PER_BATCH_MAX {
        return Err(ApiError::bad_field(
            "reports",
            format!("at most {CHECKPOINT_REPORTS_PER_BATCH_MAX} reports per batch"),
        ));
    }
    let results =
        worker_calls::report_checkpoints(&state.coordinator, &batch.worker, batch.reports).await?;
    Ok((StatusCode::OK, Json(CheckpointReportResults { results })))
}

/// `POST /v1/workers/{id}/reports`: a partition's problem, a pending job's reason, or
/// partitions the worker fenced (see [`WorkerReport`]).
pub async fn report(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(report): JsonBody<WorkerReport>,
) -> Result<StatusCode, ApiError> {
    state.principal(&headers)?.require_admin()?;
    worker_calls::report(&state.coordinator, &WorkerId(id), report).await?;
    Ok(StatusCode::NO_CONTENT)
}
