//! Categories: the catalog's tree. Unique slugs, siblings ordered by `position`, admin
//! writes that refuse cycles, a cached public list (parents before children), and the
//! descendants a `GET /products?categoryId=` covers. Knows nothing about HTTP.

pub mod routes;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use entity::{category, product, product_category};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait, QueryFilter,
    Set, SqlErr,
    sea_query::{Expr, ExprTrait},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    cache::Cache,
    clock, db,
    domain::{WholeNumber, check_text},
    error::{AppError, AppResult, FieldErrors},
    extract::present,
    notifier::{Notifier, detached},
    precondition::{self, IfMatch},
};

/// The longest name and slug.
pub const MAX_NAME_CHARS: usize = 100;
/// The largest `position`.
pub const MAX_POSITION: i64 = 1_000_000;

/// What the category rules use.
pub struct Categories<'a> {
    pub db: &'a DatabaseConnection,
    pub cache: &'a std::sync::Arc<dyn Cache>,
    pub notifier: &'a Notifier,
}

/// A category as clients see it.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CategoryResponse {
    pub id: Uuid,
    pub name: String,
    /// Lower-case letters, digits and single hyphens; unique.
    #[schema(example = "espresso-cups")]
    pub slug: String,
    /// `null` at the top of the tree.
    pub parent_id: Option<Uuid>,
    /// Order among its siblings (then by name).
    pub position: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The row's version: sent as the `ETag` header, not in the body.
    #[serde(skip)]
    pub version: i64,
}

impl From<category::Model> for CategoryResponse {
    fn from(row: category::Model) -> Self {
        Self {
            id: row.id,
            name: row.name,
            slug: row.slug,
            parent_id: row.parent_id,
            position: row.position,
            created_at: row.created_at,
            updated_at: row.updated_at,
            version: row.version,
        }
    }
}

/// `GET /categories`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CategoryList {
    /// Every category, each followed by its subtree (parents before children), siblings
    /// by `position` then name.
    pub items: Vec<CategoryResponse>,
}

/// `POST /categories` (`name` required) and `PATCH /categories/{id}` (any subset).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CategoryChanges)]
pub struct CategoryInput {
    /// 1 to 100 characters (trimmed), no control characters.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, min_length = 1, max_length = 100, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$", example = "Espresso cups")]
    pub name: Option<Option<String>>,
    /// Lower-case letters, digits and single hyphens, up to 100 characters; made from the
    /// name when left out of a new category.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, max_length = 100, pattern = r"^[a-z0-9]+(-[a-z0-9]+)*$", example = "espresso-cups")]
    pub slug: Option<Option<String>>,
    /// The parent; `null` puts it at the top. A category cannot be under itself or one of
    /// its descendants (422 `category_cycle`).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = Uuid, pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
    pub parent_id: Option<Option<String>>,
    /// Order among its siblings, 0 to 1,000,000 (default 0).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = i64, minimum = 0, maximum = 1_000_000, example = 0)]
    pub position: Option<Option<WholeNumber>>,
}

/// `POST /categories`: a new category. Documents the body the handler reads as a
/// [`CategoryInput`] (which answers 422 naming each missing field).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)] // describes a request body; the handler reads it as `CategoryInput`
pub struct NewCategory {
    /// 1 to 100 characters (trimmed), no control characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$",
        example = "Espresso cups"
    )]
    name: String,
    /// Lower-case letters, digits and single hyphens, up to 100 characters; made from
    /// the name when left out (a name without ASCII letters or digits needs one).
    #[schema(
        max_length = 100,
        pattern = r"^[a-z0-9]+(-[a-z0-9]+)*$",
        example = "espresso-cups"
    )]
    slug: Option<String>,
    /// The parent; left out or `null`, it is at the top.
    #[schema(value_type = Option<String>, format = Uuid, pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
    parent_id: Option<String>,
    /// Order among its siblings, 0 to 1,000,000 (default 0).
    #[schema(minimum = 0, maximum = 1_000_000, example = 0)]
    position: Option<i64>,
}

/// Validated changes; `None` leaves a field as it is.
struct Changes {
    name: Option<String>,
    slug: Option<String>,
    parent: Option<Option<Uuid>>,
    position: Option<i32>,
}

