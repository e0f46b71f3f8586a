//! Payments: the payment state machine, the simulated payment methods, the worker that
//! processes them and the admin view of the queue.

pub mod routes;
pub mod simulator;
pub mod worker;

use chrono::{DateTime, Utc};
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
    pub payment_method: String,
    pub status: PaymentStatus,
    /// The attempt this event is about (1-based; 0 before any attempt).
    pub attempt: i32,
    pub max_attempts: i32,
    /// When the next attempt is due (`RETRYING` only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Why the attempt failed.
    pub error: Option<String>,
}

/// Where a payment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum PaymentStatus {
    /// Queued, no attempt made yet.
    Pending,
    /// An attempt is running.
    Processing,
    /// Waiting for the next attempt after a transient failure.
    Retrying,
    Succeeded,
    Failed,
    Cancelled,
}

impl PaymentStatus {
    pub const ALL: [Self; 6] = [
        Self::Pending,
        Self::Processing,
        Self::Retrying,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Processing => "PROCESSING",
            Self::Retrying => "RETRYING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// A simulated payment method; it decides how each attempt turns out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentMethod {
    /// Each attempt succeeds with probability `PAYMENT_SUCCESS_RATE`.
    Random,
    /// The first attempt succeeds.
    Success,
    /// A hard decline on the first attempt: no retries.
    Decline,
    /// The first N attempts (1..=9) fail transiently, then success.
    Transient(u8),
    /// Every attempt fails transiently until attempts run out.
    Unavailable,
}

impl PaymentMethod {
    pub const DEFAULT: Self = Self::Random;

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "pm_random" => Some(Self::Random),
            "pm_success" => Some(Self::Success),
            "pm_decline" => Some(Self::Decline),
            "pm_unavailable" => Some(Self::Unavailable),
            _ => {
                let n: u8 = raw.strip_prefix("pm_transient_")?.parse().ok()?;
                (1..=9).contains(&n).then_some(Self::Transient(n))
            }
        }
    }

    pub fn as_string(self) -> String {
        match self {
            Self::Random => "pm_random".into(),
            Self::Success => "pm_success".into(),
            Self::Decline => "pm_decline".into(),
            Self::Unavailable => "pm_unavailable".into(),
            Self::Transient(n) => format!("pm_transient_{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_methods_round_trip() {
        for raw in [
            "pm_random",
            "pm_success",
            "pm_decline",
            "pm_unavailable",
            "pm_transient_1",
            "pm_transient_9",
        ] {
            assert_eq!(PaymentMethod::parse(raw).unwrap().as_string(), raw);
        }
        for bad in [
            "",
            "pm_transient_0",
            "pm_transient_10",
            "pm_transient_",
            "card",
            "PM_SUCCESS",
        ] {
            assert_eq!(PaymentMethod::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn statuses_round_trip() {
        for status in PaymentStatus::ALL {
            assert_eq!(PaymentStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(PaymentStatus::parse("pending"), None);
    }
}
