//! `/v1/jobs`: submit, list, inspect, cancel, and the checkpoint records of a job. A tenant
//! token sees only its tenant's jobs; another tenant's job is a 404, as if it did not exist.

use super::auth::Principal;
use super::error::ApiError;
use super::extract::{ApiPath as Path, ApiQuery as Query};
use super::json_body::{self, JsonBody, RawBody};
use super::ApiState;
use crate::state::{Command, CommandResult, Job};
use crate::worker_calls;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use weir_core::ids::{JobId, TenantName};
use weir_core::spec::parse_job_spec;
use weir_core::wire::{
    CheckpointRecord, JobDetail, JobSummary, PartitionStatus, ReportPartitionsRequest, SubmittedJob,
};

/// Query of `POST /v1/jobs`: the administrator names the tenant a job belongs to.
#[derive(Debug, Deserialize)]
pub struct SubmitQuery {
    pub tenant: Option<String>,
}

/// `POST /v1/jobs` with a YAML or JSON spec → 201, 400 naming the field, or 409.
pub async fn submit(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(query): Query<SubmitQuery>,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<SubmittedJob>), ApiError> {
    let principal = state.principal(&headers)?;
    let tenant = match (&principal, query.tenant) {
        (Principal::Tenant(t), None) => t.clone(),
        (Principal::Tenant(t), Some(q)) if q == t.0 => t.clone(),
        (Principal::Tenant(_), Some(_)) => return Err(ApiError::not_found("tenant")),
        (Principal::Admin, Some(q)) => TenantName(q),
        (Principal::Admin, None) => {
            return Err(ApiError::bad_field(
                "tenant",
                "the administrator must name the tenant: ?tenant=<name>",
            ))
        }
    };
    if json_body::nesting_too_deep(&body, json_body::BODY_NESTING_DEPTH_MAX) {
        return Err(json_body::too_deep());
    }
    let spec = json_body::parse_bounded(|| parse_job_spec(&body))
        .await
        .map_err(|e| ApiError::bad_field(e.field, e.message))?;
    let spec_json = serde_json::to_value(&spec)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let at_ms = state.coordinator.seams().clock.now_ms();
    let name = spec.name.clone();
    let command = Command::SubmitJob {
        tenant,
        name: name.clone(),
        spec: spec_json,
        at_ms,
    };
    match state
        .coordinator
        .write(state.once(&headers, &principal, command))
        .await?
    {
        CommandResult::JobSubmitted { id, version } => Ok((
            StatusCode::CREATED,
            Json(SubmittedJob { id, name, version }),
        )),
        other => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unexpected answer {other:?}"),
        )),
    }
}

/// The summary row of a job, as lists and life-cycle answers show it.
pub(super) fn summary(job: &Job) -> JobSummary {
    JobSummary {
        id: job.id,
        name: job.name.clone(),
        tenant: job.tenant.clone(),
        state: job.state,
        version: job.version,
        reason: job.reason.clone(),
    }
}

/// Query of reads: `consistency=stale` serves from the local state without forwarding.
#[derive(Debug, Deserialize)]
pub struct ReadQuery {
    pub consistency: Option<String>,
}

pub(super) async fn read_barrier(state: &ApiState, query: &ReadQuery) -> Result<(), ApiError> {
    match query.consistency.as_deref() {
        None | Some("linearizable") => Ok(state.coordinator.linearizable().await?),
        Some("stale") => Ok(()),
        Some(other) => Err(ApiError::bad_field(
            "consistency",
            format!("unknown consistency {other:?}; use linearizable or stale"),
        )),
    }
}

/// `GET /v1/jobs`.
pub async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(query): Query<ReadQuery>,
) -> Result<Json<Vec<JobSummary>>, ApiError> {
    let principal = state.principal(&headers)?;
    read_barrier(&state, &query).await?;
    let s = state.coordinator.state().read();
    let jobs = s
        .control
        .jobs
        .values()
        .filter(|j| principal.tenant().is_none_or(|t| t == &j.tenant))
        .map(summary)
        .collect();
    Ok(Json(jobs))
}

