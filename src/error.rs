//! The one error type of the service and its RFC 9457 `application/problem+json` form.
//!
//! Every failure a client can see goes through [`AppError`]: domain rules, validation,
//! axum's own rejections (see `extract.rs`), unknown routes and panics. Internal errors are
//! logged with their cause and answered without detail.

use std::collections::BTreeMap;

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

/// Messages per field path (`items[0].quantity`, `email`, ...).
pub type FieldErrors = BTreeMap<String, Vec<String>>;

/// A problem a request ran into.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A problem the client can act on, answered as it is.
    #[error("{code}: {detail}")]
    Problem {
        status: StatusCode,
        code: &'static str,
        detail: String,
        errors: Option<FieldErrors>,
        retry_after: Option<u64>,
        /// `RateLimit-Limit` and `RateLimit-Remaining` of a limited operation.
        quota: Option<(u32, u32)>,
    },
    /// Anything else: logged, answered as a bare 500.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self::Problem {
            status,
            code,
            detail: detail.into(),
            errors: None,
            retry_after: None,
            quota: None,
        }
    }

    /// Attaches per-field messages.
    pub fn with_errors(mut self, field_errors: FieldErrors) -> Self {
        if let Self::Problem { errors, .. } = &mut self {
            *errors = Some(field_errors);
        }
        self
    }

    /// Tells the client when to try again (`Retry-After`, seconds).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        if let Self::Problem { retry_after, .. } = &mut self {
            *retry_after = Some(seconds);
        }
        self
    }

    /// Tells the client how much of a limit is left (`RateLimit-Limit`, `-Remaining`).
    pub fn with_quota(mut self, limit: u32, remaining: u32) -> Self {
        if let Self::Problem { quota, .. } = &mut self {
            *quota = Some((limit, remaining));
        }
        self
    }

    /// 422 `validation_failed` with the messages of each invalid field.
    pub fn validation(errors: FieldErrors) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "One or more fields are invalid.",
        )
        .with_errors(errors)
    }

    /// 422 `validation_failed` for a single field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::validation(BTreeMap::from([(field.into(), vec![message.into()])]))
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// 404 for a missing `what` (also used for rows the caller may not see).
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    pub fn unprocessable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            detail,
        )
    }

    /// The problem body this error answers with; `None` for internal errors.
    pub fn problem(&self) -> Option<Problem> {
        match self {
            Self::Problem {
                status,
                code,
                detail,
                errors,
                ..
            } => Some(Problem::new(*status, code, detail.clone(), errors.clone())),
            Self::Internal(_) => None,
        }
    }
}

impl From<sea_orm::DbErr> for AppError {
    fn from(err: sea_orm::DbErr) -> Self {
        use sea_orm::DbErr;
        match err {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => {
                tracing::error!(error = %err, "database unavailable");
                Self::unavailable("The database is unavailable; try again shortly.")
            }
            // SQLite gave up waiting for the write lock (busy timeout): overloaded, not broken.
            other if other.to_string().contains("database is locked") => {
                tracing::error!(error = %other, "database busy");
                Self::unavailable("The database is busy; try again shortly.")
            }
            other => Self::Internal(other.into()),
        }
    }
}

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem: `urn:shop:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The HTTP reason phrase of `status`.
    pub title: String,
    pub status: u16,
    /// What happened, for a person.
    pub detail: String,
    /// A stable machine-readable code, such as `insufficient_stock`.
    pub code: String,
    /// Messages per field path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<FieldErrors>,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            Self::Problem {
                status,
                code,
                detail,
                errors,
                retry_after,
                quota,
            } => {
                let mut response = problem_response(status, code, detail, errors, retry_after);
                if let Some((limit, remaining)) = quota {
                    let headers = response.headers_mut();
                    headers.insert("ratelimit-limit", HeaderValue::from(limit));
                    headers.insert("ratelimit-remaining", HeaderValue::from(remaining));
                }
                response
            }
            Self::Internal(err) => {
                tracing::error!(error = ?err, "internal error");
                internal_error_response()
            }
        }
    }
}

/// The answer to every failure on our side: a bare 500 that tells nothing (the cause is
/// logged where it happened).
pub fn internal_error_response() -> Response {
    problem_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "An unexpected error occurred.".to_owned(),
        None,
        None,
    )
}

impl Problem {
    pub fn new(
        status: StatusCode,
        code: &str,
        detail: String,
        errors: Option<FieldErrors>,
    ) -> Self {
        Self {
            kind: format!("urn:shop:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            code: code.to_owned(),
            errors,
        }
    }
}

/// Builds a problem+json response; also used by layers that answer on their own.
pub fn problem_response(
    status: StatusCode,
    code: &str,
    detail: String,
    errors: Option<FieldErrors>,
    retry_after: Option<u64>,
) -> Response {
    let body = Problem::new(status, code, detail, errors);
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut response = (status, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if let Some(seconds) = retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The answer for a route that does not exist.
pub async fn route_not_found() -> AppError {
    AppError::new(StatusCode::NOT_FOUND, "not_found", "No such route.")
}

/// The answer for a known route called with the wrong method.
pub async fn method_not_allowed() -> AppError {
    AppError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "This route does not accept that method.",
    )
}

/// The answer when a handler panicked: the panic is logged, the client sees a bare 500.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = message, "handler panicked");
    internal_error_response()
}

/// The result type of handlers and services.
pub type AppResult<T> = Result<T, AppError>;
