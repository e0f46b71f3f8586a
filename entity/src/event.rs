//! `events`: the event log. Every order, payment and catalog change writes its event in
//! the same transaction as the change; listeners read it from here.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The writing transaction's id on PostgreSQL (0 on SQLite): rows are read by
    /// `(tx, id)`, only once every older transaction has ended.
    pub tx: i64,
    /// `order.created`, `payment.retrying`, `product.updated`, ...
    #[sea_orm(column_name = "type")]
    pub kind: String,
    pub order_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    /// `user`, `admin`, `worker` or `system`.
    pub actor_kind: String,
    pub actor_id: Option<Uuid>,
    /// The event's `data`, as JSON text.
    pub data: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
