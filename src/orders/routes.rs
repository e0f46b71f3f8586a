//! `/orders` routes: thin handlers over `service`.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    dto::{CreateOrderRequest, OrderListQuery, OrderResponse},
    service::{self, Placed},
};
use crate::{
    auth::AuthUser,
    error::{AppError, AppResult, Problem},
    extract::{Json, Path, Query},
    idempotency,
    pagination::Page,
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_orders, create_order))
        .routes(routes!(get_order))
        .routes(routes!(cancel_order))
        .routes(routes!(confirm_payment))
}

/// Place an order. Every line's stock is reserved in one transaction, or none is.
#[utoipa::path(post, path = "/orders", tag = "orders",
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = r"^[!-~]([ -~]*[!-~])?$",
        description = "Up to 255 printable ASCII characters; a repeat with the same body replays the first answer")),
    request_body = CreateOrderRequest,
    responses(
        (status = 201, body = OrderResponse, headers(("Idempotent-Replayed" = String, description = "`true` on a replay"))),
        (status = 400, description = "Malformed body or Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`insufficient_stock` (errors name each short product and what is available) or `idempotency_key_in_use`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, `unknown_products` or `idempotency_key_reused`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_order(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> AppResult<Response> {
    let key = idempotency::from_headers(&headers, user.id, &body)?;
    let request: CreateOrderRequest = serde_json::from_value(body)
        .map_err(|err| AppError::bad_request("invalid_body", err.to_string()))?;
    match service::place(&state.orders, &user, request, key).await? {
        Placed::Created(order) => Ok((StatusCode::CREATED, Json(order)).into_response()),
        Placed::Replayed { status, body } => Ok(idempotency::replay_response(status, body)),
    }
}

/// A page of the caller's orders (admins: everyone's, or one user's with `userId`).
#[utoipa::path(get, path = "/orders", tag = "orders",
    security(("bearer" = [])),
    params(OrderListQuery),
    responses(
        (status = 200, body = Page<OrderResponse>),
        (status = 403, description = "A client naming another user in `userId`", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_orders(
    State(state): State<AppState>,
    user: AuthUser,
    Query(query): Query<OrderListQuery>,
) -> AppResult<Json<Page<OrderResponse>>> {
    Ok(Json(service::list(&state.db, &user, query).await?))
}

/// One order (its owner or an admin; 404 for anyone else).
#[utoipa::path(get, path = "/orders/{id}", tag = "orders",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, body = OrderResponse),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_order(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> AppResult<Json<OrderResponse>> {
    Ok(Json(service::get(&state.db, &user, id).await?))
}

/// Cancel an order while its payment is `PENDING`, `RETRYING` or `REQUIRES_ACTION`; its
/// stock is restored.
#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "orders",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, body = OrderResponse),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`order_not_cancellable`: an attempt is running or the order has ended", body = Problem, content_type = "application/problem+json"),
    ))]
async fn cancel_order(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> AppResult<Json<OrderResponse>> {
    Ok(Json(service::cancel(&state.orders, &user, id).await?))
}

/// Confirm the action a payment waits for (`REQUIRES_ACTION`, as with 3-D Secure): the
/// payment goes on at once. Only the customer who placed the order may.
#[utoipa::path(post, path = "/orders/{id}/confirm-payment", tag = "orders",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, body = OrderResponse),
        (status = 403, description = "An admin who did not place the order", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`payment_not_awaiting_action`: the payment is not `REQUIRES_ACTION`, or the action expired", body = Problem, content_type = "application/problem+json"),
    ))]
async fn confirm_payment(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> AppResult<Json<OrderResponse>> {
    Ok(Json(
        service::confirm_payment(&state.orders, &user, id).await?,
    ))
}
