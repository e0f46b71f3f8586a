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
        .routes(routes!(stream_events))
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

/// Query of `GET /events/stream`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// The access token, for clients that cannot send headers (`EventSource`).
    #[param(max_length = 4096)]
    #[serde(rename = "access_token")]
    pub access_token: Option<String>,
    /// Replay what came after this event first (as the `Last-Event-ID` header does).
    #[param(max_length = 41, pattern = r"^[0-9]{20}-[0-9]{20}$")]
    pub last_event_id: Option<String>,
}

/// The caller's events as they happen (`text/event-stream`): each is `id: <id>`,
/// `event: <type>`, `data: <event JSON>`. With `Last-Event-ID` (or `?lastEventId=`) what
/// came after it is replayed first, with no gap and no duplicate at the hand-over. A
/// comment line every 15 s keeps proxies from closing the stream. Authenticate with
/// `Authorization: Bearer` or `?access_token=`.
#[utoipa::path(get, path = "/events/stream", tag = "events",
    security(("bearer" = [])),
    params(
        StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, max_length = 41, pattern = r"^[0-9]{20}-[0-9]{20}$",
            description = "Replay what came after this event first"),
    ),
    responses(
        (status = 200, description = "A stream of server-sent events", body = String, content_type = "text/event-stream"),
    ))]
async fn stream_events(
    State(state): State<AppState>,
    header_user: Option<AuthUser>,
    Query(query): Query<StreamQuery>,
    headers: axum::http::HeaderMap,
) -> AppResult<axum::response::Response> {
    use axum::response::IntoResponse;

    let user = match (header_user, query.access_token.as_deref()) {
        (Some(user), _) => user,
        (None, Some(token)) => state.auth.authenticate(token).await?,
        (None, None) => {
            return Err(crate::error::AppError::unauthorized(
                "Send `Authorization: Bearer <access_token>` or `?access_token=`.",
            ));
        }
    };
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(query.last_event_id);
    let stream = super::stream::open(&state, user, last)?;
    Ok(stream.into_response())
}
