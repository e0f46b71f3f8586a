//! Refunds: money given back on a paid order, in full or in part, with the units it puts
//! back on the shelf. Asking for one claims its money and units on the order in the same
//! transaction that records it (see `lifecycle::claim_refund`), so concurrent refunds can
//! never promise more than was paid or ordered; the workers then run it through the
//! simulated provider on the retry queue, and the refund that succeeds moves the order
//! and restocks, exactly once. Knows nothing about HTTP.

pub mod routes;
pub mod worker;

use std::{collections::HashSet, sync::Arc};

use chrono::{DateTime, Utc};
use entity::{RefundStatus, order, order_item, refund};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    auth::AuthUser,
    clock,
    config::Config,
    db,
    domain::{AmountInput, Money, WholeNumber, check_text},
    error::{AppError, AppResult, FieldErrors},
    events::{self, Actor, NewEvent},
    idempotency::{self, Claim, IdempotencyKey},
    inventory::Line,
    lifecycle::{self, REFUNDABLE},
    notifier::{Notifier, detached},
    orders::service::{MAX_LINES, MAX_QUANTITY},
    queue::JobQueue,
};

/// The longest `reason` of a refund.
pub const MAX_REASON_CHARS: usize = 500;

/// What the refund rules use.
#[derive(Clone)]
pub struct Refunds {
    pub db: DatabaseConnection,
    pub queue: Arc<dyn JobQueue>,
    pub notifier: Notifier,
    pub config: Arc<Config>,
}

/// `POST /orders/{id}/refunds`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundInput {
    /// How much to refund: a JSON number or string with at most two decimals, at least
    /// 0.01; by default, all that is left (the total less what other refunds, succeeded or
    /// pending, claim).
    #[schema(schema_with = amount_schema)]
    pub amount: Option<AmountInput>,
    /// Why (up to 500 characters).
    #[schema(
        max_length = 500,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$",
        example = "damaged in transit"
    )]
    pub reason: Option<String>,
    /// Units to put back on the shelf when the refund succeeds: never more of a line than
    /// was ordered less what other refunds restock.
    #[schema(max_items = 100)]
    pub restock: Option<Vec<RestockInput>>,
}

/// A refund's amount: at least 0.01; at most what is left to refund, which the schema
/// cannot know.
fn amount_schema() -> utoipa::openapi::schema::Schema {
    crate::domain::amount_schema(13, "5.00")
}

/// A line of a refund's restock.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestockInput {
    #[schema(value_type = String, required = true, format = Uuid)]
    pub product_id: Option<String>,
    /// 1 to 1000.
    #[schema(value_type = i64, required = true, minimum = 1, maximum = 1000, example = 1)]
    pub quantity: Option<WholeNumber>,
}

/// Units a refund puts back on the shelf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestockLine {
    pub product_id: Uuid,
    pub quantity: i32,
}

impl From<RestockLine> for Line {
    fn from(line: RestockLine) -> Self {
        Line {
            product_id: line.product_id,
            quantity: line.quantity,
        }
    }
}

/// A refund as clients see it.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundResponse {
    pub id: Uuid,
    pub order_id: Uuid,
    #[schema(value_type = String, example = "5.00")]
    pub amount: Money,
    pub reason: Option<String>,
    pub status: RefundStatus,
    /// Attempts made so far.
    pub attempts: i32,
    pub restock: Vec<RestockLine>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `GET /orders/{id}/refunds`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundList {
    /// Oldest first.
    pub items: Vec<RefundResponse>,
}

/// A refund's restock lines, as stored.
pub fn restock_lines(row: &refund::Model) -> AppResult<Vec<RestockLine>> {
    serde_json::from_str(&row.restock).map_err(|err| AppError::Internal(err.into()))
}

impl TryFrom<&refund::Model> for RefundResponse {
    type Error = AppError;

