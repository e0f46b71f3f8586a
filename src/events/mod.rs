//! The event log: one row per change to an order, a payment or the catalog, written in the
//! same transaction as the change (a transactional outbox). Every listener reads the log
//! through the [`relay`], so no event is lost because a process died after its commit or
//! Redis was away.

pub mod relay;
pub mod routes;
pub mod stream;

use chrono::{DateTime, Utc};
use entity::{OrderStatus, PaymentStatus, event};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait,
    NotSet, QueryFilter, QueryOrder, QuerySelect, Set, sea_query::Expr,
};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    auth::AuthUser,
    error::{AppError, AppResult, FieldErrors},
    orders::view::OrderView,
    pagination::{cursor_limit, cursor_rows, optional_uuid},
};

/// The PostgreSQL channel that says the log grew (sent at commit).
pub const CHANNEL: &str = "shop_events";

/// Who caused an event (or a stock movement).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: Option<Uuid>,
}

/// The kinds of actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActorKind {
    User,
    Admin,
    Worker,
    System,
}

impl ActorKind {
    /// The stored form; `None` for one this service does not write.
    pub fn parse(raw: &str) -> Option<Self> {
        [Self::User, Self::Admin, Self::Worker, Self::System]
            .into_iter()
            .find(|kind| kind.as_str() == raw)
    }

    pub fn as_str(self) -> &'static str {
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

    /// The service itself (seeding, migrations).
    pub const SYSTEM: Self = Self {
        kind: ActorKind::System,
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
            OrderStatus::PartiallyRefunded => "partially_refunded",
            OrderStatus::Refunded => "refunded",
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
/// listeners are notified when the transaction commits, by a trigger on `events` (see the
/// `event_notify` migration), so this costs one statement.
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
    Ok(())
}

/// An event as listeners receive it.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// A cursor: ids sort in the order the log was written.
    #[schema(example = "00000000000000000731-00000000000000000042")]
    pub id: String,
    /// `order.created`, `payment.retrying`, `product.updated`, ...
    #[serde(rename = "type")]
    pub kind: String,
    pub created_at: DateTime<Utc>,
    pub order_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    /// `{kind: user|admin|worker|system, id}`: who caused it.
    #[schema(value_type = Object)]
    pub actor: Value,
    /// The order (`order.*`), the `/payment` payload (`payment.*`), the refund
    /// (`refund.*`) or the product (`product.*`), as it was then.
    #[schema(value_type = Object)]
    pub data: Value,
}

impl Event {
    /// The cursor of a row: its position, `(tx, id)`, as text that sorts the same way.
    pub fn cursor(tx: i64, id: i64) -> String {
        format!("{tx:020}-{id:020}")
    }

    /// The position a cursor names.
    pub fn position(cursor: &str) -> Option<relay::Position> {
        let (tx, id) = cursor.split_once('-')?;
        let digits = |s: &str| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit());
        (digits(tx) && digits(id)).then_some(())?;
        // Any 20 digits name a position; one past every row's just reads nothing.
        let clamp = |s: &str| {
            s.parse::<u128>()
                .ok()
                .map(|n| i64::try_from(n).unwrap_or(i64::MAX))
        };
        Some(relay::Position {
            tx: clamp(tx)?,
            id: clamp(id)?,
        })
    }
}

/// Who may see a row: its owner and admins; catalog events only admins.
fn visible_to(caller: &AuthUser) -> Condition {
    if caller.is_admin() {
        Condition::all()
    } else {
        Condition::all().add(event::Column::UserId.eq(caller.id))
    }
}

/// Only rows of transactions older than every one still running (PostgreSQL), so a page
/// never passes a row that a slower transaction is about to commit.
fn settled(db: &DatabaseConnection) -> Condition {
    if db.get_database_backend() == DatabaseBackend::Postgres {
        Condition::all().add(Expr::cust(
            "tx < pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
        ))
    } else {
        Condition::all()
    }
}

/// A page of the log as the caller may see it, oldest first.
pub async fn page(
    db: &DatabaseConnection,
    caller: &AuthUser,
    query: routes::EventQuery,
) -> AppResult<routes::EventPage> {
    let mut errors = FieldErrors::new();
    let after = match query.after.as_deref() {
        None => None,
        Some(cursor) => {
            let position = Event::position(cursor);
            if position.is_none() {
                errors.insert("after".into(), vec!["must be an event id".into()]);
            }
            position
        }
    };
    let kinds: Vec<String> = query
        .kind
        .as_deref()
        .map(|raw| raw.split(',').map(str::trim).map(str::to_owned).collect())
        .unwrap_or_default();
    let well_formed = |k: &str| {
        k.split_once('.').is_some_and(|(family, name)| {
            let word =
                |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            word(family) && (name == "*" || word(name))
        })
    };
    if kinds.iter().any(|k| !well_formed(k)) {
        errors.insert(
            "type".into(),
            vec!["must be event types or prefixes such as order.*, separated by commas".into()],
        );
    }
    let order_id = optional_uuid(
        query.order_id.as_deref(),
        "orderId",
        "must be a UUID",
        &mut errors,
    );
    let limit = cursor_limit(query.limit.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(AppError::validation(errors));
    }
    let mut select = event::Entity::find()
        .filter(visible_to(caller))
        .filter(settled(db));
    if let Some(after) = after {
        select = select.filter(
            Condition::any().add(event::Column::Tx.gt(after.tx)).add(
                Condition::all()
                    .add(event::Column::Tx.eq(after.tx))
                    .add(event::Column::Id.gt(after.id)),
            ),
        );
    }
    if !kinds.is_empty() {
        let mut any = Condition::any();
        for kind in &kinds {
            any = match kind.strip_suffix('*') {
                Some(prefix) => any.add(event::Column::Kind.starts_with(prefix)),
                None => any.add(event::Column::Kind.eq(kind.as_str())),
            };
        }
        select = select.filter(any);
    }
    if let Some(order_id) = order_id {
        select = select.filter(event::Column::OrderId.eq(order_id));
    }
    let rows = select
        .order_by_asc(event::Column::Tx)
        .order_by_asc(event::Column::Id)
        .limit(limit + 1)
        .all(db)
        .await?;
    let page = cursor_rows(rows, limit, query.after, Event::try_from, |e| e.id.clone())?;
    Ok(routes::EventPage {
        items: page.items,
        has_more: page.has_more,
        next_cursor: page.next_cursor,
    })
}

/// An order's history, oldest first, for its owner or an admin (404 for anyone else).
pub async fn history(
    db: &DatabaseConnection,
    caller: &AuthUser,
    id: Uuid,
) -> AppResult<Vec<Event>> {
    let order = entity::order::Entity::find_by_id(id)
        .one(db)
        .await?
        .filter(|o| caller.is_admin() || o.user_id == caller.id)
        .ok_or_else(|| AppError::not_found("order"))?;
    event::Entity::find()
        .filter(event::Column::OrderId.eq(order.id))
        .order_by_asc(event::Column::Tx)
        .order_by_asc(event::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(Event::try_from)
        .collect()
}

/// Deletes events older than `retention`; answers how many.
pub async fn prune(db: &DatabaseConnection, retention: std::time::Duration) -> AppResult<u64> {
    let cutoff = crate::clock::now()
        - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    Ok(event::Entity::delete_many()
        .filter(event::Column::CreatedAt.lt(cutoff))
        .exec(db)
        .await?
        .rows_affected)
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
