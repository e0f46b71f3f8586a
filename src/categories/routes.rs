//! `/categories` routes: thin handlers over the category rules.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{Categories, CategoryInput, CategoryList, CategoryResponse, NewCategory};
use crate::{
    auth::AuthUser,
    error::{AppResult, Problem},
    extract::{Json, Path},
    precondition::{IfMatchHeader, Precondition, etag_header},
    state::AppState,
};

fn categories(state: &AppState) -> Categories<'_> {
    Categories {
        db: &state.db,
        cache: &state.cache,
        notifier: &state.notifier,
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_categories, create_category))
        .routes(routes!(get_category, patch_category, delete_category))
}

/// A category with its `ETag`.
fn tagged(category: CategoryResponse) -> (HeaderMap, Json<CategoryResponse>) {
    (etag_header(category.version), Json(category))
}

/// Every category, parents before children.
#[utoipa::path(get, path = "/categories", tag = "categories",
    responses((status = 200, body = CategoryList)))]
async fn list_categories(State(state): State<AppState>) -> AppResult<Response> {
    let body = super::list(&categories(&state)).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// One category, by id or by slug.
#[utoipa::path(get, path = "/categories/{id}", tag = "categories",
    params(("id" = String, Path, description = "The category's id, or its slug", max_length = 100)),
    responses(
        (status = 200, body = CategoryResponse, headers(("ETag" = String, description = "The category's version, for `If-Match`"))),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_category(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> AppResult<(HeaderMap, Json<CategoryResponse>)> {
    Ok(tagged(super::get(&state.db, &id).await?))
}

/// Add a category (ADMIN).
#[utoipa::path(post, path = "/categories", tag = "categories",
    security(("bearer" = [])),
    request_body = NewCategory,
    responses(
        (status = 201, body = CategoryResponse, headers(("ETag" = String, description = "The category's version"))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`slug_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` (an unknown `parentId` too)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_category(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<CategoryInput>,
) -> AppResult<(StatusCode, HeaderMap, Json<CategoryResponse>)> {
    user.require_admin()?;
    let (headers, body) = tagged(super::create(&categories(&state), body).await?);
    Ok((StatusCode::CREATED, headers, body))
}

/// Change a category (ADMIN): rename, re-slug, move (not under itself or a descendant),
/// reorder.
#[utoipa::path(patch, path = "/categories/{id}", tag = "categories",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Category id"), IfMatchHeader),
    request_body = CategoryInput,
    responses(
        (status = 200, body = CategoryResponse, headers(("ETag" = String, description = "The category's new version"))),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`slug_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`precondition_failed`: `If-Match` names no current version; nothing changed", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` or `category_cycle`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn patch_category(
    State(state): State<AppState>,
    user: AuthUser,
    Precondition(precondition): Precondition,
    Path(id): Path<Uuid>,
    Json(body): Json<CategoryInput>,
) -> AppResult<(HeaderMap, Json<CategoryResponse>)> {
    user.require_admin()?;
    Ok(tagged(
        super::update(&categories(&state), id, body, precondition.as_ref()).await?,
    ))
}

/// Delete a category without subcategories (ADMIN); its products just lose it.
#[utoipa::path(delete, path = "/categories/{id}", tag = "categories",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Category id"), IfMatchHeader),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`category_not_empty`: it has subcategories", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`precondition_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_category(
    State(state): State<AppState>,
    user: AuthUser,
    Precondition(precondition): Precondition,
    Path(id): Path<Uuid>,
) -> AppResult<StatusCode> {
    user.require_admin()?;
    super::delete(&categories(&state), id, precondition.as_ref()).await?;
    Ok(StatusCode::NO_CONTENT)
}
