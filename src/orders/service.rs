//! Order rules: placement in one transaction with conditional stock decrements, reads
//! limited to the owner and admins, listing, and cancellation. Knows nothing about HTTP.

use std::collections::{BTreeMap, HashMap, HashSet};

use entity::{order, order_item, payment, product};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, Order, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, SqlErr,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use super::{
    OrderStatus,
    dto::{
        CreateOrderRequest, OrderItemResponse, OrderListQuery, OrderResponse, OrderSort,
        PaymentResponse, ProductRef,
    },
};
use crate::{
    app::AppState,
    auth::AuthUser,
    clock, db,
    domain::Money,
    error::{AppError, AppResult, FieldErrors},
    idempotency::{self, Claim, IdempotencyKey, Ticket},
    pagination::{Page, PageRequest},
    payments::{PaymentEvent, PaymentMethod, PaymentStatus},
};

/// Most lines an order may have.
pub const MAX_LINES: usize = 100;
/// Most units of one product an order line may ask for.
pub const MAX_QUANTITY: i64 = 1000;

/// A validated order line.
#[derive(Clone, Copy, Debug)]
struct Line {
    product_id: Uuid,
    quantity: i32,
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
pub async fn place(
    state: &AppState,
    user: &AuthUser,
    request: CreateOrderRequest,
    key: Option<IdempotencyKey>,
) -> AppResult<Placed> {
    let (lines, method) = validate(request)?;
    let claimed = match key {
        None => None,
        Some(key) => match idempotency::claim(&state.db, &key, state.config.idempotency_ttl).await?
        {
            Claim::Replay { status, body } => return Ok(Placed::Replayed { status, body }),
            Claim::Acquired(ticket) => Some((key, ticket)),
        },
    };
    let result = reserve_and_record(state, user, &lines, method, claimed.as_ref()).await;
    if let (Err(err), Some((key, ticket))) = (&result, &claimed) {
        idempotency::settle_failure(&state.db, key, *ticket, err).await;
    }
    let NewOrder {
        response,
        payment_id,
    } = result?;
    // After the commit: announce the order, then hand its payment to the workers (in this
    // order, so PENDING is never heard after PROCESSING). In a task of its own, so a client
    // hanging up cannot cut it short.
    let (task_state, order) = (state.clone(), response.clone());
    let follow_up = tokio::spawn(async move {
        tokio::join!(
            task_state.events.order_status(&order),
            task_state.cache.bump()
        );
        if let Err(err) = task_state.queue.enqueue(payment_id, clock::now()).await {
            tracing::warn!(order_id = %order.id, error = %err, "could not queue the payment; the sweeper will");
        }
    });
    if let Err(err) = follow_up.await {
        tracing::warn!(error = %err, "order follow-up task failed");
    }
    Ok(Placed::Created(response))
}

/// A placed order and its payment's id.
struct NewOrder {
    response: OrderResponse,
    payment_id: Uuid,
}

fn validate(request: CreateOrderRequest) -> AppResult<(Vec<Line>, PaymentMethod)> {
    let mut errors = FieldErrors::new();
    let mut fail = |field: String, msg: String| errors.entry(field).or_default().push(msg);
    let method = match request.payment_method.as_deref() {
        None => Some(PaymentMethod::DEFAULT),
        Some(raw) => {
            let parsed = PaymentMethod::parse(raw);
            if parsed.is_none() {
                fail(
                    "paymentMethod".into(),
                    "must be pm_random, pm_success, pm_decline, pm_transient_1 to pm_transient_9 or pm_unavailable".into(),
                );
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
            Some(q) if (1..=MAX_QUANTITY).contains(&q) => Some(q as i32),
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

async fn reserve_and_record(
    state: &AppState,
    user: &AuthUser,
    lines: &[Line],
    method: PaymentMethod,
    key: Option<&(IdempotencyKey, Ticket)>,
) -> AppResult<NewOrder> {
    let now = clock::now();
    // Sorted by product id, so two orders touching the same products lock them in the same
    // order and never deadlock.
    let mut lines = lines.to_vec();
    lines.sort_by_key(|l| l.product_id);

    let txn = db::begin_write(&state.db).await?;
    let reserved = match reserve_lines(&txn, &lines, now).await? {
        Ok(reserved) => reserved,
        Err(problem) => {
            txn.rollback().await?;
            return Err(problem);
        }
    };

    let mut total = Money::default();
    for (line, product) in &reserved {
        total = Money::from_cents(product.price_cents)
            .times(i64::from(line.quantity))
            .and_then(|subtotal| total.checked_add(subtotal))
            .ok_or_else(|| AppError::invalid_field("items", "the order total is too large"))?;
    }
    let order_id = Uuid::now_v7();
    let order = order::ActiveModel {
        id: Set(order_id),
        user_id: Set(user.id),
        status: Set(OrderStatus::Pending.as_str().to_owned()),
        total_cents: Set(total.cents()),
        currency: Set(state.config.currency.clone()),
        payment_method: Set(method.as_string()),
        created_at: Set(now),
        updated_at: Set(now),
    };
    order::Entity::insert(order)
        .exec_without_returning(&txn)
        .await
        .map_err(|err| match err.sql_err() {
            // The token outlived its account.
            Some(SqlErr::ForeignKeyConstraintViolation(_)) => {
                AppError::unauthorized("The account of this token no longer exists.")
            }
            _ => err.into(),
        })?;
    let items: Vec<order_item::Model> = reserved
        .iter()
        .map(|(line, product)| order_item::Model {
            id: Uuid::now_v7(),
            order_id,
            product_id: line.product_id,
            quantity: line.quantity,
            unit_price_cents: product.price_cents,
        })
        .collect();
    order_item::Entity::insert_many(items.iter().cloned().map(order_item::ActiveModel::from))
        .exec_without_returning(&txn)
        .await?;
    let payment_id_of_new = Uuid::now_v7();
    let payment = payment::Model {
        id: payment_id_of_new,
        order_id,
        status: PaymentStatus::Pending.as_str().to_owned(),
        attempts: 0,
        max_attempts: i32::from(state.config.payments.max_attempts),
        last_error: None,
        next_attempt_at: Some(now),
        created_at: now,
        updated_at: now,
    };
    payment::Entity::insert(payment::ActiveModel::from(payment.clone()))
        .exec_without_returning(&txn)
        .await?;

    let names: HashMap<Uuid, String> = reserved
        .into_iter()
        .map(|(_, product)| (product.id, product.name))
        .collect();
    let response = assemble(
        order::Model {
            id: order_id,
            user_id: user.id,
            status: OrderStatus::Pending.as_str().to_owned(),
            total_cents: total.cents(),
            currency: state.config.currency.clone(),
            payment_method: method.as_string(),
            created_at: now,
            updated_at: now,
        },
        items,
        payment,
        &names,
    );
    if let Some((key, ticket)) = key {
        let body = serde_json::to_string(&response).map_err(|e| AppError::Internal(e.into()))?;
        idempotency::complete(&txn, key, *ticket, 201, &body).await?;
    }
    txn.commit().await?;
    Ok(NewOrder {
        response,
        payment_id: payment_id_of_new,
    })
}

/// Takes every line's quantity off its product's stock with one conditional decrement per
/// line, in the given order. `Ok(Err(problem))` when any line is short or unknown: the
/// caller must roll back.
async fn reserve_lines(
    txn: &DatabaseTransaction,
    lines: &[Line],
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<Result<Vec<(Line, product::Model)>, AppError>> {
    let mut reserved = Vec::with_capacity(lines.len());
    let mut short = Vec::new();
    for line in lines {
        // Matches only while enough stock is left, so stock never goes below zero whatever
        // runs concurrently.
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
            Some(product) => reserved.push((*line, product)),
            None => short.push(*line),
        }
    }
    if short.is_empty() {
        Ok(Ok(reserved))
    } else {
        Ok(Err(explain_shortage(txn, &short).await?))
    }
}

/// Tells missing or deleted products (422) from short stock (409), naming each product.
async fn explain_shortage(txn: &DatabaseTransaction, short: &[Line]) -> AppResult<AppError> {
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
        match found.get(&line.product_id) {
            Some(p) if p.deleted_at.is_none() => {
                insufficient.insert(
                    line.product_id.to_string(),
                    vec![format!(
                        "requested {}, available {}",
                        line.quantity, p.stock
                    )],
                );
            }
            Some(_) => {
                unknown.insert(
                    line.product_id.to_string(),
                    vec!["product was deleted".into()],
                );
            }
            None => {
                unknown.insert(line.product_id.to_string(), vec!["no such product".into()]);
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

/// One order, for its owner or an admin; anyone else gets the same 404 as for a missing one.
pub async fn get(state: &AppState, caller: &AuthUser, id: Uuid) -> AppResult<OrderResponse> {
    let order = visible_order(state, caller, id).await?;
    load(&state.db, vec![order])
        .await?
        .pop()
        .ok_or_else(|| AppError::not_found("order"))
}

async fn visible_order(state: &AppState, caller: &AuthUser, id: Uuid) -> AppResult<order::Model> {
    order::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .filter(|o| caller.is_admin() || o.user_id == caller.id)
        .ok_or_else(|| AppError::not_found("order"))
}

/// A page of the caller's orders (admins: everyone's, or one user's).
pub async fn list(
    state: &AppState,
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
    let status = match query
        .status
        .as_deref()
        .map(|s| (s, OrderStatus::parse(&s.to_ascii_uppercase())))
    {
        None => None,
        Some((_, Some(status))) => Some(status),
        Some((_, None)) => {
            errors.insert(
                "status".into(),
                vec!["must be PENDING, PROCESSING, COMPLETED, FAILED or CANCELLED".into()],
            );
            None
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
        select = select.filter(order::Column::Status.eq(status.as_str()));
    }
    let total = select.clone().count(&state.db).await?;
    let column = match page.order_by {
        OrderSort::CreatedAt => order::Column::CreatedAt,
        OrderSort::UpdatedAt => order::Column::UpdatedAt,
        OrderSort::Total => order::Column::TotalCents,
    };
    let direction = if page.descending {
        Order::Desc
    } else {
        Order::Asc
    };
    let orders = select
        .order_by(column, direction.clone())
        .order_by(order::Column::Id, direction)
        .offset(page.skip)
        .limit(page.take)
        .all(&state.db)
        .await?;
    Ok(Page::new(load(&state.db, orders).await?, &page, total))
}

/// Cancels an order whose payment has not started an attempt, restoring its stock in the
/// same transaction. The payment row is the gate: only one of a cancel and a payment
/// attempt can move it out of `PENDING` / `RETRYING`.
pub async fn cancel(state: &AppState, caller: &AuthUser, id: Uuid) -> AppResult<OrderResponse> {
    let order = visible_order(state, caller, id).await?;
    let now = clock::now();
    let txn = db::begin_write(&state.db).await?;
    let gate = payment::Entity::update_many()
        .col_expr(
            payment::Column::Status,
            Expr::value(PaymentStatus::Cancelled.as_str()),
        )
        .col_expr(
            payment::Column::NextAttemptAt,
            Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
        )
        .col_expr(payment::Column::UpdatedAt, Expr::value(now))
        .filter(payment::Column::OrderId.eq(id))
        .filter(payment::Column::Status.is_in([
            PaymentStatus::Pending.as_str(),
            PaymentStatus::Retrying.as_str(),
        ]))
        .exec(&txn)
        .await?;
    if gate.rows_affected == 0 {
        txn.rollback().await?;
        let current = load(&state.db, vec![order]).await?.pop();
        let detail = match current {
            Some(o) if o.payment.status == PaymentStatus::Processing => {
                "A payment attempt is running; try again when it has finished.".to_owned()
            }
            Some(o) => format!(
                "The order is {} and can no longer be cancelled.",
                o.status.as_str()
            ),
            None => "The order can no longer be cancelled.".to_owned(),
        };
        return Err(AppError::conflict("order_not_cancellable", detail));
    }
    order::Entity::update_many()
        .col_expr(
            order::Column::Status,
            Expr::value(OrderStatus::Cancelled.as_str()),
        )
        .col_expr(order::Column::UpdatedAt, Expr::value(now))
        .filter(order::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    restore_stock(&txn, id, now).await?;
    txn.commit().await?;
    // Read back and announce in a task of its own, so a client hanging up cannot cut the
    // announcement short.
    let task_state = state.clone();
    let follow_up = tokio::spawn(async move {
        task_state.cache.bump().await;
        crate::metrics::payment_finished("cancelled");
        let order = order::Entity::find_by_id(id).one(&task_state.db).await?;
        let cancelled = load(&task_state.db, order.into_iter().collect())
            .await?
            .pop()
            .ok_or_else(|| AppError::not_found("order"))?;
        task_state.events.order_status(&cancelled).await;
        task_state
            .events
            .payment_status(&PaymentEvent {
                order_id: cancelled.id,
                user_id: cancelled.user_id,
                amount: cancelled.total,
                currency: cancelled.currency.clone(),
                payment_method: cancelled.payment_method.clone(),
                status: PaymentStatus::Cancelled,
                attempt: cancelled.payment.attempts,
                max_attempts: cancelled.payment.max_attempts,
                next_attempt_at: None,
                error: None,
            })
            .await;
        Ok::<_, AppError>(cancelled)
    });
    follow_up
        .await
        .map_err(|err| AppError::Internal(err.into()))?
}

/// Gives a payment that ran out of attempts a fresh set: takes it off the dead list,
/// reserves its order's stock again (all lines or none) and puts the order back to
/// `PENDING`, in one transaction.
pub async fn retry_failed_payment(state: &AppState, payment_id: Uuid) -> AppResult<OrderResponse> {
    let dead = state
        .queue
        .dead_jobs(usize::MAX >> 1)
        .await
        .map_err(|err| {
            tracing::warn!(error = %err, "dead job lookup: queue unavailable");
            AppError::unavailable("The payment queue is unavailable; try again shortly.")
        })?
        .into_iter()
        .find(|job| job.id == payment_id)
        .ok_or_else(|| AppError::not_found("dead job"))?;
    let now = clock::now();
    let txn = db::begin_write(&state.db).await?;
    let revived = payment::Entity::update_many()
        .col_expr(
            payment::Column::Status,
            Expr::value(PaymentStatus::Pending.as_str()),
        )
        .col_expr(payment::Column::Attempts, Expr::value(0))
        .col_expr(payment::Column::NextAttemptAt, Expr::value(Some(now)))
        .col_expr(payment::Column::UpdatedAt, Expr::value(now))
        .filter(payment::Column::Id.eq(payment_id))
        .filter(payment::Column::Status.eq(PaymentStatus::Failed.as_str()))
        .exec_with_returning(&txn)
        .await?;
    let Some(payment) = revived.into_iter().next() else {
        txn.rollback().await?;
        return Err(AppError::conflict(
            "payment_not_failed",
            "This payment is no longer FAILED; nothing to retry.",
        ));
    };
    let mut lines: Vec<Line> = order_item::Entity::find()
        .filter(order_item::Column::OrderId.eq(payment.order_id))
        .all(&txn)
        .await?
        .into_iter()
        .map(|item| Line {
            product_id: item.product_id,
            quantity: item.quantity,
        })
        .collect();
    lines.sort_by_key(|l| l.product_id);
    if let Err(problem) = reserve_lines(&txn, &lines, now).await? {
        txn.rollback().await?;
        return Err(problem);
    }
    order::Entity::update_many()
        .col_expr(
            order::Column::Status,
            Expr::value(OrderStatus::Pending.as_str()),
        )
        .col_expr(order::Column::UpdatedAt, Expr::value(now))
        .filter(order::Column::Id.eq(payment.order_id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    let task_state = state.clone();
    let follow_up = tokio::spawn(async move {
        task_state.cache.bump().await;
        let order = order::Entity::find_by_id(payment.order_id)
            .one(&task_state.db)
            .await?;
        let response = load(&task_state.db, order.into_iter().collect())
            .await?
            .pop()
            .ok_or_else(|| AppError::not_found("order"))?;
        task_state.events.order_status(&response).await;
        let removed = task_state.queue.remove_dead(payment_id).await;
        let queued = task_state.queue.enqueue(payment_id, clock::now()).await;
        if let Err(err) = removed.and(queued.map(drop)) {
            tracing::warn!(%payment_id, error = %err, last_error = %dead.error, "retried payment not queued; the sweeper will");
        }
        Ok::<_, AppError>(response)
    });
    follow_up
        .await
        .map_err(|err| AppError::Internal(err.into()))?
}

/// Puts an order's reserved units back on the shelf (deleted products included, so the
/// books balance). Call once, inside the transaction that ends the order.
pub async fn restore_stock<C: ConnectionTrait>(
    txn: &C,
    order_id: Uuid,
    now: chrono::DateTime<chrono::Utc>,
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

/// Loads the lines, product names and payments of `orders` in three queries, keeping order.
pub async fn load<C: ConnectionTrait>(
    db: &C,
    orders: Vec<order::Model>,
) -> AppResult<Vec<OrderResponse>> {
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = orders.iter().map(|o| o.id).collect();
    let mut items_by_order: BTreeMap<Uuid, Vec<order_item::Model>> = BTreeMap::new();
    for item in order_item::Entity::find()
        .filter(order_item::Column::OrderId.is_in(ids.clone()))
        .order_by_asc(order_item::Column::Id)
        .all(db)
        .await?
    {
        items_by_order.entry(item.order_id).or_default().push(item);
    }
    let product_ids: HashSet<Uuid> = items_by_order
        .values()
        .flatten()
        .map(|i| i.product_id)
        .collect();
    let names: HashMap<Uuid, String> = product::Entity::find()
        .filter(product::Column::Id.is_in(product_ids))
        .all(db)
        .await?
        .into_iter()
        .map(|p| (p.id, p.name))
        .collect();
    let mut payments: HashMap<Uuid, payment::Model> = payment::Entity::find()
        .filter(payment::Column::OrderId.is_in(ids))
        .all(db)
        .await?
        .into_iter()
        .map(|p| (p.order_id, p))
        .collect();
    orders
        .into_iter()
        .map(|order| {
            let payment = payments.remove(&order.id).ok_or_else(|| {
                AppError::Internal(anyhow::anyhow!("order {} has no payment row", order.id))
            })?;
            let items = items_by_order.remove(&order.id).unwrap_or_default();
            Ok(assemble(order, items, payment, &names))
        })
        .collect()
}

/// An order's lines and their products' names, for building its view without a re-read.
pub struct OrderLines {
    items: Vec<order_item::Model>,
    names: HashMap<Uuid, String>,
}

impl OrderLines {
    /// Loads the lines of every order in `order_ids` (two queries), by order.
    pub async fn load_many<C: ConnectionTrait>(
        db: &C,
        order_ids: impl IntoIterator<Item = Uuid>,
    ) -> AppResult<HashMap<Uuid, Self>> {
        let ids: Vec<Uuid> = order_ids.into_iter().collect();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let items = order_item::Entity::find()
            .filter(order_item::Column::OrderId.is_in(ids))
            .order_by_asc(order_item::Column::Id)
            .all(db)
            .await?;
        let names: HashMap<Uuid, String> = product::Entity::find()
            .filter(product::Column::Id.is_in(items.iter().map(|i| i.product_id)))
            .all(db)
            .await?
            .into_iter()
            .map(|p| (p.id, p.name))
            .collect();
        let mut by_order: HashMap<Uuid, Self> = HashMap::new();
        for item in items {
            let lines = by_order.entry(item.order_id).or_insert_with(|| Self {
                items: Vec::new(),
                names: HashMap::new(),
            });
            if let Some(name) = names.get(&item.product_id) {
                lines.names.insert(item.product_id, name.clone());
            }
            lines.items.push(item);
        }
        Ok(by_order)
    }

    /// The order as `GET /orders/{id}` would show it with these rows.
    pub fn view(&self, order: &order::Model, payment: &payment::Model) -> OrderResponse {
        assemble(
            order.clone(),
            self.items.clone(),
            payment.clone(),
            &self.names,
        )
    }
}

fn assemble(
    order: order::Model,
    items: Vec<order_item::Model>,
    payment: payment::Model,
    names: &HashMap<Uuid, String>,
) -> OrderResponse {
    OrderResponse {
        id: order.id,
        user_id: order.user_id,
        status: OrderStatus::parse(&order.status).unwrap_or(OrderStatus::Pending),
        total: Money::from_cents(order.total_cents),
        currency: order.currency,
        payment_method: order.payment_method,
        created_at: order.created_at,
        updated_at: order.updated_at,
        order_items: items
            .into_iter()
            .map(|item| {
                let price = Money::from_cents(item.unit_price_cents);
                OrderItemResponse {
                    id: item.id,
                    product_id: item.product_id,
                    quantity: item.quantity,
                    price,
                    subtotal: price.times(i64::from(item.quantity)).unwrap_or(price),
                    product: ProductRef {
                        id: item.product_id,
                        name: names.get(&item.product_id).cloned().unwrap_or_default(),
                    },
                }
            })
            .collect(),
        payment: PaymentResponse {
            status: PaymentStatus::parse(&payment.status).unwrap_or(PaymentStatus::Pending),
            attempts: payment.attempts,
            max_attempts: payment.max_attempts,
            last_error: payment.last_error,
            next_attempt_at: payment.next_attempt_at,
            updated_at: payment.updated_at,
        },
    }
}