    fn try_from(row: &refund::Model) -> AppResult<Self> {
        Ok(Self {
            id: row.id,
            order_id: row.order_id,
            amount: Money::from_cents(row.amount_cents),
            reason: row.reason.clone(),
            status: row.status,
            attempts: row.attempts,
            restock: restock_lines(row)?,
            last_error: row.last_error.clone(),
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// `refund.<status>`: the refund, for the order's owner and admins.
pub fn event(row: &refund::Model, user_id: Uuid, actor: Actor) -> AppResult<NewEvent> {
    let status = match row.status {
        RefundStatus::Pending => "pending",
        RefundStatus::Succeeded => "succeeded",
        RefundStatus::Failed => "failed",
    };
    let data = RefundResponse::try_from(row)?;
    Ok(NewEvent {
        kind: format!("refund.{status}"),
        order_id: Some(row.order_id),
        user_id: Some(user_id),
        actor,
        data: serde_json::to_value(data).unwrap_or(Value::Null),
    })
}

/// What asking for a refund answered.
#[derive(Debug)]
pub enum Requested {
    Created(RefundResponse),
    /// A repeat of an earlier request with the same `Idempotency-Key`.
    Replayed {
        status: u16,
        body: String,
    },
}

/// A validated request.
struct Wanted {
    amount: Option<Money>,
    reason: Option<String>,
    restock: Vec<RestockLine>,
}

fn validate(input: RefundInput) -> AppResult<Wanted> {
    let mut errors = FieldErrors::new();
    let mut fail = |field: String, msg: String| errors.entry(field).or_default().push(msg);
    let amount = match input.amount.map(|a| Money::parse(&a.0)) {
        None => None,
        Some(Ok(a)) if a.cents() > 0 => Some(a),
        Some(Ok(_)) => {
            fail("amount".into(), "must be at least 0.01".into());
            None
        }
        Some(Err(msg)) => {
            fail("amount".into(), msg);
            None
        }
    };
    if let Some(Err(msg)) = input.reason.as_deref().map(|r| check_text(r, true)) {
        fail("reason".into(), msg);
    }
    let reason = input
        .reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    if reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_REASON_CHARS)
    {
        fail(
            "reason".into(),
            format!("must be at most {MAX_REASON_CHARS} characters"),
        );
    }
    let lines = input.restock.unwrap_or_default();
    if lines.len() > MAX_LINES {
        fail(
            "restock".into(),
            format!("must contain at most {MAX_LINES} lines"),
        );
    }
    let mut restock = Vec::with_capacity(lines.len());
    let mut seen = HashSet::new();
    for (i, line) in lines.iter().enumerate() {
        let product_id = match line.product_id.as_deref().map(Uuid::parse_str) {
            None => {
                fail(format!("restock[{i}].productId"), "is required".into());
                None
            }
            Some(Err(_)) => {
                fail(format!("restock[{i}].productId"), "must be a UUID".into());
                None
            }
            Some(Ok(id)) if !seen.insert(id) => {
                fail(
                    format!("restock[{i}].productId"),
                    "appears more than once; put the whole quantity on one line".into(),
                );
                None
            }
            Some(Ok(id)) => Some(id),
        };
        let quantity = match line.quantity {
            None => {
                fail(format!("restock[{i}].quantity"), "is required".into());
                None
            }
            Some(q) if (1..=MAX_QUANTITY).contains(&q.0) => Some(q.0 as i32),
            Some(_) => {
                fail(
                    format!("restock[{i}].quantity"),
                    format!("must be from 1 to {MAX_QUANTITY}"),
                );
                None
            }
        };
        if let (Some(product_id), Some(quantity)) = (product_id, quantity) {
            restock.push(RestockLine {
                product_id,
                quantity,
            });
        }
    }
    if !errors.is_empty() {
        return Err(AppError::validation(errors));
    }
    Ok(Wanted {
        amount,
        reason,
        restock,
    })
}

/// Asks for a refund of a paid order (ADMIN): claims its money and restock units and
/// records it `PENDING` in one transaction, then queues it for the workers.
#[tracing::instrument(skip_all, fields(order_id = %order_id, user_id = %caller.id))]
pub async fn request(
    refunds: &Refunds,
    caller: &AuthUser,
    order_id: Uuid,
    input: RefundInput,
    key: Option<IdempotencyKey>,
) -> AppResult<Requested> {
    caller.require_admin()?;
    let wanted = validate(input)?;
    let claimed = match key {
        None => None,
        Some(key) => {
            match idempotency::claim(&refunds.db, &key, refunds.config.idempotency_ttl).await? {
                Claim::Replay { status, body } => return Ok(Requested::Replayed { status, body }),
                Claim::Acquired(ticket) => Some((key, ticket)),
            }
        }
    };
    let result = async {
        let txn = db::begin_write(&refunds.db).await?;
        let now = clock::now();
        let row = match record(&txn, refunds, caller, order_id, wanted, now).await {
            Ok(row) => row,
            Err(problem) => {
                txn.rollback().await?;
                return Err(problem);
            }
        };
        let response = RefundResponse::try_from(&row)?;
        if let Some((key, ticket)) = &claimed {
            let body =
                serde_json::to_string(&response).map_err(|e| AppError::Internal(e.into()))?;
            idempotency::complete(&txn, key, *ticket, 202, &body).await?;
        }
        txn.commit().await?;
        Ok(response)
    }
    .await;
    if let (Err(err), Some((key, ticket))) = (&result, &claimed) {
        idempotency::settle_failure(&refunds.db, key, *ticket, err).await;
    }
    let response = result?;
    tracing::info!(refund_id = %response.id, amount = %response.amount, "refund requested");
    let (task, refund_id) = (refunds.clone(), response.id);
    detached(async move {
        task.notifier.events_written();
        if let Err(err) = task.queue.enqueue(refund_id, clock::now()).await {
            tracing::warn!(%refund_id, error = %err, "could not queue the refund; the sweeper will");
        }
    })
    .await;
    Ok(Requested::Created(response))
}

/// Claims what the refund takes and records it with its `refund.pending` event, in `txn`.
async fn record(
    txn: &sea_orm::DatabaseTransaction,
    refunds: &Refunds,
    caller: &AuthUser,
    order_id: Uuid,
    wanted: Wanted,
    now: DateTime<Utc>,
) -> AppResult<refund::Model> {
    // Read, then claim on the condition that the claims still fit: when another refund
    // commits in between, read again (a failed one may have given its claim back).
    let mut tries = 0;
    let (order, amount) = loop {
        tries += 1;
        let order = order::Entity::find_by_id(order_id)
            .one(txn)
            .await?
            .ok_or_else(|| AppError::not_found("order"))?;
        refundable(&order)?;
        let left = order.total_cents - order.refund_claimed_cents;
        let amount = wanted.amount.map_or(left, Money::cents);
        if amount <= 0 || amount > left || tries > 3 {
            return Err(too_much(left));
        }
        if lifecycle::claim_refund(txn, order_id, amount)
            .await?
            .is_some()
        {
            break (order, amount);
        }
    };
    let mut restock = wanted.restock;
    restock.sort_by_key(|l| l.product_id);
    let items = order_item::Entity::find()
        .filter(order_item::Column::OrderId.eq(order_id))
        .all(txn)
        .await?;
    let mut errors = FieldErrors::new();
    for line in &restock {
        let key = format!("restock.{}", line.product_id);
        match items.iter().find(|i| i.product_id == line.product_id) {
            None => {
                errors.insert(key, vec!["is not a product of this order".into()]);
            }
            Some(item) => {
                if !lifecycle::claim_restock(txn, order_id, &Line::from(*line)).await? {
                    let left = item.quantity - item.restock_claimed;
                    errors.insert(
                        key,
                        vec![format!(
                            "at most {} of the {} ordered are left to restock",
                            left.max(0),
                            item.quantity
                        )],
                    );
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(AppError::unprocessable(
            "restock_exceeds_order",
            "Some restock lines name more than is left of the order to restock; nothing was refunded.",
        )
        .with_errors(errors));
    }
    let row = refund::Model {
        id: Uuid::now_v7(),
        order_id,
        amount_cents: amount,
        reason: wanted.reason,
        status: RefundStatus::Pending,
        attempts: 0,
        max_attempts: i32::from(refunds.config.payments.max_attempts),
        restock: serde_json::to_string(&restock).map_err(|e| AppError::Internal(e.into()))?,
        last_error: None,
        next_attempt_at: Some(now),
        actor_id: Some(caller.id),
        created_at: now,
        updated_at: now,
    };
    refund::Entity::insert(refund::ActiveModel::from(row.clone()))
        .exec_without_returning(txn)
        .await?;
    let pending = event(&row, order.user_id, Actor::caller(caller))?;
    events::record(txn, vec![pending], now).await?;
    Ok(row)
}

/// 409 unless the order is paid and not wholly refunded.
fn refundable(order: &order::Model) -> AppResult<()> {
    if REFUNDABLE.contains(&order.status) {
        return Ok(());
    }
    use sea_orm::ActiveEnum;
    Err(AppError::conflict(
        "order_not_refundable",
        format!(
            "The order is {}; only COMPLETED or PARTIALLY_REFUNDED orders can be refunded.",
            order.status.to_value()
        ),
    ))
}

/// 422: the amount is more than is left to refund.
fn too_much(left: i64) -> AppError {
    let left = Money::from_cents(left.max(0));
    AppError::unprocessable(
        "refund_exceeds_remaining",
        format!("Only {left} is left to refund on this order (other refunds, succeeded or pending, claim the rest)."),
    )
    .with_errors(FieldErrors::from([(
        "amount".to_owned(),
        vec![format!("must be at most {left}")],
    )]))
}

/// The refunds of an order, oldest first, for its owner or an admin (404 for anyone else).
pub async fn list(
    db: &DatabaseConnection,
    caller: &AuthUser,
    order_id: Uuid,
) -> AppResult<RefundList> {
    order::Entity::find_by_id(order_id)
        .one(db)
        .await?
        .filter(|o| caller.is_admin() || o.user_id == caller.id)
        .ok_or_else(|| AppError::not_found("order"))?;
    let rows = refund::Entity::find()
        .filter(refund::Column::OrderId.eq(order_id))
        .order_by_asc(refund::Column::Id)
        .all(db)
        .await?;
    Ok(RefundList {
        items: rows
            .iter()
            .map(RefundResponse::try_from)
            .collect::<AppResult<_>>()?,
    })
}
