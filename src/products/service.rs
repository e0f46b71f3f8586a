//! Catalog rules: listing, search, admin writes and soft delete. Knows nothing about HTTP.

use std::collections::HashMap;

use entity::{MovementReason, category, product, product_category};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use super::dto::{ProductInput, ProductListQuery, ProductResponse, ProductSort};
use std::sync::Arc;

use sea_orm::{DatabaseConnection, DatabaseTransaction};

use crate::{
    auth::AuthUser,
    cache::Cache,
    categories, clock, db,
    domain::{Money, check_text},
    error::{AppError, AppResult, FieldErrors},
    events::{self, Actor, NewEvent},
    inventory::{self, Cause, MAX_STOCK},
    notifier::{Notifier, detached},
    pagination::{Page, PageRequest, optional_uuid},
    precondition::{self, IfMatch},
};

/// What the catalog's rules use: the database, the read cache and the store's currency.
pub struct Catalog<'a> {
    pub db: &'a DatabaseConnection,
    pub cache: &'a Arc<dyn Cache>,
    pub notifier: &'a Notifier,
    pub currency: &'a str,
}

impl Catalog<'_> {
    /// After a write and its event committed: the relay reads the log, and cached catalog
    /// reads are invalidated, from a task of its own (a client hanging up cannot leave the
    /// cache unbumped).
    pub(super) async fn changed(&self) {
        self.notifier.events_written();
        let notifier = self.notifier.clone();
        detached(async move { notifier.catalog_changed().await }).await;
    }

    /// Writes `product`'s `change` event in `txn`, commits, and says so.
    async fn commit(
        &self,
        txn: DatabaseTransaction,
        change: &str,
        product: product::Model,
        actor: Actor,
    ) -> AppResult<ProductResponse> {
        let response = respond(&txn, product, self.currency).await?;
        let event = NewEvent::product(change, &response, actor);
        events::record(&txn, vec![event], clock::now()).await?;
        txn.commit().await?;
        self.changed().await;
        Ok(response)
    }
}

const MAX_QUERY_CHARS: usize = 100;

/// The most categories a product may be in.
pub const MAX_CATEGORIES: usize = 20;

/// The categories of each of `products` (sorted; a product in none is left out).
pub async fn categories_of<C: ConnectionTrait>(
    db: &C,
    products: &[Uuid],
) -> AppResult<HashMap<Uuid, Vec<Uuid>>> {
    if products.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = product_category::Entity::find()
        .filter(product_category::Column::ProductId.is_in(products.iter().copied()))
        .all(db)
        .await?;
    let mut by_product: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for row in rows {
        by_product
            .entry(row.product_id)
            .or_default()
            .push(row.category_id);
    }
    for ids in by_product.values_mut() {
        ids.sort();
    }
    Ok(by_product)
}

/// A product as admins see it (images of every status), read on `db`.
pub async fn respond<C: ConnectionTrait>(
    db: &C,
    product: product::Model,
    currency: &str,
) -> AppResult<ProductResponse> {
    respond_to(db, product, currency, false).await
}

/// A product with its categories and images (only `READY` ones when `ready_only`).
async fn respond_to<C: ConnectionTrait>(
    db: &C,
    product: product::Model,
    currency: &str,
    ready_only: bool,
) -> AppResult<ProductResponse> {
    let categories = categories_of(db, &[product.id])
        .await?
        .remove(&product.id)
        .unwrap_or_default();
    let images = crate::images::images_of(db, &[product.id], ready_only)
        .await?
        .remove(&product.id)
        .unwrap_or_default();
    Ok(ProductResponse::new(product, categories, images, currency))
}

