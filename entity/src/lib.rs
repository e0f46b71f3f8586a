//! SeaORM entities of the shop schema, shared by the service, the seeder and the tests.
//!
//! The tables are created by the `migration` crate; these types mirror them. Money is
//! stored in integer minor units (`*_cents`), statuses as upper-case strings.

pub mod idempotency_key;
pub mod order;
pub mod order_item;
pub mod payment;
pub mod product;
pub mod user;
