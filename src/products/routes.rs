//! `/products` routes: thin handlers over `service`.

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    dto::{NewProduct, ProductInput, ProductListQuery, ProductResponse},
    service::{self, Catalog},
};
use crate::{
    auth::AuthUser,
    error::{AppResult, Problem},
    events::Actor,
    extract::{Json, Path, Query},
    pagination::Page,
    state::AppState,
};

/// The catalog's rules, with what they use from the state.
fn catalog(state: &AppState) -> Catalog<'_> {
    Catalog {
        db: &state.db,
        cache: &state.cache,
        notifier: &state.notifier,
        currency: &state.config.currency,
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_products, create_product))
        .routes(routes!(
            get_product,
            put_product,
            patch_product,
            delete_product
        ))
}

/// A page of the catalog.
#[utoipa::path(get, path = "/products", tag = "products",
    security((), ("bearer" = [])),
    params(ProductListQuery),
    responses(
        (status = 200, body = Page<ProductResponse>),
        (status = 403, description = "`includeDeleted=true` without the ADMIN role", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad paging, ordering or filter", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_products(
    State(state): State<AppState>,
    caller: Option<AuthUser>,
    Query(query): Query<ProductListQuery>,
) -> AppResult<Response> {
    Ok(json(
        service::list(&catalog(&state), caller.as_ref(), query).await?,
    ))
}

/// One product (admins also see soft-deleted ones).
#[utoipa::path(get, path = "/products/{id}", tag = "products",
    security((), ("bearer" = [])),
    params(("id" = Uuid, Path, description = "Product id")),
    responses(
        (status = 200, body = ProductResponse),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_product(
    State(state): State<AppState>,
    caller: Option<AuthUser>,
    Path(id): Path<Uuid>,
) -> AppResult<Response> {
    Ok(json(
        service::get(&catalog(&state), caller.as_ref(), id).await?,
    ))
}

/// A JSON answer from text already serialized (by the cache or for it).
fn json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Add a product (ADMIN).
#[utoipa::path(post, path = "/products", tag = "products",
    security(("bearer" = [])),
    request_body = NewProduct,
    responses(
        (status = 201, body = ProductResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_product(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<ProductInput>,
) -> AppResult<(StatusCode, Json<ProductResponse>)> {
    user.require_admin()?;
    Ok((
        StatusCode::CREATED,
        Json(service::create(&catalog(&state), Actor::caller(&user), body).await?),
    ))
}

/// Change any of a product's fields (ADMIN).
#[utoipa::path(put, path = "/products/{id}", tag = "products",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Product id")),
    request_body = ProductInput,
    responses(
        (status = 200, body = ProductResponse),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn put_product(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(body): Json<ProductInput>,
) -> AppResult<Json<ProductResponse>> {
    user.require_admin()?;
    Ok(Json(
        service::update(&catalog(&state), Actor::caller(&user), id, body).await?,
    ))
}

/// Change any of a product's fields (ADMIN); the same as `PUT`.
#[utoipa::path(patch, path = "/products/{id}", tag = "products",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Product id")),
    request_body = ProductInput,
    responses(
        (status = 200, body = ProductResponse),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn patch_product(
    state: State<AppState>,
    user: AuthUser,
    id: Path<Uuid>,
    body: Json<ProductInput>,
) -> AppResult<Json<ProductResponse>> {
    put_product(state, user, id, body).await
}

/// Soft-delete a product (ADMIN); orders that reference it keep working.
#[utoipa::path(delete, path = "/products/{id}", tag = "products",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Product id")),
    responses(
        (status = 200, body = ProductResponse),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_product(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> AppResult<Json<ProductResponse>> {
    user.require_admin()?;
    Ok(Json(
        service::delete(&catalog(&state), Actor::caller(&user), id).await?,
    ))
}
