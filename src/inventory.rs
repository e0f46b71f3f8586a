//! Stock: reserving an order's lines and putting them back. The only code that moves a
//! product's `stock`, apart from an admin setting it outright.
//!
//! A reservation is one conditional decrement per line (`… WHERE stock >= q`), lines sorted
//! by product id, inside the caller's transaction: stock never goes below zero whatever
//! runs concurrently, and two orders touching the same products lock them in the same
//! order, so they never deadlock.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::{order_item, product};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use crate::error::{AppError, AppResult, FieldErrors};

/// A line to reserve: `quantity` units of `product_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    pub product_id: Uuid,
    pub quantity: i32,
}

/// Takes every line's quantity off its product's stock, or nothing: `Ok(Err(problem))`
/// names each short (409) or unknown (422) product, and the caller must roll back.
/// On success, the products as they are after the reservation, in line order (by id).
pub async fn reserve<C: ConnectionTrait>(
    txn: &C,
    lines: &[Line],
    now: DateTime<Utc>,
) -> AppResult<Result<Vec<(Line, product::Model)>, AppError>> {
    let mut lines = lines.to_vec();
    lines.sort_by_key(|l| l.product_id);
    let mut reserved = Vec::with_capacity(lines.len());
    let mut short = Vec::new();
    for line in lines {
        // Matches only while enough stock is left.
        let rows = product::Entity::update_many()
            .col_expr(
                product::Column::Stock,
                Expr::col(product::Column::Stock).sub(line.quantity),
            )
            .col_expr(product::Column::UpdatedAt, Expr::value(now))
            .filter(product::Column::Id.eq(line.product_id))
            .filter(product::Column::DeletedAt.is_null())
            .filter(product::Column::Stock.gte(line.quantity))
            .exec_with_returning(txn)
            .await?;
        match rows.into_iter().next() {
            Some(product) => reserved.push((line, product)),
            None => short.push(line),
        }
    }
    if short.is_empty() {
        Ok(Ok(reserved))
    } else {
        Ok(Err(explain_shortage(txn, &short).await?))
    }
}

/// Puts an order's reserved units back on the shelf (deleted products included, so the
/// books balance). Called once, by the transition that ends the order.
pub async fn restore<C: ConnectionTrait>(
    txn: &C,
    order_id: Uuid,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let mut items = order_item::Entity::find()
        .filter(order_item::Column::OrderId.eq(order_id))
        .all(txn)
        .await?;
    items.sort_by_key(|i| i.product_id);
    for item in items {
        product::Entity::update_many()
            .col_expr(
                product::Column::Stock,
                Expr::col(product::Column::Stock).add(item.quantity),
            )
            .col_expr(product::Column::UpdatedAt, Expr::value(now))
            .filter(product::Column::Id.eq(item.product_id))
            .exec(txn)
            .await?;
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
