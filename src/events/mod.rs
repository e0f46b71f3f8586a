//! The event log: one row per change to an order, a payment or the catalog, written in the
//! same transaction as the change (a transactional outbox). Every listener reads the log
//! through the [`relay`], so no event is lost because a process died after its commit or
//! Redis was away.

pub mod relay;

use chrono::{DateTime, Utc};
use entity::{OrderStatus, PaymentStatus, event};
use sea_orm::{ConnectionTrait, DatabaseBackend, EntityTrait, NotSet, Set};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::{
    auth::AuthUser,
    error::{AppError, AppResult},
    orders::view::OrderView,
};

/// The PostgreSQL channel that says the log grew (sent at commit).
pub const CHANNEL: &str = "shop_events";

/// Who caused an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: Option<Uuid>,
}

/// The kinds of actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorKind {
    User,
    Admin,
    Worker,
    System,
}

impl ActorKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
            Self::Worker => "worker",
            Self::System => "system",
        }
    }
}

impl Actor {
    /// A payment worker.
    pub const WORKER: Self = Self {
        kind: ActorKind::Worker,
        id: None,
    };

    /// The signed-in caller, as a user or an admin.
    pub fn caller(user: &AuthUser) -> Self {
        Self {
            kind: if user.is_admin() {
                ActorKind::Admin
            } else {
                ActorKind::User
            },
            id: Some(user.id),
        }
    }
}

/// An event about to be written.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub kind: String,
    pub order_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub actor: Actor,
    pub data: Value,
}

impl NewEvent {
    /// `order.<status>`: the order as `GET /orders/{id}` shows it now. `PENDING` is
    /// `order.created`.
    pub fn order(view: &OrderView, actor: Actor) -> Self {
        let status = match view.order.status {
            OrderStatus::Pending => "created",
            OrderStatus::Processing => "processing",
            OrderStatus::Completed => "completed",
            OrderStatus::Failed => "failed",
            OrderStatus::Cancelled => "cancelled",
        };
        Self {
            kind: format!("order.{status}"),
            order_id: Some(view.order.id),
            user_id: Some(view.order.user_id),
            actor,
            data: serde_json::to_value(view.response()).unwrap_or(Value::Null),
        }
    }

    /// `payment.<status>`: the `/payment` payload. `None` for `PENDING`, which no
    /// listener is told about.
    pub fn payment(view: &OrderView, actor: Actor) -> Option<Self> {
        let status = match view.payment.status {
            PaymentStatus::Pending => return None,
            PaymentStatus::Processing => "processing",
            PaymentStatus::Retrying => "retrying",
            PaymentStatus::RequiresAction => "requires_action",
            PaymentStatus::Succeeded => "succeeded",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Cancelled => "cancelled",
        };
        Some(Self {
            kind: format!("payment.{status}"),
            order_id: Some(view.order.id),
            user_id: Some(view.order.user_id),
            actor,
            data: serde_json::to_value(view.payment_event()).unwrap_or(Value::Null),
        })
    }

    /// The order's event, then its payment's (when listeners are told about it).
    pub fn order_and_payment(view: &OrderView, actor: Actor) -> Vec<Self> {
        let mut events = vec![Self::order(view, actor)];
        events.extend(Self::payment(view, actor));
        events
    }

    /// `product.<change>`: the product as admins see it.
    pub fn product(change: &str, product: &impl Serialize, actor: Actor) -> Self {
        Self {
            kind: format!("product.{change}"),
            order_id: None,
            user_id: None,
            actor,
            data: serde_json::to_value(product).unwrap_or(Value::Null),
        }
    }
}

/// Writes `events` in the caller's transaction, in order. On PostgreSQL the log's
/// listeners are notified when the transaction commits (`NOTIFY` costs nothing before).
pub async fn record<C: ConnectionTrait>(
    txn: &C,
    events: Vec<NewEvent>,
    now: DateTime<Utc>,
) -> AppResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let rows = events.into_iter().map(|e| event::ActiveModel {
        id: NotSet,
        tx: NotSet,
        kind: Set(e.kind),
        order_id: Set(e.order_id),
        user_id: Set(e.user_id),
        actor_kind: Set(e.actor.kind.as_str().to_owned()),
        actor_id: Set(e.actor.id),
        data: Set(e.data.to_string()),
        created_at: Set(now),
    });
    event::Entity::insert_many(rows)
        .exec_without_returning(txn)
        .await?;
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        txn.execute_unprepared(&format!("SELECT pg_notify('{CHANNEL}', '')"))
            .await?;
    }
    Ok(())
}

/// An event as listeners receive it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// A cursor: ids sort in the order the log was written.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created_at: DateTime<Utc>,
    pub order_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub actor: Value,
    pub data: Value,
}

impl Event {
    /// The cursor of a row: its position, `(tx, id)`, as text that sorts the same way.
    pub fn cursor(tx: i64, id: i64) -> String {
        format!("{tx:020}-{id:020}")
    }
}

impl TryFrom<event::Model> for Event {
    type Error = AppError;

    fn try_from(row: event::Model) -> AppResult<Self> {
        let data = serde_json::from_str(&row.data).map_err(|e| AppError::Internal(e.into()))?;
        Ok(Self {
            id: Self::cursor(row.tx, row.id),
            kind: row.kind,
            created_at: row.created_at,
            order_id: row.order_id,
            user_id: row.user_id,
            actor: serde_json::json!({"kind": row.actor_kind, "id": row.actor_id}),
            data,
        })
    }
}
