//! `/v1/workers` and `/v1/checkpoints`: the calls a worker makes (register, heartbeat,
//! fetch assignments, report checkpoints) and the administrator's view of the fleet.

use super::error::ApiError;
use super::ApiState;
use crate::state::{Command, CommandResult};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use weir_core::ids::WorkerId;
use weir_core::wire::{
    AssignmentRef, Assignments, CheckpointReportBatch, CheckpointReportResults, Lease,
    RegisterWorkerRequest, WorkerAssignment, WorkerStatus,
};

/// Reports one worker may send in one batch.
pub const CHECKPOINT_REPORTS_PER_BATCH_MAX: usize = 4096;

fn valid_worker_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `POST /v1/workers`: register (or re-register after a restart) and get a lease.
pub async fn register(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Json(req): Json<RegisterWorkerRequest>,
) -> Result<Json<Lease>, ApiError> {
    state.principal(&headers)?.require_admin()?;
    if !valid_worker_id(&req.id.0) {
        return Err(ApiError::bad_field(
            "id",
            "a worker id is 1 to 128 of a-z, A-Z, 0-9, -, _ and .",
        ));
    }
    let at_ms = state.coordinator.seams().clock.now_ms();
    state
        .coordinator
        .write(Command::RegisterWorker {
            worker: req.id.clone(),
            addr: req.addr,
            at_ms,
        })
        .await?;
    Ok(Json(state.coordinator.heartbeat(&req.id)?))
}

/// `DELETE /v1/workers/{id}`: a worker leaving on purpose; its partitions move at once
/// (with epoch + 1) instead of after its lease runs out.
pub async fn deregister(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.principal(&headers)?.require_admin()?;
    state
        .coordinator
        .write(Command::RemoveWorker {
            worker: WorkerId(id),
            reason: "left".into(),
        })
        .await?;
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
    state.coordinator.linearizable().await?;
    let worker = WorkerId(id);
    let s = state.coordinator.state().read();
    if !s.control.workers.contains_key(&worker) {
        return Err(ApiError::not_found(format!("worker {worker}")));
    }
    let assignments = s
        .control
        .assignments_of(&worker)
        .into_iter()
        .map(|(job, partition, epoch)| {
            let j = &s.control.jobs[&job];
            WorkerAssignment {
                job,
                partition,
                epoch,
                job_version: j.version,
                spec: j.spec.clone(),
            }
        })
        .collect();
    let unknown_partition_counts = s
        .control
        .jobs
        .values()
        .filter(|j| j.partition_count.is_none() && j.state == weir_core::wire::JobState::Pending)
        .map(|j| {
            (
                j.id,
                j.spec["source"]["topic"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    Ok(Json(Assignments {
        worker,
        assignments,
        unknown_partition_counts,
    }))
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
    Json(batch): Json<CheckpointReportBatch>,
) -> Result<(StatusCode, Json<CheckpointReportResults>), ApiError> {
    state.principal(&headers)?.require_admin()?;
    if batch.reports.len() > CHECKPOINT_REPORTS_PER_BATCH_MAX {
        return Err(ApiError::bad_field(
            "reports",
            format!("at most {CHECKPOINT_REPORTS_PER_BATCH_MAX} reports per batch"),
        ));
    }
    let at_ms = state.coordinator.seams().clock.now_ms();
    let result = state
        .coordinator
        .write(Command::Checkpoint {
            worker: batch.worker,
            reports: batch.reports,
            at_ms,
        })
        .await?;
    match result {
        CommandResult::CheckpointResults(results) => {
            Ok((StatusCode::OK, Json(CheckpointReportResults { results })))
        }
        other => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unexpected answer {other:?}"),
        )),
    }
}