/// A slug made from a name: ASCII letters and digits, lower-cased, other runs as one `-`.
pub fn slugify(name: &str) -> String {
    let mut slug = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    while slug.ends_with('-') {
        slug.pop();
    }
    slug.chars()
        .take(MAX_NAME_CHARS)
        .collect::<String>()
        .trim_end_matches('-')
        .to_owned()
}

fn valid_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= MAX_NAME_CHARS
        && slug.split('-').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

fn validate(input: CategoryInput, creating: bool) -> AppResult<Changes> {
    let mut errors = FieldErrors::new();
    let mut fail = |field: &str, msg: String| errors.entry(field.to_owned()).or_default().push(msg);
    // On a new category a `null` slug or position means the default.
    for (field, null) in [
        ("name", matches!(input.name, Some(None))),
        ("slug", !creating && matches!(input.slug, Some(None))),
        (
            "position",
            !creating && matches!(input.position, Some(None)),
        ),
    ] {
        if null {
            fail(field, "must not be null".into());
        }
    }
    if creating && input.name.is_none() {
        fail("name", "is required".into());
    }
    let name = input.name.flatten();
    if let Some(Err(msg)) = name.as_deref().map(|n| check_text(n, false)) {
        fail("name", msg);
    }
    let name = name.map(|n| n.trim().to_owned());
    match &name {
        Some(n) if n.is_empty() => fail("name", "must not be empty".into()),
        Some(n) if n.chars().count() > MAX_NAME_CHARS => {
            fail(
                "name",
                format!("must be at most {MAX_NAME_CHARS} characters"),
            );
        }
        _ => {}
    }
    let mut slug = input.slug.flatten();
    if slug.as_deref().is_some_and(|s| !valid_slug(s)) {
        fail(
            "slug",
            "must be lower-case letters and digits in words joined by single hyphens, up to 100 characters".into(),
        );
    }
    if creating && slug.is_none() {
        let made = name.as_deref().map(slugify).unwrap_or_default();
        if made.is_empty() && name.as_deref().is_some_and(|n| !n.is_empty()) {
            fail(
                "slug",
                "cannot be made from this name (no ASCII letters or digits); give one".into(),
            );
        }
        slug = Some(made);
    }
    let parent = match input.parent_id {
        None => None,
        Some(None) => Some(None),
        Some(Some(raw)) => match Uuid::parse_str(&raw) {
            Ok(id) => Some(Some(id)),
            Err(_) => {
                fail("parentId", "must be a UUID".into());
                None
            }
        },
    };
    let position = match input.position.flatten().map(|p| p.0) {
        None => None,
        Some(p) if (0..=MAX_POSITION).contains(&p) => Some(p as i32),
        Some(_) => {
            fail("position", format!("must be from 0 to {MAX_POSITION}"));
            None
        }
    };
    if !errors.is_empty() {
        return Err(AppError::validation(errors));
    }
    Ok(Changes {
        name,
        slug,
        parent,
        position,
    })
}

/// Every category in the tree's reading order: each one followed by its subtree (so
/// parents come before children), siblings by position, name and id.
fn tree_order(rows: Vec<category::Model>) -> Vec<category::Model> {
    let mut children: HashMap<Option<Uuid>, Vec<category::Model>> = HashMap::new();
    for row in rows {
        children.entry(row.parent_id).or_default().push(row);
    }
    for siblings in children.values_mut() {
        // Reversed, so that popping from the stack takes them in order.
        siblings.sort_by(|a, b| (b.position, &b.name, b.id).cmp(&(a.position, &a.name, a.id)));
    }
    let mut ordered = Vec::new();
    let mut stack: Vec<category::Model> = children.remove(&None).unwrap_or_default();
    while let Some(row) = stack.pop() {
        stack.extend(children.remove(&Some(row.id)).unwrap_or_default());
        ordered.push(row);
    }
    ordered
}

