//! `POST /v1/jobs/{id}/pause|resume|stop|start`: a user's life-cycle requests, each one
//! replicated command decided by `state::lifecycle`. Tenant-scoped like every job route
//! (another tenant's job is a 404), idempotent under an `Idempotency-Key`, and a request
//! the job's state does not allow is a 409 naming that state. Each answers 202 with the
//! job's summary: pausing and stopping finish once the workers report back.
//!
//! `stop` and `start` take an optional body for savepoints: `{"savepoint": true}` on stop
//! also takes a savepoint of the stop's cut (named in the answer), `{"savepoint": N}` on
//! start restores every partition from savepoint N instead of its last commit. `drain`
//! (fire open windows before stopping) is not built: naming it is a 501 naming the field.

use super::error::ApiError;
use super::extract::ApiPath as Path;
use super::json_body::{self, RawBody};
use super::ApiState;
use crate::state::lifecycle::JobRequest;
use crate::state::{Command, CommandResult};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use weir_core::ids::{JobId, SavepointId};
use weir_core::wire::{JobSummary, LifecycleAnswer};

/// The optional body of `stop` and `start`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LifecycleBody {
    /// `true` on stop, a savepoint id on start; `false` or `null` mean none.
    #[serde(default)]
    savepoint: Option<serde_json::Value>,
    /// Stop only: fire open windows before stopping (not built).
    #[serde(default)]
    drain: Option<serde_json::Value>,
}

/// What a stop or start body asks for beyond the plain request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SavepointAsked {
    None,
    /// Stop: take a savepoint of the stop's cut.
    Take,
    /// Start: restore this savepoint.
    From(SavepointId),
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
/// partition committed and was released. With `{"savepoint": true}` the answer names a
/// savepoint of the stop's cut, complete once the job is stopped.
pub async fn stop(
    state: State<ApiState>,
    headers: HeaderMap,
    id: Path<String>,
    body: RawBody,
) -> Result<(StatusCode, Json<LifecycleAnswer>), ApiError> {
    match lifecycle_body(&body, JobRequest::Stop).await? {
        SavepointAsked::Take => savepoint_request(state, headers, id, None).await,
        _ => answer(request(state, headers, id, JobRequest::Stop).await?, None),
    }
}

/// `POST /v1/jobs/{id}/start` → 202; a stopped job is `pending` until every partition has
/// an owner again, which restarts it from its last committed checkpoint, or with
/// `{"savepoint": N}` from savepoint N's pins.
pub async fn start(
    state: State<ApiState>,
    headers: HeaderMap,
    id: Path<String>,
    body: RawBody,
) -> Result<(StatusCode, Json<LifecycleAnswer>), ApiError> {
    match lifecycle_body(&body, JobRequest::Start).await? {
        SavepointAsked::From(sp) => savepoint_request(state, headers, id, Some(sp)).await,
        _ => answer(request(state, headers, id, JobRequest::Start).await?, None),
    }
}

fn answer(
    (status, Json(job)): (StatusCode, Json<JobSummary>),
    savepoint: Option<SavepointId>,
) -> Result<(StatusCode, Json<LifecycleAnswer>), ApiError> {
    Ok((status, Json(LifecycleAnswer { job, savepoint })))
}

