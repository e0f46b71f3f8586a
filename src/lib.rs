//! shop: an e-commerce order API. Accounts, a catalog, orders that never oversell, and
//! (simulated) asynchronous payments.
//!
//! The binary (`main.rs`) parses the command line; everything else lives here so the
//! integration tests can start the very same [`startup::Application`].
//!
//! Layers: `router` (the HTTP surface) → each domain's `routes` → its `service` (rules,
//! transactions) → `lifecycle` (the order and payment state machine) and `inventory`
//! (stock). `state` holds what handlers share; `startup` connects, serves and shuts down.

pub mod auth;
pub mod cache;
pub mod categories;
pub mod clock;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod idempotency;
pub mod images;
pub mod inventory;
pub mod lifecycle;
pub mod mail;
pub mod media;
pub mod metrics;
pub mod notifier;
pub mod openapi;
pub mod orders;
pub mod pagination;
pub mod payments;
pub mod precondition;
pub mod products;
pub mod queue;
pub mod rate_limit;
pub mod realtime;
pub mod redis_client;
pub mod refunds;
pub mod router;
pub mod seed;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod users;
pub mod webhooks;