/// Puts product `id` in exactly `categories` (each must exist: 422 naming the others).
async fn place_in<C: ConnectionTrait>(txn: &C, id: Uuid, categories: &[Uuid]) -> AppResult<()> {
    let known: Vec<Uuid> = category::Entity::find()
        .filter(category::Column::Id.is_in(categories.iter().copied()))
        .all(txn)
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect();
    let unknown: Vec<String> = categories
        .iter()
        .filter(|c| !known.contains(c))
        .map(Uuid::to_string)
        .collect();
    if !unknown.is_empty() {
        return Err(AppError::invalid_field(
            "categoryIds",
            format!("no such category: {}", unknown.join(", ")),
        ));
    }
    product_category::Entity::delete_many()
        .filter(product_category::Column::ProductId.eq(id))
        .exec(txn)
        .await?;
    if !categories.is_empty() {
        product_category::Entity::insert_many(categories.iter().map(|category| {
            product_category::ActiveModel {
                product_id: Set(id),
                category_id: Set(*category),
            }
        }))
        .exec_without_returning(txn)
        .await?;
    }
    Ok(())
}

/// A page of the catalog as JSON. Soft-deleted products only appear for admins who ask;
/// everything else is served from the cache when it can be.
pub async fn list(
    catalog: &Catalog<'_>,
    caller: Option<&AuthUser>,
    query: ProductListQuery,
) -> AppResult<String> {
    let mut errors = FieldErrors::new();
    let page = PageRequest::<ProductSort>::parse(
        query.skip.as_deref(),
        query.take.as_deref(),
        query.order_by.as_deref(),
        query.order.as_deref(),
        &mut errors,
    );
    let include_deleted = match query.include_deleted.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            errors.insert(
                "includeDeleted".into(),
                vec!["must be true or false".into()],
            );
            false
        }
    };
    // Control characters are refused as sent, before trimming (which would drop some).
    if let Some(Err(msg)) = query.q.as_deref().map(|q| check_text(q, false)) {
        errors.insert("q".into(), vec![msg]);
    }
    let search = query
        .q
        .map(|q| q.trim().to_lowercase())
        .filter(|q| !q.is_empty());
    if let Some(q) = &search
        && q.chars().count() > MAX_QUERY_CHARS
    {
        errors.insert(
            "q".into(),
            vec![format!("must be at most {MAX_QUERY_CHARS} characters")],
        );
    }
    let category = optional_uuid(
        query.category_id.as_deref(),
        "categoryId",
        "must be a category id",
        &mut errors,
    );
    let Some(page) = page.filter(|_| errors.is_empty()) else {
        return Err(AppError::validation(errors));
    };
    if include_deleted {
        match caller {
            None => {
                return Err(AppError::unauthorized(
                    "includeDeleted needs an admin token.",
                ));
            }
            Some(user) => user.require_admin()?,
        }
    }

    // Admins see images of every status: a list of their own.
    let admin = caller.is_some_and(AuthUser::is_admin);
    let key = format!(
        "list:{}:{}:{:?}:{}:{:?}:{:?}:{admin}",
        page.skip, page.take, page.order_by, page.descending, search, category
    );
    let cache = (!include_deleted).then_some(key);
    cached(catalog, cache, || async {
        let page = read_page(catalog, &page, include_deleted, admin, search, category).await?;
        to_json(&page)
    })
    .await
}

async fn read_page(
    catalog: &Catalog<'_>,
    page: &PageRequest<ProductSort>,
    include_deleted: bool,
    admin: bool,
    search: Option<String>,
    category: Option<Uuid>,
) -> AppResult<Page<ProductResponse>> {
    let mut select = product::Entity::find();
    if !include_deleted {
        select = select.filter(product::Column::DeletedAt.is_null());
    }
    if let Some(category) = category {
        // The category and everything under it: the tree is small, read it whole.
        let tree = category::Entity::find().all(catalog.db).await?;
        let covered = categories::with_descendants(&tree, category);
        select = select.filter(
            product::Column::Id.in_subquery(
                sea_orm::sea_query::Query::select()
                    .column(product_category::Column::ProductId)
                    .from(product_category::Entity)
                    .and_where(product_category::Column::CategoryId.is_in(covered))
                    .to_owned(),
            ),
        );
    }
    if let Some(q) = search {
        select = select.filter(crate::db::lower_contains(
            Expr::col((product::Entity, product::Column::Name)),
            &q,
        ));
    }
    let total = select.clone().count(catalog.db).await?;
    let column = match page.order_by {
        ProductSort::CreatedAt => product::Column::CreatedAt,
        ProductSort::UpdatedAt => product::Column::UpdatedAt,
        ProductSort::Name => product::Column::Name,
        ProductSort::Price => product::Column::PriceCents,
        ProductSort::Stock => product::Column::Stock,
        ProductSort::Views => product::Column::Views,
    };
    let order = page.direction();
    let rows = select
        .order_by(column, order.clone())
        .order_by(product::Column::Id, order)
        .offset(page.skip)
        .limit(page.take)
        .all(catalog.db)
        .await?;
    let ids: Vec<Uuid> = rows.iter().map(|p| p.id).collect();
    let mut categories = categories_of(catalog.db, &ids).await?;
    let mut images = crate::images::images_of(catalog.db, &ids, !admin).await?;
    let items = rows
        .into_iter()
        .map(|p| {
            let of = categories.remove(&p.id).unwrap_or_default();
            let pictures = images.remove(&p.id).unwrap_or_default();
            ProductResponse::new(p, of, pictures, catalog.currency)
        })
        .collect();
    Ok(Page::new(items, page, total))
}

