//! Payments: the simulated payment methods, the worker that attempts them, the `/payment`
//! event and the admin view of the queue. The payment state machine itself lives in
//! `lifecycle`.

pub mod dead;
pub mod routes;
pub mod simulator;
pub mod worker;

use chrono::{DateTime, Utc};
pub use entity::{PaymentMethod, PaymentStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::Money;

/// The `/payment` namespace's `status` event: one per attempt and outcome.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentEvent {
    pub order_id: Uuid,
    pub user_id: Uuid,
    #[schema(value_type = String, example = "25.00")]
    pub amount: Money,
    pub currency: String,
    pub payment_method: PaymentMethod,
    pub status: PaymentStatus,
    /// The attempt this event is about (1-based; 0 before any attempt).
    pub attempt: i32,
    pub max_attempts: i32,
    /// When the next attempt is due (`RETRYING` only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Until when the customer may confirm (`REQUIRES_ACTION` only).
    pub action_expires_at: Option<DateTime<Utc>>,
    /// Why the attempt failed.
    pub error: Option<String>,
}
