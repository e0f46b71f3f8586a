//! `product_images`: pictures of a product. The upload is kept under `uploads/{id}` until
//! the workers have made its WebP renditions, `images/{product_id}/{id}/{original,medium,thumb}.webp`.

use sea_orm::entity::prelude::*;

use crate::ImageStatus;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "product_images")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub product_id: Uuid,
    pub status: ImageStatus,
    /// The text that stands for it (`alt`).
    pub alt: Option<String>,
    /// Its place among the product's images (ascending).
    pub position: i32,
    /// Of the `original` rendition, once ready.
    pub width: Option<i32>,
    pub height: Option<i32>,
    /// Processing attempts started.
    pub attempts: i32,
    /// When the next attempt is due; `None` while one runs (or once it ended).
    pub next_attempt_at: Option<DateTimeUtc>,
    /// Why it failed, or the last transient trouble.
    pub error: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
