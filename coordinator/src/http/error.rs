//! How the API answers errors: a status and `{"error", "field"}` (docs/HTTP_API.md).

use crate::state::Refusal;
use crate::write_error::WriteError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use weir_core::wire::ErrorBody;

/// An API error: the status, one sentence, and the offending field if there is one.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: String,
    pub field: Option<String>,
}

impl ApiError {
    /// An error with a status and a message.
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        ApiError {
            status,
            error: error.into(),
            field: None,
        }
    }

    /// 400 naming the field at fault.
    pub fn bad_field(field: impl Into<String>, error: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            error: error.into(),
            field: Some(field.into()),
        }
    }

    /// 404 for something the caller may not see or that does not exist.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("{} not found", what.into()))
    }

    /// 401.
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "missing or invalid bearer token")
    }

    /// 403, for tenant tokens on administrator endpoints.
    pub fn admin_only() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "this endpoint needs the administrator token",
        )
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::NotLeader { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no leader is available right now; retry",
            ),
            WriteError::Unavailable(m) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the coordinator group is unavailable: {m}"),
            ),
            WriteError::Refused(r) => r.into(),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        if r == Refusal::IdempotencyKeyReused {
            return ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                error: r.to_string(),
                field: Some(super::IDEMPOTENCY_HEADER_NAME.to_string()),
            };
        }
        let status = match &r {
            Refusal::NotFound(_) => StatusCode::NOT_FOUND,
            Refusal::Conflict(_) | Refusal::StaleEpoch { .. } => StatusCode::CONFLICT,
            Refusal::Invalid(_) => StatusCode::BAD_REQUEST,
            Refusal::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, r.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.error,
                field: self.field,
            }),
        )
            .into_response()
    }
}
