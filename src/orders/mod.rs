//! Orders: placement that never oversells, owner-or-admin reads, listing, cancellation and
//! the customer's confirmation of a payment. The transitions themselves live in
//! `lifecycle`.

pub mod dto;
pub mod routes;
pub mod service;
pub mod view;

pub use entity::OrderStatus;
