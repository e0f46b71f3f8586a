//! The enumerations stored as upper- or lower-case strings: statuses, roles and payment
//! methods. Each maps to its column and is what the API shows, so a value the database
//! holds that is not one of these is an error, never a silent default.

use sea_orm::{Iterable, entity::prelude::*};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where an order stands.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(24))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Stock reserved, payment queued.
    #[sea_orm(string_value = "PENDING")]
    Pending,
    /// Payment under way: an attempt running, a retry waiting, or the customer's action
    /// awaited.
    #[sea_orm(string_value = "PROCESSING")]
    Processing,
    /// Paid.
    #[sea_orm(string_value = "COMPLETED")]
    Completed,
    /// The payment gave up or the customer's action expired; stock restored.
    #[sea_orm(string_value = "FAILED")]
    Failed,
    /// Cancelled; stock restored.
    #[sea_orm(string_value = "CANCELLED")]
    Cancelled,
    /// Paid, and part of the money refunded.
    #[sea_orm(string_value = "PARTIALLY_REFUNDED")]
    PartiallyRefunded,
    /// Paid, and all of the money refunded.
    #[sea_orm(string_value = "REFUNDED")]
    Refunded,
}

/// Where a refund stands.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefundStatus {
    /// Asked for; an attempt is running or the next one is due at `nextAttemptAt`.
    #[sea_orm(string_value = "PENDING")]
    Pending,
    /// The money went back; the order counts it in `refunded`.
    #[sea_orm(string_value = "SUCCEEDED")]
    Succeeded,
    /// Out of attempts; nothing was refunded or restocked.
    #[sea_orm(string_value = "FAILED")]
    Failed,
}

/// Where a product image stands.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ImageStatus {
    /// Uploaded; the workers are making its renditions.
    #[sea_orm(string_value = "PROCESSING")]
    Processing,
    /// Its renditions are stored and served.
    #[sea_orm(string_value = "READY")]
    Ready,
    /// It could not be read, or stored (see `error`).
    #[sea_orm(string_value = "FAILED")]
    Failed,
}

/// Why a product's stock moved.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "snake_case")]
pub enum MovementReason {
    /// Reserved by an order line.
    #[sea_orm(string_value = "order")]
    Order,
    /// Put back by a cancelled order.
    #[sea_orm(string_value = "cancel")]
    Cancel,
    /// Put back by an order whose payment failed.
    #[sea_orm(string_value = "payment_failed")]
    PaymentFailed,
    /// Put back by an order whose customer's action expired.
    #[sea_orm(string_value = "expired")]
    Expired,
    /// Put back by a refund's restock line.
    #[sea_orm(string_value = "refund")]
    Refund,
    /// An admin received goods.
    #[sea_orm(string_value = "restock")]
    Restock,
    /// An admin corrected the count (also `PUT`/`PATCH` with `stock`, and a new
    /// product's first stock).
    #[sea_orm(string_value = "correction")]
    Correction,
    /// An admin wrote off damaged goods.
    #[sea_orm(string_value = "damage")]
    Damage,
    /// A customer's return an admin put back on the shelf.
    #[sea_orm(string_value = "return")]
    Return,
    #[sea_orm(string_value = "other")]
    Other,
}

impl MovementReason {
    /// The reasons an admin may give to `POST /products/{id}/stock-adjustments`.
    pub const ADJUSTMENTS: [Self; 5] = [
        Self::Restock,
        Self::Correction,
        Self::Damage,
        Self::Return,
        Self::Other,
    ];
}

/// Where a payment stands.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    /// Queued for its next attempt.
    #[sea_orm(string_value = "PENDING")]
    Pending,
    /// An attempt is running.
    #[sea_orm(string_value = "PROCESSING")]
    Processing,
    /// Waiting for the next attempt after a transient failure.
    #[sea_orm(string_value = "RETRYING")]
    Retrying,
    /// Waiting for the customer to confirm, until `actionExpiresAt`.
    #[sea_orm(string_value = "REQUIRES_ACTION")]
    RequiresAction,
    #[sea_orm(string_value = "SUCCEEDED")]
    Succeeded,
    #[sea_orm(string_value = "FAILED")]
    Failed,
    #[sea_orm(string_value = "CANCELLED")]
    Cancelled,
}

