//! Request extractors whose rejections are problem+json: [`Json`] and [`Path`] wrap axum's
//! own, mapping bad JSON, a wrong content type, an oversized body and a malformed path
//! parameter to the statuses of the contract.

use axum::{
    extract::{
        FromRequest, FromRequestParts, Request,
        rejection::{JsonRejection, PathRejection, QueryRejection},
    },
    http::StatusCode,
    http::{Uri, request::Parts},
    response::{IntoResponse, Response},
};
use serde::{Serialize, de::DeserializeOwned};

use crate::error::AppError;

/// A JSON object body (`application/json`, at most the configured body limit). Any other
/// JSON value (an array, a string, ...) is a 400, even where serde could read a struct
/// from it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, AppError> {
        // Content type, size and syntax, checked as axum checks them.
        let axum::Json(raw) =
            axum::Json::<Box<serde_json::value::RawValue>>::from_request(request, state).await?;
        if !raw.get().trim_start().starts_with('{') {
            return Err(AppError::bad_request(
                "invalid_body",
                "The body must be a JSON object.",
            ));
        }
        let axum::Json(value) = axum::Json::<T>::from_bytes(raw.get().as_bytes())?;
        Ok(Self(value))
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

impl From<JsonRejection> for AppError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => AppError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send the body as JSON with `Content-Type: application/json`.",
            ),
            JsonRejection::JsonSyntaxError(err) => AppError::bad_request(
                "malformed_json",
                format!("The body is not valid JSON: {}", err.body_text()),
            ),
            JsonRejection::JsonDataError(err) => {
                AppError::bad_request("invalid_body", err.body_text())
            }
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => AppError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "The body is larger than the 1 MiB limit.",
            ),
            other => AppError::bad_request("invalid_body", other.body_text()),
        }
    }
}

/// Path parameters; a malformed one (such as a bad UUID) is a 400.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(AppError))]
pub struct Path<T>(pub T);

impl From<PathRejection> for AppError {
    fn from(rejection: PathRejection) -> Self {
        AppError::bad_request("invalid_path", rejection.body_text())
    }
}

/// Query parameters; a malformed query string is a 400. An empty parameter (`?skip=`)
/// counts as absent.
#[derive(Debug, Clone, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, AppError> {
        let given = parts.uri.query().unwrap_or_default();
        let kept: Vec<&str> = given
            .split('&')
            .filter(|pair| !pair.is_empty() && !pair.ends_with('=') && pair.contains('='))
            .collect();
        let uri: Uri = format!("/?{}", kept.join("&")).parse().map_err(|_| {
            AppError::bad_request("invalid_query", "The query string is malformed.")
        })?;
        let axum::extract::Query(value) = axum::extract::Query::try_from_uri(&uri)?;
        Ok(Self(value))
    }
}

impl From<QueryRejection> for AppError {
    fn from(rejection: QueryRejection) -> Self {
        AppError::bad_request("invalid_query", rejection.body_text())
    }
}

/// For `Option<Option<T>>` fields with `#[serde(default, deserialize_with = "present")]`:
/// absent is `None`, `null` is `Some(None)`, a value is `Some(Some(value))`.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}
