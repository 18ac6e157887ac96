//! Path and query extractors whose refusals are the API's JSON errors (axum's own answer
//! in plain text): a bad path parameter or a repeated query parameter is a 400 naming it.

use super::error::ApiError;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

/// The first name quoted in backticks in a message (`duplicate field `tenant``).
fn quoted_name(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

fn refusal(status: StatusCode, message: String) -> ApiError {
    let status = if status.is_client_error() {
        status
    } else {
        StatusCode::BAD_REQUEST
    };
    ApiError {
        status,
        field: quoted_name(&message),
        error: message,
    }
}

/// Path parameters decoded as `T`.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|e| refusal(e.status(), e.body_text()))
    }
}

/// The query string decoded as `T`.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e| refusal(e.status(), e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_the_quoted_field() {
        assert_eq!(
            super::quoted_name("Failed to deserialize query string: duplicate field `tenant`")
                .as_deref(),
            Some("tenant")
        );
        assert_eq!(super::quoted_name("no name here"), None);
    }
}
