//! `/admin/queues`: the payment queue's counts and dead jobs, and retrying a dead job.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{dead, worker::Environment};
use crate::{
    auth::AuthUser,
    error::{AppError, AppResult, Problem},
    events::Actor,
    extract::{Json, Path},
    orders::dto::OrderResponse,
    queue::{DeadJob, QueueCounts},
    state::AppState,
};

/// How many dead jobs the view lists.
const DEAD_JOBS_SHOWN: usize = 100;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(queue_view))
        .routes(routes!(retry_dead_job))
}

/// The payment queue at a glance.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueView {
    pub payments: QueueCounts,
    /// The refunds' queue (a refund out of attempts fails and gives its claim back; it
    /// leaves no dead job).
    pub refunds: QueueCounts,
    /// The webhook deliveries' queue.
    pub webhooks: QueueCounts,
    /// The product images' queue (an image out of attempts fails; it leaves no dead job).
    pub images: QueueCounts,
    /// The newest dead jobs (payments that ran out of attempts), at most 100.
    pub dead_jobs: Vec<DeadJob>,
}

/// Queue counts (ready, delayed, processing, dead) and the dead jobs (ADMIN).
#[utoipa::path(get, path = "/admin/queues", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, body = QueueView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The queue's backend is down", body = Problem, content_type = "application/problem+json"),
    ))]
async fn queue_view(State(state): State<AppState>, user: AuthUser) -> AppResult<Json<QueueView>> {
    user.require_admin()?;
    let unavailable = |err: crate::queue::QueueError| {
        tracing::warn!(error = %err, "queue view: queue unavailable");
        AppError::unavailable("The payment queue is unavailable; try again shortly.")
    };
    let payments = state.queue.counts().await.map_err(unavailable)?;
    let dead_jobs = state
        .queue
        .dead_jobs(DEAD_JOBS_SHOWN)
        .await
        .map_err(unavailable)?;
    let refunds = state.refund_queue.counts().await.map_err(unavailable)?;
    let webhooks = state.webhook_queue.counts().await.map_err(unavailable)?;
    let images = state.image_queue.counts().await.map_err(unavailable)?;
    Ok(Json(QueueView {
        payments,
        refunds,
        webhooks,
        images,
        dead_jobs,
    }))
}

/// Give a dead payment a fresh set of attempts (ADMIN): its stock is reserved again (409
/// when no longer available) and the order goes back to `PENDING`.
#[utoipa::path(post, path = "/admin/queues/dead/{id}/retry", tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The dead job's id (the payment id)")),
    responses(
        (status = 200, body = OrderResponse),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such dead job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`insufficient_stock`: the stock is gone", body = Problem, content_type = "application/problem+json"),
    ))]
async fn retry_dead_job(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> AppResult<Json<OrderResponse>> {
    user.require_admin()?;
    Ok(Json(
        dead::retry(&Environment::from(&state), Actor::caller(&user), id).await?,
    ))
}
