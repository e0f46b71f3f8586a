//! Order rules: placing, reading (owner or admin only), listing, cancelling and
//! confirming a payment's customer action. The transitions come from `lifecycle`; this
//! module validates, checks who may do what, commits, and says what happened. Knows
//! nothing about HTTP.

use std::{collections::HashSet, sync::Arc};

use entity::{PaymentStatus, order, status};
use sea_orm::{
    ActiveEnum, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::{
    OrderStatus,
    dto::{CreateOrderRequest, OrderListQuery, OrderResponse, OrderSort},
    view::OrderView,
};
use crate::{
    auth::AuthUser,
    clock,
    config::Config,
    db,
    error::{AppError, AppResult, FieldErrors},
    events::{self, Actor, NewEvent},
    idempotency::{self, Claim, IdempotencyKey},
    inventory::Line,
    lifecycle::{self, NewOrder},
    notifier::{Notifier, detached},
    pagination::{Page, PageRequest},
    payments::PaymentMethod,
    queue::JobQueue,
};

/// Most lines an order may have.
pub const MAX_LINES: usize = 100;
/// Most units of one product an order line may ask for.
pub const MAX_QUANTITY: i64 = 1000;

/// What the order rules use: the database, the queue that dispatches payments, the
/// notifier, and the settings for currency, attempts and idempotency.
#[derive(Clone)]
pub struct Orders {
    pub db: DatabaseConnection,
    pub queue: Arc<dyn JobQueue>,
    pub notifier: Notifier,
    pub config: Arc<Config>,
}

/// What placing an order answered.
#[derive(Debug)]
pub enum Placed {
    Created(OrderResponse),
    /// A repeat of an earlier request with the same `Idempotency-Key`.
    Replayed {
        status: u16,
        body: String,
    },
}

/// Places an order: reserves every line's stock in one transaction or nothing at all.
#[tracing::instrument(skip_all, fields(user_id = %user.id))]
pub async fn place(
    orders: &Orders,
    user: &AuthUser,
    request: CreateOrderRequest,
    key: Option<IdempotencyKey>,
) -> AppResult<Placed> {
    let (lines, method) = validate(request)?;
    let config = &orders.config;
    let claimed = match key {
        None => None,
        Some(key) => match idempotency::claim(&orders.db, &key, config.idempotency_ttl).await? {
            Claim::Replay { status, body } => return Ok(Placed::Replayed { status, body }),
            Claim::Acquired(ticket) => Some((key, ticket)),
        },
    };
    let new = NewOrder {
        user_id: user.id,
        lines: &lines,
        method,
        currency: &config.currency,
        max_attempts: i32::from(config.payments.max_attempts),
        actor: Actor::caller(user),
    };
    let result = async {
        let txn = db::begin_write(&orders.db).await?;
        let now = clock::now();
        let view = match lifecycle::place(&txn, new, now).await? {
            Ok(view) => view,
            Err(problem) => {
                txn.rollback().await?;
                return Err(problem);
            }
        };
        let response = view.response();
        events::record(&txn, vec![NewEvent::order(&view, Actor::caller(user))], now).await?;
        if let Some((key, ticket)) = &claimed {
            let body =
                serde_json::to_string(&response).map_err(|e| AppError::Internal(e.into()))?;
            idempotency::complete(&txn, key, *ticket, 201, &body).await?;
        }
        txn.commit().await?;
        Ok(view)
    }
    .await;
    if let (Err(err), Some((key, ticket))) = (&result, &claimed) {
        idempotency::settle_failure(&orders.db, key, *ticket, err).await;
    }
    let view = result?;
    tracing::info!(order_id = %view.order.id, "order placed");
    // The log has the order (before any attempt can write PROCESSING); hand its payment
    // to the workers. Neither step waits on Redis while it is away: the queue and the
    // cache skip it at once, and the sweeper queues the payment when Redis returns.
    let (task, payment_id) = (orders.clone(), view.payment.id);
    detached(async move {
        task.notifier.events_written();
        task.notifier.catalog_changed().await;
        if let Err(err) = task.queue.enqueue(payment_id, clock::now()).await {
            tracing::warn!(%payment_id, error = %err, "could not queue the payment; the sweeper will");
        }
    })
    .await;
    Ok(Placed::Created(view.response()))
}

fn validate(request: CreateOrderRequest) -> AppResult<(Vec<Line>, PaymentMethod)> {
    let mut errors = FieldErrors::new();
    let mut fail = |field: String, msg: String| errors.entry(field).or_default().push(msg);
    let method = match request.payment_method.as_deref() {
        None => Some(PaymentMethod::DEFAULT),
        Some(raw) => {
            let parsed = status::parse::<PaymentMethod>(raw);
            if parsed.is_none() {
                let names = status::names::<PaymentMethod>().join(", ");
                fail("paymentMethod".into(), format!("must be one of: {names}"));
            }
            parsed
        }
    };
    let items = request.items.unwrap_or_default();
    if items.is_empty() {
        fail("items".into(), "must contain at least one line".into());
    } else if items.len() > MAX_LINES {
        fail(
            "items".into(),
            format!("must contain at most {MAX_LINES} lines"),
        );
    }
    let mut lines = Vec::with_capacity(items.len());
    let mut seen = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let product_id = match item.product_id.as_deref().map(Uuid::parse_str) {
            None => {
                fail(format!("items[{i}].productId"), "is required".into());
                None
            }
            Some(Err(_)) => {
                fail(format!("items[{i}].productId"), "must be a UUID".into());
                None
            }
            Some(Ok(id)) if !seen.insert(id) => {
                fail(
                    format!("items[{i}].productId"),
                    "appears more than once; put the whole quantity on one line".into(),
                );
                None
            }
            Some(Ok(id)) => Some(id),
        };
        let quantity = match item.quantity {
            None => {
                fail(format!("items[{i}].quantity"), "is required".into());
                None
            }
            Some(q) if (1..=MAX_QUANTITY).contains(&q.0) => Some(q.0 as i32),
            Some(_) => {
                fail(
                    format!("items[{i}].quantity"),
                    format!("must be from 1 to {MAX_QUANTITY}"),
                );
                None
            }
        };
        if let (Some(product_id), Some(quantity)) = (product_id, quantity) {
            lines.push(Line {
                product_id,
                quantity,
            });
        }
    }
    match method {
        Some(method) if errors.is_empty() => Ok((lines, method)),
        _ => Err(AppError::validation(errors)),
    }
}

