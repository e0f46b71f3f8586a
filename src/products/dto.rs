//! Request and response bodies of the `/products` routes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{
    domain::{AmountInput, Money, WholeNumber},
    extract::present,
    pagination::{SortField, SortOrder},
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
    /// How often it was read; may lag by a few seconds.
    pub views: i64,
    /// The categories it is in.
    pub category_ids: Vec<Uuid>,
    /// Its pictures by position: the `READY` ones (admins see every status).
    pub images: Vec<crate::images::ImageResponse>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set once the product is soft-deleted.
    pub deleted_at: Option<DateTime<Utc>>,
    /// The row's version: sent as the `ETag` header, not in the body.
    #[serde(skip)]
    pub version: i64,
}

impl ProductResponse {
    pub fn new(
        product: entity::product::Model,
        category_ids: Vec<Uuid>,
        images: Vec<crate::images::ImageResponse>,
        currency: &str,
    ) -> Self {
        Self {
            id: product.id,
            name: product.name,
            description: product.description,
            price: Money::from_cents(product.price_cents),
            currency: currency.to_owned(),
            stock: product.stock,
            views: product.views,
            category_ids,
            images,
            created_at: product.created_at,
            updated_at: product.updated_at,
            deleted_at: product.deleted_at,
            version: product.version,
        }
    }
}

/// `PUT` / `PATCH /products/{id}`: the fields to change (each optional); with `name`,
/// `price` and `stock` required, the body of `POST /products` ([`NewProduct`]).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = ProductChanges)]
pub struct ProductInput {
    /// 1 to 200 characters (trimmed), no control characters.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, min_length = 1, max_length = 200, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$", example = "Espresso cup")]
    pub name: Option<Option<String>>,
    /// Up to 2,000 characters; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 2000, pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$")]
    pub description: Option<Option<String>>,
    /// A JSON number or string with at most two decimals, from 0.01 to 99999999.99.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = price_schema)]
    pub price: Option<Option<AmountInput>>,
    /// Units on hand, 0 to 1,000,000,000.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = i64, minimum = 0, maximum = 1_000_000_000, example = 25)]
    pub stock: Option<Option<WholeNumber>>,
    /// The categories it is in (replacing those it was in), at most 20, each once.
    #[serde(default, rename = "categoryIds", deserialize_with = "present")]
    #[schema(value_type = Vec<Uuid>, max_items = 20)]
    pub category_ids: Option<Option<Vec<String>>>,
}

/// `POST /products`: a new product. Documents the body the handler reads as a
/// [`ProductInput`] (which answers 422 naming each missing field).
#[derive(ToSchema)]
#[allow(dead_code)] // describes a request body; the handler reads it as `ProductInput`
pub struct NewProduct {
    /// 1 to 200 characters (trimmed), no control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$",
        example = "Espresso cup"
    )]
    name: String,
    /// Up to 2,000 characters.
    #[schema(
        max_length = 2000,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    description: Option<String>,
    /// A JSON number or string with at most two decimals, from 0.01 to 99999999.99.
    #[schema(schema_with = price_schema)]
    price: String,
    /// Units on hand, 0 to 1,000,000,000.
    #[schema(minimum = 0, maximum = 1_000_000_000, example = 25)]
    stock: i64,
    /// The categories it is in, at most 20, each once.
    #[schema(rename = "categoryIds", max_items = 20, required = false)]
    category_ids: Vec<Uuid>,
}

/// A price: at least 0.01 and at most 99999999.99.
fn price_schema() -> utoipa::openapi::schema::Schema {
    crate::domain::amount_schema(8, "12.50")
}

/// Query of `GET /products`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ProductListQuery {
    /// Items to skip (default 0).
    #[param(value_type = Option<u64>, minimum = 0, maximum = 1_000_000)]
    pub skip: Option<String>,
    /// Page size (default 10).
    #[param(value_type = Option<u64>, minimum = 1, maximum = 100)]
    pub take: Option<String>,
    /// The field to order by (default createdAt).
    #[param(value_type = Option<ProductSortParam>)]
    pub order_by: Option<String>,
    /// The direction (default desc).
    #[param(value_type = Option<SortOrder>)]
    pub order: Option<String>,
    /// Only products whose name contains this text, case-insensitively (up to 100
    /// characters).
    #[param(max_length = 100, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub q: Option<String>,
    /// `true` to include soft-deleted products (admins only).
    #[param(value_type = Option<bool>)]
    pub include_deleted: Option<String>,
    /// Only products in this category or any category under it.
    #[param(value_type = Option<Uuid>)]
    pub category_id: Option<String>,
}

/// The fields `GET /products` may be ordered by.
#[derive(ToSchema)]
#[schema(as = ProductOrderBy)]
#[allow(dead_code)] // describes a query parameter, read as text by `PageRequest`
pub enum ProductSortParam {
    #[schema(rename = "createdAt")]
    CreatedAt,
    #[schema(rename = "updatedAt")]
    UpdatedAt,
    #[schema(rename = "name")]
    Name,
    #[schema(rename = "price")]
    Price,
    #[schema(rename = "stock")]
    Stock,
    #[schema(rename = "views")]
    Views,
}

/// The columns `GET /products` may be ordered by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProductSort {
    CreatedAt,
    UpdatedAt,
    Name,
    Price,
    Stock,
    Views,
}

impl SortField for ProductSort {
    const ALLOWED: &'static [(&'static str, Self)] = &[
        ("createdAt", Self::CreatedAt),
        ("updatedAt", Self::UpdatedAt),
        ("name", Self::Name),
        ("price", Self::Price),
        ("stock", Self::Stock),
        ("views", Self::Views),
    ];
    const DEFAULT: Self = Self::CreatedAt;
}
