//! The order and payment state machine: every transition of an order or its payment is
//! one function here, and no other code writes either status column.
//!
//! Each transition is a conditional update that names the states it may leave (and, for
//! an attempt's outcome, the attempt it belongs to), so a job delivered twice, a worker
//! whose lease expired, or a cancel racing an attempt finds nothing to change: it answers
//! `None` and moves nothing. A transition that ends an order unpaid puts its stock back in
//! the same transaction, so stock comes back exactly once. Callers own the transaction
//! and say what happened after it commits.
//!
//! | transition | payment from → to | order to | stock |
//! |---|---|---|---|
//! | [`place`] | → `PENDING` | `PENDING` | reserved |
//! | [`start_attempts`] | `PENDING`/`RETRYING` due, or abandoned `PROCESSING` → `PROCESSING` | `PROCESSING` | |
//! | [`succeed`] | `PROCESSING` (untouched since the start) → `SUCCEEDED` | `COMPLETED` | |
//! | [`schedule_retry`] | `PROCESSING` (this attempt) → `RETRYING` | | |
//! | [`require_action`] | `PROCESSING` (this attempt) → `REQUIRES_ACTION` | | |
//! | [`confirm_action`] | `REQUIRES_ACTION`, not expired → `PENDING` | | |
//! | [`give_up`] | `PROCESSING` (this attempt) → `FAILED` | `FAILED` | restored |
//! | [`expire_action`] | `REQUIRES_ACTION`, expired → `FAILED` | `FAILED` | restored |
//! | [`cancel`] | `PENDING`/`RETRYING`/`REQUIRES_ACTION` → `CANCELLED` | `CANCELLED` | restored |
//! | [`revive`] | `FAILED` → `PENDING` | `PENDING` | reserved again |
//!
//! Refunds of a paid order (the refund rows themselves move in `refunds`):
//!
//! | transition | order | stock |
//! |---|---|---|
//! | [`claim_refund`], [`claim_restock`] | claims money (never above the total) and units (never above a line's quantity) for a new refund | |
//! | [`release_refund`] | gives a failed refund's claims back | |
//! | [`settle_refund`] | `refunded` grows; `COMPLETED`/`PARTIALLY_REFUNDED` → `PARTIALLY_REFUNDED` or `REFUNDED` | the refund's restock lines put back |

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::{
    MovementReason, OrderStatus, PaymentMethod, PaymentStatus, order, order_item, payment,
};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, SqlErr,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use crate::{
    domain::Money,
    error::{AppError, AppResult},
    events::Actor,
    inventory::{self, Cause, Line},
    orders::view::OrderView,
};

/// An order and its payment as a transition left them.
#[derive(Clone, Debug)]
pub struct Moved {
    pub order: order::Model,
    pub payment: payment::Model,
}

/// What placing an order needs.
pub struct NewOrder<'a> {
    pub user_id: Uuid,
    pub lines: &'a [Line],
    pub method: PaymentMethod,
    pub currency: &'a str,
    pub max_attempts: i32,
    /// Who places it (the ledger records them).
    pub actor: Actor,
}

/// The order statuses in which its payment is still under way.
const OPEN: [OrderStatus; 2] = [OrderStatus::Pending, OrderStatus::Processing];

