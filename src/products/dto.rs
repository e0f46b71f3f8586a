//! Request and response bodies of the `/products` routes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{
    domain::{AmountInput, Money, WholeNumber},
    pagination::SortField,
};

/// A product as clients see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductResponse {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    /// Unit price, a decimal string with two places.
    #[schema(value_type = String, example = "12.50")]
    pub price: Money,
    #[schema(example = "USD")]
    pub currency: String,
    pub stock: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set once the product is soft-deleted.
    pub deleted_at: Option<DateTime<Utc>>,
}

impl ProductResponse {
    pub fn new(product: entity::product::Model, currency: &str) -> Self {
        Self {
            id: product.id,
            name: product.name,
            description: product.description,
            price: Money::from_cents(product.price_cents),
            currency: currency.to_owned(),
            stock: product.stock,
            created_at: product.created_at,
            updated_at: product.updated_at,
            deleted_at: product.deleted_at,
        }
    }
}

/// `POST /products`; also `PUT` / `PATCH /products/{id}`, where every field is optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ProductInput {
    /// 1 to 200 characters.
    #[schema(example = "Espresso cup")]
    pub name: Option<String>,
    /// Up to 2,000 characters; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// A JSON number or string with at most two decimals, from 0.01 to 99999999.99.
    #[schema(value_type = String, example = "12.50")]
    pub price: Option<AmountInput>,
    /// Units on hand, 0 to 1,000,000,000.
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1_000_000_000, example = 25)]
    pub stock: Option<WholeNumber>,
}

/// Tells a field sent as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Query of `GET /products`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ProductListQuery {
    /// Items to skip (default 0).
    pub skip: Option<String>,
    /// Page size, 1 to 100 (default 10).
    pub take: Option<String>,
    /// createdAt (default), updatedAt, name, price or stock.
    pub order_by: Option<String>,
    /// asc or desc (default).
    pub order: Option<String>,
    /// Only products whose name contains this text, case-insensitively.
    pub q: Option<String>,
    /// `true` to include soft-deleted products (admins only).
    pub include_deleted: Option<String>,
}

/// The columns `GET /products` may be ordered by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProductSort {
    CreatedAt,
    UpdatedAt,
    Name,
    Price,
    Stock,
}

impl SortField for ProductSort {
    const ALLOWED: &'static [(&'static str, Self)] = &[
        ("createdAt", Self::CreatedAt),
        ("updatedAt", Self::UpdatedAt),
        ("name", Self::Name),
        ("price", Self::Price),
        ("stock", Self::Stock),
    ];
    const DEFAULT: Self = Self::CreatedAt;
}
