//! `/products` routes: thin handlers over `service`.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    dto::{NewProduct, ProductInput, ProductListQuery, ProductResponse},
    service::{self, Catalog},
    stock::{self, AdjustmentInput, MovementPage, StockAudit, StockMovement},
};
use crate::{
    auth::AuthUser,
    error::{AppResult, Problem},
    events::Actor,
    extract::{Json, Path, Query},
    pagination::{NewestFirstQuery, Page},
    precondition::{IfMatchHeader, Precondition, etag_header},
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
        .routes(routes!(adjust_stock))
        .routes(routes!(stock_movements))
        .routes(routes!(stock_audit))
}

/// A product with its `ETag`.
fn tagged(product: ProductResponse) -> (HeaderMap, Json<ProductResponse>) {
    (etag_header(product.version), Json(product))
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

/// One product (admins also see soft-deleted ones); counts a view.
#[utoipa::path(get, path = "/products/{id}", tag = "products",
    security((), ("bearer" = [])),
    params(("id" = Uuid, Path, description = "Product id")),
    responses(
        (status = 200, body = ProductResponse, headers(("ETag" = String, description = "The product's version, for `If-Match`"))),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_product(
    State(state): State<AppState>,
    caller: Option<AuthUser>,
    Path(id): Path<Uuid>,
) -> AppResult<Response> {
    let (body, version) = service::get(&catalog(&state), caller.as_ref(), id).await?;
    state.views.count(id);
    Ok((etag_header(version), json(body)).into_response())
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
        (status = 201, body = ProductResponse, headers(("ETag" = String, description = "The product's version, for `If-Match`"))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_product(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<ProductInput>,
) -> AppResult<(StatusCode, HeaderMap, Json<ProductResponse>)> {
    user.require_admin()?;
    let (headers, body) =
        tagged(service::create(&catalog(&state), Actor::caller(&user), body).await?);
    Ok((StatusCode::CREATED, headers, body))
}

/// Change any of a product's fields (ADMIN). A new `stock` is recorded in the ledger as a
/// `correction` of the difference; with `If-Match`, only if the product is unchanged.
#[utoipa::path(put, path = "/products/{id}", tag = "products",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Product id"), IfMatchHeader),
    request_body = ProductInput,
    responses(
        (status = 200, body = ProductResponse, headers(("ETag" = String, description = "The product's new version"))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`precondition_failed`: `If-Match` names no current version; nothing changed", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn put_product(
    State(state): State<AppState>,
    user: AuthUser,
    Precondition(precondition): Precondition,
    Path(id): Path<Uuid>,
    Json(body): Json<ProductInput>,
) -> AppResult<(HeaderMap, Json<ProductResponse>)> {
    user.require_admin()?;
    let actor = Actor::caller(&user);
    Ok(tagged(
        service::update(&catalog(&state), actor, id, body, precondition.as_ref()).await?,
    ))
}

/// Change any of a product's fields (ADMIN); the same as `PUT`.
#[utoipa::path(patch, path = "/products/{id}", tag = "products",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Product id"), IfMatchHeader),
    request_body = ProductInput,
    responses(
        (status = 200, body = ProductResponse, headers(("ETag" = String, description = "The product's new version"))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`precondition_failed`: `If-Match` names no current version; nothing changed", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn patch_product(
    state: State<AppState>,
    user: AuthUser,
    precondition: Precondition,
    id: Path<Uuid>,
    body: Json<ProductInput>,
) -> AppResult<(HeaderMap, Json<ProductResponse>)> {
    put_product(state, user, precondition, id, body).await
}

/// Soft-delete a product (ADMIN); orders that reference it keep working.
#[utoipa::path(delete, path = "/products/{id}", tag = "products",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Product id"), IfMatchHeader),
    responses(
        (status = 200, body = ProductResponse, headers(("ETag" = String, description = "The product's new version"))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`precondition_failed`: `If-Match` names no current version; nothing changed", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_product(
    State(state): State<AppState>,
    user: AuthUser,
    Precondition(precondition): Precondition,
    Path(id): Path<Uuid>,
) -> AppResult<(HeaderMap, Json<ProductResponse>)> {
    user.require_admin()?;
    let actor = Actor::caller(&user);
    Ok(tagged(
        service::delete(&catalog(&state), actor, id, precondition.as_ref()).await?,
    ))
}

/// Move a product's stock by a delta, with a reason (ADMIN). Safe beside any number of
/// concurrent orders: the stock never goes below zero.
#[utoipa::path(post, path = "/products/{id}/stock-adjustments", tag = "products",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Product id")),
    request_body = AdjustmentInput,
    responses(
        (status = 201, description = "The movement recorded", body = StockMovement),
        (status = 400, description = "Malformed id or body", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product, or it is deleted", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`insufficient_stock`: it would go below zero; nothing changed", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn adjust_stock(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(body): Json<AdjustmentInput>,
) -> AppResult<(StatusCode, Json<StockMovement>)> {
    user.require_admin()?;
    let movement = stock::adjust(&catalog(&state), Actor::caller(&user), id, body).await?;
    Ok((StatusCode::CREATED, Json(movement)))
}

/// A product's stock movements, newest first, by cursor (ADMIN).
#[utoipa::path(get, path = "/products/{id}/stock-movements", tag = "products",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Product id"), NewestFirstQuery),
    responses(
        (status = 200, body = MovementPage),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad `after` or `limit`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn stock_movements(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Query(query): Query<NewestFirstQuery>,
) -> AppResult<Json<MovementPage>> {
    user.require_admin()?;
    Ok(Json(stock::movements(&state.db, id, query).await?))
}

/// Every product's stock against the sum of its movements (ADMIN): lists any drift.
#[utoipa::path(get, path = "/admin/stock/audit", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, body = StockAudit),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
async fn stock_audit(State(state): State<AppState>, user: AuthUser) -> AppResult<Json<StockAudit>> {
    user.require_admin()?;
    Ok(Json(stock::audit(&state.db).await?))
}