/// Places an order: reserves every line (or nothing: `Ok(Err(problem))`, roll back) and
/// records the order, its lines at today's prices and its `PENDING` payment, due now.
#[tracing::instrument(skip_all, fields(user_id = %new.user_id))]
pub async fn place<C: ConnectionTrait>(
    txn: &C,
    new: NewOrder<'_>,
    now: DateTime<Utc>,
) -> AppResult<Result<OrderView, AppError>> {
    let order_id = Uuid::now_v7();
    let cause = Cause::order(MovementReason::Order, order_id, new.actor);
    let reserved = match inventory::reserve(txn, new.lines, cause, now).await? {
        Ok(reserved) => reserved,
        Err(problem) => return Ok(Err(problem)),
    };
    let mut total = Money::default();
    for (line, product) in &reserved {
        total = Money::from_cents(product.price_cents)
            .times(i64::from(line.quantity))
            .and_then(|subtotal| total.checked_add(subtotal))
            .ok_or_else(|| AppError::invalid_field("items", "the order total is too large"))?;
    }
    let order = order::Model {
        id: order_id,
        user_id: new.user_id,
        status: OrderStatus::Pending,
        total_cents: total.cents(),
        refunded_cents: 0,
        refund_claimed_cents: 0,
        currency: new.currency.to_owned(),
        payment_method: new.method,
        created_at: now,
        updated_at: now,
    };
    order::Entity::insert(order::ActiveModel::from(order.clone()))
        .exec_without_returning(txn)
        .await
        .map_err(|err| match err.sql_err() {
            // The token outlived its account.
            Some(SqlErr::ForeignKeyConstraintViolation(_)) => {
                AppError::unauthorized("The account of this token no longer exists.")
            }
            _ => err.into(),
        })?;
    let mut names = HashMap::new();
    let items: Vec<order_item::Model> = reserved
        .into_iter()
        .map(|(line, product)| {
            names.insert(product.id, product.name);
            order_item::Model {
                id: Uuid::now_v7(),
                order_id: order.id,
                product_id: line.product_id,
                quantity: line.quantity,
                unit_price_cents: product.price_cents,
                restock_claimed: 0,
            }
        })
        .collect();
    order_item::Entity::insert_many(items.iter().cloned().map(order_item::ActiveModel::from))
        .exec_without_returning(txn)
        .await?;
    let payment = payment::Model {
        id: Uuid::now_v7(),
        order_id: order.id,
        status: PaymentStatus::Pending,
        attempts: 0,
        max_attempts: new.max_attempts,
        last_error: None,
        next_attempt_at: Some(now),
        action_expires_at: None,
        created_at: now,
        updated_at: now,
    };
    payment::Entity::insert(payment::ActiveModel::from(payment.clone()))
        .exec_without_returning(txn)
        .await?;
    Ok(Ok(OrderView::new(order, items, payment, &names)))
}

/// Starts one attempt of each payment in `ids` that is due (`PENDING` or `RETRYING`, its
/// time come) or whose worker died (`PROCESSING`, untouched for longer than `lease`):
/// payments `PROCESSING` with one more attempt counted, orders `PROCESSING`.
#[tracing::instrument(skip_all, fields(payments = ids.len()))]
pub async fn start_attempts<C: ConnectionTrait>(
    txn: &C,
    ids: &[Uuid],
    lease: chrono::Duration,
    now: DateTime<Utc>,
) -> AppResult<Vec<Moved>> {
    let due = Condition::all()
        .add(payment::Column::Status.is_in([PaymentStatus::Pending, PaymentStatus::Retrying]))
        .add(
            Condition::any()
                .add(payment::Column::NextAttemptAt.is_null())
                .add(payment::Column::NextAttemptAt.lte(now)),
        );
    let abandoned = Condition::all()
        .add(payment::Column::Status.eq(PaymentStatus::Processing))
        .add(payment::Column::UpdatedAt.lt(now - lease));
    let payments = payment::Entity::update_many()
        .col_expr(
            payment::Column::Status,
            Expr::value(PaymentStatus::Processing),
        )
        .col_expr(
            payment::Column::Attempts,
            Expr::col(payment::Column::Attempts).add(1),
        )
        .col_expr(
            payment::Column::NextAttemptAt,
            Expr::value(None::<DateTime<Utc>>),
        )
        .col_expr(payment::Column::UpdatedAt, Expr::value(now))
        .filter(payment::Column::Id.is_in(ids.iter().copied()))
        .filter(Condition::any().add(due).add(abandoned))
        .exec_with_returning(txn)
        .await?;
    // A payment ends in the same transaction as its order, so every started payment's
    // order is still open.
    let orders = move_orders(
        txn,
        payments.iter().map(|p| p.order_id),
        &OPEN,
        OrderStatus::Processing,
        now,
    )
    .await?;
    Ok(pair(orders, payments))
}