/// One product as JSON with its version (the `ETag`); soft-deleted ones are visible to
/// admins only. Served from the cache when it can be (admins always read the database).
pub async fn get(
    catalog: &Catalog<'_>,
    caller: Option<&AuthUser>,
    id: Uuid,
) -> AppResult<(String, i64)> {
    let admin = caller.is_some_and(AuthUser::is_admin);
    // Entries hold `<version> <json>` (a key of their own: plain JSON was cached before).
    let cache = (!admin).then(|| format!("product:{id}"));
    let entry = cached(catalog, cache, || async {
        let product = product::Entity::find_by_id(id)
            .one(catalog.db)
            .await?
            .filter(|p| p.deleted_at.is_none() || admin)
            .ok_or_else(|| AppError::not_found("product"))?;
        let version = product.version;
        let json = to_json(&respond_to(catalog.db, product, catalog.currency, !admin).await?)?;
        Ok(format!("{version} {json}"))
    })
    .await?;
    // Cached as `<version> <json>`.
    entry
        .split_once(' ')
        .and_then(|(version, json)| Some((json.to_owned(), version.parse().ok()?)))
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("malformed cached product")))
}

/// Serves `key` from the cache under the catalog's current version, or computes, stores
/// and serves it. `None` (or a cache that is down) reads through.
async fn cached<F, Fut>(catalog: &Catalog<'_>, key: Option<String>, compute: F) -> AppResult<String>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = AppResult<String>>,
{
    let Some(key) = key else {
        return compute().await;
    };
    let Some(version) = catalog.cache.version().await else {
        return compute().await;
    };
    let key = format!("catalog:v{version}:{key}");
    if let Some(hit) = catalog.cache.get(&key).await {
        return Ok(hit);
    }
    let json = compute().await?;
    catalog.cache.set(&key, &json).await;
    Ok(json)
}

fn to_json<T: serde::Serialize>(value: &T) -> AppResult<String> {
    serde_json::to_string(value).map_err(|err| AppError::Internal(err.into()))
}

/// Adds a product to the catalog; its first stock is the ledger's first movement.
#[tracing::instrument(skip_all, fields(product_id = tracing::field::Empty))]
pub async fn create(
    catalog: &Catalog<'_>,
    actor: Actor,
    input: ProductInput,
) -> AppResult<ProductResponse> {
    let mut errors = FieldErrors::new();
    for (field, present) in [
        ("name", input.name.is_some()),
        ("price", input.price.is_some()),
        ("stock", input.stock.is_some()),
    ] {
        if !present {
            errors.insert(field.into(), vec!["is required".into()]);
        }
    }
    let changes = validate(input, errors)?;
    let now = clock::now();
    let model = product::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(changes.name.unwrap_or_default()),
        description: Set(changes.description.flatten()),
        price_cents: Set(changes.price.map(Money::cents).unwrap_or_default()),
        stock: Set(changes.stock.unwrap_or_default()),
        version: Set(1),
        views: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
        deleted_at: Set(None),
    };
    let txn = db::begin_write(catalog.db).await?;
    let product = model.insert(&txn).await?;
    tracing::Span::current().record("product_id", tracing::field::display(product.id));
    if let Some(categories) = &changes.categories {
        place_in(&txn, product.id, categories).await?;
    }
    let cause = Cause::manual(MovementReason::Correction, actor, Some("initial stock"));
    inventory::opening(&txn, std::slice::from_ref(&product), cause, now).await?;
    let created = catalog.commit(txn, "created", product, actor).await?;
    tracing::info!("product created");
    Ok(created)
}

