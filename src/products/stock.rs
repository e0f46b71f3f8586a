//! The stock ledger's admin side: adjustments (a delta with a reason, safe beside any
//! number of concurrent orders), a product's movements by cursor, and the audit of every
//! product's stock against the sum of its movements. Knows nothing about HTTP.

use chrono::{DateTime, Utc};
use entity::{MovementReason, product, status, stock_movement};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, FromQueryResult, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::service::Catalog;
use crate::{
    clock, db,
    domain::{WholeNumber, check_text},
    error::{AppError, AppResult, FieldErrors},
    events::{self, Actor, ActorKind, NewEvent},
    inventory::{self, Cause, MAX_STOCK, Refused},
    pagination::{NewestFirstQuery, cursor_limit, cursor_rows, optional_uuid},
};

/// The longest `reference` of an adjustment.
pub const MAX_REFERENCE_CHARS: usize = 200;

/// `POST /products/{id}/stock-adjustments`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct AdjustmentInput {
    /// Units to add (positive) or take off (negative); not 0, at most 1,000,000,000 either
    /// way.
    #[schema(schema_with = delta_schema, required = true)]
    pub delta: Option<WholeNumber>,
    /// Why the stock moves.
    #[schema(value_type = AdjustmentReason, required = true)]
    pub reason: Option<String>,
    /// A delivery note, a ticket: up to 200 characters, no control characters.
    #[schema(
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$",
        example = "PO-1042"
    )]
    pub reference: Option<String>,
}

/// A delta: a whole number from -1,000,000,000 to 1,000,000,000, not 0.
fn delta_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
    let range = |min: i64, max: i64| {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(min as f64))
            .maximum(Some(max as f64))
    };
    Schema::OneOf(
        OneOfBuilder::new()
            .item(range(1, MAX_STOCK))
            .item(range(-MAX_STOCK, -1))
            .description(Some(
                "Units to add (positive) or take off (negative); not 0",
            ))
            .examples([serde_json::json!(24)])
            .build(),
    )
}

/// The reasons an admin may give for an adjustment.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)] // describes a request field, read as text and checked by the service
pub enum AdjustmentReason {
    Restock,
    Correction,
    Damage,
    Return,
    Other,
}

/// A movement of the stock ledger.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockMovement {
    pub id: Uuid,
    pub product_id: Uuid,
    /// Units added (positive) or taken off (negative).
    pub delta: i32,
    pub reason: MovementReason,
    pub reference: Option<String>,
    /// The order behind an `order`, `cancel`, `payment_failed`, `expired` or `refund`.
    pub order_id: Option<Uuid>,
    pub actor: Actor,
    /// The product's stock right after this movement.
    pub stock_after: i32,
    pub created_at: DateTime<Utc>,
}

impl TryFrom<stock_movement::Model> for StockMovement {
    type Error = AppError;

    fn try_from(row: stock_movement::Model) -> AppResult<Self> {
        let kind = ActorKind::parse(&row.actor_kind).ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!("unknown actor kind {}", row.actor_kind))
        })?;
        Ok(Self {
            id: row.id,
            product_id: row.product_id,
            delta: row.delta,
            reason: row.reason,
            reference: row.reference,
            order_id: row.order_id,
            actor: Actor {
                kind,
                id: row.actor_id,
            },
            stock_after: row.stock_after,
            created_at: row.created_at,
        })
    }
}

/// A page of a product's movements, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MovementPage {
    pub items: Vec<StockMovement>,
    pub has_more: bool,
    /// Pass as `after` for the next page.
    pub next_cursor: Option<String>,
}

/// A product whose stock is not the sum of its movements.
#[derive(Clone, Debug, Serialize, ToSchema, FromQueryResult)]
#[serde(rename_all = "camelCase")]
pub struct Drift {
    pub product_id: Uuid,
    /// The product's `stock`.
    pub stock: i64,
    /// The sum of its movements.
    pub ledger: i64,
    /// `stock − ledger`.
    pub difference: i64,
}

/// `GET /admin/stock/audit`: every product's stock against its ledger, in one snapshot.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockAudit {
    pub checked_at: DateTime<Utc>,
    /// Products checked (deleted ones included).
    pub products: u64,
    /// Movements summed.
    pub movements: u64,
    /// Products whose stock differs from the sum of their movements. Always empty unless
    /// something wrote `stock` outside the ledger.
    pub drift: Vec<Drift>,
}