/// Ends the successful attempts of `ids` that started together at `started_at`: payments
/// `SUCCEEDED`, orders `COMPLETED`. A payment taken over meanwhile (its `updated_at` moved
/// on) is left to its new worker.
#[tracing::instrument(skip_all, fields(payments = ids.len()))]
pub async fn succeed<C: ConnectionTrait>(
    txn: &C,
    ids: &[Uuid],
    started_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> AppResult<Vec<Moved>> {
    let payments = payment::Entity::update_many()
        .col_expr(
            payment::Column::Status,
            Expr::value(PaymentStatus::Succeeded),
        )
        .col_expr(payment::Column::LastError, Expr::value(None::<String>))
        .col_expr(payment::Column::UpdatedAt, Expr::value(now))
        .filter(payment::Column::Id.is_in(ids.iter().copied()))
        .filter(payment::Column::Status.eq(PaymentStatus::Processing))
        .filter(payment::Column::UpdatedAt.eq(started_at))
        .exec_with_returning(txn)
        .await?;
    let orders = move_orders(
        txn,
        payments.iter().map(|p| p.order_id),
        &OPEN,
        OrderStatus::Completed,
        now,
    )
    .await?;
    Ok(pair(orders, payments))
}

/// After a transient failure of `attempt`: the payment waits in `RETRYING` until `due`.
#[tracing::instrument(skip_all, fields(payment_id = %attempt.id))]
pub async fn schedule_retry<C: ConnectionTrait>(
    db: &C,
    attempt: &payment::Model,
    due: DateTime<Utc>,
    error: &str,
    now: DateTime<Utc>,
) -> AppResult<Option<payment::Model>> {
    let rows = payment::Entity::update_many()
        .col_expr(
            payment::Column::Status,
            Expr::value(PaymentStatus::Retrying),
        )
        .col_expr(payment::Column::NextAttemptAt, Expr::value(Some(due)))
        .col_expr(
            payment::Column::LastError,
            Expr::value(Some(error.to_owned())),
        )
        .col_expr(payment::Column::UpdatedAt, Expr::value(now))
        .filter(owns_attempt(attempt))
        .exec_with_returning(db)
        .await?;
    Ok(rows.into_iter().next())
}

/// The attempt asked for the customer's action (3-D Secure and the like): the payment
/// waits in `REQUIRES_ACTION` until `expires_at`.
#[tracing::instrument(skip_all, fields(payment_id = %attempt.id))]
pub async fn require_action<C: ConnectionTrait>(
    db: &C,
    attempt: &payment::Model,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> AppResult<Option<payment::Model>> {
    let rows = payment::Entity::update_many()
        .col_expr(
            payment::Column::Status,
            Expr::value(PaymentStatus::RequiresAction),
        )
        .col_expr(
            payment::Column::ActionExpiresAt,
            Expr::value(Some(expires_at)),
        )
        .col_expr(payment::Column::LastError, Expr::value(None::<String>))
        .col_expr(payment::Column::UpdatedAt, Expr::value(now))
        .filter(owns_attempt(attempt))
        .exec_with_returning(db)
        .await?;
    Ok(rows.into_iter().next())
}

/// The customer confirmed in time: the payment is due again at once (`PENDING`).
#[tracing::instrument(skip_all, fields(order_id = %order_id))]
pub async fn confirm_action<C: ConnectionTrait>(
    txn: &C,
    order_id: Uuid,
    now: DateTime<Utc>,
) -> AppResult<Option<Moved>> {
    let rows = payment::Entity::update_many()
        .col_expr(payment::Column::Status, Expr::value(PaymentStatus::Pending))
        .col_expr(payment::Column::NextAttemptAt, Expr::value(Some(now)))
        .col_expr(
            payment::Column::ActionExpiresAt,
            Expr::value(None::<DateTime<Utc>>),
        )
        .col_expr(payment::Column::UpdatedAt, Expr::value(now))
        .filter(payment::Column::OrderId.eq(order_id))
        .filter(payment::Column::Status.eq(PaymentStatus::RequiresAction))
        .filter(payment::Column::ActionExpiresAt.gt(now))
        .exec_with_returning(txn)
        .await?;
    let Some(payment) = rows.into_iter().next() else {
        return Ok(None);
    };
    let orders = move_orders(txn, [order_id], &OPEN, OrderStatus::Processing, now).await?;
    Ok(pair(orders, vec![payment]).pop())
}

/// The attempt failed for good (declined, or out of attempts): payment `FAILED`, order
/// `FAILED`, stock back on the shelf.
#[tracing::instrument(skip_all, fields(payment_id = %attempt.id))]
pub async fn give_up<C: ConnectionTrait>(
    txn: &C,
    attempt: &payment::Model,
    error: &str,
    now: DateTime<Utc>,
) -> AppResult<Option<Moved>> {
    let cause = Cause::order(
        MovementReason::PaymentFailed,
        attempt.order_id,
        Actor::WORKER,
    );
    fail(txn, owns_attempt(attempt), error, cause, now).await
}

/// Nobody confirmed in time: a `REQUIRES_ACTION` payment past `actionExpiresAt` fails, its
/// order fails and its stock comes back.
#[tracing::instrument(skip_all, fields(payment_id = %payment_id))]
pub async fn expire_action<C: ConnectionTrait>(
    txn: &C,
    payment_id: Uuid,
    now: DateTime<Utc>,
) -> AppResult<Option<Moved>> {
    let expired = Condition::all()
        .add(payment::Column::Id.eq(payment_id))
        .add(payment::Column::Status.eq(PaymentStatus::RequiresAction))
        .add(payment::Column::ActionExpiresAt.lte(now));
    let error = "the customer's action was not confirmed in time";
    // `end_unpaid` names the order.
    let cause = Cause::manual(MovementReason::Expired, Actor::WORKER, None);
    fail(txn, expired, error, cause, now).await
}

/// Cancels an order whose payment is not in an attempt (`PENDING`, `RETRYING` or
/// `REQUIRES_ACTION`): payment and order `CANCELLED`, stock back. The payment row is the
/// gate: only one of a cancel and an attempt can move it.
#[tracing::instrument(skip_all, fields(order_id = %order_id))]
pub async fn cancel<C: ConnectionTrait>(
    txn: &C,
    order_id: Uuid,
    actor: Actor,
    now: DateTime<Utc>,
) -> AppResult<Option<Moved>> {
    let rows = payment::Entity::update_many()
        .col_expr(
            payment::Column::Status,
            Expr::value(PaymentStatus::Cancelled),
        )
        .col_expr(
            payment::Column::NextAttemptAt,
            Expr::value(None::<DateTime<Utc>>),
        )
        .col_expr(
            payment::Column::ActionExpiresAt,
            Expr::value(None::<DateTime<Utc>>),
        )
        .col_expr(payment::Column::UpdatedAt, Expr::value(now))
        .filter(payment::Column::OrderId.eq(order_id))
        .filter(payment::Column::Status.is_in([
            PaymentStatus::Pending,
            PaymentStatus::Retrying,
            PaymentStatus::RequiresAction,
        ]))
        .exec_with_returning(txn)
        .await?;
    let cause = Cause::order(MovementReason::Cancel, order_id, actor);
    end_unpaid(txn, rows, OrderStatus::Cancelled, cause, now).await
}

/// Gives a payment that gave up a fresh set of attempts: its order's stock is reserved
/// again (all lines or none: `Ok(Err(problem))`, roll back), the payment and the order go
/// back to `PENDING`, due now.
#[tracing::instrument(skip_all, fields(payment_id = %payment_id))]
pub async fn revive<C: ConnectionTrait>(
    txn: &C,
    payment_id: Uuid,
    actor: Actor,
    now: DateTime<Utc>,
) -> AppResult<Result<Moved, AppError>> {
    let rows = payment::Entity::update_many()
        .col_expr(payment::Column::Status, Expr::value(PaymentStatus::Pending))
        .col_expr(payment::Column::Attempts, Expr::value(0))
        .col_expr(payment::Column::NextAttemptAt, Expr::value(Some(now)))
        .col_expr(payment::Column::UpdatedAt, Expr::value(now))
        .filter(payment::Column::Id.eq(payment_id))
        .filter(payment::Column::Status.eq(PaymentStatus::Failed))
        .exec_with_returning(txn)
        .await?;
    let Some(payment) = rows.into_iter().next() else {
        return Ok(Err(AppError::conflict(
            "payment_not_failed",
            "This payment is no longer FAILED; nothing to retry.",
        )));
    };
    let lines = inventory::lines_of(txn, payment.order_id).await?;
    let cause = Cause::order(MovementReason::Order, payment.order_id, actor);
    if let Err(problem) = inventory::reserve(txn, &lines, cause, now).await? {
        return Ok(Err(problem));
    }
    let orders = move_orders(
        txn,
        [payment.order_id],
        &[OrderStatus::Failed],
        OrderStatus::Pending,
        now,
    )
    .await?;
    pair(orders, vec![payment])
        .pop()
        .map(Ok)
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("revived payment without its order")))
}