/// Changes the given fields of a product that is not deleted, if `precondition` (its
/// `If-Match`) still holds. A new `stock` is recorded as a `correction` of the difference
/// from the stock at that moment, so concurrent reservations are never lost from the books.
#[tracing::instrument(skip_all, fields(product_id = %id))]
pub async fn update(
    catalog: &Catalog<'_>,
    actor: Actor,
    id: Uuid,
    input: ProductInput,
    precondition: Option<&IfMatch>,
) -> AppResult<ProductResponse> {
    let changes = validate(input, FieldErrors::new())?;
    if changes.is_empty() {
        // Nothing to write: only whether the precondition would hold.
        let product = live(catalog, id).await?;
        if precondition.is_some_and(|p| !p.matches(product.version)) {
            return Err(precondition::failed("product"));
        }
        return respond(catalog.db, product, catalog.currency).await;
    }
    let now = clock::now();
    let mut model = product::ActiveModel {
        id: Set(id),
        updated_at: Set(now),
        ..Default::default()
    };
    if let Some(name) = changes.name {
        model.name = Set(name);
    }
    if let Some(description) = changes.description {
        model.description = Set(description);
    }
    if let Some(price) = changes.price {
        model.price_cents = Set(price.cents());
    }
    // The first statement writes the row (so it is locked until commit, and its stock is
    // the current one), on the condition that it is live and still matches `If-Match`.
    let txn = db::begin_write(catalog.db).await?;
    let update = live_write(id, precondition).set(model);
    let Some(mut product) = update.exec_with_returning(&txn).await?.into_iter().next() else {
        txn.rollback().await?;
        // Tell a missing product from a stale `If-Match`.
        live(catalog, id).await?;
        return Err(precondition::failed("product"));
    };
    if let Some(stock) = changes.stock {
        let cause = Cause::manual(MovementReason::Correction, actor, None);
        product = inventory::set(&txn, product, stock, cause, now).await?;
    }
    if let Some(categories) = &changes.categories {
        place_in(&txn, id, categories).await?;
    }
    catalog.commit(txn, "updated", product, actor).await
}

/// An update of product `id` that bumps its version, on the condition that it is live and,
/// with `If-Match`, at one of the versions named.
fn live_write(id: Uuid, precondition: Option<&IfMatch>) -> sea_orm::UpdateMany<product::Entity> {
    let mut update = product::Entity::update_many()
        .col_expr(
            product::Column::Version,
            Expr::col(product::Column::Version).add(1),
        )
        .filter(product::Column::Id.eq(id))
        .filter(product::Column::DeletedAt.is_null());
    if let Some(versions) = precondition.and_then(IfMatch::versions) {
        update = update.filter(product::Column::Version.is_in(versions.iter().copied()));
    }
    update
}

/// A product that is not deleted; 404 otherwise.
async fn live(catalog: &Catalog<'_>, id: Uuid) -> AppResult<product::Model> {
    product::Entity::find_by_id(id)
        .one(catalog.db)
        .await?
        .filter(|p| p.deleted_at.is_none())
        .ok_or_else(|| AppError::not_found("product"))
}

/// Soft-deletes a product if `precondition` still holds; deleting it again answers the
/// same product unchanged.
#[tracing::instrument(skip_all, fields(product_id = %id))]
pub async fn delete(
    catalog: &Catalog<'_>,
    actor: Actor,
    id: Uuid,
    precondition: Option<&IfMatch>,
) -> AppResult<ProductResponse> {
    let now = clock::now();
    let txn = db::begin_write(catalog.db).await?;
    let update = live_write(id, precondition)
        .col_expr(product::Column::DeletedAt, Expr::value(Some(now)))
        .col_expr(product::Column::UpdatedAt, Expr::value(now));
    if let Some(product) = update.exec_with_returning(&txn).await?.into_iter().next() {
        return catalog.commit(txn, "deleted", product, actor).await;
    }
    txn.rollback().await?;
    let product = product::Entity::find_by_id(id)
        .one(catalog.db)
        .await?
        .ok_or_else(|| AppError::not_found("product"))?;
    if product.deleted_at.is_none() || precondition.is_some_and(|p| !p.matches(product.version)) {
        return Err(precondition::failed("product"));
    }
    respond(catalog.db, product, catalog.currency).await
}