/// Moves a live product's stock by `delta`, for one of the adjustment reasons: 409
/// `insufficient_stock` below zero, 422 above the most a product may hold. One
/// conditional update, so it is safe beside any number of orders.
#[tracing::instrument(skip_all, fields(product_id = %id))]
pub async fn adjust(
    catalog: &Catalog<'_>,
    actor: Actor,
    id: Uuid,
    input: AdjustmentInput,
) -> AppResult<StockMovement> {
    let mut errors = FieldErrors::new();
    let delta = match input.delta.map(|d| d.0) {
        None => {
            errors.insert("delta".into(), vec!["is required".into()]);
            None
        }
        Some(0) => {
            errors.insert("delta".into(), vec!["must not be 0".into()]);
            None
        }
        Some(d) if (-MAX_STOCK..=MAX_STOCK).contains(&d) => Some(d as i32),
        Some(_) => {
            errors.insert(
                "delta".into(),
                vec![format!("must be from -{MAX_STOCK} to {MAX_STOCK}")],
            );
            None
        }
    };
    let reason = match input.reason.as_deref() {
        None => {
            errors.insert("reason".into(), vec!["is required".into()]);
            None
        }
        Some(raw) => {
            let parsed = status::parse::<MovementReason>(raw)
                .filter(|r| MovementReason::ADJUSTMENTS.contains(r));
            if parsed.is_none() {
                errors.insert(
                    "reason".into(),
                    vec!["must be one of: restock, correction, damage, return, other".into()],
                );
            }
            parsed
        }
    };
    if let Some(reference) = &input.reference {
        if let Err(msg) = check_text(reference, false) {
            errors.insert("reference".into(), vec![msg]);
        } else if reference.chars().count() > MAX_REFERENCE_CHARS {
            errors.insert(
                "reference".into(),
                vec![format!("must be at most {MAX_REFERENCE_CHARS} characters")],
            );
        }
    }
    let (Some(delta), Some(reason)) = (delta, reason) else {
        return Err(AppError::validation(errors));
    };
    if !errors.is_empty() {
        return Err(AppError::validation(errors));
    }
    let reference = input
        .reference
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    let now = clock::now();
    let txn = db::begin_write(catalog.db).await?;
    let cause = Cause::manual(reason, actor, reference);
    let movement = match inventory::adjust(&txn, id, delta, cause, now).await? {
        Ok(moved) => moved,
        Err(refused) => {
            txn.rollback().await?;
            return Err(match refused {
                Refused::Missing => AppError::not_found("product"),
                Refused::BelowZero { stock } => AppError::conflict(
                    "insufficient_stock",
                    format!("Only {stock} in stock; taking off {} would go below zero. Nothing was changed.", -i64::from(delta)),
                )
                .with_errors(FieldErrors::from([(
                    id.to_string(),
                    vec![format!("requested {}, available {stock}", -i64::from(delta))],
                )])),
                Refused::AboveMax => AppError::invalid_field(
                    "delta",
                    format!("would take the stock above {MAX_STOCK}"),
                ),
            });
        }
    };
    let (product, movement) = movement;
    let response = super::service::respond(&txn, product, catalog.currency).await?;
    let event = NewEvent::product("updated", &response, actor);
    events::record(&txn, vec![event], now).await?;
    txn.commit().await?;
    catalog.changed().await;
    tracing::info!(delta, reason = ?reason, stock_after = movement.stock_after, "stock adjusted");
    crate::metrics::stock_adjusted(reason);
    movement.try_into()
}

/// A product's movements, newest first, by cursor (deleted products included).
pub async fn movements(
    db: &DatabaseConnection,
    id: Uuid,
    query: NewestFirstQuery,
) -> AppResult<MovementPage> {
    let mut errors = FieldErrors::new();
    let after = optional_uuid(
        query.after.as_deref(),
        "after",
        "must be a movement id",
        &mut errors,
    );
    let limit = cursor_limit(query.limit.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(AppError::validation(errors));
    }
    if product::Entity::find_by_id(id).count(db).await? == 0 {
        return Err(AppError::not_found("product"));
    }
    let mut select =
        stock_movement::Entity::find().filter(stock_movement::Column::ProductId.eq(id));
    if let Some(after) = after {
        select = select.filter(stock_movement::Column::Id.lt(after));
    }
    let rows = select
        .order_by_desc(stock_movement::Column::Id)
        .limit(limit + 1)
        .all(db)
        .await?;
    let page = cursor_rows(rows, limit, query.after, StockMovement::try_from, |m| {
        m.id.to_string()
    })?;
    Ok(MovementPage {
        items: page.items,
        has_more: page.has_more,
        next_cursor: page.next_cursor,
    })
}

/// Compares every product's stock with the sum of its movements, in one snapshot: one
/// pass over the ledger's index (product, id, delta), whatever the number of products.
pub async fn audit(db: &DatabaseConnection) -> AppResult<StockAudit> {
    #[derive(FromQueryResult)]
    struct Totals {
        products: i64,
        movements: i64,
    }
    const DRIFT: &str = "SELECT p.id AS product_id, CAST(p.stock AS BIGINT) AS stock, \
        CAST(COALESCE(m.ledger, 0) AS BIGINT) AS ledger, \
        CAST(p.stock - COALESCE(m.ledger, 0) AS BIGINT) AS difference \
        FROM products p LEFT JOIN (SELECT product_id, SUM(delta) AS ledger \
        FROM stock_movements GROUP BY product_id) m ON m.product_id = p.id \
        WHERE p.stock <> COALESCE(m.ledger, 0) ORDER BY p.id LIMIT 1000";
    const TOTALS: &str = "SELECT (SELECT COUNT(*) FROM products) AS products, \
        (SELECT COUNT(*) FROM stock_movements) AS movements";
    let snapshot = db::begin_read(db).await?;
    let backend = snapshot.get_database_backend();
    let drift = Drift::find_by_statement(Statement::from_string(backend, DRIFT))
        .all(&snapshot)
        .await?;
    let totals = Totals::find_by_statement(Statement::from_string(backend, TOTALS))
        .one(&snapshot)
        .await?
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("the audit's totals are missing")))?;
    snapshot.commit().await?;
    if !drift.is_empty() {
        tracing::error!(
            products = drift.len(),
            "stock drift: stock differs from the sum of its movements"
        );
    }
    Ok(StockAudit {
        checked_at: clock::now(),
        products: totals.products.max(0) as u64,
        movements: totals.movements.max(0) as u64,
        drift,
    })
}