/// `root` and every category under it (however deep), from the whole tree `rows`.
pub fn with_descendants(rows: &[category::Model], root: Uuid) -> Vec<Uuid> {
    let mut found = vec![root];
    let mut seen: HashSet<Uuid> = HashSet::from([root]);
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        for row in rows.iter().filter(|r| r.parent_id == Some(parent)) {
            if seen.insert(row.id) {
                found.push(row.id);
            }
        }
        i += 1;
    }
    found
}

/// Every category as JSON, from the catalog cache when it can be.
pub async fn list(categories: &Categories<'_>) -> AppResult<String> {
    let compute = || async {
        let rows = category::Entity::find().all(categories.db).await?;
        let items = tree_order(rows)
            .into_iter()
            .map(CategoryResponse::from)
            .collect();
        serde_json::to_string(&CategoryList { items }).map_err(|e| AppError::Internal(e.into()))
    };
    let Some(version) = categories.cache.version().await else {
        return compute().await;
    };
    let key = format!("catalog:v{version}:categories");
    if let Some(hit) = categories.cache.get(&key).await {
        return Ok(hit);
    }
    let json = compute().await?;
    categories.cache.set(&key, &json).await;
    Ok(json)
}

/// One category, by id or by slug.
pub async fn get(db: &DatabaseConnection, id_or_slug: &str) -> AppResult<CategoryResponse> {
    let select = match Uuid::parse_str(id_or_slug) {
        Ok(id) => category::Entity::find_by_id(id),
        Err(_) => category::Entity::find().filter(category::Column::Slug.eq(id_or_slug)),
    };
    select
        .one(db)
        .await?
        .map(CategoryResponse::from)
        .ok_or_else(|| AppError::not_found("category"))
}

/// The answer to a write that broke the unique slug.
fn slug_taken(err: sea_orm::DbErr) -> AppError {
    match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => AppError::conflict(
            "slug_taken",
            "Another category has this slug; choose another.",
        ),
        _ => err.into(),
    }
}

/// Serialises moves in the tree on PostgreSQL (SQLite serialises every writer), so two
/// concurrent moves cannot each pass the cycle check and make a loop together.
async fn lock_tree<C: ConnectionTrait>(txn: &C) -> AppResult<()> {
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        txn.execute_unprepared("SELECT pg_advisory_xact_lock(7431001)")
            .await?;
    }
    Ok(())
}

/// 422 unless `parent` is a category that is neither `id` nor under it.
fn check_parent(rows: &[category::Model], id: Option<Uuid>, parent: Uuid) -> AppResult<()> {
    if !rows.iter().any(|r| r.id == parent) {
        return Err(AppError::invalid_field("parentId", "no such category"));
    }
    if let Some(id) = id
        && with_descendants(rows, id).contains(&parent)
    {
        return Err(AppError::unprocessable(
            "category_cycle",
            "A category cannot be placed under itself or one of its descendants.",
        )
        .with_errors(FieldErrors::from([(
            "parentId".to_owned(),
            vec!["is this category or one of its descendants".to_owned()],
        )])));
    }
    Ok(())
}

impl Categories<'_> {
    /// After a write committed: cached catalog reads (categories and products) go stale.
    async fn changed(&self) {
        let notifier = self.notifier.clone();
        detached(async move { notifier.catalog_changed().await }).await;
    }
}

