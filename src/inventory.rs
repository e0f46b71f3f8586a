//! Stock: the only code that moves a product's `stock`, and the ledger that records every
//! move. Each change is a conditional update of the product (which also bumps its
//! `version`, the `ETag`) and one `stock_movements` row, in the caller's transaction, so the
//! sum of a product's movements is its stock whatever commits or rolls back.
//!
//! A reservation is one conditional decrement per line (`… WHERE stock >= q`), lines sorted
//! by product id: stock never goes below zero whatever runs concurrently, and two orders
//! touching the same products lock them in the same order, so they never deadlock.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::{MovementReason, order_item, product, stock_movement};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use crate::{
    error::{AppError, AppResult, FieldErrors},
    events::Actor,
};

/// The most units a product may hold.
pub const MAX_STOCK: i64 = 1_000_000_000;

/// A line to reserve: `quantity` units of `product_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    pub product_id: Uuid,
    pub quantity: i32,
}

/// Why stock moves and who moved it: what each movement of one change records.
#[derive(Clone, Copy, Debug)]
pub struct Cause<'a> {
    pub reason: MovementReason,
    pub order_id: Option<Uuid>,
    pub actor: Actor,
    pub reference: Option<&'a str>,
}

impl<'a> Cause<'a> {
    /// Stock moved for an order (reserved, put back or restocked by a refund).
    pub fn order(reason: MovementReason, order_id: Uuid, actor: Actor) -> Self {
        Self {
            reason,
            order_id: Some(order_id),
            actor,
            reference: None,
        }
    }

    /// Stock moved by an admin (or the system), with an optional reference.
    pub fn manual(reason: MovementReason, actor: Actor, reference: Option<&'a str>) -> Self {
        Self {
            reason,
            order_id: None,
            actor,
            reference,
        }
    }
}

/// Adds `delta` to a product's stock when `guard` still holds, bumping its version;
/// the product as it is after, or `None` when nothing matched.
async fn shift<C: ConnectionTrait>(
    txn: &C,
    product_id: Uuid,
    delta: i32,
    guard: Condition,
    now: DateTime<Utc>,
) -> AppResult<Option<product::Model>> {
    let rows = product::Entity::update_many()
        .col_expr(
            product::Column::Stock,
            Expr::col(product::Column::Stock).add(delta),
        )
        .col_expr(
            product::Column::Version,
            Expr::col(product::Column::Version).add(1),
        )
        .col_expr(product::Column::UpdatedAt, Expr::value(now))
        .filter(product::Column::Id.eq(product_id))
        .filter(guard)
        .exec_with_returning(txn)
        .await?;
    Ok(rows.into_iter().next())
}

/// The movement of `delta` units of `product` (as the change left it).
fn movement(
    product: &product::Model,
    delta: i32,
    cause: &Cause<'_>,
    now: DateTime<Utc>,
) -> stock_movement::Model {
    stock_movement::Model {
        id: Uuid::now_v7(),
        product_id: product.id,
        delta,
        reason: cause.reason,
        reference: cause.reference.map(str::to_owned),
        order_id: cause.order_id,
        actor_kind: cause.actor.kind.as_str().to_owned(),
        actor_id: cause.actor.id,
        stock_after: product.stock,
        created_at: now,
    }
}

/// Writes movements to the ledger, in one statement.
async fn record<C: ConnectionTrait>(txn: &C, rows: &[stock_movement::Model]) -> AppResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    stock_movement::Entity::insert_many(
        rows.iter().cloned().map(stock_movement::ActiveModel::from),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// Takes every line's quantity off its product's stock, or nothing: `Ok(Err(problem))`
/// names each short (409) or unknown (422) product, and the caller must roll back.
/// On success, the products as they are after the reservation, in line order (by id).
pub async fn reserve<C: ConnectionTrait>(
    txn: &C,
    lines: &[Line],
    cause: Cause<'_>,
    now: DateTime<Utc>,
) -> AppResult<Result<Vec<(Line, product::Model)>, AppError>> {
    let mut lines = lines.to_vec();
    lines.sort_by_key(|l| l.product_id);
    let mut reserved = Vec::with_capacity(lines.len());
    let mut short = Vec::new();
    for line in lines {
        // Matches only while enough stock is left.
        let guard = Condition::all()
            .add(product::Column::DeletedAt.is_null())
            .add(product::Column::Stock.gte(line.quantity));
        match shift(txn, line.product_id, -line.quantity, guard, now).await? {
            Some(product) => reserved.push((line, product)),
            None => short.push(line),
        }
    }
    if !short.is_empty() {
        return Ok(Err(explain_shortage(txn, &short).await?));
    }
    let movements: Vec<_> = reserved
        .iter()
        .map(|(line, product)| movement(product, -line.quantity, &cause, now))
        .collect();
    record(txn, &movements).await?;
    Ok(Ok(reserved))
}

/// Puts an order's reserved units back on the shelf (deleted products included, so the
/// books balance). Called once, by the transition that ends the order.
pub async fn restore<C: ConnectionTrait>(
    txn: &C,
    cause: Cause<'_>,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let Some(order_id) = cause.order_id else {
        return Err(AppError::Internal(anyhow::anyhow!(
            "stock restored without its order"
        )));
    };
    let lines = lines_of(txn, order_id).await?;
    put_back(txn, &lines, cause, now).await
}

