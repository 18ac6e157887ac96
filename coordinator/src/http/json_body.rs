//! Request bodies read as JSON, with errors in the API's own shape: a 400 with one sentence
//! and the field at fault (docs/HTTP_API.md), where axum's `Json` answers 415 or 422 in plain
//! text. Every handler that takes a JSON body takes it through [`JsonBody`]; raw bodies
//! (job specs) through [`RawBody`].
//!
//! Parsing is bounded before any tree is built: the body's size (413), then its nesting
//! depth by a byte scan ([`nesting_too_deep`], 400), and at most
//! [`BODY_PARSES_IN_FLIGHT_MAX`] bodies are parsed at once per process, so a burst of
//! pathological bodies costs bounded CPU.

use super::error::ApiError;
use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

/// Deepest nesting of arrays and objects a body may have (job specs nest a few levels);
/// checked by a byte scan before a parser builds anything.
pub const BODY_NESTING_DEPTH_MAX: usize = 64;
/// Bodies parsed at once in one process; more wait for a turn. Parsing is CPU work on the
/// API's runtime, and this keeps it from taking every core.
pub const BODY_PARSES_IN_FLIGHT_MAX: usize = 2;

static BODY_PARSES: Semaphore = Semaphore::const_new(BODY_PARSES_IN_FLIGHT_MAX);

/// Runs a parse of a request body with one of the process's parse permits.
pub(crate) async fn parse_bounded<T>(parse: impl FnOnce() -> T) -> T {
    // The semaphore is never closed, so acquiring can only wait.
    let _permit = BODY_PARSES.acquire().await.ok();
    parse()
}

/// Whether `bytes` nest arrays or objects (`[`, `{`; also YAML flow collections) deeper
/// than `max`, outside double-quoted strings. Linear, no allocation.
pub fn nesting_too_deep(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The 400 for a body nested too deeply.
pub(crate) fn too_deep() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        format!("the body nests deeper than {BODY_NESTING_DEPTH_MAX} levels"),
    )
}

/// The 413 for a body over [`super::REQUEST_BODY_BYTES_MAX`], the same on every member.
pub(crate) fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the body is larger than {} bytes",
            super::REQUEST_BODY_BYTES_MAX
        ),
    )
}

/// Refuses (413) a request whose `Content-Length` is over the bound, before its body is read.
pub(crate) fn check_declared_length(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > super::REQUEST_BODY_BYTES_MAX as u64 => Err(too_large()),
        _ => Ok(()),
    }
}

/// Reads a whole body of at most [`super::REQUEST_BODY_BYTES_MAX`] bytes: 413 when longer.
pub(crate) async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, super::REQUEST_BODY_BYTES_MAX)
        .await
        .map_err(|e| {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(err) = source {
                if err.is::<http_body_util::LengthLimitError>() {
                    return too_large();
                }
                source = err.source();
            }
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}"),
            )
        })
}

/// A request body's bytes, read within the size bound (413 as JSON when over it).
#[derive(Debug)]
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        check_declared_length(req.headers())?;
        read_body(req.into_body()).await.map(RawBody)
    }
}

/// A JSON request body decoded as `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        if nesting_too_deep(&bytes, BODY_NESTING_DEPTH_MAX) {
            return Err(too_deep());
        }
        parse_bounded(|| decode(&bytes)).await.map(JsonBody)
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

    #[test]
    fn the_nesting_scan_counts_brackets_outside_strings() {
        assert!(!nesting_too_deep(br#"{"a": [[1], {"b": 2}]}"#, 3));
        assert!(nesting_too_deep(br#"{"a": [[[1]]]}"#, 3));
        assert!(!nesting_too_deep(br#"{"a": "[[[[[[\"[[[["}"#, 1));
        assert!(nesting_too_deep(
            &vec![b'['; 100_000],
            BODY_NESTING_DEPTH_MAX
        ));
        let yaml = b"name: x\nsource: {topic: t, format: json}\nfilter: 'a[0] > 1'\n";
        assert!(!nesting_too_deep(yaml, BODY_NESTING_DEPTH_MAX));
    }
}
