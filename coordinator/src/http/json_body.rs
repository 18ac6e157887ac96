//! Request bodies read as JSON, with errors in the API's own shape: a 400 with one sentence
//! and the field at fault (docs/HTTP_API.md), where axum's `Json` answers 415 or 422 in plain
//! text. Every handler that takes a JSON body takes it through [`JsonBody`].

use super::error::ApiError;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use bytes::Bytes;
use serde::de::DeserializeOwned;

/// A JSON request body decoded as `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        decode(&bytes).map(JsonBody)
    }
}

/// Decodes `bytes` as one JSON value of type `T`, naming the field at fault on error.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the body is not JSON: {inner}"),
            );
        }
        let message = inner.to_string();
        // A missing field is reported at its parent; name the field itself.
        let named = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        let field = match (path.as_str(), named) {
            (".", Some(name)) => name.to_string(),
            (parent, Some(name)) => format!("{parent}.{name}"),
            (".", None) => return ApiError::new(StatusCode::BAD_REQUEST, message),
            (path, None) => path.to_string(),
        };
        ApiError::bad_field(field, message)
    })?;
    deserializer.end().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not one JSON value: {e}"),
        )
    })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Member {
        id: u64,
        addr: String,
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        port: u16,
    }

    fn error_of(body: &str) -> (StatusCode, Option<String>, String) {
        let e = decode::<Member>(body.as_bytes()).unwrap_err();
        (e.status, e.field, e.error)
    }

    #[test]
    fn names_the_field_at_fault() {
        assert_eq!(error_of(r#"{"addr": "x"}"#).1.as_deref(), Some("id"));
        assert_eq!(
            error_of(r#"{"id": "one", "addr": "x"}"#).1.as_deref(),
            Some("id")
        );
        assert_eq!(
            error_of(r#"{"id": 1, "addr": "x", "extra": 2}"#)
                .1
                .as_deref(),
            Some("extra")
        );
        assert_eq!(
            error_of(r#"{"id": 1, "addr": "x", "inner": {"port": 70000}}"#)
                .1
                .as_deref(),
            Some("inner.port")
        );
        assert_eq!(
            error_of(r#"{"id": 1, "addr": "x", "inner": {}}"#)
                .1
                .as_deref(),
            Some("inner.port")
        );
    }

    #[test]
    fn bad_json_is_a_400_in_one_sentence() {
        for body in [
            "",
            "{",
            "not json",
            r#"{"id": 1, "addr": "x"} trailing"#,
            "[]",
        ] {
            let (status, _, error) = error_of(body);
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
            assert!(!error.contains('\n'), "{error}");
        }
        assert!(decode::<Member>(br#"{"id": 1, "addr": "x"}"#).is_ok());
    }
}
