//! `/admin/users` routes (ADMIN): thin handlers over the account rules.

use axum::{extract::State, http::StatusCode};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{NewUser, UserChanges, UserListQuery};
use crate::{
    auth::{AuthUser, dto::UserResponse},
    error::{AppResult, Problem},
    extract::{Json, Path, Query},
    pagination::Page,
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user))
}

/// Accounts, newest first by default; `q` searches email and name.
#[utoipa::path(get, path = "/admin/users", tag = "admin",
    security(("bearer" = [])),
    params(UserListQuery),
    responses(
        (status = 200, body = Page<UserResponse>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad paging, `role`, `disabled` or `q` parameter", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_users(
    State(state): State<AppState>,
    user: AuthUser,
    Query(query): Query<UserListQuery>,
) -> AppResult<Json<Page<UserResponse>>> {
    user.require_admin()?;
    Ok(Json(super::list(&state, query).await?))
}

/// One account.
#[utoipa::path(get, path = "/admin/users/{id}", tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = UserResponse),
        (status = 400, description = "Not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_user(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> AppResult<Json<UserResponse>> {
    user.require_admin()?;
    Ok(Json(super::get(&state, id).await?))
}

/// Create an account of either role (admins may create admins).
#[utoipa::path(post, path = "/admin/users", tag = "admin",
    security(("bearer" = [])),
    request_body = NewUser,
    responses(
        (status = 201, body = UserResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`email_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad email, weak password or unknown role", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_user(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<NewUser>,
) -> AppResult<(StatusCode, Json<UserResponse>)> {
    user.require_admin()?;
    let created = super::create(&state, &state.passwords, body).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Change an account's role, name or disabled flag. Disabling ends every session of the
/// account at once; a role change applies to its next request.
#[utoipa::path(patch, path = "/admin/users/{id}", tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = UserChanges,
    responses(
        (status = 200, body = UserResponse),
        (status = 400, description = "Not a UUID, or a field of the wrong type", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`last_admin`: no enabled admin would remain", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An unknown role or a bad name", body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_user(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(body): Json<UserChanges>,
) -> AppResult<Json<UserResponse>> {
    user.require_admin()?;
    Ok(Json(super::update(&state, id, body).await?))
}
