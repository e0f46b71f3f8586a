//! Request and response bodies of the `/orders` routes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::OrderStatus;
use crate::{
    domain::{Money, WholeNumber},
    pagination::SortField,
    payments::{PaymentMethod, PaymentStatus},
};

/// `POST /orders`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateOrderRequest {
    /// 1 to 100 lines, each product at most once.
    pub items: Option<Vec<OrderLineInput>>,
    /// The simulated payment method (default `pm_random`).
    #[schema(value_type = Option<PaymentMethod>, example = "pm_success")]
    pub payment_method: Option<String>,
}

/// One line of `POST /orders`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderLineInput {
    #[schema(value_type = String, format = Uuid)]
    pub product_id: Option<String>,
    /// 1 to 1000.
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1000, example = 1)]
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
    pub skip: Option<String>,
    /// Page size, 1 to 100 (default 10).
    pub take: Option<String>,
    /// createdAt (default), updatedAt or total.
    pub order_by: Option<String>,
    /// asc or desc (default).
    pub order: Option<String>,
    /// Only orders in this status.
    pub status: Option<String>,
    /// Only this user's orders (admins only; clients always see their own).
    pub user_id: Option<String>,
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