/// What an account may do.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    #[sea_orm(string_value = "CLIENT")]
    Client,
    #[sea_orm(string_value = "ADMIN")]
    Admin,
}

/// Where a webhook delivery stands.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryStatus {
    /// Not tried yet.
    #[sea_orm(string_value = "PENDING")]
    Pending,
    /// Failed in a way worth retrying; tried again at `nextAttemptAt`.
    #[sea_orm(string_value = "RETRYING")]
    Retrying,
    /// The endpoint answered 2xx.
    #[sea_orm(string_value = "SUCCEEDED")]
    Succeeded,
    /// Refused (a status that is not retried), or out of attempts.
    #[sea_orm(string_value = "FAILED")]
    Failed,
}

/// A simulated payment method; it decides how each attempt turns out.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(32))")]
pub enum PaymentMethod {
    /// Each attempt succeeds with probability `PAYMENT_SUCCESS_RATE`.
    #[sea_orm(string_value = "pm_random")]
    #[serde(rename = "pm_random")]
    Random,
    /// The first attempt succeeds.
    #[sea_orm(string_value = "pm_success")]
    #[serde(rename = "pm_success")]
    Success,
    /// A hard decline on the first attempt: no retries.
    #[sea_orm(string_value = "pm_decline")]
    #[serde(rename = "pm_decline")]
    Decline,
    #[sea_orm(string_value = "pm_transient_1")]
    #[serde(rename = "pm_transient_1")]
    Transient1,
    #[sea_orm(string_value = "pm_transient_2")]
    #[serde(rename = "pm_transient_2")]
    Transient2,
    #[sea_orm(string_value = "pm_transient_3")]
    #[serde(rename = "pm_transient_3")]
    Transient3,
    #[sea_orm(string_value = "pm_transient_4")]
    #[serde(rename = "pm_transient_4")]
    Transient4,
    #[sea_orm(string_value = "pm_transient_5")]
    #[serde(rename = "pm_transient_5")]
    Transient5,
    #[sea_orm(string_value = "pm_transient_6")]
    #[serde(rename = "pm_transient_6")]
    Transient6,
    #[sea_orm(string_value = "pm_transient_7")]
    #[serde(rename = "pm_transient_7")]
    Transient7,
    #[sea_orm(string_value = "pm_transient_8")]
    #[serde(rename = "pm_transient_8")]
    Transient8,
    #[sea_orm(string_value = "pm_transient_9")]
    #[serde(rename = "pm_transient_9")]
    Transient9,
    /// Every attempt fails transiently until attempts run out.
    #[sea_orm(string_value = "pm_unavailable")]
    #[serde(rename = "pm_unavailable")]
    Unavailable,
    /// The first attempt asks for the customer's action; confirmed, the next succeeds.
    #[sea_orm(string_value = "pm_requires_action")]
    #[serde(rename = "pm_requires_action")]
    RequiresAction,
}

impl PaymentMethod {
    /// Used when an order names none.
    pub const DEFAULT: Self = Self::Random;

    /// For `pm_transient_N`, N: how many attempts fail before one succeeds.
    pub fn transient_failures(self) -> Option<u32> {
        Some(match self {
            Self::Transient1 => 1,
            Self::Transient2 => 2,
            Self::Transient3 => 3,
            Self::Transient4 => 4,
            Self::Transient5 => 5,
            Self::Transient6 => 6,
            Self::Transient7 => 7,
            Self::Transient8 => 8,
            Self::Transient9 => 9,
            _ => return None,
        })
    }
}

/// Parses the stored (and shown) form of any of these enumerations.
pub fn parse<T: ActiveEnum<Value = String>>(raw: &str) -> Option<T> {
    T::try_from_value(&raw.to_owned()).ok()
}

/// Every stored form of an enumeration, for messages that list them.
pub fn names<T: ActiveEnum<Value = String> + Iterable>() -> Vec<String> {
    T::iter().map(|v| v.to_value()).collect()
}
