//! `/orders/{id}/refunds` routes: thin handlers over the refund rules.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{RefundInput, RefundList, RefundResponse, Refunds, Requested};
use crate::{
    auth::AuthUser,
    error::{AppError, AppResult, Problem},
    extract::{Json, Path},
    idempotency,
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_refunds, create_refund))
}

/// Refund a paid order, in full or in part (ADMIN). The money and restock units are
/// claimed at once, so concurrent refunds never exceed what was paid or ordered; the
/// refund then runs on the workers (`refund.*` events tell how it ends).
#[utoipa::path(post, path = "/orders/{id}/refunds", tag = "orders",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "Order id"),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = r"^[!-~]([ -~]*[!-~])?$",
            description = "Up to 255 printable ASCII characters; a repeat with the same body replays the first answer"),
    ),
    request_body = RefundInput,
    responses(
        (status = 202, description = "The refund, `PENDING`", body = RefundResponse, headers(("Idempotent-Replayed" = String, description = "`true` on a replay"))),
        (status = 400, description = "Malformed id, body or Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`order_not_refundable` (the order is not `COMPLETED` or `PARTIALLY_REFUNDED`) or `idempotency_key_in_use`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, `refund_exceeds_remaining` (more than is left), `restock_exceeds_order` or `idempotency_key_reused`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_refund(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> AppResult<Response> {
    user.require_admin()?;
    // The key stands for this refund of this order: reused on another order, it is a
    // different request.
    let fingerprint = serde_json::json!({"refundOf": id, "body": &body});
    let key = idempotency::from_headers(&headers, user.id, &fingerprint)?;
    let input: RefundInput = serde_json::from_value(body)
        .map_err(|err| AppError::bad_request("invalid_body", err.to_string()))?;
    let refunds = Refunds {
        db: state.db.clone(),
        queue: state.refund_queue.clone(),
        notifier: state.notifier.clone(),
        config: state.config.clone(),
    };
    match super::request(&refunds, &user, id, input, key).await? {
        Requested::Created(refund) => Ok((StatusCode::ACCEPTED, Json(refund)).into_response()),
        Requested::Replayed { status, body } => Ok(idempotency::replay_response(status, body)),
    }
}

/// An order's refunds, oldest first (its owner or an admin; 404 for anyone else).
#[utoipa::path(get, path = "/orders/{id}/refunds", tag = "orders",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, body = RefundList),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_refunds(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> AppResult<Json<RefundList>> {
    Ok(Json(super::list(&state.db, &user, id).await?))
}
