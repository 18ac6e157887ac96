//! `POST /v1/jobs/{id}/pause|resume|stop|start`: a user's life-cycle requests, each one
//! replicated command decided by `state::lifecycle`. Tenant-scoped like every job route
//! (another tenant's job is a 404), idempotent under an `Idempotency-Key`, and a request
//! the job's state does not allow is a 409 naming that state. Each answers 202 with the
//! job's summary: pausing and stopping finish once the workers report back.
//!
//! `stop` and `start` take an optional body for savepoints (`{"savepoint": true}`,
//! `{"savepoint": "<id>"}`); savepoints do not exist yet, so naming one is a 501 naming
//! the field rather than a request silently carried out without it.

use super::error::ApiError;
use super::extract::ApiPath as Path;
use super::json_body::{self, RawBody};
use super::ApiState;
use crate::state::lifecycle::JobRequest;
use crate::state::Command;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use weir_core::ids::JobId;
use weir_core::wire::JobSummary;

/// The optional body of `stop` and `start`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LifecycleBody {
    /// `true` on stop, a savepoint id on start; `false` or `null` mean none.
    #[serde(default)]
    savepoint: Option<serde_json::Value>,
}

/// `POST /v1/jobs/{id}/pause` → 202; the job goes `pausing`, then `paused` once every
/// partition committed and holds no open transaction.
pub async fn pause(
    state: State<ApiState>,
    headers: HeaderMap,
    id: Path<String>,
    body: RawBody,
) -> Result<(StatusCode, Json<JobSummary>), ApiError> {
    no_body(&body)?;
    request(state, headers, id, JobRequest::Pause).await
}

/// `POST /v1/jobs/{id}/resume` → 202; the job is `running` again and its partitions read
/// on where they paused.
pub async fn resume(
    state: State<ApiState>,
    headers: HeaderMap,
    id: Path<String>,
    body: RawBody,
) -> Result<(StatusCode, Json<JobSummary>), ApiError> {
    no_body(&body)?;
    request(state, headers, id, JobRequest::Resume).await
}

/// `POST /v1/jobs/{id}/stop` → 202; the job goes `stopping`, then `stopped` once every
/// partition committed and was released.
pub async fn stop(
    state: State<ApiState>,
    headers: HeaderMap,
    id: Path<String>,
    body: RawBody,
) -> Result<(StatusCode, Json<JobSummary>), ApiError> {
    savepoint_refused(&body).await?;
    request(state, headers, id, JobRequest::Stop).await
}

/// `POST /v1/jobs/{id}/start` → 202; a stopped job is `pending` until every partition has
/// an owner again, which restarts it from its last committed checkpoint.
pub async fn start(
    state: State<ApiState>,
    headers: HeaderMap,
    id: Path<String>,
    body: RawBody,
) -> Result<(StatusCode, Json<JobSummary>), ApiError> {
    savepoint_refused(&body).await?;
    request(state, headers, id, JobRequest::Start).await
}

async fn request(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    request: JobRequest,
) -> Result<(StatusCode, Json<JobSummary>), ApiError> {
    let principal = state.principal(&headers)?;
    let id = parse_job_id(&id)?;
    let command = Command::ChangeJobState {
        job: id,
        tenant: principal.tenant().cloned(),
        request,
    };
    state
        .coordinator
        .write(state.once(&headers, &principal, command))
        .await?;
    let s = state.coordinator.state().read();
    let job = super::jobs::visible_job(&s.control.jobs, id, &principal)?;
    Ok((StatusCode::ACCEPTED, Json(super::jobs::summary(job))))
}

fn parse_job_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse::<u64>()
        .map(JobId)
        .map_err(|_| ApiError::not_found(format!("job {raw}")))
}

/// Pause and resume take no body; one sent is refused rather than ignored.
fn no_body(body: &RawBody) -> Result<(), ApiError> {
    if body.0.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let empty_object =
        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&body.0)
            .is_ok_and(|m| m.is_empty());
    if empty_object {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        "this request takes no body (or an empty JSON object)",
    ))
}

/// Refuses (501, naming `savepoint`) a stop or start that asks for a savepoint, and (400)
/// a body that is not the documented one.
async fn savepoint_refused(body: &RawBody) -> Result<(), ApiError> {
    if body.0.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    if json_body::nesting_too_deep(&body.0, json_body::BODY_NESTING_DEPTH_MAX) {
        return Err(json_body::too_deep());
    }
    let parsed = json_body::parse_bounded(|| {
        // An object only: serde would read a struct from an array too.
        match serde_json::from_slice::<serde_json::Value>(&body.0)? {
            object @ serde_json::Value::Object(_) => {
                serde_json::from_value::<LifecycleBody>(object)
            }
            _ => serde_json::from_str::<LifecycleBody>("null"),
        }
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not {{\"savepoint\": ...}}: {e}"),
        )
    })?;
    match parsed.savepoint {
        None | Some(serde_json::Value::Null) | Some(serde_json::Value::Bool(false)) => Ok(()),
        Some(_) => Err(ApiError {
            status: StatusCode::NOT_IMPLEMENTED,
            error: "savepoints are not supported yet; leave savepoint out: a stopped job \
                    starts again from its last committed checkpoint"
                .into(),
            field: Some("savepoint".into()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &str) -> RawBody {
        RawBody(bytes::Bytes::copy_from_slice(text.as_bytes()))
    }

    #[tokio::test]
    async fn a_savepoint_is_refused_naming_the_field_and_no_savepoint_is_accepted() {
        for ok in [
            "",
            "  ",
            "{}",
            r#"{"savepoint": false}"#,
            r#"{"savepoint": null}"#,
        ] {
            assert!(savepoint_refused(&body(ok)).await.is_ok(), "{ok:?}");
        }
        for refused in [r#"{"savepoint": true}"#, r#"{"savepoint": "sp-1"}"#] {
            let e = savepoint_refused(&body(refused)).await.unwrap_err();
            assert_eq!(e.status, StatusCode::NOT_IMPLEMENTED);
            assert_eq!(e.field.as_deref(), Some("savepoint"));
        }
        for bad in [r#"{"drain": true}"#, "[1]", "savepoint"] {
            let e = savepoint_refused(&body(bad)).await.unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn pause_and_resume_refuse_a_body() {
        assert!(no_body(&body("")).is_ok());
        assert!(no_body(&body("{}")).is_ok());
        assert!(no_body(&body(r#"{"savepoint": true}"#)).is_err());
    }
}