/// The statuses of a paid order that may be refunded.
pub const REFUNDABLE: [OrderStatus; 2] = [OrderStatus::Completed, OrderStatus::PartiallyRefunded];

/// Claims `amount_cents` of a paid order's money for a new refund, if the order is
/// refundable and its claims stay within its total: one conditional update, so concurrent
/// refunds can never promise more than was paid. `None`: nothing claimed.
pub async fn claim_refund<C: ConnectionTrait>(
    txn: &C,
    order_id: Uuid,
    amount_cents: i64,
) -> AppResult<Option<order::Model>> {
    let rows = order::Entity::update_many()
        .col_expr(
            order::Column::RefundClaimedCents,
            Expr::col(order::Column::RefundClaimedCents).add(amount_cents),
        )
        .filter(order::Column::Id.eq(order_id))
        .filter(order::Column::Status.is_in(REFUNDABLE))
        .filter(
            Expr::col(order::Column::RefundClaimedCents)
                .add(amount_cents)
                .lte(Expr::col(order::Column::TotalCents)),
        )
        .exec_with_returning(txn)
        .await?;
    Ok(rows.into_iter().next())
}

/// Claims `line.quantity` units of the order's line of `line.product_id` for a refund's
/// restock, if no more than the line's quantity is then claimed. `false`: nothing claimed
/// (no such line, or not that many left).
pub async fn claim_restock<C: ConnectionTrait>(
    txn: &C,
    order_id: Uuid,
    line: &Line,
) -> AppResult<bool> {
    let claimed = order_item::Entity::update_many()
        .col_expr(
            order_item::Column::RestockClaimed,
            Expr::col(order_item::Column::RestockClaimed).add(line.quantity),
        )
        .filter(order_item::Column::OrderId.eq(order_id))
        .filter(order_item::Column::ProductId.eq(line.product_id))
        .filter(
            Expr::col(order_item::Column::RestockClaimed)
                .add(line.quantity)
                .lte(Expr::col(order_item::Column::Quantity)),
        )
        .exec(txn)
        .await?;
    Ok(claimed.rows_affected == 1)
}