/// One order, for its owner or an admin; anyone else gets the same 404 as for a missing one.
pub async fn get(db: &DatabaseConnection, caller: &AuthUser, id: Uuid) -> AppResult<OrderResponse> {
    Ok(visible(db, caller, id).await?.response())
}

/// The order `id` with its lines and payment if the caller may see it; 404 otherwise.
/// Read in one snapshot, so the order and its payment never show different moments.
async fn visible(db: &DatabaseConnection, caller: &AuthUser, id: Uuid) -> AppResult<OrderView> {
    let snapshot = db::begin_read(db).await?;
    let view = OrderView::load(&snapshot, id).await?;
    snapshot.commit().await?;
    view.filter(|view| caller.is_admin() || view.order.user_id == caller.id)
        .ok_or_else(|| AppError::not_found("order"))
}

/// The order row alone, if the caller may see it (one cheap read before a transition).
async fn visible_row(
    db: &DatabaseConnection,
    caller: &AuthUser,
    id: Uuid,
) -> AppResult<order::Model> {
    order::Entity::find_by_id(id)
        .one(db)
        .await?
        .filter(|order| caller.is_admin() || order.user_id == caller.id)
        .ok_or_else(|| AppError::not_found("order"))
}

/// The view of an order a transition just moved (read in its transaction).
async fn moved_view<C: ConnectionTrait>(db: &C, moved: lifecycle::Moved) -> AppResult<OrderView> {
    let view = OrderView::load(db, moved.order.id)
        .await?
        .ok_or_else(|| AppError::not_found("order"))?;
    Ok(view.moved(moved))
}

