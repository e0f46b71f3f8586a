//! `GET /events` (a cursor page of what the caller may see) and `GET /orders/{id}/events`
//! (an order's history).

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{Event, history, page};
use crate::{
    auth::AuthUser,
    error::{AppResult, Problem},
    extract::{Json, Path, Query},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_events))
        .routes(routes!(order_events))
}

/// Query of `GET /events`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only events after this one (an event `id`, or `nextCursor` of a page).
    #[param(max_length = 41, pattern = r"^[0-9]{20}-[0-9]{20}$")]
    pub after: Option<String>,
    /// Comma-separated types (`order.completed`) or prefixes (`order.*`).
    #[param(
        max_length = 500,
        pattern = r"^[a-z_]+\.([a-z_]+|\*)(,[a-z_]+\.([a-z_]+|\*))*$"
    )]
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Only the events of this order.
    #[param(value_type = Option<Uuid>)]
    pub order_id: Option<String>,
    /// Page size (default 50).
    #[param(value_type = Option<u64>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
}

/// A page of the event log.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    pub items: Vec<Event>,
    /// Whether more events follow (now).
    pub has_more: bool,
    /// Pass as `after` for the next page; the last item's `id` (or `after` when empty).
    pub next_cursor: Option<String>,
}

/// The events of one order.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    pub items: Vec<Event>,
}

/// The event log as the caller may see it, oldest first: a client sees the events of its
/// own orders, an admin every event.
#[utoipa::path(get, path = "/events", tag = "events",
    security(("bearer" = [])),
    params(EventQuery),
    responses(
        (status = 200, body = EventPage),
    ))]
async fn list_events(
    State(state): State<AppState>,
    user: AuthUser,
    Query(query): Query<EventQuery>,
) -> AppResult<Json<EventPage>> {
    Ok(Json(page(&state.db, &user, query).await?))
}

/// An order's history with who did what, oldest first (its owner or an admin).
#[utoipa::path(get, path = "/orders/{id}/events", tag = "orders",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, body = EventList),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn order_events(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> AppResult<Json<EventList>> {
    Ok(Json(EventList {
        items: history(&state.db, &user, id).await?,
    }))
}
