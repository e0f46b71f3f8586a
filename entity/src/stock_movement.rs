//! `stock_movements`: the stock ledger, one row per change of a product's stock, written
//! in the same transaction as the change. The sum of a product's `delta`s is its stock.

use sea_orm::entity::prelude::*;

use crate::MovementReason;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "stock_movements")]
pub struct Model {
    /// A UUIDv7: movements sort in the order they were written.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub product_id: Uuid,
    pub delta: i32,
    pub reason: MovementReason,
    /// Free text an admin gave (a delivery note, a ticket), or what the system noted.
    pub reference: Option<String>,
    /// The order behind an `order`, `cancel`, `payment_failed`, `expired` or `refund`.
    pub order_id: Option<Uuid>,
    /// `user`, `admin`, `worker` or `system`.
    pub actor_kind: String,
    pub actor_id: Option<Uuid>,
    /// The product's stock right after this movement.
    pub stock_after: i32,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::product::Entity",
        from = "Column::ProductId",
        to = "super::product::Column::Id"
    )]
    Product,
}

impl Related<super::product::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Product.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
