//! Request and response bodies of the `/orders` routes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::OrderStatus;
use crate::{
    domain::{Money, WholeNumber},
    pagination::{SortField, SortOrder},
    payments::{PaymentMethod, PaymentStatus},
};

/// `POST /orders`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateOrderRequest {
    /// 1 to 100 lines, each product at most once.
    #[schema(value_type = Vec<OrderLineInput>, required = true, min_items = 1, max_items = 100)]
    pub items: Option<Vec<OrderLineInput>>,
    /// The simulated payment method (default `pm_random`).
    #[schema(value_type = Option<PaymentMethod>, example = "pm_success")]
    pub payment_method: Option<String>,
}

/// One line of `POST /orders`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderLineInput {
    #[schema(value_type = String, required = true, format = Uuid)]
    pub product_id: Option<String>,
    /// 1 to 1000.
    #[schema(value_type = i64, required = true, minimum = 1, maximum = 1000, example = 1)]
    pub quantity: Option<WholeNumber>,
}

/// An order as clients see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderResponse {
    pub id: Uuid,
    pub user_id: Uuid,
    pub status: OrderStatus,
    #[schema(value_type = String, example = "25.00")]
    pub total: Money,
    /// The money refunded so far (succeeded refunds).
    #[schema(value_type = String, example = "0.00")]
    pub refunded: Money,
    pub currency: String,
    pub payment_method: PaymentMethod,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub order_items: Vec<OrderItemResponse>,
    pub payment: PaymentResponse,
}

/// A line of an order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderItemResponse {
    pub id: Uuid,
    pub product_id: Uuid,
    pub quantity: i32,
    /// Unit price when the order was placed.
    #[schema(value_type = String, example = "12.50")]
    pub price: Money,
    #[schema(value_type = String, example = "25.00")]
    pub subtotal: Money,
    pub product: ProductRef,
}

/// The product of an order line.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProductRef {
    pub id: Uuid,
    pub name: String,
}

/// The payment of an order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentResponse {
    pub status: PaymentStatus,
    pub attempts: i32,
    pub max_attempts: i32,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Until when the customer may confirm (`REQUIRES_ACTION` only).
    pub action_expires_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// Query of `GET /orders`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct OrderListQuery {
    /// Items to skip (default 0).
    #[param(value_type = Option<u64>, minimum = 0, maximum = 1_000_000)]
    pub skip: Option<String>,
    /// Page size (default 10).
    #[param(value_type = Option<u64>, minimum = 1, maximum = 100)]
    pub take: Option<String>,
    /// The field to order by (default createdAt).
    #[param(value_type = Option<OrderSortParam>)]
    pub order_by: Option<String>,
    /// The direction (default desc).
    #[param(value_type = Option<SortOrder>)]
    pub order: Option<String>,
    /// Only orders in this status.
    #[param(value_type = Option<OrderStatus>)]
    pub status: Option<String>,
    /// Only this user's orders (admins only; clients may name only themselves).
    #[param(value_type = Option<Uuid>)]
    pub user_id: Option<String>,
}

/// The fields `GET /orders` may be ordered by.
#[derive(ToSchema)]
#[schema(as = OrderOrderBy)]
#[allow(dead_code)] // describes a query parameter, read as text by `PageRequest`
pub enum OrderSortParam {
    #[schema(rename = "createdAt")]
    CreatedAt,
    #[schema(rename = "updatedAt")]
    UpdatedAt,
    #[schema(rename = "total")]
    Total,
}

/// The columns `GET /orders` may be ordered by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderSort {
    CreatedAt,
    UpdatedAt,
    Total,
}

impl SortField for OrderSort {
    const ALLOWED: &'static [(&'static str, Self)] = &[
        ("createdAt", Self::CreatedAt),
        ("updatedAt", Self::UpdatedAt),
        ("total", Self::Total),
    ];
    const DEFAULT: Self = Self::CreatedAt;
}