/// Gives a failed refund's claims back: its money and its restock units.
pub async fn release_refund<C: ConnectionTrait>(
    txn: &C,
    order_id: Uuid,
    amount_cents: i64,
    restock: &[Line],
) -> AppResult<()> {
    let released = order::Entity::update_many()
        .col_expr(
            order::Column::RefundClaimedCents,
            Expr::col(order::Column::RefundClaimedCents).sub(amount_cents),
        )
        .filter(order::Column::Id.eq(order_id))
        .filter(order::Column::RefundClaimedCents.gte(amount_cents))
        .exec(txn)
        .await?;
    let mut released = released.rows_affected == 1;
    for line in restock {
        let given_back = order_item::Entity::update_many()
            .col_expr(
                order_item::Column::RestockClaimed,
                Expr::col(order_item::Column::RestockClaimed).sub(line.quantity),
            )
            .filter(order_item::Column::OrderId.eq(order_id))
            .filter(order_item::Column::ProductId.eq(line.product_id))
            .filter(order_item::Column::RestockClaimed.gte(line.quantity))
            .exec(txn)
            .await?;
        released &= given_back.rows_affected == 1;
    }
    if !released {
        // The caller rolls back: a claim is never given back twice.
        return Err(AppError::Internal(anyhow::anyhow!(
            "order {order_id} holds less than the refund claimed"
        )));
    }
    Ok(())
}

