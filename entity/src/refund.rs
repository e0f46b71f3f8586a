//! `refunds`: money given back on a paid order, processed by the workers through the
//! simulated provider, with the units it puts back on the shelf (`restock`, JSON).

use sea_orm::entity::prelude::*;

use crate::RefundStatus;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "refunds")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub order_id: Uuid,
    pub amount_cents: i64,
    pub reason: Option<String>,
    pub status: RefundStatus,
    pub attempts: i32,
    pub max_attempts: i32,
    /// `[{"productId": ..., "quantity": ...}]`.
    pub restock: String,
    pub last_error: Option<String>,
    /// While `PENDING`: when the next attempt is due; `None` while one runs.
    pub next_attempt_at: Option<DateTimeUtc>,
    /// The admin who asked for it.
    pub actor_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::order::Entity",
        from = "Column::OrderId",
        to = "super::order::Column::Id"
    )]
    Order,
}

impl Related<super::order::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Order.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
