//! The service endpoints, never rate limited: `/health` (liveness), `/ready` (the
//! database, and Redis when configured, answer) and `/metrics`.

use std::time::Duration;

use axum::{extract::State, http::StatusCode};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    db,
    error::{AppError, AppResult, Problem},
    extract::Json,
    state::AppState,
};

/// How long a dependency may take to answer a readiness check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(crate::metrics::render))
}

/// The answer of `/health` and `/ready`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Liveness: 200 while the process serves.
#[utoipa::path(get, path = "/health", tag = "service",
    responses((status = 200, body = HealthResponse)))]
async fn health() -> Json<HealthResponse> {
    Json(HealthResponse { status: "ok" })
}

/// Readiness: 200 when every dependency answers, else 503 naming what is down.
#[utoipa::path(get, path = "/ready", tag = "service",
    responses(
        (status = 200, body = HealthResponse),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ))]
async fn ready(State(state): State<AppState>) -> AppResult<(StatusCode, Json<HealthResponse>)> {
    let mut down = Vec::new();
    match tokio::time::timeout(CHECK_TIMEOUT, db::ping(&state.db)).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness: database check failed");
            down.push("database");
        }
        Err(_) => down.push("database"),
    }
    if state.config.redis_url.is_some() {
        match tokio::time::timeout(CHECK_TIMEOUT, state.queue.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "readiness: Redis check failed");
                down.push("redis");
            }
            Err(_) => down.push("redis"),
        }
    }
    if down.is_empty() {
        Ok((StatusCode::OK, Json(HealthResponse { status: "ready" })))
    } else {
        Err(AppError::unavailable(format!(
            "Not ready: {} down.",
            down.join(", ")
        )))
    }
}
