//! SeaORM entities of the shop schema, shared by the service, the seeder and the tests.
//!
//! The tables are created by the `migration` crate; these types mirror them. Money is
//! stored in integer minor units (`*_cents`), statuses, roles and payment methods as
//! strings mapped to the enumerations of [`status`].

pub mod category;
pub mod event;
pub mod idempotency_key;
pub mod order;
pub mod order_item;
pub mod password_reset;
pub mod payment;
pub mod product;
pub mod product_category;
pub mod product_image;
pub mod refresh_token;
pub mod refund;
pub mod status;
pub mod stock_movement;
pub mod user;
pub mod webhook_delivery;
pub mod webhook_endpoint;

pub use status::{
    DeliveryStatus, ImageStatus, MovementReason, OrderStatus, PaymentMethod, PaymentStatus,
    RefundStatus, Role,
};