/// Validated field values; `None` means "leave unchanged".
struct Changes {
    name: Option<String>,
    description: Option<Option<String>>,
    price: Option<Money>,
    stock: Option<i32>,
    categories: Option<Vec<Uuid>>,
}

impl Changes {
    fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.description.is_none()
            && self.price.is_none()
            && self.stock.is_none()
            && self.categories.is_none()
    }
}

fn validate(input: ProductInput, mut errors: FieldErrors) -> AppResult<Changes> {
    let mut fail = |field: &str, msg: String| errors.entry(field.to_owned()).or_default().push(msg);
    // Only a description may be cleared with `null`.
    for (field, null) in [
        ("name", matches!(input.name, Some(None))),
        ("price", matches!(input.price, Some(None))),
        ("stock", matches!(input.stock, Some(None))),
        ("categoryIds", matches!(input.category_ids, Some(None))),
    ] {
        if null {
            fail(field, "must not be null".into());
        }
    }
    // Control characters are refused as sent, before trimming (which would drop some).
    if let Some(Some(Err(msg))) = input
        .name
        .as_ref()
        .map(|n| n.as_deref().map(|n| check_text(n, false)))
    {
        fail("name", msg);
    }
    if let Some(Some(Err(msg))) = input
        .description
        .as_ref()
        .map(|d| d.as_deref().map(|d| check_text(d, true)))
    {
        fail("description", msg);
    }
    let name = input.name.flatten().map(|n| n.trim().to_owned());
    match &name {
        Some(n) if n.is_empty() => fail("name", "must not be empty".into()),
        Some(n) if n.chars().count() > 200 => fail("name", "must be at most 200 characters".into()),
        _ => {}
    }
    let description = input
        .description
        .map(|d| d.map(|d| d.trim().to_owned()).filter(|d| !d.is_empty()));
    if let Some(Some(d)) = &description
        && d.chars().count() > 2000
    {
        fail("description", "must be at most 2000 characters".into());
    }
    let price = match input.price.flatten().map(|p| Money::parse(&p.0)) {
        None => None,
        Some(Ok(p)) if p.cents() > 0 && p <= Money::MAX_PRICE => Some(p),
        Some(Ok(_)) => {
            fail(
                "price",
                format!("must be from 0.01 to {}", Money::MAX_PRICE),
            );
            None
        }
        Some(Err(msg)) => {
            fail("price", msg);
            None
        }
    };
    let stock = match input.stock.flatten().map(|s| s.0) {
        None => None,
        Some(s) if (0..=MAX_STOCK).contains(&s) => Some(s as i32),
        Some(_) => {
            fail("stock", format!("must be from 0 to {MAX_STOCK}"));
            None
        }
    };
    let categories = input.category_ids.flatten().map(|raw| {
        if raw.len() > MAX_CATEGORIES {
            fail(
                "categoryIds",
                format!("must list at most {MAX_CATEGORIES} categories"),
            );
            return Vec::new();
        }
        let mut ids = Vec::with_capacity(raw.len());
        for (i, text) in raw.iter().enumerate() {
            match Uuid::parse_str(text) {
                Ok(id) if ids.contains(&id) => {
                    fail(
                        &format!("categoryIds[{i}]"),
                        "appears more than once".into(),
                    );
                }
                Ok(id) => ids.push(id),
                Err(_) => fail(&format!("categoryIds[{i}]"), "must be a UUID".into()),
            }
        }
        ids
    });
    if !errors.is_empty() {
        return Err(AppError::validation(errors));
    }
    Ok(Changes {
        name,
        description,
        price,
        stock,
        categories,
    })
}