/// A stop with a savepoint (`from` is `None`) or a start from savepoint `from`.
async fn savepoint_request(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    from: Option<SavepointId>,
) -> Result<(StatusCode, Json<LifecycleAnswer>), ApiError> {
    let principal = state.principal(&headers)?;
    let id = parse_job_id(&id)?;
    let tenant = principal.tenant().cloned();
    let command = match from {
        None => Command::StopWithSavepoint {
            job: id,
            tenant,
            at_ms: state.coordinator.seams().clock.now_ms(),
        },
        Some(savepoint) => Command::StartFromSavepoint {
            job: id,
            tenant,
            savepoint,
        },
    };
    let result = state
        .coordinator
        .write(state.once(&headers, &principal, command))
        .await?;
    let savepoint = match result {
        CommandResult::SavepointTaken { id } => Some(id),
        _ => from,
    };
    let s = state.coordinator.state().read();
    let job = super::jobs::visible_job(&s.control.jobs, id, &principal)?;
    let job = super::jobs::summary(job);
    Ok((
        StatusCode::ACCEPTED,
        Json(LifecycleAnswer { job, savepoint }),
    ))
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
pub(super) fn no_body(body: &RawBody) -> Result<(), ApiError> {
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

/// What a stop's or start's body asks for: 400 for a body that is not the documented
/// one or a savepoint value of the wrong kind for the request, 501 naming `drain`.
async fn lifecycle_body(body: &RawBody, request: JobRequest) -> Result<SavepointAsked, ApiError> {
    if body.0.iter().all(u8::is_ascii_whitespace) {
        return Ok(SavepointAsked::None);
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
    use serde_json::Value;
    match parsed.drain {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) if request == JobRequest::Stop => {
            return Err(ApiError {
                status: StatusCode::NOT_IMPLEMENTED,
                error: "draining (firing open windows before the stop) is not supported \
                        yet; leave drain out: open windows stay open in the savepoint"
                    .into(),
                field: Some("drain".into()),
            })
        }
        Some(_) => {
            return Err(ApiError::bad_field(
                "drain",
                "drain is true or false, and only on stop",
            ))
        }
    }
    match (request, parsed.savepoint) {
        (_, None | Some(Value::Null) | Some(Value::Bool(false))) => Ok(SavepointAsked::None),
        (JobRequest::Stop, Some(Value::Bool(true))) => Ok(SavepointAsked::Take),
        (JobRequest::Stop, Some(_)) => Err(ApiError::bad_field(
            "savepoint",
            "on stop, savepoint is true (take one) or false",
        )),
        (_, Some(value)) => savepoint_id(&value)
            .map(SavepointAsked::From)
            .ok_or_else(|| {
                ApiError::bad_field(
                    "savepoint",
                    "on start, savepoint names a savepoint: its number (or \"sp-N\")",
                )
            }),
    }
}

/// A savepoint id as a start body names it: a number, or a string `N` or `sp-N`.
fn savepoint_id(value: &serde_json::Value) -> Option<SavepointId> {
    match value {
        serde_json::Value::Number(n) => n.as_u64().map(SavepointId),
        serde_json::Value::String(s) => super::savepoints::parse_savepoint_id(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &str) -> RawBody {
        RawBody(bytes::Bytes::copy_from_slice(text.as_bytes()))
    }

    #[tokio::test]
    async fn savepoint_bodies_read_as_documented() {
        use JobRequest::{Start, Stop};
        for (request, ok) in [
            (Stop, ""),
            (Stop, "  "),
            (Stop, "{}"),
            (Stop, r#"{"savepoint": false}"#),
            (Start, r#"{"savepoint": null}"#),
            (Stop, r#"{"drain": false}"#),
        ] {
            assert_eq!(
                lifecycle_body(&body(ok), request).await.unwrap(),
                SavepointAsked::None,
                "{ok:?}"
            );
        }
        assert_eq!(
            lifecycle_body(&body(r#"{"savepoint": true}"#), Stop)
                .await
                .unwrap(),
            SavepointAsked::Take
        );
        for from in [
            r#"{"savepoint": 4}"#,
            r#"{"savepoint": "4"}"#,
            r#"{"savepoint": "sp-4"}"#,
        ] {
            assert_eq!(
                lifecycle_body(&body(from), Start).await.unwrap(),
                SavepointAsked::From(SavepointId(4)),
                "{from}"
            );
        }
        let e = lifecycle_body(&body(r#"{"drain": true}"#), Stop)
            .await
            .unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_IMPLEMENTED);
        assert_eq!(e.field.as_deref(), Some("drain"));
        for (request, bad) in [
            (Stop, r#"{"savepoint": "sp-1"}"#),
            (Start, r#"{"savepoint": true}"#),
            (Start, r#"{"savepoint": -1}"#),
            (Start, r#"{"drain": true}"#),
        ] {
            let e = lifecycle_body(&body(bad), request).await.unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
            assert!(e.field.is_some(), "{bad}");
        }
        for bad in [r#"{"other": true}"#, "[1]", "savepoint"] {
            let e = lifecycle_body(&body(bad), Stop).await.unwrap_err();
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