/// Adds a category.
pub async fn create(
    categories: &Categories<'_>,
    input: CategoryInput,
) -> AppResult<CategoryResponse> {
    let changes = validate(input, true)?;
    let now = clock::now();
    let txn = db::begin_write(categories.db).await?;
    let parent = changes.parent.flatten();
    if let Some(parent) = parent {
        lock_tree(&txn).await?;
        let rows = category::Entity::find().all(&txn).await?;
        check_parent(&rows, None, parent)?;
    }
    let row = category::Model {
        id: Uuid::now_v7(),
        name: changes.name.unwrap_or_default(),
        slug: changes.slug.unwrap_or_default(),
        parent_id: parent,
        position: changes.position.unwrap_or(0),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    category::Entity::insert(category::ActiveModel::from(row.clone()))
        .exec_without_returning(&txn)
        .await
        .map_err(slug_taken)?;
    txn.commit().await?;
    categories.changed().await;
    tracing::info!(category_id = %row.id, "category created");
    Ok(row.into())
}

/// Changes a category's fields if `precondition` still holds; moving it under itself or
/// a descendant is a 422.
pub async fn update(
    categories: &Categories<'_>,
    id: Uuid,
    input: CategoryInput,
    precondition: Option<&IfMatch>,
) -> AppResult<CategoryResponse> {
    let changes = validate(input, false)?;
    let txn = db::begin_write(categories.db).await?;
    if let Some(Some(parent)) = changes.parent {
        lock_tree(&txn).await?;
        let rows = category::Entity::find().all(&txn).await?;
        if !rows.iter().any(|r| r.id == id) {
            return Err(AppError::not_found("category"));
        }
        check_parent(&rows, Some(id), parent)?;
    }
    let mut model = category::ActiveModel {
        updated_at: Set(clock::now()),
        ..Default::default()
    };
    if let Some(name) = changes.name {
        model.name = Set(name);
    }
    if let Some(slug) = changes.slug {
        model.slug = Set(slug);
    }
    if let Some(parent) = changes.parent {
        model.parent_id = Set(parent);
    }
    if let Some(position) = changes.position {
        model.position = Set(position);
    }
    let mut update = category::Entity::update_many()
        .set(model)
        .col_expr(
            category::Column::Version,
            Expr::col(category::Column::Version).add(1),
        )
        .filter(category::Column::Id.eq(id));
    if let Some(versions) = precondition.and_then(IfMatch::versions) {
        update = update.filter(category::Column::Version.is_in(versions.iter().copied()));
    }
    let updated = update
        .exec_with_returning(&txn)
        .await
        .map_err(slug_taken)?
        .into_iter()
        .next();
    let Some(row) = updated else {
        txn.rollback().await?;
        category::Entity::find_by_id(id)
            .one(categories.db)
            .await?
            .ok_or_else(|| AppError::not_found("category"))?;
        return Err(precondition::failed("category"));
    };
    txn.commit().await?;
    categories.changed().await;
    Ok(row.into())
}

/// Deletes a category without children (409 `category_not_empty` otherwise), if
/// `precondition` still holds; its products lose it (and their versions move on).
pub async fn delete(
    categories: &Categories<'_>,
    id: Uuid,
    precondition: Option<&IfMatch>,
) -> AppResult<()> {
    let txn = db::begin_write(categories.db).await?;
    lock_tree(&txn).await?;
    let Some(row) = category::Entity::find_by_id(id).one(&txn).await? else {
        return Err(AppError::not_found("category"));
    };
    if precondition.is_some_and(|p| !p.matches(row.version)) {
        return Err(precondition::failed("category"));
    }
    let children = category::Entity::find()
        .filter(category::Column::ParentId.eq(id))
        .one(&txn)
        .await?;
    if children.is_some() {
        return Err(AppError::conflict(
            "category_not_empty",
            "This category has subcategories; move or delete them first.",
        ));
    }
    let members: Vec<Uuid> = product_category::Entity::find()
        .filter(product_category::Column::CategoryId.eq(id))
        .all(&txn)
        .await?
        .into_iter()
        .map(|m| m.product_id)
        .collect();
    if !members.is_empty() {
        product::Entity::update_many()
            .col_expr(
                product::Column::Version,
                Expr::col(product::Column::Version).add(1),
            )
            .col_expr(product::Column::UpdatedAt, Expr::value(clock::now()))
            .filter(product::Column::Id.is_in(members))
            .exec(&txn)
            .await?;
    }
    category::Entity::delete_many()
        .filter(category::Column::Id.eq(id))
        .filter(category::Column::Version.eq(row.version))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    categories.changed().await;
    tracing::info!(category_id = %id, "category deleted");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_made_from_names() {
        assert_eq!(slugify("Espresso Cups & Saucers"), "espresso-cups-saucers");
        assert_eq!(slugify("  --Café--  "), "caf");
        assert_eq!(slugify("日本"), "");
        assert!(valid_slug("a-1-b"));
        for bad in ["", "-a", "a-", "a--b", "A", "a_b", &"a".repeat(101)] {
            assert!(!valid_slug(bad), "{bad:?}");
        }
    }
}