/// The lines of order `order_id`, as reserved.
pub async fn lines_of<C: ConnectionTrait>(txn: &C, order_id: Uuid) -> AppResult<Vec<Line>> {
    Ok(order_item::Entity::find()
        .filter(order_item::Column::OrderId.eq(order_id))
        .all(txn)
        .await?
        .into_iter()
        .map(|item| Line {
            product_id: item.product_id,
            quantity: item.quantity,
        })
        .collect())
}

/// Puts `lines` back on the shelf (deleted products included), one movement each.
pub async fn put_back<C: ConnectionTrait>(
    txn: &C,
    lines: &[Line],
    cause: Cause<'_>,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let mut lines = lines.to_vec();
    lines.sort_by_key(|l| l.product_id);
    let mut movements = Vec::with_capacity(lines.len());
    for line in lines.iter().filter(|l| l.quantity != 0) {
        let product = shift(txn, line.product_id, line.quantity, Condition::all(), now)
            .await?
            .ok_or_else(|| {
                AppError::Internal(anyhow::anyhow!(
                    "product {} of an order line is missing",
                    line.product_id
                ))
            })?;
        movements.push(movement(&product, line.quantity, &cause, now));
    }
    record(txn, &movements).await
}

/// Why an adjustment did not apply.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// No such product, or it is deleted.
    Missing,
    /// It would take the stock below zero; what there is now.
    BelowZero { stock: i32 },
    /// It would take the stock above [`MAX_STOCK`].
    AboveMax,
}

/// Adds `delta` (≠ 0) to a live product's stock, never below zero (taking off) nor above
/// [`MAX_STOCK`] (adding), whatever runs concurrently: one conditional update.
pub async fn adjust<C: ConnectionTrait>(
    txn: &C,
    product_id: Uuid,
    delta: i32,
    cause: Cause<'_>,
    now: DateTime<Utc>,
) -> AppResult<Result<(product::Model, stock_movement::Model), Refused>> {
    // Taking off is bounded below only, adding above only: a product that is above the
    // most (restocked by returns) can still be written down.
    let after = Expr::col(product::Column::Stock).add(delta);
    let bound = if delta < 0 {
        after.gte(0)
    } else {
        after.lte(MAX_STOCK)
    };
    let guard = Condition::all()
        .add(product::Column::DeletedAt.is_null())
        .add(bound);
    let Some(product) = shift(txn, product_id, delta, guard, now).await? else {
        let current = product::Entity::find_by_id(product_id).one(txn).await?;
        return Ok(Err(match current {
            Some(p) if p.deleted_at.is_none() && delta < 0 => Refused::BelowZero { stock: p.stock },
            Some(p) if p.deleted_at.is_none() => Refused::AboveMax,
            _ => Refused::Missing,
        }));
    };
    let row = movement(&product, delta, &cause, now);
    record(txn, std::slice::from_ref(&row)).await?;
    Ok(Ok((product, row)))
}

/// Sets the stock of `product` (a row the caller's transaction has just written, so it is
/// locked and current) to `stock`, recording the difference; the product as it is after.
pub async fn set<C: ConnectionTrait>(
    txn: &C,
    product: product::Model,
    stock: i32,
    cause: Cause<'_>,
    now: DateTime<Utc>,
) -> AppResult<product::Model> {
    let delta = stock - product.stock;
    if delta == 0 {
        return Ok(product);
    }
    let product = shift(txn, product.id, delta, Condition::all(), now)
        .await?
        .ok_or_else(|| AppError::not_found("product"))?;
    record(txn, &[movement(&product, delta, &cause, now)]).await?;
    Ok(product)
}

/// Records the stock new products start with (nothing for those that start empty).
pub async fn opening<C: ConnectionTrait>(
    txn: &C,
    products: &[product::Model],
    cause: Cause<'_>,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let movements: Vec<_> = products
        .iter()
        .filter(|p| p.stock != 0)
        .map(|p| movement(p, p.stock, &cause, now))
        .collect();
    for chunk in movements.chunks(500) {
        record(txn, chunk).await?;
    }
    Ok(())
}

/// Tells missing or deleted products (422) from short stock (409), naming each product.
async fn explain_shortage<C: ConnectionTrait>(txn: &C, short: &[Line]) -> AppResult<AppError> {
    let ids: Vec<Uuid> = short.iter().map(|l| l.product_id).collect();
    let found: HashMap<Uuid, product::Model> = product::Entity::find()
        .filter(product::Column::Id.is_in(ids))
        .all(txn)
        .await?
        .into_iter()
        .map(|p| (p.id, p))
        .collect();
    let mut unknown = FieldErrors::new();
    let mut insufficient = FieldErrors::new();
    for line in short {
        let key = line.product_id.to_string();
        match found.get(&line.product_id) {
            Some(p) if p.deleted_at.is_none() => {
                let message = format!("requested {}, available {}", line.quantity, p.stock);
                insufficient.insert(key, vec![message]);
            }
            Some(_) => {
                unknown.insert(key, vec!["product was deleted".into()]);
            }
            None => {
                unknown.insert(key, vec!["no such product".into()]);
            }
        }
    }
    Ok(if unknown.is_empty() {
        AppError::conflict(
            "insufficient_stock",
            "Not enough stock for some products; nothing was reserved.",
        )
        .with_errors(insufficient)
    } else {
        AppError::unprocessable(
            "unknown_products",
            "Some products do not exist or were deleted; nothing was reserved.",
        )
        .with_errors(unknown)
    })
}