/// A page of the caller's orders (admins: everyone's, or one user's).
pub async fn list(
    db: &DatabaseConnection,
    caller: &AuthUser,
    query: OrderListQuery,
) -> AppResult<Page<OrderResponse>> {
    let mut errors = FieldErrors::new();
    let page = PageRequest::<OrderSort>::parse(
        query.skip.as_deref(),
        query.take.as_deref(),
        query.order_by.as_deref(),
        query.order.as_deref(),
        &mut errors,
    );
    let status = match query.status.as_deref() {
        None => None,
        Some(raw) => {
            let parsed = status::parse::<OrderStatus>(raw);
            if parsed.is_none() {
                let names = status::names::<OrderStatus>().join(", ");
                errors.insert("status".into(), vec![format!("must be one of: {names}")]);
            }
            parsed
        }
    };
    let user_filter = match query.user_id.as_deref().map(Uuid::parse_str) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            errors.insert("userId".into(), vec!["must be a UUID".into()]);
            None
        }
    };
    let Some(page) = page.filter(|_| errors.is_empty()) else {
        return Err(AppError::validation(errors));
    };
    if user_filter.is_some() && !caller.is_admin() && user_filter != Some(caller.id) {
        return Err(AppError::forbidden(
            "Only admins may list other users' orders.",
        ));
    }

    let mut select = order::Entity::find();
    if !caller.is_admin() {
        select = select.filter(order::Column::UserId.eq(caller.id));
    } else if let Some(user_id) = user_filter {
        select = select.filter(order::Column::UserId.eq(user_id));
    }
    if let Some(status) = status {
        select = select.filter(order::Column::Status.eq(status));
    }
    // One snapshot for the count and the page, and each order with its payment.
    let snapshot = db::begin_read(db).await?;
    let total = select.clone().count(&snapshot).await?;
    let column = match page.order_by {
        OrderSort::CreatedAt => order::Column::CreatedAt,
        OrderSort::UpdatedAt => order::Column::UpdatedAt,
        OrderSort::Total => order::Column::TotalCents,
    };
    let direction = page.direction();
    let orders = select
        .order_by(column, direction.clone())
        .order_by(order::Column::Id, direction)
        .offset(page.skip)
        .limit(page.take)
        .all(&snapshot)
        .await?;
    let views = OrderView::load_many(&snapshot, orders).await?;
    snapshot.commit().await?;
    Ok(Page::new(
        views.iter().map(OrderView::response).collect(),
        &page,
        total,
    ))
}

/// Cancels an order whose payment is not in an attempt (`PENDING`, `RETRYING` or
/// `REQUIRES_ACTION`), restoring its stock in the same transaction.
#[tracing::instrument(skip_all, fields(order_id = %id, user_id = %caller.id))]
pub async fn cancel(orders: &Orders, caller: &AuthUser, id: Uuid) -> AppResult<OrderResponse> {
    visible_row(&orders.db, caller, id).await?;
    let txn = db::begin_write(&orders.db).await?;
    let now = clock::now();
    let Some(moved) = lifecycle::cancel(&txn, id, Actor::caller(caller), now).await? else {
        txn.rollback().await?;
        let now = visible(&orders.db, caller, id).await?;
        let detail = if now.payment.status == PaymentStatus::Processing {
            "A payment attempt is running; try again when it has finished.".to_owned()
        } else {
            format!(
                "The order is {} and can no longer be cancelled.",
                now.order.status.to_value()
            )
        };
        return Err(AppError::conflict("order_not_cancellable", detail));
    };
    let cancelled = moved_view(&txn, moved).await?;
    events::record(
        &txn,
        NewEvent::order_and_payment(&cancelled, Actor::caller(caller)),
        now,
    )
    .await?;
    txn.commit().await?;
    tracing::info!("order cancelled");
    crate::metrics::payment_finished("cancelled");
    let task = orders.clone();
    detached(async move {
        task.notifier.events_written();
        task.notifier.catalog_changed().await;
    })
    .await;
    // A job still queued for it finds the payment ended and is dropped then.
    Ok(cancelled.response())
}

/// The owner confirms the action a payment waits for (`REQUIRES_ACTION`): the payment is
/// due again at once. 409 in any other state, or once the action has expired.
#[tracing::instrument(skip_all, fields(order_id = %id, user_id = %caller.id))]
pub async fn confirm_payment(
    orders: &Orders,
    caller: &AuthUser,
    id: Uuid,
) -> AppResult<OrderResponse> {
    let order = visible_row(&orders.db, caller, id).await?;
    if order.user_id != caller.id {
        return Err(AppError::forbidden(
            "Only the customer who placed the order can confirm its payment.",
        ));
    }
    let txn = db::begin_write(&orders.db).await?;
    let Some(moved) = lifecycle::confirm_action(&txn, id, clock::now()).await? else {
        txn.rollback().await?;
        return Err(AppError::conflict(
            "payment_not_awaiting_action",
            "The payment of this order is not waiting for a confirmation (or it expired).",
        ));
    };
    txn.commit().await?;
    tracing::info!("payment action confirmed");
    let task = orders.clone();
    detached(async move {
        // Neither the order's status nor a listed payment status changed: listeners hear
        // the next attempt (`PROCESSING`) instead.
        let confirmed = moved_view(&task.db, moved).await?;
        let payment_id = confirmed.payment.id;
        // Due now: `retry` moves a job that waits for the action's expiry.
        if let Err(err) = task.queue.retry(payment_id, clock::now()).await {
            tracing::warn!(%payment_id, error = %err, "could not queue the confirmed payment; the sweeper will");
        }
        Ok(confirmed.response())
    })
    .await
    .unwrap_or_else(|| Err(AppError::Internal(anyhow::anyhow!("confirm follow-up failed"))))
}
