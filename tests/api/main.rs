//! Integration tests: each test starts a real instance on a free port, with its own fresh
//! database, and talks HTTP to it. Every test runs on both backends: SQLite (always) and
//! PostgreSQL (when reachable; required when `SHOP_TEST_REQUIRE_EXTERNAL=1`).

#[macro_use]
mod helpers;

mod accounts;
mod auth;
mod categories;
mod cluster;
mod concurrency;
mod edges;
mod events;
mod idempotency;
mod images;
mod money;
mod orders;
mod payments;
mod products;
mod realtime;
mod service;
mod socket;
mod users;
mod webhooks;