/// A refund succeeded: the order's `refunded` grows by its amount, the order becomes
/// `REFUNDED` (all of it refunded) or `PARTIALLY_REFUNDED`, and the refund's restock lines
/// go back on the shelf. Called once per refund, by the transition that ends it.
pub async fn settle_refund<C: ConnectionTrait>(
    txn: &C,
    order_id: Uuid,
    amount_cents: i64,
    restock: &[Line],
    now: DateTime<Utc>,
) -> AppResult<order::Model> {
    let refunded = order::Entity::update_many()
        .col_expr(
            order::Column::RefundedCents,
            Expr::col(order::Column::RefundedCents).add(amount_cents),
        )
        .filter(order::Column::Id.eq(order_id))
        .filter(order::Column::Status.is_in(REFUNDABLE))
        .exec_with_returning(txn)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!(
                "refunded order {order_id} is not refundable"
            ))
        })?;
    let status = if refunded.refunded_cents >= refunded.total_cents {
        OrderStatus::Refunded
    } else {
        OrderStatus::PartiallyRefunded
    };
    let order = move_orders(txn, [order_id], &REFUNDABLE, status, now)
        .await?
        .pop()
        .ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!("refunded order {order_id} did not move"))
        })?;
    let cause = Cause::order(MovementReason::Refund, order_id, Actor::WORKER);
    inventory::put_back(txn, restock, cause, now).await?;
    Ok(order)
}

/// Fails the payment that `guard` matches (if one does) with `error`; its order fails and
/// its stock comes back, for `cause`.
async fn fail<C: ConnectionTrait>(
    txn: &C,
    guard: Condition,
    error: &str,
    cause: Cause<'_>,
    now: DateTime<Utc>,
) -> AppResult<Option<Moved>> {
    let rows = payment::Entity::update_many()
        .col_expr(payment::Column::Status, Expr::value(PaymentStatus::Failed))
        .col_expr(
            payment::Column::LastError,
            Expr::value(Some(error.to_owned())),
        )
        .col_expr(payment::Column::UpdatedAt, Expr::value(now))
        .filter(guard)
        .exec_with_returning(txn)
        .await?;
    end_unpaid(txn, rows, OrderStatus::Failed, cause, now).await
}

/// The guard of an attempt's outcome: the payment is still in this very attempt.
fn owns_attempt(attempt: &payment::Model) -> Condition {
    Condition::all()
        .add(payment::Column::Id.eq(attempt.id))
        .add(payment::Column::Status.eq(PaymentStatus::Processing))
        .add(payment::Column::Attempts.eq(attempt.attempts))
}

/// Ends the order of a payment that just left for `FAILED` or `CANCELLED` (if one did),
/// putting its stock back.
async fn end_unpaid<C: ConnectionTrait>(
    txn: &C,
    payments: Vec<payment::Model>,
    status: OrderStatus,
    cause: Cause<'_>,
    now: DateTime<Utc>,
) -> AppResult<Option<Moved>> {
    let Some(payment) = payments.into_iter().next() else {
        return Ok(None);
    };
    let orders = move_orders(txn, [payment.order_id], &OPEN, status, now).await?;
    let cause = Cause {
        order_id: Some(payment.order_id),
        ..cause
    };
    inventory::restore(txn, cause, now).await?;
    Ok(pair(orders, vec![payment]).pop())
}

/// The one order-status update: moves the orders `ids` that are in one of `from` to `to`.
async fn move_orders<C: ConnectionTrait>(
    txn: &C,
    ids: impl IntoIterator<Item = Uuid>,
    from: &[OrderStatus],
    to: OrderStatus,
    now: DateTime<Utc>,
) -> AppResult<Vec<order::Model>> {
    let ids: Vec<Uuid> = ids.into_iter().collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(order::Entity::update_many()
        .col_expr(order::Column::Status, Expr::value(to))
        .col_expr(order::Column::UpdatedAt, Expr::value(now))
        .filter(order::Column::Id.is_in(ids))
        .filter(order::Column::Status.is_in(from.iter().copied()))
        .exec_with_returning(txn)
        .await?)
}

/// Pairs each payment with its order (payments whose order did not move are dropped).
fn pair(orders: Vec<order::Model>, payments: Vec<payment::Model>) -> Vec<Moved> {
    let mut orders: HashMap<Uuid, order::Model> = orders.into_iter().map(|o| (o.id, o)).collect();
    payments
        .into_iter()
        .filter_map(|payment| {
            orders
                .remove(&payment.order_id)
                .map(|order| Moved { order, payment })
        })
        .collect()
}
