//! `/webhooks` routes (ADMIN): thin handlers over the rules in [`super`].

use axum::{extract::State, http::StatusCode};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    CreatedEndpoint, Delivery, DeliveryPage, Endpoint, EndpointChanges, NewEndpoint, Secret,
    Webhooks,
};
use crate::{
    auth::AuthUser,
    error::{AppResult, Problem},
    extract::{Json, Path, Query},
    pagination::NewestFirstQuery,
    state::AppState,
};

fn hooks(state: &AppState) -> Webhooks<'_> {
    Webhooks {
        db: &state.db,
        queue: state.webhook_queue.as_ref(),
        config: &state.config.webhooks,
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_endpoints, create_endpoint))
        .routes(routes!(get_endpoint, patch_endpoint, delete_endpoint))
        .routes(routes!(rotate_secret))
        .routes(routes!(list_deliveries))
        .routes(routes!(redeliver))
}

/// The registered endpoints.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointList {
    pub items: Vec<Endpoint>,
}

/// Register an endpoint (ADMIN). Each event it wants is then `POST`ed to it with the
/// headers `Shop-Event-Id`, `Shop-Event-Type` and `Shop-Signature: t=<unix seconds>,
/// v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. The secret is shown only in this answer.
#[utoipa::path(post, path = "/webhooks", tag = "webhooks",
    security(("bearer" = [])),
    request_body = NewEndpoint,
    responses(
        (status = 201, body = CreatedEndpoint),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A missing field, a URL that is not http(s) or resolves to a loopback, private or link-local address (unless `WEBHOOK_ALLOW_PRIVATE=true`), or an unknown event type", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_endpoint(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<EndpointChanges>,
) -> AppResult<(StatusCode, Json<CreatedEndpoint>)> {
    user.require_admin()?;
    Ok((
        StatusCode::CREATED,
        Json(super::create(hooks(&state), body).await?),
    ))
}

/// Every endpoint, oldest first (ADMIN); never with its secret.
#[utoipa::path(get, path = "/webhooks", tag = "webhooks",
    security(("bearer" = [])),
    responses(
        (status = 200, body = EndpointList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_endpoints(
    State(state): State<AppState>,
    user: AuthUser,
) -> AppResult<Json<EndpointList>> {
    user.require_admin()?;
    Ok(Json(EndpointList {
        items: super::list(&state.db).await?,
    }))
}

/// One endpoint (ADMIN).
#[utoipa::path(get, path = "/webhooks/{id}", tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 200, body = Endpoint),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_endpoint(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> AppResult<Json<Endpoint>> {
    user.require_admin()?;
    Ok(Json(super::get(&state.db, id).await?))
}

/// Change an endpoint's URL, events, description, or enable or disable it (ADMIN). A
/// disabled endpoint gets no new deliveries, and its pending ones fail.
#[utoipa::path(patch, path = "/webhooks/{id}", tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Endpoint id")),
    request_body = EndpointChanges,
    responses(
        (status = 200, body = Endpoint),
        (status = 400, description = "Malformed id or body", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn patch_endpoint(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(body): Json<EndpointChanges>,
) -> AppResult<Json<Endpoint>> {
    user.require_admin()?;
    Ok(Json(super::update(hooks(&state), id, body).await?))
}

/// Delete an endpoint and its delivery log (ADMIN).
#[utoipa::path(delete, path = "/webhooks/{id}", tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_endpoint(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> AppResult<StatusCode> {
    user.require_admin()?;
    super::delete(&state.db, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replace the endpoint's signing secret (ADMIN); the old one signs nothing more.
#[utoipa::path(post, path = "/webhooks/{id}/rotate-secret", tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 200, body = Secret),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn rotate_secret(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> AppResult<Json<Secret>> {
    user.require_admin()?;
    Ok(Json(super::rotate_secret(&state.db, id).await?))
}

/// The endpoint's deliveries, newest first, by cursor (ADMIN).
#[utoipa::path(get, path = "/webhooks/{id}/deliveries", tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Endpoint id"), NewestFirstQuery),
    responses(
        (status = 200, body = DeliveryPage),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad cursor or limit", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_deliveries(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Query(query): Query<NewestFirstQuery>,
) -> AppResult<Json<DeliveryPage>> {
    user.require_admin()?;
    Ok(Json(super::deliveries(&state.db, id, query).await?))
}

/// Send a delivery's event again, as a new delivery with the same event id (ADMIN).
#[utoipa::path(post, path = "/webhooks/{id}/deliveries/{deliveryId}/redeliver", tag = "webhooks",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "Endpoint id"),
        ("deliveryId" = Uuid, Path, description = "Delivery id"),
    ),
    responses(
        (status = 202, description = "Queued", body = Delivery),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The event is past `EVENT_RETENTION`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn redeliver(
    State(state): State<AppState>,
    user: AuthUser,
    Path((id, delivery_id)): Path<(Uuid, Uuid)>,
) -> AppResult<(StatusCode, Json<Delivery>)> {
    user.require_admin()?;
    Ok((
        StatusCode::ACCEPTED,
        Json(super::redeliver(hooks(&state), id, delivery_id).await?),
    ))
}