fn parse_job_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse::<u64>()
        .map(JobId)
        .map_err(|_| ApiError::not_found(format!("job {raw}")))
}

/// The job `id` if `principal` may see it; another tenant's job is a 404.
pub(super) fn visible_job<'a>(
    jobs: &'a std::collections::BTreeMap<JobId, Job>,
    id: JobId,
    principal: &Principal,
) -> Result<&'a Job, ApiError> {
    jobs.get(&id)
        .filter(|j| principal.tenant().is_none_or(|t| t == &j.tenant))
        .ok_or_else(|| ApiError::not_found(format!("job {id}")))
}

/// `GET /v1/jobs/{id}`.
pub async fn get(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<ReadQuery>,
) -> Result<Json<JobDetail>, ApiError> {
    let principal = state.principal(&headers)?;
    let id = parse_job_id(&id)?;
    read_barrier(&state, &query).await?;
    let s = state.coordinator.state().read();
    let job = visible_job(&s.control.jobs, id, &principal)?;
    let partitions = job
        .partitions
        .iter()
        .map(|(partition, p)| PartitionStatus {
            partition: *partition,
            worker: p.worker.clone(),
            epoch: p.epoch,
            checkpoint: p.committed.map(|(c, _)| c),
            offset: p.committed.map(|(_, o)| o),
            problem: p.problem.clone(),
        })
        .collect();
    Ok(Json(JobDetail {
        id: job.id,
        name: job.name.clone(),
        tenant: job.tenant.clone(),
        state: job.state,
        version: job.version,
        reason: job.reason.clone(),
        partition_count: job.partition_count,
        spec: job.spec.clone(),
        partitions,
    }))
}

/// `DELETE /v1/jobs/{id}` → 202; the job goes `cancelling`, then `cancelled` once no
/// partition runs any more.
pub async fn cancel(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<JobSummary>), ApiError> {
    let principal = state.principal(&headers)?;
    let id = parse_job_id(&id)?;
    let command = Command::CancelJob {
        job: id,
        tenant: principal.tenant().cloned(),
    };
    state
        .coordinator
        .write(state.once(&headers, &principal, command))
        .await?;
    let s = state.coordinator.state().read();
    let job = visible_job(&s.control.jobs, id, &principal)?;
    Ok((StatusCode::ACCEPTED, Json(summary(job))))
}

/// `GET /v1/jobs/{id}/checkpoints`: records of every partition, newest first.
pub async fn checkpoints(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<ReadQuery>,
) -> Result<Json<Vec<CheckpointRecord>>, ApiError> {
    let principal = state.principal(&headers)?;
    let id = parse_job_id(&id)?;
    read_barrier(&state, &query).await?;
    let s = state.coordinator.state().read();
    let job = visible_job(&s.control.jobs, id, &principal)?;
    let mut records: Vec<CheckpointRecord> = job
        .partitions
        .values()
        .flat_map(|p| p.checkpoints.iter().cloned())
        .collect();
    records.sort_by(|a, b| {
        (b.prepared_at_ms, b.checkpoint, b.partition).cmp(&(
            a.prepared_at_ms,
            a.checkpoint,
            a.partition,
        ))
    });
    Ok(Json(records))
}

/// `POST /v1/jobs/{id}/partitions`: a worker reports the source topic's partition count.
pub async fn report_partitions(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<ReportPartitionsRequest>,
) -> Result<StatusCode, ApiError> {
    state.principal(&headers)?.require_admin()?;
    let id = parse_job_id(&id)?;
    match req.topic {
        None => {
            worker_calls::report_partitions(&state.coordinator, id, req.partition_count).await?
        }
        Some(topic) => {
            worker_calls::report_topic_partitions(
                &state.coordinator,
                id,
                topic,
                req.partition_count,
            )
            .await?
        }
    }
    Ok(StatusCode::NO_CONTENT)
}
